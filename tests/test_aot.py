"""The ahead-of-time build of the sweep kernels (threadx.aot): the same results as numba's
kernels bit for bit, used only for exactly the argument types it was built for, the GIL
released as numba's ``nogil`` kernels do, and a fresh process's sweep that loads no numba
kernel at all (its start-up is what the build saves)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import threadx
from threadx import aot
from threadx.data.bars import as_bars
from threadx.data.synthetic import generate_synthetic
from threadx.engine import kernel
from threadx.gpu.workload import evaluator_for, random_ids
from threadx.indicators import kernels as K
from threadx.strategy.base import builtin_names

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built() -> dict:
    """This machine's build, made here as the warm-up makes it when it is missing (``make
    test`` runs the warm-up first); skipped only where there is no C compiler."""
    if not aot.enabled():
        pytest.skip("THREADX_AOT is off")
    if not aot.is_built():
        if shutil.which("cc") is None and shutil.which("gcc") is None:
            pytest.skip("no C compiler: the kernels run by numba alone")
        from threadx.warmup import warm_kernels

        with aot.recording() as recorded:
            warm_kernels()
        aot.build(recorded)
    found = aot.table()
    assert found, "built, yet nothing loaded"
    return found


@pytest.fixture(scope="module")
def bars():
    return as_bars(generate_synthetic(days=90, seed=5))


def counting(monkeypatch: pytest.MonkeyPatch, table: dict) -> dict:
    """Swap the loaded table for one whose functions count their calls: {(module, name): calls}."""
    counts: dict = {}

    def wrap(name, fn):
        def run(*args):
            counts[name] = counts.get(name, 0) + 1
            return fn(*args)
        return run

    monkeypatch.setitem(aot._state, "table", {name: [(spec, wrap(name, fn)) for spec, fn in entries]
                                              for name, entries in table.items()})
    return counts


def test_every_builtin_strategy_is_built_for_its_sweep_and_backtest_kernels(built):
    names = {name for _, name in built}
    assert {"run_plan", "run_full", "run_fast", "run_fast_blocks"} <= names
    for module, name in built:  # only sources the versioned cache folder hashes
        assert module.startswith("threadx."), module
    assert {"zscore_reversion_rows", "zscore_reversion_signals", "cross_signals_rows", "rolling_mean_std",
            "smooth", "true_range"} <= names


@pytest.mark.parametrize("strategy", builtin_names())
def test_sweep_combos_equal_numba_bit_for_bit_and_ran_ahead_of_time(strategy, built, bars, monkeypatch):
    ev = evaluator_for(strategy, bars, n_blocks=6)
    ids = random_ids(ev, 40, seed=3)
    with aot.jit_only():
        by_numba = ev.evaluate(ids)
    counts = counting(monkeypatch, built)
    again = evaluator_for(strategy, bars, n_blocks=6)  # its own indicator bank: the indicators run again
    ahead = again.evaluate(ids)
    assert counts.get(("threadx.engine.kernel", "run_plan"), 0) >= 1, counts
    np.testing.assert_array_equal(ahead.metrics, by_numba.metrics)
    np.testing.assert_array_equal(ahead.blocks, by_numba.blocks)
    np.testing.assert_array_equal(ahead.status, by_numba.status)
    assert ahead.errors == by_numba.errors
    params = ev.space.params(int(ids[0]))
    with aot.jit_only():
        one = ev.run_one(params)
    for got, want in zip(again.run_one(params), one):  # walk-forward's whole-period combo (run_fast_blocks)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("strategy", builtin_names())
def test_backtest_equals_numba_bit_for_bit(strategy, built, bars, monkeypatch):
    frame = generate_synthetic(days=90, seed=5)
    with aot.jit_only():
        by_numba = threadx.backtest(frame, strategy)
    counts = counting(monkeypatch, built)
    ahead = threadx.backtest(frame, strategy)
    assert counts.get(("threadx.engine.kernel", "run_full"), 0) == 1, counts
    assert pd.Series(ahead.metrics).equals(pd.Series(by_numba.metrics))  # (NaN equals NaN)
    assert ahead.trades.equals(by_numba.trades)
    assert ahead.equity.equals(by_numba.equity)


def test_only_exactly_the_built_types_run_ahead_of_time(built):
    close = np.ascontiguousarray(generate_synthetic(days=5, seed=1)["close"].to_numpy(), dtype=np.float64)
    close.flags.writeable = False
    assert aot.compiled_for(K.sma, (close, 5)) is not None
    assert aot.compiled_for(K.sma, (close, np.int64(5))) is not None
    for args in [(close.astype(np.float32), 5),  # another dtype
                 (np.repeat(close, 2)[::2], 5),  # not contiguous
                 (close.astype(">f8"), 5),  # not in the machine's byte order
                 (close, 5.0), (close, True), (close, 2**63),  # another scalar type, or past int64
                 (close,), (close, 5, 5),  # another count
                 (list(close), 5)]:
        assert aot.compiled_for(K.sma, args) is None, args
    tr = np.ascontiguousarray(np.abs(close - 1.0))
    tr.flags.writeable = False  # smooth is built for a writable array: never handed a read-only one
    assert aot.compiled_for(K.smooth, (tr, 14, 0)) is None
    assert aot.compiled_for(K.smooth, (tr.copy(), 14, 0)) is not None
    assert aot.compiled_for(lambda x: x, (close,)) is None  # not a numba kernel
    with aot.jit_only():
        assert aot.compiled_for(K.sma, (close, 5)) is None
    np.testing.assert_array_equal(aot.call(K.sma, close.astype(np.float32), 5), K.sma(close.astype(np.float32), 5))
    writable = close.copy()
    for bad, error in [(-3, ValueError), (0, ZeroDivisionError)]:  # a kernel's errors, as numba's raise them
        assert aot.compiled_for(K.smooth, (writable, bad, 0)) is not None
        with pytest.raises(error) as by_aot:
            aot.call(K.smooth, writable, bad, 0)
        with pytest.raises(error) as by_numba:
            K.smooth(writable, bad, 0)
        assert str(by_aot.value) == str(by_numba.value)


def test_the_built_kernels_release_the_gil(built):
    """A sweep's threads run the kernel side by side: while one runs, Python code goes on (a
    build holding the GIL let the main thread run no step of its loop during the call)."""
    ev = evaluator_for("bb_atr", as_bars(generate_synthetic(days=360, seed=5)))
    from threadx.optimize.plan import Planner, kernel_calls

    plan = Planner(ev).plan(random_ids(ev, 2000, seed=2))
    (_, args), = kernel_calls(plan, ev.bars, ev.funding, ev.block_end)
    compiled = aot.compiled_for(kernel.run_plan, args)
    assert compiled is not None
    span: list[float] = []

    def run() -> None:
        span.append(time.perf_counter())
        compiled(*args)
        span.append(time.perf_counter())

    thread = threading.Thread(target=run)
    ticks = []
    thread.start()
    while thread.is_alive():
        ticks.append(time.perf_counter())
    thread.join()
    # holding the GIL, the call is one gap in the main thread's ticks (measured: 40 ms of 47)
    inside = [tick for tick in ticks if span[0] < tick < span[1]]
    longest = float(np.diff([span[0], *inside, span[1]]).max())
    assert span[1] - span[0] > 0.03 and longest < (span[1] - span[0]) / 3, (span[1] - span[0], longest)


def test_a_damaged_build_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setattr(aot, "folder", lambda: tmp_path)
    (tmp_path / aot.MANIFEST).write_text("{not json")
    assert aot._load() == {}
    (tmp_path / aot.MANIFEST).write_text(json.dumps({"exports": [{"symbol": "x", "module": "m", "name": "n"}]}))
    assert aot._load() == {}  # no module file
    (tmp_path / (aot.MODULE + ".cpython-311-x86_64-linux-gnu.so")).write_bytes(b"not a library")
    assert aot._load() == {}
    monkeypatch.setenv(aot.ENV, "off")
    assert not aot.enabled() and aot._load() == {}


def test_a_fresh_process_sweep_loads_no_numba_kernel(built, tmp_path):
    """The point of the build: a process's first sweep pays neither numba's start-up nor a
    kernel's load (each an overload in its dispatcher); on 2 workers, in the parent."""
    script = """
import gc, sys, tempfile
from pathlib import Path
import threadx
from numba.core.dispatcher import Dispatcher
from threadx.data.synthetic import generate_synthetic
from threadx.indicators import IndicatorBank
frame = generate_synthetic(days=60, seed=4)
run = threadx.sweep(frame, "bb_atr", {"bb_period": "10:40:1", "entry_z": "0.5:2.5:0.1", "atr_period": "7:21:1"},
                    sampler="random", n=300, seed=1, workers=2, executor="local", store=Path(sys.argv[1]),
                    run_id="aot", bank=IndicatorBank(disk=False))
assert len(run.results) == 300, len(run.results)
print(sorted(d.py_func.__name__ for d in gc.get_objects() if isinstance(d, Dispatcher) and d.overloads))
"""
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_the_build_is_the_one_of_the_kernels_this_process_imported(monkeypatch, tmp_path):
    """Beside numba's cache of them, as chosen when threadx was imported (a build made after a
    later edit of a kernel's source is another process's), and named by the settings the code
    depends on: numba's bounds checking, say, gives another folder."""
    from numba.core import config

    assert aot.folder().parent.parent == Path(config.CACHE_DIR)
    before = aot.folder()
    monkeypatch.setattr(config, "CACHE_DIR", str(tmp_path))
    assert aot.folder().parent.parent == tmp_path and aot.folder().name == before.name
    monkeypatch.setattr(config, "BOUNDSCHECK", 1)
    assert aot.folder().name != before.name


def test_prune_removes_other_builds_and_stale_build_folders_only(tmp_path, monkeypatch):
    current = tmp_path / "aot" / "0123456789abcdef"
    other = tmp_path / "aot" / "fedcba9876543210"  # another numba / CPU / module version's
    busy = tmp_path / "aot" / "00000000ffffffff"  # being built by another process now
    stale, fresh = tmp_path / "aot" / "build-old1", tmp_path / "aot" / "build-new1"
    unrelated = tmp_path / "aot" / "notes"
    for path in (current, other, busy, stale, fresh, unrelated):
        path.mkdir(parents=True)
        (path / "x").write_text("x")
    old = time.time() - 2 * aot._STALE_BUILD_S
    os.utime(stale, (old, old))
    monkeypatch.setattr(aot, "folder", lambda: current)
    from filelock import FileLock

    with FileLock(str(busy) + ".lock"):
        removed = aot.prune()
    assert sorted(removed) == sorted([other, stale])
    assert all(p.is_dir() for p in (current, busy, fresh, unrelated)) and not other.exists() and not stale.exists()
