"""Dataset names, their files under the data root, and the list of what is on disk.

A dataset is ``<exchange>/<BASE>_<QUOTE>-<timeframe>``, stored as
``<data_root>/<exchange>/<BASE>_<QUOTE>-<timeframe>.parquet`` (e.g. ``binance/BTC_USDT-1h``).
A file name may carry a label after the timeframe (``BTC_USDT-1h-2017-2020``), which is part
of the dataset name. ccxt symbols (``BTC/USDT``) map to ``BTC_USDT``. The synthetic sample
lives under the ``synthetic`` exchange and is also reachable as ``sample:SYMBOL-tf``.
Feather, CSV and JSON files in the same layout are listed too (freqtrade's
``user_data/data`` folder can serve as a data root).

Nothing is overwritten silently: an import onto an existing name raises
:class:`DatasetExists` unless told to replace it (or given a label to keep both), and so
does a resample onto :func:`resampled_path` in the CLI and the UI (:func:`existing_dataset`);
:func:`rename_dataset` refuses an existing target; :func:`delete_dataset` removes one
dataset. Neither touches the synthetic sample (it is regenerated whenever it is missing, so
deleting it would not stick, and a renamed copy would pass for real data).
"""
from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from threadx.data.synthetic import SAMPLE_SYMBOLS, SAMPLE_TIMEFRAME
from threadx.data.timeframe import canonical_timeframe, timeframe_seconds
from threadx.errors import DataError, ParamError
from threadx.filestamp import file_stamp
from threadx.names import EXCHANGE, NAME, SYMBOL, TIMEFRAME, check_name

SAMPLE_PREFIX = "sample:"
SYNTHETIC_EXCHANGE = "synthetic"
_SAMPLE_STEMS = frozenset(f"{symbol}-{SAMPLE_TIMEFRAME}" for symbol in SAMPLE_SYMBOLS)  # the sample's own files
LIST_COLUMNS = ["name", "exchange", "symbol", "timeframe", "path", "first", "last", "bars", "synthetic", "quality",
                "verdict", "problem"]
_FORMAT_PREFERENCE = {"parquet": 0, "feather": 1, "csv": 2, "json": 3, "zip": 4}
# exchange: lower-case id (ccxt style); symbol: BASE_QUOTE (more parts allowed) or BASE/QUOTE[:SETTLE]
_NAME = re.compile(  # used with fullmatch: a trailing newline never passes
    rf"(?:(?P<exchange>{EXCHANGE.pattern})/)?"  # (names.EXCHANGE: every exchange an import writes is found)
    r"(?P<symbol>[A-Za-z0-9]+(?:[_/:][A-Za-z0-9]+)*)"
    r"-(?P<timeframe>\d+[smhdw])"
    r"(?P<label>-[A-Za-z0-9_.-]+)?"
)
_STAT_CACHE: dict[tuple[str, int, int], tuple] = {}


class DatasetExists(DataError):
    """An import onto a dataset name that is already taken (nothing was written).

    ``name``, ``path``, ``first``, ``last`` and ``bars`` describe the existing dataset;
    ``incoming`` is ``(first, last, bars)`` of the data an import would have written."""

    def __init__(self, name: str, path: Path, first: pd.Timestamp | None, last: pd.Timestamp | None, bars: int):
        self.name, self.path, self.first, self.last, self.bars = name, path, first, last, int(bars)
        self.incoming: tuple[pd.Timestamp, pd.Timestamp, int] | None = None
        super().__init__(f"{self.describe()}; replace it (replace=True) or keep both under a label "
                         f"(label=NAME: {name}-NAME)")

    def describe(self) -> str:
        """``dataset binance/BTC_USDT-1h already exists (2024-01-01 00:00 → 2026-01-01 00:00, 17,544 bars)``."""
        span = f"{_day(self.first)} → {_day(self.last)}, " if self.first is not None else ""
        return f"dataset {self.name} already exists ({span}{self.bars:,} bars)"


