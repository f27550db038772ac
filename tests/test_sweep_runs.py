"""Stored runs as the Optimisation page reads them (threadx.ui.sweep_runs): the history is
read from the parts only when a run's files changed, a comparison lines two runs up, and a
resume request reruns a run on its recorded data."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("streamlit")

import threadx  # noqa: E402
from threadx.data.io import write_ohlcv  # noqa: E402
from threadx.data.synthetic import generate_synthetic  # noqa: E402
from threadx.errors import DataError, ThreadXError  # noqa: E402
from threadx.optimize import store as store_module  # noqa: E402
from threadx.optimize.store import ResultStore  # noqa: E402
from threadx.ui import sweep_runs  # noqa: E402

SPACE = {"fast_period": "5:20:5", "slow_period": [40, 60]}


pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")


def _cancelled(df, store: ResultStore, run_id: str):
    """A sweep of 72 combos stopped after a few chunks of 4 (status cancelled)."""
    checks = itertools.count()
    run = threadx.sweep(df, "ma_crossover", {"fast_period": "5:40:1", "slow_period": [50, 60]}, store=store,
                        run_id=run_id, executor="inline", workers=1, chunk_size=4, cancel=lambda: next(checks) >= 4)
    assert run.manifest["status"] == "cancelled" and 0 < run.manifest["done"] < 72, run.manifest
    return run


@pytest.fixture
def file_df(tmp_path):
    """(path, frame) of a small 1h file outside the catalog: a run on it records its path."""
    path = tmp_path / "files" / "ABC_USDT-1h.parquet"
    write_ohlcv(generate_synthetic(days=20, seed=3), path)
    return path, threadx.load_ohlcv(str(path))


def _count_part_reads(monkeypatch) -> list:
    reads: list = []
    real = store_module._read_table

    def counting(path, columns):
        reads.append(path)
        return real(path, columns)

    monkeypatch.setattr(store_module, "_read_table", counting)
    return reads


def test_history_rows_and_best_objective(synthetic_bars, tmp_path):
    store = ResultStore(tmp_path)
    a = threadx.sweep(synthetic_bars, "ma_crossover", SPACE, store=store, run_id="a", executor="inline", workers=1)
    b = threadx.sweep(synthetic_bars, "ma_crossover", SPACE, store=store, run_id="b", executor="inline", workers=1,
                      objective="max_drawdown", min_trades=0)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_text("{not json")
    table = sweep_runs.history(store)
    assert list(table.columns) == list(sweep_runs.HISTORY_COLUMNS)
    rows = table.set_index("run_id")
    assert set(rows.index) == {"a", "b", "broken"}
    assert rows.loc["a", "done"] == rows.loc["a", "planned"] == 8 and rows.loc["a", "status"] == "completed"
    winner = a.top(1, min_trades=a.manifest["min_trades"])
    assert rows.loc["a", "best"] == pytest.approx(float(winner["sharpe"].iloc[0]))
    assert rows.loc["b", "objective"] == "max_drawdown max"
    assert rows.loc["b", "best"] == pytest.approx(float(b.ok()["max_drawdown"].max()))
    assert rows.loc["a", "dataset"].startswith(synthetic_bars.name or "")
    assert rows.loc["broken", "status"].startswith("damaged: ") and pd.isna(rows.loc["broken", "done"])
    assert table["done"].dtype == "Int64" and table["best"].dtype == "Float64"  # sortable as numbers


def test_history_reads_parts_only_of_runs_that_changed(synthetic_bars, tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    for k in range(3):
        threadx.sweep(synthetic_bars, "ma_crossover", SPACE, store=store, run_id=f"r{k}", executor="inline",
                      workers=1)
    reads = _count_part_reads(monkeypatch)
    sweep_runs.history(store)
    assert {p.parent.name for p in reads} == {"r0", "r1", "r2"}
    reads.clear()
    again = sweep_runs.history(store)
    assert reads == [] and len(again) == 3  # a rerun reads no part
    _cancelled(synthetic_bars, store, "r3")
    reads.clear()
    table = sweep_runs.history(store)
    assert {p.parent.name for p in reads} == {"r3"}  # only the new run
    assert table.set_index("run_id").loc["r3", "status"] == "cancelled"


def test_a_run_that_says_running_without_a_writer_is_interrupted(synthetic_bars, tmp_path):
    store = ResultStore(tmp_path)
    run = _cancelled(synthetic_bars, store, "dead")
    manifest = dict(run.manifest, status="running")  # a writer killed before it could say so
    store_module.write_manifest(store.folder("dead"), manifest)
    assert sweep_runs.history(store).loc[0, "status"] == "interrupted"
    view = sweep_runs.load_view(store, "dead")
    assert view.status == "interrupted" and view.resumable


def test_view_resumable_statuses(synthetic_bars, tmp_path):
    store = ResultStore(tmp_path)
    threadx.sweep(synthetic_bars, "ma_crossover", SPACE, store=store, run_id="done", executor="inline", workers=1)
    _cancelled(synthetic_bars, store, "stopped")
    done, stopped = sweep_runs.load_view(store, "done"), sweep_runs.load_view(store, "stopped")
    assert not done.resumable and stopped.resumable and stopped.status == "cancelled"
    assert done.best is not None and done.best_params == threadx.sweep(
        synthetic_bars, "ma_crossover", SPACE, store=store, run_id="done", executor="inline").best_params()
    assert len(done.table) == 8 and list(done.table.columns[:2]) == ["fast_period", "slow_period"]


def test_the_view_is_read_once_per_signature(file_df, tmp_path, monkeypatch):
    store = ResultStore(tmp_path / "results")
    _cancelled(file_df[1], store, "v")
    reads = _count_part_reads(monkeypatch)
    first = sweep_runs.load_view(store, "v")
    assert reads
    reads.clear()
    assert sweep_runs.load_view(store, "v") is first and reads == []  # a rerun: nothing read
    monkeypatch.undo()
    request = sweep_runs.resume_request(first.manifest)
    threadx.sweep(request.data.load(), request.strategy, request.space, store=store, **request.sweep_kwargs())
    resumed = sweep_runs.load_view(store, "v")  # the run changed: read again
    assert resumed is not first and resumed.status == "completed" and len(resumed.ok) == 72


def test_resume_request_completes_a_cancelled_run_like_an_uninterrupted_one(file_df, tmp_path):
    path, df = file_df
    store = ResultStore(tmp_path / "results")
    _cancelled(df, store, "part")
    request = sweep_runs.resume_request(store.load("part").manifest)
    assert request.run_id == "part" and request.data.source == str(path) and request.data.fingerprint
    sweep_runs.check_resume_data(request)
    resumed = threadx.sweep(request.data.load(), request.strategy, request.space, store=store,
                            **request.sweep_kwargs())
    whole = threadx.sweep(df, "ma_crossover", {"fast_period": "5:40:1", "slow_period": [50, 60]}, store=store,
                          run_id="whole", executor="inline", workers=1)
    assert resumed.manifest["status"] == "completed"
    pd.testing.assert_frame_equal(resumed.results.drop(columns=["error"]), whole.results.drop(columns=["error"]))

    write_ohlcv(generate_synthetic(days=20, seed=4), path)  # other candles under the same file
    with pytest.raises(DataError, match="changed since the run"):
        sweep_runs.check_resume_data(request)
    path.unlink()
    with pytest.raises(DataError, match="gone"):
        sweep_runs.check_resume_data(request)


def test_a_run_stored_without_a_request_is_not_resumed_from_the_page(synthetic_bars, tmp_path):
    store = ResultStore(tmp_path)
    run = threadx.sweep(synthetic_bars, "ma_crossover", SPACE, store=store, run_id="old", executor="inline",
                        workers=1)
    manifest = {k: v for k, v in run.manifest.items() if k != "request"}
    with pytest.raises(ThreadXError, match="records no request.*--run-id old"):
        sweep_runs.resume_request(manifest)


def test_compare_two_runs(synthetic_bars, tmp_path):
    store = ResultStore(tmp_path)
    threadx.sweep(synthetic_bars, "ma_crossover", SPACE, store=store, run_id="cheap", executor="inline", workers=1)
    threadx.sweep(synthetic_bars, "ma_crossover", {"fast_period": "5:20:5", "slow_period": [40, 80]}, store=store,
                  run_id="dear", executor="inline", workers=1, fee_bps=25.0)
    a, b = sweep_runs.load_view(store, "cheap"), sweep_runs.load_view(store, "dear")
    settings = sweep_runs.compare_settings(a.manifest, b.manifest)
    assert list(settings.columns) == ["setting", "cheap", "dear", "same"]
    differ = settings.loc[~settings["same"], "setting"].tolist()
    assert "engine: fee_bps" in differ and "space: slow_period" in differ
    assert "strategy" not in differ and "data" not in differ
    assert differ == settings["setting"].tolist()[:len(differ)]  # differences first
    best = sweep_runs.compare_best(a, b).set_index("")
    assert best.loc["param: fast_period", "cheap"] == str(a.best_params["fast_period"])
    assert best.loc["sharpe", "dear"] == f"{float(b.best['sharpe']):,.4g}"
    fig = sweep_runs.distribution_figure([a, b], "sharpe")
    assert [t.type for t in fig.data] == ["histogram", "histogram"]
    assert len(fig.data[0].x) == int(np.isfinite(a.ok["sharpe"]).sum())
    assert "sharpe" in sweep_runs.metric_choices([a, b])


def test_a_run_completed_with_failures_is_resumable_only_when_some_would_run_again(synthetic_bars, tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    import sweep_helpers  # noqa: F401  (registers test_faulty, whose mode 1 raises)
    from threadx.optimize.evaluate import INFRA_PREFIX

    store = ResultStore(tmp_path)
    run = threadx.sweep(synthetic_bars, "test_faulty", {"fast_period": [5, 10], "slow_period": 40, "mode": [0, 1]},
                        store=store, run_id="f", executor="inline", workers=1)
    assert run.manifest["status"] == "completed with 2 failed"
    view = sweep_runs.load_view(store, "f")
    assert view.to_retry == 0 and not view.resumable  # errors of the combos themselves: a resume changes nothing
    for part in store.folder("f").glob("part-*.parquet"):  # the same failures, as a lost worker would record them
        rows = pd.read_parquet(part)
        failed = rows["status"] == "failed"
        rows.loc[failed, "error"] = INFRA_PREFIX + "worker process died"
        rows.to_parquet(part.with_suffix(".tmp"), index=False)
        part.with_suffix(".tmp").replace(part)  # by rename, as the store writes every file
    view = sweep_runs.load_view(store, "f")
    assert view.to_retry == 2 and view.resumable


def test_a_manifest_without_its_planned_count_says_so_instead_of_zero(synthetic_bars, tmp_path):
    import json

    store = ResultStore(tmp_path)
    threadx.sweep(synthetic_bars, "ma_crossover", SPACE, store=store, run_id="a", executor="inline", workers=1)
    path = tmp_path / "a" / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["total"]  # written by an older version or by hand
    path.write_text(json.dumps(manifest))
    row = sweep_runs.history(store).set_index("run_id").loc["a"]
    assert row["done"] == 8 and pd.isna(row["planned"])
    assert sweep_runs.settings_of(manifest)["combos done / planned"] == "8 / not recorded"


def test_the_size_band_plans_with_this_machines_measured_rate(synthetic_bars, tmp_path, monkeypatch):
    """The band assumed 5,000 backtests/s: a grid of 271,215 combos read "fast" where the machine
    ran 2,100-5,700/s (92/s under load). Runs of 1,000 combos or more measure the rate."""
    import json

    from threadx.optimize.space import size_text

    store = ResultStore(tmp_path)
    assert sweep_runs.measured_rate(store, "ma_crossover", len(synthetic_bars)) is None
    monkeypatch.setattr(sweep_runs, "RATE_MIN_COMBOS", 8)
    threadx.sweep(synthetic_bars, "ma_crossover", SPACE, store=store, run_id="a", executor="inline", workers=1)
    path = tmp_path / "a" / "manifest.json"
    manifest = json.loads(path.read_text())
    assert manifest["session_done"] == 8
    manifest["elapsed_s"] = 4.0  # 8 combos in 4 s: 2 a second on these bars
    path.write_text(json.dumps(manifest))
    assert sweep_runs.measured_rate(store, "ma_crossover", len(synthetic_bars)) == pytest.approx(2.0)
    assert sweep_runs.measured_rate(store, "ma_crossover", 2 * len(synthetic_bars)) == pytest.approx(1.0)
    assert sweep_runs.measured_rate(store, "bb_atr", len(synthetic_bars)) is None
    # the same run asked again runs nothing in a few ms: not a rate (it read 19,943/s for 571/s)
    threadx.sweep(synthetic_bars, "ma_crossover", SPACE, store=store, run_id="a", executor="inline", workers=1)
    assert json.loads(path.read_text())["session_done"] == 0
    assert sweep_runs.measured_rate(store, "ma_crossover", len(synthetic_bars)) is None
    assert size_text(240, 2.0) == "**minutes** (about 2 min at 2 backtests/s, this machine's recent runs)"
