"""The final evaluation: test loss and accuracy, test calibration, and the recalibration methods fitted on val."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from omegaconf import DictConfig

from xent_lab import calibration, heads
from xent_lab.data import Dataset
from xent_lab.errors import ConfigError
from xent_lab.objectives import Objective
from xent_lab.training.result import Evaluation

PREDICT_BATCH = 1024


def split_logits(logits_model: keras.Model, dataset: Dataset) -> dict[str, np.ndarray]:
    """Validation and test logits, computed once and shared by the metrics, plots and predictions."""
    return {
        split: logits_model.predict(getattr(dataset, f"x_{split}"), batch_size=PREDICT_BATCH, verbose=0)
        for split in ("val", "test")
    }


def evaluate(
    model: keras.Model, dataset: Dataset, objective: Objective, logits: dict[str, np.ndarray], calib: DictConfig
) -> Evaluation:
    """The test loss and accuracy, the test scores with their bootstrap intervals, the per-class recall, each of
    `calibration.methods` fitted on validation and scored on test; with `calibration.temperature_scaling`, the
    temperature summary too, read from the same "temperature" fit (with `calibration.temperature_objective`)."""
    test_loss, test_accuracy = model.evaluate(
        dataset.x_test, objective.encode_labels(dataset.y_test), batch_size=PREDICT_BATCH, verbose=0
    )
    probs = heads.probabilities(logits["test"], objective.head)
    scores = calibration.score(probs, dataset.y_test, calib.n_bins, calib.bootstrap, calib.bootstrap_seed)
    recall = calibration.per_class_recall(probs, dataset.y_test)
    methods = calibration.resolve_methods(calib.methods, objective.head)
    # One temperature fit serves the method "temperature" and the temperature summary.
    extra = ["temperature"] if calib.temperature_scaling and "temperature" not in methods else []
    recalibrated = calibration.recalibrate(
        *(logits["val"], dataset.y_val, logits["test"], dataset.y_test, objective.head, [*methods, *extra]),
        n_bins=calib.n_bins,
        n_resamples=calib.bootstrap,
        seed=calib.bootstrap_seed,
        temperature_objective=calib.temperature_objective,
    )
    summary = None
    if calib.temperature_scaling:
        summary = calibration.temperature_summary(scores, recalibrated["temperature"])
    fitted = {method: recalibrated[method] for method in methods}
    return Evaluation(float(test_loss), float(test_accuracy), scores, recall, summary, fitted)


def check_methods(methods: str | Sequence[str], head: str) -> None:
    """Before training: every configured recalibration method applies to the head the loss gave the model."""
    methods = calibration.resolve_methods(methods, head)
    usable = calibration.methods_for(head)
    wrong = [method for method in methods if method not in usable]
    if wrong:
        raise ConfigError(
            f"invalid config value calibration.methods={methods}: {', '.join(wrong)} cannot recalibrate a "
            f"{head} head; for this loss use any of {', '.join(usable)}"
        )
