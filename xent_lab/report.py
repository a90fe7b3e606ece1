"""Study report: one launch of a study, read back from MLflow and summarised as REPORT.md with plots.

`python -m xent_lab.report STUDY` takes the latest parent run of the study (or `--parent-run-id`),
its child runs and the earlier runs it reused, and writes `REPORT.md`, `val_loss.png`,
`reliability.png` and `recall.png` to `experiments/<STUDY>/` (or `--out-dir`); it then logs them
to the parent run under `report/`. Exit status 2 with a one-line `error: ...` for a user error.

What it reads (written by the study callback, xent_lab.study, and by xent_lab.train):
- parent run: tags `xent.study`, `xent.role=parent`, `xent.command`, `xent.sweep`, `git_commit`,
  `xent.launch_host`, and `xent.reused.<config_hash>` = run id of a finished run of an earlier
  launch that this launch reused instead of training again;
- child runs: tags `mlflow.parentRunId`, `xent.role=child`, `xent.job_overrides`, `dataset`, `loss`,
  `impl`, `seed`, `device`, `git_commit`, `data_sha256.<file>`, `failure_reason`; params (the
  flattened config); final `test/*` and `perf/*` metrics; the `val/loss` history; the artifact
  `predictions/test_predictions.npz`.

Figures are built on matplotlib.figure.Figure and saved through the Agg canvas, so no pyplot
state and no display are involved (the report also runs inside the Hydra process).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from mlflow.entities import Run, ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from scipy import stats

from xent_lab import calibration, tracking
from xent_lab.errors import TrackingError, XentError

REPO_ROOT = Path(__file__).resolve().parents[1]
REPORT_FILE = "REPORT.md"
ARTIFACT_DIR = "report"  # where the report goes among the parent run's artifacts

STUDY_TAG = "xent.study"
ROLE_TAG = "xent.role"
REUSED_TAG_PREFIX = "xent.reused."
PARENT_ID_TAG = "mlflow.parentRunId"
PREDICTIONS_ARTIFACT = "predictions/test_predictions.npz"
RECALL_PREFIX = "test/recall/"

CUSTOM, BUILTIN = "custom", "builtin"
# Swept values that do not make a row: seeds are averaged over, implementations get a row each.
NOT_VARIANT = ("seed", "loss.impl")
# Config keys listed under "Setup" so that the reader knows what was trained.
SETTINGS = (
    "dataset.name",
    "dataset.limit.train",
    "dataset.limit.test",
    "dataset.val_size",
    "model.name",
    "trainer.epochs",
    "trainer.batch_size",
    "trainer.optimizer.learning_rate",
    "trainer.precision",
    "calibration.n_bins",
)
DEFAULT_N_BINS = 15
CONFIDENCE = 0.95
PAGE_SIZE = 1000  # runs per search_runs request
DPI = 100
NO_VALUE = "–"
# A study name goes into a search filter and a folder name: no quotes, no path separators.
STUDY_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


class Column(NamedTuple):
    """One metric column of the results tables."""

    metric: str
    label: str
    digits: int


COLUMNS = (
    Column("test/accuracy", "accuracy", 4),
    Column("test/nll", "NLL", 4),
    Column("test/ece", "ECE", 4),
    Column("test/adaece", "AdaECE", 4),
    Column("test/brier", "Brier", 4),
    Column("test/ece_ts", "ECE (TS)", 4),
    Column("test/temperature", "T", 3),
    Column("perf/mean_epoch_seconds", "s/epoch", 2),
)


class ReportError(XentError):
    """The study, its experiment or its parent run cannot be found, or a run's tags are malformed."""


# --------------------------------------------------------------------------- the runs of one launch


