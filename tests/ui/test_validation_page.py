"""The Validation page under Streamlit's AppTest, on the synthetic sample: empty state, the
window timeline, a small walk-forward job to its results, and the report of a stored sweep."""
from __future__ import annotations

import json
import re
import time

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from apptest_helpers import open_page, run_until, texts  # noqa: E402
from apptest_helpers import set_ranges as editor_ranges  # noqa: E402

from threadx.units import format_metric  # noqa: E402
from threadx.validation.storage import load_walk_forward  # noqa: E402


def page() -> AppTest:
    return open_page('4_Validation.py', strategy="ma_crossover")  # its small grid: quick walk-forwards


def chart_titles(at: AppTest) -> list[str]:
    import json

    titles = []
    for element in at.get("plotly_chart"):
        spec = json.loads(element.proto.spec)
        titles.append(str(spec.get("layout", {}).get("title", {}).get("text", "")))
    return titles


def set_ranges(at: AppTest, strategy: str, ranges: dict) -> None:
    """Pick ``strategy`` and put each param of ``ranges`` on its (min, max, step) range."""
    at.selectbox(key="wf_strategy").set_value(strategy).run()
    editor_ranges(at, f"wf:{strategy}", ranges)


def small_walk_forward(at: AppTest, is_days: float = 120, oos_days: float = 60) -> AppTest:
    """ma_crossover on a 3 x 3 grid with long windows: a few seconds end to end."""
    set_ranges(at, "ma_crossover", {"fast_period": (5, 15, 5), "slow_period": (20, 40, 10)})
    at.number_input(key="wf_is_days").set_value(is_days)
    at.number_input(key="wf_oos_days").set_value(oos_days)
    at.number_input(key="wf_boot").set_value(200)
    at.number_input(key="wf_S").set_value(8)
    at.run()
    assert not at.exception, at.exception
    return at


def test_page_renders_with_no_runs_and_says_what_to_do():
    at = page()
    assert [t.label for t in at.tabs] == ["Walk-forward", "Validate a sweep"]
    info = texts(at.info)
    assert "Launch walk-forward" in info
    assert "No stored sweep yet" in info and "Optimisation" in info
    assert any("walk-forward windows" in t for t in chart_titles(at))  # the timeline is drawn before any run
    assert not at.error


def test_window_timeline_counts_the_planned_windows():
    at = page()
    at.number_input(key="wf_is_days").set_value(120)
    at.number_input(key="wf_oos_days").set_value(60).run()
    assert not at.exception, at.exception
    # 730 days of 1h bars: (730 - 120) // 60 = 10 complete OOS windows
    assert "**10 windows**" in texts(at.info)
    assert any(t.startswith("10 walk-forward windows") for t in chart_titles(at))
    at.toggle(key="wf_anchored").set_value(True).run()
    assert any(t.startswith("10 walk-forward windows: anchored") for t in chart_titles(at))
    # a step longer than the OOS window spaces the windows out
    at.number_input(key="wf_step_days").set_value(120).run()
    assert "**5 windows**" in texts(at.info)


def test_window_that_does_not_fit_says_so_and_blocks_launch():
    at = page()
    at.number_input(key="wf_is_days").set_value(700)
    at.number_input(key="wf_oos_days").set_value(60).run()
    assert not at.exception, at.exception
    assert "no walk-forward window fits" in texts(at.warning)
    assert at.button(key="wf_launch").disabled
    assert any("No walk-forward window fits" in str(c.proto.spec) for c in at.get("plotly_chart"))


def test_an_odd_or_too_large_S_and_a_huge_fee_block_launch_before_the_click():
    """S = 15 was refused only once Launch was pressed ("Cannot launch: S must be an even number"), S = 24..32
    within the box's bounds likewise, and a fee of 1e9 bps was taken by the box."""
    at = page()
    for S, said in ((15, "S must be an even number >= 2 (the paper suggests 16), got 15"),
                    (24, "PBO blocks (S, even) must be between 2 and 22, got 24")):
        at.number_input(key="wf_S").set_value(S).run()
        assert not at.exception, at.exception
        assert any(said in w.value for w in at.warning), [w.value for w in at.warning]
        assert at.button(key="wf_launch").disabled
    at.number_input(key="wf_S").set_value(16)
    at.number_input(key="wf_is_days").set_value(0.0).run()  # said once, by the box (and again in the plan's words)
    assert [w.value for w in at.warning if "Cannot run" in w.value] == [
        "Cannot run: In-sample (days) must be at least 1, got 0."]
    at.number_input(key="wf_is_days").set_value(120.0)
    at.number_input(key="wf_fee").set_value(1e9).run()
    assert any("Fee (bps) must be between 0 and 1,000, got 1,000,000,000" in w.value for w in at.warning), \
        [w.value for w in at.warning]
    at.number_input(key="wf_fee").set_value(10.0).run()
    assert not [w for w in at.warning if "Cannot run" in w.value] and not at.button(key="wf_launch").disabled


