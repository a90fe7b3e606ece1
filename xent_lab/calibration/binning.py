"""Equal-width confidence bins and the top-label reliability statistics read from them.

Binning (Guo et al. 2017, "On Calibration of Modern Neural Networks"): M equal-width bins
B_m = ((m-1)/M, m/M], m = 1..M, right-closed, with a confidence of exactly 0 in the first bin
(so 1.0 falls in the last). Edges are `np.linspace(0, 1, M + 1)`, and membership is decided against
those float edges, so the edges reported by `reliability_bins` are the ones actually used. This is
also the rule of scikit-learn 1.9's `calibration_curve(strategy="uniform")`.

The helpers here are shared by the metrics (`xent_lab.calibration.metrics`) and the diagrams.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xent_lab.calibration.validation import check_n_bins, check_probs


def uniform_bin_ids(scores: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Index m of the right-closed bin (edges[m], edges[m+1]] holding each score; 0 goes to bin 0.

    searchsorted(side="left") on the inner edges counts the inner edges strictly below the score.
    """
    return np.searchsorted(edges[1:-1], scores, side="left")


def equal_mass_bin_ids(scores: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-mass bin of each score (Nixon et al. 2019): rank r' * M // n, r' the ascending rank of the first
    sample holding the same score, so ties share a bin and the result does not depend on the sample order."""
    order = np.argsort(scores)
    bin_ids = np.empty(len(scores), dtype=np.int64)
    bin_ids[order] = np.searchsorted(scores[order], scores[order], side="left") * n_bins // len(scores)
    return bin_ids


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


def bin_means(
    bin_ids: np.ndarray, scores: np.ndarray, outcomes: np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-bin (count, mean score, mean outcome); the means are NaN in empty bins."""
    counts = np.bincount(bin_ids, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_score = np.bincount(bin_ids, weights=scores, minlength=n_bins) / counts
        mean_outcome = np.bincount(bin_ids, weights=outcomes, minlength=n_bins) / counts
    return counts, mean_score, mean_outcome


def expected_gap(counts: np.ndarray, mean_score: np.ndarray, mean_outcome: np.ndarray) -> np.ndarray:
    """sum_m (n_m / n) |mean_outcome_m - mean_score_m| over the last axis; empty bins weigh 0."""
    weighted = np.where(counts > 0, counts * np.abs(mean_outcome - mean_score), 0.0)
    return weighted.sum(axis=-1) / counts.sum(axis=-1)


def top_label(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(confidence c_i = max_j P_ij, correctness a_i = 1[argmax_j P_ij == y_i] as float)."""
    predicted = probs.argmax(axis=1)
    confidence = probs[np.arange(len(probs)), predicted]
    return confidence, (predicted == labels).astype(np.float64)


@dataclass(frozen=True)
class ReliabilityBins:
    """Top-label statistics of M equal-width bins ((m-1)/M, m/M]; NaN means mark empty bins."""

    edges: np.ndarray  # (M + 1,) from 0 to 1
    counts: np.ndarray  # (M,) samples per bin
    confidence: np.ndarray  # (M,) mean confidence
    accuracy: np.ndarray  # (M,) mean correctness

    @property
    def gap(self) -> np.ndarray:
        """|accuracy - confidence| per bin (NaN where empty)."""
        return np.abs(self.accuracy - self.confidence)

    @property
    def ece(self) -> float:
        """sum_m (|B_m| / n) |acc(B_m) - conf(B_m)|."""
        return float(expected_gap(self.counts, self.confidence, self.accuracy))

    @property
    def mce(self) -> float:
        """max over non-empty bins of |acc(B_m) - conf(B_m)|."""
        return float(np.nanmax(self.gap))


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> ReliabilityBins:
    """Per-bin counts, mean confidence and accuracy of the top label in n_bins equal-width bins."""
    check_n_bins(n_bins)
    probs, labels = check_probs(probs, labels)
    confidence, correct = top_label(probs, labels)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    counts, mean_confidence, mean_accuracy = bin_means(uniform_bin_ids(confidence, edges), confidence, correct, n_bins)
    return ReliabilityBins(edges, counts, mean_confidence, mean_accuracy)
