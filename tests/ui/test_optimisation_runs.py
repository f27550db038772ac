"""Optimisation page, stored runs: resume a cancelled run, the history table, two runs
compared, the shown run in the URL (``?run=``), and a finished job leaving the sidebar."""
from __future__ import annotations

import itertools
import json
import re

import pandas as pd
import pytest

from threadx.units import format_metric

pytest.importorskip("streamlit")

from apptest_helpers import ROOT, run_until, set_ranges  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

import threadx  # noqa: E402
from threadx.data.io import write_ohlcv  # noqa: E402
from threadx.data.synthetic import generate_synthetic  # noqa: E402
from threadx.ui.sweep_runs import HISTORY_COLUMNS  # noqa: E402

SPACE = {"fast_period": "5:40:1", "slow_period": [50, 60]}  # 72 combos
ZERO_OF_ZERO = re.compile(r"\b0\s*/\s*0\b")  # what a starting job used to show for half a minute


pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")


@pytest.fixture
def data_file(workspace):
    path = workspace / "files" / "ABC_USDT-1h.parquet"
    write_ohlcv(generate_synthetic(days=20, seed=3), path)
    return path


def sweep(path, run_id: str, space=SPACE, cancel_after: int | None = None, **options):
    checks = itertools.count()
    cancel = None if cancel_after is None else (lambda: next(checks) >= cancel_after)
    return threadx.sweep(threadx.load_ohlcv(str(path)), "ma_crossover", space, run_id=run_id, executor="inline",
                         workers=1, chunk_size=4, cancel=cancel, **options)


def page(run: str | None = None) -> AppTest:
    """The Optimisation page in a new session, opened on ``?run=<run>`` when given."""
    at = AppTest.from_file(str(ROOT / "views" / "3_Optimisation.py"), default_timeout=120)
    if run is not None:
        at.query_params["run"] = run
    at.run()
    assert not at.exception, at.exception
    return at


def shown(at: AppTest) -> list[str]:
    return [h.value for h in at.subheader if h.value.startswith("Run ")]


def test_resume_a_cancelled_run_from_the_page(data_file):
    cancelled = sweep(data_file, "half", cancel_after=4)
    assert cancelled.manifest["status"] == "cancelled" and 0 < cancelled.manifest["done"] < 72
    whole = sweep(data_file, "whole")

    at = page(run="half")
    assert shown(at) == [f"Run half: ma_crossover, {cancelled.manifest['done']} combos, cancelled"]
    assert any(c.value == "half" for c in at.code)  # the run id, copyable
    # a stopped run's combos are a slice of the space, not a random part: said with what they reach
    # (it read as the space's winner and heatmap)
    tried = cancelled.results["fast_period"]
    assert (f"Cancelled after {cancelled.manifest['done']} of 72 combos, which are no random part of the plan: combos "
            f"run grouped by the indicators they share, so the stored ones reach only fast_period {tried.min()} to "
            f"{tried.max()} (of 5 to 40 searched)") in [w.value for w in at.warning][0]
    at.button(key="opt_resume").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    job_id = at.session_state["sweep_job"]
    from threadx.ui.jobs import JobRegistry

    assert JobRegistry().get(job_id).run_id == "half"
    if JobRegistry().get(job_id).is_active:  # while the job runs this run, no second Resume
        assert "opt_resume" not in [b.key for b in at.button]
    # the job writes the run's manifest ("completed") a moment before it ends: the page is
    # judged on a render made after the job ended
    at = run_until(at, lambda a: not JobRegistry().get(job_id).is_active)
    at.run()
    assert shown(at) == ["Run half: ma_crossover, 72 combos, completed"]
    assert "opt_resume" not in [b.key for b in at.button] and "opt_stop" not in [b.key for b in at.button]
    resumed = threadx.optimize.store.ResultStore().load("half")
    pd.testing.assert_frame_equal(resumed.results.drop(columns=["error"]), whole.results.drop(columns=["error"]))


def test_resume_refuses_a_run_whose_data_changed(data_file):
    sweep(data_file, "half", cancel_after=4)
    write_ohlcv(generate_synthetic(days=20, seed=4), data_file)  # other candles under the same file
    at = page(run="half")
    at.button(key="opt_resume").click().run()
    assert any("Cannot resume run half" in e.value and "changed since the run" in e.value for e in at.error)
    assert "sweep_job" not in at.session_state


