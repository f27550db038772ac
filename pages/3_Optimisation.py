"""Optimisation page: space editor, live combo count, sweep job with progress and Stop,
results table, heatmap, parallel coordinates, Pareto front, best combo, run history."""
from __future__ import annotations

import io
import os
import time

import streamlit as st

import threadx
from threadx.config import DEFAULT_FEE_BPS, DEFAULT_MIN_TRADES, DEFAULT_SEED
from threadx.engine.layout import METRIC_NAMES
from threadx.errors import ThreadXError
from threadx.optimize.space import SearchSpace, size_band, stored_axes
from threadx.optimize.store import ResultStore
from threadx.requests import BacktestRequest, DatasetRef, SweepRequest, describe_run
from threadx.ui import charts
from threadx.ui.jobs import JobRegistry
from threadx.ui.state import cuda_status, dataset_picker, handover, strategy_picker
from threadx.ui.widgets import space_editor
from threadx.validation.stability import edge_params

# How long one script run follows a running sweep before starting a fresh run (tests set 0:
# render the current state once and return).
FOLLOW_SECONDS = float(os.environ.get("THREADX_UI_FOLLOW_SECONDS", "30"))

st.title("Optimisation")
registry = JobRegistry()


store = ResultStore()

specs = threadx.strategies()
top = st.columns([3, 2, 2])
with top[0]:
    dataset = dataset_picker()
with top[1]:
    strategy = strategy_picker("opt_strategy", default="ma_crossover")
with top[2]:
    method = st.radio("Search", ["Grid", "Monte Carlo"], horizontal=True, key="opt_method")
spec = specs[strategy]

with st.expander("Search space", expanded=True):
    space = space_editor(spec, key_prefix="opt")

c = st.columns(6)
sampler = "grid" if method == "Grid" else c[0].selectbox("Sampler", ["random", "lhs", "sobol", "adaptive"],
                                                         key="opt_sampler")
n = None if method == "Grid" else int(c[1].number_input("Combos (n)", min_value=1, value=2_000, step=500,
                                                       key="opt_n"))
seed = int(c[2].number_input("Seed", min_value=0, value=DEFAULT_SEED, step=1, key="opt_seed"))
objective = c[3].selectbox("Objective", list(METRIC_NAMES), index=list(METRIC_NAMES).index("sharpe"),
                           key="opt_objective")
maximize = c[4].selectbox("Direction", ["maximise", "minimise"], key="opt_direction") == "maximise"
min_trades = int(c[5].number_input("Min trades", min_value=0, value=DEFAULT_MIN_TRADES, step=5, key="opt_min_trades",
                                   help="Fewest trades of the winner: a Sharpe of a few trades is luck"))
gpu = cuda_status()
use_gpu = gpu.available and bool(st.session_state.get("opt_gpu"))
c = st.columns(6)
workers = int(c[0].number_input("Workers", min_value=1, max_value=256, value=2, step=1, key="opt_workers",
                                help="CPU threads for combos a failed GPU hands back" if use_gpu else None))
executor = c[1].selectbox("Executor", ["auto", "local", "inline", "dask"], key="opt_executor", disabled=use_gpu)
fee_bps = c[2].number_input("Fee (bps)", min_value=0.0, value=DEFAULT_FEE_BPS, step=0.5, key="opt_fee")
fill = c[3].selectbox("Fill", ["next_open", "close"], key="opt_fill")
c[4].toggle("GPU", value=False, disabled=not gpu.available, key="opt_gpu",
            help=(f"Run the combos on {len(gpu.devices)} CUDA device(s): "
                  + ", ".join(d.name for d in gpu.devices)) if gpu.available
            else f"Unavailable, sweeps run on the CPU: {gpu.reason or 'no CUDA device found'}")
if use_gpu:
    executor = "gpu"

# live combo count with its size band
count_error = None
try:
    search = SearchSpace(spec, space)
    if sampler == "grid":
        total = search.count_valid() if search.size <= 1_000_000 else search.size
        band = size_band(search.size)
        st.info(f"**{total:,}** combos to run ({search.size:,} in the grid, {search.size - total:,} dropped by "
                f"constraints) — **{band}**" + (" (over the 10M limit: narrow the ranges or use Monte Carlo)"
                                                if band == "refused" else ""))
    else:
        st.info(f"**{n:,}** combos drawn from a space of {search.size:,} — **{size_band(n)}**")
except ThreadXError as exc:
    count_error = str(exc)
    st.error(f"Search space: {exc}")

if st.button("Launch", type="primary", disabled=count_error is not None, key="opt_launch"):
    try:
        request = SweepRequest(  # checked here (grid limit, n, options), stored by the job, run by the runner
            data=DatasetRef(source=dataset, name=dataset), strategy=strategy, space=space, sampler=sampler, n=n,
            seed=seed, objective=objective, maximize=maximize, min_trades=min_trades, workers=workers,
            executor=executor, engine_options={"fee_bps": fee_bps, "fill": fill})
        st.session_state["sweep_job"] = registry.submit(request.to_dict())
        st.session_state.pop("sweep_run", None)
    except ThreadXError as exc:
        st.error(f"Cannot launch: {exc}")


def current_job():
    job_id = st.session_state.get("sweep_job")
    if not job_id:
        return None
    try:
        return registry.get(job_id)
    except (ThreadXError, KeyError, FileNotFoundError):
        return None


