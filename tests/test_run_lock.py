"""The run lock: an OS lock (filelock) that exactly one of many racing writers gets, that
the kernel frees when its holder is killed, and that tells a killed sweep (interrupted)
from a running one."""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from threadx.errors import ThreadXError
from threadx.optimize.store import ResultStore, lock_held

CTX = mp.get_context("fork")  # the racers start in milliseconds
MANIFEST = {"strategy": "ma_crossover", "fingerprint": "f", "status": "running", "sampler": "grid",
            "objective": "sharpe", "space": {"axes": []}}


def _contend(root: str, run_id: str, start, hold, results) -> None:
    store = ResultStore(root)
    start.wait()
    try:
        writer = store.open_run(run_id, {"run_id": run_id, **MANIFEST})
    except ThreadXError as exc:
        results.put("refused" if "being written by another process" in str(exc) else f"error: {exc}")
        return
    results.put("won")
    hold.wait(20)  # keep the lock until every racer has tried
    writer.close()


def test_exactly_one_of_eight_racing_writers_gets_the_run(tmp_path):
    for trial in range(20):
        start, hold, results = CTX.Event(), CTX.Event(), CTX.Queue()
        procs = [CTX.Process(target=_contend, args=(str(tmp_path), f"race{trial % 3}", start, hold, results))
                 for _ in range(8)]
        for proc in procs:
            proc.start()
        start.set()  # released at once
        outcomes = sorted(results.get(timeout=30) for _ in procs)
        hold.set()
        for proc in procs:
            proc.join(10)
        assert outcomes == ["refused"] * 7 + ["won"], (trial, outcomes)


def _hold_forever(root: str, ready) -> None:
    writer = ResultStore(root).open_run("held", {"run_id": "held", **MANIFEST})
    writer.update_manifest(status="running")
    ready.set()
    time.sleep(60)


def test_a_lock_held_by_a_killed_process_is_free_at_once_and_the_run_reads_interrupted(tmp_path):
    store = ResultStore(tmp_path)
    ready = CTX.Event()
    proc = CTX.Process(target=_hold_forever, args=(str(tmp_path), ready))
    proc.start()
    assert ready.wait(20)
    try:
        assert lock_held(tmp_path / "held")
        assert store.list_runs().set_index("run_id").loc["held", "status"] == "running"
        try:
            store.open_run("held", {"run_id": "held", **MANIFEST})
            raise AssertionError("a second writer got the lock")
        except ThreadXError as exc:
            assert "being written by another process" in str(exc)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
    assert not lock_held(tmp_path / "held")  # the kernel released it with the process
    assert store.list_runs().set_index("run_id").loc["held", "status"] == "interrupted"
    assert store.load("held").manifest["status"] == "interrupted"
    store.open_run("held", {"run_id": "held", **MANIFEST}).close()  # no stale-lock dance: taken at once


SWEEP = textwrap.dedent("""
    import sys
    from threadx.data.synthetic import generate_synthetic
    from threadx.optimize.runner import sweep
    df = generate_synthetic("BTC_USDT", days=60, seed=5)
    try:
        sweep(df, "test_faulty", {{"fast_period": "5:24:1", "slow_period": [30, 40], "mode": 3}}, store={store!r},
              run_id="term", executor="inline", workers=1, chunk_size=2, flush_seconds=0.0)
    except KeyboardInterrupt:
        sys.exit(130)
""")


def test_sigterm_stops_a_sweep_like_ctrl_c(tmp_path):
    store = tmp_path / "runs"
    tests = str(Path(__file__).parent)
    env = dict(os.environ, THREADX_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")]))
    code = "import sweep_helpers\n" + SWEEP.format(store=str(store))
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((store / "term").glob("part-*.parquet"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 130
    run = ResultStore(store).load("term")
    assert run.manifest["status"] == "interrupted"
    assert 0 < len(run.results) < 40 and run.manifest["done"] == len(run.results)  # parts flushed, counted
    assert not lock_held(store / "term")


FINISH_UNDER_SIGTERM = textwrap.dedent("""
    import os, signal, sys, time
    from threadx.data.synthetic import generate_synthetic
    from threadx.optimize import runner
    finish = runner._Session._finish

    def finish_while_terminated(self, status):
        os.kill(os.getpid(), signal.SIGTERM)  # while the end of the run is written
        time.sleep(0.2)
        finish(self, status)

    runner._Session._finish = finish_while_terminated
    df = generate_synthetic("BTC_USDT", days=60, seed=5)
    try:
        runner.sweep(df, "ma_crossover", {{"fast_period": [5, 7]}}, store={store!r}, run_id="end",
                     executor="inline", workers=1)
    except KeyboardInterrupt:
        sys.exit(130)
""")


def test_a_sigterm_while_the_run_end_is_written_waits_for_it(tmp_path):
    store = tmp_path / "runs"
    env = dict(os.environ, THREADX_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-c", FINISH_UNDER_SIGTERM.format(store=str(store))], env=env,
                          timeout=120)
    assert proc.returncode == 130  # it still stops, as asked, once the run's end is written
    run = ResultStore(store).load("end")
    assert run.manifest["status"] == "completed" and run.manifest["done"] == 2 == len(run.results)
    assert not lock_held(store / "end")
