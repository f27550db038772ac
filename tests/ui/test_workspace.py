"""The workspace survives a refresh and a restart: the URL names the dataset, the strategy and
the backtest on display (a new session reopens them), the settings file keeps the form values
(threadx.ui.workspace), and a strategy change clears the previous strategy's result."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from apptest_helpers import ROOT, open_page  # noqa: E402

from threadx.errors import DataError, ParamError  # noqa: E402
from threadx.ui import workspace as ws  # noqa: E402

XYZ = "binance/XYZ_USDT-1h"


def write_xyz(root: Path, seed: int) -> Path:
    from threadx.data.io import write_ohlcv
    from threadx.data.synthetic import generate_synthetic

    return write_ohlcv(generate_synthetic("XYZ_USDT", days=120, seed=seed), root / "data" / "binance" /
                       "XYZ_USDT-1h.parquet")


def new_session(link: dict, script: str = "views/2_Backtest.py") -> AppTest:
    """A new browser session (a refresh, a restart, a link) opening ``link``'s query params."""
    at = AppTest.from_file(str(ROOT / script), default_timeout=120)
    at.query_params.update(link)
    at.run()
    assert not at.exception, at.exception
    return at


def warnings(at: AppTest) -> list[str]:
    return [w.value for w in at.warning]


def settings_file(root: Path) -> Path:
    return root / "results" / "workspace.json"


# --- URL: dataset, strategy and the backtest on display -------------------------------------------

