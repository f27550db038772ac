"""Research page: strategies walk-forwarded on several datasets as one background job (progress
and Stop), then the strategy x asset matrix (grade, OOS Sharpe, consistency, trades), the
transfer matrix and each cell's full report on the Validation page.

Session state keys of this page:

- ``rs_job``   id of the research job this page follows
- ``rs_seen``  id of the finished job whose result was already put on screen
- ``rs_run``   research id shown (set by a finished job; the select box ``rs_history`` follows it)
- ``wf_run``   set by "Open report": the walk-forward the Validation page shows
- ``pf_from_research`` set by "Portfolio from winners": the research whose winners the Portfolio page runs
"""
from __future__ import annotations

from typing import Any

import streamlit as st

import threadx
from threadx.config import (DEFAULT_BOOTSTRAP, DEFAULT_SEED, DEFAULT_WF_IS_DAYS, DEFAULT_WF_OOS_DAYS,
                            DEFAULT_WF_SAMPLES, settings)
from threadx.data.catalog import name_timeframe
from threadx.errors import ThreadXError
from threadx.optimize.runner import default_workers
from threadx.requests import DatasetRef, ResearchRequest
from threadx.ui import research as rs
from threadx.ui.jobs import JobInfo, JobRegistry
from threadx.ui.state import (active_dataset, active_strategy, dataset_names, load_dataset, none_stored,
                              stored_pick, strategy_names)
from threadx.ui.walk_forward_form import BOUNDS
from threadx.ui.widgets import (CONTROL_PX, controls_row, follow_job, followed_job, funding_toggle, job_progress,
                                launch_held, number_box, page_button, show_finished_job, space_editor)
from threadx.units import counted, table_view
from threadx.validation.research import load_research

SAMPLERS = ["random", "lhs", "sobol", "grid"]

st.title("Research")
link_notes = st.container()  # what the page's link got wrong, said at the top (it sat below the launch form)
registry = JobRegistry()
RESULTS_DIR = str(settings().results_dir)


def current_job() -> JobInfo | None:
    return followed_job(registry, "rs_job", "research", refresh=True, notes=link_notes)


