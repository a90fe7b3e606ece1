"""The Findings section of REPORT.md: the regime, the baseline, the declared questions with their verdicts (one
numbered sentence each), the runs that did not learn, the exploratory table of every comparison, custom against
built-in, and the method. The words come from the numbers: a rerun that changes them changes the text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from xent_lab.report import learned
from xent_lab.report.findings import COMPARED, EQUIVALENCE, Comparison, Findings
from xent_lab.report.load import Groups, Job
from xent_lab.report.markdown import NO_VALUE, markdown_table
from xent_lab.report.questions import ALPHA, Answer
from xent_lab.report.stats import CONFIDENCE, TwoLevel

FINDINGS_HEADING = "## Findings"
REGIME_LABEL = "- **Regime:** "
# What the regime line names: the training set size, the imbalance, the epochs and the model.
REGIME_KEYS = ("dataset.limit.train", "dataset.imbalance", "trainer.epochs", "model.name")
DIGITS = 4


def p_text(p: float) -> str:
    if math.isnan(p):
        return NO_VALUE
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _p_relation(p: float) -> str:
    """`= 0.034`, or `< 0.001`."""
    shown = p_text(p)
    return shown if shown.startswith("<") or shown == NO_VALUE else f"= {shown}"


def signed(value: float) -> str:
    return f"{value:+.{DIGITS}f}"


def span(low: float, high: float) -> str:
    return NO_VALUE if math.isnan(low) else f"[{signed(low)}, {signed(high)}]"


def direction(low: float, high: float, threshold: float = 0.0) -> str:
    """ "higher" or "lower" only where the interval excludes the threshold; else that it does not."""
    if math.isnan(low):
        return "no interval"
    if low > threshold:
        return "higher"
    if high < threshold:
        return "lower"
    return f"interval spans {threshold:g}"


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


METRIC_LABELS = {c.metric: c.label for c in COMPARED}


def _metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, f"`{metric}`")


def _interval_text(interval: TwoLevel | None, threshold: float) -> str:
    if interval is None:
        return "no value"
    return (
        f"{signed(interval.mean)} {span(interval.low, interval.high)} over {interval.n} seeds "
        f"({direction(interval.low, interval.high, threshold)})"
    )


def answer_numbers(answer: Answer) -> str:
    """What a declared question compared, what it predicted and the numbers it found; why not, untested."""
    q = answer.question
    if answer.row is None or not answer.parts:
        return answer.reason
    against = f"against {answer.baseline.label}" if answer.baseline is not None else "alone"
    predicted = q.direction.replace("_", " ") + (
        f" than {q.threshold:g}" if q.threshold or q.against is not None else ""
    )
    numbers = "; ".join(f"{_metric_label(p.metric)} {_interval_text(p.primary, q.threshold)}" for p in answer.parts)
    return (
        f"{answer.row.label} {against} on {answer.row.dataset}, predicted {predicted}: {numbers}; "
        f"p_Holm {_p_relation(answer.p_holm)}"
    )


def _answers_lines(answers: Sequence[Answer]) -> list[str]:
    if not answers:
        return [
            "No declared questions (`study.questions`): every comparison below is exploratory.",
            "",
        ]
    rows = []
    for a in answers:
        for part in a.parts or [None]:
            interval = None if part is None else part.primary
            rows.append(
                [
                    a.question.id,
                    NO_VALUE if a.row is None else a.row.label,
                    NO_VALUE if a.baseline is None else a.baseline.label,
                    NO_VALUE if part is None else _metric_label(part.metric),
                    a.question.direction.replace("_", " ")
                    + (f" ({a.question.threshold:+g})" if a.question.threshold else ""),
                    NO_VALUE if interval is None else interval.n,
                    NO_VALUE if interval is None else signed(interval.mean),
                    NO_VALUE if interval is None else span(interval.low, interval.high),
                    NO_VALUE if interval is None else p_text(interval.p(a.question.threshold)),
                    p_text(a.p_holm),
                    a.verdict,
                ]
            )
    header = ["question", "row", "against", "metric", "predicted", "seeds", "Δ mean", "95% interval (seeds + test)"]
    return [*markdown_table([*header, "p", "p_Holm", "verdict"], rows), ""]


def _not_learned_lines(findings: Findings) -> list[str]:
    if not findings.not_learned:
        return []
    lines = [f"**Runs that did not learn** ({learned.RULE}):", ""]
    lines += [
        f"- {job.run.info.run_name}"
        + (f", `trainer.keep={job.keep}`" if job.keep else "")
        + f" (`{job.run_id}`): {why}"
        for job, why in findings.not_learned
    ]
    return [*lines, ""]


def _baseline_line(findings: Findings) -> str:
    chosen = "; ".join(
        f"{dataset}: {row.label}" if row is not None else f"{dataset}: none (no row matches)"
        for dataset, row in findings.baselines.items()
    )
    return f"- **Baseline:** {chosen} ({findings.rule})"


METHOD = [
    "### Method",
    "",
    "Runs are matched by seed; Δ = row − baseline per seed on the shared test set. **Primary interval (seeds + "
    "test):** the seeds' variance of the mean, var(Δ)/n, plus the test set's, the variance over resamples of the "
    "test samples of the seed-mean Δ (each resample scores every run of both rows on the same samples: one test set "
    "is shared by all the runs, so its noise does not average out over seeds); mean ± t·se, the degrees of "
    "freedom by Welch–Satterthwaite (`stats.two_level`; 93% to 97% coverage in simulation at 3 and 5 seeds, where "
    "a percentile bootstrap over the seeds covers 72% to 94%). **Secondary:** the seeds' "
    f"{CONFIDENCE:.0%} Student-t interval, which ignores the test set, and each seed pair's paired percentile "
    "bootstrap of the test samples, which ignores the seeds (the mean of the pairs' bounds, and in how many pairs "
    "the interval excludes 0).",
    "",
    f"**Declared questions** are the confirmatory family: Holm over them alone; **supported** when p_Holm < "
    f"{ALPHA:g} and Δ lies on the predicted side of the threshold (0, or the stated margin of a non-inferiority "
    f"question), **contradicted** when p_Holm < {ALPHA:g} on the other side, **undecided** otherwise, **not tested** "
    "without a p-value. The claims against a paper use the same rule on the same numbers. Everything else is "
    "exploratory: unadjusted intervals, no test; a direction is named only where the interval excludes 0. A "
    "constant nonzero Δ over seeds with no test-set spread has no interval: not tested.",
    "",
]


def _table(comparisons: Sequence[Comparison]) -> list[str]:
    rows = []
    for c in comparisons:
        s, b, primary = c.seeds, c.bootstrap, c.primary
        boot = (
            [NO_VALUE] * 3
            if b is None
            else [signed(b.difference), span(b.low, b.high), f"{b.excluding_zero}/{b.pairs}"]
        )
        rows.append(
            [
                c.row.dataset,
                c.row.label,
                c.baseline.label,
                c.compared.label,
                primary.n,
                signed(primary.mean),
                span(primary.low, primary.high),
                direction(primary.low, primary.high),
                span(s.low, s.high),
                *boot,
            ]
        )
    header = ["dataset", "row", "against", "metric", "seeds", "Δ mean", "95% interval (seeds + test)", "reads"]
    header += [f"{CONFIDENCE:.0%} t interval (seeds)", "test-set Δ", "bootstrap interval (test)", "pairs excluding 0"]
    return markdown_table(header, rows)


def _twins_lines(twins: Sequence[Comparison]) -> list[str]:
    if not twins:
        return []
    rows = []
    for c in twins:
        margin, p = EQUIVALENCE[c.compared.metric], c.primary
        inside = not math.isnan(p.low) and -margin < p.low and p.high < margin
        word = f"equivalent within ±{margin:g}" if inside else f"not shown equivalent within ±{margin:g}"
        rows.append([c.row.dataset, c.row.variant, c.compared.label, p.n, signed(p.mean), span(p.low, p.high), word])
    return [
        "### Custom against built-in: equivalence",
        "",
        "Each built-in row against the custom row of the same variant (kept out of the comparisons above): "
        "equivalent when the 95% interval (seeds + test) lies within the margin (two one-sided tests at 2.5%).",
        "",
        *markdown_table(
            ["dataset", "variant", "metric", "seeds", "Δ built-in − custom", "95% interval", "reads"], rows
        ),
        "",
    ]


def declared_lines(findings: Findings, block: Sequence[str]) -> list[str]:
    """The baseline, the declared questions (`block`: their answers block, then each part's numbers) and the runs
    that did not learn."""
    lines = [_baseline_line(findings), "", *block, *_answers_lines(findings.answers)]
    return lines + _not_learned_lines(findings)


def comparisons_section(findings: Findings, groups: Groups) -> list[str]:
    """The appendix's full comparison: regime, method, the exploratory table, custom against built-in."""
    lines = [FINDINGS_HEADING, "", "Generated from the runs' numbers by the report; never edited by hand.", ""]
    for dataset, variants in groups.items():
        jobs = [job for by_impl in variants.values() for impl_jobs in by_impl.values() for job in impl_jobs]
        lines.append(REGIME_LABEL + regime(dataset, jobs))
    lines += ["", *METHOD, "### Exploratory comparisons", ""]
    if findings.comparisons:
        lines += [
            "Exploratory: each row against its baseline, unadjusted 95% intervals, in the tables' order; no test.",
            "",
            *_table(findings.comparisons),
            "",
        ]
    else:
        lines += ["No comparison: no row shares finished seeds with a baseline.", ""]
    return lines + _twins_lines(findings.twins)
