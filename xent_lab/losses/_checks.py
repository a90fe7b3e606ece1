"""Argument checks shared by the loss functions, the loss classes and the NumPy helpers (no Keras)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

FLSD53 = "flsd53"
"""`gamma` value selecting the sample-dependent gamma of Mukhoti et al. 2020 (FLSD-53)."""


def check_label_smoothing(label_smoothing: float) -> None:
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1]. Received: label_smoothing={label_smoothing}")


def check_gamma(gamma: float | str) -> None:
    if isinstance(gamma, str):
        if gamma != FLSD53:
            raise ValueError(f"gamma must be a number >= 0 or {FLSD53!r}. Received: gamma={gamma!r}")
    elif not gamma >= 0:  # also rejects NaN
        raise ValueError(f"gamma must be a number >= 0 or {FLSD53!r}. Received: gamma={gamma!r}")


def check_axis(axis: Any) -> int:
    """`axis` as a plain int (NumPy integers are accepted: they come out of shape arithmetic)."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise ValueError(f"axis must be an int. Received: axis={axis!r}")
    return int(axis)


def is_int(value: Any) -> bool:
    """An int, and not a bool (which Python counts as one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float, and not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
