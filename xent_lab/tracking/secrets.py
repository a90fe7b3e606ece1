"""Tracking-URI passwords: kept out of params, tags, artifacts, messages and log lines."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit


def redact(uri: str) -> str:
    """`uri` with any password replaced by ***, for messages, params and tags."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def scrub(text: str, uri: str) -> str:
    """`text` with the password of `uri` (if it has one) replaced by ***: for params, tags, artifacts, logs."""
    password = urlsplit(uri).password
    return text.replace(password, "***") if password else text


_scrubbed: set[str] = set()  # the passwords already hidden from log records in this process


def scrub_logs(uri: str) -> None:
    """Hide the password of `uri` in every log record from now on (e.g. Hydra's lines listing a job's overrides).

    Done where records are made rather than on handlers: Hydra replaces the handlers when it sets up each
    job's logging and its launchers', after this is called.
    """
    password = urlsplit(uri).password
    if password is None or password in _scrubbed:
        return
    _scrubbed.add(password)
    make_record = logging.getLogRecordFactory()

    def scrubbed_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format: the handler reports it as it would have
            return record
        if password in message:
            record.msg, record.args = message.replace(password, "***"), None
        return record

    logging.setLogRecordFactory(scrubbed_record)
