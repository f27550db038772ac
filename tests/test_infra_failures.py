"""Failures of the machinery (a worker killed, Dask workers lost) are retried by a resume;
errors of the combo itself are kept; the run status says how many failed."""
from __future__ import annotations

import multiprocessing
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from threadx.data.synthetic import generate_synthetic
from threadx.indicators import IndicatorBank
from threadx.optimize.evaluate import INFRA_PREFIX, RunInterrupted
from threadx.optimize.runner import sweep
from threadx.optimize.store import ResultStore, lock_held
from threadx.strategy import ma_crossover
from threadx.strategy.base import Param, StrategySpec, list_strategies, register

sys.path.insert(0, str(Path(__file__).parent))
import sweep_helpers  # noqa: E402,F401  (registers test_faulty)

MARKERS = "THREADX_TEST_FLAKY_DIR"  # where the flaky strategy counts its tries
KILLS = "THREADX_TEST_FLAKY_KILLS"  # how many first tries of a flaky combo kill their worker
ONLY = "THREADX_TEST_FLAKY_ONLY"  # when set, only the flaky combo of this "fast-slow" key kills


def _flaky_signals(bars, ind, p):
    """ma_crossover whose ``flaky`` combos kill their worker process on their first tries."""
    key = f"{p['fast_period']}-{p['slow_period']}"
    if p["flaky"] and multiprocessing.parent_process() is not None and os.environ.get(ONLY, key) == key:
        folder = Path(os.environ[MARKERS])
        tries = len(list(folder.glob(f"{key}.*")))
        if tries < int(os.environ.get(KILLS, "2")):
            (folder / f"{key}.{tries}").touch()
            os._exit(1)  # as a segfault or an OOM kill would
    return ma_crossover.SPEC.signals(bars, ind, p)


FLAKY = StrategySpec(
    name="test_flaky", description="ma_crossover whose flaky combos kill their worker (tests only)",
    params=ma_crossover.SPEC.params + (Param("flaky", "int", 0, 0, 1, 1),),
    constraints=ma_crossover.SPEC.constraints, indicators=ma_crossover.SPEC.indicators, signals=_flaky_signals,
    levels=ma_crossover.SPEC.levels, exits=ma_crossover.SPEC.exits,
)
if "test_flaky" not in list_strategies():
    register(FLAKY)


@pytest.fixture(scope="module")
def df():
    return generate_synthetic("BTC_USDT", days=60, seed=5)


@pytest.fixture
def markers(tmp_path, monkeypatch):
    folder = tmp_path / "markers"
    folder.mkdir()
    monkeypatch.setenv(MARKERS, str(folder))
    return folder


def parts(root, run_id):
    return sorted((Path(root) / run_id).glob("part-*.parquet"))


@pytest.mark.fault
def test_killed_pool_workers_fail_as_infrastructure_and_a_resume_reruns_them(df, tmp_path, markers):
    space = {"fast_period": [5, 10], "slow_period": [30], "flaky": [0, 1]}
    kw = dict(store=tmp_path / "runs", run_id="k", bank=IndicatorBank(cache_dir=tmp_path / "cache"), chunk_size=1)
    run = sweep(df, "test_flaky", space, executor="local", workers=2, **kw)
    res = run.results
    assert run.manifest["status"] == "completed with 2 failed" and run.manifest["failed"] == 2
    failed = res[res.status == "failed"]
    assert (failed["flaky"] == 1).all() and failed.error.str.startswith(INFRA_PREFIX).all()
    assert ResultStore(kw["store"]).load("k").stored().retry_ids.tolist() == failed.combo_id.tolist()
    again = sweep(df, "test_flaky", space, executor="local", workers=2, **kw)  # third tries do not kill
    assert again.manifest["status"] == "completed" and again.manifest["failed"] == 0
    assert len(again.results) == 4 and (again.results.status == "ok").all()  # the retries superseded the failures


