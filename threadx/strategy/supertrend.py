"""supertrend: trade SuperTrend direction flips (SPEC §4)."""
from __future__ import annotations

from threadx.strategy.base import ExitRules, Levels, Param, StrategySpec
from threadx.strategy.signal_kernels import flip_signals


def _indicators(p):
    return {"st": ("supertrend", {"period": p["atr_period"], "multiplier": p["multiplier"]})}


def _signals(bars, ind, p):
    return flip_signals(ind["st"]["direction"], p["allow_short"])


def _exits(p):
    stop = p["stop_loss_pct"] / 100.0
    return ExitRules(
        stop_pct=stop,
        tp_pct=p["take_profit_pct"] / 100.0,
        sizing="risk" if stop > 0 else "all_in",
        risk_per_trade=p["risk_per_trade"],
    )


SPEC = StrategySpec(
    name="supertrend",
    description="Long when SuperTrend turns up, exit (or reverse short with allow_short) when it turns "
    "down. Optional % stop and target; risk sizing with a stop, all-in without.",
    params=(
        Param("atr_period", "int", 10, 1, 500, 1, opt_range=(5, 50, 1), description="ATR length of the bands"),
        Param("multiplier", "float", 3.0, 0.1, 20.0, 0.1, opt_range=(1.0, 6.0, 0.25), description="band width in ATRs"),
        Param("allow_short", "bool", True, description="reverse to short on a down flip"),
        Param("stop_loss_pct", "float", 0.0, 0.0, 50.0, 0.5, opt_range=(0.0, 5.0, 0.5),
              description="stop distance in % of the entry price (0 = off)"),
        Param("take_profit_pct", "float", 0.0, 0.0, 200.0, 0.5, opt_range=(0.0, 10.0, 0.5),
              description="target distance in % of the entry price (0 = off)"),
        Param("risk_per_trade", "float", 0.02, 0.001, 0.2, 0.005, opt_range=(0.005, 0.05, 0.005),
              description="equity fraction risked per trade when a stop is set"),
    ),
    indicators=_indicators,
    signals=_signals,
    levels=lambda ind, p: Levels(),
    exits=_exits,
    overlays=lambda p: {"SuperTrend": ("st", "line")},
)
