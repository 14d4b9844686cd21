"""ONNX export (fp32 and int8): Predictor.from_pretrained opens it, it agrees with PyTorch, it carries the
model folder's metadata, is written atomically and fails clearly."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient

from korpair.config import CorpusConfig
from korpair.corpora import read_pairs, read_split
from korpair.errors import ConfigError, ModelFolderError
from korpair.features import encode_pairs
from korpair.inference import Predictor
from korpair.inference import onnx as korpair_onnx
from korpair.inference.onnx import export_onnx
from korpair.inference.packing import PACKED_INPUTS, packed_calls
from korpair.model_folder import trained_max_length
from korpair.serve import create_app
from korpair.types import Pair


@pytest.fixture(scope="module")
def test_pairs() -> list[Pair]:
    return read_split(CorpusConfig(name="sample"), "test")


@pytest.fixture(scope="module")
def trained_exports(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    return {"fp32": export_onnx(trained_run.model_dir, out / "fp32")}


def test_default_folders_hold_a_complete_model(tiny_model_dir, tmp_path):
    model_dir = shutil.copytree(tiny_model_dir, tmp_path / "model")
    fp32, int8 = export_onnx(model_dir), export_onnx(model_dir, quantize=True)
    assert (fp32, int8) == (model_dir / "onnx", model_dir / "onnx-int8")
    for folder in (fp32, int8):
        for name in ("model.onnx", "config.json", "tokenizer.json", "tokenizer_config.json"):
            assert (folder / name).is_file(), (folder, name)
        assert json.loads((folder / "config.json").read_text())["id2label"] == {
            "0": "entailment", "1": "neutral", "2": "contradiction"}
    # int8 weights: the file shrinks (the tiny model's embeddings stay float, so not by 4x)
    assert (int8 / "model.onnx").stat().st_size < (fp32 / "model.onnx").stat().st_size


def _axes(folder) -> tuple[dict, dict]:
    import onnx

    graph = onnx.load(str(folder / "model.onnx")).graph
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in [*graph.input, *graph.output]}
    return {i.name: dims[i.name] for i in graph.input}, {o.name: dims[o.name] for o in graph.output}


def test_a_bert_classifier_is_exported_packed_with_dynamic_rows_tokens_and_pairs(tiny_model_dir, tmp_path):
    inputs, outputs = _axes(export_onnx(tiny_model_dir, tmp_path / "onnx"))
    # several pairs a row, no padding (korpair.inference.packing), as PyTorch and OpenVINO run it on a CPU
    assert list(inputs) == list(PACKED_INPUTS)
    assert inputs == {**{name: ["rows", "tokens"] for name in PACKED_INPUTS[:4]}, "cls_index": ["pairs"]}
    assert outputs == {"logits": ["pairs", 3]}


def test_other_models_are_exported_for_padded_batches(tiny_electra_dir, tmp_path, test_pairs):
    folder = export_onnx(tiny_electra_dir, tmp_path / "onnx")
    inputs, outputs = _axes(folder)
    assert inputs == {name: ["batch", "sequence"] for name in ("input_ids", "attention_mask", "token_type_ids")}
    assert outputs == {"logits": ["batch", 3]}
    predictor = Predictor.from_pretrained(folder)
    assert not predictor.runtime.packed
    expected = Predictor.from_pretrained(tiny_electra_dir).predict_logits(test_pairs)
    for batch_size in (1, 7, 64):
        np.testing.assert_allclose(predictor.predict_logits(test_pairs, batch_size), expected, atol=1e-5)


def test_tiny_model_agrees_with_pytorch_at_any_batch_size(tiny_model_dir, tmp_path, test_pairs):
    folder = export_onnx(tiny_model_dir, tmp_path / "onnx")
    expected = Predictor.from_pretrained(tiny_model_dir).predict_proba(test_pairs)
    onnx_predictor = Predictor.from_pretrained(folder)
    assert onnx_predictor.runtime.name == "ONNX Runtime" and onnx_predictor.runtime.packed
    assert onnx_predictor.labels == ("entailment", "neutral", "contradiction")
    for batch_size in (1, 7, 64):
        got = onnx_predictor.predict_proba(test_pairs, batch_size)
        np.testing.assert_allclose(got, expected, atol=1e-5)
    # the graph's own answer, fed packed rows by hand: each pair's logits whatever its row's company
    calls = list(packed_calls(encode_pairs(onnx_predictor.tokenizer, test_pairs, None, 64), batch_size=64))
    assert any(len(set(inputs["cls_index"] // inputs["input_ids"].shape[1])) < len(inputs["cls_index"])
               for _, inputs in calls)  # some row holds more than one pair
    logits = np.empty((len(test_pairs), 3), dtype=np.float32)
    for idx, inputs in calls:
        logits[idx] = onnx_predictor.runtime.packed_logits(inputs)
    np.testing.assert_allclose(logits, Predictor.from_pretrained(tiny_model_dir).predict_logits(test_pairs),
                               atol=1e-5)


def test_trained_model_fp32_agrees_fully(trained_run, trained_exports, test_pairs):
    ours = Predictor.from_pretrained(trained_run.model_dir).predict(test_pairs)
    theirs = Predictor.from_pretrained(trained_exports["fp32"]).predict(test_pairs, batch_size=64)
    assert [p.label for p in theirs] == [p.label for p in ours]
    for a, b in zip(ours, theirs):
        assert b.scores == pytest.approx(a.scores, abs=1e-4)


def test_learned_model_int8_agrees(learned_run, pair_task_files, tmp_path):
    """On a model with real margins (the sample run is near chance, so its labels are near-ties)."""
    pairs = read_pairs(pair_task_files / "validation.jsonl")
    ours = Predictor.from_pretrained(learned_run.model_dir).predict(pairs)
    theirs = Predictor.from_pretrained(export_onnx(learned_run.model_dir, tmp_path / "int8", quantize=True)
                                       ).predict(pairs)
    agreement = np.mean([a.label == b.label for a, b in zip(ours, theirs)])
    assert agreement >= 0.98, agreement


def test_trained_max_length_carries_over(trained_run, trained_exports):
    section = json.loads((trained_exports["fp32"] / "config.json").read_text())["korpair"]
    assert section["max_seq_length"] == 64 and section["labels"] == ["entailment", "neutral", "contradiction"]
    onnx_predictor = Predictor.from_pretrained(trained_exports["fp32"])
    assert onnx_predictor.max_seq_length == Predictor.from_pretrained(trained_run.model_dir).max_seq_length
    assert onnx_predictor.tokenizer.model_max_length == trained_max_length(trained_run.model_dir)


def test_the_folder_keeps_the_korpair_section_the_card_and_the_run_config(tiny_model_dir, tmp_path):
    model_dir = shutil.copytree(tiny_model_dir, tmp_path / "model")
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    section = {"format_version": 1, "max_seq_length": 48, "corpus": {"name": "sample"}}
    (model_dir / "config.json").write_text(json.dumps({**config, "korpair": section}), encoding="utf-8")
    (model_dir / "README.md").write_text("# a model card\n", encoding="utf-8")
    (model_dir / "korpair_train.yaml").write_text("data: {max_seq_length: 40}\n", encoding="utf-8")
    out = export_onnx(model_dir, tmp_path / "onnx")
    assert json.loads((out / "config.json").read_text(encoding="utf-8"))["korpair"] == section
    assert (out / "README.md").read_text(encoding="utf-8") == "# a model card\n"
    assert (out / "korpair_train.yaml").read_bytes() == (model_dir / "korpair_train.yaml").read_bytes()
    predictor = Predictor.from_pretrained(out)
    assert predictor.max_seq_length == predictor.tokenizer.model_max_length == 48


def test_a_0_1_folder_carries_its_max_length_over(tiny_model_dir, tmp_path):
    """korpair 0.1 wrote no korpair section and no model card, and kept the run config beside the model."""
    model_dir = shutil.copytree(tiny_model_dir, tmp_path / "model")
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    config.pop("korpair", None)
    (model_dir / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (model_dir / "README.md").unlink(missing_ok=True)
    (model_dir / "korpair_train.yaml").write_text(yaml.safe_dump({"data": {"max_seq_length": 40}}),
                                                  encoding="utf-8")
    out = export_onnx(model_dir, tmp_path / "onnx")
    assert not (out / "README.md").exists()
    predictor = Predictor.from_pretrained(out)
    assert predictor.max_seq_length == predictor.tokenizer.model_max_length == 40


def test_onnx_folders_refuse_other_precisions_and_devices(tiny_model_dir, tmp_path, monkeypatch):
    import onnxruntime

    folder = export_onnx(tiny_model_dir, tmp_path / "onnx")
    for precision in ("bf16", "16"):
        with pytest.raises(ConfigError, match=r"ONNX model runs as exported.*precision='32'.*quantize=True"):
            Predictor.from_pretrained(folder, precision=precision)
    with pytest.raises(ConfigError, match="expected one of 32, bf16, 16"):
        Predictor.from_pretrained(folder, precision="int8")
    with pytest.raises(ConfigError, match="device 'mps': an ONNX model runs on 'cpu' or 'cuda'"):
        Predictor.from_pretrained(folder, device="mps")
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(ConfigError, match="device 'cuda': this ONNX Runtime has no CUDA provider.*onnxruntime-gpu"):
        Predictor.from_pretrained(folder, device="cuda")
    predictor = Predictor.from_pretrained(folder)  # no device: the CPU, where ONNX Runtime has no CUDA
    assert predictor.device.type == "cpu" and predictor.precision == "32"


def test_predict_keeps_input_order_and_accepts_tuples(tiny_model_dir, tmp_path, test_pairs):
    predictor = Predictor.from_pretrained(export_onnx(tiny_model_dir, tmp_path / "onnx"))
    pairs = test_pairs[:20]
    forward = predictor.predict([(p.premise, p.hypothesis) for p in pairs], batch_size=4)
    backward = predictor.predict(list(reversed(pairs)), batch_size=3)
    assert [p.label for p in forward] == [p.label for p in reversed(backward)]
    for a, b in zip(forward, reversed(backward)):
        assert a.scores == pytest.approx(b.scores, abs=1e-5)
    assert predictor.predict([]) == []


def test_server_takes_an_onnx_predictor(tiny_model_dir, tmp_path):
    predictor = Predictor.from_pretrained(export_onnx(tiny_model_dir, tmp_path / "onnx"))
    with TestClient(create_app(predictor)) as client:
        response = client.post("/predict", json={"premise": "비가 온다", "hypothesis": "날씨가 맑다"})
    assert response.status_code == 200, response.text
    assert set(response.json()["scores"]) == set(predictor.labels)


def test_failed_export_leaves_the_old_folder_untouched(tiny_model_dir, tmp_path, monkeypatch):
    folder = export_onnx(tiny_model_dir, tmp_path / "onnx")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")  # after the graph is written, before the config and tokenizer

    monkeypatch.setattr(korpair_onnx, "write_companions", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        export_onnx(tiny_model_dir, folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["onnx"], "no temporary folder is left behind"


def test_bad_folders_are_named(tiny_model_dir, tmp_path):
    with pytest.raises(ModelFolderError, match="no such model folder"):
        export_onnx(tmp_path / "missing")
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_model_dir, run_dir / "model")
    with pytest.raises(ModelFolderError, match=r"no config\.json.*did you mean .*model"):
        export_onnx(run_dir)
    onnx_dir = export_onnx(tiny_model_dir, tmp_path / "onnx")
    with pytest.raises(ModelFolderError, match=r"already an ONNX model folder; export the PyTorch model folder"):
        export_onnx(onnx_dir, tmp_path / "again")
    (onnx_dir / "config.json").unlink()
    with pytest.raises(ModelFolderError, match=r"no config\.json.*config\.json and tokenizer that the export writes"):
        Predictor.from_pretrained(onnx_dir)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "model.onnx").write_bytes(b"not a protobuf")
    shutil.copy(tiny_model_dir / "config.json", tmp_path / "junk")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_model_dir / name, tmp_path / "junk")
    with pytest.raises(ModelFolderError, match="ONNX Runtime cannot load it"):
        Predictor.from_pretrained(tmp_path / "junk")


def test_cli_export_then_predict_and_serve_use_the_onnx_folder(tiny_model_dir, tmp_path):
    import json

    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from korpair.cli import app
    from korpair.serve.app import create_app
    from korpair.serve.server import _load

    out = tmp_path / "onnx"
    result = CliRunner().invoke(app, ["export", str(tiny_model_dir), "--format", "onnx", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "model.onnx").is_file()
    result = CliRunner().invoke(app, ["predict", str(out), "--premise", "비가 온다", "--hypothesis", "날씨가 맑다"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    classifier = _load(out, None)
    assert classifier.runtime.name == "ONNX Runtime"
    with TestClient(create_app(classifier)) as client:
        served = client.post("/predict", json={"premise": "비가 온다", "hypothesis": "날씨가 맑다"}).json()
    assert served["label"] == answer["label"]
    bad = CliRunner().invoke(app, ["export", str(tiny_model_dir), "--quantize", "int4"])
    assert bad.exit_code == 2 and "int8" in bad.output
    # an ONNX model runs as exported: asking it for bf16 is an error, not a silent fp32 run
    bf16 = CliRunner().invoke(app, ["predict", str(out), "--premise", "가", "--hypothesis", "나", "--precision", "bf16"])
    assert bf16.exit_code == 2 and "ONNX model runs as exported" in bf16.output
    with pytest.raises(ConfigError, match="ONNX model runs as exported"):
        _load(out, None, "bf16")