def normalize_symbol(symbol: str) -> str:
    """``BTC/USDT`` -> ``BTC_USDT`` (also ``BTC/USDT:USDT`` -> ``BTC_USDT_USDT``), upper case."""
    return re.sub(r"[/:]", "_", symbol.strip()).upper()


def parse_dataset_name(name: str) -> tuple[str | None, str, str]:
    """Split ``[exchange/]SYMBOL-tf[-label]`` (or ``sample:SYMBOL-tf``) into ``(exchange, symbol, timeframe)``.

    The exchange is None when the name has none; ``sample:`` means the ``synthetic`` exchange.
    Raises DataError for a name that does not follow the pattern.
    """
    exchange, symbol, timeframe, _ = _parse(name)
    return exchange, symbol, timeframe


# quote currencies a symbol without separator may end with, longest first (FDUSD before USD)
_QUOTES = ("FDUSD", "USDT", "USDC", "BUSD", "TUSD", "USD", "EUR")


def quote_currency(name: str) -> str:
    """The currency a dataset's prices are in: the quote of its ``BASE_QUOTE`` symbol (of an
    exchange's ``BASEQUOTE`` one, when it ends with a stable or fiat quote), '' when its name
    gives none.

    >>> quote_currency("binance/BTC_USDT-1h"), quote_currency("bybit/BTC_USDT_USDT-1h"), quote_currency("local/GOLD-1d")
    ('USDT', 'USDT', '')
    >>> quote_currency("binance/BTCUSDT-1h"), quote_currency("kraken/XBTEUR-1d"), quote_currency("local/FRAUD-1d")
    ('USDT', 'EUR', '')
    >>> quote_currency("binance/BTCUSD_PERP-1h")
    'USD'

    """
    try:
        symbol = _parse(name)[1]
    except (DataError, ValueError):
        return ""
    parts = symbol.split("_")
    if len(parts) > 1 and not (parts[1] == "PERP" or parts[1].isdigit()):  # (BTCUSD_PERP, BTCUSD_240329: USD)
        return parts[1]
    symbol = parts[0]
    # a symbol written without its separator, as exchanges' dumps name it (BTCUSDT-1h-2025-01.zip):
    # a stable or fiat quote after a base of 3 letters or more, on an exchange's dataset only (a
    # local INDUSTRY or FRAUD is no TRY or AUD pair; STETH or RENBTC no ETH or BTC one)
    exchange = _parse(name)[0]
    if exchange in (None, "local"):
        return ""
    return next((q for q in _QUOTES if symbol.endswith(q) and len(symbol) - len(q) >= 3), "")


def parse_label(name: str) -> str | None:
    """The label of a dataset name (``BTC_USDT-1h-2017-2020`` -> ``2017-2020``), None when it has
    none or is no dataset name."""
    try:
        label = _parse(name)[3]
    except (DataError, ValueError):
        return None
    return label[1:] or None


def _parse(name: str) -> tuple[str | None, str, str, str]:
    """``(exchange, symbol, timeframe, label)`` of a dataset name (label '' or '-...')."""
    text = str(name).strip()
    exchange: str | None = None
    if text.startswith(SAMPLE_PREFIX):
        text, exchange = text[len(SAMPLE_PREFIX):], SYNTHETIC_EXCHANGE
    match = _NAME.fullmatch(text)
    if not match:
        raise DataError(f"bad dataset name {name!r}: use exchange/BASE_QUOTE-timeframe, e.g. binance/BTC_USDT-1h")
    if match.group("exchange"):
        if exchange is not None:
            raise DataError(f"bad dataset name {name!r}: 'sample:' takes SYMBOL-timeframe only")
        exchange = match.group("exchange")
    symbol = match.group("symbol")
    head, slash, rest = symbol.partition("/")
    if exchange is None and slash and "_" in rest.split("/")[0] and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.]*", head):
        # EXCHANGE/BASE_QUOTE: an exchange written in capitals (a ccxt symbol BASE/QUOTE has no "_"),
        # which was read as the symbol EXCHANGE_BASE_QUOTE (a rename to Binance/X_Y-1h made local/BINANCE_X_Y-1h)
        exchange, symbol = head.lower(), rest
    timeframe_seconds(match.group("timeframe"))
    return exchange, normalize_symbol(symbol), match.group("timeframe"), match.group("label") or ""


