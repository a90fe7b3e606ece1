"""Cross-entropy minus a multiple of the prediction's entropy, the confidence penalty (Pereyra, Tucker,
Chorowski, Kaiser & Hinton, ICLR 2017 workshop, "Regularizing Neural Networks by Penalizing Confident Output
Distributions"): `confidence_penalty_crossentropy` and `ConfidencePenaltyCrossentropy`."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from xent_lab.losses._ops import Tensor, finish
from xent_lab.losses.classes import _LossFunctionWrapper

# Private, but the one definition of the inputs shared by the categorical losses.
from xent_lab.losses.functional import _categorical


def check_beta(beta: float) -> None:
    if not beta >= 0:  # also rejects NaN
        raise ValueError(f"beta must be a number >= 0. Received: beta={beta!r}")


def confidence_penalty_crossentropy(
    y_true: Tensor,
    y_pred: Tensor,
    beta: float = 0.1,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
) -> Tensor:
    """Cross-entropy minus `beta` times the entropy of the predicted distribution along `axis`.

    With p, the smoothed targets y_s and k as in `categorical_crossentropy`:

    `loss = -sum_over_axis(y_s * log(p)) - beta * H(p)`, `H(p) = -sum_over_axis(p * log(p))`

    Pereyra et al.'s confidence penalty: low-entropy (confident) predictions cost more. `beta=0` is the
    cross-entropy; the loss can be negative (a uniform p over k classes gives (1 - beta) log k). From logits
    p log p is exp(log_softmax) * log_softmax, which is 0 with a finite gradient where p underflows, so loss
    and gradient stay finite for logits of +-1e4; probabilities are renormalized and clipped (the entropy
    uses the clipped ones), and the rest is that of `categorical_crossentropy`.

    The paper has the entropy summed over the classes, as here. The reimplementation in the MbLS code
    (github.com/by-liu/MbLS, calibrate/losses/penalty_entropy.py) averages it over the classes as well
    (`ent.mean()` over the batch x classes), so its alpha is k * beta.
    """
    check_beta(beta)
    c = _categorical(y_true, y_pred, from_logits, label_smoothing, axis, "ConfidencePenaltyCrossentropy")
    entropy = -ops.sum(ops.exp(c.log_p) * c.log_p, axis=c.axis)
    return finish(ops.sum(c.terms, axis=c.axis) - beta * entropy, c.inputs, c.axis)


@keras.saving.register_keras_serializable(package="xent_lab")
class ConfidencePenaltyCrossentropy(_LossFunctionWrapper):
    """Computes cross-entropy - `beta` * entropy of the prediction: `confidence_penalty_crossentropy`
    (Pereyra et al., 2017), on one-hot (or soft) labels.

    Args:
        beta: Weight of the entropy, a number >= 0. Defaults to `0.1`.
        from_logits: Whether `y_pred` holds logits. Defaults to `False` (probabilities).
        label_smoothing: Float in [0, 1], for the cross-entropy's targets. Defaults to `0.0`.
        axis: The class axis. Defaults to `-1`.
        reduction: `"sum_over_batch_size"` (default), `"sum"`, `"mean"`,
            `"mean_with_sample_weight"`, `"none"` or `None`, as for `keras.losses.Loss`.
        name: Name of the loss instance. Defaults to `"confidence_penalty_crossentropy"`.
        dtype: Dtype of the loss's computations. Defaults to `None`: `keras.config.floatx()`.
    """

    beta: float

    def __init__(
        self,
        beta: float = 0.1,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "confidence_penalty_crossentropy",
        dtype: Any = None,
    ) -> None:
        check_beta(beta)
        super().__init__(
            confidence_penalty_crossentropy,
            reduction=reduction,
            name=name,
            dtype=dtype,
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
            beta=float(beta),
        )
