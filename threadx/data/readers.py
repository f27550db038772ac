"""The columns of a data file as written, before :mod:`threadx.data.io` finds its time and OHLCV.

Files read the way exchanges and tools hand them out:

- compressed: gzip (whatever the file is named) and zip archives, as data.binance.vision
  ships its dumps; an archive of several data files (monthly dumps) gives one frame per file;
- text in UTF-8 (with or without a byte-order mark), UTF-16 with its mark, or Windows-1252;
- CSV with ``,`` ``;`` tab or ``|`` as separator, decimal commas or thousands separators, a
  header row or none (lines before the header that hold no separator, such as a web address,
  are skipped); without a header, rows are read in the exchanges' layouts (:func:`row_layout`);
- JSON rows, records, column mappings (``DataFrame.to_json`` in any orient) and API envelopes
  (``{"code": "0", "data": [...]}``, ``{"result": {"list": [...]}}``).

An Excel workbook, a binary file or compressed content that unpacks past :data:`MAX_UNPACKED`
(or a quarter of the free memory) is refused with one line.
"""
from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from threadx.data.bars import OHLCV_COLUMNS
from threadx.errors import DataError
from threadx.units import format_bytes

FORMATS = {  # (in the order a browser's file filter lists them: the common ones first)
    ".csv": "csv",
    ".zip": "zip",
    ".csv.gz": "csv",
    ".parquet": "parquet",
    ".json": "json",
    ".json.gz": "json",
    ".feather": "feather",
    ".txt": "csv",
    ".pq": "parquet",
    ".ftr": "feather",
    ".arrow": "feather",
}
TIME_COLUMNS = ("timestamp", "date", "time", "open_time", "datetime", "open time", "unix", "ts")  # first found wins
ACCEPTED = ".parquet, .feather, .csv or .json (compressed too: .gz, .zip)"  # said when a path is refused
UPLOAD_TYPES = list(dict.fromkeys(suffix.rsplit(".", 1)[-1] for suffix in FORMATS))  # a browser's filter: last suffix
METADATA_KEY = b"threadx"
MAX_UNPACKED = 2**30  # bytes a compressed file may unpack to: more is refused, not read (a zip bomb)
_GZIP = b"\x1f\x8b"
_ZIP = b"PK\x03\x04"
_EMPTY_ZIP = b"PK\x05\x06"  # an archive with no member: its end record alone
_OLE = b"\xd0\xcf\x11\xe0"  # Excel 97-2003
_ROW_NAMES = ["timestamp", *OHLCV_COLUMNS]
_NUMBER = re.compile(r"[-+]?(\d{1,3}(,\d{3})+(\.\d*)?|\d+([.,]\d*)?|[.,]\d+)([eE][-+]?\d+)?")
_THOUSANDS = re.compile(r"-?[1-9]\d{0,2}(,\d{3})+(\.\d+)?")
# what pandas reads as NaN or infinity: a value, never a header's name
_NA_TOKENS = {"nan", "-nan", "null", "none", "na", "n/a", "#n/a", "inf", "-inf", "+inf", "infinity", "-infinity"}
_CLOCK = re.compile(r"\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?")
_ENVELOPE_KEYS = ("data", "result", "list", "candles", "ohlcv", "klines", "values", "rows")


def file_format(path: str | Path) -> str | None:
    """The format name for a file name (``parquet|feather|csv|json|zip``), or None if unsupported.

    >>> file_format("BTCUSDT-1h-2024-01.zip"), file_format("x.CSV.GZ"), file_format("x.xlsx")
    ('zip', 'csv', None)
    """
    name = Path(path).name.lower()
    for suffix in sorted(FORMATS, key=len, reverse=True):
        if name.endswith(suffix):
            return FORMATS[suffix]
    return None


