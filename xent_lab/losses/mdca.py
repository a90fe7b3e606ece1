"""Cross-entropy plus the multi-class difference in confidence and accuracy of the batch, MDCA (Hebbalaguppe,
Prakash, Madan & Arora, CVPR 2022, "A Stitch in Time Saves Nine: A Train-Time Regularizing Loss for Improved
Neural Network Calibration"): `mdca`, `mdca_crossentropy` and `MDCACrossentropy`.

Like MMCE, MDCA is a batch statistic (the mean predicted probability of each class against its frequency
among the labels), added to every sample's loss; it is linear in the batch size.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from xent_lab.losses._checks import check_axis
from xent_lab.losses._ops import Tensor, aligned, categorical_log_probs, class_axis, finish, prepare
from xent_lab.losses.classes import _LossFunctionWrapper
from xent_lab.losses.confidence_penalty import check_beta

# Private, but the one definition of the inputs shared by the categorical losses.
from xent_lab.losses.functional import _categorical

WHO = "MDCACrossentropy"


def _batch_mdca(y_true: Tensor, log_p: Tensor, axis: int) -> Tensor:
    """The MDCA of all samples (every position off the class axis), a scalar."""
    others = tuple(i for i in range(len(log_p.shape)) if i != axis)
    gap = ops.mean(ops.exp(log_p) - y_true, axis=others)  # per class: mean p_k - mean y_k
    return ops.mean(ops.abs(gap))


def mdca(y_true: Tensor, y_pred: Tensor, from_logits: bool = False, axis: int = -1) -> Tensor:
    """Multi-class difference in confidence and accuracy of a batch (Hebbalaguppe et al., 2022), a scalar.

    Over the m samples of the batch (every position off the class axis) and the k classes along `axis`,
    with p_i the predicted distribution and y_i the one-hot (or soft) label:

    `MDCA = (1 / k) sum_k |(1 / m) sum_i p_ik - (1 / m) sum_i y_ik|`

    0 when every class is predicted, on average over the batch, as often as it occurs; in [0, 2 / k].
    The gradient of |x| at 0 is 0. Probabilities outside [0, 1] (from_logits=False) are an error;
    otherwise they are renormalized and clipped as in `categorical_crossentropy`.
    """
    inputs = prepare(y_true, y_pred, from_logits)
    y_true, y_pred = aligned(inputs.y_true, inputs.y_pred, "mdca")
    axis, _ = class_axis(y_pred, check_axis(axis), "mdca")
    log_p = categorical_log_probs(y_pred, inputs.from_logits, axis)
    # axis=None: any bad probability in the batch poisons the batch statistic.
    return finish(_batch_mdca(y_true, log_p, axis), inputs._replace(y_pred=y_pred), None)


def mdca_crossentropy(
    y_true: Tensor,
    y_pred: Tensor,
    beta: float = 1.0,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
) -> Tensor:
    """Cross-entropy plus `beta` times the batch's MDCA (Hebbalaguppe et al., 2022), per sample.

    `loss_i = categorical_crossentropy_i + beta * mdca(batch)`, the MDCA of `mdca` added to every sample,
    so that the mean reduction gives their training objective `mean(CE) + beta * MDCA` ("NLL+MDCA" in
    the authors' code, github.com/mdca-loss/MDCA-Calibration, solvers/loss.py: `ClassficationAndMDCA`,
    `MDCA`, commit cece2e5acb5acb8738f6f80f9592a20d211d1c33). `label_smoothing` smooths the cross-entropy's
    targets only: MDCA compares with the labels as given, as their "LS+MDCA" does.

    Sample weights (applied by Keras to the per-sample values) weight the cross-entropy as usual and scale
    the batch term by their mean under "sum_over_batch_size" / "mean" (by their sum under "sum", which
    also scales it by the batch size; unchanged under "mean_with_sample_weight"); the MDCA itself is
    computed over every sample of the batch, unweighted. `beta` must be >= 0; the rest is as for
    `categorical_crossentropy`, except that a bad probability anywhere in the batch makes every sample's
    loss an error (or NaN under XLA), since every sample's loss depends on the whole batch.
    """
    check_beta(beta)
    c = _categorical(y_true, y_pred, from_logits, label_smoothing, axis, WHO)
    loss = ops.sum(c.terms, axis=c.axis)
    if beta:
        loss = loss + beta * _batch_mdca(c.inputs.y_true, c.log_p, c.axis)
    return finish(loss, c.inputs, None)


@keras.saving.register_keras_serializable(package="xent_lab")
class MDCACrossentropy(_LossFunctionWrapper):
    """Computes cross-entropy + `beta` * MDCA of the batch: `mdca_crossentropy` (Hebbalaguppe et al.,
    2022), on one-hot (or soft) labels.

    Args:
        beta: Weight of the MDCA term, a number >= 0. Defaults to `1.0`.
        from_logits: Whether `y_pred` holds logits. Defaults to `False` (probabilities).
        label_smoothing: Float in [0, 1], for the cross-entropy's targets. Defaults to `0.0`.
        axis: The class axis. Defaults to `-1`.
        reduction: `"sum_over_batch_size"` (default, giving mean CE + beta * MDCA), `"sum"`,
            `"mean"`, `"mean_with_sample_weight"`, `"none"` or `None`, as for `keras.losses.Loss`.
        name: Name of the loss instance. Defaults to `"mdca_crossentropy"`.
        dtype: Dtype of the loss's computations. Defaults to `None`: `keras.config.floatx()`.
    """

    beta: float

    def __init__(
        self,
        beta: float = 1.0,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "mdca_crossentropy",
        dtype: Any = None,
    ) -> None:
        check_beta(beta)
        super().__init__(
            mdca_crossentropy,
            reduction=reduction,
            name=name,
            dtype=dtype,
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
            beta=float(beta),
        )
