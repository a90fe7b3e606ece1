"""Percentile bootstrap intervals of the test metrics, and the paired bootstrap of two models.

A bootstrap resample of n samples drawn with replacement is a vector of counts w (n,), sum w = n
(Efron & Tibshirani 1993, "An Introduction to the Bootstrap"). Every metric here is a function of a few
count-weighted sums, so B resamples are one matrix product W (B, n) @ F (n, features), F the per-sample
terms, and no Python loop runs over the resamples:

- accuracy, NLL, Brier: (w · x) / n for the per-sample a_i, -log max(P_{i,y_i}, 1e-12), sum_j (P_ij - 1[y_i=j])^2;
- ECE, MCE, debiased ECE: per equal-width bin m, (sum w, sum w c, sum w a) over its samples (the bin of a
  sample does not change under resampling);
- classwise ECE: the same per (class j, bin of P_ij) with the scores P_ij and outcomes 1[y_i = j];
- adaptive ECE: equal-mass bins move with the resample; a sample's bin is its first-tie rank in the
  resample times M // n, and that rank is the cumulative count of the samples sorted before its tie group.

The 95% interval is the 2.5% and 97.5% percentiles of the B resampled values (the percentile bootstrap).
The paired bootstrap (Koehn 2004, "Statistical Significance Tests for Machine Translation Evaluation")
scores two models on the same resamples of one test set, so the interval is that of the difference.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import sparse

from xent_lab.calibration.binning import equal_mass_sums, expected_gap, ranked_sums, top_label, uniform_bin_ids
from xent_lab.calibration.estimators import debiased_from_bins, resampled_smooth_ece, sweep_from_sums
from xent_lab.calibration.metrics import NLL_EPS
from xent_lab.calibration.validation import check_n_bins, check_probs

BOOTSTRAP_METRICS = (
    "accuracy",
    "nll",
    "brier",
    "ece",
    "mce",
    "adaece",
    "classwise_ece",
    "debiased_ece",
    "ece_sweep",
    "smooth_ece",
)
_TOP_BINNED = ("ece", "mce", "debiased_ece")
_EQUAL_MASS = ("adaece", "ece_sweep")
# Resamples x samples per chunk of counts (~128 MB), and per block of the equal-mass cumulative sums (3 x 32 MB).
_CHUNK_ELEMENTS = 2**24
_BLOCK_ELEMENTS = 2**22


class PairedDifference(NamedTuple):
    """metric(b) - metric(a) on the test set, and the percentile interval of that difference."""

    difference: float
    low: float
    high: float


def resample_counts(n: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Counts (n_resamples, n), each row the multiplicities of one resample of n samples with replacement."""
    draws = rng.integers(0, n, size=(n_resamples, n)) + n * np.arange(n_resamples)[:, None]
    return np.bincount(draws.ravel(), minlength=n_resamples * n).reshape(n_resamples, n).astype(np.float64)


def _features(probs: np.ndarray, labels: np.ndarray, n_bins: int, metrics: set[str]) -> sparse.csr_array:
    """F (n, features), sparse: [a, nll, brier], then (1, c, a) one-hot per top-label bin, then (1, P_ij,
    1[y=j]) one-hot per (class, bin), the binned blocks only when a metric reads them. A row holds 3 + 3 + 2k + 1
    non-zeros, so W @ F costs B (7 + 2k) n multiply-adds instead of B n (3 + 3M (1 + k)) for a dense F."""
    n, k = probs.shape
    confidence, correct = top_label(probs, labels)
    true_class = probs[np.arange(n), labels]
    ones = np.ones(n)
    values = [correct, -np.log(np.maximum(true_class, NLL_EPS)), np.sum(probs**2, axis=1) - 2 * true_class + 1]
    columns = [np.zeros(n, np.intp), np.ones(n, np.intp), np.full(n, 2)]
    offset = 3
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    if metrics & set(_TOP_BINNED):
        bins = uniform_bin_ids(confidence, edges)
        values += [ones, confidence, correct]
        columns += [offset + bins, offset + n_bins + bins, offset + 2 * n_bins + bins]
        offset += 3 * n_bins
    if "classwise_ece" in metrics:
        groups = offset + np.arange(k) * n_bins + uniform_bin_ids(probs, edges)
        values += [np.ones(n * k), probs.ravel(), ones]
        columns += [groups.ravel(), groups.ravel() + k * n_bins, groups[np.arange(n), labels] + 2 * k * n_bins]
        offset += 3 * k * n_bins
    rows = np.concatenate([np.arange(n) if len(v) == n else np.repeat(np.arange(n), k) for v in values])
    return sparse.csr_array((np.concatenate(values), (rows, np.concatenate(columns))), shape=(n, offset))


