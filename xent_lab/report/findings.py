"""Findings: every row of a study against its baseline row, over seeds and on the shared test set.

For each dataset, each row (variant and implementation) other than the baseline is compared with it on the
metrics of `COMPARED` (`paired.Paired`): d_s = row_s - baseline_s per seed, runs matched by seed, and

- the primary interval, `stats.two_level`: the seeds' noise and the shared test set's together;
- secondary: the seeds' Student-t interval (`stats.paired_test`) and, for each seed pair, the paired percentile
  bootstrap of the test samples (Koehn 2004), summarised as the mean of the bounds and the pairs excluding 0.

These comparisons are exploratory: unadjusted intervals, no test. The study's declared questions
(`study.questions`, answered in `questions`) are the confirmatory family. A built-in row whose custom twin is in
the launch is no comparison of its own: it goes to the custom-against-built-in equivalence (`twins`), unless the
baseline is chosen by implementation (`study.baseline: {loss.impl: ...}`). Runs that did not learn
(`learned.did_not_learn`) are kept out.

The baseline is `study.baseline` ({key: value} of the swept keys or any config key, from the runs'
params) when a study sets it, else chosen by `auto_baseline`. With `study.baseline_within` ([key, ...]),
the rows of a dataset are first split into strata by their values of those keys (`trainer.keep` among
them, the key of a run's two evaluations, though it is not swept), and each stratum has its own baseline:
a row is compared with the row that has the baseline's values on the baseline's keys and its own values
on the `within` keys.
"""

from __future__ import annotations

import ast
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from mlflow.tracking import MlflowClient

from xent_lab.report.learned import did_not_learn
from xent_lab.report.load import BUILTIN, CUSTOM, NOT_VARIANT, Groups, Job, ReportError
from xent_lab.report.paired import Measured, Paired, resampled_name
from xent_lab.report.stats import PairedTest, TwoLevel, paired_test
from xent_lab.tracking import tags

BASELINE_KEY = "study.baseline"
WITHIN_KEY = "study.baseline_within"
UNSET = "unset"  # a within key's value in a row whose runs do not have it
BASELINE_LOSS = "cce"


class Compared(NamedTuple):
    """One metric the findings compare: its MLflow name and its label."""

    metric: str
    label: str


COMPARED = (
    Compared(tags.TEST_ACCURACY, "accuracy"),
    Compared(tags.test_metric("nll"), "NLL"),
    Compared(tags.test_metric("brier"), "Brier"),
    Compared(tags.test_metric("debiased_ece"), "debiased ECE"),
    Compared(tags.TEST_ECE, "ECE"),
    Compared(tags.TEST_ECE_TS, "ECE after temperature scaling"),
)
# Custom against built-in: the metrics of the equivalence, and the margin within which the two are equivalent.
EQUIVALENCE = {tags.TEST_ACCURACY: 0.001, tags.test_metric("nll"): 0.001}


class Row(NamedTuple):
    """The jobs of one row of the results tables."""

    dataset: str
    variant: str
    impl: str
    jobs: tuple[Job, ...]

    @property
    def label(self) -> str:
        return f"`{self.variant}` [{self.impl}]"

    def values(self) -> dict[str, str]:
        """The row's config: its first job's params, `loss` and `loss.impl` from its tags, its swept values."""
        job = self.jobs[0]
        values = {**job.params, "loss": job.tags.get(tags.LOSS, ""), "loss.impl": job.impl, **job.overrides}
        return {key: normal_value(value) for key, value in values.items()}


class Bootstrap(NamedTuple):
    """The paired bootstrap over the seed pairs: means of the observed differences and of the bounds."""

    pairs: int
    difference: float
    low: float
    high: float
    excluding_zero: int  # seed pairs whose interval lies on one side of 0


class Comparison(NamedTuple):
    row: Row
    baseline: Row
    compared: Compared
    seeds: PairedTest  # secondary: the seeds' Student-t interval
    bootstrap: Bootstrap | None  # secondary; None: no seed pair logged comparable predictions, or bootstrap off
    primary: TwoLevel  # the interval with the seeds' and the test set's noise


class Findings(NamedTuple):
    comparisons: tuple[Comparison, ...]  # exploratory, in the tables' order: stratum, row, metric
    # dataset -> its baseline row (None: no row matches study.baseline); with study.baseline_within, one per
    # stratum: "dataset (key=value, ...)" -> its baseline row
    baselines: dict[str, Row | None]
    rule: str  # how the baselines were chosen
    strata: dict[str, list[Row]]  # the rows that share a baseline, by the names of `baselines`
    twins: tuple[Comparison, ...]  # each built-in row against its custom twin (equivalence)
    not_learned: tuple[tuple[Job, str], ...]  # runs kept out of every comparison, and why
    answers: tuple = ()  # `questions.Answer` of each declared question (`questions.answer_questions`)


