"""xent-lab: a training harness for studying cross-entropy losses with Keras, Hydra and MLflow."""

import os

# TensorFlow's C++ INFO/WARNING lines (CUDA probing, CPU feature notes) bury the training output;
# errors still show, and a user can set TF_CPP_MIN_LOG_LEVEL=0 to see everything. The lines it writes
# before its logging starts ignore the level: xent_lab.console filters those, unless the user set it.
if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    os.environ["XENT_TF_LOG_LEVEL_DEFAULTED"] = "1"  # console.DEFAULTED_ENV; this module imports nothing

# MLflow 3's telemetry thread, failing to reach its server on a machine without internet (compute nodes, this
# project's CI), removes an environment variable while a request of the run reads it: the request fails and
# the run can be left RUNNING. Set before mlflow is imported; a user who wants telemetry sets it to false.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

__version__ = "0.1.0"
