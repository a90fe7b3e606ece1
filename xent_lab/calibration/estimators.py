"""Calibration-error estimators beyond the binned ECE, on the top label (c_i, a_i) of P (n, k).

- Debiased ECE (Kumar, Liang & Ma, NeurIPS 2019, "Verified Uncertainty Calibration"). The plug-in
  binned ECE over-estimates: even a calibrated model has |acc(B_m) - conf(B_m)| > 0 from sampling noise.
  With ā_m, c̄_m, n_m the mean correctness, mean confidence and size of bin m, and w_m = n_m / n:
  - p=2 (the default): sqrt(max(sum_m w_m [(ā_m - c̄_m)^2 - ā_m (1 - ā_m) / (n_m - 1)], 0)), bins with
    n_m < 2 adding 0 (the paper's unbiased estimate of the squared L2 error, then its root). On calibrated
    data it is 0 about half the time, where the plug-in ECE stays clearly positive;
  - p=1: sum_m w_m (2 |ā_m - c̄_m| - E|N(ā_m - c̄_m, ā_m (1 - ā_m) / n_m)|), the paper's normal-resampling
    bias correction 2 ECE - E[ECE of resampled ā], with the expectation in closed form
    E|N(μ, σ²)| = σ sqrt(2/π) exp(-μ²/2σ²) + μ (1 - 2 Φ(-μ/σ)) instead of Monte Carlo draws. It removes
    only ~40% of the bias where the true gap is 0 (2 - sqrt 2 of it remains), the paper's own caveat.
  Bins: the equal-width bins of `ece`, so the two are read side by side.
- ECE-sweep (Roelofs, Cain, Shlens & Mozer, AISTATS 2022, "Mitigating Bias in Calibration Error
  Estimation"): the equal-mass ECE at the largest bin count b for which the per-bin accuracies, in order of
  confidence, are non-decreasing for every count 1..b (the sweep stops at the first non-monotone count).
- Smooth ECE (Błasiok & Nakkiran, ICLR 2024, "Smooth ECE: Principled Reliability Diagrams via Kernel
  Smoothing"): the residuals r_i = c_i - a_i are smoothed with a Gaussian kernel of bandwidth σ reflected at
  0 and 1, ŝ(t) = (K_σ * r)(t) / (K_σ * 1)(t); smECE_σ = ∫ |ŝ| δ / ∫ δ, δ = K_σ * 1 the smoothed density;
  σ* is the fixed point σ = smECE_σ. Computed exactly as `relplot.smECE` 1.0.3 computes it (grid rounding,
  reflected discrete convolution, its density offset and its 10-step bisection), so the values agree.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from xent_lab.calibration.binning import bin_means, equal_mass_bin_ids, expected_gap, reliability_bins, top_label
from xent_lab.calibration.validation import check_n_bins, check_probs

# relplot 1.0.3's constants: its mesh (config.smECE_mesh_pts), density offset, bisection steps and floor.
SMOOTH_MESH = 200
SMOOTH_DENSITY_EPS = 1e-4
SMOOTH_BISECTION_STEPS = 10
SMOOTH_MIN_SIGMA = 1e-3


def debiased_from_bins(counts: np.ndarray, confidence: np.ndarray, accuracy: np.ndarray, p: int = 2) -> np.ndarray:
    """The debiased ECE from per-bin (n_m, c̄_m, ā_m) along the last axis (any leading batch axes)."""
    weights = counts / counts.sum(axis=-1, keepdims=True)
    filled = counts > 0
    gap = np.where(filled, accuracy - confidence, 0.0)
    variance = np.where(filled, accuracy * (1 - accuracy), 0.0)
    if p == 2:
        with np.errstate(invalid="ignore", divide="ignore"):
            per_bin = np.where(counts > 1, gap**2 - variance / (counts - 1), 0.0)
        return np.sqrt(np.maximum((weights * per_bin).sum(axis=-1), 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        sigma = np.sqrt(variance / counts)
        z = np.where(sigma > 0, gap / sigma, 0.0)
    # E|N(gap, sigma²)|; a bin with sigma = 0 (all right or all wrong) needs no correction: E|.| = |gap|.
    folded = sigma * np.sqrt(2 / np.pi) * np.exp(-(z**2) / 2) + gap * (1 - 2 * special.ndtr(-z))
    expected = np.where(sigma > 0, folded, np.abs(gap))
    return (weights * (2 * np.abs(gap) - expected)).sum(axis=-1)


def debiased_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15, p: int = 2) -> float:
    """Debiased top-label calibration error over equal-width bins (Kumar, Liang & Ma 2019).

    p=2: sqrt(max(sum_m w_m [(ā_m - c̄_m)^2 - ā_m (1 - ā_m) / (n_m - 1)], 0));
    p=1: sum_m w_m (2 |ā_m - c̄_m| - E|N(ā_m - c̄_m, ā_m (1 - ā_m) / n_m)|), which may be < 0 (a bias-corrected
    estimate, not a distance).
    """
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p!r}")
    bins = reliability_bins(probs, labels, n_bins)
    return float(debiased_from_bins(bins.counts, bins.confidence, bins.accuracy, p))


def ece_sweep(probs: np.ndarray, labels: np.ndarray, max_bins: int | None = None) -> float:
    """Equal-mass ECE at b*, the largest b <= max_bins (default n) with monotone bin accuracies for 1..b.

    ECE_b = sum_m (n_m / n) |ā_m - c̄_m| over b equal-mass bins (Roelofs et al. 2022, ECE_EM_SWEEP).
    """
    probs, labels = check_probs(probs, labels)
    confidence, correct = top_label(probs, labels)
    n = len(confidence)
    if max_bins is not None:
        check_n_bins(max_bins)
    # The equal-mass bin of a sample at b bins is its first-tie rank * b // n: one sort serves every b.
    first_rank = equal_mass_bin_ids(confidence, n)
    best = float(np.abs(correct.mean() - confidence.mean()))
    for n_bins in range(2, min(n, max_bins or n) + 1):
        counts, mean_confidence, mean_accuracy = bin_means(first_rank * n_bins // n, confidence, correct, n_bins)
        if np.any(np.diff(mean_accuracy[counts > 0]) < 0):
            break
        best = float(expected_gap(counts, mean_confidence, mean_accuracy))
    return best


def _reflected_smooth(scores: np.ndarray, values: np.ndarray, sigma: float, t: np.ndarray) -> np.ndarray:
    """(K_σ * v)(t): v_i linearly split between its two neighbours on a grid of G points over [0, 1], convolved
    with the Gaussian sampled on that grid, the grid reflected at 0 and 1, then interpolated at t (relplot)."""
    grid = max(2000, round(20 / sigma)) // 2 + 1
    position = scores * (grid - 1)
    left = np.clip(position.astype(int), 0, grid - 2)
    frac = position - left
    mass = np.bincount(left, (1 - frac) * values, grid) + np.bincount(left + 1, frac * values, grid)
    kernel_t = np.linspace(0, 1, grid)
    kernel = np.exp(-((kernel_t - 0.5) ** 2) / (2 * sigma**2)) / (np.sqrt(2 * np.pi) * sigma)
    extended = np.concatenate([mass[::-1][:-1], mass, mass[::-1][1:]])
    smoothed = np.convolve(extended, kernel, "valid")[grid // 2 : grid // 2 + grid]
    index = np.clip((t * (grid - 1)).astype(int), 0, grid - 2)
    weight = (t - index / (grid - 1)) * (grid - 1)
    return smoothed[index] * (1 - weight) + smoothed[index + 1] * weight


def smoothed_residual(
    confidence: np.ndarray, correct: np.ndarray, sigma: float, t: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(ŝ(t), δ(t)): the kernel-smoothed residual c - a and the smoothed density (plus relplot's 1e-4) at t."""
    density = _reflected_smooth(confidence, np.ones_like(confidence), sigma, t) + SMOOTH_DENSITY_EPS
    return _reflected_smooth(confidence, confidence - correct, sigma, t) / density, density


