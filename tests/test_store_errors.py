"""Issue 23, items 19, 20 and 21: a store that cannot be used fails fast, in one line, from every command-line tool.

In-process: each tool through its `main(argv)` (`xent-train` through its Hydra entry point, `refused_here`). The
stores are real: an SQLite file of garbage, a path SQLite cannot open, an HTTP server (in a thread) whose /health
answers and whose API hangs. The wrong PostgreSQL password is in test_server.py (it needs the real cluster).
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers.e2e import refused_here
from xent_lab import calibrate, relog
from xent_lab.report import __main__ as report
from xent_lab.tracking import record, runs
from xent_lab.tracking.secrets import one_line
from xent_lab.tracking.store import SQLITE_MAX_PATH

SECRET = "S3CRET-9f2"


def _record(tmp_path: Path) -> Path:
    """A finished job's record, for `xent-relog` to log."""
    job = tmp_path / "job"
    record.LocalRecord(job, record.RunInfo("xent-lab", "run1", "", {}, status="FINISHED"))
    return job


# Each tool's command line, given a tracking URI (and the test's folder, for the relog record).
TOOLS: dict[str, Callable[[str, Path], tuple[Callable[[list[str]], int], list[str]]]] = {
    "xent-report": lambda uri, _: (report.main, ["mnist_losses", "--tracking-uri", uri]),
    "xent-calibrate": lambda uri, _: (calibrate.main, ["0123abcd", "--tracking-uri", uri]),
    "xent-runs": lambda uri, _: (runs.main, ["close-stale", "--tracking-uri", uri]),
    "xent-relog": lambda uri, tmp: (relog.main, [str(_record(tmp)), "--tracking-uri", uri]),
}
READERS = ("xent-report", "xent-calibrate", "xent-runs")  # xent-relog and xent-train write: they may create a store


def run_tool(tool: str, uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], cache_dir: Path) -> str:
    """Run `tool` on the store `uri` in `tmp_path`; asserts exit code 2 and one line `error: ...`, returns it."""
    if tool == "xent-train":
        done = refused_here(tmp_path, cache_dir, "debug=quick", f"tracking.uri='{uri}'", "tracking.connect_timeout=2")
        code, err = done.returncode, done.stderr
    else:
        main, argv = TOOLS[tool](uri, tmp_path)
        code = main(argv)
        err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert SECRET not in err
    return err


@pytest.mark.parametrize("tool", TOOLS)  # xent-train's: test_reliability_launch.py
def test_every_tool_reports_an_unknown_scheme_in_one_line(tool, tmp_path, capsys, cache_dir):
    """Item 21: `foo://` was a raw traceback from xent-calibrate and xent-runs."""
    err = run_tool(tool, f"foo://alice:{SECRET}@host/x", tmp_path, capsys, cache_dir)
    assert "cannot use the MLflow store foo://alice:***@host/x" in err
    assert "MLflow has no store for the scheme 'foo'" in err


@pytest.mark.parametrize("tool", TOOLS)  # xent-train's: test_reliability_launch.py
def test_every_tool_reports_a_garbage_database_in_one_line(tool, tmp_path, capsys, cache_dir):
    """Item 21: a file that is not SQLite was a 23-26-frame traceback from xent-calibrate, xent-runs, xent-report."""
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database\n" * 100)
    err = run_tool(tool, f"sqlite:///{garbage}", tmp_path, capsys, cache_dir)
    assert err == (
        f"error: the MLflow store {garbage} is not an SQLite database; move it away or point tracking.uri "
        "(or MLFLOW_TRACKING_URI) at another file\n"
    )
    assert garbage.read_bytes() == b"this is not a database\n" * 100


@pytest.mark.parametrize("tool", READERS)
def test_a_tool_that_reads_a_store_never_creates_one(tool, tmp_path, capsys, cache_dir):
    """Item 21: a mistyped path made xent-calibrate and xent-runs create an empty store (xent-runs: rc 0)."""
    missing = tmp_path / "mlfow.db"
    err = run_tool(tool, f"sqlite:///{missing}", tmp_path, capsys, cache_dir)
    assert err == (
        f"error: no MLflow store at {missing}; pass --tracking-uri or set MLFLOW_TRACKING_URI to an existing store "
        "(a tool that reads a store never creates one)\n"
    )
    assert not missing.exists()


@pytest.mark.parametrize("tool", ["xent-train", *TOOLS])
def test_a_sqlite_path_over_512_bytes_fails_fast(tool, tmp_path, capsys, cache_dir):
    """Item 19: a store path SQLite cannot open took 109 s (MLflow's retries) to say "unable to open database file"."""
    folder = tmp_path
    while len(str(folder)) < SQLITE_MAX_PATH:
        folder = folder / ("d" * 100)
    folder.mkdir(parents=True)
    path = folder / "mlflow.db"
    import xent_lab.train  # noqa: F401 - before the clock starts: TensorFlow takes seconds to import

    started = time.monotonic()
    err = run_tool(tool, f"sqlite:///{path}", tmp_path, capsys, cache_dir)
    assert time.monotonic() - started < 10
    assert err == (
        f"error: the MLflow store path {path} is {len(str(path))} bytes long, and SQLite opens no path over 504 "
        "bytes; set tracking.uri (or MLFLOW_TRACKING_URI, --tracking-uri) to a shorter one, e.g. "
        "sqlite:////tmp/mlflow.db, or launch from a shorter folder\n"
    )


@pytest.fixture
def hanging_api() -> Iterator[str]:
    """A real HTTP server whose /health answers 200 and whose API (/api/...) never does, until the test ends."""
    release = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/api/"):
                release.wait(60)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"OK")

        do_POST = do_GET

        def log_message(self, *args) -> None:  # keeps the test output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://alice:{SECRET}@127.0.0.1:{server.server_port}"
    release.set()
    server.shutdown()


@pytest.mark.parametrize("tool", ["xent-train", "xent-runs"])  # one error path: two tools, two timeouts
def test_a_server_whose_api_hangs_fails_within_connect_timeout(tool, hanging_api, tmp_path, capsys, cache_dir):
    """Item 20: /health answered, the API hung: 135 s (MLflow's retries), the message cut mid-word. Now the
    connect timeout (2 s for xent-train, 5 s for xent-runs) plus a few seconds, one complete line."""
    import xent_lab.train  # noqa: F401 - before the clock starts: TensorFlow takes seconds to import

    started = time.monotonic()
    err = run_tool(tool, hanging_api, tmp_path, capsys, cache_dir)
    elapsed = time.monotonic() - started
    assert elapsed < 15, f"took {elapsed:.1f} s"
    shown = hanging_api.replace(SECRET, "***")
    assert err.startswith(f"error: the MLflow tracking server at {shown} answers /health but not its API within ")
    assert err.endswith(
        "check the server and its backend store, or point tracking.uri / MLFLOW_TRACKING_URI (or "
        "--tracking-uri) at a store that answers\n"
    )


def test_a_long_store_error_is_cut_at_a_word_not_mid_word():
    """Item 20: the hanging server's message was cut mid-word (at 200 characters)."""
    uri = f"http://alice:{SECRET}@127.0.0.1:5000"
    exc = OSError(f"API request to {uri}/api/2.0/mlflow/experiments/get-by-name failed " + "with a timeout " * 30)
    line = one_line(exc, uri, limit=120)
    assert line == (
        "API request to http://alice:***@127.0.0.1:5000/api/2.0/mlflow/experiments/get-by-name failed with a timeout "
        "with a ..."
    )
