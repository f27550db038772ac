"""Numba kernels for the built-in indicators.

Every kernel is a plain ``@njit(cache=True, nogil=True)`` function over 1-D float64
arrays and returns one float64 array per output line, NaN during warm-up. The formulas
are those of SPEC section 2.

Missing values
--------------
* Rolling windows (``sma``, ``rolling_std``, ``rolling_max``, ``rolling_min``, the
  Bollinger statistics, Donchian) output NaN for any window that contains a NaN
  (pandas ``rolling(n)`` with ``min_periods=n`` behaves the same way).
* Recursive smoothers (``ema``, ``rma`` and everything built on them) seed on the
  first ``n`` *consecutive* valid values: the seed is their mean, written at the last
  of them. Leading NaNs (e.g. the warm-up of a MACD line fed to its signal EMA) thus
  simply shift the seed. A NaN met after seeding yields NaN at that bar and leaves the
  state untouched; the recursion resumes on the next valid value.

Warm-up (number of leading NaNs on a fully valid input)
-------------------------------------------------------
``sma``/``ema``/``rma``/``rolling_std``/``rolling_max``/``rolling_min``: ``n-1``;
``true_range``: 0; ``atr``: ``n-1``; ``bollinger``: ``n-1``; ``rsi``: ``n``;
``macd``: line ``max(fast, slow)-1``, signal and hist ``max(fast, slow)+signal-2``;
``adx``: +DI/-DI ``n``, ADX ``2n-1``; ``supertrend``: ``n-1``; ``donchian``: ``n``.

Numerical stability
-------------------
Rolling sums are O(N): the window sums of ``x - K`` and ``(x - K)**2`` are slid with
Kahan-compensated additions, where the shift ``K`` is a value of a recent window;
every ``max(n, 64)`` bars (and whenever a window becomes valid again after a NaN, or
the error bound of the running sums grows past ~1e-11 of the variance) the sums are
recomputed from scratch over the window and ``K`` is re-based. Shifting by a nearby data value
removes the cancellation that ruins the naive ``E[x^2] - E[x]^2`` on large offsets
(prices around 1e6 with unit noise keep ~1e-11 relative accuracy or better).
A window of identical values gives a mean equal to that value and a sigma of exactly 0.

Zero sigma
----------
Bollinger ``z`` and ``pctb`` are NaN where sigma == 0 (a window of identical closes:
the band has no width, so neither ratio is defined); ``width`` is 0 there and
``upper == lower == mid``.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

# ATR smoothing method codes (argument ``method`` of :func:`atr`).
ATR_WILDER = 0  #: RMA (Wilder) of the true range, the default
ATR_EMA = 1  #: EMA of the true range
ATR_SMA = 2  #: SMA of the true range
ATR_METHODS = {"wilder": ATR_WILDER, "ema": ATR_EMA, "sma": ATR_SMA}

_MIN_RECOMPUTE = 64  # rolling sums are rebuilt at least every max(n, 64) bars

_NJIT = dict(cache=True, nogil=True)


# --------------------------------------------------------------------------- rolling
@njit(cache=True, nogil=True, inline="always")
def _kahan_add(total, carry, value):
    """Kahan-compensated ``total + value``: returns the new (total, carry)."""
    y = value - carry
    t = total + y
    return t, (t - total) - y


@njit(**_NJIT)
def _window_sums(x, start, stop, k, want_std):
    """Kahan sums of (x - k) and (x - k)**2 over x[start:stop], and the sum of |x - k|."""
    s1 = 0.0
    c1 = 0.0
    s2 = 0.0
    c2 = 0.0
    a1 = 0.0
    for j in range(start, stop):
        d = x[j] - k
        a1 += abs(d)
        y = d - c1
        t = s1 + y
        c1 = (t - s1) - y
        s1 = t
        if want_std:
            y = d * d - c2
            t = s2 + y
            c2 = (t - s2) - y
            s2 = t
    return s1, s2, a1


@njit(cache=True, nogil=True, inline="always")
def _rebuilt(x, i, n, want_std):
    """The running state of :func:`_rolling_moments` rebuilt from the window ending at ``i``
    around ``K = x[i]``: ``(k, s1, c1, s2, c2, acc, acc1, since)``, Kahan carries and the
    bars since a rebuild at zero."""
    k = x[i]
    s1, s2, acc1 = _window_sums(x, i - n + 1, i + 1, k, want_std)
    return k, s1, 0.0, s2, 0.0, s2, acc1, 0


@njit(**_NJIT)
def _rolling_moments(x, n, want_std):
    """Rolling mean and (if ``want_std``) population std over windows of ``n``.

    Returns ``(mean, std)``; ``std`` is an empty array when not requested. The mean is
    computed by the same arithmetic in both cases, so ``sma`` and the Bollinger middle
    band are bitwise identical, except after a rebuild that only the variance's accuracy
    asks for (below).

    Sums are of ``d = x - K`` with ``K`` a value of a recent window (an exact subtraction
    for nearby values), slid with Kahan compensation and rebuilt from the window every
    ``max(n, 64)`` bars. Kahan's error is bounded by ~2 eps times the sum of the absolute
    terms added since the last rebuild (``acc``); when that bound, plus the rounding of
    ``S2/n - (S1/n)**2``, could exceed ~1e-11 of the variance (a calm window after a
    large move, a mean drifting away from ``K``), the window is rebuilt around
    ``K = x[i]`` at once; so is a window whose mean's bound (2 eps times the sum of the
    absolute terms added to the first sum, the window's own included) could exceed ~1e-11
    of the mean (a spike far larger than the prices leaving the window). Those extra
    rebuilds draw on a work budget of 2 element visits per bar, so the kernel stays O(N)
    on any input.
    """
    if n < 1:
        raise ValueError("window length n must be >= 1")
    size = x.shape[0]
    mean = np.full(size, np.nan)
    std = np.full(size if want_std else 0, np.nan)
    period = n if n > _MIN_RECOMPUTE else _MIN_RECOMPUTE
    inv_n = 1.0 / n
    eps = 2.220446049250313e-16
    tol = 8.0 * eps * n
    if tol < 1e-11:
        tol = 1e-11
    budget = 0.0
    last_nan = -1
    same_run = 0
    since = 0
    k = 0.0
    s1 = 0.0
    c1 = 0.0
    s2 = 0.0
    c2 = 0.0
    acc = 0.0  # sum of |terms| added to s2 since the last rebuild
    acc1 = 0.0  # ... to s1, the window's own at the rebuild included
    for i in range(size):
        budget += 2.0
        v = x[i]
        if math.isnan(v):
            last_nan = i
            same_run = 0
            continue
        if same_run > 0 and v == x[i - 1]:
            same_run += 1
        else:
            same_run = 1
        if i - last_nan < n:
            continue
        if i - last_nan == n or since >= period:
            k, s1, c1, s2, c2, acc, acc1, since = _rebuilt(x, i, n, want_std)
        else:
            d_in = v - k
            d_out = x[i - n] - k
            acc1 += abs(d_in) + abs(d_out)
            s1, c1 = _kahan_add(s1, c1, d_in)
            s1, c1 = _kahan_add(s1, c1, -d_out)
            if want_std:
                q_in = d_in * d_in
                q_out = d_out * d_out
                acc += q_in + q_out
                s2, c2 = _kahan_add(s2, c2, q_in)
                s2, c2 = _kahan_add(s2, c2, -q_out)
            since += 1
        if same_run >= n:
            # a window of identical values: exact mean, sigma exactly 0
            mean[i] = v
            if want_std:
                std[i] = 0.0
            continue
        m = s1 * inv_n
        # the mean's own bound first (a term far larger than the window's values, a spike, left
        # it: Kahan's carry of it could exceed ~1e-11 of the mean; the same test in both modes,
        # so sma and the Bollinger mid rebuild together), then the variance's
        rebuild = since > 0 and budget >= n and 4.0 * eps * acc1 * inv_n > tol * (abs(k) + abs(m))
        if want_std and not rebuild:
            rebuild = since > 0 and budget >= n and 4.0 * eps * acc * inv_n > tol * (s2 * inv_n - m * m)
        if rebuild:
            budget -= n
            k, s1, c1, s2, c2, acc, acc1, since = _rebuilt(x, i, n, want_std)
            m = s1 * inv_n
        if want_std:
            var = s2 * inv_n - m * m
            std[i] = math.sqrt(var) if var > 0.0 else 0.0
        mean[i] = k + m
    return mean, std


@njit(**_NJIT)
def sma(x, n):
    """Simple moving average of the last ``n`` values (NaN for the first ``n-1``)."""
    return _rolling_moments(x, n, False)[0]


@njit(**_NJIT)
def rolling_std(x, n):
    """Population (ddof 0) standard deviation of the last ``n`` values."""
    return _rolling_moments(x, n, True)[1]


@njit(**_NJIT)
def rolling_mean_std(x, n):
    """``(mean, std)`` of the last ``n`` values in one pass: the shared intermediate of a
    Bollinger grid (one call per period, reused for every ``k``)."""
    return _rolling_moments(x, n, True)


@njit(**_NJIT)
def _rolling_extreme(x, n, take_max):
    if n < 1:
        raise ValueError("window length n must be >= 1")
    size = x.shape[0]
    out = np.full(size, np.nan)
    dq = np.empty(size, dtype=np.int64)  # monotonic deque of indices
    head = 0
    tail = 0
    last_nan = -1
    for i in range(size):
        v = x[i]
        if math.isnan(v):
            last_nan = i
            head = 0
            tail = 0
            continue
        if take_max:
            while tail > head and x[dq[tail - 1]] <= v:
                tail -= 1
        else:
            while tail > head and x[dq[tail - 1]] >= v:
                tail -= 1
        dq[tail] = i
        tail += 1
        if dq[head] <= i - n:
            head += 1
        if i - last_nan >= n:
            out[i] = x[dq[head]]
    return out


@njit(**_NJIT)
def rolling_max(x, n):
    """Highest value of the last ``n`` values, current bar included (monotonic deque, O(N))."""
    return _rolling_extreme(x, n, True)


@njit(**_NJIT)
def rolling_min(x, n):
    """Lowest value of the last ``n`` values, current bar included (monotonic deque, O(N))."""
    return _rolling_extreme(x, n, False)


# ------------------------------------------------------------------------- recursive
@njit(**_NJIT)
def _ewm(x, n, alpha):
    """Recursive smoother y = (1-alpha)*y + alpha*x seeded with the mean of the first ``n``
    consecutive valid values (written at the last of them)."""
    if n < 1:
        raise ValueError("period n must be >= 1")
    size = x.shape[0]
    out = np.full(size, np.nan)
    beta = 1.0 - alpha
    run = 0
    seeded = False
    y = 0.0
    for i in range(size):
        v = x[i]
        if math.isnan(v):
            run = 0
            continue
        if seeded:
            y = beta * y + alpha * v
            out[i] = y
            continue
        run += 1
        if run == n:
            s = 0.0
            for j in range(i - n + 1, i + 1):
                s += x[j]
            y = s / n
            out[i] = y
            seeded = True
    return out


@njit(**_NJIT)
def ema(x, n):
    """Exponential moving average, alpha = 2/(n+1), seeded with SMA(n) at bar n-1."""
    return _ewm(x, n, 2.0 / (n + 1.0))


@njit(**_NJIT)
def rma(x, n):
    """Wilder's moving average, alpha = 1/n, seeded with SMA(n) at bar n-1."""
    return _ewm(x, n, 1.0 / n)


