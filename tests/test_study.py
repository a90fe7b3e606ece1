"""Studies: the experiment files compose, runs are grouped under a parent, relaunches skip, reports list failures.

The end-to-end tests launch `python -m xent_lab.train experiment=mnist_losses` (a real Hydra multirun,
in a subprocess, on real MNIST) shrunk by `debug=quick` to a few one-epoch jobs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from mlflow.tracking import MlflowClient
from omegaconf import open_dict

import xent_lab.sweep  # noqa: F401 - registers ${launch_id:}, which the composed `hydra` node resolves
from tests.helpers.e2e import CONF_DIR, LEAN, ROOT, composed, create_store, run_train, store_uri
from xent_lab import config, study

# Files whose name starts with "_" are shared bases (experiments/_study.yaml), not studies.
STUDIES = sorted(path.stem for path in (ROOT / "experiments").glob("*.yaml") if not path.stem.startswith("_"))


def compose_config(*overrides: str, hydra: bool = True):
    """The composed config; `hydra=False` gives what a job's task function sees (no `hydra` node)."""
    if not hydra:
        return composed(*overrides)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra)


def study_runs(workdir: Path, experiment: str = "mnist_losses"):
    """(parents, children) of the study's experiment, oldest first."""
    client = MlflowClient(store_uri(workdir))
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment}"
    all_runs = list(reversed(client.search_runs([found.experiment_id], max_results=1000)))
    parents = [r for r in all_runs if r.data.tags.get("xent.role") == "parent"]
    children = [r for r in all_runs if r.data.tags.get("xent.role") == "child"]
    return parents, children


def launch(workdir: Path, cache_dir: Path, *overrides: str, report_dir: Path | None = None):
    """A LEAN launch of mnist_losses on a migrated store (a fresh store's creation is tested once, in
    test_reliability_launch)."""
    report = [f"study.report_dir={report_dir}"] if report_dir else ["study.report=false"]
    create_store(workdir)
    return run_train(workdir, cache_dir, "experiment=mnist_losses", *LEAN, *report, *overrides)


# --------------------------------------------------------------------------- composition


@pytest.mark.parametrize("name", STUDIES)
def test_every_study_composes_validates_and_names_its_sweep(name):
    cfg = compose_config(f"experiment={name}")
    config.validate(cfg)
    assert cfg.study.name == name and cfg.tracking.experiment == name
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    params = cfg.hydra.sweeper.params
    seeds = params.seed.split(",")  # sized per study (tests/test_power.py)
    assert seeds == [str(i) for i in range(len(seeds))] and len(seeds) >= 3 and len(params) >= 3
    assert cfg.hydra.callbacks.study._target_ == "xent_lab.sweep.callback.StudyCallback"


def test_the_shipped_studies_cover_the_issue():
    assert {"mnist_losses", "imdb_losses", "mnist_imbalance", "stability", "overfit_calibration"} <= set(STUDIES)
    mnist = compose_config("experiment=mnist_losses").hydra.sweeper.params
    assert set(mnist.loss.split(",")) == {
        *("cce", "sparse_cce", "bce", "focal", "focal_flsd53", "cce_smoothed"),
        *("sparse_focal", "poly1", "brier", "mmce"),
    }
    assert mnist["loss.impl"] == "custom,builtin"
    imbalance = compose_config("experiment=mnist_imbalance")
    assert imbalance.dataset.imbalance == 100 and imbalance.hydra.sweeper.params["loss.class_weight"] == "null,balanced"
    assert "sparse_focal" in imbalance.hydra.sweeper.params.loss.split(",")
    overfit = compose_config("experiment=overfit_calibration")
    assert set(overfit.hydra.sweeper.params.loss.split(",")) == {
        *("cce", "brier", "mmce", "cce_smoothed05", "poly1"),
        *("focal_gamma1", "focal", "focal_gamma3", "focal_flsd53"),
    }
    assert overfit.trainer.keep == "best_val_accuracy" and overfit.study.claims == "focal_calibration"
    for dataset, model in (("imdb", "text_cnn"), ("mnist", "cnn")):  # each dataset its own no-dropout model
        cfg = compose_config("experiment=overfit_calibration", f"dataset={dataset}")
        assert (cfg.model.name, cfg.model.dropout) == (model, 0.0)
        assert cfg.trainer.epochs == cfg.study.per_dataset.epochs[dataset]
    stability = compose_config("experiment=stability").hydra.sweeper.params
    assert stability["loss.from_logits"] == "true,false" and stability["loss.impl"] == "custom,builtin,naive"
    assert compose_config("experiment=imdb_losses").dataset.name == "imdb"


