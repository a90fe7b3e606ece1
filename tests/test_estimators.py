"""Tests of xent_lab.calibration.estimators: debiased ECE, ECE-sweep and smooth ECE, by hand and against relplot."""

from __future__ import annotations

import math

import numpy as np
import pytest
import relplot

from xent_lab import calibration as cal
from xent_lab.calibration.binning import top_label

# Binary positive-class p with n_bins=4 (bins (.5, .75] and (.75, 1] hold every top-label confidence here):
#   bin 2: confidence .55 three times, all correct      -> acc 1,   gap .45, variance 0
#   bin 3: confidence .8 four times, correct 1, 1, 1, 0 -> acc .75, gap -.05, variance .75 * .25
P = np.array([0.55] * 3 + [0.8] * 4)
Y = np.array([1, 1, 1, 1, 1, 1, 0])


def _folded_normal_mean(mu: float, sigma: float) -> float:
    phi = 0.5 * (1 + math.erf(-mu / sigma / math.sqrt(2)))
    return sigma * math.sqrt(2 / math.pi) * math.exp(-(mu**2) / (2 * sigma**2)) + mu * (1 - 2 * phi)


def test_debiased_ece_by_hand():
    # p=2: (3/7) (.45² - 0) + (4/7) (.05² - .75 * .25 / 3), then the root.
    expected = math.sqrt(3 / 7 * 0.2025 + 4 / 7 * (0.0025 - 0.0625))
    assert cal.debiased_ece(P, Y, n_bins=4) == cal.debiased_ece(P, Y, n_bins=4, p=2) == pytest.approx(expected)
    # p=1: bin 2 needs no correction (sigma 0); bin 3: 2 * .05 - E|N(-.05, .75 * .25 / 4)|.
    bin3 = 2 * 0.05 - _folded_normal_mean(-0.05, math.sqrt(0.75 * 0.25 / 4))
    assert cal.debiased_ece(P, Y, n_bins=4, p=1) == pytest.approx(3 / 7 * 0.45 + 4 / 7 * bin3)
    assert cal.debiased_ece(P, Y, n_bins=4, p=1) == pytest.approx(0.148666, abs=1e-6)


def test_debiased_ece_is_the_plugin_ece_without_noise():
    # Bins whose samples are all right or all wrong have no variance: nothing to correct.
    p = np.array([0.6, 0.6, 0.9, 0.9])
    y = np.array([1, 1, 0, 0])
    assert cal.debiased_ece(p, y, n_bins=4, p=1) == pytest.approx(cal.ece(p, y, n_bins=4))


def test_debiased_ece_is_near_zero_where_binned_ece_is_not():
    # Calibrated by construction: y ~ Bernoulli(p). At n=200 the plug-in ECE is biased upwards.
    rng = np.random.default_rng(0)
    p = rng.uniform(size=(100, 200))
    y = (rng.uniform(size=p.shape) < p).astype(int)
    binned = np.array([cal.ece(pi, yi) for pi, yi in zip(p, y)])
    debiased = np.array([cal.debiased_ece(pi, yi) for pi, yi in zip(p, y)])
    first_order = np.array([cal.debiased_ece(pi, yi, p=1) for pi, yi in zip(p, y)])
    assert binned.min() > 0.02 and binned.mean() > 0.06
    assert np.median(debiased) == 0 and debiased.mean() < 0.5 * binned.mean()
    # The p=1 correction removes 1 - (2 - sqrt 2) of the bias at a zero gap, about 40%.
    assert first_order.mean() == pytest.approx((2 - np.sqrt(2)) * binned.mean(), rel=0.1)


def test_debiased_ece_checks_p():
    with pytest.raises(ValueError, match="p must be 1 or 2"):
        cal.debiased_ece(P, Y, p=3)


def test_ece_sweep_by_hand():
    # Confidences .6 .7 .8 .9, correct 1 0 1 1. Equal-mass bins (rank * b // 4):
    #   b=1: |.75 - .75| = 0; b=2: {.6, .7} acc .5, {.8, .9} acc 1 -> .5 * .15 + .5 * .15 = .15 (monotone);
    #   b=3: {.6, .7} .5, {.8} 1, {.9} 1 -> .075 + .05 + .025 = .15 (monotone); b=4: 1 0 1 1 is not: stop at 3.
    p = np.array([0.6, 0.3, 0.8, 0.9])
    y = np.array([1, 1, 1, 1])
    assert cal.ece_sweep(p, y) == pytest.approx(0.15)
    assert cal.ece_sweep(p, y, max_bins=1) == pytest.approx(0.0)
    # All four bins monotone (0 1 1 1): the sweep reaches b=4, mean |a - c| = (.6 + .3 + .2 + .1) / 4.
    assert cal.ece_sweep(p, np.array([0, 0, 1, 1])) == pytest.approx(0.3)


