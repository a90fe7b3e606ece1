"""End to end: every custom loss trains on both datasets and tracks the built-in's first-epoch loss."""

from __future__ import annotations

import pytest

from tests.helpers.e2e import QUICK, QUICK_IMDB, history, run_train, runs

pytestmark = pytest.mark.slow

# Same seed, op determinism, same data order: the two implementations differ only by float32 rounding
# (relative 1e-7 per step), which one epoch of Adam updates amplifies a little.
FIRST_EPOCH_RTOL = 1e-4


@pytest.mark.parametrize("dataset", [QUICK, [*QUICK_IMDB, "trainer.epochs=2"]], ids=["mnist", "imdb"])
def test_custom_losses_match_builtin_first_epoch_loss(tmp_path, cache_dir, dataset):
    done = run_train(
        tmp_path, cache_dir, "-m", *dataset, "loss=bce,cce,sparse_cce,focal", "loss.impl=custom,builtin",
        "trainer.deterministic=true", "calibration.temperature_scaling=false",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = runs(tmp_path)
    assert len(found) == 8 and all(run.info.status == "FINISHED" for run in found)
    first_epoch = {(r.data.tags["loss"], r.data.tags["impl"]): history(tmp_path, r.info.run_id, "train/loss")[0][1]
                   for r in found}
    for loss in ("bce", "cce", "sparse_cce", "focal"):
        custom, builtin = first_epoch[loss, "custom"], first_epoch[loss, "builtin"]
        assert custom == pytest.approx(builtin, rel=FIRST_EPOCH_RTOL), loss
