"""The final evaluation: test loss and accuracy, test calibration, and temperature scaling on val."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import keras
import numpy as np
from omegaconf import DictConfig

from xent_lab import calibration, heads
from xent_lab.data import Dataset
from xent_lab.errors import ConfigError
from xent_lab.objectives import Objective
from xent_lab.tracking import tags as T

PREDICT_BATCH = 1024


def split_logits(logits_model: keras.Model, dataset: Dataset) -> dict[str, np.ndarray]:
    """Validation and test logits, computed once and shared by the metrics, plots and predictions."""
    return {
        split: logits_model.predict(getattr(dataset, f"x_{split}"), batch_size=PREDICT_BATCH, verbose=0)
        for split in ("val", "test")
    }


def evaluate(
    model: keras.Model, dataset: Dataset, objective: Objective, logits: dict[str, np.ndarray], calib: DictConfig
) -> tuple[dict[str, float], dict[str, dict]]:
    """Test metrics and their bootstrap intervals under their MLflow names; the test metrics after each of
    `calibration.methods` (test/recal/...); with `calibration.temperature_scaling`, also test/*_ts and
    test/temperature, read from the same "temperature" fit (with `calibration.temperature_objective`).

    Returns the metrics and each recalibration method's fitted parameters (logged as JSON artifacts)."""
    test_loss, test_accuracy = model.evaluate(
        dataset.x_test, objective.encode_labels(dataset.y_test), batch_size=PREDICT_BATCH, verbose=0
    )
    results = {T.TEST_LOSS: test_loss, T.TEST_ACCURACY: test_accuracy}
    probs = heads.probabilities(logits["test"], objective.head)
    scores = calibration.score(probs, dataset.y_test, calib.n_bins, calib.bootstrap, calib.bootstrap_seed)
    # test/accuracy is Keras' (the same argmax accuracy); its bootstrap interval comes from the scores.
    results.update(T.with_intervals({k: v for k, v in scores.values.items() if k != "accuracy"}, scores.intervals))
    recall = calibration.per_class_recall(probs, dataset.y_test)
    results.update({f"{T.TEST_RECALL_PREFIX}{k}": float(r) for k, r in enumerate(recall) if np.isfinite(r)})
    methods = calibration.resolve_methods(calib.methods, objective.head)
    # One temperature fit serves test/recal/temperature/* and the test/*_ts metrics.
    extra = ["temperature"] if calib.temperature_scaling and "temperature" not in methods else []
    recalibrated = calibration.recalibrate(
        *(logits["val"], dataset.y_val, logits["test"], dataset.y_test, objective.head, [*methods, *extra]),
        n_bins=calib.n_bins,
        n_resamples=calib.bootstrap,
        seed=calib.bootstrap_seed,
        temperature_objective=calib.temperature_objective,
    )
    if calib.temperature_scaling:
        summary = calibration.temperature_summary(scores, recalibrated["temperature"])
        results.update({T.test_metric(k): v for k, v in summary.items()})
    recalibrated = {method: recalibrated[method] for method in methods}
    for method, fitted in recalibrated.items():
        results.update(T.with_intervals(fitted.scores.values, fitted.scores.intervals, partial(T.recal_metric, method)))
    return results, {method: fitted.params for method, fitted in recalibrated.items()}


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
