"""The stage timings of a run as a small horizontal bar chart (pure: timings in, figure out).

``timings`` is what :meth:`threadx.timings.Stopwatch.record` stores (a backtest's
``meta["timings"]``, a sweep's ``manifest["timings"]``, a walk-forward's
``meta["timings"]``). The run's own stages are blue; the workers' stages (seconds summed
over the workers, not wall time) orange, below them. The hint goes beside the chart
(:func:`threadx.timings.hint`).
"""
from __future__ import annotations

from typing import Any, Mapping

import plotly.graph_objects as go

from threadx.timings import label, shares
from threadx.ui.charts import FRONT_COLOR, LINE_COLOR, _new_figure, empty_figure


def timings_figure(timings: Mapping[str, Any] | None, title: str = "Where the time went") -> go.Figure:
    """One bar per stage (seconds, with its share of the run); the workers' stages after them."""
    if not timings or not timings.get("stages"):
        return empty_figure("No timings recorded for this run (made before they were)", title=title)
    rows = [(label(name), sec, share, "run") for name, sec, share in shares(timings["stages"])]
    rows += [(f"workers: {label(name)}", sec, share, "workers")
             for name, sec, share in shares(timings.get("workers") or {})]
    fig = _new_figure(height=int(90 + 26 * len(rows)), margin=dict(l=10, r=20, t=40, b=30), showlegend=False,
                      bargap=0.3)
    for kind, color, what, of in (("run", LINE_COLOR, "of the stages", ""),
                                  ("workers", FRONT_COLOR, "of the workers' time", " of workers' time")):
        part = [r for r in rows if r[3] == kind]
        if not part:
            continue
        # (beside the bar, at the axis labels' size: inside a long bar Plotly shrank it to about 6 px)
        fig.add_trace(go.Bar(
            y=[r[0] for r in part], x=[r[1] for r in part], orientation="h", marker=dict(color=color),
            text=[f"{r[1]:.3g} s · {r[2] * 100:.0f} %{of}" for r in part], textposition="outside",
            cliponaxis=False, textfont=dict(size=12),
            hovertemplate=f"%{{y}}: %{{x:.3f}} s, %{{customdata:.0f}} % {what}<extra></extra>",
            customdata=[r[2] * 100 for r in part],
        ))
    wall = timings.get("wall_s")
    text = title + (f" ({wall:.3g} s wall" + ("; workers' seconds are summed over workers)" if timings.get("workers")
                                               else ")") if isinstance(wall, (int, float)) else "")
    fig.update_layout(title=dict(text=text, font=dict(size=13), x=0.01, xanchor="left"))
    fig.update_yaxes(autorange="reversed", type="category", automargin=True)
    longest = max(r[1] for r in rows)
    fig.update_xaxes(title_text="seconds", range=[0, longest * 1.35 if longest > 0 else 1])  # room for the labels
    return fig
