"""The contract between strategies and the engine: what a strategy hands the kernel.

A strategy (``threadx.strategy``) turns data and params into three things, and the engine
(``threadx.engine``) knows only these: a ``uint8`` signal per bar built from the ``SIG_*``
flags below, the scalar :class:`ExitRules` of a param set, and the indicator lines of
:class:`Levels` that those rules read. The engine turns them into :class:`KernelInputs`.
Neither package imports the other; both import this module.

Example (a strategy's signal function)::

    sig = np.zeros(len(close), np.uint8)
    sig[cross_up] |= SIG_ENTER_LONG
    sig[cross_down] |= SIG_EXIT_LONG
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Mapping, NamedTuple

import numpy as np

from threadx import aot
from threadx.errors import ParamError

if TYPE_CHECKING:  # pragma: no cover
    from threadx.data.bars import Bars
    from threadx.strategy.base import StrategySpec

# --- signal bit flags (one uint8 per bar, decided at that bar's close) ------------------
SIG_ENTER_LONG = 1
SIG_EXIT_LONG = 2
SIG_ENTER_SHORT = 4
SIG_EXIT_SHORT = 8
SIG_REDUCE_LONG = 16  # close ``reduce_fraction`` of an open long (ExitRules)
SIG_REDUCE_SHORT = 32
SIG_ADD_LONG = 64  # add a leg to an open long (up to ExitRules.max_legs); nothing when flat
SIG_ADD_SHORT = 128
SIG_ENTRIES = SIG_ENTER_LONG | SIG_ENTER_SHORT  # both set on one bar: contradictory, neither side is taken


@dataclass(frozen=True)
class ExitRules:
    """Scalar exit and sizing rules a strategy hands the kernel (units in the names)."""

    stop_pct: float = 0.0  # fraction of the entry price
    stop_atr: float = 0.0  # ATRs of the signal bar
    tp_pct: float = 0.0
    tp_atr: float = 0.0
    target_mid: bool = False  # take profit back at the previous bar's middle band
    trail: str = "none"  # none | atr | pct | band
    trail_atr: float = 0.0
    trail_pct: float = 0.0
    trail_band_pct: float = 0.0  # trail="band": the stop's place from the band edge (0) to the middle band (1)
    max_hold_bars: int = 0
    spacing_bars: int = 0
    sizing: str = "all_in"  # all_in | fraction | risk
    risk_per_trade: float = 0.0
    fraction: float = 1.0
    leverage: float = 1.0
    # several positions at once (SPEC §3); the defaults hold one position
    max_legs: int = 1  # > 1: an entry signal in the position's direction adds a leg (pyramiding)
    add_scale: float = 1.0  # an added leg's notional / the cycle's first leg's
    reduce_fraction: float = 0.0  # of the open quantity, closed on SIG_REDUCE_* or at the partial target
    partial_tp_pct: float = 0.0  # partial target: fraction of the average entry price from it
    partial_tp_atr: float = 0.0  # partial target: ATRs of the cycle's first signal bar
    grid_levels: int = 0  # K limit levels per bar from the middle band (reference) and ATR of the previous close
    grid_pct: tuple = ()  # level k: reference x (1 -/+ grid_pct[k]) -/+ ATR x grid_atr[k] (below long, above short)
    grid_atr: tuple = ()
    grid_sides: str = "long"  # long | short | both
    allocation: float = 1.0  # of the cycle's starting equity, split over the K levels (x leverage)
    # levels from the band lines (Levels.band_lo / band_mid / band_hi) and armed exit signals
    stop_band: float | None = None  # stop this fraction of the way from the losing band edge to the mid, at the
    #   signal bar (0 = at the band; None = off); with stop_pct / stop_atr, the nearer stop counts
    partial_tp_band: bool = False  # partial target (reduce_fraction, once per cycle) at the previous close's far band
    arm_exits_r: float = 0.0  # exit signals count only once a close gains this many stop distances (0 = off)
    arm_exits_band: bool = False  # ... or once a close is beyond the far band (above band_hi for a long)


@dataclass(frozen=True)
class Levels:
    """Indicator lines the kernel's stops, targets and trailing rules read (None = unused)."""

    atr: np.ndarray | None = None
    band_lo: np.ndarray | None = None
    band_mid: np.ndarray | None = None
    band_hi: np.ndarray | None = None


