"""Evaluation metrics agree with values computed by hand (from the confusion matrix, or the errors) and with
scipy's correlations."""

from __future__ import annotations

import numpy as np
import pytest

from korpair.inference.metrics import binary_f1, classification_report, regression_report, spearman

NAMES = ("entailment", "neutral", "contradiction")
# 10 pairs. Gold / predicted, counted by hand:
#   entailment    (4 gold): 3 right, 1 predicted neutral
#   neutral       (3 gold): 1 right, 1 predicted entailment, 1 predicted contradiction
#   contradiction (3 gold): 3 right
GOLD = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
PREDICTED = [0, 0, 0, 1, 1, 0, 2, 2, 2, 2]


def test_report_matches_hand_computed_values():
    report = classification_report(GOLD, PREDICTED, NAMES)
    assert report["n"] == 10
    assert report["confusion_matrix"] == [[3, 1, 0], [1, 1, 1], [0, 0, 3]]
    assert report["accuracy"] == pytest.approx(7 / 10)
    # precision = right / predicted as that label; recall = right / gold of that label
    expected = {
        "entailment": (3 / 4, 3 / 4),  # predicted entailment 4 times (3 right), 4 gold
        "neutral": (1 / 2, 1 / 3),  # predicted neutral twice (1 right), 3 gold
        "contradiction": (3 / 4, 3 / 3),  # predicted contradiction 4 times (3 right), 3 gold
    }
    f1s = []
    for name, (precision, recall) in expected.items():
        f1 = 2 * precision * recall / (precision + recall)
        f1s.append(f1)
        got = report["per_class"][name]
        assert got["precision"] == pytest.approx(precision)
        assert got["recall"] == pytest.approx(recall)
        assert got["f1"] == pytest.approx(f1)
    assert [report["per_class"][n]["support"] for n in NAMES] == [4, 3, 3]
    assert report["macro_f1"] == pytest.approx(sum(f1s) / 3)  # 0.7 for these counts
    assert report["labels"] == list(NAMES)


def test_a_label_never_predicted_scores_zero_not_nan():
    report = classification_report([0, 1, 2], [0, 0, 0], NAMES)
    assert report["per_class"]["neutral"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert report["per_class"]["entailment"]["precision"] == pytest.approx(1 / 3)
    assert report["macro_f1"] == pytest.approx((2 * (1 / 3) * 1 / (1 / 3 + 1)) / 3)


def test_no_examples_is_an_error():
    with pytest.raises(ValueError, match="no examples"):
        classification_report([], [], NAMES)


def test_a_two_label_classifier_reports_f1_of_its_positive_label():
    # paraphrase: "0" no, "1" yes (the second label is the positive one)
    gold, predicted = [1, 1, 1, 0, 0, 0], [1, 1, 0, 1, 0, 0]  # TP 2, FN 1, FP 1
    report = classification_report(gold, predicted, ("0", "1"))
    assert report["task"] == "classification" and report["positive_label"] == "1"
    assert report["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert report["f1"] == report["per_class"]["1"]["f1"]
    three = classification_report(GOLD, PREDICTED, NAMES)
    assert three["task"] == "classification" and "f1" not in three and "positive_label" not in three


# Gold and predicted similarity scores on the 0-5 scale, with ties on both sides (Spearman's average ranks).
STS_GOLD = [0.0, 0.4, 1.2, 2.0, 2.0, 2.8, 3.0, 3.6, 4.2, 5.0, 5.0, 1.2]
STS_PREDICTED = [0.3, 1.1, 0.9, 2.6, 3.1, 2.6, 2.9, 3.5, 4.8, 4.1, 3.2, 2.0]


def test_regression_report_matches_scipy_and_hand_computed_errors():
    from scipy.stats import pearsonr, spearmanr

    report = regression_report(STS_GOLD, STS_PREDICTED, score_range=(0, 5))
    assert report["task"] == "regression" and report["n"] == 12
    assert report["pearson"] == pytest.approx(pearsonr(STS_GOLD, STS_PREDICTED)[0], abs=1e-12)
    assert report["spearman"] == pytest.approx(spearmanr(STS_GOLD, STS_PREDICTED)[0], abs=1e-12)
    errors = [p - g for g, p in zip(STS_GOLD, STS_PREDICTED)]
    assert report["mse"] == pytest.approx(sum(e * e for e in errors) / 12)
    assert report["mae"] == pytest.approx(sum(abs(e) for e in errors) / 12)
    assert report["score_range"] == [0, 5]
    assert list(report) == ["task", "n", "pearson", "spearman", "mse", "mae", "f1_at_3", "score_range"]


def test_f1_at_3_binarises_both_scores_at_3_as_klue_sts_does():
    # gold >= 3:      F F F F F F T T T T T F   (3.0 itself is positive)
    # predicted >= 3: F F F F T F F T T T T F
    # TP 4 (3.6, 4.2, 5.0, 5.0), FN 1 (gold 3.0 predicted 2.9), FP 1 (gold 2.0 predicted 3.1)
    report = regression_report(STS_GOLD, STS_PREDICTED, score_range=(0.0, 5.0))
    assert report["f1_at_3"] == pytest.approx(2 * 4 / (2 * 4 + 1 + 1))
    assert binary_f1(np.array(STS_GOLD) >= 3, np.array(STS_PREDICTED) >= 3) == pytest.approx(0.8)
    # only on the 0-5 scale: elsewhere 3.0 means nothing in particular
    for other in ((0, 1), (None, None), None):
        assert "f1_at_3" not in regression_report(STS_GOLD, STS_PREDICTED, score_range=other)
    assert regression_report(STS_GOLD, STS_PREDICTED)["score_range"] == [None, None]
    assert binary_f1(np.zeros(3, bool), np.zeros(3, bool)) == 0.0


def test_spearman_ranks_ties_as_scipy_does():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    gold = np.round(rng.uniform(0, 5, 500) * 5) / 5  # many ties, as KorSTS's scores have
    predicted = gold + rng.normal(0, 1, 500)
    predicted[:50] = 2.5
    assert spearman(gold, predicted) == pytest.approx(spearmanr(gold, predicted)[0], abs=1e-12)


def test_constant_scores_have_no_correlation_and_no_nan():
    report = regression_report([1.0, 2.0, 3.0], [2.5, 2.5, 2.5])
    assert report["pearson"] is None and report["spearman"] is None
    assert report["mse"] == pytest.approx((1.5**2 + 0.5**2 + 0.5**2) / 3)
    with pytest.raises(ValueError, match="no examples"):
        regression_report([], [])
    with pytest.raises(ValueError, match="3 gold scores but 2 predicted"):
        regression_report([1.0, 2.0, 3.0], [1.0, 2.0])
