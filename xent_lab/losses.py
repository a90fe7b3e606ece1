"""The project's own cross-entropy and focal losses, and information-theory helpers.

Drop-in replacements for the Keras classes of the same names (same constructor arguments, names,
order and defaults as Keras 3), written with `keras.ops` and registered for `.keras` saving under
the package "xent_lab":

- `BinaryCrossentropy`, `CategoricalCrossentropy`, `SparseCategoricalCrossentropy`
- `BinaryFocalCrossentropy`, `CategoricalFocalCrossentropy`

Where they differ from Keras (each class docstring has the details):

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

The helpers `entropy`, `cross_entropy`, `kl_divergence`, `smoothed_targets` and
`loss_decomposition` work on NumPy arrays (float64, natural logarithms: nats).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops
from scipy import special

# Keras has no public API for these two; they keep the Keras semantics exactly (rank alignment of
# y_true/y_pred, and the loss mask through which `ignore_class` reaches the reduction).
from keras.src.backend import set_keras_mask
from keras.src.losses.loss import squeeze_or_expand_to_same_rank

try:  # TensorFlow is only used for value assertions; without it those checks NaN-poison instead.
    import tensorflow as tf
except ImportError:  # pragma: no cover - other Keras backends
    tf = None

Tensor = Any

FLSD53 = "flsd53"
"""`gamma` value selecting the sample-dependent gamma of Mukhoti et al. 2020 (FLSD-53)."""

# ----------------------------------------------------------------------------------------------
# Shared machinery
# ----------------------------------------------------------------------------------------------


def _smooth_labels(y: Any, label_smoothing: float, num_classes: Any) -> Any:
    """y * (1 - ls) + ls / num_classes: Keras' categorical smoothing; num_classes=2 is its binary one."""
    if not label_smoothing:
        return y
    return y * (1.0 - label_smoothing) + label_smoothing / num_classes


def _clip_probs(p: Tensor) -> Tensor:
    eps = keras.config.epsilon()
    return ops.clip(p, eps, 1.0 - eps)


def _binary_log_probs(y_pred: Tensor, from_logits: bool) -> tuple[Tensor, Tensor]:
    """(log p, log(1 - p)) of the positive class, from logits without ever taking log(sigmoid)."""
    if from_logits:
        return ops.log_sigmoid(y_pred), ops.log_sigmoid(-y_pred)
    p = _clip_probs(y_pred)
    return ops.log(p), ops.log(1.0 - p)


def _renormalized_probs(y_pred: Tensor, axis: int) -> Tensor:
    # As Keras: rows are rescaled to sum to 1, then clipped.
    return _clip_probs(y_pred / ops.sum(y_pred, axis=axis, keepdims=True))


def _categorical_log_probs(y_pred: Tensor, from_logits: bool, axis: int) -> Tensor:
    """log p per class: log-softmax of logits, or the log of the renormalized, clipped probabilities."""
    if from_logits:
        return ops.log_softmax(y_pred, axis=axis)
    return ops.log(_renormalized_probs(y_pred, axis))


def _categorical_log1m_probs(y_pred: Tensor, from_logits: bool, axis: int) -> Tensor:
    """log(1 - p) per class, finite and with finite gradients for any finite logits.

    For the arg-max class 1 - p can underflow, so it is computed as logsumexp(other logits) -
    logsumexp(all logits); every other class has p <= 1/2, where log1p(-p) is accurate.
    """
    if not from_logits:
        return ops.log(1.0 - _renormalized_probs(y_pred, axis))
    num_classes = ops.shape(y_pred)[axis]
    is_max = ops.cast(ops.one_hot(ops.argmax(y_pred, axis=axis), num_classes, axis=axis), "bool")
    log_total = ops.logsumexp(y_pred, axis=axis, keepdims=True)
    log_others = ops.logsumexp(ops.where(is_max, -math.inf, y_pred), axis=axis, keepdims=True)
    # Zero the arg-max entry before log1p: a -inf in the unused branch of `where` would make its
    # gradient NaN.
    p_rest = ops.where(is_max, 0.0, ops.exp(y_pred - log_total))
    return ops.where(is_max, log_others - log_total, ops.log1p(-p_rest))


