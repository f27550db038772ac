"""Portfolio page: several runners (a strategy on a dataset, with its params and weight) share
one capital as one background job (progress and Stop); then the combined equity and
drawdown, margin and open positions, each runner's equity and breakdown, skipped entries,
kill-switch events and the drawdown correlation. Runners come from the form or from a stored
research job (the Research page's "Portfolio from winners" fills them in).

Session state keys of this page:

- ``pf_runners``        the runner dicts to launch (threadx.portfolio.Runner.to_dict)
- ``pf_job``            id of the portfolio job this page follows
- ``pf_seen``           id of the finished job whose result was already put on screen
- ``pf_run``            portfolio id shown (the select box ``pf_history`` follows it)
- ``pf_from_research``  set by the Research page: a research id whose winners become the runners
"""
from __future__ import annotations

import streamlit as st

import threadx
from threadx.config import DEFAULT_RESEARCH_PARAMS, MAX_COST_BOX_BPS, STORED, settings
from threadx.data.catalog import list_datasets
from threadx.engine.inputs import EngineOptions
from threadx.errors import ThreadXError
from threadx.portfolio import Runner, list_portfolios, load_portfolio
from threadx.portfolio.backtest import DEFAULT_COOLDOWN, DEFAULT_KILL_WINDOW
from threadx.portfolio.runners import (CHOICE_TEXT, HAND_ADDED, IN_SAMPLE_NOTE, PARAM_CHOICES, funding_differences,
                                       in_sample, option_differences, research_engine_options, research_funding,
                                       research_origin, runners_from_research)
from threadx.requests import DatasetRef, PortfolioRequest, describe_options
from threadx.ui import portfolio as pf
from threadx.ui import research as rs
from threadx.ui.jobs import JobInfo, JobRegistry
from threadx.ui.state import (active_dataset, active_strategy, dataset_names, label_dataset, none_stored,
                              stored_pick, strategy_names)
from threadx.ui.widgets import (follow_job, followed_job, job_progress, launch_held, metric_grid, number_box,
                                param_form, show_finished_job, show_problems)
from threadx.units import format_metric, table_view

DEFAULTS = EngineOptions()  # the one source of the engine's defaults
FILLS = ["next_open", "close"]
st.title("Portfolio")
link_notes = st.container()  # what the page's link got wrong, said at the top
registry = JobRegistry()
RESULTS_DIR = str(settings().results_dir)
st.session_state.setdefault("pf_runners", [])


def current_job() -> JobInfo | None:
    return followed_job(registry, "pf_job", "portfolio", refresh=True, notes=link_notes)


def load_research_runners(research_id: str, strategy: str | None = None, kept_only: bool = False,
                          choice: str = DEFAULT_RESEARCH_PARAMS) -> None:
    """The runners a stored research chose become the list to launch (an error says why not)."""
    try:  # (everything read before the form changes: a damaged research left it half replaced)
        runners = runners_from_research(research_id, strategy, kept_only=kept_only, choice=choice)
        origin = research_origin(research_id, choice, kept_only, strategy)
        options = research_engine_options(research_id)  # (checked: a fee of "abc" raised in the box below)
        funding = research_funding(research_id)
    except ThreadXError as exc:
        st.error(f"Cannot load runners from research {research_id}: {exc}")
        return
    st.session_state["pf_runners"] = [r.to_dict() for r in runners]
    st.session_state["pf_origin"] = origin
    # the engine options the winners were chosen under: the form's boxes take them, the others ride along
    st.session_state["pf_research_options"] = options
    st.session_state["pf_research_funding"] = funding
    for key, box in (("fee_bps", "pf_fee"), ("fill", "pf_fill"), ("leverage", "pf_leverage")):
        if key in options or key == "leverage":
            st.session_state[box] = float(options.get(key) or 0.0) if key != "fill" else options[key]


