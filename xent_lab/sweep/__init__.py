"""The sweep: what runs in the process that launches a Hydra multirun, above training.

`callback.StudyCallback` (registered in conf/config.yaml) prepares the store, opens a named study's parent run
and builds its report; `launch` checks every job before anything exists; `slurm` makes SLURM launches stoppable;
`progress` prints one line per finished job. What each job does is `xent_lab.study`, below training.
"""

from xent_lab.sweep.callback import StudyCallback

__all__ = ["StudyCallback"]
