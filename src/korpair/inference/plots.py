"""``confusion_matrix.png``: counts, each gold row shaded by its share."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import matplotlib

matplotlib.use("Agg")  # no display needed, safe in threads and servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from korpair.atomic import write_figure  # noqa: E402


def plot_confusion_matrix(matrix: np.ndarray, names: Sequence[str], out_png: Path | BinaryIO) -> Path | BinaryIO:
    """Counts, with each row (gold label) shaded by its share; ``out_png`` is a path (written atomically)
    or an open binary file."""
    matrix = np.asarray(matrix)
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = 1.2 + 1.1 * len(names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
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
    fig.tight_layout()
    if hasattr(out_png, "write"):  # e.g. one of several files that must appear together
        fig.savefig(out_png, format="png", dpi=120, bbox_inches="tight")
    else:
        write_figure(out_png, fig)
    plt.close(fig)
    return out_png
