"""A job's local record and `python -m xent_lab.relog`: a run whose tracking server went away is not lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers.e2e import QUICK, create_store, train_command, train_env
from xent_lab import relog as relog_cli
from xent_lab import tracking
from xent_lab.errors import XentError
from xent_lab.tracking import record
from xent_lab.tracking import relog as relog_module
from xent_lab.tracking.relog import relog
from xent_lab.tracking.server import start_server


def write_record(output_dir: Path, uri: str, status: str = "FINISHED") -> None:
    """A record as a job writes it, through a Tracker whose store is `uri`, with a checkpoint shaped as Keras
    writes one (a zip archive of these members; relog reads it without Keras)."""
    tracker = tracking.Tracker(uri, "exp")
    with tracker.run("job", tags={"loss": "cce"}, record_dir=output_dir) as run:
        run.log_params({"trainer.epochs": "2"})
        for epoch in range(2):
            run.log_metrics({"train/loss": 1.0 / (epoch + 1), "val/loss": 2.0 / (epoch + 1)}, step=epoch)
        run.log_text("a: 1\n", "config/config.yaml")
    with zipfile.ZipFile(output_dir / record.CHECKPOINT, "w") as archive:
        for member in ("metadata.json", "config.json", "model.weights.h5"):
            archive.writestr(member, "{}")


def lose_server(output_dir: Path) -> None:
    """Mark the record as a lost server leaves it: an MLflow call failed, the run in the store is incomplete."""
    recorded = record.load(output_dir)
    recorded.info.complete_in_mlflow = False
    record.save_info(recorded.folder, recorded.info)


def test_the_record_holds_everything_that_was_logged(tmp_path):
    write_record(tmp_path / "job", create_store(tmp_path))
    recorded = record.load(tmp_path / "job")
    assert recorded.info.status == "FINISHED" and recorded.info.run_name == "job"
    assert recorded.info.params == {"trainer.epochs": "2"} and recorded.info.tags["loss"] == "cce"
    assert recorded.info.tracking_uri.startswith("sqlite:///")
    assert [(m["key"], m["step"]) for m in recorded.metrics] == [
        ("train/loss", 0),
        ("val/loss", 0),
        ("train/loss", 1),
        ("val/loss", 1),
    ]
    assert (recorded.artifacts / "config" / "config.yaml").read_text() == "a: 1\n"


def test_a_metric_line_cut_off_by_a_crash_is_dropped(tmp_path):
    write_record(tmp_path / "job", create_store(tmp_path))
    with open(tmp_path / "job" / record.FOLDER / "metrics.jsonl", "a") as out:
        out.write('{"key": "val/loss", "val')
    assert len(record.load(tmp_path / "job").metrics) == 4


def test_a_damaged_or_missing_record_is_a_clear_error(tmp_path):
    with pytest.raises(XentError, match="no run record"):
        record.load(tmp_path)
    write_record(tmp_path / "job", create_store(tmp_path))
    (tmp_path / "job" / record.FOLDER / "run.json").write_text("{not json")
    with pytest.raises(XentError, match="damaged"):
        record.load(tmp_path / "job")


def test_relog_makes_one_complete_run_and_retires_the_incomplete_one(tmp_path):
    uri = create_store(tmp_path)
    write_record(tmp_path / "job", uri)
    lose_server(tmp_path / "job")
    old_run_id = record.load(tmp_path / "job").info.run_id
    new_run_id = relog(tmp_path / "job", uri)
    client = MlflowClient(uri)
    new = client.get_run(new_run_id)
    assert new.info.status == "FINISHED" and new.info.run_name == "job"
    assert new.data.params == {"trainer.epochs": "2"} and new.data.tags["xent.replaces"] == old_run_id
    assert [m.value for m in client.get_metric_history(new_run_id, "val/loss")] == [2.0, 1.0]
    artifacts = {a.path for a in client.list_artifacts(new_run_id)} | {
        a.path for a in client.list_artifacts(new_run_id, "config")
    }
    assert {"config/config.yaml", "checkpoint"} <= artifacts
    assert client.get_run(old_run_id).info.lifecycle_stage == "deleted"
    live = client.search_runs([new.info.experiment_id])
    assert [r.info.run_id for r in live] == [new_run_id]
    # Twice would make two runs: refused unless forced.
    with pytest.raises(XentError, match="already re-logged"):
        relog(tmp_path / "job", uri)


@pytest.mark.subprocess
def test_relog_cli_reports_an_unreachable_server(tmp_path):
    write_record(tmp_path / "job", create_store(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "xent_lab.relog", str(tmp_path / "job"), "--tracking-uri", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "cannot reach the MLflow tracking server at http://127.0.0.1:9" in done.stderr
    assert record.load(tmp_path / "job").info.relogged_as is None


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.mark.server
def test_server_lost_mid_training_then_relogged_as_one_complete_run(tmp_path, cache_dir):
    backend = f"sqlite:///{tmp_path}/server.db"
    workdir = tmp_path / "work"
    workdir.mkdir()
    output_dir = workdir / "out"
    epochs = 6
    with start_server(backend, tmp_path / "artifacts") as server:
        trainer = subprocess.Popen(
            train_command(
                QUICK, f"trainer.epochs={epochs}", f"tracking.uri={server.uri}", f"hydra.run.dir={output_dir}"
            ),
            cwd=workdir,
            env=train_env(cache_dir),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        metrics_file = output_dir / record.FOLDER / "metrics.jsonl"
        wait_for(lambda: metrics_file.exists() and "val/loss" in metrics_file.read_text(), 300, "the first epoch")
        os.killpg(server.process.pid, signal.SIGKILL)  # the server dies mid-training
    stdout, stderr = trainer.communicate(timeout=600)
    assert trainer.returncode == 2, stderr[-3000:]
    assert "could not be finished in MLflow" in stderr and f"python -m xent_lab.relog {output_dir}" in stderr
    assert "test accuracy" in stdout  # training went on to the end
    recorded = record.load(output_dir)
    assert recorded.info.status == "FINISHED" and not recorded.info.complete_in_mlflow
    assert sorted(m["step"] for m in recorded.metrics if m["key"] == "val/loss") == list(range(epochs))
    assert (output_dir / record.CHECKPOINT).stat().st_size > 0
    assert (recorded.artifacts / "plots" / "reliability_test.png").exists()

    # The server is back (same store): re-logging makes the one complete run.
    with start_server(backend, tmp_path / "artifacts") as server:
        done = subprocess.run(
            [sys.executable, "-m", "xent_lab.relog", str(output_dir), "--tracking-uri", server.uri],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        client = MlflowClient(server.uri)
        experiment = client.get_experiment_by_name("xent-lab")
        live = client.search_runs([experiment.experiment_id])
        assert len(live) == 1
        run = live[0]
        assert run.info.status == "FINISHED" and run.info.run_id in done.stdout
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val/loss")] == list(range(epochs))
        assert "test/accuracy" in run.data.metrics and run.data.params["trainer.epochs"] == str(epochs)
        assert "mlflow.note.content" in run.data.tags
        top = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"plots", "predictions", "config", "checkpoint"} <= top
        incomplete = client.get_run(recorded.info.run_id)
        assert incomplete.info.lifecycle_stage == "deleted"
        assert json.loads((output_dir / record.FOLDER / "run.json").read_text())["relogged_as"] == run.info.run_id


# --------------------------------------------------------------------------- issue 23: relog trusts nothing it is given


@pytest.mark.parametrize("link", ["artifacts/config/id_rsa", "artifacts/keys", "../checkpoint.keras", "metrics.jsonl"])
def test_relog_refuses_a_symlink_out_of_the_record(tmp_path, link):
    """Item 5: a link in the record (to a file, a folder, the checkpoint, a record file) would upload what it
    points at, a private key; refused, naming it, before anything reaches the store."""
    uri = create_store(tmp_path)
    write_record(tmp_path / "job", uri)
    lose_server(tmp_path / "job")
    secret = tmp_path / "home" / "id_rsa"
    secret.parent.mkdir()
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    path = Path(os.path.normpath(tmp_path / "job" / record.FOLDER / link))
    path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(secret.parent if link.endswith("keys") else secret)
    with pytest.raises(XentError) as refused:
        relog(tmp_path / "job", uri)
    assert str(refused.value).startswith(f"the run record in {tmp_path / 'job' / record.FOLDER} holds a symbolic link")
    assert f"{path} -> {secret.parent if link.endswith('keys') else secret}" in str(refused.value)
    assert len(MlflowClient(uri).search_runs([MlflowClient(uri).get_experiment_by_name("exp").experiment_id])) == 1


@pytest.mark.parametrize("recorded", ["http://attacker.example:5000", "sqlite:///{tmp}/other/mlflow.db"])
def test_relog_takes_its_store_from_the_command_line_not_the_folder(tmp_path, monkeypatch, capsys, recorded):
    """Item 5: the URI in run.json does not choose the store: a record logged elsewhere asks for --tracking-uri
    (one line, exit 2), and logs where that says."""
    uri = create_store(tmp_path)
    write_record(tmp_path / "job", uri)
    lose_server(tmp_path / "job")
    recorded = recorded.format(tmp=tmp_path)
    info = record.load(tmp_path / "job").info
    info.tracking_uri = recorded
    record.save_info(tmp_path / "job" / record.FOLDER, info)
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert relog_cli.main([str(tmp_path / "job")]) == 2
    default = f"sqlite:///{tmp_path / 'here' / 'mlflow.db'}"
    assert capsys.readouterr().err == (
        f"error: {tmp_path / 'job'} was logged to {recorded}, not to the default store {default}; relog takes its "
        "store from the command line only: pass --tracking-uri URI (or set MLFLOW_TRACKING_URI)\n"
    )
    assert not (tmp_path / "other").exists() and not (tmp_path / "here" / "mlflow.db").exists()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert relog_cli.main([str(tmp_path / "job")]) == 0
    assert record.load(tmp_path / "job").info.relogged_as in capsys.readouterr().out


def test_relog_uses_the_recorded_store_only_when_it_is_the_default(tmp_path, monkeypatch):
    """Item 5: from the folder where the job ran, the plain command the trainer prints still works."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = create_store(tmp_path)
    write_record(tmp_path / "job", uri)
    lose_server(tmp_path / "job")
    new_run_id = relog(tmp_path / "job")
    assert MlflowClient(uri).get_run(new_run_id).info.status == "FINISHED"