def _smooth_ece_at(confidence: np.ndarray, correct: np.ndarray, sigma: float) -> float:
    t = np.linspace(0, 1, max(round(10 / sigma), SMOOTH_MESH))
    residual, density = smoothed_residual(confidence, correct, sigma, t)
    return float(np.sum(np.abs(residual) * density) / np.sum(density))


def smooth_bandwidth(confidence: np.ndarray, correct: np.ndarray) -> float:
    """σ*: 1 if smECE_1 > 1, else the upper end of a 10-step bisection on [0, 1] for σ = smECE_σ (relplot)."""

    def below(sigma: float) -> bool:
        return sigma < SMOOTH_MIN_SIGMA or sigma < _smooth_ece_at(confidence, correct, sigma)

    if below(1.0):
        return 1.0
    high, low = 1.0, 0.0
    for _ in range(SMOOTH_BISECTION_STEPS):
        middle = (high + low) / 2
        if below(middle):
            low = middle
        else:
            high = middle
    return high


def smooth_ece(probs: np.ndarray, labels: np.ndarray, sigma: float | None = None) -> float:
    """Top-label smooth ECE: ∫ |ŝ_σ| δ_σ / ∫ δ_σ at σ (default σ*, the fixed point σ = smECE_σ).

    Błasiok & Nakkiran 2024; equals `relplot.smECE(c, a)` (or `relplot.smECE_sigma(c, a, sigma)`) on the
    top-label confidences c and correctness a. A binary p is read as [1 - p, p] as everywhere here.
    """
    probs, labels = check_probs(probs, labels)
    confidence, correct = top_label(probs, labels)
    if sigma is None:
        sigma = smooth_bandwidth(confidence, correct)
    elif not 0 < sigma <= 1:
        raise ValueError(f"sigma must lie in (0, 1], got {sigma!r}")
    return _smooth_ece_at(confidence, correct, sigma)


def estimator_metrics(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> dict[str, float]:
    """The estimators of this module: keys "debiased_ece", "ece_sweep", "smooth_ece"."""
    return {
        "debiased_ece": debiased_ece(probs, labels, n_bins),
        "ece_sweep": ece_sweep(probs, labels),
        "smooth_ece": smooth_ece(probs, labels),
    }