def test_a_monte_carlo_n_above_the_space_is_planned_as_the_space():
    """n = 10^12 was planned as 10^12 combos, "refused", with Launch enabled (the job drew the
    whole space)."""
    at = page()
    at.selectbox(key="wf_sampler").set_value("random").run()
    at.number_input(key="wf_n").set_value(10**12).run()
    assert not at.exception, at.exception
    plan = texts(at.info)
    assert "**1,000,000,000,000 combos**" not in plan and "refused" not in plan and "combos** run in every" in plan
    assert not at.button(key="wf_launch").disabled  # (the walk-forward draws every combo of the space)


def test_small_walk_forward_job_shows_results_and_grade_card():
    at = small_walk_forward(page())
    assert "**10 windows**" in texts(at.info) and "**9 combos**" in texts(at.info)
    at.button(key="wf_launch").click().run()
    assert not at.error, [e.value for e in at.error]
    assert at.session_state["wf_job"]
    run_until(at, lambda a: "wf_run" in a.session_state and bool(a.session_state["wf_run"]))
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    labels = [m.label for m in at.metric]
    for label in ("Grade", "Efficiency", "Consistency", "OOS return", "OOS Sharpe", "OOS max drawdown", "DSR", "PBO"):
        assert label in labels, label
    # each card in its unit (threadx.units): fractions as %, counts whole, seconds with "s"
    values = {m.label: m.value for m in at.metric}
    wf, _ = load_walk_forward(at.session_state["wf_run"])
    assert values["OOS trades"] == format_metric("n_trades", wf.oos_summary["n_trades"])
    assert re.fullmatch(r"[\d,]+", values["OOS trades"]), values["OOS trades"]
    for label in ("Consistency", "OOS return", "OOS max drawdown", "P(OOS loss)"):
        assert re.fullmatch(r"-?[\d,]+\.\d\d %", values[label]), (label, values[label])
    assert values["Walk-forward time"].endswith(" s") and re.fullmatch(r"[\d,]+", values["Trials (N)"])
    windows = next(df for df in at.dataframe if "oos_n_trades" in df.value.columns)
    config = json.loads(windows.proto.columns)
    assert config["oos_total_return"]["type_config"]["format"] == "%.2f %%"  # in percent points
    assert list(windows.value["oos_total_return"]) == [r * 100.0 for r in wf.table["oos_total_return"]]
    assert config["oos_n_trades"]["type_config"]["format"] == "%,d"
    # the regime's fall is the worst within 14 days (the crash test), not the window's max drawdown
    assert config["regime_max_drawdown"]["label"] == "market worst 14-day fall", config["regime_max_drawdown"]
    titles = chart_titles(at)
    for start in ("Sharpe in and out of sample per window", "Stitched OOS equity", "Parameter drift",
                  "IS vs OOS Sharpe", "Block bootstrap", "PBO = "):
        assert any(t.startswith(start) for t in titles), (start, titles)
    markdown = texts(at.markdown)
    assert "Grade card" in markdown and "Deflated Sharpe" in markdown and "Bootstrap p-value" in markdown
    assert "Probability of backtest overfitting" in markdown
    assert at.session_state["wf_run"] in texts(at.subheader)
    assert "The set-up above differs" not in texts(at.info)  # the form ran it
    # the form changed under the report: the report says the form would run another walk-forward
    at.selectbox(key="wf_objective").set_value("total_return")
    at.number_input(key="wf_min_trades").set_value(3).run()
    assert ("The set-up above differs from this report (objective total_return here, sharpe in the report; "
            f"min trades (IS) 3 here, {wf.config['min_trades']} in the report)") in texts(at.info), texts(at.info)
    at.selectbox(key="wf_objective").set_value("sharpe")
    at.number_input(key="wf_min_trades").set_value(wf.config["min_trades"]).run()
    assert "The set-up above differs" not in texts(at.info)
    at.number_input(key="wf_boot").set_value(300).run()  # the report's p-value, PBO and grade depend on it
    assert "(bootstrap resamples 300 here, 200 in the report)" in texts(at.info), texts(at.info)
    at.number_input(key="wf_boot").set_value(200).run()
    at.number_input(key="wf_oos_days").set_value(90).run()  # in bars, with its unit (it read "oos_bars 2160")
    assert "out-of-sample window 2,160 bars here, 1,440 bars in the report" in texts(at.info), texts(at.info)
    # "Load these settings" puts the report's set-up into the form (a research cell's, say): no difference left
    at.selectbox(key="wf_objective").set_value("total_return")
    at.number_input(key="wf_seed").set_value(7).run()
    at.button(key="wf_load_settings").click().run()
    assert not at.exception, at.exception
    assert "The form holds the report's settings: **Launch walk-forward** runs them again." in texts(at.info)
    assert "The set-up above differs" not in texts(at.info), texts(at.info)
    assert at.selectbox(key="wf_objective").value == "sharpe" and at.number_input(key="wf_oos_days").value == 60
    # the stored walk-forward is listed for reloading
    assert at.selectbox(key="wf_history").options
    # the stability heatmap around the whole-period winner, evaluated again on the stored run's data
    assert any(t.startswith("Stability: ") for t in titles), titles


