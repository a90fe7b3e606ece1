"""Private building blocks of the loss functions, on `keras.ops`: input preparation, validation
guards and numerically stable log-probabilities."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import keras
from keras import ops

# Keras has no public API for this one; it keeps Keras' rank alignment of y_true/y_pred exactly.
from keras.src.losses.loss import squeeze_or_expand_to_same_rank

from xent_lab.losses._checks import FLSD53

try:  # TensorFlow is only used for value assertions; without it those checks NaN-poison instead.
    import tensorflow as tf
except ImportError:  # pragma: no cover - other Keras backends
    tf = None

Tensor = Any


class Prepared(NamedTuple):
    """The inputs of a loss as tensors of one float dtype."""

    y_true: Tensor
    y_pred: Tensor  # the logits when y_pred came out of a softmax/sigmoid activation
    from_logits: bool
    dtype: str  # y_pred's dtype as given: the loss is returned in it


def prepare(y_true: Tensor, y_pred: Tensor, from_logits: bool) -> Prepared:
    """(y_true, y_pred, from_logits, dtype), ready for the loss."""
    # Softmax/sigmoid outputs carry their logits, which Keras' own cross-entropies use instead.
    logits = getattr(y_pred, "_keras_logits", None)
    y_pred = ops.convert_to_tensor(y_pred)
    dtype = keras.backend.standardize_dtype(y_pred.dtype)
    if logits is not None:
        if from_logits:
            warnings.warn(
                "`from_logits=True`, but y_pred is the output of a softmax/sigmoid activation; "
                "using the logits before that activation.",
                stacklevel=3,
            )
        y_pred, from_logits = ops.convert_to_tensor(logits), True
    # Half precision is computed in float32: there 1 - epsilon rounds to 1 and the gradient 1/p of
    # log(p) overflows for p < 1.5e-5, which gives NaN gradients (Keras computes in half precision).
    if keras.backend.standardize_dtype(y_pred.dtype) in ("float16", "bfloat16"):
        y_pred = ops.cast(y_pred, "float32")
    return Prepared(ops.cast(y_true, y_pred.dtype), y_pred, from_logits, dtype)


def finish(loss: Tensor, inputs: Prepared, axis: int) -> Tensor:
    """The per-sample `loss`, guarded against probabilities outside [0, 1], in the inputs' dtype."""
    if not inputs.from_logits:
        loss = guard_probabilities(loss, inputs.y_pred, axis)
    return ops.cast(loss, inputs.dtype)


def guard(loss: Tensor, ok: Tensor, message: str, values: Tensor) -> Tensor:
    """`loss`, with an error if `ok` (shaped like `loss`) is False anywhere.

    TensorFlow eager / tf.function: InvalidArgumentError(message). XLA drops the assertion and other
    backends have none, so the offending samples' losses are also set to NaN: loud, never wrong.
    """
    if tf is not None and keras.backend.backend() == "tensorflow":
        summary = [message, "Received min:", ops.min(values), "max:", ops.max(values)]
        with tf.control_dependencies([tf.debugging.Assert(ops.all(ok), summary)]):
            loss = tf.identity(loss)
    return ops.where(ok, loss, math.nan)


def guard_probabilities(loss: Tensor, y_pred: Tensor, axis: int) -> Tensor:
    # NaN predictions pass (they are a training failure, reported as a NaN loss like in Keras).
    in_range = ops.logical_not(ops.logical_or(y_pred < 0, y_pred > 1))
    return guard(
        loss,
        ops.all(in_range, axis=axis),
        "y_pred must be probabilities in [0, 1] when from_logits=False (pass from_logits=True for logits).",
        y_pred,
    )


def compatible(shape_a: Sequence[int | None], shape_b: Sequence[int | None]) -> bool:
    return len(shape_a) == len(shape_b) and all(a is None or b is None or a == b for a, b in zip(shape_a, shape_b))


def aligned(y_true: Tensor, y_pred: Tensor, who: str) -> tuple[Tensor, Tensor]:
    """Keras' rank alignment (a trailing 1 may be missing on either side), then equal shapes."""
    y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
    if not compatible(y_true.shape, y_pred.shape):
        raise ValueError(
            f"{who}: y_true and y_pred must have the same shape. "
            f"Received y_true.shape={tuple(y_true.shape)}, y_pred.shape={tuple(y_pred.shape)}."
        )
    return y_true, y_pred