def test_history_table_and_comparison(data_file, workspace):
    a = sweep(data_file, "cheap", fee_bps=1.0)
    sweep(data_file, "dear", space={"fast_period": "5:40:5", "slow_period": [50, 70]}, fee_bps=20.0)
    at = page()
    table = at.dataframe[0].value
    assert list(table.columns) == list(HISTORY_COLUMNS)
    rows = table.set_index("run_id")
    assert set(rows.index) == {"cheap", "dear"}
    assert rows.loc["cheap", "done"] == rows.loc["cheap", "planned"] == 72
    winner = a.top(1, min_trades=a.manifest["min_trades"])
    # in its objective's unit, as the cards write it (it read "1.9495" beside the page's "1.77")
    assert rows.loc["cheap", "best"] == format_metric("sharpe", float(winner["sharpe"].iloc[0]))
    assert rows.loc["cheap", "dataset"] == "ABC_USDT-1h (1h)" and rows.loc["cheap", "status"] == "completed"
    # what tells runs apart comes first, the run id stays in view (at 1440 px status, best and start were cut off)
    assert list(table.columns[:4]) == ["run_id", "status", "best", "objective"]
    assert json.loads(at.dataframe[0].proto.columns)["run_id"]["pinned"] is True
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", rows.loc["cheap", "started_at"])

    at.multiselect(key="opt_compare").set_value(["cheap", "dear"]).run()
    assert not at.exception, at.exception
    settings = at.dataframe[1].value.set_index("setting")
    assert list(settings.columns) == ["cheap", "dear", "same"]
    assert settings.loc["engine: fee_bps", "cheap"] == "1.0" and settings.loc["engine: fee_bps", "dear"] == "20.0"
    assert not settings.loc["space: fast_period", "same"] and settings.loc["strategy", "same"]
    best = at.dataframe[2].value.set_index("")
    assert best.loc["param: fast_period", "cheap"] == str(a.best_params()["fast_period"])
    assert at.get("plotly_chart"), "distribution chart missing"
    assert any("Settings" in m.value and "differ" in m.value for m in at.markdown)


def test_the_run_in_the_url_reopens_it_in_a_new_session(data_file):
    sweep(data_file, "linked")
    sweep(data_file, "other", space={"fast_period": "5:40:5", "slow_period": [50]})
    at = page()
    assert shown(at) == [] and "run" not in at.query_params
    at.selectbox(key="opt_history").set_value("other").run()
    at.button(key="opt_reload").click().run()
    assert shown(at)[0].startswith("Run other:") and at.query_params["run"] == "other"
    fresh = page(run="linked")  # a refresh, or a shared link: a new session
    assert shown(fresh)[0].startswith("Run linked: ma_crossover, 72 combos")
    assert not fresh.error and not [w.value for w in fresh.warning if "cannot be shown" in w.value]


def test_a_run_that_recorded_a_warning_shows_it_above_its_results(data_file, workspace):
    """A sweep whose signal rule disagreed with signals() records it in its manifest (see
    test_plan): the page says so where the run's rows are shown."""
    import json

    sweep(data_file, "warned")
    sweep(data_file, "plain")
    path = workspace / "results" / "warned" / "manifest.json"
    assert path.exists(), sorted(p.name for p in path.parent.parent.iterdir())
    manifest = json.loads(path.read_text())
    manifest["warnings"] = ["strategy ma_crossover: its signal rule gives other signals than signals() for {...}"]
    path.write_text(json.dumps(manifest))
    at = page(run="warned")
    assert shown(at)[0].startswith("Run warned:")
    assert [w.value for w in at.warning if "rows may not all be right" in w.value and "signal rule" in w.value]
    plain = page(run="plain")
    assert shown(plain)[0].startswith("Run plain:") and not [w.value for w in plain.warning if "rows may" in w.value]


@pytest.mark.parametrize("damage", ["unknown", "damaged"])
def test_an_unknown_or_damaged_run_in_the_url_gives_one_warning(data_file, workspace, damage):
    if damage == "damaged":
        sweep(data_file, "bad")
        (workspace / "results" / "bad" / "manifest.json").write_text("{")
    run_id = "nope" if damage == "unknown" else "bad"
    at = page(run=run_id)
    assert not at.error and shown(at) == []
    warnings = [w.value for w in at.warning]
    said = ("The link names run **nope**, which is not stored (deleted?)." if damage == "unknown"
            else "Run `bad` cannot be shown")  # (the unknown one as the other pages say it, without a folder's path)
    assert len(warnings) == 1 and said in warnings[0], warnings
    assert "run" not in at.query_params
    at.run()
    assert not at.warning  # said once