BAR_LABEL = "bars"  # SignalRule line label of the bars' own columns (("bars", "close"), ...)


@dataclass(frozen=True)
class SignalRule:
    """A strategy's signals as one numba function over many param sets, so that a sweep
    computes every signal array of a batch in one call, with no Python per param set.

    ``many(lines, rows, values, out)`` sets the flags of ``out`` (k, bars) uint8, whose rows
    come zeroed: row j is what ``signals`` returns for param set j, reading line i as
    ``lines[rows[j, i]]`` and param p as ``values[j, p]`` (float64).
    ``lines`` names the (indicator label, output) of each line, ``(BAR_LABEL, "close")`` for a
    column of the bars; a label that ``indicators(params)`` does not request for a param set is
    an all-NaN line there. ``params`` names the params it reads, in column order, that declare
    "signals" (a bool is 0 or 1, a choice its position in the param's ``choices``).
    ``signals`` is the strategy's signal function the rule computes: a spec with another one
    refuses the rule (a copy of a strategy given new signals must drop or replace it). A rule cannot refuse a param set: ``signals`` must not raise
    where the rule gives a row (refuse such sets in a ``Constraint``, ``indicators`` or
    ``exits``). The ``roles`` check of ``threadx strategy check`` compares it with ``signals``.

    Example (ma_crossover)::

        SignalRule(lines=(("fast", "value"), ("slow", "value")), params=("allow_short",),
                   many=cross_signals_rows, signals=_signals)
    """

    lines: tuple[tuple[str, str], ...]
    params: tuple[str, ...]
    many: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], None]
    signals: Callable[..., np.ndarray] | None = None


IndicatorNeeds = dict[str, tuple[str, dict]]
IndicatorValues = Mapping[str, Mapping[str, np.ndarray]]


class KernelInputs(NamedTuple):
    """The kernel's arguments, named; still a tuple, in the kernel's order:
    ``kernel.run_fast(*inputs)``. ``params`` is the param vector (:func:`param_vector`); the
    arrays before it can be shared by combos that differ only in it."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    signals: np.ndarray
    atr: np.ndarray
    band_lo: np.ndarray
    band_mid: np.ndarray
    band_hi: np.ndarray
    funding: np.ndarray
    params: np.ndarray

    @property
    def arrays(self) -> tuple[np.ndarray, ...]:
        """Every input but the param vector."""
        return tuple(self[:-1])


def indicator_needs(spec: "StrategySpec", params: Mapping[str, Any]) -> Mapping[str, tuple[str, Any]]:
    """``spec.indicators`` of (a copy of) ``params``: {label: (indicator name, its params)};
    ParamError naming the strategy when it returns anything else (None or a bare name gave a
    TypeError, or a sweep that failed as a whole)."""
    return checked_needs(spec, spec.indicators(dict(params)))


def checked_needs(spec: "StrategySpec", needs: Any) -> Mapping[str, tuple[str, Any]]:
    """``needs``, what ``spec.indicators`` returned, when it is {label: (indicator name, params)}
    (see :func:`indicator_needs`)."""
    if not isinstance(needs, Mapping):
        raise ParamError(f"indicators() of {spec.name} must return a dict of label -> (indicator name, params), "
                         f"got {type(needs).__name__}")
    for label, need in needs.items():
        if not (isinstance(need, (tuple, list)) and len(need) == 2 and isinstance(need[0], str)):
            raise ParamError(f"indicators() of {spec.name} must map each label to (indicator name, params), got "
                             f"{label!r}: {need!r}")
    return needs


def prepare_indicators(spec: "StrategySpec", bars: "Bars", params: Mapping[str, Any], bank: Any = None
                       ) -> IndicatorValues:
    """The indicator values ``spec`` asks for with one normalised param set, from ``bank``
    (any source with ``ensure(bars, name, params)``; None: the default bank). Each label's
    outputs come in a dict of this call's own (the arrays are the bank's, read-only): strategy
    code that sets an entry changes no other param set's values."""
    if bank is None:
        from threadx.indicators import default_bank

        bank = default_bank()
    values: IndicatorValues = {}
    for label, (name, ind_params) in indicator_needs(spec, params).items():
        try:
            values[label] = dict(bank.ensure(bars, name, ind_params))
        except ParamError as exc:  # the indicator's words, with the strategy and the request that led to them
            raise ParamError(f"indicators() of {spec.name} asks {label!r} = {name}({ind_params!r}): {exc}") from None
    return values