def _log_or_neg_inf(x: Tensor) -> Tensor:
    """log(x) with log(0) = -inf, keeping the gradient w.r.t. x finite (double-where trick)."""
    positive = x > 0
    return ops.where(positive, ops.log(ops.where(positive, x, 1.0)), -math.inf)


def _focal_factor(log_1m_p: Tensor, gamma: float | str, p_true: Tensor | None) -> Tensor:
    """(1 - p)^gamma as exp(gamma * log(1 - p)): finite with finite gradients even where 1 - p = 0.

    With gamma="flsd53" the exponent is 5 where the true-class probability `p_true` < 0.2, else 3;
    `p_true` is a constant for the gradient, as in Mukhoti et al.'s code.
    """
    if gamma == FLSD53:
        gamma = ops.cast(ops.where(ops.stop_gradient(p_true) < 0.2, 5.0, 3.0), log_1m_p.dtype)
    return ops.exp(gamma * log_1m_p)


def _prepare(y_true: Tensor, y_pred: Tensor, from_logits: bool) -> tuple[Tensor, Tensor, bool]:
    """(y_true, y_pred, from_logits) as tensors of one float dtype, ready for the loss."""
    # Keras hands nested lists over leaf by leaf; softmax/sigmoid outputs carry their logits, which
    # Keras' own cross-entropies use instead.
    logits = getattr(y_pred, "_keras_logits", None)
    if logits is not None:
        if from_logits:
            warnings.warn(
                "`from_logits=True`, but y_pred is the output of a softmax/sigmoid activation; "
                "using the logits before that activation.",
                stacklevel=3,
            )
        y_pred, from_logits = logits, True
    y_pred = ops.convert_to_tensor(y_pred)
    # Half precision is computed in float32: there 1 - epsilon rounds to 1 and the gradient 1/p of
    # log(p) overflows for p < 1.5e-5, which gives NaN gradients (Keras computes in half precision).
    if keras.backend.standardize_dtype(y_pred.dtype) in ("float16", "bfloat16"):
        y_pred = ops.cast(y_pred, "float32")
    return ops.cast(y_true, y_pred.dtype), y_pred, from_logits


def _guard(loss: Tensor, ok: Tensor, message: str, values: Tensor) -> Tensor:
    """`loss`, with an error if `ok` (shaped like `loss`) is False anywhere.

    TensorFlow eager / tf.function: InvalidArgumentError(message). XLA drops the assertion and other
    backends have none, so the offending samples' losses are also set to NaN: loud, never wrong.
    """
    if tf is not None and keras.backend.backend() == "tensorflow":
        summary = [message, "Received min:", ops.min(values), "max:", ops.max(values)]
        with tf.control_dependencies([tf.debugging.Assert(ops.all(ok), summary)]):
            loss = tf.identity(loss)
    return ops.where(ok, loss, math.nan)


def _guard_probabilities(loss: Tensor, y_pred: Tensor, axis: int) -> Tensor:
    # NaN predictions pass (they are a training failure, reported as a NaN loss like in Keras).
    in_range = ops.logical_not(ops.logical_or(y_pred < 0, y_pred > 1))
    return _guard(
        loss,
        ops.all(in_range, axis=axis),
        "y_pred must be probabilities in [0, 1] when from_logits=False (pass from_logits=True for logits).",
        y_pred,
    )


def _compatible(shape_a: Sequence[int | None], shape_b: Sequence[int | None]) -> bool:
    return len(shape_a) == len(shape_b) and all(
        a is None or b is None or a == b for a, b in zip(shape_a, shape_b)
    )


