"""The on-disk cache of preprocessed arrays: atomic .npz writes and reads that report corruption."""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from xent_lab.atomic import replacing


class CacheUnreadable(Exception):
    """A cache file exists but cannot be read as an .npz archive; the caller rebuilds it."""


def write_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write `arrays` to `path` as an uncompressed .npz, atomically (see `xent_lab.atomic.replacing`)."""
    # A file object, not the temp path: np.savez would append ".npz" to a name that lacks it.
    with replacing(path) as temporary, open(temporary, "wb") as f:
        np.savez(f, **arrays)


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Read every array of the .npz at `path` into memory; raises CacheUnreadable if the file is damaged."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise CacheUnreadable(f"{type(exc).__name__}: {exc}") from exc
