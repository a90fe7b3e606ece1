"""Reliability: a few losses' reliability curves overlaid per dataset and evaluation, over the share of samples
in each confidence bin.

Each curve is the top-label accuracy against the mean confidence of the equal-width bins of the logged ECE,
test predictions pooled over seeds, with a 95% Wilson interval per bin; a bin of fewer than `MIN_COUNT` samples
is not drawn (its accuracy is noise), and the caption says so. On a binary task the top-label confidence is at
least 0.5: the axes start there.
"""

from __future__ import annotations

import math
import tempfile
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter
from mlflow.tracking import MlflowClient

from xent_lab import calibration, heads
from xent_lab.report.figures.layout import N_COLS, colors, markers, panel_title, row_label
from xent_lab.report.findings import Row, auto_baseline
from xent_lab.report.load import CUSTOM, Groups, Job, job_predictions
from xent_lab.report.stats import finished_values
from xent_lab.tracking import tags

DEFAULT_N_BINS = 15
MIN_COUNT = 20  # samples a bin needs to be drawn
LABEL_CHARS = 60  # a legend line, wrapped to the panel's width
Z_95 = 1.959963984540054


class ReliabilityCurve(NamedTuple):
    """One row's test predictions in one panel, pooled over its seeds."""

    panel: str  # e.g. `imdb: last epoch`
    label: str  # the row, e.g. `focal_flsd53`
    probs: np.ndarray  # (n, k) class probabilities
    labels: np.ndarray  # (n,) integer labels


def wilson_interval(hits: np.ndarray, counts: np.ndarray, z: float = Z_95) -> tuple[np.ndarray, np.ndarray]:
    """The Wilson score interval of a binomial proportion hits/counts: centre (p + z²/2n) / (1 + z²/n),
    half-width z sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n); it stays inside [0, 1] where p is 0 or 1."""
    counts = np.asarray(counts, dtype=float)
    p = np.asarray(hits, dtype=float) / counts
    denominator = 1 + z**2 / counts
    centre = (p + z**2 / (2 * counts)) / denominator
    half = z * np.sqrt(p * (1 - p) / counts + z**2 / (4 * counts**2)) / denominator
    return centre - half, centre + half


def reliability_figure(
    curves: Sequence[ReliabilityCurve], n_bins: int = DEFAULT_N_BINS, min_count: int = MIN_COUNT
) -> Figure | None:
    """One panel per distinct `ReliabilityCurve.panel` (in order): on top the curves overlaid with the diagonal,
    under it the share of each curve's samples per bin (log scale); a label keeps its colour and marker across
    panels. None when there is no curve."""
    if not curves:
        return None
    panels = list(dict.fromkeys(curve.panel for curve in curves))
    color, marker = colors([c.label for c in curves]), markers([c.label for c in curves])
    n_cols = 2 if len(panels) == 4 else min(N_COLS, len(panels))  # two datasets by two evaluations: a square
    n_rows = math.ceil(len(panels) / n_cols)
    figure = Figure(figsize=(max(6.0, 4.6 * n_cols), 5.6 * n_rows), layout="constrained")
    spec = figure.add_gridspec(2 * n_rows, n_cols, height_ratios=[3, 1] * n_rows)
    for i, panel in enumerate(panels):
        row, col = divmod(i, n_cols)
        top = figure.add_subplot(spec[2 * row, col])
        bottom = figure.add_subplot(spec[2 * row + 1, col], sharex=top)
        low_x = 0.0
        lowest = 1.0
        for curve in (curve for curve in curves if curve.panel == panel):
            binary = curve.probs.shape[1] == 2
            low_x = 0.5 if binary else 0.0
            bins = calibration.reliability_bins(curve.probs, curve.labels, n_bins)
            shown = bins.counts >= min_count
            style = {"color": color[curve.label]}
            if shown.any():
                counts = bins.counts[shown]
                accuracy = bins.accuracy[shown]
                low, high = wilson_interval(np.rint(accuracy * counts), counts)
                top.errorbar(
                    bins.confidence[shown],
                    accuracy,
                    # Clipped at 0: float rounding at accuracy 0 or 1 can leave -1e-16.
                    yerr=np.maximum(np.vstack([accuracy - low, high - accuracy]), 0.0),
                    marker=marker[curve.label],
                    markersize=4,
                    capsize=2,
                    linewidth=1.2,
                    label=textwrap.fill(f"{curve.label} (ECE {bins.ece:.3f}, n={len(curve.labels)})", LABEL_CHARS),
                    **style,
                )
                lowest = min(lowest, float(low.min()))
            bottom.stairs(bins.counts / bins.counts.sum(), bins.edges, linewidth=1.3, **style)
        top.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=1, label="perfect calibration")
        bottom_y = min(low_x, math.floor(lowest * 10) / 10)
        top.set(xlim=(low_x, 1.0), ylim=(bottom_y, 1.02), ylabel="accuracy")
        top.set_title(panel, fontsize=11)
        top.tick_params(labelbottom=False)
        top.grid(alpha=0.3)
        # Under the histogram, off the curves.
        bottom.legend(*top.get_legend_handles_labels(), loc="upper center", bbox_to_anchor=(0.5, -0.45), fontsize=7)
        bottom.set_yscale("log")
        bottom.yaxis.set_minor_formatter(NullFormatter())
        bottom.set(xlabel="top-label confidence", ylabel="share")
        bottom.grid(alpha=0.3)
    figure.suptitle(
        f"Test reliability, pooled over seeds\n{n_bins} bins, 95% Wilson intervals, "
        f"bins of under {min_count} samples not drawn"
    )
    return figure


