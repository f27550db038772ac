"""Helpers of the Portfolio page: the runner list, the headline numbers, the tables (runners,
skipped entries, kill-switch events, run details) and the charts (combined equity and
drawdown, margin share and open positions, each runner's equity, drawdown correlation).

Pure functions (no Streamlit): a :class:`~threadx.portfolio.PortfolioResult` in, ``pandas``
frames, plain text or Plotly figures out.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from threadx.config import STORED
from threadx.data.catalog import quote_currency
from threadx.errors import ThreadXError
from threadx.portfolio import PortfolioResult, Runner
from threadx.portfolio.result import SKIP_REASONS
from threadx.portfolio.runners import runner_labels as portfolio_runner_labels
from threadx.requests import describe_options
from threadx.ui.charts import (DISPLAY_MAX_POINTS, LINE_COLOR, OVERLAY_COLORS, SHORT_COLOR, TEMPLATE,
                               _downsample_positions, _new_figure, _title, _trace_cls, downsampled_note, empty_figure,
                               equity_figure, plot_times)
from threadx.units import format_metric, unit_of

BLOCKED_COLOR = "rgba(239,83,80,0.15)"  # kill switch holding entries
MAX_BLOCKED_SPANS = 300  # above this many held spans, only the longest are shaded
SKIP_TEXT = {
    "margin_guard": "margin of all runners would pass the margin guard",
    "runner_cap": "the runner's own margin would pass the runner cap",
    "kill_switch": "the kill switch held new entries",
    "engine": "the engine's own skips (an order under the minimum notional, say)",
}
HEADLINE = (("total_return", "Return"), ("sharpe", "Sharpe"), ("max_drawdown", "Max drawdown"),
            ("n_trades", "Trades"), ("n_cycles", "Cycles"), ("cycle_win_rate", "Cycle win rate"),
            ("total_fees", "Fees"), ("total_funding", "Funding"))


# --- runners -------------------------------------------------------------------------------------

def runner_labels(runners: Sequence[Mapping[str, Any]]) -> list[str]:
    """The runners' labels as the portfolio will name them (``strategy:dataset``, then ``#2`` for
    the same strategy on the same dataset with other params); the plain labels when a runner is
    there twice (the launch names that error)."""
    listed = [Runner.from_dict(r) for r in runners]
    try:
        return portfolio_runner_labels(listed)
    except ThreadXError:
        return [r.label for r in listed]


def timeframe_note(runners: Sequence[Mapping[str, Any]], catalog: pd.DataFrame) -> str | None:
    """Before launch, why the runners cannot share a portfolio by their timeframes (each runner's
    own, else its dataset's in ``catalog``; the run refuses the same), None when they can or a
    timeframe is unknown."""
    from threadx.portfolio.backtest import timeframe_problem

    frames = {}
    for label, ref, row in _catalog_rows(runners, catalog):
        if ref.timeframe:
            frames[label] = ref.timeframe
        elif row is not None:
            frames[label] = row["timeframe"]
        else:
            return None
    return timeframe_problem(frames)


def _catalog_rows(runners: Sequence[Mapping[str, Any]], catalog: pd.DataFrame) -> Iterator[tuple[str, Any, Any]]:
    """(label, DatasetRef, its dataset's row in ``catalog`` or None) of each runner."""
    rows = catalog.set_index("name") if len(catalog) else None
    for label, runner in zip(runner_labels(runners), runners):
        ref = Runner.from_dict(runner).data
        name = ref.name or ref.source
        yield label, ref, (rows.loc[name] if rows is not None and name in rows.index else None)


def span_notes(runners: Sequence[Mapping[str, Any]], catalog: pd.DataFrame) -> list[str]:
    """Before launch, the part-time notes (``part_time_notes``) from the first and last bar the
    data catalog lists for each runner's dataset, cut to the runner's start and end (the run's
    own notes, from the bars it loads, can differ by a bar at a cut or a resampled edge); none
    when a runner's span is unknown (its dataset not in ``catalog``, a start that is no time)."""
    from threadx.portfolio.backtest import part_time_notes

    spans = _catalog_spans(runners, catalog)
    return part_time_notes(spans) if spans and len(spans) > 1 else []


def overlap_note(runners: Sequence[Mapping[str, Any]], catalog: pd.DataFrame) -> str | None:
    """Before launch, why the runners cannot share a portfolio by their spans (``overlap_problem``:
    the run refuses the same after it loads every runner), None when they can or a span is unknown."""
    from threadx.portfolio.backtest import overlap_problem

    spans = _catalog_spans(runners, catalog)
    return overlap_problem(spans) if spans and len(spans) > 1 else None


def _catalog_spans(runners: Sequence[Mapping[str, Any]], catalog: pd.DataFrame) -> list[tuple[str, int, int]] | None:
    """(label, first bar's open, last bar's close, ns) of each runner from the catalog, cut to its
    start and end; None when one is unknown (nothing of its dataset in its span: the run says so)."""
    from threadx.data.grid import timeframe_ns
    from threadx.data.io import as_utc

    spans = []
    for label, ref, row in _catalog_rows(runners, catalog):
        if row is None or pd.isna(row["first"]) or pd.isna(row["last"]):
            return None  # (a file the catalog could not read has no span)
        first, last = int(row["first"].value), int(row["last"].value) + timeframe_ns(row["timeframe"])
        try:
            if ref.start:
                first = max(first, as_utc(ref.start).value)
            if ref.end:
                last = min(last, as_utc(ref.end).value)
        except (ValueError, TypeError):  # a start or end that is no time: the run names it
            return None
        if last <= first:  # nothing of the dataset in the runner's span: the run says so
            return None
        spans.append((label, first, last))
    return spans


def runner_rows(runners: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The runners about to be launched: label, weight, params ("defaults" when none given)."""
    rows = [{"runner": label, "weight": float(r.get("weight", 1.0)),
             "params": ", ".join(f"{k}={v}" for k, v in (r.get("params") or {}).items()) or "strategy defaults"}
            for label, r in zip(runner_labels(runners), runners)]
    return pd.DataFrame(rows, columns=["runner", "weight", "params"])


def add_runner(runners: Sequence[Mapping[str, Any]], runner: Runner) -> tuple[list[dict[str, Any]], str | None]:
    """(``runners`` with ``runner`` added, what happened in words or None): it replaces the same
    runner (same strategy, dataset and params) in its place, with its new weight, and stands
    beside the same strategy on the same dataset with other params, as ``... #2``. The words name
    the runner by its label in the list."""
    listed = [dict(r) for r in runners]
    same = next((k for k, r in enumerate(listed) if Runner.from_dict(r).same_as(runner)), None)
    if same is None:
        listed.append(runner.to_dict())
        where = len(listed) - 1
    else:
        was = float(listed[same].get("weight", 1.0))
        listed[same] = runner.to_dict()
        where = same
    label = runner_labels(listed)[where]
    if same is not None:
        return listed, (f"{label} with these params was already in the list: added again, it replaces it "
                        + (f"(weight {was:g} before, {runner.weight:g} now)." if was != runner.weight
                           else f"(same weight {was:g}: nothing changed)."))
    if label != runner.label:
        return listed, (f"Added as {label}: {runner.label} is already in the list with other params "
                        "(each runs as a runner of its own).")
    return listed, None


# --- numbers -------------------------------------------------------------------------------------

def peaks(result: PortfolioResult) -> dict[str, Any]:
    """Peak margin share of the equity, peak positions and legs open at once."""
    tl = result.timeline
    share = tl["margin_share"]
    return {"peak_margin_share": float(share.max()) if share.notna().any() else 0.0,
            "positions": int(tl["positions"].max()) if len(tl) else 0,
            "legs": int(tl["legs"].max()) if len(tl) else 0}


def portfolio_quote(result: PortfolioResult) -> str:
    """The currency the portfolio's money is in: its runners' datasets' quote
    (:func:`~threadx.data.catalog.quote_currency`) when they share one, else ''."""
    quotes = set()
    for r in result.runners:
        data = r.get("dataset") or {}
        named = data.get("name") or Path(str(data.get("source") or "")).name.split(".")[0]
        quotes.add(quote_currency(str(named)))
    return quotes.pop() if len(quotes) == 1 else ""


def money_label(label: str, metric: str, quote: str) -> str:
    """``label`` with the currency of a money ``metric`` ("Fees (USDT)"), as the Backtest cards.

    >>> money_label("Fees", "total_fees", "USDT"), money_label("Return", "total_return", "USDT")
    ('Fees (USDT)', 'Return')
    """
    unit = unit_of(metric)
    return f"{label} ({quote})" if quote and unit is not None and unit.kind == "money" else label


def headline(result: PortfolioResult) -> list[tuple[str, str]]:
    """(label, formatted value) of the headline metrics of the combined account."""
    m = result.metrics
    quote = portfolio_quote(result)
    out = [(money_label(label, name, quote), format_metric(name, m.get(name))) for name, label in HEADLINE]
    p = peaks(result)
    out += [("Peak margin share", format_metric("peak_margin_share", p["peak_margin_share"])),
            ("Peak positions", format_metric("positions", p["positions"])),
            ("Peak legs", format_metric("legs", p["legs"]))]
    return out


def describe_config(result: PortfolioResult) -> str:
    """The run's capital, span, gates, funding and engine options in one line."""
    c, meta = result.config, result.meta
    span = f"{str(meta.get('start', '?'))[:10]} to {str(meta.get('end', '?'))[:10]}"
    funding = c.get("funding") or "none"
    if funding == STORED:  # which runners a stored file was found for ("stored files" read as if all had one)
        found = sum(1 for r in result.runners if r.get("funding"))
        funding = (f"stored files ({found} of {len(result.runners)} runners have one)" if found
                   else "stored files (none found for these datasets)")
    quote = portfolio_quote(result)
    capital = format_metric("capital", c.get("capital")) + (f" {quote}" if quote else "")
    return (f"{len(result.runners)} runners on {capital} capital · {span} "
            f"({meta.get('ticks', 0):,} ticks, UTC) · {result.gates_text()} · funding: {funding} · "
            f"{describe_options(c.get('engine_options'))}")


RUNNER_HEADERS = {"Weight": "weight", "Capital": "capital", "Final equity": "final_equity", "PnL": "pnl",
                  "Return": "total_return", "Sharpe": "sharpe", "Max drawdown": "max_drawdown", "Trades": "n_trades",
                  "Cycles": "n_cycles", "Fees": "total_fees", "Funding": "total_funding", "Skipped": "skipped",
                  "Peak margin share": "peak_margin_share"}  # display header -> the metric it shows (its unit)


def runner_headers(result: PortfolioResult) -> dict[str, str]:
    """The runner table's headers as shown, money ones with the currency ("PnL (USDT)")."""
    quote = portfolio_quote(result)
    return {header: money_label(header, name, quote) for header, name in RUNNER_HEADERS.items()}


def runners_table(result: PortfolioResult) -> pd.DataFrame:
    """One row per runner: its share of the capital, PnL, own metrics, skips (gates only) and
    peak margin share of the portfolio equity; headers as shown (:data:`RUNNER_HEADERS`)."""
    rows = []
    for r in result.runners:
        values = {**r["metrics"], "weight": r["weight"], "capital": r["capital"], "final_equity": r["final_equity"],
                  "pnl": r["pnl"], "peak_margin_share": r["peak_margin_share"],
                  "skipped": sum(v for k, v in r["skipped"].items() if k != "engine")}
        rows.append({"Runner": r["label"], **{header: values.get(name) for header, name in RUNNER_HEADERS.items()},
                     "Params": ", ".join(f"{k}={v}" for k, v in (r.get("params") or {}).items())})
    return pd.DataFrame(rows)


def skipped_table(result: PortfolioResult) -> pd.DataFrame:
    """Entries refused: a row for all runners, then one per runner; a column per reason
    (:func:`skip_reasons_note` says what each means). Its width grows with the reasons, not
    the runners (a column per runner scrolled sideways from the fourth at 1440 px).

    >>> from types import SimpleNamespace
    >>> result = SimpleNamespace(skipped={"margin_guard": 3, "runner_cap": 1},
    ...                          runners=[{"label": "a", "skipped": {"margin_guard": 3}},
    ...                                   {"label": "b", "skipped": {"runner_cap": 1}}])
    >>> skipped_table(result).to_dict("list")  # doctest: +NORMALIZE_WHITESPACE
    {'runner': ['all runners', 'a', 'b'], 'margin guard': [3, 3, 0], 'runner cap': [1, 0, 1],
     'kill switch': [0, 0, 0], 'engine': [0, 0, 0]}
    """
    def counts(skipped: Mapping[str, int]) -> dict[str, int]:
        return {reason.replace("_", " "): int(skipped.get(reason, 0)) for reason in SKIP_REASONS}

    rows = [{"runner": "all runners", **counts(result.skipped)}]
    rows += [{"runner": r["label"], **counts(r["skipped"])} for r in result.runners]
    return pd.DataFrame(rows)


def skip_reasons_note() -> str:
    """What each column of :func:`skipped_table` counts, in one line."""
    return " · ".join(f"**{reason.replace('_', ' ')}**: {SKIP_TEXT[reason]}" for reason in SKIP_REASONS)


def events_table(result: PortfolioResult) -> pd.DataFrame:
    """The kill-switch firings: when, the drawdown within the window, the marks, when entries resume."""
    cols = ["time", "drawdown", "window_peak", "equity", "resumes"]
    frame = pd.DataFrame(result.events, columns=cols)
    for col in ("time", "resumes"):
        frame[col] = pd.to_datetime(frame[col], utc=True).dt.tz_localize(None)
    return frame.rename(columns={"time": "fired (UTC)", "resumes": "entries resume (UTC)"})


def details_table(result: PortfolioResult) -> pd.DataFrame:
    """Per runner what every number rests on: dataset, file, bars, span, fingerprint, strategy
    code and funding file."""
    rows = []
    for r in result.runners:
        d, funding = r.get("dataset") or {}, r.get("funding") or {}
        loaded = d.get("loaded") or {}
        rows.append({"runner": r["label"], "dataset": d.get("name") or d.get("source"), "file": loaded.get("source"),
                     "timeframe": d.get("timeframe"), "bars": d.get("bars"),
                     "from": loaded.get("start"), "to": loaded.get("end"), "fingerprint": d.get("fingerprint"),
                     "strategy code": r.get("strategy_code"),
                     "funding": (f"{funding.get('rates', 0):,} rates · {funding.get('source')} · "
                                 f"{str(funding.get('fingerprint'))[:12]}") if funding else "none",
                     "params": json.dumps(r.get("params") or {}, default=str)})
    return pd.DataFrame(rows)


# --- charts --------------------------------------------------------------------------------------

def equity_and_drawdown(result: PortfolioResult) -> go.Figure:
    """The combined equity over its drawdown (two rows, shared time axis)."""
    tl = result.timeline
    fig = equity_figure(tl["equity"], tl["drawdown"], initial_capital=result.config.get("capital"),
                        quote=portfolio_quote(result))
    fig.update_traces(name="Portfolio equity", selector=dict(name="Strategy equity"))
    fig.update_traces(hovertemplate="portfolio equity %{y:,.2f}<extra></extra>", selector=dict(name="Portfolio equity"))
    fig.update_layout(title=dict(text=str(fig.layout.title.text).replace("Equity and drawdown",
                                                                          "Portfolio equity and drawdown", 1)))
    return fig


def blocked_spans(timeline: pd.DataFrame, limit: int = MAX_BLOCKED_SPANS) -> list[tuple[Any, Any]]:
    """(start, end) of each stretch of ticks whose new entries the kill switch held (the
    ``limit`` longest when there are more)."""
    held = timeline["blocked"].to_numpy(dtype=bool)
    if not held.any():
        return []
    edges = np.diff(np.concatenate(([0], held.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    if len(starts) > limit:
        keep = np.sort(np.argsort(ends - starts)[::-1][:limit])
        starts, ends = starts[keep], ends[keep]
    index = timeline.index
    return [(index[s], index[min(e + 1, len(index) - 1)]) for s, e in zip(starts, ends)]


def margin_figure(result: PortfolioResult, max_points: int = DISPLAY_MAX_POINTS) -> go.Figure:
    """Margin in use as a share of the equity (the guard as a dashed line when set) over the
    positions and legs open at once; kill-switch holds shaded on both."""
    tl = result.timeline
    title = "Margin share of equity and open positions"
    if len(tl) == 0:
        return empty_figure("No ticks", title=title)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.06, row_heights=[0.55, 0.45])
    share = tl["margin_share"].astype(float)
    pos = _downsample_positions(share.to_numpy(), max_points, "minmax")
    fig.add_trace(_trace_cls(len(pos))(x=plot_times(tl.index[pos]), y=share.iloc[pos].to_numpy(), mode="lines",
                                       name="Margin / equity", line=dict(color=LINE_COLOR, width=1.3),
                                       hovertemplate="margin %{y:.1%} of equity<extra></extra>"), row=1, col=1)
    guard = result.config.get("margin_guard")
    if guard:
        fig.add_hline(y=float(guard), line=dict(color=SHORT_COLOR, dash="dash", width=1.5), row=1, col=1,
                      annotation_text=f"margin guard {float(guard):.0%}", annotation_position="top left")
    # positions under legs: a leg is one entry of a position (grid strategies add several), so the
    # dotted legs line lies on the positions line wherever each position has one leg
    one_leg = bool((tl["legs"] == tl["positions"]).all())  # no grid strategy: one line says it all
    lines = [("positions", OVERLAY_COLORS[0], "Positions open" + (" (one leg each)" if one_leg else ""), "solid")]
    if not one_leg:
        lines.append(("legs", OVERLAY_COLORS[1], "Legs open", "dot"))
    for name, color, label, dash in lines:
        values = tl[name].astype(float)
        keep = _downsample_positions(values.to_numpy(), max_points, "minmax")
        fig.add_trace(_trace_cls(len(keep))(x=plot_times(tl.index[keep]), y=values.iloc[keep].to_numpy(),
                                            mode="lines", line=dict(color=color, width=1.3, shape="hv", dash=dash),
                                            name=label, hovertemplate=f"{label.lower()} %{{y:,d}}<extra></extra>"),
                      row=2, col=1)
    spans = blocked_spans(tl)
    for start, end in spans:
        fig.add_vrect(x0=plot_times(pd.DatetimeIndex([start]))[0], x1=plot_times(pd.DatetimeIndex([end]))[0],
                      fillcolor=BLOCKED_COLOR, line_width=0, layer="below", row="all", col=1)
    if spans:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name="Kill switch holding entries",
                                 marker=dict(symbol="square", size=12, color=BLOCKED_COLOR.replace("0.15", "0.5"))),
                      row=1, col=1)
    notes = [downsampled_note(len(tl), len(pos), "ticks")] if len(tl) > max_points else []
    fig.update_layout(template=TEMPLATE, title=_title(title, notes), hovermode="x unified",
                      margin=dict(l=50, r=20, t=80, b=30), height=480,
                      legend=dict(orientation="h", x=1, xanchor="right", y=1.0, yanchor="bottom"))
    fig.update_yaxes(title_text="Margin / equity", tickformat=".0%", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="Open at once", rangemode="tozero", tickformat=",d",
                     dtick=1 if int(tl["legs"].max()) <= 8 else None, row=2, col=1)
    return fig


def runner_equity_figure(result: PortfolioResult, max_points: int = DISPLAY_MAX_POINTS) -> go.Figure:
    """Each runner's equity (its sub-account) on the common timeline, one labelled line each."""
    title = "Each runner's equity (its share of the capital)"
    eq = result.runner_equity()
    if eq.empty:
        return empty_figure("No runner", title=title)
    fig = _new_figure()
    for k, label in enumerate(eq.columns):
        values = eq[label].astype(float)
        keep = _downsample_positions(values.to_numpy(), max_points, "minmax")
        fig.add_trace(_trace_cls(len(keep))(x=plot_times(eq.index[keep]), y=values.iloc[keep].to_numpy(),
                                            mode="lines", name=label,
                                            line=dict(color=OVERLAY_COLORS[k % len(OVERLAY_COLORS)], width=1.3),
                                            hovertemplate=f"{label} %{{y:,.2f}}<extra></extra>"))
    notes = [downsampled_note(len(eq), len(keep), "ticks")] if len(eq) > max_points else []
    fig.update_layout(title=_title(title, notes), hovermode="x unified", height=380,
                      margin=dict(l=50, r=20, t=80, b=30),
                      legend=dict(orientation="h", x=1, xanchor="right", y=1.0, yanchor="bottom"))
    quote = portfolio_quote(result)
    fig.update_yaxes(title_text="Equity" + (f" ({quote})" if quote else ""))
    return fig


def correlation_figure(result: PortfolioResult) -> go.Figure:
    """Pearson correlation of the runners' drawdowns, -1 (blue) to 1 (red)."""
    title = "Drawdown correlation between runners"
    if len(result.runners) < 2:
        return empty_figure("One runner: nothing to correlate", title=title)
    corr = result.drawdown_correlation()
    values = corr.to_numpy(dtype=float)
    text = [["n/a" if not np.isfinite(v) else f"{v:.2f}" for v in row] for row in values]
    fig = _new_figure()
    fig.add_trace(go.Heatmap(z=values, x=list(corr.columns), y=list(corr.index), text=text, texttemplate="%{text}",
                             textfont=dict(size=13), colorscale="RdBu", reversescale=True, zmin=-1.0, zmax=1.0,
                             hovertemplate="%{y}<br>%{x}<br>correlation %{z:.2f}<extra></extra>",
                             colorbar=dict(title=dict(text="correlation", side="right"))))
    fig.update_layout(title={**_title(title, ["of equity / running peak - 1 on the common timeline"]), "y": 0.96},
                      height=max(380, 160 + 70 * len(corr)), margin=dict(l=50, r=20, t=90, b=40))
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category", autorange="reversed")
    return fig


__all__ = ["runner_rows", "add_runner", "headline", "peaks", "describe_config", "runners_table", "skipped_table",
           "skip_reasons_note", "events_table", "details_table", "equity_and_drawdown", "margin_figure",
           "runner_equity_figure", "correlation_figure", "blocked_spans"]
