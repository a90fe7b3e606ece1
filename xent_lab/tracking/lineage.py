"""A run's lineage in MLflow 3: the datasets it read (its inputs) and the final metrics tied to them.

Each split is one MLflow dataset, `mnist-train`, `mnist-val`, `mnist-test`, with the context the UI shows
(`training`, `validation`, `testing`). Its digest hashes the source files' sha256, the settings that shape
the arrays and the split, so the same data has the same digest on every machine and in every run, and the
UI groups runs by dataset. No TensorFlow here: relog logs recorded inputs again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from mlflow.data import from_numpy
from mlflow.data.sources import LocalArtifactDatasetSource
from mlflow.tracking._tracking_service.utils import _use_tracking_uri

from xent_lab.data import Dataset, DataSettings
from xent_lab.tracking import tags as T
from xent_lab.tracking.runlog import RunLogger

# MLflow stores digests of at most 36 characters; 16 hex digits never collide between a project's datasets.
DIGEST_CHARS = 16
_TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"


def dataset_digest(checksums: Mapping[str, str], shaping: Mapping[str, Any], split: str) -> str:
    """The digest of one split: its source files' sha256, the settings that shape the arrays, the split name."""
    payload = json.dumps({"files": dict(checksums), "settings": dict(shaping), "split": split}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:DIGEST_CHARS]


def data_digest(checksums: Mapping[str, str], shaping: Mapping[str, Any]) -> str:
    """The digests of the three splits in one value, e.g. `train:<digest>,val:<digest>,test:<digest>`: a study
    job's data identity (tag `xent.data_digest`), the digests its datasets show in MLflow."""
    return ",".join(f"{split}:{dataset_digest(checksums, shaping, split)}" for split in T.SPLIT_CONTEXTS)


def dataset_inputs(dataset: Dataset, settings: DataSettings) -> dict[str, dict[str, str]]:
    """Split -> the fields of its `mlflow.entities.Dataset` (schema and profile from the arrays) and its context.

    The source is the raw-data folder and the files read there with their sha256: a path on this machine,
    which is why the digest does not depend on it.
    """
    source = LocalArtifactDatasetSource(str(settings.data_dir))
    inputs = {}
    for split, context in T.SPLIT_CONTEXTS.items():
        fields = from_numpy(
            getattr(dataset, f"x_{split}"),
            source=source,
            targets=getattr(dataset, f"y_{split}"),
            name=T.DATASET_INPUT_NAME.format(dataset=dataset.name, split=split),
            digest=dataset_digest(dataset.checksums, settings.shaping(), split),
        ).to_dict()
        fields["source"] = json.dumps({**json.loads(fields["source"]), "files": dataset.checksums})
        inputs[split] = {**fields, "context": context}
    return inputs


def log_datasets(run: RunLogger, dataset: Dataset, settings: DataSettings) -> dict[str, dict[str, str]]:
    """Log the train, validation and test datasets as the run's inputs; returns them by split."""
    inputs = dataset_inputs(dataset, settings)
    run.log_inputs(list(inputs.values()))
    return inputs


@contextmanager
def fluent_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API (which the model flavours log through) at `uri` for the block.

    MLflow's own helper unsets $MLFLOW_TRACKING_URI on the way out; the next job of a sweep reads it, so it
    is put back as it was.
    """
    before = os.environ.get(_TRACKING_URI_ENV)
    try:
        with _use_tracking_uri(uri):
            yield
    finally:
        if before is None:
            os.environ.pop(_TRACKING_URI_ENV, None)
        else:
            os.environ[_TRACKING_URI_ENV] = before