def _aligned(y_true: Tensor, y_pred: Tensor, who: str) -> tuple[Tensor, Tensor]:
    """Keras' rank alignment (a trailing 1 may be missing on either side), then equal shapes."""
    y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
    if not _compatible(y_true.shape, y_pred.shape):
        raise ValueError(
            f"{who}: y_true and y_pred must have the same shape. "
            f"Received y_true.shape={tuple(y_true.shape)}, y_pred.shape={tuple(y_pred.shape)}."
        )
    return y_true, y_pred


def _class_axis(y_pred: Tensor, axis: int, who: str) -> tuple[int, Any]:
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


def _check_label_smoothing(label_smoothing: float) -> None:
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1]. Received: label_smoothing={label_smoothing}")


def _check_gamma(gamma: float | str) -> None:
    if isinstance(gamma, str):
        if gamma != FLSD53:
            raise ValueError(f"gamma must be a number >= 0 or {FLSD53!r}. Received: gamma={gamma!r}")
    elif not gamma >= 0:  # also rejects NaN
        raise ValueError(f"gamma must be a number >= 0 or {FLSD53!r}. Received: gamma={gamma!r}")


class _Crossentropy(keras.losses.Loss):
    """Arguments and config shared by all the losses here."""

    def __init__(
        self,
        *,
        from_logits: bool,
        label_smoothing: float,
        axis: int,
        reduction: str | None,
        name: str,
        dtype: Any,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        _check_label_smoothing(label_smoothing)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise ValueError(f"axis must be an int. Received: axis={axis!r}")
        self.from_logits = from_logits
        self.label_smoothing = label_smoothing
        self.axis = int(axis)

    def get_config(self) -> dict[str, Any]:
        # Keras' own configs leave out dtype; it is kept here so that a round trip restores it.
        return {
            **super().get_config(),
            "dtype": self._dtype_policy.name,
            "from_logits": self.from_logits,
            "label_smoothing": self.label_smoothing,
            "axis": self.axis,
        }


class _BinaryLoss(_Crossentropy):
    """Element-wise binary cross-entropy terms, averaged over `axis`; subclasses may reweight them."""

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        y_true, y_pred, from_logits = _prepare(y_true, y_pred, self.from_logits)
        y_true, y_pred = _aligned(y_true, y_pred, type(self).__name__)
        log_p, log_q = _binary_log_probs(y_pred, from_logits)
        targets = _smooth_labels(y_true, self.label_smoothing, 2)
        terms = -(targets * log_p + (1.0 - targets) * log_q)
        loss = ops.mean(self._reweight(terms, y_true, targets, log_p, log_q), axis=self.axis)
        if not from_logits:
            loss = _guard_probabilities(loss, y_pred, self.axis)
        return ops.cast(loss, self.dtype)

    def _reweight(self, terms: Tensor, y_true: Tensor, targets: Tensor, log_p: Tensor, log_q: Tensor) -> Tensor:
        return terms


class _CategoricalLoss(_Crossentropy):
    """Per-class terms -y_s * log p, summed over the class axis; subclasses may reweight them."""

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        y_true, y_pred, from_logits = _prepare(y_true, y_pred, self.from_logits)
        y_true, y_pred = _aligned(y_true, y_pred, type(self).__name__)
        axis, num_classes = _class_axis(y_pred, self.axis, type(self).__name__)
        log_p = _categorical_log_probs(y_pred, from_logits, axis)
        targets = _smooth_labels(y_true, self.label_smoothing, ops.cast(num_classes, y_pred.dtype))
        terms = self._reweight(-targets * log_p, y_true, y_pred, from_logits, log_p, axis)
        loss = ops.sum(terms, axis=axis)
        if not from_logits:
            loss = _guard_probabilities(loss, y_pred, axis)
        return ops.cast(loss, self.dtype)

    def _reweight(
        self, terms: Tensor, y_true: Tensor, y_pred: Tensor, from_logits: bool, log_p: Tensor, axis: int
    ) -> Tensor:
        return terms


# ----------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="xent_lab")
class BinaryCrossentropy(_BinaryLoss):
    """Computes the binary cross-entropy between labels and predictions.

    With p the predicted probability of the positive class (`sigmoid(y_pred)` when
    `from_logits=True`) and smoothed targets `y_s = y_true * (1 - label_smoothing) + 0.5 *
    label_smoothing`:

    `loss = mean_over_axis(-(y_s * log(p) + (1 - y_s) * log(1 - p)))`

    The same as `keras.losses.BinaryCrossentropy`: from logits `log(p) = log_sigmoid(y_pred)` and
    `log(1 - p) = log_sigmoid(-y_pred)`; probabilities are clipped to `[epsilon, 1 - epsilon]`.

    Args:
        from_logits: Whether `y_pred` holds logits. Defaults to `False` (probabilities in [0, 1]).
        label_smoothing: Float in [0, 1]; when > 0 the labels are squeezed towards 0.5.
            Defaults to `0.0`.
        axis: The axis along which the mean is computed. Defaults to `-1`.
        reduction: `"sum_over_batch_size"` (default), `"sum"`, `"mean"`,
            `"mean_with_sample_weight"`, `"none"` or `None`, as for `keras.losses.Loss`.
        name: Name of the loss instance. Defaults to `"binary_crossentropy"`.
        dtype: Dtype of the loss's computations. Defaults to `None`: `keras.config.floatx()`.

    Differs from Keras only in validation (mismatched shapes raise ValueError; probabilities outside
    [0, 1] are an error) and in computing float16 in float32 (see the module docstring).
    """

    def __init__(
        self,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "binary_crossentropy",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
            reduction=reduction,
            name=name,
            dtype=dtype,
        )


@keras.saving.register_keras_serializable(package="xent_lab")
class BinaryFocalCrossentropy(_BinaryLoss):
    """Computes the focal cross-entropy between binary labels and predictions (Lin et al., 2018).

    With p, y_s as in `BinaryCrossentropy` and `p_t = y_s * p + (1 - y_s) * (1 - p)`:

    `loss = mean_over_axis(w * (1 - p_t) ** gamma * bce)`, where `bce` is the element-wise binary
    cross-entropy and `w = y_s * alpha + (1 - y_s) * (1 - alpha)` if `apply_class_balancing`, else 1.
    `gamma=0` without class balancing is the binary cross-entropy.

    The same as `keras.losses.BinaryFocalCrossentropy` (including that `alpha` is ignored unless
    `apply_class_balancing=True`), except that the focal factor is computed as
    `exp(gamma * log(1 - p_t))` with `log(1 - p_t)` from log-sigmoids, which keeps loss and gradient
    finite for large logits (Keras' gradient is NaN there for gamma < 1), that on the probability
    path it uses the clipped probabilities, and the validation described in the module docstring.

    Args:
        apply_class_balancing: Whether to weight class 1 by `alpha` and class 0 by `1 - alpha`.
            Defaults to `False`.
        alpha: Weight of class 1 when `apply_class_balancing=True`. Defaults to `0.25`.
        gamma: Focusing parameter, a number >= 0, or `"flsd53"`: 5 where the probability of the
            (unsmoothed) true label is < 0.2, else 3 (Mukhoti et al., 2020; that probability is
            treated as a constant for the gradient). Defaults to `2.0`.
        from_logits: Whether `y_pred` holds logits. Defaults to `False` (probabilities in [0, 1]).
        label_smoothing: Float in [0, 1]; when > 0 the labels are squeezed towards 0.5.
            Defaults to `0.0`.
        axis: The axis along which the mean is computed. Defaults to `-1`.
        reduction: `"sum_over_batch_size"` (default), `"sum"`, `"mean"`,
            `"mean_with_sample_weight"`, `"none"` or `None`, as for `keras.losses.Loss`.
        name: Name of the loss instance. Defaults to `"binary_focal_crossentropy"`.
        dtype: Dtype of the loss's computations. Defaults to `None`: `keras.config.floatx()`.
    """

    def __init__(
        self,
        apply_class_balancing: bool = False,
        alpha: float = 0.25,
        gamma: float | str = 2.0,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "binary_focal_crossentropy",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
            reduction=reduction,
            name=name,
            dtype=dtype,
        )
        _check_gamma(gamma)
        self.apply_class_balancing = apply_class_balancing
        self.alpha = alpha
        self.gamma = gamma

    def _reweight(self, terms: Tensor, y_true: Tensor, targets: Tensor, log_p: Tensor, log_q: Tensor) -> Tensor:
        # log(1 - p_t) = log(y_s * (1 - p) + (1 - y_s) * p), in log space so that it stays finite
        # where 1 - p_t underflows (hard labels and large logits).
        log_1m_pt = ops.logaddexp(_log_or_neg_inf(targets) + log_q, _log_or_neg_inf(1.0 - targets) + log_p)
        p_true = y_true * ops.exp(log_p) + (1.0 - y_true) * ops.exp(log_q) if self.gamma == FLSD53 else None
        terms = _focal_factor(log_1m_pt, self.gamma, p_true) * terms
        if self.apply_class_balancing:
            terms = (targets * self.alpha + (1.0 - targets) * (1.0 - self.alpha)) * terms
        return terms

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "apply_class_balancing": self.apply_class_balancing,
            "alpha": self.alpha,
            "gamma": self.gamma,
        }


