"""Hostile input files: each one is refused with one clear DataError (CLI: one `error:` line,
exit 2) or, where the tracker says so, read correctly; nothing garbage is ever "OK"."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import threadx

from threadx.cli import main
from threadx.data import load_ohlcv, read_ohlcv_file, validate_ohlcv, write_ohlcv
from threadx.data.io import check_ohlcv_file
from threadx.data.validate import MIN_QUALITY
from threadx.errors import DataError

COLS = ["open", "high", "low", "close", "volume"]
T0 = pd.Timestamp("2024-03-01 00:00", tz="UTC")


def candles(n: int = 200, start: pd.Timestamp = T0, freq: str = "1h") -> pd.DataFrame:
    """Clean canonical candles (a small random walk)."""
    rng = np.random.default_rng(5)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.003, n)))
    open_ = np.r_[100.0, close[:-1]]
    index = pd.date_range(start, periods=n, freq=freq, name="timestamp").as_unit("ns")
    return pd.DataFrame(
        {"open": open_, "high": np.maximum(open_, close) * 1.002, "low": np.minimum(open_, close) * 0.998,
         "close": close, "volume": rng.uniform(1, 2, n)},
        index=index,
    )


def epoch_csv(path: Path, df: pd.DataFrame, seconds: np.ndarray | None = None) -> Path:
    """CSV with a numeric ``timestamp`` column (epoch values given, else milliseconds)."""
    times = df.index.asi8 // 10**6 if seconds is None else seconds
    out = df.reset_index(drop=True)
    out.insert(0, "timestamp", times)
    out.to_csv(path, index=False)
    return path


def text_csv(path: Path, df: pd.DataFrame, fmt: str) -> Path:
    """CSV with a ``date`` column of text written with ``fmt``."""
    out = df.reset_index(drop=True)
    out.insert(0, "date", df.index.strftime(fmt))
    out.to_csv(path, index=False)
    return path


def one_error_line(capsys: pytest.CaptureFixture, argv: list[str], *needles: str) -> str:
    """Run the CLI; assert exit 2, one ``error:`` line on stderr naming every needle."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data_root = tmp_path / "data"
    monkeypatch.setenv("THREADX_DATA_ROOT", str(data_root))
    monkeypatch.setenv("THREADX_CACHE_DIR", str(tmp_path / "cache"))
    return data_root


# ------------------------------------------------------------------ non-finite values


@pytest.mark.parametrize("col,value", [("high", np.inf), ("low", -np.inf), ("close", np.inf), ("open", np.nan),
                                       ("volume", np.nan)])
def test_non_finite_values_are_errors(col: str, value: float) -> None:
    df = candles()
    df.iloc[50, df.columns.get_loc(col)] = value
    rep = validate_ohlcv(df)
    assert not rep.ok and rep.nan_rows == [50]
    assert f"NaN or infinite values (in {col})" in rep.errors[0]  # (named: volume's NaNs read as the prices')
    assert rep.quality <= 50


@pytest.mark.parametrize("value", [np.inf, np.nan, 0.0])
def test_a_backtest_of_a_frame_with_a_bad_price_names_it(value: float) -> None:
    df = candles()
    df.iloc[50, df.columns.get_loc("close")] = value
    with pytest.raises(DataError, match=r"finite and positive \(NaN, inf or <= 0 found\)"):
        threadx.backtest(df, "ma_crossover")


def test_import_refuses_inf_and_lists_the_error(tmp_path: Path, root: Path, capsys: pytest.CaptureFixture) -> None:
    df = candles()
    df.iloc[10, df.columns.get_loc("high")] = np.inf
    src = epoch_csv(tmp_path / "BTC_USDT-1h.csv", df)
    one_error_line(capsys, ["data", "import", str(src)], "invalid data", "infinite", "2024-03-01T10:00:00")
    assert not (root / "local").exists()  # nothing written
    assert main(["data", "validate", str(src)]) == 1
    assert "ERROR" in capsys.readouterr().out


# ------------------------------------------------------------------ garbage time


