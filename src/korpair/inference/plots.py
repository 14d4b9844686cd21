"""Evaluation plots: a classifier's ``confusion_matrix.png``; a regression model's scatter of predicted
against gold scores and its histogram of residuals.

Each function takes ``out_png``: a path (written atomically) or an open binary
file (one of several files that must appear together).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
from matplotlib.figure import Figure  # not pyplot: no backend switched (a notebook's plots stay inline), no registry

from korpair.atomic import write_figure


def plot_confusion_matrix(matrix: np.ndarray, names: Sequence[str], out_png: Path | BinaryIO) -> Path | BinaryIO:
    """Counts, with each row (gold label) shaded by its share."""
    matrix = np.asarray(matrix)
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = 1.2 + 1.1 * len(names)
    fig = Figure(figsize=(size + 1.5, size))
    ax = fig.subplots()
    im = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{matrix[i, j]}", ha="center", va="center",
                    color="white" if shares[i, j] > 0.6 else "black")
    acc = np.trace(matrix) / max(matrix.sum(), 1)
    ax.set_title(f"accuracy {acc:.1%} (n={matrix.sum()})")
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of gold row")
    return _save(fig, out_png)


def plot_scatter(gold: Sequence[float], predicted: Sequence[float], metrics: dict,
                 out_png: Path | BinaryIO) -> Path | BinaryIO:
    """Predicted against gold scores, with the identity line (a perfect model's points lie on it); the
    axes span the model's score range where it is closed, else the scores'."""
    g, p = np.asarray(gold, dtype=float), np.asarray(predicted, dtype=float)
    low, high = _limits(np.concatenate([g, p]), metrics.get("score_range"))
    fig = Figure(figsize=(5.5, 5.5))
    ax = fig.subplots()
    ax.plot([low, high], [low, high], color="0.4", lw=1, ls="--", label="predicted = gold")
    ax.scatter(g, p, s=9, alpha=min(1.0, max(0.15, 300 / len(g))), color="tab:blue", edgecolors="none")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_aspect("equal")
    ax.set_xlabel("gold score")
    ax.set_ylabel("predicted score")
    ax.set_title(f"Pearson {_fmt(metrics.get('pearson'))}, Spearman {_fmt(metrics.get('spearman'))} "
                 f"(n={len(g)})")
    ax.legend(loc="upper left", frameon=False)
    return _save(fig, out_png)


def plot_residuals(gold: Sequence[float], predicted: Sequence[float], out_png: Path | BinaryIO) -> Path | BinaryIO:
    """How far predictions miss (predicted minus gold): centred on 0 for an unbiased model, narrow for an
    accurate one."""
    residuals = np.asarray(predicted, dtype=float) - np.asarray(gold, dtype=float)
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.hist(residuals, bins=min(50, max(10, len(residuals) // 20)), color="tab:blue", alpha=0.8)
    ax.axvline(0, color="0.3", lw=1, ls="--")
    ax.set_xlabel("residual (predicted - gold)")
    ax.set_ylabel("pairs")
    ax.set_title(f"mean {residuals.mean():+.3f}, sd {residuals.std():.3f} (n={len(residuals)})")
    return _save(fig, out_png)


def plot_reliability(curves: dict[str, list[dict]], calibration: dict, out_png: Path | BinaryIO) -> Path | BinaryIO:
    """A reliability diagram: per confidence bin, how often the model is right against how sure it says it is
    (a calibrated model's points lie on the diagonal), one line per set of probabilities in ``curves``
    (``korpair.calibration.reliability_bins``), and below, how many pairs each bin holds."""
    fig = Figure(figsize=(5.5, 6.5))
    ax, counts = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="0.4", lw=1, ls="--", label="perfectly calibrated")
    for (name, bins), color in zip(curves.items(), ("tab:red", "tab:blue")):
        used = [b for b in bins if b["pairs"]]
        key = "uncalibrated" if name == "uncalibrated" else "calibrated"
        ece = (calibration.get(key) or {}).get("ece")
        label = f"{name} (ECE {ece:.3f})" if ece is not None else name
        ax.plot([b["confidence"] for b in used], [b["accuracy"] for b in used], "o-", color=color, label=label)
        width = 1 / len(bins)
        counts.bar([(b["low"] + b["high"]) / 2 for b in bins], [b["pairs"] for b in bins], width=width * 0.9,
                   color=color, alpha=0.45, label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy in the bin")
    ax.set_title(f"reliability ({len(next(iter(curves.values())))} bins of confidence)")
    ax.legend(loc="upper left", fontsize="small", frameon=False)
    ax.grid(alpha=0.3)
    counts.set_xlabel("confidence (top probability)")
    counts.set_ylabel("pairs")
    return _save(fig, out_png)


def _limits(values: np.ndarray, score_range) -> tuple[float, float]:
    low, high = score_range if score_range else (None, None)
    low = float(values.min()) if low is None else float(min(low, values.min()))
    high = float(values.max()) if high is None else float(max(high, values.max()))
    pad = 0.03 * ((high - low) or 1.0)
    return low - pad, high + pad


def _fmt(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"


def _save(fig, out_png: Path | BinaryIO) -> Path | BinaryIO:
    fig.tight_layout()
    if hasattr(out_png, "write"):
        fig.savefig(out_png, format="png", dpi=120, bbox_inches="tight")
    else:
        write_figure(out_png, fig)
    return out_png
