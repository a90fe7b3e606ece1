"""Log a job's local record as one complete MLflow run (the command is `python -m xent_lab.relog`).

For a run whose tracking server went away mid-training (the trainer says so and prints this command):
the job's output folder holds everything it logged (`xent_lab.tracking.record`) and its model checkpoint.
This creates a new run with all of it, ends it with the status the job ended with, and deletes the
incomplete run the job had started, so the store shows one complete run. A record still RUNNING is of a job
killed hard (kill -9, the OOM killer, a lost machine): `force` logs what it holds, every finished epoch and the
checkpoint, as a KILLED run. Exit codes: 0 done, 2 a problem the message explains (no record, server unreachable,
already re-logged, the job still running).
"""

from __future__ import annotations

import os
from pathlib import Path

from mlflow.exceptions import MlflowException

from xent_lab.errors import XentError
from xent_lab.tracking import record
from xent_lab.tracking import tags as T
from xent_lab.tracking.runlog import RunLogger
from xent_lab.tracking.runs import process_gone, running_here
from xent_lab.tracking.store import Tracker, check_reachable, resolve_uri


def relog(output_dir: Path, tracking_uri: str | None = None, force: bool = False) -> str:
    """Log the record in `output_dir` as a new, complete run; returns its run id.

    `force` logs it again after an earlier relog, and logs the record of a job killed hard as KILLED.
    """
    recorded = record.load(output_dir)
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
    # The record keeps the URI with its password redacted: a URI with credentials comes from the
    # command line or the environment.
    recorded_uri = info.tracking_uri if "***" not in info.tracking_uri else None
    uri = resolve_uri(tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or recorded_uri)
    check_reachable(uri, timeout=5)
    tracker = Tracker(uri, info.experiment)
    if info.run_id:
        tags[T.REPLACES] = info.run_id
    client = tracker.client
    experiment_id = tracker.experiment_id()
    run_id = client.create_run(experiment_id, run_name=info.run_name, tags=tags).info.run_id
    try:
        # The same upload that publishes a finished run; this one from the record alone.
        RunLogger(client, run_id, experiment_id, uri=uri).upload(recorded.contents())
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
    _retire(client, info.run_id, run_id)
    info.relogged_as = run_id
    record.save_info(recorded.folder, info)
    return run_id


def _retire(client, old_run_id: str | None, new_run_id: str) -> None:
    """Delete the incomplete run the job started, if the store has it: the new run replaces it."""
    if not old_run_id or old_run_id == new_run_id:
        return
    try:
        client.set_tag(old_run_id, T.REPLACED_BY, new_run_id)
        client.delete_run(old_run_id)
    except MlflowException:
        pass  # the job's run never reached this store (another store, or it was created offline)
