"""System monitor: CPU per core, RAM, swap, NVIDIA GPUs and process stats (SPEC §9.5).

``sample()`` takes one cheap reading (CPU percentages are measured since the previous
call, as ``psutil.cpu_percent(interval=None)`` does; the first reading in a process waits
``CPU_PRIME_S`` for a first interval, where psutil gave a false 0 %; a process's first
reading is its mean since it started, :func:`process_cpu_percent`). GPUs are read through
NVML (``pip install nvidia-ml-py``, imported as ``pynvml``) when the package and a driver are present; otherwise ``gpus`` is empty and
``gpu_status`` says why. Nothing here raises on a machine without a GPU.

``MonitorHistory`` keeps the readings of the last ``max_age_s`` seconds and gives them as
DataFrames for the history charts (percentages, and GPU temperature / power).
"""
from __future__ import annotations

import os
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, Iterable

import pandas as pd
import psutil

_nvml_lock = threading.Lock()
_nvml_ready: Any = None  # the pynvml module that nvmlInit succeeded with
_processes: dict[int, psutil.Process] = {}
_processes_lock = threading.Lock()


def _mem(total: float, used: float, percent: float) -> dict[str, float]:
    return {"used": int(used), "total": int(total), "percent": float(percent)}


CPU_MIN_INTERVAL_S = 0.5  # a reading asked for sooner repeats the last one
CPU_PRIME_S = 0.1  # the first reading of a process measures over this much (psutil's first call reads 0.0)
_cpu_last: list[Any] = [None]  # (monotonic time, per core, total) of the last CPU reading
_cpu_lock = threading.Lock()
_clock = time.monotonic


# psutil (7.x) keeps its last CPU sample per thread: a reading from a Streamlit thread that had
# never read gave 0 %, one that read long ago its mean since then. Every reading is taken in one
# thread, this process's (a forked child does not have its parent's thread: it starts its own).
_cpu_thread: list[Any] = [None, None]  # (pid, executor)


def _cpu_reading() -> tuple[list[float], float]:
    """(per core, total) CPU percent since the previous reading, whichever thread asks. psutil
    measures since its previous call, so two readings a few ms apart (the page and its live
    fragment) gave a false 0 %: one asked for within :data:`CPU_MIN_INTERVAL_S` of the last is
    that one."""
    with _cpu_lock:
        if _cpu_thread[0] != os.getpid():
            _cpu_thread[:] = [os.getpid(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="threadx-cpu-reading")]
            _cpu_last[0] = None  # (the parent's reading was primed in its own thread)
        return _cpu_thread[1].submit(_read_cpu).result()


def _read_cpu() -> tuple[list[float], float]:
    """:func:`_cpu_reading` in the one thread that reads the CPU (its lock held)."""
    clock = _clock()
    last = _cpu_last[0]
    if last is not None and clock - last[0] < CPU_MIN_INTERVAL_S:
        return list(last[1]), last[2]
    if last is None:  # psutil's first call in a thread reads 0.0 (nothing to compare): prime it
        try:
            psutil.cpu_percent(percpu=True, interval=None)
            psutil.cpu_percent(interval=None)
        except Exception:  # noqa: BLE001 - read (and fall back) below
            pass
        time.sleep(CPU_PRIME_S)
        clock = _clock()
    try:
        per_core = [float(v) for v in psutil.cpu_percent(percpu=True, interval=None)]
    except Exception:  # noqa: BLE001 - a restricted /proc must not break the page
        per_core = []
    try:
        total = float(psutil.cpu_percent(interval=None))
    except Exception:  # noqa: BLE001
        total = sum(per_core) / len(per_core) if per_core else 0.0
    _cpu_last[0] = (clock, per_core, total)
    return list(per_core), total


def sample() -> dict[str, Any]:
    """One reading of the machine.

    Keys: ``time`` (UTC datetime), ``cpu_percent`` (list, one float per logical core),
    ``cpu_total`` (float), ``ram`` and ``swap`` (dicts: used and total in bytes, percent),
    ``gpus`` (list of dicts: index, name, util_percent, mem_used, mem_total (bytes),
    temperature_c, power_w; a value the device does not report is None) and
    ``gpu_status`` (text: how many GPUs were read, or why none).
    """
    now = datetime.now(timezone.utc)
    per_core, total = _cpu_reading()
    try:
        vm = psutil.virtual_memory()
        ram = _mem(vm.total, vm.total - vm.available, vm.percent)
    except Exception:  # noqa: BLE001
        ram = _mem(0, 0, 0.0)
    try:
        sw = psutil.swap_memory()
        swap = _mem(sw.total, sw.used, sw.percent)
    except Exception:  # noqa: BLE001
        swap = _mem(0, 0, 0.0)
    gpus, gpu_status = gpu_sample()
    return {"time": now, "cpu_percent": per_core, "cpu_total": total, "ram": ram, "swap": swap,
            "gpus": gpus, "gpu_status": gpu_status}