def test_validate_a_stored_sweep_shows_grade_card_pbo_and_stability():
    import threadx
    from threadx.data.synthetic import ensure_sample
    from threadx.optimize.store import ResultStore

    ensure_sample()
    df = threadx.load_ohlcv("synthetic/BTC_USDT-1h")
    threadx.sweep(df, "ma_crossover", {"fast_period": "5:30:5", "slow_period": "40:120:20"}, store=ResultStore(),
                  run_id="val-test", executor="inline", workers=1)
    at = page()
    assert at.selectbox(key="val_run").value == "val-test"
    at.number_input(key="val_n").set_value(200)
    at.number_input(key="val_S").set_value(8)
    at.button(key="val_go").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert "Sweep val-test" in texts(at.subheader)
    markdown = texts(at.markdown)
    assert "Grade card" in markdown
    for sentence in ("Out-of-sample Sharpe is", "Bootstrap p-value of the Sharpe", "Deflated Sharpe ratio is",
                     "Probability of backtest overfitting is"):
        assert sentence in markdown, sentence
    labels = [m.label for m in at.metric]
    assert "PBO" in labels and "DSR" in labels and "Neighbours / winner" in labels
    titles = chart_titles(at)
    assert any(t.startswith("PBO = ") for t in titles)
    assert any(t.startswith("Stability: Sharpe around the winner over fast_period × slow_period") for t in titles)
    assert any(t.startswith("IS winner across CSCV splits") for t in titles)
    # other heatmap axes: swap X and Y
    at.selectbox(key="sweep_hm_x").set_value("slow_period").run()
    assert not at.exception, at.exception
    assert any(t.startswith("Stability: Sharpe around the winner over slow_period × fast_period")
               for t in chart_titles(at))
    assert "The form differs from the report" not in texts(at.info)
    # other settings picked: the report stays until Validate, and says it is of the settings it ran with
    at.number_input(key="val_S").set_value(10).run()
    assert ("The form differs from the report below (PBO blocks 10 here, 8 in the report): press **Validate** for "
            "the form's report." in texts(at.info)), texts(at.info)
    at.button(key="val_go").click().run()
    assert "The form differs from the report" not in texts(at.info)


