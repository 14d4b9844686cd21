"""A model trained to over-fit gets a temperature that makes its validation probabilities honest; the
temperature travels in the model folder to every runtime, and evaluate shows what it bought."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from korpair import api
from korpair.calibration import softmax
from korpair.errors import ModelFolderError
from korpair.inference import Predictor
from korpair.model_folder import read_section

# The sample corpus does not generalise: a model trained on it for many epochs is sure of answers that are
# wrong half the time on validation, the over-confidence calibration is for.
OVERFIT = ["model.hidden_size=128", "model.num_layers=2", "model.intermediate_size=512", "trainer.max_epochs=8",
           "trainer.progress_bar=false", "model.dropout=0.0"]
PAIRS = [("비가 많이 온다", "날씨가 맑다"), ("민수는 공원에서 자전거를 탔다", "민수는 밖에 있었다"),
         ("가게 문이 닫혀 있었다", "가게는 영업 중이었다")]


@pytest.fixture(scope="module")
def overfit(tmp_path_factory):
    out = tmp_path_factory.mktemp("overfit")
    return api.train("sample", [*OVERFIT, f"trainer.output_dir={out}", f"data.cache_dir={out / 'cache'}"])


@pytest.mark.slow
def test_the_fitted_temperature_lowers_validation_nll_and_ece(overfit):
    fitted = read_section(overfit.model_dir)["calibration"]
    assert fitted["method"] == "temperature" and fitted["fitted_on"] == "validation" and fitted["pairs"] == 150
    assert fitted["temperature"] > 1.5, "an over-fitted model is over-confident: its logits are softened"
    assert fitted["after"]["nll"] < fitted["before"]["nll"] and fitted["after"]["ece"] < fitted["before"]["ece"]
    assert overfit.metrics["calibration"] == fitted, "metrics.json records it too"

    report = api.evaluate(overfit.model_dir, split="validation", output_dir=overfit.output_dir / "eval")
    cal = report.metrics["calibration"]
    assert cal["applied"] and cal["temperature"] == fitted["temperature"] and cal["bins"] == 15
    assert cal["calibrated"]["nll"] == pytest.approx(fitted["after"]["nll"], rel=1e-3)
    assert cal["uncalibrated"]["nll"] == pytest.approx(fitted["before"]["nll"], rel=1e-3)
    assert cal["calibrated"]["brier"] < cal["uncalibrated"]["brier"]
    assert report.metrics["nll"] == cal["calibrated"]["nll"], "the top-level numbers are those of the answers given"
    assert (report.output_dir / "reliability_diagram.png").stat().st_size > 10_000
    rows = [json.loads(line) for line in report.predictions_file.read_text(encoding="utf-8").splitlines()]
    assert max(max(r["scores"].values()) for r in rows) < 0.999, "no calibrated answer claims certainty"

    raw = api.evaluate(overfit.model_dir, split="validation", output_dir=overfit.output_dir / "raw",
                       calibrated=False)
    assert not raw.metrics["calibration"]["applied"]
    assert raw.metrics["nll"] == pytest.approx(cal["uncalibrated"]["nll"], rel=1e-6)
    assert raw.metrics["accuracy"] == report.metrics["accuracy"], "a temperature changes no answer"


@pytest.mark.slow
def test_every_runtime_applies_the_temperature_and_can_be_asked_not_to(overfit, tmp_path):
    temperature = read_section(overfit.model_dir)["calibration"]["temperature"]
    model = Predictor.from_pretrained(overfit.model_dir)
    logits = model.predict_logits(PAIRS)
    assert model.temperature == temperature
    np.testing.assert_allclose(model.predict_proba(PAIRS), softmax(logits, temperature), atol=1e-6)
    raw = Predictor.from_pretrained(overfit.model_dir, calibrated=False)
    assert raw.temperature == 1.0
    np.testing.assert_allclose(raw.predict_proba(PAIRS), softmax(logits), atol=1e-6)
    assert [p.label for p in raw.predict(PAIRS)] == [p.label for p in model.predict(PAIRS)]

    folder = shutil.copytree(overfit.model_dir, tmp_path / "model")
    onnx = Predictor.from_pretrained(api.export(folder))
    assert onnx.temperature == temperature, "the exported folder carries the same temperature"
    from korpair.inference.onnx import agreement

    same = agreement(model, onnx, PAIRS * 10)
    assert same["label_agreement"] == 1.0 and same["max_abs_diff"] < 1e-4, "calibrated probabilities agree"


def test_a_model_trained_without_calibration_answers_with_its_raw_scores(tmp_path, pair_task_files):
    from conftest import TINY

    out = tmp_path / "run"
    result = api.train(None, [*TINY, "corpus.name=files", f"corpus.train_file={pair_task_files / 'train.jsonl'}",
                              f"corpus.validation_file={pair_task_files / 'validation.jsonl'}",
                              f"trainer.output_dir={out}", "trainer.max_epochs=1", "trainer.calibrate=false",
                              "corpus.max_train_pairs=200", f"data.cache_dir={tmp_path / 'cache'}"])
    assert "calibration" not in read_section(result.model_dir) and "calibration" not in result.metrics
    model = Predictor.from_pretrained(result.model_dir)
    assert model.temperature == 1.0
    report = api.evaluate(result.model_dir, output_dir=tmp_path / "eval")
    assert report.metrics["calibration"]["calibrated"] is None and not report.metrics["calibration"]["applied"]


@pytest.mark.parametrize("bad", [{"method": "temperature", "temperature": 0}, {"method": "temperature"},
                                 {"method": "affine", "scale": 1, "shift": 0}, "1.5"])
def test_a_broken_calibration_is_named_with_its_file(tiny_model_dir, tmp_path, bad):
    folder = shutil.copytree(tiny_model_dir, tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    config["korpair"]["calibration"] = bad
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFolderError, match=r"config.json.*calibration"):
        Predictor.from_pretrained(folder)


@pytest.mark.slow
@pytest.mark.parametrize("calibrated", [True, False])
def test_the_server_answers_with_the_calibrated_probabilities_unless_told_not_to(overfit, calibrated):
    import httpx

    from korpair.serve import serve_in_background

    temperature = read_section(overfit.model_dir)["calibration"]["temperature"]
    expected = Predictor.from_pretrained(overfit.model_dir, calibrated=calibrated).predict_proba(PAIRS[:1])[0]
    with serve_in_background(overfit.model_dir, port=0, calibrated=calibrated) as server:
        health = httpx.get(server.url + "health").json()
        premise, hypothesis = PAIRS[0]
        answer = httpx.post(server.url + "predict", json={"premise": premise, "hypothesis": hypothesis}).json()
    assert health["temperature"] == (temperature if calibrated else None)
    labels = list(answer["scores"])
    np.testing.assert_allclose([answer["scores"][n] for n in labels],
                               [expected[health["labels"].index(n)] for n in labels], atol=1e-5)


def test_a_similarity_model_gets_an_affine_map_of_its_score(tmp_path):
    """The one-output analogue of a temperature: scale and shift fitted to the validation scores."""
    from conftest import TINY
    from training.test_regression_runs import write_scores

    data = [*write_scores(tmp_path, 400, 320, seed=2), *TINY, "trainer.max_epochs=2",
            f"data.cache_dir={tmp_path / 'cache'}", f"trainer.output_dir={tmp_path / 'run'}"]
    result = api.train(None, data)
    fitted = read_section(result.model_dir)["calibration"]
    assert fitted["method"] == "affine" and fitted["after"]["mse"] <= fitted["before"]["mse"]
    model, raw = (Predictor.from_pretrained(result.model_dir, calibrated=c) for c in (True, False))
    pairs = [("비가 온다", "비가 내린다"), ("비가 온다", "날씨가 맑다")]
    np.testing.assert_allclose(model.predict_scores(pairs), fitted["scale"] * raw.predict_scores(pairs)
                               + fitted["shift"], rtol=1e-5, atol=1e-5)
    report = api.evaluate(result.model_dir, output_dir=tmp_path / "eval")
    cal = report.metrics["calibration"]
    assert cal["applied"] and cal["calibrated"]["mse"] == pytest.approx(report.metrics["mse"], rel=1e-5)
    assert cal["calibrated"]["mse"] == pytest.approx(fitted["after"]["mse"], rel=1e-3), "validation, as fitted"
    raw_report = api.evaluate(result.model_dir, output_dir=tmp_path / "raw", calibrated=False)
    # an affine map keeps the ranking (reverses it, were the scale negative)
    assert abs(report.metrics["spearman"]) == pytest.approx(abs(raw_report.metrics["spearman"]))
    assert raw_report.metrics["mse"] == pytest.approx(cal["uncalibrated"]["mse"], rel=1e-5)
