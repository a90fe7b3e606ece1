"""Calibration and accuracy metrics of probabilities P (n, k) against integer labels y.

- ECE = sum_m (|B_m| / n) |acc(B_m) - conf(B_m)|, acc and conf the means of a_i and c_i in B_m.
- MCE = max over non-empty bins of |acc(B_m) - conf(B_m)|.
- Adaptive ECE (Nixon et al. 2019, "Measuring Calibration in Deep Learning"): the same sum over
  equal-mass bins. Sort the confidences ascending; the sample of rank r (0-based) goes to bin
  floor(r' M / n), r' the rank of the first sample with the same confidence. Without ties bin
  sizes are floor(n/M) or ceil(n/M); equal confidences always share a bin, so the value does not
  depend on the order of the samples (saturated 1.0 confidences are common). Bins are empty when
  n < M or when ties merge them.
- Classwise ECE (Kull et al. 2019, "Beyond temperature scaling"): the mean over classes j of the
  equal-width-bin ECE of the scores P_ij against the outcomes 1[y_i == j].
- Over-confidence = (1/n) sum_i (c_i - a_i), mean top-label confidence minus accuracy: > 0 is over-confident
  (the signed gap of Guo et al. 2017's reliability diagrams; the ECE of one bin is its absolute value).
- Brier = (1/n) sum_i sum_j (P_ij - 1[y_i == j])^2, in [0, 2].
- NLL = -(1/n) sum_i log max(P_{i,y_i}, 1e-12): the clip keeps a zero true-class probability finite
  (at most -log 1e-12 ~ 27.6 nats per sample); it only touches predictions that are wrong with near
  certainty. (Temperature scaling computes its NLL from logits and needs no clip.)

B_m are the equal-width bins of `xent_lab.calibration.binning`. Each metric is defined once, in `METRICS`, as a
function of the summary statistics of `xent_lab.calibration.statistics` along a leading batch axis: the single
values here, the per-epoch values of the training callback and every bootstrap resample
(`xent_lab.calibration.bootstrap`) all evaluate that one function. The estimators
(`xent_lab.calibration.estimators`) and the selective-prediction metrics (`xent_lab.calibration.selective`) are
registered there too, outside `calibration_metrics`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from xent_lab.calibration.binning import expected_gap, max_gap
from xent_lab.calibration.estimators import ESTIMATORS
from xent_lab.calibration.selective import SELECTIVE
from xent_lab.calibration.statistics import Statistics
from xent_lab.calibration.validation import check_n_bins, check_probs


def _means(bins: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(count, mean confidence, mean correctness) of (count, confidence sum, correctness sum) bins; NaN if empty."""
    counts, confidence, correct = bins
    with np.errstate(invalid="ignore", divide="ignore"):
        return counts, confidence / counts, correct / counts


def _classwise(stats: Statistics) -> np.ndarray:
    """(1/k) sum_j sum_m |sum_{B_jm} 1[y_i = j] - sum_{B_jm} P_ij| / n: the mean over classes of each ECE_j."""
    scores, hits = stats.class_bins
    return np.abs(hits - scores).sum(axis=-1).mean(axis=-1) / stats.weights.sum(axis=-1)


# name -> the metric of each row of the statistics, (B,); the order is the order of the logged names.
METRICS: dict[str, Callable[[Statistics], np.ndarray]] = {
    "accuracy": lambda stats: stats.sample_sums[0] / stats.n,
    "nll": lambda stats: stats.sample_sums[1] / stats.n,
    "brier": lambda stats: stats.sample_sums[2] / stats.n,
    "ece": lambda stats: expected_gap(*_means(stats.width_bins)),
    "mce": lambda stats: max_gap(*_means(stats.width_bins)),
    "adaece": lambda stats: expected_gap(*_means(stats.mass_bins)),
    "classwise_ece": _classwise,
    "overconfidence": lambda stats: (stats.width_bins[1].sum(axis=-1) - stats.width_bins[2].sum(axis=-1)) / stats.n,
    **ESTIMATORS,
    **SELECTIVE,
}
# The metrics of `calibration_metrics` (logged every epoch as val/<name>), in its key order.
CALIBRATION_METRICS = ("ece", "mce", "adaece", "classwise_ece", "brier", "nll", "accuracy")


