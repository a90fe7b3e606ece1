"""Every loss trains on both datasets: each custom loss takes the built-in's training steps, and our own losses and
the naive impl train to finite losses.

Each case is what `xent_lab.training` builds for the config (as `pipeline.prepare` does: the loss, the model with
its head, compiled with the configured optimizer, on the real data shrunk by `debug=quick`), then a few real
compiled training steps (`train_on_batch`) on the first batches of the training split and the loss on a test
batch. A whole run per loss proved no more about the loss than its steps do: the run itself (its tags, its
record, its metrics) is tested once in tests/test_train.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.helpers.e2e import IMDB_QUICK, QUICK, compose_config
from xent_lab import data, models, objectives
from xent_lab.training import fit, pipeline
from xent_lab.training.runtime import configure_runtime

pytestmark = pytest.mark.slow

# Same seed, op determinism, same batches: the two implementations differ only by float32 rounding (relative
# 1e-7 per step), which a few Adam updates amplify a little.
STEPS_RTOL = 1e-4
STEPS = 3
DATASETS = {"mnist": (), "imdb": IMDB_QUICK}
LOSSES = ("bce", "cce", "sparse_cce", "focal")
# The loss is under test, not the calibration afterwards.
LOSS_ONLY = (
    "calibration.temperature_scaling=false", "calibration.per_epoch=false", "calibration.bootstrap=0",
    "calibration.methods=[]",
)  # fmt: skip


def impl_of(loss: object) -> str:
    """Which implementation a Keras loss object is, from its class's module."""
    module = type(loss).__module__
    return "builtin" if module.startswith("keras.") else "naive" if module == "xent_lab.losses.naive" else "custom"


@pytest.fixture(scope="module")
def datasets(tmp_path_factory, cache_dir) -> dict[str, data.Dataset]:
    """The real data as `debug=quick` shrinks it, loaded once per dataset for the module."""
    folder = tmp_path_factory.mktemp("losses-train")
    return {
        name: pipeline.load_data(compose_config(folder, cache_dir, QUICK, *extra)) for name, extra in DATASETS.items()
    }


def training_steps(tmp_path, cache_dir, datasets, dataset: str, *overrides: str) -> tuple[list[float], float]:
    """The losses of STEPS compiled training steps on the first batches of the real training split, then the
    loss on the first test batch, of the model and loss that a run of `overrides` builds (as `pipeline.prepare`)."""
    cfg = compose_config(tmp_path, cache_dir, QUICK, *DATASETS[dataset], *overrides, *LOSS_ONLY)
    configure_runtime(cfg.trainer, cfg.seed)  # seeds (so the same initial weights) and op determinism
    found = datasets[dataset]
    objective = objectives.build_objective(cfg.loss, found.num_classes)
    assert impl_of(objective.loss) == cfg.loss.impl, type(objective.loss)
    model = models.build_model(cfg.model, found.x_train.shape[1:], objective, found.vocab_size)
    fit.compile_model(model, cfg.trainer, objective)
    batch, encode = cfg.trainer.batch_size, objective.encode_labels
    losses = []
    for step in range(STEPS):
        x, y = found.x_train[step * batch : (step + 1) * batch], found.y_train[step * batch : (step + 1) * batch]
        loss = model.train_on_batch(x, encode(y), return_dict=True)["loss"]
        losses.append(float(loss))
    test_loss = objective.loss(encode(found.y_test[:batch]), model(found.x_test[:batch], training=False))
    return losses, float(test_loss)


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("loss", LOSSES)
def test_custom_loss_takes_the_builtins_training_steps(tmp_path, cache_dir, datasets, dataset, loss):
    deterministic = "trainer.deterministic=true"
    steps = {
        impl: training_steps(tmp_path, cache_dir, datasets, dataset, f"loss={loss}", f"loss.impl={impl}", deterministic)
        for impl in ("custom", "builtin")
    }
    (custom, custom_test), (builtin, builtin_test) = steps["custom"], steps["builtin"]
    assert all(math.isfinite(value) and value > 0 for value in (*custom, *builtin))
    np.testing.assert_allclose(custom, builtin, rtol=STEPS_RTOL)
    assert custom_test == pytest.approx(builtin_test, rel=STEPS_RTOL)


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize(
    "loss,impl",
    # naive focal: the binary textbook form on IMDB, the categorical one on MNIST.
    [
        ("sparse_focal", "custom"),
        ("poly1", "custom"),
        ("brier", "custom"),
        ("mmce", "custom"),
        ("focal", "naive"),
        ("logitnorm", "custom"),
        ("dual_focal", "custom"),
        ("adafocal", "custom"),
    ],
)
def test_loss_trains_to_finite_losses(tmp_path, cache_dir, datasets, dataset, loss, impl):
    losses, test_loss = training_steps(tmp_path, cache_dir, datasets, dataset, f"loss={loss}", f"loss.impl={impl}")
    assert all(math.isfinite(value) and value > 0 for value in losses), losses
    assert math.isfinite(test_loss)


def test_adafocal_gammas_are_updated_each_epoch_and_reach_the_history_and_the_sink(tmp_path, cache_dir):
    """A whole quick training with loss=adafocal: the harness adds the update, whose gamma per bin is an epoch
    value `adafocal/gamma/BIN` (in the sink, so in the run's per-epoch metrics, and in Keras' history)."""
    from xent_lab import training
    from xent_lab.losses.adafocal import gamma_metric

    cfg = compose_config(tmp_path, cache_dir, QUICK, "loss=adafocal", "trainer.epochs=2", *LOSS_ONLY)
    sink = training.MemorySink()
    result = training.train(cfg, sink)
    n_bins = cfg.loss.adafocal_bins
    names = [gamma_metric(b) for b in range(n_bins)]
    per_epoch = np.array([[event.values[name] for name in names] for event in sink.epochs])
    assert per_epoch.shape == (2, n_bins)
    np.testing.assert_array_equal(per_epoch, np.array([result.history[name] for name in names]).T)
    # The last update is the loss's state; the first moved every gamma away from 1 (no bin is exactly calibrated).
    np.testing.assert_allclose(result.setup.objective.loss.gammas.numpy(), per_epoch[-1], rtol=1e-6)
    assert np.all(per_epoch[0] != 1.0) and np.all(np.isfinite(per_epoch))
    assert np.all((per_epoch >= cfg.loss.adafocal_gamma_min) & (per_epoch <= cfg.loss.adafocal_gamma_max))


def test_mmce_logs_its_two_terms_each_epoch(tmp_path, cache_dir):
    """A quick training with loss=mmce: the cross-entropy and the MMCE term reach the sink each epoch, for training
    and validation (logged as train/loss_ce, train/loss_mmce, val/...), and add up to the loss as weighted."""
    from xent_lab import training
    from xent_lab.tracking import tags as T

    cfg = compose_config(tmp_path, cache_dir, QUICK, "loss=mmce", "trainer.epochs=2", *LOSS_ONLY)
    sink = training.MemorySink()
    training.train(cfg, sink)
    assert len(sink.epochs) == 2
    for event in sink.epochs:
        for prefix in ("", "val_"):
            loss, ce, mmce = (event.values[f"{prefix}{name}"] for name in ("loss", "loss_ce", "loss_mmce"))
            assert loss == pytest.approx(ce + cfg.loss.mmce_weight * mmce, rel=1e-5)
            assert ce > 0 and mmce > 0
    assert [T.metric_name(key) for key in ("loss_ce", "val_loss_mmce")] == ["train/loss_ce", "val/loss_mmce"]
