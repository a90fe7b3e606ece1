"""One training job, top to bottom: `train(cfg, ...)` -> the final metrics.

validate the config -> check the tracking store -> (in a study) skip a job already finished ->
device, precision and seeds -> load the data -> build the objective and the model -> open an MLflow
run -> fit (metrics logged per epoch) -> evaluate and calibrate on the test split -> log artifacts.
With `trainer.keep=best_val_accuracy`, the last epoch's weights are evaluated first (last_epoch/test/*),
then the best epoch's are put back, and everything after (test/*, artifacts, model, checkpoint) is theirs.

The entry point `xent_lab.train` adds Hydra, signals and exit codes; tests and the bench call
`train` directly on a composed config.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from omegaconf import DictConfig, OmegaConf

from xent_lab import config, data, models, objectives, stopping, study
from xent_lab.errors import TrackingError
from xent_lab.losses import loss_decomposition
from xent_lab.study import JobContext
from xent_lab.tracking import (
    RunLogger,
    Tracker,
    check_reachable,
    git_commit,
    lineage,
    resolve_uri,
    scrub,
    scrub_logs,
    system_metrics,
)
from xent_lab.tracking import tags as T
from xent_lab.tracking.cluster import slurm_tags
from xent_lab.tracking.record import CHECKPOINT
from xent_lab.tracking.runs import process_tags
from xent_lab.training import artifacts, fit, logged_model, summary
from xent_lab.training.callbacks import (
    CalibrationCallback,
    Divergence,
    EpochMetricsLogger,
    KeepBestValAccuracy,
    StopOnNonFiniteLoss,
)
from xent_lab.training.evaluate import check_methods, evaluate, split_logits
from xent_lab.training.probe import GradientProbe
from xent_lab.training.runtime import Runtime, configure_runtime


@dataclass
class Built:
    """What a job trains: the data, the loss choice and the compiled model."""

    dataset: data.Dataset
    objective: objectives.Objective
    model: keras.Model
    logits_model: keras.Model


def train(
    cfg: DictConfig, overrides: Sequence[str] = (), output_dir: Path | None = None, launched_at: float | None = None
) -> dict[str, float]:
    """Run one training job as configured; returns the final test metrics.

    `overrides` (the command-line overrides) and `output_dir` (the job's folder: the local run record and
    the checkpoint go there) are recorded as tags; `launched_at` (a `perf_counter()` taken at process
    start) gives `perf/startup_seconds`. A stop signal (`xent_lab.stopping`) is acted on between batches and
    before each phase: loading the data, fitting, evaluating, logging the model, ending the run.
    """
    stopping.check()
    config.validate(cfg)
    tracker = open_tracker(cfg)
    job = study.job_context(cfg)
    earlier = _finished_earlier(tracker, job) if job is not None and cfg.study.skip_finished else None
    if earlier is not None:
        return earlier
    runtime = configure_runtime(cfg.trainer, cfg.seed)
    stopping.check()
    built = build(cfg)
    name = study.run_name(cfg, job)
    tags = run_tags(cfg, runtime, built.dataset, list(overrides), output_dir, job, tracker.uri)
    with (
        tracker.run(name, tags=tags, record_dir=output_dir) as run,
        system_metrics.monitored(run, tracker.uri, cfg.tracking.system_metrics),
    ):
        params = {key: scrub(value, tracker.uri) for key, value in config.flatten(cfg).items()}
        run.log_params(params)
        inputs = lineage.log_datasets(run, built.dataset, data_settings(cfg))
        artifacts.log_config(run, cfg, list(overrides), built.model, tracker.uri)
        outcome = fit_and_evaluate(cfg, built, run, output_dir, launched_at)
        results = outcome.results
        epochs_run = int(results[T.EPOCHS_RUN])
        stopping.check()
        diverged = outcome.divergence  # trainer.on_nonfinite=record: no model, predictions or plots of NaN weights
        model_id = None
        if not diverged:
            model_id = logged_model.log_model(
                run,
                cfg.tracking,
                tracker.uri,
                built.logits_model,
                built.objective.head,
                built.dataset,
                epochs_run,
                params,
            )
        lineage.log_final_metrics(run, results, epochs_run, inputs["test"], model_id)
        run.set_tags({T.NOTE: summary.run_note(cfg, results, runtime, diverged)})
        if not diverged:
            artifacts.log_outputs(
                run,
                cfg,
                name,
                built.dataset,
                built.objective,
                outcome.logits,
                outcome.history,
                outcome.recal_params,
                outcome.last_epoch_test_logits,
            )
        stopping.check()  # a stop that came during the last phase ends the run KILLED too, as the exit code says
    print(summary.console_summary(results, tracker, run, outcome.divergence), flush=True)
    if run.lost is not None:
        raise TrackingError(
            f"the run could not be finished in MLflow ({run.lost}). Training completed and nothing is lost: "
            f"metrics, config, artifacts and the model checkpoint are in {output_dir}. When the store answers "
            f"again, log them as one complete run with: python -m xent_lab.relog {output_dir}"
        )
    return results


def open_tracker(cfg: DictConfig) -> Tracker:
    """The configured store, created if new, its password kept out of log lines; an HTTP server must answer."""
    uri = resolve_uri(cfg.tracking.uri)
    scrub_logs(uri)
    check_reachable(uri, cfg.tracking.connect_timeout)
    tracker = Tracker(uri, cfg.tracking.experiment, cfg.tracking.lock_timeout_s)
    tracker.experiment_id()  # the store and the experiment, created once, before the data is loaded
    return tracker


def _finished_earlier(tracker: Tracker, job: JobContext) -> dict[str, float] | None:
    earlier = study.reuse_finished(tracker.client, tracker.experiment_id(), job)
    if earlier is None:
        return None
    print(
        f"skipped: finished run {earlier.info.run_id} of study {job.launch.study} has the same config "
        f"(hash {job.config_hash}); set study.skip_finished=false to train again",
        flush=True,
    )
    return dict(earlier.data.metrics)


def data_settings(cfg: DictConfig) -> data.DataSettings:
    return data.DataSettings.from_mapping(OmegaConf.to_container(cfg.dataset, resolve=True))


def load_data(cfg: DictConfig) -> data.Dataset:
    return data.load_dataset(data_settings(cfg))


def build(cfg: DictConfig) -> Built:
    """Load the data, then build the loss, the model with the head it asks for, and compile."""
    dataset = load_data(cfg)
    objective = objectives.build_objective(cfg.loss, dataset.num_classes)
    check_methods(cfg.calibration.methods, objective.head)  # before the training, not after
    model = models.build_model(cfg.model, dataset.x_train.shape[1:], objective, dataset.vocab_size)
    fit.compile_model(model, cfg.trainer, objective)
    return Built(dataset, objective, model, models.logits_model(model))


def run_tags(
    cfg: DictConfig,
    runtime: Runtime,
    dataset: data.Dataset,
    overrides: list[str],
    output_dir: Path | None,
    job: JobContext | None,
    uri: str,
) -> dict[str, str]:
    return {
        T.DATASET: cfg.dataset.name,
        T.MODEL: cfg.model.name,
        T.LOSS: cfg.loss.name,
        T.IMPL: cfg.loss.impl,
        T.SEED: str(cfg.seed),
        T.DEVICE: runtime.device_name,
        T.PRECISION: runtime.precision,
        T.GIT_COMMIT: git_commit(),
        T.OVERRIDES: scrub(" ".join(overrides), uri),
        T.KEEP: cfg.trainer.keep,
        **({T.OUTPUT_DIR: str(output_dir)} if output_dir is not None else {}),
        **{f"{T.DATA_SHA256_PREFIX}{name}": digest for name, digest in dataset.checksums.items()},
        **(job.tags() if job is not None else {}),
        **slurm_tags(),  # the SLURM job and array task, when the job runs under SLURM
        **process_tags(),  # for `xent-runs close-stale`, should this process die without ending the run
    }


@dataclass
class Outcome:
    """What fitting and evaluating gave: the final metrics, and what the artifacts are drawn from."""

    results: dict[str, float]
    logits: dict[str, np.ndarray]  # "val" and "test"
    history: dict[str, list[float]]  # Keras' History.history
    recal_params: dict[str, dict]  # each recalibration method's fitted parameters
    last_epoch_test_logits: np.ndarray | None = None  # keep=best_val_accuracy: the last epoch's test logits
    divergence: Divergence | None = None  # trainer.on_nonfinite=record: where the loss became NaN or inf


def _evaluated(cfg: DictConfig, built: Built) -> tuple[dict[str, np.ndarray], dict[str, float], dict[str, dict]]:
    """The model's current weights on val and test: their logits, test metrics and recalibration fits."""
    logits = split_logits(built.logits_model, built.dataset)
    return (logits, *evaluate(built.model, built.dataset, built.objective, logits, cfg.calibration))


