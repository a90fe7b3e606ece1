"""`python -m xent_lab.bench` (`make bench`): performance figures as ratios measured side by side.

Every figure compares two things run alternately in one process on the same data, so that machine
load and thermal state affect both alike; the JSON holds each round's timings, the median ratio and
the target it is held to. Tests check that this runs and writes sane numbers, never the numbers.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np
from hydra import compose, initialize_config_dir
from mlflow.entities import Metric, Run
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from xent_lab import calibration, losses, models, objectives, tracking
from xent_lab.data import Dataset
from xent_lab.tracking import tags as T
from xent_lab.tracking.server import start_server
from xent_lab.train import CONF_DIR
from xent_lab.training import fit, pipeline

RESULTS = "bench-results.json"


class EpochTimer(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(time.perf_counter() - self._started)


def _config(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("config", overrides=list(overrides))


def _compiled(cfg: DictConfig, dataset: Dataset) -> tuple[objectives.Objective, keras.Model]:
    """The objective and compiled model the harness would train, for a plain `model.fit` beside it."""
    objective = objectives.build_objective(cfg.loss, dataset.num_classes)
    model = models.build_model(cfg.model, dataset.x_train.shape[1:], objective)
    fit.compile_model(model, cfg.trainer, objective)
    return objective, model


def _steady(seconds: list[float]) -> float:
    """Median epoch time without epoch 0 (it includes graph tracing); the median resists stray slow epochs."""
    return float(np.median(seconds[1:] or seconds))


def _train_run(overrides: list[str], workdir: Path, uri: str, experiment: str) -> tuple[MlflowClient, Run]:
    """`xent_lab.train` in this process, logging to `uri`; the client of that store and the run it made."""
    overrides = [*overrides, f"tracking.uri={uri}", f"tracking.experiment={experiment}"]
    client = MlflowClient(uri)
    if not uri.startswith("http") and client.get_experiment_by_name(experiment) is None:
        # A local store's artifacts go in workdir, not in ./mlruns of the folder the bench was started from.
        client.create_experiment(experiment, artifact_location=(workdir / "mlruns").as_uri())
    pipeline.train(_config(*overrides), overrides, workdir)
    run = client.search_runs(
        [client.get_experiment_by_name(experiment).experiment_id], order_by=["attribute.start_time DESC"], max_results=1
    )[0]
    return client, run


def _history(client: MlflowClient, run: Run, key: str) -> list[Metric]:
    return sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)


def _ratio_summary(rounds: list[dict[str, float]], numerator: str, denominator: str, target: str) -> dict[str, Any]:
    ratios = [r[numerator] / r[denominator] for r in rounds]
    return {"ratio": statistics.median(ratios), "ratios": ratios, "rounds": rounds, "target": target}


def harness_overhead(dataset: Dataset, epochs: int, rounds: int, workdir: Path) -> dict[str, Any]:
    """Seconds per epoch: xent_lab.train (with and without per-epoch calibration) vs a plain `model.fit`.

    Same model, data, batch size and validation set; the plain fit has no callbacks at all.
    """
    overrides = [f"trainer.epochs={epochs}", f"dataset.limit.train={len(dataset.x_train)}", "trainer.verbose=0"]
    cfg = _config(*overrides)

    def plain() -> float:
        objective, model = _compiled(cfg, dataset)
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
        return _steady(timer.seconds)

    def harness(per_epoch_calibration: bool) -> float:
        client, run = _train_run(
            [*overrides, f"calibration.per_epoch={str(per_epoch_calibration).lower()}"],
            workdir,
            f"sqlite:///{workdir / 'bench.db'}",
            "bench",
        )
        epochs = [m.value for m in _history(client, run, T.EPOCH_SECONDS)]
        if per_epoch_calibration:
            # The callback times itself inside each epoch: its share needs no second run to subtract.
            costs = [m.value for m in _history(client, run, T.CALIBRATION_SECONDS)]
            fractions.extend(c / e for c, e in zip(costs[1:], epochs[1:], strict=True))
        return _steady(epochs)

    measured: list[dict[str, float]] = []
    fractions: list[float] = []
    for _ in range(rounds):
        measured.append({"plain_fit": plain(), "harness_no_calibration": harness(False), "harness": harness(True)})
    return {
        "epoch_seconds_harness_over_plain_fit": _ratio_summary(
            measured, "harness_no_calibration", "plain_fit", "<= 1.05"
        ),
        "epoch_seconds_harness_with_calibration_over_plain_fit": _ratio_summary(
            measured, "harness", "plain_fit", "informative"
        ),
        "calibration_callback_fraction_of_epoch": {
            "fraction": statistics.median(fractions),
            "fractions": fractions,
            "target": "< 0.03",
            "how": "perf/calibration_seconds / perf/epoch_seconds within the same epochs (epoch 0 excluded)",
        },
    }


def tracking_server_overhead(
    dataset: Dataset, epochs: int, rounds: int, workdir: Path, server_uri: str
) -> dict[str, Any]:
    """Seconds per epoch of `xent_lab.train` logging to an HTTP tracking server, over logging to a local SQLite file.

    The same training alternately against each store (which goes first swaps every round). The server runs
    on this machine over its own SQLite file, so the difference is the HTTP hop and the server itself.
    `perf/epoch_seconds` stops before an epoch's metrics are sent; here an epoch is the time between the
    timestamps of two consecutive per-epoch `log_batch` calls: one epoch plus one round trip to the store.
    """
    overrides = [f"trainer.epochs={epochs}", f"dataset.limit.train={len(dataset.x_train)}", "trainer.verbose=0"]
    stores = {"local_sqlite": f"sqlite:///{workdir / 'local.db'}", "http_server": server_uri}
    measured: list[dict[str, float]] = []
    for turn in range(rounds):
        timings = {}
        for name in sorted(stores, reverse=turn % 2 == 1):
            client, run = _train_run(overrides, workdir, stores[name], "bench-store")
            stamps = [m.timestamp for m in _history(client, run, T.TRAIN_LOSS)]
            timings[name] = float(np.median(np.diff(stamps))) / 1000
        measured.append(timings)
    # One epoch's metrics (the last run's), sent as training sends them, in one log_batch, timed alone.
    epoch_metrics = {
        key: value
        for key, value in run.data.metrics.items()
        if key.startswith((T.TRAIN_PREFIX, T.VAL_PREFIX)) or key in (T.EPOCH_SECONDS, T.CALIBRATION_SECONDS)
    }
    round_trip = {}
    for name, uri in stores.items():
        with tracking.Tracker(uri, "bench-log-batch").run("log-batch") as logger:
            round_trip[name] = _median_time(functools.partial(logger.log_metrics, epoch_metrics, step=0), 20)
    return {
        "epoch_seconds_http_server_over_sqlite": {
            **_ratio_summary(measured, "http_server", "local_sqlite", "<= 1.05"),
            "log_batch_seconds": round_trip,
            "how": "median interval between the timestamps of consecutive per-epoch log_batch calls "
            "(an epoch plus its logging round trip); the server on 127.0.0.1 over SQLite, --workers 1",
        }
    }


def startup(workdir: Path) -> dict[str, Any]:
    """Seconds from `python -m xent_lab.train` starting to its first training step (a real subprocess)."""
    store = f"sqlite:///{workdir / 'startup.db'}"
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "xent_lab.train",
            "debug=quick",
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


def _median_time(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def calibration_speed(n: int, k: int, repeat: int) -> dict[str, Any]:
    """All calibration metrics on n x k probabilities, against one NumPy argmax pass over the same array."""
    rng = np.random.default_rng(0)
    probs = calibration.probabilities(rng.normal(size=(n, k)).astype("float32"), "softmax")
    labels = rng.integers(0, k, size=n)
    argmax = _median_time(lambda: probs.argmax(axis=1), repeat)
    metrics = _median_time(lambda: calibration.calibration_metrics(probs, labels), repeat)
    return {
        "shape": [n, k],
        "argmax_seconds": argmax,
        "metrics_seconds": metrics,
        "ratio": metrics / argmax,
        "target": "informative (how close to memory speed)",
    }


def training_step_ratio(dataset: Dataset, epochs: int, rounds: int) -> dict[str, Any]:
    """Per loss: steady epoch time with `impl=custom` over `impl=builtin`, alternating the two."""
    results: dict[str, Any] = {}
    for name in ("bce", "cce", "sparse_cce", "focal"):
        measured = []
        for _ in range(rounds):
            timings = {}
            for impl in ("builtin", "custom"):
                cfg = _config(f"loss={name}", f"loss.impl={impl}")
                keras.utils.set_random_seed(0)
                objective, model = _compiled(cfg, dataset)
                timer = EpochTimer()
                model.fit(
                    dataset.x_train,
                    objective.encode_labels(dataset.y_train),
                    epochs=epochs,
                    batch_size=cfg.trainer.batch_size,
                    callbacks=[timer],
                    verbose=0,
                )
                timings[impl] = _steady(timer.seconds)
            measured.append(timings)
        results[name] = _ratio_summary(measured, "custom", "builtin", "<= 1.02")
    return results


def loss_forward_backward_ratio(batch: int, repeat: int) -> dict[str, Any]:
    """Per loss class: one compiled forward+backward pass on a (batch, 10) logits array, custom over builtin."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    logits = tf.constant(rng.normal(scale=3.0, size=(batch, 10)).astype("float32"))
    labels = rng.integers(0, 10, size=batch)
    targets = {
        "sparse": tf.constant(labels.astype("int32")),
        "onehot": tf.constant(np.eye(10, dtype="float32")[labels]),
        "binary": tf.constant((labels[:, None] == np.arange(10)).astype("float32")),
    }
    cases = {
        "BinaryCrossentropy": "binary",
        "CategoricalCrossentropy": "onehot",
        "SparseCategoricalCrossentropy": "sparse",
        "BinaryFocalCrossentropy": "binary",
        "CategoricalFocalCrossentropy": "onehot",
    }
    results: dict[str, Any] = {}
    for class_name, target in cases.items():
        steps = {}
        for impl, module in (("builtin", keras.losses), ("custom", losses)):
            loss = getattr(module, class_name)(from_logits=True)

            @tf.function
            def step(y=targets[target], z=logits, loss=loss):
                with tf.GradientTape() as tape:
                    tape.watch(z)
                    value = loss(y, z)
                return value, tape.gradient(value, z)

            step()  # trace
            steps[impl] = step
        rounds = [
            {impl: _median_time(lambda s=s: [t.numpy() for t in s()], repeat) for impl, s in steps.items()}
            for _ in range(3)
        ]
        results[class_name] = _ratio_summary(rounds, "custom", "builtin", "informative (target for training <= 1.02)")
    return {"batch": [batch, 10], "losses": results}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=RESULTS, help=f"where to write the JSON (default {RESULTS})")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the bench runs, figures are noise")
    parser.add_argument("--rounds", type=int, default=5, help="alternations per timing figure (default 5)")
    args = parser.parse_args(argv)
    quick = args.quick
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
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        print("bench: harness vs plain model.fit (MNIST MLP) ...", file=sys.stderr, flush=True)
        dataset = pipeline.load_data(_config("debug=quick" if quick else "dataset.limit.train=null"))
        figures.update(
            harness_overhead(dataset, epochs=2 if quick else 4, rounds=1 if quick else args.rounds, workdir=workdir)
        )
        print("bench: HTTP tracking server vs local SQLite ...", file=sys.stderr, flush=True)
        with start_server(f"sqlite:///{workdir / 'server.db'}", workdir / "mlartifacts") as server:
            figures.update(
                tracking_server_overhead(
                    dataset,
                    epochs=2 if quick else 4,
                    rounds=1 if quick else args.rounds,
                    workdir=workdir,
                    server_uri=server.uri,
                )
            )
        print("bench: launch to first training step ...", file=sys.stderr, flush=True)
        figures["startup"] = startup(workdir)
    print("bench: calibration metrics speed ...", file=sys.stderr, flush=True)
    figures["calibration_metrics_over_argmax"] = calibration_speed(
        n=10_000 if quick else 1_000_000, k=10, repeat=3 if quick else 5
    )
    print("bench: custom vs built-in losses ...", file=sys.stderr, flush=True)
    figures["training_step_custom_over_builtin"] = training_step_ratio(
        dataset, epochs=2 if quick else 3, rounds=1 if quick else args.rounds
    )
    figures["loss_forward_backward_custom_over_builtin"] = loss_forward_backward_ratio(
        batch=4096 if quick else 65_536, repeat=3 if quick else 20
    )
    Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    print(f"bench: wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