def test_a_job_shows_its_phase_and_leaves_the_sidebar_once_finished(workspace):
    """From the launch on, the page and the sidebar say what the job does (never 0/0); Stop
    shows while it runs; once it has ended it leaves the sidebar and Stop is gone."""
    import time

    from threadx.ui.jobs import JobRegistry

    at = page()
    at.selectbox(key="opt_strategy").set_value("ma_crossover").run()
    set_ranges(at, "opt:ma_crossover", {"fast_period": (2, 200, 1), "slow_period": (3, 600, 1),
                                        "stop_loss_pct": (0.0, 2.0, 0.5)})  # a long grid: ~500k combos, ~20 s
    at.button(key="opt_launch").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    job_id = at.session_state["sweep_job"]
    registry = JobRegistry()
    monitor = [p.text for p in at.main.get("progress")]
    assert len(monitor) == 1 and monitor[0].startswith("ma_crossover on synthetic/BTC_USDT-1h (grid) · ")
    assert not ZERO_OF_ZERO.search(monitor[0]) and monitor[0].split(" · ")[1], monitor
    assert "opt_stop" in [b.key for b in at.button]

    sidebar = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)  # another session's sidebar
    sidebar.run()
    listed = [p.text for p in sidebar.sidebar.get("progress")]
    assert registry.get(job_id).is_active
    assert len(listed) == 1 and listed[0].startswith("ma_crossover on synthetic/BTC_USDT-1h (grid): "), listed
    assert not ZERO_OF_ZERO.search(listed[0]) and listed[0].split(": ", 1)[1], listed

    at.button(key="opt_stop").click().run()
    deadline = time.time() + 60
    while time.time() < deadline and registry.get(job_id).is_active:
        time.sleep(0.3)
    assert registry.get(job_id).state == "cancelled"
    at.run()
    assert "opt_stop" not in [b.key for b in at.button]
    assert [p.text for p in at.main.get("progress")][0].split(" · ")[1].startswith("cancelled")
    sidebar.run()
    assert not sidebar.sidebar.get("progress"), [p.text for p in sidebar.sidebar.get("progress")]


# --- damaged manifests: listed as damaged, refused with one warning, the page keeps working ----------

SMALL = {"fast_period": "5:20:5", "slow_period": [50, 60]}  # 8 combos


def _set(key: str, value):
    return lambda m: m.__setitem__(key, value)


MANIFEST_DAMAGE = {  # valid JSON, but not the shape the page reads
    "no_space": lambda m: m.pop("space"),
    "no_strategy": lambda m: m.pop("strategy"),
    "no_axes": lambda m: m["space"].pop("axes"),
    "axes_text": lambda m: m["space"].__setitem__("axes", "fast_period"),
    "done_text": _set("done", "abc"),
    "total_text": _set("total", "many"),
    "min_trades_text": _set("min_trades", "ten"),
    "objective_unknown": _set("objective", "zzz"),
    "objective_number": _set("objective", 5),
    "started_at_number": _set("started_at", 1_700_000_000),
    "data_bad": _set("data", {"source": "x.parquet", "colour": "red"}),
    "engine_text": _set("engine", "fee 10"),
    "bars_text": _set("bars", "480"),
    "axis_without_values": lambda m: m["space"]["axes"][0].__setitem__("values", []),
}


def damaged_copies(workspace, run) -> list[str]:
    """One copy of ``run``'s folder per :data:`MANIFEST_DAMAGE`, its manifest damaged so."""
    import json
    import shutil

    root = workspace / "results"
    for name, damage in MANIFEST_DAMAGE.items():
        shutil.copytree(root / run.run_id, root / name)
        manifest = json.loads((root / name / "manifest.json").read_text())
        manifest["run_id"] = name
        damage(manifest)
        (root / name / "manifest.json").write_text(json.dumps(manifest))
    return list(MANIFEST_DAMAGE)


def test_a_damaged_manifest_is_listed_as_damaged_and_the_other_runs_still_show(data_file, workspace):
    damaged = damaged_copies(workspace, sweep(data_file, "intact", space=SMALL))
    at = page(run="intact")
    assert shown(at)[0].startswith("Run intact: ma_crossover, 8 combos") and not at.error
    rows = at.dataframe[0].value.set_index("run_id")  # the history
    assert set(rows.index) == {"intact", *damaged}
    assert rows.loc["intact", "status"] == "completed"
    for name in damaged:
        assert rows.loc[name, "status"].startswith("damaged: has a manifest "), (name, rows.loc[name, "status"])


