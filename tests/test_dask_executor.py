"""The Dask executor's guards: workers paused for memory, a stop while chunks run, the data
checked against the workers' memory limits before it is sent, no client left open, and a
/dev/shm the cluster never uses not counted against it."""
from __future__ import annotations

import time

import pytest

from threadx.data.synthetic import generate_synthetic
from threadx.errors import ParamError
from threadx.optimize import budget
from threadx.optimize.dask_executor import DaskExecutor, check_worker_memory
from threadx.optimize.evaluate import RunInterrupted
from threadx.optimize.runner import sweep

MiB = 2**20


class Workers:
    """A client whose scheduler reports workers in the given states."""

    def __init__(self, *states: str):
        self.states = states

    def scheduler_info(self):
        return {"workers": {f"tcp://10.0.0.{k}:1": {"status": s} for k, s in enumerate(self.states)}}


class NothingDone:
    def has_ready(self):
        return False


def waiting(client, no_workers_s: float = 0.6) -> DaskExecutor:
    executor = DaskExecutor.__new__(DaskExecutor)  # the waiting loop alone, without a cluster
    executor.client, executor.no_workers_s, executor.stop_grace_s = client, no_workers_s, 0.6
    return executor


def test_workers_all_paused_for_memory_interrupt_the_run_with_the_reason():
    """Workers paused by Dask (memory over its pause threshold) run nothing: the sweep waited silently
    until it was killed."""
    with pytest.raises(RunInterrupted, match="the Dask cluster has had all 2 of its workers paused for memory"):
        waiting(Workers("paused", "paused"))._next_done(NothingDone(), lambda: False)


def test_a_stop_is_honoured_while_chunks_never_finish():
    """A stop request waited for chunks that never came back (paused workers): 107 s until SIGTERM."""
    executor = waiting(Workers("running"), no_workers_s=60)
    began = time.monotonic()
    assert executor._next_done(NothingDone(), lambda: True) is None
    assert time.monotonic() - began < 5


class ReadyOnceAt:
    """One chunk comes back ``at`` seconds from now, then none ever."""

    def __init__(self, at: float):
        self.at, self.taken = time.monotonic() + at, False

    def has_ready(self):
        return not self.taken and time.monotonic() >= self.at

    def __next__(self):
        self.taken = True
        return "a chunk"


def test_the_stop_grace_is_not_restarted_by_each_chunk_that_comes_back():
    """Each chunk back restarted the 5 s wait: a stop could take 2 x workers x 5 s."""
    executor = waiting(Workers("running"), no_workers_s=60)
    executor.stop_grace_s, executor._stopped_since = 2.0, None
    pending = ReadyOnceAt(1.5)
    assert executor._next_done(pending, lambda: True) == "a chunk"
    began = time.monotonic()
    assert executor._next_done(pending, lambda: True) is None
    assert time.monotonic() - began < 1.5  # what was left of the grace, not a new one


def test_one_running_worker_keeps_the_run_waiting():
    executor = waiting(Workers("paused", "running"), no_workers_s=0.6)
    stop_after = time.monotonic() + 1.5
    assert executor._next_done(NothingDone(), lambda: time.monotonic() > stop_after) is None  # not interrupted


def test_the_data_is_checked_against_the_workers_memory_limits():
    workers = {"tcp://a:1": {"memory_limit": 4096 * MiB}, "tcp://b:1": {"memory_limit": 600 * MiB}}
    check_worker_memory(workers, 100 * MiB)  # 100 + 256 MiB under 80 % of 600 MiB
    with pytest.raises(ParamError, match=r"tcp://b:1: limit 600.0 MiB.*--memory-limit"):
        check_worker_memory(workers, 300 * MiB)
    check_worker_memory({"tcp://a:1": {"memory_limit": 0}}, 10**12)  # no limit: nothing to check
    check_worker_memory({}, 10**12)  # no worker yet


@pytest.fixture(scope="module")
def small_cluster():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                                       memory_limit="300MiB")
    yield cluster
    cluster.close()


def test_a_sweep_too_big_for_the_workers_is_refused_before_sending_and_leaves_no_client(small_cluster, tmp_path):
    """300 MiB workers got a sweep of 1.9 GB: 'Stream is closed' from inside Dask, and each failed
    start left a Client open (reconnect tracebacks when the scheduler stopped)."""
    from distributed.client import _global_clients

    df = generate_synthetic("BTC_USDT", days=120, seed=3)
    before = len(_global_clients)
    with pytest.raises(ParamError, match="more than the 80% of its memory limit"):
        sweep(df, "ma_crossover", {"fast_period": [5, 10], "slow_period": [40]}, executor="dask",
              scheduler=small_cluster.scheduler_address, store=tmp_path / "runs", run_id="big")
    assert len(_global_clients) == before
    run = sweep(df, "ma_crossover", {"fast_period": [5, 10], "slow_period": [40]}, executor="inline",
                store=tmp_path / "runs", run_id="big")
    assert run.manifest["executors"] == ["inline"]  # the executor that failed to start made no row


