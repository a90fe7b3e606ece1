"""The entry point: pick the dataset's loader by name, then thin it into a long tail if asked."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

from xent_lab.data import imdb, mnist
from xent_lab.data.dataset import Dataset
from xent_lab.data.errors import DataError
from xent_lab.data.settings import DataSettings
from xent_lab.data.splits import long_tail_indices

_LOADERS: dict[str, Callable[[DataSettings, bool], Dataset]] = {"imdb": imdb.load, "mnist": mnist.load}


class DatasetFacts(NamedTuple):
    """What is known of a dataset without loading it, for checking a config up front."""

    num_classes: int
    input_kind: str  # "image" | "text"
    test_size: int  # samples in the official test split, before dataset.limit.test


FACTS: dict[str, DatasetFacts] = {
    "imdb": DatasetFacts(imdb.NUM_CLASSES, imdb.INPUT_KIND, 25_000),
    "mnist": DatasetFacts(mnist.NUM_CLASSES, mnist.INPUT_KIND, 10_000),
}


def load_dataset(settings: DataSettings, progress: bool = True) -> Dataset:
    """Load dataset `settings.name` ("mnist" or "imdb") with a seeded validation split carved from its training set.

    Raw files are looked up in `data_dir` and downloaded there when missing (if `download`); they are
    checked against the known sha256 digests unless `verify_checksums` is false. Preprocessed text
    arrays are cached in `cache_dir`; `data_dir` is never written to except by a download.
    `imbalance` (a ratio >= 1, see `long_tail_indices`) thins the training and validation splits into
    a long tail after the limits; the test split stays balanced. `progress` prints the slow steps to
    stderr. Raises DataError on any problem.
    """
    load = _LOADERS.get(settings.name)
    if load is None:
        raise DataError(f"unknown dataset {settings.name!r}; known datasets: {', '.join(_LOADERS)}")
    dataset = load(settings, progress)
    return dataset if settings.imbalance is None else long_tailed(dataset, settings.imbalance)


def long_tailed(dataset: Dataset, ratio: float) -> Dataset:
    """`dataset` with its training and validation splits thinned by `long_tail_indices`."""
    train = long_tail_indices(dataset.y_train, dataset.num_classes, ratio)
    val = long_tail_indices(dataset.y_val, dataset.num_classes, ratio)
    return dataclasses.replace(
        dataset,
        x_train=dataset.x_train[train],
        y_train=dataset.y_train[train],
        x_val=dataset.x_val[val],
        y_val=dataset.y_val[val],
    )