def test_relog_of_a_complete_run_is_refused(tmp_path):
    """Item 6: a job whose every MLflow call succeeded has its complete run (here with a metric xent-calibrate
    added): relog refuses, forced or not, and the run stays as it is; --force copies it into another store."""
    uri = create_store(tmp_path)
    write_record(tmp_path / "job", uri)
    run_id = record.load(tmp_path / "job").info.run_id
    client = MlflowClient(uri)
    client.log_metric(run_id, "test/recal/temperature/ece", 0.01)
    for force in (False, True):
        with pytest.raises(XentError) as refused:
            relog(tmp_path / "job", uri, force=force)
        assert str(refused.value) == (
            f"{tmp_path / 'job'} was logged completely, as run {run_id}: there is nothing to re-log in this store"
        )
    original = client.get_run(run_id)
    assert original.info.lifecycle_stage == "active" and "xent.replaced_by" not in original.data.tags
    assert len(original.data.metrics) == 3
    elsewhere = create_store(tmp_path / "elsewhere")
    with pytest.raises(XentError, match="to copy it into another store, pass --force"):
        relog(tmp_path / "job", elsewhere)
    copy = relog(tmp_path / "job", elsewhere, force=True)
    assert MlflowClient(elsewhere).get_run(copy).info.status == "FINISHED"
    assert client.get_run(run_id).info.lifecycle_stage == "active"