def launch_form() -> None:
    """Strategies, datasets, windows and sampler; Launch submits a ``research`` job."""
    names = strategy_names()
    datasets = dataset_names()
    first = active_strategy(names)  # the session's strategy first, as its dataset below
    strategies = st.multiselect("Strategies", names, default=[first] if first else names[:1], key="rs_strategies",
                                persist_state="session")
    active = active_dataset()  # the session's dataset first, as on every page (not the list's first)
    # the whole width and the bare names (synthetic/... says what it is): with several chosen, the
    # long "— synthetic sample data" chips scrolled the box sideways, hiding the first ones
    chosen = st.multiselect("Datasets", datasets, default=[active] if active in datasets else datasets[:1],
                            key="rs_datasets", persist_state="session")
    space: dict[str, Any] = {}
    if len(strategies) == 1:
        with st.expander("Search space", expanded=False):
            space = space_editor(threadx.strategies()[strategies[0]], key_prefix="rs")
    c, w = controls_row(), CONTROL_PX  # (a row that wraps: six columns are too narrow at 1024 px)
    session = {"persist_state": "session", "width": w, "clearable": False}
    box_problems: list[str] = []  # boxes out of range (checked here: see widgets.number_box)
    is_days = float(number_box(c, "In-sample (days)", DEFAULT_WF_IS_DAYS, "rs_is_days", box_problems,
                               *BOUNDS["is_days"], step=15.0, **session))  # (as on the Validation page)
    oos_days = float(number_box(c, "Out-of-sample (days)", DEFAULT_WF_OOS_DAYS, "rs_oos_days", box_problems,
                                *BOUNDS["oos_days"], step=5.0, **session))
    sampler = c.selectbox("Sampler", SAMPLERS, key="rs_sampler", persist_state="session", width=w)
    n = None if sampler == "grid" else int(number_box(c, "Combos (n)", DEFAULT_WF_SAMPLES, "rs_n", box_problems,
                                                      *BOUNDS["n"], step=50, **session))
    workers = int(number_box(c, "Workers", min(256, default_workers()), "rs_workers", box_problems, 1, 256, step=1,
                             **session))
    boot_n = int(number_box(c, "Bootstrap resamples", DEFAULT_BOOTSTRAP, "rs_boot", box_problems, *BOUNDS["boot"],
                            step=100, **session))
    funding = funding_toggle(c, "rs_funding", persist_state="session")
    st.caption(("One strategy: the search space above. " if len(strategies) == 1 else
                "Several strategies: each runs on its declared parameter ranges. ")
               + "Every cell is a walk-forward with its validation report (the same as the Validation page's); "
               "then each cell's whole-period winner is backtested unchanged on every dataset's "
               "out-of-sample span (the transfer matrix)."
               + (" Each dataset pays its funding file, where it has one." if funding else " No funding."))
    problems = [] if strategies and chosen else ["pick at least one strategy and one dataset"]
    problems += box_problems
    if not box_problems:  # (windows of days out of range: said above)
        problems += [f"no window fits on {p}" for p in rs.window_problems(chosen, is_days, oos_days, load_dataset)]
    edited = space if len(strategies) == 1 else None  # several strategies: each its declared ranges
    try:
        problems += rs.grid_problems(strategies, sampler, edited)
    except ThreadXError as exc:  # an edited range the space refuses
        problems.append(f"search space: {exc}")
    for problem in problems:
        st.warning(f"Cannot run: {problem}.")
    mixed = rs.timeframe_note(chosen, {name: name_timeframe(name) for name in chosen})  # (their names say it)
    if mixed:
        st.warning(f"Note: {mixed}.")
    if not problems:
        try:
            st.info(rs.plan_text(strategies, len(chosen), sampler, n, edited))
        except ThreadXError as exc:  # an edited range the space refuses: said here, Launch says it again
            st.warning(f"Cannot run: {exc}")
    held = launch_held(current_job(), "research", "rs_job")
    if st.button("Launch research", type="primary", disabled=bool(problems) or held, key="rs_launch") and not held:
        try:
            options: dict[str, Any] = {"is_days": is_days, "oos_days": oos_days, "sampler": sampler,
                                       "seed": DEFAULT_SEED, "bootstrap": boot_n,
                                       "engine_options": {"funding": funding}}
            if n is not None:
                options["n"] = n
            request = ResearchRequest(tuple(strategies), tuple(DatasetRef(source=d, name=d) for d in chosen),
                                      space=space, options=options, workers=workers)
            st.session_state["rs_job"] = registry.submit(request)
        except ThreadXError as exc:
            st.error(f"Cannot launch: {exc}")


def monitor() -> None:
    """The followed job: its phase from its first second, Stop while active; when it ends, its
    result is selected (once) by a full rerun."""
    job = current_job()
    if job is None:
        return
    if job_progress(registry, job, "rs_stop", "Stopping after the current chunk of combos…"):
        return
    stored = bool(job.run_id) and any(r["research_id"] == job.run_id for r in rs.list_research(RESULTS_DIR))
    if job.state == "failed":
        st.error(f"The research failed: {job.error}")
    elif job.state == "cancelled":
        st.warning("Stopped: the cells finished before the stop are shown below." if stored
                   else "Stopped before any result was stored.")
    show_finished_job(job, "rs", stored)


def open_report(result: Any) -> None:
    """A select box over the cells and "Open report": the cell's walk-forward on the Validation page."""
    cells = {c["run_id"]: c for c in result.cells if c.get("run_id")}  # (a failed cell stored no walk-forward)
    if not cells:
        return
    c = st.columns([5, 1], vertical_alignment="bottom")
    pick = c[0].selectbox("Cell", list(cells), key="rs_cell", format_func=lambda r: rs.cell_label(cells[r]))
    def open_cell() -> None:
        st.session_state["wf_run"] = pick

    page_button(c[1], "Open report", "rs_open", "views/4_Validation.py", open_cell)


