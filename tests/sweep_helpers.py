"""A test-only strategy for sweep failure tests, registered on import.

``mode``: 0 trades like ma_crossover, 1 raises, 2 kills its own process when it runs in
a sweep worker (as a segfault or OOM kill would), 3 sleeps 20 ms per combo.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import time

from threadx.strategy import ma_crossover
from threadx.strategy.base import Param, StrategySpec, list_strategies, register


def _signals(bars, ind, p):
    if p["mode"] == 1:
        raise ValueError(f"deliberate failure for fast_period={p['fast_period']}")
    if p["mode"] == 2 and multiprocessing.parent_process() is not None:
        os.kill(os.getpid(), signal.SIGKILL)
    if p["mode"] == 3:
        time.sleep(0.02)
    return ma_crossover.SPEC.signals(bars, ind, p)


SPEC = StrategySpec(
    name="test_faulty",
    description="ma_crossover with deliberate failures (tests only)",
    params=ma_crossover.SPEC.params + (Param("mode", "int", 0, 0, 3, 1),),
    constraints=ma_crossover.SPEC.constraints,
    indicators=ma_crossover.SPEC.indicators,
    signals=_signals,
    levels=ma_crossover.SPEC.levels,
    exits=ma_crossover.SPEC.exits,
)

if "test_faulty" not in list_strategies():
    register(SPEC)