def read_raw(path: Path) -> list[tuple[str, pd.DataFrame, dict]]:
    """``[(name, frame, ThreadX metadata)]``: one entry, or one per data file of a zip archive
    (in name order: monthly dumps come in time order). Columns as written: a file without a
    header row gets ``timestamp, open, high, low, close, volume`` from :func:`row_layout`.
    Compressed content is unpacked within one :data:`MAX_UNPACKED` budget per file."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    budget = _Budget(path)
    if head.startswith(_ZIP) or head.startswith(_EMPTY_ZIP):
        return _zip_frames(path, budget)
    if head.startswith(_OLE):
        raise DataError(f"{path}: an Excel workbook, not a {file_format(path) or 'data'} file: save it as CSV")
    fmt = file_format(path)
    if head.startswith(_GZIP):
        return [(path.name, *_read_bytes(str(path), budget.unpack(gzip.open(path, "rb")), fmt, budget))]
    if fmt == "parquet":
        return [(path.name, *_read_parquet(path, str(path)))]
    if fmt == "feather":
        return [(path.name, _read_feather(path, str(path)), {})]
    if fmt == "json":
        check_frame_size(str(path), *_json_rows(_chunks(path)), copies=JSON_READ_COPIES)  # (before it is read)
        return [(path.name, read_json_text(decode_text(path.read_bytes(), str(path)), str(path)), {})]
    return [(path.name, read_csv_source(path, str(path)), {})]  # (pandas reads the file itself)


READ_COPIES = 4  # a frame's peak while read, parsed and checked, in copies of its cells as float64 (measured:
# a CSV of 22 million rows x 6 columns peaked at 4.2 GB)
JSON_READ_COPIES = 14  # JSON's: every value a Python object first (measured: 500,000 rows of 6 values peaked
# 338 MB over the start as a JSON list, 100 MB as CSV)


def check_frame_size(name: str, rows: int, columns: int, copies: int = READ_COPIES) -> None:
    """Refuse, before reading them, ``rows`` x ``columns`` that would not fit in half the memory
    free now (an 8 MB Parquet file can declare 300 million rows; a 0.5 MB gzip, 22 million);
    ``copies``: the peak while they are read, in copies of the cells as float64.

    >>> check_frame_size("x.parquet", 1_000, 6)
    """
    import psutil

    need = rows * max(columns, 1) * 8 * copies
    free = psutil.virtual_memory().available
    if need > free // 2:
        raise DataError(f"{name}: {rows:,} rows of {columns} columns take about {format_bytes(need)} to read, more "
                        f"than half the memory free now ({format_bytes(free)}): split it, or import it where more "
                        "memory is free")


def _text_rows(data: bytes) -> tuple[int, int]:
    """(lines, columns of the first line) of a CSV's bytes, for :func:`check_frame_size`."""
    first = data[:data.find(b"\n")] if b"\n" in data[:1_000_000] else data[:1_000_000]
    return data.count(b"\n") + 1, max(first.count(sep) for sep in (b",", b";", b"\t", b"|")) + 1


def _chunks(path: Path, size: int = 16 * 2**20) -> Any:
    """A file's bytes in chunks (counted without holding the file)."""
    with open(path, "rb") as handle:
        while chunk := handle.read(size):
            yield chunk


def _json_rows(chunks: Any) -> tuple[int, int]:
    """(rows, columns) of a JSON text, counted without parsing it, for :func:`check_frame_size`:
    its values by the commas between them, its rows by the brackets or braces that open them (a
    column mapping's rows and columns come out swapped; their product, the values, does not)."""
    commas = brackets = braces = 0
    for chunk in chunks:
        commas, brackets, braces = commas + chunk.count(b","), brackets + chunk.count(b"["), braces + chunk.count(b"{")
    rows = max(brackets, braces, 2) - 1
    return rows, max(1, round((commas + 1) / rows))


