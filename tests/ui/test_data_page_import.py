"""Data page import: validation errors are shown, a date format can be given."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("streamlit")

from apptest_helpers import open_page  # noqa: E402


def test_import_needs_a_date_format_for_ambiguous_dates_then_imports(workspace):
    index = pd.date_range("2024-04-01", periods=72, freq="1h", tz="UTC")
    close = 100 + np.cumsum(np.random.default_rng(1).normal(0, 0.2, 72))
    frame = pd.DataFrame({"date": index.strftime("%d/%m/%Y %H:%M"), "open": close, "high": close + 1,
                          "low": close - 1, "close": close, "volume": 1.0})
    source = workspace / "ABC_USDT-1h.csv"
    frame.to_csv(source, index=False)
    at = open_page("1_Data.py")
    at.text_input(key="data_path").set_value(str(source))
    at.button(key="data_import").click().run()
    assert not at.exception
    assert any("Import failed" in e.value and "day-first" in e.value for e in at.error)
    at.text_input(key="data_date_format").set_value("%d/%m/%Y %H:%M")
    at.button(key="data_import").click().run()
    assert not at.exception
    assert any("Imported 72 bars" in s.value for s in at.success)
    assert (workspace / "data" / "local" / "ABC_USDT-1h.parquet").exists()


def test_a_file_with_repeated_timestamps_imports_once_dedupe_is_ticked(workspace):
    """The refusal advised 'dedupe / --dedupe', which the page did not have."""
    index = pd.date_range("2024-04-01", periods=400, freq="1h", tz="UTC")
    close = 100 + np.cumsum(np.random.default_rng(2).normal(0, 0.2, 400))
    frame = pd.DataFrame({"timestamp": index.astype("int64") // 10**6, "open": close, "high": close + 1,
                          "low": close - 1, "close": close, "volume": 1.0})
    source = workspace / "DUP_USDT-1h.csv"
    pd.concat([frame.iloc[:13], frame.iloc[12:13], frame.iloc[13:]]).to_csv(source, index=False)  # bar 12 twice
    at = open_page("1_Data.py")
    at.text_input(key="data_path").set_value(str(source))
    at.button(key="data_import").click().run()
    assert any("Import failed" in e.value and "Drop repeated timestamps" in e.value for e in at.error)
    at.checkbox(key="data_dedupe").check()
    at.button(key="data_import").click().run()
    assert not at.exception
    assert any("Imported 400 bars" in s.value for s in at.success), [e.value for e in at.error]
    # what it dropped is said (the stored dataset, green, shows no trace of it)
    assert any("Found in the data" in s.value and "1 duplicate timestamp(s)" in s.value and "(same values)" in s.value
               for s in at.success)


def test_a_path_pattern_imports_several_monthly_files_as_one_dataset(workspace):
    index = pd.date_range("2024-11-30", periods=48, freq="1h", tz="UTC")
    close = 100 + np.cumsum(np.random.default_rng(3).normal(0, 0.2, 48))
    frame = pd.DataFrame({"timestamp": index.as_unit("ms").asi8, "open": close, "high": close + 1,
                          "low": close - 1, "close": close, "volume": 1.0})
    frame.iloc[:24].to_csv(workspace / "ETHUSDT-1h-2024-11.csv", index=False, header=False)
    frame.iloc[24:].to_csv(workspace / "ETHUSDT-1h-2024-12.csv", index=False, header=False)
    at = open_page("1_Data.py")
    at.text_input(key="data_path").set_value(str(workspace / "ETHUSDT-1h-2024-*.csv"))
    at.button(key="data_import").click().run()
    assert not at.exception
    assert any("Imported 48 bars" in s.value for s in at.success), [e.value for e in at.error]
    assert (workspace / "data" / "local" / "ETHUSDT-1h.parquet").exists()
    at.text_input(key="data_path").set_value(str(workspace / "NOPE-*.csv"))
    at.button(key="data_import").click().run()
    assert any("no file matches" in e.value for e in at.error)


def test_a_typed_path_with_brackets_is_that_file_not_a_pattern(workspace):
    index = pd.date_range("2024-11-30", periods=48, freq="1h", tz="UTC")
    frame = pd.DataFrame({"timestamp": index.as_unit("ms").asi8, "open": 100.0, "high": 101.0, "low": 99.0,
                          "close": 100.5, "volume": 1.0})
    source = workspace / "SOL_USDT-1h [binance].csv"
    frame.to_csv(source, index=False)
    at = open_page("1_Data.py")
    at.text_input(key="data_path").set_value(str(source))
    at.button(key="data_import").click().run()
    assert not at.exception
    assert any("Imported 48 bars" in s.value for s in at.success), [e.value for e in at.error]  # "no file matches"


class _Upload:
    """What the page reads of Streamlit's UploadedFile: its name and bytes."""

    def __init__(self, name: str, data: bytes) -> None:
        self.name, self._data = name, data

    def getvalue(self) -> bytes:
        return self._data