def test_a_refresh_or_a_link_reopens_the_dataset_strategy_and_backtest(workspace):
    write_xyz(workspace, seed=3)
    at = open_page("2_Backtest.py")
    at.selectbox(key="dataset_picker").set_value(XYZ).run()
    at.selectbox(key="bt_strategy").set_value("ma_crossover").run()
    at.number_input(key="bt:ma_crossover:fast_period").set_value(8).run()
    at.number_input(key="bt_fee").set_value(3.0).run()
    at.button(key="bt_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    link = dict(at.query_params)
    assert link["dataset"] == XYZ and link["strategy"] == "ma_crossover" and len(link["bt"]) == 16
    shown = at.session_state["backtest"]
    assert shown["request"]["data"]["fingerprint"]  # the request records which candles it ran on

    # the app opened on that URL (the Backtest page is its default page): the same view
    app = new_session(link, "app.py")
    assert not app.error and not warnings(app), (app.error, warnings(app))
    assert XYZ in " ".join(m.value for m in app.sidebar.markdown)
    assert app.selectbox(key="dataset_picker").value == XYZ
    assert app.selectbox(key="bt_strategy").value == "ma_crossover"
    assert app.number_input(key="bt:ma_crossover:fast_period").value == 8
    assert app.number_input(key="bt_fee").value == 3.0
    again = app.session_state["backtest"]
    assert again["result"] is not shown["result"]  # run anew, the same backtest
    assert again["result"].metrics == shown["result"].metrics and again["request"] == shown["request"]
    assert "Sharpe" in [m.label for m in app.metric]
    assert dict(app.query_params) == link
    app.run()  # a rerun does not run it again
    assert app.session_state["backtest"]["result"] is again["result"]

    # another dataset picked after the run: a refresh keeps it picked, the backtest shown on its own
    app.selectbox(key="dataset_picker").set_value("synthetic/BTC_USDT-1h").run()
    assert app.query_params["dataset"] == "synthetic/BTC_USDT-1h" and app.query_params["bt"] == link["bt"]
    picked = new_session(dict(app.query_params))
    assert picked.selectbox(key="dataset_picker").value == "synthetic/BTC_USDT-1h"
    assert picked.session_state["backtest"]["dataset"] == XYZ
    assert picked.session_state["backtest"]["result"].metrics == shown["result"].metrics

    # the dataset's candles changed: said so, nothing shown, the form keeps the backtest's settings
    write_xyz(workspace, seed=4)
    changed = new_session(link)
    assert any("changed since the run" in w and XYZ in w for w in warnings(changed)), warnings(changed)
    assert not any("None to None" in w or "(?," in w for w in warnings(changed)), warnings(changed)  # (unknown span)
    assert "backtest" not in changed.session_state and "bt" not in changed.query_params
    assert changed.number_input(key="bt:ma_crossover:fast_period").value == 8
    assert changed.number_input(key="bt_fee").value == 3.0
    changed.button(key="bt_run").click().run()  # on the current candles
    assert not changed.error, [e.value for e in changed.error]
    assert changed.query_params["bt"] != link["bt"]
    assert changed.session_state["backtest"]["result"].metrics != shown["result"].metrics


def test_a_refresh_keeps_a_reopened_runs_data(workspace):
    """A run reopened from the Optimisation page (its own file and engine options) comes back
    on that file after a refresh, with the runs still using it."""
    import threadx
    from threadx.data.io import write_ohlcv
    from threadx.data.synthetic import generate_synthetic
    from threadx.requests import BacktestRequest, DatasetRef

    path = write_ohlcv(generate_synthetic(days=20, seed=5, timeframe="5m"), workspace / "files" / "ABC_USDT-5m.parquet")
    frame = threadx.load_ohlcv(str(path))
    request = BacktestRequest(DatasetRef.of(frame), "ma_crossover", {"fast_period": 5, "slow_period": 40},
                              {"fee_bps": 2.0})
    at = AppTest.from_file(str(ROOT / "views" / "2_Backtest.py"), default_timeout=120)
    at.session_state["open_in_backtest"] = {"request": request.to_dict(), "run_id": "older"}
    at.run()
    assert not at.exception and not at.error, at.exception or [e.value for e in at.error]
    shown = at.session_state["backtest"]

    again = new_session(dict(at.query_params))
    assert not again.error and not warnings(again)
    reopened = again.session_state["backtest"]
    assert reopened["origin"] == "run older" and reopened["request"] == shown["request"]
    assert reopened["result"].metrics == shown["result"].metrics
    assert any("Runs use the data of run older" in c.value for c in again.caption)


def test_an_unknown_dataset_strategy_or_backtest_in_the_url_warns_and_falls_back():
    at = new_session({"dataset": "binance/NOPE_USDT-1h", "strategy": "no_such[x](y)", "bt": "0123456789abcdef"})
    shown = warnings(at)
    assert len(shown) == 3, shown
    assert sum("NOPE_USDT-1h" in w and "synthetic/BTC_USDT-1h" in w for w in shown) == 1
    assert sum("no_such\\[x\\]\\(y\\)" in w for w in shown) == 1  # shown as typed, not as a Markdown link
    assert sum("0123456789abcdef" in w and "not stored here" in w for w in shown) == 1
    assert at.selectbox(key="dataset_picker").value == "synthetic/BTC_USDT-1h"
    assert at.selectbox(key="bt_strategy").value == "bb_atr"
    assert dict(at.query_params) == {"dataset": "synthetic/BTC_USDT-1h", "strategy": "bb_atr"}  # the URL fixed
    at.run()
    assert not warnings(at)  # said once

    odd = new_session({"bt": "../../etc/passwd"})
    assert any("is not a backtest id" in w for w in warnings(odd)) and "bt" not in odd.query_params

    app = new_session({"dataset": "binance/NOPE_USDT-1h"}, "app.py")  # in the main area, above the page
    assert any("NOPE_USDT-1h" in w.value for w in app.main.warning)
    assert not any("NOPE_USDT-1h" in w.value for w in app.sidebar.warning)


def test_changing_strategy_clears_the_result():
    at = open_page("2_Backtest.py")
    at.button(key="bt_run").click().run()
    assert "Sharpe" in [m.label for m in at.metric] and "bt" in at.query_params
    at.selectbox(key="bt_strategy").set_value("ma_crossover").run()
    assert not at.exception, at.exception
    assert "backtest" not in at.session_state and not at.metric and not at.get("plotly_chart")
    assert "bt" not in at.query_params and at.query_params["strategy"] == "ma_crossover"
    assert any("Run backtest" in i.value for i in at.info)
    at.selectbox(key="bt_strategy").set_value("bb_atr").run()  # back: not brought back either
    assert "backtest" not in at.session_state and not at.metric


# --- the settings file: form values ------------------------------------------------------------------

def test_param_values_survive_a_restart(workspace):
    at = open_page("2_Backtest.py")
    assert not settings_file(workspace).exists()  # opening the page at the defaults writes nothing
    at.number_input(key="bt:bb_atr:bb_period").set_value(30).run()
    at.number_input(key="bt:bb_atr:entry_z").set_value(1.5).run()
    at.checkbox(key="bt:bb_atr:trailing_stop").uncheck().run()
    saved = json.loads(settings_file(workspace).read_text())["forms"]["params"]["bb_atr"]
    assert saved["bb_period"] == 30 and saved["entry_z"] == 1.5 and saved["trailing_stop"] is False

    # another strategy and back, in the same session: the form as it was left
    at.selectbox(key="bt_strategy").set_value("ma_crossover").run()
    at.selectbox(key="bt_strategy").set_value("bb_atr").run()
    assert at.number_input(key="bt:bb_atr:bb_period").value == 30

    restarted = open_page("2_Backtest.py")  # a new session, no query params: the saved values
    assert restarted.number_input(key="bt:bb_atr:bb_period").value == 30
    assert restarted.number_input(key="bt:bb_atr:entry_z").value == 1.5
    assert restarted.checkbox(key="bt:bb_atr:trailing_stop").value is False
    assert restarted.number_input(key="bt:bb_atr:atr_period").value == 14  # never changed: the default

    # values the params refuse (out of range, unknown key, wrong type) are dropped on load
    data = json.loads(settings_file(workspace).read_text())
    data["forms"]["params"]["bb_atr"].update({"bb_period": 100_000, "bogus": 1, "atr_period": "x"})
    settings_file(workspace).write_text(json.dumps(data))
    checked = open_page("2_Backtest.py")
    assert not warnings(checked)
    assert checked.number_input(key="bt:bb_atr:bb_period").value == 20
    assert checked.number_input(key="bt:bb_atr:atr_period").value == 14
    assert checked.number_input(key="bt:bb_atr:entry_z").value == 1.5


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2, 3]", b"\xff\xfe\x00garbage",
                                     b'{"forms": "nope"}', b" " * (ws.MAX_FILE_BYTES + 1)])
