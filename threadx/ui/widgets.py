"""Widgets generated from strategy declarations (Backtest and Optimisation pages), and the
Backtest result controls (date range, trades table)."""
from __future__ import annotations

import contextlib
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np
import pandas as pd
import streamlit as st

from threadx import units
from threadx.config import STORED
from threadx.data.funding import funding_file_of
from threadx.errors import ThreadXError
from threadx.optimize.space import searched_by_default
from threadx.requests import funding_words
from threadx.strategy.base import Param, StrategySpec
from threadx.ui import charts
from threadx.ui.state import plain


def _number_format(p: Param, *values: Any) -> str | None:
    """The printf format of a float param's box: as many decimals (1 to 6) as its step and
    ``values`` need, so a box never shows a rounded value (0.005 as "0.01") while the exact one runs.

    >>> from threadx.strategy.base import Param
    >>> risk = Param("risk_per_trade", "float", 0.01, 0.001, 0.1, step=0.005)
    >>> _number_format(risk), _number_format(risk, 0.0125, None), _number_format(risk, 2e-5)
    ('%.3f', '%.4f', '%.5f')
    """
    if p.kind != "float":
        return None
    decimals = 1
    for v in (p.step or 0.01, *values):
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            text = f"{abs(float(v)):.6f}".rstrip("0")
            decimals = max(decimals, len(text.split(".")[1]) if "." in text else 0)
    return f"%.{min(decimals, 6)}f"


def _bounds_note(p: Param) -> str | None:
    """A numeric param's bounds in words ("from 2 to 500", "at least 0"); None when it has none."""
    if p.min is not None and p.max is not None:
        return f"from {p.min:g} to {p.max:g}"
    if p.min is not None or p.max is not None:
        return f"at least {p.min:g}" if p.min is not None else f"at most {p.max:g}"
    return None


def breakable_name(name: str) -> str:
    """A param's name as code that a narrow column breaks after an underscore ("stop_loss_pc" / "t"
    was cut mid-word at 1024 px); copied, it is the name (``<wbr>`` adds no character). Names are
    identifiers (:class:`Param` checks them), so nothing in one is HTML; each underscore is an
    entity, as Markdown would read ``x__y_z`` between the tags as emphasis.

    >>> breakable_name("stop_loss")
    '<code>stop&#95;<wbr>loss</code>'
    """
    return f"<code>{name.replace('_', '&#95;<wbr>')}</code>"


def param_help(p: Param) -> str | None:
    """A param's description and bounds, the help of its box."""
    return "; ".join(t for t in (p.description, _bounds_note(p)) if t) or None


def param_input(p: Param, value: Any, key: str, persist: str | None = None, label_visibility: str = "visible") -> Any:
    """One widget for a param, starting at ``value`` (the declared default unless handed over).

    A value already put in Session State under ``key`` (a run reopened in this page) wins:
    the widget is then created without a value of its own, as Streamlit asks. ``persist``:
    Streamlit's ``persist_state`` ("session": the value survives a visit to another page);
    ``label_visibility`` "collapsed" where the param is named beside the box.
    A number box has no bounds of its own: the browser kept showing a value typed out of range
    while the last valid one ran; the page checks the values (:meth:`StrategySpec.normalize`)
    and says what is wrong."""
    shown = {"help": param_help(p), "persist_state": persist, "label_visibility": label_visibility}
    if p.kind == "bool":  # (a checkbox's value is a bool: False is "none of its own")
        return st.checkbox(p.name, value=bool(unless_preset(key, bool(value))), key=key, **shown)
    if p.kind == "choice":
        options = list(p.choices)
        return choice_box(st, p.name, options, value if value in options else options[0], key, **shown)
    if p.kind == "int":
        return int(number_box(st, p.name, int(value), key, step=int(p.step or 1), **shown))
    return float(number_box(st, p.name, float(value), key, step=float(p.step or 0.01),
                            format=_number_format(p, value, st.session_state.get(key)), **shown))


