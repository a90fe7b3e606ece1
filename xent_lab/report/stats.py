"""Statistics over the seeds of one row: mean, spread and Student-t interval; custom against built-in."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
from scipy import stats

from xent_lab.report.load import BUILTIN, CUSTOM, Job
from xent_lab.tracking import tags

CONFIDENCE = 0.95


class Summary(NamedTuple):
    """Mean, sample standard deviation and the half width of the Student-t confidence interval."""

    n: int
    mean: float
    std: float  # NaN when n < 2, as is half_width
    half_width: float


def summarize(values: Sequence[float]) -> Summary | None:
    """Summary of `values` (None when empty); the interval is mean ± t_{n-1, 0.975} std / sqrt(n)."""
    if not values:
        return None
    n = len(values)
    mean = float(np.mean(values))
    if n < 2:
        return Summary(n, mean, math.nan, math.nan)
    std = float(np.std(values, ddof=1))
    return Summary(n, mean, std, float(stats.t.ppf((1 + CONFIDENCE) / 2, n - 1)) * std / math.sqrt(n))


def finished_values(jobs: Iterable[Job], metric: str) -> list[float]:
    """The value of `metric` in each finished job that logged it."""
    return [value for job in jobs if job.finished and (value := job.metric(metric)) is not None]


class ImplComparison(NamedTuple):
    """Custom against built-in over the seeds that finished with both."""

    seeds: int
    max_loss_diff: float
    max_accuracy_diff: float


def compare_impls(by_impl: Mapping[str, Sequence[Job]]) -> ImplComparison | None:
    """Largest |custom - builtin| of test/loss and test/accuracy at equal seeds; None without such pairs."""
    finished = {impl: {job.seed: job for job in by_impl.get(impl, ()) if job.finished} for impl in (CUSTOM, BUILTIN)}
    seeds = finished[CUSTOM].keys() & finished[BUILTIN].keys()
    if not seeds:
        return None

    def max_diff(metric: str) -> float:
        pairs = [(finished[CUSTOM][seed].metric(metric), finished[BUILTIN][seed].metric(metric)) for seed in seeds]
        return max((abs(c - b) for c, b in pairs if c is not None and b is not None), default=math.nan)

    return ImplComparison(len(seeds), max_diff(tags.TEST_LOSS), max_diff(tags.TEST_ACCURACY))
