"""The MLflow sink: each epoch's values logged as the run trains, so the UI shows it live."""

from __future__ import annotations

import time

from xent_lab.tracking import RunLogger
from xent_lab.tracking import tags as T
from xent_lab.training.events import Divergence, Epoch


class MlflowSink:
    """Logs each epoch as one batch under the project's metric names (`loss` -> `train/loss`), with its wall time
    (`perf/epoch_seconds`), then the run's heartbeat (`xent.heartbeat`, unix time: `xent-runs close-stale
    --older-than` reads it); a divergence as `train/diverged_step` and the tag `xent.diverged=true`. Through the
    run's `RunLogger`: its local record first, then MLflow."""

    def __init__(self, run: RunLogger) -> None:
        self.run = run

    def epoch(self, event: Epoch) -> None:
        metrics = {T.metric_name(key): value for key, value in event.values.items()}
        metrics[T.EPOCH_SECONDS] = event.seconds
        self.run.log_metrics(metrics, step=event.epoch)
        self.run.set_tags({T.HEARTBEAT: f"{time.time():.0f}"})

    def diverged(self, divergence: Divergence) -> None:
        self.run.log_metrics({T.DIVERGED_STEP: divergence.step}, step=divergence.epoch)
        self.run.set_tags({T.DIVERGED: "true"})
