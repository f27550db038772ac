"""Helpers of the Research page: the stored research runs, the window check before a launch,
the strategy x asset matrix (table and heatmap) and the transfer heatmap.

Pure functions (no Streamlit): results in, ``pandas`` frames, plain text or Plotly figures out.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from threadx.errors import ThreadXError, first_line
from threadx.ui.charts import _new_figure, empty_figure
from threadx.ui.validation_charts import set_title
from threadx.units import format_metric
from threadx.validation.research import ResearchResult, checked_research, kept_text, research_root

SHARPE_SCALE = "RdYlGn"
IN_SAMPLE_GREY = "#d9d9d9"  # a transfer matrix's diagonal: outside the OOS colour scale


def list_research(results_dir: str | os.PathLike | None = None,
                  damaged: list[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
    """Stored research runs, newest first: id, strategies, datasets, cells, status, mtime. A
    damaged one is left out, and added to ``damaged`` as (id, why) when given (the page names
    it: left out silently, it was never said to be damaged)."""
    root = research_root(results_dir)
    rows = []
    for path in root.glob("*/research.json") if root.is_dir() else ():
        try:
            data = checked_research(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            if damaged is not None:
                damaged.append((path.parent.name, first_line(exc, 160)))
            continue
        config = data["config"]
        rows.append({"research_id": path.parent.name,
                     "strategies": ", ".join(config.get("strategies", [])),
                     "datasets": ", ".join(d.get("name") or d.get("source", "?") for d in config.get("datasets", [])),
                     "cells": len(data.get("cells", [])), "status": data.get("status", "completed"),
                     "mtime": path.stat().st_mtime})
    return sorted(rows, key=lambda r: r["mtime"], reverse=True)


def window_problems(datasets: Sequence[str], is_days: float, oos_days: float,
                    load: Callable[[str], pd.DataFrame]) -> list[str]:
    """One sentence per dataset on which no walk-forward window of these lengths fits (or which
    cannot be read): the launch is refused with these instead of a failed job."""
    from threadx.validation.walkforward import plan_windows, window_lengths

    problems = []
    for name in datasets:
        try:
            df = load(name)
            is_bars, oos_bars, step = window_lengths(df.attrs.get("timeframe"), is_days=is_days, oos_days=oos_days)
            plan_windows(len(df), is_bars, oos_bars, step)
        except (ThreadXError, OSError, ValueError) as exc:
            problems.append(f"{name}: {first_line(exc)}")
    return problems


def plan_text(strategies: Sequence[str], n_datasets: int, sampler: str, n: int | None,
              space: dict[str, Any] | None = None) -> str:
    """What a launch runs, in words: the cells, the combos in every window (the whole grid of a
    space smaller than ``n``, as the sampler takes it) and the transfer backtests. ``space``:
    the one strategy's edited space (None or empty: each strategy's declared ranges).

    >>> plan_text(["ma_crossover"], 1, "random", 50)
    '**1 cell** (1 strategy × 1 dataset), 50 random combos in every window, then 1 transfer backtest.'
    """
    from threadx.optimize.samplers import grid_size_if_whole
    from threadx.strategy import get_strategy
    from threadx.units import counted

    cells = len(strategies) * n_datasets
    if n is None:
        sizes = [_grid_size(get_strategy(name), space or None) for name in strategies]
        combos = "the whole grid" + (f" ({counted(sizes[0], 'combo')})" if len(sizes) == 1 and sizes[0] is not None
                                     else "")
    else:
        whole = {name: grid_size_if_whole(get_strategy(name), space or None, n) for name in strategies}
        if all(size is None for size in whole.values()):
            combos = f"{n:,} {sampler} combos"
        elif len(strategies) == 1:
            combos = f"the whole grid ({counted(whole[strategies[0]], 'combo')}: n = {n:,} takes every one)"
        else:
            combos = "; ".join(f"{name}: " + (f"{n:,} {sampler} combos" if size is None else
                                              f"its whole grid of {counted(size, 'combo')}")
                               for name, size in whole.items())
    return (f"**{counted(cells, 'cell')}** ({counted(len(strategies), 'strategy', 'strategies')} × "
            f"{counted(n_datasets, 'dataset')}), {combos} in every window, then "
            f"{counted(len(strategies) * n_datasets ** 2, 'transfer backtest')}.")


def grid_problems(strategies: Sequence[str], sampler: str, space: dict[str, Any] | None = None) -> list[str]:
    """One sentence per strategy whose grid is over the walk-forward limit (only with the grid
    sampler): the launch is refused with these instead of a job whose cells all fail."""
    from threadx.optimize.space import searched_space
    from threadx.strategy import get_strategy
    from threadx.validation.walkforward import DEFAULT_WF_GRID_LIMIT

    if sampler != "grid":
        return []
    problems = []
    for name in strategies:
        size = searched_space(get_strategy(name), space or None).size  # (as the walk-forward refuses it)
        if size > DEFAULT_WF_GRID_LIMIT:
            problems.append(f"{name}'s grid has {size:,} combos, over the walk-forward limit of "
                            f"{DEFAULT_WF_GRID_LIMIT:,}: narrow its ranges or use a Monte Carlo sampler")
    return problems


def _grid_size(strategy: Any, space: dict[str, Any] | None) -> int:
    """The valid combos of a grid (its size when it is over the walk-forward limit: refused,
    and counting them would be long)."""
    from threadx.optimize.space import searched_space
    from threadx.validation.walkforward import DEFAULT_WF_GRID_LIMIT

    grid = searched_space(strategy, space)
    return grid.count_valid_upto(DEFAULT_WF_GRID_LIMIT)


def timeframe_note(datasets: Sequence[str], timeframes: Mapping[str, Any]) -> str | None:
    """A note when ``datasets`` (names; ``timeframes``: name -> its timeframe, as the name
    says it) are of several timeframes: params counted in bars mean other spans on each, and the
    transfer matrix trades each cell's winner unchanged on the others (a slow period of 108 bars
    chosen on 4h is 18 days there and 4.5 days on 1h). None for one timeframe, or unknown ones.

    >>> print(timeframe_note(["a", "b", "c"], {"a": "1h", "b": "4h", "c": "1h"})[:62])
    these datasets are of several timeframes (1h: a, c; 4h: b): pa
    """
    by_frame: dict[str, list[str]] = {}
    for name in datasets:
        frame = timeframes.get(name)
        if not isinstance(frame, str) or not frame:
            return None
        by_frame.setdefault(frame, []).append(name)
    if len(by_frame) < 2:
        return None
    groups = "; ".join(f"{frame}: {', '.join(names)}" for frame, names in by_frame.items())
    return (f"these datasets are of several timeframes ({groups}): params counted in bars mean other spans on each, "
            "and the transfer matrix trades each cell's winner unchanged on the others (a period of 108 bars is "
            "18 days on 4h, 4.5 days on 1h); resample them to one timeframe to compare like with like")


def cells_table(result: ResearchResult) -> pd.DataFrame:
    """One row per cell: strategy, dataset, grade, OOS Sharpe, consistency, trades, kept, run id."""
    rows = []
    for cell in result.cells:
        rows.append({"strategy": cell["strategy"], "dataset": cell["dataset"], "grade": cell.get("grade"),
                     "oos_sharpe": cell.get("oos_sharpe"), "consistency": cell.get("consistency"),
                     "trades": cell.get("trades"), "kept": kept_text(cell.get("transfer_kept")),
                     "run_id": cell["run_id"]})
    return pd.DataFrame(rows, columns=["strategy", "dataset", "grade", "oos_sharpe", "consistency", "trades",
                                       "kept", "run_id"])


def kept_lines(result: ResearchResult) -> list[str]:
    """Per strategy and source asset: "N of M assets keep a positive OOS result with its params"."""
    lines = []
    for cell in result.cells:
        if not any(t["strategy"] == cell["strategy"] and t["source"] == cell["dataset"] for t in result.transfer):
            continue
        n, m = result.kept(cell["strategy"], cell["dataset"])
        if not m:  # no other asset traded: nothing kept or lost
            continue
        lines.append(f"**{cell['strategy']}** with the params chosen on **{cell['dataset']}**: kept on "
                     f"**{n} of {m}** other assets (a positive total return on their OOS span with the same "
                     "params: the return beside each Sharpe in the transfer matrix)")
    return lines


def cell_label(cell: dict[str, Any]) -> str:
    """A cell as a select box shows it."""
    sharpe = cell.get("oos_sharpe")
    return (f"{cell['strategy']} on {cell['dataset']} · grade {cell.get('grade') or '?'} · OOS Sharpe "
            f"{_num(sharpe)} · {cell['run_id']}")


def _num(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{float(value):.2f}"


def _heatmap(z: pd.DataFrame, text: list[list[str]], title: str, x_title: str, y_title: str,
             hover: str) -> go.Figure:
    values = z.to_numpy(dtype=float)
    bound = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
    fig = _new_figure()
    fig.add_trace(go.Heatmap(
        z=values, x=[str(c) for c in z.columns], y=[str(i) for i in z.index], text=text,
        texttemplate="%{text}", textfont=dict(size=cell_font(len(z.columns))), colorscale=SHARPE_SCALE, zmid=0.0,
        zmin=-bound or -1.0, zmax=bound or 1.0, hoverongaps=False, hovertemplate=hover,
        colorbar=dict(title=dict(text="OOS Sharpe", side="right"))))
    fig.update_layout(height=max(260, 110 + 70 * len(z.index)))
    set_title(fig, title)
    fig.update_xaxes(title_text=x_title, type="category", side="bottom")
    fig.update_yaxes(title_text=y_title, type="category", autorange="reversed")
    return fig


def cell_font(columns: int) -> int:
    """The font size of a matrix's cell text for ``columns`` columns: smaller as cells narrow (five
    datasets at 1024 px ran each cell's "0.02 · -6.91 %" into its neighbours').

    >>> cell_font(3), cell_font(5), cell_font(8)
    (13, 11, 9)
    """
    return 13 if columns <= 3 else 11 if columns <= 5 else 9


def dataset_order(result: ResearchResult) -> list[str]:
    """The job's datasets in the order they were given (pivots sort them by name)."""
    return [d.get("name") or d.get("source") for d in result.config.get("datasets", [])]


