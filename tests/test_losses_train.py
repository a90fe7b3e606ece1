"""End to end: every custom loss trains on both datasets and tracks the built-in's first-epoch loss; our own
losses and the naive impl train on both datasets from the config.

In-process (one TensorFlow for all 26 trainings), on the real data shrunk by `debug=quick`.
"""

from __future__ import annotations

import math

import pytest

from tests.helpers.e2e import IMDB_QUICK, QUICK, history, train_here
from xent_lab.tracking import tags as T

pytestmark = pytest.mark.slow

# Same seed, op determinism, same data order: the two implementations differ only by float32 rounding
# (relative 1e-7 per step), which one epoch of Adam updates amplifies a little.
FIRST_EPOCH_RTOL = 1e-4
IMDB = list(IMDB_QUICK)
LOSSES = ("bce", "cce", "sparse_cce", "focal")
# The loss is under test, not the calibration afterwards.
LOSS_ONLY = (
    "calibration.temperature_scaling=false", "calibration.per_epoch=false", "calibration.bootstrap=0",
    "calibration.methods=[]",
)  # fmt: skip


@pytest.mark.parametrize("dataset", [[], IMDB], ids=["mnist", "imdb"])
def test_custom_losses_match_builtin_first_epoch_loss(tmp_path, cache_dir, dataset):
    first_epoch = {}
    for loss in LOSSES:
        for impl in ("custom", "builtin"):
            trained = train_here(
                tmp_path, cache_dir, QUICK, *dataset, f"loss={loss}", f"loss.impl={impl}",
                "trainer.deterministic=true", *LOSS_ONLY,
            )  # fmt: skip
            assert trained.run.info.status == "FINISHED"
            assert (trained.run.data.tags[T.LOSS], trained.run.data.tags[T.IMPL]) == (loss, impl)
            first_epoch[loss, impl] = history(tmp_path, trained.run.info.run_id, T.TRAIN_LOSS)[0][1]
    for loss in LOSSES:
        custom, builtin = first_epoch[loss, "custom"], first_epoch[loss, "builtin"]
        assert custom == pytest.approx(builtin, rel=FIRST_EPOCH_RTOL), loss


@pytest.mark.parametrize("dataset", [[], IMDB], ids=["mnist", "imdb"])
@pytest.mark.parametrize(
    "loss,impl",
    # naive focal: the binary textbook form on IMDB, the categorical one on MNIST.
    [("sparse_focal", "custom"), ("poly1", "custom"), ("brier", "custom"), ("mmce", "custom"), ("focal", "naive")],
)
def test_loss_trains_to_finite_losses(tmp_path, cache_dir, dataset, loss, impl):
    trained = train_here(tmp_path, cache_dir, QUICK, *dataset, f"loss={loss}", f"loss.impl={impl}", *LOSS_ONLY)
    assert trained.run.info.status == "FINISHED"
    assert (trained.run.data.tags[T.LOSS], trained.run.data.tags[T.IMPL]) == (loss, impl)
    (_, train_loss), *_ = history(tmp_path, trained.run.info.run_id, T.TRAIN_LOSS)
    assert math.isfinite(train_loss) and train_loss > 0
    assert math.isfinite(trained.results[T.TEST_LOSS])
