"""Real servers for the tracking-server tests: a throwaway PostgreSQL cluster and `mlflow server` over it or SQLite.

Nothing here is mocked. `postgres_cluster()` runs initdb/pg_ctl in a temporary folder on a free port and
yields a `postgresql://user:password@127.0.0.1:PORT/db` URI; `xent_lab.tracking.server.start_server` (shared
with the benchmark) runs the tracking server. Where PostgreSQL cannot be started the fixture FAILS with the
reason and the fix (`bash .ci/system-packages`): a suite that silently skipped its PostgreSQL tests would
claim a coverage it does not have.

Import the fixtures into a test module: `from tests.helpers.servers import postgres_uri, tracking_server`.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from xent_lab.errors import TrackingError
from xent_lab.tracking.server import Server, free_port, start_server

PG_USER = "xent"
PG_DATABASE = "mlflow"
FIX = "install the PostgreSQL server with `bash .ci/system-packages` (Debian package `postgresql`)"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot be started here; the message says why and how to fix it."""


def postgres_bindir() -> Path:
    """The folder holding initdb and pg_ctl: `pg_config --bindir`, else the newest /usr/lib/postgresql/*/bin."""
    candidates: list[Path] = []
    if pg_config := shutil.which("pg_config"):
        done = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if done.returncode == 0:
            candidates.append(Path(done.stdout.strip()))
    versions = Path("/usr/lib/postgresql").glob("*/bin")
    candidates += sorted(versions, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, reverse=True)
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    raise PostgresUnavailable(
        f"PostgreSQL server binaries (initdb, pg_ctl) not found in {[str(c) for c in candidates] or 'pg_config'} "
        f"or /usr/lib/postgresql/*/bin; {FIX}"
    )