def file_market(path: str | os.PathLike) -> tuple[str, str] | None:
    """(symbol, timeframe) a data file's name carries, the symbol without separators and the
    timeframe in its one spelling, a browser's " (1)" left out; None for another name.

    >>> file_market("BTC_USDT-60m.csv"), file_market("BTCUSDT-1h-2025-02 (1).zip"), file_market("prices.csv")
    (('BTCUSDT', '1h'), ('BTCUSDT', '1h'), None)
    """
    stem = re.sub(r" \(\d+\)$", "", file_stem(Path(path).name))
    try:
        _, symbol, timeframe, _ = _parse(stem)
        return re.sub(r"[_/:]", "", symbol.upper()), canonical_timeframe(timeframe)
    except (DataError, ValueError):
        return None


def check_one_market(paths: Sequence[str | os.PathLike]) -> None:
    """ParamError when the names of files read as one dataset carry other symbols or timeframes
    (BTC's January spliced with ETH's March under one name, green, a 97 % drop between them)."""
    from collections import Counter

    markets = [m for m in map(file_market, paths) if m is not None]  # (names that follow SYMBOL-tf[-label])
    for what, part in (("symbols", 0), ("timeframes", 1)):
        counts = Counter(m[part] for m in markets)
        if len(counts) > 1:
            listed = ", ".join(f"{key} ({n} file{'s' if n > 1 else ''})" for key, n in counts.most_common())
            raise ParamError(f"the files name other {what}: {listed}; one dataset holds one market and one "
                             "timeframe: import them apart")


def name_timeframe(path: str | os.PathLike) -> str | None:
    """The timeframe a data file's name carries (``BTC_USDT-1h.csv.gz`` -> ``1h``), or None."""
    name = Path(path).name
    suffix = _suffix(name)
    stem = name[: len(name) - len(suffix)] if suffix else Path(name).stem
    try:
        return _parse(stem)[2]
    except DataError:
        return None


def dataset_path(exchange: str, symbol: str, timeframe: str, data_root: str | os.PathLike | None = None,
                 label: str | None = None) -> Path:
    """Where a dataset is stored: ``<data_root>/<exchange>/<BASE>_<QUOTE>-<timeframe>[-<label>].parquet``.

    Each part is checked with :func:`threadx.names.check_name` (ParamError for ``../x``,
    ``a/b``, a newline, ...), so no label can place a file outside the data root."""
    exchange = check_name(str(exchange).strip().lower(), "exchange label", EXCHANGE)
    given, symbol = str(symbol), normalize_symbol(str(symbol))
    try:
        check_name(symbol, "symbol", SYMBOL)
    except ParamError as exc:
        if symbol == given:
            raise
        raise ParamError(f"{exc} (made from {given!r} as given)") from None  # (quoted changed only)
    timeframe = check_name(canonical_timeframe(timeframe), "timeframe", TIMEFRAME)  # DataError for an unknown unit
    suffix = f"-{check_name(label, 'dataset label', NAME)}" if label else ""
    return _root(data_root) / exchange / f"{symbol}-{timeframe}{suffix}.parquet"


def resampled_path(name: str, timeframe: str, data_root: str | os.PathLike | None = None) -> Path:
    """Where ``name`` resampled to ``timeframe`` is stored: same exchange (``local`` if none, or for the
    synthetic sample, whose label is kept for its own files), symbol and label
    (``binance/BTC_USDT-1h-2017-2020`` -> ``binance/BTC_USDT-4h-2017-2020``)."""
    exchange, symbol, _, label = _parse(name)
    exchange = "local" if exchange in (None, SYNTHETIC_EXCHANGE) else exchange
    return dataset_path(exchange, symbol, timeframe, data_root, label[1:] or None)


