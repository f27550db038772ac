"""System monitor readings, history and process stats (threadx.monitor)."""
from __future__ import annotations

import os
import subprocess
import sys
import types
from datetime import datetime, timedelta, timezone

import pandas as pd
import psutil
import pytest

from threadx import monitor


@pytest.fixture
def no_pynvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError
    monkeypatch.setattr(monitor, "_nvml_ready", None)


def fake_pynvml(count: int = 2, init_error: Exception | None = None) -> types.ModuleType:
    """A stand-in for nvidia-ml-py with ``count`` devices (device 1 lacks power readings)."""
    nv = types.ModuleType("pynvml")
    nv.NVML_TEMPERATURE_GPU = 0

    def init():
        if init_error is not None:
            raise init_error

    def power(handle):
        if handle == 1:
            raise RuntimeError("Not Supported")
        return 123_400  # milliwatts

    nv.nvmlInit = init
    nv.nvmlDeviceGetCount = lambda: count
    nv.nvmlDeviceGetHandleByIndex = lambda i: i
    nv.nvmlDeviceGetName = lambda h: b"Fake GPU" if h == 0 else "Fake GPU 2"
    nv.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=40 + h, memory=10)
    nv.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=2 * 2**30, total=8 * 2**30, free=6 * 2**30)
    nv.nvmlDeviceGetTemperature = lambda h, sensor: 61
    nv.nvmlDeviceGetPowerUsage = power
    return nv


def test_sample_keys_and_types(no_pynvml):
    s = monitor.sample()
    assert set(s) >= {"time", "cpu_percent", "cpu_total", "ram", "swap", "gpus", "gpu_status"}
    assert isinstance(s["time"], datetime) and s["time"].tzinfo is not None
    assert isinstance(s["cpu_percent"], list) and len(s["cpu_percent"]) == psutil.cpu_count()
    assert all(isinstance(v, float) and 0 <= v <= 100 for v in s["cpu_percent"])
    assert isinstance(s["cpu_total"], float) and 0 <= s["cpu_total"] <= 100
    for key in ("ram", "swap"):
        assert set(s[key]) == {"used", "total", "percent"}
        assert isinstance(s[key]["used"], int) and isinstance(s[key]["total"], int)
        assert 0 <= s[key]["percent"] <= 100
    assert s["ram"]["total"] > 0 and 0 < s["ram"]["used"] <= s["ram"]["total"]


def test_no_pynvml_gives_no_gpus_and_says_why(no_pynvml):
    s = monitor.sample()
    assert s["gpus"] == []
    assert "not installed" in s["gpu_status"] and "nvidia-ml-py" in s["gpu_status"]


def test_gpus_read_through_nvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml())
    monkeypatch.setattr(monitor, "_nvml_ready", None)
    s = monitor.sample()
    assert "2 NVIDIA GPU" in s["gpu_status"]
    g0, g1 = s["gpus"]
    assert g0 == {"index": 0, "name": "Fake GPU", "util_percent": 40.0, "mem_used": 2 * 2**30,
                  "mem_total": 8 * 2**30, "temperature_c": 61.0, "power_w": pytest.approx(123.4)}
    assert g1["name"] == "Fake GPU 2" and g1["power_w"] is None  # unsupported reading -> None

    history = monitor.MonitorHistory()
    history.add(s)
    frame = history.frame()
    assert list(frame.columns) == ["cpu_total", "ram_percent", "swap_percent", "gpu0_mem_percent", "gpu0_util",
                                   "gpu1_mem_percent", "gpu1_util"]
    assert frame["gpu0_mem_percent"].iloc[0] == pytest.approx(25.0)
    assert frame["gpu1_util"].iloc[0] == 41.0


@pytest.mark.parametrize("module, expected", [
    (fake_pynvml(init_error=RuntimeError("NVML Shared Library Not Found")), "no NVIDIA driver"),
    (fake_pynvml(count=0), "no NVIDIA GPU found"),
])
def test_gpu_status_without_driver_or_device(monkeypatch, module, expected):
    monkeypatch.setitem(sys.modules, "pynvml", module)
    monkeypatch.setattr(monitor, "_nvml_ready", None)
    gpus, status = monitor.gpu_sample()
    assert gpus == [] and expected in status


def _reading(t: datetime, cpu: float) -> dict:
    return {"time": t, "cpu_percent": [cpu, cpu], "cpu_total": cpu, "ram": {"used": 1, "total": 4, "percent": 25.0},
            "swap": {"used": 0, "total": 0, "percent": 0.0}, "gpus": [], "gpu_status": "none"}


