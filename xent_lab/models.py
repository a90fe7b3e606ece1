"""Model builders: a body per `model.name`, topped by the logits layer the objective asks for.

Every model has a float32 layer named `logits` (float32 also under mixed precision, so the loss
and the calibration metrics see full-precision numbers). With `loss.from_logits=false` a
`Probabilities` layer (softmax or sigmoid) follows it, whose output carries no route back to the
logits, so that the loss really works on probabilities; `logits_model` gives the logits either way,
for calibration and temperature scaling.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
from keras import layers, ops
from omegaconf import DictConfig

from xent_lab.objectives import Objective

ACTIVATIONS = ("softmax", "sigmoid")


@keras.saving.register_keras_serializable(package="xent_lab")
class Probabilities(layers.Layer):
    """softmax(z) or sigmoid(z), as plain probabilities: `exp(log_softmax(z))`, `exp(log_sigmoid(z))`.

    `layers.Activation("softmax")` would hand the loss its logits: Keras' softmax and sigmoid (also
    `keras.ops.softmax` on TensorFlow) attach them to their output as `_keras_logits`, and in a
    traced graph Keras' TensorFlow cross-entropies also take the input of a `Softmax`/`Sigmoid` op, so
    `from_logits=false` would silently train on the logits. Here the output is an `Exp` op without
    that attribute: every loss sees the probabilities (and Keras' built-ins clip them at epsilon).
    """

    def __init__(self, activation: str = "softmax", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if activation not in ACTIVATIONS:
            raise ValueError(f"Probabilities: activation={activation!r}; expected one of {', '.join(ACTIVATIONS)}")
        self.activation = activation

    def call(self, logits: Any) -> Any:
        log_p = ops.log_softmax(logits, axis=-1) if self.activation == "softmax" else ops.log_sigmoid(logits)
        return ops.exp(log_p)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "activation": self.activation}


Body = Callable[[keras.KerasTensor, DictConfig, int | None], keras.KerasTensor]


def _mlp(x: keras.KerasTensor, cfg: DictConfig, vocab_size: int | None) -> keras.KerasTensor:
    x = layers.Flatten()(x)
    for units in cfg.hidden_units:
        x = layers.Dense(units, activation="relu")(x)
        x = layers.Dropout(cfg.dropout)(x)
    return x


def _cnn(x: keras.KerasTensor, cfg: DictConfig, vocab_size: int | None) -> keras.KerasTensor:
    for filters in cfg.filters:
        x = layers.Conv2D(filters, cfg.kernel_size, activation="relu", padding="same")(x)
        x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(cfg.dropout)(x)
    return layers.Dense(cfg.dense_units, activation="relu")(x)


def _embedding_avg(x: keras.KerasTensor, cfg: DictConfig, vocab_size: int | None) -> keras.KerasTensor:
    # mask_zero: padding tokens (id 0) do not dilute the average.
    x = layers.Embedding(vocab_size, cfg.embedding_dim, mask_zero=True)(x)
    x = layers.GlobalAveragePooling1D()(x)
    x = layers.Dropout(cfg.dropout)(x)
    return layers.Dense(cfg.hidden_units, activation="relu")(x)


def _text_cnn(x: keras.KerasTensor, cfg: DictConfig, vocab_size: int | None) -> keras.KerasTensor:
    x = layers.Embedding(vocab_size, cfg.embedding_dim)(x)
    x = layers.Conv1D(cfg.filters, cfg.kernel_size, activation="relu")(x)
    x = layers.GlobalMaxPooling1D()(x)
    x = layers.Dropout(cfg.dropout)(x)
    return layers.Dense(cfg.hidden_units, activation="relu")(x)


def _bilstm(x: keras.KerasTensor, cfg: DictConfig, vocab_size: int | None) -> keras.KerasTensor:
    x = layers.Embedding(vocab_size, cfg.embedding_dim, mask_zero=True)(x)
    x = layers.Bidirectional(layers.LSTM(cfg.lstm_units))(x)
    x = layers.Dropout(cfg.dropout)(x)
    return layers.Dense(cfg.hidden_units, activation="relu")(x)


BODIES: dict[str, Body] = {
    "mlp": _mlp,
    "cnn": _cnn,
    "embedding_avg": _embedding_avg,
    "text_cnn": _text_cnn,
    "bilstm": _bilstm,
}


def build_model(
    cfg: DictConfig, input_shape: tuple[int, ...], objective: Objective, vocab_size: int | None = None
) -> keras.Model:
    """The model `cfg` describes, with the head of `objective`; inputs of `input_shape` (no batch axis)."""
    if cfg.name not in BODIES:
        raise ValueError(f"unknown model {cfg.name!r}; known: {', '.join(BODIES)}")
    dtype = "int32" if cfg.input == "text" else "float32"
    inputs = keras.Input(shape=input_shape, dtype=dtype, name="inputs")
    features = BODIES[cfg.name](inputs, cfg, vocab_size)
    outputs = layers.Dense(objective.units, dtype="float32", name="logits")(features)
    if not objective.from_logits:
        outputs = Probabilities(objective.activation, dtype="float32", name="probabilities")(outputs)
    return keras.Model(inputs, outputs, name=cfg.name)


def logits_model(model: keras.Model) -> keras.Model:
    """A model sharing `model`'s weights whose output is the `logits` layer."""
    logits = model.get_layer("logits").output
    return model if model.output is logits else keras.Model(model.inputs, logits)
