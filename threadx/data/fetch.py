"""Download OHLCV candles with ccxt into the data root: incremental, paginated, safe.

``fetch_ohlcv`` resumes after the last stored bar, pages forward with ``since``/``limit``,
sleeps the exchange's ``rateLimit`` between calls, retries network-type failures
(``ccxt.NetworkError`` and its subclasses ``RequestTimeout``, ``RateLimitExceeded``,
``DDoSProtection``, ``ExchangeNotAvailable``...) with exponential backoff, and turns any
other failure into a FetchError. New candles are merged with the stored ones (a repeated
timestamp keeps the newly fetched row), the merged frame is validated, and only then written
atomically; on any failure the stored file is left exactly as it was. The candle that is
still open (open time + timeframe > now) is never stored.

ccxt is imported only when an exchange id string has to be turned into an exchange object
or its error classes are needed, so ``import threadx.data`` stays cheap.
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from threadx.data.catalog import dataset_path, normalize_symbol
from threadx.data.io import OHLCV_COLUMNS, read_ohlcv_file, write_ohlcv
from threadx.data.timeframe import timeframe_seconds
from threadx.data.validate import ValidationReport, validate_ohlcv
from threadx.errors import DataError, ExchangeUnreachable, FetchError, ParamError

DEFAULT_HISTORY_DAYS = 365
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 60.0


@dataclass
class FetchResult:
    """Outcome of one download: the stored file, how many bars are new, the merged data's report."""

    path: Path
    new_bars: int
    total_bars: int
    report: ValidationReport
    gaps: list[tuple[pd.Timestamp, pd.Timestamp, int]]


def fetch_ohlcv(
    exchange: Any,
    symbol: str,
    timeframe: str = "1h",
    since: Any = None,
    until: Any = None,
    *,
    data_root: str | os.PathLike | None = None,
    progress: Callable[[int, int], None] | None = None,
    max_retries: int = 5,
    limit: int = 1000,
    sleep: Callable[[float], None] = time.sleep,
) -> FetchResult:
    """Download ``symbol`` candles into ``<data_root>/<exchange>/<BASE>_<QUOTE>-<tf>.parquet``.

    ``exchange`` is a ccxt id (``"binance"``) or an object with ccxt's
    ``fetch_ohlcv(symbol, timeframe, since, limit)`` (optional ``id``, ``rateLimit`` in ms,
    ``milliseconds()``). ``since``/``until`` (ms, ISO string or Timestamp; UTC; ``until``
    exclusive, default now): with a stored file the download resumes after its last bar (and
    also covers ``since`` up to its first bar if ``since`` is earlier); without one it starts at
    ``since`` (default: 365 days ago). ``progress(done_ms, total_ms)`` is called after each page.
    Raises FetchError when the exchange fails after ``max_retries`` retries, returns no candle
    for a new dataset, or the merged data does not validate.
    """
    check_span(since, until)
    ex, exchange_id = _exchange(exchange)
    market = _market_symbol(symbol)
    path = dataset_path(exchange_id, normalize_symbol(market), timeframe, data_root)
    tf_ms = _timeframe_ms(ex, timeframe)
    now_ms = int(ex.milliseconds()) if callable(getattr(ex, "milliseconds", None)) else int(time.time() * 1000)
    stop_ms = min(_to_ms(until), now_ms) if until is not None else now_ms
    label = f"{exchange_id} {market} {timeframe}"

    existing: pd.DataFrame | None = None
    if path.exists():
        try:
            existing = read_ohlcv_file(path)
        except DataError as exc:
            raise FetchError(f"{label}: the stored file cannot be read, move it away first ({exc})") from exc
    windows: list[tuple[int, int]] = []
    if existing is not None and len(existing):
        first_ms = int(existing.index.asi8.min()) // 1_000_000
        last_ms = int(existing.index.asi8.max()) // 1_000_000
        if since is not None and _to_ms(since) < first_ms:
            windows.append((_to_ms(since), first_ms))
        windows.append((last_ms + tf_ms, stop_ms))
    else:
        start_ms = _to_ms(since) if since is not None else now_ms - DEFAULT_HISTORY_DAYS * 86_400_000
        windows.append((start_ms, stop_ms))
    windows = [(a, b) for a, b in windows if a < b]

    total = sum(b - a for a, b in windows)
    done = 0
    rows: list[list[float]] = []
    calls = 0
    rate_s = float(getattr(ex, "rateLimit", 0) or 0) / 1000.0
    for lo, hi in windows:
        cursor = lo
        while cursor < hi:
            if calls and rate_s > 0:
                sleep(rate_s)
            batch = call_with_retries(lambda c=cursor: ex.fetch_ohlcv(market, timeframe, c, limit), cursor,
                                      max_retries, sleep, label)
            calls += 1
            if not batch:
                break
            stamps = [int(c[0]) for c in batch]
            # keep every closed candle before the stop, also one repeated from before `since`:
            # a repeated timestamp keeps the newly fetched row when merged
            rows.extend(_row(c) for c, ts in zip(batch, stamps) if ts < stop_ms and ts + tf_ms <= now_ms)
            newest = max(stamps)
            if newest < cursor:
                break  # the exchange returned nothing new: stop rather than loop
            done += min(newest + tf_ms, hi) - cursor
            cursor = newest + tf_ms
            if progress is not None:
                progress(min(done, total), total)
    if progress is not None:
        progress(total, total)

    fetched = _frame(rows)
    if existing is None and fetched.empty:
        raise FetchError(f"{label}: the exchange returned no closed candle between {_iso(windows, 0)} and {_iso(windows, 1)}")
    if existing is not None:
        merged = pd.concat([existing, fetched]) if len(fetched) else existing
        known = existing.index
    else:
        merged, known = fetched, pd.DatetimeIndex([], tz="UTC")
    merged = merged.iloc[np.argsort(merged.index.asi8, kind="stable")]
    merged = merged[~merged.index.duplicated(keep="last")]
    new_bars = int((~merged.index.isin(known)).sum())
    report = validate_ohlcv(merged, timeframe)
    if not report.ok:
        raise FetchError(f"{label}: downloaded data is invalid, nothing saved: {'; '.join(report.errors[:3])}")
    changed = existing is None or len(fetched) and not _same(existing, merged)
    if changed:
        merged.attrs = {"timeframe": timeframe, "synthetic": False}
        write_ohlcv(merged, path)  # atomic; DataError "cannot write ..." on an OS failure
    return FetchResult(path=path, new_bars=new_bars, total_bars=len(merged), report=report, gaps=list(report.gaps))


