"""Tracking-URI passwords: kept out of params, tags, artifacts, messages and log lines."""

from __future__ import annotations

import logging
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


class _ScrubPassword(logging.Filter):
    def __init__(self, uri: str) -> None:
        super().__init__()
        self.uri = uri

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = scrub(message, self.uri)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


def scrub_logs(uri: str) -> None:
    """Hide the password of `uri` in everything the logging handlers print (e.g. Hydra's job lines)."""
    if urlsplit(uri).password is None:
        return
    for handler in logging.getLogger().handlers:
        handler.addFilter(_ScrubPassword(uri))
