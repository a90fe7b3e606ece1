"""The harness's own costs: `xent_lab.train` against a plain `model.fit`, an HTTP tracking server against
a local SQLite file (both by paired blocks, each with a control), and the time from launch to the first step."""

from __future__ import annotations

import functools
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from xent_lab import tracking
from xent_lab.bench.common import (
    EpochTimer,
    alternating,
    compiled,
    config,
    history,
    median_time,
    noise_verdict,
    paired_summary,
    sqlite_store,
    steady,
    train_run,
)
from xent_lab.data import Dataset
from xent_lab.tracking import tags as T
from xent_lab.training.runtime import configure_runtime

# Runs of each role per round of the harness and server figures, in ABBA order. Each run is a block: its steady
# epochs are paired with those of the run beside it, so that load lasting a run hits both.
BLOCKS_PER_ROUND = 3
RATIO_TARGET, SPREAD_TARGET = 1.05, 1.10


def held_to_targets(figure: dict[str, Any], control: dict[str, Any]) -> dict[str, Any]:
    """The figure with its control (the same thing against itself), the verdict read against the control's
    rounds, and pass or fail for each target: the ratio, and the spread of its rounds (can it resolve 5%?)."""
    return {
        **figure,
        "spread_target": f"<= {SPREAD_TARGET}",
        "passes": {"ratio": figure["ratio"] <= RATIO_TARGET, "spread": figure["spread"] <= SPREAD_TARGET},
        "control": control,
        "verdict": noise_verdict(figure["ratios"], control["ratios"]),
    }


def harness_overhead(
    dataset: Dataset, data: Sequence[str], epochs: int, blocks: int, rounds: int, workdir: Path
) -> dict[str, Any]:
    """Seconds per epoch: xent_lab.train (with and without per-epoch calibration) vs a plain `model.fit`.

    Same model, data (`dataset`, as the overrides `data` load it), batch size and validation set; the plain fit
    has no callbacks at all. Paired blocks: each round runs `blocks` runs of each role, in ABBA order, and pairs
    each run's steady epochs (epoch 0 traces) with those of the run beside it. The control is a second plain
    fit, paired the same way with the first.
    """
    overrides = [*data, f"trainer.epochs={epochs}", "trainer.verbose=0"]
    cfg = config(*overrides)

    def plain() -> float:
        # From the process state a harness run starts from (session cleared, memory freed, seeds set): otherwise
        # each plain fit inherits the previous block's graphs, and its epochs slow with its place in the round.
        configure_runtime(cfg.trainer, cfg.seed)
        objective, model = compiled(cfg, dataset)
        timer = EpochTimer()
        model.fit(
            dataset.x_train,
            objective.encode_labels(dataset.y_train),
            validation_data=(dataset.x_val, objective.encode_labels(dataset.y_val)),
            epochs=epochs,
            batch_size=cfg.trainer.batch_size,
            callbacks=[timer],
            verbose=0,
        )
        return steady(timer.seconds)

    def harness(per_epoch_calibration: bool) -> float:
        client, run = train_run(
            [*overrides, f"calibration.per_epoch={str(per_epoch_calibration).lower()}"],
            workdir,
            sqlite_store(workdir / "bench.db"),
            "bench",
        )
        epochs = [m.value for m in history(client, run, T.EPOCH_SECONDS)]
        if per_epoch_calibration:
            # The callback times itself inside each epoch: its share needs no second run to subtract.
            costs = [m.value for m in history(client, run, T.CALIBRATION_SECONDS)]
            fractions.extend(c / e for c, e in zip(costs[1:], epochs[1:], strict=True))
        return steady(epochs)

    fractions: list[float] = []
    # The order puts each figure's two roles side by side, both ways round.
    roles = {
        "harness_with_calibration": lambda: harness(True),
        "harness_no_calibration": lambda: harness(False),
        "plain_fit": plain,
        "plain_fit_again": plain,
    }
    measured = alternating(roles, blocks, rounds, self_timed=True)
    control = paired_summary(measured, "1.00 (the method's noise)", "plain_fit_again", "plain_fit")
    return {
        "epoch_seconds_harness_over_plain_fit": held_to_targets(
            paired_summary(measured, f"<= {RATIO_TARGET}", "harness_no_calibration", "plain_fit"), control
        ),
        "epoch_seconds_harness_with_calibration_over_plain_fit": paired_summary(
            measured, "informative", "harness_with_calibration", "plain_fit"
        ),
        "calibration_callback_fraction_of_epoch": {
            "fraction": statistics.median(fractions),
            "fractions": fractions,
            "target": "< 0.03",
            "how": "perf/calibration_seconds / perf/epoch_seconds within the same epochs (epoch 0 excluded)",
        },
    }