def n_bins_of(jobs: Iterable[Job]) -> int:
    """The jobs' `calibration.n_bins`, so the diagrams bin like the logged ECE."""
    for job in jobs:
        value = job.params.get("calibration.n_bins")
        if value is not None and value.isdigit():
            return int(value)
    return DEFAULT_N_BINS


def _mean_ece(jobs: Sequence[Job]) -> float:
    values = finished_values(jobs, tags.TEST_ECE)
    return float(np.mean(values)) if values else math.nan


Panels = dict[str, dict[str, Row]]  # panel -> row label -> its row (the custom implementation where present)


def _panels(groups: Groups) -> Panels:
    panels: Panels = {}
    for dataset, variants in groups.items():
        for variant, by_impl in variants.items():
            impl = CUSTOM if CUSTOM in by_impl else next(iter(by_impl))
            panel = panel_title(dataset, by_impl[impl][0].keep)
            panels.setdefault(panel, {})[row_label(variant, impl)] = Row(dataset, variant, impl, tuple(by_impl[impl]))
    return panels


def chosen_rows(panels: Panels, sweep: Mapping[str, str]) -> list[str]:
    """The rows drawn in every panel by default: the baseline (`auto_baseline` of the first panel) and the rows of
    lowest and highest test ECE (mean over seeds, then over the panels where the row is)."""
    eces: dict[str, list[float]] = {}
    for rows in panels.values():
        for label, row in rows.items():
            if not math.isnan(ece := _mean_ece(row.jobs)):
                eces.setdefault(label, []).append(ece)
    if not eces:
        return []
    first = [row for label, row in next(iter(panels.values())).items() if label in eces]
    baseline = row_label(auto_baseline(first, sweep).variant, CUSTOM) if first else next(iter(eces))
    others = sorted((label for label in eces if label != baseline), key=lambda label: np.mean(eces[label]))
    return [baseline, *others[:1], *others[1:][-1:]]


def _pooled(client: MlflowClient, jobs: Iterable[Job], tmp: Path) -> tuple[np.ndarray, np.ndarray] | None:
    probs, labels = [], []
    for job in jobs:
        predictions = job_predictions(client, job, tmp)
        if predictions is not None:
            probs.append(heads.probabilities(predictions.logits, predictions.head))
            labels.append(predictions.labels)
    return (np.concatenate(probs), np.concatenate(labels)) if probs else None


def reliability_curves(
    client: MlflowClient, groups: Groups, sweep: Mapping[str, str], chosen: Sequence[str] | None = None
) -> list[ReliabilityCurve]:
    """The curves of the `chosen` rows (their `row_label`s; default `chosen_rows`) per dataset and evaluation, from
    the test predictions the runs logged, the custom implementation's where a row has it. `sweep`: the launch's."""
    panels = _panels(groups)
    labels = chosen_rows(panels, sweep) if chosen is None else chosen
    curves = []
    with tempfile.TemporaryDirectory(prefix="xent-report-") as tmp:
        for panel, rows in panels.items():
            for label in (label for label in labels if label in rows):
                pooled = _pooled(client, rows[label].jobs, Path(tmp))
                if pooled is not None:
                    curves.append(ReliabilityCurve(panel, label, *pooled))
    return curves
