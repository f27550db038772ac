"""Every validation rule of SPEC section 1 on hand-built frames, and the real messy file."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from threadx.data import read_ohlcv_file, validate_ohlcv

T0 = pd.Timestamp("2024-03-01 00:00", tz="UTC")
H = pd.Timedelta("1h")


def bars(n: int = 48, seed: int = 0) -> pd.DataFrame:
    """Clean hourly bars: small random walk, consistent high/low, positive volume."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    open_ = np.r_[100.0, close[:-1]]
    index = pd.date_range(T0, periods=n, freq="1h", name="timestamp").as_unit("ns")
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * 1.001,
            "low": np.minimum(open_, close) * 0.999,
            "close": close,
            "volume": rng.uniform(1, 2, n),
        },
        index=index,
    )


def set_value(df: pd.DataFrame, row: int, col: str, value: float) -> pd.DataFrame:
    out = df.copy()
    out.iloc[row, out.columns.get_loc(col)] = value
    return out


def test_clean_frame() -> None:
    rep = validate_ohlcv(bars())
    assert rep.ok and rep.errors == [] and rep.warnings == []
    assert rep.quality == 100.0
    assert rep.timeframe == "1h"
    assert rep.sorted and rep.duplicates == 0 and rep.gap_count == 0 and rep.gaps == []
    assert rep.coverage == {"first": T0, "last": T0 + 47 * H, "bars": 48, "expected_bars": 48}


def test_input_is_never_modified() -> None:
    df = bars().iloc[[3, 1, 2, 0, 0, 5]]
    df = set_value(df, 1, "high", 1.0)
    before = df.copy(deep=True)
    validate_ohlcv(df, dedupe=True)
    validate_ohlcv(df)
    pd.testing.assert_frame_equal(df, before)


def test_missing_column() -> None:
    rep = validate_ohlcv(bars().drop(columns=["volume"]))
    assert not rep.ok and "volume" in rep.errors[0] and rep.quality == 0


def test_non_numeric_column() -> None:
    df = bars(4)
    df["close"] = ["1", "2", "x", "4"]
    rep = validate_ohlcv(df)
    assert not rep.ok and "'close' is not numeric" in rep.errors[0]


def test_non_datetime_index_and_empty() -> None:
    assert "DatetimeIndex" in validate_ohlcv(bars(4).reset_index(drop=True)).errors[0]
    assert validate_ohlcv(bars(0)).errors == ["no bars"]


def test_a_single_bar_is_red_not_a_perfect_green() -> None:
    """A one-row file was imported "GREEN, quality 100/100"; every backtest on it then failed."""
    rep = validate_ohlcv(bars(1))
    assert rep.verdict == ("red", ["1 bar: a dataset needs at least 2 (a return needs two closes)"])
    assert not rep.ok and rep.quality == 0.0
    assert validate_ohlcv(bars(2)).ok


def test_nan_values_are_errors() -> None:
    rep = validate_ohlcv(set_value(bars(), 7, "close", np.nan))
    assert not rep.ok and rep.nan_rows == [7]
    assert "NaN" in rep.errors[0]
    assert validate_ohlcv(set_value(bars(), 3, "volume", np.nan)).nan_rows == [3]


@pytest.mark.parametrize("col,value", [("open", 0.0), ("low", -1.0), ("close", -5.0), ("volume", -1.0)])
def test_non_positive_prices_and_negative_volume(col: str, value: float) -> None:
    rep = validate_ohlcv(set_value(bars(), 9, col, value))
    assert not rep.ok and 9 in rep.nonpositive_rows
    assert any("non-positive" in e for e in rep.errors)


def test_zero_volume_is_only_a_warning() -> None:
    rep = validate_ohlcv(set_value(set_value(bars(), 4, "volume", 0.0), 6, "volume", 0.0))
    assert rep.ok and rep.zero_volume == 2
    assert any("zero volume" in w for w in rep.warnings)
    assert rep.quality < 100