# ------------------------------------------------------------------------- range/ATR
@njit(**_NJIT)
def true_range(h, l, c):
    """max(h-l, |h-prev_c|, |l-prev_c|); TR[0] = h[0]-l[0] (also where prev_c is NaN)."""
    size = h.shape[0]
    out = np.empty(size)
    for i in range(size):
        r = h[i] - l[i]
        if i > 0:
            pc = c[i - 1]
            if not math.isnan(pc):
                a = abs(h[i] - pc)
                b = abs(l[i] - pc)
                if a > r:
                    r = a
                if b > r:
                    r = b
        out[i] = r
    return out


@njit(**_NJIT)
def smooth(x, n, method):
    """Smooth ``x`` with the ATR method code: ATR_WILDER (RMA), ATR_EMA or ATR_SMA."""
    if method == ATR_WILDER:
        return rma(x, n)
    if method == ATR_EMA:
        return ema(x, n)
    if method == ATR_SMA:
        return sma(x, n)
    raise ValueError("unknown ATR method code (use ATR_WILDER, ATR_EMA or ATR_SMA)")


@njit(**_NJIT)
def atr(h, l, c, n, method):
    """Average true range: ``method`` ATR_WILDER (0, RMA), ATR_EMA (1) or ATR_SMA (2) of TR."""
    return smooth(true_range(h, l, c), n, method)


