"""The on-disk cache of preprocessed arrays: atomic .npz writes and reads that report corruption."""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np


class CacheUnreadable(Exception):
    """A cache file exists but cannot be read as an .npz archive; the caller rebuilds it."""


def write_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write `arrays` to `path` as an uncompressed .npz, atomically.

    The temp file lives beside the target and is moved into place with os.replace, so a crash or a
    concurrent run never leaves a half-written cache file under the real name.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Read every array of the .npz at `path` into memory; raises CacheUnreadable if the file is damaged."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise CacheUnreadable(f"{type(exc).__name__}: {exc}") from exc
