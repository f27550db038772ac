"""Research (threadx.validation.research): several datasets in one job, the strategy x asset
matrix and the transfer matrix. Real-data tests use the three 1h files of ../shared/data."""
from __future__ import annotations

import json
import math
import time

import pytest

import threadx
from threadx.cli import main
from threadx.config import DEFAULT_SEED
from threadx.errors import ParamError, ThreadXError
from threadx.requests import DatasetRef
from threadx.validation.report import validate_walk_forward
from threadx.validation.research import load_research, oos_span, research
from threadx.validation.storage import load_walk_forward

SPACE = {"bb_period": [20, 40], "atr_multiplier": [1.0, 3.0], "max_hold_bars": [24, 200]}  # SOL picks other params
WINDOWS = {"is_days": 180, "oos_days": 60}
OPTIONS = {**WINDOWS, "sampler": "grid", "bootstrap": 200}
ASSETS = ("BTC", "ETH", "SOL")


def _paths(shared_data):
    return [str(shared_data / "binance" / f"{a}_USDT-1h.parquet") for a in ASSETS]




def _equal(a, b) -> bool:
    """Equal numbers; NaN (None once stored as JSON) equals NaN."""
    def nan(x):
        return x is None or (isinstance(x, float) and math.isnan(x))
    return (nan(a) and nan(b)) or a == b


def test_matrix_equals_separate_walk_forwards_and_transfer_equals_backtests(shared_data, tmp_path):
    paths = _paths(shared_data)
    steps = []
    result = research("bb_atr", paths, SPACE, results_dir=tmp_path, research_id="r1",
                      progress=lambda d, t, p: steps.append((d, t)), **OPTIONS)
    assert result.status == "completed" and len(result.cells) == 3
    assert steps[-1] == (12, 12)  # 3 walk-forwards + 9 transfer backtests
    for path, cell in zip(paths, result.cells):
        df = threadx.load_ohlcv(path)
        wf = threadx.walk_forward(df, "bb_atr", SPACE, sampler="grid", **WINDOWS)
        report = validate_walk_forward(wf, n=200, seed=DEFAULT_SEED, S=16)
        assert cell["grade"] == report.grade.letter and cell["score"] == report.grade.score
        for key, value in (("oos_sharpe", wf.oos_summary["sharpe"]), ("oos_return", wf.oos_summary["total_return"]),
                           ("consistency", wf.consistency), ("efficiency", wf.efficiency),
                           ("trades", wf.oos_summary["n_trades"])):
            assert _equal(cell[key], value), (cell["dataset"], key)
        assert cell["params"] == wf.benchmark_params
        stored, stored_report = load_walk_forward(cell["run_id"], tmp_path)  # the cell opens its full report
        assert json.dumps(stored.oos_summary, default=str) == json.dumps(wf.oos_summary, default=str)
        assert stored_report.grade.letter == report.grade.letter
    assert len({json.dumps(c["params"], sort_keys=True) for c in result.cells}) > 1  # rows must differ
    frames = {c["dataset"]: threadx.load_ohlcv(p) for c, p in zip(result.cells, paths)}
    assert len(result.transfer) == 9
    for row in result.transfer:
        df = frames[row["target"]]
        lo, hi = oos_span(df, result_request(row["target"], paths, result))
        direct = threadx.backtest(df.iloc[lo:hi], "bb_atr", row["params"]).metrics
        for key in ("sharpe", "total_return", "n_trades", "max_drawdown"):
            assert _equal(row[key], direct[key]), (row["source"], row["target"], key)
    for cell in result.cells:
        kept = sum(1 for r in result.transfer if r["source"] == cell["dataset"] and r["target"] != cell["dataset"]
                   and r["total_return"] > 0)
        assert cell["transfer_kept"] == [kept, 2]
    again = load_research("r1", tmp_path)
    assert again.cells == json.loads(json.dumps(result.cells)) and again.matrix("grade").shape == (1, 3)


def result_request(name, paths, result):
    from threadx.requests import WalkForwardRequest

    ref = next(DatasetRef.from_dict(d) for d in result.config["datasets"] if d["name"] == name)
    return WalkForwardRequest(data=ref, strategy="bb_atr", **WINDOWS)


