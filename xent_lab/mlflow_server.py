"""A real `mlflow server` as a subprocess, for the server tests and the tracking-server benchmark.

`start_server(backend_uri, artifacts_dir)` starts what `make server` starts (a tracking server that
proxies artifacts into `artifacts_dir`) on a free port of 127.0.0.1, waits until `/health` answers and
yields a `Server` whose `uri` goes into `tracking.uri`. On exit it stops the server and every process it
spawned (uvicorn workers, job consumers): the server runs in its own process group, and the group is
killed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from xent_lab.errors import TrackingError
from xent_lab.tracking import scrub

# How long to wait for a new server's /health, and for it to stop after SIGTERM.
START_TIMEOUT = 180.0
STOP_GRACE = 10.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (bind to port 0, read it, close)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A running server: `uri` for clients, and where its artifacts and log go."""

    uri: str
    backend_uri: str
    artifacts_dir: Path
    process: subprocess.Popen
    log: IO[bytes]

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's stdout and stderr, password of the backend URI hidden."""
        self.log.flush()
        self.log.seek(0, os.SEEK_END)
        size = self.log.tell()
        self.log.seek(max(0, size - chars))
        return scrub(self.log.read().decode(errors="replace"), self.backend_uri)


def server_command(host: str, port: int, artifacts_dir: Path, workers: int = 1) -> list[str]:
    """`mlflow server` as `make server` runs it; the backend URI goes through the environment (see `start_server`)."""
    return [sys.executable, "-m", "mlflow", "server", "--serve-artifacts", "--artifacts-destination",
            str(artifacts_dir), "--host", host, "--port", str(port), "--workers", str(workers)]


def _healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(uri + "/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the server's process group, then SIGKILL whatever is left of it (workers included)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            break  # the group is gone
        if sig == signal.SIGTERM:
            try:
                process.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                pass
    process.wait()


def _launch(backend_uri: str, artifacts_dir: Path, host: str, port: int, workers: int, jobs: bool,
            timeout: float, env: dict[str, str] | None) -> Server:
    environment = {k: v for k, v in (os.environ if env is None else env).items() if k != "MLFLOW_TRACKING_URI"}
    # Through the environment, not the command line: a password in the backend URI stays out of `ps`.
    environment["MLFLOW_BACKEND_STORE_URI"] = backend_uri
    if not jobs:
        # MLflow's job runner starts seven huey consumers; tracking needs none of them.
        environment["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    # Append mode: the server shares this file's offset, and reading the tail must not move where it writes.
    log = tempfile.TemporaryFile(mode="a+b")
    process = subprocess.Popen(
        server_command(host, port, artifacts_dir, workers), env=environment, stdin=subprocess.DEVNULL,
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    server = Server(f"http://{host}:{port}", backend_uri, artifacts_dir, process, log)
    deadline = time.monotonic() + timeout
    try:
        while not _healthy(server.uri):
            if process.poll() is not None:
                raise TrackingError(
                    f"mlflow server (backend {scrub(backend_uri, backend_uri)}, port {port}) exited "
                    f"with code {process.returncode} before answering /health; its output ends with:\n"
                    f"{server.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise TrackingError(
                    f"mlflow server (backend {scrub(backend_uri, backend_uri)}) did not answer "
                    f"{server.uri}/health within {timeout:.0f} s; its output ends with:\n{server.log_tail()}"
                )
            time.sleep(0.25)
    except BaseException:
        _stop(process)
        log.close()
        raise
    return server


@contextmanager
def start_server(
    backend_uri: str,
    artifacts_dir: Path | str,
    host: str = "127.0.0.1",
    port: int | None = None,
    *,
    workers: int = 1,
    jobs: bool = False,
    timeout: float = START_TIMEOUT,
    env: dict[str, str] | None = None,
) -> Iterator[Server]:
    """A running `mlflow server` over `backend_uri`, serving artifacts from `artifacts_dir`; stopped on exit.

    `port=None` picks a free port, and picks again if another process takes it before the server binds.
    `jobs=False` turns off MLflow's background job runner (GenAI evaluation jobs), which tracking does not use.
    Raises TrackingError, with the end of the server's output, when it exits or stays silent for `timeout` s.
    """
    artifacts_dir = Path(artifacts_dir).resolve()
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(3):
        try:
            server = _launch(backend_uri, artifacts_dir, host, port or free_port(host), workers, jobs, timeout, env)
            break
        except TrackingError as exc:
            if port is not None or attempt == 2 or "address already in use" not in str(exc).lower():
                raise
    try:
        yield server
    finally:
        _stop(server.process)
        server.log.close()
