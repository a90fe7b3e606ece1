"""`loss.from_logits=false` is a real probability path: the loss sees probabilities, not the logits behind them."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import xent_lab.losses as ours
from tests.helpers.e2e import QUICK, history, train_here
from tests.test_models import SHAPES, build
from xent_lab.models import Probabilities
from xent_lab.tracking import tags as T

# Confident mistakes: the true class gets probability ~2e-9, below Keras' epsilon 1e-7, so the
# probability path clips (loss -log(1e-7) = 16.12, gradient 0) where the logits path gives 20 and -1.
MISTAKES = {
    "CategoricalCrossentropy": ("softmax", [[0.0, 1.0, 0.0]], [[20.0, 0.0, 0.0]]),
    "SparseCategoricalCrossentropy": ("softmax", [1], [[20.0, 0.0, 0.0]]),
    "BinaryCrossentropy": ("sigmoid", [[1.0]], [[-20.0]]),
}


def value_and_gradient(loss: keras.losses.Loss, y_true, logits, head: keras.layers.Layer | None):
    """The loss and its gradient w.r.t. the logits, fed through `head` (None: the logits themselves)."""
    z = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(z)
        value = loss(tf.constant(y_true), z if head is None else head(z))
    return float(value), tape.gradient(value, z).numpy()


@pytest.mark.parametrize("name", list(MISTAKES))
def test_a_confident_mistake_differs_between_the_paths_and_impls_agree_on_each(name):
    activation, y_true, logits = MISTAKES[name]
    results = {}
    for impl, module in (("builtin", keras.losses), ("custom", ours)):
        for from_logits in (True, False):
            head = None if from_logits else Probabilities(activation)
            loss = getattr(module, name)(from_logits=from_logits)
            results[impl, from_logits] = value_and_gradient(loss, y_true, logits, head)
    for impl in ("builtin", "custom"):
        (logit_value, logit_grad), (prob_value, prob_grad) = results[impl, True], results[impl, False]
        assert logit_value == pytest.approx(20.0, rel=1e-5) and prob_value == pytest.approx(-np.log(1e-7), rel=1e-5)
        assert np.abs(logit_grad).max() == pytest.approx(1.0, rel=1e-5) and not prob_grad.any()
    for from_logits in (True, False):
        (custom_value, custom_grad), (builtin_value, builtin_grad) = (
            results["custom", from_logits],
            results["builtin", from_logits],
        )
        assert custom_value == pytest.approx(builtin_value, rel=1e-6)
        np.testing.assert_allclose(custom_grad, builtin_grad, rtol=1e-6)


def test_keras_own_softmax_layer_would_hand_the_loss_its_logits():
    """Why the Probabilities layer exists: after `Activation("softmax")` both paths give the logits' answer."""
    activation, y_true, logits = MISTAKES["CategoricalCrossentropy"]
    loss = keras.losses.CategoricalCrossentropy(from_logits=False)
    value, _ = value_and_gradient(loss, y_true, logits, keras.layers.Activation(activation))
    assert value == pytest.approx(20.0, rel=1e-5)


@pytest.mark.parametrize("dataset,loss", [("mnist", "cce"), ("imdb", "bce")])
def test_the_probability_model_output_carries_no_logits(dataset, loss):
    model = "mlp" if dataset == "mnist" else "embedding_avg"
    net = build(dataset, model, loss, "loss.from_logits=false")
    x = np.ones((2, *SHAPES[dataset]), dtype="int32" if dataset == "imdb" else "float32")
    eager = net(x)
    assert not hasattr(eager, "_keras_logits")

    @tf.function
    def traced(inputs):
        out = net(inputs)
        # Keras' TensorFlow cross-entropies also take the input of a Softmax/Sigmoid op as the logits.
        assert not hasattr(out, "_keras_logits") and out.op.type not in ("Softmax", "Sigmoid")
        return out

    np.testing.assert_allclose(traced(x).numpy(), eager.numpy(), rtol=1e-6)


def test_the_probability_model_survives_keras_saving(tmp_path):
    net = build("mnist", "mlp", "cce", "loss.from_logits=false")
    path = tmp_path / "model.keras"
    net.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.get_layer("probabilities"), Probabilities)
    x = np.random.default_rng(0).random((3, *SHAPES["mnist"])).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), net.predict(x, verbose=0), rtol=1e-6)


@pytest.mark.slow
def test_training_on_probabilities_is_not_training_on_logits(tmp_path, cache_dir):
    # Same seed, op determinism, same data order. With Keras' softmax layer the built-in loss read the
    # logits it carries and ran softmax_cross_entropy_with_logits on them: the very ops of the logits
    # path, so the two histories were bit-identical and this test failed. Now the loss takes
    # log(clip(p, 1e-7, 1 - 1e-7)). At a moderate learning rate that is the logits' loss to the last bit
    # (log(exp(a)) rounds back to a in float32), so a high one makes the predictions confident enough
    # to clip: clipped samples have a zero gradient (measured: train loss 11.2 on probabilities, 4.2
    # on logits).
    first_epoch = {}
    for from_logits in ("true", "false"):
        trained = train_here(
            tmp_path, cache_dir, QUICK, "loss=cce", f"loss.from_logits={from_logits}", "trainer.deterministic=true",
            "trainer.optimizer.learning_rate=0.05", "calibration.temperature_scaling=false",
            "calibration.per_epoch=false", "calibration.bootstrap=0", "calibration.methods=[]",
        )  # fmt: skip
        first_epoch[from_logits] = history(tmp_path, trained.run.info.run_id, T.TRAIN_LOSS)[0][1]
    assert first_epoch["false"] != pytest.approx(first_epoch["true"], rel=0.1)