def test_errors_name_the_dataset(shared_data, tmp_path):
    paths = _paths(shared_data)
    with pytest.raises(ThreadXError, match="nope"):
        research("bb_atr", [paths[0], str(tmp_path / "nope.parquet")], SPACE, results_dir=tmp_path, **OPTIONS)
    short = tmp_path / "short.parquet"
    threadx.load_ohlcv(paths[1]).iloc[:3000].to_parquet(short)
    with pytest.raises(ParamError, match="short"):
        research("bb_atr", [paths[0], str(short)], SPACE, results_dir=tmp_path, **OPTIONS)


def test_cancel_stops_before_any_cell(shared_data, tmp_path):
    result = research("bb_atr", _paths(shared_data)[:2], SPACE, results_dir=tmp_path, cancel=lambda: True,
                      **OPTIONS)
    assert result.status == "cancelled" and result.cells == [] and result.transfer == []


def test_cli_research_json_and_one_line_errors(shared_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("THREADX_RESULTS_DIR", str(tmp_path))
    paths = _paths(shared_data)[:2]
    def argv(run):
        return ["research", "--strategy", "bb_atr", "--data", paths[0], "--data", paths[1], "--is-days", "180",
                "--oos-days", "60", "--sampler", "grid", "--bootstrap", "200", "--id", run,
                *[f"--param={k}={','.join(map(str, v))}" for k, v in SPACE.items()]]
    assert main([*argv("cli1"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    api = research("bb_atr", paths, SPACE, results_dir=tmp_path / "api", **OPTIONS)
    for key in ("grade", "score", "oos_sharpe", "consistency", "trades", "params"):
        assert [c[key] for c in out["cells"]] == [c[key] for c in api.cells]
    assert [t["sharpe"] for t in out["transfer"]] == [t["sharpe"] for t in api.transfer]
    assert load_research("cli1", tmp_path).cells == out["cells"]
    assert main(argv("cli2")) == 0  # the human tables
    text = capsys.readouterr().out
    assert "BTC_USDT-1h" in text and "transfer bb_atr" in text and "cli2-c1" in text
    assert main(["research", "--strategy", "bb_atr", "--data", paths[0], "--data", "no_such_set", "--is-days", "180",
                 "--oos-days", "60"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no_such_set" in err[0]


@pytest.mark.parametrize("executor", ["local", "dask"])
def test_executors_give_the_inline_cells(shared_data, tmp_path, executor):
    if executor == "dask":
        pytest.importorskip("dask.distributed")
    paths = _paths(shared_data)[:2]
    inline = research("bb_atr", paths, SPACE, results_dir=tmp_path / "inline", **OPTIONS)
    other = research("bb_atr", paths, SPACE, results_dir=tmp_path / executor, executor=executor, workers=2,
                     **OPTIONS)
    drop = ("run_id",)
    assert [{k: v for k, v in c.items() if k not in drop} for c in other.cells] == \
        [{k: v for k, v in c.items() if k not in drop} for c in inline.cells]
    assert other.transfer == inline.transfer
    assert load_walk_forward(other.cells[1]["run_id"], tmp_path / executor)[1].grade.letter == other.cells[1]["grade"]


def test_research_job_runs_in_the_background_and_stores_the_matrix(shared_data, tmp_path, monkeypatch):
    from threadx.requests import ResearchRequest
    from threadx.ui import jobs as jobs_module
    from threadx.ui.jobs import JobRegistry

    monkeypatch.setenv("THREADX_RESULTS_DIR", str(tmp_path / "results"))
    paths = _paths(shared_data)[:2]
    options = {k: v for k, v in OPTIONS.items()}
    registry = JobRegistry()
    job_id = registry.submit(ResearchRequest(["bb_atr"], paths, SPACE, options, workers=1))
    deadline = time.monotonic() + 120
    try:
        while not (info := registry.get(job_id)).is_finished:
            assert time.monotonic() < deadline, registry.log(job_id)
            registry.refresh()
            time.sleep(0.2)
    finally:
        jobs_module._CHILDREN.clear()
    assert info.state == "completed", registry.log(job_id)
    assert info.run_id.startswith("research-") and (info.done, info.total) == (6, 6)
    assert info.label.startswith("research bb_atr on ")
    stored = load_research(info.run_id, tmp_path / "results")
    api = research("bb_atr", paths, SPACE, results_dir=tmp_path / "api", workers=1, **OPTIONS)
    assert [c["oos_sharpe"] for c in stored.cells] == [c["oos_sharpe"] for c in api.cells]
    assert [t["sharpe"] for t in stored.transfer] == [t["sharpe"] for t in api.transfer]


def test_stop_after_the_first_cell_keeps_the_finished_cells(shared_data, tmp_path):
    seen = []
    result = research("bb_atr", _paths(shared_data), SPACE, results_dir=tmp_path, research_id="stop",
                      progress=lambda d, t, p: seen.append(d), cancel=lambda: bool(seen) and max(seen) >= 1,
                      **OPTIONS)
    assert result.status == "cancelled" and len(result.cells) == 1 and result.transfer == []
    assert load_research("stop", tmp_path).status == "cancelled"
    for cell in result.cells:
        assert load_walk_forward(cell["run_id"], tmp_path)[1].grade.letter == cell["grade"]


def test_a_research_phase_line_gives_the_time_left_of_its_walk_forwards():
    """The research job line said what ran ("walk-forward bb_atr on X: 120/500 combos") but not
    how long the rest would take: its ETA counts each cell as an equal share of the walk-forwards."""
    from types import SimpleNamespace

    from threadx.validation.research import _combo_progress, eta_note

    assert eta_note(10.0, 0.25) == " · ETA 30 s" and eta_note(90.0, 0.9) == " · ETA 10 s"
    assert eta_note(0.4, 0.5) == "" and eta_note(5.0, 0.0) == "" and eta_note(5.0, 1.0) == ""
    seen, fractions = [], []

    def eta(fraction):
        fractions.append(fraction)
        return " · ETA 9 s"

    inner = _combo_progress(lambda d, t, p: seen.append((d, t, p)), [1], 7, "walk-forward bb_atr on X", 4, eta)
    inner(SimpleNamespace(done=150, total=300))
    assert fractions == [(1 + 0.5) / 4]
    assert seen == [(1, 7, "walk-forward bb_atr on X: 150/300 combos · ETA 9 s")]


def _two_asset_research(tmp_path, research_id: str):
    """(the two candle files, the research of ma_crossover on them: a 2-combo grid) in tmp_path."""
    from threadx.data.io import write_ohlcv
    from threadx.data.synthetic import generate_synthetic

    paths = [tmp_path / "AAA_USDT-1h.parquet", tmp_path / "BBB_USDT-1h.parquet"]
    for seed, path in enumerate(paths):
        write_ohlcv(generate_synthetic(path.stem.split("-")[0], days=400, seed=20 + seed), path)
    return paths, research("ma_crossover", [str(p) for p in paths], {"fast_period": [5, 10], "slow_period": [40]},
                           results_dir=tmp_path, research_id=research_id, is_days=120, oos_days=60, sampler="grid",
                           bootstrap=100, S=4)


def test_the_winners_of_a_research_never_run_on_candles_replaced_since(tmp_path):
    """A research recorded its datasets without their fingerprints: after ETH's file was replaced
    by other candles, 'Portfolio from winners' ran the params chosen on the old ones on the new
    ones, without a word (+4.23 % became -0.10 %)."""
    from threadx.data.io import write_ohlcv
    from threadx.data.synthetic import generate_synthetic
    from threadx.errors import DataError
    from threadx.portfolio import portfolio_backtest
    from threadx.portfolio.runners import runners_from_research

    paths, result = _two_asset_research(tmp_path, "fp")
    recorded = {d["name"]: d["fingerprint"] for d in result.config["datasets"]}
    assert all(recorded.values()) and len(set(recorded.values())) == 2
    runners = runners_from_research(result, choice="last_window")
    portfolio_backtest(runners, save=False)  # the candles it chose on: runs
    write_ohlcv(generate_synthetic("BBB_USDT", days=400, seed=99), paths[1])  # replaced by other candles
    with pytest.raises(DataError, match="changed since the run"):
        portfolio_backtest(runners_from_research(load_research("fp", tmp_path), choice="last_window"), save=False)


def test_the_transfer_matrix_keeps_its_in_sample_diagonal_out_of_the_oos_colours():
    """The diagonal (a cell's whole-period winner on its own OOS span: in sample) was coloured on
    the OOS Sharpe scale, marked only "(own)", and set the scale's bound (2.9 here)."""
    import numpy as np

    from threadx.ui.research import transfer_figure
    from threadx.validation.research import ResearchResult

    names = ("BTC", "ETH")
    sharpe = {("BTC", "BTC"): 2.9, ("BTC", "ETH"): -0.4, ("ETH", "BTC"): 0.6, ("ETH", "ETH"): 2.1}
    result = ResearchResult("r", {"strategies": ["bb_atr"], "datasets": [{"name": n} for n in names]}, [],
                            [{"strategy": "bb_atr", "source": s, "target": t, "sharpe": v} for (s, t), v in sharpe.items()])
    oos, own = transfer_figure(result, "bb_atr").data
    assert np.isnan(np.diag(np.asarray(oos.z, dtype=float))).all() and oos.zmax == pytest.approx(0.6)
    assert [[x for x in row] for row in oos.text] == [["", "-0.40"], ["0.60", ""]]
    assert own.showscale is False and np.isnan(own.z[0][1])
    assert [list(row) for row in own.text] == [["2.90<br>own: in sample", ""], ["", "2.10<br>own: in sample"]]
    # with the return stored, it stands beside the Sharpe ("kept" counts positive returns, the colours are Sharpe)
    with_returns = ResearchResult("r", result.config, [], [{**t, "total_return": 0.25 * t["sharpe"] - 0.2}
                                                           for t in result.transfer])
    oos, own = transfer_figure(with_returns, "bb_atr").data
    assert [list(row) for row in oos.text] == [["", "-0.40 · -30.00 %"], ["0.60 · -5.00 %", ""]]
    assert [list(row) for row in own.text] == [["2.90 · 52.50 %<br>own: in sample", ""],
                                               ["", "2.10 · 32.50 %<br>own: in sample"]]


def test_a_cell_with_no_other_asset_traded_reads_no_kept_count():
    """A research stopped before its transfer backtests (or of one dataset) read "kept 0 of 0"."""
    from threadx.ui.research import cells_table, kept_lines
    from threadx.validation.research import ResearchResult

    cell = {"strategy": "bb_atr", "dataset": "BTC", "grade": "C", "oos_sharpe": 0.4, "consistency": 0.6, "trades": 40,
            "run_id": "r-c1", "transfer_kept": [0, 0]}
    stopped = ResearchResult("r", {"strategies": ["bb_atr"], "datasets": [{"name": "BTC"}]}, [cell], [], "cancelled")
    assert list(cells_table(stopped)["kept"]) == [""] and kept_lines(stopped) == []
    own_only = ResearchResult("r", stopped.config, [cell], [{"strategy": "bb_atr", "source": "BTC", "target": "BTC",
                                                           "sharpe": 1.0, "total_return": 0.1}])
    assert kept_lines(own_only) == []


def test_a_strategy_that_fails_is_its_cells_error_and_the_rest_is_kept(strategy_dir, tmp_path, monkeypatch, capsys):
    """One user strategy whose every combo raised failed the whole job ("every combo of the
    walk-forward failed (3)...", naming no strategy nor dataset) and lost the matrix."""
    from threadx.data.io import write_ohlcv
    from threadx.data.synthetic import generate_synthetic
    from threadx.strategy.scaffold import new_strategy_file

    path = new_strategy_file("s_raise")
    path.write_text(path.read_text().replace("    sig = np.zeros(len(rsi), dtype=np.uint8)",
                                             "    sig = np.zeros(len(rsi), dtype=np.uint8)\n    raise KeyError('missing')"))
    data = []
    for k, symbol in enumerate(("AAA_USDT", "BBB_USDT")):
        data.append(tmp_path / f"{symbol}-1h.parquet")
        write_ohlcv(generate_synthetic(symbol, "1h", days=300, seed=k), data[-1])
    result = research(["bb_atr", "s_raise"], [str(p) for p in data],
                      spaces={"bb_atr": {"bb_period": [20, 40]}, "s_raise": {"oversold": [25, 30]}},
                      results_dir=tmp_path / "results", is_days=90, oos_days=30, sampler="grid", bootstrap=100)
    assert result.status == "completed"
    failed = [c for c in result.cells if c.get("error")]
    assert [(c["strategy"], c["dataset"]) for c in failed] == [("s_raise", "AAA_USDT-1h"), ("s_raise", "BBB_USDT-1h")]
    assert "s_raise.py" in failed[0]["error"] and "KeyError: 'missing'" in failed[0]["error"], failed[0]["error"]
    assert all(c.get("grade") for c in result.cells if c["strategy"] == "bb_atr")
    assert {(t["strategy"], t["source"]) for t in result.transfer} == {("bb_atr", "AAA_USDT-1h"), ("bb_atr", "BBB_USDT-1h")}
    assert load_research(result.research_id, tmp_path / "results").cells == json.loads(json.dumps(result.cells))
    argv = ["research", "--strategy", "bb_atr", "--strategy", "s_raise", "--data", str(data[0]), "--is-days", "90",
            "--oos-days", "30", "--n", "3", "--bootstrap", "100", "--id", "cli-failed"]
    monkeypatch.setenv("THREADX_RESULTS_DIR", str(tmp_path / "cli"))
    assert main(argv) == 1  # it exited 0: a script saw a whole matrix
    out, err = capsys.readouterr()
    assert "failed: s_raise on AAA_USDT-1h" in out and "1 cell of 2 failed" in err, (out, err)
    assert main([*argv[:-1], "cli-failed-json", "--json"]) == 1
    assert [c["strategy"] for c in json.loads(capsys.readouterr().out)["cells"] if c.get("error")] == ["s_raise"]
    with pytest.raises(ParamError, match="every cell of the research failed: s_raise on AAA_USDT-1h: .*KeyError"):
        research("s_raise", [str(data[0])], {"oversold": [25, 30]}, results_dir=tmp_path / "results", is_days=90,
                 oos_days=30, sampler="grid", bootstrap=100)



def test_a_research_whose_only_cells_failed_still_shows():
    """Stopped after one failed cell: the matrix raised KeyError 'oos_sharpe' on the page."""
    from threadx.ui.research import cells_table, matrix_figure
    from threadx.validation.research import ResearchResult

    failed = {"strategy": "s_raise", "dataset": "A", "run_id": None, "params": {}, "last_window_params": {},
              "error": "x.py:3: KeyError: 'missing'"}
    result = ResearchResult("r", {"strategies": ["s_raise"], "datasets": [{"name": "A"}]}, [failed], [], "cancelled")
    assert matrix_figure(result).data[0].text[0][0] == "failed"
    assert cells_table(result)["grade"].isna().all()


def test_each_cell_and_transfer_runs_with_its_datasets_funding_file(tmp_path, monkeypatch):
    """A research ran every dataset without its stored funding, where `threadx walkforward` and a
    portfolio of its winners apply it: a cell read -12.70 % where the same walk-forward read
    -27.06 %, and the portfolio then paid funding its params were never chosen under."""
    import pandas as pd

    from threadx.data.funding import stored_funding, write_funding
    from threadx.data.io import write_ohlcv
    from threadx.data.synthetic import generate_synthetic

    monkeypatch.setenv("THREADX_DATA_ROOT", str(tmp_path / "data"))
    frames = {}
    for seed, symbol in enumerate(("AAA_USDT", "BBB_USDT")):
        frames[symbol] = generate_synthetic(symbol, days=300, seed=30 + seed)
        write_ohlcv(frames[symbol], tmp_path / "data" / "test" / f"{symbol}-1h.parquet")
    index = pd.date_range(frames["AAA_USDT"].index[0].floor("8h"), frames["AAA_USDT"].index[-1], freq="8h")
    write_funding(pd.Series(0.002, index=index), tmp_path / "data" / "test" / "AAA_USDT-funding.parquet")
    names = ["test/AAA_USDT-1h", "test/BBB_USDT-1h"]
    space = {"fast_period": [5, 10], "slow_period": [40]}
    options = dict(is_days=90, oos_days=60, sampler="grid", bootstrap=100, S=4, results_dir=tmp_path / "results")
    result = research("ma_crossover", names, space, research_id="funded", **options)
    funded = stored_funding(names[0])
    wf = threadx.walk_forward(frames["AAA_USDT"], "ma_crossover", space, is_days=90, oos_days=60, sampler="grid",
                              funding=funded)
    plain = threadx.walk_forward(frames["AAA_USDT"], "ma_crossover", space, is_days=90, oos_days=60, sampler="grid")
    cell = result.cells[0]
    assert cell["oos_return"] == pytest.approx(wf.oos_summary["total_return"], rel=1e-12)
    assert cell["oos_return"] != pytest.approx(plain.oos_summary["total_return"], rel=1e-6)
    assert result.config["funding"][names[0]].startswith("<Series of ") and result.config["funding"][names[1]] is None
    stored, _ = load_walk_forward(cell["run_id"], tmp_path / "results")
    assert "AAA_USDT-funding.parquet" in stored.config["engine"]["funding"]  # the rates it ran with, not "stored"
    onto_a = next(t for t in result.transfer if t["source"] == names[1] and t["target"] == names[0])
    span = frames["AAA_USDT"].loc[pd.Timestamp(onto_a["start"]):pd.Timestamp(onto_a["end"])]
    backtest = threadx.backtest(span, "ma_crossover", result.cells[1]["params"], funding=funded)
    assert onto_a["total_return"] == backtest.metrics["total_return"] and backtest.metrics["total_funding"] != 0.0
    (tmp_path / "data" / "test" / "BBB_USDT-funding.parquet").write_text("not a funding file")
    with pytest.raises(ThreadXError, match=r"dataset test/BBB_USDT-1h: .*BBB_USDT-funding.parquet"):
        research("ma_crossover", names, space, research_id="damaged", **options)  # before any cell ran
    assert not (tmp_path / "results" / "walkforward" / "damaged-c0").exists()
    without = research("ma_crossover", names, space, research_id="unfunded", funding=None, **options)
    assert without.cells[0]["oos_return"] == pytest.approx(plain.oos_summary["total_return"], rel=1e-12)
    assert without.config["funding"] == {names[0]: None, names[1]: None}
    # the funding file fetched again once the research has read it: its cells refuse the new rows
    # (a cell read the file as it ran, mixing the rates of before and after)
    path = tmp_path / "data" / "test" / "AAA_USDT-funding.parquet"
    (tmp_path / "data" / "test" / "BBB_USDT-funding.parquet").unlink()

    def refetch(done, total, phase):
        if phase == "starting":
            write_funding(pd.Series(0.004, index=index), path)

    mixed = research("ma_crossover", names, space, research_id="refetched", progress=refetch, **options)
    assert "changed since this run" in mixed.cells[0]["error"] and not mixed.cells[1].get("error")


def test_loading_a_researchs_winners_says_why_none_or_which_dataset_cannot_be_checked(tmp_path):
    """--research-strategy of a strategy not in the research and --kept-only with no positive cell
    both said "no cell has chosen params"; a research whose datasets lost their record ran the
    winners on whatever candles the name held, unchecked."""
    import copy

    from threadx.errors import DataError
    from threadx.portfolio.runners import Runner, runners_from_research

    paths, result = _two_asset_research(tmp_path, "why")
    assert len(runners_from_research(result)) == 2
    with pytest.raises(ParamError, match=r"research why has no strategy supertrend \(its strategies: ma_crossover\)"):
        runners_from_research(result, "supertrend")
    losing = copy.deepcopy(result)
    for cell in losing.cells:
        cell["oos_return"] = -0.1
    with pytest.raises(ParamError, match=r"no cell of ma_crossover had a positive OOS return \(2 with chosen params\)"):
        runners_from_research(losing, "ma_crossover", kept_only=True)
    failing = copy.deepcopy(result)
    for cell in failing.cells:
        cell.update(params={}, last_window_params={}, error="ValueError: boom")
    with pytest.raises(ParamError, match=r"every cell of ma_crossover failed \(the first: ValueError: boom\)"):
        runners_from_research(failing, "ma_crossover")
    stopped = copy.deepcopy(result)
    stopped.config["strategies"] = ["ma_crossover", "bb_atr"]  # a research stopped before its bb_atr cells
    with pytest.raises(ParamError, match=r"research why has no finished cell of bb_atr \(it was stopped"):
        runners_from_research(stopped, "bb_atr")
    unrecorded = copy.deepcopy(result)
    unrecorded.config["datasets"] = []
    with pytest.raises(DataError, match="records no fingerprint of dataset AAA_USDT-1h: whether its candles"):
        runners_from_research(unrecorded)
    with pytest.raises(ParamError, match=r"runner ma_crossover:BBB_USDT-1h: weight must be a positive number"):
        Runner("ma_crossover", str(paths[1]), weight=0)


def test_the_same_candles_under_two_names_are_one_dataset(tmp_path):
    """A file and a copy of it made two assets: "kept on 1 of 1" and an OOS transfer Sharpe equal
    to the in-sample diagonal; a portfolio ran the same runner twice."""
    import shutil

    from threadx.data.io import write_ohlcv
    from threadx.data.synthetic import generate_synthetic
    from threadx.portfolio import portfolio_backtest

    path = tmp_path / "AAA_USDT-1h.parquet"
    write_ohlcv(generate_synthetic("AAA_USDT", days=300, seed=40), path)
    copy = tmp_path / "copy" / "AAA_USDT-1h-again.parquet"
    copy.parent.mkdir()
    shutil.copy(path, copy)
    with pytest.raises(ParamError, match=r"datasets AAA_USDT-1h and AAA_USDT-1h-again hold the same candles"):
        research("ma_crossover", [str(path), str(copy)], {"fast_period": [5], "slow_period": [40]},
                 results_dir=tmp_path, research_id="twice", is_days=90, oos_days=60, sampler="grid")
    assert not (tmp_path / "research" / "twice").exists()
    with pytest.raises(ParamError, match=r"runners ma_crossover:AAA_USDT-1h and ma_crossover:AAA_USDT-1h-again run "
                                         r"ma_crossover with the same params on the same candles"):
        portfolio_backtest([f"ma_crossover:{path}", f"ma_crossover:{copy}"], save=False)
    assert len(portfolio_backtest([f"ma_crossover:{path}", f"bb_atr:{copy}"], save=False).runners) == 2


def test_a_transfer_onto_a_cut_of_the_source_market_is_in_sample(tmp_path, monkeypatch, capsys):
    """A later-starting cut of a file was an "other asset": its transfer (Sharpe -3.07, a hostile
    test) counted in "kept 0 of 1" and had no in-sample mark, though the params were chosen on
    those very candles."""
    from threadx.data.io import write_ohlcv
    from threadx.data.synthetic import generate_synthetic
    from threadx.ui.research import transfer_figure

    frame = generate_synthetic("AAA_USDT", days=400, seed=41)
    path, late, other = (tmp_path / "AAA_USDT-1h.parquet", tmp_path / "AAA_USDT-1h-late.parquet",
                         tmp_path / "BBB_USDT-1h.parquet")
    write_ohlcv(frame, path)
    write_ohlcv(frame.iloc[24 * 150:], late)
    write_ohlcv(generate_synthetic("BBB_USDT", days=400, seed=42), other)
    result = research("ma_crossover", [str(path), str(late), str(other)], {"fast_period": [5, 10], "slow_period": [40]},
                      results_dir=tmp_path, research_id="cut", is_days=90, oos_days=60, sampler="grid", bootstrap=100)
    flags = {(t["source"], t["target"]): t["in_sample"] for t in result.transfer}
    names = ("AAA_USDT-1h", "AAA_USDT-1h-late", "BBB_USDT-1h")
    assert {pair for pair, flag in flags.items() if flag} == {(a, a) for a in names} | {
        ("AAA_USDT-1h", "AAA_USDT-1h-late"), ("AAA_USDT-1h-late", "AAA_USDT-1h")}
    # (the late cut's candles are the whole file's from day 150: the whole file's OOS span holds them too)
    assert [c["transfer_kept"][1] for c in result.cells] == [1, 1, 2]  # only the other market counts
    assert load_research("cut", tmp_path).in_sample("ma_crossover") == {p for p, f in flags.items() if f}
    _, own = transfer_figure(result, "ma_crossover").data
    assert "same candles: in sample" in own.text[0][1] and own.text[0][2] == ""
    monkeypatch.setenv("THREADX_RESULTS_DIR", str(tmp_path))
    assert main(["research", "--strategy", "ma_crossover", "--data", str(path), "--data", str(late), "--is-days", "90",
                 "--oos-days", "60", "--sampler", "grid", "--bootstrap", "100", "--id", "cut-cli",
                 "--param=fast_period=5,10", "--param=slow_period=40"]) == 0
    table = capsys.readouterr().out.split("transfer ma_crossover")[1].splitlines()
    rows = [line.split() for line in table if line.startswith("AAA_USDT")]
    assert len(rows) == 2 and all(cell.endswith("*") for row in rows for cell in row[1:]), table


def test_the_last_windows_winner_keeps_its_params_types_when_a_window_had_none():
    """A window without a winner left NaN in the window table, which made the stored last-window
    params floats ("fast_period": 5.0) for a portfolio of the research's winners."""
    import types

    import numpy as np
    import pandas as pd

    from threadx.validation.research import _last_winner

    combos = pd.DataFrame({"combo_id": [0, 1, 2], "fast_period": [5, 10, 15], "slow_period": [40, 40, 60],
                           "allow_short": [False, True, False]})
    table = pd.DataFrame({"window": [0, 1, 2], "combo_id": [2.0, np.nan, 1.0]})
    params = _last_winner(types.SimpleNamespace(table=table, combos=combos))
    assert params == {"fast_period": 10, "slow_period": 40, "allow_short": True}
    assert [type(v) for v in params.values()] == [int, int, bool]
    assert _last_winner(types.SimpleNamespace(table=table.iloc[1:2], combos=combos)) == {}


def test_a_lost_cluster_is_one_error_saying_the_id_runs_the_rest():
    """`threadx research --executor dask` whose scheduler stopped ended in three tracebacks
    (FutureCancelledError: scheduler-connection-lost)."""
    from concurrent.futures import Future

    from threadx.errors import ThreadXError
    from threadx.validation.research import _cell_of

    class FutureCancelledError(Exception):  # (distributed's, by name: the machinery's)
        pass

    lost = Future()
    lost.set_exception(FutureCancelledError("run_cell-1 cancelled for reason: scheduler-connection-lost."))
    with pytest.raises(ThreadXError, match=r"the workers running the research were lost \(FutureCancelledError: "
                                           r"run_cell-1 .*run the same research id again"):
        _cell_of(lost, None)
    own = Future()
    own.set_exception(ZeroDivisionError("a bug"))
    with pytest.raises(ZeroDivisionError):  # not the machinery's: as it was
        _cell_of(own, None)


def test_a_transfer_onto_the_same_market_at_another_timeframe_over_its_dates_is_in_sample(tmp_path):
    """BTC 2h, 4h, 1d and 5h over the same months were "other assets": the 2h cell read "kept 2 of
    3" on transfers of params fitted on the same price path (a hostile test). Another symbol, and
    the same symbol over other dates, stay out of sample."""
    import pandas as pd

    from threadx.data.io import write_ohlcv
    from threadx.data.resample import resample_ohlcv
    from threadx.data.synthetic import generate_synthetic

    frame = generate_synthetic("AAA_USDT", days=400, seed=41)
    later = generate_synthetic("AAA_USDT", days=400, seed=43)
    later.index = later.index + pd.Timedelta(days=800)  # the same symbol, other dates
    files = {"AAA_USDT-1h": frame, "AAA_USDC-4h": resample_ohlcv(frame, "4h"), "AAA_USDT-1h-later": later,
             "BBB_USDT-1h": generate_synthetic("BBB_USDT", days=400, seed=42)}  # (USDT and USDC: one dollar)
    for name, df in files.items():
        write_ohlcv(df, tmp_path / f"{name}.parquet")
    result = research("ma_crossover", [str(tmp_path / f"{n}.parquet") for n in files],
                      {"fast_period": [5, 10], "slow_period": [40]}, results_dir=tmp_path, research_id="tf",
                      is_days=90, oos_days=60, sampler="grid", bootstrap=100)
    in_sample = {(t["source"], t["target"]) for t in result.transfer if t["in_sample"]}
    assert in_sample == {(n, n) for n in files} | {("AAA_USDT-1h", "AAA_USDC-4h"), ("AAA_USDC-4h", "AAA_USDT-1h")}
