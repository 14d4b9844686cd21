"""Broken model folders and full disks through the command line: ``error: PATH: ...`` and exit 2, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import broken_folders as broken
import pytest
from conftest import TINY, task_overrides
from typer.testing import CliRunner

from korpair.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def assert_error(result, path: Path, word: str) -> None:
    output = " ".join(result.output.split())  # rich wraps long lines
    assert result.exit_code == 2, result.output
    assert output.startswith("error: ") or "\nerror: " in result.output, result.output
    assert str(path).rstrip("/") in output and word.lower() in output.lower(), result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("name", broken.BROKEN)
def test_predict_with_a_broken_folder_exits_2_naming_it(tiny_model_dir, tmp_path, name):
    folder = broken.broken_copy(tiny_model_dir, tmp_path, name)
    _, file, word = broken.BROKEN[name]
    assert_error(run("predict", folder, "--premise", "a", "--hypothesis", "b"), folder / file, word)


@pytest.mark.parametrize("name", broken.BROKEN_FOR_TRAINING)
def test_train_from_a_broken_folder_exits_2_naming_it(tiny_model_dir, pair_task_files, tmp_path, name):
    folder = broken.broken_copy(tiny_model_dir, tmp_path, name)
    _, file, word = broken.BROKEN[name]
    overrides = [o for o in task_overrides(pair_task_files, tmp_path / "run") if o not in TINY]
    result = run("train", "--model", folder, "--max-steps", "2", "--no-trainer.progress_bar",
                 *[x for o in overrides for x in ("--set", o)])
    assert_error(result, folder / file, word)
    assert not (tmp_path / "run" / "model").exists()


def test_serve_with_a_negative_max_seq_length_exits_2_before_listening(tiny_model_dir, tmp_path):
    """In a child process, bounded in time: a server that starts (as today's did) would serve forever."""
    folder = broken.broken_copy(tiny_model_dir, tmp_path, "negative max_seq_length")
    _, file, word = broken.BROKEN["negative max_seq_length"]
    try:
        done = subprocess.run([sys.executable, "-m", "korpair", "serve", str(folder), "--port", "0"],
                              capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "1000"})
    except subprocess.TimeoutExpired:
        pytest.fail("korpair serve started with a negative max_seq_length")
    assert done.returncode == 2, done.stderr
    assert f"error: {folder / file}" in done.stderr and word in done.stderr and "Traceback" not in done.stderr


def test_a_full_disk_in_predict_exits_2_and_keeps_the_previous_output(tiny_model_dir, tmp_path, monkeypatch):
    source = tmp_path / "pairs.jsonl"
    source.write_text(json.dumps({"premise": "비가 온다", "hypothesis": "날씨가 맑다"}, ensure_ascii=False) + "\n")
    output = tmp_path / "predictions.jsonl"
    output.write_text("the previous predictions\n")
    monkeypatch.setattr(os, "fsync", broken.no_space)
    assert_error(run("predict", tiny_model_dir, "--input", source, "--output", output), output, "no space left")
    assert output.read_text() == "the previous predictions\n"


def test_a_full_disk_in_evaluate_exits_2_and_keeps_the_previous_report(tiny_model_dir, tmp_path, monkeypatch):
    data = tmp_path / "dev.jsonl"
    data.write_text("".join(json.dumps({"premise": f"비가 온다 {i}", "hypothesis": "날씨가 맑다", "label": "neutral"},
                                       ensure_ascii=False) + "\n" for i in range(10)))
    report = tmp_path / "eval"
    report.mkdir()
    (report / "metrics.json").write_text("{}")
    monkeypatch.setattr(os, "fsync", broken.fail_on_call(2, os.fsync))
    assert_error(run("evaluate", tiny_model_dir, "--data", data, "-o", report), report, "no space left")
    assert [p.name for p in report.iterdir()] == ["metrics.json"] and (report / "metrics.json").read_text() == "{}"


def test_a_full_disk_in_export_exits_2_and_keeps_the_previous_export(tiny_model_dir, tmp_path, monkeypatch):
    import torch

    out = tmp_path / "onnx"
    out.mkdir()
    (out / "model.onnx").write_text("the previous export")
    monkeypatch.setattr(torch.onnx, "export", broken.no_space)
    assert_error(run("export", tiny_model_dir, "--format", "onnx", "-o", out), out, "no space left")
    assert [p.name for p in out.iterdir()] == ["model.onnx"]
    assert (out / "model.onnx").read_text() == "the previous export"


def test_a_full_disk_in_train_exits_2_and_keeps_the_previous_model(pair_task_files, tmp_path, monkeypatch):
    """The run's model export finds the disk full: exit 2 naming OUTPUT_DIR/model, the old model kept."""
    from transformers import PreTrainedModel

    out = tmp_path / "run"
    previous = out / "model"
    previous.mkdir(parents=True)
    (previous / "config.json").write_text('{"previous": true}')
    monkeypatch.setattr(PreTrainedModel, "save_pretrained", broken.no_space)
    result = run("train", "--max-steps", "2", "--overwrite", "--no-trainer.progress_bar",
                 *[x for o in task_overrides(pair_task_files, out) for x in ("--set", o)])
    assert_error(result, previous, "no space left")
    assert [p.name for p in previous.iterdir()] == ["config.json"]
    assert (previous / "config.json").read_text() == '{"previous": true}'
