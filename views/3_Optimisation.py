"""Optimisation page: space editor, live combo count, sweep job with its phase, progress and
Stop, run history (sortable, two runs compared side by side), the shown run (results table,
heatmap, parallel coordinates, Pareto front, best combo, Resume) and its export.

The shown run is in the URL (``?run=<run id>``): a refresh or a shared link reopens it. The
job's progress and the sidebar's job list are fragments that refresh on their own; a full
rerun of the page reads no run's parts again unless they changed (threadx.ui.sweep_runs).
Session keys: ``sweep_job``, ``sweep_run``, ``sweep_job_shown`` (threadx.ui.state).
"""
from __future__ import annotations

import io

import streamlit as st

import threadx
from threadx.config import DEFAULT_MIN_TRADES, DEFAULT_SEED, DEFAULT_SWEEP_SAMPLES, MAX_COST_BOX_BPS, sweep_defaults
from threadx.engine.inputs import EngineOptions
from threadx.optimize.runner import default_workers
from threadx.engine.layout import METRIC_NAMES
from threadx.errors import ThreadXError
from threadx.optimize.samplers import check_grid_size
from threadx.optimize.space import SearchSpace, size_text
from threadx.optimize.store import ResultStore
from threadx.requests import BacktestRequest, DatasetRef, SweepRequest, describe_run
from threadx.ui import charts, sweep_runs, workspace
from threadx.units import counted, format_metric, table_view
from threadx.ui import strategies as strategies_ui
from threadx.ui.jobs import JobRegistry
from threadx.ui.state import (cuda_status, dataset_bars, dataset_picker, drop_linked_run, handover, linked_run,
                              plain, strategy_fell_back, strategy_picker, valid_combos)
from threadx.ui.widgets import (CONTROL_PX, controls_row, follow_job, followed_job, funding_caption, funding_toggle,
                                job_progress, launch_held, number_box, number_text, page_button, preset_space,
                                show_problems, space_editor, timings_section)


st.title("Optimisation")
link_notes = st.container()  # what the page's link got wrong, said at the top (it sat under the run history)
registry = JobRegistry()
store = ResultStore()
COUNTED_UPTO = 1_000_000  # a grid's valid combos are counted on every rerun up to this size

specs = threadx.strategies()
top = st.columns([3, 2, 2])
with top[0]:
    dataset = dataset_picker()
with top[1]:
    strategy = strategy_picker("opt_strategy")
with top[2]:
    method = st.radio("Search", ["Grid", "Monte Carlo"], horizontal=True, key="opt_method", persist_state="session")
spec = specs[strategy]
failed_check = strategies_ui.failed_check_note(spec)
if failed_check:
    st.warning(failed_check)

with st.expander("Search space", expanded=True):
    # the space survives a restart: the saved one presets a new session's editor, edits are saved
    saved = workspace.load_form("space", strategy)
    preset_space(spec, "opt", saved)
    space = space_editor(spec, key_prefix="opt")
    first = st.session_state.setdefault(f"_opt_space_start:{strategy}", space)  # as the session found it
    if space != first or (saved and space != saved):  # only what the user changed is written
        workspace.save_form("space", strategy, space)

c = controls_row()  # (six columns cut "sharpe", "maximise", "next_open" at 1024 px)
w = CONTROL_PX
sampler = "grid" if method == "Grid" else c.selectbox("Sampler", ["random", "lhs", "sobol", "adaptive"],
                                                      key="opt_sampler", persist_state="session", width=w)
box_problems: list[str] = []  # boxes out of range (checked here: see widgets.number_box)
boxes = {"persist_state": "session", "width": w, "clearable": False}
n = None if method == "Grid" else int(number_box(c, "Combos (n)", DEFAULT_SWEEP_SAMPLES, "opt_n", box_problems, 1,
                                                 step=500, **boxes))
seed = int(number_box(c, "Seed", DEFAULT_SEED, "opt_seed", box_problems, 0, step=1, **boxes))
objective = c.selectbox("Objective", list(METRIC_NAMES), index=list(METRIC_NAMES).index("sharpe"),
                        key="opt_objective", persist_state="session", width=w)
