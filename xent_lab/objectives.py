"""The loss registry: `loss × impl` (and the task) -> the head the model needs and a Keras loss object.

A loss fixes the head:

| loss         | binary task (IMDB)                      | multi-class task (MNIST)                     |
|--------------|-----------------------------------------|----------------------------------------------|
| bce          | 1 sigmoid, BinaryCrossentropy           | k sigmoids (one-vs-rest), BinaryCrossentropy |
| cce          | 2-way softmax, CategoricalCE            | k-way softmax, CategoricalCrossentropy       |
| sparse_cce   | 2-way softmax, SparseCategoricalCE      | k-way softmax, SparseCategoricalCrossentropy |
| focal        | 1 sigmoid, BinaryFocalCE                | k-way softmax, CategoricalFocalCrossentropy  |
| sparse_focal | 2-way softmax, SparseCategoricalFocalCE | k-way softmax, SparseCategoricalFocalCE      |
| poly1        | 1 sigmoid, BinaryPolyCrossentropy       | k-way softmax, CategoricalPolyCrossentropy   |
| brier        | 2-way softmax, CategoricalBrier         | k-way softmax, CategoricalBrier              |
| mmce         | 2-way softmax, MMCECrossentropy         | k-way softmax, MMCECrossentropy              |

`impl=builtin` takes the class from `keras.losses`, `impl=custom` the class of the same name from
`xent_lab.losses`, `impl=naive` from `xent_lab.losses.naive` (the textbook formulas); all take the
same constructor arguments (naive adds `epsilon`), so the comparison is like for like. The last four
losses exist only in `xent_lab.losses` (the config check makes the other impls "not applicable").
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
from omegaconf import DictConfig, OmegaConf
from scipy import special

from xent_lab.heads import Head, binary_pair, smooth_labels

# How integer labels are encoded for the loss.
SPARSE, ONEHOT, BINARY = "sparse", "onehot", "binary"

IMPL_MODULES = {"builtin": "keras.losses", "custom": "xent_lab.losses", "naive": "xent_lab.losses.naive"}

# Losses with a softmax head on one-hot labels whatever the task, and their class.
SOFTMAX_ONEHOT = {"brier": "CategoricalBrier", "mmce": "MMCECrossentropy"}


@dataclass(frozen=True)
class Objective:
    """What a loss choice asks of the model and the labels."""

    head: Head
    units: int  # width of the logits layer
    label_format: str  # SPARSE | ONEHOT | BINARY
    from_logits: bool
    label_smoothing: float
    loss: keras.losses.Loss

    @property
    def activation(self) -> str:
        return "softmax" if self.head == Head.SOFTMAX else "sigmoid"

    def encode_labels(self, labels: np.ndarray) -> np.ndarray:
        """Integer class labels (n,) -> the targets this loss expects."""
        if self.label_format == SPARSE:
            return labels.astype("int32")
        if self.label_format == BINARY:
            return labels.astype("float32").reshape(-1, 1)
        return np.eye(self.units, dtype="float32")[labels]

    def distributions(self, logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(target, predicted) distributions along the last axis, as this loss compares them.

        Softmax heads: the smoothed one-hot targets against softmax(logits). Sigmoid heads: one
        Bernoulli pair [1 - p, p] per output, with binary smoothing y(1 - ls) + ls/2, so that the
        mean cross-entropy equals Keras' binary cross-entropy (a mean over outputs).
        """
        logits = np.asarray(logits, dtype="float64").reshape(len(labels), self.units)
        ls = self.label_smoothing
        if self.head == Head.SOFTMAX:
            return smooth_labels(np.eye(self.units)[labels], ls, self.units), special.softmax(logits, axis=-1)
        onehot = labels.reshape(-1, 1).astype("float64") if self.head == Head.SIGMOID else np.eye(self.units)[labels]
        return binary_pair(smooth_labels(onehot, ls, 2)), binary_pair(special.expit(logits))

    def accuracy_metric(self) -> keras.metrics.Metric:
        if self.head == Head.SIGMOID:
            # Logits are thresholded at 0, probabilities at 0.5: the same decision.
            return keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0 if self.from_logits else 0.5)
        if self.label_format == SPARSE:
            return keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        # argmax accuracy: for one-vs-rest sigmoids the argmax of the logits is the predicted class.
        return keras.metrics.CategoricalAccuracy(name="accuracy")


