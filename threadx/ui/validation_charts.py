"""Plotly figure builders of the Validation page (SPEC §7, §9).

Pure functions: results in, ``plotly.graph_objects.Figure`` (or plain rows) out, no
Streamlit. They share the look of :mod:`threadx.ui.charts` (template, colours, the empty
figure, downsampling) and its conventions: green = good / long, red = bad / short,
hover texts carry their units, big inputs are reduced for display and the title says so.

- walk-forward: :func:`window_timeline_figure` (planned IS/OOS windows over time),
  :func:`is_oos_bars_figure` (IS vs OOS objective per window, OOS coloured by regime),
  :func:`stitched_equity_figure` (stitched OOS equity vs the full-period optimum),
  :func:`drift_figure` (winner value per window, one panel per param),
  :func:`is_oos_scatter_figure` (IS vs OOS of every (window, combo) pair);
- robustness: :func:`bootstrap_figure` (CIs and the null Sharpe distribution),
  :func:`pbo_logit_figure`, :func:`pbo_scatter_figure`, :func:`stability_heatmap_figure`;
- the grade card's rows: :func:`grade_rows`, :func:`bootstrap_table`.
"""
from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from threadx.ui.charts import (
    DISPLAY_MAX_POINTS,
    FRONT_COLOR,
    LINE_COLOR,
    LONG_COLOR,
    NEUTRAL_COLOR,
    OVERLAY_COLORS,
    SHORT_COLOR,
    TEMPLATE,
    TOOLBAR_BAND_PX,
    _downsample_positions,
    _fmt_value,
    _new_figure,
    _trace_cls,
    empty_figure,
    metric_colors,
    metric_label,
)
from threadx.units import counted, d3_format, format_metric, is_fraction
from threadx.validation.grading import _pts  # points as the grade's sentences write them (4.8, 11.25, 20)

IS_COLOR = LINE_COLOR     # in-sample: blue
OOS_COLOR = FRONT_COLOR   # out-of-sample: orange
PURGE_COLOR = "rgba(97,97,97,0.85)"      # purge gap between an IS window and its OOS window: dark grey
EMBARGO_COLOR = "rgba(255,255,255,0.9)"  # embargoed bars cut out of an IS window: a white hole
REGIME_COLORS = {"crash": "#8e24aa", "bull": LONG_COLOR, "bear": SHORT_COLOR, "range": NEUTRAL_COLOR}
GRADE_COLORS = {"A": "#2e7d32", "B": "#7cb342", "C": "#f9a825", "D": "#fb8c00", "F": "#d32f2f"}
COMPONENT_LABELS = {
    "oos_is_ratio": "OOS / IS ratio",
    "p_value": "Bootstrap p-value",
    "consistency": "Consistency",
    "dsr": "Deflated Sharpe",
    "stability": "Parameter stability",
    "pbo": "PBO",
}
STAT_LABELS = {"sharpe": "Sharpe (annualised)", "total_return": "Total return", "max_drawdown": "Max drawdown"}
SCATTER_MAX_POINTS = 20_000


# Title above the plot, legend at the figure's foot: a legend above the plot wrapped upwards into
# the title on a narrow chart (five rows at 280 px, two to a row at 1024 px); at the foot its rows
# push the plot up instead (Plotly grows the margin to fit them).
_FOOT_LEGEND: dict[str, Any] = dict(legend=dict(orientation="h", x=0, xanchor="left", y=0, yanchor="bottom",
                                               yref="container"),
                                   margin=dict(l=50, r=20, t=56, b=40))


_DETAIL = "<span style='font-size:11px;font-weight:normal'>{}</span>"
_DETAIL_PX = 18  # the room a title's second line takes above the plot
_TITLE_CHARS = 48  # about what a chart given half of a 1280 px page shows of a 14 px title
# what a chart given half the page shows at 1024 px with the sidebar open (~280 px: "IS winner across CSCV
# splits: IS vs OOS Shar" was cut there): the titles of those charts are wrapped to it
HALF_PAGE_CHARS = 42


def _title_lines(text: str, wrap: int | None = None) -> list[str]:
    """A title's lines: a long one's figures in parentheses go on a smaller line of their own
    (on one line they ran past a chart given half the page and were cut: "mean IS -3.95, mean O…"),
    and with ``wrap``, a head still longer is wrapped to it, at its colon where that fits.

    >>> _title_lines("Sharpe in and out of sample per window (mean IS 1.20, mean OOS 0.40)")
    ['Sharpe in and out of sample per window', "<span style='font-size:11px;font-weight:normal'>(mean IS 1.20, mean OOS 0.40)</span>"]
    >>> _title_lines("PBO = 0.31 over 70 CSCV splits (S = 8)")
    ['PBO = 0.31 over 70 CSCV splits (S = 8)']
    >>> _title_lines("IS winner across CSCV splits: IS vs OOS Sharpe", wrap=42)
    ['IS winner across CSCV splits:', 'IS vs OOS Sharpe']
    """
    lines = text.split("<br>")
    head, sep, rest = lines[0].rpartition(" (")  # (the last: a label may hold one, "Sharpe (annualised)")
    if not sep or len(lines[0]) <= (wrap or _TITLE_CHARS):
        head, rest = lines[0], ""
    details = ([f"({rest}"] if rest else []) + lines[1:]
    return (_wrap_head(head, wrap) if wrap else [head]) + [_DETAIL.format(line) for line in details]