maximize = c.selectbox("Direction", ["maximise", "minimise"], key="opt_direction", persist_state="session",
                       width=w) == "maximise"
min_trades = int(number_box(c, "Min trades", DEFAULT_MIN_TRADES, "opt_min_trades", box_problems, 0, step=5,
                            help="Fewest trades of the winner: a Sharpe of a few trades is luck", **boxes))
FORM = {"objective": objective, "maximize": maximize, "min_trades": min_trades}  # (show_run's own are the run's)
gpu = cuda_status()
use_gpu = gpu.available and bool(st.session_state.get("opt_gpu"))
c = controls_row()
engine_defaults, sweep_settings = EngineOptions(), sweep_defaults()  # threadx.toml / env / built-in
executors, fills = ["auto", "local", "inline", "dask"], ["next_open", "close"]
workers = int(number_box(c, "Workers", min(256, default_workers()), "opt_workers", box_problems, 1, 256, step=1,
                         help="CPU threads for combos a failed GPU hands back" if use_gpu else None, **boxes))
executor = c.selectbox("Executor", executors, key="opt_executor", persist_state="session", disabled=use_gpu, width=w,
                       index=executors.index(sweep_settings.executor) if sweep_settings.executor in executors else 0,
                       help="auto: threads of the job process for a small sweep (no workers to start), else local; "
                            "local: worker processes (a combo that crashes costs its chunk only); inline: threads; "
                            "dask: a local Dask cluster")
fee_bps = number_box(c, "Fee (bps)", float(engine_defaults.fee_bps), "opt_fee", box_problems, 0.0, MAX_COST_BOX_BPS,
                     step=0.5, **boxes)
fill = c.selectbox("Fill", fills, index=fills.index(engine_defaults.fill), key="opt_fill", persist_state="session",
                   width=w)
funding = funding_toggle(c, "opt_funding", persist_state="session")
c.toggle("GPU", value=sweep_settings.executor == "gpu" and gpu.available, disabled=not gpu.available, key="opt_gpu",
         persist_state="session",
         help=(f"Run the combos on {len(gpu.devices)} CUDA device(s): "
               + ", ".join(d.name for d in gpu.devices)) if gpu.available
         else f"Unavailable, sweeps run on the CPU: {gpu.reason or 'no CUDA device found'}")
if use_gpu:
    executor = "gpu"
funding_caption(dataset, funding)

# live combo count with its size band
count_error = None
try:
    search = SearchSpace(spec, space)
    rate = sweep_runs.measured_rate(store, strategy, dataset_bars(dataset))  # (else a typical rate: "fast" misled)
    if sampler == "grid":
        check_grid_size(search, "grid", sweep_settings.grid_limit)  # (the limit of threadx.toml, as the sweep's)
        band = size_text(search.size, rate, limit=sweep_settings.grid_limit)
        if search.size > COUNTED_UPTO:  # (counting the valid combos of a bigger grid on every rerun is too slow)
            st.info(f"**{search.size:,}** combos in the grid, fewer to run where constraints drop some (not counted "
                    f"above {COUNTED_UPTO:,}) — {band}")
        else:
            total = valid_combos(search, COUNTED_UPTO)
            st.info(f"**{total:,}** combos to run ({search.size:,} in the grid, {search.size - total:,} dropped by "
                    f"constraints) — {band}")
    elif not box_problems:  # (n out of range: said below)
        check_grid_size(search, sampler, sweep_settings.grid_limit, n)
        drawn = min(n, search.size)  # a space smaller than n runs each combo once (as the runner does)
        st.info(f"**{drawn:,}** combos drawn from a space of {search.size:,} — {size_text(drawn, rate)}"
                + (f" (n = {n:,} is more than the space holds: each combo runs once)" if n > search.size else ""))
except ThreadXError as exc:
    count_error = str(exc)
    st.error(f"Search space: {exc}")

