"""How many seeds a study needs: the power of the paired t-test over seeds, from a pilot's spread.

A declared question compares two rows over seeds: d_s = row_s − baseline_s, tested with a two-sided one-sample
t-test on d (n seeds, n − 1 degrees of freedom). With true mean δ and standard deviation σ of d, the statistic
follows a noncentral t with noncentrality δ √n / σ, so the power at level α is

    P(|T| > t_{1−α/2, n−1}),  T ~ t'(n − 1, δ √n / σ).

Holm over k declared questions tests the smallest p-value at α / k first, and the last at α; sizing every
question at α / k is the worst case, so a study sized so has at least the stated power for each question.
σ comes from a pilot: the per-seed t interval of a committed report gives it back (`sd_from_interval`).
"""

from __future__ import annotations

import math

from scipy import stats

ALPHA = 0.05
POWER = 0.8
MAX_SEEDS = 1000  # the search's upper end: a question that needs more is not worth sizing by seeds


def power(effect: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test of n seeds to detect a mean difference `effect` when the per-seed
    differences have standard deviation `sd`."""
    if n < 2:
        return 0.0  # no degrees of freedom: no test
    if sd <= 0:
        raise ValueError(f"sd must be > 0, got {sd}")
    critical = stats.t.ppf(1 - alpha / 2, n - 1)
    shift = abs(effect) * math.sqrt(n) / sd
    return float(stats.nct.sf(critical, n - 1, shift) + stats.nct.cdf(-critical, n - 1, shift))


def seeds_needed(
    effect: float, sd: float, alpha: float = ALPHA, target: float = POWER, questions: int = 1
) -> int | None:
    """The fewest seeds whose paired t-test has power >= `target` at level alpha / `questions` (Holm's worst
    case); None when more than MAX_SEEDS would be needed."""
    level = alpha / questions
    for n in range(2, MAX_SEEDS + 1):
        if power(effect, sd, n, level) >= target:
            return n
    return None


def detectable_effect(sd: float, n: int, alpha: float = ALPHA, target: float = POWER, questions: int = 1) -> float:
    """The smallest |mean difference| that n seeds detect with power `target` at level alpha / `questions`."""
    if n < 2:
        return math.inf
    level = alpha / questions
    low, high = 0.0, sd
    while power(high, sd, n, level) < target:
        high *= 2
    for _ in range(60):  # bisection to well below any printed digit
        middle = (low + high) / 2
        low, high = (middle, high) if power(middle, sd, n, level) < target else (low, middle)
    return high


def sd_from_interval(low: float, high: float, n: int, confidence: float = 0.95) -> float:
    """The standard deviation of n per-seed differences behind their Student-t interval [low, high]:
    half width × √n / t_{(1+confidence)/2, n−1}."""
    if n < 2:
        raise ValueError(f"an interval over seeds needs n >= 2, got {n}")
    return (high - low) / 2 * math.sqrt(n) / float(stats.t.ppf((1 + confidence) / 2, n - 1))
