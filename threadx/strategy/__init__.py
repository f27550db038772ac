"""The strategy authoring API: everything a strategy file imports, built-in or your own.

A strategy is data, not a loop (see :class:`StrategySpec`): typed :class:`Param` declarations
(with the roles they feed), the indicators it needs, a signal function returning one ``uint8``
per bar built from the ``SIG_*`` flags, the indicator lines its exits read (:class:`Levels`)
and its :class:`ExitRules`. The built-in strategies (``threadx/strategy/*.py``) and the files
of your strategies folder (:mod:`threadx.strategy.user`, ``threadx strategy new NAME``) import
from here only. Signal helpers (numba, causal): :func:`cross_signals`,
:func:`zscore_reversion_signals` (``_many``: for ``batch_signals``; ``cross_signals_rows`` and
``zscore_reversion_rows``, ``band_ma_rows``, ``breakout_rows``, ``flip_rows``: for a
:class:`SignalRule`),
:func:`band_ma_signals`, :func:`breakout_signals`,
:func:`flip_signals`; percent stop / target params: :func:`percent_exit_params`,
:func:`percent_exits`. Indicators: ``threadx.indicators.registry.list_indicators()``.

The package is ``threadx.strategy`` (singular), not ``strategies`` as DESIGN.md sketches:
a subpackage ``threadx.strategies`` would shadow the public ``threadx.strategies()``
function as soon as it is imported.
"""
from threadx.contract import (BAR_LABEL, SIG_ADD_LONG, SIG_ADD_SHORT, SIG_ENTER_LONG, SIG_ENTER_SHORT, SIG_EXIT_LONG,
                              SIG_EXIT_SHORT, SIG_REDUCE_LONG, SIG_REDUCE_SHORT, SignalRule)
from threadx.strategy.base import (
    Constraint,
    ExitRules,
    Levels,
    Param,
    StrategySpec,
    get_strategy,
    list_strategies,
    no_levels,
    no_overlays,
    register,
)
from threadx.strategy.percent_exits import percent_exit_params, percent_exits
from threadx.strategy.signal_kernels import (
    band_ma_rows,
    band_ma_signals,
    breakout_rows,
    breakout_signals,
    cross_signals,
    cross_signals_rows,
    flip_rows,
    flip_signals,
    zscore_reversion_signals,
    zscore_reversion_rows,
    zscore_reversion_signals_many,
)

__all__ = [
    "SIG_ENTER_LONG", "SIG_ENTER_SHORT", "SIG_EXIT_LONG", "SIG_EXIT_SHORT", "SIG_ADD_LONG", "SIG_ADD_SHORT",
    "SIG_REDUCE_LONG", "SIG_REDUCE_SHORT", "BAR_LABEL", "SignalRule",
    "Constraint", "ExitRules", "Levels", "Param", "StrategySpec",
    "get_strategy", "list_strategies", "no_levels", "no_overlays", "register",
    "percent_exit_params", "percent_exits",
    "band_ma_signals", "breakout_signals", "cross_signals", "flip_signals", "zscore_reversion_signals",
    "zscore_reversion_signals_many", "cross_signals_rows", "zscore_reversion_rows", "band_ma_rows", "breakout_rows",
    "flip_rows",
]