@pytest.mark.fault
def test_a_chunk_that_kills_its_worker_loses_only_the_combo_that_crashes(df, tmp_path, markers, monkeypatch):
    """A chunk whose one combo kills its worker every time is split until that combo is found:
    the other 11 of its chunk run (before, all 12 were stored failed), and so does the other chunk."""
    from threadx.optimize.pool import DIED_ALONE

    monkeypatch.setenv(KILLS, "1000")
    monkeypatch.setenv(ONLY, "11-30")
    space = {"fast_period": "5:16:1", "slow_period": [30, 35], "flaky": [1]}  # 24 combos, one that crashes
    kw = dict(store=tmp_path / "runs", run_id="b", bank=IndicatorBank(cache_dir=tmp_path / "cache"), chunk_size=12)
    run = sweep(df, "test_flaky", space, executor="local", workers=2, **kw)
    res = run.results
    failed = res[res.status == "failed"]
    assert failed[["fast_period", "slow_period"]].values.tolist() == [[11, 30]]
    assert failed.error.iloc[0] == INFRA_PREFIX + DIED_ALONE
    assert len(res) == 24 and run.manifest["status"] == "completed with 1 failed"
    kills = len(list(markers.glob("11-30.*")))
    assert 3 <= kills <= 2 + 4  # first try, alone, then one death per halving of its chunk (12 -> 6 -> 3 -> 2 -> 1)
    ok = res[res.status == "ok"].set_index(["fast_period", "slow_period"]).sort_index()
    plain = sweep(df, "ma_crossover", {"fast_period": "5:16:1", "slow_period": [30, 35]}, executor="inline",
                  store=tmp_path / "runs", run_id="plain", bank=kw["bank"]).results
    plain = plain.set_index(["fast_period", "slow_period"]).drop(index=(11, 30)).sort_index()
    assert np.array_equal(ok["total_return"].to_numpy(), plain["total_return"].to_numpy())


def test_genuine_combo_errors_are_kept_by_a_resume(df, tmp_path):
    space = {"fast_period": [5, 10], "mode": [0, 1]}
    kw = dict(store=tmp_path, run_id="g", bank=IndicatorBank(cache_dir=tmp_path / "cache"), executor="inline")
    run = sweep(df, "test_faulty", space, **kw)
    assert run.manifest["status"] == "completed with 2 failed"
    assert not run.results.error.str.startswith(INFRA_PREFIX).any()
    before = parts(tmp_path, "g")
    again = sweep(df, "test_faulty", space, **kw)
    assert parts(tmp_path, "g") == before and again.manifest["status"] == "completed with 2 failed"


@pytest.mark.fault
def test_dask_losing_its_workers_interrupts_the_run(df, tmp_path, markers, monkeypatch):
    distributed = pytest.importorskip("distributed")
    import dask

    monkeypatch.setenv(KILLS, "1000")  # every flaky combo kills every worker that runs it
    space = {"fast_period": "5:14:1", "slow_period": [45], "flaky": [1]}
    kw = dict(store=tmp_path / "runs", run_id="d", bank=IndicatorBank(cache_dir=tmp_path / "cache"), chunk_size=1)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        # (or, when the killed worker is slow to come back, its data cannot be sent again in time)
        with pytest.raises(RunInterrupted, match="lost 4 chunks in a row|lost the sweep's data and cannot take it"):
            sweep(df, "test_flaky", space, executor="dask", workers=1, **kw)
    m = ResultStore(kw["store"]).load("d").manifest
    assert m["status"] == "interrupted" and m["failed"] <= 3  # not all 10 combos marked failed
    assert not lock_held(kw["store"] / "d")
    monkeypatch.setenv(KILLS, "0")
    run = sweep(df, "test_flaky", space, executor="local", workers=1, **kw)
    assert run.manifest["status"] == "completed" and len(run.results) == 10 and (run.results.status == "ok").all()
    assert np.array_equal(run.results.combo_id, np.sort(run.results.combo_id.unique()))


@pytest.mark.fault
def test_a_dask_cluster_whose_workers_all_died_once_gets_the_data_again_and_finishes(df, tmp_path, markers,
                                                                                      monkeypatch):
    """When every worker died (one combo crashing them), the scattered data went with them: each later
    chunk failed as cancelled, and every resume did the same (48 of 264 combos ever stored)."""
    pytest.importorskip("distributed")
    import dask

    monkeypatch.setenv(KILLS, "1")  # each flaky combo kills its worker on its first try only
    space = {"fast_period": "5:8:1", "slow_period": [45], "flaky": [0, 1]}
    kw = dict(store=tmp_path / "runs", run_id="again", bank=IndicatorBank(cache_dir=tmp_path / "cache"), chunk_size=1)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        run = sweep(df, "test_flaky", space, executor="dask", workers=1, **kw)
    assert len(run.results) == 8
    # a flaky chunk kills the only worker: sent once more on the new copy, it runs (its second try)
    assert run.manifest["status"] == "completed" and (run.results.status == "ok").all(), run.failure_counts(3)


