"""Head kinds: how a model's logits become class probabilities. NumPy and SciPy only, no Keras.

A loss fixes the head (see `xent_lab.objectives`); the calibration metrics, the information terms
and the report read the same probabilities from the same logits through this module.

- `softmax`: logits (n, k) -> softmax.
- `sigmoid`: one logit (n,) or (n, 1) -> the binary pair [1 - sigmoid(z), sigmoid(z)].
- `sigmoid_ovr`: k one-vs-rest logits (n, k) -> the k sigmoids normalised to sum to one,
  P_ij = sigmoid(z_ij) / sum_l sigmoid(z_il). The normalisation is our choice: it makes the k
  independent outputs a distribution that the multi-class metrics accept, and it keeps the argmax
  (sigmoid is monotone), so accuracy is that of the raw logits.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import numpy as np
from scipy import special


class Head(StrEnum):
    """The output layer a loss asks for; a `str`, so it compares equal to its saved name."""

    SOFTMAX = "softmax"
    SIGMOID = "sigmoid"
    SIGMOID_OVR = "sigmoid_ovr"


HEADS = tuple(Head)


def smooth_labels(y: Any, label_smoothing: float, num_classes: Any) -> Any:
    """y * (1 - ls) + ls / num_classes: categorical smoothing; num_classes=2 is the binary one.

    Plain arithmetic, so it serves NumPy arrays and Keras tensors alike.
    """
    if not label_smoothing:
        return y
    return y * (1.0 - label_smoothing) + label_smoothing / num_classes


def binary_pair(p: Any) -> np.ndarray:
    """Positive-class probabilities (...,) -> Bernoulli distributions (..., 2) = [1 - p, p]."""
    p = np.asarray(p, dtype=np.float64)
    return np.stack([1.0 - p, p], axis=-1)


def check_head(head: str) -> Head:
    try:
        return Head(head)
    except ValueError:
        raise ValueError(f"unknown head {head!r}; expected one of {', '.join(HEADS)}") from None


def check_finite(name: str, array: np.ndarray) -> None:
    """Raise a ValueError naming `name` when `array` is empty or holds NaN or inf (the first one found)."""
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape}); need at least one sample")
    bad = ~np.isfinite(array)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name} contains NaN or inf: {array[index]} at index {index} (shape {array.shape})")


def check_logits(logits: Any, head: str) -> np.ndarray:
    """Validated float64 logits: (n,) for "sigmoid", (n, k) with k >= 2 for the other heads."""
    head = check_head(head)
    logits = np.asarray(logits, dtype=np.float64)
    if head == Head.SIGMOID:
        if logits.ndim == 2 and logits.shape[1] == 1:
            logits = logits[:, 0]
        if logits.ndim != 1:
            raise ValueError(f'head "sigmoid" takes one logit per sample, shape (n,) or (n, 1); got {logits.shape}')
    elif logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"head {head.value!r} takes logits of shape (n, k) with k >= 2, got {logits.shape}")
    check_finite("logits", logits)
    return logits


def num_classes(logits: np.ndarray, head: str) -> int:
    """Classes the probabilities of validated `logits` have (2 for one sigmoid)."""
    return 2 if head == Head.SIGMOID else logits.shape[1]


def log_probabilities(logits: Any, head: str) -> np.ndarray:
    """log P (n, k) float64, computed without overflow or log(0).

    softmax: log_softmax(z). sigmoid: [log sigmoid(-z), log sigmoid(z)]. sigmoid_ovr: the
    normalised sigmoids in log space, log_softmax(log sigmoid(z)), finite even when every sigmoid
    underflows.
    """
    logits = check_logits(logits, head)
    if head == Head.SOFTMAX:
        return special.log_softmax(logits, axis=1)
    if head == Head.SIGMOID:
        return np.stack([special.log_expit(-logits), special.log_expit(logits)], axis=1)
    return special.log_softmax(special.log_expit(logits), axis=1)


def probabilities(logits: Any, head: str) -> np.ndarray:
    """Class probabilities (n, k) float64; (n, 2) = [1 - p, p] for "sigmoid"."""
    return np.exp(log_probabilities(logits, head))
