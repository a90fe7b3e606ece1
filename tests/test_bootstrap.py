"""Tests of xent_lab.calibration.bootstrap: resampled metrics by hand and against explicit resampling,
interval coverage in simulation, the paired bootstrap, and input checks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

from xent_lab import calibration as cal
from xent_lab.calibration.bootstrap import resample_counts, resampled_metrics

# The 3-class example of tests/test_calibration.py (n_bins=4): confidences 1, .5, .45, .8, .6; correct 1 0 1 0 1.
PROBS = np.array([[1.0, 0.0, 0.0], [0.25, 0.5, 0.25], [0.3, 0.45, 0.25], [0.8, 0.1, 0.1], [0.6, 0.3, 0.1]])
LABELS = np.array([0, 2, 1, 2, 0])


def _overconfidence(probs, labels):
    """Mean top-label confidence minus accuracy, written out."""
    return float(probs.max(axis=1).mean() - cal.accuracy(probs, labels))


def _explicit(probs, labels, counts, n_bins):
    index = np.repeat(np.arange(len(labels)), counts.astype(int))
    return {
        **cal.calibration_metrics(probs[index], labels[index], n_bins),
        "overconfidence": _overconfidence(probs[index], labels[index]),
        **cal.estimator_metrics(probs[index], labels[index], n_bins),
        **cal.selective_metrics(probs[index], labels[index]),
    }


def test_resampled_metrics_by_hand():
    # Counts 2 0 1 1 1: rows a, a, c, d, e. Correct 1 1 1 0 1 -> accuracy .8; Brier 0, 0, .455, 1.46, .26.
    counts = np.array([[2.0, 0, 1, 1, 1]])
    got = resampled_metrics(PROBS, LABELS, counts, cal.BOOTSTRAP_METRICS, n_bins=4)
    assert got["accuracy"][0] == pytest.approx(0.8)
    assert got["brier"][0] == pytest.approx((0.455 + 1.46 + 0.26) / 5)
    # Bins: (.25, .5] {c: .45, 1}, (.5, .75] {e: .6, 1}, (.75, 1] {a, a: 1, 1; d: .8, 0} -> conf .9333, acc 2/3.
    assert got["ece"][0] == pytest.approx((0.55 + 0.4 + 3 * abs(2 / 3 - 2.8 / 3)) / 5)
    assert got["mce"][0] == pytest.approx(0.55)
    # Confidences 1, 1, .45, .8, .6: mean .77, accuracy .8.
    assert got["overconfidence"][0] == pytest.approx(0.77 - 0.8)
    # A row of ones is the test set itself.
    ones = resampled_metrics(PROBS, LABELS, np.ones((1, 5)), cal.BOOTSTRAP_METRICS, n_bins=4)
    assert {k: v[0] for k, v in ones.items()} == pytest.approx(_explicit(PROBS, LABELS, np.ones(5), 4))


def test_resampled_metrics_equal_the_metrics_of_explicit_resamples():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(4), size=300)
    probs = np.round(probs, 2)  # ties, which equal-mass bins keep together
    probs /= probs.sum(axis=1, keepdims=True)
    labels = rng.integers(0, 4, 300)
    counts = resample_counts(300, 6, rng)
    np.testing.assert_array_equal(counts.sum(axis=1), 300)
    got = resampled_metrics(probs, labels, counts, cal.BOOTSTRAP_METRICS, n_bins=10)
    for row, c in enumerate(counts):
        expected = _explicit(probs, labels, c, 10)
        for name in cal.BOOTSTRAP_METRICS:
            assert got[name][row] == pytest.approx(expected[name], abs=1e-12), name


def test_every_metric_is_defined_once_and_has_an_interval():
    """Each metric of the registry is one function of the summary statistics: its single value (the statistics of
    the test set, computed directly) equals its value on a resample of counts one (the statistics as a product with
    the counts), and bootstrap_ci gives it an interval."""
    rng = np.random.default_rng(5)
    probs = np.round(rng.dirichlet(np.ones(5) * 0.5, size=400), 2)  # ties and exact bin edges
    probs /= probs.sum(axis=1, keepdims=True)
    labels = rng.integers(0, 5, 400)
    assert tuple(cal.METRICS) == cal.BOOTSTRAP_METRICS
    point = {
        **cal.calibration_metrics(probs, labels, 10),
        "overconfidence": _overconfidence(probs, labels),
        **cal.estimator_metrics(probs, labels, 10),
        **cal.selective_metrics(probs, labels),
    }
    assert set(point) == set(cal.METRICS) and set(cal.CALIBRATION_METRICS) < set(point)
    ones = resampled_metrics(probs, labels, np.ones((1, 400)), tuple(cal.METRICS), n_bins=10)
    for name in cal.METRICS:
        assert ones[name][0] == pytest.approx(point[name], abs=1e-12), name
    intervals = cal.bootstrap_ci(probs, labels, n_resamples=40, seed=0, n_bins=10)
    assert list(intervals) == list(cal.METRICS)
    assert all(low <= high for low, high in intervals.values())


def test_a_metric_registered_once_gets_its_value_and_interval(monkeypatch):
    # Over-confidence (mean confidence - accuracy) from the equal-width bin sums, registered and nothing else.
    monkeypatch.setitem(
        cal.METRICS, "overconfidence", lambda stats: (stats.width_bins[1] - stats.width_bins[2]).sum(axis=-1) / stats.n
    )
    scores = cal.score(PROBS, LABELS, n_bins=4, n_resamples=200, seed=0)
    # Confidences 1, .5, .45, .8, .6 (mean .67), accuracy .6.
    assert scores.values["overconfidence"] == pytest.approx(0.07)
    low, high = scores.intervals["overconfidence"]
    assert low < 0.07 < high
    assert cal.bootstrap_ci(PROBS, LABELS, ("overconfidence",), n_resamples=200, seed=0)["overconfidence"] == (
        low,
        high,
    )


@pytest.mark.parametrize(("n", "k", "temperature"), [(400, 3, 0.5), (1500, 10, 1.0), (800, 2, 3.0)])
def test_vectorised_smooth_ece_and_sweep_equal_a_loop_over_resamples(n, k, temperature):
    """The batched bisection (one sigma per resample and step) and the batched sweep (one stopping bin count per
    resample) against `smooth_ece` and `ece_sweep` of each explicit resample; the first row is the sample itself."""
    rng = np.random.default_rng(n)
    logits = rng.normal(size=(n, k)) * 2
    probs = special.softmax(logits, axis=1)
    true = special.softmax(logits / temperature, axis=1)
    labels = np.minimum((true.cumsum(axis=1) < rng.uniform(size=(n, 1))).sum(axis=1), k - 1)
    counts = np.vstack([np.ones(n), resample_counts(n, 40, rng)])
    got = resampled_metrics(probs, labels, counts, ("ece_sweep", "smooth_ece"))
    for row, c in enumerate(counts):
        index = np.repeat(np.arange(n), c.astype(int))
        assert got["smooth_ece"][row] == pytest.approx(cal.smooth_ece(probs[index], labels[index]), rel=1e-12)
        assert got["ece_sweep"][row] == pytest.approx(cal.ece_sweep(probs[index], labels[index]), rel=1e-12)
    # The resamples really differ, and differ from the sample: a constant would pass the loop too.
    assert np.unique(got["smooth_ece"]).size > 30 and np.unique(got["ece_sweep"]).size > 30


def test_bootstrap_ci_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(5), size=500)
    labels = rng.integers(0, 5, 500)
    intervals = cal.bootstrap_ci(probs, labels, cal.BOOTSTRAP_METRICS, n_resamples=300, seed=1)
    assert intervals == cal.bootstrap_ci(probs, labels, cal.BOOTSTRAP_METRICS, n_resamples=300, seed=1)
    assert intervals != cal.bootstrap_ci(probs, labels, cal.BOOTSTRAP_METRICS, n_resamples=300, seed=2)
    point = {**cal.calibration_metrics(probs, labels), "debiased_ece": cal.debiased_ece(probs, labels)}
    for name, (low, high) in intervals.items():
        assert low < high, name
        if name in ("accuracy", "nll", "brier"):  # means; the binned metrics are biased and may sit outside
            assert low <= point[name] <= high, name


def test_bootstrap_ci_of_a_constant_is_that_constant():
    # Every prediction right with confidence .9: each resample has accuracy 1 and NLL -log .9.
    probs = np.tile([0.9, 0.1], (50, 1))
    intervals = cal.bootstrap_ci(probs, np.zeros(50, int), ("accuracy", "nll", "ece"), n_resamples=50, seed=0)
    assert intervals["accuracy"] == (1.0, 1.0)
    assert intervals["nll"] == pytest.approx((-np.log(0.9), -np.log(0.9)))
    assert intervals["ece"] == pytest.approx((0.1, 0.1))


def test_interval_coverage_in_simulation():
    """Four fixed distributions, each sample one of them at random and its label drawn from it: the population
    accuracy is the mean of max_j P_j, the population Brier score the mean of 1 - sum_j P_j²."""
    vectors = np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25], [0.1, 0.85, 0.05], [0.3, 0.3, 0.4]])
    true_accuracy = vectors.max(axis=1).mean()
    true_brier = (1 - (vectors**2).sum(axis=1)).mean()
    rng = np.random.default_rng(2024)
    n, datasets = 300, 200
    which = rng.integers(0, 4, size=(datasets, n))
    probs = vectors[which]
    labels = (probs.cumsum(axis=2) < rng.uniform(size=(datasets, n, 1))).sum(axis=2)
    covered = np.zeros((datasets, 2), bool)
    for d in range(datasets):
        ci = cal.bootstrap_ci(probs[d], labels[d], ("accuracy", "brier"), n_resamples=400, seed=d)
        covered[d] = [
            ci["accuracy"][0] <= true_accuracy <= ci["accuracy"][1],
            ci["brier"][0] <= true_brier <= ci["brier"][1],
        ]
    coverage = covered.mean(axis=0)
    assert np.all((coverage >= 0.90) & (coverage <= 0.99)), coverage


def test_paired_bootstrap_by_hand():
    # Model b fixes row b (label 2) and row d (label 2) of model a: accuracy .6 -> 1.
    better = PROBS.copy()
    better[1] = [0.25, 0.25, 0.5]
    better[3] = [0.1, 0.1, 0.8]
    paired = cal.paired_bootstrap(PROBS, better, LABELS, ("accuracy", "brier"), n_resamples=200, seed=0, n_bins=4)
    assert paired["accuracy"].difference == pytest.approx(0.4)
    # Squared errors of b, rows b and d: .375 and .06 instead of .875 and 1.46.
    assert paired["brier"].difference == pytest.approx((0.375 + 0.06 - 0.875 - 1.46) / 5)
    assert 0 <= paired["accuracy"].low <= 0.4 <= paired["accuracy"].high <= 1
    # A resample without rows b and d (probability .6^5) has no difference: the upper end may be 0.
    assert paired["brier"].low < paired["brier"].high <= 0
    same = cal.paired_bootstrap(PROBS, PROBS, LABELS, cal.BOOTSTRAP_METRICS, n_resamples=50, seed=0)
    assert all(d == (0.0, 0.0, 0.0) for d in same.values())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"metrics": ("ece", "ece_ts")}, "no bootstrap for metric"),
        ({"n_resamples": 0}, "n_resamples must be an integer >= 1"),
        ({"level": 1.5}, r"level must lie in \(0, 1\)"),
    ],
)
def test_bootstrap_ci_checks_its_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cal.bootstrap_ci(PROBS, LABELS, **kwargs)


def test_paired_bootstrap_needs_the_same_test_set():
    with pytest.raises(ValueError, match="same test set"):
        cal.paired_bootstrap(PROBS, PROBS[:4], LABELS)