def test_damaged_stored_sweeps_are_listed_as_such_and_refused_with_one_error(workspace):
    """A run whose manifest is not JSON, or has a started_at that is not text or no space, does
    not break the list of stored sweeps; validating it says why it cannot be."""
    import threadx
    from threadx.data.synthetic import ensure_sample

    ensure_sample()
    df = threadx.load_ohlcv("synthetic/BTC_USDT-1h")
    for run_id in ("intact", "not_json", "numeric_start", "no_space"):
        threadx.sweep(df, "ma_crossover", {"fast_period": "5:20:5", "slow_period": [50, 60]}, run_id=run_id,
                      executor="inline", workers=1)
    results = workspace / "results"
    (results / "not_json" / "manifest.json").write_text("{")
    for run_id, damage in (("numeric_start", lambda m: m.__setitem__("started_at", 1_700_000_000)),
                           ("no_space", lambda m: m.pop("space"))):
        manifest = json.loads((results / run_id / "manifest.json").read_text())
        damage(manifest)
        (results / run_id / "manifest.json").write_text(json.dumps(manifest))
    at = page()
    assert not at.error, [e.value for e in at.error]
    listed = {option.split(" · ")[0]: option for option in at.selectbox(key="val_run").options}
    assert set(listed) == {"intact", "not_json", "numeric_start", "no_space"}
    assert "damaged" in listed["not_json"] and "damaged" not in listed["intact"]
    for run_id in ("not_json", "numeric_start", "no_space"):
        at.selectbox(key="val_run").set_value(run_id)
        at.number_input(key="val_n").set_value(200)
        at.button(key="val_go").click().run()
        assert not at.exception, at.exception
        errors = [e.value for e in at.error]
        assert len(errors) == 1 and errors[0].startswith(f"run {run_id} "), errors


def test_sweep_without_block_returns_shows_pbo_not_available():
    import threadx
    from threadx.data.synthetic import ensure_sample
    from threadx.optimize.store import ResultStore

    ensure_sample()
    df = threadx.load_ohlcv("synthetic/BTC_USDT-1h")
    store = ResultStore()
    # like a run of an older version: no per-combo block returns stored
    threadx.sweep(df, "ma_crossover", {"fast_period": "5:30:5", "slow_period": "40:120:20"}, store=store,
                  run_id="old-run", executor="inline", workers=1, block_returns=0)
    at = page()
    at.number_input(key="val_n").set_value(200)
    at.button(key="val_go").click().run()
    assert not at.exception, at.exception
    assert "PBO not available" in texts(at.info)
    assert "Grade card" in texts(at.markdown)


def test_stop_cancels_a_walk_forward_and_keeps_the_finished_combos():
    from threadx.ui.jobs import JobRegistry

    at = small_walk_forward(page())
    for name, (lo, hi, step) in (("fast_period", (2, 200, 1)), ("slow_period", (3, 600, 1))):  # ~119k combos
        key = f"wf:ma_crossover:{name}"
        at.number_input(key=f"{key}:min").set_value(lo)
        at.number_input(key=f"{key}:max").set_value(hi)
        at.number_input(key=f"{key}:step").set_value(step)
    at.run()
    assert not at.warning, [w.value for w in at.warning]
    at.button(key="wf_launch").click().run()
    job_id = at.session_state["wf_job"]
    registry = JobRegistry()
    deadline = time.time() + 60
    while time.time() < deadline and not (registry.get(job_id).state == "running" and registry.get(job_id).done):
        time.sleep(0.2)
    at.run()
    assert any("· running " in bar.text and "combos/s (each in every window)" in bar.text for bar in at.get("progress"))
    at.button(key="wf_stop").click().run()
    assert not at.exception, at.exception
    deadline = time.time() + 90
    while time.time() < deadline and registry.get(job_id).is_active:
        time.sleep(0.3)
    assert registry.get(job_id).state == "cancelled", registry.get(job_id)
    run_until(at, lambda a: "wf_run" in a.session_state and bool(a.session_state["wf_run"]))
    at.run()
    assert not at.exception, at.exception
    assert "Stopped early" in texts(at.warning)
    assert "Grade card" in texts(at.markdown)


