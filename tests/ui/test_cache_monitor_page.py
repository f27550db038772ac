"""System monitor page: the indicator disk cache against its limit (warning near it)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("streamlit")

from apptest_helpers import open_page  # noqa: E402

from threadx.indicators import IndicatorBank  # noqa: E402
from threadx.units import format_bytes  # noqa: E402


# these tests are about the disk level's mechanics: every result goes to disk (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("store_every_result")


def _frame() -> pd.DataFrame:
    close = 100.0 + np.arange(500, dtype=np.float64)
    idx = pd.date_range("2024-01-01", periods=len(close), freq="1h", tz="UTC", name="timestamp")
    return pd.DataFrame({"open": close, "high": close + 1, "low": close - 1, "close": close, "volume": 1.0},
                        index=idx)


def _fill_cache(workspace) -> int:
    """Write one indicator entry into the workspace's cache; returns the bytes on disk."""
    IndicatorBank(cache_dir=workspace / "cache").ensure(_frame(), "sma", period=5)
    return sum(p.stat().st_size for p in (workspace / "cache").rglob("*") if p.is_file())


def _cache_warnings(at) -> list[str]:
    return [w.value for w in at.warning if "disk cache" in w.value]


def test_monitor_warns_when_the_disk_cache_is_near_its_limit(workspace, monkeypatch):
    used = _fill_cache(workspace)
    monkeypatch.setenv("THREADX_CACHE_LIMIT", str(int(used / 0.95)))  # 95 % used
    at = open_page("5_System_monitor.py")
    (warning,) = _cache_warnings(at)
    assert "95.0 %" in warning and "THREADX_CACHE_LIMIT" in warning  # threadx.units: a fraction as %
    assert any("95.0 % of its" in c.value for c in at.caption)
    limit = f"of its {format_bytes(int(used / 0.95))} limit"  # a size in KiB/MiB/GiB, not raw bytes
    assert any(limit in c.value for c in at.caption), [c.value for c in at.caption]


def test_monitor_shows_usage_without_warning_below_the_threshold(workspace, monkeypatch):
    used = _fill_cache(workspace)
    monkeypatch.setenv("THREADX_CACHE_LIMIT", str(used * 2))  # 50 % used
    at = open_page("5_System_monitor.py")
    assert _cache_warnings(at) == []
    assert any("50.0 % of its" in c.value for c in at.caption)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Disk cache"] == format_bytes(used) and metrics["Disk cache"].endswith("iB")


def test_monitor_shows_process_memory_in_units_not_raw_bytes(monkeypatch):
    """The running sweep's processes: rss (bytes) and cpu_percent formatted, still numeric columns."""
    import json

    from threadx.ui import jobs

    job = jobs.JobInfo("j1", {"kind": "sweep", "params": {"label": "sweep x"}}, "", state="running", phase="running",
                       done=1234, total=5000, rate=321.0)
    monkeypatch.setattr(jobs.JobRegistry, "running", lambda self: [job])
    monkeypatch.setattr(jobs.JobRegistry, "worker_processes", lambda self, job_id: [
        {"pid": 4321, "name": "python", "cpu_percent": 97.5, "rss": 3 * 2**30, "role": "job"}])
    at = open_page("5_System_monitor.py")
    (table,) = at.dataframe
    assert table.value["rss"].tolist() == [3072.0]  # in MiB, still a number: the column sorts by value
    config = json.loads(table.proto.columns)
    assert config["rss"]["type_config"]["format"] == "%,.1f MiB"  # (Streamlit's "bytes" read decimal MB)
    assert config["cpu_percent"]["type_config"]["format"] == "%.0f %%"
    assert any("running 1,234 / 5,000 combos · 321 backtests/s" in m.value for m in at.markdown)  # the job's own line
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["RAM"].endswith(" %") and metrics["Memory"].endswith("B")  # "0 B", "1.2 MiB", ...


def test_monitor_shows_the_last_lines_of_the_log(workspace):
    from threadx import logs

    logs.reset()
    try:
        log = logs.logger()
        for i in range(80):
            log.info("sweep run ui-log-%02d completed", i)
    finally:
        logs.reset()
    at = open_page("5_System_monitor.py")
    (block,) = [c.value for c in at.code if "ui-log" in c.value]
    lines = block.splitlines()
    assert len(lines) == 50 and "ui-log-79" in lines[-1] and "ui-log-30" in lines[0]  # the last 50, newest last
    path = workspace / "results" / "logs" / "threadx.log"
    assert any(str(path) in c.value and "rotates at 5.0 MiB" in c.value for c in at.caption), \
        [c.value for c in at.caption]


