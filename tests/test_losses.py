"""xent_lab.losses, one test class per loss: values computed by hand from the formulas (logits and
probabilities, sample weights, every reduction, saturated inputs), equality with Keras' built-ins
(values and gradients), validation errors, serialization, and the information-theory helpers."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from xent_lab import losses
from xent_lab.losses._ops import xla_compiles

# Agreement with Keras: |ours - keras| <= RTOL * |keras| + ATOL, for values and gradients. The
# absolute floor covers values near 0, where the two implementations' different (equally valid)
# float32 operation orders differ by a few ulp of the intermediate terms (~1e-7).
RTOL, ATOL = 1e-6, 5e-7
# float16 (eps ~ 1e-3): a few ulp, relative, of the O(1) intermediate terms.
FP16_RTOL, FP16_ATOL = 1e-2, 2e-3
# Hand-computed closed forms, in float64, against float32 losses.
EXACT_RTOL = 1e-6

REDUCTIONS = ["sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None]
LABEL_SMOOTHING = [0.0, 0.1, 0.3]
GAMMAS = [0.0, 0.5, 2.0, 3.5]
# Logits in [-LOGIT_RANGE, LOGIT_RANGE] keep Keras' softmax/sigmoid outputs (k <= 5) inside
# [epsilon, 1 - epsilon], where Keras is the reference (and Keras' focal gradients are finite).
# Keras computes float16 losses in float16, so there the range keeps probabilities inside
# [1e-3, 1 - 1e-3]: beyond that Keras' own float16 values and gradients are inf or NaN.
LOGIT_RANGE = {"float32": 6.0, "float16": 3.0}

SETTINGS = settings(max_examples=15, deadline=None, database=None, derandomize=True)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def value_and_grad(loss, y_true, y_pred, sample_weight=None):
    """The loss and its gradient w.r.t. y_pred (probabilities or logits), as NumPy arrays."""
    y_pred = tf.convert_to_tensor(y_pred)
    with tf.GradientTape() as tape:
        tape.watch(y_pred)
        value = loss(y_true, y_pred, sample_weight=sample_weight)
    return value.numpy(), tape.gradient(value, y_pred).numpy()


def assert_same_as(ours, builtin, y_true, y_pred, sample_weight=None, dtype="float32", builtin_y_true=None):
    """Values and gradients of `ours` equal those of the Keras `builtin` on one batch
    (`builtin_y_true`: the labels in the format `builtin` takes, where it differs)."""
    rtol, atol = (FP16_RTOL, FP16_ATOL) if dtype == "float16" else (RTOL, ATOL)
    value, grad = value_and_grad(ours, y_true, y_pred, sample_weight)
    ref_y_true = y_true if builtin_y_true is None else builtin_y_true
    ref_value, ref_grad = value_and_grad(builtin, ref_y_true, y_pred, sample_weight)
    assert value.dtype == ref_value.dtype and value.shape == ref_value.shape
    np.testing.assert_allclose(value.astype("float64"), ref_value, rtol=rtol, atol=atol)
    np.testing.assert_allclose(grad.astype("float64"), ref_grad, rtol=rtol, atol=atol)


def random_predictions(rng, shape, from_logits, dtype, binary):
    """Logits in [-LOGIT_RANGE, LOGIT_RANGE], or their sigmoid / softmax over the last axis."""
    logits = rng.uniform(-LOGIT_RANGE[dtype], LOGIT_RANGE[dtype], size=shape)
    if not from_logits:
        logits = 1 / (1 + np.exp(-logits)) if binary else np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return logits.astype(dtype)


def random_onehot(rng, n, k, dtype="float32"):
    return np.eye(k, dtype=dtype)[rng.integers(0, k, n)]


def random_weights(rng, n, dtype="float32"):
    return rng.uniform(0.0, 2.0, size=n).astype(dtype)


def finite_value_and_grad(loss, y_true, y_pred):
    value, grad = value_and_grad(loss, y_true, y_pred)
    assert np.all(np.isfinite(value)), value
    assert np.all(np.isfinite(grad)), grad
    return value, grad


EXTREME_LOGITS = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, -1e4], [1e4, 1e4, -1e4], [-1e4, -1e4, -1e4]], "float32")
EXTREME_PROBS = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.0]], "float32")
ONEHOT_FOR_EXTREMES = np.eye(3, dtype="float32")[[0, 0, 2, 1]]


# --------------------------------------------------------------------------------------------
# Hand-computed references (float64, from the formulas; independent of Keras' code)
# --------------------------------------------------------------------------------------------

# Tiny batches of 3 samples, so that "sum", "sum_over_batch_size" and "mean_with_sample_weight" differ.
BINARY_Y = np.array([[1, 0], [0, 0], [1, 1]], "float32")
BINARY_PROBS = np.array([[0.8, 0.4], [0.3, 0.1], [0.6, 0.9]], "float32")
BINARY_LOGITS = np.array([[2.0, -1.0], [0.5, -3.0], [0.0, 1.5]], "float32")
LABELS = np.array([0, 2, 2])
ONEHOT_Y = np.eye(3, dtype="float32")[LABELS]
PROBS = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.25, 0.25, 0.5]], "float32")
LOGITS = np.array([[2.0, 1.0, 0.0], [0.0, -1.0, 3.0], [1.0, 1.0, 1.0]], "float32")
WEIGHTS = np.array([0.5, 2.0, 1.0], "float32")

BINARY_EXTREME_Y = np.array([[1.0], [0.0], [0.0], [1.0]], "float32")
BINARY_EXTREME_LOGITS = np.array([[1e4], [-1e4], [1e4], [-1e4]], "float32")
BINARY_EXTREME_PROBS = np.array([[1.0], [0.0], [1.0], [0.0]], "float32")
# float32 losses of ~2e4 (ulp 2e-3), and log-softmax offsets computed next to 1e4 (ulp 1e-3).
SATURATED_ATOL = 2e-3
# Gradients on saturated and clipped inputs are probabilities and targets of order 1.
GRAD_ATOL = 1e-6

# The float32 clip bounds of the probability path: epsilon = 1e-7, and 1 - 1e-7 rounded to float32,
# which is 1 - 2^-23 (the float32 neighbours of 1 - 1e-7 are 1 - 2^-23 and 1 - 2^-24).
LO, HI = float(np.float32(1e-7)), 1 - 2.0**-23


def sigmoid(z):
    return 1 / (1 + np.exp(-np.asarray(z, np.float64)))


def softmax(z):
    e = np.exp(np.asarray(z, np.float64) - np.max(z, axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def categorical_formula(y, p):
    return -(y * np.log(p)).sum(axis=-1)


def reduced(per_sample, reduction, sample_weight=None, mask=None):
    """Keras' documented reductions of per-sample losses l with weights w and mask m, written out:
    "none" -> w*m*l, "sum" -> sum(w*m*l), "sum_over_batch_size"/"mean" -> sum(w*m*l) / sum(m),
    "mean_with_sample_weight" -> sum(w*m*l) / sum(w*m)."""
    w = np.ones_like(per_sample) if sample_weight is None else sample_weight
    m = np.ones_like(per_sample) if mask is None else mask
    weighted = per_sample * w * m
    if reduction in (None, "none"):
        return weighted
    if reduction == "sum":
        return weighted.sum()
    return weighted.sum() / ((w * m).sum() if reduction == "mean_with_sample_weight" else m.sum())


def numeric_grad(f, x, h=1e-9):
    """Central differences of a float64 reference `f` (summed) w.r.t. x; h stays below epsilon, so
    clipped entries stay clipped."""
    x = np.asarray(x, np.float64)
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[index] = h
        grad[index] = (f(x + step).sum() - f(x - step).sum()) / (2 * h)
    return grad


class HandComputed:
    """Mixin of the per-loss test classes: the loss against `formula` (float64, on probabilities)
    for logits and probabilities, with and without sample weights, under every reduction."""

    loss_class: type
    function: Callable[..., Any]
    kwargs: dict[str, Any] = {}
    binary: bool = False
    y_true = ONEHOT_Y  # what the loss takes
    targets = ONEHOT_Y  # what the formula takes
    probs, logits = PROBS, LOGITS
    literal: float  # the formula on row 0 of `probs`, worked out by hand in the class

    @staticmethod
    def formula(y, p):
        raise NotImplementedError

    def test_formula_matches_the_arithmetic(self):
        row = self.formula(self.targets[:1].astype("float64"), self.probs[:1].astype("float64"))
        assert row[0] == pytest.approx(self.literal, rel=1e-6)

    def expected(self, from_logits):
        x = (self.logits if from_logits else self.probs).astype("float64")
        if from_logits:
            x = sigmoid(x) if self.binary else softmax(x)
        return self.formula(self.targets.astype("float64"), x)

    @pytest.mark.parametrize("reduction", REDUCTIONS)
    @pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
    @pytest.mark.parametrize("from_logits", [True, False], ids=["logits", "probs"])
    def test_hand_computed(self, from_logits, weighted, reduction):
        loss = self.loss_class(from_logits=from_logits, reduction=reduction, **self.kwargs)
        y_pred = self.logits if from_logits else self.probs
        sample_weight = WEIGHTS if weighted else None
        expected = reduced(self.expected(from_logits), reduction, sample_weight)
        np.testing.assert_allclose(loss(self.y_true, y_pred, sample_weight=sample_weight), expected, rtol=EXACT_RTOL)

    @pytest.mark.parametrize("from_logits", [True, False], ids=["logits", "probs"])
    def test_function_hand_computed(self, from_logits):
        y_pred = self.logits if from_logits else self.probs
        value = self.function(self.y_true, y_pred, from_logits=from_logits, **self.kwargs)
        assert value.shape == (3,)
        np.testing.assert_allclose(value, self.expected(from_logits), rtol=EXACT_RTOL)


def saturated_crossentropy(ls):
    """(losses, gradients w.r.t. the logits) of the categorical cross-entropy on EXTREME_LOGITS.

    log p per row: [0, -2e4, -1e4], [-2e4, 0, -2e4], [-ln 2, -ln 2, -2e4 - ln 2], [-ln 3] * 3, with
    targets y_s = y (1 - ls) + ls / 3 for the labels [0, 0, 2, 1]; the gradient is softmax - y_s.
    """
    y_s = ONEHOT_FOR_EXTREMES * (1 - ls) + ls / 3
    values = [
        ls / 3 * (2e4 + 1e4),
        (1 - 2 * ls / 3) * 2e4 + ls / 3 * 2e4,
        2 * ls / 3 * math.log(2) + (1 - 2 * ls / 3) * (2e4 + math.log(2)),
        math.log(3),
    ]
    p = np.array([[1, 0, 0], [0, 1, 0], [0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3]])
    return np.array(values), p - y_s


def clipped_crossentropy(ls):
    """(losses, gradients w.r.t. y_pred) of the categorical cross-entropy on EXTREME_PROBS.

    The probabilities are clipped to [LO, HI]. Rows 0-2 are clipped everywhere: zero gradient, as in
    Keras. Row 3, p = [.5, .5, 0] with label 1 and targets y = [ls/3, 1 - 2ls/3, ls/3]: d/dp_j of
    -sum_i y_i log(p_i / sum(p)) over the unclipped i = 0, 1 is -2 y_j [j < 2] + y_0 + y_1.
    """
    y_s = ONEHOT_FOR_EXTREMES * (1 - ls) + ls / 3
    values = -(y_s * np.log(np.clip(EXTREME_PROBS.astype("float64"), LO, HI))).sum(axis=-1)
    grad = np.zeros((4, 3))
    grad[3] = [1 - ls, -(1 - ls), 1 - ls / 3]
    return values, grad


def assert_crossentropy_extremes(loss_class, y_true, ls):
    """A categorical cross-entropy class equals the hand-computed values and gradients on both extreme batches."""
    for from_logits, y_pred, reference, atol in (
        (True, EXTREME_LOGITS, saturated_crossentropy, SATURATED_ATOL),
        (False, EXTREME_PROBS, clipped_crossentropy, 1e-6),
    ):
        loss = loss_class(from_logits=from_logits, label_smoothing=ls, reduction="none")
        value, grad = finite_value_and_grad(loss, y_true, y_pred)
        expected_value, expected_grad = reference(ls)
        np.testing.assert_allclose(value, expected_value, rtol=EXACT_RTOL, atol=atol)
        np.testing.assert_allclose(grad, expected_grad, atol=GRAD_ATOL)


# --------------------------------------------------------------------------------------------
# Per-loss tests
# --------------------------------------------------------------------------------------------


class TestBinaryCrossentropy(HandComputed):
    loss_class = losses.BinaryCrossentropy
    function = staticmethod(losses.binary_crossentropy)
    binary = True
    y_true = targets = BINARY_Y
    probs, logits = BINARY_PROBS, BINARY_LOGITS
    # Row 0 from probabilities, y = [1, 0], p = [0.8, 0.4]: -(ln 0.8 + ln 0.6) / 2 = (0.22314 + 0.51083) / 2.
    literal = 0.3669846

    @staticmethod
    def formula(y, p):
        return -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(axis=-1)

    def test_known_value_with_label_smoothing(self):
        # y = 1 smoothed by 0.2 is 0.9; p = 0.8.
        loss = losses.BinaryCrossentropy(label_smoothing=0.2)
        expected = -(0.9 * math.log(0.8) + 0.1 * math.log(0.2))
        assert float(loss([[1.0]], [[0.8]])) == pytest.approx(expected, rel=EXACT_RTOL)

    def test_logits_equal_probabilities(self):
        y_true, x = np.array([[0.0, 1.0, 1.0]]), np.array([[-1.5, 0.3, 2.0]], "float32")
        from_logits = float(losses.BinaryCrossentropy(from_logits=True)(y_true, x))
        from_probs = float(losses.BinaryCrossentropy()(y_true, 1 / (1 + np.exp(-x))))
        assert from_logits == pytest.approx(from_probs, rel=1e-5)

    @pytest.mark.parametrize("dtype", ["float32", "float16"])
    @pytest.mark.parametrize("from_logits", [True, False])
    def test_matches_keras(self, from_logits, dtype):
        rng = np.random.default_rng(1)
        for ls in LABEL_SMOOTHING:
            for weighted in (False, True):
                y_true = rng.integers(0, 2, (8, 3)).astype(dtype)
                y_pred = random_predictions(rng, (8, 3), from_logits, dtype, binary=True)
                sample_weight = random_weights(rng, 8, dtype) if weighted else None
                kwargs = dict(from_logits=from_logits, label_smoothing=ls, dtype=dtype)
                assert_same_as(
                    losses.BinaryCrossentropy(**kwargs),
                    keras.losses.BinaryCrossentropy(**kwargs),
                    y_true,
                    y_pred,
                    sample_weight,
                    dtype,
                )

    @pytest.mark.parametrize("reduction", REDUCTIONS)
    def test_reductions_match_keras(self, reduction):
        rng = np.random.default_rng(2)
        for from_logits in (True, False):
            # Labels (n,) against predictions (n, 1): Keras' rank alignment.
            y_true = rng.integers(0, 2, 6).astype("float32")
            y_pred = random_predictions(rng, (6, 1), from_logits, "float32", binary=True)
            kwargs = dict(from_logits=from_logits, label_smoothing=0.1, reduction=reduction)
            for sample_weight in (None, random_weights(rng, 6)):
                assert_same_as(
                    losses.BinaryCrossentropy(**kwargs),
                    keras.losses.BinaryCrossentropy(**kwargs),
                    y_true,
                    y_pred,
                    sample_weight,
                )

    @SETTINGS
    @given(
        seed=st.integers(0, 2**32 - 1),
        n=st.integers(1, 6),
        m=st.integers(1, 4),
        from_logits=st.booleans(),
        ls=st.floats(0.0, 1.0),
    )
    def test_matches_keras_property(self, seed, n, m, from_logits, ls):
        rng = np.random.default_rng(seed)
        y_true = rng.uniform(0, 1, (n, m)).astype("float32")  # soft labels too
        y_pred = random_predictions(rng, (n, m), from_logits, "float32", binary=True)
        kwargs = dict(from_logits=from_logits, label_smoothing=ls)
        assert_same_as(losses.BinaryCrossentropy(**kwargs), keras.losses.BinaryCrossentropy(**kwargs), y_true, y_pred)

    @pytest.mark.parametrize("ls", [0.0, 0.2])
    def test_saturated_logits_exact(self, ls):
        # log_sigmoid(1e4) = 0 and log_sigmoid(-1e4) = -1e4 exactly in float32, so each loss is 1e4 times
        # the target mass on the wrong side, a = ls/2 or b = 1 - ls/2; the gradient p - y_s has p = 1 or 0.
        a, b = ls / 2, 1 - ls / 2
        loss = losses.BinaryCrossentropy(from_logits=True, label_smoothing=ls, reduction="none")
        value, grad = finite_value_and_grad(loss, BINARY_EXTREME_Y, BINARY_EXTREME_LOGITS)
        np.testing.assert_allclose(value, np.array([a, a, b, b]) * 1e4, rtol=EXACT_RTOL)
        np.testing.assert_allclose(grad.ravel(), [a, -a, b, -b], atol=GRAD_ATOL)

    @pytest.mark.parametrize("ls", [0.0, 0.2])
    def test_clipped_probabilities_exact(self, ls):
        # p = 1 and 0 are clipped to HI and LO: a wrong prediction costs -ln(1 - HI) = 23 ln 2 = 15.94 or
        # -ln(LO) = 16.12 per unit of target mass, a right one ~1e-7; no gradient where clipped (as Keras).
        y_s = BINARY_EXTREME_Y.ravel() * (1 - ls) + ls / 2
        p = np.array([HI, LO, HI, LO])
        expected = -(y_s * np.log(p) + (1 - y_s) * np.log1p(-p))
        loss = losses.BinaryCrossentropy(label_smoothing=ls, reduction="none")
        value, grad = finite_value_and_grad(loss, BINARY_EXTREME_Y, BINARY_EXTREME_PROBS)
        np.testing.assert_allclose(value, expected, rtol=EXACT_RTOL, atol=1e-6)
        np.testing.assert_array_equal(grad, 0.0)


class TestCategoricalCrossentropy(HandComputed):
    loss_class = losses.CategoricalCrossentropy
    function = staticmethod(losses.categorical_crossentropy)
    formula = staticmethod(categorical_formula)
    literal = -math.log(0.7)  # row 0 from probabilities: label 0, p = 0.7

    def test_known_value_with_label_smoothing(self):
        # ls = 0.3, k = 3: targets [0.1, 0.8, 0.1].
        loss = losses.CategoricalCrossentropy(label_smoothing=0.3)
        expected = -(0.1 * math.log(0.4) + 0.8 * math.log(0.4) + 0.1 * math.log(0.2))
        assert float(loss([[0, 1, 0]], [[0.4, 0.4, 0.2]])) == pytest.approx(expected, rel=EXACT_RTOL)

    @pytest.mark.parametrize("dtype", ["float32", "float16"])
    @pytest.mark.parametrize("from_logits", [True, False])
    def test_matches_keras(self, from_logits, dtype):
        rng = np.random.default_rng(3)
        for ls in LABEL_SMOOTHING:
            for weighted in (False, True):
                y_true = random_onehot(rng, 8, 4, dtype)
                y_pred = random_predictions(rng, (8, 4), from_logits, dtype, binary=False)
                sample_weight = random_weights(rng, 8, dtype) if weighted else None
                kwargs = dict(from_logits=from_logits, label_smoothing=ls, dtype=dtype)
                assert_same_as(
                    losses.CategoricalCrossentropy(**kwargs),
                    keras.losses.CategoricalCrossentropy(**kwargs),
                    y_true,
                    y_pred,
                    sample_weight,
                    dtype,
                )

    @pytest.mark.parametrize("reduction", REDUCTIONS)
    def test_reductions_match_keras(self, reduction):
        rng = np.random.default_rng(4)
        for from_logits in (True, False):
            # A sequence batch (n, t, k): per-timestep losses and weights (n, t).
            y_true = np.eye(3, dtype="float32")[rng.integers(0, 3, (4, 5))]
            y_pred = random_predictions(rng, (4, 5, 3), from_logits, "float32", binary=False)
            kwargs = dict(from_logits=from_logits, label_smoothing=0.1, reduction=reduction)
            for sample_weight in (None, random_weights(rng, 20).reshape(4, 5)):
                assert_same_as(
                    losses.CategoricalCrossentropy(**kwargs),
                    keras.losses.CategoricalCrossentropy(**kwargs),
                    y_true,
                    y_pred,
                    sample_weight,
                )

    @SETTINGS
    @given(
        seed=st.integers(0, 2**32 - 1),
        n=st.integers(1, 6),
        k=st.integers(2, 5),
        from_logits=st.booleans(),
        ls=st.floats(0.0, 1.0),
    )
    def test_matches_keras_property(self, seed, n, k, from_logits, ls):
        rng = np.random.default_rng(seed)
        y_true = rng.dirichlet(np.ones(k), n).astype("float32")  # soft labels too
        y_pred = random_predictions(rng, (n, k), from_logits, "float32", binary=False)
        kwargs = dict(from_logits=from_logits, label_smoothing=ls)
        assert_same_as(
            losses.CategoricalCrossentropy(**kwargs), keras.losses.CategoricalCrossentropy(**kwargs), y_true, y_pred
        )

    def test_class_axis(self):
        rng = np.random.default_rng(5)
        y_true = np.eye(4, dtype="float32")[rng.integers(0, 4, (3, 5))]
        x = random_predictions(rng, (3, 5, 4), True, "float32", binary=False)
        last = losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2, reduction="none")
        first = losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2, reduction="none", axis=1)
        np.testing.assert_allclose(
            first(np.moveaxis(y_true, -1, 1), np.moveaxis(x, -1, 1)), last(y_true, x), rtol=RTOL, atol=ATOL
        )

    def test_uses_logits_cached_by_softmax(self):
        # Like Keras' built-in: a softmax output carries its logits, so saturated probabilities
        # (here 1 and e^-60) still give the exact loss.
        logits = tf.constant([[30.0, -30.0], [0.5, -0.5]])
        y_true = np.array([[0.0, 1.0], [1.0, 0.0]], "float32")
        probs = keras.activations.softmax(logits)
        ours = float(losses.CategoricalCrossentropy()(y_true, probs))
        assert ours == pytest.approx(float(losses.CategoricalCrossentropy(from_logits=True)(y_true, logits)))
        assert ours == pytest.approx(float(keras.losses.CategoricalCrossentropy()(y_true, probs)), rel=RTOL)
        assert ours > 25  # -log(1e-7) would cap it at ~16 on the probability path

    @pytest.mark.parametrize("ls", [0.0, 0.2])
    def test_extremes_exact(self, ls):
        assert_crossentropy_extremes(losses.CategoricalCrossentropy, ONEHOT_FOR_EXTREMES, ls)


class TestSparseCategoricalCrossentropy(HandComputed):
    loss_class = losses.SparseCategoricalCrossentropy
    function = staticmethod(losses.sparse_categorical_crossentropy)
    formula = staticmethod(categorical_formula)
    y_true = LABELS
    literal = -math.log(0.7)  # row 0 from probabilities: label 0, p = 0.7

    @pytest.mark.parametrize("reduction", REDUCTIONS)
    @pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
    def test_ignore_class_hand_computed(self, weighted, reduction):
        # Sample 1's label -1 is ignored: its loss is 0 and it is masked out of the reduction.
        loss = losses.SparseCategoricalCrossentropy(ignore_class=-1, reduction=reduction)
        sample_weight = WEIGHTS if weighted else None
        per_sample = np.array([-math.log(0.7), 0.0, -math.log(0.5)])  # PROBS at labels 0, -, 2
        expected = reduced(per_sample, reduction, sample_weight, mask=np.array([1.0, 0.0, 1.0]))
        value = loss(np.array([0, -1, 2]), PROBS, sample_weight=sample_weight)
        np.testing.assert_allclose(value, expected, rtol=EXACT_RTOL)

    def test_known_value_with_label_smoothing(self):
        loss = losses.SparseCategoricalCrossentropy(label_smoothing=0.3)
        expected = -(0.1 * math.log(0.4) + 0.8 * math.log(0.4) + 0.1 * math.log(0.2))
        assert float(loss([[1]], [[0.4, 0.4, 0.2]])) == pytest.approx(expected, rel=EXACT_RTOL)

    @pytest.mark.parametrize("dtype", ["float32", "float16"])
    @pytest.mark.parametrize("from_logits", [True, False])
    def test_matches_keras(self, from_logits, dtype):
        # Without smoothing against Keras' sparse loss; with it against Keras' categorical loss on
        # one-hot labels (Keras' sparse loss has no label smoothing).
        rng = np.random.default_rng(6)
        for ls in LABEL_SMOOTHING:
            for weighted in (False, True):
                labels = rng.integers(0, 4, 8)
                y_pred = random_predictions(rng, (8, 4), from_logits, dtype, binary=False)
                sample_weight = random_weights(rng, 8, dtype) if weighted else None
                if ls == 0:
                    builtin = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits, dtype=dtype)
                    builtin_labels = labels
                else:
                    builtin = keras.losses.CategoricalCrossentropy(
                        from_logits=from_logits, label_smoothing=ls, dtype=dtype
                    )
                    builtin_labels = np.eye(4, dtype=dtype)[labels]
                assert_same_as(
                    losses.SparseCategoricalCrossentropy(from_logits=from_logits, label_smoothing=ls, dtype=dtype),
                    builtin,
                    labels,
                    y_pred,
                    sample_weight,
                    dtype,
                    builtin_labels,
                )

    @pytest.mark.parametrize("reduction", REDUCTIONS)
    def test_reductions_and_ignore_class_match_keras(self, reduction):
        rng = np.random.default_rng(7)
        for from_logits in (True, False):
            labels = rng.integers(0, 3, (4, 5))
            labels[0, :2] = 255  # "void" pixels
            y_pred = random_predictions(rng, (4, 5, 3), from_logits, "float32", binary=False)
            for ignore_class in (None, 255):
                kwargs = dict(from_logits=from_logits, reduction=reduction, ignore_class=ignore_class)
                y = labels if ignore_class is not None else np.where(labels == 255, 1, labels)
                for sample_weight in (None, random_weights(rng, 20).reshape(4, 5)):
                    assert_same_as(
                        losses.SparseCategoricalCrossentropy(**kwargs),
                        keras.losses.SparseCategoricalCrossentropy(**kwargs),
                        y[..., None],  # with a trailing 1
                        y_pred,
                        sample_weight,
                    )

    @SETTINGS
    @given(
        seed=st.integers(0, 2**32 - 1),
        n=st.integers(1, 6),
        k=st.integers(2, 5),
        from_logits=st.booleans(),
        ls=st.floats(0.0, 1.0),
    )
    def test_equals_categorical_on_one_hot(self, seed, n, k, from_logits, ls):
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, k, n)
        y_pred = random_predictions(rng, (n, k), from_logits, "float32", binary=False)
        kwargs = dict(from_logits=from_logits, label_smoothing=ls, reduction="none")
        value, grad = value_and_grad(losses.SparseCategoricalCrossentropy(**kwargs), labels, y_pred)
        ref_value, ref_grad = value_and_grad(
            losses.CategoricalCrossentropy(**kwargs), np.eye(k, dtype="float32")[labels], y_pred
        )
        np.testing.assert_allclose(value, ref_value, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(grad, ref_grad, rtol=RTOL, atol=ATOL)

    def test_class_axis(self):
        rng = np.random.default_rng(8)
        labels = rng.integers(0, 4, (3, 5))
        x = random_predictions(rng, (3, 5, 4), True, "float32", binary=False)
        kwargs = dict(from_logits=True, label_smoothing=0.2, reduction="none")
        np.testing.assert_allclose(
            losses.SparseCategoricalCrossentropy(axis=1, **kwargs)(labels, np.moveaxis(x, -1, 1)),
            losses.SparseCategoricalCrossentropy(**kwargs)(labels, x),
            rtol=RTOL,
            atol=ATOL,
        )

    @pytest.mark.parametrize("ls", [0.0, 0.2])
    def test_extremes_exact(self, ls):
        assert_crossentropy_extremes(losses.SparseCategoricalCrossentropy, np.argmax(ONEHOT_FOR_EXTREMES, axis=-1), ls)

    @pytest.mark.parametrize("bad_label", [3, -1, 1.5])
    def test_invalid_labels_raise(self, bad_label):
        loss = losses.SparseCategoricalCrossentropy(from_logits=True)
        y_pred = np.zeros((2, 3), "float32")
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"labels must be integers in \[0, num_classes\)"):
            loss(np.array([0.0, bad_label]), y_pred)
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"labels must be integers"):
            tf.function(loss)(tf.constant([0.0, bad_label]), tf.constant(y_pred))

    def test_invalid_labels_give_nan_under_xla(self):
        # XLA drops assertions; the invalid sample's loss is NaN instead of a silent wrong number.
        loss = losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")
        value = tf.function(loss, jit_compile=True)(tf.constant([0.0, 7.0]), tf.zeros((2, 3)))
        assert np.isfinite(value[0]) and np.isnan(value[1])

    def test_ignored_class_may_be_out_of_range(self):
        loss = losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1, reduction="none")
        value = loss(np.array([-1, 2]), np.zeros((2, 3), "float32"))
        np.testing.assert_allclose(value, [0.0, math.log(3)], rtol=RTOL)

    def test_label_shape_mismatch_raises(self):
        loss = losses.SparseCategoricalCrossentropy()
        with pytest.raises(ValueError, match="y_true must have the shape of y_pred without the class axis"):
            loss(np.zeros((4, 2)), np.full((4, 3), 1 / 3, "float32"))
        with pytest.raises(ValueError, match="without the class axis"):
            loss(np.zeros(5), np.full((4, 3), 1 / 3, "float32"))


class TestBinaryFocalCrossentropy(HandComputed):
    loss_class = losses.BinaryFocalCrossentropy
    function = staticmethod(losses.binary_focal_crossentropy)
    kwargs = dict(apply_class_balancing=True, alpha=0.25, gamma=2.0)
    binary = True
    y_true = targets = BINARY_Y
    probs, logits = BINARY_PROBS, BINARY_LOGITS
    # Row 0 from probabilities, y = [1, 0], p = [0.8, 0.4], so p_t = [0.8, 0.6] and w = [0.25, 0.75]:
    # (0.25 * 0.2^2 * -ln 0.8 + 0.75 * 0.4^2 * -ln 0.6) / 2 = (0.0022314 + 0.0612991) / 2.
    literal = 0.03176526

    @staticmethod
    def formula(y, p):
        p_t = y * p + (1 - y) * (1 - p)
        return ((0.25 * y + 0.75 * (1 - y)) * (1 - p_t) ** 2 * -np.log(p_t)).mean(axis=-1)

    def test_gamma_zero_is_crossentropy(self):
        rng = np.random.default_rng(9)
        y_true = rng.integers(0, 2, (5, 2)).astype("float32")
        for from_logits in (True, False):
            y_pred = random_predictions(rng, (5, 2), from_logits, "float32", binary=True)
            kwargs = dict(from_logits=from_logits, label_smoothing=0.1)
            focal = losses.BinaryFocalCrossentropy(gamma=0.0, alpha=1.0, **kwargs)
            np.testing.assert_allclose(
                focal(y_true, y_pred), losses.BinaryCrossentropy(**kwargs)(y_true, y_pred), rtol=RTOL, atol=ATOL
            )

    def test_flsd53_known_values(self):
        # p_t = 0.1 < 0.2: gamma 5; p_t = 0.3: gamma 3. Third sample: y = 1 smoothed to 0.9 and
        # p = 0.15, so the smoothed p_t is 0.22 but the label's own p_t is 0.15: gamma 5.
        loss = losses.BinaryFocalCrossentropy(gamma="flsd53", reduction="none")
        value = loss(np.array([[1.0], [0.0]]), np.array([[0.1], [0.7]], "float32"))
        np.testing.assert_allclose(value, [0.9**5 * -math.log(0.1), 0.7**3 * -math.log(0.3)], rtol=EXACT_RTOL)
        smoothed = losses.BinaryFocalCrossentropy(gamma="flsd53", label_smoothing=0.2)
        expected = (1 - 0.22) ** 5 * -(0.9 * math.log(0.15) + 0.1 * math.log(0.85))
        assert float(smoothed([[1.0]], [[0.15]])) == pytest.approx(expected, rel=EXACT_RTOL)

    def test_flsd53_gamma_is_constant_for_the_gradient(self):
        y_true, x = np.array([[1.0], [1.0]], "float32"), np.array([[-2.5], [1.0]], "float32")  # p ~ 0.08, 0.73
        _, grad = value_and_grad(losses.BinaryFocalCrossentropy(gamma="flsd53", from_logits=True), y_true, x)
        _, grad5 = value_and_grad(losses.BinaryFocalCrossentropy(gamma=5.0, from_logits=True), y_true, x)
        _, grad3 = value_and_grad(losses.BinaryFocalCrossentropy(gamma=3.0, from_logits=True), y_true, x)
        np.testing.assert_allclose(grad.ravel(), [grad5[0, 0], grad3[1, 0]], rtol=RTOL)

    @pytest.mark.parametrize("dtype", ["float32", "float16"])
    @pytest.mark.parametrize("from_logits", [True, False])
    def test_matches_keras(self, from_logits, dtype):
        rng = np.random.default_rng(10)
        for ls in LABEL_SMOOTHING:
            for gamma in GAMMAS:
                for balancing, alpha in ((False, 0.25), (True, 0.25), (True, 0.8)):
                    y_true = rng.integers(0, 2, (6, 2)).astype(dtype)
                    y_pred = random_predictions(rng, (6, 2), from_logits, dtype, binary=True)
                    kwargs = dict(
                        apply_class_balancing=balancing,
                        alpha=alpha,
                        gamma=gamma,
                        from_logits=from_logits,
                        label_smoothing=ls,
                        dtype=dtype,
                    )
                    assert_same_as(
                        losses.BinaryFocalCrossentropy(**kwargs),
                        keras.losses.BinaryFocalCrossentropy(**kwargs),
                        y_true,
                        y_pred,
                        random_weights(rng, 6, dtype),
                        dtype,
                    )

    @pytest.mark.parametrize("reduction", REDUCTIONS)
    def test_reductions_match_keras(self, reduction):
        rng = np.random.default_rng(11)
        for from_logits in (True, False):
            y_true = rng.integers(0, 2, (6, 1)).astype("float32")
            y_pred = random_predictions(rng, (6,), from_logits, "float32", binary=True)  # (n,) vs (n, 1)
            kwargs = dict(from_logits=from_logits, gamma=2.0, apply_class_balancing=True, reduction=reduction)
            for sample_weight in (None, random_weights(rng, 6)):
                assert_same_as(
                    losses.BinaryFocalCrossentropy(**kwargs),
                    keras.losses.BinaryFocalCrossentropy(**kwargs),
                    y_true,
                    y_pred,
                    sample_weight,
                )

    @SETTINGS
    @given(
        seed=st.integers(0, 2**32 - 1),
        n=st.integers(1, 6),
        from_logits=st.booleans(),
        ls=st.floats(0.0, 1.0),
        gamma=st.floats(0.0, 5.0),
        alpha=st.floats(0.0, 1.0),
        balancing=st.booleans(),
    )
    def test_matches_keras_property(self, seed, n, from_logits, ls, gamma, alpha, balancing):
        rng = np.random.default_rng(seed)
        y_true = rng.integers(0, 2, (n, 2)).astype("float32")
        y_pred = random_predictions(rng, (n, 2), from_logits, "float32", binary=True)
        kwargs = dict(
            apply_class_balancing=balancing, alpha=alpha, gamma=gamma, from_logits=from_logits, label_smoothing=ls
        )
        assert_same_as(
            losses.BinaryFocalCrossentropy(**kwargs), keras.losses.BinaryFocalCrossentropy(**kwargs), y_true, y_pred
        )

    @pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, "flsd53"])
    @pytest.mark.parametrize("ls", [0.0, 0.2])
    def test_saturated_logits_exact(self, gamma, ls):
        # Keras' own loss has NaN gradients here for gamma = 0.5. With p = 1 or 0 exactly, a = ls/2 and
        # b = 1 - ls/2: 1 - p_t = [a, a, b, b] and the cross-entropy is 1e4 * [a, a, b, b] (see BCE); as
        # d(1 - p_t)/dz = (1 - 2 y_s) p (1 - p) = 0 the gradient is (1 - p_t)^gamma (p - y_s).
        # FLSD-53: the label's probability is 1, 1, 0, 0 -> gamma 3, 3, 5, 5.
        a, b = ls / 2, 1 - ls / 2
        focal = np.array([a, a, b, b]) ** (np.array([3, 3, 5, 5]) if gamma == losses.FLSD53 else gamma)
        loss = losses.BinaryFocalCrossentropy(gamma=gamma, from_logits=True, label_smoothing=ls, reduction="none")
        value, grad = finite_value_and_grad(loss, BINARY_EXTREME_Y, BINARY_EXTREME_LOGITS)
        np.testing.assert_allclose(value, focal * np.array([a, a, b, b]) * 1e4, rtol=EXACT_RTOL)
        np.testing.assert_allclose(grad.ravel(), focal * np.array([a, -a, b, -b]), atol=GRAD_ATOL)

    @pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, "flsd53"])
    @pytest.mark.parametrize("ls", [0.0, 0.2])
    def test_clipped_probabilities_exact(self, gamma, ls):
        # As for BCE, times the focal factor of the clipped probabilities; FLSD-53: the label's
        # probability is HI, 1 - LO, 1 - HI, LO -> gamma 3, 3, 5, 5.
        y_s = BINARY_EXTREME_Y.ravel() * (1 - ls) + ls / 2
        p = np.array([HI, LO, HI, LO])
        p_t = y_s * p + (1 - y_s) * (1 - p)
        focal = (1 - p_t) ** (np.array([3, 3, 5, 5]) if gamma == losses.FLSD53 else gamma)
        expected = focal * -(y_s * np.log(p) + (1 - y_s) * np.log1p(-p))
        loss = losses.BinaryFocalCrossentropy(gamma=gamma, label_smoothing=ls, reduction="none")
        value, grad = finite_value_and_grad(loss, BINARY_EXTREME_Y, BINARY_EXTREME_PROBS)
        np.testing.assert_allclose(value, expected, rtol=EXACT_RTOL, atol=1e-6)
        np.testing.assert_array_equal(grad, 0.0)


def _value_and_grads(fn, y, x, jit=False):
    """fn(y, x) and its gradients with respect to x and (float labels) y, as NumPy arrays; compiled by XLA
    if `jit`."""

    def value_and_grads(y, x):
        watched = [x, y] if y.dtype.is_floating else [x]
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(watched)
            value = fn(y, x)
        return value, *(tape.gradient(value, t) for t in watched)

    if jit:
        value_and_grads = tf.function(value_and_grads, jit_compile=True)
    return tuple(t.numpy() for t in value_and_grads(y, x))


@pytest.mark.parametrize(
    "loss",
    [
        losses.BinaryCrossentropy(from_logits=True, reduction="sum", dtype="float64"),
        losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.2, reduction="sum", dtype="float64"),
        losses.BinaryFocalCrossentropy(from_logits=True, gamma=1.0, reduction="sum", dtype="float64"),
        losses.BinaryFocalCrossentropy(
            from_logits=True, gamma=2.0, apply_class_balancing=True, reduction="sum", dtype="float64"
        ),
        losses.BinaryFocalCrossentropy(
            from_logits=True, gamma=3.5, label_smoothing=0.1, reduction="sum", dtype="float64"
        ),
    ],
    ids=["bce", "bce-ls", "focal-g1", "focal-g2-alpha", "focal-g3.5-ls"],
)
@pytest.mark.parametrize("jit", [False, True], ids=["tf", "xla"])
def test_binary_gradients_written_out_equal_autodiff(loss, jit):
    # From logits the binary losses (gamma >= 1) return closed-form gradients (`_ops._sigmoid_xent`,
    # `_ops.binary_focal_terms`), and under XLA autodiff of their stable forms. Against TensorFlow's autodiff
    # of the textbook formula in float64, for soft labels too, and for the gradient with respect to the
    # labels as well as the logits.
    rng = np.random.default_rng(21)
    x = tf.constant(rng.normal(scale=4.0, size=(32, 3)))
    y = tf.constant(rng.random((32, 3)))
    gamma = getattr(loss, "gamma", 0.0)
    ls = loss.label_smoothing

    def reference(y: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
        y_s = y * (1 - ls) + ls / 2
        s = tf.sigmoid(x)
        bce = -(y_s * tf.math.log(s) + (1 - y_s) * tf.math.log(1 - s))
        weight = (y_s * 0.25 + (1 - y_s) * 0.75) if getattr(loss, "apply_class_balancing", False) else 1.0
        return tf.reduce_sum(tf.reduce_mean(weight * (1 - (y_s * s + (1 - y_s) * (1 - s))) ** gamma * bce, -1))

    for ours, expected in zip(_value_and_grads(loss, y, x, jit), _value_and_grads(reference, y, x)):
        np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "loss",
    [losses.BinaryCrossentropy(from_logits=True), losses.BinaryFocalCrossentropy(from_logits=True, gamma=2.0)],
    ids=["bce", "focal"],
)
def test_binary_losses_under_xla_equal_the_written_out_forms_at_extreme_logits(loss):
    # Under XLA autodiff replaces the written-out gradients (`_ops.xla_compiles`): at +-1e4 logits it is as
    # finite and as exact as they are, in float32.
    y, x = tf.constant(BINARY_EXTREME_Y), tf.constant(BINARY_EXTREME_LOGITS)
    written_out, under_xla = _value_and_grads(loss, y, x), _value_and_grads(loss, y, x, jit=True)
    for a, b in zip(under_xla, written_out):
        assert np.all(np.isfinite(a)), a
        np.testing.assert_allclose(a, b, rtol=EXACT_RTOL, atol=GRAD_ATOL)


@pytest.mark.parametrize("ls", [0.0, 0.2])
def test_sparse_crossentropy_under_xla_equals_the_one_hot_form(ls):
    # Under XLA the sparse loss gathers the label's logit (`_ops.sparse_xent_from_logits`); elsewhere it takes
    # CCE's closed form of the one-hot label. Same values and gradients, at ordinary and +-1e4 logits.
    loss = losses.SparseCategoricalCrossentropy(from_logits=True, label_smoothing=ls, reduction="none")
    labels = tf.constant([0, 0, 2, 1, 4, 3])
    logits = tf.constant(np.concatenate([np.pad(EXTREME_LOGITS, ((0, 0), (0, 2))), np.arange(10).reshape(2, 5)]))

    for a, b in zip(_value_and_grads(loss, labels, logits, jit=True), _value_and_grads(loss, labels, logits)):
        assert np.all(np.isfinite(a)), a
        np.testing.assert_allclose(a, b, rtol=EXACT_RTOL, atol=GRAD_ATOL)


def test_xla_is_told_apart_from_tf_function_when_a_loss_is_traced():
    seen = {}
    for jit in (False, True):

        def traced(jit: bool = jit) -> tf.Tensor:
            seen[jit] = xla_compiles()
            return tf.constant(0.0)

        tf.function(traced, jit_compile=jit)()
    assert seen == {False: False, True: True} and not xla_compiles()  # and eagerly


@pytest.mark.parametrize("ls", [0.0, 0.2])
def test_categorical_gradients_written_out_equal_autodiff(ls):
    # From logits CCE returns closed-form gradients (`_ops.categorical_xent_from_logits`). Against TensorFlow's
    # autodiff of the textbook formula in float64, with soft labels whose rows do not sum to 1, for the
    # gradient with respect to the labels as well as the logits.
    rng = np.random.default_rng(22)
    x = tf.constant(rng.normal(scale=4.0, size=(32, 5)))
    y = tf.constant(rng.random((32, 5)))
    loss = losses.CategoricalCrossentropy(from_logits=True, label_smoothing=ls, reduction="sum", dtype="float64")

    def reference(y: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
        return tf.reduce_sum(-(y * (1 - ls) + ls / 5) * tf.nn.log_softmax(x))

    for ours, expected in zip(_value_and_grads(loss, y, x), _value_and_grads(reference, y, x)):
        np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-12)


def test_categorical_gradient_is_exact_where_the_builtins_fused_op_is_not():
    # The fused kernel Keras calls returns softmax - y as the gradient, which is the gradient only for
    # labels that sum to 1 (its documentation says so). Here the labels sum to 0.6.
    x, y = tf.constant([[1.0, 2.0, 0.5]], "float64"), tf.constant([[0.2, 0.3, 0.1]], "float64")
    expected = tf.nn.softmax(x).numpy() * 0.6 - y.numpy()
    ours = _value_and_grads(losses.CategoricalCrossentropy(from_logits=True, dtype="float64"), y, x)[1]
    builtin = _value_and_grads(keras.losses.CategoricalCrossentropy(from_logits=True, dtype="float64"), y, x)[1]
    np.testing.assert_allclose(ours, expected, rtol=1e-12)
    np.testing.assert_allclose(builtin, tf.nn.softmax(x).numpy() - y.numpy(), rtol=1e-12)


class TestCategoricalFocalCrossentropy(HandComputed):
    loss_class = losses.CategoricalFocalCrossentropy
    function = staticmethod(losses.categorical_focal_crossentropy)
    kwargs = dict(alpha=[0.2, 0.3, 0.5], gamma=2.0)
    # Row 0 from probabilities, label 0, p = 0.7: 0.2 * 0.3^2 * -ln 0.7 = 0.018 * 0.35667.
    literal = 0.006420149

    @staticmethod
    def formula(y, p):
        return -(np.array([0.2, 0.3, 0.5]) * (1 - p) ** 2 * y * np.log(p)).sum(axis=-1)

    def test_gamma_zero_alpha_one_is_crossentropy(self):
        loss = losses.CategoricalFocalCrossentropy(gamma=0.0, alpha=1.0)
        assert float(loss([[0, 1, 0]], [[0.4, 0.4, 0.2]])) == pytest.approx(-math.log(0.4), rel=EXACT_RTOL)
        rng = np.random.default_rng(12)
        y_true = random_onehot(rng, 5, 4)
        x = random_predictions(rng, (5, 4), True, "float32", binary=False)
        kwargs = dict(from_logits=True, label_smoothing=0.1)
        np.testing.assert_allclose(
            losses.CategoricalFocalCrossentropy(gamma=0.0, alpha=1.0, **kwargs)(y_true, x),
            losses.CategoricalCrossentropy(**kwargs)(y_true, x),
            rtol=RTOL,
            atol=ATOL,
        )

    def test_flsd53_known_values(self):
        # True-class probabilities 0.1 (gamma 5) and 0.4 (gamma 3); alpha = 1.
        loss = losses.CategoricalFocalCrossentropy(gamma="flsd53", alpha=1.0, reduction="none")
        value = loss([[1, 0, 0], [0, 1, 0]], [[0.1, 0.6, 0.3], [0.4, 0.4, 0.2]])
        np.testing.assert_allclose(value, [0.9**5 * -math.log(0.1), 0.6**3 * -math.log(0.4)], rtol=EXACT_RTOL)

    def test_per_class_alpha_known_value(self):
        loss = losses.CategoricalFocalCrossentropy(gamma=2.0, alpha=[0.1, 0.7, 0.2])
        expected = 0.7 * 0.6**2 * -math.log(0.4)
        assert float(loss([[0, 1, 0]], [[0.4, 0.4, 0.2]])) == pytest.approx(expected, rel=EXACT_RTOL)

    @pytest.mark.parametrize("dtype", ["float32", "float16"])
    @pytest.mark.parametrize("from_logits", [True, False])
    def test_matches_keras(self, from_logits, dtype):
        rng = np.random.default_rng(13)
        for ls in LABEL_SMOOTHING:
            for gamma in GAMMAS:
                for alpha in (0.25, 1.0, [0.1, 0.2, 0.3, 0.4]):
                    y_true = random_onehot(rng, 6, 4, dtype)
                    y_pred = random_predictions(rng, (6, 4), from_logits, dtype, binary=False)
                    kwargs = dict(alpha=alpha, gamma=gamma, from_logits=from_logits, label_smoothing=ls, dtype=dtype)
                    assert_same_as(
                        losses.CategoricalFocalCrossentropy(**kwargs),
                        keras.losses.CategoricalFocalCrossentropy(**kwargs),
                        y_true,
                        y_pred,
                        random_weights(rng, 6, dtype),
                        dtype,
                    )

    @pytest.mark.parametrize("reduction", REDUCTIONS)
    def test_reductions_match_keras(self, reduction):
        rng = np.random.default_rng(14)
        for from_logits in (True, False):
            y_true = random_onehot(rng, 6, 3)
            y_pred = random_predictions(rng, (6, 3), from_logits, "float32", binary=False)
            kwargs = dict(from_logits=from_logits, alpha=[0.2, 0.3, 0.5], label_smoothing=0.1, reduction=reduction)
            for sample_weight in (None, random_weights(rng, 6)):
                assert_same_as(
                    losses.CategoricalFocalCrossentropy(**kwargs),
                    keras.losses.CategoricalFocalCrossentropy(**kwargs),
                    y_true,
                    y_pred,
                    sample_weight,
                )

    @SETTINGS
    @given(
        seed=st.integers(0, 2**32 - 1),
        n=st.integers(1, 6),
        k=st.integers(2, 5),
        from_logits=st.booleans(),
        ls=st.floats(0.0, 1.0),
        gamma=st.floats(0.0, 5.0),
        per_class=st.booleans(),
    )
    def test_matches_keras_property(self, seed, n, k, from_logits, ls, gamma, per_class):
        rng = np.random.default_rng(seed)
        y_true = random_onehot(rng, n, k)
        y_pred = random_predictions(rng, (n, k), from_logits, "float32", binary=False)
        alpha = rng.uniform(0, 1, k).tolist() if per_class else float(rng.uniform(0, 1))
        kwargs = dict(alpha=alpha, gamma=gamma, from_logits=from_logits, label_smoothing=ls)
        assert_same_as(
            losses.CategoricalFocalCrossentropy(**kwargs),
            keras.losses.CategoricalFocalCrossentropy(**kwargs),
            y_true,
            y_pred,
        )

    def test_class_axis_with_per_class_alpha(self):
        rng = np.random.default_rng(15)
        y_true = np.eye(3, dtype="float32")[rng.integers(0, 3, (2, 4))]
        x = random_predictions(rng, (2, 4, 3), True, "float32", binary=False)
        kwargs = dict(from_logits=True, alpha=[0.2, 0.3, 0.5], gamma=2.0, reduction="none")
        np.testing.assert_allclose(
            losses.CategoricalFocalCrossentropy(axis=1, **kwargs)(np.moveaxis(y_true, -1, 1), np.moveaxis(x, -1, 1)),
            losses.CategoricalFocalCrossentropy(**kwargs)(y_true, x),
            rtol=RTOL,
            atol=ATOL,
        )

    @pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, "flsd53"])
    @pytest.mark.parametrize("ls", [0.0, 0.2])
    def test_saturated_logits_exact(self, gamma, ls):
        # log p as in `saturated_crossentropy`; the focal factor (1 - p)^gamma is 0 where p = 1 (whose
        # log p is 0), 1 where p = 0, (1/2)^gamma on row 2's first classes and (2/3)^gamma on row 3, so
        # rows 0-1 keep the cross-entropy's values. Row 1 is confidently wrong: Keras would cap it at
        # -ln(1e-7) ~ 16 with zero gradient. FLSD-53: the label's probability is 1, 0, 0, 1/3 -> gamma
        # 3, 5, 5, 3. alpha = 1.
        gammas = [3, 5, 5, 3] if gamma == losses.FLSD53 else [gamma] * 4
        t = ls / 3  # target of a class that is not the label
        expected_value, expected_grad = saturated_crossentropy(ls)
        expected_value[2] = 2 * t * 0.5 ** gammas[2] * math.log(2) + (1 - 2 * t) * (2e4 + math.log(2))
        expected_value[3] = (2 / 3) ** gammas[3] * math.log(3)
        # d/dz_j of -sum_c y_c f(p_c) log p_c, f(p) = (1 - p)^g, is -sum_c y_c (f(p_c) - g (1 - p_c)^(g - 1)
        # p_c log p_c) (delta_cj - p_j). On rows 0-2 the saturated classes' terms vanish and row 2's first
        # two cancel: the cross-entropy's gradients. Row 3 (all p = 1/3): B (1/3 - y_s), B as below.
        g = gammas[3]
        b = (2 / 3) ** g + g * (2 / 3) ** (g - 1) * math.log(3) / 3
        expected_grad[3] = b * (1 / 3 - (ONEHOT_FOR_EXTREMES[3] * (1 - ls) + t))
        loss = losses.CategoricalFocalCrossentropy(
            gamma=gamma, alpha=1.0, from_logits=True, label_smoothing=ls, reduction="none"
        )
        value, grad = finite_value_and_grad(loss, ONEHOT_FOR_EXTREMES, EXTREME_LOGITS)
        np.testing.assert_allclose(value, expected_value, rtol=EXACT_RTOL, atol=SATURATED_ATOL)
        # Rows 2-3: log p and log(1 - p) are differences of logsumexps near 1e4 (float32 ulp 1e-3), which
        # the focal factor's gradient turns into errors of ~2e-5.
        np.testing.assert_allclose(grad, expected_grad, atol=1e-4)

    @pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, "flsd53"])
    @pytest.mark.parametrize("ls", [0.0, 0.2])
    def test_clipped_probabilities_exact(self, gamma, ls):
        # The formula (alpha 0.25) on the renormalized, clipped probabilities; rows 0-2 are clipped
        # everywhere, so only row 3 has a gradient. FLSD-53: the label's probability is HI, LO, HI, 1/2
        # -> gamma 3, 5, 3, 3.
        gammas = np.array([3, 5, 3, 3] if gamma == losses.FLSD53 else [gamma] * 4)[:, None]
        y_s = ONEHOT_FOR_EXTREMES * (1 - ls) + ls / 3

        def reference(probs):
            p = np.clip(probs / probs.sum(axis=-1, keepdims=True), LO, HI)
            return -(0.25 * (1 - p) ** gammas * y_s * np.log(p)).sum(axis=-1)

        loss = losses.CategoricalFocalCrossentropy(gamma=gamma, label_smoothing=ls, reduction="none")
        value, grad = finite_value_and_grad(loss, ONEHOT_FOR_EXTREMES, EXTREME_PROBS)
        np.testing.assert_allclose(value, reference(EXTREME_PROBS.astype("float64")), rtol=EXACT_RTOL, atol=1e-6)
        np.testing.assert_allclose(grad, numeric_grad(reference, EXTREME_PROBS), atol=GRAD_ATOL)
        np.testing.assert_array_equal(grad[:3], 0.0)

    def test_alpha_length_mismatch_raises(self):
        loss = losses.CategoricalFocalCrossentropy(alpha=[0.5, 0.5])
        with pytest.raises(ValueError, match="alpha has 2 weights but y_pred has 3 classes"):
            loss([[0, 1, 0]], [[0.4, 0.4, 0.2]])


# --------------------------------------------------------------------------------------------
# Across all losses
# --------------------------------------------------------------------------------------------

ALL = [
    losses.BinaryCrossentropy,
    losses.CategoricalCrossentropy,
    losses.SparseCategoricalCrossentropy,
    losses.BinaryFocalCrossentropy,
    losses.CategoricalFocalCrossentropy,
]
ONEHOT_LOSSES = [losses.BinaryCrossentropy, losses.CategoricalCrossentropy, losses.BinaryFocalCrossentropy]
FUNCTIONS = [
    losses.binary_crossentropy,
    losses.categorical_crossentropy,
    losses.sparse_categorical_crossentropy,
    losses.binary_focal_crossentropy,
    losses.categorical_focal_crossentropy,
]


@pytest.mark.parametrize("ours", [*ALL, *FUNCTIONS], ids=lambda ours: ours.__name__)
def test_signature_matches_keras(ours):
    def params(f):
        return [(p.name, p.default) for p in inspect.signature(f).parameters.values()]

    mine, theirs = params(ours), params(getattr(keras.losses, ours.__name__))
    if ours in (losses.SparseCategoricalCrossentropy, losses.sparse_categorical_crossentropy):
        assert mine[-1] == ("label_smoothing", 0.0)
        mine = mine[:-1]
    assert mine == theirs


@pytest.mark.parametrize("cls", ALL)
def test_registered_name(cls):
    # Saved .keras files refer to the losses by this name.
    assert keras.saving.get_registered_name(cls) == f"xent_lab>{cls.__name__}"
    assert keras.saving.get_registered_object(f"xent_lab>{cls.__name__}") is cls


@pytest.mark.parametrize("cls", [*ONEHOT_LOSSES, losses.CategoricalFocalCrossentropy])
def test_shape_mismatch_raises(cls):
    loss = cls()
    with pytest.raises(ValueError, match="y_true and y_pred must have the same shape"):
        loss(np.zeros((4, 2), "float32"), np.full((4, 3), 1 / 3, "float32"))
    with pytest.raises(ValueError, match="must have the same shape"):
        tf.function(loss)(tf.zeros((4, 3)), tf.fill((5, 3), 1 / 3))


@pytest.mark.parametrize("cls", ALL)
def test_probabilities_out_of_range_raise(cls):
    y_pred = np.array([[0.5, -0.1, 0.6], [0.2, 0.3, 0.5]], "float32")  # e.g. logits without from_logits
    y_true = np.array([0, 2]) if cls is losses.SparseCategoricalCrossentropy else np.eye(3, dtype="float32")[[0, 2]]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"y_pred must be probabilities in \[0, 1\]"):
        cls()(y_true, y_pred)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"y_pred must be probabilities"):
        tf.function(cls())(tf.constant(y_true), tf.constant(y_pred * 3))
    # From logits the same numbers are fine.
    assert np.isfinite(cls(from_logits=True)(y_true, y_pred))


@pytest.mark.parametrize("cls", [losses.CategoricalCrossentropy, losses.CategoricalFocalCrossentropy])
def test_single_class_raises(cls):
    with pytest.raises(ValueError, match="single class"):
        cls()(np.ones((3, 1), "float32"), np.ones((3, 1), "float32"))


@pytest.mark.parametrize("cls", [losses.BinaryFocalCrossentropy, losses.CategoricalFocalCrossentropy])
@pytest.mark.parametrize("gamma", [-0.5, float("nan"), "flsd", "FLSD-53"])
def test_invalid_gamma_raises(cls, gamma):
    with pytest.raises(ValueError, match="gamma must be a number >= 0 or 'flsd53'"):
        cls(gamma=gamma)


@pytest.mark.parametrize("cls", ALL)
def test_invalid_label_smoothing_raises(cls):
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\]"):
        cls(label_smoothing=1.5)


CONFIGURED = [
    losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1, axis=-1, reduction="sum", name="bce"),
    losses.CategoricalCrossentropy(label_smoothing=0.2, reduction=None, dtype="float16"),
    losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1, reduction="sum"),
    losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255, label_smoothing=0.1),
    losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.7, gamma="flsd53", from_logits=True),
    losses.CategoricalFocalCrossentropy(alpha=[0.2, 0.3, 0.5], gamma="flsd53", label_smoothing=0.05),
    losses.CategoricalFocalCrossentropy(alpha=0.5, gamma=1.5, from_logits=True, reduction="mean"),
]


@pytest.mark.parametrize("loss", CONFIGURED, ids=lambda loss: type(loss).__name__)
def test_config_round_trip(loss):
    config = loss.get_config()
    restored = type(loss).from_config(config)
    assert restored.get_config() == config
    assert restored.dtype == loss.dtype
    # Through Keras' registry too (the "xent_lab>" registered name).
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(clone) is type(loss) and clone.get_config() == config


@pytest.mark.parametrize(
    "loss", [loss for loss in CONFIGURED if loss.dtype == "float32"], ids=lambda loss: type(loss).__name__
)
def test_saved_model_restores_loss(loss, tmp_path):
    binary = isinstance(loss, (losses.BinaryCrossentropy, losses.BinaryFocalCrossentropy))
    activation = None if loss.from_logits else ("sigmoid" if binary else "softmax")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1 if binary else 3, activation=activation)(inputs))
    model.compile(optimizer="sgd", loss=loss)
    model.save(tmp_path / "model.keras")

    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert type(loaded.loss) is type(loss)
    assert loaded.loss.get_config() == loss.get_config()
    rng = np.random.default_rng(16)
    x = rng.normal(size=(8, 4)).astype("float32")
    labels = rng.integers(0, 2 if binary else 3, 8)
    if isinstance(loss, losses.SparseCategoricalCrossentropy):
        y = labels
    else:
        y = labels[:, None].astype("float32") if binary else np.eye(3, dtype="float32")[labels]
    # The restored loss drives the compiled (traced) test step just like the original, eagerly (test_on_batch: the
    # step `evaluate` runs, without building a tf.data pipeline for one batch).
    assert loaded.test_on_batch(x, y) == pytest.approx(float(loss(y, model(x))), rel=1e-6)


# --------------------------------------------------------------------------------------------
# Information-theory helpers
# --------------------------------------------------------------------------------------------


class TestInformationTheory:
    def test_zero_log_zero_is_zero(self):
        assert losses.entropy([1.0, 0.0, 0.0]) == 0.0
        assert losses.kl_divergence([1.0, 0.0], [1.0, 0.0]) == 0.0
        assert losses.cross_entropy([0.0, 1.0], [0.0, 1.0]) == 0.0
        assert losses.cross_entropy([0.5, 0.5], [1.0, 0.0]) == math.inf

    def test_known_values(self):
        assert losses.entropy([0.5, 0.5]) == pytest.approx(math.log(2))
        assert losses.cross_entropy([0, 1, 0], [0.4, 0.4, 0.2]) == pytest.approx(-math.log(0.4))
        assert losses.kl_divergence([0.5, 0.5], [0.25, 0.75]) == pytest.approx(
            0.5 * math.log(2) + 0.5 * math.log(2 / 3)
        )

    @SETTINGS
    @given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 8), k=st.integers(2, 6))
    def test_cross_entropy_is_entropy_plus_kl(self, seed, n, k):
        rng = np.random.default_rng(seed)
        p, q = rng.dirichlet(np.ones(k), n), rng.dirichlet(np.ones(k), n)
        p[0, 0] = 0.0  # exercise 0 log 0
        p[0] /= p[0].sum()
        np.testing.assert_allclose(
            losses.cross_entropy(p, q), losses.entropy(p) + losses.kl_divergence(p, q), rtol=1e-12
        )
        assert np.all(losses.kl_divergence(p, q) >= 0)
        assert losses.entropy(p).shape == (n,)

    def test_smoothed_targets(self):
        targets = losses.smoothed_targets(np.array([2, 0]), 3, 0.3)
        np.testing.assert_allclose(targets, [[0.1, 0.1, 0.8], [0.8, 0.1, 0.1]])
        binary = losses.smoothed_targets(np.array([1, 0]), 2, 0.2)
        np.testing.assert_allclose(binary[:, 1], [1 * 0.8 + 0.1, 0.1])  # y(1 - ls) + ls/2
        with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
            losses.smoothed_targets(np.array([3]), 3)

    @pytest.mark.parametrize("ls", [0.0, 0.1])
    def test_decomposition_matches_categorical_loss(self, ls):
        rng = np.random.default_rng(17)
        labels = rng.integers(0, 4, 10)
        probs = rng.dirichlet(np.ones(4), 10)
        parts = losses.loss_decomposition(losses.smoothed_targets(labels, 4, ls), probs)
        assert set(parts) == {"cross_entropy", "target_entropy", "kl"}
        assert all(isinstance(v, float) for v in parts.values())
        assert parts["cross_entropy"] == pytest.approx(parts["target_entropy"] + parts["kl"], rel=1e-12)
        assert (parts["target_entropy"] > 0) == (ls > 0)
        loss = losses.CategoricalCrossentropy(label_smoothing=ls)(np.eye(4)[labels], probs.astype("float32"))
        assert parts["cross_entropy"] == pytest.approx(float(loss), rel=1e-5)

    def test_decomposition_of_a_single_sigmoid(self):
        rng = np.random.default_rng(18)
        labels = rng.integers(0, 2, 10)
        p = rng.uniform(0.05, 0.95, 10)
        parts = losses.loss_decomposition(losses.smoothed_targets(labels, 2, 0.2), p[:, None])
        same = losses.loss_decomposition(labels * 0.8 + 0.1, p)  # (n,) binary targets
        assert parts == pytest.approx(same)
        y_true, y_pred = labels[:, None].astype("float32"), p[:, None].astype("float32")
        loss = losses.BinaryCrossentropy(label_smoothing=0.2)(y_true, y_pred)
        assert parts["cross_entropy"] == pytest.approx(float(loss), rel=1e-5)
        assert parts["target_entropy"] == pytest.approx(-(0.9 * math.log(0.9) + 0.1 * math.log(0.1)))

    def test_decomposition_stays_finite_for_underflowed_probabilities(self):
        targets = losses.smoothed_targets(np.array([0]), 2, 0.1)
        assert math.isfinite(losses.loss_decomposition(targets, [[1.0, 0.0]])["cross_entropy"])
        assert losses.loss_decomposition(targets, [[1.0, 0.0]], epsilon=0)["cross_entropy"] == math.inf