class _Dropped(list):
    """Files the user drops into the uploader before the next run; ``shown``: the names it listed
    at the last run; ``remove_held``: the user removes the files it holds (their ×) first."""

    shown: list[str] = []
    remove_held = False


@pytest.fixture
def uploads(monkeypatch) -> tuple[_Dropped, bytes]:
    """(files dropped into the uploader before the next run, 48 bars of CSV): AppTest drives no
    file uploader, so a stand-in keeps the files under the uploader's key, which is all the page
    reads. As in the browser, dropped files join those it holds, and a new key starts it empty."""
    import streamlit as st

    pending, held = _Dropped(), {}

    def uploader(label, type=None, key=None, accept_multiple_files=False, **kwargs):
        if pending.remove_held:
            held[key], pending.remove_held = [], False
        held.setdefault(key, []).extend(pending)
        pending.clear()
        st.session_state[key] = list(held[key])
        pending.shown = [f.name for f in held[key]]
        return st.session_state[key]

    monkeypatch.setattr(st, "file_uploader", uploader)
    index = pd.date_range("2024-11-30", periods=48, freq="1h", tz="UTC")
    data = pd.DataFrame({"timestamp": index.as_unit("ms").asi8, "open": 100.0, "high": 101.0, "low": 99.0,
                         "close": 100.5, "volume": 1.0}).to_csv(index=False).encode()
    return pending, data


def test_an_upload_named_with_a_label_that_is_no_label_is_refused_naming_it(workspace, uploads):
    """An upload named BTC_USDT-1h-<200 characters>.csv was saved as upload0.csv and imported as the
    bare local/BTC_USDT-1h, its label dropped without a word."""
    pending, data = uploads
    at = open_page("1_Data.py")
    for name in ("BTC_USDT-1h-" + "x" * 200 + ".csv", "BTC_USDT-1h-2017 2020.csv"):
        pending[:], pending.remove_held = [_Upload(name, data)], True  # (the refused one removed: its ×)
        at.button(key="data_import").click().run()
        assert not at.exception, at.exception
        assert any("Import failed: invalid dataset label" in e.value and f"(taken from the file name {name!r})"
                   in e.value for e in at.error), [e.value for e in at.error]
        assert not (workspace / "data" / "local").exists()
    pending[:], pending.remove_held = [_Upload("BTC_USDT-1h-2024 (1).csv", data)], True  # (the label is 2024)
    at.button(key="data_import").click().run()
    assert any("Imported 48 bars into local/BTC_USDT-1h-2024" in s.value for s in at.success), \
        [e.value for e in at.error]


def test_two_overlapping_uploads_are_named_as_the_user_named_them(workspace, uploads):
    """The overlap error named the first file by its saved copy (upload0.csv), though its start named
    it as the user did: the copies' file names alone are mapped back too."""
    pending, data = uploads
    at = open_page("1_Data.py")
    # (names with a space: saved as uploadN.csv)
    pending[:] = [_Upload("BTC_USDT-1h-2024 a.csv", data), _Upload("BTC_USDT-1h-2024 b.csv", data)]
    at.button(key="data_import").click().run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert any("overlap" in e and "BTC_USDT-1h-2024 b.csv" in e for e in errors), errors
    assert not any("upload0" in e or "upload1" in e for e in errors), errors


