"""The experiment apart from its record: training loads no MLflow, returns a `RunResult` and hands its epochs to a
sink; `publish` and relog write a run through the same upload; the console stays compact and quiet."""

from __future__ import annotations

import ast
import io
from collections import deque
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from tests.helpers.e2e import QUICK, ROOT, compose_config
from xent_lab.calibration import SELECTIVE
from xent_lab.record.metrics import evaluation_metrics
from xent_lab.tracking import Tracker, record
from xent_lab.tracking import tags as T
from xent_lab.tracking.relog import relog
from xent_lab.training.events import ConsoleLine, Epoch, MemorySink
from xent_lab.training.result import RunResult

PACKAGE = ROOT / "xent_lab"


def _module_file(module: str) -> Path | None:
    """The file of a module of this project; None for anything else."""
    if module != "xent_lab" and not module.startswith("xent_lab."):
        return None
    path = ROOT.joinpath(*module.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.exists():
            return candidate
    return None


def _type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports_at_load(path: Path) -> set[str]:
    """What importing the module imports at once: its module-level imports (also under `if` and `try`), not those
    inside functions or under `if TYPE_CHECKING`; each with the packages above it, which Python loads first."""
    found: set[str] = set()
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names if _module_file(f"{base}.{alias.name}"))
            elif isinstance(node, ast.If) and not _type_checking(node):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)

    visit(ast.parse(path.read_text()).body)
    with_parents = set()
    for name in found:
        parts = name.split(".")
        with_parents.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return with_parents


def import_chain(start: str, target: str) -> list[str] | None:
    """The chain of imports by which loading `start` loads `target` (a top-level package), or None."""
    parents: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        module = queue.popleft()
        path = _module_file(module)
        if path is None:
            if module.split(".")[0] == target:
                chain = [module]
                while parents[chain[-1]] is not None:
                    chain.append(parents[chain[-1]])
                return chain[::-1]
            continue
        for imported in sorted(_imports_at_load(path)):
            if imported not in parents:
                parents[imported] = module
                queue.append(imported)
    return None


def test_the_import_walk_finds_a_chain_to_mlflow():
    # The check below would pass vacuously if the walk could not see through the project's own packages.
    chain = import_chain("xent_lab.record.harness", "mlflow")
    assert chain is not None and chain[0] == "xent_lab.record.harness" and chain[-1].startswith("mlflow")


def test_training_loads_no_mlflow_directly_or_through_what_it_imports():
    modules = ["xent_lab.training", *(f"xent_lab.training.{p.stem}" for p in (PACKAGE / "training").glob("*.py"))]
    chains = {module: import_chain(module, "mlflow") for module in modules}
    assert {module: " -> ".join(chain) for module, chain in chains.items() if chain} == {}


@dataclass(frozen=True)
class Trained:
    workdir: Path
    cfg: DictConfig
    sink: MemorySink
    result: RunResult
    printed: str


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cache_dir):
    """A quick training with a memory sink and no store at all, and what it printed."""
    from xent_lab import training

    workdir = tmp_path_factory.mktemp("memory")
    cfg = compose_config(workdir, cache_dir, QUICK, "trainer.epochs=2", "trainer.verbose=2")
    sink = training.MemorySink()
    out = io.StringIO()
    with redirect_stdout(out):
        result = training.train(cfg, sink)
    return Trained(workdir, cfg, sink, result, out.getvalue())


@pytest.mark.slow
def test_a_training_hands_each_epoch_to_the_sink_and_writes_no_store(trained):
    workdir, sink, result = trained.workdir, trained.sink, trained.result
    assert [event.epoch for event in sink.epochs] == [0, 1]
    values = sink.epochs[0].values
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "val/ece", "val/nll", "perf/calibration_seconds"} <= set(
        values
    )
    assert sink.history("val_accuracy") == result.history["val_accuracy"]
    assert [event.seconds for event in sink.epochs] == result.epoch_seconds
    assert sink.divergence is None and result.divergence is None
    assert list(workdir.iterdir()) == []  # no mlflow.db, no mlruns, no record


@pytest.mark.slow
def test_the_result_holds_predictions_scores_and_fitted_recalibrators(trained):
    result = trained.result
    dataset = result.setup.dataset
    assert result.logits["val"].shape == (1000, 10) and result.logits["test"].shape == (1000, 10)
    evaluation = result.evaluation
    assert evaluation is not None and 0.5 < evaluation.accuracy <= 1
    # The argmax accuracy of the returned logits is Keras' test accuracy.
    assert np.mean(result.logits["test"].argmax(axis=1) == dataset.y_test) == pytest.approx(evaluation.accuracy)
    assert {"ece", "nll", "brier"} <= set(evaluation.scores.values) and "ece" in evaluation.scores.intervals
    assert evaluation.temperature is not None and evaluation.temperature["temperature"] > 0
    assert set(evaluation.recalibrated) == {"temperature"}
    assert evaluation.recalibrated["temperature"].params["temperature"] == evaluation.temperature["temperature"]
    assert evaluation.recall.shape == (10,)
    assert result.epochs_run == 2 and result.kept_epoch == 1 and result.last_epoch is None
    # debug=quick's shifted sets, each before and after the temperature fitted on the clean validation set.
    sets = ("rotate/0", "rotate/90", "gaussian_noise/3")
    assert list(evaluation.shift) == [name for s in sets for name in (s, f"{s}/ts")]
    metrics = evaluation_metrics(evaluation)
    # Rotating by 0 degrees is the test set: its scores are the test scores, and after the temperature test/*_ts.
    assert metrics["shift/rotate/0/accuracy"] == pytest.approx(evaluation.accuracy)
    for name in ("ece", "nll", "brier"):
        assert metrics[f"shift/rotate/0/{name}"] == evaluation.scores.values[name]
        assert metrics[f"shift/rotate/0/ts/{name}"] == evaluation.temperature[f"{name}_ts"]
    # A quarter turn is far from the training data; its intervals come from debug=quick's 50 resamples.
    assert metrics["shift/rotate/90/accuracy"] < evaluation.accuracy - 0.3
    assert (
        metrics["shift/rotate/90/ece/ci_low"]
        <= metrics["shift/rotate/90/ece"]
        <= metrics["shift/rotate/90/ece/ci_high"]
    )
    assert "shift/rotate/90/ts/accuracy" not in metrics  # the temperature keeps the argmax
    assert metrics["shift/gaussian_noise/3/ts/nll/ci_high"] > metrics["shift/gaussian_noise/3/ts/nll/ci_low"]