def _wrap_head(head: str, chars: int) -> list[str]:
    """``head`` in lines of at most ``chars`` (a longer word stays whole): split after its first
    colon where both parts fit, else between words."""
    if len(head) <= chars:
        return [head]
    first, colon, rest = head.partition(": ")
    if colon and len(first) < chars and len(rest) <= chars:
        return [first + ":", rest]
    return textwrap.wrap(head, chars, break_long_words=False, break_on_hyphens=False)


def _half_page_lines(text: str) -> str:
    """``text`` (a legend entry of a chart drawn two to a row) in lines of ``HALF_PAGE_CHARS``."""
    return "<br>".join(textwrap.wrap(text, HALF_PAGE_CHARS, break_long_words=False, break_on_hyphens=False))


def set_title(fig: go.Figure, text: str, half_page: bool = False) -> None:
    """``text`` as ``fig``'s title (:func:`_title_lines`; ``half_page``: a chart drawn two to a row,
    its title wrapped to ``HALF_PAGE_CHARS``), below the band of Plotly's toolbar (at 1280 px the
    toolbar covered the end of most titles of the charts drawn two to a row), the top margin grown
    by that band and by the room each further line takes."""
    lines = _title_lines(text, HALF_PAGE_CHARS if half_page else None)
    # (a fixed gap above it, not a share of the height: y=0.98 clipped a two-line title's top)
    fig.update_layout(title=dict(text="<br>".join(lines), font=dict(size=14), y=1.0, yref="container", yanchor="top",
                                 pad=dict(t=TOOLBAR_BAND_PX), x=0.01, xanchor="left"))
    top = fig.layout.margin.t if fig.layout.margin.t is not None else 50
    # (the figures' own margins hold a title 12 px from the top, as threadx.ui.charts._title puts it)
    fig.update_layout(margin=dict(t=top + TOOLBAR_BAND_PX - 12 + _DETAIL_PX * (len(lines) - 1)))


def _tick_format(metric: str) -> str | None:
    """Axis ticks in % for a metric stored as a fraction (threadx.units), Plotly's default otherwise."""
    return ".0%" if is_fraction(metric) else None


def _window_label(w: Any) -> str:
    return f"W{int(w)}"


# --- walk-forward setup -------------------------------------------------------------------

def _edge_time(index: pd.DatetimeIndex, pos: int) -> pd.Timestamp:
    """Time of bar position ``pos`` as a segment edge (one bar past the last bar at the end)."""
    if pos < len(index):
        return index[pos]
    bar = index[-1] - index[-2] if len(index) > 1 else pd.Timedelta(0)
    return index[-1] + bar


