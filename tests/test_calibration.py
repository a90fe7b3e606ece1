"""Tests of xent_lab.calibration: hand-computed metric values, statistical properties, temperature
scaling, input validation, the reliability diagram, saved predictions, and the per-epoch Keras callback
(xent_lab.training.callbacks) that writes these metrics into the epoch logs."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special
from sklearn.calibration import calibration_curve

from xent_lab import calibration as cal
from xent_lab.training.callbacks import CalibrationCallback

# A 3-class example worked by hand with n_bins=4 (edges 0, .25, .5, .75, 1 are exact in binary).
#   row  probs               label  conf  pred  correct  bin
#   a    [1.0, 0.0, 0.0]     0      1.00  0     1        3  (1.0 falls in the last bin)
#   b    [0.25, 0.5, 0.25]   2      0.50  1     0        1  (0.5 sits on an edge: (0.25, 0.5])
#   c    [0.3, 0.45, 0.25]   1      0.45  1     1        1
#   d    [0.8, 0.1, 0.1]     2      0.80  0     0        3
#   e    [0.6, 0.3, 0.1]     0      0.60  0     1        2
# Bin 0 is empty. Bin 1: conf .475, acc .5; bin 2: conf .6, acc 1; bin 3: conf .9, acc .5.
PROBS = np.array([[1.0, 0.0, 0.0], [0.25, 0.5, 0.25], [0.3, 0.45, 0.25], [0.8, 0.1, 0.1], [0.6, 0.3, 0.1]])
LABELS = np.array([0, 2, 1, 2, 0])


def test_reliability_bins_by_hand():
    bins = cal.reliability_bins(PROBS, LABELS, n_bins=4)
    np.testing.assert_array_equal(bins.edges, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_array_equal(bins.counts, [0, 2, 1, 2])
    np.testing.assert_allclose(bins.confidence, [np.nan, 0.475, 0.6, 0.9])
    np.testing.assert_allclose(bins.accuracy, [np.nan, 0.5, 1.0, 0.5])


def test_top_label_metrics_by_hand():
    # ECE = (2 * .025 + 1 * .4 + 2 * .4) / 5; MCE = max(.025, .4, .4).
    assert cal.ece(PROBS, LABELS, n_bins=4) == pytest.approx(0.25)
    assert cal.mce(PROBS, LABELS, n_bins=4) == pytest.approx(0.4)
    assert cal.accuracy(PROBS, LABELS) == pytest.approx(0.6)
    # Squared errors per row: 0, .875, .455, 1.46, .26.
    assert cal.brier_score(PROBS, LABELS) == pytest.approx(3.05 / 5)
    assert cal.nll(PROBS, LABELS) == pytest.approx(-np.log([1.0, 0.25, 0.45, 0.1, 0.6]).mean())


def test_adaptive_ece_by_hand():
    # Ascending confidences .45(1) .5(0) .6(1) .8(0) 1.0(1) (correctness in brackets); rank r -> bin r*M//n.
    # M=3: bins {.45, .5}, {.6, .8}, {1.0} -> (|1 - .95| + |1 - 1.4| + |1 - 1|) / 5.
    assert cal.adaptive_ece(PROBS, LABELS, n_bins=3) == pytest.approx(0.45 / 5)
    # M=2: sizes 3 and 2 -> (|2 - 1.55| + |1 - 1.8|) / 5.
    assert cal.adaptive_ece(PROBS, LABELS, n_bins=2) == pytest.approx(1.25 / 5)
    # M > n: one sample per bin, the rest empty -> mean |correct - conf|.
    assert cal.adaptive_ece(PROBS, LABELS, n_bins=15) == pytest.approx((0 + 0.5 + 0.55 + 0.8 + 0.4) / 5)


def test_adaptive_ece_keeps_ties_together():
    # Confidences .6 .6 .6 .9 (correct 1 1 0 0), M=2: rank-based bins would be {.6, .6} and {.6, .9},
    # but ties share the bin of their first rank -> {.6, .6, .6}, {.9}: (|2 - 1.8| + |0 - .9|) / 4.
    p = np.array([0.6, 0.4, 0.6, 0.9])  # binary positive-class probabilities
    y = np.array([1, 0, 0, 0])
    assert cal.adaptive_ece(p, y, n_bins=2) == pytest.approx(1.1 / 4)
    # Hence the value does not depend on the order of the samples (with ties split by input order,
    # as a plain rank rule would, this data gives 0.104 and, shuffled, 0.118).
    rng = np.random.default_rng(0)
    probs = np.round(rng.dirichlet(np.ones(3), size=300), 1)  # few distinct confidences: many ties
    probs /= probs.sum(axis=1, keepdims=True)
    labels = np.minimum((probs.cumsum(axis=1) < rng.random((300, 1))).sum(axis=1), 2)
    shuffled = rng.permutation(300)
    assert cal.adaptive_ece(probs[shuffled], labels[shuffled]) == pytest.approx(cal.adaptive_ece(probs, labels))


def test_binary_input_and_exact_zero_and_one_by_hand():
    # Positive-class p read as [1 - p, p]; n_bins=4.
    p = np.array([0.0, 0.25, 0.5, 1.0])
    y = np.array([0, 1, 1, 1])
    # Top label: conf [1, .75, .5, 1]; p=.5 is a tie, resolved to class 0; correct [1, 0, 0, 1].
    bins = cal.reliability_bins(p, y, n_bins=4)
    np.testing.assert_array_equal(bins.counts, [0, 1, 1, 2])
    np.testing.assert_allclose(bins.accuracy, [np.nan, 0, 0, 1])
    assert bins.ece == pytest.approx((0.5 + 0.75) / 4)
    # Class 1 scores [0, .25, .5, 1]: 0 and .25 in bin 0 -> (|1 - .25| + |1 - .5| + 0) / 4.
    # Class 0 scores [1, .75, .5, 0]: 0 in bin 0, .75 in bin 2 -> (0 + .75 + .5 + 0) / 4.
    assert cal.classwise_ece(p, y, n_bins=4) == pytest.approx(0.3125)
    # (n, 1) is the same binary input as (n,).
    assert cal.calibration_metrics(p[:, None], y, 4) == cal.calibration_metrics(p, y, 4)
    # Flipped labels: true-class probabilities 0, .75, .5, 0, the zeros clipped to NLL_EPS.
    assert cal.nll(p, 1 - y) == pytest.approx(-np.mean(np.log([cal.NLL_EPS, 0.75, 0.5, cal.NLL_EPS])))


def test_known_overconfidence():
    # Confidence 0.9 everywhere, accuracy 0.6: every ECE variant is |0.6 - 0.9|.
    probs = np.tile([0.9, 0.1], (10, 1))
    labels = np.array([0] * 6 + [1] * 4)
    metrics = cal.calibration_metrics(probs, labels)
    for key in ("ece", "mce", "adaece", "classwise_ece"):
        assert metrics[key] == pytest.approx(0.3), key
    assert metrics["accuracy"] == pytest.approx(0.6)
    assert metrics["brier"] == pytest.approx(0.6 * 0.02 + 0.4 * 1.62)
    assert metrics["nll"] == pytest.approx(-(0.6 * np.log(0.9) + 0.4 * np.log(0.1)))


def test_calibrated_by_construction_has_near_zero_ece():
    rng = np.random.default_rng(0)
    probs = special.softmax(rng.normal(0, 2, (200_000, 10)), axis=1)
    # Labels drawn from the predicted distribution (inverse CDF per row).
    labels = np.minimum((probs.cumsum(axis=1) < rng.random((len(probs), 1))).sum(axis=1), 9)
    metrics = cal.calibration_metrics(probs, labels)
    # Finite-sample bias of ECE is about sqrt(M / n) / 2 ~ 0.004 here; 0.01 leaves a safe margin.
    for key in ("ece", "adaece", "classwise_ece"):
        assert metrics[key] < 0.01, (key, metrics[key])


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 300),
    k=st.integers(2, 12),
    n_bins=st.integers(1, 30),
)
def test_metric_ranges_on_random_data(seed, n, k, n_bins):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(k, 0.5), size=n)
    labels = rng.integers(0, k, n)
    metrics = cal.calibration_metrics(probs, labels, n_bins)
    assert metrics["mce"] >= metrics["ece"] - 1e-12
    for key in ("ece", "mce", "adaece", "classwise_ece", "accuracy"):
        assert 0 <= metrics[key] <= 1, key
    assert 0 <= metrics["brier"] <= 2
    assert metrics["nll"] >= 0
    assert cal.reliability_bins(probs, labels, n_bins).counts.sum() == n


@pytest.mark.parametrize("n_bins", [1, 3, 4, 10, 15, 1000, 65537])
def test_arithmetic_bins_equal_a_search_of_the_float_edges(n_bins):
    # The metrics bin by trunc(s M (1 - 2^-30)) and search the edges only near them: at, just above and just below
    # every edge of np.linspace(0, 1, M + 1), within 2^-28 of each (around the band searched), and at 0 and 1, the
    # bins are those of a search of the edges themselves.
    from xent_lab.calibration.binning import uniform_bin_ids

    rng = np.random.default_rng(0)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    near = edges * (1 + rng.uniform(-(2.0**-28), 2.0**-28, (4, n_bins + 1)))
    scores = np.concatenate([edges, np.nextafter(edges, 2), np.nextafter(edges, -1), np.arange(n_bins + 1) / n_bins])
    scores = np.clip(np.concatenate([scores, near.ravel(), rng.random(1000)]), 0, 1)
    expected = np.searchsorted(edges[1:-1], scores, side="left")
    np.testing.assert_array_equal(uniform_bin_ids(scores, n_bins), expected)
    assert uniform_bin_ids(np.array([0.0, 1.0]), n_bins).tolist() == [0, n_bins - 1]


@pytest.mark.parametrize("n_bins", [1, 4, 15, 1000])
def test_bins_of_the_pass_over_p_equal_a_search_of_the_float_edges(n_bins):
    # The pass over P bins every P_ij and reads the bins of c_i and P_{i,y_i} from those: rows whose maximum is an
    # edge, just above or below one, 1 or just below 1, and whose other entries sit at, above or below edges too,
    # are binned as a search of the edges themselves bins them.
    from xent_lab.calibration.statistics import Statistics

    edges = np.linspace(0.0, 1.0, n_bins + 1)
    top = np.concatenate([edges, np.nextafter(edges, 2), np.nextafter(edges, -1)])
    top = np.clip(top, 0.5, 1)  # the row's maximum: at least half of the row
    rest = 1 - top
    probs = np.stack([top, rest / 2, rest / 2, np.zeros_like(top)], axis=1)
    probs = np.concatenate([probs, probs[:, ::-1], np.roll(probs, 1, axis=1)])
    labels = np.random.default_rng(0).integers(0, 4, len(probs))
    stats = Statistics(probs, labels, n_bins, classes=True)
    bins = np.searchsorted(edges[1:-1], probs, side="left")
    confidence = probs.max(axis=1)
    expected_width = np.bincount(np.searchsorted(edges[1:-1], confidence, side="left"), minlength=n_bins)
    np.testing.assert_array_equal(stats.width_bins[0, 0], expected_width)
    hits = np.zeros((4, n_bins))
    np.add.at(hits, (labels, bins[np.arange(len(labels)), labels]), 1)
    np.testing.assert_array_equal(stats.class_bins[1, 0], hits)
    scores = np.zeros((4, n_bins))
    np.add.at(scores, (np.tile(np.arange(4), len(probs)), bins.ravel()), probs.ravel())
    np.testing.assert_allclose(stats.class_bins[0, 0], scores, rtol=1e-14, atol=0)


def _reference_statistics(probs, labels, n_bins):
    """The test set's statistics spelled out: NumPy's max and argmax, a search of the float edges, a sort."""
    n, k = probs.shape
    inner = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    confidence, hit, true_class = probs.max(axis=1), probs.argmax(axis=1) == labels, probs[np.arange(n), labels]
    bins = np.searchsorted(inner, confidence, side="left")
    width = [np.bincount(bins, minlength=n_bins), np.bincount(bins, confidence, minlength=n_bins)]
    width.append(np.bincount(bins[hit], minlength=n_bins))
    ordered = np.sort(confidence)
    mass = np.searchsorted(ordered, confidence, side="left") * n_bins // n  # first-tie rank r: bin r M // n
    mass_sums = [np.bincount(mass, minlength=n_bins), np.bincount(mass, confidence, minlength=n_bins)]
    mass_sums.append(np.bincount(mass[hit], minlength=n_bins))
    groups = np.arange(k) * n_bins + np.searchsorted(inner, probs, side="left")  # class j M + bin of P_ij
    scores = np.bincount(groups.ravel(), probs.ravel(), minlength=k * n_bins).reshape(k, n_bins)
    hits = np.bincount(groups[np.arange(n), labels], minlength=k * n_bins).reshape(k, n_bins)
    nll = -np.log(np.maximum(true_class, cal.NLL_EPS)).sum()
    brier = ((probs - np.eye(k)[labels]) ** 2).sum()
    return {
        "confidence": confidence,
        "hit": hit,
        "true_class": true_class,
        "width_bins": np.stack(width)[:, None],
        "mass_bins": np.stack(mass_sums)[:, None],
        "class_bins": np.stack([scores, hits])[:, None],
        "sample_sums": np.array([[hit.sum()], [nll], [brier]]),
    }


def _random_probabilities(kind, n, k, rng):
    if kind == "softmax":
        return special.softmax(rng.normal(0, 3, (n, k)), axis=1)
    if kind == "saturated":  # exact zeros and ones, ties at the top
        return special.softmax(rng.normal(0, 400, (n, k)), axis=1)
    if kind == "float32":
        return special.softmax(rng.normal(size=(n, k)).astype("float32"), axis=1).astype(np.float64)
    probs = np.round(rng.dirichlet(np.full(k, 0.5), n), 1)  # ties, exact and near bin edges, tied maxima
    probs[probs.sum(axis=1) == 0, 0] = 1
    return probs / probs.sum(axis=1, keepdims=True)


@pytest.mark.parametrize(
    ("kind", "n", "k", "n_bins"),
    [
        ("softmax", 1, 2, 15),
        ("softmax", 9, 3, 4),
        ("softmax", 3000, 10, 15),
        ("saturated", 3000, 10, 15),
        ("float32", 3000, 10, 15),
        ("rounded", 3000, 5, 10),
        ("rounded", 2000, 2, 1),
        ("softmax", 20_000, 7, 15),  # several blocks of the pass over P
        ("rounded", 20_000, 4, 100),
    ],
)
def test_statistics_equal_a_reference_computation(kind, n, k, n_bins):
    # The engine's statistics of the test set against `_reference_statistics`. Exact where the arithmetic is the
    # same: the per-sample values, the bins (integers), the counts, the width bins' confidence sums (both add in
    # sample order) and the NLL (the same logs summed the same way). The engine sums the class scores block by
    # block, the equal-mass confidence sums in ascending order and the Brier score as sum P^2 - 2 sum P_{i,y_i} + n:
    # other orders and forms of sums of at most n k terms, so they agree to a few units of rounding of the sum
    # (a relative 1e-12 is ~100 units and far below any difference in the binning, which changes sums by whole
    # terms of up to 1).
    from xent_lab.calibration.statistics import Statistics

    rng = np.random.default_rng(n + k + n_bins)
    probs = _random_probabilities(kind, n, k, rng)
    labels = rng.integers(0, k, n)
    stats = Statistics(probs, labels, n_bins, classes=True)
    assert stats.valid
    expected = _reference_statistics(probs, labels, n_bins)
    for name in ("confidence", "hit", "true_class", "width_bins"):
        np.testing.assert_array_equal(getattr(stats, name), expected[name], err_msg=name)
    np.testing.assert_array_equal(stats.class_bins[1], expected["class_bins"][1])
    np.testing.assert_array_equal(stats.mass_bins[[0, 2]], expected["mass_bins"][[0, 2]])
    np.testing.assert_array_equal(stats.sample_sums[:2], expected["sample_sums"][:2])
    np.testing.assert_allclose(stats.class_bins[0], expected["class_bins"][0], rtol=1e-12, atol=0)
    np.testing.assert_allclose(stats.mass_bins[1], expected["mass_bins"][1], rtol=1e-12, atol=0)
    np.testing.assert_allclose(stats.sample_sums[2], expected["sample_sums"][2], rtol=1e-12, atol=0)
    if n * k <= 2**16:  # one block: the class scores are added in the reference's order
        np.testing.assert_array_equal(stats.class_bins[0], expected["class_bins"][0])


def test_metrics_of_a_large_test_set_equal_those_of_its_parts():
    # More rows than one block of the pass over P: the sums over blocks are the sums over the whole set.
    rng = np.random.default_rng(4)
    probs = special.softmax(rng.normal(0, 3, (20_000, 7)), axis=1)
    labels = rng.integers(0, 7, 20_000)
    whole = cal.calibration_metrics(probs, labels)
    half = [cal.calibration_metrics(probs[part], labels[part]) for part in (slice(0, 10_000), slice(10_000, None))]
    for key in ("brier", "nll", "accuracy"):
        assert whole[key] == pytest.approx((half[0][key] + half[1][key]) / 2, rel=1e-12), key
    # Classwise ECE spelled out: per class, the equal-width bins of its scores by a search of the edges.
    edges = np.linspace(0.0, 1.0, 16)
    per_class = []
    for j in range(7):
        bins = np.searchsorted(edges[1:-1], probs[:, j], side="left")
        gaps = [abs(np.sum(labels[bins == m] == j) - probs[bins == m, j].sum()) for m in range(15)]
        per_class.append(sum(gaps) / 20_000)
    assert whole["classwise_ece"] == pytest.approx(np.mean(per_class), rel=1e-12)


def test_single_bin_ece_variants_equal_mean_gap():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(4), size=500)
    labels = rng.integers(0, 4, 500)
    gap = abs(cal.accuracy(probs, labels) - probs.max(axis=1).mean())
    assert cal.ece(probs, labels, n_bins=1) == pytest.approx(gap)
    assert cal.adaptive_ece(probs, labels, n_bins=1) == pytest.approx(gap)


def test_bins_agree_with_sklearn_calibration_curve():
    # With p in (0.5, 1) the top label is class 1 with confidence p, so the top-label bins are
    # sklearn's positive-class bins. Continuous p avoids exact edges (sklearn 1.9 also uses
    # right-closed bins, but older versions did not).
    rng = np.random.default_rng(2)
    p = rng.uniform(0.5, 1.0, 5000)
    y = (rng.random(5000) < p**2).astype(int)
    bins = cal.reliability_bins(p, y, n_bins=15)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=15, strategy="uniform")
    filled = bins.counts > 0
    assert filled.sum() == len(prob_true) == 8  # bins 8..14 cover (0.5, 1]; 0.5 = 7.5/15 splits bin 7
    np.testing.assert_allclose(bins.accuracy[filled], prob_true)
    np.testing.assert_allclose(bins.confidence[filled], prob_pred)


def test_probabilities_are_stable():
    softmax = cal.probabilities(np.array([[1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0]]), "softmax")
    np.testing.assert_allclose(softmax, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]])
    z = np.array([-800.0, -2.0, 0.0, 3.0, 800.0])
    sigmoid = cal.probabilities(z[:, None], "sigmoid")
    np.testing.assert_allclose(sigmoid[:, 1], special.expit(z))
    np.testing.assert_allclose(sigmoid.sum(axis=1), 1)
    ovr = cal.probabilities(np.array([[-1.0, 0.0, 2.0], [-900.0, -900.0, -901.0]]), "sigmoid_ovr")
    s = special.expit([-1.0, 0.0, 2.0])
    np.testing.assert_allclose(ovr[0], s / s.sum())
    # All sigmoids underflow to 0 in float64, yet the normalised values are finite: e^1 : e^1 : 1.
    np.testing.assert_allclose(ovr[1], np.array([np.e, np.e, 1]) / (2 * np.e + 1))


def _softmax_data(rng, n, k, temperature):
    logits = rng.normal(0, 3, (n, k))
    probs = special.softmax(logits / temperature, axis=1)
    labels = np.minimum((probs.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1), k - 1)
    return logits, labels


@pytest.mark.parametrize("t0", [2.0, 0.5])
def test_temperature_recovered_softmax(t0):
    rng = np.random.default_rng(3)
    logits, labels = _softmax_data(rng, 100_000, 10, t0)
    assert cal.fit_temperature(logits, labels, "softmax") == pytest.approx(t0, abs=0.05)


def test_temperature_recovered_sigmoid():
    rng = np.random.default_rng(4)
    logits = rng.normal(0, 3, 100_000)
    labels = (rng.random(100_000) < special.expit(logits / 2.0)).astype(int)
    assert cal.fit_temperature(logits[:, None], labels, "sigmoid") == pytest.approx(2.0, abs=0.05)


def test_temperature_recovered_sigmoid_ovr():
    rng = np.random.default_rng(5)
    logits = rng.normal(-2, 3, (100_000, 5))
    probs = cal.probabilities(logits / 0.5, "sigmoid_ovr")
    labels = np.minimum((probs.cumsum(axis=1) < rng.random((len(probs), 1))).sum(axis=1), 4)
    assert cal.fit_temperature(logits, labels, "sigmoid_ovr") == pytest.approx(0.5, abs=0.05)


def test_temperature_summary_reads_the_one_temperature_fit():
    rng = np.random.default_rng(6)
    val_logits, val_labels = _softmax_data(rng, 20_000, 10, 2.0)
    test_logits, test_labels = _softmax_data(rng, 20_000, 10, 2.0)
    unscaled = cal.score(cal.probabilities(test_logits, "softmax"), test_labels)
    fitted = cal.recalibrate(val_logits, val_labels, test_logits, test_labels, "softmax", ["temperature"])
    summary = cal.temperature_summary(unscaled, fitted["temperature"])
    assert set(summary) == {"nll_ts", "ece_ts", "brier_ts", "accuracy_ts", "temperature"}
    assert summary["temperature"] == fitted["temperature"].params["temperature"] == pytest.approx(2.0, abs=0.1)
    assert summary["accuracy_ts"] == unscaled.values["accuracy"]
    scaled = cal.probabilities(test_logits / summary["temperature"], "softmax")
    assert summary["ece_ts"] == pytest.approx(cal.ece(scaled, test_labels))
    assert summary["nll_ts"] == pytest.approx(cal.nll(scaled, test_labels))
    # The raw logits are over-confident by a factor 2: scaling must help every proper score and ECE.
    assert summary["nll_ts"] < unscaled.values["nll"]
    assert summary["brier_ts"] < unscaled.values["brier"]
    assert summary["ece_ts"] < unscaled.values["ece"] / 3


@pytest.mark.parametrize(
    ("probs", "labels", "n_bins", "match"),
    [
        ([[0.5, 0.4], [0.5, 0.5]], [0, 1], 15, r"sum to 1 \(tolerance 0.001\); row 0 sums to 0.9"),
        ([[1.2, -0.2]], [0], 15, r"must lie in \[0, 1\], found values in \[-0.2, 1.2\]"),
        ([0.2, 1.5], [0, 1], 15, r"must lie in \[0, 1\]"),
        ([[np.nan, 1.0]], [0], 15, r"NaN or inf: nan at index \(0, 0\)"),
        ([0.2, np.inf], [0, 1], 15, r"NaN or inf: inf at index \(1,\)"),
        ([[0.5, 0.5]] * 3, [0, 1], 15, r"labels must have shape \(3,\).*got shape \(2,\)"),
        ([[0.5, 0.5]] * 2, [[0], [1]], 15, r"labels must have shape \(2,\)"),
        ([[0.5, 0.5]] * 2, [0, 2], 15, r"label 2 at index 1 is out of range: labels must lie in \[0, 1\]"),
        ([[0.5, 0.5]] * 2, [-1, 0], 15, r"label -1 at index 0 is out of range"),
        ([[0.5, 0.5]] * 2, [0.0, 0.5], 15, r"labels must be integers, got 0.5 at index 1"),
        ([[0.5, 0.5]] * 2, ["a", "b"], 15, r"labels must be integers, got dtype <U1"),
        ([[0.5, 0.5]], [0], 0, r"n_bins must be an integer >= 1, got 0"),
        ([[0.5, 0.5]], [0], 2.5, r"n_bins must be an integer >= 1, got 2.5"),
        (np.zeros((0, 3)), np.zeros(0, int), 15, r"probs is empty \(shape \(0, 3\)\)"),
        (np.full((2, 2, 2), 0.5), [0, 1], 15, r"shape \(n, k\) or \(n,\).*got shape \(2, 2, 2\)"),
    ],
)
def test_bad_input_raises(probs, labels, n_bins, match):
    with pytest.raises(ValueError, match=match):
        cal.calibration_metrics(np.asarray(probs, dtype=float), np.asarray(labels), n_bins)


def test_integral_float_labels_are_accepted():
    assert cal.accuracy(PROBS, LABELS.astype(float)) == cal.accuracy(PROBS, LABELS)


@pytest.mark.parametrize(
    ("logits", "head", "match"),
    [
        (np.zeros((2, 3)), "softplus", r"unknown head 'softplus'; expected one of softmax, sigmoid, sigmoid_ovr"),
        (np.zeros((2, 3)), "sigmoid", r'"sigmoid" takes one logit per sample.*got \(2, 3\)'),
        (np.zeros(4), "softmax", r"'softmax' takes logits of shape \(n, k\) with k >= 2, got \(4,\)"),
        (np.zeros((4, 1)), "sigmoid_ovr", r"k >= 2, got \(4, 1\)"),
        (np.array([[0.0, np.nan]]), "softmax", r"logits contains NaN or inf"),
        (np.zeros((0, 2)), "softmax", r"logits is empty"),
    ],
)
def test_bad_logits_raise(logits, head, match):
    with pytest.raises(ValueError, match=match):
        cal.probabilities(logits, head)
    with pytest.raises(ValueError, match=match):
        cal.fit_temperature(logits, np.zeros(len(logits), int), head)


def test_fit_temperature_checks_labels_against_head():
    with pytest.raises(ValueError, match=r"label 2 at index 0 is out of range: labels must lie in \[0, 1\]"):
        cal.fit_temperature(np.zeros(3), [2, 0, 1], "sigmoid")


def test_reliability_diagram(tmp_path):
    rng = np.random.default_rng(7)
    probs = rng.dirichlet(np.ones(3) * 0.3, size=400)
    labels = rng.integers(0, 3, 400)
    bins = cal.reliability_bins(probs, labels, n_bins=10)
    figure = cal.reliability_diagram(probs, labels, n_bins=10, title="demo")
    axes, histogram = figure.axes
    accuracy_bars, gap_bars, band = axes.containers
    filled = bins.counts > 0
    assert len(accuracy_bars) == len(gap_bars) == int(filled.sum())
    np.testing.assert_allclose([bar.get_height() for bar in accuracy_bars], bins.accuracy[filled])
    # The count of each bar is written above it.
    assert [text.get_text() for text in axes.texts] == [str(c) for c in bins.counts[filled]]
    # The band's error bars span the seeded bootstrap interval of each bin's accuracy.
    low, high = cal.bin_accuracy_band(probs, labels, 10, 1000, seed=0)
    (segments,) = band.lines[2]
    np.testing.assert_allclose([seg[:, 1] for seg in segments.get_segments()], np.column_stack([low, high])[filled])
    # The smooth curve is the one smooth ECE integrates.
    t, smooth_accuracy, _, sigma = cal.smooth_reliability(probs, labels)
    (curve,) = [line for line in axes.lines if line.get_label().startswith("Smooth")]
    np.testing.assert_array_equal(curve.get_ydata(), smooth_accuracy)
    assert f"{sigma:.3f}" in curve.get_label()
    (count_bars,) = histogram.containers
    assert [bar.get_height() for bar in count_bars] == bins.counts.tolist()
    assert axes.get_title().startswith("demo")
    assert f"ECE = {bins.ece:.4f}" in axes.get_title()
    path = tmp_path / "reliability.png"
    figure.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bin_accuracy_band_by_hand_and_contains_the_accuracy():
    # n_bins=4 on the 5-row example: bin 2 holds one sample (e, right), bin 3 two (a right, d wrong), bin 1
    # two (b wrong, c right). A one-sample bin resamples to itself: [1, 1]. A two-sample bin's resampled
    # accuracy is 0, .5 or 1 and, over 1000 resamples of 5, each extreme comes up far more than 2.5% of the time.
    low, high = cal.bin_accuracy_band(PROBS, LABELS, n_bins=4, n_resamples=1000, seed=0)
    assert np.isnan(low[0]) and np.isnan(high[0])
    np.testing.assert_array_equal(low[1:], [0, 1, 0])
    np.testing.assert_array_equal(high[1:], [1, 1, 1])
    rng = np.random.default_rng(8)
    probs = rng.dirichlet(np.ones(4) * 0.5, size=3000)
    labels = rng.integers(0, 4, 3000)
    bins = cal.reliability_bins(probs, labels, 15)
    low, high = cal.bin_accuracy_band(probs, labels, 15, 500, seed=3)
    filled = bins.counts > 0
    assert np.all(low[filled] <= bins.accuracy[filled]) and np.all(bins.accuracy[filled] <= high[filled])
    # Narrower where a bin holds more samples: the widest band is that of a small bin.
    width = (high - low)[filled]
    assert bins.counts[filled][np.argmax(width)] < np.median(bins.counts[filled])
    again, other = (np.vstack(cal.bin_accuracy_band(probs, labels, 15, 500, seed=s)) for s in (3, 4))
    np.testing.assert_array_equal(again, np.vstack([low, high]))  # seeded
    assert not np.array_equal(other, again, equal_nan=True)


def test_save_load_predictions_round_trip(tmp_path):
    rng = np.random.default_rng(8)
    logits = rng.normal(size=(50, 4))
    labels = rng.integers(0, 4, 50)
    path = cal.save_predictions(tmp_path / "preds", logits, labels, "sigmoid_ovr")
    assert path == tmp_path / "preds.npz" and path.exists()
    loaded = cal.load_predictions(path)
    assert loaded.head == "sigmoid_ovr"
    assert loaded.logits.dtype == np.float32 and loaded.labels.dtype == np.int32
    np.testing.assert_array_equal(loaded.logits, logits.astype(np.float32))
    np.testing.assert_array_equal(loaded.labels, labels)
    # Metrics recomputed from disk match those of the float32 logits.
    recomputed = cal.calibration_metrics(cal.probabilities(loaded.logits, loaded.head), loaded.labels)
    original = cal.calibration_metrics(cal.probabilities(logits.astype(np.float32), "sigmoid_ovr"), labels)
    assert recomputed == original


def test_save_predictions_validates():
    with pytest.raises(ValueError, match=r"label 5 at index 0 is out of range"):
        cal.save_predictions("unused.npz", np.zeros((1, 3)), [5], "softmax")


class _LogsRecorder(keras.callbacks.Callback):
    """Copies the logs each epoch end shows to the callbacks after CalibrationCallback."""

    def __init__(self):
        super().__init__()
        self.epochs: list[dict[str, float]] = []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(dict(logs))


CALIBRATION_KEYS = {"val/ece", "val/mce", "val/adaece", "val/classwise_ece", "val/brier", "val/nll"}


def test_callback_writes_metrics_into_logs():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(9)
    x, y = rng.normal(size=(96, 8)).astype("float32"), rng.integers(0, 3, 96)
    x_val, y_val = rng.normal(size=(40, 8)).astype("float32"), rng.integers(0, 3, 40)
    inputs = keras.Input((8,))
    logits = keras.layers.Dense(3, name="logits")(keras.layers.Dense(16, activation="relu")(inputs))
    logits_model = keras.Model(inputs, logits)
    model = keras.Model(inputs, keras.layers.Softmax()(logits))  # trained model ends in a softmax
    # Eager steps: the callback is under test, not the traced training step (tracing it costs most of the test).
    model.compile("adam", "sparse_categorical_crossentropy", run_eagerly=True)

    def mean_max_logit(logits, labels):
        assert len(labels) == len(logits) == 40
        return {"mean_max_logit": float(logits.max(axis=1).mean())}

    callback = CalibrationCallback(
        x_val, y_val, "softmax", logits_model=logits_model, n_bins=5, batch_size=16, extra=[mean_max_logit]
    )
    recorder = _LogsRecorder()
    history = model.fit(x, y, epochs=2, batch_size=32, callbacks=[callback, recorder], verbose=0)

    assert len(recorder.epochs) == 2
    for logs in recorder.epochs:
        assert CALIBRATION_KEYS | {"val/mean_max_logit"} <= set(logs)
        assert all(math.isfinite(logs[key]) for key in CALIBRATION_KEYS | {"val/mean_max_logit"})
    # Batched prediction (16, 16, 8 samples) equals one predict pass; metrics are those of these logits.
    np.testing.assert_allclose(callback.last_logits, logits_model.predict(x_val, verbose=0), rtol=1e-5, atol=1e-6)
    expected = cal.calibration_metrics(cal.probabilities(callback.last_logits, "softmax"), y_val, 5)
    assert recorder.epochs[-1]["val/ece"] == pytest.approx(expected["ece"])
    assert recorder.epochs[-1]["val/mean_max_logit"] == pytest.approx(callback.last_logits.max(axis=1).mean())
    # Keras' History (added after the user's callbacks) records them too.
    assert len(history.history["val/nll"]) == 2


def test_callback_defaults_to_trained_model_with_sigmoid_head():
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(10)
    x, y = rng.normal(size=(64, 4)).astype("float32"), rng.integers(0, 2, 64)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])  # one logit
    model.compile("adam", keras.losses.BinaryCrossentropy(from_logits=True), run_eagerly=True)  # as above
    callback = CalibrationCallback(x, y, "sigmoid")
    recorder = _LogsRecorder()
    model.fit(x, y.astype("float32"), epochs=1, callbacks=[callback, recorder], verbose=0)
    assert callback.last_logits.shape == (64, 1)
    expected = cal.calibration_metrics(cal.probabilities(callback.last_logits, "sigmoid"), y)
    assert recorder.epochs[0]["val/brier"] == pytest.approx(expected["brier"])


def test_callback_validates_arguments():
    x = np.zeros((4, 2), "float32")
    with pytest.raises(ValueError, match=r"unknown head 'tanh'"):
        CalibrationCallback(x, np.zeros(4, int), "tanh")
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\).*got shape \(3,\)"):
        CalibrationCallback(x, np.zeros(3, int), "softmax")
    with pytest.raises(ValueError, match=r"n_bins must be an integer >= 1, got 0"):
        CalibrationCallback(x, np.zeros(4, int), "softmax", n_bins=0)


def test_per_class_recall():
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.6, 0.4, 0.0], [0.1, 0.9, 0.0]])
    recall = cal.per_class_recall(probs, np.array([0, 1, 1, 1]))
    np.testing.assert_allclose(recall[:2], [1.0, 2 / 3])
    assert np.isnan(recall[2])  # no sample of class 2
    np.testing.assert_allclose(cal.per_class_recall(np.array([0.7, 0.2]), np.array([1, 1])), [np.nan, 0.5])
