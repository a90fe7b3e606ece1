"""`python -m xent_lab.train [overrides]`: train one model from the Hydra config and log it to MLflow.

The path, top to bottom: validate the config -> check the tracking store -> device, precision and
seeds -> load the data -> build the objective and the model -> open an MLflow run -> fit (metrics
logged per epoch) -> evaluate and calibrate on the test split -> log artifacts -> print a summary.
"""

from __future__ import annotations

import time

# Taken before the heavy imports below, for `perf/startup_seconds` (launch to first training step).
LAUNCHED = time.perf_counter()

import signal
import sys
import tempfile
import traceback
from pathlib import Path
from types import FrameType

import hydra
import keras
import numpy as np
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from xent_lab import calibration, config, data, models, objectives, plots, record, runner, study, tracking
from xent_lab.errors import NotApplicable, TrackingError, XentError
from xent_lab.losses import loss_decomposition

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def run_name(cfg: DictConfig, job: study.JobContext | None) -> str:
    """The configured name; else, in a study, the swept values (presets like focal_flsd53 stay apart);
    else dataset-model-loss-impl-seed, e.g. `mnist-mlp-cce-builtin-s0`."""
    if cfg.tracking.run_name:
        return cfg.tracking.run_name
    if job is not None:
        return job.run_name(cfg.dataset.name, cfg.seed)
    return f"{cfg.dataset.name}-{cfg.model.name}-{cfg.loss.name}-{cfg.loss.impl}-s{cfg.seed}"


def run_description(cfg: DictConfig, results: dict[str, float], runtime: runner.Runtime) -> str:
    """The run's note in the MLflow UI (Markdown): what was trained and how it came out."""
    loss = cfg.loss
    details = [f"from_logits={loss.from_logits}"]
    if loss.label_smoothing:
        details.append(f"label_smoothing={loss.label_smoothing}")
    if loss.name == "focal":
        details.append(f"gamma={loss.gamma}")
    if loss.class_weight:
        details.append(f"class_weight={loss.class_weight}")
    lines = [
        f"**{cfg.dataset.name}** · model `{cfg.model.name}` · loss **{loss.name}** ({loss.impl}; {', '.join(details)})"
        f" · seed {cfg.seed} · {cfg.trainer.epochs} epochs on {runtime.device_name}",
        "",
        # A list, not a table: MLflow's note renderer draws tables without cell padding.
        f"- test accuracy **{results['test/accuracy']:.4f}**, test loss {results['test/loss']:.4f}",
        f"- ECE {results['test/ece']:.4f}; after temperature scaling {results.get('test/ece_ts', float('nan')):.4f}"
        f" (T = {results.get('test/temperature', float('nan')):.3f})",
    ]
    return "\n".join(lines)


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM (a scheduler or `kill`) ends the run as KILLED, like Ctrl-C, instead of leaving it RUNNING.
    # SIGINT is set explicitly too: a process started in the background by a non-interactive shell
    # inherits SIGINT as ignored, and Python then never raises KeyboardInterrupt.
    raise KeyboardInterrupt


def _model_summary(model) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
    return "\n".join(lines)


def load_data(cfg: DictConfig) -> data.Dataset:
    ds = cfg.dataset
    return data.load_dataset(
        ds.name,
        data.resolve_data_dir(ds.data_dir),
        Path(ds.cache_dir).expanduser(),
        val_size=ds.val_size,
        val_seed=ds.val_seed,
        limit_train=ds.limit.train,
        limit_test=ds.limit.test,
        imbalance=ds.get("imbalance"),
        vocab_size=ds.get("vocab_size", 20000),
        sequence_length=ds.get("sequence_length", 256),
        download=ds.download,
        verify_checksums=ds.verify_checksums,
    )