def test_a_damaged_settings_file_is_ignored(workspace, content):
    path = settings_file(workspace)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    at = open_page("2_Backtest.py")
    assert [w for w in warnings(at) if "workspace file" in w and "ignored" in w], warnings(at)
    assert at.number_input(key="bt:bb_atr:bb_period").value == 20  # the defaults
    at.run()
    assert not warnings(at)  # said once per session
    at.number_input(key="bt:bb_atr:bb_period").set_value(25).run()  # the next save starts a new file
    assert not at.exception, at.exception
    assert json.loads(path.read_text())["forms"]["params"]["bb_atr"]["bb_period"] == 25
    assert path.with_name("workspace.json.damaged").read_bytes() == content  # kept aside, not lost
    assert open_page("2_Backtest.py").number_input(key="bt:bb_atr:bb_period").value == 25


# --- threadx.ui.workspace, without a page ---------------------------------------------------------------

def test_forms_are_checked_against_the_strategy_when_saved_and_loaded(workspace):
    assert ws.workspace_file() == settings_file(workspace)
    assert ws.load_form("params", "ma_crossover") == {}
    assert ws.save_form("params", "ma_crossover", {"fast_period": 8, "slow_period": -3, "bogus": 1})
    assert ws.load_form("params", "ma_crossover") == {"fast_period": 8}
    assert not ws.save_form("params", "ma_crossover", {"fast_period": 8})  # unchanged: not written again

    space = {"fast_period": {"min": 5, "max": 20, "step": 5}, "slow_period": 40, "ma_type": ["sma", "ema"],
             "allow_short": [False, True], "stop_loss_pct": {"min": 0.0, "max": 5.0, "step": 0.5}}
    assert ws.save_form("space", "ma_crossover", space)
    assert ws.load_form("space", "ma_crossover") == space
    assert ws.load_form("params", "ma_crossover") == {"fast_period": 8}  # kinds kept apart
    refused = {"fast_period": {"min": 1, "max": 20, "step": 5},  # min below the param's minimum
               "slow_period": {"min": 20, "max": 40, "step": 0},  # no step
               "ma_type": {"min": 1, "max": 2, "step": 1},  # a range of a choice param
               "take_profit_pct": [1.0, 2.0],  # a list of a numeric param
               "allow_short": "maybe"}
    assert ws.clean_form("space", "ma_crossover", refused) == {}
    # an empty list of a bool or choice param (the Optimisation page raised IndexError on it)
    assert ws.clean_form("space", "ma_crossover", {"allow_short": [], "ma_type": []}) == {}
    data = json.loads(settings_file(workspace).read_text())
    data["forms"]["space"]["no_such_strategy"] = {"x": 1}
    data["forms"]["space"]["ma_crossover"]["slow_period"] = 5000  # above its maximum
    settings_file(workspace).write_text(json.dumps(data))
    assert "slow_period" not in ws.load_form("space", "ma_crossover")
    assert ws.load_form("space", "no_such_strategy") == {}
    with pytest.raises(ValueError, match="unknown form kind"):
        ws.save_form("sweep", "ma_crossover", {})
    with pytest.raises(ParamError, match="unknown strategy"):
        ws.save_form("params", "no_such_strategy", {})