def rule_signals(spec: "StrategySpec", bars: "Bars", param_sets: list[Mapping[str, Any]], bank: Any = None
                 ) -> np.ndarray:
    """``spec.signal_rule`` applied to normalised ``param_sets`` (k, bars) uint8 as a sweep
    computes them in one call: each label's line looked up once per group of sets equal on
    the params declaring it (``StrategySpec.label_params``), from the group's first set (so a
    wrong declaration shows as a row that differs from ``signals``); ``bank`` as in
    :func:`prepare_indicators`. For the checks that compare it with ``signals``."""
    rule = spec.signal_rule
    lines = [np.full(len(bars), np.nan)]
    rows = np.zeros((len(param_sets), len(rule.lines)), dtype=np.int64)
    values = np.zeros((len(param_sets), len(rule.params)), dtype=np.float64)
    first: dict[tuple, int] = {}  # (label, values of its params) -> the set whose lines it uses
    for j, params in enumerate(param_sets):
        params = spec.results_params(params)
        for i, (label, output) in enumerate(rule.lines):
            key = (label, tuple(params[name] for name in spec.label_params(label)))
            source = first.setdefault(key, j)
            if source != j:
                rows[j, i] = rows[source, i]
                continue
            found = prepare_indicators(spec, bars, params, bank) if label != BAR_LABEL else {}
            if label == BAR_LABEL or label in found:
                lines.append(np.asarray(getattr(bars, output) if label == BAR_LABEL else found[label][output],
                                        dtype=np.float64))
                rows[j, i] = len(lines) - 1
        values[j] = [spec.param(name).rule_value(params[name]) for name in rule.params]
    matrix = np.stack(lines)
    matrix.flags.writeable = False  # as a sweep hands it over (one compiled version)
    out = np.zeros((len(param_sets), len(bars)), dtype=np.uint8)
    aot.call(rule.many, matrix, rows, values, out)
    return out


def signal_flags(sig: Any, what: str = "signals", n_bars: int | None = None) -> np.ndarray:
    """``sig`` as contiguous uint8 flags (the ``SIG_*`` bits), as the kernel reads them, always
    a copy (strategy code may hand back a buffer it fills again on its next call, while a sweep
    keeps each array); ParamError naming ``what`` when it is not an array of flags: None, text,
    floats (a NaN or -1 would become other flags: -1 is every flag at once) or whole numbers
    outside 0..255, or (``n_bars`` given) not one flag per bar. Bools are flags 0 / 1 (enter long)."""
    if n_bars is not None and sig is not None and np.shape(sig) != (n_bars,):
        raise ParamError(f"{what} must return one flag per bar: got an array of shape {np.shape(sig)} for "
                         f"{n_bars:,} bars (e.g. np.zeros(len(bars.close), np.uint8), set where it trades)")
    if isinstance(sig, np.ndarray) and sig.dtype == np.uint8:
        return np.array(sig, order="C")
    arr = np.asarray(sig) if sig is not None else None
    if arr is None or arr.dtype.kind not in "biu":
        kind = "None" if arr is None else f"{arr.dtype} values"
        raise ParamError(f"{what} must return uint8 flags (the SIG_* bits, e.g. np.zeros(n, np.uint8)), got {kind}")
    if arr.dtype.kind != "b" and arr.size and (arr.min() < 0 or arr.max() > 255):
        raise ParamError(f"{what} returned flags outside 0..255 (from {arr.min()} to {arr.max()}): use the SIG_* bits")
    return np.ascontiguousarray(arr, dtype=np.uint8)


