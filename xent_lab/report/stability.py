"""The "Stability" section: where each loss path diverges, how many samples its gradient no longer reaches,
and where the paths do not differ.

A path is an implementation (impl) from logits or from probabilities, at a precision and (impl=naive) an
epsilon; a row is a path at a learning rate. The section appears for a launch whose runs diverged
(tag `xent.diverged`, `trainer.on_nonfinite`) or logged the zero-gradient probe (`trainer.gradient_probe`).

Per row: runs, diverged k/n, the median divergence step, the zero-gradient fractions (mean over seeds of
each run's last logged epoch), and the test accuracy and NLL of the runs that did not diverge. Then the
numbers in words: per path the lowest learning rate at which any seed diverged, and each path against the
stable custom one at the same setting: equal when the 95% interval of the paired accuracy difference lies
inside ±`SAME_ACCURACY` (an equivalence test), different when it excludes 0 or more runs diverged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from xent_lab.report.load import Job
from xent_lab.report.markdown import NO_VALUE, diverged, markdown_table
from xent_lab.report.stats import finished_values, paired_test, summarize
from xent_lab.tracking import tags

LR, PRECISION = "trainer.optimizer.learning_rate", "trainer.precision"
FROM_LOGITS, EPSILON = "loss.from_logits", "loss.epsilon"
NAIVE = "naive"
# The equivalence margin: two paths "do not differ" when the 95% interval of their paired accuracy difference lies
# inside ±SAME_ACCURACY (half a point of accuracy, below what the study's sizes resolve between losses).
SAME_ACCURACY = 0.005
CUSTOM = "custom"


class LossPath(NamedTuple):
    loss: str
    impl: str
    from_logits: str  # "true" | "false"
    precision: str
    epsilon: str  # impl=naive only; NO_VALUE for the others, which clip at Keras' epsilon

    @property
    def label(self) -> str:
        inputs = "from logits" if self.from_logits == "true" else "from probabilities"
        epsilon = f", ε={self.epsilon}" if self.impl == NAIVE else ""
        return f"{self.loss} {self.impl} {inputs}, {self.precision}{epsilon}"


class PathRow(NamedTuple):
    path: LossPath
    lr: float
    jobs: tuple[Job, ...]


def _setting(job: Job, key: str) -> str:
    """The job's value of a config key: its swept value, else its logged param."""
    value = job.overrides.get(key, job.params.get(key, "?"))
    return str(value).strip().lower()


def _path(job: Job) -> LossPath:
    impl = job.impl
    epsilon = f"{float(_setting(job, EPSILON)):g}" if impl == NAIVE else NO_VALUE
    return LossPath(job.tags.get(tags.LOSS, "?"), impl, _setting(job, FROM_LOGITS), _setting(job, PRECISION), epsilon)


def _configured(job: Job) -> bool:
    """Whether the job's run logged its config (a job that failed before its run started did not)."""
    return all(key in job.overrides or key in job.params for key in (LR, EPSILON))


def wanted(jobs: Sequence[Job]) -> bool:
    """Whether the launch measured stability: a run diverged or logged the zero-gradient probe."""
    return any(diverged(job) or job.metric(tags.ZERO_GRAD_FRACTION) is not None for job in jobs)


def rows_of(jobs: Sequence[Job]) -> list[PathRow]:
    """The jobs by path and learning rate, sorted by path then learning rate; jobs without a config (failed
    before their run started, listed under "Failed runs") are left out."""
    grouped: dict[tuple[LossPath, float], list[Job]] = {}
    for job in filter(_configured, jobs):
        grouped.setdefault((_path(job), float(_setting(job, LR))), []).append(job)
    return [PathRow(path, lr, tuple(found)) for (path, lr), found in sorted(grouped.items())]


def _mean(jobs: Sequence[Job], metric: str) -> float | None:
    """The mean of `metric` over the finished jobs that logged it (None if none did)."""
    summary = summarize(finished_values(jobs, metric))
    return None if summary is None else summary.mean


def _cell(value: float | None, digits: int) -> str:
    return NO_VALUE if value is None else f"{value:.{digits}f}"


def _healthy(row: PathRow) -> list[Job]:
    """The runs that finished without diverging: the ones with test metrics."""
    return [job for job in row.jobs if job.finished and not diverged(job)]


def _table_row(row: PathRow) -> list[object]:
    gone = [job for job in row.jobs if diverged(job)]
    steps = [s for job in gone if (s := job.metric(tags.DIVERGED_STEP)) is not None]
    healthy = _healthy(row)
    return [
        row.path.loss,
        row.path.impl,
        row.path.from_logits,
        f"{row.lr:g}",
        row.path.precision,
        row.path.epsilon,
        len(row.jobs),
        f"{len(gone)}/{len(row.jobs)}",
        f"{np.median(steps):g}" if steps else NO_VALUE,
        _cell(_mean(row.jobs, tags.ZERO_GRAD_FRACTION), 4),
        _cell(_mean(row.jobs, tags.ZERO_GRAD_WRONG_FRACTION), 4),
        _cell(_mean(healthy, tags.TEST_ACCURACY), 4),
        _cell(_mean(healthy, tags.test_metric("nll")), 4),
    ]


