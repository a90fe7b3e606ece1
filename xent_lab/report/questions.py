"""The study's declared questions (`study.questions`, `xent_lab.questions`) answered from its runs, with the
one verdict rule that the Findings and the claims against a paper share (`verdict`).

Each question names a row, a baseline (the study's, or a number with `against`), one metric (or several, all
predicted to move the same way) and the predicted direction. Its numbers: d_s = row_s - baseline_s per seed
(`paired.Paired`), and the primary interval `stats.two_level`, which carries the seeds' and the test set's noise;
its p-value is that of d = threshold (0, the margin of a non-inferiority question, or `against`) under the same
t distribution. The declared questions are the confirmatory family: Holm over them alone. The rule:

- **supported**: p_Holm < ALPHA and the mean lies on the predicted side of the threshold;
- **contradicted**: p_Holm < ALPHA and the mean lies on the other side;
- **undecided**: p_Holm >= ALPHA;
- **not tested**: no p-value (no such row, fewer than 2 seeds, no spread at all).

With several metrics the question holds only if each does: p is the largest of theirs when all lie on the
predicted side (the intersection-union test, Berger 1982), else the smallest of those on the other side.
"""

from __future__ import annotations

import ast
import math
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from xent_lab.questions import KEY, Question, parse_questions
from xent_lab.report.findings import Findings, Row, finished_by_seed, normal_value
from xent_lab.report.load import Job, ReportError
from xent_lab.report.paired import Measured, Paired, resampled_name
from xent_lab.report.stats import TwoLevel, holm
from xent_lab.tracking import tags

ALPHA = 0.05
SUPPORTED, CONTRADICTED, UNDECIDED, NOT_TESTED = "supported", "contradicted", "undecided", "not tested"


class Part(NamedTuple):
    """One metric of a question."""

    metric: str
    measured: Measured | None

    @property
    def primary(self) -> TwoLevel | None:
        return None if self.measured is None else self.measured.primary


def decide(intervals: Sequence[TwoLevel | None], question: Question) -> tuple[float, bool]:
    """(p, whether the numbers lie on the predicted side) of a question from its metrics' primary intervals."""
    threshold = question.threshold
    ps = [math.nan if i is None else i.p(threshold) for i in intervals]
    if not ps or any(math.isnan(p) for p in ps):
        return math.nan, False
    sides = [(i.mean < threshold) == question.predicts_lower and i.mean != threshold for i in intervals]
    if all(sides):
        return max(ps), True
    return min(p for p, side in zip(ps, sides, strict=True) if not side), False


def verdict(p_holm: float, predicted_side: bool) -> str:
    """The one verdict rule: supported, contradicted, undecided, or not tested (see the module docstring)."""
    if math.isnan(p_holm):
        return NOT_TESTED
    if p_holm < ALPHA:
        return SUPPORTED if predicted_side else CONTRADICTED
    return UNDECIDED


class Answer(NamedTuple):
    question: Question
    row: Row | None
    baseline: Row | None  # None for a property of the row alone (`against`), or when not found
    parts: tuple[Part, ...]
    reason: str = ""  # why not tested
    p_holm: float = math.nan

    @property
    def decision(self) -> tuple[float, bool]:
        return decide([part.primary for part in self.parts], self.question)

    @property
    def p(self) -> float:
        return self.decision[0]

    @property
    def verdict(self) -> str:
        return verdict(self.p_holm, self.decision[1])


def declared(jobs: Sequence[Job], parent: Run | None = None) -> tuple[Question, ...]:
    """`study.questions` as the launch's parent run recorded it (tag `xent.questions`), else as the runs logged
    it (this launch's runs first: a reused run carries the questions of the launch that trained it); () when none."""
    logged = []
    if parent is not None:
        logged.append(
            (f"the parent run {parent.info.run_id}'s tag {tags.QUESTIONS}", parent.data.tags.get(tags.QUESTIONS))
        )
    logged += [(f"run {job.run_id}'s params", job.params.get(KEY)) for job in sorted(jobs, key=lambda j: j.reused)]
    for where, text in logged:
        if text is None:
            continue
        try:
            return parse_questions(ast.literal_eval(text))
        except (ValueError, SyntaxError) as exc:
            raise ReportError(f"invalid {KEY} in {where}: {exc}") from None
    return ()


def _matches(row: Row, spec: Mapping[str, str]) -> bool:
    values = {**row.values(), "dataset": row.dataset}
    return all(values.get(key) == normal_value(value) for key, value in spec.items())


def _one(rows: Sequence[Row], spec: Mapping[str, str], what: str) -> tuple[Row | None, str]:
    found = [row for row in rows if _matches(row, spec)]
    shown = ", ".join(f"{k}: {v}" for k, v in spec.items())
    if len(found) == 1:
        return found[0], ""
    if not found:
        return None, f"no {what} matches {{{shown}}}"
    return None, f"{len(found)} {what}s match {{{shown}}} ({', '.join(r.label for r in found)}): add keys"


def _answer(question: Question, findings: Findings, paired: Paired) -> Answer:
    strata = {name: [r for r in rows if _matches(r, question.where)] for name, rows in findings.strata.items()}
    row, reason = _one([r for rows in strata.values() for r in rows], question.row, "row")
    if row is None:
        where = ", ".join(f"{k}: {v}" for k, v in question.where.items())
        return Answer(question, None, None, (), reason + (f" where {{{where}}}" if where else ""))
    stratum = next(name for name, rows in strata.items() if row in rows)
    baseline = None
    if question.against is None:
        if question.baseline is None:
            baseline = findings.baselines.get(stratum)
            reason = "" if baseline is not None else f"the stratum {stratum} has no baseline"
        else:
            baseline, reason = _one(strata[stratum], question.baseline, "baseline row")
        if baseline is None:
            return Answer(question, row, None, (), reason)
    mine, theirs = finished_by_seed(row), None if baseline is None else finished_by_seed(baseline)
    parts = tuple(Part(metric, paired.measure(mine, theirs, metric)) for metric in question.metrics)
    missing = [p.metric for p in parts if p.measured is None]
    return Answer(question, row, baseline, parts, f"no value of {', '.join(missing)}" if missing else "")


def answer_questions(client: MlflowClient, findings: Findings, parent: Run | None = None) -> tuple[Answer, ...]:
    """Each declared question of the launch (`declared`) answered, Holm-adjusted over the declared questions
    alone."""
    jobs = [job for rows in findings.strata.values() for row in rows for job in row.jobs]
    questions = declared(jobs, parent)
    if not questions:
        return ()
    names = [n for q in questions for m in q.metrics if (n := resampled_name(m)) is not None]
    with tempfile.TemporaryDirectory(prefix="xent-questions-") as tmp:
        paired = Paired(client, Path(tmp), names)
        answers = [_answer(q, findings, paired) for q in questions]
    adjusted = holm([a.p for a in answers])
    return tuple(a._replace(p_holm=p) for a, p in zip(answers, adjusted, strict=True))
