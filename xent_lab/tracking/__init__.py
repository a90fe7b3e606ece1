"""MLflow tracking: the store (URIs, reachability, runs), the local run record, relog, and the tag schema.

Importing it loads neither TensorFlow nor Keras (the per-epoch Keras callback is in `xent_lab.training`).
"""

from xent_lab.tracking import tags
from xent_lab.tracking.record import LocalRecord, RecordedRun, RunInfo
from xent_lab.tracking.runlog import RunLogger
from xent_lab.tracking.secrets import redact, scrub, scrub_logs
from xent_lab.tracking.store import Tracker, check_reachable, git_commit, probe_health, resolve_uri

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
