"""Indicator kernels and registry against independent numpy/pandas/plain-Python references."""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from threadx.data.bars import Bars, as_bars
from threadx.errors import ParamError
from threadx.indicators import INDICATORS, compute, compute_many, compute_requests, normalize
from threadx.indicators import kernels as K
from threadx.indicators import registry as R

RTOL = 1e-9


def _data_dir() -> Path:
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _load(name: str) -> Bars:
    path = _data_dir() / "binance" / name
    if not path.exists():
        pytest.skip(f"real candles not available: {path} is missing")
    return as_bars(pd.read_parquet(path).set_index("timestamp"))


@pytest.fixture(scope="module", params=["BTC_USDT-1h.parquet", "ETH_USDT-1h.parquet"])
def hourly(request) -> Bars:
    return _load(request.param)


@pytest.fixture(scope="module")
def btc5m() -> Bars:
    return _load("BTC_USDT-5m.parquet")


def synthetic_bars(n: int = 3000, seed: int = 7) -> Bars:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.005, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.005, n))
    vol = rng.uniform(1, 10, n)
    idx = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC", name="timestamp")
    df = pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": vol}, index=idx)
    return as_bars(df)


# ------------------------------------------------------------------ comparison helper
def assert_close(actual, expected, rtol=RTOL, scale=None, atol=None):
    """Same NaN positions, and |a - e| <= rtol * (|e| + scale) + atol.

    ``scale`` (default 0: purely relative) is for lines that cross zero (z, MACD, ...),
    where a relative test is ill-posed; it is the magnitude of the line. ``atol`` (scalar
    or per-element array) is for the reference's own rounding in ill-conditioned spots.
    """
    actual = np.asarray(actual, dtype=float)
    expected = np.asarray(expected, dtype=float)
    assert actual.shape == expected.shape
    na, ne = np.isnan(actual), np.isnan(expected)
    assert np.array_equal(na, ne), f"NaN positions differ: first at {np.flatnonzero(na != ne)[:5]}"
    ok = ~ne
    err = np.abs(actual[ok] - expected[ok])
    bound = rtol * (np.abs(expected[ok]) + (scale or 0.0))
    if atol is not None:
        bound = bound + np.broadcast_to(np.asarray(atol, dtype=float), expected.shape)[ok]
    bad = err > bound
    assert not bad.any(), (
        f"{bad.sum()} values off, worst rel {np.max(err / np.maximum(np.abs(expected[ok]), 1e-300)):.3g}"
    )


def leading_nans(a) -> int:
    valid = np.flatnonzero(~np.isnan(a))
    return int(valid[0]) if len(valid) else len(a)


# --------------------------------------------------------------------------- references
def ref_sma(x, n):
    return pd.Series(x).rolling(n).mean().to_numpy()


def ref_std(x, n):
    """Two-pass population std of each window (numpy), NaN for the first n-1."""
    out = np.full(len(x), np.nan)
    if len(x) >= n:
        w = np.lib.stride_tricks.sliding_window_view(np.asarray(x, dtype=float), n)
        out[n - 1:] = w.std(axis=1)
    return out


def ref_ewm(x, n, alpha):
    """pandas ewm(adjust=False) seeded with the mean of the first n consecutive valid values."""
    s = pd.Series(np.asarray(x, dtype=float))
    full = s.notna().astype(float).rolling(n).sum().to_numpy() == n
    if not full.any():
        return np.full(len(s), np.nan)
    start = int(np.argmax(full))
    seeded = pd.Series(np.nan, index=s.index)
    seeded.iloc[start] = s.iloc[start - n + 1:start + 1].mean()
    seeded.iloc[start + 1:] = s.iloc[start + 1:]
    return seeded.ewm(alpha=alpha, adjust=False).mean().to_numpy()


def ref_ema(x, n):
    return ref_ewm(x, n, 2.0 / (n + 1))


def ref_rma(x, n):
    return ref_ewm(x, n, 1.0 / n)


def ref_tr(h, l, c):
    pc = np.concatenate([[np.nan], c[:-1]])
    tr = np.fmax(h - l, np.fmax(np.abs(h - pc), np.abs(l - pc)))
    tr[0] = h[0] - l[0]
    return tr


def ref_atr(h, l, c, n, method):
    tr = ref_tr(h, l, c)
    return {"wilder": ref_rma, "ema": ref_ema, "sma": ref_sma}[method](tr, n)


def ref_bollinger(c, n, k):
    mid = ref_sma(c, n)
    sd = ref_std(c, n)
    upper, lower = mid + k * sd, mid - k * sd
    with np.errstate(divide="ignore", invalid="ignore"):
        return dict(mid=mid, upper=upper, lower=lower, z=(c - mid) / sd,
                    pctb=(c - lower) / (upper - lower), width=(upper - lower) / mid)


