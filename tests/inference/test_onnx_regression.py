"""ONNX export of a regression (one-output) model: fp32 and int8 folders keep the task, load as regression
models and score as PyTorch does; int8 ranks real KorSTS pairs as PyTorch does (Spearman >= 0.99)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import KOREAN_TEXTS, SHARED_DATA
from regression_models import build_tiny_regressor, read_korsts

from korpair.inference import Predictor
from korpair.inference.onnx import agreement, export_onnx
from korpair.types import Pair, ScoreRange

PAIRS = [Pair(a, b) for a in KOREAN_TEXTS for b in KOREAN_TEXTS[::3]]


@pytest.fixture(scope="module")
def regressor_dir(tmp_path_factory):
    return build_tiny_regressor(tmp_path_factory.mktemp("sts") / "model")


@pytest.fixture(scope="module")
def exports(regressor_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("sts-onnx")
    return {"fp32": export_onnx(regressor_dir, out / "fp32"), "int8": export_onnx(regressor_dir, out / "int8",
                                                                                   quantize=True)}


def test_the_exported_folders_record_the_task(regressor_dir, exports):
    source = json.loads((regressor_dir / "config.json").read_text(encoding="utf-8"))
    for folder in exports.values():
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        assert config["problem_type"] == "regression" and config["id2label"] == {"0": "score"}
        assert config["korpair"] == source["korpair"]
        assert config["korpair"]["task"] == "pair-regression" and config["korpair"]["score_range"] == [0, 5]
        predictor = Predictor.from_pretrained(folder)
        assert predictor.runtime.name == "ONNX Runtime"
        assert (predictor.task, predictor.score_range) == ("regression", ScoreRange(0, 5))
        [p] = predictor.predict(PAIRS[:1])
        assert p.label is None and isinstance(p.score, float) and p.to_dict() == {"score": p.score}
    assert (exports["int8"] / "model.onnx").stat().st_size < (exports["fp32"] / "model.onnx").stat().st_size


def test_fp32_scores_equal_pytorch_at_any_batch_size(regressor_dir, exports):
    expected = Predictor.from_pretrained(regressor_dir, device="cpu").predict_scores(PAIRS)
    assert np.ptp(expected) > 0
    onnx_predictor = Predictor.from_pretrained(exports["fp32"])
    for batch_size in (1, 7, 64):
        np.testing.assert_allclose(onnx_predictor.predict_scores(PAIRS, batch_size), expected, atol=1e-5, rtol=0)


def test_int8_scores_stay_close(regressor_dir, exports):
    ours = Predictor.from_pretrained(regressor_dir, device="cpu")
    result = agreement(ours, Predictor.from_pretrained(exports["int8"]), PAIRS)
    assert result["task"] == "regression" and result["n"] == len(PAIRS)
    assert 0 < result["max_abs_diff"] < 0.05, result


def test_agreement_of_a_classifier_is_its_label_agreement(tiny_model_dir, tmp_path):
    ours = Predictor.from_pretrained(tiny_model_dir, device="cpu")
    result = agreement(ours, Predictor.from_pretrained(export_onnx(tiny_model_dir, tmp_path / "onnx")), PAIRS)
    diff = result.pop("max_abs_diff")
    assert result == {"task": "classification", "n": len(PAIRS), "label_agreement": 1.0}
    assert 0 <= diff < 1e-4, "fp32 ONNX gives the same probabilities"


def test_agreement_needs_models_of_one_task_and_pairs(tiny_model_dir, regressor_dir):
    classifier, regressor = Predictor.from_pretrained(tiny_model_dir), Predictor.from_pretrained(regressor_dir)
    with pytest.raises(ValueError, match="differ in task: classification and regression"):
        agreement(classifier, regressor, PAIRS)
    with pytest.raises(ValueError, match="no pairs"):
        agreement(regressor, regressor, [])


@pytest.mark.skipif(not (SHARED_DATA / "korsts").is_dir(), reason="needs ../shared/data/korsts")
def test_int8_ranks_real_korsts_pairs_as_pytorch_does(tmp_path):
    """A model briefly trained on KorSTS train (its scores then follow the pairs, not noise around one value),
    compared on all of KorSTS dev: the issue's bar, Spearman >= 0.99 between PyTorch and int8 scores."""
    train, dev = read_korsts("train"), read_korsts("dev")
    texts = [t for p in train for t in (p.premise, p.hypothesis)]
    model_dir = build_tiny_regressor(tmp_path / "model", texts, train_pairs=train, epochs=2, vocab_size=2000)
    ours = Predictor.from_pretrained(model_dir, device="cpu")
    scores = ours.predict_scores(dev)
    assert np.std(scores) > 0.1, "the scores must spread for the rank check to mean something"
    result = agreement(ours, Predictor.from_pretrained(export_onnx(model_dir, tmp_path / "int8", quantize=True)),
                       dev)
    assert result["n"] == len(dev) == 1500
    assert result["spearman"] >= 0.99, result