def test_loss_presets_set_what_their_names_say():
    flsd = compose_config("loss=focal_flsd53").loss
    assert (flsd.name, flsd.gamma, flsd.impl) == ("focal", "flsd53", "custom")
    smoothed = compose_config("loss=cce_smoothed").loss
    assert (smoothed.name, smoothed.label_smoothing) == ("cce", 0.1)
    assert compose_config("loss=cce_smoothed05").loss.label_smoothing == 0.05
    for gamma in (1, 3):
        focal = compose_config(f"loss=focal_gamma{gamma}").loss
        assert (focal.name, focal.gamma) == ("focal", gamma)


def test_slurm_launcher_config_composes_to_submitit_settings():
    """No cluster here: check the composed launcher settings and that Hydra can build the launcher."""
    cfg = compose_config("experiment=mnist_losses", "hydra/launcher=slurm", "hydra.launcher.partition=gpu")
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.partition, launcher.gpus_per_node, launcher.cpus_per_task) == ("gpu", 1, 8)
    assert launcher.timeout_min == 60 and launcher.array_parallelism == 16
    assert launcher.submitit_folder.startswith("multirun/mnist_losses/") and launcher.submitit_folder.endswith("%j")
    built = instantiate(launcher)
    assert type(built).__name__ == "SlurmLauncher" and built.params["partition"] == "gpu"


def test_joblib_launcher_is_available():
    launcher = compose_config(
        "experiment=mnist_losses", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"
    ).hydra.launcher
    assert launcher._target_.endswith("JoblibLauncher") and launcher.n_jobs == 2


# --------------------------------------------------------------------------- config hash and overrides


def test_config_hash_ignores_where_files_live_but_not_what_is_trained():
    digest = study.config_hash(compose_config(hydra=False))
    moved = compose_config(
        "dataset.data_dir=/elsewhere", "tracking.experiment=x", "trainer.verbose=0", "study.name=other", hydra=False
    )
    assert study.config_hash(moved) == digest
    for changed in ("seed=1", "loss=focal", "loss.impl=custom", "trainer.epochs=3", "dataset.imbalance=10"):
        assert study.config_hash(compose_config(changed, hydra=False)) != digest, changed


ADDED_SINCE_THE_RESTRUCTURING = (
    *("calibration.bootstrap", "calibration.bootstrap_seed", "calibration.methods"),
    *("calibration.temperature_objective", "loss.epsilon"),
    *("trainer.on_nonfinite", "trainer.gradient_probe", "trainer.keep"),
)
# Whole groups added since the sweep layer moved (the shifted test sets), dropped for the same reason.
ADDED_SINCE_THE_SWEEP_LAYER_MOVED = ("evaluation",)


@pytest.mark.parametrize(
    "overrides,digest",
    [
        ((), "a3f4c44bdda4a208"),
        (("loss=focal_flsd53", "seed=2"), "0d9039bed7900761"),
        (("experiment=mnist_losses", "loss=cce_smoothed", "loss.impl=custom", "seed=1"), "8651775083b6a08e"),
        (("experiment=imdb_losses", "loss=bce"), "491c8318d343f4c2"),
    ],
)
def test_config_hashes_survive_the_restructured_config_files(overrides, digest):
    """The digests were computed before the config files were restructured (shared loss keys in
    loss/_common.yaml, shared study settings in experiments/_study.yaml): the composed content is the same.

    Keys added since (the bootstrap and recalibration settings, the naive loss's epsilon) change every hash, and
    should: a run from before them lacks their metrics, so a relaunch trains it again rather than reuse it."""
    cfg = compose_config(*overrides, hydra=False)
    with open_dict(cfg):
        for key in ADDED_SINCE_THE_RESTRUCTURING:
            group, name = key.split(".")
            cfg[group].pop(name)
        for group in ADDED_SINCE_THE_SWEEP_LAYER_MOVED:
            cfg.pop(group)
    assert study.config_hash(cfg) == digest