def test_the_last_choice_and_the_forms_share_the_file_without_losing_each_other(workspace):
    assert ws.last_choice() == {}
    assert ws.save_form("params", "ma_crossover", {"fast_period": 8})
    assert ws.save_last_choice("dataset", "synthetic/ETH_USDT-1h")
    assert ws.save_last_choice("strategy", "supertrend")
    assert not ws.save_last_choice("strategy", "supertrend")  # unchanged: not written again
    assert ws.save_form("space", "ma_crossover", {"slow_period": 40})
    assert ws.last_choice() == {"dataset": "synthetic/ETH_USDT-1h", "strategy": "supertrend"}
    assert ws.load_form("params", "ma_crossover") == {"fast_period": 8}
    with pytest.raises(ValueError, match="unknown choice"):
        ws.save_last_choice("sampler", "grid")
    data = json.loads(settings_file(workspace).read_text())
    data["last"] = {"dataset": 3, "strategy": "x" * 300, "bogus": "y"}  # edited by hand: ignored
    settings_file(workspace).write_text(json.dumps(data))
    assert ws.last_choice() == {}
    data["last"] = ["not", "a", "dict"]
    settings_file(workspace).write_text(json.dumps(data))
    assert ws.last_choice() == {} and ws.save_last_choice("strategy", "bb_atr")
    assert json.loads(settings_file(workspace).read_text())["last"] == {"strategy": "bb_atr"}
    data = json.loads(settings_file(workspace).read_text())
    data["forms"]["params"] = [1, 2]  # a kind that is not a dict: ignored, replaced by the next save
    settings_file(workspace).write_text(json.dumps(data))
    assert ws.load_form("params", "ma_crossover") == {} and ws.save_form("params", "ma_crossover", {"fast_period": 9})
    assert ws.load_form("params", "ma_crossover") == {"fast_period": 9} and ws.last_choice() == {"strategy": "bb_atr"}


