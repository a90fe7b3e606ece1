"""REPORT.md as a whole: the sections of `markdown`, `narrative` and `tables` in reading order."""

from __future__ import annotations

from collections.abc import Mapping

from xent_lab.report.claims import Claims, claims_section
from xent_lab.report.findings import Findings
from xent_lab.report.load import Groups, Launch
from xent_lab.report.markdown import (
    comparison_section,
    failures_section,
    header_section,
    plots_section,
    results_section,
    setup_section,
)
from xent_lab.report.narrative import findings_section
from xent_lab.report.overfit import Overfit
from xent_lab.report.stability import stability_section
from xent_lab.report.tables import bootstrap_section, overfit_section, recalibration_section, temperature_section


def render_report(
    launch: Launch,
    groups: Groups,
    plots: Mapping[str, str],
    findings: Findings | None = None,
    overfits: Mapping[str, Overfit | None] | None = None,
    claims: Claims | None = None,
    val_eces: Mapping[str, Mapping[str, float]] | None = None,
) -> str:
    """The whole REPORT.md. `overfits` (run id -> reading) adds the over-fitting tables, `claims` the section
    "Against the paper"; None leaves them out. `val_eces` (run id -> method -> validation ECE) picks the best
    recalibration method."""
    lines = header_section(launch) + setup_section(launch.jobs)
    if findings is not None:
        lines += findings_section(findings, groups)
    for dataset, variants in groups.items():
        lines += results_section(dataset, variants) + bootstrap_section(variants) + temperature_section(variants)
        lines += recalibration_section(variants, val_eces)
        if overfits is not None:
            lines += overfit_section(variants, overfits)
    if not groups:
        lines += ["## Results", "", "No jobs in this launch.", ""]
    lines += claims_section(claims) if claims is not None else []
    lines += stability_section(launch.jobs)  # only when the runs diverged or logged the gradient probe
    lines += comparison_section(groups) + plots_section(plots) + failures_section(launch.jobs)
    return "\n".join(lines)
