"""A study launch as issue 23 attacked it: reuse on other data or code, a worker killed, a YAML file edited
mid-launch, a report that cannot be written, a SIGTERM while the report is built.

The launches run the real command line (`python -m xent_lab.train experiment=mnist_losses debug=quick`) on real
MNIST; one single-job study (`launched`) is shared by the tests that relaunch it. What fails in-process (which
earlier run a job may reuse, the launch's end when its report fails) is tested in-process on a real store.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient

from tests.helpers.e2e import (
    CONF_DIR,
    LEAN,
    create_store,
    data_dir,
    run_train,
    runs,
    start_train,
    store_uri,
)
from xent_lab.study import JobContext, StudyLaunch, reusable_run
from xent_lab.sweep.callback import StudyCallback
from xent_lab.sweep.progress import Progress
from xent_lab.tracking import lineage
from xent_lab.tracking import tags as T

# One job; checksums unverified so that a copy of the data with other labels is accepted, as in the issue.
JOB = ("experiment=mnist_losses", *LEAN, "loss=cce", "loss.impl=builtin", "seed=0", "dataset.verify_checksums=false")
PARENT_LINE = re.compile(r"study mnist_losses: parent run (\w+) in ")


def children_of(workdir: Path, parent_id: str):
    return [run for run in runs(workdir, "mnist_losses") if run.data.tags.get(T.PARENT_RUN_ID) == parent_id]


def parent_of(stdout: str) -> str:
    found = PARENT_LINE.search(stdout)
    assert found, stdout[-3000:]
    return found.group(1)


@pytest.fixture(scope="module")
def launched(tmp_path_factory, cache_dir) -> Path:
    """The folder of a finished one-job study launch (its store, outputs and report_dir=report)."""
    workdir = tmp_path_factory.mktemp("launched")
    create_store(workdir)
    done = run_train(workdir, cache_dir, *JOB, f"study.report_dir={workdir / 'report'}")
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir


def read_until(process: subprocess.Popen, marker: str) -> str:
    """The process's stdout up to and including the first line holding `marker`."""
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"{marker!r} never printed: {''.join(seen)[-3000:]}")


# --------------------------------------------------------------------------- item 8: reuse on other data or code


def shuffled_copy(folder: Path) -> Path:
    """A copy of the MNIST files whose training labels are shuffled: the same config, other data."""
    mnist = folder / "mnist"
    shutil.copytree(data_dir() / "mnist", mnist)
    labels = mnist / "train-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[8:] = np.random.default_rng(0).permutation(np.frombuffer(bytes(raw[8:]), dtype=np.uint8)).tobytes()
    labels.write_bytes(gzip.compress(bytes(raw)))
    return folder


@pytest.mark.subprocess
def test_a_study_on_other_data_trains_again_instead_of_reusing(launched, cache_dir, tmp_path):
    (original,) = [run for run in runs(launched, "mnist_losses") if run.data.tags.get(T.ROLE) == T.ROLE_CHILD]
    other = shuffled_copy(tmp_path / "data")
    done = run_train(launched, cache_dir, *JOB, f"dataset.data_dir={other}", "study.report=false")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "skipped: finished run" not in done.stdout
    assert f"not reused: finished run {original.info.run_id} has the same config but other data" in done.stdout
    (trained,) = children_of(launched, parent_of(done.stdout))
    assert trained.info.status == "FINISHED"
    assert trained.data.tags[T.CONFIG_HASH] == original.data.tags[T.CONFIG_HASH]
    labels = f"{T.DATA_SHA256_PREFIX}train-labels-idx1-ubyte.gz"
    assert trained.data.tags[labels] != original.data.tags[labels]
    assert trained.data.tags[T.DATA_DIGEST] != original.data.tags[T.DATA_DIGEST]


CHECKSUMS = {"train.gz": "1" * 64, "test.gz": "2" * 64}
SHAPING = {"name": "mnist", "val_size": 1000}


