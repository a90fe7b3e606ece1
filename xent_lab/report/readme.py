"""The answers of a study in one format, written into REPORT.md and read back from it for README.md's block.

A report's declared questions are answered in an answers block (`answers_lines`): between the lines
`<!-- answers:start -->` and `<!-- answers:end -->`, a table with one row per question, its columns the question,
the verdict and the numbers behind it (`| question | verdict | numbers |`, cells escaped as `markdown_table`
escapes them). `report_answers` reads the rows back; the summary counts the verdicts from them, and
`update_readme` rewrites the lines between `<!-- findings:start -->` and `<!-- findings:end -->` of README.md
with, for each `experiments/*/REPORT.md`, its regime (the `- **Regime:** ` lines of its Summary) and its answers,
linked to the report. Run by `python -m xent_lab.report --readme README.md`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from xent_lab import atomic
from xent_lab.report.headline import SUMMARY_HEADING
from xent_lab.report.load import ReportError
from xent_lab.report.markdown import markdown_table
from xent_lab.report.narrative import REGIME_LABEL

START, END = "<!-- findings:start -->", "<!-- findings:end -->"
ANSWERS_START, ANSWERS_END = "<!-- answers:start -->", "<!-- answers:end -->"
HEADER = ("question", "verdict", "numbers")
_SPLIT = re.compile(r"(?<!\\)\|")  # a cell boundary: a pipe not escaped by markdown_table


class Answer(NamedTuple):
    """One declared question as the report answers it: the question, its verdict, the numbers behind it."""

    question: str
    verdict: str
    numbers: str


def answers_lines(answers: Sequence[Answer]) -> list[str]:
    """The answers block: the markers around a table of one row per question."""
    return [ANSWERS_START, *markdown_table(HEADER, answers), ANSWERS_END]


def parse_answers(lines: Sequence[str]) -> list[Answer]:
    """The answers of the first answers block among `lines`; none without one."""
    if ANSWERS_START not in lines:
        return []
    block = lines[lines.index(ANSWERS_START) + 1 :]
    block = block[: block.index(ANSWERS_END)] if ANSWERS_END in block else block
    answers = []
    for line in block[2:]:  # after the header and its rule
        cells = [cell.strip().replace("\\|", "|") for cell in _SPLIT.split(line.strip())[1:-1]]
        if len(cells) == len(HEADER):
            answers.append(Answer(*cells))
    return answers


def verdict_counts(answers: Sequence[Answer]) -> dict[str, int]:
    """verdict -> how many questions have it, in the order they first appear."""
    counts: dict[str, int] = {}
    for answer in answers:
        counts[answer.verdict] = counts.get(answer.verdict, 0) + 1
    return counts


def report_answers(report: Path) -> tuple[list[str], list[Answer]]:
    """The regime lines (without their label) and the answers of a REPORT.md."""
    lines = report.read_text(encoding="utf-8").splitlines()
    summary = lines[lines.index(SUMMARY_HEADING) + 1 :] if SUMMARY_HEADING in lines else []
    summary = summary[: next((i for i, line in enumerate(summary) if line.startswith("## ")), len(summary))]
    regimes = [line.removeprefix(REGIME_LABEL) for line in summary if line.startswith(REGIME_LABEL)]
    return regimes, parse_answers(lines)


def findings_block(reports: Sequence[Path], base: Path) -> list[str]:
    """The block's lines: per report, a linked heading line with the regime, then each declared question with
    its verdict and numbers."""
    lines = [
        "Generated from the committed reports by `python -m xent_lab.report --readme README.md`: each study's "
        "regime and its declared questions, each with its verdict and the numbers behind it; the report has the "
        "rest and the method.",
        "",
    ]
    for report in sorted(reports):
        link = Path(os.path.relpath(report, base)).as_posix()
        title = f"**[{report.parent.name}]({link})**"
        regimes, answers = report_answers(report)
        if not answers:
            lines += [
                f"- {title}: no answered questions in its report yet; rebuild it with `python -m xent_lab.report "
                f"{report.parent.name}`.",
                "",
            ]
            continue
        lines.append(f"- {title}" + (f" ({'; '.join(regimes)})" if regimes else "") + ":")
        lines += [f"  - {a.question}: **{a.verdict}** ({a.numbers})" for a in answers]
        lines.append("")
    return lines


def replace_block(text: str, block: Sequence[str], where: str) -> str:
    """`text` with the lines between the START and END marker lines replaced by `block`."""
    lines = text.splitlines()
    starts, ends = (
        [i for i, x in enumerate(lines) if x.strip() == START],
        [i for i, x in enumerate(lines) if x.strip() == END],
    )
    if len(starts) != 1 or len(ends) != 1 or starts[0] > ends[0]:
        raise ReportError(
            f"{where}: expected one line {START} followed by one line {END}, found {len(starts)} start and "
            f"{len(ends)} end marker(s)" + (" in the wrong order" if starts and ends and starts[0] > ends[0] else "")
        )
    new = [*lines[: starts[0] + 1], *block, *lines[ends[0] :]]
    return "\n".join(new) + ("\n" if text.endswith("\n") else "")


def update_readme(readme: Path, experiments: Path | None = None) -> bool:
    """Rewrites `readme`'s findings block from `experiments`/*/REPORT.md (default: experiments/ beside the
    README); returns whether the file changed. Raises ReportError when the markers are missing."""
    readme = Path(readme)
    if not readme.is_file():
        raise ReportError(f"no README at {readme}: pass the path of an existing README.md to --readme")
    experiments = Path(experiments) if experiments is not None else readme.parent / "experiments"
    text = readme.read_text(encoding="utf-8")
    new = replace_block(text, findings_block(list(experiments.glob("*/REPORT.md")), readme.parent), str(readme))
    if new != text:
        atomic.write_text(readme, new)
    return new != text
