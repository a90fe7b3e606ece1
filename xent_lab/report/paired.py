"""Per-seed differences of a row against its baseline on one metric, with the test set's resamples of each.

A metric is named as the runs log it: `test/<m>` for a metric of `calibration.METRICS`, `test/<m>_ts` for the same
after temperature scaling (the logits divided by the run's fitted `test/temperature`), or a temperature metric
(`test/temperature`, `test/log_temperature`, `test/abs_log_temperature`: fitted on validation, so without test-set
noise). For each seed both runs have, d_s = row_s - baseline_s (or the row's value alone, without a baseline);
`calibration.paired_resamples` scores both runs' logged test predictions on the same resamples of the shared test
set, with the same draws for every seed (the runs' `calibration.bootstrap_seed`), which is what the two-level
interval (`stats.two_level`) needs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from mlflow.tracking import MlflowClient

from xent_lab import calibration, heads
from xent_lab.questions import ABS_LOG_TEMPERATURE, LOG_TEMPERATURE, TEMPERATURE
from xent_lab.report.load import Job, job_predictions
from xent_lab.report.stats import TwoLevel, two_level
from xent_lab.tracking import tags

DEFAULT_RESAMPLES = 1000
TS_SUFFIX = "_ts"


class Measured(NamedTuple):
    """One metric of a row against its baseline over their common seeds."""

    seeds: tuple[str, ...]
    observed: tuple[float, ...]  # d_s per seed
    resampled: np.ndarray | None  # (n, B) d_s on the shared test resamples; None: not from predictions
    per_pair: tuple[calibration.PairedDifference, ...]  # each seed's test-set percentile interval

    @property
    def primary(self) -> TwoLevel:
        return two_level(self.observed, self.resampled)


def _temperature(job: Job, metric: str) -> float | None:
    t = job.metric(tags.TEST_TEMPERATURE)
    if t is None or (metric != TEMPERATURE and t <= 0):
        return None
    return {TEMPERATURE: t, LOG_TEMPERATURE: math.log(t), ABS_LOG_TEMPERATURE: abs(math.log(t))}[metric]


def _percentile(values: np.ndarray, observed: float) -> calibration.PairedDifference:
    low, high = np.quantile(values, [0.025, 0.975])
    return calibration.PairedDifference(observed, float(low), float(high))


class Paired:
    """Reads and caches the runs' test predictions and their resampled `metrics` (names of METRICS), under
    `folder`."""

    def __init__(self, client: MlflowClient, folder: Path, metrics: Sequence[str]) -> None:
        self.client, self.folder = client, folder
        self.metrics = tuple(dict.fromkeys(metrics))
        self.predictions: dict[str, calibration.Predictions | None] = {}
        self.resampled: dict[tuple, dict[str, tuple[float, np.ndarray]] | None] = {}

    def _predictions(self, job: Job) -> calibration.Predictions | None:
        key = job.predictions_artifact + job.run_id  # a run's two evaluations have their own predictions
        if key not in self.predictions:
            self.predictions[key] = job_predictions(self.client, job, self.folder)
        return self.predictions[key]

    def _probabilities(self, job: Job, scaled: bool) -> tuple[np.ndarray, np.ndarray] | None:
        predictions = self._predictions(job)
        if predictions is None:
            return None
        temperature = job.metric(tags.TEST_TEMPERATURE) if scaled else 1.0
        if temperature is None or temperature <= 0:
            return None
        return heads.probabilities(predictions.logits / temperature, predictions.head), predictions.labels

    def _resamples(self, job: Job, base: Job | None, scaled: bool) -> dict[str, tuple[float, np.ndarray]] | None:
        """{metric of METRICS: (d on the test set, d on each resample)}, all metrics at once, cached."""
        key = (job.run_id, job.keep, None if base is None else (base.run_id, base.keep), scaled)
        if key not in self.resampled:
            self.resampled[key] = None
            params = job.params
            resamples = int(params.get("calibration.bootstrap", DEFAULT_RESAMPLES))
            mine = self._probabilities(job, scaled)
            theirs = None if base is None else self._probabilities(base, scaled)
            comparable = theirs is None or (mine is not None and np.array_equal(mine[1], theirs[1]))
            if resamples > 0 and mine is not None and (base is None or theirs is not None) and comparable:
                self.resampled[key] = calibration.paired_resamples(
                    None if theirs is None else theirs[0],
                    mine[0],
                    mine[1],
                    self.metrics,
                    n_resamples=resamples,
                    seed=int(params.get("calibration.bootstrap_seed", 0)),
                    n_bins=int(params.get("calibration.n_bins", 15)),
                )
        return self.resampled[key]

    def _value(self, job: Job, metric: str) -> float | None:
        if metric in (TEMPERATURE, LOG_TEMPERATURE, ABS_LOG_TEMPERATURE):
            return _temperature(job, metric)
        return job.metric(metric)

    def measure(self, row: Mapping[str, Job], base: Mapping[str, Job] | None, metric: str) -> Measured | None:
        """d_s over the seeds both rows have (the row's own seeds without a baseline); None when no seed has the
        metric. The resamples come in when every one of those seeds has comparable predictions."""
        seeds = sorted(row.keys() if base is None else row.keys() & base.keys())
        bare = resampled_name(metric)
        scaled = metric.endswith(TS_SUFFIX)
        if bare in self.metrics:
            found = [self._resamples(row[s], None if base is None else base[s], scaled) for s in seeds]
            if seeds and all(f is not None for f in found):
                observed = tuple(f[bare][0] for f in found)
                per_pair = tuple(_percentile(f[bare][1], f[bare][0]) for f in found)
                return Measured(tuple(seeds), observed, np.stack([f[bare][1] for f in found]), per_pair)
        kept, observed = [], []
        for s in seeds:
            value = self._value(row[s], metric)
            other = 0.0 if base is None else self._value(base[s], metric)
            if value is not None and other is not None:
                kept.append(s)
                observed.append(value - other)
        return Measured(tuple(kept), tuple(observed), None, ()) if kept else None


def resampled_name(metric: str) -> str | None:
    """The METRICS name a metric is resampled as (`test/ece_ts` -> `ece`), None for the temperature metrics."""
    name = metric.removeprefix(tags.TEST_PREFIX).removesuffix(TS_SUFFIX)
    return name if name in calibration.METRICS else None