@keras.saving.register_keras_serializable(package="xent_lab")
class CategoricalCrossentropy(_CategoricalLoss):
    """Computes the cross-entropy between one-hot (or soft) labels and predicted distributions.

    With k classes along `axis`, p the predicted distribution (`softmax(y_pred)` when
    `from_logits=True`) and smoothed targets `y_s = y_true * (1 - label_smoothing) +
    label_smoothing / k`:

    `loss = -sum_over_axis(y_s * log(p))`

    The same as `keras.losses.CategoricalCrossentropy`: from logits `log(p) = log_softmax(y_pred)`;
    probabilities are rescaled to sum to 1 along `axis`, then clipped to `[epsilon, 1 - epsilon]`.

    Args:
        from_logits: Whether `y_pred` holds logits. Defaults to `False` (probabilities).
        label_smoothing: Float in [0, 1]; when > 0 the targets become
            `y_true * (1 - label_smoothing) + label_smoothing / k`. Defaults to `0.0`.
        axis: The class axis. Defaults to `-1`.
        reduction: `"sum_over_batch_size"` (default), `"sum"`, `"mean"`,
            `"mean_with_sample_weight"`, `"none"` or `None`, as for `keras.losses.Loss`.
        name: Name of the loss instance. Defaults to `"categorical_crossentropy"`.
        dtype: Dtype of the loss's computations. Defaults to `None`: `keras.config.floatx()`.

    Differences from Keras: k is read along `axis` (Keras uses the last axis for smoothing);
    a single class (always 0) raises ValueError (Keras warns); mismatched shapes raise ValueError;
    probability entries outside [0, 1] are an error (Keras silently rescales any non-negative scores).
    """

    def __init__(
        self,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "categorical_crossentropy",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
            reduction=reduction,
            name=name,
            dtype=dtype,
        )


