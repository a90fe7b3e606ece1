"""The one schema of MLflow tag and metric names: the writers (training, studies, relog) and the
readers (report, tools, tests) import these names instead of spelling them.

The names are part of the stores users already have: renaming one breaks reading old runs.
"""

from __future__ import annotations

from collections.abc import Callable

# --- tags of every training run
DATASET = "dataset"
MODEL = "model"
LOSS = "loss"
IMPL = "impl"
SEED = "seed"
DEVICE = "device"
PRECISION = "precision"
GIT_COMMIT = "git_commit"
OVERRIDES = "overrides"
OUTPUT_DIR = "output_dir"
DATA_SHA256_PREFIX = "data_sha256."  # + source file name -> its sha256
FAILURE_REASON = "failure_reason"  # why a run did not finish
NOTE = "mlflow.note.content"  # the run's description in the MLflow UI (Markdown)
PARENT_RUN_ID = "mlflow.parentRunId"

# --- the process a run lives in (xent_lab.tracking.runs): what `xent-runs close-stale` checks
HOST = "xent.host"
PID = "xent.pid"
PROCESS_START = "xent.process_start"  # the process's start time as the system counts it (Linux: /proc ticks)
HEARTBEAT = "xent.heartbeat"  # unix time, set when the run starts and after each epoch

# --- divergence (trainer.on_nonfinite): set when a batch's training loss became NaN or inf, in both modes
DIVERGED = "xent.diverged"  # "true"
DIVERGED_STEP = "train/diverged_step"  # global 0-based step: epoch * steps_per_epoch + batch

# --- which weights a run evaluated (`trainer.keep`, xent_lab.training.pipeline)
KEEP = "xent.keep"  # the run's trainer.keep: the weights its test/* metrics, predictions and model are of
KEEP_LAST, KEEP_BEST = "last", "best_val_accuracy"  # the values of trainer.keep

# --- the SLURM job a run ran in (xent_lab.tracking.cluster); absent outside SLURM
SLURM_JOB_ID = "slurm_job_id"  # as squeue shows it, scancel takes it: <array job id>_<index> for an array task
SLURM_ARRAY_JOB_ID = "slurm_array_job_id"  # the array of a study launch's jobs
SLURM_ARRAY_TASK_ID = "slurm_array_task_id"  # the job's index in it

# --- studies (xent_lab.sweep, xent_lab.study): a parent run per launch, a child run per job
STUDY = "xent.study"
ROLE = "xent.role"
ROLE_PARENT, ROLE_CHILD = "parent", "child"
CONFIG_HASH = "xent.config_hash"
DATA_DIGEST = "xent.data_digest"  # `train:<digest>,val:<digest>,test:<digest>`, the datasets' digests (lineage)
JOB_OVERRIDES = "xent.job_overrides"  # JSON: swept key -> this job's value
SWEEP = "xent.sweep"  # JSON: swept key -> its values as written
QUESTIONS = "xent.questions"  # the launch's study.questions, as a run's param spells them (a Python list)
SWEEP_DIR = "xent.sweep_dir"
COMMAND = "xent.command"
PUBLISHED = "xent.published"  # "true" when launched exactly as the study file defines it
LAUNCH_HOST = "xent.launch_host"
FAILED_JOBS = "xent.failed_jobs"
NOT_RUN_JOBS = "xent.not_run_jobs"  # jobs a stopped launch never started (no run of theirs exists)
PROGRESS = "xent.progress"  # the last "job N/M done (...); about T left" line of a running study
REUSED_PREFIX = "xent.reused."  # + config hash -> the earlier run a relaunch reused

# --- relog (xent_lab.tracking.relog)
RELOGGED_FROM = "xent.relogged_from"
REPLACES = "xent.replaces"
REPLACED_BY = "xent.replaced_by"

