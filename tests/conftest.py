"""Shared fixtures, the thread limits of each pytest-xdist worker, and the guard that keeps markers honest."""

from __future__ import annotations

import os

# Before anything imports TensorFlow: `make test` runs two xdist workers on two cores, and each TensorFlow
# would otherwise start a thread pool per core and fight the other worker for them.
for _name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import subprocess  # noqa: E402 - after the thread limits above
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

# Session fixtures shared by every module that asks for them: one PostgreSQL cluster, one tracking server
# per backend, one SLURM cluster for the whole run (per xdist worker: see `xdist_group` in those modules).
pytest_plugins = ["tests.helpers.servers", "tests.helpers.slurm", "pytester"]

# A test that starts a process says so with one of these markers (`make test-fast` leaves them out).
PROCESS_MARKERS = ("subprocess", "server", "slurm", "ui")
# What the code under test runs in-process as a matter of course, in milliseconds: `git` for the run's commit
# tag (xent_lab.tracking.store.git_commit). Not a process under test, so no marker.
ALLOWED_COMMANDS = {"git"}


def _command_name(args: object) -> str:
    """The program's file name, from Popen's `args` (a command line string, a path, or a sequence)."""
    if isinstance(args, str | bytes | os.PathLike):
        words = os.fsdecode(args).split()
        return Path(words[0]).name if words else ""
    first = next(iter(args), "")  # type: ignore[call-overload]
    return Path(os.fsdecode(first)).name


# tryfirst: xdist's worker names each test's group from its `xdist_group` marks in this same hook, and a plugin
# registered after the conftests (as xdist's worker is) is called before them unless they ask to go first.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`--dist loadgroup`), the tests that share a module-scoped fixture (a training, a store,
    a tracking server, the SLURM study) run on one worker, which builds it once, instead of on every worker."""
    for item in items:
        fixtures = getattr(item, "_fixtureinfo", None)
        if fixtures is None or item.get_closest_marker("xdist_group"):
            continue
        if any(d.scope == "module" for defs in fixtures.name2fixturedefs.values() for d in defs):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


@pytest.fixture(autouse=True)
def _processes_need_a_marker(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail a test that starts a process (subprocess.Popen, and so subprocess.run) without a process marker."""
    if any(request.node.get_closest_marker(name) for name in PROCESS_MARKERS):
        return
    start = subprocess.Popen.__init__

    def guarded(self: subprocess.Popen, args: object, *rest: object, **kwargs: object) -> None:
        if _command_name(args) not in ALLOWED_COMMANDS:
            pytest.fail(
                f"{request.node.nodeid} starts a process ({args!r}) but has no marker among "
                f"{', '.join(PROCESS_MARKERS)}: mark it (`@pytest.mark.subprocess`), or call the code in-process",
                pytrace=False,
            )
        start(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """One preprocessing cache for the session: the IMDB vectorization is built once, then reused."""
    return tmp_path_factory.mktemp("xent-cache")
