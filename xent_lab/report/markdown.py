"""REPORT.md's sections: the header, setup, results, comparison, plots and failures, as GitHub Markdown."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import NamedTuple

from xent_lab.report.load import BUILTIN, CUSTOM, Groups, Job, Launch, evaluations
from xent_lab.report.stats import CONFIDENCE, Summary, compare_impls, finished_values, summarize
from xent_lab.tracking import tags

NO_VALUE = "–"
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
    "trainer.keep",
    "calibration.n_bins",
)


class Column(NamedTuple):
    """One metric column of the results tables."""

    metric: str
    label: str
    digits: int


COLUMNS = (
    Column(tags.TEST_ACCURACY, "accuracy", 4),
    Column(tags.test_metric("nll"), "NLL", 4),
    Column(tags.TEST_ECE, "ECE", 4),
    Column(tags.test_metric("adaece"), "AdaECE", 4),
    Column(tags.test_metric("brier"), "Brier", 4),
    Column(tags.TEST_ECE_TS, "ECE (TS)", 4),
    Column(tags.TEST_TEMPERATURE, "T", 3),
    Column(tags.MEAN_EPOCH_SECONDS, "s/epoch", 2),
)


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


def interval_cell(summary: Summary | None, digits: int) -> str:
    if summary is None:
        return NO_VALUE
    if summary.n < 2:
        return "n/a"
    low, high = summary.mean - summary.half_width, summary.mean + summary.half_width
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def diverged(job: Job) -> bool:
    """Whether the job's training loss became NaN or inf (tag `xent.diverged`, set by both trainer.on_nonfinite)."""
    return job.tags.get(tags.DIVERGED) == "true"


def _utc(milliseconds: int) -> str:
    return datetime.fromtimestamp(milliseconds / 1000, tz=UTC).isoformat(timespec="seconds")


def _seconds(seconds: float) -> str:
    return f"{seconds:.2f} s ({int(seconds) // 3600}:{int(seconds) % 3600 // 60:02d}:{int(seconds) % 60:02d})"


def _distinct(values: Iterable[str]) -> list[str]:
    return sorted(set(values))


def _commit_line(launch: Launch) -> str:
    commit = launch.parent.data.tags.get(tags.GIT_COMMIT, "unknown")
    others = _distinct(c for job in launch.jobs if (c := job.tags.get(tags.GIT_COMMIT, "unknown")) != commit)
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
    line = (
        f"{_seconds(wall)} from the launch to the last job's end; "
        f"{_seconds(total)} summed over the {len(trained)} jobs run in this launch"
    )
    return line + _job_time_per_dataset(launch)


def _job_time_per_dataset(launch: Launch) -> str:
    """With several datasets: each one's summed job durations, reused runs counted at their own duration,
    since a budget is per dataset and a reused run's time was spent by the launch that trained it."""
    ended: dict[str, list[float]] = {}
    for job in launch.jobs:
        if job.run.info.end_time:
            ended.setdefault(job.dataset, []).append((job.run.info.end_time - job.run.info.start_time) / 1000)
    if len(ended) < 2:
        return ""
    parts = [
        f"{name} {_seconds(sum(times))} over {len(times)} run{'s' * (len(times) != 1)} "
        f"({sum(times) / len(times):.0f} s a run)"
        for name, times in sorted(ended.items())
    ]
    return "; job time per dataset, reused runs included: " + ", ".join(parts)


def _runs_line(launch: Launch) -> str:
    finished = [job for job in launch.jobs if job.finished]
    reused = sum(job.reused for job in launch.jobs)
    line = (
        f"{len(launch.jobs)} jobs: {len(finished)} finished ({reused} reused from earlier launches), "
        f"{len(launch.jobs) - len(finished)} failed; parent run `{launch.parent.info.run_id}` "
        f"in experiment `{launch.experiment}`"
    )
    twice = sum(len(evaluations(job)) > 1 for job in launch.jobs)
    if twice:
        line += (
            f"; {twice} of the runs evaluated twice, at the kept epoch (`trainer.keep=best_val_accuracy`) and at "
            "the last (`trainer.keep=last`): a row each"
        )
    if launch.missing_reused:
        line += " — **warning: reused runs not found:** " + ", ".join(f"`{i}`" for i in launch.missing_reused)
    return line


def title_section(launch: Launch) -> list[str]:
    """The title, and a warning when some jobs ran at another commit than the launch."""
    commit = _commit_line(launch)
    return [f"# Study report: {launch.study}", "", *([f"**Commit:** {commit}", ""] if "warning" in commit else [])]


