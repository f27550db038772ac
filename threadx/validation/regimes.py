"""Market regime of a price window (SPEC §7) and out-of-sample results per regime.

Rules, checked in this order on the asset's close prices over one (OOS) window:

- crash: somewhere in the window the price fell more than ``crash_drawdown`` (30 %) from a
  running peak to a low at most ``crash_days`` (14) days later; a crash that recovers is
  still a crash;
- bull: window return (last / first close - 1) above +``trend`` (20 %);
- bear: window return below -``trend``;
- range: otherwise.

The crash test uses bar timestamps, not bar counts, so it means the same on any timeframe:
for each bar j, the highest close of the bars i <= j with time[j] - time[i] <= crash_days
(inclusive) is a sliding-window maximum, answered for all bars at once by a sparse table of
maxima (O(n log n) numpy, a few milliseconds for 50k bars).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from threadx.errors import ParamError

REGIMES = ("crash", "bull", "bear", "range")
CRASH_DRAWDOWN = 0.30  # a fall of more than this (a fraction) ...
CRASH_DAYS = 14  # ... completed within this many days is a crash
TREND = 0.20  # a window return beyond +/- this (a fraction) is a bull / bear
# what a label's max_drawdown is (not the window's max drawdown: the worst fall completed within CRASH_DAYS)
FALL_LABEL = f"worst {CRASH_DAYS}-day fall"
RULES_TEXT = (f"Crash: a fall of more than {CRASH_DRAWDOWN:.0%} within {CRASH_DAYS} days; bull / bear: a window return "
              f"above +{TREND:.0%} / below -{TREND:.0%}; range otherwise.").replace("%", " %")
NS_PER_DAY = 86_400 * 1_000_000_000


@dataclass(frozen=True)
class RegimeLabel:
    """Regime of one window. ``return_pct`` is in percent (25.0 = +25 %); ``max_drawdown`` is
    the worst fall completed within ``crash_days``, a negative fraction (-0.35 = a 35 % fall)."""

    regime: str
    return_pct: float
    max_drawdown: float
    start_ns: int
    end_ns: int
    drawdown_peak_ns: int
    drawdown_trough_ns: int
    crash_drawdown: float
    crash_days: float
    trend: float

    @property
    def start(self) -> pd.Timestamp:
        return pd.Timestamp(self.start_ns, tz="UTC")

    @property
    def end(self) -> pd.Timestamp:
        return pd.Timestamp(self.end_ns, tz="UTC")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe plain values, with ISO-8601 start and end added."""
        out = {k: (v if isinstance(v, str) else (int(v) if k.endswith("_ns") else float(v)))
               for k, v in asdict(self).items()}
        out["start"] = self.start.isoformat()
        out["end"] = self.end.isoformat()
        return out


def classify_regime(
    close: np.ndarray,
    time_ns: np.ndarray,
    *,
    crash_drawdown: float = CRASH_DRAWDOWN,
    crash_days: float = CRASH_DAYS,
    trend: float = TREND,
) -> RegimeLabel:
    """Label a price window crash / bull / bear / range (crash checked first; see the module doc).

    ``close``: positive prices in time order; ``time_ns``: the bar times as int64 epoch
    nanoseconds (a datetime64 array or a DatetimeIndex is accepted too), strictly increasing.
    """
    c = np.asarray(close, dtype=np.float64)
    t = _to_ns(time_ns)
    if c.ndim != 1 or len(c) < 2:
        raise ParamError(f"need at least 2 close prices in a one-dimensional array, got shape {c.shape}")
    if t.shape != c.shape:
        raise ParamError(f"close ({len(c)}) and time_ns ({t.size}) must have the same length")
    if not np.isfinite(c).all() or (c <= 0).any():
        raise ParamError("close prices must be finite and positive")
    if (np.diff(t) <= 0).any():
        raise ParamError("time_ns must be strictly increasing")
    if not 0.0 < crash_drawdown < 1.0:
        raise ParamError(f"crash_drawdown is a fraction in (0, 1) (0.30 = 30 %), got {crash_drawdown!r}")
    if not crash_days > 0:
        raise ParamError(f"crash_days must be positive, got {crash_days!r}")
    if not trend > 0:
        raise ParamError(f"trend is a positive fraction (0.20 = 20 %), got {trend!r}")

    window_ns = round(float(crash_days) * NS_PER_DAY)
    left = np.searchsorted(t, t - window_ns, side="left")  # first bar within crash_days of bar j
    peak = _range_max(c, left)
    falls = c / peak - 1.0
    j = int(np.argmin(falls))
    mdd = float(min(falls[j], 0.0))
    seg = c[left[j]:j + 1]
    i = int(left[j] + len(seg) - 1 - np.argmax(seg[::-1]))  # the last bar at the peak: where the fall starts
    ret = float(c[-1] / c[0] - 1.0)
    if mdd < -crash_drawdown:
        regime = "crash"
    elif ret > trend:
        regime = "bull"
    elif ret < -trend:
        regime = "bear"
    else:
        regime = "range"
    return RegimeLabel(
        regime=regime, return_pct=100.0 * ret, max_drawdown=mdd, start_ns=int(t[0]), end_ns=int(t[-1]),
        drawdown_peak_ns=int(t[i]), drawdown_trough_ns=int(t[j]), crash_drawdown=float(crash_drawdown),
        crash_days=float(crash_days), trend=float(trend),
    )


