"""Private building blocks of the loss functions, on `keras.ops`: input preparation, validation
guards and numerically stable log-probabilities."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import keras
from keras import ops

# Keras has no public API for this one; it keeps Keras' rank alignment of y_true/y_pred exactly.
from keras.src.losses.loss import squeeze_or_expand_to_same_rank

from xent_lab.losses._checks import FLSD53

try:  # TensorFlow is only used for value assertions and the XLA probe; other backends do without.
    import tensorflow as tf

    # No public API tells a function being traced whether XLA will compile it; tf.function(jit_compile=True)
    # (and so Keras' jit_compile) enters this XLA context around its tracing.
    from tensorflow.python.framework.ops import get_default_graph
    from tensorflow.python.ops.control_flow_util import GraphOrParentsInXlaContext
except ImportError:  # pragma: no cover - other Keras backends
    tf = None

Tensor = Any

# The smallest normal float32.
_TINY = 1.1754944e-38


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
        # The raw op: tf.debugging.Assert wraps one with float data in a tf.cond, whose branch function costs a
        # small batch's loss more than the loss itself (sparse CCE at 128 x 10: 1.125x the built-in, 1.07x unguarded).
        with tf.control_dependencies([tf.raw_ops.Assert(condition=ops.all(ok), data=summary, summarize=3)]):
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


def xla_compiles() -> bool:
    """Whether the function being traced is compiled by XLA (`tf.function(jit_compile=True)`, Keras'
    `jit_compile=True`, which Keras chooses by default on a GPU); False eagerly and on other backends."""
    if tf is None or keras.backend.backend() != "tensorflow":
        return False
    return GraphOrParentsInXlaContext(get_default_graph())


def _logistic_loss(y: Tensor, x: Tensor, e: Tensor) -> Tensor:
    """max(x, 0) - x y + log(1 + e) with e = exp(-|x|): binary cross-entropy from logits x, exact for any finite
    x. Spelled with relu and abs (`e`), the fewest kernels, for the written-out gradients below."""
    return ops.relu(x) - x * y + ops.log1p(e)


def _logistic_loss_for_xla(y: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """(`_logistic_loss`, e) in the ops of `tf.nn.sigmoid_cross_entropy_with_logits`, selects instead of relu and
    abs, for XLA to differentiate: its autodiff graph is then the built-in's (with relu and abs, 1.16x it)."""
    positive = x >= 0
    e = ops.exp(ops.where(positive, -x, x))
    return ops.where(positive, x, 0.0) - x * y + ops.log1p(e), e


def binary_xent_terms(y: Tensor, y_pred: Tensor, from_logits: bool) -> Tensor:
    """Element-wise binary cross-entropy -(y log p + (1 - y) log(1 - p)).

    From logits x, `_logistic_loss` with its gradient written out (`_sigmoid_xent`), except under XLA: there
    autodiff of `_logistic_loss_for_xla` is the built-in's graph, where the written-out gradient's sigmoid is a
    second exp that XLA keeps (1.07x the built-in at one output, `make bench`; with `tf.function`, 0.70x).
    """
    if not from_logits:
        log_p, log_q = binary_log_probs(y_pred, from_logits)
        return -(y * log_p + (1.0 - y) * log_q)
    if xla_compiles():
        return _logistic_loss_for_xla(y, y_pred)[0]
    return _sigmoid_xent(y, y_pred)


def _upstream(args: tuple[Tensor, ...], upstream: Tensor | None) -> Tensor:
    # keras.ops.custom_gradient passes the upstream gradient positionally on TensorFlow, by name on JAX.
    return args[0] if upstream is None else upstream


