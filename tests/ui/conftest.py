"""Shared set-up of the AppTest page tests: an isolated workspace (helpers: apptest_helpers)."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("THREADX_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("THREADX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("THREADX_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.chdir(tmp_path)
    return tmp_path