def normal_value(value: object) -> str:
    """Config values as params and overrides spell them alike: `True` = `true`, `None` = `null`."""
    text = str(value).strip().lower()
    return "null" if text == "none" else text


def rows_of(groups: Groups) -> dict[str, list[Row]]:
    """dataset -> its rows, in the tables' order."""
    return {
        dataset: [
            Row(dataset, variant, impl, tuple(jobs))
            for variant, by_impl in variants.items()
            for impl, jobs in by_impl.items()
        ]
        for dataset, variants in groups.items()
    }


def baseline_spec(jobs: Sequence[Job]) -> dict[str, str] | None:
    """`study.baseline` as the runs logged it ({key: value}); None when unset. This launch's runs come first:
    a reused run may predate the key."""
    prefix = BASELINE_KEY + "."
    for job in sorted(jobs, key=lambda job: job.reused):
        spec = {k.removeprefix(prefix): v for k, v in job.params.items() if k.startswith(prefix)}
        if spec:
            return spec
    return None


def within_spec(jobs: Sequence[Job]) -> list[str]:
    """`study.baseline_within` as the runs logged it (the list's Python repr); [] when unset or null."""
    for job in sorted(jobs, key=lambda job: job.reused):
        text = job.params.get(WITHIN_KEY)
        if text is None or text == "None":
            continue
        try:
            keys = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            keys = None
        if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
            raise ReportError(f"invalid {WITHIN_KEY}={text} in run {job.run_id}'s params: expected a list of keys")
        return keys
    return []


def strata(rows: Mapping[str, Sequence[Row]], within: Sequence[str]) -> dict[str, list[Row]]:
    """The rows that share a baseline: each dataset's; with `within` keys, those of a dataset that agree on
    them, named "dataset (key=value, ...)"."""
    if not within:
        return {dataset: list(dataset_rows) for dataset, dataset_rows in rows.items()}
    known = {key for dataset_rows in rows.values() for row in dataset_rows for key in row.values()}
    unknown = [key for key in within if key not in known]
    if rows and unknown:
        raise ReportError(f"{WITHIN_KEY}={list(within)}: no run has the key(s) {', '.join(unknown)}")
    found: dict[str, list[Row]] = {}
    for dataset, dataset_rows in rows.items():
        for row in dataset_rows:
            values = row.values()
            shared = ", ".join(f"{key}={values.get(key, UNSET)}" for key in within)
            found.setdefault(f"{dataset} ({shared})", []).append(row)
    return found


def _within_rule(within: Sequence[str]) -> str:
    keys = ", ".join(f"`{key}`" for key in within)
    return (
        f"; within strata (`{WITHIN_KEY}`): each row against the row that has the baseline's values and its own "
        f"values of {keys}; the rows of a stratum without such a row have no baseline and are not compared"
    )


def _position(listing: str, value: str) -> int:
    """Index of `value` among the comma-separated swept values (after all of them when absent)."""
    values = [normal_value(v) for v in listing.split(",")]
    return values.index(value) if value in values else len(values)


def auto_baseline(rows: Sequence[Row], sweep: Mapping[str, str]) -> Row:
    """The `loss=cce` row, custom implementation, other swept keys at their first swept value; built-in
    when the rows differ by implementation only (ours against the reference); the first row without cce."""
    preferred = BUILTIN if len({row.variant for row in rows}) == 1 else CUSTOM

    def rank(row: Row) -> tuple:
        values = row.values()
        others = [key for key in sorted(row.jobs[0].overrides) if key not in (*NOT_VARIANT, "loss")]
        return (
            values.get("loss") != BASELINE_LOSS,
            row.impl != preferred,
            tuple(_position(sweep.get(key, ""), values[key]) for key in others),
            row.variant,
            row.impl,
        )

    return min(rows, key=rank)


AUTO_RULE = (
    f"automatic: the `loss={BASELINE_LOSS}` row, of the custom implementation where the rows have one (of the "
    "built-in when the rows differ by implementation only or have no custom row), other swept keys at their first "
    "swept value; "
    f"a study sets another with `{BASELINE_KEY}: {{KEY: VALUE, ...}}`"
)


