"""OpenVINO export (fp32 and NNCF int8): Predictor.from_pretrained opens it, it agrees with PyTorch, it carries the
model folder's companions, is calibrated on real pairs, is written atomically and fails clearly."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest

from korpair import hardware
from korpair.config import CorpusConfig
from korpair.corpora import read_split
from korpair.errors import ConfigError, CorpusError, KorpairError, ModelFolderError
from korpair.features import encode_pairs
from korpair.inference import Predictor
from korpair.inference import openvino as korpair_openvino
from korpair.inference.openvino import export_openvino
from korpair.inference.packing import PACKED_INPUTS, packed_calls
from korpair.inference.runtimes import OpenVinoRuntime, load_runtime, physical_cores
from korpair.types import Pair

pytest.importorskip("openvino")
pytest.importorskip("nncf")

SECTION = {"format_version": 1, "max_seq_length": 48, "corpus": {"name": "sample"}}


@pytest.fixture(scope="module")
def test_pairs() -> list[Pair]:
    return read_split(CorpusConfig(name="sample"), "test")


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with a section that records its corpus (the shipped sample) and max length, a card and a 0.1
    run config."""
    folder = shutil.copytree(tiny_model_dir, tmp_path_factory.mktemp("ov") / "model")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    (folder / "config.json").write_text(json.dumps({**config, "korpair": SECTION}), encoding="utf-8")
    (folder / "README.md").write_text("# a model card\n", encoding="utf-8")
    (folder / "korpair_train.yaml").write_text("data: {max_seq_length: 48}\n", encoding="utf-8")
    return folder


class Spy:
    """Wraps ``_quantize_int8`` to keep the calibration batches it was given."""

    def __init__(self, monkeypatch) -> None:
        self.batches, real = None, korpair_openvino._quantize_int8

        def spy(model, batches):
            self.batches = batches
            return real(model, batches)

        monkeypatch.setattr(korpair_openvino, "_quantize_int8", spy)


@pytest.fixture(scope="module")
def exports(model_dir):
    with pytest.MonkeyPatch.context() as monkeypatch:
        spy = Spy(monkeypatch)
        int8 = export_openvino(model_dir, quantize=True)  # calibrated on the recorded corpus
    return {"fp32": export_openvino(model_dir), "int8": int8, "calibration": spy.batches}


def test_default_folders_hold_a_complete_model(model_dir, exports):
    assert (exports["fp32"], exports["int8"]) == (model_dir / "openvino", model_dir / "openvino-int8")
    for folder in (exports["fp32"], exports["int8"]):
        for name in ("openvino_model.xml", "openvino_model.bin", "config.json", "tokenizer.json",
                     "tokenizer_config.json"):
            assert (folder / name).is_file(), (folder, name)
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        assert config["korpair"] == SECTION
        assert config["id2label"] == {"0": "entailment", "1": "neutral", "2": "contradiction"}
        assert (folder / "README.md").read_text(encoding="utf-8") == "# a model card\n"
        assert (folder / "korpair_train.yaml").read_bytes() == (model_dir / "korpair_train.yaml").read_bytes()
        predictor = Predictor.from_pretrained(folder)
        assert predictor.max_seq_length == predictor.tokenizer.model_max_length == 48
    # int8: quantized weights and activations, and a smaller file (the tiny model's embeddings stay float)
    assert "FakeQuantize" in (exports["int8"] / "openvino_model.xml").read_text(encoding="utf-8")
    assert "FakeQuantize" not in (exports["fp32"] / "openvino_model.xml").read_text(encoding="utf-8")
    assert (exports["int8"] / "openvino_model.bin").stat().st_size < (exports["fp32"] / "openvino_model.bin").stat().st_size


def test_the_model_has_named_dynamic_inputs_and_runs_on_every_physical_core(exports):
    import openvino as ov

    model = ov.Core().read_model(str(exports["fp32"] / "openvino_model.xml"))
    # a BERT classifier: pairs packed several to a row (korpair.inference.packing)
    assert [i.get_any_name() for i in model.inputs] == list(PACKED_INPUTS)
    assert all(i.get_partial_shape().is_dynamic for i in model.inputs)
    assert [o.get_any_name() for o in model.outputs] == ["logits"]
    runtime = load_runtime(exports["fp32"])
    assert isinstance(runtime, OpenVinoRuntime) and runtime.name == "OpenVINO" and runtime.packed
    assert runtime.compiled.get_property("INFERENCE_NUM_THREADS") == physical_cores()
    has_bf16 = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    faster = hardware.cpu_bf16_speedup() >= hardware.CPU_BF16_MIN_SPEEDUP
    assert runtime.precision == ("bf16" if has_bf16 and faster else "32")


