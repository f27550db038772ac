"""Backtest page: dataset + strategy + params -> one run with charts, cards and exports."""
from __future__ import annotations

import json

import pandas as pd
import streamlit as st

import threadx
from threadx.data.bars import as_bars
from threadx.engine.backtest import prepare_signals
from threadx.engine.inputs import EngineOptions
from threadx.errors import ThreadXError
from threadx.requests import BacktestRequest, DatasetRef, describe_data, describe_options
from threadx.ui import charts, widgets
from threadx.ui.state import dataset_and_strategy, dataset_names, label_dataset, load_dataset
from threadx.ui.widgets import param_form

SIZINGS = ["strategy default", "all_in", "fraction", "risk"]
DEFAULTS = EngineOptions()  # the one source of the engine's defaults

st.title("Backtest")


WIDGETLESS = ("fraction", "ambiguity", "funding")  # engine options without a widget here, kept from a reopened run


def engine_widgets_from(engine: dict) -> None:
    """Set the cost / fill / sizing widgets to a request's engine options (the options
    without a widget are kept in ``bt_engine_extra`` for the next runs)."""
    st.session_state["bt_engine_extra"] = {k: engine[k] for k in WIDGETLESS
                                           if engine.get(k) != getattr(DEFAULTS, k)}
    st.session_state.update({
        "bt_capital": float(engine["initial_capital"]), "bt_fee": float(engine["fee_bps"]),
        "bt_slip": float(engine["slippage_bps"]), "bt_fill": engine["fill"],
        "bt_sizing": engine["sizing"] or SIZINGS[0], "bt_leverage": float(engine["leverage"] or 0.0),
        "bt_min_notional": float(engine["min_notional"]),
    })


for key, value in (("bt_capital", DEFAULTS.initial_capital), ("bt_fee", DEFAULTS.fee_bps),
                   ("bt_slip", DEFAULTS.slippage_bps), ("bt_fill", DEFAULTS.fill), ("bt_sizing", SIZINGS[0]),
                   ("bt_leverage", 0.0), ("bt_min_notional", DEFAULTS.min_notional)):
    st.session_state.setdefault(key, value)

handed = st.session_state.pop("open_in_backtest", None)
if handed:
    request = BacktestRequest.from_dict(handed["request"])
    origin = f"run {handed['run_id']}" if handed.get("run_id") else "the Optimisation page"
    st.session_state["strategy"] = request.strategy
    st.session_state["bt_strategy"] = request.strategy
    st.session_state[f"params:{request.strategy}"] = request.params
    for name, value in request.params.items():  # widgets start at the handed-over values
        st.session_state[f"bt:{request.strategy}:{name}"] = value
    engine_widgets_from(request.engine_options)
    if request.data.name in dataset_names():  # else (a file) the result is shown on it, the picker stays
        st.session_state["dataset"] = st.session_state["dataset_picker"] = request.data.name
    st.session_state.pop("backtest", None)  # the result shown was for something else
    st.session_state["bt_handed_data"] = {"ref": request.data.to_dict(), "origin": origin, "picker": None}
    try:  # the run's own data (checked against its fingerprint) and engine options
        frame = request.data.load()
        with st.spinner("Running..."):
            handed_result = request.run(frame)
    except (ThreadXError, ValueError) as exc:
        st.error(f"Cannot reopen {origin}: {exc}")
    else:
        st.session_state["backtest"] = {"result": handed_result, "dataset": request.data.name or request.data.source,
                                        "strategy": request.strategy, "request": request.to_dict(), "frame": frame,
                                        "data": DatasetRef.of(frame).to_dict(), "origin": origin}
        st.info(f"Parameters carried over from {origin}: its winner, run on its data and engine options.")

specs = threadx.strategies()
dataset, strategy = dataset_and_strategy("bt_strategy", default="bb_atr")
handed_data = st.session_state.get("bt_handed_data")  # a reopened run's data, until another dataset is picked
if handed_data is not None and handed_data["picker"] not in (None, dataset):
    st.session_state.pop("bt_handed_data")
    handed_data = None
elif handed_data is not None:
    handed_data["picker"] = dataset
    st.caption(f"Runs use the data of {handed_data['origin']}: "
               f"{describe_data(handed_data['ref'])}; pick another dataset to switch.")
spec = specs[strategy]
st.caption(spec.description)

with st.expander("Parameters", expanded=True):
    values = param_form(spec, st.session_state.get(f"params:{strategy}", spec.defaults()), key_prefix="bt")