def ref_rsi(c, n):
    d = pd.Series(c).diff()
    ag = ref_rma(d.clip(lower=0).to_numpy(), n)
    al = ref_rma((-d).clip(lower=0).to_numpy(), n)
    with np.errstate(divide="ignore"):
        return 100.0 - 100.0 / (1.0 + ag / al)


def ref_macd(c, f, s, sig):
    line = ref_ema(c, f) - ref_ema(c, s)
    signal = ref_ema(line, sig)
    return line, signal, line - signal


def ref_adx_loop(h, l, c, n):
    """Wilder's original running sums, plain Python."""
    size = len(c)
    adx, pdi, mdi = (np.full(size, np.nan) for _ in range(3))
    tr_s = p_s = m_s = 0.0
    dxs = []
    adx_v = None
    for i in range(1, size):
        up, dn = h[i] - h[i - 1], l[i - 1] - l[i]
        pdm = up if (up > dn and up > 0) else 0.0
        mdm = dn if (dn > up and dn > 0) else 0.0
        tr = max(h[i] - l[i], abs(h[i] - c[i - 1]), abs(l[i] - c[i - 1]))
        if i <= n:
            tr_s += tr
            p_s += pdm
            m_s += mdm
            if i < n:
                continue
        else:
            tr_s = tr_s - tr_s / n + tr
            p_s = p_s - p_s / n + pdm
            m_s = m_s - m_s / n + mdm
        p = 100.0 * p_s / tr_s if tr_s > 0 else 0.0
        m = 100.0 * m_s / tr_s if tr_s > 0 else 0.0
        pdi[i], mdi[i] = p, m
        dx = 100.0 * abs(p - m) / (p + m) if p + m > 0 else 0.0
        dxs.append(dx)
        if len(dxs) == n:
            adx_v = sum(dxs) / n
        elif len(dxs) > n:
            adx_v = (adx_v * (n - 1) + dx) / n
        if adx_v is not None:
            adx[i] = adx_v
    return adx, pdi, mdi


def ref_supertrend_loop(h, l, c, n, mult):
    """Plain-Python SuperTrend over a loop-computed Wilder ATR (TradingView rules,
    direction mapped to +1 up / -1 down)."""
    size = len(c)
    tr = [h[0] - l[0]] + [max(h[i] - l[i], abs(h[i] - c[i - 1]), abs(l[i] - c[i - 1])) for i in range(1, size)]
    atr = [math.nan] * size
    if size >= n:
        atr[n - 1] = sum(tr[:n]) / n
        for i in range(n, size):
            atr[i] = (atr[i - 1] * (n - 1) + tr[i]) / n
    line, direction = np.full(size, np.nan), np.full(size, np.nan)
    up_band = lo_band = None
    trend_up = None
    for i in range(n - 1, size):
        hl2 = (h[i] + l[i]) / 2
        bu, bl = hl2 + mult * atr[i], hl2 - mult * atr[i]
        if trend_up is None:
            up_band, lo_band, trend_up = bu, bl, False
        else:
            up_band = bu if (bu < up_band or c[i - 1] > up_band) else up_band
            lo_band = bl if (bl > lo_band or c[i - 1] < lo_band) else lo_band
            trend_up = (c[i] > up_band) if not trend_up else not (c[i] < lo_band)
        direction[i] = 1.0 if trend_up else -1.0
        line[i] = lo_band if trend_up else up_band
    return line, direction


def ref_donchian(h, l, n):
    upper = pd.Series(h).rolling(n).max().shift(1).to_numpy()
    lower = pd.Series(l).rolling(n).min().shift(1).to_numpy()
    return upper, lower, (upper + lower) / 2


# ------------------------------------------------------------------ hand-computed cases
X10 = np.arange(1.0, 11.0)


def test_sma_ema_rma_hand_computed():
    nan = np.nan
    np.testing.assert_array_equal(K.sma(X10, 3), [nan, nan, 2, 3, 4, 5, 6, 7, 8, 9])
    # EMA(3): alpha 0.5, seed mean(1,2,3)=2 at bar 2; then 0.5*y + 0.5*x -> x - 1 on a ramp
    np.testing.assert_allclose(K.ema(X10, 3), [nan, nan, 2, 3, 4, 5, 6, 7, 8, 9], rtol=1e-15)
    # RMA(3): alpha 1/3, seed 2; 2*2/3 + 4/3 = 8/3; 8/3*2/3 + 5/3 = 31/9; ...
    expected, y = [nan, nan, 2.0], 2.0
    for v in X10[3:]:
        y = y * 2 / 3 + v / 3
        expected.append(y)
    np.testing.assert_allclose(K.rma(X10, 3), expected, rtol=1e-15)
    np.testing.assert_allclose(K.rma(X10, 3)[3:5], [8 / 3, 31 / 9], rtol=1e-15)
    # EMA(4) of 1..10: alpha 0.4, seed 2.5 at bar 3, next 0.6*2.5 + 0.4*5 = 3.5
    assert K.ema(X10, 4)[3] == pytest.approx(2.5, rel=1e-15)
    assert K.ema(X10, 4)[4] == pytest.approx(3.5, rel=1e-15)
    # SMA(10) is one value, 5.5
    np.testing.assert_array_equal(np.isnan(K.sma(X10, 10)), [True] * 9 + [False])
    assert K.sma(X10, 10)[9] == 5.5