def param_form(spec: StrategySpec, values: dict[str, Any], key_prefix: str, columns: int = 3) -> dict[str, Any]:
    """Widgets for every param of a strategy, laid out in columns."""
    cols = st.columns(columns)
    out = {}
    for k, p in enumerate(spec.params):
        with cols[k % columns]:
            out[p.name] = param_input(p, values.get(p.name, p.default), key=f"{key_prefix}:{spec.name}:{p.name}")
    return out


def param_text(p: Param, value: Any, *others: Any) -> str:
    """``value`` of param ``p`` as its box shows it (a float with the box's decimals, enough for
    ``others`` too: "entry_z 1.2 here, 1.0 in the result", not "1"); else :func:`number_text`.

    >>> from threadx.strategy.base import Param
    >>> z = Param("entry_z", "float", 2.0, 0.5, 3.0, step=0.1)
    >>> param_text(z, 1.0), param_text(z, 1.0, 1.25), param_text(Param("n", "int", 5, 1, 9), 5)
    ('1.0', '1.00', '5')
    """
    fmt = _number_format(p, value, *others)
    if fmt and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return fmt % value
    return number_text(value)


def number_text(value: Any) -> str:
    """A form's number in words: thousands separators for ints and floats alike.

    >>> number_text(20_000), number_text(1e6), number_text(0.015)
    ('20,000', '1,000,000', '0.015')
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{value:,}"
    return units.format_plain(value)  # (1,000,000 for a float capital, not 1e+06)


def differences(items: Iterable[tuple[str, Any, Any, str]], there: str, first: Iterable[str] = (),
                shown: int = 4) -> list[str]:
    """What a form sets otherwise than the result on display: the texts of ``first``, then
    "name X here, Y in {there}" for each (name, here, there, unit) whose values differ (numbers
    with thousands separators, as :func:`threadx.units.format_plain` writes them, and the unit);
    past ``shown`` items, one "N more".

    >>> differences([("seed", 7, 42, ""), ("fee", 10.0, 10.0, " bps"), ("window", 2160, 1440, " bars"),
    ...              ("initial_capital", 1e6, 1e5, "")], "the report")
    ['seed 7 here, 42 in the report', 'window 2,160 bars here, 1,440 bars in the report', 'initial_capital 1,000,000 here, 100,000 in the report']
    """
    def text(value: Any, unit: str) -> str:
        return f"{value if isinstance(value, str) else number_text(value)}{unit}"

    out = list(first) + [f"{name} {text(now, unit)} here, {text(then, unit)} in {there}"
                         for name, now, then, unit in items if now != then]
    return out[:shown] + ([f"{len(out) - shown} more"] if len(out) > shown else [])


def space_widget_state(spec: StrategySpec, key_prefix: str, saved: Mapping[str, Any]) -> dict[str, Any]:
    """The search-space editor's widget keys and values (:func:`space_editor`) for a saved space:
    per param a fixed value, {"min", "max", "step"} or a list (booleans both ways, a choice's picks).

    >>> from threadx.strategy import get_strategy
    >>> space_widget_state(get_strategy("ma_crossover"), "wf", {"fast_period": {"min": 5, "max": 15, "step": 5},
    ...                                                          "slow_period": 50, "ma_type": ["sma", "ema"]})
    ... # doctest: +NORMALIZE_WHITESPACE
    {'wf:ma_crossover:fast_period:mode': 'range', 'wf:ma_crossover:fast_period:min': 5,
     'wf:ma_crossover:fast_period:max': 15, 'wf:ma_crossover:fast_period:step': 5,
     'wf:ma_crossover:slow_period:mode': 'fixed', 'wf:ma_crossover:slow_period:value': 50,
     'wf:ma_crossover:ma_type:values': ['sma', 'ema']}
    """
    state: dict[str, Any] = {}
    for p in spec.params:
        key = f"{key_prefix}:{spec.name}:{p.name}"
        value = saved.get(p.name)
        if value is None:
            continue
        if p.kind in ("int", "float"):
            if isinstance(value, Mapping):
                state.update({f"{key}:mode": "range", f"{key}:min": value["min"], f"{key}:max": value["max"],
                              f"{key}:step": value["step"]})
            elif not isinstance(value, list):
                state.update({f"{key}:mode": "fixed", f"{key}:value": value})
        elif p.kind == "bool":
            both = isinstance(value, list) and len(set(value)) == 2
            state[f"{key}:mode"] = "both" if both else "fixed"
            if not both:
                state[f"{key}:value"] = bool(value[0] if isinstance(value, list) else value)
        else:
            state[f"{key}:values"] = list(value) if isinstance(value, list) else [value]
    return state


def preset_space(spec: StrategySpec, key_prefix: str, saved: Mapping[str, Any]) -> None:
    """Put a saved space (``threadx.ui.workspace.load_form("space", ...)``; see
    :func:`space_widget_state`) into the editor's widget keys, for the params whose widgets this
    session has not created yet (a new session or a restart)."""
    def created(name: str) -> bool:
        key = f"{key_prefix}:{spec.name}:{name}"
        return f"{key}:mode" in st.session_state or f"{key}:values" in st.session_state

    st.session_state.update(space_widget_state(spec, key_prefix, {k: v for k, v in saved.items() if not created(k)}))


def unless_preset(key: str, value: Any) -> Any:
    """A widget's own starting ``value``, or None when Session State already holds ``key`` (a
    preset or loaded value: Streamlit logs a warning when a widget gets both)."""
    return None if key in st.session_state else value


def number_box(where: Any, label: str, default: Any, key: str, problems: list[str] | None = None,
               low: float | None = None, high: float | None = None, clearable: bool = True, **kwargs: Any) -> Any:
    """``where.number_input`` (``st`` or a column) starting at ``default`` unless Session State holds
    ``key`` (:func:`unless_preset`). Such a box has no value of its own, so it can be emptied: an
    empty box reads as ``default`` (``float(None)`` raised over the page), which a caption under
    it says (an emptied box ran its default with nothing shown).

    Its bounds [``low``, ``high``] are checked here, not by the browser: a box bounded by
    Streamlit kept showing a value typed out of range (in red) while its last valid value ran,
    so a run used a number the page did not show. Out of range, the box's problem goes into
    ``problems``, which the page shows (:func:`show_problems`) and runs nothing while there is one.
    ``clearable=False``: a box that cannot be emptied, without the clear button, which takes room
    from the value in a narrow column (it showed "10" for 10,000 at 1024 px)."""
    if clearable:
        chosen = where.number_input(label, value=unless_preset(key, default), key=key, **kwargs)
    else:  # (a box without a value of its own takes Streamlit's "min", which only a value can be: not None)
        chosen = where.number_input(label, key=key, **({} if key in st.session_state else {"value": default}),
                                    **kwargs)
    if chosen is None:
        where.caption(f"empty: reads as {default:,.10g}")
        return default
    if low is not None or high is not None:
        if problems is None:
            raise ValueError(f"number_box {key!r}: bounds need a problems list to report to")
        _out_of_bounds(label, chosen, low, high, problems)
    return chosen


def _out_of_bounds(label: str, value: float, low: float | None, high: float | None, problems: list[str]) -> bool:
    """Whether ``value`` is outside [``low``, ``high``] (None: unbounded), adding the reason to ``problems``.

    >>> problems = []
    >>> _out_of_bounds("Fee (bps)", -5.0, 0.0, 1000.0, problems), problems
    (True, ['Fee (bps) must be between 0 and 1,000, got -5'])
    """
    if (low is None or value >= low) and (high is None or value <= high):
        return False
    low_text, high_text = number_text(low), number_text(high)
    within = (f"between {low_text} and {high_text}" if low is not None and high is not None
              else f"at least {low_text}" if low is not None else f"at most {high_text}")
    problems.append(f"{label} must be {within}, got {number_text(value)}")
    return True


def rule_problem(check: Callable[[Any], Any], value: Any, problems: list[str]) -> None:
    """``check(value)``'s ParamError, if it raises one, added to a form's ``problems`` (a rule a
    box's bounds cannot say, such as S even: the same words as when the work refuses it)."""
    from threadx.errors import ParamError

    try:
        check(value)
    except ParamError as exc:
        problems.append(str(exc))


def show_problems(where: Any, problems: list[str], what: str) -> bool:
    """One error box listing the form's ``problems`` (boxes out of range); True when there are any
    (the page's ``what``, "Run backtest" say, is then disabled)."""
    if problems:
        where.error(f"{what} waits for: " + "; ".join(problems) + ".")
    return bool(problems)


def choice_box(where: Any, label: str, options: list, default: Any, key: str, **kwargs: Any) -> Any:
    """``where.selectbox`` of ``options`` starting at ``default``, as :func:`number_box` (none picked
    reads as ``default``)."""
    chosen = where.selectbox(label, options, index=unless_preset(key, options.index(default)), key=key, **kwargs)
    return default if chosen is None else chosen


FUNDING_HELP = ("On: the funding-rate file stored beside the dataset's candles (threadx data fetch --funding) is "
                "paid on open positions at each settlement, as threadx backtest, sweep and walkforward apply it; "
                "off: no funding. The run records the file and the sha256 of its rates.")


def funding_toggle(where: Any, key: str, **kwargs: Any) -> str | None:
    """The "Funding file" toggle of a run form, on unless Session State holds ``key`` off:
    ``"stored"`` (the dataset's funding file, when it has one) or None."""
    on = where.toggle("Funding file", key=key, help=FUNDING_HELP,
                      **({} if key in st.session_state else {"value": True}), **kwargs)
    return STORED if on else None


def funding_caption(dataset: str | None, funding: str | None) -> None:
    """One caption under a run form: which funding file its runs apply, or that the dataset has
    none (a run "with the funding file" of a dataset without one pays nothing)."""
    if funding != STORED or dataset is None:
        return
    path = funding_file_of(dataset)
    st.caption(f"Funding: {path.name}, beside the candles." if path is not None else
               "Funding: this dataset has no funding file beside its candles, so its runs pay no funding "
               "(threadx data fetch --symbol ... --funding downloads one).")


def funding_as_run(funding: Any, source: str) -> str:
    """A form's or a run's funding in words, for comparing a form with a result: the toggle's
    "stored" and the record of the file a run paid read alike (:func:`funding_words`), and
    "stored" on data without a funding file beside ``source`` reads as none (what it runs)."""
    return funding_words(None if funding == STORED and funding_file_of(source) is None else funding, detail=False)


CONTROL_PX = 150  # a form control's width in a wrapping row: three a row at 1024 px, "next_open" whole


def controls_row() -> Any:
    """A row of form controls (each given ``width=CONTROL_PX``) that wraps at the page's width:
    six columns cut their values at 1024 px ("sharpe", "maximise", "next_open")."""
    return st.container(horizontal=True, wrap=True, gap="small", vertical_alignment="bottom")


METRIC_CARD_PX = 125  # a card's width: four a row at 1024 px; "Final equity (USDT)" on two lines, a value on one


def metric_grid(cards: Iterable[tuple[str, str, str | None]]) -> None:
    """Metric cards (label, value, help) in rows that wrap at the page's width: a fixed number of
    columns per row cut the labels at 1024 px ("Max drawdo…")."""
    with st.container(horizontal=True, wrap=True, gap="small"):
        for label, value, help_text in cards:
            st.metric(label, value, help=help_text, width=METRIC_CARD_PX)


def space_editor(spec: StrategySpec, key_prefix: str) -> dict[str, Any]:
    """Per param: fixed value or range (min, max, step); returns a space dict for sweeps.

    The first two declared params start as ranges when they are searched by default (a
    declared range, affecting results); a param that does not affect results starts fixed
    and says so. Widgets preset in Session State (:func:`preset_space`) start there; their
    values survive a visit to another page (``persist_state="session"``)."""
    space: dict[str, Any] = {}
    ranged = [p.name for p in spec.params[:2] if searched_by_default(p)]
    # the boxes wide enough for a value beside their clear, minus and plus buttons (at 1280 px, [3, 2, 2, 2, 2]
    # showed "2.0(" for 2.00 and "0.0:" for 0.010), the mode wide enough for "range" at 1024 px
    widths = [2.2, 2, 2.3, 2.3, 2.2]
    header = st.columns(widths)
    for label, col in zip(("param", "mode", "min / value", "max", "step"), header):
        col.caption(label)
    for p in spec.params:
        # a choice's values get the width of the four boxes (in one column, its chip was a red blob at 1024 px)
        row = st.columns([widths[0], sum(widths[1:])] if p.kind == "choice" else widths)
        display_only = None if p.affects_results else ("Does not change any result: left out of the default "
                                                       "search, every value gives the same backtest.")
        row[0].markdown(breakable_name(p.name) + ("" if p.affects_results else " (display only)"),
                        help="; ".join(t for t in (param_help(p), display_only) if t) or None, unsafe_allow_html=True)
        key = f"{key_prefix}:{spec.name}:{p.name}"
        if p.kind in ("int", "float"):
            default_mode = "range" if p.name in ranged else "fixed"
            mode = choice_box(row[1], "mode", ["fixed", "range"], default_mode, f"{key}:mode",
                              label_visibility="collapsed", persist_state="session")
            lo, hi, step = p.opt_range or (p.default, p.default, p.step or 1)
            cast = int if p.kind == "int" else float
            if mode == "fixed":
                with row[2]:
                    space[p.name] = param_input(p, p.default, key=f"{key}:value", persist="session",
                                                label_visibility="collapsed")
            else:
                boxes = ((2, "min", lo), (3, "max", hi), (4, "step", step))
                typed = (st.session_state.get(f"{key}:{name}") for _, name, _ in boxes)
                shown = _number_format(p, lo, hi, step, *typed)
                space[p.name] = {
                    name: number_box(row[col], name, cast(start), f"{key}:{name}", step=cast(step), format=shown,
                                     label_visibility="collapsed", persist_state="session")
                    for col, name, start in boxes}
        elif p.kind == "bool":
            mode = row[1].selectbox("mode", ["fixed", "both"], key=f"{key}:mode", label_visibility="collapsed",
                                    persist_state="session")
            if mode == "both":
                space[p.name] = [False, True]
                row[2].caption("false, true")
            else:
                with row[2]:
                    space[p.name] = param_input(p, p.default, key=f"{key}:value", persist="session",
                                                label_visibility="collapsed")
        else:
            chosen = row[1].multiselect("values", list(p.choices), default=unless_preset(f"{key}:values", [p.default]),
                                        key=f"{key}:values", label_visibility="collapsed", persist_state="session")
            space[p.name] = chosen if len(chosen) != 1 else chosen[0]
            if not chosen:
                space[p.name] = []
    return space


# --- backtest result: date range and trades table ----------------------------------------

def naive_utc(ts: Any) -> datetime:
    """A UTC (naive) datetime for Streamlit's slider from any timestamp."""
    t = pd.Timestamp(ts)
    return (t.tz_convert("UTC").tz_localize(None) if t.tzinfo is not None else t).to_pydatetime()


def date_range_slider(
    index: pd.DatetimeIndex, key: str, label: str = "Chart range (UTC)",
    help: str | None = "What the charts below show; the figures above are the whole run's.",  # noqa: A002
) -> tuple[datetime | None, datetime | None]:
    """A start/end slider over ``index`` (step: one bar); returns naive UTC datetimes.

    Its value lives in ``st.session_state[key]`` (set it before the call to move it, e.g. to a
    trade's window); a stale value outside ``index`` is reset to the full range.
    """
    if not isinstance(index, pd.DatetimeIndex) or len(index) < 2:
        return None, None  # nothing to pick from: the whole (tiny or unindexed) frame
    lo, hi = naive_utc(index[0]), naive_utc(index[-1])
    step = pd.Timedelta(int(np.median(np.diff(index.as_unit("ns").asi8)))).to_pytimedelta()  # one bar
    current = st.session_state.get(key)
    if not (isinstance(current, tuple) and len(current) == 2 and lo <= current[0] <= current[1] <= hi):
        st.session_state[key] = (lo, hi)
    return st.slider(label, min_value=lo, max_value=hi, step=step, format="YYYY-MM-DD HH:mm", key=key, help=help)


def selected_row(key: str) -> int | None:
    """The row picked in the ``st.dataframe`` with ``key`` (single-row selection), or None."""
    state = st.session_state.get(key)
    try:
        rows = state["selection"]["rows"]
    except (KeyError, TypeError):
        return None
    return int(rows[0]) if rows else None


def trades_table(trades: pd.DataFrame, key: str, height: int = 320, quote: str = "") -> int | None:
    """The readable trades table (sortable, one row selectable); returns the selected row
    position in ``trades`` or None. ``quote``: the currency the money columns (PnL, fees,
    funding) are in, said in their headers ("PnL (USDT)")."""
    headers = {header: column for column, header in charts.TRADE_TABLE_COLUMNS.items()}
    money = {header: f"{header} ({quote})" for header, column in headers.items()
             if quote and units.unit_of(column) == units.MONEY}
    # numbers in their units (threadx.units), still numbers: the columns sort by value
    table, config = units.table_view(charts.trades_table(trades), aliases=headers, labels=money)
    table.insert(0, "#", np.arange(1, len(table) + 1))  # the trade's number, as the caption of a picked one says
    config.update({"#": st.column_config.NumberColumn(format="%d", pinned=True),
                   "Entry (UTC)": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
                   "Exit (UTC)": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm")})
    st.dataframe(table, column_config=config, width="stretch", height=height, key=key,
                 on_select="rerun", selection_mode="single-row")
    return selected_row(key)


@dataclass
class ChartView:
    """What the Backtest charts show: the date range, log axes, the selected trade (or None)."""

    start: datetime | None
    end: datetime | None
    log_y: bool
    trade: dict | None


def chart_view(trades: pd.DataFrame, index: pd.DatetimeIndex, run_token: Any, prefix: str = "bt") -> ChartView:
    """Controls above the price chart (date range, log scale, full range) and the trade-to-chart link.

    Keys: ``{prefix}_range`` (date range), ``{prefix}_trades`` (the trades table, rendered
    later by :func:`trades_table`), ``{prefix}_log``. A new ``run_token`` (a new result) resets
    the range and the selection; a newly selected trades-table row moves the date range to a
    window around that trade (:func:`threadx.ui.charts.trade_window`).
    """
    range_key, table_key, seen_key = f"{prefix}_range", f"{prefix}_trades", f"{prefix}_zoomed"
    if st.session_state.get(f"{prefix}_view_of") != run_token:
        st.session_state[f"{prefix}_view_of"] = run_token
        for key in (range_key, table_key, seen_key):
            st.session_state.pop(key, None)
    row = selected_row(table_key)
    trade = trades.iloc[row].to_dict() if row is not None and row < len(trades) else None
    if row != st.session_state.get(seen_key):
        st.session_state[seen_key] = row
        if trade is not None and isinstance(index, pd.DatetimeIndex) and len(index) > 1:
            lo, hi = charts.trade_window(index, trade)
            st.session_state[range_key] = (naive_utc(lo), naive_utc(hi))
    c = st.columns([3, 2, 6])  # (at 1024 px [1, 1, 5] cut them to "L" and "Full r…")
    log_y = c[0].toggle("Log scale", key=f"{prefix}_log", help="logarithmic price and equity axes")
    def full_range() -> None:  # the whole period, no trade selected (its caption and levels stayed on it)
        for key in (range_key, table_key, seen_key):
            st.session_state.pop(key, None)

    c[1].button("Full range", key=f"{prefix}_full_range", on_click=full_range)
    if trade is not None:
        c[2].caption(f"Trade #{row + 1}: {trade['side']} {naive_utc(trade['entry_time']):%Y-%m-%d %H:%M} → "
                     f"{naive_utc(trade['exit_time']):%Y-%m-%d %H:%M} UTC, "
                     f"exit: {str(trade.get('exit_reason', '')).replace('_', ' ')} (levels drawn on the chart)")
    start, end = date_range_slider(index, key=range_key)
    return ChartView(start, end, bool(log_y), trade)


# --- jobs -----------------------------------------------------------------------------------

MONITOR_EVERY_S = 1.0  # a followed job's monitor reruns this often while the job is active
MONITOR_FIRST_EVERY_S = 0.25  # ... and this often in its first seconds, within which a small job ends
MONITOR_FIRST_S = 3.0


@contextlib.contextmanager
def errors_as_lines() -> Iterator[None]:
    """A user error raised inside (a ThreadXError: a settings file edited into a bad state while a
    page's fragment polls, outside app.py's check) shown as one error line, not a traceback.

    >>> with errors_as_lines():  # doctest: +SKIP
    ...     registry.refresh()
    """
    try:
        yield
    except ThreadXError as exc:
        st.error(str(exc))


def monitor_every(job: Any) -> float | None:
    """How often the monitor of ``job`` reruns: None when there is none or it is over."""
    if job is None or not job.is_active:
        return None
    age = job.age_s
    young = age is not None and 0 <= age < MONITOR_FIRST_S  # (a submit time ahead of this clock: not young)
    return MONITOR_FIRST_EVERY_S if young else MONITOR_EVERY_S


JOB_PARAM = "job"  # the URL's query param naming the active job a page follows


def followed_job(registry: Any, key: str, kind: str, refresh: bool = False, notes: Any = None) -> Any:
    """The job of ``kind`` this page follows (:meth:`~threadx.ui.jobs.JobRegistry.follow`, the
    session's under ``key``), the URL's ``job`` naming it while it is active, so that a refresh
    or a copied link follows that job again (not another tab's). None when there is none."""
    linked = st.query_params.get(JOB_PARAM)
    refused = f"_{key}_unknown_link"  # a session opened on a link to a job not known here follows none
    if not linked and st.session_state.get(refused) and not st.session_state.get(key):
        return None  # (until it launches one: the one active job was shown as the job the link named)
    before = st.session_state.get(key)
    job = registry.follow(st.session_state, key, kind, refresh=refresh, linked=linked)
    if not before and not linked and job is not None:  # a new tab showing the one active job: not its own
        st.session_state[f"_{key}_found"] = job.job_id
    if linked and job is None:  # (a portfolio page then showed the newest stored portfolio, unsaid)
        st.session_state[refused] = linked
        (notes or st).warning(f"The link names job **{plain(linked)}**, which is not a {kind} job known here (ended "
                              "and cleared, or a link from another machine or page): no job is followed.")
    named = job.job_id if job is not None and job.is_active else None
    if st.query_params.get(JOB_PARAM) != named:  # (written only on a change: reruns send nothing)
        if named:
            st.query_params[JOB_PARAM] = named
        else:
            st.query_params.pop(JOB_PARAM, None)
    return job


def launch_held(job: Any, what: str, key: str) -> bool:
    """Whether this tab's followed ``job`` (:func:`followed_job` under ``key``) is still active and
    its own (launched here, or named by the tab's link; not one a new tab found running), its
    page's Launch then held (a caption says why): a second click queued a duplicate job, and the
    tab followed that one, losing the first one's progress and Stop."""
    if job is None or not job.is_active or st.session_state.get(f"_{key}_found") == job.job_id:
        return False
    st.caption(f"This tab's {what} is running (job {job.job_id}): Launch is back when it ends or is stopped; "
               "open a new tab to run another beside it.")
    return True


def follow_job(monitor: Callable[[], None], current_job: Callable[[], Any]) -> Any:
    """``monitor`` as a fragment rerun while the followed job (``current_job()``, returned) is
    active, at :func:`monitor_every`'s pace: quickly in the job's first seconds, so that a small
    job's result shows soon after it ends, then each second. When the pace changes, or the
    job ends, a full rerun sets the new one (no rerun at all once it is over)."""
    job = current_job()
    every = monitor_every(job)

    def body() -> None:
        with errors_as_lines():
            monitor()
        if monitor_every(current_job()) != every:  # also after an error: a job that ended stops the polling
            st.rerun()

    st.fragment(body, run_every=every)()
    return job


def job_progress(registry: Any, job: Any, stop_key: str, stopping: str) -> bool:
    """A job's progress line (its label and phase or counts) and, while it is active and no
    stop was asked, its Stop button (``stopping``: the toast once pressed). Returns whether
    the job is still active. A Stop pressed as the job ended (the click's rerun finds it over)
    is answered: the click went unsaid, the result read as if Stop had never been pressed."""
    st.progress(job.fraction, text=f"{job.label} · {job.status_line}")
    if not job.is_active:
        if st.session_state.get(stop_key) is True:
            st.toast(f"{job.label} had already ended ({job.state}) when Stop arrived: nothing was stopped.")
        elif job.stop_requested and job.state == "completed":  # asked while its last work or stage ran
            # (not "after the last combo": the chunks the workers held when Stop came, 14 % of a sweep, ran on)
            st.info("Stop came too late to spare any work: what the job had under way when it was pressed "
                    "finished, and the job completed; its whole result is shown.")
        return False
    if not job.stop_requested and st.button("Stop", key=stop_key):
        registry.stop(job.job_id)
        st.toast(stopping)
    return True


def show_finished_job(job: Any, prefix: str, stored: bool) -> None:
    """Once per finished job (``<prefix>_seen``), select its stored result (``<prefix>_run``) and
    rerun the whole page, the history select box following it (``_<prefix>_repick``)."""
    if st.session_state.get(f"{prefix}_seen") == job.job_id:
        return
    st.session_state[f"{prefix}_seen"] = job.job_id
    if stored:
        st.session_state[f"{prefix}_run"] = job.run_id
        st.session_state[f"_{prefix}_repick"] = True
        st.rerun()


def timings_section(timings: Mapping[str, Any] | None, key: str) -> None:
    """Where a run's time went: the stage bar chart and, when one stage dominates, the hint."""
    from threadx.timings import hint
    from threadx.ui.timings_chart import timings_figure

    st.plotly_chart(timings_figure(timings), width="stretch", key=f"timings_{key}")
    text = hint(timings)
    if text:
        st.caption(f"Hint: {text}")


GOTO_PAGE = "goto_page"  # session key: the page app.py switches to at the next run's start (see page_button)


def page_button(where: Any, label: str, key: str, page: Any, prepare: Callable[[], None], failed: str = "",
                **kwargs: Any) -> None:
    """A button that opens ``page`` (``"views/8_Portfolio.py"`` or an ``st.Page``): ``prepare()``, which fills
    the session state that page reads, runs in the click's callback, and app.py switches at the
    start of the next run, before this page builds anything. A ThreadXError from ``prepare()``
    is shown beside the button (after ``failed``, "Cannot open run x in Backtest") and the page stays.

    (An ``if st.button(...): st.switch_page(...)`` rebuilt every chart above the button before
    switching: 2.2 s of the 3.7 s "Portfolio from winners" took on the Research page.)
    """
    def on_click() -> None:
        try:
            prepare()
        except ThreadXError as exc:
            st.session_state[f"{key}:error"] = str(exc)
        else:
            st.session_state[GOTO_PAGE] = page

    where.button(label, key=key, on_click=on_click, **kwargs)
    error = st.session_state.pop(f"{key}:error", None)
    if error:
        where.error(f"{failed or 'Cannot open ' + page}: {error}")


def go_to_requested_page() -> None:
    """In app.py, after ``st.navigation``: switch to the page a :func:`page_button` asked for."""
    page = st.session_state.pop(GOTO_PAGE, None)
    if page:
        st.switch_page(page)


def download_stem(*parts: Any) -> str:
    """A download's file name (without its ending) from what made the file, each part cut to
    letters, digits, dots, dashes and underscores, empty parts left out: three downloads all named
    trades.csv could not be told apart, nor traced to their run.

    >>> download_stem("bb_atr", "sample:BTC_USDT-1h", "", "3f2a")
    'bb_atr_sample-BTC_USDT-1h_3f2a'
    """
    return "_".join(re.sub(r"[^A-Za-z0-9._-]+", "-", str(part)).strip("-") for part in parts if part)
