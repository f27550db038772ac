"""A strategies-folder strategy in the running app (AppTest): offered by the Backtest page,
an edit of its file takes effect on the next run without a restart, a link to a backtest of
older code is not re-run as if it were the same, and a file that breaks leaves the page
working with the reason shown."""
from __future__ import annotations

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from apptest_helpers import ROOT, open_page  # noqa: E402

from threadx.strategy.scaffold import new_strategy_file  # noqa: E402

STOP = 'ExitRules(stop_atr=p["atr_stop"], sizing="risk"'
SHORT_HOLD = 'ExitRules(stop_atr=p["atr_stop"], max_hold_bars=2, sizing="risk"'


def _run(at: AppTest) -> dict:
    at.button(key="bt_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    return at.session_state["backtest"]


def test_an_edit_takes_effect_on_the_next_run_without_restart(strategy_dir) -> None:
    path = new_strategy_file("rsi_page")
    at = open_page("2_Backtest.py")
    assert "rsi_page" in at.selectbox(key="bt_strategy").options
    at.selectbox(key="bt_strategy").set_value("rsi_page").run()
    first = _run(at)
    code = first["result"].meta["strategy_code"]
    assert any(f"Code: rsi_page.py @ {code[:8]}" in c.value for c in at.caption)
    link = dict(at.query_params)

    path.write_text(path.read_text().replace(STOP, SHORT_HOLD))
    at.run()  # the shown result was computed with the old code: the page says so
    assert any("The code of rsi_page changed since this result was computed" in i.value for i in at.info)
    second = _run(at)
    assert second["result"].meta["strategy_code"] != code
    assert second["result"].trades["bars_held"].max() <= 2 < first["result"].trades["bars_held"].max()
    assert not at.info

    # the link to the first backtest: not re-run with the new code as if it were the same backtest
    app = AppTest.from_file(str(ROOT / "views" / "2_Backtest.py"), default_timeout=120)
    app.query_params.update(link)
    app.run()
    assert not app.exception
    assert any("computed with other code of strategy 'rsi_page'" in w.value for w in app.warning)
    assert "backtest" not in app.session_state


def test_a_broken_file_leaves_the_page_working(strategy_dir) -> None:
    path = new_strategy_file("rsi_page")
    at = open_page("2_Backtest.py")
    at.selectbox(key="bt_strategy").set_value("rsi_page").run()
    _run(at)
    path.write_text(path.read_text().replace("def exits(p):", "def exits(p)"))
    at.run()
    assert not at.exception
    assert "rsi_page" not in at.selectbox(key="bt_strategy").options
    assert any("Strategy 'rsi_page' is not available now" in w.value and "SyntaxError" in w.value
               and "rsi_page.py:" in w.value for w in at.warning)
    assert at.selectbox(key="bt_strategy").value in at.selectbox(key="bt_strategy").options
    _run(at)  # another strategy still runs


def test_run_pressed_for_a_strategy_that_just_broke_runs_nothing(strategy_dir) -> None:
    """Run backtest pressed after the picked strategy's file broke ran the page's default
    strategy (bb_atr) and showed it, the box still reading the broken one: nothing runs now."""
    path = new_strategy_file("rsi_page")
    at = open_page("2_Backtest.py")
    at.selectbox(key="bt_strategy").set_value("rsi_page").run()
    shown = _run(at)
    path.write_text(path.read_text().replace("def exits(p):", "def exits(p)"))
    at.button(key="bt_run").click().run()
    assert not at.exception
    assert any("Strategy 'rsi_page' is not available now" in w.value and "SyntaxError" in w.value for w in at.warning)
    assert "backtest" not in at.session_state or at.session_state["backtest"] is shown  # no bb_atr result


@pytest.mark.parametrize("page", ["3_Optimisation.py", "4_Validation.py", "2_Backtest.py"])
def test_every_page_says_why_the_sessions_strategy_is_gone(strategy_dir, page) -> None:
    """Switching pages drops the box's own key: the session's strategy, gone since, was
    replaced by the default without a word on every page but the Strategies one."""
    path = new_strategy_file("rsi_page")
    at = AppTest.from_file(str(ROOT / "views" / page), default_timeout=120)
    at.session_state["strategy"] = "rsi_page"
    path.write_text(path.read_text().replace("def exits(p):", "def exits(p)"))
    at.run()
    assert not at.exception
    assert any("Strategy 'rsi_page' is not available now" in w.value and "rsi_page.py:" in w.value
               for w in at.warning), [w.value for w in at.warning]


def test_a_link_to_a_strategy_that_does_not_load_says_why(strategy_dir) -> None:
    path = new_strategy_file("rsi_page")
    path.write_text(path.read_text().replace("def exits(p):", "def exits(p)"))
    at = AppTest.from_file(str(ROOT / "views" / "3_Optimisation.py"), default_timeout=120)
    at.query_params["strategy"] = "rsi_page"
    at.run()
    assert any("The link names strategy **rsi_page**, which is not available" in w.value and "SyntaxError" in w.value
               for w in at.warning), [w.value for w in at.warning]


@pytest.mark.parametrize("page, key", [("2_Backtest.py", "bt_strategy"), ("3_Optimisation.py", "opt_strategy"),
                                       ("4_Validation.py", "wf_strategy")])
def test_the_pages_that_run_a_strategy_say_its_last_check_failed(strategy_dir, page, key) -> None:
    """A strategy whose check failed for look-ahead was backtested and swept with nothing on those
    pages saying so: only the Strategies page showed it. An edit (other code) ends the warning."""
    import threadx
    from threadx.checks.store import save_report
    from threadx.checks.strategy import CheckReport, CheckResult

    path = new_strategy_file("rsi_peek")
    spec = threadx.get_strategy("rsi_peek")
    save_report(spec, CheckReport("rsi_peek", 1000, [
        CheckResult("lookahead", False, "the signals at bar 20 change when later bars change"),
        CheckResult("accounting", True, "adds up")]))
    at = open_page(page)
    at.selectbox(key=key).set_value("rsi_peek").run()
    assert not at.exception, at.exception
    warned = [w.value for w in at.warning if w.value.startswith("The last check of rsi_peek")]
    assert warned == ["The last check of rsi_peek (on this code) failed: lookahead. Its figures here may be wrong "
                      "(a look-ahead makes them look better than any trading could); see the Strategies page."]
    path.write_text(path.read_text().replace(STOP, SHORT_HOLD))  # other code: that check says nothing of it
    at.run()
    assert not [w for w in at.warning if w.value.startswith("The last check of rsi_peek")]


def test_a_check_the_strategy_stopped_by_raising_is_said_not_run_not_failed(strategy_dir) -> None:
    """A strategy that raised in every check read "failed: lookahead, signals, determinism, ...
    (a look-ahead makes them look better...)" on the pages: nothing had been checked."""
    import threadx
    from threadx.checks.store import save_report
    from threadx.checks.strategy import CheckReport, CheckResult
    from threadx.ui.strategies import failed_check_note

    new_strategy_file("rsi_boom")
    spec = threadx.get_strategy("rsi_boom")
    error = {"error": "ValueError: boom", "location": "rsi_boom.py:30 in signals"}
    save_report(spec, CheckReport("rsi_boom", 1000, [
        CheckResult("lookahead", False, "the strategy raised ValueError: boom", data=error),
        CheckResult("accounting", False, "the strategy raised ValueError: boom", data=error)]))
    assert failed_check_note(spec) == (
        "The last check of rsi_boom (on this code) could not run: the strategy raised ValueError: boom (in lookahead, "
        "accounting). Its figures here are not checked; see the Strategies page.")
    save_report(spec, CheckReport("rsi_boom", 1000, [
        CheckResult("lookahead", False, "the signals at bar 20 change when later bars change"),
        CheckResult("accounting", False, "the strategy raised ValueError: boom", data=error)]))
    assert failed_check_note(spec) == (
        "The last check of rsi_boom (on this code) failed: lookahead. Its figures here may be wrong (a look-ahead "
        "makes them look better than any trading could) (accounting could not run: the strategy raised ValueError: "
        "boom); see the Strategies page.")


def test_a_strategy_whose_code_crashes_its_process_leaves_the_page_working(strategy_dir) -> None:
    """Its backtest runs in a process of its own (threadx.ui.user_code): a segmentation
    fault there is an error on the page, with the file and line, and the next run works."""
    path = new_strategy_file("rsi_page")
    start = '    rsi = ind["rsi"]["value"]\n'
    path.write_text(path.read_text().replace(start, start + "    if p['rsi_period'] == 13:\n        import ctypes\n"
                                             "        ctypes.string_at(0)\n", 1))
    at = open_page("2_Backtest.py")
    at.selectbox(key="bt_strategy").set_value("rsi_page").run()
    at.number_input(key="bt:rsi_page:rsi_period").set_value(13).run()
    at.button(key="bt_run").click().run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "killed by SIGSEGV" in errors[0], errors
    assert any('rsi_page.py", line' in c.value for c in at.code)  # where it crashed, from the fault handler
    assert "backtest" not in at.session_state
    at.number_input(key="bt:rsi_page:rsi_period").set_value(14).run()
    shown = _run(at)
    assert shown["result"].metrics["n_trades"] > 0 and shown["overlays"] is not None
