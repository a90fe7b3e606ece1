"""A training recorded in MLflow: the live per-epoch sink, `publish` of a finished training, and the job
harness `run` that the command line (`xent_lab.train`) calls. Training itself (`xent_lab.training`) knows no
store."""

from xent_lab.record.harness import run
from xent_lab.record.publish import publish
from xent_lab.record.sink import MlflowSink

__all__ = ["MlflowSink", "publish", "run"]