# ---------------------------------------------------------------------------- bands
@njit(**_NJIT)
def bollinger_from_stats(close, mid, sigma, k):
    """Bollinger lines from a precomputed rolling mean/std (see :func:`rolling_mean_std`).

    Returns ``(mid, upper, lower, z, pctb, width)``; ``mid`` is the array passed in.
    ``z`` and ``pctb`` are NaN where sigma == 0 (or the band has zero width, k == 0).
    """
    size = close.shape[0]
    upper = np.empty(size)
    lower = np.empty(size)
    z = np.full(size, np.nan)
    pctb = np.full(size, np.nan)
    width = np.empty(size)
    for i in range(size):
        m = mid[i]
        s = sigma[i]
        up = m + k * s
        lo = m - k * s
        upper[i] = up
        lower[i] = lo
        band = up - lo
        if s > 0.0:
            z[i] = (close[i] - m) / s
        if band > 0.0:
            pctb[i] = (close[i] - lo) / band
        width[i] = band / m if m != 0.0 else np.nan
    return mid, upper, lower, z, pctb, width


@njit(**_NJIT)
def bollinger(close, n, k):
    """Bollinger(n, k) -> (mid, upper, lower, z, pctb, width); population sigma."""
    mid, sigma = rolling_mean_std(close, n)
    return bollinger_from_stats(close, mid, sigma, k)


