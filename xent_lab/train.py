"""`python -m xent_lab.train [overrides]` (also `xent-train`): train one model from the Hydra config.

The entry point only: Hydra, signals and exit codes. The job itself is `xent_lab.record.run`: the training
(`xent_lab.training.train`) in its MLflow run.
"""

from __future__ import annotations

import time

# Taken before the heavy imports below, for `perf/startup_seconds` (launch to first training step).
LAUNCHED = time.perf_counter()

import sys

from xent_lab import stopping

if __name__ == "__main__" or sys.argv[0].endswith("xent-train"):
    # The program (not a test or a pool worker importing it): before the heavy imports, so that a stop signal
    # during start-up is kept, not fatal.
    stopping.install()

from xent_lab import console

console.import_tensorflow()  # first: TensorFlow's C++ start-up lines are filtered (see xent_lab.console)

import gc
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

import xent_lab.sweep  # noqa: F401  (the Hydra callback's package; it registers `${launch_id:}`, in the run folders)
from xent_lab import cli, study
from xent_lab.errors import NotApplicable, XentError
from xent_lab.hydra_node import check_hydra_node, composed_hydra_node
from xent_lab.record import run
from xent_lab.tracking import resolve_uri, scrub, tags

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")

# Exit codes of a single run.
OK, USER_ERROR, INTERRUPTED = cli.OK, cli.USER_ERROR, 130


def main() -> None:
    """`xent-train` and `python -m xent_lab.train`: the config's `hydra` node checked first (Hydra runs the code it
    names before the job: `xent_lab.hydra_node`), then Hydra runs the job, or the sweep's jobs."""
    # What is imported by now (TensorFlow, Keras, MLflow: about half a million objects) lives as long as the
    # process; out of the cyclic collector's reach, the collection each sweep job's `keras.backend.clear_session`
    # runs takes milliseconds instead of a second.
    gc.freeze()
    try:
        node = composed_hydra_node(sys.argv[1:], Path(__file__).parent, CONF_DIR, "config")
    except Exception:  # a config Hydra cannot compose: Hydra reports it below, as it always has
        node = None
    if node is not None:
        try:
            check_hydra_node(node)
        except XentError as exc:
            sys.exit(cli.error(exc))
    job()


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def job(cfg: DictConfig) -> float | None:
    """Exit codes of a single run: 0 done, 2 a user error (the message says how to fix it), 130 interrupted.

    In a sweep a failed job is reported and the sweep goes on; the study callback sets the exit code.
    """
    hydra_cfg = HydraConfig.get()
    sweeping = hydra_cfg.mode == RunMode.MULTIRUN
    uri = resolve_uri(cfg.tracking.uri)  # only to keep its password out of messages
    stopping.install()  # again: submitit sets its own handlers after it has imported this module
    output_dir = Path(hydra_cfg.runtime.output_dir)
    if sweeping:
        study.clear_failed(output_dir)
    try:
        with stopping.job():
            results = run(cfg, list(hydra_cfg.overrides.task), output_dir, LAUNCHED)
        if not sweeping and stopping.requested() is not None:
            print(f"{stopping.reason()} after the run had finished", file=sys.stderr, flush=True)
            sys.exit(INTERRUPTED)
        # What a sweeper optimises; none when training diverged (trainer.on_nonfinite=record).
        return results.get(cfg.study.get("optimized_metric") or tags.TEST_ACCURACY)
    except KeyboardInterrupt:
        print(
            f"{stopping.reason()}: training stopped; a run already started was ended as KILLED",
            file=sys.stderr,
            flush=True,
        )
        if sweeping:
            # The sweep goes on: its later jobs see the stop and return at once (not run), and the launch ends
            # the parent run KILLED and exits 130. submitit, too, learns that a job ended only from the result
            # it writes when the job returns. The report lists the KILLED run, and a relaunch trains it again.
            print(f"job {hydra_cfg.job.num} stopped", file=sys.stderr, flush=True)
            return None
        sys.exit(INTERRUPTED)
    except NotApplicable as exc:
        if sweeping:  # e.g. loss.gamma=flsd53 crossed with loss.impl=builtin: nothing to run, nothing failed
            print(f"job {hydra_cfg.job.num} not applicable, skipped: {scrub(str(exc), uri)}", flush=True)
            return None
        sys.exit(cli.error(exc, uri))
    except XentError as exc:
        cli.error(exc, uri)
        if not sweeping:
            sys.exit(USER_ERROR)
        reason = scrub(str(exc), uri)
    except Exception as exc:
        if not sweeping:
            raise
        print(scrub(traceback.format_exc(), uri), file=sys.stderr, flush=True)
        reason = scrub(f"{type(exc).__name__}: {exc}", uri)
    study.record_failure(cfg, reason)
    study.mark_failed(output_dir, reason)
    print(f"job {hydra_cfg.job.num} failed; the sweep goes on", file=sys.stderr, flush=True)
    return None


if __name__ == "__main__":
    main()
