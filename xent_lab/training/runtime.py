"""The training runner: device, precision and seeds first, then compile, fit and evaluate.

`configure_runtime` must run before TensorFlow creates any op: hiding the GPUs and turning on op
determinism only take effect then.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import keras
import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig

from xent_lab import tracking
from xent_lab.errors import ConfigError, NonFiniteLossError
from xent_lab.objectives import Objective


@dataclass(frozen=True)
class Runtime:
    device: str  # "cpu" or "gpu"
    device_name: str  # e.g. "CPU" or "GPU:0 NVIDIA H100 80GB HBM3"
    precision: str


def configure_runtime(trainer: DictConfig, seed: int) -> Runtime:
    """Select the device, the precision policy, the seeds and (optionally) op determinism."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if trainer.device == "cpu" and gpus:
        tf.config.set_visible_devices([], "GPU")
        gpus = []
    elif trainer.device == "gpu" and not gpus:
        raise ConfigError(
            "trainer.device=gpu but TensorFlow sees no GPU (is a CUDA build of TensorFlow installed, "
            "`pip install tensorflow[and-cuda]`, and is a driver visible, `nvidia-smi`?); "
            "use trainer.device=auto or trainer.device=cpu"
        )
    device = "gpu" if gpus else "cpu"
    if trainer.precision == "mixed_float16" and device != "gpu":
        raise ConfigError(
            "trainer.precision=mixed_float16 needs a GPU (float16 on a CPU is slower, not faster); "
            "use trainer.precision=float32"
        )
    # A sweep runs its jobs one after another in one process: drop the previous job's graphs and layers.
    keras.backend.clear_session(free_memory=True)
    keras.mixed_precision.set_global_policy(trainer.precision)
    keras.utils.set_random_seed(seed)
    if trainer.deterministic:
        tf.config.experimental.enable_op_determinism()
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        device_name = f"GPU:0 {details.get('device_name', '')}".strip()
    else:
        device_name = "CPU"
    return Runtime(device=device, device_name=device_name, precision=trainer.precision)


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raise as soon as a batch's loss is NaN or infinite (Keras' TerminateOnNaN only stops quietly)."""

    def __init__(self) -> None:
        super().__init__()
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise NonFiniteLossError(
                f"the training loss became {float(loss)} at epoch {self._epoch} batch {batch}; "
                "lower trainer.optimizer.learning_rate, or use loss.from_logits=true for a stable loss"
            )


def compile_model(model: keras.Model, trainer: DictConfig, objective: Objective) -> None:
    model.compile(
        optimizer=instantiate(trainer.optimizer),
        loss=objective.loss,
        metrics=[objective.accuracy_metric()],
    )


def early_stopping(trainer: DictConfig) -> list[keras.callbacks.Callback]:
    stop = trainer.early_stopping
    if not stop.enabled:
        return []
    return [
        keras.callbacks.EarlyStopping(
            monitor=stop.monitor, patience=stop.patience, restore_best_weights=stop.restore_best_weights
        )
    ]


def class_weights(labels: np.ndarray, num_classes: int, mode: str | None) -> dict[int, float] | None:
    """Keras `class_weight` for `loss.class_weight`: None, or "balanced" = n / (K n_k) from the training labels."""
    if mode is None:
        return None
    counts = np.bincount(labels, minlength=num_classes)
    return {k: len(labels) / (num_classes * max(int(n), 1)) for k, n in enumerate(counts)}


def fit(
    model: keras.Model,
    trainer: DictConfig,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    callbacks: list[keras.callbacks.Callback],
    class_weight: dict[int, float] | None = None,
) -> keras.callbacks.History:
    """Train; `callbacks` run after the NaN check and early stopping, in the order given."""
    return model.fit(
        *train,
        validation_data=val,
        class_weight=class_weight,
        epochs=trainer.epochs,
        batch_size=trainer.batch_size,
        callbacks=[StopOnNonFiniteLoss(), *early_stopping(trainer), *callbacks],
        verbose=trainer.verbose,
    )


class EpochMetricsLogger(keras.callbacks.Callback):
    """Logs each epoch's Keras logs (and whatever earlier callbacks added to them) as one MLflow batch.

    Place it last among the callbacks, so it sees the metrics the others write into `logs`.
    """

    def __init__(self, run: tracking.RunLogger) -> None:
        super().__init__()
        self.run = run
        self.epoch_seconds: list[float] = []
        self.first_step_at = math.nan  # perf_counter() when the first training batch ended
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if math.isnan(self.first_step_at):
            self.first_step_at = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        seconds = time.perf_counter() - self._started
        self.epoch_seconds.append(seconds)
        metrics = {tracking.metric_name(key): value for key, value in (logs or {}).items()}
        metrics["perf/epoch_seconds"] = seconds
        self.run.log_metrics(metrics, step=epoch)