@pytest.mark.parametrize("speedup", [0.6, 2.2])
def test_float_operations_run_in_bf16_only_where_the_cpu_runs_it_faster(exports, monkeypatch, speedup):
    import openvino as ov

    # the flag alone is not enough: a 2-core Xeon with AVX512-BF16 ran this model 1.6x faster in fp32
    monkeypatch.setattr(hardware, "cpu_bf16_speedup", lambda: speedup)
    has_bf16 = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    runtime = OpenVinoRuntime.load(exports["fp32"])
    assert runtime.precision == ("bf16" if has_bf16 and speedup > 1 else "32")
    assert runtime.compiled.get_property("INFERENCE_PRECISION_HINT") == (ov.Type.bf16 if runtime.precision == "bf16"
                                                                          else ov.Type.f32)
    # asked for, bf16 runs wherever the CPU has it
    assert OpenVinoRuntime.load(exports["fp32"], bf16=True).precision == ("bf16" if has_bf16 else "32")


def test_fp32_agrees_with_pytorch_at_any_batch_size(model_dir, exports, test_pairs):
    torch_predictor = Predictor.from_pretrained(model_dir)
    expected = torch_predictor.predict_logits(test_pairs)
    # Computing in fp32, the converted graph is PyTorch's.
    exact = OpenVinoRuntime.load(exports["fp32"], bf16=False)
    assert exact.precision == "32"
    exact_predictor = Predictor(exact, torch_predictor.tokenizer, torch_predictor.labels, max_seq_length=48)
    for batch_size in (1, 7, 64):
        np.testing.assert_allclose(exact_predictor.predict_logits(test_pairs, batch_size), expected, atol=1e-5)
    # As loaded by default (bf16 where the CPU runs it faster), within bf16's rounding.
    predictor = Predictor.from_pretrained(exports["fp32"])
    atol = 2e-2 if predictor.precision == "bf16" else 1e-5
    np.testing.assert_allclose(predictor.predict_proba(test_pairs), torch_predictor.predict_proba(test_pairs),
                               atol=atol)


def test_int8_agrees_with_pytorch(model_dir, exports, test_pairs):
    ours = Predictor.from_pretrained(model_dir).predict(test_pairs[:60])
    theirs = Predictor.from_pretrained(exports["int8"]).predict(test_pairs[:60], batch_size=16)
    assert np.mean([a.label == b.label for a, b in zip(ours, theirs)]) >= 0.9
    for a, b in zip(ours, theirs):
        assert b.scores == pytest.approx(a.scores, abs=0.05)


def test_int8_is_calibrated_on_the_recorded_validation_split_encoded_as_the_predictor_encodes(model_dir, exports):
    validation = read_split(CorpusConfig(name="sample"), "validation")
    batches = exports["calibration"]
    assert len(batches) == len(validation) == 150
    tokenizer = Predictor.from_pretrained(model_dir).tokenizer
    feats = encode_pairs(tokenizer, validation, None, 48)
    # one pair a sample, alone in its row (no padding), as the graph takes it
    ids = sorted(tuple(b["input_ids"][0]) for b in batches)
    assert ids == sorted(tuple(feats[i]["input_ids"].tolist()) for i in range(len(validation)))
    assert all(set(b) == set(PACKED_INPUTS) and b["cls_index"].tolist() == [0] for b in batches)
    assert all((b["segment_ids"] == 1).all() and (b["position_ids"][0] == np.arange(b["input_ids"].shape[1])).all()
               for b in batches)


def test_int8_calibrates_on_given_pairs_at_most_300_quietly(tiny_model_dir, tmp_path, test_pairs, monkeypatch,
                                                            capfd):
    spy = Spy(monkeypatch)
    given = [(p.premise, p.hypothesis) for p in test_pairs] * 3  # 450, the recorded corpus none
    capfd.readouterr()
    out = export_openvino(tiny_model_dir, tmp_path / "int8", quantize=True, calibration_pairs=given)
    printed = "".join(capfd.readouterr())
    for chatter in ("Statistics collection", "Smooth Quant", "INFO:nncf", "Loading weights", "Warning"):
        assert chatter not in printed, printed
    assert len(spy.batches) == 300
    tokenizer = Predictor.from_pretrained(tiny_model_dir).tokenizer
    encoded = {tuple(tokenizer(*pair, truncation=True, max_length=128)["input_ids"]) for pair in given}
    calibrated = {tuple(b["input_ids"][0].tolist()) for b in spy.batches}
    assert calibrated <= encoded and tuple(tokenizer(*given[0])["input_ids"]) in calibrated
    assert Predictor.from_pretrained(out).runtime.name == "OpenVINO"


