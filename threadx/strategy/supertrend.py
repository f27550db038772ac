"""supertrend: trade SuperTrend direction flips (SPEC §4)."""
from __future__ import annotations

from threadx import aot
from threadx.strategy import (Param, SignalRule, StrategySpec, flip_rows, flip_signals, no_levels, percent_exit_params,
                              percent_exits)


def _indicators(p):
    return {"st": ("supertrend", {"period": p["atr_period"], "multiplier": p["multiplier"]})}


def _signals(bars, ind, p):
    return aot.call(flip_signals, ind["st"]["direction"], p["allow_short"])


def _overlays(p) -> dict[str, tuple[str, str]]:
    return {"SuperTrend": ("st", "line")}


SPEC = StrategySpec(
    name="supertrend",
    description="Long when SuperTrend turns up, exit (or reverse short with allow_short) when it turns "
    "down. Optional % stop and target; risk sizing with a stop, all-in without.",
    params=(
        Param("atr_period", "int", 10, 1, 500, 1, opt_range=(5, 50, 1), description="ATR length of the bands",
              feeds=("indicators", "signals"), indicator_labels=("st",)),
        Param("multiplier", "float", 3.0, 0.1, 20.0, 0.1, opt_range=(1.0, 6.0, 0.25), description="band width in ATRs",
              feeds=("indicators", "signals"), indicator_labels=("st",)),
        Param("allow_short", "bool", True, description="reverse to short on a down flip", feeds="signals"),
        *percent_exit_params(),
    ),
    indicators=_indicators,
    signals=_signals,
    levels=no_levels,
    exits=percent_exits,
    overlays=_overlays,
    signal_rule=SignalRule(lines=(("st", "direction"),), params=("allow_short",), many=flip_rows, signals=_signals),
)
