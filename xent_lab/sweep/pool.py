"""Joblib launches (`hydra/launcher=joblib`) whose worker pool breaks, ended cleanly.

When a worker process dies (the kernel's OOM killer, `kill -9`), loky, joblib's pool, kills every other worker
with SIGKILL and raises `TerminatedWorkerError`: the jobs running then end with their runs RUNNING, the jobs not
started never run, and the launch would end with a traceback. loky offers no way to keep the other workers, so
the launch catches the error here and goes on to the study callback's end (`broken` says why), which ends the
orphaned runs KILLED, names them in one line, and exits 1. A relaunch trains what did not finish.
"""

from __future__ import annotations

from collections.abc import Sequence

_broken: str | None = None  # why the pool broke, once it has


def broken() -> str | None:
    """Why this launch's joblib pool broke (`a joblib worker died (...)`), or None."""
    return _broken


def _why(exc: BaseException) -> str:
    """loky's message names the workers' exit codes on one of its lines, e.g. `{SIGKILL(-9)}`."""
    codes = [line for line in str(exc).splitlines() if "exit codes" in line]
    return f"a joblib worker died ({codes[0].strip().rstrip('.') if codes else type(exc).__name__})"


def make_pool_failures_clean() -> None:
    """Make hydra-joblib-launcher's launches in this process end cleanly when a worker dies (once per process).

    A wrapper of its `launch`, as `xent_lab.sweep.slurm` does for submitit's: Hydra takes launchers only from the
    `hydra_plugins` package."""
    from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    if getattr(JoblibLauncher.launch, "clean", False):
        return
    launch = JoblibLauncher.launch

    def clean(self: JoblibLauncher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
        global _broken
        try:
            return launch(self, job_overrides, initial_job_idx)
        except TerminatedWorkerError as exc:
            _broken = _why(exc)
            return []  # no job's result: the runs in MLflow say what happened

    clean.clean = True
    JoblibLauncher.launch = clean