def prepare_signals(spec: "StrategySpec", bars: "Bars", params: Mapping[str, Any], bank: Any = None,
                    stage: Callable[[str], ContextManager] | None = None
                    ) -> tuple[IndicatorValues, np.ndarray, Levels]:
    """Indicator values, signal flags and level lines of one normalised param set
    (``bank``: any source with ``ensure(bars, name, params)``; None: the default bank).
    ``stage(name)``: a context manager timing the ``"indicators"`` and ``"signals"`` parts
    (:meth:`threadx.timings.Stopwatch.stage`). Each strategy function gets its own copy of
    ``params`` and ``signals`` its own of the values' dicts, so what one of them sets is seen
    by no other call (``levels`` reads the values as a sweep's plan computes them alone)."""
    if stage is None:  # a sweep's plan, once per combo: no timing contexts to enter
        values = prepare_indicators(spec, bars, params, bank)
        sig = signal_flags(spec.signals(bars, _own_values(values), dict(params)), f"{spec.name}.signals", len(bars))
        return values, sig, strategy_levels(spec, values, params, len(bars))
    with stage("indicators"):
        values = prepare_indicators(spec, bars, params, bank)
    with stage("signals"):
        sig = signal_flags(spec.signals(bars, _own_values(values), dict(params)), f"{spec.name}.signals", len(bars))
        levels = strategy_levels(spec, values, params, len(bars))
    return values, sig, levels


def strategy_levels(spec: "StrategySpec", values: IndicatorValues, params: Mapping[str, Any], n_bars: int) -> Levels:
    """``spec.levels(values, params)`` checked: a :class:`Levels` whose lines are None or one
    number per bar, as float64 arrays (a list or float32 line converted once, here); ParamError
    naming the strategy's ``levels`` otherwise (a dict or None was an AttributeError deep in a
    sweep's role check, and a line of the wrong length named neither the strategy nor levels)."""
    levels = spec.levels(values, dict(params))
    if not isinstance(levels, Levels):
        raise ParamError(f"{spec.name}.levels must return Levels(...) (threadx.strategy.Levels, its lines None or "
                         f"one number per bar), got {type(levels).__name__}")
    names = [f.name for f in fields(Levels)]
    lines = [getattr(levels, name) for name in names]
    if all(line is None or (type(line) is np.ndarray and line.dtype == np.float64 and line.shape == (n_bars,))
           for line in lines):
        return levels
    checked = {}
    for name, line in zip(names, lines):
        if line is None:
            checked[name] = None
            continue
        try:
            arr = np.asarray(line, dtype=np.float64)
        except (TypeError, ValueError):
            raise ParamError(f"{spec.name}.levels: its {name} line must be an array of numbers, got "
                             f"{type(line).__name__}") from None
        if arr.shape != (n_bars,):
            raise ParamError(f"{spec.name}.levels: its {name} line has shape {arr.shape}, expected one value per "
                             f"bar ({n_bars:,},)")
        checked[name] = arr
    return Levels(**checked)


def _own_values(values: IndicatorValues) -> IndicatorValues:
    """``values`` with dicts of its own (the arrays shared: they are read-only)."""
    return {label: dict(outputs) for label, outputs in values.items()}
