"""`Bars`: the numpy arrays of a canonical OHLCV frame that engine paths work on.

The fingerprint (a hash of the index and the five columns' bytes) is computed once
per Bars object and keys every cache entry derived from the data. A Bars built from a
frame owns read-only copies of its arrays, so editing the frame in place can never
change a Bars (nor make its fingerprint lie).
"""
from __future__ import annotations

import hashlib
import threading
import weakref
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from threadx.data.timeframe import bar_spacing_ns, canonical_timeframe, infer_timeframe, spacing_disagreement
from threadx.errors import DataError

OHLCV_COLUMNS = ("open", "high", "low", "close", "volume")


@dataclass(eq=False, frozen=True)
class Bars:
    """Contiguous float64 OHLCV arrays plus the UTC bar-open times (int64 ns). Frozen: a
    strategy handed these bars cannot rebind ``bars.close`` for every later reader (the
    fingerprint, the indicator cache and the engine's fills would follow the rebound array)."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    time_ns: np.ndarray
    timeframe: str | None = None
    name: str | None = None
    _fingerprint: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for name in (*OHLCV_COLUMNS, "time_ns"):  # nor write into them (a writable array handed in)
            values = getattr(self, name)
            if isinstance(values, np.ndarray) and values.flags.writeable:
                view = values.view()
                view.flags.writeable = False
                object.__setattr__(self, name, view)

    @classmethod
    def from_frame(cls, df: pd.DataFrame, timeframe: str | None = None, name: str | None = None) -> "Bars":
        """Copy a canonical frame (UTC DatetimeIndex, float64 OHLCV columns) into read-only arrays."""
        missing = [c for c in OHLCV_COLUMNS if c not in df.columns]
        if missing:
            raise DataError(f"frame lacks columns {missing}; load it with threadx.load_ohlcv")
        twice = sorted({c for c in df.columns[df.columns.duplicated()] if c in OHLCV_COLUMNS})
        if twice:
            raise DataError(f"frame has the column(s) {twice} more than once; keep one of each")
        if not isinstance(df.index, pd.DatetimeIndex) or df.index.tz is None:
            raise DataError("frame index must be a tz-aware UTC DatetimeIndex; load it with threadx.load_ohlcv")
        try:
            cols = {c: _owned(df[c].to_numpy(dtype=np.float64)) for c in OHLCV_COLUMNS}
        except (TypeError, ValueError) as exc:
            raise DataError(f"OHLCV columns must be numeric: {exc}") from None
        time_ns = _owned(df.index.tz_convert("UTC").as_unit("ns").asi8)
        prices = np.stack([cols["open"], cols["high"], cols["low"], cols["close"]])
        if not (np.isfinite(prices).all() and (prices > 0).all()):
            raise DataError("prices must be finite and positive (NaN, inf or <= 0 found); "
                            "run `threadx data validate` on the source for the rows")
        if len(time_ns) > 1 and not (np.diff(time_ns) > 0).all():
            raise DataError("timestamps must be strictly increasing (unsorted or duplicated); "
                            "load the data with threadx.load_ohlcv, which reports and sorts")
        bad = np.flatnonzero(ohlc_inconsistent(cols["open"], cols["high"], cols["low"], cols["close"]))
        if len(bad):
            first = pd.Timestamp(int(time_ns[bad[0]]), tz="UTC")
            raise DataError(f"{len(bad)} bar(s) with high < max(open, close) or low > min(open, close), first at "
                            f"{first}; run `threadx data validate` on the source")
        told = timeframe or df.attrs.get("timeframe")  # (one inferred from the spacing agrees with it)
        told = canonical_timeframe(told) if told else told  # (60m is 1h: one spelling)
        tf = told or infer_timeframe(df.index)
        why = spacing_disagreement(bar_spacing_ns(df.index), told) if told and len(time_ns) > 2 else None
        if why and timeframe:
            raise DataError(f"{why} as the timeframe given says: pass the bars' own timeframe (gaps this many are "
                            "more bars missing than there; `threadx data validate` reports them)")
        if why:
            raise DataError(f"{why} as the frame's attrs['timeframe'] says (pandas keeps attrs through resample "
                            "and slicing): pass timeframe=, or clear df.attrs")
        return cls(time_ns=time_ns, timeframe=tf, name=name or df.attrs.get("name"), **cols)

    def __getitem__(self, column: str) -> np.ndarray:
        """``bars["close"]`` as ``bars.close`` (a strategy written as for a pandas frame):
        a read-only array of one of open, high, low, close, volume.

        >>> Bars(*(np.ones(2) for _ in range(5)), np.arange(2))["close"].tolist()
        [1.0, 1.0]
        """
        if column not in OHLCV_COLUMNS:
            raise KeyError(f"bars has no column {column!r}: bars.open, .high, .low, .close, .volume (arrays, one "
                           "per bar), .index (their UTC open times), .timeframe")
        return getattr(self, column)

    def __len__(self) -> int:
        return len(self.close)

    @property
    def fingerprint(self) -> str:
        """Hex digest of index and OHLCV bytes, computed on first use and kept."""
        if self._fingerprint is None:
            digest = hashlib.blake2b(digest_size=16)
            digest.update(self.time_ns.tobytes())
            for col in OHLCV_COLUMNS:
                digest.update(getattr(self, col).tobytes())
            object.__setattr__(self, "_fingerprint", digest.hexdigest())  # (computed once, then kept)
        return self._fingerprint

    @cached_property
    def index(self) -> pd.DatetimeIndex:
        """Bar-open times as a UTC DatetimeIndex named ``timestamp``."""
        return pd.DatetimeIndex(pd.to_datetime(self.time_ns, utc=True), name="timestamp")

    def slice(self, start: int, stop: int) -> "Bars":
        """Bars[start:stop] as a new object (own fingerprint)."""
        return Bars(
            *(getattr(self, c)[start:stop] for c in OHLCV_COLUMNS),
            time_ns=self.time_ns[start:stop],
            timeframe=self.timeframe,
            name=self.name,
        )


def common_candles(a: Bars, b: Bars) -> int:
    """How many bar times ``a`` and ``b`` share when the candles (open, high, low, close) at every
    one of them are the same and move, else 0: one market's candles under two names, or one a
    cut of the other (a later start, a month left out), however their files differ. Another
    exchange's or another pair's candles are never the same bar for bar; candles that never move
    (a flat stablecoin) say nothing of which market they are, and count as none.

    >>> import pandas as pd
    >>> df = pd.DataFrame({c: [1.0, 2.0, 3.0] for c in OHLCV_COLUMNS},
    ...                   index=pd.date_range("2024-01-01", periods=3, freq="h", tz="UTC"))
    >>> common_candles(as_bars(df), as_bars(df.iloc[1:])), common_candles(as_bars(df), as_bars(df * 2))
    (2, 0)
    """
    ta, tb = a.time_ns, b.time_ns
    if not len(ta) or not len(tb) or ta[-1] < tb[0] or tb[-1] < ta[0]:
        return 0
    # the first bar time they share, if any, and its candle: most other markets differ there (a pairwise
    # check of 50 runners took 21 s at 1m bars when every pair was intersected whole)
    first = max(ta[0], tb[0])
    i, j = int(np.searchsorted(ta, first)), int(np.searchsorted(tb, first))
    if i < len(ta) and j < len(tb) and ta[i] == tb[j] and a.close[i] != b.close[j]:
        return 0
    shared, ia, ib = np.intersect1d(ta, tb, assume_unique=True, return_indices=True)
    if not len(shared):
        return 0
    columns = [(getattr(a, col)[ia], getattr(b, col)[ib]) for col in ("open", "high", "low", "close")]
    if not all(np.array_equal(x, y, equal_nan=True) for x, y in columns):
        return 0
    moved = any(np.ptp(x[np.isfinite(x)]) > 0 for x, _ in columns if np.isfinite(x).any())
    return int(len(shared)) if moved else 0


def ohlc_inconsistent(o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Bars whose high is below their open or close, or whose low is above either (no such
    candle can trade): the one rule of the importer's validation and of :meth:`Bars.from_frame`."""
    with np.errstate(invalid="ignore"):
        return (h < np.maximum(o, c)) | (lo > np.minimum(o, c))


