"""Sweeps: stored metrics equal backtests, resume, cancel, failures, dead workers, no leaks."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import threadx
from threadx.engine.layout import METRIC_NAMES
from threadx.indicators import IndicatorBank
from threadx.optimize.runner import sweep
from threadx.optimize.store import ResultStore

sys.path.insert(0, str(Path(__file__).parent))
import sweep_helpers  # noqa: E402,F401  (registers test_faulty)

KERNEL_METRICS = [m for m in METRIC_NAMES]


def shm_segments() -> set[str]:
    """Sweep segments this test process owns (other processes may sweep at the same time)."""
    from threadx.optimize import shm

    root = Path("/dev/shm")
    if not root.exists():
        return set()
    return {p.name for p in root.iterdir()
            if (seg := shm.parse(p.name)) is not None and seg.pid == os.getpid()}


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    from threadx.data.synthetic import generate_synthetic

    df = generate_synthetic("BTC_USDT", days=120, seed=5)
    df.attrs["timeframe"] = "1h"
    return df


@pytest.fixture
def bank(tmp_path):
    return IndicatorBank(cache_dir=tmp_path / "cache")


def assert_same_metrics(stored_row, metrics):
    for name in KERNEL_METRICS:
        expected, got = float(metrics[name]), float(stored_row[name])
        if np.isnan(expected):
            assert np.isnan(got), name
        else:
            assert got == expected, name  # exactly: the same kernel code path


@pytest.mark.parametrize("strategy, space, fill", [
    ("ma_crossover", {"fast_period": "5:15:5", "slow_period": "20:40:10", "stop_loss_pct": [0, 2]}, "next_open"),
    ("bb_atr", {"bb_period": [15, 20, 30], "entry_z": "0.8:1.6:0.4", "trailing_stop": [True, False]}, "close"),
    ("donchian_breakout", {"channel_period": [10, 20, 40], "target_atr": [0, 3]}, "next_open"),
    ("bollinger_dual", {"setup_lookback": [3, 6], "ma_window": [4, 8]}, "close"),
    ("supertrend", {"multiplier": [2.0, 3.0], "stop_loss_pct": [0, 3]}, "close"),
    ("envelope_dca", {"envelope_start": [0.01, 0.02], "num_levels": [2, 4], "max_hold_bars": [0, 24]}, "next_open"),
    ("envelope_dca_short", {"envelope_start": [0.01, 0.02], "envelope_step": [0.005, 0.01]}, "close"),
    ("grid_atr", {"atr_multiplier_start": [0.5, 1.0], "sides": ["long", "both"], "leverage": [1.0, 3.0]}, "next_open"),
    ("amplitude_hunter", {"amplitude_score_threshold": [0.45, 0.55], "volume_zscore_threshold": [0.0],
                          "trailing_type": ["chandelier", "pb_floor"], "pyramiding_max_adds": [0, 2]}, "close"),
])
def test_best_combo_rerun_matches_stored_metrics(sample, bank, tmp_path, strategy, space, fill):
    run = sweep(sample, strategy, space, store=tmp_path / "runs", run_id="r", fill=fill, fee_bps=7, bank=bank,
                executor="inline", workers=2)
    assert run.manifest["status"] == "completed" and (run.results.status == "ok").all()
    best = run.top(1).iloc[0]
    result = threadx.backtest(sample, strategy, run.best_params(), fill=fill, fee_bps=7, bank=bank)
    assert_same_metrics(best, result.metrics)
    # and every stored row, not only the best
    for _, row in run.results.sample(min(5, len(run.results)), random_state=1).iterrows():
        params = {k: row[k].item() if hasattr(row[k], "item") else row[k] for k in run.param_names}
        assert_same_metrics(row, threadx.backtest(sample, strategy, params, fill=fill, fee_bps=7, bank=bank).metrics)


def test_process_pool_equals_inline(sample, bank, tmp_path):
    space = {"bb_period": [15, 20, 25, 30], "entry_z": "0.8:2.0:0.4", "atr_multiplier": [1.5, 2.5]}
    before = shm_segments()
    a = sweep(sample, "bb_atr", space, store=tmp_path, run_id="inline", executor="inline", bank=bank)
    b = sweep(sample, "bb_atr", space, store=tmp_path, run_id="pool", executor="local", workers=2, chunk_size=5,
              bank=bank)
    cols = ["combo_id", *a.param_names, *KERNEL_METRICS]
    pd.testing.assert_frame_equal(a.results[cols], b.results[cols])
    assert shm_segments() <= before


def test_grid_counts_invalid_combos_and_reports_progress(sample, bank, tmp_path):
    seen = []
    run = sweep(sample, "ma_crossover", {"fast_period": "10:40:10", "slow_period": "20:50:10"}, store=tmp_path,
                run_id="g", bank=bank, executor="inline", chunk_size=3, progress=seen.append)
    valid = sum(1 for f in (10, 20, 30, 40) for s in (20, 30, 40, 50) if f < s)
    assert len(run.results) == valid and run.manifest["invalid"] == 16 - valid
    assert seen[-1].done == seen[-1].total == valid and seen[-1].eta_s == 0
    assert [p.done for p in seen] == sorted(p.done for p in seen)


def test_a_combo_that_raises_is_recorded_and_the_sweep_goes_on(sample, bank, tmp_path):
    run = sweep(sample, "test_faulty", {"fast_period": [5, 10], "mode": [0, 1]}, store=tmp_path, run_id="f",
                bank=bank, executor="inline")
    failed = run.results[run.results.status == "failed"]
    assert len(failed) == 2 and (failed["mode"] == 1).all()
    assert failed.error.str.contains("deliberate failure").all()
    assert (run.results[run.results["mode"] == 0].status == "ok").all()


def test_cancel_stops_within_a_chunk_and_resume_completes(sample, bank, tmp_path):
    stop = threading.Event()
    space = {"fast_period": "5:24:1", "slow_period": [30, 40], "mode": 3}

    def progress(p):
        if p.done >= 8:
            stop.set()

    run = sweep(sample, "test_faulty", space, store=tmp_path, run_id="c", bank=bank, executor="inline", workers=1,
                chunk_size=4, progress=progress, cancel=stop)
    assert run.manifest["status"] == "cancelled"
    assert 8 <= len(run.results) <= 16  # stopped within about one chunk
    done_before = set(run.results.combo_id)
    resumed = sweep(sample, "test_faulty", space, store=tmp_path, run_id="c", bank=bank, executor="inline",
                    chunk_size=4)
    assert resumed.manifest["status"] == "completed" and len(resumed.results) == 40
    assert done_before <= set(resumed.results.combo_id)


def test_a_stop_while_the_combos_are_planned_starts_no_worker_and_stores_nothing(sample, bank, tmp_path, monkeypatch):
    """A stop during planning waited for the plan, then computed every indicator and started the
    workers (6.9 s in a browser review) before it was seen."""
    from threadx.optimize import runner

    def cancel():  # the stop pressed while the plan is made: seen once it is
        return True

    monkeypatch.setattr(runner._Session, "_executor", lambda self, cleanup: pytest.fail("workers started"))
    run = sweep(sample, "ma_crossover", {"fast_period": "5:24:1", "slow_period": [30, 40]}, store=tmp_path,
                run_id="early", bank=bank, executor="inline", workers=1, cancel=cancel)
    assert run.manifest["status"] == "cancelled" and len(run.results) == 0
    monkeypatch.undo()
    resumed = sweep(sample, "ma_crossover", {"fast_period": "5:24:1", "slow_period": [30, 40]}, store=tmp_path,
                    run_id="early", bank=bank, executor="inline", workers=1)
    assert resumed.manifest["status"] == "completed" and len(resumed.results) == 40


@pytest.mark.fault
def test_worker_killed_by_a_signal_does_not_hang_or_lose_the_run(sample, bank, tmp_path):
    before = shm_segments()
    space = {"fast_period": "5:8:1", "slow_period": [30], "mode": [0, 2]}  # 4 combos kill their worker
    run = sweep(sample, "test_faulty", space, store=tmp_path, run_id="k", bank=bank, executor="local", workers=2,
                chunk_size=1)
    res = run.results
    failed = int((res.status == "failed").sum())  # the 4 killers, and an innocent combo the pool lost twice
    assert len(res) == 8 and failed >= 4 and run.manifest["status"] == f"completed with {failed} failed"
    killers = res[res["mode"] == 2]
    assert (killers.status == "failed").all() and killers.error.str.contains("died").all()
    assert killers.error.str.startswith("infrastructure: ").all()  # a resume runs them again
    assert (res[res["mode"] == 0].status == "ok").sum() >= 3
    assert shm_segments() <= before


SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    import sweep_helpers
    from threadx.data.synthetic import generate_synthetic
    from threadx.optimize.runner import sweep
    df = generate_synthetic("BTC_USDT", days=120, seed=5)
    sweep(df, "test_faulty", {space!r}, store={store!r}, run_id="kill", executor={executor!r}, workers=2,
          chunk_size=2, flush_seconds=0.0)
""")


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_resume_after_kill_9_of_the_parent(tmp_path, executor):
    space = {"fast_period": "5:44:1", "slow_period": [50, 60], "mode": 3}  # 80 combos of 20 ms: ~1 s after 3 parts
    store = tmp_path / "runs"
    env = dict(os.environ, THREADX_CACHE_DIR=str(tmp_path / "cache"))
    before = shm_segments()
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT.format(tests=str(Path(__file__).parent), space=space,
                                                                 store=str(store), executor=executor)], env=env)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((store / "kill").glob("part-*.parquet"))) < 3:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = ResultStore(store).load("kill")
    assert 0 < len(partial.results) < 80
    resumed = sweep(_df(), "test_faulty", space, store=store, run_id="kill", executor="inline",
                    bank=IndicatorBank(cache_dir=tmp_path / "cache"))
    ids = pd.concat([pd.read_parquet(p) for p in sorted((store / "kill").glob("part-*.parquet"))]).combo_id
    assert ids.is_unique and len(ids) == 80  # every combo exactly once
    assert len(resumed.results) == 80 and (resumed.results.status == "ok").all()
    deadline = time.time() + 15  # orphaned workers exit, then the resource tracker unlinks the segment
    while time.time() < deadline and not shm_segments() <= before:
        time.sleep(0.1)
    assert shm_segments() <= before


