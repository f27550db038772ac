"""Strategies on real data: signals against independent pandas formulations, accounting
invariants of every strategy in both fill modes, and the kernel's metrics against the
plain pandas metric definitions."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import threadx
from threadx.data.bars import as_bars
from threadx.engine import layout as L
from threadx.contract import prepare_signals
from threadx.engine.metrics import metrics_from_equity
from threadx.indicators import IndicatorBank
from threadx.strategy import get_strategy

EL, XL, ES, XS = L.SIG_ENTER_LONG, L.SIG_EXIT_LONG, L.SIG_ENTER_SHORT, L.SIG_EXIT_SHORT


@pytest.fixture(scope="module")
def btc(btc_1h):
    return btc_1h


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    return IndicatorBank(cache_dir=tmp_path_factory.mktemp("cache"))


def signals_of(df, name, params, bank):
    spec = get_strategy(name)
    values = spec.normalize(params)
    _, sig, _ = prepare_signals(spec, as_bars(df), values, bank)
    return pd.Series(sig, index=df.index)


def cross_up(a: pd.Series, b: pd.Series) -> pd.Series:
    ok = a.notna() & b.notna() & a.shift().notna() & b.shift().notna()
    return ok & (a > b) & (a.shift() <= b.shift())


def seeded_ema(x: pd.Series, n: int) -> pd.Series:
    """EMA seeded with the SMA of the first n values (plain Python recursion)."""
    values = x.to_numpy()
    out = np.full(len(values), np.nan)
    out[n - 1] = values[:n].mean()
    alpha = 2.0 / (n + 1)
    for i in range(n, len(values)):
        out[i] = alpha * values[i] + (1 - alpha) * out[i - 1]
    return pd.Series(out, index=x.index)


def flags(sig: pd.Series, bit: int) -> pd.Series:
    return (sig & bit) != 0


@pytest.mark.parametrize("ma_type", ["sma", "ema"])
@pytest.mark.parametrize("allow_short", [False, True])
def test_ma_crossover_signals(btc, bank, ma_type, allow_short):
    sig = signals_of(btc, "ma_crossover", {"fast_period": 12, "slow_period": 40, "ma_type": ma_type,
                                            "allow_short": allow_short}, bank)
    close = btc.close
    ma = (lambda n: close.rolling(n).mean()) if ma_type == "sma" else (lambda n: seeded_ema(close, n))
    fast, slow = ma(12), ma(40)
    up, down = cross_up(fast, slow), cross_up(slow, fast)
    assert up.sum() > 50
    assert (flags(sig, EL) == up).all()
    assert (flags(sig, XL) == down).all()
    assert (flags(sig, ES) == (down & allow_short)).all()
    assert (flags(sig, XS) == (up & allow_short)).all()


@pytest.mark.parametrize("trend_period", [0, 100])
def test_bb_atr_signals(btc, bank, trend_period):
    params = {"bb_period": 25, "entry_z": 1.5, "trend_period": trend_period}
    sig = signals_of(btc, "bb_atr", params, bank)
    close = btc.close
    mid = close.rolling(25).mean()
    sigma = close.rolling(25).std(ddof=0)
    z = (close - mid) / sigma
    level = pd.Series(-1.5, index=close.index)
    long = cross_up(level, z)  # z crosses below -1.5
    short = cross_up(z, -level)
    if trend_period:
        ema = seeded_ema(close, trend_period)
        long &= close > ema
        short &= close < ema
    assert long.sum() > 20 and short.sum() > 20
    assert (flags(sig, EL) == long).all()
    assert (flags(sig, ES) == short).all()
    assert not flags(sig, XL | XS).any()


@pytest.mark.parametrize("lookback", [0, 5])
def test_bollinger_dual_signals(btc, bank, lookback):
    params = {"bb_window": 20, "bb_std": 2.0, "ma_window": 5, "setup_lookback": lookback}
    sig = signals_of(btc, "bollinger_dual", params, bank)
    close = btc.close
    mid = close.rolling(20).mean()
    sigma = close.rolling(20).std(ddof=0)
    lower, upper = mid - 2 * sigma, mid + 2 * sigma
    ma = close.rolling(5).mean()
    below = (close < lower).astype(float).rolling(lookback + 1, min_periods=1).max() > 0
    above = (close > upper).astype(float).rolling(lookback + 1, min_periods=1).max() > 0
    long = below & cross_up(close, ma)
    short = above & cross_up(ma, close) & ~long
    if lookback:
        assert long.sum() > 10
    assert (flags(sig, EL) == long).all()
    assert (flags(sig, ES) == short).all()


def test_donchian_breakout_signals(btc, bank):
    sig = signals_of(btc, "donchian_breakout", {"channel_period": 30}, bank)
    close = btc.close
    upper = btc.high.rolling(30).max().shift(1)
    lower = btc.low.rolling(30).min().shift(1)
    up = cross_up(close, upper)
    down = cross_up(lower, close)
    assert up.sum() > 20
    assert (flags(sig, EL) == up).all()
    assert (flags(sig, XL) == down).all()
    assert (flags(sig, ES) == down).all()


def test_supertrend_signals_are_direction_flips(btc, bank):
    params = {"atr_period": 10, "multiplier": 3.0}
    sig = signals_of(btc, "supertrend", params, bank)
    direction = pd.Series(bank.ensure(btc, "supertrend", {"period": 10, "multiplier": 3.0})["direction"],
                          index=btc.index)
    up = (direction > 0) & (direction.shift() < 0)
    down = (direction < 0) & (direction.shift() > 0)
    assert up.sum() > 50
    assert (flags(sig, EL) == up).all() and (flags(sig, ES) == down).all()
    assert (flags(sig, XL) == down).all() and (flags(sig, XS) == up).all()


# --- invariants on every strategy over real data ---------------------------------------------

STRATEGY_CASES = {
    "ma_crossover": {"stop_loss_pct": 2.0, "take_profit_pct": 4.0, "risk_per_trade": 0.01},
    "bb_atr": {"trend_period": 50, "leverage": 3.0, "risk_per_trade": 0.02},
    "bollinger_dual": {"setup_lookback": 5, "ma_window": 5},
    "donchian_breakout": {},
    "supertrend": {"stop_loss_pct": 3.0},
    # several legs per position (grids): the same books, one row per leg
    "envelope_dca": {"envelope_start": 0.03, "envelope_step": 0.01},
    "envelope_dca_short": {"envelope_start": 0.03, "envelope_step": 0.01},
    "grid_atr": {"sides": "both", "max_hold_bars": 48},
    # legs added and partly closed (pyramiding, a partial exit at the far band), exits armed
    "amplitude_hunter": {"amplitude_score_threshold": 0.45, "volume_zscore_threshold": 0.0,
                         "bbwidth_percentile_threshold": 40.0, "pyramiding_max_adds": 1},
}


def test_every_registered_strategy_is_covered():
    registered = {name for name in threadx.strategies() if not name.startswith("test_")}  # test-only ones aside
    assert registered == set(STRATEGY_CASES)


def rebuild_equity(trades: pd.DataFrame, close: np.ndarray, initial: float) -> np.ndarray:
    """Equity per bar from the trade list alone: initial + closed PnL + open PnL net of the entry fee."""
    n = len(close)
    closed = np.zeros(n)
    np.add.at(closed, trades.exit_i.to_numpy(), trades.pnl.to_numpy())
    equity = initial + np.cumsum(closed)
    fee_rate = 0.001
    for row in trades.itertuples():
        held = np.arange(row.entry_i, row.exit_i)
        if len(held):
            d = 1.0 if row.side == "long" else -1.0
            entry_fee = row.qty * row.entry_price * fee_rate
            equity[held] += d * row.qty * (close[held] - row.entry_price) - entry_fee
    return equity


@pytest.mark.parametrize("fill", ["next_open", "close"])
@pytest.mark.parametrize("name", sorted(STRATEGY_CASES))
def test_accounting_invariants_on_real_data(btc, bank, name, fill):
    result = threadx.backtest(btc, name, STRATEGY_CASES[name], fill=fill, fee_bps=10, bank=bank)
    t, eq, m = result.trades, result.equity.to_numpy(), result.metrics
    assert len(t) >= 20, f"{name} made only {len(t)} trades"
    # sum of trade PnL (net of fees and funding) = final equity - initial capital
    assert t.pnl.sum() == pytest.approx(eq[-1] - 10_000, rel=1e-9, abs=1e-6)
    # fees charged once per fill, on each fill's notional
    assert np.allclose(t.fees, (t.qty * t.entry_price + t.qty * t.exit_price) * 0.001, rtol=1e-12)
    assert m["total_fees"] == pytest.approx(t.fees.sum(), rel=1e-12)
    # equity = cash + margin + open PnL, rebuilt from the trades alone
    assert np.allclose(eq, rebuild_equity(t, btc.close.to_numpy(), 10_000), rtol=1e-9, atol=1e-6)
    # flat bars (no position at this or the previous close, no exit) keep equity constant
    held = np.zeros(len(eq), bool)
    for row in t.itertuples():
        held[row.entry_i:row.exit_i + 1] = True
    flat = ~held[1:] & ~held[:-1]
    assert np.all(eq[1:][flat] == eq[:-1][flat])
    # returns per trade as vectorbt defines them
    assert np.allclose(t.return_pct, 100 * t.pnl / (t.qty * t.entry_price), rtol=1e-12)
    # exits never before entries; positions (cycles) never overlap (their legs may)
    assert np.all(t.exit_i.to_numpy() >= t.entry_i.to_numpy())
    cycles = t.groupby("cycle").agg(first=("entry_i", "min"), last=("exit_i", "max"))
    assert np.all(cycles["first"].to_numpy()[1:] >= cycles["last"].to_numpy()[:-1])
    # the kernel's running-sum metrics equal the pandas definitions
    in_pos = np.zeros(len(eq), bool)
    for row in t.itertuples():
        in_pos[row.entry_i:row.exit_i] = True
    ref = metrics_from_equity(result.equity, t, 10_000, 8760.0, in_position=in_pos)
    for key, expected in ref.items():
        got = m[key]
        if isinstance(expected, float) and math.isnan(expected):
            assert math.isnan(got), key
        else:
            assert got == pytest.approx(expected, rel=1e-9, abs=1e-12), key


def test_ma_crossover_sanity_case(btc, bank):
    # SPEC §4: fast 10, slow 30, stop 2 %, target 4 %, risk 1-2 % -> a few hundred trades, DD well inside -50 %
    for risk in (0.01, 0.015, 0.02):
        m = threadx.backtest(btc, "ma_crossover", {"stop_loss_pct": 2, "take_profit_pct": 4, "risk_per_trade": risk},
                             bank=bank).metrics
        assert 100 <= m["n_trades"] <= 600
        assert m["max_drawdown"] > -0.5


def test_fast_and_full_mode_agree(btc, bank):
    from threadx.engine import kernel
    from threadx.engine.inputs import EngineOptions, effective_rules, kernel_args

    spec = get_strategy("bb_atr")
    params = spec.normalize({"entry_z": 1.2})
    bars = as_bars(btc)
    _, sig, levels = prepare_signals(spec, bars, params, bank)
    opts = EngineOptions(fill="next_open", fee_bps=10, slippage_bps=2)
    args = kernel_args(bars, sig, levels, effective_rules(spec.exits(params), opts), opts)
    fast = kernel.run_fast(*args)
    full, _, _ = kernel.run_full(*args)
    np.testing.assert_array_equal(fast, full)


def test_builtin_specs_are_plain_module_level_objects_that_pickle():
    import pickle

    for name, spec in threadx.strategies().items():
        if name.startswith("test_"):
            continue
        back = pickle.loads(pickle.dumps(spec))
        assert back == spec, name  # the same functions, found again by module and name
        assert back.overlays(spec.defaults()) == spec.overlays(spec.defaults())
