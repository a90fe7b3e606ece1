"""Statistics over the seeds of one row: mean, spread and Student-t interval; custom against built-in; the
paired t-test of two rows over seeds, the two-level interval of a paired difference (seeds and test samples) and
the Holm correction across a family of tests."""

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


def constant(values: Sequence[float]) -> bool:
    """Whether the values are equal up to float rounding (0.1 + 0.2 - 0.2 is not 0.1 exactly): their spread is no
    evidence of anything, and a test on it would give p near 0 for a constant shift."""
    d = np.asarray(values, dtype=np.float64)
    return bool(np.ptp(d) <= 1e-12 * max(np.abs(d).max(), 1e-300))


class PairedTest(NamedTuple):
    """Mean of paired differences, its Student-t interval and the two-sided paired t-test p-value."""

    n: int
    mean: float
    low: float  # NaN when n < 2, as are high and p
    high: float
    p: float


def paired_test(differences: Sequence[float]) -> PairedTest:
    """Paired t-test of the per-seed differences d_s = row_s - baseline_s (Student 1908).

    t = mean(d) / (std(d) / sqrt(n)) with n - 1 degrees of freedom; the interval is `summarize`'s. When
    every difference is equal the statistic is 0/0 or ±inf: p is then 1 for all zeros (no difference at
    all, e.g. two implementations that agree exactly); a constant nonzero shift has no spread to test it against
    (3 equal values say nothing about the next seed's), so its interval and p are NaN: not tested.
    """
    if not differences:
        raise ValueError("paired_test needs at least one difference, got none")
    summary = summarize(differences)
    if summary.n < 2:
        return PairedTest(summary.n, summary.mean, math.nan, math.nan, math.nan)
    if constant(differences):
        if summary.mean != 0:
            return PairedTest(summary.n, summary.mean, math.nan, math.nan, math.nan)
        return PairedTest(summary.n, 0.0, 0.0, 0.0, 1.0)
    low, high = summary.mean - summary.half_width, summary.mean + summary.half_width
    p = float(stats.ttest_1samp(differences, 0.0).pvalue)
    return PairedTest(summary.n, summary.mean, low, high, p)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (Holm 1979), in the input order; NaN stays NaN and is not counted.

    With the m finite p-values sorted, p_(1) <= ... <= p_(m): adjusted p_(i) = min(1, max_{j <= i} (m - j + 1) p_(j)).
    Rejecting where adjusted p < alpha controls the family-wise error rate at alpha.
    """
    finite = [i for i, p in enumerate(p_values) if not math.isnan(p)]
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, i in enumerate(sorted(finite, key=lambda i: p_values[i])):
        running = max(running, min(1.0, (len(finite) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


class TwoLevel(NamedTuple):
    """The primary interval of a mean paired difference over seeds, with the test set's sampling noise in it."""

    n: int
    mean: float
    se: float  # NaN when n < 2, as are df, low and high
    df: float  # Welch-Satterthwaite degrees of freedom; inf when the seeds do not vary
    low: float
    high: float
    se_seeds: float  # the parts of se: the seeds' std(d) / sqrt(n) ...
    se_test: float  # ... and the test resamples' std of the seed-mean difference (0 without resamples)

    def p(self, threshold: float = 0.0) -> float:
        """Two-sided p-value of mean = threshold under t(df); NaN without an interval, 1 for no noise at all."""
        if math.isnan(self.se):
            return math.nan
        if self.se == 0:
            return 1.0 if self.mean == threshold else math.nan
        return float(2 * stats.t.sf(abs(self.mean - threshold) / self.se, self.df))


def two_level(observed: Sequence[float], resampled: np.ndarray | None = None) -> TwoLevel:
    """Interval of the mean of d_s (the per-seed differences row_s - baseline_s on the test set) that carries the
    seeds' and the test set's noise.

    `resampled` (n, B): d_s on B resamples of the test samples, the same resamples for every seed (one test set
    is shared by all the runs, so its noise does not average out over seeds). The variance of the mean is the sum
    of the seed part, var_s(d) / n, and the test part, var_b(mean_s d_sb); the interval is mean ± t_{0.975, df} se,
    df by Welch-Satterthwaite (the test part has B >> n draws: its df is taken as infinite). The seed part also
    holds each seed's own share of test noise, which the test part counts again. Simulated coverage of the 95%
    interval (tests/test_questions.py): 0.925 to 0.953 at 3 seeds, 0.946 to 0.965 at 5, over seed-only to
    test-dominated noise. A percentile bootstrap that resamples the seeds as well as the test samples is too narrow
    with so few seeds (it treats their spread as known: z in place of t with 2 or 4 df, and a (n-1)/n shrunk
    variance): 0.72 at 3 seeds and 0.84 at 5 when the seeds' noise dominates.
    """
    d = np.asarray(observed, dtype=np.float64)
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    if n < 2:
        return TwoLevel(n, mean, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
    v_seeds = 0.0 if constant(d) else float(d.var(ddof=1)) / n
    means = None if resampled is None else np.mean(resampled, axis=0)
    v_test = 0.0 if means is None or constant(means) else float(np.var(means, ddof=1))
    se = math.sqrt(v_seeds + v_test)
    if se == 0:  # no noise at all: nothing to test a constant nonzero shift against (as `paired_test`)
        bound = 0.0 if mean == 0 else math.nan
        return TwoLevel(n, mean, 0.0, math.inf, bound, bound, 0.0, 0.0)
    df = math.inf if v_seeds == 0 else (n - 1) * (se**2 / v_seeds) ** 2
    half = float(stats.t.ppf((1 + CONFIDENCE) / 2, df)) * se
    return TwoLevel(n, mean, se, df, mean - half, mean + half, math.sqrt(v_seeds), math.sqrt(v_test))