@dataclass(frozen=True)
class Job:
    """One child run of the launch: trained by it, or reused from an earlier launch."""

    run: Run
    reused: bool

    @property
    def tags(self) -> Mapping[str, str]:
        return self.run.data.tags

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    @property
    def dataset(self) -> str:
        return self.tags.get("dataset", "unknown")

    @property
    def impl(self) -> str:
        return self.tags.get("impl", "unknown")

    @property
    def seed(self) -> str:
        return self.tags.get("seed", "?")

    @property
    def finished(self) -> bool:
        return self.run.info.status == "FINISHED"

    @property
    def overrides(self) -> dict[str, str]:
        """This job's swept values (`xent.job_overrides`)."""
        return _json_tag(self.run, "xent.job_overrides")

    @property
    def variant(self) -> str:
        """The swept values other than seed and implementation, e.g. `loss=focal_flsd53`."""
        rest = {key: value for key, value in self.overrides.items() if key not in NOT_VARIANT}
        if not rest:
            rest = {"loss": self.tags.get("loss", "unknown")}
        return ", ".join(f"{key}={value}" for key, value in rest.items())

    def metric(self, key: str) -> float | None:
        return self.run.data.metrics.get(key)


@dataclass(frozen=True)
class Launch:
    """The parent run of one launch of a study and the jobs the report describes."""

    study: str
    experiment: str
    parent: Run
    jobs: tuple[Job, ...]
    missing_reused: tuple[str, ...]  # run ids named by xent.reused.* tags but not found


# dataset -> variant -> impl -> jobs, each level in sorted order.
Groups = dict[str, dict[str, dict[str, list[Job]]]]


def _json_tag(run: Run, key: str) -> dict[str, str]:
    text = run.data.tags.get(key, "{}")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(f"run {run.info.run_id}: tag {key} is not JSON ({exc}): {text!r}") from None
    if not isinstance(value, dict):
        raise ReportError(f"run {run.info.run_id}: tag {key} must be a JSON object, got {text!r}")
    return {str(k): str(v) for k, v in value.items()}


def _how_to_run(study: str) -> str:
    return f"run the study first: python -m xent_lab.train experiment={study}"


def _client(uri: str) -> MlflowClient:
    """A client of an existing store; a missing SQLite file is an error (opening it would create an empty store)."""
    tracking.check_reachable(uri, timeout=5)
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///").split("?")[0])  # absolute: resolve_uri made it so
        if not path.exists():
            raise TrackingError(f"no MLflow store at {path}; pass --tracking-uri or set MLFLOW_TRACKING_URI")
    return MlflowClient(tracking_uri=uri)


def _experiment_id(client: MlflowClient, uri: str, name: str, study: str) -> str:
    try:
        experiment = client.get_experiment_by_name(name)
    except MlflowException as exc:
        raise TrackingError(f"cannot read the MLflow store {tracking.redact(uri)}: {exc}") from None
    if experiment is None or experiment.lifecycle_stage != "active":
        raise ReportError(
            f"no MLflow experiment named {name!r} in {tracking.redact(uri)} (searched for study {study!r}); "
            f"{_how_to_run(study)}, or pass --experiment / --tracking-uri"
        )
    return experiment.experiment_id


def _study_runs(client: MlflowClient, experiment_id: str, study: str) -> list[Run]:
    """Every active run of the experiment tagged with the study, newest first, over all result pages."""
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            # Backticks: the tag key contains a dot.
            filter_string=f"tags.`{STUDY_TAG}` = '{study}'",
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=PAGE_SIZE,
            order_by=["attributes.start_time DESC"],
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _select_parent(runs: Sequence[Run], parent_run_id: str | None, study: str, experiment: str) -> Run:
    """The requested parent run, else the one that started last."""
    parents = [run for run in runs if run.data.tags.get(ROLE_TAG) == "parent"]
    if parent_run_id is not None:
        for run in parents:
            if run.info.run_id == parent_run_id:
                return run
        raise ReportError(
            f"run {parent_run_id} is not a parent run of study {study!r} in experiment {experiment!r} "
            f"(searched runs tagged {STUDY_TAG}={study}, {ROLE_TAG}=parent)"
        )
    if not parents:
        raise ReportError(
            f"no parent run of study {study!r} in experiment {experiment!r} (searched runs tagged "
            f"{STUDY_TAG}={study}, {ROLE_TAG}=parent); {_how_to_run(study)}"
        )
    return max(parents, key=lambda run: run.info.start_time)