def regime_summary(
    labels: Sequence[str], oos_sharpe: Sequence[float], oos_return: Sequence[float]
) -> pd.DataFrame:
    """One row per regime present (in the order crash, bull, bear, range), indexed by regime.

    Columns: n_windows, mean_oos_sharpe, consistency (share of the regime's windows with an
    OOS return > 0; a NaN return counts as not positive) and mean_return (in the units of
    ``oos_return``). Means skip NaN values.
    """
    lab = [str(x) for x in labels]
    sh = np.asarray(oos_sharpe, dtype=np.float64)
    ret = np.asarray(oos_return, dtype=np.float64)
    if not (len(lab) == sh.size == ret.size):
        raise ParamError(f"labels ({len(lab)}), oos_sharpe ({sh.size}) and oos_return ({ret.size}) "
                         "must have one value per window")
    unknown = sorted(set(lab) - set(REGIMES))
    if unknown:
        raise ParamError(f"unknown regime labels {unknown}: expected {list(REGIMES)}")
    frame = pd.DataFrame({"regime": lab, "sharpe": sh, "ret": ret})
    rows = []
    for name in REGIMES:
        part = frame[frame["regime"] == name]
        if part.empty:
            continue
        rows.append({
            "regime": name,
            "n_windows": len(part),
            "mean_oos_sharpe": _nanmean(part["sharpe"].to_numpy()),
            "consistency": float(np.mean(part["ret"].to_numpy() > 0)),
            "mean_return": _nanmean(part["ret"].to_numpy()),
        })
    cols = ["n_windows", "mean_oos_sharpe", "consistency", "mean_return"]
    if not rows:
        return pd.DataFrame(columns=cols, index=pd.Index([], name="regime"))
    return pd.DataFrame(rows).set_index("regime")[cols]


def _nanmean(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else math.nan


def _range_max(values: np.ndarray, left: np.ndarray) -> np.ndarray:
    """max(values[left[j] : j + 1]) for every j, by a sparse table of power-of-two range maxima."""
    n = len(values)
    right = np.arange(n)
    length = right - left + 1
    k = np.floor(np.log2(length)).astype(np.int64)
    # Guard the float log2 at exact powers of two.
    k -= (1 << k) > length
    k += (1 << (k + 1)) <= length
    out = np.empty(n)
    level = values.copy()
    for p in range(int(k.max()) + 1):
        if p:
            half = 1 << (p - 1)
            level = np.maximum(level[:-half], level[half:])  # level[i] = max(values[i : i + 2^p])
        sel = k == p
        if sel.any():
            lo, hi = left[sel], right[sel] - (1 << p) + 1
            out[sel] = np.maximum(level[lo], level[hi])
    return out


def _to_ns(time_ns: Any) -> np.ndarray:
    if isinstance(time_ns, pd.DatetimeIndex):
        return time_ns.as_unit("ns").asi8
    if isinstance(time_ns, pd.Series) and pd.api.types.is_datetime64_any_dtype(time_ns):
        return pd.DatetimeIndex(time_ns).as_unit("ns").asi8
    t = np.asarray(time_ns)
    if t.dtype == object:  # e.g. tz-aware Timestamps
        try:
            return pd.DatetimeIndex(pd.to_datetime(t, utc=True)).as_unit("ns").asi8
        except (TypeError, ValueError) as exc:
            raise ParamError(f"time_ns must be int64 epoch nanoseconds or datetimes: {exc}") from None
    if np.issubdtype(t.dtype, np.datetime64):
        return t.astype("datetime64[ns]").astype(np.int64)
    if not np.issubdtype(t.dtype, np.integer):
        raise ParamError(f"time_ns must be int64 epoch nanoseconds or datetimes, got dtype {t.dtype}")
    return t.astype(np.int64)
