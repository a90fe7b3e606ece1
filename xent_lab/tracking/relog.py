"""Log a job's local record as one complete MLflow run (the command is `python -m xent_lab.relog`).

For a run whose tracking server went away mid-training (the trainer says so and prints this command):
the job's output folder holds everything it logged (`xent_lab.tracking.record`) and its model checkpoint.
This creates a new run with all of it, ends it with the status the job ended with, and retires the
incomplete run the job had started, so the store shows one complete run. A record still RUNNING is of a job
killed hard (kill -9, the OOM killer, a lost machine): `force` logs what it holds, every finished epoch and the
checkpoint, as a KILLED run. Exit codes: 0 done, 2 a problem the message explains (no record, server unreachable,
already re-logged, the job still running, a run already complete, another relog of the folder under way).

The folder is not trusted: the store comes from the command line or $MLFLOW_TRACKING_URI (the record's own URI
only names the default store, ./mlflow.db of the working directory), a symbolic link in the record is refused,
and a damaged checkpoint is reported and left out. Nothing is deleted that the new run does not hold in full.
"""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from xent_lab.errors import XentError
from xent_lab.tracking import record
from xent_lab.tracking import tags as T
from xent_lab.tracking.runlog import RunLogger
from xent_lab.tracking.runs import process_gone, running_here
from xent_lab.tracking.store import Tracker, check_reachable, resolve_uri

LOCK = ".relog.lock"  # in the record folder: one relog of a folder at a time
# The tags that name the job that started a run: a run of the store is the record's only if they agree.
_JOB_TAGS = (T.HOST, T.PID, T.PROCESS_START, T.OUTPUT_DIR)


def relog(output_dir: Path, tracking_uri: str | None = None, force: bool = False) -> str:
    """Log the record in `output_dir` as a new, complete run; returns its run id.

    `force` logs it again after an earlier relog, logs the record of a job killed hard as KILLED, and copies a
    complete run's record into another store.
    """
    folder = record.load(output_dir).folder
    with _only_relog(folder, output_dir):
        recorded = record.load(output_dir)  # read under the lock: a relog that just ended has marked it
        return _relog(recorded, output_dir, tracking_uri, force)


def store_uri(info: record.RunInfo, output_dir: Path, tracking_uri: str | None) -> str:
    """Where to log: `tracking_uri`, else $MLFLOW_TRACKING_URI, else the default store (./mlflow.db here).

    Never the store the folder names: a folder from elsewhere would decide where the record, and the
    credentials of the environment, go. A record logged elsewhere asks for the URI instead.
    """
    given = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if given:
        return resolve_uri(given)
    default = resolve_uri(None)
    if info.tracking_uri and info.tracking_uri != default:
        raise XentError(
            f"{output_dir} was logged to {info.tracking_uri}, not to the default store {default}; relog takes "
            "its store from the command line only: pass --tracking-uri URI (or set MLFLOW_TRACKING_URI)"
        )
    return default


@contextmanager
def _only_relog(folder: Path, output_dir: Path) -> Iterator[None]:
    """Hold the record's lock file (an flock) while it is re-logged; a second relog of it is refused at once."""
    try:
        handle = open(folder / LOCK, "a")
    except OSError as exc:
        raise XentError(f"cannot lock the run record in {folder} ({record.reason(exc)})") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise XentError(f"another relog of {output_dir} is under way; let it end") from None
        yield  # the lock goes with the file's closing