def window_timeline_figure(windows: Sequence[Any], index: pd.DatetimeIndex | None = None,
                           *, title: str | None = None) -> go.Figure:
    """The planned walk-forward windows as horizontal segments: one row per window, its
    in-sample span (blue) then its out-of-sample span (orange), over the data's time axis
    (``index``, the bars' timestamps; bar positions when None). A grey top row spans the data.
    A purge gap (IS end to OOS start) is drawn dark grey, embargoed bars cut out of an IS
    window as white holes in it.

    ``windows``: :class:`threadx.validation.walkforward.Window` items (``is_start``,
    ``is_end``, ``oos_start``, ``oos_end`` bar positions, ends exclusive; ``is_gaps``).
    """
    if not len(windows):
        return empty_figure("No walk-forward window fits in the data", title=title or "Walk-forward windows")
    use_time = isinstance(index, pd.DatetimeIndex) and len(index) > 0
    labels = [_window_label(w.index) for w in windows]

    def span(lo: int, hi: int) -> tuple[Any, Any, str]:
        if use_time:
            start, end = _edge_time(index, lo), _edge_time(index, hi)
            return start, (end - start) / pd.Timedelta(milliseconds=1), (
                f"{start:%Y-%m-%d %H:%M} → {index[hi - 1]:%Y-%m-%d %H:%M}")
        return lo, hi - lo, f"bars {lo:,} → {hi - 1:,}"

    fig = _new_figure(barmode="overlay", bargap=0.25,
                      **_FOOT_LEGEND)
    n_total = len(index) if use_time else max(w.oos_end for w in windows)
    base, width, text = span(0, n_total)
    fig.add_trace(go.Bar(y=["data"], x=[width], base=[base], orientation="h", name="Data",
                         marker=dict(color="rgba(158,158,158,0.35)"), showlegend=False,
                         hovertemplate=f"data: {text}<br>{n_total:,} bars<extra></extra>"))
    layers = (("In-sample", IS_COLOR, lambda w: [(w.is_start, w.is_end)]),
              ("Out-of-sample", OOS_COLOR, lambda w: [(w.oos_start, w.oos_end)]),
              ("Purge", PURGE_COLOR, lambda w: [(w.is_end, w.oos_start)] if w.oos_start > w.is_end else []),
              ("Embargo", EMBARGO_COLOR, lambda w: list(getattr(w, "is_gaps", ()))))
    for name, color, spans in layers:
        ys, bases, widths, texts = [], [], [], []
        for label, w in zip(labels, windows):
            for lo, hi in spans(w):
                b, x, t = span(int(lo), int(hi))
                ys.append(label)
                bases.append(b)
                widths.append(x)
                texts.append(f"{t}<br>{int(hi) - int(lo):,} bars")
        if not ys:
            continue
        fig.add_trace(go.Bar(
            y=ys, x=widths, base=bases, orientation="h", name=name,
            marker=dict(color=color, line=dict(color=IS_COLOR, width=1) if name == "Embargo" else None),
            text=texts, textposition="none",
            hovertemplate=f"%{{y}} {name.lower()}<br>%{{text}}<extra></extra>",
        ))
    first = windows[0]
    is_len, oos_len = first.is_end - first.is_start, first.oos_end - first.oos_start
    anchored = len(windows) > 1 and windows[1].is_start == first.is_start
    purge = first.oos_start - first.is_end
    embargoed = sum(hi - lo for w in windows for lo, hi in getattr(w, "is_gaps", ()))
    extra = (f", purge {purge:,}" if purge else "") + (", embargoed bars cut out of IS" if embargoed else "")
    text = title or (f"{counted(len(windows), 'walk-forward window')}: "
                     f"{'anchored' if anchored else 'rolling'} IS {is_len:,} bars, OOS {oos_len:,} bars{extra}")
    height = int(min(max(140 + 18 * (len(windows) + 1), 260), 720))
    fig.update_layout(height=height)
    set_title(fig, text)
    fig.update_yaxes(autorange="reversed", type="category", showticklabels=len(windows) <= 40)
    if use_time:
        fig.update_xaxes(type="date")
    else:
        fig.update_xaxes(title_text="Bar")
    return fig


# --- walk-forward results ------------------------------------------------------------------

def is_oos_bars_figure(table: pd.DataFrame, metric: str) -> go.Figure:
    """Grouped bars of the window winners' ``metric`` in sample (blue) and out of sample
    (coloured by the OOS window's market regime), one group per window.

    ``table``: :attr:`WalkForwardResult.table` (``window``, ``is_<metric>``,
    ``oos_<metric>``, ``regime``, ``oos_start``, ``oos_end``). Windows without a winner
    (no combo qualified) have no bars.
    """
    label = metric_label(metric)
    is_col, oos_col = f"is_{metric}", f"oos_{metric}"
    if table is None or table.empty or is_col not in table.columns or oos_col not in table.columns:
        return empty_figure(f"No window winner with an in- and out-of-sample {label}",
                            title=f"{label} in and out of sample per window")
    x = [_window_label(w) for w in table["window"]]
    is_v = pd.to_numeric(table[is_col], errors="coerce").to_numpy(dtype=float)
    oos_v = pd.to_numeric(table[oos_col], errors="coerce").to_numpy(dtype=float)
    regimes = table["regime"].astype(str).to_numpy() if "regime" in table.columns else np.full(len(table), "range")
    if {"oos_start", "oos_end"} <= set(table.columns):
        spans = [f"{pd.Timestamp(a):%Y-%m-%d} → {pd.Timestamp(b):%Y-%m-%d}"
                 for a, b in zip(table["oos_start"], table["oos_end"])]
    else:
        spans = [""] * len(table)
    fmt = d3_format(metric)
    fig = _new_figure(barmode="group", bargap=0.25, bargroupgap=0.05,
                      **_FOOT_LEGEND)
    fig.add_trace(go.Bar(x=x, y=is_v, name="In-sample", marker=dict(color=IS_COLOR), offsetgroup="is",
                         hovertemplate=f"%{{x}} in-sample {label}: %{{y:{fmt}}}<extra></extra>"))
    for regime in dict.fromkeys(regimes):
        sel = regimes == regime
        fig.add_trace(go.Bar(
            x=np.asarray(x)[sel], y=oos_v[sel], name=f"OOS · {regime}", offsetgroup="oos",
            marker=dict(color=REGIME_COLORS.get(regime, OOS_COLOR)),
            text=np.asarray(spans)[sel], textposition="none",
            hovertemplate=(f"%{{x}} out-of-sample {label}: %{{y:{fmt}}}<br>%{{text}}<br>regime: {regime}"
                           "<extra></extra>"),
        ))
    fig.add_hline(y=0, line=dict(color=NEUTRAL_COLOR, width=1))
    chosen = np.isfinite(is_v) & np.isfinite(oos_v)
    text = f"{label} in and out of sample per window"
    if chosen.any():
        text += (f" (mean IS {format_metric(metric, float(np.mean(is_v[chosen])))}, "
                 f"mean OOS {format_metric(metric, float(np.mean(oos_v[chosen])))})")
    set_title(fig, text, half_page=True)
    fig.update_xaxes(type="category", title_text=None)
    fig.update_yaxes(title_text=label, tickformat=_tick_format(metric))
    return fig