# --- metrics. Per epoch (step = epoch): train/<keras key>, val/<keras key or calibration metric>.
TRAIN_PREFIX, VAL_PREFIX, TEST_PREFIX, PERF_PREFIX = "train/", "val/", "test/", "perf/"
TRAIN_LOSS = "train/loss"
VAL_LOSS = "val/loss"
EPOCH_SECONDS = "perf/epoch_seconds"
CALIBRATION_SECONDS = "perf/calibration_seconds"
# The zero-gradient probe (trainer.gradient_probe), per epoch: fractions of the probed training samples whose loss
# gradient with respect to the model's output is all zero, all zero on a misclassified sample, not finite.
ZERO_GRAD_FRACTION = "train/zero_grad_fraction"
ZERO_GRAD_WRONG_FRACTION = "train/zero_grad_wrong_fraction"
NONFINITE_GRAD_FRACTION = "train/nonfinite_grad_fraction"
PROBE_SECONDS = "perf/probe_seconds"
# Final metrics (step = epochs run).
TEST_LOSS = "test/loss"
TEST_ACCURACY = "test/accuracy"
TEST_ECE = "test/ece"
TEST_ECE_TS = "test/ece_ts"
TEST_TEMPERATURE = "test/temperature"
TEST_RECALL_PREFIX = "test/recall/"  # + class index
TS_SUFFIX = "_ts"  # test/<metric>_ts: the metric after temperature scaling
RECAL_PREFIX = "test/recal/"  # + <method>/<metric>: the test metric after a recalibration method
SHIFT_PREFIX = "shift/"  # + <shift>/<level>/<metric> (after the temperature: <shift>/<level>/ts/<metric>)
CI_LOW, CI_HIGH = "ci_low", "ci_high"  # <metric>/ci_low, <metric>/ci_high: its 95% bootstrap interval
TRAIN_SECONDS = "perf/train_seconds"
MEAN_EPOCH_SECONDS = "perf/mean_epoch_seconds"
EPOCHS_RUN = "perf/epochs_run"
STARTUP_SECONDS = "perf/startup_seconds"
KEPT_EPOCH = "train/kept_epoch"  # the epoch whose weights the run kept, counted from 0 like the steps
KEPT_VAL_NLL = "val/kept_nll"  # the validation NLL of the weights the run kept, once (what a λ search minimises)
# keep=best_val_accuracy: the last epoch's weights are evaluated too, their test/* metrics under this prefix
LAST_EPOCH_PREFIX = "last_epoch/"  # + test/<metric>, e.g. last_epoch/test/ece

# --- artifacts
CONFIG_ARTIFACT = "config/config.yaml"
OVERRIDES_ARTIFACT = "config/overrides.yaml"
MODEL_SUMMARY_ARTIFACT = "model_summary.txt"
LOSS_CURVES_ARTIFACT = "plots/loss_curves.png"
RELIABILITY_ARTIFACT = "plots/reliability_{split}.png"
PREDICTIONS_ARTIFACT = "predictions/test_predictions.npz"
LAST_EPOCH_PREDICTIONS_ARTIFACT = "predictions/test_predictions_last_epoch.npz"  # keep=best_val_accuracy only
VAL_PREDICTIONS_ARTIFACT = "predictions/val_predictions.npz"  # what `xent_lab.calibrate` refits on
RECAL_PARAMS_ARTIFACT = "recalibration/{method}.json"  # a recalibration method's fitted parameters
REPORT_ARTIFACT_DIR = "report"  # a study's report among its parent run's artifacts
MODEL_ARTIFACT = "model"  # the MLflow Model (tracking.log_model): runs:/<run id>/model

# --- run inputs (xent_lab.tracking.lineage): one MLflow dataset per split, named <dataset>-<split>
DATASET_INPUT_NAME = "{dataset}-{split}"  # e.g. mnist-train, mnist-val, mnist-test
DATASET_CONTEXT = "mlflow.data.context"  # MLflow's input tag that the UI shows beside a dataset
SPLIT_CONTEXTS = {"train": "training", "val": "validation", "test": "testing"}  # split -> context
SYSTEM_PREFIX = "system/"  # MLflow's system metrics (tracking.system_metrics), e.g. system/cpu_utilization_percentage


def test_metric(name: str) -> str:
    """`ece` -> `test/ece`."""
    return TEST_PREFIX + name


def val_metric(name: str) -> str:
    """`ece` -> `val/ece`."""
    return VAL_PREFIX + name


def last_epoch_metric(name: str) -> str:
    """`test/ece` -> `last_epoch/test/ece`."""
    return LAST_EPOCH_PREFIX + name


def recal_metric(method: str, name: str) -> str:
    """(`isotonic`, `ece`) -> `test/recal/isotonic/ece`."""
    return f"{RECAL_PREFIX}{method}/{name}"


def shift_metric(shifted: str, name: str) -> str:
    """(`rotate/45`, `ece`) -> `shift/rotate/45/ece`; (`rotate/45/ts`, `ece`) -> `shift/rotate/45/ts/ece`."""
    return f"{SHIFT_PREFIX}{shifted}/{name}"


def with_intervals(
    values: dict[str, float], intervals: dict[str, tuple[float, float]], name_of: Callable[[str], str] = test_metric
) -> dict[str, float]:
    """{name_of(metric): value}, plus name_of(metric)/ci_low and /ci_high for each metric with an interval."""
    named = {name_of(key): value for key, value in values.items()}
    for key, (low, high) in intervals.items():
        named.update({f"{name_of(key)}/{CI_LOW}": low, f"{name_of(key)}/{CI_HIGH}": high})
    return named


def metric_name(keras_key: str) -> str:
    """Keras log key -> MLflow metric name: `loss` -> `train/loss`, `val_loss` -> `val/loss`."""
    if "/" in keras_key:
        return keras_key
    if keras_key.startswith("val_"):
        return VAL_PREFIX + keras_key.removeprefix("val_")
    return TRAIN_PREFIX + keras_key
