"""A job's local record and `python -m xent_lab.relog`: a run whose tracking server went away is not lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers.e2e import QUICK, train_command, train_env
from xent_lab import tracking
from xent_lab.errors import XentError
from xent_lab.tracking import record
from xent_lab.tracking.relog import relog
from xent_lab.tracking.server import start_server


def write_record(output_dir: Path, uri: str, status: str = "FINISHED") -> None:
    """A record as a job writes it, through a Tracker whose store is `uri`."""
    tracker = tracking.Tracker(uri, "exp")
    with tracker.run("job", tags={"loss": "cce"}, record_dir=output_dir) as run:
        run.log_params({"trainer.epochs": "2"})
        for epoch in range(2):
            run.log_metrics({"train/loss": 1.0 / (epoch + 1), "val/loss": 2.0 / (epoch + 1)}, step=epoch)
        run.log_text("a: 1\n", "config/config.yaml")
    (output_dir / record.CHECKPOINT).write_bytes(b"model")


def test_the_record_holds_everything_that_was_logged(tmp_path):
    write_record(tmp_path / "job", f"sqlite:///{tmp_path}/mlflow.db")
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
    write_record(tmp_path / "job", f"sqlite:///{tmp_path}/mlflow.db")
    with open(tmp_path / "job" / record.FOLDER / "metrics.jsonl", "a") as out:
        out.write('{"key": "val/loss", "val')
    assert len(record.load(tmp_path / "job").metrics) == 4


def test_a_damaged_or_missing_record_is_a_clear_error(tmp_path):
    with pytest.raises(XentError, match="no run record"):
        record.load(tmp_path)
    write_record(tmp_path / "job", f"sqlite:///{tmp_path}/mlflow.db")
    (tmp_path / "job" / record.FOLDER / "run.json").write_text("{not json")
    with pytest.raises(XentError, match="damaged"):
        record.load(tmp_path / "job")


def test_relog_makes_one_complete_run_and_retires_the_incomplete_one(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    write_record(tmp_path / "job", uri)
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
    write_record(tmp_path / "job", f"sqlite:///{tmp_path}/mlflow.db")
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