def point_values(probs: np.ndarray, labels: np.ndarray, names: tuple[str, ...], n_bins: int = 15) -> dict[str, float]:
    """{name: value} of the named METRICS on the test set (checked inputs, statistics computed once for all)."""
    check_n_bins(n_bins)
    stats = Statistics(*check_probs(probs, labels, values=False), n_bins, classes="classwise_ece" in names)
    if not stats.valid:
        check_probs(probs, labels)  # raises the error naming the offending value
    return {name: float(METRICS[name](stats)[0]) for name in names}


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
        """sum_m (|B_m| / n) |acc(B_m) - conf(B_m)|: METRICS["ece"] of the same statistics."""
        return float(expected_gap(self.counts, self.confidence, self.accuracy))

    @property
    def mce(self) -> float:
        """max over non-empty bins of |acc(B_m) - conf(B_m)|: METRICS["mce"] of the same statistics."""
        return float(max_gap(self.counts, self.confidence, self.accuracy))


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> ReliabilityBins:
    """Per-bin counts, mean confidence and accuracy of the top label in n_bins equal-width bins."""
    check_n_bins(n_bins)
    stats = Statistics(*check_probs(probs, labels), n_bins)
    counts, confidence, accuracy = (row[0] for row in _means(stats.width_bins))
    return ReliabilityBins(np.linspace(0.0, 1.0, n_bins + 1), counts.astype(np.int64), confidence, accuracy)


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Top-label expected calibration error, sum_m (|B_m| / n) |acc(B_m) - conf(B_m)| (Guo et al. 2017)."""
    return point_values(probs, labels, ("ece",), n_bins)["ece"]


def mce(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Maximum calibration error, max over non-empty bins of |acc(B_m) - conf(B_m)|."""
    return point_values(probs, labels, ("mce",), n_bins)["mce"]


def adaptive_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE over equal-mass bins (Nixon et al. 2019).

    With confidences sorted ascending, rank r goes to bin floor(r' M / n), r' the first rank holding
    the same confidence: bins of floor(n/M) or ceil(n/M) samples, except that ties share a bin.
    """
    return point_values(probs, labels, ("adaece",), n_bins)["adaece"]


def classwise_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """(1/k) sum_j ECE_j, ECE_j the equal-width-bin ECE of P_ij against 1[y_i == j] (Kull et al. 2019)."""
    return point_values(probs, labels, ("classwise_ece",), n_bins)["classwise_ece"]


def brier_score(probs: np.ndarray, labels: np.ndarray) -> float:
    """(1/n) sum_i sum_j (P_ij - 1[y_i == j])^2 = (1/n) sum_i (sum_j P_ij^2 - 2 P_{i,y_i} + 1), in [0, 2]."""
    return point_values(probs, labels, ("brier",))["brier"]


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """-(1/n) sum_i log max(P_{i,y_i}, NLL_EPS): the clip keeps a zero true-class probability finite."""
    return point_values(probs, labels, ("nll",))["nll"]


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """(1/n) sum_i 1[argmax_j P_ij == y_i] (a binary p counts as class 1 only when p > 0.5)."""
    return point_values(probs, labels, ("accuracy",))["accuracy"]


def per_class_recall(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Recall of each class k: the fraction of samples of class k predicted as k (NaN for an absent class)."""
    probs, labels = check_probs(probs, labels)
    n_classes = probs.shape[1]
    hits = np.bincount(labels[probs.argmax(axis=1) == labels], minlength=n_classes)
    counts = np.bincount(labels, minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return hits / counts


def calibration_metrics(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> dict[str, float]:
    """All metrics: keys "ece", "mce", "adaece", "classwise_ece", "brier", "nll", "accuracy"; the inputs are
    checked and the statistics computed once for all of them."""
    return point_values(probs, labels, CALIBRATION_METRICS, n_bins)


def selective_metrics(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The selective-prediction metrics (`xent_lab.calibration.selective`): keys "aurc", "augrc",
    "risk_at_80_coverage", "coverage_at_5_risk"; apart from `calibration_metrics`, as they sort the confidences."""
    return point_values(probs, labels, tuple(SELECTIVE))
