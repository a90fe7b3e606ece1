"""Cross-entropy plus the maximum mean calibration error of the batch (Kumar, Sarawagi & Jain, ICML
2018, "Trainable Calibration Measures for Neural Networks from Kernel Mean Embeddings"): `mmce`,
`mmce_crossentropy`, `MMCECrossentropy`, and `MMCETerm`, its two terms as Keras metrics.

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
TERMS = ("ce", "mmce")  # the terms of the objective, logged per epoch as loss_ce and loss_mmce


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


# The guards of the authors' MMCE_w: m^2 + 1e-5 in its denominators, sqrt(MMCE_w^2 + 1e-10).
_DENOMINATOR_EPSILON = 1e-5
_SQRT_EPSILON = 1e-10


def _batch_mmce(y_true: Tensor, log_p: Tensor, axis: int, kernel_width: float, weighted: bool) -> Tensor:
    """The MMCE of all samples (every position off the class axis), a scalar."""
    confidence = ops.reshape(ops.exp(ops.max(log_p, axis=axis)), (-1,))  # r_i
    correct = ops.equal(ops.argmax(log_p, axis=axis), ops.argmax(y_true, axis=axis))
    correct = ops.cast(ops.reshape(correct, (-1,)), log_p.dtype)  # c_i, a constant
    # K_ij = exp(-|r_i - r_j| / kernel_width), the Laplacian kernel.
    kernel = ops.exp(-ops.abs(confidence[:, None] - confidence[None, :]) / kernel_width)
    if not weighted:
        # MMCE_m^2 = v^T K v, v_i = (c_i - r_i) / m.
        v = (correct - confidence) * (1.0 / ops.cast(ops.shape(confidence)[0], log_p.dtype))
        return _safe_sqrt(ops.sum(v * ops.matmul(kernel, v)))
    right = correct * (1.0 - confidence)  # 1 - r_i on the correct samples C, 0 elsewhere
    wrong = (1.0 - correct) * confidence  # r_i on the wrong samples W
    # The group sizes, at least 1 so that a batch of one group divides by no 0 (its MMCE_w is 0 below).
    m = ops.maximum(ops.sum(correct), 1.0)
    n = ops.maximum(ops.sum(1.0 - correct), 1.0)
    k_wrong = ops.matmul(kernel, wrong)
    squared = (
        ops.sum(right * ops.matmul(kernel, right)) / (m * m * (m * m + _DENOMINATOR_EPSILON))
        + ops.sum(wrong * k_wrong) / (n * n * (n * n + _DENOMINATOR_EPSILON))
        - 2.0 * ops.sum(right * k_wrong) / (m * n * (m * n + _DENOMINATOR_EPSILON))
    )
    both = ops.logical_and(ops.max(correct) > 0, ops.min(correct) < 1)
    return ops.where(both, _safe_sqrt(squared + _SQRT_EPSILON), 0.0)


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

    the RKHS norm of the mean embedding of c - r, 0 for a perfectly calibrated model as m grows, and
    the square root of the paper's estimator, as in the paper's training objective (the authors'
    `MMCE` class returns the square; none of their training scripts uses it). The square root has
    gradient 0 (not inf) where MMCE_m^2 = 0.

    `weighted=True` is MMCE_w exactly as Mukhoti et al.'s released code computes it and trains
    with (torrvision/focal_calibration, Losses/mmce.py, `MMCE_weighted`, commit 475422a), with
    C the m_C correct samples and W the m_W wrong ones:

    `MMCE_w = sqrt(S_CC / (m_C^2 (m_C^2 + 1e-5)) + S_WW / (m_W^2 (m_W^2 + 1e-5))
    - 2 S_CW / (m_C m_W (m_C m_W + 1e-5)) + 1e-10)`

    `S_CC = sum_{C x C} (1 - r_i)(1 - r_j) k`, `S_WW = sum_{W x W} r_i r_j k`,
    `S_CW = sum_{C x W} (1 - r_i) r_j k`: their code averages each block (dividing by its size)
    and then divides by m_C^2 + 1e-5, m_W^2 + 1e-5 or m_C m_W + 1e-5 again, so the sizes enter
    twice. It is 0 for a batch without errors or without a correct sample. Being divided by the
    sizes, not by the groups' residual sums (`correct_denom`, `incorrect_denom`, which the code
    computes and leaves unused), it is smaller than MMCE_m by a factor of the order of the batch
    size, and not 0 for a calibrated model unless m_C = m_W. c is a constant for the gradient in both.

    `kernel_width` must be > 0 (their code: 0.4). Probabilities outside [0, 1] (from_logits=False)
    are an error.
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
    `weighted=True`) added to every sample, so that the mean reduction gives the authors' training
    objective `mean(CE) + weight * MMCE` (focal_calibration, Losses/loss.py, `mmce_weighted`).
    `label_smoothing` smooths the cross-entropy's targets only (MMCE compares the arg-max with the
    label's arg-max, which smoothing leaves unchanged).

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
        weighted: Whether to use MMCE_w, which weighs correct and incorrect samples separately, as
            the authors' code computes it (see `mmce`), instead of MMCE_m. Defaults to `False`.
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

    def term_metrics(self) -> list[keras.metrics.Metric]:
        """The two terms of the objective as Keras metrics, `loss_ce` and `loss_mmce` (so `loss = loss_ce + weight *
        loss_mmce` in the epoch logs, training and validation), with this loss's settings."""
        settings = {
            key: getattr(self, key) for key in ("kernel_width", "weighted", "from_logits", "label_smoothing", "axis")
        }
        return [MMCETerm(term, **settings) for term in TERMS]


@keras.saving.register_keras_serializable(package="xent_lab")
class MMCETerm(keras.metrics.Mean):
    """One term of `mmce_crossentropy` as a Keras metric named `loss_<term>`: `term="ce"` the per-sample
    cross-entropy, `term="mmce"` the batch's MMCE counted once per sample, so that both are means over the
    samples, as Keras' mean of the loss is (sample weights weight them as any Keras mean)."""

    def __init__(
        self,
        term: str,
        kernel_width: float = 0.4,
        weighted: bool = False,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        name: str | None = None,
        dtype: Any = None,
    ) -> None:
        if term not in TERMS:
            raise ValueError(f"term must be one of {', '.join(TERMS)}. Received: term={term!r}")
        check_kernel_width(kernel_width)
        super().__init__(name=name or f"loss_{term}", dtype=dtype)
        self.term = term
        self.settings = dict(
            kernel_width=float(kernel_width),
            weighted=bool(weighted),
            from_logits=bool(from_logits),
            label_smoothing=float(label_smoothing),
            axis=int(axis),
        )

    def update_state(self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None) -> None:
        s = self.settings
        c = _categorical(y_true, y_pred, s["from_logits"], s["label_smoothing"], s["axis"], WHO)
        values = ops.sum(c.terms, axis=c.axis)
        if self.term == "mmce":
            batch = _batch_mmce(c.inputs.y_true, c.log_p, c.axis, s["kernel_width"], s["weighted"])
            values = ops.broadcast_to(batch, ops.shape(values))
        super().update_state(finish(values, c.inputs, None), sample_weight=sample_weight)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "term": self.term, **self.settings}
