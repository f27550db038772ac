"""The checks a careful quant runs on a strategy before trusting its backtests.

:func:`check_strategy` takes a :class:`StrategySpec` object (registered or not: user
strategies are loaded from files, so nothing here looks a strategy up by name) and a
history, and runs the checks of :data:`ALL_CHECKS` on a few param sets (the defaults plus
seeded random draws from the optimisation ranges, see :func:`draw_param_sets`):

- ``lookahead``: for each cut point (:data:`CUT_PERCENTS` of the bars) the strategy runs on
  the history truncated at the cut and on the full-length history whose bars from the cut
  on are replaced by seeded random-walk noise (:func:`noise_after`). Before the cut the
  signal flags, the level lines the exit rules read, the equity and the trades must be
  identical (NaN equal to NaN) to the run on the real history: a strategy that reads a
  later bar to decide an earlier one differs there. Legitimate differences are left out: in
  the truncated run the last bar closes the position (end of data), so its equity is
  compared on the bars before the last one kept and its trades that exit before that bar;
  in the noise run signals, lines and equity are compared on the bars before the cut, and
  the trades that exit before it. Indicators are recomputed for each modified history
  (a fresh memory-only :class:`IndicatorBank`). Up to :data:`EVENT_CUTS` more cuts per
  param set fall just after a bar with a signal (:func:`event_cuts`): truncated there, the
  signal's own bar is the last one, and its flags and lines must not change.
- ``signals``: no bar sets both entry flags (long and short): the engine takes neither side
  there, so such a strategy can run without a trade and pass every other check.
- ``determinism``: a second run of each param set (indicators recomputed), and a run in each
  of three other processes under other hash seeds (:mod:`threadx.checks.other_process`; a
  strategy that cannot run in a fresh interpreter fails), give the same
  signals, level lines, metrics, trades and equity.
- ``accounting``: on each param set's run, the trades' PnL adds up to final equity minus
  the initial capital, the total fees metric to the trades' fees, each trade's fees are one
  fee per fill (fee rate x quantity x (entry price + exit price)), funding adds up, the
  trade count matches, and the equity curve ends at the final equity metric.
- ``roles``: the declared param roles (``Param.feeds``) hold when each param is perturbed
  from the defaults (:func:`threadx.checks.roles.check_roles`).
- ``speed`` (informational, never fails): fast-mode backtests per second of the kernel
  over the param sets, and the time to prepare one param set's signals.

An exception raised by the strategy's own code is caught and reported as a failed check
with its text and the file:line in the strategy where it was raised (:func:`error_location`).
"""
from __future__ import annotations

import math
import os
import sysconfig
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd

import threadx
from threadx.contract import (SIG_ADD_LONG, SIG_ADD_SHORT, SIG_ENTER_SHORT, SIG_ENTRIES, SIG_REDUCE_LONG,
                              SIG_REDUCE_SHORT, ExitRules, KernelInputs, prepare_signals)
from threadx.data.bars import Bars, as_bars
from threadx.engine import kernel
from threadx.engine.inputs import EngineOptions, kernel_args, line_needs, strategy_rules
from threadx.engine.layout import METRIC_NAMES
from threadx.engine.result import Result, full_result
from threadx.errors import ParamError, whole
from threadx.indicators import IndicatorBank
from threadx.optimize.space import result_column_clash
from threadx.strategy.base import ALL_ROLES, StrategySpec
from threadx.checks.other_process import OtherRun, Unavailable, comparable, runs_in_other_processes
from threadx.checks.roles import (batch_failures, check_roles, perturbations, rule_failures, rule_label_failures,
                                  rule_param_sets, switched)
from threadx.validation.common import json_safe

__all__ = [
    "ALL_CHECKS", "INFORMATIONAL_CHECKS", "CUT_PERCENTS", "CheckResult", "CheckReport", "ParamSet",
    "check_strategy", "draw_param_sets", "cut_points", "event_cuts", "noise_after", "error_location",
]

ALL_CHECKS: tuple[str, ...] = ("lookahead", "signals", "determinism", "accounting", "roles", "speed")
INFORMATIONAL_CHECKS: frozenset[str] = frozenset({"speed"})  # reported, never failing the report
_MAX_COMBOS = 1000  # param sets one check runs (each runs the look-ahead cuts: seconds apiece)
CUT_PERCENTS: tuple[int, ...] = (30, 50, 70, 90)  # look-ahead cut points, % of the bars
EVENT_CUTS = 12  # and cuts just after this many signal bars per param set (see event_cuts)
STRIDE_CUTS = 160  # and this many cuts spread evenly, where only the signals are compared (see stride_cuts)
ACCOUNTING_TOLERANCE = 1e-9  # relative to the initial capital (sums of PnL, fees, funding)
SPEED_REPEATS = 3  # best of this many timed passes over the param sets
REPORT_FORMAT = 1

# built-in costs and fills, whatever the settings say (fees on, so fees are checked)
_OPTIONS = EngineOptions.builtin().validated()
_THREADX_DIR = Path(threadx.__file__).resolve().parent
_LIBRARY_DIRS = tuple(dict.fromkeys(
    Path(p).resolve() for key in ("stdlib", "platstdlib", "purelib", "platlib")
    if (p := sysconfig.get_paths().get(key))
))

Progress = Callable[[str, float], None]


# --- the report --------------------------------------------------------------------------

@dataclass
class CheckResult:
    """One check's outcome: ``passed``, a one-line ``summary``, ``details`` lines (each
    finding), its duration, and ``data``: the findings as JSON-safe values (e.g. the
    look-ahead check's first differing bar per param set). ``informational`` checks (speed)
    do not count towards :attr:`CheckReport.passed`. A check that could not look (``conclusive``
    False: the look-ahead check on a span without a signal or a trade) does not pass either, but
    reads NOT CHECKED, not FAIL: nothing was found, nothing was shown."""

    name: str
    passed: bool
    summary: str
    details: list[str] = field(default_factory=list)
    seconds: float = 0.0
    informational: bool = False
    data: dict[str, Any] = field(default_factory=dict)
    conclusive: bool = True

    @property
    def status(self) -> str:
        """PASS, FAIL, NOT CHECKED (could not look), or INFO for an informational check that ran."""
        if not self.passed:
            return "FAIL" if self.conclusive else "NOT CHECKED"
        return "INFO" if self.informational else "PASS"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "summary": self.summary, "details": list(self.details),
                "seconds": self.seconds, "informational": self.informational, "data": json_safe(self.data),
                "conclusive": self.conclusive}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CheckResult":
        return cls(name=str(data["name"]), passed=bool(data["passed"]), summary=str(data.get("summary", "")),
                   details=[str(d) for d in data.get("details", [])], seconds=float(data.get("seconds", 0.0)),
                   informational=bool(data.get("informational", False)), data=dict(data.get("data") or {}),
                   conclusive=bool(data.get("conclusive", True)))


