"""One MLflow run's writes: each first into the run's local record when it has one, then to MLflow."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from xent_lab.tracking import tags as T
from xent_lab.tracking.lock import DEFAULT_LOCK_TIMEOUT_S, patiently
from xent_lab.tracking.record import Contents, LocalRecord, RecordError, artifact_folder, metric_values
from xent_lab.tracking.secrets import one_line

# MLflow accepts at most this many params, and this many metric values, per log_batch call.
PARAMS_PER_BATCH, METRICS_PER_BATCH = 100, 1000
Result = TypeVar("Result")


class RunLogger:
    """Writes to one MLflow run, each first into the run's local record when it has one (`write`).

    `upload` sends what a record already holds: the finished run (`xent_lab.record.publish`) and a re-logged
    record (`xent_lab.tracking.relog`) go to MLflow through it. With a record, a failed MLflow call (the server
    went away) does not stop training: the run goes on offline, `lost` says what failed, and the record keeps
    everything for `xent_lab.relog`.
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
            self.lost = f"{type(exc).__name__}: {one_line(exc, self.uri, limit=500)}"
            try:
                self.record.update(complete_in_mlflow=False)
            except RecordError:
                pass  # the record's disk is full too: the error that ends the run says so, not this one
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

    def write(
        self, contents: Contents, model_id: str | None = None, test_input: Mapping[str, str] | None = None
    ) -> None:
        """The one way a run is written: into its local record first, the source of truth, then to MLflow."""
        if self.record is not None:
            self.record.add(contents)
        self.upload(contents, model_id, test_input)

    def upload(
        self, contents: Contents, model_id: str | None = None, test_input: Mapping[str, str] | None = None
    ) -> None:
        """Send `contents` to MLflow only: what the record holds already (`publish`), or a whole record (relog).

        With `model_id` the metrics are also the logged model's, the `test/` ones measured on `test_input` (the
        test dataset's fields): MLflow keeps a metric's dataset only on a logged model's metrics.
        """
        params = [Param(key, value) for key, value in contents.params.items()]
        for start in range(0, len(params), PARAMS_PER_BATCH):
            self._send(self.client.log_batch, self.run_id, [], params[start : start + PARAMS_PER_BATCH])
        if contents.tags:
            tags = [RunTag(key, str(value)) for key, value in contents.tags.items()]
            self._send(self.client.log_batch, self.run_id, [], [], tags)
        if contents.inputs:
            self._send(self._log_inputs, dataset_inputs(contents.inputs))
        metrics = [_metric(value, model_id, test_input) for value in contents.metrics]
        for start in range(0, len(metrics), METRICS_PER_BATCH):
            self._send(self.client.log_batch, self.run_id, metrics[start : start + METRICS_PER_BATCH])
        for path, folder in contents.files:
            self._send(self.client.log_artifact, self.run_id, str(path), folder)

    def log_params(self, params: Mapping[str, str]) -> None:
        self.write(Contents(params=dict(params)))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.write(Contents(tags={key: str(value) for key, value in tags.items()}))

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """All of `metrics` in one request (one round trip per epoch to a remote server)."""
        self.write(Contents(metrics=metric_values(metrics, step, int(time.time() * 1000))))

    def log_inputs(self, inputs: Sequence[Mapping[str, str]]) -> None:
        """Datasets the run read: each the fields of an `mlflow.entities.Dataset` and its `context`."""
        self.write(Contents(inputs=[dict(entry) for entry in inputs]))

    def _log_inputs(self, datasets: list) -> None:
        try:
            self.client.log_inputs(self.run_id, datasets)
        except MlflowException:
            # Jobs started together (a SLURM array) log the same dataset at once; the store checks, then
            # inserts, so one of them can lose the race on the dataset's key. The row exists on a second try.
            self.client.log_inputs(self.run_id, datasets)

    def log_text(self, text: str, artifact_file: str) -> None:
        if self.record is None:  # a run without a record (xent_lab.calibrate adds to a finished run)
            self._send(self.client.log_text, self.run_id, text, artifact_file)
            return
        self.upload(Contents(files=[(self.record.text(text, artifact_file), artifact_folder(artifact_file))]))


def _metric(value: Mapping, model_id: str | None, test_input: Mapping[str, str] | None) -> Metric:
    on = {}
    if test_input is not None and str(value["key"]).startswith(T.TEST_PREFIX):
        on = {"dataset_name": test_input["name"], "dataset_digest": test_input["digest"]}
    return Metric(value["key"], float(value["value"]), value["timestamp"], value["step"], model_id=model_id, **on)


def dataset_inputs(inputs: Sequence[Mapping[str, str]]) -> list[DatasetInput]:
    """Recorded inputs (dataset fields and context) -> MLflow's DatasetInput entities."""
    return [
        DatasetInput(
            Dataset(**{key: value for key, value in entry.items() if key != "context"}),
            [InputTag(T.DATASET_CONTEXT, entry["context"])],
        )
        for entry in inputs
    ]
