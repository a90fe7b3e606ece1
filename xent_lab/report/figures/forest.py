"""Forest plot: each row's difference against its baseline, its seed interval and its combined interval side by
side, one panel per dataset or evaluation and metric, a zero line in each.

Drawn from plain rows (`ForestRow`): the report computes the differences and both intervals, this draws them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from xent_lab.report.figures.layout import grid, legend, panel_title, row_label, title
from xent_lab.report.findings import Comparison
from xent_lab.report.load import KEEP_KEY

SEED_STYLE = {"color": "tab:blue", "marker": "o", "label": "seeds (Student t, 95%)"}
COMBINED_STYLE = {"color": "tab:red", "marker": "s", "label": "seeds and test set combined (95%)"}
OFFSET = 0.17  # vertical distance of each interval from its row's line
ROW_INCHES = 0.32
# The metrics the forest draws, of the report's comparisons: the proper scores and calibration before and after scaling.
METRICS = ("NLL", "debiased ECE", "ECE after temperature scaling")


class ForestRow(NamedTuple):
    """One row of the forest plot: the mean difference (row - baseline) of `metric` and its intervals."""

    panel: str  # the dataset or the dataset and evaluation, e.g. `imdb: last epoch`
    label: str  # the row as the tables label it
    metric: str  # e.g. `ECE`
    difference: float
    seed_interval: tuple[float, float]
    combined_interval: tuple[float, float] | None  # None: not computed for this row (drawn without it)


def forest_rows(comparisons: Sequence[Comparison]) -> list[ForestRow]:
    """The forest's rows from the report's comparisons (each row against its baseline) of METRICS, one panel per
    dataset and evaluation; a row whose difference could not be computed is left out."""
    chosen = [
        c
        for c in comparisons
        if c.compared.label in METRICS and math.isfinite(c.primary.mean) and math.isfinite(c.seeds.low)
    ]
    impls = {c.row.impl for c in chosen}
    rows = []
    for c in chosen:
        rows.append(
            ForestRow(
                panel_title(c.row.dataset, c.row.jobs[0].overrides.get(KEEP_KEY)),
                row_label(c.row.variant, c.row.impl, impls),
                c.compared.label,
                c.primary.mean,
                (c.seeds.low, c.seeds.high),
                (c.primary.low, c.primary.high) if math.isfinite(c.primary.low) else None,
            )
        )
    return rows


def _errorbar(ax, rows: Sequence[ForestRow], y: np.ndarray, intervals: list, style: dict) -> None:
    drawn = [(yi, row.difference, iv) for yi, row, iv in zip(y, rows, intervals) if iv is not None]
    if not drawn:
        return
    ys, means, bounds = zip(*drawn)
    means, bounds = np.array(means), np.array(bounds, dtype=float)
    # A bound the data could not give (NaN, e.g. one seed) draws no whisker on that side.
    xerr = np.nan_to_num(np.vstack([means - bounds[:, 0], bounds[:, 1] - means]), nan=0.0)
    ax.errorbar(
        means,
        ys,
        xerr=np.abs(xerr),
        fmt=style["marker"],
        color=style["color"],
        label=style["label"],
        markersize=4,
        capsize=2.5,
        linewidth=1.2,
    )


def forest_figure(rows: Sequence[ForestRow]) -> Figure | None:
    """One panel per (panel, metric) in the order of `rows`, the panels of a dataset or evaluation on one line of
    the grid and its metrics across; in each, one line per row, top to bottom in the given order: the seed
    interval above, the combined one below, a vertical line at 0. None when there are no rows."""
    if not rows:
        return None
    panels = list(dict.fromkeys(row.panel for row in rows))
    metrics = list(dict.fromkeys(row.metric for row in rows))
    cells = [(panel, metric) for panel in panels for metric in metrics]
    cells = [cell for cell in cells if any((row.panel, row.metric) == cell for row in rows)]
    most_rows = max(sum(1 for row in rows if (row.panel, row.metric) == cell) for cell in cells)
    longest = max(len(row.label) for row in rows)
    width = 3.6 + 0.068 * longest  # the labels take about 0.068 in a character; the axis about 3.6 in
    figure, axes = grid(len(cells), (width, 1.1 + ROW_INCHES * most_rows), n_cols=len(metrics))
    for ax, (panel, metric) in zip(axes, cells):
        cell_rows = [row for row in rows if (row.panel, row.metric) == (panel, metric)]
        y = np.arange(len(cell_rows))[::-1].astype(float)
        _errorbar(ax, cell_rows, y + OFFSET, [row.seed_interval for row in cell_rows], SEED_STYLE)
        _errorbar(ax, cell_rows, y - OFFSET, [row.combined_interval for row in cell_rows], COMBINED_STYLE)
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_yticks(y, [row.label for row in cell_rows], fontsize=8)
        ax.set_ylim(-0.6, len(cell_rows) - 0.4)
        ax.set_title(f"{panel}\n{metric}", fontsize=10)
        ax.set_xlabel(f"Δ {metric} (row − baseline)", fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))  # long tick labels of small differences: fewer of them
        ax.grid(axis="x", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    seen = dict(zip(labels, handles))
    for ax in axes[1:]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    legend(figure, list(seen.values()), list(seen))
    title(figure, "Difference against the baseline: mean over seeds with two 95% intervals")
    return figure
