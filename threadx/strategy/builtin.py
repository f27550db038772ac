"""Registers the built-in strategies (one line each)."""
from threadx.strategy import bb_atr, bollinger_dual, donchian_breakout, ma_crossover, supertrend
from threadx.strategy.base import register

for _module in (ma_crossover, bb_atr, bollinger_dual, donchian_breakout, supertrend):
    register(_module.SPEC)