class _Budget:
    """The bytes a file's compressed content may still unpack to (:data:`MAX_UNPACKED` in all,
    nested gzip members of an archive included), read in chunks so that a bomb stops at the
    limit rather than after filling memory."""

    def __init__(self, path: Path | str) -> None:
        import psutil

        self.path = path
        # (a quarter of the memory free now at most: the frame pandas builds takes as much again)
        self.limit = self.left = min(MAX_UNPACKED, psutil.virtual_memory().available // 4)

    def unpack(self, handle: Any) -> bytes:
        # one growing buffer whose bytes getvalue() hands over (a list of chunks joined held the
        # content twice: 804 MiB of peak for 400 MiB unpacked)
        out = io.BytesIO()
        with handle:
            while chunk := handle.read(min(16 * 2**20, self.left + 1)):
                self.left -= len(chunk)
                if self.left < 0:
                    raise DataError(f"{self.path}: unpacks to more than {format_bytes(self.limit)}: split it, "
                                    "or unpack it and import the parts")
                out.write(chunk)
        return out.getvalue()


def _zip_frames(path: Path, budget: _Budget) -> list[tuple[str, pd.DataFrame, dict]]:
    """The frames of the data files of a zip archive, one member unpacked at a time (folders,
    ``__MACOSX`` and hidden files left out)."""
    with zipfile.ZipFile(path) as archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
        names = [i.filename for i in infos]
        if "[Content_Types].xml" in names or any(n.startswith("xl/") for n in names):
            raise DataError(f"{path}: an Excel workbook, not a data archive: save it as CSV")
        data = [i for i in infos if file_format(i.filename) not in (None, "zip")
                and not i.filename.startswith("__MACOSX/") and not Path(i.filename).name.startswith(".")]
        if any(not i.filename.lower().endswith(".txt") for i in data):  # a README.txt beside the data files
            data = [i for i in data if not i.filename.lower().endswith(".txt")]  # is no data ("no time column")
        if not data:
            raise DataError(f"{path}: the archive holds no data file ({', '.join(names[:5]) or 'nothing'}; "
                            f"accepted inside: .csv, .json, .parquet, .feather)")
        from threadx.data.catalog import check_one_market

        check_one_market([i.filename for i in data])  # (BTC's months and ETH's in one archive: one BTC dataset)
        if sum(i.file_size for i in data) > budget.limit:  # (as declared; the budget counts what unpacks)
            raise DataError(f"{path}: unpacks to more than {format_bytes(budget.limit)}: split it, or unpack "
                            "it and import the parts")
        return [(i.filename, *_read_bytes(f"{path}:{i.filename}", budget.unpack(archive.open(i)), None, budget))
                for i in sorted(data, key=lambda i: i.filename)]


def _read_bytes(name: str, data: bytes, fmt: str | None, budget: _Budget) -> tuple[pd.DataFrame, dict]:
    """One data file's frame from its bytes (a gzip inside an archive unpacked first)."""
    fmt = fmt if fmt not in (None, "zip") else file_format(name)
    if data.startswith(_GZIP):
        data = budget.unpack(gzip.GzipFile(fileobj=io.BytesIO(data)))
    if data.startswith(_ZIP) or data.startswith(_OLE):
        raise DataError(f"{name}: an Excel workbook or an archive inside an archive: save it as CSV")
    if fmt == "parquet":
        return _read_parquet(io.BytesIO(data), name)
    if fmt == "feather":
        return _read_feather(io.BytesIO(data), name), {}
    if fmt == "json":
        check_frame_size(name, *_json_rows([data]), copies=JSON_READ_COPIES)
        return read_json_text(decode_text(data, name), name), {}
    check_frame_size(name, *_text_rows(data))
    return read_csv_source(data, name), {}


def decode_text(data: bytes, name: str) -> str:
    """A text file's characters: UTF-8 (a byte-order mark dropped), UTF-16 with its mark, else
    Windows-1252 (the required columns are plain ASCII in every one of them).

    >>> decode_text("time;open\\n".encode("utf-16"), "x"), decode_text(b"caf\\xe9,1\\n", "x")
    ('time;open\\n', 'café,1\\n')
    """
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
    if "\x00" in text[:65536]:
        raise DataError(f"{name}: binary content, not text (an unknown format, or UTF-16 without its byte-order "
                        "mark): save it as CSV in UTF-8")
    return text


def _read_feather(source: Any, name: str) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.feather as feather

    try:  # (its footer and batches' lengths, batch by batch from a mapped file, before the frame is built)
        with pa.ipc.open_file(pa.memory_map(str(source)) if isinstance(source, (str, Path)) else source) as reader:
            check_frame_size(name, sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches)),
                             len(reader.schema.names))
    except pa.ArrowInvalid:  # a Feather v1 file: no footer to read first
        pass
    if hasattr(source, "seek"):
        source.seek(0)
    return feather.read_table(source).to_pandas()


