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
from threadx.ui.charts import FRONT_COLOR, LINE_COLOR, _new_figure, _title, empty_figure


def _seconds(sec: float) -> str:
    """A stage's seconds as its bar reads them (3 digits; under a millisecond said so, where ``.3g``
    wrote 5.66e-05).

    >>> _seconds(1.6), _seconds(0.0223), _seconds(5.66e-05), _seconds(0.0)
    ('1.6 s', '0.0223 s', '< 0.001 s', '0 s')
    """
    return f"{sec:.3g} s" if sec >= 1e-3 or sec == 0 else "< 0.001 s"


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
            text=[f"{_seconds(r[1])} · {r[2] * 100:.0f} %{of}" for r in part], textposition="outside",
            cliponaxis=False, textfont=dict(size=12),
            hovertemplate=f"%{{y}}: %{{x:.3f}} s, %{{customdata:.0f}} % {what}<extra></extra>",
            customdata=[r[2] * 100 for r in part],
        ))
    wall = timings.get("wall_s")
    # the figures on a smaller line of their own: on one line they ran under the toolbar
    notes = [f"{_seconds(wall)} wall" + ("; workers' seconds are summed over workers" if timings.get("workers")
                                     else "")] if isinstance(wall, (int, float)) else []
    fig.update_layout(title=_title(title, notes), margin=dict(t=40 + 16 * len(notes)))
    fig.update_yaxes(autorange="reversed", type="category", automargin=True)
    longest = max(r[1] for r in rows)
    fig.update_xaxes(title_text="seconds", range=[0, longest * 1.35 if longest > 0 else 1])  # room for the labels
    return fig