def _df():
    from threadx.data.synthetic import generate_synthetic

    return generate_synthetic("BTC_USDT", days=120, seed=5)


def test_dask_local_cluster_equals_local_pool(sample, bank, tmp_path):
    pytest.importorskip("dask.distributed")
    space = {"bb_period": [15, 20, 25], "entry_z": "0.8:2.0:0.4", "atr_multiplier": [1.5, 2.5]}
    pool = sweep(sample, "bb_atr", space, store=tmp_path, run_id="pool", executor="local", workers=2, chunk_size=4,
                 bank=bank)
    dask = sweep(sample, "bb_atr", space, store=tmp_path, run_id="dask", executor="dask", workers=2, chunk_size=4,
                 bank=bank)
    cols = ["combo_id", *pool.param_names, *KERNEL_METRICS]
    assert dask.manifest["status"] == "completed"
    pd.testing.assert_frame_equal(pool.results[cols], dask.results[cols])


def test_adaptive_sampler_refines_around_the_best(sample, bank, tmp_path):
    space = {"bb_period": "10:40:1", "entry_z": "0.5:2.5:0.1", "atr_multiplier": "1.0:3.0:0.1"}
    run = sweep(sample, "bb_atr", space, sampler="adaptive", n=40, seed=3, store=tmp_path, run_id="ad",
                executor="inline", bank=bank, adaptive_rounds=3, patience=3)
    assert run.manifest["status"] == "completed"
    assert len(run.results) > 40 and run.results.combo_id.is_unique
    again = sweep(sample, "bb_atr", space, sampler="adaptive", n=40, seed=3, store=tmp_path, run_id="ad2",
                  executor="inline", bank=bank, adaptive_rounds=3, patience=3)
    assert list(again.results.combo_id) == list(run.results.combo_id)  # seeded: same combos