@dataclass(frozen=True)
class ParamSet:
    """A named, normalised param set the checks run ("defaults", "random 1", ...)."""

    name: str
    params: dict[str, Any]

    def label(self, defaults: Mapping[str, Any] | None = None) -> str:
        """The name, with the values that differ from ``defaults``."""
        changed = {k: v for k, v in self.params.items() if defaults is None or defaults.get(k) != v}
        if not changed or self.name == "defaults":
            return self.name
        return f"{self.name} ({', '.join(f'{k}={v!r}' for k, v in changed.items())})"


@dataclass
class CheckReport:
    """Every check of one strategy on one history (see :func:`check_strategy`)."""

    strategy: str
    bars: int
    results: list[CheckResult]
    param_sets: list[ParamSet] = field(default_factory=list)
    dataset: str | None = None
    fingerprint: str | None = None
    timeframe: str | None = None
    start: str | None = None
    end: str | None = None
    seconds: float = 0.0
    created_at: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when every check that is not informational passed."""
        return all(r.passed for r in self.results if not r.informational)

    @property
    def failed(self) -> list[str]:
        """Names of the failing checks that count (not informational; not those that could not look)."""
        return [r.name for r in self.results if not r.passed and not r.informational and r.conclusive]

    @property
    def unchecked(self) -> list[str]:
        """Names of the checks that could not look (NOT CHECKED): no pass, no finding either."""
        return [r.name for r in self.results if not r.passed and not r.conclusive]

    @property
    def verdict(self) -> str:
        """PASSED, FAILED (the failed checks), or NOT CHECKED (those that could not look)."""
        if self.failed:
            return f"FAILED ({', '.join(self.failed)})"
        return f"NOT CHECKED ({', '.join(self.unchecked)})" if self.unchecked else "PASSED"

    def result(self, name: str) -> CheckResult:
        """The result of check ``name`` (KeyError when it was not run)."""
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(f"check {name!r} was not run; ran: {', '.join(r.name for r in self.results)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (for ``--json`` and for storing the last report); see :meth:`from_dict`."""
        return {
            "format": REPORT_FORMAT,
            "strategy": self.strategy,
            "passed": self.passed,
            "dataset": self.dataset,
            "fingerprint": self.fingerprint,
            "timeframe": self.timeframe,
            "start": self.start,
            "end": self.end,
            "bars": self.bars,
            "seconds": self.seconds,
            "created_at": self.created_at,
            "param_sets": [{"name": p.name, "params": json_safe(p.params)} for p in self.param_sets],
            "notes": list(self.notes),
            "results": [r.to_dict() for r in self.results],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CheckReport":
        """The report of a :meth:`to_dict` (ParamError when the format is not one this reads)."""
        if data.get("format") != REPORT_FORMAT:
            raise ParamError(f"not a strategy check report of format {REPORT_FORMAT} (format {data.get('format')!r})")
        return cls(
            strategy=str(data["strategy"]),
            bars=int(data["bars"]),
            results=[CheckResult.from_dict(r) for r in data.get("results", [])],
            param_sets=[ParamSet(str(p["name"]), dict(p["params"])) for p in data.get("param_sets", [])],
            dataset=data.get("dataset"),
            fingerprint=data.get("fingerprint"),
            timeframe=data.get("timeframe"),
            start=data.get("start"),
            end=data.get("end"),
            seconds=float(data.get("seconds", 0.0)),
            created_at=str(data.get("created_at", "")),
            notes=[str(n) for n in data.get("notes", [])],
        )

    def format_text(self) -> str:
        """A readable report: the data and param sets, one line per check (PASS / FAIL / INFO,
        its summary and duration) with its details indented below, then the verdict."""
        data = self.dataset or "(unnamed data)"
        span = f", {self.start} -> {self.end}" if self.start and self.end else ""
        tf = f", {self.timeframe}" if self.timeframe else ""
        fp = f", fingerprint {self.fingerprint[:12]}" if self.fingerprint else ""
        lines = [f"Strategy check: {self.strategy} on {data} ({self.bars} bars{tf}{span}{fp})"]
        defaults = self.param_sets[0].params if self.param_sets else None
        if self.param_sets:
            lines.append("Param sets: " + "; ".join(p.label(defaults) for p in self.param_sets))
        lines += [f"Note: {n}" for n in self.notes]
        width = max((len(r.name) for r in self.results), default=0)
        for r in self.results:
            lines.append(f"{r.status}  {r.name:<{width}}  {r.summary}  ({r.seconds:.2f} s)")
            lines += [f"      {d}" for d in r.details]
        lines.append(f"Result: {self.verdict} in {self.seconds:.1f} s")
        return "\n".join(lines)


# --- param sets, cut points, noise --------------------------------------------------------

def draw_param_sets(spec: StrategySpec, combos: int = 4, seed: int = 42) -> tuple[list[ParamSet], int]:
    """(param sets, draws refused): the defaults, then up to ``combos - 1`` distinct random
    valid sets (seeded): each numeric param with an ``opt_range`` on its grid, each bool and
    choice param at random, every other param at its default. A draw the spec refuses
    (a constraint, a bound) is skipped and counted; after ``50 * combos`` draws it stops."""
    defaults = spec.normalize()
    out = [ParamSet("defaults", defaults)]
    rng = np.random.default_rng(seed)
    refused = 0
    for _ in range(50 * max(combos, 1)):
        if len(out) >= combos:
            break
        raw: dict[str, Any] = {}
        for p in spec.params:
            if p.kind == "bool":
                raw[p.name] = bool(rng.integers(0, 2))
            elif p.kind == "choice" and p.choices:
                raw[p.name] = p.choices[int(rng.integers(0, len(p.choices)))]
            elif p.opt_range:
                low, high, step = p.opt_range
                steps = int(math.floor((high - low) / step + 1e-9)) if step > 0 else 0
                raw[p.name] = round(low + step * int(rng.integers(0, steps + 1)), 10)
            else:
                raw[p.name] = p.default
        try:
            params = spec.normalize(raw)
        except Exception:  # noqa: BLE001 - refused by a bound or a constraint (or a constraint that raised)
            refused += 1
            continue
        if all(params != ps.params for ps in out):
            out.append(ParamSet(f"random {len(out)}", params))
    return out, refused


ONE_APART_MOST = 16  # sets one param away from the defaults that the determinism check adds, at most
_CACHED_STAGES = {"indicators", "signals", "levels"}  # where a strategy's own cache would sit


def one_apart_sets(spec: StrategySpec) -> list[ParamSet]:
    """For each param feeding the indicators, signals or levels (the first
    :data:`ONE_APART_MOST`), the defaults with that param alone moved (its first
    :func:`~threadx.checks.roles.perturbations` value): run in other orders, a cache keyed
    without that param serves one of the pair the other's results (the random sets rarely
    share every other value, and such a cache passed the determinism check)."""
    defaults = spec.normalize()
    out = []
    for param in spec.params:
        values = perturbations(spec, param, defaults) if _CACHED_STAGES & set(param.feeds) else []
        if values:
            out.append(ParamSet(f"defaults, {param.name}={values[0]!r}",
                                spec.normalize({**defaults, param.name: values[0]})))
        if len(out) == ONE_APART_MOST:
            break
    return out


def _determinism_sets(spec: StrategySpec, sets: list[ParamSet]) -> list[ParamSet]:
    """``sets`` and the :func:`one_apart_sets` not among them: what the determinism check runs."""
    known = [ps.params for ps in sets]
    return sets + [ps for ps in one_apart_sets(spec) if ps.params not in known]


def cut_points(n_bars: int) -> list[int]:
    """The look-ahead cut bars: ``n_bars * pct // 100`` for each of :data:`CUT_PERCENTS`,
    keeping those that leave at least 2 bars before the cut and 1 after."""
    return sorted({c for c in (n_bars * pct // 100 for pct in CUT_PERCENTS) if 2 <= c < n_bars})


def event_cuts(signals: np.ndarray, most: int = EVENT_CUTS) -> list[int]:
    """Cuts just after bars with a signal (up to ``most``, spread over the history): the
    history truncated there ends on the signal's bar, so a signal that read a later bar
    changes or vanishes. (A one-bar peek shows only on the last bar kept: the fixed cuts
    of :func:`cut_points` catch it only if a signal happens to fall there.)"""
    bars = np.flatnonzero(np.asarray(signals) != 0)
    bars = bars[bars >= 1]
    if len(bars) > most:
        bars = bars[np.linspace(0, len(bars) - 1, most).round().astype(int)]
    return [int(b) + 1 for b in bars if int(b) + 1 < len(signals)]


def stride_cuts(n_bars: int, most: int = STRIDE_CUTS) -> list[int]:
    """Up to ``most`` cuts spread evenly over the history. A peek that removes a signal (an
    entry dropped when the next bars dip) leaves no signal at the bar it removed, so
    :func:`event_cuts` never cuts there; each of these cuts exposes the bars just before it to
    a peek across it (the 5 bars before it to a 5-bar peek): spread over many bars, some of the
    removed signals fall there. Only the signals are computed for these (no backtest)."""
    if n_bars < 3:
        return []
    return np.unique(np.linspace(2, n_bars - 1, most).round().astype(int)).tolist()  # (evenly, short ones too)


def noise_after(bars: Bars, cut: int, seed: int) -> Bars:
    """``bars`` with every bar from ``cut`` on replaced by a seeded random walk that starts
    at the close of bar ``cut - 1``: log returns with the std of the last (up to 500) real
    ones, valid OHLC (low <= open, close <= high, all positive), volumes drawn from the real
    ones before the cut; the times are kept."""
    n = len(bars)
    m = n - cut
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, cut])
    returns = np.diff(np.log(bars.close[max(0, cut - 501):cut]))
    sigma = float(np.std(returns)) if len(returns) > 1 else 0.0
    if not (math.isfinite(sigma) and sigma > 0):
        sigma = 0.01
    last = float(bars.close[cut - 1])
    close = last * np.exp(np.cumsum(rng.normal(0.0, sigma, m)))
    open_ = np.concatenate(([last], close[:-1])) * np.exp(rng.normal(0.0, 0.1 * sigma, m))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.5 * sigma, m)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.5 * sigma, m)))
    volume = rng.choice(bars.volume[:cut], m)

    def joined(real: np.ndarray, tail: np.ndarray) -> np.ndarray:
        arr = np.concatenate((real[:cut], tail))
        arr.flags.writeable = False
        return arr

    return Bars(joined(bars.open, open_), joined(bars.high, high), joined(bars.low, low), joined(bars.close, close),
                joined(bars.volume, volume), time_ns=bars.time_ns, timeframe=bars.timeframe, name=bars.name)