def _total_return(equity: pd.Series, capital: float | None) -> float:
    if not len(equity):
        return float("nan")
    start = float(capital) if capital else float(equity.iloc[0])
    return float(equity.iloc[-1]) / start - 1.0 if start > 0 else float("nan")


def stitched_equity_figure(
    oos_equity: pd.Series,
    benchmark: pd.Series | None = None,
    *,
    initial_capital: float | None = None,
    boundaries: Sequence[Any] | None = None,
    benchmark_label: str | None = None,
    max_points: int = DISPLAY_MAX_POINTS,
) -> go.Figure:
    """The stitched out-of-sample equity (each window traded by its IS winner) against
    ``benchmark``, the full-period optimum (chosen with hindsight) traded over the same span.

    ``boundaries``: OOS window start times, drawn as dotted lines (up to 60 of them).
    Lines above ``max_points`` are downsampled keeping each bin's min and max.
    """
    if oos_equity is None or len(oos_equity) == 0:
        return empty_figure("No out-of-sample equity", title="Stitched out-of-sample equity")
    fig = _new_figure(hovermode="x unified",
                      **_FOOT_LEGEND)
    reduced = False
    ret_oos = _total_return(oos_equity, initial_capital)
    series = [("Stitched OOS (window winners)", oos_equity, OOS_COLOR, ret_oos)]
    ret_bench = float("nan")
    if benchmark is not None and len(benchmark):
        ret_bench = _total_return(benchmark, initial_capital)
        # (its return here is over the OOS span: 41.24 % read as the combo's +73.72 % on the whole period;
        # on a line of its own, as the params make the label longer than a chart given half the page)
        series.append((_half_page_lines(benchmark_label or "Full-period optimum") + ",<br>over the OOS span",
                       benchmark, LINE_COLOR, ret_bench))
    for name, values, color, ret in series:
        values = values.astype(float)
        pos = _downsample_positions(values.to_numpy(), max_points, "minmax")
        reduced |= len(pos) < len(values)
        shown = values.iloc[pos]
        fig.add_trace(_trace_cls(len(shown))(
            x=shown.index, y=shown.to_numpy(), mode="lines", name=f"{name} ({format_metric('total_return', ret)})",
            line=dict(color=color, width=1.8 if color == OOS_COLOR else 1.4,
                      dash=None if color == OOS_COLOR else "dash"),
            hovertemplate="%{y:,.2f}<extra>" + name + "</extra>",
        ))
    if initial_capital is not None:
        fig.add_hline(y=float(initial_capital), line=dict(color=NEUTRAL_COLOR, dash="dot", width=1))
    for t in list(boundaries or [])[1:] if boundaries is not None and len(boundaries) <= 60 else []:
        fig.add_vline(x=pd.Timestamp(t), line=dict(color="rgba(158,158,158,0.45)", width=1, dash="dot"))
    text = "Stitched OOS equity" + (" vs full-period optimum" if len(series) > 1 else "")
    if reduced:  # short: the chart often gets half the page
        text += f" ({len(oos_equity):,} bars, downsampled)"
    set_title(fig, text, half_page=True)
    fig.update_yaxes(title_text="Equity")
    return fig


