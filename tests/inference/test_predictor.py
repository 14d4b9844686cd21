"""korpair.inference.predictor and korpair.hardware: one Predictor over a runtime; precision and padding rules."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from regression_models import build_tiny_regressor
from transformers import AutoTokenizer

from korpair.errors import ConfigError
from korpair.hardware import autocast_dtype, check_inference_precision, pad_multiple, resolve_device
from korpair.inference import Predictor
from korpair.types import INFERENCE_PRECISIONS, Pair, ScoreRange

PAIRS = [
    ("민수는 어제 공원에서 자전거를 탔다", "민수는 자전거를 탈 줄 안다"),
    ("비가 많이 온다", "날씨가 맑다"),
    ("할머니가 시장에서 사과를 샀다 그리고 아이들이 운동장에서 축구를 한다", "할머니는 집에 있었다"),
    ("커피가 너무 뜨겁다", "가게"),
    ("회의는 오후 세 시에 끝났다", "선생님은 학생들에게 숙제를 내 주셨다"),
]


class LengthRuntime:
    """A fake runtime whose logits give away each row's token count; it records the batches it gets."""

    name = "fake"
    precision = "32"

    def __init__(self, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.shapes: list[tuple[int, int]] = []

    def logits(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        self.shapes.append(tuple(batch["input_ids"].shape))
        lengths = batch["attention_mask"].sum(dim=1).numpy().astype(np.float32)
        return np.stack([lengths / 10, np.zeros_like(lengths), np.zeros_like(lengths)], axis=1)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


def token_counts(tokenizer, pairs) -> list[int]:
    return [len(tokenizer(a, b, truncation=True, max_length=128)["input_ids"]) for a, b in pairs]


def test_the_precision_check_lists_every_accepted_value():
    expected = f"expected one of {', '.join(INFERENCE_PRECISIONS)}"
    for bad in ("fp8", "bf16-mixed", "half", ""):
        with pytest.raises(ConfigError) as err:
            check_inference_precision(bad)
        assert str(err.value) == f"precision {bad!r}: {expected}"
    for good in INFERENCE_PRECISIONS:
        check_inference_precision(good)
    # checked before anything loads: a bad name is the error even for a folder that does not exist
    with pytest.raises(ConfigError, match=expected):
        Predictor.from_pretrained("no/such/folder", precision="fp8")


def test_every_inference_precision_has_a_meaning():
    assert {p: autocast_dtype(p) for p in INFERENCE_PRECISIONS} == {
        "32": None, "bf16": torch.bfloat16, "16": torch.float16}


def test_onnx_models_run_only_as_exported():
    check_inference_precision("32", onnx_model="m/onnx")
    for precision in ("bf16", "16"):
        with pytest.raises(ConfigError, match=r"m/onnx: an ONNX model runs as exported.*quantize=True"):
            check_inference_precision(precision, onnx_model="m/onnx")


def test_the_padding_rule():
    assert pad_multiple("auto", "cuda") == 8
    assert pad_multiple("auto", "cpu") is None
    assert pad_multiple("auto", "mps") is None
    assert pad_multiple(16, "cpu") == 16
    assert pad_multiple(None, "cuda") is None


def test_a_predictor_pads_to_multiples_of_8_only_on_cuda(tokenizer):
    for device, multiple in (("cpu", None), ("cuda", 8)):
        runtime = LengthRuntime(device)
        Predictor(runtime, tokenizer, ("a", "b", "c")).predict(PAIRS, batch_size=2)
        widths = [width for _, width in runtime.shapes]
        if multiple is None:
            assert any(w % 8 for w in widths), widths  # no rounding: some batch is not a multiple of 8
        else:
            assert all(w % multiple == 0 for w in widths), widths


def test_batches_are_sorted_by_length_and_answers_come_in_input_order(tokenizer):
    runtime = LengthRuntime()
    predictor = Predictor(runtime, tokenizer, ("long", "x", "y"), max_seq_length=128)
    probs = predictor.predict_proba(PAIRS, batch_size=2)
    counts = np.array(token_counts(tokenizer, PAIRS), dtype=np.float32)
    np.testing.assert_allclose(np.log(probs[:, 0] / probs[:, 1]), counts / 10, rtol=1e-5)
    assert [n for n, _ in runtime.shapes] == [2, 2, 1]
    assert [w for _, w in runtime.shapes] == sorted((w for _, w in runtime.shapes), reverse=True)
    # tuples, Pairs and an iterable all work; the stream yields Pairs
    streamed = list(predictor.predict_stream(iter(PAIRS), batch_size=2, chunk_size=2))
    assert [pair for pair, _ in streamed] == [Pair(a, b) for a, b in PAIRS]
    assert [p.scores for _, p in streamed] == [p.scores for p in predictor.predict([Pair(*p) for p in PAIRS])]
    assert predictor.predict([]) == [] and predictor.predict_proba([]).shape == (0, 3)


def test_from_pretrained_keeps_its_attributes_and_logs_one_line(tiny_model_dir, caplog):
    with caplog.at_level(logging.INFO, logger="korpair.inference.predictor"):
        predictor = Predictor.from_pretrained(tiny_model_dir, device="cpu", max_seq_length=32)
    assert predictor.labels == ("entailment", "neutral", "contradiction")
    assert (predictor.device, predictor.precision, predictor.max_seq_length) == (torch.device("cpu"), "32", 32)
    assert predictor.runtime.name == "PyTorch"
    [line] = [r.getMessage() for r in caplog.records if r.name == "korpair.inference.predictor"]
    assert "PyTorch" in line and "cpu" in line and "precision 32" in line and "entailment, neutral" in line


def test_bf16_really_runs_and_stays_close(tiny_model_dir):
    fp32 = Predictor.from_pretrained(tiny_model_dir, device="cpu").predict_proba(PAIRS)
    bf16 = Predictor.from_pretrained(tiny_model_dir, device="cpu", precision="bf16")
    assert bf16.precision == "bf16"
    diff = np.abs(bf16.predict_proba(PAIRS) - fp32).max()
    assert 0 < diff < 2e-2, diff


def test_bf16_keeps_linear_weights_cast_and_gives_autocasts_logits(tiny_model_dir):
    bf16 = Predictor.from_pretrained(tiny_model_dir, device="cpu", precision="bf16")
    dtypes = {type(m).__name__: m.weight.dtype for m in bf16.runtime.model.modules() if hasattr(m, "weight")}
    assert dtypes["Linear"] == torch.bfloat16 and dtypes["LayerNorm"] == dtypes["Embedding"] == torch.float32
    plain = Predictor.from_pretrained(tiny_model_dir, device="cpu")  # fp32 weights, under autocast by hand
    for packed in (True, False):
        bf16.runtime.packed = plain.runtime.packed = packed
        with torch.autocast("cpu", dtype=torch.bfloat16):
            expected = plain.predict_logits(PAIRS)
        np.testing.assert_array_equal(bf16.predict_logits(PAIRS), expected)


def test_devices_are_checked(monkeypatch, tiny_model_dir):
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="device 'gpu0': expected cpu, cuda"):
        Predictor.from_pretrained(tiny_model_dir, device="gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == torch.device("cpu")
    with pytest.raises(ConfigError, match="device 'cuda': PyTorch sees no CUDA GPU.*device='cpu'"):
        resolve_device("cuda")


@pytest.fixture(scope="module")
def regressor_dir(tmp_path_factory):
    return build_tiny_regressor(tmp_path_factory.mktemp("regressor") / "model")


def forward_scores(folder, pairs) -> np.ndarray:
    """The model's own output, one unpadded pair at a time, straight from transformers."""
    from transformers import AutoModelForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    with torch.inference_mode():
        return np.array([model(**tokenizer(a, b, truncation=True, max_length=128, return_tensors="pt")).logits[0, 0]
                         for a, b in pairs])


def test_a_regression_folder_gives_one_score_a_pair(regressor_dir):
    predictor = Predictor.from_pretrained(regressor_dir, device="cpu")
    assert predictor.task == "regression" and predictor.score_range == ScoreRange(0, 5)
    scores = predictor.predict_scores(PAIRS, batch_size=2)
    assert scores.shape == (len(PAIRS),) and np.ptp(scores) > 0
    np.testing.assert_allclose(scores, forward_scores(regressor_dir, PAIRS), atol=1e-5, rtol=0)
    predictions = predictor.predict(PAIRS, batch_size=3)
    assert all(p.label is None and p.scores == {} for p in predictions)
    assert [p.score for p in predictions] == pytest.approx(scores.tolist(), abs=1e-6)
    assert predictions[0].to_dict() == {"score": predictions[0].score}
    assert [p.score for _, p in predictor.predict_stream(iter(PAIRS), chunk_size=2)] == pytest.approx(
        scores.tolist(), abs=1e-6)
    with pytest.raises(ValueError, match="regression model gives one score per pair.*use predict_scores"):
        predictor.predict_proba(PAIRS)
    assert "task='regression'" in repr(predictor)


def test_a_classifier_is_unchanged(tiny_model_dir):
    predictor = Predictor.from_pretrained(tiny_model_dir, device="cpu")
    assert predictor.task == "classification"
    [p] = predictor.predict(PAIRS[:1])
    assert p.score is None and p.label in predictor.labels and set(p.scores) == set(predictor.labels)
    assert set(p.to_dict()) == {"label", "scores"}
    with pytest.raises(ValueError, match="classifier gives probabilities: use predict_proba"):
        predictor.predict_scores(PAIRS)


@pytest.mark.parametrize(("extra", "task"), [
    ({"num_labels": 1, "problem_type": "regression"}, "regression"),
    ({"num_labels": 1}, "regression"),  # one output, no problem type: transformers trains it with MSE
    ({"num_labels": 2}, "classification"),
])
def test_a_hugging_face_folder_from_elsewhere_gets_its_task_from_its_config(tiny_model_dir, tmp_path, extra, task):
    """A folder transformers wrote (no korpair section), e.g. a cross-encoder from the hub."""
    from transformers import BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, **extra)
    folder = tmp_path / "cross-encoder"
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    predictor = Predictor.from_pretrained(folder, device="cpu")
    assert predictor.task == task
    if task == "regression":
        assert predictor.score_range == ScoreRange()  # nothing recorded: open bounds
        np.testing.assert_allclose(predictor.predict_scores(PAIRS), forward_scores(folder, PAIRS), atol=1e-5, rtol=0)
    else:
        assert predictor.predict_proba(PAIRS).shape == (len(PAIRS), config.num_labels)
