"""The one engine every calibration metric reads: the summary statistics of validated (P, y), for the test set
itself or for a batch of B bootstrap resamples given by their counts W (B, n) (a row of ones is the test set).

Every metric (`xent_lab.calibration.metrics.METRICS`) is a function of these statistics along a leading batch
axis, so its single value (B = 1) and its value on every resample come from one definition:

- `sample_sums` (3, B): sum_i w_i a_i, sum_i w_i (-log max(P_{i,y_i}, 1e-12)), sum_i w_i sum_j (P_ij - 1[y_i=j])^2;
- `width_bins` (3, B, M): per equal-width top-label bin, (sum w, sum w c, sum w a);
- `mass_bins` (3, B, M): the same per equal-mass bin (the bins move with the resample);
- `class_bins` (2, B, k, M): per (class j, equal-width bin of P_ij), (sum w P_ij, sum w 1[y_i = j]);
- `ranked`: cumulative sums of (w, w c, w a) in ascending confidence, for the ECE-sweep;
- `weights` with `confidence` and `correct`: the weighted grid masses of smooth ECE are built from them.

Without W the statistics are computed directly, in one pass over P (`_scan`) and two sorts of n confidences; with
W, each is W @ F for a sparse F of per-sample terms, so B resamples cost one matrix product (no loop over them).
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
from scipy import sparse

from xent_lab.calibration.binning import equal_mass_sums, ranked_sums, top_label, uniform_bin_ids

NLL_EPS = 1e-12  # lower clip of the true-class probability in the NLL
_SCAN_ELEMENTS = 2**16  # elements of P per block of `_scan`: its temporaries stay in the CPU cache


def _class_scores(probs: np.ndarray, n_bins: int) -> np.ndarray:
    """The sums of P_ij per (class j, equal-width bin of P_ij) (k, M), a block of rows at a time so that the n x k
    temporaries stay in the CPU cache."""
    n, k = probs.shape
    scores = np.zeros(k * n_bins)
    offsets = np.arange(k) * n_bins
    step = max(1, _SCAN_ELEMENTS // k)
    for start in range(0, n, step):
        block = probs[start : start + step]
        groups = uniform_bin_ids(block, n_bins)
        groups += offsets
        scores += np.bincount(groups.ravel(), block.ravel(), minlength=k * n_bins)
    return scores.reshape(k, n_bins)


def _sorted_bins(ordered: np.ndarray, ordered_hits: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(count, confidence sum, correctness sum) (3, 1, M) of the bins (t_{m-1}, t_m] cut by M - 1 thresholds, from
    the sorted confidences and the sorted confidences of the correct samples."""
    n = len(ordered)
    cuts = np.concatenate([[0], np.searchsorted(ordered, thresholds, side="right"), [n]])
    hit_cuts = np.concatenate([[0], np.searchsorted(ordered_hits, thresholds, side="right"), [len(ordered_hits)]])
    counts = np.diff(cuts)
    sums = np.add.reduceat(np.append(ordered, 0.0), cuts[:-1])  # the 0 appended: a cut may be n (empty bins)
    return np.stack([counts, np.where(counts > 0, sums, 0.0), np.diff(hit_cuts)])[:, None, :]


class Statistics:
    """The summary statistics of (probs, labels) (validated: `check_probs`) over n_bins bins, each computed on first
    use; for the test set (counts None, B = 1) or for the resamples given by the rows of counts (B, n)."""

    def __init__(self, probs: np.ndarray, labels: np.ndarray, n_bins: int, counts: np.ndarray | None = None) -> None:
        self.probs, self.labels, self.n_bins, self.counts = probs, labels, n_bins, counts
        self.n = len(labels)

    @cached_property
    def _top(self) -> tuple[np.ndarray, np.ndarray]:
        return top_label(self.probs, self.labels)

    @cached_property
    def true_class(self) -> np.ndarray:
        """P_{i,y_i} (n,)."""
        return np.take_along_axis(self.probs, self.labels[:, None], axis=1)[:, 0]

    @property
    def confidence(self) -> np.ndarray:
        """c_i = max_j P_ij (n,)."""
        return self._top[0]

    @property
    def correct(self) -> np.ndarray:
        """a_i = 1[argmax_j P_ij == y_i] (n,), as float."""
        return self._top[1]

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
        squares = np.einsum("ij,ij->i", self.probs, self.probs)
        terms = [self.correct, -np.log(np.maximum(true_class, NLL_EPS)), squares - 2 * true_class + 1]
        if self.counts is None:
            return np.array([[term.sum()] for term in terms])
        return self._weighted([np.full(self.n, column) for column in range(3)], terms, 3).T

    @cached_property
    def _ordered(self) -> tuple[np.ndarray, np.ndarray]:
        return np.sort(self.confidence), np.sort(self.confidence[self.correct > 0])

    @cached_property
    def width_bins(self) -> np.ndarray:
        """(3, B, M): per equal-width top-label bin ((m-1)/M, m/M], the weighted count, confidence and correctness."""
        m = self.n_bins
        if self.counts is None:
            bins = uniform_bin_ids(self.confidence, m)
            sums = [np.bincount(bins, weights, minlength=m) for weights in (None, self.confidence, self.correct)]
            return np.stack(sums)[:, None, :]
        bins = uniform_bin_ids(self.confidence, m)
        columns = [bins, m + bins, 2 * m + bins]
        sums = self._weighted(columns, [np.ones(self.n), self.confidence, self.correct], 3 * m)
        return sums.reshape(len(self.counts), 3, m).transpose(1, 0, 2)

    @cached_property
    def mass_bins(self) -> np.ndarray:
        """(3, B, M): per equal-mass bin (a sample of first-tie rank r among n goes to bin r M // n), the weighted
        count, confidence and correctness."""
        if self.counts is None:
            ordered = self._ordered[0]
            # Bin >= m holds the samples with at least t_m = ceil(m n / M) samples strictly below them, that is
            # those above the t_m-th smallest confidence.
            thresholds = ordered[-(-np.arange(1, self.n_bins) * self.n // self.n_bins) - 1]
            return _sorted_bins(*self._ordered, thresholds)
        cumulative, keys = self.ranked
        return equal_mass_sums(cumulative, keys, np.arange(len(self.counts)), self.n_bins)

    @cached_property
    def class_bins(self) -> np.ndarray:
        """(2, B, k, M): per (class j, equal-width bin of P_ij), the weighted sums of P_ij and of 1[y_i = j]."""
        k, m = self.probs.shape[1], self.n_bins
        if self.counts is None:
            true_bins = self.labels * m + uniform_bin_ids(self.true_class, m)
            hits = np.bincount(true_bins, minlength=k * m).reshape(1, k, m)
            return np.stack([_class_scores(self.probs, m)[None], hits])
        groups = np.arange(k) * m + uniform_bin_ids(self.probs, m)
        columns = [groups.ravel(), groups[np.arange(self.n), self.labels] + k * m]
        sums = self._weighted(columns, [self.probs.ravel(), np.ones(self.n)], 2 * k * m)
        return sums.reshape(len(self.counts), 2, k, m).transpose(1, 0, 2, 3)

    @cached_property
    def ranked(self) -> tuple[np.ndarray, np.ndarray]:
        """`ranked_sums` of the weights: cumulative (w, w c, w a) in ascending confidence and the search keys."""
        return ranked_sums(self.confidence, self.correct, self.weights)
