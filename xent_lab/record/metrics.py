"""A finished training's numbers under their metric names (`xent_lab.tracking.tags`), as the run logs them."""

from __future__ import annotations

from functools import partial

import numpy as np

from xent_lab import calibration, heads
from xent_lab.tracking import tags as T
from xent_lab.training.result import Evaluation, RunResult


def evaluation_metrics(evaluation: Evaluation) -> dict[str, float]:
    """test/loss, test/accuracy, the test scores and their intervals, test/recall/K, the temperature summary
    (test/*_ts, test/temperature), each method's test/recal/<method>/... and each shifted set's shift/... ."""
    results = {T.TEST_LOSS: evaluation.loss, T.TEST_ACCURACY: evaluation.accuracy}
    scores = evaluation.scores
    # test/accuracy is Keras' (the same argmax accuracy); its bootstrap interval comes from the scores.
    results.update(T.with_intervals({k: v for k, v in scores.values.items() if k != "accuracy"}, scores.intervals))
    results.update({f"{T.TEST_RECALL_PREFIX}{k}": float(r) for k, r in enumerate(evaluation.recall) if np.isfinite(r)})
    if evaluation.temperature is not None:
        results.update({T.test_metric(k): v for k, v in evaluation.temperature.items()})
    for method, fitted in evaluation.recalibrated.items():
        results.update(T.with_intervals(fitted.scores.values, fitted.scores.intervals, partial(T.recal_metric, method)))
    for shifted, scores in evaluation.shift.items():
        results.update(T.with_intervals(scores.values, scores.intervals, partial(T.shift_metric, shifted)))
    return results


def final_metrics(result: RunResult) -> dict[str, float]:
    """The run's final metrics: the kept weights' evaluation and validation NLL, the last epoch's
    (last_epoch/test/...), the kept epoch, and the timings."""
    results = evaluation_metrics(result.evaluation) if result.evaluation is not None else {}
    if result.evaluation is not None:
        setup = result.setup
        probabilities = heads.probabilities(result.logits["val"], setup.objective.head)
        results[T.KEPT_VAL_NLL] = calibration.nll(probabilities, setup.dataset.y_val)
    if result.last_epoch is not None:
        results.update({T.last_epoch_metric(k): v for k, v in evaluation_metrics(result.last_epoch).items()})
    if result.kept_epoch is not None:
        results[T.KEPT_EPOCH] = result.kept_epoch
    steady = result.epoch_seconds[1:] or result.epoch_seconds  # epoch 0 includes tracing
    results.update(
        {
            T.TRAIN_SECONDS: result.train_seconds,
            T.MEAN_EPOCH_SECONDS: float(np.mean(steady)),
            T.EPOCHS_RUN: result.epochs_run,
        }
    )
    if result.startup_seconds is not None:
        results[T.STARTUP_SECONDS] = result.startup_seconds
    return results
