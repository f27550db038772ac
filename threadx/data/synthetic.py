"""Deterministic synthetic crypto candles: the built-in sample when no data is on disk.

Model (per bar, log prices):

- **regimes**: a Markov chain of bull trend, bear trend and range, each lasting a random
  number of bars (mean about 3 weeks); trends add a drift, ranges pull the log price back
  towards its level at the start of the range (Ornstein-Uhlenbeck);
- **volatility clustering**: GARCH(1,1) variance driven by Student-t shocks (fat tails),
  scaled to the symbol's annualised volatility, with a mild intraday pattern;
- **jumps**: rare (about one every three weeks) Gaussian jumps of several sigmas;
- **candles**: open = previous close times a tiny gap, high/low extend beyond
  max/min(open, close) by half-normal excursions proportional to the bar's sigma;
- **volume**: lognormal around a symbol base, scaled up with the bar's volatility and the
  size of its move.

Everything comes from one ``numpy`` Generator seeded by ``seed`` and the symbol (CRC32), so
the same arguments give the same bytes; different symbols get different paths.
"""
from __future__ import annotations

import math
import os
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from threadx.data.timeframe import bars_per_year, timeframe_seconds

SAMPLE_SYMBOLS = ("BTC_USDT", "ETH_USDT", "SOL_USDT")
SAMPLE_TIMEFRAME = "1h"
# start price, annualised volatility, base volume per hour (base asset units)
_PROFILES = {
    "BTC_USDT": (30_000.0, 0.55, 900.0),
    "ETH_USDT": (2_000.0, 0.70, 9_000.0),
    "SOL_USDT": (50.0, 0.95, 120_000.0),
}
_REGIME_DRIFT = np.array([0.9, -0.7, 0.0])  # annualised log drift: bull, bear, range
_REGIME_MEAN_DAYS = 21.0
_RANGE_PULL_PER_DAY = 0.15  # fraction of the distance to the range level recovered per day
_JUMPS_PER_YEAR = 18.0


def _profile(symbol: str) -> tuple[float, float, float]:
    if symbol in _PROFILES:
        return _PROFILES[symbol]
    h = zlib.crc32(symbol.encode())
    return (10.0 ** (0.5 + (h % 4000) / 1000.0), 0.6 + (h % 50) / 100.0, 10_000.0)


def generate_synthetic(
    symbol: str = "BTC_USDT",
    timeframe: str = "1h",
    days: int = 730,
    seed: int = 42,
    start: str | pd.Timestamp = "2023-01-01",
) -> pd.DataFrame:
    """Synthetic canonical OHLCV frame (``attrs["synthetic"] = True``); same arguments, same data."""
    symbol = symbol.replace("/", "_").upper()
    step_s = timeframe_seconds(timeframe)
    n = int(days * 86400 // step_s)
    if n < 1:
        raise ValueError(f"days={days} gives no {timeframe} bar")
    price0, vol_annual, base_volume = _profile(symbol)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(symbol.encode())])
    per_year = bars_per_year(timeframe)
    bars_per_day = 86400 / step_s
    sigma = vol_annual / math.sqrt(per_year)

    # regimes: random durations, states drawn without immediate repeats
    mean_len = max(2.0, _REGIME_MEAN_DAYS * bars_per_day)
    lengths = rng.geometric(1.0 / mean_len, size=int(3 * n / mean_len) + 8)
    moves = rng.integers(1, 3, size=len(lengths))
    states = (rng.integers(0, 3) + np.cumsum(moves)) % 3
    regime = np.repeat(states, lengths)[:n]
    if len(regime) < n:
        regime = np.r_[regime, np.full(n - len(regime), 2)]
    regime_start = np.r_[True, regime[1:] != regime[:-1]]
    drift = _REGIME_DRIFT[regime] / per_year

    # shocks: Student-t(4) with unit variance, jumps, intraday volatility pattern
    z = rng.standard_t(4, size=n) / math.sqrt(2.0)
    jump_hit = rng.random(n) < _JUMPS_PER_YEAR / per_year
    jumps = np.where(jump_hit, rng.normal(0.0, 6.0 * sigma, size=n), 0.0)
    seconds_of_day = (pd.Timestamp(start).value // 10**9 + np.arange(n) * step_s) % 86400
    intraday = 1.0 + 0.25 * np.sin(2 * np.pi * (seconds_of_day / 86400.0 - 0.35))

    alpha, beta = 0.06, 0.92
    omega = sigma * sigma * (1.0 - alpha - beta)
    pull = min(1.0, _RANGE_PULL_PER_DAY / bars_per_day)
    var_lo, var_hi = (0.3 * sigma) ** 2, (4.0 * sigma) ** 2
    log_ret = np.empty(n)
    bar_sigma = np.empty(n)
    var, shock2, logp, anchor = sigma * sigma, sigma * sigma, 0.0, 0.0
    for i in range(n):  # the GARCH and range recursions are sequential; ~10 ms per 17k bars
        var = min(var_hi, max(var_lo, omega + alpha * shock2 + beta * var))
        s = math.sqrt(var) * intraday[i]
        shock = s * z[i]
        shock2 = shock * shock
        if regime_start[i]:
            anchor = logp
        r = drift[i] + shock + jumps[i]
        if regime[i] == 2:
            r -= pull * (logp - anchor)
        logp += r
        log_ret[i] = r
        bar_sigma[i] = s

    close = price0 * np.exp(np.cumsum(log_ret))
    prev_close = np.r_[price0, close[:-1]]
    open_ = prev_close * np.exp(rng.normal(0.0, 0.02, size=n) * bar_sigma)
    top, bottom = np.maximum(open_, close), np.minimum(open_, close)
    high = top * np.exp(np.abs(rng.normal(0.0, 0.5, size=n)) * bar_sigma)
    low = bottom * np.exp(-np.abs(rng.normal(0.0, 0.5, size=n)) * bar_sigma)
    activity = (bar_sigma / sigma) ** 1.5 * (1.0 + 2.0 * np.abs(log_ret) / bar_sigma)
    volume = base_volume * (step_s / 3600.0) * activity * rng.lognormal(0.0, 0.35, size=n)

    start_ts = pd.Timestamp(start)
    start_ts = start_ts.tz_localize("UTC") if start_ts.tzinfo is None else start_ts.tz_convert("UTC")
    index = pd.DatetimeIndex(
        pd.to_datetime(start_ts.value + np.arange(n, dtype=np.int64) * step_s * 10**9, unit="ns", utc=True),
        name="timestamp",
    )
    df = pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index)
    df.attrs.update(
        {"timeframe": timeframe, "name": f"synthetic/{symbol}-{timeframe}", "synthetic": True}
    )
    return df


def ensure_sample(data_root: str | os.PathLike | None = None) -> list[Path]:
    """Write ``<data_root>/synthetic/{BTC,ETH,SOL}_USDT-1h.parquet`` where missing (atomically); return the paths."""
    from threadx.config import settings
    from threadx.data.io import write_ohlcv

    root = Path(data_root).expanduser() if data_root is not None else settings().data_root
    paths = []
    for symbol in SAMPLE_SYMBOLS:
        path = root / "synthetic" / f"{symbol}-{SAMPLE_TIMEFRAME}.parquet"
        if not path.exists():
            write_ohlcv(generate_synthetic(symbol, SAMPLE_TIMEFRAME), path)
        paths.append(path)
    return paths


def main() -> None:
    """Write the sample if it is missing (`python -m threadx.data`, run by `make app`)."""
    for written in ensure_sample():
        print(f"sample dataset: {written}")
