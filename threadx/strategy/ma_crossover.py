"""ma_crossover: fast/slow moving-average crossover (SPEC §4)."""
from __future__ import annotations

from threadx import aot
from threadx.strategy import (Constraint, Param, SignalRule, StrategySpec, cross_signals, cross_signals_rows, no_levels,
                              percent_exit_params, percent_exits)


def _indicators(p):
    kind = p["ma_type"]
    return {"fast": (kind, {"period": p["fast_period"]}), "slow": (kind, {"period": p["slow_period"]})}


def _signals(bars, ind, p):
    return aot.call(cross_signals, ind["fast"]["value"], ind["slow"]["value"], p["allow_short"])


def _fast_below_slow(p) -> bool:
    return p["fast_period"] < p["slow_period"]


def _overlays(p) -> dict[str, tuple[str, str]]:
    return {f"{p['ma_type'].upper()} {p['fast_period']}": ("fast", "value"),
            f"{p['ma_type'].upper()} {p['slow_period']}": ("slow", "value")}


SPEC = StrategySpec(
    name="ma_crossover",
    description="Long when the fast MA crosses above the slow MA; exit (or reverse with allow_short) "
    "when it crosses below. Optional % stop and target; risk sizing with a stop, all-in without.",
    params=(
        Param("fast_period", "int", 10, 2, 500, 1, opt_range=(5, 50, 1), description="fast MA length (bars)",
              feeds=("indicators", "signals"), indicator_labels=("fast",)),
        Param("slow_period", "int", 30, 3, 1000, 1, opt_range=(20, 200, 5), description="slow MA length (bars)",
              feeds=("indicators", "signals"), indicator_labels=("slow",)),
        Param("ma_type", "choice", "sma", choices=("sma", "ema"), description="moving average kind",
              feeds=("indicators", "signals"), indicator_labels=("fast", "slow")),
        Param("allow_short", "bool", False, description="reverse to short on the cross below", feeds="signals"),
        *percent_exit_params(),
    ),
    constraints=(Constraint("fast_period < slow_period", _fast_below_slow),),
    indicators=_indicators,
    signals=_signals,
    levels=no_levels,
    exits=percent_exits,
    overlays=_overlays,
    signal_rule=SignalRule(lines=(("fast", "value"), ("slow", "value")), params=("allow_short",),
                           many=cross_signals_rows, signals=_signals),
)
