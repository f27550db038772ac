"""Indicator disk cache: keyed by the indicator source hash, bounded by a size limit (LRU)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from threadx import codehash
from threadx.cli import main
from threadx.config import DEFAULT_CACHE_LIMIT_BYTES, parse_bytes, settings
from threadx.data.bars import as_bars
from threadx.errors import ParamError
from threadx.indicators import IndicatorBank, compute, default_bank
from threadx.indicators import bank as bank_module
from threadx.indicators import kernels, registry
from threadx.indicators.registry import IndicatorDef
from threadx.units import format_bytes


# these tests are about the disk level's mechanics: every result goes to disk (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("store_every_result")



@pytest.fixture
def bars():
    rng = np.random.default_rng(5)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, 1500)))
    idx = pd.date_range("2023-01-01", periods=len(close), freq="1h", tz="UTC", name="timestamp")
    frame = pd.DataFrame({"open": close, "high": close * 1.002, "low": close * 0.998, "close": close,
                          "volume": 1.0}, index=idx)
    return as_bars(frame)


def _parquets(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.parquet"))


def _entry_bytes(path: Path) -> int:
    return path.stat().st_size + path.with_suffix(".json").stat().st_size


# ------------------------------------------------------------------ code hash

def test_source_hash_follows_the_file_and_is_shared_with_the_gpu_kernel(tmp_path):
    src = tmp_path / "mod.py"
    src.write_text("def f():\n    return 1\n")
    before = codehash.source_hash(src)
    assert codehash.source_hash(src) == before and len(before) == 16
    src.write_text("def f():\n    return 2\n")
    codehash._files_hash.cache_clear()  # a new process would see the edit
    assert codehash.source_hash(src) != before

    from threadx.engine import kernel as engine
    from threadx.engine import layout
    from threadx.gpu import kernel as gpu_kernel

    assert gpu_kernel.KERNEL_VERSION == codehash.source_hash(engine, layout, gpu_kernel)
    assert bank_module.indicator_code_hash() == codehash.source_hash(kernels, registry)
    assert codehash.source_file(kernels.sma) == Path(kernels.__file__).resolve()  # numba dispatcher


def test_warm_entry_of_other_indicator_code_is_not_served(tmp_path, bars, monkeypatch):
    """An entry written by older indicator code (another source hash) is recomputed."""
    real_compute_many = IndicatorDef.compute_many

    def old_code(self, data, list_of_params):  # the "old" kernel: values off by a factor 2
        return [{k: v * 2.0 for k, v in out.items()} for out in real_compute_many(self, data, list_of_params)]

    old = IndicatorBank(cache_dir=tmp_path)
    old.code_hash = "0123456789abcdef"
    with monkeypatch.context() as m:
        m.setattr(IndicatorDef, "compute_many", old_code)
        stale = old.ensure(bars, "rsi", period=14)
    assert len(_parquets(tmp_path)) == 1

    new = IndicatorBank(cache_dir=tmp_path)
    assert new.code_hash == bank_module.indicator_code_hash() != old.code_hash
    fresh = new.ensure(bars, "rsi", period=14)
    truth = compute(bars, "rsi", {"period": 14})
    assert np.array_equal(fresh["value"], truth["value"], equal_nan=True)
    assert not np.array_equal(fresh["value"], stale["value"], equal_nan=True)
    s = new.stats()
    assert s["disk_hits"] == 0 and s["misses"] == 1


def test_sidecar_of_other_code_under_the_same_key_is_rejected(tmp_path, bars):
    bank = IndicatorBank(cache_dir=tmp_path)
    bank.ensure(bars, "ema", period=10)
    (parquet,) = _parquets(tmp_path)
    sidecar = parquet.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    assert meta["code"] == bank.code_hash
    meta["code"] = "fedcba9876543210"
    sidecar.write_text(json.dumps(meta))

    fresh = IndicatorBank(cache_dir=tmp_path)
    fresh.ensure(bars, "ema", period=10)
    s = fresh.stats()
    assert s["disk_hits"] == 0 and s["disk_rejected"] == 1 and s["misses"] == 1


# ------------------------------------------------------------------ size limit

def _fill(bank: IndicatorBank, bars, periods) -> None:
    for period in periods:
        bank.ensure(bars, "sma", period=period)


def test_writes_past_the_limit_evict_the_least_recently_used(tmp_path, bars):
    probe = IndicatorBank(cache_dir=tmp_path / "probe")
    _fill(probe, bars, [5])
    entry = _entry_bytes(_parquets(tmp_path / "probe")[0])

    limit = int(3.5 * entry)
    writer = IndicatorBank(cache_dir=tmp_path / "c", disk_limit_bytes=limit)
    _fill(writer, bars, [5, 6, 7])
    assert writer.stats()["disk_evicted"] == 0
    folder = tmp_path / "c" / "sma"
    by_period = {json.loads(p.with_suffix(".json").read_text())["params"]["period"]: p for p in _parquets(folder)}
    old = time.time() - 1000
    for rank, period in enumerate((5, 6, 7)):  # written in this order, a second apart
        os.utime(by_period[period], (old + rank, old + rank))

    reader = IndicatorBank(cache_dir=tmp_path / "c", disk_limit_bytes=limit)
    reader.ensure(bars, "sma", period=5)  # a disk hit makes period 5 the most recently used
    assert reader.stats()["disk_hits"] == 1
    assert by_period[5].stat().st_mtime > old + 100

    reader.ensure(bars, "sma", period=8)  # the write crosses the limit: period 6 goes
    left = {json.loads(p.with_suffix(".json").read_text())["params"]["period"] for p in _parquets(folder)}
    assert left == {5, 7, 8}
    assert not by_period[6].with_suffix(".json").exists()
    s = reader.stats()
    assert s["disk_evicted"] == 1 and s["disk_bytes"] <= limit


def test_total_stays_under_the_limit_after_each_write(tmp_path, bars):
    probe = IndicatorBank(cache_dir=tmp_path / "probe")
    _fill(probe, bars, [5])
    limit = 5 * _entry_bytes(_parquets(tmp_path / "probe")[0])
    bank = IndicatorBank(cache_dir=tmp_path / "c", disk_limit_bytes=limit)
    for period in range(5, 35):
        bank.ensure(bars, "sma", period=period)
        assert bank.stats()["disk_bytes"] <= limit
    s = bank.stats()
    assert s["disk_writes"] == 30 and s["disk_evicted"] >= 24 and 3 <= s["disk_files"] <= 5
    assert s["disk_limit_bytes"] == limit
    assert s["disk_used_share"] == pytest.approx(s["disk_bytes"] / limit)
    assert s["disk_near_limit"] == (s["disk_used_share"] >= bank_module.NEAR_LIMIT_SHARE)
    # the newest entries are the ones kept: they are served from disk to a new bank
    again = IndicatorBank(cache_dir=tmp_path / "c", disk_limit_bytes=limit)
    again.ensure(bars, "sma", period=34)
    assert again.stats()["disk_hits"] == 1


def test_dead_writers_temp_files_count_and_go_and_a_lowered_limit_applies_at_the_next_read(tmp_path, bars):
    """Writers killed mid-write left their .tmp files outside the count and the eviction (37 MB
    over a 10 MB limit, stats under by as much), and a limit lowered later never shrank the
    cache until a bank wrote again (with built-ins quick to compute, never)."""
    import subprocess
    import sys

    bank = IndicatorBank(cache_dir=tmp_path)
    _fill(bank, bars, [5, 6, 7])
    entry = _entry_bytes(_parquets(tmp_path)[0])
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    from threadx.files import writer_tag

    host = writer_tag().partition("-")[0]
    dead = tmp_path / "sma" / f"k.parquet.tmp-{host}-{int(gone.stdout)}-0123abcd"  # its writer exited
    dead.write_bytes(b"0" * 5000)
    live = tmp_path / "sma" / f"j.parquet.tmp-{writer_tag()}-4567cdef"  # a write in progress here
    live.write_bytes(b"0" * 100)
    other = tmp_path / "sma" / f"i.parquet.tmp-0000abcd-{int(gone.stdout)}-89abcdef"  # another machine's: asked
    other.write_bytes(b"")  # nothing (its pid is not this machine's), kept until an hour old
    assert bank.stats()["disk_bytes"] == sum(map(_entry_bytes, _parquets(tmp_path))) + 5100
    reader = IndicatorBank(cache_dir=tmp_path, disk_limit_bytes=int(1.5 * entry))
    reader.ensure(bars, "sma", period=7)  # only reads
    assert not dead.exists() and live.exists() and other.exists()
    assert len(_parquets(tmp_path)) == 1 and reader.stats()["disk_bytes"] <= 1.5 * entry


def test_an_entry_larger_than_the_limit_is_not_written(tmp_path, bars):
    bank = IndicatorBank(cache_dir=tmp_path, disk_limit_bytes=1000)
    bank.ensure(bars, "sma", period=5)
    assert bank.stats()["disk_files"] == 0 and bank.stats()["disk_errors"] == 0


def test_limit_defaults_to_the_setting_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("THREADX_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("THREADX_CACHE_LIMIT", raising=False)
    assert settings().cache_limit_bytes == DEFAULT_CACHE_LIMIT_BYTES == 2**30
    assert IndicatorBank(cache_dir=tmp_path).disk_limit_bytes == DEFAULT_CACHE_LIMIT_BYTES
    monkeypatch.setenv("THREADX_CACHE_LIMIT", "2GiB")
    assert IndicatorBank(cache_dir=tmp_path).disk_limit_bytes == 2 * 2**30
    assert default_bank().disk_limit_bytes == 2 * 2**30
    monkeypatch.setenv("THREADX_CACHE_LIMIT", "123456")
    assert default_bank().disk_limit_bytes == 123456
    assert IndicatorBank(cache_dir=tmp_path, disk_limit_bytes=777).disk_limit_bytes == 777
    monkeypatch.setenv("THREADX_CACHE_LIMIT", "lots")
    with pytest.raises(ParamError, match="THREADX_CACHE_LIMIT"):
        settings()


@pytest.mark.parametrize("text, size", [("1073741824", 2**30), ("2GiB", 2 * 2**30), ("500MB", 500 * 10**6),
                                        ("1.5 gb", 1_500_000_000), ("64kib", 65536), (4096, 4096)])
def test_parse_bytes(text, size):
    assert parse_bytes(text) == size


@pytest.mark.parametrize("text", ["", "0", "-5", "1 parsec", "GiB", "nan"])
def test_parse_bytes_refuses(text):
    with pytest.raises(ParamError):
        parse_bytes(text)


def test_cli_cache_stats_shows_usage_against_the_limit(tmp_path, monkeypatch, capsys, bars):
    monkeypatch.setenv("THREADX_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("THREADX_CACHE_LIMIT", "100000")
    IndicatorBank(cache_dir=tmp_path).ensure(bars, "sma", period=5)
    used = sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())

    assert main(["cache", "stats"]) == 0
    out = capsys.readouterr().out
    assert f"disk: {format_bytes(used)} of 97.7 KiB ({used / 1000:.1f} % of the limit" in out  # threadx.units

    assert main(["cache", "stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["disk_bytes"] == used and stats["disk_limit_bytes"] == 100000
    assert stats["disk_used_share"] == pytest.approx(used / 100000) and stats["disk_near_limit"] is False

    monkeypatch.setenv("THREADX_CACHE_LIMIT", str(int(used / 0.95)))
    assert main(["cache", "stats"]) == 0
    assert "near the limit" in capsys.readouterr().out
