"""MLflow tracking: where runs go and one run's lifecycle (the per-epoch callback is runner.EpochMetricsLogger).

Everything goes through `MlflowClient` with an explicit run id (no global "active run"), so a
run is always ended, FINISHED, FAILED or KILLED, whatever happens in between.
"""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from matplotlib.figure import Figure
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from xent_lab.errors import TrackingError
from xent_lab.record import LocalRecord, RunInfo

# MLflow accepts at most this many params per log_batch call.
PARAMS_PER_BATCH = 100
# Tag holding why a run did not finish.
FAILURE_TAG = "failure_reason"
_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    # When a run ends, MLflow prints "View run ... at: <tracking URI>", password included; the summary
    # already says where the run is, password hidden.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}


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


def redact(uri: str) -> str:
    """`uri` with any password replaced by ***, for messages, params and tags."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def scrub(text: str, uri: str) -> str:
    """`text` with the password of `uri` (if it has one) replaced by ***: for params, tags, artifacts, logs."""
    password = urlsplit(uri).password
    return text.replace(password, "***") if password else text


class _ScrubPassword(logging.Filter):
    def __init__(self, uri: str) -> None:
        super().__init__()
        self.uri = uri

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = scrub(message, self.uri)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


def scrub_logs(uri: str) -> None:
    """Hide the password of `uri` in everything the logging handlers print (e.g. Hydra's job lines)."""
    if urlsplit(uri).password is None:
        return
    for handler in logging.getLogger().handlers:
        handler.addFilter(_ScrubPassword(uri))


def check_reachable(uri: str, timeout: float) -> None:
    """Fail fast, naming the URI, when an HTTP tracking server does not answer.

    MLflow's own client retries for minutes; a user who mistyped a port should know in seconds.
    """
    if not uri.startswith(("http://", "https://")):
        return
    parts = urlsplit(uri)
    # urllib would read `user:password@` as part of the host name: send the credentials as basic auth instead.
    bare = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    request = urllib.request.Request(bare.rstrip("/") + "/health")
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        request.add_header("Authorization", "Basic " + base64.b64encode(credentials).decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except (urllib.error.URLError, OSError) as exc:
        raise TrackingError(
            f"cannot reach the MLflow tracking server at {redact(uri)} ({exc}); start it "
            "(`make server`) or point tracking.uri / MLFLOW_TRACKING_URI at a running one"
        ) from None


def git_commit() -> str:
    """The commit of the code being run, with `-dirty` when the work tree has changes; `unknown` outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def metric_name(keras_key: str) -> str:
    """Keras log key -> MLflow metric name: `loss` -> `train/loss`, `val_loss` -> `val/loss`."""
    if "/" in keras_key:
        return keras_key
    if keras_key.startswith("val_"):
        return "val/" + keras_key.removeprefix("val_")
    return "train/" + keras_key


class RunLogger:
    """Logging calls for one MLflow run, each first written to the run's local record when it has one.

    With a record, a failed MLflow call (the server went away) does not stop training: the run goes
    on offline, `lost` says what failed, and the record keeps everything for `xent_lab.relog`.
    """

    def __init__(
        self, client: MlflowClient, run_id: str, experiment_id: str, record: LocalRecord | None = None,
        uri: str = "",
    ) -> None:
        self.uri = uri  # its password is kept out of messages
        self.client = client
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.record = record
        self.lost: str | None = None  # why MLflow stopped answering, once it has

    def _send(self, call: Callable[..., object], *args: object) -> None:
        if self.lost is not None:
            return
        try:
            call(*args)
        except Exception as exc:
            if self.record is None:
                raise
            self.lost = scrub(f"{type(exc).__name__}: {exc}".splitlines()[0][:500], self.uri)
            self.record.update(complete_in_mlflow=False)
            print(
                f"warning: MLflow stopped answering ({self.lost}); training goes on and everything is kept "
                f"in {self.record.folder}",
                file=sys.stderr,
                flush=True,
            )

    def log_params(self, params: Mapping[str, str]) -> None:
        if self.record is not None:
            self.record.params(params)
        items = [Param(key, value) for key, value in params.items()]
        for start in range(0, len(items), PARAMS_PER_BATCH):
            self._send(self.client.log_batch, self.run_id, [], items[start : start + PARAMS_PER_BATCH])

    def set_tags(self, tags: Mapping[str, str]) -> None:
        if self.record is not None:
            self.record.tags(tags)
        self._send(self.client.log_batch, self.run_id, [], [], [RunTag(key, str(value)) for key, value in tags.items()])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """All of `metrics` in one request (one round trip per epoch to a remote server)."""
        now = int(time.time() * 1000)
        if self.record is not None:
            self.record.metrics(metrics, step, now)
        self._send(self.client.log_batch, self.run_id, [Metric(key, float(value), now, step) for key, value in metrics.items()])

    def log_text(self, text: str, artifact_file: str) -> None:
        if self.record is not None:
            self.record.text(text, artifact_file)
        self._send(self.client.log_text, self.run_id, text, artifact_file)

    def log_figure(self, figure: Figure, artifact_file: str) -> None:
        if self.record is not None:
            self.record.figure(figure, artifact_file)
        self._send(self.client.log_figure, self.run_id, figure, artifact_file)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if self.record is not None:
            self.record.file(path, artifact_path)
        self._send(self.client.log_artifact, self.run_id, str(path), artifact_path)


class Tracker:
    """A tracking store and experiment; `run()` opens runs in it."""

    def __init__(self, uri: str, experiment: str) -> None:
        self.uri = uri
        self.experiment = experiment
        if uri.startswith(("http://", "https://")):
            # MLflow's defaults retry a dead server for minutes; give up in seconds and go offline
            # (the run's local record keeps everything). The environment can still set its own.
            for name, value in _HTTP_DEFAULTS.items():
                os.environ.setdefault(name, value)
        self.client = MlflowClient(tracking_uri=uri)

    def experiment_id(self) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        return self.client.create_experiment(self.experiment)

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
            run = self.client.create_run(experiment_id, run_name=run_name, tags=tags)
        except Exception as exc:
            raise TrackingError(f"cannot create a run in the MLflow store {redact(self.uri)}: {exc}") from exc
        record = None
        if record_dir is not None:
            record = LocalRecord(
                record_dir, RunInfo(self.experiment, run_name, redact(self.uri), tags, run_id=run.info.run_id)
            )
        logger = RunLogger(self.client, run.info.run_id, experiment_id, record, self.uri)
        status, reason = "FINISHED", None
        try:
            yield logger
        except KeyboardInterrupt:
            status, reason = "KILLED", "interrupted by the user (Ctrl-C or SIGTERM)"
            raise
        except BaseException as exc:
            status, reason = "FAILED", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            if reason is not None:
                logger.set_tags({FAILURE_TAG: scrub(reason, self.uri)[:5000]})
            if record is not None:
                record.update(status=status)
            logger._send(self.client.set_terminated, run.info.run_id, status)

    def run_url(self, logger: RunLogger) -> str:
        """Where the run is in the MLflow UI (the server's own address when tracking over HTTP)."""
        base = redact(self.uri).rstrip("/") if self.uri.startswith("http") else "http://127.0.0.1:5000"
        return f"{base}/#/experiments/{logger.experiment_id}/runs/{logger.run_id}"