def check_resampled_out(path: Path, source: str, timeframe: str, data_root: str | os.PathLike | None = None) -> None:
    """ParamError when ``path``, an ``--out`` file for ``source`` resampled to ``timeframe``, is in
    the data root under a name that does not say what it holds (the data root lists each file by
    its name: BTC 4h bars written as ``ETH_USDT-15m.parquet`` listed as an ETH 15m dataset)."""
    root = _root(data_root).resolve()
    where = path.resolve()
    if not where.is_relative_to(root):
        return  # a file of the user's own, anywhere else
    expected = resampled_path(source, timeframe, root) if _NAME.fullmatch(str(source).strip()) else None
    try:
        _, symbol, held, _ = _parse(dataset_name(where))
        named = where.parent.parent == root and canonical_timeframe(held) == canonical_timeframe(timeframe) and (
            expected is None or symbol == _parse(source)[1])
    except (DataError, ParamError):
        named = False
    if not named:
        default = f" ({dataset_name(expected)})" if expected is not None else ""
        raise ParamError(f"--out {path} is in the data root, where a file is listed as the dataset its name says: "
                         f"name it <exchange>/<SYMBOL>-{canonical_timeframe(timeframe)}.parquet for this symbol, "
                         f"leave --out out for the default{default}, or write it outside {root}")


def existing_dataset(path: Path) -> DatasetExists | None:
    """A :class:`DatasetExists` for the dataset stored at ``path`` (in any format), None when the name is free."""
    found = _dataset_files(path.parent.parent).get((path.parent.name, file_stem(path.name)))
    if found is None:
        return None
    first, last, bars, *_ = _file_stats(found)
    return DatasetExists(dataset_name(path), found, first, last, bars)


def rename_dataset(old: str, new: str, data_root: str | os.PathLike | None = None) -> Path:
    """Rename the stored dataset ``old`` to ``new`` (``[exchange/]SYMBOL-tf[-label]``; the exchange
    defaults to old's); the new path. Refuses a taken ``new``, a timeframe other than the bars' (DataError)
    and the synthetic sample."""
    root = _root(data_root)
    exchange, stem, path = _stored(old, root)
    new_exchange, symbol, timeframe, label = _parse(new)
    held = _parse(dataset_name(path))[2]
    if timeframe_seconds(timeframe) != timeframe_seconds(held):
        raise DataError(f"{old} holds {held} bars, so its name keeps the timeframe {held} (a name saying "
                        f"{timeframe} could not be loaded); to get {timeframe} bars, resample it")
    target = dataset_path(new_exchange or exchange, symbol, timeframe, root, label[1:] or None)
    refuse_sample_label(target.parent.name, new)
    if file_stem(target.name) == file_stem(path.name) and target.parent == path.parent:
        raise DataError(f"{new} is the name {old} has already (a timeframe has one spelling: "
                        f"{timeframe} is {canonical_timeframe(timeframe)})")
    taken = existing_dataset(target)
    if taken is not None:
        raise DataError(f"{taken.describe()}; choose another name, or delete it first")
    target.parent.mkdir(parents=True, exist_ok=True)
    for source in _all_formats(path):
        source.rename(target.with_name(file_stem(target.name) + _suffix(source.name)))
    _drop_if_empty(path.parent)
    return target.with_name(file_stem(target.name) + _suffix(path.name))


def market_change(old: str, new: str) -> str:
    """A warning when renaming the dataset ``old`` to ``new`` names its bars after another market
    (``BTC_USDT-4h`` -> ``ETH_USDT-4h``: BTC's prices then read as ETH's, in another quote currency
    perhaps), "" when both names carry the same symbol (separators aside: ``BTCUSDT`` is ``BTC_USDT``).

    >>> market_change("binance/BTC_USDT-4h", "binance/BTCUSDT-4h-2024")
    ''
    >>> market_change("BTC_USDT-4h", "x/ETH_USDT-4h")[:45]
    "the bars stay BTC_USDT's, now named ETH_USDT:"
    """
    try:
        before, after = _parse(old)[1], _parse(new)[1]
    except (DataError, ValueError):
        return ""
    if re.sub(r"[_/:]", "", before) == re.sub(r"[_/:]", "", after):
        return ""
    return (f"the bars stay {before}'s, now named {after}: every backtest, research and portfolio reads them as "
            f"{after}'s")