def class_axis(y_pred: Tensor, axis: int, who: str) -> tuple[int, Any]:
    """(non-negative class axis, number of classes: an int, or a tensor if unknown when tracing)."""
    rank = len(y_pred.shape)
    if not -rank <= axis < rank:
        raise ValueError(f"{who}: axis={axis} is out of range for y_pred of rank {rank}.")
    axis %= rank
    num_classes = y_pred.shape[axis]
    if num_classes == 1:
        # Always 0: a model with one output unit needs a binary loss.
        raise ValueError(
            f"{who}: y_pred has a single class along axis {axis} (shape {tuple(y_pred.shape)}); "
            "use BinaryCrossentropy / BinaryFocalCrossentropy for one sigmoid output."
        )
    return axis, num_classes if num_classes is not None else ops.shape(y_pred)[axis]


def clip_probs(p: Tensor) -> Tensor:
    eps = keras.config.epsilon()
    return ops.clip(p, eps, 1.0 - eps)


def binary_log_probs(y_pred: Tensor, from_logits: bool) -> tuple[Tensor, Tensor]:
    """(log p, log(1 - p)) of the positive class, from logits without ever taking log(sigmoid)."""
    if from_logits:
        return ops.log_sigmoid(y_pred), ops.log_sigmoid(-y_pred)
    p = clip_probs(y_pred)
    return ops.log(p), ops.log(1.0 - p)


def renormalized_probs(y_pred: Tensor, axis: int) -> Tensor:
    # As Keras: rows are rescaled to sum to 1, then clipped.
    return clip_probs(y_pred / ops.sum(y_pred, axis=axis, keepdims=True))


def categorical_log_probs(y_pred: Tensor, from_logits: bool, axis: int) -> Tensor:
    """log p per class: log-softmax of logits, or the log of the renormalized, clipped probabilities."""
    if from_logits:
        return ops.log_softmax(y_pred, axis=axis)
    return ops.log(renormalized_probs(y_pred, axis))


def categorical_log1m_probs(y_pred: Tensor, from_logits: bool, axis: int) -> Tensor:
    """log(1 - p) per class, finite and with finite gradients for any finite logits.

    For the arg-max class 1 - p can underflow, so it is computed as logsumexp(other logits) -
    logsumexp(all logits); every other class has p <= 1/2, where log1p(-p) is accurate.
    """
    if not from_logits:
        return ops.log(1.0 - renormalized_probs(y_pred, axis))
    num_classes = ops.shape(y_pred)[axis]
    is_max = ops.cast(ops.one_hot(ops.argmax(y_pred, axis=axis), num_classes, axis=axis), "bool")
    log_total = ops.logsumexp(y_pred, axis=axis, keepdims=True)
    log_others = ops.logsumexp(ops.where(is_max, -math.inf, y_pred), axis=axis, keepdims=True)
    # Zero the arg-max entry before log1p: a -inf in the unused branch of `where` would make its
    # gradient NaN.
    p_rest = ops.where(is_max, 0.0, ops.exp(y_pred - log_total))
    return ops.where(is_max, log_others - log_total, ops.log1p(-p_rest))


def log_or_neg_inf(x: Tensor) -> Tensor:
    """log(x) with log(0) = -inf, keeping the gradient w.r.t. x finite (double-where trick)."""
    positive = x > 0
    return ops.where(positive, ops.log(ops.where(positive, x, 1.0)), -math.inf)


def focal_factor(log_1m_p: Tensor, gamma: float | str, p_true: Tensor | None) -> Tensor:
    """(1 - p)^gamma as exp(gamma * log(1 - p)): finite with finite gradients even where 1 - p = 0.

    With gamma="flsd53" the exponent is 5 where the true-class probability `p_true` < 0.2, else 3;
    `p_true` is a constant for the gradient, as in Mukhoti et al.'s code.
    """
    if gamma == FLSD53:
        gamma = ops.cast(ops.where(ops.stop_gradient(p_true) < 0.2, 5.0, 3.0), log_1m_p.dtype)
    return ops.exp(gamma * log_1m_p)
