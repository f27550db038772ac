"""The Portfolio page under Streamlit's AppTest, on the synthetic sample: the empty state, no
runners (one warning), a two-runner portfolio job to its metrics, charts and tables, a stored
portfolio opened from the history, the Research page's "Portfolio from winners" handoff; and
the portfolio job itself (request round trip, progress counting runners, Stop)."""
from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from apptest_helpers import ROOT, charts, in_order, open_page, run_until, texts  # noqa: E402

SAMPLE = "synthetic/BTC_USDT-1h"


def second_asset(workspace) -> str:
    """A second synthetic asset in the data root; its dataset name."""
    from threadx.data.io import write_ohlcv
    from threadx.data.synthetic import ensure_sample, generate_synthetic

    ensure_sample()
    write_ohlcv(generate_synthetic("XYZ_USDT", days=400, seed=11), workspace / "data" / "test" / "XYZ_USDT-1h.parquet")
    return "test/XYZ_USDT-1h"


def metric_labels(at: AppTest) -> set[str]:
    return {m.label for m in at.metric}


def test_a_link_naming_a_strategy_and_dataset_starts_the_runner_form_on_them(workspace):
    """``?strategy=`` and ``?dataset=`` (a link, another page's pick) were ignored: bb_atr on the
    first dataset."""
    other = second_asset(workspace)
    at = AppTest.from_file(str(ROOT / "views" / "8_Portfolio.py"), default_timeout=60)
    at.query_params["strategy"], at.query_params["dataset"] = "supertrend", other
    at.run()
    assert not at.exception and not at.warning, (at.exception, at.warning)
    assert at.selectbox(key="pf_strategy").value == "supertrend" and at.selectbox(key="pf_dataset").value == other
    assert open_page("8_Portfolio.py").selectbox(key="pf_strategy").value == "bb_atr"  # no link: as before


def test_empty_state_says_what_to_do_and_no_runner_is_one_warning():
    at = open_page("8_Portfolio.py")
    assert at.title[0].value == "Portfolio"
    assert "No runner yet" in texts(at.info)
    assert not at.warning and not at.error
    assert at.checkbox(key="pf_funding").value is True  # stored funding files, like the CLI
    assert at.number_input(key="pf_guard").value == 0.0  # gates off by default
    at.button(key="pf_launch").click().run()
    assert not at.exception, at.exception
    assert len(at.warning) == 1 and "add at least one runner" in at.warning[0].value
    assert not at.error and "pf_job" not in at.session_state


@pytest.mark.parametrize("page, param, what", [("8_Portfolio.py", "portfolio", "portfolio"),
                                               ("7_Research.py", "research", "research")])
def test_a_link_to_a_result_where_none_is_stored_is_said_and_dropped(page, param, what):
    """`?portfolio=nope` on a page with nothing stored was left in the URL without a word (with
    something stored, the page said so and showed the newest)."""
    at = open_page(page, **{param: "nope"})
    assert [w.value for w in at.warning] == [f"The link names {what} **nope**, which is not stored (deleted?), and "
                                             f"no {what} is stored yet."]
    order = in_order(at)  # under the title (it sat below the whole launch form)
    assert [kind for kind, _ in order if kind in ("title", "warning")][:2] == ["title", "warning"], order[:4]
    assert order.index(next(e for e in order if e[0] == "warning")) < 3, order[:4]
    assert param not in at.query_params
    at.run()
    assert not at.warning  # said once


def test_a_bad_duration_is_refused_in_one_line():
    at = open_page("8_Portfolio.py")
    at.button(key="pf_add").click().run()
    at.text_input(key="pf_window").input("soon").run()
    at.button(key="pf_launch").click().run()
    assert not at.exception, at.exception
    assert len(at.error) == 1 and "kill_window must be a duration" in at.error[0].value


