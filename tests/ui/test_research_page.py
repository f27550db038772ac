"""The Research page under Streamlit's AppTest, on the synthetic sample: the empty state, a
window that does not fit, a small research job to its matrix, a stored two-asset research and
"Open report" to the Validation page."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from apptest_helpers import ROOT, charts, open_page, run_until, set_ranges, texts  # noqa: E402

SAMPLE = "synthetic/BTC_USDT-1h"
SPACE = {"fast_period": [5, 10], "slow_period": [30, 60]}


def stored_research(workspace) -> str:
    """ma_crossover on the sample and on a second synthetic asset (a 4-combo grid), via the API."""
    from threadx.data.io import write_ohlcv
    from threadx.data.synthetic import ensure_sample, generate_synthetic
    from threadx.validation.research import research

    ensure_sample()
    path = workspace / "data" / "test" / "XYZ_USDT-1h.parquet"
    write_ohlcv(generate_synthetic("XYZ_USDT", days=730, seed=11), path)
    research("ma_crossover", [SAMPLE, str(path)], SPACE, research_id="two-assets", sampler="grid", is_days=180,
             oos_days=120, bootstrap=200, S=8, workers=1)
    return "two-assets"


def test_empty_state_says_what_to_do():
    at = open_page("7_Research.py")
    assert at.title[0].value == "Research"
    info = texts(at.info)
    assert "No stored research yet" in info and "Launch research" in info
    assert at.multiselect(key="rs_strategies").value == ["bb_atr"]  # the flagship, as on every page
    assert at.multiselect(key="rs_datasets").value == [SAMPLE]
    assert not at.button(key="rs_launch").disabled
    assert not at.error and not at.warning


def test_window_that_does_not_fit_says_so_and_blocks_launch():
    at = open_page("7_Research.py")
    at.number_input(key="rs_is_days").set_value(800).run()
    assert not at.exception, at.exception
    assert "no window fits on synthetic/BTC_USDT-1h" in texts(at.warning)
    assert at.button(key="rs_launch").disabled


def test_datasets_of_two_timeframes_get_a_note_and_the_sessions_strategy_comes_first(workspace):
    """A winner chosen on 4h was traded unchanged on 1h (108 bars: 18 days there, 4.5 here) without a
    word; the form started on ma_crossover whatever strategy the session had picked."""
    from threadx.data.io import write_ohlcv
    from threadx.data.synthetic import ensure_sample, generate_synthetic

    ensure_sample()
    write_ohlcv(generate_synthetic("XYZ_USDT", "4h", days=400, seed=5), workspace / "data" / "test" / "XYZ_USDT-4h.parquet")
    at = AppTest.from_file(str(ROOT / "views" / "7_Research.py"), default_timeout=120)
    at.session_state["strategy"] = "bb_atr"
    at.run()
    assert at.multiselect(key="rs_strategies").value == ["bb_atr"]
    at.multiselect(key="rs_datasets").set_value([SAMPLE, "test/XYZ_USDT-4h"]).run()
    assert not at.exception, at.exception
    assert any(w.startswith("Note: these datasets are of several timeframes (1h: synthetic/BTC_USDT-1h; 4h: "
                            "test/XYZ_USDT-4h)") for w in [x.value for x in at.warning]), texts(at.warning)


def test_small_research_job_runs_to_its_matrix():
    at = open_page("7_Research.py", strategy="ma_crossover")
    set_ranges(at, "rs:ma_crossover", {"fast_period": (5, 15, 5), "slow_period": (20, 40, 10)})  # 3 x 3 grid
    at.selectbox(key="rs_sampler").set_value("random").run()
    at.number_input(key="rs_n").set_value(800).run()  # above the 9 combos: the sampler takes the grid
    assert ("the whole grid (9 combos: n = 800 takes every one) in every window, then 1 transfer backtest."
            in texts(at.info)), texts(at.info)  # was "800 random combos ... 1 transfer backtests"
    at.selectbox(key="rs_sampler").set_value("grid")
    at.number_input(key="rs_is_days").set_value(240)
    at.number_input(key="rs_oos_days").set_value(240)
    at.number_input(key="rs_boot").set_value(200)
    at.number_input(key="rs_workers").set_value(1).run()
    assert "**1 cell**" in texts(at.info)
    at.button(key="rs_launch").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.session_state["rs_job"]
    assert at.get("progress") and any(b.key == "rs_stop" for b in at.button)  # progress and Stop from the start
    run_until(at, lambda a: bool(a.session_state["rs_run"]) if "rs_run" in a.session_state else False)
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    titles = charts(at)
    assert any(t.startswith("Strategy × asset") for t in titles), titles
    assert any(t.startswith("Transfer of ma_crossover") for t in titles), titles
    table = next(df for df in at.dataframe if "grade" in df.value.columns).value
    assert list(table["dataset"]) == [SAMPLE] and table["run_id"].iloc[0].endswith("-c0")
    assert at.selectbox(key="rs_history").value == at.session_state["rs_run"]
    heading = [c.value for c in at.caption if c.value.startswith("ma_crossover on 1 dataset ·")]
    assert heading and "IS 240 / OOS 240 days · grid sampler (9 combos run) · completed" in heading[0], heading


def test_stored_research_shows_two_columns_kept_lines_and_opens_a_report(workspace):
    stored_research(workspace)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)  # the app, so switch_page works
    at.run()
    at.switch_page("views/7_Research.py").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="rs_history").value == "two-assets"
    titles = charts(at)
    matrix = next(spec for t, spec in titles.items() if t.startswith("Strategy × asset"))
    heat = matrix["data"][0]
    assert heat["x"] == [SAMPLE, "XYZ_USDT-1h"] and heat["y"] == ["ma_crossover"]
    assert all(" · " in text for text in heat["text"][0])  # grade letter + OOS Sharpe
    transfer = next(spec for t, spec in titles.items() if t.startswith("Transfer of ma_crossover"))
    assert len(transfer["data"][0]["y"]) == 2 and len(transfer["data"][0]["x"]) == 2
    markdown = texts(at.markdown)
    assert markdown.count("of 1** other assets") == 2, markdown
    shown = next(df for df in at.dataframe if "grade" in df.value.columns)
    table = json.loads(shown.proto.columns)
    assert table["consistency"]["type_config"]["format"] == "%.2f %%"  # in percent points, the cards' decimals
    from threadx.validation.research import load_research

    cells = load_research("two-assets").cells
    assert list(shown.value["consistency"]) == pytest.approx([c["consistency"] * 100.0 for c in cells], rel=1e-15)
    cell = at.selectbox(key="rs_cell")
    assert cell.options and cell.value.endswith("-c0")
    at.selectbox(key="rs_cell").set_value("two-assets-c1").run()
    at.button(key="rs_open").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Validation"
    assert at.session_state["wf_run"] == "two-assets-c1"
    assert "Walk-forward two-assets-c1" in texts(at.subheader)


def test_a_grid_over_the_walk_forward_limit_is_refused_before_launch():
    """Several strategies run on their declared ranges: ma_crossover's grid (3.9 million combos)
    launched a job whose every cell failed."""
    at = open_page("7_Research.py")
    at.multiselect(key="rs_strategies").set_value(["ma_crossover", "bb_atr"])
    at.selectbox(key="rs_sampler").set_value("grid").run()
    assert not at.exception, at.exception
    assert any("ma_crossover's grid has 3,931,620 combos, over the walk-forward limit of 200,000" in w.value
               for w in at.warning), [w.value for w in at.warning]
    assert at.button(key="rs_launch").disabled


def test_a_failed_cell_is_named_with_its_error_and_the_others_shown(workspace):
    """A cell whose walk-forward failed is listed with its error above the matrix, reads "failed"
    in it, and is not offered to "Open report" (it stored no walk-forward)."""
    from threadx.validation.research import load_research, save_research

    stored_research(workspace)
    result = load_research("two-assets")
    result.cells[1] = {"strategy": "ma_crossover", "dataset": "XYZ_USDT-1h", "run_id": None, "params": {},
                       "last_window_params": {}, "error": "strategies/x.py:3: KeyError: 'missing'"}
    save_research(result)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("views/7_Research.py").run()
    assert not at.exception, at.exception
    assert any("1 of 2 cells failed" in e.value and "strategies/x.py:3: KeyError: 'missing'" in e.value
               for e in at.error), texts(at.error)
    matrix = next(spec for t, spec in charts(at).items() if t.startswith("Strategy × asset"))
    assert matrix["data"][0]["text"][0][1] == "failed"
    assert [o.split(" · ")[-1] for o in at.selectbox(key="rs_cell").options] == ["two-assets-c0"]



def test_a_research_without_any_whole_period_winner_shows_its_empty_transfer(workspace):
    """No combo reaches min_trades on the whole period: every transfer row holds a note and no
    figures; the CLI and the page (which opens on the newest research) raised a KeyError."""
    from threadx.validation.research import load_research, research

    research("ma_crossover", [SAMPLE, "synthetic/ETH_USDT-1h"], SPACE, research_id="no-winner", sampler="grid",
             is_days=180, oos_days=120, bootstrap=200, S=8, workers=1, min_trades=10**6)
    stored = load_research("no-winner")
    assert stored.transfer and all("sharpe" not in t for t in stored.transfer)
    matrix = stored.transfer_matrix("ma_crossover")
    assert matrix.shape == (2, 2) and matrix.isna().all().all()
    at = open_page("7_Research.py")
    assert at.selectbox(key="rs_history").value == "no-winner"
    assert any(t.startswith("Transfer of ma_crossover") for t in charts(at))


def test_a_damaged_stored_research_is_named_not_silently_left_out(workspace):
    """A truncated research.json was left out of the history box: the page never said it was damaged."""
    stored_research(workspace)
    path = workspace / "results" / "research" / "two-assets" / "research.json"
    path.write_text(path.read_text()[:200])
    at = open_page("7_Research.py")
    assert any(w.startswith("Stored research two-assets is damaged and left out of the list: ")
               for w in [x.value for x in at.warning]), texts(at.warning)


def test_a_stored_research_whose_grade_is_no_letter_is_refused_as_damaged(workspace):
    """The matrix draws each cell's grade as Plotly text, which renders tags: a research handed in
    with a link as a grade showed it in the heatmap."""
    import json

    stored_research(workspace)
    path = workspace / "results" / "research" / "two-assets" / "research.json"
    data = json.loads(path.read_text())
    data["cells"][0]["grade"] = "<a href='https://evil.example'>A</a>"
    path.write_text(json.dumps(data))
    at = open_page("7_Research.py")
    warned = texts(at.warning)
    assert "Stored research two-assets is damaged and left out of the list: " in warned and "grade" in warned, warned