def test_high_below_open_close_and_low_above_open_close() -> None:
    df = bars()
    df = set_value(df, 5, "high", max(df["open"].iloc[5], df["close"].iloc[5]) - 0.01)
    df = set_value(df, 11, "low", min(df["open"].iloc[11], df["close"].iloc[11]) + 0.01)
    rep = validate_ohlcv(df)
    assert not rep.ok
    assert rep.bad_rows == [5, 11]
    assert rep.bad_times == [T0 + 5 * H, T0 + 11 * H]
    # named by time, not by a position counted from 0 (row 300 read as line 300 of a file where it is line 302)
    assert rep.errors[0] == ("2 row(s) with high < max(open, close) or low > min(open, close), at "
                             f"{(T0 + 5 * H).isoformat()}, {(T0 + 11 * H).isoformat()}")
    assert rep.quality <= 50


def test_high_equal_to_close_is_fine() -> None:
    df = bars(3)
    df["high"] = np.maximum(df["open"], df["close"])
    df["low"] = np.minimum(df["open"], df["close"])
    assert validate_ohlcv(df).ok


def test_duplicates_error_or_warning_with_dedupe() -> None:
    # 100 bars: 3 duplicates in 103 rows keep the quality above MIN_QUALITY once deduplicated
    df = bars(100).iloc[[0, 1, 2, 3, 3, 4, 5, 5, 5, *range(6, 100)]]
    rep = validate_ohlcv(df)
    assert not rep.ok and rep.duplicates == 3
    assert "3 duplicate" in rep.errors[0]
    lenient = validate_ohlcv(df, dedupe=True)
    assert lenient.ok and lenient.duplicates == 3
    assert any("duplicate" in w for w in lenient.warnings)
    assert lenient.bars == 100


def test_dedupe_checks_only_the_kept_row() -> None:
    rows = [0, 1, 1, *range(2, 40)]  # 40 bars: one duplicate keeps the quality above MIN_QUALITY
    df = bars(40).iloc[rows].copy()
    df.iloc[1, df.columns.get_loc("high")] = 1.0  # the first copy of 01:00 is broken, the last is fine
    assert validate_ohlcv(df, dedupe=True).ok
    df2 = bars(40).iloc[rows].copy()
    df2.iloc[2, df2.columns.get_loc("high")] = 1.0  # the kept (last) copy is broken
    assert validate_ohlcv(df2, dedupe=True).bad_rows == [2]


def test_unsorted_is_a_warning() -> None:
    df = bars(10).iloc[[0, 1, 5, 2, 3, 4, 6, 7, 9, 8]]
    rep = validate_ohlcv(df)
    assert rep.ok and not rep.sorted
    assert any("not in time order" in w for w in rep.warnings)
    assert rep.gap_count == 0  # gaps are computed on sorted times


def test_gaps_are_listed_against_the_grid() -> None:
    df = bars(48).drop(index=[T0 + 10 * H, T0 + 11 * H, T0 + 12 * H, T0 + 30 * H])
    rep = validate_ohlcv(df)
    assert rep.ok
    assert rep.gap_count == 2 and rep.missing_bars == 4
    assert rep.gaps == [(T0 + 10 * H, T0 + 13 * H, 3), (T0 + 30 * H, T0 + 31 * H, 1)]
    assert rep.largest_gap == 3 * H and rep.largest_gap_bars == 3
    assert rep.coverage["bars"] == 44 and rep.coverage["expected_bars"] == 48
    assert any("2 gap(s)" in w for w in rep.warnings)
    # in words a reader takes in ("largest 0 days 03:00:00", and "missing from 10:00 to 13:00" read
    # as if the 13:00 bar were missing too)
    assert any("largest 3 h (3 bars)" in w for w in rep.warnings), rep.warnings
    assert "3 bar(s) missing from 2024-03-01T10:00:00+00:00; the next bar opens at 2024-03-01T13:00:00" \
        in rep.summary(), rep.summary()
    assert rep.quality < 100 * 44 / 48 + 0.1


def test_off_grid_bar_warns_without_creating_gaps() -> None:
    df = bars(24)
    shifted = df.index.tolist()
    shifted[7] = T0 + 7 * H + pd.Timedelta("20min")  # 07:00 bar stamped 07:20
    df.index = pd.DatetimeIndex(shifted, name="timestamp")
    rep = validate_ohlcv(df)
    assert rep.ok
    assert rep.off_grid == [T0 + 7 * H + pd.Timedelta("20min")]
    assert len(rep.off_grid_runs) == 1
    assert rep.gap_count == 0 and rep.expected_bars == 24
    assert any("off-grid" in w for w in rep.warnings)


