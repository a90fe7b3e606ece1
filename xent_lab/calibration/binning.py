"""Equal-width and equal-mass confidence bins, and the gaps read from per-bin statistics.

Binning (Guo et al. 2017, "On Calibration of Modern Neural Networks"): M equal-width bins
B_m = ((m-1)/M, m/M], m = 1..M, right-closed, with a confidence of exactly 0 in the first bin
(so 1.0 falls in the last). Edges are `np.linspace(0, 1, M + 1)`, and membership is decided against
those float edges, so the edges reported by `reliability_bins` are the ones actually used. This is
also the rule of scikit-learn 1.9's `calibration_curve(strategy="uniform")`.

Equal-mass bins (Nixon et al. 2019): with confidences sorted ascending, the sample of first-tie rank r' (the count
of samples strictly below its confidence) goes to bin r' M // n, so ties share a bin.

The helpers here are shared by the statistics engine (`xent_lab.calibration.statistics`) and the metrics.
"""

from __future__ import annotations

import numpy as np

_SHRINK = 2.0**-30  # relative: far above the rounding of s M and of the edges (M < 2^21), far below a bin's width
_INTEGRAL = 2.0**52  # t + 2^52 holds the integer t (0 <= t < 2^52) in the low bits of its float: no float-to-int cast
_INTEGRAL_BITS = np.float64(_INTEGRAL).view(np.int64)


class UniformBinner:
    """Index m of the right-closed bin (e_m, e_m+1] of the `np.linspace(0, 1, M + 1)` edges holding each score in
    [0, 1] (0 goes to bin 0), plus a fixed integral offset per entry, for blocks of up to `size` scores; the
    temporaries are allocated once, and a result is a view of them, valid until the next call.

    By arithmetic: with x = s M (1 - 2^-30), the bin is trunc(x) wherever x lies at least M 2^-30 below the next
    integer. The factor moves x off the edges: an x in [m, m + 1 - M 2^-30] has s above e_m (m >= 1) and at most
    e_m+1, since x and the edges are within a few units of rounding (~1e-16 relative) of s M and m / M, far less
    than the margin of 2^-30 (M < 2^21); the last edge is 1 itself, so 1 falls in the last bin and 0 in the first.
    The few scores whose x lies within M 2^-30 below an integer are placed by searching the float edges themselves,
    so membership is decided against those edges exactly. Every step is vectorised: trunc and the fraction (exact)
    in floating point, and the integer read from the bits of trunc(x) + offset + 2^52, an integer in [2^52, 2^53)
    and so held exactly in its low bits (no float-to-int cast).
    """

    def __init__(self, n_bins: int, size: int, offsets: np.ndarray | None = None) -> None:
        self.n_bins, self.offsets = n_bins, offsets
        self.scale, self.fraction_limit = n_bins * (1 - _SHRINK), 1 - n_bins * _SHRINK  # both exact for M < 2^21
        self.shift = _INTEGRAL if offsets is None else offsets + _INTEGRAL
        self.scaled, self.whole = np.empty(size), np.empty(size)

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        size = scores.size
        scaled, whole = self.scaled[:size], self.whole[:size]
        np.multiply(scores.ravel(), self.scale, out=scaled)
        np.trunc(scaled, out=whole)
        fraction = np.subtract(scaled, whole, out=scaled)  # exact
        ids = np.add(whole, self.shift if self.offsets is None else self.shift[:size], out=whole).view(np.int64)
        ids -= _INTEGRAL_BITS
        if fraction.max() > self.fraction_limit:
            near = fraction > self.fraction_limit
            edges = np.linspace(0.0, 1.0, self.n_bins + 1)[1:-1]
            ids[near] = np.searchsorted(edges, scores.ravel()[near], side="left")
            ids[near] += 0 if self.offsets is None else self.offsets[:size][near]
        return ids.reshape(scores.shape)


def uniform_bin_ids(scores: np.ndarray, n_bins: int) -> np.ndarray:
    """`UniformBinner`'s bin of each score of any shape in [0, 1]."""
    return UniformBinner(n_bins, scores.size)(scores)


def ranked_sums(confidence: np.ndarray, correct: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What `equal_mass_sums` reads for resample counts (B, n): the cumulative sums of the counts, counts * c and
    counts * a in ascending confidence (3, B, n + 1, from 0), and the sorted search keys (B * n,)
    row * (n + 1) + the first-tie rank of each sample in its resample (the count of the samples below its tie group).
    """
    if np.any(np.diff(confidence) < 0):  # `bootstrap_ci` passes sorted samples: no (B, n) gather then
        order = np.argsort(confidence, kind="stable")
        confidence, correct, counts = confidence[order], correct[order], counts[:, order]
    n_rows, n = counts.shape
    cumulative = np.zeros((3, n_rows, n + 1))
    for row, weights in enumerate((counts, counts * confidence, counts * correct)):
        np.cumsum(weights, axis=1, out=cumulative[row, :, 1:])
    rank = cumulative[0, :, :-1]
    tie_start = np.searchsorted(confidence, confidence, side="left")
    if np.any(tie_start != np.arange(n)):
        rank = rank[:, tie_start]
    return cumulative, (rank + (n + 1) * np.arange(n_rows)[:, None]).ravel()


def equal_mass_sums(cumulative: np.ndarray, keys: np.ndarray, rows: np.ndarray, n_bins: int) -> np.ndarray:
    """(count, confidence sum, correctness sum) per equal-mass bin (3, len(rows), n_bins) of the resamples `rows`,
    from `ranked_sums`. A sample of first-tie rank r goes to bin r * M // n, that is r >= ceil(m n / M) for bins
    >= m: the bin edges are searches of M - 1 integer thresholds among the keys, exact and O(M log n) a resample.
    """
    n = cumulative.shape[2] - 1
    thresholds = -(-np.arange(1, n_bins) * n // n_bins) + (n + 1) * rows[:, None]
    inner = np.searchsorted(keys, thresholds) - n * rows[:, None]
    edges = np.hstack([np.zeros((len(rows), 1), np.intp), inner, np.full((len(rows), 1), n)])
    return np.diff(cumulative[:, rows[:, None], edges], axis=2)


def expected_gap(counts: np.ndarray, mean_score: np.ndarray, mean_outcome: np.ndarray) -> np.ndarray:
    """sum_m (n_m / n) |mean_outcome_m - mean_score_m| over the last axis; empty bins weigh 0."""
    weighted = np.where(counts > 0, counts * np.abs(mean_outcome - mean_score), 0.0)
    return weighted.sum(axis=-1) / counts.sum(axis=-1)


def max_gap(counts: np.ndarray, mean_score: np.ndarray, mean_outcome: np.ndarray) -> np.ndarray:
    """max over the non-empty bins of |mean_outcome_m - mean_score_m|, over the last axis."""
    return np.where(counts > 0, np.abs(mean_outcome - mean_score), -np.inf).max(axis=-1)


def take_rows(probs: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """P[i, columns[i]] for each row i, as one gather from the flat array."""
    return probs.ravel()[columns + np.arange(0, probs.size, probs.shape[1])]


def top_label(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(confidence c_i = max_j P_ij, correctness a_i = 1[argmax_j P_ij == y_i] as float)."""
    predicted = probs.argmax(axis=1)
    confidence = take_rows(probs, predicted)
    return confidence, (predicted == labels).astype(np.float64)