def header_section(launch: Launch) -> list[str]:
    """Provenance: command, commit, date, machine, wall time and run counts; how to reproduce."""
    parent_tags = launch.parent.data.tags
    devices = _distinct(job.tags.get(tags.DEVICE, "unknown") for job in launch.jobs) or ["n/a"]
    return [
        "## Provenance",
        "",
        "Command:",
        "",
        "```",
        parent_tags.get(tags.COMMAND, "unknown"),
        "```",
        "",
        f"- **Sweep:** `{parent_tags.get(tags.SWEEP, '{}')}`",
        f"- **Commit:** {_commit_line(launch)}",
        f"- **Date:** {_utc(launch.parent.info.start_time)} (start of the launch, UTC)",
        f"- **Machine:** {parent_tags.get(tags.LAUNCH_HOST, 'unknown')}; devices: {', '.join(devices)}",
        f"- **Wall time:** {_wall_time_line(launch)}",
        f"- **Runs:** {_runs_line(launch)}",
        "",
        "## Reproduce",
        "",
        "```",
        parent_tags.get(tags.COMMAND, f"python -m xent_lab.train experiment={launch.study}"),
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
        values = _distinct(job.params[key] for job in jobs if key in job.params)
        if values:
            settings.append((f"`{key}`", ", ".join(values) + (" (varies)" if len(values) > 1 else "")))
    checksums = _distinct(
        (key.removeprefix(tags.DATA_SHA256_PREFIX), value)
        for job in jobs
        for key, value in job.tags.items()
        if key.startswith(tags.DATA_SHA256_PREFIX)
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
    # A diverged run (trainer.on_nonfinite=record) is FINISHED without test metrics: counted apart, not as a seed.
    divergence = any(diverged(job) for by_impl in variants.values() for jobs in by_impl.values() for job in jobs)
    for variant, by_impl in variants.items():
        for impl, jobs in by_impl.items():
            summaries = [(summarize(finished_values(jobs, c.metric)), c.digits) for c in COLUMNS]
            gone = sum(diverged(job) for job in jobs)
            finished = sum(job.finished for job in jobs) - gone
            counts = [finished, len(jobs) - finished - gone, *([gone] if divergence else [])]
            means.append([variant, impl, *counts, *(_mean_std(*s) for s in summaries)])
            intervals.append([variant, impl, finished, *(interval_cell(*s) for s in summaries)])
    labels = [c.label for c in COLUMNS]
    return [
        f"## Results: {dataset}",
        "",
        "### Mean ± std over seeds",
        "",
        "Seeds: finished runs; a single seed shows its value alone. T: fitted temperature; "
        "(TS): after temperature scaling."
        + (" Diverged: runs whose training loss became NaN or inf, without test metrics." if divergence else ""),
        "",
        *markdown_table(["variant", "impl", "seeds", "failed", *(["diverged"] if divergence else []), *labels], means),
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
                rows.append(
                    [
                        dataset,
                        variant,
                        comparison.seeds,
                        _number(comparison.max_loss_diff, ".2e"),
                        _number(comparison.max_accuracy_diff, ".4f"),
                    ]
                )
            elif by_impl.keys() >= {CUSTOM, BUILTIN}:
                rows.append([dataset, variant, "no seed finished with both implementations", NO_VALUE, NO_VALUE])
            else:
                rows.append([dataset, variant, f"only {', '.join(by_impl)}: nothing to compare", NO_VALUE, NO_VALUE])
    return [
        "## Custom vs built-in",
        "",
        "Largest difference between the custom and built-in implementation over the seeds run with both.",
        "",
        *markdown_table(["dataset", "variant", "paired seeds", "max abs Δ test loss", "max abs Δ test accuracy"], rows),
        "",
    ]


def failures_section(jobs: Sequence[Job]) -> list[str]:
    """Each job that did not finish, with its reason."""
    failed = [job for job in jobs if not job.finished]
    lines = ["## Failed runs", ""]
    if not failed:
        return [*lines, "None: every job finished.", ""]
    for job in failed:
        reason = " ".join(job.tags.get(tags.FAILURE_REASON, f"no {tags.FAILURE_REASON} tag").split())
        lines.append(
            f"- **{job.run.info.run_name}** (`{job.run_id}`, {job.run.info.status}), overrides "
            f"`{json.dumps(job.overrides)}`: {reason}"
        )
    return [*lines, ""]


def plots_section(plots: Mapping[str, str]) -> list[str]:
    """Links to the figures written (file name -> caption)."""
    lines = ["## Figures", ""]
    if not plots:
        return [*lines, "No figures: no finished job logged histories, predictions or per-class recall.", ""]
    for name, caption in plots.items():
        lines += [f"### {caption}", "", f"![{caption}]({name})", ""]
    return lines