def _equal_mass_metrics(
    confidence: np.ndarray, correct: np.ndarray, counts: np.ndarray, n_bins: int, metrics: set[str]
) -> dict[str, np.ndarray]:
    """Adaptive ECE and ECE-sweep of each resample from one set of ranked cumulative sums (`ranked_sums`), a
    block of resamples at a time (the sums are 3 (B, n) arrays)."""
    out: dict[str, list[np.ndarray]] = {name: [] for name in _EQUAL_MASS if name in metrics}
    if not out:
        return {}
    block = max(1, _BLOCK_ELEMENTS // counts.shape[1])
    for start in range(0, len(counts), block):
        cumulative, keys = ranked_sums(confidence, correct, counts[start : start + block])
        if "adaece" in out:
            rows = np.arange(cumulative.shape[1])
            bin_counts, conf_sum, hit_sum = equal_mass_sums(cumulative, keys, rows, n_bins)
            with np.errstate(invalid="ignore", divide="ignore"):
                out["adaece"].append(expected_gap(bin_counts, conf_sum / bin_counts, hit_sum / bin_counts))
        if "ece_sweep" in out:
            out["ece_sweep"].append(sweep_from_sums(cumulative, keys))
    return {name: np.concatenate(values) for name, values in out.items()}


def resampled_metrics(
    probs: np.ndarray, labels: np.ndarray, counts: np.ndarray, metrics: tuple[str, ...], n_bins: int = 15
) -> dict[str, np.ndarray]:
    """Each metric (a name of BOOTSTRAP_METRICS) on every resample given by the rows of `counts` (B, n).

    A row of ones is the test set itself: the values then equal `calibration_metrics` and `estimator_metrics`.
    """
    unknown = sorted(set(metrics) - set(BOOTSTRAP_METRICS))
    if unknown:
        raise ValueError(f"no bootstrap for metric(s) {unknown}; expected names among {', '.join(BOOTSTRAP_METRICS)}")
    check_n_bins(n_bins)
    k = probs.shape[1]
    wanted = set(metrics)
    sums = counts @ _features(probs, labels, n_bins, wanted)
    means = sums[:, :3] / probs.shape[0]
    out = {"accuracy": means[:, 0], "nll": means[:, 1], "brier": means[:, 2]}
    with np.errstate(invalid="ignore", divide="ignore"):
        if wanted & set(_TOP_BINNED):
            bin_counts, conf_sum, hit_sum = np.split(sums[:, 3 : 3 + 3 * n_bins], 3, axis=1)
            confidence, accuracy = conf_sum / bin_counts, hit_sum / bin_counts
            out["ece"] = expected_gap(bin_counts, confidence, accuracy)
            out["mce"] = np.where(bin_counts > 0, np.abs(accuracy - confidence), -np.inf).max(axis=1)
            out["debiased_ece"] = debiased_from_bins(bin_counts, confidence, accuracy)
        if "classwise_ece" in wanted:
            classwise = sums[:, sums.shape[1] - 3 * k * n_bins :].reshape(len(counts), 3, k, n_bins)
            bin_counts, score_sum, hit_sum = classwise[:, 0], classwise[:, 1], classwise[:, 2]
            out["classwise_ece"] = expected_gap(bin_counts, score_sum / bin_counts, hit_sum / bin_counts).mean(axis=1)
    top = top_label(probs, labels)
    out.update(_equal_mass_metrics(*top, counts, n_bins, wanted))
    if "smooth_ece" in wanted:
        out["smooth_ece"] = resampled_smooth_ece(*top, counts)
    return {name: out[name] for name in metrics}


def _resampled_chunks(n: int, n_resamples: int, seed: int):
    """Count matrices of the n_resamples resamples, a chunk at a time (the same draws for one seed and n)."""
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"n_resamples must be an integer >= 1, got {n_resamples!r}")
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, n_resamples, chunk):
        yield resample_counts(n, min(chunk, n_resamples - start), rng)


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")


