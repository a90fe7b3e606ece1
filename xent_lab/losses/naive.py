"""Textbook cross-entropy and focal losses, computed exactly as written on the blackboard: a baseline
for how much the stable forms matter. **Do not train real models with them.**

Probabilities come from `exp(z) / sum(exp(z))` without subtracting the max, or `1 / (1 + exp(-z))`;
the loss is `-sum(y * log(p + epsilon))`; the focal factor is `(1 - p) ** gamma` taken directly. No
clipping, no log-space tricks, no validation, and no logits shortcut: a `y_pred` that carries Keras'
`_keras_logits` is used as the probabilities it is. Where this overflows or gives NaN, it does: in
float32 a logit of 89 overflows `exp` (softmax: inf / inf = NaN), and a confidently wrong sigmoid
output (z = -100) has a finite loss `-log(epsilon)` but a NaN gradient (exp(100) = inf).

The classes have the Keras names and constructor arguments plus `epsilon=1e-15` (and, as our own
`SparseCategoricalCrossentropy`, `label_smoothing` last on the sparse one), and are registered for
`.keras` saving under the package "xent_lab.naive" (names "xent_lab.naive>ClassName"), apart from
the stable ones of `xent_lab.losses`. Label smoothing and `alpha` act as in Keras. On benign inputs
the values equal Keras' (a different epsilon aside); the tests show where they do not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from xent_lab.heads import smooth_labels
from xent_lab.losses._checks import FLSD53, check_gamma
from xent_lab.losses._ops import Tensor, aligned
from xent_lab.losses.classes import _LossFunctionWrapper
from xent_lab.losses.functional import _class_weights, _masked, _sparse_labels

EPSILON = 1e-15


def check_epsilon(epsilon: float) -> None:
    if not 0.0 < epsilon < 1.0:  # also rejects NaN
        raise ValueError(f"epsilon must be in (0, 1). Received: epsilon={epsilon!r}")


def sigmoid(z: Tensor) -> Tensor:
    """1 / (1 + exp(-z)): exp(-z) overflows to inf for z < -88 in float32 (p = 0, gradient NaN)."""
    return 1.0 / (1.0 + ops.exp(-z))


def softmax(z: Tensor, axis: int = -1) -> Tensor:
    """exp(z) / sum(exp(z)) without subtracting the max: NaN (inf / inf) once a logit exceeds 88 in float32."""
    e = ops.exp(z)
    return e / ops.sum(e, axis=axis, keepdims=True)


def _inputs(y_true: Tensor, y_pred: Tensor, who: str) -> tuple[Tensor, Tensor]:
    # convert_to_tensor keeps the tensor as it is: its `_keras_logits`, if any, are never read.
    y_pred = ops.convert_to_tensor(y_pred)
    return aligned(ops.cast(y_true, y_pred.dtype), y_pred, who)


def _focal_gamma(gamma: float | str, p_true: Tensor) -> float | Tensor:
    """gamma, or for "flsd53" 5 where the true-class probability is < 0.2, else 3 (a constant for the gradient)."""
    if gamma != FLSD53:
        return gamma
    return ops.cast(ops.where(ops.stop_gradient(p_true) < 0.2, 5.0, 3.0), p_true.dtype)


def _binary_terms(y: Tensor, p: Tensor, epsilon: float) -> Tensor:
    return -(y * ops.log(p + epsilon) + (1.0 - y) * ops.log(1.0 - p + epsilon))


def binary_crossentropy(
    y_true: Tensor,
    y_pred: Tensor,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
    epsilon: float = EPSILON,
) -> Tensor:
    """Textbook binary cross-entropy, averaged over `axis`.

    `p = 1 / (1 + exp(-y_pred))` if `from_logits` else `y_pred`, `y_s = y_true * (1 - ls) + ls / 2`:

    `loss = mean_over_axis(-(y_s * log(p + epsilon) + (1 - y_s) * log(1 - p + epsilon)))`
    """
    y_true, y_pred = _inputs(y_true, y_pred, "BinaryCrossentropy")
    p = sigmoid(y_pred) if from_logits else y_pred
    return ops.mean(_binary_terms(smooth_labels(y_true, label_smoothing, 2), p, epsilon), axis=axis)


def binary_focal_crossentropy(
    y_true: Tensor,
    y_pred: Tensor,
    apply_class_balancing: bool = False,
    alpha: float = 0.25,
    gamma: float | str = 2.0,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
    epsilon: float = EPSILON,
) -> Tensor:
    """Textbook binary focal loss (Lin et al., 2018), averaged over `axis`.

    With p, y_s as in `binary_crossentropy`, `p_t = y_s * p + (1 - y_s) * (1 - p)` and `bce` its terms:

    `loss = mean_over_axis(w * (1 - p_t) ** gamma * bce)`, `w = y_s * alpha + (1 - y_s) * (1 - alpha)`
    if `apply_class_balancing` else 1 (as Keras). `gamma="flsd53"`: 5 where the probability of the
    unsmoothed true label is < 0.2, else 3 (Mukhoti et al., 2020).
    """
    check_gamma(gamma)
    y_true, y_pred = _inputs(y_true, y_pred, "BinaryFocalCrossentropy")
    p = sigmoid(y_pred) if from_logits else y_pred
    y_s = smooth_labels(y_true, label_smoothing, 2)
    p_t = y_s * p + (1.0 - y_s) * (1.0 - p)
    gamma = _focal_gamma(gamma, y_true * p + (1.0 - y_true) * (1.0 - p))
    terms = ops.power(1.0 - p_t, gamma) * _binary_terms(y_s, p, epsilon)
    if apply_class_balancing:
        terms = (y_s * alpha + (1.0 - y_s) * (1.0 - alpha)) * terms
    return ops.mean(terms, axis=axis)


def _categorical(
    y_true: Tensor, y_pred: Tensor, from_logits: bool, label_smoothing: float, axis: int, who: str
) -> tuple[Tensor, Tensor, Tensor]:
    """(unsmoothed targets, smoothed targets, probabilities)."""
    y_true, y_pred = _inputs(y_true, y_pred, who)
    p = softmax(y_pred, axis) if from_logits else y_pred
    return y_true, smooth_labels(y_true, label_smoothing, ops.cast(ops.shape(y_pred)[axis], p.dtype)), p


def categorical_crossentropy(
    y_true: Tensor,
    y_pred: Tensor,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
    epsilon: float = EPSILON,
) -> Tensor:
    """Textbook categorical cross-entropy along `axis`.

    `p = exp(y_pred) / sum(exp(y_pred))` (no max subtracted) if `from_logits` else `y_pred` as given
    (not renormalized), `y_s = y_true * (1 - ls) + ls / k`:

    `loss = -sum_over_axis(y_s * log(p + epsilon))`
    """
    _, y_s, p = _categorical(y_true, y_pred, from_logits, label_smoothing, axis, "CategoricalCrossentropy")
    return -ops.sum(y_s * ops.log(p + epsilon), axis=axis)


def categorical_focal_crossentropy(
    y_true: Tensor,
    y_pred: Tensor,
    alpha: float | Sequence[float] = 0.25,
    gamma: float | str = 2.0,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
    epsilon: float = EPSILON,
) -> Tensor:
    """Textbook alpha-balanced categorical focal loss (Lin et al., 2018) along `axis`.

    With p, y_s as in `categorical_crossentropy`:

    `loss = -sum_over_axis(alpha * (1 - p) ** gamma * y_s * log(p + epsilon))`

    `alpha` a scalar or one weight per class, as in Keras. `gamma="flsd53"`: 5 for samples whose
    true-class probability is < 0.2, else 3 (Mukhoti et al., 2020).
    """
    check_gamma(gamma)
    y, y_s, p = _categorical(y_true, y_pred, from_logits, label_smoothing, axis, "CategoricalFocalCrossentropy")
    gamma = _focal_gamma(gamma, ops.sum(y * p, axis=axis, keepdims=True))
    terms = -ops.power(1.0 - p, gamma) * y_s * ops.log(p + epsilon)
    return ops.sum(_class_weights(alpha, terms, axis, "CategoricalFocalCrossentropy") * terms, axis=axis)


def sparse_categorical_crossentropy(
    y_true: Tensor,
    y_pred: Tensor,
    from_logits: bool = False,
    ignore_class: int | None = None,
    axis: int = -1,
    epsilon: float = EPSILON,
    label_smoothing: float = 0.0,
) -> Tensor:
    """Textbook cross-entropy on integer labels: `categorical_crossentropy` on `one_hot(y_true)`.

    Labels outside [0, k) one-hot to zeros (loss 0: nothing checks them). `ignore_class` as in Keras:
    those samples get loss 0 and are masked out of the reduction.
    """
    y_pred = ops.convert_to_tensor(y_pred)
    axis %= len(y_pred.shape)
    labels = ops.cast(
        _sparse_labels(ops.convert_to_tensor(y_true), y_pred, axis, "SparseCategoricalCrossentropy"), "int32"
    )
    ignored = None if ignore_class is None else ops.equal(labels, ignore_class)
    if ignored is not None:
        labels = ops.where(ignored, 0, labels)
    onehot = ops.one_hot(labels, ops.shape(y_pred)[axis], axis=axis, dtype=y_pred.dtype)
    return _masked(categorical_crossentropy(onehot, y_pred, from_logits, label_smoothing, axis, epsilon), ignored)


class _NaiveLoss(_LossFunctionWrapper):
    """`_LossFunctionWrapper` with the extra `epsilon` argument, checked at construction."""

    epsilon: float

    def __init__(self, fn: Any, *, epsilon: float, **arguments: Any) -> None:
        check_epsilon(epsilon)
        super().__init__(fn, epsilon=epsilon, **arguments)


@keras.saving.register_keras_serializable(package="xent_lab.naive")
class BinaryCrossentropy(_NaiveLoss):
    """Textbook binary cross-entropy: `naive.binary_crossentropy`. Not for training real models.

    Args: as `keras.losses.BinaryCrossentropy`, plus `epsilon` (added inside the logs, default 1e-15).
    """

    def __init__(
        self,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "binary_crossentropy",
        dtype: Any = None,
        epsilon: float = EPSILON,
    ) -> None:
        super().__init__(
            binary_crossentropy,
            reduction=reduction,
            name=name,
            dtype=dtype,
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
            epsilon=epsilon,
        )


@keras.saving.register_keras_serializable(package="xent_lab.naive")
class BinaryFocalCrossentropy(_NaiveLoss):
    """Textbook binary focal loss: `naive.binary_focal_crossentropy`. Not for training real models.

    Args: as `keras.losses.BinaryFocalCrossentropy` (`gamma` may also be "flsd53"), plus `epsilon`
    (added inside the logs, default 1e-15).
    """

    def __init__(
        self,
        apply_class_balancing: bool = False,
        alpha: float = 0.25,
        gamma: float | str = 2.0,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "binary_focal_crossentropy",
        dtype: Any = None,
        epsilon: float = EPSILON,
    ) -> None:
        check_gamma(gamma)
        super().__init__(
            binary_focal_crossentropy,
            reduction=reduction,
            name=name,
            dtype=dtype,
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
            apply_class_balancing=apply_class_balancing,
            alpha=alpha,
            gamma=gamma,
            epsilon=epsilon,
        )


@keras.saving.register_keras_serializable(package="xent_lab.naive")
class CategoricalCrossentropy(_NaiveLoss):
    """Textbook categorical cross-entropy: `naive.categorical_crossentropy`. Not for training real models.

    Args: as `keras.losses.CategoricalCrossentropy`, plus `epsilon` (added inside the log, default 1e-15).
    """

    def __init__(
        self,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "categorical_crossentropy",
        dtype: Any = None,
        epsilon: float = EPSILON,
    ) -> None:
        super().__init__(
            categorical_crossentropy,
            reduction=reduction,
            name=name,
            dtype=dtype,
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
            epsilon=epsilon,
        )


@keras.saving.register_keras_serializable(package="xent_lab.naive")
class CategoricalFocalCrossentropy(_NaiveLoss):
    """Textbook categorical focal loss: `naive.categorical_focal_crossentropy`. Not for training real models.

    Args: as `keras.losses.CategoricalFocalCrossentropy` (`gamma` may also be "flsd53"), plus
    `epsilon` (added inside the log, default 1e-15).
    """

    def __init__(
        self,
        alpha: float | Sequence[float] = 0.25,
        gamma: float | str = 2.0,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "categorical_focal_crossentropy",
        dtype: Any = None,
        epsilon: float = EPSILON,
    ) -> None:
        check_gamma(gamma)
        super().__init__(
            categorical_focal_crossentropy,
            reduction=reduction,
            name=name,
            dtype=dtype,
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
            # Plain floats / a list of floats keep the config JSON-serializable.
            alpha=[float(a) for a in alpha] if np.ndim(alpha) == 1 else float(alpha),
            gamma=gamma,
            epsilon=epsilon,
        )


@keras.saving.register_keras_serializable(package="xent_lab.naive")
class SparseCategoricalCrossentropy(_NaiveLoss):
    """Textbook cross-entropy on integer labels: `naive.sparse_categorical_crossentropy`. Not for
    training real models.

    Args: as `keras.losses.SparseCategoricalCrossentropy`, plus `epsilon` (added inside the log,
    default 1e-15) and, as `xent_lab.losses.SparseCategoricalCrossentropy`, `label_smoothing` last.
    """

    def __init__(
        self,
        from_logits: bool = False,
        ignore_class: int | None = None,
        reduction: str | None = "sum_over_batch_size",
        axis: int = -1,
        name: str = "sparse_categorical_crossentropy",
        dtype: Any = None,
        epsilon: float = EPSILON,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(
            sparse_categorical_crossentropy,
            reduction=reduction,
            name=name,
            dtype=dtype,
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
            ignore_class=ignore_class,
            epsilon=epsilon,
        )