def current_job():
    """The sweep job this session follows (None when none, or when its folder is gone); a new
    session follows the one the URL's ``job`` names (a refresh), else the only active sweep."""
    return followed_job(registry, "sweep_job", "sweep", notes=link_notes)


boxes_refused = show_problems(st, box_problems, "Launch")
held = launch_held(current_job(), "sweep", "sweep_job")
if st.button("Launch", type="primary", disabled=count_error is not None or boxes_refused or held,
             key="opt_launch") and not held and not strategy_fell_back():
    try:
        request = SweepRequest(  # checked here (grid limit, n, options), stored by the job, run by the runner
            data=DatasetRef(source=dataset, name=dataset), strategy=strategy, space=space, sampler=sampler, n=n,
            seed=seed, objective=objective, maximize=maximize, min_trades=min_trades, workers=workers,
            executor=executor, engine_options={"fee_bps": fee_bps, "fill": fill, "funding": funding})
        st.session_state["sweep_job"] = registry.submit(request.to_dict())
        st.session_state.pop("sweep_run", None)
        st.query_params.pop("run", None)
    except ThreadXError as exc:
        st.error(f"Cannot launch: {exc}")
    else:
        st.rerun()  # the whole app: the sidebar lists the new job at once


def job_monitor() -> None:
    """The followed job: its phase from its first second, then done/total, rate and ETA; Stop
    while it is active. When it ends, its run is shown (once) by a full rerun."""
    registry.refresh()  # starts queued jobs, marks dead ones failed
    job = current_job()
    if job is None:
        return
    if (job.is_finished and st.session_state.get("sweep_job_shown") == job.job_id
            and st.session_state.get("sweep_run") not in (None, job.run_id)):
        return  # another run reloaded from the history is shown: the job's "completed (14,525 / 14,525)" read as its
    if job_progress(registry, job, "opt_stop", "Stopping: the chunks of combos the workers hold finish and are kept…"):
        return
    stored = bool(job.run_id) and store.exists(job.run_id) and (job.done > 0 or job.state == "completed")
    if job.state == "failed":
        st.error(f"The sweep failed: {job.error}")
    elif job.state == "cancelled" and stored:
        st.warning(f"Stopped: the finished combos are stored in run `{job.run_id}`; **Resume** below runs the rest.")
    elif job.state == "cancelled":
        st.warning("Stopped before any combo was stored: nothing to resume; press **Launch** to start again.")
    if stored and st.session_state.get("sweep_job_shown") != job.job_id:
        # show the run once, when its job ends; a run reloaded from the history afterwards stays shown
        st.session_state["sweep_job_shown"] = job.job_id
        st.session_state["sweep_run"] = job.run_id
        st.rerun()  # the whole page, so the results below show the finished run


follow_job(job_monitor, current_job)


# --- run history ---------------------------------------------------------------------------
def show_history() -> None:
    """The stored runs (sortable), a run to reload, two runs to compare."""
    runs = sweep_runs.history(store)
    if runs.empty:
        st.caption("No stored runs yet.")
        return
    # each best in its objective's unit, as the run's cards write it ("1.9495" beside "1.77"; a total
    # return of 0.7372 beside "73.72 %"): the objectives differ from row to row
    runs = runs.assign(best=[format_metric(str(o).split(" ")[0], b)  # ("sharpe max": the metric, then the sense)
                             for o, b in zip(runs["objective"], runs["best"])])
    st.dataframe(runs, width="stretch", hide_index=True, key="opt_history_table", column_config={
        "run_id": st.column_config.TextColumn("Run id", pinned=True), "dataset": "Dataset", "strategy": "Strategy",
        "sampler": "Sampler", "done": st.column_config.NumberColumn("Done", format="%,d"),
        "planned": st.column_config.NumberColumn("Planned", format="%,d"),
        "failed": st.column_config.NumberColumn("Failed", format="%,d"), "objective": "Objective",
        "best": st.column_config.TextColumn("Best objective"), "status": "Status",
        "started_at": st.column_config.TextColumn("Started (UTC)")})
    ids = list(runs["run_id"])
    c = st.columns([3, 1])
    pick = c[0].selectbox("Reload a run", ids, key="opt_history")
    c[1].write("")
    if c[1].button("Show this run", key="opt_reload"):
        st.session_state["sweep_run"] = pick
        st.rerun()  # (the job line above was drawn for the run shown before)
    pair = st.multiselect("Compare two runs", ids, max_selections=2, key="opt_compare",
                          placeholder="Pick two runs")
    if len(pair) == 2:
        compare(*pair)


