"""One job, recorded: `run(cfg, ...)` = open the store and the run, `training` inside it, `publish` the result.

validate the config -> check the tracking store (a single run: warn of runs a dead process left RUNNING) -> device,
precision, seeds, data and model (`training.prepare`) -> (in a study) skip a job already finished on the same data
and code -> open the MLflow run: tags, params, datasets, config -> fit and evaluate (`training.fit_and_evaluate`,
each epoch logged live by `MlflowSink`) -> `publish`.
The entry point `xent_lab.train` adds Hydra, signals and exit codes; tests and the bench call `run` directly
on a composed config.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from xent_lab import config, data, stopping, study
from xent_lab.errors import TrackingError
from xent_lab.record import artifacts
from xent_lab.record.publish import console_summary, publish
from xent_lab.record.sink import MlflowSink
from xent_lab.study import JobContext
from xent_lab.tracking import (
    Tracker,
    check_reachable,
    git_commit,
    lineage,
    redact,
    resolve_uri,
    scrub,
    scrub_logs,
    system_metrics,
)
from xent_lab.tracking import tags as T
from xent_lab.tracking.cluster import slurm_tags
from xent_lab.tracking.lock import patiently
from xent_lab.tracking.runs import dead_runs_note, process_tags
from xent_lab.tracking.secrets import has_secret
from xent_lab.training import fit_and_evaluate, prepare
from xent_lab.training.pipeline import data_settings
from xent_lab.training.runtime import Runtime


def run(
    cfg: DictConfig, overrides: Sequence[str], output_dir: Path, launched_at: float | None = None
) -> dict[str, float]:
    """Run one training job as configured and record it; returns the final metrics.

    `overrides` (the command-line overrides) and `output_dir` (the job's folder: the local run record and the
    checkpoint go there) are recorded as tags; `launched_at` (a `perf_counter()` taken at process start) gives
    `perf/startup_seconds`. A stop signal (`xent_lab.stopping`) is acted on between batches and before each
    phase: loading the data, fitting, evaluating, logging the model, ending the run.
    """
    stopping.check()
    config.validate(cfg)
    tracker = open_tracker(cfg)
    study.check_config_files()  # the config the launch validated, not a YAML file edited since
    job = study.job_context(cfg)
    if job is None:  # a study's launch closes its own dead runs (xent_lab.sweep.callback)
        _warn_dead_runs(tracker)
    setup = prepare(cfg)  # before the reuse check: a job's identity includes its data's digests
    if job is not None:
        job = job.on_data(setup.dataset.checksums, data_settings(cfg).shaping())
        earlier = _finished_earlier(tracker, job, cfg) if cfg.study.skip_finished else None
        if earlier is not None:
            return earlier
    name = study.run_name(cfg, job)
    tags = run_tags(cfg, setup.runtime, setup.dataset, list(overrides), output_dir, job, tracker.uri)
    with (
        tracker.run(name, tags=tags, record_dir=output_dir) as logger,
        system_metrics.monitored(logger, tracker.uri, cfg.tracking.system_metrics),
    ):
        params = {key: scrub(value, tracker.uri) for key, value in config.flatten(cfg).items()}
        logger.log_params(params)
        inputs = lineage.log_datasets(logger, setup.dataset, data_settings(cfg))
        artifacts.log_config(logger, cfg, list(overrides), setup.model, tracker.uri)
        result = fit_and_evaluate(cfg, setup, [MlflowSink(logger)], output_dir, launched_at)
        stopping.check()
        results = publish(result, logger, cfg, name, params, inputs, tracker.uri)
        stopping.check()  # a stop that came during the last phase ends the run KILLED too, as the exit code says
    print(console_summary(results, tracker, logger, result.divergence), flush=True)
    if logger.lost is not None:
        raise TrackingError(
            f"the run could not be finished in MLflow ({logger.lost}). Training completed and nothing is lost: "
            f"metrics, config, artifacts and the model checkpoint are in {output_dir}. When the store answers "
            f"again, log them as one complete run with: {relog_command(output_dir, tracker.uri)}"
        )
    return results


def relog_command(output_dir: Path, uri: str) -> str:
    """The command that logs the record in `output_dir` to the store at `uri`: relog takes a store from its command
    line only, and the record keeps no password, so a URI that has one shows *** for the user to fill in."""
    command = f"python -m xent_lab.relog {shlex.quote(str(output_dir))} --tracking-uri {shlex.quote(redact(uri))}"
    return command + (" (with the password in place of ***)" if has_secret(uri) else "")


def open_tracker(cfg: DictConfig) -> Tracker:
    """The configured store, created if new, its password kept out of log lines; an HTTP server must answer."""
    uri = resolve_uri(cfg.tracking.uri)
    scrub_logs(uri)
    check_reachable(uri, cfg.tracking.connect_timeout)
    tracker = Tracker(uri, cfg.tracking.experiment, cfg.tracking.lock_timeout_s)
    tracker.experiment_id()  # the store and the experiment, created once, before the data is loaded
    return tracker


def _warn_dead_runs(tracker: Tracker) -> None:
    """A native crash (TensorFlow out of memory under `ulimit -v`) cannot end its run: the next launch in the
    store says which runs of this host were left RUNNING by a process now gone, and how to close them."""
    note = patiently(dead_runs_note, tracker.client, tracker.uri, uri=tracker.uri, timeout_s=tracker.lock_timeout_s)
    if note is not None:
        print(note, file=sys.stderr, flush=True)


def _finished_earlier(tracker: Tracker, job: JobContext, cfg: DictConfig) -> dict[str, float] | None:
    """The metrics of a finished run with the job's identity (config, data, commit), which the launch then reuses."""
    shaping = data_settings(cfg).shaping()
    earlier, why_not = study.reusable_run(
        tracker.client, tracker.experiment_id(), job, shaping, git_commit(), cfg.study.reuse_across_commits
    )
    if earlier is None:
        if why_not is not None:
            print(f"not reused: {why_not}; training it again", flush=True)
        return None
    study.record_reuse(tracker.client, job, earlier)
    print(
        f"skipped: finished run {earlier.info.run_id} of study {job.launch.study} has the same config "
        f"(hash {job.config_hash}), data and code; set study.skip_finished=false to train again",
        flush=True,
    )
    return dict(earlier.data.metrics)


def run_tags(
    cfg: DictConfig,
    runtime: Runtime,
    dataset: data.Dataset,
    overrides: list[str],
    output_dir: Path,
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
        T.OUTPUT_DIR: str(output_dir),
        **{f"{T.DATA_SHA256_PREFIX}{name}": digest for name, digest in dataset.checksums.items()},
        **(job.tags() if job is not None else {}),
        **slurm_tags(),  # the SLURM job and array task, when the job runs under SLURM
        **process_tags(),  # for `xent-runs close-stale`, should this process die without ending the run
    }