def _relog(recorded: record.RecordedRun, output_dir: Path, tracking_uri: str | None, force: bool) -> str:
    info = recorded.info
    if info.relogged_as and not force:
        raise XentError(f"{output_dir} was already re-logged as run {info.relogged_as}; pass --force to log it again")
    status, tags = info.status, {**info.tags, T.RELOGGED_FROM: str(recorded.folder.parent.resolve())}
    if status == "RUNNING":
        if running_here(info.tags):
            raise XentError(f"the job that wrote {output_dir} is still running (pid {info.tags[T.PID]}); let it end")
        if not force:
            raise XentError(
                f"the job that wrote {output_dir} has not ended, or was killed hard; if it was, pass --force to "
                "log what it recorded as a KILLED run"
            )
        gone = process_gone(info.tags)
        status = "KILLED"
        tags[T.FAILURE_REASON] = f"killed hard: {gone or 'its process ended without ending the run'}; re-logged"
    uri = store_uri(info, output_dir, tracking_uri)
    check_reachable(uri, timeout=5)
    tracker = Tracker(uri, info.experiment)
    client = tracker.client
    if info.status != "RUNNING" and info.complete_in_mlflow and info.run_id:
        _refuse_complete(client, info.run_id, output_dir, force)
    contents = recorded.contents(checkpoint=_checkpoint_whole(recorded))
    if info.run_id:
        tags[T.REPLACES] = info.run_id
    experiment_id = tracker.experiment_id()
    run_id = client.create_run(experiment_id, run_name=info.run_name, tags=tags).info.run_id
    try:
        # The same upload that publishes a finished run; this one from the record alone.
        RunLogger(client, run_id, experiment_id, uri=uri).upload(contents)
    except Exception as exc:
        # Leave no RUNNING half-copy behind; the record is untouched, so the command can simply be rerun.
        try:
            client.set_terminated(run_id, "FAILED")
        except Exception:
            pass
        raise XentError(
            f"re-logging {output_dir} stopped ({exc}); the record is unchanged, run the command again"
        ) from exc
    client.set_terminated(run_id, status)
    uploaded = {f"{folder}/{Path(path).name}" if folder else Path(path).name for path, folder in contents.files}
    for old_run_id in dict.fromkeys([info.run_id, info.relogged_as]):  # the job's run, an earlier copy
        if old_run_id and old_run_id != run_id:
            _retire(client, old_run_id, run_id, recorded, uploaded)
    info.relogged_as = run_id
    record.save_info(recorded.folder, info)
    return run_id


def _refuse_complete(client: MlflowClient, run_id: str, output_dir: Path, force: bool) -> None:
    """A job whose every MLflow call succeeded has its complete run (perhaps more: a logged model, the metrics
    `xent-calibrate` added): nothing to re-log. `force` copies it into a store that does not hold that run."""
    try:
        here = client.get_run(run_id).info.lifecycle_stage == "active"
    except MlflowException:
        here = False
    if here or not force:
        raise XentError(
            f"{output_dir} was logged completely, as run {run_id}: there is nothing to re-log"
            + (" in this store" if here else "; to copy it into another store, pass --force")
        )


def _checkpoint_whole(recorded: record.RecordedRun) -> bool:
    """Whether the checkpoint is there and whole; a damaged one (a crash mid-save) is reported and left out."""
    if not recorded.checkpoint.exists():
        return False
    problem = record.checkpoint_problem(recorded.checkpoint)
    if problem is not None:
        print(f"warning: {recorded.checkpoint} is not uploaded: {problem}", file=sys.stderr, flush=True)
    return problem is None


def _retire(
    client: MlflowClient, old_run_id: str, new_run_id: str, recorded: record.RecordedRun, uploaded: set[str]
) -> None:
    """Delete the run the new one replaces, if the store has it and the new run holds everything it held;
    otherwise keep it, tagged with its replacement, and say why."""
    try:
        old = client.get_run(old_run_id)
    except MlflowException:
        return  # the job's run never reached this store (another store, or it was created offline)
    if old.info.lifecycle_stage != "active":
        return
    if any(old.data.tags.get(key) != recorded.info.tags.get(key) for key in _JOB_TAGS):
        print(f"warning: run {old_run_id} of this store is not the job's; it is left as it is", file=sys.stderr)
        return
    client.set_tag(old_run_id, T.REPLACED_BY, new_run_id)
    kept = _not_replaced(client, old, {value["key"] for value in recorded.metrics}, uploaded)
    if kept:
        print(
            f"note: run {old_run_id} is kept, tagged {T.REPLACED_BY}={new_run_id}: it holds {kept}, which the "
            "record does not; delete it yourself once it is no longer needed",
            file=sys.stderr,
        )
        return
    client.delete_run(old_run_id)


def _not_replaced(client: MlflowClient, old: Run, metrics: set[str], uploaded: set[str]) -> str:
    """What the run `old` holds that a copy of the record lacks ("" if nothing): a logged model, registered
    model versions, metrics or artifacts."""
    found = []
    if old.outputs is not None and old.outputs.model_outputs:
        found.append("a logged model")
    try:
        versions = client.search_model_versions(f"run_id = '{old.info.run_id}'")
    except MlflowException:
        versions = []  # a store without a model registry
    found += [f"the registered model version {version.name} v{version.version}" for version in versions]
    missing = sorted(set(old.data.metrics) - metrics)
    if missing:
        found.append(f"{len(missing)} metric(s) such as {missing[0]}")
    extra = sorted(_artifact_files(client, old.info.run_id) - uploaded)
    if extra:
        found.append(f"{len(extra)} artifact(s) such as {extra[0]}")
    return ", ".join(found)


def _artifact_files(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found: set[str] = set()
    for item in client.list_artifacts(run_id, path):
        found |= _artifact_files(client, run_id, item.path) if item.is_dir else {item.path}
    return found