def error_location(exc: BaseException) -> str:
    """``file:line in function`` where ``exc`` was raised in the strategy's code: the last
    traceback frame outside the threadx package and the Python library (stdlib,
    site-packages); else the last outside threadx; else the last frame ("" without one)."""
    frame = _error_frame(exc)
    return f"{frame.filename}:{frame.lineno} in {frame.name}" if frame else ""


def _error_frame(exc: BaseException) -> traceback.FrameSummary | None:
    """The frame :func:`error_location` names (None without a traceback)."""
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if not _inside(f.filename, (_THREADX_DIR,))]
    # (a compiled module's frame names its source relatively, "pandas/_libs/tslibs/timestamps.pyx":
    # no file of the user's, whose paths are absolute)
    user = [f for f in own if os.path.isabs(f.filename) and not _inside(f.filename, _LIBRARY_DIRS)]
    return (user or own or frames or [None])[-1]


def _inside(filename: str, dirs: Iterable[Path]) -> bool:
    path = Path(filename).resolve()
    return any(path.is_relative_to(d) for d in dirs)


# --- running one param set ----------------------------------------------------------------

@dataclass
class _Run:
    """One full-mode backtest: the kernel inputs and the :class:`Result`."""

    inputs: KernelInputs
    rules: ExitRules
    result: Result

    @property
    def signals(self) -> np.ndarray:
        return self.inputs.signals

    def lines(self, read_only: bool) -> dict[str, np.ndarray]:
        """The level lines handed to the kernel (``read_only``: only those its rules read)."""
        names = ("atr", "band_lo", "band_mid", "band_hi")
        if not read_only:
            return {name: getattr(self.inputs, name) for name in names}
        atr, mid, edges = line_needs(self.rules)
        read = {"atr": atr, "band_lo": edges, "band_mid": mid, "band_hi": edges}
        return {name: getattr(self.inputs, name) for name in names if read[name]}

    @property
    def equity(self) -> np.ndarray:
        return self.result.equity.to_numpy()

    @property
    def trades(self) -> pd.DataFrame:
        return self.result.trades


