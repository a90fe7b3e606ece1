"""End-to-end helpers: compose the real config and train in this process, or run the real command line.

Most end-to-end tests train in-process (`train_here`), as lightning-hydra-template's tests do: the
config is composed from conf/ with `debug=quick` and handed to `xent_lab.training.train`, so each test
pays for a training, not for starting Python and TensorFlow again. Subprocesses (`run_train`) stay
where the process itself is under test: exit codes, signals, the command line, parallel launchers.
"""

from __future__ import annotations

import atexit
import copy
import functools
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
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
# For the tests of the process and the store (signals, locks, launches at once, reuse, failures): the smallest real
# MNIST job, its evaluation cut to the temperature and no intervals or shifted sets. What a run scores is tested on
# QUICK trainings in-process; here only that the process gets there.
LEAN = (
    QUICK,
    "dataset.limit.train=500",
    "dataset.limit.test=200",
    "dataset.val_size=200",
    "calibration.bootstrap=0",
    "calibration.methods=[temperature]",
    "evaluation.shift.image.rotate=[]",
    "evaluation.shift.image.gaussian_noise=[]",
    "trainer.verbose=0",
)


def data_dir() -> Path:
    """The real datasets; the suite fails loudly, not skips, when they are missing."""
    path = Path(os.environ.get("XENT_DATA_DIR", SHARED_DATA))
    assert (path / "SHA256SUMS").exists() or (path / "mnist").exists(), (
        f"real datasets not found in {path}: put the shared data folder beside the project or set XENT_DATA_DIR"
    )
    return path


def store_uri(workdir: Path) -> str:
    return f"sqlite:///{workdir / 'mlflow.db'}"


def _hydra_compose(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("config", overrides=overrides)


@functools.cache
def _composed_choices(choices: tuple[str, ...]) -> DictConfig:
    """conf/ composed with these config group choices, once per test process (never handed out: copied)."""
    return _hydra_compose(list(choices))


def _is_choice(override: Override) -> bool:
    """Hydra's own rule (hydra._internal.defaults_list.Overrides): an override whose key names a config group and
    whose value is not a mapping picks a file; any other sets a value in the composed config."""
    return (Path(CONF_DIR) / override.key_or_group).is_dir() and not isinstance(override.value(), dict)


def composed(*overrides: str) -> DictConfig:
    """The config as Hydra's `compose("config", overrides)` gives it (without the `hydra` node).

    Hydra composes in two steps: the group choices (`loss=focal`) pick and merge YAML files, then the value
    overrides (`loss.gamma=3`) are applied to the result. The first step takes about 0.1 s, so it runs once per
    set of choices in a test process; the second runs on a copy, through Hydra's own override code. Overrides of
    Hydra's node, and sweeps (which compose refuses), take the plain path.
    """
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    if any(o.key_or_group.startswith("hydra") or o.is_sweep_override() for o in parsed):
        return _hydra_compose(list(overrides))
    choices = tuple(o.input_line for o in parsed if _is_choice(o))
    cfg = copy.deepcopy(_composed_choices(choices))
    # Private, but the very step compose runs after the merge: no re-implementation of Hydra's override semantics.
    ConfigLoaderImpl._apply_overrides_to_config([o for o in parsed if not _is_choice(o)], cfg)
    return cfg


def compose_config(workdir: Path, cache_dir: Path, *overrides: str) -> DictConfig:
    """The real config as `python -m xent_lab.train OVERRIDES` composes it, with this test's store and data."""
    return composed(
        f"tracking.uri={store_uri(workdir)}",
        f"dataset.data_dir={data_dir()}",
        f"dataset.cache_dir={cache_dir}",
        "trainer.verbose=0",
        *overrides,
    )


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
    if cfg.tracking.uri == store_uri(workdir):
        create_store(workdir)
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


def start_train(workdir: Path, cache_dir: Path, *overrides: str) -> subprocess.Popen:
    """`python -m xent_lab.train` started in `workdir`, its output piped (text): for the tests that act on the
    process while it runs, or run two at once."""
    workdir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        train_command(*overrides),
        cwd=workdir,
        env=train_env(cache_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@dataclass(frozen=True)
class Exited:
    returncode: int
    stdout: str
    stderr: str


@contextmanager
def _as_the_command_line(workdir: Path, argv: list[str], env: dict[str, str]) -> Iterator[None]:
    """This process as a launch of `argv` in `workdir` with `env`; its signal handlers, argv, cwd and
    environment restored afterwards (the entry point installs xent_lab.stopping's handlers)."""
    from xent_lab import stopping

    handlers = {signum: signal.getsignal(signum) for signum in stopping.STOP_SIGNALS}
    saved_argv, saved_cwd, saved_env = sys.argv, os.getcwd(), dict(os.environ)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        os.chdir(workdir)
        sys.argv = argv
        os.environ.clear()
        os.environ.update(env)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


def refused_here(workdir: Path, cache_dir: Path, *overrides: str) -> Exited:
    """`python -m xent_lab.train OVERRIDES` in `workdir`, run in this process through the same Hydra entry point:
    for the refusals, which end before any training. The process's own exit codes are tested by `run_train`."""
    from xent_lab import train as entry_point

    out, err = io.StringIO(), io.StringIO()
    returncode = 0
    # Hydra's logging set-up (logging.config.dictConfig) would close every handler this process has, absl's with
    # pytest's capture stream among them; a refusal comes before any logging anyway.
    argv = [entry_point.__file__, *overrides, "hydra/job_logging=none", "hydra/hydra_logging=none"]
    with _as_the_command_line(workdir, argv, train_env(cache_dir)):
        try:
            with redirect_stdout(out), redirect_stderr(err):
                entry_point.main()
        except SystemExit as exc:
            returncode = exc.code if isinstance(exc.code, int) else 1
    return Exited(returncode, out.getvalue(), err.getvalue())


# --- reading the store back


@functools.cache
def _migrated_store() -> Path:
    """An empty SQLite store with MLflow's migrations run, made once per test process."""
    folder = Path(tempfile.mkdtemp(prefix="xent-migrated-store-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    MlflowClient(store_uri(folder)).search_experiments()
    return folder / "mlflow.db"


def create_store(workdir: Path) -> str:
    """workdir's SQLite store, created up front (so polling it never races the trainer's own creation); its URI.

    A copy of one migrated store: MLflow's migrations take seconds on every new SQLite file.
    """
    if not (workdir / "mlflow.db").exists():
        workdir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_migrated_store(), workdir / "mlflow.db")
    return store_uri(workdir)


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
