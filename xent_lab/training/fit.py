"""Compile and fit: the optimizer from the config, the loss and accuracy of the objective, the callbacks."""

from __future__ import annotations

import keras
import numpy as np
from omegaconf import DictConfig, OmegaConf

from xent_lab import config
from xent_lab.objectives import Objective
from xent_lab.training.callbacks import StopOnNonFiniteLoss, StopOnSignal


def compile_model(model: keras.Model, trainer: DictConfig, objective: Objective) -> None:
    model.compile(
        optimizer=make_optimizer(trainer.optimizer),
        loss=objective.loss,
        metrics=objective.metrics(),
    )


def make_optimizer(spec: DictConfig) -> keras.optimizers.Optimizer:
    """The Keras optimizer `trainer.optimizer` names, built directly rather than by Hydra's instantiate, which would
    import and call whatever `_target_` says (only the classes in `config.OPTIMIZERS` are accepted)."""
    kwargs = OmegaConf.to_container(spec, resolve=True)
    name = config.optimizer_class(kwargs.pop("_target_", None))
    return getattr(keras.optimizers, name)(**kwargs)


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
    nonfinite: StopOnNonFiniteLoss | None = None,
    initial_epoch: int = 0,
) -> keras.callbacks.History:
    """Train; `callbacks` run after the stop-signal and NaN checks and early stopping, in the order given.

    `nonfinite`: the NaN check (default: one that raises, trainer.on_nonfinite=fail); pass one to read its
    `divergence` afterwards. `initial_epoch`: the first epoch's index (Keras runs `initial_epoch` to
    `trainer.epochs - 1`), for fitting a model on from where an earlier fit left it."""
    nonfinite = nonfinite if nonfinite is not None else StopOnNonFiniteLoss()
    return model.fit(
        *train,
        validation_data=val,
        class_weight=class_weight,
        epochs=trainer.epochs,
        initial_epoch=initial_epoch,
        batch_size=trainer.batch_size,
        callbacks=[StopOnSignal(), nonfinite, *early_stopping(trainer), *callbacks],
        # 1: Keras' progress bar. From 2 on, the pipeline prints its own compact line per epoch (events.ConsoleLine),
        # not Keras' line of every logged value.
        verbose=1 if trainer.verbose == 1 else 0,
    )
