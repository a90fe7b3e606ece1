"""End-to-end helpers: compose the real config and train in this process, or run the real command line.

Most end-to-end tests train in-process (`train_here`), as lightning-hydra-template's tests do: the
config is composed from conf/ with `debug=quick` and handed to `xent_lab.training.train`, so each test
pays for a training, not for starting Python and TensorFlow again. Subprocesses (`run_train`) stay
where the process itself is under test: exit codes, signals, the command line, parallel launchers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from hydra import compose, initialize_config_dir
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from xent_lab.tracking import tags as T

ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = str(ROOT / "conf")
SHARED_DATA = ROOT.parent / "shared" / "data"
QUICK = "debug=quick"
# With QUICK: IMDB also gets a smaller vocabulary and shorter reviews.
IMDB_QUICK = ("dataset=imdb", "dataset.vocab_size=5000", "dataset.sequence_length=128")


def data_dir() -> Path:
    """The real datasets; the suite fails loudly, not skips, when they are missing."""
    path = Path(os.environ.get("XENT_DATA_DIR", SHARED_DATA))
    assert (path / "SHA256SUMS").exists() or (path / "mnist").exists(), (
        f"real datasets not found in {path}: put the shared data folder beside the project or set XENT_DATA_DIR"
    )
    return path


def store_uri(workdir: Path) -> str:
    return f"sqlite:///{workdir / 'mlflow.db'}"


def compose_config(workdir: Path, cache_dir: Path, *overrides: str) -> DictConfig:
    """The real config as `python -m xent_lab.train OVERRIDES` composes it, with this test's store and data."""
    placed = [
        f"tracking.uri={store_uri(workdir)}",
        f"dataset.data_dir={data_dir()}",
        f"dataset.cache_dir={cache_dir}",
        "trainer.verbose=0",
        *overrides,
    ]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("config", overrides=placed)


@dataclass(frozen=True)
class Trained:
    results: dict[str, float]
    run: Run
    output_dir: Path


def train_here(workdir: Path, cache_dir: Path, *overrides: str) -> Trained:
    """Train in this process on the real data (`debug=quick` unless the test asks for its own sizes)."""
    from xent_lab.record import run  # TensorFlow is imported by the tests that train, not at collection

    output_dir = workdir / "outputs"
    cfg = compose_config(workdir, cache_dir, *overrides)
    results = run(cfg, list(overrides), output_dir)
    return Trained(results, latest_run(workdir, cfg.tracking.experiment), output_dir)


def latest_run(workdir: Path, experiment: str = "xent-lab") -> Run:
    found = runs(workdir, experiment)
    assert found, f"no run in {store_uri(workdir)} (experiment {experiment!r})"
    return found[-1]


# --- the command line, for the tests of the process itself


def train_env(cache_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update({"XENT_DATA_DIR": str(data_dir()), "XENT_CACHE_DIR": str(cache_dir), **extra})
    return env


def train_command(*overrides: str) -> list[str]:
    return [sys.executable, "-m", "xent_lab.train", *overrides]


def run_train(
    workdir: Path, cache_dir: Path, *overrides: str, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`python -m xent_lab.train` in `workdir` (so its mlflow.db and outputs/ land there); the finished process."""
    return subprocess.run(
        train_command(*overrides),
        cwd=workdir,
        env=env or train_env(cache_dir),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --- reading the store back


def create_store(workdir: Path) -> None:
    """Create workdir's SQLite store up front, so polling it never races the trainer's own creation."""
    MlflowClient(store_uri(workdir)).search_experiments()


def runs(workdir: Path, experiment: str = "xent-lab") -> list[Run]:
    """All runs of `experiment` in workdir's store, oldest first."""
    client = MlflowClient(store_uri(workdir))
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return list(reversed(client.search_runs([found.experiment_id], max_results=1000)))


def artifact_paths(workdir: Path, run_id: str, path: str = "") -> set[str]:
    """Every artifact file of a run, recursively."""
    client = MlflowClient(store_uri(workdir))
    found: set[str] = set()
    for item in client.list_artifacts(run_id, path):
        found |= artifact_paths(workdir, run_id, item.path) if item.is_dir else {item.path}
    return found


def history(workdir: Path, run_id: str, metric: str) -> list[tuple[int, float]]:
    client = MlflowClient(store_uri(workdir))
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, metric))


EXPECTED_ARTIFACTS = {
    T.CONFIG_ARTIFACT,
    T.OVERRIDES_ARTIFACT,
    T.MODEL_SUMMARY_ARTIFACT,
    T.LOSS_CURVES_ARTIFACT,
    T.RELIABILITY_ARTIFACT.format(split="val"),
    T.RELIABILITY_ARTIFACT.format(split="test"),
    T.PREDICTIONS_ARTIFACT,
}
