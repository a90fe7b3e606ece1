"""MLflow tracking: the store (URIs, reachability, runs), the local run record, relog, and the tag schema.

Importing it loads neither TensorFlow nor Keras, nor MLflow: the names below are loaded when first used, so
that `xent_lab.training` can use the tag schema (`tags`) and the record's layout without loading MLflow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xent_lab.tracking import tags
    from xent_lab.tracking.record import LocalRecord, RecordedRun, RunInfo
    from xent_lab.tracking.runlog import RunLogger
    from xent_lab.tracking.secrets import redact, scrub, scrub_logs
    from xent_lab.tracking.store import Tracker, check_reachable, git_commit, probe_health, resolve_uri

_HOMES = {
    "LocalRecord": "record",
    "RecordedRun": "record",
    "RunInfo": "record",
    "RunLogger": "runlog",
    "redact": "secrets",
    "scrub": "secrets",
    "scrub_logs": "secrets",
    "Tracker": "store",
    "check_reachable": "store",
    "git_commit": "store",
    "probe_health": "store",
    "resolve_uri": "store",
}

__all__ = [
    "LocalRecord",
    "RecordedRun",
    "RunInfo",
    "RunLogger",
    "Tracker",
    "check_reachable",
    "git_commit",
    "probe_health",
    "redact",
    "resolve_uri",
    "scrub",
    "scrub_logs",
    "tags",
]


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
