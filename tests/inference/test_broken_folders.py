"""Broken model folders and full disks give a ``KorpairError`` that names the path, never a traceback.

Each broken folder (``tests/broken_folders.py``) is a copy of a tiny valid one
with one thing damaged, as a careless copy, a hand edit or a hostile upload
leaves it. A full disk is simulated by making the writing call raise
``OSError(ENOSPC)`` part-way.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from broken_folders import BROKEN, BROKEN_FOR_TRAINING, assert_names, broken_copy, fail_on_call, no_space, snapshot

from korpair import api
from korpair.config import ModelConfig
from korpair.errors import DiskFullError, KorpairError, ModelFolderError
from korpair.inference import Predictor
from korpair.training.model import build_model_and_tokenizer
from korpair.types import LabelMap, Pair


@pytest.mark.parametrize("name", BROKEN)
def test_a_broken_folder_is_refused_when_loaded(tiny_model_dir, tmp_path, name):
    folder = broken_copy(tiny_model_dir, tmp_path, name)
    with pytest.raises(ModelFolderError) as err:
        Predictor.from_pretrained(folder).predict([("비가 온다", "날씨가 맑다")])
    assert_names(err.value, folder, name)
    assert not (tmp_path / "PAYLOAD_RAN").exists(), "no pickle payload runs"


@pytest.mark.parametrize("name", BROKEN_FOR_TRAINING)
def test_a_broken_base_model_is_refused_before_training(tiny_model_dir, tmp_path, name):
    folder = broken_copy(tiny_model_dir, tmp_path, name)
    with pytest.raises(ModelFolderError) as err:
        build_model_and_tokenizer(ModelConfig(name_or_path=str(folder)), LabelMap(("yes", "no")))
    assert_names(err.value, folder, name)
    assert not (tmp_path / "PAYLOAD_RAN").exists()


def test_a_base_model_with_other_labels_still_trains(tiny_model_dir, tmp_path):
    """Its head is replaced by one for the run's labels, so its own labels do not matter."""
    folder = broken_copy(tiny_model_dir, tmp_path, "id2label too short")
    _, model = build_model_and_tokenizer(ModelConfig(name_or_path=str(folder)), LabelMap(("a", "b", "c", "d")))
    assert model.config.id2label == {0: "a", 1: "b", 2: "c", 3: "d"}


def test_a_negative_max_seq_length_stops_serve_from_starting(tiny_model_dir, tmp_path):
    """Today it starts, then answers every request with 500."""
    from korpair.serve import serve_in_background

    folder = broken_copy(tiny_model_dir, tmp_path, "negative max_seq_length")
    with pytest.raises(ModelFolderError, match="max_seq_length"):
        serve_in_background(folder, port=0).stop()


def test_an_onnx_export_of_a_broken_folder_is_refused(tiny_model_dir, tmp_path):
    folder = broken_copy(tiny_model_dir, tmp_path, "truncated safetensors")
    with pytest.raises(ModelFolderError, match="truncated"):
        api.export(folder, tmp_path / "onnx")
    assert not (tmp_path / "onnx").exists()


# ---------------------------------------------------------------- a full disk


def assert_disk_full(err: KorpairError, path: Path) -> None:
    assert isinstance(err, DiskFullError) and str(path) in str(err), str(err)
    assert "no space left on device" in str(err) and "free space or choose another output folder" in str(err)


@pytest.mark.parametrize("failure", ["OSError", "SafetensorError"])
def test_a_full_disk_while_exporting_keeps_the_previous_model(tiny_model_dir, tmp_path, monkeypatch, failure):
    from safetensors import SafetensorError

    from korpair.training.export import export_model

    tokenizer, model = build_model_and_tokenizer(ModelConfig(name_or_path=str(tiny_model_dir)),
                                                 LabelMap(("entailment", "neutral", "contradiction")))
    target = tmp_path / "run" / "model"
    shutil.copytree(tiny_model_dir, target)
    before = snapshot(target)

    def save_half_then_fail(folder, **kwargs):
        (Path(folder) / "model.safetensors").write_bytes(b"\0" * 100)
        if failure == "OSError":
            no_space()
        # what safetensors' Rust writer raises on a full disk
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(model, "save_pretrained", save_half_then_fail)
    with pytest.raises(KorpairError) as err:
        export_model(model, tokenizer, target)
    assert_disk_full(err.value, target)
    assert snapshot(target) == before, "the previous model is untouched"
    assert [p.name for p in target.parent.iterdir()] == ["model"], "no temporary folder left"


def test_a_full_disk_while_predicting_a_file_keeps_the_previous_output(tiny_model_dir, tmp_path, monkeypatch):
    rows = [{"premise": f"비가 온다 {i}", "hypothesis": "날씨가 맑다"} for i in range(300)]
    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    output = tmp_path / "out" / "predictions.jsonl"
    output.parent.mkdir()
    output.write_text("the previous predictions\n")
    predictor = Predictor.from_pretrained(tiny_model_dir)
    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(KorpairError) as err:
        api.predict_file(predictor, source, output)
    assert_disk_full(err.value, output)
    assert output.read_text() == "the previous predictions\n"
    assert [p.name for p in output.parent.iterdir()] == ["predictions.jsonl"], "no temporary file left"


@pytest.mark.parametrize("failing_write", [1, 2, 3])
def test_a_full_disk_while_evaluating_keeps_the_previous_report(tiny_model_dir, tmp_path, monkeypatch,
                                                                failing_write):
    """Whichever of the report's three files finds the disk full, the previous report stays whole."""
    from korpair.inference import evaluate_pairs

    pairs = [Pair(f"비가 온다 {i}", "날씨가 맑다", ("entailment", "neutral", "contradiction")[i % 3])
             for i in range(30)]
    report = tmp_path / "eval"
    report.mkdir()
    for name in ("predictions.jsonl", "metrics.json", "confusion_matrix.png"):
        (report / name).write_text(f"previous {name}")
    before = snapshot(report)
    predictor = Predictor.from_pretrained(tiny_model_dir)
    monkeypatch.setattr(os, "fsync", fail_on_call(failing_write, os.fsync))
    with pytest.raises(KorpairError) as err:
        evaluate_pairs(predictor, pairs, report)
    assert_disk_full(err.value, report)
    assert snapshot(report) == before and sorted(p.name for p in report.iterdir()) == sorted(before)


def test_a_full_disk_while_exporting_onnx_keeps_the_previous_export(tiny_model_dir, tmp_path, monkeypatch):
    import torch

    out = tmp_path / "onnx"
    out.mkdir()
    (out / "model.onnx").write_text("the previous export")

    def write_half_then_fail(model, args, path, **kwargs):
        Path(path).write_bytes(b"\0" * 100)
        no_space()

    monkeypatch.setattr(torch.onnx, "export", write_half_then_fail)
    with pytest.raises(KorpairError) as err:
        api.export(tiny_model_dir, out)
    assert_disk_full(err.value, out)
    assert [p.name for p in tmp_path.iterdir()] == ["onnx"] and snapshot(out) == {"model.onnx": b"the previous export"}