@keras.saving.register_keras_serializable(package="xent_lab")
class CategoricalFocalCrossentropy(_CategoricalLoss):
    """Computes the alpha-balanced focal cross-entropy between one-hot labels and predictions.

    With p, y_s and k as in `CategoricalCrossentropy` (Lin et al., 2018):

    `loss = -sum_over_axis(alpha * (1 - p) ** gamma * y_s * log(p))`

    Every class term gets its own factor `(1 - p_c) ** gamma` and `alpha` (a scalar, or one weight
    per class) multiplies every term, as in `keras.losses.CategoricalFocalCrossentropy`.
    `gamma=0, alpha=1` is the categorical cross-entropy.

    Differences from Keras: from logits, `log(p)` is a log-softmax and `log(1 - p)` is computed from
    the logits without cancellation, so values keep growing (and gradients stay non-zero) where Keras
    clips the softmax output to `[epsilon, 1 - epsilon]`; results agree wherever Keras' probabilities
    are inside that range. A per-class `alpha` is aligned with `axis` (Keras broadcasts it against
    the last axis); plus the validation and `gamma="flsd53"` described below.

    Args:
        alpha: Scalar weight of every term, or a list of one weight per class. Defaults to `0.25`.
        gamma: Focusing parameter, a number >= 0, or `"flsd53"`: 5 for samples whose true-class
            probability (of the unsmoothed label) is < 0.2, else 3 (Mukhoti et al., 2020; that
            probability is treated as a constant for the gradient). Defaults to `2.0`.
        from_logits: Whether `y_pred` holds logits. Defaults to `False` (probabilities).
        label_smoothing: Float in [0, 1]; when > 0 the targets become
            `y_true * (1 - label_smoothing) + label_smoothing / k`. Defaults to `0.0`.
        axis: The class axis. Defaults to `-1`.
        reduction: `"sum_over_batch_size"` (default), `"sum"`, `"mean"`,
            `"mean_with_sample_weight"`, `"none"` or `None`, as for `keras.losses.Loss`.
        name: Name of the loss instance. Defaults to `"categorical_focal_crossentropy"`.
        dtype: Dtype of the loss's computations. Defaults to `None`: `keras.config.floatx()`.
    """

    def __init__(
        self,
        alpha: float | Sequence[float] = 0.25,
        gamma: float | str = 2.0,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "categorical_focal_crossentropy",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
            reduction=reduction,
            name=name,
            dtype=dtype,
        )
        _check_gamma(gamma)
        # Plain floats / a list of floats keep the config JSON-serializable.
        self.alpha = [float(a) for a in alpha] if np.ndim(alpha) == 1 else float(alpha)
        self.gamma = gamma

    def _reweight(
        self, terms: Tensor, y_true: Tensor, y_pred: Tensor, from_logits: bool, log_p: Tensor, axis: int
    ) -> Tensor:
        log_1m_p = _categorical_log1m_probs(y_pred, from_logits, axis)
        p_true = ops.sum(y_true * ops.exp(log_p), axis=axis, keepdims=True) if self.gamma == FLSD53 else None
        return self._alpha(terms, axis) * _focal_factor(log_1m_p, self.gamma, p_true) * terms

    def _alpha(self, terms: Tensor, axis: int) -> Any:
        if not isinstance(self.alpha, list):
            return self.alpha
        num_classes = terms.shape[axis]
        if num_classes is not None and num_classes != len(self.alpha):
            raise ValueError(
                f"CategoricalFocalCrossentropy: alpha has {len(self.alpha)} weights but y_pred has "
                f"{num_classes} classes along axis {axis}."
            )
        shape = [1] * len(terms.shape)
        shape[axis] = len(self.alpha)
        return ops.reshape(ops.convert_to_tensor(self.alpha, dtype=terms.dtype), shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "alpha": self.alpha, "gamma": self.gamma}


