"""IndicatorBank: memory LRU, disk cache, corruption handling, batch form, stats."""
from __future__ import annotations

import hashlib
import json
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import threadx
from threadx.data import bars as bars_module
from threadx.data.bars import Bars, as_bars
from threadx.errors import ParamError
from threadx.indicators import IndicatorBank, compute, default_bank
from threadx.indicators import bank as bank_module
from threadx.indicators import kernels as K
from threadx.indicators import registry as R


# these tests are about the disk level's mechanics: every result goes to disk (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("store_every_result")


def _data_dir() -> Path:
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


def make_frame(n: int = 2000, seed: int = 11) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.004, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.004, n))
    idx = pd.date_range("2023-01-01", periods=n, freq="1h", tz="UTC", name="timestamp")
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close,
                         "volume": rng.uniform(1, 5, n)}, index=idx)


@pytest.fixture
def bars() -> Bars:
    return as_bars(make_frame())


@pytest.fixture
def bank(tmp_path) -> IndicatorBank:
    return IndicatorBank(cache_dir=tmp_path / "cache")


def files_of(bank: IndicatorBank, indicator: str) -> tuple[Path, Path]:
    parquets = sorted((bank.cache_dir / indicator).glob("*.parquet"))
    assert len(parquets) == 1, parquets
    return parquets[0], parquets[0].with_suffix(".json")


