"""xent-lab: a training harness for studying cross-entropy losses with Keras, Hydra and MLflow."""

import os

# TensorFlow's C++ INFO/WARNING lines (CUDA probing, CPU feature notes) bury the training output;
# errors still show, and a user can set TF_CPP_MIN_LOG_LEVEL=0 to see everything. The lines it writes
# before its logging starts ignore the level: xent_lab.console filters those, unless the user set it.
if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    os.environ["XENT_TF_LOG_LEVEL_DEFAULTED"] = "1"  # console.DEFAULTED_ENV; this module imports nothing

__version__ = "0.1.0"
