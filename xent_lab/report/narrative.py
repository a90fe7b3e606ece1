"""The Findings section of REPORT.md: the regime, the baseline, one generated sentence per comparison, the
method and the table of every comparison. The words come from the numbers: a rerun that changes them
changes the text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from xent_lab.report.findings import ALPHA, COMPARED, Comparison, Findings
from xent_lab.report.load import Groups, Job
from xent_lab.report.markdown import NO_VALUE, markdown_table
from xent_lab.report.stats import CONFIDENCE

FINDINGS_HEADING = "## Findings"
REGIME_LABEL = "- **Regime:** "
# What the regime line names: the training set size, the imbalance, the epochs and the model.
REGIME_KEYS = ("dataset.limit.train", "dataset.imbalance", "trainer.epochs", "model.name")
DIGITS = 4


def _p(p: float) -> str:
    if math.isnan(p):
        return NO_VALUE
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _p_relation(p: float) -> str:
    """`= 0.034`, or `< 0.001`."""
    shown = _p(p)
    return shown if shown.startswith("<") else f"= {shown}"


def signed(value: float) -> str:
    return f"{value:+.{DIGITS}f}"


def span(low: float, high: float) -> str:
    return NO_VALUE if math.isnan(low) else f"[{signed(low)}, {signed(high)}]"


def regime(dataset: str, jobs: Sequence[Job]) -> str:
    """The dataset and the settings that size the training, from the finished jobs' params."""
    finished = [job for job in jobs if job.finished]
    parts = []
    for key in REGIME_KEYS:
        values = sorted({job.params[key] for job in finished if key in job.params})
        if values and values != ["None"]:
            parts.append(f"`{key}`={'/'.join(values)}")
    seeds = sorted({job.seed for job in finished})
    return f"{dataset}: " + ", ".join([*parts, f"seeds {', '.join(seeds)}"])


def sentence(comparison: Comparison, with_dataset: bool) -> str:
    """One tested finding in words, e.g. "`loss=focal` [custom] has a higher ECE than `loss=cce` [custom]: ..."."""
    c, s = comparison, comparison.seeds
    where = f" on {c.row.dataset}" if with_dataset else ""
    direction = "the same" if s.mean == 0 else ("a higher" if s.mean > 0 else "a lower")
    relation = "as" if s.mean == 0 else "than"
    text = (
        f"{c.row.label} has {direction} {c.compared.label} {relation} {c.baseline.label}{where}: {signed(s.mean)} "
        f"{span(s.low, s.high)} over {s.n} seeds, p_Holm {_p_relation(c.p_holm)}, {c.verdict}"
    )
    if c.bootstrap is not None:
        b = c.bootstrap
        text += (
            f"; on the test set {signed(b.difference)} {span(b.low, b.high)}, "
            f"excluding 0 in {b.excluding_zero} of {b.pairs} seed pairs"
        )
    return text + "."


def _baseline_line(findings: Findings) -> str:
    chosen = "; ".join(
        f"{dataset}: {row.label}" if row is not None else f"{dataset}: none (no row matches)"
        for dataset, row in findings.baselines.items()
    )
    return f"- **Baseline:** {chosen} ({findings.rule})"


def _method(findings: Findings) -> list[str]:
    tests = sum(not math.isnan(c.p_holm) for c in findings.comparisons)
    metrics = ", ".join(c.label for c in COMPARED)
    return [
        "### Method",
        "",
        f"Each row is compared with its dataset's baseline on {metrics}. **Over seeds:** runs are matched by "
        "seed, Δ = row − baseline per seed; the table gives the mean of Δ, its "
        f"{CONFIDENCE:.0%} Student-t interval and the two-sided paired t-test p-value (Δ equal in every seed: "
        "p = 1 when it is 0, else 0). **p_Holm:** Holm–Bonferroni adjusted over the "
        f"{tests} tests of this report; significant means p_Holm < {ALPHA:g}. The sentences above state the "
        "most significant first.",
        "",
        "**On the test set:** for each seed pair, `calibration.paired_bootstrap` scores both runs' logged test "
        "predictions on the same resamples of the shared test set (as many resamples as the runs' "
        "`calibration.bootstrap`, seeded by `calibration.bootstrap_seed`; ECE after temperature scaling from "
        "the logits divided by each run's fitted temperature). Combined over seed pairs: the mean of the "
        "observed differences and the mean of the interval bounds (all pairs use the same resamples, so "
        "their errors are strongly correlated: the mean of the bounds is the interval of the mean for "
        "perfectly correlated pairs, and wider otherwise), and in how many pairs the interval excludes 0. "
        "It measures the test set's sampling noise only, the t-test the training seeds'; the verdict "
        "is the t-test's.",
        "",
    ]


def _table(comparisons: Sequence[Comparison]) -> list[str]:
    rows = []
    for c in comparisons:
        s, b = c.seeds, c.bootstrap
        boot = (
            [NO_VALUE, NO_VALUE, NO_VALUE]
            if b is None
            else [
                signed(b.difference),
                span(b.low, b.high),
                f"{b.excluding_zero}/{b.pairs}",
            ]
        )
        rows.append(
            [
                c.row.dataset,
                c.row.label,
                c.compared.label,
                s.n,
                signed(s.mean),
                span(s.low, s.high),
                _p(s.p),
                _p(c.p_holm),
                c.verdict,
                *boot,
            ]
        )
    header = ["dataset", "row", "metric", "seeds", "Δ mean", f"{CONFIDENCE:.0%} t interval", "p", "p_Holm"]
    header += ["verdict", "test-set Δ", "bootstrap interval", "pairs excluding 0"]
    return markdown_table(header, rows)


def findings_section(findings: Findings, groups: Groups) -> list[str]:
    """The whole Findings section: regime, baseline, sentences, method, table."""
    lines = [FINDINGS_HEADING, "", "Generated from the runs' numbers by the report; never edited by hand.", ""]
    for dataset, variants in groups.items():
        jobs = [job for by_impl in variants.values() for impl_jobs in by_impl.values() for job in impl_jobs]
        lines.append(REGIME_LABEL + regime(dataset, jobs))
    lines += [_baseline_line(findings), ""]
    if not findings.comparisons:
        return [*lines, "No comparison: no row shares finished seeds with a baseline.", ""]
    with_dataset = len(groups) > 1
    tested = [c for c in findings.comparisons if not math.isnan(c.p_holm)]
    lines += [f"{i}. {sentence(c, with_dataset)}" for i, c in enumerate(tested, 1)]
    untested = len(findings.comparisons) - len(tested)
    if untested:
        lines += ["", f"{untested} comparison(s) with a single seed pair are in the table, not tested."]
    return [*lines, "", *_method(findings), "### All comparisons", "", *_table(findings.comparisons), ""]