@pytest.mark.parametrize("n", [2, 3, 14, 50])
def test_the_sma_after_a_huge_value_leaves_its_window_is_exact(n):
    """A 1e12 bar among prices near 80: once it left the window the SMA kept Kahan's rounding
    of it for up to 64 bars (3e-7 relative; ATR's sma method 4.9e-5)."""
    x = 80.0 + 0.3 * np.sin(np.arange(400) * 0.7)
    x[100] = 1e12
    exact = np.array([math.fsum(x[i - n + 1:i + 1]) / n if i >= n - 1 else np.nan for i in range(len(x))])
    mean, _ = K.rolling_mean_std(x, n)
    for got in (K.sma(x, n), mean):
        assert np.nanmax(np.abs(got - exact) / np.abs(exact)) < 1e-12


def test_an_sma_is_the_same_bits_whichever_indicator_was_requested_first():
    """The registry served a Bollinger computation's mean as the sma of the same source and
    period; after a rebuild only the variance asks for (a calm window after a large move) the
    two differ in their last bits, so the sma a strategy got depended on the order of its
    requests (and of the other strategies in a batch)."""
    rng = np.random.default_rng(1)
    close = 80.0 + np.cumsum(rng.normal(0, 0.05, 600))
    close[200:205] += 5000.0
    assert not np.array_equal(K.sma(close, 10)[214:220], K.rolling_mean_std(close, 10)[0][214:220])
    idx = pd.date_range("2024-01-01", periods=len(close), freq="1h", tz="UTC", name="timestamp")
    bars = as_bars(pd.DataFrame({"open": close, "high": close + 1, "low": close - 1, "close": close,
                                 "volume": 1.0}, index=idx))
    sma, bb = ("sma", {"period": 10}), ("bollinger", {"period": 10, "std": 2.0})
    after_bb = compute_requests(bars, [bb, sma])[1]["value"]
    before_bb = compute_requests(bars, [sma, bb])[0]["value"]
    np.testing.assert_array_equal(after_bb, K.sma(close, 10))
    np.testing.assert_array_equal(before_bb, K.sma(close, 10))


def test_rolling_std_max_min_hand_computed():
    np.testing.assert_allclose(K.rolling_std(X10, 3)[2:], math.sqrt(2 / 3), rtol=1e-14)
    x = np.array([2.0, 4, 4, 4, 5, 5, 7, 9])
    assert K.rolling_std(x, 8)[-1] == pytest.approx(2.0, rel=1e-15)  # textbook example
    y = np.array([3.0, 1, 4, 1, 5, 9, 2, 6])
    np.testing.assert_array_equal(K.rolling_max(y, 3), [np.nan, np.nan, 4, 4, 5, 9, 9, 9])
    np.testing.assert_array_equal(K.rolling_min(y, 3), [np.nan, np.nan, 1, 1, 1, 1, 2, 2])


def test_true_range_first_bar_and_gaps():
    h = np.array([10.0, 12.0, 9.0, 11.0])
    l = np.array([8.0, 11.0, 7.0, 10.5])
    c = np.array([9.0, 11.5, 8.0, 10.8])
    # bar 0: h-l = 2; bar 1: max(1, |12-9|=3, |11-9|=2) = 3; bar 2: max(2, |9-11.5|, |7-11.5|=4.5)
    # bar 3: max(0.5, |11-8|=3, |10.5-8|=2.5) = 3
    np.testing.assert_allclose(K.true_range(h, l, c), [2.0, 3.0, 4.5, 3.0], rtol=1e-15)
    # ATR(2) wilder: seed (2+3)/2 = 2.5 at bar 1, then 2.5/2 + 4.5/2 = 3.5, then 3.25
    np.testing.assert_allclose(K.atr(h, l, c, 2, K.ATR_WILDER), [np.nan, 2.5, 3.5, 3.25], rtol=1e-15)
    np.testing.assert_allclose(K.atr(h, l, c, 2, K.ATR_SMA), [np.nan, 2.5, 3.75, 3.75], rtol=1e-15)
    # EMA(2): alpha 2/3: 2.5/3 + 4.5*2/3 = 3.8333..
    assert K.atr(h, l, c, 2, K.ATR_EMA)[2] == pytest.approx(2.5 / 3 + 3.0, rel=1e-15)


