"""What every bench figure shares: composing the real config, a compiled model beside the harness's,
epoch timing, and the paired-ratio summary."""

from __future__ import annotations

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

from xent_lab import models, objectives
from xent_lab.data import Dataset
from xent_lab.train import CONF_DIR
from xent_lab.training import fit, pipeline


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


def train_run(overrides: list[str], workdir: Path, uri: str, experiment: str) -> tuple[MlflowClient, Run]:
    """`xent_lab.train` in this process, logging to `uri`; the client of that store and the run it made."""
    overrides = [*overrides, f"tracking.uri={uri}", f"tracking.experiment={experiment}"]
    client = MlflowClient(uri)
    if not uri.startswith("http") and client.get_experiment_by_name(experiment) is None:
        # A local store's artifacts go in workdir, not in ./mlruns of the folder the bench was started from.
        client.create_experiment(experiment, artifact_location=(workdir / "mlruns").as_uri())
    pipeline.train(config(*overrides), overrides, workdir)
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