def drift_figure(table: pd.DataFrame, drift: pd.DataFrame,
                 ranges: Mapping[str, Sequence[Any]] | None = None) -> go.Figure:
    """The winning value of each varying param per window, one small panel per param.

    ``drift``: :attr:`WalkForwardResult.drift` (``param``, ``distinct``,
    ``relative_spread``: std of the winners / the searched range). ``ranges``: the
    searched values per param; numeric ones are drawn as a shaded band (min..max) so a
    winner stuck on an edge shows. Choice / bool params use a categorical axis.
    """
    params = [p for p in (drift["param"] if drift is not None and "param" in drift else []) if p in table.columns]
    if not params:
        return empty_figure("No parameter varies across the search space", title="Parameter drift")
    chosen = table.dropna(subset=["combo_id"]) if "combo_id" in table.columns else table
    if chosen.empty:
        return empty_figure("No window has a winner", title="Parameter drift")
    info = drift.set_index("param")
    titles = []
    for p in params:
        spread = info.loc[p, "relative_spread"] if "relative_spread" in info.columns else float("nan")
        distinct = info.loc[p, "distinct"] if "distinct" in info.columns else chosen[p].nunique()
        extra = f", spread {float(spread):.0%}" if pd.notna(spread) else ""  # (short: the chart gets half the page)
        titles.append(f"{p}: {counted(int(distinct), 'value')}{extra}")
    fig = make_subplots(rows=len(params), cols=1, shared_xaxes=True, vertical_spacing=min(0.12, 0.35 / len(params)),
                        subplot_titles=titles)
    x = [_window_label(w) for w in chosen["window"]]
    for row, p in enumerate(params, start=1):
        values = chosen[p]
        color = OVERLAY_COLORS[(row - 1) % len(OVERLAY_COLORS)]
        categorical = not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)
        y = values.map(_fmt_value).to_numpy() if categorical else pd.to_numeric(values).to_numpy(dtype=float)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=p, showlegend=False,
                                 line=dict(color=color, width=1.5, shape="hv"), marker=dict(size=7, color=color),
                                 hovertemplate=f"%{{x}}: {p} = %{{y}}<extra></extra>"), row=row, col=1)
        searched = list((ranges or {}).get(p, []))
        if categorical:
            order = [_fmt_value(v) for v in searched] or sorted(set(y))
            fig.update_yaxes(type="category", categoryorder="array", categoryarray=order, row=row, col=1)
        elif searched:
            lo, hi = float(min(searched)), float(max(searched))
            fig.add_hrect(y0=lo, y1=hi, fillcolor="rgba(66,165,245,0.08)", line_width=0, row=row, col=1)
            pad = (hi - lo) * 0.06 or 1.0
            fig.update_yaxes(range=[lo - pad, hi + pad], row=row, col=1)
        fig.update_yaxes(title_text=None, row=row, col=1)
    for annotation in fig.layout.annotations:  # subplot titles: small, left-aligned
        annotation.update(font=dict(size=12), x=0, xanchor="left")
    fig.update_layout(template=TEMPLATE, height=int(min(140 + 170 * len(params), 1000)),
                      margin=dict(l=50, r=20, t=70, b=40))
    set_title(fig, "Parameter drift: the winner's value per window (shaded: searched range; spread: winners' "
                   "std / range)", half_page=True)
    fig.update_xaxes(type="category")
    return fig


def is_oos_scatter_figure(points: pd.DataFrame, metric: str, *, max_points: int = SCATTER_MAX_POINTS,
                          seed: int = 0) -> go.Figure:
    """IS vs OOS ``metric`` of every (window, combo) pair, the window winners highlighted.

    ``points``: :meth:`WalkForwardResult.is_oos_points` (``window``, ``combo_id``, ``is``,
    ``oos``, ``selected``). Above ``max_points`` pairs a seeded random sample of the
    others is drawn (every winner is kept) and the title says so. The title gives the
    rank correlation of IS and OOS over all finite pairs: near 0, IS ranking says
    nothing about OOS.
    """
    label = metric_label(metric)
    title = f"IS vs OOS {label}, every combo in every window"
    if points is None or points.empty:
        return empty_figure("No (window, combo) pair to plot", title=title)
    finite = points[np.isfinite(points["is"].to_numpy(dtype=float)) & np.isfinite(points["oos"].to_numpy(dtype=float))]
    if finite.empty:
        return empty_figure(f"No pair with a finite {label} in and out of sample", title=title)
    selected = finite["selected"].to_numpy(dtype=bool)
    others, winners = finite[~selected], finite[selected]
    total = len(finite)
    if len(others) + len(winners) > max_points:
        keep = max(max_points - len(winners), 0)
        others = others.sample(n=min(keep, len(others)), random_state=seed) if keep else others.iloc[:0]
    fmt = d3_format(metric)
    hover = (f"IS {label}: %{{x:{fmt}}}<br>OOS {label}: %{{y:{fmt}}}<br>window %{{customdata[0]}}, "
             "combo %{customdata[1]}<extra></extra>")
    fig = _new_figure(**_FOOT_LEGEND)
    fig.add_trace(go.Scattergl(
        x=others["is"].to_numpy(dtype=float), y=others["oos"].to_numpy(dtype=float), mode="markers",
        name=f"Other combos ({len(others):,})", marker=dict(color=NEUTRAL_COLOR, size=4, opacity=0.35),
        customdata=others[["window", "combo_id"]].to_numpy(), hovertemplate=hover,
    ))
    fig.add_trace(go.Scattergl(
        x=winners["is"].to_numpy(dtype=float), y=winners["oos"].to_numpy(dtype=float), mode="markers",
        name=f"Window winners ({len(winners):,})",
        marker=dict(color=OOS_COLOR, size=10, line=dict(color="#424242", width=1)),
        customdata=winners[["window", "combo_id"]].to_numpy(), hovertemplate=hover,
    ))
    lo = float(min(finite["is"].min(), finite["oos"].min()))
    hi = float(max(finite["is"].max(), finite["oos"].max()))
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="OOS = IS",
                             line=dict(color=NEUTRAL_COLOR, dash="dash", width=1), hoverinfo="skip"))
    rho = finite["is"].rank().corr(finite["oos"].rank()) if total > 2 else float("nan")
    text = f"{title} (rank correlation {rho:.2f})" if pd.notna(rho) else title
    if len(others) + len(winners) < total:
        text += f"<br>{len(others) + len(winners):,} of {total:,} pairs sampled for display"
    set_title(fig, text, half_page=True)
    fig.update_xaxes(title_text=f"In-sample {label}", tickformat=_tick_format(metric), zeroline=True)
    fig.update_yaxes(title_text=f"Out-of-sample {label}", tickformat=_tick_format(metric), zeroline=True)
    return fig


