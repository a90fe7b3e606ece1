"""The top of REPORT.md: a summary paragraph and one headline table per dataset and evaluation.

A table's rows are the study's losses, one implementation each (the custom one where a variant ran both: the
built-in twin is in the appendix's equivalence table); its columns accuracy, NLL, the smooth ECE (Błasiok &
Nakkiran's low-bias estimator) before and after temperature scaling, and T, each as mean [95% t interval over
seeds] with Δ against the row's baseline (the Findings' baseline of its stratum, or that baseline's custom twin).
A row with a run that did not learn (`learned`) is marked and not compared.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import NamedTuple

from xent_lab.report import learned
from xent_lab.report.findings import Findings, Row, finished_by_seed, rows_of, strata, within_spec
from xent_lab.report.load import CUSTOM, KEEP_KEY, NOT_VARIANT, Groups
from xent_lab.report.markdown import NO_VALUE, Column, interval_cell, markdown_table
from xent_lab.report.narrative import REGIME_LABEL, regime, signed, span
from xent_lab.report.stats import CONFIDENCE, PairedTest, Summary, finished_values, paired_test, summarize
from xent_lab.tracking import tags

HEADING = "## Headline"
SUMMARY_HEADING = "## Summary"
FIXED = ("dataset", KEEP_KEY)  # swept keys a headline table fixes: it is one dataset and one evaluation
SMOOTH_ECE = tags.test_metric("smooth_ece")
SMOOTH_ECE_TS = tags.recal_metric("temperature", "smooth_ece")
COLUMNS = (
    Column(tags.TEST_ACCURACY, "accuracy", 4),
    Column(tags.test_metric("nll"), "NLL", 4),
    Column(SMOOTH_ECE, "smooth ECE", 4),
    Column(SMOOTH_ECE_TS, "smooth ECE after TS", 4),
    Column(tags.TEST_TEMPERATURE, "T", 3),
)


class Line(NamedTuple):
    """One row of a headline table."""

    row: Row
    baseline: Row | None  # None: no baseline in its stratum; the row itself: it is the baseline
    unlearned: int  # its finished runs that did not learn
    values: tuple[Summary | None, ...]  # per COLUMNS
    deltas: tuple[PairedTest | None, ...]  # per COLUMNS, row − baseline by seed; None when not compared

    @property
    def is_baseline(self) -> bool:
        return self.baseline is not None and (self.baseline.variant, self.baseline.impl) == (
            self.row.variant,
            self.row.impl,
        )

    @property
    def compared(self) -> bool:
        return self.baseline is not None and not self.is_baseline and not self.unlearned


class Table(NamedTuple):
    dataset: str
    view: str | None  # the trainer.keep value, None when the runs have one evaluation
    lines: tuple[Line, ...]

    @property
    def title(self) -> str:
        return view_title(self.dataset, self.view)


def view_title(dataset: str, keep: str | None) -> str:
    """How the report names a dataset's evaluation: "mnist", or "imdb, `trainer.keep=last`"."""
    return dataset if keep is None else f"{dataset}, `{KEEP_KEY}={keep}`"


def _shown(rows: Sequence[Row]) -> list[Row]:
    """One row per variant: the custom implementation where there are several."""
    by_variant: dict[str, Row] = {}
    for row in rows:
        if row.variant not in by_variant or row.impl == CUSTOM:
            by_variant[row.variant] = row
    return list(by_variant.values())


def _baselines(groups: Groups, findings: Findings | None) -> dict[tuple[str, str], Row]:
    """(dataset, variant) of each shown row -> its baseline row among the shown ones."""
    if findings is None:
        return {}
    rows = rows_of(groups)
    jobs = [job for dataset_rows in rows.values() for row in dataset_rows for job in row.jobs]
    found = {}
    for name, stratum in strata(rows, within_spec(jobs)).items():
        base = findings.baselines.get(name)
        if base is None:
            continue
        twin = next((r for r in _shown(stratum) if r.variant == base.variant), None)
        found.update({(row.dataset, row.variant): twin for row in stratum if twin is not None})
    return found


def _delta(row: Row, base: Row, metric: str) -> PairedTest | None:
    mine, theirs = finished_by_seed(row), finished_by_seed(base)
    pairs = [(mine[s].metric(metric), theirs[s].metric(metric)) for s in sorted(mine.keys() & theirs.keys())]
    differences = [a - b for a, b in pairs if a is not None and b is not None]
    return paired_test(differences) if differences else None


def _line(row: Row, base: Row | None, unlearned: Collection[str]) -> Line:
    bad = sum(job.finished and job.run_id in unlearned for job in row.jobs)
    values = tuple(summarize(finished_values(row.jobs, c.metric)) for c in COLUMNS)
    line = Line(row, base, bad, values, (None,) * len(COLUMNS))
    if not line.compared:
        return line
    return line._replace(deltas=tuple(_delta(row, base, c.metric) for c in COLUMNS))


def compute_headline(groups: Groups, findings: Findings | None, unlearned: Collection[str] = ()) -> list[Table]:
    """One table per dataset and evaluation (`trainer.keep`), in the groups' order."""
    baselines = _baselines(groups, findings)
    tables = []
    for dataset, dataset_rows in rows_of(groups).items():
        views: dict[str | None, list[Row]] = {}
        for row in _shown(dataset_rows):
            views.setdefault(row.jobs[0].overrides.get(KEEP_KEY), []).append(row)
        for view, rows in views.items():
            lines = [_line(row, baselines.get((dataset, row.variant)), unlearned) for row in rows]
            lines.sort(key=lambda line: not line.is_baseline)  # the baselines first
            tables.append(Table(dataset, view, tuple(lines)))
    return tables