def delete_dataset(name: str, data_root: str | os.PathLike | None = None, *, dry_run: bool = False) -> list[Path]:
    """Delete the stored dataset ``name`` (every format of it); the files removed (or, with
    ``dry_run``, that would be). Takes a dataset name only, never a file path; refuses the synthetic sample."""
    _, _, path = _stored(name, _root(data_root))
    removed = _all_formats(path)
    for file in [] if dry_run else removed:
        file.unlink()
    if not dry_run:
        _drop_if_empty(path.parent)
    return removed


def _drop_if_empty(folder: Path) -> None:
    """Remove an exchange folder that a delete or a rename left empty (no trace of it stays)."""
    with contextlib.suppress(OSError):  # not empty, or already gone
        folder.rmdir()


def dataset_name(path: Path) -> str:
    """The dataset name of a file in the data root (``.../binance/BTC_USDT-1h.parquet`` -> ``binance/BTC_USDT-1h``;
    a folder in capitals, copied by hand, names its lower-case exchange, as :func:`list_datasets` lists it)."""
    return f"{path.parent.name.lower()}/{file_stem(path.name)}"


def resolve_dataset(name: str | os.PathLike, data_root: str | os.PathLike | None = None) -> Path:
    """The file behind a path or dataset name; DataError listing the available names if unknown.

    Accepts a path to an existing file, ``exchange/SYMBOL-tf``, ``SYMBOL-tf`` (if only one
    exchange has it), ``sample:SYMBOL-tf`` and ``synthetic/SYMBOL-tf`` (the sample is written
    first if missing).
    """
    root = _root(data_root)
    if not str(name).strip():  # (Path("") is the current folder: it read ": is a folder, not a data file")
        raise DataError(f"no dataset given: name one (threadx data list) or a file; available: {_available(root)}")
    candidate = Path(name).expanduser() if not str(name).startswith(SAMPLE_PREFIX) else None
    if candidate is not None and candidate.is_file():
        return candidate
    text = str(name).strip()
    try:
        exchange, symbol, timeframe, label = _parse(text)
    except DataError:
        _refuse_folder(candidate, name)
        if candidate is not None and (candidate.suffix or os.sep in text):
            if candidate.exists():  # (a named pipe, a device: "file not found" sent the user looking for it)
                raise DataError(f"{name}: not a regular file (a pipe, socket or device): give a data file") from None
            raise DataError(f"{name}: file not found") from None
        raise DataError(f"unknown dataset {name!r}; available: {_available(root)}") from None
    stem = f"{symbol}-{timeframe}{label}"
    if exchange == SYNTHETIC_EXCHANGE:
        from threadx.data.synthetic import ensure_sample

        ensure_sample(root)
    found = _lookup(root, name, exchange, stem)
    if found is None and canonical_timeframe(timeframe) != timeframe:  # BTC_USDT-60m: stored as BTC_USDT-1h
        found = _lookup(root, name, exchange, f"{symbol}-{canonical_timeframe(timeframe)}{label}")
    if found is not None:
        return found[1]
    _refuse_folder(candidate, name)
    raise DataError(f"unknown dataset {name!r} in {root}; available: {_available(root)}")


def _lookup(root: Path, name: str | os.PathLike, exchange: str | None, stem: str) -> tuple[str, Path] | None:
    """``(exchange, path)`` of the stored dataset ``[exchange/]stem``; None if absent, DataError if ambiguous."""
    files = _dataset_files(root)
    if exchange is not None:
        found = files.get((exchange, stem))
        return None if found is None else (exchange, found)
    matches = sorted((ex, p) for (ex, s), p in files.items() if s == stem)
    if len(matches) > 1:
        options = ", ".join(f"{ex}/{stem}" for ex, _ in matches)
        raise DataError(f"dataset {name!r} is ambiguous: {options}; name the exchange")
    return matches[0] if matches else None