def test_the_same_strategy_and_dataset_with_other_params_is_a_second_runner():
    """Other params: a runner of its own, named ``#2`` as the portfolio names it; the same params
    again: the runner is replaced (its new weight); Remove takes the row picked, by position."""
    at = open_page("8_Portfolio.py")
    at.button(key="pf_add").click().run()  # bb_atr on the sample, defaults
    at.checkbox(key="pf_custom").check().run()
    at.number_input(key="pf:bb_atr:bb_period").set_value(30).run()
    at.button(key="pf_add").click().run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])

    def table():
        return next(df for df in at.dataframe if "runner" in df.value.columns).value

    assert list(table()["runner"]) == [f"bb_atr:{SAMPLE}", f"bb_atr:{SAMPLE} #2"]
    assert "bb_period=30" in table()["params"].iloc[1]
    assert (f"Added as bb_atr:{SAMPLE} #2: bb_atr:{SAMPLE} is already in the list with other params (each runs "
            "as a runner of its own).") in [i.value for i in at.info]  # it became #2 without a word
    at.number_input(key="pf_weight").set_value(3.0)
    at.button(key="pf_add").click().run()  # the same params again: replaced, not added
    assert list(table()["weight"]) == [1.0, 3.0] and len(table()) == 2
    assert (f"bb_atr:{SAMPLE} #2 with these params was already in the list: added again, it replaces it (weight 1 "
            "before, 3 now).") in [i.value for i in at.info]  # it was replaced without a word, then named without #2
    at.checkbox(key="pf_custom").uncheck().run()
    at.button(key="pf_add").click().run()  # the first again: replaced in its place, the labels stay
    assert list(table()["runner"]) == [f"bb_atr:{SAMPLE}", f"bb_atr:{SAMPLE} #2"]
    assert "bb_period=30" in table()["params"].iloc[1] and list(table()["weight"]) == [3.0, 3.0]
    at.selectbox(key="pf_remove_pick").set_value(0)
    at.button(key="pf_remove").click().run()
    assert not at.exception, at.exception
    assert len(table()) == 1 and "bb_period=30" in table()["params"].iloc[0]