def bootstrap_ci(
    probs: np.ndarray,
    labels: np.ndarray,
    metrics: tuple[str, ...] = BOOTSTRAP_METRICS,
    n_resamples: int = 1000,
    seed: int = 0,
    n_bins: int = 15,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """{metric: (low, high)}: the (1 - level)/2 and (1 + level)/2 percentiles of the metric over n_resamples
    seeded resamples of the test samples (percentile bootstrap, Efron & Tibshirani 1993)."""
    _check_level(level)
    probs, labels = check_probs(probs, labels)
    # The metrics do not depend on the sample order, nor does a resample's distribution: sorting by confidence
    # once spares the adaptive ECE a reordering of every count matrix.
    order = np.argsort(top_label(probs, labels)[0], kind="stable")
    probs, labels = probs[order], labels[order]
    chunks = [
        resampled_metrics(probs, labels, c, metrics, n_bins) for c in _resampled_chunks(len(probs), n_resamples, seed)
    ]
    return {name: _interval(np.concatenate([c[name] for c in chunks]), level) for name in metrics}


def bin_accuracy_band(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = 15, n_resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) (n_bins,): the percentile interval of the top-label accuracy of each equal-width bin over
    seeded resamples, from the per-bin (count, hits) of every resample as one product (NaN for an empty bin; a
    resample leaving a bin empty does not count for that bin)."""
    _check_level(level)
    check_n_bins(n_bins)
    probs, labels = check_probs(probs, labels)
    confidence, correct = top_label(probs, labels)
    bins = uniform_bin_ids(confidence, np.linspace(0.0, 1.0, n_bins + 1))
    n = len(bins)
    members = sparse.csr_array(
        (np.concatenate([np.ones(n), correct]), (np.tile(np.arange(n), 2), np.concatenate([bins, bins + n_bins]))),
        shape=(n, 2 * n_bins),
    )
    sums = np.vstack([c @ members for c in _resampled_chunks(n, n_resamples, seed)])
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = sums[:, n_bins:] / sums[:, :n_bins]
    low, high = np.full(n_bins, np.nan), np.full(n_bins, np.nan)
    filled = np.bincount(bins, minlength=n_bins) > 0
    low[filled], high[filled] = np.nanquantile(accuracy[:, filled], [(1 - level) / 2, (1 + level) / 2], axis=0)
    return low, high


def paired_bootstrap(
    probs_a: np.ndarray,
    probs_b: np.ndarray,
    labels: np.ndarray,
    metrics: tuple[str, ...] = BOOTSTRAP_METRICS,
    n_resamples: int = 1000,
    seed: int = 0,
    n_bins: int = 15,
    level: float = 0.95,
) -> dict[str, PairedDifference]:
    """{metric: (m(b) - m(a), low, high)} for two models scored on the same test samples: both are resampled
    with the same counts, and the interval is the percentile interval of the per-resample difference."""
    _check_level(level)
    if np.shape(probs_a) != np.shape(probs_b):
        raise ValueError(
            f"the two models must score the same test set: shapes {np.shape(probs_a)} and {np.shape(probs_b)}"
        )
    probs_a, labels = check_probs(probs_a, labels)
    probs_b, _ = check_probs(probs_b, labels)

    def difference(counts: np.ndarray) -> dict[str, np.ndarray]:
        a = resampled_metrics(probs_a, labels, counts, metrics, n_bins)
        b = resampled_metrics(probs_b, labels, counts, metrics, n_bins)
        return {name: b[name] - a[name] for name in metrics}

    observed = difference(np.ones((1, len(labels))))
    chunks = [difference(c) for c in _resampled_chunks(len(labels), n_resamples, seed)]
    return {
        name: PairedDifference(float(observed[name][0]), *_interval(np.concatenate([c[name] for c in chunks]), level))
        for name in metrics
    }