def test_off_grid_bar_belongs_to_the_slot_it_opens_in() -> None:
    df = bars(24)
    shifted = df.index.tolist()
    shifted[7] = T0 + 7 * H + pd.Timedelta("40min")  # still opens within 07:00-08:00
    df.index = pd.DatetimeIndex(shifted, name="timestamp")
    rep = validate_ohlcv(df)
    assert rep.gap_count == 0 and rep.expected_bars == 24 and len(rep.off_grid) == 1


def test_off_grid_bar_does_not_hide_a_real_gap() -> None:
    df = bars(24).drop(index=[T0 + 8 * H])
    shifted = df.index.tolist()
    shifted[7] = T0 + 7 * H + pd.Timedelta("20min")
    df.index = pd.DatetimeIndex(shifted, name="timestamp")
    rep = validate_ohlcv(df)
    assert rep.gaps == [(T0 + 8 * H, T0 + 9 * H, 1)]


def test_explicit_timeframe_overrides_inference() -> None:
    rep = validate_ohlcv(bars(12), timeframe="30m")
    assert rep.timeframe == "30m"
    assert rep.gap_count == 11 and rep.expected_bars == 23


def test_price_spike_is_flagged_at_its_bar() -> None:
    df = bars(200, seed=3)
    k = 150
    factor = 1.25
    for col in ("open", "high", "low", "close"):
        df.iloc[k:, df.columns.get_loc(col)] *= factor  # +22 % jump into bar 150's close...
    df.iloc[k, df.columns.get_loc("open")] /= factor  # ...its open is still the old close
    df.iloc[k, df.columns.get_loc("low")] = df["open"].iloc[k] * 0.999
    rep = validate_ohlcv(df)
    assert rep.ok
    assert rep.spikes == [T0 + k * H]
    assert any("spike" in w for w in rep.warnings)


@pytest.mark.parametrize("factor, shown", [(1e300, "e+30"), (1e308, "largest ∞ at")])
def test_a_huge_spike_is_said_in_a_short_number(factor, shown) -> None:
    """A jump of 1e300 was printed with its 300 digits; one past exp's range raised OverflowError."""
    df = bars(200, seed=3)
    df[["open", "high", "low", "close"]] *= 1e-10  # (room below the largest float for the jump)
    for col in ("open", "high", "low", "close"):
        df.iloc[150:, df.columns.get_loc(col)] *= factor
    df.iloc[150, df.columns.get_loc("open")] /= factor
    df.iloc[150, df.columns.get_loc("low")] = df["open"].iloc[150] * 0.999
    text = next(w for w in validate_ohlcv(df).warnings if "spike" in w)
    assert shown in text and len(text) < 200, text


@pytest.mark.parametrize("k", [3, 150])  # (3: before the spike check has the 20 returns it needs)
def test_one_implausible_bar_makes_the_verdict_amber(k: int) -> None:
    """One bar at 1000x the price was green (one spike among many allowed, or none that early):
    bb_atr on it returned +76,730 % against -27.5 % on the clean file."""
    df = bars(200, seed=3)
    df.iloc[k, :4] *= 1000
    rep = validate_ohlcv(df)
    assert rep.ok and rep.implausible == [T0 + k * H, T0 + (k + 1) * H]  # the jump and the way back
    level, reasons = rep.verdict
    assert level == "amber" and any("2 bar(s) whose close is 5x the previous one" in r for r in reasons)
    assert validate_ohlcv(bars(200, seed=3)).verdict == ("green", [])


@pytest.mark.parametrize("column, value", [("high", 1e300), ("low", 1e-300), ("high", None), ("low", None)])
def test_an_implausible_wick_makes_the_verdict_amber(column: str, value: float | None) -> None:
    """A high of 1e300 (or a low of 1e-300) beside normal opens and closes was green: it sets
    off every stop in its bar and swells the ATR for thousands of bars. None: a wick just
    inside the bound (4.99x the body's top, or its bottom / 4.99) stays green."""
    df = bars(200, seed=3)
    row = df.iloc[120]
    body_top, body_bottom = max(row["open"], row["close"]), min(row["open"], row["close"])
    near = body_top * 4.99 if column == "high" else body_bottom / 4.99
    df.iloc[120, df.columns.get_loc(column)] = near if value is None else value
    rep = validate_ohlcv(df)
    if value is None:
        assert rep.implausible_wicks == [] and rep.verdict == ("green", [])
        return
    assert rep.ok and rep.implausible_wicks == [T0 + 120 * H] and rep.implausible == []
    level, reasons = rep.verdict
    assert level == "amber" and reasons == ["1 bar(s) whose high is 5x the higher of its open and close, or whose low "
                                            "is less than 1/5 of the lower (a bad tick?)"]
    assert rep.to_dict()["implausible_wicks"] == [(T0 + 120 * H).isoformat()]