def _backtest(spec: StrategySpec, bars: Bars, params: Mapping[str, Any], bank: Any) -> _Run:
    """prepare_signals -> kernel_args -> full_result of one normalised param set."""
    rules = strategy_rules(spec, params, _OPTIONS)
    _, sig, levels = prepare_signals(spec, bars, params, bank)
    inputs = kernel_args(bars, sig, levels, rules, _OPTIONS)
    return _Run(inputs, rules, full_result(inputs, bars.index, bars.timeframe, params))


def run_once(spec: StrategySpec, bars: Bars, params: Mapping[str, Any]) -> _Run:
    """One check run of normalised ``params`` with fresh indicators (the determinism check's
    second run, here or in another process: :mod:`threadx.checks.other_process`)."""
    return _backtest(spec, bars, params, _fresh_bank())


def _fresh_bank() -> IndicatorBank:
    """A memory-only bank with nothing in it (no value of another history can be served)."""
    return IndicatorBank(disk=False)


class _Raised(Exception):
    """The strategy (or the engine on its output) raised while a check ran ``where``."""

    def __init__(self, where: str):
        super().__init__(where)
        self.where = where


class _Context:
    """What a check is running, so an exception can say where (``with ctx.at("...")``)."""

    def __init__(self) -> None:
        self.where = ""

    def at(self, where: str) -> "_Context":
        self.where = where
        return self

    def __enter__(self) -> "_Context":
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is not None and isinstance(exc, Exception) and not isinstance(exc, _Raised):
            raise _Raised(self.where) from exc
        return False


# --- comparisons ----------------------------------------------------------------------------

def _first_difference(a: np.ndarray, b: np.ndarray, stop: int | None = None) -> int | None:
    """First index < ``stop`` (None: all) where ``a`` and ``b`` differ (NaN equals NaN); a
    length difference inside the range counts at the shorter length."""
    a, b = np.asarray(a), np.asarray(b)
    if stop is not None:
        a, b = a[:stop], b[:stop]
    k = min(len(a), len(b))
    differs = a[:k] != b[:k]
    if a.dtype.kind == "f" and b.dtype.kind == "f":
        differs &= ~(np.isnan(a[:k]) & np.isnan(b[:k]))
    if differs.any():
        return int(np.argmax(differs))
    return None if len(a) == len(b) else k


def _first_trade_difference(a: pd.DataFrame, b: pd.DataFrame, exit_before: int | None = None) -> int | None:
    """The bar (entry of the earlier of the two trades) of the first trade that differs in
    any column (NaN equals NaN), among the trades that exit before ``exit_before``."""
    if exit_before is not None:
        a = a[a["exit_i"].to_numpy() < exit_before]
        b = b[b["exit_i"].to_numpy() < exit_before]
    k = min(len(a), len(b))
    differs = np.zeros(k, dtype=bool)
    for col in a.columns:
        x, y = a[col].to_numpy()[:k], b[col].to_numpy()[:k]
        differs |= (x != y) & ~(pd.isna(x) & pd.isna(y))
    if differs.any():
        row = int(np.argmax(differs))
    elif len(a) != len(b):
        row = k
    else:
        return None
    entries = [int(t["entry_i"].iloc[row]) for t in (a, b) if row < len(t)]
    return min(entries)


def _same_metric(a: Any, b: Any) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def _compare(real: _Run, other: _Run, *, before: int | None, equity_before: int | None,
             trades_before: int | None, all_lines: bool) -> dict[str, int]:
    """Component -> first differing bar of ``other`` against ``real`` (only those that differ)."""
    found: dict[str, int | None] = {"signals": _first_difference(real.signals, other.signals, before)}
    real_lines, other_lines = real.lines(not all_lines), other.lines(not all_lines)
    line_bars = [_first_difference(real_lines[k], other_lines[k], before) for k in real_lines]
    found["levels"] = min((b for b in line_bars if b is not None), default=None)
    found["equity"] = _first_difference(real.equity, other.equity, equity_before)
    found["trades"] = _first_trade_difference(real.trades, other.trades, trades_before)
    return {k: v for k, v in found.items() if v is not None}


# --- the checks -----------------------------------------------------------------------------

@dataclass
class _Session:
    """What the checks of one call share: the spec, the history, the param sets and their
    runs on the real history (made on first use)."""

    spec: StrategySpec
    bars: Bars
    sets: list[ParamSet]
    bank: Any
    seed: int
    tick: Callable[[str], None]
    ctx: _Context
    determinism_sets: list[ParamSet] | None = None  # (None: the determinism check works them out, or their error)
    runs: dict[str, _Run] = field(default_factory=dict)

    def run(self, ps: ParamSet) -> _Run:
        if ps.name not in self.runs:
            with self.ctx.at(f"running {ps.name} on the full history"):
                self.runs[ps.name] = _backtest(self.spec, self.bars, ps.params, self.bank)
        return self.runs[ps.name]

    def when(self, bar: int) -> str:
        return self.bars.index[bar].isoformat()


def _anew(spec: StrategySpec) -> StrategySpec:
    """A strategies-folder strategy loaded again from its text, its module's state new (a memo
    filled by earlier runs, say, starts empty); any other strategy as it is."""
    origin = spec.origin
    if origin is None or origin.kind != "user" or origin.text is None:
        return spec
    from threadx.strategy.user import load_text

    return load_text(origin.path, origin.text, origin.helper_texts())[spec.name]


