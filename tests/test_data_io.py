"""Reading every supported file layout, atomic writes, and load_ohlcv's decisions."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from threadx.data import load_ohlcv, read_ohlcv_file, write_ohlcv
from threadx.errors import DataError

T0 = pd.Timestamp("2024-03-01 00:00", tz="UTC")
COLS = ["open", "high", "low", "close", "volume"]


def bars(n: int = 6, start: pd.Timestamp = T0, freq: str = "1h") -> pd.DataFrame:
    """A small valid canonical frame with distinct values per row."""
    index = pd.date_range(start, periods=n, freq=freq, name="timestamp").as_unit("ns")
    o = 100.0 + np.arange(n)
    c = o + np.where(np.arange(n) % 2 == 0, 0.5, -0.5)
    return pd.DataFrame(
        {"open": o, "high": np.maximum(o, c) + 1, "low": np.minimum(o, c) - 1, "close": c, "volume": 10.0 + np.arange(n)},
        index=index,
    )


def rows_of(df: pd.DataFrame, unit_div: int) -> list[list[float]]:
    secs = df.index.asi8 // unit_div
    return [[int(t), *map(float, row)] for t, row in zip(secs, df[COLS].to_numpy())]


def assert_canonical(df: pd.DataFrame) -> None:
    assert isinstance(df.index, pd.DatetimeIndex)
    assert str(df.index.tz) == "UTC"
    assert df.index.name == "timestamp"
    assert df.index.unit == "ns"
    assert list(df.columns) == COLS
    assert all(dtype == np.float64 for dtype in df.dtypes)


# ------------------------------------------------------------------------------ CSV


@pytest.mark.parametrize("unit_div", [10**9, 10**6, 10**3, 1], ids=["seconds", "ms", "us", "ns"])
def test_csv_epoch_units_detected_by_magnitude(tmp_path: Path, unit_div: int) -> None:
    expected = bars()
    path = tmp_path / "x.csv"
    pd.DataFrame(rows_of(expected, unit_div), columns=["timestamp", *COLS]).to_csv(path, index=False)
    got = read_ohlcv_file(path)
    assert_canonical(got)
    pd.testing.assert_frame_equal(got, expected, check_freq=False)


def test_csv_iso_strings_and_upper_case_columns(tmp_path: Path) -> None:
    expected = bars()
    path = tmp_path / "upper.csv"
    text = "Date,OPEN,High,LOW,Close,Volume\n" + "\n".join(
        f"{t.strftime('%Y-%m-%dT%H:%M:%SZ')},{o},{h},{lo},{c},{v}"
        for t, (o, h, lo, c, v) in zip(expected.index, expected[COLS].to_numpy())
    )
    path.write_text(text)
    got = read_ohlcv_file(path)
    assert_canonical(got)
    pd.testing.assert_frame_equal(got, expected, check_freq=False)


def test_csv_naive_datetime_is_utc_and_offsets_convert(tmp_path: Path) -> None:
    path = tmp_path / "tz.csv"
    path.write_text("time,open,high,low,close,volume\n2024-03-01 00:00:00,1,2,0.5,1.5,3\n"
                    "2024-03-01 01:00:00,1,2,0.5,1.5,3\n")
    assert list(read_ohlcv_file(path).index) == [T0, T0 + pd.Timedelta("1h")]
    path.write_text("time,open,high,low,close,volume\n2024-03-01T01:00:00+01:00,1,2,0.5,1.5,3\n"
                    "2024-03-01T02:00:00+01:00,1,2,0.5,1.5,3\n")
    assert list(read_ohlcv_file(path).index) == [T0, T0 + pd.Timedelta("1h")]
    path.write_text("time,open,high,low,close,volume\n2024-03-01 00:00:00,1,2,0.5,1.5,3\n"
                    "2024-03-01T02:00:00+01:00,1,2,0.5,1.5,3\n")  # one of each: refused (test_data_formats)
    with pytest.raises(DataError, match="mixes times with a zone"):
        read_ohlcv_file(path)


def test_csv_open_time_column_and_extra_columns(tmp_path: Path) -> None:
    expected = bars(3)
    frame = pd.DataFrame(rows_of(expected, 10**6), columns=["open_time", *COLS])
    frame["close_time"] = frame["open_time"] + 3_599_999
    frame["trades"] = 7
    path = tmp_path / "k.csv"
    frame.to_csv(path, index=False)
    pd.testing.assert_frame_equal(read_ohlcv_file(path), expected, check_freq=False)


def test_headerless_csv_reads_positionally(tmp_path: Path) -> None:
    expected = bars(4)
    path = tmp_path / "BTCUSDT-1h-2024-03.csv"  # exchange kline dump: no header, 12 columns
    lines = [",".join(map(str, row + [0, 0, 0, 0, 0, 0])) for row in rows_of(expected, 10**6)]
    path.write_text("\n".join(lines) + "\n")
    pd.testing.assert_frame_equal(read_ohlcv_file(path), expected, check_freq=False)


def test_file_order_is_kept_not_sorted_or_deduped(tmp_path: Path) -> None:
    df = bars(4)
    shuffled = df.iloc[[2, 0, 0, 3, 1]]
    path = tmp_path / "messy.csv"
    pd.DataFrame(rows_of(shuffled, 10**6), columns=["timestamp", *COLS]).to_csv(path, index=False)
    got = read_ohlcv_file(path)
    assert list(got.index) == list(shuffled.index)
    assert got["open"].tolist() == shuffled["open"].tolist()


# ------------------------------------------------------------------------------ freqtrade, feather, parquet, json


def test_freqtrade_json_layout(tmp_path: Path) -> None:
    expected = bars(5)
    folder = tmp_path / "user_data" / "data" / "binance"
    folder.mkdir(parents=True)
    path = folder / "BTC_USDT-1h.json"
    path.write_text(json.dumps(rows_of(expected, 10**6)))
    got = read_ohlcv_file(path)
    assert_canonical(got)
    pd.testing.assert_frame_equal(got, expected, check_freq=False)


def test_json_gz_and_records(tmp_path: Path) -> None:
    import gzip

    expected = bars(3)
    path = tmp_path / "BTC_USDT-1h.json.gz"
    with gzip.open(path, "wt") as fh:
        json.dump(rows_of(expected, 10**6), fh)
    pd.testing.assert_frame_equal(read_ohlcv_file(path), expected, check_freq=False)
    records = [dict(zip(["timestamp", *COLS], row)) for row in rows_of(expected, 10**9)]
    rec_path = tmp_path / "records.json"
    rec_path.write_text(json.dumps(records))
    pd.testing.assert_frame_equal(read_ohlcv_file(rec_path), expected, check_freq=False)


def test_freqtrade_feather_layout(tmp_path: Path) -> None:
    expected = bars(5)
    folder = tmp_path / "user_data" / "data" / "binance"
    folder.mkdir(parents=True)
    path = folder / "ETH_USDT-1h.feather"
    frame = expected.reset_index().rename(columns={"timestamp": "date"})
    frame["date"] = frame["date"].dt.as_unit("ms")
    frame.to_feather(path)
    got = read_ohlcv_file(path)
    assert_canonical(got)
    pd.testing.assert_frame_equal(got, expected, check_freq=False)


def test_parquet_with_datetime_index_and_naive_times(tmp_path: Path) -> None:
    expected = bars(4)
    indexed = tmp_path / "indexed.parquet"
    expected.rename_axis("date").to_parquet(indexed)
    pd.testing.assert_frame_equal(read_ohlcv_file(indexed), expected, check_freq=False)
    naive = tmp_path / "naive.parquet"
    frame = expected.reset_index()
    frame["timestamp"] = frame["timestamp"].dt.tz_localize(None).dt.as_unit("us")
    frame.to_parquet(naive)
    pd.testing.assert_frame_equal(read_ohlcv_file(naive), expected, check_freq=False)


def test_integer_prices_become_float64(tmp_path: Path) -> None:
    path = tmp_path / "ints.csv"
    path.write_text("timestamp,open,high,low,close,volume\n1709251200,1,2,1,2,5\n")
    got = read_ohlcv_file(path)
    assert_canonical(got)
    assert got.iloc[0].tolist() == [1.0, 2.0, 1.0, 2.0, 5.0]


# ------------------------------------------------------------------------------ errors


def _one_line_error(path: Path, *needles: str) -> str:
    with pytest.raises(DataError) as info:
        read_ohlcv_file(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    for needle in needles:
        assert needle in message, message
    return message


def test_missing_file(tmp_path: Path) -> None:
    _one_line_error(tmp_path / "nope.parquet", "not found")


def test_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "data.xls2"
    path.write_text("x")
    _one_line_error(path, "unknown file format", ".xls2")
    _one_line_error(path.rename(tmp_path / "data.xlsx"), "a spreadsheet workbook: save it as CSV")
    # a bare .gz: "unknown file format '.gz' (accepted: ... compressed too: .gz, .zip)" contradicted itself
    bare = (tmp_path / "data.xlsx").rename(tmp_path / "BTC_USDT-1h.gz")
    _one_line_error(bare, "name it for the format inside, e.g. BTC_USDT-1h.csv.gz")


def test_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    path.write_text("timestamp,open,high,low\n1709251200,1,2,1\n")
    _one_line_error(path, "missing column", "close", "volume")


def test_no_time_column(tmp_path: Path) -> None:
    path = tmp_path / "notime.csv"
    path.write_text("when,open,high,low,close,volume\nx,1,2,1,2,5\n")
    _one_line_error(path, "no time column")


def test_unreadable_content(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"this is not parquet at all")
    _one_line_error(path, "cannot read parquet")
    bad_json = tmp_path / "broken.json"
    bad_json.write_text("[[1, 2, 3")
    _one_line_error(bad_json, "cannot read json")


def test_non_numeric_value_names_column_and_row(tmp_path: Path) -> None:
    path = tmp_path / "text.csv"
    path.write_text("timestamp,open,high,low,close,volume\n1709251200,1,2,1,2,5\n1709254800,1,2,1,abc,5\n")
    _one_line_error(path, "'close'", "non-numeric", "row 1", "abc")


def test_unreadable_time_value(tmp_path: Path) -> None:
    path = tmp_path / "badtime.csv"
    path.write_text("date,open,high,low,close,volume\n2024-03-01,1,2,1,2,5\nyesterday,1,2,1,2,5\n")
    _one_line_error(path, "yesterday", "row 1")


def test_empty_cells_stay_nan_for_validation(tmp_path: Path) -> None:
    path = tmp_path / "holes.csv"
    path.write_text("timestamp,open,high,low,close,volume\n1709251200,1,2,1,,5\n")
    assert np.isnan(read_ohlcv_file(path)["close"].iloc[0])


# ------------------------------------------------------------------------------ write


def test_write_round_trip_has_timestamp_column(tmp_path: Path) -> None:
    df = bars(10)
    path = write_ohlcv(df, tmp_path / "sub" / "BTC_USDT-1h.parquet")
    schema = pq.read_schema(path)
    assert schema.names == ["timestamp", *COLS]
    assert str(schema.field("timestamp").type) == "timestamp[ns, tz=UTC]"
    pd.testing.assert_frame_equal(read_ohlcv_file(path), df, check_freq=False)
    assert [p.name for p in path.parent.iterdir()] == ["BTC_USDT-1h.parquet"]  # no temp file left


def test_failed_write_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_ohlcv(bars(5), tmp_path / "keep.parquet")
    before = path.read_bytes()

    def boom(*args, **kwargs):
        Path(args[1]).write_bytes(b"partial")  # a half-written temp file
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", boom)
    with pytest.raises(DataError, match="disk full"):  # one clear error, not an OSError traceback
        write_ohlcv(bars(9), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.parquet"]


# ------------------------------------------------------------------------------ load_ohlcv


def _csv(path: Path, df: pd.DataFrame) -> Path:
    pd.DataFrame(rows_of(df, 10**6), columns=["timestamp", *COLS]).to_csv(path, index=False)
    return path


def test_load_by_path_sets_attrs(tmp_path: Path) -> None:
    path = write_ohlcv(bars(24), tmp_path / "BTC_USDT-1h.parquet")
    df = load_ohlcv(path)
    assert_canonical(df)
    assert len(df) == 24
    assert df.attrs["timeframe"] == "1h"
    assert df.attrs["name"] == "BTC_USDT-1h"
    assert df.attrs["synthetic"] is False
    assert df.attrs["source"] == str(path)


def test_load_by_dataset_name(data_root: Path) -> None:
    write_ohlcv(bars(24), data_root / "binance" / "BTC_USDT-1h.parquet")
    df = load_ohlcv("binance/BTC_USDT-1h")
    assert df.attrs["name"] == "binance/BTC_USDT-1h"
    assert len(load_ohlcv("BTC_USDT-1h")) == 24
    assert len(load_ohlcv("binance/BTC/USDT-1h")) == 24


def test_load_sorts_unsorted_with_warning(tmp_path: Path) -> None:
    df = bars(6)
    path = _csv(tmp_path / "u.csv", df.iloc[[3, 1, 0, 2, 5, 4]])
    got, report = load_ohlcv(path, with_report=True)
    pd.testing.assert_frame_equal(got, df, check_freq=False)
    assert not report.sorted
    assert any("sorted" in w for w in got.attrs["warnings"])


def test_load_duplicates_error_or_keep_last(tmp_path: Path) -> None:
    df = bars(40)  # one duplicate in 41 rows keeps the quality above MIN_QUALITY once deduplicated
    dup = df.iloc[[0, 1, 2, 2, *range(3, 40)]].copy()
    dup.iloc[3, dup.columns.get_loc("volume")] = 999.0  # the later copy of 02:00
    path = _csv(tmp_path / "d.csv", dup)
    with pytest.raises(DataError, match="duplicate"):
        load_ohlcv(path)
    got = load_ohlcv(path, dedupe=True)
    assert got.index.is_unique and len(got) == 40
    assert got["volume"].iloc[2] == 999.0


def test_load_invalid_data_raises_summary(tmp_path: Path) -> None:
    df = bars(5)
    df.iloc[2, df.columns.get_loc("high")] = df["low"].iloc[2] - 5
    df.iloc[4, df.columns.get_loc("close")] = -1.0
    path = _csv(tmp_path / "bad.csv", df)
    with pytest.raises(DataError) as info:
        load_ohlcv(path)
    assert "high < max(open, close)" in str(info.value)
    assert "non-positive" in str(info.value)


def test_load_resamples_to_coarser_and_refuses_finer(tmp_path: Path) -> None:
    path = write_ohlcv(bars(10), tmp_path / "BTC_USDT-1h.parquet")
    four = load_ohlcv(path, timeframe="4h")
    assert four.attrs["timeframe"] == "4h"
    assert len(four) == 2  # 00:00 and 04:00; 08:00 has only 2 of its 4 hours
    assert four["volume"].iloc[0] == sum(10.0 + i for i in range(4))
    with pytest.raises(DataError, match="finer"):
        load_ohlcv(path, timeframe="15m")


def test_load_start_inclusive_end_exclusive(tmp_path: Path) -> None:
    path = write_ohlcv(bars(24), tmp_path / "BTC_USDT-1h.parquet")
    df = load_ohlcv(path, start="2024-03-01 05:00", end=pd.Timestamp("2024-03-01 09:00", tz="UTC"))
    assert df.index[0] == T0 + pd.Timedelta("5h")
    assert df.index[-1] == T0 + pd.Timedelta("8h")
    four = load_ohlcv(path, timeframe="4h", end="2024-03-01 10:00")
    assert list(four.index) == [T0, T0 + pd.Timedelta("4h")]  # the 08:00 bin would need 10:00 and 11:00


def test_load_sample_is_synthetic(data_root: Path) -> None:
    df = load_ohlcv("sample:BTC_USDT-1h")
    assert df.attrs["synthetic"] is True
    assert df.attrs["name"] == "synthetic/BTC_USDT-1h"
    assert (data_root / "synthetic" / "BTC_USDT-1h.parquet").is_file()
    assert load_ohlcv(data_root / "synthetic" / "ETH_USDT-1h.parquet").attrs["synthetic"] is True


def test_load_unknown_dataset(data_root: Path) -> None:
    with pytest.raises(DataError, match="unknown dataset"):
        load_ohlcv("binance/NOPE_USDT-1h")


def test_load_real_files(shared_data: Path) -> None:
    path = shared_data / "binance" / "BTC_USDT-1h.parquet"
    df = load_ohlcv(path)
    assert_canonical(df)
    assert len(df) == 12_556 and df.index.is_monotonic_increasing and df.index.is_unique
    messy = load_ohlcv(shared_data / "binance" / "BTC_USDT-1h-2017-2020.parquet")
    assert len(messy) == 21_453
    assert any("gap" in w for w in messy.attrs["warnings"])


def test_load_is_fast_on_12k_bars(shared_data: Path) -> None:
    path = shared_data / "binance" / "BTC_USDT-1h.parquet"
    load_ohlcv(path)

    def best(fn) -> float:
        times = []
        for _ in range(5):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    overhead = best(lambda: load_ohlcv(path)) - best(lambda: read_ohlcv_file(path))
    assert overhead < 0.02, f"load_ohlcv adds {overhead * 1000:.1f} ms to reading"


def test_a_file_rewritten_with_its_size_and_mtime_kept_is_validated_again(tmp_path):
    """The validation memo is keyed on the file's stamp (inode, mtime, ctime, size): a bad candle
    written over a good one, same length, with the mtime put back (cp -p, rsync -t), is seen."""
    import os

    from threadx.data.synthetic import generate_synthetic

    path = tmp_path / "BTC_USDT-1h.csv"
    frame = generate_synthetic("BTC_USDT", "1h", days=10).reset_index()
    frame["close"] = frame["close"].round(2)
    frame.to_csv(path, index=False)
    good, st = path.read_text(), path.stat()
    assert len(load_ohlcv(path)) == 240
    lines = good.split("\n")
    fields = lines[11].split(",")
    fields[4] = "".join("9" if ch.isdigit() else ch for ch in fields[4])  # a close far above the high
    lines[11] = ",".join(fields)
    path.write_text("\n".join(lines))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    with pytest.raises(DataError, match="high < max"):
        load_ohlcv(path)


@pytest.mark.parametrize("options", [{"sep": ";"}, {"sep": ";", "decimal": ","}, {"sep": "\t"}])
def test_a_csv_with_another_separator_or_decimal_commas_loads(tmp_path, options):
    """A European export (";" between fields, "101,5" for numbers) read "no time column ...
    found open_time;open;high;..." with no hint at the separator."""
    from threadx.data.synthetic import generate_synthetic

    frame = generate_synthetic(days=5, seed=1)
    frame.iloc[0, :4] = np.round(frame.iloc[0, :4])  # whole numbers first: "30000" beside "29999,96" (a code review)
    path = tmp_path / "X_USDT-1h.csv"
    frame.reset_index().to_csv(path, index=False, **options)
    loaded = load_ohlcv(str(path))
    np.testing.assert_allclose(loaded["close"].to_numpy(), frame["close"].to_numpy(), rtol=1e-12)
    assert (loaded.index == frame.index).all()
    bare = frame.reset_index()  # and without a header row, times in ms (an exchange dump)
    bare["timestamp"] = bare["timestamp"].astype("int64") // 10**6
    bare.to_csv(path, index=False, header=False, **options)
    np.testing.assert_allclose(load_ohlcv(str(path))["close"].to_numpy(), frame["close"].to_numpy(), rtol=1e-12)


