"""Launches under stress: at the same moment, on a fresh or locked store, with a password, with bad input.

The concurrent launches and the password grep run the real command line (`python -m xent_lab.train`, real
MNIST, `debug=quick`) against a real SQLite store or a real `mlflow server`: two processes at once, and every
file a process leaves, are what is under test. The refusals call the same entry point in this process
(`refused_here`: its exit code, its one error line, what it left on disk); a lock held mid-run is waited for
in this process too, on a shortened SQLite busy timeout.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from sqlalchemy import event
from sqlalchemy.engine import Engine

from tests.helpers.e2e import (
    LEAN,
    QUICK,
    create_store,
    history,
    refused_here,
    run_train,
    runs,
    start_train,
    train_here,
)
from xent_lab.tracking import tags as T
from xent_lab.tracking.server import start_server

STUDY = ("experiment=mnist_losses", *LEAN, "loss=cce", "loss.impl=builtin", "seed=0,1", "study.report=false")
PASSWORD = "s3cret-Pw-7731"


def finish(process: subprocess.Popen, timeout: float = 600) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=timeout)
    return process.returncode, stdout, stderr


def one_line_error(done_stderr: str) -> str:
    """The launch's error: one `error:` line and no traceback."""
    assert "Traceback" not in done_stderr, done_stderr[-3000:]
    errors = [line for line in done_stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done_stderr[-3000:]
    return errors[0]


def study_runs(workdir: Path):
    everything = runs(workdir, "mnist_losses")
    parents = [r for r in everything if r.data.tags.get(T.ROLE) == T.ROLE_PARENT]
    children = [r for r in everything if r.data.tags.get(T.ROLE) == T.ROLE_CHILD]
    return parents, children


# --------------------------------------------------------------------------- concurrent launches


@pytest.mark.subprocess
@pytest.mark.parametrize("store", ["initialised", "fresh"])
def test_two_launches_of_one_study_at_once_each_get_their_folder_parent_and_jobs(tmp_path, cache_dir, store):
    if store == "initialised":
        create_store(tmp_path)
    launches = [start_train(tmp_path, cache_dir, *STUDY) for _ in range(2)]  # the same second, as a rule
    for process in launches:
        code, stdout, stderr = finish(process)
        assert code == 0, stderr[-3000:]
        assert "already exists" not in stderr and "database is locked" not in stderr

    parents, children = study_runs(tmp_path)
    assert len(parents) == 2 and {p.info.status for p in parents} == {"FINISHED"}
    folders = sorted((tmp_path / "multirun" / "mnist_losses").iterdir())
    assert len(folders) == 2, folders
    # Each folder's study.json names its own parent, and each parent its own folder and two jobs.
    named = {json.loads((folder / "study.json").read_text())["parent_run_id"]: folder for folder in folders}
    assert set(named) == {p.info.run_id for p in parents}
    assert len(children) == 4 and {c.info.status for c in children} == {"FINISHED"}
    for parent in parents:
        assert parent.data.tags[T.SWEEP_DIR] == str(named[parent.info.run_id].resolve())
        own = [c for c in children if c.data.tags[T.PARENT_RUN_ID] == parent.info.run_id]
        assert sorted(c.data.tags[T.SEED] for c in own) == ["0", "1"]
        for child in own:  # the whole history, in the parent's own folder
            assert [step for step, _ in history(tmp_path, child.info.run_id, T.VAL_LOSS)] == [0]
            assert "test/accuracy" in child.data.metrics
            assert Path(child.data.tags[T.OUTPUT_DIR]).parent == named[parent.info.run_id]


@pytest.mark.subprocess
def test_two_single_runs_at_once_on_a_fresh_store(tmp_path, cache_dir):
    launches = [start_train(tmp_path, cache_dir, *LEAN) for _ in range(2)]
    for process in launches:
        code, _, stderr = finish(process)
        assert code == 0, stderr[-3000:]
    found = runs(tmp_path)
    assert len(found) == 2 and {r.info.status for r in found} == {"FINISHED"}
    assert len({r.data.tags[T.OUTPUT_DIR] for r in found}) == 2  # never one folder (one record) for two runs
    for run in found:
        assert [step for step, _ in history(tmp_path, run.info.run_id, T.VAL_LOSS)] == [0]


# --------------------------------------------------------------------------- the tracking password


def files_holding(secret: str, *folders: Path) -> list[str]:
    return [
        str(path)
        for folder in folders
        for path in folder.rglob("*")
        if path.is_file() and secret.encode() in path.read_bytes()
    ]


@pytest.mark.subprocess
def test_the_tracking_password_is_in_no_file_after_a_run_and_a_study(tmp_path, cache_dir):
    server_dir = tmp_path / "server"
    (tmp_path / "work").mkdir()
    with start_server(f"sqlite:///{server_dir / 'mlflow.db'}", server_dir / "mlartifacts") as server:
        uri = server.uri.replace("http://", f"http://alice:{PASSWORD}@")
        single = run_train(tmp_path / "work", cache_dir, *LEAN, f"tracking.uri={uri}")
        assert single.returncode == 0, single.stderr[-3000:]
        study = run_train(
            tmp_path / "work", cache_dir, *STUDY[:-1], f"tracking.uri={uri}", f"study.report_dir={tmp_path / 'report'}"
        )
        assert study.returncode == 0, study.stderr[-3000:]
    leaked = files_holding(PASSWORD, tmp_path)  # outputs/, multirun/ (study.json, .hydra/), the report, the store
    assert not leaked, f"the password is in: {leaked}"
    for done in (single, study):
        assert PASSWORD not in done.stdout + done.stderr
    (launch,) = (tmp_path / "work" / "multirun" / "mnist_losses").glob("*/study.json")
    assert json.loads(launch.read_text())["tracking_uri"] == server.uri.replace("http://", "http://alice:***@")
    # .hydra/ keeps the override, the password hidden.
    assert f"tracking.uri={server.uri.replace('http://', 'http://alice:***@')}" in "".join(
        path.read_text() for path in (tmp_path / "work" / "outputs").rglob(".hydra/overrides.yaml")
    )


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A launch folder (`a/b`, so that `../..` stays inside the test's folder) with nothing in it yet."""
    root = tmp_path_factory.mktemp("refused")
    (root / "a" / "b").mkdir(parents=True)
    return root


# --------------------------------------------------------------------------- refused before anything exists


@pytest.mark.parametrize(
    "overrides,named",
    [
        (("study.name=../../evil",), "study.name='../../evil'"),
        (("trainer.epochs=-1",), "trainer.epochs=-1"),
        (("trainer.epochs=1,0",), "trainer.epochs=0"),  # one swept value only
        (("+trainer.epoch=3",), "did you mean trainer.epochs?"),
        # submitit would pickle the password into .submitit/ (port 9: nothing is contacted either).
        (("hydra/launcher=slurm", f"tracking.uri=http://alice:{PASSWORD}@127.0.0.1:9"), "alice:***@127.0.0.1:9 holds"),
        # Issue 23, item 14: a report folder that cannot be written (under a file: even root cannot).
        pytest.param(
            ("study.report=true", "study.report_dir=/proc/version/report"),
            "study.report_dir=/proc/version/report cannot be made: /proc/version is not a folder",
            id="unwritable_report_dir",
        ),
    ],
)
def test_a_study_with_invalid_input_is_refused_before_anything_exists(work, cache_dir, overrides, named):
    launch_dir = work / "a" / "b"
    done = refused_here(launch_dir, cache_dir, *STUDY, *overrides)
    assert done.returncode == 2, done.stderr[-3000:]
    assert named in one_line_error(done.stderr)
    assert PASSWORD not in done.stdout + done.stderr
    # No store, no experiment, no parent run, no folder: nothing under the test's root but the launch folder.
    assert sorted(str(p.relative_to(work)) for p in work.rglob("*")) == ["a", "a/b"]


def test_an_unknown_key_added_with_plus_is_refused_before_the_output_folder(work, cache_dir):
    done = refused_here(work / "a" / "b", cache_dir, QUICK, "+trainer.epoch=3")
    assert done.returncode == 2
    line = one_line_error(done.stderr)
    assert "trainer.epoch " in line and "did you mean trainer.epochs?" in line
    assert sorted(str(p.relative_to(work)) for p in work.rglob("*")) == ["a", "a/b"]


# MLflow sets SQLite's busy timeout to 20 s on every session: a locked store costs 20 s per try, and a lock held
# past it makes MLflow raise "database is locked", which `patiently` must absorb. These tests set it to 1 s, so a
# lock held 4 s goes past it (as 40 s went past 20 s before): seconds rather than a minute per test.
MLFLOW_BUSY_TIMEOUT = "PRAGMA busy_timeout = 20000;"
SHORT_BUSY_TIMEOUT = "PRAGMA busy_timeout = 1000;"
HOLD_S = 4.0


def _shorter_busy_timeout(conn, cursor, statement, parameters, context, executemany):
    return (SHORT_BUSY_TIMEOUT if statement == MLFLOW_BUSY_TIMEOUT else statement), parameters


@pytest.fixture
def short_busy_timeout() -> Iterator[None]:
    """MLflow's SQLite sessions in this process wait 1 s for a lock, not 20 s."""
    event.listen(Engine, "before_cursor_execute", _shorter_busy_timeout, retval=True)
    try:
        yield
    finally:
        event.remove(Engine, "before_cursor_execute", _shorter_busy_timeout)


# --------------------------------------------------------------------------- stores that cannot be used


def test_an_unknown_tracking_scheme_is_one_line(tmp_path, cache_dir):
    done = refused_here(tmp_path, cache_dir, QUICK, "tracking.uri=foo://bar")
    assert done.returncode == 2
    line = one_line_error(done.stderr)
    assert "foo://bar" in line and "tracking.uri" in line and "sqlite:///PATH" in line


def test_a_store_that_is_not_a_database_is_one_line(tmp_path, cache_dir):
    (tmp_path / "mlflow.db").write_text("these are notes, not a database\n")
    done = refused_here(tmp_path, cache_dir, QUICK)
    assert done.returncode == 2
    line = one_line_error(done.stderr)
    assert str(tmp_path / "mlflow.db") in line and "not an SQLite database" in line
    assert (tmp_path / "mlflow.db").read_text() == "these are notes, not a database\n"  # left as it was


def test_a_store_locked_beyond_the_wait_at_start_is_one_line(tmp_path, cache_dir, short_busy_timeout):
    create_store(tmp_path)
    holder = sqlite3.connect(tmp_path / "mlflow.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    import xent_lab.train  # noqa: F401 - imported before the clock starts: TensorFlow takes seconds to import

    try:
        started = time.monotonic()
        done = refused_here(tmp_path, cache_dir, QUICK, "tracking.lock_timeout_s=2")
        took = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert done.returncode == 2
    line = one_line_error(done.stderr)
    assert str(tmp_path / "mlflow.db") in line and "locked" in line and "tracking.lock_timeout_s" in line
    assert "server" not in line
    assert took < 30  # the 2 s wait, not one busy timeout per try
    assert runs(tmp_path) == []  # refused before any run


# --------------------------------------------------------------------------- a lock held a while mid-run


@pytest.mark.train
def test_a_lock_held_past_the_busy_timeout_mid_run_is_waited_for_and_the_run_finishes_whole(
    tmp_path, cache_dir, capfd, short_busy_timeout
):
    uri = create_store(tmp_path)
    client = MlflowClient(uri)
    held, released = threading.Event(), threading.Event()

    def hold_the_lock_after_the_first_epoch() -> None:
        try:
            deadline = time.monotonic() + 300
            while not (found := runs(tmp_path)) or not history(tmp_path, found[0].info.run_id, T.VAL_LOSS):
                if time.monotonic() > deadline:
                    return
                time.sleep(0.05)
            holder = sqlite3.connect(tmp_path / "mlflow.db", isolation_level=None)
            holder.execute("BEGIN EXCLUSIVE")
            held.set()
            time.sleep(HOLD_S)
            holder.execute("ROLLBACK")
            holder.close()
        finally:
            released.set()

    threading.Thread(target=hold_the_lock_after_the_first_epoch, daemon=True).start()
    trained = train_here(tmp_path, cache_dir, QUICK, "trainer.epochs=3")
    released.wait(60)
    assert held.is_set(), "the first epoch was never logged"
    stderr = capfd.readouterr().err
    assert "is locked by another process; waiting" in stderr  # the lock did fall mid-run
    assert "could not be written" not in stderr  # never offline for a lock held a while
    run = trained.run
    assert run.info.status == "FINISHED"
    assert [step for step, _ in history(tmp_path, run.info.run_id, T.VAL_LOSS)] == [0, 1, 2]
    assert "test/accuracy" in client.get_run(run.info.run_id).data.metrics
    record = json.loads((Path(run.data.tags[T.OUTPUT_DIR]) / "mlflow_run" / "run.json").read_text())
    assert record["complete_in_mlflow"] is True and record["status"] == "FINISHED"
