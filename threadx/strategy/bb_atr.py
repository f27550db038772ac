"""bb_atr: Bollinger mean reversion with ATR risk, the flagship (SPEC §4).

Entries use the true z-score ((close - mid) / sigma, sigma the population std of the
last ``bb_period`` closes) against ``entry_z``; ``bb_std`` sets the drawn bands only (z and the mid band, the only
Bollinger lines the signals and exits read, do not depend on it), so it is declared
display-only (``feeds=()``).
"""
from __future__ import annotations

import numpy as np

from threadx import aot
from threadx.strategy import (BAR_LABEL, ExitRules, Levels, Param, SignalRule, StrategySpec, zscore_reversion_rows,
                              zscore_reversion_signals)

_NO_TREND = np.empty(0)
_NO_TREND.flags.writeable = False  # like the bank's lines: one compiled signal kernel, trend or not


def _indicators(p):
    needs = {
        "bb": ("bollinger", {"period": p["bb_period"], "std": p["bb_std"]}),
        "atr": ("atr", {"period": p["atr_period"], "method": "wilder"}),
    }
    if p["trend_period"] > 0:
        needs["trend"] = ("ema", {"period": p["trend_period"]})
    return needs


def _signals(bars, ind, p):
    use_trend = p["trend_period"] > 0
    trend = ind["trend"]["value"] if use_trend else _NO_TREND
    return aot.call(zscore_reversion_signals, ind["bb"]["z"], float(p["entry_z"]), bars.close, trend, use_trend)


def _exits(p):
    return ExitRules(
        stop_atr=p["atr_multiplier"],
        target_mid=True,
        trail="atr" if p["trailing_stop"] else "none",
        trail_atr=p["atr_multiplier"],
        max_hold_bars=p["max_hold_bars"],
        spacing_bars=p["spacing_bars"],
        sizing="risk",
        risk_per_trade=p["risk_per_trade"],
        leverage=p["leverage"],
    )


def _levels(ind, p) -> Levels:
    return Levels(atr=ind["atr"]["value"], band_mid=ind["bb"]["mid"])


def _overlays(p) -> dict[str, tuple[str, str]]:
    return {"BB mid": ("bb", "mid"), "BB upper": ("bb", "upper"), "BB lower": ("bb", "lower"),
            **({f"EMA {p['trend_period']}": ("trend", "value")} if p["trend_period"] > 0 else {})}


SPEC = StrategySpec(
    name="bb_atr",
    description="Bollinger mean reversion: long when z crosses below -entry_z, short above +entry_z; "
    "ATR stop (optionally trailing), target back at the middle band, max holding time, risk sizing.",
    params=(
        Param("bb_period", "int", 20, 2, 500, 1, opt_range=(10, 50, 1), description="Bollinger length (bars)",
              feeds=("indicators", "signals", "levels"), indicator_labels=("bb",)),
        Param("bb_std", "float", 2.0, 0.1, 5.0, 0.25, opt_range=(1.5, 3.0, 0.25), feeds=(),
              description="band width in std (drawn bands only: entries use entry_z, exits the mid band)"),
        Param("entry_z", "float", 1.0, 0.1, 5.0, 0.1, opt_range=(0.5, 2.5, 0.1),
              description="entry threshold in true standard deviations", feeds="signals"),
        Param("atr_period", "int", 14, 1, 200, 1, opt_range=(7, 21, 1), description="ATR length (bars)",
              feeds=("indicators", "levels"), indicator_labels=("atr",)),
        Param("atr_multiplier", "float", 1.5, 0.1, 10.0, 0.1, opt_range=(1.0, 3.0, 0.1),
              description="stop distance in ATRs", feeds="exits"),
        Param("trailing_stop", "bool", True, description="trail the stop at close -/+ atr_multiplier x ATR",
              feeds="exits"),
        Param("risk_per_trade", "float", 0.01, 0.001, 0.2, 0.005, opt_range=(0.005, 0.05, 0.005),
              description="equity fraction risked per trade", feeds="exits"),
        Param("leverage", "float", 1.0, 1.0, 100.0, 1.0, opt_range=(1.0, 10.0, 1.0), description="leverage cap",
              feeds="exits"),
        Param("max_hold_bars", "int", 72, 1, 10000, 1, opt_range=(10, 500, 10), description="holding limit (bars)",
              feeds="exits"),
        Param("spacing_bars", "int", 6, 0, 1000, 1, opt_range=(0, 50, 1),
              description="minimum bars between entries", feeds="exits"),
        Param("trend_period", "int", 0, 0, 1000, 1, opt_range=(0, 200, 10),
              description="EMA trend filter length (0 = off)", feeds=("indicators", "signals"),
              indicator_labels=("trend",)),
    ),
    indicators=_indicators,
    signals=_signals,
    levels=_levels,
    exits=_exits,
    overlays=_overlays,
    signal_rule=SignalRule(lines=(("bb", "z"), (BAR_LABEL, "close"), ("trend", "value")),
                           params=("entry_z", "trend_period"), many=zscore_reversion_rows, signals=_signals),
)