def load_stored(config: dict) -> None:
    """A stored portfolio's runners and settings become the form's (the runner list was lost to
    a refresh, and a stored portfolio could not be run again with one change)."""
    engine = dict(config.get("engine_options") or {})
    st.session_state["pf_runners"] = [dict(r) for r in config.get("runners") or []]
    st.session_state["pf_origin"] = config.get("origin")
    st.session_state.pop("pf_research_funding", None)
    # the options without a box ride along, as a research's do
    st.session_state["pf_research_options"] = {k: v for k, v in engine.items() if k not in ("fee_bps", "fill",
                                               "leverage", "funding") and v is not None and v != getattr(DEFAULTS, k)}
    st.session_state.update(
        pf_capital=float(config.get("capital") or DEFAULTS.initial_capital),
        pf_guard=float(config.get("margin_guard") or 0.0), pf_cap=float(config.get("runner_cap") or 0.0),
        pf_kill=float(config.get("kill_switch") or 0.0) * 100,
        pf_window=config.get("kill_window") or DEFAULT_KILL_WINDOW, pf_cooldown=config.get("cooldown") or DEFAULT_COOLDOWN,
        pf_fee=float(engine.get("fee_bps", DEFAULTS.fee_bps)),
        pf_leverage=float(engine.get("leverage") or 0.0), pf_fill=engine.get("fill") or DEFAULTS.fill,
        pf_funding=config.get("funding") == STORED)


handed = st.session_state.pop("pf_from_research", None)  # "Portfolio from winners" on the Research page
if handed:
    st.session_state["pf_research"] = handed
    load_research_runners(handed)


def add_runner_form() -> None:
    """Strategy, dataset, weight and (optionally) params; "Add runner" appends it to the list."""
    specs = threadx.strategies()
    names, datasets = strategy_names(), dataset_names()
    c = st.columns([2, 3, 1])
    # the session's strategy and dataset (a link's ?strategy= and ?dataset=, another page's pick) first
    data = active_dataset()
    first = active_strategy(names)
    strategy = c[0].selectbox("Strategy", names, index=names.index(first), key="pf_strategy", persist_state="session")
    dataset = c[1].selectbox("Dataset", datasets, index=datasets.index(data) if data in datasets else 0,
                             key="pf_dataset", persist_state="session", format_func=label_dataset)
    weight_problems: list[str] = []  # (checked here: see widgets.number_box)
    weight = float(number_box(c[2], "Weight", 1.0, "pf_weight", weight_problems, 0.01, step=0.5, clearable=False,
                              persist_state="session",
                              help="its share of the capital, relative to the other runners' weights"))
    params: dict = {}
    if st.checkbox("Set parameters (else the strategy's defaults)", key="pf_custom"):
        params = param_form(specs[strategy], specs[strategy].defaults(), key_prefix="pf")
    if st.button("Add runner", key="pf_add", disabled=show_problems(st, weight_problems, "Add runner")):
        try:
            runner = Runner(strategy, DatasetRef(source=dataset, name=dataset), params, weight)
        except ThreadXError as exc:
            st.error(f"Cannot add this runner: {exc}")
            return
        st.session_state["pf_runners"], note = pf.add_runner(st.session_state["pf_runners"], runner)
        origin = st.session_state.get("pf_origin")
        if origin and not origin.endswith(HAND_ADDED):  # (the loaded runners stay in sample beside it)
            st.session_state["pf_origin"] = origin + HAND_ADDED
        if note:
            st.info(note)


def research_form() -> None:
    """A stored research id, a strategy, which params and kept-only; "Load runners" fills the list."""
    damaged: list[tuple[str, str]] = []
    stored = rs.list_research(RESULTS_DIR, damaged)
    for research_id, why in damaged:  # (left out silently, "No stored research yet" hid them)
        st.warning(f"Stored research {research_id} is damaged and left out of the list: {why}.")
    if not stored:
        st.caption("No stored research yet: run one on the Research page." if not damaged
                   else "No other stored research: run one on the Research page.")
        return
    info = {r["research_id"]: r for r in stored}
    if st.session_state.get("pf_research") not in info:
        st.session_state["pf_research"] = stored[0]["research_id"]
    c = st.columns([4, 2, 2, 1], vertical_alignment="bottom")
    research_id = c[0].selectbox("Research", list(info), key="pf_research",
                                 format_func=lambda r: f"{r} · {info[r]['strategies']} · {info[r]['datasets']}")
    strategies = ["all", *[s.strip() for s in info[research_id]["strategies"].split(",") if s.strip()]]
    strategy = c[1].selectbox("Strategy", strategies, key="pf_research_strategy", persist_state="session")
    choice = c[2].selectbox("Params", list(PARAM_CHOICES), key="pf_research_choice", persist_state="session",
                            format_func=lambda k: CHOICE_TEXT[k])
    kept_only = c[3].checkbox("Positive OOS only", key="pf_research_kept", persist_state="session",
                              help="only the cells whose own walk-forward made money out of sample")
    if st.button("Load runners", key="pf_research_load"):
        load_research_runners(research_id, None if strategy == "all" else strategy, kept_only, choice)


