"""Backtest page: dataset + strategy + params -> one run with charts, cards and exports."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

import threadx
from threadx.config import MAX_COST_BOX_BPS, STORED
from threadx.data.catalog import quote_currency
from threadx.data.funding import funding_file_of, stored_record
from threadx.engine.inputs import EngineOptions
from threadx.errors import ThreadXError
from threadx.requests import (OPTION_WORDS, BacktestRequest, DatasetRef, describe_data, describe_options,
                              engine_dict)
from threadx.ui import charts, user_code, widgets, workspace
from threadx.ui import strategies as strategies_ui
from threadx.ui.workspace import finite_number
from threadx.ui.state import (dataset_and_strategy, dataset_names, label_dataset, load_dataset, strategy_fell_back,
                              load_dataset_or_error, plain, restore_from_url, sentence, session_memo)
from threadx.ui.widgets import (differences, funding_as_run, funding_caption, funding_toggle, metric_grid, number_box,
                               param_form, param_text, show_problems)
from threadx.warmup import warming_note

SIZINGS = ["strategy's", "all_in", "fraction", "risk"]  # (the first: the strategy's own rule; "strategy default" was cut at 1024 px)
DEFAULTS = EngineOptions()  # the one source of the engine's defaults

st.title("Backtest")


_SEEN = "_bt_form_seen:"  # + strategy: the param boxes as this session's last run had them
_COSTS_SEEN = "_bt_costs_seen"  # the costs boxes as this session's last run had them
WIDGETLESS = ("fraction", "ambiguity")  # engine options without a widget here, kept from a reopened run
FILLS = ["next_open", "close"]
# the costs, fills and sizing boxes (saved in the workspace as the param boxes are), each with its check
COST_BOXES = {"bt_capital": lambda v: finite_number(v) and v > 0, "bt_fee": lambda v: finite_number(v) and v >= 0,
              "bt_slip": lambda v: finite_number(v) and v >= 0, "bt_fill": lambda v: v in FILLS,
              "bt_sizing": lambda v: v in SIZINGS, "bt_leverage": lambda v: finite_number(v) and v >= 0,
              "bt_min_notional": lambda v: finite_number(v) and v >= 0,
              "bt_funding": lambda v: isinstance(v, bool)}


def saved_costs() -> dict[str, Any]:
    """The costs boxes as last left (the workspace), those that fit their box."""
    return {key: float(value) if finite_number(value) else value
            for key, value in workspace.load_costs().items() if key in COST_BOXES and COST_BOXES[key](value)}


def save_cost_edits() -> None:
    """Save the costs boxes this session changed, over those saved: a refresh reopening the result
    on display put its costs back in the boxes (a fee edited and not run yet was lost, unsaid)."""
    now = {key: st.session_state[key] for key in COST_BOXES if key in st.session_state}
    seen = st.session_state.get(_COSTS_SEEN, now)
    edited = {key: value for key, value in now.items() if seen.get(key, object()) != value}
    st.session_state[_COSTS_SEEN] = dict(now)
    if edited:
        workspace.save_costs({**workspace.load_costs(), **edited})


def engine_widgets_from(engine: dict, source: str) -> None:
    """Set the cost / fill / sizing / funding widgets to a request's engine options on the data
    ``source`` (the options without a widget are kept in ``bt_engine_extra`` for the next runs)."""
    extra = {k: engine[k] for k in WIDGETLESS if engine.get(k) != getattr(DEFAULTS, k)}
    funding = engine.get("funding")
    if isinstance(funding, (int, float)):  # a constant rate (from Python): the toggle holds none, it is kept
        extra["funding"] = funding
    elif funding == STORED or stored_record(funding) is not None:
        st.session_state["bt_funding"] = True
    elif funding is None and funding_file_of(source) is not None:  # (without a file, none is what "on" runs too)
        st.session_state["bt_funding"] = False
    st.session_state["bt_engine_extra"] = extra
    st.session_state.update({
        "bt_capital": float(engine["initial_capital"]), "bt_fee": float(engine["fee_bps"]),
        "bt_slip": float(engine["slippage_bps"]), "bt_fill": engine["fill"],
        "bt_sizing": engine["sizing"] or SIZINGS[0], "bt_leverage": float(engine["leverage"] or 0.0),
        "bt_min_notional": float(engine["min_notional"]),
    })


def forget_link() -> None:
    """No backtest on display: the URL stops naming one."""
    if "bt" in st.query_params:
        del st.query_params["bt"]


def drop_shown() -> None:
    """No backtest on display (another strategy picked, a run that failed, its data gone)."""
    st.session_state.pop("backtest", None)
    forget_link()


def form_differences(shown: dict, params: dict, engine: dict, dataset: str | None) -> list[str]:
    """What the form sets otherwise than the shown result ran with: params (as their boxes show
    them), engine options and the picked dataset (None: the runs use a reopened run's data), each
    "name now, then"."""
    ran = shown["result"].params
    declared = {p.name: p for p in getattr(specs.get(shown["strategy"]), "params", ())}
    items = [(k, param_text(declared[k], v, ran.get(k)), param_text(declared[k], ran.get(k), v), "")
             if k in declared and v != ran.get(k) else (k, v, ran.get(k), "") for k, v in params.items()]
    refused = []
    try:
        now = engine_dict(engine)
    except ThreadXError as exc:
        refused.append(f"an option the run would refuse: {exc}")
    else:
        then = engine_dict((shown.get("request") or {}).get("engine_options"))
        ran_on = ((shown.get("request") or {}).get("data") or {}).get("source") or shown["dataset"]
        for options, source in ((now, dataset or ran_on), (then, ran_on)):
            options["funding"] = funding_as_run(options.get("funding"), source)
        for key in now:
            words, unit = OPTION_WORDS.get(key, (key, ""))  # "fee 25 bps here", not "fee_bps 25 here"
            items.append((words, now.get(key), then.get(key), unit))
    if dataset is not None:
        items.append(("dataset", dataset, shown["dataset"], ""))
    return differences(items, "the result", refused)


def shown_frame(shown: dict) -> pd.DataFrame | None:
    """The data of the backtest on display (kept with it, else its dataset reloaded); None,
    after one error, when that dataset cannot be loaded any more: the backtest is dropped."""
    if shown.get("frame") is not None:
        return shown["frame"]
    df = load_dataset_or_error(shown["dataset"], "The backtest on display is dropped")
    if df is None:
        drop_shown()
        return None
    ran_on = DatasetRef.from_dict(shown["data"])
    now = DatasetRef.of(df).fingerprint
    if ran_on.fingerprint and now != ran_on.fingerprint:  # replaced or rewritten since: its numbers are not these
        st.warning(f"The backtest on display is dropped: {plain(str(ran_on.changed(now)), 800)}. Press **Run "
                   "backtest** to run it on the dataset as it is now.")
        drop_shown()
        return None
    return df


def run_backtest(request: BacktestRequest, frame: pd.DataFrame) -> tuple[threadx.Result, dict | None]:
    """(result, chart overlays or None: drawn from the strategy when shown). A strategy from
    the strategies folder runs in a process of its own (:mod:`threadx.ui.user_code`):
    its code can crash or hang that process, not the workstation; the line below says so
    and how to stop it."""
    if not user_code.runs_apart(threadx.get_strategy(request.strategy)):
        with st.spinner(warming_note() or "Running..."):
            return request.run(frame), None
    box = st.empty()
    with box.container():
        line = st.empty()
        st.button("Stop", key="bt_stop", help="End this backtest's process (a click reruns the page, which stops it)")
    try:
        return user_code.backtest(request, frame, on_wait=lambda seconds, *_: line.caption(
            f"Running {request.strategy} in a process of its own (a strategy from your folder): {seconds:.0f} s"))
    finally:
        box.empty()


def show(result, request: BacktestRequest, df: pd.DataFrame, origin: str | None, overlays: dict | None = None) -> None:
    """Put a result on display (``backtest``) and name it in the URL (``bt``), so a refresh
    or a link re-runs the same request. ``df``: the data it ran on (kept with it when it is a
    reopened run's, ``origin`` the run it comes from; else the picked dataset's, reloaded
    from the cache)."""
    if request.code_hash is None:  # a refresh or a link re-runs it only with the same strategy code
        request = replace(request, code_hash=result.meta.get("strategy_code"))
    if request.engine_options.get("funding") == STORED:  # and with the rows it ran with (none: none, if one comes)
        request = replace(request, engine_options={**request.engine_options,
                                                   "funding": result.meta["options"].get("funding")})
    try:
        bt_id = workspace.save_backtest(request, origin)
    except (OSError, ThreadXError) as exc:
        bt_id = None
        st.caption(f"This backtest is not kept for a refresh or a link: {exc}")
    st.session_state["backtest"] = {"result": result, "dataset": request.data.name or request.data.source,
                                    "strategy": request.strategy, "request": request.to_dict(),
                                    "data": DatasetRef.of(df).to_dict(), "frame": df if origin is not None else None,
                                    "origin": origin, "bt_id": bt_id, "overlays": overlays}
    if bt_id is None:
        forget_link()
    else:
        st.query_params["bt"] = bt_id


def reopen(request: BacktestRequest, origin: str | None, pick: bool = True,
           keep_form: bool = False) -> ThreadXError | ValueError | None:
    """Set the page to a request (strategy, params, engine options, and its dataset when
    ``pick``) and show its backtest on its own data (checked against its fingerprint).
    ``origin``: the run it comes from, whose data the next runs use too until another dataset
    is picked; None: a backtest of a catalog dataset. ``keep_form`` (a refresh or a link): the
    param boxes keep the form as last left for that strategy when one is saved (edits not run
    yet were lost to the result's params, in the saved form too), the page saying how they
    differ from the result's. Returns the error when it cannot be run (nothing is shown)."""
    st.session_state["strategy"] = st.session_state["bt_strategy"] = request.strategy
    st.session_state[f"params:{request.strategy}"] = request.params
    kept = workspace.load_form("params", request.strategy) if keep_form else {}
    st.session_state[f"{_SEEN}{request.strategy}"] = {}  # the boxes set here count as changed: saved
    for name, value in workspace.clean_form("params", request.strategy, request.params).items():
        st.session_state[f"bt:{request.strategy}:{name}"] = kept.get(name, value)  # widgets start at these
    engine_widgets_from(request.engine_options, request.data.source)
    st.session_state[_COSTS_SEEN] = {}  # (as the param boxes: set here, saved)
    if keep_form:  # the costs boxes as last left too, the page saying how they differ from the result's
        st.session_state.update(saved_costs())
    if pick and request.data.name in dataset_names():  # else (a file) the result is shown on it, the picker stays
        st.session_state["dataset"] = request.data.name  # (the picker follows it: state.dataset_picker)
    st.session_state.pop("backtest", None)  # the result shown was for something else
    if origin is not None:
        st.session_state["bt_handed_data"] = {"ref": request.data.to_dict(), "origin": origin, "picker": None}
    else:
        st.session_state.pop("bt_handed_data", None)
    try:
        frame = request.data.load()
        reopened, overlays = run_backtest(request, frame)
    except (ThreadXError, ValueError) as exc:
        forget_link()
        # not bound to data that cannot be loaded: Run backtest failed on it again and again while the picker
        # showed another dataset (only picking another and back freed it)
        st.session_state.pop("bt_handed_data", None)
        return exc
    show(reopened, request, frame, origin, overlays)
    return None


_saved_costs = saved_costs() if "bt_capital" not in st.session_state else {}  # (a new session: as last left)
for key, value in (("bt_capital", DEFAULTS.initial_capital), ("bt_fee", DEFAULTS.fee_bps),
                   ("bt_slip", DEFAULTS.slippage_bps), ("bt_fill", DEFAULTS.fill), ("bt_sizing", SIZINGS[0]),
                   ("bt_leverage", 0.0), ("bt_min_notional", DEFAULTS.min_notional)):
    st.session_state.setdefault(key, _saved_costs.get(key, value))
if "bt_funding" in _saved_costs:
    st.session_state.setdefault("bt_funding", _saved_costs["bt_funding"])

restore_from_url()  # the link's dataset and strategy first: a backtest it names comes on top
handed = st.session_state.pop("open_in_backtest", None)
if handed:
    request = BacktestRequest.from_dict(handed["request"])
    origin = f"run {handed['run_id']}" if handed.get("run_id") else "the Optimisation page"
    error = reopen(request, origin)
    if error is not None:
        st.error(f"Cannot reopen {origin}: {error}. Its strategy, parameters and options are set below: **Run "
                 "backtest** runs them on the dataset picked.")
    else:
        st.info(f"Parameters carried over from {origin}: its winner, run on its data and engine options.")
else:
    linked = st.query_params.get("bt")
    if linked and linked != (st.session_state.get("backtest") or {}).get("bt_id"):  # a refresh or a link
        try:
            request, origin = workspace.load_backtest(linked)
        except ThreadXError as exc:
            forget_link()
            st.warning(f"The backtest this link names cannot be reopened: {plain(str(exc), 300)}")
        else:
            # the dataset the URL names stays picked (one picked after this backtest ran, say)
            error = reopen(request, origin, pick=st.query_params.get("dataset") not in dataset_names(), keep_form=True)
            if error is not None:
                st.warning(f"The backtest this link names is not shown: {error}. Its strategy, parameters "
                           "and options are set below: press **Run backtest** to run them on the current data.")

specs = threadx.strategies()
dataset, strategy = dataset_and_strategy("bt_strategy")
handed_data = st.session_state.get("bt_handed_data")  # a reopened run's data, until another dataset is picked
if handed_data is not None and handed_data["picker"] not in (None, dataset):
    st.session_state.pop("bt_handed_data")
    handed_data = None
elif handed_data is not None:
    handed_data["picker"] = dataset
    st.caption(f"Runs use the data of {handed_data['origin']}: "
               f"{describe_data(handed_data['ref'])}; pick another dataset to switch.")
shown = st.session_state.get("backtest")
if shown and shown["strategy"] != strategy:  # another strategy picked: its form, not the last one's result
    drop_shown()
spec = specs[strategy]
if user_code.runs_apart(spec):
    user_code.keep_one()  # its backtest's process, started ahead
st.caption(spec.description)
failed_check = strategies_ui.failed_check_note(spec)
if failed_check:
    st.warning(failed_check)

def reset_params(name: str) -> None:
    """on_click of "Reset to defaults": the form's boxes and the saved values back to the declared defaults."""
    declared = specs[name].defaults()
    for param, value in declared.items():
        st.session_state[f"bt:{name}:{param}"] = value
    st.session_state.pop(f"params:{name}", None)
    workspace.save_form("params", name, declared)


with st.expander("Parameters", expanded=True):
    saved = {**spec.defaults(), **workspace.load_form("params", strategy)}  # the form as last left
    values = param_form(spec, {**st.session_state.get(f"params:{strategy}", {}), **saved}, key_prefix="bt")
    changed = [p.name for p in spec.params if values[p.name] != p.default]
    param_problem = None
    try:
        spec.normalize(values)  # bounds and constraints, before Run (a box takes any number)
    except ThreadXError as exc:
        param_problem = str(exc)
        st.error(f"Parameters: {exc}")
    # only the boxes this session changed are saved, over the form as saved: a tab opened earlier wrote its whole
    # (stale) form and undid another tab's edit (a hostile test); a refused value saved the default in its place
    seen = st.session_state.get(f"{_SEEN}{strategy}", values)
    edited = {name: value for name, value in values.items() if seen.get(name, object()) != value}
    st.session_state[f"{_SEEN}{strategy}"] = dict(values)
    if edited and param_problem is None:
        workspace.save_form("params", strategy, {**saved, **edited})
    if changed:
        c = st.columns([7, 3], vertical_alignment="center")
        c[0].caption(f"Not the strategy's declared defaults: {', '.join(changed[:6])}"
                     f"{f' and {len(changed) - 6} more' if len(changed) > 6 else ''} (the form keeps its values "
                     "between sessions).")
        c[1].button("Reset to defaults", key="bt_reset_params", on_click=reset_params, args=(strategy,))
with st.expander("Costs, fills and sizing", expanded=False):
    c = st.columns(4)  # (two rows of four: seven in one cut "10000.(", "strategy defa" at 1024-1440 px)
    cost_problems: list[str] = []  # boxes out of range (checked here: see widgets.number_box)
    fixed = {"clearable": False}  # (a clear button left "10" of 10,000 at 1024 px)
    capital = number_box(c[0], "Initial capital", DEFAULTS.initial_capital, "bt_capital", cost_problems, 1.0,
                         step=1_000.0, **fixed)
    fee_bps = number_box(c[1], "Fee (bps)", DEFAULTS.fee_bps, "bt_fee", cost_problems, 0.0, MAX_COST_BOX_BPS, step=0.5,
                         **fixed)
    slip_bps = number_box(c[2], "Slippage (bps)", DEFAULTS.slippage_bps, "bt_slip", cost_problems, 0.0,
                          MAX_COST_BOX_BPS, step=0.5, **fixed)
    fill = c[3].selectbox("Fill", FILLS, key="bt_fill")
    c = st.columns(4)
    sizing = c[0].selectbox("Sizing", SIZINGS, key="bt_sizing")
    leverage = number_box(c[1], "Leverage", 0.0, "bt_leverage", cost_problems, 0.0, 100.0, step=1.0,
                          help="0 = the strategy's own leverage", **fixed)
    min_notional = number_box(c[2], "Min order value", DEFAULTS.min_notional, "bt_min_notional", cost_problems, 0.0,
                              step=1.0, help="entries below this order value (quote currency) are skipped "
                                             "and counted in n_skipped; 0 = off", **fixed)
    extra = st.session_state.get("bt_engine_extra") or {}
    # (a row of its own: a fourth column cut "Funding file"; a reopened run's constant rate overrides it)
    funding = funding_toggle(st, "bt_funding", disabled="funding" in extra)
    if extra:
        st.caption("Also from the reopened run: " + ", ".join(f"{k} {v}" for k, v in extra.items()))
    if "funding" not in extra:
        funding_caption(dataset if handed_data is None else DatasetRef.from_dict(handed_data["ref"]).source, funding)
engine = {"initial_capital": capital, "fee_bps": fee_bps, "slippage_bps": slip_bps, "fill": fill,
          "sizing": None if sizing == SIZINGS[0] else sizing, "leverage": leverage or None,
          "min_notional": min_notional, "funding": funding, **st.session_state.get("bt_engine_extra", {})}
if not cost_problems:  # (a refused value is not saved in place of the one that runs)
    save_cost_edits()

if st.session_state.get("bt_stop"):  # pressed while a strategy's process ran: the click's rerun ended it
    st.info("Backtest stopped: its process was ended.")
costs_refused = show_problems(st, cost_problems, "Run backtest")  # (below the expander: seen when it is closed)
run_clicked = (st.button("Run backtest", type="primary", key="bt_run",
                         disabled=param_problem is not None or costs_refused) and not strategy_fell_back())
if run_clicked:
    try:
        if handed_data is not None:  # the reopened run's data, checked against its fingerprint
            ref = DatasetRef.from_dict(handed_data["ref"])
            df = ref.load()
        else:
            df = load_dataset(dataset)
            ref = DatasetRef(source=dataset, name=dataset, fingerprint=DatasetRef.of(df).fingerprint)
        request = BacktestRequest(ref, strategy, values, engine)
        result, overlays = run_backtest(request, df)
        show(result, request, df, handed_data["origin"] if handed_data is not None else None, overlays)
        st.session_state[f"params:{strategy}"] = values
    except (ThreadXError, ValueError) as exc:
        drop_shown()
        st.error(f"Cannot run this backtest: {exc}")
        if getattr(exc, "output", None):  # what the process its code crashed wrote last
            st.code(exc.output, language=None)

shown = st.session_state.get("backtest")
df = shown_frame(shown) if shown else None
if shown and df is not None:
    if shown.get("bt_id") and st.query_params.get("bt") != shown["bt_id"]:
        st.query_params["bt"] = shown["bt_id"]  # back from another page: the URL names it again
    result = shown["result"]
    st.subheader(f"{shown['strategy']} on {label_dataset(shown['dataset'], df)}")
    made = shown.get("request") or {}
    spec_shown = specs[shown["strategy"]]
    code = result.meta.get("strategy_code")
    # (the data of the run reopened, whatever strategy ran on it since: "From run X" named another's run)
    origin = shown.get("origin")
    st.caption((f"Data (from {origin}): " if origin else "Data: ")
               + f"{describe_data(shown.get('data'), shown['dataset'])} · "
               + f"Options: {describe_options(made.get('engine_options'))}"
               + (f" · Code: {Path(spec_shown.origin.path).name} @ {code[:8]}" if spec_shown.origin and code else ""))
    st.caption("Params: " + ", ".join(f"{k} {v}" for k, v in result.params.items())
               # (the id of the URL's bt=: a link or a refresh re-runs this request)
               + (f" · Backtest id: {shown['bt_id']}" if shown.get("bt_id") else ""))
    if code and code != spec_shown.code_hash:
        st.info(f"The code of {shown['strategy']} changed since this result was computed: press **Run backtest** "
                "for the current code's result.")
    differs = form_differences(shown, values, engine, None if handed_data is not None else dataset)
    if differs:
        st.info(f"The form differs from this result ({'; '.join(differs)}): press **Run backtest** for the "
                "form's result.")
    quote = quote_currency(shown["dataset"])  # (prices, money cards, trades: "Price (USDT)")
    metric_grid(charts.metric_cards(result.metrics, quote))
    sparse = df.attrs.get("sparse_note")  # (session data: said at load, and here)
    if sparse:
        st.caption(sentence(sparse))
    bust = result.liquidation_note()
    if bust:
        st.error(bust)
    idle = result.no_trades_note()
    if idle:
        st.warning(idle)

    def overlays() -> dict[str, pd.Series]:
        if shown.get("overlays") is not None:  # computed with the result (a strategy from the folder)
            return shown["overlays"]
        if user_code.runs_apart(spec_shown):  # (its code runs apart only)
            return {}
        return user_code.overlay_series(spec_shown, df, result.params)

    view = widgets.chart_view(result.trades, df.index, run_token=id(result))
    # the figures of this result and view, kept for reruns that show them again (page switches)
    shown_as = (id(result), (shown.get("data") or {}).get("fingerprint") or id(df), view.start, view.end, view.log_y, st.session_state.get("bt_zoomed"))
    price = session_memo("bt_figures", ("price", *shown_as), lambda: charts.price_figure(
        df, trades=result.trades, overlays=overlays(), title=label_dataset(shown["dataset"], df), start=view.start,
        end=view.end, log_y=view.log_y, focus=view.trade, quote=quote))
    st.plotly_chart(price, width="stretch")
    initial_capital = result.meta["options"]["initial_capital"]
    equity = session_memo("bt_figures", ("equity", *shown_as), lambda: charts.equity_figure(
        result.equity, result.drawdown, initial_capital=initial_capital,
        benchmark=charts.buy_and_hold(df["close"], initial_capital), log_y=view.log_y, start=view.start,
        end=view.end, quote=quote))
    st.plotly_chart(equity, width="stretch")
    # the trades table is always drawn (its selection zooms the chart); the other tabs only when open
    tabs = st.tabs(["Trades", "Trade returns", "Run details"], key="bt_tab", on_change="rerun")
    with tabs[0]:
        if len(result.trades):
            st.caption("Times in UTC; click a column header to sort, select a row to zoom the chart to that trade.")
            widgets.trades_table(result.trades, key="bt_trades", quote=quote)
        else:  # (nine blank rows under "select a row to zoom the chart to that trade")
            st.caption("No trades in this run.")
    if tabs[1].open and not len(result.trades):
        tabs[1].caption("No trades: no trade returns to draw.")  # (the tab was blank)
    elif tabs[1].open:
        with tabs[1]:
            st.plotly_chart(session_memo("bt_figures", ("returns", id(result)),
                                         lambda: charts.returns_histogram(result.trades)), width="stretch")
    if tabs[2].open:
        with tabs[2]:
            widgets.timings_section(result.meta.get("timings"), key="bt")
            st.json({"params": result.params, "meta": result.meta})
    made_by = widgets.download_stem(shown["strategy"], shown["dataset"],  # (the backtest id, else the candles')
                                    shown.get("bt_id") or ((shown.get("data") or {}).get("fingerprint") or "")[:12])
    d = st.columns(3)  # the files are made when a button is clicked, not on every rerun
    d[0].download_button("Trades (CSV)", lambda: result.trades.to_csv(index=False),
                         file_name=f"{made_by}-trades.csv", mime="text/csv", key="dl_trades",
                         disabled=not len(result.trades), help=None if len(result.trades) else "No trades to export")
    d[1].download_button("Metrics (CSV)", lambda: pd.DataFrame([result.metrics]).to_csv(index=False),
                         file_name=f"{made_by}-metrics.csv", mime="text/csv", key="dl_metrics")
    d[2].download_button("Run (JSON)", lambda: json.dumps(result.to_dict(), default=str),
                         file_name=f"{made_by}.json", mime="application/json", key="dl_json")
else:
    st.info("Set the parameters and press **Run backtest**.")