def test_an_adaptive_run_stopped_in_a_round_resumes_to_the_uninterrupted_runs_combos(sample, bank, tmp_path):
    """Each resume drew its refinement rounds afresh from the rows stored by then (part of a
    round): a resumed run held other combos than the uninterrupted one (other DSR N, PBO, grade),
    and re-running a completed run added a round each time."""
    from threadx.errors import ThreadXError

    space = {"bb_period": "10:40:1", "entry_z": "0.5:2.5:0.1", "atr_multiplier": "1.0:3.0:0.1"}
    args = dict(sampler="adaptive", n=40, seed=3, store=tmp_path, executor="inline", bank=bank, adaptive_rounds=3,
                patience=3, chunk_size=5)
    full = sweep(sample, "bb_atr", space, run_id="full", **args)
    assert len(full.results) > 60
    asked: list[int] = []

    def stop_in_the_first_round() -> bool:  # a few chunks after the first round is planned
        if (tmp_path / "cut" / "adaptive_rounds.npz").exists():
            asked.append(1)
        return len(asked) > 2

    cut = sweep(sample, "bb_atr", space, run_id="cut", cancel=stop_in_the_first_round, **args)
    assert cut.manifest["status"] == "cancelled" and 40 < len(cut.results) < len(full.results), len(cut.results)
    resumed = sweep(sample, "bb_atr", space, run_id="cut", **args)
    assert sorted(resumed.results.combo_id) == sorted(full.results.combo_id)
    again = sweep(sample, "bb_atr", space, run_id="cut", **args)
    assert sorted(again.results.combo_id) == sorted(full.results.combo_id)
    with pytest.raises(ThreadXError, match="refines in up to 3 adaptive rounds with patience 3"):
        sweep(sample, "bb_atr", space, run_id="cut", **{**args, "adaptive_rounds": 5})
    from threadx.optimize.store import ResultStore

    assert ResultStore(tmp_path).load("cut").manifest["status"] == "completed"  # refused before it is touched
    record = tmp_path / "cut" / "adaptive_rounds.npz"
    record.write_bytes(record.read_bytes()[:100])  # (a damaged record left the run "failed", no reason said)
    with pytest.raises(ThreadXError, match=r"run cut: its record of the adaptive rounds \(adaptive_rounds.npz\) "
                                           "cannot be read"):
        sweep(sample, "bb_atr", space, run_id="cut", **args)
    assert ResultStore(tmp_path).load("cut").manifest["status"] == "completed"
    # its rounds follow its ranking: resumed under another, the combos it held depended on when it stopped
    for other in ({"objective": "total_return"}, {"maximize": False}, {"min_trades": 3}):
        with pytest.raises(ThreadXError, match="is an adaptive sweep ranked by"):
            sweep(sample, "bb_atr", space, run_id="cut", **{**args, **other})


