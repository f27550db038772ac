"""Data page: datasets, import (never over an existing name unasked), download, validation
verdict, preview with gaps, resample, rename and delete."""
from __future__ import annotations

import glob
import os
import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from threadx.data.catalog import (
    DatasetExists,
    dataset_name,
    delete_dataset,
    existing_dataset,
    is_sample,
    list_datasets,
    market_change,
    parse_dataset_name,
    quote_currency,
    rename_dataset,
    resampled_path,
    resolve_dataset,
    without_empty_problem,
)
from threadx.data.io import check_ohlcv_file, file_label, import_ohlcv, load_resampled, write_ohlcv
from threadx.data.readers import UPLOAD_TYPES
from threadx.data.timeframe import resample_problem, timeframe_seconds
from threadx.errors import ThreadXError
from threadx.results_using import used_by_note
from threadx.ui import charts
from threadx.ui.state import dataset_picker, datasets_changed, label_dataset, load_dataset, sentence
from threadx.ui.uploads import save_uploads
from threadx.ui.serving import local_only
from threadx.units import format_count, format_metric, table_view

VERDICT_BOX = {"green": (st.success, "🟢"), "amber": (st.warning, "🟠"), "red": (st.error, "🔴")}


def _span(first: pd.Timestamp | None, last: pd.Timestamp | None, bars: int) -> str:
    """``2017-08-17 → 2020-02-01, 21,453 bars``."""
    days = f"{pd.Timestamp(first):%Y-%m-%d} → {pd.Timestamp(last):%Y-%m-%d}, " if first is not None else ""
    return f"{days}{format_count(bars)} bars"


def _show_verdict(report) -> None:
    """The traffic light of a validation report with its reasons (rule: ValidationReport.verdict)."""
    level, reasons = report.verdict
    box, icon = VERDICT_BOX[level]
    warned = len(report.warnings)
    # (the bullets are the verdict's reasons: "4 warning(s)" over 3 bullets hid that spikes at
    # crypto's usual rate are not among them; every warning is in the report below)
    listed_all = level != "amber" or len(reasons) >= warned
    notable = "" if listed_all else f" ({len(reasons)} notable, below; all in the report)"
    text = (f"{icon} **{level.upper()}** — quality {format_metric('quality', report.quality)}/100, "
            f"{len(report.errors)} error(s), {warned} warning(s){notable}")
    box("\n".join([text, "", *(f"- {r}" for r in reasons)]))


RESAMPLE_TIMEFRAMES = ("5m", "15m", "1h", "4h", "1d", "1w")


def _coarser_timeframes(dataset: str) -> list[str]:
    """The timeframes of :data:`RESAMPLE_TIMEFRAMES` a resample of ``dataset`` makes: coarser than its
    own and whole multiples of it (4h first for 1h bars); every one when its name gives none."""
    try:
        native = parse_dataset_name(dataset)[2]
        timeframe_seconds(native)
    except ThreadXError:
        return list(RESAMPLE_TIMEFRAMES)
    return [tf for tf in RESAMPLE_TIMEFRAMES if resample_problem(native, tf) is None]


def _upload_key() -> str:
    """The uploader's key, renewed after each import (a new key: an empty uploader)."""
    return f"data_upload_{st.session_state.get('data_upload_round', 0)}"


def _empty_uploader() -> None:
    """A new uploader key for the next run: the files of an import done are not imported again."""
    st.session_state["data_upload_round"] = st.session_state.get("data_upload_round", 0) + 1


def _upload_names(uploads: list) -> list[str]:
    """The names the user gave the uploader's files (their base names)."""
    return [Path(u.name).name for u in uploads]


def _keep_uploads() -> None:
    """Leave the uploader's files for another try (an option changed, a name freed) after an import
    that did not end well, and remember them: a file dropped beside them is not joined to them
    without a word (:func:`_import_source`)."""
    st.session_state["data_left_uploads"] = _upload_names(st.session_state.get(_upload_key()) or [])


