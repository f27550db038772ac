"""donchian_breakout: channel breakout with ATR stop and target (SPEC §4)."""
from __future__ import annotations

from threadx import aot
from threadx.strategy import (BAR_LABEL, ExitRules, Levels, Param, SignalRule, StrategySpec, breakout_rows,
                              breakout_signals)


def _indicators(p):
    return {
        "dc": ("donchian", {"period": p["channel_period"]}),
        "atr": ("atr", {"period": p["atr_period"], "method": "wilder"}),
    }


def _signals(bars, ind, p):
    dc = ind["dc"]
    return aot.call(breakout_signals, bars.close, dc["upper"], dc["lower"], p["allow_short"])


def _exits(p):
    return ExitRules(
        stop_atr=p["stop_atr"],
        tp_atr=p["target_atr"],
        max_hold_bars=p["max_hold_bars"],
        sizing="risk",
        risk_per_trade=p["risk_per_trade"],
    )


def _levels(ind, p) -> Levels:
    return Levels(atr=ind["atr"]["value"])


def _overlays(p) -> dict[str, tuple[str, str]]:
    return {"Donchian upper": ("dc", "upper"), "Donchian lower": ("dc", "lower")}


SPEC = StrategySpec(
    name="donchian_breakout",
    description="Long when the close breaks above the highest high of the previous n bars, short below "
    "the lowest low (allow_short); the opposite break exits. ATR stop and target multiples, risk sizing.",
    params=(
        Param("channel_period", "int", 20, 2, 1000, 1, opt_range=(10, 100, 5), description="channel length",
              feeds=("indicators", "signals"), indicator_labels=("dc",)),
        Param("atr_period", "int", 14, 1, 200, 1, opt_range=(7, 28, 7), description="ATR length (bars)",
              feeds=("indicators", "levels"), indicator_labels=("atr",)),
        Param("stop_atr", "float", 2.0, 0.1, 20.0, 0.25, opt_range=(1.0, 4.0, 0.5), description="stop in ATRs",
              feeds="exits"),
        Param("target_atr", "float", 4.0, 0.0, 50.0, 0.5, opt_range=(0.0, 8.0, 1.0),
              description="target in ATRs (0 = off)", feeds="exits"),
        Param("risk_per_trade", "float", 0.01, 0.001, 0.2, 0.005, opt_range=(0.005, 0.05, 0.005),
              description="equity fraction risked per trade", feeds="exits"),
        Param("max_hold_bars", "int", 0, 0, 10000, 1, description="holding limit (0 = off)", feeds="exits"),
        Param("allow_short", "bool", True, description="take short breakouts", feeds="signals"),
    ),
    indicators=_indicators,
    signals=_signals,
    levels=_levels,
    exits=_exits,
    overlays=_overlays,
    signal_rule=SignalRule(lines=((BAR_LABEL, "close"), ("dc", "upper"), ("dc", "lower")), params=("allow_short",),
                           many=breakout_rows, signals=_signals),
)
