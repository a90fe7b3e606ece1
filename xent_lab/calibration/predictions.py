"""A run's test predictions on disk: logits, labels and head in one compressed .npz."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from xent_lab import heads
from xent_lab.calibration.validation import check_labels


class Predictions(NamedTuple):
    logits: np.ndarray  # float32
    labels: np.ndarray  # int32
    head: str


def save_predictions(path: str | os.PathLike[str], logits: np.ndarray, labels: np.ndarray, head: str) -> Path:
    """Writes a compressed .npz (float32 logits, int32 labels, head); returns the path written.

    ".npz" is appended when the name lacks it (as numpy does).
    """
    checked = heads.check_logits(logits, head)
    labels = check_labels(labels, len(checked), heads.num_classes(checked, head))
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    np.savez_compressed(
        path, logits=np.asarray(logits, dtype=np.float32), labels=labels.astype(np.int32), head=np.str_(head)
    )
    return path


def load_predictions(path: str | os.PathLike[str]) -> Predictions:
    """(logits, labels, head) as written by `save_predictions`."""
    with np.load(path, allow_pickle=False) as data:
        return Predictions(data["logits"], data["labels"], str(data["head"]))
