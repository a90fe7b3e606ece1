"""Validation NLL per epoch, the same metric for every loss (`val/nll`, logged each epoch by the calibration
callback; a loss's own `val/loss` is not comparable across losses): one panel per dataset, one curve per
training, mean over seeds with the band from min to max, each seed's kept epoch marked.

Epochs are counted from 1, as the report's tables count them (the logged steps count from 0).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from mlflow.tracking import MlflowClient

from xent_lab.report.figures.layout import PANEL_KEYS, colors, grid, legend, short, title
from xent_lab.report.load import CUSTOM, Job
from xent_lab.tracking import tags

VAL_NLL = tags.val_metric("nll")


class Curve(NamedTuple):
    """One training's validation NLL over its seeds."""

    panel: str  # e.g. `imdb`
    label: str  # e.g. `focal_flsd53`
    histories: Sequence[Mapping[int, float]]  # per seed: step (from 0) -> value
    kept_epochs: Sequence[int | None]  # per seed, as `histories`: the step whose weights it kept (None: not logged)


def _mean_band(histories: Sequence[Mapping[int, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Steps, and per step the mean, min and max over the seeds that reached it (early stopping ends some
    seeds sooner)."""
    steps = sorted(set().union(*histories))
    values = [[history[step] for history in histories if step in history] for step in steps]
    return (
        np.array(steps),
        np.array([np.mean(v) for v in values]),
        np.array([min(v) for v in values]),
        np.array([max(v) for v in values]),
    )


def val_nll_figure(curves: Sequence[Curve], note: str = "") -> Figure | None:
    """One panel per distinct `Curve.panel` (in order), one line per curve with its min–max band, a dot at each
    seed's kept epoch on that seed's own value; one legend for the figure (a label keeps its colour across the
    panels). `note` goes under the panels. None when no curve has a point."""
    curves = [curve for curve in curves if any(curve.histories)]
    if not curves:
        return None
    panels = list(dict.fromkeys(curve.panel for curve in curves))
    color = colors([curve.label for curve in curves])
    figure, axes = grid(len(panels), (5.0, 3.6), n_cols=2)
    for ax, panel in zip(axes, panels):
        for curve in (curve for curve in curves if curve.panel == panel):
            seeds = [(history, kept) for history, kept in zip(curve.histories, curve.kept_epochs) if history]
            histories = [history for history, _ in seeds]
            steps, mean, low, high = _mean_band(histories)
            style = {"color": color[curve.label]}
            ax.plot(steps + 1, mean, label=f"{curve.label} (n={len(histories)})", linewidth=1.5, **style)
            ax.fill_between(steps + 1, low, high, alpha=0.15, linewidth=0, **style)
            kept = [(step + 1, history[step]) for history, step in seeds if step in history]
            if kept:
                ax.scatter(*zip(*kept), s=22, edgecolors="black", linewidths=0.6, zorder=3, **style)
        ax.set_title(panel, fontsize=11)
        ax.set(xlabel="epoch", ylabel="validation NLL")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    labels = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            labels.setdefault(label.rsplit(" (n=", 1)[0], handle)
    legend(figure, list(labels.values()), list(labels), note)
    title(figure, "Validation NLL per epoch: mean over seeds, band min–max, dots at each seed's kept epoch")
    return figure


def _split(variant: str) -> tuple[list[str], list[str]]:
    """A variant's parts that name the panel (not the dataset's: it is the panel's title) and the line."""
    parts = [part for part in variant.split(", ") if part.split("=", 1)[0] not in PANEL_KEYS]
    line = [part for part in parts if part.split("=", 1)[0].startswith("loss")]
    facet = [part for part in parts if part not in line]
    return facet, line


def _same(a: Sequence[Mapping[int, float]], b: Sequence[Mapping[int, float]]) -> bool:
    return len(a) == len(b) and all(
        x.keys() == y.keys() and np.allclose([x[k] for k in x], [y[k] for k in x], rtol=1e-6, atol=1e-9)
        for x, y in zip(a, b)
    )


def val_nll_curves(client: MlflowClient, jobs: Iterable[Job]) -> tuple[list[Curve], str]:
    """One curve per training of the launch's finished runs (each run once, whatever its evaluations), a panel
    per dataset and per value of the swept keys that are not the loss's. An implementation other than the custom
    one whose curves equal the custom's, seed for seed, is not drawn (said in the returned note)."""
    runs: dict[tuple[str, str, str], list[Job]] = {}
    for job in sorted((job for job in jobs if job.finished), key=lambda job: (job.dataset, job.variant, job.seed)):
        facet, line = _split(job.variant)
        panel = f"{job.dataset}: {short(facet)}" if facet else job.dataset
        runs.setdefault((panel, short(line) or job.tags.get(tags.LOSS, "?"), job.impl), []).append(job)
    histories = {
        key: [{m.step: m.value for m in client.get_metric_history(job.run_id, VAL_NLL)} for job in group]
        for key, group in runs.items()
    }
    twins = {
        key
        for key in histories
        if key[2] != CUSTOM and (custom := histories.get((key[0], key[1], CUSTOM))) and _same(histories[key], custom)
    }
    # Implementations named where more than one is drawn anywhere in the figure, so a label keeps its colour.
    several = len({impl for (_, _, impl) in histories.keys() - twins}) > 1
    curves = []
    for key, group in runs.items():
        if key in twins:
            continue
        panel, line, impl = key
        kept = [None if (k := job.run.data.metrics.get(tags.KEPT_EPOCH)) is None else int(k) for job in group]
        curves.append(Curve(panel, f"{line} [{impl}]" if several else line, histories[key], kept))
    dropped = ", ".join(sorted({impl for _, _, impl in twins}))
    note = f"Not drawn: {len(twins)} curves ({dropped}) identical to the custom one, seed for seed" if twins else ""
    return curves, note
