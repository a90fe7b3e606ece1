"""Runs that did not learn: a test accuracy at chance, or a validation NLL that never fell 1% below ln K, the NLL
of the constant uniform prediction. Such a run is calibrated by doing nothing; the report marks it and a
comparison must not count it as lowering an error."""

from __future__ import annotations

import math

from mlflow.tracking import MlflowClient

from xent_lab.report.load import Job
from xent_lab.tracking import tags

CHANCE_MARGIN = 0.1  # accuracy at most (1 + margin) / K reads as chance
NLL_MARGIN = 0.01  # validation NLL at least (1 - margin) ln K reads as the constant prediction
VAL_NLL = tags.val_metric("nll")


def at_chance(accuracy: float, classes: int) -> bool:
    """Whether a test accuracy is within CHANCE_MARGIN (relative) of 1/K."""
    return accuracy <= (1 + CHANCE_MARGIN) / classes


def constant_nll(val_nll: float, classes: int) -> bool:
    """Whether the best validation NLL stayed within NLL_MARGIN of ln K (or above it)."""
    return val_nll >= (1 - NLL_MARGIN) * math.log(classes)


def did_not_learn(accuracy: float | None, best_val_nll: float | None, classes: int | None) -> bool:
    """Either reading, from the numbers that are known; False when the classes are not."""
    if classes is None or classes < 2:
        return False
    return (accuracy is not None and at_chance(accuracy, classes)) or (
        best_val_nll is not None and constant_nll(best_val_nll, classes)
    )


def classes(job: Job) -> int | None:
    """K, the number of classes: one test/recall/<k> metric per class (a sigmoid head logs both of its 2)."""
    count = sum(key.startswith(tags.TEST_RECALL_PREFIX) for key in job.metrics)
    return count or None


def best_val_nll(client: MlflowClient, job: Job) -> float | None:
    """The lowest validation NLL of the run's epochs; None when it logged none."""
    history = client.get_metric_history(job.run_id, VAL_NLL)
    return min((m.value for m in history), default=None)


def unlearned(client: MlflowClient, jobs: list[Job]) -> frozenset[str]:
    """The run ids of the finished jobs that did not learn (a run evaluated twice counts once, either way)."""
    best = {job.run_id: best_val_nll(client, job) for job in jobs if job.finished}
    return frozenset(
        job.run_id
        for job in jobs
        if job.finished and did_not_learn(job.metric(tags.TEST_ACCURACY), best[job.run_id], classes(job))
    )


def rule() -> str:
    """The rule in words, for the reports."""
    return (
        f"did not learn: test accuracy at most {1 + CHANCE_MARGIN:g}/K (chance is 1/K), or a best validation NLL of "
        f"at least {1 - NLL_MARGIN:g} ln K (ln K is the NLL of the constant uniform prediction)"
    )
