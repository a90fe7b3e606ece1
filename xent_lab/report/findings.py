"""Findings: every row of a study against its baseline row, over seeds and on the shared test set.

For each dataset, each row (variant and implementation) other than the baseline is compared with it on
test accuracy, NLL, ECE and ECE after temperature scaling:

- over seeds: the runs are matched by seed, d_s = row_s - baseline_s, and `stats.paired_test` gives the
  mean of d, its 95% Student-t interval and the paired t-test p-value;
- on the test set: for each seed pair, `calibration.paired_bootstrap` scores both runs' logged test
  predictions on the same resamples (Koehn 2004); over the pairs, the mean of the observed differences
  and the mean of the interval bounds, and how many pairs' intervals exclude 0;
- the p-values of all the report's tests are Holm-adjusted (`stats.holm`); a finding is significant when
  its adjusted p-value is below 5%.

The baseline is `study.baseline` ({key: value} of the swept keys or any config key, from the runs'
params) when a study sets it, else chosen by `auto_baseline`. With `study.baseline_within` ([key, ...]),
the rows of a dataset are first split into strata by their values of those keys (`trainer.keep` among
them, the key of a run's two evaluations, though it is not swept), and each stratum has its own baseline:
a row is compared with the row that has the baseline's values on the baseline's keys and its own values
on the `within` keys.
"""

from __future__ import annotations

import ast
import math
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from mlflow.tracking import MlflowClient

from xent_lab import calibration, heads
from xent_lab.report.load import BUILTIN, CUSTOM, NOT_VARIANT, Groups, Job, ReportError, job_predictions
from xent_lab.report.stats import PairedTest, holm, paired_test
from xent_lab.tracking import tags

ALPHA = 0.05
BASELINE_KEY = "study.baseline"
WITHIN_KEY = "study.baseline_within"
UNSET = "unset"  # a within key's value in a row whose runs do not have it
BASELINE_LOSS = "cce"
DEFAULT_RESAMPLES = 1000


class Compared(NamedTuple):
    """One metric the findings compare: its MLflow name, its label, its paired_bootstrap metric."""

    metric: str
    label: str
    bootstrap: str
    scaled: bool  # bootstrapped on the temperature-scaled predictions


COMPARED = (
    Compared(tags.TEST_ACCURACY, "accuracy", "accuracy", False),
    Compared(tags.test_metric("nll"), "NLL", "nll", False),
    Compared(tags.TEST_ECE, "ECE", "ece", False),
    Compared(tags.TEST_ECE_TS, "ECE after temperature scaling", "ece", True),
)


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
    seeds: PairedTest
    bootstrap: Bootstrap | None  # None: no seed pair logged comparable predictions, or bootstrap off
    p_holm: float = math.nan

    @property
    def verdict(self) -> str:
        if math.isnan(self.p_holm):
            return "not tested"
        return "significant" if self.p_holm < ALPHA else "not significant"


class Findings(NamedTuple):
    comparisons: tuple[Comparison, ...]  # sorted by significance: adjusted p-value, then effect size
    # dataset -> its baseline row (None: no row matches study.baseline); with study.baseline_within, one per
    # stratum: "dataset (key=value, ...)" -> its baseline row
    baselines: dict[str, Row | None]
    rule: str  # how the baselines were chosen


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
    f"automatic: the `loss={BASELINE_LOSS}` row with the custom implementation (the built-in when the rows differ "
    "by implementation only), other swept keys at their first swept value; "
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


