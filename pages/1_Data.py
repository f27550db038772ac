"""Data page: datasets, import, download, validation, preview, resample."""
from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from threadx.data.catalog import dataset_path, list_datasets, parse_dataset_name, resolve_dataset
from threadx.data.io import check_ohlcv_file, import_ohlcv, load_ohlcv, write_ohlcv
from threadx.errors import ThreadXError
from threadx.names import check_name
from threadx.ui import charts
from threadx.ui.state import _load, dataset_picker, label_dataset, load_dataset

st.title("Data")

dataset = dataset_picker()
table = list_datasets()
if len(table):
    shown = table.drop(columns=[c for c in ("path",) if c in table])
    st.dataframe(shown, use_container_width=True, hide_index=True)

tabs = st.tabs(["Preview", "Validation", "Import", "Download", "Resample"])

with tabs[0]:
    df = load_dataset(dataset)
    st.caption(f"{label_dataset(dataset, df)}: {len(df):,} bars, {df.index[0]} → {df.index[-1]}")
    st.plotly_chart(charts.price_figure(df, title=label_dataset(dataset, df)), use_container_width=True)

with tabs[1]:
    _, report = check_ohlcv_file(resolve_dataset(dataset))
    (st.success if report.ok else st.error)(f"Quality {report.to_dict().get('quality', '?')}/100 — "
                                             f"{len(report.errors)} error(s), {len(report.warnings)} warning(s)")
    st.code(report.summary(), language=None)

with tabs[2]:
    st.write("Parquet, Feather, CSV or JSON (freqtrade layouts included). Validated before it is saved.")
    upload = st.file_uploader("File", type=["parquet", "feather", "csv", "json"], key="data_upload")
    path_text = st.text_input("…or a path on this machine", key="data_path")
    c = st.columns(4)
    exchange = c[0].text_input("Exchange label", value="local", key="data_exchange")
    symbol = c[1].text_input("Symbol (e.g. BTC_USDT)", key="data_symbol")
    timeframe = c[2].text_input("Timeframe (blank = detect)", key="data_timeframe")
    date_format = c[3].text_input("Date format (blank = detect)", key="data_date_format",
                                  help="e.g. %d/%m/%Y; needed when dates read both day- and month-first")
    if st.button("Import", key="data_import"):
        try:
            with tempfile.TemporaryDirectory(prefix="threadx-upload-") as scratch:  # deleted after the import
                if upload is not None:
                    # the browser's file name only gives the format (checked) and a symbol guess
                    # (checked by dataset_path); the file itself gets a fixed name
                    suffix = "".join(Path(upload.name).suffixes[-2:])
                    source = Path(scratch) / check_name(f"upload{suffix}", "upload file name")
                    stem = Path(upload.name).name.split(".")[0]
                    source.write_bytes(upload.getvalue())
                elif path_text.strip():
                    source, stem = path_text.strip(), Path(path_text.strip()).stem
                else:
                    raise ThreadXError("choose a file to upload or type a path")
                frame, target = import_ohlcv(source, exchange.strip() or "local", symbol.strip() or stem.split("-")[0],
                                             timeframe.strip() or None, date_format=date_format.strip() or None)
            st.success(f"Imported {len(frame):,} bars into {target}")
        except (ThreadXError, ValueError, OSError) as exc:
            st.error(f"Import failed: {exc}")

with tabs[3]:
    c = st.columns(4)
    exchange = c[0].text_input("Exchange (ccxt id)", value="binance", key="fetch_exchange")
    symbol = c[1].text_input("Symbol", value="BTC/USDT", key="fetch_symbol")
    timeframe = c[2].selectbox("Timeframe", ["1m", "5m", "15m", "1h", "4h", "1d"], index=3, key="fetch_tf")
    since = c[3].text_input("Since (UTC date)", value="2024-01-01", key="fetch_since")
    if st.button("Download", key="fetch_go"):
        from threadx.data.fetch import fetch_ohlcv

        bar = st.progress(0.0, text="Contacting the exchange…")

        def progress(done: float, total: float) -> None:
            bar.progress(min(done / total, 1.0) if total else 0.0, text=f"{min(done / total, 1.0):.0%}" if total else "")

        try:
            result = fetch_ohlcv(exchange, symbol, timeframe, since=since, progress=progress, max_retries=2)
            bar.progress(1.0, text="done")
            st.success(f"{result.new_bars:,} new bars, {result.total_bars:,} stored in {result.path}")
        except ThreadXError as exc:
            st.error(f"Download failed: {exc}. No network? Files already on disk are unchanged.")

with tabs[4]:
    c = st.columns(2)
    target_tf = c[0].selectbox("Resample to", ["4h", "1d", "1w", "15m", "1h"], key="resample_tf")
    if c[1].button("Resample", key="resample_go"):
        try:
            frame = load_ohlcv(dataset, timeframe=target_tf)
            exchange_name, sym, _ = parse_dataset_name(dataset)
            target = dataset_path(exchange_name or "local", sym, target_tf)
            write_ohlcv(frame, target)
            _load.clear()
            st.success(f"Wrote {len(frame):,} complete {target_tf} bars to {target}")
        except (ThreadXError, ValueError) as exc:
            st.error(f"Resample failed: {exc}")
