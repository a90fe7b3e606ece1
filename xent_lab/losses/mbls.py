"""Margin-based label smoothing, MbLS (Liu, Ben Ayed, Galdran & Dolz, CVPR 2022, "The Devil is in the Margins:
Margin-based Label Smoothing for Network Calibration"): cross-entropy plus a linear penalty on the logit
distances beyond a margin, `mbls_crossentropy` and `MbLSCrossentropy`."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from xent_lab.losses._ops import Tensor, finish
from xent_lab.losses.classes import _LossFunctionWrapper

# Private, but the one definition of the inputs shared by the categorical losses.
from xent_lab.losses.functional import _categorical
from xent_lab.losses.mmce import check_weight


def check_margin(margin: float) -> None:
    if not margin >= 0:  # also rejects NaN
        raise ValueError(f"margin must be a number >= 0. Received: margin={margin!r}")


def mbls_crossentropy(
    y_true: Tensor,
    y_pred: Tensor,
    margin: float = 10.0,
    weight: float = 0.1,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
) -> Tensor:
    """Cross-entropy plus `weight` times the mean over the classes of the logit distances beyond `margin`.

    With the logits z along `axis`, k classes and the smoothed targets y_s as in `categorical_crossentropy`:

    `loss = -sum_over_axis(y_s * log(p)) + weight * mean_over_axis(max(0, max_j z_j - z - margin))`

    The distance of each logit to the largest is free up to `margin` and costs linearly beyond it, an
    inequality constraint in place of label smoothing's (and focal loss's) pull of every distance to 0.

    The paper writes the penalty as a sum over the classes; the authors' code (github.com/by-liu/MbLS,
    calibrate/losses/logit_margin_l1.py, commit dc86503691d1564dc29e2eed66cf7698fbbe4a2c) takes its mean
    over the batch and the classes (`F.relu(diff - self.margin).mean()`), which is this per-sample mean
    over the classes under the mean reduction; its defaults, margin 10 and alpha (the weight) 0.1, are
    tuned for that mean. The cross-entropy is the mean `nn.CrossEntropyLoss`, as here.

    From probabilities (`from_logits=False`) the distances are those of log p, which differ from the
    logits by one constant per sample: the same distances, except that the clip at epsilon caps them at
    log(1 / epsilon) ~ 16.1. The penalty is linear in the logits, so loss and gradient stay finite for
    logits of +-1e4; `margin` and `weight` must be >= 0; the rest is as for `categorical_crossentropy`.
    """
    check_margin(margin)
    check_weight(weight)
    c = _categorical(y_true, y_pred, from_logits, label_smoothing, axis, "MbLSCrossentropy")
    z = c.inputs.y_pred if c.inputs.from_logits else c.log_p
    distance = ops.max(z, axis=c.axis, keepdims=True) - z
    penalty = ops.mean(ops.relu(distance - margin), axis=c.axis)
    return finish(ops.sum(c.terms, axis=c.axis) + weight * penalty, c.inputs, c.axis)


@keras.saving.register_keras_serializable(package="xent_lab")
class MbLSCrossentropy(_LossFunctionWrapper):
    """Computes cross-entropy + `weight` * mean over the classes of max(0, max_j z_j - z_k - `margin`):
    `mbls_crossentropy` (Liu et al., 2022), on one-hot (or soft) labels.

    Args:
        margin: The logit distance to the largest logit left free, a number >= 0. Defaults to `10.0`.
        weight: Weight of the margin penalty (the paper's lambda, the code's alpha), a number >= 0.
            Defaults to `0.1`.
        from_logits: Whether `y_pred` holds logits. Defaults to `False` (probabilities).
        label_smoothing: Float in [0, 1], for the cross-entropy's targets. Defaults to `0.0`.
        axis: The class axis. Defaults to `-1`.
        reduction: `"sum_over_batch_size"` (default), `"sum"`, `"mean"`,
            `"mean_with_sample_weight"`, `"none"` or `None`, as for `keras.losses.Loss`.
        name: Name of the loss instance. Defaults to `"mbls_crossentropy"`.
        dtype: Dtype of the loss's computations. Defaults to `None`: `keras.config.floatx()`.
    """

    margin: float
    weight: float

    def __init__(
        self,
        margin: float = 10.0,
        weight: float = 0.1,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "mbls_crossentropy",
        dtype: Any = None,
    ) -> None:
        check_margin(margin)
        check_weight(weight)
        super().__init__(
            mbls_crossentropy,
            reduction=reduction,
            name=name,
            dtype=dtype,
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
            margin=float(margin),
            weight=float(weight),
        )
