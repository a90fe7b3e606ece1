"""A real single-node SLURM cluster: munged, slurmctld and slurmd as child processes, for the SLURM tests and
`make cluster` (tools/cluster.py).

`LocalCluster(folder).start()` writes a munge key and a slurm.conf into `folder`, starts the three daemons in
the foreground (`munged -F`, `slurmctld -D`, `slurmd -D`, each in its own session, its output in
`folder/NAME.log`) and waits until `sinfo` shows the node idle. `env` (`SLURM_CONF`) points sbatch, srun,
scancel and submitit at it. `stop()` stops the daemons by their PIDs, then kills what is left of the jobs (see
`leftovers`). Nothing is mocked; where a daemon does not come up, `ClusterUnavailable` says which, with the end of
its log. The daemons run as root (slurmd starts the jobs). Each start is a fresh cluster: no job state is kept.

Accounting is off (the issue's minimal slurm.conf), so `sacct` fails: submitit learns that a job ended from the
result file the job writes, and warns "Bypassing sacct error" each time it polls.

Fixture: `from tests.helpers.slurm import slurm_cluster`.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from xent_lab.tracking.server import free_port

FIX = "install SLURM and MUNGE with `bash .ci/system-packages` (Debian packages `slurm-wlm`, `munge`)"
DAEMONS = ("munged", "slurmctld", "slurmd")
PARTITION = "debug"
# A node for trying things: several one-CPU jobs at once even on a small machine (they share its cores:
# task/none binds nothing).
MIN_CPUS = 8
# Seconds between the SIGTERM of scancel or the time limit and SIGKILL: ample for a job to end its MLflow run.
KILL_WAIT = 60
START_TIMEOUT = 30.0
STOP_GRACE = 5.0


class ClusterUnavailable(RuntimeError):
    """The local cluster did not come up; the message says which daemon and ends with its log."""


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise ClusterUnavailable("no MemTotal in /proc/meminfo")


def slurm_conf(folder: Path, host: str, ctld_port: int, slurmd_port: int) -> str:
    """The whole cluster: one controller and one node on this host, accounting off, nothing in /etc or /var."""
    return f"""\
