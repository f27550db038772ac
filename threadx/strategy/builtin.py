"""Registers the built-in strategies (one line each)."""
from threadx.strategy import (amplitude_hunter, bb_atr, bollinger_dual, donchian_breakout, grids, ma_crossover,
                              supertrend)
from threadx.strategy.base import register

_SPECS = (ma_crossover.SPEC, bb_atr.SPEC, bollinger_dual.SPEC, donchian_breakout.SPEC, supertrend.SPEC,
          grids.ENVELOPE_DCA, grids.ENVELOPE_DCA_SHORT, grids.GRID_ATR, amplitude_hunter.SPEC)
NAMES: tuple[str, ...] = tuple(spec.name for spec in _SPECS)

for _spec in _SPECS:
    register(_spec)
