"""The layout's rules, one test per rule, each listing every violation: what a layer may import, what loads
TensorFlow, no import cycle, module sizes, and the one home of tag names. See README "Architecture".
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from tests.helpers.e2e import ROOT

PACKAGE = ROOT / "xent_lab"
# Library layers: usable without the harness. They never import it.
LIBRARY = ("losses", "calibration", "heads", "data", "atomic", "errors")
HARNESS = (
    "training",
    "record",
    "tracking",
    "study",
    "sweep",
    "report",
    "train",
    "bench",
    "relog",
    "config",
    "stopping",
)
# The sweep (the Hydra callback, launch, SLURM, progress) is above training: only the entry point imports it.
ABOVE_SWEEP = ("sweep", "train")
# Analysis and tracking run without TensorFlow (a report is rebuilt in a second, relog runs anywhere).
NO_KERAS = ("xent_lab.heads", "xent_lab.calibration", "xent_lab.report", "xent_lab.report.__main__", "xent_lab.relog")
MAX_LINES = 400


def modules(*parts: str) -> list[Path]:
    found = []
    for part in parts:
        path = PACKAGE / part
        found.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")])
    return found


def module_name(path: Path, root: Path = ROOT) -> str:
    """`xent_lab.study` for xent_lab/study/__init__.py, `xent_lab.study.jobs` for xent_lab/study/jobs.py."""
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_statements(path: Path) -> Iterator[tuple[str, list[str]]]:
    """(module, names) of every import in `path`, at module level or inside a function; relative imports
    resolved against its package. `import a.b` gives ("a.b", []), `from a import b, c` gives ("a", ["b", "c"])."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            yield base, [alias.name for alias in node.names]


def imported(path: Path) -> set[str]:
    """Every module name `path` imports, absolute, and `module.name` for each name taken from a module."""
    names = set()
    for base, taken in import_statements(path):
        names.add(base)
        names.update(f"{base}.{name}" for name in taken)
    return names


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports. `from a import b` points at the module a.b if there is one,
    else at a; a package's own __init__, run on the way to its submodules, is not an edge."""
    paths = {module_name(path, package.parent): path for path in package.rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        targets = set()
        for base, taken in import_statements(path):
            for candidate in [f"{base}.{item}" for item in taken] or [base]:
                while candidate and candidate not in paths:
                    candidate = candidate.rpartition(".")[0]
                if candidate:
                    targets.add(candidate)
        graph[name] = targets - {name}
    return graph


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle, each listed once, starting at its smallest module."""
    found = []

    def walk(start: str, path: list[str]) -> None:
        for target in sorted(graph.get(path[-1], ())):
            if target == start:
                found.append(list(path))
            elif target > start and target not in path:
                walk(start, [*path, target])

    for start in sorted(graph):
        walk(start, [start])
    return found


def test_the_rule_checker_sees_imports_of_every_form():
    probe = PACKAGE / "calibration" / "metrics.py"
    assert "numpy" in imported(probe) and any(name.startswith("xent_lab.") for name in imported(probe))
    graph = import_graph()
    # A function-level import (the report, only when a study ends) and a relative one count as edges.
    assert "xent_lab.report" in graph["xent_lab.sweep.callback"]
    assert "xent_lab.study.jobs" in graph["xent_lab.study"]


def test_the_cycle_finder_lists_every_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "b"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"], ["b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def within(name: str, *modules: str) -> bool:
    """Whether `name` is one of `modules` or inside one."""
    return any(name == module or name.startswith(module + ".") for module in modules)


def violations(paths: list[Path], forbidden: Callable[[str], bool]) -> list[str]:
    """`path: [names]` for each module of `paths` that imports a forbidden name."""
    found = {path: sorted(name for name in imported(path) if forbidden(name)) for path in paths}
    return [f"{path.relative_to(ROOT)}: {names}" for path, names in found.items() if names]


def test_library_layers_never_import_the_harness():
    bad = violations(modules(*LIBRARY), lambda name: within(name, *(f"xent_lab.{part}" for part in HARNESS)))
    assert not bad, "library layers import the harness:\n" + "\n".join(bad)


def test_the_sweep_layer_is_above_training():
    """training, study (each job's part) and everything else below the sweep never import xent_lab.sweep."""
    below = [path for path in sorted(PACKAGE.rglob("*.py")) if path not in modules(*ABOVE_SWEEP)]
    bad = violations(below, lambda name: within(name, "xent_lab.sweep"))
    assert not bad, "modules below the sweep import it:\n" + "\n".join(bad)


def test_analysis_and_tracking_code_names_no_keras():
    keras_side = (
        "keras",
        "tensorflow",
        "xent_lab.training",
        "xent_lab.losses",
        "xent_lab.objectives",
        "xent_lab.models",
    )
    bad = violations(modules("calibration", "heads", "report", "tracking", "relog"), lambda n: within(n, *keras_side))
    assert not bad, "analysis and tracking code that names Keras:\n" + "\n".join(bad)


def test_training_imports_no_mlflow():
    bad = violations(modules("training"), lambda name: within(name, "mlflow"))
    assert not bad, "training modules that import mlflow:\n" + "\n".join(bad)


def test_the_package_has_no_import_cycle():
    found = cycles(import_graph())
    assert not found, f"{len(found)} import cycle(s):\n" + "\n".join(" -> ".join([*c, c[0]]) for c in found)


@pytest.mark.subprocess
def test_importing_analysis_and_relog_loads_neither_tensorflow_nor_keras():
    """What actually ends up in sys.modules, transitive imports included (mlflow, matplotlib, scipy)."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(NO_KERAS)!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == []
    # The check can fail: the training harness does load Keras.
    code = "import sys, xent_lab.training; print('keras' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.split()[-1] == "True", done.stderr[-2000:]


def test_no_module_is_over_400_lines():
    sizes = {path: len(path.read_text().splitlines()) for path in sorted(PACKAGE.rglob("*.py"))}
    bad = [f"{path.relative_to(ROOT)}: {lines} lines" for path, lines in sizes.items() if lines > MAX_LINES]
    assert not bad, f"modules over {MAX_LINES} lines:\n" + "\n".join(bad)


def test_tag_names_have_one_home():
    """MLflow tag names are spelled only in xent_lab/tracking/tags.py; everyone else imports them."""
    tags_module = PACKAGE / "tracking" / "tags.py"
    spelled = []
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "tools").rglob("*.py"), *(ROOT / "tests" / "helpers").rglob("*.py")]:
        if path == tags_module:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                value = node.value
                if (
                    value.startswith(("xent.", "mlflow.parentRunId", "mlflow.note", "data_sha256."))
                    or value == "failure_reason"
                ):
                    spelled.append(f"{path.relative_to(ROOT)}:{node.lineno}: {value!r}")
    assert not spelled, "tag names spelled outside tracking/tags.py:\n" + "\n".join(spelled)


def test_developer_tooling_is_not_in_the_package():
    for name in ("screenshots.py", "mlflow_server.py"):
        assert not (PACKAGE / name).exists(), name
    assert not any("selenium" in imported(path) for path in PACKAGE.rglob("*.py"))
