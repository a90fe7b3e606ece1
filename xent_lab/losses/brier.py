"""The Brier score as a loss (Brier, 1950, "Verification of forecasts expressed in terms of
probability"): `categorical_brier` and `CategoricalBrier`."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from xent_lab.heads import smooth_labels
from xent_lab.losses._checks import check_axis, check_label_smoothing
from xent_lab.losses._ops import Tensor, aligned, class_axis, finish, prepare
from xent_lab.losses.classes import _LossFunctionWrapper

WHO = "CategoricalBrier"


def categorical_brier(
    y_true: Tensor, y_pred: Tensor, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1
) -> Tensor:
    """Brier score of predicted distributions against one-hot (or soft) labels along `axis`.

    With k classes, p the predicted distribution (`softmax(y_pred)` when `from_logits=True`, else
    the probabilities rescaled to sum to 1 along `axis`, as `categorical_crossentropy` does) and
    smoothed targets `y_s = y_true * (1 - label_smoothing) + label_smoothing / k`:

    `loss = sum_over_axis((p - y_s) ** 2)`, in [0, 2]

    The mean over samples (the "sum_over_batch_size" reduction) is
    `xent_lab.calibration.brier_score` of the same probabilities and labels. A proper scoring rule
    with bounded per-sample loss and gradient (no log): no clipping is needed, and logits of +-1e4
    are fine. float16 is computed in float32; mismatched shapes raise ValueError; probabilities
    outside [0, 1] are an error (as in `categorical_crossentropy`).
    """
    check_label_smoothing(label_smoothing)
    inputs = prepare(y_true, y_pred, from_logits)
    y_true, y_pred = aligned(inputs.y_true, inputs.y_pred, WHO)
    inputs = inputs._replace(y_true=y_true, y_pred=y_pred)
    axis, num_classes = class_axis(y_pred, check_axis(axis), WHO)
    if inputs.from_logits:
        p = ops.softmax(y_pred, axis=axis)
    else:
        p = y_pred / ops.sum(y_pred, axis=axis, keepdims=True)
    targets = smooth_labels(y_true, label_smoothing, ops.cast(num_classes, y_pred.dtype))
    return finish(ops.sum(ops.square(p - targets), axis=axis), inputs, axis)


@keras.saving.register_keras_serializable(package="xent_lab")
class CategoricalBrier(_LossFunctionWrapper):
    """Computes the Brier score `categorical_brier`: `sum_over_axis((p - y) ** 2)` per sample.

    Args:
        from_logits: Whether `y_pred` holds logits. Defaults to `False` (probabilities).
        label_smoothing: Float in [0, 1]; when > 0 the targets become
            `y_true * (1 - label_smoothing) + label_smoothing / k`. Defaults to `0.0`.
        axis: The class axis. Defaults to `-1`.
        reduction: `"sum_over_batch_size"` (default), `"sum"`, `"mean"`,
            `"mean_with_sample_weight"`, `"none"` or `None`, as for `keras.losses.Loss`.
        name: Name of the loss instance. Defaults to `"categorical_brier"`.
        dtype: Dtype of the loss's computations. Defaults to `None`: `keras.config.floatx()`.
    """

    def __init__(
        self,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "categorical_brier",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            categorical_brier,
            reduction=reduction,
            name=name,
            dtype=dtype,
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
        )