def compare(a: str, b: str) -> None:
    """Two runs side by side: their settings (differences first), best combos and the
    distribution of a metric over their combos."""
    try:
        views = [sweep_runs.load_view(store, a), sweep_runs.load_view(store, b)]
    except ThreadXError as exc:
        st.warning(f"Cannot compare: {exc}")
        return
    settings = sweep_runs.compare_settings(views[0].manifest, views[1].manifest)
    differ = int((~settings["same"]).sum())
    st.markdown(f"**Settings** ({differ} differ)")
    st.dataframe(settings, width="stretch", hide_index=True, key="opt_compare_settings")
    st.markdown("**Best combo**")
    st.dataframe(sweep_runs.compare_best(*views), width="stretch", hide_index=True, key="opt_compare_best")
    metrics = sweep_runs.metric_choices(views)
    objective = views[0].manifest.get("objective", "sharpe")
    if metrics:
        metric = st.selectbox("Distribution of", metrics, key="opt_compare_metric",
                              index=metrics.index(objective) if objective in metrics else 0)
        st.plotly_chart(sweep_runs.distribution_figure(views, metric), width="stretch", key="opt_compare_chart")


with st.expander("Run history", expanded=False):
    show_history()


# --- the shown run -------------------------------------------------------------------------
def shown_run() -> sweep_runs.RunView | None:
    """The run to show: the session's, else the URL's (``?run=``, a refresh or a shared link);
    the URL follows the session. An unknown or damaged run: one warning, and it is dropped."""
    run_id = linked_run("sweep_run", "run")
    if not run_id:
        return None
    try:
        return sweep_runs.load_view(store, run_id)
    except ThreadXError as exc:
        if not (store.root / run_id).exists():  # (as the other pages say it, without the server's folder)
            link_notes.warning(f"The link names run **{plain(run_id)}**, which is not stored (deleted?).")
        else:
            link_notes.warning(f"Run `{run_id}` cannot be shown: {exc}")
        drop_linked_run("sweep_run", "run")
        return None


def resume(view: sweep_runs.RunView) -> None:
    """Submit a job resuming the run on its recorded request; refused (with the reason) when
    its data is gone or changed."""
    try:
        request = sweep_runs.resume_request(view.manifest)
        sweep_runs.check_resume_data(request)
        st.session_state["sweep_job"] = registry.submit(request)
    except ThreadXError as exc:
        st.error(f"Cannot resume run {view.run_id}: {exc}")
        return
    st.session_state.pop("sweep_job_shown", None)
    st.rerun()  # the monitor follows the new job from its first second