def test_backtest_records_round_trip_and_are_bounded(workspace, monkeypatch):
    from threadx.requests import BacktestRequest, DatasetRef

    def request(fast: int) -> BacktestRequest:
        return BacktestRequest(DatasetRef("synthetic/BTC_USDT-1h", name="synthetic/BTC_USDT-1h", fingerprint="ab" * 8),
                               "ma_crossover", {"fast_period": fast}, {"fee_bps": 3.0})

    first = ws.save_backtest(request(5), origin="run older")
    assert ws.save_backtest(request(5), origin="run older") == first  # the same record, the same id
    assert ws.load_backtest(first) == (request(5), "run older")
    stale = time.time() - 100
    os.utime(ws.backtests_folder() / f"{first}.json", (stale, stale))  # used longest ago
    monkeypatch.setattr(ws, "MAX_BACKTESTS", 3)
    ids = [ws.save_backtest(request(fast)) for fast in (6, 7, 8)]
    assert len(list(ws.backtests_folder().glob("*.json"))) == 3
    with pytest.raises(DataError, match="not stored here"):
        ws.load_backtest(first)  # the least recently used one went
    assert ws.load_backtest(ids[-1])[0].params == {"fast_period": 8}
    (ws.backtests_folder() / f"{ids[-1]}.json").write_text("{broken")
    with pytest.raises(DataError, match="cannot be read"):
        ws.load_backtest(ids[-1])


def test_the_search_space_survives_a_restart(workspace):
    at = open_page("3_Optimisation.py")
    assert not settings_file(workspace).exists()  # the page at its defaults writes nothing
    at.selectbox(key="opt_strategy").set_value("ma_crossover").run()
    at.number_input(key="opt:ma_crossover:fast_period:min").set_value(7).run()
    at.number_input(key="opt:ma_crossover:fast_period:max").set_value(19).run()
    at.selectbox(key="opt:ma_crossover:slow_period:mode").set_value("fixed").run()
    saved = json.loads(settings_file(workspace).read_text())["forms"]["space"]["ma_crossover"]
    assert saved["fast_period"] == {"min": 7, "max": 19, "step": 1}

    restarted = open_page("3_Optimisation.py")  # a new session: the space as it was left
    restarted.selectbox(key="opt_strategy").set_value("ma_crossover").run()
    assert not restarted.exception and not warnings(restarted)
    assert restarted.number_input(key="opt:ma_crossover:fast_period:min").value == 7
    assert restarted.number_input(key="opt:ma_crossover:fast_period:max").value == 19
    assert restarted.selectbox(key="opt:ma_crossover:slow_period:mode").value == "fixed"


@pytest.mark.parametrize("script", ["views/7_Research.py", "views/8_Portfolio.py", "views/1_Data.py"])
def test_a_page_without_a_strategy_box_links_the_sessions_strategy(workspace, script):
    """A link copied from the Research or Portfolio page named the dataset only, so it opened on
    whatever strategy the receiving tab had last."""
    at = new_session({}, script)
    assert at.query_params["strategy"] == "bb_atr" and at.query_params["dataset"] == "synthetic/BTC_USDT-1h"
    assert ws.last_choice() == {}  # what a session starts on is not a choice: nothing written
    at = new_session({"strategy": "supertrend"}, script)
    assert at.query_params["strategy"] == "supertrend"
    at.session_state["strategy"] = "stopped_loading"  # its file broke while the session held it
    at.run()
    assert at.query_params["strategy"] == "supertrend" and ws.last_choice() == {}  # no fallback saved as a choice


def test_a_sessions_first_run_lists_the_datasets_and_strategies_once(workspace, monkeypatch):
    """Reading the link and the last choice listed the data folder and the strategies three
    times each on a session's first run."""
    from threadx.ui import state

    calls = {"datasets": 0, "strategies": 0}
    listers = {"datasets": state.dataset_names, "strategies": state.strategy_names}

    def counted(kind):
        def lister():
            calls[kind] += 1
            return listers[kind]()
        return lister

    monkeypatch.setattr(state, "dataset_names", counted("datasets"))
    monkeypatch.setattr(state, "strategy_names", counted("strategies"))
    at = AppTest.from_function(_restore_only)
    at.query_params.update({"dataset": "synthetic/ETH_USDT-1h", "strategy": "supertrend"})
    at.run()
    assert not at.exception, at.exception
    assert calls == {"datasets": 1, "strategies": 1}
    assert at.session_state["dataset"] == "synthetic/ETH_USDT-1h" and at.session_state["strategy"] == "supertrend"


