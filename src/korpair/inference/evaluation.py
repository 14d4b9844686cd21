"""Score a saved model on labelled pairs and write a report.

For a classifier the report folder gets ``metrics.json`` (accuracy, macro-F1,
per-class precision/recall/F1, confusion matrix; F1 of the positive label for
two labels; ECE, Brier score and NLL of the probabilities given, and under
``calibration`` the same with and without the temperature fitted at
training), ``confusion_matrix.png``, ``reliability_diagram.png`` and
``predictions.jsonl`` (both texts, gold, predicted label, probabilities).
For a regression (similarity) model it gets ``metrics.json`` (Pearson,
Spearman, MSE, MAE; F1 at 3.0 on the 0-5 scale; MSE and MAE with and
without the fitted affine calibration), ``predictions_scatter.png``
(predicted against gold), ``residuals_histogram.png`` and
``predictions.jsonl`` (both texts, gold and predicted score).

Example::

    report = evaluate_pairs(Predictor.from_pretrained("runs/sample/model"), pairs, Path("runs/sample/eval"))
    report.metrics["accuracy"]  # 0.86
    report = evaluate_pairs(Predictor.from_pretrained("runs/korsts/model"), sts_pairs, Path("runs/korsts/eval"))
    report.metrics["spearman"], report.files  # 0.79, (... 'predictions_scatter.png', 'residuals_histogram.png')
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from korpair.atomic import open_atomic
from korpair.calibration import ECE_BINS, calibration_metrics, js_divergence, reliability_bins, softmax
from korpair.corpora.votes import agreement, vote_distribution
from korpair.errors import CorpusError, disk_full_as_error
from korpair.inference.metrics import classification_report, regression_report
from korpair.inference.plots import plot_confusion_matrix, plot_reliability, plot_residuals, plot_scatter
from korpair.inference.predictor import Predictor
from korpair.types import Pair

log = logging.getLogger(__name__)

REPORT_FILES = {
    "classification": ("predictions.jsonl", "metrics.json", "confusion_matrix.png", "reliability_diagram.png"),
    "regression": ("predictions.jsonl", "metrics.json", "predictions_scatter.png", "residuals_histogram.png"),
}


@dataclass
class EvalReport:
    metrics: dict
    output_dir: Path

    @property
    def predictions_file(self) -> Path:
        return self.output_dir / "predictions.jsonl"

    @property
    def files(self) -> tuple[str, ...]:
        """The report's file names, in ``output_dir``."""
        return REPORT_FILES[self.metrics.get("task", "classification")]


def evaluate_pairs(predictor: Predictor, pairs: Sequence[Pair], output_dir: Path,
                   batch_size: int = 64, source: str = "", dropped: Mapping[str, int] | None = None) -> EvalReport:
    """Predict every pair, compare with its gold label (or score), write metrics, plots and predictions.

    ``dropped`` counts the rows left out while reading (reason -> rows, e.g.
    KLUE's ``-`` gold label); ``metrics.json`` records it as ``dropped_rows``.

    The files replace a previous report together: if one cannot be written (a
    full disk is a ``DiskFullError`` naming ``output_dir``), none is; a
    previous report's plot of the other task is then removed.
    """
    if not pairs:
        raise CorpusError(f"{source or 'data'}: no labelled pairs to evaluate")
    if predictor.task == "regression":
        metrics, rows, plots = _regression(predictor, pairs, batch_size, source)
    else:
        metrics, rows, plots = _classification(predictor, pairs, batch_size, source)
    metrics["dropped_rows"] = dict(sorted((dropped or {}).items()))
    output_dir = Path(output_dir)
    _write_report(output_dir, rows, metrics, plots)
    return EvalReport(metrics, output_dir)


def _classification(predictor: Predictor, pairs: Sequence[Pair], batch_size: int, source: str):
    names = predictor.labels
    unknown = sorted({str(p.label) for p in pairs if p.label not in names})
    if unknown:
        raise CorpusError(f"{source or 'data'}: gold labels {unknown} are not labels of this model {list(names)}")
    logits = predictor.predict_logits(pairs, batch_size=batch_size)
    probs = softmax(logits, predictor.temperature)  # float64: the metrics of the answers given, to the digit
    gold = np.array([names.index(p.label) for p in pairs])
    metrics = {"data": source, "backend": getattr(predictor, "backend", None),
               **classification_report(gold.tolist(), probs.argmax(-1).tolist(), names)}
    metrics.update(calibration_metrics(probs, gold))
    # With and without the fitted temperature, whichever the predictor applies: what calibration buys here.
    fitted = predictor.calibration["temperature"] if predictor.calibration is not None else None
    curves = {"uncalibrated": softmax(logits)}
    if fitted is not None:
        curves[f"temperature {fitted:.2f}"] = softmax(logits, fitted)
    metrics["calibration"] = {
        "applied": fitted is not None and predictor.calibrated,
        "temperature": fitted, "bins": ECE_BINS,
        "uncalibrated": calibration_metrics(curves["uncalibrated"], gold),
        "calibrated": calibration_metrics(softmax(logits, fitted), gold) if fitted is not None else None}
    rows = [{"premise": pair.premise, "hypothesis": pair.hypothesis, "gold": pair.label,
             "predicted": names[int(row.argmax())], "scores": {n: float(v) for n, v in zip(names, row)},
             **({"votes": list(pair.votes), "agreement": agreement(pair.votes)} if pair.votes else {}),
             **({"fields": dict(pair.fields)} if pair.fields else {})}
            for pair, row in zip(pairs, probs)]
    if any(pair.votes for pair in pairs):
        metrics["agreement"] = _by_agreement(pairs, probs, names)
    plots = {"confusion_matrix.png": lambda fh: plot_confusion_matrix(metrics["confusion_matrix"], names, fh),
             "reliability_diagram.png": lambda fh: plot_reliability(
                 {name: reliability_bins(p, gold) for name, p in curves.items()}, metrics["calibration"], fh)}
    return metrics, rows, plots