def train(cfg: DictConfig, overrides: list[str], output_dir: Path) -> dict[str, float]:
    """Run one training job as configured; returns the final test metrics.

    `overrides` (the command-line overrides) and `output_dir` (Hydra's job folder) are recorded as tags.
    """
    config.validate(cfg)
    uri = tracking.resolve_uri(cfg.tracking.uri)
    tracking.scrub_logs(uri)
    tracking.check_reachable(uri, cfg.tracking.connect_timeout)
    tracker = tracking.Tracker(uri, cfg.tracking.experiment)
    job = study.job_context(cfg)
    if job is not None and cfg.study.skip_finished:
        earlier = study.reuse_finished(tracker.client, tracker.experiment_id(), job)
        if earlier is not None:
            print(f"skipped: finished run {earlier.info.run_id} of study {job.launch.study} has the same config "
                  f"(hash {job.config_hash}); set study.skip_finished=false to train again", flush=True)
            return dict(earlier.data.metrics)
    runtime = runner.configure_runtime(cfg.trainer, cfg.seed)

    dataset = load_data(cfg)
    objective = objectives.build_objective(cfg.loss, dataset.num_classes)
    model = models.build_model(cfg.model, dataset.x_train.shape[1:], objective, dataset.vocab_size)
    runner.compile_model(model, cfg.trainer, objective)
    logits_model = models.logits_model(model)

    tags = {
        "dataset": cfg.dataset.name,
        "model": cfg.model.name,
        "loss": cfg.loss.name,
        "impl": cfg.loss.impl,
        "seed": str(cfg.seed),
        "device": runtime.device_name,
        "precision": runtime.precision,
        "git_commit": tracking.git_commit(),
        "overrides": tracking.scrub(" ".join(overrides), uri),
        "output_dir": str(output_dir),
        **{f"data_sha256.{name}": digest for name, digest in dataset.checksums.items()},
        **(job.tags() if job is not None else {}),
    }
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _raise_keyboard_interrupt)
    name = run_name(cfg, job)
    with tracker.run(name, tags=tags, record_dir=output_dir) as run:
        run.log_params({key: tracking.scrub(value, uri) for key, value in config.flatten(cfg).items()})
        run.log_text(tracking.scrub(OmegaConf.to_yaml(cfg, resolve=True), uri), "config/config.yaml")
        run.log_text(tracking.scrub(OmegaConf.to_yaml(OmegaConf.create(overrides)), uri), "config/overrides.yaml")
        run.log_text(_model_summary(model), "model_summary.txt")

        callbacks = []
        if cfg.calibration.per_epoch:
            callbacks.append(
                calibration.CalibrationCallback(
                    dataset.x_val,
                    dataset.y_val,
                    objective.head,
                    logits_model=logits_model,
                    n_bins=cfg.calibration.n_bins,
                    extra=[lambda logits, labels: loss_decomposition(*objective.distributions(logits, labels))],
                )
            )
        if cfg.trainer.checkpoint:
            # In the output folder, not MLflow: it survives a lost tracking server (relog uploads it).
            callbacks.append(keras.callbacks.ModelCheckpoint(str(output_dir / record.CHECKPOINT)))
        epochs = runner.EpochMetricsLogger(run)
        started = time.perf_counter()
        history = runner.fit(
            model,
            cfg.trainer,
            (dataset.x_train, objective.encode_labels(dataset.y_train)),
            (dataset.x_val, objective.encode_labels(dataset.y_val)),
            [*callbacks, epochs],
            runner.class_weights(dataset.y_train, dataset.num_classes, cfg.loss.class_weight),
        )
        train_seconds = time.perf_counter() - started

        # Taken after training: early stopping may have restored earlier weights.
        logits = {"val": _logits(logits_model, dataset.x_val), "test": _logits(logits_model, dataset.x_test)}
        results = evaluate(model, dataset, objective, logits, cfg.calibration)
        mean_epoch = epochs.epoch_seconds[1:] or epochs.epoch_seconds  # epoch 0 includes tracing
        results.update(
            {
                "perf/train_seconds": train_seconds,
                "perf/mean_epoch_seconds": float(np.mean(mean_epoch)),
                "perf/epochs_run": len(epochs.epoch_seconds),
                "perf/startup_seconds": epochs.first_step_at - LAUNCHED,
            }
        )
        run.log_metrics(results, step=len(epochs.epoch_seconds))
        run.set_tags({"mlflow.note.content": run_description(cfg, results, runtime)})
        log_outputs(run, cfg, name, model, dataset, objective, logits, history.history)

    _print_summary(results, tracker, run)
    if run.lost is not None:
        raise TrackingError(
            f"the run could not be finished in MLflow ({run.lost}). Training completed and nothing is lost: "
            f"metrics, config, artifacts and the model checkpoint are in {output_dir}. When the tracking "
            f"server is back, log them as one complete run with: python -m xent_lab.relog {output_dir}"
        )
    return results


def evaluate(
    model, dataset: data.Dataset, objective: objectives.Objective, logits: dict[str, np.ndarray], calib: DictConfig
) -> dict[str, float]:
    """Test loss and accuracy, test calibration, and (if asked) the same after temperature scaling on val."""
    test_loss, test_accuracy = model.evaluate(
        dataset.x_test, objective.encode_labels(dataset.y_test), batch_size=1024, verbose=0
    )
    results = {"test/loss": test_loss, "test/accuracy": test_accuracy}
    probs = calibration.probabilities(logits["test"], objective.head)
    metrics = calibration.calibration_metrics(probs, dataset.y_test, calib.n_bins)
    results.update({f"test/{k}": v for k, v in metrics.items() if k != "accuracy"})
    recall = calibration.per_class_recall(probs, dataset.y_test)
    results.update({f"test/recall/{k}": float(r) for k, r in enumerate(recall) if np.isfinite(r)})
    if calib.temperature_scaling:
        report = calibration.temperature_scaling_report(
            logits["val"], dataset.y_val, logits["test"], dataset.y_test, objective.head, calib.n_bins
        )
        results.update({f"test/{k}": v for k, v in report.items() if k.endswith("_ts") or k == "temperature"})
    return results


