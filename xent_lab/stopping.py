"""Stop signals: SIGINT, SIGTERM and SLURM's SIGUSR2 set a flag that training checks at safe points.

A handler that raised KeyboardInterrupt could be lost (a library's bare `except:` swallowed it, and the run
FINISHED) or land inside TensorFlow's graph code (an `AssertionError: Nesting violated`, the run FAILED). So the
handler only records the signal; `check()` raises `Stopped` where stopping is safe: between batches
(`xent_lab.training.callbacks.StopOnSignal`) and at the pipeline's phase boundaries. `Stopped` is a
KeyboardInterrupt, so the run ends KILLED (`Tracker.run`) with the signal as its reason.

Imports nothing heavy: `xent_lab.train` installs the handler before it imports TensorFlow, MLflow or Hydra.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

# SIGUSR2 is SLURM's warning, `hydra.launcher.signal_delay_s` before `timeout_min`, that submitit asks for; its
# own handler would fail the run (or requeue the job to start it over), so a job nearing its limit ends KILLED.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)


class Stopped(KeyboardInterrupt):
    """Raised at a safe point after a stop signal; its message is the run's `failure_reason`."""


_received: int | None = None
_jobs_running = 0
_hooks: list[Callable[[int], None]] = []


def _handle(signum: int, frame: FrameType | None) -> None:
    global _received
    worker = multiprocessing.parent_process()
    if _jobs_running == 0 and worker is not None and os.getppid() != worker.pid:
        # An idle pool worker whose launch is gone: no job to stop and no one to hand one to, so it goes now.
        os._exit(128 + signum)
    if _received is None:
        _received = signum
    for hook in list(_hooks):
        hook(signum)


def install() -> None:
    """Handle the stop signals from now on. SIGINT is set explicitly too: a process started in the background by
    a non-interactive shell inherits SIGINT as ignored, and Ctrl-C would then do nothing."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _handle)


def requested() -> int | None:
    """The first stop signal received, or None."""
    return _received


def reason() -> str:
    """Why the process stops, for a run's `failure_reason`: e.g. `interrupted by SIGTERM`."""
    name = signal.Signals(_received).name if _received is not None else "a stop request"
    return f"interrupted by {name}"


def check() -> None:
    """Raise `Stopped` if a stop signal came: call it where stopping is safe."""
    if _received is not None:
        raise Stopped(reason())


def on_stop(hook: Callable[[int], None]) -> None:
    """Call `hook(signum)` from the handler at each stop signal (a launch passes it on to its workers)."""
    _hooks.append(hook)


@contextmanager
def job() -> Iterator[None]:
    """Marks a job running in this process: a pool worker then stops it cleanly instead of exiting at once."""
    global _jobs_running
    _jobs_running += 1
    try:
        yield
    finally:
        _jobs_running -= 1


def forward_to_workers(signum: int) -> None:
    """Pass a stop signal on to this process's pool workers (the joblib launcher's), so their jobs stop too."""
    for child in multiprocessing.active_children():
        try:
            os.kill(child.pid, signum)
        except (ProcessLookupError, TypeError):  # ended meanwhile, or not started yet (no pid)
            pass
