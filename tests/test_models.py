"""Every model builds with the head its objective asks for; logits stay float32 under mixed precision."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from omegaconf import OmegaConf
from scipy import special

from tests.test_config import compose_config
from xent_lab.models import Probabilities, build_model, logits_model
from xent_lab.objectives import build_objective

SHAPES = {"mnist": (28, 28, 1), "imdb": (32,)}


def build(dataset: str, model: str, loss: str, *overrides: str) -> keras.Model:
    cfg = compose_config(f"dataset={dataset}", f"model={model}", f"loss={loss}", *overrides)
    objective = build_objective(cfg.loss, 10 if dataset == "mnist" else 2)
    return build_model(cfg.model, SHAPES[dataset], objective, vocab_size=100)


@pytest.mark.parametrize(
    "dataset,model",
    [("mnist", "mlp"), ("mnist", "cnn"), ("imdb", "embedding_avg"), ("imdb", "text_cnn"), ("imdb", "bilstm")],
)
@pytest.mark.parametrize("loss", ["cce", "bce", "focal"])
def test_output_width_follows_the_loss(dataset, model, loss):
    net = build(dataset, model, loss)
    expected = {
        ("mnist", "cce"): 10,
        ("mnist", "bce"): 10,
        ("mnist", "focal"): 10,
        ("imdb", "cce"): 2,
        ("imdb", "bce"): 1,
        ("imdb", "focal"): 1,
    }[dataset, loss]
    assert net.output.shape == (None, expected)
    x = np.zeros((3, *SHAPES[dataset]), dtype="int32" if dataset == "imdb" else "float32")
    assert net.predict(x, verbose=0).shape == (3, expected)


def test_from_logits_model_outputs_the_logits_layer():
    net = build("mnist", "mlp", "cce")
    assert net.output is net.get_layer("logits").output
    assert not any(isinstance(layer, keras.layers.Activation) for layer in net.layers)
    assert logits_model(net) is net


@pytest.mark.parametrize(
    "dataset,model,loss,activation", [("mnist", "mlp", "cce", "softmax"), ("imdb", "embedding_avg", "bce", "sigmoid")]
)
def test_probability_path_ends_in_probabilities_and_keeps_a_logits_view(dataset, model, loss, activation):
    net = build(dataset, model, loss, "loss.from_logits=false")
    head = net.get_layer("probabilities")
    assert net.output is head.output and isinstance(head, Probabilities) and head.activation == activation
    rng = np.random.default_rng(0)
    shape = (4, *SHAPES[dataset])
    x = rng.integers(1, 100, shape).astype("int32") if dataset == "imdb" else rng.random(shape).astype("float32")
    probs = net.predict(x, verbose=0)
    logits = logits_model(net).predict(x, verbose=0).astype("float64")
    expected = special.softmax(logits, axis=1) if activation == "softmax" else special.expit(logits)
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-7)


def test_probabilities_rejects_an_unknown_activation():
    with pytest.raises(ValueError, match="activation='relu'"):
        Probabilities("relu")


def test_mixed_precision_keeps_the_head_in_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        net = build("mnist", "mlp", "focal", "loss.from_logits=false")
        assert net.get_layer("logits").compute_dtype == "float32"
        assert net.get_layer("probabilities").compute_dtype == "float32"
        hidden = [layer for layer in net.layers if isinstance(layer, keras.layers.Dense) and layer.name != "logits"]
        assert hidden and all(layer.compute_dtype == "float16" for layer in hidden)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_unknown_model_name_is_an_error():
    cfg = OmegaConf.create({"name": "resnet", "input": "image"})
    objective = build_objective(compose_config().loss, 10)
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        build_model(cfg, (28, 28, 1), objective)