@ops.custom_gradient
def _sigmoid_xent(y: Tensor, x: Tensor) -> tuple[Tensor, Callable[..., tuple[Tensor, Tensor]]]:
    """`_logistic_loss`, with the gradient (-x, sigmoid(x) - y) in closed form.

    Autodiff through the stable form chains the derivatives of max, abs, exp and log1p, each its own
    kernel with `tf.function`; the closed form is two ops (`make bench`, section losses).
    """
    value = _logistic_loss(y, x, ops.exp(-ops.abs(x)))

    def grad(*args: Tensor, upstream: Tensor | None = None) -> tuple[Tensor, Tensor]:
        g = _upstream(args, upstream)
        return -g * x, g * (ops.sigmoid(x) - y)

    return value, grad


def binary_focal_terms(y: Tensor, x: Tensor, gamma: float) -> Tensor:
    """Element-wise (1 - p_t)^gamma * bce from logits x, for a numeric gamma >= 1 (`power_is_safe`),
    with the gradient written out, except under XLA (below).

    With s = sigmoid(x), F = 1 - p_t = y (1 - s) + (1 - y) s and b the cross-entropy: dF/dx = (1 - 2y) s (1 - s),
    db/dx = s - y, so d(F^gamma b)/dx = gamma F^(gamma - 1) (1 - 2y) s (1 - s) b + F^gamma (s - y), finite for
    any finite x since gamma >= 1; likewise for y (dF/dy = 1 - 2s, db/dy = -x).

    Under XLA autodiff is left to derive it: it reuses exp(-|x|), where the two sigmoids of the written-out
    form are two more exps that XLA keeps (1.16x the built-in at one output, against 0.98x; `make bench`).
    """
    if xla_compiles():
        b, e = _logistic_loss_for_xla(y, x)
        numerator, e = _binary_1m_pt_parts(y, x, e)
        return ops.power(numerator / (1.0 + e), gamma) * b

    @ops.custom_gradient
    def focal(y: Tensor, x: Tensor) -> tuple[Tensor, Callable[..., tuple[Tensor, Tensor]]]:
        numerator, e = _binary_1m_pt_parts(y, x)
        f = numerator / (1.0 + e)
        b = _logistic_loss(y, x, e)
        f_gamma = ops.power(f, gamma)

        def grad(*args: Tensor, upstream: Tensor | None = None) -> tuple[Tensor, Tensor]:
            g = _upstream(args, upstream)
            s = ops.sigmoid(x)
            slope = gamma * ops.power(f, gamma - 1.0) * b  # d(F^gamma b)/dF
            return (
                g * (slope * (1.0 - 2.0 * s) - f_gamma * x),
                g * (slope * (1.0 - 2.0 * y) * s * ops.sigmoid(-x) + f_gamma * (s - y)),
            )

        return f_gamma * b, grad

    return focal(y, x)