@pytest.mark.fault
def test_a_dask_worker_whose_nanny_gave_up_is_started_again_and_the_run_finishes(df, tmp_path, markers,
                                                                                  monkeypatch):
    """A nanny whose new worker dies as it connects closes for good ("Failed to restart worker"):
    the run waited 30 s for a worker that never came and was interrupted (seen in CI). The
    LocalCluster of the run starts that worker again once Dask has forgotten it."""
    pytest.importorskip("distributed")
    import dask
    from distributed import Nanny

    restart = Nanny._on_worker_exit
    gave_up = []

    async def restart_fails_once(self, exitcode):
        if gave_up:
            return await restart(self, exitcode)
        gave_up.append(self.name)
        await self.close(reason="nanny-instantiate-failed")  # what a failed restart does

    monkeypatch.setattr(Nanny, "_on_worker_exit", restart_fails_once)
    monkeypatch.setenv(KILLS, "1")
    monkeypatch.setenv(ONLY, "5-45")
    kw = dict(store=tmp_path / "runs", run_id="nanny", bank=IndicatorBank(cache_dir=tmp_path / "cache"), chunk_size=1)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                          "distributed.deploy.lost-worker-timeout": "1s"}):
        run = sweep(df, "test_flaky", {"fast_period": [5, 6], "slow_period": [45], "flaky": [0, 1]},
                    executor="dask", workers=1, **kw)
    assert gave_up and len(run.results) == 4
    assert run.manifest["status"] == "completed" and (run.results.status == "ok").all(), run.failure_counts(3)


def test_pool_workers_dying_over_and_over_interrupt_the_run(df, tmp_path, markers, monkeypatch):
    from threadx.optimize import pool

    monkeypatch.setattr(pool, "_MAX_RESTARTS", 1)
    monkeypatch.setenv(KILLS, "1000")
    kw = dict(store=tmp_path / "runs", run_id="p", bank=IndicatorBank(cache_dir=tmp_path / "cache"), chunk_size=1)
    with pytest.raises(RunInterrupted, match="died 2 times in a row"):
        sweep(df, "test_flaky", {"fast_period": [5, 10], "slow_period": [30], "flaky": [1]}, executor="local",
              workers=1, **kw)
    assert ResultStore(kw["store"]).load("p").manifest["status"] == "interrupted"


def test_a_dask_cluster_without_workers_interrupts_instead_of_waiting_forever(monkeypatch):
    from threadx.optimize.dask_executor import DaskExecutor

    class NoWorkers:
        def scheduler_info(self):
            return {"workers": {}}

    class NothingDone:
        def has_ready(self):
            return False

    executor = DaskExecutor.__new__(DaskExecutor)  # the waiting loop alone, without a cluster
    executor.client, executor._cluster, executor.no_workers_s = NoWorkers(), None, 0.6
    with pytest.raises(RunInterrupted, match="no worker for 1 s"):
        executor._next_done(NothingDone(), lambda: False)


def test_a_ctrl_c_while_the_workers_fork_is_delivered_after_it_not_lost():
    """A SIGINT landing in a fork hook (filelock's) was "Exception ignored": the sweep ran on.
    (In a process of its own: a thread of another test, not holding it, would take the signal.)"""
    import subprocess
    import sys

    script = ("import os, signal\n"
              "from threadx.optimize.pool import _ctrl_c_held\n"
              "reached = 0\n"
              "try:\n"
              "    with _ctrl_c_held():\n"
              "        os.kill(os.getpid(), signal.SIGINT)\n"
              "        for _ in range(1000):\n"
              "            reached += 1\n"
              "except KeyboardInterrupt:\n"
              "    print('interrupted after', reached)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "interrupted after 1000", (done.stdout, done.stderr)
