"""ThreadX: research workstation for crypto trading strategies.

Public API::

    df = threadx.load_ohlcv("binance/BTC_USDT-1h")        # or a file path
    result = threadx.backtest(df, "bb_atr", {"entry_z": 1.5})
    result.metrics, result.trades, result.equity
    threadx.strategies()                                  # built-in and your own (./strategies)
    run = threadx.sweep(df, "bb_atr", {"entry_z": "0.5:2.5:0.1"}, sampler="grid")
    run.results, run.manifest, run.top(10)
    wf = threadx.walk_forward(df, "bb_atr", is_days=180, oos_days=30, n=1000)
    threadx.validate(run) / threadx.validate(wf)          # bootstrap, DSR, PBO, stability, grade
    threadx.bootstrap(result), threadx.deflated_sharpe(run), threadx.pbo(run, S=16)
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from threadx.hugepages import no_arrow_hugepages, no_numpy_hugepages  # noqa: E402 - before numpy is imported

no_numpy_hugepages()
no_arrow_hugepages()

from threadx.jit_cache import use_versioned_cache  # noqa: E402 - before any kernel module is compiled or loaded

use_versioned_cache()

if TYPE_CHECKING:  # pragma: no cover
    from threadx.data.io import load_ohlcv
    from threadx.api import Result, backtest
    from threadx.optimize.runner import sweep
    from threadx.optimize.store import SweepRun
    from threadx.validation.report import bootstrap, deflated_sharpe, pbo
    from threadx.validation.walkforward import walk_forward

__all__ = ["load_ohlcv", "backtest", "Result", "sweep", "SweepRun", "walk_forward", "validate", "bootstrap",
           "deflated_sharpe", "pbo", "strategies", "get_strategy", "__version__"]


def validate(subject: Any, df: Any = None, **kwargs: Any) -> Any:
    """Validation report (bootstrap, DSR, PBO, stability, regimes, grade) of a walk-forward
    result, or of a stored sweep (a SweepRun or run id; ``df``: its data when not named)."""
    from threadx.validation import report
    from threadx.validation.walkforward import WalkForwardResult

    if isinstance(subject, WalkForwardResult):
        if df is not None:
            raise TypeError("a walk-forward result carries its data; do not pass df")
        return report.validate_walk_forward(subject, **kwargs)
    return report.validate_sweep(subject, df, **kwargs)


def strategies() -> dict:
    """The strategies by name (built-in, then the strategies folder's as its files are now):
    name -> StrategySpec (params, constraints, description, origin)."""
    from threadx.strategy.base import list_strategies

    return list_strategies()


def get_strategy(name: str) -> Any:
    """One strategy by name (a strategies-folder file is re-read when it changed)."""
    from threadx.strategy.base import get_strategy as lookup

    return lookup(name)


def __getattr__(name: str) -> Any:  # lazy: `import threadx` stays cheap
    if name == "load_ohlcv":
        from threadx.data.io import load_ohlcv

        return load_ohlcv
    if name in ("backtest", "Result"):
        from threadx import api

        return getattr(api, name)
    if name == "sweep":
        from threadx.optimize.runner import sweep

        return sweep
    if name == "SweepRun":
        from threadx.optimize.store import SweepRun

        return SweepRun
    if name == "walk_forward":
        from threadx.validation.walkforward import walk_forward

        return walk_forward
    if name in ("bootstrap", "deflated_sharpe", "pbo"):
        from threadx.validation import report

        return getattr(report, name)
    raise AttributeError(f"module 'threadx' has no attribute {name!r}")
