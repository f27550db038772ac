"""Funding-rate history with ccxt, stored beside the candles: one file per symbol and exchange.

``fetch_funding`` downloads ccxt's ``fetch_funding_rate_history(symbol, since, limit)`` into
``<data_root>/<exchange>/<BASE>_<QUOTE>-funding.parquet`` (columns ``timestamp``, UTC, and
``rate``, a fraction per settlement), next to ``<BASE>_<QUOTE>-<tf>.parquet``. It pages forward
from the last timestamp + 1 ms, drops repeated settlements (the newly fetched rate wins), resumes
after the last stored settlement, retries ``ccxt.NetworkError`` with exponential backoff and
writes atomically. Unlike a candle download, settlements received before a lasting network
failure are kept (written, then one FetchError says how many). Missing settlements (a gap) are
counted in the result, never invented.

The symbol is passed to the exchange as given: on Binance ``BTC/USDT`` reads the USDT-M
perpetual's funding; elsewhere pass the swap symbol (``BTC/USDT:USDT``), whose file is then
``BTC_USDT_USDT-funding.parquet``. :func:`read_funding` turns a stored file into the
per-settlement Series that ``funding=`` of a backtest takes; :func:`funding_for` finds the file
of a dataset (see :mod:`threadx.data.catalog`).
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from threadx.config import STORED
from threadx.data.catalog import _root, normalize_symbol, resolve_dataset
from threadx.data.io import replace_atomically
from threadx.data.fetch import DEFAULT_HISTORY_DAYS, _line, _market_symbol, _to_ms, call_with_retries, check_span
from threadx.errors import DataError, FetchError, ParamError, ThreadXError
from threadx.filestamp import file_stamp
from threadx.names import EXCHANGE, SYMBOL, check_name

FUNDING_SUFFIX = "-funding.parquet"
SETTLEMENT_MS = 8 * 3_600_000  # the usual settlement interval, when the data cannot tell
_REFETCH = ("a funding file holds one finite rate per settlement: delete it and fetch it again "
            "(threadx data fetch --symbol ... --funding), or run without it (--no-funding)")


@dataclass
class FundingResult:
    """Outcome of one funding download: the stored file, new and total settlements, missing ones."""

    path: Path
    new_rows: int
    total_rows: int
    missing_settlements: int
    gaps: list[tuple[pd.Timestamp, pd.Timestamp, int]] = field(default_factory=list)


def funding_path(exchange: str, symbol: str, data_root: str | os.PathLike | None = None) -> Path:
    """``<data_root>/<exchange>/<BASE>_<QUOTE>-funding.parquet`` (``BTC/USDT`` -> ``BTC_USDT``)."""
    exchange = check_name(str(exchange).strip().lower(), "exchange label", EXCHANGE)
    symbol = check_name(normalize_symbol(str(symbol)), "symbol", SYMBOL)
    return _root(data_root) / exchange / f"{symbol}{FUNDING_SUFFIX}"


def fetch_funding(
    exchange: Any,
    symbol: str,
    since: Any = None,
    until: Any = None,
    *,
    data_root: str | os.PathLike | None = None,
    max_retries: int = 5,
    limit: int = 1000,
    sleep: Callable[[float], None] = time.sleep,
) -> FundingResult:
    """Download the funding-rate history of ``symbol`` into :func:`funding_path` (incremental).

    ``exchange``: a ccxt id or an object with ccxt's ``fetch_funding_rate_history(symbol, since,
    limit)`` (and ``has``, optional ``id``, ``rateLimit``, ``milliseconds()``). ``since``/``until``
    as in :func:`threadx.data.fetch.fetch_ohlcv` (ms, ISO text or Timestamp, UTC; ``until``
    exclusive, default now); with a stored file the download starts after its last settlement.
    Raises FetchError when the exchange has no funding history, on an exchange error, or after
    ``max_retries`` retries of a network error (what came before is saved first).
    """
    check_span(since, until)
    ex, exchange_id = _funding_exchange(exchange)
    market = _market_symbol(symbol)
    path = funding_path(exchange_id, market, data_root)
    label = f"{exchange_id} {market} funding"
    now_ms = int(ex.milliseconds()) if callable(getattr(ex, "milliseconds", None)) else int(time.time() * 1000)
    stop_ms = min(_to_ms(until), now_ms + 1) if until is not None else now_ms + 1
    existing = read_funding_file(path) if path.exists() else None
    if existing is not None and len(existing):
        cursor = int(existing.index.asi8.max() // 1_000_000) + 1
    else:
        cursor = _to_ms(since) if since is not None else now_ms - DEFAULT_HISTORY_DAYS * 86_400_000

    rows: list[tuple[int, float]] = []
    failure: FetchError | None = None
    rate_s = float(getattr(ex, "rateLimit", 0) or 0) / 1000.0
    calls = 0
    while cursor < stop_ms:
        if calls and rate_s > 0:
            sleep(rate_s)
        try:
            batch = call_with_retries(lambda c=cursor: ex.fetch_funding_rate_history(market, c, limit), cursor,
                                      max_retries, sleep, label)
        except FetchError as exc:
            if not isinstance(exc.__cause__, _network_error()):
                raise
            failure = exc
            break
        calls += 1
        stamps = [_stamp(item) for item in batch]
        page = [(ts, _rate(item)) for item, ts in zip(batch, stamps) if ts is not None and cursor <= ts < stop_ms]
        rows.extend((ts, r) for ts, r in page if r is not None)
        known = [ts for ts in stamps if ts is not None]
        if not known or max(known) < cursor:
            break  # nothing new: the end of the history
        cursor = max(known) + 1

    merged, new_rows = _merge(existing, rows)
    if existing is None and merged.empty and failure is None:
        raise FetchError(f"{label}: the exchange returned no funding rate after "
                         f"{pd.Timestamp(cursor, unit='ms', tz='UTC').isoformat()}")
    if new_rows or (existing is None and len(merged)):
        write_funding(merged, path)
    if failure is not None:
        raise FetchError(f"{failure}; {new_rows:,} settlements received before it were saved in {path}") \
            from failure.__cause__
    gaps = funding_gaps(merged)
    return FundingResult(path=path, new_rows=new_rows, total_rows=len(merged),
                         missing_settlements=sum(g[2] for g in gaps), gaps=gaps)


def read_funding_file(path: str | os.PathLike) -> pd.Series:
    """A stored funding file as a Series of rates (float64) indexed by UTC settlement time, sorted."""
    path = Path(path)
    try:
        df = pd.read_parquet(path)
        index = pd.DatetimeIndex(pd.to_datetime(df["timestamp"], utc=True)).as_unit("ns")
        rates = pd.Series(df["rate"].to_numpy(dtype=np.float64), index=index, name="rate")
    except Exception as exc:  # noqa: BLE001 - any reader failure is a data problem for the user
        raise DataError(f"{path}: not a funding file ({type(exc).__name__}: {_line(exc)})") from exc
    # a fetch writes each settlement once, with a finite rate: anything else was damaged or
    # edited since, and would be charged twice or as nothing
    undated = index.isna()
    if undated.any():
        raise DataError(f"{path}: {int(undated.sum()):,} settlement time(s) missing: {_REFETCH}")
    unknown = ~np.isfinite(rates.to_numpy())
    if unknown.any():
        raise DataError(f"{path}: {int(unknown.sum()):,} funding rate(s) missing or not finite, the first at "
                        f"{index[unknown][0]}: {_REFETCH}")
    repeated = index[index.duplicated()]
    if len(repeated):
        raise DataError(f"{path}: {len(repeated):,} settlement time(s) appear more than once, the first "
                        f"{repeated[0]}: {_REFETCH}")
    rates.index.name = "timestamp"
    return rates.sort_index(kind="stable")


def write_funding(rates: pd.Series, path: str | os.PathLike) -> Path:
    """Write a funding Series atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    frame = pd.DataFrame({"timestamp": pd.DatetimeIndex(rates.index).tz_convert("UTC").as_unit("ns"),
                          "rate": rates.to_numpy(dtype=np.float64)})
    replace_atomically(path, lambda tmp: frame.to_parquet(tmp, index=False))
    return path


