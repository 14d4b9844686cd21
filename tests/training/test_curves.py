"""training_curves.png: the panels a task reports, one learning-rate line per schedule, the monitor marked."""

from __future__ import annotations

import csv

import pytest

import korpair.training.curves as curves


def write_csv(path, rows: list[dict]) -> None:
    keys = sorted({k for r in rows for k in r})
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, keys)
        writer.writeheader()
        writer.writerows(rows)


def train_rows(steps, lr2=None) -> list[dict]:
    rows = []
    for step in steps:
        lr = 1e-3 * (1 - step / 100)
        rows.append({"step": step, "epoch": 0, "train_loss": 1 / (step + 1), "lr-AdamW/pg1": lr,
                     "lr-AdamW/pg2": lr if lr2 is None else lr2(step)})
    return rows


@pytest.fixture
def figures(monkeypatch):
    """The figures plot_training_curves draws, kept instead of written."""
    drawn = []
    monkeypatch.setattr(curves, "write_figure", lambda path, fig: drawn.append(fig))
    return drawn


def lines_of(fig) -> dict[str, dict[str, list]]:
    """{panel title: {line label: x data}} of a figure, markers without a label left out."""
    return {ax.get_title(): {line.get_label(): list(line.get_xdata()) for line in ax.get_lines()
                             if not line.get_label().startswith("_")} for ax in fig.axes}


def test_identical_parameter_groups_are_one_line(tmp_path, figures):
    write_csv(tmp_path / "m.csv", train_rows(range(0, 50, 5)))
    curves.plot_training_curves(tmp_path / "m.csv", tmp_path / "c.png")
    assert lines_of(figures[0])["learning rate"] == {"lr-AdamW": list(range(0, 50, 5))}


def test_groups_on_different_schedules_keep_their_lines(tmp_path):
    write_csv(tmp_path / "m.csv", train_rows(range(0, 50, 5), lr2=lambda step: 5e-4))
    panels = dict(curves.curve_panels(tmp_path / "m.csv"))
    assert set(panels["learning rate"]) == {"lr-AdamW/pg1", "lr-AdamW/pg2"}


def test_a_classifier_shows_accuracy_and_f1_and_stars_its_best(tmp_path, figures):
    rows = train_rows(range(0, 60, 5))
    for step, accuracy in ((19, 0.6), (39, 0.8), (59, 0.7)):
        rows.append({"step": step, "epoch": 0, "val_loss": 1 - accuracy, "val_accuracy": accuracy,
                     "val_macro_f1": accuracy - 0.1, "val_f1": accuracy - 0.05})
    write_csv(tmp_path / "m.csv", rows)
    curves.plot_training_curves(tmp_path / "m.csv", tmp_path / "c.png", monitor="val_f1")
    [fig] = figures
    shown = lines_of(fig)
    assert set(shown) == {"loss", "validation", "learning rate"}
    assert set(shown["validation"]) == {"val_accuracy", "val_macro_f1", "val_f1 (best checkpoint)"}
    [axis] = [ax for ax in fig.axes if ax.get_title() == "validation"]
    [star] = [line for line in axis.get_lines() if line.get_marker() == "*"]
    assert list(star.get_xdata()) == [39] and list(star.get_ydata()) == [pytest.approx(0.75)]


def test_a_regression_run_shows_correlations_and_errors_and_stars_a_minimum(tmp_path, figures):
    rows = train_rows(range(0, 60, 5))
    for step, mse in ((19, 1.5), (39, 0.9), (59, 1.1)):
        rows.append({"step": step, "epoch": 0, "val_loss": mse, "val_mse": mse, "val_mae": mse / 2,
                     "val_spearman": 1 - mse / 2, "val_pearson": 1 - mse / 3})
    write_csv(tmp_path / "m.csv", rows)
    curves.plot_training_curves(tmp_path / "m.csv", tmp_path / "c.png", monitor="val_mse")
    [fig] = figures
    shown = lines_of(fig)
    assert set(shown) == {"loss", "validation correlation", "validation error", "learning rate"}
    assert set(shown["validation correlation"]) == {"val_spearman", "val_pearson"}
    assert set(shown["validation error"]) == {"val_mse (best checkpoint)", "val_mae"}
    [axis] = [ax for ax in fig.axes if ax.get_title() == "validation error"]
    [star] = [line for line in axis.get_lines() if line.get_marker() == "*"]
    assert list(star.get_xdata()) == [39], "lower is better for an error"


def test_a_trained_run_has_no_point_after_its_last_validation(trained_run):
    """The best checkpoint's validation after training is metrics.json's, not a point of the curves."""
    panels = dict(curves.curve_panels(sorted((trained_run.output_dir / "logs").glob("metrics*.csv"))))
    accuracy = panels["validation"]["val_accuracy"]
    assert len(accuracy) == trained_run.metrics["epochs"] == 2
    assert accuracy[-1][0] < trained_run.metrics["global_step"]
    assert list(panels["learning rate"]) == ["lr-AdamW"]


def test_plotting_leaves_the_callers_matplotlib_backend_alone(tmp_path):
    """A notebook's inline backend must survive korpair's plots (it used to be switched to Agg for good)."""
    import subprocess
    import sys

    code = ("import matplotlib; matplotlib.use('svg'); import numpy as np\n"
            "from korpair.inference.plots import plot_confusion_matrix\n"
            f"plot_confusion_matrix(np.eye(3, dtype=int), ['a', 'b', 'c'], {str(tmp_path / 'cm.png')!r})\n"
            "import korpair.training.curves, korpair.tuning.plots\n"
            "print(matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "svg" and (tmp_path / "cm.png").read_bytes()[:4] == b"\x89PNG"