def test_two_runner_portfolio_runs_to_its_metrics_charts_and_tables(workspace):
    other = second_asset(workspace)
    at = open_page("8_Portfolio.py")
    at.button(key="pf_add").click().run()  # bb_atr on the sample, defaults
    at.selectbox(key="pf_strategy").set_value("ma_crossover")
    at.selectbox(key="pf_dataset").set_value(other)
    at.number_input(key="pf_weight").set_value(2.0)
    at.button(key="pf_add").click().run()
    assert not at.exception, at.exception
    table = next(df for df in at.dataframe if "runner" in df.value.columns).value
    assert list(table["runner"]) == [f"bb_atr:{SAMPLE}", f"ma_crossover:{other}"]
    assert list(table["weight"]) == [1.0, 2.0]
    before_launch = [w.value for w in at.warning]  # XYZ's 400 days of the sample's 730: said before Launch
    at.number_input(key="pf_guard").set_value(0.7)
    at.number_input(key="pf_kill").set_value(10.0)
    at.button(key="pf_launch").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.session_state["pf_job"]
    assert at.get("progress") and any(b.key == "pf_stop" for b in at.button)  # progress and Stop from the start
    run_until(at, lambda a: "pf_run" in a.session_state and bool(a.session_state["pf_run"]))
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    pid = at.session_state["pf_run"]
    assert at.selectbox(key="pf_history").value == pid

    from threadx.portfolio import load_portfolio

    stored = load_portfolio(pid)
    assert stored.config["margin_guard"] == 0.7 and stored.config["kill_switch"] == pytest.approx(0.1)
    assert [r["weight"] for r in stored.runners] == [1.0, 2.0]
    assert stored.meta["notes"] and before_launch == [f"{note}." for note in stored.meta["notes"]]
    assert "funding: stored files (none found for these datasets)" in texts(at.caption)  # it read "stored files"
    assert {"Return", "Sharpe", "Max drawdown", "Trades", "Cycles", "Cycle win rate", "Fees (USDT)",
            "Funding (USDT)", "Peak margin share", "Peak positions", "Peak legs"} <= metric_labels(at)  # money: unit
    assert "2 runners on 10,000.00 USDT capital" in texts(at.caption)
    trades = next(m for m in at.metric if m.label == "Trades")
    assert trades.value == f"{stored.metrics['n_trades']:,}"
    titles = charts(at)
    equity = titles["Portfolio equity and drawdown"]
    assert equity["layout"]["yaxis2"]["tickformat"] == ".2~%"  # drawdown under the equity, shared time axis
    assert [t["name"] for t in equity["data"]] == ["Portfolio equity", "Drawdown", "Initial capital 10,000 USDT"]
    assert equity["layout"]["yaxis"]["title"]["text"] == "Equity (USDT)"
    assert charts(at)["Each runner's equity (its share of the capital)"]["layout"]["yaxis"]["title"]["text"] == \
        "Equity (USDT)"
    margin = titles["Margin share of equity and open positions"]
    guard_lines = [s for s in margin["layout"].get("shapes", []) if s.get("y0") == 0.7 and s.get("y1") == 0.7]
    assert guard_lines, "the margin guard is drawn"
    held = [t for t in margin["data"] if t.get("name") == "Kill switch holding entries"]
    assert bool(held) == bool(stored.timeline["blocked"].any())  # its holds shaded (and in the legend)
    events = [df.value for df in at.dataframe if "fired (UTC)" in df.value.columns]
    if stored.events:
        assert len(events) == 1 and len(events[0]) == len(stored.events)
    else:
        assert not events and "The kill switch never fired." in texts(at.caption)
    runner_lines = titles["Each runner's equity (its share of the capital)"]
    assert [t["name"] for t in runner_lines["data"]] == stored.labels
    heat = titles["Drawdown correlation between runners"]["data"][0]
    assert heat["x"] == stored.labels and heat["y"] == stored.labels
    breakdown = next(df for df in at.dataframe if "Peak margin share" in df.value.columns)
    config = json.loads(breakdown.proto.columns)
    assert config["Return"]["type_config"]["format"] == "%.2f %%"  # in percent points, the cards' decimals
    assert list(breakdown.value["Return"]) == [r["metrics"]["total_return"] * 100.0 for r in stored.runners]
    assert config["Trades"]["type_config"]["format"] == "%,d"
    assert list(breakdown.value["Runner"]) == stored.labels
    assert list(breakdown.value["Trades"]) == [r["metrics"]["n_trades"] for r in stored.runners]
    assert json.loads(breakdown.proto.columns)["Runner"]["pinned"] is True  # (the figures scroll beside it)
    # a row per runner, a column per reason: a column per runner scrolled sideways from the fourth at 1440 px
    skipped = next(df for df in at.dataframe if "margin guard" in df.value.columns).value
    reasons = ("margin_guard", "runner_cap", "kill_switch", "engine")
    assert list(skipped.columns) == ["runner", "margin guard", "runner cap", "kill switch", "engine"]
    assert list(skipped["runner"]) == ["all runners", *stored.labels]
    assert skipped.iloc[0, 1:].tolist() == [stored.skipped[k] for k in reasons]
    assert skipped.iloc[1:, 1:].to_numpy().tolist() == [[r["skipped"].get(k, 0) for k in reasons]
                                                         for r in stored.runners]
    assert "**margin guard**: margin of all runners would pass the margin guard" in texts(at.caption)
    details = next(df for df in at.dataframe if "fingerprint" in df.value.columns).value
    assert list(details["fingerprint"]) == [r["dataset"]["fingerprint"] for r in stored.runners]


def test_a_stored_portfolio_opens_from_history(workspace):
    from threadx.portfolio import portfolio_backtest

    other = second_asset(workspace)
    portfolio_backtest([f"bb_atr:{SAMPLE}", f"ma_crossover:{other}"], portfolio_id="older", kill_switch=0.05,
                       cooldown="3D")
    portfolio_backtest([f"bb_atr:{SAMPLE}"], portfolio_id="newer")
    at = open_page("8_Portfolio.py")
    assert at.selectbox(key="pf_history").value == "newer"
    assert "Portfolio newer" in texts(at.subheader)
    assert "Drawdown correlation between runners" not in charts(at)  # one runner: a line, not a blank chart
    assert "Drawdown correlation between runners: one runner, nothing to correlate." in texts(at.caption)
    at.selectbox(key="pf_history").set_value("older").run()
    assert not at.exception, at.exception
    assert "Portfolio older" in texts(at.subheader)
    assert "kill switch at 5.00 % drawdown within 24h, cooldown 3D" in texts(at.caption)
    titles = charts(at)
    assert len(titles["Drawdown correlation between runners"]["data"][0]["x"]) == 2



