"""Input checks of the calibration metrics.

Inputs are checked, with a ValueError naming the problem and the offending shape or value: empty
input, NaN/inf, probabilities outside [0, 1] or rows not summing to 1 within 1e-3 (float32 rows are
fine), labels of the wrong shape, non-integer or outside [0, k), n_bins < 1. Logits and heads are
checked by `xent_lab.heads.check_logits`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xent_lab.heads import check_finite

SUM_TOLERANCE = 1e-3  # |row sum - 1| allowed for probabilities (float32 softmax rows are ~1e-7 off)


def check_n_bins(n_bins: int) -> None:
    """Raise unless n_bins is an integer >= 1 (a bool is not one)."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be an integer >= 1, got {n_bins!r}")


def check_labels(labels: Any, n: int, n_classes: int | None) -> np.ndarray:
    """Integer labels (n,) in [0, n_classes) as int64 (upper bound unchecked when n_classes is None)."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != n:
        raise ValueError(f"labels must have shape ({n},) to match the {n} samples, got shape {labels.shape}")
    if labels.dtype.kind == "f":
        fractional = ~np.isfinite(labels) | (labels != np.round(labels))
        if fractional.any():
            i = int(np.argmax(fractional))
            raise ValueError(f"labels must be integers, got {labels[i]} at index {i}")
    elif labels.dtype.kind not in "iub":
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    labels = labels.astype(np.int64, copy=False)
    high = np.inf if n_classes is None else n_classes
    if labels.size and (labels.min() < 0 or labels.max() >= high):
        outside = (labels < 0) | (labels >= high)
        i = int(np.argmax(outside))
        valid = "must be >= 0" if n_classes is None else f"must lie in [0, {n_classes - 1}]"
        raise ValueError(f"label {labels[i]} at index {i} is out of range: labels {valid}")
    return labels


def check_probs(probs: Any, labels: Any, values: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Validated (P (n, k) float64, y (n,) int64); a binary (n,) or (n, 1) p becomes [1 - p, p].

    values=False checks shapes and labels only: for a caller that checks the values in its own pass over P (the
    metrics' `Statistics.valid`) and calls this again, with the values, to raise the error naming them.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim == 2 and probs.shape[1] == 1:
        probs = probs[:, 0]
    if probs.ndim not in (1, 2):
        raise ValueError(f"probs must have shape (n, k) or (n,) for a binary task, got shape {probs.shape}")
    if not values:
        if probs.size == 0:
            check_finite("probs", probs)  # raises: probs is empty
        probs = np.stack([1 - probs, probs], axis=1) if probs.ndim == 1 else probs
        return probs, check_labels(labels, len(probs), probs.shape[1])
    if probs.size == 0 or not (np.isfinite(low := probs.min()) and np.isfinite(high := probs.max())):
        check_finite("probs", probs)  # NaN and inf reach the minimum or maximum: only then is every value checked
    if low < 0 or high > 1:
        raise ValueError(f"probs must lie in [0, 1], found values in [{low:.6g}, {high:.6g}] (shape {probs.shape})")
    if probs.ndim == 1:
        probs = np.stack([1 - probs, probs], axis=1)
    deviation = np.abs(np.einsum("ij->i", probs) - 1)
    if deviation.max() > SUM_TOLERANCE:
        i = int(np.argmax(deviation))
        raise ValueError(
            f"rows of probs must sum to 1 (tolerance {SUM_TOLERANCE:g}); row {i} sums to "
            f"{probs[i].sum():.6g} (shape {probs.shape}). Pass probabilities, not logits: see `probabilities`."
        )
    return probs, check_labels(labels, len(probs), probs.shape[1])