def _import_source(scratch: str) -> tuple[str | Path | list[str], str, dict[str, str]]:
    """The file(s) to import (uploads written to ``scratch``, or a typed path or pattern such as
    ``~/dumps/BTCUSDT-1h-2024-*.zip``), the first name's stem and, for each path, the name the user
    knows it by (errors say that one, not the scratch copy's). Several files make one dataset."""
    uploads = st.session_state.get(_upload_key()) or []
    path_text = st.session_state.get("data_path", "").strip() if local_only()[0] else ""
    if uploads and path_text:  # (the upload won, the typed pattern was dropped without a word)
        raise ThreadXError("a file is uploaded and a path is typed: clear one of them (one import, one source)")
    left = st.session_state.pop("data_left_uploads", None)  # the files of the last import that did not end well
    names = _upload_names(uploads)
    added = [n for n in names if n not in (left or [])]
    if left and added and set(left) & set(names):  # (they were imported with the next file dropped beside them)
        raise ThreadXError(f"{', '.join(left)} (not imported just now) is still in the box beside "
                           f"{', '.join(added)}: remove it (its ×) to import {'them' if len(added) > 1 else 'that'} "
                           "alone, or press Import again to import them all as one dataset")
    if uploads:
        sources, shown = save_uploads(uploads, scratch)
        first = Path(uploads[0].name).name
        return (sources if len(sources) > 1 else sources[0]), first.split(".")[0], shown
    if path_text:
        if any(ch in path_text for ch in "*?[") and not Path(os.path.expanduser(path_text)).exists():
            matches = sorted(glob.glob(os.path.expanduser(path_text)))
            if not matches:
                raise ThreadXError(f"no file matches {path_text}")
            return (matches if len(matches) > 1 else matches[0]), Path(matches[0]).stem, {}
        return path_text, Path(path_text).stem, {}
    raise ThreadXError("choose a file to upload or type a path")


def _run_import(*, replace: bool = False, label: str | None = None) -> None:
    """Import with the form's settings; a name in use opens the replace / keep both / cancel choice."""
    field = lambda key: st.session_state.get(key, "").strip() or None  # noqa: E731
    answer = replace or label is not None  # to the name-in-use choice (kept when the answer fails)
    named = label  # the dataset's label: the one given, else the uploaded file name's
    try:
        with tempfile.TemporaryDirectory(prefix="threadx-upload-") as scratch:  # deleted after the import
            source, stem, shown = _import_source(scratch)
            try:
                if named is None and isinstance(source, str) and source in shown:  # an upload's copy may have
                    named = file_label(shown[source])  # another name (upload0.csv): the label is the user's name's
                frame, target = import_ohlcv(source, field("data_exchange") or "local",
                                             field("data_symbol") or stem.split("-")[0], field("data_timeframe"),
                                             date_format=field("data_date_format"), timezone=field("data_timezone"),
                                             label=named, replace=replace,
                                             dedupe=bool(st.session_state.get("data_dedupe")))
            except DatasetExists:
                raise
            except (ThreadXError, ValueError, OSError) as exc:  # worded with the user's file, not the copy
                text = str(exc)
                for copy, given in shown.items():  # (some messages name the copy by its file name alone)
                    text = text.replace(copy, given).replace(Path(copy).name, given)
                raise ThreadXError(text) from None
    except DatasetExists as exc:
        earlier = st.session_state.get("data_collision") or {}
        # the name in use (what Replace overwrites: a Keep both whose label is taken too asks again about
        # that labelled name, and Replace overwrote the unlabelled one) and the name Keep both labels
        base = exc.name[:-len(named) - 1] if named and exc.name.endswith(f"-{named}") else exc.name
        st.session_state["data_collision"] = {"existing": f"{exc.describe()}", "name": exc.name,
                                              "base": earlier.get("base", base) if label else base,
                                              "label": label, "bars": exc.bars, "incoming": exc.incoming}
        if answer:  # the question about the name a Keep both met (the one drawn above is about the other)
            st.rerun()
        return  # (the uploader keeps the files: the choice's answers import them)
    except (ThreadXError, ValueError, OSError) as exc:
        if not answer:  # (an answer to the choice that failed, a bad label say, keeps the choice)
            st.session_state.pop("data_collision", None)
        _keep_uploads()
        st.error(f"Import failed: {exc}")
        return
    st.session_state.pop("data_collision", None)
    name = dataset_name(target)
    done = (f"Replaced {name} with {len(frame):,} bars ({target})" if replace
            else f"Imported {len(frame):,} bars into {name} ({target})")
    # what the import changed or found (rows sorted, duplicates dropped, off-grid times): the stored
    # dataset, validated anew, shows none of it
    found = "".join(f"\n- {note}" for note in frame.attrs.get("warnings") or [])
    # said under the Import button, where the user is (the top of the page was out of sight), and
    # the uploader emptied (the same files again asked to replace what they had just made)
    st.session_state["data_import_done"] = done + (f"\n\nFound in the data:{found}" if found else "")
    _empty_uploader()
    datasets_changed("", select=name)