@njit(**_NJIT)
def donchian(h, l, n):
    """Donchian(n) -> (upper, lower, mid): highest high / lowest low of the previous ``n``
    bars, the current bar excluded (NaN for the first ``n`` bars)."""
    size = h.shape[0]
    hi = rolling_max(h, n)
    lo = rolling_min(l, n)
    upper = np.full(size, np.nan)
    lower = np.full(size, np.nan)
    mid = np.full(size, np.nan)
    for i in range(1, size):
        upper[i] = hi[i - 1]
        lower[i] = lo[i - 1]
        mid[i] = 0.5 * (hi[i - 1] + lo[i - 1])
    return upper, lower, mid


# -------------------------------------------------------------------------- momentum
@njit(**_NJIT)
def gains_losses(close):
    """Per-bar gain max(dc, 0) and loss max(-dc, 0); index 0 (and NaN changes) are NaN."""
    size = close.shape[0]
    gain = np.full(size, np.nan)
    loss = np.full(size, np.nan)
    for i in range(1, size):
        d = close[i] - close[i - 1]
        if math.isnan(d):
            continue
        gain[i] = d if d > 0.0 else 0.0
        loss[i] = -d if d < 0.0 else 0.0
    return gain, loss


@njit(**_NJIT)
def rsi_from_gains_losses(gain, loss, n):
    """RSI from gain/loss series: 100 * RMA(gain) / (RMA(gain) + RMA(loss)).

    Equal to 100 - 100/(1 + RS). A window with no loss gives 100; a window with no move
    at all (both averages 0) gives 50.
    """
    ag = rma(gain, n)
    al = rma(loss, n)
    size = gain.shape[0]
    out = np.full(size, np.nan)
    for i in range(size):
        g = ag[i]
        s = g + al[i]
        if math.isnan(s):
            continue
        out[i] = 100.0 * g / s if s > 0.0 else 50.0
    return out


@njit(**_NJIT)
def rsi(close, n):
    """Wilder RSI(n): RMA(n) of gains over RMA(n) of losses (valid from bar ``n``)."""
    gain, loss = gains_losses(close)
    return rsi_from_gains_losses(gain, loss, n)


@njit(**_NJIT)
def macd_from_emas(fast_ema, slow_ema, signal):
    """MACD lines from precomputed EMAs -> (macd, signal, hist)."""
    line = fast_ema - slow_ema
    sig = ema(line, signal)
    return line, sig, line - sig


@njit(**_NJIT)
def macd(close, fast, slow, signal):
    """MACD(fast, slow, signal) -> (macd, signal, hist); signal = EMA(signal) of the MACD
    line, seeded on its first ``signal`` valid values."""
    return macd_from_emas(ema(close, fast), ema(close, slow), signal)


