"""Command line: `python -m xent_lab.report STUDY`, or the `xent-report` console script (`main`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from xent_lab.errors import XentError
from xent_lab.report import build_report


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m xent_lab.report", description="Write the report of the latest launch of a study."
    )
    parser.add_argument("study", help="study name (the xent.study tag; the experiment name by default)")
    parser.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    parser.add_argument("--experiment", help="MLflow experiment holding the study (default: the study name)")
    parser.add_argument("--parent-run-id", help="report this launch instead of the latest one")
    parser.add_argument("--out-dir", type=Path, help="output folder (default: experiments/STUDY in the repository)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        report = build_report(args.study, args.tracking_uri, args.experiment, args.parent_run_id, args.out_dir)
    except XentError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    print(f"report written to {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