def _owned(values: np.ndarray) -> np.ndarray:
    """A contiguous read-only copy that no frame shares (one copy per column per Bars)."""
    arr = np.array(values, order="C", copy=True)
    arr.flags.writeable = False
    return arr


# id(frame) -> (weak reference to the frame, (timeframe, name) asked for, its Bars); one lock,
# as the workstation's script threads and sweep threads call as_bars at the same time
_FRAME_CACHE: dict[int, tuple[weakref.ref, tuple, Bars]] = {}
_FRAME_CACHE_LOCK = threading.Lock()


def as_bars(data: "pd.DataFrame | Bars", timeframe: str | None = None) -> Bars:
    """Accept a canonical frame or Bars.

    Frames are remembered (weakly) with their Bars, so a frame passed again keeps its
    fingerprint instead of being copied and hashed anew. The remembered Bars owns copies,
    so comparing them with the frame's current values is a real check: a frame edited in
    place gets a new Bars (and new fingerprint), never stale indicators.
    """
    if isinstance(data, Bars):
        return data
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"expected an OHLCV DataFrame or Bars, got {type(data).__name__}")
    asked = (timeframe or data.attrs.get("timeframe"), data.attrs.get("name"))
    with _FRAME_CACHE_LOCK:
        entry = _FRAME_CACHE.get(id(data))
    if entry is not None and entry[0]() is data and entry[1] == asked and _same_values(entry[2], data):
        return entry[2]
    fresh = Bars.from_frame(data, timeframe=timeframe)
    with _FRAME_CACHE_LOCK:
        for key in [k for k, (ref, _, _) in _FRAME_CACHE.items() if ref() is None]:
            del _FRAME_CACHE[key]
        _FRAME_CACHE[id(data)] = (weakref.ref(data), asked, fresh)
    return fresh


def _same_values(bars: Bars, df: pd.DataFrame) -> bool:
    """True when the frame still holds exactly the bars' times and OHLCV values (no copy made)."""
    index = df.index
    if len(df) != len(bars) or not isinstance(index, pd.DatetimeIndex) or index.tz is None:
        return False
    if not np.array_equal(index.as_unit("ns").asi8, bars.time_ns):
        return False
    try:
        return all(
            np.array_equal(df[c].to_numpy(dtype=np.float64), getattr(bars, c)) for c in OHLCV_COLUMNS
        )
    except (KeyError, TypeError, ValueError):
        return False