def fit_and_evaluate(
    cfg: DictConfig, built: Built, run: RunLogger, output_dir: Path | None, launched_at: float | None
) -> Outcome:
    """Fit with the per-epoch callbacks, then evaluate on the test split."""
    dataset, objective = built.dataset, built.objective
    epochs = EpochMetricsLogger(run)
    keep = KeepBestValAccuracy() if cfg.trainer.keep == T.KEEP_BEST else None
    nonfinite = StopOnNonFiniteLoss(cfg.trainer.on_nonfinite, run)
    stopping.check()
    started = time.perf_counter()
    history = fit.fit(
        built.model,
        cfg.trainer,
        (dataset.x_train, objective.encode_labels(dataset.y_train)),
        (dataset.x_val, objective.encode_labels(dataset.y_val)),
        [*_callbacks(cfg, built, output_dir), *([keep] if keep is not None else []), epochs],
        fit.class_weights(dataset.y_train, dataset.num_classes, cfg.loss.class_weight),
        nonfinite,
    )
    diverged = nonfinite.divergence
    train_seconds = time.perf_counter() - started
    stopping.check()
    last_epoch = len(epochs.epoch_seconds) - 1
    last: dict[str, float] = {}
    last_test_logits = None
    if keep is not None and keep.weights is not None and not diverged:
        last_logits, last, _ = _evaluated(cfg, built)
        last_test_logits = last_logits["test"]
        built.model.set_weights(keep.weights)  # from here on, everything is the kept epoch's
        if cfg.trainer.checkpoint and output_dir is not None:
            built.model.save(str(Path(output_dir) / CHECKPOINT))  # ModelCheckpoint left the last epoch's there
    # Taken after training: early stopping may have restored earlier weights.
    logits, results, recal_params = ({}, {}, {}) if diverged else _evaluated(cfg, built)
    results.update({T.last_epoch_metric(key): value for key, value in last.items()})
    kept = _kept_epoch(cfg, keep, last_epoch)
    if kept is not None and not diverged:
        results[T.KEPT_EPOCH] = kept
    steady = epochs.epoch_seconds[1:] or epochs.epoch_seconds  # epoch 0 includes tracing
    results.update(
        {
            T.TRAIN_SECONDS: train_seconds,
            T.MEAN_EPOCH_SECONDS: float(np.mean(steady)),
            T.EPOCHS_RUN: len(epochs.epoch_seconds),
        }
    )
    if launched_at is not None:
        results[T.STARTUP_SECONDS] = epochs.first_step_at - launched_at
    return Outcome(results, logits, history.history, recal_params, last_test_logits, diverged)


