"""The experiment apart from its record: training loads no MLflow, returns a `RunResult` and hands its epochs to a
sink; `publish` and relog write a run through the same upload; the console stays compact and quiet."""

from __future__ import annotations

import ast
import io
from collections import deque
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.e2e import QUICK, ROOT, compose_config
from xent_lab.training.events import ConsoleLine, Epoch

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
    return workdir, sink, result, out.getvalue()


@pytest.mark.slow
def test_a_training_hands_each_epoch_to_the_sink_and_writes_no_store(trained):
    workdir, sink, result, _ = trained
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
    _, _, result, _ = trained
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


@pytest.mark.slow
def test_the_console_shows_one_compact_line_per_epoch(trained):
    _, sink, _, printed = trained
    lines = printed.splitlines()
    assert [line.split("  ")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    first = sink.epochs[0].values
    assert lines[0] == (
        f"epoch 1/2  loss {first['loss']:.4f}  accuracy {first['accuracy']:.4f}  val loss {first['val_loss']:.4f}  "
        f"val accuracy {first['val_accuracy']:.4f}  val ECE {first['val/ece']:.4f}  {sink.epochs[0].seconds:.1f} s"
    )
    assert max(len(line) for line in lines) < 120


def test_the_console_line_shows_what_the_epoch_has():
    out = io.StringIO()
    with redirect_stdout(out):
        ConsoleLine(epochs=12).epoch(Epoch(2, {"loss": 0.5, "val_loss": 0.25, "val/brier": 0.1}, 3.04))
    assert out.getvalue() == "epoch  3/12  loss 0.5000  val loss 0.2500  3.0 s\n"


def test_a_new_store_is_created_without_mlflow_info_lines(tmp_path, capfd):
    from xent_lab.tracking import Tracker

    Tracker(f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}", "exp").experiment_id()
    assert (tmp_path / "new" / "mlflow.db").exists()
    captured = capfd.readouterr()
    # MLflow would say "INFO mlflow.store.db.utils: Creating initial MLflow database tables..."
    assert (captured.out, captured.err) == ("", "")
