"""Files as exchanges and tools hand them out (threadx.data.readers): each layout reads to the
same bars, or is refused with one line that says why. Found by a review that imported real
dumps: Binance monthly files were refused when the first row repeated a price, Kraken's rows
stored the VWAP as the volume, zip archives, UTF-16 and Windows-1252 files were refused."""
from __future__ import annotations

import gzip
import io
import json
import re
import zipfile

import numpy as np
import pandas as pd
import pytest

from threadx.data.io import import_ohlcv, load_ohlcv, read_ohlcv_file
from threadx.errors import DataError, ParamError

HOUR_MS = 3_600_000


def reference(n: int = 48, start: str = "2024-11-01", seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = np.round(70_000 + np.cumsum(rng.normal(0, 50, n)), 2)
    open_ = np.r_[close[0], close[:-1]]
    high = np.round(np.maximum(open_, close) + rng.uniform(0, 30, n), 2)
    low = np.round(np.minimum(open_, close) - rng.uniform(0, 30, n), 2)
    high[0] = open_[0]  # the first row repeats a price (pandas renamed the header cell "93702.15.1")
    volume = np.round(rng.uniform(1, 900, n), 4)
    index = pd.date_range(start, periods=n, freq="1h", tz="UTC", name="timestamp")
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index)


def epoch_ms(df: pd.DataFrame) -> np.ndarray:
    return df.index.as_unit("ms").asi8.astype(np.int64)


def binance_rows(df: pd.DataFrame, unit: int = 1) -> str:
    """data.binance.vision's kline CSV: no header, 12 values, open time in ms (us from 2025: unit 1000)."""
    t = epoch_ms(df) * unit
    return "".join(f"{a},{o},{h},{lo},{c},{v},{a + HOUR_MS * unit - 1},1.0,10,1.0,1.0,0\n"
                   for a, o, h, lo, c, v in zip(t, *(df[k] for k in ("open", "high", "low", "close", "volume"))))


def same_bars(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.index) == list(want.index)
    for column in want.columns:
        assert np.allclose(got[column].to_numpy(), want[column].to_numpy(), rtol=0, atol=1e-9), column


def test_a_binance_month_whose_first_row_repeats_a_price_reads(tmp_path):
    df = reference()
    path = tmp_path / "BTCUSDT-1h-2025-01.csv"
    path.write_text(binance_rows(df, unit=1000))  # (microseconds, as Binance writes since 2025)
    same_bars(read_ohlcv_file(path), df)