def _cell(line: Line, index: int) -> str:
    column, value, delta = COLUMNS[index], line.values[index], line.deltas[index]
    if value is None:
        return NO_VALUE
    shown = f"{value.mean:.{column.digits}f}" + (f" {interval_cell(value, column.digits)}" if value.n > 1 else "")
    if delta is not None:
        shown += f"<br>Δ {signed(delta.mean)} {span(delta.low, delta.high)}"
    return shown


def short_label(row: Row) -> str:
    """The row's swept values but those its table already fixes (dataset, evaluation), and its implementation
    when it is not the custom one: "`loss=focal`", "`loss=cce, loss.class_weight=null` [builtin]"."""
    values = {k: v for k, v in row.jobs[0].overrides.items() if k not in (*NOT_VARIANT, *FIXED)}
    text = ", ".join(f"{key}={value}" for key, value in values.items()) or row.variant
    return f"`{text}`" + ("" if row.impl == CUSTOM else f" [{row.impl}]")


def _label(line: Line) -> str:
    label = short_label(line.row)
    if line.is_baseline:
        label += " (baseline)"
    if line.unlearned:
        runs = sum(job.finished for job in line.row.jobs)
        label += f" **did not learn: {line.unlearned}/{runs} runs**"
    return label


def headline_section(tables: Sequence[Table]) -> list[str]:
    """The headline tables, with how to read them."""
    lines = [
        HEADING,
        "",
        f"Mean over seeds [{CONFIDENCE:.0%} Student-t interval over seeds]; Δ: row − baseline by seed, mean "
        f"[{CONFIDENCE:.0%} t interval]. Smooth ECE: the kernel-smoothed ECE of Błasiok & Nakkiran (low bias at "
        "these test sizes); TS: temperature scaling fitted on the validation split; T: the fitted temperature. "
        "One implementation per loss (the custom one where both ran). A row with a run that did not learn is marked "
        f"and not compared: {learned.RULE}.",
        "",
    ]
    if not tables:
        return [*lines, "No finished runs.", ""]
    for table in tables:
        rows = [[_label(line), *(_cell(line, i) for i in range(len(COLUMNS)))] for line in table.lines]
        lines += [f"### {table.title}", "", *markdown_table(["loss", *(c.label for c in COLUMNS)], rows), ""]
    return lines


def _best(table: Table, index: int, lowest: bool = True) -> Line | None:
    candidates = [line for line in table.lines if line.values[index] is not None and not line.unlearned]
    if not candidates:
        return None
    pick = min if lowest else max
    return pick(candidates, key=lambda line: line.values[index].mean)


def _reading(table: Table, index: int, lowest: bool = True) -> str:
    best = _best(table, index, lowest)
    if best is None:
        return ""
    column, value, delta = COLUMNS[index], best.values[index], best.deltas[index]
    text = f"{'lowest' if lowest else 'highest'} {column.label}: {short_label(best.row)} {value.mean:.{column.digits}f}"
    if delta is not None:
        text += f" (Δ {signed(delta.mean)} {span(delta.low, delta.high)})"
    return text


def _answer(table: Table) -> str:
    parts = [r for i, lowest in ((2, True), (3, True), (1, True), (0, False)) if (r := _reading(table, i, lowest))]
    base = next((line for line in table.lines if line.is_baseline), None)
    temperature = None if base is None else base.values[4]
    if temperature is not None:
        side = "above" if temperature.mean > 1 else "not above"
        parts.append(f"the baseline's T {temperature.mean:.3f}, {side} 1")
    gone = [short_label(line.row) for line in table.lines if line.unlearned]
    if gone:
        parts.append("did not learn: " + ", ".join(gone))
    return f"{table.title}: " + "; ".join(parts) if parts else f"{table.title}: no numbers"


def summary_section(
    study: str, groups: Groups, tables: Sequence[Table], answers: Mapping[str, int] | None = None
) -> list[str]:
    """The opening paragraph: what is compared, the declared questions' verdicts (`answers`: verdict -> count,
    when the report has them) and the headline numbers; then the regime, one line per dataset."""
    variants = list(dict.fromkeys(short_label(line.row) for table in tables for line in table.lines))
    bases = sorted({short_label(line.row) for table in tables for line in table.lines if line.is_baseline})
    text = (
        f"**{study}** compares {len(variants)} losses ({', '.join(variants)}) with "
        f"{' and '.join(bases) or 'no baseline'} in accuracy, NLL and calibration, in the regime below. "
    )
    if answers:
        counts = ", ".join(f"{n} {verdict}" for verdict, n in answers.items())
        text += f"Of its {sum(answers.values())} declared questions: {counts}. "
    text += "Headline numbers (mean over seeds): " + ". ".join(_answer(table) for table in tables) + "."
    regimes = [
        REGIME_LABEL + regime(dataset, [job for by_impl in rows.values() for jobs in by_impl.values() for job in jobs])
        for dataset, rows in groups.items()
    ]
    return [SUMMARY_HEADING, "", text, "", *regimes, ""]
