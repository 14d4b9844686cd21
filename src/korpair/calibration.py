"""Calibration: scores a person can read as probabilities, and the numbers that say whether they can.

A classifier's probabilities are ``softmax(logits / T)``; ``fit_temperature``
finds the ``T`` that minimises the negative log-likelihood of held-out
labels (Guo et al. 2017, "On Calibration of Modern Neural Networks"). It
changes no prediction (the arg max stays), only how sure each one claims to
be. A regression model's analogue is an affine map of its score
(``fit_affine``: least squares on held-out scores). ``calibration_metrics``
reports expected calibration error (15 equal-width confidence bins),
Brier score and NLL; ``reliability_bins`` is what a reliability diagram draws.

Only numpy: training fits, inference applies and evaluation reports with the same code.

>>> import numpy as np
>>> logits = np.array([[4.0, 0.0], [4.0, 0.0], [0.0, 4.0], [4.0, 0.0]])
>>> round(fit_temperature(logits, np.array([0, 1, 1, 0])), 2)  # 3 of 4 right: p = 0.75 = sigmoid(4 / T)
3.64
"""

from __future__ import annotations

import numpy as np

ECE_BINS = 15
TEMPERATURE_BOUNDS = (0.05, 20.0)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / temperature)``."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    top = z.max(axis=-1, keepdims=True)
    log_norm = np.log(np.exp(z - top).sum(axis=-1)) + top[:, 0]
    return float(np.mean(log_norm - z[np.arange(len(z)), labels]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising NLL on (``logits``, ``labels``), within ``TEMPERATURE_BOUNDS``.

    NLL is convex in ``b = 1/T`` (a log-sum-exp of ``b * z`` minus a linear
    term), so Newton's method on ``b`` finds the one minimum in a few steps:
    gradient ``mean(E_p[z] - z_label)``, curvature ``mean(Var_p[z])``.
    """
    z = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    if len(z) == 0:
        raise ValueError("no pairs to fit a temperature on")
    picked = z[np.arange(len(z)), labels]
    low, high = 1 / TEMPERATURE_BOUNDS[1], 1 / TEMPERATURE_BOUNDS[0]
    b = 1.0
    for _ in range(100):
        p = softmax(z * b)
        mean = (p * z).sum(-1)
        gradient = float(np.mean(mean - picked))
        curvature = float(np.mean((p * z * z).sum(-1) - mean * mean))
        if curvature <= 1e-12:  # every answer already certain (or all logits equal): nothing to learn
            b = high if gradient < 0 else low if gradient > 0 else b
            break
        step = gradient / curvature
        new = min(max(b - step, low), high)
        if abs(new - b) < 1e-9 * max(1.0, b):
            b = new
            break
        b = new
    return float(1 / b)


def fit_affine(scores: np.ndarray, gold: np.ndarray) -> tuple[float, float]:
    """``(scale, shift)`` with ``scale * score + shift`` closest to ``gold`` (least squares); ``(1, 0)`` when
    the scores are all equal."""
    s, g = np.asarray(scores, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    if len(s) < 2 or np.ptp(s) == 0:
        return 1.0, 0.0
    scale, shift = np.polyfit(s, g, 1)
    return float(scale), float(shift)


def reliability_bins(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> list[dict]:
    """Per equal-width confidence bin (of the top probability): its range, pairs, mean confidence and accuracy."""
    probs = np.asarray(probs, dtype=np.float64)
    confidence = probs.max(-1)
    correct = probs.argmax(-1) == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # right-closed bins, the first one closed on both sides: a confidence of exactly 1.0 lands in the last
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    out = []
    for i in range(bins):
        inside = which == i
        n = int(inside.sum())
        out.append({"low": float(edges[i]), "high": float(edges[i + 1]), "pairs": n,
                    "confidence": float(confidence[inside].mean()) if n else None,
                    "accuracy": float(correct[inside].mean()) if n else None})
    return out


def calibration_metrics(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict[str, float]:
    """Expected calibration error (``bins`` equal-width bins), Brier score (sum over classes, mean over pairs)
    and NLL of ``probs`` against ``labels``."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    n = len(labels)
    ece = sum(b["pairs"] / n * abs(b["accuracy"] - b["confidence"]) for b in reliability_bins(probs, labels, bins)
              if b["pairs"])
    onehot = np.eye(probs.shape[1])[labels]
    brier = float(np.mean(((probs - onehot) ** 2).sum(-1)))
    picked = np.clip(probs[np.arange(n), labels], 1e-12, 1.0)
    return {"ece": float(ece), "brier": brier, "nll": float(-np.mean(np.log(picked)))}


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence (base 2: 0 = the same distribution, 1 = disjoint) of each row of ``p`` and ``q``;
    how far a model's probabilities are from the annotators' vote shares."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    m = (p + q) / 2

    def kl(a: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(a > 0, a * np.log2(a / m), 0.0).sum(-1)

    return (kl(p) + kl(q)) / 2