# --- robustness ------------------------------------------------------------------------------

def _histogram(values: np.ndarray, name: str, color: str, nbins: int = 40) -> go.Histogram:
    return go.Histogram(x=values, name=name, nbinsx=nbins, marker=dict(color=color, line=dict(width=0)),
                        opacity=0.7, showlegend=False, hovertemplate="%{x}<br>%{y} resamples<extra>" + name
                        + "</extra>")


def bootstrap_figure(boot: Any) -> go.Figure:
    """Block-bootstrap distributions: one panel each for the (annualised) Sharpe, the total
    return and the max drawdown, with the confidence interval bounds (dashed) and the
    observed value (solid); a fourth panel puts the null Sharpe distribution (demeaned
    returns) against the observed Sharpe, with the one-sided p-value.

    ``boot``: :class:`threadx.validation.bootstrap.BootstrapResult` (``samples``, ``ci``,
    ``observed``, ``null_sharpes``, ``p_value``, ``n``, ``block``, ``confidence``).
    """
    samples = getattr(boot, "samples", None) or {}
    if not samples or not any(len(np.asarray(v)) for v in samples.values()):
        return empty_figure("No bootstrap samples", title="Bootstrap distributions")
    level = f"{float(getattr(boot, 'confidence', 0.95)) * 100:.0f} %"
    p_value = float(getattr(boot, "p_value", float("nan")))
    titles = []
    for stat in ("sharpe", "total_return", "max_drawdown"):
        lo, hi = boot.ci.get(stat, (float("nan"), float("nan")))
        titles.append(f"{STAT_LABELS[stat]}: {format_metric(stat, boot.observed.get(stat))}, "
                      f"{level} CI [{format_metric(stat, lo)}, {format_metric(stat, hi)}]")
    titles.append(f"Null Sharpe (no edge) vs observed: p = {format_metric('p_value', p_value)}")
    fig = make_subplots(rows=2, cols=2, subplot_titles=titles, vertical_spacing=0.16, horizontal_spacing=0.08)
    cells = {"sharpe": (1, 1), "total_return": (1, 2), "max_drawdown": (2, 1)}
    for stat, (row, col) in cells.items():
        values = np.asarray(samples.get(stat, []), dtype=float)
        values = values[np.isfinite(values)]
        if not len(values):
            continue
        fig.add_trace(_histogram(values, STAT_LABELS[stat], LINE_COLOR), row=row, col=col)
        lo, hi = boot.ci.get(stat, (float("nan"), float("nan")))
        for bound in (lo, hi):
            if math.isfinite(float(bound)):
                fig.add_vline(x=float(bound), line=dict(color=FRONT_COLOR, dash="dash", width=1.5), row=row, col=col)
        observed = float(boot.observed.get(stat, float("nan")))
        if math.isfinite(observed):
            fig.add_vline(x=observed, line=dict(color="#212121", width=2), row=row, col=col)
        fig.update_xaxes(tickformat=".0%" if stat != "sharpe" else None, row=row, col=col)
    null = np.asarray(getattr(boot, "null_sharpes", []), dtype=float)
    null = null[np.isfinite(null)]
    if len(null):
        fig.add_trace(_histogram(null, "Null Sharpe", NEUTRAL_COLOR), row=2, col=2)
        observed = float(boot.observed.get("sharpe", float("nan")))
        if math.isfinite(observed):
            fig.add_vline(x=observed, line=dict(color="#212121", width=2), row=2, col=2)
    # legend entries for the line styles
    for name, line in ((f"{level} CI bounds", dict(color=FRONT_COLOR, dash="dash")),
                       ("Observed", dict(color="#212121"))):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=name, line=line), row=1, col=1)
    for annotation in fig.layout.annotations:
        annotation.update(font=dict(size=12))
    fig.update_layout(template=TEMPLATE, barmode="overlay", height=580, margin=dict(l=50, r=20, t=100, b=40),
                      legend=dict(orientation="h", x=0, xanchor="left", y=1.07, yanchor="bottom"))
    set_title(fig, f"Block bootstrap: {int(boot.n):,} resamples, blocks of {int(boot.block):,} bars")
    fig.update_yaxes(title_text="Resamples", col=1)
    return fig


