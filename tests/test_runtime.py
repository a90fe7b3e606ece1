"""xent_lab.training.runtime: device, precision, seeds and determinism, job after job in one process."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from xent_lab.errors import ConfigError
from xent_lab.training.runtime import configure_runtime


def trainer(**changes):
    return OmegaConf.create({"device": "cpu", "precision": "float32", "deterministic": False, **changes})


def test_determinism_follows_each_job_not_the_previous_one():
    from tensorflow.python.framework.config import is_op_determinism_enabled

    configure_runtime(trainer(deterministic=True), seed=0)
    assert is_op_determinism_enabled()
    configure_runtime(trainer(deterministic=False), seed=0)
    assert not is_op_determinism_enabled()


def test_cpu_runtime_is_named_and_mixed_precision_needs_a_gpu():
    runtime = configure_runtime(trainer(), seed=1)
    assert (runtime.device, runtime.device_name, runtime.precision) == ("cpu", "CPU", "float32")
    with pytest.raises(ConfigError, match="mixed_float16 needs a GPU"):
        configure_runtime(trainer(precision="mixed_float16"), seed=1)