def test_rsi_hand_computed():
    c = np.array([10.0, 11.0, 10.5, 12.0])
    # gains [1, 0, 1.5], losses [0, .5, 0]; RMA(2) seed at bar 2: ag .5, al .25 -> 66.67
    # bar 3: ag .5*.5 + .5*1.5 = 1, al .125 -> 100 * 1/1.125
    np.testing.assert_allclose(K.rsi(c, 2), [np.nan, np.nan, 200 / 3, 100 / 1.125], rtol=1e-14)
    assert np.all(K.rsi(np.arange(1.0, 30.0), 5)[5:] == 100.0)  # no losses
    assert np.all(K.rsi(np.full(20, 3.0), 5)[5:] == 50.0)  # no movement


def test_donchian_hand_computed_excludes_current_bar():
    h = np.array([1.0, 3, 2, 5, 4])
    l = h - 1
    up, lo, mid = K.donchian(h, l, 2)
    np.testing.assert_array_equal(up, [np.nan, np.nan, 3, 3, 5])
    np.testing.assert_array_equal(lo, [np.nan, np.nan, 0, 1, 1])
    np.testing.assert_array_equal(mid, [np.nan, np.nan, 1.5, 2, 3])


def test_macd_hand_computed():
    c = np.array([1.0, 2, 4, 8, 16, 32])
    line, sig, hist = K.macd(c, 2, 3, 2)
    fast = [np.nan, 1.5, 1.5 / 3 + 4 * 2 / 3]
    slow = [np.nan, np.nan, 7 / 3]
    assert line[2] == pytest.approx(fast[2] - slow[2], rel=1e-14)
    assert leading_nans(line) == 2 and leading_nans(sig) == 3
    assert sig[3] == pytest.approx((line[2] + line[3]) / 2, rel=1e-14)
    assert hist[4] == pytest.approx(line[4] - sig[4], rel=1e-14)


def test_bollinger_zero_sigma_is_nan_for_z_and_pctb():
    c = np.concatenate([np.linspace(100, 110, 30), np.full(30, 105.0), np.linspace(105, 90, 30)])
    mid, upper, lower, z, pctb, width = K.bollinger(c, 10, 2.0)
    flat = slice(39, 61)  # windows made only of the constant 105 (c[60] is 105 too)
    assert np.all(mid[flat] == 105.0) and np.all(upper[flat] == 105.0) and np.all(lower[flat] == 105.0)
    assert np.all(np.isnan(z[flat])) and np.all(np.isnan(pctb[flat]))
    assert np.all(width[flat] == 0.0)
    assert not np.isnan(z[38]) and not np.isnan(z[61])
    assert np.all(K.rolling_std(c, 10)[flat] == 0.0)


def test_supertrend_small_series_matches_loop():
    b = synthetic_bars(400, seed=3)
    line, d = K.supertrend(b.high, b.low, b.close, 7, 2.0)
    rl, rd = ref_supertrend_loop(b.high, b.low, b.close, 7, 2.0)
    assert_close(line, rl)
    np.testing.assert_array_equal(d, rd)
    assert set(np.unique(d[~np.isnan(d)])) == {-1.0, 1.0}
    # line is the lower band in up trends (below close) and the upper band in down trends
    up, down = d == 1, d == -1
    assert np.all(line[up] <= b.close[up]) and np.all(line[down] >= b.close[down])


# ------------------------------------------------------------------ real data, vs refs
@pytest.mark.parametrize("n", [1, 2, 14, 20, 50, 200])
def test_moving_averages_vs_pandas(hourly, n):
    for src in (hourly.close, hourly.volume, (hourly.high + hourly.low) / 2):
        assert_close(K.sma(src, n), ref_sma(src, n))
        assert_close(K.ema(src, n), ref_ema(src, n))
        assert_close(K.rma(src, n), ref_rma(src, n))
        assert_close(K.rolling_std(src, n), ref_std(src, n))
        assert_close(K.rolling_max(src, n), pd.Series(src).rolling(n).max().to_numpy(), rtol=0)
        assert_close(K.rolling_min(src, n), pd.Series(src).rolling(n).min().to_numpy(), rtol=0)


@pytest.mark.parametrize("n", [5, 14, 30])
@pytest.mark.parametrize("method", ["wilder", "ema", "sma"])
def test_tr_atr_vs_reference(hourly, n, method):
    h, l, c = hourly.high, hourly.low, hourly.close
    assert_close(K.true_range(h, l, c), ref_tr(h, l, c), rtol=0)
    assert_close(K.atr(h, l, c, n, K.ATR_METHODS[method]), ref_atr(h, l, c, n, method))


