"""The entry point: pick the dataset by name and resolve where its files live."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from xent_lab.data import imdb, mnist
from xent_lab.data.dataset import Dataset
from xent_lab.data.errors import DataError
from xent_lab.data.splits import long_tail_indices

DATASETS = ("imdb", "mnist")
DATA_DIR_ENV = "XENT_DATA_DIR"
DEFAULT_DATA_DIR = Path("~/.cache/xent_lab/data")


def resolve_data_dir(configured: str | Path | None) -> Path:
    """The raw-data folder: the configured value if set, else $XENT_DATA_DIR, else ~/.cache/xent_lab/data."""
    chosen = configured or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    return Path(chosen).expanduser()


def load_dataset(
    name: str,
    data_dir: str | Path,
    cache_dir: str | Path,
    *,
    val_size: int,
    val_seed: int,
    limit_train: int | None = None,
    limit_test: int | None = None,
    imbalance: float | None = None,
    vocab_size: int = 20000,
    sequence_length: int = 256,
    download: bool = True,
    verify_checksums: bool = True,
    progress: bool = True,
) -> Dataset:
    """Load dataset `name` ("mnist" or "imdb") with a seeded validation split carved from its training set.

    Raw files are looked up in `data_dir` and downloaded there when missing (if `download`); they are
    checked against the known sha256 digests unless `verify_checksums` is false. Preprocessed text
    arrays are cached in `cache_dir`; `data_dir` is never written to except by a download.
    `imbalance` (a ratio >= 1, see `long_tail_indices`) thins the training and validation splits into
    a long tail after the limits; the test split stays balanced.
    `vocab_size` and `sequence_length` apply to text datasets only. Raises DataError on any problem.
    """
    data_dir, cache_dir = Path(data_dir).expanduser(), Path(cache_dir).expanduser()
    common = dict(
        val_size=val_size,
        val_seed=val_seed,
        limit_train=limit_train,
        limit_test=limit_test,
        download=download,
        verify_checksums=verify_checksums,
        progress=progress,
    )
    if name == "mnist":
        dataset = mnist.load(data_dir, **common)
    elif name == "imdb":
        dataset = imdb.load(data_dir, cache_dir, vocab_size=vocab_size, sequence_length=sequence_length, **common)
    else:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    return dataset if imbalance is None else long_tailed(dataset, imbalance)


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
