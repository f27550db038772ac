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