def _restore_only() -> None:
    """A page that only reads the link (AppTest runs this function's source as the script)."""
    from threadx.ui.state import restore_from_url

    restore_from_url()


def test_a_refresh_keeps_form_edits_not_run_yet_beside_the_result_shown(workspace):
    """After Run with fast_period 8, the form set to 17 and not run: a refresh (F5) put the form back
    to 8 and wrote 8 over the saved 17, for new tabs too (a hostile test in Chromium)."""
    at = open_page("2_Backtest.py")
    at.selectbox(key="bt_strategy").set_value("ma_crossover").run()
    at.number_input(key="bt:ma_crossover:fast_period").set_value(8).run()
    at.button(key="bt_run").click().run()
    ran = at.session_state["backtest"]["result"].metrics
    at.number_input(key="bt:ma_crossover:fast_period").set_value(17).run()
    assert any(i.value.startswith("The form differs from this result") for i in at.info)
    refreshed = new_session(dict(at.query_params))
    assert refreshed.number_input(key="bt:ma_crossover:fast_period").value == 17
    assert refreshed.session_state["backtest"]["result"].metrics == ran  # the result of the link, fast 8
    assert any(i.value.startswith("The form differs from this result") and "fast_period 17 here, 8 in the result"
               in i.value for i in refreshed.info), [i.value for i in refreshed.info]
    from threadx.ui import workspace as saved

    assert saved.load_form("params", "ma_crossover")["fast_period"] == 17


def test_a_refresh_keeps_cost_edits_not_run_yet_and_a_new_tab_opens_with_them(workspace):
    """Fee set to 25 bps and max_hold_bars to 48, not run: a refresh kept max_hold_bars and put
    the fee back to the result's 10, the "form differs" note dropping it unsaid (a browser test)."""
    at = open_page("2_Backtest.py")
    at.button(key="bt_run").click().run()
    ran = at.session_state["backtest"]["result"].metrics
    at.number_input(key="bt_fee").set_value(25.0).run()
    at.selectbox(key="bt_fill").set_value("close").run()
    refreshed = new_session(dict(at.query_params))
    assert refreshed.number_input(key="bt_fee").value == 25.0 and refreshed.selectbox(key="bt_fill").value == "close"
    assert refreshed.session_state["backtest"]["result"].metrics == ran  # the link's result, at 10 bps
    note = next(i.value for i in refreshed.info if i.value.startswith("The form differs from this result"))
    assert "fee 25 bps here, 10 bps in the result" in note and "fill close here, next_open in the result" in note
    fresh = new_session({})  # a new tab without a link: the boxes as last left
    assert fresh.number_input(key="bt_fee").value == 25.0
    assert ws.load_costs()["bt_fee"] == 25.0
    data = json.loads(ws.workspace_file().read_text())
    data["costs"].update(bt_fill="sideways", bt_fee="x" * 50, bt_capital=-5)
    ws.workspace_file().write_text(json.dumps(data))
    odd = new_session({})  # values that fit no box are left out
    assert not odd.exception and odd.selectbox(key="bt_fill").value == "next_open"
    assert odd.number_input(key="bt_capital").value == 10_000.0


def test_two_tabs_editing_one_strategys_form_keep_each_others_edits(workspace):
    """Tab B, opened before tab A's edit of fast_period, saved its whole form when its slow_period
    changed: A's fast_period 23 became 10 again (a hostile test in Chromium)."""
    from threadx.ui import workspace as saved

    tab_b = open_page("2_Backtest.py")
    tab_b.selectbox(key="bt_strategy").set_value("ma_crossover").run()
    tab_a = open_page("2_Backtest.py")
    tab_a.selectbox(key="bt_strategy").set_value("ma_crossover").run()
    tab_a.number_input(key="bt:ma_crossover:fast_period").set_value(23).run()
    assert saved.load_form("params", "ma_crossover")["fast_period"] == 23
    tab_b.number_input(key="bt:ma_crossover:slow_period").set_value(120).run()
    form = saved.load_form("params", "ma_crossover")
    assert form["fast_period"] == 23 and form["slow_period"] == 120
