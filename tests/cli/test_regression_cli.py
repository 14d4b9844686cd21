"""Similarity (regression) and paraphrase models through ``korpair evaluate``, ``corpora`` and the API."""

from __future__ import annotations

import json
import re

import pytest
from conftest import SHARED_DATA, build_tiny_classifier
from typer.testing import CliRunner

from korpair.cli import app
from korpair.config import BUILTIN_TASKS

runner = CliRunner()
KORSTS = SHARED_DATA / "korsts"


def run(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"}, catch_exceptions=False)


def write_scored(path, n: int = 60) -> None:
    rows = [{"premise": f"민수는 {i}번째 사과를 먹었다", "hypothesis": "민수는 과일을 먹었다" if i % 3 else "비가 온다",
             "score": round((i * 7 % 51) / 10, 1)} for i in range(n)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def test_evaluate_prints_and_writes_the_regression_report(tiny_regressor_dir, tmp_path):
    from scipy.stats import pearsonr, spearmanr

    data = tmp_path / "sts.jsonl"
    write_scored(data)
    out = tmp_path / "eval"
    result = run("evaluate", tiny_regressor_dir, "--data", data, "-o", out)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    gold, predicted = [r["gold"] for r in rows], [r["score"] for r in rows]
    assert metrics["task"] == "regression" and metrics["n"] == len(rows) == 60
    assert metrics["pearson"] == pytest.approx(pearsonr(gold, predicted)[0], abs=1e-9)
    assert metrics["spearman"] == pytest.approx(spearmanr(gold, predicted)[0], abs=1e-9)
    for name, key in (("Pearson", "pearson"), ("Spearman", "spearman"), ("MSE", "mse"), ("MAE", "mae"),
                      ("F1 at 3.0", "f1_at_3")):
        assert re.search(rf"{name}\s*│\s*{metrics[key]:.4f} ", result.stdout), name
    assert "accuracy" not in result.stdout and "confusion" not in result.stdout
    assert "predictions_scatter.png" in result.stdout and (out / "predictions_scatter.png").is_file()


def test_evaluate_reads_a_regression_file_as_scores(tiny_regressor_dir, tmp_path):
    data = tmp_path / "labels.jsonl"
    data.write_text(json.dumps({"premise": "가", "hypothesis": "나", "label": "entailment"}) + "\n")
    result = run("evaluate", tiny_regressor_dir, "--data", data, "-o", tmp_path / "eval")
    output = " ".join(result.output.split())
    assert result.exit_code == 2 and "labels.jsonl:1: label 'entailment' is not a number" in output, output


@pytest.mark.skipif(not (KORSTS / "sts-dev.tsv").is_file(), reason="KorSTS is not in ../shared/data")
def test_evaluate_scores_the_korsts_corpus_in_its_range(tiny_regressor_dir, tmp_path):
    """The built-in corpus, read from its official file (quote characters and all) with its 0-5 range."""
    out = tmp_path / "eval"
    result = run("evaluate", tiny_regressor_dir, "--corpus", "korsts", "--data-dir", KORSTS, "-o", out)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["data"] == "korsts:validation" and metrics["n"] == 1500 and metrics["score_range"] == [0, 5]
    assert "f1_at_3" in metrics and "F1 at 3.0" in result.stdout
    texts = [json.loads(line)["premise"] for line in (out / "predictions.jsonl").read_text("utf-8").splitlines()]
    assert any('"' in t for t in texts)


def test_a_two_label_classifier_reports_the_f1_of_its_positive_label(tmp_path):
    model = build_tiny_classifier(tmp_path / "paraphrase" / "model", labels=("0", "1"))
    data = tmp_path / "pairs.tsv"
    data.write_text("sentence1\tsentence2\tlabel\n" + "".join(f"문장 {i}\t다른 문장 {i}\t{i % 2}\n" for i in range(20)),
                    encoding="utf-8")
    result = run("evaluate", model, "--data", data, "-o", tmp_path / "eval")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["positive_label"] == "1"
    shown = " ".join(result.stdout.split())
    assert f"F1 of '1' {metrics['f1']:.4f}" in shown and "confusion matrix" in shown


def test_corpora_lists_every_built_in_corpus_with_its_task():
    result = run("corpora")
    assert result.exit_code == 0, result.output
    for name, task in BUILTIN_TASKS.items():
        row = next(line for line in result.stdout.splitlines() if f"│ {name} " in line)
        assert task in row, (name, row)
    assert "regression (0-5)" in result.stdout


def test_evaluate_corpus_help_names_every_built_in_corpus():
    """Read from korpair.config, as train's --corpus is: a corpus added there shows up here."""
    text = " ".join(runner.invoke(app, ["evaluate", "--help"], env={"COLUMNS": "1000"}).output.split())
    helps = [text[match.end():match.end() + 300] for match in re.finditer(r"--corpus\b(?!\.)", text)]
    assert any(all(name in help for name in BUILTIN_TASKS) for help in helps), helps