def _binary_1m_pt_parts(y: Tensor, y_pred: Tensor, e: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """From logits x: (w + (1 - w) e, e) with e = exp(-|x|) (computed if not given) and w the label weight of
    the class the sign of x favours (1 - y if x > 0, else y), so that 1 - p_t = (w + (1 - w) e) / (1 + e)
    without cancellation. The graph optimizers (Grappler, XLA) compute e once with the cross-entropy's."""
    e = ops.exp(-ops.abs(y_pred)) if e is None else e
    w = ops.where(y_pred > 0, 1.0 - y, y)
    return w + (1.0 - w) * e, e


def binary_1m_pt(y: Tensor, y_pred: Tensor, from_logits: bool) -> Tensor:
    """1 - p_t with p_t = y p + (1 - y)(1 - p) (probabilities clipped to [epsilon, 1 - epsilon])."""
    if not from_logits:
        p = clip_probs(y_pred)
        return y * (1.0 - p) + (1.0 - y) * p
    numerator, e = _binary_1m_pt_parts(y, y_pred)
    return numerator / (1.0 + e)


def binary_log1m_pt(y: Tensor, y_pred: Tensor, from_logits: bool) -> Tensor:
    """log(1 - p_t), finite with finite gradients for any finite logits.

    Clipped probabilities give 1 - p_t >= epsilon. From logits the numerator of `_binary_1m_pt_parts`
    is floored at the smallest normal float: it is below that only where w = 0 and |x| > 87, where the
    focal term (1 - p_t)^gamma * bce and its gradient are below 1e-38 either way (bce = log(1 + e) there).
    """
    if not from_logits:
        return ops.log(binary_1m_pt(y, y_pred, from_logits))
    numerator, e = _binary_1m_pt_parts(y, y_pred)
    return ops.log(ops.maximum(numerator, _TINY)) - ops.log1p(e)


def renormalized_probs(y_pred: Tensor, axis: int) -> Tensor:
    # As Keras: rows are rescaled to sum to 1, then clipped.
    return clip_probs(y_pred / ops.sum(y_pred, axis=axis, keepdims=True))


def categorical_log_probs(y_pred: Tensor, from_logits: bool, axis: int) -> Tensor:
    """log p per class: log-softmax of logits, or the log of the renormalized, clipped probabilities."""
    if from_logits:
        return ops.log_softmax(y_pred, axis=axis)
    return ops.log(renormalized_probs(y_pred, axis))


def _categorical_top_split(log_p: Tensor, axis: int) -> tuple[Tensor, Tensor, Tensor]:
    """(p, whether p > 1/2, 1 - p of that class as the sum of the other classes' p): at most one class
    per sample has p > 1/2, and summing the others has no cancellation where p is close to 1."""
    p = ops.exp(log_p)
    top = p > 0.5
    rest = ops.where(top, 0.0, p)
    return rest, top, ops.sum(rest, axis=axis, keepdims=True)


def categorical_1m_probs(y_pred: Tensor, from_logits: bool, axis: int, log_p: Tensor | None = None) -> Tensor:
    """1 - p per class, without cancellation for the class with p > 1/2 (see `categorical_log1m_probs`)."""
    if not from_logits:
        return 1.0 - renormalized_probs(y_pred, axis)
    rest, top, others = _categorical_top_split(ops.log_softmax(y_pred, axis=axis) if log_p is None else log_p, axis)
    return ops.where(top, others, 1.0 - rest)


def categorical_log1m_probs(y_pred: Tensor, from_logits: bool, axis: int, log_p: Tensor | None = None) -> Tensor:
    """log(1 - p) per class, finite and with finite gradients for any finite logits.

    From logits, with p = exp(log_p) (`log_p`: their log-softmax, computed here if not given): a class
    with p > 1/2 (at most one per sample) gets 1 - p as the sum of the other classes' p, which has no
    cancellation, floored at the smallest normal float (below it (1 - p)^gamma * log p is 0 in float32
    anyway); every other class has p <= 1/2, where log1p(-p) is accurate.
    """
    if not from_logits:
        return ops.log(categorical_1m_probs(y_pred, from_logits, axis))
    # p is zeroed where p > 1/2 before log1p: log1p(-1) = -inf in the unused branch of `where` would
    # make its gradient NaN.
    rest, top, others = _categorical_top_split(ops.log_softmax(y_pred, axis=axis) if log_p is None else log_p, axis)
    return ops.where(top, ops.log(ops.maximum(others, _TINY)), ops.log1p(-rest))


def _softmax_parts(z: Tensor, axis: int) -> tuple[Tensor, Tensor, Tensor]:
    """(z - max, exp(z - max), their sum along `axis`): softmax is exps / total and -log softmax is
    log(total) - shifted; not exp(z - logsumexp(z)) nor logsumexp - z: at logits of 1e4, max + log(total) rounds."""
    shifted = z - ops.max(z, axis=axis, keepdims=True)
    exps = ops.exp(shifted)
    return shifted, exps, ops.sum(exps, axis=axis, keepdims=True)


def categorical_xent_from_logits(y: Tensor, z: Tensor, axis: int) -> Tensor:
    """-sum_k y_k log softmax(z)_k per sample, with the gradients (-log softmax(z), softmax(z) sum_k y_k - y)
    written out.

    The backend's fused kernel (`tf.nn.softmax_cross_entropy_with_logits`, the built-in's) makes more passes
    over the logits than these few element-wise ops, with `tf.function` and under XLA alike (`make bench`).
    Its gradient is softmax - y, which is the gradient only for labels that sum to 1; this one is exact for
    any soft labels.
    """

    @ops.custom_gradient
    def xent(y: Tensor, z: Tensor) -> tuple[Tensor, Callable[..., tuple[Tensor, Tensor]]]:
        shifted, exps, total = _softmax_parts(z, axis)
        nll = ops.log(total) - shifted

        def grad(*args: Tensor, upstream: Tensor | None = None) -> tuple[Tensor, Tensor]:
            g = ops.expand_dims(_upstream(args, upstream), axis)
            return g * nll, g * (exps * (ops.sum(y, axis=axis, keepdims=True) / total) - y)

        return ops.sum(y * nll, axis=axis), grad

    return xent(y, z)


def sparse_xent_from_logits(index: Tensor, z: Tensor, axis: int, label_smoothing: float) -> Tensor:
    """-(1 - ls) log p[label] - ls mean_k(log p) per sample from logits z: `categorical_xent_from_logits` of
    the smoothed one-hot label, with its gradient softmax(z) - y_s written out.

    `index`: the labels with `axis` kept (size 1), valid indices. A one-hot label rather than a gather:
    autodiff through the gather builds the one-hot scatter of its gradient anyway, and `ops.take_along_axis`
    is a dozen shape ops per call on TensorFlow, which is what a training step of a small batch pays for.
    """
    num_classes = ops.shape(z)[axis]
    target = ops.one_hot(ops.squeeze(index, axis=axis), num_classes, axis=axis, dtype=z.dtype)
    if label_smoothing:
        target = target * (1.0 - label_smoothing) + label_smoothing / ops.cast(num_classes, z.dtype)
    if not xla_compiles():
        return categorical_xent_from_logits(target, z, axis)

    # XLA makes the gather one load per sample, where the one-hot product is k (1.14x the built-in, against 0.79x).
    @ops.custom_gradient
    def xent(z: Tensor) -> tuple[Tensor, Callable[..., Tensor]]:
        shifted, exps, total = _softmax_parts(z, axis)
        value = ops.log(total) - (1.0 - label_smoothing) * ops.take_along_axis(shifted, index, axis=axis)
        if label_smoothing:
            value = value - label_smoothing * ops.mean(shifted, axis=axis, keepdims=True)

        def grad(*args: Tensor, upstream: Tensor | None = None) -> Tensor:
            return ops.expand_dims(_upstream(args, upstream), axis) * (exps / total - target)

        return ops.squeeze(value, axis=axis), grad

    return xent(z)


def power_is_safe(gamma: float | str) -> bool:
    """Whether (1 - p)^gamma may be a plain power of a constant: its gradient gamma (1 - p)^(gamma - 1)
    is finite at 1 - p = 0 for gamma >= 1, and Grappler and XLA turn gamma = 2 into a multiplication,
    as for Keras' own focal losses. Below 1, and for flsd53 (a per-sample exponent, for which a power
    is no faster and less exact), see `focal_factor`."""
    return gamma != FLSD53 and gamma >= 1


def focal_factor(log_1m_p: Tensor, gamma: float | str, p_true: Tensor | None) -> Tensor:
    """(1 - p)^gamma as exp(gamma * log(1 - p)): finite with finite gradients even where 1 - p = 0, for
    any gamma >= 0 (for gamma >= 1 a plain power is too: see `power_is_safe`).

    With gamma="flsd53" the exponent is 5 where the true-class probability `p_true` < 0.2, else 3;
    `p_true` is a constant for the gradient, as in Mukhoti et al.'s code.
    """
    if gamma == FLSD53:
        gamma = ops.cast(ops.where(ops.stop_gradient(p_true) < 0.2, 5.0, 3.0), log_1m_p.dtype)
    return ops.exp(gamma * log_1m_p)
