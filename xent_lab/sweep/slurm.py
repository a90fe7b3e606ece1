"""SLURM launches (`hydra/launcher=slurm`, hydra-submitit-launcher) that end cleanly on a stop signal.

It submits a sweep as one job array and waits for every job's result. A stop signal to the launch process (Ctrl-C,
SIGTERM) reaches that process only, so the array's jobs would run on, and the results that cancelled jobs never
write would end the launch with a traceback and its parent run RUNNING. Here a stop cancels the launch's arrays
(`scancel`: a running job gets SIGTERM and ends its run KILLED, a pending one never starts), and the missing results
of cancelled jobs are then expected: the study callback ends the parent run KILLED, counts the jobs not run, and
the launch exits 130.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from xent_lab import stopping

# submitit's folder of one array task: `<array job id>_<task index>`.
_ARRAY_TASK = re.compile(r"(\d+)_\d+")


def array_job_ids(submitit_root: Path) -> list[str]:
    """The array job ids of the tasks submitted from `submitit_root` (submitit's `.submitit/` folder)."""
    found = (_ARRAY_TASK.fullmatch(path.name) for path in submitit_root.glob("*") if path.is_dir())
    return sorted({match.group(1) for match in found if match})


def cancel_arrays(submitit_root: Path) -> list[str]:
    """`scancel` the arrays submitted from `submitit_root`; their ids."""
    ids = array_job_ids(submitit_root)
    if ids:
        done = subprocess.run(["scancel", *ids], capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0:
            print(f"scancel {' '.join(ids)} failed: {done.stderr.strip()}", file=sys.stderr, flush=True)
    return ids


class _Cancelled(KeyboardInterrupt):
    """Raised from the stop handler into the launch's wait for results, once its jobs are cancelled."""


def make_launches_stoppable() -> None:
    """Make hydra-submitit-launcher's launches in this process end cleanly on a stop signal (once per process).

    A wrapper of its `launch` rather than a launcher of our own: Hydra takes launchers only from the
    `hydra_plugins` package, and a second package of that name beside `xent_lab` is not worth one method.
    """
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher

    if getattr(BaseSubmititLauncher.launch, "stoppable", False):
        return
    launch = BaseSubmititLauncher.launch

    def stoppable(self: BaseSubmititLauncher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
        from submitit.core.utils import UncompletedJobError

        if stopping.requested() is not None:
            return []  # stopped before this batch was submitted: nothing to run
        # "${hydra.sweep.dir}/.submitit/%j": the tasks' folders are created beside each other at submission.
        root = Path(self.params["submitit_folder"]).parent
        waiting = True

        def cancel(signum: int) -> None:
            cancel_arrays(root)
            if waiting:
                # The launch only polls the queue and the jobs' result files here (no TensorFlow, no run), and
                # without SLURM accounting it would wait forever for the results cancelled jobs never write.
                raise _Cancelled

        stopping.on_stop(cancel)
        try:
            return launch(self, job_overrides, initial_job_idx)
        except (UncompletedJobError, _Cancelled):
            if stopping.requested() is None:
                raise
            # The jobs that ran end their runs KILLED themselves; the report reads them from MLflow.
            print(f"{stopping.reason()}: the SLURM jobs of this launch were cancelled", file=sys.stderr, flush=True)
            return []
        finally:
            waiting = False

    stoppable.stoppable = True
    BaseSubmititLauncher.launch = stoppable