@pytest.mark.slow
def test_the_console_shows_one_compact_line_per_epoch(trained):
    sink = trained.sink
    lines = trained.printed.splitlines()
    assert [line.split("  ")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    first = sink.epochs[0].values
    assert lines[0] == (
        f"epoch 1/2  loss {first['loss']:.4f}  accuracy {first['accuracy']:.4f}  val loss {first['val_loss']:.4f}  "
        f"val accuracy {first['val_accuracy']:.4f}  val ECE {first['val/ece']:.4f}  {sink.epochs[0].seconds:.1f} s"
    )
    assert max(len(line) for line in lines) < 120


@pytest.mark.slow
def test_a_recorded_divergence_reaches_the_sink_and_nothing_is_evaluated(tmp_path, cache_dir):
    from xent_lab import training

    explode = ("trainer.optimizer._target_=keras.optimizers.SGD", "trainer.optimizer.learning_rate=1e30")
    cfg = compose_config(tmp_path, cache_dir, QUICK, *explode, "trainer.on_nonfinite=record")
    sink = MemorySink()
    result = training.train(cfg, sink)
    assert result.divergence is not None and sink.divergence == result.divergence
    assert result.divergence.epoch == 0 and result.epochs_run == 1
    assert (result.evaluation, result.logits, result.kept_epoch) == (None, {}, None)
    assert list(tmp_path.iterdir()) == []


def _mlflow_contents(client: MlflowClient, run_id: str) -> tuple[dict[str, float], set[str]]:
    def files(path: str = "") -> set[str]:
        found: set[str] = set()
        for item in client.list_artifacts(run_id, path):
            found |= files(item.path) if item.is_dir else {item.path}
        return found

    return client.get_run(run_id).data.metrics, files()


@pytest.mark.slow
def test_publish_writes_the_record_then_mlflow_and_relog_uploads_the_same(trained, tmp_path):
    from xent_lab.record import publish

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "exp")
    with tracker.run("published", record_dir=tmp_path / "job") as run:
        results = publish(trained.result, run, trained.cfg, "published", {}, {}, uri)
    assert results[T.TEST_ACCURACY] == trained.result.evaluation.accuracy
    assert results[T.EPOCHS_RUN] == 2 and results[T.KEPT_EPOCH] == 1
    recorded = record.load(tmp_path / "job")
    assert {m["key"]: m["value"] for m in recorded.metrics} == pytest.approx(results)
    metrics, files = _mlflow_contents(MlflowClient(uri), run.run_id)
    assert metrics == pytest.approx(results)
    assert files == {str(p.relative_to(recorded.artifacts)) for p in recorded.artifacts.rglob("*") if p.is_file()}
    assert {T.PREDICTIONS_ARTIFACT, T.VAL_PREDICTIONS_ARTIFACT, "recalibration/temperature.json"} <= files
    # The selective-prediction metrics are logged as test/ece is, each with its interval.
    for name in ("ece", *SELECTIVE):
        key = T.test_metric(name)
        assert np.isfinite(metrics[key]) and metrics[f"{key}/{T.CI_LOW}"] <= metrics[f"{key}/{T.CI_HIGH}"], key
        assert metrics[key] == pytest.approx(trained.result.evaluation.scores.values[name]), key
    # Relog uploads the record through the same call: the copy holds what the published run holds.
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    copy = relog(tmp_path / "job", elsewhere, force=True)
    assert _mlflow_contents(MlflowClient(elsewhere), copy) == (metrics, files)


def test_the_console_line_shows_what_the_epoch_has():
    out = io.StringIO()
    with redirect_stdout(out):
        ConsoleLine(epochs=12).epoch(Epoch(2, {"loss": 0.5, "val_loss": 0.25, "val/brier": 0.1}, 3.04))
    assert out.getvalue() == "epoch  3/12  loss 0.5000  val loss 0.2500  3.0 s\n"


@pytest.mark.slow
def test_a_new_store_is_created_without_mlflow_info_lines(tmp_path, capfd):
    from xent_lab.tracking import Tracker

    Tracker(f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}", "exp").experiment_id()
    assert (tmp_path / "new" / "mlflow.db").exists()
    captured = capfd.readouterr()
    # MLflow would say "INFO mlflow.store.db.utils: Creating initial MLflow database tables..."
    assert (captured.out, captured.err) == ("", "")
