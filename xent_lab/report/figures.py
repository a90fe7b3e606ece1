"""The report's figures: validation loss, reliability diagrams pooled over seeds, per-class recall.

Built on matplotlib.figure.Figure and saved through the Agg canvas, so no pyplot state and no
display are involved (the report also runs inside the Hydra process).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from mlflow.tracking import MlflowClient

from xent_lab import atomic, calibration, heads
from xent_lab.report.load import BUILTIN, CUSTOM, Groups, Job, Launch, job_predictions
from xent_lab.report.stats import finished_values
from xent_lab.tracking import tags

DEFAULT_N_BINS = 15
DPI = 100
# Custom solid blue, built-in dashed orange: told apart in colour and in grey print.
IMPL_STYLES = {CUSTOM: {"color": "tab:blue", "linestyle": "-"}, BUILTIN: {"color": "tab:orange", "linestyle": "--"}}
OTHER_STYLE = {"color": "tab:green", "linestyle": ":"}


class Panel(NamedTuple):
    """The axes of one dataset and variant, with its jobs by implementation."""

    ax: Axes
    dataset: str
    variant: str
    by_impl: dict[str, list[Job]]

    @property
    def title(self) -> str:
        return f"{self.dataset}: {self.variant}"


def _grid(n_rows: int, n_cols: int, panel: tuple[float, float]) -> tuple[Figure, np.ndarray]:
    figure = Figure(figsize=(panel[0] * n_cols, panel[1] * n_rows), layout="constrained")
    return figure, figure.subplots(n_rows, n_cols, squeeze=False)


def _panels(groups: Groups, panel: tuple[float, float], n_cols: int = 3) -> tuple[Figure, list[Panel]]:
    """A grid with one panel per dataset and variant (spare axes hidden)."""
    cells = [
        (dataset, variant, by_impl) for dataset, variants in groups.items() for variant, by_impl in variants.items()
    ]
    n_cols = min(n_cols, len(cells))
    figure, axes = _grid(math.ceil(len(cells) / n_cols), n_cols, panel)
    for spare in axes.flat[len(cells) :]:
        spare.set_visible(False)
    return figure, [Panel(ax, *cell) for ax, cell in zip(axes.flat, cells)]


def _impl_style(impl: str) -> dict[str, str]:
    return IMPL_STYLES.get(impl, OTHER_STYLE)


def _histories(client: MlflowClient, jobs: Iterable[Job], metric: str) -> list[dict[int, float]]:
    """step -> value of `metric` for each finished job that logged it."""
    finished = [job for job in jobs if job.finished]
    histories = [{m.step: m.value for m in client.get_metric_history(job.run_id, metric)} for job in finished]
    return [history for history in histories if history]


def val_loss_figure(client: MlflowClient, groups: Groups) -> Figure | None:
    """Validation loss per epoch: mean over seeds with the min–max band, one line per implementation."""
    curves = {
        (dataset, variant, impl): _histories(client, jobs, tags.VAL_LOSS)
        for dataset, variants in groups.items()
        for variant, by_impl in variants.items()
        for impl, jobs in by_impl.items()
    }
    if not any(curves.values()):
        return None
    figure, panels = _panels(groups, (4.5, 3.2))
    for panel in panels:
        for impl in panel.by_impl:
            histories = curves[panel.dataset, panel.variant, impl]
            if not histories:
                continue
            # Seeds may stop at different epochs (early stopping): each step averages the seeds that reached it.
            steps = sorted(set().union(*histories))
            values = [[history[step] for history in histories if step in history] for step in steps]
            style = _impl_style(impl)
            panel.ax.plot(steps, [np.mean(v) for v in values], label=f"{impl} (n={len(histories)})", **style)
            panel.ax.fill_between(
                steps, [min(v) for v in values], [max(v) for v in values], color=style["color"], alpha=0.2
            )
        panel.ax.set(title=panel.title, xlabel="epoch", ylabel="validation loss")
        panel.ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        panel.ax.grid(alpha=0.3)
        if panel.ax.lines:
            panel.ax.legend()
    figure.suptitle("Validation loss: mean over seeds, band from min to max")
    return figure


def _pooled_probabilities(client: MlflowClient, jobs: Iterable[Job], tmp: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """Test probabilities and labels of the finished jobs, concatenated; None when none logged predictions."""
    probs, labels = [], []
    for job in jobs:
        predictions = job_predictions(client, job, tmp)
        if predictions is not None:
            probs.append(heads.probabilities(predictions.logits, predictions.head))
            labels.append(predictions.labels)
    return (np.concatenate(probs), np.concatenate(labels)) if probs else None


def _n_bins(jobs: Iterable[Job]) -> int:
    """The jobs' `calibration.n_bins`, so the diagrams bin like the logged ECE."""
    for job in jobs:
        value = job.params.get("calibration.n_bins")
        if value is not None and value.isdigit():
            return int(value)
    return DEFAULT_N_BINS


