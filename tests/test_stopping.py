"""A stop signal at each place where training checks for one (`stopping.check()`), in this process.

The handler of `xent_lab.stopping` is installed as the entry point installs it, and the test sends this process a
real SIGTERM the first time the job reaches the site under test: the job ends by raising `Stopped` there, and its
run, if it exists yet, ends KILLED with the signal as its reason. The sites are read from the source, so a new one
is tested without a change here. Real SIGTERMs to real processes, at random moments, are in
tests/test_reliability_signals.py.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.e2e import LEAN, runs, train_here
from xent_lab import stopping
from xent_lab.tracking import tags as T

PACKAGE = Path(stopping.__file__).resolve().parent
CALL = "stopping.check()"
# Two epochs and a few batches: every site is reached (the second epoch's start, a validation batch).
SMALL = (*LEAN, "trainer.epochs=2")


def sites() -> list[tuple[str, int]]:
    """Every `stopping.check()` call in the package: (file relative to it, line number)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if line.strip().startswith(CALL):
                found.append((str(path.relative_to(PACKAGE)), number))
    return found


def test_the_sites_are_found():
    """The callback's batch and epoch checks, and the phase boundaries of the pipeline and of the run's record."""
    files = [file for file, _ in sites()]
    assert files.count("training/callbacks.py") == 3 and len(files) >= 7, sites()


@pytest.fixture
def stop_handler():
    """xent_lab.stopping's handler installed, as the entry point installs it; the flag and handlers reset after."""
    saved = {signum: signal.getsignal(signum) for signum in stopping.STOP_SIGNALS}
    stopping.install()
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
        stopping._received = None  # this process goes on to run other tests


@pytest.mark.slow  # a short training per site
@pytest.mark.parametrize("site", sites(), ids=lambda site: f"{site[0]}:{site[1]}")
def test_a_sigterm_at_each_check_stops_the_job_there_and_the_run_ends_killed(
    site, stop_handler, tmp_path, cache_dir, monkeypatch
):
    check, reached = stopping.check, []

    def check_here() -> None:
        caller = sys._getframe(1)
        where = (str(Path(caller.f_code.co_filename).resolve().relative_to(PACKAGE)), caller.f_lineno)
        if where == site and not reached:
            reached.append(where)
            os.kill(os.getpid(), signal.SIGTERM)
            deadline = time.monotonic() + 10
            while stopping.requested() is None and time.monotonic() < deadline:
                time.sleep(0.001)  # Python runs the handler between bytecodes of this thread
        check()

    monkeypatch.setattr(stopping, "check", check_here)
    with pytest.raises(stopping.Stopped, match="^interrupted by SIGTERM$"):
        train_here(tmp_path, cache_dir, *SMALL)
    assert reached == [site]
    found = runs(tmp_path)
    assert [run.info.status for run in found] in ([], ["KILLED"])
    for run in found:
        assert run.data.tags[T.FAILURE_REASON] == "interrupted by SIGTERM"