@pytest.mark.parametrize("damage", list(MANIFEST_DAMAGE))
def test_a_run_with_a_damaged_manifest_in_the_url_gives_one_warning(data_file, workspace, damage):
    import json

    run = sweep(data_file, "bad", space=SMALL)
    path = workspace / "results" / "bad" / "manifest.json"
    manifest = json.loads(path.read_text())
    MANIFEST_DAMAGE[damage](manifest)
    path.write_text(json.dumps(manifest))
    at = page(run=run.run_id)
    assert not at.error and shown(at) == []
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 1 and "Run `bad` cannot be shown" in warnings[0], warnings
    assert "run" not in at.query_params


def test_a_stop_before_anything_was_stored_says_so_and_offers_no_resume(workspace, monkeypatch):
    import time

    from threadx.ui.jobs import JobRegistry

    # the job stays queued (its process is never started), so the Stop surely lands before the sweep
    # stores anything; a real launch raced the job process creating its run folder first
    monkeypatch.setattr(JobRegistry, "_launch", lambda self, info: None)
    at = page()
    at.button(key="opt_launch").click().run()
    job_id = at.session_state["sweep_job"]
    assert JobRegistry().get(job_id).state == "queued"
    at.button(key="opt_stop").click().run()
    registry = JobRegistry()
    deadline = time.time() + 60
    while time.time() < deadline and registry.get(job_id).is_active:
        time.sleep(0.3)
    job = registry.get(job_id)
    assert job.state == "cancelled" and not (workspace / "results" / job.run_id).exists()
    at.run()
    assert not at.exception, at.exception
    warnings = [w.value for w in at.warning]
    assert warnings == ["Stopped before any combo was stored: nothing to resume; press **Launch** to start again."]
    assert "opt_resume" not in [b.key for b in at.button] and shown(at) == []
    # stopped once its manifest was written (a stop while it planned the combos): still nothing stored
    folder = workspace / "results" / job.run_id
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text('{"run_id": "%s", "strategy": "ma_crossover", "status": "cancelled"}'
                                          % job.run_id)
    again = page()
    again.session_state["sweep_job"] = job_id
    again.run()
    assert [w.value for w in again.warning] == warnings, [w.value for w in again.warning]


def test_a_sweep_on_a_damaged_dataset_fails_saying_it_cannot_be_loaded(workspace):
    from threadx.ui.jobs import JobRegistry

    page()  # the synthetic sample written
    (workspace / "data" / "local").mkdir()
    (workspace / "data" / "local" / "BAD_USDT-1h.parquet").write_bytes(b"not a parquet file" * 100)
    at = page()
    at.selectbox(key="dataset_picker").set_value("local/BAD_USDT-1h").run()
    at.button(key="opt_launch").click().run()
    job_id = at.session_state["sweep_job"]
    at = run_until(at, lambda a: not JobRegistry().get(job_id).is_active)
    at.run()
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "dataset local/BAD_USDT-1h cannot be loaded" in errors[0], errors
    assert "is gone" not in errors[0]


def test_a_run_computed_with_other_code_says_so(data_file, workspace):
    """A run made before the strategy's (or ThreadX's engine) code changed was shown as if
    the current code had made it; only Open in Backtest refused it."""
    import json

    sweep(data_file, "older-code")
    path = workspace / "results" / "older-code" / "manifest.json"
    manifest = json.loads(path.read_text())
    assert not [i.value for i in page(run="older-code").info if "computed with other code" in i.value]
    manifest.update(strategy_code="0123456789abcdef", rows_code="fedcba9876543210")
    path.write_text(json.dumps(manifest))
    notes = [i.value for i in page(run="older-code").info if "computed with other code" in i.value]
    assert notes and "strategy ma_crossover: 01234567 then" in notes[0] and "engine, indicators or sweep: fedcba98" \
        in notes[0]


def test_a_run_with_failed_combos_says_why(data_file, workspace):
    """'completed with 110 failed' and nothing on the page said why: the stored rows hold each
    failure's error, the page lists the most frequent ones with their counts."""
    import sweep_helpers  # noqa: F401 - registers test_faulty (mode 1 raises in signals)

    threadx.sweep(threadx.load_ohlcv(str(data_file)), "test_faulty", {"fast_period": [5, 10, 15], "mode": [0, 1]},
                  run_id="some-fail", executor="inline", workers=1)
    at = page(run="some-fail")
    (why,) = [w.value for w in at.warning if "combos failed; why" in w.value]
    assert why.startswith("3 combos failed; why:") and why.count("1 ×") == 3 and "deliberate failure" in why


