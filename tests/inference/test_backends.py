"""Every backend exported, timed and recorded; the fastest one that agrees with PyTorch is what loads by default."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
from typer.testing import CliRunner

from korpair import Predictor, api
from korpair.cli import app
from korpair.errors import ConfigError, CorpusError, ModelFolderError
from korpair.inference import backends

pytest.importorskip("onnxruntime")
ONNX = ["onnx", "onnx-int8"]


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    """A trained model (its corpus recorded) with both ONNX backends exported and timed."""
    model = tmp_path_factory.mktemp("backends") / "model"
    shutil.copytree(trained_run.model_dir, model)
    record = api.export_backends(model, backends=ONNX)
    return model, record


def test_record_names_the_fastest_backend_that_agrees(exported):
    model, record = exported
    assert json.loads((model / "backends.json").read_text()) == record
    assert set(record["backends"]) == {"torch", *ONNX}
    assert record["probe"]["pairs"] > 50  # the sample corpus's own validation pairs
    eligible = {n: e["pairs_per_s"] for n, e in record["backends"].items() if e["eligible"]}
    assert record["fastest"] == max(eligible, key=eligible.get)
    for name in ONNX:
        entry = record["backends"][name]
        assert (model / entry["folder"] / "model.onnx").is_file()
        assert entry["eligible"] == (entry["label_agreement"] >= record["probe"]["min_agreement"])
    assert record["backends"]["onnx"]["label_agreement"] == 1.0


def test_auto_loads_the_recorded_backend_and_a_name_overrides_it(exported, trained_run):
    model, record = exported
    auto = Predictor.from_pretrained(model)
    assert auto.backend == record["fastest"]
    assert auto.runtime.name == ("PyTorch" if record["fastest"].startswith("torch") else "ONNX Runtime")
    torch_model = Predictor.from_pretrained(model, backend="torch")
    assert torch_model.runtime.name == "PyTorch" and torch_model.backend == "torch"
    assert Predictor.from_pretrained(model, backend="onnx").runtime.name == "ONNX Runtime"
    # an explicit precision means PyTorch, whatever the record says; so does a GPU (the record times CPU backends)
    assert Predictor.from_pretrained(model, device="cpu").backend == record["fastest"]
    with pytest.raises(ConfigError, match="PyTorch sees no CUDA GPU"):  # not ONNX Runtime's or OpenVINO's error
        Predictor.from_pretrained(model, device="cuda")
    assert Predictor.from_pretrained(model, precision="bf16").backend == "torch-bf16"
    pairs = [("비가 온다", "날씨가 맑다"), ("민수는 학교에 갔다", "민수는 집에 있다")]
    assert [p.label for p in torch_model.predict(pairs)] == [p.label for p in api.predict(model, pairs,
                                                                                          backend="onnx")]


def test_a_backend_below_the_agreement_bar_is_never_chosen(trained_run, tmp_path, monkeypatch):
    model = tmp_path / "model"
    shutil.copytree(trained_run.model_dir, model)
    rates = {"PyTorch": 10.0, "ONNX Runtime": 100.0, "OpenVINO": 60.0}
    monkeypatch.setattr(backends, "_rate", lambda predictor, *a: rates[predictor.runtime.name] * (
        2 if "int8" in str(predictor.backend) else 1))
    from korpair.inference import onnx

    real = onnx.agreement

    def int8_disagrees(reference, exported, pairs, batch_size=64):
        result = real(reference, exported, pairs, batch_size)
        return {**result, "label_agreement": 0.9} if exported.backend == "onnx-int8" else result

    monkeypatch.setattr(onnx, "agreement", int8_disagrees)
    record = api.export_backends(model, backends=ONNX)
    assert record["backends"]["onnx-int8"]["pairs_per_s"] == 200.0
    assert not record["backends"]["onnx-int8"]["eligible"]
    assert record["fastest"] == "onnx"
    result = CliRunner().invoke(app, ["export", str(model), "--min-agreement", "0.5"])
    assert result.exit_code == 0, result.output
    assert json.loads((model / "backends.json").read_text())["fastest"] == "onnx-int8"
    assert "chosen" in result.output and "onnx-int8" in result.output


def test_bad_backend_names_and_records(exported, tmp_path, caplog):
    assert set(backends.BACKEND_CHOICES) == {"auto", *backends.BACKENDS}  # the CLI's choices are the real ones
    model, record = exported
    with pytest.raises(ConfigError, match="backend 'tpu'"):
        Predictor.from_pretrained(model, backend="tpu")
    with pytest.raises(ModelFolderError, match="openvino-int8.*has not been exported"):
        Predictor.from_pretrained(model, backend="openvino-int8")
    copy = tmp_path / "model"
    shutil.copytree(model, copy)
    (copy / "backends.json").write_text('{"fastest": "quantum"}')
    with pytest.raises(ModelFolderError, match="backends.json"):
        Predictor.from_pretrained(copy)
    elsewhere = {**record, "machine": {**record["machine"], "cpu": "Some Other CPU"}}
    (copy / "backends.json").write_text(json.dumps(elsewhere))
    with caplog.at_level(logging.WARNING, logger="korpair"):
        assert Predictor.from_pretrained(copy).backend == record["fastest"]
    assert "Some Other CPU" in caplog.text


def test_pairs_come_from_data_where_the_model_records_no_corpus(tiny_model_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    with pytest.raises(CorpusError, match="records no training corpus.*data="):
        api.export_backends(model, backends=["onnx"])
    assert not (model / "onnx").exists() and not (model / "backends.json").exists()
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("premise\thypothesis\n" + "비가 온다\t날씨가 맑다\n" * 40, encoding="utf-8")
    result = CliRunner().invoke(app, ["export", str(model), "--data", str(pairs)])
    assert result.exit_code == 0, result.output
    record = json.loads((model / "backends.json").read_text())
    assert record["probe"]["pairs"] == 40


def test_cli_export_flags(tiny_model_dir, tmp_path):
    bad = CliRunner().invoke(app, ["export", str(tiny_model_dir), "--quantize", "int8"])
    assert bad.exit_code != 0 and "--format onnx or openvino" in bad.output
    bad = CliRunner().invoke(app, ["export", str(tiny_model_dir), "--format", "tflite"])
    assert bad.exit_code != 0 and "auto, onnx or openvino" in bad.output
    missing = CliRunner().invoke(app, ["export", str(tiny_model_dir)])
    assert missing.exit_code == 2 and "--data" in missing.output  # the library's data= in the command's flag
