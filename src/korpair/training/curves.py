"""``training_curves.png``: loss, validation metrics and learning rate against optimizer steps.

A classifier's validation panel shows accuracy and F1, a regression model's
the correlations (Spearman, Pearson) beside a panel of its errors (MSE, MAE);
the metric that picks the best checkpoint is marked, its best value starred.
Parameter groups that follow one schedule (decayed and undecayed weights) are
one learning-rate line.

Example::

    plot_training_curves(run / "logs" / "metrics.csv", run / "training_curves.png", monitor="val_spearman")
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # not pyplot: no backend switched (a notebook's plots stay inline), no registry

from korpair.atomic import write_figure
from korpair.config import LOWER_IS_BETTER

Series = list[tuple[int, float]]
PANELS = (  # title, the metrics it shows (those a run logged)
    ("loss", ("train_loss", "val_loss")),
    ("validation", ("val_accuracy", "val_macro_f1", "val_f1")),
    ("validation correlation", ("val_spearman", "val_pearson")),
    ("validation error", ("val_mse", "val_mae")),
)


def read_metrics_csv(path: Path) -> dict[str, Series]:
    """Lightning's CSVLogger file as ``{metric: [(step, value), ...]}``."""
    series: dict[str, Series] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            step = int(float(row.get("step") or 0))
            for key, value in row.items():
                if key in ("step", "epoch") or value in ("", None):
                    continue
                series.setdefault(key, []).append((step, float(value)))
    return series


def curve_panels(metrics_csv: Path | Sequence[Path]) -> list[tuple[str, dict[str, Series]]]:
    """What ``plot_training_curves`` draws: ``[(panel title, {line label: [(step, value), ...]})]``.

    Several CSV files (a run resumed after an interruption) are merged by step.
    """
    files = [metrics_csv] if isinstance(metrics_csv, (str, Path)) else list(metrics_csv)
    series: dict[str, Series] = {}
    for path in files:
        for key, points in read_metrics_csv(Path(path)).items():
            series.setdefault(key, []).extend(points)
    series = {k: sorted(v) for k, v in series.items()}
    panels = [(title, {k: series[k] for k in keys if k in series}) for title, keys in PANELS]
    panels.append(("learning rate", _distinct_schedules({k: v for k, v in series.items() if k.startswith("lr-")})))
    return [(title, lines) for title, lines in panels if lines]


def _distinct_schedules(lrs: dict[str, Series]) -> dict[str, Series]:
    """One line per schedule: groups whose rates are equal at every step share a line (``lr-AdamW``)."""
    groups: list[tuple[list[str], Series]] = []
    for key, points in lrs.items():
        for keys, shown in groups:
            if shown == points:
                keys.append(key)
                break
        else:
            groups.append(([key], points))
    if len(groups) == 1:  # the usual case: name the optimizer, not its groups
        keys, points = groups[0]
        return {keys[0].split("/")[0]: points}
    return {" = ".join(keys): points for keys, points in groups}


def plot_training_curves(metrics_csv: Path | Sequence[Path], out_png: Path, monitor: str | None = None) -> Path:
    """Loss, validation metrics and learning rate against optimizer steps; ``monitor`` (the metric that picks
    the best checkpoint) is marked and its best value starred."""
    panels = curve_panels(metrics_csv)
    fig = Figure(figsize=(5 * max(len(panels), 1), 3.6))
    axes = fig.subplots(1, max(len(panels), 1))
    axes = np.atleast_1d(axes)
    for ax, (title, lines) in zip(axes, panels):
        for key, points in lines.items():
            steps, values = zip(*points)
            style = "-" if len(steps) > 20 else "o-"
            monitored = key == monitor
            [line] = ax.plot(steps, values, style, label=f"{key} (best checkpoint)" if monitored else key,
                             markersize=3, linewidth=2.2 if monitored else 1.5)
            if monitored:
                best = int(np.argmin(values) if key in LOWER_IS_BETTER else np.argmax(values))
                ax.plot([steps[best]], [values[best]], "*", color=line.get_color(), markersize=12)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    write_figure(out_png, fig)
    return out_png
