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
