"""Tests of xent_lab.calibration.selective: the selective-prediction metrics by hand, against TorchUncertainty's
code re-expressed in NumPy, with ties, and their bootstrap intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special

from xent_lab import calibration as cal
from xent_lab.calibration.bootstrap import resample_counts, resampled_metrics


def _binary(confidence, wrong):
    """Two-class probabilities [c, 1 - c] (class 0 predicted) and labels that make the flagged samples wrong."""
    confidence = np.asarray(confidence, dtype=np.float64)
    return np.stack([confidence, 1 - confidence], axis=1), np.asarray(wrong)


def torch_uncertainty(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """TorchUncertainty's AURC, AUGRC, RiskAt80Cov and CovAt5Risk line by line in NumPy
    (src/torch_uncertainty/metrics/classification/risk_coverage.py, ENSTA-U2IS-AI/torch-uncertainty at
    0d0df2b2e553139edeb2cdd1b99a88efb68f1945); torchmetrics' `_auc_compute` is the trapezoidal rule."""
    scores, errors = probs.max(-1), (probs.argmax(-1) != labels) * 1.0
    errors = errors[np.argsort(-scores, kind="stable")]  # scores.argsort(descending=True)
    num_samples = len(scores)
    error_rates = errors.cumsum(-1) / np.arange(1, num_samples + 1)
    cov = np.arange(1, num_samples + 1) / num_samples
    aurc = np.trapezoid(error_rates, cov) / (1 - 1 / num_samples)
    augrc = np.trapezoid(error_rates * cov, cov) / (1 - 1 / num_samples)
    risk = error_rates[math.ceil(num_samples * 0.8) - 1]
    admissible_risks = (error_rates > 0.05) * 1
    max_cov_at_risk = admissible_risks[::-1].argmin()
    coverage = math.nan if admissible_risks[max_cov_at_risk] > 0.05 else 1 - max_cov_at_risk / num_samples
    return {"aurc": aurc, "augrc": augrc, "risk_at_80_coverage": risk, "coverage_at_5_risk": coverage}


def test_selective_metrics_by_hand():
    # Descending confidence .9 .8 .7 .6 .55, errors 0 1 0 0 1: E_k = 0 1 1 1 2, r_k = 0, 1/2, 1/3, 1/4, 2/5.
    probs, labels = _binary([0.7, 0.9, 0.55, 0.8, 0.6], [0, 0, 1, 1, 0])
    got = cal.selective_metrics(probs, labels)
    # AURC = (sum r - (r_1 + r_5) / 2) / 4 = (89/60 - 12/60) / 4; AUGRC = (sum E/5 - (0 + 2/5) / 2) / 4 = (1 - .2) / 4.
    assert got["aurc"] == pytest.approx(77 / 240, rel=1e-15)
    assert got["augrc"] == pytest.approx(0.2, rel=1e-15)
    assert got["risk_at_80_coverage"] == 0.25  # r_4, 4 = ceil(.8 * 5)
    assert got["coverage_at_5_risk"] == 0.2  # only r_1 = 0 is <= .05
    # TorchUncertainty's own AURC example (its docstring): tensor(0.0833).
    example = cal.selective_metrics(np.array([[0.7, 0.3], [0.6, 0.4], [0.8, 0.2]]), np.array([0, 1, 0]))
    assert example["aurc"] == pytest.approx(1 / 12, rel=1e-15)


def test_tied_samples_count_their_groups_mean_error():
    # .9 (right), .9 (wrong), .7 (right), .6 (wrong): the tied pair counts 1/2 each, E_k = .5 1 1 2, r_k = .5 .5 1/3 .5;
    # the mean of the two orders of the pair (AURC 13/36 and 19/36, AUGRC 1/4 and 7/24).
    probs, labels = _binary([0.9, 0.7, 0.9, 0.6], [0, 0, 1, 1])
    got = cal.selective_metrics(probs, labels)
    assert got["aurc"] == pytest.approx(4 / 9, rel=1e-15)
    assert got["augrc"] == pytest.approx(13 / 48, rel=1e-15)
    assert got["risk_at_80_coverage"] == 0.5
    assert got["coverage_at_5_risk"] == 0.0  # no coverage reaches 5% risk: reject everything
    order = [2, 3, 0, 1]
    assert cal.selective_metrics(probs[order], labels[order]) == got


