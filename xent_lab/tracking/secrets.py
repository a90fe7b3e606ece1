"""Tracking-URI passwords: kept out of params, tags, artifacts, messages and log lines.

A URI holds a secret in its user info (`scheme://user:PASSWORD@host`) or in a query parameter
(`postgresql://user@host/db?password=PASSWORD`, which libpq reads). `redact` replaces each by ***.
`scrub` hides them in a text only where the URI is: the URI itself (as typed, percent-encoded, or escaped as in
JSON or single-quoted YAML), or the secret as a URI part (`:PASSWORD@`, `password=PASSWORD`) of a URI written
another way, e.g. by a driver. Never the bare value: a password `0` must not turn every 0 of a config into ***.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote, urlsplit

HIDDEN = "***"
# Query parameters whose value is a secret (libpq's `password` and `sslpassword`, and the usual token names).
_SECRET_KEY = re.compile(r"pass|pwd|secret|token", re.IGNORECASE)
# Where a value in a text ends: what cannot be part of a URI's query value or user info.
_END = r"(?=$|[\s&#;,'\"`)\]}<>@/])"

# The forms a URI takes in the texts that are written: as typed, percent-encoded (in another URL), escaped in JSON,
# and in single-quoted YAML.
_ENCODINGS: tuple[Callable[[str], str], ...] = (
    lambda text: text,
    lambda text: quote(text, safe=""),
    lambda text: json.dumps(text)[1:-1],
    lambda text: text.replace("'", "''"),
)


def _secret_query(query: str) -> list[tuple[str, str]]:
    """The (key, raw value) pairs of `query` whose key names a secret."""
    pairs = (item.partition("=") for item in query.split("&"))
    return [(key, value) for key, sep, value in pairs if sep and value and _SECRET_KEY.search(unquote(key))]


def redact(uri: str) -> str:
    """`uri` with its password (user info) and secret query parameters replaced by ***: for messages, params, tags.

    Edited in place, not rebuilt: urlunsplit would also rewrite other parts (`sqlite:////x` to `sqlite://x`)."""
    parts = urlsplit(uri)
    if parts.password:
        user, _, host = parts.netloc.rpartition("@")
        uri = uri.replace(parts.netloc, f"{user.partition(':')[0]}:{HIDDEN}@{host}", 1)
    if _secret_query(parts.query):
        items = (item.partition("=") for item in parts.query.split("&"))
        query = "&".join(
            f"{key}={HIDDEN}" if sep and value and _SECRET_KEY.search(unquote(key)) else key + sep + value
            for key, sep, value in items
        )
        uri = uri.replace(f"?{parts.query}", f"?{query}", 1)
    return uri


def has_secret(uri: str) -> bool:
    """Whether `uri` holds a password (that `redact` hides)."""
    return redact(uri) != uri


@functools.cache  # every log record and every param is scrubbed
def _replacements(uri: str) -> tuple[tuple[re.Pattern[str], str], ...]:
    """What `scrub` replaces in a text, the whole URI before its parts."""
    clean = redact(uri)
    if clean == uri:
        return ()
    found: list[tuple[re.Pattern[str], str]] = []
    for encode in _ENCODINGS:
        found.append((re.compile(re.escape(encode(uri))), encode(clean)))
    password = urlsplit(uri).password
    parts = [(f":{value}@", f":{HIDDEN}@") for value in ({password, unquote(password)} if password else ())]
    for key, value in _secret_query(urlsplit(uri).query):
        parts += [(f"{key}={form}", f"{key}={HIDDEN}") for form in {value, unquote(value)}]
    for part, hidden in parts:
        start = "" if part.startswith(":") else r"(?<![\w%])"  # a key, not the end of a longer one
        found.append((re.compile(start + re.escape(part) + ("" if part.endswith("@") else _END)), hidden))
    return tuple(found)


def scrub(text: str, uri: str) -> str:
    """`text` with the secrets of `uri` (if it has any) hidden where the URI or its secret parts appear."""
    for pattern, hidden in _replacements(uri):
        text = pattern.sub(lambda _, hidden=hidden: hidden, text)
    return text


def one_line(exc: BaseException, uri: str, limit: int = 300) -> str:
    """The first line of `exc`'s message, the secrets of `uri` hidden, cut at a word (never mid-word) when longer
    than `limit`: for one-line errors and failure reasons."""
    text = str(exc).strip()
    line = scrub(text.splitlines()[0].strip() if text else type(exc).__name__, uri)
    if len(line) <= limit:
        return line
    return line[:limit].rpartition(" ")[0].rstrip(",;:") + " ..."


_hidden: list[str] = []  # the URIs whose secrets are hidden from log records in this process


def scrub_logs(uri: str) -> None:
    """Hide the secrets of `uri` in every log record from now on (e.g. Hydra's lines listing a job's overrides).

    Done where records are made rather than on handlers: Hydra replaces the handlers when it sets up each
    job's logging and its launchers', after this is called.
    """
    if not has_secret(uri) or uri in _hidden:
        return
    _hidden.append(uri)
    if len(_hidden) > 1:
        return  # the record factory below hides every URI in the list
    make_record = logging.getLogRecordFactory()

    def scrubbed_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format: the handler reports it as it would have
            return record
        clean = message
        for hidden in _hidden:
            clean = scrub(clean, hidden)
        if clean != message:
            record.msg, record.args = clean, None
        return record

    logging.setLogRecordFactory(scrubbed_record)
