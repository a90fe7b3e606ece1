"""Shared fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """One preprocessing cache for the session: the IMDB vectorization is built once, then reused."""
    return tmp_path_factory.mktemp("xent-cache")