def bootstrap_table(boot: Any) -> pd.DataFrame:
    """One row per statistic: observed value and the confidence interval bounds."""
    rows = []
    for stat, label in STAT_LABELS.items():
        lo, hi = boot.ci.get(stat, (float("nan"), float("nan")))
        rows.append({"statistic": label, "observed": format_metric(stat, boot.observed.get(stat)),
                     "CI low": format_metric(stat, lo), "CI high": format_metric(stat, hi)})
    return pd.DataFrame(rows)


def pbo_logit_figure(pbo: Any) -> go.Figure:
    """Histogram of the CSCV logits λ of the IS-selected combo's OOS rank: λ ≤ 0 (red) means
    the in-sample winner fell to or below the OOS median; PBO is their share.

    ``pbo``: :class:`threadx.validation.pbo.PBOResult` (``logits``, ``pbo``, ``n_splits``, ``S``).
    """
    title = "PBO: logits of the in-sample winner's out-of-sample rank"
    logits = np.asarray(getattr(pbo, "logits", []) if pbo is not None else [], dtype=float)
    logits = logits[np.isfinite(logits)]
    if not len(logits):
        return empty_figure("No CSCV split to show", title=title)
    lo, hi = float(min(logits.min(), 0.0)), float(max(logits.max(), 0.0))
    size = (hi - lo) / 40 if hi > lo else 0.1
    # a bin edge at 0: the two colours never share a bin
    start = -size * math.ceil(-lo / size + 1e-9) if lo < 0 else 0.0
    xbins = dict(start=start, end=hi + size, size=size)
    fig = _new_figure(barmode="overlay", bargap=0.02,
                      **_FOOT_LEGEND)
    for name, sel, color in (("λ ≤ 0: IS winner at or below the OOS median", logits <= 0, SHORT_COLOR),
                             ("λ > 0: IS winner above the OOS median", logits > 0, LONG_COLOR)):
        fig.add_trace(go.Histogram(x=logits[sel], name=_half_page_lines(f"{name} ({int(sel.sum()):,})"), xbins=xbins,
                                   autobinx=False,
                                   marker=dict(color=color, line=dict(width=0)), opacity=0.8,
                                   hovertemplate="λ %{x}<br>%{y} splits<extra></extra>"))
    fig.add_vline(x=0, line=dict(color="#212121", width=1.5))
    value = float(getattr(pbo, "pbo", float("nan")))
    n_splits = int(getattr(pbo, "n_splits", len(logits)))
    text = f"PBO = {format_metric('pbo', value)} over {n_splits:,} CSCV splits (S = {int(pbo.S)})"
    set_title(fig, text + "<br>λ = ln(ω / (1 - ω)), ω the winner's OOS relative rank", half_page=True)
    fig.update_xaxes(title_text="λ, the logit of the OOS rank ω")
    fig.update_yaxes(title_text="Splits")
    return fig