def test_int8_without_calibration_pairs_asks_for_them(tiny_model_dir, model_dir, tmp_path):
    with pytest.raises(CorpusError, match=r"records no training corpus.*pass calibration_pairs="):
        export_openvino(tiny_model_dir, tmp_path / "int8", quantize=True)
    with pytest.raises(ConfigError, match="calibration_pairs is empty"):
        export_openvino(tiny_model_dir, tmp_path / "int8", quantize=True, calibration_pairs=[])
    elsewhere = shutil.copytree(model_dir, tmp_path / "model", ignore=shutil.ignore_patterns("openvino*"))
    config = json.loads((elsewhere / "config.json").read_text(encoding="utf-8"))
    config["korpair"]["corpus"] = {"name": "files", "train_file": str(tmp_path / "gone" / "train.jsonl"),
                                   "validation_file": str(tmp_path / "gone" / "validation.jsonl")}
    (elsewhere / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(CorpusError, match=r"no split of the corpus.*gone/validation.jsonl: file not found.*pass calibration_pairs="):
        export_openvino(elsewhere, tmp_path / "int8", quantize=True)
    assert not (tmp_path / "int8").exists()


def test_without_the_extra_korpair_says_how_to_install_it(tiny_model_dir, exports, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "nncf", None)
    with pytest.raises(KorpairError, match=r'nncf is missing.*pip install "korpair\[openvino\]"'):
        export_openvino(tiny_model_dir, tmp_path / "int8", quantize=True, calibration_pairs=[("가", "나")])
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(KorpairError, match=r'openvino is missing.*pip install "korpair\[openvino\]"'):
        export_openvino(tiny_model_dir, tmp_path / "fp32")
    with pytest.raises(KorpairError, match=r'pip install "korpair\[openvino\]"'):
        Predictor.from_pretrained(exports["fp32"])
    assert not (tmp_path / "fp32").exists() and not (tmp_path / "int8").exists()


def test_failed_export_leaves_no_folder_and_the_old_one_untouched(tiny_model_dir, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("conversion failed")

    monkeypatch.setattr(korpair_openvino, "_convert", broken)
    with pytest.raises(RuntimeError, match="conversion failed"):
        export_openvino(tiny_model_dir, tmp_path / "openvino")
    assert list(tmp_path.iterdir()) == [], "no folder, and no temporary folder left behind"
    monkeypatch.undo()
    folder = export_openvino(tiny_model_dir, tmp_path / "openvino")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    monkeypatch.setattr(korpair_openvino, "_quantize_int8", broken)
    with pytest.raises(RuntimeError, match="conversion failed"):
        export_openvino(tiny_model_dir, folder, quantize=True, calibration_pairs=[("비가 온다", "날씨가 맑다")])
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["openvino"]


def test_bad_folders_devices_and_precisions_are_named(exports, tiny_model_dir, tmp_path):
    with pytest.raises(ModelFolderError, match=r"already an OpenVINO model folder; export the PyTorch model folder"):
        export_openvino(exports["fp32"], tmp_path / "again")
    with pytest.raises(ModelFolderError, match="must differ from the model folder"):
        export_openvino(tiny_model_dir, tiny_model_dir)
    with pytest.raises(ConfigError, match="an OpenVINO model runs on 'cpu'"):
        Predictor.from_pretrained(exports["fp32"], device="cuda")
    with pytest.raises(ConfigError, match="precision '16'.*precision='32'"):
        Predictor.from_pretrained(exports["fp32"], precision="16")
    junk = shutil.copytree(exports["fp32"], tmp_path / "junk")
    (junk / "openvino_model.xml").write_text("<net", encoding="utf-8")
    with pytest.raises(ModelFolderError, match=r"openvino_model\.xml: OpenVINO cannot load it"):
        Predictor.from_pretrained(junk)


def packed(predictor, pairs) -> dict:
    """``pairs`` as one call's packed inputs (the rows a Predictor sends), and the order of their logits."""
    [(order, inputs)] = packed_calls(encode_pairs(predictor.tokenizer, pairs, None, 48), len(pairs))
    return order, inputs


def test_each_answer_is_its_own_array(exports, test_pairs):
    """The requests' output buffers are reused from call to call; what logits returns is not."""
    predictor = Predictor.from_pretrained(exports["int8"])
    first = predictor.runtime.packed_logits(packed(predictor, test_pairs[:4])[1])
    kept = first.copy()
    predictor.runtime.packed_logits(packed(predictor, test_pairs[4:8])[1])
    np.testing.assert_array_equal(first, kept)
    assert first.dtype == np.float32 and first.shape == (4, 3)


def test_a_regression_model_exports_too(tiny_regressor_dir, tmp_path, test_pairs):
    folder = export_openvino(tiny_regressor_dir, tmp_path / "openvino")
    ours = Predictor.from_pretrained(tiny_regressor_dir).predict_scores(test_pairs)
    predictor = Predictor.from_pretrained(folder)
    assert predictor.task == "regression"
    np.testing.assert_allclose(predictor.predict_scores(test_pairs), ours,
                               atol=5e-2 if predictor.precision == "bf16" else 1e-4)


def test_loading_leaves_the_threads_signal_stack_alone(exports):
    """OpenVINO's CPU plugin sets a small alternate signal stack on the thread that loads it; Python's handlers use
    it, and a Ctrl+C during a later training run in the same process then died of a segmentation fault."""
    import ctypes
    import signal

    libc = ctypes.CDLL(None, use_errno=True)

    class Stack(ctypes.Structure):
        _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]

    def current() -> tuple:
        stack = Stack()
        assert libc.sigaltstack(None, ctypes.byref(stack)) == 0
        return stack.ss_sp, stack.ss_flags, stack.ss_size

    before = current()
    Predictor.from_pretrained(exports["fp32"]).predict([("비가 온다", "날씨가 맑다")])
    export_openvino(exports["fp32"].parent, exports["fp32"].parent / "again", quantize=True,
                    calibration_pairs=[("비가 온다", "날씨가 맑다")] * 4)
    assert current() == before
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)


