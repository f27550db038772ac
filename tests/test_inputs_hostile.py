"""Hostile arguments to the public API and the CLI: each is refused before any work with one
ThreadX error (ParamError / DataError; the CLI: one `error:` line, exit 2), never a raw
Python exception, a crash after the work or a silently wrong figure."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import threadx
from threadx.cli import main
from threadx.data.synthetic import generate_synthetic
from threadx.errors import DataError, ParamError, ThreadXError


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return generate_synthetic("BTC_USDT", "1h").iloc[:1500]


def test_a_timeframe_tag_the_bars_contradict_is_refused(df):
    """pandas keeps ``attrs`` through resample: daily bars still tagged 1h were annualised as
    hourly ones (a CAGR of -99.8 % for -22.4 %)."""
    daily = df.resample("1D").agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
    assert daily.attrs["timeframe"] == "1h"
    with pytest.raises(DataError, match=r"the bars are mostly 1d apart, not 1h as the frame's attrs"):
        threadx.backtest(daily, "ma_crossover")
    with pytest.raises(DataError, match=r"mostly 1d apart, not 1h as the timeframe given says"):
        threadx.data.bars.Bars.from_frame(daily, timeframe="1h")  # (an explicit timeframe is checked too)
    daily.attrs = {}
    assert threadx.backtest(daily, "ma_crossover").meta["timeframe"] == "1d"


def test_impossible_candles_are_refused(df):
    bad = df.copy()
    bad.iloc[100, bad.columns.get_loc("open")] = 2 * bad["high"].iloc[100]
    with pytest.raises(DataError, match=r"1 bar\(s\) with high < max\(open, close\) or low > min\(open, close\), "
                                        r"first at 2023-01-05 04:00"):
        threadx.backtest(bad, "ma_crossover")


def test_a_column_given_twice_is_refused(df):
    with pytest.raises(DataError, match=r"\['close'\] more than once"):
        threadx.backtest(pd.concat([df, df[["close"]]], axis=1), "ma_crossover")


@pytest.mark.parametrize("options, match", [
    ({"initial_capital": "abc"}, "initial_capital must be a number, got 'abc'"),
    ({"initial_capital": "1000"}, "initial_capital must be a number"),
    ({"initial_capital": 10**400}, "initial_capital is too large for a float"),
    ({"initial_capital": 1e307}, r"initial_capital must be at most 1,000,000,000,000,000, got 1e\+307"),
    ({"leverage": 5000.0}, "leverage must be from 1 to 1000"),
    ({"fee_bps": True}, "fee_bps must be a number"),
    ({"funding": float("nan")}, "funding must be a number"),
    ({"funding": float("inf")}, "funding is too large|below 0.1 in size"),
    ({"funding": 1e300}, "below 0.1 in size"),
    ({"funding": {"a": 1}}, "funding must be a rate per 8h settlement"),
    ({"min_notional": float("inf")}, "min_notional must be a finite number >= 0"),  # was: every order refused
])
def test_engine_options_of_the_wrong_kind_or_size(df, options, match):
    with pytest.raises(ParamError, match=match):
        threadx.backtest(df, "ma_crossover", **options)


def test_funding_arrays_with_an_infinite_rate_are_refused_and_nan_means_no_settlement(df):
    rates = np.zeros(len(df))
    rates[700] = -np.inf
    with pytest.raises(ParamError, match="below 0.1 in size"):
        threadx.backtest(df, "ma_crossover", funding=rates)
    rates[700] = np.nan
    with_nan = threadx.backtest(df, "ma_crossover", funding=rates)
    assert with_nan.metrics["total_funding"] == 0.0
    assert with_nan.metrics["final_equity"] == threadx.backtest(df, "ma_crossover").metrics["final_equity"]


def test_the_sweep_refuses_what_the_backtest_refuses(df, tmp_path):
    with pytest.raises(ParamError, match="initial_capital must be a number"):
        threadx.sweep(df, "ma_crossover", {"fast_period": [5, 6]}, executor="inline", store=tmp_path,
                      initial_capital="1000")


@pytest.mark.parametrize("params, match", [
    ({"fast_period": 10**400}, "fast_period is too large for a float"),
    ("fast_period=20", "params must be a dict of name -> value, got str"),
])
def test_params_of_the_wrong_kind(df, params, match):
    with pytest.raises(ParamError, match=match):
        threadx.backtest(df, "ma_crossover", params)


def test_params_may_be_a_series(df):
    as_dict = threadx.backtest(df, "ma_crossover", {"fast_period": 5, "slow_period": 40})
    as_series = threadx.backtest(df, "ma_crossover", pd.Series({"fast_period": 5, "slow_period": 40}))
    assert as_series.metrics == as_dict.metrics


def test_validation_arguments_are_checked_before_any_work(df, tmp_path):
    result = threadx.backtest(df, "ma_crossover")
    with pytest.raises(ParamError, match="seed must be a whole number >= 0"):
        threadx.bootstrap(result, n=100, seed=-1)
    with pytest.raises(ParamError, match=r"n must be a whole number >= 100 and <= 1,000,000"):
        threadx.bootstrap(result, n=10**13)
    with pytest.raises(ParamError, match="n_blocks must be a whole number >= 1, got 0"):
        threadx.walk_forward(df, "ma_crossover", {"fast_period": [5, 10], "slow_period": [20, 30]}, is_bars=600,
                             oos_bars=300, sampler="grid", workers=1, n_blocks=0)
    with pytest.raises(ParamError, match="max_combos must be a whole number >= 2, got 0"):
        threadx.pbo("no-such-run", store=tmp_path, max_combos=0)  # refused before the run is looked up


@pytest.mark.parametrize("argv", [["backtest", "--strategy", "ma_crossover", "--trades", "-3"],
                                  ["sweep", "--strategy", "ma_crossover", "--top", "-1"]])
def test_cli_row_counts_must_be_whole_numbers(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "must be a whole number >= 0" in err and "Traceback" not in err


@pytest.mark.parametrize("leverage", [5000.0, 0.5, float("inf"), float("nan")])
def test_a_strategys_own_leverage_is_checked_like_the_options(df, tmp_path, leverage):
    """Checked where it enters the param vector (once per distinct value in a sweep's plan)."""
    import dataclasses

    from threadx.contract import ExitRules
    from threadx.strategy.base import get_strategy, register

    spec = get_strategy("ma_crossover")
    name = f"test_own_leverage_{len(str(leverage))}_{str(leverage).replace('.', '_')}"
    register(dataclasses.replace(spec, name=name, exits=lambda p: ExitRules(leverage=leverage)))
    with pytest.raises(ParamError, match="the exit rules' leverage must be from 1 to 1000"):
        threadx.backtest(df, name)
    run = threadx.sweep(df, name, {"fast_period": [5, 6]}, executor="inline", store=tmp_path)
    assert set(run.results["error"]) == {f"ParamError: the exit rules' leverage must be from 1 to 1000, got {leverage!r}"}


@pytest.mark.parametrize("rules, match", [
    (dict(stop_pct=-0.02), r"stop_pct must be a finite number >= 0 \(0 = off\), got -0.02"),  # was: no stop
    (dict(tp_pct=float("inf")), r"tp_pct must be a finite number >= 0 \(0 = off\), got inf"),
    (dict(max_hold_bars=-5), r"max_hold_bars must be a finite number >= 0 \(0 = off\), got -5"),
    (dict(trail_pct="2%"), r"trail_pct must be a number, got '2%'"),
    (dict(sizing="Risk"), r"sizing must be one of all_in, fraction, risk, got 'Risk'"),  # was: KeyError
    (dict(trail="ATR"), r"trail must be one of none, atr, pct, band, got 'ATR'"),
    # units mistaken: ran silently (a 2.7-bar hold read as 3, a long's stop below zero never hit, 500 % risked)
    (dict(max_hold_bars=2.7), r"max_hold_bars must be a whole number \(0 = off\), got 2.7"),
    (dict(stop_pct=1.5), r"stop_pct must be a fraction of the entry price below 1: 0.02 = 2 %, got 1.5"),
    (dict(trail="pct", trail_pct=1.0), r"trail_pct must be a fraction of the best price below 1: 0.02 = 2 %, got 1.0"),
    (dict(trail="band", trail_band_pct=80.0),
     r"trail_band_pct must be a fraction of the way from the band edge \(0\) to the middle band \(1\), got 80.0"),
    (dict(stop_atr=2.0, sizing="risk", risk_per_trade=5.0),
     r"risk_per_trade must be a fraction of equity up to 1: 0.01 = 1 %, got 5.0"),
    # a negative stop with risk sizing read "needs a stop: set a stop-loss param" (one was set)
    (dict(stop_atr=-2.0, sizing="risk", risk_per_trade=0.01), r"stop_atr must be a finite number >= 0 \(0 = off\), got -2.0"),
    # several-position fields of the wrong type were TypeErrors from the comparisons that check them
    (dict(reduce_fraction="0.5"), r"reduce_fraction must be a number, got '0.5'"),
    (dict(max_legs=2, add_scale=None), r"add_scale must be a number, got None"),
    (dict(stop_band="0.5"), r"stop_band must be a number, got '0.5'"),
    (dict(grid_levels=2, grid_pct=np.array([[0.01, 0.02]])),
     r"grid_pct must be a tuple of numbers \(one per level\)"),
    (dict(grid_pct="abc"), r"grid_pct must be a tuple of numbers"),  # no grid: a ValueError from the vector
    (dict(grid_levels=1, grid_pct=("0.01",)), r"grid_pct must be a tuple of numbers"),
    (dict(grid_levels=1, grid_pct=0.01), r"grid_pct must be a tuple of numbers"),
    (dict(leverage=None), r"leverage must be from 1 to 1000, got None"),
    (dict(target_mid="no"), r"target_mid must be True or False, got 'no'"),  # was on
])
def test_exit_rules_that_are_out_of_range_or_misspelt_are_refused(df, tmp_path, rules, match):
    """Checked where they enter the param vector, as the leverage is: a negative or NaN stop
    turned the stop off without a word, a misspelt mode was a KeyError traceback."""
    import dataclasses

    from threadx.contract import ExitRules
    from threadx.strategy.base import get_strategy, register

    name = f"test_rules_{'_'.join(rules)}_{abs(hash(repr(rules))) % 10**6}"
    register(dataclasses.replace(get_strategy("ma_crossover"), name=name, exits=lambda p: ExitRules(**rules)))
    with pytest.raises(ParamError, match=f"the exit rules' {match}"):
        threadx.backtest(df, name)
    run = threadx.sweep(df, name, {"fast_period": [5, 6]}, executor="inline", store=tmp_path)
    assert (run.results["status"] == "failed").all() and run.results["error"].str.contains("the exit rules'").all()


def test_grid_offsets_in_a_list_or_an_array_are_that_tuple_and_a_switch_of_none_is_off(df):
    import dataclasses

    from threadx.contract import ExitRules, Levels
    from threadx.strategy.base import get_strategy, register

    base = get_strategy("ma_crossover")
    results = []
    for name, rules in (("tuple", ExitRules(grid_levels=2, grid_pct=(0.01, 0.02), target_mid=False)),
                        ("list", ExitRules(grid_levels=2, grid_pct=[0.01, 0.02], target_mid=None)),
                        ("array", ExitRules(grid_levels=2, grid_pct=np.array([0.01, 0.02]), target_mid=None))):
        register(dataclasses.replace(base, name=f"test_offsets_{name}", exits=lambda p, rules=rules: rules,
                                     levels=lambda ind, p: Levels(band_mid=ind["slow"]["value"])))
        results.append(threadx.backtest(df, f"test_offsets_{name}"))
    assert results[0].metrics["n_trades"] > 0
    assert all(pd.Series(r.metrics).equals(pd.Series(results[0].metrics)) for r in results[1:])


def test_a_switch_is_no_grid_level_count(df):
    """grid_levels=True ran one level (a bool is an int to Python)."""
    import dataclasses

    from threadx.contract import ExitRules
    from threadx.strategy.base import get_strategy, register

    register(dataclasses.replace(get_strategy("ma_crossover"), name="test_grid_levels_true",
                                 exits=lambda p: ExitRules(grid_levels=True, grid_pct=(0.01,))))
    with pytest.raises(ParamError, match="grid_levels must be a whole number from 0 to 6, got True"):
        threadx.backtest(df, "test_grid_levels_true")


@pytest.mark.parametrize("needs, match", [
    ({"rsi": ("rsi", {"period": -3})}, r"indicators\(\) of test_needs_0 asks 'rsi' = rsi\(\{'period': -3\}\): "
                                       r"rsi.period must be >= 1, got -3"),
    ({"rsi": ("rsii", {"period": 14})}, r"indicators\(\) of test_needs_1 asks 'rsi' = rsii\(\{'period': 14\}\): "
                                        r"unknown indicator 'rsii'"),
    ({"rsi": "rsi"}, r"indicators\(\) of test_needs_2 must map each label to \(indicator name, params\), got "
                     r"'rsi': 'rsi'"),
    (None, r"indicators\(\) of test_needs_3 must return a dict of label -> \(indicator name, params\), got NoneType"),
])
def test_indicator_requests_that_fail_name_the_strategy_and_the_request(df, tmp_path, needs, match):
    """The indicator's words alone ("rsi.period must be >= 1, got -3"), or a TypeError on unpacking,
    named neither the strategy nor the request that led to them."""
    import dataclasses

    from threadx.strategy.base import get_strategy, register

    name = re.search(r"of (test_needs_\d)", match).group(1)
    register(dataclasses.replace(get_strategy("ma_crossover"), name=name, indicators=lambda p: needs,
                                 signal_rule=None))
    with pytest.raises(ParamError, match=match):
        threadx.backtest(df, name)
    run = threadx.sweep(df, name, {"fast_period": [5, 6]}, executor="inline", store=tmp_path)
    assert run.results["error"].str.contains(match).all(), set(run.results["error"])


def test_exits_that_return_no_rules_are_refused(df, tmp_path):
    """``exits`` returning None was an AttributeError on 'max_legs', the function not named."""
    import dataclasses

    from threadx.strategy.base import get_strategy, register

    register(dataclasses.replace(get_strategy("ma_crossover"), name="test_exits_none", exits=lambda p: None))
    words = r"exits\(\) must return ExitRules\(...\) \(threadx.strategy.ExitRules\), got NoneType"
    with pytest.raises(ParamError, match=words):
        threadx.backtest(df, "test_exits_none")
    run = threadx.sweep(df, "test_exits_none", {"fast_period": [5, 6]}, executor="inline", store=tmp_path)
    assert run.results["error"].str.contains(words).all()


@pytest.mark.parametrize("levels, match", [
    (None, r"\.levels must return Levels\(...\) \(threadx.strategy.Levels, its lines None or one number per "
           r"bar\), got NoneType"),
    ({"atr": 1.0}, r"\.levels must return Levels\(...\) .*, got dict"),
    ("close", r"\.levels: its atr line must be an array of numbers, got str"),
    ("short", r"\.levels: its atr line has shape \(10,\), expected one value per bar \(1,500,\)"),
])
def test_levels_that_are_not_lines_are_refused_by_name_and_a_sweep_stores_why(df, tmp_path, levels, match):
    """A dict or None from levels() was an AttributeError out of a sweep's role check (a
    traceback from `threadx sweep`), and a line of the wrong length named neither the strategy
    nor levels()."""
    import dataclasses

    from threadx.contract import ExitRules, Levels
    from threadx.strategy.base import get_strategy, register

    def made(ind, p):
        if levels is None or isinstance(levels, dict):
            return levels
        return Levels(atr=np.ones(10) if levels == "short" else levels)

    name = f"test_levels_{type(levels).__name__}_{levels if isinstance(levels, str) else ''}"
    register(dataclasses.replace(get_strategy("ma_crossover"), name=name, exits=lambda p: ExitRules(stop_atr=2.0),
                                 levels=made))
    with pytest.raises(ParamError, match=name + match):
        threadx.backtest(df, name)
    run = threadx.sweep(df, name, {"fast_period": [5, 6]}, executor="inline", store=tmp_path)
    assert run.results["error"].str.contains(match).all(), set(run.results["error"])


def test_a_level_line_given_as_a_list_runs_in_a_sweep_as_in_a_backtest(df, tmp_path):
    """Levels(atr=<a list>) ran in a backtest and was an AttributeError ('list' object has no
    attribute 'shape') in a sweep's role check."""
    import dataclasses

    from threadx.contract import ExitRules, Levels
    from threadx.strategy.base import get_strategy, register

    name = "test_levels_list"
    register(dataclasses.replace(get_strategy("ma_crossover"), name=name, exits=lambda p: ExitRules(stop_atr=2.0),
                                 levels=lambda ind, p: Levels(atr=[float(x) for x in df["close"] * 0.01])))
    run = threadx.sweep(df, name, {"fast_period": [5, 6]}, executor="inline", store=tmp_path)
    for _, row in run.results.iterrows():
        single = threadx.backtest(df, name, params={"fast_period": int(row["fast_period"])}).metrics
        assert row["status"] == "ok" and row["sharpe"] == single["sharpe"] and row["n_trades"] == single["n_trades"]


@pytest.mark.parametrize("n", [0, 1])
def test_fewer_than_two_bars_are_refused_before_strategy_code_runs(df, tmp_path, n):
    """The template's signals raised IndexError inside the user's file on 0 bars, and a sweep
    completed with every combo failed."""
    import dataclasses

    from threadx.strategy.base import get_strategy, register

    def signals(bars, ind, p):
        raise AssertionError("strategy code ran on too few bars")

    name = f"test_few_bars_{n}"
    register(dataclasses.replace(get_strategy("ma_crossover"), name=name, signals=signals, signal_rule=None))
    with pytest.raises(DataError, match=f"need at least 2 bars to backtest, got {n}"):
        threadx.backtest(df.iloc[:n], name)
    with pytest.raises(DataError, match=f"need at least 2 bars to backtest, got {n}"):
        threadx.sweep(df.iloc[:n], name, {"fast_period": [5, 6]}, executor="inline", store=tmp_path)
    assert not any(tmp_path.iterdir())  # refused before any run folder


@pytest.mark.parametrize("funding", [["0.0001"] * 1500, np.array([True] * 1500), np.bool_(True)])
def test_funding_rates_that_are_text_or_switches_are_refused(df, funding):
    with pytest.raises(ParamError, match="funding"):
        threadx.backtest(df, "ma_crossover", funding=funding)


def test_a_numpy_funding_rate_is_the_same_rate(df):
    plain = threadx.backtest(df, "ma_crossover", funding=0.0001).metrics
    assert threadx.backtest(df, "ma_crossover", funding=np.float64(0.0001)).metrics == plain
    assert threadx.backtest(df, "ma_crossover", funding=np.array(0.0001)).metrics == plain


def test_a_switch_is_not_a_number_param(df):
    with pytest.raises(ParamError, match="stop_loss_pct must be a number, got True"):
        threadx.backtest(df, "ma_crossover", {"stop_loss_pct": True})


def test_a_sweep_drawn_with_a_numpy_n_resumes(df, tmp_path):
    first = threadx.sweep(df, "ma_crossover", {"fast_period": "5:30:1"}, sampler="random", n=np.int64(4),
                          executor="inline", store=tmp_path, run_id="np")
    assert first.manifest["n"] == 4
    again = threadx.sweep(df, "ma_crossover", {"fast_period": "5:30:1"}, sampler="random", n=np.int64(4),
                          executor="inline", store=tmp_path, run_id="np")
    assert len(again.results) == 4


def test_walk_forward_keeps_int_params_ints(df):
    """A row of a frame of int and float columns is all floats: envelope_dca's num_levels reached
    range() as 5.0 and the walk-forward crashed after its work."""
    wf = threadx.walk_forward(df, "envelope_dca", sampler="random", n=6, is_bars=700, oos_bars=400, workers=1)
    assert isinstance(wf.benchmark_params["num_levels"], int) and isinstance(wf.benchmark_params["ma_period"], int)


@pytest.mark.parametrize("kw, match", [
    ({"workers": -1}, "workers must be a whole number >= 1, got -1"),
    ({"is_days": 1e308, "is_bars": None}, "is_days must be > 0 and at most 36,500"),
])
def test_walk_forward_arguments_are_checked_first(df, kw, match):
    args = {"is_bars": 700, "oos_bars": 400, "n": 4, **kw}
    with pytest.raises(ParamError, match=match):
        threadx.walk_forward(df, "ma_crossover", **{k: v for k, v in args.items() if v is not None})


def test_an_odd_S_is_refused_before_the_work(df, tmp_path, capsys):
    with pytest.raises(ParamError, match="S must be an even number >= 2"):
        threadx.validate("no-such-run", store=tmp_path, S=15)  # refused before the run is looked up
    assert main(["walkforward", "--strategy", "ma_crossover", "--is-bars", "700", "--oos-bars", "400", "--S", "7"]) == 2
    assert capsys.readouterr().err.strip() == "error: --S must be an even number >= 2 (the paper suggests 16), got 7"


def test_research_refuses_a_strategy_given_twice_and_an_id_in_use(tmp_path):
    from threadx.validation.research import research, research_root

    with pytest.raises(ParamError, match="a strategy is given twice: ma_crossover"):
        research(["ma_crossover", "ma_crossover"], ["sample:BTC_USDT-1h"], results_dir=tmp_path, is_bars=700,
                 oos_bars=400)
    (research_root(tmp_path) / "mine").mkdir(parents=True)
    with pytest.raises(ThreadXError, match="research 'mine' is already stored"):
        research(["ma_crossover"], ["sample:BTC_USDT-1h"], results_dir=tmp_path, research_id="mine", is_bars=700,
                 oos_bars=400)


def test_a_strategy_check_on_a_span_without_a_signal_is_no_pass(df):
    from threadx.checks.strategy import check_strategy

    report = check_strategy(threadx.get_strategy("ma_crossover"), df.iloc[:24], combos=1, checks=("lookahead",))
    assert not report.passed and "not shown: no param set gave a signal or a trade" in report.results[0].summary
    assert report.results[0].status == "NOT CHECKED" and report.verdict == "NOT CHECKED (lookahead)"
    assert not report.failed and type(report).from_dict(report.to_dict()).verdict == "NOT CHECKED (lookahead)"
    with pytest.raises(ParamError, match="combos must be a whole number >= 1"):
        check_strategy(threadx.get_strategy("ma_crossover"), df, combos=0)


def test_the_strategies_page_reads_a_check_that_could_not_look_as_not_checked(df):
    from threadx.checks.strategy import check_strategy
    from threadx.ui import strategies as logic

    spec = threadx.get_strategy("ma_crossover")
    short = check_strategy(spec, df.iloc[:24], combos=1, checks=("lookahead", "determinism")).to_dict()
    assert logic.report_verdict(short) == logic.NOT_CHECKED
    assert [r["status"] for r in logic.report_results(short)] == ["NOT CHECKED", "PASS"]
    full = check_strategy(spec, df, combos=1, checks=("lookahead",)).to_dict()
    assert logic.report_verdict(full) == logic.PASS


@pytest.mark.parametrize("address", ["not-an-address", "tcp://", "http://127.0.0.1:8786"])
def test_a_malformed_scheduler_address_is_refused_before_any_work(df, tmp_path, address):
    with pytest.raises(ParamError, match="scheduler must be a Dask scheduler address"):
        threadx.sweep(df, "ma_crossover", {"fast_period": [5, 6]}, executor="dask", scheduler=address, store=tmp_path)
    assert not any(tmp_path.iterdir())  # no run folder left behind


def test_a_listener_that_never_answers_is_reported_within_the_connect_timeout(monkeypatch):
    """Client's own timeout does not cover a socket that accepts and never answers the handshake
    (an HTTP server on that port): the sweep waited for ever."""
    import socket
    import time

    from threadx.optimize import dask_executor

    monkeypatch.setattr(dask_executor, "CONNECT_TIMEOUT_S", 1)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        started = time.perf_counter()
        with pytest.raises(ThreadXError, match="no Dask scheduler answers at tcp://127.0.0.1:"):
            dask_executor.connect(f"tcp://127.0.0.1:{silent.getsockname()[1]}")
        assert time.perf_counter() - started < 10
    finally:
        silent.close()


def test_a_service_that_answers_but_is_no_scheduler_is_said_so():
    """A banner service at the address failed at once, yet read "no Dask scheduler answers ... within
    10 s (MemoryError: Unable to allocate 2.82 EiB ...)"."""
    import socket
    import threading

    from threadx.optimize import dask_executor

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def banner() -> None:
        try:
            conn, _ = server.accept()
            conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n" * 64)
            conn.recv(1024)
            conn.close()
        except OSError:
            pass

    threading.Thread(target=banner, daemon=True).start()
    try:
        with pytest.raises(ThreadXError, match=r"something at tcp://127.0.0.1:\d+ answered but is not a Dask "
                                               r"scheduler \(a worker's port, or another service\?\)"):
            dask_executor.connect(f"tcp://127.0.0.1:{server.getsockname()[1]}")
    finally:
        server.close()


def test_output_piped_into_a_reader_that_stops_is_no_error():
    """`threadx strategies | head -1` printed "error: [Errno 32] Broken pipe" and logged a failure."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "threadx.cli", "strategies"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader leaves (as head does after its lines) before the command writes
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and "Broken pipe" not in err and "Traceback" not in err, err


def test_exits_that_edit_their_params_change_no_callers(df, tmp_path):
    """exits() got the caller's dict in the sweep's evaluator, the portfolio, the validation
    report and the checks: an edit there leaked into what they reported or ran next."""
    import dataclasses

    from threadx.engine.inputs import EngineOptions, strategy_rules
    from threadx.strategy.base import get_strategy, register

    spec = get_strategy("ma_crossover")

    def editing_exits(p):
        rules = spec.exits(p)
        p["fast_period"] = -1  # an edit the caller must never see
        return rules

    register(dataclasses.replace(spec, name="test_editing_exits", exits=editing_exits))
    params = get_strategy("test_editing_exits").normalize({"fast_period": 7, "slow_period": 30})
    strategy_rules(get_strategy("test_editing_exits"), params, EngineOptions.builtin().validated())
    assert params["fast_period"] == 7
    result = threadx.backtest(df, "test_editing_exits", {"fast_period": 7, "slow_period": 30})
    assert result.params["fast_period"] == 7
    run = threadx.sweep(df, "test_editing_exits", {"fast_period": [5, 7]}, executor="inline", store=tmp_path)
    assert sorted(run.results["fast_period"]) == [5, 7]


def test_a_line_the_exit_rules_need_and_levels_does_not_give_names_levels(df):
    import dataclasses

    from threadx.contract import ExitRules
    from threadx.strategy.base import get_strategy, no_levels, register

    register(dataclasses.replace(get_strategy("ma_crossover"), name="test_levels_missing_atr",
                                 exits=lambda p: ExitRules(stop_atr=2.0), levels=no_levels))
    with pytest.raises(ParamError, match=r"the exit rules need the ATR line, which the strategy's levels\(\) does not "
                                         r"give \(Levels\(atr=...\)\)"):
        threadx.backtest(df, "test_levels_missing_atr")
