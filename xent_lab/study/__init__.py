"""A study's jobs: what each job of a Hydra sweep does, in whatever process a launcher put it (see `jobs`).

Below training: `xent_lab.training` reads the job's context, hash and run name from here. The sweep itself
(the Hydra callback in the launching process, launch checks, SLURM, progress) is `xent_lab.sweep`, above it.
"""

from xent_lab.study.jobs import (
    FAILED_FILE,
    STUDY_FILE,
    JobContext,
    StudyLaunch,
    clear_failed,
    config_hash,
    failed_jobs,
    is_published,
    job_context,
    mark_failed,
    published_report_dir,
    record_failure,
    record_reuse,
    reusable_run,
    run_name,
    sweep_of,
)
from xent_lab.study.sources import CONFIG_FILES, check_config_files, record_config_files

__all__ = [
    "CONFIG_FILES",
    "check_config_files",
    "record_config_files",
    "FAILED_FILE",
    "STUDY_FILE",
    "JobContext",
    "StudyLaunch",
    "clear_failed",
    "config_hash",
    "failed_jobs",
    "reusable_run",
    "is_published",
    "job_context",
    "mark_failed",
    "published_report_dir",
    "record_failure",
    "record_reuse",
    "run_name",
    "sweep_of",
]
