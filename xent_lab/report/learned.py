"""Runs that did not learn: a constant predictor scores well on some calibration metrics and must not count.

A finished run did not learn when its test accuracy is at chance (at most 1/K + CHANCE_MARGIN, K the classes, from
its per-class recall metrics) or when the validation NLL of the weights it kept is within NLL_MARGIN of ln K, the NLL
of the uniform prediction (a binary model that always says 0.5 has NLL ln 2 = 0.693). The kept weights', not the
last epoch's: a run that learned and then over-fitted past ln K did learn. Such a run is flagged in the report and
kept out of every comparison.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from xent_lab.report.load import Job
from xent_lab.tracking import tags

CHANCE_MARGIN = 0.01  # accuracy points above 1/K
NLL_MARGIN = 0.01  # relative: validation NLL >= (1 - 1%) ln K
VAL_NLL = tags.val_metric("nll")


def classes(job: Job) -> int | None:
    """K, from the test/recall/<k> metrics the run logged (None without them)."""
    found = [key for key in job.metrics if key.startswith(tags.TEST_RECALL_PREFIX)]
    return len(found) or None


def did_not_learn(job: Job) -> str | None:
    """Why a finished run did not learn, or None when it learned (or cannot be judged)."""
    k = classes(job)
    if not job.finished or k is None or k < 2:
        return None
    accuracy = job.metric(tags.TEST_ACCURACY)
    val_nll = job.metric(tags.KEPT_VAL_NLL)
    if val_nll is None:  # a run from before the kept weights' NLL was logged: its last epoch's
        val_nll = job.metric(VAL_NLL)
    if accuracy is not None and accuracy <= 1 / k + CHANCE_MARGIN:
        return f"test accuracy {accuracy:.4f}, chance 1/{k} = {1 / k:.4f}"
    if val_nll is not None and val_nll >= (1 - NLL_MARGIN) * math.log(k):
        return f"validation NLL {val_nll:.4f} ≥ 0.99 ln {k} = {0.99 * math.log(k):.4f} (the uniform prediction)"
    return None


def unlearned(jobs: Iterable[Job]) -> frozenset[str]:
    """The run ids of the jobs that did not learn (a run evaluated twice counts once, either way)."""
    return frozenset(job.run_id for job in jobs if did_not_learn(job) is not None)


RULE = (
    f"a run did not learn when its test accuracy is at most 1/K + {CHANCE_MARGIN:g} or the validation NLL of its "
    f"kept weights is within {NLL_MARGIN:.0%} of ln K (the uniform prediction's); it is kept out of every comparison"
)