class _Pairs:
    """Seed pairs of a row and its baseline, with the paired bootstrap of their test predictions."""

    def __init__(self, client: MlflowClient, folder: Path) -> None:
        self.client, self.folder = client, folder
        self.predictions: dict[str, calibration.Predictions | None] = {}

    def _predictions(self, job: Job) -> calibration.Predictions | None:
        key = job.predictions_artifact + job.run_id  # a run's two evaluations have their own predictions
        if key not in self.predictions:
            self.predictions[key] = job_predictions(self.client, job, self.folder)
        return self.predictions[key]

    def _probabilities(self, job: Job, predictions: calibration.Predictions, scaled: bool) -> np.ndarray | None:
        if not scaled:
            return heads.probabilities(predictions.logits, predictions.head)
        temperature = job.metric(tags.TEST_TEMPERATURE)
        return None if temperature is None else heads.probabilities(predictions.logits / temperature, predictions.head)

    def bootstrap(self, base: Job, job: Job, scaled: bool) -> dict[str, calibration.PairedDifference] | None:
        """{metric: row - baseline} on the same resamples; None without comparable predictions or resamples."""
        params = base.params
        resamples = int(params.get("calibration.bootstrap", DEFAULT_RESAMPLES))
        a, b = self._predictions(base), self._predictions(job)
        if resamples == 0 or a is None or b is None or not np.array_equal(a.labels, b.labels):
            return None
        probs = [self._probabilities(j, p, scaled) for j, p in ((base, a), (job, b))]
        if probs[0] is None or probs[1] is None:
            return None
        metrics = tuple(sorted({c.bootstrap for c in COMPARED if c.scaled == scaled}))
        return calibration.paired_bootstrap(
            *probs,
            a.labels,
            metrics,
            n_resamples=resamples,
            seed=int(params.get("calibration.bootstrap_seed", 0)),
            n_bins=int(params.get("calibration.n_bins", 15)),
        )


def finished_by_seed(row: Row) -> dict[str, Job]:
    return {job.seed: job for job in row.jobs if job.finished}


def _combine(differences: Sequence[calibration.PairedDifference]) -> Bootstrap | None:
    if not differences:
        return None
    return Bootstrap(
        len(differences),
        float(np.mean([d.difference for d in differences])),
        float(np.mean([d.low for d in differences])),
        float(np.mean([d.high for d in differences])),
        sum(d.low > 0 or d.high < 0 for d in differences),
    )


def _compare(row: Row, baseline: Row, pairs: _Pairs) -> list[Comparison]:
    """The four comparisons of `row` with `baseline` over their common finished seeds."""
    base_jobs, row_jobs = finished_by_seed(baseline), finished_by_seed(row)
    seeds = sorted(base_jobs.keys() & row_jobs.keys())
    boots = {scaled: [pairs.bootstrap(base_jobs[s], row_jobs[s], scaled) for s in seeds] for scaled in (False, True)}
    comparisons = []
    for compared in COMPARED:
        values = [(row_jobs[s].metric(compared.metric), base_jobs[s].metric(compared.metric)) for s in seeds]
        differences = [r - b for r, b in values if r is not None and b is not None]
        if not differences:
            continue
        boot = [d[compared.bootstrap] for d in boots[compared.scaled] if d is not None]
        comparisons.append(Comparison(row, baseline, compared, paired_test(differences), _combine(boot)))
    return comparisons


def _significance(comparison: Comparison) -> tuple:
    p = comparison.p_holm
    return (math.isnan(p), p, -abs(comparison.seeds.mean))


def compute_findings(
    client: MlflowClient,
    groups: Groups,
    sweep: Mapping[str, str],
    spec: Mapping[str, str] | None = None,
    within: Sequence[str] | None = None,
) -> Findings:
    """Every row against its dataset's (or stratum's) baseline, Holm-adjusted across the report, most
    significant first.

    `spec` overrides the runs' `study.baseline` ({key: value}), `within` their `study.baseline_within`
    ([key, ...]); `sweep` is the launch's swept key -> values."""
    rows = rows_of(groups)
    jobs = [job for dataset_rows in rows.values() for row in dataset_rows for job in row.jobs]
    within = within_spec(jobs) if within is None else list(within)
    shared = strata(rows, within)
    baselines, rule = choose_baselines(shared, spec or baseline_spec(jobs), sweep)
    rule += _within_rule(within) if within else ""
    comparisons: list[Comparison] = []
    with tempfile.TemporaryDirectory(prefix="xent-findings-") as tmp:
        pairs = _Pairs(client, Path(tmp))
        for name, stratum_rows in shared.items():
            baseline = baselines[name]
            if baseline is not None:
                for row in stratum_rows:
                    if row is not baseline:
                        comparisons += _compare(row, baseline, pairs)
    adjusted = holm([c.seeds.p for c in comparisons])
    ranked = sorted((c._replace(p_holm=p) for c, p in zip(comparisons, adjusted)), key=_significance)
    return Findings(tuple(ranked), baselines, rule)
