"""What a training returns: `RunResult`, in the project's own terms; `xent_lab.record` names and logs it."""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
import numpy as np

from xent_lab import data, objectives
from xent_lab.calibration import Recalibrated, Scores
from xent_lab.training.events import Divergence
from xent_lab.training.runtime import Runtime


@dataclass(frozen=True)
class Evaluation:
    """One set of weights on the test split: Keras' loss and accuracy, the calibration scores (with intervals),
    the per-class recall, the temperature-scaling summary (`calibration.temperature_scaling`), each
    `calibration.methods` recalibrator fitted on validation, with its test scores, and the scores of each shifted
    test set of `evaluation.shift` ("rotate/45"; after the temperature, "rotate/45/ts")."""

    loss: float
    accuracy: float
    scores: Scores
    recall: np.ndarray
    temperature: dict[str, float] | None
    recalibrated: dict[str, Recalibrated]
    shift: dict[str, Scores] = field(default_factory=dict)


@dataclass
class Setup:
    """What a job trains: the runtime, the data, the loss choice and the compiled model."""

    runtime: Runtime
    dataset: data.Dataset
    objective: objectives.Objective
    model: keras.Model
    logits_model: keras.Model


@dataclass
class RunResult:
    """A finished training.

    `evaluation` is of the weights the run kept (None when the training diverged, trainer.on_nonfinite=record);
    with trainer.keep=best_val_accuracy, `last_epoch` and `last_epoch_test_logits` are the last epoch's.
    `logits` are the kept weights' on "val" and "test". `history` is Keras' History.history.
    """

    setup: Setup
    history: dict[str, list[float]]
    epoch_seconds: list[float]
    train_seconds: float
    logits: dict[str, np.ndarray] = field(default_factory=dict)
    evaluation: Evaluation | None = None
    last_epoch: Evaluation | None = None
    last_epoch_test_logits: np.ndarray | None = None
    kept_epoch: int | None = None  # 0-based; None when early stopping restored weights of its own choosing
    startup_seconds: float | None = None  # process launch to the first training step, when the launch time is known
    divergence: Divergence | None = None

    @property
    def epochs_run(self) -> int:
        return len(self.epoch_seconds)