def test_a_lone_pair_runs_on_the_latency_compilation_when_batches_are_split_among_streams(exports, test_pairs):
    predictor = Predictor.from_pretrained(exports["int8"])
    runtime = predictor.runtime
    streams = len(runtime._requests)
    assert (runtime._small is not None) == (streams > 1)  # one stream: a lone pair runs on it as any batch does
    assert "THROUGHPUT" in str(runtime.compiled.get_property("PERFORMANCE_HINT"))
    small_calls = []
    if runtime._small is not None:
        real = runtime._small.infer
        runtime._small = type("Spy", (), {"infer": lambda self, inputs: small_calls.append(1) or real(inputs)})()
    alone = [runtime.packed_logits(packed(predictor, [pair])[1]) for pair in test_pairs[:8]]
    assert len(small_calls) == (8 if streams > 1 else 0)
    assert all(a.shape == (1, 3) for a in alone)
    assert len({id(a) for a in alone}) == 8 and not np.shares_memory(alone[0], alone[1])  # each its own array
    # the same graph compiled twice: a pair's answer does not depend on the company it came in, rows split
    # among the streams or not
    order, inputs = packed(predictor, test_pairs[:8])
    assert len(inputs["input_ids"]) >= streams
    together = np.empty((8, 3), dtype=np.float32)
    together[order] = runtime.packed_logits(inputs)
    np.testing.assert_allclose(np.concatenate(alone), together, atol=5e-3)


def test_a_model_packing_does_not_know_exports_for_padded_batches(tiny_electra_dir, tmp_path, test_pairs):
    source = tiny_electra_dir
    tokenizer = Predictor.from_pretrained(source).tokenizer
    folder = export_openvino(source, tmp_path / "openvino")
    runtime = load_runtime(folder)
    assert runtime.input_names == ["input_ids", "attention_mask", "token_type_ids"] and not runtime.packed
    ours = Predictor.from_pretrained(source).predict_logits(test_pairs)
    exact = Predictor(OpenVinoRuntime.load(folder, bf16=False), tokenizer, ["entailment", "neutral", "contradiction"])
    np.testing.assert_allclose(exact.predict_logits(test_pairs, 7), ours, atol=1e-5)
