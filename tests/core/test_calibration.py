"""Calibration math: a known temperature is recovered, the metrics match their definitions."""

from __future__ import annotations

import numpy as np
import pytest

from korpair.calibration import (
    calibration_metrics,
    fit_affine,
    fit_temperature,
    nll,
    reliability_bins,
    softmax,
)


def sampled(temperature: float, n: int = 20000, classes: int = 3, seed: int = 0):
    """Logits and labels drawn from softmax(logits / temperature): that temperature is the calibrated one."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, classes)) * 4
    p = softmax(logits, temperature)
    labels = (p.cumsum(1) > rng.random((n, 1))).argmax(1)
    return logits, labels


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.5, 6.0])
def test_a_known_temperature_is_recovered(temperature):
    logits, labels = sampled(temperature)
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(temperature, rel=0.05)
    # it is the minimum of the NLL: a little either way is worse
    assert nll(logits, labels, fitted) <= min(nll(logits, labels, fitted * 0.9), nll(logits, labels, fitted * 1.1))


def test_fitting_lowers_nll_and_ece_of_an_over_confident_model():
    logits, labels = sampled(3.0)
    before = calibration_metrics(softmax(logits), labels)
    after = calibration_metrics(softmax(logits, fit_temperature(logits, labels)), labels)
    assert after["nll"] < before["nll"] and after["ece"] < before["ece"] / 3 and after["brier"] < before["brier"]
    assert after["ece"] < 0.02, "samples of a calibrated model are calibrated"


def test_metrics_follow_their_definitions():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    labels = np.array([0, 1, 1, 1])
    m = calibration_metrics(probs, labels, bins=10)
    # right-closed bins of 0.1: each confidence (0.9 right, 0.6 wrong, 0.7 right, 0.8 right) has its own
    expected_ece = (abs(1 - 0.9) + abs(0 - 0.6) + abs(1 - 0.7) + abs(1 - 0.8)) / 4
    assert m["ece"] == pytest.approx(expected_ece)
    assert m["brier"] == pytest.approx(np.mean([0.02, 0.72, 0.18, 0.08]))
    assert m["nll"] == pytest.approx(-np.mean(np.log([0.9, 0.4, 0.7, 0.8])))
    assert nll(np.log(probs), labels) == pytest.approx(m["nll"])


def test_reliability_bins_count_every_pair_once_certainty_included():
    probs = np.array([[1.0, 0.0], [0.5, 0.5], [0.51, 0.49]])
    bins = reliability_bins(probs, np.array([0, 1, 0]), bins=15)
    assert sum(b["pairs"] for b in bins) == 3 and bins[-1]["pairs"] == 1 and bins[-1]["accuracy"] == 1.0


def test_affine_fit_and_degenerate_inputs():
    scores = np.array([0.0, 1.0, 2.0, 3.0])
    assert fit_affine(scores, 2 * scores + 1) == pytest.approx((2.0, 1.0))
    assert fit_affine(np.ones(4), scores) == (1.0, 0.0)
    certain = np.array([[50.0, 0.0], [0.0, 50.0]])  # all right and certain: the NLL is flat, nothing to fit
    fitted = fit_temperature(certain, np.array([0, 1]))
    assert 0.05 <= fitted <= 1.0 and nll(certain, np.array([0, 1]), fitted) <= nll(certain, np.array([0, 1]))
    with pytest.raises(ValueError):
        fit_temperature(np.zeros((0, 3)), np.zeros(0, dtype=int))