def _stored(name: str, root: Path) -> tuple[str, str, Path]:
    """``(exchange, stem, path)`` of a dataset stored in the data root, by name only (never a file path).

    DataError for an unknown name, ParamError for the synthetic sample (see the module notes)."""
    exchange, symbol, timeframe, label = _parse(name)
    stem = f"{symbol}-{timeframe}{label}"
    _refuse_sample(exchange, stem, name)
    found = _lookup(root, name, exchange, stem)
    if found is None:
        raise DataError(f"unknown dataset {name!r} in {root}; available: {_available(root)}")
    _refuse_sample(found[0], stem, name)
    return found[0], stem, found[1]


def _refuse_sample(exchange: str | None, stem: str, name: str) -> None:
    """ParamError for one of the sample's own files (another file under ``synthetic/``, a resample
    an older version wrote there, may be renamed or deleted)."""
    if _sample_file(exchange, stem):
        raise ParamError(f"{name}: the synthetic sample is regenerated whenever it is missing; "
                         "it cannot be renamed, deleted or replaced")


def is_sample(name: str) -> bool:
    """Whether the dataset ``name`` is one of the synthetic sample's own files (never renamed or deleted)."""
    try:
        exchange, symbol, timeframe, label = _parse(name)
    except (DataError, ParamError):
        return False
    return _sample_file(exchange, f"{symbol}-{timeframe}{label}")


def _sample_file(exchange: str | None, stem: str) -> bool:
    return exchange == SYNTHETIC_EXCHANGE and stem in _SAMPLE_STEMS


def refuse_sample_label(exchange: str | None, shown: str) -> None:
    """DataError when a dataset would be written under the exchange label of the sample."""
    if exchange == SYNTHETIC_EXCHANGE:
        raise DataError(f"{shown}: the exchange label {SYNTHETIC_EXCHANGE!r} is kept for the synthetic sample; "
                         "choose another one")


def _all_formats(path: Path) -> list[Path]:
    """The files of one dataset: ``path`` and its siblings with the same stem in other formats."""
    stem = file_stem(path.name)
    return sorted(p for p in path.parent.iterdir() if p.is_file() and _suffix(p.name) and file_stem(p.name) == stem)


def _refuse_folder(candidate: Path | None, name: str | os.PathLike) -> None:
    """DataError saying that a folder given as a data file is a folder (and which files are accepted)."""
    if candidate is not None and candidate.is_dir():
        from threadx.data.readers import ACCEPTED

        raise DataError(f"{name}: is a folder, not a data file (accepted: {ACCEPTED})")


def list_datasets(data_root: str | os.PathLike | None = None) -> pd.DataFrame:
    """Datasets under the data root, one row each, sorted by name.

    Columns: name, exchange, symbol, timeframe, path, first, last, bars, synthetic, quality, verdict, problem.
    ``first/last/bars/quality/verdict`` come from reading and validating each file once; the result
    is cached per (path, mtime, size), so listing again is cheap. An unreadable file is listed with
    no ``first``/``last``, ``bars`` 0, ``quality`` NaN, verdict ``red`` and why in ``problem``
    (empty for a file that reads).
    """
    rows = []
    for (exchange, stem), path in sorted(_dataset_files(_root(data_root)).items()):
        _, symbol, timeframe = parse_dataset_name(f"{exchange}/{stem}")
        first, last, bars, synthetic, quality, verdict, problem = _file_stats(path)
        rows.append(
            {
                "name": f"{exchange}/{stem}",
                "exchange": exchange,
                "symbol": symbol,
                "timeframe": timeframe,
                "path": str(path),
                "first": first,
                "last": last,
                "bars": bars,
                "synthetic": bool(synthetic or exchange == SYNTHETIC_EXCHANGE),
                "quality": quality,
                "verdict": verdict,
                "problem": problem,
            }
        )
    out = pd.DataFrame(rows, columns=LIST_COLUMNS)
    out["first"] = pd.to_datetime(out["first"], utc=True)
    out["last"] = pd.to_datetime(out["last"], utc=True)
    out["bars"] = out["bars"].astype(np.int64)
    out["synthetic"] = out["synthetic"].astype(bool)
    out["quality"] = out["quality"].astype(np.float64)
    return out