def _launch_jobs(parent: Run, runs: Sequence[Run]) -> tuple[list[Job], list[str]]:
    """The parent's own children and the runs its xent.reused.* tags name; also the reused ids not found."""
    parent_id = parent.info.run_id
    by_id = {run.info.run_id: run for run in runs}
    jobs = [
        Job(run, reused=False)
        for run in runs
        if run.data.tags.get(PARENT_ID_TAG) == parent_id and run.data.tags.get(ROLE_TAG) == "child"
    ]
    reused_ids = [value for key, value in parent.data.tags.items() if key.startswith(REUSED_TAG_PREFIX)]
    jobs += [Job(by_id[run_id], reused=True) for run_id in reused_ids if run_id in by_id]
    return jobs, sorted(run_id for run_id in reused_ids if run_id not in by_id)


def load_launch(
    study: str, tracking_uri: str | None = None, experiment: str | None = None, parent_run_id: str | None = None
) -> tuple[MlflowClient, Launch]:
    """The client and the launch the report describes (see the module docstring for the tags used)."""
    if not STUDY_NAME.fullmatch(study):
        raise ReportError(f"invalid study name {study!r}: use letters, digits, '_', '-' and '.' (not first)")
    uri = tracking.resolve_uri(tracking_uri)
    client = _client(uri)
    name = experiment or study
    runs = _study_runs(client, _experiment_id(client, uri, name, study), study)
    parent = _select_parent(runs, parent_run_id, study, name)
    jobs, missing = _launch_jobs(parent, runs)
    return client, Launch(study, name, parent, tuple(jobs), tuple(missing))


def group_jobs(jobs: Iterable[Job]) -> Groups:
    """Jobs by dataset, variant and implementation (the rows of the results tables)."""
    groups: Groups = {}
    for job in sorted(jobs, key=lambda job: (job.dataset, job.variant, job.impl)):
        groups.setdefault(job.dataset, {}).setdefault(job.variant, {}).setdefault(job.impl, []).append(job)
    return groups


# --------------------------------------------------------------------------- statistics


class Summary(NamedTuple):
    """Mean, sample standard deviation and the half width of the Student-t confidence interval."""

    n: int
    mean: float
    std: float  # NaN when n < 2, as is half_width
    half_width: float


def summarize(values: Sequence[float]) -> Summary | None:
    """Summary of `values` (None when empty); the interval is mean ± t_{n-1, 0.975} std / sqrt(n)."""
    if not values:
        return None
    n = len(values)
    mean = float(np.mean(values))
    if n < 2:
        return Summary(n, mean, math.nan, math.nan)
    std = float(np.std(values, ddof=1))
    return Summary(n, mean, std, float(stats.t.ppf((1 + CONFIDENCE) / 2, n - 1)) * std / math.sqrt(n))


def _finished_values(jobs: Iterable[Job], metric: str) -> list[float]:
    return [value for job in jobs if job.finished and (value := job.metric(metric)) is not None]


class ImplComparison(NamedTuple):
    """Custom against built-in over the seeds that finished with both."""

    seeds: int
    max_loss_diff: float
    max_accuracy_diff: float


def compare_impls(by_impl: Mapping[str, Sequence[Job]]) -> ImplComparison | None:
    """Largest |custom - builtin| of test/loss and test/accuracy at equal seeds; None without such pairs."""
    finished = {
        impl: {job.seed: job for job in by_impl.get(impl, ()) if job.finished} for impl in (CUSTOM, BUILTIN)
    }
    seeds = finished[CUSTOM].keys() & finished[BUILTIN].keys()
    if not seeds:
        return None

    def max_diff(metric: str) -> float:
        pairs = [(finished[CUSTOM][seed].metric(metric), finished[BUILTIN][seed].metric(metric)) for seed in seeds]
        return max((abs(c - b) for c, b in pairs if c is not None and b is not None), default=math.nan)

    return ImplComparison(len(seeds), max_diff("test/loss"), max_diff("test/accuracy"))


# --------------------------------------------------------------------------- markdown


def _cell(value: object) -> str:
    """A table cell: pipes escaped, on one line."""
    return " ".join(str(value).split()).replace("|", "\\|")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return lines


