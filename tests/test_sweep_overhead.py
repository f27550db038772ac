"""The shortcuts that cut a sweep's fixed cost give what the plain paths give."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from threadx.data.bars import as_bars
from threadx.data.synthetic import generate_synthetic
from threadx.indicators import IndicatorBank
from threadx.indicators import bank as bank_module
from threadx.optimize import shared
from threadx.optimize.shared import SharedPack, _Collector, indicator_axes, indicator_requests, prepare_requests
from threadx.optimize.space import SearchSpace
from threadx.strategy.base import get_strategy, list_strategies

SPACES = {
    "ma_crossover": {"fast_period": "5:30:1", "slow_period": "20:80:5", "ma_type": ["sma", "ema"]},
    "bb_atr": {"bb_period": "10:40:2", "bb_std": "1.5:3.0:0.25", "atr_period": "7:21:2", "entry_z": "0.5:2.5:0.5"},
}


@pytest.fixture(scope="module")
def bars():
    return as_bars(generate_synthetic("BTC_USDT", "1h", days=120, seed=3))


def _one_by_one(search: SearchSpace) -> dict:
    """indicator_requests of a grid as the collector's add() gives it, combo by combo."""
    relevant = [search.axes[k] for k in indicator_axes(search)]
    base = search.params(0)
    collect = _Collector(search)
    for values in itertools.product(*(a.values for a in relevant)):
        collect.add({**base, **dict(zip((a.name for a in relevant), values))})
    return collect.out


@pytest.mark.parametrize("strategy", sorted(SPACES))
def test_grid_requests_are_those_of_each_combo(strategy):
    search = SearchSpace(get_strategy(strategy), SPACES[strategy])
    got, want = indicator_requests(search, None), _one_by_one(search)
    assert got == want  # the same requests with the same params (made label by label: in another order)


def _small_space(spec) -> dict:
    """Up to four values of each param with an optimisation range (choices: all)."""
    space = {}
    for p in spec.params:
        if getattr(p, "choices", None):
            space[p.name] = list(p.choices)
        elif getattr(p, "opt_range", None):
            lo, hi, step = p.opt_range
            values = np.arange(lo, hi + step / 2, step)[:4]
            space[p.name] = [int(v) for v in values] if p.kind == "int" else [float(v) for v in values]
    return space


BUILTIN = ("ma_crossover", "bb_atr", "bollinger_dual", "donchian_breakout", "supertrend", "envelope_dca",
           "envelope_dca_short", "grid_atr", "amplitude_hunter")  # not list_strategies(): tests register others


@pytest.mark.parametrize("strategy", BUILTIN)
def test_grid_requests_of_every_builtin_strategy(strategy):
    spec = get_strategy(strategy)
    search = SearchSpace(spec, _small_space(spec))
    got, want = indicator_requests(search, None), _one_by_one(search)
    assert got == want


def test_requests_of_a_strategy_that_refuses_combos_skip_them():
    search = SearchSpace(get_strategy("ma_crossover"), {"fast_period": "5:30:5", "slow_period": "10:40:10"})
    assert indicator_requests(search, None) == _one_by_one(search)


@pytest.mark.parametrize("strategy", sorted(SPACES))
def test_threaded_indicator_batches_and_pack_are_bit_identical(strategy, bars, monkeypatch):
    search = SearchSpace(get_strategy(strategy), SPACES[strategy])
    requests = indicator_requests(search, None)
    monkeypatch.setattr(bank_module, "_COMPUTE_THREADS", 1)
    monkeypatch.setattr(shared, "_COPY_THREADS", 1)
    serial = prepare_requests(requests, bars, IndicatorBank(disk=False))
    one = SharedPack.create(bars, serial, "serial")
    monkeypatch.setattr(bank_module, "_COMPUTE_THREADS", 3)
    monkeypatch.setattr(bank_module, "_ELEMENTS_PER_THREAD", 1)
    monkeypatch.setattr(shared, "_COPY_THREADS", 3)
    monkeypatch.setattr(shared, "_COPY_BYTES_PER_THREAD", 1)
    threaded = prepare_requests(requests, bars, IndicatorBank(disk=False))
    other = SharedPack.create(bars, threaded, "threaded")
    try:
        assert list(threaded) == list(serial)
        for key, outputs in serial.items():
            assert list(threaded[key]) == list(outputs)
            for name, arr in outputs.items():
                assert threaded[key][name].tobytes() == arr.tobytes(), (key, name)
        assert one.layout.indicators == other.layout.indicators and one.layout.ohlcv == other.layout.ohlcv
        assert one._buf.tobytes() == other._buf.tobytes()
    finally:
        one.close()
        other.close()


def test_every_builtin_strategy_is_covered():
    assert set(BUILTIN) <= set(list_strategies())