def runner_list() -> None:
    runners = st.session_state["pf_runners"]
    if not runners:
        st.info("No runner yet: add one (a strategy on a dataset) above, or load the winners of a stored research. "
                "The sample data is enough; then press **Launch portfolio**.")
        return
    origin = st.session_state.get("pf_origin")
    if origin:
        st.caption(f"Runners from {origin}.")
        if in_sample(origin):
            st.warning(f"{IN_SAMPLE_NOTE} (Open report).")
    carried = st.session_state.get("pf_research_options")
    if carried:  # (shown whatever loaded them: a stored portfolio's slippage ran unseen in every later launch)
        from_research = in_sample(origin)
        whose = "as the research chose its winners under" if from_research else "loaded with the runners"
        st.caption(f"Engine options {whose}: {describe_options(carried)} (fee, fill and leverage in *Capital, gates "
                   "and costs*; the others have no box here and apply to the next launch: **Clear all** drops them).")
        if from_research:
            form = {"fee_bps": st.session_state.get("pf_fee"), "fill": st.session_state.get("pf_fill"),
                    "leverage": st.session_state.get("pf_leverage") or None}
            differ = option_differences(form, carried)
            if differ:
                st.warning(f"Other engine options than the research's: {'; '.join(differ)}. Its winners were chosen "
                           "under the research's.")
        funding = funding_differences([Runner.from_dict(r) for r in runners],
                                      st.session_state.get("pf_research_funding") or {},
                                      st.session_state.get("pf_funding", True))
        if funding:
            st.warning(f"Other funding than the research's: {'; '.join(funding)}.")
    table = pf.runner_rows(runners)
    shown, config = table_view(table)
    st.dataframe(shown, hide_index=True, width="stretch", column_config=config, key="pf_runner_table")
    catalog = list_datasets()
    clash = launch_problem(runners, catalog)
    if clash:
        st.error(f"Cannot launch: {clash}.")
    for note in [] if clash else pf.span_notes(runners, catalog):
        st.warning(f"{note}.")
    c = st.columns([4, 1, 1], vertical_alignment="bottom")
    labels = list(table["runner"])
    pick = c[0].selectbox("Runner", range(len(labels)), key="pf_remove_pick", format_func=labels.__getitem__)
    if c[1].button("Remove", key="pf_remove") and pick is not None and pick < len(runners):
        st.session_state["pf_runners"] = [r for k, r in enumerate(runners) if k != pick]
        if not st.session_state["pf_runners"]:
            forget_loaded()  # (the last loaded runner gone: its options no longer ride along unseen)
        st.rerun()
    if c[2].button("Clear all", key="pf_clear"):
        st.session_state["pf_runners"] = []
        forget_loaded()
        st.rerun()


def forget_loaded() -> None:
    """Drop what came with loaded runners: their origin, engine options and research funding."""
    for key in ("pf_origin", "pf_research_options", "pf_research_funding"):
        st.session_state.pop(key, None)


