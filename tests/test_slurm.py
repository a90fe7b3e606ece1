"""Studies on a real SLURM cluster: every job an array task of a single-node cluster (tests/helpers/slurm.py),
submitted by hydra-submitit-launcher, logging to a real `mlflow server` over PostgreSQL, as on a cluster.

Three launches of `python -m xent_lab.train experiment=mnist_losses debug=quick hydra/launcher=slurm`, shared by
the tests below (a module fixture; each SLURM job pays Python and TensorFlow's start-up, about 10 s):

- the mini study, 2 losses x 2 seeds, one epoch: the first job seen training is cancelled with `scancel`;
- at the same time, a one-job study that trains for longer than `hydra.launcher.timeout_min=1`;
- once the first ends, its relaunch: only the cancelled job trains again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from tests.helpers.e2e import EXPECTED_ARTIFACTS, QUICK, train_command, train_env
from tests.helpers.slurm import LocalCluster, log_tail
from xent_lab.tracking import tags as T
from xent_lab.tracking.cluster import slurm_tags
from xent_lab.tracking.server import Server

STUDY, TIMEOUT_STUDY = "mnist_losses", "slurm_timeout"
SWEEP = ("loss=cce,focal", "seed=0,1", "loss.impl=builtin")
# Small jobs on a node of 1-CPU slots; no GPU here (gres is not tested).
LAUNCHER = (
    "hydra/launcher=slurm",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.mem_gb=2",
)
# SLURM checks time limits every 30 s, and sends submitit's warning (SIGUSR2) at the first check within
# signal_delay_s + 30 s of the limit: with 2 minutes and 1 s, between 89 and 119 s into the job, once it is
# training. With 1 minute the warning could come 29 s in, before a job on two busy cores had finished an epoch.
TIME_LIMIT_MIN = 2
TIMEOUT = (f"hydra.launcher.timeout_min={TIME_LIMIT_MIN}", "hydra.launcher.signal_delay_s=1", "trainer.epochs=1000")
LAUNCH_TIMEOUT = 240.0


def on_the_cluster(test):
    """The marks of a test of the study on the cluster; its tracking server has a PostgreSQL backend."""
    for mark in (
        pytest.mark.slurm,
        pytest.mark.parametrize("tracking_server", ["postgres"], indirect=True),
    ):
        test = mark(test)
    return test


@dataclass
class Launch:
    name: str
    process: subprocess.Popen
    folder: Path

    def wait(self, deadline: float) -> int:
        try:
            return self.process.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pytest.fail(f"launch {self.name} did not end in time\n{self.logs()}", pytrace=False)

    def logs(self) -> str:
        """The launch's stderr and the end of each of its SLURM jobs' logs (.submitit/<job>/)."""
        parts = [f"--- {self.name}: stderr\n{log_tail(self.folder / 'launch.err', 40)}"]
        for log in sorted((self.folder / "sweep" / ".submitit").glob("*/*_log.*")):
            parts.append(f"--- {log.name}\n{log_tail(log, 15)}")
        return "\n".join(parts)


@dataclass
class Study:
    server: Server
    cluster: LocalCluster
    first: Launch
    relaunch: Launch
    timeout: Launch
    returncodes: dict[str, int]
    cancelled: Run  # the child run whose job was cancelled, as it was when scancel was sent
    workdir: Path

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(self.server.uri)

    def runs(self, experiment: str) -> list[Run]:
        found = self.client.get_experiment_by_name(experiment)
        assert found is not None, f"no experiment {experiment} on the server"
        return list(reversed(self.client.search_runs([found.experiment_id], max_results=1000)))

    def children(self, experiment: str = STUDY, parent: Run | None = None) -> list[Run]:
        return [
            run
            for run in self.runs(experiment)
            if run.data.tags.get(T.ROLE) == T.ROLE_CHILD
            and (parent is None or run.data.tags[T.PARENT_RUN_ID] == parent.info.run_id)
        ]

    def parents(self, experiment: str = STUDY) -> list[Run]:
        return [run for run in self.runs(experiment) if run.data.tags.get(T.ROLE) == T.ROLE_PARENT]

    def job_state(self, job_id: str) -> str:
        """What the controller says of a job (it keeps ended jobs for MinJobAge, 300 s; there is no sacct)."""
        done = subprocess.run(
            ["scontrol", "show", "job", job_id], env=self.cluster.env, capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, f"scontrol show job {job_id}: {done.stderr}"
        return next(field.split("=", 1)[1] for field in done.stdout.split() if field.startswith("JobState="))


def _launch(name: str, workdir: Path, env: dict[str, str], server: Server, *overrides: str) -> Launch:
    folder = workdir / name
    folder.mkdir()
    command = train_command(
        f"experiment={STUDY}",
        QUICK,
        f"tracking.uri={server.uri}",
        f"hydra.sweep.dir={folder / 'sweep'}",
        "trainer.verbose=0",
        *LAUNCHER,
        *overrides,
    )
    with open(folder / "launch.out", "w") as out, open(folder / "launch.err", "w") as err:
        # Its own session: on a failure the launch and the sacct calls it makes are killed together.
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=out, stderr=err, start_new_session=True)
    return Launch(name, process, folder)


def _first_training_child(client: MlflowClient, launch: Launch, deadline: float, study: str = STUDY) -> Run:
    """The first child run of the study seen RUNNING, that is, training."""
    while time.monotonic() < deadline and launch.process.poll() is None:
        experiment = client.get_experiment_by_name(study)
        if experiment is not None:
            running = client.search_runs(
                [experiment.experiment_id],
                filter_string=f"attributes.status = 'RUNNING' and tags.`{T.ROLE}` = '{T.ROLE_CHILD}'",
            )
            if running:
                return running[0]
        time.sleep(0.2)
    pytest.fail(f"no job of the study was seen training\n{launch.logs()}", pytrace=False)


@pytest.fixture(scope="module")
def study(tracking_server: Server, slurm_cluster: LocalCluster, tmp_path_factory, cache_dir) -> Study:
    workdir = tmp_path_factory.mktemp("slurm-study")
    env = train_env(cache_dir, SLURM_CONF=str(slurm_cluster.conf))
    deadline = time.monotonic() + LAUNCH_TIMEOUT
    report = workdir / "report"
    launches: list[Launch] = []
    try:
        # The time-limit job first: it is the longest, and runs beside the other two launches.
        timeout = _launch(
            "timeout", workdir, env, tracking_server, f"study.name={TIMEOUT_STUDY}", "study.report=false",
            "loss=cce", "loss.impl=builtin", "seed=0", *TIMEOUT,
        )  # fmt: skip
        launches.append(timeout)
        first = _launch("first", workdir, env, tracking_server, *SWEEP, f"study.report_dir={report / 'first'}")
        launches.append(first)
        cancelled = _first_training_child(MlflowClient(tracking_server.uri), first, deadline)
        job_id = cancelled.data.tags[T.SLURM_JOB_ID]
        scancel = subprocess.run(["scancel", job_id], env=env, capture_output=True, text=True, timeout=30)
        assert scancel.returncode == 0 and not scancel.stderr, f"scancel {job_id}: {scancel.stderr}"
        returncodes = {"first": first.wait(deadline)}
        relaunch = _launch("relaunch", workdir, env, tracking_server, *SWEEP, f"study.report_dir={report / 'again'}")
        launches.append(relaunch)
        returncodes["relaunch"] = relaunch.wait(deadline)
        returncodes["timeout"] = timeout.wait(deadline)
    finally:
        for launch in launches:
            if launch.process.poll() is None:
                os.killpg(launch.process.pid, signal.SIGKILL)
                launch.process.wait()
    return Study(tracking_server, slurm_cluster, first, relaunch, timeout, returncodes, cancelled, workdir)


@on_the_cluster
def test_every_job_ran_as_a_slurm_array_task(study: Study):
    first, again = study.parents()
    for parent, launch in ((first, study.first), (again, study.relaunch)):
        children = study.children(parent=parent)
        (array,) = {child.data.tags[T.SLURM_ARRAY_JOB_ID] for child in children}  # one array per launch
        for child in children:
            job_id = child.data.tags[T.SLURM_JOB_ID]
            assert job_id == f"{array}_{child.data.tags[T.SLURM_ARRAY_TASK_ID]}"
            # The controller ran it: the job the run names ended as the run did.
            expected = "CANCELLED" if child.info.run_id == study.cancelled.info.run_id else "COMPLETED"
            assert study.job_state(job_id) == expected, f"{child.info.run_name} ({job_id})\n{launch.logs()}"
    assert {c.data.tags[T.SLURM_ARRAY_TASK_ID] for c in study.children(parent=first)} == {"0", "1", "2", "3"}


@on_the_cluster
def test_a_cancelled_job_ends_killed_and_a_relaunch_runs_only_it(study: Study):
    assert study.returncodes["first"] == 1, study.first.logs()  # a job did not finish: the report lists it
    first, again = study.parents()
    killed = study.client.get_run(study.cancelled.info.run_id)
    assert killed.info.status == "KILLED", study.first.logs()
    assert "interrupted" in killed.data.tags[T.FAILURE_REASON]
    assert [c.info.status for c in study.children(parent=first)].count("FINISHED") == 3
    assert first.info.status == "FINISHED" and first.data.tags[T.FAILED_JOBS] == "1"
    listed = (study.workdir / "report" / "first" / "REPORT.md").read_text()
    assert killed.info.run_id in listed and "KILLED" in listed

    # The relaunch trained the cancelled job only, and reused the three others.
    assert study.returncodes["relaunch"] == 0, study.relaunch.logs()
    (retrained,) = study.children(parent=again)
    assert retrained.data.tags[T.CONFIG_HASH] == killed.data.tags[T.CONFIG_HASH]
    reused = {value for key, value in again.data.tags.items() if key.startswith(T.REUSED_PREFIX)}
    assert reused == {c.info.run_id for c in study.children(parent=first) if c.info.status == "FINISHED"}
    report = (study.workdir / "report" / "again" / "REPORT.md").read_text()
    assert "4 jobs: 4 finished (3 reused from earlier launches), 0 failed" in report


@on_the_cluster
def test_the_runs_of_the_study_are_complete(study: Study):
    first, again = study.parents()
    assert first.info.status == again.info.status == "FINISHED"
    finished = [c for c in study.children() if c.info.status == "FINISHED"]
    assert sorted((c.data.tags[T.LOSS], c.data.tags[T.SEED]) for c in finished) == [
        ("cce", "0"), ("cce", "1"), ("focal", "0"), ("focal", "1"),
    ]  # fmt: skip
    for child in finished:
        assert T.TEST_ACCURACY in child.data.metrics and T.EPOCHS_RUN in child.data.metrics
        assert len(study.client.get_metric_history(child.info.run_id, T.VAL_LOSS)) == 1
        logged = _artifacts(study.client, child.info.run_id)
        assert logged >= EXPECTED_ARTIFACTS, f"{child.info.run_name} lacks {EXPECTED_ARTIFACTS - logged}"
    assert "report/REPORT.md" in _artifacts(study.client, again.info.run_id, "report")
    assert any(path.suffix == ".png" for path in (study.workdir / "report" / "again").iterdir())


@on_the_cluster
def test_a_job_over_its_time_limit_ends_killed(study: Study):
    assert study.returncodes["timeout"] == 1, study.timeout.logs()
    (parent,) = study.parents(TIMEOUT_STUDY)
    (child,) = study.children(TIMEOUT_STUDY)
    assert child.info.status == "KILLED", study.timeout.logs()
    assert "interrupted" in child.data.tags[T.FAILURE_REASON]
    assert child.data.metrics[T.VAL_LOSS] > 0 and T.TEST_ACCURACY not in child.data.metrics  # stopped in training
    # Ended by the warning, before the limit.
    assert (child.info.end_time - child.info.start_time) / 1000 < TIME_LIMIT_MIN * 60
    assert parent.info.status == "FINISHED" and parent.data.tags[T.FAILED_JOBS] == "1"


@on_the_cluster
def test_no_run_is_left_running_and_no_job_is_left(study: Study):
    for experiment in (STUDY, TIMEOUT_STUDY):
        assert not [r.info.run_name for r in study.runs(experiment) if r.info.status == "RUNNING"]
    queue = subprocess.run(["squeue", "-h"], env=study.cluster.env, capture_output=True, text=True, timeout=30)
    assert queue.returncode == 0 and not queue.stdout.strip(), queue.stdout + queue.stderr


STOP_STUDY = "slurm_stop"


@on_the_cluster
def test_sigterm_to_a_slurm_launch_cancels_its_jobs_and_ends_every_run(study: Study, cache_dir):
    """After the shared launches (the cluster is idle): 3 jobs, one at a time; SIGTERM to the launch while the
    first trains. The running job ends KILLED, the pending ones never start, and nothing is left in the queue."""
    env = train_env(cache_dir, SLURM_CONF=str(study.cluster.conf))
    deadline = time.monotonic() + LAUNCH_TIMEOUT
    launch = _launch(
        "stop", study.workdir, env, study.server, f"study.name={STOP_STUDY}", "study.report=false",
        "loss=cce", "loss.impl=builtin", "seed=0,1,2", "hydra.launcher.array_parallelism=1", "trainer.epochs=1000",
    )  # fmt: skip
    try:
        training = _first_training_child(study.client, launch, deadline, STOP_STUDY)
        launch.process.send_signal(signal.SIGTERM)
        returncode = launch.wait(deadline)
    finally:
        if launch.process.poll() is None:
            os.killpg(launch.process.pid, signal.SIGKILL)
            launch.process.wait()
    assert returncode == 130, launch.logs()
    (parent,) = study.parents(STOP_STUDY)
    assert parent.info.status == "KILLED" and "SIGTERM" in parent.data.tags[T.FAILURE_REASON], launch.logs()
    assert parent.data.tags[T.NOT_RUN_JOBS] == "2"
    # The cancelled job ends its own run, at its next batch, and leaves the queue once its step has ended.
    while time.monotonic() < deadline:
        queue = subprocess.run(["squeue", "-h"], env=study.cluster.env, capture_output=True, text=True, timeout=30)
        children = study.children(STOP_STUDY)
        if not queue.stdout.strip() and all(child.info.status != "RUNNING" for child in children):
            break
        time.sleep(1)
    assert not queue.stdout.strip(), queue.stdout + queue.stderr
    (child,) = children  # the pending jobs never started
    assert child.info.run_id == training.info.run_id and child.info.status == "KILLED", launch.logs()
    assert "SIGTERM" in child.data.tags[T.FAILURE_REASON]


def _artifacts(client: MlflowClient, run_id: str, path: str = "") -> set[str]:
    found: set[str] = set()
    for item in client.list_artifacts(run_id, path):
        found |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


# --------------------------------------------------------------------------- no cluster needed


@pytest.mark.parametrize(
    "environ,expected",
    [
        ({}, {}),
        ({"SLURM_JOB_ID": "41"}, {T.SLURM_JOB_ID: "41"}),
        (
            {"SLURM_JOB_ID": "44", "SLURM_ARRAY_JOB_ID": "41", "SLURM_ARRAY_TASK_ID": "3"},
            {T.SLURM_JOB_ID: "41_3", T.SLURM_ARRAY_JOB_ID: "41", T.SLURM_ARRAY_TASK_ID: "3"},
        ),
    ],
)
def test_slurm_tags_name_the_job_as_squeue_does(environ, expected):
    assert slurm_tags(environ) == expected