def progress_text(job) -> str:
    eta = "–" if job.eta_s is None or job.state != "running" else f"{job.eta_s:,.0f} s"
    return (f"{job.state}: {job.done:,} / {job.total:,} combos · {job.rate or 0:,.0f} backtests/s · ETA {eta} · "
            f"failed {job.failed or 0}")


def follow_job() -> None:
    """Show the job's progress until it ends. The sweep runs in its own process; this
    script run only polls it (a click, e.g. on Stop, or leaving the page interrupts the
    poll and the next run picks it up again)."""
    job = current_job()
    if job is None:
        return
    registry.refresh()
    bar = st.empty()
    if job.state in ("queued", "running") and st.button("Stop", key="opt_stop"):
        registry.stop(job.job_id)
        st.toast("Stopping after the current chunk…")
    deadline = time.monotonic() + FOLLOW_SECONDS
    while job.state in ("queued", "running") and time.monotonic() < deadline:
        bar.progress(job.fraction, text=progress_text(job))
        time.sleep(0.5)
        registry.refresh()
        job = registry.get(job.job_id)
    bar.progress(job.fraction, text=progress_text(job))
    if job.state in ("queued", "running"):
        if FOLLOW_SECONDS > 0:
            st.rerun()  # keep following in a fresh run
        return
    if job.state == "failed":
        st.error(f"The sweep failed: {job.error}")
    elif job.state == "cancelled":
        st.warning("Stopped: the finished combos are stored; launch the same run id to resume.")
    if job.run_id and st.session_state.get("sweep_job_shown") != job.job_id:
        # show the run once, when its job ends; a run reloaded from the history afterwards stays shown
        st.session_state["sweep_job_shown"] = job.job_id
        st.session_state["sweep_run"] = job.run_id


follow_job()

# --- results ------------------------------------------------------------------------------
runs = store.list_runs()
with st.expander("Run history", expanded=False):
    if len(runs):
        st.dataframe(runs, width="stretch", hide_index=True)
        pick = st.selectbox("Reload a run", list(runs["run_id"]), key="opt_history")
        if st.button("Show this run", key="opt_reload"):
            st.session_state["sweep_run"] = pick
    else:
        st.caption("No stored runs yet.")

run_id = st.session_state.get("sweep_run")
if run_id:
    try:
        run = store.load(run_id)
    except ThreadXError as exc:
        st.error(str(exc))
        run = None
    if run is not None and len(run.results):
        m = run.manifest
        st.subheader(f"Run {run_id}: {m['strategy']}, {m.get('done', 0):,} combos, {m.get('status')}")
        st.caption(describe_run(m))
        ok = run.ok()
        objective = m.get("objective", "sharpe")
        ascending = not m.get("maximize", True)
        varying = [a["name"] for a in m["space"]["axes"] if len(a["values"]) > 1] or run.param_names
        shown_cols = [*varying, objective, "total_return", "sharpe", "max_drawdown", "n_trades", "win_rate"]
        shown_cols = list(dict.fromkeys(col for col in shown_cols if col in ok.columns))
        table = ok.sort_values(objective, ascending=ascending, na_position="last").head(500)
        st.dataframe(table[shown_cols], width="stretch", height=300, hide_index=True)

        best = run.top(1, min_trades=int(m.get("min_trades", 0)))
        if not best.empty:
            best_params = run.best_params()
            st.markdown("**Best combo:** " + ", ".join(f"`{k}={best_params[k]}`" for k in varying))
            if st.button("Open in Backtest", key="opt_open_best"):
                try:  # the displayed run's data, strategy, winner and engine options
                    handover(BacktestRequest.from_manifest(m, best_params), run_id)
                except ThreadXError as exc:
                    st.error(f"Cannot open run {run_id} in Backtest: {exc}")
                else:
                    st.switch_page("pages/2_Backtest.py")
        if not best.empty:  # a winner at an edge of its searched range: the optimum may lie outside
            axes = {a["name"]: a["values"] for a in m["space"]["axes"]}
            edges = [p for p in edge_params(SearchSpace(specs[m["strategy"]], stored_axes(m["space"])),
                                            int(best.iloc[0]["combo_id"])) if not isinstance(axes[p][0], (bool, str))]
            if edges:  # numeric ranges only: a bool or a choice has no range to widen
                st.warning("The best combo sits on the edge of its searched range for "
                           + ", ".join(f"`{p}={best_params[p]}` (searched {min(axes[p])} to {max(axes[p])})"
                                       for p in edges)
                           + ": the optimum may lie outside it. Widen these ranges and run again.")

        tabs = st.tabs(["Heatmap", "Parallel coordinates", "Pareto", "Export"])
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
        with tabs[1]:
            st.plotly_chart(charts.parallel_coordinates_figure(ok, varying, objective), width="stretch")
        with tabs[2]:
            st.plotly_chart(charts.pareto_figure(ok, "max_drawdown", "sharpe"), width="stretch")
        with tabs[3]:
            e = st.columns(2)
            e[0].download_button("Results (CSV)", run.results.to_csv(index=False), file_name=f"{run_id}.csv",
                                 mime="text/csv", key="opt_csv")
            buffer = io.BytesIO()
            run.results.to_parquet(buffer, index=False)
            e[1].download_button("Results (Parquet)", buffer.getvalue(), file_name=f"{run_id}.parquet",
                                 key="opt_parquet")

