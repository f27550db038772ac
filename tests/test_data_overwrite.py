"""Issue 11: data is never overwritten silently (import collisions, rename, delete), the
validation verdict is a traffic light with its reasons, and the preview shades the gaps."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from threadx.cli import main
from threadx.data import list_datasets, load_ohlcv, validate_ohlcv, write_ohlcv
from threadx.data.catalog import DatasetExists, dataset_path, delete_dataset, rename_dataset
from threadx.data.io import check_ohlcv_file, import_ohlcv
from threadx.data.synthetic import generate_synthetic
from threadx.errors import DataError, ParamError
from threadx.ui import charts
from candles import candles  # noqa: E402

NEW = pd.Timestamp("2024-03-01", tz="UTC")
OLD = pd.Timestamp("2017-08-17 04:00", tz="UTC")


def gappy(n: int = 300) -> pd.DataFrame:
    """The 2017-2020 file in small: a 32-bar outage, then bars opening 28 minutes past the hour."""
    df = candles(n, OLD)
    df = df.drop(df.index[100:132])
    shifted = df.index.to_series()
    shifted.iloc[100:110] += pd.Timedelta(minutes=28)
    return df.set_axis(pd.DatetimeIndex(shifted, name="timestamp"))


def one_error_line(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


@pytest.fixture
def stored(data_root: Path) -> Path:
    """binance/BTC_USDT-1h: 200 bars from 2024-03-01."""
    return write_ohlcv(candles(200, NEW), dataset_path("binance", "BTC_USDT", "1h", data_root))


@pytest.fixture
def older(tmp_path: Path) -> Path:
    """A file of the same name but older bars (in a folder of its own: a file named with a label,
    BTC_USDT-1h-2017-2020.parquet, is imported under that label)."""
    (tmp_path / "old").mkdir(exist_ok=True)
    return write_ohlcv(candles(150, OLD, seed=9), tmp_path / "old" / "BTC_USDT-1h.parquet")


# --------------------------------------------------------------------------- import collisions


def test_cli_import_onto_an_existing_name_is_refused_with_its_range_and_options(stored, older, capsys):
    before = stored.read_bytes()
    err = one_error_line(capsys, ["data", "import", str(older), "--exchange", "binance"])
    for needle in ("binance/BTC_USDT-1h", "2024-03-01", "200 bars", "--replace", "--label NAME",
                   "binance/BTC_USDT-1h-NAME"):
        assert needle in err, (needle, err)
    assert stored.read_bytes() == before
    assert list(list_datasets()["name"]) == ["binance/BTC_USDT-1h"]


def test_cli_import_label_keeps_both(stored, older, data_root):
    before = stored.read_bytes()
    assert main(["data", "import", str(older), "--exchange", "binance", "--label", "2017-2020"]) == 0
    table = list_datasets().set_index("name")
    assert list(table.index) == ["binance/BTC_USDT-1h", "binance/BTC_USDT-1h-2017-2020"]
    assert table.loc["binance/BTC_USDT-1h-2017-2020", "bars"] == 150
    assert table.loc["binance/BTC_USDT-1h-2017-2020", "first"] == OLD
    assert stored.read_bytes() == before
    assert load_ohlcv("binance/BTC_USDT-1h-2017-2020").index[0] == OLD


def test_cli_import_replace_replaces(stored, older):
    assert main(["data", "import", str(older), "--exchange", "binance", "--replace"]) == 0
    df = load_ohlcv("binance/BTC_USDT-1h")
    assert (df.index[0], len(df)) == (OLD, 150)


def test_replace_removes_a_stored_csv_of_that_name(data_root, older):
    csv = data_root / "binance" / "BTC_USDT-1h.csv"
    csv.parent.mkdir(parents=True)
    candles(50, NEW).reset_index().to_csv(csv, index=False)
    with pytest.raises(DatasetExists) as info:
        import_ohlcv(older, "binance")
    assert info.value.path == csv and info.value.bars == 50 and info.value.incoming[2] == 150
    _, target = import_ohlcv(older, "binance", replace=True)
    assert not csv.exists() and target.suffix == ".parquet"
    assert list(list_datasets()["bars"]) == [150]


@pytest.mark.parametrize("label", ["../x", "a/b", "-x", "x\n"])
def test_a_bad_label_is_refused(stored, older, capsys, label):
    err = one_error_line(capsys, ["data", "import", str(older), "--exchange", "binance", f"--label={label}"])
    assert "invalid dataset label" in err
    assert list(list_datasets()["name"]) == ["binance/BTC_USDT-1h"]


def test_import_into_the_synthetic_exchange_is_refused(data_root, older):
    with pytest.raises(DataError, match="synthetic sample"):
        import_ohlcv(older, "synthetic", replace=True)


# --------------------------------------------------------------------------- rename and delete


def test_cli_rename(stored, data_root, capsys):
    assert main(["data", "rename", "binance/BTC_USDT-1h", "BTC_USDT-1h-2024"]) == 0
    assert "binance/BTC_USDT-1h-2024" in capsys.readouterr().out
    assert list(list_datasets()["name"]) == ["binance/BTC_USDT-1h-2024"]
    assert not stored.exists()
    assert main(["data", "rename", "binance/BTC_USDT-1h-2024", "other/BTC_USDT-1h"]) == 0
    assert (data_root / "other" / "BTC_USDT-1h.parquet").exists()
    # an exchange in capitals moves it there (it was read as the symbol OTHER_BTC_USDT: other/OTHER_BTC_USDT-1h)
    assert main(["data", "rename", "other/BTC_USDT-1h", "NewEx/BTC_USDT-1h"]) == 0
    assert list(list_datasets()["name"]) == ["newex/BTC_USDT-1h"]
    assert main(["data", "validate", "NEWEX/BTC_USDT-1h"]) == 0  # (and it is found so spelled)


def test_cli_rename_refuses_a_taken_name_a_bad_name_and_the_sample(stored, older, capsys):
    import_ohlcv(older, "binance", label="old")
    err = one_error_line(capsys, ["data", "rename", "binance/BTC_USDT-1h-old", "binance/BTC_USDT-1h"])
    assert "already exists" in err and "200 bars" in err
    err = one_error_line(capsys, ["data", "rename", "binance/BTC_USDT-1h", "BTC_USDT-1h-.x"])
    assert "invalid dataset label" in err
    one_error_line(capsys, ["data", "rename", "binance/BTC_USDT-1h", "../../etc/BTC_USDT-1h"])
    assert "synthetic sample" in one_error_line(capsys, ["data", "rename", "sample:BTC_USDT-1h", "x/BTC_USDT-1h"])
    assert "synthetic sample" in one_error_line(capsys, ["data", "rename", "binance/BTC_USDT-1h", "synthetic/B-1h"])
    assert sorted(list_datasets()["name"]) == ["binance/BTC_USDT-1h", "binance/BTC_USDT-1h-old"]


def test_cli_delete_needs_yes(stored, capsys):
    err = one_error_line(capsys, ["data", "delete", "binance/BTC_USDT-1h"])
    assert "--yes" in err and "BTC_USDT-1h.parquet" in err
    assert stored.exists()
    assert main(["data", "delete", "binance/BTC_USDT-1h", "--yes"]) == 0
    assert not stored.exists() and list_datasets().empty
    assert "unknown dataset" in one_error_line(capsys, ["data", "delete", "binance/BTC_USDT-1h", "--yes"])


def test_cli_delete_refuses_the_sample_and_file_paths(stored, tmp_path, capsys):
    assert "synthetic sample" in one_error_line(capsys, ["data", "delete", "sample:BTC_USDT-1h", "--yes"])
    assert "synthetic sample" in one_error_line(capsys, ["data", "delete", "synthetic/BTC_USDT-1h", "--yes"])
    outside = write_ohlcv(candles(10, NEW), tmp_path / "BTC_USDT-1h.parquet")
    one_error_line(capsys, ["data", "delete", str(outside), "--yes"])
    one_error_line(capsys, ["data", "delete", str(stored), "--yes"])  # names only, never a path
    assert outside.exists() and stored.exists()


def test_delete_removes_every_format_and_rename_moves_them(data_root, stored):
    csv = stored.with_suffix(".csv")
    candles(20, NEW).reset_index().to_csv(csv, index=False)
    rename_dataset("binance/BTC_USDT-1h", "binance/BTC_USDT-1h-x")
    assert sorted(p.name for p in stored.parent.iterdir()) == ["BTC_USDT-1h-x.csv", "BTC_USDT-1h-x.parquet"]
    assert [p.name for p in delete_dataset("BTC_USDT-1h-x", dry_run=True)] == ["BTC_USDT-1h-x.csv",
                                                                              "BTC_USDT-1h-x.parquet"]
    rename_dataset("binance/BTC_USDT-1h-x", "kucoin/BTC_USDT-1h-x")  # to another exchange
    assert not stored.parent.exists()  # the emptied exchange folder is gone (it stayed, empty)
    delete_dataset("BTC_USDT-1h-x")
    assert not (stored.parent.parent / "kucoin").exists()


def test_rename_keeps_the_timeframe_of_the_bars(data_root, stored, capsys):
    """A name saying 4h on 1h bars could never be loaded again: refused, nothing moved."""
    with pytest.raises(DataError, match="holds 1h bars, so its name keeps the timeframe 1h"):
        rename_dataset("binance/BTC_USDT-1h", "binance/BTC_USDT-4h")
    assert "to get 4h bars, resample it" in one_error_line(
        capsys, ["data", "rename", "binance/BTC_USDT-1h", "binance/BTC_USDT-4h"])
    assert stored.exists()
    with pytest.raises(DataError, match="is the name binance/BTC_USDT-1h has already.*60m is 1h"):
        rename_dataset("binance/BTC_USDT-1h", "binance/BTC_USDT-60m")  # one spelling of a timeframe
    with pytest.raises(ParamError):
        delete_dataset("sample:BTC_USDT-1h")


# --------------------------------------------------------------------------- verdict


def test_verdict_green_for_the_synthetic_sample():
    rep = validate_ohlcv(generate_synthetic("BTC_USDT", "1h"), "1h")
    assert rep.verdict == ("green", [])
    assert rep.summary().splitlines()[0] == "verdict: green"
    assert rep.to_dict()["verdict"] == "green"


def test_verdict_amber_for_a_gappy_off_grid_file_lists_the_reasons():
    rep = validate_ohlcv(gappy(), "1h")
    level, reasons = rep.verdict
    assert rep.ok and level == "amber"
    assert reasons == ["32 missing bar(s) in 1 gap(s)", "10 off-grid timestamp(s) in 1 run(s)"]
    assert rep.summary().splitlines()[0].startswith("verdict: amber (32 missing bar(s)")
    data = json.loads(json.dumps(rep.to_dict()))
    assert data["verdict"] == "amber" and data["verdict_reasons"] == reasons and data["missing_bars"] == 32


def test_verdict_red_for_a_file_with_inf_values():
    df = candles(100, NEW)
    df.iloc[40, df.columns.get_loc("high")] = np.inf
    level, reasons = validate_ohlcv(df, "1h").verdict
    assert level == "red" and any("infinite" in r for r in reasons)


def test_verdict_spikes_only_when_unusually_many():
    df = candles(400, NEW)
    assert validate_ohlcv(df, "1h").verdict[0] == "green"
    df.iloc[100::10, df.columns.get_loc("close")] *= 1.5  # 30 spikes: 7.5% of the bars
    df["high"] = df[["open", "high", "close"]].max(axis=1)
    level, reasons = validate_ohlcv(df, "1h").verdict
    assert level == "amber" and any("spike" in r for r in reasons)


def test_cli_validate_prints_the_verdict_and_its_reasons(tmp_path, capsys):
    path = write_ohlcv(gappy(), tmp_path / "BTC_USDT-1h-gappy.parquet")
    assert main(["data", "validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "verdict: amber (32 missing bar(s) in 1 gap(s); 10 off-grid timestamp(s)" in out
    assert main(["data", "validate", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "amber" and len(data["verdict_reasons"]) == 2 and data["gap_count"] == 1
    bad = candles(100, NEW)
    bad.iloc[5, 0] = -np.inf
    bad_path = tmp_path / "BAD_USDT-1h.csv"
    bad.reset_index().to_csv(bad_path, index=False)
    assert main(["data", "validate", str(bad_path)]) == 1
    assert "verdict: red" in capsys.readouterr().out


def test_verdict_of_the_real_2017_2020_file(shared_data):
    _, rep = check_ohlcv_file(shared_data / "binance" / "BTC_USDT-1h-2017-2020.parquet")
    level, reasons = rep.verdict
    assert level == "amber"
    assert "96 missing bar(s) in 13 gap(s)" in reasons and "43 off-grid timestamp(s) in 1 run(s)" in reasons


# --------------------------------------------------------------------------- gap shading


def test_preview_chart_shades_each_gap_with_one_legend_entry():
    df = gappy()
    rep = validate_ohlcv(df, "1h")
    fig = charts.add_gap_marks(charts.price_figure(df), rep.gaps)
    gaps = [s for s in fig.layout.shapes if s.name == "gap"]
    assert gaps and {(pd.Timestamp(s.x0), pd.Timestamp(s.x1)) for s in gaps} == {(rep.gaps[0][0], rep.gaps[0][1])}
    assert sum(bool(s.showlegend) for s in gaps) == 1
    assert charts.add_gap_marks(charts.price_figure(candles(50, NEW)), []).layout.shapes == ()


def test_gap_marks_keep_the_largest_when_there_are_many():
    gaps = [(NEW + pd.Timedelta(hours=10 * i), NEW + pd.Timedelta(hours=10 * i + i % 7 + 1), i % 7 + 1)
            for i in range(50)]
    fig = charts.add_gap_marks(charts.empty_figure("x"), gaps, max_marks=10)
    assert len(fig.layout.shapes) == 10
    widths = sorted((pd.Timestamp(s.x1) - pd.Timestamp(s.x0)) // pd.Timedelta(hours=1) for s in fig.layout.shapes)
    assert widths == [6] * 3 + [7] * 7


def test_the_list_carries_the_verdict(data_root, capsys):
    write_ohlcv(gappy(), dataset_path("local", "GAP_USDT", "1h", data_root))
    write_ohlcv(candles(100, NEW), dataset_path("local", "OK_USDT", "1h", data_root))
    assert dict(zip(list_datasets()["name"], list_datasets()["verdict"])) == {"local/GAP_USDT-1h": "amber",
                                                                              "local/OK_USDT-1h": "green"}
    assert main(["data", "list"]) == 0
    assert "amber" in capsys.readouterr().out


def test_cli_resample_keeps_the_label_and_refuses_an_existing_target(stored, older, data_root, capsys):
    import_ohlcv(older, "binance", label="2017-2020")
    assert main(["data", "resample", "binance/BTC_USDT-1h-2017-2020", "--to", "4h"]) == 0
    assert (data_root / "binance" / "BTC_USDT-4h-2017-2020.parquet").exists()
    four = data_root / "binance" / "BTC_USDT-4h-2017-2020.parquet"
    before = four.read_bytes()
    err = one_error_line(capsys, ["data", "resample", "binance/BTC_USDT-1h-2017-2020", "--to", "4h"])
    assert "binance/BTC_USDT-4h-2017-2020 already exists" in err and "--replace" in err
    assert four.read_bytes() == before
    assert main(["data", "resample", "binance/BTC_USDT-1h-2017-2020", "--to", "4h", "--replace"]) == 0


def test_a_resample_to_the_dataset_s_own_timeframe_or_a_finer_one_is_refused(data_root, capsys):
    """A CSV-stored 1h dataset resampled to 1h with --replace wrote a Parquet copy beside the CSV:
    one dataset, two files (without --replace: "already exists", not "already 1h")."""
    folder = data_root / "r8"
    folder.mkdir(parents=True)
    candles(200, NEW).reset_index().to_csv(folder / "AVAX_USDT-1h.csv", index=False)
    for extra in ([], ["--replace"]):
        for to in ("1h", "60m"):
            err = one_error_line(capsys, ["data", "resample", "r8/AVAX_USDT-1h", "--to", to, *extra])
            assert err == "error: r8/AVAX_USDT-1h holds 1h bars already: resample it to a coarser timeframe than 1h"
        err = one_error_line(capsys, ["data", "resample", "r8/AVAX_USDT-1h", "--to", "15m", *extra])
        assert err == "error: r8/AVAX_USDT-1h holds 1h bars: 15m is finer; resampling makes coarser bars only"
    err = one_error_line(capsys, ["data", "resample", "r8/AVAX_USDT-1h", "--to", "90m"])  # (what the page never offers)
    assert err == "error: r8/AVAX_USDT-1h: 90m is not a whole multiple of 1h: a bar would end past its bin"
    assert sorted(p.name for p in folder.iterdir()) == ["AVAX_USDT-1h.csv"]
    assert main(["data", "resample", "r8/AVAX_USDT-1h", "--to", "4h"]) == 0


def test_a_file_named_with_a_label_is_imported_under_it(stored, tmp_path, data_root):
    """BTC_USDT-1h-2017-2020.parquet was stored as binance/BTC_USDT-1h: its label dropped (and
    the 2024 file imported next collided with it), though its symbol was read from its name."""
    path = write_ohlcv(candles(150, OLD, seed=9), tmp_path / "BTC_USDT-1h-2017-2020.parquet")
    frame, target = import_ohlcv(path, "binance", data_root=data_root)
    assert target.name == "BTC_USDT-1h-2017-2020.parquet" and len(frame) == 150
    assert import_ohlcv(path, "binance", data_root=data_root, label="old", replace=True)[1].name == \
        "BTC_USDT-1h-old.parquet"  # a label given wins


@pytest.mark.parametrize("label", ["2017 2020", "été", "x" * 200])
def test_a_file_name_label_that_is_no_label_is_refused_not_dropped(stored, tmp_path, data_root, capsys, label):
    """BTC_USDT-1h-2017 2020.csv was stored as the bare BTC_USDT-1h (its label dropped without a word),
    while a label too long was refused: each is refused, naming the label and the file."""
    path = tmp_path / f"BTC_USDT-1h-{label}.csv"
    candles(150, OLD, seed=9).reset_index().to_csv(path, index=False)
    err = one_error_line(capsys, ["data", "import", str(path), "--exchange", "binance"])
    assert f"invalid dataset label {label!r}" in err and f"(taken from the file name {path.name!r})" in err
    assert "--label" in err
    assert main(["data", "import", str(path), "--exchange", "binance", "--label", "old"]) == 0  # a label given wins
    assert sorted(p.name for p in stored.parent.iterdir()) == ["BTC_USDT-1h-old.parquet", "BTC_USDT-1h.parquet"]
    copy = tmp_path / "BTC_USDT-1h (1).csv"  # a browser's copy mark is no label
    path.rename(copy)
    assert import_ohlcv(copy, "kraken", data_root=data_root)[1].name == "BTC_USDT-1h.parquet"


def test_a_file_name_label_keeps_its_dots(tmp_path, data_root):
    """BTC_USDT-1h-v1.5.csv.gz was stored under the label 'v1' (cut at the first dot, without a word)."""
    path = tmp_path / "BTC_USDT-1h-v1.5.csv"
    candles(150, OLD, seed=9).reset_index().to_csv(path, index=False)
    assert import_ohlcv(path, "kraken", data_root=data_root)[1].name == "BTC_USDT-1h-v1.5.parquet"


def test_the_sample_resampled_is_written_under_local_and_a_stray_synthetic_file_can_be_deleted(data_root, capsys):
    """A resample of the sample was written to synthetic/BTC_USDT-4h, listed as the sample and
    refused by rename and delete: a dataset nobody could remove but by hand."""
    from threadx.data.catalog import resampled_path
    from threadx.data.synthetic import ensure_sample

    ensure_sample(data_root)
    assert resampled_path("sample:BTC_USDT-1h", "4h", data_root) == data_root / "local" / "BTC_USDT-4h.parquet"
    assert resampled_path("synthetic/BTC_USDT-1h", "4h", data_root).parent.name == "local"
    assert main(["data", "resample", "synthetic/BTC_USDT-1h", "--to", "4h"]) == 0
    assert (data_root / "local" / "BTC_USDT-4h.parquet").exists()
    stray = write_ohlcv(candles(20, NEW), data_root / "synthetic" / "BTC_USDT-4h.parquet")  # an older version's
    assert main(["data", "delete", "synthetic/BTC_USDT-4h", "--yes"]) == 0
    assert not stray.exists()
    err = one_error_line(capsys, ["data", "rename", "local/BTC_USDT-4h", "synthetic/BTC_USDT-4h"])
    assert "exchange label 'synthetic' is kept for the synthetic sample" in err
    assert "synthetic sample" in one_error_line(capsys, ["data", "delete", "synthetic/BTC_USDT-1h", "--yes"])


def test_a_refused_symbol_is_quoted_as_given(data_root):
    """'../../evil' was refused as '.._.._EVIL', a text the user never typed."""
    with pytest.raises(ParamError, match=r"invalid symbol '\.\._\.\._EVIL'.*made from '\.\./\.\./evil' as given"):
        dataset_path("local", "../../evil", "1h", data_root)


def test_two_imports_onto_one_free_name_at_once_never_both_succeed(tmp_path, monkeypatch):
    """Both checked the name free, then both wrote: each said "imported" and the first one's
    candles were gone (a hostile test, two tabs or the app and the CLI). The second write now
    finds the name taken and is refused as an import onto an existing dataset is."""
    import threadx.data.catalog as catalog

    first, second = candles(200, NEW), candles(200, NEW, seed=9)
    for name, frame in (("A", first), ("B", second)):
        frame.reset_index().to_csv(tmp_path / f"{name}-1h.csv", index=False)
    root = tmp_path / "data"
    import_ohlcv([tmp_path / "A-1h.csv"], "ex", symbol="AAA_USDT", data_root=root)
    real = catalog.existing_dataset
    calls = []

    def later(*args, **kwargs):  # the check before the write saw none; the one after it sees A
        calls.append(1)
        return None if len(calls) == 1 else real(*args, **kwargs)

    monkeypatch.setattr(catalog, "existing_dataset", later)
    with pytest.raises(DatasetExists):
        import_ohlcv([tmp_path / "B-1h.csv"], "ex", symbol="AAA_USDT", data_root=root)
    kept = load_ohlcv("ex/AAA_USDT-1h", data_root=root)
    assert np.allclose(kept.close.to_numpy(), first.close.to_numpy())
    assert [p.name for p in (root / "ex").iterdir()] == ["AAA_USDT-1h.parquet"]  # no temp left


def test_an_exchange_folder_that_is_a_file_is_one_clear_error(tmp_path):
    """The clean-up's NotADirectoryError hid the write's error: '[Errno 20] Not a directory: ...tmp'."""
    candles(50, NEW).reset_index().to_csv(tmp_path / "A-1h.csv", index=False)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "zz").write_text("hi")
    with pytest.raises(DataError, match=r"cannot write .*zz/AAA_USDT-1h.parquet: .*zz is a file, not a folder; "
                                        "nothing was changed"):
        import_ohlcv([tmp_path / "A-1h.csv"], "zz", symbol="AAA_USDT", data_root=tmp_path / "data")
    assert (tmp_path / "data" / "zz").read_text() == "hi"