def test_the_url_names_the_portfolio_shown_so_a_refresh_shows_it_again(workspace):
    """A refresh showed the newest stored portfolio (another tab's, say), not the one on screen."""
    from threadx.portfolio import portfolio_backtest

    portfolio_backtest([f"bb_atr:{SAMPLE}"], portfolio_id="older")
    portfolio_backtest([f"ma_crossover:{SAMPLE}"], portfolio_id="newer")
    at = open_page("8_Portfolio.py")
    assert at.query_params.get("portfolio") == "newer"
    at.selectbox(key="pf_history").set_value("older").run()
    assert at.query_params.get("portfolio") == "older"
    refreshed = open_page("8_Portfolio.py", portfolio="older")  # a new session on that URL
    assert refreshed.selectbox(key="pf_history").value == "older" and "Portfolio older" in texts(refreshed.subheader)
    gone = open_page("8_Portfolio.py", portfolio="deleted-one")
    assert any("The link names portfolio **deleted-one**, which is not stored" in w.value for w in gone.warning)
    assert gone.selectbox(key="pf_history").value == "newer" and gone.query_params.get("portfolio") == "newer"
    # an unknown job link: said, none followed (the newest portfolio was shown in its place, unsaid)
    unknown = open_page("8_Portfolio.py", job="20261204-000000-000000-dead")
    assert any("The link names job **20261204-000000-000000-dead**, which is not a portfolio job known here"
               in w.value for w in unknown.warning)
    assert "job" not in unknown.query_params

def test_a_stored_portfolio_loads_its_runners_and_settings_into_the_form(workspace):
    """The runner list was lost to a refresh, and a stored portfolio had no way back into the form."""
    from threadx.portfolio import portfolio_backtest

    portfolio_backtest([f"bb_atr:{SAMPLE}", f"ma_crossover:{SAMPLE}"], weights=[1.0, 2.0], margin_guard=0.6,
                       kill_switch=0.15, kill_window="3D", capital=25_000.0, portfolio_id="kept",
                       fee_bps=4.0, slippage_bps=2.0)
    at = open_page("8_Portfolio.py", portfolio="kept")
    assert at.session_state["pf_runners"] == []
    at.button(key="pf_load_stored").click().run()
    assert not at.exception, at.exception
    runners = at.session_state["pf_runners"]
    assert [(r["strategy"], r["data"]["source"], r["weight"]) for r in runners] == [
        ("bb_atr", SAMPLE, 1.0), ("ma_crossover", SAMPLE, 2.0)]
    assert at.number_input(key="pf_capital").value == 25_000.0 and at.number_input(key="pf_guard").value == 0.6
    assert at.number_input(key="pf_kill").value == pytest.approx(15.0) and at.text_input(key="pf_window").value == "3D"
    assert at.number_input(key="pf_fee").value == 4.0
    assert at.session_state["pf_research_options"] == {"slippage_bps": 2.0}  # (no box: it rides along)
    # said on the page (it ran unseen in every later launch), and dropped with the last loaded runner
    assert "Engine options loaded with the runners: slippage 2 bps (fee" in texts(at.caption), texts(at.caption)
    for _ in range(2):
        at.button(key="pf_remove").click().run()
    assert at.session_state["pf_runners"] == [] and "pf_research_options" not in at.session_state
    at.button(key="pf_add").click().run()
    assert "Engine options" not in texts(at.caption)


