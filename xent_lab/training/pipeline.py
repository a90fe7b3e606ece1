"""One training, top to bottom, with no store: `train(cfg, sink) -> RunResult`.

device, precision and seeds -> load the data -> build the objective and the model (`prepare`) -> fit, each
epoch's values handed to the sinks -> evaluate and recalibrate on the test split (`fit_and_evaluate`).
With `trainer.keep=best_val_accuracy`, the last epoch's weights are evaluated first (`RunResult.last_epoch`),
then the best epoch's are put back, and everything after (evaluation, logits, checkpoint, model) is theirs.

The config is validated by the caller. `xent_lab.record.run` opens the MLflow run around this and publishes the
result; a stop signal (`xent_lab.stopping`) is acted on between batches and before each phase.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from omegaconf import DictConfig, OmegaConf

from xent_lab import data, models, objectives, stopping
from xent_lab.losses import loss_decomposition
from xent_lab.tracking import tags as T
from xent_lab.tracking.record import CHECKPOINT
from xent_lab.training import fit
from xent_lab.training.callbacks import (
    AfterEpoch,
    CalibrationCallback,
    Checkpoint,
    EpochEvents,
    KeepBestValAccuracy,
    StopOnNonFiniteLoss,
    save_checkpoint,
)
from xent_lab.training.evaluate import check_methods, evaluate, shift_logits, split_logits
from xent_lab.training.events import ConsoleLine, EpochSink, MemorySink
from xent_lab.training.probe import GradientProbe
from xent_lab.training.result import Evaluation, RunResult, Setup
from xent_lab.training.runtime import configure_runtime

# trainer.verbose at or above this prints `ConsoleLine`'s line per epoch; 1 is Keras' progress bar.
EPOCH_LINE_VERBOSE = 2


def train(
    cfg: DictConfig, sink: EpochSink | None = None, output_dir: Path | None = None, launched_at: float | None = None
) -> RunResult:
    """Train as configured; each epoch's values go to `sink` (default: a `MemorySink`, dropped).

    `output_dir`: where `trainer.checkpoint` saves the model; `launched_at`: a `perf_counter()` taken at process
    start, for `RunResult.startup_seconds`.
    """
    setup = prepare(cfg)
    return fit_and_evaluate(cfg, setup, [sink if sink is not None else MemorySink()], output_dir, launched_at)


def prepare(cfg: DictConfig) -> Setup:
    """Device, precision and seeds; then the data, the loss, the model with the head it asks for, compiled."""
    runtime = configure_runtime(cfg.trainer, cfg.seed)
    stopping.check()
    dataset = load_data(cfg)
    objective = objectives.build_objective(cfg.loss, dataset.num_classes)
    check_methods(cfg.calibration.methods, objective.head)  # before the training, not after
    model = models.build_model(cfg.model, dataset.x_train.shape[1:], objective, dataset.vocab_size)
    fit.compile_model(model, cfg.trainer, objective)
    return Setup(runtime, dataset, objective, model, models.logits_model(model))


def data_settings(cfg: DictConfig) -> data.DataSettings:
    return data.DataSettings.from_mapping(OmegaConf.to_container(cfg.dataset, resolve=True))


def load_data(cfg: DictConfig) -> data.Dataset:
    return data.load_dataset(data_settings(cfg))


def _evaluated(cfg: DictConfig, setup: Setup, shift: bool = True) -> tuple[dict[str, np.ndarray], Evaluation]:
    """The model's current weights on val and test: their logits, and the evaluation; with `shift`, on the shifted
    test sets of `evaluation.shift` too."""
    logits = split_logits(setup.logits_model, setup.dataset)
    shift_cfg = cfg.evaluation.shift
    shifted = shift_logits(setup.logits_model, setup.dataset, shift_cfg) if shift else None
    evaluation = evaluate(
        setup.model, setup.dataset, setup.objective, logits, cfg.calibration, shifted, shift_cfg.bootstrap
    )
    return logits, evaluation


@dataclass(frozen=True)
class FitCallbacks:
    """The callbacks of a training's fit, in the order they run after `fit.fit`'s stops, and those read after it."""

    callbacks: list[keras.callbacks.Callback]
    events: EpochEvents
    nonfinite: StopOnNonFiniteLoss
    keep: KeepBestValAccuracy | None


def fit_callbacks(
    cfg: DictConfig, setup: Setup, sinks: Sequence[EpochSink], output_dir: Path | None = None
) -> FitCallbacks:
    """The per-epoch callbacks as configured, each epoch handed to `sinks` (and to the console line,
    trainer.verbose >= 2)."""
    if cfg.trainer.verbose >= EPOCH_LINE_VERBOSE:
        sinks = [*sinks, ConsoleLine(cfg.trainer.epochs)]
    events = EpochEvents(sinks)
    keep = KeepBestValAccuracy() if cfg.trainer.keep == T.KEEP_BEST else None
    nonfinite = StopOnNonFiniteLoss(cfg.trainer.on_nonfinite, sinks)
    callbacks = [*_callbacks(cfg, setup, output_dir), *([keep] if keep is not None else []), events]
    return FitCallbacks(callbacks, events, nonfinite, keep)


def fit_model(
    cfg: DictConfig, setup: Setup, callbacks: FitCallbacks, initial_epoch: int = 0
) -> keras.callbacks.History:
    """`fit.fit` of the setup's model on its training split, validated on its validation split, with `callbacks`,
    from `initial_epoch` up to `trainer.epochs`."""
    dataset, objective = setup.dataset, setup.objective
    return fit.fit(
        setup.model,
        cfg.trainer,
        (dataset.x_train, objective.encode_labels(dataset.y_train)),
        (dataset.x_val, objective.encode_labels(dataset.y_val)),
        callbacks.callbacks,
        fit.class_weights(dataset.y_train, dataset.num_classes, cfg.loss.class_weight),
        callbacks.nonfinite,
        initial_epoch,
    )


def fit_and_evaluate(
    cfg: DictConfig,
    setup: Setup,
    sinks: Sequence[EpochSink],
    output_dir: Path | None = None,
    launched_at: float | None = None,
) -> RunResult:
    """Fit with the per-epoch callbacks (`fit_callbacks`), each epoch handed to `sinks`, then evaluate on the
    test split."""
    callbacks = fit_callbacks(cfg, setup, sinks, output_dir)
    stopping.check()
    started = time.perf_counter()
    history = fit_model(cfg, setup, callbacks)
    epochs, keep, nonfinite = callbacks.events, callbacks.keep, callbacks.nonfinite
    result = RunResult(setup, history.history, epochs.epoch_seconds, time.perf_counter() - started)
    result.divergence = nonfinite.divergence
    if launched_at is not None:
        result.startup_seconds = epochs.first_step_at - launched_at
    stopping.check()
    if result.divergence is not None:  # trainer.on_nonfinite=record: NaN weights are not evaluated
        return result
    if keep is not None and keep.weights is not None:
        last_logits, result.last_epoch = _evaluated(cfg, setup, shift=False)  # shifted sets: the kept weights only
        result.last_epoch_test_logits = last_logits["test"]
        setup.model.set_weights(keep.weights)  # from here on, everything is the kept epoch's
        if cfg.trainer.checkpoint and output_dir is not None:
            save_checkpoint(setup.model, Path(output_dir) / CHECKPOINT)  # Checkpoint left the last epoch's there
    # Taken after training: early stopping may have restored earlier weights.
    result.logits, result.evaluation = _evaluated(cfg, setup)
    result.kept_epoch = _kept_epoch(cfg, keep, result.epochs_run - 1)
    return result


def _kept_epoch(cfg: DictConfig, keep: KeepBestValAccuracy | None, last_epoch: int) -> int | None:
    """The 0-based epoch whose weights were evaluated; None when early stopping restored weights of its own
    choosing (its best epoch is not exposed by `fit.fit`)."""
    if keep is not None and keep.best_epoch is not None:
        return keep.best_epoch
    stop = cfg.trainer.early_stopping
    return None if stop.enabled and stop.restore_best_weights else last_epoch


def _callbacks(cfg: DictConfig, setup: Setup, output_dir: Path | None) -> list[keras.callbacks.Callback]:
    callbacks: list[keras.callbacks.Callback] = []
    if cfg.calibration.per_epoch:
        objective = setup.objective
        callbacks.append(
            CalibrationCallback(
                setup.dataset.x_val,
                setup.dataset.y_val,
                objective.head,
                logits_model=setup.logits_model,
                n_bins=cfg.calibration.n_bins,
                extra=[lambda logits, labels: loss_decomposition(*objective.distributions(logits, labels))],
            )
        )
    after_epoch = getattr(setup.objective.loss, "after_epoch", None)
    if after_epoch is not None:  # a loss with state learnt from each epoch's validation predictions
        x_val, y_val = setup.dataset.x_val, setup.dataset.y_val
        callbacks.append(AfterEpoch(after_epoch, x_val, y_val, setup.objective.head, setup.logits_model))
    if cfg.trainer.gradient_probe:
        labels = setup.dataset.y_train
        encoded = setup.objective.encode_labels(labels)
        probe = GradientProbe(setup.dataset.x_train, encoded, labels, setup.objective.loss, cfg.trainer.gradient_probe)
        callbacks.append(probe)
    if cfg.trainer.checkpoint and output_dir is not None:
        # In the output folder, not MLflow: it survives a lost tracking server (relog uploads it).
        callbacks.append(Checkpoint(Path(output_dir) / CHECKPOINT))
    return callbacks