ClusterName=xent-lab
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={folder / "munge.socket"}
StateSaveLocation={folder / "state"}
SlurmdSpoolDir={folder / "spool"}
SlurmctldPidFile={folder / "slurmctld.pid"}
SlurmdPidFile={folder / "slurmd.pid"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
MpiDefault=none
ReturnToService=2
KillWait={KILL_WAIT}
SlurmdParameters=config_overrides
NodeName={host} NodeAddr=127.0.0.1 CPUs={max(MIN_CPUS, os.cpu_count() or 1)} RealMemory={_memory_mb()} State=UNKNOWN
PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def log_tail(path: Path, lines: int = 25) -> str:
    if not path.exists():
        return f"({path} was not written)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class LocalCluster:
    """One controller and one node on this machine; state, sockets and logs in `folder`."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder).resolve()
        self.conf = self.folder / "slurm.conf"
        self.node = socket.gethostname().split(".")[0]
        self.pids: dict[str, int] = {}

    @classmethod
    def attach(cls, folder: Path) -> LocalCluster:
        """The cluster that `start` left in `folder` (another process started it: `make cluster`)."""
        cluster = cls(folder)
        pids = cluster.folder / "pids.json"
        cluster.pids = json.loads(pids.read_text()) if pids.exists() else {}
        return cluster

    def running(self) -> bool:
        return bool(self.pids) and all(_alive(pid) for pid in self.pids.values())

    @property
    def env(self) -> dict[str, str]:
        """The environment of a client of this cluster (sbatch, scancel, a submitit launch)."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def _write_config(self) -> None:
        missing = [name for name in (*DAEMONS, "sinfo", "sbatch", "srun", "scancel") if shutil.which(name) is None]
        if missing:
            raise ClusterUnavailable(f"{', '.join(missing)} not found on PATH; {FIX}")
        if os.geteuid() != 0:
            raise ClusterUnavailable("the local cluster runs its daemons as root (slurmd starts the jobs); run as root")
        for sub in ("state", "spool"):  # no jobs recovered from an earlier start
            shutil.rmtree(self.folder / sub, ignore_errors=True)
            (self.folder / sub).mkdir(parents=True)
        self.folder.chmod(0o755)  # munged wants its socket's folder searchable by all, writable only by root
        key = self.folder / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o400)
        self.conf.write_text(slurm_conf(self.folder, self.node, free_port(), free_port()))

    def _command(self, name: str) -> list[str]:
        if name == "munged":
            files = {
                "key-file": "munge.key",
                "socket": "munge.socket",
                "pid-file": "munged.pid",
                "seed-file": "munged.seed",
            }
            return ["munged", "-F", *(f"--{option}={self.folder / file}" for option, file in files.items())]
        return [name, "-D"]

    def _spawn(self, name: str) -> None:
        with open(self.folder / f"{name}.log", "wb") as log:
            process = subprocess.Popen(
                self._command(name),
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives the Ctrl-C of the terminal that started `make cluster`
            )
        self.pids[name] = process.pid
        (self.folder / "pids.json").write_text(json.dumps(self.pids))

    def _check_alive(self) -> None:
        for name, pid in self.pids.items():
            if not _alive(pid):
                raise ClusterUnavailable(
                    f"{name} exited while the cluster was starting ({self.folder}); its log ends with:\n"
                    f"{log_tail(self.folder / f'{name}.log')}"
                )

    def _wait(self, what: str, ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            self._check_alive()
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {name}.log\n{log_tail(self.folder / f'{name}.log')}" for name in self.pids)
                raise ClusterUnavailable(f"{what} within {timeout:.0f} s ({self.folder}); the logs end with:\n{logs}")
            time.sleep(0.2)

    def node_state(self) -> str:
        done = subprocess.run(
            ["sinfo", "-h", "-n", self.node, "-o", "%T"], env=self.env, capture_output=True, text=True, timeout=10
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    def start(self, timeout: float = START_TIMEOUT) -> LocalCluster:
        """Write the config, start munged, slurmctld and slurmd, and wait until the node is idle."""
        try:
            self._write_config()
            self._spawn("munged")
            self._wait("munged did not create its socket", (self.folder / "munge.socket").exists, timeout)
            self._spawn("slurmctld")
            self._spawn("slurmd")
            self._wait(f"node {self.node} did not become idle in sinfo", lambda: self.node_state() == "idle", timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the daemons by PID (SIGTERM, then SIGKILL), then kill every process left of the jobs."""
        for name in reversed(DAEMONS):
            if name in self.pids and _command_name(self.pids[name]) == name:  # not a PID reused since
                _terminate(self.pids[name])
        for pid in self.leftovers():
            _terminate(pid, grace=0)
        self.pids = {}
        (self.folder / "pids.json").unlink(missing_ok=True)

    def leftovers(self) -> list[int]:
        """Processes of this cluster's jobs still alive: slurmstepd, the batch script, srun and the job itself.

        They carry SLURM_CONF=this cluster's slurm.conf in their environment, and SLURM_JOB_ID (all but
        slurmstepd). So does no shell that merely exported SLURM_CONF to submit.
        """
        marker = f"SLURM_CONF={self.conf}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:  # gone, or not ours to read
                continue
            stepd = _command_name(int(entry.name)) == "slurmstepd"
            if marker in environ and (stepd or any(item.startswith(b"SLURM_JOB_ID=") for item in environ)):
                found.append(int(entry.name))
        return found


def _command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)  # our child: reap it, or it stays a zombie that looks alive
        return done == 0
    except ChildProcessError:  # not our child (make cluster-stop, another process started it)
        try:
            os.kill(pid, 0)
            return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
        except (ProcessLookupError, FileNotFoundError):
            return False


def _terminate(pid: int, grace: float = STOP_GRACE) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL) if grace else (signal.SIGKILL,):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _alive(pid):
            return


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[LocalCluster]:
    """A running single-node cluster for the session; stopped, and its jobs' processes killed, however it ends."""
    # In /tmp, not pytest's tmp_path: munged wants every folder above its socket searchable by all.
    cluster = LocalCluster(Path(tempfile.mkdtemp(prefix="xent-slurm-")))
    try:
        try:
            cluster.start()
        except ClusterUnavailable as exc:
            pytest.fail(f"cannot start the local SLURM cluster: {exc}", pytrace=False)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.folder, ignore_errors=True)
