"""The one engine every calibration metric reads: the summary statistics of validated (P, y), for the test set
itself or for a batch of B bootstrap resamples given by their counts W (B, n) (a row of ones is the test set).

Every metric (`xent_lab.calibration.metrics.METRICS`) is a function of these statistics along a leading batch
axis, so its single value (B = 1) and its value on every resample come from one definition:

- `sample_sums` (3, B): sum_i w_i a_i, sum_i w_i (-log max(P_{i,y_i}, 1e-12)), sum_i w_i sum_j (P_ij - 1[y_i=j])^2;
- `width_bins` (3, B, M): per equal-width top-label bin, (sum w, sum w c, sum w a);
- `mass_bins` (3, B, M): the same per equal-mass bin (the bins move with the resample);
- `class_bins` (2, B, k, M): per (class j, equal-width bin of P_ij), (sum w P_ij, sum w 1[y_i = j]);
- `ranked`: cumulative sums of (w, w c, w a) in ascending confidence, for the ECE-sweep;
- `cumulative_errors` (B, n): the errors among the k most confident samples, k = 1..n, for the selective metrics;
- `weights` with `confidence` and `correct`: the weighted grid masses of smooth ECE are built from them.

Without W the statistics are computed directly: one blocked pass over P (`_scan`: the value checks, the top label,
the true class, sum P^2 and the per-(class, bin) sums and counts), bin counts of n values, one sort of the n
confidences and, for the selective metrics, one of the n (confidence, error) pairs. With W, each is W @ F for a
sparse F of per-sample terms, so B resamples cost one matrix product (no loop over them); the cumulative errors
spell out the n positions of every resample at once. Tests check the two ways against each other and against
explicit resamples.
"""

from __future__ import annotations

from functools import cached_property
from typing import NamedTuple

import numpy as np
from scipy import sparse

from xent_lab.calibration.binning import (
    UniformBinner,
    equal_mass_sums,
    ranked_sums,
    take_rows,
    top_label,
    uniform_bin_ids,
)
from xent_lab.calibration.validation import SUM_TOLERANCE

NLL_EPS = 1e-12  # lower clip of the true-class probability in the NLL
_SCAN_ELEMENTS = 2**16  # elements of P per block of `_scan`: its temporaries stay in the CPU cache


class _Scan(NamedTuple):
    """What one pass over P gives: c_i, a_i (bool), P_{i,y_i}, sum_ij P_ij^2 and, when asked for, the per-(class,
    bin) sums of P_ij and counts of 1[y_i = j] (2, k, M) and the equal-width bin of each c_i."""

    confidence: np.ndarray
    hit: np.ndarray
    true_class: np.ndarray
    squares: float
    class_sums: np.ndarray | None
    confidence_bins: np.ndarray | None


