"""Validate an OHLCV frame and report what is wrong with it; never repair anything.

Errors (the data cannot be used as it is): missing or non-numeric columns, a non-datetime
index, no rows, missing timestamps, non-finite values (NaN, inf, -inf), non-positive prices,
negative volume, ``high < max(open, close)`` or ``low > min(open, close)`` (with the row
list), duplicate timestamps (unless ``dedupe=True``, which keeps the last one and makes it a
warning), bars dated before :data:`EARLIEST_BAR` (1990-01-01: such dates are a misread epoch unit
or date format, like seconds read as milliseconds landing in 1970) or more than
:data:`FUTURE_SLACK` (a day) in the future, a most common spacing that is not a whole
timeframe (3.6 s between bars: milliseconds read as seconds), bars spaced otherwise than the
expected ``timeframe`` (from the file name, ``BTC_USDT-1h.csv``, or the caller), and a
quality below :data:`MIN_QUALITY` (the report is then not OK; ``usable`` stays True when
that is the only error: sparse but valid bars load for a backtest with a warning, an import
refuses them).

Warnings: rows out of time order (the loader sorts them), gaps, off-grid timestamps,
zero-volume bars, price spikes, implausible moves (a close 5x the previous one, or a fifth
of it: a bad tick or a change of units) and implausible wicks (a high 5x the bar's open and
close, or a low a fifth of them).

**Verdict** (:attr:`ValidationReport.verdict`, the one traffic-light rule of the CLI and the
UI): ``red`` when there is any error; ``amber`` when the data is usable but has notable
warnings (gaps, off-grid timestamps, zero-volume bars, kept duplicates, unsorted rows, any
implausible move or wick, runs of unchanged bars, and spikes on more than
:data:`NOTABLE_SPIKE_SHARE` of the bars), each listed as a reason;
``green`` otherwise. Not notable: a missing time zone, and spikes at the rate of crypto's fat
tails (the synthetic sample and Binance's 1h/5m history: 0.3-0.5% of bars).

**Grid and gaps.** Bars of a timeframe open on the UTC grid ``origin + k * timeframe``
(see :mod:`threadx.data.grid`). A timestamp that is not on the grid is *off-grid*
(warning). For gaps every bar is attributed to the grid slot it opens in (floor to the
grid), and a gap is a run of slots that hold no bar: an off-grid bar therefore fills its
own slot and creates neither a gap before it nor after it (comparing raw time differences
would report a spurious 1.47-bar "gap" for a bar shifted by 28 minutes, and fractional
missing-bar counts). Each gap is ``(start, end, missing_bars)``: ``start`` the open time of
the first missing slot, ``end`` the open time of the slot where data resumes (exclusive),
so ``end - start == missing_bars * timeframe``.

Binance's 1h history of 2017-2020 is the model case: after the February 2018 outage the
exchange resumed with candles opening at ``hh:28:14.789`` for 43 hours before returning to
the hour. With the rule above the file reports exactly its 13 gaps (the outage itself is
one gap of 32 slots, 2018-02-08 01:00 to 2018-02-09 09:00) and one off-grid run of 43 bars.

**Spikes.** ``r`` = log return between consecutive bars, ``dev = |r - median(r)|``; a bar is
a spike when ``dev > 10 * MAD``, where MAD is the rolling median of ``dev`` over the
previous 100 returns (at least 20), i.e. a median absolute deviation about the series'
median return. Spikes are warnings (fat tails are real in crypto).

**Quality** (0-100): ``100 * bars / expected_bars`` (completeness against the grid) minus
penalties: rows with invalid values up to 50, duplicates up to 30 (dropped by ``dedupe``, as
asked: none for rows equal to the one kept, as where two files overlap, and up to 10 for rows
with other values), unsorted 2, off-grid up to 10, zero volume up to 5, spikes up to 5; a
frame with errors scores at most 50 and a structurally unusable one 0. Below
:data:`MIN_QUALITY` (80) the data is refused: that leaves room for duplicates dropped by
``dedupe`` and a few percent of missing bars, not for a file missing a fifth of its bars.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from threadx.config import MIN_BARS
from threadx.data.bars import OHLCV_COLUMNS, ohlc_inconsistent
from threadx.data.grid import grid_origin_ns, grid_slots, slot_start_ns, timeframe_ns
from threadx.data.timeframe import bar_spacing_ns, spacing_disagreement, spacing_timeframe
from threadx.errors import DataError
from threadx.units import PERCENT, counted, format_as, format_count, format_duration

SPIKE_MADS = 10.0
SPIKE_WINDOW = 100
SPIKE_MIN_PERIODS = 20
MIN_QUALITY = 80.0  # a report scoring less is not OK
EARLIEST_BAR = pd.Timestamp("1990-01-01", tz="UTC")  # older bars are a misread epoch unit or date (1970-...)
FUTURE_SLACK = pd.Timedelta(days=1)  # bars may open at most this far after the current time
_SHOW = 5  # timestamps quoted in a message
VERDICTS = ("green", "amber", "red")
NOTABLE_SPIKE_SHARE = 0.01  # more spikes than this share of the bars make the verdict amber
# a close this many times the previous one, or this many times below it: no market moves so within
# one bar, a bad tick or a change of units does; notable however few (one such bar made a +76,730 %
# backtest of a file that was green)
IMPLAUSIBLE_MOVE = 5.0
_IMPLAUSIBLE = f"bar(s) whose close is {IMPLAUSIBLE_MOVE:g}x the previous one or less than 1/{IMPLAUSIBLE_MOVE:g} of it"
# the same bound within one bar: a high this many times its body's top, or a low this many times below its
# bottom (a wick of 1e300 beside closes of 60,000 was green; it sets off every stop and swells the ATR for
# thousands of bars)
_IMPLAUSIBLE_WICK = (f"bar(s) whose high is {IMPLAUSIBLE_MOVE:g}x the higher of its open and close, or whose low "
                     f"is less than 1/{IMPLAUSIBLE_MOVE:g} of the lower")
# this many bars in a row, lasting this long at least, that repeat the previous close as open, high, low and close:
# a stale feed (12 minutes unchanged on an illiquid coin's 1m bars is trading, 12 hours is not)
FROZEN_RUN = 12
FROZEN_HOURS = 12


@dataclass
class ValidationReport:
    """What :func:`validate_ohlcv` found. Row positions refer to the input frame's rows."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    timeframe: str | None = None
    bad_rows: list[int] = field(default_factory=list)  # high/low inconsistent with open/close
    bad_times: list[pd.Timestamp] = field(default_factory=list)
    nan_rows: list[int] = field(default_factory=list)
    nonpositive_rows: list[int] = field(default_factory=list)  # price <= 0 or volume < 0
    duplicates: int = 0  # rows whose timestamp repeats an earlier row's
    differing_duplicates: int | None = None  # dropped by dedupe: those with other values than the row kept
    sorted: bool = True
    gap_count: int = 0
    missing_bars: int = 0
    largest_gap: pd.Timedelta | None = None
    largest_gap_bars: int = 0
    gaps: list[tuple[pd.Timestamp, pd.Timestamp, int]] = field(default_factory=list)
    off_grid: list[pd.Timestamp] = field(default_factory=list)
    off_grid_runs: list[tuple[pd.Timestamp, pd.Timestamp, int]] = field(default_factory=list)
    zero_volume: int = 0
    spikes: list[pd.Timestamp] = field(default_factory=list)
    implausible: list[pd.Timestamp] = field(default_factory=list)  # bars whose close moved IMPLAUSIBLE_MOVE-fold
    # a high or low IMPLAUSIBLE_MOVE-fold off the body; runs of FROZEN_RUN+ unchanged bars (first, last, bars)
    implausible_wicks: list[pd.Timestamp] = field(default_factory=list)
    frozen_runs: list[tuple[pd.Timestamp, pd.Timestamp, int]] = field(default_factory=list)
    quality: float = 0.0
    low_quality: bool = False  # quality below MIN_QUALITY (one of the errors)
    first: pd.Timestamp | None = None
    last: pd.Timestamp | None = None
    bars: int = 0
    expected_bars: int = 0

    @property
    def ok(self) -> bool:
        """True when there are no errors (warnings allowed); a quality below MIN_QUALITY is an error."""
        return not self.errors

    @property
    def usable(self) -> bool:
        """True when the only error, if any, is a quality below MIN_QUALITY: the bars are
        valid but sparse (e.g. a stock's daily bars without weekends), so a backtest may
        load them with a warning while an import into the data root refuses them."""
        return len(self.errors) == int(self.low_quality)

    @property
    def verdict(self) -> tuple[str, list[str]]:
        """Traffic light ``(level, reasons)``: ``red`` (the errors), ``amber`` (notable warnings), ``green`` ([])."""
        if self.errors:
            return "red", list(self.errors)
        reasons = [text for count, text in (
            (self.missing_bars, f"{self.missing_bars} missing bar(s) in {self.gap_count} gap(s)"),
            (len(self.off_grid), f"{len(self.off_grid)} off-grid timestamp(s) in {len(self.off_grid_runs)} run(s)"),
            (len(self.spikes) > NOTABLE_SPIKE_SHARE * self.bars,
             f"{len(self.spikes)} price spike(s) ({len(self.spikes) / max(self.bars, 1):.1%} of the bars)"),
            (len(self.implausible), f"{len(self.implausible)} {_IMPLAUSIBLE} (a bad tick or a change of units?)"),
            (len(self.implausible_wicks), f"{len(self.implausible_wicks)} {_IMPLAUSIBLE_WICK} (a bad tick?)"),
            (len(self.frozen_runs), f"{sum(r[2] for r in self.frozen_runs):,} bars in {len(self.frozen_runs)} run(s) "
                                    f"of {FROZEN_HOURS} h or more that repeat the previous close unchanged (a stale "
                                    "feed?)"),
            (self.zero_volume, f"{self.zero_volume} zero-volume bar(s)"),
            (self.duplicates, f"{self.duplicates} duplicate timestamp(s), the last of each kept"),
            (not self.sorted, "rows out of time order"),
        ) if count]
        return ("amber", reasons) if reasons else ("green", [])

    def first_errors(self, limit: int = 3) -> str:
        """The first ``limit`` errors on one line, with a count of the rest."""
        more = f" (+{len(self.errors) - limit} more)" if len(self.errors) > limit else ""
        return "; ".join(self.errors[:limit]) + more

    @property
    def coverage(self) -> dict[str, Any]:
        """First and last bar, bars present and bars the grid expects between them."""
        return {"first": self.first, "last": self.last, "bars": self.bars, "expected_bars": self.expected_bars}

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (timestamps as ISO strings, durations in seconds)."""
        level, reasons = self.verdict
        return {
            "ok": self.ok,
            "verdict": level,
            "verdict_reasons": reasons,
            "errors": list(self.errors),
            "warnings": list(self.warnings),
            "timeframe": self.timeframe,
            "bad_rows": [int(i) for i in self.bad_rows],
            "bad_times": [_iso(t) for t in self.bad_times],
            "nan_rows": [int(i) for i in self.nan_rows],
            "nonpositive_rows": [int(i) for i in self.nonpositive_rows],
            "duplicates": int(self.duplicates),
            "sorted": bool(self.sorted),
            "gap_count": int(self.gap_count),
            "missing_bars": int(self.missing_bars),
            "largest_gap_seconds": None if self.largest_gap is None else self.largest_gap.total_seconds(),
            "largest_gap_bars": int(self.largest_gap_bars),
            "gaps": [[_iso(a), _iso(b), int(n)] for a, b, n in self.gaps],
            "off_grid": [_iso(t) for t in self.off_grid],
            "off_grid_runs": [[_iso(a), _iso(b), int(n)] for a, b, n in self.off_grid_runs],
            "zero_volume": int(self.zero_volume),
            "spikes": [_iso(t) for t in self.spikes],
            "implausible": [_iso(t) for t in self.implausible],
            "implausible_wicks": [_iso(t) for t in self.implausible_wicks],
            "frozen_runs": [[_iso(a), _iso(b), int(n)] for a, b, n in self.frozen_runs],
            "quality": float(self.quality),
            "coverage": {
                "first": _iso(self.first),
                "last": _iso(self.last),
                "bars": int(self.bars),
                "expected_bars": int(self.expected_bars),
            },
        }

    def summary(self) -> str:
        """Human-readable multi-line summary."""
        level, reasons = self.verdict
        status = level if self.ok else f"{level}, {len(self.errors)} error(s)"
        lines = [
            f"verdict: {status}" + (f" ({'; '.join(reasons)})" if reasons and self.ok else ""),
            f"quality {self.quality:.1f}/100, {len(self.errors)} error(s), {len(self.warnings)} warning(s)",
            f"timeframe {self.timeframe or 'unknown'}; {format_count(self.bars)} bars of "
            f"{format_count(self.expected_bars)} expected"
            + (f" from {_iso(self.first)} to {_iso(self.last)}" if self.first is not None else ""),
        ]
        lines += [f"ERROR: {e}" for e in self.errors]
        lines += [f"warning: {w}" for w in self.warnings]
        for start, end, n in self.gaps[:10]:
            lines.append(f"  gap: {format_count(n)} bar(s) missing from {_iso(start)}; "
                         f"the next bar opens at {_iso(end)}")
        if len(self.gaps) > 10:
            lines.append(f"  ... {len(self.gaps) - 10} more gap(s)")
        return "\n".join(lines)


def validate_ohlcv(df: pd.DataFrame, timeframe: str | None = None, *, dedupe: bool = False) -> ValidationReport:
    """Check a frame from :func:`~threadx.data.io.read_ohlcv_file` against SPEC section 1.

    ``timeframe`` is the expected bar length (inferred from the most common spacing if None);
    bars whose most common spacing differs from it are an error.
    ``dedupe=True`` reports duplicate timestamps as a warning (the last row of each is the one
    kept, and the only one checked). The input is never modified.
    """
    rep = ValidationReport()
    if not isinstance(df, pd.DataFrame):
        rep.errors.append(f"expected a DataFrame, got {type(df).__name__}")
        return rep
    missing = [c for c in OHLCV_COLUMNS if c not in df.columns]
    if missing:
        rep.errors.append(f"missing column(s): {', '.join(missing)}")
        return rep
    for col in OHLCV_COLUMNS:
        dtype = df[col].dtype
        if not pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
            rep.errors.append(f"column {col!r} is not numeric (dtype {dtype})")
    if not isinstance(df.index, pd.DatetimeIndex):
        rep.errors.append(f"index is not a DatetimeIndex ({type(df.index).__name__}); read files with read_ohlcv_file")
    if rep.errors:
        return rep
    n = len(df)
    if n == 0:
        rep.errors.append("no bars")
        return rep
    if n < MIN_BARS:  # (nothing can run on it: a backtest refused it after the import called it green)
        rep.errors.append(f"{counted(n, 'bar')}: a dataset needs at least {MIN_BARS} (a return needs two closes)")
        return rep
    index = df.index
    if index.tz is None:
        rep.warnings.append("timestamps have no time zone; read as UTC")
        index = index.tz_localize("UTC")
    time_ns = index.as_unit("ns").asi8
    nat = index.isna()
    if nat.any():
        rep.errors.append(f"{int(nat.sum())} missing timestamp(s) (NaT), first at row {int(np.flatnonzero(nat)[0])}")

    # ---- order and duplicates (on rows with a timestamp)
    rows = np.flatnonzero(~nat) if nat.any() else np.arange(n)
    t = time_ns[rows]
    if len(t) > 1 and not bool(np.all(t[1:] >= t[:-1])):
        rep.sorted = False
        order = np.argsort(t, kind="stable")
        backwards = int(np.count_nonzero(t[1:] < t[:-1]))
        rep.warnings.append(f"rows are not in time order ({backwards} step(s) back in time); they are sorted on load")
        rows, t = rows[order], t[order]
    last_of_run = np.ones(len(t), dtype=bool)
    if len(t) > 1:
        last_of_run[:-1] = t[1:] != t[:-1]
    rep.duplicates = int(len(t) - np.count_nonzero(last_of_run))
    if rep.duplicates:
        first_dup = _ts(t[~last_of_run][0])
        if dedupe:
            differ = rep.differing_duplicates = _differing_duplicates(df, rows, t, last_of_run)
            rep.warnings.append(f"{rep.duplicates} duplicate timestamp(s), first at {_iso(first_dup)}; the last row "
                                f"of each is kept" + (f" ({differ} with other prices or volume than the row kept)"
                                                      if differ else " (same values)"))
        else:
            rep.errors.append(
                f"{rep.duplicates} duplicate timestamp(s), first at {_iso(first_dup)} (to keep the last of each: "
                "dedupe=True in Python, `threadx data import --dedupe`, or the import form's 'Drop repeated "
                "timestamps')"
            )
    if dedupe and rep.duplicates:
        rows, t = rows[last_of_run], t[last_of_run]  # checked rows, in time order

    # ---- values
    o, h, lo, c, v = (df[col].to_numpy(dtype=np.float64, na_value=np.nan)[rows] for col in OHLCV_COLUMNS)
    nan_mask = ~(np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c) & np.isfinite(v))
    if nan_mask.any():
        rep.nan_rows = sorted(rows[nan_mask].tolist())
        columns = [name for name, col in zip(OHLCV_COLUMNS, (o, h, lo, c, v)) if not np.isfinite(col).all()]
        rep.errors.append(
            f"{len(rep.nan_rows)} row(s) with NaN or infinite values (in {', '.join(columns)}), first at "
            f"{_times(time_ns, rep.nan_rows)}"
        )
    with np.errstate(invalid="ignore"):
        nonpos = ~nan_mask & ((o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0) | (v < 0))
        bad = ~nan_mask & ohlc_inconsistent(o, h, lo, c)
    if nonpos.any():
        rep.nonpositive_rows = sorted(rows[nonpos].tolist())
        rep.errors.append(
            f"{len(rep.nonpositive_rows)} row(s) with a non-positive price or negative volume, "
            f"first at {_times(time_ns, rep.nonpositive_rows)}"
        )
    if bad.any():
        rep.bad_rows = sorted(rows[bad].tolist())
        rep.bad_times = [_ts(time_ns[i]) for i in rep.bad_rows]
        rep.errors.append(
            f"{len(rep.bad_rows)} row(s) with high < max(open, close) or low > min(open, close), "
            f"at {_times(time_ns, rep.bad_rows)}"  # (by time: row positions counted from 0 read as file lines)
            + (": most rows, so the columns are likely in another order (rows without a header row are read "
               "as time, open, high, low, close, volume; add a header naming them)" if len(rep.bad_rows) * 2 > n
               else "")
        )
    rep.zero_volume = int(np.count_nonzero(v == 0))
    if rep.zero_volume:
        rep.warnings.append(f"{rep.zero_volume} bar(s) with zero volume, first at {_iso(_ts(t[v == 0][0]))}")

    # ---- grid: timeframe, off-grid, gaps, coverage
    u = t[last_of_run] if not (dedupe and rep.duplicates) else t  # unique times, sorted
    rep.bars = int(len(u))
    rep.first, rep.last = _ts(u[0]), _ts(u[-1])
    rep.expected_bars = rep.bars
    _date_range_check(rep, u)
    tf = _spacing_check(rep, u, timeframe)
    rep.timeframe = tf
    if tf is not None:
        try:
            step = timeframe_ns(tf)
        except DataError as exc:
            rep.errors.append(str(exc))
            step = 0
        if step:
            _grid_checks(rep, u, tf, step)

    # ---- spikes (on valid closes, in time order)
    good = ~(nan_mask | nonpos)
    _spike_check(rep, c[good], t[good])
    _implausible_check(rep, c[good], t[good])
    _wick_check(rep, o[good], h[good], lo[good], c[good], t[good])
    _frozen_check(rep, o[good], h[good], lo[good], c[good], t[good])
    rep.quality = _quality(rep, len(rows))
    if rep.quality < MIN_QUALITY and not rep.errors:
        rep.low_quality = True
        costs = [w for w in rep.warnings if "gap" in w or "off-grid" in w or "duplicate" in w] or rep.warnings
        rep.errors.append(f"quality {rep.quality:.1f} is below {MIN_QUALITY:g} (too many gaps or problems: "
                          f"{'; '.join(costs[:2]) or 'see the report'})")
    return rep


def _differing_duplicates(df: pd.DataFrame, rows: np.ndarray, t: np.ndarray, last_of_run: np.ndarray) -> int:
    """How many dropped duplicates differ from the row kept for their timestamp (``rows``, ``t``:
    rows with a time, in time order; ``last_of_run``: the rows kept)."""
    values = df[list(OHLCV_COLUMNS)].to_numpy(dtype=np.float64, na_value=np.nan)[rows]
    kept = np.flatnonzero(last_of_run)
    owner = kept[np.searchsorted(kept, np.arange(len(t)))]  # each row's kept row: the last of its run
    dropped = ~last_of_run
    same = (values[dropped] == values[owner[dropped]]) | (np.isnan(values[dropped]) & np.isnan(values[owner[dropped]]))
    return int(np.count_nonzero(~same.all(axis=1)))


def _date_range_check(rep: ValidationReport, u: np.ndarray) -> None:
    """Errors for bars before EARLIEST_BAR or more than FUTURE_SLACK after now (``u``: sorted ns)."""
    early = int(np.searchsorted(u, EARLIEST_BAR.value))
    if early:
        rep.errors.append(
            f"{early} bar(s) before {EARLIEST_BAR.date()} (older than any market data this tool reads), first at "
            f"{_iso(_ts(u[0]))}: a misread epoch unit or date format?"
        )
    late = len(u) - int(np.searchsorted(u, (pd.Timestamp.now(tz="UTC") + FUTURE_SLACK).value, side="right"))
    if late:
        rep.errors.append(f"{late} bar(s) more than {FUTURE_SLACK} in the future, first at {_iso(_ts(u[-late]))}")


def _spacing_check(rep: ValidationReport, u: np.ndarray, timeframe: str | None) -> str | None:
    """The timeframe to check the grid with; errors when the most common spacing is no timeframe or not ``timeframe``."""
    step = bar_spacing_ns(pd.DatetimeIndex(u.view("datetime64[ns]")))
    if step is None:
        return timeframe
    inferred = spacing_timeframe(step)
    spacing = pd.Timedelta(step, unit="ns")
    times = pd.DatetimeIndex(u.view("datetime64[ns]"))
    if 28 <= spacing.days <= 31 and len(u) > 1 and bool((times.day == 1).all()) and (times.normalize() == times).all():
        rep.errors.append("monthly bars (each on the 1st of a month): calendar months have no fixed length, which "
                          "every ThreadX timeframe has (up to 1w, or a number of days); use daily or weekly bars")
        return timeframe
    if inferred is None or timeframe_ns(inferred) != step:
        rep.errors.append(f"the bars are mostly {spacing} apart, which is not a timeframe: a misread epoch unit?")
    elif timeframe is not None and (why := spacing_disagreement(step, timeframe)):
        rep.errors.append(f"{why} as expected (file name or timeframe)")
    return timeframe or inferred


def _grid_checks(rep: ValidationReport, u: np.ndarray, tf: str, step: int) -> None:
    off = (u - grid_origin_ns(tf)) % step != 0
    all_slots = grid_slots(u, tf)
    if off.any():
        pos = np.flatnonzero(off)
        rep.off_grid = [_ts(x) for x in u[pos]]
        breaks = np.flatnonzero(np.diff(pos) != 1)
        starts = np.r_[pos[0], pos[breaks + 1]]
        ends = np.r_[pos[breaks], pos[-1]]
        rep.off_grid_runs = [(_ts(u[a]), _ts(u[b]), int(b - a + 1)) for a, b in zip(starts, ends)]
        sharing = int(np.sum(all_slots[1:] == all_slots[:-1])) if len(u) > 1 else 0
        finer = (f"; {counted(sharing, 'bar')} share a {tf} slot with the bar before (bars of a finer timeframe "
                 f"among the {tf} ones? each is read as a bar of its own)") if sharing else ""
        rep.warnings.append(
            f"{len(pos)} off-grid timestamp(s) (not multiples of {tf}) in {len(starts)} run(s), first at "
            f"{_iso(rep.off_grid[0])}{finer}"
        )
    slots = all_slots[np.r_[True, all_slots[1:] != all_slots[:-1]]] if len(all_slots) > 1 else all_slots
    rep.expected_bars = int(slots[-1] - slots[0] + 1)
    jumps = np.diff(slots)
    at = np.flatnonzero(jumps > 1)
    if len(at):
        missing = jumps[at] - 1
        starts = slot_start_ns(slots[at] + 1, tf)
        ends = slot_start_ns(slots[at + 1], tf)
        rep.gaps = [(_ts(a), _ts(b), int(m)) for a, b, m in zip(starts, ends, missing)]
        rep.gap_count = len(rep.gaps)
        rep.missing_bars = int(missing.sum())
        k = int(np.argmax(missing))
        rep.largest_gap_bars = int(missing[k])
        rep.largest_gap = pd.Timedelta(int(missing[k]) * step, unit="ns")
        rep.warnings.append(
            f"{rep.gap_count} gap(s), {rep.missing_bars} missing bar(s); largest "
            f"{format_duration(rep.largest_gap.total_seconds())} "
            f"({counted(rep.largest_gap_bars, 'bar')}) from {_iso(rep.gaps[k][0])}"
        )
    else:
        rep.largest_gap = pd.Timedelta(0)


def _implausible_check(rep: ValidationReport, close: np.ndarray, t: np.ndarray) -> None:
    """Bars whose close is :data:`IMPLAUSIBLE_MOVE` times the previous close or less than its
    inverse (from the second bar on: the spike check needs a history, this one does not)."""
    if len(close) < 2:
        return
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.diff(np.log(close))
    idx = np.flatnonzero(np.abs(r) >= math.log(IMPLAUSIBLE_MOVE)) + 1
    if len(idx):
        rep.implausible = [_ts(x) for x in t[idx]]
        worst = int(idx[np.argmax(np.abs(r[idx - 1]))])
        rep.warnings.append(f"{len(idx)} {_IMPLAUSIBLE}, largest x{math.exp(r[worst - 1]):.4g} at "
                            f"{_iso(_ts(t[worst]))} (a bad tick or a change of units?): {_times(t, idx)}")


def _wick_check(rep: ValidationReport, o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray,
                t: np.ndarray) -> None:
    """Bars whose high is :data:`IMPLAUSIBLE_MOVE` times the higher of open and close, or whose
    low is less than the lower's inverse of it (a flash crash's wick on Binance's BTC, ETH and
    SOL histories reaches 1.17x)."""
    idx = np.flatnonzero((h >= IMPLAUSIBLE_MOVE * np.maximum(o, c)) | (lo * IMPLAUSIBLE_MOVE <= np.minimum(o, c)))
    if len(idx):
        rep.implausible_wicks = [_ts(x) for x in t[idx]]
        rep.warnings.append(f"{len(idx)} {_IMPLAUSIBLE_WICK} (a bad tick?): {_times(t, idx)}")


def _frozen_check(rep: ValidationReport, o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray,
                  t: np.ndarray) -> None:
    """Runs of :data:`FROZEN_RUN` or more bars, lasting :data:`FROZEN_HOURS` at least, whose
    open, high, low and close all repeat the previous close: a feed that stopped (2,000 bars at
    one price, or two frozen weeks inside real candles, were green; Binance's BTC, ETH and SOL
    histories hold none over one bar)."""
    frozen = np.zeros(len(c), dtype=bool)
    frozen[1:] = (o[1:] == c[:-1]) & (h[1:] == c[:-1]) & (lo[1:] == c[:-1]) & (c[1:] == c[:-1])
    edges = np.flatnonzero(np.diff(np.r_[0, frozen.astype(np.int8), 0]))
    step = float(np.median(np.diff(t))) if len(t) > 1 else 0.0  # (a bar's length, gaps aside)
    least = max(FROZEN_RUN, math.ceil(FROZEN_HOURS * 3600e9 / step)) if step > 0 else FROZEN_RUN
    runs = [(int(a), int(b)) for a, b in zip(edges[0::2], edges[1::2]) if b - a >= least]
    if runs:
        rep.frozen_runs = [(_ts(t[a]), _ts(t[b - 1]), b - a) for a, b in runs]
        shown = ", ".join(f"{_iso(x)} to {_iso(y)}" for x, y, _ in rep.frozen_runs[:_SHOW])
        rep.warnings.append(f"{sum(b - a for a, b in runs):,} bars in {len(runs)} run(s) of {FROZEN_HOURS} h or "
                            "more that repeat the previous close as open, high, low and close (a stale feed?): "
                            f"{shown}"
                            + (" ..." if len(runs) > _SHOW else ""))


def _spike_check(rep: ValidationReport, close: np.ndarray, t: np.ndarray) -> None:
    if len(close) <= SPIKE_MIN_PERIODS + 1:
        return
    r = np.diff(np.log(close))
    dev = np.abs(r - np.median(r))
    mad = pd.Series(dev).rolling(SPIKE_WINDOW, min_periods=SPIKE_MIN_PERIODS).median().to_numpy()
    prior = np.empty_like(mad)
    prior[0] = np.nan
    prior[1:] = mad[:-1]
    with np.errstate(invalid="ignore"):
        hit = (prior > 0) & (dev > SPIKE_MADS * prior)
    if hit.any():
        idx = np.flatnonzero(hit) + 1  # the bar whose close made the return
        rep.spikes = [_ts(x) for x in t[idx]]
        worst = int(np.argmax(np.where(hit, dev, -1.0))) + 1
        with np.errstate(over="ignore"):  # (a log return past 709: math.exp raised OverflowError)
            largest = 100 * float(np.expm1(abs(r[worst - 1])))
        rep.warnings.append(
            f"{len(idx)} price spike(s) (|log return| > {SPIKE_MADS:g} rolling MADs), "
            f"largest {format_as(largest, PERCENT)} at {_iso(_ts(t[worst]))}"
        )


def _quality(rep: ValidationReport, rows: int) -> float:
    if rep.bars == 0 or rows == 0:
        return 0.0
    frac = lambda count: count / rows  # noqa: E731
    score = 100.0 * rep.bars / max(rep.expected_bars, rep.bars)
    invalid = len(set(rep.bad_rows) | set(rep.nan_rows) | set(rep.nonpositive_rows))
    if invalid:
        score -= min(50.0, 20.0 + 500.0 * frac(invalid))
    if rep.duplicates and rep.differing_duplicates is not None:  # dropped as asked (dedupe): an overlap of
        score -= min(10.0, 100.0 * frac(rep.differing_duplicates))  # equal rows costs nothing, conflicts a little
    elif rep.duplicates:
        score -= min(30.0, 10.0 + 200.0 * frac(rep.duplicates))
    if not rep.sorted:
        score -= 2.0
    if rep.off_grid:
        score -= min(10.0, 2.0 + 100.0 * frac(len(rep.off_grid)))
    score -= min(5.0, 50.0 * frac(rep.zero_volume))
    score -= min(5.0, 100.0 * frac(len(rep.spikes)))
    if rep.errors:
        score = min(score, 50.0)
    return round(float(min(100.0, max(0.0, score))), 1)


def _ts(ns: Any) -> pd.Timestamp:
    return pd.Timestamp(int(ns), unit="ns", tz="UTC")


def _iso(ts: pd.Timestamp | None) -> str | None:
    return None if ts is None else ts.isoformat()


def _times(time_ns: np.ndarray, positions: list[int] | np.ndarray) -> str:
    shown = ", ".join(_iso(_ts(time_ns[i])) for i in positions[:_SHOW])
    return shown + (" ..." if len(positions) > _SHOW else "")
