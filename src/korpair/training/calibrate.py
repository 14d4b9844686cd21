"""After training: fit the model's calibration on the validation split, for the model folder's ``korpair`` section.

A classifier gets a temperature (``korpair.calibration.fit_temperature``), a
regression model an affine map of its score; both change what the model
claims, never what it ranks first. The section records what was fitted and
the validation NLL and ECE (or MSE) before and after, so a user sees what it bought.

Example::

    section_calibration = fit_calibration(task, data.val_dataloader())
    section_calibration["temperature"]      # 1.7: the model was over-confident
"""

from __future__ import annotations

import numpy as np
import torch

from korpair.calibration import calibration_metrics, fit_affine, fit_temperature, softmax


def fit_calibration(task, loader) -> dict:
    """The calibration of ``task``'s model fitted on the pairs of ``loader`` (the validation split)."""
    logits, gold = _outputs(task, loader)
    if task.regression:
        scores = logits[:, 0]
        scale, shift = fit_affine(scores, gold)
        return {"method": "affine", "scale": scale, "shift": shift, "fitted_on": "validation", "pairs": len(gold),
                "before": {"mse": float(np.mean((scores - gold) ** 2))},
                "after": {"mse": float(np.mean((scale * scores + shift - gold) ** 2))}}
    labels = gold.astype(np.int64)
    temperature = fit_temperature(logits, labels)
    before = calibration_metrics(softmax(logits), labels)
    after = calibration_metrics(softmax(logits, temperature), labels)
    return {"method": "temperature", "temperature": temperature, "fitted_on": "validation", "pairs": len(gold),
            "before": {k: before[k] for k in ("nll", "ece")}, "after": {k: after[k] for k in ("nll", "ece")}}


def _outputs(task, loader) -> tuple[np.ndarray, np.ndarray]:
    """Logits in fp32 (outside any autocast: calibration is fitted on the numbers inference gives) and gold."""
    logits, gold = [], []
    was_training = task.model.training
    task.model.eval()
    try:
        with torch.no_grad():
            for batch in loader:
                batch = {k: v.to(task.device) for k, v in batch.items()}
                logits.append(task(batch).float().cpu().numpy())
                gold.append(batch["labels"].float().cpu().numpy())
    finally:
        task.model.train(was_training)
    return np.concatenate(logits).astype(np.float64), np.concatenate(gold).astype(np.float64)


def describe_calibration(calibration: dict) -> str:
    """One line: what was fitted and what it changed on the validation split."""
    b, a = calibration["before"], calibration["after"]
    if calibration["method"] == "affine":
        return (f"score x {calibration['scale']:.3f} {calibration['shift']:+.3f} "
                f"(validation MSE {b['mse']:.4f} -> {a['mse']:.4f})")
    return (f"temperature {calibration['temperature']:.3f} (validation NLL {b['nll']:.4f} -> {a['nll']:.4f}, "
            f"ECE {b['ece']:.4f} -> {a['ece']:.4f})")