def _unprivileged_user() -> pwd.struct_passwd | None:
    """The OS user that runs PostgreSQL when we are root (it refuses to run as root); None when we are not."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PostgresUnavailable(
        "running as root, and PostgreSQL refuses to run as root, but there is no `postgres` or `nobody` user "
        f"to run it as; {FIX} (the package creates the `postgres` user)"
    )


@contextmanager
def postgres_cluster(timeout: float = 60) -> Iterator[str]:
    """A fresh PostgreSQL cluster with password authentication; yields the URI of its database `mlflow`.

    The cluster lives in a temporary folder and listens on 127.0.0.1 only; it is stopped and deleted on exit.
    Durability is off (fsync, synchronous_commit): it is thrown away anyway. Raises PostgresUnavailable.
    """
    bindir = postgres_bindir()
    user = _unprivileged_user()
    base = Path(tempfile.mkdtemp(prefix="xent-pg-"))
    as_user: dict[str, Any] = {}
    if user is not None:
        os.chown(base, user.pw_uid, user.pw_gid)
        as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    password = "pg-" + secrets.token_hex(12)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "HOME": str(base), "PGPASSWORD": password}

    def run(*command: str) -> subprocess.CompletedProcess:
        return subprocess.run(command, cwd=base, env=env, capture_output=True, text=True, timeout=timeout, **as_user)

    data, log = base / "data", base / "postgres.log"
    started = False
    try:
        pwfile = base / "pwfile"
        pwfile.write_text(password + "\n")
        if user is not None:
            os.chown(pwfile, user.pw_uid, user.pw_gid)
        done = run(
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            PG_USER,
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        )
        pwfile.unlink()
        if done.returncode != 0:
            who = f" as OS user {user.pw_name}" if user else ""
            raise PostgresUnavailable(f"initdb{who} failed in {base}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        for attempt in range(3):
            port = free_port()
            options = (
                f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off"
            )
            done = run(
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(log),
                "-o",
                options,
                "-w",
                "-t",
                str(int(timeout)),
                "start",
            )
            if done.returncode == 0:
                started = True
                break
            server_log = log.read_text(errors="replace") if log.exists() else ""
            if attempt == 2 or "could not bind" not in server_log:  # another process took the port: retry
                raise PostgresUnavailable(
                    f"pg_ctl start failed ({bindir}):\n{done.stdout[-1500:]}{done.stderr[-1500:]}\n"
                    f"server log:\n{server_log[-2500:]}"
                )
        # createdb, not a Python driver: which driver `postgresql://` needs is SQLAlchemy's choice.
        done = run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", PG_USER, PG_DATABASE)
        if done.returncode != 0:
            raise PostgresUnavailable(f"createdb failed: {done.stderr[-2000:]}")
        yield f"postgresql://{PG_USER}:{password}@127.0.0.1:{port}/{PG_DATABASE}"
    finally:
        if started:
            stopped = run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
            if stopped.returncode != 0 and (data / "postmaster.pid").exists():
                os.kill(int((data / "postmaster.pid").read_text().split()[0]), signal.SIGQUIT)
                time.sleep(1)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres_uri() -> Iterator[str]:
    """`postgresql://xent:<random password>@127.0.0.1:PORT/mlflow` on a throwaway cluster."""
    try:
        with postgres_cluster() as uri:
            yield uri
    except PostgresUnavailable as exc:
        pytest.fail(f"cannot start PostgreSQL for the server tests: {exc}", pytrace=False)


def _driver_hint(message: str) -> str:
    if "No module named 'psycopg'" not in message:
        return ""
    return (
        "\nSQLAlchemy 2.1 opens postgresql:// URIs with psycopg 3: the project needs `psycopg[binary]` "
        "(psycopg2 serves only postgresql+psycopg2:// URIs)"
    )


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def tracking_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real tracking server over SQLite or PostgreSQL (the param), serving artifacts; `.uri` is its address."""
    folder = tmp_path_factory.mktemp(f"server-{request.param}")
    if request.param == "sqlite":
        backend = f"sqlite:///{folder / 'mlflow.db'}"
    else:
        backend = request.getfixturevalue("postgres_uri")
    with ExitStack() as stack:
        try:
            server = stack.enter_context(start_server(backend, folder / "mlartifacts"))
        except TrackingError as exc:
            pytest.fail(f"{exc}{_driver_hint(str(exc))}", pytrace=False)
        yield server
    try:  # the server and every worker it spawned are gone
        os.killpg(server.process.pid, 0)
    except ProcessLookupError:
        return
    pytest.fail(f"mlflow server (pid {server.process.pid}) left processes behind in its process group")


# --- the REST API, with plain urllib: what any client (the UI, curl) sees ----------------------------------


def rest_get(server: str, endpoint: str, **query: str) -> dict[str, Any]:
    url = f"{server}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(query)}"
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def rest_post(server: str, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{server}/api/2.0/mlflow/{endpoint}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def artifact_files(server: str, run_id: str, path: str = "") -> dict[str, int]:
    """Every artifact file of a run -> its size, recursively, from `/api/2.0/mlflow/artifacts/list`."""
    query = {"run_id": run_id, **({"path": path} if path else {})}
    found: dict[str, int] = {}
    for item in rest_get(server, "artifacts/list", **query).get("files", []):
        if item.get("is_dir"):
            found.update(artifact_files(server, run_id, item["path"]))
        else:
            found[item["path"]] = int(item.get("file_size", 0))
    return found


def download_artifact(server: str, artifact_uri: str, path: str) -> bytes:
    """One artifact's bytes through the artifact proxy (`mlflow-artifacts:/...` -> `/api/2.0/mlflow-artifacts/...`)."""
    match = re.fullmatch(r"mlflow-artifacts:/+(.*)", artifact_uri)
    assert match, f"artifacts are not proxied by the server: artifact_uri={artifact_uri}"
    url = f"{server}/api/2.0/mlflow-artifacts/artifacts/{match.group(1).strip('/')}/{urllib.parse.quote(path)}"
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()
