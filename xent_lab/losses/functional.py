"""The losses as pure functions of `(y_true, y_pred)` on `keras.ops`: one loss value per sample.

Each has the signature of the Keras function of the same name (`keras.losses.binary_crossentropy`
and so on; `sparse_categorical_crossentropy` adds `label_smoothing` last). Where they differ from
Keras (each docstring has the details):

- Stable forms. From logits every log-probability is a log-sigmoid / log-softmax, and the focal
  factor (1 - p)^gamma is exp(gamma * log(1 - p)) with log(1 - p) computed from the logits, so loss
  and gradient stay finite for logits of +-1e4 (Keras' focal losses apply the softmax/sigmoid first:
  the categorical one saturates at -log(epsilon) ~ 16.1 with zero gradient, the binary one returns
  NaN gradients for gamma < 1). Results agree with Keras wherever Keras' probabilities lie inside
  [epsilon, 1 - epsilon].
- On the probability path probabilities are clipped to [epsilon, 1 - epsilon] as in Keras; the focal
  factors use the clipped probabilities too (Keras: the unclipped ones).
- float16/bfloat16 losses are computed in float32 and returned in their dtype (Keras computes in
  half precision, where 1 - epsilon rounds to 1 and 1/p overflows: inf losses, NaN gradients).
- Extras: `label_smoothing` for the sparse loss, and `gamma="flsd53"` for the focal losses
  (Mukhoti et al. 2020: gamma = 5 where the true-class probability p_t < 0.2, else 3).
- Validation. Static shape mismatches raise ValueError when the loss is traced. Probabilities
  outside [0, 1] (from_logits=False) and sparse labels that are not integers in [0, k) raise
  tf.errors.InvalidArgumentError in eager mode and in tf.function; under XLA, which drops assertions
  (Keras' model.fit uses XLA by default on a GPU), and on other backends, the affected samples'
  losses are NaN instead, never a silent wrong number. Valid inputs are unaffected.

Like Keras' built-ins, a `y_pred` produced by `keras.activations.softmax` / `sigmoid` (a model's
softmax/sigmoid output layer) carries its logits, and the losses then use the logits.

Error messages name the loss class (e.g. "BinaryCrossentropy: ..."), which is how they are met.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
from keras import ops

# No public Keras API either: the loss mask through which `ignore_class` reaches the reduction.
from keras.src.backend import set_keras_mask

from xent_lab.heads import smooth_labels
from xent_lab.losses._checks import FLSD53, check_axis, check_gamma, check_label_smoothing
from xent_lab.losses._ops import (
    Prepared,
    Tensor,
    aligned,
    binary_1m_pt,
    binary_focal_terms,
    binary_log1m_pt,
    binary_log_probs,
    binary_xent_terms,
    categorical_1m_probs,
    categorical_log1m_probs,
    categorical_log_probs,
    categorical_xent_from_logits,
    class_axis,
    compatible,
    finish,
    focal_factor,
    guard,
    power_is_safe,
    prepare,
    sparse_xent_from_logits,
)


class _Binary(NamedTuple):
    """What the binary losses share: aligned inputs, the axis and the smoothed targets."""

    inputs: Prepared
    axis: int
    targets: Tensor  # y_s

    @property
    def terms(self) -> Tensor:
        """Element-wise binary cross-entropy."""
        return binary_xent_terms(self.targets, self.inputs.y_pred, self.inputs.from_logits)


def _binary(y_true: Tensor, y_pred: Tensor, from_logits: bool, label_smoothing: float, axis: int, who: str) -> _Binary:
    check_label_smoothing(label_smoothing)
    inputs = prepare(y_true, y_pred, from_logits)
    y_true, y_pred = aligned(inputs.y_true, inputs.y_pred, who)
    inputs = inputs._replace(y_true=y_true, y_pred=y_pred)
    return _Binary(inputs, check_axis(axis), smooth_labels(y_true, label_smoothing, 2))


class _Categorical(NamedTuple):
    """What the categorical losses share: aligned inputs, the class axis, targets and log p."""

    inputs: Prepared
    axis: int  # non-negative
    targets: Tensor  # y_s
    log_p: Tensor | None  # None on the logits path of a caller that asked for none

    @property
    def terms(self) -> Tensor:
        """Per-class terms -y_s * log p."""
        return -self.targets * self.log_p


def _categorical(
    y_true: Tensor,
    y_pred: Tensor,
    from_logits: bool,
    label_smoothing: float,
    axis: int,
    who: str,
    log_p_of_logits: bool = True,
) -> _Categorical:
    check_label_smoothing(label_smoothing)
    inputs = prepare(y_true, y_pred, from_logits)
    y_true, y_pred = aligned(inputs.y_true, inputs.y_pred, who)
    inputs = inputs._replace(y_true=y_true, y_pred=y_pred)
    axis, num_classes = class_axis(y_pred, check_axis(axis), who)
    targets = smooth_labels(y_true, label_smoothing, ops.cast(num_classes, y_pred.dtype))
    need_log_p = log_p_of_logits or not inputs.from_logits
    return _Categorical(
        inputs, axis, targets, categorical_log_probs(y_pred, inputs.from_logits, axis) if need_log_p else None
    )


def _focal_factor(
    gamma: float | str, p_true: Tensor | None, one_minus_p: Callable[[], Tensor], log_1m_p: Callable[[], Tensor]
) -> Tensor:
    """(1 - p)^gamma: a plain power where that is safe (gamma >= 1, as fast as Keras' own), else
    exp(gamma * log(1 - p)); only the form used is computed."""
    if power_is_safe(gamma):
        return ops.power(one_minus_p(), gamma)
    return focal_factor(log_1m_p(), gamma, p_true)


def binary_crossentropy(
    y_true: Tensor, y_pred: Tensor, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1
) -> Tensor:
    """Binary cross-entropy between labels and predictions, averaged over `axis`.

    With p the predicted probability of the positive class (`sigmoid(y_pred)` when
    `from_logits=True`) and smoothed targets `y_s = y_true * (1 - label_smoothing) + 0.5 *
    label_smoothing`:

    `loss = mean_over_axis(-(y_s * log(p) + (1 - y_s) * log(1 - p)))`

    The same as `keras.losses.binary_crossentropy`: from logits `log(p) = log_sigmoid(y_pred)` and
    `log(1 - p) = log_sigmoid(-y_pred)`; probabilities are clipped to `[epsilon, 1 - epsilon]`.
    It differs only in validation (mismatched shapes raise ValueError; probabilities outside [0, 1]
    are an error) and in computing float16 in float32 (see the module docstring).
    """
    b = _binary(y_true, y_pred, from_logits, label_smoothing, axis, "BinaryCrossentropy")
    return finish(ops.mean(b.terms, axis=b.axis), b.inputs, b.axis)


def binary_focal_crossentropy(
    y_true: Tensor,
    y_pred: Tensor,
    apply_class_balancing: bool = False,
    alpha: float = 0.25,
    gamma: float | str = 2.0,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
) -> Tensor:
    """Focal cross-entropy between binary labels and predictions (Lin et al., 2018).

    With p, y_s as in `binary_crossentropy` and `p_t = y_s * p + (1 - y_s) * (1 - p)`:

    `loss = mean_over_axis(w * (1 - p_t) ** gamma * bce)`, where `bce` is the element-wise binary
    cross-entropy and `w = y_s * alpha + (1 - y_s) * (1 - alpha)` if `apply_class_balancing`, else 1.
    `gamma=0` without class balancing is the binary cross-entropy. With `gamma="flsd53"` the exponent
    is 5 where the probability of the (unsmoothed) true label is < 0.2, else 3 (Mukhoti et al., 2020;
    that probability is a constant for the gradient).

    The same as `keras.losses.binary_focal_crossentropy` (including that `alpha` is ignored unless
    `apply_class_balancing=True`), except that the focal factor is computed as
    `exp(gamma * log(1 - p_t))` with `log(1 - p_t)` computed from the logits (`_ops.binary_log1m_pt`),
    which keeps loss and gradient finite for large logits (Keras' gradient is NaN there for gamma < 1),
    that on the probability path it uses the clipped probabilities, and the validation described in
    the module docstring.
    """
    check_gamma(gamma)
    b = _binary(y_true, y_pred, from_logits, label_smoothing, axis, "BinaryFocalCrossentropy")
    p_true = None
    if gamma == FLSD53:
        log_p, log_q = binary_log_probs(b.inputs.y_pred, b.inputs.from_logits)
        y = b.inputs.y_true
        p_true = y * ops.exp(log_p) + (1.0 - y) * ops.exp(log_q)
    args = (b.targets, b.inputs.y_pred, b.inputs.from_logits)
    if b.inputs.from_logits and power_is_safe(gamma):
        terms = binary_focal_terms(b.targets, b.inputs.y_pred, gamma)
    else:
        terms = _focal_factor(gamma, p_true, lambda: binary_1m_pt(*args), lambda: binary_log1m_pt(*args)) * b.terms
    if apply_class_balancing:
        terms = (b.targets * alpha + (1.0 - b.targets) * (1.0 - alpha)) * terms
    return finish(ops.mean(terms, axis=b.axis), b.inputs, b.axis)


def categorical_crossentropy(
    y_true: Tensor, y_pred: Tensor, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1
) -> Tensor:
    """Cross-entropy between one-hot (or soft) labels and predicted distributions along `axis`.

    With k classes along `axis`, p the predicted distribution (`softmax(y_pred)` when
    `from_logits=True`) and smoothed targets `y_s = y_true * (1 - label_smoothing) +
    label_smoothing / k`:

    `loss = -sum_over_axis(y_s * log(p))`

    The same as `keras.losses.categorical_crossentropy`: from logits `log(p) = log_softmax(y_pred)`;
    probabilities are rescaled to sum to 1 along `axis`, then clipped to `[epsilon, 1 - epsilon]`.
    Differences from Keras: k is read along `axis` (Keras uses the last axis for smoothing); a single
    class (always 0) raises ValueError (Keras warns); mismatched shapes raise ValueError; probability
    entries outside [0, 1] are an error (Keras silently rescales any non-negative scores); from logits,
    the gradient for soft labels whose rows do not sum to 1 is the exact one (`_ops.categorical_xent_from_logits`;
    Keras' fused op returns softmax - y there).
    """
    c = _categorical(
        y_true, y_pred, from_logits, label_smoothing, axis, "CategoricalCrossentropy", log_p_of_logits=False
    )
    if c.inputs.from_logits:
        loss = categorical_xent_from_logits(c.targets, c.inputs.y_pred, c.axis)
    else:
        loss = ops.sum(c.terms, axis=c.axis)
    return finish(loss, c.inputs, c.axis)


def _class_weights(alpha: float | Sequence[float], terms: Tensor, axis: int, who: str) -> float | Tensor:
    """`alpha` as a factor of the per-class terms: a scalar, or one weight per class along `axis`."""
    if np.ndim(alpha) == 0:
        return alpha
    num_classes = terms.shape[axis]
    if num_classes is not None and num_classes != len(alpha):
        raise ValueError(
            f"{who}: alpha has {len(alpha)} weights but y_pred has {num_classes} classes along axis {axis}."
        )
    shape = [1] * len(terms.shape)
    shape[axis] = len(alpha)
    return ops.reshape(ops.convert_to_tensor(alpha, dtype=terms.dtype), shape)


def categorical_focal_crossentropy(
    y_true: Tensor,
    y_pred: Tensor,
    alpha: float | Sequence[float] = 0.25,
    gamma: float | str = 2.0,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
) -> Tensor:
    """Alpha-balanced focal cross-entropy between one-hot labels and predictions (Lin et al., 2018).

    With p, y_s and k as in `categorical_crossentropy`:

    `loss = -sum_over_axis(alpha * (1 - p) ** gamma * y_s * log(p))`

    Every class term gets its own factor `(1 - p_c) ** gamma` and `alpha` (a scalar, or one weight
    per class) multiplies every term, as in `keras.losses.categorical_focal_crossentropy`.
    `gamma=0, alpha=1` is the categorical cross-entropy. With `gamma="flsd53"` the exponent is 5 for
    samples whose true-class probability (of the unsmoothed label) is < 0.2, else 3 (Mukhoti et al.,
    2020; that probability is a constant for the gradient).

    Differences from Keras: from logits, `log(p)` is a log-softmax and `log(1 - p)` is computed from
    the logits without cancellation, so values keep growing (and gradients stay non-zero) where Keras
    clips the softmax output to `[epsilon, 1 - epsilon]`; results agree wherever Keras' probabilities
    are inside that range. A per-class `alpha` is aligned with `axis` (Keras broadcasts it against
    the last axis); plus the validation of `categorical_crossentropy` and `gamma="flsd53"`.
    """
    check_gamma(gamma)
    c = _categorical(y_true, y_pred, from_logits, label_smoothing, axis, "CategoricalFocalCrossentropy")
    p_true = ops.sum(c.inputs.y_true * ops.exp(c.log_p), axis=c.axis, keepdims=True) if gamma == FLSD53 else None
    args = (c.inputs.y_pred, c.inputs.from_logits, c.axis, c.log_p)
    factor = _focal_factor(gamma, p_true, lambda: categorical_1m_probs(*args), lambda: categorical_log1m_probs(*args))
    terms = c.terms
    terms = _class_weights(alpha, terms, c.axis, "CategoricalFocalCrossentropy") * factor * terms
    return finish(ops.sum(terms, axis=c.axis), c.inputs, c.axis)


def _sparse_labels(y_true: Tensor, y_pred: Tensor, axis: int, who: str) -> Tensor:
    """Labels shaped like y_pred without the class axis (a size-1 class axis is squeezed)."""
    if len(y_true.shape) == len(y_pred.shape) and y_true.shape[axis] in (1, None):
        y_true = ops.squeeze(y_true, axis=axis)
    expected = tuple(y_pred.shape[:axis]) + tuple(y_pred.shape[axis + 1 :])
    if not compatible(y_true.shape, expected):
        raise ValueError(
            f"{who}: y_true must have the shape of y_pred without the class axis {axis} "
            f"(or with size 1 there). Received y_true.shape={tuple(y_true.shape)}, "
            f"y_pred.shape={tuple(y_pred.shape)}."
        )
    return y_true


class _Sparse(NamedTuple):
    """What the sparse losses share: the inputs, the class axis, the labels, log p and the label checks."""

    inputs: Prepared
    axis: int  # non-negative
    labels: Tensor
    log_p: Tensor
    valid: Tensor  # integer labels in [0, k)
    ignored: Tensor | None  # labels equal to ignore_class
    index: Tensor  # the label along `axis`, for take_along_axis (0 where invalid or ignored)


def _sparse(
    y_true: Tensor, y_pred: Tensor, from_logits: bool, ignore_class: int | None, axis: int, who: str
) -> _Sparse:
    inputs = prepare(y_true, y_pred, from_logits)
    axis, num_classes = class_axis(inputs.y_pred, check_axis(axis), who)
    labels = _sparse_labels(inputs.y_true, inputs.y_pred, axis, who)
    valid = ops.logical_and(
        ops.logical_and(labels >= 0, labels < ops.cast(num_classes, labels.dtype)),
        ops.equal(labels, ops.floor(labels)),
    )
    ignored = ops.equal(labels, ignore_class) if ignore_class is not None else None
    used = valid if ignored is None else ops.logical_and(valid, ops.logical_not(ignored))
    # Invalid or ignored labels index class 0, so the gather never goes out of range.
    index = ops.expand_dims(ops.cast(ops.where(used, labels, 0), "int32"), axis)
    log_p = categorical_log_probs(inputs.y_pred, inputs.from_logits, axis)
    return _Sparse(inputs, axis, labels, log_p, valid, ignored, index)


def _finish_sparse(loss: Tensor, s: _Sparse, who: str) -> Tensor:
    """The per-sample `loss`: an error for invalid labels, 0 and masked out of the reduction where ignored."""
    loss = guard(
        loss,
        s.valid if s.ignored is None else ops.logical_or(s.valid, s.ignored),
        f"{who}: labels must be integers in [0, num_classes) (num_classes = y_pred.shape[axis]).",
        s.labels,
    )
    return _masked(finish(loss, s.inputs, s.axis), s.ignored)


def _masked(loss: Tensor, ignored: Tensor | None) -> Tensor:
    """`loss` with 0 where `ignored` (`ignore_class`), and those entries masked out of the reduction."""
    if ignored is None:
        return loss
    loss = ops.where(ignored, 0.0, loss)
    set_keras_mask(loss, ops.logical_not(ignored))
    return loss


def sparse_categorical_crossentropy(
    y_true: Tensor,
    y_pred: Tensor,
    from_logits: bool = False,
    ignore_class: int | None = None,
    axis: int = -1,
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross-entropy between integer labels and predicted distributions along `axis`.

    With k classes along `axis`, p the predicted distribution and smoothed targets
    `y_s = one_hot(y_true) * (1 - label_smoothing) + label_smoothing / k`:

    `loss = -sum_over_axis(y_s * log(p)) = -(1 - label_smoothing) * log(p[y_true])
    - label_smoothing * mean_over_axis(log(p))`

    i.e. exactly `categorical_crossentropy` on `one_hot(y_true)`. `y_true` has the shape of `y_pred`
    without the class axis, or with size 1 there. Without label smoothing, the same as
    `keras.losses.sparse_categorical_crossentropy`, including `ignore_class` (those entries get loss 0
    and are masked out of the reduction, through the Keras mask of the result).

    Differences from Keras: `label_smoothing`; any `axis` (Keras' TensorFlow backend supports only the
    last); probabilities are rescaled and clipped as in `categorical_crossentropy` (Keras clips, then
    rescales: the two differ by O(k * epsilon) where a probability is below epsilon); labels that are
    not integers in [0, k) are an error on every device (Keras: on CPU; NaN on GPU).
    """
    who = "SparseCategoricalCrossentropy"
    check_label_smoothing(label_smoothing)
    s = _sparse(y_true, y_pred, from_logits, ignore_class, axis, who)
    if s.inputs.from_logits:
        return _finish_sparse(sparse_xent_from_logits(s.index, s.inputs.y_pred, s.axis, label_smoothing), s, who)
    loss = -ops.squeeze(ops.take_along_axis(s.log_p, s.index, axis=s.axis), axis=s.axis)
    if label_smoothing:
        loss = (1.0 - label_smoothing) * loss - label_smoothing * ops.mean(s.log_p, axis=s.axis)
    return _finish_sparse(loss, s, who)