@pytest.fixture(scope="module")
def unlimited_cluster():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                                       memory_limit=0)
    yield cluster
    cluster.close()


def test_a_dask_sweep_is_not_refused_for_a_dev_shm_it_does_not_use(unlimited_cluster, tmp_path, monkeypatch):
    """/dev/shm at Docker's default 64 MiB refused a Dask (or GPU) sweep whose copy lives on the
    cluster, even with memory_budget=100GiB; the process pool still counts it."""
    monkeypatch.setattr(budget, "shm_free", lambda: 4096)  # next to nothing free
    df = generate_synthetic("BTC_USDT", days=60, seed=3)
    space = {"fast_period": [5, 10], "slow_period": [40]}
    run = sweep(df, "ma_crossover", space, executor="dask", scheduler=unlimited_cluster.scheduler_address,
                store=tmp_path / "runs", run_id="dask", memory_budget="100GiB")
    assert run.manifest["status"] == "completed" and len(run.results) == 2
    with pytest.raises(ParamError, match="/dev/shm has 4.0 KiB free"):
        sweep(df, "ma_crossover", space, executor="local", workers=2, store=tmp_path / "runs", run_id="pool",
              memory_budget="100GiB")


def test_research_checks_its_scheduler_as_a_sweep_does(tmp_path, monkeypatch):
    """`threadx research --executor dask --scheduler not-an-address` was a traceback (ValueError), an
    HTTP server's address a hang; a scheduler beside another executor was ignored."""
    import socket

    from threadx.data.io import write_ohlcv
    from threadx.validation.research import research

    df = generate_synthetic("BTC_USDT", days=60, seed=3)
    path = tmp_path / "BTC_USDT-1h.parquet"
    write_ohlcv(df, path)
    with pytest.raises(ParamError, match="scheduler must be a Dask scheduler address"):
        research("ma_crossover", [path], executor="dask", scheduler="not-an-address", results_dir=tmp_path)
    with pytest.raises(ParamError, match="used by executor dask only"):
        research("ma_crossover", [path], executor="local", scheduler="tcp://127.0.0.1:8786", results_dir=tmp_path)
    with pytest.raises(ParamError, match="used by executor dask only"):
        sweep(df, "ma_crossover", {"fast_period": [5], "slow_period": [40]}, executor="local",
              scheduler="tcp://127.0.0.1:8786", store=tmp_path / "runs")
    silent = socket.socket()  # accepts and never answers, as a web server's port does to Dask
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    from threadx.errors import ThreadXError
    from threadx.optimize import dask_executor

    monkeypatch.setattr(dask_executor, "CONNECT_TIMEOUT_S", 2)  # (10 s in use)
    began = time.monotonic()
    try:
        with pytest.raises(ThreadXError, match="no Dask scheduler answers"):
            research("ma_crossover", [path], executor="dask", scheduler=f"tcp://127.0.0.1:{silent.getsockname()[1]}",
                     results_dir=tmp_path, is_bars=500, oos_bars=250, n=2, sampler="random")
    finally:
        silent.close()
    assert time.monotonic() - began < dask_executor.CONNECT_TIMEOUT_S + 10


MODULE = '''
import dataclasses

from threadx.strategy import register
from threadx.strategy.ma_crossover import SPEC as MA


def signals(bars, ind, p):  # this module's own: workers import it to rebuild the strategy
    return MA.signals(bars, ind, p)


SPEC = register(dataclasses.replace(MA, name="only_here_ma", signals=signals, signal_rule=None))
'''