@pytest.mark.parametrize("n,k", [(20, 2.0), (10, 1.5), (50, 2.5), (2, 1.0)])
def test_bollinger_vs_reference(hourly, n, k):
    got = dict(zip(("mid", "upper", "lower", "z", "pctb", "width"), K.bollinger(hourly.close, n, k)))
    ref = ref_bollinger(hourly.close, n, k)
    for name in ("mid", "upper", "lower", "width"):
        assert_close(got[name], ref[name])
    # close - mid cancels: both sides carry a rounding of ~eps*|close| in that difference
    with np.errstate(divide="ignore"):
        cond = 4 * np.finfo(float).eps * np.abs(hourly.close) / ref_std(hourly.close, n)
    assert_close(got["z"], ref["z"], atol=cond)
    assert_close(got["pctb"], ref["pctb"], atol=cond / k)


@pytest.mark.parametrize("n", [2, 7, 14, 30])
def test_rsi_vs_pandas(hourly, n):
    assert_close(K.rsi(hourly.close, n), ref_rsi(hourly.close, n))


@pytest.mark.parametrize("f,s,sig", [(12, 26, 9), (5, 35, 5), (3, 10, 16)])
def test_macd_vs_pandas(hourly, f, s, sig):
    got = K.macd(hourly.close, f, s, sig)
    ref = ref_macd(hourly.close, f, s, sig)
    scale = np.nanmax(np.abs(ref[0]))
    for a, e in zip(got, ref):
        assert_close(a, e, scale=scale)
    assert leading_nans(got[0]) == s - 1
    assert leading_nans(got[1]) == leading_nans(got[2]) == s + sig - 2


@pytest.mark.parametrize("n", [5, 14, 28])
def test_adx_vs_wilder_loop(hourly, n):
    got = K.adx(hourly.high, hourly.low, hourly.close, n)
    ref = ref_adx_loop(hourly.high, hourly.low, hourly.close, n)
    for a, e in zip(got, ref):
        assert_close(a, e, scale=1e-2)  # 0..100 lines: a 1e-11 absolute floor
    assert leading_nans(got[0]) == 2 * n - 1 and leading_nans(got[1]) == n


@pytest.mark.parametrize("n,mult", [(10, 3.0), (7, 2.0), (20, 1.5)])
def test_supertrend_vs_loop(hourly, n, mult):
    line, d = K.supertrend(hourly.high, hourly.low, hourly.close, n, mult)
    rl, rd = ref_supertrend_loop(hourly.high, hourly.low, hourly.close, n, mult)
    assert_close(line, rl)
    np.testing.assert_array_equal(d, rd)
    flips = np.count_nonzero(np.diff(d[n - 1:]))
    assert flips > 10  # the series does trend both ways


@pytest.mark.parametrize("n", [1, 5, 20, 55])
def test_donchian_vs_pandas(hourly, n):
    got = K.donchian(hourly.high, hourly.low, n)
    for a, e in zip(got, ref_donchian(hourly.high, hourly.low, n)):
        assert_close(a, e)
    assert leading_nans(got[0]) == n
    # a breakout above the previous n bars' high is possible: the current bar is excluded
    assert np.any(hourly.high[n:] > got[0][n:])


def test_long_series_btc_5m(btc5m):
    b = btc5m
    assert len(b) > 100_000
    c, h, l = b.close, b.high, b.low
    assert_close(K.sma(c, 288), ref_sma(c, 288))
    assert_close(K.ema(c, 500), ref_ema(c, 500))
    assert_close(K.rolling_std(c, 20), ref_std(c, 20))
    got = K.bollinger(c, 20, 2.0)
    ref = ref_bollinger(c, 20, 2.0)
    assert_close(got[1], ref["upper"])
    assert_close(got[3], ref["z"], atol=4 * np.finfo(float).eps * np.abs(c) / ref_std(c, 20))
    assert_close(K.rsi(c, 14), ref_rsi(c, 14))
    assert_close(K.atr(h, l, c, 14, K.ATR_WILDER), ref_atr(h, l, c, 14, "wilder"))
    for a, e in zip(K.macd(c, 12, 26, 9), ref_macd(c, 12, 26, 9)):
        assert_close(a, e, scale=np.nanmax(np.abs(e)))
    for a, e in zip(K.donchian(h, l, 100), ref_donchian(h, l, 100)):
        assert_close(a, e)
    for a, e in zip(K.adx(h, l, c, 14), ref_adx_loop(h, l, c, 14)):
        assert_close(a, e, scale=1e-2)


