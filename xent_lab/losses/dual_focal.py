"""Dual focal loss (Tao, Dong & Xu, ICML 2023, "Dual Focal Loss for Calibration"): the focal loss whose factor
also grows with the largest probability below the label's, `dual_focal_crossentropy` and
`DualFocalCrossentropy`."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from xent_lab.losses._checks import is_number
from xent_lab.losses._ops import _TINY, Tensor, categorical_1m_probs, finish
from xent_lab.losses.classes import _LossFunctionWrapper

# Private, but the one definition of the inputs shared by the categorical losses, and of the focal factor.
from xent_lab.losses.functional import _categorical, _focal_factor

WHO = "DualFocalCrossentropy"


def check_dual_gamma(gamma: float) -> None:
    if not (is_number(gamma) and gamma >= 0):  # a string ("flsd53" is the focal losses' only) or NaN is an error
        raise ValueError(f"gamma must be a number >= 0. Received: gamma={gamma!r}")


def _next_lower(p: Tensor, axis: int) -> Tensor:
    """Per class c, the largest probability of the same sample strictly below p_c (0 where there is none)."""
    p = ops.moveaxis(p, axis, -1)
    below = p[..., None, :] < p[..., :, None]  # [..., c, j]: p_j < p_c
    largest = ops.max(ops.where(below, p[..., None, :], 0.0), axis=-1)
    return ops.moveaxis(largest, -1, axis)


def dual_focal_crossentropy(
    y_true: Tensor,
    y_pred: Tensor,
    gamma: float = 5.0,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
) -> Tensor:
    """Dual focal loss between one-hot (or soft) labels and predicted distributions (Tao et al., 2023).

    With p, y_s and k as in `categorical_crossentropy` and, per class c, p_j(c) the largest
    probability of the sample strictly below p_c (0 if p_c is the smallest):

    `loss = -sum_over_axis(y_s * (1 - p + p_j) ** gamma * log(p))`

    For a one-hot label y this is their `-(1 - p_y + p_j) ** gamma * log(p_y)`: where the label's class
    is the arg-max, p_j is the runner-up, and the factor keeps pushing until the gap p_y - p_j stops
    growing, not (as focal loss) until p_y stops growing; `gamma=0` is the cross-entropy. p_j is taken
    below p_y as in the authors' code (github.com/Linwei94/ICML2023-DualFocalLoss, dual_focal_loss.py,
    commit 106f26bed6a80280e7d0577bdf6b26dcd73cb01c: a mask `softmax < p_k`, then its top-1), not as the
    largest probability of any other class; the two differ only where the label's class is not the arg-max.
    With soft targets every class term gets its own factor, as `categorical_focal_crossentropy` does.

    Stable from logits: 1 - p is computed without cancellation (`categorical_1m_probs`), and below
    gamma = 1 the factor is exp(gamma * log(1 - p + p_j)), so loss and gradient stay finite at logits of
    +-1e4. Probabilities are clipped and renormalized as in `categorical_crossentropy`.
    """
    check_dual_gamma(gamma)
    c = _categorical(y_true, y_pred, from_logits, label_smoothing, axis, WHO)
    p = ops.exp(c.log_p)
    base = categorical_1m_probs(c.inputs.y_pred, c.inputs.from_logits, c.axis, c.log_p) + _next_lower(p, c.axis)
    factor = _focal_factor(gamma, None, lambda: base, lambda: ops.log(ops.maximum(base, _TINY)))
    return finish(ops.sum(factor * c.terms, axis=c.axis), c.inputs, c.axis)


@keras.saving.register_keras_serializable(package="xent_lab")
class DualFocalCrossentropy(_LossFunctionWrapper):
    """Computes the dual focal loss `dual_focal_crossentropy` (Tao et al., 2023):
    `-(1 - p_y + p_j) ** gamma * log(p_y)`, p_j the largest probability below the label's.

    Args:
        gamma: Focusing parameter, a number >= 0. Defaults to `5.0`, the authors' value for ResNet-50
            on CIFAR-10 and CIFAR-100 (their README lists 2.3 to 6.1 per dataset and model).
        from_logits: Whether `y_pred` holds logits. Defaults to `False` (probabilities).
        label_smoothing: Float in [0, 1]; when > 0 the targets become
            `y_true * (1 - label_smoothing) + label_smoothing / k`. Defaults to `0.0`.
        axis: The class axis. Defaults to `-1`.
        reduction: `"sum_over_batch_size"` (default), `"sum"`, `"mean"`,
            `"mean_with_sample_weight"`, `"none"` or `None`, as for `keras.losses.Loss`.
        name: Name of the loss instance. Defaults to `"dual_focal_crossentropy"`.
        dtype: Dtype of the loss's computations. Defaults to `None`: `keras.config.floatx()`.
    """

    gamma: float

    def __init__(
        self,
        gamma: float = 5.0,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "dual_focal_crossentropy",
        dtype: Any = None,
    ) -> None:
        check_dual_gamma(gamma)
        super().__init__(
            dual_focal_crossentropy,
            reduction=reduction,
            name=name,
            dtype=dtype,
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
            gamma=float(gamma),
        )