def settings_form(problems: list[str]) -> dict:
    """Capital, the three gates, engine options and funding: the request's fields (boxes out of
    range add to ``problems``: see widgets.number_box)."""
    c = st.columns(4)
    session = {"persist_state": "session", "clearable": False}
    capital = float(number_box(c[0], "Capital", float(DEFAULTS.initial_capital), "pf_capital", problems, 1.0,
                               step=1_000.0, help="shared by the runners in proportion to their weights", **session))
    guard = float(number_box(c[1], "Margin guard (share of equity, 0 = off)", 0.0, "pf_guard", problems, 0.0,
                             step=0.05, help="a new leg that would lift the margin of all runners above this share of "
                             "the portfolio equity is skipped; 0.7 is a sensible start", **session))
    cap = float(number_box(c[2], "Runner cap (share of equity, 0 = off)", 0.0, "pf_cap", problems, 0.0, step=0.05,
                           help="the same limit for one runner's own margin", **session))
    kill = float(number_box(c[3], "Kill switch (% drawdown, 0 = off)", 0.0, "pf_kill", problems, 0.0, 99.0, step=5.0,
                            help="when the portfolio falls this far below its high within the window, no new entry "
                            "for the cooldown (open positions run on)", **session))
    c = st.columns(5)
    window = c[0].text_input("Kill window", value=DEFAULT_KILL_WINDOW, key="pf_window", persist_state="session", help="e.g. 24h, 3D")
    cooldown = c[1].text_input("Cooldown", value=DEFAULT_COOLDOWN, key="pf_cooldown", persist_state="session", help="e.g. 24h, 3D")
    fee = float(number_box(c[2], "Fee (bps)", float(DEFAULTS.fee_bps), "pf_fee", problems, 0.0, MAX_COST_BOX_BPS,
                           step=0.5,
                           **session))
    leverage = float(number_box(c[3], "Leverage (0 = strategy's)", 0.0, "pf_leverage", problems, 0.0, 100.0, step=1.0,
                                **session))
    fill = c[4].selectbox("Fill", FILLS, index=FILLS.index(DEFAULTS.fill), key="pf_fill", persist_state="session")
    funding = st.checkbox("Use stored funding files", value=True, key="pf_funding", persist_state="session",
                          help="each dataset's funding rates when a file is stored (threadx data fetch --funding); "
                               "datasets without one run without funding")
    return {"capital": capital, "margin_guard": guard or None, "runner_cap": cap or None,
            "kill_switch": kill / 100 or None, "kill_window": window.strip(), "cooldown": cooldown.strip(),
            "funding": STORED if funding else None,
            "engine_options": {**st.session_state.get("pf_research_options", {}), "fee_bps": fee,
                               "leverage": leverage or None, "fill": fill}}


def launch_problem(runners: list, catalog) -> str | None:
    """Why these runners cannot share a portfolio (timeframes, spans that never meet), said before
    Launch as the run would say it after loading every runner; None when none is known."""
    return pf.timeframe_note(runners, catalog) or pf.overlap_note(runners, catalog)


def launch(fields: dict) -> None:
    runners = st.session_state["pf_runners"]
    if not runners:
        st.warning("Cannot launch: add at least one runner (the form above, or load runners from a research).")
        return
    if launch_problem(runners, list_datasets()):  # (a job that fails at once read "failed (4 / 4 runners)", as if
        return  # each had run; the runner list above says why, once)
    try:
        st.session_state["pf_job"] = registry.submit(PortfolioRequest(tuple(runners), **fields,
                                                                      origin=st.session_state.get("pf_origin")))
    except ThreadXError as exc:
        st.error(f"Cannot launch: {exc}")


def monitor() -> None:
    """The followed job: its phase from its first second, Stop while active; when it ends, its
    result is selected (once) by a full rerun."""
    job = current_job()
    if job is None:
        return
    if job_progress(registry, job, "pf_stop", "Stopping before the runners run together…"):
        return
    stored = bool(job.run_id) and any(p["portfolio_id"] == job.run_id for p in list_portfolios(RESULTS_DIR))
    if job.state == "failed":
        st.error(f"The portfolio failed: {job.error}")
    elif job.state == "cancelled":
        st.warning("Stopped before the runners ran together: nothing was stored.")
    show_finished_job(job, "pf", stored)


