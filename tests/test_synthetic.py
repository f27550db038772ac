"""The synthetic sample: deterministic, consistent candles with crypto-like statistics."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from threadx.data import ensure_sample, generate_synthetic, load_ohlcv, validate_ohlcv

COLS = ["open", "high", "low", "close", "volume"]


@pytest.fixture(scope="module")
def btc() -> pd.DataFrame:
    return generate_synthetic("BTC_USDT")


def test_same_seed_same_bytes() -> None:
    a = generate_synthetic("ETH_USDT", seed=7, days=60)
    b = generate_synthetic("ETH_USDT", seed=7, days=60)
    for col in COLS:
        assert a[col].to_numpy().tobytes() == b[col].to_numpy().tobytes()
    assert a.index.equals(b.index)
    c = generate_synthetic("ETH_USDT", seed=8, days=60)
    assert not np.array_equal(a["close"].to_numpy(), c["close"].to_numpy())


def test_shape_index_and_attrs(btc: pd.DataFrame) -> None:
    assert len(btc) == 730 * 24
    assert btc.index[0] == pd.Timestamp("2023-01-01", tz="UTC")
    assert btc.index.name == "timestamp" and btc.index.unit == "ns"
    assert (np.diff(btc.index.asi8) == 3600 * 10**9).all()
    assert list(btc.columns) == COLS and all(d == np.float64 for d in btc.dtypes)
    assert btc.attrs["synthetic"] is True and btc.attrs["timeframe"] == "1h"
    assert btc.attrs["name"] == "synthetic/BTC_USDT-1h"
    four = generate_synthetic("BTC_USDT", timeframe="4h", days=10, start="2024-06-01")
    assert len(four) == 60 and four.index[1] - four.index[0] == pd.Timedelta("4h")


def test_ohlc_consistency(btc: pd.DataFrame) -> None:
    o, h, lo, c = (btc[k].to_numpy() for k in ("open", "high", "low", "close"))
    assert (h >= np.maximum(o, c)).all() and (lo <= np.minimum(o, c)).all()
    assert (lo > 0).all() and (btc["volume"] > 0).all()
    assert np.abs(o[1:] / c[:-1] - 1).max() < 0.005  # open = previous close, approximately
    rep = validate_ohlcv(btc)
    assert rep.ok and rep.gap_count == 0 and rep.quality > 95


def test_symbols_have_their_own_levels_and_paths() -> None:
    frames = {s: generate_synthetic(s, days=30) for s in ("BTC_USDT", "ETH_USDT", "SOL_USDT")}
    assert 25_000 < frames["BTC_USDT"]["open"].iloc[0] < 35_000
    assert 1_500 < frames["ETH_USDT"]["open"].iloc[0] < 2_500
    assert 40 < frames["SOL_USDT"]["open"].iloc[0] < 60
    r = {s: np.diff(np.log(f["close"].to_numpy())) for s, f in frames.items()}
    assert abs(np.corrcoef(r["BTC_USDT"], r["ETH_USDT"])[0, 1]) < 0.2
    assert generate_synthetic("BTC/USDT", days=5).equals(generate_synthetic("BTC_USDT", days=5))


def test_crypto_like_statistics(btc: pd.DataFrame) -> None:
    close = btc["close"].to_numpy()
    r = np.diff(np.log(close))
    annual_vol = r.std() * np.sqrt(24 * 365)
    assert 0.3 < annual_vol < 1.2
    kurtosis = ((r - r.mean()) ** 4).mean() / r.var() ** 2
    assert kurtosis > 5  # fat tails (jumps, t shocks, GARCH)
    a = np.abs(r)
    assert np.corrcoef(a[1:], a[:-1])[0, 1] > 0.05  # volatility clustering
    assert (a > 6 * np.median(a) / 0.6745).sum() > 10  # jumps
    assert np.corrcoef(a, btc["volume"].to_numpy()[1:])[0, 1] > 0.3  # volume follows volatility
    monthly = pd.Series(close[::24 * 30])
    moves = np.diff(np.log(monthly.to_numpy()))
    assert (moves > 0.1).any() and (moves < -0.1).any()  # trends both ways
    assert (np.abs(moves) < 0.03).any()  # and quieter stretches
    assert close.min() > 0.2 * close[0] and close.max() < 10 * close[0]


def test_generation_is_fast() -> None:
    best = float("inf")
    for _ in range(2):
        t = time.perf_counter()
        for symbol in ("BTC_USDT", "ETH_USDT", "SOL_USDT"):
            generate_synthetic(symbol)
        best = min(best, time.perf_counter() - t)
    assert best < 0.5


def test_ensure_sample_writes_once_and_is_byte_identical(tmp_path: Path) -> None:
    paths = ensure_sample(tmp_path / "a")
    assert [p.name for p in paths] == ["BTC_USDT-1h.parquet", "ETH_USDT-1h.parquet", "SOL_USDT-1h.parquet"]
    assert all(p.parent == tmp_path / "a" / "synthetic" and p.is_file() for p in paths)
    mtimes = [p.stat().st_mtime_ns for p in paths]
    assert ensure_sample(tmp_path / "a") == paths
    assert [p.stat().st_mtime_ns for p in paths] == mtimes  # not rewritten
    other = ensure_sample(tmp_path / "b")
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in other]
    assert sorted(x.name for x in (tmp_path / "a" / "synthetic").iterdir()) == sorted(p.name for p in paths)


def test_ensure_sample_uses_data_root_setting(data_root: Path) -> None:
    paths = ensure_sample()
    assert all(p.parent == data_root / "synthetic" for p in paths)
    df = load_ohlcv(paths[2])
    assert df.attrs["synthetic"] is True and len(df) == 730 * 24
