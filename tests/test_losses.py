"""xent_lab.losses: known values, equality with Keras' built-ins (values and gradients), robustness,
validation errors, serialization, and the information-theory helpers."""

from __future__ import annotations

import inspect
import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from xent_lab import losses

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
# Per-loss tests
# --------------------------------------------------------------------------------------------


class TestBinaryCrossentropy:
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
    def test_extremes_are_finite(self, ls):
        y_true = np.array([[1.0], [0.0], [0.0], [1.0]], "float32")
        x = np.array([[1e4], [-1e4], [1e4], [-1e4]], "float32")
        value, grad = finite_value_and_grad(losses.BinaryCrossentropy(from_logits=True, label_smoothing=ls), y_true, x)
        # Confidently wrong samples cost ~1e4 / 4 each on average; the gradient is p - y_s.
        assert value > 1e3
        np.testing.assert_allclose(grad.ravel() * 4, [ls / 2, -ls / 2, 1 - ls / 2, -(1 - ls / 2)], atol=1e-6)
        probs = np.array([[1.0], [0.0], [1.0], [0.0]], "float32")
        value, _ = finite_value_and_grad(losses.BinaryCrossentropy(label_smoothing=ls), y_true, probs)
        assert value > 0


class TestCategoricalCrossentropy:
    def test_known_value(self):
        loss = losses.CategoricalCrossentropy()
        assert float(loss([[0, 1, 0]], [[0.4, 0.4, 0.2]])) == pytest.approx(-math.log(0.4), rel=EXACT_RTOL)

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
    def test_extremes_are_finite(self, ls):
        value, grad = finite_value_and_grad(
            losses.CategoricalCrossentropy(from_logits=True, label_smoothing=ls, reduction="none"),
            ONEHOT_FOR_EXTREMES,
            EXTREME_LOGITS,
        )
        # log p = [-2e4, 0, -2e4], true class 0.
        assert value[1] == pytest.approx((1 - ls + ls / 3) * 2e4 + ls / 3 * 2e4, rel=1e-5)
        np.testing.assert_allclose(grad.sum(axis=-1), 0, atol=1e-5)  # softmax - y_s sums to 0
        finite_value_and_grad(losses.CategoricalCrossentropy(label_smoothing=ls), ONEHOT_FOR_EXTREMES, EXTREME_PROBS)


class TestSparseCategoricalCrossentropy:
    def test_known_value(self):
        loss = losses.SparseCategoricalCrossentropy()
        assert float(loss([1], [[0.4, 0.4, 0.2]])) == pytest.approx(-math.log(0.4), rel=EXACT_RTOL)

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
    def test_extremes_are_finite(self, ls):
        labels = np.argmax(ONEHOT_FOR_EXTREMES, axis=-1)
        for from_logits, y_pred in ((True, EXTREME_LOGITS), (False, EXTREME_PROBS)):
            loss = losses.SparseCategoricalCrossentropy(from_logits=from_logits, label_smoothing=ls)
            value, _ = finite_value_and_grad(loss, labels, y_pred)
            assert value > 0

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


class TestBinaryFocalCrossentropy:
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
    def test_extremes_are_finite(self, gamma, ls):
        # Keras' own loss has NaN gradients here for gamma = 0.5.
        y_true = np.array([[1.0], [0.0], [0.0], [1.0]], "float32")
        x = np.array([[1e4], [-1e4], [1e4], [-1e4]], "float32")
        loss = losses.BinaryFocalCrossentropy(gamma=gamma, from_logits=True, label_smoothing=ls, reduction="none")
        value, grad = finite_value_and_grad(loss, y_true, x)
        assert value[2] > 1e3 and value[3] > 1e3  # confidently wrong
        assert np.all(grad[2:] * np.array([[1.0], [-1.0]]) > 0)  # pushes the wrong ones back
        probs = np.array([[1.0], [0.0], [1.0], [0.0]], "float32")
        finite_value_and_grad(losses.BinaryFocalCrossentropy(gamma=gamma, label_smoothing=ls), y_true, probs)


class TestCategoricalFocalCrossentropy:
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
    def test_extremes_are_finite(self, gamma, ls):
        loss = losses.CategoricalFocalCrossentropy(
            gamma=gamma, alpha=1.0, from_logits=True, label_smoothing=ls, reduction="none"
        )
        value, grad = finite_value_and_grad(loss, ONEHOT_FOR_EXTREMES, EXTREME_LOGITS)
        # Sample 1 is confidently wrong: Keras would cap its loss at -log(1e-7) ~ 16 with zero gradient.
        assert value[1] > 1e3 and grad[1, 0] < 0
        probs_loss = losses.CategoricalFocalCrossentropy(gamma=gamma, label_smoothing=ls)
        finite_value_and_grad(probs_loss, ONEHOT_FOR_EXTREMES, EXTREME_PROBS)

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


@pytest.mark.parametrize("cls", ALL)
def test_constructor_signature_matches_keras(cls):
    def params(c):
        return [(p.name, p.default) for p in inspect.signature(c.__init__).parameters.values()][1:]

    ours, theirs = params(cls), params(getattr(keras.losses, cls.__name__))
    if cls is losses.SparseCategoricalCrossentropy:
        assert ours[-1] == ("label_smoothing", 0.0)
        ours = ours[:-1]
    assert ours == theirs


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


@pytest.mark.parametrize("loss", CONFIGURED[:1] + CONFIGURED[2:], ids=lambda loss: type(loss).__name__)
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
    # The restored loss drives the compiled (traced) evaluation just like the original, eagerly.
    assert loaded.evaluate(x, y, verbose=0) == pytest.approx(float(loss(y, model(x))), rel=1e-6)


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