def show_run(view: sweep_runs.RunView) -> None:
    """The shown run: id (copyable), status and Resume, results table, best combo, charts, export."""
    m, run_id = view.manifest, view.run_id
    st.subheader(f"Run {run_id}: {m['strategy']}, {int(m.get('done') or 0):,} combos, {view.status}")
    st.caption(describe_run(m))
    # (a link's ?run= opens the run while the form keeps the tab's dataset and strategy)
    # (and a search set otherwise: after a reload the form was back on Grid beside a sobol run, unsaid)
    searched = [("sampler", sampler, m.get("sampler"))]
    if sampler != "grid" and m.get("sampler") != "grid":
        searched += [("n", n, m.get("n")), ("seed", seed, m.get("seed"))]
    # and other costs (Launch ran fee 10 and next_open beside a run of 25 and close, unsaid)
    engine = m.get("engine") or {}
    costs = [("fee", f"{float(fee_bps):g} bps", None if engine.get("fee_bps") is None
              else f"{float(engine['fee_bps']):g} bps"), ("fill", fill, engine.get("fill")),
             # (no box: Launch runs the default; a run of 3 bps said nothing)
             ("slippage", f"{float(engine_defaults.slippage_bps):g} bps", None if engine.get("slippage_bps") is None
              else f"{float(engine['slippage_bps']):g} bps"),
             ("objective", f"{FORM['objective']} {'max' if FORM['maximize'] else 'min'}", None
              if m.get("objective") is None else f"{m['objective']} {'max' if m.get('maximize', True) else 'min'}"),
             ("min trades", FORM["min_trades"], m.get("min_trades"))]
    compared = (("dataset", dataset, m.get("dataset")), ("strategy", strategy, m.get("strategy")), *searched, *costs)
    other = [f"{what} **{number_text(mine) if isinstance(mine, int) else plain(mine)}**"
             for what, mine, its in compared if its is not None and its != "" and mine != its]
    moved = sweep_runs.space_differences(search, m) if count_error is None and strategy == m.get("strategy") else []
    if moved:
        other.append(f"another search space (**{', '.join(plain(name) for name in moved)}**)")
    if other:
        offered = [what for what, ok in (("Resume", view.resumable and not view.nothing_stored),
                                         ("Open in Backtest", view.best is not None)) if ok]
        st.info(f"The form above is set to {' and '.join(other)}, not this run's: **Launch** runs the form's"
                + (f"; {' and '.join(offered)} use{'s' if len(offered) == 1 else ''} this run's." if offered else "."))
    for text in m.get("warnings") or []:  # what the sweep warned of about its own rows
        st.warning(f"This run's rows may not all be right: {text}")
    stale = sweep_runs.code_changes(m)
    if stale:
        st.info(f"This run was computed with other code than ThreadX has now ({stale}): its rows are that code's; "
                "sweep again for the current code's (Resume and Open in Backtest refuse it).")
    c = st.columns([4, 1])
    c[0].code(run_id, language=None)  # copyable; `threadx sweep ... --run-id` resumes it too
    working = current_job()
    running_here = working is not None and working.is_active and working.run_id == run_id
    if running_here:
        c[1].caption("A job is running this run: see its progress above.")
    elif view.resumable and view.nothing_stored:
        c[1].caption("Nothing stored to resume: **Launch** starts it again.")  # (a Resume beside "nothing to resume")
    elif view.resumable:
        todo = int(m.get("total") or 0) - int(m.get("done") or 0)
        what = f"{todo:,} combos left" if todo > 0 else f"{view.to_retry:,} combos to run again"
        if c[1].button("Resume", key="opt_resume", type="primary", help=f"Run the rest of this run ({what}) "
                       "on its recorded data, space and options; the stored combos are kept"):
            resume(view)
    if view.failures:
        failed = int(m.get("failed") or 0)
        shown_count = sum(count for _, count in view.failures)
        lines = "\n".join(f"- {count:,} × {plain(text, 300)}" for text, count in view.failures)
        more = f"\n- {failed - shown_count:,} more, with other errors" if failed > shown_count else ""
        st.warning(f"{failed:,} combos failed; why:\n{lines}{more}")
    if view.ok.empty:
        st.info("No successful combo stored." if view.status.startswith("completed") or view.status == "failed"
                else "No combo was stored before it was stopped." if view.status == "cancelled"
                else "No successful combo stored yet.")
        return
    objective = m.get("objective", "sharpe")
    untried = [] if running_here or view.status == "running" else sweep_runs.partial_coverage(m, view.ok)
    if untried:  # (read as a random part of the space, its winner and heatmap misled)
        st.warning(f"{view.status.capitalize()} after {int(m.get('done') or 0):,} of {int(m.get('total') or 0):,} "
                   "combos, which are no random part of the plan: combos run grouped by the indicators they share, "
                   f"so the stored ones reach only {'; '.join(untried)}. Resume before reading the best combo or the "
                   "heatmap as the space's.")
    min_trades = int(m.get("min_trades") or 0)
    if view.too_few_trades:  # (the table's top rows read as the winner: they were under the minimum)
        few = view.too_few_trades
        st.caption(f"Ranked by {objective}; {'the ' if few > 1 else ''}{counted(few, 'combo')} with fewer than "
                   f"{counted(min_trades, 'trade')} (the run's minimum) {'come' if few > 1 else 'comes'} after the "
                   f"others and {'are' if few > 1 else 'is'} never the best combo.")
    shown, config = table_view(view.table)
    st.dataframe(shown, width="stretch", height=300, hide_index=True, column_config=config)
    if view.best is not None:
        rule = f" ({'highest' if m.get('maximize', True) else 'lowest'} {objective}" + (
            f" with at least {min_trades:,} trades)" if min_trades else ")")
        st.markdown(f"**Best combo**{rule}: " + ", ".join(f"`{k}={view.best_params[k]}`" for k in view.varying
                                                         if k in view.best_params))
        # the displayed run's data, strategy, winner and engine options
        page_button(st, "Open in Backtest", "opt_open_best", "views/2_Backtest.py",
                    lambda: handover(BacktestRequest.from_manifest(m, view.best_params), run_id),
                    failed=f"Cannot open run {run_id} in Backtest")
        losing = sweep_runs.losing_note(view)
        if losing:
            st.warning(losing)
        if view.edges:  # a winner at an edge of its searched range: the optimum may lie outside
            axes = {a["name"]: a["values"] for a in m["space"]["axes"]}
            st.warning("The best combo sits on the edge of its searched range for "
                       + ", ".join(f"`{p}={view.best_params[p]}` (searched {min(axes[p])} to {max(axes[p])})"
                                   for p in view.edges)
                       + ": the optimum may lie outside it. Widen these ranges and run again.")

    ok, varying = view.ok, view.varying
    # only the open tab is computed (a Pareto front of 50k combos takes ~0.3 s to draw)
    tabs = st.tabs(["Heatmap", "Parallel coordinates", "Pareto", "Export", "Timings"], key="opt_result_tab",
                   on_change="rerun")
    if tabs[0].open:
        with tabs[0]:
            if len(varying) >= 2:
                h = st.columns(4)
                x = h[0].selectbox("X", varying, index=0, key="hm_x")
                y = h[1].selectbox("Y", varying, index=1, key="hm_y")
                metric = h[2].selectbox("Metric", list(METRIC_NAMES), index=list(METRIC_NAMES).index(objective),
                                        key="hm_metric")
                agg = h[3].selectbox("Other params", ["max", "mean"], key="hm_agg")
                try:
                    st.plotly_chart(charts.heatmap_figure(ok, x, y, metric, agg=agg), width="stretch")
                except ValueError as exc:
                    st.warning(str(exc))
            else:
                st.caption("A heatmap needs two params that vary.")
    if tabs[1].open:
        with tabs[1]:
            st.plotly_chart(charts.parallel_coordinates_figure(ok, varying, objective), width="stretch")
    if tabs[2].open:
        with tabs[2]:
            st.plotly_chart(charts.pareto_figure(ok, "max_drawdown", "sharpe"), width="stretch")
    if tabs[4].open:
        with tabs[4]:
            timings_section(m.get("timings"), key="opt")
    if tabs[3].open:
        with tabs[3]:
            e = st.columns(2)  # written when clicked, not on every rerun

            def results_csv() -> str:
                return store.load(run_id).results.to_csv(index=False)

            def results_parquet() -> bytes:
                buffer = io.BytesIO()
                store.load(run_id).results.to_parquet(buffer, index=False)
                return buffer.getvalue()

            e[0].download_button("Results (CSV)", results_csv, file_name=f"{run_id}.csv", mime="text/csv",
                                 key="opt_csv", on_click="ignore")
            e[1].download_button("Results (Parquet)", results_parquet, file_name=f"{run_id}.parquet",
                                 key="opt_parquet", on_click="ignore")

view = shown_run()
if view is not None:
    show_run(view)
