"""Shared fixtures: the real-data folder beside the repo and an isolated data root."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import pandas as pd

    from threadx.data.bars import Bars

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    """Tests see no strategies folder of the developer's (``./strategies``): an empty one of
    their own unless THREADX_STRATEGY_DIR is set; ``strategy_dir`` gives a test its own. The
    same for the user config folder (THREADX_CONFIG_DIR: the user threadx.toml)."""
    import os
    import tempfile

    os.environ.setdefault("THREADX_STRATEGY_DIR", tempfile.mkdtemp(prefix="threadx-test-strategies-"))
    # nor the developer's user settings (~/.config/threadx/threadx.toml) or GPU profile
    os.environ.setdefault("THREADX_CONFIG_DIR", tempfile.mkdtemp(prefix="threadx-test-config-"))
    # nor a standby job process per app run of AppTest (tests/test_jobs.py and the served app of
    # the browser tests switch it on)
    os.environ.setdefault("THREADX_APP_STANDBY", "off")


@pytest.fixture(autouse=True)
def no_load_trial_left():
    """A test that ran the app (app.py sets the server's load trial: threadx.ui.user_code) leaves
    none behind: later tests load strategies-folder files in this process, as the CLI does."""
    yield
    from threadx.strategy import user

    user.set_load_trial(None)


@pytest.fixture
def strategy_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty strategies folder in tmp_path, also set as THREADX_STRATEGY_DIR."""
    root = tmp_path / "strategies"
    root.mkdir()
    monkeypatch.setenv("THREADX_STRATEGY_DIR", str(root))
    return root


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` beside the repo (real Binance candles); skips the test when absent."""
    if not (SHARED_DATA / "binance").is_dir():
        pytest.skip(f"real market data not found at {SHARED_DATA} (it sits beside the repo in CI)")
    return SHARED_DATA


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data root in tmp_path, also set as THREADX_DATA_ROOT."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("THREADX_DATA_ROOT", str(root))
    return root


@pytest.fixture(scope="session")
def btc_1h() -> "pd.DataFrame":
    """The real BTC/USDT 1h candles (12.5k bars) as a timestamp-indexed frame; skips when absent."""
    import pandas as pd

    path = SHARED_DATA / "binance" / "BTC_USDT-1h.parquet"
    if not path.exists():
        pytest.skip(f"real market data not found at {path} (it sits beside the repo in CI)")
    return pd.read_parquet(path).set_index("timestamp")


@pytest.fixture(scope="session")
def synthetic_bars() -> "Bars":
    """A year of the seeded synthetic 1h sample (no real data needed)."""
    from threadx.data.bars import as_bars
    from threadx.data.synthetic import generate_synthetic

    return as_bars(generate_synthetic(days=365, seed=7))


@pytest.fixture
def fresh_streamlit_caches():
    """Streamlit's data and resource caches emptied before and after the test."""
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def store_every_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every indicator result goes to the disk cache (setting ``cache.min_compute`` 0), however
    quickly it computes: for the tests of the disk level's mechanics."""
    monkeypatch.setenv("THREADX_CACHE_MIN_COMPUTE", "0")
