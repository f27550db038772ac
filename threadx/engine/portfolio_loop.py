"""The portfolio bar loop: several runners (a strategy on its own bars) on one UTC timeline.

Each runner keeps its own engine state (its sub-account: the capital its weight gives it)
and is advanced by the engine's own :func:`threadx.engine.kernel.step`, bar by bar, so a
runner alone is exactly its single backtest. What the runners share is checked between
their bars:

- at each tick of the timeline (the union of the runners' bar times), the runners that have
  a bar there step it in the order they were given;
- before a runner's bar, its gates are set (see ``layout.S_ROOM_GUARD``): the margin the
  account may hold with a new leg under the **global margin guard** (``guard`` x the
  portfolio equity at the previous tick, less the other runners' margin: the larger of
  theirs when the tick began and theirs now, as a runner stepped earlier in the tick may have
  closed at its bar's close, after this bar's open) and under its **cap** (``cap`` x that
  equity), and whether the **kill switch** holds entries; the engine refuses a leg that
  would pass them and counts it by reason;
- after the tick, the portfolio equity (the sum of the runners' last marks) is recorded
  with the margin in use and the positions open, and the kill switch is tested: when the
  equity falls ``kill_dd`` or more below its highest mark of the last ``window_ns`` (marks
  since the last cooldown ended only), new legs are refused from that close (the tick's time
  and one bar) until ``cooldown_ns`` later: a cooldown of one bar holds the next bar's open.

The portfolio's metrics are the engine's (:func:`~threadx.engine.kernel.finalize_metrics`):
the return, Sharpe and drawdown figures from the portfolio equity at each tick, with the
arithmetic of ``mark_to_market``, and the trade figures summed over the runners.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from threadx.engine.kernel import finalize_metrics, init_state, step, track_drawdown
from threadx.engine.layout import (
    N_METRICS,
    N_PARAMS,
    N_STATE,
    N_TRADE_COLS,
    P_BARS_PER_YEAR,
    P_SPAN_BARS,
    P_INITIAL_CAPITAL,
    S_BARS_HELD,
    S_BLOCKED,
    S_CYCLE_WINS,
    S_DIR,
    S_DOWN_SQ,
    S_EQ_PREV,
    S_EXPOSED_BARS,
    S_FEES,
    S_FUNDING_TOTAL,
    S_GROSS_LOSS,
    S_GROSS_PROFIT,
    S_LARGEST_LOSS,
    S_LARGEST_WIN,
    S_LIQUIDATED,
    S_MARGIN,
    S_MAX_DD,
    S_MAX_DD_BARS,
    S_N_CYCLES,
    S_N_LEGS,
    S_N_LONG,
    S_N_LOSSES,
    S_N_SHORT,
    S_N_TRADES,
    S_N_WINS,
    S_PEAK,
    S_PEAK_I,
    S_PNL_M2,
    S_PNL_MEAN,
    S_RET_N,
    S_RET_SUM,
    S_RET_SUMSQ,
    S_ROOM_CAP,
    S_ROOM_GUARD,
    S_SKIPPED,
    S_AMBIGUOUS,
)

# the per-tick series the loop returns, one column each
TICK_COLUMNS = ("equity", "margin", "positions", "legs", "blocked")
N_TICK_COLS = len(TICK_COLUMNS)
# a kill-switch event: the tick it fired at, the drawdown, the window's peak, the equity, the tick entries resume at
EVENT_COLUMNS = ("tick", "drawdown", "window_peak", "equity", "resume_tick")
N_EVENT_COLS = len(EVENT_COLUMNS)

_SUMMED = (S_N_WINS, S_N_LOSSES, S_GROSS_PROFIT, S_GROSS_LOSS, S_FEES, S_FUNDING_TOTAL, S_BARS_HELD, S_SKIPPED,
           S_AMBIGUOUS, S_N_LONG, S_N_SHORT, S_N_CYCLES, S_CYCLE_WINS, S_LIQUIDATED)


@njit(cache=True, nogil=True)
def run_portfolio(o, h, l, c, sig, atr, blo, bmid, bhi, funding, bar_start, params, bar_tick, tick_ns,
                  trade_start, guard, cap, kill_dd, window_ns, cooldown_ns, bar_ns, span):
    """Run the runners of a portfolio together (module docstring).

    Runner ``r``'s bars are ``[bar_start[r], bar_start[r + 1])`` of the concatenated arrays
    (``o`` .. ``funding``, every line full length), its param vector ``params[r]`` (its
    sub-account's capital in ``P_INITIAL_CAPITAL``), ``bar_tick``: the timeline tick of each
    bar (ticks in time order, ``tick_ns`` their times), its trade rows
    ``[trade_start[r], trade_start[r + 1])``. ``guard`` / ``cap``: fractions of the portfolio
    equity (<= 0: off); ``kill_dd`` (<= 0: off), ``window_ns``, ``cooldown_ns``: the kill switch,
    which fires on a tick's close marks, ``bar_ns`` after the tick's time (its bars' length), and
    holds the legs that would open from then until ``cooldown_ns`` later. ``span``: the bars the
    timeline spans (:func:`threadx.data.grid.span_bars`), the years of the portfolio's CAGR.

    Returns (portfolio metrics, the runners' states, their metrics, the trade rows, the
    per-bar equity of every runner, the per-tick series (``TICK_COLUMNS``), the kill-switch
    events (``EVENT_COLUMNS``), the runners' equity and margin at each tick).
    """
    n_run = params.shape[0]
    n_ticks = tick_ns.shape[0]
    states = np.empty((n_run, N_STATE))
    metrics = np.empty((n_run, N_METRICS))
    trades = np.empty((trade_start[n_run], N_TRADE_COLS))
    equity = np.empty(c.shape[0])
    ticks = np.zeros((n_ticks, N_TICK_COLS))
    runner_eq = np.empty((n_ticks, n_run))
    runner_margin = np.empty((n_ticks, n_run))
    events = np.empty((n_ticks, N_EVENT_COLS))
    n_events = 0
    nxt = np.zeros(n_run, dtype=np.int64)  # each runner's next bar (offset from its start)
    margin_open = np.zeros(n_run)  # each runner's margin when the tick began
    total = 0.0
    for r in range(n_run):
        init_state(states[r], params[r])
        total += params[r][P_INITIAL_CAPITAL]
    # the portfolio's running figures, kept in a state vector like one account's
    pst = np.zeros(N_STATE)
    pst[S_EQ_PREV] = total
    pst[S_PEAK] = total
    pst[S_PEAK_I] = -1.0
    pst[S_LARGEST_WIN] = -np.inf
    pst[S_LARGEST_LOSS] = np.inf
    pp = np.zeros(N_PARAMS)
    pp[P_INITIAL_CAPITAL] = total
    pp[P_SPAN_BARS] = span
    for r in range(n_run):
        if params[r][P_BARS_PER_YEAR] > pp[P_BARS_PER_YEAR]:
            pp[P_BARS_PER_YEAR] = params[r][P_BARS_PER_YEAR]  # the finest timeframe's
    # the kill switch: a deque of ticks whose equity decreases (the window's maximum at its head)
    window = np.empty(n_ticks, dtype=np.int64)
    head = 0
    tail = 0
    blocked = False
    resume_ns = 0
    eq_last = total  # the portfolio equity at the previous tick's close
    for t in range(n_ticks):
        if blocked and tick_ns[t] >= resume_ns:
            blocked = False
            head = 0  # the window restarts: marks from before the cooldown no longer count
            tail = 0
        for r in range(n_run):
            margin_open[r] = states[r][S_MARGIN]
        for r in range(n_run):
            a = bar_start[r]
            n = bar_start[r + 1] - a
            i = nxt[r]
            if i >= n or bar_tick[a + i] != t:
                continue
            st = states[r]
            others = 0.0
            for q in range(n_run):
                if q != r:
                    # a runner that stepped this tick already: its legs opened count, the margin
                    # it freed counts from the next tick (its bar's close may come after this open)
                    held = states[q][S_MARGIN]
                    others += held if held > margin_open[q] else margin_open[q]
            st[S_ROOM_GUARD] = guard * eq_last - others if guard > 0.0 else np.inf
            st[S_ROOM_CAP] = cap * eq_last if cap > 0.0 else np.inf
            st[S_BLOCKED] = 1.0 if blocked else 0.0
            b = a + n
            tr = trades[trade_start[r]:trade_start[r + 1]]
            step(i, n, o[a:b], h[a:b], l[a:b], c[a:b], sig[a:b], atr[a:b], blo[a:b], bmid[a:b], bhi[a:b],
                 funding[a:b], params[r], st, tr, equity[a:b])
            nxt[r] = i + 1
        eq = 0.0
        margin = 0.0
        positions = 0.0
        legs = 0.0
        for r in range(n_run):
            st = states[r]
            runner_eq[t, r] = st[S_EQ_PREV]
            runner_margin[t, r] = st[S_MARGIN]
            eq += st[S_EQ_PREV]
            margin += st[S_MARGIN]
            if st[S_DIR] != 0.0:
                positions += 1.0
                legs += st[S_N_LEGS]
        ticks[t, 0] = eq
        ticks[t, 1] = margin
        ticks[t, 2] = positions
        ticks[t, 3] = legs
        ticks[t, 4] = 1.0 if blocked else 0.0
        mark_portfolio(t, eq, positions > 0.0, pst)
        eq_last = eq
        if kill_dd > 0.0 and not blocked:
            while tail > head and ticks[window[tail - 1], 0] <= eq:
                tail -= 1
            window[tail] = t
            tail += 1
            while tick_ns[window[head]] < tick_ns[t] - window_ns:
                head += 1
            peak = ticks[window[head], 0]
            if eq <= peak * (1.0 - kill_dd):
                blocked = True
                resume_ns = tick_ns[t] + bar_ns + cooldown_ns  # from the close it fired at
                events[n_events, 0] = t
                events[n_events, 1] = eq / peak - 1.0
                events[n_events, 2] = peak
                events[n_events, 3] = eq
                events[n_events, 4] = np.searchsorted(tick_ns, resume_ns)
                n_events += 1
    for r in range(n_run):
        finalize_metrics(states[r], params[r], bar_start[r + 1] - bar_start[r], metrics[r])
        add_trade_figures(pst, states[r])
    m = np.empty(N_METRICS)
    finalize_metrics(pst, pp, n_ticks, m)
    return m, states, metrics, trades, equity, ticks, events[:n_events].copy(), runner_eq, runner_margin


@njit(cache=True, nogil=True)
def mark_portfolio(t, eq, exposed, pst):
    """The running return and drawdown figures after the portfolio equity ``eq`` at tick ``t``
    (``kernel.mark_to_market``'s arithmetic, in its order)."""
    if exposed:
        pst[S_EXPOSED_BARS] += 1.0
    prev = pst[S_EQ_PREV]
    pst[S_RET_N] += 1.0
    if eq != prev and prev > 0.0:
        r = eq / prev - 1.0
        pst[S_RET_SUM] += r
        pst[S_RET_SUMSQ] += r * r
        loss = r if r < 0.0 else 0.0
        pst[S_DOWN_SQ] += loss * loss
    pst[S_PEAK], pst[S_PEAK_I], pst[S_MAX_DD], pst[S_MAX_DD_BARS] = track_drawdown(
        t, eq, pst[S_PEAK], pst[S_PEAK_I], pst[S_MAX_DD], pst[S_MAX_DD_BARS])
    pst[S_EQ_PREV] = eq


@njit(cache=True, nogil=True)
def add_trade_figures(pst, st):
    """Fold one runner's trade figures into the portfolio's: counts and sums added, the
    largest win and loss kept, the trade PnL's mean and M2 merged (Chan et al.; a runner
    merged into none keeps its own figures bit for bit)."""
    nb = st[S_N_TRADES]
    if nb > 0.0:
        na = pst[S_N_TRADES]
        if na == 0.0:
            pst[S_PNL_MEAN] = st[S_PNL_MEAN]
            pst[S_PNL_M2] = st[S_PNL_M2]
        else:
            n = na + nb
            delta = st[S_PNL_MEAN] - pst[S_PNL_MEAN]
            pst[S_PNL_MEAN] += delta * nb / n
            pst[S_PNL_M2] += st[S_PNL_M2] + delta * delta * na * nb / n
        pst[S_N_TRADES] = na + nb
    for k in _SUMMED:
        pst[k] += st[k]
    if st[S_LARGEST_WIN] > pst[S_LARGEST_WIN]:
        pst[S_LARGEST_WIN] = st[S_LARGEST_WIN]
    if st[S_LARGEST_LOSS] < pst[S_LARGEST_LOSS]:
        pst[S_LARGEST_LOSS] = st[S_LARGEST_LOSS]
