"""The marker guard itself: a test that starts a process without a process marker fails, one with it runs."""

from __future__ import annotations

import pytest

INNER = """
import subprocess
import sys

import pytest


def test_unmarked_start():
    subprocess.run([sys.executable, "-c", "pass"], check=True)


@pytest.mark.subprocess
def test_marked_start():
    subprocess.run([sys.executable, "-c", "pass"], check=True)


def test_git_is_allowed():
    subprocess.run(["git", "--version"], check=True, capture_output=True)
"""


@pytest.mark.subprocess  # the inner marked test and the git call start real processes under this test's guard
def test_a_process_started_without_a_marker_fails_the_test(pytester: pytest.Pytester):
    pytester.makeconftest(
        "from tests.conftest import _processes_need_a_marker  # noqa: F401\n"
        "def pytest_configure(config):\n"
        "    config.addinivalue_line('markers', 'subprocess: starts a process')\n"
    )
    pytester.makepyfile(test_inner=INNER)
    outcome = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    outcome.assert_outcomes(passed=2, failed=1)
    outcome.stdout.fnmatch_lines(["*test_unmarked_start starts a process*has no marker among subprocess*"])