def _read_parquet(source: Any, name: str) -> tuple[pd.DataFrame, dict]:
    import pyarrow.parquet as pq

    metadata = pq.read_metadata(source)
    check_frame_size(name, metadata.num_rows, metadata.num_columns)
    if hasattr(source, "seek"):
        source.seek(0)
    names = pq.read_schema(source).names
    twice = sorted({column for column in names if names.count(column) > 1})
    if twice:  # (pyarrow's words: "Multiple matches for FieldRef.Name(close)")
        raise DataError(f"{name}: {'columns' if len(twice) > 1 else 'column'} "
                        f"{', '.join(map(repr, twice))} {'appear' if len(twice) > 1 else 'appears'} more than once: "
                        "keep one of each")
    if hasattr(source, "seek"):
        source.seek(0)
    table = pq.read_table(source)
    meta: dict = {}
    schema_meta = table.schema.metadata or {}
    if METADATA_KEY in schema_meta:
        try:
            meta = json.loads(schema_meta[METADATA_KEY])
        except ValueError:
            meta = {}
    return table.to_pandas(), meta


# ------------------------------------------------------------------------------------------ CSV

def read_csv_source(source: Path | bytes, name: str = "") -> pd.DataFrame:
    """A CSV file's columns (a path pandas reads itself, or unpacked bytes): its encoding,
    separator and header row (or none) found from its first lines, decimal commas or thousands
    separators from what pandas read as text (then read once more with them).

    >>> read_csv_source(b"1735689600000,93702.15,93702.15,93500.0,93600.5,12.5\\n").iloc[0, :3].tolist()
    [1735689600000.0, 93702.15, 93702.15]
    >>> list(read_csv_source(b"https://example.com\\nunix,open,high,low,close,volume\\n1,2,3,1,2,5\\n").columns)[:2]
    ['unix', 'open']
    """
    head_bytes = _head(source)
    encoding, head = _encoding(head_bytes)
    if "\x00" in head:
        raise DataError(f"{name or 'the file'}: binary content, not text (an unknown format, or UTF-16 without its "
                        "byte-order mark): save it as CSV in UTF-8")
    lines = head.splitlines()[:8]
    if not "".join(lines).strip():
        raise DataError(f"{name or 'the file'}: empty (no header row, no rows)")
    skip = _preamble(lines)
    first = lines[skip] if len(lines) > skip else ""
    sep = _separator(first)
    header = _is_header(next(csv.reader([first], delimiter=sep), []))
    options: dict[str, Any] = {"sep": sep, "skiprows": skip, "header": 0 if header else None, "encoding": encoding}
    raw, options = _parse(source, options)
    reading = _comma_reading([raw[c] for c in raw.columns if not pd.api.types.is_numeric_dtype(raw[c])], sep)
    if reading == "decimal":
        raw, options = _parse(source, {**options, "decimal": ","})  # (101,5 for 101.5)
    elif reading == "thousands":
        raw, options = _parse(source, {**options, "thousands": ","})  # ("70,292.01", quoted)
    elif reading == "dotted":
        raw, options = _parse(source, {**options, "decimal": ",", "thousands": "."})  # (60.497,99 for 60497.99)
    _cut_off(_last_lines(source, options["encoding"]), sep, raw, name)
    if not header:
        return row_layout(raw, name)
    positional = _default_names(raw)
    return row_layout(positional, name) if positional is not None else raw


def _head(source: Path | bytes, size: int = 65536) -> bytes:
    if isinstance(source, bytes):
        return source[:size]
    with open(source, "rb") as handle:
        return handle.read(size)


