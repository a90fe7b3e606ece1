"""The final evaluation: test loss and accuracy, test calibration, the recalibration methods fitted on val, and the
shifted test sets of `evaluation.shift` scored the same way, before and after the temperature."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
import numpy as np
from omegaconf import DictConfig, OmegaConf

from xent_lab import calibration, heads
from xent_lab.data import Dataset
from xent_lab.data.shift import shifted_sets
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


def shift_logits(logits_model: keras.Model, dataset: Dataset, shift: DictConfig) -> dict[str, np.ndarray]:
    """{"rotate/45": the logits of the test set rotated by 45 degrees, ...}: each set `evaluation.shift` lists for
    the dataset's input kind, made from the test inputs and dropped once predicted."""
    plan = OmegaConf.to_container(shift[dataset.input_kind])
    return {
        f"{name}/{level}": logits_model.predict(x, batch_size=PREDICT_BATCH, verbose=0)
        for name, level, x in shifted_sets(dataset.x_test, plan, shift.seed)
    }


def evaluate(
    model: keras.Model,
    dataset: Dataset,
    objective: Objective,
    logits: dict[str, np.ndarray],
    calib: DictConfig,
    shifted: Mapping[str, np.ndarray] | None = None,
    shift_resamples: int = 0,
) -> Evaluation:
    """The test loss and accuracy, the test scores with their bootstrap intervals, the per-class recall, each of
    `calibration.methods` fitted on validation and scored on test; with `calibration.temperature_scaling`, the
    temperature summary too, read from the same "temperature" fit (with `calibration.temperature_objective`).
    `shifted`: the logits of shifted test sets (`shift_logits`), each scored like the test set (with
    `shift_resamples` bootstrap resamples) and, when a temperature was fitted, after it too ("<name>/ts")."""
    test = model.evaluate(
        dataset.x_test, objective.encode_labels(dataset.y_test), batch_size=PREDICT_BATCH, verbose=0, return_dict=True
    )
    head, n_bins, seed = objective.head, calib.n_bins, calib.bootstrap_seed
    probs = heads.probabilities(logits["test"], head)
    scores = calibration.score(probs, dataset.y_test, n_bins, calib.bootstrap, seed)
    recall = calibration.per_class_recall(probs, dataset.y_test)
    methods = calibration.resolve_methods(calib.methods, head)
    # One temperature fit serves the method "temperature", the temperature summary and the shifted sets.
    extra = ["temperature"] if calib.temperature_scaling and "temperature" not in methods else []
    fitted = calibration.fit_methods(
        logits["val"], dataset.y_val, head, [*methods, *extra], n_bins, calib.temperature_objective
    )
    recalibrated = calibration.score_methods(fitted, logits["test"], dataset.y_test, n_bins, calib.bootstrap, seed)
    summary = None
    if calib.temperature_scaling:
        summary = calibration.temperature_summary(scores, recalibrated["temperature"])
    shift: dict[str, calibration.Scores] = {}
    for name, z in (shifted or {}).items():
        shift[name] = calibration.score(heads.probabilities(z, head), dataset.y_test, n_bins, shift_resamples, seed)
        if "temperature" in fitted:
            ts = calibration.score_method(fitted["temperature"], z, dataset.y_test, n_bins, shift_resamples, seed)
            shift[f"{name}/ts"] = ts.scores
    kept = {method: recalibrated[method] for method in methods}
    return Evaluation(float(test["loss"]), float(test["accuracy"]), scores, recall, summary, kept, shift)


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