def _by_agreement(pairs: Sequence[Pair], probs: np.ndarray, names: Sequence[str]) -> dict:
    """Accuracy and the Jensen-Shannon divergence between the model's probabilities and the vote shares, over the
    pairs with votes and by how far their annotators agreed (unanimous, 4-1, 3-2, 3-1-1, ...)."""
    voted = [i for i, pair in enumerate(pairs) if pair.votes]
    shares = np.array([vote_distribution(pairs[i].votes, names) for i in voted])
    js = js_divergence(probs[voted], shares)
    right = np.array([names[int(probs[i].argmax())] == pairs[i].label for i in voted])
    levels: dict[str, list[int]] = {}
    for k, i in enumerate(voted):
        levels.setdefault(agreement(pairs[i].votes), []).append(k)
    order = sorted(levels, key=lambda name: (name != "unanimous", -len(levels[name])))
    return {"pairs": len(voted), "js_divergence": float(js.mean()),
            "levels": {name: {"pairs": len(levels[name]), "accuracy": float(right[levels[name]].mean()),
                              "js_divergence": float(js[levels[name]].mean())} for name in order}}


def _regression(predictor: Predictor, pairs: Sequence[Pair], batch_size: int, source: str):
    gold = [_gold_score(pair, i, source) for i, pair in enumerate(pairs)]
    raw = predictor.predict_logits(pairs, batch_size=batch_size)[:, 0].astype(np.float64)
    fitted = predictor.calibration
    mapped = fitted["scale"] * raw + fitted["shift"] if fitted is not None else None
    scores = [float(s) for s in (mapped if mapped is not None and predictor.calibrated else raw)]
    bounds = predictor.score_range
    metrics = {"data": source, "backend": getattr(predictor, "backend", None),
               **regression_report(gold, scores, (bounds.low, bounds.high))}
    truth = np.asarray(gold)
    errors = lambda s: {"mse": float(np.mean((s - truth) ** 2)), "mae": float(np.mean(np.abs(s - truth)))}  # noqa: E731
    metrics["calibration"] = {
        "applied": mapped is not None and predictor.calibrated,
        **({"scale": fitted["scale"], "shift": fitted["shift"]} if fitted is not None else {}),
        "uncalibrated": errors(raw), "calibrated": errors(mapped) if mapped is not None else None}
    for name in ("pearson", "spearman"):
        if metrics[name] is None:
            log.warning("%s: %s correlation is undefined (the %s scores are all equal); metrics.json has null",
                        source or "data", name.capitalize(),
                        "gold" if len(set(gold)) == 1 else "predicted")
    rows = [{"premise": pair.premise, "hypothesis": pair.hypothesis, "gold": g, "score": s}
            for pair, g, s in zip(pairs, gold, scores)]
    plots = {"predictions_scatter.png": lambda fh: plot_scatter(gold, scores, metrics, fh),
             "residuals_histogram.png": lambda fh: plot_residuals(gold, scores, fh)}
    return metrics, rows, plots


def _gold_score(pair: Pair, i: int, source: str) -> float:
    label = pair.label
    try:
        value = float(label) if not isinstance(label, bool) else math.nan
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise CorpusError(f"{source or 'data'}: pair {i + 1}: gold {label!r} is not a score; this is a regression "
                          "model (one similarity score per pair), so its gold labels must be numbers")
    return value


def _write_report(output_dir: Path, rows: list[dict], metrics: dict,
                  plots: dict[str, Callable]) -> None:
    with disk_full_as_error(output_dir), contextlib.ExitStack() as files:
        # Each file is renamed into place as its block exits, in reverse order, once all are written and
        # synced: a write that fails first leaves every previous file in place.
        preds, summary = (files.enter_context(open_atomic(output_dir / name))
                          for name in ("predictions.jsonl", "metrics.json"))
        images = [files.enter_context(open_atomic(output_dir / name, "wb")) for name in plots]
        for row in rows:
            preds.write(json.dumps(row, ensure_ascii=False) + "\n")
        summary.write(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
        for draw, fh in zip(plots.values(), images):
            draw(fh)
        for fh in (preds, summary, *images):
            fh.flush()
            os.fsync(fh.fileno())
    # A report of the other task in the same folder would otherwise leave its plot beside this one's metrics.
    stale = {name for names in REPORT_FILES.values() for name in names} - {"predictions.jsonl", "metrics.json",
                                                                           *plots}
    for name in stale:
        (output_dir / name).unlink(missing_ok=True)