def tracking_server_overhead(
    data: Sequence[str], epochs: int, blocks: int, rounds: int, workdir: Path, server_uri: str
) -> dict[str, Any]:
    """Seconds per epoch of `xent_lab.train` logging to an HTTP tracking server, over logging to a local SQLite file.

    The server runs on this machine over its own SQLite file, so the difference is the HTTP hop and the server
    itself. `perf/epoch_seconds` stops before an epoch's metrics are sent; here an epoch is the time between the
    timestamps of two consecutive per-epoch `log_batch` calls: one epoch plus one round trip to the store.
    Paired blocks as in `harness_overhead`: each run's epochs paired with the run beside it; the control is a
    second local SQLite file, paired the same way with the first.
    """
    overrides = [*data, f"trainer.epochs={epochs}", "trainer.verbose=0"]

    def epoch_with_logging(uri: str) -> float:
        client, run = train_run(overrides, workdir, uri, "bench-store")
        runs.append(run)
        stamps = [m.timestamp for m in history(client, run, T.TRAIN_LOSS)]
        return float(np.median(np.diff(stamps))) / 1000

    runs: list[Run] = []
    stores = {
        "http_server": server_uri,
        "local_sqlite": sqlite_store(workdir / "local.db"),
        "local_sqlite_again": sqlite_store(workdir / "local-again.db"),
    }
    roles = {name: functools.partial(epoch_with_logging, uri) for name, uri in stores.items()}
    measured = alternating(roles, blocks, rounds, self_timed=True)
    control = paired_summary(measured, "1.00 (the method's noise)", "local_sqlite_again", "local_sqlite")
    # One epoch's metrics (the last run's), sent as training sends them, in one log_batch, timed alone.
    epoch_metrics = {
        key: value
        for key, value in runs[-1].data.metrics.items()
        if key.startswith((T.TRAIN_PREFIX, T.VAL_PREFIX)) or key in (T.EPOCH_SECONDS, T.CALIBRATION_SECONDS)
    }
    round_trip = {}
    for name in ("local_sqlite", "http_server"):
        with tracking.Tracker(stores[name], "bench-log-batch").run("log-batch") as logger:
            round_trip[name] = median_time(functools.partial(logger.log_metrics, epoch_metrics, step=0), 20)
    return {
        "epoch_seconds_http_server_over_sqlite": {
            **held_to_targets(paired_summary(measured, f"<= {RATIO_TARGET}", "http_server", "local_sqlite"), control),
            "log_batch_seconds": round_trip,
            "how": "median interval between the timestamps of consecutive per-epoch log_batch calls "
            "(an epoch plus its logging round trip); the server on 127.0.0.1 over SQLite, --workers 1",
        }
    }


def startup(workdir: Path, data: Sequence[str]) -> dict[str, Any]:
    """Seconds from `python -m xent_lab.train DATA` starting to its first training step (a real subprocess)."""
    store = f"sqlite:///{workdir / 'startup.db'}"
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "xent_lab.train",
            *data,
            f"tracking.uri={store}",
            "tracking.experiment=startup",
            "trainer.verbose=0",
        ],
        check=True,
        capture_output=True,
        cwd=workdir,
    )
    wall = time.perf_counter() - started
    client = MlflowClient(store)
    run = client.search_runs([client.get_experiment_by_name("startup").experiment_id])[0]
    return {"seconds_from_module_start": run.data.metrics[T.STARTUP_SECONDS], "process_wall_seconds": wall}


def system_metrics_overhead(workdir: Path, cycles: int) -> dict[str, Any]:
    """MLflow's system-metrics sampling (`tracking.system_metrics=true`): one sampling cycle's seconds ÷ its interval.

    The monitor is a thread that, once per interval, samples the machine, reads the run back and queues the
    samples for logging. A cycle (with the write) is timed here as the thread runs it, against a real run in a
    local SQLite store; its share of the wall clock is what it can take from training at most, even if it held the CPU
    throughout. Timing epochs with and without the monitor instead would measure a 0.1% effect under a
    several-percent spread between epochs.
    """
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    uri = sqlite_store(workdir / "system-metrics.db")
    with tracking.Tracker(uri, "bench-system-metrics").run("system-metrics") as logger:
        monitor = SystemMetricsMonitor(logger.run_id, tracking_uri=uri)
        client = MlflowClient(uri)

        def cycle() -> None:
            monitor.collect_metrics()
            client.get_run(logger.run_id)  # the thread's check that the run is still RUNNING
            monitor.publish_metrics(monitor.aggregate_metrics())
            # MLflow batches the samples and writes them when that costs under a tenth of the time between
            # writes; written every cycle here, so the figure is an upper bound.
            monitor.mlflow_logger.flush()

        seconds = median_time(cycle, cycles)
    interval = float(monitor.sampling_interval)
    return {
        "cycle_seconds": seconds,
        "sampling_interval_seconds": interval,
        "fraction": seconds / interval,
        "target": "<= 0.01",
        "how": "median wall time of one sampling cycle (collect, read the run, write the samples) ÷ MLflow's interval",
    }