@pytest.mark.parametrize("run", [11, 12, 150])
def test_a_run_of_unchanged_bars_makes_the_verdict_amber(run: int) -> None:
    """2,000 bars at one price, or two frozen weeks inside real candles, were green (a stale
    feed); 11 unchanged bars in a row stay green."""
    df = bars(400, seed=3)
    price = df["close"].iloc[99]
    df.iloc[100:100 + run, :4] = price  # open = high = low = close = the close before
    rep = validate_ohlcv(df)
    if run < 12:
        assert rep.frozen_runs == [] and rep.verdict == ("green", []), rep.verdict
        return
    assert rep.ok and rep.frozen_runs == [(T0 + 100 * H, T0 + (99 + run) * H, run)]
    level, reasons = rep.verdict
    assert level == "amber" and (f"{run} bars in 1 run(s) of 12 h or more that repeat the previous close unchanged "
                                 "(a stale feed?)") in reasons, reasons  # (with spikes where it ends: its MAD is 0)


def test_a_short_unchanged_stretch_of_minute_bars_is_trading_not_a_stale_feed() -> None:
    """12 unchanged 1m bars (an illiquid coin's quiet quarter hour) were amber; 12 hours of them are not."""
    df = bars(2000, seed=3)
    df.index = pd.date_range(T0, periods=2000, freq="1min", name="timestamp").as_unit("ns")
    for start, run in ((100, 30), (900, 720)):
        df.iloc[start:start + run, :4] = df["close"].iloc[start - 1]
    rep = validate_ohlcv(df)
    assert [r[2] for r in rep.frozen_runs] == [720]


def test_spike_threshold_is_ten_rolling_mads() -> None:
    rng = np.random.default_rng(11)
    r = rng.normal(0.0, 0.001, 300)
    r[150] = 0.012  # about 18 MADs (MAD of N(0, s) is 0.674 s): a spike
    r[250] = -0.004  # about 6 MADs: not a spike
    close = 100.0 * np.exp(np.cumsum(r))
    open_ = np.r_[100.0, close[:-1]]
    index = pd.date_range(T0, periods=300, freq="1h", name="timestamp").as_unit("ns")
    df = pd.DataFrame(
        {"open": open_, "high": np.maximum(open_, close), "low": np.minimum(open_, close), "close": close, "volume": 1.0},
        index=index,
    )
    assert validate_ohlcv(df).spikes == [T0 + 150 * H]


def test_no_spikes_in_a_quiet_walk() -> None:
    assert validate_ohlcv(bars(500, seed=1)).spikes == []


def test_quality_orders_problems() -> None:
    clean = validate_ohlcv(bars()).quality
    gappy = validate_ohlcv(bars().drop(index=[T0 + 5 * H])).quality
    broken = validate_ohlcv(set_value(bars(), 3, "close", np.nan)).quality
    assert 0 <= broken < gappy < clean == 100


def test_to_dict_is_json_safe_and_summary_is_readable() -> None:
    df = bars(48).drop(index=[T0 + 10 * H]).iloc[[0, 2, 1, *range(3, 47)]]
    rep = validate_ohlcv(set_value(df, 20, "volume", 0.0))
    data = json.loads(json.dumps(rep.to_dict()))
    assert data["gaps"] == [[(T0 + 10 * H).isoformat(), (T0 + 11 * H).isoformat(), 1]]
    assert data["coverage"]["expected_bars"] == 48
    assert data["ok"] is True and data["sorted"] is False
    text = rep.summary()
    assert len(text.splitlines()) >= 4 and "gap" in text and "quality" in text


@settings(max_examples=40, deadline=None)
@given(st.sets(st.integers(min_value=1, max_value=198), max_size=40))
def test_missing_bars_equal_the_deleted_bars(deleted: set[int]) -> None:
    df = bars(200)
    df = df.drop(index=[T0 + i * H for i in deleted])
    rep = validate_ohlcv(df, timeframe="1h")
    assert rep.missing_bars == len(deleted)
    assert rep.expected_bars == 200
    assert sum(n for _, _, n in rep.gaps) == len(deleted)
    for start, end, n in rep.gaps:
        assert end - start == n * H