def test_reuse_needs_the_same_data_and_commit_and_old_runs_are_judged_by_their_file_checksums(tmp_path):
    client = MlflowClient(create_store(tmp_path))
    experiment = client.create_experiment("s")
    job = JobContext(StudyLaunch("s", "parent", "", "s", {}), "h1", {}).on_data(CHECKSUMS, SHAPING)
    assert job.data_digest == lineage.data_digest(CHECKSUMS, SHAPING)

    def finished(start: int, commit: str, **tags: str) -> str:
        base = {T.STUDY: "s", T.CONFIG_HASH: "h1", T.GIT_COMMIT: commit}
        run_id = client.create_run(experiment, start_time=start, tags={**base, **tags}).info.run_id
        client.set_terminated(run_id, "FINISHED")
        return run_id

    def reuse(commit: str, across: bool = False) -> tuple[str | None, str | None]:
        run, why_not = reusable_run(client, experiment, job, SHAPING, commit, across)
        return (run.info.run_id if run is not None else None), why_not

    # An old run without the digest tag, other files: never reused, even across commits.
    other = finished(
        1, "c1", **{f"{T.DATA_SHA256_PREFIX}train.gz": "9" * 64, f"{T.DATA_SHA256_PREFIX}test.gz": "2" * 64}
    )
    digest = lineage.data_digest({"train.gz": "9" * 64, "test.gz": "2" * 64}, SHAPING)
    assert reuse("c1", across=True) == (
        None,
        f"finished run {other} has the same config but other data (data digest {digest}, this job's {job.data_digest})",
    )
    # An old run without the digest tag but with the same files: the same digest, so reused at the same commit.
    old = finished(2, "c1", **{f"{T.DATA_SHA256_PREFIX}{name}": sha for name, sha in CHECKSUMS.items()})
    assert reuse("c1") == (old, None)
    # At another commit: not reused unless asked for.
    assert reuse("c2") == (
        None,
        f"finished run {old} has the same config but commit c1, this job runs c2; study.reuse_across_commits=true "
        "would reuse it",
    )
    assert reuse("c2", across=True) == (old, None)
    # A newer run with the digest tag is preferred; a run with no record of its data is never taken.
    tagged = finished(3, "c2", **{T.DATA_DIGEST: job.data_digest})
    unknown = finished(4, "c2")
    assert reuse("c2") == (tagged, None)
    client.delete_run(tagged)
    assert reuse("c2") == (
        None,
        f"finished run {unknown} has the same config but other data (data digest not recorded, this job's "
        f"{job.data_digest})",
    )


# --------------------------------------------------------------------------- item 12: a joblib worker killed


@pytest.mark.subprocess
def test_a_killed_joblib_worker_ends_the_launch_in_one_line_with_no_run_left_running(tmp_path, cache_dir):
    create_store(tmp_path)
    launch = start_train(
        tmp_path,
        cache_dir,
        *JOB[:-2],
        "seed=0,1",
        "trainer.epochs=200",  # long enough to kill a worker mid-training
        "study.report=false",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
    )
    running = []
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            running = [r for r in runs(tmp_path, "mnist_losses") if r.data.tags.get(T.ROLE) == T.ROLE_CHILD]
            if len(running) == 2:
                break
            time.sleep(0.5)
        assert len(running) == 2, "the two jobs never both started"
        os.kill(int(running[0].data.tags[T.PID]), signal.SIGKILL)
        stdout, stderr = launch.communicate(timeout=300)
    finally:
        launch.kill()
    assert launch.returncode == 1, stderr[-3000:]
    assert "Traceback" not in stderr and "TerminatedWorkerError" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    names = sorted(run.info.run_name for run in running)
    assert errors == [
        f"error: a joblib worker died (The exit codes of the workers are {{SIGKILL(-9)}}): 2 job(s) killed with it "
        f"({', '.join(names)}), 0 of 2 not run; launch the study again to train them"
    ]
    parent = parent_of(stdout)
    assert {run.info.status for run in children_of(tmp_path, parent)} == {"KILLED"}
    (parent_run,) = [run for run in runs(tmp_path, "mnist_losses") if run.info.run_id == parent]
    assert parent_run.info.status == "FAILED" and parent_run.data.tags[T.NOT_RUN_JOBS] == "0"


# --------------------------------------------------------------------------- item 13: a YAML file edited mid-launch


