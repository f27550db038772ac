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


def _filter_indicators(p):
    needs = dict(ma_crossover.SPEC.indicators(p))
    if p["use_filter"]:  # a need that exists only for some values of another param
        needs["filter"] = ("ema", {"period": p["filter_period"]})
    return needs


def _filter_signals(bars, ind, p):
    sig = ma_crossover.SPEC.signals(bars, ind, p)
    if p["use_filter"]:
        sig = sig * (bars.close > ind["filter"]["value"])
    return sig.astype("uint8")


FILTER_SPEC = StrategySpec(
    name="test_filter",
    description="ma_crossover with an optional EMA filter (tests only)",
    params=ma_crossover.SPEC.params + (Param("use_filter", "bool", False), Param("filter_period", "int", 20, 2, 500, 1)),
    constraints=ma_crossover.SPEC.constraints,
    indicators=_filter_indicators,
    signals=_filter_signals,
    levels=ma_crossover.SPEC.levels,
    exits=ma_crossover.SPEC.exits,
)

if "test_filter" not in list_strategies():
    register(FILTER_SPEC)
