"""Percentile bootstrap intervals of the test metrics, and the paired bootstrap of two models.

A bootstrap resample of n samples drawn with replacement is a vector of counts w (n,), sum w = n
(Efron & Tibshirani 1993, "An Introduction to the Bootstrap"). Every metric is a function of summary statistics
(`xent_lab.calibration.statistics`), and those of B resamples are count-weighted sums, W (B, n) @ F (n, features)
for the per-sample terms F: the metrics of `METRICS` evaluate them for all resamples at once, with no Python loop
over the resamples. A metric registered there has its interval here, with nothing else to write.

The 95% interval is the 2.5% and 97.5% percentiles of the B resampled values (the percentile bootstrap).
The paired bootstrap (Koehn 2004, "Statistical Significance Tests for Machine Translation Evaluation")
scores two models on the same resamples of one test set, so the interval is that of the difference.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from xent_lab.calibration.metrics import METRICS
from xent_lab.calibration.statistics import Statistics
from xent_lab.calibration.validation import check_n_bins, check_probs

BOOTSTRAP_METRICS = tuple(METRICS)  # the default: every metric has an interval
# Resamples x samples per chunk of counts (~32 MB); the equal-mass metrics hold 3 cumulative sums of that size.
_CHUNK_ELEMENTS = 2**22


class PairedDifference(NamedTuple):
    """metric(b) - metric(a) on the test set, and the percentile interval of that difference."""

    difference: float
    low: float
    high: float


def resample_counts(n: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Counts (n_resamples, n), each row the multiplicities of one resample of n samples with replacement."""
    draws = rng.integers(0, n, size=(n_resamples, n)) + n * np.arange(n_resamples)[:, None]
    return np.bincount(draws.ravel(), minlength=n_resamples * n).reshape(n_resamples, n).astype(np.float64)


def resampled_metrics(
    probs: np.ndarray, labels: np.ndarray, counts: np.ndarray, metrics: tuple[str, ...], n_bins: int = 15
) -> dict[str, np.ndarray]:
    """Each metric (a name of METRICS) on every resample given by the rows of `counts` (B, n), for
    validated inputs. A row of ones is the test set itself: the values then equal `calibration_metrics` and
    `estimator_metrics`."""
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise ValueError(f"no bootstrap for metric(s) {unknown}; expected names among {', '.join(METRICS)}")
    check_n_bins(n_bins)
    stats = Statistics(probs, labels, n_bins, counts)
    return {name: METRICS[name](stats) for name in metrics}


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
    order = np.argsort(Statistics(probs, labels, n_bins).confidence, kind="stable")
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
    n = len(labels)
    bins = np.hstack(
        [Statistics(probs, labels, n_bins, c).width_bins[[0, 2]] for c in _resampled_chunks(n, n_resamples, seed)]
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = bins[1] / bins[0]
    low, high = np.full(n_bins, np.nan), np.full(n_bins, np.nan)
    filled = Statistics(probs, labels, n_bins).width_bins[0, 0] > 0
    low[filled], high[filled] = np.nanquantile(accuracy[:, filled], [(1 - level) / 2, (1 + level) / 2], axis=0)
    return low, high


def paired_resamples(
    probs_a: np.ndarray | None,
    probs_b: np.ndarray,
    labels: np.ndarray,
    metrics: tuple[str, ...] = BOOTSTRAP_METRICS,
    n_resamples: int = 1000,
    seed: int = 0,
    n_bins: int = 15,
) -> dict[str, tuple[float, np.ndarray]]:
    """{metric: (m(b) - m(a), its value on each resample (n_resamples,))} for two models scored on the same test
    samples, both resampled with the same counts; `probs_a` None: m(b) itself. The draws depend on `seed` and the
    number of samples only, so every model scored on one test set shares them."""
    if probs_a is not None and np.shape(probs_a) != np.shape(probs_b):
        raise ValueError(
            f"the two models must score the same test set: shapes {np.shape(probs_a)} and {np.shape(probs_b)}"
        )
    probs_b, labels = check_probs(probs_b, labels)
    if probs_a is not None:
        probs_a, _ = check_probs(probs_a, labels)

    def difference(counts: np.ndarray) -> dict[str, np.ndarray]:
        b = resampled_metrics(probs_b, labels, counts, metrics, n_bins)
        if probs_a is None:
            return b
        a = resampled_metrics(probs_a, labels, counts, metrics, n_bins)
        return {name: b[name] - a[name] for name in metrics}

    observed = difference(np.ones((1, len(labels))))
    chunks = [difference(c) for c in _resampled_chunks(len(labels), n_resamples, seed)]
    return {name: (float(observed[name][0]), np.concatenate([c[name] for c in chunks])) for name in metrics}


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
    with the same counts (`paired_resamples`), and the interval is the percentile interval of the per-resample
    difference."""
    _check_level(level)
    found = paired_resamples(probs_a, probs_b, labels, metrics, n_resamples, seed, n_bins)
    return {name: PairedDifference(observed, *_interval(values, level)) for name, (observed, values) in found.items()}
