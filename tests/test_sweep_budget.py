"""Sweep memory budget (estimate before work, batches of indicators) and the sweep's clear errors."""
from __future__ import annotations

import errno
import os
import json
from pathlib import Path
import time

import numpy as np
import pandas as pd
import pytest

from threadx.errors import ParamError, ThreadXError
from threadx.indicators import IndicatorBank
from threadx.optimize import budget, runner
from threadx.optimize.budget import parse_budget
from threadx.optimize.runner import sweep
from threadx.optimize.store import ResultStore, RunWriter

WIDE = {"bb_period": "5:60:1", "bb_std": "0.5:4:0.01", "atr_period": "5:30:1", "entry_z": "0.5:2:0.1"}


@pytest.fixture(scope="module")
def sample():
    from threadx.data.synthetic import generate_synthetic

    df = generate_synthetic("BTC_USDT", days=120, seed=5)
    df.attrs["timeframe"] = "1h"
    return df


class NoComputeBank:
    """A bank that fails the test if any indicator is computed."""

    max_bytes = 0

    def ensure_many(self, *args, **kwargs):
        raise AssertionError("an indicator was computed before the budget check")


def long_series(n_bars: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    close = 30_000 * np.exp(np.cumsum(rng.normal(0, 0.002, n_bars)))
    index = pd.date_range("2022-01-01", periods=n_bars, freq="5min", tz="UTC")
    frame = pd.DataFrame({"open": close, "high": close * 1.001, "low": close * 0.999, "close": close,
                          "volume": 1.0}, index=index)
    frame.attrs["timeframe"] = "5m"
    return frame


def test_a_budget_below_the_workers_own_memory_says_so_not_narrow_the_indicators(sample, tmp_path):
    """30 MB for 2 workers: the refusal blamed "one batch of indicators" (0.5 MB of them) and
    advised narrowing the indicator params, which cannot help."""
    with pytest.raises(ParamError) as caught:
        sweep(sample, "ma_crossover", {"fast_period": "5:10:1"}, workers=2, executor="local",
              store=tmp_path / "store", bank=NoComputeBank(), memory_budget="30MB")
    text = str(caught.value)
    assert "before any indicator it needs about" in text and "2 worker(s) at about 256.0 MiB each" in text
    assert "use fewer workers, or raise memory_budget" in text
    assert "narrow" not in text and "one batch of indicators" not in text


def test_a_small_sweep_is_estimated_at_what_it_holds_not_at_the_caches_bound(sample, tmp_path):
    """A 2-combo sweep was estimated at 768 MiB (the indicator cache's whole 512 MiB bound and
    a 256 MiB worker that inline never starts) and refused under 600 MiB; it peaks near 270 MiB."""
    for executor in ("inline", "auto"):  # (auto runs a sweep this small inline too: no worker to count)
        run = sweep(sample, "ma_crossover", {"fast_period": "5:6:1"}, workers=4, executor=executor,
                    store=tmp_path / executor, bank=IndicatorBank(disk=False), memory_budget="64MiB")
        memory = run.manifest["memory"]
        assert memory["batched"] is False and memory["estimate"] < 64 * 2**20, (executor, memory)


def test_a_walk_forward_over_its_budget_names_no_worker_processes(sample):
    """A walk-forward runs threads in this process: its refusal read "plus 0 worker(s)" and
    advised "use fewer workers"."""
    from threadx.validation.walkforward import walk_forward

    with pytest.raises(ParamError) as caught:
        walk_forward(sample, "ma_crossover", {"fast_period": "5:10:1"}, is_bars=400, oos_bars=200,
                     bank=NoComputeBank(), memory_budget="10kB")
    text = str(caught.value)
    assert "worker" not in text and "raise memory_budget" in text, text


def test_sweep_over_its_budget_is_refused_in_under_a_second_before_any_indicator(tmp_path):
    df = long_series(210_000)  # the 5m case: 196 Bollinger sets (bb_std is display-only) and 96 ATRs: GiBs
    space = {"bb_period": "5:200:1", "bb_std": "0.5:4:0.01", "atr_period": "5:100:1"}
    started = time.perf_counter()
    with pytest.raises(ParamError, match=r"needs up to about [\d.,]+ GiB .*bollinger.* x 210,000 bars.*"
                                         r"the budget is 300.0 MiB.*before any indicator it needs about 535.4 MiB "
                                         r".*use fewer workers"):  # (1 worker: it batches the indicators)
        sweep(df, "bb_atr", space, sampler="random", n=3000, workers=2, executor="local",
              store=tmp_path / "store", bank=NoComputeBank(), memory_budget="300MiB")
    assert time.perf_counter() - started < 1.0
    assert not (tmp_path / "store").exists()  # refused before the run was opened


def test_dask_and_gpu_cannot_batch_so_they_are_refused(tmp_path):
    df = long_series(100_000)
    with pytest.raises(ParamError, match="dask executor cannot prepare indicators in batches"):
        sweep(df, "bb_atr", {"bb_period": "5:200:1", "atr_period": "5:100:1"}, sampler="random", n=500,
              executor="dask", store=tmp_path, bank=NoComputeBank(), memory_budget="2GiB")


def test_default_budget_is_half_the_available_ram(monkeypatch, caplog):
    class Memory:
        available, total = 10 * 2**30, 16 * 2**30

    import logging

    import psutil

    monkeypatch.setattr(psutil, "virtual_memory", lambda: Memory())
    assert budget.Budget.resolve().memory == 5 * 2**30
    with caplog.at_level(logging.WARNING, logger="threadx"):
        assert budget.Budget.resolve("4GiB").memory == 4 * 2**30
        assert not caplog.records
        assert budget.Budget.resolve("64GiB").memory == 64 * 2**30  # taken as given, with a warning
        assert budget.Budget.resolve("64GiB").memory == 64 * 2**30  # (once: a research resolves it per cell)
    assert [r.getMessage() for r in caplog.records] == [
        "the memory budget 64.0 GiB is more than this machine's RAM (16.0 GiB): work estimated to fit it may not "
        "fit the machine"]


@pytest.mark.parametrize("executor", ["local", "inline"])
def test_a_sweep_over_budget_runs_in_batches_with_identical_results(sample, tmp_path, monkeypatch, executor):
    bars = len(sample)
    common = dict(sampler="random", n=150, seed=3, workers=2, executor=executor, store=tmp_path)
    whole = sweep(sample, "bb_atr", WIDE, run_id="whole", bank=IndicatorBank(disk=False), **common)
    assert whole.manifest["memory"]["batched"] is False

    monkeypatch.setattr(budget, "WORKER_BYTES", 0)
    packs = []
    create = runner.SharedPack.create

    def spy(bars_, arrays, run_id="sweep"):
        pack = create(bars_, arrays, run_id)
        packs.append(pack.layout.total)
        return pack

    monkeypatch.setattr(runner.SharedPack, "create", spy)
    small = 500_000 + 40 * bars * 16  # the fixed costs and about 40 indicator lines
    batched = sweep(sample, "bb_atr", WIDE, run_id="batched", bank=IndicatorBank(disk=False, max_bytes=0),
                    memory_budget=small, **common)
    memory = batched.manifest["memory"]
    assert memory["batched"] is True and memory["batches"] >= 3
    assert memory["line_capacity"] <= 100 < memory["indicator_lines"]
    if executor == "local":
        assert len(packs) == memory["batches"]
        assert max(packs) <= (memory["line_capacity"] + budget.FIXED_LINES) * bars
    a = whole.results.set_index("combo_id").sort_index()
    b = batched.results.set_index("combo_id").sort_index()
    assert len(a) == 150 and a.index.equals(b.index)
    pd.testing.assert_frame_equal(a, b)  # bit-identical metrics


@pytest.mark.parametrize("text, expected", [("4GiB", 4 * 2**30), ("512MB", 512 * 10**6), ("1.5G", 1_500_000_000),
                                            (123, 123), ("2 mib", 2 * 2**20)])
def test_parse_budget(text, expected):
    assert parse_budget(text) == expected


@pytest.mark.parametrize("bad", ["lots", "-1GB", 0, True, "4 parsecs"])
def test_bad_memory_budget_is_a_param_error(sample, tmp_path, bad):
    with pytest.raises(ParamError, match="memory budget"):
        sweep(sample, "ma_crossover", {}, store=tmp_path, memory_budget=bad)


def test_monte_carlo_n_has_the_grid_limit(sample, tmp_path):
    started = time.perf_counter()
    with pytest.raises(ParamError, match="1,000,000,000 combos is above the limit of 10,000,000"):
        sweep(sample, "bb_atr", {"bb_period": "5:200:1"}, sampler="random", n=1_000_000_000, store=tmp_path)
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("space", [[1, 2], "bb_period=10:20:1", 3])
def test_space_must_be_a_mapping(sample, tmp_path, space):
    with pytest.raises(ParamError, match="search space must be a mapping"):
        sweep(sample, "bb_atr", space, store=tmp_path)


@pytest.mark.parametrize("sampler", ["grid", "random"])
def test_a_plan_without_any_valid_combo_is_refused_with_the_constraint(sample, tmp_path, sampler):
    space = {"fast_period": "50:69:1", "slow_period": "10:29:1"}
    n = None if sampler == "grid" else 100
    what = "400 combos" if sampler == "grid" else "combos"
    with pytest.raises(ParamError, match=f"every one of the .*{what} breaks fast_period < slow_period"):
        sweep(sample, "ma_crossover", space, sampler=sampler, n=n, store=tmp_path)
    assert not any(tmp_path.iterdir())


def test_a_file_as_store_is_a_param_error(sample, tmp_path):
    target = tmp_path / "results.txt"
    target.write_text("not a folder")
    for store in (target, target / "sub"):
        with pytest.raises(ParamError, match="is a file; results need a directory"):
            sweep(sample, "ma_crossover", {"fast_period": [5, 10]}, store=store)


@pytest.mark.parametrize("error, why", [(errno.ENOSPC, "disk full"), (errno.EFBIG, "file size limit reached")])
def test_disk_full_while_storing_is_a_clear_error_and_the_run_resumes(sample, tmp_path, monkeypatch, error, why):
    """(a file-size limit, EFBIG, read "[Errno 27] File too large", naming neither the run nor a resume)"""
    flush = RunWriter.flush
    calls = []

    def full_disk(self):
        calls.append(1)
        if len(calls) > 1 and self._pending:
            raise OSError(error, os.strerror(error))
        flush(self)

    monkeypatch.setattr(RunWriter, "flush", full_disk)
    space = {"fast_period": "5:20:1", "slow_period": [30, 40]}
    args = dict(executor="inline", workers=1, chunk_size=4, flush_seconds=0, store=tmp_path, run_id="full")
    with pytest.raises(ThreadXError, match=why + r" while storing results of run full.*: \d+ combos stored; "
                                           r"free space \(or raise the limit\) and resume with the same run id"):
        sweep(sample, "ma_crossover", space, bank=IndicatorBank(disk=False), **args)
    stored = ResultStore(tmp_path).done_ids("full")
    assert 0 < len(stored) < 32
    monkeypatch.setattr(RunWriter, "flush", flush)
    run = sweep(sample, "ma_crossover", space, bank=IndicatorBank(disk=False), **args)
    assert run.manifest["done"] == 32 and len(run.results) == 32


def test_a_sweep_whose_last_results_cannot_be_stored_is_not_recorded_completed(sample, tmp_path, monkeypatch):
    """The final flush failing (a full disk) left a manifest saying "completed" with the total
    cut to the combos stored: the run listed as complete and was validated as such."""
    flush = RunWriter.flush

    def full_disk(self):
        if self._pending:
            raise OSError(errno.ENOSPC, "No space left on device")
        flush(self)

    monkeypatch.setattr(RunWriter, "flush", full_disk)
    space = {"fast_period": "5:20:1", "slow_period": [30, 40]}
    args = dict(executor="inline", workers=1, flush_seconds=1e9, store=tmp_path, run_id="last")
    with pytest.raises(ThreadXError, match="disk full while storing results of run last"):
        sweep(sample, "ma_crossover", space, bank=IndicatorBank(disk=False), **args)
    manifest = json.loads((tmp_path / "last" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["total"] == 32 and manifest["done"] < 32
    monkeypatch.setattr(RunWriter, "flush", flush)
    run = sweep(sample, "ma_crossover", space, bank=IndicatorBank(disk=False), **args)
    assert run.manifest["status"] == "completed" and run.manifest["done"] == 32 and len(run.results) == 32


def test_walk_forward_over_its_budget_is_refused_before_any_indicator():
    from threadx.validation.walkforward import walk_forward

    df = long_series(100_000)
    started = time.perf_counter()
    with pytest.raises(ParamError, match=r"this walk-forward needs up to about .*bollinger.*the budget is 1.0 GiB"):
        walk_forward(df, "bb_atr", {"bb_period": "5:500:1", "atr_period": "5:200:1"}, is_bars=20_000,
                     oos_bars=10_000, n=2000, bank=NoComputeBank(), memory_budget="1GiB")
    assert time.perf_counter() - started < 1.0


def test_adaptive_rounds_and_resume_run_in_batches_too(sample, tmp_path, monkeypatch):
    monkeypatch.setattr(budget, "WORKER_BYTES", 0)
    small = 500_000 + 40 * len(sample) * 16
    args = dict(sampler="adaptive", n=60, seed=1, workers=2, executor="inline", store=tmp_path, run_id="adapt",
                memory_budget=small, adaptive_rounds=2)
    run = sweep(sample, "bb_atr", WIDE, bank=IndicatorBank(disk=False, max_bytes=0), **args)
    assert run.manifest["memory"]["batched"] is True and run.manifest["done"] > 60
    again = sweep(sample, "bb_atr", WIDE, bank=IndicatorBank(disk=False, max_bytes=0), **args)
    assert again.manifest["done"] == run.manifest["done"] and again.manifest["status"] == "completed"


def test_workers_started_before_a_refused_plan_are_stopped(tmp_path):
    """A fresh single-threaded process forks its workers before planning (they start up while
    the combos are planned); when the plan is then refused, they are stopped with it."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import psutil, threadx
        from threadx.errors import ParamError
        from tests.test_sweep_budget import long_series
        phases = []
        try:
            threadx.sweep(long_series(100_000), "bb_atr", {{"bb_period": "5:200:1", "atr_period": "5:100:1"}},
                          sampler="random", n=20_000, workers=2, executor="local", store=r"{tmp_path / 'store'}",
                          memory_budget="50MiB", on_phase=phases.append)
        except ParamError as exc:
            print("refused", "too small" in str(exc))
        print(phases)
        left = [p for p in psutil.Process().children() if "resource_tracker" not in " ".join(p.cmdline())]
        print("children", len(left))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=str(Path(__file__).parent.parent))
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "refused True" and "starting 2 workers" in lines[1], proc.stdout
    assert lines[-1] == "children 0", proc.stdout  # no worker left behind (the tracker is not a child)
