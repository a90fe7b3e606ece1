"""Command line: `python -m xent_lab.report STUDY`, or the `xent-report` console script (`main`);
`--readme README.md` rewrites the README's findings block from the committed reports."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from xent_lab import cli
from xent_lab.errors import XentError
from xent_lab.report import build_report, update_readme
from xent_lab.tracking.store import resolve_uri


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m xent_lab.report", description="Write the report of the latest launch of a study."
    )
    parser.add_argument("study", nargs="?", help="study name (the xent.study tag; the experiment name by default)")
    parser.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    parser.add_argument("--experiment", help="MLflow experiment holding the study (default: the study name)")
    parser.add_argument("--parent-run-id", help="report this launch instead of the latest one")
    parser.add_argument("--out-dir", type=Path, help="output folder (default: experiments/STUDY in the repository)")
    parser.add_argument(
        "--baseline",
        action="append",
        metavar="KEY=VALUE",
        help="the Findings' baseline row instead of the study's study.baseline (repeat: loss=cce --baseline "
        "loss.impl=builtin)",
    )
    parser.add_argument(
        "--readme",
        type=Path,
        metavar="README.md",
        help="rewrite this README's findings block from the experiments/*/REPORT.md beside it (then STUDY is optional)",
    )
    return parser


def _baseline(items: Sequence[str] | None) -> dict[str, str] | None:
    if not items:
        return None
    wrong = [item for item in items if "=" not in item or not item.split("=", 1)[0]]
    if wrong:
        raise XentError(f"invalid --baseline {wrong[0]!r}: expected KEY=VALUE, e.g. loss=cce")
    return dict(item.split("=", 1) for item in items)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.study is None and args.readme is None:
        parser.error("give a STUDY, --readme README.md, or both")

    def report() -> None:
        if args.study is not None:
            written = build_report(
                args.study,
                args.tracking_uri,
                args.experiment,
                args.parent_run_id,
                args.out_dir,
                _baseline(args.baseline),
            )
            print(f"report written to {written}")
        if args.readme is not None:
            changed = update_readme(args.readme)
            print(f"{args.readme}: findings block {'rewritten' if changed else 'already up to date'}")

    return cli.run(report, resolve_uri(args.tracking_uri))


if __name__ == "__main__":
    sys.exit(main())