def test_a_grid_atr_walk_forward_on_real_candles(shared_data, tmp_path):
    """grid_atr on the real BTC 1h file, IS 180 days / OOS 60 days (issue 14), from the page:
    the job runs to its grade card; a small space keeps it to seconds (the CLI runs the full one)."""
    import shutil

    from threadx.data.io import load_ohlcv

    target = tmp_path / "data" / "binance"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(shared_data / "binance" / "BTC_USDT-1h.parquet", target / "BTC_USDT-1h.parquet")
    at = page()
    name = next(n for n in at.selectbox(key="dataset_picker").options if "BTC" in n)
    at.selectbox(key="dataset_picker").set_value(name).run()
    set_ranges(at, "grid_atr", {"ma_period": (10, 20, 10), "atr_multiplier_start": (1.0, 2.0, 1.0)})
    at.number_input(key="wf_is_days").set_value(180.0)
    at.number_input(key="wf_oos_days").set_value(60.0)
    at.number_input(key="wf_boot").set_value(200)
    at.number_input(key="wf_S").set_value(8)
    at.run()
    assert not at.exception, at.exception
    assert "**5 windows**" in texts(at.info) and "**12 combos**" in texts(at.info), texts(at.info)  # x 3 sides
    at.button(key="wf_launch").click().run()
    assert not at.error, [e.value for e in at.error]
    run_until(at, lambda a: "wf_run" in a.session_state and bool(a.session_state["wf_run"]), timeout=240)
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    wf, _ = load_walk_forward(at.session_state["wf_run"])
    assert wf.config["strategy"] == "grid_atr" and len(wf.windows) == 5
    values = {m.label: m.value for m in at.metric}
    assert values["Grade"] and values["OOS trades"] == format_metric("n_trades", wf.oos_summary["n_trades"])
    assert wf.oos_summary["n_trades"] > 0 and len(load_ohlcv(str(target / "BTC_USDT-1h.parquet"))) == 12_556


def test_a_stopped_sweep_is_validated_with_a_warning_that_the_report_covers_part_of_it():
    import threadx
    from threadx.data.synthetic import ensure_sample
    from threadx.optimize.store import ResultStore

    ensure_sample()
    df = threadx.load_ohlcv("synthetic/BTC_USDT-1h")
    asked = []
    run = threadx.sweep(df, "ma_crossover", {"fast_period": "5:30:1", "slow_period": "40:120:20"},
                        store=ResultStore(), run_id="half-run", executor="inline", workers=1, chunk_size=4,
                        cancel=lambda: asked.append(1) or len(asked) > 3)
    assert run.manifest["status"] == "cancelled"
    at = page()
    at.number_input(key="val_n").set_value(200)
    at.number_input(key="val_S").set_value(8)
    at.button(key="val_go").click().run()
    assert not at.exception, at.exception
    assert f"Run half-run was stopped: {len(run.results):,} of 130 combos stored; this report covers these only" \
           in texts(at.warning)
    assert "Grade card" in texts(at.markdown)


def test_a_walk_forward_whose_candles_were_replaced_since_says_so(workspace):
    """A research cell's report opened after its dataset's file was replaced by other candles gave
    no word at its head (only "Stability heatmap not available" far down the page)."""
    from threadx.data.io import write_ohlcv
    from threadx.data.synthetic import generate_synthetic
    from threadx.requests import WalkForwardRequest
    from threadx.validation.research import run_cell

    path = workspace / "data" / "test" / "XYZ_USDT-1h.parquet"
    write_ohlcv(generate_synthetic("XYZ_USDT", days=400, seed=3), path)
    import threadx
    from threadx.requests import DatasetRef

    ref = DatasetRef.of(threadx.load_ohlcv(str(path)), str(path))
    run_cell(WalkForwardRequest(data=ref, strategy="ma_crossover", space={"fast_period": [5, 10], "slow_period": [40]},
                                sampler="grid", is_days=120, oos_days=60, bootstrap=100, S=4, run_id="wf-xyz"), None)
    at = page()
    at.button(key="wf_reload").click().run()
    assert not at.exception, at.exception
    assert "changed since" not in texts(at.warning)  # the same candles: no word
    write_ohlcv(generate_synthetic("XYZ_USDT", days=400, seed=4), path)  # replaced
    at.run()
    warned = texts(at.warning)
    assert "Dataset XYZ_USDT-1h, file " in warned and "changed since the run" in warned, warned
    assert "This report stands for the candles the walk-forward ran on" in warned


