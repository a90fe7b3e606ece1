"""The loss registry: each `loss × impl × task` gives the right head, labels and Keras loss object; the README's
loss table, the presets in conf/loss/ and the registry agree."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf

import xent_lab.losses
from tests.helpers.e2e import CONF_DIR, ROOT, composed
from xent_lab import objectives
from xent_lab.heads import Head
from xent_lab.losses import registry
from xent_lab.losses.registry import BINARY, ONEHOT, SPARSE
from xent_lab.objectives import build_objective

SIGMOID, SIGMOID_OVR, SOFTMAX = Head.SIGMOID, Head.SIGMOID_OVR, Head.SOFTMAX


def loss_cfg(name: str, impl: str = "builtin", **extra):
    """A loss config as conf/loss/NAME.yaml composes it (the preset's own keys with their defaults)."""
    cfg = {"name": name, "impl": impl, "from_logits": True, "label_smoothing": 0.0, "epsilon": 1e-15}
    cfg.update(PRESET_KEYS.get(name, {}))
    cfg.update(extra)
    return OmegaConf.create(cfg)


PRESET_KEYS = {
    "focal": {"gamma": 2.0, "alpha": 1.0, "apply_class_balancing": False},
    "sparse_focal": {"gamma": 2.0, "alpha": 1.0, "ignore_class": None},
    "poly1": {"poly_epsilon": 1.0},
    "mmce": {"mmce_weight": 2.0, "mmce_kernel_width": 0.4, "mmce_weighted": True},
    "confidence_penalty": {"cp_beta": 0.1},
    "mbls": {"mbls_margin": 10.0, "mbls_weight": 0.1},
    "mdca": {"mdca_beta": 1.0},
    "logitnorm": {"logitnorm_tau": 0.01},
    "dual_focal": {"gamma": 5.0},
    "adafocal": {
        "adafocal_bins": 15,
        "adafocal_gamma_initial": 1.0,
        "adafocal_lambda": 1.0,
        "adafocal_switch": 0.2,
        "adafocal_gamma_min": -2.0,
        "adafocal_gamma_max": 20.0,
    },
}


@pytest.mark.parametrize(
    "impl,module", [("builtin", "keras"), ("custom", "xent_lab.losses"), ("naive", "xent_lab.losses.naive")]
)
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
    assert (type(objective.loss).__module__ == "xent_lab.losses.naive") == (impl == "naive")


@pytest.mark.parametrize(
    "name,num_classes,head,units,label_format,class_name",
    [
        ("sparse_focal", 2, SOFTMAX, 2, SPARSE, "SparseCategoricalFocalCrossentropy"),
        ("sparse_focal", 10, SOFTMAX, 10, SPARSE, "SparseCategoricalFocalCrossentropy"),
        ("poly1", 2, SIGMOID, 1, BINARY, "BinaryPolyCrossentropy"),
        ("poly1", 10, SOFTMAX, 10, ONEHOT, "CategoricalPolyCrossentropy"),
        ("brier", 2, SOFTMAX, 2, ONEHOT, "CategoricalBrier"),
        ("brier", 10, SOFTMAX, 10, ONEHOT, "CategoricalBrier"),
        ("mmce", 2, SOFTMAX, 2, ONEHOT, "MMCECrossentropy"),
        ("mmce", 10, SOFTMAX, 10, ONEHOT, "MMCECrossentropy"),
        ("confidence_penalty", 2, SOFTMAX, 2, ONEHOT, "ConfidencePenaltyCrossentropy"),
        ("confidence_penalty", 10, SOFTMAX, 10, ONEHOT, "ConfidencePenaltyCrossentropy"),
        ("mbls", 2, SOFTMAX, 2, ONEHOT, "MbLSCrossentropy"),
        ("mbls", 10, SOFTMAX, 10, ONEHOT, "MbLSCrossentropy"),
        ("mdca", 2, SOFTMAX, 2, ONEHOT, "MDCACrossentropy"),
        ("mdca", 10, SOFTMAX, 10, ONEHOT, "MDCACrossentropy"),
        ("logitnorm", 2, SOFTMAX, 2, ONEHOT, "LogitNormCrossentropy"),
        ("logitnorm", 10, SOFTMAX, 10, ONEHOT, "LogitNormCrossentropy"),
        ("dual_focal", 2, SOFTMAX, 2, ONEHOT, "DualFocalCrossentropy"),
        ("dual_focal", 10, SOFTMAX, 10, ONEHOT, "DualFocalCrossentropy"),
        ("adafocal", 2, SOFTMAX, 2, ONEHOT, "AdaFocalCrossentropy"),
        ("adafocal", 10, SOFTMAX, 10, ONEHOT, "AdaFocalCrossentropy"),
    ],
)
def test_registry_of_our_own_losses(name, num_classes, head, units, label_format, class_name):
    objective = build_objective(loss_cfg(name, "custom"), num_classes)
    assert (objective.head, objective.units, objective.label_format) == (head, units, label_format)
    assert type(objective.loss) is getattr(xent_lab.losses, class_name)
    with pytest.raises(ValueError, match=f"loss '{name}' has no impl 'builtin' \\(only custom\\)"):
        build_objective(loss_cfg(name, "builtin"), num_classes)


@pytest.mark.parametrize(
    "name,extra,expected",
    [
        (
            "sparse_focal",
            {"gamma": "flsd53", "alpha": [1.0, 2.0], "ignore_class": 1},
            {"gamma": "flsd53", "alpha": [1.0, 2.0], "ignore_class": 1},
        ),
        ("poly1", {"poly_epsilon": -0.5}, {"epsilon": -0.5}),
        (
            "mmce",
            {"mmce_weight": 2.5, "mmce_kernel_width": 0.2, "mmce_weighted": True},
            {"weight": 2.5, "kernel_width": 0.2, "weighted": True},
        ),
        ("confidence_penalty", {"cp_beta": 0.5}, {"beta": 0.5}),
        ("mbls", {"mbls_margin": 6.0, "mbls_weight": 0.3}, {"margin": 6.0, "weight": 0.3}),
        ("mdca", {"mdca_beta": 5.0}, {"beta": 5.0}),
        ("logitnorm", {"logitnorm_tau": 0.04}, {"tau": 0.04}),
        ("dual_focal", {"gamma": 2.6}, {"gamma": 2.6}),
        (
            "adafocal",
            {
                "adafocal_bins": 10,
                "adafocal_gamma_initial": 2.0,
                "adafocal_lambda": 0.5,
                "adafocal_switch": 0.1,
                "adafocal_gamma_min": -3.0,
                "adafocal_gamma_max": 10.0,
            },
            {"n_bins": 10, "gamma_initial": 2.0, "lam": 0.5, "switch": 0.1, "gamma_min": -3.0, "gamma_max": 10.0},
        ),
    ],
)
def test_preset_keys_reach_our_losses(name, extra, expected):
    config = build_objective(loss_cfg(name, "custom", **extra), 2).loss.get_config()
    assert {key: config[key] for key in expected} == expected


def test_epsilon_reaches_only_the_naive_losses():
    naive = build_objective(loss_cfg("cce", "naive", epsilon=1e-9), 10).loss
    assert naive.get_config()["epsilon"] == 1e-9
    assert "epsilon" not in build_objective(loss_cfg("cce", "custom", epsilon=1e-9), 10).loss.get_config()


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


# --------------------------------------------------------------------------- the registry's other readers

PRESETS = sorted(Path(CONF_DIR, "loss").glob("[!_]*.yaml"))


def test_every_loss_has_a_preset_of_its_name_and_every_preset_is_a_loss():
    presets = {path.stem: composed(f"loss={path.stem}").loss for path in PRESETS}
    assert {name: presets[name].name for name in registry.LOSSES} == {name: name for name in registry.LOSSES}
    assert {cfg.name for cfg in presets.values()} == set(registry.LOSSES)
    common = set(yaml.safe_load(Path(CONF_DIR, "loss", "_common.yaml").read_text()))
    assert common == {"impl", "from_logits", "label_smoothing", "class_weight", "epsilon"}
    assert common == {"impl"} | {key.name for key in registry.COMMON_KEYS}
    for name, loss in registry.LOSSES.items():
        # The registry checks every key the preset sets, and the preset sets every key the registry reads.
        assert set(presets[name]) == common | {"name"} | {key.name for key in loss.keys}, name


def test_the_readme_loss_table_is_the_registrys():
    readme = (ROOT / "README.md").read_text()
    assert registry.with_table(readme) == readme, "run: python -m xent_lab.losses.registry README.md"
    table = registry.markdown_table()
    assert table in readme and table.count("\n") == 1 + len(registry.REGISTRY)
    assert (
        "| `focal` | 1 sigmoid, 0/1 labels, `BinaryFocalCrossentropy` | 10-way softmax, one-hot labels, "
        "`CategoricalFocalCrossentropy` | custom, builtin, naive | `gamma`: a number >= 0 or 'flsd53'; "
        "`alpha`: a number >= 0 or a list with one weight per class; `apply_class_balancing`: true or false |"
    ) in table.splitlines()


def test_the_table_follows_a_change_to_the_registry(monkeypatch):
    readme = (ROOT / "README.md").read_text()
    brier = registry.LOSSES["brier"]
    monkeypatch.setattr(registry, "REGISTRY", (*registry.REGISTRY, replace(brier, name="brier2")))
    assert "| `brier2` | 2-way softmax, one-hot labels, `CategoricalBrier` |" in registry.with_table(readme)
    assert registry.with_table(readme) != readme


def test_registry_entries_name_their_module_and_classes():
    sparse_focal = registry.LOSSES["sparse_focal"]
    assert sparse_focal.module == "xent_lab.losses.sparse_focal"
    assert sparse_focal.multiclass.custom is xent_lab.losses.SparseCategoricalFocalCrossentropy
    assert (sparse_focal.multiclass.builtin, sparse_focal.multiclass.naive, sparse_focal.impls) == (
        None,
        None,
        ("custom",),
    )
    focal = registry.LOSSES["focal"]
    assert focal.binary.builtin is keras.losses.BinaryFocalCrossentropy
    assert focal.multiclass.naive is xent_lab.losses.naive.CategoricalFocalCrossentropy
    assert focal.impls == ("custom", "builtin", "naive")
    assert [loss.name for loss in registry.REGISTRY if loss.impls == registry.IMPLS] == [
        "bce", "cce", "sparse_cce", "focal"
    ]  # fmt: skip
