"""Browser uploads saved for an import (threadx.ui.uploads)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from candles import candles
from threadx.data.io import import_ohlcv
from threadx.ui.uploads import save_uploads


class Upload:
    """What Streamlit's file uploader hands over: a name and the bytes."""

    def __init__(self, name: str, data: bytes):
        self.name, self._data = name, data

    def getvalue(self) -> bytes:
        return self._data


def test_two_uploads_of_one_file_name_are_two_files(tmp_path):
    """Two monthly files both saved as BTC_USDT-1h.csv: the first was dropped, the second read
    twice, and the import refused them as overlapping ("one given twice?") (a hostile test)."""
    bars = candles(600, pd.Timestamp("2024-09-14", tz="UTC"))
    months = [bars.iloc[:300], bars.iloc[300:]]
    uploads = [Upload("BTC_USDT-1h.csv", part.reset_index().to_csv(index=False).encode()) for part in months]
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    sources, shown = save_uploads(uploads, scratch)
    assert len(set(sources)) == 2 and all(Path(s).name == "BTC_USDT-1h.csv" for s in sources)
    assert set(shown.values()) == {"BTC_USDT-1h.csv"}
    df, _ = import_ohlcv(sources, "ui", data_root=tmp_path / "data")
    assert len(df) == 600 and df.index[0] == bars.index[0] and df.index[-1] == bars.index[-1]
    other = tmp_path / "other"
    other.mkdir()
    odd, shown = save_uploads([Upload("my prices.csv", b"x")], other)  # not a plain file name: a fixed one
    assert Path(odd[0]).name == "upload0.csv" and shown[odd[0]] == "my prices.csv"