def _reliability_panel(ax: Axes, probs: np.ndarray, labels: np.ndarray, n_bins: int, title: str) -> None:
    bins = calibration.reliability_bins(probs, labels, n_bins)
    calibration.draw_reliability(ax, bins)
    ax.set_xlabel("Confidence")
    ax.set_title(f"{title} n={len(labels)}, ECE={bins.ece:.4f}", fontsize=9)


def reliability_figure(client: MlflowClient, groups: Groups, jobs: Sequence[Job]) -> Figure | None:
    """Reliability diagrams pooled over seeds: one row per dataset and variant, one column per implementation."""
    rows = [(dataset, variant) for dataset, variants in groups.items() for variant in variants]
    impls = sorted({impl for variants in groups.values() for by_impl in variants.values() for impl in by_impl})
    n_bins = _n_bins(jobs)
    with tempfile.TemporaryDirectory(prefix="xent-report-") as tmp:
        pooled = {
            (dataset, variant, impl): _pooled_probabilities(client, groups[dataset][variant].get(impl, ()), Path(tmp))
            for dataset, variant in rows
            for impl in impls
        }
    if all(value is None for value in pooled.values()):
        return None
    # A variant's implementations side by side, as many variants per row as fit in about four panels.
    n_cols = len(impls) * max(1, 4 // len(impls))
    figure, axes = _grid(math.ceil(len(pooled) / n_cols), n_cols, (3.6, 3.6))
    for ax in axes.flat[len(pooled) :]:
        ax.set_visible(False)
    for ax, ((dataset, variant, impl), value) in zip(axes.flat, pooled.items()):
        if value is None:
            ax.set_visible(False)
        else:
            _reliability_panel(ax, *value, n_bins, f"{dataset}: {variant}\n[{impl}]")
    figure.suptitle(f"Test reliability, pooled over seeds ({n_bins} bins)")
    return figure


def _recall_classes(jobs: Iterable[Job]) -> list[int]:
    return sorted(
        {
            int(key.removeprefix(tags.TEST_RECALL_PREFIX))
            for job in jobs
            for key in job.metrics
            if key.startswith(tags.TEST_RECALL_PREFIX)
        }
    )


def recall_figure(groups: Groups, jobs: Sequence[Job]) -> Figure | None:
    """Per-class test recall, mean over seeds, one bar per class and implementation."""
    most_classes = len(_recall_classes(job for job in jobs if job.finished))
    if not most_classes:
        return None
    figure, panels = _panels(groups, (max(4.5, 0.45 * most_classes), 3.2))
    for panel in panels:
        # Per panel: datasets differ in their number of classes.
        classes = _recall_classes(job for jobs in panel.by_impl.values() for job in jobs if job.finished)
        positions = np.arange(len(classes))
        width = 0.8 / len(panel.by_impl)
        for i, (impl, impl_jobs) in enumerate(panel.by_impl.items()):
            recalls = [finished_values(impl_jobs, f"{tags.TEST_RECALL_PREFIX}{k}") for k in classes]
            offset = (i - (len(panel.by_impl) - 1) / 2) * width
            panel.ax.bar(
                positions + offset,
                [np.mean(r) if r else np.nan for r in recalls],
                width,
                color=_impl_style(impl)["color"],
                label=impl,
            )
        panel.ax.set_xticks(positions, [str(k) for k in classes])
        # Headroom above recall 1 for the legend.
        panel.ax.set(title=panel.title, xlabel="class", ylabel="recall", ylim=(0, 1.25))
        panel.ax.legend(loc="upper right", ncols=2)
    figure.suptitle("Per-class test recall, mean over seeds")
    return figure


Figures = dict[str, tuple[str, Figure | None]]  # file name -> (caption, the figure, None when it has no data)


def draw_figures(client: MlflowClient, launch: Launch, groups: Groups) -> Figures:
    """The report's figures, drawn but not yet written."""
    return {
        "val_loss.png": ("Validation loss", val_loss_figure(client, groups)),
        "reliability.png": ("Reliability diagrams", reliability_figure(client, groups, launch.jobs)),
        "recall.png": ("Per-class recall", recall_figure(groups, launch.jobs)),
    }


def write_figures(figures: Figures, out_dir: Path) -> dict[str, str]:
    """Saves the figures that have data into `out_dir`, each replaced atomically; returns file name -> caption."""
    written = {}
    for name, (caption, figure) in figures.items():
        if figure is not None:
            with atomic.replacing(out_dir / name) as temporary:
                figure.savefig(temporary, format="png", dpi=DPI)
            written[name] = caption
    return written