def test_a_completed_adaptive_run_asked_again_stays_completed_while_it_replays_its_rounds(sample, bank, tmp_path):
    """It marked itself "running" while it replayed its recorded rounds (nothing to run), and
    stopped in the replay it read "cancelled"."""
    import json

    space = {"bb_period": "10:40:1", "entry_z": "0.5:2.5:0.1", "atr_multiplier": "1.0:3.0:0.1"}
    args = dict(sampler="adaptive", n=30, seed=3, store=tmp_path, run_id="ad", executor="inline", bank=bank,
                adaptive_rounds=3, patience=3, chunk_size=5)
    full = sweep(sample, "bb_atr", space, **args)
    assert full.manifest["status"] == "completed" and len(full.results) > 30
    seen: list[str] = []

    def look() -> bool:
        seen.append(json.loads((tmp_path / "ad" / "manifest.json").read_text())["status"])
        return False

    again = sweep(sample, "bb_atr", space, cancel=look, **args)
    assert seen and set(seen) == {"completed"}
    assert again.manifest["status"] == "completed" and sorted(again.results.combo_id) == sorted(full.results.combo_id)
    calls: list[int] = []

    def stop_in_the_replay() -> bool:
        calls.append(1)
        return len(calls) > 3

    stopped = sweep(sample, "bb_atr", space, cancel=stop_in_the_replay, **args)
    assert stopped.manifest["status"] == "completed", stopped.manifest["status"]
    assert stopped.manifest["done"] == stopped.manifest["total"] == len(full.results)


def test_a_run_that_fails_records_why_and_runs_show_says_it(sample, bank, tmp_path, capsys):
    from threadx.cli import main

    def broken() -> bool:
        raise RuntimeError("the disk went away")

    with pytest.raises(RuntimeError):
        sweep(sample, "bb_atr", {"entry_z": [1.0, 2.0]}, store=tmp_path, run_id="f", executor="inline", bank=bank,
              cancel=broken)
    from threadx.optimize.store import ResultStore

    manifest = ResultStore(tmp_path).load("f").manifest
    assert manifest["status"] == "failed" and manifest["error"] == "RuntimeError: the disk went away"
    assert main(["runs", "show", "f", "--store", str(tmp_path)]) == 0
    assert "the run failed: RuntimeError: the disk went away" in capsys.readouterr().out
    run = sweep(sample, "bb_atr", {"entry_z": [1.0, 2.0]}, store=tmp_path, run_id="f", executor="inline", bank=bank)
    assert run.manifest["status"] == "completed" and "error" not in run.manifest  # the resume clears it


