"""Resampling: hand-computed bins, complete bins only, UTC alignment, real-data cross-check."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from threadx.data import load_ohlcv, resample_ohlcv
from threadx.errors import DataError

T0 = pd.Timestamp("2024-03-04 00:00", tz="UTC")  # a Monday
H = pd.Timedelta("1h")


def hourly(n: int, start: pd.Timestamp = T0) -> pd.DataFrame:
    index = pd.date_range(start, periods=n, freq="1h", name="timestamp").as_unit("ns")
    rng = np.random.default_rng(7)
    o = rng.uniform(90, 110, n)
    c = rng.uniform(90, 110, n)
    df = pd.DataFrame(
        {"open": o, "high": np.maximum(o, c) + rng.uniform(0, 5, n), "low": np.minimum(o, c) - rng.uniform(0, 5, n),
         "close": c, "volume": rng.uniform(1, 10, n)},
        index=index,
    )
    df.attrs = {"timeframe": "1h", "name": "test/X_Y-1h", "synthetic": False}
    return df


def by_hand(df: pd.DataFrame, rows: list[int]) -> list[float]:
    part = df.iloc[rows]
    return [part["open"].iloc[0], part["high"].max(), part["low"].min(), part["close"].iloc[-1], part["volume"].sum()]


def test_hand_computed_bins() -> None:
    df = hourly(8)
    out = resample_ohlcv(df, "4h")
    assert list(out.index) == [T0, T0 + 4 * H]
    assert out.iloc[0].tolist() == pytest.approx(by_hand(df, [0, 1, 2, 3]), rel=0, abs=1e-12)
    assert out.iloc[1].tolist() == pytest.approx(by_hand(df, [4, 5, 6, 7]), rel=0, abs=1e-12)
    assert out.attrs["timeframe"] == "4h" and out.attrs["name"] == "test/X_Y-1h"
    assert df.attrs["timeframe"] == "1h"  # input untouched
    assert out.index.name == "timestamp" and str(out.index.tz) == "UTC"
    assert list(out.columns) == ["open", "high", "low", "close", "volume"]


def test_partial_last_bin_is_dropped() -> None:
    out = resample_ohlcv(hourly(11), "4h")  # 08:00 bin has 08, 09, 10 only
    assert list(out.index) == [T0, T0 + 4 * H]


def test_partial_first_bin_is_dropped_and_bins_are_utc_aligned() -> None:
    df = hourly(10, start=T0 + 2 * H)  # 02:00 .. 11:00
    out = resample_ohlcv(df, "4h")
    assert list(out.index) == [T0 + 4 * H, T0 + 8 * H]
    assert out.iloc[0].tolist() == pytest.approx(by_hand(df, [2, 3, 4, 5]))


def test_incomplete_middle_bin_is_skipped() -> None:
    df = hourly(12).drop(index=[T0 + 6 * H])
    out = resample_ohlcv(df, "4h")
    assert list(out.index) == [T0, T0 + 8 * H]
    assert out.iloc[1].tolist() == pytest.approx(by_hand(df, [7, 8, 9, 10]))


def test_daily_bins_start_at_midnight_utc_and_weekly_on_monday() -> None:
    df = hourly(24 * 16, start=T0 - 5 * H)  # starts Sunday 19:00
    daily = resample_ohlcv(df, "1d")
    assert daily.index[0] == T0 and all(t.hour == 0 for t in daily.index)
    assert len(daily) == 15
    weekly = resample_ohlcv(df, "1w")
    assert list(weekly.index) == [T0, T0 + pd.Timedelta("7D")]
    assert all(t.day_of_week == 0 for t in weekly.index)


def test_target_must_be_a_coarser_multiple() -> None:
    df = hourly(10)
    with pytest.raises(DataError):
        resample_ohlcv(df, "90m")
    with pytest.raises(DataError):
        resample_ohlcv(df, "30m")


def test_same_timeframe_returns_a_copy() -> None:
    df = hourly(5)
    out = resample_ohlcv(df, "1h")
    pd.testing.assert_frame_equal(out, df)
    assert out is not df


def test_native_timeframe_inferred_without_attrs() -> None:
    df = hourly(8)
    df.attrs = {}
    assert len(resample_ohlcv(df, "2h")) == 4


def test_real_1h_to_4h_matches_binance_4h(shared_data: Path) -> None:
    h1 = load_ohlcv(shared_data / "binance" / "BTC_USDT-1h.parquet")
    h4 = load_ohlcv(shared_data / "binance" / "BTC_USDT-4h.parquet")
    ours = resample_ohlcv(h1, "4h")
    common = ours.index.intersection(h4.index)
    assert len(common) == len(h4)
    a, b = ours.loc[common], h4.loc[common]
    for col in ("open", "high", "low", "close"):
        assert np.array_equal(a[col].to_numpy(), b[col].to_numpy()), col
    np.testing.assert_allclose(a["volume"], b["volume"], rtol=1e-9)


def test_real_messy_file_resamples_without_gap_bins(shared_data: Path) -> None:
    from threadx.data import validate_ohlcv

    df = load_ohlcv(shared_data / "binance" / "BTC_USDT-1h-2017-2020.parquet")
    gaps = validate_ohlcv(df).gaps
    out = resample_ohlcv(df, "4h")
    assert (out.index.asi8 % (4 * 3600 * 10**9) == 0).all()
    for start, end, _ in gaps:  # no emitted bin overlaps a missing hour
        assert not ((out.index + pd.Timedelta("4h") > start) & (out.index < end)).any()
    assert len(out) > 0.99 * len(df) // 4 - len(gaps) * 3 - 20
    # the 43 bars opening at hh:28 after the 2018 outage: no bin holds one that closes after the bin's end
    late = df.index[(df.index.minute != 0) & ((df.index + pd.Timedelta("1h")).floor("4h") > df.index.floor("4h"))]
    assert len(late) and not any(((out.index <= t) & (out.index + pd.Timedelta("4h") > t)).any() for t in late)


def test_bars_off_the_grid_make_no_bin_that_ends_before_their_close() -> None:
    """1h bars opening at :30 resampled to 4h came out green, each 4h bar holding prices up to 30
    minutes after its labelled close; a few bars off the grid drop only the bins they leak out of."""
    df = hourly(48)
    shifted = df.copy()
    shifted.index = shifted.index + pd.Timedelta("30min")
    shifted.attrs["timeframe"] = "1h"
    with pytest.raises(DataError, match="open off the 1h grid .* every 4h bin on the grid would hold prices"):
        resample_ohlcv(shifted, "4h")
    some = df.copy()
    some.index = pd.DatetimeIndex([t + pd.Timedelta("28min") if 5 <= k <= 7 else t for k, t in enumerate(df.index)])
    some.attrs["timeframe"] = "1h"
    out = resample_ohlcv(some, "4h")
    assert len(out) == 11 and T0 + pd.Timedelta("4h") not in out.index  # the bin of 07:28 -> 08:28 left out


@pytest.mark.parametrize("file_name", ["BTC_USDT-1h.csv", "btc_hourly.csv"])
def test_a_resample_to_store_reads_its_source_once(tmp_path: Path, monkeypatch, file_name: str) -> None:
    """``load_resampled`` (``threadx data resample``) gives what ``load_ohlcv(timeframe=)`` gives,
    reading the file once, also when its name says no timeframe (it was read twice)."""
    from threadx.data import io

    path = tmp_path / file_name
    hourly(24 * 6).rename_axis("timestamp").reset_index().to_csv(path, index=False)
    want = load_ohlcv(path, timeframe="4h")
    reads = []
    real = io.read_ohlcv_file
    monkeypatch.setattr(io, "read_ohlcv_file", lambda *a, **k: reads.append(a) or real(*a, **k))
    got = io.load_resampled(path, "4h")
    assert len(reads) == 1
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert got.attrs == want.attrs and got.attrs["timeframe"] == "4h" and len(got) == 36
    with pytest.raises(DataError, match="coarser|multiple"):
        io.load_resampled(path, "90m")
