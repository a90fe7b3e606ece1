"""The harness's own costs: `xent_lab.train`'s epoch against a plain `model.fit` epoch, an epoch logged to an HTTP
tracking server against one logged to a local SQLite file (both by paired epochs, each with a control), and the
time from launch to the first step."""

from __future__ import annotations

import copy
import dataclasses
import functools
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from xent_lab import tracking
from xent_lab.bench.common import (
    EpochTimer,
    alternating,
    config,
    history,
    median_time,
    noise_verdict,
    paired_summary,
    sqlite_store,
)
from xent_lab.record import MlflowSink
from xent_lab.tracking import tags as T
from xent_lab.training import Setup, prepare
from xent_lab.training.pipeline import fit_callbacks, fit_model

# Epochs of each role per round of the harness and server figures, in ABBA order, each paired with the epoch of
# the other role next to it: load that lasts two epochs hits both alike.
BLOCKS_PER_ROUND = 6
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


class EpochByEpoch:
    """One compiled model (`training.prepare`, as `xent_lab.train` builds it), fitted one epoch per call, the
    epochs numbered on across calls, so that epochs of different roles can alternate on it.

    A role's call returns its epoch's seconds, from the epoch's start to the end of its last callback (the
    timer, placed last): the training, the validation and every callback's epoch work, the sinks' logging
    included; not `model.fit`'s set-up around the epoch, which a whole run pays once.
    """

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.setup: Setup = prepare(cfg)
        self.epoch = 0

    def plain(self) -> Callable[[], float]:
        """A plain `model.fit` epoch: same model, data, batch size and validation set, no callback but the timer."""
        dataset, objective, timer = self.setup.dataset, self.setup.objective, EpochTimer()
        train = (dataset.x_train, objective.encode_labels(dataset.y_train))
        val = (dataset.x_val, objective.encode_labels(dataset.y_val))

        def epoch() -> float:
            self.setup.model.fit(
                *train,
                validation_data=val,
                initial_epoch=self.epoch,
                epochs=self.epoch + 1,
                batch_size=self.cfg.trainer.batch_size,
                callbacks=[timer],
                verbose=0,
            )
            self.epoch += 1
            return timer.seconds[-1]

        return epoch

    def harness(self, logger: tracking.RunLogger, output_dir: Path, per_epoch_calibration: bool) -> Callable[[], float]:
        """An epoch of `xent_lab.train`: the fit and the callbacks its pipeline builds (`fit_callbacks`), each
        epoch logged live to `logger`'s run by the MLflow sink, the checkpoint saved in `output_dir`."""
        cfg = copy.deepcopy(self.cfg)
        cfg.calibration.per_epoch = per_epoch_calibration
        timer = EpochTimer()
        callbacks = fit_callbacks(cfg, self.setup, [MlflowSink(logger)], output_dir)
        callbacks = dataclasses.replace(callbacks, callbacks=[*callbacks.callbacks, timer])

        def epoch() -> float:
            cfg.trainer.epochs = self.epoch + 1  # Keras runs epochs initial_epoch .. epochs - 1: this one
            fit_model(cfg, self.setup, callbacks, initial_epoch=self.epoch)
            self.epoch += 1
            return timer.seconds[-1]

        return epoch


def measured_epochs(roles: dict[str, Callable[[], float]], blocks: int, rounds: int) -> list[dict[str, list[float]]]:
    """`blocks` epochs of each role per round, alternating (ABBA), after one untimed epoch of each: the first
    traces the model's functions, and a harness role's first creates its record and checkpoint files."""
    alternating(roles, 1, 1, self_timed=True)
    return alternating(roles, blocks, rounds, self_timed=True)