def _lookahead(s: _Session) -> CheckResult:
    """Each param set's run on the real history against its runs on histories cut there
    (truncated, continued by noise). The cut histories are run by a copy of the strategy loaded
    anew for them, which never runs the real history: a strategy that keeps what it computed
    (signals memoised by the first bar's time, say) passed while peeking a bar ahead, each cut
    history handed what the real run had seen of the later bars."""
    bars, n = s.bars, len(s.bars)
    cuts = cut_points(n)
    if not cuts:  # (a check that could not look is no pass: it never replaces a stored failure)
        return CheckResult("lookahead", False, f"not checked: {n} bars leave no cut point; check a longer span",
                           conclusive=False)
    with s.ctx.at("loading the strategy again for the cut histories"):
        cut_spec = _anew(s.spec)
    findings, details = [], []
    n_events = n_strided = flagged = 0
    for ps in s.sets:
        real = s.run(ps)
        flagged += int(np.count_nonzero(real.signals)) + len(real.trades)  # (a grid trades from its levels)
        events = event_cuts(real.signals)
        n_events += len(set(events) - set(cuts))
        for cut in sorted(set(cuts) | set(events)):
            s.tick(f"lookahead: {ps.name}, cut at bar {cut}")
            with s.ctx.at(f"running {ps.name} on the history truncated at bar {cut}"):
                short = _backtest(cut_spec, bars.slice(0, cut), ps.params, _fresh_bank())
            if cut not in cuts:  # a signal's bar made the last one: its flags and lines must stay
                found = _compare(real, short, before=cut, equity_before=0, trades_before=0, all_lines=False)
                by_history = {"truncated": found} if found else {}
            else:
                with s.ctx.at(f"running {ps.name} on the history continued by noise from bar {cut}"):
                    noisy = _backtest(cut_spec, noise_after(bars, cut, s.seed), ps.params, _fresh_bank())
                by_history = {
                    "truncated": _compare(real, short, before=cut, equity_before=cut - 1, trades_before=cut - 1,
                                          all_lines=False),
                    "noise": _compare(real, noisy, before=cut, equity_before=cut, trades_before=cut,
                                      all_lines=False),
                }
            by_history = {k: v for k, v in by_history.items() if v}
            if not by_history:
                continue
            bar = min(min(v.values()) for v in by_history.values())
            history = min(by_history, key=lambda k: min(by_history[k].values()))
            differed = [c for c in ("signals", "levels", "equity", "trades")
                        if any(c in v for v in by_history.values())]
            findings.append({"param_set": ps.name, "cut": cut, "cut_time": s.when(cut), "bar": bar,
                             "time": s.when(bar), "history": history, "differed": differed,
                             "by_history": by_history})
            where = "; ".join(f"{h} history: " + ", ".join(f"{c} from bar {b}" for c, b in v.items())
                              for h, v in by_history.items())
            details.append(f"{ps.name}: cut at bar {cut} ({s.when(cut)}): first difference at bar {bar} "
                           f"({s.when(bar)}) in {', '.join(differed)} [{where}]")
            break  # the earliest cut that shows it is the one to report
        else:
            strided = [c for c in stride_cuts(n) if c not in cuts and c not in events]
            n_strided += len(strided)
            finding = _first_strided_difference(s, cut_spec, ps, real, strided)
            if finding is not None:
                findings.append(finding)
                details.append(f"{ps.name}: cut at bar {finding['cut']} ({finding['cut_time']}): the signals differ "
                               f"from bar {finding['bar']} ({finding['time']}) [truncated history: signals only]")
    tried = (f"{len(s.sets)} param sets x {len(cuts)} cuts ({', '.join(map(str, cuts))}) on truncated and "
             f"noise-continued histories, {n_events} cuts just after signal bars and {n_strided} spread over the "
             "history (signals only)")
    if not findings and not flagged:
        return CheckResult("lookahead", False, f"not shown: no param set gave a signal or a trade on these {n} "
                           "bars, so a peek at later bars could not show; check a longer span", data={"cuts": cuts},
                           conclusive=False)
    if not findings:
        return CheckResult("lookahead", True, f"no look-ahead: {tried} match the real run before each cut",
                           data={"cuts": cuts})
    first = min(findings, key=lambda f: (f["cut"], f["bar"]))
    summary = (f"look-ahead in {len(findings)} of {len(s.sets)} param sets: first at bar {first['bar']} "
               f"({first['time']}) in {', '.join(first['differed'])} with the cut at bar {first['cut']} "
               f"({first['param_set']})")
    return CheckResult("lookahead", False, summary, details, data={"cuts": cuts, "findings": findings})


def _first_strided_difference(s: _Session, spec: StrategySpec, ps: ParamSet, real: _Run, strided: list[int]
                              ) -> dict[str, Any] | None:
    """The first of the ``strided`` cuts (:func:`stride_cuts`) whose truncated history gives
    other signals before the cut than the real run (a finding, as :func:`_lookahead` records
    them), or None."""
    for cut in strided:
        s.tick(f"lookahead: {ps.name}, signals cut at bar {cut}")
        with s.ctx.at(f"running {ps.name} on the history truncated at bar {cut}"):
            _, short, _ = prepare_signals(spec, s.bars.slice(0, cut), ps.params, _fresh_bank())
        bar = _first_difference(real.signals, np.asarray(short), cut)
        if bar is not None:
            return {"param_set": ps.name, "cut": cut, "cut_time": s.when(cut), "bar": bar, "time": s.when(bar),
                    "history": "truncated", "differed": ["signals"], "by_history": {"truncated": {"signals": bar}}}
    return None