def choose_baselines(
    rows: Mapping[str, Sequence[Row]], spec: Mapping[str, str] | None, sweep: Mapping[str, str]
) -> tuple[dict[str, Row | None], str]:
    """dataset (or stratum, `strata`) -> baseline row, and the rule in words. A `spec` must match one row in
    each dataset that has a match, and at least one row in all."""
    if not spec:
        return {dataset: auto_baseline(dataset_rows, sweep) for dataset, dataset_rows in rows.items()}, AUTO_RULE
    shown = ", ".join(f"{key}: {value}" for key, value in spec.items())
    baselines: dict[str, Row | None] = {}
    for dataset, dataset_rows in rows.items():
        matches = [r for r in dataset_rows if all(r.values().get(k) == normal_value(v) for k, v in spec.items())]
        if len(matches) > 1:
            raise ReportError(
                f"{BASELINE_KEY}={{{shown}}} matches {len(matches)} rows of {dataset} "
                f"({', '.join(r.label for r in matches)}); expected one row: add keys, e.g. loss.impl"
            )
        baselines[dataset] = matches[0] if matches else None
    if rows and not any(baselines.values()):
        every = ", ".join(r.label for dataset_rows in rows.values() for r in dataset_rows)
        raise ReportError(f"{BASELINE_KEY}={{{shown}}} matches no row; expected the values of one of: {every}")
    return baselines, f"`{BASELINE_KEY}: {{{shown}}}` from the study's config"


def finished_by_seed(row: Row) -> dict[str, Job]:
    """The row's finished runs that learned, by seed."""
    return {job.seed: job for job in row.jobs if job.finished and did_not_learn(job) is None}


def _combine(per_pair: Sequence) -> Bootstrap | None:
    if not per_pair:
        return None
    return Bootstrap(
        len(per_pair),
        float(np.mean([d.difference for d in per_pair])),
        float(np.mean([d.low for d in per_pair])),
        float(np.mean([d.high for d in per_pair])),
        sum(d.low > 0 or d.high < 0 for d in per_pair),
    )


def comparison(row: Row, baseline: Row, compared: Compared, measured: Measured | None) -> Comparison | None:
    if measured is None:
        return None
    seeds = paired_test(list(measured.observed))
    return Comparison(row, baseline, compared, seeds, _combine(measured.per_pair), measured.primary)


def _compare(row: Row, baseline: Row, paired: Paired, compared: Sequence[Compared] = COMPARED) -> list[Comparison]:
    """The comparisons of `row` with `baseline` over their common finished seeds."""
    base_jobs, row_jobs = finished_by_seed(baseline), finished_by_seed(row)
    found = (comparison(row, baseline, c, paired.measure(row_jobs, base_jobs, c.metric)) for c in compared)
    return [c for c in found if c is not None]


def twin_of(row: Row, rows: Sequence[Row]) -> Row | None:
    """The custom row of a built-in row's variant, when there is one."""
    if row.impl != BUILTIN:
        return None
    return next((r for r in rows if r.impl == CUSTOM and r.variant == row.variant), None)


def compute_findings(
    client: MlflowClient,
    groups: Groups,
    sweep: Mapping[str, str],
    spec: Mapping[str, str] | None = None,
    within: Sequence[str] | None = None,
) -> Findings:
    """Every row against its dataset's (or stratum's) baseline, in the tables' order, and each built-in row
    against its custom twin; the declared questions are answered apart (`questions.answer_questions`).

    `spec` overrides the runs' `study.baseline` ({key: value}), `within` their `study.baseline_within`
    ([key, ...]); `sweep` is the launch's swept key -> values."""
    rows = rows_of(groups)
    jobs = [job for dataset_rows in rows.values() for row in dataset_rows for job in row.jobs]
    within = within_spec(jobs) if within is None else list(within)
    shared = strata(rows, within)
    chosen = spec or baseline_spec(jobs)
    baselines, rule = choose_baselines(shared, chosen, sweep)
    rule += _within_rule(within) if within else ""
    by_impl = "loss.impl" in (chosen or {})
    comparisons: list[Comparison] = []
    twins: list[Comparison] = []
    with tempfile.TemporaryDirectory(prefix="xent-findings-") as tmp:
        paired = Paired(client, Path(tmp), [n for c in COMPARED if (n := resampled_name(c.metric)) is not None])
        for name, stratum_rows in shared.items():
            baseline = baselines[name]
            for row in stratum_rows:
                twin = twin_of(row, stratum_rows)
                if twin is not None:
                    twins += _compare(row, twin, paired, [c for c in COMPARED if c.metric in EQUIVALENCE])
                if baseline is not None and row is not baseline and (twin is None or by_impl):
                    comparisons += _compare(row, baseline, paired)
    not_learned = tuple((job, why) for job in jobs if (why := did_not_learn(job)) is not None)
    return Findings(tuple(comparisons), baselines, rule, shared, tuple(twins), not_learned)
