"""Which samples go to train, validation and test: the seeded validation split and the size limits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xent_lab.data.errors import DataError
from xent_lab.data.settings import DataSettings


@dataclass(frozen=True)
class SplitIndices:
    """Indices into the official training set (train, val) and the official test set (test)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def split_indices(n_train: int, n_test: int, settings: DataSettings) -> SplitIndices:
    """Carve `settings.val_size` validation samples out of the training set, then apply the limits.

    The validation set is the first `val_size` entries of `default_rng(val_seed).permutation(n_train)` and
    training keeps the rest in that permuted order, so `limit_train` takes a seeded random subset and a
    smaller limit is nested in a larger one. `limit_test` also takes a seeded random subset (the official
    files are sorted by class, so the first N would be one class), kept in file order. Limits larger than
    what is available keep everything.
    """
    val_size, val_seed = settings.val_size, settings.val_seed
    limit_train, limit_test = settings.limit_train, settings.limit_test
    if not _is_count(val_size) or not 0 <= val_size < n_train:
        raise DataError(
            f"dataset.val_size={val_size!r} is invalid: it must be an integer from 0 to {n_train - 1}, "
            f"so that some of the {n_train} training samples remain for training"
        )
    for key, limit in (("dataset.limit.train", limit_train), ("dataset.limit.test", limit_test)):
        if limit is not None and (not _is_count(limit) or limit < 1):
            raise DataError(f"{key}={limit!r} is invalid: use a positive integer, or null for no limit")

    permutation = np.random.default_rng(val_seed).permutation(n_train)
    val, train = permutation[:val_size], permutation[val_size:]
    if limit_train is not None:
        train = train[:limit_train]
    test = np.arange(n_test)
    if limit_test is not None and limit_test < n_test:
        test = np.sort(np.random.default_rng(val_seed).permutation(n_test)[:limit_test])
    return SplitIndices(train=train, val=val, test=test)


def _is_count(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def long_tail_indices(labels: np.ndarray, num_classes: int, ratio: float) -> np.ndarray:
    """Indices of `labels` that keep a fraction `ratio ** (-k / (K - 1))` of class k, in their given order.

    Class 0 keeps everything and class K-1 keeps 1/ratio of its samples (Cui et al. 2019's long-tailed
    construction). The loaders' training order is already a seeded permutation, so the first n of each
    class are a seeded random subset. Every class keeps at least one sample.
    """
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not ratio >= 1:
        raise DataError(f"dataset.imbalance={ratio!r} is invalid: use a number >= 1, or null for balanced data")
    keep = np.zeros(len(labels), dtype=bool)
    for k in range(num_classes):
        members = np.flatnonzero(labels == k)
        n = max(1, int(round(len(members) * ratio ** (-k / (num_classes - 1)))))
        keep[members[:n]] = True
    return np.flatnonzero(keep)