def _number(value: float, spec: str) -> str:
    return NO_VALUE if math.isnan(value) else format(value, spec)


def _mean_std(summary: Summary | None, digits: int) -> str:
    if summary is None:
        return NO_VALUE
    if summary.n < 2:
        return f"{summary.mean:.{digits}f}"
    return f"{summary.mean:.{digits}f} ± {summary.std:.{digits}f}"


def _interval(summary: Summary | None, digits: int) -> str:
    if summary is None:
        return NO_VALUE
    if summary.n < 2:
        return "n/a"
    low, high = summary.mean - summary.half_width, summary.mean + summary.half_width
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def _utc(milliseconds: int) -> str:
    return datetime.fromtimestamp(milliseconds / 1000, tz=UTC).isoformat(timespec="seconds")


def _seconds(seconds: float) -> str:
    return f"{seconds:.2f} s ({int(seconds) // 3600}:{int(seconds) % 3600 // 60:02d}:{int(seconds) % 60:02d})"


def _distinct(values: Iterable[str]) -> list[str]:
    return sorted(set(values))


def _commit_line(launch: Launch) -> str:
    commit = launch.parent.data.tags.get("git_commit", "unknown")
    others = _distinct(c for job in launch.jobs if (c := job.tags.get("git_commit", "unknown")) != commit)
    if not others:
        return f"`{commit}` (every job ran at this commit)"
    return f"`{commit}` — **warning: some jobs ran at other commits:** " + ", ".join(f"`{c}`" for c in others)


def _wall_time_line(launch: Launch) -> str:
    """Parent start to the last end of a job trained in this launch, and the sum of those jobs' durations."""
    trained = [job.run.info for job in launch.jobs if not job.reused and job.run.info.end_time]
    if not trained:
        return "n/a (no job of this launch has ended)"
    wall = (max(info.end_time for info in trained) - launch.parent.info.start_time) / 1000
    total = sum(info.end_time - info.start_time for info in trained) / 1000
    return (
        f"{_seconds(wall)} from the launch to the last job's end; "
        f"{_seconds(total)} summed over the {len(trained)} jobs run in this launch"
    )


def _runs_line(launch: Launch) -> str:
    finished = [job for job in launch.jobs if job.finished]
    reused = sum(job.reused for job in launch.jobs)
    line = (
        f"{len(launch.jobs)} jobs: {len(finished)} finished ({reused} reused from earlier launches), "
        f"{len(launch.jobs) - len(finished)} failed; parent run `{launch.parent.info.run_id}` "
        f"in experiment `{launch.experiment}`"
    )
    if launch.missing_reused:
        line += " — **warning: reused runs not found:** " + ", ".join(f"`{i}`" for i in launch.missing_reused)
    return line


def header_section(launch: Launch) -> list[str]:
    """Title, command, commit, date, machine, wall time and run counts."""
    tags = launch.parent.data.tags
    devices = _distinct(job.tags.get("device", "unknown") for job in launch.jobs) or ["n/a"]
    return [
        f"# Study report: {launch.study}",
        "",
        "Command:",
        "",
        "```",
        tags.get("xent.command", "unknown"),
        "```",
        "",
        f"- **Sweep:** `{tags.get('xent.sweep', '{}')}`",
        f"- **Commit:** {_commit_line(launch)}",
        f"- **Date:** {_utc(launch.parent.info.start_time)} (start of the launch, UTC)",
        f"- **Machine:** {tags.get('xent.launch_host', 'unknown')}; devices: {', '.join(devices)}",
        f"- **Wall time:** {_wall_time_line(launch)}",
        f"- **Runs:** {_runs_line(launch)}",
        "",
        "## Reproduce",
        "",
        "```",
        tags.get("xent.command", f"python -m xent_lab.train experiment={launch.study}"),
        f"python -m xent_lab.report {launch.study}",
        "```",
        "",
        "The study file fixes sizes that finish on a laptop CPU in the wall time above. With more compute, "
        "raise them from the command line, e.g. "
        f"`python -m xent_lab.train experiment={launch.study} trainer.epochs=20 dataset.limit.train=null` "
        "(and a bigger `model=`).",
        "",
    ]


