"""Grid strategies (SPEC §4): envelope_dca, envelope_dca_short and grid_atr.

No entry signals: each bar places up to K limit levels from the moving average (and ATR) of
the previous close, and the engine fills them as the price reaches them (SPEC §3, several
positions at once). The whole cycle closes at the moving average of the previous close
(take-profit), at ``sl_percent`` of the average entry price (stop), or after
``max_hold_bars`` from its first fill. Leg sizes: the cycle's starting equity x
``allocation`` / K per level, times ``leverage``.
"""
from __future__ import annotations

import numpy as np

from threadx.strategy import Constraint, ExitRules, Levels, Param, StrategySpec


def _no_signals(bars, ind, p) -> np.ndarray:
    return np.zeros(len(bars), dtype=np.uint8)


def _sma(p) -> dict:
    return {"ma": ("sma", {"period": p["ma_period"]})}


def _sma_levels(ind, p) -> Levels:
    return Levels(band_mid=ind["ma"]["value"])


def envelope_offsets(p) -> tuple[float, ...]:
    """Level k below the SMA: envelope_start + k x envelope_step (fractions of the SMA)."""
    return tuple(p["envelope_start"] + k * p["envelope_step"] for k in range(p["num_levels"]))


def _common_exits(p, **grid) -> ExitRules:
    return ExitRules(stop_pct=p["sl_percent"], target_mid=True, max_hold_bars=p["max_hold_bars"],
                     grid_levels=p["num_levels"], allocation=p["allocation"], leverage=p["leverage"], **grid)


def _envelope_exits(p) -> ExitRules:
    return _common_exits(p, grid_pct=envelope_offsets(p), grid_sides="long")


def _envelope_short_exits(p) -> ExitRules:
    # the short offset symmetric in log return to the long one: upper = 1 / (1 - lower) - 1
    return _common_exits(p, grid_pct=tuple(1.0 / (1.0 - o) - 1.0 for o in envelope_offsets(p)), grid_sides="short")


def _overlays(p) -> dict[str, tuple[str, str]]:
    return {f"SMA {p['ma_period']}": ("ma", "value")}


def _levels_below_one(p) -> bool:
    return p["envelope_start"] + (p["num_levels"] - 1) * p["envelope_step"] < 1.0


_CYCLE = (
    Param("sl_percent", "float", 0.2, 0.01, 0.9, 0.01, opt_range=(0.05, 0.3, 0.05),
          description="stop: fraction of the average entry price", feeds="exits"),
    Param("max_hold_bars", "int", 0, 0, 10_000, 1, opt_range=(0, 96, 48),
          description="close the cycle after this many bars from its first fill (0 = off)", feeds="exits"),
    Param("allocation", "float", 1.0, 0.05, 1.0, 0.05, description="share of equity split over the levels",
          feeds="exits"),
    Param("leverage", "float", 1.0, 1.0, 10.0, 0.5, description="leverage", feeds="exits"),
)
_ENVELOPE_PARAMS = (
    Param("ma_period", "int", 7, 2, 500, 1, opt_range=(5, 30, 1), description="moving average length (bars)",
          feeds=("indicators", "levels"), indicator_labels=("ma",)),
    Param("envelope_start", "float", 0.05, 0.005, 0.5, 0.005, opt_range=(0.02, 0.1, 0.01),
          description="first level: this fraction beyond the SMA", feeds="exits"),
    Param("envelope_step", "float", 0.02, 0.0, 0.2, 0.005, opt_range=(0.01, 0.05, 0.01),
          description="each next level this much further", feeds="exits"),
    Param("num_levels", "int", 3, 1, 6, 1, opt_range=(1, 6, 1), description="limit levels K", feeds="exits"),
    *_CYCLE,
)
_BELOW_ONE = Constraint("envelope_start + (num_levels - 1) x envelope_step < 1", _levels_below_one)

ENVELOPE_DCA = StrategySpec(
    name="envelope_dca",
    description="DCA grid below the SMA: K levels at SMA x (1 - (start + k x step)) of the previous close, "
    "long; the cycle closes back at the SMA, at a stop below the average entry, or after max_hold_bars.",
    params=_ENVELOPE_PARAMS,
    indicators=_sma, signals=_no_signals, levels=_sma_levels, exits=_envelope_exits,
    constraints=(_BELOW_ONE,),
    overlays=_overlays,
)

ENVELOPE_DCA_SHORT = StrategySpec(
    name="envelope_dca_short",
    description="DCA grid above the SMA, short: levels at SMA x (1 + u_k), u_k = 1 / (1 - (start + k x step)) - 1 "
    "(symmetric in log return to envelope_dca's); the cycle closes back at the SMA, at a stop above the "
    "average entry, or after max_hold_bars.",
    params=_ENVELOPE_PARAMS,
    indicators=_sma, signals=_no_signals, levels=_sma_levels, exits=_envelope_short_exits,
    constraints=(_BELOW_ONE,),
    overlays=_overlays,
)


def _atr_indicators(p) -> dict:
    return {"ma": ("sma", {"period": p["ma_period"]}), "atr": ("atr", {"period": p["atr_period"], "method": "wilder"})}


def _atr_levels(ind, p) -> Levels:
    return Levels(band_mid=ind["ma"]["value"], atr=ind["atr"]["value"])


def _grid_atr_exits(p) -> ExitRules:
    mults = tuple(p["atr_multiplier_start"] + k * p["atr_multiplier_step"] for k in range(p["num_levels"]))
    return _common_exits(p, grid_atr=mults, grid_sides=p["sides"])


GRID_ATR = StrategySpec(
    name="grid_atr",
    description="ATR grid around the SMA: K levels at SMA -/+ ATR x (start + k x step) of the previous close, "
    "long below, short above or both (a cycle blocks the other side until it ends); the cycle closes back "
    "at the SMA, at a stop beyond the average entry, or after max_hold_bars.",
    params=(
        Param("ma_period", "int", 14, 2, 500, 1, opt_range=(10, 30, 5), description="moving average length (bars)",
              feeds=("indicators", "levels"), indicator_labels=("ma",)),
        Param("atr_period", "int", 14, 2, 200, 1, opt_range=(7, 21, 7), description="ATR length (bars)",
              feeds=("indicators", "levels"), indicator_labels=("atr",)),
        Param("atr_multiplier_start", "float", 2.0, 0.1, 10.0, 0.1, opt_range=(1.0, 2.5, 0.5),
              description="first level: this many ATRs from the SMA", feeds="exits"),
        Param("atr_multiplier_step", "float", 1.0, 0.0, 5.0, 0.1, opt_range=(0.5, 1.5, 0.5),
              description="each next level this many ATRs further", feeds="exits"),
        Param("num_levels", "int", 3, 1, 6, 1, opt_range=(2, 4, 1), description="limit levels K", feeds="exits"),
        Param("sides", "choice", "long", choices=("long", "short", "both"), description="which side the grid trades",
              feeds="exits"),
        *_CYCLE,
    ),
    indicators=_atr_indicators, signals=_no_signals, levels=_atr_levels, exits=_grid_atr_exits,
    overlays=_overlays,
)
