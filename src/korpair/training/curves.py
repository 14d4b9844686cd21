"""``training_curves.png``: loss, validation metrics and learning rate against optimizer steps."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display needed, safe in threads and servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from korpair.atomic import write_figure  # noqa: E402


def read_metrics_csv(path: Path) -> dict[str, list[tuple[int, float]]]:
    """Lightning's CSVLogger file as ``{metric: [(step, value), ...]}``."""
    series: dict[str, list[tuple[int, float]]] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            step = int(float(row.get("step") or 0))
            for key, value in row.items():
                if key in ("step", "epoch") or value in ("", None):
                    continue
                series.setdefault(key, []).append((step, float(value)))
    return series


def plot_training_curves(metrics_csv: Path | Sequence[Path], out_png: Path) -> Path:
    """Loss, validation metrics and learning rate against optimizer steps.

    Several CSV files (a run resumed after an interruption) are merged by step.
    """
    files = [metrics_csv] if isinstance(metrics_csv, (str, Path)) else list(metrics_csv)
    series: dict[str, list[tuple[int, float]]] = {}
    for path in files:
        for key, points in read_metrics_csv(Path(path)).items():
            series.setdefault(key, []).extend(points)
    series = {k: sorted(v) for k, v in series.items()}
    panels = [
        ("loss", [k for k in ("train_loss", "val_loss") if k in series]),
        ("validation", [k for k in ("val_accuracy", "val_macro_f1") if k in series]),
        ("learning rate", [k for k in series if k.startswith("lr")]),
    ]
    panels = [(title, keys) for title, keys in panels if keys]
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(5 * max(len(panels), 1), 3.6))
    axes = np.atleast_1d(axes)
    for ax, (title, keys) in zip(axes, panels):
        for key in keys:
            steps, values = zip(*series[key])
            style = "-" if len(steps) > 20 else "o-"
            ax.plot(steps, values, style, label=key, markersize=3)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    write_figure(out_png, fig)
    plt.close(fig)
    return out_png
