"""Small clean candle frames for tests (a seeded random walk)."""
from __future__ import annotations

import numpy as np
import pandas as pd


def candles(n: int, start: pd.Timestamp, seed: int = 5) -> pd.DataFrame:
    """``n`` clean 1h candles from ``start`` (a small random walk, seeded)."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.003, n)))
    open_ = np.r_[100.0, close[:-1]]
    index = pd.date_range(start, periods=n, freq="1h", name="timestamp").as_unit("ns")
    return pd.DataFrame({"open": open_, "high": np.maximum(open_, close) * 1.002,
                         "low": np.minimum(open_, close) * 0.998, "close": close,
                         "volume": rng.uniform(1, 2, n)}, index=index)


def funded_dataset(folder, symbol: str, seed: int, rate: float | None, days: int = 200) -> pd.DataFrame:
    """Synthetic 1h candles of ``symbol`` written to ``folder/<symbol>-1h.parquet``, and beside them,
    when ``rate`` is given, a funding file of that rate at every 8 h settlement; returns the candles."""
    from threadx.data.funding import write_funding
    from threadx.data.io import write_ohlcv
    from threadx.data.synthetic import generate_synthetic

    df = generate_synthetic(symbol, days=days, seed=seed)
    write_ohlcv(df, folder / f"{symbol}-1h.parquet")
    if rate is not None:
        times = pd.date_range(df.index[0].floor("8h"), df.index[-1], freq="8h")
        write_funding(pd.Series(rate, index=times), folder / f"{symbol}-funding.parquet")
    return df
