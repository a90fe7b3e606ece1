"""The loss registry: each `loss × impl × task` gives the right head, labels and Keras loss object."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from xent_lab import objectives
from xent_lab.heads import Head
from xent_lab.objectives import BINARY, ONEHOT, SPARSE, build_objective

SIGMOID, SIGMOID_OVR, SOFTMAX = Head.SIGMOID, Head.SIGMOID_OVR, Head.SOFTMAX


def loss_cfg(name: str, impl: str = "builtin", **extra):
    cfg = {"name": name, "impl": impl, "from_logits": True, "label_smoothing": 0.0}
    if name == "focal":
        cfg.update(gamma=2.0, alpha=1.0, apply_class_balancing=False)
    cfg.update(extra)
    return OmegaConf.create(cfg)


@pytest.mark.parametrize("impl,module", [("builtin", "keras"), ("custom", "xent_lab.losses")])
@pytest.mark.parametrize(
    "name,num_classes,head,units,label_format,class_name",
    [
        ("bce", 2, SIGMOID, 1, BINARY, "BinaryCrossentropy"),
        ("bce", 10, SIGMOID_OVR, 10, ONEHOT, "BinaryCrossentropy"),
        ("cce", 2, SOFTMAX, 2, ONEHOT, "CategoricalCrossentropy"),
        ("cce", 10, SOFTMAX, 10, ONEHOT, "CategoricalCrossentropy"),
        ("sparse_cce", 2, SOFTMAX, 2, SPARSE, "SparseCategoricalCrossentropy"),
        ("sparse_cce", 10, SOFTMAX, 10, SPARSE, "SparseCategoricalCrossentropy"),
        ("focal", 2, SIGMOID, 1, BINARY, "BinaryFocalCrossentropy"),
        ("focal", 10, SOFTMAX, 10, ONEHOT, "CategoricalFocalCrossentropy"),
    ],
)
def test_registry(impl, module, name, num_classes, head, units, label_format, class_name):
    objective = build_objective(loss_cfg(name, impl), num_classes)
    assert (objective.head, objective.units, objective.label_format) == (head, units, label_format)
    assert type(objective.head) is Head
    assert type(objective.loss).__name__ == class_name
    assert type(objective.loss).__module__.startswith(module)
    assert objective.loss.get_config().get("from_logits") is True


def test_focal_arguments_reach_the_loss():
    objective = build_objective(loss_cfg("focal", gamma=3.0, alpha=0.7, apply_class_balancing=True), 2)
    config = objective.loss.get_config()
    assert (config["gamma"], config["alpha"], config["apply_class_balancing"]) == (3.0, 0.7, True)


def test_label_smoothing_reaches_the_loss():
    objective = build_objective(loss_cfg("cce", label_smoothing=0.1), 10)
    assert objective.loss.get_config()["label_smoothing"] == pytest.approx(0.1)


def test_encode_labels():
    labels = np.array([0, 2, 1])
    assert build_objective(loss_cfg("sparse_cce"), 3).encode_labels(labels).tolist() == [0, 2, 1]
    onehot = build_objective(loss_cfg("cce"), 3).encode_labels(labels)
    assert onehot.tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 0]]
    binary = build_objective(loss_cfg("bce"), 2).encode_labels(np.array([1, 0]))
    assert binary.shape == (2, 1) and binary.ravel().tolist() == [1.0, 0.0]


@pytest.mark.parametrize(
    "name,num_classes,smoothing",
    [("sparse_cce", 3, 0.0), *[(n, k, s) for n, k in [("cce", 10), ("bce", 2), ("bce", 10)] for s in (0.0, 0.2)]],
)
def test_distributions_reproduce_the_loss(name, num_classes, smoothing):
    """Cross-entropy of the (target, predicted) distributions equals the Keras loss value."""
    objective = build_objective(loss_cfg(name, label_smoothing=smoothing), num_classes)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, num_classes, size=64)
    logits = rng.normal(scale=3.0, size=(64, objective.units)).astype("float32")
    targets, predicted = objective.distributions(logits, labels)
    cross_entropy = -(targets * np.log(predicted)).sum(axis=-1).mean()
    keras_value = float(objective.loss(objective.encode_labels(labels), logits))
    assert cross_entropy == pytest.approx(keras_value, rel=1e-5)


def test_accuracy_metric_thresholds_logits_at_zero():
    objective = build_objective(loss_cfg("bce"), 2)
    metric = objective.accuracy_metric()
    metric.update_state(np.array([[1.0], [0.0]]), np.array([[0.3], [-0.2]]))  # logits: both right
    assert float(metric.result()) == 1.0
    probability_path = objectives.build_objective(loss_cfg("bce", from_logits=False), 2).accuracy_metric()
    probability_path.update_state(np.array([[1.0], [0.0]]), np.array([[0.3], [0.2]]))  # p=0.3 -> class 0
    assert float(probability_path.result()) == 0.5
