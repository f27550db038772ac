"""Every page of the workstation under Streamlit's AppTest, on the synthetic sample."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from apptest_helpers import open_page, run_until, set_ranges  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def page(name: str) -> AppTest:
    return open_page(name)


def test_main_app_renders_with_sidebar():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    sidebar_text = " ".join(m.value for m in at.sidebar.markdown)
    assert "synthetic" in sidebar_text.lower() and "CPU" in sidebar_text


def test_data_page_renders_and_reports_bad_files(workspace):
    at = page("1_Data.py")
    assert any("synthetic" in str(df.value) for df in at.dataframe) or at.dataframe
    bad = workspace / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    at.text_input(key="data_path").set_value(str(bad))
    at.button(key="data_import").click().run()
    assert not at.exception
    assert any("Import failed" in e.value and "time column" in e.value for e in at.error)


def test_backtest_page_default_run_shows_metrics():
    at = page("2_Backtest.py")
    assert at.selectbox(key="bt_strategy").value == "bb_atr"
    # widgets start at the declared defaults
    assert at.number_input(key="bt:bb_atr:bb_period").value == 20
    assert at.number_input(key="bt:bb_atr:entry_z").value == 1.0
    at.button(key="bt_run").click().run()
    assert not at.exception, at.exception
    labels = [m.label for m in at.metric]
    assert "Sharpe" in labels and "Trades" in labels
    assert not at.error
    at.number_input(key="bt:bb_atr:entry_z").set_value(1.2).run()  # a float as its box shows it ("1", not "1.0")
    assert any("entry_z 1.2 here, 1.0 in the result" in i.value for i in at.info), [i.value for i in at.info]


def test_a_result_whose_form_was_changed_since_says_so():
    """A param or an option changed after a run left the old cards and chart on display with
    nothing to say they were not the form's (a browser review: fast_period 5 in the form,
    SMA 10 | SMA 30 in the legend)."""
    at = page("2_Backtest.py")
    at.selectbox(key="bt_strategy").set_value("ma_crossover").run()
    at.button(key="bt_run").click().run()
    assert not at.exception, at.exception
    differs = lambda: [i.value for i in at.info if i.value.startswith("The form differs from this result")]
    assert not differs() and any(c.value.startswith("Params: fast_period 10") for c in at.caption)
    at.number_input(key="bt:ma_crossover:fast_period").set_value(5).run()
    assert differs() and "fast_period 5 here, 10 in the result" in differs()[0]
    at.number_input(key="bt_fee").set_value(25.0).run()
    assert "fee 25 bps here, 10 bps in the result" in differs()[0]
    at.number_input(key="bt_leverage").set_value(0.5).run()  # the widget allows it, the engine refuses it
    assert "an option the run would refuse: leverage" in differs()[0] and "capital" not in differs()[0]
    at.number_input(key="bt_leverage").set_value(0.0).run()
    at.button(key="bt_run").click().run()
    assert not differs() and any(c.value.startswith("Params: fast_period 5") for c in at.caption)
    bt_id = at.query_params["bt"]  # the link's id, also on the page (it was only in the URL)
    assert any(c.value.startswith("Params: ") and c.value.endswith(f" · Backtest id: {bt_id}") for c in at.caption)


def test_backtest_page_bad_params_show_an_error():
    at = page("2_Backtest.py")
    at.selectbox(key="bt_strategy").set_value("ma_crossover").run()
    at.number_input(key="bt:ma_crossover:fast_period").set_value(50).run()
    at.number_input(key="bt:ma_crossover:slow_period").set_value(20).run()
    assert not at.exception
    assert any("fast_period < slow_period" in e.value for e in at.error)  # said before Run, which waits
    assert at.button(key="bt_run").disabled


LONG_GRID_EXITS = {"stop_loss_pct": (0.0, 2.0, 0.5)}  # x5 a long grid's combos, no indicator more


def grid_page(fast=(5, 15, 5), slow=(20, 40, 10)) -> AppTest:
    at = page("3_Optimisation.py")
    at.selectbox(key="opt_strategy").set_value("ma_crossover").run()
    return set_ranges(at, "opt:ma_crossover", {"fast_period": fast, "slow_period": slow})


def test_optimisation_small_grid_runs_to_completion():
    at = grid_page()
    assert any("**9** combos" in i.value for i in at.info)
    at.button(key="opt_launch").click().run()
    assert not at.error, [e.value for e in at.error]
    run_until(at, lambda a: bool(a.session_state["sweep_run"]) if "sweep_run" in a.session_state else False)
    at.run()
    assert at.dataframe, "results table missing"
    assert any(chart for chart in at.get("plotly_chart"))
    assert at.button(key="opt_open_best")


def launch_long_sweep() -> tuple[AppTest, str, object]:
    """(page, job id, registry) of a sweep of ~500k combos (~20 s on 2 cores) launched from the page, once
    running: long enough that a slow test machine still finds it running when it acts on it."""
    from threadx.ui.jobs import JobRegistry

    at = set_ranges(grid_page(fast=(2, 200, 1), slow=(3, 600, 1)), "opt:ma_crossover", LONG_GRID_EXITS)
    at.button(key="opt_launch").click().run()
    job_id = at.session_state["sweep_job"]
    registry = JobRegistry()
    wait_while(lambda: registry.get(job_id).state != "running")
    return at, job_id, registry


def wait_while(condition, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline and condition():
        time.sleep(0.3)


def test_optimisation_stop_cancels_a_sweep():
    at, job_id, registry = launch_long_sweep()
    at.run()
    # Launch is held while the tab's sweep runs (a second click queued a duplicate, and the tab lost the first)
    assert at.button(key="opt_launch").disabled
    assert any(f"This tab's sweep is running (job {job_id})" in c.value for c in at.caption)
    at.button(key="opt_stop").click().run()
    wait_while(lambda: registry.get(job_id).state == "running")
    assert registry.get(job_id).state == "cancelled"


def test_a_new_tab_finds_the_running_sweep_and_can_stop_it():
    """A tab closed while its sweep ran, and the page opened again: the job was only in the
    sidebar's list, with no progress on the page, no Stop, and its run not shown at the end."""
    _, job_id, registry = launch_long_sweep()
    fresh = page("3_Optimisation.py")  # a new session: nothing in its state
    assert fresh.session_state["sweep_job"] == job_id
    # a link naming a job not known here follows none, and says so (the one active job was shown as it)
    for bogus in ("20261204-000000-000000-dead", "../../etc"):
        linked = open_page("3_Optimisation.py", job=bogus)
        assert not linked.exception
        assert "sweep_job" not in linked.session_state or not linked.session_state["sweep_job"]
        assert "opt_stop" not in [b.key for b in linked.button]
        assert any("which is not a sweep job known here" in w.value for w in linked.warning), bogus
    fresh.button(key="opt_stop").click().run()
    wait_while(lambda: registry.get(job_id).state == "running")
    assert registry.get(job_id).state == "cancelled"


