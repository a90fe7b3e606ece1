"""Atomic file replacement: a reader sees the old file or the new one, never half of either.

The one home of the temp-file-then-`os.replace` pattern used by the data cache, downloads, the run
record and the study report.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: str | os.PathLike[str], mode: int | None = 0o644, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block ends normally, move it onto `path`.

    The temporary file lives in the target's folder (so `os.replace` is atomic) and is removed if the
    block raises, so a crash, a rejected download or a concurrent writer never leaves a partial file
    under the real name. `mode` is applied before the move (mkstemp makes files private; data,
    reports and records are for everyone to read); `None` keeps mkstemp's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(descriptor)
    temporary = Path(name)
    try:
        yield temporary
        if mode is not None:
            temporary.chmod(mode)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text(path: str | os.PathLike[str], text: str, mode: int | None = 0o644, encoding: str = "utf-8") -> None:
    """Replace `path` with `text` atomically (UTF-8 unless told otherwise: reports hold ±, Δ and –)."""
    with replacing(path, mode) as temporary:
        temporary.write_text(text, encoding=encoding)