def test_an_emptied_choice_is_a_warning_and_a_random_plan_counts_the_valid_combos():
    """Clearing ma_type's values raised "NameError: name 'search' is not defined" over the page; a
    random draw of more combos than the constraint leaves planned 1,702 where 1,590 ran."""
    at = page()
    at.multiselect(key="wf:ma_crossover:ma_type:values").set_value([]).run()
    assert not at.exception, at.exception
    assert any(w.value.startswith("Cannot run: search space:") for w in at.warning), [w.value for w in at.warning]
    at.multiselect(key="wf:ma_crossover:ma_type:values").set_value(["sma"])
    set_ranges(at, "ma_crossover", {"fast_period": (5, 50, 5), "slow_period": (20, 100, 10)})  # 90 combos, 74 valid
    at.selectbox(key="wf_sampler").set_value("random").run()
    at.number_input(key="wf_n").set_value(3000).run()
    assert not at.exception, at.exception
    assert "**74 combos** run in every window" in texts(at.info), texts(at.info)
    # the backtest count says how it is made (it read "(5,254 backtests)", 74 combos x 71 unexplained)
    plan = next(str(e.value) for e in at.info if "combos** run in every window" in str(e.value))
    found = re.search(r"\*\*(\d+) windows\*\*.*\(([\d,]+) backtests: each combo in sample and out of sample in "
                      r"each of the (\d+) windows, and once on the whole period\)", plan)
    assert found and found[1] == found[3], plan
    assert int(found[2].replace(",", "")) == 74 * (2 * int(found[1]) + 1), plan


def test_a_cli_walk_forward_of_listed_values_loads_without_a_false_difference():
    """The CLI's fast_period=5,10 (a list) loaded as the range 5 to 10 step 5, the same values, and
    the notice still said "another search space" under "The form holds the report's settings"."""
    from threadx.cli import main

    assert main(["walkforward", "--data", "synthetic/BTC_USDT-1h", "--strategy", "ma_crossover", "--param",
                 "fast_period=5,10", "--param", "slow_period=30,50", "--is-days", "120", "--oos-days", "60",
                 "--sampler", "grid", "--bootstrap", "200", "--S", "8", "--run-id", "cli-list"]) == 0
    at = page()
    at.session_state["wf_run"] = "cli-list"
    at.run()
    assert "The set-up above differs" in texts(at.info), texts(at.info)
    at.button(key="wf_load_settings").click().run()
    assert not at.exception, at.exception
    assert "The form holds the report's settings: **Launch walk-forward** runs them again." in texts(at.info)
    assert "The set-up above differs" not in texts(at.info), texts(at.info)


def test_loading_settings_gives_the_forms_widgets_no_second_value(monkeypatch, caplog):
    """After "Load these settings" Streamlit logged "The widget with key ... was created with a
    default value but also had its value set via the Session State API": the form's boxes were
    made with their own start beside the loaded value (the loaded one won, but the log said it)."""
    from streamlit.elements.lib import policies

    from threadx.cli import main

    assert main(["walkforward", "--data", "synthetic/BTC_USDT-1h", "--strategy", "ma_crossover", "--param",
                 "fast_period=5,10", "--param", "slow_period=30,50", "--is-days", "45", "--oos-days", "20",
                 "--sampler", "grid", "--bootstrap", "200", "--S", "8", "--fee-bps", "4", "--run-id", "cli-warn"]) == 0
    at = page()
    at.session_state["wf_run"] = "cli-warn"
    at.run()
    monkeypatch.setattr(policies, "_shown_default_value_warning", False)  # (Streamlit logs it once a process)
    monkeypatch.setattr(policies.runtime, "exists", lambda: True)  # (AppTest runs no runtime: the rule is skipped)
    with caplog.at_level("WARNING", logger=policies.__name__):
        at.button(key="wf_load_settings").click().run()
    assert not at.exception, at.exception
    assert at.number_input(key="wf_is_days").value == 45 and at.number_input(key="wf_fee").value == 4
    assert at.number_input(key="wf_boot").value == 200 and at.number_input(key="wf_S").value == 8
    assert not [r.getMessage() for r in caplog.records if "Session State API" in r.getMessage()]


def test_an_emptied_box_of_the_walk_forward_form_reads_as_its_start():
    """A box made without a value of its own (its key in Session State since the first run) can be
    emptied: float(None) raised a TypeError over the page."""
    at = page()
    at.run()
    for key in ("wf_is_days", "wf_purge", "wf_boot", "wf_fee"):
        at.number_input(key=key).set_value(None).run()
        assert not at.exception, (key, at.exception)
    assert "Cannot run" not in texts(at.warning)
    assert any("windows**" in i.value for i in at.info), texts(at.info)  # the plan, on the boxes' starts