def show_research(research_id: str) -> None:
    """The matrix (heatmap and table), the kept lines, the transfer heatmaps and the cell picker."""
    try:
        result = load_research(research_id, RESULTS_DIR)
    except ThreadXError as exc:
        st.error(str(exc))
        return
    wf = result.config.get("walk_forward", {})
    st.subheader(f"Research {research_id}")
    unit = "days" if wf.get("is_days") else "bars"
    combos = sorted({c["combos"] for c in result.cells if isinstance(c.get("combos"), int)})
    ran = ""  # what the cells ran (n above a space's size draws the whole space)
    if combos:
        ran = f" ({combos[0]:,}{f'-{combos[-1]:,}' if len(combos) > 1 else ''} combos run)"
    st.caption(f"{', '.join(result.config.get('strategies', []))} on "
               f"{counted(len(result.config.get('datasets', [])), 'dataset')} · "
               f"IS {wf.get('is_days') or wf.get('is_bars'):g} / OOS {wf.get('oos_days') or wf.get('oos_bars'):g} "
               f"{unit} · {wf.get('sampler')} sampler"
               + (f", n = {wf['n']:,}" if wf.get("n") and wf.get("sampler") != "grid" else "") + ran
               + f" · {result.status}")
    if result.status == "cancelled":
        st.warning("Stopped early: only the finished cells are shown (no transfer backtests).")
    if not result.cells:
        st.info("No cell finished before the stop.")
        return
    failed = [cell for cell in result.cells if cell.get("error")]
    if failed:  # (its walk-forward failed: no figures, no transfer; the other cells are whole)
        st.error("\n".join([f"{len(failed)} of {len(result.cells)} cells failed:", "",
                            *(f"- **{c['strategy']}** on **{c['dataset']}**: {c['error']}" for c in failed)]))
    st.plotly_chart(rs.matrix_figure(result), width="stretch", key="rs_matrix")
    shown, config = table_view(rs.cells_table(result), aliases={"trades": "n_trades"},
                               labels={"oos_sharpe": "OOS Sharpe", "consistency": "consistency", "trades": "trades"})
    st.dataframe(shown, hide_index=True, width="stretch", column_config=config)
    for line in rs.kept_lines(result):
        st.markdown(line)
    for strategy in dict.fromkeys(c["strategy"] for c in result.cells):
        if any(t["strategy"] == strategy for t in result.transfer):
            st.plotly_chart(rs.transfer_figure(result, strategy), width="stretch", key=f"rs_transfer_{strategy}")
    if result.transfer:
        st.caption("Transfer: each cell's whole-period winner traded unchanged on every asset's out-of-sample span. "
                   "The grey diagonal is in sample (the params were chosen on a period holding that span): it is "
                   "left out of the OOS Sharpe colours.")
    notes = {t.get("note") for t in result.transfer if t.get("note")}
    for note in notes:
        st.caption(f"Some transfer rows are empty: {note}.")
    st.markdown("#### Full report of a cell")
    open_report(result)
    def hand_winners() -> None:
        st.session_state["pf_from_research"] = research_id

    page_button(st, "Portfolio from winners", "rs_portfolio", "views/8_Portfolio.py", hand_winners,
                help="the Portfolio page with one runner per cell, on the winner of its last in-sample window "
                     "(params chosen on these candles: the portfolio is in sample)")


launch_form()
job = follow_job(monitor, current_job)

damaged: list[tuple[str, str]] = []
stored = rs.list_research(RESULTS_DIR, damaged)
for research_id, why in damaged:
    st.warning(f"Stored research {research_id} is damaged and left out of the list: {why}.")
if stored:
    info = {r["research_id"]: r for r in stored}
    pick = stored_pick("Stored research", list(info), "rs", "research", what="research", notes=link_notes,
                       describe=lambda r: f"{r} · {info[r]['strategies']} · {info[r]['datasets']} · "
                                          f"{info[r]['cells']} cells · {info[r]['status']}")
    show_research(pick)
else:
    none_stored("rs", "research", "research", notes=link_notes)
if not stored and (job is None or job.is_finished):
    st.info("No stored research yet: pick one or more strategies and datasets above (the synthetic sample is "
            "enough) and press **Launch research**. Each strategy is walk-forwarded on each dataset; the "
            "strategy × asset matrix, the transfer matrix and each cell's report appear here.")