def test_portfolio_from_winners_prefills_the_runners(workspace):
    from threadx.validation.research import research

    other = second_asset(workspace)
    research("ma_crossover", [SAMPLE, other], {"fast_period": [5, 10], "slow_period": [30, 60]},
             research_id="two-assets", sampler="grid", is_days=120, oos_days=60, bootstrap=200, S=8, workers=1)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)  # the app, so switch_page works
    at.run()
    at.switch_page("views/7_Research.py").run()
    assert not at.exception, at.exception
    at.button(key="rs_portfolio").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Portfolio"
    runners = at.session_state["pf_runners"]
    from threadx.portfolio.runners import runners_from_research

    assert runners == [r.to_dict() for r in runners_from_research("two-assets")]
    assert [r["strategy"] for r in runners] == ["ma_crossover", "ma_crossover"]
    assert "Runners from research two-assets, last in-sample window's winner params" in texts(at.caption)
    assert "In sample: these params were chosen on the candles this portfolio runs on" in texts(at.warning)
    assert at.selectbox(key="pf_research").value == "two-assets"
    table = next(df for df in at.dataframe if "runner" in df.value.columns).value
    assert len(table) == 2 and "strategy defaults" not in set(table["params"])
    assert "Other funding" not in texts(at.warning)
    # a funding file fetched after the research chose its winners (it ran without one): said before launch
    import pandas as pd

    from threadx.data.funding import write_funding

    write_funding(pd.Series(0.0001, index=pd.date_range("2024-01-01", periods=300, freq="8h", tz="UTC")),
                  workspace / "data" / "test" / "XYZ_USDT-funding.parquet")
    at.switch_page("views/8_Portfolio.py").run()
    shown = [w.value for w in at.warning if w.value.startswith("Other funding than the research's")]
    assert len(shown) == 1 and shown[0].startswith(
        "Other funding than the research's: funding of test/XYZ_USDT-1h: <Series of 300 rates from ")
    assert shown[0].endswith("(the research's winners were chosen under none).")


def test_a_portfolio_of_research_winners_records_it_is_in_sample(workspace, capsys):
    """The in-sample warning lived in the session only: the stored result, a reopened one and the
    CLI's output never said its params were chosen on its own candles."""
    from threadx.cli import main
    from threadx.portfolio import load_portfolio
    from threadx.requests import PortfolioRequest
    from threadx.validation.research import research

    other = second_asset(workspace)
    research("ma_crossover", [SAMPLE, other], {"fast_period": [5, 10], "slow_period": [30, 60]},
             research_id="two-assets", sampler="grid", is_days=120, oos_days=60, bootstrap=200, S=8, workers=1)
    assert main(["portfolio", "--from-research", "two-assets", "--id", "from-cli"]) == 0
    err = capsys.readouterr().err
    assert "runners from research two-assets, last in-sample window's winner params" in err
    assert "warning: In sample: these params were chosen on the candles this portfolio runs on" in err
    assert load_portfolio("from-cli").config["origin"].startswith("research two-assets")
    at = open_page("8_Portfolio.py")
    at.button(key="pf_research_load").click().run()
    assert at.session_state["pf_origin"].startswith("research two-assets")
    request = PortfolioRequest(tuple(at.session_state["pf_runners"]), origin=at.session_state["pf_origin"],
                               run_id="from-page")
    assert PortfolioRequest.from_dict(request.to_dict()) == request
    request.run()
    fresh = open_page("8_Portfolio.py")  # a new session: nothing of the loading is left in it
    fresh.selectbox(key="pf_history").set_value("from-page").run()
    assert "Portfolio from-page" in texts(fresh.subheader)
    assert any(w.startswith("Runners from research two-assets") and "In sample" in w
               for w in [x.value for x in fresh.warning]), texts(fresh.warning)
    assert load_portfolio("from-page").config["origin"] == request.origin
    at.selectbox(key="pf_strategy").set_value("bb_atr").run()  # a runner added by hand beside the loaded ones
    at.button(key="pf_add").click().run()
    assert at.session_state["pf_origin"].endswith(", and runners added by hand")
    assert any("In sample" in w.value for w in at.warning)  # the loaded runners stay in sample
    from threadx.portfolio import portfolio_backtest

    portfolio_backtest([f"bb_atr:{SAMPLE}"], portfolio_id="by-hand")
    plain = open_page("8_Portfolio.py")
    plain.selectbox(key="pf_history").set_value("by-hand").run()
    assert not any("In sample" in w.value for w in plain.warning)


# --- the job -------------------------------------------------------------------------------------