def without_empty_problem(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`list_datasets`'s table as the data list shows it: the ``problem`` column only when
    some file has one (a column of blanks beside every readable dataset said nothing)."""
    if "problem" in table and not table["problem"].astype(bool).any():
        return table.drop(columns="problem")
    return table


# --------------------------------------------------------------------------------- helpers


def _root(data_root: str | os.PathLike | None) -> Path:
    if data_root is not None:
        return Path(data_root).expanduser()
    from threadx.config import settings

    return settings().data_root


def _dataset_files(root: Path) -> dict[tuple[str, str], Path]:
    """``{(exchange, stem): path}`` for data files in ``root/<exchange>/``; Parquet wins over other formats.

    The exchange is the folder's name in lower case, as every name given is read (a folder ``BX``
    copied by hand was listed as ``BX/...``, a name no command found); a folder whose name is no
    exchange label (:data:`threadx.names.EXCHANGE`) holds no datasets."""
    from threadx.data.readers import file_format

    found: dict[tuple[str, str], tuple[int, Path]] = {}
    if not root.is_dir():
        return {}
    for folder in sorted(root.iterdir(), key=lambda f: f.name != f.name.lower()):  # (bx/ before BX/ on a tie)
        exchange = folder.name.lower()
        if not folder.is_dir() or not EXCHANGE.fullmatch(exchange):
            continue
        for path in folder.iterdir():
            fmt = file_format(path)
            if fmt is None or path.name.startswith(".") or not path.is_file():
                continue
            stem = file_stem(path.name)
            if not _NAME.fullmatch(f"{exchange}/{stem}"):
                continue
            rank = _FORMAT_PREFERENCE[fmt]
            key = (exchange, stem)
            if key not in found or rank < found[key][0]:
                found[key] = (rank, path)
    return {key: path for key, (_, path) in found.items()}


def _suffix(filename: str) -> str:
    """The data-format suffix of a file name (``.csv.gz``), or '' when it has none."""
    from threadx.data.readers import FORMATS

    lower = filename.lower()
    return next((s for s in sorted(FORMATS, key=len, reverse=True) if lower.endswith(s)), "")


def file_stem(filename: str) -> str:
    """A data file's name without its format suffix (``BTC_USDT-1h.csv.gz`` -> ``BTC_USDT-1h``)."""
    return filename[: len(filename) - len(_suffix(filename))]


def _day(ts: pd.Timestamp | None) -> str:
    return "?" if ts is None else pd.Timestamp(ts).strftime("%Y-%m-%d %H:%M")


def _available(root: Path) -> str:
    names = sorted(f"{ex}/{stem}" for ex, stem in _dataset_files(root))
    names += [f"{SAMPLE_PREFIX}{s}-1h" for s in ("BTC_USDT", "ETH_USDT", "SOL_USDT")]
    return ", ".join(names)


def _unreadable(why: str) -> tuple:
    """:func:`_file_stats` of a file that cannot be read: no dates, no bars, red, and why."""
    return None, None, 0, False, float("nan"), "red", f"unreadable: {why}"


def _file_stats(path: Path) -> tuple:
    """(first, last, bars, synthetic, quality, verdict, problem) of a data file; an unreadable one
    says why in ``problem`` (the first line of its error; "" when it reads)."""
    from threadx.data.io import check_ohlcv_file

    try:
        key = (str(path.resolve()), file_stamp(path))
    except OSError as exc:
        return _unreadable(exc.strerror or str(exc))
    if key not in _STAT_CACHE:
        try:
            df, report = check_ohlcv_file(path)
            stats = (report.first, report.last, report.bars, bool(df.attrs.get("synthetic")), report.quality,
                     report.verdict[0], "")
        except DataError as exc:
            stats = _unreadable(str(exc).splitlines()[0].removeprefix(f"{path}: "))  # (the row names the file)
        _STAT_CACHE[key] = stats
    return _STAT_CACHE[key]
