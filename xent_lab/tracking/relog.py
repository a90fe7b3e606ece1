"""`python -m xent_lab.relog OUTPUT_DIR [--tracking-uri URI]`: log a job's local record as one complete MLflow run.

For a run whose tracking server went away mid-training (the trainer says so and prints this command):
the job's output folder holds everything it logged (`xent_lab.record`) and its model checkpoint.
This creates a new run with all of it, ends it with the status the job ended with, and deletes the
incomplete run the job had started, so the store shows one complete run. Exit codes: 0 done,
2 a problem the message explains (no record, server unreachable, already re-logged).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

from xent_lab import record, tracking
from xent_lab.errors import XentError

# MLflow accepts at most 1000 metric values per log_batch call.
_METRICS_PER_BATCH = 1000


def relog(output_dir: Path, tracking_uri: str | None = None, force: bool = False) -> str:
    """Log the record in `output_dir` as a new, complete run; returns its run id."""
    recorded = record.load(output_dir)
    info = recorded.info
    if info.relogged_as and not force:
        raise XentError(f"{output_dir} was already re-logged as run {info.relogged_as}; pass --force to log it again")
    if info.status == "RUNNING":
        raise XentError(f"the job that wrote {output_dir} has not ended (or was killed hard); nothing to re-log yet")
    # The record keeps the URI with its password redacted: a URI with credentials comes from the
    # command line or the environment.
    recorded_uri = info.tracking_uri if "***" not in info.tracking_uri else None
    uri = tracking.resolve_uri(tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or recorded_uri)
    tracking.check_reachable(uri, timeout=5)
    tracker = tracking.Tracker(uri, info.experiment)
    tags = {**info.tags, "xent.relogged_from": str(recorded.folder.parent.resolve())}
    if info.run_id:
        tags["xent.replaces"] = info.run_id
    client = tracker.client
    experiment_id = tracker.experiment_id()
    run_id = client.create_run(experiment_id, run_name=info.run_name, tags=tags).info.run_id
    try:
        _log_contents(client, run_id, experiment_id, recorded)
    except Exception as exc:
        # Leave no RUNNING half-copy behind; the record is untouched, so the command can simply be rerun.
        try:
            client.set_terminated(run_id, "FAILED")
        except Exception:
            pass
        raise XentError(f"re-logging {output_dir} stopped ({exc}); the record is unchanged, run the command again")
    client.set_terminated(run_id, info.status)
    _retire(client, info.run_id, run_id)
    info.relogged_as = run_id
    record.save_info(recorded.folder, info)
    return run_id


def _log_contents(client, run_id: str, experiment_id: str, recorded: record.RecordedRun) -> None:
    tracking.RunLogger(client, run_id, experiment_id).log_params(recorded.info.params)
    metrics = [Metric(m["key"], m["value"], m["timestamp"], m["step"]) for m in recorded.metrics]
    for start in range(0, len(metrics), _METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=metrics[start : start + _METRICS_PER_BATCH])
    if any(recorded.artifacts.iterdir()):
        client.log_artifacts(run_id, str(recorded.artifacts))
    checkpoint = recorded.folder.parent / record.CHECKPOINT
    if checkpoint.exists():
        client.log_artifact(run_id, str(checkpoint), "checkpoint")


def _retire(client, old_run_id: str | None, new_run_id: str) -> None:
    """Delete the incomplete run the job started, if the store has it: the new run replaces it."""
    if not old_run_id or old_run_id == new_run_id:
        return
    try:
        client.set_tag(old_run_id, "xent.replaced_by", new_run_id)
        client.delete_run(old_run_id)
    except MlflowException:
        pass  # the job's run never reached this store (another store, or it was created offline)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xent_lab.relog", description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", type=Path, help="the job's output folder (outputs/DATE/TIME or multirun/.../N)")
    parser.add_argument("--tracking-uri", help="where to log it (default: $MLFLOW_TRACKING_URI, else the job's)")
    parser.add_argument("--force", action="store_true", help="log it again even if it was re-logged before")
    args = parser.parse_args(argv)
    try:
        run_id = relog(args.output_dir, args.tracking_uri, args.force)
    except XentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"re-logged {args.output_dir} as run {run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
