"""Plotly figure builders of the workstation (SPEC §9).

Pure functions: frames and dicts in, ``plotly.graph_objects.Figure`` out, no Streamlit.
Conventions shared by every figure:

- long / win = green (``LONG_COLOR``), short / loss = red (``SHORT_COLOR``);
- trade markers are filled for winners (pnl > 0) and hollow (``-open`` symbols) for
  losers; entries are triangles (up for long, down for short), exits are circles;
- large series are reduced *for display only*, above the display budget
  ``DISPLAY_MAX_POINTS`` (candles resampled to a coarser OHLC bin, lines downsampled keeping
  the extremes) and the title says so; a date range (``start``/``end``) shows its real bars;
- trade markers shrink with the number of trades in view and are hidden (the title says so)
  above ``MARKER_MAX_TRADES``;
- hover texts carry their units (%, bars, quote currency).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.colors as plotly_colors
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from threadx import units

# Plotly's white template with a short toolbar: zoom, pan, reset and the PNG download (box and
# lasso select, zoom in / out and autoscale dropped: no page reads a selection, and the row of
# nine icons covered the titles of charts given half a page)
TEMPLATE = go.layout.Template(pio.templates["plotly_white"])
TEMPLATE.layout.modebar.remove = ["select2d", "lasso2d", "zoomIn2d", "zoomOut2d", "autoScale2d"]
# the band at a figure's top where that toolbar shows on hover: charts drawn two to a row start
# their title below it (threadx.ui.validation_charts.set_title)
TOOLBAR_BAND_PX = 40
LONG_COLOR = "#26a69a"   # green: long side, winning trades, up candles
SHORT_COLOR = "#ef5350"  # red: short side, losing trades, down candles
LINE_COLOR = "#42a5f5"   # equity and generic lines (readable on light and dark)
NEUTRAL_COLOR = "#9e9e9e"
FRONT_COLOR = "#ff9800"
OVERLAY_COLORS = ("#ffa726", "#ab47bc", "#29b6f6", "#d4e157", "#8d6e63", "#ec407a", "#66bb6a", "#78909c")
# above this many points, lines use WebGL (go.Scattergl); below, SVG draws faster (a WebGL
# context costs more than it saves: 2,000-point equity 0.5 s as WebGL, 0.1 s as SVG in Chromium)
GL_THRESHOLD = 5000
# display budget: above this many bars/points a chart is reduced for display. 1,000 candles fill
# a wide chart at about one per 1.3 pixels; drawing 2,000 took twice as long in Chromium (0.25 s
# against 0.12 s on BTC 1h) and 4,000 twice as long again, for nothing more to see. A date range
# within the budget shows its real bars.
DISPLAY_MAX_POINTS = 1000
MARKER_MAX_TRADES = 400    # above this many trades in view the markers are hidden (the title says so)
EMPTY = units.EMPTY  # shown for NaN / missing values

# Nice display bins for candle resampling, in seconds.
_NICE_BINS = (
    60, 120, 180, 300, 600, 900, 1800,
    3600, 7200, 10800, 14400, 21600, 28800, 43200,
    86400, 2 * 86400, 3 * 86400, 7 * 86400, 14 * 86400, 30 * 86400,
)
_LOWER_IS_BETTER = {"volatility", "max_drawdown_bars", "max_drawdown_days", "total_fees", "n_skipped",
                    "n_ambiguous"}
_NON_PARAM_COLUMNS = {"combo_id", "status", "error", "max_drawdown_days"}


# --- small helpers ----------------------------------------------------------------------

def _new_figure(**layout: Any) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(**{"template": TEMPLATE, "margin": dict(l=50, r=20, t=50, b=40), **layout})
    return fig


def empty_figure(message: str, title: str | None = None) -> go.Figure:
    """A blank figure carrying a centred message (no data, nothing to plot)."""
    fig = _new_figure(title=title)
    fig.add_annotation(text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font=dict(size=14, color=NEUTRAL_COLOR))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def _shows_legend(fig: go.Figure) -> bool:
    """Plotly's own rule for whether ``fig`` shows a legend: more than one trace that may be in
    it, or one that asks to be (said explicitly where a figure sizes a margin for its legend)."""
    return sum(t.showlegend is not False for t in fig.data) > 1 or any(t.showlegend for t in fig.data)


def _trace_cls(n: int) -> type:
    return go.Scattergl if n > GL_THRESHOLD else go.Scatter


def _fmt_value(value: Any) -> str:
    """A param value as a short label (floats without binary noise)."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.10g}"
    return str(value)


def metric_label(name: str) -> str:
    """Human label of a metric column (``max_drawdown`` -> ``Max drawdown``)."""
    labels = {"cagr": "CAGR", "sqn": "SQN", "n_trades": "Trades", "n_long": "Long trades",
              "n_short": "Short trades", "total_fees": "Fees"}
    return labels.get(name, name.replace("_", " ").capitalize())


def _metric_hover_format(name: str) -> str:
    return units.d3_format(name)


def _is_categorical(series: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: column(s) {', '.join(map(repr, missing))} not in the results; "
                         f"available: {', '.join(map(str, frame.columns))}")


def _ok_rows(results: pd.DataFrame, finite: Sequence[str]) -> pd.DataFrame:
    """Rows with status 'ok' (when there is a status column) and finite values in ``finite``."""
    rows = results
    if "status" in rows.columns:
        rows = rows[rows["status"].astype(str) == "ok"]
    for col in finite:
        values = pd.to_numeric(rows[col], errors="coerce").astype(float)
        rows = rows[np.isfinite(values.to_numpy())]
    return rows


def _infer_params(results: pd.DataFrame) -> list[str]:
    """Param columns of a results frame: everything that is not a metric or bookkeeping."""
    try:
        from threadx.engine.layout import METRIC_NAMES
        metrics = set(METRIC_NAMES)
    except Exception:  # pragma: no cover - layout always importable in the package
        metrics = set()
    return [c for c in results.columns if c not in metrics and c not in _NON_PARAM_COLUMNS]


# --- resampling for display ------------------------------------------------------------

def _display_bin(index: pd.DatetimeIndex, max_points: int) -> pd.Timedelta:
    """The smallest nice bin (>= two bars, a multiple of the bar when possible) leaving <= ``max_points`` bins."""
    span = (index[-1] - index[0]).total_seconds()
    bar = max(float(np.median(np.diff(index.as_unit("ns").asi8))) / 1e9, 1.0)
    need = max(span / max(max_points - 1, 1), bar * 2)
    candidates = [s for s in _NICE_BINS if s >= need]
    multiples = [s for s in candidates if s % bar == 0]
    if multiples or candidates:
        return pd.Timedelta(seconds=(multiples or candidates)[0])
    return pd.Timedelta(days=math.ceil(need / 86400))