def _signals(s: _Session) -> CheckResult:
    """Fails where a bar carries both entry flags: the engine takes neither side there (it
    counts the bar in n_skipped), so a strategy that always does never trades, silently; and
    when every entry of every param set was skipped (a level line the sizing cannot use: all
    PASS over 185 skipped entries and 0 trades). Notes a take-profit of 100 % or more where
    shorts enter (their target at or below zero), and add or reduce flags the exit rules make do
    nothing (max_legs 1, reduce_fraction 0)."""
    details, findings, notes = [], [], []
    skipped: list[tuple[str, int]] = []
    entries, traded = 0, False
    for ps in s.sets:
        s.tick(f"signals: {ps.name}")
        run = s.run(ps)
        sig = run.signals
        both = np.flatnonzero((sig & SIG_ENTRIES) == SIG_ENTRIES)
        entries += int(np.count_nonzero(sig & SIG_ENTRIES))
        far = [f"{name}={getattr(run.rules, name):g}" for name in ("tp_pct", "partial_tp_pct")
               if getattr(run.rules, name) >= 1]
        if far and np.count_nonzero(sig & SIG_ENTER_SHORT):
            notes.append(f"note: {ps.name}: {', '.join(far)} puts a short's target at or below zero (100 % or more "
                         "under its entry): it is never reached")
        adds = int(np.count_nonzero(sig & (SIG_ADD_LONG | SIG_ADD_SHORT)))
        if adds and run.rules.max_legs <= 1:
            notes.append(f"note: {ps.name}: {adds:,} bars set SIG_ADD_LONG/SHORT, which do nothing with max_legs "
                         f"{run.rules.max_legs} (ExitRules(max_legs=...) allows the legs they add)")
        reduces = int(np.count_nonzero(sig & (SIG_REDUCE_LONG | SIG_REDUCE_SHORT)))
        if reduces and not run.rules.reduce_fraction > 0:
            notes.append(f"note: {ps.name}: {reduces:,} bars set SIG_REDUCE_LONG/SHORT, which do nothing with "
                         "reduce_fraction 0 (ExitRules(reduce_fraction=...) is the part they close)")
        if len(both):
            first = int(both[0])
            findings.append({"param_set": ps.name, "bars": len(both), "first_bar": first})
            details.append(f"{ps.name}: {len(both):,} bars enter long and short at once, first bar {first} "
                           f"({s.when(first)})")
        m = run.result.metrics
        traded = traded or m["n_trades"] > 0
        if m["n_trades"] == 0 and m["n_skipped"] > 0 and not len(both):
            skipped.append((ps.name, int(m["n_skipped"])))
    if findings:
        first = findings[0]
        return CheckResult("signals", False, f"{sum(f['bars'] for f in findings):,} bars of {len(findings)} of "
                           f"{len(s.sets)} param sets set both SIG_ENTER_LONG and SIG_ENTER_SHORT: the engine takes "
                           f"neither side there (first: {first['param_set']}, bar {first['first_bar']})",
                           details + notes, data={"findings": findings})
    if skipped and not traded:  # (an ATR line of NaN, 0 or below: risk sizing takes nothing)
        details = [f"{name}: 0 trades, {n:,} entries skipped" for name, n in skipped]
        total = sum(n for _, n in skipped)
        return CheckResult("signals", False, f"no param set traded: every entry was skipped ({total:,} "
                           "entries, 0 trades): a quantity of zero or an order below min_notional each time, e.g. a "
                           "stop distance from a level line of NaN, 0 or below (Levels(atr=...)) under risk sizing",
                           details + notes, data={"skipped": dict(skipped)})
    return CheckResult("signals", True, f"{len(s.sets)} param sets, {entries:,} entry bars: none enters long and "
                       "short at once", notes)


def _determinism(s: _Session) -> CheckResult:
    details, findings = [], []
    sets = s.determinism_sets if s.determinism_sets is not None else _determinism_sets(s.spec, s.sets)
    s.tick("determinism: the param sets in other processes")
    elsewhere, unavailable = _other_process_runs(s, sets)
    if unavailable is not None and unavailable.kind == "failed":  # spawned workers and a cluster would fail alike
        findings.append({"param_set": "all", "run": "a fresh interpreter", "differed": ["error"],
                         "error": str(unavailable)})
        details.append(f"the strategy could not run in a fresh interpreter (as spawned workers and a Dask cluster "
                       f"start it): {unavailable}")
    for ps in sets:
        s.tick(f"determinism: {ps.name}")
        first = s.run(ps)
        with s.ctx.at(f"running {ps.name} a second time"):
            second = run_once(s.spec, s.bars, ps.params)
        seconds = [("a second run", second)]
        seconds += [(f"a run in another process (PYTHONHASHSEED={seed})", runs[ps.name])
                    for seed, runs in elsewhere.items()]
        for label, other in seconds:
            if getattr(other, "error", None) is not None:
                findings.append({"param_set": ps.name, "run": label, "differed": ["error"], "error": other.error})
                details.append(f"{ps.name}: {label} raised {other.error}")
                break
            found = _compare(first, other, before=None, equity_before=None, trades_before=None, all_lines=True)
            if isinstance(other, OtherRun):  # (it came through JSON: the first run's are compared so too)
                m1, m2 = comparable(first.result.metrics), other.metrics
            else:
                m1, m2 = first.result.metrics, other.result.metrics
            metrics = [k for k in METRIC_NAMES if not _same_metric(m1.get(k), m2.get(k))]
            if found or metrics:
                what = [f"{k} from bar {b}" for k, b in found.items()] + (["metrics " + ", ".join(metrics[:5])]
                                                                         if metrics else [])
                findings.append({"param_set": ps.name, "run": label,
                                 "differed": list(found) + (["metrics"] if metrics else []),
                                 "first_bars": found, "metrics": metrics})
                details.append(f"{ps.name}: {label} differs: {'; '.join(what)}")
                break
    if findings and findings[0]["param_set"] == "all":
        return CheckResult("determinism", False, details[0], details, data={"findings": findings})
    apart = len(sets) - len(s.sets)
    counted = f"{len(sets)} param sets" + (f" ({apart} one param away from the defaults)" if apart else "")
    if findings:
        return CheckResult("determinism", False, f"{len(findings)} of {counted} give different "
                           f"results on {findings[0]['run']} ({', '.join(findings[0]['differed'])})", details,
                           data={"findings": findings})
    same = "give identical signals, levels, metrics, trades and equity"
    if elsewhere:
        seeds = ", ".join(elsewhere)
        return CheckResult("determinism", True, f"{counted} run twice here and once in each of "
                           f"{len(elsewhere)} other processes (PYTHONHASHSEED={seeds}, each in another order) {same}")
    if unavailable.kind == "timeout":  # (a check that could not look is no pass: it never replaces a stored failure)
        return CheckResult("determinism", False, f"not checked in other processes: {unavailable}; {counted} "
                           f"run twice in this process {same}", conclusive=False)
    return CheckResult("determinism", True, f"{counted} run twice in this process (not in other "
                       f"processes: {unavailable}) {same}")


def _other_process_runs(s: _Session, sets: list[ParamSet]
                        ) -> tuple[dict[str, dict[str, OtherRun]], Unavailable | None]:
    """The runs of ``sets`` in other processes under other hash seeds ({seed: {set: run}}), or
    none and why."""
    try:
        return runs_in_other_processes(s.spec, s.bars, [(ps.name, ps.params) for ps in sets]), None
    except Unavailable as exc:
        return {}, exc


