"""Results store: batched atomic parts, manifest, resume ids, top-N and Pareto views."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from threadx.errors import ThreadXError
from threadx.optimize.pareto import pareto_mask
from threadx.optimize.store import ResultStore


def rows(ids, sharpe, dd=None):
    n = len(ids)
    return pd.DataFrame({"combo_id": np.asarray(ids, dtype=np.int64), "fast_period": np.arange(n) + 5,
                         "sharpe": sharpe, "max_drawdown": dd if dd is not None else -np.linspace(0.1, 0.5, n),
                         "n_trades": 40, "status": "ok", "error": ""})


def test_top_ranks_by_the_runs_own_minimum_trade_count_unless_told(tmp_path):
    """``threadx runs show`` and ``sweep`` listed 0-trade combos first where the run's winner
    (``best_params``, min_trades 10) was another combo."""
    store = ResultStore(tmp_path)
    writer = store.open_run("mt", {"run_id": "mt", "strategy": "ma_crossover", "param_names": ["fast_period"],
                                   "objective": "sharpe", "maximize": True, "min_trades": 10, "sampler": "grid",
                                   "space": {"axes": []}})
    few = rows([0, 1, 2], [0.0, 0.5, 0.3]).assign(n_trades=[0, 40, 40])
    writer.append(few.assign(sharpe=[0.9, 0.5, 0.3]))
    writer.close()
    run = store.load("mt")
    assert list(run.top(2).combo_id) == [1, 2] and run.best_params() == {"fast_period": 6}
    assert list(run.top(2, min_trades=0).combo_id) == [0, 1]


def test_append_flush_load_and_resume(tmp_path):
    store = ResultStore(tmp_path)
    writer = store.open_run("r1", {"run_id": "r1", "strategy": "ma_crossover", "param_names": ["fast_period"],
                                   "objective": "sharpe", "maximize": True, "sampler": "grid", "space": {"axes": []}})
    writer.flush_rows = 3
    writer.append(rows([0, 1], [0.1, 0.2]))
    assert store.done_ids("r1").size == 0  # below the batch size: still in memory
    writer.append(rows([2, 3], [0.3, np.nan]))
    assert list(store.done_ids("r1")) == [0, 1, 2, 3]
    writer.append(rows([7], [0.05]))
    writer.close()  # one writer at a time: the next open_run needs the lock released
    run = store.load("r1")
    assert list(run.results.combo_id) == [0, 1, 2, 3, 7]
    assert list(run.top(2).combo_id) == [2, 1] and run.best_params() == {"fast_period": 5}  # combo 2 was the first row of its batch
    # resume: a new writer continues the part numbering, and leftovers of a killed write are removed
    (tmp_path / "r1" / ".part-000009.parquet.abc.tmp").write_bytes(b"half a file")
    again = store.open_run("r1", {"run_id": "r1", "strategy": "ma_crossover", "space": {"axes": []}, "sampler": "grid"})
    again.append(rows([8], [0.4]))
    again.close()
    assert not list((tmp_path / "r1").glob(".part-*.tmp"))
    assert list(store.done_ids("r1")) == [0, 1, 2, 3, 7, 8]
    with pytest.raises(ThreadXError, match="different strategy"):
        store.open_run("r1", {"run_id": "r1", "strategy": "bb_atr"})


def test_list_runs_and_bad_ids(tmp_path):
    store = ResultStore(tmp_path)
    store.open_run("a", {"run_id": "a", "started_at": "2026-01-01T00:00:00", "status": "completed"}).close()
    store.open_run("b", {"run_id": "b", "started_at": "2026-01-02T00:00:00", "status": "running"}).close()
    assert list(store.list_runs().run_id) == ["b", "a"]
    for bad in ("../x", "", "a/b", "x" * 200):
        with pytest.raises(ThreadXError):
            store.folder(bad)
    with pytest.raises(ThreadXError, match="no run"):
        store.load("missing")


def test_pareto_mask_matches_brute_force():
    rng = np.random.default_rng(0)
    x, y = np.round(rng.normal(size=300), 1), np.round(rng.normal(size=300), 1)  # with ties
    brute = np.array([not np.any((x > x[i]) & (y >= y[i]) | (x >= x[i]) & (y > y[i])) for i in range(300)])
    np.testing.assert_array_equal(pareto_mask(x, y), brute)


def test_a_results_folder_that_cannot_be_written_is_one_error(tmp_path, monkeypatch):
    """A read-only results folder read "[Errno 30] Read-only file system: '.../ro1'"."""
    import errno
    from pathlib import Path

    real_mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):
        if self.name == "ro1":
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(ThreadXError, match=r"cannot store run ro1 in .*ro1: Read-only file system; pick a results "
                                           r"folder this user can write"):
        ResultStore(tmp_path).open_run("ro1", {"run_id": "ro1", "strategy": "ma_crossover", "sampler": "grid"})


def test_a_resume_records_its_own_memory_plan(tmp_path):
    store = ResultStore(tmp_path)
    plan = {"run_id": "m", "strategy": "ma_crossover", "space": {"axes": []}, "sampler": "grid"}
    store.open_run("m", {**plan, "memory": {"batched": False, "budget": 11 * 2**30}}).close()
    again = store.open_run("m", {**plan, "memory": {"batched": True, "budget": 900 * 2**20}})
    assert again.manifest["memory"] == {"batched": True, "budget": 900 * 2**20}
    again.close()