def _encoding(head: bytes) -> tuple[str, str]:
    """The encoding pandas reads the file in and its first characters: UTF-8 (with its mark or
    not), UTF-16 with its mark, else Windows-1252."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig", head[len(codecs.BOM_UTF8):].decode("utf-8", errors="replace")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", head.decode("utf-16", errors="replace")
    try:
        return "utf-8", head[:head.rfind(b"\n") + 1 or len(head)].decode("utf-8")  # (whole lines: whole characters)
    except UnicodeDecodeError:
        return "cp1252", head.decode("cp1252", errors="replace")


def _parse(source: Path | bytes, options: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """pandas' reading with ``options``, in Windows-1252 when a byte past the head is no UTF-8
    (never unpacked by its name: the content was told by its first bytes, and a plain CSV named
    .csv.gz read "Not a gzipped file")."""
    def read(opts: dict[str, Any]) -> pd.DataFrame:
        return pd.read_csv(io.BytesIO(source) if isinstance(source, bytes) else source, compression=None, **opts)

    try:
        return read(options), options
    except UnicodeDecodeError:
        options = {**options, "encoding": "cp1252", "encoding_errors": "replace"}
        return read(options), options


def _last_lines(source: Path | bytes, encoding: str) -> list[str]:
    """The file's last two lines that hold anything."""
    if encoding == "utf-16":
        tail = source if isinstance(source, bytes) else Path(source).read_bytes()
    elif isinstance(source, bytes):
        tail = source[-65536:]
    else:
        with open(source, "rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - 65536))
            tail = handle.read()
    text = tail.decode(encoding if encoding != "utf-8-sig" else "utf-8", errors="replace")
    return [line for line in text.splitlines() if line.strip()][-2:]


def _cut_off(lines: list[str], sep: str, raw: pd.DataFrame, name: str) -> None:
    """DataError when the last line holds fewer fields than the one before it and its row ends
    in values pandas filled with NaN (a download cut off: "1 row with NaN" said nothing of why).
    An empty last field (``...,100.5,``) is a field; a header with one separator more than the
    rows, or a quoted value over two lines, is no cut."""
    if len(raw) < 2 or raw.shape[1] < 2 or len(lines) < 2:
        return
    before, last = (len(next(csv.reader([line], delimiter=sep), [])) for line in lines)
    row = raw.iloc[-1]
    missing = int(row.iloc[last:].isna().sum()) if last < raw.shape[1] else 0
    if 0 < last < before and missing == raw.shape[1] - last and not raw.iloc[-2].iloc[last:].isna().all():
        raise DataError(f"{name or 'the file'}: the last line ({lines[-1][:60]!r}) holds {last} of {before} "
                        "values: a cut-off download? Download it again or remove that line")


def _preamble(lines: list[str]) -> int:
    """How many lines open the file without a separator while later lines have several (a web
    address above the header: CryptoDataDownload's files)."""
    count = 0
    while count < min(3, len(lines) - 1) and not re.search(r"[,;\t|]", lines[count]) and re.search(
            r"([,;\t|].*){4}", lines[count + 1]):
        count += 1
    return count


def _separator(line: str) -> str:
    """The field separator of a line: ``;``, a tab or ``|`` when it holds more of one of them than
    of commas (a tie goes to them: a row of decimal commas), else ``,``."""
    counts = {sep: line.count(sep) for sep in (";", "\t", "|", ",")}
    best = max(counts, key=counts.get)  # (the first of equals: a separator before the comma)
    return best if counts[best] else ","


def _is_header(fields: list[str]) -> bool:
    """Whether a first line is a header: any of its first six cells neither a number nor a
    date, or pandas' default column names (``0,1,2,...``, after an empty index cell or not).

    >>> _is_header(["1735689600000000", "93702.15", "93702.15"]), _is_header(["0", "1", "2"])
    (False, True)
    >>> _is_header(["2024.11.01", "00:00", "1.1"]), _is_header(["Open time", "Open"])
    (False, True)
    """
    cells = [f.strip() for f in fields[:6]]
    if cells and cells[0] == "" and cells[1:] == [str(k) for k in range(len(cells) - 1)]:
        return True
    if len(cells) > 1 and cells == [str(k) for k in range(len(cells))]:
        return True
    return not all(c == "" or c.lower() in _NA_TOKENS or _NUMBER.fullmatch(c) or _is_date(c) for c in cells)


def _is_date(cell: str) -> bool:
    if not re.search(r"\d", cell):
        return False  # (pandas reads "now" and "today" as times)
    try:
        return pd.Timestamp(cell) is not pd.NaT
    except (ValueError, TypeError, OverflowError):
        return False


def _default_names(raw: pd.DataFrame) -> pd.DataFrame | None:
    """A frame written with pandas' default column names (``0..n-1``, an unnamed index first or
    not) with those names as positions, else None."""
    names = [str(c) for c in raw.columns]
    if names and names[0].startswith("Unnamed: 0"):
        names, raw = names[1:], raw.iloc[:, 1:]
    if len(names) < 2 or names != [str(k) for k in range(len(names))]:
        return None
    raw = raw.copy()
    raw.columns = range(len(names))
    return raw


def _comma_reading(texts: list[pd.Series], sep: str) -> str | None:
    """How the number columns pandas read as text (they hold commas) are written: ``"decimal"``
    (``101,5``; a ``0,512`` or a group of other than three digits says so), ``"thousands"``
    (``70,292.01``, ``70,000``), ``"dotted"`` (dots between thousands and a decimal comma,
    ``60.497,99``, with ``;``, tab or ``|`` between values), or None (text to report). Decided
    for the whole file: with ``;``, tab or ``|`` a comma is a decimal mark when it can be one (a
    European file), with ``,`` (quoted values) a thousands separator unless some value says decimal.

    >>> _comma_reading([pd.Series(["70,000", "1,512.5"])], ","), _comma_reading([pd.Series(["0,512", "1,5"])], ",")
    ('thousands', 'decimal')
    >>> _comma_reading([pd.Series(["60.497,99", "590,93"])], ";")
    'dotted'
    """
    columns = [t.dropna().astype(str).str.strip() for t in texts]
    columns = [c for c in columns if len(c) and c.str.fullmatch(r"-?[\d.,]+").all() and c.str.contains(",").any()]
    if not columns:
        return None
    if sep != "," and all(c.str.fullmatch(r"-?\d{1,3}(\.\d{3})+(,\d+)?|-?\d+(,\d+)?").all() for c in columns) and \
            any(c.str.contains(".", regex=False).any() for c in columns):
        return "dotted"
    decimal = all(c.str.fullmatch(r"-?\d+(,\d+)?").all() for c in columns)
    thousands = all(c.str.fullmatch(r"-?\d+(\.\d+)?|" + _THOUSANDS.pattern).all() for c in columns)
    says_decimal = any(c.str.fullmatch(r"-?0,\d+|-?\d+,(\d{1,2}|\d{4,})").any() for c in columns)
    if decimal and (sep != "," or says_decimal or not thousands):
        return "decimal"
    return "thousands" if thousands else None


# -------------------------------------------------------------------------------- row layouts

def row_layout(raw: pd.DataFrame, name: str = "") -> pd.DataFrame:
    """Rows without names in the layout they come in: ``time, open, high, low, close, volume``
    first (ccxt, freqtrade; Binance's 12 values, Bybit's 7, OKX's 9, Kraken's CSV 7), Kraken's
    REST rows of 8 with the VWAP before the volume (``time, o, h, l, c, vwap, volume, count``:
    told by a VWAP inside every bar's range and a whole trade count), MetaTrader's
    ``date, time, open, high, low, close, volume``. Other orders (Coinbase's low-high-open-close,
    Bitfinex's open-close-high-low) read as the first and fail the high/low checks, which say so.

    >>> kraken = pd.DataFrame([[1.7e9, 10, 12, 9, 11, 10.5, 3.0, 7]])
    >>> row_layout(kraken).iloc[0].tolist()
    [1700000000.0, 10.0, 12.0, 9.0, 11.0, 3.0]
    """
    width = raw.shape[1]
    if width >= 7 and clock_text(raw.iloc[:, 1]) and not pd.api.types.is_numeric_dtype(raw.iloc[:, 0]):
        times = raw.iloc[:, 0].astype(str).str.strip() + " " + raw.iloc[:, 1].astype(str).str.strip()
        frame = raw.iloc[:, 2:7].copy()
        frame.insert(0, "timestamp", times)
        frame.columns = _ROW_NAMES
        return frame
    if width < 6:
        raise DataError(f"{name or 'the file'}: rows of {width} values and no header row: expected [time, open, "
                        "high, low, close, volume, ...], or a header row naming the columns")
    columns = [0, 1, 2, 3, 4, 6] if width == 8 and _kraken_rows(raw) else list(range(6))
    frame = raw.iloc[:, columns].copy()
    frame.columns = _ROW_NAMES
    return frame


def clock_text(values: pd.Series) -> bool:
    """Whether every value is a time of day (``00:00``, ``13:30:00``): a time column beside a date one."""
    text = values.dropna().astype(str).str.strip()
    return bool(len(text)) and bool(text.str.fullmatch(_CLOCK).all())


def _kraken_rows(raw: pd.DataFrame) -> bool:
    """Rows of 8 as Kraken's OHLC endpoint gives them: the 6th value (VWAP) inside the low..high
    of every bar that traded and the 8th a whole count (the 6th there was the volume, read as
    prices); a bar without trades (count 0, VWAP 0) tells nothing."""
    try:
        values = raw.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        return False
    high, low, vwap, count = values[:, 2], values[:, 3], values[:, 5], values[:, 7]
    ok = np.isfinite(values[:, :8]).all(axis=1) & (count != 0)  # (a bar without trades: VWAP 0, count 0)
    if not ok.any():
        return False
    inside = (vwap[ok] >= low[ok] * (1 - 1e-9)) & (vwap[ok] <= high[ok] * (1 + 1e-9))
    whole = (count[ok] >= 0) & (count[ok] == np.round(count[ok]))
    return bool(inside.all() and whole.all())


# ----------------------------------------------------------------------------------------- JSON

def read_json_text(text: str, name: str = "") -> pd.DataFrame:
    """A JSON text's columns: rows (``[[time, open, ...], ...]``), records, a column mapping in
    any ``DataFrame.to_json`` orient, or the rows an API envelope holds.

    >>> read_json_text('{"code": "0", "data": [["1700000000000", "1", "2", "0.5", "1.5", "9", "0"]]}').shape
    (1, 6)
    """
    obj = json.loads(text)
    if isinstance(obj, dict):
        obj = _unwrapped(obj)
    if isinstance(obj, list):
        return _json_list(obj, name)
    if isinstance(obj, dict):
        return _json_mapping(obj)
    raise DataError(f"{name}: JSON holds a {type(obj).__name__}, expected a list of candles")


def _unwrapped(obj: dict, depth: int = 0) -> Any:
    """The candles an API envelope holds (OKX's ``data``, Bybit's ``result.list``, Kraken's
    ``result.<PAIR>``), else the mapping itself."""
    if "columns" in obj and "data" in obj:
        return obj  # (to_json's split orient)
    for key, value in obj.items():
        if key.lower() in _ENVELOPE_KEYS or depth:
            if isinstance(value, list) and value and isinstance(value[0], (list, tuple, dict)):
                return value
            if isinstance(value, dict) and depth < 2:
                inner = _unwrapped(value, depth + 1)
                if isinstance(inner, list):
                    return inner
    return obj


def _json_list(obj: list, name: str) -> pd.DataFrame:
    if not obj:
        return pd.DataFrame(columns=_ROW_NAMES)
    if isinstance(obj[0], dict):
        return pd.DataFrame.from_records(obj)
    if not isinstance(obj[0], (list, tuple)):
        raise DataError(f"{name}: JSON list holds {type(obj[0]).__name__} values, expected rows or records")
    odd = next((k for k, row in enumerate(obj) if not isinstance(row, (list, tuple))), None)
    if odd is not None:  # (a TypeError: "object of type 'int' has no len()")
        raise DataError(f"{name}: JSON row {odd} is {json.dumps(obj[odd])[:40]}, not a row "
                        "[time, open, high, low, close, volume] as the others")
    width = min(len(row) for row in obj)
    if width < 6:
        raise DataError(f"{name}: JSON rows have {width} values, expected [time, open, high, low, close, volume]")
    frame = pd.DataFrame([row[:max(width, 6)] for row in obj])
    try:
        frame = frame.astype(np.float64)
    except (TypeError, ValueError):
        pass  # (text the time reader reads)
    return row_layout(frame, name)


def _json_mapping(obj: dict) -> pd.DataFrame:
    """A column mapping: ``{column: {row: value}}`` or ``{column: [values]}``, to_json's split
    orient, or ``{time: {column: value}}`` (index orient); row labels become ``timestamp``."""
    if "columns" in obj and "data" in obj:
        frame = pd.DataFrame(obj["data"], columns=obj["columns"], index=obj.get("index"))
    elif obj and all(isinstance(v, dict) for v in obj.values()) and _time_labels(list(obj)[:5]):
        frame = pd.DataFrame.from_dict(obj, orient="index")
    else:
        frame = pd.DataFrame(obj)
    lower = {str(c).strip().lower() for c in frame.columns}
    if not lower & set(TIME_COLUMNS) and _time_labels(list(frame.index[:5])):
        frame = frame.rename_axis("timestamp").reset_index()
    return frame


def _time_labels(labels: list) -> bool:
    """Whether row labels are times: epoch numbers or date text."""
    return bool(labels) and all(_NUMBER.fullmatch(str(x)) or _is_date(str(x)) for x in labels) and not all(
        str(x).isdigit() and int(x) < 10**6 for x in labels)  # (row numbers 0, 1, 2 are not times)
