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
from scipy import fft, sparse, special

from xent_lab.calibration.binning import equal_mass_sums, expected_gap, top_label
from xent_lab.calibration.statistics import Statistics
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
    check_n_bins(n_bins)
    return float(_debiased(Statistics(*check_probs(probs, labels), n_bins), p)[0])


def _debiased(stats: Statistics, p: int = 2) -> np.ndarray:
    counts, confidence, correct = stats.width_bins
    with np.errstate(invalid="ignore", divide="ignore"):
        return debiased_from_bins(counts, confidence / counts, correct / counts, p)


def _settling_bins(ranks: np.ndarray, n: int) -> np.ndarray:
    """Per resample, the bin count b* from which its equal-mass bins stay the same: ceil(n / g), g the smallest gap
    between the first-tie ranks of two tie groups. Group j goes to bin r_j b // n, so once b g >= n every group
    has a bin of its own at every larger b. A model with few distinct confidences (one that collapsed to the
    same prediction for every input) settles early; distinct confidences (g = 1) settle only at n. 0 for one
    tie group, which fills one bin at every b."""
    gaps = np.diff(ranks, axis=1)
    smallest = np.where(gaps > 0, gaps, np.inf).min(axis=1, initial=np.inf)
    return np.ceil(n / smallest)


def sweep_from_sums(cumulative: np.ndarray, keys: np.ndarray, max_bins: int | None = None) -> np.ndarray:
    """The ECE-sweep of each resample from its `ranked_sums`."""
    n_rows, n = cumulative.shape[1], cumulative.shape[2] - 1
    best = np.abs(cumulative[2, :, -1] - cumulative[1, :, -1]) / n  # b = 1: |mean a - mean c|
    settled = _settling_bins(keys.reshape(n_rows, n) - (n + 1) * np.arange(n_rows)[:, None], n)
    active = np.arange(n_rows)
    for n_bins in range(2, min(n, max_bins or n) + 1):
        active = active[settled[active] >= n_bins]  # beyond its settling b a resample's bins no longer change
        if not len(active):
            break
        bin_counts, conf_sum, hit_sum = equal_mass_sums(cumulative, keys, active, n_bins)
        filled = bin_counts > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_confidence, mean_accuracy = conf_sum / bin_counts, hit_sum / bin_counts
        # Non-decreasing over the filled bins <=> no filled bin below the running maximum of those before it.
        running = np.maximum.accumulate(np.where(filled, mean_accuracy, -np.inf), axis=1)
        monotone = ~np.any(filled[:, 1:] & (mean_accuracy[:, 1:] < running[:, :-1]), axis=1)
        active = active[monotone]
        if not len(active):
            break
        best[active] = expected_gap(bin_counts[monotone], mean_confidence[monotone], mean_accuracy[monotone])
    return best


def ece_sweep(probs: np.ndarray, labels: np.ndarray, max_bins: int | None = None) -> float:
    """Equal-mass ECE at b*, the largest b <= max_bins (default n) with monotone bin accuracies for 1..b.

    ECE_b = sum_m (n_m / n) |ā_m - c̄_m| over b equal-mass bins (Roelofs et al. 2022, ECE_EM_SWEEP).
    """
    probs, labels = check_probs(probs, labels)
    if max_bins is not None:
        check_n_bins(max_bins)
    return float(sweep_from_sums(*Statistics(probs, labels, 1).ranked, max_bins)[0])


def _grid_size(sigma: float) -> int:
    """Points of relplot's grid over [0, 1] for the discrete convolution at bandwidth sigma."""
    return max(2000, round(20 / sigma)) // 2 + 1


