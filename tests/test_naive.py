"""`impl=naive`: the textbook formulas equal Keras' on benign inputs and break where the stable forms do not."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import xent_lab.losses as ours
from xent_lab.losses import naive

RNG = np.random.default_rng(0)
LOGITS = RNG.normal(scale=2.0, size=(16, 4))  # benign: every probability well inside [1e-7, 1 - 1e-7]
LABELS = RNG.integers(0, 4, size=16)
ONEHOT = np.eye(4)[LABELS]
BINARY = (LABELS % 2).astype("float64").reshape(-1, 1)

# (class name, constructor arguments, y_true, logits): every argument the config can set.
CASES = [
    ("BinaryCrossentropy", {}, BINARY, LOGITS[:, :1]),
    ("BinaryCrossentropy", {"label_smoothing": 0.2}, ONEHOT, LOGITS),
    ("BinaryFocalCrossentropy", {"gamma": 2.0}, BINARY, LOGITS[:, :1]),
    (
        "BinaryFocalCrossentropy",
        {"gamma": 0.5, "alpha": 0.3, "apply_class_balancing": True, "label_smoothing": 0.1},
        BINARY,
        LOGITS[:, :1],
    ),
    ("CategoricalCrossentropy", {}, ONEHOT, LOGITS),
    ("CategoricalCrossentropy", {"label_smoothing": 0.1}, ONEHOT, LOGITS),
    ("SparseCategoricalCrossentropy", {}, LABELS, LOGITS),
    ("SparseCategoricalCrossentropy", {"ignore_class": 2}, LABELS, LOGITS),
    ("CategoricalFocalCrossentropy", {"gamma": 2.0, "alpha": 0.25}, ONEHOT, LOGITS),
    (
        "CategoricalFocalCrossentropy",
        {"gamma": 3.0, "alpha": [1.0, 2.0, 0.5, 1.5], "label_smoothing": 0.1},
        ONEHOT,
        LOGITS,
    ),
]


def probabilities(logits: np.ndarray) -> np.ndarray:
    """What a model's probability head gives (float64, no `_keras_logits` on a NumPy array)."""
    if logits.shape[-1] == 1:
        return 1.0 / (1.0 + np.exp(-logits))
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("from_logits", [True, False], ids=["logits", "probabilities"])
@pytest.mark.parametrize("name,kwargs,y_true,logits", CASES, ids=lambda v: v if isinstance(v, str) else None)
def test_values_equal_keras_on_benign_inputs(name, kwargs, y_true, logits, from_logits):
    y_pred = logits if from_logits else probabilities(logits)
    # float64 and per sample: the formulas themselves are compared, not float32 rounding.
    args = {**kwargs, "from_logits": from_logits, "reduction": "none", "dtype": "float64"}
    expected = keras.ops.convert_to_numpy(getattr(keras.losses, name)(**args)(y_true, y_pred))
    got = keras.ops.convert_to_numpy(getattr(naive, name)(**args)(y_true, y_pred))
    assert got.shape == expected.shape and np.all(expected > 0) == ("ignore_class" not in kwargs)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.parametrize("name", ["BinaryFocalCrossentropy", "CategoricalFocalCrossentropy"])
def test_flsd53_is_the_textbook_factor_with_gamma_5_or_3(name):
    y_true, logits = (BINARY, LOGITS[:, :1]) if name.startswith("Binary") else (ONEHOT, LOGITS)
    args = {"gamma": "flsd53", "from_logits": True, "reduction": "none", "dtype": "float64"}
    got = keras.ops.convert_to_numpy(getattr(naive, name)(**args)(y_true, logits))
    expected = keras.ops.convert_to_numpy(getattr(ours, name)(**args)(y_true, logits))
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    # The batch mixes both exponents, so a single fixed gamma could not pass.
    p = probabilities(logits)
    p_true = (y_true * p + (1 - y_true) * (1 - p)) if p.shape[-1] == 1 else (y_true * p).sum(-1)
    assert (p_true < 0.2).any() and (p_true >= 0.2).any()


