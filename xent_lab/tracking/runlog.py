"""One MLflow run's logging calls, each first written to the run's local record when it has one."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from matplotlib.figure import Figure
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from xent_lab.tracking import tags as T
from xent_lab.tracking.lock import DEFAULT_LOCK_TIMEOUT_S, patiently
from xent_lab.tracking.record import LocalRecord
from xent_lab.tracking.secrets import scrub

# MLflow accepts at most this many params per log_batch call.
PARAMS_PER_BATCH = 100
Result = TypeVar("Result")


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
        lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
    ) -> None:
        self.uri = uri  # its password is kept out of messages; a local SQLite store's lock is waited for
        self.lock_timeout_s = lock_timeout_s
        self.client = client
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.record = record
        self.lost: str | None = None  # why MLflow stopped answering, once it has

    def _send(self, call: Callable[..., Result], *args: object) -> Result | None:
        if self.lost is not None:
            return None
        try:
            return patiently(call, *args, uri=self.uri, timeout_s=self.lock_timeout_s)
        except Exception as exc:
            if self.record is None:
                raise
            self.lost = scrub(f"{type(exc).__name__}: {exc}".splitlines()[0][:500], self.uri)
            self.record.update(complete_in_mlflow=False)
            print(
                f"warning: MLflow could not be written ({self.lost}); training goes on and everything is kept "
                f"in {self.record.folder}",
                file=sys.stderr,
                flush=True,
            )
            return None

    def call(self, log: Callable[[], Result]) -> Result | None:
        """An MLflow call that does not go through this client (a model flavour's `log_model`): survived like the
        others when MLflow is lost, and then skipped; returns its result, None once MLflow is lost."""
        return self._send(log)

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

    def log_metrics(
        self,
        metrics: Mapping[str, float],
        step: int = 0,
        model_id: str | None = None,
        dataset: Mapping[str, str] | None = None,
    ) -> None:
        """All of `metrics` in one request (one round trip per epoch to a remote server).

        With `model_id` they are also the logged model's metrics, measured on `dataset` (an input's fields).
        """
        now = int(time.time() * 1000)
        if self.record is not None:
            self.record.metrics(metrics, step, now)
        on = {"dataset_name": dataset["name"], "dataset_digest": dataset["digest"]} if dataset else {}
        self._send(
            self.client.log_batch,
            self.run_id,
            [Metric(key, float(value), now, step, model_id=model_id, **on) for key, value in metrics.items()],
        )

    def log_inputs(self, inputs: Sequence[Mapping[str, str]]) -> None:
        """Datasets the run read: each the fields of an `mlflow.entities.Dataset` and its `context`."""
        if self.record is not None:
            self.record.inputs(inputs)
        self._send(self._log_inputs, dataset_inputs(inputs))

    def _log_inputs(self, datasets: list) -> None:
        try:
            self.client.log_inputs(self.run_id, datasets)
        except MlflowException:
            # Jobs started together (a SLURM array) log the same dataset at once; the store checks, then
            # inserts, so one of them can lose the race on the dataset's key. The row exists on a second try.
            self.client.log_inputs(self.run_id, datasets)

    def log_text(self, text: str, artifact_file: str) -> None:
        if self.record is not None:
            self.record.text(text, artifact_file)
        self._send(self.client.log_text, self.run_id, text, artifact_file)

    def log_figure(self, figure: Figure, artifact_file: str) -> None:
        if self.record is None:
            self._send(self.client.log_figure, self.run_id, figure, artifact_file)
            return
        # Rendered once: a PNG takes about 0.5 s, a third of a quick run's time after training.
        rendered = self.record.figure(figure, artifact_file)
        folder = str(Path(artifact_file).parent)
        self._send(self.client.log_artifact, self.run_id, str(rendered), None if folder == "." else folder)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if self.record is not None:
            self.record.file(path, artifact_path)
        self._send(self.client.log_artifact, self.run_id, str(path), artifact_path)


def dataset_inputs(inputs: Sequence[Mapping[str, str]]) -> list[DatasetInput]:
    """Recorded inputs (dataset fields and context) -> MLflow's DatasetInput entities."""
    return [
        DatasetInput(
            Dataset(**{key: value for key, value in entry.items() if key != "context"}),
            [InputTag(T.DATASET_CONTEXT, entry["context"])],
        )
        for entry in inputs
    ]
