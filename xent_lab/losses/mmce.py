"""Cross-entropy plus the maximum mean calibration error of the batch (Kumar, Sarawagi & Jain, ICML
2018, "Trainable Calibration Measures for Neural Networks from Kernel Mean Embeddings"): `mmce`,
`mmce_crossentropy` and `MMCECrossentropy`.

MMCE is a batch statistic: every sample's confidence meets every other's in an m x m kernel, so
time and memory are quadratic in the batch size m (see `xent_lab.bench.loss_costs.mmce_break_even`).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from xent_lab.losses._checks import check_axis
from xent_lab.losses._ops import Tensor, aligned, categorical_log_probs, class_axis, finish, prepare
from xent_lab.losses.classes import _LossFunctionWrapper

# Private, but the one definition of the inputs shared by the categorical losses.
from xent_lab.losses.functional import _categorical

WHO = "MMCECrossentropy"


def check_kernel_width(kernel_width: float) -> None:
    if not kernel_width > 0:  # also rejects NaN
        raise ValueError(f"kernel_width must be a number > 0. Received: kernel_width={kernel_width!r}")


def check_weight(weight: float) -> None:
    if not weight >= 0:
        raise ValueError(f"weight must be a number >= 0. Received: weight={weight!r}")


def _safe_sqrt(x: Tensor) -> Tensor:
    """sqrt(max(x, 0)) with gradient 0, not inf, where x <= 0 (a calibrated batch; or rounding below 0)."""
    positive = x > 0
    return ops.where(positive, ops.sqrt(ops.where(positive, x, 1.0)), 0.0)


def _batch_mmce(y_true: Tensor, log_p: Tensor, axis: int, kernel_width: float, weighted: bool) -> Tensor:
    """The MMCE of all samples (every position off the class axis), a scalar."""
    confidence = ops.reshape(ops.exp(ops.max(log_p, axis=axis)), (-1,))  # r_i
    correct = ops.equal(ops.argmax(log_p, axis=axis), ops.argmax(y_true, axis=axis))
    correct = ops.cast(ops.reshape(correct, (-1,)), log_p.dtype)  # c_i, a constant
    residual = correct - confidence  # 1 - r_i on C, -r_i on W
    if weighted:
        # MMCE_w: each group's residuals sum to 1 in absolute value (m_C = sum_C (1 - r), m_W = sum_W r).
        mass_correct = ops.sum(correct * residual)
        mass_wrong = -ops.sum((1.0 - correct) * residual)
        scale = ops.where(correct > 0, ops.divide_no_nan(1.0, mass_correct), ops.divide_no_nan(1.0, mass_wrong))
        # As the authors' code: 0 for a batch without errors or without a correct sample, where the one
        # group's normalised term would be ~1 however (un)confident it is.
        both = ops.logical_and(ops.max(correct) > 0, ops.min(correct) < 1)
        scale = ops.where(both, scale, 0.0)
    else:
        scale = 1.0 / ops.cast(ops.shape(confidence)[0], log_p.dtype)
    # MMCE^2 = v^T K v, v_i = (c_i - r_i) * scale_i, K_ij = exp(-|r_i - r_j| / kernel_width) (Laplacian).
    v = residual * scale
    kernel = ops.exp(-ops.abs(confidence[:, None] - confidence[None, :]) / kernel_width)
    return _safe_sqrt(ops.sum(v * ops.matmul(kernel, v)))


def mmce(
    y_true: Tensor,
    y_pred: Tensor,
    kernel_width: float = 0.4,
    weighted: bool = False,
    from_logits: bool = False,
    axis: int = -1,
) -> Tensor:
    """Maximum mean calibration error of a batch (Kumar, Sarawagi & Jain, 2018), a scalar.

    Over the m samples of the batch (every position off the class axis), with r_i the confidence
    (the largest predicted probability along `axis`), c_i = 1[argmax p_i == argmax y_i] and the
    Laplacian kernel k(r, r') = exp(-|r - r'| / kernel_width):

    `MMCE_m = sqrt(sum_ij (c_i - r_i) (c_j - r_j) k(r_i, r_j) / m^2)`

    the RKHS norm of the mean embedding of c - r, 0 for a perfectly calibrated model as m grows.
    c is a constant for the gradient; the square root has gradient 0 (not inf) where MMCE^2 = 0.

    `weighted=True` is their MMCE_w, which normalises the correct (C) and incorrect (W) samples
    separately, each by its total residual, m_C = sum_C (1 - r_i) and m_W = sum_W r_i:

    `MMCE_w^2 = sum_{C x C} (1 - r_i)(1 - r_j) k / m_C^2 + sum_{W x W} r_i r_j k / m_W^2
    - 2 sum_{C x W} (1 - r_i) r_j k / (m_C m_W)`

    so that the few errors of a batch of high accuracy weigh as much as its correct samples. It is 0
    in expectation for a calibrated model (calibration makes E[c (1 - r) f(r)] = E[(1 - c) r f(r)]
    for every f, f = 1 included, so the two normalised embeddings agree), and set to 0 for a batch
    without errors or without a correct sample, as in the authors' code.

    The authors' code (github.com/aviralkumar2907/MMCE, 20ng_mmce.py: `calibration_unbiased_loss`,
    `calibration_mmce_w_loss`) has the kernel exp(-|r - r'| / (2 * 0.2)), i.e. kernel_width = 0.4.
    Its MMCE_m returns the square. Its MMCE_w computes m_C and m_W (`correct_denom`,
    `incorrect_denom`) but divides by the group sizes instead, after averaging each block
    (`get_out_tensor`, a `reduce_mean`), i.e. by the sizes squared twice; with counts the statistic
    is not 0 for a calibrated model unless the accuracy is 1/2 (the tests measure it), so the
    denominators here are m_C and m_W.

    `kernel_width` must be > 0. Probabilities outside [0, 1] (from_logits=False) are an error.
    """
    check_kernel_width(kernel_width)
    inputs = prepare(y_true, y_pred, from_logits)
    y_true, y_pred = aligned(inputs.y_true, inputs.y_pred, "mmce")
    axis, _ = class_axis(y_pred, check_axis(axis), "mmce")
    log_p = categorical_log_probs(y_pred, inputs.from_logits, axis)
    # axis=None: any bad probability in the batch poisons the batch statistic.
    return finish(_batch_mmce(y_true, log_p, axis, kernel_width, weighted), inputs._replace(y_pred=y_pred), None)


def mmce_crossentropy(
    y_true: Tensor,
    y_pred: Tensor,
    weight: float = 1.0,
    kernel_width: float = 0.4,
    weighted: bool = False,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
) -> Tensor:
    """Cross-entropy plus `weight` times the batch's MMCE (Kumar, Sarawagi & Jain, 2018), per sample.

    `loss_i = categorical_crossentropy_i + weight * mmce(batch)`, the MMCE of `mmce` (MMCE_w with
    `weighted=True`) added to every sample, so that the mean reduction gives their training
    objective `mean(CE) + weight * MMCE`. `label_smoothing` smooths the cross-entropy's targets
    only (MMCE compares the arg-max with the label's arg-max, which smoothing leaves unchanged).

    Sample weights (applied by Keras to the per-sample values) weight the cross-entropy as usual and
    scale the batch term by their mean under "sum_over_batch_size" / "mean" (by their sum under
    "sum", which also scales it by the batch size; unchanged under "mean_with_sample_weight"); the
    MMCE itself is computed over every sample of the batch, unweighted: a sample of weight 0
    (padding) still enters it. `weight` must be >= 0, `kernel_width` > 0; the rest is as for
    `categorical_crossentropy`, except that a bad probability anywhere in the batch makes every
    sample's loss an error (or NaN under XLA), since every sample's loss depends on the whole batch.
    """
    check_weight(weight)
    check_kernel_width(kernel_width)
    c = _categorical(y_true, y_pred, from_logits, label_smoothing, axis, WHO)
    loss = ops.sum(c.terms, axis=c.axis)
    if weight:
        loss = loss + weight * _batch_mmce(c.inputs.y_true, c.log_p, c.axis, kernel_width, weighted)
    return finish(loss, c.inputs, None)


@keras.saving.register_keras_serializable(package="xent_lab")
class MMCECrossentropy(_LossFunctionWrapper):
    """Computes cross-entropy + `weight` * MMCE of the batch: `mmce_crossentropy` (Kumar, Sarawagi &
    Jain, 2018), on one-hot labels.

    Args:
        weight: Weight of the MMCE term (their lambda), a number >= 0. Defaults to `1.0`.
        kernel_width: Width of the Laplacian kernel exp(-|r - r'| / kernel_width) on the
            confidences, > 0. Defaults to `0.4`, the authors' value.
        weighted: Whether to use MMCE_w, which normalises correct and incorrect samples
            separately (by their total residuals), instead of MMCE_m. Defaults to `False`.
        from_logits: Whether `y_pred` holds logits. Defaults to `False` (probabilities).
        label_smoothing: Float in [0, 1], for the cross-entropy's targets. Defaults to `0.0`.
        axis: The class axis. Defaults to `-1`.
        reduction: `"sum_over_batch_size"` (default, giving mean CE + weight * MMCE), `"sum"`,
            `"mean"`, `"mean_with_sample_weight"`, `"none"` or `None`, as for `keras.losses.Loss`.
        name: Name of the loss instance. Defaults to `"mmce_crossentropy"`.
        dtype: Dtype of the loss's computations. Defaults to `None`: `keras.config.floatx()`.
    """

    weight: float
    kernel_width: float
    weighted: bool

    def __init__(
        self,
        weight: float = 1.0,
        kernel_width: float = 0.4,
        weighted: bool = False,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "mmce_crossentropy",
        dtype: Any = None,
    ) -> None:
        check_weight(weight)
        check_kernel_width(kernel_width)
        super().__init__(
            mmce_crossentropy,
            reduction=reduction,
            name=name,
            dtype=dtype,
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
            weight=float(weight),
            kernel_width=float(kernel_width),
            weighted=bool(weighted),
        )