# --------------------------------------------------------------------------------- helpers


def _exchange(exchange: Any) -> tuple[Any, str]:
    if isinstance(exchange, str):
        import ccxt

        exchange_id = exchange.strip().lower()
        cls = getattr(ccxt, exchange_id, None)
        if cls is None or not isinstance(cls, type):
            raise FetchError(f"unknown exchange {exchange!r}: use a ccxt exchange id such as 'binance'")
        return cls({"enableRateLimit": True}), exchange_id
    if not callable(getattr(exchange, "fetch_ohlcv", None)):
        raise FetchError(f"{type(exchange).__name__} has no fetch_ohlcv(symbol, timeframe, since, limit)")
    exchange_id = str(getattr(exchange, "id", None) or type(exchange).__name__).lower()
    return exchange, exchange_id


def _market_symbol(symbol: str) -> str:
    """``BTC_USDT`` -> ``BTC/USDT`` (``BTC_USDT_USDT`` -> ``BTC/USDT:USDT``); ccxt symbols unchanged."""
    symbol = symbol.strip().upper()
    if "/" in symbol or "_" not in symbol:
        return symbol
    parts = symbol.split("_")
    return f"{parts[0]}/{parts[1]}" + (f":{parts[2]}" if len(parts) > 2 else "")


def _timeframe_ms(ex: Any, timeframe: str) -> int:
    try:
        return timeframe_seconds(timeframe) * 1000
    except DataError:
        parse = getattr(ex, "parse_timeframe", None)
        if callable(parse):
            return int(parse(timeframe)) * 1000
        raise


def check_span(since: Any, until: Any) -> None:
    """ParamError when ``until`` is not after ``since`` (a download of nothing: it read "the
    exchange returned no closed candle between ? and ?", or "0 new bars" with exit 0)."""
    if since is not None and until is not None and _to_ms(until) <= _to_ms(since):
        raise ParamError(f"until ({until}) is not after since ({since}): nothing to download; until is exclusive")


