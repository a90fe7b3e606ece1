"""The console scripts `xent-train`, `xent-report`, `xent-relog` and `xent-calibrate` run the `python -m` commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@pytest.mark.subprocess
@pytest.mark.parametrize(
    "script,args,code,expected",
    [
        ("xent-relog", ["/nonexistent/job"], 2, "no run record in /nonexistent/job"),
        ("xent-report", ["no_such_study", "--tracking-uri", "sqlite:///{tmp}/mlflow.db"], 2, "no MLflow store at"),
        ("xent-train", ["trainer.epochs=0"], 2, "error: invalid config value trainer.epochs=0: expected a positive"),
        ("xent-calibrate", ["0123abcd", "--tracking-uri", "sqlite:///{tmp}/mlflow.db"], 2, "error:"),
    ],
)
def test_console_script_runs_its_command(tmp_path, script, args, code, expected):
    path = BIN / script
    assert path.exists(), f"{script} is not installed: run `make install` (pyproject.toml [project.scripts])"
    done = subprocess.run(
        [str(path), *(arg.format(tmp=tmp_path) for arg in args)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == code, done.stderr[-2000:]
    # The one-line error of every tool (xent_lab.cli); the in-process tests check that nothing was written.
    assert expected in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