def test_spacing_not_the_file_names_timeframe_is_an_error(tmp_path: Path) -> None:
    src = epoch_csv(tmp_path / "BTC_USDT-1h.csv", candles(freq="3s"))
    _, rep = check_ohlcv_file(src)
    assert not rep.ok
    assert any("3s apart, not 1h" in e for e in rep.errors)
    with pytest.raises(DataError, match="not 1h"):
        load_ohlcv(src)
    assert check_ohlcv_file(epoch_csv(tmp_path / "BTC_USDT-3s.csv", candles(freq="3s")))[1].ok


def test_explicit_timeframe_is_checked_too() -> None:
    rep = validate_ohlcv(candles(freq="1h"), timeframe="4h")
    assert any("1h apart, not 4h" in e for e in rep.errors)


def test_bars_more_than_a_year_apart_are_no_timeframe_not_a_type_error(tmp_path: Path) -> None:
    """Since timeframes stop at a year, bars 400 days apart raised a TypeError in Bars.from_frame
    (with a timeframe) and "unknown timeframe '400d'" (one never typed) in data validate."""
    from threadx.data.bars import Bars

    df = candles(4, freq="400D")
    with pytest.raises(DataError, match="the bars are mostly 400 days apart, not 1d"):
        Bars.from_frame(df, timeframe="1d")
    src = epoch_csv(tmp_path / "ABC_USDT-1d.csv", df)
    assert any("400 days 00:00:00 apart, which is not a timeframe" in e for e in check_ohlcv_file(src)[1].errors)


def test_spacing_that_is_no_timeframe_is_an_error() -> None:
    df = candles()
    df.index = pd.DatetimeIndex(T0.value + np.arange(len(df)) * 3_600_000_000, tz="UTC", name="timestamp")  # 3.6 s
    rep = validate_ohlcv(df)
    assert not rep.ok and any("not a timeframe" in e for e in rep.errors)


def test_mixed_second_and_millisecond_epochs_are_refused(tmp_path: Path) -> None:
    df = candles()
    seconds = df.index.asi8 // 10**9
    mixed = np.where(np.arange(len(df)) < 100, seconds, seconds * 1000)  # half in s, half in ms
    src = epoch_csv(tmp_path / "BTC_USDT-1h.csv", df, mixed)
    with pytest.raises(DataError, match="mixes epoch units.*row 100 as milliseconds"):
        read_ohlcv_file(src)


