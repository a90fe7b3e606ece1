"""`python -m xent_lab.relog OUTPUT_DIR [--tracking-uri URI] [--force]` (also `xent-relog`).

Logs a job's local record as one complete MLflow run, for a run whose tracking server went away
mid-training (the trainer says so and prints this command); see `xent_lab.tracking.relog`.
`--force` also logs the record of a job killed hard (still RUNNING) as a KILLED run.
The store is `--tracking-uri`, else $MLFLOW_TRACKING_URI, else ./mlflow.db: never one the folder names.
Exit codes: 0 done, 2 a problem the message explains (no record, server unreachable, already re-logged, a run
already complete, a symbolic link in the record, another relog of the folder under way).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xent_lab import cli
from xent_lab.tracking.relog import relog
from xent_lab.tracking.store import resolve_uri


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m xent_lab.relog", description="Log a job's local record as one complete MLflow run."
    )
    parser.add_argument("output_dir", type=Path, help="the job's output folder (outputs/DATE/TIME or multirun/.../N)")
    parser.add_argument(
        "--tracking-uri",
        help="where to log it (default: $MLFLOW_TRACKING_URI, else ./mlflow.db; a record logged to another store "
        "is refused without it: the folder never chooses the store)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="log it again even if it was re-logged before; log a job killed hard (its record still RUNNING) as "
        "KILLED; copy a complete run's record into a store that does not hold the run",
    )
    args = parser.parse_args(argv)

    def relog_it() -> None:
        print(f"re-logged {args.output_dir} as run {relog(args.output_dir, args.tracking_uri, args.force)}")

    return cli.run(relog_it, resolve_uri(args.tracking_uri))


if __name__ == "__main__":
    sys.exit(main())
