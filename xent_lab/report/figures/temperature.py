"""The fitted temperature T (`test/temperature`) against the focal γ of the focal family, cross-entropy at γ = 0
and the sample-dependent FLSD-53 to the right of the fixed γ: one panel per dataset, one series per evaluation
(and per value of any other swept key), each seed a small point and the mean over seeds a line.

T > 1: the model was over-confident (scaling softens it); T < 1: under-confident.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from matplotlib.figure import Figure

from xent_lab.report.figures.layout import EVALUATION_NAMES, PANEL_KEYS, colors, grid, markers, short, title
from xent_lab.report.load import CUSTOM, Groups
from xent_lab.tracking import tags

CE_LOSS, FOCAL_LOSS = "cce", "focal"  # values of the `loss` tag
ADAPTIVE = "flsd53"  # the non-numeric `loss.gamma`
ADAPTIVE_LABEL = "FLSD-53"
JITTER = 0.06  # horizontal spread of the seeds' points, in γ units


class TemperaturePoint(NamedTuple):
    """One run's fitted temperature."""

    panel: str  # e.g. `imdb`
    series: str  # e.g. `last epoch`
    gamma: float | str  # 0 for cross-entropy; `flsd53` for the sample-dependent γ
    temperature: float


def _x(gamma: float | str, adaptive_at: float) -> float:
    return adaptive_at if gamma == ADAPTIVE else float(gamma)


def temperature_figure(points: Sequence[TemperaturePoint]) -> Figure | None:
    """One panel per distinct `TemperaturePoint.panel` (in order); per series, the seeds as points and the mean
    over seeds per γ joined by a line over the fixed γ, a marker alone at FLSD-53; a dashed line at T = 1.
    None when no panel has two γ values."""
    points = [p for p in points if math.isfinite(p.temperature)]
    panels = [
        panel
        for panel in dict.fromkeys(p.panel for p in points)
        if len({q.gamma for q in points if q.panel == panel}) > 1
    ]
    if not panels:
        return None
    fixed = sorted({float(p.gamma) for p in points if p.gamma != ADAPTIVE})
    adaptive_at = (fixed[-1] if fixed else 0.0) + 1.0
    series_names = list(dict.fromkeys(p.series for p in points))
    color, marker = colors(series_names), markers(series_names)
    offsets = {s: (i - (len(series_names) - 1) / 2) * JITTER for i, s in enumerate(series_names)}
    figure, axes = grid(len(panels), (4.8, 3.6), n_cols=2)
    for ax, panel in zip(axes, panels):
        for series in series_names:
            mine = [p for p in points if p.panel == panel and p.series == series]
            if not mine:
                continue
            style = {"color": color[series]}
            xs = np.array([_x(p.gamma, adaptive_at) for p in mine]) + offsets[series]
            ax.scatter(xs, [p.temperature for p in mine], s=12, alpha=0.5, marker=marker[series], **style)
            gammas = sorted({p.gamma for p in mine}, key=lambda g: _x(g, adaptive_at))
            means = [float(np.mean([p.temperature for p in mine if p.gamma == g])) for g in gammas]
            line = [(_x(g, adaptive_at) + offsets[series], m) for g, m in zip(gammas, means) if g != ADAPTIVE]
            if line:
                ax.plot(*zip(*line), marker=marker[series], markersize=6, label=f"{series}: mean", **style)
            ends = [(_x(g, adaptive_at) + offsets[series], m) for g, m in zip(gammas, means) if g == ADAPTIVE]
            if ends:
                ax.plot(*zip(*ends), marker=marker[series], markersize=6, linestyle="none", **style)
        ax.axhline(1.0, color="gray", linestyle="--", linewidth=1, label="T = 1 (no change)")
        ticks = fixed + ([adaptive_at] if any(p.gamma == ADAPTIVE for p in points) else [])
        if len(ticks) > len(fixed):  # FLSD-53 is not on the γ scale
            ax.axvline(adaptive_at - 0.5, color="lightgray", linestyle=":", linewidth=1)
        names = [f"{g:g}" for g in fixed] + ([ADAPTIVE_LABEL] if len(ticks) > len(fixed) else [])
        ax.set_xticks(ticks, names)
        ax.set(xlabel="focal γ (0 = cross-entropy)", ylabel="fitted temperature T", title=panel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    title(figure, "Fitted temperature against focal γ: seeds as points, mean over seeds as the line")
    return figure


def _gamma(loss: str, gamma: str | None) -> float | str | None:
    if loss == CE_LOSS:
        return 0.0
    if loss != FOCAL_LOSS or gamma is None:
        return None
    if gamma == ADAPTIVE:
        return ADAPTIVE
    try:
        return float(gamma)
    except ValueError:
        return None


def temperature_points(groups: Groups) -> list[TemperaturePoint]:
    """The fitted temperature of each finished custom run of cross-entropy or focal loss (the `loss` tag and the
    `loss.gamma` param), a panel per dataset, a series per evaluation and other swept values."""
    points = []
    for dataset, variants in groups.items():
        for variant, by_impl in variants.items():
            jobs = by_impl.get(CUSTOM) or next(iter(by_impl.values()))
            rest = [
                part
                for part in variant.split(", ")
                if part.split("=", 1)[0] not in (*PANEL_KEYS, "loss") and not part.startswith("loss.gamma=")
            ]
            for job in jobs:
                gamma = _gamma(job.tags.get(tags.LOSS, ""), job.params.get("loss.gamma"))
                temperature = job.metric(tags.TEST_TEMPERATURE)
                if gamma is None or temperature is None or not job.finished:
                    continue
                evaluation = EVALUATION_NAMES.get(job.keep, job.keep) if job.keep else ""
                series = ", ".join(filter(None, [evaluation, short(rest)])) or "all runs"
                points.append(TemperaturePoint(dataset, series, gamma, temperature))
    return points
