"""End to end: every custom loss trains on both datasets and tracks the built-in's first-epoch loss.

In-process (one TensorFlow for all 16 trainings), on the real data shrunk by `debug=quick`.
"""

from __future__ import annotations

import pytest

from tests.helpers.e2e import QUICK, history, train_here
from xent_lab.tracking import tags as T

pytestmark = pytest.mark.slow

# Same seed, op determinism, same data order: the two implementations differ only by float32 rounding
# (relative 1e-7 per step), which one epoch of Adam updates amplifies a little.
FIRST_EPOCH_RTOL = 1e-4
# debug=quick shrinks either dataset; IMDB also gets a smaller vocabulary and shorter reviews.
IMDB = ["dataset=imdb", "dataset.vocab_size=5000", "dataset.sequence_length=128"]
LOSSES = ("bce", "cce", "sparse_cce", "focal")


@pytest.mark.parametrize("dataset", [[], IMDB], ids=["mnist", "imdb"])
def test_custom_losses_match_builtin_first_epoch_loss(tmp_path, cache_dir, dataset):
    first_epoch = {}
    for loss in LOSSES:
        for impl in ("custom", "builtin"):
            trained = train_here(
                tmp_path, cache_dir, QUICK, *dataset, f"loss={loss}", f"loss.impl={impl}",
                "trainer.deterministic=true", "calibration.temperature_scaling=false", "calibration.per_epoch=false",
                "calibration.bootstrap=0", "calibration.methods=[]",
            )  # fmt: skip
            assert trained.run.info.status == "FINISHED"
            assert (trained.run.data.tags[T.LOSS], trained.run.data.tags[T.IMPL]) == (loss, impl)
            first_epoch[loss, impl] = history(tmp_path, trained.run.info.run_id, T.TRAIN_LOSS)[0][1]
    for loss in LOSSES:
        custom, builtin = first_epoch[loss, "custom"], first_epoch[loss, "builtin"]
        assert custom == pytest.approx(builtin, rel=FIRST_EPOCH_RTOL), loss