@keras.saving.register_keras_serializable(package="xent_lab")
class SparseCategoricalCrossentropy(_Crossentropy):
    """Computes the cross-entropy between integer labels and predicted distributions.

    With k classes along `axis`, p the predicted distribution and smoothed targets
    `y_s = one_hot(y_true) * (1 - label_smoothing) + label_smoothing / k`:

    `loss = -sum_over_axis(y_s * log(p)) = -(1 - label_smoothing) * log(p[y_true])
    - label_smoothing * mean_over_axis(log(p))`

    i.e. exactly `CategoricalCrossentropy` on `one_hot(y_true)`. Without label smoothing, the same as
    `keras.losses.SparseCategoricalCrossentropy`, including `ignore_class` (those entries get loss 0
    and are masked out of the reduction).

    Args:
        from_logits: Whether `y_pred` holds logits. Defaults to `False` (probabilities).
        ignore_class: Optional integer label to leave out of the loss (e.g. a "void" class such as
            -1 or 255 in segmentation maps). Defaults to `None`.
        reduction: `"sum_over_batch_size"` (default), `"sum"`, `"mean"`,
            `"mean_with_sample_weight"`, `"none"` or `None`, as for `keras.losses.Loss`.
        axis: The class axis of `y_pred`. Defaults to `-1`.
        name: Name of the loss instance. Defaults to `"sparse_categorical_crossentropy"`.
        dtype: Dtype of the loss's computations. Defaults to `None`: `keras.config.floatx()`.
        label_smoothing: Float in [0, 1], as for `CategoricalCrossentropy` (not in Keras; last so
            that Keras' positional arguments keep their places). Defaults to `0.0`.

    `y_true` has the shape of `y_pred` without the class axis, or with size 1 there. Differences from
    Keras: `label_smoothing`; any `axis` (Keras' TensorFlow backend supports only the last);
    probabilities are rescaled and clipped as in `CategoricalCrossentropy` (Keras clips, then
    rescales: the two differ by O(k * epsilon) where a probability is below epsilon); labels that
    are not integers in [0, k) are an error on every device (Keras: on CPU; NaN on GPU).
    """

    def __init__(
        self,
        from_logits: bool = False,
        ignore_class: int | None = None,
        reduction: str | None = "sum_over_batch_size",
        axis: int = -1,
        name: str = "sparse_categorical_crossentropy",
        dtype: Any = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
            reduction=reduction,
            name=name,
            dtype=dtype,
        )
        self.ignore_class = ignore_class

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        who = type(self).__name__
        y_true, y_pred, from_logits = _prepare(y_true, y_pred, self.from_logits)
        axis, num_classes = _class_axis(y_pred, self.axis, who)
        labels = self._labels(y_true, y_pred, axis, who)
        log_p = _categorical_log_probs(y_pred, from_logits, axis)

        valid = ops.logical_and(
            ops.logical_and(labels >= 0, labels < ops.cast(num_classes, labels.dtype)),
            ops.equal(labels, ops.floor(labels)),
        )
        ignored = ops.equal(labels, self.ignore_class) if self.ignore_class is not None else None
        used = valid if ignored is None else ops.logical_and(valid, ops.logical_not(ignored))
        # Invalid or ignored labels index class 0, so the gather never goes out of range.
        index = ops.expand_dims(ops.cast(ops.where(used, labels, 0), "int32"), axis)
        loss = -ops.squeeze(ops.take_along_axis(log_p, index, axis=axis), axis=axis)
        if self.label_smoothing:
            loss = (1.0 - self.label_smoothing) * loss - self.label_smoothing * ops.mean(log_p, axis=axis)

        loss = _guard(
            loss,
            valid if ignored is None else ops.logical_or(valid, ignored),
            f"{who}: labels must be integers in [0, num_classes) (num_classes = y_pred.shape[axis]).",
            labels,
        )
        if not from_logits:
            loss = _guard_probabilities(loss, y_pred, axis)
        if ignored is None:
            return ops.cast(loss, self.dtype)
        loss = ops.cast(ops.where(ignored, 0.0, loss), self.dtype)
        set_keras_mask(loss, ops.logical_not(ignored))
        return loss

    @staticmethod
    def _labels(y_true: Tensor, y_pred: Tensor, axis: int, who: str) -> Tensor:
        """Labels shaped like y_pred without the class axis (a size-1 class axis is squeezed)."""
        if len(y_true.shape) == len(y_pred.shape) and y_true.shape[axis] in (1, None):
            y_true = ops.squeeze(y_true, axis=axis)
        expected = tuple(y_pred.shape[:axis]) + tuple(y_pred.shape[axis + 1 :])
        if not _compatible(y_true.shape, expected):
            raise ValueError(
                f"{who}: y_true must have the shape of y_pred without the class axis {axis} "
                f"(or with size 1 there). Received y_true.shape={tuple(y_true.shape)}, "
                f"y_pred.shape={tuple(y_pred.shape)}."
            )
        return y_true

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "ignore_class": self.ignore_class}