def _fmt_bin(width: pd.Timedelta) -> str:
    seconds = int(width.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _bin_labels(df: pd.DataFrame, max_points: int) -> tuple[np.ndarray, str]:
    """One group key per row for display resampling (UTC bins from the epoch), and the bin's label."""
    if isinstance(df.index, pd.DatetimeIndex) and len(df) > 1:
        width = _display_bin(df.index, max_points)
        step = width.value  # ns
        return (df.index.as_unit("ns").asi8 // step) * step, _fmt_bin(width)
    k = math.ceil(len(df) / max_points)
    return np.arange(len(df)) // k, f"{k} bars"


def resample_ohlcv(
    df: pd.DataFrame, max_points: int = DISPLAY_MAX_POINTS
) -> tuple[pd.DataFrame, str | None, np.ndarray | None]:
    """``df`` reduced to at most about ``max_points`` bars for display.

    OHLC aggregation per bin (first open, max high, min low, last close, summed volume),
    labelled by the bin's first bar. Returns (frame, bin label or None, group key per
    input row or None when no resampling was needed).
    """
    if len(df) <= max_points:
        return df, None, None
    keys, label = _bin_labels(df, max_points)
    grouped = df.groupby(keys, sort=True)
    agg = {"open": "first", "high": "max", "low": "min", "close": "last"}
    if "volume" in df.columns:
        agg["volume"] = "sum"
    out = grouped.agg(agg)
    first_pos = grouped.indices  # key -> positions
    starts = np.array([first_pos[k][0] for k in out.index])
    out.index = df.index[starts]
    return out, label, keys


def _downsample_positions(values: np.ndarray, max_points: int, keep: str = "minmax") -> np.ndarray:
    """Positions kept when showing ``values`` with about ``max_points`` points.

    ``keep="minmax"``: the min and the max of each bin (extremes survive);
    ``keep="min"``: the min of each bin. First and last positions are always kept.
    """
    n = len(values)
    if n <= max_points:
        return np.arange(n)
    per_bin = 2 if keep == "minmax" else 1
    n_bins = max(max_points // per_bin - 1, 1)
    k = math.ceil(n / n_bins)
    pad = (-n) % k
    v = np.asarray(values, dtype=float)
    lo = np.concatenate([np.where(np.isnan(v), np.inf, v), np.full(pad, np.inf)]).reshape(-1, k)
    offsets = np.arange(lo.shape[0]) * k
    picks = [offsets + lo.argmin(axis=1)]
    if keep == "minmax":
        hi = np.concatenate([np.where(np.isnan(v), -np.inf, v), np.full(pad, -np.inf)]).reshape(-1, k)
        picks.append(offsets + hi.argmax(axis=1))
    picks.append(np.array([0, n - 1]))
    pos = np.unique(np.concatenate(picks))
    return pos[pos < n]


# --- price chart ------------------------------------------------------------------------

def _aligned(values: Any, df: pd.DataFrame, name: str) -> np.ndarray:
    """An overlay as a float array aligned with ``df``'s rows."""
    if isinstance(values, pd.Series):
        if len(values) == len(df) and (values.index.equals(df.index) or not isinstance(values.index, pd.DatetimeIndex)):
            arr = values.to_numpy(dtype=float, na_value=np.nan)
        else:
            arr = values.reindex(df.index).to_numpy(dtype=float, na_value=np.nan)
    else:
        arr = np.asarray(values, dtype=float).ravel()
    if len(arr) != len(df):
        raise ValueError(f"overlay {name!r} has {len(arr)} values for {len(df)} bars")
    return arr


def _utc(value: Any) -> pd.Timestamp | None:
    """``value`` as a UTC Timestamp (naive values are taken as UTC); None stays None."""
    if value is None:
        return None
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _as_utc_index(index: pd.DatetimeIndex) -> pd.DatetimeIndex:
    return index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")


def plot_times(index: pd.Index) -> Any:
    """A time axis as naive UTC datetime64 values: Plotly draws them as the aware times (it
    ignores offsets) and takes them without copying one Timestamp object per bar."""
    if isinstance(index, pd.DatetimeIndex):
        return (index if index.tz is None else index.tz_convert("UTC").tz_localize(None)).to_numpy()
    return index


def range_mask(index: pd.Index, start: Any = None, end: Any = None) -> np.ndarray:
    """Boolean mask of the rows of a datetime ``index`` inside [start, end] (None = open end)."""
    mask = np.ones(len(index), dtype=bool)
    if not isinstance(index, pd.DatetimeIndex) or (start is None and end is None):
        return mask
    utc = _as_utc_index(index)
    if start is not None:
        mask &= utc >= _utc(start)
    if end is not None:
        mask &= utc <= _utc(end)
    return mask


def trade_window(
    index: pd.DatetimeIndex, trade: Mapping[str, Any], pad_bars: int = 30
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(start, end) of a window around one trade: its entry..exit plus ``pad_bars`` bars (or half
    its duration, when longer) on each side, clipped to ``index``."""
    entry, exit_ = _utc(trade["entry_time"]), _utc(trade["exit_time"])
    utc = _as_utc_index(index)
    bar = (utc[-1] - utc[0]) / max(len(utc) - 1, 1) if len(utc) > 1 else pd.Timedelta(hours=1)
    pad = max(bar * pad_bars, (exit_ - entry) / 2)
    return max(entry - pad, utc[0]), min(exit_ + pad, utc[-1])


def trade_marker_size(n_trades: int) -> int:
    """Entry marker size (px) for ``n_trades`` trades in view: 10 up to 50 trades, smaller as they
    get denser (down to 4), 0 (hidden) above :data:`MARKER_MAX_TRADES`."""
    if n_trades > MARKER_MAX_TRADES:
        return 0
    if n_trades <= 50:
        return 10
    return max(4, int(round(10 * math.sqrt(50 / n_trades))))


def _trade_traces(trades: pd.DataFrame, quote: str, size: int = 10, start: Any = None,
                  end: Any = None) -> list[go.Scatter]:
    """Entry and exit marker traces, one per (side, entry/exit) present; only markers inside
    [start, end] are kept. Exits are drawn a bit smaller than entries (``size``)."""
    traces = []
    n = len(trades)
    side = trades["side"].astype(str).str.lower().to_numpy()
    pnl = pd.to_numeric(trades["pnl"], errors="coerce").to_numpy(dtype=float) if "pnl" in trades else np.full(n, np.nan)
    win = pnl > 0

    def col(name: str, default: Any = np.nan) -> np.ndarray:
        return trades[name].to_numpy() if name in trades.columns else np.full(n, default, dtype=object)

    columns = [
        side,
        np.asarray(col("entry_price"), dtype=float),
        np.asarray(col("exit_price"), dtype=float),
        pnl,
        np.asarray(col("return_pct"), dtype=float),
        np.asarray(col("exit_reason", ""), dtype=object),
        np.asarray(col("bars_held"), dtype=float),
        np.asarray(col("qty"), dtype=float),
    ]
    custom = np.empty((n, len(columns)), dtype=object)  # mixed text and numbers, kept as such
    for j, values in enumerate(columns):
        custom[:, j] = values
    hover = (
        "<b>%{customdata[0]}</b> %{meta}<br>"
        "entry %{customdata[1]:,.4~f} " + quote + "<br>"
        "exit %{customdata[2]:,.4~f} " + quote + "<br>"
        "qty %{customdata[7]:,.6~f}<br>"
        "PnL %{customdata[3]:+,.2f} " + quote + " (%{customdata[4]:+.2f} %)<br>"
        "held %{customdata[6]:.0f} bars, exit: %{customdata[5]}<br>"
        "%{x|%Y-%m-%d %H:%M} UTC<extra></extra>"
    )
    for which in ("entry", "exit"):
        times = pd.DatetimeIndex(pd.to_datetime(trades[f"{which}_time"]))
        inside = range_mask(times, start, end)
        for s, color in (("long", LONG_COLOR), ("short", SHORT_COLOR)):
            sel = (side == s) & inside
            if not sel.any():
                continue
            if which == "entry":
                base = "triangle-up" if s == "long" else "triangle-down"
            else:
                base = "circle"
            symbols = np.where(win[sel], base, base + "-open")
            cls = _trace_cls(int(sel.sum()))
            traces.append(cls(
                x=times[sel],
                y=pd.to_numeric(trades.loc[sel, f"{which}_price"]).to_numpy(dtype=float),
                mode="markers",
                name=f"{s.capitalize()} {which}",
                legendgroup=f"trades-{s}",
                meta=which,
                marker=dict(symbol=symbols.tolist(), color=color, size=size if which == "entry" else max(size - 2, 3),
                            line=dict(color=color, width=1.5)),
                customdata=custom[sel],
                hovertemplate=hover,
            ))
    return traces


# level label -> the trade columns that may carry it, first found wins: the engine's
# (threadx.engine.result.TRADE_LEVEL_COLUMNS), then names other trade lists use
_LEVEL_COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Stop", ("stop_at_entry", "stop_price", "stop_loss_price", "stop")),
    ("Stop at exit", ("stop_at_exit",)),
    ("Target", ("target", "target_price", "take_profit_price")),
    ("Target at exit", ("target_at_exit",)),
)


def _finite(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def trade_levels(trade: Mapping[str, Any]) -> dict[str, float]:
    """The price levels of one trade that its record carries: Entry and Exit always; Stop and
    Target (as set at the entry) when the trades frame has such a column; Stop at exit and
    Target at exit only where they differ from those (a trailing stop, a target that follows
    the mid band). Finite values only: a level the strategy does not set (NaN) is left out."""
    raw = {"Entry": trade.get("entry_price"), "Exit": trade.get("exit_price")}
    for label, names in _LEVEL_COLUMNS:
        raw[label] = next((trade[c] for c in names if c in trade), None)
    out = {}
    for label, value in raw.items():
        v = _finite(value)
        if v is None or (label.endswith(" at exit") and out.get(label[: -len(" at exit")]) == v):
            continue
        out[label] = v
    return out


# level -> (colour, dash, width): the entry and exit solid, stops red and targets green,
# dashed as set at the entry and dotted where they had moved to at the exit
_LEVEL_STYLES = {"Entry": ("#424242", "solid", 2.5), "Stop": (SHORT_COLOR, "dash", 2.0),
                 "Stop at exit": (SHORT_COLOR, "dot", 2.5), "Target": (LONG_COLOR, "dash", 2.0),
                 "Target at exit": (LONG_COLOR, "dot", 2.5)}


def _level_traces(trade: Mapping[str, Any], quote: str) -> list[go.Scatter]:
    """Labelled horizontal segments (entry..exit) for the levels of one trade; the labels
    (level, price, exit reason) go to the legend and the hover (with the distance from the
    entry price), not onto the candles. A stop or target that moved is drawn twice, labelled
    "at entry" and "at exit"."""
    unit = f" {quote}" if quote else ""
    pnl = float(trade.get("pnl", np.nan))
    x = [_utc(trade["entry_time"]), _utc(trade["exit_time"])]
    reason = str(trade.get("exit_reason") or "").replace("_", " ")
    levels = trade_levels(trade)
    entry = levels.get("Entry")
    styles = {**_LEVEL_STYLES, "Exit": (LONG_COLOR if pnl > 0 else SHORT_COLOR, "solid", 2.5)}
    traces = []
    for label, price in levels.items():
        shown = f"{label} at entry" if f"{label} at exit" in levels else label
        text = f"{shown} {price:,.6g}{unit}"
        if label == "Exit" and reason:
            text += f" ({reason})"
        hover = text
        if label != "Entry" and entry:
            hover += f"<br>{100.0 * (price / entry - 1.0):+.2f} % from the entry"
        color, dash, width = styles[label]
        traces.append(go.Scatter(
            x=x, y=[price, price], mode="lines", name=text, line=dict(color=color, width=width, dash=dash),
            legendgroup="levels", hovertemplate=f"{hover}<extra></extra>",
        ))
    return traces


def downsampled_note(total: int, drawn: int, unit: str = "bars") -> str:
    """The title note of a line drawn from fewer points than it has (the low and high of each bin kept).

    >>> downsampled_note(17_520, 4_000)
    '17,520 bars drawn as 4,000 points (the low and high of each bin kept)'
    """
    return f"{total:,} {unit} drawn as {drawn:,} points (the low and high of each bin kept)"


def _title(text: str, notes: Sequence[str]) -> dict[str, Any]:
    """A figure title with the display notes (resampling, hidden markers) in smaller lines under it,
    one a line (joined on one line, they ran past a 1024 px window's chart and under its toolbar)."""
    if notes:
        text += "".join(f"<br><span style='font-size:11px;font-weight:normal'>{note}</span>" for note in notes)
    # a fixed gap above it (a share of the height, 2 %, left 7 px on a short chart: its top was clipped)
    return dict(text=text, font=dict(size=14), y=1.0, yref="container", yanchor="top", pad=dict(t=12), x=0.01)


_RANGE_BUTTONS = (
    dict(count=1, label="1d", step="day", stepmode="backward"),
    dict(count=7, label="1w", step="day", stepmode="backward"),
    dict(count=1, label="1m", step="month", stepmode="backward"),
    dict(count=3, label="3m", step="month", stepmode="backward"),
    dict(count=1, label="1y", step="year", stepmode="backward"),
    dict(step="all", label="all"),
)


def _range_selector(fig: go.Figure, row: int = 1) -> None:
    """Range selector buttons (1d .. all) above the top subplot (client-side zoom)."""
    fig.update_xaxes(rangeselector=dict(buttons=list(_RANGE_BUTTONS), x=0, y=1.0, yanchor="bottom",
                                        font=dict(size=11)), row=row, col=1)


def price_figure(
    df: pd.DataFrame,
    trades: pd.DataFrame | None = None,
    overlays: Mapping[str, pd.Series | np.ndarray] | None = None,
    max_points: int = DISPLAY_MAX_POINTS,
    title: str | None = None,
    *,
    quote: str = "",
    start: Any = None,
    end: Any = None,
    log_y: bool = False,
    focus: Mapping[str, Any] | None = None,
) -> go.Figure:
    """Candlesticks with a volume subplot, indicator overlay lines and trade markers.

    ``start``/``end`` pick a date range: its real bars are shown, resampled to a coarser bin
    only above ``max_points`` (the title says so); overlays are computed on the whole frame
    by the caller and only sliced here. Trade markers keep their exact times and prices,
    sized by :func:`trade_marker_size` (hidden, with a note, when too dense). ``log_y``: log
    price axis. ``focus``: one trade (a trades row) whose entry, exit, stop and target levels
    are drawn and labelled. ``quote`` names the price currency in hovers (e.g. ``"USDT"``).
    """
    if "timestamp" in df.columns and not isinstance(df.index, pd.DatetimeIndex):
        df = df.set_index("timestamp")
    _require_columns(df, ["open", "high", "low", "close"], "price_figure")
    mask = range_mask(df.index, start, end)
    aligned = {str(k): _aligned(v, df, str(k))[mask] for k, v in (overlays or {}).items()}
    df = df[mask]
    if df.empty:
        return empty_figure("No bars in this date range", title=title or "Price")
    has_volume = "volume" in df.columns
    n_bars = len(df)
    shown, bin_label, keys = resample_ohlcv(df, max_points)

    rows = 2 if has_volume else 1
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.03,
                        row_heights=[0.78, 0.22] if has_volume else [1.0])
    unit = f" {quote}" if quote else ""
    fig.add_trace(go.Candlestick(
        x=plot_times(shown.index), open=shown["open"], high=shown["high"], low=shown["low"], close=shown["close"],
        name="Price" if bin_label is None else f"Price ({bin_label})",
        increasing=dict(line=dict(color=LONG_COLOR), fillcolor=LONG_COLOR),
        decreasing=dict(line=dict(color=SHORT_COLOR), fillcolor=SHORT_COLOR),
        showlegend=False,
    ), row=1, col=1)

    for i, (legend, arr) in enumerate(aligned.items()):
        if keys is not None:
            arr = pd.Series(arr).groupby(keys, sort=True).last().to_numpy(dtype=float)
        cls = _trace_cls(len(arr))
        fig.add_trace(cls(
            x=plot_times(shown.index), y=arr, mode="lines", name=legend,
            line=dict(color=OVERLAY_COLORS[i % len(OVERLAY_COLORS)], width=1.2),
            hovertemplate=f"{legend}: %{{y:,.4~f}}{unit}<extra></extra>",
        ), row=1, col=1)

    notes = []
    if bin_label is not None:
        notes.append(f"resampled to {bin_label} for display: {n_bars:,} bars shown as {len(shown):,}")
    if trades is not None and len(trades):
        lo, hi = df.index[0], df.index[-1]
        in_view = int((range_mask(pd.DatetimeIndex(pd.to_datetime(trades["entry_time"])), lo, hi)
                       | range_mask(pd.DatetimeIndex(pd.to_datetime(trades["exit_time"])), lo, hi)).sum())
        size = trade_marker_size(in_view)
        if size == 0:
            notes.append(f"{in_view:,} trades in view: markers hidden above {MARKER_MAX_TRADES:,} "
                         "(pick a shorter range or a trade)")
        else:
            for trace in _trade_traces(trades, quote, size, lo, hi):
                fig.add_trace(trace, row=1, col=1)
    if focus is not None:
        fig.add_vrect(x0=_utc(focus["entry_time"]), x1=_utc(focus["exit_time"]), fillcolor=LINE_COLOR,
                      opacity=0.1, line_width=0, row=1, col=1)
        for trace in _level_traces(focus, quote):
            fig.add_trace(trace, row=1, col=1)

    if has_volume:
        up = (shown["close"] >= shown["open"]).to_numpy()
        # a colour string per bar: a colour scale or one trace per colour draws slower in the browser
        fig.add_trace(go.Bar(
            x=plot_times(shown.index), y=shown["volume"], name="Volume", showlegend=False,
            marker=dict(color=np.where(up, LONG_COLOR, SHORT_COLOR).tolist(), line=dict(width=0)),
            opacity=0.6, hovertemplate="volume %{y:,.2f}<extra></extra>",
        ), row=2, col=1)
        fig.update_yaxes(title_text="Volume", row=2, col=1)

    # legend under the chart: above it, it would collide with the title and the range buttons; at the
    # figure's bottom edge (not a share of the plot's height, which put it over the second line of the
    # time labels, the date, once zoomed to hours), under a margin that holds both
    # (no legend for the candles alone, as on the Data page's preview: its margin was an empty band;
    # Plotly's own rule for when a legend shows)
    legend = _shows_legend(fig)
    fig.update_layout(template=TEMPLATE, title=_title(title or "Price", notes), hovermode="x",
                      height=500, margin=dict(l=50, r=20, t=80 + 14 * max(0, len(notes) - 1),
                                              b=110 if legend else 60),
                      showlegend=legend, legend=dict(orientation="h", yref="container", y=0, yanchor="bottom", x=0),
                      bargap=0)
    fig.update_xaxes(rangeslider_visible=False)
    _range_selector(fig)
    if start is not None or end is not None:  # Plotly's reset returns to the picked range
        fig.update_xaxes(range=[df.index[0], df.index[-1]])
    fig.update_yaxes(title_text="Price" + (f" ({quote})" if quote else "") + (" (log)" if log_y else ""),
                     type="log" if log_y else "linear", row=1, col=1)
    return fig


GAP_COLOR = "#ff9800"  # shaded spans of missing bars on the data preview
MAX_GAP_MARKS = 300    # above this many gaps, only the largest are shaded


def add_gap_marks(fig: go.Figure, gaps: Sequence[tuple[Any, Any, int]], max_marks: int = MAX_GAP_MARKS) -> go.Figure:
    """Shade each gap ``(start, end, missing_bars)`` of a validation report on a price figure.

    One vrect per gap (the largest ``max_marks`` when there are more), across the subplots,
    and one legend entry "gap"; ``fig`` is changed in place and returned."""
    shown = sorted(gaps, key=lambda g: -int(g[2]))[:max_marks]
    before = len(fig.layout.shapes)
    for start, end, _ in sorted(shown, key=lambda g: g[0]):
        fig.add_vrect(x0=start, x1=end, fillcolor=GAP_COLOR, opacity=0.35, layer="below",
                      line=dict(color=GAP_COLOR, width=1),  # a one-hour gap stays visible over years
                      name="gap", legendgroup="gap", showlegend=False)
    if len(fig.layout.shapes) > before:
        fig.layout.shapes[before].showlegend = True
    return fig


# --- equity and drawdown ------------------------------------------------------------------

def buy_and_hold(close: pd.Series, initial_capital: float) -> pd.Series:
    """Equity of buying ``initial_capital`` worth at the first close and holding (no fees)."""
    close = pd.to_numeric(close, errors="coerce").astype(float)
    first = close.dropna()
    if first.empty or first.iloc[0] == 0:
        return pd.Series(np.nan, index=close.index, name="Buy and hold")
    return (float(initial_capital) * close / first.iloc[0]).rename("Buy and hold")


def equity_figure(
    equity: pd.Series,
    drawdown: pd.Series | None = None,
    initial_capital: float | None = None,
    max_points: int = DISPLAY_MAX_POINTS,
    *,
    quote: str = "",
    benchmark: pd.Series | None = None,
    benchmark_name: str = "Buy and hold (no fees)",
    log_y: bool = False,
    start: Any = None,
    end: Any = None,
) -> go.Figure:
    """Equity line over an underwater (drawdown, percent axis) area.

    ``drawdown`` defaults to equity / running peak - 1. Beyond ``max_points`` the lines
    are downsampled for display: the equity keeps each bin's min and max, the drawdown
    each bin's min (so the deepest drawdown is always shown). ``benchmark`` (e.g.
    :func:`buy_and_hold` of the same data and capital) is drawn as a second, labelled
    line; ``log_y`` makes the equity axis logarithmic. ``start``/``end``: only that date range
    (the run's own drawdown and the benchmark keep their whole-run reference).
    """
    equity = pd.Series(equity, dtype=float) if not isinstance(equity, pd.Series) else equity.astype(float)
    if drawdown is None:
        drawdown = equity / equity.cummax() - 1.0
    drawdown = drawdown.astype(float)
    if start is not None or end is not None:
        equity = equity[range_mask(equity.index, start, end)]
        drawdown = drawdown[range_mask(drawdown.index, start, end)]
        if benchmark is not None:
            benchmark = benchmark[range_mask(benchmark.index, start, end)]
    if len(equity) == 0:
        return empty_figure("No equity to show", title="Equity")
    unit = f" {quote}" if quote else ""

    eq_pos = _downsample_positions(equity.to_numpy(), max_points, "minmax")
    dd_pos = _downsample_positions(drawdown.to_numpy(), max_points, "min")
    reduced = len(eq_pos) < len(equity) or len(dd_pos) < len(drawdown)

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.04, row_heights=[0.68, 0.32])
    if benchmark is not None and len(benchmark):
        bench = pd.to_numeric(benchmark, errors="coerce").astype(float)
        bench = bench.iloc[_downsample_positions(bench.to_numpy(), max_points, "minmax")]
        fig.add_trace(_trace_cls(len(bench))(
            x=plot_times(bench.index), y=bench.to_numpy(), mode="lines", name=benchmark_name,
            line=dict(color=NEUTRAL_COLOR, width=1.2),
            hovertemplate=f"{benchmark_name} %{{y:,.2f}}{unit}<extra></extra>",
        ), row=1, col=1)
    eq = equity.iloc[eq_pos]
    fig.add_trace(_trace_cls(len(eq))(
        x=plot_times(eq.index), y=eq.to_numpy(), mode="lines", name="Strategy equity", line=dict(color=LINE_COLOR, width=1.5),
        hovertemplate=f"equity %{{y:,.2f}}{unit}<extra></extra>",
    ), row=1, col=1)
    dd = drawdown.iloc[dd_pos]
    fig.add_trace(_trace_cls(len(dd))(
        x=plot_times(dd.index), y=dd.to_numpy(), mode="lines", name="Drawdown", fill="tozeroy", showlegend=False,
        line=dict(color=SHORT_COLOR, width=1), fillcolor="rgba(239,83,80,0.3)",
        hovertemplate="drawdown %{y:.2%}<extra></extra>",
    ), row=2, col=1)

    if initial_capital is not None:  # a legend entry, not a label on the line: any label spot ran into a line
        level = float(initial_capital)
        fig.add_trace(go.Scatter(
            x=plot_times(equity.index[[0, -1]]), y=[level, level], mode="lines",
            name=f"Initial capital {level:,.0f}{unit}", line=dict(color=NEUTRAL_COLOR, dash="dash", width=1),
            hoverinfo="skip"), row=1, col=1)
    legend = _shows_legend(fig)  # (a single line needs none)
    notes = [downsampled_note(len(equity), len(eq))] if reduced else []
    fig.update_layout(template=TEMPLATE, title=_title("Equity and drawdown", notes), hovermode="x unified",
                      showlegend=legend, margin=dict(l=50, r=20, t=80, b=110 if legend else 60),
                      # under the dates: at the top right it ran into the range buttons on a 1024 px screen; at the
                      # figure's bottom edge, as the price chart's (a share of the plot's height put it over the
                      # second line of the time labels, the date, once zoomed to one trade)
                      legend=dict(orientation="h", yref="container", y=0, yanchor="bottom", x=0, xanchor="left"))
    _range_selector(fig)
    fig.update_yaxes(title_text="Equity" + (f" ({quote})" if quote else "") + (" (log)" if log_y else ""),
                     type="log" if log_y else "linear", row=1, col=1)
    # two decimals where they tell ticks apart, none where they do not ("0%, 0%, 0%, -1%" for a shallow drawdown)
    fig.update_yaxes(title_text="Drawdown", tickformat=".2~%", row=2, col=1)
    if not (drawdown.to_numpy() < 0).any():  # never below its peak: autoscale spread 0 over -100 % .. +100 %
        fig.update_yaxes(range=[-0.01, 0.0], row=2, col=1)
    return fig


# --- trade returns ---------------------------------------------------------------------------

def returns_histogram(trades: pd.DataFrame, nbins: int = 40) -> go.Figure:
    """Distribution of trade ``return_pct`` (percent), winners green and losers red, shared bins."""
    if trades is None or len(trades) == 0 or "return_pct" not in trades.columns:
        return empty_figure("No trades", title="Trade returns")
    ret = pd.to_numeric(trades["return_pct"], errors="coerce").to_numpy(dtype=float)
    pnl = pd.to_numeric(trades["pnl"], errors="coerce").to_numpy(dtype=float) if "pnl" in trades else ret
    ok = np.isfinite(ret)
    ret, win = ret[ok], (pnl > 0)[ok]
    if len(ret) == 0:
        return empty_figure("No finite trade returns", title="Trade returns")
    lo, hi = float(ret.min()), float(ret.max())
    size = (hi - lo) / nbins if hi > lo else 1.0
    xbins = dict(start=lo, end=hi + size, size=size)
    fig = _new_figure(title=dict(text=f"Trade returns ({len(ret):,} trades)", font=dict(size=14)),
                      barmode="overlay", bargap=0.02)
    for name, sel, color in (("Wins", win, LONG_COLOR), ("Losses", ~win, SHORT_COLOR)):
        fig.add_trace(go.Histogram(
            x=ret[sel], name=f"{name} ({int(sel.sum()):,})", xbins=xbins, autobinx=False,
            marker=dict(color=color, line=dict(width=0)), opacity=0.75,
            hovertemplate="%{x} %<br>%{y} trades<extra>" + name + "</extra>",
        ))
    fig.add_vline(x=0, line=dict(color=NEUTRAL_COLOR, width=1, dash="dot"))
    mean = float(ret.mean())
    fig.add_vline(x=mean, line=dict(color=LINE_COLOR, width=1, dash="dash"),
                  annotation_text=f"mean {mean:+.2f} %", annotation_position="top")
    fig.update_xaxes(title_text="Trade return (%)", ticksuffix=" %")
    fig.update_yaxes(title_text="Trades")
    return fig


# --- trades table --------------------------------------------------------------------------

# trades column -> display header (times are UTC, said once in the header), in the order shown: the
# outcome before the prices (with a strategy's stops and targets, PnL and Return % were past 1440 px)
TRADE_TABLE_COLUMNS = {
    "entry_time": "Entry (UTC)", "exit_time": "Exit (UTC)", "side": "Side", "pnl": "PnL", "return_pct": "Return %",
    "exit_reason": "Exit reason", "bars_held": "Bars held", "entry_price": "Entry price", "exit_price": "Exit price",
    "stop_at_entry": "Stop", "stop_at_exit": "Stop at exit", "target": "Target", "target_at_exit": "Target at exit",
    "qty": "Qty", "fees": "Fees", "funding": "Funding",
}
# headers of the price columns (quote currency), formatted alike (e.g. "%.4f" in st.dataframe)
TRADE_TABLE_PRICE_HEADERS = ("Entry price", "Exit price", "Stop", "Stop at exit", "Target", "Target at exit")
# level column -> the column it repeats unless the level moved during the trade
_LEVEL_AT_EXIT = {"stop_at_exit": "stop_at_entry", "target_at_exit": "target"}
_LEVEL_COLUMN_NAMES = ("stop_at_entry", "stop_at_exit", "target", "target_at_exit")


def _level_shown(trades: pd.DataFrame, column: str) -> bool:
    """Whether the trades table shows this level column: some trade has the level, and an
    "at exit" column differs from its "at entry" one in some trade."""
    values = pd.to_numeric(trades[column], errors="coerce").to_numpy(dtype=float)
    if np.isnan(values).all():
        return False
    same_as = _LEVEL_AT_EXIT.get(column)
    if same_as is None or same_as not in trades.columns:
        return True
    other = pd.to_numeric(trades[same_as], errors="coerce").to_numpy(dtype=float)
    return not np.array_equal(values, other, equal_nan=True)


def trades_table(trades: pd.DataFrame) -> pd.DataFrame:
    """The trades frame for reading: UTC times without offset (tz-naive), readable exit reasons
    ("stop loss"), display headers; values stay numeric so the table sorts by value. The row
    order (and positional index) is the trades frame's, so a selected row maps to
    ``trades.iloc[row]``. The CSV export keeps the raw frame. Stop and target columns are
    shown when the strategy sets them (not all NaN); their "at exit" columns only when the
    level moved in some trade (a trailing stop, a target that follows the mid band).
    """
    out = pd.DataFrame(index=pd.RangeIndex(len(trades), name="#"))
    for column, header in TRADE_TABLE_COLUMNS.items():
        if column not in trades.columns:
            continue
        values = trades[column].reset_index(drop=True)
        if column in _LEVEL_COLUMN_NAMES and len(values) and not _level_shown(trades, column):
            continue
        if column.endswith("_time"):
            times = pd.DatetimeIndex(pd.to_datetime(values))
            values = pd.Series((times.tz_convert("UTC") if times.tz is not None else times).tz_localize(None))
        elif column == "exit_reason":
            values = values.astype(str).str.replace("_", " ")
        out[header] = values.to_numpy()
    return out


# --- optimisation results --------------------------------------------------------------------

def _colorscale(metric: str) -> str:
    return "RdYlGn_r" if metric in _LOWER_IS_BETTER else "RdYlGn"


# metrics whose sign says gain or loss (profit_factor: above or below 1): their colour scale's middle
# (yellow) sits there, so a run where every combo loses is red, not green for the least bad
_COLOR_MIDS = {**dict.fromkeys(("total_return", "cagr", "sharpe", "sortino", "calmar", "expectancy", "sqn"), 0.0),
               "profit_factor": 1.0}


def color_mid(metric: str) -> float | None:
    """The value a red-to-green scale of ``metric`` centres on (None: the data's own middle).

    >>> color_mid("sharpe"), color_mid("profit_factor"), color_mid("n_trades")
    (0.0, 1.0, None)
    """
    return _COLOR_MIDS.get(metric)


_ONE_SIDE_SHADES = (0.66, 1.0)  # the part of RdYlGn's gain half a one-sided scale spans (a light to a dark green)


def metric_colors(metric: str, values: Any, axis: str = "z") -> dict[str, Any]:
    """A trace's colour arguments for ``metric`` over ``values`` (``axis``: "z" for a heatmap,
    "c" for a marker or line colour): red to green, yellow at :func:`color_mid` when the values
    lie on both sides of it. When they all lie on one side (every combo gains, or every one
    loses), the scale is that side's colours only, stretched over the values' own range: a
    symmetric scale squeezed them into a few pale shades.

    >>> metric_colors("sharpe", [-1.0, 2.0])
    {'colorscale': 'RdYlGn', 'zmid': 0.0}
    >>> one_sided = metric_colors("sharpe", [1.5, 1.8, 2.0])
    >>> one_sided["zmin"], one_sided["zmax"], len(one_sided["colorscale"])
    (1.5, 2.0, 5)
    """
    scale, mid = _colorscale(metric), color_mid(metric)
    shared = {"colorscale": scale, f"{axis}mid": mid} if mid is not None else {"colorscale": scale}
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if mid is None or finite.size == 0:
        return shared
    low, high = float(finite.min()), float(finite.max())
    if not (low > mid or high < mid) or low == high:
        return shared
    gain_side = low > mid
    a, b = _ONE_SIDE_SHADES if gain_side else (1.0 - _ONE_SIDE_SHADES[1], 1.0 - _ONE_SIDE_SHADES[0])
    stops = np.linspace(a, b, 5)
    colors = plotly_colors.sample_colorscale(scale, list(stops))
    return {"colorscale": [[k / 4, c] for k, c in enumerate(colors)], f"{axis}min": low, f"{axis}max": high}


def heatmap_pivot(results: pd.DataFrame, x: str, y: str, metric: str, agg: str = "max") -> pd.DataFrame:
    """The ``metric`` pivot (rows ``y``, columns ``x``) over ok rows, other params aggregated."""
    if x == y:
        raise ValueError(f"heatmap needs two different params for X and Y (both are {x!r})")
    if agg not in ("max", "mean"):
        raise ValueError(f"agg must be 'max' or 'mean', got {agg!r}")
    _require_columns(results, [x, y, metric], "heatmap")
    rows = _ok_rows(results, [metric])
    values = rows[[x, y]].copy()
    values[metric] = pd.to_numeric(rows[metric], errors="coerce").astype(float)
    return values.pivot_table(index=y, columns=x, values=metric, aggfunc=agg, observed=True)


def short_number(value: float, percent: bool = False, scale: float | None = None) -> str:
    """A cell label of at most about 5 characters: ``0.1234`` -> ``0.12``, ``12345`` -> ``12.3k``,
    percent ``0.1234`` -> ``12%``; NaN -> "". ``scale`` (a typical magnitude of the labels
    shown together, default this value's) sets the decimals and the suffix, so that the cells
    of one heatmap read alike: ``0.007`` is ``0.01`` beside ``0.35``, ``0.007`` alone.

    >>> short_number(0.007), short_number(0.007, scale=0.35), short_number(2_500.0, scale=12_345.0)
    ('0.007', '0.01', '2.5k')
    """
    if not np.isfinite(value):
        return ""
    ref = abs(value) if scale is None else abs(scale)
    if percent:
        text = f"{value * 100:.{0 if ref * 100 >= 10 else 1}f}%"
    else:
        size, suffix = next(((s, x) for s, x in ((1e9, "G"), (1e6, "M"), (1e3, "k")) if ref >= s), (1.0, ""))
        r = ref / size
        if suffix:
            decimals = 2 if r < 10 else 1 if r < 100 else 0
        else:
            decimals = 0 if r >= 100 else 2 if r >= 0.01 or r == 0 else min(8, -math.floor(math.log10(r)))
        text = f"{value / size:.{decimals}f}{suffix}"
    return text[1:] if text.startswith("-") and not any(ch in "123456789" for ch in text) else text  # no "-0.00"


HEATMAP_LABEL_WIDTH_PX = 900  # plot width assumed when deciding whether cell labels fit


def heatmap_labels(z: np.ndarray, metric: str, max_rows: int = 30) -> list[list[str]] | None:
    """Short cell labels of a heatmap, or None when the cells are too small for them (about
    7 px per character across :data:`HEATMAP_LABEL_WIDTH_PX`, at most ``max_rows`` rows)."""
    if z.size == 0 or z.shape[0] > max_rows:
        return None
    finite = np.abs(z[np.isfinite(z) & (z != 0)])
    # one format for every cell, from a typical one (the largest let one outlier round the rest
    # to "0" and "1"; an outlier gets a longer label, or none when the labels no longer fit)
    scale = float(np.median(finite)) if finite.size else 0.0
    labels = [[short_number(float(v), units.is_fraction(metric), scale) for v in row] for row in z]
    widest = max(len(t) for row in labels for t in row)
    if z.shape[1] * (7 * widest + 10) > HEATMAP_LABEL_WIDTH_PX:
        return None
    return labels


def heatmap_figure(results: pd.DataFrame, x: str, y: str, metric: str, agg: str = "max") -> go.Figure:
    """Heatmap of ``metric`` over params ``x`` and ``y``, the other params aggregated by max or mean.

    Only rows with status "ok" and a finite metric count. Raises ValueError when x == y,
    ``agg`` is unknown or a column is missing.
    """
    pivot = heatmap_pivot(results, x, y, metric, agg)
    label = metric_label(metric)
    if pivot.empty:
        return empty_figure(f"No ok combos with a finite {label}", title=f"{label} by {x} × {y}")
    xs = [_fmt_value(v) for v in pivot.columns]
    ys = [_fmt_value(v) for v in pivot.index]
    z = pivot.to_numpy(dtype=float)
    fmt = _metric_hover_format(metric)
    fig = _new_figure(title=dict(text=f"{label} by {x} × {y} ({agg} over other params)", font=dict(size=14)))
    labels = heatmap_labels(z, metric)
    fig.add_trace(go.Heatmap(
        z=z, x=xs, y=ys, **metric_colors(metric, z), hoverongaps=False,
        colorbar=dict(title=dict(text=f"{label}<br>({agg})", side="top"),
                      tickformat=".0%" if units.is_fraction(metric) else None),
        text=labels, texttemplate="%{text}" if labels is not None else None, textfont=dict(size=11),
        hovertemplate=f"{x} = %{{x}}<br>{y} = %{{y}}<br>{label} ({agg}) = %{{z:{fmt}}}<extra></extra>",
    ))
    fig.update_xaxes(title_text=x, type="category")
    fig.update_yaxes(title_text=y, type="category")
    return fig


def _encode_dimension(series: pd.Series, name: str) -> dict[str, Any]:
    """A Parcoords dimension; non-numeric (choice/bool) values become integer codes with tick labels."""
    if _is_categorical(series):
        labels = sorted(series.astype(object).unique(), key=lambda v: (str(type(v)), v))
        codes = {v: i for i, v in enumerate(labels)}
        return dict(label=name, values=series.astype(object).map(codes).to_numpy(dtype=float),
                    tickvals=list(range(len(labels))), ticktext=[_fmt_value(v) for v in labels],
                    range=[-0.25, max(len(labels) - 1, 0) + 0.25] if len(labels) == 1 else None)
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)
    dim = dict(label=name, values=values)
    if len(values) and np.nanmin(values) == np.nanmax(values):  # constant: give it a visible range
        v = float(np.nanmin(values))
        dim["range"] = [v - 1, v + 1] if v == 0 else [v - abs(v) * 0.1, v + abs(v) * 0.1]
    return dim


def parallel_coordinates_figure(
    results: pd.DataFrame, params: Sequence[str], metric: str, max_rows: int = 5000
) -> go.Figure:
    """Parallel coordinates of ``params`` plus ``metric`` (last axis), lines coloured by ``metric``.

    Only ok rows with a finite metric; above ``max_rows`` rows the best ``max_rows`` by
    ``metric`` are shown (the title says so). Choices/bools are encoded as integers with labels.
    """
    params = list(params)
    if not params:
        raise ValueError("parallel coordinates need at least one param")
    _require_columns(results, [*params, metric], "parallel coordinates")
    rows = _ok_rows(results, [metric])
    label = metric_label(metric)
    if rows.empty:
        return empty_figure(f"No ok combos with a finite {label}", title="Parallel coordinates")
    total = len(rows)
    ascending = metric in _LOWER_IS_BETTER
    if total > max_rows:
        rows = rows.sort_values(metric, ascending=ascending, kind="stable").head(max_rows)
    dims = []
    for p in params:
        dim = _encode_dimension(rows[p], p)
        dims.append({k: v for k, v in dim.items() if v is not None})
    mvals = pd.to_numeric(rows[metric]).to_numpy(dtype=float)
    # (in the metric's format: its axis's range ends read 0.3985 and -0.41825 unformatted)
    tickformat = ".0%" if units.is_fraction(metric) else units.d3_format(metric)
    dims.append(dict(label=label, values=mvals, tickformat=tickformat))
    title = f"Parallel coordinates coloured by {label}"
    if total > max_rows:
        title += f" (top {max_rows:,} of {total:,} by {label})"
    fig = _new_figure(title=dict(text=title, font=dict(size=14), y=0.98, yref="container", yanchor="top"),
                      margin=dict(l=70, r=140, t=130, b=30))
    fig.add_trace(go.Parcoords(
        labelangle=-20, labelside="top", labelfont=dict(size=12), rangefont=dict(size=10),
        line=dict(color=mvals, **metric_colors(metric, mvals, axis="c"), showscale=True,
                  # (clear of the last axis's range labels, which it touched at x=1.04)
                  colorbar=dict(title=dict(text=label), x=1.1)),
        dimensions=dims,
    ))
    return fig


def _hover_params(rows: pd.DataFrame, params: Sequence[str]) -> np.ndarray:
    """One '<br>'-joined 'param = value' text per row."""
    if not params:
        return np.full(len(rows), "", dtype=object)
    parts = [rows[p].map(_fmt_value).radd(f"{p} = ") for p in params]
    text = parts[0]
    for part in parts[1:]:
        text = text + "<br>" + part
    if "combo_id" in rows.columns:
        text = "combo " + rows["combo_id"].astype(str) + "<br>" + text
    return text.to_numpy(dtype=object)


def pareto_figure(
    results: pd.DataFrame,
    x: str = "max_drawdown",
    y: str = "sharpe",
    front: pd.DataFrame | None = None,
    *,
    params: Sequence[str] | None = None,
) -> go.Figure:
    """Scatter of all ok combos on (x, y) with the Pareto front (both maximised) highlighted.

    ``front``: the front rows (e.g. ``SweepRun.pareto(x, y)``); computed with
    :func:`threadx.optimize.pareto.pareto_mask` when None. Hover lists the param values
    (``params``, inferred from the columns when None).
    """
    if x == y:
        raise ValueError(f"the Pareto plot needs two different metrics (both are {x!r})")
    _require_columns(results, [x, y], "pareto")
    rows = _ok_rows(results, [x, y])
    xl, yl = metric_label(x), metric_label(y)
    if rows.empty:
        return empty_figure("No ok combos to plot", title=f"Pareto front: {yl} vs {xl}")
    if params is None:  # inferred: the params that vary (all of them when none does)
        inferred = [p for p in _infer_params(results) if p not in (x, y)]
        params = [p for p in inferred if rows[p].nunique(dropna=False) > 1] or inferred
    params = [p for p in params if p in rows.columns and p not in (x, y)]
    if front is None:
        from threadx.optimize.pareto import pareto_mask

        mask = pareto_mask(rows[x].to_numpy(dtype=float), rows[y].to_numpy(dtype=float))
        front = rows[mask]
    else:
        _require_columns(front, [x, y], "pareto front")
        front = _ok_rows(front, [x, y])
    front = front.sort_values(x, kind="stable")
    xf, yf = _metric_hover_format(x), _metric_hover_format(y)
    hover = f"{xl} = %{{x:{xf}}}<br>{yl} = %{{y:{yf}}}<br>%{{text}}<extra></extra>"
    fig = _new_figure(title=dict(text=f"Pareto front: {yl} vs {xl} ({len(front):,} of {len(rows):,} combos)",
                                 font=dict(size=14)))
    fig.add_trace(go.Scattergl(
        x=rows[x].to_numpy(dtype=float), y=rows[y].to_numpy(dtype=float), mode="markers", name="Combos",
        marker=dict(color=NEUTRAL_COLOR, size=5, opacity=0.5), text=_hover_params(rows, params),
        hovertemplate=hover,
    ))
    fig.add_trace(go.Scatter(
        x=front[x].to_numpy(dtype=float), y=front[y].to_numpy(dtype=float), mode="lines+markers",
        name="Pareto front", line=dict(color=FRONT_COLOR, width=1.5, shape="hv"),
        marker=dict(color=FRONT_COLOR, size=9, line=dict(color="#424242", width=1)),
        text=_hover_params(front, params), hovertemplate=hover,
    ))
    fig.update_xaxes(title_text=xl, tickformat=".0%" if units.is_fraction(x) else None)
    fig.update_yaxes(title_text=yl, tickformat=".0%" if units.is_fraction(y) else None)
    fig.update_layout(legend=dict(orientation="h", y=-0.18, x=0, yanchor="top"), margin=dict(l=60, r=20, t=50, b=90))
    return fig


# --- metric cards --------------------------------------------------------------------------------

_CARDS: tuple[tuple[str, str, str], ...] = (
    # key, label, help (the value's unit comes from threadx.units)
    ("total_return", "Total return", "Final equity / initial capital - 1, after fees and funding."),
    ("cagr", "CAGR", "Compound annual growth rate over the time the data covers, gaps included (365-day years)."),
    ("sharpe", "Sharpe", "Mean / std of per-bar returns, annualised (risk-free 0, ddof 1)."),
    ("sortino", "Sortino", "Like Sharpe with the downside deviation sqrt(mean(min(r, 0)²))."),
    ("max_drawdown", "Max drawdown", "Deepest fall of equity from its running peak."),
    ("calmar", "Calmar", "CAGR / |max drawdown|."),
    ("n_trades", "Trades", "Closed trades (long + short)."),
    ("win_rate", "Win rate", "Share of trades with a positive PnL."),
    ("profit_factor", "Profit factor", "Gross profit / gross loss (∞ with no losing trade)."),
    ("exposure", "Exposure", "Share of bars with an open position."),
    ("total_fees", "Fees", "Total fees paid on every fill."),
    ("final_equity", "Final equity", "Equity at the last bar."),
)


def metric_cards(metrics: Mapping[str, Any], quote: str | None = None) -> list[tuple[str, str, str | None]]:
    """(label, formatted value, help text) for the headline metrics of a backtest, in display order.

    Percentages for returns, drawdown, win rate and exposure; NaN or missing -> "–",
    infinities -> "∞" / "-∞"; money in the ``quote`` currency, named in its label ("Fees (USDT)").
    """
    cards = []
    for key, label, help_text in _CARDS:
        value = metrics.get(key) if metrics is not None else None
        text = units.format_metric(key, value)
        unit = units.unit_of(key)
        if quote and unit is not None and unit.kind == "money":
            label = f"{label} ({quote})"
        if key == "total_fees" and metrics is not None and metrics.get("total_funding"):
            funding = units.format_metric("total_funding", metrics.get("total_funding"))
            help_text = f"{help_text} Funding paid: {funding}."
        cards.append((label, text, help_text))
    if metrics is not None and metrics.get("n_cycles") not in (None, metrics.get("n_trades")):
        # several legs per position: trades count legs, cycles count positions (what grid users read)
        cards += [("Cycles", units.format_metric("n_cycles", metrics.get("n_cycles")),
                   "Positions opened and closed whole; each holds one or more legs (trades)."),
                  ("Cycle win rate", units.format_metric("cycle_win_rate", metrics.get("cycle_win_rate")),
                   "Share of cycles whose legs' PnL adds up to a gain.")]
    return cards


# --- system monitor ------------------------------------------------------------------------------

def _load_color(pct: float) -> str:
    if not np.isfinite(pct) or pct < 50:
        return LONG_COLOR
    return "#ffa726" if pct < 85 else SHORT_COLOR


def cpu_figure(per_core: list[float]) -> go.Figure:
    """Per-core CPU load as bars on a fixed 0-100 % axis, coloured by load."""
    loads = np.asarray(per_core if per_core is not None else [], dtype=float)
    if loads.size == 0:
        return empty_figure("No CPU readings", title="CPU per core")
    fig = _new_figure(title=dict(text=f"CPU per core (mean {np.nanmean(loads):.0f} %, {loads.size} cores)",
                                 font=dict(size=14)), bargap=0.15, showlegend=False)
    fig.add_trace(go.Bar(
        x=[str(i) for i in range(loads.size)], y=loads,
        marker=dict(color=[_load_color(v) for v in loads]),
        hovertemplate="core %{x}: %{y:.1f} %<extra></extra>",
    ))
    fig.update_yaxes(range=[0, 100], title_text="Load (%)", ticksuffix=" %")
    fig.update_xaxes(title_text="Core", type="category")
    return fig


_HISTORY_LABELS = {"cpu_total": "CPU", "ram_percent": "RAM", "swap_percent": "Swap"}


def history_label(column: str) -> str:
    """A monitor history column as a legend label: ``ram_percent`` -> "RAM", ``gpu0_util`` -> "GPU 0 util"."""
    if column in _HISTORY_LABELS:
        return _HISTORY_LABELS[column]
    words = column.replace("_", " ").split()
    if words and words[0].startswith("gpu") and words[0][3:].isdigit():
        words[0] = f"GPU {words[0][3:]}"
    units_ = {"c": "°C", "w": "W", "pct": "%"}
    return " ".join(units_.get(w, w) for w in words)


HISTORY_GAP_S = 10.0  # readings further apart than this (no monitor page open between them) are not joined


def _gaps_broken(history: pd.DataFrame) -> pd.DataFrame:
    """``history`` with an empty row after each reading followed by none for over
    :data:`HISTORY_GAP_S` s: the line breaks there instead of drawing a straight line through
    a span nothing measured (the readings are taken only while a monitor page is open).

    >>> t = pd.to_datetime(["2026-01-01 00:00:00", "2026-01-01 00:00:02", "2026-01-01 00:01:00"])
    >>> _gaps_broken(pd.DataFrame({"cpu_total": [10.0, 20.0, 80.0]}, index=t))["cpu_total"].tolist()
    [10.0, 20.0, nan, 80.0]
    """
    if len(history) < 2:
        return history
    gaps = np.flatnonzero((history.index[1:] - history.index[:-1]).total_seconds() > HISTORY_GAP_S)
    if not len(gaps):
        return history
    blanks = pd.DataFrame(np.nan, index=history.index[gaps] + pd.Timedelta(milliseconds=1), columns=history.columns)
    return pd.concat([history, blanks]).sort_index()


def history_figure(history: pd.DataFrame, columns: list[str], title: str, unit: str) -> go.Figure:
    """Lines of ``columns`` of a timestamp-indexed ``history`` (absent columns are skipped).

    ``unit`` goes to the y axis and hovers; a "%" unit fixes the axis to 0-100.
    """
    present = [c for c in columns if history is not None and c in history.columns]
    names = {c: history_label(c) for c in present}
    if history is None or history.empty or not present:
        return empty_figure("No history yet", title=title)
    suffix = f" {unit}" if unit else ""
    history = _gaps_broken(history[present])
    # the title at the top, the legend on a line of its own under it at the left (at the right it
    # sat under the toolbar's band; beside the title it ran into it)
    fig = _new_figure(title=_title(title, []), hovermode="x unified", margin=dict(l=50, r=20, t=64, b=40),
                      legend=dict(orientation="h", y=1.02, x=0, xanchor="left", yanchor="bottom"))
    for i, col in enumerate(present):
        values = pd.to_numeric(history[col], errors="coerce")
        fig.add_trace(_trace_cls(len(values))(
            x=history.index, y=values.to_numpy(dtype=float), mode="lines", name=names[col],
            line=dict(color=OVERLAY_COLORS[(i + 2) % len(OVERLAY_COLORS)] if i else LINE_COLOR, width=1.5),
            hovertemplate=f"%{{y:,.1f}}{suffix}<extra>{names[col]}</extra>",
        ))
    fig.update_yaxes(title_text=unit or None, rangemode="tozero")
    if unit.strip() == "%":
        fig.update_yaxes(range=[0, 100])
    fig.update_xaxes(title_text=None)
    return fig
