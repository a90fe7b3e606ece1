"""Study report: one launch of a study, read back from MLflow and summarised as REPORT.md with plots.

`python -m xent_lab.report STUDY` (or `xent-report STUDY`) takes the latest parent run of the study
(or `--parent-run-id`), its child runs and the earlier runs it reused, and writes `REPORT.md`,
`val_loss.png`, `reliability.png` and `recall.png` to `experiments/<STUDY>/` (or `--out-dir`); it
then logs them to the parent run under `report/`. Exit status 2 with a one-line `error: ...` for a
user error.

What it reads (written by the study callback, xent_lab.sweep, by each job through xent_lab.study, and by
xent_lab.train; the names are those of `xent_lab.tracking.tags`):
- parent run: tags `xent.study`, `xent.role=parent`, `xent.command`, `xent.sweep`, `git_commit`,
  `xent.launch_host`, and `xent.reused.<config_hash>` = run id of a finished run of an earlier
  launch that this launch reused instead of training again;
- child runs: tags `mlflow.parentRunId`, `xent.role=child`, `xent.job_overrides`, `dataset`, `loss`,
  `impl`, `seed`, `device`, `git_commit`, `data_sha256.<file>`, `failure_reason`; params (the
  flattened config); final `test/*` and `perf/*` metrics; the `val/loss` history; the artifact
  `predictions/test_predictions.npz`.

Layers: `load` (the runs of one launch), `stats` (summaries over seeds, paired t-test, Holm),
`findings` (every row against the baseline), `claims` (a paper's claims, verdicts from the numbers), `overfit`
(over-fit detection from histories), `markdown`, `narrative` and `tables` (REPORT.md's sections), `document`
(REPORT.md), `figures` (the plots), `readme` (README.md's findings block), `__main__` (the command line);
`build_report` here ties them together.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from xent_lab import atomic
from xent_lab.report import overfit
from xent_lab.report.claims import compute_claims
from xent_lab.report.document import render_report
from xent_lab.report.figures import draw_figures, recall_figure, reliability_figure, val_loss_figure, write_figures
from xent_lab.report.findings import Comparison, Findings, compute_findings
from xent_lab.report.load import Groups, Job, Launch, ReportError, group_jobs, load_launch
from xent_lab.report.markdown import COLUMNS, SETTINGS, Column, markdown_table
from xent_lab.report.overfit import Overfit, detect_overfit
from xent_lab.report.readme import update_readme
from xent_lab.report.stats import ImplComparison, PairedTest, Summary, compare_impls, holm, paired_test, summarize
from xent_lab.study import published_report_dir
from xent_lab.tracking import tags

__all__ = [
    "COLUMNS",
    "REPORT_FILE",
    "SETTINGS",
    "Column",
    "Comparison",
    "Findings",
    "Groups",
    "ImplComparison",
    "Job",
    "Launch",
    "Overfit",
    "PairedTest",
    "ReportError",
    "Summary",
    "build_report",
    "compare_impls",
    "compute_findings",
    "detect_overfit",
    "group_jobs",
    "holm",
    "load_launch",
    "markdown_table",
    "paired_test",
    "recall_figure",
    "reliability_figure",
    "render_report",
    "summarize",
    "update_readme",
    "val_loss_figure",
]

REPORT_FILE = "REPORT.md"


def _out_dir(launch: Launch, out_dir: Path | None) -> Path:
    """`out_dir`, else experiments/<study> in the repository; never a folder named by a tag, which anyone with
    write access to the store could set. A launch with command-line changes (`xent.published=false`) needs
    `out_dir`: its report must not replace the published one."""
    if out_dir is not None:
        return Path(out_dir)
    if launch.parent.data.tags.get(tags.PUBLISHED, "true") != "true":
        raise ReportError(
            f"launch {launch.parent.info.run_id} of study {launch.study} had command-line changes "
            f"({tags.PUBLISHED}=false): its report would replace the published one in experiments/{launch.study}; "
            "pass --out-dir"
        )
    return published_report_dir(launch.study)


def build_report(
    study: str,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    parent_run_id: str | None = None,
    out_dir: Path | None = None,
    baseline: Mapping[str, str] | None = None,
    before_writing: Callable[[], None] | None = None,
) -> Path:
    """Writes REPORT.md and the plots of a launch of `study` to `out_dir`, logs them to its parent run under `report/`.

    The launch is the latest parent run of the study in the experiment (default: named after the
    study), or `parent_run_id`. `out_dir` defaults to `experiments/<study>` in the repository, for a launch
    of the study as defined only (parent tag `xent.published=true`): a trial run with command-line changes
    never overwrites the published report. `baseline` ({key: value}) replaces the study's `study.baseline` for
    the Findings. Everything is computed before anything is written; `before_writing` is called in between (a
    launch passes `stopping.check`, so that a stop signal leaves the files as they were). Returns the path of
    REPORT.md. Raises ReportError or TrackingError (XentError) for user errors.
    """
    client, launch = load_launch(study, tracking_uri, experiment, parent_run_id)
    out_dir = _out_dir(launch, out_dir)
    groups = group_jobs(launch.jobs)
    findings = compute_findings(client, groups, launch.sweep, baseline)  # first: a bad baseline writes nothing
    claims = compute_claims(client, groups)  # likewise a bad study.claims
    figures = draw_figures(client, launch, groups)
    overfits = (
        {job.run_id: overfit.job_overfit(client, job) for job in launch.jobs} if overfit.wanted(launch.jobs) else None
    )
    plots = {name: caption for name, (caption, figure) in figures.items() if figure is not None}
    text = render_report(launch, groups, plots, findings, overfits, claims)
    if before_writing is not None:
        before_writing()
    out_dir.mkdir(parents=True, exist_ok=True)
    # Plots first, REPORT.md last: a report on disk never links to plots that were not written.
    write_figures(figures, out_dir)
    report = out_dir / REPORT_FILE
    atomic.write_text(report, text)
    for name in [*plots, REPORT_FILE]:
        client.log_artifact(launch.parent.info.run_id, str(out_dir / name), tags.REPORT_ARTIFACT_DIR)
    return report
