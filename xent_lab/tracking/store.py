"""The tracking store: where runs go (URIs), whether a server answers, and one run's lifecycle.

Everything goes through `MlflowClient` with an explicit run id (no global "active run"), so a
run is always ended, FINISHED, FAILED or KILLED, whatever happens in between.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import math
import os
import re
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from xent_lab.errors import TrackingError
from xent_lab.tracking import tags as T
from xent_lab.tracking.lock import (
    DEFAULT_LOCK_TIMEOUT_S,
    check_database,
    creation_lock,
    patiently,
    sqlite_path,
    wait_for_lock,
)
from xent_lab.tracking.record import Contents, LocalRecord, RecordError, RunInfo
from xent_lab.tracking.runlog import RunLogger
from xent_lab.tracking.secrets import one_line, redact, scrub

_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    # When a run ends, MLflow prints "View run ... at: <tracking URI>", password included; the summary
    # already says where the run is, password hidden.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}

# A new store is no news: MLflow logs "Creating initial MLflow database tables..." and "Updating database tables"
# at INFO when it makes one (its migrations run through alembic), between the trainer's own lines. Warnings stay.
QUIET_LOGGERS = ("mlflow.store.db.utils", "alembic")
for _name in QUIET_LOGGERS:
    logging.getLogger(_name).setLevel(logging.WARNING)


def resolve_uri(configured: str | None, launch_dir: Path | None = None) -> str:
    """The tracking URI: config, else $MLFLOW_TRACKING_URI, else `sqlite:///mlflow.db` in the launch dir.

    A relative SQLite path is made absolute, so that jobs started elsewhere (Hydra launchers,
    subprocesses) write to the same store.
    """
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        path = (launch_dir or Path.cwd()) / uri.removeprefix("sqlite:///")
        uri = f"sqlite:///{path.resolve()}"
    return uri


def _request(uri: str, path: str, timeout: float) -> None:
    """GET `path` of the HTTP tracking server at `uri`; raises OSError (URLError, HTTPError) when it does not answer.

    urllib would read `user:password@` as part of the host name: the credentials go as basic auth, from the URI
    or else, as MLflow's client takes them, from $MLFLOW_TRACKING_USERNAME and $MLFLOW_TRACKING_PASSWORD.
    """
    parts = urlsplit(uri)
    bare = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2], query="", fragment=""))
    request = urllib.request.Request(bare.rstrip("/") + path)
    if parts.username is not None:
        username, password = unquote(parts.username), unquote(parts.password or "")
    else:
        username, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD", "")
    if username is not None:
        credentials = f"{username}:{password}".encode()
        request.add_header("Authorization", "Basic " + base64.b64encode(credentials).decode())
    with urllib.request.urlopen(request, timeout=timeout) as response:
        response.read()


def probe_health(uri: str, timeout: float) -> None:
    """GET `uri`/health of an HTTP tracking server; raises OSError (URLError) when it does not answer."""
    _request(uri, "/health", timeout)


# SQLite's unix VFS opens no path over 512 bytes, and it opens the database's journal, the path + "-journal", too.
SQLITE_MAX_PATH = 512 - len("-journal")
# The schemes MLflow keeps in a database through SQLAlchemy, besides SQLite (`postgresql+psycopg://` included).
_DATABASES = ("postgresql", "mysql", "mssql")
_FIX = "point tracking.uri / MLFLOW_TRACKING_URI (or --tracking-uri) at a store that answers"


def check_reachable(uri: str, timeout: float) -> None:
    """Fail fast, in one line naming the URI, when the store cannot be used: an HTTP server whose /health or API
    does not answer within `timeout`, a database that refuses the connection, an SQLite path SQLite cannot open.

    MLflow's own client retries for minutes (HTTP requests, and the first connection to a database: about 100 s);
    a user who mistyped a port or a password should know in seconds.
    """
    path = sqlite_path(uri)
    if uri.startswith(("http://", "https://")):
        _check_server(uri, timeout)
    elif path is not None and len(os.fsencode(path)) > SQLITE_MAX_PATH:
        raise TrackingError(
            f"the MLflow store path {path} is {len(os.fsencode(path))} bytes long, and SQLite opens no path over "
            f"{SQLITE_MAX_PATH} bytes; set tracking.uri (or MLFLOW_TRACKING_URI, --tracking-uri) to a shorter one, "
            "e.g. sqlite:////tmp/mlflow.db, or launch from a shorter folder"
        )
    elif urlsplit(uri).scheme.partition("+")[0] in _DATABASES:
        _check_database_server(uri, timeout)


def _check_server(uri: str, timeout: float) -> None:
    try:
        probe_health(uri, timeout)
    except OSError as exc:
        raise TrackingError(
            f"cannot reach the MLflow tracking server at {redact(uri)} ({exc}); start it "
            "(`make server`) or point tracking.uri / MLFLOW_TRACKING_URI at a running one"
        ) from None
    try:  # /health is answered by the web server alone; a store behind it that hangs shows only here
        _request(uri, "/api/2.0/mlflow/experiments/search?max_results=1", timeout)
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            raise TrackingError(
                f"the MLflow tracking server at {redact(uri)} refused the credentials (HTTP {exc.code}); set them in "
                "the URI or in MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
            ) from None
        # Any other answer is an answer: MLflow's own calls say what is wrong.
    except OSError as exc:
        raise TrackingError(
            f"the MLflow tracking server at {redact(uri)} answers /health but not its API within {timeout:g} s "
            f"(tracking.connect_timeout): {one_line(exc, uri)}; check the server and its backend store, or {_FIX}"
        ) from None


def _check_database_server(uri: str, timeout: float) -> None:
    """Connect once, within `timeout`, as MLflow's store would (with retries for about 100 s) before giving up."""
    import sqlalchemy  # MLflow's own dependency; loaded only for a database store

    # libpq's and the MySQL drivers' own limit, in whole seconds; SQL Server's drivers name theirs otherwise.
    limit = {} if uri.startswith("mssql") else {"connect_timeout": max(1, math.ceil(timeout))}
    try:
        engine = sqlalchemy.create_engine(uri, connect_args=limit)
    except Exception as exc:  # e.g. no driver for the scheme
        raise _unusable(uri, exc) from None
    try:
        with engine.connect():
            pass
    except Exception as exc:
        raise TrackingError(
            f"cannot connect to the MLflow store {redact(uri)} within {timeout:g} s (tracking.connect_timeout): "
            f"{one_line(getattr(exc, 'orig', None) or exc, uri)}; check the host, port, user and password, or {_FIX}"
        ) from None
    finally:
        engine.dispose()