# ------------------------------------------------------------------ numerical stability
def test_stability_large_offset_long_series():
    rng = np.random.default_rng(1)
    size = 200_000
    x = 1e6 + rng.normal(0.0, 1.0, size)
    for n in (20, 50):
        assert_close(K.sma(x, n), ref_sma(x, n))
        assert_close(K.rolling_std(x, n), ref_std(x, n))
    # a naive running sum of squares would be far off here: the test has teeth
    n = 20
    cs = np.cumsum(np.concatenate([[0.0], x]))
    cs2 = np.cumsum(np.concatenate([[0.0], x * x]))
    naive_var = (cs2[n:] - cs2[:-n]) / n - ((cs[n:] - cs[:-n]) / n) ** 2
    ref = ref_std(x, n)[n - 1:]
    assert np.max(np.abs(np.sqrt(np.abs(naive_var)) - ref) / ref) > 1e-6
    # trending series with a large offset and occasional constant stretches
    walk = 1e6 + np.cumsum(rng.normal(0.0, 0.5, size))
    walk[50_000:50_100] = walk[50_000]
    for n in (2, 20, 100):
        assert_close(K.sma(walk, n), ref_sma(walk, n))
        got, ref = K.rolling_std(walk, n), ref_std(walk, n)
        flat = np.zeros(size, dtype=bool)
        flat[50_000 + n - 1:50_100] = True  # windows inside the constant stretch
        assert np.all(got[flat] == 0.0) and np.all(ref[flat] < 1e-6)
        assert_close(got[~flat], ref[~flat])
    # EMA/RMA stay at 1e-9 after 200k steps
    assert_close(K.ema(x, 50), ref_ema(x, 50))
    assert_close(K.rma(walk, 14), ref_rma(walk, 14))


def test_rolling_kernels_are_linear_time():
    x = 1e6 + np.random.default_rng(2).normal(0, 1, 200_000)
    K.rolling_std(x[:100], 5), K.rolling_max(x[:100], 5)  # compiled already; make sure
    t0 = time.perf_counter()
    K.rolling_std(x, 20_000)
    K.rolling_max(x, 20_000)
    K.rolling_min(x, 20_000)
    K.sma(x, 20_000)
    assert time.perf_counter() - t0 < 0.5  # O(N*n) would be ~4e9 operations
    assert_close(K.rolling_max(x, 20_000), pd.Series(x).rolling(20_000).max().to_numpy(), rtol=0)


# ------------------------------------------------------------------ warm-up and NaNs
@pytest.mark.parametrize("n", [1, 2, 5, 14, 50])
def test_warmup_nan_counts(n):
    b = synthetic_bars(600)
    h, l, c = b.high, b.low, b.close
    expected = {
        "sma": (K.sma(c, n), n - 1),
        "ema": (K.ema(c, n), n - 1),
        "rma": (K.rma(c, n), n - 1),
        "std": (K.rolling_std(c, n), n - 1),
        "max": (K.rolling_max(c, n), n - 1),
        "min": (K.rolling_min(c, n), n - 1),
        "tr": (K.true_range(h, l, c), 0),
        "atr": (K.atr(h, l, c, n, K.ATR_WILDER), n - 1),
        "atr_ema": (K.atr(h, l, c, n, K.ATR_EMA), n - 1),
        "atr_sma": (K.atr(h, l, c, n, K.ATR_SMA), n - 1),
        "rsi": (K.rsi(c, n), n),
        "adx": (K.adx(h, l, c, n)[0], 2 * n - 1),
        "plus_di": (K.adx(h, l, c, n)[1], n),
        "st_line": (K.supertrend(h, l, c, n, 3.0)[0], n - 1),
        "st_dir": (K.supertrend(h, l, c, n, 3.0)[1], n - 1),
        "don": (K.donchian(h, l, n)[0], n),
    }
    bands = K.bollinger(c, n, 2.0)
    for i, name in enumerate(("mid", "upper", "lower", "z", "pctb", "width")):
        if n == 1 and name in ("z", "pctb"):
            assert np.isnan(bands[i]).all()  # sigma of one value is 0
            continue
        expected[f"bb_{name}"] = (bands[i], n - 1)
    for name, (arr, count) in expected.items():
        assert leading_nans(arr) == count, name
        assert not np.isnan(arr[count:]).any(), name


def test_leading_nans_seed_on_first_valid_run():
    x = np.arange(1.0, 41.0)
    padded = np.concatenate([np.full(7, np.nan), x])
    for fn in (K.ema, K.rma, K.sma, K.rolling_std, K.rolling_max):
        out = fn(padded, 5)
        assert leading_nans(out) == 7 + 4
        np.testing.assert_array_equal(out[7:], fn(x, 5))
    # a short valid run before the real start does not seed
    y = np.concatenate([[1.0, 2.0], [np.nan], x])
    np.testing.assert_array_equal(K.ema(y, 5)[3:], K.ema(x, 5))
    assert np.isnan(K.ema(y, 5)[:7]).all()


def test_nan_inside_series_rolling_and_recursive():
    x = np.arange(1.0, 31.0)
    x[12] = np.nan
    assert_close(K.sma(x, 4), ref_sma(x, 4))
    assert np.isnan(K.sma(x, 4)[12:16]).all() and not np.isnan(K.sma(x, 4)[16])
    np.testing.assert_array_equal(K.rolling_max(x, 4), pd.Series(x).rolling(4).max().to_numpy())
    e = K.ema(x, 3)
    assert np.isnan(e[12]) and not np.isnan(e[13])
    # the state is held over the gap: e[13] = 0.5*e[11] + 0.5*x[13]
    assert e[13] == pytest.approx(0.5 * e[11] + 0.5 * x[13], rel=1e-15)


