"""What every bench figure shares: composing the real config, a compiled model beside the harness's,
epoch timing, the ratio summaries, and the paired-block method (ABBA blocks, paired ratios, a control's verdict)."""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
from hydra import compose, initialize_config_dir
from mlflow.entities import Metric, Run
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from xent_lab import models, objectives, record
from xent_lab.data import Dataset
from xent_lab.train import CONF_DIR
from xent_lab.training import fit


class EpochTimer(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(time.perf_counter() - self._started)


def config(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("config", overrides=list(overrides))


def compiled(cfg: DictConfig, dataset: Dataset) -> tuple[objectives.Objective, keras.Model]:
    """The objective and compiled model the harness would train, for a plain `model.fit` beside it."""
    objective = objectives.build_objective(cfg.loss, dataset.num_classes)
    model = models.build_model(cfg.model, dataset.x_train.shape[1:], objective)
    fit.compile_model(model, cfg.trainer, objective)
    return objective, model


def steady(seconds: list[float]) -> float:
    """Median epoch time without epoch 0 (it includes graph tracing); the median resists stray slow epochs."""
    return float(np.median(seconds[1:] or seconds))


def sqlite_store(path: Path) -> str:
    """The URI of a SQLite store at `path`: a copy of an empty store migrated once per folder. MLflow's migrations
    take seconds on every new file, outside anything a figure times (the startup figure makes its own store)."""
    migrated = path.parent / "empty-migrated.db"
    if not migrated.exists():
        MlflowClient(f"sqlite:///{migrated}").search_experiments()
    if not path.exists():
        shutil.copyfile(migrated, path)
    return f"sqlite:///{path}"


def train_run(overrides: list[str], workdir: Path, uri: str, experiment: str) -> tuple[MlflowClient, Run]:
    """`xent_lab.train` in this process, logging to `uri`; the client of that store and the run it made."""
    overrides = [*overrides, f"tracking.uri={uri}", f"tracking.experiment={experiment}"]
    client = MlflowClient(uri)
    if not uri.startswith("http") and client.get_experiment_by_name(experiment) is None:
        # A local store's artifacts go in workdir, not in ./mlruns of the folder the bench was started from.
        client.create_experiment(experiment, artifact_location=(workdir / "mlruns").as_uri())
    record.run(config(*overrides), overrides, workdir)
    run = client.search_runs(
        [client.get_experiment_by_name(experiment).experiment_id], order_by=["attribute.start_time DESC"], max_results=1
    )[0]
    return client, run


def history(client: MlflowClient, run: Run, key: str) -> list[Metric]:
    return sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)


def ratio_summary(rounds: list[dict[str, float]], numerator: str, denominator: str, target: str) -> dict[str, Any]:
    ratios = [r[numerator] / r[denominator] for r in rounds]
    return {"ratio": statistics.median(ratios), "ratios": ratios, "rounds": rounds, "target": target}


def median_time(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def alternating(
    fns: dict[str, Callable[[], Any]], calls: int, rounds: int, self_timed: bool = False
) -> list[dict[str, list[float]]]:
    """Per round, the seconds of each call of each fn; the calls alternate between the fns, in an order
    reversed at every call (ABBA...), so that a change of machine load hits all of them alike. `self_timed`:
    each fn returns its own seconds (a run's steady epochs, without its set-up) instead of being timed whole."""
    names = list(fns)
    measured = []
    for _ in range(rounds):
        seconds: dict[str, list[float]] = {name: [] for name in names}
        for call in range(calls):
            for name in names if call % 2 == 0 else reversed(names):
                started = time.perf_counter()
                own = fns[name]()
                seconds[name].append(float(own) if self_timed else time.perf_counter() - started)
        measured.append(seconds)
    return measured


def paired_summary(
    rounds: list[dict[str, list[float]]], target: str, numerator: str = "custom", denominator: str = "builtin"
) -> dict[str, Any]:
    """Per round, the median over its calls of numerator / denominator, each call paired with the denominator's
    call run next to it (a burst of load hits both); the median of the rounds, and their spread (max / min): how
    far to trust it. `rounds` in the result: each round's median seconds per call of the two."""
    ratios = [statistics.median(n / d for n, d in zip(r[numerator], r[denominator], strict=True)) for r in rounds]
    return {
        "ratio": statistics.median(ratios),
        "ratios": ratios,
        "spread": max(ratios) / min(ratios),
        "rounds": [{name: statistics.median(r[name]) for name in (numerator, denominator)} for r in rounds],
        "target": target,
    }


def noise_verdict(ratios: list[float], control: list[float]) -> str:
    """ "faster" or "slower" when every round ratio lies below or above every round of the control (the same
    thing against itself: the noise of the method), else "parity"."""
    if max(ratios) < min(control):
        return "faster"
    return "slower" if min(ratios) > max(control) else "parity"