# ------------------------------------------------------------------------------ real files


MESSY_GAPS = [
    ("2017-09-06 16:00", "2017-09-06 23:00", 7),
    ("2018-01-04 04:00", "2018-01-04 05:00", 1),
    ("2018-02-08 01:00", "2018-02-09 09:00", 32),
    ("2018-06-26 02:00", "2018-06-26 12:00", 10),
    ("2018-06-27 13:00", "2018-06-27 14:00", 1),
    ("2018-07-04 01:00", "2018-07-04 08:00", 7),
    ("2018-10-19 06:00", "2018-10-19 09:00", 3),
    ("2018-11-14 02:00", "2018-11-14 09:00", 7),
    ("2019-03-12 02:00", "2019-03-12 08:00", 6),
    ("2019-05-15 03:00", "2019-05-15 13:00", 10),
    ("2019-08-15 02:00", "2019-08-15 10:00", 8),
    ("2019-11-13 02:00", "2019-11-13 04:00", 2),
    ("2019-11-25 02:00", "2019-11-25 04:00", 2),
]


def test_messy_file_gaps_and_off_grid(shared_data: Path) -> None:
    df = read_ohlcv_file(shared_data / "binance" / "BTC_USDT-1h-2017-2020.parquet")
    rep = validate_ohlcv(df)
    assert rep.ok
    assert rep.timeframe == "1h"
    expected = [(pd.Timestamp(a, tz="UTC"), pd.Timestamp(b, tz="UTC"), n) for a, b, n in MESSY_GAPS]
    assert rep.gap_count == 13 and rep.gaps == expected
    assert rep.largest_gap_bars == 32
    # Binance resumed after the Feb 2018 outage with candles at hh:28:14.789: one off-grid run
    first_off = pd.Timestamp("2018-02-09 09:28:14.789", tz="UTC")
    assert len(rep.off_grid_runs) == 1
    assert rep.off_grid_runs[0] == (first_off, first_off + 42 * H, 43)
    assert rep.off_grid[0] == first_off and len(rep.off_grid) == 43
    assert rep.zero_volume == 1
    assert rep.bars == 21_453 and rep.expected_bars == 21_453 + 96
    assert 80 < rep.quality < 99


@pytest.mark.parametrize(
    "name", ["BTC_USDT-1h", "ETH_USDT-1h", "SOL_USDT-1h", "BTC_USDT-4h", "BTC_USDT-15m", "BTC_USDT-5m"]
)
def test_clean_real_files(shared_data: Path, name: str) -> None:
    df = read_ohlcv_file(shared_data / "binance" / f"{name}.parquet")
    rep = validate_ohlcv(df)
    assert rep.ok, rep.errors
    assert rep.gap_count == 0 and rep.off_grid == [] and rep.duplicates == 0
    assert rep.timeframe == name.split("-")[1]
    assert rep.bars == rep.expected_bars == len(df)
    assert rep.quality > 98


def test_validation_is_fast_on_120k_bars(shared_data: Path) -> None:
    df = read_ohlcv_file(shared_data / "binance" / "BTC_USDT-5m.parquet")
    assert len(df) > 119_000
    t = time.perf_counter()
    validate_ohlcv(df)
    assert time.perf_counter() - t < 0.5


def test_finer_bars_among_the_timeframe_are_named_as_sharing_a_slot() -> None:
    """A 4h file with one day of 1h bars read "18 off-grid timestamp(s)" alone: nothing said that
    several bars fell in one 4h slot."""
    four = bars(60).iloc[::4]
    hourly = bars(60).iloc[16:24]  # two 4h slots as 1h bars: 6 of them off the 4h grid, 6 sharing a slot
    mixed = pd.concat([four[~four.index.isin(hourly.index)], hourly]).sort_index()
    rep = validate_ohlcv(mixed, "4h")
    note = next(w for w in rep.warnings if "off-grid" in w)
    assert "6 off-grid timestamp(s)" in note and "6 bars share a 4h slot with the bar before" in note, note
    assert not any("share a" in w for w in validate_ohlcv(set_value(four, 3, "close", 100.0), "4h").warnings)
