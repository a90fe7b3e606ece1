"""A real `mlflow server` as a subprocess, for the tracking-server benchmark (and the server tests).

`start_server(backend_uri, artifacts_dir)` starts what `make server` starts (a tracking server that
proxies artifacts into `artifacts_dir`, MLflow's job runner off) on a free port of 127.0.0.1, waits until
`/health` answers and yields a `Server` whose `uri` goes into `tracking.uri`. On exit it stops the server
and every process it spawned (uvicorn workers): the server runs in its own process group, and the group
is killed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from xent_lab.errors import TrackingError
from xent_lab.tracking.secrets import scrub
from xent_lab.tracking.store import probe_health

HOST = "127.0.0.1"
# How long to wait for a new server's /health, and for it to stop after SIGTERM.
START_TIMEOUT = 180.0
STOP_GRACE = 10.0
PORT_ATTEMPTS = 3


def free_port(host: str = HOST) -> int:
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
        self.log.seek(max(0, self.log.tell() - chars))
        return scrub(self.log.read().decode(errors="replace"), self.backend_uri)


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


def _launch(backend_uri: str, artifacts_dir: Path, port: int, timeout: float) -> Server:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    # Through the environment, not the command line: a password in the backend URI stays out of `ps`.
    env["MLFLOW_BACKEND_STORE_URI"] = backend_uri
    # MLflow's job runner starts seven huey consumers; tracking needs none of them.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--serve-artifacts",
        "--artifacts-destination",
        str(artifacts_dir),
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    # Append mode: the server shares this file's offset, and reading the tail must not move where it writes.
    log = tempfile.TemporaryFile(mode="a+b")
    process = subprocess.Popen(
        command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    server = Server(f"http://{HOST}:{port}", backend_uri, artifacts_dir, process, log)
    shown = scrub(backend_uri, backend_uri)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                probe_health(server.uri, timeout=2)
                return server
            except OSError:  # URLError included: not listening yet
                pass
            if process.poll() is not None:
                raise TrackingError(
                    f"mlflow server (backend {shown}, port {port}) exited with code {process.returncode} "
                    f"before answering /health; its output ends with:\n{server.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise TrackingError(
                    f"mlflow server (backend {shown}) did not answer {server.uri}/health within {timeout:.0f} s; "
                    f"its output ends with:\n{server.log_tail()}"
                )
            time.sleep(0.25)
    except BaseException:
        _stop(process)
        log.close()
        raise


@contextmanager
def start_server(backend_uri: str, artifacts_dir: Path | str, *, timeout: float = START_TIMEOUT) -> Iterator[Server]:
    """A running `mlflow server` over `backend_uri`, serving artifacts from `artifacts_dir`; stopped on exit.

    Picks a free port, and picks again if another process takes it before the server binds.
    Raises TrackingError, with the end of the server's output, when it exits or stays silent for `timeout` s.
    """
    artifacts_dir = Path(artifacts_dir).resolve()
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(PORT_ATTEMPTS):
        try:
            server = _launch(backend_uri, artifacts_dir, free_port(), timeout)
            break
        except TrackingError as exc:
            if attempt == PORT_ATTEMPTS - 1 or "address already in use" not in str(exc).lower():
                raise
    try:
        yield server
    finally:
        _stop(server.process)
        server.log.close()
