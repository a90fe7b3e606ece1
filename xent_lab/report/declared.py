"""REPORT.md's declared questions: the study's confirmatory family, each answered by the one verdict rule.

The baseline; the answers block (`readme.answers_lines`: question, verdict, numbers), which the report's summary
counts and README.md's "What they found" reads back; each question's parts with their p-values; then, for a study
with `study.claims`, the paper's claims, answered by the same questions.
"""

from __future__ import annotations

from xent_lab.report import readme
from xent_lab.report.claims import Claims, claims_section
from xent_lab.report.findings import Findings
from xent_lab.report.narrative import answer_numbers, declared_lines

HEADING = "## Declared questions"


def answers_block(findings: Findings) -> list[str]:
    """The answers block: question, verdict and numbers, one row per declared question."""
    answers = [
        readme.Answer(
            f"{a.question.id}" + (f": {a.question.label}" if a.question.label else ""), a.verdict, answer_numbers(a)
        )
        for a in findings.answers
    ]
    return [*readme.answers_lines(answers), ""] if answers else []


def questions_section(findings: Findings, claims: Claims | None) -> list[str]:
    """The declared questions' whole section, the claims against a paper after them."""
    lines = [HEADING, "", *declared_lines(findings, answers_block(findings))]
    return lines + (claims_section(claims) if claims is not None else [])