def test_a_refused_upload_stays_for_another_try_and_is_not_joined_to_the_next_file_without_a_word(workspace, uploads):
    """A refused upload stayed in the uploader and the next file dropped there was imported with it
    (refused again, or two files joined that the user never meant as one); emptying the uploader
    instead made a refusal that an option fixes (Drop repeated timestamps) a new upload."""
    pending, data = uploads
    at = open_page("1_Data.py")
    pending[:] = [_Upload("BAD_USDT-1h.csv", b"this,is\nnot,ohlcv\n")]
    at.button(key="data_import").click().run()
    assert not at.exception, at.exception
    assert any("Import failed" in e.value and "BAD_USDT-1h.csv" in e.value for e in at.error)
    assert pending.shown == ["BAD_USDT-1h.csv"]  # (still there: an option may be what it needs)
    pending[:] = [_Upload("GOOD_USDT-1h.csv", data)]  # dropped beside it
    at.button(key="data_import").click().run()
    errors = [e.value for e in at.error]
    assert any("BAD_USDT-1h.csv (not imported just now) is still in the box beside GOOD_USDT-1h.csv" in e
               and "remove it" in e for e in errors), errors
    assert not (workspace / "data" / "local").exists()  # nothing joined, nothing written
    at.button(key="data_import").click().run()  # pressed again: the user means them as one (refused here)
    assert any("Import failed" in e.value and "still in the box" not in e.value for e in at.error)


def test_a_refused_upload_imports_once_the_option_it_needs_is_ticked(workspace, uploads):
    pending, _ = uploads
    index = pd.date_range("2024-04-01", periods=100, freq="1h", tz="UTC")
    frame = pd.DataFrame({"timestamp": index.as_unit("ms").asi8, "open": 100.0, "high": 101.0, "low": 99.0,
                          "close": 100.5, "volume": 1.0})
    twice = pd.concat([frame.iloc[:13], frame.iloc[12:13], frame.iloc[13:]]).to_csv(index=False).encode()
    at = open_page("1_Data.py")
    pending[:] = [_Upload("DUP_USDT-1h.csv", twice)]
    at.button(key="data_import").click().run()
    assert any("Import failed" in e.value and "Drop repeated timestamps" in e.value for e in at.error)
    at.checkbox(key="data_dedupe").check()
    at.button(key="data_import").click().run()
    assert not at.exception, at.exception
    assert any("Imported 100 bars into local/DUP_USDT-1h" in s.value for s in at.success), [e.value for e in at.error]
    assert pending.shown == []  # (imported: the uploader is empty for the next one)


def test_a_cancelled_upload_stays_and_is_not_joined_to_the_next_file_without_a_word(workspace, uploads):
    pending, data = uploads
    at = open_page("1_Data.py")
    pending[:] = [_Upload("ABC_USDT-1h.csv", data)]
    at.button(key="data_import").click().run()
    assert any("Imported 48 bars" in s.value for s in at.success) and pending.shown == []
    pending[:] = [_Upload("ABC_USDT-1h.csv", data)]
    at.button(key="data_import").click().run()
    assert any("already exists" in w.value for w in at.warning)
    assert pending.shown == ["ABC_USDT-1h.csv"]  # (the choice's answers import it: it stays for them)
    at.button(key="data_collision_cancel").click().run()
    assert not at.exception, at.exception
    assert any("cancelled" in i.value for i in at.info)
    pending[:] = [_Upload("XYZ_USDT-1h.csv", data)]
    at.button(key="data_import").click().run()
    assert any("ABC_USDT-1h.csv (not imported just now) is still in the box beside XYZ_USDT-1h.csv" in e.value
               for e in at.error), [e.value for e in at.error]
    assert sorted(p.name for p in (workspace / "data" / "local").iterdir()) == ["ABC_USDT-1h.parquet"]
