"""Per-class test recall, drawn only for a study of imbalanced training data (`dataset.imbalance` set): on
balanced data it says nothing the accuracy does not."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from matplotlib.figure import Figure

from xent_lab.report.figures.layout import colors, grid, legend, row_label, title
from xent_lab.report.load import Groups, Job
from xent_lab.report.stats import finished_values
from xent_lab.tracking import tags

IMBALANCE_PARAM = "dataset.imbalance"
UNSET = ("", "none", "null")


def imbalanced(jobs: Iterable[Job]) -> bool:
    """Whether any job trained on long-tailed data."""
    return any(job.params.get(IMBALANCE_PARAM, "").strip().lower() not in UNSET for job in jobs)


def _classes(jobs: Iterable[Job]) -> list[int]:
    prefix = tags.TEST_RECALL_PREFIX
    return sorted({int(key.removeprefix(prefix)) for job in jobs for key in job.metrics if key.startswith(prefix)})


def recall_figure(groups: Groups, jobs: Sequence[Job]) -> Figure | None:
    """Per-class test recall, mean over seeds: one panel per dataset, one bar per class and row. None when the
    study is not imbalanced or no run logged recalls."""
    if not imbalanced(jobs) or not _classes(job for job in jobs if job.finished):
        return None
    rows = {
        dataset: [(row_label(v, i, by_impl), js) for v, by_impl in variants.items() for i, js in by_impl.items()]
        for dataset, variants in groups.items()
    }
    color = colors([label for dataset_rows in rows.values() for label, _ in dataset_rows])
    most = max(len(_classes(j for _, js in dataset_rows for j in js)) for dataset_rows in rows.values())
    figure, axes = grid(len(rows), (max(6.0, 0.6 * most + 2), 3.6), n_cols=1)
    for ax, (dataset, dataset_rows) in zip(axes, rows.items()):
        # Per panel: datasets differ in their number of classes.
        classes = _classes(job for _, js in dataset_rows for job in js if job.finished)
        positions = np.arange(len(classes))
        width = 0.8 / len(dataset_rows)
        for i, (label, row_jobs) in enumerate(dataset_rows):
            recalls = [finished_values(row_jobs, f"{tags.TEST_RECALL_PREFIX}{k}") for k in classes]
            offset = (i - (len(dataset_rows) - 1) / 2) * width
            means = [np.mean(r) if r else np.nan for r in recalls]
            ax.bar(positions + offset, means, width, color=color[label], label=label)
        ax.set_xticks(positions, [str(k) for k in classes])
        ax.set(title=dataset, xlabel="class", ylabel="recall", ylim=(0, 1.05))
        ax.grid(axis="y", alpha=0.3)
    handles = {label: handle for ax in axes for handle, label in zip(*ax.get_legend_handles_labels())}
    legend(figure, list(handles.values()), list(handles))
    title(figure, "Per-class test recall, mean over seeds")
    return figure
