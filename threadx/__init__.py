"""ThreadX: research workstation for crypto trading strategies.

Public API::

    df = threadx.load_ohlcv("binance/BTC_USDT-1h")        # or a file path
    result = threadx.backtest(df, "bb_atr", {"entry_z": 1.5})
    result.metrics, result.trades, result.equity
    threadx.strategies()                                  # registry with param declarations
    run = threadx.sweep(df, "bb_atr", {"entry_z": "0.5:2.5:0.1"}, sampler="grid")
    run.results, run.manifest, run.top(10)
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from threadx.data.io import load_ohlcv
    from threadx.engine.backtest import Result, backtest
    from threadx.optimize.runner import sweep
    from threadx.optimize.store import SweepRun

__all__ = ["load_ohlcv", "backtest", "Result", "sweep", "SweepRun", "strategies", "__version__"]


def strategies() -> dict:
    """The strategy registry: name -> StrategySpec (params, constraints, description)."""
    from threadx.strategy.base import list_strategies

    return list_strategies()


def __getattr__(name: str) -> Any:  # lazy: `import threadx` stays cheap
    if name == "load_ohlcv":
        from threadx.data.io import load_ohlcv

        return load_ohlcv
    if name in ("backtest", "Result"):
        from threadx.engine import backtest as module

        return getattr(module, name)
    if name == "sweep":
        from threadx.optimize.runner import sweep

        return sweep
    if name == "SweepRun":
        from threadx.optimize.store import SweepRun

        return SweepRun
    raise AttributeError(f"module 'threadx' has no attribute {name!r}")
