"""Calibration speed: the metrics against one NumPy argmax pass over the same array, the bootstrap of every metric,
and each recalibration method's fit, the last two in seconds against their targets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import special

from xent_lab import calibration
from xent_lab.bench.common import alternating, median_time, paired_summary

BOOTSTRAP_TARGET_SECONDS = 2.0  # 1,000 resamples of every metric on 10,000 x 10
FIT_TARGET_SECONDS = 2.0  # each recalibration fit on 5,000 validation samples


def _softmax_data(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Over-confident logits (n, k) (labels drawn from softmax(z / 2)) and their labels."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k)) * 3
    labels = np.minimum((special.softmax(logits / 2, axis=1).cumsum(axis=1) < rng.random((n, 1))).sum(axis=1), k - 1)
    return logits, labels


def _over_argmax(metrics: Callable[[np.ndarray, np.ndarray], Any], n: int, k: int, rounds: int, calls: int) -> dict:
    """metrics(probs, labels) on n x k probabilities against one NumPy argmax pass over the same array, side by side
    (`alternating`, each metrics call paired with the argmax call beside it): the median of the rounds' ratios and
    their spread."""
    rng = np.random.default_rng(0)
    probs = calibration.probabilities(rng.normal(size=(n, k)).astype("float32"), "softmax")
    labels = rng.integers(0, k, size=n)
    fns = {"metrics": lambda: metrics(probs, labels), "argmax": lambda: probs.argmax(axis=1)}
    figure = paired_summary(alternating(fns, calls, rounds), "at most 5", numerator="metrics", denominator="argmax")
    return {"shape": [n, k], **figure}


def calibration_speed(n: int, k: int, rounds: int, calls: int) -> dict[str, Any]:
    """All calibration metrics (`calibration_metrics`) against one argmax pass (`_over_argmax`)."""
    return _over_argmax(calibration.calibration_metrics, n, k, rounds, calls)


def selective_speed(n: int, k: int, rounds: int, calls: int) -> dict[str, Any]:
    """The selective-prediction metrics (`selective_metrics`: one sort of the confidences) against one argmax pass."""
    return _over_argmax(calibration.selective_metrics, n, k, rounds, calls)


def bootstrap_speed(n: int, k: int, n_resamples: int, repeat: int) -> dict[str, Any]:
    """Seconds for the percentile intervals of every metric of BOOTSTRAP_METRICS from n_resamples resamples."""
    logits, labels = _softmax_data(n, k)
    probs = calibration.probabilities(logits, "softmax")
    seconds = median_time(
        lambda: calibration.bootstrap_ci(probs, labels, calibration.BOOTSTRAP_METRICS, n_resamples), repeat
    )
    return {
        "shape": [n, k],
        "n_resamples": n_resamples,
        "metrics": list(calibration.BOOTSTRAP_METRICS),
        "seconds": seconds,
        "ratio_to_target": seconds / BOOTSTRAP_TARGET_SECONDS,
        "target": f"at most {BOOTSTRAP_TARGET_SECONDS} s",
    }


def recalibration_fit_speed(n: int, k: int, repeat: int) -> dict[str, Any]:
    """Seconds per fit of each recalibration method on n validation logits: k classes for the methods of a
    softmax head, one sigmoid logit for platt and beta."""
    multiclass = _softmax_data(n, k)
    logits, labels = _softmax_data(n, 2, seed=1)
    binary = (logits[:, 1] - logits[:, 0], labels)
    seconds = {}
    for name, cls in calibration.RECALIBRATORS.items():
        head, (x, y) = ("softmax", multiclass) if "softmax" in cls.heads else ("sigmoid", binary)
        seconds[name] = median_time(lambda: calibration.recalibrator(name, head).fit(x, y), repeat)  # noqa: B023
    return {
        "shape": [n, k],
        "seconds": seconds,
        "ratio_to_target": {name: s / FIT_TARGET_SECONDS for name, s in seconds.items()},
        "target": f"at most {FIT_TARGET_SECONDS} s each",
    }