def _kept_epoch(cfg: DictConfig, keep: KeepBestValAccuracy | None, last_epoch: int) -> int | None:
    """The 0-based epoch whose weights were evaluated; None when early stopping restored weights of its own
    choosing (its best epoch is not exposed by `fit.fit`)."""
    if keep is not None and keep.best_epoch is not None:
        return keep.best_epoch
    stop = cfg.trainer.early_stopping
    return None if stop.enabled and stop.restore_best_weights else last_epoch


def _callbacks(cfg: DictConfig, built: Built, output_dir: Path | None) -> list[keras.callbacks.Callback]:
    callbacks: list[keras.callbacks.Callback] = []
    if cfg.calibration.per_epoch:
        objective = built.objective
        callbacks.append(
            CalibrationCallback(
                built.dataset.x_val,
                built.dataset.y_val,
                objective.head,
                logits_model=built.logits_model,
                n_bins=cfg.calibration.n_bins,
                extra=[lambda logits, labels: loss_decomposition(*objective.distributions(logits, labels))],
            )
        )
    if cfg.trainer.gradient_probe:
        labels = built.dataset.y_train
        encoded = built.objective.encode_labels(labels)
        probe = GradientProbe(built.dataset.x_train, encoded, labels, built.objective.loss, cfg.trainer.gradient_probe)
        callbacks.append(probe)
    if cfg.trainer.checkpoint and output_dir is not None:
        # In the output folder, not MLflow: it survives a lost tracking server (relog uploads it).
        callbacks.append(keras.callbacks.ModelCheckpoint(str(Path(output_dir) / CHECKPOINT)))
    return callbacks