def _head(name: str, num_classes: int) -> tuple[Head, int, str, str]:
    """(head, units, label format, Keras class name) for a loss on a task with num_classes classes."""
    binary = num_classes == 2
    if name == "bce":
        return (
            (Head.SIGMOID, 1, BINARY, "BinaryCrossentropy")
            if binary
            else (Head.SIGMOID_OVR, num_classes, ONEHOT, "BinaryCrossentropy")
        )
    if name == "cce":
        return Head.SOFTMAX, num_classes, ONEHOT, "CategoricalCrossentropy"
    if name == "sparse_cce":
        return Head.SOFTMAX, num_classes, SPARSE, "SparseCategoricalCrossentropy"
    if name == "focal":
        return (
            (Head.SIGMOID, 1, BINARY, "BinaryFocalCrossentropy")
            if binary
            else (Head.SOFTMAX, num_classes, ONEHOT, "CategoricalFocalCrossentropy")
        )
    if name == "sparse_focal":
        return Head.SOFTMAX, num_classes, SPARSE, "SparseCategoricalFocalCrossentropy"
    if name == "poly1":
        return (
            (Head.SIGMOID, 1, BINARY, "BinaryPolyCrossentropy")
            if binary
            else (Head.SOFTMAX, num_classes, ONEHOT, "CategoricalPolyCrossentropy")
        )
    if name in SOFTMAX_ONEHOT:
        return Head.SOFTMAX, num_classes, ONEHOT, SOFTMAX_ONEHOT[name]
    raise ValueError(f"unknown loss {name!r}")


def _loss_kwargs(class_name: str, cfg: dict[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"from_logits": cfg["from_logits"]}
    if cfg["label_smoothing"]:
        # Only passed when used, so Keras' sparse loss (which has no such argument) works unsmoothed.
        kwargs["label_smoothing"] = cfg["label_smoothing"]
    if cfg["impl"] == "naive":
        kwargs["epsilon"] = cfg["epsilon"]
    if class_name == "BinaryFocalCrossentropy":
        kwargs.update(gamma=cfg["gamma"], alpha=cfg["alpha"], apply_class_balancing=cfg["apply_class_balancing"])
    elif class_name == "CategoricalFocalCrossentropy":
        kwargs.update(gamma=cfg["gamma"], alpha=cfg["alpha"])
    elif class_name == "SparseCategoricalFocalCrossentropy":
        kwargs.update(gamma=cfg["gamma"], alpha=cfg["alpha"], ignore_class=cfg["ignore_class"])
    elif class_name in ("BinaryPolyCrossentropy", "CategoricalPolyCrossentropy"):
        kwargs["epsilon"] = cfg["poly_epsilon"]
    elif class_name == "MMCECrossentropy":
        kwargs.update(weight=cfg["mmce_weight"], kernel_width=cfg["mmce_kernel_width"], weighted=cfg["mmce_weighted"])
    return kwargs


def build_objective(loss_cfg: DictConfig, num_classes: int) -> Objective:
    """The head, label format and Keras loss object for `loss_cfg` on a task with `num_classes` classes."""
    cfg = OmegaConf.to_container(loss_cfg, resolve=True)
    head, units, label_format, class_name = _head(cfg["name"], num_classes)
    loss_class = getattr(importlib.import_module(IMPL_MODULES[cfg["impl"]]), class_name, None)
    if loss_class is None:  # the config check says so first, as "not applicable"
        raise ValueError(
            f"loss {cfg['name']!r} has no impl {cfg['impl']!r} ({class_name} is not in {IMPL_MODULES[cfg['impl']]})"
        )
    loss = loss_class(**_loss_kwargs(class_name, cfg))
    return Objective(
        head=head,
        units=units,
        label_format=label_format,
        from_logits=cfg["from_logits"],
        label_smoothing=cfg["label_smoothing"],
        loss=loss,
    )
