"""Shared set-up of the AppTest page tests: an isolated workspace (helpers: apptest_helpers)."""
from __future__ import annotations

import pytest
from streamlit import config as st_config


@pytest.fixture(autouse=True)
def workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("THREADX_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("THREADX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("THREADX_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    _kill_jobs_left(tmp_path / "results")


def _kill_jobs_left(results) -> None:
    """A test that fails before stopping its job must not leave the job's process running."""
    if not (results / ".jobs").is_dir():
        return
    from threadx.ui.jobs import JobRegistry

    registry = JobRegistry(results)
    for job in registry.list():
        if job.is_active:
            registry.kill(job.job_id, force=True)


@pytest.fixture
def network_address():
    """The server bound to a LAN address for the test (Streamlit's config is per process)."""
    before = st_config.get_option("server.address")
    st_config.set_option("server.address", "192.168.1.20")
    yield "192.168.1.20"
    st_config.set_option("server.address", before)


@pytest.fixture
def loopback_address():
    before = st_config.get_option("server.address")
    st_config.set_option("server.address", "127.0.0.1")
    yield
    st_config.set_option("server.address", before)
