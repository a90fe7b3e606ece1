"""README.md's findings block, generated from the committed reports' Findings sections.

`update_readme` rewrites the lines between `<!-- findings:start -->` and `<!-- findings:end -->` with,
for each `experiments/*/REPORT.md`, its regime and its first findings (they are ranked by significance),
and the verdicts of its "Against the paper" section when it has one, linked to the report. Run by
`python -m xent_lab.report --readme README.md`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from xent_lab import atomic
from xent_lab.report.claims import HEADING as CLAIMS_HEADING
from xent_lab.report.load import ReportError
from xent_lab.report.narrative import FINDINGS_HEADING, REGIME_LABEL

START, END = "<!-- findings:start -->", "<!-- findings:end -->"
TOP = 3
_NUMBERED = re.compile(r"\d+\. (.+)")
PAPER = CLAIMS_HEADING.removeprefix("## Against the paper: ")
_CLAIM_ROW = re.compile(r"\| (C\d+) \| [^|]+ \| \*\*([^*]+)\*\* \|")  # | C1 | statement | **verdict** | ...


def report_findings(report: Path) -> tuple[list[str], list[str]] | None:
    """The regime lines (without their label) and the numbered findings of a REPORT.md; None without a
    Findings section."""
    lines = report.read_text(encoding="utf-8").splitlines()
    if FINDINGS_HEADING not in lines:
        return None
    section = lines[lines.index(FINDINGS_HEADING) + 1 :]
    section = section[: next((i for i, line in enumerate(section) if line.startswith("#")), len(section))]
    regimes = [line.removeprefix(REGIME_LABEL) for line in section if line.startswith(REGIME_LABEL)]
    return regimes, [m.group(1) for line in section if (m := _NUMBERED.fullmatch(line))]


def report_claims(report: Path) -> list[str]:
    """One line per evaluation of a REPORT.md's "Against the paper" section, e.g. `imdb: last epoch: C1 holds,
    C2 does not hold, ...`; none without the section."""
    lines = report.read_text(encoding="utf-8").splitlines()
    if CLAIMS_HEADING not in lines:
        return []
    section = lines[lines.index(CLAIMS_HEADING) + 1 :]
    section = section[: next((i for i, line in enumerate(section) if line.startswith("## ")), len(section))]
    views: dict[str, list[str]] = {}
    heading = None
    for line in section:
        if line.startswith("### "):
            heading = line.removeprefix("### ")
        elif heading is not None and (m := _CLAIM_ROW.match(line)):
            views.setdefault(heading, []).append(f"{m.group(1)} {m.group(2)}")
    return [f"{heading}: {', '.join(verdicts)}" for heading, verdicts in views.items()]


def findings_block(reports: Sequence[Path], base: Path, top: int = TOP) -> list[str]:
    """The block's lines: per report, a linked heading line with the regime, then its first `top` findings."""
    lines = [
        f"Generated from the committed reports by `python -m xent_lab.report --readme README.md`: each "
        f"study's regime and its {top} most significant findings (Holm-adjusted over the report); the "
        "report has the rest and the method.",
        "",
    ]
    for report in sorted(reports):
        link = Path(os.path.relpath(report, base)).as_posix()
        found = report_findings(report)
        title = f"**[{report.parent.name}]({link})**"
        if found is None:
            lines += [
                f"- {title}: no Findings section yet; rebuild it with `python -m xent_lab.report "
                f"{report.parent.name}`.",
                "",
            ]
            continue
        regimes, findings = found
        lines.append(f"- {title} ({'; '.join(regimes)}):")
        lines += [f"  - {finding}" for finding in findings[:top]] or ["  - no comparison."]
        lines += [
            f"  - against {CLAIMS_HEADING.removeprefix('## Against the paper: ')}, {c}" for c in report_claims(report)
        ]
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


def update_readme(readme: Path, experiments: Path | None = None, top: int = TOP) -> bool:
    """Rewrites `readme`'s findings block from `experiments`/*/REPORT.md (default: experiments/ beside the
    README); returns whether the file changed. Raises ReportError when the markers are missing."""
    readme = Path(readme)
    if not readme.is_file():
        raise ReportError(f"no README at {readme}: pass the path of an existing README.md to --readme")
    experiments = Path(experiments) if experiments is not None else readme.parent / "experiments"
    text = readme.read_text(encoding="utf-8")
    new = replace_block(text, findings_block(list(experiments.glob("*/REPORT.md")), readme.parent, top), str(readme))
    if new != text:
        atomic.write_text(readme, new)
    return new != text
