"""Fixed workloads for the GPU profile, the benchmark and the tests."""
from __future__ import annotations

from typing import Any

import numpy as np

from threadx.data.bars import Bars, as_bars
from threadx.engine.inputs import options_from
from threadx.optimize.evaluate import Evaluator, SweepTask
from threadx.optimize.samplers import monte_carlo_ids
from threadx.strategy.base import StrategySpec, get_strategy


def declared_space(spec: StrategySpec) -> dict[str, Any]:
    """Every param over its declared optimisation range (both bools, every choice)."""
    space: dict[str, Any] = {}
    for p in spec.params:
        if p.opt_range:
            space[p.name] = "{}:{}:{}".format(*p.opt_range)
        elif p.kind == "bool":
            space[p.name] = [True, False]
        elif p.kind == "choice":
            space[p.name] = list(p.choices)
    return space


def evaluator_for(strategy: str, bars: Bars, space: dict[str, Any] | None = None, n_blocks: int = 0,
                  **engine_options: Any) -> Evaluator:
    """An in-process Evaluator (its own memory-only IndicatorBank) of a sweep over ``space``."""
    from threadx.indicators import IndicatorBank

    spec = get_strategy(strategy)
    task = SweepTask.of(spec, space if space is not None else declared_space(spec), options_from(**engine_options),
                        n_blocks)
    return Evaluator(task, bars, IndicatorBank(disk=False))


def random_ids(evaluator: Evaluator, n: int, seed: int) -> np.ndarray:
    """``n`` distinct valid random combos of the evaluator's space."""
    return monte_carlo_ids(evaluator.space, "random", n, seed).ids


def synthetic_plan(strategy: str, n_bars: int, n_combos: int, seed: int):
    """(Evaluator, Plan) of ``n_combos`` random combos on ``n_bars`` seeded synthetic 1h bars."""
    from threadx.data.synthetic import generate_synthetic
    from threadx.optimize.plan import Planner

    bars = as_bars(generate_synthetic(days=max(2, n_bars // 24 + 1), seed=seed).iloc[:n_bars])
    evaluator = evaluator_for(strategy, bars)
    return evaluator, Planner(evaluator).plan(random_ids(evaluator, n_combos, seed))
