"""Categorical focal cross-entropy on integer labels (Lin et al., 2018), which Keras lacks
(keras-team/keras#23442): `sparse_categorical_focal_crossentropy` and
`SparseCategoricalFocalCrossentropy`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

# No public Keras API either: the loss mask through which `ignore_class` reaches the reduction.
from xent_lab.losses._checks import FLSD53, check_gamma, check_label_smoothing
from xent_lab.losses._ops import (
    _TINY,
    Tensor,
    _categorical_top_split,
    categorical_log1m_probs,
    focal_factor,
    renormalized_probs,
)
from xent_lab.losses.classes import _LossFunctionWrapper

# Private: what the sparse losses share (labels, their checks, ignore_class) and the per-class alpha.
from xent_lab.losses.functional import _class_weights, _finish_sparse, _Sparse, _sparse

WHO = "SparseCategoricalFocalCrossentropy"


def _check_alpha(alpha: Any) -> float | list[float]:
    """`alpha` as a float or a non-empty list of floats (plain Python numbers keep the config JSON-serializable)."""
    if np.ndim(alpha) == 0:
        return float(alpha)
    if np.ndim(alpha) != 1 or len(alpha) == 0:
        raise ValueError(f"alpha must be a number or a list of one weight per class. Received: alpha={alpha!r}")
    return [float(a) for a in alpha]


def sparse_categorical_focal_crossentropy(
    y_true: Tensor,
    y_pred: Tensor,
    alpha: float | Sequence[float] = 0.25,
    gamma: float | str = 2.0,
    from_logits: bool = False,
    ignore_class: int | None = None,
    label_smoothing: float = 0.0,
    axis: int = -1,
) -> Tensor:
    """Alpha-balanced focal cross-entropy between integer labels and predictions (Lin et al., 2018).

    Exactly `categorical_focal_crossentropy` on `one_hot(y_true)`: with p the predicted distribution
    along `axis`, k classes, the per-class terms `t_c = -alpha_c * (1 - p_c) ** gamma * log(p_c)`
    and y the integer label,

    `loss = (1 - label_smoothing) * t_y + label_smoothing * mean_over_axis(t)`

    (the smoothed one-hot target `one_hot(y) * (1 - ls) + ls / k` times the terms). `alpha` is a
    scalar or one weight per class (so without smoothing the label's weight `alpha_y`); `gamma` a
    number >= 0 or `"flsd53"`: 5 where the label's probability p_y < 0.2, else 3 (Mukhoti et al.,
    2020, "Calibrating Deep Neural Networks using Focal Loss"; p_y is a constant for the gradient).
    `gamma=0, alpha=1` is `sparse_categorical_crossentropy`.

    `y_true` has the shape of `y_pred` without the class axis, or with size 1 there. `ignore_class`
    as in `keras.losses.sparse_categorical_crossentropy`: those entries get loss 0 and are masked out
    of the reduction (the Keras mask of the result). Stable from logits and computed in float32 for
    half precision, as the other losses (`xent_lab.losses.functional`); labels that are not integers
    in [0, k) are an error (NaN under XLA).
    """
    check_gamma(gamma)
    check_label_smoothing(label_smoothing)
    s = _sparse(y_true, y_pred, from_logits, ignore_class, axis, WHO)
    weights = -_class_weights(alpha, s.log_p, s.axis, WHO)
    if not label_smoothing and np.ndim(alpha) == 0 and gamma != FLSD53:
        # The label's term alone (as fast as the categorical loss on one-hot labels, which it was 1.2x slower
        # than): the same operations on the same numbers as the gather from every class's term below, and
        # the same values and gradients bit for bit. With one alpha per class or FLSD-53 some gradients came
        # out one bit apart: those keep the gather.
        log_p = ops.take_along_axis(s.log_p, s.index, axis=s.axis)
        loss = weights * focal_factor(_label_log1m_prob(s, ops.exp(log_p)), gamma, None) * log_p
        return _finish_sparse(ops.squeeze(loss, axis=s.axis), s, WHO)
    p_true = ops.exp(ops.take_along_axis(s.log_p, s.index, axis=s.axis)) if gamma == FLSD53 else None
    log_1m_p = categorical_log1m_probs(s.inputs.y_pred, s.inputs.from_logits, s.axis, s.log_p)
    terms = weights * focal_factor(log_1m_p, gamma, p_true) * s.log_p
    loss = ops.squeeze(ops.take_along_axis(terms, s.index, axis=s.axis), axis=s.axis)
    if label_smoothing:
        loss = (1.0 - label_smoothing) * loss + label_smoothing * ops.mean(terms, axis=s.axis)
    return _finish_sparse(loss, s, WHO)


def _label_log1m_prob(s: _Sparse, p: Tensor) -> Tensor:
    """`categorical_log1m_probs` at the label's class only (`p`: its probability): from logits, only the sum
    of the other classes' probabilities (1 - p where p > 1/2) needs every class."""
    if not s.inputs.from_logits:
        return ops.log(1.0 - ops.take_along_axis(renormalized_probs(s.inputs.y_pred, s.axis), s.index, axis=s.axis))
    _, _, others = _categorical_top_split(s.log_p, s.axis)
    top = p > 0.5
    return ops.where(top, ops.log(ops.maximum(others, _TINY)), ops.log1p(-ops.where(top, 0.0, p)))


@keras.saving.register_keras_serializable(package="xent_lab")
class SparseCategoricalFocalCrossentropy(_LossFunctionWrapper):
    """Computes the alpha-balanced focal cross-entropy between integer labels and predictions:
    `sparse_categorical_focal_crossentropy` (Lin et al., 2018), i.e. `CategoricalFocalCrossentropy`
    on the one-hot labels.

    Args:
        alpha: Scalar weight of every term, or a list of one weight per class. Defaults to `0.25`.
        gamma: Focusing parameter, a number >= 0, or `"flsd53"`: 5 for samples whose label's
            probability is < 0.2, else 3 (Mukhoti et al., 2020; that probability is treated as a
            constant for the gradient). Defaults to `2.0`.
        from_logits: Whether `y_pred` holds logits. Defaults to `False` (probabilities).
        ignore_class: Optional integer label to leave out of the loss (e.g. a "void" class such as
            -1 or 255 in segmentation maps). Defaults to `None`.
        label_smoothing: Float in [0, 1], as for `CategoricalFocalCrossentropy`. Defaults to `0.0`.
        axis: The class axis of `y_pred`. Defaults to `-1`.
        reduction: `"sum_over_batch_size"` (default), `"sum"`, `"mean"`,
            `"mean_with_sample_weight"`, `"none"` or `None`, as for `keras.losses.Loss`.
        name: Name of the loss instance. Defaults to `"sparse_categorical_focal_crossentropy"`.
        dtype: Dtype of the loss's computations. Defaults to `None`: `keras.config.floatx()`.
    """

    alpha: float | list[float]
    gamma: float | str
    ignore_class: int | None

    def __init__(
        self,
        alpha: float | Sequence[float] = 0.25,
        gamma: float | str = 2.0,
        from_logits: bool = False,
        ignore_class: int | None = None,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "sparse_categorical_focal_crossentropy",
        dtype: Any = None,
    ) -> None:
        check_gamma(gamma)
        super().__init__(
            sparse_categorical_focal_crossentropy,
            reduction=reduction,
            name=name,
            dtype=dtype,
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
            alpha=_check_alpha(alpha),
            gamma=gamma,
            ignore_class=ignore_class,
        )
