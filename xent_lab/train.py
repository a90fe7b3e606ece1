"""`python -m xent_lab.train [overrides]` (also `xent-train`): train one model from the Hydra config.

The entry point only: Hydra, signals and exit codes. The job itself is `xent_lab.training.train`.
"""

from __future__ import annotations

import time

# Taken before the heavy imports below, for `perf/startup_seconds` (launch to first training step).
LAUNCHED = time.perf_counter()

from xent_lab import console

console.import_tensorflow()  # first: TensorFlow's C++ start-up lines are filtered (see xent_lab.console)

import signal
import sys
import traceback
from pathlib import Path
from types import FrameType

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from xent_lab import study
from xent_lab.errors import NotApplicable, XentError
from xent_lab.tracking import resolve_uri, scrub, tags
from xent_lab.training import train

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")

# Exit codes of a single run.
OK, USER_ERROR, INTERRUPTED = 0, 2, 130


# Signals that stop a job. SIGUSR2 is SLURM's warning, `hydra.launcher.signal_delay_s` before `timeout_min`, that
# submitit asks for; its own handler would fail the run (or requeue the job to start it over), so a job nearing its
# time limit ends KILLED too. SIGALRM is the retry below.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2, signal.SIGALRM)
# A library's bare `except:` can swallow the KeyboardInterrupt (Keras' checkpoint saving has one), so it is raised
# again this many seconds later until `main` has it. A repeat within that time is the same stop (SLURM sends
# SIGTERM twice at the time limit) and is ignored: raised again, it would break off the run's ending.
STOP_RETRY_S = 5.0
_stop_raised_at: float | None = None


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM (a scheduler or `kill`) ends the run as KILLED, like Ctrl-C, instead of leaving it RUNNING.
    # SIGINT is set explicitly too: a process started in the background by a non-interactive shell
    # inherits SIGINT as ignored, and Python then never raises KeyboardInterrupt.
    global _stop_raised_at
    now = time.monotonic()
    if signum != signal.SIGALRM and _stop_raised_at is not None and now - _stop_raised_at < STOP_RETRY_S:
        return  # the same stop again
    _stop_raised_at = now
    signal.setitimer(signal.ITIMER_REAL, STOP_RETRY_S)  # SIGALRM: the retry, cancelled once `main` has the stop
    raise KeyboardInterrupt


def _job_process(launcher: DictConfig) -> bool:
    """Whether the launcher runs each job in a process of its own and waits for its result (submitit, SLURM)."""
    return "submitit" in str(launcher.get("_target_", ""))


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Exit codes of a single run: 0 done, 2 a user error (the message says how to fix it), 130 interrupted.

    In a sweep a failed job is reported and the sweep goes on; the study callback sets the exit code.
    """
    hydra_cfg = HydraConfig.get()
    sweeping = hydra_cfg.mode == RunMode.MULTIRUN
    uri = resolve_uri(cfg.tracking.uri)  # only to keep its password out of messages
    for signum in STOP_SIGNALS:
        signal.signal(signum, _raise_keyboard_interrupt)
    try:
        results = train(cfg, list(hydra_cfg.overrides.task), Path(hydra_cfg.runtime.output_dir), LAUNCHED)
        return results[tags.TEST_ACCURACY]
    except KeyboardInterrupt:
        signal.setitimer(signal.ITIMER_REAL, 0)
        print("interrupted: training stopped; a run already started was ended as KILLED", file=sys.stderr, flush=True)
        if sweeping and _job_process(hydra_cfg.launcher):
            # submitit learns that a job ended from the result it writes when the job returns: without one the
            # launch fails (or, without SLURM accounting, waits forever). Returned, the sweep goes on, the
            # report lists the KILLED run, and a relaunch trains it again.
            print(f"job {hydra_cfg.job.num} stopped; the sweep goes on", file=sys.stderr, flush=True)
            return None
        sys.exit(INTERRUPTED)
    except NotApplicable as exc:
        if sweeping:  # e.g. loss.gamma=flsd53 crossed with loss.impl=builtin: nothing to run, nothing failed
            print(f"job {hydra_cfg.job.num} not applicable, skipped: {scrub(str(exc), uri)}", flush=True)
            return None
        print(f"error: {scrub(str(exc), uri)}", file=sys.stderr, flush=True)
        sys.exit(USER_ERROR)
    except XentError as exc:
        print(f"error: {scrub(str(exc), uri)}", file=sys.stderr, flush=True)
        if not sweeping:
            sys.exit(USER_ERROR)
        study.record_failure(cfg, scrub(str(exc), uri))
    except Exception as exc:
        if not sweeping:
            raise
        print(scrub(traceback.format_exc(), uri), file=sys.stderr, flush=True)
        study.record_failure(cfg, scrub(f"{type(exc).__name__}: {exc}", uri))
    print(f"job {hydra_cfg.job.num} failed; the sweep goes on", file=sys.stderr, flush=True)
    return None


if __name__ == "__main__":
    main()
