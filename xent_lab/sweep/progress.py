"""A study's progress: one line per finished job with its position and an estimate of the time left,
e.g. `job 12/33 done (mnist-focal-custom-s1, 41 s); about 9 min left`.

Counted by the launching process, which runs the jobs itself with Hydra's default launcher. With a
launcher that runs them elsewhere (joblib workers, SLURM) the jobs end in other processes, each with its
own copy of the callback, and no line is printed: a copy knows only its own jobs.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

from hydra.core.override_parser.overrides_parser import OverridesParser


def sweep_size(sweep: dict[str, str]) -> int:
    """How many jobs a sweep has: the product of the number of values of each swept key."""
    overrides = OverridesParser.create().parse_overrides([f"{key}={value}" for key, value in sweep.items()])
    return math.prod(len(list(o.sweep_string_iterator())) if o.is_sweep_override() else 1 for o in overrides)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass
class Progress:
    """Jobs done out of `total`, timed from the launch; only the launching process (`pid`) reports."""

    total: int
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    pid: int = field(default_factory=os.getpid)
    job_started: float | None = None

    def reports_here(self) -> bool:
        return os.getpid() == self.pid

    def start_job(self) -> None:
        self.job_started = time.monotonic()

    def finish_job(self, name: str) -> str:
        """The line for the job that just ended: its position, its time, and the time left at the mean pace."""
        now = time.monotonic()
        self.done += 1
        took = now - (self.job_started if self.job_started is not None else self.started)
        left = self.total - self.done
        estimate = f"about {_duration((now - self.started) / self.done * left)} left" if left > 0 else "all done"
        return f"job {self.done}/{self.total} done ({name}, {took:.0f} s); {estimate}"
