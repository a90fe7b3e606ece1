"""The layout's rules, each checked here: what a package may import, what loads TensorFlow, module sizes,
and the one home of tag names. See README "Architecture".
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.e2e import ROOT

PACKAGE = ROOT / "xent_lab"
# Library layers: usable without the harness. They never import it.
LIBRARY = ("losses", "calibration", "heads", "data", "atomic", "errors")
HARNESS = ("training", "tracking", "study", "report", "train", "bench", "relog", "config", "stopping")
# Analysis and tracking run without TensorFlow (a report is rebuilt in a second, relog runs anywhere).
NO_KERAS = ("xent_lab.heads", "xent_lab.calibration", "xent_lab.report", "xent_lab.report.__main__", "xent_lab.relog")
MAX_LINES = 400


def modules(*parts: str) -> list[Path]:
    found = []
    for part in parts:
        path = PACKAGE / part
        found.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")])
    return found


def imported(path: Path) -> set[str]:
    """Every module name `path` imports, absolute (relative imports resolved against its package)."""
    names = set()
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def test_the_rule_checker_sees_imports_of_every_form(tmp_path):
    probe = PACKAGE / "calibration" / "metrics.py"
    assert "numpy" in imported(probe) and any(name.startswith("xent_lab.") for name in imported(probe))


@pytest.mark.parametrize("path", modules(*LIBRARY), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_library_layers_never_import_the_harness(path):
    forbidden = {f"xent_lab.{part}" for part in HARNESS}
    bad = sorted(name for name in imported(path) if any(name == f or name.startswith(f + ".") for f in forbidden))
    assert not bad, f"{path.relative_to(ROOT)} (a library layer) imports the harness: {bad}"


@pytest.mark.parametrize(
    "path", modules("calibration", "heads", "report", "tracking", "relog"), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_analysis_and_tracking_code_names_no_keras(path):
    bad = sorted(
        name
        for name in imported(path)
        if name.split(".")[0] in ("keras", "tensorflow")
        or name.startswith(("xent_lab.training", "xent_lab.losses", "xent_lab.objectives", "xent_lab.models"))
    )
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


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


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_over_400_lines(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


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