def test_ece_sweep_of_a_collapsed_model_is_its_one_bin_gap():
    # The same prediction for every input (a model that stopped learning): one tie group, one filled bin at any
    # bin count, so the sweep is |accuracy - confidence| = |0.3 - 0.7|; in every bootstrap resample too.
    probs = np.tile([0.7, 0.2, 0.1], (4000, 1))
    labels = np.where(np.arange(4000) % 10 < 3, 0, 1)
    assert cal.ece_sweep(probs, labels) == pytest.approx(0.4)
    low, high = cal.bootstrap_ci(probs, labels, ["ece_sweep", "ece"], n_resamples=50, seed=0)["ece_sweep"]
    assert (low, high) == pytest.approx(cal.bootstrap_ci(probs, labels, ["ece"], n_resamples=50, seed=0)["ece"])


def test_smooth_ece_by_hand():
    # Every confidence .7, every prediction right: the smoothed residual is -.3 wherever the density is not
    # negligible, so smECE_σ = .3 at any σ and the fixed point is σ* ≈ .3.
    p = np.full(50, 0.7)
    y = np.ones(50, int)
    assert cal.smooth_ece(p, y, sigma=0.1) == pytest.approx(0.3, abs=1e-4)
    assert cal.smooth_ece(p, y) == pytest.approx(0.3, abs=1e-4)


@pytest.mark.parametrize(("n", "k", "temperature"), [(40, 3, 1.0), (2000, 10, 0.5), (3000, 2, 2.0)])
def test_smooth_ece_equals_relplot(n, k, temperature):
    rng = np.random.default_rng(n)
    logits = rng.normal(size=(n, k)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    true = np.exp(logits / temperature) / np.exp(logits / temperature).sum(axis=1, keepdims=True)
    labels = (true.cumsum(axis=1) < rng.uniform(size=(n, 1))).sum(axis=1).clip(0, k - 1)
    confidence, correct = top_label(probs, labels)
    assert cal.smooth_ece(probs, labels) == pytest.approx(relplot.smECE(confidence, correct), rel=1e-12)
    assert cal.smooth_ece(probs, labels, sigma=0.05) == pytest.approx(
        relplot.smECE_sigma(confidence, correct, 0.05), rel=1e-12
    )


def test_smooth_ece_checks_sigma():
    with pytest.raises(ValueError, match="sigma must lie in"):
        cal.smooth_ece(P, Y, sigma=0)


def test_estimator_metrics_names_each_estimator():
    metrics = cal.estimator_metrics(P, Y, n_bins=4)
    assert metrics == {
        "debiased_ece": cal.debiased_ece(P, Y, 4),
        "ece_sweep": cal.ece_sweep(P, Y),
        "smooth_ece": cal.smooth_ece(P, Y),
    }


def _equal_mass_bin_ids(scores: np.ndarray, n_bins: int) -> np.ndarray:
    """Nixon et al.'s equal-mass bin of each score spelled out: r' M // n, r' the rank of the first tied score."""
    order = np.argsort(scores)
    bin_ids = np.empty(len(scores), dtype=np.int64)
    bin_ids[order] = np.searchsorted(scores[order], scores[order], side="left") * n_bins // len(scores)
    return bin_ids


def _sweep_by_brute_force(confidence: np.ndarray, correct: np.ndarray) -> float:
    """Roelofs et al.'s sweep spelled out: every b from 1, equal-mass bins, stop before the first non-monotone b."""
    best = abs(correct.mean() - confidence.mean())
    for b in range(2, len(confidence) + 1):
        ids = _equal_mass_bin_ids(confidence, b)
        filled = [m for m in range(b) if np.any(ids == m)]
        accuracy = [correct[ids == m].mean() for m in filled]
        if any(later < earlier for earlier, later in zip(np.maximum.accumulate(accuracy), accuracy[1:])):
            break
        best = sum((ids == m).sum() * abs(correct[ids == m].mean() - confidence[ids == m].mean()) for m in filled)
        best /= len(confidence)
    return float(best)


@pytest.mark.parametrize("values", [(0.55, 0.6, 0.9), (0.5, 0.5000001, 0.51, 0.52, 0.8)])
def test_ece_sweep_with_few_distinct_confidences_equals_the_sweep_spelled_out(values):
    # A nearly collapsed model: a handful of distinct confidences, so every bin count up to n stays monotone
    # and the sweep stops early once its bins can no longer change; the value must be the full sweep's.
    rng = np.random.default_rng(3)
    confidence = rng.choice(values, size=300)
    correct = (rng.uniform(size=300) < confidence).astype(float)
    probs = np.stack([confidence, 1 - confidence], axis=1)
    assert cal.ece_sweep(probs, 1 - correct.astype(int)) == pytest.approx(_sweep_by_brute_force(confidence, correct))
