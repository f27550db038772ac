"""Engine figures that must not change when the engine only records more about a trade.

For every built-in strategy on a dataset, with default params and a few fill / option
variants, :func:`figures` computes every metric (full and fast mode), the trade count,
the final equity and a digest of the per-bar equity and of the SPEC §3 trade columns, all
as exact float hex strings. ``tests/data/engine_figures.json`` holds the figures recorded
before the trade records gained their stop / target levels, recorded again (Dec 2026) with
the synthetic sample's fingerprint and the strategies added since: the real BTC file's 40
earlier cases came out bit for bit, the synthetic ones moved in the last bits with the
host's sample (numpy's exp and sin). ``tests/test_trade_levels.py`` compares them with
``==`` where the candles are the recorded ones.

Record (only when a change is meant to move the numbers, and say so in the commit):
``PYTHONPATH=. python tests/engine_figures.py [--btc PARQUET] > tests/data/engine_figures.json``
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from typing import Any

import numpy as np
import pandas as pd

import threadx
from threadx.data.bars import as_bars
from threadx.engine import kernel
from threadx.contract import prepare_signals
from threadx.engine.inputs import effective_rules, funding_per_bar, kernel_args, options_from
from threadx.indicators import IndicatorBank
from threadx.strategy import get_strategy, list_strategies

# the SPEC §3 trade columns as they were before the level columns were added
BASE_TRADE_COLUMNS = ("entry_i", "exit_i", "side", "qty", "entry_price", "exit_price", "fees", "funding", "pnl",
                      "return_pct", "bars_held", "exit_reason")

# engine option variants run for every strategy
OPTION_VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "close_fill": {"fill": "close"},
    "costs": {"slippage_bps": 5.0, "fee_bps": 7.5, "funding": 0.0001, "ambiguity": "optimistic"},
    "fraction_lev": {"sizing": "fraction", "fraction": 0.5, "leverage": 3.0},
}

# param variants that exercise the stop / target / trailing paths of each strategy
PARAM_VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "ma_crossover": {"stops": {"stop_loss_pct": 2.0, "take_profit_pct": 4.0, "risk_per_trade": 0.02}},
    "supertrend": {"stops": {"stop_loss_pct": 3.0, "take_profit_pct": 6.0}},
    "bb_atr": {"no_trail": {"trailing_stop": False}},
    "bollinger_dual": {"lookback": {"setup_lookback": 5}},
    "donchian_breakout": {"no_target": {"target_atr": 0.0, "max_hold_bars": 48}},
}


def _hex(value: Any) -> Any:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    return float(value).hex()


def _digest(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr, dtype=np.float64).tobytes()).hexdigest()


def cases() -> list[tuple[str, dict[str, Any], str, dict[str, Any]]]:
    """(strategy, params, case name, engine options) of every recorded run."""
    out = []
    for name in sorted(list_strategies()):
        if name.startswith("test_"):
            continue
        for pname, params in {"defaults": {}, **PARAM_VARIANTS.get(name, {})}.items():
            for oname, options in OPTION_VARIANTS.items():
                out.append((name, params, f"{name}/{pname}/{oname}", options))
    return out


def one(df: pd.DataFrame, name: str, params: dict, options: dict, bank) -> dict[str, Any]:
    """The figures of one run: metrics (full and fast mode), trades, equity digests."""
    res = threadx.backtest(df, name, params, bank=bank, **options)
    trades = res.trades
    rows = trades.assign(
        side=np.where(trades["side"] == "long", 1.0, -1.0),
        exit_reason=trades["exit_reason"].map({r: k for k, r in enumerate(kernel_reasons())}).astype(float),
    )[list(BASE_TRADE_COLUMNS)].to_numpy(dtype=np.float64)
    spec = get_strategy(name)
    values = spec.normalize(params)
    opts = options_from(**options)
    bars = as_bars(df)
    rules = effective_rules(spec.exits(values), opts)
    _, sig, levels = prepare_signals(spec, bars, values, bank)
    fast = kernel.run_fast(*kernel_args(bars, sig, levels, rules, opts, funding_per_bar(opts.funding, bars)))
    return {
        "n_trades": int(len(trades)),
        "final_equity": float(res.equity.iloc[-1]).hex(),
        "pnl_sum": float(trades["pnl"].sum()).hex(),
        "metrics": {k: _hex(v) for k, v in res.metrics.items()},
        "fast_metrics": [float(v).hex() for v in fast],
        "equity_sha256": _digest(res.equity.to_numpy()),
        "trades_sha256": _digest(rows),
    }


def kernel_reasons() -> tuple[str, ...]:
    from threadx.engine.layout import EXIT_REASONS

    return EXIT_REASONS


def figures(df: pd.DataFrame, bank=None) -> dict[str, Any]:
    if bank is None:
        with tempfile.TemporaryDirectory() as tmp:
            return figures(df, IndicatorBank(cache_dir=tmp))
    return {case: one(df, name, params, options, bank) for name, params, case, options in cases()}


def sample_frame() -> pd.DataFrame:
    """The built-in synthetic sample (what ``python -m threadx.data`` writes for BTC_USDT 1h)."""
    from threadx.data.synthetic import generate_synthetic

    return generate_synthetic()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--btc", help="also record the figures on this parquet (e.g. BTC_USDT-1h)")
    args = ap.parse_args(argv)
    frame = sample_frame()  # (with its fingerprint: numpy's exp and sin, and so the sample, differ between hosts)
    out: dict[str, Any] = {"synthetic": figures(frame), "synthetic_fingerprint": as_bars(frame).fingerprint}
    if args.btc:
        df = pd.read_parquet(args.btc).set_index("timestamp")
        out["btc"] = {"bars": len(df), "fingerprint": as_bars(df).fingerprint, "figures": figures(df)}
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
