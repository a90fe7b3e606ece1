"""Logit normalization (Wei et al., ICML 2022, "Mitigating Neural Network Overconfidence with Logit
Normalization"): cross-entropy on the logits scaled to a fixed norm, `logitnorm_crossentropy` and
`LogitNormCrossentropy`."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from xent_lab.losses._ops import Tensor, categorical_xent_from_logits, finish
from xent_lab.losses.classes import _LossFunctionWrapper

# Private, but the one definition of the inputs shared by the categorical losses, and of a square root with a
# finite gradient at 0.
from xent_lab.losses.functional import _categorical
from xent_lab.losses.mmce import _safe_sqrt

WHO = "LogitNormCrossentropy"
# Added to the norm, as the authors' code does (`torch.norm(x, p=2, dim=-1, keepdim=True) + 1e-7`).
NORM_EPSILON = 1e-7


def check_tau(tau: float) -> None:
    if not tau > 0:  # also rejects NaN
        raise ValueError(f"tau must be a number > 0. Received: tau={tau!r}")


def logitnorm_crossentropy(
    y_true: Tensor,
    y_pred: Tensor,
    tau: float = 0.01,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
) -> Tensor:
    """Cross-entropy of the logits divided by `tau` times their L2 norm along `axis` (Wei et al., 2022).

    With z the logits, y_s the smoothed targets as in `categorical_crossentropy` and
    `||z|| = sqrt(sum_over_axis(z ** 2))`:

    `loss = -sum_over_axis(y_s * log_softmax(z / (tau * (||z|| + 1e-7))))`

    Every sample's normalized logits have norm ~1/tau, so the loss cannot be lowered by growing the
    logits, only by their direction; the smallest loss a sample can reach is bounded away from 0
    (for k classes and a one-hot label, that of the logits 1/tau on the label and 0 elsewhere).
    The 1e-7 is added to the norm, outside the square root, as in the authors' code
    (github.com/hongxin001/logitnorm_ood, common/loss_function.py, `LogitNormLoss`), whose README trains
    with `--temp 0.01` (the argparse default 1.0 leaves the normalized logits in [-1, 1]).

    The logits come from `y_pred` when `from_logits=True`. From probabilities (clipped and
    renormalized as in `categorical_crossentropy`) the logits are log p: the logits shifted to a
    log-sum-exp of 0, whose norm is not that of the model's logits, so the probability path is a
    different loss; the paper's is the one from logits. The norm has a finite gradient at z = 0 and
    at logits of +-1e4; the rest (float16 in float32, validation) is that of `categorical_crossentropy`.
    """
    check_tau(tau)
    c = _categorical(y_true, y_pred, from_logits, label_smoothing, axis, WHO, log_p_of_logits=False)
    z = c.inputs.y_pred if c.inputs.from_logits else c.log_p
    norm = _safe_sqrt(ops.sum(ops.square(z), axis=c.axis, keepdims=True)) + NORM_EPSILON
    loss = categorical_xent_from_logits(c.targets, z / (tau * norm), c.axis)
    return finish(loss, c.inputs, c.axis)


@keras.saving.register_keras_serializable(package="xent_lab")
class LogitNormCrossentropy(_LossFunctionWrapper):
    """Computes the LogitNorm loss `logitnorm_crossentropy` (Wei et al., 2022): cross-entropy on
    `z / (tau * (||z|| + 1e-7))`.

    Args:
        tau: Temperature, a number > 0: the normalized logits have norm ~1/tau. Defaults to `0.01`,
            the value of the authors' training command.
        from_logits: Whether `y_pred` holds logits. Defaults to `False` (probabilities, whose log is
            normalized).
        label_smoothing: Float in [0, 1]; when > 0 the targets become
            `y_true * (1 - label_smoothing) + label_smoothing / k`. Defaults to `0.0`.
        axis: The class axis. Defaults to `-1`.
        reduction: `"sum_over_batch_size"` (default), `"sum"`, `"mean"`,
            `"mean_with_sample_weight"`, `"none"` or `None`, as for `keras.losses.Loss`.
        name: Name of the loss instance. Defaults to `"logitnorm_crossentropy"`.
        dtype: Dtype of the loss's computations. Defaults to `None`: `keras.config.floatx()`.
    """

    tau: float

    def __init__(
        self,
        tau: float = 0.01,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "logitnorm_crossentropy",
        dtype: Any = None,
    ) -> None:
        check_tau(tau)
        super().__init__(
            logitnorm_crossentropy,
            reduction=reduction,
            name=name,
            dtype=dtype,
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
            tau=float(tau),
        )
