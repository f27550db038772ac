"""Registers the built-in strategies (one line each)."""
from threadx.strategy import bb_atr, bollinger_dual, donchian_breakout, ma_crossover, supertrend
from threadx.strategy.base import register

_MODULES = (ma_crossover, bb_atr, bollinger_dual, donchian_breakout, supertrend)
NAMES: tuple[str, ...] = tuple(_module.SPEC.name for _module in _MODULES)

for _module in _MODULES:
    register(_module.SPEC)
