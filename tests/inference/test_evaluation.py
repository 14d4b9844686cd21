"""evaluate_pairs: a regression model's report (metrics, scatter and residual plots, scores), a classifier's
task and positive-label F1, and reports that replace each other whole."""

from __future__ import annotations

import json
import os

import pytest
from broken_folders import fail_on_call, snapshot
from conftest import KOREAN_TEXTS, SHARED_DATA
from regression_models import build_tiny_regressor, read_korsts

from korpair.errors import CorpusError, KorpairError
from korpair.inference import Predictor, evaluate_pairs
from korpair.types import Pair, ScoreRange

PNG = b"\x89PNG\r\n\x1a\n"
REGRESSION_FILES = ["metrics.json", "predictions.jsonl", "predictions_scatter.png", "residuals_histogram.png"]


def sts_pairs(n: int = 40) -> list[Pair]:
    """Pairs of the test sentences with made-up 0-5 scores (ties included)."""
    texts = KOREAN_TEXTS
    return [Pair(texts[i % len(texts)], texts[(3 * i + 1) % len(texts)], round((i * 7 % 21) / 4, 2))
            for i in range(n)]


@pytest.fixture(scope="module")
def regressor(tmp_path_factory) -> Predictor:
    return Predictor.from_pretrained(build_tiny_regressor(tmp_path_factory.mktemp("sts") / "model"), device="cpu")


def read_rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_regression_report_has_its_metrics_plots_and_scores(regressor, tmp_path):
    from scipy.stats import pearsonr, spearmanr

    pairs = sts_pairs()
    report = evaluate_pairs(regressor, pairs, tmp_path / "eval", batch_size=7, source="sts.jsonl")
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == REGRESSION_FILES
    assert sorted(report.files) == REGRESSION_FILES
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics == report.metrics
    assert list(metrics) == ["data", "backend", "task", "n", "pearson", "spearman", "mse", "mae", "f1_at_3",
                             "score_range", "calibration", "dropped_rows"]
    assert metrics["dropped_rows"] == {}, "evaluate_pairs was told of no rows left out"
    assert (metrics["data"], metrics["task"], metrics["n"], metrics["score_range"]) == (
        "sts.jsonl", "regression", 40, [0, 5])
    rows = read_rows(report.predictions_file)
    assert [(r["premise"], r["hypothesis"], r["gold"]) for r in rows] == [
        (p.premise, p.hypothesis, p.label) for p in pairs]
    assert set(rows[0]) == {"premise", "hypothesis", "gold", "score"}
    gold, scores = [r["gold"] for r in rows], [r["score"] for r in rows]
    assert scores == pytest.approx(regressor.predict_scores(pairs).tolist(), abs=1e-6)
    assert metrics["pearson"] == pytest.approx(pearsonr(gold, scores)[0], abs=1e-9)
    assert metrics["spearman"] == pytest.approx(spearmanr(gold, scores)[0], abs=1e-9)
    assert metrics["mse"] == pytest.approx(sum((s - g) ** 2 for g, s in zip(gold, scores)) / 40)
    assert metrics["mae"] == pytest.approx(sum(abs(s - g) for g, s in zip(gold, scores)) / 40)
    tp = sum(g >= 3 and s >= 3 for g, s in zip(gold, scores))
    wrong = sum((g >= 3) != (s >= 3) for g, s in zip(gold, scores))
    assert metrics["f1_at_3"] == pytest.approx(2 * tp / (2 * tp + wrong) if tp + wrong else 0.0)
    for name in ("predictions_scatter.png", "residuals_histogram.png"):
        assert (tmp_path / "eval" / name).read_bytes().startswith(PNG)


def test_f1_at_3_only_on_the_0_to_5_scale(tmp_path):
    predictor = Predictor.from_pretrained(build_tiny_regressor(tmp_path / "unit", score_range=ScoreRange(0, 1)))
    pairs = [Pair(p.premise, p.hypothesis, p.label / 5) for p in sts_pairs()]
    metrics = evaluate_pairs(predictor, pairs, tmp_path / "eval").metrics
    assert metrics["score_range"] == [0, 1] and "f1_at_3" not in metrics