@pytest.mark.parametrize(
    "overrides,digest",
    [
        ((), "27fa5b5abedeacf8"),
        (("experiment=imdb_losses",), "27fa7e83de486e7f"),
        (("experiment=mnist_losses", "seed=2", "loss=focal"), "17f3176fd60d1b42"),
        (("experiment=mnist_imbalance", "seed=2", "loss=focal"), "ecc3c6e71889c21a"),
        (("experiment=overfit_calibration", "seed=2", "loss=focal"), "597e8100ae70c07d"),
        (("experiment=stability", "seed=2", "loss=focal"), "fe5e0c4d858a59b1"),
    ],
)
def test_the_committed_studies_hash_as_before_the_sweep_layer_moved(overrides, digest):
    """Digests computed before the Hydra callback moved from xent_lab.study to xent_lab.sweep: its `_target_` is in
    the `hydra` node, which a job's config does not have, so no stored run's hash changed. The groups added since
    change every hash, and should (a run from before them lacks their metrics): they are dropped here."""
    cfg = compose_config(*overrides, hydra=False)
    assert "hydra" not in cfg
    with open_dict(cfg):
        for group in ADDED_SINCE_THE_SWEEP_LAYER_MOVED:
            cfg.pop(group)
    assert study.config_hash(cfg) == digest


def test_sweep_of_merges_sweeper_params_and_command_line_sweeps():
    cfg = compose_config("experiment=mnist_losses")
    with open_dict(cfg):
        cfg.hydra.overrides.task = ["loss=cce,focal", "seed=3", "trainer.epochs=2"]
    sweep = study.sweep_of(cfg)
    # The command line replaces the study's values for a swept key; other single values are not sweeps.
    assert sweep["loss"] == "cce,focal" and sweep["loss.impl"] == "custom,builtin"
    assert sweep["seed"] == "3" and "trainer.epochs" not in sweep
    assert not study.is_published(cfg)
    with open_dict(cfg):
        cfg.hydra.overrides.task = ["experiment=mnist_losses"]
    assert study.is_published(cfg)  # only such a launch writes experiments/mnist_losses/REPORT.md


# --------------------------------------------------------------------------- end to end


def report_row(report: str, variant: str, impl: str) -> str:
    rows = [line for line in report.splitlines() if line.startswith("|") and variant in line and f"| {impl}" in line]
    assert rows, f"no table row for {variant} {impl} in the report"
    return rows[0]