def test_zip_archives_as_binance_ships_them_one_or_several_months(tmp_path):
    nov, dec = reference(30, "2024-11-30"), reference(30, "2024-12-01 06:00", seed=4)
    one = tmp_path / "BTCUSDT-1h-2024-11.zip"
    with zipfile.ZipFile(one, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("BTCUSDT-1h-2024-11.csv", binance_rows(nov))
    same_bars(read_ohlcv_file(one), nov)
    both = tmp_path / "BTCUSDT-1h-2024.zip"
    with zipfile.ZipFile(both, "w") as archive:  # ms then us: each file in its own unit
        archive.writestr("BTCUSDT-1h-2024-12.csv", binance_rows(dec, unit=1000))
        archive.writestr("BTCUSDT-1h-2024-11.csv", binance_rows(nov))
        archive.writestr("__MACOSX/._BTCUSDT-1h-2024-11.csv", b"\x00\x05")
        archive.writestr("README.txt", "Data from somewhere")  # (was read as data: "no time column")
    same_bars(read_ohlcv_file(both), pd.concat([nov, dec]))
    _, target = import_ohlcv(one, "binance", data_root=tmp_path / "data")
    assert target.name == "BTCUSDT-1h-2024-11.parquet"
    empty = tmp_path / "notes.zip"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("README.md", "hello")
    with pytest.raises(DataError, match="holds no data file"):
        read_ohlcv_file(empty)
    with zipfile.ZipFile(empty, "w"):  # no member at all (it read "binary content, not text")
        pass
    with pytest.raises(DataError, match=r"holds no data file \(nothing;"):
        read_ohlcv_file(empty)


def test_kraken_rows_keep_the_volume_not_the_vwap(tmp_path):
    df = reference()
    vwap = np.round((df["high"] + df["low"] + df["close"]) / 3, 2)
    rows = [[int(t // 1000), str(o), str(h), str(lo), str(c), str(w), str(v), 7]
            for t, o, h, lo, c, w, v in zip(epoch_ms(df), df["open"], df["high"], df["low"], df["close"], vwap,
                                            df["volume"])]
    path = tmp_path / "kraken-XBTUSD-1h.json"
    path.write_text(json.dumps({"error": [], "result": {"XXBTZUSD": rows, "last": 1}}))
    same_bars(read_ohlcv_file(path), df)  # (the volume column held the VWAP: up to 98,130 off)


@pytest.mark.filterwarnings("ignore:.*epoch.*")  # (pandas deprecates writing epochs; files hold them)
def test_pandas_default_headers_and_envelopes(tmp_path):
    df = reference()
    rows = pd.DataFrame(np.c_[epoch_ms(df), df.to_numpy()])
    for name, text in {
        "plain.csv": rows.to_csv(index=False),  # header 0,1,2,3,4,5 read as a bar at time 0
        "index.csv": rows.to_csv(),  # header ,0,1,...: "no time column (found Unnamed: 0, 0, 1...)"
        "okx.json": json.dumps({"code": "0", "msg": "", "data": [[str(int(t)), *map(str, r), "0"]
                                                                 for t, *r in rows.to_numpy().tolist()]}),
        "bybit.json": json.dumps({"retCode": 0, "result": {"symbol": "BTCUSDT", "list": rows.to_numpy().tolist()}}),
        "own.json": df.to_json(date_format="epoch"),
        "own-iso.json": df.to_json(date_format="iso"),
        "split.json": df.to_json(orient="split", date_format="epoch"),
        "by-time.json": df.to_json(orient="index", date_format="epoch"),
    }.items():
        (tmp_path / name).write_text(text)
        same_bars(read_ohlcv_file(tmp_path / name), df)


def test_split_date_and_time_columns_and_metatrader_rows(tmp_path):
    df = reference()
    values = df.reset_index(drop=True)
    split = pd.DataFrame({"Date": df.index.strftime("%Y-%m-%d"), "Time": df.index.strftime("%H:%M"), **values})
    split.to_csv(tmp_path / "split.csv", index=False)  # (read the Date alone: "690 duplicate timestamps")
    same_bars(read_ohlcv_file(tmp_path / "split.csv"), df)
    mt = pd.DataFrame({"d": df.index.strftime("%Y.%m.%d"), "t": df.index.strftime("%H:%M"), **values})
    mt.to_csv(tmp_path / "mt.csv", index=False, header=False)
    same_bars(read_ohlcv_file(tmp_path / "mt.csv"), df)


def test_encodings_compression_and_a_preamble(tmp_path):
    df = reference()
    text = df.reset_index().assign(timestamp=epoch_ms(df)).to_csv(index=False)
    (tmp_path / "utf16.csv").write_bytes(text.encode("utf-16"))
    (tmp_path / "gzipped.csv").write_bytes(gzip.compress(text.encode()))  # named .csv, gzip inside
    (tmp_path / "cp1252.csv").write_bytes(text.replace("volume", "volume", 1).encode("cp1252")
                                          + "\n".encode())
    cdd = ("https://www.CryptoDataDownload.com\nunix,date,symbol,open,high,low,close,Volume BTC,Volume USDT\n"
           + "".join(f"{t},{ts:%Y-%m-%d %H:%M:%S},BTC/USDT,{o},{h},{lo},{c},{v},{v * c}\n"
                     for t, ts, o, h, lo, c, v in zip(epoch_ms(df), df.index, df["open"], df["high"], df["low"],
                                                     df["close"], df["volume"])))
    (tmp_path / "cdd.csv").write_text(cdd)  # (no time column: the web address was read as the header)
    for name in ("utf16.csv", "gzipped.csv", "cp1252.csv", "cdd.csv"):
        same_bars(read_ohlcv_file(tmp_path / name), df)
    latin = "timestamp,open,high,low,close,volume,note\n" + "".join(
        f"{t},{o},{h},{lo},{c},{v},caf\xe9\n" for t, o, h, lo, c, v in
        zip(epoch_ms(df), df["open"], df["high"], df["low"], df["close"], df["volume"]))
    (tmp_path / "latin.csv").write_bytes(latin.encode("cp1252"))  # ("UnicodeDecodeError ... byte 0xe9")
    same_bars(read_ohlcv_file(tmp_path / "latin.csv"), df)


def test_thousands_separators_read(tmp_path):
    df = reference()
    text = "timestamp,open,high,low,close,volume\n" + "".join(
        f'{t},"{o:,.2f}","{h:,.2f}","{lo:,.2f}","{c:,.2f}",{v}\n' for t, o, h, lo, c, v in
        zip(epoch_ms(df), df["open"], df["high"], df["low"], df["close"], df["volume"]))
    (tmp_path / "thousands.csv").write_text(text)
    same_bars(read_ohlcv_file(tmp_path / "thousands.csv"), df)



def test_dotted_thousands_with_a_decimal_comma_read(tmp_path):
    """A European export (60.497,99 with ';' between values) was refused as non-numeric."""
    def dotted(x: float) -> str:
        return f"{x:,.2f}".replace(",", " ").replace(".", ",").replace(" ", ".")

    df = reference()
    df = df.assign(volume=df["volume"].round(2) + 1000.0)  # (some volumes past a thousand: 1.234,56)
    text = "timestamp;open;high;low;close;volume\n" + "".join(
        f"{t};{dotted(o)};{dotted(h)};{dotted(lo)};{dotted(c)};{dotted(v)}\n" for t, o, h, lo, c, v in
        zip(epoch_ms(df), df["open"], df["high"], df["low"], df["close"], df["volume"]))
    (tmp_path / "dotted.csv").write_text(text)
    got = read_ohlcv_file(tmp_path / "dotted.csv")
    assert "." in text.splitlines()[1].split(";")[1]
    same_bars(got, df.round(2))

def test_a_volume_average_is_never_taken_for_the_volume(tmp_path):
    df = reference()
    frame = df.reset_index().rename(columns={"volume": "Volume MA"})
    frame.to_csv(tmp_path / "tv.csv", index=False)
    with pytest.raises(DataError, match="missing column.*volume"):
        read_ohlcv_file(tmp_path / "tv.csv")


@pytest.mark.parametrize("name, content, message", [
    ("empty.csv", b"", "empty"),
    ("cut.csv", None, "holds 3 of 12 values: a cut-off download"),
    ("book.xlsx", b"PK\x03\x04", "a spreadsheet workbook: save it as CSV"),
    ("book.csv", None, "an Excel workbook"),
])
def test_files_refused_in_one_line_that_says_why(tmp_path, name, content, message):
    path = tmp_path / name
    if name == "cut.csv":
        content = (binance_rows(reference()) + "1733011200000,96407.99,96500\n").encode()
    elif name == "book.csv":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("[Content_Types].xml", "<Types/>")
            archive.writestr("xl/workbook.xml", "<workbook/>")
        content = buffer.getvalue()
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as caught:
        read_ohlcv_file(path)
    assert "\n" not in str(caught.value)


def test_columns_in_another_order_are_refused_with_that_hint(tmp_path):
    df = reference()
    rows = [[int(t // 1000), lo, h, o, c, v] for t, o, h, lo, c, v in  # Coinbase: time, low, high, open, close
            zip(epoch_ms(df), df["open"], df["high"], df["low"], df["close"], df["volume"])]
    (tmp_path / "coinbase.json").write_text(json.dumps(rows))
    with pytest.raises(DataError, match="columns are likely in another order"):
        import_ohlcv(tmp_path / "coinbase.json", data_root=tmp_path / "data")


def test_local_times_read_in_their_zone_and_a_note_when_read_as_utc(tmp_path):
    """Naive local times were read as UTC with no word: every bar an hour late in Berlin's
    winter, two in summer; the hour clocks repeat was refused as a duplicate."""
    index = pd.date_range("2024-10-26 20:00", periods=12, freq="1h", tz="Europe/Berlin")  # over the 27 Oct change
    n = len(index)
    frame = pd.DataFrame({"time": index.strftime("%Y-%m-%d %H:%M:%S"), "open": 100.0, "high": 101.0, "low": 99.0,
                          "close": 100.5, "volume": np.arange(1.0, n + 1)})
    path = tmp_path / "LOCAL_EUR-1h.csv"
    frame.to_csv(path, index=False)
    got = read_ohlcv_file(path, timezone="Europe/Berlin")
    assert list(got.index) == list(index.tz_convert("UTC"))  # 02:00 twice: the first CEST, the second CET
    assert got.attrs["naive_times"] == "Europe/Berlin"
    df, report = load_ohlcv(path, with_report=True, dedupe=True)  # as UTC: its note says so
    assert any("times carry no zone: read as UTC" in w for w in report.warnings)
    zoned = frame.assign(time=index.strftime("%Y-%m-%d %H:%M:%S%z"))
    zoned.to_csv(tmp_path / "ZONED_EUR-1h.csv", index=False)
    got = read_ohlcv_file(tmp_path / "ZONED_EUR-1h.csv", timezone="America/New_York")  # offsets win
    assert list(got.index) == list(index.tz_convert("UTC")) and "naive_times" not in got.attrs
    with pytest.raises(DataError, match="unknown time zone 'Mars/Olympus'"):
        read_ohlcv_file(path, timezone="Mars/Olympus")
    spring = pd.DataFrame({"time": ["2024-03-31 01:00", "2024-03-31 02:30", "2024-03-31 03:00"], "open": 1.0,
                           "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0})
    spring.to_csv(tmp_path / "spring.csv", index=False)
    with pytest.raises(DataError, match="do not read in Europe/Berlin"):
        read_ohlcv_file(tmp_path / "spring.csv", timezone="Europe/Berlin")



def test_a_column_mixing_zoned_and_naive_times_reads_only_the_naive_ones_in_the_zone(tmp_path):
    """The zone was decided from the first value alone: with a naive first row, rows written
    with an offset were read as wall-clock times in the zone and moved again (the bar truly at
    08:00 UTC stored at 12:00, half the file wrong, and only a gap to show for it)."""
    index = pd.date_range("2024-10-26 20:00", periods=12, freq="1h", tz="Europe/Berlin")  # over the 27 Oct change
    text = list(index.strftime("%Y-%m-%d %H:%M:%S"))
    text[6:] = index[6:].strftime("%Y-%m-%dT%H:%M:%S%z")  # the later half with its offset
    frame = pd.DataFrame({"time": text, "open": 100.0, "high": 101.0, "low": 99.0, "close": 100.5,
                          "volume": np.arange(1.0, 13.0)})
    path = tmp_path / "MIXED_EUR-1h.csv"
    frame.to_csv(path, index=False)
    got = read_ohlcv_file(path, timezone="Europe/Berlin")
    assert list(got.index) == list(index.tz_convert("UTC"))
    assert got.attrs["naive_times"] == "Europe/Berlin"
    assert list(got["volume"]) == list(np.arange(1.0, 13.0))
    with pytest.raises(DataError, match="mixes times with a zone"):  # without a zone: refused (next test)
        read_ohlcv_file(path)


def test_a_column_mixing_zoned_and_unzoned_times_is_refused_without_a_zone(tmp_path):
    """Paris times, every other row with its +02:00 and the others without a zone, imported amber
    ("rows out of time order"): the zone-less half read as UTC, 2 h late, the series zig-zagging."""
    index = pd.date_range("2024-09-14 02:00", periods=6, freq="1h", tz="Europe/Paris")
    text = [t.strftime("%Y-%m-%dT%H:%M:%S%z") if k % 2 else t.strftime("%Y-%m-%d %H:%M:%S")
            for k, t in enumerate(index)]
    frame = pd.DataFrame({"timestamp": text, "open": 100.0, "high": 101.0, "low": 99.0, "close": 100.5,
                          "volume": np.arange(1.0, 7.0)})
    path = tmp_path / "XYZ_USDT-1h-mixzone.csv"
    frame.to_csv(path, index=False)
    for call in (lambda: read_ohlcv_file(path), lambda: import_ohlcv(path, data_root=tmp_path / "data")):
        with pytest.raises(DataError, match=r"mixes times with a zone \(row 1: .*\) and times without one "
                                            r"\(row 0: .*--timezone") as caught:
            call()
        assert "\n" not in str(caught.value)
    assert not (tmp_path / "data").exists()
    got = read_ohlcv_file(path, timezone="Europe/Paris")  # their zone given: every row at its instant
    assert list(got.index) == list(index.tz_convert("UTC"))
    both = frame.assign(timestamp=[t.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ") if k % 2
                                   else t.strftime("%Y-%m-%dT%H:%M:%S%z") for k, t in enumerate(index)])
    both.to_csv(tmp_path / "XYZ_USDT-1h-zoned.csv", index=False)  # Z and +02:00: every time zoned, accepted
    assert list(read_ohlcv_file(tmp_path / "XYZ_USDT-1h-zoned.csv").index) == list(index.tz_convert("UTC"))


def test_a_time_error_names_the_value_that_does_not_read_and_a_format_that_reads_it(tmp_path):
    """Epoch numbers with one 'yesterday' at row 5 were blamed on row 0's good number; two-digit
    years were advised date_format='%d/%m/%Y', which then refused every date."""
    frame = pd.DataFrame({"time": [str(1726272000000 + 3_600_000 * k) for k in range(8)], "open": 1.0, "high": 1.0,
                          "low": 1.0, "close": 1.0, "volume": 1.0})
    frame.loc[5, "time"] = "yesterday"
    frame.to_csv(tmp_path / "T-1h.csv", index=False)
    with pytest.raises(DataError, match=r"unreadable time value 'yesterday' at row 5 \(the other times are epoch"):
        read_ohlcv_file(tmp_path / "T-1h.csv")
    days = pd.date_range("2024-09-01", periods=12, freq="1D")  # every day <= 12: either order reads them
    frame = pd.DataFrame({"time": days.strftime("%d/%m/%y"), "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0,
                          "volume": 1.0})
    frame.to_csv(tmp_path / "D-1d.csv", index=False)
    with pytest.raises(DataError, match="read both day-first and month-first") as caught:
        read_ohlcv_file(tmp_path / "D-1d.csv")
    advised = re.search(r"date_format='([^']+)'", str(caught.value)).group(1)
    assert advised == "%d/%m/%y"
    assert list(read_ohlcv_file(tmp_path / "D-1d.csv", date_format=advised).index) == list(days.tz_localize("UTC"))
    assert list(read_ohlcv_file(tmp_path / "D-1d.csv", dayfirst=True).index) == list(days.tz_localize("UTC"))


@pytest.mark.parametrize("layout", ["%d/%m/%y %H:%M", "%m/%d/%y %H:%M", "%d.%m.%y %H:%M", "%m-%d-%y %I:%M %p",
                                    "%d/%m/%Y %H:%M:%S"])
def test_two_digit_years_and_other_layouts_read_in_the_one_order_that_reads_every_value(tmp_path, layout):
    """'22.09.24 08:00' (day-first, two-digit year) was refused as readable in both orders, and with
    dayfirst=True a month-first '09/22/24 08:00' column was read value by value in either order: its
    dates scrambled (Jan 10 for Oct 1) and a backtest ran on them (a hostile test)."""
    hours = pd.date_range("2024-09-22 08:00", periods=300, freq="1h", tz="UTC")
    frame = pd.DataFrame({"time": hours.strftime(layout), "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0,
                          "volume": 1.0})
    frame.to_csv(tmp_path / "H-1h.csv", index=False)
    assert list(read_ohlcv_file(tmp_path / "H-1h.csv").index) == list(hours)
    day_first = layout.startswith("%d")
    assert list(read_ohlcv_file(tmp_path / "H-1h.csv", dayfirst=day_first).index) == list(hours)
    order = "day" if not day_first else "month"
    with pytest.raises(DataError, match=rf"unreadable time value '{re.escape(frame.time[0])}' at row 0 as a "
                                        rf"{order}-first date \(dayfirst={not day_first}\)"):
        read_ohlcv_file(tmp_path / "H-1h.csv", dayfirst=not day_first)

def test_several_monthly_files_make_one_dataset(tmp_path, monkeypatch, capsys):
    """Each month landed as its own dataset (BTCUSDT-1h-2024-11, ...) and files concatenated by
    hand were refused across Binance's change from ms to us ("mixes epoch units")."""
    from threadx.cli import main

    nov, dec = reference(30, "2024-11-30"), reference(30, "2024-12-01 06:00", seed=4)
    files = [tmp_path / "BTCUSDT-1h-2024-11.csv", tmp_path / "BTCUSDT-1h-2025-01.zip"]
    files[0].write_text(binance_rows(nov))
    with zipfile.ZipFile(files[1], "w") as archive:
        archive.writestr("BTCUSDT-1h-2025-01.csv", binance_rows(dec, unit=1000))
    df, target = import_ohlcv(files, "binance", data_root=tmp_path / "data")
    assert target.name == "BTCUSDT-1h.parquet"  # (not the first file's month)
    same_bars(df, pd.concat([nov, dec]))
    monkeypatch.setenv("THREADX_DATA_ROOT", str(tmp_path / "cli"))
    assert main(["data", "import", *map(str, files), "--exchange", "binance"]) == 0
    assert "imported 60 bars into" in capsys.readouterr().out
    assert (tmp_path / "cli" / "binance" / "BTCUSDT-1h.parquet").exists()
    files.append(tmp_path / "missing.csv")
    assert main(["data", "import", *map(str, files), "--exchange", "other"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.csv: file not found" in err[0]


def test_close_times_become_open_times_and_monthly_bars_are_refused(tmp_path):
    """Bars stamped 00:59:59.999 (Binance's close_time) were stored as 1h bars opening then, with
    an amber off-grid warning; monthly bars imported as '31d' bars, all off the grid."""
    df = reference()
    close_ms = df.reset_index().assign(timestamp=epoch_ms(df) + HOUR_MS - 1)
    close_ms.to_csv(tmp_path / "close.csv", index=False)
    got, report = load_ohlcv(tmp_path / "close.csv", with_report=True)
    same_bars(got, df)
    assert any("times were the bars' close times (1 ms before the next bar opens" in w for w in report.warnings)
    late = df.reset_index().assign(timestamp=epoch_ms(df) + 3000)  # 3 s late: not a close time, said off-grid
    late.to_csv(tmp_path / "late.csv", index=False)
    got, report = load_ohlcv(tmp_path / "late.csv", with_report=True)
    assert got.index[0].second == 3 and any("off-grid" in w for w in report.warnings)
    months = pd.date_range("2024-01-01", periods=14, freq="MS", tz="UTC")
    monthly = pd.DataFrame({"timestamp": months, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 1.0})
    monthly.to_csv(tmp_path / "monthly.csv", index=False)
    with pytest.raises(DataError, match="monthly bars .* calendar months have no fixed length"):
        import_ohlcv(tmp_path / "monthly.csv", data_root=tmp_path / "data")


def test_a_file_name_that_gives_no_symbol_asks_for_one(tmp_path):
    path = tmp_path / "BINANCE_BTCUSDT, 60.csv"  # TradingView's default name
    reference().reset_index().to_csv(path, index=False)
    with pytest.raises(ParamError, match=r"taken from the file name 'BINANCE_BTCUSDT, 60.csv'\): give the symbol"):
        import_ohlcv(path, data_root=tmp_path / "data")
    _, target = import_ohlcv(path, symbol="BTC_USDT", data_root=tmp_path / "data")
    assert target.name == "BTC_USDT-1h.parquet"


def test_what_a_code_review_found_in_the_readers(tmp_path, monkeypatch):
    df = reference()
    t = epoch_ms(df)
    # a quoted decimal comma ("0,512", a spreadsheet's German CSV) is no thousands separator (1000x too
    # large), and a whole number grouped by thousands ("70,000") none either (refused as text)
    german = "timestamp,open,high,low,close,volume\n" + "".join(
        f'{a},"0,{500 + k}","0,{600 + k}","0,{400 + k}","0,{550 + k}",1\n' for k, a in enumerate(t))
    (tmp_path / "german.csv").write_text(german)
    assert read_ohlcv_file(tmp_path / "german.csv")["open"].iloc[0] == 0.5
    whole = "timestamp,open,high,low,close,volume\n" + "".join(
        f'{a},"70,{100 + k}","71,{100 + k}","69,{100 + k}","70,{500 + k}","7,940"\n' for k, a in enumerate(t))
    (tmp_path / "whole.csv").write_text(whole)
    got = read_ohlcv_file(tmp_path / "whole.csv")
    assert got["open"].iloc[0] == 70_100 and got["volume"].iloc[0] == 7_940
    # a plain CSV named .csv.gz reads (pandas unpacked by the name: "Not a gzipped file")
    (tmp_path / "plain.csv.gz").write_text(whole)
    assert len(read_ohlcv_file(tmp_path / "plain.csv.gz")) == len(t)
    # a header with one separator more than its rows is no cut-off download
    (tmp_path / "trailing.csv").write_text("timestamp,open,high,low,close,volume,\n" + "".join(
        f"{a},1,2,0.5,1,3\n" for a in t))
    assert len(read_ohlcv_file(tmp_path / "trailing.csv")) == len(t)
    # one Kraken bar without trades (VWAP 0, count 0) flipped the whole file back to "VWAP as volume"
    rows = [[int(a // 1000), str(o), str(h), str(lo), str(c), str(round((h + lo) / 2, 2)), str(v), 5]
            for a, o, h, lo, c, v in zip(t, df["open"], df["high"], df["low"], df["close"], df["volume"])]
    rows[3][5], rows[3][6], rows[3][7] = "0.000000", "0.00000000", 0
    (tmp_path / "kraken.json").write_text(json.dumps({"error": [], "result": {"XXBTZUSD": rows}}))
    got = read_ohlcv_file(tmp_path / "kraken.json")
    assert got["volume"].iloc[0] == df["volume"].iloc[0] and got["volume"].iloc[3] == 0.0
    # a headerless file whose first row holds NaN is data, not a header
    (tmp_path / "nan.csv").write_text(f"{t[0]},100,101,99,100.5,NaN\n{t[1]},100,101,99,100.5,1\n")
    assert np.isnan(read_ohlcv_file(tmp_path / "nan.csv")["volume"].iloc[0])
    # an empty last field is a field: a NaN, not a cut-off download
    (tmp_path / "empty_last.csv").write_text(f"timestamp,open,high,low,close,volume\n{t[0]},1,2,0.5,1,3\n"
                                             f"{t[1]},1,2,0.5,1,\n")
    assert np.isnan(read_ohlcv_file(tmp_path / "empty_last.csv")["volume"].iloc[-1])
    # close times written newest first are open times too
    desc = df.reset_index().assign(timestamp=t + HOUR_MS - 1).iloc[::-1]
    desc.to_csv(tmp_path / "desc.csv", index=False)
    assert read_ohlcv_file(tmp_path / "desc.csv").index.min() == df.index[0]
    # several close-stamped files keep the note; timezone="UTC" is a zone given
    for k, part in enumerate((df.iloc[:24], df.iloc[24:])):
        part.reset_index().assign(timestamp=epoch_ms(part) + HOUR_MS - 1).to_csv(tmp_path / f"c{k}.csv", index=False)
    assert read_ohlcv_file([tmp_path / "c0.csv", tmp_path / "c1.csv"]).attrs.get("close_times") == "1 ms"
    naive = df.reset_index().assign(timestamp=df.index.strftime("%Y-%m-%d %H:%M"))
    naive.to_csv(tmp_path / "naive.csv", index=False)
    _, report = load_ohlcv(tmp_path / "naive.csv", with_report=True, timezone="UTC")
    assert not any("carry no zone" in w for w in report.warnings)
    # a column-orient JSON with a 'ts' column reads that column, not its row labels
    frame = df.reset_index(drop=True).assign(ts=t)
    frame.index = frame.index + 2_000_000
    (tmp_path / "ts.json").write_text(frame.to_json())
    assert read_ohlcv_file(tmp_path / "ts.json").index[0] == df.index[0]


def test_compressed_content_is_refused_at_the_limit_nested_gzip_included(tmp_path, monkeypatch):
    """The limit counted the archive's declared sizes: gzip members inside a zip unpacked past it."""
    from threadx.data import readers

    monkeypatch.setattr(readers, "MAX_UNPACKED", 200_000)
    text = binance_rows(reference(2_000))  # about 160 kB a copy
    with zipfile.ZipFile(tmp_path / "nested.zip", "w") as archive:
        for k in range(3):
            archive.writestr(f"BTCUSDT-1h-2024-0{k + 1}.csv.gz", gzip.compress(text.encode()))
    with pytest.raises(DataError, match="unpacks to more than"):
        read_ohlcv_file(tmp_path / "nested.zip")
    (tmp_path / "bomb.csv.gz").write_bytes(gzip.compress(b"0" * 5_000_000))
    with pytest.raises(DataError, match="unpacks to more than"):
        read_ohlcv_file(tmp_path / "bomb.csv.gz")


@pytest.mark.parametrize("fmt", ["parquet", "feather", "csv.gz", "parquet in zip", "json", "json.gz"])
def test_a_file_whose_rows_would_not_fit_in_memory_is_refused_before_it_is_read(tmp_path, monkeypatch, fmt):
    """An 8 MB Parquet file declaring 300 million rows was read until memory ran out (14 GB); a
    0.5 MB gzip of 22 million short CSV rows peaked at 4.2 GB, inside the 1 GiB unpack limit."""
    import types

    import psutil
    import pyarrow as pa
    import pyarrow.feather as feather
    import pyarrow.parquet as pq

    frame = reference(30_000).reset_index()
    path = tmp_path / f"BTCUSDT-1h.{fmt.split()[0]}"
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pandas(frame), path)
    elif fmt == "feather":
        feather.write_feather(frame, path)
    elif fmt == "csv.gz":
        path.write_bytes(gzip.compress(binance_rows(reference(30_000)).encode()))
    elif fmt.startswith("json"):  # (read whole and parsed with no size check: ~10 bytes of memory a byte of text)
        text = json.dumps([[int(t), *row] for t, row in zip(epoch_ms(reference(30_000)),
                                                            reference(30_000).to_numpy().tolist())]).encode()
        path = tmp_path / f"BTCUSDT-1h.{fmt}"
        path.write_bytes(gzip.compress(text) if fmt == "json.gz" else text)
    else:
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(frame), buffer)
        path = tmp_path / "BTCUSDT-1h.zip"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("BTCUSDT-1h-2024-01.parquet", buffer.getvalue())
    assert len(read_ohlcv_file(path)) == 30_000  # (the memory free here holds it)
    real = psutil.virtual_memory
    monkeypatch.setattr(psutil, "virtual_memory", lambda: types.SimpleNamespace(
        **{**real()._asdict(), "available": (16 if fmt in ("csv.gz", "json.gz") else 8) * 2**20}))  # (unpacked first)
    with pytest.raises(DataError, match=r"30,00\d rows of \d+ columns take about .* more than half the memory free"):
        read_ohlcv_file(path)


def test_files_of_other_markets_are_not_spliced_into_one_dataset(tmp_path):
    """BTC's January and February with ETH's March imported as one green BTC dataset (a review
    in the browser), a 97 % drop between them."""
    files = []
    for name, seed in (("BTCUSDT-1h-2025-01.csv", 1), ("BTCUSDT-1h-2025-02.csv", 2), ("ETHUSDT-1h-2025-03.csv", 3)):
        files.append(tmp_path / name)
        files[-1].write_text(binance_rows(reference(24, f"2025-0{len(files)}-01", seed=seed)))
    with pytest.raises(ParamError, match=r"the files name other symbols: BTCUSDT \(2 files\), ETHUSDT \(1 file\)"):
        import_ohlcv(files, data_root=tmp_path / "data")
    (tmp_path / "BTCUSDT-4h-2025-03.csv").write_text(binance_rows(reference(24, "2025-03-01", seed=3)))
    with pytest.raises(ParamError, match="the files name other timeframes"):
        import_ohlcv([*files[:2], tmp_path / "BTCUSDT-4h-2025-03.csv"], data_root=tmp_path / "data")
    with zipfile.ZipFile(tmp_path / "Q1.zip", "w") as archive:  # one archive of both markets
        for path in files:
            archive.write(path, path.name)
    with pytest.raises(ParamError, match="the files name other symbols"):
        import_ohlcv(tmp_path / "Q1.zip", data_root=tmp_path / "data")
    assert not (tmp_path / "data").exists()
    renamed = tmp_path / "BTC_USDT-60m-2025-01b (1).csv"  # same market in other spellings: one dataset
    renamed.write_text(binance_rows(reference(24, "2025-01-02", seed=9)))
    _, target = import_ohlcv([files[0], renamed], data_root=tmp_path / "data")
    assert target.name == "BTCUSDT-1h.parquet"


def test_a_file_of_other_bars_among_monthly_files_is_refused_naming_it(tmp_path, monkeypatch, capsys):
    """A month of 4h bars in an archive named 1h among 1h monthly dumps was stored as a 1h dataset,
    amber for gaps only (the spacing check saw the whole series, mostly 1h)."""
    from threadx.cli import main

    jan, feb = reference(744, "2025-01-01", seed=1), reference(672, "2025-02-01", seed=2)
    mar = reference(12, "2025-03-01", seed=3)
    mar.index = pd.date_range("2025-03-01", periods=12, freq="4h", tz="UTC", name="timestamp")
    files = [tmp_path / f"BTCUSDT-1h-2025-0{k}.zip" for k in (1, 2, 3)]
    for path, month in zip(files, (jan, feb, mar)):
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr(path.with_suffix(".csv").name, binance_rows(month))
    with pytest.raises(DataError, match=r"BTCUSDT-1h-2025-03.zip: the bars are mostly 4h apart, not 1h as the "
                                        r"file names say: one dataset holds one timeframe"):
        import_ohlcv(files, data_root=tmp_path / "data")
    monkeypatch.setenv("THREADX_DATA_ROOT", str(tmp_path / "cli"))
    assert main(["data", "import", *map(str, files), "--exchange", "binance"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "BTCUSDT-1h-2025-03.zip: the bars are mostly 4h" in err[0]
    with zipfile.ZipFile(tmp_path / "Q1.zip", "w") as archive:  # the months inside one archive
        for name, month in (("jan.csv", jan), ("feb.csv", feb), ("mar.csv", mar)):
            archive.writestr(name, binance_rows(month))
    with pytest.raises(DataError, match=r"Q1.zip:mar.csv: the bars are mostly 4h apart, not 1h as most bars"):
        import_ohlcv(tmp_path / "Q1.zip", "binance", "BTC_USDT", data_root=tmp_path / "data")
    assert not (tmp_path / "data").exists() and not (tmp_path / "cli").exists()
    _, target = import_ohlcv(files[:2], data_root=tmp_path / "data")  # the 1h months alone: one dataset
    assert target.name == "BTCUSDT-1h.parquet"


def test_files_given_twice_are_named_with_their_duplicates(tmp_path):
    jan = tmp_path / "BTCUSDT-1h-2025-01.csv"
    copy = tmp_path / "BTCUSDT-1h-2025-01-copy.csv"
    feb = tmp_path / "BTCUSDT-1h-2025-02.csv"
    jan.write_text(binance_rows(reference(24, "2025-01-01")))
    copy.write_text(jan.read_text())
    feb.write_text(binance_rows(reference(24, "2025-02-01", seed=5)))
    with pytest.raises(DataError, match=r"24 duplicate timestamp.*the files BTCUSDT-1h-2025-01-copy.csv and "
                                        r"BTCUSDT-1h-2025-01.csv overlap \(one given twice\?\)"):
        import_ohlcv([jan, copy, feb], data_root=tmp_path / "data")


def test_two_time_sources_that_disagree_are_refused_and_ones_that_agree_read(tmp_path):
    """A timestamp index and a timestamp column a day later, or a date column a year off the
    timestamp, imported the one read first without a word (a hostile test)."""
    df = reference(48)
    both = df.reset_index()
    both["date"] = both["timestamp"] + pd.Timedelta(days=365)
    both.to_csv(tmp_path / "T-1h.csv", index=False)
    with pytest.raises(DataError, match=r"the times of column timestamp and of column date differ \(48 rows; row 0: "):
        read_ohlcv_file(tmp_path / "T-1h.csv")
    frame = df.copy()
    frame["timestamp"] = df.index + pd.Timedelta(days=1)
    frame.to_parquet(tmp_path / "I-1h.parquet")
    with pytest.raises(DataError, match="the times of column timestamp and of the index differ"):
        read_ohlcv_file(tmp_path / "I-1h.parquet")
    agree = df.reset_index()
    agree["unix"] = df.index.asi8 // 1_000_000  # ms, as CryptoDataDownload writes beside its date
    agree["date"] = df.index.strftime("%Y-%m-%d")  # the bars' days only
    agree.to_csv(tmp_path / "A-1h.csv", index=False)
    same_bars(read_ohlcv_file(tmp_path / "A-1h.csv"), df)