@njit(**_NJIT)
def directional_movement(h, l, c):
    """(+DM, -DM, TR) per bar for ADX; index 0 is NaN in all three (no previous bar).

    +DM = up if up > down and up > 0 else 0, -DM = down if down > up and down > 0 else 0,
    with up = h - prev_h, down = prev_l - l.
    """
    size = h.shape[0]
    pdm = np.full(size, np.nan)
    mdm = np.full(size, np.nan)
    tr = np.full(size, np.nan)
    for i in range(1, size):
        up = h[i] - h[i - 1]
        dn = l[i - 1] - l[i]
        if math.isnan(up) or math.isnan(dn) or math.isnan(c[i - 1]):
            continue
        pdm[i] = up if (up > dn and up > 0.0) else 0.0
        mdm[i] = dn if (dn > up and dn > 0.0) else 0.0
        r = h[i] - l[i]
        a = abs(h[i] - c[i - 1])
        b = abs(l[i] - c[i - 1])
        if a > r:
            r = a
        if b > r:
            r = b
        tr[i] = r
    return pdm, mdm, tr


@njit(**_NJIT)
def adx_from_dm(pdm, mdm, tr, n):
    """ADX(n) from (+DM, -DM, TR) -> (adx, plus_di, minus_di).

    +DI = 100 RMA(+DM)/RMA(TR) (0 where RMA(TR) == 0), likewise -DI;
    DX = 100 |+DI - -DI| / (+DI + -DI) (0 where both are 0); ADX = RMA(n) of DX.
    Wilder's running sums give the same ratios as these running means.
    """
    sp = rma(pdm, n)
    sm = rma(mdm, n)
    st = rma(tr, n)
    size = pdm.shape[0]
    pdi = np.full(size, np.nan)
    mdi = np.full(size, np.nan)
    dx = np.full(size, np.nan)
    for i in range(size):
        t = st[i]
        if math.isnan(t) or math.isnan(sp[i]) or math.isnan(sm[i]):
            continue
        if t > 0.0:
            p = 100.0 * sp[i] / t
            m = 100.0 * sm[i] / t
        else:
            p = 0.0
            m = 0.0
        pdi[i] = p
        mdi[i] = m
        s = p + m
        dx[i] = 100.0 * abs(p - m) / s if s > 0.0 else 0.0
    return rma(dx, n), pdi, mdi


@njit(**_NJIT)
def adx(h, l, c, n):
    """Wilder ADX(n) -> (adx, plus_di, minus_di); DI valid from bar n, ADX from 2n-1."""
    pdm, mdm, tr = directional_movement(h, l, c)
    return adx_from_dm(pdm, mdm, tr, n)


# ------------------------------------------------------------------------ SuperTrend
@njit(**_NJIT)
def supertrend_from_atr(h, l, c, atr_values, mult):
    """SuperTrend lines from a precomputed ATR -> (line, direction).

    Basic bands hl2 -/+ mult*ATR. Final bands carry:
    ``upper = basic_upper if basic_upper < upper[i-1] or close[i-1] > upper[i-1] else upper[i-1]``
    ``lower = basic_lower if basic_lower > lower[i-1] or close[i-1] < lower[i-1] else lower[i-1]``
    (on the first valid bar, final = basic). Direction +1 (up trend, line = final lower
    band) or -1 (down trend, line = final upper band). The first valid bar starts as -1
    (as TradingView's ``ta.supertrend`` does); afterwards a down trend turns up when
    close > final upper and an up trend turns down when close < final lower.
    NaN during the ATR warm-up.
    """
    size = h.shape[0]
    line = np.full(size, np.nan)
    direction = np.full(size, np.nan)
    fu = np.nan
    fl = np.nan
    d = 0.0
    have_prev = False
    for i in range(size):
        a = atr_values[i]
        if math.isnan(a):
            have_prev = False
            continue
        mid = 0.5 * (h[i] + l[i])
        bu = mid + mult * a
        bl = mid - mult * a
        if not have_prev:
            fu = bu
            fl = bl
            d = -1.0
            have_prev = True
        else:
            pc = c[i - 1]
            if bu < fu or pc > fu:
                fu = bu
            if bl > fl or pc < fl:
                fl = bl
            if d < 0.0:
                if c[i] > fu:
                    d = 1.0
            else:
                if c[i] < fl:
                    d = -1.0
        direction[i] = d
        line[i] = fl if d > 0.0 else fu
    return line, direction


@njit(**_NJIT)
def supertrend(h, l, c, n, mult):
    """SuperTrend(n, mult) over a Wilder ATR(n) -> (line, direction)."""
    return supertrend_from_atr(h, l, c, atr(h, l, c, n, ATR_WILDER), mult)
