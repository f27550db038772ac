"""Strategy declarations and the registry."""
from threadx.strategies.base import (
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
