"""ma_crossover: fast/slow moving-average crossover (SPEC §4)."""
from __future__ import annotations

from threadx.strategy.base import Constraint, ExitRules, Levels, Param, StrategySpec
from threadx.strategy.signal_kernels import cross_signals


def _indicators(p):
    kind = p["ma_type"]
    return {"fast": (kind, {"period": p["fast_period"]}), "slow": (kind, {"period": p["slow_period"]})}


def _signals(bars, ind, p):
    return cross_signals(ind["fast"]["value"], ind["slow"]["value"], p["allow_short"])


def _exits(p):
    stop = p["stop_loss_pct"] / 100.0
    return ExitRules(
        stop_pct=stop,
        tp_pct=p["take_profit_pct"] / 100.0,
        sizing="risk" if stop > 0 else "all_in",
        risk_per_trade=p["risk_per_trade"],
    )


SPEC = StrategySpec(
    name="ma_crossover",
    description="Long when the fast MA crosses above the slow MA; exit (or reverse with allow_short) "
    "when it crosses below. Optional % stop and target; risk sizing with a stop, all-in without.",
    params=(
        Param("fast_period", "int", 10, 2, 500, 1, opt_range=(5, 50, 1), description="fast MA length (bars)"),
        Param("slow_period", "int", 30, 3, 1000, 1, opt_range=(20, 200, 5), description="slow MA length (bars)"),
        Param("ma_type", "choice", "sma", choices=("sma", "ema"), description="moving average kind"),
        Param("allow_short", "bool", False, description="reverse to short on the cross below"),
        Param("stop_loss_pct", "float", 0.0, 0.0, 50.0, 0.5, opt_range=(0.0, 5.0, 0.5),
              description="stop distance in % of the entry price (0 = off)"),
        Param("take_profit_pct", "float", 0.0, 0.0, 200.0, 0.5, opt_range=(0.0, 10.0, 0.5),
              description="target distance in % of the entry price (0 = off)"),
        Param("risk_per_trade", "float", 0.02, 0.001, 0.2, 0.005, opt_range=(0.005, 0.05, 0.005),
              description="equity fraction risked per trade when a stop is set"),
    ),
    constraints=(Constraint("fast_period < slow_period", lambda p: p["fast_period"] < p["slow_period"]),),
    indicators=_indicators,
    signals=_signals,
    levels=lambda ind, p: Levels(),
    exits=_exits,
    overlays=lambda p: {f"{p['ma_type'].upper()} {p['fast_period']}": ("fast", "value"),
                        f"{p['ma_type'].upper()} {p['slow_period']}": ("slow", "value")},
)