def test_portfolio_request_round_trip_and_checks():
    from threadx.errors import ParamError
    from threadx.portfolio.backtest import DEFAULT_COOLDOWN, DEFAULT_KILL_WINDOW
    from threadx.requests import DatasetRef, PortfolioRequest

    runners = ({"strategy": "bb_atr", "data": DatasetRef(SAMPLE, name=SAMPLE).to_dict(), "params": {"bb_period": 30},
                "weight": 2.0},)
    request = PortfolioRequest(runners, capital=5_000, margin_guard=0.7, engine_options={"fee_bps": 4})
    data = json.loads(json.dumps(request.to_dict()))
    assert data["kind"] == "portfolio" and data["kill_window"] == DEFAULT_KILL_WINDOW
    assert data["cooldown"] == DEFAULT_COOLDOWN and data["funding"] == "stored"
    assert "initial_capital" not in data["engine_options"] and data["engine_options"]["fee_bps"] == 4
    assert PortfolioRequest.from_dict(data) == request
    other = dict(runners[0], params={"bb_period": 40})  # the same strategy and dataset, other params: a runner #2
    assert len(PortfolioRequest((*runners, other)).runners) == 2
    for bad, message in (({"runners": ()}, "at least one runner"),
                         ({"runners": runners * 2}, "given twice"),
                         ({"runners": runners, "kill_switch": 1.5}, "kill_switch must be"),
                         ({"runners": runners, "cooldown": "later"}, "cooldown must be a duration"),
                         ({"runners": runners, "engine_options": {"initial_capital": 1}}, "capital"),
                         ({"runners": runners, "capital": 1e300}, "capital must be at most"),  # (was: in the job)
                         ({"runners": runners, "capital": -5}, "capital must be positive"),
                         ({"runners": runners, "surprise": 1}, "unknown portfolio param")):
        with pytest.raises(ParamError, match=message):
            PortfolioRequest.from_dict(bad)


def test_portfolio_job_counts_runners_and_stop_stores_nothing(workspace):
    from threadx.portfolio import list_portfolios
    from threadx.requests import DatasetRef, PortfolioRequest
    from threadx.ui.jobs import JobRegistry

    registry = JobRegistry()
    runner = {"strategy": "bb_atr", "data": DatasetRef(SAMPLE, name=SAMPLE).to_dict()}
    job_id = registry.submit(PortfolioRequest((runner,)))
    deadline = time.time() + 120
    while registry.get(job_id).is_active and time.time() < deadline:
        time.sleep(0.3)
    done = registry.get(job_id)
    assert done.state == "completed", (done.state, done.error)
    assert done.status_line == "completed (1 / 1 runners)"
    assert done.label == "portfolio of 1 runner"
    assert [p["portfolio_id"] for p in list_portfolios()] == [done.run_id]

    # a stop asked before the job process starts its runners: cancelled, nothing stored
    from threadx.ui.job_runner import JobRunner

    stopped = registry.submit(PortfolioRequest((runner,)))
    registry.stop(stopped)
    info = registry.get(stopped)
    if info.state != "cancelled":  # the process had started: it sees the stop flag before the run
        deadline = time.time() + 120
        while registry.get(stopped).is_active and time.time() < deadline:
            time.sleep(0.3)
        info = registry.get(stopped)
    assert info.state == "cancelled"
    assert [p["portfolio_id"] for p in list_portfolios()] == [done.run_id]
    assert JobRunner  # the runner module imports (its portfolio kind is exercised above)


def test_portfolio_job_stop_during_signals_is_cancelled(workspace):
    """The job runner's cancel reaches portfolio_backtest between runners: Cancelled, nothing stored."""
    from threadx.portfolio import list_portfolios
    from threadx.requests import DatasetRef, PortfolioRequest
    from threadx.ui.job_runner import JobRunner
    from threadx.ui.jobs import read_json, write_json_atomic

    runners = tuple({"strategy": s, "data": DatasetRef(SAMPLE, name=SAMPLE).to_dict()}
                    for s in ("bb_atr", "ma_crossover"))
    params = PortfolioRequest(runners, run_id="pf-stopped").to_dict()
    params.pop("kind")
    folder = workspace / "results" / ".jobs" / "by-hand"  # run in this process, not by the registry
    folder.mkdir(parents=True)
    write_json_atomic(folder / "spec.json", {"kind": "portfolio", "params": params})
    runner = JobRunner(folder)
    phases = []
    real_write = runner.status.write

    def write(**changes):
        real_write(**changes)
        phases.append((runner.status.status.get("phase"), runner.status.status.get("done"),
                       runner.status.status.get("total")))
        if runner.status.status.get("phase", "").startswith("signals of ma_crossover"):
            (folder / "stop").touch()  # Stop pressed while the second runner's signals are computed

    runner.status.write = write
    assert runner.run() == "cancelled"
    assert ("signals of bb_atr:" + SAMPLE, 0, 2) in phases
    assert read_json(folder / "status.json")["state"] == "cancelled"
    assert list_portfolios() == []


