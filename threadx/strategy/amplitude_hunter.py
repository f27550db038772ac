"""amplitude_hunter ("BB Amplitude Rider"): a Bollinger spring-and-drive entry that rides the
move with a partial exit, optional pyramiding and an armed trailing exit (SPEC §4).

Entry (long; short mirrored everywhere): the regime filter holds (band width in the upper
``bbwidth_percentile_threshold`` percentile of its last ``bbwidth_lookback`` bars, volume
z-score over the previous ``volume_lookback`` bars >= threshold, optionally ADX >= threshold),
a "spring" (a close below the lower band in the previous ``spring_lookback`` bars), a MACD
histogram impulse (two negative bars, the second higher, then a positive one), %B inside
[pb_entry_min, pb_entry_max] (shorts: [1 - max, 1 - min]) and the amplitude score
w_width x width percentile + w_pb x %B + w_macd x MACD slope + w_volume x volume score >=
``amplitude_score_threshold``. Every term is causal and normalised with rolling statistics:
the MACD slope |hist[t] - hist[t-1]| by its maximum over the last ``score_lookback`` bars.

Exits: the nearer of an ATR stop (``sl_atr_multiplier`` x ATR of the signal bar from the fill)
and a band stop (``sl_band_pct`` of the way from the lower band to the middle band at the
signal bar); ``bip_partial_exit_pct`` of the position at the far band of the previous close
(BIP = mid + (mid - lower) = the upper band; the lower band for shorts), once per position;
the trailing exit (``trailing_type``: chandelier close < highest high of the previous
``chandelier_lookback`` bars - k x ATR; %B floor; MACD fade) counts once the position is armed
(a close beyond the far band, or a gain of ``trailing_activation_gain_r`` stop distances);
``max_hold_bars`` from the first fill. Pyramiding: up to ``pyramiding_max_adds`` legs of
``pyramiding_add_scale`` x the first leg, each on a close crossing above the upper band with a
positive, rising histogram.

The predecessor's bugs are not reproduced: the short side mirrors the long side (chandelier,
%B floor, partial target, score), partial exits credit cash and adds debit it (the engine's
legs), and the MACD slope uses a rolling, not a full-series, maximum. Its swing-low stop
anchor is replaced by the fill price (the engine's ATR stop); its ADX is Wilder's.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from threadx import aot
from threadx.strategy import (BAR_LABEL, SIG_ADD_LONG, SIG_ADD_SHORT, SIG_ENTER_LONG, SIG_ENTER_SHORT,
                              SIG_EXIT_LONG, SIG_EXIT_SHORT, Constraint, ExitRules, Levels, Param, SignalRule,
                              StrategySpec)

TRAILING_TYPES = ("chandelier", "pb_floor", "macd_fade")
_NO_LINE = np.empty(0)
_NO_LINE.flags.writeable = False  # like the bank's lines: one compiled signal kernel


@njit(cache=True, nogil=True)
def _width_percentile(width, t, lookback):
    """Share (x100) of the previous ``lookback`` band widths <= width[t]; NaN in the warm-up."""
    if t < lookback:
        return np.nan
    w = width[t]
    count = 0
    for k in range(t - lookback, t):
        x = width[k]
        if not (x == x):
            return np.nan
        if x <= w:
            count += 1
    return 100.0 * count / lookback


@njit(cache=True, nogil=True)
def _volume_z(volume, t, lookback):
    """(volume[t] - mean) / std of the previous ``lookback`` volumes (population std; 0 when flat)."""
    if t < lookback:
        return np.nan
    s = 0.0
    for k in range(t - lookback, t):
        s += volume[k]
    mean = s / lookback
    ss = 0.0
    for k in range(t - lookback, t):
        ss += (volume[k] - mean) ** 2
    sd = np.sqrt(ss / lookback)
    if not (sd > 0.0):
        return 0.0
    return (volume[t] - mean) / sd


@njit(cache=True, nogil=True)
def _slope_score(hist, t, lookback):
    """|hist[t] - hist[t-1]| over the largest such step of the last ``lookback`` bars (rolling,
    causal), in [0, 1]; NaN in the warm-up."""
    if t < lookback:
        return np.nan
    top = 0.0
    for k in range(t - lookback + 1, t + 1):
        step = abs(hist[k] - hist[k - 1])
        if not (step == step):
            return np.nan
        if step > top:
            top = step
    if top == 0.0:
        return 0.0
    return abs(hist[t] - hist[t - 1]) / top


@njit(cache=True, nogil=True)
def _clip01(x):
    return 0.0 if x < 0.0 else (1.0 if x > 1.0 else x)


@njit(cache=True, nogil=True)
def _any_beyond(close, band, t, lookback, below):
    """A close beyond ``band`` (below when ``below``) in the previous ``lookback`` bars."""
    for k in range(max(0, t - lookback), t):
        if (below and close[k] < band[k]) or (not below and close[k] > band[k]):
            return True
    return False


@njit(cache=True, nogil=True)
def amplitude_signals(close, volume, upper, lower, pctb, hist, atr, high_n, low_n, adx, use_adx,
                      width_lookback, width_threshold, volume_lookback, volume_threshold, adx_threshold,
                      spring_lookback, pb_min, pb_max, score_lookback, score_threshold,
                      w_width, w_pb, w_slope, w_volume, trailing, chandelier_mult, pb_floor, allow_short):
    """Entry, add and (armed) exit flags per bar, each from data up to that bar's close.
    ``trailing``: 0 chandelier, 1 %B floor, 2 MACD fade (index of TRAILING_TYPES)."""
    out = np.zeros(close.shape[0], np.uint8)
    _amplitude_row(close, volume, upper, lower, pctb, hist, atr, high_n, low_n, adx, use_adx, width_lookback,
                   width_threshold, volume_lookback, volume_threshold, adx_threshold, spring_lookback, pb_min, pb_max,
                   score_lookback, score_threshold, w_width, w_pb, w_slope, w_volume, trailing, chandelier_mult,
                   pb_floor, allow_short, out)
    return out


@njit(cache=True, nogil=True)
def amplitude_rows(lines, rows, values, out):
    """:func:`amplitude_signals` as a ``SignalRule.many`` (lines and params in the order of
    ``SPEC.signal_rule``; rows come zeroed)."""
    for j in range(rows.shape[0]):
        r = rows[j]
        v = values[j]
        _amplitude_row(lines[r[0]], lines[r[1]], lines[r[2]], lines[r[3]], lines[r[4]], lines[r[5]], lines[r[6]],
                       lines[r[7]], lines[r[8]], lines[r[9]], v[0] != 0, int(v[1]), v[2], int(v[3]), v[4], v[5],
                       int(v[6]), v[7], v[8], int(v[9]), v[10], v[11], v[12], v[13], v[14], int(v[15]), v[16], v[17],
                       v[18] != 0, out[j])


@njit(cache=True, nogil=True)
def _amplitude_row(close, volume, upper, lower, pctb, hist, atr, high_n, low_n, adx, use_adx,
                   width_lookback, width_threshold, volume_lookback, volume_threshold, adx_threshold,
                   spring_lookback, pb_min, pb_max, score_lookback, score_threshold,
                   w_width, w_pb, w_slope, w_volume, trailing, chandelier_mult, pb_floor, allow_short, out):
    n = close.shape[0]
    width = upper - lower
    for t in range(2, n):
        h0 = hist[t - 2]
        h1 = hist[t - 1]
        h2 = hist[t]
        pb = pctb[t]
        flag = 0
        # the trailing exit (the engine acts on it once the position is armed)
        if trailing == 0:
            a = atr[t]
            if high_n[t] == high_n[t] and a == a and close[t] < high_n[t] - chandelier_mult * a:
                flag |= SIG_EXIT_LONG
            if low_n[t] == low_n[t] and a == a and close[t] > low_n[t] + chandelier_mult * a:
                flag |= SIG_EXIT_SHORT
        elif trailing == 1:
            if pb == pb and pb < pb_floor:
                flag |= SIG_EXIT_LONG
            if pb == pb and pb > 1.0 - pb_floor:
                flag |= SIG_EXIT_SHORT
        else:
            if h2 < 0.0:
                flag |= SIG_EXIT_LONG
            if h2 > 0.0:
                flag |= SIG_EXIT_SHORT
        # adds: a close crossing beyond the far band with a histogram rising in the position's way
        if close[t] > upper[t] and close[t - 1] <= upper[t - 1] and h2 > 0.0 and h2 > h1:
            flag |= SIG_ADD_LONG
        if close[t] < lower[t] and close[t - 1] >= lower[t - 1] and h2 < 0.0 and h2 < h1:
            flag |= SIG_ADD_SHORT
        # entries
        impulse_long = h0 < 0.0 and h1 < 0.0 and h1 > h0 and h2 > 0.0
        impulse_short = allow_short and h0 > 0.0 and h1 > 0.0 and h1 < h0 and h2 < 0.0
        if (impulse_long or impulse_short) and pb == pb:
            wp = _width_percentile(width, t, width_lookback)
            vz = _volume_z(volume, t, volume_lookback)
            slope = _slope_score(hist, t, score_lookback)
            regime = wp >= width_threshold and vz >= volume_threshold
            if use_adx:
                regime = regime and adx[t] >= adx_threshold
            if regime and slope == slope:
                common = w_width * wp / 100.0 + w_slope * _clip01(slope) + w_volume * _clip01(vz / 3.0)
                if (impulse_long and pb_min <= pb <= pb_max and common + w_pb * _clip01(pb) >= score_threshold
                        and _any_beyond(close, lower, t, spring_lookback, True)):
                    flag |= SIG_ENTER_LONG
                elif (impulse_short and 1.0 - pb_max <= pb <= 1.0 - pb_min
                      and common + w_pb * _clip01(1.0 - pb) >= score_threshold
                      and _any_beyond(close, upper, t, spring_lookback, False)):
                    flag |= SIG_ENTER_SHORT
        out[t] = flag


def _indicators(p):
    needs = {
        "bb": ("bollinger", {"period": p["bb_period"], "std": p["bb_std"]}),
        "macd": ("macd", {"fast": p["macd_fast"], "slow": p["macd_slow"], "signal": p["macd_signal"]}),
        "atr": ("atr", {"period": p["atr_period"], "method": "wilder"}),
    }
    if p["trailing_type"] == "chandelier":
        needs["swing"] = ("donchian", {"period": p["chandelier_lookback"]})
    if p["use_adx_filter"]:
        needs["adx"] = ("adx", {"period": p["adx_period"]})
    return needs


def _signals(bars, ind, p):
    bb = ind["bb"]
    chandelier = "swing" in ind
    return aot.call(
        amplitude_signals,
        bars.close, bars.volume, bb["upper"], bb["lower"], bb["pctb"], ind["macd"]["hist"], ind["atr"]["value"],
        ind["swing"]["upper"] if chandelier else _NO_LINE, ind["swing"]["lower"] if chandelier else _NO_LINE,
        ind["adx"]["adx"] if "adx" in ind else _NO_LINE, bool(p["use_adx_filter"]),
        int(p["bbwidth_lookback"]), float(p["bbwidth_percentile_threshold"]), int(p["volume_lookback"]),
        float(p["volume_zscore_threshold"]), float(p["adx_threshold"]), int(p["spring_lookback"]),
        float(p["pb_entry_min"]), float(p["pb_entry_max"]), int(p["score_lookback"]),
        float(p["amplitude_score_threshold"]), float(p["w_width"]), float(p["w_pb"]), float(p["w_macd_slope"]),
        float(p["w_volume"]), TRAILING_TYPES.index(p["trailing_type"]), float(p["trailing_chandelier_atr_mult"]),
        float(p["trailing_pb_floor"]), bool(p["allow_short"]))


def _exits(p):
    bip = bool(p["use_bip_target"])
    return ExitRules(
        stop_atr=p["sl_atr_multiplier"],
        stop_band=p["sl_band_pct"],
        partial_tp_band=bip,
        reduce_fraction=p["bip_partial_exit_pct"] if bip else 0.0,
        arm_exits_r=p["trailing_activation_gain_r"],
        arm_exits_band=True,
        max_hold_bars=p["max_hold_bars"],
        sizing="risk",
        risk_per_trade=p["risk_per_trade"],
        leverage=p["leverage"],
        max_legs=1 + p["pyramiding_max_adds"],
        add_scale=p["pyramiding_add_scale"],
    )


def _levels(ind, p) -> Levels:
    bb = ind["bb"]
    return Levels(atr=ind["atr"]["value"], band_lo=bb["lower"], band_mid=bb["mid"], band_hi=bb["upper"])


def _overlays(p) -> dict[str, tuple[str, str]]:
    return {"BB mid": ("bb", "mid"), "BB upper": ("bb", "upper"), "BB lower": ("bb", "lower")}


def _pb_window_ordered(p) -> bool:
    return p["pb_entry_min"] <= p["pb_entry_max"]


def _macd_ordered(p) -> bool:
    return p["macd_fast"] < p["macd_slow"]


_SIG = "signals"
SPEC = StrategySpec(
    name="amplitude_hunter",
    description="Bollinger spring and MACD impulse in a wide-band, high-volume regime, scored by amplitude; "
    "ATR / band stop, partial exit at the far band, a trailing exit armed at the far band or a gain in R, "
    "optional pyramiding. Long and short, mirrored.",
    params=(
        Param("bb_period", "int", 20, 2, 500, 1, opt_range=(10, 50, 5), description="Bollinger length (bars)",
              feeds=("indicators", "signals", "levels"), indicator_labels=("bb",)),
        Param("bb_std", "float", 2.0, 0.5, 5.0, 0.25, opt_range=(1.5, 3.0, 0.25), description="band width in std",
              feeds=("indicators", "signals", "levels"), indicator_labels=("bb",)),
        Param("bbwidth_lookback", "int", 100, 10, 2000, 10,
              description="bars the band-width percentile ranks against", feeds=_SIG),
        Param("bbwidth_percentile_threshold", "float", 50.0, 0.0, 100.0, 5.0, opt_range=(30.0, 70.0, 10.0),
              description="regime: band-width percentile at least this", feeds=_SIG),
        Param("volume_lookback", "int", 50, 10, 2000, 10,
              description="bars of the volume z-score's mean and std", feeds=_SIG),
        Param("volume_zscore_threshold", "float", 0.5, -3.0, 5.0, 0.25, opt_range=(0.0, 1.5, 0.25),
              description="regime: volume z-score at least this", feeds=_SIG),
        Param("use_adx_filter", "bool", False, description="regime: also ADX >= adx_threshold",
              feeds=("indicators", "signals"), indicator_labels=("adx",)),
        Param("adx_period", "int", 14, 2, 200, 1, description="ADX length (bars)",
              feeds=("indicators", "signals"), indicator_labels=("adx",)),
        Param("adx_threshold", "float", 15.0, 0.0, 100.0, 5.0,
              description="regime: ADX at least this (with use_adx_filter)", feeds=_SIG),
        Param("spring_lookback", "int", 20, 1, 500, 1, opt_range=(5, 40, 5),
              description="bars a close beyond the band (the spring) may precede the entry", feeds=_SIG),
        Param("pb_entry_min", "float", 0.2, 0.0, 1.0, 0.05,
              description="entry window: %B at least this (shorts: at most 1 - this)", feeds=_SIG),
        Param("pb_entry_max", "float", 0.5, 0.0, 1.0, 0.05,
              description="entry window: %B at most this (shorts: at least 1 - this)", feeds=_SIG),
        Param("macd_fast", "int", 12, 2, 200, 1, description="MACD fast EMA",
              feeds=("indicators", "signals"), indicator_labels=("macd",)),
        Param("macd_slow", "int", 26, 3, 400, 1, description="MACD slow EMA",
              feeds=("indicators", "signals"), indicator_labels=("macd",)),
        Param("macd_signal", "int", 9, 2, 100, 1, description="MACD signal EMA",
              feeds=("indicators", "signals"), indicator_labels=("macd",)),
        Param("score_lookback", "int", 100, 10, 2000, 10,
              description="bars of the rolling maximum that normalises the MACD slope", feeds=_SIG),
        Param("amplitude_score_threshold", "float", 0.6, 0.0, 1.0, 0.05, opt_range=(0.4, 0.8, 0.1),
              description="entry: amplitude score at least this", feeds=_SIG),
        Param("w_width", "float", 0.3, 0.0, 1.0, 0.05, description="score weight of the band-width percentile",
              feeds=_SIG),
        Param("w_pb", "float", 0.2, 0.0, 1.0, 0.05, description="score weight of %B (1 - %B for shorts)",
              feeds=_SIG),
        Param("w_macd_slope", "float", 0.3, 0.0, 1.0, 0.05, description="score weight of the MACD slope",
              feeds=_SIG),
        Param("w_volume", "float", 0.2, 0.0, 1.0, 0.05, description="score weight of the volume z-score / 3",
              feeds=_SIG),
        Param("atr_period", "int", 14, 1, 200, 1, description="ATR length (bars)",
              feeds=("indicators", "signals", "levels"), indicator_labels=("atr",)),
        Param("sl_atr_multiplier", "float", 2.0, 0.1, 10.0, 0.25, opt_range=(1.0, 4.0, 0.5),
              description="ATR stop: this many ATRs of the signal bar from the fill", feeds="exits"),
        Param("sl_band_pct", "float", 0.37, 0.0, 1.0, 0.01, opt_range=(0.0, 0.6, 0.1),
              description="band stop: this fraction of the way from the lower band to the mid (nearer stop counts)",
              feeds="exits"),
        Param("trailing_type", "choice", "chandelier", choices=TRAILING_TYPES,
              description="trailing exit once armed: chandelier, %B floor or MACD fade",
              feeds=("indicators", "signals"), indicator_labels=("swing",)),
        Param("trailing_activation_gain_r", "float", 1.0, 0.0, 10.0, 0.25, opt_range=(0.5, 2.0, 0.5),
              description="arm the trailing exit at this gain in stop distances (0: at the far band only)",
              feeds="exits"),
        Param("chandelier_lookback", "int", 22, 2, 500, 1,
              description="chandelier: highest high of this many previous bars", feeds=("indicators", "signals"),
              indicator_labels=("swing",)),
        Param("trailing_chandelier_atr_mult", "float", 2.5, 0.1, 10.0, 0.25, opt_range=(1.5, 4.0, 0.5),
              description="chandelier: ATRs below the highest high", feeds=_SIG),
        Param("trailing_pb_floor", "float", 0.5, 0.0, 1.0, 0.05,
              description="%B floor: exit a long below it (a short above 1 - it)", feeds=_SIG),
        Param("use_bip_target", "bool", True, description="partial exit at the far band (BIP)", feeds="exits"),
        Param("bip_partial_exit_pct", "float", 0.5, 0.05, 1.0, 0.05, opt_range=(0.25, 0.75, 0.25),
              description="share of the position closed at BIP", feeds="exits"),
        Param("pyramiding_max_adds", "int", 0, 0, 2, 1, opt_range=(0, 2, 1),
              description="legs added on a close crossing the far band (0 = none)", feeds="exits"),
        Param("pyramiding_add_scale", "float", 0.5, 0.1, 1.0, 0.1,
              description="an added leg's size as a share of the first leg's", feeds="exits"),
        Param("risk_per_trade", "float", 0.02, 0.001, 0.2, 0.005, opt_range=(0.005, 0.05, 0.005),
              description="equity fraction risked per position (first leg, at its stop)", feeds="exits"),
        Param("max_hold_bars", "int", 100, 0, 10000, 1, opt_range=(50, 300, 50),
              description="close the position this many bars after its first fill (0 = off)", feeds="exits"),
        Param("leverage", "float", 1.0, 1.0, 100.0, 1.0, description="leverage cap",
              feeds="exits"),
        Param("allow_short", "bool", True, description="take the mirrored short entries", feeds=_SIG),
    ),
    indicators=_indicators,
    signals=_signals,
    levels=_levels,
    exits=_exits,
    constraints=(
        Constraint("pb_entry_min <= pb_entry_max", _pb_window_ordered),
        Constraint("macd_fast < macd_slow", _macd_ordered),
    ),
    overlays=_overlays,
    signal_rule=SignalRule(
        lines=((BAR_LABEL, "close"), (BAR_LABEL, "volume"), ("bb", "upper"), ("bb", "lower"), ("bb", "pctb"),
               ("macd", "hist"), ("atr", "value"), ("swing", "upper"), ("swing", "lower"), ("adx", "adx")),
        params=("use_adx_filter", "bbwidth_lookback", "bbwidth_percentile_threshold", "volume_lookback",
                "volume_zscore_threshold", "adx_threshold", "spring_lookback", "pb_entry_min", "pb_entry_max",
                "score_lookback", "amplitude_score_threshold", "w_width", "w_pb", "w_macd_slope", "w_volume",
                "trailing_type", "trailing_chandelier_atr_mult", "trailing_pb_floor", "allow_short"),
        many=amplitude_rows, signals=_signals),
)
