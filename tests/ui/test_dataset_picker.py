"""The dataset picker of every page shows the session's dataset, whatever another page's box held."""
from __future__ import annotations

import pytest

pytest.importorskip("streamlit")

from apptest_helpers import ROOT  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402


def test_a_page_switch_keeps_the_dataset_set_by_the_app():
    """A dataset set by a link or Open in Backtest (not picked in this box) stayed behind a stale
    value of the box: after a page switch the browser showed the list's first dataset, and the
    next backtest ran on it."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("views/1_Data.py").run()
    assert at.selectbox(key="dataset_picker").value == "synthetic/BTC_USDT-1h"
    at.session_state["dataset"] = "synthetic/SOL_USDT-1h"  # as Open in Backtest or a ?dataset= link sets it
    for page in ("views/2_Backtest.py", "views/3_Optimisation.py", "views/1_Data.py"):
        at.switch_page(page).run()
        assert not at.exception, at.exception
        assert at.selectbox(key="dataset_picker").value == "synthetic/SOL_USDT-1h", page
        assert at.session_state["dataset"] == "synthetic/SOL_USDT-1h", page
    at.selectbox(key="dataset_picker").set_value("synthetic/ETH_USDT-1h").run()  # a pick by hand
    assert at.session_state["dataset"] == "synthetic/ETH_USDT-1h"
    at.switch_page("views/2_Backtest.py").run()
    assert at.selectbox(key="dataset_picker").value == "synthetic/ETH_USDT-1h"


def test_research_proposes_the_sessions_dataset():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.session_state["dataset"] = "synthetic/ETH_USDT-1h"
    at.switch_page("views/7_Research.py").run()
    assert not at.exception, at.exception
    assert at.multiselect(key="rs_datasets").value == ["synthetic/ETH_USDT-1h"]


def test_the_set_up_forms_keep_their_values_through_a_visit_to_another_page():
    """A Monte Carlo n of 300,000, a walk-forward's windows, a research's datasets: back at their
    defaults after a look at another page while the job ran (Streamlit drops undrawn widgets)."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("views/3_Optimisation.py").run()
    at.radio(key="opt_method").set_value("Monte Carlo").run()
    at.number_input(key="opt_n").set_value(12_345).run()
    range_key = next(k for k in (n.key for n in at.number_input) if k and k.startswith("opt:") and k.endswith(":max"))
    at.number_input(key=range_key).set_value(at.number_input(key=range_key).value - 1).run()
    set_max = at.number_input(key=range_key).value
    at.switch_page("views/4_Validation.py").run()
    at.number_input(key="wf_oos_days").set_value(45.0).run()
    at.switch_page("views/7_Research.py").run()
    at.multiselect(key="rs_datasets").set_value(["synthetic/BTC_USDT-1h", "synthetic/ETH_USDT-1h"]).run()
    at.switch_page("views/1_Data.py").run()
    at.switch_page("views/3_Optimisation.py").run()
    assert not at.exception, at.exception
    assert at.radio(key="opt_method").value == "Monte Carlo" and at.number_input(key="opt_n").value == 12_345
    assert at.number_input(key=range_key).value == set_max
    at.switch_page("views/4_Validation.py").run()
    assert at.number_input(key="wf_oos_days").value == 45.0
    at.switch_page("views/7_Research.py").run()
    assert at.multiselect(key="rs_datasets").value == ["synthetic/BTC_USDT-1h", "synthetic/ETH_USDT-1h"]


def test_every_page_starts_on_the_same_strategy():
    """Backtest opened on bb_atr, Optimisation, Validation and Research on ma_crossover, Portfolio on
    bb_atr: a link to one page showed another strategy than the page a user came from."""
    shown = {}
    for page, read in (("2_Backtest.py", lambda at: at.selectbox(key="bt_strategy").value),
                       ("3_Optimisation.py", lambda at: at.selectbox(key="opt_strategy").value),
                       ("4_Validation.py", lambda at: at.selectbox(key="wf_strategy").value),
                       ("7_Research.py", lambda at: at.multiselect(key="rs_strategies").value[0]),
                       ("8_Portfolio.py", lambda at: at.selectbox(key="pf_strategy").value)):
        at = AppTest.from_file(str(ROOT / "views" / page), default_timeout=120).run()
        assert not at.exception, (page, at.exception)
        shown[page] = read(at)
    assert set(shown.values()) == {"bb_atr"}, shown


def test_a_new_tab_opens_on_the_last_dataset_and_strategy_chosen(workspace):
    """A new tab (no link) opened on the synthetic BTC sample and the default strategy, whatever the
    user had been working on; what a session merely starts on is not written."""
    from threadx.ui import workspace as saved

    first = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    first.switch_page("views/2_Backtest.py").run()
    assert not first.exception, first.exception
    assert saved.last_choice() == {} and not (workspace / "results" / "workspace.json").exists()
    first.selectbox(key="dataset_picker").set_value("synthetic/ETH_USDT-1h").run()
    first.selectbox(key="bt_strategy").set_value("supertrend").run()
    assert saved.last_choice() == {"dataset": "synthetic/ETH_USDT-1h", "strategy": "supertrend"}

    tab = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    tab.switch_page("views/3_Optimisation.py").run()
    assert not tab.exception, tab.exception
    assert tab.selectbox(key="dataset_picker").value == "synthetic/ETH_USDT-1h"
    assert tab.selectbox(key="opt_strategy").value == "supertrend"
    assert tab.query_params["dataset"] == "synthetic/ETH_USDT-1h"  # the URL names it: a refresh keeps it

    link = AppTest.from_file(str(ROOT / "views" / "4_Validation.py"), default_timeout=120)
    link.query_params["strategy"] = "ma_crossover"  # a link wins over the last choice, and is not one
    link.run()
    assert link.selectbox(key="wf_strategy").value == "ma_crossover"
    assert link.selectbox(key="dataset_picker").value == "synthetic/ETH_USDT-1h"
    assert saved.last_choice()["strategy"] == "supertrend"


def test_a_last_choice_that_is_gone_falls_back_quietly(workspace):
    from threadx.ui import workspace as saved

    saved.save_last_choice("dataset", "synthetic/NOPE_USDT-1h")
    saved.save_last_choice("strategy", "no_such_strategy")
    at = AppTest.from_file(str(ROOT / "views" / "2_Backtest.py"), default_timeout=120).run()
    assert not at.exception and not at.warning, (at.exception, at.warning)
    assert at.selectbox(key="dataset_picker").value == "synthetic/BTC_USDT-1h"
    assert at.selectbox(key="bt_strategy").value == "bb_atr"


def test_an_unknown_link_names_what_is_shown_instead(workspace):
    """With a last choice saved, ?dataset=<unknown> warned "showing synthetic/BTC_USDT-1h" while the page
    showed the last choice; an unknown strategy said "the page's default"."""
    from threadx.ui import workspace as saved

    saved.save_last_choice("dataset", "synthetic/ETH_USDT-1h")
    at = AppTest.from_file(str(ROOT / "views" / "2_Backtest.py"), default_timeout=120)
    at.query_params["dataset"], at.query_params["strategy"] = "nope/NOPE-1h", "no_such"
    at.run()
    assert not at.exception, at.exception
    warnings = [w.value for w in at.warning]
    assert any("**nope/NOPE-1h**" in w and "showing synthetic/ETH_USDT-1h" in w for w in warnings), warnings
    assert any("**no_such**" in w and "showing bb_atr instead" in w for w in warnings), warnings
    assert at.selectbox(key="dataset_picker").value == "synthetic/ETH_USDT-1h"