def pbo_scatter_figure(pbo: Any, bars_per_year: float | None = None, max_points: int = SCATTER_MAX_POINTS
                       ) -> go.Figure:
    """The IS-selected combo's Sharpe in sample vs out of sample across the CSCV splits,
    with the fitted degradation line (OOS = intercept + slope × IS).

    Sharpe ratios are per bar as stored; ``bars_per_year`` annualises both axes.
    """
    title = "IS winner across CSCV splits: IS vs OOS Sharpe"
    if pbo is None:
        return empty_figure("PBO not available", title=title)
    x = np.asarray(pbo.is_sharpe_best, dtype=float)
    y = np.asarray(pbo.oos_sharpe_best, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if not len(x):
        return empty_figure("No split with finite Sharpe ratios", title=title)
    k = math.sqrt(bars_per_year) if bars_per_year else 1.0
    unit = "annualised" if bars_per_year else "per bar"
    total = len(x)
    if total > max_points:
        pick = np.random.default_rng(0).choice(total, size=max_points, replace=False)
        xs, ys = x[pick], y[pick]
    else:
        xs, ys = x, y
    fig = _new_figure(**_FOOT_LEGEND)
    loss = float(getattr(pbo, "prob_oos_loss", np.mean(y < 0)))
    fig.add_trace(go.Scattergl(x=xs * k, y=ys * k, mode="markers",
                               name=f"Splits ({total:,}; OOS Sharpe < 0 in {loss:.0%})",
                               marker=dict(color=np.where(ys > 0, LONG_COLOR, SHORT_COLOR), size=5, opacity=0.5),
                               hovertemplate="IS %{x:.3f}<br>OOS %{y:.3f}<extra></extra>"))
    slope, intercept = float(getattr(pbo, "degradation_slope", np.nan)), float(getattr(pbo, "degradation_intercept",
                                                                                        np.nan))
    if math.isfinite(slope) and math.isfinite(intercept):
        line_x = np.array([x.min(), x.max()])
        fig.add_trace(go.Scatter(x=line_x * k, y=(intercept + slope * line_x) * k, mode="lines",
                                 name=f"Fit: slope {slope:.2f}", line=dict(color="#212121", dash="dash", width=1.5),
                                 hoverinfo="skip"))
    fig.add_hline(y=0, line=dict(color=NEUTRAL_COLOR, width=1))
    text = f"{title} ({unit})"
    if total > max_points:
        text += f" ({max_points:,} of {total:,} shown)"
    set_title(fig, text, half_page=True)
    fig.update_xaxes(title_text=f"In-sample Sharpe ({unit})")
    fig.update_yaxes(title_text=f"Out-of-sample Sharpe ({unit})")
    return fig


def stability_heatmap_figure(grid: pd.DataFrame, x: str, y: str, metric: str, radius: int | None = None
                             ) -> go.Figure:
    """``metric`` over the grid around the winner (:func:`threadx.validation.stability.stability_grid`:
    columns ``x``, ``y``, ``metric``, ``winner``), the winner's cell outlined. Missing cells
    (combos breaking a constraint) stay blank."""
    label = metric_label(metric)
    title = f"Stability: {label} around the winner over {x} × {y}"
    if grid is None or grid.empty or metric not in grid.columns:
        return empty_figure("No combo around the winner", title=title)
    pivot = grid.pivot_table(index=y, columns=x, values=metric, aggfunc="first", dropna=False)
    pivot = pivot.sort_index().sort_index(axis=1)
    xs = [_fmt_value(v) for v in pivot.columns]
    ys = [_fmt_value(v) for v in pivot.index]
    z = pivot.to_numpy(dtype=float)
    fmt = d3_format(metric)
    fig = _new_figure()
    fig.add_trace(go.Heatmap(
        z=z, x=xs, y=ys, **metric_colors(metric, z), hoverongaps=False,
        colorbar=dict(title=dict(text=label, side="right"), tickformat=_tick_format(metric)),
        texttemplate=f"%{{z:{'.1%' if is_fraction(metric) else fmt}}}", textfont=dict(size=11),
        hovertemplate=f"{x} = %{{x}}<br>{y} = %{{y}}<br>{label} = %{{z:{fmt}}}<extra></extra>",
    ))
    if "winner" in grid.columns and grid["winner"].any():
        win = grid[grid["winner"].astype(bool)].iloc[0]
        value = float(win[metric]) if pd.notna(win[metric]) else float("nan")
        fig.add_trace(go.Scatter(
            x=[_fmt_value(win[x])], y=[_fmt_value(win[y])], mode="markers", name="Winner",
            marker=dict(symbol="square-open", size=44, color="#212121", line=dict(width=3)),
            hovertemplate=(f"winner: {x} = %{{x}}, {y} = %{{y}}<br>{label} = {format_metric(metric, value)}"
                           "<extra></extra>"),
            showlegend=False,
        ))
        title += f" (winner outlined: {x} = {_fmt_value(win[x])}, {y} = {_fmt_value(win[y])})"
    if radius is not None:
        title += f", ±{radius} steps"
    set_title(fig, title)
    fig.update_xaxes(title_text=x, type="category")
    fig.update_yaxes(title_text=y, type="category")
    return fig


# --- grade card -------------------------------------------------------------------------------

def grade_rows(grade: Any) -> list[dict[str, Any]]:
    """One row per grade component: label, points, max points, "points / max" text, its
    value and the one-sentence explanation (in the grade's order)."""
    rows = []
    for c in getattr(grade, "components", []) or []:
        rows.append({
            "name": c.name,
            "label": COMPONENT_LABELS.get(c.name, c.name.replace("_", " ").capitalize()),
            "points": float(c.points),
            "max_points": float(c.max_points),
            "score": f"{_pts(c.points)} / {_pts(c.max_points)}",
            "value": c.value,
            "explanation": c.explanation,
        })
    return rows


def grade_color(letter: str) -> str:
    """Display colour of a grade letter (A green … F red)."""
    return GRADE_COLORS.get(str(letter).upper(), NEUTRAL_COLOR)