# ----------------------------------------------------------------------------------------------
# Information-theory helpers (NumPy, float64, nats)
# ----------------------------------------------------------------------------------------------


def entropy(p: Any, axis: int = -1) -> np.ndarray:
    """H(p) = -sum p log p along `axis` (0 log 0 = 0): one value per distribution."""
    p = np.asarray(p, dtype=np.float64)
    return -np.sum(special.xlogy(p, p), axis=axis)


def cross_entropy(p: Any, q: Any, axis: int = -1) -> np.ndarray:
    """H(p, q) = -sum p log q along `axis` (0 log q = 0; inf where q = 0 < p)."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    return -np.sum(special.xlogy(p, q), axis=axis)


def kl_divergence(p: Any, q: Any, axis: int = -1) -> np.ndarray:
    """KL(p || q) = sum p log(p / q) along `axis` (0 log 0 = 0; inf where q = 0 < p)."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    return np.sum(special.rel_entr(p, q), axis=axis)


def smoothed_targets(labels: Any, num_classes: int, label_smoothing: float = 0.0) -> np.ndarray:
    """Integer labels (n,) -> the (n, num_classes) targets the categorical losses train towards.

    `one_hot * (1 - label_smoothing) + label_smoothing / num_classes`. For a binary model with one
    sigmoid output use num_classes=2: column 1 is then the binary losses' smoothed label
    `y * (1 - label_smoothing) + 0.5 * label_smoothing`.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array. Received {labels.dtype} of shape {labels.shape}")
    if labels.size and not (labels.min() >= 0 and labels.max() < num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}). Received [{labels.min()}, {labels.max()}]")
    _check_label_smoothing(label_smoothing)
    return _smooth_labels(np.eye(num_classes)[labels], label_smoothing, num_classes)


def _as_distributions(x: Any) -> np.ndarray:
    """(n, k) distributions as they are; (n,) or (n, 1) probabilities of class 1 -> (n, 2)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1 or x.shape[-1] == 1:
        x = x.reshape(-1, 1)
        return np.concatenate([1.0 - x, x], axis=-1)
    return x