def test_relog_keeps_a_run_it_cannot_replace_in_full(tmp_path, capsys):
    """Item 6: the job's run holds what the record lacks (a registered model version, a metric added later):
    relog makes its copy but keeps that run, tagged as replaced, and says so; the registry still resolves."""
    uri = create_store(tmp_path)
    write_record(tmp_path / "job", uri)
    lose_server(tmp_path / "job")
    old = record.load(tmp_path / "job").info.run_id
    client = MlflowClient(uri)
    client.log_metric(old, "test/recal/temperature/ece", 0.01)
    client.create_registered_model("mnist-cce")
    client.create_model_version("mnist-cce", f"runs:/{old}/model", run_id=old)
    new = relog(tmp_path / "job", uri)
    kept = client.get_run(old)
    assert kept.info.lifecycle_stage == "active" and kept.data.tags["xent.replaced_by"] == new
    assert capsys.readouterr().err == (
        f"note: run {old} is kept, tagged xent.replaced_by={new}: it holds the registered model version mnist-cce v1, "
        "1 metric(s) such as test/recal/temperature/ece, which the record does not; delete it yourself once it is "
        "no longer needed\n"
    )
    assert client.get_model_version("mnist-cce", "1").run_id == old


def test_relog_reports_and_leaves_out_an_empty_checkpoint(tmp_path, capsys):
    """Item 7: a checkpoint a crash left empty (or cut short) is not uploaded without a word."""
    uri = create_store(tmp_path)
    write_record(tmp_path / "job", uri)
    lose_server(tmp_path / "job")
    checkpoint = tmp_path / "job" / record.CHECKPOINT
    checkpoint.write_bytes(b"")
    new = relog(tmp_path / "job", uri)
    assert capsys.readouterr().err == f"warning: {checkpoint} is not uploaded: it is empty (0 bytes)\n"
    assert {a.path for a in MlflowClient(uri).list_artifacts(new)} == {"config"}
    checkpoint.write_bytes(b"PK\x03\x04 cut short")
    assert record.checkpoint_problem(checkpoint).startswith("it is not a whole Keras model file")


