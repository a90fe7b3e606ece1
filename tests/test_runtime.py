"""xent_lab.training.runtime: device, precision, seeds and determinism, job after job in one process."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from tests.helpers.e2e import IMDB_QUICK, QUICK, train_here
from xent_lab.errors import ConfigError
from xent_lab.tracking import tags as T
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


def test_mixed_bfloat16_runs_on_a_cpu():
    """bfloat16 keeps float32's exponent range: a CPU computes it (slowly, but the stability study needs it)."""
    import keras

    runtime = configure_runtime(trainer(precision="mixed_bfloat16"), seed=1)
    assert runtime.precision == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().compute_dtype == "bfloat16"
    configure_runtime(trainer(), seed=1)
    assert keras.mixed_precision.global_policy().compute_dtype == "float32"


@pytest.mark.slow
@pytest.mark.parametrize("dataset", [(), IMDB_QUICK], ids=["mnist", "imdb"])
def test_a_mixed_bfloat16_training_on_a_cpu_has_finite_losses(tmp_path, cache_dir, dataset):
    import math

    trained = train_here(
        tmp_path, cache_dir, QUICK, *dataset, "trainer.precision=mixed_bfloat16", "calibration.bootstrap=0",
        "calibration.methods=[]",
    )  # fmt: skip
    assert trained.run.info.status == "FINISHED"
    assert trained.run.data.params["trainer.precision"] == "mixed_bfloat16"
    assert math.isfinite(trained.results[T.TEST_LOSS]) and trained.results[T.TEST_ACCURACY] > 0.5