def _collision_choice(collision: dict) -> None:
    """Replace / keep both / cancel, for an import onto a name in use."""
    first, last, bars = collision["incoming"] or (None, None, 0)
    name, stored = collision["name"], format_count(collision.get("bars", 0))
    base = collision.get("base", name)
    st.warning(f"{collision['existing'][0].upper()}{collision['existing'][1:]}. The import holds "
               f"{_span(first, last, bars)}. **Keep both** stores it as {base}-LABEL beside the stored one; "
               f"**Replace** overwrites {name} with it (its {stored} bars are lost); **Cancel** writes nothing.")
    default = "new" if first is None else f"{first:%Y}" + (f"-{last:%Y}" if last.year != first.year else "")
    # (the answer that loses nothing is the prominent one)
    c = st.columns([2, 1, 1, 1], vertical_alignment="bottom")
    label = c[0].text_input("Label for the new one", value=default, key="data_collision_label",
                            help=f"stored as {base}-LABEL")
    if c[1].button("Keep both", key="data_collision_keep", type="primary"):
        if label.strip():
            _run_import(label=label.strip())
        else:  # (without one the import met the same name again: the same question, and no word why)
            st.warning(f"Keep both needs a label for the new one: it is stored as {base}-LABEL.")
    if c[2].button("Replace", key="data_collision_replace",
                   help=f"overwrite {name} ({stored} bars) with the import: this cannot be undone"):
        _run_import(replace=True, label=collision.get("label"))  # (the name shown: labelled when a label met it)
    if c[3].button("Cancel", key="data_collision_cancel"):
        st.session_state.pop("data_collision", None)
        _keep_uploads()
        st.session_state["data_import_note"] = "Import cancelled: nothing was written."
        st.rerun()  # (the choice's buttons were drawn already: they stayed, and Replace then did nothing)


def _rename_delete(dataset: str, table: pd.DataFrame) -> None:
    """Rename the active dataset, or delete it after a confirmation."""
    if is_sample(dataset):
        st.info("The synthetic sample cannot be renamed or deleted: it is regenerated whenever it is missing.")
        return
    if st.session_state.get("data_rename_for") != dataset:  # the box starts at the selected dataset's name
        st.session_state["data_rename_for"] = st.session_state["data_rename_to"] = dataset
    c = st.columns([3, 1], vertical_alignment="bottom")
    new = c[0].text_input("New name ([exchange/]SYMBOL-tf[-label])", key="data_rename_to")
    if c[1].button("Rename", key="data_rename_go"):
        used = used_by_note(dataset, without=f"under its new name (rename it back to {dataset} for that)")
        try:
            target = rename_dataset(dataset, new.strip())
        except (ThreadXError, ValueError, OSError) as exc:
            st.error(f"Rename failed: {exc}")
        else:  # (the results that ran on it and a market's change: said where the success is, as warnings)
            moved = market_change(dataset, dataset_name(target))
            notes = ([sentence(moved)] if moved else []) + ([used.strip()] if used else [])
            if notes:
                st.session_state["data_flash_warning"] = " ".join(notes)
            datasets_changed(f"Renamed {dataset} to {dataset_name(target)}", select=dataset_name(target))
    if st.button("Delete…", key="data_delete"):
        st.session_state["data_delete_pending"] = dataset
    if st.session_state.get("data_delete_pending") != dataset:
        return
    row = table[table["name"] == dataset]
    span = _span(row["first"].iloc[0], row["last"].iloc[0], int(row["bars"].iloc[0])) if len(row) else ""
    st.warning(f"Delete {dataset} ({span})? Its file is removed; this cannot be undone." + used_by_note(dataset))
    c = st.columns(2)
    if c[0].button("Yes, delete it", key="data_delete_confirm", type="primary"):
        st.session_state.pop("data_delete_pending", None)
        try:
            delete_dataset(dataset)
        except (ThreadXError, OSError) as exc:
            st.error(f"Delete failed: {exc}")
        else:
            datasets_changed(f"Deleted {dataset}")
    if c[1].button("Cancel", key="data_delete_cancel"):
        st.session_state.pop("data_delete_pending", None)
        st.session_state["data_flash"] = f"Delete cancelled: {dataset} is kept."  # (the note vanished without a word)
        st.rerun()


st.title("Data")
flash = st.session_state.pop("data_flash", None)
flash_warning = st.session_state.pop("data_flash_warning", None)
with st.container():  # always there, so the tabs below keep their place (and the open tab) when it empties
    if flash:
        st.success(flash)
    if flash_warning:
        st.warning(flash_warning)

dataset = dataset_picker()
table = list_datasets()
if len(table):
    # (exchange and symbol are in the name; times to the minute, in UTC: the verdict column was
    # cut off at 1400 px behind "+00:00" seconds)
    shown, config = table_view(without_empty_problem(table).drop(columns=["path", "exchange", "symbol"]))
    for column in ("first", "last"):
        config[column] = st.column_config.DatetimeColumn(f"{column} (UTC)", format="YYYY-MM-DD HH:mm")
    st.dataframe(shown, width="stretch", hide_index=True, column_config=config)

tabs = st.tabs(["Preview", "Validation", "Import", "Download", "Resample", "Rename / delete"])
report = df = None  # an unreadable or invalid file: the page still shows why, and offers to delete it
try:
    _, report = check_ohlcv_file(resolve_dataset(dataset))
    df = load_dataset(dataset)