finite_arrays = st.lists(
    st.one_of(st.floats(-1e4, 1e4, allow_nan=False), st.just(float("nan"))), min_size=1, max_size=80
)


@hsettings(max_examples=60, deadline=None)
@given(finite_arrays, st.integers(1, 12))
def test_property_rolling_vs_pandas(values, n):
    x = np.array(values, dtype=float)
    s = pd.Series(x)
    np.testing.assert_array_equal(K.rolling_max(x, n), s.rolling(n).max().to_numpy())
    np.testing.assert_array_equal(K.rolling_min(x, n), s.rolling(n).min().to_numpy())
    np.testing.assert_allclose(K.sma(x, n), s.rolling(n).mean().to_numpy(), rtol=1e-9, atol=1e-8)
    ref_sd = s.rolling(n).apply(lambda w: np.std(w), raw=True).to_numpy()
    np.testing.assert_allclose(K.rolling_std(x, n), ref_sd, rtol=1e-7, atol=1e-7)


@hsettings(max_examples=40, deadline=None)
@given(st.lists(st.floats(1.0, 1e5), min_size=30, max_size=120), st.integers(1, 10))
def test_property_ema_rma_vs_pandas(values, n):
    x = np.array(values, dtype=float)
    np.testing.assert_allclose(K.ema(x, n), ref_ema(x, n), rtol=1e-9)
    np.testing.assert_allclose(K.rma(x, n), ref_rma(x, n), rtol=1e-9)


def test_bad_window_raises():
    with pytest.raises(ValueError):
        K.sma(X10, 0)
    with pytest.raises(ValueError):
        K.ema(X10, 0)
    with pytest.raises(ValueError):
        K.rolling_max(X10, 0)


# ------------------------------------------------------------------------- registry
def test_registry_names_and_outputs():
    assert set(INDICATORS) == {"sma", "ema", "rma", "tr", "atr", "bollinger", "rsi", "macd", "adx",
                               "supertrend", "donchian"}
    assert INDICATORS["bollinger"].outputs == ("mid", "upper", "lower", "z", "pctb", "width")
    assert INDICATORS["macd"].outputs == ("macd", "signal", "hist")
    assert INDICATORS["adx"].outputs == ("adx", "plus_di", "minus_di")
    assert INDICATORS["supertrend"].outputs == ("line", "direction")
    assert INDICATORS["donchian"].outputs == ("upper", "lower", "mid")
    for name in ("sma", "ema", "rma", "tr", "atr", "rsi"):
        assert INDICATORS[name].outputs == ("value",)


def test_normalize_defaults_casts_and_errors():
    assert normalize("sma", {}) == {"period": 20, "source": "close"}
    assert normalize("ema", {"period": 9.0, "source": " HL2 "}) == {"period": 9, "source": "hl2"}
    assert normalize("atr", {"period": np.int64(7), "method": "EMA"}) == {"period": 7, "method": "ema"}
    assert normalize("atr", None) == {"period": 14, "method": "wilder"}
    assert normalize("bollinger", {"period": "30", "std": 2}) == {"period": 30, "std": 2.0}
    assert isinstance(normalize("bollinger", {"std": 2})["std"], float)
    assert normalize("macd", {}) == {"fast": 12, "slow": 26, "signal": 9}
    assert normalize("supertrend", {"multiplier": "2.5"}) == {"period": 10, "multiplier": 2.5}
    assert normalize("tr", {}) == {}
    assert normalize("DONCHIAN", {"period": 55}) == {"period": 55}
    bad = [
        ("sma", {"period": 0}), ("sma", {"period": -3}), ("sma", {"period": 2.5}),
        ("sma", {"period": True}), ("sma", {"length": 20}), ("sma", {"source": "vwap"}),
        ("sma", {"period": "abc"}), ("sma", {"period": None}), ("atr", {"method": "hull"}),
        ("bollinger", {"std": 0}), ("bollinger", {"std": -1}), ("bollinger", {"std": float("nan")}),
        ("macd", {"fast": 26, "slow": 12}), ("macd", {"fast": 12, "slow": 12}),
        ("supertrend", {"multiplier": 0}), ("tr", {"period": 3}), ("nope", {}),
        ("rsi", {"period": float("inf")}),
    ]
    for name, params in bad:
        with pytest.raises(ParamError):
            normalize(name, params)