# What a study writes into the tree (experiments/NAME/REPORT.md and its plots): outputs, not the code that ran, so a
# report rewritten mid-way through a queue of launches does not mark the later runs dirty. experiments/NAME.yaml
# (the study's own config) still counts.
_OUTPUTS = ":(exclude)experiments/*/*"


def git_commit(root: Path | None = None) -> str:
    """The commit of the code being run, with `-dirty` when tracked files other than the study reports have
    changes; `unknown` outside git. `root`: the repository (default: this package's)."""
    root = root if root is not None else Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", _OUTPUTS],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def artifact_folder(name: str) -> str:
    """The folder name of experiment `name`'s artifacts: a readable slug and a hash of the exact name, e.g.
    `my_study_1-3f0c9b6a2e` for "my study/1", so that distinct names never share a folder ("a/b" and "a_b", or
    "实验" and "测试", would have the same slug; on a case-insensitive disk, so would "A" and "a")."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")[:64] or "experiment"
    return f"{slug}-{hashlib.sha256(name.encode()).hexdigest()[:10]}"


def artifact_location(uri: str, name: str) -> str | None:
    """Where a new experiment of a local SQLite store keeps its artifacts: `mlruns/<artifact_folder(name)>` beside
    the database file. None (MLflow's default) for other stores. An experiment that exists keeps its own place.

    MLflow's default is `./mlruns` of the directory the experiment happened to be created from, so runs
    launched later from elsewhere would write there, and deleting that directory would lose every run's
    artifacts (models, test predictions) while the database still lists them."""
    path = sqlite_path(uri)
    if path is None:
        return None
    return str(path.resolve().parent / "mlruns" / artifact_folder(name))


def _experiment(client: MlflowClient, name: str, artifacts: str | None) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifacts)
    except MlflowException:
        # Another launch created it between the two calls (a server has no lock to share with us).
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def open_client(uri: str, lock_timeout_s: float) -> MlflowClient:
    """A client of the store at `uri`, the store (its schema) created if new; errors are one line.

    MLflow creates a new SQLite store's tables when the client is made. A local store is checked to be
    SQLite first, and made under a lock file beside it, so that launches and runs starting at the same
    moment never race that creation; a store another process keeps locked is waited for.
    """
    path = sqlite_path(uri)
    try:
        if path is None:
            return MlflowClient(tracking_uri=uri)
        check_database(path)
        with creation_lock(path, lock_timeout_s):
            wait_for_lock(path, lock_timeout_s)
            # MLflow reads the store as it makes the client: another process's write can lock it out even now.
            return patiently(MlflowClient, uri, uri=uri, timeout_s=lock_timeout_s)
    except TrackingError:
        raise
    except Exception as exc:  # e.g. a scheme MLflow has no store for
        raise _unusable(uri, exc) from None


def ensure_experiment(client: MlflowClient, uri: str, experiment: str, lock_timeout_s: float) -> str:
    """The id of `experiment`, created if new (also when another process creates it at the same moment)."""
    try:
        artifacts = artifact_location(uri, experiment)
        return patiently(_experiment, client, experiment, artifacts, uri=uri, timeout_s=lock_timeout_s)
    except TrackingError:
        raise
    except Exception as exc:
        raise _unusable(uri, exc) from None


def open_existing(uri: str, timeout: float) -> MlflowClient:
    """A client of a store that exists already, for a tool that reads one: a missing SQLite file is refused (opening
    it would create an empty store), as is a store that cannot be used (`check_reachable`); errors are one line."""
    check_reachable(uri, timeout)
    path = sqlite_path(uri)
    if path is not None:
        if not path.is_file():
            raise TrackingError(
                f"no MLflow store at {path}; pass --tracking-uri or set MLFLOW_TRACKING_URI to an existing store "
                "(a tool that reads a store never creates one)"
            )
        check_database(path)
    try:
        return MlflowClient(tracking_uri=uri)
    except Exception as exc:
        raise _unusable(uri, exc) from None


def _unusable(uri: str, exc: Exception) -> TrackingError:
    detail = one_line(exc, uri, limit=200)
    if "unsupported URI" in detail or "registered tracking store" in detail:  # MLflow lists every scheme it knows
        detail = f"MLflow has no store for the scheme '{urlsplit(uri).scheme}'"
    return TrackingError(
        f"cannot use the MLflow store {redact(uri)} (tracking.uri or MLFLOW_TRACKING_URI): {detail}; expected "
        "sqlite:///PATH, http(s)://HOST:PORT of a running server, or postgresql://USER@HOST/DB"
    )


class Tracker:
    """A tracking store and experiment; `run()` opens runs in it."""

    def __init__(self, uri: str, experiment: str, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> None:
        self.uri = uri
        self.experiment = experiment
        self.lock_timeout_s = lock_timeout_s  # how long a write waits for a locked SQLite store
        self._experiment_id: str | None = None
        if uri.startswith(("http://", "https://")):
            # MLflow's defaults retry a dead server for minutes; give up in seconds and go offline
            # (the run's local record keeps everything). The environment can still set its own.
            for name, value in _HTTP_DEFAULTS.items():
                os.environ.setdefault(name, value)
        self.client = open_client(uri, lock_timeout_s)

    def experiment_id(self) -> str:
        """The experiment's id; the first call creates the experiment if it is new."""
        if self._experiment_id is None:
            self._experiment_id = ensure_experiment(self.client, self.uri, self.experiment, self.lock_timeout_s)
        return self._experiment_id

    @contextmanager
    def run(
        self, run_name: str, tags: Mapping[str, str] | None = None, record_dir: Path | None = None
    ) -> Iterator[RunLogger]:
        """A new run, ended FINISHED on success, KILLED on Ctrl-C, FAILED on any other exception.

        The reason a run did not finish goes in the `failure_reason` tag; what was logged before stays.
        With `record_dir`, everything is also written there (`xent_lab.record`), and losing the
        tracking server mid-run is survived (see RunLogger).
        """
        tags = dict(tags or {})
        try:
            experiment_id = self.experiment_id()
            create = functools.partial(self.client.create_run, experiment_id, run_name=run_name, tags=tags)
            run = patiently(create, uri=self.uri, timeout_s=self.lock_timeout_s)
        except TrackingError:
            raise
        except Exception as exc:
            raise TrackingError(f"cannot create a run in the MLflow store {redact(self.uri)}: {exc}") from exc
        logger = RunLogger(self.client, run.info.run_id, experiment_id, None, self.uri, self.lock_timeout_s)
        status, reason = "FINISHED", None
        try:
            if record_dir is not None:  # in here: a record that cannot be started (a full disk) fails the run
                info = RunInfo(self.experiment, run_name, redact(self.uri), tags, run_id=run.info.run_id)
                logger.record = LocalRecord(record_dir, info)
            yield logger
        except KeyboardInterrupt as exc:  # xent_lab.stopping.Stopped says which signal
            status, reason = "KILLED", str(exc) or "interrupted by the user (Ctrl-C or SIGTERM)"
            raise
        except BaseException as exc:
            status, reason = "FAILED", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._end(logger, status, reason)

    def _end(self, logger: RunLogger, status: str, reason: str | None) -> None:
        """End the run in the store even when its record cannot be written (the full disk that failed the run):
        the run does not stay RUNNING, and the error that ended it is the one raised, not the record's."""
        tags = {T.FAILURE_REASON: scrub(reason, self.uri)[:5000]} if reason is not None else {}
        unwritten = None
        try:
            if tags:
                logger.set_tags(tags)
            if logger.record is not None:
                logger.record.update(status=status)
        except RecordError as exc:
            unwritten = exc
            logger.upload(Contents(tags=tags))
        logger._send(self.client.set_terminated, logger.run_id, status)
        if unwritten is not None and reason is None:
            raise unwritten  # the run went well, its record's end did not: say so

    def run_url(self, logger: RunLogger) -> str:
        """Where the run is in the MLflow UI (the server's own address when tracking over HTTP)."""
        base = redact(self.uri).rstrip("/") if self.uri.startswith("http") else "http://127.0.0.1:5000"
        return f"{base}/#/experiments/{logger.experiment_id}/runs/{logger.run_id}"
