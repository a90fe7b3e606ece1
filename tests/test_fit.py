"""xent_lab.training.fit: the parts that do not need a training run (those are in test_train.py)."""

from __future__ import annotations

import numpy as np
import pytest

from xent_lab.training.fit import class_weights


def test_no_class_weight_by_default():
    assert class_weights(np.array([0, 1, 1]), 2, None) is None


def test_balanced_class_weights_equalise_the_classes():
    labels = np.array([0] * 900 + [1] * 100)
    weights = class_weights(labels, 2, "balanced")
    assert weights == pytest.approx({0: 1000 / 1800, 1: 1000 / 200})
    # Each class then carries the same total weight, n / K.
    assert weights[0] * 900 == pytest.approx(weights[1] * 100) == pytest.approx(500)


def test_balanced_class_weights_survive_an_absent_class():
    weights = class_weights(np.array([0, 0, 1]), 3, "balanced")
    assert weights[2] == pytest.approx(1.0) and weights[0] == pytest.approx(0.5)