def harness_overhead(data: Sequence[str], blocks: int, rounds: int, workdir: Path) -> dict[str, Any]:
    """Seconds per epoch: `xent_lab.train` (with and without per-epoch calibration) over a plain `model.fit`.

    On one compiled model, epoch after epoch (`EpochByEpoch`): `blocks` epochs of each role per round, in
    ABBA order, each harness epoch paired with the plain epoch beside it. The harness's epochs run its
    pipeline's callbacks (stop checks, checkpoint, per-epoch calibration when on, the epoch events) and log each
    epoch to a run in a local SQLite store, through its record, as a training does. The control is a second
    plain role, paired the same way with the first.
    """
    cfg = config(*data, "trainer.verbose=0")
    model = EpochByEpoch(cfg)
    tracker = tracking.Tracker(sqlite_store(workdir / "bench.db"), "bench")
    with ExitStack() as runs:
        loggers = {
            calibrated: runs.enter_context(tracker.run(name, record_dir=workdir / name))
            for calibrated, name in ((True, "harness-with-calibration"), (False, "harness"))
        }
        # The order puts each figure's two roles side by side, both ways round.
        roles = {
            "harness_with_calibration": model.harness(loggers[True], workdir / "harness-with-calibration", True),
            "harness_no_calibration": model.harness(loggers[False], workdir / "harness", False),
            "plain_fit": model.plain(),
            "plain_fit_again": model.plain(),
        }
        measured = measured_epochs(roles, blocks, rounds)
    control = paired_summary(measured, "1.00 (the method's noise)", "plain_fit_again", "plain_fit")
    # The callback times itself inside each epoch: its share needs no second role to subtract.
    run = tracker.client.get_run(loggers[True].run_id)
    costs, epochs = (
        [m.value for m in history(tracker.client, run, key)[1:]] for key in (T.CALIBRATION_SECONDS, T.EPOCH_SECONDS)
    )
    fractions = [c / e for c, e in zip(costs, epochs, strict=True)]
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
            "how": "perf/calibration_seconds / perf/epoch_seconds within the same epochs (the untimed first excluded)",
        },
    }


def tracking_server_overhead(
    data: Sequence[str], blocks: int, rounds: int, workdir: Path, server_uri: str
) -> dict[str, Any]:
    """Seconds per epoch of `xent_lab.train` logging to an HTTP tracking server, over logging to a local SQLite file.

    The server runs on this machine over its own SQLite file, so the difference is the HTTP hop and the server
    itself. One model, epoch after epoch, with the callbacks of the harness figure (per-epoch calibration as
    configured); only the sink's store differs: an epoch is timed up to the end of its logging, one round trip
    to the store. Paired epochs as in `harness_overhead`; the control is a second local SQLite file, paired the
    same way with the first.
    """
    cfg = config(*data, "trainer.verbose=0")
    model = EpochByEpoch(cfg)
    stores = {
        "http_server": server_uri,
        "local_sqlite": sqlite_store(workdir / "local.db"),
        "local_sqlite_again": sqlite_store(workdir / "local-again.db"),
    }
    with ExitStack() as runs:
        loggers = {
            name: runs.enter_context(tracking.Tracker(uri, "bench-store").run(name, record_dir=workdir / name))
            for name, uri in stores.items()
        }
        roles = {
            name: model.harness(logger, workdir / name, cfg.calibration.per_epoch) for name, logger in loggers.items()
        }
        measured = measured_epochs(roles, blocks, rounds)
        metrics = tracking.Tracker(stores["local_sqlite"], "bench-store").client.get_run(loggers["local_sqlite"].run_id)
    # One epoch's metrics, sent as the sink sends them, in one log_batch, timed alone (no record) against each store.
    epoch_metrics = {
        key: value
        for key, value in metrics.data.metrics.items()
        if key.startswith((T.TRAIN_PREFIX, T.VAL_PREFIX)) or key in (T.EPOCH_SECONDS, T.CALIBRATION_SECONDS)
    }
    round_trip = {}
    for name in ("local_sqlite", "http_server"):
        with tracking.Tracker(stores[name], "bench-log-batch").run("log-batch") as logger:
            round_trip[name] = median_time(functools.partial(logger.log_metrics, epoch_metrics, step=0), 20)
    control = paired_summary(measured, "1.00 (the method's noise)", "local_sqlite_again", "local_sqlite")
    return {
        "epoch_seconds_http_server_over_sqlite": {
            **held_to_targets(paired_summary(measured, f"<= {RATIO_TARGET}", "http_server", "local_sqlite"), control),
            "log_batch_seconds": round_trip,
            "how": "an epoch with the harness's callbacks, timed to the end of its per-epoch log_batch to the store "
            "(and its local record); the server on 127.0.0.1 over SQLite, --workers 1",
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
