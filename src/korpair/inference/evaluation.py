"""Score a saved model on labelled pairs and write a report.

The report folder gets ``metrics.json`` (accuracy, macro-F1, per-class
precision/recall/F1, confusion matrix), ``confusion_matrix.png`` and
``predictions.jsonl`` (both texts, gold, predicted label, probabilities).

Example::

    report = evaluate_pairs(Predictor.from_pretrained("runs/sample/model"), pairs, Path("runs/sample/eval"))
    report.metrics["accuracy"]  # 0.86
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from korpair.atomic import open_atomic
from korpair.errors import CorpusError, disk_full_as_error
from korpair.inference.metrics import classification_report
from korpair.inference.plots import plot_confusion_matrix
from korpair.inference.predictor import Predictor
from korpair.types import Pair


@dataclass
class EvalReport:
    metrics: dict
    output_dir: Path

    @property
    def predictions_file(self) -> Path:
        return self.output_dir / "predictions.jsonl"


def evaluate_pairs(predictor: Predictor, pairs: Sequence[Pair], output_dir: Path,
                   batch_size: int = 64, source: str = "") -> EvalReport:
    """Predict every pair, compare with its gold label, write metrics, plot and predictions.

    The three files replace a previous report together: if one cannot be
    written (a full disk is a ``DiskFullError`` naming ``output_dir``), none is.
    """
    names = predictor.labels
    unknown = sorted({p.label for p in pairs} - set(names))
    if unknown:
        raise CorpusError(f"{source or 'data'}: gold labels {unknown} are not labels of this model {list(names)}")
    if not pairs:
        raise CorpusError(f"{source or 'data'}: no labelled pairs to evaluate")
    predictions = predictor.predict(pairs, batch_size=batch_size)
    gold = [names.index(p.label) for p in pairs]
    predicted = [names.index(p.label) for p in predictions]
    metrics = {"data": source, **classification_report(gold, predicted, names)}

    output_dir = Path(output_dir)
    with disk_full_as_error(output_dir), contextlib.ExitStack() as files:
        # Each file is renamed into place as its block exits, in reverse order, once all are written and
        # synced: a write that fails first leaves every previous file in place.
        preds, summary = (files.enter_context(open_atomic(output_dir / name))
                          for name in ("predictions.jsonl", "metrics.json"))
        plot = files.enter_context(open_atomic(output_dir / "confusion_matrix.png", "wb"))
        for pair, pred in zip(pairs, predictions):
            preds.write(json.dumps({"premise": pair.premise, "hypothesis": pair.hypothesis, "gold": pair.label,
                                    "predicted": pred.label, "scores": pred.scores}, ensure_ascii=False) + "\n")
        summary.write(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
        plot_confusion_matrix(metrics["confusion_matrix"], names, plot)
        for fh in (preds, summary, plot):
            fh.flush()
            os.fsync(fh.fileno())
    return EvalReport(metrics, output_dir)