@pytest.mark.subprocess
def test_a_config_file_edited_during_a_launch_refuses_the_jobs_composed_after(tmp_path, cache_dir):
    conf = tmp_path / "conf"  # the launch's own copy of the config files, edited while it runs
    shutil.copytree(CONF_DIR, conf, ignore=shutil.ignore_patterns("*.md", "*.png"))
    trainer = conf / "trainer" / "default.yaml"
    create_store(tmp_path)
    launch = start_train(tmp_path, cache_dir, "--config-path", str(conf), *JOB[:-2], "seed=0,1", "study.report=false")
    try:
        read_until(launch, "study mnist_losses: parent run")
        trainer.write_text(trainer.read_text().replace("learning_rate: 0.001", "learning_rate: 0.5"))
        stdout, stderr = launch.communicate(timeout=300)
    finally:
        launch.kill()
    assert launch.returncode == 1, stderr[-3000:]
    assert "Traceback" not in stderr
    refused = (
        f"config file(s) changed since the launch validated them: {trainer}; this job would run another config "
        "than the launch recorded, so it is refused; launch again once the files are final"
    )
    assert stderr.count(f"error: {refused}") == 2
    children = runs(tmp_path, "mnist_losses")[1:]
    assert [(c.info.status, c.data.tags[T.FAILURE_REASON]) for c in children] == [("FAILED", refused)] * 2
    assert not any(c.data.metrics for c in children)  # nothing trained, with either learning rate


# --------------------------------------------------------------------------- item 14: the report cannot be written


def test_a_study_whose_report_fails_exits_1_and_says_why(tmp_path, capsys):
    uri = create_store(tmp_path)
    client = MlflowClient(uri)
    experiment = client.create_experiment("mnist_losses")
    parent = client.create_run(
        experiment, tags={T.STUDY: "mnist_losses", T.ROLE: T.ROLE_PARENT, T.SWEEP: json.dumps({"seed": "0"})}
    ).info.run_id
    child = client.create_run(
        experiment, tags={T.STUDY: "mnist_losses", T.ROLE: T.ROLE_CHILD, T.PARENT_RUN_ID: parent}
    ).info.run_id
    client.set_terminated(child, "FAILED")
    (tmp_path / "file").write_text("a file, not a folder")
    callback = StudyCallback()
    callback.client, callback.uri, callback.progress = client, uri, Progress(1)
    callback.launch = StudyLaunch("mnist_losses", parent, uri, "mnist_losses", {"seed": "0"})
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            "config",
            overrides=["experiment=mnist_losses", f"study.report_dir={tmp_path / 'file' / 'report'}"],
            return_hydra_config=True,
        )
    with pytest.raises(SystemExit) as exited:
        callback.on_multirun_end(cfg)
    assert exited.value.code == 1
    stderr = capsys.readouterr().err.splitlines()
    assert stderr[0] == "1 job(s) failed; the report lists why"
    assert stderr[1].startswith("error: the report could not be built: ") and len(stderr) == 2
    ended = client.get_run(parent)
    assert ended.info.status == "FAILED"
    assert ended.data.tags[T.FAILURE_REASON] == stderr[1].removeprefix("error: ")


# --------------------------------------------------------------------------- item 17: SIGTERM while the report is built


@pytest.mark.subprocess
def test_sigterm_while_the_report_is_built_ends_the_launch_killed_with_no_report_written(launched, cache_dir, tmp_path):
    report_dir = tmp_path / "report"
    launch = start_train(launched, cache_dir, *JOB, f"study.report_dir={report_dir}")
    try:
        seen = read_until(launch, "study mnist_losses: building the report")
        launch.send_signal(signal.SIGTERM)
        stdout, stderr = launch.communicate(timeout=300)
    finally:
        launch.kill()
    assert launch.returncode == 130, stderr[-3000:]
    assert "interrupted by SIGTERM: the sweep stopped" in stderr and "Traceback" not in stderr
    parent = MlflowClient(store_uri(launched)).get_run(parent_of(seen))
    assert parent.info.status == "KILLED"
    assert parent.data.tags[T.FAILURE_REASON] == "interrupted by SIGTERM: 0 of 1 jobs not run"
    assert not report_dir.exists()  # stopped before writing: no report, not half of one
    assert "report:" not in stdout
