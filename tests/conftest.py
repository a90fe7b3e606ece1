"""Shared fixtures."""

from __future__ import annotations

import pytest

# Session fixtures shared by every module that asks for them: one PostgreSQL cluster, one tracking server
# per backend, one SLURM cluster for the whole run.
pytest_plugins = ["tests.helpers.servers", "tests.helpers.slurm"]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """One preprocessing cache for the session: the IMDB vectorization is built once, then reused."""
    return tmp_path_factory.mktemp("xent-cache")