def test_gold_labels_that_are_not_scores_are_an_error_naming_the_pair(regressor, tmp_path):
    pairs = sts_pairs(5)
    pairs[3] = Pair("가", "나", "entailment")
    with pytest.raises(CorpusError, match=r"dev\.tsv: pair 4: gold 'entailment' is not a score; this is a regression"):
        evaluate_pairs(regressor, pairs, tmp_path / "eval", source="dev.tsv")
    pairs[3] = Pair("가", "나", float("nan"))
    with pytest.raises(CorpusError, match="pair 4: gold nan is not a score"):
        evaluate_pairs(regressor, pairs, tmp_path / "eval")
    with pytest.raises(CorpusError, match="no labelled pairs"):
        evaluate_pairs(regressor, [], tmp_path / "eval")
    assert not (tmp_path / "eval").exists()


def test_a_classifier_report_says_its_task_and_a_binary_one_its_positive_f1(tmp_path):
    from conftest import build_tiny_classifier

    predictor = Predictor.from_pretrained(build_tiny_classifier(tmp_path / "paws", labels=("0", "1")))
    pairs = [Pair(a, b, str(i % 2)) for i, (a, b) in enumerate(zip(KOREAN_TEXTS, reversed(KOREAN_TEXTS)))]
    report = evaluate_pairs(predictor, pairs, tmp_path / "eval")
    metrics = report.metrics
    assert metrics["task"] == "classification" and metrics["positive_label"] == "1"
    assert metrics["f1"] == metrics["per_class"]["1"]["f1"]
    assert sorted(report.files) == ["confusion_matrix.png", "metrics.json", "predictions.jsonl", "reliability_diagram.png"]
    rows = read_rows(report.predictions_file)
    assert set(rows[0]) == {"premise", "hypothesis", "gold", "predicted", "scores"}


def test_a_report_of_the_other_task_replaces_the_old_one_whole(regressor, tiny_model_dir, tmp_path):
    out = tmp_path / "eval"
    classifier = Predictor.from_pretrained(tiny_model_dir)
    evaluate_pairs(classifier, [Pair("가", "나", "neutral")], out)
    evaluate_pairs(regressor, sts_pairs(), out)
    assert sorted(p.name for p in out.iterdir()) == REGRESSION_FILES  # no confusion matrix left from before
    evaluate_pairs(classifier, [Pair("가", "나", "neutral")], out)
    assert sorted(p.name for p in out.iterdir()) == ["confusion_matrix.png", "metrics.json", "predictions.jsonl", "reliability_diagram.png"]


@pytest.mark.parametrize("failing_write", [1, 2, 3, 4])
def test_a_full_disk_keeps_the_previous_regression_report(regressor, tmp_path, monkeypatch, failing_write):
    report = tmp_path / "eval"
    report.mkdir()
    for name in REGRESSION_FILES:
        (report / name).write_text(f"previous {name}")
    before = snapshot(report)
    monkeypatch.setattr(os, "fsync", fail_on_call(failing_write, os.fsync))
    with pytest.raises(KorpairError, match="disk"):
        evaluate_pairs(regressor, sts_pairs(), report)
    assert snapshot(report) == before


@pytest.mark.skipif(not (SHARED_DATA / "korsts").is_dir(), reason="needs ../shared/data/korsts")
def test_korsts_dev_is_reported_with_korsts_scores(regressor, tmp_path):
    from scipy.stats import spearmanr

    pairs = read_korsts("dev", limit=300)
    report = evaluate_pairs(regressor, pairs, tmp_path / "eval", source="korsts:validation")
    rows = read_rows(report.predictions_file)
    assert len(rows) == report.metrics["n"] == 300
    assert [r["gold"] for r in rows] == [p.label for p in pairs] and isinstance(rows[0]["gold"], float)
    assert report.metrics["spearman"] == pytest.approx(
        spearmanr([r["gold"] for r in rows], [r["score"] for r in rows])[0], abs=1e-9)