def _accounting(s: _Session) -> CheckResult:
    capital = _OPTIONS.initial_capital
    fee_rate = _OPTIONS.fee_bps / 10_000.0
    tol = ACCOUNTING_TOLERANCE * capital
    details: list[str] = []
    n_trades = bad_sets = 0
    for ps in s.sets:
        s.tick(f"accounting: {ps.name}")
        run = s.run(ps)
        m, trades, equity = run.result.metrics, run.trades, run.equity
        n_trades += len(trades)
        pnl = float(trades["pnl"].sum())
        fees = trades["fees"].to_numpy()
        per_fill = fee_rate * trades["qty"].to_numpy() * (trades["entry_price"].to_numpy()
                                                           + trades["exit_price"].to_numpy())
        bad_fees = np.flatnonzero(~(np.abs(fees - per_fill) <= 1e-9 * np.abs(per_fill) + 1e-12 * capital))
        problems = []
        if m["n_trades"] != len(trades):
            problems.append(f"n_trades metric {m['n_trades']} but {len(trades)} trades booked")
        if not abs(pnl - (m["final_equity"] - capital)) <= tol:
            problems.append(f"trades' PnL sums to {pnl:.10g} but final equity - capital is "
                            f"{m['final_equity'] - capital:.10g}")
        if not abs(m["total_fees"] - float(fees.sum())) <= tol:
            problems.append(f"total_fees metric {m['total_fees']:.10g} but the trades' fees sum to {fees.sum():.10g}")
        if len(bad_fees):
            k = int(bad_fees[0])
            problems.append(f"{len(bad_fees)} trades' fees are not one fee per fill, first the trade entered at bar "
                            f"{int(trades['entry_i'].iloc[k])}: {fees[k]:.10g} vs {per_fill[k]:.10g}")
        if not abs(m["total_funding"] - float(trades["funding"].sum())) <= tol:
            problems.append(f"total_funding metric {m['total_funding']:.10g} but the trades' funding sums to "
                            f"{trades['funding'].sum():.10g}")
        if len(equity) == 0 or not equity[-1] == m["final_equity"]:
            last = f"{equity[-1]:.10g}" if len(equity) else "(empty)"
            problems.append(f"equity ends at {last} but final_equity is {m['final_equity']:.10g}")
        details += [f"{ps.name}: {p}" for p in problems]
        bad_sets += bool(problems)
    if not details:
        return CheckResult("accounting", True, f"{len(s.sets)} param sets, {n_trades} trades: PnL, fees (one per "
                           "fill), funding and final equity add up")
    return CheckResult("accounting", False, f"{len(details)} mismatch{'es' if len(details) > 1 else ''} in {bad_sets} "
                       f"of {len(s.sets)} param sets: {details[0]}", details)


def _roles(s: _Session) -> CheckResult:
    s.tick("roles: perturbing each param from the defaults and with each switch turned")
    spec = s.spec
    defaults = s.sets[0].params
    starts = {"defaults": defaults, **switched(spec, defaults)}
    declared = [p for p in spec.params if p.feeds != ALL_ROLES or p.indicator_labels is not None]
    clash = result_column_clash(spec)  # (a backtest runs such params; every sweep refuses them)
    clashes = [f"{clash}: every sweep refuses them"] if clash else []
    if not declared:
        return CheckResult("roles", not clashes, clashes[0] if clashes else "no param declares its roles (feeds): "
                           "nothing to check", clashes, data={"failures": clashes, "notes": []})
    with s.ctx.at("backtesting the defaults for the roles check"):
        tried = sum(len(perturbations(spec, p, start)) for start in starts.values() for p in declared)
        failures, notes = check_roles(spec, s.bars, s.bank, starts=starts, batches=False,
                                      also=[ps.params for ps in s.sets])
    batch_wrong, rule_wrong, rule_sets = [], [], []
    for ps in s.sets:  # every param set: the defaults may leave a branch of batch_signals unused
        with s.ctx.at(f"comparing batch_signals with signals on {ps.name}"):
            batch_wrong += batch_failures(spec, s.bars, s.bank, ps.name, ps.params)
        with s.ctx.at(f"comparing signal_rule with signals on {ps.name}"):
            rule_wrong += rule_failures(spec, s.bars, s.bank, ps.name, ps.params)
            rule_sets += rule_param_sets(spec, ps.params)
    rule_wrong = rule_label_failures(spec, rule_sets) + rule_wrong  # a misspelt label first: it explains the rest
    failures = clashes + failures + batch_wrong + rule_wrong
    undeclared = [p.name for p in spec.params if p.feeds == ALL_ROLES]
    extra = [f"note: {', '.join(undeclared)} declare no roles (every change allowed)"] if undeclared else []
    details = failures + [f"note: {n}" for n in notes] + extra
    if failures:
        wrong_roles = len(failures) - len(clashes) - len(batch_wrong) - len(rule_wrong)
        parts = clashes + ([f"{wrong_roles} perturbations change what their param's roles say they cannot"]
                           if wrong_roles else []) + [f"{what} differs from signals in {len(wrong)} rows or calls"
                             for what, wrong in (("batch_signals", batch_wrong), ("signal_rule", rule_wrong)) if wrong]
        return CheckResult("roles", False, "; ".join(parts), details, data={"failures": failures, "notes": notes})
    batch = f"; batch_signals equals signals for {', '.join(spec.batch_params())}" if spec.batch_params() else ""
    batch += "; signal_rule equals signals" if spec.signal_rule is not None else ""
    turned = f" and {len(starts) - 1} switches turned" if len(starts) > 1 else ""
    return CheckResult("roles", True, f"{len(declared)} params, {tried} perturbations from the defaults{turned}: "
                       f"the declared roles hold{batch}", details, data={"notes": notes})


def _speed(s: _Session) -> CheckResult:
    s.tick("speed: fast-mode backtests")
    inputs = [s.run(ps).inputs for ps in s.sets]
    started = time.perf_counter()
    for args in inputs:
        kernel.run_fast(*args)  # warm-up (compiles a new signature)
    warmup = time.perf_counter() - started
    best = math.inf
    for _ in range(SPEED_REPEATS):
        started = time.perf_counter()
        for args in inputs:
            kernel.run_fast(*args)
        best = min(best, time.perf_counter() - started)
    per = best / len(inputs)
    cold, warm = [], []
    for ps in s.sets:
        bank = _fresh_bank()
        with s.ctx.at(f"preparing the signals of {ps.name}"):
            for out in (cold, warm):  # indicators computed, then served by the bank
                started = time.perf_counter()
                prepare_signals(s.spec, s.bars, ps.params, bank)
                out.append(time.perf_counter() - started)
    data = {"backtests_per_s": 1.0 / per if per > 0 else math.inf, "ms_per_backtest": 1e3 * per,
            "prepare_ms": 1e3 * float(np.mean(cold)), "prepare_cached_ms": 1e3 * float(np.mean(warm)),
            "warmup_s": warmup, "bars": len(s.bars), "param_sets": len(inputs)}
    summary = (f"{data['backtests_per_s']:,.0f} backtests/s ({data['ms_per_backtest']:.2f} ms each, fast mode, "
               f"{len(s.bars)} bars, best of {SPEED_REPEATS}); preparing signals {data['prepare_ms']:.1f} ms per "
               f"param set ({data['prepare_cached_ms']:.1f} ms with the indicators cached)")
    details = [f"first calls {warmup:.2f} s (includes numba compiling the kernel for these input types)"] \
        if warmup > 1.0 else []
    return CheckResult("speed", True, summary, details, informational=True, data=data)


