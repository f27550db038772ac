"""Backtest page: dataset + strategy + params -> one run with charts, cards and exports."""
from __future__ import annotations

import json

import pandas as pd
import streamlit as st

import threadx
from threadx.config import DEFAULT_FEE_BPS, DEFAULT_INITIAL_CAPITAL, DEFAULT_MIN_NOTIONAL
from threadx.data.bars import as_bars
from threadx.engine.backtest import prepare_signals
from threadx.errors import ThreadXError
from threadx.ui import charts, widgets
from threadx.ui.state import dataset_and_strategy, label_dataset, load_dataset
from threadx.ui.widgets import param_form

st.title("Backtest")

handed = st.session_state.pop("open_in_backtest", None)
if handed:
    if handed.get("dataset"):
        st.session_state["dataset"] = handed["dataset"]
    st.session_state["strategy"] = handed["strategy"]
    st.session_state["bt_strategy"] = handed["strategy"]
    st.session_state[f"params:{handed['strategy']}"] = handed["params"]
    st.session_state.pop("backtest", None)  # the result shown was for other params
    for name, value in handed["params"].items():  # widgets start at the handed-over values
        st.session_state[f"bt:{handed['strategy']}:{name}"] = value
    st.info("Parameters carried over from the Optimisation page.")

specs = threadx.strategies()
dataset, strategy = dataset_and_strategy("bt_strategy", default="bb_atr")
spec = specs[strategy]
st.caption(spec.description)

with st.expander("Parameters", expanded=True):
    values = param_form(spec, st.session_state.get(f"params:{strategy}", spec.defaults()), key_prefix="bt")
with st.expander("Costs, fills and sizing", expanded=False):
    c = st.columns(7)
    capital = c[0].number_input("Initial capital", min_value=1.0, value=DEFAULT_INITIAL_CAPITAL, step=1_000.0,
                                key="bt_capital")
    fee_bps = c[1].number_input("Fee (bps)", min_value=0.0, max_value=1000.0, value=DEFAULT_FEE_BPS, step=0.5,
                                key="bt_fee")
    slip_bps = c[2].number_input("Slippage (bps)", min_value=0.0, max_value=1000.0, value=0.0, step=0.5,
                                 key="bt_slip")
    fill = c[3].selectbox("Fill", ["next_open", "close"], key="bt_fill")
    sizing = c[4].selectbox("Sizing", ["strategy default", "all_in", "fraction", "risk"], key="bt_sizing")
    leverage = c[5].number_input("Leverage (0 = strategy's)", min_value=0.0, max_value=100.0, value=0.0, step=1.0,
                                 key="bt_leverage")
    min_notional = c[6].number_input("Min order value", min_value=0.0, value=DEFAULT_MIN_NOTIONAL, step=1.0,
                                     key="bt_min_notional",
                                     help="entries below this order value (quote currency) are skipped "
                                          "and counted in n_skipped; 0 = off")

run_clicked = st.button("Run backtest", type="primary", key="bt_run")
if run_clicked:
    try:
        df = load_dataset(dataset)
        with st.spinner("Running..."):
            result = threadx.backtest(
                df, strategy, values, initial_capital=capital, fee_bps=fee_bps, slippage_bps=slip_bps, fill=fill,
                sizing=None if sizing == "strategy default" else sizing, leverage=leverage or None,
                min_notional=min_notional,
            )
        st.session_state["backtest"] = {"result": result, "dataset": dataset, "strategy": strategy}
        st.session_state[f"params:{strategy}"] = values
    except (ThreadXError, ValueError) as exc:
        st.session_state.pop("backtest", None)
        st.error(f"Cannot run this backtest: {exc}")

shown = st.session_state.get("backtest")
if shown:
    result = shown["result"]
    df = load_dataset(shown["dataset"])
    st.subheader(f"{shown['strategy']} on {label_dataset(shown['dataset'], df)}")
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
                                        log_y=view.log_y, focus=view.trade), use_container_width=True)
    initial_capital = result.meta["options"]["initial_capital"]
    st.plotly_chart(charts.equity_figure(result.equity, result.drawdown, initial_capital=initial_capital,
                                         benchmark=charts.buy_and_hold(df["close"], initial_capital),
                                         log_y=view.log_y, start=view.start, end=view.end), use_container_width=True)
    tabs = st.tabs(["Trades", "Trade returns", "Run details"])
    with tabs[0]:
        st.caption("Times in UTC; click a column header to sort, select a row to zoom the chart to that trade.")
        widgets.trades_table(result.trades, key="bt_trades")
    with tabs[1]:
        if len(result.trades):
            st.plotly_chart(charts.returns_histogram(result.trades), use_container_width=True)
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
