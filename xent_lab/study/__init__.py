"""Studies: Hydra sweeps grouped in MLflow as one parent run with one child run per job.

`callback.StudyCallback` runs in the launching process (registered in conf/config.yaml); `jobs` is
what each job does, in whatever process a launcher put it.
"""

from xent_lab.study.callback import StudyCallback
from xent_lab.study.jobs import (
    FAILED_FILE,
    STUDY_FILE,
    JobContext,
    StudyLaunch,
    clear_failed,
    config_hash,
    failed_jobs,
    finished_run,
    is_published,
    job_context,
    mark_failed,
    record_failure,
    reuse_finished,
    sweep_of,
)

__all__ = [
    "FAILED_FILE",
    "STUDY_FILE",
    "JobContext",
    "StudyCallback",
    "StudyLaunch",
    "clear_failed",
    "config_hash",
    "failed_jobs",
    "finished_run",
    "is_published",
    "job_context",
    "mark_failed",
    "record_failure",
    "reuse_finished",
    "sweep_of",
]
