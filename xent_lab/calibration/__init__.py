"""Calibration metrics, reliability diagrams, temperature scaling and saved predictions: NumPy, SciPy
and matplotlib only (the per-epoch Keras callback is `xent_lab.training.callbacks.CalibrationCallback`).

Notation: n samples, k classes, probabilities P (n, k) with rows summing to one, integer labels y,
M bins. A binary positive-class probability p (shape (n,) or (n, 1)) is read as P = [1 - p, p].
The prediction is argmax_j P_ij (ties go to the lowest class index), its confidence c_i = max_j P_ij
and its correctness a_i = 1[argmax_j P_ij == y_i].

- `validation`: the input checks (ValueError naming the problem and the offending shape or value);
- `binning`: the equal-width and equal-mass bins and `reliability_bins`;
- `statistics`: the one engine: per-bin counts and sums, per-class sums and per-sample sums of the test set or of
  a batch of bootstrap resamples, from which every metric is computed;
- `metrics`: `METRICS`, each metric defined once on those statistics (ECE, MCE, adaptive and classwise ECE,
  Brier, NLL, accuracy, and the estimators), the single-value functions, per-class recall;
- `temperature`: recalibration of logits (temperature scaling);
- `estimators`: debiased ECE, ECE-sweep and smooth ECE;
- `selective`: the selective-prediction metrics of the confidence ranking (AURC, AUGRC, risk at 80% coverage,
  coverage at 5% risk);
- `bootstrap`: percentile bootstrap intervals of every metric of `METRICS` (its statistics of all resamples at
  once), the paired bootstrap of two models, and the band of the per-bin accuracy;
- `recalibration`: the recalibration methods (fit / predict_proba), registered in `RECALIBRATORS`;
- `scoring`: a run's test scores with intervals, before and after each recalibration method;
- `plots`: reliability diagrams (binned with counts and bootstrap bands, and smooth curves);
- `predictions`: test logits, labels and head saved to and loaded from .npz.

Logits become probabilities in `xent_lab.heads` (`probabilities`, re-exported here).
"""

from xent_lab.calibration.bootstrap import (
    BOOTSTRAP_METRICS,
    PairedDifference,
    bin_accuracy_band,
    bootstrap_ci,
    paired_bootstrap,
    paired_resamples,
)
from xent_lab.calibration.estimators import debiased_ece, ece_sweep, estimator_metrics, smooth_ece, smooth_reliability
from xent_lab.calibration.metrics import (
    CALIBRATION_METRICS,
    METRICS,
    ReliabilityBins,
    accuracy,
    adaptive_ece,
    brier_score,
    calibration_metrics,
    classwise_ece,
    ece,
    mce,
    nll,
    per_class_recall,
    reliability_bins,
    selective_metrics,
)
from xent_lab.calibration.plots import draw_reliability, draw_smooth, reliability_diagram
from xent_lab.calibration.predictions import Predictions, load_predictions, save_predictions
from xent_lab.calibration.recalibration import (
    ALL_METHODS,
    RECALIBRATORS,
    Recalibrator,
    methods_for,
    recalibrator,
    resolve_methods,
)
from xent_lab.calibration.scoring import (
    Recalibrated,
    Scores,
    fit_methods,
    recalibrate,
    score,
    score_method,
    score_methods,
    temperature_summary,
)
from xent_lab.calibration.selective import SELECTIVE
from xent_lab.calibration.statistics import NLL_EPS
from xent_lab.calibration.temperature import TEMPERATURE_BOUNDS, fit_temperature
from xent_lab.calibration.validation import SUM_TOLERANCE, check_labels, check_n_bins
from xent_lab.heads import HEADS, probabilities

__all__ = [
    "ALL_METHODS",
    "BOOTSTRAP_METRICS",
    "CALIBRATION_METRICS",
    "HEADS",
    "METRICS",
    "NLL_EPS",
    "RECALIBRATORS",
    "SELECTIVE",
    "SUM_TOLERANCE",
    "TEMPERATURE_BOUNDS",
    "PairedDifference",
    "Predictions",
    "Recalibrated",
    "Recalibrator",
    "ReliabilityBins",
    "Scores",
    "accuracy",
    "adaptive_ece",
    "bin_accuracy_band",
    "bootstrap_ci",
    "brier_score",
    "calibration_metrics",
    "check_labels",
    "check_n_bins",
    "classwise_ece",
    "debiased_ece",
    "draw_reliability",
    "draw_smooth",
    "ece",
    "ece_sweep",
    "estimator_metrics",
    "fit_methods",
    "fit_temperature",
    "load_predictions",
    "mce",
    "methods_for",
    "nll",
    "paired_bootstrap",
    "paired_resamples",
    "per_class_recall",
    "probabilities",
    "recalibrate",
    "resolve_methods",
    "recalibrator",
    "reliability_bins",
    "reliability_diagram",
    "save_predictions",
    "score",
    "selective_metrics",
    "score_method",
    "score_methods",
    "smooth_ece",
    "smooth_reliability",
    "temperature_summary",
]