with st.expander("Costs, fills and sizing", expanded=False):
    c = st.columns(7)
    capital = c[0].number_input("Initial capital", min_value=1.0, step=1_000.0, key="bt_capital")
    fee_bps = c[1].number_input("Fee (bps)", min_value=0.0, max_value=1000.0, step=0.5, key="bt_fee")
    slip_bps = c[2].number_input("Slippage (bps)", min_value=0.0, max_value=1000.0, step=0.5, key="bt_slip")
    fill = c[3].selectbox("Fill", ["next_open", "close"], key="bt_fill")
    sizing = c[4].selectbox("Sizing", SIZINGS, key="bt_sizing")
    leverage = c[5].number_input("Leverage (0 = strategy's)", min_value=0.0, max_value=100.0, step=1.0,
                                 key="bt_leverage")
    min_notional = c[6].number_input("Min order value", min_value=0.0, step=1.0, key="bt_min_notional",
                                     help="entries below this order value (quote currency) are skipped "
                                          "and counted in n_skipped; 0 = off")
    extra = st.session_state.get("bt_engine_extra")
    if extra:
        st.caption("Also from the reopened run: " + ", ".join(f"{k} {v}" for k, v in extra.items()))

run_clicked = st.button("Run backtest", type="primary", key="bt_run")
if run_clicked:
    try:
        ref = (DatasetRef.from_dict(handed_data["ref"]) if handed_data is not None
               else DatasetRef(source=dataset, name=dataset))
        request = BacktestRequest(
            ref, strategy, values,
            {"initial_capital": capital, "fee_bps": fee_bps, "slippage_bps": slip_bps, "fill": fill,
             "sizing": None if sizing == SIZINGS[0] else sizing, "leverage": leverage or None,
             "min_notional": min_notional, **st.session_state.get("bt_engine_extra", {})})
        df = ref.load() if handed_data is not None else load_dataset(dataset)  # the former checks its fingerprint
        with st.spinner("Running..."):
            result = request.run(df)
        st.session_state["backtest"] = {"result": result, "dataset": ref.name or ref.source, "strategy": strategy,
                                        "request": request.to_dict(), "data": DatasetRef.of(df).to_dict(),
                                        "frame": df if handed_data is not None else None,
                                        "origin": handed_data["origin"] if handed_data is not None else None}
        st.session_state[f"params:{strategy}"] = values
    except (ThreadXError, ValueError) as exc:
        st.session_state.pop("backtest", None)
        st.error(f"Cannot run this backtest: {exc}")

shown = st.session_state.get("backtest")
if shown:
    result = shown["result"]
    df = shown["frame"] if shown.get("frame") is not None else load_dataset(shown["dataset"])
    st.subheader(f"{shown['strategy']} on {label_dataset(shown['dataset'], df)}")
    made = shown.get("request") or {}
    st.caption((f"From {shown['origin']} · " if shown.get("origin") else "")
               + f"Data: {describe_data(shown.get('data'), shown['dataset'])} · "
               + f"Options: {describe_options(made.get('engine_options'))}")
    cards = charts.metric_cards(result.metrics)
    for row_start in range(0, len(cards), 6):
        cols = st.columns(6)
        for col, (label, value, help_text) in zip(cols, cards[row_start:row_start + 6]):
            col.metric(label, value, help=help_text)
    if result.metrics.get("n_trades", 0) == 0:
        st.warning("No trades: the entry conditions never held with these parameters.")
    spec_shown = specs[shown["strategy"]]
    try:
        ind, _, _ = prepare_signals(spec_shown, as_bars(df), result.params)
        overlays = {legend: pd.Series(ind[label][out], index=df.index)
                    for legend, (label, out) in spec_shown.overlays(result.params).items() if label in ind}
    except ThreadXError:
        overlays = {}
    view = widgets.chart_view(result.trades, df.index, run_token=id(result))
    st.plotly_chart(charts.price_figure(df, trades=result.trades, overlays=overlays,
                                        title=label_dataset(shown["dataset"], df), start=view.start, end=view.end,
                                        log_y=view.log_y, focus=view.trade), width="stretch")
    initial_capital = result.meta["options"]["initial_capital"]
    st.plotly_chart(charts.equity_figure(result.equity, result.drawdown, initial_capital=initial_capital,
                                         benchmark=charts.buy_and_hold(df["close"], initial_capital),
                                         log_y=view.log_y, start=view.start, end=view.end), width="stretch")
    tabs = st.tabs(["Trades", "Trade returns", "Run details"])
    with tabs[0]:
        st.caption("Times in UTC; click a column header to sort, select a row to zoom the chart to that trade.")
        widgets.trades_table(result.trades, key="bt_trades")
    with tabs[1]:
        if len(result.trades):
            st.plotly_chart(charts.returns_histogram(result.trades), width="stretch")
    with tabs[2]:
        st.json({"params": result.params, "meta": result.meta})
    d = st.columns(3)
    d[0].download_button("Trades (CSV)", result.trades.to_csv(index=False), file_name="trades.csv",
                         mime="text/csv", key="dl_trades")
    metrics_csv = pd.DataFrame([result.metrics]).to_csv(index=False)
    d[1].download_button("Metrics (CSV)", metrics_csv, file_name="metrics.csv", mime="text/csv", key="dl_metrics")
    d[2].download_button("Run (JSON)", json.dumps(result.to_dict(), default=str), file_name="backtest.json",
                         mime="application/json", key="dl_json")
else:
    st.info("Set the parameters and press **Run backtest**. The defaults are the strategy's declared defaults.")
