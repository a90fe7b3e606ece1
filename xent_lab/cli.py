"""The one error path of every command-line tool (`xent-train`, `xent-report`, `xent-relog`, `xent-calibrate`,
`xent-runs`): a problem the user can fix is one line `error: ...` on stderr and exit code 2, the tracking
password hidden. A bug keeps its traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable

from mlflow.exceptions import MlflowException

from xent_lab.errors import XentError
from xent_lab.tracking.secrets import scrub

OK, USER_ERROR = 0, 2
# The errors a tool reports in one line: its own, and MLflow's about the store or a run (e.g. a store it cannot read).
USER_ERRORS = (XentError, MlflowException)


def error(exc: BaseException, uri: str | None = None) -> int:
    """Print `exc` as the one line `error: ...` on stderr, the secrets of `uri` hidden; returns USER_ERROR."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__
    print(f"error: {scrub(text, uri) if uri else text}", file=sys.stderr, flush=True)
    return USER_ERROR


def run(body: Callable[[], object], uri: str | None = None) -> int:
    """Run a tool's work: OK when it returns, USER_ERROR (after `error`) when it raises one of USER_ERRORS."""
    try:
        body()
    except USER_ERRORS as exc:
        return error(exc, uri)
    return OK