def _logits(logits_model, x: np.ndarray) -> np.ndarray:
    return logits_model.predict(x, batch_size=1024, verbose=0)


def log_outputs(run: tracking.RunLogger, cfg: DictConfig, title: str, model, dataset: data.Dataset,
                objective: objectives.Objective, logits: dict[str, np.ndarray],
                history: dict[str, list[float]]) -> None:
    """Loss curves, reliability diagrams (validation and test), test predictions and, if asked, the model."""
    run.log_figure(plots.loss_curves(history, title), "plots/loss_curves.png")
    for split, labels in (("val", dataset.y_val), ("test", dataset.y_test)):
        figure = calibration.reliability_diagram(
            calibration.probabilities(logits[split], objective.head), labels, cfg.calibration.n_bins,
            title=f"{title} ({split})",
        )
        run.log_figure(figure, f"plots/reliability_{split}.png")
    with tempfile.TemporaryDirectory() as tmp:
        predictions = Path(tmp) / "test_predictions.npz"
        calibration.save_predictions(predictions, logits["test"], dataset.y_test, objective.head)
        run.log_artifact(predictions, "predictions")
        if cfg.tracking.log_model:
            model_path = Path(tmp) / "model.keras"
            model.save(model_path)
            run.log_artifact(model_path, "model")


def _print_summary(results: dict[str, float], tracker: tracking.Tracker, run: tracking.RunLogger) -> None:
    lines = [
        "",
        f"test accuracy {results['test/accuracy']:.4f}   test loss {results['test/loss']:.4f}   "
        f"ECE {results['test/ece']:.4f}"
        + (
            f" (after temperature scaling {results['test/ece_ts']:.4f}, T={results['test/temperature']:.3f})"
            if "test/temperature" in results
            else ""
        ),
    ]
    if run.lost is None:
        lines.append(f"MLflow run {run.run_id} in {tracking.redact(tracker.uri)} (experiment '{tracker.experiment}')")
        if not tracker.uri.startswith("http"):
            lines.append(f"open it: mlflow ui --backend-store-uri {tracking.redact(tracker.uri)}   (or `make ui`), then")
        lines.append(f"  {tracker.run_url(run)}")
    print("\n".join(lines), flush=True)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Exit codes of a single run: 0 done, 2 a user error (the message says how to fix it), 130 interrupted.

    In a sweep a failed job is reported and the sweep goes on; the study callback sets the exit code.
    """
    hydra_cfg = HydraConfig.get()
    sweeping = hydra_cfg.mode == RunMode.MULTIRUN
    uri = tracking.resolve_uri(cfg.tracking.uri)  # only to keep its password out of messages
    try:
        return train(cfg, list(hydra_cfg.overrides.task), Path(hydra_cfg.runtime.output_dir))["test/accuracy"]
    except KeyboardInterrupt:
        print("interrupted: training stopped; a run already started was ended as KILLED", file=sys.stderr, flush=True)
        sys.exit(130)
    except NotApplicable as exc:
        if sweeping:  # e.g. loss.gamma=flsd53 crossed with loss.impl=builtin: nothing to run, nothing failed
            print(f"job {hydra_cfg.job.num} not applicable, skipped: {tracking.scrub(str(exc), uri)}", flush=True)
            return None
        print(f"error: {tracking.scrub(str(exc), uri)}", file=sys.stderr, flush=True)
        sys.exit(2)
    except XentError as exc:
        print(f"error: {tracking.scrub(str(exc), uri)}", file=sys.stderr, flush=True)
        if not sweeping:
            sys.exit(2)
        study.record_failure(cfg, tracking.scrub(str(exc), uri))
    except Exception as exc:
        if not sweeping:
            raise
        print(tracking.scrub(traceback.format_exc(), uri), file=sys.stderr, flush=True)
        study.record_failure(cfg, tracking.scrub(f"{type(exc).__name__}: {exc}", uri))
    print(f"job {hydra_cfg.job.num} failed; the sweep goes on", file=sys.stderr, flush=True)
    return None


if __name__ == "__main__":
    main()