def test_span_notes_read_the_catalog_and_each_runners_cut():
    import pandas as pd

    from threadx.ui.portfolio import span_notes

    catalog = pd.DataFrame({"name": ["a/X-1h", "a/Y-1h"], "timeframe": ["1h", "1h"],
                            "first": pd.to_datetime(["2024-01-01", "2024-01-01"], utc=True),
                            "last": pd.to_datetime(["2024-12-31 23:00", "2024-12-31 23:00"], utc=True)})
    x = {"strategy": "bb_atr", "data": {"source": "a/X-1h", "name": "a/X-1h"}}
    y = {"strategy": "bb_atr", "data": {"source": "a/Y-1h", "name": "a/Y-1h"}}
    assert span_notes([x, y], catalog) == []  # the same span
    cut = {**y, "data": {**y["data"], "start": "2024-07-01"}}
    [note] = span_notes([x, cut], catalog)
    assert note.startswith("bb_atr:a/Y-1h trades over 50 % of the portfolio's span (from its first bar's open, "
                           "2024-07-01 00:00, to its last bar's close, 2025-01-01 00:00,"), note
    gone = {**y, "data": {"source": "a/Z-1h", "name": "a/Z-1h"}}
    assert span_notes([x, gone], catalog) == []  # a span not known: no guess
    after = {**y, "data": {**y["data"], "start": "2026-01-01"}}
    assert span_notes([x, after], catalog) == []  # it read "trades over -100 % of the portfolio's span"
    garbled = {**y, "data": {**y["data"], "start": "soon"}}
    assert span_notes([x, garbled], catalog) == []  # a DateParseError on the page


def _sample_and(dataset: str):
    """The Portfolio page with bb_atr on the 1h sample and on ``dataset``: (the page, its errors)."""
    at = open_page("8_Portfolio.py")
    at.button(key="pf_add").click().run()  # bb_atr on the 1h sample
    at.selectbox(key="pf_dataset").set_value(dataset)
    at.button(key="pf_add").click().run()
    assert not at.exception, at.exception
    return at, [e.value for e in at.error]


def test_runners_of_two_timeframes_are_refused_before_launch(workspace):
    """A 1h and a 4h runner (two cells of a research, say) were refused only after Launch."""
    from threadx.data.io import write_ohlcv
    from threadx.data.synthetic import ensure_sample, generate_synthetic

    ensure_sample()
    write_ohlcv(generate_synthetic("XYZ_USDT", "4h", days=300, seed=5), workspace / "data" / "test" / "XYZ_USDT-4h.parquet")
    at, errors = _sample_and("test/XYZ_USDT-4h")
    assert errors == [f"Cannot launch: the runners of a portfolio share one timeframe; got bb_atr:{SAMPLE} 1h, "
                      "bb_atr:test/XYZ_USDT-4h 4h: resample them to one (threadx data resample, or "
                      "load_ohlcv(..., timeframe=))."], errors
    assert not at.warning  # (no part-time note beside it: spans of two timeframes compare nothing)


