"""Read OHLCV files of any supported format into the canonical frame, write them atomically, load datasets.

Formats: Parquet, Feather, CSV and JSON, compressed or not, in the layouts exchanges and
tools write (:mod:`threadx.data.readers` reads the columns as written; this module finds
the time and OHLCV among them). freqtrade's layout
(``user_data/data/<exchange>/<PAIR>-<tf>.feather|json``) reads as is.

:func:`read_ohlcv_file` only converts: rows stay in file order, nothing is sorted,
deduplicated or repaired; :func:`~threadx.data.validate.validate_ohlcv` reports
problems and :func:`load_ohlcv` decides what to do with them.
"""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from threadx import logs
from threadx.errors import DataError, ParamError, ThreadXError, os_reason
from threadx.files import remove_dead_temps, temp_beside
from threadx.filestamp import file_stamp
from threadx.data.bars import as_bars
from threadx.data.readers import (ACCEPTED, METADATA_KEY, OHLCV_COLUMNS, TIME_COLUMNS, clock_text, file_format,
                                  read_raw)

_log = logging.getLogger("threadx.data")
ASSUMED_UTC = "UTC (assumed)"  # attrs["naive_times"] of zone-less times read as UTC, no zone given
# a time text that names its zone: an offset or Z after the clock, or a UTC/GMT word
_ZONED = re.compile(r"\d:\d{2}(:\d{2}(\.\d+)?)?\s*(Z|[+-]\d{2}(:?\d{2})?)$|\b(UTC|GMT)\b", re.IGNORECASE)
# a volume column named with its currency code ("Volume BTC"), never an indicator's ("Volume MA")
_VOLUME_IN = re.compile(r"[Vv]olume[ _](?!S?MA$|EMA$|WMA$)[A-Z][A-Z0-9]{1,9}")

# Epoch magnitude thresholds: below 1e11 seconds (until year 5138), below 1e14 ms, below 1e17 us, else ns.
_EPOCH_UNITS = ((1e11, 1_000_000_000), (1e14, 1_000_000), (1e17, 1_000), (float("inf"), 1))
_EPOCH_NAMES = ("seconds", "milliseconds", "microseconds", "nanoseconds")
_UNNAMED = re.compile(r"(Unnamed: 0)?")  # pandas' name for a header cell left empty (default to_csv index)


def read_ohlcv_file(
    path: str | os.PathLike | Sequence[str | os.PathLike], *, date_format: str | None = None,
    dayfirst: bool | None = None, timezone: str | None = None,
) -> pd.DataFrame:
    """Read an OHLCV file (or several, one after the other) into a frame indexed by a UTC
    ``timestamp`` DatetimeIndex (file order kept).

    A zip archive of several data files (monthly dumps) reads as their rows one after the other
    (:mod:`threadx.data.readers` says what else reads: compression, encodings, layouts).
    Columns ``open, high, low, close, volume`` as float64, found case-insensitively. The time is
    taken from a ``timestamp|date|time|open_time|datetime`` column, a DatetimeIndex, or an unnamed
    first column of dates (pandas' default ``to_csv``). Numeric epochs are read as seconds,
    milliseconds, microseconds or nanoseconds by their magnitude (a column mixing units is
    refused); datetimes without a zone in ``timezone`` (an IANA name such as ``Europe/Berlin``;
    a repeated hour when clocks go back is told apart by its order), else as UTC, which
    ``attrs["naive_times"]`` records (date text mixing zoned and zone-less times without
    ``timezone`` is refused). Date text is read as ISO 8601, else with ``date_format``
    (strftime codes), else in the one day/month order that reads every value: a column that reads
    both day-first and month-first (``03/04/2024``) is refused unless ``date_format`` or
    ``dayfirst`` says which. Raises DataError (one line naming the file) if the file is missing,
    a folder, of an unknown format, unreadable, lacks a column, or has non-numeric values.
    """
    check_timezone(timezone)
    files = several_files(path)
    if files is not None:  # several files (monthly dumps): their rows one after the other
        return _read_files(files, date_format, dayfirst, timezone)
    path = Path(path).expanduser()
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a data file (accepted: {ACCEPTED})")
    if not path.exists():
        raise DataError(f"{path}: file not found")
    fmt = file_format(path)
    if fmt is None and path.suffix.lower() in (".xlsx", ".xlsm", ".xls", ".ods"):
        raise DataError(f"{path}: a spreadsheet workbook: save it as CSV (accepted: {ACCEPTED})")
    if fmt is None and path.suffix.lower() in (".gz", ".gzip"):  # (its own list said .gz was accepted)
        raise DataError(f"{path}: a compressed file whose name does not say what it holds: name it for the "
                        f"format inside, e.g. {path.stem}.csv.gz (accepted: {ACCEPTED})")
    if fmt is None:
        raise DataError(f"{path}: unknown file format {path.suffix!r} (accepted: {ACCEPTED})")
    try:
        parts = read_raw(path)
    except ThreadXError:  # (a DataError, or the ParamError of an archive of several markets)
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure is a data problem for the user
        raise DataError(f"{path}: cannot read {fmt} content ({type(exc).__name__}: {_first_line(exc)})") from exc
    frames = []
    for name, raw, meta in parts:  # (several: the data files of an archive, in name order)
        where = path if len(parts) == 1 else Path(f"{path}:{name}")
        frames.append(_to_canonical(raw, where, date_format, dayfirst, timezone))
    joined = frames[0] if len(frames) == 1 else _joined(frames)
    if len(frames) > 1:  # (an archive of several monthly files: each one's bars checked as those of several files)
        _check_each_spacing([(f"{path}:{name}", f) for (name, _, _), f in zip(parts, frames)], joined, path)
    df = _open_times(joined)
    meta = parts[0][2]
    df.attrs["source"] = str(path)
    if meta.get("synthetic"):
        df.attrs["synthetic"] = True
    return df