@pytest.mark.subprocess
def test_mini_study_groups_runs_reports_and_resumes(tmp_path, cache_dir):
    report_dir = tmp_path / "report"
    sweep = ["loss=cce,focal", "seed=0,1", "loss.impl=builtin"]
    done = launch(tmp_path, cache_dir, *sweep, report_dir=report_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    parents, children = study_runs(tmp_path)
    assert len(parents) == 1 and len(children) == 4
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["xent.study"] == "mnist_losses"
    assert json.loads(parent.data.tags["xent.sweep"])["loss"] == "cce,focal"
    # The launch's declared questions, read by the report before those of any reused run.
    assert parent.data.tags["xent.questions"].startswith("[{'id': 'Q1', 'label': 'FLSD-53 lowers the ECE")
    # One progress line per finished job; the parent run keeps the last.
    assert "job 1/4 done (mnist-" in done.stdout and "left" in done.stdout
    assert parent.data.tags["xent.progress"].startswith("job 4/4 done (mnist-")
    assert parent.data.tags["xent.progress"].endswith("all done")
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    overrides = sorted((json.loads(c.data.tags["xent.job_overrides"])["loss"], c.data.tags["seed"]) for c in children)
    assert overrides == [("cce", "0"), ("cce", "1"), ("focal", "0"), ("focal", "1")]
    assert len({c.data.tags["xent.config_hash"] for c in children}) == 4

    # The report's table agrees with the runs' own metrics, and it was logged to the parent run.
    report = (report_dir / "REPORT.md").read_text()
    for loss in ("cce", "focal"):
        accuracies = [c.data.metrics["test/accuracy"] for c in children if c.data.tags["loss"] == loss]
        assert f"{np.mean(accuracies):.4f}" in report_row(report, f"loss={loss}", "builtin")
    assert any(path.suffix == ".png" for path in report_dir.iterdir())
    logged = {a.path for a in MlflowClient(store_uri(tmp_path)).list_artifacts(parent.info.run_id, "report")}
    assert "report/REPORT.md" in logged

    # A relaunch trains nothing: every job finds its finished run by config hash.
    again = launch(tmp_path, cache_dir, *sweep, report_dir=report_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("skipped: finished run") == 4
    parents, children_after = study_runs(tmp_path)
    assert len(parents) == 2 and len(children_after) == 4
    reused = {k: v for k, v in parents[1].data.tags.items() if k.startswith("xent.reused.")}
    assert sorted(reused.values()) == sorted(c.info.run_id for c in children)
    assert parents[1].info.status == "FINISHED"
    assert (
        f"{np.mean([c.data.metrics['test/accuracy'] for c in children if c.data.tags['loss'] == 'cce']):.4f}"
        in report_row((report_dir / "REPORT.md").read_text(), "loss=cce", "builtin")
    )


@pytest.mark.subprocess
def test_parallel_jobs_share_one_sqlite_store(tmp_path, cache_dir):
    """2 jobs at once on 2 joblib worker processes, both writing to one SQLite file."""
    done = launch(
        tmp_path,
        cache_dir,
        "loss=cce",
        "seed=0,1",
        "loss.impl=builtin",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "database is locked" not in done.stdout + done.stderr
    parents, children = study_runs(tmp_path)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 2 and {c.info.status for c in children} == {"FINISHED"}
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    # Every job logged its whole history, none lost a write.
    client = MlflowClient(store_uri(tmp_path))
    for child in children:
        assert len(client.get_metric_history(child.info.run_id, "val/loss")) == 1
        assert "test/accuracy" in child.data.metrics


@pytest.mark.subprocess
def test_a_failed_job_does_not_stop_the_study_and_is_reported(tmp_path, cache_dir):
    report_dir = tmp_path / "report"
    done = launch(
        tmp_path,
        cache_dir,
        "loss=cce",
        "loss.impl=builtin",
        "seed=0",
        "trainer.optimizer.learning_rate=0.001,1e30",
        report_dir=report_dir,
    )
    assert done.returncode == 1, done.stderr[-3000:]
    assert "1 job(s) failed" in done.stderr
    parents, children = study_runs(tmp_path)
    assert parents[0].info.status == "FINISHED" and parents[0].data.tags["xent.failed_jobs"] == "1"
    failed = [c for c in children if c.info.status == "FAILED"]
    assert len(children) == 2 and len(failed) == 1
    assert "loss became" in failed[0].data.tags["failure_reason"]
    report = (report_dir / "REPORT.md").read_text()
    assert failed[0].info.run_id in report and "loss became" in report


@pytest.mark.subprocess
def test_a_job_that_fails_before_training_gets_a_failed_run(tmp_path, cache_dir):
    done = launch(
        tmp_path,
        cache_dir,
        "loss=cce",
        "loss.impl=builtin",
        "seed=0,1",
        "dataset.data_dir=/nonexistent",
        "dataset.download=false",
    )
    assert done.returncode == 1
    parents, children = study_runs(tmp_path)
    assert parents[0].info.status == "FINISHED"
    assert len(children) == 2 and {c.info.status for c in children} == {"FAILED"}
    assert all("/nonexistent" in c.data.tags["failure_reason"] for c in children)


@pytest.mark.subprocess
def test_a_plain_sweep_whose_jobs_fail_exits_1_and_says_which(tmp_path, cache_dir):
    # No study: no parent run to search, so the launch counts the FAILED files its jobs leave behind.
    create_store(tmp_path)
    done = run_train(
        tmp_path, cache_dir, "-m", *LEAN, "seed=0,1", "dataset.data_dir=/nonexistent", "dataset.download=false"
    )
    assert done.returncode == 1, done.stderr[-3000:]
    assert "2 job(s) of the sweep failed" in done.stderr and "/nonexistent" in done.stderr
    reasons = sorted(tmp_path.glob("multirun/*/*/*/FAILED"))
    assert len(reasons) == 2 and all("/nonexistent" in path.read_text() for path in reasons)


@pytest.mark.subprocess
def test_not_applicable_combinations_are_skipped_not_failed(tmp_path, cache_dir):
    published = ROOT / "experiments" / "mnist_losses" / "REPORT.md"
    before = published.read_bytes() if published.exists() else None
    # With the report on and no report_dir: a launch with command-line changes must not touch the
    # committed report; its report goes into the sweep folder.
    create_store(tmp_path)
    done = run_train(
        tmp_path, cache_dir, "experiment=mnist_losses", *LEAN, "loss=focal_flsd53", "loss.impl=custom,builtin", "seed=0"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (published.read_bytes() if published.exists() else None) == before
    assert len(list((tmp_path / "multirun" / "mnist_losses").glob("*/report/REPORT.md"))) == 1
    assert "not applicable, skipped" in done.stdout
    _, children = study_runs(tmp_path)
    assert [(c.data.tags["impl"], c.info.status) for c in children] == [("custom", "FINISHED")]
    assert re.search(r"1 jobs run \(0 failed\)", done.stdout)