_CHECKS: dict[str, Callable[[_Session], CheckResult]] = {
    "lookahead": _lookahead, "signals": _signals, "determinism": _determinism, "accounting": _accounting,
    "roles": _roles, "speed": _speed,
}


def _steps(name: str, n_sets: int, n_cuts: int, n_determinism: int) -> int:
    return {"lookahead": n_sets * (n_cuts + EVENT_CUTS + STRIDE_CUTS), "signals": n_sets,
            "determinism": n_determinism + 1, "accounting": n_sets}.get(name, 1)


def _error_result(name: str, exc: BaseException, where: str = "") -> CheckResult:
    """A failed check for an exception raised by the strategy, or by the engine on what the
    strategy handed it (e.g. a signal array of the wrong shape): its text and location."""
    location = error_location(exc)
    text = f"{type(exc).__name__}: {exc}"
    frame = _error_frame(exc)
    own = frame is not None and not _inside(frame.filename, (_THREADX_DIR,))
    # (raised by ThreadX on what the strategy handed back: its own file and line say nothing to the author)
    summary = f"the {'strategy' if own else 'run'} raised {text}" + (f" at {location}" if location and own else "")
    details = [f"while {where}"] if where else []
    # the frames of the strategy's own code (ThreadX's are noise to its author), then the error
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not _inside(f.filename, (_THREADX_DIR,))]
    details += [line for chunk in traceback.format_list(frames[-6:]) for line in chunk.rstrip("\n").splitlines()]
    details.append(text)
    return CheckResult(name, False, summary, details, informational=name in INFORMATIONAL_CHECKS,
                       data={"error": text, "location": location, "where": where})


# --- entry point ----------------------------------------------------------------------------

def check_strategy(spec: StrategySpec, bars: Bars | pd.DataFrame, *, combos: int = 4, seed: int = 42,
                   checks: Iterable[str] = ALL_CHECKS, progress: Progress | None = None,
                   bank: Any = None, dataset: str | None = None) -> CheckReport:
    """Run ``checks`` (names of :data:`ALL_CHECKS`, in that order) on ``spec`` over ``bars``.

    ``combos``: param sets checked, the defaults plus ``combos - 1`` seeded random valid sets
    (``seed`` also seeds the look-ahead noise). ``progress(stage_text, fraction)`` is called as
    the checks go (fraction 0 -> 1). ``bank``: the indicator source of the runs on the real
    history (None: a fresh memory-only :class:`IndicatorBank`); modified histories always
    get a fresh one. ``dataset``: the data's label in the report (default ``bars.name``).
    Never raises for the strategy's own errors: they fail the check that met them. Raises
    ParamError for an unknown check name."""
    started = time.perf_counter()
    wanted = list(dict.fromkeys(checks))
    unknown = [c for c in wanted if c not in ALL_CHECKS]
    if unknown:
        raise ParamError(f"unknown check(s) {', '.join(map(repr, unknown))}; checks: {', '.join(ALL_CHECKS)}")
    combos, seed = whole(combos, "combos", 1, _MAX_COMBOS), whole(seed, "seed")  # the caller's, not the strategy's
    wanted = [c for c in ALL_CHECKS if c in wanted]
    bars = as_bars(bars)
    if len(bars) < 2:  # (an empty span failed every check as the strategy's IndexError, stored over a PASS)
        raise ParamError(f"need at least 2 bars to check a strategy, got {len(bars)}: pick a longer span")
    index = bars.index
    report = CheckReport(
        strategy=spec.name, bars=len(bars), results=[], dataset=dataset or bars.name,
        fingerprint=bars.fingerprint, timeframe=bars.timeframe,
        start=index[0].isoformat() if len(bars) else None, end=index[-1].isoformat() if len(bars) else None,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    try:
        sets, refused = draw_param_sets(spec, combos, seed)
    except Exception as exc:  # noqa: BLE001 - the defaults themselves are refused or raise
        report.results = [_error_result(name, exc, "normalising the default params") for name in wanted]
        report.seconds = time.perf_counter() - started
        return report
    report.param_sets = sets
    if len(sets) < combos:
        report.notes.append(f"{len(sets)} param sets instead of {combos}: {refused} random draws were refused "
                            "by the params' bounds or constraints" if refused else
                            f"{len(sets)} distinct param sets (the ranges allow no more)")

    determinism_sets = None
    if "determinism" in wanted:
        try:
            determinism_sets = _determinism_sets(spec, sets)
        except Exception:  # noqa: BLE001 - a constraint raising: the determinism check meets it again and reports it
            pass
    n_determinism = (len(sets) if determinism_sets is None else len(determinism_sets)) if "determinism" in wanted else 0
    counts = (len(sets), len(cut_points(len(bars))), n_determinism)
    total = sum(_steps(name, *counts) for name in wanted)
    done = 0

    def tick(text: str) -> None:
        nonlocal done
        if progress is not None:
            progress(text, min(done / total, 1.0) if total else 0.0)
        done += 1

    session = _Session(spec, bars, sets, bank if bank is not None else _fresh_bank(), seed, tick, _Context(),
                       determinism_sets)
    for name in wanted:
        t0 = time.perf_counter()
        begun = done
        try:
            result = _CHECKS[name](session)
        except _Raised as exc:
            result = _error_result(name, exc.__cause__ or exc, exc.where)
        except Exception as exc:  # noqa: BLE001 - raised outside a marked stage: still the check's failure
            result = _error_result(name, exc)
        done = begun + _steps(name, *counts)
        result.seconds = time.perf_counter() - t0
        report.results.append(result)
    if progress is not None:
        progress("done", 1.0)
    report.seconds = time.perf_counter() - started
    return report