def _nvml() -> tuple[Any, str]:
    """(pynvml module initialised, "") or (None, why not)."""
    global _nvml_ready
    try:
        import pynvml
    except Exception:  # noqa: BLE001 - ImportError, or a broken install
        return None, "no GPU monitoring: the nvidia-ml-py package (pynvml) is not installed"
    with _nvml_lock:
        if _nvml_ready is pynvml:
            return pynvml, ""
        try:
            pynvml.nvmlInit()
        except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded, ...
            return None, f"no NVIDIA driver: {_nvml_text(exc) or type(exc).__name__}"
        _nvml_ready = pynvml
        return pynvml, ""


def _nvml_text(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def gpu_sample() -> tuple[list[dict[str, Any]], str]:
    """(one dict per NVIDIA GPU, status text); never raises."""
    nv, why = _nvml()
    if nv is None:
        return [], why
    try:
        count = int(nv.nvmlDeviceGetCount())
    except Exception as exc:  # noqa: BLE001
        return [], f"no NVIDIA GPU readable: {_nvml_text(exc) or type(exc).__name__}"
    if count == 0:
        return [], "no NVIDIA GPU found (the driver reports 0 devices)"
    gpus = []
    for index in range(count):
        try:
            handle = nv.nvmlDeviceGetHandleByIndex(index)
        except Exception:  # noqa: BLE001
            continue

        def read(fn, *args, _h=handle):
            try:
                return fn(_h, *args)
            except Exception:  # noqa: BLE001 - not supported on this device
                return None

        name = read(nv.nvmlDeviceGetName)
        util = read(nv.nvmlDeviceGetUtilizationRates)
        mem = read(nv.nvmlDeviceGetMemoryInfo)
        temp = read(nv.nvmlDeviceGetTemperature, getattr(nv, "NVML_TEMPERATURE_GPU", 0))
        power = read(nv.nvmlDeviceGetPowerUsage)
        gpus.append({
            "index": index,
            "name": _text(name) if name is not None else f"GPU {index}",
            "util_percent": float(util.gpu) if util is not None else None,
            "mem_used": int(mem.used) if mem is not None else None,
            "mem_total": int(mem.total) if mem is not None else None,
            "temperature_c": float(temp) if temp is not None else None,
            "power_w": float(power) / 1000.0 if power is not None else None,  # NVML reports milliwatts
        })
    if not gpus:
        return [], f"no NVIDIA GPU readable ({count} reported, none answered)"
    return gpus, f"{len(gpus)} NVIDIA GPU(s) via NVML"


class MonitorHistory:
    """Readings of the last ``max_age_s`` seconds (by the readings' own time), thread-safe."""

    def __init__(self, max_age_s: float = 600.0, max_len: int = 100_000):
        self.max_age_s = float(max_age_s)
        self._samples: deque[dict[str, Any]] = deque(maxlen=max_len)
        self._lock = threading.Lock()
        self._newest: pd.Timestamp | None = None

    def __len__(self) -> int:
        return len(self._samples)

    def add(self, reading: dict[str, Any]) -> None:
        """Append a reading of :func:`sample` and drop those older than ``max_age_s``."""
        stamp = _utc(reading.get("time"))
        with self._lock:
            self._samples.append({**reading, "time": stamp})
            self._newest = stamp if self._newest is None else max(self._newest, stamp)
            cutoff = self._newest - pd.Timedelta(seconds=self.max_age_s)
            while self._samples and self._samples[0]["time"] < cutoff:
                self._samples.popleft()

    def latest(self) -> dict[str, Any] | None:
        with self._lock:
            return self._samples[-1] if self._samples else None

    def frame(self) -> pd.DataFrame:
        """One row per reading, indexed by UTC time: cpu_total, ram_percent, swap_percent,
        and per GPU ``gpu<i>_util`` and ``gpu<i>_mem_percent``."""
        with self._lock:
            samples = list(self._samples)
        rows = []
        for s in samples:
            row = {"cpu_total": s.get("cpu_total"), "ram_percent": (s.get("ram") or {}).get("percent"),
                   "swap_percent": (s.get("swap") or {}).get("percent")}
            for gpu in s.get("gpus") or []:
                i = gpu.get("index")
                row[f"gpu{i}_util"] = gpu.get("util_percent")
                used, total = gpu.get("mem_used"), gpu.get("mem_total")
                row[f"gpu{i}_mem_percent"] = 100.0 * used / total if used is not None and total else None
            rows.append(row)
        index = pd.DatetimeIndex([s["time"] for s in samples], name="time")
        if index.tz is None:
            index = index.tz_localize("UTC")
        frame = pd.DataFrame(rows, index=index)
        for column in ("cpu_total", "ram_percent", "swap_percent"):
            if column not in frame:
                frame[column] = pd.Series(dtype=float)
        gpu_columns = sorted((c for c in frame.columns if c.startswith("gpu")),
                             key=lambda c: (int(c[3:].split("_", 1)[0]), c))
        return frame[["cpu_total", "ram_percent", "swap_percent", *gpu_columns]].astype(float)

    def gpu_frame(self) -> pd.DataFrame:
        """Per GPU and reading, indexed by UTC time: ``gpu<i>_temp_c`` and ``gpu<i>_power_w``
        (the units differ from :meth:`frame`'s percentages, hence a frame of their own)."""
        with self._lock:
            samples = list(self._samples)
        rows = []
        for s in samples:
            row = {}
            for gpu in s.get("gpus") or []:
                i = gpu.get("index")
                row[f"gpu{i}_temp_c"] = gpu.get("temperature_c")
                row[f"gpu{i}_power_w"] = gpu.get("power_w")
            rows.append(row)
        index = pd.DatetimeIndex([s["time"] for s in samples], name="time")
        if index.tz is None:
            index = index.tz_localize("UTC")
        frame = pd.DataFrame(rows, index=index)
        columns = sorted(frame.columns, key=lambda c: (int(c[3:].split("_", 1)[0]), c))
        return frame[columns].astype(float)


def _utc(value: Any) -> pd.Timestamp:
    if value is None:
        return pd.Timestamp.now(tz="UTC")
    if isinstance(value, (int, float)):
        return pd.Timestamp(value, unit="s", tz="UTC")
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def cached_process(pid: int) -> psutil.Process | None:
    """A psutil.Process kept between calls, so that cpu_percent(None) measures since the
    previous call; None when the process is gone."""
    with _processes_lock:
        proc = _processes.get(pid)
        try:
            if proc is None or not proc.is_running():  # is_running also detects a reused pid
                proc = psutil.Process(pid)
                _processes[pid] = proc
        except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
            _processes.pop(pid, None)
            return None
        if len(_processes) > 4096:  # forget processes that ended
            for old in [p for p, v in _processes.items() if not v.is_running()]:
                _processes.pop(old, None)
        return proc


_primed: dict[int, psutil.Process] = {}  # pid -> the Process object whose cpu_percent(None) has a previous call


def process_cpu_percent(proc: psutil.Process) -> float:
    """CPU percent of ``proc`` (one of :func:`cached_process`) since the previous call; the
    first time, its mean since it started (psutil's first call reads 0.0: a job that had just
    started showed 0 % beside a busy machine)."""
    since_last = float(proc.cpu_percent(None))
    with _processes_lock:  # (by identity: psutil's Process objects of one pid compare equal)
        first = _primed.get(proc.pid) is not proc
        _primed[proc.pid] = proc
        if len(_primed) > 4096:
            for pid in [pid for pid in _primed if pid not in _processes]:
                _primed.pop(pid)
    if not first:
        return since_last
    times = proc.cpu_times()
    alive = time.time() - proc.create_time()
    return 100.0 * (times.user + times.system) / alive if alive > 0 else 0.0


def process_stats(pids: Iterable[int]) -> list[dict[str, Any]]:
    """pid, name, cpu_percent (since the previous call for that pid; the first time, the mean
    since it started) and rss_mb of each live process in ``pids``; vanished ones are skipped."""
    out = []
    for pid in pids:
        try:
            proc = cached_process(int(pid))
            if proc is None:
                continue
            with proc.oneshot():
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                out.append({"pid": proc.pid, "name": proc.name(), "cpu_percent": process_cpu_percent(proc),
                            "rss_mb": proc.memory_info().rss / 2**20})
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied, ValueError, TypeError):
            continue
    return out