def test_coverage_at_risk_is_the_last_admissible_coverage_where_torch_uncertainty_gives_nan():
    # r = 0, 1/2, 2/3: coverage 1/3 reaches 5% risk; TorchUncertainty checks the unflipped array and returns NaN.
    probs, labels = _binary([0.9, 0.8, 0.7], [0, 1, 1])
    assert cal.selective_metrics(probs, labels)["coverage_at_5_risk"] == pytest.approx(1 / 3)
    assert math.isnan(torch_uncertainty(probs, labels)["coverage_at_5_risk"])
    # A non-monotone curve: r = 0, 1/2, 1/3, 1/4, ..., 1/20 at k = 20 (one error, second): the largest k is 20.
    probs, labels = _binary(np.linspace(0.99, 0.6, 25), [0, 1, *[0] * 18, 1, 1, 1, 1, 1])
    assert cal.selective_metrics(probs, labels)["coverage_at_5_risk"] == pytest.approx(20 / 25)


@pytest.mark.parametrize(("n", "k", "scale", "seed"), [(50, 2, 6.0, 0), (1000, 10, 4.0, 1), (3001, 5, 8.0, 2)])
def test_equals_torch_uncertainty_without_ties(n, k, scale, seed):
    rng = np.random.default_rng(seed)
    probs = special.softmax(rng.normal(size=(n, k)) * scale, axis=1)
    labels = np.where(rng.random(n) < 0.95, probs.argmax(axis=1), rng.integers(0, k, n))
    assert len(np.unique(probs.max(axis=1))) == n
    expected = torch_uncertainty(probs, labels)
    assert math.isfinite(expected["coverage_at_5_risk"])
    assert cal.selective_metrics(probs, labels) == pytest.approx(expected, rel=1e-12)


def test_one_sample_has_no_area():
    got = cal.selective_metrics(np.array([[0.8, 0.2]]), np.array([1]))
    assert math.isnan(got["aurc"]) and math.isnan(got["augrc"])
    assert got["risk_at_80_coverage"] == 1.0 and got["coverage_at_5_risk"] == 0.0


def test_a_binary_probability_is_read_as_two_classes():
    p = np.array([0.9, 0.2, 0.6, 0.45])
    labels = np.array([1, 0, 0, 1])
    assert cal.selective_metrics(p, labels) == cal.selective_metrics(np.stack([1 - p, p], axis=1), labels)


def test_resamples_equal_the_metrics_of_explicit_resamples_with_ties():
    rng = np.random.default_rng(4)
    probs = np.round(rng.dirichlet(np.ones(3) * 0.3, size=200), 1)  # many ties, saturated 1.0 among them
    probs /= probs.sum(axis=1, keepdims=True)
    labels = rng.integers(0, 3, 200)
    counts = np.vstack([np.ones(200), resample_counts(200, 30, rng)])
    got = resampled_metrics(probs, labels, counts, tuple(cal.SELECTIVE))
    for row, c in enumerate(counts):
        index = np.repeat(np.arange(200), c.astype(int))
        expected = cal.selective_metrics(probs[index], labels[index])
        assert {name: got[name][row] for name in cal.SELECTIVE} == pytest.approx(expected, abs=1e-12), row


def test_the_intervals_hold_the_values_and_follow_the_seed():
    rng = np.random.default_rng(7)
    probs = special.softmax(rng.normal(size=(2000, 10)) * 4, axis=1)
    labels = np.where(rng.random(2000) < 0.9, probs.argmax(axis=1), rng.integers(0, 10, 2000))
    scores = cal.score(probs, labels, n_resamples=300, seed=3)
    for name in cal.SELECTIVE:
        low, high = scores.intervals[name]
        assert low < scores.values[name] < high, name
    assert cal.score(probs, labels, n_resamples=300, seed=3).intervals == scores.intervals
    other = cal.score(probs, labels, n_resamples=300, seed=4).intervals
    assert all(other[name] != scores.intervals[name] for name in cal.SELECTIVE)


def test_selective_metrics_are_not_calibration_metrics():
    """They need a sort of the confidences, which `calibration_metrics` (and its per-epoch use) does without."""
    assert set(cal.SELECTIVE) <= set(cal.METRICS) and not set(cal.SELECTIVE) & set(cal.CALIBRATION_METRICS)
    probs, labels = _binary([0.9, 0.8, 0.7], [0, 1, 0])
    assert not set(cal.SELECTIVE) & set(cal.calibration_metrics(probs, labels))
