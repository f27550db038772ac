"""Helpers shared by the benchmark scripts: where the real candles are, the synthetic
fallback, measurement steps run in fresh processes, and the memory of a process tree.

Imported as ``benchlib`` by the scripts of this folder (Python puts a script's folder first
on ``sys.path``).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import psutil

BTC_1H = Path("data") / "binance" / "BTC_USDT-1h.parquet"
_REPO = Path(__file__).resolve().parents[1]


def find_btc_1h() -> Path | None:
    """The real BTC/USDT 1h candles: ``$THREADX_BENCH_DATA``, else ``shared/data/binance/
    BTC_USDT-1h.parquet`` next to the repository or any folder above it (a git worktree sits
    deeper than the main checkout), else under the ThreadX data root; None when absent."""
    env = os.environ.get("THREADX_BENCH_DATA")
    if env:
        return Path(env) if Path(env).is_file() else None
    for folder in _REPO.parents:
        candidate = folder / "shared" / BTC_1H
        if candidate.is_file():
            return candidate
    try:
        from threadx.config import settings
    except ImportError:  # peak_memory.py needs no threadx
        return None
    candidate = settings().data_root / "binance" / "BTC_USDT-1h.parquet"
    return candidate if candidate.is_file() else None


# The default file of the scripts: the real candles, or where they used to be looked for
# (a clear FileNotFoundError names it).
DEFAULT_FILE = find_btc_1h() or _REPO.parent / "shared" / BTC_1H


def synthetic_file(folder: Path) -> Path:
    """The built-in synthetic BTC/USDT 1h sample (17,520 bars) written to ``folder``."""
    from threadx.data.synthetic import generate_synthetic

    path = Path(folder) / "synthetic-BTC_USDT-1h.parquet"
    if not path.exists():
        generate_synthetic("BTC_USDT", "1h").to_parquet(path)
    return path


def data_file(path: str | Path | None, folder: Path) -> tuple[Path, str | None]:
    """(file to read, note): ``path`` if given, else the real BTC 1h candles, else the
    synthetic sample written to ``folder`` with a note saying so."""
    if path is not None:
        return Path(path), None
    real = find_btc_1h()
    if real is not None:
        return real, None
    return synthetic_file(folder), ("note: real BTC/USDT 1h candles not found (set THREADX_BENCH_DATA or pass a "
                                    "PARQUET): using the synthetic sample threadx.data.synthetic, 17,520 1h bars")


def load_frame(path: str | Path) -> pd.DataFrame:
    """OHLCV frame of a parquet file, indexed by time (a ``timestamp`` column or the index)."""
    frame = pd.read_parquet(path)
    return frame.set_index("timestamp") if "timestamp" in frame.columns else frame


def tree_memory(root: psutil.Process) -> tuple[int, int]:
    """(summed RSS, summed PSS) in bytes of ``root`` and its descendants: RSS counts shared
    pages once per process that maps them, PSS splits them between those processes."""
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0, 0
    rss = pss = 0
    for proc in procs:
        try:
            info = proc.memory_full_info()
        except psutil.Error:
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
    return rss, pss


class TreeRss:
    """Samples :func:`tree_memory` of a process (default: this one) in a thread while in
    the ``with`` block; keeps the peaks ``peak_rss`` and ``peak_pss`` (bytes)."""

    def __init__(self, pid: int | None = None, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_rss = 0
        self.peak_pss = 0
        self.samples: list[tuple[float, int, int]] = []  # (time.time(), summed RSS, summed PSS)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        me = psutil.Process(self.pid)
        while not self._stop.is_set():
            rss, pss = tree_memory(me)
            self.samples.append((time.time(), rss, pss))
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            time.sleep(self.interval)

    def __enter__(self) -> "TreeRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peaks_until(self, moment: float) -> tuple[int, int]:
        """(peak summed RSS, peak summed PSS) of the samples taken before ``moment`` (time.time())."""
        before = [(rss, pss) for t, rss, pss in self.samples if t <= moment] or [(0, 0)]
        return max(r for r, _ in before), max(p for _, p in before)


def run_json_step(script: str | Path, args: list[str], measure_memory: bool = False) -> tuple[dict, TreeRss | None]:
    """Run ``python SCRIPT --step ARGS...`` in a fresh process (so that no measurement pollutes
    another's timing or memory) and return the JSON object of its last stdout line, and the
    memory peaks of its process tree when ``measure_memory``. SystemExit if the step fails."""
    child = subprocess.Popen([sys.executable, str(script), "--step", *map(str, args)], stdout=subprocess.PIPE,
                             text=True)
    rss = None
    if measure_memory:
        with TreeRss(child.pid) as rss:
            out, _ = child.communicate()
    else:
        out, _ = child.communicate()
    if child.returncode != 0:
        raise SystemExit(f"step {args[0] if args else ''} of {Path(script).name} failed with exit code "
                         f"{child.returncode}")
    return json.loads(out.strip().splitlines()[-1]), rss


def first_and_warm(times: list[float]) -> tuple[float, float]:
    """(the first run in a process, the median of the warm runs after it) of a step's ``times``."""
    return times[0], statistics.median(times[1:])


def fresh_store(parent: Path, name: str) -> Path:
    """A new empty results folder under ``parent`` (a sweep's run id would resume in a used one)."""
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=parent))
