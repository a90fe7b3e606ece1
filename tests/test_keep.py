"""`trainer.keep`: which weights a run is evaluated, logged and checkpointed with (xent_lab.training.pipeline).

On real MNIST (`debug=quick`): with `keep=best_val_accuracy` one training gives two evaluations, the best
validation-accuracy epoch's as the run's test/* metrics, predictions and checkpoint, the last epoch's under
last_epoch/test/* with their own predictions artifact; with `keep=last` (the default) only the first kind.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from tests.helpers.e2e import QUICK, compose_config, history, store_uri, train_here
from xent_lab import calibration, config
from xent_lab.errors import ConfigError
from xent_lab.tracking import tags as T
from xent_lab.tracking.record import CHECKPOINT
from xent_lab.training import pipeline

# A learning rate high enough for Adam to make validation accuracy fall after its first epoch on 2000 images
# (measured: 0.188, 0.149, 0.153 with seed 0), so the kept epoch is not the last one.
UNSTABLE = ("trainer.optimizer.learning_rate=0.2", "trainer.epochs=3", "tracking.log_model=false")


def _predictions(workdir: Path, run_id: str, artifact: str) -> calibration.Predictions:
    path = MlflowClient(store_uri(workdir)).download_artifacts(run_id, artifact, str(workdir / "downloaded"))
    return calibration.load_predictions(path)


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=1) == labels))


@pytest.fixture(scope="module")
def best(tmp_path_factory, cache_dir):
    workdir = tmp_path_factory.mktemp("keep-best")
    return workdir, train_here(workdir, cache_dir, QUICK, *UNSTABLE, "trainer.keep=best_val_accuracy")


@pytest.mark.train
def test_kept_epoch_is_the_first_argmax_of_the_logged_val_accuracy(best):
    workdir, trained = best
    steps, accuracies = zip(*history(workdir, trained.run.info.run_id, T.val_metric("accuracy")), strict=True)
    assert steps == (0, 1, 2)
    assert trained.run.data.metrics[T.KEPT_EPOCH] == steps[int(np.argmax(accuracies))]  # argmax: first on ties
    assert trained.run.data.tags[T.KEEP] == T.KEEP_BEST


@pytest.mark.train
def test_main_metrics_are_the_kept_epochs_and_last_epoch_metrics_the_last(best, cache_dir):
    workdir, trained = best
    run_id, metrics = trained.run.info.run_id, trained.run.data.metrics
    kept = _predictions(workdir, run_id, T.PREDICTIONS_ARTIFACT)
    last = _predictions(workdir, run_id, T.LAST_EPOCH_PREDICTIONS_ARTIFACT)
    assert metrics[T.TEST_ACCURACY] == pytest.approx(_accuracy(kept.logits, kept.labels), abs=1e-6)
    assert metrics[T.last_epoch_metric(T.TEST_ACCURACY)] == pytest.approx(_accuracy(last.logits, last.labels), abs=1e-6)
    # The checkpoint in the job's folder holds the kept weights, not the last epoch's that ModelCheckpoint saved.
    dataset = pipeline.load_data(compose_config(workdir, cache_dir, QUICK, *UNSTABLE))
    model = keras.saving.load_model(trained.output_dir / CHECKPOINT)
    probs = model.predict(dataset.x_test, verbose=0)
    assert metrics[T.TEST_ACCURACY] == pytest.approx(_accuracy(probs, dataset.y_test), abs=1e-6)
    # Every test metric has its last-epoch twin, intervals and recalibrated metrics included.
    test_keys = {key for key in metrics if key.startswith(T.TEST_PREFIX)}
    assert {T.last_epoch_metric(key) for key in test_keys} == {key for key in metrics if key.startswith("last_epoch/")}
    assert T.last_epoch_metric(T.recal_metric("temperature", "ece")) in metrics
    assert T.last_epoch_metric(f"{T.TEST_ECE}/{T.CI_LOW}") in metrics
    # The shifted test sets score the kept weights only.
    assert T.shift_metric("rotate/90", "ece") in metrics
    assert not [key for key in metrics if key.startswith(T.last_epoch_metric(T.SHIFT_PREFIX))]
    if metrics[T.KEPT_EPOCH] != 2:  # different weights: the two evaluations differ
        assert not np.allclose(kept.logits, last.logits)
        assert metrics[T.TEST_ECE] != metrics[T.last_epoch_metric(T.TEST_ECE)]


@pytest.mark.slow
def test_keep_last_logs_no_last_epoch_metrics(tmp_path, cache_dir):
    trained = train_here(tmp_path, cache_dir, QUICK, "tracking.log_model=false")
    metrics = trained.run.data.metrics
    assert not [key for key in metrics if key.startswith(T.LAST_EPOCH_PREFIX)]
    assert metrics[T.KEPT_EPOCH] == 0  # one epoch, counted from 0
    assert trained.run.data.tags[T.KEEP] == T.KEEP_LAST
    listed = MlflowClient(store_uri(tmp_path)).list_artifacts(trained.run.info.run_id, "predictions")
    assert T.LAST_EPOCH_PREDICTIONS_ARTIFACT not in {item.path for item in listed}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("trainer.keep=best",), r"invalid config value trainer.keep='best': expected one of last, best_val_accuracy"),
        (
            ("trainer.keep=best_val_accuracy", "trainer.early_stopping.enabled=true"),
            r"trainer.keep=best_val_accuracy and trainer.early_stopping.restore_best_weights=true both choose",
        ),
    ],
)
def test_keep_config_errors(tmp_path, cache_dir, overrides, message):
    with pytest.raises(ConfigError, match=message):
        config.validate(compose_config(tmp_path, cache_dir, QUICK, *overrides))
