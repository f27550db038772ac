"""Pieces shared by strategies whose exits are percent stop / target around the entry."""
from __future__ import annotations

from typing import Any, Mapping

from threadx.strategy.base import ExitRules, Param


def percent_exit_params() -> tuple[Param, ...]:
    """stop_loss_pct, take_profit_pct (percent of the entry price, 0 = off) and risk_per_trade."""
    return (
        Param("stop_loss_pct", "float", 0.0, 0.0, 50.0, 0.5, opt_range=(0.0, 5.0, 0.5),
              description="stop distance in % of the entry price (0 = off)", feeds="exits"),
        Param("take_profit_pct", "float", 0.0, 0.0, 200.0, 0.5, opt_range=(0.0, 10.0, 0.5),
              description="target distance in % of the entry price (0 = off)", feeds="exits"),
        Param("risk_per_trade", "float", 0.02, 0.001, 0.2, 0.005, opt_range=(0.005, 0.05, 0.005),
              description="equity fraction risked per trade when a stop is set", feeds="exits"),
    )


def percent_exits(p: Mapping[str, Any]) -> ExitRules:
    """Percent stop and target; risk sizing with a stop, the whole equity without."""
    stop = p["stop_loss_pct"] / 100.0
    return ExitRules(
        stop_pct=stop,
        tp_pct=p["take_profit_pct"] / 100.0,
        sizing="risk" if stop > 0 else "all_in",
        risk_per_trade=p["risk_per_trade"],
    )