def assert_same(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for k in a:
        assert np.array_equal(a[k], b[k], equal_nan=True), k


# ------------------------------------------------------------------ basic behaviour
def test_miss_then_memory_hit_identical(bank, bars):
    first = bank.ensure(bars, "bollinger", {"period": 20, "std": 2})
    second = bank.ensure(bars, "bollinger", {"std": 2.0, "period": "20"})  # same normalised params
    assert_same(first, second)
    assert second["mid"] is not None and np.shares_memory(first["mid"], second["mid"])
    expected = K.bollinger(bars.close, 20, 2.0)
    for line, arr in zip(("mid", "upper", "lower", "z", "pctb", "width"), expected):
        assert np.array_equal(first[line], arr, equal_nan=True)
    s = bank.stats()
    assert (s["misses"], s["memory_hits"], s["disk_hits"]) == (1, 1, 0)
    assert s["hit_rate"] == 0.5
    assert s["entries_in_memory"] == 1 and s["bytes_in_memory"] == 6 * len(bars) * 8
    assert s["disk_files"] == 1 and s["disk_bytes"] > 0 and s["compute_seconds"] > 0


def test_ensure_accepts_frame_defaults_and_kwargs(bank):
    df = make_frame(500)
    a = bank.ensure(df, "rsi")
    b = bank.ensure(df, "RSI", period=14)
    assert_same(a, b)
    assert np.array_equal(a["value"], K.rsi(df["close"].to_numpy(), 14), equal_nan=True)
    assert bank.stats()["memory_hits"] == 1


def test_returned_arrays_are_read_only(bank, bars):
    out = bank.ensure(bars, "sma", {"period": 5})
    arr = out["value"]
    assert not arr.flags.writeable
    with pytest.raises(ValueError):
        arr[10] = 1.0
    with pytest.raises(ValueError):
        arr.flags.writeable = True
    # a caller editing the returned dict does not touch the cache
    out["value"] = np.zeros(3)
    assert len(bank.ensure(bars, "sma", {"period": 5})["value"]) == len(bars)
    # read-only also after a disk hit
    fresh = IndicatorBank(cache_dir=bank.cache_dir)
    assert not fresh.ensure(bars, "sma", {"period": 5})["value"].flags.writeable


def test_different_params_and_data_get_different_keys(bank, bars):
    other = as_bars(make_frame(seed=12))
    a = bank.ensure(bars, "ema", {"period": 10})
    b = bank.ensure(bars, "ema", {"period": 11})
    c = bank.ensure(other, "ema", {"period": 10})
    d = bank.ensure(bars, "ema", {"period": 10, "source": "hl2"})
    assert not np.array_equal(a["value"], b["value"], equal_nan=True)
    assert not np.array_equal(a["value"], c["value"], equal_nan=True)
    assert not np.array_equal(a["value"], d["value"], equal_nan=True)
    assert bank.stats()["misses"] == 4
    assert len({bank.key(bars, "ema", {"period": 10}), bank.key(bars, "ema", {"period": 11}),
                bank.key(other, "ema", {"period": 10}), bank.key(bars, "sma", {"period": 10})}) == 4
    assert bank.key(bars, "ema", {"period": 10}) == bank.key(bars, "EMA", {"period": 10.0, "source": "Close"})


def test_bad_requests_raise_param_error(bank, bars):
    with pytest.raises(ParamError):
        bank.ensure(bars, "nope")
    with pytest.raises(ParamError):
        bank.ensure(bars, "sma", {"period": 0})
    with pytest.raises(ParamError):
        bank.ensure_many(bars, "atr", [{"period": 3}, {"method": "zz"}])
    assert bank.stats()["misses"] == 0


# ------------------------------------------------------------------ memory LRU
def test_memory_lru_evicts_by_bytes(tmp_path, bars):
    entry = len(bars) * 8  # one single-line indicator
    bank = IndicatorBank(cache_dir=tmp_path, max_bytes=2 * entry, disk=False)
    ka, kb, kc = (bank.key(bars, "sma", {"period": p}) for p in (2, 3, 4))
    bank.ensure(bars, "sma", {"period": 2})
    bank.ensure(bars, "sma", {"period": 3})
    assert ka in bank and kb in bank
    bank.ensure(bars, "sma", {"period": 2})  # A is now the most recently used
    bank.ensure(bars, "sma", {"period": 4})  # evicts B, the least recently used
    assert ka in bank and kc in bank and kb not in bank
    s = bank.stats()
    assert s["entries_in_memory"] == 2 and s["bytes_in_memory"] == 2 * entry <= bank.max_bytes
    bank.ensure(bars, "sma", {"period": 3})  # B again: a miss (no disk), evicts A
    assert kb in bank and ka not in bank
    assert bank.stats()["misses"] == 4 and bank.stats()["memory_hits"] == 1
    # a multi-line entry bigger than the whole budget is served but not kept
    big = bank.ensure(bars, "bollinger")
    assert len(big) == 6 and bank.key(bars, "bollinger") not in bank
    assert bank.stats()["bytes_in_memory"] <= bank.max_bytes


def test_entry_larger_than_max_bytes_is_not_kept_but_disk_serves_it(tmp_path, bars):
    bank = IndicatorBank(cache_dir=tmp_path, max_bytes=100)
    a = bank.ensure(bars, "macd")
    assert bank.stats()["entries_in_memory"] == 0 and bank.stats()["bytes_in_memory"] == 0
    b = bank.ensure(bars, "macd")
    assert_same(a, b)
    s = bank.stats()
    assert (s["misses"], s["disk_hits"], s["memory_hits"]) == (1, 1, 0)


# ------------------------------------------------------------------ disk level
def test_disk_hit_after_new_instance(bank, bars):
    first = bank.ensure(bars, "supertrend", {"period": 7, "multiplier": 2.5})
    parquet, sidecar = files_of(bank, "supertrend")
    meta = json.loads(sidecar.read_text())
    assert meta["params"] == {"period": 7, "multiplier": 2.5}
    assert meta["fingerprint"] == bars.fingerprint
    assert meta["version"] == threadx.__version__
    assert meta["rows"] == len(bars) and meta["indicator"] == "supertrend"
    assert "created_at" in meta and len(meta["checksum"]) == 32
    assert parquet.stem == bank.key(bars, "supertrend", {"period": 7, "multiplier": 2.5})

    fresh = IndicatorBank(cache_dir=bank.cache_dir)
    again = fresh.ensure(bars, "supertrend", {"period": 7, "multiplier": 2.5})
    assert_same(first, again)
    s = fresh.stats()
    assert (s["disk_hits"], s["misses"], s["memory_hits"]) == (1, 0, 0)
    fresh.ensure(bars, "supertrend", {"period": 7, "multiplier": 2.5})
    assert fresh.stats()["memory_hits"] == 1
    # also after clear(memory=True) on the same bank
    bank.clear(memory=True)
    assert bank.stats()["entries_in_memory"] == 0
    assert_same(first, bank.ensure(bars, "supertrend", {"period": 7, "multiplier": 2.5}))
    assert bank.stats()["disk_hits"] == 1


def test_clear_disk_removes_files(bank, bars):
    bank.ensure_many(bars, "atr", [{"period": p} for p in (5, 10)])
    bank.ensure(bars, "tr")
    assert bank.stats()["disk_files"] == 3
    (bank.cache_dir / "unrelated.txt").write_text("keep me")
    bank.clear(memory=True, disk=True)
    s = bank.stats()
    assert s["disk_files"] == 0 and s["disk_bytes"] == 0 and s["entries_in_memory"] == 0
    assert (bank.cache_dir / "unrelated.txt").exists()
    bank.ensure(bars, "tr")
    assert bank.stats()["misses"] == 4


def _corrupt_and_check(bank: IndicatorBank, bars: Bars, damage) -> None:
    params = {"period": 14, "method": "wilder"}
    good = bank.ensure(bars, "atr", params)
    parquet, sidecar = files_of(bank, "atr")
    damage(parquet, sidecar, good)
    fresh = IndicatorBank(cache_dir=bank.cache_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # corruption is handled silently, not a disk failure
        got = fresh.ensure(bars, "atr", params)
    assert np.array_equal(got["value"], K.atr(bars.high, bars.low, bars.close, 14, K.ATR_WILDER), equal_nan=True)
    s = fresh.stats()
    assert (s["disk_hits"], s["misses"], s["disk_rejected"]) == (0, 1, 1)
    assert s["disk_enabled"]
    # rewritten: a third bank gets a clean disk hit
    third = IndicatorBank(cache_dir=bank.cache_dir)
    assert_same(third.ensure(bars, "atr", params), good)
    assert third.stats()["disk_hits"] == 1 and third.stats()["misses"] == 0


def test_truncated_parquet_is_recomputed(bank, bars):
    def damage(parquet, sidecar, good):
        data = parquet.read_bytes()
        parquet.write_bytes(data[: len(data) // 2])

    _corrupt_and_check(bank, bars, damage)


def test_edited_value_in_parquet_is_recomputed(bank, bars):
    def damage(parquet, sidecar, good):
        data = bytearray(parquet.read_bytes())
        target = np.float64(good["value"][1000]).tobytes()
        pos = data.find(target, 4)
        assert pos > 0, "value bytes not found in the file"
        data[pos] ^= 0x01  # lowest mantissa bit: the file still decodes, to a wrong number
        parquet.write_bytes(bytes(data))

    _corrupt_and_check(bank, bars, damage)


def test_garbled_parquet_is_recomputed(bank, bars):
    def damage(parquet, sidecar, good):
        data = bytearray(parquet.read_bytes())
        for i in range(len(data) // 3, len(data) // 3 + 64):
            data[i] ^= 0xFF
        parquet.write_bytes(bytes(data))

    _corrupt_and_check(bank, bars, damage)


@pytest.mark.parametrize("field,value", [
    ("checksum", "0" * 32),
    ("rows", 5),
    ("version", "0.0.0-old"),
    ("fingerprint", "f" * 32),
    ("params", {"period": 15, "method": "wilder"}),
    ("outputs", ["other"]),
])
def test_edited_sidecar_is_recomputed(bank, bars, field, value):
    def damage(parquet, sidecar, good):
        meta = json.loads(sidecar.read_text())
        meta[field] = value
        sidecar.write_text(json.dumps(meta))

    _corrupt_and_check(bank, bars, damage)


def test_unreadable_or_missing_sidecar_is_recomputed(bank, bars):
    def damage(parquet, sidecar, good):
        text = sidecar.read_text()
        sidecar.write_text(text[:-10])  # invalid JSON

    _corrupt_and_check(bank, bars, damage)
    bank.clear(memory=True, disk=True)

    def remove(parquet, sidecar, good):
        sidecar.unlink()

    _corrupt_and_check(IndicatorBank(cache_dir=bank.cache_dir), bars, remove)


def test_parquet_with_wrong_rows_but_matching_sidecar_is_rejected(bank, bars):
    import pyarrow as pa
    import pyarrow.parquet as pq

    def damage(parquet, sidecar, good):
        arr = np.asarray(good["value"])[:-1]
        pq.write_table(pa.table({"value": arr}), parquet)

    _corrupt_and_check(bank, bars, damage)


def test_disk_write_is_atomic_and_leaves_no_temp_files(bank, bars, monkeypatch):
    import pyarrow.parquet as pq

    bank.ensure_many(bars, "donchian", [{"period": p} for p in (10, 20, 30)])
    names = [p.name for p in (bank.cache_dir / "donchian").iterdir()]
    assert len(names) == 6 and all(n.endswith((".parquet", ".json")) for n in names)

    def failing_write(*args, **kwargs):
        Path(args[1]).write_bytes(b"PAR1 partial")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", failing_write)
    other = IndicatorBank(cache_dir=bank.cache_dir)
    with pytest.warns(RuntimeWarning, match="in-memory cache only"):
        out = other.ensure(bars, "donchian", {"period": 40})
    assert np.array_equal(out["upper"], K.donchian(bars.high, bars.low, 40)[0], equal_nan=True)
    assert not (bank.cache_dir / "donchian" / f"{other.key(bars, 'donchian', {'period': 40})}.parquet").exists()
    assert len(list((bank.cache_dir / "donchian").iterdir())) == 6  # no temp debris
    assert not other.stats()["disk_enabled"]


def test_unwritable_cache_dir_degrades_to_memory(tmp_path, bars):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    bank = IndicatorBank(cache_dir=blocker / "cache")
    with pytest.warns(RuntimeWarning, match="in-memory cache only"):
        first = bank.ensure(bars, "adx")
    assert np.array_equal(first["adx"], K.adx(bars.high, bars.low, bars.close, 14)[0], equal_nan=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once only
        again = bank.ensure(bars, "adx")
        bank.ensure(bars, "rsi")
    assert_same(first, again)
    s = bank.stats()
    assert s["disk_enabled"] is False and s["disk_files"] == 0 and s["memory_hits"] == 1


def test_memory_only_bank_writes_nothing(tmp_path, bars):
    bank = IndicatorBank(cache_dir=tmp_path / "c", disk=False)
    bank.ensure(bars, "sma")
    assert not (tmp_path / "c").exists()
    assert bank.stats()["disk_files"] == 0


# ------------------------------------------------------------------ batch form
def test_ensure_many_equals_individual_ensure(tmp_path, bars):
    grids = {
        "bollinger": [{"period": p, "std": k} for p in (10, 20, 50) for k in (1.0, 2.0, 2.5)],
        "atr": [{"period": p, "method": m} for p in (7, 14) for m in ("wilder", "ema", "sma")],
        "macd": [{"fast": f, "slow": s, "signal": g} for f in (8, 12) for s in (26, 30) for g in (5, 9)],
        "adx": [{"period": p} for p in (7, 14, 20)],
        "supertrend": [{"period": p, "multiplier": m} for p in (7, 10) for m in (2.0, 3.0)],
        "donchian": [{"period": p} for p in (10, 20)],
        "rsi": [{"period": p} for p in (7, 14)],
        "sma": [{"period": p, "source": s} for p in (5, 50) for s in ("close", "hlc3")],
    }
    batch_bank = IndicatorBank(cache_dir=tmp_path / "batch")
    single_bank = IndicatorBank(cache_dir=tmp_path / "single")
    for name, grid in grids.items():
        batch = batch_bank.ensure_many(bars, name, grid)
        assert len(batch) == len(grid)
        for params, got in zip(grid, batch):
            assert_same(got, single_bank.ensure(bars, name, params))
            assert_same(got, compute(bars, name, params))
    total = sum(len(g) for g in grids.values())
    assert batch_bank.stats()["misses"] == total and single_bank.stats()["misses"] == total


def test_ensure_many_computes_only_the_misses(bank, bars, monkeypatch):
    grid = [{"period": 20, "std": k} for k in (1.0, 1.5, 2.0, 2.5)]
    bank.ensure(bars, "bollinger", grid[1])
    bank.ensure(bars, "bollinger", grid[2])
    bank.clear(memory=True)
    bank.ensure(bars, "bollinger", grid[1])  # back in memory (from disk)
    seen: list[list[dict]] = []
    original = R.IndicatorDef.compute_many

    def spy(self, b, list_of_params, ctx=None):
        list_of_params = list(list_of_params)
        seen.append(list_of_params)
        return original(self, b, list_of_params, ctx=ctx)

    monkeypatch.setattr(R.IndicatorDef, "compute_many", spy)
    before = bank.stats()
    out = bank.ensure_many(bars, "bollinger", grid + [grid[0]])  # with a duplicate
    after = bank.stats()
    assert seen == [[{"period": 20, "std": 1.0}, {"period": 20, "std": 2.5}]]
    assert after["misses"] - before["misses"] == 2
    assert after["memory_hits"] - before["memory_hits"] == 1  # grid[1]
    assert after["disk_hits"] - before["disk_hits"] == 1  # grid[2]
    assert_same(out[0], out[4])
    for params, got in zip(grid, out):
        assert_same(got, compute(bars, "bollinger", params))
    # the batch shared one rolling mean: every k has the same mid array
    assert np.shares_memory(out[0]["mid"], out[3]["mid"])


# ------------------------------------------------------------------ fingerprint, stats
def test_fingerprint_is_computed_once(bank, monkeypatch):
    calls = {"n": 0}
    real = hashlib.blake2b

    class CountingHashlib:
        @staticmethod
        def blake2b(*args, **kwargs):
            calls["n"] += 1
            return real(*args, **kwargs)

    monkeypatch.setattr(bars_module, "hashlib", CountingHashlib)
    df = make_frame(800, seed=5)
    b = as_bars(df)
    for _ in range(3):
        bank.ensure(b, "ema", {"period": 10})
        bank.ensure_many(b, "atr", [{"period": 5}, {"period": 9}])
        bank.ensure(df, "sma", {"period": 7})  # the same frame again: its Bars is remembered
    bank.key(b, "rsi")
    assert calls["n"] == 1


def test_stats_counters(bank, bars):
    s = bank.stats()
    for key in ("memory_hits", "disk_hits", "misses", "compute_seconds", "bytes_in_memory",
                "entries_in_memory", "disk_files", "disk_bytes", "hit_rate"):
        assert key in s
    assert s["hit_rate"] == 0.0 and s["misses"] == 0 and s["disk_files"] == 0
    bank.ensure_many(bars, "rsi", [{"period": 7}, {"period": 14}, {"period": 7}])
    bank.ensure(bars, "rsi", {"period": 7})
    s = bank.stats()
    assert (s["misses"], s["memory_hits"], s["disk_hits"]) == (2, 1, 0)
    assert s["hit_rate"] == pytest.approx(1 / 3)
    assert s["entries_in_memory"] == 2 and s["bytes_in_memory"] == 2 * 8 * len(bars)
    on_disk = sum(p.stat().st_size for p in bank.cache_dir.rglob("*") if p.is_file())
    assert s["disk_files"] == 2 and s["disk_bytes"] == on_disk


def test_default_bank_singleton_uses_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("THREADX_CACHE_DIR", str(tmp_path / "env_cache"))
    a = default_bank()
    assert a is default_bank()
    assert a.cache_dir == tmp_path / "env_cache"
    a.ensure(as_bars(make_frame(200)), "tr")
    assert (tmp_path / "env_cache" / "tr").is_dir()
    monkeypatch.setenv("THREADX_CACHE_DIR", str(tmp_path / "other"))
    assert default_bank().cache_dir == tmp_path / "other"


def test_concurrent_ensure_from_threads(bank, bars):
    results: list[dict] = []
    errors: list[BaseException] = []

    def work(k: float) -> None:
        try:
            results.append(bank.ensure(bars, "bollinger", {"period": 20, "std": k}))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(1.0 + (i % 3),)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 12
    s = bank.stats()
    assert s["memory_hits"] + s["disk_hits"] + s["misses"] == 12
    assert s["entries_in_memory"] == 3 and s["disk_files"] == 3


def test_real_data_round_trip(tmp_path):
    path = _data_dir() / "binance" / "BTC_USDT-1h.parquet"
    if not path.exists():
        pytest.skip(f"real candles not available: {path} is missing")
    df = pd.read_parquet(path).set_index("timestamp")
    bank = IndicatorBank(cache_dir=tmp_path)
    grid = [{"period": p, "std": k} for p in (20, 50) for k in (1.5, 2.0)]
    first = bank.ensure_many(df, "bollinger", grid)
    second = IndicatorBank(cache_dir=tmp_path).ensure_many(df, "bollinger", grid)
    for a, b in zip(first, second):
        assert_same(a, b)
    c = df["close"].to_numpy()
    ref_mid = pd.Series(c).rolling(20).mean().to_numpy()
    np.testing.assert_allclose(first[0]["mid"][19:], ref_mid[19:], rtol=1e-12)


# --- what goes to disk: only a result slower to compute than to read back --------------------

def test_a_result_quicker_to_compute_than_to_read_back_is_not_stored(tmp_path, bars, monkeypatch):
    monkeypatch.setenv("THREADX_CACHE_MIN_COMPUTE", "auto")  # the built-in default
    bank = IndicatorBank(cache_dir=tmp_path / "cache")
    assert bank.min_compute_s is None
    first = bank.ensure_many(bars, "sma", [{"period": 10}, {"period": 20}])
    s = bank.stats()
    assert (s["misses"], s["disk_writes"], s["disk_skipped"], s["disk_files"]) == (2, 0, 2, 0)
    again = IndicatorBank(cache_dir=tmp_path / "cache").ensure_many(bars, "sma", [{"period": 10}, {"period": 20}])
    for a, b in zip(first, again):  # computed again, the same bits
        assert a["value"].tobytes() == b["value"].tobytes()


def test_a_result_slower_to_compute_than_to_read_back_is_stored_and_served(tmp_path, bars, monkeypatch):
    monkeypatch.setenv("THREADX_CACHE_MIN_COMPUTE", "auto")
    real = bank_module._compute_many

    def slow(idef, data, norms):  # a computation that takes 50 ms of CPU, as a long history's might
        end = time.thread_time() + 0.05
        while time.thread_time() < end:
            pass
        return real(idef, data, norms)

    monkeypatch.setattr(bank_module, "_compute_many", slow)
    bank = IndicatorBank(cache_dir=tmp_path / "cache")
    made = bank.ensure(bars, "adx", {"period": 14})
    assert (bank.stats()["disk_writes"], bank.stats()["disk_skipped"]) == (1, 0)
    reader = IndicatorBank(cache_dir=tmp_path / "cache")
    served = reader.ensure(bars, "adx", {"period": 14})
    assert reader.stats()["disk_hits"] == 1
    assert all(made[k].tobytes() == served[k].tobytes() for k in made)


def test_a_kernels_first_load_in_the_process_is_not_taken_for_compute_time(tmp_path, bars, monkeypatch):
    """The first call of a kernel in a process loads it from numba's cache (5-300 ms): a quick
    result computed by it is still not stored."""
    monkeypatch.setenv("THREADX_CACHE_MIN_COMPUTE", "auto")
    monkeypatch.setattr(bank_module, "_WARMED", set(), raising=False)
    real = R.IndicatorDef.compute_many
    loaded = []

    def first_call_slow(self, *args, **kwargs):  # as numba loading the kernel on its first call
        if not loaded:
            loaded.append(True)
            time.sleep(0.05)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(R.IndicatorDef, "compute_many", first_call_slow)
    bank = IndicatorBank(cache_dir=tmp_path / "cache")
    bank.ensure_many(bars, "sma", [{"period": 10}, {"period": 20}])
    s = bank.stats()
    assert (s["disk_writes"], s["disk_skipped"]) == (0, 2)


def test_a_quick_result_on_a_busy_machine_is_not_stored(tmp_path, bars, monkeypatch):
    """Waiting for a core (or for the GIL) is no compute time: a quick result computed on a busy
    machine is still not stored."""
    monkeypatch.setenv("THREADX_CACHE_MIN_COMPUTE", "auto")
    bank_module.IndicatorBank(disk=False).ensure(bars, "sma", {"period": 10})  # kernel loaded
    real = bank_module._compute_many

    def descheduled(idef, data, norms):  # 50 ms off the CPU, as under another process's load
        time.sleep(0.05)
        return real(idef, data, norms)

    monkeypatch.setattr(bank_module, "_compute_many", descheduled)
    bank = IndicatorBank(cache_dir=tmp_path / "cache")
    bank.ensure(bars, "sma", {"period": 10})
    s = bank.stats()
    assert (s["disk_writes"], s["disk_skipped"]) == (0, 1)
    assert s["compute_seconds"] >= 0.05  # the stats keep the wall time


@pytest.mark.parametrize("setting, stored", [("0", 1), ("3600", 0)])
def test_the_least_compute_time_stored_is_a_setting(tmp_path, bars, monkeypatch, setting, stored):
    monkeypatch.setenv("THREADX_CACHE_MIN_COMPUTE", setting)
    bank = IndicatorBank(cache_dir=tmp_path / "cache")
    bank.ensure(bars, "ema", {"period": 12})
    assert (bank.stats()["disk_writes"], bank.stats()["disk_skipped"]) == (stored, 1 - stored)
    assert IndicatorBank(cache_dir=tmp_path / "x", min_compute_s=0.0).min_compute_s == 0.0  # an argument wins
    for bad in (-1.0, float("inf"), float("nan"), True, "auto"):
        with pytest.raises(ValueError, match="min_compute_s"):
            IndicatorBank(cache_dir=tmp_path / "x", min_compute_s=bad)
