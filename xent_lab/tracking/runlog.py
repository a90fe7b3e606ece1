"""One MLflow run's logging calls, each first written to the run's local record when it has one."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from matplotlib.figure import Figure
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from xent_lab.tracking.record import LocalRecord
from xent_lab.tracking.secrets import scrub

# MLflow accepts at most this many params per log_batch call.
PARAMS_PER_BATCH = 100


class RunLogger:
    """Logging calls for one MLflow run, each first written to the run's local record when it has one.

    With a record, a failed MLflow call (the server went away) does not stop training: the run goes
    on offline, `lost` says what failed, and the record keeps everything for `xent_lab.relog`.
    """

    def __init__(
        self,
        client: MlflowClient,
        run_id: str,
        experiment_id: str,
        record: LocalRecord | None = None,
        uri: str = "",
    ) -> None:
        self.uri = uri  # its password is kept out of messages
        self.client = client
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.record = record
        self.lost: str | None = None  # why MLflow stopped answering, once it has

    def _send(self, call: Callable[..., object], *args: object) -> None:
        if self.lost is not None:
            return
        try:
            call(*args)
        except Exception as exc:
            if self.record is None:
                raise
            self.lost = scrub(f"{type(exc).__name__}: {exc}".splitlines()[0][:500], self.uri)
            self.record.update(complete_in_mlflow=False)
            print(
                f"warning: MLflow stopped answering ({self.lost}); training goes on and everything is kept "
                f"in {self.record.folder}",
                file=sys.stderr,
                flush=True,
            )

    def log_params(self, params: Mapping[str, str]) -> None:
        if self.record is not None:
            self.record.params(params)
        items = [Param(key, value) for key, value in params.items()]
        for start in range(0, len(items), PARAMS_PER_BATCH):
            self._send(self.client.log_batch, self.run_id, [], items[start : start + PARAMS_PER_BATCH])

    def set_tags(self, tags: Mapping[str, str]) -> None:
        if self.record is not None:
            self.record.tags(tags)
        self._send(self.client.log_batch, self.run_id, [], [], [RunTag(key, str(value)) for key, value in tags.items()])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """All of `metrics` in one request (one round trip per epoch to a remote server)."""
        now = int(time.time() * 1000)
        if self.record is not None:
            self.record.metrics(metrics, step, now)
        self._send(
            self.client.log_batch, self.run_id, [Metric(key, float(value), now, step) for key, value in metrics.items()]
        )

    def log_text(self, text: str, artifact_file: str) -> None:
        if self.record is not None:
            self.record.text(text, artifact_file)
        self._send(self.client.log_text, self.run_id, text, artifact_file)

    def log_figure(self, figure: Figure, artifact_file: str) -> None:
        if self.record is not None:
            self.record.figure(figure, artifact_file)
        self._send(self.client.log_figure, self.run_id, figure, artifact_file)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if self.record is not None:
            self.record.file(path, artifact_path)
        self._send(self.client.log_artifact, self.run_id, str(path), artifact_path)