def setup_section(jobs: Sequence[Job]) -> list[str]:
    """The settings the jobs were trained with, and the checksums of the data files they read."""
    settings = []
    for key in SETTINGS:
        values = _distinct(job.run.data.params[key] for job in jobs if key in job.run.data.params)
        if values:
            settings.append((f"`{key}`", ", ".join(values) + (" (varies)" if len(values) > 1 else "")))
    checksums = _distinct(
        (key.removeprefix("data_sha256."), value)
        for job in jobs
        for key, value in job.tags.items()
        if key.startswith("data_sha256.")
    )
    files = [name for name, _ in checksums]
    rows = [
        (name, f"`{digest}`" + (" **(differs between runs)**" if files.count(name) > 1 else ""))
        for name, digest in checksums
    ]
    return [
        "## Setup",
        "",
        *(markdown_table(("setting", "value"), settings) if settings else ["No params logged."]),
        "",
        "### Data checksums (sha256)",
        "",
        *(markdown_table(("file", "sha256"), rows) if rows else ["No data checksums logged."]),
        "",
    ]


def results_section(dataset: str, variants: Mapping[str, Mapping[str, Sequence[Job]]]) -> list[str]:
    """Mean ± std and 95% confidence intervals over seeds per variant and implementation."""
    means, intervals = [], []
    for variant, by_impl in variants.items():
        for impl, jobs in by_impl.items():
            summaries = [(summarize(_finished_values(jobs, c.metric)), c.digits) for c in COLUMNS]
            finished = sum(job.finished for job in jobs)
            means.append([variant, impl, finished, len(jobs) - finished, *(_mean_std(*s) for s in summaries)])
            intervals.append([variant, impl, finished, *(_interval(*s) for s in summaries)])
    labels = [c.label for c in COLUMNS]
    return [
        f"## Results: {dataset}",
        "",
        "### Mean ± std over seeds",
        "",
        "Seeds: finished runs; a single seed shows its value alone. T: fitted temperature; "
        "(TS): after temperature scaling.",
        "",
        *markdown_table(["variant", "impl", "seeds", "failed", *labels], means),
        "",
        f"### {CONFIDENCE:.0%} confidence intervals (Student t)",
        "",
        *markdown_table(["variant", "impl", "seeds", *labels], intervals),
        "",
    ]


def comparison_section(groups: Groups) -> list[str]:
    """Custom against built-in per variant, or which implementation a variant has."""
    rows = []
    for dataset, variants in groups.items():
        for variant, by_impl in variants.items():
            comparison = compare_impls(by_impl)
            if comparison is not None:
                rows.append([dataset, variant, comparison.seeds, _number(comparison.max_loss_diff, ".2e"),
                             _number(comparison.max_accuracy_diff, ".4f")])
            elif by_impl.keys() >= {CUSTOM, BUILTIN}:
                rows.append([dataset, variant, "no seed finished with both implementations", NO_VALUE, NO_VALUE])
            else:
                rows.append([dataset, variant, f"only {', '.join(by_impl)}: nothing to compare", NO_VALUE, NO_VALUE])
    return [
        "## Custom vs built-in",
        "",
        "Largest difference between the custom and built-in implementation over the seeds run with both.",
        "",
        *markdown_table(
            ["dataset", "variant", "paired seeds", "max abs Δ test loss", "max abs Δ test accuracy"], rows
        ),
        "",
    ]


def failures_section(jobs: Sequence[Job]) -> list[str]:
    """Each job that did not finish, with its reason."""
    failed = [job for job in jobs if not job.finished]
    lines = ["## Failed runs", ""]
    if not failed:
        return [*lines, "None: every job finished.", ""]
    for job in failed:
        reason = " ".join(job.tags.get(tracking.FAILURE_TAG, "no failure_reason tag").split())
        lines.append(
            f"- **{job.run.info.run_name}** (`{job.run_id}`, {job.run.info.status}), overrides "
            f"`{json.dumps(job.overrides)}`: {reason}"
        )
    return [*lines, ""]


