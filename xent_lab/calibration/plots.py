"""Reliability diagrams, on matplotlib.figure.Figure: no pyplot state and no display are needed.

The binned view (Guo et al. 2017) is read with its uncertainty: each bar carries its sample count and a 95%
bootstrap band on its accuracy (`bin_accuracy_band`), and the smooth reliability curve of Błasiok & Nakkiran
(2024), the kernel-smoothed accuracy t - ŝ(t) at σ* that smooth ECE integrates (`smooth_reliability`), is drawn on
the same axes, as relplot draws it.
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from xent_lab.calibration.bootstrap import bin_accuracy_band
from xent_lab.calibration.estimators import smooth_reliability
from xent_lab.calibration.metrics import ReliabilityBins, reliability_bins

BAND_RESAMPLES = 1000  # bootstrap resamples of the per-bin accuracy band (seeded)


def draw_reliability(axes: Axes, bins: ReliabilityBins, band: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    """Onto `axes`: one accuracy bar with its sample count above it and one hatched "gap" bar (from accuracy to
    mean confidence) per non-empty bin, the band (low, high) per bin as error bars when given, and the diagonal
    of perfect calibration, on [0, 1] x [0, 1]; then the legend of everything on the axes."""
    centers = (bins.edges[:-1] + bins.edges[1:]) / 2
    widths = np.diff(bins.edges)
    filled = bins.counts > 0
    accuracy_bars = axes.bar(
        centers[filled], bins.accuracy[filled], widths[filled], color="tab:blue", edgecolor="black", label="Accuracy"
    )
    axes.bar(
        centers[filled],
        (bins.confidence - bins.accuracy)[filled],
        widths[filled],
        bottom=bins.accuracy[filled],
        color="tab:red",
        alpha=0.3,
        hatch="//",
        edgecolor="tab:red",
        label="Gap",
    )
    axes.bar_label(accuracy_bars, labels=[str(c) for c in bins.counts[filled]], fontsize=6, padding=1)
    if band is not None:
        low, high = band[0][filled], band[1][filled]
        accuracy = bins.accuracy[filled]
        axes.errorbar(
            centers[filled],
            accuracy,
            yerr=np.vstack([accuracy - low, high - accuracy]),
            fmt="none",
            ecolor="black",
            capsize=2,
            linewidth=1,
            label="95% bootstrap band",
        )
    axes.plot([0, 1], [0, 1], linestyle="--", color="gray", label="Perfect calibration")
    axes.set(xlim=(0, 1), ylim=(0, 1.05), ylabel="Accuracy")
    axes.legend(loc="upper left", fontsize=7)


def draw_smooth(axes: Axes, probs: np.ndarray, labels: np.ndarray, label: str | None = None, **style) -> None:
    """Onto `axes`: the smooth reliability curve of (probs, labels); the label defaults to its σ*."""
    t, accuracy, _, sigma = smooth_reliability(probs, labels)
    axes.plot(t, accuracy, label=label or f"Smooth (σ*={sigma:.3f})", **style)


def reliability_diagram(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = 15, title: str = "", seed: int = 0
) -> Figure:
    """Accuracy per confidence bin (bars, with counts and a 95% bootstrap band, seeded by `seed`) with the gap to
    the diagonal and the smooth reliability curve, over a confidence histogram.

    Top panel: `draw_reliability` and `draw_smooth`; the title ends with the ECE. Bottom panel: samples per bin
    (all n_bins bars).
    """
    bins = reliability_bins(probs, labels, n_bins)
    band = bin_accuracy_band(probs, labels, n_bins, BAND_RESAMPLES, seed)
    figure = Figure(figsize=(5, 6.5), layout="constrained")
    axes, histogram = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1)})
    draw_smooth(axes, probs, labels, color="tab:green", linewidth=2, zorder=3)
    draw_reliability(axes, bins, band)
    axes.set_title(f"{title}\nECE = {bins.ece:.4f}" if title else f"ECE = {bins.ece:.4f}")

    histogram.bar(
        (bins.edges[:-1] + bins.edges[1:]) / 2, bins.counts, np.diff(bins.edges), color="tab:gray", edgecolor="black"
    )
    histogram.set(xlabel="Confidence", ylabel="Count")
    return figure