def test_a_walk_forward_opens_again_from_its_link():
    """A finished walk-forward was gone after a reload or in a new tab: the URL did not name it
    (Optimisation's ?run= did). A link to one that is not stored says so once and is dropped."""
    from threadx.cli import main

    assert main(["walkforward", "--data", "synthetic/BTC_USDT-1h", "--strategy", "ma_crossover", "--param",
                 "fast_period=5,10", "--param", "slow_period=40", "--is-days", "120", "--oos-days", "60",
                 "--sampler", "grid", "--bootstrap", "100", "--S", "4", "--run-id", "wf-link"]) == 0
    at = page()
    at.query_params["wf"] = "wf-link"
    at.run()
    assert not at.exception, at.exception
    assert "Walk-forward wf-link" in texts(at.subheader)  # a reload shows it again
    at = page()
    at.session_state["wf_run"] = "wf-link"
    at.run()
    assert at.query_params["wf"] in ("wf-link", ["wf-link"])  # the URL names the one shown
    at = page()
    at.query_params["wf"] = "wf-gone"
    at.run()
    assert not at.exception, at.exception
    assert any("wf-gone" in e.value for e in at.error) and "wf" not in at.query_params


def test_a_stored_grade_that_is_no_letter_is_never_put_into_the_page_as_html(workspace):
    """The grade card writes its letter as HTML: a walk-forward handed in with a link and a
    password form as its letter showed them (a phishing form inside the workstation)."""
    import hashlib
    import json

    from threadx.cli import main

    assert main(["walkforward", "--data", "synthetic/BTC_USDT-1h", "--strategy", "ma_crossover", "--param",
                 "fast_period=5,10", "--param", "slow_period=40", "--is-days", "120", "--oos-days", "60",
                 "--sampler", "grid", "--bootstrap", "100", "--S", "4", "--run-id", "wf-html"]) == 0
    tree = workspace / "results" / "walkforward" / "wf-html" / "result" / "tree.json"
    payload = "<a href='https://evil.example/login'>Session expired</a><input type=password>"

    def plant(node):
        if isinstance(node, dict):
            if node.get("__dataclass__") == "Grade":
                node["fields"]["letter"] = payload
            for value in node.values():
                plant(value)
        elif isinstance(node, list):
            for value in node:
                plant(value)

    data = json.loads(tree.read_text())
    plant(data)
    # as whoever hands such a folder over would: the tree's checksum made again
    data["__sha256__"]["tree.json"] = hashlib.sha256(json.dumps(data["__root__"]).encode()).hexdigest()
    tree.write_text(json.dumps(data))
    at = page()
    at.query_params["wf"] = "wf-html"
    at.run()
    assert not at.exception, at.exception
    html = [m.value for m in at.markdown if "font-size:5rem" in m.value]
    assert html and ">?</div>" in html[0] and "evil.example" not in "".join(m.value for m in at.markdown)


def test_a_shown_sweep_report_is_not_reused_once_its_candles_changed(workspace):
    """The sweep report and its stability grids were cached by the run's files alone: after the
    dataset's candles changed (the CLI refuses: "changed since the run") the page kept the report
    and drew new stability grids on the new candles."""
    import os

    import threadx
    from threadx.data.io import write_ohlcv
    from threadx.data.synthetic import generate_synthetic
    from threadx.optimize.store import ResultStore

    path = workspace / "data" / "test" / "XYZ_USDT-1h.parquet"
    write_ohlcv(generate_synthetic("XYZ_USDT", days=300, seed=3), path)
    threadx.sweep(threadx.load_ohlcv("test/XYZ_USDT-1h"), "ma_crossover",
                  {"fast_period": "5:30:5", "slow_period": "40:120:20"}, store=ResultStore(), run_id="val-moved",
                  executor="inline", workers=1)
    at = page()
    at.number_input(key="val_n").set_value(200)
    at.number_input(key="val_S").set_value(8)
    at.button(key="val_go").click().run()
    assert "Sweep val-moved" in texts(at.subheader) and not at.error
    stat = path.stat()
    frame = generate_synthetic("XYZ_USDT", days=300, seed=3)
    frame.iloc[1_000, [frame.columns.get_loc(c) for c in ("open", "high", "low", "close")]] *= 1.01  # one bar moved
    write_ohlcv(frame, path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    at.run()
    assert not at.exception, at.exception
    assert "Cannot validate val-moved: dataset test/XYZ_USDT-1h" in texts(at.error) and "changed since" in texts(at.error)
    assert "Sweep val-moved" not in texts(at.subheader)
