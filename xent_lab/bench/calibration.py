"""Calibration speed: the metrics against one NumPy argmax pass over the same array."""

from __future__ import annotations

from typing import Any

import numpy as np

from xent_lab import calibration
from xent_lab.bench.common import median_time


def calibration_speed(n: int, k: int, repeat: int) -> dict[str, Any]:
    """All calibration metrics on n x k probabilities, against one NumPy argmax pass over the same array."""
    rng = np.random.default_rng(0)
    probs = calibration.probabilities(rng.normal(size=(n, k)).astype("float32"), "softmax")
    labels = rng.integers(0, k, size=n)
    argmax = median_time(lambda: probs.argmax(axis=1), repeat)
    metrics = median_time(lambda: calibration.calibration_metrics(probs, labels), repeat)
    return {
        "shape": [n, k],
        "argmax_seconds": argmax,
        "metrics_seconds": metrics,
        "ratio": metrics / argmax,
        "target": "informative (how close to memory speed)",
    }
