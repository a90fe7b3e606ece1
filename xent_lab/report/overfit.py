"""Over-fit detection from a run's per-epoch history: training accuracy near 1 while validation NLL rises.

A run over-fitted when it ends with training accuracy >= 0.99 (it fits its training set) and its
validation NLL at the last epoch is at least 5% above its minimum, reached at an earlier epoch (it got worse on
held-out data since, by more than an epoch's wobble):
the memorisation regime in which cross-entropy training becomes over-confident (Guo et al. 2017, "On
Calibration of Modern Neural Networks", section 3: "NLL overfitting").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from mlflow.tracking import MlflowClient

from xent_lab.report.load import Job, ReportError
from xent_lab.tracking import tags

TRAIN_ACCURACY_THRESHOLD = 0.99
RISE_THRESHOLD = 0.05  # relative: last val NLL >= (1 + 5%) x its minimum
RULE = (
    f"final train accuracy ≥ {TRAIN_ACCURACY_THRESHOLD}, and val NLL at the last epoch ≥ {1 + RISE_THRESHOLD:g} × its "
    "minimum"
)
TRAIN_ACCURACY = tags.metric_name("accuracy")  # train/accuracy
VAL_NLL = tags.val_metric("nll")
# `study.overfit` in the runs' params: true shows the section, false hides it, auto (or absent) shows it when a
# finished run ends with a training accuracy at the threshold.
SWITCH = "study.overfit"


class Overfit(NamedTuple):
    """One run's history as the detection reads it. Epochs are the logged steps (0 = the first epoch)."""

    final_train_accuracy: float
    best_epoch: int  # the first epoch of the minimum validation NLL
    best_val_nll: float
    last_epoch: int
    last_val_nll: float

    @property
    def rise(self) -> float:
        """Validation NLL at the last epoch minus its minimum (0 when the minimum is the last epoch)."""
        return self.last_val_nll - self.best_val_nll

    @property
    def overfitted(self) -> bool:
        return (
            self.final_train_accuracy >= TRAIN_ACCURACY_THRESHOLD
            and self.best_epoch < self.last_epoch
            and self.last_val_nll >= (1 + RISE_THRESHOLD) * self.best_val_nll
        )


def detect_overfit(train_accuracy: Mapping[int, float], val_nll: Mapping[int, float]) -> Overfit | None:
    """Over-fit reading of one run from its histories (epoch -> value); None when either is empty."""
    if not train_accuracy or not val_nll:
        return None
    epochs = sorted(val_nll)
    best = min(epochs, key=lambda epoch: (val_nll[epoch], epoch))  # ties: the earliest epoch
    return Overfit(train_accuracy[max(train_accuracy)], best, val_nll[best], epochs[-1], val_nll[epochs[-1]])


def _history(client: MlflowClient, run_id: str, metric: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, metric)}


def job_overfit(client: MlflowClient, job: Job) -> Overfit | None:
    """`detect_overfit` on a finished job's logged train/accuracy and val/nll histories."""
    if not job.finished:
        return None
    return detect_overfit(_history(client, job.run_id, TRAIN_ACCURACY), _history(client, job.run_id, VAL_NLL))


def wanted(jobs: Sequence[Job]) -> bool:
    """Whether the report shows over-fitting: `study.overfit` true, or auto and a run reached the threshold."""
    switch = next((job.params[SWITCH] for job in jobs if SWITCH in job.params), "auto").lower()
    if switch in ("true", "false"):
        return switch == "true"
    if switch not in ("auto", "none"):
        raise ReportError(f"invalid {SWITCH}={switch!r} in the runs' params: expected true, false or auto")
    return any(
        (accuracy := job.metric(TRAIN_ACCURACY)) is not None and accuracy >= TRAIN_ACCURACY_THRESHOLD
        for job in jobs
        if job.finished
    )