def test_a_completed_run_asked_again_and_stopped_stays_completed(sample, bank, tmp_path):
    """Killed or stopped while its workers started, a re-run with nothing to run read "interrupted
    51,714/51,714" (a hostile test)."""
    import json

    space = {"entry_z": [1.0, 1.5, 2.0]}
    sweep(sample, "bb_atr", space, store=tmp_path, run_id="done", executor="inline", bank=bank)
    seen = []

    def stop_at_once() -> bool:
        seen.append(json.loads((tmp_path / "done" / "manifest.json").read_text())["status"])
        return True

    again = sweep(sample, "bb_atr", space, store=tmp_path, run_id="done", executor="inline", bank=bank,
                  cancel=stop_at_once)
    assert seen and set(seen) == {"completed"}  # never marked running: a kill then leaves it completed
    assert again.manifest["status"] == "completed" and again.manifest["done"] == again.manifest["total"] == 3

    def no_memory() -> bool:
        raise MemoryError("starting the workers")

    with pytest.raises(MemoryError):
        sweep(sample, "bb_atr", space, store=tmp_path, run_id="done", executor="inline", bank=bank, cancel=no_memory)
    from threadx.optimize.store import ResultStore

    manifest = ResultStore(tmp_path).load("done").manifest
    assert manifest["status"] == "completed" and "error" not in manifest  # every combo is stored: still complete


def test_sweep_rejects_bad_arguments(sample, tmp_path):
    from threadx.errors import ParamError

    with pytest.raises(ParamError):
        sweep(sample, "bb_atr", {"entry_z": "2:1:0.1"}, store=tmp_path)
    with pytest.raises(ParamError):
        sweep(sample, "bb_atr", {}, objective="nope", store=tmp_path)
    with pytest.raises(ParamError):
        sweep(sample, "bb_atr", {"entry_z": "0.5:2.5:0.1"}, sampler="random", store=tmp_path)  # n missing
    with pytest.raises(ParamError, match="Monte Carlo"):
        sweep(sample, "bb_atr", {"bb_period": "10:50:1", "entry_z": "0.5:2.5:0.01"}, grid_limit=1000, store=tmp_path)
    for bad in ({"chunk_size": -5}, {"chunk_size": 0}, {"workers": -1}, {"seed": -1}, {"seed": 1.5},
                {"sampler": "random", "n": 10.5}, {"sampler": "random", "n": "10"}, {"min_trades": -2}):
        with pytest.raises(ParamError):
            sweep(sample, "bb_atr", {"entry_z": [1.0, 2.0]}, store=tmp_path, **bad)


def test_needs_that_depend_on_two_params_work_in_every_executor(sample, bank, tmp_path):
    space = {"use_filter": [False, True], "filter_period": [20, 50, 100], "fast_period": [5, 10]}
    inline = sweep(sample, "test_filter", space, store=tmp_path, run_id="i", executor="inline", bank=bank)
    pool = sweep(sample, "test_filter", space, store=tmp_path, run_id="p", executor="local", workers=2,
                 chunk_size=2, bank=bank)
    assert (inline.results.status == "ok").all() and (pool.results.status == "ok").all()
    cols = ["combo_id", *inline.param_names, *KERNEL_METRICS]
    pd.testing.assert_frame_equal(inline.results[cols], pool.results[cols])


def test_monte_carlo_prepares_only_the_indicators_of_its_combos():
    from threadx.optimize.samplers import monte_carlo_ids
    from threadx.optimize.shared import indicator_requests
    from threadx.optimize.space import SearchSpace
    from threadx.strategy import get_strategy

    space = SearchSpace(get_strategy("bb_atr"), {"bb_period": "10:200:1", "bb_std": "1.0:3.0:0.05",
                                                 "atr_period": "5:100:1", "trend_period": "0:200:1",
                                                 "entry_z": "0.5:2.5:0.1"})
    ids = monte_carlo_ids(space, "random", 50, seed=1).ids
    start = time.perf_counter()
    requests = indicator_requests(space, [ids])
    assert time.perf_counter() - start < 2.0 and len(requests) <= 150


@pytest.mark.fault
def test_a_first_combo_that_kills_workers_does_not_fail_the_others(sample, bank, tmp_path):
    run = sweep(sample, "test_faulty", {"fast_period": "5:9:1", "mode": [2, 0]}, store=tmp_path, run_id="w0",
                bank=bank, executor="local", workers=2, chunk_size=1)
    res = run.results
    assert (res[res["mode"] == 0].status == "ok").all() and (res[res["mode"] == 2].status == "failed").all()


