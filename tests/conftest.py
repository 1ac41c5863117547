"""The tests' fixtures; the helpers they share are the package :mod:`tests.support`."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session extracts packages into its own cache, never the user's."""
    monkeypatch.setenv("GEOCLASSIFY_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
