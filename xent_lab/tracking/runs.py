"""Runs left RUNNING by a process that died without ending them (kill -9, the OOM killer, a lost machine).

Every run is tagged with its process (`xent.host`, `xent.pid`, `xent.process_start`) and a heartbeat
(`xent.heartbeat`, unix time, set at the start and after each epoch). `close-stale` ends KILLED, with the reason
in `failure_reason`, each RUNNING run whose process is gone (on this host: no such pid, or a pid now held by
another process, told apart by its start time) or, with `--older-than S`, whose heartbeat is older than S seconds
(the only test for a run on another host). A study's parent run beats with its newest child.

`python -m xent_lab.tracking.runs close-stale [--tracking-uri URI] [--older-than S]` (also `xent-runs`).
Exit codes: 0 done (also when nothing was stale), 2 a problem the message explains.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from xent_lab import cli
from xent_lab.errors import XentError
from xent_lab.tracking import tags as T
from xent_lab.tracking.secrets import redact
from xent_lab.tracking.store import open_existing, resolve_uri


def process_start(pid: int) -> str:
    """The start time of process `pid` as the kernel counts it (clock ticks since boot, /proc/PID/stat field 22);
    "" where there is no /proc or no such process. With the pid, it names one process: pids are reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rpartition(")")[2].split()[19]  # the fields after the command name, which may hold spaces


def process_tags() -> dict[str, str]:
    """This process, and a first heartbeat, for the tags of a run it opens."""
    pid = os.getpid()
    return {
        T.HOST: socket.gethostname(),
        T.PID: str(pid),
        T.PROCESS_START: process_start(pid),
        T.HEARTBEAT: f"{time.time():.0f}",
    }


def process_gone(tags: Mapping[str, str]) -> str | None:
    """Why the process that `tags` (a run's) name is known to be gone, or None: alive, or on another host."""
    host, pid = tags.get(T.HOST), tags.get(T.PID)
    if host != socket.gethostname() or not pid:
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return f"its process (pid {pid} on {host}) is gone"
    except PermissionError:
        pass  # alive, another user's: the start time tells whether it is the run's
    recorded = tags.get(T.PROCESS_START)
    if recorded and process_start(int(pid)) not in ("", recorded):
        return f"its process (pid {pid} on {host}) is gone; the pid now belongs to another process"
    return None


def running_here(tags: Mapping[str, str]) -> bool:
    """Whether the process that `tags` name runs on this host (and is still the run's)."""
    return tags.get(T.HOST) == socket.gethostname() and bool(tags.get(T.PID)) and process_gone(tags) is None


def _heartbeat(run: Run) -> float:
    """The run's last sign of life (unix time): its heartbeat tag, else its start (runs from before heartbeats)."""
    beat = run.data.tags.get(T.HEARTBEAT)
    return float(beat) if beat else run.info.start_time / 1000


def stale_reason(run: Run, older_than: float | None, now: float, last_beat: float | None = None) -> str | None:
    """Why the RUNNING `run` is stale, or None; `last_beat` overrides its own heartbeat (a parent's children)."""
    gone = process_gone(run.data.tags)
    if gone is not None:
        return gone
    age = now - (_heartbeat(run) if last_beat is None else last_beat)
    if older_than is not None and not running_here(run.data.tags) and age > older_than:
        return f"no heartbeat for {age:.0f} s (limit {older_than:.0f} s)"
    return None


def _last_beat(client: MlflowClient, run: Run) -> float:
    """A study parent's last sign of life: its own heartbeat or its newest child's."""
    if run.data.tags.get(T.ROLE) != T.ROLE_PARENT:
        return _heartbeat(run)
    children = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.`{T.PARENT_RUN_ID}` = '{run.info.run_id}'", max_results=10000
    )
    return max([_heartbeat(run), *(_heartbeat(child) for child in children)])


def _running(client: MlflowClient, **tags: str) -> list[Run]:
    """The RUNNING runs of the whole store with these tag values."""
    filters = [f"tags.`{key}` = '{value}'" for key, value in tags.items()]
    query = " and ".join(["attributes.status = 'RUNNING'", *filters])
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    return client.search_runs(experiments, filter_string=query, max_results=50000) if experiments else []


def close_stale(client: MlflowClient, older_than: float | None = None, study: str | None = None) -> dict[str, str]:
    """End KILLED every stale RUNNING run of the store (of `study` only, when given); returns run id -> reason."""
    now = time.time()
    closed: dict[str, str] = {}
    for run in _running(client, **({T.STUDY: study} if study else {})):
        reason = stale_reason(run, older_than, now, _last_beat(client, run))
        if reason is None:
            continue
        closed[run.info.run_id] = reason = f"killed hard: {reason}; closed by close-stale"
        client.set_tag(run.info.run_id, T.FAILURE_REASON, reason)
        client.set_terminated(run.info.run_id, "KILLED")
    return closed


def dead_runs_note(client: MlflowClient, uri: str) -> str | None:
    """What to say, at a launch, of the runs of this host left RUNNING by a process now gone (a native crash
    such as TensorFlow's under `ulimit -v`, kill -9, the OOM killer), which nothing could end: which they are,
    and the commands that close them and log what their records hold. None when there are none."""
    lines = []
    for run in _running(client, **{T.HOST: socket.gethostname()}):
        gone = process_gone(run.data.tags)
        if gone is None:
            continue
        output_dir = run.data.tags.get(T.OUTPUT_DIR)
        relog = f"; replace it: `xent-relog {output_dir} --force --tracking-uri {redact(uri)}`" if output_dir else ""
        lines.append(f"  run {run.info.run_id} ({run.info.run_name}): {gone}{relog}")
    if not lines:
        return None
    return "\n".join(
        [
            f"warning: {len(lines)} run(s) in this store were left RUNNING by a process that died without ending "
            f"them; close them with `xent-runs close-stale --tracking-uri {redact(uri)}`, or replace each by what "
            "its job recorded (every finished epoch, the checkpoint) with the command shown",
            *lines,
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xent_lab.tracking.runs", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    close = commands.add_parser("close-stale", help="end KILLED the RUNNING runs whose process is gone")
    close.add_argument("--tracking-uri", help="the store (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)")
    close.add_argument(
        "--older-than", type=float, metavar="S", help="also close runs whose heartbeat is older than S seconds"
    )
    args = parser.parse_args(argv)
    uri = resolve_uri(args.tracking_uri)

    def close() -> None:
        if args.older_than is not None and args.older_than <= 0:
            raise XentError(f"invalid --older-than {args.older_than}: expected a positive number of seconds")
        closed = close_stale(open_existing(uri, timeout=5), args.older_than)
        for run_id, reason in closed.items():
            print(f"closed run {run_id} as KILLED: {reason}")
        print(f"{len(closed)} stale run(s) closed in {redact(uri)}")

    return cli.run(close, uri)


if __name__ == "__main__":
    sys.exit(main())
