"""Evaluation metrics: a classifier's from label ids (torchmetrics), a regression model's from scores (numpy).

>>> report = regression_report([0.0, 2.5, 4.0, 5.0], [0.5, 2.0, 4.0, 4.5], score_range=(0, 5))
>>> report["spearman"], report["mae"], report["f1_at_3"]
(1.0, 0.375, 1.0)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)

# KLUE-STS reports F1 of its binary label, which is 1 where the similarity score is at least 3.0; KorSTS and
# KLUE-STS share the 0-5 scale, so a model trained on that scale gets the same figure.
BINARY_THRESHOLD = 3.0
BINARY_SCALE = (0.0, 5.0)


def classification_report(gold: Sequence[int], predicted: Sequence[int], names: Sequence[str]) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix.

    A two-label classifier (paraphrase: no / yes) also gets ``f1``, the F1 of
    its ``positive_label``, the second one, as paraphrase benchmarks report it.

    >>> classification_report([0, 1, 1], [0, 1, 0], ["a", "b"])["accuracy"]
    0.6666...
    """
    n = len(names)
    g = torch.as_tensor(list(gold), dtype=torch.long)
    p = torch.as_tensor(list(predicted), dtype=torch.long)
    if len(g) == 0:
        raise ValueError("no examples to score")
    kw = dict(num_classes=n, average="none", zero_division=0)
    precision, recall, f1 = (m(p, g, **kw) for m in (multiclass_precision, multiclass_recall, multiclass_f1_score))
    cm = multiclass_confusion_matrix(p, g, num_classes=n)
    support = cm.sum(dim=1)
    report = {
        "task": "classification",
        "n": int(len(g)),
        "accuracy": float(multiclass_accuracy(p, g, num_classes=n, average="micro")),
        "macro_f1": float(f1.mean()),
    }
    if n == 2:
        report.update(f1=float(f1[1]), positive_label=names[1])
    report.update(
        per_class={
            name: {"precision": float(precision[i]), "recall": float(recall[i]),
                   "f1": float(f1[i]), "support": int(support[i])}
            for i, name in enumerate(names)
        },
        labels=list(names),
        confusion_matrix=cm.tolist(),
    )
    return report


def regression_report(gold: Sequence[float], predicted: Sequence[float],
                      score_range: tuple[float | None, float | None] | None = None) -> dict:
    """Pearson and Spearman correlation, mean squared and absolute error of predicted against gold scores.

    A correlation is ``None`` where it is undefined (gold or predicted scores all
    equal). With a 0-5 ``score_range`` (KorSTS, KLUE-STS) the report also has
    ``f1_at_3``: F1 after both scores are binarised at 3.0 (at least 3 is
    positive), as KLUE-STS reports it. Spearman ranks ties by their average
    rank, as ``scipy.stats.spearmanr`` does.
    """
    g = np.asarray(list(gold), dtype=np.float64)
    p = np.asarray(list(predicted), dtype=np.float64)
    if len(g) == 0:
        raise ValueError("no examples to score")
    if g.shape != p.shape:
        raise ValueError(f"{len(g)} gold scores but {len(p)} predicted ones")
    report = {
        "task": "regression",
        "n": int(len(g)),
        "pearson": _pearson(g, p),
        "spearman": spearman(g, p),
        "mse": float(np.mean((p - g) ** 2)),
        "mae": float(np.mean(np.abs(p - g))),
    }
    if score_range is not None and tuple(score_range) == BINARY_SCALE:
        report["f1_at_3"] = binary_f1(g >= BINARY_THRESHOLD, p >= BINARY_THRESHOLD)
    report["score_range"] = list(score_range) if score_range is not None else [None, None]
    return report


def binary_f1(gold: np.ndarray, predicted: np.ndarray) -> float:
    """F1 of the positive (``True``) class; 0 where nothing is positive in either.

    >>> binary_f1(np.array([True, True, False]), np.array([True, False, True]))
    0.5
    """
    tp = int(np.sum(gold & predicted))
    wrong = int(np.sum(gold != predicted))
    return 2 * tp / (2 * tp + wrong) if tp or wrong else 0.0


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation (ties get their average rank); ``None`` where either side is constant.

    >>> spearman([1, 2, 3, 4], [10, 20, 20, 40])
    0.9486...
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return _pearson(_average_ranks(x), _average_ranks(y))


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    dx, dy = x - x.mean(), y - y.mean()
    denominator = np.sqrt(np.sum(dx * dx) * np.sum(dy * dy))
    if len(x) < 2 or denominator == 0:
        return None
    return float(np.clip(np.sum(dx * dy) / denominator, -1.0, 1.0))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share the mean of the ranks they span."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)  # rank of the last member of each group of equal values
    return (ends - (counts - 1) / 2.0)[inverse]
