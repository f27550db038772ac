"""Dataset names, resolution and listing."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import threadx.data.io as data_io
from threadx.data import dataset_path, list_datasets, parse_dataset_name, resolve_dataset, write_ohlcv
from threadx.data.catalog import LIST_COLUMNS, without_empty_problem
from threadx.errors import DataError

T0 = pd.Timestamp("2024-03-01", tz="UTC")


def bars(n: int = 24, freq: str = "1h") -> pd.DataFrame:
    index = pd.date_range(T0, periods=n, freq=freq, name="timestamp").as_unit("ns")
    o = 100.0 + np.arange(n)
    return pd.DataFrame({"open": o, "high": o + 2, "low": o - 1, "close": o + 1, "volume": 5.0}, index=index)


@pytest.mark.parametrize(
    "name,expected",
    [
        ("binance/BTC_USDT-1h", ("binance", "BTC_USDT", "1h")),
        ("BTC_USDT-4h", (None, "BTC_USDT", "4h")),
        ("binance/BTC/USDT-15m", ("binance", "BTC_USDT", "15m")),
        ("BTC/USDT-1d", (None, "BTC_USDT", "1d")),
        ("kraken/btc_usd-1h", ("kraken", "BTC_USD", "1h")),
        ("sample:ETH_USDT-1h", ("synthetic", "ETH_USDT", "1h")),
        ("synthetic/SOL_USDT-1h", ("synthetic", "SOL_USDT", "1h")),
        ("binance/BTC_USDT-1h-2017-2020", ("binance", "BTC_USDT", "1h")),
        ("binanceusdm/BTC/USDT:USDT-1h", ("binanceusdm", "BTC_USDT_USDT", "1h")),
    ],
)
def test_parse_dataset_name(name: str, expected: tuple) -> None:
    assert parse_dataset_name(name) == expected


@pytest.mark.parametrize("name", ["", "BTC_USDT", "binance/BTC_USDT-1x", "binance/BTC_USDT-0h", "sample:binance/BTC_USDT-1h"])
def test_bad_names(name: str) -> None:
    with pytest.raises(DataError):
        parse_dataset_name(name)


def test_dataset_path(tmp_path: Path, data_root: Path) -> None:
    assert dataset_path("binance", "BTC/USDT", "1h", tmp_path) == tmp_path / "binance" / "BTC_USDT-1h.parquet"
    assert dataset_path("Binance", "eth_usdt", "4h") == data_root / "binance" / "ETH_USDT-4h.parquet"
    with pytest.raises(DataError):
        dataset_path("binance", "BTC/USDT", "1x")


def test_resolve_variants(data_root: Path, tmp_path: Path) -> None:
    target = write_ohlcv(bars(), data_root / "binance" / "BTC_USDT-1h.parquet")
    assert resolve_dataset("binance/BTC_USDT-1h") == target
    assert resolve_dataset("BTC_USDT-1h") == target
    assert resolve_dataset("binance/BTC/USDT-1h") == target
    assert resolve_dataset("BTC/USDT-1h") == target
    assert resolve_dataset(str(target)) == target
    assert resolve_dataset(target) == target
    elsewhere = write_ohlcv(bars(), tmp_path / "loose" / "whatever.parquet")
    assert resolve_dataset(elsewhere) == elsewhere


def test_resolve_explicit_data_root(tmp_path: Path) -> None:
    root = tmp_path / "custom"
    target = write_ohlcv(bars(), root / "kraken" / "XBT_USD-1h.parquet")
    assert resolve_dataset("kraken/XBT_USD-1h", data_root=root) == target


def test_resolve_ambiguous_and_unknown(data_root: Path) -> None:
    write_ohlcv(bars(), data_root / "binance" / "BTC_USDT-1h.parquet")
    write_ohlcv(bars(), data_root / "kraken" / "BTC_USDT-1h.parquet")
    with pytest.raises(DataError, match="ambiguous") as info:
        resolve_dataset("BTC_USDT-1h")
    assert "binance/BTC_USDT-1h" in str(info.value) and "kraken/BTC_USDT-1h" in str(info.value)
    with pytest.raises(DataError) as info:
        resolve_dataset("binance/DOGE_USDT-1h")
    message = str(info.value)
    assert "unknown dataset" in message and "binance/BTC_USDT-1h" in message and "kraken/BTC_USDT-1h" in message
    with pytest.raises(DataError, match="not found"):
        resolve_dataset(str(data_root / "missing.parquet"))


def test_resolve_sample_writes_the_sample(data_root: Path) -> None:
    path = resolve_dataset("sample:BTC_USDT-1h")
    assert path == data_root / "synthetic" / "BTC_USDT-1h.parquet" and path.is_file()
    assert resolve_dataset("synthetic/SOL_USDT-1h") == data_root / "synthetic" / "SOL_USDT-1h.parquet"
    with pytest.raises(DataError, match="unknown dataset"):
        resolve_dataset("sample:DOGE_USDT-1h")


def test_list_datasets(data_root: Path) -> None:
    empty = list_datasets()
    assert list(empty.columns) == LIST_COLUMNS and empty.empty
    write_ohlcv(bars(48), data_root / "binance" / "BTC_USDT-1h.parquet")
    write_ohlcv(bars(48).drop(index=[T0 + pd.Timedelta("5h")]), data_root / "binance" / "ETH_USDT-1h.parquet")
    write_ohlcv(bars(10, "4h"), data_root / "kraken" / "BTC_USD-4h.parquet")
    (data_root / "binance" / "notes.txt").write_text("not a dataset")
    (data_root / "binance" / ".BTC_USDT-1h.parquet.abc.tmp").write_bytes(b"partial")
    table = list_datasets()
    assert list(table.columns) == LIST_COLUMNS
    assert table["name"].tolist() == ["binance/BTC_USDT-1h", "binance/ETH_USDT-1h", "kraken/BTC_USD-4h"]
    btc = table.iloc[0]
    assert (btc["exchange"], btc["symbol"], btc["timeframe"]) == ("binance", "BTC_USDT", "1h")
    assert btc["bars"] == 48 and btc["first"] == T0 and btc["last"] == T0 + pd.Timedelta("47h")
    assert btc["path"] == str(data_root / "binance" / "BTC_USDT-1h.parquet")
    assert not btc["synthetic"] and btc["quality"] == 100.0
    assert table.iloc[1]["quality"] < 100.0 and table.iloc[1]["bars"] == 47
    assert table.iloc[2]["bars"] == 10
    assert table["bars"].dtype == np.int64 and table["quality"].dtype == np.float64


def test_list_marks_synthetic_and_caches_by_mtime(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from threadx.data import ensure_sample

    ensure_sample()
    path = write_ohlcv(bars(24), data_root / "binance" / "BTC_USDT-1h.parquet")
    table = list_datasets()
    assert table.set_index("name")["synthetic"].to_dict() == {
        "binance/BTC_USDT-1h": False,
        "synthetic/BTC_USDT-1h": True,
        "synthetic/ETH_USDT-1h": True,
        "synthetic/SOL_USDT-1h": True,
    }
    reads: list[Path] = []
    real = data_io.read_ohlcv_file
    monkeypatch.setattr(data_io, "read_ohlcv_file", lambda p, **kw: reads.append(Path(p)) or real(p, **kw))
    list_datasets()
    assert reads == []  # cached
    write_ohlcv(bars(30), path)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    again = list_datasets().set_index("name")
    assert reads == [path]
    assert again.loc["binance/BTC_USDT-1h", "bars"] == 30


def test_list_unreadable_file_and_freqtrade_layout(tmp_path: Path) -> None:
    root = tmp_path / "user_data" / "data"
    (root / "binance").mkdir(parents=True)
    frame = bars(12).reset_index().rename(columns={"timestamp": "date"})
    frame.to_feather(root / "binance" / "BTC_USDT-1h.feather")
    rows = [[int(t.value // 10**6), 1.0, 2.0, 0.5, 1.5, 3.0] for t in bars(6).index]
    (root / "binance" / "ETH_USDT-1h.json").write_text(json.dumps(rows))
    (root / "binance" / "BTC_USDT-trades.json").write_text("[]")  # not OHLCV: ignored by name
    (root / "binance" / "SOL_USDT-1h.parquet").write_bytes(b"garbage")
    table = list_datasets(root).set_index("name")
    assert sorted(table.index) == ["binance/BTC_USDT-1h", "binance/ETH_USDT-1h", "binance/SOL_USDT-1h"]
    assert table.loc["binance/BTC_USDT-1h", "bars"] == 12
    assert table.loc["binance/ETH_USDT-1h", "bars"] == 6
    assert table.loc["binance/SOL_USDT-1h", "bars"] == 0 and np.isnan(table.loc["binance/SOL_USDT-1h", "quality"])
    # the table says why, where its dates and quality are empty; the files that read have no problem
    assert table.loc["binance/SOL_USDT-1h", "problem"].startswith("unreadable: ")
    assert "cannot read parquet" in table.loc["binance/SOL_USDT-1h", "problem"]
    assert table.loc[["binance/BTC_USDT-1h", "binance/ETH_USDT-1h"], "problem"].tolist() == ["", ""]
    # the lists show the column only when some file has one
    assert "problem" in without_empty_problem(table)
    assert "problem" not in without_empty_problem(table.drop(index="binance/SOL_USDT-1h"))
    assert resolve_dataset("binance/ETH_USDT-1h", data_root=root).suffix == ".json"


def test_list_real_data(shared_data: Path) -> None:
    table = list_datasets(shared_data).set_index("name")
    assert len(table) == 7
    assert table.loc["binance/BTC_USDT-1h", "bars"] == 12_556
    assert table.loc["binance/BTC_USDT-1h-2017-2020", "timeframe"] == "1h"
    assert table.loc["binance/BTC_USDT-1h-2017-2020", "quality"] < table.loc["binance/BTC_USDT-1h", "quality"]
    assert not table["synthetic"].any()
    assert resolve_dataset("BTC_USDT-1h-2017-2020", data_root=shared_data).name == "BTC_USDT-1h-2017-2020.parquet"


def test_a_timeframe_is_named_one_way_whatever_its_spelling(data_root: Path) -> None:
    """`--timeframe 60m` made a dataset BTC_USDT-60m beside BTC_USDT-1h (the same bars twice), and
    bars whose timeframe read 60m could not share a portfolio with 1h ones."""
    from threadx.data.bars import as_bars
    from threadx.data.timeframe import canonical_timeframe

    assert [canonical_timeframe(t) for t in ("60m", "1h", "90m", "24h", "7d", "14d", "120s", " 4h ")] == \
        ["1h", "1h", "90m", "1d", "1w", "2w", "2m", "4h"]
    with pytest.raises(DataError):
        canonical_timeframe("1x")
    assert dataset_path("binance", "BTC/USDT", "60m") == data_root / "binance" / "BTC_USDT-1h.parquet"
    target = write_ohlcv(bars(), dataset_path("binance", "BTC/USDT", "60m"))
    assert resolve_dataset("binance/BTC_USDT-60m") == target == resolve_dataset("BTC_USDT-60m")
    assert as_bars(bars(), timeframe="60m").timeframe == "1h"
    frame = bars()
    frame.attrs["timeframe"] = "60m"
    assert as_bars(frame).timeframe == "1h"


def test_every_listed_name_is_one_every_command_takes(data_root: Path, capsys: pytest.CaptureFixture) -> None:
    """A dataset in a folder in capitals (copied by hand) was listed as BX/ADA_USDT-1h, and every
    command refused that name ("unknown dataset 'BX/ADA_USDT-1h'; available: BX/ADA_USDT-1h"); one
    imported under the exchange label binance-us (a valid label) was never listed nor found."""
    from threadx.cli import main
    from threadx.data.io import import_ohlcv

    (data_root / "BX").mkdir(parents=True)
    bars().reset_index().to_csv(data_root / "BX" / "ADA_USDT-1h.csv", index=False)
    source = data_root.parent / "BTC_USDT-1h.csv"
    bars().reset_index().to_csv(source, index=False)
    import_ohlcv(source, "binance-us")
    (data_root / "my data").mkdir()  # no exchange label: no dataset
    bars().reset_index().to_csv(data_root / "my data" / "ETH_USDT-1h.csv", index=False)
    names = list(list_datasets()["name"])
    assert names == ["binance-us/BTC_USDT-1h", "bx/ADA_USDT-1h"]
    for name in names:
        assert resolve_dataset(name).exists()
        assert main(["data", "validate", name]) == 0
    assert resolve_dataset("BX/ADA_USDT-1h") == data_root / "BX" / "ADA_USDT-1h.csv"  # as the folder is spelled
    assert main(["data", "rename", "bx/ADA_USDT-1h", "bx/ADA_USDT-1h-copied"]) == 0
    assert "renamed bx/ADA_USDT-1h to bx/ADA_USDT-1h-copied" in capsys.readouterr().out
    assert main(["data", "delete", "BX/ADA_USDT-1h-copied", "--yes"]) == 0
    assert main(["data", "delete", "binance-us/BTC_USDT-1h", "--yes"]) == 0
    assert list_datasets().empty
