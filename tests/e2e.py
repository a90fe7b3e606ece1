"""Helpers for end-to-end tests: run `python -m xent_lab.train` as a real subprocess on real data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# Small but real: enough data to learn something in seconds on two cores.
QUICK = ["dataset.limit.train=2000", "dataset.limit.test=1000", "dataset.val_size=1000", "trainer.epochs=2"]
QUICK_IMDB = [
    "dataset=imdb", "dataset.vocab_size=5000", "dataset.sequence_length=128",
    "dataset.limit.train=3000", "dataset.limit.test=1000", "dataset.val_size=1000",
]


def data_dir() -> Path:
    """The real datasets; the suite fails loudly, not skips, when they are missing."""
    path = Path(os.environ.get("XENT_DATA_DIR", SHARED_DATA))
    assert (path / "SHA256SUMS").exists() or (path / "mnist").exists(), (
        f"real datasets not found in {path}: put the shared data folder beside the project or set XENT_DATA_DIR"
    )
    return path


def train_env(cache_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update({"XENT_DATA_DIR": str(data_dir()), "XENT_CACHE_DIR": str(cache_dir), **extra})
    return env


def train_command(*overrides: str) -> list[str]:
    return [sys.executable, "-m", "xent_lab.train", *overrides]


def run_train(
    workdir: Path, cache_dir: Path, *overrides: str, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Train in `workdir` (so its mlflow.db and outputs/ land there); returns the finished process."""
    return subprocess.run(
        train_command(*overrides),
        cwd=workdir,
        env=env or train_env(cache_dir),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def store_uri(workdir: Path) -> str:
    return f"sqlite:///{workdir / 'mlflow.db'}"


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