def plots_section(plots: Mapping[str, str]) -> list[str]:
    """Links to the plots written (file name -> caption)."""
    lines = ["## Plots", ""]
    if not plots:
        return [*lines, "No plots: no finished job logged histories, predictions or per-class recall.", ""]
    for name, caption in plots.items():
        lines += [f"### {caption}", "", f"![{caption}]({name})", ""]
    return lines


def render_report(launch: Launch, groups: Groups, plots: Mapping[str, str]) -> str:
    """The whole REPORT.md."""
    lines = header_section(launch) + setup_section(launch.jobs)
    for dataset, variants in groups.items():
        lines += results_section(dataset, variants)
    if not groups:
        lines += ["## Results", "", "No jobs in this launch.", ""]
    lines += comparison_section(groups) + plots_section(plots) + failures_section(launch.jobs)
    return "\n".join(lines)


# --------------------------------------------------------------------------- plots


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
    for spare in axes.flat[len(cells):]:
        spare.set_visible(False)
    return figure, [Panel(ax, *cell) for ax, cell in zip(axes.flat, cells)]


# Custom solid blue, built-in dashed orange: told apart in colour and in grey print.
IMPL_STYLES = {CUSTOM: {"color": "tab:blue", "linestyle": "-"}, BUILTIN: {"color": "tab:orange", "linestyle": "--"}}
OTHER_STYLE = {"color": "tab:green", "linestyle": ":"}


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
        (dataset, variant, impl): _histories(client, jobs, "val/loss")
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
            panel.ax.fill_between(steps, [min(v) for v in values], [max(v) for v in values],
                                  color=style["color"], alpha=0.2)
        panel.ax.set(title=panel.title, xlabel="epoch", ylabel="validation loss")
        panel.ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        panel.ax.grid(alpha=0.3)
        if panel.ax.lines:
            panel.ax.legend()
    figure.suptitle("Validation loss: mean over seeds, band from min to max")
    return figure


def _has_predictions(client: MlflowClient, job: Job) -> bool:
    """Whether the job finished and logged its test predictions (listed first: downloading a missing one raises)."""
    if not job.finished:
        return False
    listed = client.list_artifacts(job.run_id, PREDICTIONS_ARTIFACT.rsplit("/", 1)[0])
    return any(item.path == PREDICTIONS_ARTIFACT for item in listed)


def _pooled_probabilities(
    client: MlflowClient, jobs: Iterable[Job], tmp: Path
) -> tuple[np.ndarray, np.ndarray] | None:
    """Test probabilities and labels of the finished jobs, concatenated; None when none logged predictions."""
    probs, labels = [], []
    for job in jobs:
        if not _has_predictions(client, job):
            continue
        path = client.download_artifacts(job.run_id, PREDICTIONS_ARTIFACT, str(tmp / job.run_id))
        predictions = calibration.load_predictions(path)
        probs.append(calibration.probabilities(predictions.logits, predictions.head))
        labels.append(predictions.labels)
    return (np.concatenate(probs), np.concatenate(labels)) if probs else None


def _n_bins(jobs: Iterable[Job]) -> int:
    """The jobs' `calibration.n_bins`, so the diagrams bin like the logged ECE."""
    for job in jobs:
        value = job.run.data.params.get("calibration.n_bins")
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
    impls = _distinct(impl for variants in groups.values() for by_impl in variants.values() for impl in by_impl)
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
    for ax in axes.flat[len(pooled):]:
        ax.set_visible(False)
    for ax, ((dataset, variant, impl), value) in zip(axes.flat, pooled.items()):
        if value is None:
            ax.set_visible(False)
        else:
            _reliability_panel(ax, *value, n_bins, f"{dataset}: {variant}\n[{impl}]")
    figure.suptitle(f"Test reliability, pooled over seeds ({n_bins} bins)")
    return figure