def test_runners_that_never_run_at_the_same_time_are_refused_before_launch(workspace):
    """BTC 2017-2020 beside the 2023-2024 sample: the form gave a part-time note only, and the job
    failed after Launch reading "(4 / 4 runners)", as if each had run."""
    import pandas as pd

    from threadx.data.io import write_ohlcv
    from threadx.data.synthetic import ensure_sample, generate_synthetic
    from threadx.ui.portfolio import overlap_note

    ensure_sample()
    old = generate_synthetic("OLD_USDT", "1h", days=200, seed=5)
    old.index = old.index - pd.Timedelta(days=3 * 365)
    write_ohlcv(old, workspace / "data" / "test" / "OLD_USDT-1h.parquet")
    at, errors = _sample_and("test/OLD_USDT-1h")
    assert len(errors) == 1 and errors[0].startswith(f"Cannot launch: runners bb_atr:test/OLD_USDT-1h and "
                                                     f"bb_atr:{SAMPLE} never run at the same time"), errors
    at.button(key="pf_launch").click().run()
    assert [e.value for e in at.error].count(errors[0]) == 1  # the form's only (Launch said it again)
    assert "pf_job" not in at.session_state  # no job submitted
    catalog = pd.DataFrame({"name": ["a/X-1h"], "timeframe": ["1h"], "first": pd.to_datetime(["2024-01-01"], utc=True),
                            "last": pd.to_datetime(["2024-12-31 23:00"], utc=True)})
    x = {"strategy": "bb_atr", "data": {"source": "a/X-1h", "name": "a/X-1h"}}
    assert overlap_note([x, {**x, "data": {**x["data"], "start": "2024-06-01"}}], catalog) is None


def test_a_damaged_stored_portfolio_is_named_not_silently_left_out(workspace):
    """A portfolio whose trades file was lost was left out of the history box without a word."""
    from threadx.portfolio import portfolio_backtest

    portfolio_backtest([f"bb_atr:{SAMPLE}"], portfolio_id="lost-trades")
    (workspace / "results" / "portfolios" / "lost-trades" / "trades.parquet").unlink()
    at = open_page("8_Portfolio.py")
    assert ("Stored portfolio lost-trades is damaged and left out of the list: trades.parquet missing."
            in [w.value for w in at.warning]), texts(at.warning)


def test_portfolio_from_winners_takes_the_research_engine_options(workspace):
    """The page ran a research's winners under its own form's fee and fill (10 bps, next open),
    not those the winners were chosen under."""
    from threadx.validation.research import research

    research("ma_crossover", [SAMPLE], {"fast_period": [5, 10], "slow_period": [30, 60]}, research_id="costless",
             sampler="grid", is_days=120, oos_days=60, bootstrap=200, S=8, workers=1, fee_bps=0.0, fill="close")
    at = AppTest.from_file(str(ROOT / "views" / "8_Portfolio.py"), default_timeout=120)
    at.session_state["pf_from_research"] = "costless"
    at.run()
    assert not at.exception, at.exception
    assert at.session_state["pf_fee"] == 0.0 and at.session_state["pf_fill"] == "close"
    assert "Engine options as the research chose its winners under: fee 0 bps" in texts(at.caption)
    assert "Other engine options than the research's" not in texts(at.warning)
    at.session_state["pf_fee"] = 10.0
    at.run()
    assert "Other engine options than the research's: fee_bps 10.0 (the research ran with 0.0)" in texts(at.warning)


def test_a_damaged_research_is_named_and_its_bad_options_refused_without_a_traceback(workspace):
    """A research recording a fee of "abc" raised ValueError on Load runners, with the runner list
    already replaced; damaged researches were left out of the list without a word."""
    import json

    from threadx.validation.research import research

    research("ma_crossover", [SAMPLE], {"fast_period": [5, 10], "slow_period": [30, 60]}, research_id="bad-fee",
             sampler="grid", is_days=120, oos_days=60, bootstrap=200, S=8, workers=1)
    path = workspace / "results" / "research" / "bad-fee" / "research.json"
    data = json.loads(path.read_text())
    data["config"]["walk_forward"]["engine_options"]["fee_bps"] = "abc"
    path.write_text(json.dumps(data))
    broken = workspace / "results" / "research" / "broken"
    broken.mkdir()
    (broken / "research.json").write_text("{cut")
    at = open_page("8_Portfolio.py")
    at.session_state["pf_runners"] = [{"strategy": "bb_atr", "data": {"source": SAMPLE}}]
    at.run()
    assert "Stored research broken is damaged and left out of the list" in texts(at.warning)
    at.button(key="pf_research_load").click().run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("Cannot load runners from research bad-fee: the engine options "
                                                     "recorded by research bad-fee cannot be used: fee"), errors
    assert [r["strategy"] for r in at.session_state["pf_runners"]] == ["bb_atr"]  # the list as it was
