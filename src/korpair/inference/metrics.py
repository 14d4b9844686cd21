"""Classification metrics from label ids, computed by torchmetrics."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)


def classification_report(gold: Sequence[int], predicted: Sequence[int], names: Sequence[str]) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix.

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
    return {
        "n": int(len(g)),
        "accuracy": float(multiclass_accuracy(p, g, num_classes=n, average="micro")),
        "macro_f1": float(f1.mean()),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]),
                   "f1": float(f1[i]), "support": int(support[i])}
            for i, name in enumerate(names)
        },
        "labels": list(names),
        "confusion_matrix": cm.tolist(),
    }