def _recall_classes(jobs: Iterable[Job]) -> list[int]:
    return sorted({int(key.removeprefix(RECALL_PREFIX)) for job in jobs for key in job.run.data.metrics
                   if key.startswith(RECALL_PREFIX)})


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
            recalls = [_finished_values(impl_jobs, f"{RECALL_PREFIX}{k}") for k in classes]
            offset = (i - (len(panel.by_impl) - 1) / 2) * width
            panel.ax.bar(positions + offset, [np.mean(r) if r else np.nan for r in recalls], width,
                         color=_impl_style(impl)["color"], label=impl)
        panel.ax.set_xticks(positions, [str(k) for k in classes])
        # Headroom above recall 1 for the legend.
        panel.ax.set(title=panel.title, xlabel="class", ylabel="recall", ylim=(0, 1.25))
        panel.ax.legend(loc="upper right", ncols=2)
    figure.suptitle("Per-class test recall, mean over seeds")
    return figure


# --------------------------------------------------------------------------- files


def _replace_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """`write` a temporary file in the same folder, then rename it over `path`: no half-written file is ever seen."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(descriptor)
    try:
        write(Path(temporary))
        os.chmod(temporary, 0o644)  # mkstemp makes it private; a report is for everyone to read
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _write_plots(client: MlflowClient, launch: Launch, groups: Groups, out_dir: Path) -> dict[str, str]:
    """Saves the plots that have data; returns file name -> caption."""
    figures = {
        "val_loss.png": ("Validation loss", val_loss_figure(client, groups)),
        "reliability.png": ("Reliability diagrams", reliability_figure(client, groups, launch.jobs)),
        "recall.png": ("Per-class recall", recall_figure(groups, launch.jobs)),
    }
    written = {}
    for name, (caption, figure) in figures.items():
        if figure is not None:
            _replace_atomically(out_dir / name, lambda path: figure.savefig(path, format="png", dpi=DPI))
            written[name] = caption
    return written


def default_out_dir(study: str, parent: Run) -> Path:
    """experiments/<study> for a launch of the study as defined, else `report/` in its sweep folder."""
    tags = parent.data.tags
    if tags.get("xent.published", "true") == "true" or "xent.sweep_dir" not in tags:
        return REPO_ROOT / "experiments" / study
    return Path(tags["xent.sweep_dir"]) / "report"


def build_report(
    study: str,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    parent_run_id: str | None = None,
    out_dir: Path | None = None,
) -> Path:
    """Writes REPORT.md and the plots of a launch of `study` to `out_dir`, logs them to its parent run under `report/`.

    The launch is the latest parent run of the study in the experiment (default: named after the
    study), or `parent_run_id`. `out_dir` defaults to `experiments/<study>` in the repository for a
    launch of the study as defined (parent tag `xent.published=true`), else to `report/` in the
    launch's sweep folder, so that a trial run with command-line changes never overwrites the
    published report.
    Returns the path of REPORT.md. Raises ReportError or TrackingError (XentError) for user errors.
    """
    client, launch = load_launch(study, tracking_uri, experiment, parent_run_id)
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(study, launch.parent)
    out_dir.mkdir(parents=True, exist_ok=True)
    groups = group_jobs(launch.jobs)
    # Plots first, REPORT.md last: a report on disk never links to plots that were not written.
    plots = _write_plots(client, launch, groups, out_dir)
    report = out_dir / REPORT_FILE
    text = render_report(launch, groups, plots)
    _replace_atomically(report, lambda path: path.write_text(text, encoding="utf-8"))
    for name in [*plots, REPORT_FILE]:
        client.log_artifact(launch.parent.info.run_id, str(out_dir / name), ARTIFACT_DIR)
    return report


# --------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m xent_lab.report", description="Write the report of the latest launch of a study."
    )
    parser.add_argument("study", help="study name (the xent.study tag; the experiment name by default)")
    parser.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    parser.add_argument("--experiment", help="MLflow experiment holding the study (default: the study name)")
    parser.add_argument("--parent-run-id", help="report this launch instead of the latest one")
    parser.add_argument("--out-dir", type=Path, help="output folder (default: experiments/STUDY in the repository)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        report = build_report(args.study, args.tracking_uri, args.experiment, args.parent_run_id, args.out_dir)
    except XentError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    print(f"report written to {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