def test_history_keeps_only_the_last_max_age_seconds():
    history = monitor.MonitorHistory(max_age_s=60)
    t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    for k in range(10):
        history.add(_reading(t0 + timedelta(seconds=20 * k), float(k)))
    frame = history.frame()
    # newest at 180 s: readings at 120, 140, 160, 180 s are within 60 s
    assert len(history) == 4 and list(frame["cpu_total"]) == [6.0, 7.0, 8.0, 9.0]
    assert isinstance(frame.index, pd.DatetimeIndex) and str(frame.index.tz) == "UTC"
    assert frame.index[0] == pd.Timestamp(t0 + timedelta(seconds=120))
    assert list(frame.columns) == ["cpu_total", "ram_percent", "swap_percent"]
    assert history.latest()["cpu_total"] == 9.0


def test_history_of_live_samples_and_empty_history(no_pynvml):
    history = monitor.MonitorHistory(max_age_s=600)
    empty = history.frame()
    assert empty.empty and list(empty.columns) == ["cpu_total", "ram_percent", "swap_percent"]
    for _ in range(3):
        history.add(monitor.sample())
    frame = history.frame()
    assert len(frame) == 3 and frame.index.is_monotonic_increasing
    assert frame["ram_percent"].between(0, 100).all()


def test_process_stats_skips_vanished_processes():
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stats = monitor.process_stats([os.getpid(), gone.pid])
    assert [s["pid"] for s in stats] == [os.getpid()]
    me = stats[0]
    assert set(me) == {"pid", "name", "cpu_percent", "rss_mb"}
    assert me["rss_mb"] > 1 and isinstance(me["cpu_percent"], float) and me["name"]
    assert monitor.process_stats([]) == []


def test_two_readings_a_few_ms_apart_repeat_the_first_instead_of_a_false_zero(no_pynvml, monkeypatch):
    """psutil measures CPU since its previous call: the page and its live fragment read twice
    within milliseconds, and the history drew 0 % while the machine was at 84 %."""
    from threadx import monitor

    # psutil's first call in a process (0.0: nothing to compare with) primes it and is never shown
    readings = iter([[0.0, 0.0], 0.0, [80.0, 90.0], 85.0, [0.0, 0.0], 0.0, [40.0, 60.0], 50.0])
    monkeypatch.setattr(monitor.psutil, "cpu_percent", lambda percpu=False, interval=None: next(readings))
    monkeypatch.setattr(monitor, "_cpu_last", [None])
    clock = iter([99.9, 100.0, 100.01, 101.0])
    monkeypatch.setattr(monitor, "_clock", lambda: next(clock))
    first, again, later = monitor.sample(), monitor.sample(), monitor.sample()
    assert (first["cpu_percent"], first["cpu_total"]) == ([80.0, 90.0], 85.0)
    assert (again["cpu_percent"], again["cpu_total"]) == ([80.0, 90.0], 85.0)  # not the 0 % of a 10 ms interval
    assert (later["cpu_percent"], later["cpu_total"]) == ([0.0, 0.0], 0.0)  # a second on: a new reading


def test_a_process_first_reading_is_its_mean_since_it_started_not_zero():
    """psutil's first cpu_percent(None) of a process reads 0.0: a job that had just started
    showed 0 % in the monitor's table beside a busy machine."""
    import os
    import time

    from threadx import monitor

    started = time.process_time()
    while time.process_time() - started < 0.3:  # this process: busy
        pass
    monitor._processes.pop(os.getpid(), None)  # not seen before: the first reading
    (first,) = monitor.process_stats([os.getpid()])
    assert first["cpu_percent"] > 5.0, first


def test_readings_from_threads_that_never_read_measure_the_load(no_pynvml, monkeypatch):
    """psutil 7 keeps its last CPU sample per thread: a Streamlit thread's first reading was 0 %
    while a core was busy (the history showed 0 % among 84 % readings)."""
    import threading
    import time

    from threadx import monitor

    monkeypatch.setattr(monitor, "_cpu_last", [None])
    monitor.sample()  # read once, in this thread
    totals = []

    def busy_then_read() -> None:
        started = time.process_time()
        while time.process_time() - started < 0.7:  # over CPU_MIN_INTERVAL_S: a new reading, of a busy core
            pass
        totals.append(monitor.sample()["cpu_total"])

    for _ in range(2):
        thread = threading.Thread(target=busy_then_read)  # a thread that never read the CPU
        thread.start()
        thread.join()
    assert all(total > 0.0 for total in totals), totals