def test_workers_that_cannot_import_the_strategy_stop_the_run_and_store_no_failures(unlimited_cluster, tmp_path,
                                                                                     monkeypatch):
    """Every combo was stored as failed with 'No module named ...' (never retried, even by a resume on
    executor local where the module imports)."""
    import sys

    from threadx.strategy import base

    folder = tmp_path / "mods"
    folder.mkdir()
    (folder / "only_here_mod.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(folder))  # this process only: the cluster's workers started before
    import importlib

    importlib.import_module("only_here_mod")
    try:
        df = generate_synthetic("BTC_USDT", days=60, seed=3)
        space = {"fast_period": [5, 10, 15], "slow_period": [40, 50]}
        kw = dict(store=tmp_path / "runs", run_id="mod", chunk_size=1)
        with pytest.raises(RunInterrupted, match=r"cannot set up this sweep \(.*only_here.*\): the workers need"):
            sweep(df, "only_here_ma", space, executor="dask", scheduler=unlimited_cluster.scheduler_address, **kw)
        run = sweep(df, "only_here_ma", space, executor="local", workers=1, **kw)
        assert run.manifest["status"] == "completed" and len(run.results) == 6
        assert (run.results.status == "ok").all()
    finally:
        base._REGISTRY.pop("only_here_ma", None)
        sys.modules.pop("only_here_mod", None)


def test_the_manifest_names_every_executor_that_made_rows(tmp_path):
    """A run stopped on one executor and resumed on another recorded only the last in
    machine.executor, beside the first one's request; 'auto' was stored unresolved."""
    from threadx.optimize.store import ResultStore

    df = generate_synthetic("BTC_USDT", days=60, seed=3)
    space = {"fast_period": "5:40:5", "slow_period": [50, 60]}
    kw = dict(store=tmp_path / "runs", run_id="mixed", chunk_size=2, workers=1)
    calls = []
    first = sweep(df, "ma_crossover", space, executor="auto", cancel=lambda: calls.append(1) or len(calls) > 3, **kw)
    assert first.manifest["status"] == "cancelled"
    m = ResultStore(kw["store"]).load("mixed").manifest
    assert m["machine"]["executor"] == "inline" and m["machine"]["requested_executor"] == "auto"
    assert m["executors"] == ["inline"]
    done = sweep(df, "ma_crossover", space, executor="local", **kw)
    assert done.manifest["status"] == "completed" and len(done.results) == 16
    m = ResultStore(kw["store"]).load("mixed").manifest
    assert m["executors"] == ["inline", "local"] and m["machine"]["executor"] == "local"
    from threadx.ui.sweep_runs import settings_of

    assert settings_of(m)["executor"] == "inline, local"


def test_an_unreachable_scheduler_is_said_before_any_work_and_leaves_no_run(tmp_path, monkeypatch):
    """It was said after the plan and the indicators, and left a failed run folder behind."""
    import socket

    from threadx.errors import ThreadXError
    from threadx.optimize import dask_executor

    monkeypatch.setattr(dask_executor, "CONNECT_TIMEOUT_S", 2)  # (10 s in use)

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    df = generate_synthetic("BTC_USDT", days=60, seed=3)
    with pytest.raises(ThreadXError, match="no Dask scheduler answers"):
        sweep(df, "ma_crossover", {"fast_period": [5], "slow_period": [40]}, executor="dask",
              scheduler=f"tcp://127.0.0.1:{port}", store=tmp_path / "runs", run_id="nowhere")
    assert not (tmp_path / "runs" / "nowhere").exists()


def test_a_chunk_that_killed_its_workers_says_how_to_find_the_combo_that_crashes():
    from threadx.optimize.dask_executor import lost_chunk_text
    from threadx.optimize.outcome import INFRA_PREFIX, is_infra_failure

    class KilledWorker(Exception):  # distributed's, by name (dask is optional)
        pass

    text = lost_chunk_text(KilledWorker("task ran on 4 workers that died"), 250)
    assert text.startswith(INFRA_PREFIX) and is_infra_failure(text)
    assert "one of this chunk's 250 combos may crash" in text and "executor local" in text
    assert "may crash" not in lost_chunk_text(KilledWorker("x"), 1)  # a single combo: it is the one
    assert "may crash" not in lost_chunk_text(OSError("connection reset"), 250)  # not killed by its combos


def test_a_worker_running_other_code_stops_the_run_before_its_rows_are_stored(unlimited_cluster, tmp_path,
                                                                              monkeypatch):
    """A worker of another ThreadX version (another install, or started before an update) computed
    the rows, stored under the sweep's rows code without a word (every metric x1.5 in the repro).
    The sweep's code is stood in for here: the client names another than the worker runs."""
    from threadx.optimize import dask_executor

    real = dask_executor.sweep_code
    monkeypatch.setattr(dask_executor, "sweep_code", lambda spec: ("0" * 16, real(spec)[1]))  # (the client only)
    df = generate_synthetic("BTC_USDT", days=60, seed=3)
    space = {"fast_period": [5, 10], "slow_period": [40]}
    with pytest.raises(RunInterrupted, match=r"a worker runs other code than the sweep \(engine and sweep code "
                                             r"[0-9a-f]{12}, strategy [0-9a-f]{12} there; 000000000000 and"):
        sweep(df, "ma_crossover", space, executor="dask", scheduler=unlimited_cluster.scheduler_address,
              store=tmp_path / "runs", run_id="skew")
    from threadx.optimize.store import ResultStore

    assert len(ResultStore(tmp_path / "runs").stored("skew").ids) == 0  # no row of the other code
