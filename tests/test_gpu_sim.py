"""The CUDA batch kernel under numba's CUDA simulator, against the CPU fast kernel.

The simulator is chosen when numba.cuda is first imported, so these tests run in their own
process with ``NUMBA_ENABLE_CUDASIM=1``: ``test_gpu_kernel.py`` starts it (CI has no GPU).
Run them directly with ``NUMBA_ENABLE_CUDASIM=1 pytest tests/test_gpu_sim.py``.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip("needs NUMBA_ENABLE_CUDASIM=1 (test_gpu_kernel.py runs this module that way)",
                allow_module_level=True)

import threadx  # noqa: E402
from threadx.data.bars import as_bars  # noqa: E402
from threadx.data.synthetic import generate_synthetic  # noqa: E402
from threadx.engine.layout import METRIC_NAMES  # noqa: E402
from threadx.gpu.devices import detect  # noqa: E402
from threadx.gpu.kernel import DeviceRunner  # noqa: E402
from threadx.optimize.plan import Planner  # noqa: E402
from threadx.gpu.workload import evaluator_for, random_ids  # noqa: E402

STRATEGIES = ("ma_crossover", "bb_atr", "bollinger_dual", "donchian_breakout", "supertrend", "envelope_dca",
              "envelope_dca_short", "grid_atr", "amplitude_hunter")
RTOL = 1e-9
# grids on the short simulated history: levels near enough the SMA to fill
SPACES = {"envelope_dca": {"envelope_start": "0.005:0.015:0.005", "envelope_step": [0.0, 0.005]},
          "envelope_dca_short": {"envelope_start": "0.005:0.015:0.005", "envelope_step": [0.0, 0.005]},
          "grid_atr": {"atr_multiplier_start": "0.2:1.0:0.2", "sides": ["long", "short", "both"]},
          # short windows and a loose regime: entries on 360 bars; band stops, partial exits at the far
          # band, armed trailing exits and adds
          "amplitude_hunter": {"bbwidth_lookback": [20], "score_lookback": [20], "volume_lookback": [10],
                               "amplitude_score_threshold": [0.3], "bbwidth_percentile_threshold": [20.0],
                               "volume_zscore_threshold": [-1.0], "spring_lookback": [30], "pb_entry_min": [0.0],
                               "pb_entry_max": [0.7], "trailing_type": ["chandelier", "pb_floor", "macd_fade"],
                               "pyramiding_max_adds": [0, 2], "use_bip_target": [True, False],
                               "sl_band_pct": [0.0, 0.37]}}


@pytest.fixture(scope="module")
def bars():
    return as_bars(generate_synthetic(days=30, seed=11).iloc[:360])


def assert_metrics_match(gpu: np.ndarray, cpu: np.ndarray) -> None:
    assert gpu.shape == cpu.shape
    assert np.array_equal(np.isnan(gpu), np.isnan(cpu)), "NaN metrics differ"
    assert np.array_equal(np.isinf(gpu), np.isinf(cpu)) and np.array_equal(gpu[np.isinf(gpu)], cpu[np.isinf(cpu)])
    finite = np.isfinite(cpu)
    close = np.abs(gpu[finite] - cpu[finite]) <= RTOL * np.maximum(np.abs(cpu[finite]), 1e-300)
    if not close.all():
        rows, cols = np.nonzero(finite)
        bad = [(int(r), METRIC_NAMES[c]) for r, c, ok in zip(rows, cols, close) if not ok]
        raise AssertionError(f"GPU metrics differ from the CPU's beyond {RTOL}: {bad[:5]}")


def test_the_simulator_is_the_device():
    status = detect()
    assert status.available and status.simulator and status.devices[0].name == "CUDA simulator"


def test_the_compile_check_runs_a_kernel():
    from numba import cuda

    from threadx.gpu.devices import compile_check

    assert compile_check(cuda) == ""


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("n_blocks", [0, 4])
def test_kernel_matches_the_cpu_fast_kernel(bars, strategy, n_blocks):
    evaluator = evaluator_for(strategy, bars, SPACES.get(strategy), n_blocks=n_blocks, fee_bps=7.5, slippage_bps=2.0)
    ids = random_ids(evaluator, 6, seed=len(strategy) + n_blocks)
    plan = Planner(evaluator).plan(ids)
    assert (plan.status == 0).all()
    runner = DeviceRunner(detect().devices[0], bars, evaluator.funding, evaluator.block_end, threads_per_block=4)
    gpu, gpu_blocks = runner.run(plan)  # 2 blocks of 4 threads, 2 threads idle
    cpu = evaluator.evaluate(ids)  # the CPU fast kernel, combo by combo, as a sweep worker runs it
    assert_metrics_match(gpu, cpu.metrics)
    assert cpu.metrics[:, METRIC_NAMES.index("n_trades")].sum() > 0, "the inputs should trade"
    if n_blocks:
        assert gpu_blocks.shape == (6, n_blocks, 2)
        np.testing.assert_allclose(gpu_blocks, cpu.blocks, rtol=RTOL, atol=1e-300)
    else:
        assert gpu_blocks is None


@pytest.mark.parametrize("pieces", [1, 3])
def test_combos_run_at_given_positions_in_that_order_row_for_row(bars, monkeypatch, pieces):
    """The executor hands one device the plan as it is with the positions to run (signal order):
    the device reads rows through them, or, short of memory, runs the pieces as smaller plans."""
    evaluator = evaluator_for("bb_atr", bars, n_blocks=4)
    ids = random_ids(evaluator, 10, seed=3)
    plan = Planner(evaluator).plan(ids)
    runner = DeviceRunner(detect().devices[0], bars, evaluator.funding, evaluator.block_end, threads_per_block=4)
    monkeypatch.setattr(runner, "_pieces", lambda plan, combos: pieces)
    whole, whole_blocks = runner.run(plan)
    positions = np.array([7, 2, 9, 0, 4])
    some, some_blocks = runner.run(plan, positions)
    assert some.shape == (5, whole.shape[1]) and some_blocks.shape == (5, 4, 2)
    assert_metrics_match(some, whole[positions])
    np.testing.assert_array_equal(some_blocks, whole_blocks[positions])
    assert_metrics_match(whole, evaluator.evaluate(ids).metrics)


@pytest.mark.parametrize("pieces", [1, 3])
def test_a_combo_that_failed_to_plan_is_a_nan_row_and_the_others_land_in_their_own_rows(bars, monkeypatch, pieces):
    """In one piece the device writes each combo's row of the plan in place (no scatter on the
    host): a combo it never ran keeps NaN, not whatever the device memory held."""
    from threadx.optimize.plan import STATUS_FAILED

    evaluator = evaluator_for("bb_atr", bars, n_blocks=4)
    ids = random_ids(evaluator, 10, seed=5)
    plan = Planner(evaluator).plan(ids)
    want = evaluator.evaluate(ids).metrics
    plan.status[[3, 8]] = STATUS_FAILED  # (as a combo whose signals raised)
    runner = DeviceRunner(detect().devices[0], bars, evaluator.funding, evaluator.block_end, threads_per_block=4)
    monkeypatch.setattr(runner, "_pieces", lambda plan, combos: pieces)
    got, blocks = runner.run(plan)
    assert np.isnan(got[[3, 8]]).all() and np.isnan(blocks[[3, 8]]).all()
    keep = [k for k in range(10) if k not in (3, 8)]
    assert_metrics_match(got[keep], want[keep])
    assert not np.isnan(blocks[keep]).all()


def test_a_runner_splits_its_time_and_builds_one_kernel_per_register_cap(bars):
    """The seconds of host inputs, upload, kernel and download add up over launches (the
    benchmark prints them); runners of one cap share its compiled kernel."""
    evaluator = evaluator_for("bb_atr", bars)
    plan = Planner(evaluator).plan(random_ids(evaluator, 4, seed=5))
    device = detect().devices[0]
    runner = DeviceRunner(device, bars, evaluator.funding, None, threads_per_block=4, max_registers=96)
    assert runner.timings == {"inputs": 0.0, "upload": 0.0, "kernel": 0.0, "download": 0.0}
    runner.run(plan)
    first = dict(runner.timings)
    assert first["kernel"] > 0.0 and all(v >= 0.0 for v in first.values())
    runner.run(plan)
    assert runner.timings["kernel"] > first["kernel"]
    assert DeviceRunner(device, bars, evaluator.funding, None, max_registers=96).kernel is runner.kernel
    assert runner.registers() is None  # the simulator compiles nothing


def test_kernel_with_funding_and_leverage_matches(bars):
    import pandas as pd

    rates = pd.Series(0.0004, index=pd.date_range(bars.index[0].floor("D"), periods=200, freq="8h", tz="UTC"))
    evaluator = evaluator_for("ma_crossover", bars, {"fast_period": [5, 8], "slow_period": [20, 30],
                                                     "allow_short": True}, funding=rates, leverage=3.0,
                              sizing="fraction", fraction=0.5)
    ids = np.arange(evaluator.space.size)
    plan = Planner(evaluator).plan(ids)
    gpu, _ = DeviceRunner(detect().devices[0], bars, evaluator.funding, None).run(plan)
    cpu = evaluator.evaluate(ids)
    assert np.abs(cpu.metrics[:, METRIC_NAMES.index("total_funding")]).sum() > 0
    assert_metrics_match(gpu, cpu.metrics)



@pytest.mark.parametrize("strategy,params", [("bb_atr", {}), ("bollinger_dual", {"setup_lookback": 3}),
                                             ("donchian_breakout", {})])
def test_device_run_in_full_mode_records_the_cpu_trades_and_levels(bars, strategy, params):
    """The device build of the engine's ``run`` with trade rows (sweeps pass none) books the
    CPU's trades, stop and target levels included: the level record compiles into the same
    source for both targets."""
    from numba import cuda

    from threadx.engine import kernel
    from threadx.contract import prepare_signals
    from threadx.engine.inputs import EngineOptions, effective_rules, kernel_args
    from threadx.engine.layout import N_METRICS, N_STATE, N_TRADE_COLS, S_TRADE_ROWS, TRADE_COLUMNS
    from threadx.gpu.kernel import device_functions
    from threadx.strategy import get_strategy

    device_run = device_functions()["run"]

    @cuda.jit
    def one(o, h, l, c, sig, atr, blo, bmid, bhi, funding, p, st, m, trades, equity, block_end, blocks):  # one thread
        device_run(o, h, l, c, sig, atr, blo, bmid, bhi, funding, p, st, m, trades, equity, block_end, blocks,
                   False)  # (as the batch kernel: no spacing jump)

    spec = get_strategy(strategy)
    values = spec.normalize(params)
    options = EngineOptions(slippage_bps=2.0).validated()
    _, sig, levels = prepare_signals(spec, bars, values)
    args = kernel_args(bars, sig, levels, effective_rules(spec.exits(values), options), options)
    cpu_m, cpu_rows, cpu_equity = kernel.run_full(*args)
    n = len(bars)
    st, m = cuda.to_device(np.empty(N_STATE)), cuda.to_device(np.empty(N_METRICS))
    trades, equity = cuda.to_device(np.full((n + 1, N_TRADE_COLS), np.nan)), cuda.to_device(np.empty(n))
    no_blocks = cuda.to_device(np.empty(0, np.int64)), cuda.to_device(np.empty((0, 2)))
    one[1, 1](*[cuda.to_device(np.ascontiguousarray(a)) for a in args], st, m, trades, equity, *no_blocks)
    rows = trades.copy_to_host()[: int(st.copy_to_host()[S_TRADE_ROWS])]
    assert len(cpu_rows) > 3 and rows.shape == cpu_rows.shape
    levels_at = [TRADE_COLUMNS.index(c) for c in ("stop_at_entry", "stop_at_exit", "target", "target_at_exit")]
    assert np.isfinite(cpu_rows[:, levels_at[0]]).all()  # these strategies all set a stop
    np.testing.assert_allclose(rows, cpu_rows, rtol=RTOL, atol=0)  # NaN where the CPU has NaN
    np.testing.assert_allclose(equity.copy_to_host(), cpu_equity, rtol=RTOL)
    assert_metrics_match(m.copy_to_host()[None], cpu_m[None])

def _sweep_frame(run):
    frame = run.results.sort_values("combo_id").reset_index(drop=True)
    return frame.drop(columns=["error"])


def test_gpu_sweep_stores_what_the_cpu_sweep_stores(bars, tmp_path):
    import pandas as pd

    space = {"fast_period": "5:7:1", "slow_period": [20, 30], "allow_short": [False, True]}
    gpu = threadx.sweep(bars, "ma_crossover", space, executor="gpu", store=tmp_path, run_id="gpu", block_returns=3)
    cpu = threadx.sweep(bars, "ma_crossover", space, executor="inline", store=tmp_path, run_id="cpu",
                        block_returns=3)
    assert gpu.manifest["status"] == "completed" and gpu.manifest["machine"]["executor"] == "gpu"
    assert len(gpu.results) == 12
    pd.testing.assert_frame_equal(_sweep_frame(gpu), _sweep_frame(cpu), rtol=RTOL)


def test_gpu_sweep_of_a_strategies_folder_strategy(bars, tmp_path, monkeypatch):
    import pandas as pd

    from threadx.strategy.scaffold import new_strategy_file

    monkeypatch.setenv("THREADX_STRATEGY_DIR", str(tmp_path / "strategies"))
    new_strategy_file("rsi_gpu")
    space = {"rsi_period": "6:9:1", "atr_stop": [1.0, 2.0]}
    gpu = threadx.sweep(bars, "rsi_gpu", space, executor="gpu", store=tmp_path, run_id="gpu")
    cpu = threadx.sweep(bars, "rsi_gpu", space, executor="inline", store=tmp_path, run_id="cpu")
    assert gpu.manifest["strategy_code"] == cpu.manifest["strategy_code"] == threadx.get_strategy("rsi_gpu").code_hash
    assert len(gpu.results) == 8 and (gpu.results["status"] == "ok").all()
    pd.testing.assert_frame_equal(_sweep_frame(gpu), _sweep_frame(cpu), rtol=RTOL)


def test_gpu_sweep_reports_progress_and_a_rerun_adds_nothing(bars, tmp_path):
    space = {"bb_period": "10:13:1", "entry_z": [1.0, 1.5]}
    reports = []
    first = threadx.sweep(bars, "bb_atr", space, executor="gpu", store=tmp_path, run_id="r", progress=reports.append)
    assert first.manifest["status"] == "completed" and len(first.results) == 8
    assert reports[-1].done == reports[-1].total == 8 and reports[-1].failed == 0
    again = threadx.sweep(bars, "bb_atr", space, executor="gpu", store=tmp_path, run_id="r")
    assert again.manifest["status"] == "completed" and len(again.results) == 8
    assert again.results["combo_id"].is_unique


def test_gpu_sweep_cancel_keeps_finished_batches_and_resumes(bars, tmp_path, monkeypatch):
    import itertools

    from threadx.gpu import executor as gpu_executor

    monkeypatch.setattr(gpu_executor, "_MIN_BATCH", 2)
    monkeypatch.setattr(gpu_executor, "_SIGNAL_BYTES_PER_BATCH", 2 * len(bars))  # batches of two combos
    space = {"bb_period": "10:13:1", "entry_z": [1.0, 1.5]}
    calls = itertools.count()
    run = threadx.sweep(bars, "bb_atr", space, executor="gpu", store=tmp_path, run_id="c", chunk_size=1,
                        cancel=lambda: next(calls) >= 3)  # asked before each chunk: stops after the first batch
    assert run.manifest["status"] == "cancelled"
    assert 2 <= len(run.results) < 8
    resumed = threadx.sweep(bars, "bb_atr", space, executor="gpu", store=tmp_path, run_id="c")
    assert resumed.manifest["status"] == "completed" and len(resumed.results) == 8
    assert resumed.results["combo_id"].is_unique


def test_gpu_profile_command_measures_the_simulator(tmp_path, monkeypatch, capsys):
    import argparse

    from threadx.gpu.balance import active_weights, load_profile
    from threadx.gpu.cli import add_gpu_commands

    monkeypatch.setenv("THREADX_CONFIG_DIR", str(tmp_path))
    parser = argparse.ArgumentParser(prog="threadx")
    add_gpu_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["gpu", "profile", "--combos", "3", "--bars", "120", "--seconds", "0.01"])
    assert args.func(args) == 0
    assert "CUDA simulator" in capsys.readouterr().out
    profile = load_profile(tmp_path / "gpu_profile.json")
    assert profile is not None and profile.ratios == [1.0] and profile.combos_per_s[0] > 0
    assert active_weights(detect().devices, tmp_path / "gpu_profile.json").source == "profile"
    args = parser.parse_args(["gpu", "info"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "CUDA simulator" in out and "profile weights" in out
