"""`python -m xent_lab.bench` (`make bench`): performance figures as ratios measured side by side.

Every figure compares two things run alternately in one process on the same data, so that machine
load and thermal state affect both alike; the JSON holds each round's timings, the median ratio and
the target it is held to. Tests check that this runs and writes sane numbers, never the numbers.

`--quick` only checks that every figure's code runs: 256 training samples, one round of the fewest blocks
(one timed epoch of each role, after an untimed one), steps and calls, batches of 256 for the loss figures, and
under XLA only the control and one cell (BinaryCrossentropy at (batch, 1)) of the forward/backward figure.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras

from xent_lab.bench import calibration, harness, loss_costs, losses
from xent_lab.bench.common import config, sqlite_store
from xent_lab.tracking.server import start_server
from xent_lab.training import pipeline

RESULTS = "bench-results.json"


SECTIONS = ("harness", "server", "startup", "system", "calibration", "losses")
# --quick: the smallest data that still gives each figure's code path (two batches of the default 128 per epoch).
QUICK_DATA = ("debug=quick", "dataset.limit.train=256", "dataset.limit.test=256", "dataset.val_size=256")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=RESULTS, help=f"where to write the JSON (default {RESULTS})")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes, one XLA cell of the forward/backward figure: checks the bench runs, figures are noise",
    )
    parser.add_argument("--rounds", type=int, default=5, help="alternations per timing figure (default 5)")
    parser.add_argument(
        "--blocks",
        type=int,
        default=harness.BLOCKS_PER_ROUND,
        help=f"epochs of each role per round of the harness and server figures (default {harness.BLOCKS_PER_ROUND})",
    )
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run (default all: {','.join(SECTIONS)})",
    )
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    if unknown := only - set(SECTIONS):
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}; known: {', '.join(SECTIONS)}")
    quick, rounds = args.quick, 1 if args.quick else args.rounds
    figures: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "python": platform.python_version(),
            "keras": keras.__version__,
        },
        "quick": quick,
    }

    def section(name: str, what: str) -> bool:
        if name in only:
            print(f"bench: {what} ...", file=sys.stderr, flush=True)
        return name in only

    # The data of every training in the bench, its own runs included: the loaded arrays are theirs.
    data = QUICK_DATA if quick else ("dataset.limit.train=null",)
    # A block of the harness and server figures is one epoch of each role.
    blocks = 1 if quick else args.blocks
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if section("harness", "harness vs plain model.fit (MNIST MLP)"):
            figures.update(harness.harness_overhead(data, blocks=blocks, rounds=rounds, workdir=workdir))
        if section("server", "HTTP tracking server vs local SQLite"):
            with start_server(sqlite_store(workdir / "server.db"), workdir / "mlartifacts") as server:
                figures.update(
                    harness.tracking_server_overhead(
                        data, blocks=blocks, rounds=rounds, workdir=workdir, server_uri=server.uri
                    )
                )
        if section("startup", "launch to first training step"):
            figures["startup"] = harness.startup(workdir, QUICK_DATA if quick else ("debug=quick",))
        if section("system", "MLflow system-metrics sampling cost"):
            figures["system_metrics_fraction_of_time"] = harness.system_metrics_overhead(workdir, 5 if quick else 30)
    if section("calibration", "calibration metrics, bootstrap and recalibration speed"):
        figures["calibration_metrics_over_argmax"] = calibration.calibration_speed(
            n=10_000 if quick else 1_000_000, k=10, rounds=rounds, calls=3 if quick else 10
        )
        figures["selective_metrics_over_argmax"] = calibration.selective_speed(
            n=10_000 if quick else 1_000_000, k=10, rounds=rounds, calls=3 if quick else 10
        )
        figures["bootstrap_seconds"] = calibration.bootstrap_speed(
            n=1_000 if quick else 10_000, k=10, n_resamples=100 if quick else 1_000, repeat=1 if quick else 3
        )
        figures["recalibration_fit_seconds"] = calibration.recalibration_fit_speed(
            n=500 if quick else 5_000, k=10, repeat=1 if quick else 3
        )
    if section("losses", "custom vs built-in losses"):
        figures["training_step_custom_over_builtin"] = losses.training_step_ratio(
            pipeline.load_data(config(*data)),
            steps=2 if quick else 30,
            rounds=rounds,
            blocks=2 if quick else losses.BLOCKS_PER_ROUND,
            warm_up=1 if quick else losses.WARM_UP_BLOCKS,
        )
        # 100 alternating calls a round: with 20, round ratios of one cell spread up to 1.31 on an idle machine,
        # more than the few-percent gaps the figure is about.
        figures["loss_forward_backward_custom_over_builtin"] = losses.loss_forward_backward_ratio(
            batch=256 if quick else 65_536, repeat=2 if quick else 100, rounds=rounds, every_xla_cell=not quick
        )
        figures["new_losses_over_cce"] = loss_costs.loss_costs(
            batch=256 if quick else 65_536, repeat=2 if quick else 20, rounds=rounds
        )
        figures["mmce_batch_under_1_5x_cce"] = loss_costs.mmce_break_even(
            batches=(32, 256) if quick else loss_costs.BREAK_EVEN_GRID, repeat=2 if quick else 10, rounds=rounds
        )
    Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    print(f"bench: wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