def _ordered(frame: pd.DataFrame, rows: Sequence[str], columns: Sequence[str]) -> pd.DataFrame:
    """``frame`` with its rows and columns in the given order (missing ones left out)."""
    return frame.reindex(index=[r for r in rows if r in frame.index] or list(frame.index),
                         columns=[c for c in columns if c in frame.columns] or list(frame.columns))


def matrix_figure(result: ResearchResult) -> go.Figure:
    """Strategies x assets, coloured by OOS Sharpe, each cell annotated "grade · Sharpe"."""
    title = "Strategy × asset: grade and OOS Sharpe of each walk-forward"
    if not result.cells:
        return empty_figure("No finished cell", title=title)
    strategies = list(dict.fromkeys(c["strategy"] for c in result.cells))
    sharpe = _ordered(result.matrix("oos_sharpe").astype(float), strategies, dataset_order(result))
    grade = result.matrix("grade").reindex(index=sharpe.index, columns=sharpe.columns)
    failed = {(c["strategy"], c["dataset"]) for c in result.cells if c.get("error")}
    text = [["failed" if (s, d) in failed else
             f"{grade.loc[s, d] or '?'} · {_num(sharpe.loc[s, d])}" if pd.notna(grade.loc[s, d]) else ""
             for d in sharpe.columns] for s in sharpe.index]
    return _heatmap(sharpe, text, title, "asset", "strategy",
                    "%{y} on %{x}<br>%{text}<br>OOS Sharpe %{z:.3f}<extra></extra>")