def test_combos_under_the_minimum_trades_rank_after_the_best_combo(data_file):
    """The table's top row (Sharpe 2.17 on 194 trades) read as the winner while "Best combo" named
    another (1.84 on 209): the run's min_trades left the first out, and nothing said so."""
    run = sweep(data_file, "few-trades", objective="total_return")
    counts = run.results.sort_values("total_return", ascending=False)["n_trades"].to_numpy()
    minimum = int(counts[0]) + 1  # the highest return is under the minimum
    run = sweep(data_file, "few-trades-min", objective="total_return", min_trades=minimum)
    at = page(run="few-trades-min")
    table = next(df.value for df in at.dataframe if "total_return" in df.value.columns)
    best = run.results.set_index("combo_id").loc[run.top(1)["combo_id"].iloc[0]]
    assert table["fast_period"].iloc[0] == best["fast_period"] and table["n_trades"].iloc[0] >= minimum
    first_short = int((table["n_trades"] < minimum).to_numpy().argmax())
    assert (table["n_trades"].iloc[first_short:] < minimum).all()  # those under the minimum come last
    few = int((run.results["n_trades"] < minimum).sum())
    assert (f"the {few:,} combos with fewer than {minimum:,} trades (the run's minimum) come after the others and "
            "are never the best combo") in " ".join(c.value for c in at.caption)
    assert any(m.value.startswith(f"**Best combo** (highest total_return with at least {minimum:,} trades): "
                                  f"`fast_period={int(best['fast_period'])}`") for m in at.markdown)


def test_a_run_searched_over_another_space_than_the_form_says_so(data_file):
    """A run of 3,198 combos showed under a form of 46,494 with no note (a hostile test)."""
    from threadx.optimize.space import SearchSpace
    from threadx.strategy.base import get_strategy
    from threadx.ui.sweep_runs import space_differences

    run = sweep(data_file, "narrow", space={"fast_period": "5:40:5", "slow_period": [50]})
    at = page(run="narrow")
    at.selectbox(key="opt_strategy").set_value("ma_crossover").run()
    assert shown(at)[0].startswith("Run narrow:")
    notes = [i.value for i in at.info if i.value.startswith("The form above is set to")]
    assert len(notes) == 1 and "another search space (**fast_period, slow_period**)" in notes[0], notes
    spec = get_strategy("ma_crossover")
    assert space_differences(SearchSpace(spec, {"fast_period": "5:40:5", "slow_period": [50]}), run.manifest) == []
    assert space_differences(SearchSpace(spec, {"fast_period": "5:40:5", "slow_period": [60]}),
                             run.manifest) == ["slow_period"]


def test_a_run_of_other_costs_than_the_form_says_so(data_file):
    """A run of fee 25 bps and close fills showed under a form of 10 bps and next-open fills with a
    note naming only the dataset and the space: Launch would run the form's costs."""
    sweep(data_file, "costly", fee_bps=25.0, fill="close", slippage_bps=3.0, objective="total_return", min_trades=3)
    at = page(run="costly")
    at.selectbox(key="opt_strategy").set_value("ma_crossover").run()
    notes = [i.value for i in at.info if i.value.startswith("The form above is set to")]
    assert len(notes) == 1 and "fee **10 bps**" in notes[0] and "fill **next_open**" in notes[0], notes
    assert "slippage **0 bps**" in notes[0] and "objective **sharpe max**" in notes[0], notes  # (no box for slippage)
    assert "min trades **" in notes[0], notes
    at.number_input(key="opt_fee").set_value(25.0).run()
    at.selectbox(key="opt_fill").set_value("close").run()
    assert not any("fee **" in i.value or "fill **" in i.value for i in at.info)


def test_a_run_stopped_before_any_combo_offers_no_resume_in_its_view(data_file):
    """"Stopped before any combo was stored: nothing to resume", and the run's own view offered Resume."""
    sweep(data_file, "empty", cancel_after=0)
    at = page(run="empty")
    assert "opt_resume" not in [b.key for b in at.button]
    assert "Nothing stored to resume: **Launch** starts it again." in [c.value for c in at.caption]
    assert "No combo was stored before it was stopped." in [i.value for i in at.info]


def test_a_link_to_an_unknown_run_is_said_at_the_top_of_the_page():
    """It sat at the very bottom, under the run history, out of view."""
    from apptest_helpers import in_order

    at = page(run="nope")
    order = in_order(at)
    said = next(k for k, (kind, text) in enumerate(order) if kind == "warning" and "run **nope**" in text)
    assert said < order.index(("selectbox", "dataset_picker")), order[:6]