except ThreadXError as exc:
    problem = f"Cannot load {dataset}: {exc}"

with tabs[0]:
    if df is None or report is None:
        st.error(problem)
    else:
        st.caption(f"{label_dataset(dataset, df)}: {format_count(len(df))} bars, {df.index[0]} → {df.index[-1]}"
                   + (f"; {format_count(report.gap_count)} gap(s) shaded" if report.gap_count else ""))
        figure = charts.add_gap_marks(charts.price_figure(df, title=label_dataset(dataset, df), quote=quote_currency(dataset)), report.gaps)
        st.plotly_chart(figure, width="stretch")

with tabs[1]:
    if report is None:
        st.error(f"🔴 **RED** — {problem}")
    else:
        _show_verdict(report)
        st.code(report.summary(), language=None)

with tabs[2]:
    st.write("Parquet, Feather, CSV or JSON, compressed or not (.gz, .zip: exchange dumps as they come; freqtrade, "
             "Binance, Bybit, OKX, Kraken and ccxt layouts included; a spreadsheet: save it as CSV first). "
             "Validated before it is saved; a name already in use is never overwritten without asking.")
    st.file_uploader("File (several: one dataset, e.g. monthly dumps)", type=UPLOAD_TYPES, key=_upload_key(),
                     accept_multiple_files=True)
    if local_only()[0]:
        st.text_input("…or a path on this machine (a pattern such as ~/dumps/BTCUSDT-1h-2024-*.zip takes several)",
                      key="data_path")
    else:  # (whoever reaches the app would read the server's files: their errors quote lines of them)
        st.caption("Importing a path on the server is off: this app is served on a network address. Upload the "
                   "file, or import it on the server with `threadx data import FILE`.")
    c = st.columns(5)  # (short labels: at 1024 px the long ones wrapped and the boxes sat at three heights)
    c[0].text_input("Exchange", value="local", key="data_exchange", help="the label the dataset is stored under")
    c[1].text_input("Symbol", key="data_symbol", placeholder="file name's",
                    help="e.g. BTC_USDT; blank: the file name's first part")
    c[2].text_input("Timeframe", key="data_timeframe", placeholder="detect",
                    help="blank: the bars' own spacing (a timeframe they do not have is refused)")
    c[3].text_input("Date format", key="data_date_format", placeholder="detect",
                    help="e.g. %d/%m/%Y; needed when dates read both day- and month-first")
    c[4].text_input("Time zone", key="data_timezone", placeholder="UTC",
                    help="of times written without one (local exports), e.g. Europe/Berlin; epoch numbers and "
                         "times with an offset are read as written")
    st.checkbox("Drop repeated timestamps (keep the last row of each)", key="data_dedupe",
                help="a file with a timestamp more than once is refused unless this is ticked (CLI: --dedupe)")
    if st.button("Import", key="data_import"):
        _run_import()
    done = st.session_state.pop("data_import_done", None)
    if done:
        st.success(done)
    note = st.session_state.pop("data_import_note", None)
    if note:
        st.info(note)
    if st.session_state.get("data_collision"):
        _collision_choice(st.session_state["data_collision"])

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
            result = fetch_ohlcv(exchange, symbol, timeframe, since=since.strip() or None,  # empty: the default span
                                 progress=progress, max_retries=2)
        except ThreadXError as exc:
            st.error(f"Download failed: {exc}. No network? Files already on disk are unchanged.")
        else:
            datasets_changed(f"{result.new_bars:,} new bars, {result.total_bars:,} stored in {result.path}",
                             select=dataset_name(result.path))

with tabs[4]:
    c = st.columns(3, vertical_alignment="bottom")
    coarser = _coarser_timeframes(dataset)  # (the same or a finer one: a copy, or bars the data does not hold)
    target_tf = c[0].selectbox("Resample to", coarser, key="resample_tf")
    replace = c[1].checkbox("Replace an existing dataset", key="resample_replace")
    if not coarser:
        st.info(f"No coarser timeframe of {', '.join(RESAMPLE_TIMEFRAMES)} is a whole number of {dataset}'s bars: "
                "resample it with `threadx data resample NAME --to TIMEFRAME`.")
    elif c[2].button("Resample", key="resample_go"):
        try:
            target = resampled_path(dataset, target_tf)
            taken = existing_dataset(target)
            if taken is not None and not replace:
                raise ThreadXError(f"{taken.describe()}; tick 'Replace an existing dataset' to overwrite it")
            frame = load_resampled(dataset, target_tf)
            write_ohlcv(frame, target)
        except (ThreadXError, ValueError) as exc:
            st.error(f"Resample failed: {exc}")
        else:
            datasets_changed(f"Wrote {len(frame):,} complete {target_tf} bars to {dataset_name(target)}",
                             select=dataset_name(target))

with tabs[5]:
    _rename_delete(dataset, table)
