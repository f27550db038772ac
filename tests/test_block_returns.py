"""Per-combo block return moments: kernel, sweep storage and their exactness."""
from __future__ import annotations

import numpy as np
import pytest

import threadx
from threadx.engine import kernel
from threadx.contract import prepare_signals
from threadx.engine.inputs import effective_rules, kernel_args, options_from
from threadx.errors import ParamError, ThreadXError
from threadx.indicators.bank import IndicatorBank
from threadx.strategy.base import get_strategy


def _args(bars, name, params):
    spec = get_strategy(name)
    options = options_from()
    full = {p.name: p.default for p in spec.params} | params
    _, sig, levels = prepare_signals(spec, bars, full, IndicatorBank(disk=False))
    return kernel_args(bars, sig, levels, effective_rules(spec.exits(full), options), options)


def test_block_bounds_tile_the_bars():
    for n, k in [(10, 3), (12556, 32), (5, 32), (1, 1)]:
        ends = kernel.block_bounds(n, k)
        assert ends[-1] == n and (np.diff(np.concatenate([[0], ends])) > 0).all()
        assert len(ends) == min(n, k)


@pytest.mark.parametrize("name", ["bb_atr", "ma_crossover"])
def test_block_moments_equal_the_equity_returns(synthetic_bars, name):
    args = _args(synthetic_bars, name, {})
    ends = kernel.block_bounds(len(synthetic_bars), 7)
    metrics, blocks = kernel.run_fast_blocks(*args, ends)
    np.testing.assert_array_equal(metrics, kernel.run_fast(*args))  # same metrics as the fast kernel
    _, _, equity = kernel.run_full(*args)
    capital = options_from().initial_capital
    prev = np.concatenate([[capital], equity[:-1]])
    r = equity / prev - 1.0
    starts = np.concatenate([[0], ends[:-1]])
    np.testing.assert_allclose(blocks[:, 0], np.add.reduceat(r, starts), rtol=0, atol=1e-12)
    np.testing.assert_allclose(blocks[:, 1], np.add.reduceat(r * r, starts), rtol=0, atol=1e-12)


def test_sweep_stores_block_moments_that_rebuild_the_sharpe(synthetic_bars, tmp_path):
    run = threadx.sweep(synthetic_bars, "ma_crossover", {"fast_period": [5, 10, 20], "slow_period": [30, 50]},
                        store=tmp_path, executor="inline", workers=1, block_returns=8)
    ids, sums, sqs, counts = run.block_moments()
    assert sums.shape == (6, 8) and counts.sum() == len(synthetic_bars)
    assert not any(c.startswith("blk_") for c in run.results.columns)
    n = counts.sum()
    mean = sums.sum(1) / n
    std = np.sqrt((sqs.sum(1) - sums.sum(1) * mean) / (n - 1))
    bpy = run.results.set_index("combo_id").loc[ids]
    sharpe = mean / std * np.sqrt(24 * 365)
    np.testing.assert_allclose(sharpe, bpy["sharpe"].to_numpy(), rtol=1e-5)  # float32 storage


def test_sweep_without_block_returns_says_so(synthetic_bars, tmp_path):
    run = threadx.sweep(synthetic_bars, "ma_crossover", {"fast_period": [5, 10], "slow_period": [30]},
                        store=tmp_path, executor="inline", workers=1, block_returns=0)
    with pytest.raises(ThreadXError, match="no stored block returns"):
        run.block_moments()
    with pytest.raises(ParamError, match="block_returns"):
        threadx.sweep(synthetic_bars, "ma_crossover", {"fast_period": [5]}, store=tmp_path, block_returns=-1)


def test_resuming_with_other_block_returns_is_refused(synthetic_bars, tmp_path):
    space = {"fast_period": [5, 10], "slow_period": [30]}
    threadx.sweep(synthetic_bars, "ma_crossover", space, store=tmp_path, run_id="r", executor="inline",
                  block_returns=8)
    with pytest.raises(ThreadXError, match="different block_end"):
        threadx.sweep(synthetic_bars, "ma_crossover", space, store=tmp_path, run_id="r", executor="inline",
                      block_returns=16)
    again = threadx.sweep(synthetic_bars, "ma_crossover", space, store=tmp_path, run_id="r", executor="inline",
                          block_returns=8)
    assert again.block_moments()[1].shape == (2, 8)