def _open_times(df: pd.DataFrame) -> pd.DataFrame:
    """Bars stamped with their close time (1 ms or 1 s before the next bar opens: Binance's
    ``close_time``, 00:59:59.999 for the 00:00 bar) moved to their open time, which every
    ThreadX bar carries; ``attrs["close_times"]`` says so. Other frames as they are."""
    from threadx.data.grid import grid_origin_ns, timeframe_ns
    from threadx.data.timeframe import spacing_timeframe

    t = df.index.asi8
    gaps = np.diff(np.sort(t[:64]))  # (sorted: a file written newest first has only negative gaps)
    gaps = gaps[gaps > 0]
    if len(t) < 3 or not len(gaps):
        return df
    step = int(np.median(gaps))  # (from the first rows: every row is checked below)
    tf = spacing_timeframe(step)
    if tf is None or timeframe_ns(tf) != step:
        return df
    origin = grid_origin_ns(tf)
    if (t[0] - origin) % step == 0 or ((t - origin) % step == 0).any():  # (opening times: the first test decides)
        return df
    for lag in (1_000_000, 1_000_000_000):  # 1 ms, 1 s
        if step > lag and bool(((t + lag - origin) % step == 0).all()):
            out = df.copy()
            out.index = pd.DatetimeIndex(t + lag - step, tz="UTC", name="timestamp").as_unit("ns")
            out.attrs.update(df.attrs, close_times=f"{lag // 1_000_000} ms" if lag < 10**9 else "1 s")
            return out
    return df


def several_files(source: Any) -> list[Path] | None:
    """The paths of ``source`` when it names several files (a list of paths, monthly dumps
    say; ``~`` expanded), None when it is one path or a dataset name.

    >>> several_files("BTC_USDT-1h.csv"), [p.name for p in several_files(["a.csv", "b.csv"])]
    (None, ['a.csv', 'b.csv'])
    """
    if isinstance(source, (str, os.PathLike)):
        return None
    return [Path(p).expanduser() for p in source]


def _read_files(paths: list[Path], date_format: str | None, dayfirst: bool | None,
                timezone: str | None) -> pd.DataFrame:
    """:func:`read_ohlcv_file` of several files, their rows one after the other (each file in its
    own epoch unit: Binance's dumps change from ms to us in 2025)."""
    if not paths:
        raise DataError("no data file given")
    frames = [read_ohlcv_file(p, date_format=date_format, dayfirst=dayfirst, timezone=timezone) for p in paths]
    df = _joined(frames)
    _check_each_spacing([(str(p), f) for p, f in zip(paths, frames)], df, paths[0])
    df.attrs["source"] = ", ".join(str(p) for p in paths)
    spans = sorted((f.index.min(), f.index.max(), p.name) for f, p in zip(frames, paths) if len(f))
    overlaps = [f"{a[2]} and {b[2]}" for a, b in zip(spans, spans[1:]) if b[0] <= a[1]]
    if overlaps:  # (said with the duplicates they make: "744 duplicate timestamps" blamed no file)
        df.attrs["overlaps"] = overlaps
    return df


def _check_each_spacing(files: list[tuple[str, pd.DataFrame]], joined: pd.DataFrame, first: Path) -> None:
    """DataError naming the first of several files (or an archive's members) read as one dataset
    whose bars are mostly spaced otherwise than the dataset's timeframe: the one its first file's
    name says, else the most common spacing of them all (a month of 4h bars among 1h monthly dumps
    was stored as 1h bars with only gaps to show; the spacing check of the whole series let it pass)."""
    from threadx.data.catalog import name_timeframe
    from threadx.data.timeframe import bar_spacing_ns, infer_timeframe, spacing_disagreement

    def sorted_index(frame: pd.DataFrame) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(np.sort(frame.index.as_unit("ns").asi8).view("M8[ns]"))

    named = name_timeframe(first)
    timeframe = named or infer_timeframe(sorted_index(joined))
    if timeframe is None:
        return
    told = "as the file names say" if named else "as most bars of the files are"
    for name, frame in files:
        why = spacing_disagreement(bar_spacing_ns(sorted_index(frame)), timeframe) if len(frame) > 2 else None
        if why:
            raise DataError(f"{name}: {why} {told}: one dataset holds one timeframe; leave this file out or "
                            "import it apart")