# float32 inputs where the textbook form breaks: exp(z) overflows float32 (max 3.4e38) from z = 89 on,
# so a softmax of [100, 0] is inf / inf = NaN. A confidently wrong sigmoid (z = -100, y = 1) gives
# p = 1 / (1 + inf) = 0: the loss -log(0 + 1e-15) = 34.5 is finite, but its
# gradient, with u = 1 + exp(-z), is -(1 / u^2) * (-exp(100)) = 0 * inf = NaN.
BREAKING = [
    ("CategoricalCrossentropy", {}, [[1.0, 0.0]], [[100.0, 0.0]]),
    ("SparseCategoricalCrossentropy", {}, [0], [[100.0, 0.0]]),
    ("CategoricalFocalCrossentropy", {}, [[0.0, 1.0]], [[100.0, 0.0]]),
    ("BinaryCrossentropy", {}, [[1.0]], [[-100.0]]),
    ("BinaryFocalCrossentropy", {"gamma": 2.0}, [[1.0]], [[-100.0]]),
]


def loss_and_gradient(loss: keras.losses.Loss, y_true, logits) -> tuple[float, np.ndarray]:
    z = tf.constant(logits, dtype="float32")
    with tf.GradientTape() as tape:
        tape.watch(z)
        value = loss(tf.constant(y_true), z)
    return float(value), tape.gradient(value, z).numpy()


@pytest.mark.parametrize("name,kwargs,y_true,logits", BREAKING, ids=[case[0] for case in BREAKING])
def test_the_textbook_form_breaks_where_the_stable_one_does_not(name, kwargs, y_true, logits):
    value, gradient = loss_and_gradient(getattr(naive, name)(from_logits=True, **kwargs), y_true, logits)
    stable_value, stable_gradient = loss_and_gradient(getattr(ours, name)(from_logits=True, **kwargs), y_true, logits)
    assert np.isfinite(stable_value) and np.isfinite(stable_gradient).all()
    assert not (np.isfinite(value) and np.isfinite(gradient).all())
    if name.startswith("Binary"):
        # Finite loss, NaN gradient: -log(epsilon) is the textbook value of a zero probability.
        assert value == pytest.approx(-np.log(1e-15), rel=1e-6) and np.isnan(gradient).all()
    else:
        assert np.isnan(value)


def test_epsilon_is_the_floor_inside_the_log():
    # p = 0 exactly (the probability path, no clipping): the loss is -log(epsilon).
    for epsilon in (1e-15, 1e-7):
        loss = naive.CategoricalCrossentropy(epsilon=epsilon, dtype="float64")
        assert float(loss([[0.0, 1.0]], [[1.0, 0.0]])) == pytest.approx(-np.log(epsilon), rel=1e-9)


@pytest.mark.parametrize("epsilon", [0.0, 1.0, -1e-3, float("nan")])
def test_epsilon_outside_the_open_unit_interval_is_rejected(epsilon):
    with pytest.raises(ValueError, match=r"epsilon must be in \(0, 1\)"):
        naive.BinaryCrossentropy(epsilon=epsilon)


@pytest.mark.parametrize("name,kwargs,y_true,logits", CASES[::2], ids=[case[0] for case in CASES[::2]])
def test_config_round_trip_keeps_class_and_arguments(name, kwargs, y_true, logits):
    loss = getattr(naive, name)(from_logits=True, epsilon=1e-9, **kwargs)
    serialized = keras.saving.serialize_keras_object(loss)
    assert serialized["registered_name"] == f"xent_lab.naive>{name}"
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is type(loss) and restored.get_config() == loss.get_config()
    assert restored.epsilon == 1e-9
    np.testing.assert_allclose(float(restored(y_true, logits)), float(loss(y_true, logits)), rtol=1e-7)


def test_a_model_compiled_with_a_naive_loss_saves_and_loads(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(4, name="logits")(inputs))
    model.compile(loss=naive.CategoricalFocalCrossentropy(alpha=[1.0, 2.0, 3.0, 4.0], from_logits=True, epsilon=1e-9))
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert type(loaded.loss) is naive.CategoricalFocalCrossentropy
    assert (loaded.loss.alpha, loaded.loss.epsilon) == ([1.0, 2.0, 3.0, 4.0], 1e-9)
