"""Poly-1 losses (Leng et al., ICLR 2022, "PolyLoss: A Polynomial Expansion Perspective of
Classification Loss Functions"): cross-entropy plus `epsilon * (1 - p_t)`, its first polynomial
term, with `categorical_poly_crossentropy` / `CategoricalPolyCrossentropy` and
`binary_poly_crossentropy` / `BinaryPolyCrossentropy`."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from xent_lab.losses._ops import Tensor, clip_probs, finish
from xent_lab.losses.classes import _LossFunctionWrapper

# Private, but the one definition of the inputs shared by the binary / categorical losses.
from xent_lab.losses.functional import _binary, _categorical


def check_epsilon(epsilon: float) -> None:
    # CE + epsilon * (1 - p_t) >= 0 for every p_t exactly when epsilon >= -1 (-log x >= 1 - x).
    if not epsilon >= -1:  # also rejects NaN
        raise ValueError(
            f"epsilon must be a number >= -1 (below -1 the loss can be negative). Received: epsilon={epsilon!r}"
        )


def categorical_poly_crossentropy(
    y_true: Tensor,
    y_pred: Tensor,
    epsilon: float = 1.0,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
) -> Tensor:
    """Poly-1 cross-entropy between one-hot (or soft) labels and predicted distributions along `axis`.

    With p, the smoothed targets y_s and k as in `categorical_crossentropy`, and
    `p_t = sum_over_axis(y_s * p)` (the probability of the label; with label smoothing the
    paper's Poly-1 uses the smoothed targets):

    `loss = -sum_over_axis(y_s * log(p)) + epsilon * (1 - p_t)`

    `epsilon=0` is the cross-entropy; `epsilon >= -1` keeps the loss non-negative. From logits p_t
    is `exp(log_softmax)`, so loss and gradient stay finite for logits of +-1e4; the rest (clipping,
    float16 in float32, validation) is that of `categorical_crossentropy`.
    """
    check_epsilon(epsilon)
    c = _categorical(y_true, y_pred, from_logits, label_smoothing, axis, "CategoricalPolyCrossentropy")
    p_t = ops.sum(c.targets * ops.exp(c.log_p), axis=c.axis)
    return finish(ops.sum(c.terms, axis=c.axis) + epsilon * (1.0 - p_t), c.inputs, c.axis)


def binary_poly_crossentropy(
    y_true: Tensor,
    y_pred: Tensor,
    epsilon: float = 1.0,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
) -> Tensor:
    """Poly-1 binary cross-entropy between labels and predictions, averaged over `axis`.

    With p and the smoothed targets y_s as in `binary_crossentropy`, and
    `p_t = y_s * p + (1 - y_s) * (1 - p)`:

    `loss = mean_over_axis(-(y_s * log(p) + (1 - y_s) * log(1 - p)) + epsilon * (1 - p_t))`

    `epsilon=0` is the binary cross-entropy. From logits p = sigmoid(z) (finite with finite gradients
    for any logits); probabilities are clipped as in `binary_crossentropy`, and the rest is its too.
    """
    check_epsilon(epsilon)
    b = _binary(y_true, y_pred, from_logits, label_smoothing, axis, "BinaryPolyCrossentropy")
    # One sigmoid (no log): 1 - p_t is bounded, so where 1 - p rounds to 0 its error is below 1e-7.
    p = ops.sigmoid(b.inputs.y_pred) if b.inputs.from_logits else clip_probs(b.inputs.y_pred)
    one_minus_p_t = b.targets * (1.0 - p) + (1.0 - b.targets) * p
    return finish(ops.mean(b.terms + epsilon * one_minus_p_t, axis=b.axis), b.inputs, b.axis)


class _PolyCrossentropy(_LossFunctionWrapper):
    epsilon: float

    def __init__(self, fn: Any, epsilon: float, **arguments: Any) -> None:
        check_epsilon(epsilon)
        super().__init__(fn, epsilon=float(epsilon), **arguments)


@keras.saving.register_keras_serializable(package="xent_lab")
class CategoricalPolyCrossentropy(_PolyCrossentropy):
    """Computes the Poly-1 cross-entropy `categorical_poly_crossentropy` (Leng et al., 2022):
    cross-entropy + `epsilon * (1 - p_t)`.

    Args:
        epsilon: Weight of the `1 - p_t` term, a number >= -1. Defaults to `1.0`.
        from_logits: Whether `y_pred` holds logits. Defaults to `False` (probabilities).
        label_smoothing: Float in [0, 1]; when > 0 the targets become
            `y_true * (1 - label_smoothing) + label_smoothing / k`, in both terms. Defaults to `0.0`.
        axis: The class axis. Defaults to `-1`.
        reduction: `"sum_over_batch_size"` (default), `"sum"`, `"mean"`,
            `"mean_with_sample_weight"`, `"none"` or `None`, as for `keras.losses.Loss`.
        name: Name of the loss instance. Defaults to `"categorical_poly_crossentropy"`.
        dtype: Dtype of the loss's computations. Defaults to `None`: `keras.config.floatx()`.
    """

    def __init__(
        self,
        epsilon: float = 1.0,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "categorical_poly_crossentropy",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            categorical_poly_crossentropy,
            epsilon,
            reduction=reduction,
            name=name,
            dtype=dtype,
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
        )


@keras.saving.register_keras_serializable(package="xent_lab")
class BinaryPolyCrossentropy(_PolyCrossentropy):
    """Computes the Poly-1 binary cross-entropy `binary_poly_crossentropy` (Leng et al., 2022):
    binary cross-entropy + `epsilon * (1 - p_t)` per output, averaged over `axis`.

    Args:
        epsilon: Weight of the `1 - p_t` term, a number >= -1. Defaults to `1.0`.
        from_logits: Whether `y_pred` holds logits. Defaults to `False` (probabilities in [0, 1]).
        label_smoothing: Float in [0, 1]; when > 0 the labels are squeezed towards 0.5, in both
            terms. Defaults to `0.0`.
        axis: The axis along which the mean is computed. Defaults to `-1`.
        reduction: `"sum_over_batch_size"` (default), `"sum"`, `"mean"`,
            `"mean_with_sample_weight"`, `"none"` or `None`, as for `keras.losses.Loss`.
        name: Name of the loss instance. Defaults to `"binary_poly_crossentropy"`.
        dtype: Dtype of the loss's computations. Defaults to `None`: `keras.config.floatx()`.
    """

    def __init__(
        self,
        epsilon: float = 1.0,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "binary_poly_crossentropy",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            binary_poly_crossentropy,
            epsilon,
            reduction=reduction,
            name=name,
            dtype=dtype,
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
        )