def _joined(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Frames read from several files (or an archive's members), their rows one after the other,
    with the first of each reading note they carry (concat keeps no attrs when the frames' differ)."""
    df = pd.concat(frames)
    for key in ("naive_times", "close_times", "synthetic"):
        found = [f.attrs[key] for f in frames if f.attrs.get(key)]
        if found:
            df.attrs[key] = found[0]
    return df


def write_ohlcv(df: pd.DataFrame, path: str | os.PathLike, overwrite: bool = True) -> Path:
    """Write a canonical frame to Parquet atomically (temp file in the same folder, then rename).

    The file has a ``timestamp`` column (UTC) and the five OHLCV columns; ``attrs["synthetic"]``
    and ``attrs["timeframe"]`` are kept in the file's metadata. A failure leaves any existing
    file at ``path`` untouched and no temp file behind; an OS failure (disk full, no permission)
    raises one DataError.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path).expanduser()
    missing = [c for c in OHLCV_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"cannot write {path}: frame lacks columns {missing}")
    if isinstance(df.index, pd.DatetimeIndex):
        index = df.index
    elif "timestamp" in df.columns:
        index = pd.DatetimeIndex(df["timestamp"])
    else:
        raise DataError(f"cannot write {path}: frame has no DatetimeIndex or timestamp column")
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    arrays = {"timestamp": pa.array(index.as_unit("ns").asi8, type=pa.timestamp("ns", tz="UTC"))}
    for col in OHLCV_COLUMNS:
        arrays[col] = pa.array(np.asarray(df[col].to_numpy(dtype=np.float64)), type=pa.float64())
    info = {"synthetic": bool(df.attrs.get("synthetic", False)), "timeframe": df.attrs.get("timeframe")}
    table = pa.table(arrays).replace_schema_metadata({METADATA_KEY: json.dumps(info, sort_keys=True).encode()})
    replace_atomically(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"), overwrite=overwrite)
    return path


def replace_atomically(path: Path, write: Callable[[Path], Any], overwrite: bool = True) -> None:
    """Make ``path`` by ``write(tmp)`` into a temporary file beside it, synced and renamed over
    ``path``: readers see the old file or the new one, never a half-written one. DataError
    (nothing changed) when the disk refuses. ``overwrite=False``: FileExistsError (nothing
    changed) when ``path`` exists by then, even when another process made it a moment before
    (two imports onto one free name both said "imported", the first one's data gone)."""
    tmp = temp_beside(path)
    taken = False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_dead_temps(path)  # (a write killed before this one left its temp)
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                _link_new(tmp, path)
            except FileExistsError:
                taken = True
    except BaseException as exc:
        with contextlib.suppress(OSError):  # (a folder that is a file: its error, not the clean-up's)
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            folder = next((f for f in reversed(path.parents) if f.exists() and not f.is_dir()), None)
            why = f"{folder} is a file, not a folder" if folder is not None else os_reason(exc)
            raise DataError(f"cannot write {path}: {why}; nothing was changed") from exc
        raise
    if taken:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise FileExistsError(errno.EEXIST, "made meanwhile by another writer", str(path))


def _link_new(tmp: Path, path: Path) -> None:
    """Give ``tmp`` the name ``path`` unless that exists (FileExistsError): a hard link, which
    fails on an existing name in one step; where the file system has none, the name is claimed
    empty first (``O_EXCL``), then replaced."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:  # no hard links here (some network and FAT file systems)
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        os.replace(tmp, path)
    else:
        tmp.unlink()


def load_ohlcv(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    timeframe: str | None = None,
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
    *,
    data_root: str | os.PathLike | None = None,
    dedupe: bool = False,
    with_report: bool = False,
    date_format: str | None = None,
    dayfirst: bool | None = None,
    timezone: str | None = None,
) -> pd.DataFrame | tuple[pd.DataFrame, Any]:
    """Load a dataset as the canonical frame: read, validate, sort, resample, slice.

    ``source`` is a file path, a dataset name (``binance/BTC_USDT-1h``, ``BTC_USDT-1h``,
    ``sample:BTC_USDT-1h``; see :func:`~threadx.data.catalog.resolve_dataset`), or a list of
    file paths read as one series (monthly dumps). Validation errors
    raise DataError; unsorted rows are sorted (with a warning); ``dedupe=True`` keeps the last
    row of each duplicated timestamp instead of failing. ``timeframe`` coarser than the native
    one resamples (complete bins only); finer raises DataError. ``start`` (inclusive) and ``end``
    (exclusive) are UTC and applied before resampling, so no bin uses data at or after ``end``.
    ``date_format`` / ``dayfirst`` / ``timezone``: how to read date text (see :func:`read_ohlcv_file`).
    ``attrs``: timeframe, name, synthetic, source, quality, warnings. ``with_report=True`` returns
    ``(frame, ValidationReport)``.
    """
    from threadx.data.catalog import name_timeframe, resolve_dataset
    from threadx.data.timeframe import timeframe_seconds

    if timeframe is not None:
        timeframe_seconds(timeframe)  # an unknown timeframe fails before any reading
    files = several_files(source)
    several = files is not None
    files = files if several else [resolve_dataset(source, data_root=data_root)]
    for file in files if several else ():
        if not file.is_file():
            raise DataError(f"{file}: file not found" if not file.exists() else f"{file}: not a data file")
    path = files[0]
    from_name = not several and not Path(str(source)).expanduser().is_file()
    df, report = check_ohlcv_file(files, dedupe=dedupe, date_format=date_format, dayfirst=dayfirst, timezone=timezone)
    synthetic = bool(df.attrs.get("synthetic")) or path.parent.name == "synthetic" or str(source).startswith("sample:")
    if not report.usable:
        raise DataError(f"{path}: invalid data: {report.first_errors()}")
    if report.low_quality:  # valid but sparse bars: a backtest may use them, an import refuses them
        _log.warning("%s: %s", path.name, report.first_errors())
    for warning in report.warnings:  # (debug: every load of a dataset repeats them; the report holds them)
        _log.debug("%s: %s", path.name, warning)

    time_ns = df.index.asi8
    if len(time_ns) > 1 and not bool(np.all(time_ns[1:] >= time_ns[:-1])):
        df = df.iloc[np.argsort(time_ns, kind="stable")]
    if report.duplicates:
        df = df[~df.index.duplicated(keep="last")]
    native = report.timeframe or name_timeframe(path)

    if start is not None or end is not None:
        mask = np.ones(len(df), dtype=bool)
        if start is not None:
            mask &= df.index >= as_utc(start)
        if end is not None:
            mask &= df.index < as_utc(end)
        df = df[mask]
    if timeframe is not None and native is not None and timeframe != native:
        df = _resampled(df, native, timeframe, path.name)
    sparse = _sparse_note(report)
    df.attrs.clear()
    df.attrs.update(
        {
            "timeframe": timeframe or native,
            "name": f"{path.parent.name}/{path.stem}" if from_name else path.stem,
            "synthetic": synthetic,
            "source": str(path),
            "quality": report.quality,
            "warnings": list(report.warnings) + (list(report.errors) if report.low_quality else []) + sparse,
            "sparse_note": next(iter(sparse), None),  # (pages say it beside the Sharpe they show)
            "logged": list(report.errors) if report.low_quality else [],  # (said by the log as it loaded)
        }
    )
    df.attrs["fingerprint"] = as_bars(df).fingerprint  # (a copy edited in memory keeps the attrs, not this)
    return (df, report) if with_report else df


def _resampled(df: pd.DataFrame, native: str, timeframe: str, name: str) -> pd.DataFrame:
    """``df``'s ``native`` bars as ``timeframe`` bars (:func:`resample_ohlcv`); DataError naming
    ``name`` when ``timeframe`` is finer, or when no complete bar comes out."""
    from threadx.data.resample import resample_ohlcv
    from threadx.data.timeframe import timeframe_seconds

    if timeframe_seconds(timeframe) < timeframe_seconds(native):
        raise DataError(f"{name}: cannot load {timeframe} bars from {native} data (finer than the data)")
    df.attrs["timeframe"] = native
    bars = len(df)
    out = resample_ohlcv(df, timeframe)
    if bars and out.empty:  # (written as a dataset of no bars, or "no bars" later with no why)
        raise DataError(f"{name}: no complete {timeframe} bar in its {bars:,} {native} bars (a {timeframe} "
                        f"bar is made only when every {native} bar of it is there)")
    return out


SPARSE_SHARE = 0.8  # data holding fewer of the bars its span has room for is said to annualise as if it held all


def _sparse_note(report: Any) -> list[str]:
    """A note for data that holds well under the bars its span has room for (a stock's hours,
    long gaps): Sharpe and volatility annualise with every bar there, as crypto trades (session
    data of 7 bars a weekday read a Sharpe of 0.96 for 0.44, unsaid)."""
    held, room = int(report.bars or 0), int(report.expected_bars or 0)
    if not held or not room or held >= SPARSE_SHARE * room:
        return []
    return [f"the data holds {held:,} of the {room:,} bars its span has room for ({held / room:.0%}): Sharpe and "
            "volatility annualise as if every bar were there (round the clock, as crypto trades), so on data in "
            f"sessions they read up to x{math.sqrt(room / held):.2f} too high; CAGR counts the time"]


def load_resampled(source: str | os.PathLike, timeframe: str) -> pd.DataFrame:
    """``source`` resampled to ``timeframe`` as a dataset to store: DataError, naming both,
    when ``timeframe`` is not a coarser multiple of the source's own (``resample_problem``), or when
    validation refuses the bars (a single bar; a volume summed past float64's range), as an import
    would refuse them."""
    from threadx.data.catalog import name_timeframe, resolve_dataset
    from threadx.data.timeframe import resample_problem, timeframe_seconds
    from threadx.data.validate import validate_ohlcv

    def refuse_unless_coarser(native: str | None) -> None:
        problem = resample_problem(native, timeframe) if native else None
        if problem:  # (the same: a copy under its own name, or a Parquet beside the CSV it was read from)
            raise DataError(f"{source} {problem}" if problem.startswith("holds") else f"{source}: {problem}")

    timeframe_seconds(timeframe)  # (an unknown timeframe fails before any reading)
    refuse_unless_coarser(name_timeframe(resolve_dataset(source)))  # (before reading, when the name says it)
    native = load_ohlcv(source)  # read once: a name without a timeframe learns it from the bars
    if not native.attrs.get("timeframe"):
        raise DataError(f"{source}: its bars' timeframe is unknown (too few bars, or spaced unevenly): nothing to "
                        "resample from")
    refuse_unless_coarser(native.attrs["timeframe"])
    df = _resampled(native, native.attrs["timeframe"], timeframe, Path(native.attrs["source"]).name)
    df.attrs["fingerprint"] = as_bars(df).fingerprint
    report = validate_ohlcv(df, timeframe)
    if not report.ok:
        raise DataError(f"{source} resampled to {timeframe}: not written: {report.first_errors()}")
    return df


def check_ohlcv_file(
    path: str | os.PathLike | Sequence[str | os.PathLike],
    timeframe: str | None = None,
    *,
    dedupe: bool = False,
    date_format: str | None = None,
    dayfirst: bool | None = None,
    timezone: str | None = None,
) -> tuple[pd.DataFrame, Any]:
    """Read a file and validate it: ``(frame, ValidationReport)``, the frame unsorted as read.

    The bars are checked against ``timeframe``, else the one the file name carries
    (``BTC_USDT-1h.csv``), else their own spacing. The report is reused while the file's
    (mtime, size) and these arguments are unchanged. Several paths: their rows together.
    """
    from threadx.data.catalog import name_timeframe
    from threadx.data.validate import validate_ohlcv

    paths = several_files(path) or [Path(path).expanduser()]
    df = read_ohlcv_file(paths[0] if len(paths) == 1 else paths, date_format=date_format, dayfirst=dayfirst,
                         timezone=timezone)
    expected = timeframe or name_timeframe(paths[0])
    options = (expected, dedupe, date_format, dayfirst, timezone)

    def report() -> Any:
        rep = validate_ohlcv(df, expected, dedupe=dedupe)
        if df.attrs.get("close_times"):
            rep.warnings.append(f"times were the bars' close times ({df.attrs['close_times']} before the next bar "
                                "opens, as Binance's close_time): read as their open times, one bar earlier")
        if df.attrs.get("overlaps"):
            where = f"; the files {', '.join(df.attrs['overlaps'])} overlap (one given twice?)"
            rep.errors = [e + (where if "duplicate timestamp" in e else "") for e in rep.errors]
            rep.warnings = [w + (where if "duplicate timestamp" in w else "") for w in rep.warnings]
        if df.attrs.get("naive_times") == ASSUMED_UTC:  # (a local-time file read as UTC: every bar hours off)
            # (where a zone can be given: the commands that run a file take none, so the advice is the import)
            rep.warnings.append("times carry no zone: read as UTC (if they are local times, import the file with "
                                "their zone: threadx data import --timezone ZONE, the import form's 'Time zone', or "
                                "load_ohlcv(..., timezone=...))")
            rep.errors = [e + ("; or local times repeating an hour when clocks go back: import the file with their "
                               "zone (threadx data import --timezone ZONE)" if "duplicate timestamp" in e else "")
                          for e in rep.errors]
        return rep

    return df, _cached_report(paths, options, report)


def import_ohlcv(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    exchange: str = "local",
    symbol: str | None = None,
    timeframe: str | None = None,
    *,
    dedupe: bool = False,
    date_format: str | None = None,
    dayfirst: bool | None = None,
    timezone: str | None = None,
    data_root: str | os.PathLike | None = None,
    label: str | None = None,
    replace: bool = False,
) -> tuple[pd.DataFrame, Path]:
    """Validate a file and store it as the dataset ``<exchange>/<symbol>-<timeframe>[-<label>]``: ``(frame, path)``.

    ``symbol`` defaults to the file name's first part (``BTC_USDT-1h.csv`` -> ``BTC_USDT``),
    ``timeframe`` to the bars' own spacing; a ``timeframe`` the bars do not have is refused. A
    file whose validation report has errors is refused (DataError listing the first ones) and
    nothing is written; the write itself is atomic (:func:`write_ohlcv`). A dataset of that
    name already stored raises :class:`~threadx.data.catalog.DatasetExists` (range and bars of
    the existing one) unless ``replace=True``; a ``label`` keeps both. Several files (monthly
    dumps, ``BTCUSDT-1h-2024-01.zip`` ...) make one dataset, named from the first without the
    label its name carries (it names one month).
    """
    from threadx.data.catalog import dataset_path, existing_dataset, refuse_sample_label
    from threadx.data.timeframe import timeframe_seconds

    files = several_files(source)
    several = files is not None
    if several:
        source = [str(p) for p in files]
        if len(source) == 1:
            source, several = source[0], False
    first = Path(source[0] if several else str(source))
    if several:
        from threadx.data.catalog import check_one_market

        check_one_market(source)
    shown = f"{first} (and {len(source) - 1} more)" if several else source  # (said in errors)

    with logs.muted():  # (load_ohlcv's warning of sparse bars: the import refuses them, in one error)
        df, report = load_ohlcv(source, dedupe=dedupe, date_format=date_format, dayfirst=dayfirst,
                                timezone=timezone, data_root=data_root, with_report=True)
    if not report.ok:  # sparse bars a backtest may read are still not imported
        raise DataError(f"{shown}: not imported: {report.first_errors()}")
    native = df.attrs.get("timeframe")
    if timeframe and native and timeframe_seconds(timeframe) != timeframe_seconds(native):
        raise DataError(f"{shown}: the bars are {native} apart, not {timeframe}; leave the timeframe out "
                        "or resample the dataset after importing it")
    if not (timeframe or native):
        raise DataError(f"{shown}: cannot tell the timeframe of a single bar; give one")
    if label is None and not several:  # the file name's own label (BTC_USDT-1h-2017-2020.parquet: "2017-2020")
        label = file_label(first.name)
    try:
        target = dataset_path(exchange, symbol or first.stem.split("-")[0], timeframe or native, data_root, label)
    except ParamError as exc:
        if symbol or "symbol" not in str(exc):
            raise
        raise ParamError(f"{exc} (taken from the file name {first.name!r}): give the symbol (symbol=..., --symbol, "
                        "the import form's Symbol)") from None
    refuse_sample_label(target.parent.name, shown)
    taken = existing_dataset(target)
    if taken is not None and not replace:
        taken.incoming = (df.index[0], df.index[-1], len(df))
        raise taken
    try:
        write_ohlcv(df, target, overwrite=replace)
    except FileExistsError:  # another import made it since the check above
        taken = existing_dataset(target)
        if taken is None:
            raise
        taken.incoming = (df.index[0], df.index[-1], len(df))
        raise taken from None
    if taken is not None and taken.path != target:  # the replaced dataset was a CSV/Feather/JSON file
        taken.path.unlink(missing_ok=True)
    return df, target


# --------------------------------------------------------------------------------- helpers

_LABELLED = re.compile(r"[A-Za-z0-9]+(?:_[A-Za-z0-9]+)*-\d+[smhdw]-(?P<label>.+)", re.DOTALL)  # SYMBOL-tf-anything


def file_label(file_name: str) -> str | None:
    """The label of a file named as a dataset (``BTC_USDT-1h-2017-2020.csv.gz`` -> ``2017-2020``), else None;
    ParamError naming the file when what follows its timeframe is no valid label (``BTC_USDT-1h-2017 2020.csv``,
    ``BTC_USDT-1h-été.csv``: dropped without a word, the file was stored under the bare name), as a label too
    long is refused. A browser's copy mark (``BTC_USDT-1h (1).csv``) is no label.

    >>> file_label("BTC_USDT-1h-2017-2020.parquet"), file_label("BTC_USDT-1h.csv.gz"), file_label("prices.csv")
    ('2017-2020', None, None)
    >>> file_label("BTC_USDT-1h-v1.5.csv.gz"), file_label("BTC_USDT-1h (1).csv")
    ('v1.5', None)
    """
    from threadx.data.catalog import file_stem, parse_label
    from threadx.names import NAME, check_name

    stem = re.sub(r" \(\d+\)$", "", file_stem(Path(file_name).name))  # (a label may hold dots: v1.5)
    label = parse_label(stem)
    written = _LABELLED.fullmatch(stem)
    if label is None and written is not None and not NAME.fullmatch(written.group("label")):
        label = written.group("label")  # (not a label: said below, not dropped)
    if label is None:
        return None
    try:
        return check_name(label, "dataset label", NAME)
    except ParamError as exc:
        raise ParamError(f"{exc} (taken from the file name {Path(file_name).name!r}): rename the file, or give a "
                         "label (--label NAME, label=...)") from None

_REPORTS: dict[tuple, Any] = {}
_REPORTS_MAX = 64


def _cached_report(paths: list[Path], options: tuple, compute: Any) -> Any:
    """Validation report of files, reused while their stamps (:func:`~threadx.filestamp.file_stamp`)
    and the options are unchanged."""
    try:
        key = (tuple((str(p.resolve()), file_stamp(p)) for p in paths), options)
    except OSError:
        return compute()
    report = _REPORTS.get(key)
    if report is None:
        report = compute()
        if len(_REPORTS) >= _REPORTS_MAX:
            _REPORTS.pop(next(iter(_REPORTS)))
        _REPORTS[key] = report
    return report


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no details"


def as_utc(value: str | pd.Timestamp | Any) -> pd.Timestamp:
    """``value`` (a time text or Timestamp) in UTC; a naive one is read as UTC (as start and end are)."""
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _to_canonical(raw: pd.DataFrame, path: Path, date_format: str | None, dayfirst: bool | None,
                  timezone: str | None = None) -> pd.DataFrame:
    """Find the time and OHLCV columns (any case), convert to UTC index and float64 columns."""
    lower: dict[str, Any] = {}
    same: dict[str, list[Any]] = {}
    for col in raw.columns:
        key = str(col).strip().lower()
        lower.setdefault(key, col)
        same.setdefault(key, []).append(col)
    ambiguous = [names for key, names in same.items() if len(names) > 1 and key in (*OHLCV_COLUMNS, *TIME_COLUMNS)]
    if ambiguous:
        raise DataError(f"{path}: ambiguous columns {', '.join(map(str, ambiguous[0]))} (the same name in another "
                        "case or spacing): keep one")
    if "volume" not in lower:  # "Volume BTC, Volume USDT" (CryptoDataDownload): the first, the base's
        currency = [c for c in raw.columns if _VOLUME_IN.fullmatch(str(c).strip())]
        if currency:
            lower["volume"] = currency[0]
    sources = _time_sources(raw, lower)
    time_values = sources[0][1] if sources else _unnamed_dates(raw)
    if time_values is None:
        raise DataError(
            f"{path}: no time column (expected one of {', '.join(TIME_COLUMNS)}, a datetime index "
            f"or an unnamed first column of dates; found {_column_names(raw)})"
        )
    missing = [c for c in OHLCV_COLUMNS if c not in lower]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (found {_column_names(raw)})")
    index, naive = _to_utc_index(time_values, path, date_format, dayfirst, timezone)
    _check_time_sources(sources, index, path, timezone)
    data = {c: _to_float(raw[lower[c]], c, path) for c in OHLCV_COLUMNS}
    frame = pd.DataFrame(data, index=index, copy=True)  # owned, writable columns: the caller may edit them
    if naive:
        frame.attrs["naive_times"] = timezone or ASSUMED_UTC
    return frame


def _column_names(raw: pd.DataFrame, most: int = 20) -> str:
    """The frame's column names for a message, the first ``most`` of them and a count of the rest."""
    names = [str(c) for c in raw.columns[:most]]
    more = f" and {len(raw.columns) - most:,} more" if len(raw.columns) > most else ""
    return (", ".join(names) or "none") + more


def _time_sources(raw: pd.DataFrame, lower: dict[str, Any]) -> list[tuple[str, Any]]:
    """(what, values) of each time source of ``raw``, the one read first: the named time columns
    (a ``date`` and a ``time`` of day as one), then a datetime (or time-named) index. With none,
    the times are an unnamed first column of dates (:func:`_unnamed_dates`)."""
    out: list[tuple[str, Any]] = []
    names = list(TIME_COLUMNS)
    if "date" in lower and "time" in lower and clock_text(raw[lower["time"]]):
        out.append((f"{lower['date']} + {lower['time']}", raw[lower["date"]].astype(str).str.strip() + " "
                    + raw[lower["time"]].astype(str).str.strip()))
        names = [n for n in names if n not in ("date", "time")]
    out += [(f"column {lower[name]}", raw[lower[name]]) for name in names if name in lower]
    if isinstance(raw.index, pd.DatetimeIndex):
        out.append(("the index", raw.index))
    elif raw.index.name is not None and str(raw.index.name).strip().lower() in TIME_COLUMNS:
        out.append((f"the index {raw.index.name}", raw.index.to_series()))
    return out


def _check_time_sources(sources: list[tuple[str, Any]], index: pd.DatetimeIndex, path: Path,
                        timezone: str | None) -> None:
    """DataError when another of a file's time ``sources`` (:func:`_time_sources`) reads as other
    times than ``index``, read from the first: a ``timestamp`` index and a column a day later, or
    a ``date`` a year off its ``unix``, imported the one without a word. One that does not read
    as times at all (an ISO week, a label) is no time source."""
    for what, values in sources[1:]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                other, _ = _to_utc_index(values, path, None, None, timezone)
        except (DataError, ValueError, TypeError, OverflowError):
            continue
        if len(other) != len(index) or (other.asi8 == index.floor("D").asi8).all():
            continue  # (a date column of the bars' days beside their times: the same times)
        differ = np.flatnonzero(other.asi8 != index.asi8)
        if len(differ):
            k = int(differ[0])
            raise DataError(f"{path}: the times of {sources[0][0]} and of {what} differ ({len(differ):,} rows; "
                            f"row {k}: {index[k]:%Y-%m-%d %H:%M} against {other[k]:%Y-%m-%d %H:%M} UTC): keep the one "
                            "that holds the bars' times, drop the other")


def _unnamed_dates(raw: pd.DataFrame) -> pd.Series | None:
    """The first column when it has no name and holds date text (pandas' default ``to_csv`` index)."""
    if raw.shape[1] == 0 or not _UNNAMED.fullmatch(str(raw.columns[0]).strip()):
        return None
    column = raw.iloc[:, 0]
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        return column
    if pd.api.types.is_numeric_dtype(column.dtype):
        return None  # row numbers, not times
    sample = column.dropna().head(5).astype(str)
    parsed = pd.to_datetime(sample, errors="coerce", utc=True, format="mixed")
    return column if len(sample) and bool(parsed.notna().all()) else None


def _holds_bools(series: pd.Series) -> bool:
    """Whether an object column holds true/false values (typed in C; looked at one by one only
    when its values are of mixed types)."""
    kind = pd.api.types.infer_dtype(series, skipna=True)
    return kind == "boolean" or (kind.startswith("mixed") and any(isinstance(v, (bool, np.bool_)) for v in series))


def _to_float(series: pd.Series, name: str, path: Path) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    if pd.api.types.is_bool_dtype(series.dtype) or (series.dtype == object and _holds_bools(series)):
        raise DataError(f"{path}: column {name!r} holds true/false values, not numbers")  # (read as 1.0 / 0.0)
    converted = pd.to_numeric(series, errors="coerce")
    bad = converted.isna().to_numpy() & series.notna().to_numpy()
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{path}: column {name!r} has {int(bad.sum())} non-numeric value(s) (first at row {pos}: {series.iloc[pos]!r})"
        )
    return converted.to_numpy(dtype=np.float64, na_value=np.nan)


def _to_utc_index(values: Any, path: Path, date_format: str | None, dayfirst: bool | None,
                  timezone: str | None = None) -> tuple[pd.DatetimeIndex, bool]:
    """The times in UTC and whether they were written without a zone (read in ``timezone``, else UTC)."""
    dtype = getattr(values, "dtype", None)
    naive = False
    naive_rows = None  # date text: which rows carry no zone (those alone are read in ``timezone``)
    try:
        if dtype is not None and pd.api.types.is_datetime64_any_dtype(dtype):
            index = pd.DatetimeIndex(values)
            naive = index.tz is None
            index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
        elif dtype is not None and pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
            index = _epoch_index(np.asarray(values), path)
        else:
            series = pd.Series(np.asarray(values, dtype=object))
            numeric = pd.to_numeric(series, errors="coerce")
            if numeric.notna().sum() == series.notna().sum() and series.notna().any():
                index = _epoch_index(numeric.to_numpy(dtype=np.float64), path)
            elif numeric.notna().sum() * 2 > series.notna().sum():  # epoch numbers, and a few other values
                pos = int(np.flatnonzero((numeric.isna() & series.notna()).to_numpy())[0])
                raise DataError(f"{path}: unreadable time value {series.iloc[pos]!r} at row {pos} (the other times "
                                "are epoch numbers)")
            else:
                index = _parse_datetimes(series, path, date_format, dayfirst)
                naive_rows = _naive_rows(series)
                naive = bool(naive_rows.any())
                if naive and not timezone:
                    _refuse_mixed_zones(series, naive_rows, path)
        if naive and timezone:
            if naive_rows is None or naive_rows.all():
                index = _in_zone(index, timezone, path)
            else:  # times with an offset are read as written, the others in the zone given
                ns = index.as_unit("ns").asi8.copy()
                ns[naive_rows] = _in_zone(index[naive_rows], timezone, path).as_unit("ns").asi8
                index = pd.DatetimeIndex(ns.view("M8[ns]")).tz_localize("UTC")
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{path}: cannot read the time column ({type(exc).__name__}: {_first_line(exc)})") from exc
    if index.hasnans:
        pos = int(np.flatnonzero(index.isna())[0])
        raise DataError(f"{path}: {int(index.isna().sum())} missing or unreadable time value(s) (first at row {pos})")
    return pd.DatetimeIndex(index.as_unit("ns"), name="timestamp"), naive


def _naive_rows(series: pd.Series) -> np.ndarray:
    """Which rows of date text carry no zone (no offset, Z, UTC or GMT). Where ISO 8601 text
    is all of one kind, pandas tells it at once (0.05 s for 500,000 rows); other text, or a mix
    (offsets that change with summer time, zone-less rows among them), is read row by row
    (about 2 us a row)."""
    present = series.notna().to_numpy()
    text = series[present].astype(str)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            probe = pd.to_datetime(text, format="ISO8601")
        uniform = pd.api.types.is_datetime64_any_dtype(probe.dtype)
    except (ValueError, TypeError, OverflowError):
        uniform = False
    if uniform:  # (ISO 8601 parsing refuses the words UTC and GMT: no such row is here)
        return present & (getattr(probe.dtype, "tz", None) is None)
    return present & ~np.array([bool(_ZONED.search(str(v).strip())) for v in series], dtype=bool)


def _refuse_mixed_zones(series: pd.Series, naive_rows: np.ndarray, path: Path) -> None:
    """DataError when date text mixes times with a zone and times without one and no zone is given:
    the zone-less ones would be read as UTC beside the others read as written (Paris times with
    ``+02:00`` on half the rows: the other half stored 2 h late, zig-zagging, only amber)."""
    zoned = series.notna().to_numpy() & ~naive_rows
    if not zoned.any():
        return
    z, n = int(np.flatnonzero(zoned)[0]), int(np.flatnonzero(naive_rows)[0])
    raise DataError(f"{path}: the time column mixes times with a zone (row {z}: {series.iloc[z]!r}) and times "
                    f"without one (row {n}: {series.iloc[n]!r}; {int(naive_rows.sum()):,} of {int(len(series)):,}), "
                    "which would be read as UTC: give their zone (--timezone, timezone=, the import form's "
                    "'Time zone') or write every time with its offset")


def _in_zone(index: pd.DatetimeIndex, timezone: str, path: Path) -> pd.DatetimeIndex:
    """Wall-clock times (read as UTC) as the times they are in ``timezone``, in UTC; the hour a
    change to winter time repeats is told apart by the rows' order."""
    wall = index.tz_convert(None)
    try:
        return wall.tz_localize(timezone, ambiguous="infer", nonexistent="raise").tz_convert("UTC")
    except Exception as exc:  # noqa: BLE001 - pytz/zoneinfo errors: a skipped or a repeated hour
        raise DataError(f"{path}: the times do not read in {timezone} ({_first_line(exc)}): a time skipped when "
                        "clocks go forward, or a repeated hour out of order") from None


def check_timezone(timezone: str | None) -> None:
    """DataError unless ``timezone`` is None or an IANA time zone name.

    >>> check_timezone("Europe/Berlin")
    """
    if timezone is None:
        return
    from zoneinfo import ZoneInfo

    try:
        ZoneInfo(str(timezone))
    except (KeyError, ValueError, OSError):  # (ZoneInfoNotFoundError is a KeyError)
        raise DataError(f"unknown time zone {timezone!r} (an IANA name such as Europe/Berlin, America/New_York "
                        "or UTC)") from None


def _epoch_index(arr: np.ndarray, path: Path) -> pd.DatetimeIndex:
    """Epoch numbers to UTC times, the unit chosen by magnitude (s, ms, us or ns); one unit per column."""
    finite = np.isfinite(arr) if arr.dtype.kind == "f" else np.ones(len(arr), dtype=bool)
    if not finite.all():
        pos = int(np.flatnonzero(~finite)[0])
        raise DataError(f"{path}: {int((~finite).sum())} missing time value(s) (first at row {pos})")
    if len(arr) == 0:
        return pd.DatetimeIndex([], dtype="datetime64[ns, UTC]")
    limits = np.array([limit for limit, _ in _EPOCH_UNITS[:-1]])
    units = np.searchsorted(limits, np.abs(arr.astype(np.float64)), side="right")
    other = np.flatnonzero(units != units[0])
    if len(other):
        pos = int(other[0])
        raise DataError(
            f"{path}: the time column mixes epoch units (row 0 reads as {_EPOCH_NAMES[units[0]]}, row {pos} as "
            f"{_EPOCH_NAMES[units[pos]]}); write every time in one unit"
        )
    factor = _EPOCH_UNITS[int(units[0])][1]
    too_late = np.flatnonzero(np.abs(arr.astype(np.float64)) * factor >= 2.0**63)  # (would wrap round to ~1970-2262)
    if len(too_late):
        pos = int(too_late[0])
        raise DataError(f"{path}: time value {arr[pos]} (row {pos}) read as {_EPOCH_NAMES[units[0]]} is outside the "
                        "years 1677 to 2262 that ThreadX holds: a misread epoch? Write the times in one of s, ms, us "
                        "or ns since 1970")
    if arr.dtype.kind in "iu":
        ns = arr.astype(np.int64) * np.int64(factor)
    else:
        ns = np.round(arr.astype(np.float64) * factor).astype(np.int64)
    return pd.DatetimeIndex(pd.to_datetime(ns, unit="ns", utc=True))


def _parse_datetimes(series: pd.Series, path: Path, date_format: str | None, dayfirst: bool | None) -> pd.DatetimeIndex:
    """Date text to UTC times: ``date_format`` if given, else ISO 8601, else one unambiguous day/month order."""
    if date_format is not None:
        return _all_read(series, _dates(series, format=date_format), path, f" with date format {date_format!r}")
    iso = _dates(series, format="ISO8601")
    if not _unread(series, iso).any():
        return pd.DatetimeIndex(iso)
    orders = (False, True) if dayfirst is None else (bool(dayfirst),)
    sample = str(series.dropna().iloc[0]) if series.notna().any() else ""
    guessed = {first: _guess_format(sample, first) for first in orders}  # one format for the whole column
    # (pandas guesses day-first for '22/09/2024' under dayfirst=False: an order given is kept)
    guessed = {first: fmt if _day_first(fmt) in (None, first) else None for first, fmt in guessed.items()}
    laid_out = {first: _layout(sample, first) for first in orders}  # what pandas guesses not ("22.09.24 08:00")
    for formats in (guessed, laid_out):
        reading = _day_month_reading(series, formats, path)
        if reading is not None:
            return reading
    if dayfirst is not None:  # value by value, each in either order ("mixed" reads '09/22/24' month-first
        # under dayfirst=True): a column of several layouts is read only in the order given, value by value
        return _all_read(series, _in_order(series, bool(dayfirst)), path,
                         f" as a {'day' if dayfirst else 'month'}-first date (dayfirst={bool(dayfirst)})")
    mixed = {first: _dates(series, format="mixed", dayfirst=first) for first in (False, True)}
    if _unread(series, mixed[False]).any() or _unread(series, mixed[True]).any() or mixed[False].equals(mixed[True]):
        return _all_read(series, mixed[False], path, "")
    pos = int(np.flatnonzero((mixed[False] != mixed[True]).to_numpy())[0])
    raise DataError(f"{path}: the time column mixes date layouts and dates like {series.iloc[pos]!r} (row {pos}) "
                    "read day-first or month-first; say which with a date format (--date-format on the command "
                    "line, date_format= in Python) or dayfirst=True/False")


def _in_order(series: pd.Series, dayfirst: bool) -> pd.Series:
    """Each value read in the day/month order given, by the first layout (:func:`_layout`) that
    reads it; NaT where none does."""
    from datetime import datetime, timezone

    def read(text: str) -> Any:
        fmt = _layout(text, dayfirst)
        return pd.NaT if fmt is None else datetime.strptime(text.strip(), fmt).replace(tzinfo=timezone.utc)

    texts = series.where(series.isna(), series.astype(str))
    times = {text: read(text) for text in pd.unique(texts.dropna())}
    return pd.to_datetime(texts.map(times), utc=True)


def _day_month_reading(series: pd.Series, formats: dict[bool, str | None], path: Path) -> pd.DatetimeIndex | None:
    """The times when some day/month order reads every value, None when none does.

    ``formats``: the format to try for each order (``dayfirst`` -> format). DataError when
    day-first and month-first both read every value, differently.
    """
    readings = {}
    for first, fmt in formats.items():
        if fmt is not None:
            parsed = _dates(series, format=fmt, dayfirst=first)
            if not _unread(series, parsed).any():
                readings[first] = parsed
    if len(readings) == 2 and not readings[False].equals(readings[True]):
        pos = int(np.flatnonzero((readings[False] != readings[True]).to_numpy())[0])
        example = formats[True] or _day_first_format(str(series.iloc[pos]))
        raise DataError(
            f"{path}: dates like {series.iloc[pos]!r} (row {pos}) read both day-first and month-first; say which "
            f"with a date format (date_format={example!r} or dayfirst=True; --date-format on the command line)"
        )
    return pd.DatetimeIndex(next(iter(readings.values()))) if readings else None


def _layout(text: str, dayfirst: bool) -> str | None:
    """The day-first (else month-first) strftime format that reads ``text``: its separator, a
    two- or four-digit year, a clock or none; None when none does.

    >>> _layout("22.09.24 08:00", True), _layout("22.09.24 08:00", False)
    ('%d.%m.%y %H:%M', None)
    """
    day_month = "%d{sep}%m" if dayfirst else "%m{sep}%d"
    for sep in "/-.":
        for year in ("%Y", "%y"):
            for clock in ("", " %H:%M", " %H:%M:%S", " %H:%M:%S.%f", " %I:%M %p", " %I:%M:%S %p", " %I %p"):
                fmt = f"{day_month.format(sep=sep)}{sep}{year}{clock}"
                if _reads(text, fmt):
                    return fmt
    return None


def _day_first(fmt: str | None) -> bool | None:
    """Whether the strftime format ``fmt`` puts the day before the month, where the year follows
    them (None for a year first, or a format without all three: no order to choose)."""
    if fmt is None:
        return None
    at = {key: fmt.find(key) for key in ("%d", "%m")}
    year = max(fmt.find("%Y"), fmt.find("%y"))
    if min(at.values()) < 0 or year < 0 or year < min(at.values()):
        return None
    return at["%d"] < at["%m"]


def _day_first_format(text: str) -> str:
    """A day-first strftime format that reads ``text`` (:func:`_layout`), for an error's advice;
    ``%d/%m/%Y`` when none does."""
    return _layout(text, True) or "%d/%m/%Y"


def _dates(series: pd.Series, **kwargs: Any) -> pd.Series:
    return pd.to_datetime(series, utc=True, errors="coerce", **kwargs)


def _unread(series: pd.Series, parsed: pd.Series) -> np.ndarray:
    """Rows holding text that did not parse."""
    return (parsed.isna() & series.notna()).to_numpy()


def _all_read(series: pd.Series, parsed: pd.Series, path: Path, how: str) -> pd.DatetimeIndex:
    """The parsed times, or DataError naming the first value that did not read."""
    bad = _unread(series, parsed)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: unreadable time value {series.iloc[pos]!r} at row {pos}{how}")
    return pd.DatetimeIndex(parsed)


_TWELVE_HOUR_FORMATS = {  # dayfirst -> the 12-hour layouts tried when pandas guesses none
    first: [f"{date.replace('/', sep)}{clock}" for date in (("%d/%m/%Y",) if first else ("%m/%d/%Y",))
            for sep in "/-." for clock in (" %I:%M %p", " %I:%M:%S %p", " %I %p")]
    for first in (False, True)
}


def _reads(text: str, fmt: str) -> bool:
    from datetime import datetime

    try:
        datetime.strptime(text.strip(), fmt)
    except ValueError:
        return False
    return True


def _guess_format(sample: str, dayfirst: bool) -> str | None:
    """pandas' guess of a strftime format for ``sample``; never year-day-month, which nobody writes."""
    from pandas.tseries.api import guess_datetime_format

    with warnings.catch_warnings():  # pandas warns when the guess contradicts dayfirst: we try both orders
        warnings.simplefilter("ignore", UserWarning)
        fmt = guess_datetime_format(sample, dayfirst=dayfirst) if sample else None
    if fmt is None and sample:  # pandas guesses no 12-hour clock ("09/14/2024 12:00 AM")
        fmt = next((f for f in _TWELVE_HOUR_FORMATS[dayfirst] if _reads(sample, f)), None)
    if fmt and "%Y" in fmt and "%d" in fmt and "%m" in fmt and fmt.index("%Y") < fmt.index("%d") < fmt.index("%m"):
        return None
    return fmt
