"""Strategy declarations and the registry.

The package is ``threadx.strategy`` (singular), not ``strategies`` as DESIGN.md sketches:
a subpackage ``threadx.strategies`` would shadow the public ``threadx.strategies()``
function as soon as it is imported.
"""
from threadx.strategy.base import (
    Constraint,
    ExitRules,
    Levels,
    Param,
    StrategySpec,
    get_strategy,
    list_strategies,
    register,
)

__all__ = ["Constraint", "ExitRules", "Levels", "Param", "StrategySpec", "get_strategy", "list_strategies", "register"]
