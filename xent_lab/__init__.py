"""xent-lab: a training harness for studying cross-entropy losses with Keras, Hydra and MLflow."""

import os

# TensorFlow's C++ INFO/WARNING lines (CUDA probing, CPU feature notes) bury the training output;
# errors still show, and a user can set TF_CPP_MIN_LOG_LEVEL=0 to see everything.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