def test_monitor_says_when_there_is_no_log_yet(workspace):
    at = open_page("5_System_monitor.py")
    assert any("No log yet" in c.value for c in at.caption)


def test_monitor_says_how_many_results_were_quicker_to_compute_than_to_store(workspace, monkeypatch):
    from threadx.indicators import default_bank

    monkeypatch.setenv("THREADX_CACHE_MIN_COMPUTE", "auto")  # the built-in default
    default_bank().ensure(_frame(), "sma", period=7)  # the server's bank: 0.1 ms of work, not stored
    at = open_page("5_System_monitor.py")
    assert any("quicker to compute than to read back" in c.value for c in at.caption), [c.value for c in at.caption]


def test_monitor_names_the_least_compute_time_when_it_is_set(workspace, monkeypatch):
    from threadx.indicators import default_bank

    monkeypatch.setenv("THREADX_CACHE_MIN_COMPUTE", "60")  # stored only after a minute of work
    default_bank().ensure(_frame(), "sma", period=9)
    at = open_page("5_System_monitor.py")
    captions = [c.value for c in at.caption]
    assert any("1 result was computed in under 60 s" in c for c in captions), captions
    assert not any("quicker to compute than to read back" in c for c in captions), captions


def test_a_settings_file_made_bad_while_the_monitor_polls_is_one_error_line(workspace):
    at = open_page("5_System_monitor.py")
    assert not at.exception and not at.error
    (workspace / "threadx.toml").write_text("[cache]\nmin_compute = -1\n", encoding="utf-8")  # cwd: the workspace
    at.run()  # the page's polling fragment runs again, without app.py's check of the settings
    assert not at.exception, at.exception
    assert any("min_compute" in e.value and "must be" in e.value for e in at.error), [e.value for e in at.error]


def test_a_running_research_reads_its_steps_not_combos(monkeypatch):
    """The monitor wrote every job as "N/M combos · 0 backtests/s": a research counts steps."""
    from threadx.ui import jobs

    job = jobs.JobInfo("j2", {"kind": "research", "params": {"strategies": ["bb_atr"], "datasets": []}}, "",
                       state="running", phase="running", done=2, total=12)
    monkeypatch.setattr(jobs.JobRegistry, "running", lambda self: [job])
    monkeypatch.setattr(jobs.JobRegistry, "worker_processes", lambda self, job_id: [])
    at = open_page("5_System_monitor.py")
    lines = [m.value for m in at.markdown if "research bb_atr" in m.value]
    assert lines and "running 2 / 12 steps" in lines[0] and "combos" not in lines[0] and "/s" not in lines[0], lines


def test_every_page_served_adds_to_the_machine_history_at_most_every_2_s(monkeypatch):
    """The history held only readings taken while someone had the System monitor open (a gap while
    a sweep ran with the Optimisation page open): every page served, and the sidebar's job list
    while jobs run, take one too (no thread of their own: the tests' monkeypatched readings stay theirs)."""
    import json

    from streamlit.testing.v1 import AppTest

    from threadx import monitor
    from threadx.ui import state

    from apptest_helpers import ROOT

    state.machine_history.clear()
    taken = []
    real = monitor.sample
    monkeypatch.setattr(monitor, "sample", lambda: taken.append(1) or real())
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    app.run()
    assert not app.exception, app.exception
    assert len(state.machine_history()) == 1 and len(taken) == 1  # the page served took one
    app.run()
    assert len(taken) == 1  # again within 2 s: the same reading
    monkeypatch.setattr(state, "MONITOR_EVERY_S", 0.0)
    app.run()
    assert len(state.machine_history()) == 2
    at = open_page("5_System_monitor.py")
    assert not at.exception, at.exception
    titles = [json.loads(chart.proto.spec)["layout"]["title"]["text"] for chart in at.get("plotly_chart")]
    assert any(t.startswith("Last 10 minutes") for t in titles), titles