def _grid_masses(confidence: np.ndarray, residual: np.ndarray, counts: np.ndarray, grid: int) -> np.ndarray:
    """Masses (2, B, grid) of 1 and of c - a, each sample split linearly between its two grid neighbours and
    weighted by its count in each resample: a weighted histogram per resample, as one sparse product."""
    position = confidence * (grid - 1)
    left = np.clip(position.astype(int), 0, grid - 2)
    frac = position - left
    n = len(confidence)
    split = sparse.csr_array(
        (np.concatenate([1 - frac, frac]), (np.tile(np.arange(n), 2), np.concatenate([left, left + 1]))),
        shape=(n, grid),
    )
    return np.stack([counts @ split, (counts * residual) @ split])


def _reflected_spectra(masses: np.ndarray) -> np.ndarray:
    """FFT (2, B, N // 2 + 1) of the part of the masses, reflected at 0 and 1 (relplot), that the smoothed grid
    reads: for any σ, the grid values are one product with the kernel's FFT and one inverse FFT of these."""
    grid = masses.shape[-1]
    extended = np.concatenate([masses[..., :0:-1], masses, masses[..., -2::-1]], axis=-1)
    # np.convolve(extended, kernel, "valid")[grid // 2 :][:grid] reads only these 2 grid - 1 values; a circular
    # convolution of length >= 2 grid - 1 leaves its valid part (grid values from index grid - 1) unaliased.
    return fft.rfft(extended[..., grid // 2 : grid // 2 + 2 * grid - 1], _fft_size(grid), axis=-1)


def _fft_size(grid: int) -> int:
    return fft.next_fast_len(2 * grid - 1, real=True)


def _smooth_on_mesh(spectra: np.ndarray, grid: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """(ŝ, δ) on the mesh of sigma from the `_reflected_spectra` (2, R, .) of grid masses: the reflected masses
    convolved with the Gaussian sampled on the grid, read at the mesh by linear interpolation (relplot), δ plus
    relplot's density offset."""
    kernel_t = np.linspace(0, 1, grid)
    kernel = np.exp(-((kernel_t - 0.5) ** 2) / (2 * sigma**2)) / (np.sqrt(2 * np.pi) * sigma)
    size = _fft_size(grid)
    smoothed = fft.irfft(spectra * fft.rfft(kernel, size), size, axis=-1)[..., grid - 1 : 2 * grid - 1]
    t = np.linspace(0, 1, max(round(10 / sigma), SMOOTH_MESH))
    index = np.clip((t * (grid - 1)).astype(int), 0, grid - 2)
    weight = (t - index / (grid - 1)) * (grid - 1)
    at_mesh = smoothed[..., index] * (1 - weight) + smoothed[..., index + 1] * weight
    density = at_mesh[0] + SMOOTH_DENSITY_EPS
    return at_mesh[1] / density, density


class _SmoothResamples:
    """smECE_σ of the resamples (rows of counts), each row at its own σ: rows sharing a σ are smoothed together,
    the spectra of the grid masses computed once per grid size."""

    def __init__(self, confidence: np.ndarray, correct: np.ndarray, counts: np.ndarray) -> None:
        self.confidence, self.residual, self.counts = confidence, confidence - correct, counts
        self.spectra: dict[int, np.ndarray] = {}

    def mesh_values(self, rows: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
        """(ŝ, δ) of the resamples `rows` on the mesh of sigma."""
        grid = _grid_size(sigma)
        if grid not in self.spectra:
            self.spectra[grid] = _reflected_spectra(_grid_masses(self.confidence, self.residual, self.counts, grid))
        return _smooth_on_mesh(self.spectra[grid][:, rows], grid, sigma)

    def __call__(self, rows: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
        out = np.empty(len(rows))
        for sigma in np.unique(sigmas):
            same = sigmas == sigma
            residual, density = self.mesh_values(rows[same], sigma)
            out[same] = np.sum(np.abs(residual) * density, axis=-1) / np.sum(density, axis=-1)
        return out


def smooth_fixed_point(
    confidence: np.ndarray, correct: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(σ*, smECE_σ*) of each resample (rows of counts): σ* = 1 if smECE_1 > 1, else the upper end of relplot's
    10-step bisection on [0, 1] for σ = smECE_σ, run for every resample at once (one σ per row and step)."""
    smooth = _SmoothResamples(confidence, correct, counts)
    rows = np.arange(len(counts))
    high, low = np.ones(len(rows)), np.zeros(len(rows))
    value = smooth(rows, high)
    searching = value <= 1.0
    for _ in range(SMOOTH_BISECTION_STEPS):
        middle = (high + low) / 2
        tiny = searching & (middle < SMOOTH_MIN_SIGMA)  # below the floor: counts as σ < smECE_σ, not computed
        low[tiny] = middle[tiny]
        evaluated = rows[searching & ~tiny]
        at_middle = smooth(evaluated, middle[evaluated])
        below = at_middle > middle[evaluated]
        low[evaluated[below]] = middle[evaluated[below]]
        high[evaluated[~below]] = middle[evaluated[~below]]
        value[evaluated[~below]] = at_middle[~below]
    return high, value


def resampled_smooth_ece(
    confidence: np.ndarray, correct: np.ndarray, counts: np.ndarray, sigma: float | None = None
) -> np.ndarray:
    """`smooth_ece` of each resample given by the rows of counts (B, n), at σ or (default) at each one's σ*."""
    if sigma is None:
        return smooth_fixed_point(confidence, correct, counts)[1]
    rows = np.arange(len(counts))
    return _SmoothResamples(confidence, correct, counts)(rows, np.full(len(rows), sigma))


def smooth_reliability(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(t, accuracy, density, σ*): the kernel-smoothed accuracy t - ŝ(t) on the mesh t at σ* and the smoothed
    density δ(t) of the confidences, the curve smooth ECE integrates (relplot's reliability diagram)."""
    probs, labels = check_probs(probs, labels)
    confidence, correct = top_label(probs, labels)
    counts = np.ones((1, len(confidence)))
    sigma = float(smooth_fixed_point(confidence, correct, counts)[0][0])
    residual, density = _SmoothResamples(confidence, correct, counts).mesh_values(np.arange(1), sigma)
    t = np.linspace(0, 1, residual.shape[-1])
    return t, t - residual[0], density[0], sigma


def smooth_ece(probs: np.ndarray, labels: np.ndarray, sigma: float | None = None) -> float:
    """Top-label smooth ECE: ∫ |ŝ_σ| δ_σ / ∫ δ_σ at σ (default σ*, the fixed point σ = smECE_σ).

    Błasiok & Nakkiran 2024; equals `relplot.smECE(c, a)` (or `relplot.smECE_sigma(c, a, sigma)`) on the
    top-label confidences c and correctness a. A binary p is read as [1 - p, p] as everywhere here.
    """
    probs, labels = check_probs(probs, labels)
    if sigma is not None and not 0 < sigma <= 1:
        raise ValueError(f"sigma must lie in (0, 1], got {sigma!r}")
    confidence, correct = top_label(probs, labels)
    return float(resampled_smooth_ece(confidence, correct, np.ones((1, len(confidence))), sigma)[0])


# The estimators as functions of the summary statistics (`xent_lab.calibration.statistics`), (B,) each;
# `xent_lab.calibration.metrics.METRICS` registers them beside the binned metrics.
ESTIMATORS = {
    "debiased_ece": _debiased,
    "ece_sweep": lambda stats: sweep_from_sums(*stats.ranked),
    "smooth_ece": lambda stats: smooth_fixed_point(stats.confidence, stats.correct, stats.weights)[1],
}


def estimator_metrics(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> dict[str, float]:
    """The estimators of this module: keys "debiased_ece", "ece_sweep", "smooth_ece"."""
    check_n_bins(n_bins)
    stats = Statistics(*check_probs(probs, labels), n_bins)
    return {name: float(value(stats)[0]) for name, value in ESTIMATORS.items()}
