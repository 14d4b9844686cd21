"""Evaluation metrics agree with values computed by hand from the confusion matrix."""

from __future__ import annotations

import pytest

from korpair.inference.metrics import classification_report

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
