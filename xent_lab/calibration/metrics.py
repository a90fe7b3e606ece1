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
- Brier = (1/n) sum_i sum_j (P_ij - 1[y_i == j])^2, in [0, 2].
- NLL = -(1/n) sum_i log max(P_{i,y_i}, 1e-12): the clip keeps a zero true-class probability finite
  (at most -log 1e-12 ~ 27.6 nats per sample); it only touches predictions that are wrong with near
  certainty. (Temperature scaling computes its NLL from logits and needs no clip.)

B_m are the equal-width bins of `xent_lab.calibration.binning`.
"""

from __future__ import annotations

import numpy as np

from xent_lab.calibration.binning import (
    ReliabilityBins,
    bin_means,
    equal_mass_bin_ids,
    expected_gap,
    reliability_bins,
    top_label,
    uniform_bin_ids,
)
from xent_lab.calibration.validation import check_n_bins, check_probs

NLL_EPS = 1e-12  # lower clip of the true-class probability in `nll`


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Top-label expected calibration error, sum_m (|B_m| / n) |acc(B_m) - conf(B_m)| (Guo et al. 2017)."""
    return reliability_bins(probs, labels, n_bins).ece


def mce(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Maximum calibration error, max over non-empty bins of |acc(B_m) - conf(B_m)|."""
    return reliability_bins(probs, labels, n_bins).mce


def adaptive_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE over equal-mass bins (Nixon et al. 2019).

    With confidences sorted ascending, rank r goes to bin floor(r' M / n), r' the first rank holding
    the same confidence: bins of floor(n/M) or ceil(n/M) samples, except that ties share a bin.
    """
    check_n_bins(n_bins)
    probs, labels = check_probs(probs, labels)
    confidence, correct = top_label(probs, labels)
    return float(expected_gap(*bin_means(equal_mass_bin_ids(confidence, n_bins), confidence, correct, n_bins)))


def classwise_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """(1/k) sum_j ECE_j, ECE_j the equal-width-bin ECE of P_ij against 1[y_i == j] (Kull et al. 2019)."""
    check_n_bins(n_bins)
    return _classwise(*check_probs(probs, labels), n_bins)


def _classwise(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> float:
    n_classes = probs.shape[1]
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # One bincount over (class, bin) pairs: group j * M + m holds the scores of class j in bin m.
    groups = np.arange(n_classes) * n_bins + uniform_bin_ids(probs, edges)
    outcomes = (labels[:, None] == np.arange(n_classes)).astype(np.float64)
    stats = bin_means(groups.ravel(), probs.ravel(), outcomes.ravel(), n_classes * n_bins)
    per_class = expected_gap(*(s.reshape(n_classes, n_bins) for s in stats))
    return float(per_class.mean())


def brier_score(probs: np.ndarray, labels: np.ndarray) -> float:
    """(1/n) sum_i sum_j (P_ij - 1[y_i == j])^2 = (1/n) sum_i (sum_j P_ij^2 - 2 P_{i,y_i} + 1), in [0, 2]."""
    probs, labels = check_probs(probs, labels)
    true_class = probs[np.arange(len(probs)), labels]
    return float(np.mean(np.sum(probs**2, axis=1) - 2 * true_class + 1))


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """-(1/n) sum_i log max(P_{i,y_i}, NLL_EPS): the clip keeps a zero true-class probability finite."""
    probs, labels = check_probs(probs, labels)
    true_class = probs[np.arange(len(probs)), labels]
    return float(-np.mean(np.log(np.maximum(true_class, NLL_EPS))))


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """(1/n) sum_i 1[argmax_j P_ij == y_i] (a binary p counts as class 1 only when p > 0.5)."""
    probs, labels = check_probs(probs, labels)
    return float(np.mean(probs.argmax(axis=1) == labels))


def per_class_recall(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Recall of each class k: the fraction of samples of class k predicted as k (NaN for an absent class)."""
    probs, labels = check_probs(probs, labels)
    n_classes = probs.shape[1]
    hits = np.bincount(labels[probs.argmax(axis=1) == labels], minlength=n_classes)
    counts = np.bincount(labels, minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return hits / counts


def calibration_metrics(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> dict[str, float]:
    """All metrics: keys "ece", "mce", "adaece", "classwise_ece", "brier", "nll", "accuracy".

    The inputs are checked and the top label found once for all of them (the single metrics each do both).
    """
    check_n_bins(n_bins)
    probs, labels = check_probs(probs, labels)
    confidence, correct = top_label(probs, labels)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = ReliabilityBins(edges, *bin_means(uniform_bin_ids(confidence, edges), confidence, correct, n_bins))
    true_class = probs[np.arange(len(probs)), labels]
    return {
        "ece": bins.ece,
        "mce": bins.mce,
        "adaece": float(expected_gap(*bin_means(equal_mass_bin_ids(confidence, n_bins), confidence, correct, n_bins))),
        "classwise_ece": _classwise(probs, labels, n_bins),
        "brier": float(np.mean(np.einsum("ij,ij->i", probs, probs) - 2 * true_class + 1)),
        "nll": float(-np.mean(np.log(np.maximum(true_class, NLL_EPS)))),
        "accuracy": float(correct.mean()),
    }
