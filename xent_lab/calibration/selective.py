"""Selective-prediction metrics: how well the confidence c_i = max_j P_ij ranks the errors e_i = 1 - a_i.

Rejecting all but the k most confident of n samples gives coverage k / n and risk r_k = E_k / k, E_k the errors
among those k (the risk-coverage curve, Geifman & El-Yaniv, NeurIPS 2017, "Selective Classification for Deep
Neural Networks"). As TorchUncertainty computes them (`src/torch_uncertainty/metrics/classification/
risk_coverage.py` of ENSTA-U2IS-AI/torch-uncertainty at commit 0d0df2b2e553139edeb2cdd1b99a88efb68f1945:
`_aurc_rejection_rate_compute`, `AURC`, `AUGRC`, `RiskAtxCov`, `CovAtxRisk`), with k = 1..n:

- AURC (Geifman et al., ICLR 2019, "Bias-Reduced Uncertainty Estimation for Deep Neural Classifiers"): the
  trapezoidal area under r_k over the coverages k / n, divided by 1 - 1/n (the length of that support), i.e.
  (sum_k r_k - (r_1 + r_n) / 2) / (n - 1);
- AUGRC (Traub et al., NeurIPS 2024, "Overcoming Common Flaws in the Evaluation of Selective Classification
  Systems"): the same area under the generalized risk E_k / n (the errors accepted, as a fraction of all
  samples), which does not let the few most confident samples dominate;
- risk at 80% coverage: r_m at m = ceil(0.8 n), the fewest samples covering at least 80%; no interpolation;
- coverage at 5% risk: the largest k / n with r_k <= 0.05 (the curve need not be monotone: the last such k).

Where the values differ from that code's:
- ties: it orders tied confidences as `torch.argsort` happens to (unspecified). Here a tied sample counts the mean
  error of its tie group, so E_k is the mean of its value over all orders of the tied samples, independent of the
  sample order; without ties the values are TorchUncertainty's. (Saturated confidences of 1.0 tie often.)
- no k with r_k <= 0.05: it returns NaN; here coverage 0 (reject everything), so that every bootstrap resample
  has a value. Its check for that case also reads the unflipped array, so it returns NaN for some curves that do
  reach the risk, e.g. r = 0, 1/2, 2/3, where the coverage at 5% risk is 1/3 (here, and by its own definition).
- precision: float64 here; it computes in the probabilities' dtype (float32 usually), so on float32 inputs its
  areas agree with these to float32 rounding only.
AURC and AUGRC are NaN for n < 2, as there.

Each metric is one function of `Statistics.cumulative_errors` along the batch axis of the resamples: its value and
its bootstrap interval come from that one definition (`xent_lab.calibration.metrics.METRICS` registers them).
They need one sort of the n confidences, so `calibration_metrics` (and the per-epoch validation metrics) leave
them out; `selective_metrics` computes them, and `score` computes them with every other test metric.
"""

from __future__ import annotations

import math

import numpy as np

from xent_lab.calibration.statistics import Statistics

COVERAGE = 0.8  # risk_at_80_coverage
RISK = 0.05  # coverage_at_5_risk


def _area(sums: np.ndarray, ends: np.ndarray, n: int) -> np.ndarray:
    """The trapezoidal area under a curve at the coverages k / n, divided by 1 - 1/n, from the sum of its n values
    and the sum of its first and last: (sum - ends / 2) / (n - 1); NaN for n < 2."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sums - ends / 2) / (n - 1)


def _aurc(stats: Statistics) -> np.ndarray:
    errors, n = stats.cumulative_errors, stats.n
    return _area(errors @ (1 / np.arange(1, n + 1)), errors[:, 0] + errors[:, -1] / n, n)


def _augrc(stats: Statistics) -> np.ndarray:
    errors, n = stats.cumulative_errors, stats.n
    return _area(errors.sum(axis=-1), errors[:, 0] + errors[:, -1], n) / n


def _risk_at_coverage(stats: Statistics) -> np.ndarray:
    m = math.ceil(stats.n * COVERAGE)  # exact: n * 0.8 rounds to the integer when 5 divides n
    return stats.cumulative_errors[:, m - 1] / m


def _coverage_at_risk(stats: Statistics) -> np.ndarray:
    admissible = stats.cumulative_errors / np.arange(1, stats.n + 1) <= RISK  # r_k as compared there, not E_k <= k/20
    largest = stats.n - np.argmax(admissible[:, ::-1], axis=1)
    return np.where(admissible.any(axis=1), largest, 0) / stats.n


# name -> the metric of each row of the statistics, (B,); `METRICS` registers them beside the calibration metrics.
SELECTIVE = {
    "aurc": _aurc,
    "augrc": _augrc,
    "risk_at_80_coverage": _risk_at_coverage,
    "coverage_at_5_risk": _coverage_at_risk,
}
