"""Calibration metrics, reliability diagrams, temperature scaling and saved predictions: NumPy, SciPy
and matplotlib only (the per-epoch Keras callback is `xent_lab.training.callbacks.CalibrationCallback`).

Notation: n samples, k classes, probabilities P (n, k) with rows summing to one, integer labels y,
M bins. A binary positive-class probability p (shape (n,) or (n, 1)) is read as P = [1 - p, p].
The prediction is argmax_j P_ij (ties go to the lowest class index), its confidence c_i = max_j P_ij
and its correctness a_i = 1[argmax_j P_ij == y_i].

- `validation`: the input checks (ValueError naming the problem and the offending shape or value);
- `binning`: the equal-width bins and `reliability_bins`;
- `metrics`: ECE, MCE, adaptive and classwise ECE, Brier, NLL, accuracy, per-class recall;
- `temperature`: recalibration of logits (temperature scaling);
- `plots`: reliability diagrams;
- `predictions`: test logits, labels and head saved to and loaded from .npz.

Logits become probabilities in `xent_lab.heads` (`probabilities`, re-exported here).
"""

from xent_lab.calibration.binning import ReliabilityBins, reliability_bins
from xent_lab.calibration.metrics import (
    NLL_EPS,
    accuracy,
    adaptive_ece,
    brier_score,
    calibration_metrics,
    classwise_ece,
    ece,
    mce,
    nll,
    per_class_recall,
)
from xent_lab.calibration.plots import draw_reliability, reliability_diagram
from xent_lab.calibration.predictions import Predictions, load_predictions, save_predictions
from xent_lab.calibration.temperature import TEMPERATURE_BOUNDS, fit_temperature, temperature_scaling_report
from xent_lab.calibration.validation import SUM_TOLERANCE, check_labels, check_n_bins
from xent_lab.heads import HEADS, probabilities

__all__ = [
    "HEADS",
    "NLL_EPS",
    "SUM_TOLERANCE",
    "TEMPERATURE_BOUNDS",
    "Predictions",
    "ReliabilityBins",
    "accuracy",
    "adaptive_ece",
    "brier_score",
    "calibration_metrics",
    "check_labels",
    "check_n_bins",
    "classwise_ece",
    "draw_reliability",
    "ece",
    "fit_temperature",
    "load_predictions",
    "mce",
    "nll",
    "per_class_recall",
    "probabilities",
    "reliability_bins",
    "reliability_diagram",
    "save_predictions",
    "temperature_scaling_report",
]
