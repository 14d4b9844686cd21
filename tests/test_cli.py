"""The command line: thin over the API, clear errors with exit status 2."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from korpair.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_help_lists_commands():
    result = run("--help")
    assert result.exit_code == 0
    for command in ("train", "evaluate", "predict", "serve", "config", "corpora"):
        assert command in result.output


def test_bad_config_key_exits_2_naming_the_key(tmp_path):
    result = run("train", "sample", "--set", "optim.lrr=1", "-o", str(tmp_path / "x"))
    assert result.exit_code == 2
    assert "optim.lrr: unknown key" in result.output
    assert not (tmp_path / "x").exists(), "nothing written on a config error"


def test_missing_training_file_exits_2(tmp_path):
    result = run("train", "sample", "--train-file", str(tmp_path / "none.jsonl"),
                 "--validation-file", str(tmp_path / "none.jsonl"), "-o", str(tmp_path / "x"))
    assert result.exit_code == 2
    assert "none.jsonl: file not found" in result.output


def test_evaluate_writes_report(trained_run, tmp_path):
    out = tmp_path / "eval"
    result = run("evaluate", str(trained_run.model_dir), "--corpus", "sample", "--split", "test", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output and "confusion matrix" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    lines = (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == metrics["n"] > 0
    first = json.loads(lines[0])
    assert set(first) == {"premise", "hypothesis", "gold", "predicted", "scores"}
    assert abs(sum(first["scores"].values()) - 1) < 1e-4
    assert sum(map(sum, metrics["confusion_matrix"])) == metrics["n"]
    assert (out / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert set(metrics["per_class"]) == {"entailment", "neutral", "contradiction"}


def test_evaluate_unknown_gold_label(trained_run, write_jsonl):
    path = write_jsonl([{"premise": "가", "hypothesis": "나", "label": "maybe"}])
    result = run("evaluate", str(trained_run.model_dir), "--data", str(path))
    assert result.exit_code == 2 and "data.jsonl:1: unknown label 'maybe'" in result.output


def test_predict_one_pair(trained_run):
    result = run("predict", str(trained_run.model_dir), "--premise", "비가 온다", "--hypothesis", "날씨가 맑다")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["label"] in answer["scores"]


def test_predict_file_round_trip_keeps_order(trained_run, tmp_path, write_jsonl):
    rows = [{"premise": f"민수는 {i}번째 사과를 먹었다", "hypothesis": "민수는 과일을 먹었다"} for i in range(50)]
    src = write_jsonl(rows, "in.jsonl")
    for suffix in (".jsonl", ".csv"):
        dst = tmp_path / f"out{suffix}"
        result = run("predict", str(trained_run.model_dir), "-i", str(src), "-o", str(dst))
        assert result.exit_code == 0, result.output
        if suffix == ".jsonl":
            got = [json.loads(line) for line in dst.read_text(encoding="utf-8").splitlines()]
        else:
            with open(dst, newline="", encoding="utf-8") as fh:
                got = list(csv.DictReader(fh))
        assert [g["premise"] for g in got] == [r["premise"] for r in rows]


def test_predict_file_bad_row_leaves_no_output(trained_run, tmp_path, write_jsonl):
    src = write_jsonl([{"premise": "가", "hypothesis": "나"}, {"premise": "", "hypothesis": "나"}], "in.jsonl")
    dst = tmp_path / "out.jsonl"
    result = run("predict", str(trained_run.model_dir), "-i", str(src), "-o", str(dst))
    assert result.exit_code == 2 and "in.jsonl:2: empty first text" in result.output
    assert not dst.exists() and not list(tmp_path.glob(".out.jsonl*"))


def test_not_a_model_folder(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    result = run("predict", str(tmp_path), "--premise", "a", "--hypothesis", "b")
    assert result.exit_code == 2 and "did you mean" in result.output


def test_predict_file_in_bf16_agrees_with_fp32(learned_run, pair_task_files, tmp_path):
    """bf16 autocast is the fast inference path; on a model with real margins it gives the same labels."""
    outputs = {}
    for precision in ("32", "bf16"):
        out = tmp_path / f"{precision}.jsonl"
        result = run("predict", str(learned_run.model_dir), "--input", str(pair_task_files / "validation.jsonl"),
                     "--output", str(out), "--precision", precision)
        assert result.exit_code == 0, result.output
        outputs[precision] = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    fp32, bf16 = outputs["32"], outputs["bf16"]
    assert len(fp32) == len(bf16) == 600
    agreement = sum(a["label"] == b["label"] for a, b in zip(fp32, bf16)) / len(fp32)
    assert agreement >= 0.98, agreement
    worst = max(abs(a["scores"][k] - b["scores"][k]) for a, b in zip(fp32, bf16) for k in a["scores"])
    assert 0 < worst < 0.05, "bf16 really ran, and stayed close to fp32"


def test_precision_is_checked(tiny_model_dir, tmp_path):
    from korpair import api
    from korpair.errors import ConfigError
    from korpair.inference import Predictor

    bad = run("predict", str(tiny_model_dir), "--premise", "가", "--hypothesis", "나", "--precision", "fp8")
    assert bad.exit_code == 2 and "fp8" in bad.output
    with pytest.raises(ConfigError, match="precision 'fp8'"):
        api.predict(tiny_model_dir, [("가", "나")], precision="fp8")
    with pytest.raises(ConfigError, match="precision 'half'"):
        Predictor.from_pretrained(tiny_model_dir, precision="half")