def loss_decomposition(targets: Any, probs: Any, epsilon: float = 1e-7) -> dict[str, float]:
    """Means over samples of H(p, q) = H(p) + KL(p || q), with p = targets and q = probs.

    Args:
        targets: (n, k) target distributions (e.g. `smoothed_targets(...)`), or for a binary model
            with one sigmoid output (n,) / (n, 1) target probabilities of class 1.
        probs: Predicted distributions, shaped like `targets` ((n,) / (n, 1): sigmoid outputs).
        epsilon: Predicted probabilities are raised to at least `epsilon` and renormalized, so that a
            probability that underflowed to 0 gives a large finite cross-entropy rather than inf
            (the losses clip at the same epsilon). 0 gives the exact values.

    Returns:
        `{"cross_entropy": mean H(p, q), "target_entropy": mean H(p), "kl": mean KL(p || q)}` in
        nats; with label smoothing `target_entropy` > 0 is the part of the loss no model can remove.
    """
    p, q = _as_distributions(targets), _as_distributions(probs)
    if p.shape != q.shape:
        raise ValueError(f"targets and probs must have the same shape. Received {p.shape} and {q.shape}")
    if epsilon:
        q = np.maximum(q, epsilon)
        q = q / q.sum(axis=-1, keepdims=True)
    return {
        "cross_entropy": float(np.mean(cross_entropy(p, q))),
        "target_entropy": float(np.mean(entropy(p))),
        "kl": float(np.mean(kl_divergence(p, q))),
    }