def show_portfolio(portfolio_id: str) -> None:
    try:
        result = load_portfolio(portfolio_id, RESULTS_DIR)
    except ThreadXError as exc:
        st.error(str(exc))
        return
    # the figures first: a new portfolio's heading drew over the previous one's faded charts for
    # the seconds they took to build
    numbers = pf.headline(result)
    figures = {"pf_equity": pf.equity_and_drawdown(result), "pf_margin": pf.margin_figure(result),
               "pf_runner_equity": pf.runner_equity_figure(result)}
    if len(result.runners) > 1:  # (one runner: a line says there is nothing to correlate)
        figures["pf_correlation"] = pf.correlation_figure(result)
    st.subheader(f"Portfolio {portfolio_id}")
    st.caption(pf.describe_config(result))
    st.button("Load these runners and settings into the form", key="pf_load_stored", on_click=load_stored,
              args=(result.config,), help="to run this portfolio again with a change")
    if in_sample(result.config.get("origin")):  # (recorded: a reopened result says it too)
        st.warning(f"Runners from {result.config['origin']}. {IN_SAMPLE_NOTE} (Open report on the Research page).")
    for note in result.notes():
        st.warning(f"{note[0].upper()}{note[1:]}.")
    metric_grid((label, text, None) for label, text in numbers)
    for key in ("pf_equity", "pf_margin", "pf_runner_equity"):
        st.plotly_chart(figures[key], width="stretch", key=key)
    st.markdown("#### Runners")
    shown, config = table_view(pf.runners_table(result), aliases=pf.RUNNER_HEADERS, labels=pf.runner_headers(result))
    config["Runner"] = st.column_config.TextColumn(pinned=True)  # (its figures scroll sideways beside it)
    st.dataframe(shown, hide_index=True, width="stretch", key="pf_breakdown", column_config=config)
    st.markdown("#### Entries skipped, by reason")
    table = pf.skipped_table(result)
    shown, config = table_view(table, aliases=dict.fromkeys(table.columns[1:], "skipped"))
    st.dataframe(shown, hide_index=True, width="stretch", key="pf_skipped", column_config=config)
    st.caption(pf.skip_reasons_note())
    st.markdown("#### Kill switch")
    if not result.config.get("kill_switch"):
        st.caption("The kill switch was off for this run.")
    elif not result.events:
        st.caption("The kill switch never fired.")
    else:
        quote = pf.portfolio_quote(result)
        money = f" ({quote})" if quote else ""
        shown, config = table_view(pf.events_table(result),  # (headed "window_peak", "equity", with no currency)
                                   aliases={"window_peak": "final_equity", "equity": "final_equity"},
                                   labels={"window_peak": f"window peak{money}", "equity": f"equity when fired{money}"})
        st.dataframe(shown, hide_index=True, width="stretch", key="pf_events", column_config=config)
    if "pf_correlation" in figures:
        st.plotly_chart(figures["pf_correlation"], width="stretch", key="pf_correlation")
    else:  # (a chart-sized blank with its toolbar said less)
        st.caption("Drawdown correlation between runners: one runner, nothing to correlate.")
    with st.expander("Run details"):
        st.markdown(f"Portfolio id **{portfolio_id}** · stored under `{RESULTS_DIR}/portfolios/{portfolio_id}` · "
                    f"created {result.meta.get('created', '?')} · {result.meta.get('elapsed_s', 0):.1f} s")
        shown, config = table_view(pf.details_table(result))
        st.dataframe(shown, hide_index=True, width="stretch", column_config=config, key="pf_details")
        st.json({"config": result.config, "meta": result.meta}, expanded=False)


with st.expander("Add a runner", expanded=True):  # (a state that changed with the list collapsed the form mid-edit)
    add_runner_form()
with st.expander("Load from research", expanded=False):
    research_form()
runner_list()
settings_problems: list[str] = []
with st.expander("Capital, gates and costs", expanded=False):
    fields = settings_form(settings_problems)
held = launch_held(current_job(), "portfolio", "pf_job")
if st.button("Launch portfolio", type="primary", key="pf_launch",
             disabled=show_problems(st, settings_problems, "Launch portfolio") or held) and not held:
    launch(fields)
follow_job(monitor, current_job)

damaged: list[tuple[str, str]] = []
stored = list_portfolios(RESULTS_DIR, damaged)
for portfolio_id, why in damaged:
    st.warning(f"Stored portfolio {portfolio_id} is damaged and left out of the list: {why}.")
if stored:
    info = {p["portfolio_id"]: p for p in stored}
    pick = stored_pick("Stored portfolios", list(info), "pf", "portfolio", what="portfolio", notes=link_notes,
                       describe=lambda p: f"{p} · {info[p]['runners']} runners · return "
                                          f"{format_metric('total_return', info[p]['total_return'])}")
    show_portfolio(pick)
else:
    none_stored("pf", "portfolio", "portfolio", notes=link_notes)