def test_errors_before_the_run_leave_no_workers_segments_or_running_manifest(sample, tmp_path):
    class BrokenBank:
        def ensure_many(self, *args, **kwargs):
            raise RuntimeError("disk on fire")

    before = shm_segments()
    with pytest.raises(RuntimeError, match="disk on fire"):
        sweep(sample, "bb_atr", {"entry_z": "0.5:2.5:0.1", "bb_period": "10:40:1"}, store=tmp_path, run_id="e",
              executor="local", workers=2, bank=BrokenBank())
    assert ResultStore(tmp_path).load("e").manifest["status"] == "failed"
    assert shm_segments() <= before
    import psutil

    workers = [c for c in psutil.Process().children(recursive=True)
               if c.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(c.cmdline())]
    assert not workers  # (the resource tracker stays for the life of this process, by design)


def test_run_ids_resume_rules(sample, bank, tmp_path):
    a = sweep(sample, "ma_crossover", {"fast_period": [5, 10]}, store=tmp_path, bank=bank)
    b = sweep(sample, "ma_crossover", {"fast_period": [5, 10]}, store=tmp_path, bank=bank)
    assert a.run_id != b.run_id  # default ids never collide
    sweep(sample, "ma_crossover", {"fast_period": [5, 10]}, store=tmp_path, run_id="r", objective="max_drawdown",
          bank=bank)
    again = sweep(sample, "ma_crossover", {"fast_period": [5, 10]}, store=tmp_path, run_id="r", objective="sharpe",
                  bank=bank)
    assert again.manifest["objective"] == "sharpe"  # ranking settings follow the new call
    from threadx.errors import ThreadXError

    with pytest.raises(ThreadXError, match="different seed"):
        sweep(sample, "ma_crossover", {"fast_period": "5:30:1"}, sampler="random", n=5, seed=1, store=tmp_path,
              run_id="mc", bank=bank)
        sweep(sample, "ma_crossover", {"fast_period": "5:30:1"}, sampler="random", n=5, seed=2, store=tmp_path,
              run_id="mc", bank=bank)


def test_top_reads_only_what_it_ranks(sample, bank, tmp_path):
    run = sweep(sample, "bb_atr", {"entry_z": "0.5:2.5:0.1"}, store=tmp_path, run_id="t", bank=bank)
    fresh = ResultStore(tmp_path).load("t")
    lazy_top = fresh.top(5)
    assert fresh._results is None  # nothing but the ranked columns was read
    pd.testing.assert_frame_equal(lazy_top.reset_index(drop=True),
                                  run.results.sort_values("sharpe", ascending=False, kind="stable").head(5)
                                  .reset_index(drop=True)[lazy_top.columns])


def test_dask_sweeps_on_one_scheduler_keep_their_own_data(sample, bank, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    from threadx.data.synthetic import generate_synthetic

    other = generate_synthetic("ETH_USDT", days=120, seed=9)
    space = {"fast_period": [5, 10, 15], "slow_period": [30, 40]}
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cl:
        a = sweep(sample, "ma_crossover", space, store=tmp_path, run_id="da", executor="dask", scheduler=cl.scheduler_address,
                  bank=bank)
        b = sweep(other, "ma_crossover", space, store=tmp_path, run_id="db", executor="dask", scheduler=cl.scheduler_address,
                  bank=bank)
    ref = sweep(other, "ma_crossover", space, store=tmp_path, run_id="ref", executor="inline", bank=bank)
    cols = ["combo_id", *KERNEL_METRICS]
    pd.testing.assert_frame_equal(b.results[cols], ref.results[cols])
    assert not a.results[cols].equals(b.results[cols])


def test_sweep_charges_funding_like_the_backtest(synthetic_bars, tmp_path):
    options = dict(funding=0.0003, sizing="fraction", leverage=3.0)
    run = threadx.sweep(synthetic_bars, "bb_atr", {"bb_period": [20]}, store=tmp_path, executor="inline", **options)
    single = threadx.backtest(synthetic_bars, "bb_atr", **options).metrics
    row = run.results.iloc[0]
    assert single["total_funding"] != 0.0
    assert row["total_funding"] == pytest.approx(single["total_funding"], rel=1e-12)
    assert row["total_return"] == pytest.approx(single["total_return"], rel=1e-12)
