"""A local SQLite store shared by several processes: one creation of its schema, and patience with its lock.

MLflow creates a fresh store's tables on first use; two processes starting at once both try, and one fails
("table ... already exists"). `creation_lock` serialises that with a lock file beside the database.

SQLite lets one writer in at a time and MLflow gives up after its busy timeout (20 s), which would send a
run offline because another process (a backup, a `sqlite3` shell, a long query) held the lock a while.
`patiently` retries such a write until `tracking.lock_timeout_s`; past that, `StoreLocked` names the file.
"""

from __future__ import annotations

import fcntl
import logging
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from xent_lab.errors import TrackingError

DEFAULT_LOCK_TIMEOUT_S = 120.0
SQLITE_HEADER = b"SQLite format 3\x00"
_LOCKED = "database is locked"
_POLL_S = 0.2
Result = TypeVar("Result")


class StoreLocked(TrackingError):
    """A local SQLite store stayed locked by another process for longer than the configured wait."""


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI, None for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0])


def _locked_message(path: Path, timeout_s: float, holder: str) -> str:
    return (
        f"the MLflow store {path} stayed locked for {timeout_s:g} s: {holder}; find it with `fuser -v {path}`, "
        "stop it, or wait longer with tracking.lock_timeout_s=SECONDS"
    )


@contextmanager
def creation_lock(path: Path, timeout_s: float) -> Iterator[None]:
    """Hold `<db>.lock` (an flock, beside the database) while a store's schema and experiment are created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_file = path.with_name(path.name + ".lock")
    deadline = time.monotonic() + timeout_s
    with open(lock_file, "a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    holder = f"another process holds {lock_file} while it creates the store"
                    raise StoreLocked(_locked_message(path, timeout_s, holder)) from None
                time.sleep(_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_database(path: Path) -> None:
    """A file that exists and is not SQLite would fail deep inside MLflow; say which file and what to do."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb") as handle:
        header = handle.read(len(SQLITE_HEADER))
    if header != SQLITE_HEADER:
        raise TrackingError(
            f"the MLflow store {path} is not an SQLite database; move it away or point tracking.uri "
            "(or MLFLOW_TRACKING_URI) at another file"
        )


def wait_for_lock(path: Path, timeout_s: float) -> None:
    """Block until no other process holds the database's write lock (at most `timeout_s`); StoreLocked otherwise."""
    if not path.exists():
        return
    connection = sqlite3.connect(path, timeout=max(timeout_s, 0.01), isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")  # takes the write lock, waiting for it, then lets it go
        connection.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        if _LOCKED not in str(exc):
            raise
        raise StoreLocked(_locked_message(path, timeout_s, "another process holds its SQLite lock")) from None
    finally:
        connection.close()


class _DropLockedTracebacks(logging.Filter):
    """MLflow logs a traceback for every locked write before raising it; `patiently` reports the wait itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _LOCKED not in record.getMessage()


_quiet = _DropLockedTracebacks()


def patiently(call: Callable[..., Result], *args: object, uri: str, timeout_s: float) -> Result:
    """`call(*args)`; on a local SQLite store that is locked, wait for the lock and retry, up to `timeout_s`."""
    path = sqlite_path(uri)
    if path is None:
        return call(*args)
    logging.getLogger("mlflow.store.db.utils").addFilter(_quiet)  # a set: adding it again is a no-op
    deadline = time.monotonic() + timeout_s
    announced = False
    while True:
        try:
            return call(*args)
        except Exception as exc:
            if _LOCKED not in str(exc):
                raise
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StoreLocked(_locked_message(path, timeout_s, "another process holds its SQLite lock")) from None
            if not announced:
                print(
                    f"note: the MLflow store {path} is locked by another process; waiting for it up to "
                    f"{timeout_s:g} s (tracking.lock_timeout_s); nothing is lost meanwhile",
                    file=sys.stderr,
                    flush=True,
                )
                announced = True
            wait_for_lock(path, remaining)
