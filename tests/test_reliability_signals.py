"""Stop signals and runs left RUNNING (issue 15, cases 3, 6 and 8), on the real command line and the real data.

- SIGTERM to a study launch, basic and joblib launchers, at three moments: before the parent run exists, during
  a job, between jobs. Every run ends KILLED or FINISHED, the parent KILLED with the jobs not run counted, exit
  130, and no worker process is left.
- 3 SIGTERMs at random moments of a single run's first seconds: exit 130 each time, the run KILLED or not created
  (a stop at each place where training checks for one is tested in this process: tests/test_stopping.py).
- `kill -9` mid-training, then `close-stale` ends the run KILLED and `relog --force` logs what was recorded.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient

from tests.helpers.e2e import QUICK, create_store, history, runs, store_uri, train_command, train_env
from xent_lab.tracking import tags as T
from xent_lab.tracking.runs import close_stale, process_start

# Tiny jobs: the point is the process, not the training.
TINY = (QUICK, "dataset.limit.train=500", "dataset.limit.test=200", "calibration.bootstrap=0", "trainer.verbose=0")
STUDY = "mnist_losses"
SWEEP = ("loss=cce", "loss.impl=builtin", "seed=0,1,2", "study.report=false", "trainer.epochs=4")
LAUNCHERS = {"basic": (), "joblib": ("hydra/launcher=joblib", "hydra.launcher.n_jobs=2")}


def _start(workdir: Path, cache_dir: Path, *overrides: str) -> subprocess.Popen:
    log = open(workdir / "launch.log", "w")  # noqa: SIM115 - closed by the process's end
    return subprocess.Popen(
        train_command(*TINY, *overrides),
        cwd=workdir,
        env=train_env(cache_dir),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own group: a failed test kills it and its workers together
    )


def _until(condition, timeout: float, what: str, watch: subprocess.Popen | None = None, workdir: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if watch is not None and watch.poll() is not None:
            break
        time.sleep(0.2)
    log = (workdir / "launch.log").read_text()[-3000:] if workdir is not None else ""
    pytest.fail(f"{what} not seen within {timeout} s\n{log}", pytrace=False)


def _children(workdir: Path) -> list:
    return [r for r in runs(workdir, STUDY) if r.data.tags.get(T.ROLE) == T.ROLE_CHILD]


def _parent(workdir: Path):
    found = [r for r in runs(workdir, STUDY) if r.data.tags.get(T.ROLE) == T.ROLE_PARENT]
    return found[0] if found else None


def _descendants(process: subprocess.Popen) -> set[psutil.Process]:
    try:
        return set(psutil.Process(process.pid).children(recursive=True))
    except psutil.NoSuchProcess:
        return set()


def _stop_and_wait(process: subprocess.Popen, workdir: Path, workers: set) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        returncode = process.wait(120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"the launch did not end 120 s after SIGTERM\n{(workdir / 'launch.log').read_text()[-3000:]}")
    _, alive = psutil.wait_procs(list(workers), timeout=15)
    assert not alive, f"workers left after the launch ended: {[p.pid for p in alive]}"
    return returncode


# Before the parent run exists the launch is still importing TensorFlow, whatever its launcher: one case.
MOMENTS = [("basic", "before_parent")] + [(name, m) for m in ("during_job", "between_jobs") for name in LAUNCHERS]


@pytest.mark.subprocess
@pytest.mark.parametrize(("launcher", "moment"), MOMENTS)
def test_sigterm_to_a_study_launch_ends_every_run_and_worker(tmp_path, cache_dir, launcher, moment):
    create_store(tmp_path)
    sweep_dir = f"hydra.sweep.dir={tmp_path / 'sweep'}"
    process = _start(tmp_path, cache_dir, f"experiment={STUDY}", sweep_dir, *SWEEP, *LAUNCHERS[launcher])
    workers: set = set()
    try:
        if moment == "before_parent":
            time.sleep(1.0)  # Python is importing TensorFlow: the parent run is seconds away
            assert _parent(tmp_path) is None
        else:

            def seen():
                workers.update(_descendants(process))
                if moment == "during_job":
                    return [r for r in _children(tmp_path) if history(tmp_path, r.info.run_id, T.TRAIN_LOSS)]
                return [r for r in _children(tmp_path) if r.info.status == "FINISHED"]

            _until(seen, 180, f"a child run ({moment})", process, tmp_path)
            workers.update(_descendants(process))
        returncode = _stop_and_wait(process, tmp_path, workers)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    log = (tmp_path / "launch.log").read_text()[-3000:]
    assert returncode == 130, log
    children, parent = _children(tmp_path), _parent(tmp_path)
    if moment == "before_parent":
        assert parent is None and not children, log
        return
    assert parent is not None and parent.info.status == "KILLED", log
    assert "interrupted by SIGTERM" in parent.data.tags[T.FAILURE_REASON]
    assert int(parent.data.tags[T.NOT_RUN_JOBS]) == 3 - len(children) >= 1  # the last job never started
    statuses = sorted(child.info.status for child in children)
    assert set(statuses) <= {"FINISHED", "KILLED"}, statuses
    if moment == "during_job":
        assert "KILLED" in statuses, statuses
    else:
        assert "FINISHED" in statuses, statuses
    for child in children:
        if child.info.status == "KILLED":
            assert child.data.tags[T.FAILURE_REASON] == "interrupted by SIGTERM"
    if launcher == "joblib":
        assert workers, "the joblib launch was never seen with worker processes"


@pytest.mark.subprocess
def test_early_sigterms_end_every_run_killed_with_exit_130(tmp_path, cache_dir):
    """3 SIGTERMs at random moments of a run's first seconds: two timed from the start (import, config, data), one
    from the moment its run exists (run creation, logging, the first epoch), however slow the machine is."""
    create_store(tmp_path)
    chance = random.Random(15)
    outcomes = []
    for repetition in range(3):
        before = len(runs(tmp_path))
        process = _start(tmp_path, cache_dir, "trainer.epochs=20")
        try:
            if repetition % 2:
                _until(lambda known=before: len(runs(tmp_path)) > known, 120, "the run", process, tmp_path)
                time.sleep(chance.uniform(0.0, 1.5))
            else:
                time.sleep(chance.uniform(0.3, 4.0))
            process.send_signal(signal.SIGTERM)
            returncode = process.wait(60)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        found = runs(tmp_path)[before:]
        outcomes.append((repetition, returncode, [r.info.status for r in found]))
        assert returncode == 130, (repetition, (tmp_path / "launch.log").read_text()[-3000:])
        assert all(r.info.status == "KILLED" for r in found), outcomes
        assert repetition % 2 == 0 or found, outcomes


@pytest.mark.subprocess
def test_kill_9_then_close_stale_and_relog_force(tmp_path, cache_dir):
    create_store(tmp_path)
    process = _start(tmp_path, cache_dir, "trainer.epochs=200")
    try:
        run = _until(
            lambda: [r for r in runs(tmp_path) if len(history(tmp_path, r.info.run_id, T.TRAIN_LOSS)) >= 2],
            180,
            "two epochs logged",
            process,
            tmp_path,
        )[0]
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    client = MlflowClient(store_uri(tmp_path))
    killed = client.get_run(run.info.run_id)
    assert killed.info.status == "RUNNING"  # what a hard kill leaves
    assert killed.data.tags[T.PID] == str(process.pid) and killed.data.tags[T.HOST] == socket.gethostname()
    assert float(killed.data.tags[T.HEARTBEAT]) * 1000 > killed.info.start_time  # beaten after an epoch
    output_dir = Path(killed.data.tags[T.OUTPUT_DIR])
    command = (sys.executable, "-m")
    env = train_env(cache_dir)

    refused = subprocess.run([*command, "xent_lab.relog", str(output_dir)], env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "--force" in refused.stderr

    closed = subprocess.run(
        [*command, "xent_lab.tracking.runs", "close-stale", "--tracking-uri", store_uri(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert closed.returncode == 0, closed.stderr[-2000:]
    assert f"closed run {run.info.run_id} as KILLED" in closed.stdout and "1 stale run(s)" in closed.stdout
    ended = client.get_run(run.info.run_id)
    assert ended.info.status == "KILLED"
    assert f"pid {process.pid}" in ended.data.tags[T.FAILURE_REASON] and "gone" in ended.data.tags[T.FAILURE_REASON]

    relogged = subprocess.run(
        [*command, "xent_lab.relog", str(output_dir), "--force", "--tracking-uri", store_uri(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert relogged.returncode == 0, relogged.stderr[-2000:]
    new_id = relogged.stdout.split()[-1]
    new = client.get_run(new_id)
    assert new.info.status == "KILLED" and "killed hard" in new.data.tags[T.FAILURE_REASON]
    epochs = history(tmp_path, new_id, T.TRAIN_LOSS)
    assert len(epochs) >= 2 and epochs == history(tmp_path, run.info.run_id, T.TRAIN_LOSS)
    assert any(item.path == "checkpoint" for item in client.list_artifacts(new_id))
    assert client.get_run(run.info.run_id).info.lifecycle_stage == "deleted"  # replaced by the complete copy


# --------------------------------------------------------------------------- close-stale's rules, in one store


def _running(client: MlflowClient, experiment_id: str, **tags: str) -> str:
    return client.create_run(experiment_id, tags=tags).info.run_id


@pytest.mark.subprocess
def test_close_stale_tells_a_dead_or_reused_pid_and_an_old_heartbeat_from_a_live_run(tmp_path):
    client = MlflowClient(store_uri(tmp_path))
    experiment_id = client.create_experiment("xent-lab")
    here, me, now = socket.gethostname(), os.getpid(), time.time()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    ids = {
        "alive": _running(client, experiment_id, **{T.HOST: here, T.PID: str(me), T.PROCESS_START: process_start(me)}),
        "dead": _running(client, experiment_id, **{T.HOST: here, T.PID: str(dead.pid)}),
        # A live pid, but started at another time: another process got the run's pid.
        "reused": _running(client, experiment_id, **{T.HOST: here, T.PID: str(me), T.PROCESS_START: "1"}),
        "remote_old": _running(client, experiment_id, **{T.HOST: "elsewhere", T.PID: "1", T.HEARTBEAT: f"{now - 900}"}),
        "remote_new": _running(client, experiment_id, **{T.HOST: "elsewhere", T.PID: "1", T.HEARTBEAT: f"{now - 60}"}),
    }
    closed = close_stale(client)  # no limit: only processes known gone
    assert set(closed) == {ids["dead"], ids["reused"]}
    assert "another process" in closed[ids["reused"]]
    closed = close_stale(client, older_than=600)
    assert set(closed) == {ids["remote_old"]} and "no heartbeat for 90" in closed[ids["remote_old"]]
    status = {name: client.get_run(run_id).info.status for name, run_id in ids.items()}
    assert status == {"alive": "RUNNING", "dead": "KILLED", "reused": "KILLED", "remote_old": "KILLED",
                      "remote_new": "RUNNING"}  # fmt: skip
