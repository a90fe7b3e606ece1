"""REPORT.md as a whole, in reading order: the summary, the headline tables, the declared questions, the figures,
the paper's numbers beside ours and the threats to validity; then the appendix: provenance, the full comparison
table, custom against built-in, the per-row details, setup and checksums, and the failed runs."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from xent_lab.report import paper
from xent_lab.report.claims import Claims
from xent_lab.report.findings import Findings
from xent_lab.report.headline import compute_headline, headline_section, summary_section
from xent_lab.report.load import Groups, Launch
from xent_lab.report.markdown import (
    comparison_section,
    failures_section,
    header_section,
    plots_section,
    results_section,
    setup_section,
    title_section,
)
from xent_lab.report.overfit import Overfit
from xent_lab.report.readme import parse_answers, verdict_counts
from xent_lab.report.stability import stability_section
from xent_lab.report.tables import bootstrap_section, overfit_section, recalibration_section, temperature_section
from xent_lab.report.validity import Floor, largest_ece_ts_differences, threats_section

APPENDIX = ["# Appendix", "", "Everything the sections above were computed from, row by row.", ""]


def details_section(
    groups: Groups,
    overfits: Mapping[str, Overfit | None] | None,
    val_eces: Mapping[str, Mapping[str, float]] | None = None,
) -> list[str]:
    """Per dataset: every row's means, intervals, bootstrap bounds, temperature, recalibration (the best method
    chosen on `val_eces`: run id -> method -> validation ECE) and over-fitting."""
    lines = []
    for dataset, variants in groups.items():
        lines += results_section(dataset, variants) + bootstrap_section(variants) + temperature_section(variants)
        lines += recalibration_section(variants, val_eces)
        if overfits is not None:
            lines += overfit_section(variants, overfits)
    return lines or ["## Results", "", "No jobs in this launch.", ""]


def render_report(
    launch: Launch,
    groups: Groups,
    plots: Mapping[str, str],
    findings: Findings | None = None,
    overfits: Mapping[str, Overfit | None] | None = None,
    claims: Claims | None = None,
    *,
    questions: Sequence[str] = (),
    comparisons: Sequence[str] = (),
    unlearned: Collection[str] = frozenset(),
    floors: Mapping[str, Floor] | None = None,
    sizes: Mapping[str, str] | None = None,
    val_eces: Mapping[str, Mapping[str, float]] | None = None,
) -> str:
    """The whole REPORT.md.

    `findings` gives the headline's baselines; `questions`: the declared questions' section, whose answers block
    (`readme.answers_lines`) the summary counts; `comparisons`: the full comparison table, first in the appendix;
    `unlearned`: the run ids that did not learn (`learned.unlearned`); `floors` and `sizes`: the binned-ECE noise
    floors and model sizes of `validity`; `overfits` (run id -> reading) adds the over-fitting tables; `claims`
    adds the paper's numbers beside ours; `val_eces` (run id -> method -> validation ECE) picks the best
    recalibration method. None or empty leaves each out."""
    tables = compute_headline(groups, findings, unlearned)
    answers = verdict_counts(parse_answers(list(questions)))
    lines = title_section(launch) + summary_section(launch.study, groups, tables, answers) + headline_section(tables)
    lines += [*questions, *plots_section(plots)]
    lines += paper.paper_lines(claims.settings, groups) if claims is not None else []
    lines += threats_section(groups, floors or {}, sizes or {}, largest_ece_ts_differences(tables))
    lines += APPENDIX + header_section(launch) + list(comparisons) + comparison_section(groups)
    lines += details_section(groups, overfits, val_eces)
    lines += stability_section(launch.jobs)  # only when the runs diverged or logged the gradient probe
    return "\n".join(lines + setup_section(launch.jobs) + failures_section(launch.jobs))
