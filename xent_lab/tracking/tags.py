"""The one schema of MLflow tag and metric names: the writers (training, studies, relog) and the
readers (report, tools, tests) import these names instead of spelling them.

The names are part of the stores users already have: renaming one breaks reading old runs.
"""

from __future__ import annotations

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

# --- studies (xent_lab.study): a parent run per launch, a child run per job
STUDY = "xent.study"
ROLE = "xent.role"
ROLE_PARENT, ROLE_CHILD = "parent", "child"
CONFIG_HASH = "xent.config_hash"
JOB_OVERRIDES = "xent.job_overrides"  # JSON: swept key -> this job's value
SWEEP = "xent.sweep"  # JSON: swept key -> its values as written
SWEEP_DIR = "xent.sweep_dir"
COMMAND = "xent.command"
PUBLISHED = "xent.published"  # "true" when launched exactly as the study file defines it
LAUNCH_HOST = "xent.launch_host"
FAILED_JOBS = "xent.failed_jobs"
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
# Final metrics (step = epochs run).
TEST_LOSS = "test/loss"
TEST_ACCURACY = "test/accuracy"
TEST_ECE = "test/ece"
TEST_ECE_TS = "test/ece_ts"
TEST_TEMPERATURE = "test/temperature"
TEST_RECALL_PREFIX = "test/recall/"  # + class index
TS_SUFFIX = "_ts"  # test/<metric>_ts: the metric after temperature scaling
TRAIN_SECONDS = "perf/train_seconds"
MEAN_EPOCH_SECONDS = "perf/mean_epoch_seconds"
EPOCHS_RUN = "perf/epochs_run"
STARTUP_SECONDS = "perf/startup_seconds"

# --- artifacts
CONFIG_ARTIFACT = "config/config.yaml"
OVERRIDES_ARTIFACT = "config/overrides.yaml"
MODEL_SUMMARY_ARTIFACT = "model_summary.txt"
LOSS_CURVES_ARTIFACT = "plots/loss_curves.png"
RELIABILITY_ARTIFACT = "plots/reliability_{split}.png"
PREDICTIONS_ARTIFACT = "predictions/test_predictions.npz"
REPORT_ARTIFACT_DIR = "report"  # a study's report among its parent run's artifacts


def test_metric(name: str) -> str:
    """`ece` -> `test/ece`."""
    return TEST_PREFIX + name


def val_metric(name: str) -> str:
    """`ece` -> `val/ece`."""
    return VAL_PREFIX + name


def metric_name(keras_key: str) -> str:
    """Keras log key -> MLflow metric name: `loss` -> `train/loss`, `val_loss` -> `val/loss`."""
    if "/" in keras_key:
        return keras_key
    if keras_key.startswith("val_"):
        return VAL_PREFIX + keras_key.removeprefix("val_")
    return TRAIN_PREFIX + keras_key