def _scan(probs: np.ndarray, labels: np.ndarray, n_bins: int, classes: bool) -> _Scan | None:
    """One pass over P, a block of rows at a time so that each block is read from memory once and its temporaries,
    allocated once, stay in the CPU cache; None if a value is NaN, outside [0, 1] or a row sum is off. With
    `classes`, every P_ij is binned, and the bins of c_i and P_{i,y_i} are read from those (no second binning).
    Only c_i, a_i, P_{i,y_i} and the bin of c_i are kept per sample; the rest is summed block by block."""
    n, k = probs.shape
    step = min(n, max(1, _SCAN_ELEMENTS // k))
    confidence, hit, true_class = np.empty(n), np.empty(n, bool), np.empty(n)
    row_starts = np.arange(0, step * k, k)  # flat index of each row's first entry in a block
    binner = UniformBinner(n_bins, step * k, np.tile(np.arange(k) * n_bins, step))  # group j M + m of P_ij
    row_sums, predicted = np.empty(step), np.empty(step, np.intp)
    top, truth, true_groups = np.empty(step, np.intp), np.empty(step, np.intp), np.empty(step, np.intp)
    scores, class_hits, squares = np.zeros(k * n_bins), np.zeros(k * n_bins, np.intp), 0.0
    confidence_bins = np.empty(n, np.intp) if classes else None
    for start in range(0, n, step):
        block = probs[start : start + step]
        rows, flat, size = slice(start, start + len(block)), block.ravel(), len(block)
        sums = np.einsum("ij->i", block, out=row_sums[:size])
        if not block.min() >= 0 or sums.max() - 1 > SUM_TOLERANCE or 1 - sums.min() > SUM_TOLERANCE:  # NaN fails too
            return None
        # Non-negative floats order as their bits do, and a valid row's maximum is positive (no -0.0 tie): the
        # argmax of the bits is that of the values, without the search for NaN.
        tops = np.argmax(block.view(np.int64), axis=1, out=predicted[:size])
        np.equal(tops, labels[rows], out=hit[rows])
        np.add(tops, row_starts[:size], out=top[:size])
        np.take(flat, top[:size], out=confidence[rows], mode="wrap")  # "wrap": no copy of `out` (indices are valid)
        np.add(labels[rows], row_starts[:size], out=truth[:size])
        np.take(flat, truth[:size], out=true_class[rows], mode="wrap")
        squares += np.einsum("i,i->", flat, flat)
        if classes:
            groups = binner(flat)
            scores += np.bincount(groups, flat, minlength=k * n_bins)
            class_hits += np.bincount(np.take(groups, truth[:size], out=true_groups[:size]), minlength=k * n_bins)
            np.take(groups, top[:size], out=confidence_bins[rows], mode="wrap")
            confidence_bins[rows] -= np.multiply(tops, n_bins, out=tops)  # the group of c_i is predicted_i M + its bin
    if not confidence.max() <= 1:  # the maximum of each row is its confidence
        return None
    class_sums = np.stack([scores, class_hits]).reshape(2, k, n_bins) if classes else None
    return _Scan(confidence, hit, true_class, squares, class_sums, confidence_bins)


def _cumulative_errors(confidence: np.ndarray, hit: np.ndarray, counts: np.ndarray | None) -> np.ndarray:
    """(B, n): E_k, the errors (not a_i) among the k most confident of each resample's n samples (rows of counts
    summing to n; None for the test set), k = 1..n. Each copy of a sample is one position of the descending order,
    as in the explicit resample. Tied confidences have no order: each of them counts the mean error of its tie group
    in the resample, which makes E_k the mean of E_k over all orders of the tied samples (E_k is linear in them)."""
    n = len(confidence)
    if counts is None:
        # (confidence, error) pairs sorted as one integer, cheaper than an argsort: the bits of a float in [0, 1]
        # order as the floats do and stay below 2^62, so shifted by one they leave the lowest bit to the error.
        key = np.sort((confidence.view(np.int64) << 1) | ~hit)[::-1]
        values, errors, counts = key >> 1, (key & 1).astype(bool), np.ones((1, n))
    else:
        descending = slice(None, None, -1)
        if np.any(np.diff(confidence) < 0):  # `bootstrap_ci` passes sorted samples: no (B, n) gather then
            descending = np.argsort(confidence)[::-1]  # any order of the ties: they are averaged
        values, errors, counts = confidence[descending], ~hit[descending], counts[:, descending]
    starts = np.flatnonzero(np.diff(values, prepend=values[0] + 1))
    if len(starts) < n:
        group_errors = np.add.reduceat(counts * errors, starts, axis=1)
        group_counts = np.add.reduceat(counts, starts, axis=1)
        np.divide(group_errors, group_counts, out=group_errors, where=group_counts > 0)
        errors = np.repeat(group_errors, np.diff(starts, append=n), axis=1)
    # Without ties the errors stay bool: the copies per position move a byte each, and their sums are exact.
    positions = np.repeat(np.broadcast_to(errors, counts.shape).ravel(), counts.ravel().astype(np.intp))
    return np.cumsum(positions.reshape(len(counts), n), axis=1, dtype=np.float64)


def _sorted_bins(ordered: np.ndarray, hits: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(count, confidence sum, correctness sum) (3, 1, M) of the bins (t_{m-1}, t_m] cut by M - 1 thresholds, from
    the sorted confidences and the confidences of the correct samples (unsorted: each is placed by a search of the
    M - 1 thresholds, cheaper than sorting them)."""
    n = len(ordered)
    cuts = np.concatenate([[0], np.searchsorted(ordered, thresholds, side="right"), [n]])
    counts = np.diff(cuts)
    sums = np.zeros(len(counts))
    filled = counts > 0
    sums[filled] = np.add.reduceat(ordered, cuts[:-1][filled])  # without the empty bins the segments tile `ordered`
    hit_counts = np.bincount(np.searchsorted(thresholds, hits, side="left"), minlength=len(counts))
    return np.stack([counts, sums, hit_counts])[:, None, :]


class Statistics:
    """The summary statistics of (probs, labels) over n_bins bins, each computed on first use; for the test set
    (counts None, B = 1) or for the resamples given by the rows of counts (B, n), of inputs checked by
    `check_probs` (for the test set, its value checks are part of the one pass over P: see `valid`).

    `classes`: the test set's per-(class, bin) sums are wanted, so the pass over P computes them too.
    """

    def __init__(
        self,
        probs: np.ndarray,
        labels: np.ndarray,
        n_bins: int,
        counts: np.ndarray | None = None,
        classes: bool = False,
    ) -> None:
        self.probs, self.labels, self.n_bins, self.counts, self.classes = probs, labels, n_bins, counts, classes
        self.n = len(labels)

    @cached_property
    def _pass(self) -> _Scan | None:
        return _scan(self.probs, self.labels, self.n_bins, self.classes)

    @property
    def valid(self) -> bool:
        """Whether every probability is finite, in [0, 1] and every row sums to 1 (`check_probs`' tolerance)."""
        return self._pass is not None

    @cached_property
    def _top(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.counts is None:
            return self._pass[:3]
        confidence, correct = top_label(self.probs, self.labels)
        return confidence, correct > 0, take_rows(self.probs, self.labels)

    @property
    def confidence(self) -> np.ndarray:
        """c_i = max_j P_ij (n,)."""
        return self._top[0]

    @property
    def hit(self) -> np.ndarray:
        """a_i = 1[argmax_j P_ij == y_i] (n,), as bool."""
        return self._top[1]

    @cached_property
    def correct(self) -> np.ndarray:
        """a_i (n,), as float."""
        return self.hit.astype(np.float64)

    @property
    def true_class(self) -> np.ndarray:
        """P_{i,y_i} (n,)."""
        return self._top[2]

    @property
    def weights(self) -> np.ndarray:
        """The resample counts (B, n); a row of ones for the test set."""
        return np.ones((1, self.n)) if self.counts is None else self.counts

    def _weighted(self, columns: list[np.ndarray], values: list[np.ndarray], width: int) -> np.ndarray:
        """counts (B, n) @ F (n, width), F sparse with values[r][i] at (i, columns[r][i]), rows repeated over the
        classes where a block has n k entries."""
        n = self.n
        rows = np.concatenate([np.arange(n) if len(v) == n else np.repeat(np.arange(n), len(v) // n) for v in values])
        f = sparse.csr_array((np.concatenate(values), (rows, np.concatenate(columns))), shape=(n, width))
        return self.counts @ f

    @cached_property
    def sample_sums(self) -> np.ndarray:
        """(3, B): the weighted sums of a_i, -log max(P_{i,y_i}, 1e-12) and sum_j (P_ij - 1[y_i=j])^2."""
        true_class = self.true_class
        if self.counts is None:  # sum_i sum_j P_ij^2 at once: no per-sample (n,) pass over P
            brier = self._pass.squares - 2 * true_class.sum() + self.n
            logs = np.maximum(true_class, NLL_EPS)
            np.log(logs, out=logs)  # -sum(log) is sum(-log) exactly
            return np.array([[np.count_nonzero(self.hit)], [-logs.sum()], [brier]], dtype=np.float64)
        losses = -np.log(np.maximum(true_class, NLL_EPS))
        terms = [self.correct, losses, np.einsum("ij,ij->i", self.probs, self.probs) - 2 * true_class + 1]
        return self._weighted([np.full(self.n, column) for column in range(3)], terms, 3).T

    @cached_property
    def width_bins(self) -> np.ndarray:
        """(3, B, M): per equal-width top-label bin ((m-1)/M, m/M], the weighted count, confidence and correctness."""
        m = self.n_bins
        scanned = self.counts is None and self.classes
        bins = self._pass.confidence_bins if scanned else uniform_bin_ids(self.confidence, m)
        if self.counts is None:
            # The counts and correct counts (integers: exact in any order) from one count of (bin, a_i) pairs.
            pairs = np.bincount(bins + m * self.hit, minlength=2 * m).reshape(2, m)
            sums = [pairs.sum(axis=0), np.bincount(bins, self.confidence, minlength=m), pairs[1]]
            return np.stack(sums).astype(np.float64)[:, None, :]
        columns = [bins, m + bins, 2 * m + bins]
        sums = self._weighted(columns, [np.ones(self.n), self.confidence, self.correct], 3 * m)
        return sums.reshape(len(self.counts), 3, m).transpose(1, 0, 2)

    @cached_property
    def mass_bins(self) -> np.ndarray:
        """(3, B, M): per equal-mass bin (a sample of first-tie rank r among n goes to bin r M // n), the weighted
        count, confidence and correctness."""
        if self.counts is None:
            ordered = np.sort(self.confidence)
            # Bin >= m holds the samples with at least t_m = ceil(m n / M) samples strictly below them, that is
            # those above the t_m-th smallest confidence.
            thresholds = ordered[-(-np.arange(1, self.n_bins) * self.n // self.n_bins) - 1]
            return _sorted_bins(ordered, self.confidence[self.hit], thresholds)
        cumulative, keys = self.ranked
        return equal_mass_sums(cumulative, keys, np.arange(len(self.counts)), self.n_bins)

    @cached_property
    def class_bins(self) -> np.ndarray:
        """(2, B, k, M): per (class j, equal-width bin of P_ij), the weighted sums of P_ij and of 1[y_i = j]."""
        k, m = self.probs.shape[1], self.n_bins
        if self.counts is None:
            scan = self._pass if self.classes else _scan(self.probs, self.labels, m, classes=True)
            return scan.class_sums[:, None]
        groups = np.arange(k) * m + uniform_bin_ids(self.probs, m)
        columns = [groups.ravel(), groups[np.arange(self.n), self.labels] + k * m]
        sums = self._weighted(columns, [self.probs.ravel(), np.ones(self.n)], 2 * k * m)
        return sums.reshape(len(self.counts), 2, k, m).transpose(1, 0, 2, 3)

    @cached_property
    def cumulative_errors(self) -> np.ndarray:
        """`_cumulative_errors` of the weights: (B, n), the errors among the k most confident samples, ties averaged."""
        return _cumulative_errors(self.confidence, self.hit, self.counts)

    @cached_property
    def ranked(self) -> tuple[np.ndarray, np.ndarray]:
        """`ranked_sums` of the weights: cumulative (w, w c, w a) in ascending confidence and the search keys."""
        return ranked_sums(self.confidence, self.correct, self.weights)
