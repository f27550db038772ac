"""A sweep's sampled rows re-run one by one (threadx.optimize.spot_check): a wrong role
declaration that the role check before the sweep missed is said in the run's warnings."""
from __future__ import annotations

import numpy as np
import pytest

import threadx
from threadx.optimize.evaluate import STATUS_OK, ChunkResult
from threadx.optimize.spot_check import RowSample

_GATED = '''
import numpy as np
from threadx.strategy import SIG_ENTER_LONG, SIG_EXIT_LONG, ExitRules, Levels, Param, StrategySpec


def indicators(p):
    return {"fast": ("sma", {"period": p["fast"]}), "slow": ("sma", {"period": 40})}


def signals(bars, ind, p):
    f, s = ind["fast"]["value"], ind["slow"]["value"]
    above = np.nan_to_num(f - s) > 0
    sig = np.zeros(len(f), dtype=np.uint8)
    sig[1:][above[1:] & ~above[:-1]] |= SIG_ENTER_LONG
    sig[1:][~above[1:] & above[:-1]] |= SIG_EXIT_LONG
    if GATE:
        if abs(p["stop"] - 0.03) < 1e-12:  # undeclared: "stop" feeds the signals at 0.03
            sig[sig == SIG_ENTER_LONG] = 0
    return sig


SPEC = StrategySpec(
    name="gated", description="a stop that also gates the entries at one value",
    params=(Param("fast", "int", 10, 2, 30, 1, opt_range=(5, 15, 5), feeds=("indicators", "signals"),
                  indicator_labels=("fast",)),
            Param("stop", "float", 0.02, 0.01, 0.05, 0.01, opt_range=(0.01, 0.05, 0.01), feeds="exits")),
    indicators=indicators, signals=signals, levels=lambda ind, p: Levels(),
    exits=lambda p: ExitRules(stop_pct=p["stop"]),
)
'''


@pytest.mark.parametrize("gate", [True, False])
def test_rows_of_combos_merged_by_a_wrong_role_are_said(strategy_dir, tmp_path, monkeypatch, synthetic_bars, gate):
    from threadx.checks import roles

    (strategy_dir / "gated.py").write_text(_GATED.replace("GATE", str(gate)))
    monkeypatch.setattr(roles, "check_sweep_roles", lambda *a, **k: None)  # (as when its few starts miss the value)
    run = threadx.sweep(synthetic_bars, "gated", {"fast": [5, 10, 15], "stop": [0.01, 0.02, 0.03, 0.04]},
                        store=tmp_path / "runs", executor="inline", workers=1)
    said = [w for w in run.warnings if "declared role" in w]
    if not gate:
        assert not said and "check" in run.manifest["timings"]["stages"]
        return
    assert len(said) == 1 and said[0].startswith("combo ") and "stop=0.03" in said[0], run.warnings
    assert "run `threadx strategy check gated`".lower() in said[0].lower()


def test_builtin_sweeps_are_not_re_run(tmp_path, synthetic_bars):
    run = threadx.sweep(synthetic_bars, "ma_crossover", {"fast_period": [5, 10], "slow_period": [30]},
                        store=tmp_path / "runs", executor="inline", workers=1)
    assert "check" not in run.manifest["timings"]["stages"]


def test_the_sample_is_uniform_seeded_and_takes_only_rows_that_ran():
    def chunk(start: int) -> ChunkResult:
        ids = np.arange(start, start + 100)
        status = np.full(100, STATUS_OK, dtype=np.int8)
        status[::10] = STATUS_OK + 1  # failed rows
        return ChunkResult(ids, np.tile(ids[:, None].astype(float), (1, 3)), status, {})

    samples = []
    for _ in range(2):
        sample = RowSample(size=24, seed=7)
        for start in range(0, 1000, 100):
            sample.offer(chunk(start))
        samples.append(sample.ids)
        assert sample.seen == 900 and len(sample.ids) == 24 and all(i % 10 for i in sample.ids)
        assert all(row[0] == i for i, row in zip(sample.ids, sample.rows))
    assert samples[0] == samples[1] and max(samples[0]) > 500  # the same draw; not only the first chunks
    early = []  # uniform: the first half of the rows holds half of the sample on average
    for seed in range(300):
        sample = RowSample(size=24, seed=seed)
        for start in range(0, 1000, 100):
            sample.offer(chunk(start))
        early.append(sum(i < 500 for i in sample.ids))
    assert 11.0 < np.mean(early) < 13.0, np.mean(early)