def divergence_sentences(rows: Sequence[PathRow]) -> list[str]:
    """Per path: the lowest learning rate at which any seed diverged, or none up to the highest one run."""
    sentences = []
    for path in dict.fromkeys(row.path for row in rows):
        own = [row for row in rows if row.path == path]
        broken = [row for row in own if any(diverged(job) for job in row.jobs)]
        if not broken:
            sentences.append(f"- **{path.label}**: no divergence up to lr {max(r.lr for r in own):g}.")
            continue
        first = broken[0]
        count = sum(diverged(job) for job in first.jobs)
        sentences.append(
            f"- **{path.label}**: diverges from lr {first.lr:g} ({count}/{len(first.jobs)} seeds there)"
            + ("." if first is own[0] else f"; none diverged at lr {own[own.index(first) - 1].lr:g}.")
        )
    return sentences


def _by_seed(row: PathRow) -> dict[str, float]:
    return {job.seed: accuracy for job in _healthy(row) if (accuracy := job.metric(tags.TEST_ACCURACY)) is not None}


def agreement_sentences(rows: Sequence[PathRow]) -> list[str]:
    """Per row other than impl=custom, against the custom row of the same loss, input path, precision and learning
    rate: the paired per-seed difference in test accuracy, and whether its 95% interval shows the two equal
    (inside ±SAME_ACCURACY), different (excluding 0) or neither. A row with a diverged run differs by that."""
    sentences = []
    for row in rows:
        if row.path.impl == CUSTOM:
            continue
        twin = row.path._replace(impl=CUSTOM, epsilon=NO_VALUE)
        base = next((other for other in rows if other.path == twin and other.lr == row.lr), None)
        if base is None:
            continue
        where = f"lr {row.lr:g}, {row.path.precision}"
        gone = sum(diverged(job) for job in row.jobs) - sum(diverged(job) for job in base.jobs)
        if gone:
            more = "more" if gone > 0 else "fewer"
            sentences.append(f"- {where}: **{row.path.label}** differs from custom: {abs(gone)} {more} diverged runs.")
            continue
        mine, theirs = _by_seed(row), _by_seed(base)
        seeds = sorted(mine.keys() & theirs.keys())
        if len(seeds) < 2:
            continue
        test = paired_test([mine[seed] - theirs[seed] for seed in seeds])
        if test.low >= -SAME_ACCURACY and test.high <= SAME_ACCURACY:
            word = f"does not differ from custom (within ±{SAME_ACCURACY})"
        elif test.low > 0 or test.high < 0:
            word = "differs from custom"
        else:
            word = "is not shown equal to or different from custom"
        sentences.append(
            f"- {where}: **{row.path.label}** {word}: test accuracy Δ {test.mean:+.4f} "
            f"[{test.low:+.4f}, {test.high:+.4f}] over {test.n} seeds."
        )
    return sentences


def stability_section(jobs: Sequence[Job]) -> list[str]:
    """The section, or nothing when no run measured stability."""
    if not wanted(jobs):
        return []
    rows = rows_of(jobs)
    header = ["loss", "impl", "from_logits", "lr", "precision", "ε (naive)", "runs", "diverged", "median step"]
    header += ["zero-grad", "zero-grad wrong", "test accuracy", "test NLL"]
    agreeing = agreement_sentences(rows)
    return [
        "## Stability",
        "",
        "Diverged: runs whose training loss became NaN or infinite (`trainer.on_nonfinite=record` stops them there "
        "and skips their test evaluation); median step: global 0-based training step of the first non-finite batch "
        "loss. Zero-grad: fraction of the probed training samples (`trainer.gradient_probe`) whose loss gradient "
        "with respect to the model's output is exactly zero (the clip at ε / 1 − ε cut it); wrong: zero on a "
        "misclassified sample, a confident mistake the loss no longer corrects; mean over seeds of each run's last "
        "logged epoch. Test accuracy and NLL: mean over the runs that did not diverge.",
        "",
        *markdown_table(header, [_table_row(row) for row in rows]),
        "",
        "### Where each path breaks",
        "",
        *divergence_sentences(rows),
        "",
        "### Where the paths do not differ",
        "",
        "Each path against the stable custom loss at the same input path, precision and learning rate: the paired "
        "per-seed difference in test accuracy with its 95% Student-t interval; equal when the interval lies inside "
        f"±{SAME_ACCURACY} (an equivalence test), different when it excludes 0 or when more runs diverged.",
        "",
        *(agreeing or ["- no path shares enough finished seeds with the custom one to compare."]),
        "",
    ]