def test_registry_compute_matches_kernels():
    b = synthetic_bars(1500)
    h, l, c, o = b.high, b.low, b.close, b.open
    np.testing.assert_array_equal(compute(b, "sma", {"period": 10})["value"], K.sma(c, 10))
    np.testing.assert_array_equal(compute(b, "ema", {"period": 10, "source": "hlc3"})["value"],
                                  K.ema((h + l + c) / 3, 10))
    np.testing.assert_array_equal(compute(b, "rma", {"period": 5, "source": "ohlc4"})["value"],
                                  K.rma((o + h + l + c) / 4, 5))
    np.testing.assert_array_equal(compute(b, "sma", {"period": 4, "source": "volume"})["value"],
                                  K.sma(b.volume, 4))
    np.testing.assert_array_equal(compute(b, "tr")["value"], K.true_range(h, l, c))
    np.testing.assert_array_equal(compute(b, "atr", {"method": "sma"})["value"], K.atr(h, l, c, 14, K.ATR_SMA))
    for got, exp in zip(compute(b, "bollinger", {"period": 15, "std": 1.5}).values(), K.bollinger(c, 15, 1.5)):
        np.testing.assert_array_equal(got, exp)
    np.testing.assert_array_equal(compute(b, "rsi")["value"], K.rsi(c, 14))
    for got, exp in zip(compute(b, "macd").values(), K.macd(c, 12, 26, 9)):
        np.testing.assert_array_equal(got, exp)
    for got, exp in zip(compute(b, "adx").values(), K.adx(h, l, c, 14)):
        np.testing.assert_array_equal(got, exp)
    for got, exp in zip(compute(b, "supertrend").values(), K.supertrend(h, l, c, 10, 3.0)):
        np.testing.assert_array_equal(got, exp)
    for got, exp in zip(compute(b, "donchian", {"period": 30}).values(), K.donchian(h, l, 30)):
        np.testing.assert_array_equal(got, exp)


def test_compute_many_shares_intermediates_and_matches(monkeypatch):
    b = synthetic_bars(2000)
    made: list[tuple] = []
    original_get = R.Intermediates._get

    def logging_get(self, key, make):
        def logged():
            made.append(key)
            return make()

        return original_get(self, key, logged)

    monkeypatch.setattr(R.Intermediates, "_get", logging_get)

    grids = {
        "bollinger": [{"period": p, "std": k} for p in (10, 20) for k in (1.0, 1.5, 2.0, 2.5)],
        "atr": [{"period": p, "method": m} for p in (7, 14, 21) for m in ("wilder", "ema")],
        "macd": [{"fast": f, "slow": s, "signal": 9} for f in (8, 12) for s in (21, 26)],
        "adx": [{"period": p} for p in (7, 14, 21)],
        "rsi": [{"period": p} for p in (7, 14)],
        "supertrend": [{"period": p, "multiplier": m} for p in (7, 10) for m in (2.0, 3.0)],
        "donchian": [{"period": p} for p in (10, 20, 10)],
    }
    results = {name: compute_many(b, name, grid) for name, grid in grids.items()}
    kinds = pd.Series([k[0] for k in made]).value_counts().to_dict()
    assert kinds["mean_std"] == 2  # one rolling mean+std per period for 8 (period, k) pairs
    assert kinds["tr"] == 2  # one TR for the whole ATR grid, one for the SuperTrend grid
    assert kinds["atr"] == 6 + 2  # per (period, method), and one per SuperTrend period
    assert kinds["ema"] == 4  # EMA 8, 12, 21, 26 once each for the 4 MACD combos
    assert kinds["dm"] == 1 and kinds["gains_losses"] == 1
    assert kinds["rmax"] == 2 and kinds["rmin"] == 2  # the duplicate donchian(10) is computed once
    bb = results["bollinger"]
    assert bb[0]["mid"] is bb[3]["mid"]
    monkeypatch.undo()
    for name, grid in grids.items():
        for params, got in zip(grid, results[name]):
            single = compute(b, name, params)
            assert list(got) == list(single)
            for line in single:
                np.testing.assert_array_equal(got[line], single[line], err_msg=f"{name} {params} {line}")


def test_compute_requests_mixed():
    b = synthetic_bars(800)
    out = compute_requests(b, [("atr", {"period": 10}), ("supertrend", {"period": 10}), ("sma", None)])
    np.testing.assert_array_equal(out[0]["value"], K.atr(b.high, b.low, b.close, 10, K.ATR_WILDER))
    np.testing.assert_array_equal(out[1]["line"], K.supertrend(b.high, b.low, b.close, 10, 3.0)[0])
    np.testing.assert_array_equal(out[2]["value"], K.sma(b.close, 20))


def test_registry_accepts_frame():
    b = synthetic_bars(300)
    df = pd.DataFrame({c: getattr(b, c) for c in ("open", "high", "low", "close", "volume")}, index=b.index)
    np.testing.assert_array_equal(compute(df, "rsi")["value"], K.rsi(b.close, 14))
    assert R.get_indicator("RSI") is INDICATORS["rsi"]