def _return_note(value: Any) -> str:
    """" · 12.34 %": a transfer backtest's total return beside its Sharpe ("" when not stored)."""
    return "" if value is None else f" · {format_metric('total_return', value)}"


def transfer_figure(result: ResearchResult, strategy: str) -> go.Figure:
    """Source asset (params chosen there) x target asset, the Sharpe (and total return) of the
    unchanged params on the target's OOS span."""
    title = (f"Transfer of {strategy}: params chosen on a row's asset, traded on a column's OOS span "
             "(Sharpe · return)")
    frame = result.transfer_matrix(strategy, "sharpe")
    if frame.empty:
        return empty_figure("No transfer backtest", title=title)
    order = dataset_order(result)
    frame = _ordered(frame.astype(float), order, order)
    in_sample = result.in_sample(strategy)  # (the diagonal, and one market under two names or cut two ways)
    own = np.array([[(s, t) in in_sample for t in frame.columns] for s in frame.index])
    # the return beside the Sharpe: "kept" counts positive returns (a Sharpe and a return can differ in sign)
    returns = {(t["source"], t["target"]): t.get("total_return") for t in result.transfer if t["strategy"] == strategy}
    # "in sample" on a line of its own: on one line the cell's text outgrew it and was clipped at both
    # ends ("2.57 · 55.19 % (own: in sample)" read "7 · 55.19 % (own: in sample)", a Sharpe of 7)
    text = [[_num(frame.loc[s, t]) + _return_note(returns.get((s, t)))
             + ("<br>own: in sample" if s == t else "<br>same candles: in sample" if (s, t) in in_sample else "")
             for t in frame.columns] for s in frame.index]
    # the diagonal is no out-of-sample figure (the params were chosen on a period holding that span):
    # grey, outside the OOS Sharpe colour scale
    fig = _heatmap(frame.mask(own), [[x if not o else "" for x, o in zip(row, flags)] for row, flags in zip(text, own)],
                   title, "target asset (traded on)", "source asset (params from)",
                   "params from %{y}'s whole period<br>traded on %{x}'s OOS span (out of sample by asset, not by "
                   "time)<br>Sharpe %{z:.3f}<extra></extra>")
    fig.add_trace(go.Heatmap(  # (its text only on the diagonal: Plotly writes a gap's text too, over the OOS cell)
        z=np.where(own, 0.0, np.nan), x=[str(c) for c in frame.columns], y=[str(i) for i in frame.index],
        text=[[x if o else "" for x, o in zip(row, flags)] for row, flags in zip(text, own)],
        texttemplate="%{text}", textfont=dict(size=cell_font(len(frame.columns))),
        colorscale=[[0, IN_SAMPLE_GREY], [1, IN_SAMPLE_GREY]],
        showscale=False, hoverongaps=False, name="in sample",
        hovertemplate="params from %{y}, chosen on its whole period<br>traded on %{x}'s OOS span: in sample<br>"
                      "Sharpe %{text}<extra></extra>"))
    return fig
