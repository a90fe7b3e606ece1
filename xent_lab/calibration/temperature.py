"""Recalibration of logits on a validation set.

Temperature scaling (Guo et al. 2017): one T in [0.01, 100] minimising the validation NLL of
logits / T (computed with log-softmax / log-sigmoid, no clipping). T > 0 never changes the argmax.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

from xent_lab import heads
from xent_lab.calibration.validation import check_labels
from xent_lab.heads import Head

# Search interval of the temperature; an optimum on a bound (e.g. a separable validation set,
# where the NLL keeps falling as T -> 0) returns the bound.
TEMPERATURE_BOUNDS = (1e-2, 1e2)


def fit_temperature(logits: np.ndarray, labels: np.ndarray, head: str = Head.SOFTMAX) -> float:
    """argmin over T in TEMPERATURE_BOUNDS of -(1/n) sum_i log P_{i,y_i}(logits / T).

    Bounded Brent search on log T (scipy.optimize.minimize_scalar). For softmax and sigmoid heads
    the NLL is convex in 1/T, hence unimodal in log T, which is what Brent's method needs.
    """
    logits = heads.check_logits(logits, head)
    labels = check_labels(labels, len(logits), heads.num_classes(logits, head))
    rows = np.arange(len(labels))

    def objective(log_t: float) -> float:
        return -float(np.mean(heads.log_probabilities(logits / np.exp(log_t), head)[rows, labels]))

    result = optimize.minimize_scalar(
        objective, bounds=np.log(TEMPERATURE_BOUNDS), method="bounded", options={"xatol": 1e-6}
    )
    if not result.success:
        raise RuntimeError(f"temperature fit did not converge: {result.message}")
    return float(np.exp(result.x))