def test_a_refreshed_tab_follows_its_own_sweep_not_another_tabs():
    """Tab A's sweep running, tab B's launched after it: a refresh of A followed the newest
    active sweep, B's, showing it with a Stop that stopped B. The URL's ``job`` names the
    followed job; a new session with no job named, and several active, follows none."""
    tab_a, a_id, registry = launch_long_sweep()
    tab_a.run()
    assert tab_a.query_params.get("job") == a_id
    tab_b = grid_page(fast=(2, 150, 1), slow=(3, 500, 1))
    tab_b.button(key="opt_launch").click().run()
    b_id = tab_b.session_state["sweep_job"]
    try:
        assert b_id != a_id and registry.get(b_id).is_active and registry.get(a_id).is_active
        new_tab = page("3_Optimisation.py")  # several active and none named: none followed
        assert not ("sweep_job" in new_tab.session_state and new_tab.session_state["sweep_job"])
        assert "opt_stop" not in [b.key for b in new_tab.button]
        refreshed = open_page("3_Optimisation.py", job=a_id)
        assert refreshed.session_state["sweep_job"] == a_id
        refreshed.button(key="opt_stop").click().run()
        wait_while(lambda: registry.get(a_id).is_active)
        assert registry.get(a_id).state == "cancelled" and not registry.get(b_id).stop_requested
        # its link copied before the stop: the ended job, with what it stored (it opened an empty form)
        ended = open_page("3_Optimisation.py", job=a_id)
        assert not ended.exception and ended.session_state["sweep_job"] == a_id
        shown = " ".join(x.value for x in [*ended.warning, *ended.info, *ended.success, *ended.caption,
                                           *ended.markdown])
        run_id = registry.get(a_id).run_id  # (what it stored by then depends on when the stop came)
        assert (f"Stopped: the finished combos are stored in run `{run_id}`" in shown
                or "Stopped before any combo was stored: nothing to resume" in shown), shown[:2000]
    finally:
        for job_id in (a_id, b_id):
            registry.stop(job_id)
        wait_while(lambda: any(registry.get(j).is_active for j in (a_id, b_id)))


def test_a_monte_carlo_n_above_the_space_is_announced_as_the_space():
    """bb_atr's default space has 41 combos: n = 300,000 was announced as 300,000 combos ("minutes")
    and the job ran 41."""
    at = page("3_Optimisation.py")
    at.selectbox(key="opt_strategy").set_value("bb_atr").run()
    at.radio(key="opt_method").set_value("Monte Carlo").run()
    at.number_input(key="opt_n").set_value(300_000).run()
    assert not at.exception, at.exception
    (plan,) = [i.value for i in at.info if "combos drawn from a space of" in i.value]
    assert plan.startswith("**41** combos drawn from a space of 41") and "each combo runs once" in plan


def test_optimisation_empty_range_shows_an_error():
    at = grid_page(fast=(20, 5, 5))
    assert any("empty range" in e.value for e in at.error)
    assert at.button(key="opt_launch").disabled


def test_system_monitor_renders():
    at = page("5_System_monitor.py")
    labels = [m.label for m in at.metric]
    assert "CPU" in labels and "RAM" in labels and "Hit rate" in labels