def test_a_second_relog_of_the_same_folder_at_once_is_refused(tmp_path, capsys):
    """Item 16: while one relog holds the record, another is refused in one line and logs nothing."""
    uri = create_store(tmp_path)
    write_record(tmp_path / "job", uri)
    lose_server(tmp_path / "job")
    with relog_module._only_relog(tmp_path / "job" / record.FOLDER, tmp_path / "job"):
        assert relog_cli.main([str(tmp_path / "job"), "--tracking-uri", uri]) == 2
    assert capsys.readouterr().err == f"error: another relog of {tmp_path / 'job'} is under way; let it end\n"
    assert record.load(tmp_path / "job").info.relogged_as is None
    experiment = MlflowClient(uri).get_experiment_by_name("exp").experiment_id
    assert len(MlflowClient(uri).search_runs([experiment])) == 1


@pytest.mark.subprocess
def test_two_relogs_of_the_same_folder_at_once_leave_one_copy(tmp_path):
    """Item 16, as reported: two `xent-relog` processes started together; one logs, the other refuses."""
    uri = create_store(tmp_path)
    write_record(tmp_path / "job", uri)
    lose_server(tmp_path / "job")
    command = [sys.executable, "-m", "xent_lab.relog", str(tmp_path / "job"), "--tracking-uri", uri]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in "ab"]
    done = sorted((process.wait(timeout=120), *process.communicate()) for process in processes)
    assert [returncode for returncode, _, _ in done] == [0, 2], done
    assert done[1][2] in (
        f"error: another relog of {tmp_path / 'job'} is under way; let it end\n",
        f"error: {tmp_path / 'job'} was already re-logged as run {record.load(tmp_path / 'job').info.relogged_as}; "
        "pass --force to log it again\n",
    )
    client = MlflowClient(uri)
    live = client.search_runs([client.get_experiment_by_name("exp").experiment_id])
    assert [run.info.run_id for run in live] == [record.load(tmp_path / "job").info.relogged_as]
