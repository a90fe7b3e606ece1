"""Reliability diagrams, on matplotlib.figure.Figure: no pyplot state and no display are needed."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from xent_lab.calibration.binning import ReliabilityBins, reliability_bins


def draw_reliability(axes: Axes, bins: ReliabilityBins) -> None:
    """Onto `axes`: one accuracy bar and one hatched "gap" bar (from accuracy to mean confidence) per
    non-empty bin, and the diagonal of perfect calibration, on [0, 1] x [0, 1]."""
    centers = (bins.edges[:-1] + bins.edges[1:]) / 2
    widths = np.diff(bins.edges)
    filled = bins.counts > 0
    axes.bar(
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
    axes.plot([0, 1], [0, 1], linestyle="--", color="gray", label="Perfect calibration")
    axes.set(xlim=(0, 1), ylim=(0, 1), ylabel="Accuracy")
    axes.legend(loc="upper left")


def reliability_diagram(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15, title: str = "") -> Figure:
    """Accuracy per confidence bin (bars) with the gap to the diagonal, over a confidence histogram.

    Top panel: `draw_reliability`; the title ends with the ECE. Bottom panel: samples per bin (all
    n_bins bars).
    """
    bins = reliability_bins(probs, labels, n_bins)
    figure = Figure(figsize=(5, 6.5), layout="constrained")
    axes, histogram = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1)})
    draw_reliability(axes, bins)
    axes.set_title(f"{title}\nECE = {bins.ece:.4f}" if title else f"ECE = {bins.ece:.4f}")

    histogram.bar(
        (bins.edges[:-1] + bins.edges[1:]) / 2, bins.counts, np.diff(bins.edges), color="tab:gray", edgecolor="black"
    )
    histogram.set(xlabel="Confidence", ylabel="Count")
    return figure