def test_duplicates_dropped_as_asked_cost_nothing_when_equal_and_little_when_not():
    """Two monthly files overlapping by 100 rows, imported with --dedupe as the error advised,
    were then refused for quality 67.6 (the dropped rows cost 30 points): no way through but
    editing the files (a hostile test)."""
    from threadx.data.validate import MIN_QUALITY, validate_ohlcv
    from candles import candles

    bars = candles(900, pd.Timestamp("2024-09-01", tz="UTC"))
    overlap = pd.concat([bars.iloc[:500], bars.iloc[400:]])  # rows 400-499 twice, equal
    clean = validate_ohlcv(bars).quality
    same = validate_ohlcv(overlap, dedupe=True)
    unsorted = 2.0  # (the second file steps back in time: the rows are sorted on load)
    assert same.ok and same.duplicates == 100 and same.differing_duplicates == 0 and same.quality == clean - unsorted
    other = overlap.copy()
    other.iloc[400:500, other.columns.get_loc("volume")] += 1.0  # the first file's rows differ from the kept ones
    differ = validate_ohlcv(other, dedupe=True)
    assert differ.ok and differ.differing_duplicates == 100
    assert MIN_QUALITY <= differ.quality == clean - unsorted - 10.0
    assert "100 with other prices or volume than the row kept" in " ".join(differ.warnings)
    refused = validate_ohlcv(other)  # not asked: an error, as before
    assert not refused.ok and "to keep the last of each" in " ".join(refused.errors)