def funding_gaps(rates: pd.Series) -> list[tuple[pd.Timestamp, pd.Timestamp, int]]:
    """``(last before, first after, missing settlements)`` of each hole in a funding series.

    The interval is the series' most common spacing (8h when fewer than 2 settlements)."""
    ms = np.asarray(pd.DatetimeIndex(rates.index).asi8) // 1_000_000
    if len(ms) < 2:
        return []
    diffs = np.diff(ms)
    step = int(pd.Series(np.round(diffs / 3_600_000) * 3_600_000).mode().iloc[0]) or SETTLEMENT_MS
    missing = np.round(diffs / step).astype(np.int64) - 1
    return [(rates.index[i], rates.index[i + 1], int(missing[i])) for i in np.flatnonzero(missing > 0)]


def funding_fingerprint(rates: pd.Series) -> str:
    """sha256 of the settlement times and rates (ties a result to the exact funding rows)."""
    digest = hashlib.sha256(np.asarray(pd.DatetimeIndex(rates.index).asi8, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(rates.to_numpy(dtype=np.float64)).tobytes())
    return digest.hexdigest()


def funding_for(dataset: str | os.PathLike, data_root: str | os.PathLike | None = None) -> pd.Series | None:
    """The stored funding of a dataset's symbol, or None when there is no funding file.

    The file is the one beside the dataset's candles: ``binance/BTC_USDT-1h`` (or its file)
    -> ``<data_root>/binance/BTC_USDT-funding.parquet``. The synthetic sample has none. The
    Series' ``attrs`` hold ``source`` (the file) and ``fingerprint`` (:func:`funding_fingerprint`),
    which a run records, so its result is tied to these exact rates."""
    return _funding_beside(resolve_dataset(dataset, data_root))


def _funding_beside(path: Path) -> pd.Series | None:
    """The funding file beside the candles file ``path``, read (None when there is none); a copy
    of the last read while the file's stamp is the same (a page rerun asks again each time)."""
    candidate = _beside(path)
    try:
        stamp = file_stamp(candidate) if candidate.is_file() else None
    except OSError:
        stamp = None
    if stamp is None:
        return None
    return _read_stamped(str(candidate), stamp).copy()


@functools.lru_cache(maxsize=32)
def _read_stamped(path: str, stamp: tuple[int, int, int, int]) -> pd.Series:
    """:func:`read_funding_file` of ``path`` with its source and fingerprint, memoised by the
    file's ``stamp`` (:func:`~threadx.filestamp.file_stamp`; a failed read is not kept)."""
    rates = read_funding_file(path)
    rates.attrs = {"source": path, "fingerprint": funding_fingerprint(rates)}
    return rates


def _beside(path: Path) -> Path:
    """The funding file's path beside the candles file ``path`` (whether it exists or not)."""
    return path.parent / f"{path.name.split('-')[0]}{FUNDING_SUFFIX}"


def stored_funding(source: str | os.PathLike) -> pd.Series | None:
    """:func:`funding_for` of a run's data ``source`` (a dataset of the data root, or a file: the
    funding file beside it), None when it names neither (a frame's name): no stored funding
    there. A damaged funding file beside the candles stays an error (skipping it would run
    without funding, silently)."""
    try:
        path = resolve_dataset(source)
    except ThreadXError:
        return None
    return _funding_beside(path)


def with_stored_funding(options: Mapping[str, Any], source: str | os.PathLike) -> dict[str, Any]:
    """``options`` (engine options, or keyword arguments holding them) with their funding as a run
    takes it: ``"stored"`` is :func:`stored_funding` of ``source`` (left out when it has none); the
    record of a stored file (:func:`threadx.engine.inputs.funding_summary`'s text, as a run records
    it) is that file again, refused with a :class:`DataError` when its rows changed since (fetched
    again) or it is gone; the record of a series passed from Python cannot be read back
    (:class:`ParamError`). Other values unchanged. The requests and a research's cells resolve
    funding here, so a run opened again uses the rates it ran with, or says why it cannot.

    >>> with_stored_funding({"fee_bps": 5.0, "funding": "stored"}, "no/such-dataset")
    {'fee_bps': 5.0}
    """
    out = dict(options)
    value = out.get("funding")
    if not isinstance(value, str):
        return out
    record = stored_record(value)
    if value != STORED and record is None:
        raise ParamError("this run used a funding series that is not stored (passed from Python): run it again from "
                         "Python with that series")
    series = stored_funding(source)
    if value == STORED:
        if series is None:
            del out["funding"]
        else:
            out["funding"] = series
        return out
    path, digest = record["path"], record["sha"]
    if series is None:
        raise DataError(f"this run used the funding file {path}, which is no longer beside its candles: run it "
                        "anew, without funding or with a funding file fetched again (its rates are then new ones)")
    if series.attrs["fingerprint"] != digest:
        raise DataError(f"the funding file {series.attrs['source']} changed since this run (sha256 {digest[:12]} "
                        f"then, {series.attrs['fingerprint'][:12]} now: fetched again?); run it anew to use the "
                        "rates as they are now")
    out["funding"] = series
    return out


def funding_file_of(source: str | os.PathLike) -> Path | None:
    """The funding file beside the candles of ``source`` (a dataset of the data root, or a file),
    found, not read; None when there is none or ``source`` names neither (a frame's name).

    >>> funding_file_of("no/such-dataset") is None
    True
    """
    try:
        candidate = _beside(resolve_dataset(source))
    except ThreadXError:
        return None
    return candidate if candidate.is_file() else None


def stored_record(text: Any) -> dict[str, str] | None:
    """The ``rates`` (count, as written), ``path`` and ``sha`` (sha256 of its rows) of the record of
    a stored funding file (:func:`threadx.engine.inputs.funding_summary`'s text), None for any
    other value (the record of a series passed from Python, a rate, ``"stored"``).

    >>> stored_record("<Series of 3 rates from /d/X-funding.parquet, sha256 " + "ab" * 32 + ">")["path"]
    '/d/X-funding.parquet'
    """
    record = _RECORD.match(text) if isinstance(text, str) else None
    return record.groupdict() if record else None


_RECORD = re.compile(r"^<Series of (?P<rates>[\d,]+) rates from (?P<path>.+), sha256 (?P<sha>[0-9a-f]{64})>$")


# --------------------------------------------------------------------------------- helpers


def _funding_exchange(exchange: Any) -> tuple[Any, str]:
    if isinstance(exchange, str):
        import ccxt

        exchange_id = exchange.strip().lower()
        cls = getattr(ccxt, exchange_id, None)
        if cls is None or not isinstance(cls, type):
            raise FetchError(f"unknown exchange {exchange!r}: use a ccxt exchange id such as 'binance'")
        ex = cls({"enableRateLimit": True})
    else:
        ex, exchange_id = exchange, str(getattr(exchange, "id", None) or type(exchange).__name__).lower()
    has = getattr(ex, "has", None) or {}
    if not has.get("fetchFundingRateHistory") or not callable(getattr(ex, "fetch_funding_rate_history", None)):
        raise FetchError(f"{exchange_id} does not provide funding-rate history (ccxt fetchFundingRateHistory); "
                         "download candles without --funding")
    return ex, exchange_id


def _network_error() -> type:
    import ccxt

    return ccxt.NetworkError


def _stamp(item: Any) -> int | None:
    value = item.get("timestamp") if isinstance(item, dict) else None
    return None if value is None else int(value)


def _rate(item: Any) -> float | None:
    value = item.get("fundingRate")
    try:
        rate = float(value)
    except (TypeError, ValueError):
        return None
    return rate if np.isfinite(rate) else None


def _merge(existing: pd.Series | None, rows: list[tuple[int, float]]) -> tuple[pd.Series, int]:
    """Stored and fetched settlements, sorted, one per timestamp (the fetched one wins); new count."""
    stamps = np.array([ts for ts, _ in rows], dtype=np.int64) * 1_000_000
    fetched = pd.Series([r for _, r in rows], dtype=np.float64,
                        index=pd.DatetimeIndex(pd.to_datetime(stamps, utc=True)).as_unit("ns"), name="rate")
    known = existing.index if existing is not None else pd.DatetimeIndex([], tz="UTC")
    merged = pd.concat([existing, fetched]) if existing is not None and len(existing) else fetched
    merged = merged.iloc[np.argsort(merged.index.asi8, kind="stable")]
    merged = merged[~merged.index.duplicated(keep="last")]
    merged.index.name = "timestamp"
    return merged, int((~merged.index.isin(known)).sum())