def _to_ms(value: Any) -> int:
    """A time (epoch ms, ISO text or Timestamp; UTC when naive) as epoch ms; ParamError naming
    the value when it is no time (``--since garbage``, a 13th month)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError, OverflowError) as exc:  # pandas' DateParseError is a ValueError
        raise ParamError(f"{value!r} is not a time: use a date such as 2024-01-31 or 2024-01-31T12:00 (UTC) "
                         f"({exc})") from None
    if ts is pd.NaT:
        raise ParamError(f"{value!r} is not a time: use a date such as 2024-01-31 (UTC)")
    try:
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        return int(ts.value // 1_000_000)
    except (OverflowError, ValueError) as exc:  # a year before 1677 or after 2262
        raise ParamError(f"{value!r} is not a time ThreadX can hold ({exc})") from None


def _iso(windows: list[tuple[int, int]], which: int) -> str:
    if not windows:
        return "?"
    ms = windows[0][0] if which == 0 else windows[-1][1]
    return pd.Timestamp(ms, unit="ms", tz="UTC").isoformat()


def call_with_retries(call: Callable[[], Any], since: int, max_retries: int, sleep: Callable, label: str) -> list:
    """One page of an exchange's history, ``call()``, retried with exponential backoff on network
    errors (``max_retries`` times); FetchError naming ``label`` and ``since`` otherwise."""
    import ccxt

    attempt = 0
    while True:
        try:
            return list(call() or [])
        except ccxt.NetworkError as exc:  # RequestTimeout, RateLimitExceeded, DDoSProtection, ...
            if _unresolvable(exc) and attempt >= min(1, max_retries):  # offline: not 31 s of backoff first
                raise ExchangeUnreachable(f"{label}: the exchange's host cannot be resolved (no network, or no "
                                          f"DNS?): {_line(exc)}") from exc
            if attempt >= max_retries:
                raise ExchangeUnreachable(
                    f"{label}: {type(exc).__name__} after {max_retries} retries at since={since}: {_line(exc)}"
                ) from exc
            sleep(min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2**attempt))
            attempt += 1
        except ccxt.BaseError as exc:
            raise FetchError(f"{label}: {type(exc).__name__}: {_line(exc)}") from exc
        except Exception as exc:  # noqa: BLE001 - a broken exchange object must not corrupt anything either
            raise FetchError(f"{label}: unexpected {type(exc).__name__}: {_line(exc)}") from exc


_TRY_AGAIN = "Temporary failure in name resolution"
_NO_NAME = ("Failed to resolve", "Name or service not known", "nodename nor servname", "getaddrinfo failed",
            "No address associated with hostname")  # urllib3, glibc, macOS, Windows, Android/musl


def _unresolvable(exc: BaseException) -> bool:
    """Whether a network error is a host name that does not resolve (offline, or no DNS), looking
    through the exceptions it was raised from; not a resolver that answered "try again"
    (EAI_AGAIN, "Temporary failure in name resolution": retried as any network error)."""
    seen: set[int] = set()
    found = False
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if (isinstance(exc, socket.gaierror) and exc.errno == socket.EAI_AGAIN) or _TRY_AGAIN in str(exc):
            return False
        found = found or isinstance(exc, socket.gaierror) or any(text in str(exc) for text in _NO_NAME)
        exc = exc.__cause__ or exc.__context__
    return found


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else "no details"


def _row(candle: Any) -> list[float]:
    values = [np.nan if x is None else float(x) for x in list(candle)[:6]]
    return values + [np.nan] * (6 - len(values))


def _frame(rows: list[list[float]]) -> pd.DataFrame:
    arr = np.asarray(rows, dtype=np.float64).reshape(-1, 6) if rows else np.empty((0, 6))
    index = pd.DatetimeIndex(pd.to_datetime(arr[:, 0].astype(np.int64), unit="ms", utc=True), name="timestamp")
    data = {c: arr[:, i + 1] for i, c in enumerate(OHLCV_COLUMNS)}
    return pd.DataFrame(data, index=index.as_unit("ns"))


def _same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    return len(a) == len(b) and bool(np.array_equal(a.index.asi8, b.index.asi8)) and all(
        np.array_equal(a[c].to_numpy(), b[c].to_numpy(), equal_nan=True) for c in OHLCV_COLUMNS
    )
