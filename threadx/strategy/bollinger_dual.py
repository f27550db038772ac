"""bollinger_dual: band excursion confirmed by an MA cross, band-based trailing stop (SPEC §4)."""
from __future__ import annotations

from threadx import aot
from threadx.strategy import (BAR_LABEL, ExitRules, Levels, Param, SignalRule, StrategySpec, band_ma_rows,
                              band_ma_signals)


def _indicators(p):
    return {
        "bb": ("bollinger", {"period": p["bb_window"], "std": p["bb_std"]}),
        "ma": (p["ma_type"], {"period": p["ma_window"]}),
    }


def _signals(bars, ind, p):
    bb = ind["bb"]
    return aot.call(band_ma_signals, bars.close, bb["lower"], bb["upper"], ind["ma"]["value"], p["allow_short"],
                           p["setup_lookback"])


def _exits(p):
    return ExitRules(
        stop_pct=p["stop_pct"],
        trail="band",
        trail_band_pct=p["trailing_pct"],
        max_hold_bars=p["max_hold_bars"],
        sizing="risk",
        risk_per_trade=p["risk_per_trade"],
    )


def _levels(ind, p) -> Levels:
    return Levels(band_lo=ind["bb"]["lower"], band_mid=ind["bb"]["mid"], band_hi=ind["bb"]["upper"])


def _overlays(p) -> dict[str, tuple[str, str]]:
    return {"BB mid": ("bb", "mid"), "BB upper": ("bb", "upper"), "BB lower": ("bb", "lower"),
            f"{p['ma_type'].upper()} {p['ma_window']}": ("ma", "value")}


SPEC = StrategySpec(
    name="bollinger_dual",
    description="Long when close < lower band and close crosses above the MA (short mirrored). Stop at "
    "entry x (1 -/+ stop_pct); once price reaches the middle band the stop trails between band and mid. "
    "With setup_lookback = 0 both conditions must hold on one bar, which is rare; a lookback of a few "
    "bars lets the cross confirm a recent excursion.",
    params=(
        Param("bb_window", "int", 20, 2, 500, 1, opt_range=(10, 50, 1), description="Bollinger length (bars)",
              feeds=("indicators", "signals", "levels"), indicator_labels=("bb",)),
        Param("bb_std", "float", 2.0, 0.1, 5.0, 0.25, opt_range=(1.5, 3.0, 0.25), description="band width in std",
              feeds=("indicators", "signals", "levels"), indicator_labels=("bb",)),
        Param("ma_window", "int", 10, 2, 500, 1, opt_range=(5, 30, 1), description="confirmation MA length",
              feeds=("indicators", "signals"), indicator_labels=("ma",)),
        Param("ma_type", "choice", "sma", choices=("sma", "ema"), description="confirmation MA kind",
              feeds=("indicators", "signals"), indicator_labels=("ma",)),
        Param("trailing_pct", "float", 0.8, 0.1, 1.0, 0.05, opt_range=(0.1, 1.0, 0.1),
              description="trailing stop position between band (0) and mid (1)", feeds="exits"),
        Param("stop_pct", "float", 0.05, 0.001, 0.5, 0.005, opt_range=(0.01, 0.1, 0.01),
              description="initial stop as a fraction of the entry price", feeds="exits"),
        Param("risk_per_trade", "float", 0.02, 0.001, 0.2, 0.005, opt_range=(0.005, 0.05, 0.005),
              description="equity fraction risked per trade", feeds="exits"),
        Param("max_hold_bars", "int", 100, 1, 10000, 1, opt_range=(20, 300, 20), description="holding limit",
              feeds="exits"),
        Param("allow_short", "bool", True, description="take the mirrored short entries", feeds="signals"),
        Param("setup_lookback", "int", 0, 0, 500, 1, opt_range=(0, 20, 1),
              description="bars the band excursion may precede the MA cross (0 = same bar, rare)", feeds="signals"),
    ),
    indicators=_indicators,
    signals=_signals,
    levels=_levels,
    exits=_exits,
    overlays=_overlays,
    signal_rule=SignalRule(lines=((BAR_LABEL, "close"), ("bb", "lower"), ("bb", "upper"), ("ma", "value")),
                           params=("allow_short", "setup_lookback"), many=band_ma_rows, signals=_signals),
)
