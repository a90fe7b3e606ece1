"""Locating, downloading and verifying the raw files the datasets are built from."""

from __future__ import annotations

import functools
import hashlib
import http.client
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from xent_lab.atomic import replacing
from xent_lab.data.errors import DataError
from xent_lab.data.progress import note

DOWNLOAD_TIMEOUT_S = 30.0  # per socket operation, not for the whole download
_CHUNK = 1 << 20
_PROGRESS_EVERY_S = 2.0
_POINT_AT_A_COPY = "set XENT_DATA_DIR=/path/to/data or pass dataset.data_dir=/path"


@dataclass(frozen=True)
class RemoteFile:
    """A raw file: where it lives under the data folder, where it can be downloaded, which contents are good."""

    relpath: str  # POSIX path under the data folder, e.g. "mnist/train-images-idx3-ubyte.gz"
    urls: tuple[str, ...]  # tried in order
    known_sha256: Mapping[str, str]  # accepted digest -> which release it is

    @property
    def name(self) -> str:
        """The file name, without folders."""
        return PurePosixPath(self.relpath).name

    def expected(self) -> str:
        """The accepted digests, for error messages."""
        return ", ".join(f"{digest} ({what})" for digest, what in self.known_sha256.items())


def sha256_of(path: Path) -> str:
    """The file's sha256, computed once per process for a given path, size and modification time."""
    stat = path.stat()
    return _sha256_memo(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


# Size and mtime are part of the key so that a file replaced in place is hashed again.
@functools.cache
def _sha256_memo(path: str, size: int, mtime_ns: int) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def ensure_file(spec: RemoteFile, data_dir: Path, *, download: bool, verify: bool, progress: bool) -> tuple[Path, str]:
    """Return the local path of `spec` under `data_dir` and its sha256, downloading it first if it is missing.

    With `verify`, a digest not in `spec.known_sha256` is a DataError; without it any content is accepted
    (the digest is still returned, for provenance and cache keys).
    """
    path = data_dir / spec.relpath
    if not path.is_file():
        if not download:
            reason = f"downloads are disabled (dataset.download=false); it can be downloaded from {spec.urls[0]}"
            raise DataError(_missing_message(spec, path, reason))
        _download(spec, path, verify=verify, progress=progress)
    digest = sha256_of(path)
    if verify and digest not in spec.known_sha256:
        raise DataError(
            f"checksum mismatch for {path}: expected one of {spec.expected()}, got {digest}; the file is corrupt "
            "or a different release; delete it to re-download, or set dataset.verify_checksums=false to accept "
            "a custom copy"
        )
    return path, digest


def _missing_message(spec: RemoteFile, path: Path, reason: str) -> str:
    return (
        f"{spec.name} is not in {path.parent} and {reason}. To use a copy you already have, "
        f"{_POINT_AT_A_COPY} (the folder that holds {spec.relpath})"
    )


def _download(spec: RemoteFile, path: Path, *, verify: bool, progress: bool) -> None:
    """Download `spec` into `path` from the first URL that serves acceptable content, else raise DataError."""
    # Folders this call creates, removed again if the download fails, so a failure leaves no trace.
    new_dirs = [d for d in (path.parent, *path.parent.parents) if not d.exists()]
    try:
        # The temp file moves onto `path` only if the block ends normally; raising discards it.
        with replacing(path, suffix=".part") as part:
            failures = []
            for url in spec.urls:
                failure = _attempt(spec, url, part, verify=verify, progress=progress)
                if failure is None:
                    return
                failures.append(f"{url} ({failure})")
            raise DataError(_missing_message(spec, path, "downloading it failed: " + "; ".join(failures)))
    except DataError:
        _remove_empty(new_dirs)
        raise
    except OSError as exc:  # each URL's errors are caught above: this one is making or moving the temp file
        _remove_empty(new_dirs)
        raise DataError(_missing_message(spec, path, f"cannot be downloaded there ({exc})")) from exc


def _remove_empty(folders: list[Path]) -> None:
    """Remove `folders`, innermost first, up to the first that is not empty (another download uses it)."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            break


def _attempt(spec: RemoteFile, url: str, dest: Path, *, verify: bool, progress: bool) -> str | None:
    """Fill `dest` from `url`; None if it now holds acceptable content, else why not."""
    try:
        digest = _fetch(url, dest, progress)
    except (OSError, http.client.HTTPException) as exc:  # URLError and timeouts are OSErrors
        return str(exc)
    if verify and digest not in spec.known_sha256:
        return f"checksum mismatch: expected one of {spec.expected()}, got {digest}"
    return None


def _fetch(url: str, dest: Path, progress: bool) -> str:
    """Stream `url` into `dest` (overwriting it); returns the sha256 of what was received."""
    note(progress, f"downloading {url}")
    digest = hashlib.sha256()
    received, start, last_note = 0, time.monotonic(), time.monotonic()
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0)
        while chunk := response.read(_CHUNK):
            out.write(chunk)
            digest.update(chunk)
            received += len(chunk)
            if time.monotonic() - last_note >= _PROGRESS_EVERY_S:
                last_note = time.monotonic()
                share = f" of {total / 2**20:.1f} MiB ({100 * received // total}%)" if total else ""
                note(progress, f"  {received / 2**20:.1f} MiB{share}")
    if total and received != total:
        raise ConnectionError(f"connection closed after {received} of {total} bytes")
    note(progress, f"  done: {received / 2**20:.1f} MiB in {time.monotonic() - start:.1f} s")
    return digest.hexdigest()
