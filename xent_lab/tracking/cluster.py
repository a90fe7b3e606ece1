"""The SLURM job a run ran in, for its tags: read from the environment SLURM gives the job's processes."""

from __future__ import annotations

import os
from collections.abc import Mapping

from xent_lab.tracking import tags as T


def slurm_tags(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """`slurm_job_id`, and for an array task its array job and index; empty outside a SLURM job.

    An array task's id is `<array job id>_<index>`, as squeue shows it and scancel and scontrol take it (and as
    submitit names the task's log folder): its numeric SLURM_JOB_ID is no handle, the last task's even names the
    whole array.
    """
    job, array, index = (environ.get(name) for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"))
    if array and index:
        return {T.SLURM_JOB_ID: f"{array}_{index}", T.SLURM_ARRAY_JOB_ID: array, T.SLURM_ARRAY_TASK_ID: index}
    return {T.SLURM_JOB_ID: job} if job else {}
