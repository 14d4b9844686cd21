"""``korpair train`` refuses, before it writes anything, a monitor the run does not report and bad scores.

Each failure is exit 2 with a message naming the config key or the file and
line, and leaves no output folder and no features cache behind.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from korpair.cli import app

runner = CliRunner()
TINY = ["model.from_scratch=true", "model.vocab_size=300", "model.hidden_size=32", "model.num_layers=1",
        "model.num_heads=2", "model.intermediate_size=64", "trainer.max_steps=2", "trainer.progress_bar=false"]


def write(path, rows) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def scored(n: int = 40, bad: dict[int, object] | None = None) -> list[dict]:
    """Rows with fractional 0-5 scores (so ``corpus.task=auto`` reads them as regression); ``bad``: row -> score."""
    rows = [{"sentence1": f"민수는 {i}번째 책을 읽었다.", "sentence2": f"지영은 {i % 7}번째 책을 읽었다.",
             "score": round((i * 37 % 50) / 10 + 0.05, 2)} for i in range(n)]
    for i, value in (bad or {}).items():
        rows[i]["score"] = value
    return rows


def labelled(n: int = 40, labels=("entailment", "neutral", "contradiction")) -> list[dict]:
    return [{"premise": f"민수는 {i}번째 책을 읽었다.", "hypothesis": "민수는 책을 읽었다.", "label": labels[i % len(labels)]}
            for i in range(n)]


def train(tmp_path, train_rows, validation_rows, *overrides: str):
    """Run ``korpair train`` on two written files; return (result, output folder, cache folder)."""
    out, cache = tmp_path / "run", tmp_path / "cache"
    args = ["train", "--train-file", write(tmp_path / "train.jsonl", train_rows),
            "--validation-file", write(tmp_path / "validation.jsonl", validation_rows)]
    for item in [*TINY, f"trainer.output_dir={out}", f"data.cache_dir={cache}", *overrides]:
        args += ["--set", item]
    result = runner.invoke(app, args, env={"COLUMNS": "240"}, catch_exceptions=False)
    return result, out, cache


def refused(result, out, cache, *expected: str) -> None:
    text = " ".join(result.output.split())
    assert result.exit_code == 2, text
    for part in expected:
        assert part in text, (part, text)
    assert not out.exists(), "a refused run leaves no output folder"
    assert not cache.exists(), "a refused run encodes nothing"


@pytest.mark.parametrize("task", ["auto", "classification"])
def test_a_regression_monitor_on_classes_is_a_config_error(tmp_path, task):
    result, out, cache = train(tmp_path, labelled(), labelled(12), "trainer.monitor=val_spearman",
                               f"corpus.task={task}")
    refused(result, out, cache, "val_spearman is not reported by classification", "val_accuracy")


@pytest.mark.parametrize("task", ["auto", "regression"])
def test_a_classification_monitor_on_scores_is_a_config_error(tmp_path, task):
    """With corpus.task=auto only the data says it is regression: the run checks once it has read it."""
    result, out, cache = train(tmp_path, scored(), scored(12), "trainer.monitor=val_accuracy",
                               f"corpus.task={task}")
    refused(result, out, cache, "val_accuracy is not reported by regression", "val_spearman")


def test_a_builtin_classification_corpus_refuses_a_regression_monitor(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "sample", "--set", f"trainer.output_dir={out}",
                                 "--set", "trainer.monitor=val_mse"], env={"COLUMNS": "240"})
    assert result.exit_code == 2 and "val_mse is not reported by classification" in " ".join(result.output.split())
    assert not out.exists()


def test_f1_of_a_positive_label_needs_two_labels(tmp_path):
    result, out, cache = train(tmp_path, labelled(), labelled(12), "trainer.monitor=val_f1")
    refused(result, out, cache, "val_f1 is the F1 of the second label", "3 labels")


@pytest.mark.parametrize("value, task", [
    ("abc", "regression"), ("abc", "auto"),
    ("nan", "regression"), ("nan", "auto"),
    ("inf", "regression"), ("inf", "auto"),
    (7.5, "regression"), (7.5, "auto"),
    (-1, "regression"), (-1, "auto"),
])
def test_a_bad_score_is_an_error_naming_its_line(tmp_path, value, task):
    result, out, cache = train(tmp_path, scored(bad={7: value}), scored(12), f"corpus.task={task}",
                               "corpus.score_range=[0, 5]")
    refused(result, out, cache, "train.jsonl:8")


@pytest.mark.parametrize("value", ["abc", "nan", "-inf", 9])
def test_a_bad_validation_score_is_an_error_naming_its_line(tmp_path, value):
    result, out, cache = train(tmp_path, scored(), scored(12, bad={3: value}), "corpus.task=regression",
                               "corpus.score_range=[0, 5]")
    refused(result, out, cache, "validation.jsonl:4")


def test_a_regression_run_with_a_good_file_does_train(tmp_path):
    """The same files without the bad row train: the refusals above are about the row."""
    result, out, _ = train(tmp_path, scored(), scored(12), "corpus.score_range=[0, 5]")
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert {"val_spearman", "val_pearson", "val_mse", "val_mae"} <= set(metrics)
