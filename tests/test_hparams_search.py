"""A hyperparameter search over validation (conf/hparams_search/, Hydra's Optuna sweeper): the real command line
walks its grid, each job returns the validation NLL of the weights it kept, and the sweeper's choice is the
value whose run logged the lowest."""

from __future__ import annotations

import pytest
import yaml

from tests.helpers.e2e import LEAN, create_store, run_train, runs
from xent_lab.tracking import tags as T


@pytest.mark.subprocess
def test_the_mmce_lambda_search_picks_the_lowest_validation_nll(tmp_path, cache_dir):
    create_store(tmp_path)
    sweep = tmp_path / "sweep"
    # Two values of the grid, to keep it short: the command line's choice replaces the config's.
    done = run_train(
        tmp_path,
        cache_dir,
        "hparams_search=mmce_lambda",
        *LEAN,
        "loss.mmce_weight=choice(0.5,8.0)",
        f"hydra.sweep.dir={sweep}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    trained = runs(tmp_path)
    assert sorted(run.data.params["loss.mmce_weight"] for run in trained) == ["0.5", "8.0"]
    kept_nll = {float(run.data.params["loss.mmce_weight"]): run.data.metrics[T.KEPT_VAL_NLL] for run in trained}
    for run in trained:  # keep=last: the last epoch's validation NLL, as logged during training
        assert run.data.metrics[T.KEPT_VAL_NLL] == pytest.approx(run.data.metrics[T.val_metric("nll")], rel=1e-5)
    chosen = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    best = min(kept_nll, key=kept_nll.get)
    assert chosen["best_params"] == {"loss.mmce_weight": best}
    assert chosen["best_value"] == pytest.approx(kept_nll[best], rel=1e-6)
