"""A run's test scores: every metric with its bootstrap interval, before and after each recalibration method.

The harness (`xent_lab.record.metrics`, `xent_lab.calibrate`) names them for MLflow (`tracking.tags`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xent_lab import heads
from xent_lab.calibration.bootstrap import bootstrap_ci
from xent_lab.calibration.metrics import CALIBRATION_METRICS, METRICS, point_values
from xent_lab.calibration.recalibration import Recalibrator, recalibrator


@dataclass(frozen=True)
class Scores:
    """Metric values on the test set and, when bootstrapped, their percentile intervals (low, high)."""

    values: dict[str, float]
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Recalibrated:
    """One method's fitted parameters and its test scores (accuracy only when the method can change it)."""

    params: dict[str, Any]
    scores: Scores


def score(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15, n_resamples: int = 0, seed: int = 0) -> Scores:
    """Every metric of METRICS on the test set (those of `calibration_metrics` first, the order they were always
    listed in); with n_resamples > 0, the 95% interval of each."""
    values = point_values(
        probs, labels, (*CALIBRATION_METRICS, *(m for m in METRICS if m not in CALIBRATION_METRICS)), n_bins
    )
    intervals = bootstrap_ci(probs, labels, tuple(METRICS), n_resamples, seed, n_bins) if n_resamples else {}
    return Scores(values, intervals)


def fit_methods(
    logits: np.ndarray,
    labels: np.ndarray,
    head: str,
    methods: Sequence[str],
    n_bins: int = 15,
    temperature_objective: str = "nll",
) -> dict[str, Recalibrator]:
    """Each named method fitted on (logits, labels); all are built first, so a wrong name fails before any fit."""
    options = {"temperature": {"objective": temperature_objective, "n_bins": n_bins}, "histogram": {"n_bins": n_bins}}
    built = {name: recalibrator(name, head, **options.get(name, {})) for name in methods}
    return {name: method.fit(logits, labels) for name, method in built.items()}


def recalibrate(
    val_logits: np.ndarray,
    val_labels: np.ndarray,
    test_logits: np.ndarray,
    test_labels: np.ndarray,
    head: str,
    methods: Sequence[str],
    n_bins: int = 15,
    n_resamples: int = 0,
    seed: int = 0,
    temperature_objective: str = "nll",
) -> dict[str, Recalibrated]:
    """{method: its params and the test scores of its predictions}, each method fitted on validation."""
    test_logits = heads.check_logits(test_logits, head)
    fitted = fit_methods(val_logits, val_labels, head, methods, n_bins, temperature_objective)
    return score_methods(fitted, test_logits, test_labels, n_bins, n_resamples, seed)


def score_methods(
    fitted: Mapping[str, Recalibrator],
    logits: np.ndarray,
    labels: np.ndarray,
    n_bins: int = 15,
    n_resamples: int = 0,
    seed: int = 0,
) -> dict[str, Recalibrated]:
    """{method: `score_method` of each fitted method on (logits, labels)}."""
    return {name: score_method(method, logits, labels, n_bins, n_resamples, seed) for name, method in fitted.items()}


def score_method(
    method: Recalibrator, logits: np.ndarray, labels: np.ndarray, n_bins: int = 15, n_resamples: int = 0, seed: int = 0
) -> Recalibrated:
    """A fitted method's params and the scores of its predictions on (logits, labels), without accuracy when the
    method cannot change it."""
    scores = score(method.predict_proba(logits), labels, n_bins, n_resamples, seed)
    if not method.changes_argmax:
        scores.values.pop("accuracy")
        scores.intervals.pop("accuracy", None)
    return Recalibrated(method.params, scores)


TS_METRICS = ("nll", "ece", "brier")  # the metrics reported after temperature scaling under a "_ts" suffix


def temperature_summary(scores: Scores, temperature: Recalibrated) -> dict[str, float]:
    """The test metrics after temperature scaling from the fitted "temperature" method of `recalibrate` and the
    unscaled `scores` (nothing is refitted or rescored): "nll_ts", "ece_ts", "brier_ts", "accuracy_ts" (T keeps
    the argmax: the unscaled accuracy) and "temperature"."""
    summary = {f"{key}_ts": temperature.scores.values[key] for key in TS_METRICS}
    return {**summary, "accuracy_ts": scores.values["accuracy"], "temperature": temperature.params["temperature"]}