@pytest.mark.parametrize("unit, scale", [("seconds", 1), ("milliseconds", 1000)])
@pytest.mark.parametrize("as_float", [False, True])
def test_epochs_past_2262_are_refused_not_wrapped_round(tmp_path: Path, unit: str, scale: int, as_float: bool) -> None:
    """Whole seconds around 2.0e10 (the year 2609) overflowed int64 in nanoseconds and loaded as
    "500 bars from 2024-09-13" without a word; as floats they read "missing or unreadable"."""
    df = candles()
    times = (df.index.asi8 // 10**9 + 18_446_744_073) * scale
    src = epoch_csv(tmp_path / "BTC_USDT-1h.csv", df, times.astype(float) if as_float else times)
    with pytest.raises(DataError, match=f"row 0\\) read as {unit} is outside the years 1677 to 2262"):
        read_ohlcv_file(src)


@pytest.mark.parametrize("start,needle", [("1970-01-01", "before 1990-01-01"), ("1989-06-01", "before 1990-01-01"),
                                          ("2100-01-01", "in the future")])
def test_implausible_dates_are_errors(tmp_path: Path, start: str, needle: str) -> None:
    df = candles(start=pd.Timestamp(start, tz="UTC"))
    rep = validate_ohlcv(df)
    assert not rep.ok and any(needle in e for e in rep.errors)
    src = epoch_csv(tmp_path / "x.csv", df, df.index.asi8 // 10**9)
    with pytest.raises(DataError, match=needle):
        load_ohlcv(src)


def test_bars_up_to_a_day_ahead_are_fine() -> None:
    now = pd.Timestamp.now(tz="UTC").floor("1h")
    assert validate_ohlcv(candles(48, start=now - pd.Timedelta("24h"))).ok


# ------------------------------------------------------------------ date text


def test_ambiguous_day_month_text_is_refused_unless_a_format_is_given(tmp_path: Path, capsys, root: Path) -> None:
    df = candles(72, start=pd.Timestamp("2024-04-01", tz="UTC"))  # 01/04 .. 03/04: both orders read
    src = text_csv(tmp_path / "BTC_USDT-1h.csv", df, "%d/%m/%Y %H:%M")
    with pytest.raises(DataError, match="both day-first and month-first"):
        read_ohlcv_file(src)
    for kwargs in ({"date_format": "%d/%m/%Y %H:%M"}, {"dayfirst": True}):
        got = load_ohlcv(src, **kwargs)
        np.testing.assert_array_equal(got.index.asi8, df.index.asi8)
    assert main(["data", "validate", str(src), "--date-format", "%d/%m/%Y %H:%M"]) == 0
    one_error_line(capsys, ["data", "import", str(src)], "day-first", "--date-format")
    assert main(["data", "import", str(src), "--date-format", "%d/%m/%Y %H:%M"]) == 0
    assert load_ohlcv("local/BTC_USDT-1h").index[0] == df.index[0]


def test_day_first_text_is_read_day_first_throughout(tmp_path: Path) -> None:
    # the first dates (12/04) read either way, 13/04 only day-first: the whole column is day-first
    df = candles(10, start=pd.Timestamp("2024-04-12 20:00", tz="UTC"))
    got = read_ohlcv_file(text_csv(tmp_path / "x.csv", df, "%d/%m/%Y %H:%M"))
    np.testing.assert_array_equal(got.index.asi8, df.index.asi8)


@pytest.mark.parametrize("fmt", ["%m/%d/%Y %I:%M %p", "%d/%m/%Y %I:%M %p", "%m-%d-%Y %I:%M:%S %p"])
def test_twelve_hour_text_is_read_in_the_one_order_that_reads_it_all(tmp_path: Path, fmt: str) -> None:
    """"09/14/2024 12:00 AM" was refused as read "both day-first and month-first" (pandas guesses
    no 12-hour clock, and its "mixed" reading takes either order): only month-first reads the 14th."""
    df = candles(400, start=pd.Timestamp("2024-09-10 20:00", tz="UTC"))  # days 10 to 27: one order only
    got = read_ohlcv_file(text_csv(tmp_path / "x.csv", df, fmt))
    np.testing.assert_array_equal(got.index.asi8, df.index.asi8)


def test_a_json_row_list_with_a_stray_value_and_a_repeated_parquet_column_are_named(tmp_path: Path) -> None:
    """They read "TypeError: object of type 'int' has no len()" and pyarrow's "Multiple matches
    for FieldRef.Name(close)"."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "X_USDT-1h.json"
    src.write_text(json.dumps([[1700000000000, 1, 2, 0.5, 1.5, 10], 5, [1700003600000, 1, 2, 0.5, 1.5, 10]]))
    with pytest.raises(DataError, match=r"JSON row 1 is 5, not a row \[time, open, high, low, close, volume\]"):
        read_ohlcv_file(src)
    columns = {"timestamp": [1700000000000, 1700003600000], "open": [1.0, 1.1], "high": [2.0, 2.1],
               "low": [0.5, 0.6], "close": [1.5, 1.6], "volume": [10.0, 11.0]}
    table = pa.table([*columns.values(), pa.array([1.4, 1.5])], names=[*columns, "close"])
    pq.write_table(table, tmp_path / "Y_USDT-1h.parquet")
    with pytest.raises(DataError, match="column 'close' appears more than once: keep one of each"):
        read_ohlcv_file(tmp_path / "Y_USDT-1h.parquet")


def test_a_wrong_date_format_names_the_value(tmp_path: Path) -> None:
    src = text_csv(tmp_path / "x.csv", candles(5), "%Y-%m-%d %H:%M")
    with pytest.raises(DataError, match="unreadable time value '2024-03-01 00:00' at row 0 with date format"):
        read_ohlcv_file(src, date_format="%d/%m/%Y")


def test_iso_and_year_first_text_are_never_ambiguous(tmp_path: Path) -> None:
    df = candles(30)
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M"):
        got = read_ohlcv_file(text_csv(tmp_path / "x.csv", df, fmt))
        np.testing.assert_array_equal(got.index.asi8, df.index.asi8)


# ------------------------------------------------------------------ quality threshold


def test_quality_below_the_threshold_is_not_ok() -> None:
    df = candles(200)
    sparse = df.iloc[np.arange(200) % 4 != 0]  # a quarter of the bars missing
    rep = validate_ohlcv(sparse)
    assert rep.quality < MIN_QUALITY and not rep.ok
    assert rep.errors == [f"quality {rep.quality:.1f} is below {MIN_QUALITY:g} (too many gaps or problems: "
                          f"{rep.warnings[0]})"]  # (it said "see the warnings", which an import never showed)
    assert "49 gap(s), 49 missing bar(s)" in rep.errors[0]
    assert "OK" not in rep.summary().splitlines()[0]
    assert validate_ohlcv(df.drop(index=df.index[[20, 90]])).ok  # a few gaps stay fine


def test_sparse_but_valid_bars_load_for_a_backtest_and_are_refused_on_import(tmp_path: Path, data_root: Path) -> None:
    # backtesting.py's GOOG.csv: daily stock bars from 2004, no weekends (quality about 71)
    days = pd.bdate_range("2004-08-19", periods=400)
    close = 100 * np.exp(np.cumsum(np.random.default_rng(3).normal(0, 0.01, len(days))))
    goog = pd.DataFrame({"Open": close, "High": close * 1.01, "Low": close * 0.99, "Close": close,
                         "Volume": 1e6}, index=days)
    src = tmp_path / "GOOG.csv"
    goog.to_csv(src)
    df = load_ohlcv(src)
    assert len(df) == 400 and df.attrs["timeframe"] == "1d"
    assert any("below" in w for w in df.attrs["warnings"])
    assert threadx.backtest(df, "ma_crossover", {}).metrics["n_bars"] == 400
    code = main(["data", "import", str(src), "--exchange", "stocks", "--symbol", "GOOG_USD"])
    assert code == 2


# ------------------------------------------------------------------ pandas' default to_csv


def test_default_to_csv_with_unnamed_date_index_is_read(tmp_path: Path) -> None:
    df = candles(48)
    df.index.name = None
    src = tmp_path / "BTC_USDT-1h.csv"
    df.to_csv(src)  # header ",open,high,low,close,volume"
    assert src.read_text().startswith(",open,high,low,close,volume")
    got = load_ohlcv(src)
    pd.testing.assert_frame_equal(got, candles(48), check_freq=False)


def test_goog_csv_layout_is_read(tmp_path: Path) -> None:
    src = tmp_path / "GOOG.csv"  # backtesting.py's test file layout
    src.write_text(
        ",Open,High,Low,Close,Volume\n"
        "2004-08-19,100.0,104.06,95.96,100.34,22351900\n"
        "2004-08-20,101.01,109.08,100.5,108.31,11428600\n"
        "2004-08-23,110.75,113.48,109.05,109.4,9137200\n"
    )
    got = read_ohlcv_file(src)
    assert list(got.index) == [pd.Timestamp(d, tz="UTC") for d in ("2004-08-19", "2004-08-20", "2004-08-23")]
    assert got["close"].tolist() == [100.34, 108.31, 109.4]


def test_unnamed_first_column_of_row_numbers_is_no_time(tmp_path: Path) -> None:
    src = tmp_path / "rows.csv"
    candles(5).reset_index(drop=True).to_csv(src)  # ",open,..." with 0, 1, 2 ...
    with pytest.raises(DataError, match="no time column"):
        read_ohlcv_file(src)


def test_columns_that_differ_only_in_case_are_ambiguous(tmp_path: Path) -> None:
    """``CLOSE`` and ``Close`` with other values: the first was used without a word (green)."""
    frame = candles(50).reset_index()
    frame["CLOSE"] = frame["close"] * 2
    src = tmp_path / "dup.csv"
    frame.rename(columns={"close": "Close"}).to_csv(src, index=False)
    with pytest.raises(DataError, match=r"ambiguous columns Close, CLOSE \(the same name in another case"):
        read_ohlcv_file(src)


@pytest.mark.parametrize("values", ["bool", "object"])
def test_true_false_values_are_no_volume(tmp_path: Path, values: str) -> None:
    frame = candles(50).reset_index()
    flags = [True, False] * 25
    frame["volume"] = flags if values == "bool" else pd.Series(flags, dtype=object)
    src = tmp_path / "flags.parquet"
    frame.to_parquet(src, index=False)
    with pytest.raises(DataError, match="column 'volume' holds true/false values, not numbers"):
        read_ohlcv_file(src)


def test_a_header_of_many_columns_is_named_in_short(tmp_path: Path) -> None:
    src = tmp_path / "wide.csv"
    src.write_text(",".join(f"c{k}" for k in range(5000)) + "\n" + ",".join("1" for _ in range(5000)) + "\n")
    with pytest.raises(DataError, match=r"found c0, c1, .*c19 and 4,980 more\)") as caught:
        read_ohlcv_file(src)
    assert len(str(caught.value)) < 1000


# ------------------------------------------------------------------ folders and disk full


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_is_not_a_regular_file_not_a_missing_one(tmp_path: Path, root: Path) -> None:
    """A FIFO given as --data read "file not found", sending the user looking for a file that is there."""
    pipe = tmp_path / "F-1h.csv"
    os.mkfifo(pipe)
    with pytest.raises(DataError, match="F-1h.csv: not a regular file"):
        load_ohlcv(pipe)


def test_a_folder_is_named_as_a_folder(tmp_path: Path, root: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "BTC_USDT-1h.csv"
    folder.mkdir()
    for source in (folder, tmp_path):
        with pytest.raises(DataError, match="is a folder, not a data file.*parquet.*csv") as info:
            load_ohlcv(source)
        assert "not found" not in str(info.value)
    with pytest.raises(DataError, match="is a folder"):
        read_ohlcv_file(folder)
    one_error_line(capsys, ["data", "import", str(tmp_path)], "is a folder", ".parquet")
    one_error_line(capsys, ["data", "validate", str(folder)], "is a folder")
    for empty in ("", "  "):  # (Path("") is the current folder: it read ": is a folder, not a data file")
        with pytest.raises(DataError, match="no dataset given: name one"):
            load_ohlcv(empty)


def test_disk_full_during_import(tmp_path: Path, root: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    target = write_ohlcv(candles(100), root / "local" / "BTC_USDT-1h.parquet")
    before = target.read_bytes()
    src = epoch_csv(tmp_path / "BTC_USDT-1h.csv", candles(150))

    def full_disk(table, where, **kwargs):
        Path(where).write_bytes(b"PAR1 half")  # a half-written temp file
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq, "write_table", full_disk)
    one_error_line(capsys, ["data", "import", str(src), "--replace"], "cannot write", "no space left on the disk",
                   "nothing was changed")
    assert target.read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["BTC_USDT-1h.parquet"]  # no temp file left


def test_a_sparse_file_backtested_from_the_cli_says_its_low_quality_once(tmp_path: Path, root: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    """The low-quality line came twice: logged as the file loaded, then again among its notes."""
    bars = candles(600)
    sparse = pd.concat([bars.iloc[:150], bars.iloc[350:]])  # 200 bars missing: quality below 80
    path = tmp_path / "GAP_USDT-1h.csv"
    sparse.reset_index().to_csv(path, index=False)
    assert main(["backtest", "--data", str(path), "--strategy", "ma_crossover"]) == 0
    err = capsys.readouterr().err
    assert err.count(f"is below {MIN_QUALITY:g}") == 1, err


def test_sparse_data_says_it_annualises_as_if_every_bar_were_there(tmp_path) -> None:
    """Stock-hours data (7 bars a weekday of 1h) read a Sharpe of 0.96 for 0.44, unsaid."""
    from threadx.data import load_ohlcv
    from threadx.data.io import write_ohlcv

    df = candles(24 * 60)
    hours = df[(df.index.hour >= 14) & (df.index.hour < 21) & (df.index.dayofweek < 5)]
    write_ohlcv(hours, tmp_path / "STK_USD-1h.parquet")
    notes = [w for w in load_ohlcv(tmp_path / "STK_USD-1h.parquet").attrs["warnings"] if "room for" in w]
    assert len(notes) == 1 and "Sharpe and volatility annualise as if every bar were there" in notes[0], notes
    write_ohlcv(df, tmp_path / "ALL_USD-1h.parquet")
    assert not [w for w in load_ohlcv(tmp_path / "ALL_USD-1h.parquet").attrs["warnings"] if "room for" in w]
