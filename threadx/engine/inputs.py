"""Engine options and the kernel inputs they produce (shared by backtests and sweeps)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from typing import Any, Mapping

import numpy as np
import pandas as pd

from threadx.config import (DEFAULT_FEE_BPS, DEFAULT_FILL, DEFAULT_INITIAL_CAPITAL, DEFAULT_MIN_NOTIONAL, MIN_BARS,
                            DEFAULT_SLIPPAGE_BPS, MAX_FUNDING_RATE, MAX_INITIAL_CAPITAL, MAX_LEVERAGE, engine_default)
from threadx.data.bars import Bars
from threadx.data.grid import span_bars, timeframe_ns
from threadx.data.timeframe import bars_per_year
from threadx.engine import layout as L
from threadx.errors import TOO_LARGE, DataError, ParamError, is_real, is_whole
from threadx.contract import ExitRules, KernelInputs, Levels

def frozen(arr: np.ndarray) -> np.ndarray:
    """A read-only view of ``arr`` (``arr`` itself when it is read-only already).

    Every array the kernel reads is handed over read-only: numba compiles one version of the
    bar loop per combination of argument types, and a writable and a read-only array are two
    types, so mixed inputs (the bank's read-only lines, a computed signal, a placeholder)
    compiled the large loop several times over (minutes on a first start)."""
    if not arr.flags.writeable:
        return arr
    view = arr.view()
    view.flags.writeable = False
    return view


UNUSED_LINE = frozen(np.full(1, np.nan))  # placeholder for a line the kernel will not read
FUNDING_HOURS_UTC = (0, 8, 16)


SETTINGS_BACKED = ("initial_capital", "fee_bps", "slippage_bps", "fill", "min_notional")  # [engine] settings


def _setting(name: str) -> Any:
    """A field whose default is the ``engine.<name>`` setting (threadx config show)."""
    return field(default_factory=lambda: engine_default(name))


@dataclass(frozen=True)
class EngineOptions:
    """Costs, fills and sizing overrides of a run (units in the names).

    ``sizing``/``leverage``/``fraction`` of None keep the strategy's own rule.
    ``min_notional``: smallest entry order value in quote currency (default
    ``config.DEFAULT_MIN_NOTIONAL``, 5.0); a smaller entry is skipped and counted in
    ``n_skipped``; 0 turns the check off.
    The defaults of capital, fee, slippage, fill and min_notional are the ``[engine]``
    settings (threadx.toml, ``THREADX_ENGINE_*``; :meth:`builtin` ignores them). A run
    records the options it used, so a changed default never passes for an old result.
    ``funding``: None, a constant rate per 8h settlement (00, 08, 16 UTC), a Series of
    rates indexed by settlement time, or an array with one rate per bar (fractions, not %).
    """

    initial_capital: float = _setting("initial_capital")
    fee_bps: float = _setting("fee_bps")
    slippage_bps: float = _setting("slippage_bps")
    fill: str = _setting("fill")
    sizing: str | None = None
    leverage: float | None = None
    fraction: float | None = None
    min_notional: float = _setting("min_notional")
    ambiguity: str = "conservative"
    funding: Any = None

    @classmethod
    def builtin(cls, **changes: Any) -> "EngineOptions":
        """The built-in defaults, whatever the settings say (checks that must not depend on them)."""
        base = dict(initial_capital=DEFAULT_INITIAL_CAPITAL, fee_bps=DEFAULT_FEE_BPS,
                    slippage_bps=DEFAULT_SLIPPAGE_BPS, fill=DEFAULT_FILL, min_notional=DEFAULT_MIN_NOTIONAL)
        return cls(**{**base, **changes})

    def validated(self) -> "EngineOptions":
        """Self, after checking every value (ParamError with the fix on failure)."""
        for name in _NUMBER_FIELDS:
            _real(name, getattr(self, name))
        check_capital(self.initial_capital)
        if not (math.isfinite(self.fee_bps) and 0 <= self.fee_bps < 10_000):
            raise ParamError(f"fee_bps must be between 0 and 10000, got {self.fee_bps}")
        if not (math.isfinite(self.slippage_bps) and 0 <= self.slippage_bps < 10_000):
            raise ParamError(f"slippage_bps must be between 0 and 10000, got {self.slippage_bps}")
        if self.fill not in L.FILL_MODES:
            raise ParamError(f"fill must be one of {', '.join(L.FILL_MODES)}, got {self.fill!r}")
        if self.sizing is not None and self.sizing not in L.SIZING_MODES:
            raise ParamError(f"sizing must be one of {', '.join(L.SIZING_MODES)}, got {self.sizing!r}")
        if self.leverage is not None:
            check_sizing("leverage", self.leverage)
        if self.fraction is not None:
            check_sizing("fraction", self.fraction)
        if not (math.isfinite(self.min_notional) and self.min_notional >= 0):
            raise ParamError(f"min_notional must be a finite number >= 0, got {self.min_notional}")
        if self.ambiguity not in ("conservative", "optimistic"):
            raise ParamError(f"ambiguity must be conservative or optimistic, got {self.ambiguity!r}")
        funding_rate(self.funding)
        return self

    def to_dict(self) -> dict:
        """JSON-safe view (funding summarised)."""
        out = asdict(self)
        out["funding"] = funding_record(self.funding)
        return out


_SIZING_RANGES = {  # name -> (lowest, lowest allowed itself, highest, words)
    "leverage": (1.0, True, MAX_LEVERAGE, f"from 1 to {MAX_LEVERAGE:g}"),
    "fraction": (0.0, False, 1.0, "in (0, 1]"),
}


def check_capital(value: Any, name: str = "initial_capital") -> float:
    """``value`` as a starting capital: a positive number up to ``MAX_INITIAL_CAPITAL``
    (ParamError naming ``name`` otherwise)."""
    number = _real(name, value)
    if number is None or not (math.isfinite(number) and number > 0):
        raise ParamError(f"{name} must be positive, got {value!r}")
    if number > MAX_INITIAL_CAPITAL:
        raise ParamError(f"{name} must be at most {MAX_INITIAL_CAPITAL:,.0f}, got {value!r}")
    return number


def check_sizing(name: str, value: Any, whose: str = "") -> None:
    """ParamError unless ``value`` is a leverage from 1 to ``MAX_LEVERAGE`` (``name`` "leverage")
    or a fraction in (0, 1] (``name`` "fraction"); ``whose`` words where it came from."""
    number = _real(f"{whose}{name}", value)
    low, low_ok, high, words = _SIZING_RANGES[name]
    if number is None or not ((low <= number if low_ok else low < number) and number <= high):  # (NaN: false)
        raise ParamError(f"{whose}{name} must be {words}, got {value!r}")


_NUMBER_FIELDS = ("initial_capital", "fee_bps", "slippage_bps", "leverage", "fraction", "min_notional")


def _real(name: str, value: Any) -> float | None:
    """``value`` as a float (None stays None); ParamError for text, a bool or a number out of float range."""
    if value is None:
        return None
    if not is_real(value):
        raise ParamError(f"{name} must be a number, got {value!r}")
    try:
        return float(value)
    except OverflowError:
        raise ParamError(f"{name} {TOO_LARGE}") from None


def funding_rate(funding: Any) -> Any:
    """``funding`` checked, a single rate as a float (a numpy scalar included); ParamError unless
    it is None, a rate, a Series or one rate per bar of numbers, every rate a fraction below
    ``MAX_FUNDING_RATE`` in size (NaN in a Series or array: no settlement there; an infinite
    rate is refused, it would make the account's figures infinite), a Series' settlement times
    each once (a repeated one was paid twice)."""
    if funding is None:
        return None
    kinds = "a rate per 8h settlement, a Series of rates indexed by settlement time or an array with one rate per bar"
    if isinstance(funding, (bool, np.bool_, Mapping, str, bytes)):
        raise ParamError(f"funding must be {kinds}, got {type(funding).__name__}")
    if isinstance(funding, np.ndarray) and funding.ndim == 0:
        funding = funding.item()  # a 0-d array: its one rate
    if isinstance(funding, (int, float, np.integer, np.floating)):
        rate = _real("funding", funding)
        if math.isnan(rate):
            raise ParamError("funding must be a number (a fraction per settlement), got nan; None for no funding")
        rates = np.array([rate])
        funding = rate
    else:
        raw = np.asarray(funding.to_numpy() if isinstance(funding, pd.Series) else funding)
        if raw.dtype.kind not in "iuf" and not (raw.dtype.kind == "O" and all(
                v is None or is_real(v) for v in raw.ravel())):
            raise ParamError(f"funding rates must be numbers (None or NaN for no settlement), got {raw.dtype} values")
        rates = raw.astype(np.float64)
        if isinstance(funding, pd.Series) and funding.index.has_duplicates:  # (both were paid: 2x the funding)
            repeated = funding.index[funding.index.duplicated()]
            raise ParamError(f"funding holds {len(repeated):,} repeated settlement time(s), the first {repeated[0]}: "
                             "one rate per settlement (drop the repeats, e.g. funding[~funding.index.duplicated()])")
    size = np.abs(rates[~np.isnan(rates)])
    if size.size and not (size < MAX_FUNDING_RATE).all():
        raise ParamError(f"funding rates must be fractions per settlement below {MAX_FUNDING_RATE:g} in size "
                         f"(0.0001 = 0.01 %), got {float(size.max()):g}")
    return funding


def funding_record(funding: Any) -> Any:
    """Funding as a run records it: None, a constant rate, or :func:`funding_summary`'s text for
    a series (``<Series of N rates from PATH, sha256 ...>``)."""
    return funding if funding is None or isinstance(funding, (int, float)) else funding_summary(funding)


def funding_file_record(funding: Any) -> dict[str, Any] | None:
    """Which stored funding file a run paid (``meta["funding"]``): its ``source`` path, the
    ``fingerprint`` of its rows (:func:`threadx.data.funding.funding_fingerprint`) and its
    count of ``rates``; None for no funding, a rate, or a series that is not a stored file's
    rows as read (:func:`stored_file_of`)."""
    source = stored_file_of(funding)
    if source is None:
        return None
    return {"source": source, "fingerprint": funding.attrs["fingerprint"], "rates": len(funding)}


def stored_file_of(funding: Any) -> str | None:
    """The funding file a series holds the rows of, as read (``attrs`` ``source`` and ``fingerprint``,
    see :func:`threadx.data.funding.funding_for`); None for any other value, a cut or edited copy
    included (pandas carries ``attrs`` through slicing and arithmetic: its rows are not the file's)."""
    from threadx.data.funding import funding_fingerprint

    attrs = (getattr(funding, "attrs", None) or {}) if isinstance(funding, pd.Series) else {}
    if not attrs.get("source") or not isinstance(funding.index, pd.DatetimeIndex):
        return None
    return attrs["source"] if attrs.get("fingerprint") == funding_fingerprint(funding) else None


def funding_summary(funding: Any) -> str:
    """Text standing for a funding series in a run's record, with a digest of its times and
    rates (a resume compares it: other rates are another run), and where it was read from when
    it holds a stored funding file's rows (:func:`stored_file_of`):
    ``<Series of 1,095 rates from PATH, sha256 3f9a...>`` (of its times and rates as they are now:
    a cut or edited copy of a stored series is another series, named as none)."""
    import hashlib

    from threadx.data.funding import funding_fingerprint

    stored = stored_file_of(funding)
    source = f" from {stored}" if stored else ""
    if isinstance(funding, pd.Series) and isinstance(funding.index, pd.DatetimeIndex):
        digest = funding_fingerprint(funding)
    else:  # one rate per bar
        digest = hashlib.sha256(np.ascontiguousarray(np.asarray(funding, dtype=np.float64)).tobytes()).hexdigest()
    return f"<{type(funding).__name__} of {len(funding):,} rates{source}, sha256 {digest}>"


def strategy_rules(spec: Any, params: Mapping[str, Any], options: EngineOptions) -> ExitRules:
    """The effective exit rules of ``spec`` (a StrategySpec) for ``params``: its ``exits`` called
    with a copy of them (strategy code that edits its params changes no caller's, as
    ``prepare_signals`` gives its functions copies), then :func:`effective_rules`."""
    return effective_rules(returned_rules(spec.exits(dict(params))), options)


ENGINE_OVERRIDES = ("sizing", "leverage", "fraction")  # engine options that replace a strategy's rule


def override_conflict(spec: Any, params: Mapping[str, Any], options: EngineOptions) -> str | None:
    """Why the engine's sizing / leverage / fraction would replace a strategy param of that very
    name set away from its default (to another value than the engine's), or None: a sweep of
    bb_atr's leverage 1:5:2 under the engine's leverage 1 stored three identical rows labelled
    1, 3 and 5, and a backtest showed leverage=5 beside leverage 1's figures. A sizing the
    strategy derives (risk when a stop is set) is no param: the engine's replaces it, as asked."""
    declared = {p.name: p for p in getattr(spec, "params", ())}
    for name in ENGINE_OVERRIDES:
        engine, param = getattr(options, name), declared.get(name)
        if engine is None or param is None or name not in params:
            continue
        mine = params[name]
        if mine != param.default and mine != engine:
            return (f"{name} is set twice: the engine option {name} {engine} would replace the strategy's param "
                    f"{name}={mine}; drop one (the engine option, --{name}, or the param)")
    return None


def returned_rules(rules: Any) -> ExitRules:
    """``rules``, what a strategy's ``exits`` returned, when they are ExitRules (ParamError
    otherwise: None was an AttributeError on a field name, the function not named)."""
    if not isinstance(rules, ExitRules):
        raise ParamError(f"exits() must return ExitRules(...) (threadx.strategy.ExitRules), got {type(rules).__name__}")
    return rules


def effective_rules(rules: ExitRules, options: EngineOptions) -> ExitRules:
    """Strategy rules with the engine's overrides (:data:`ENGINE_OVERRIDES`) applied."""
    changes = {name: value if name == "sizing" else float(value) for name in ENGINE_OVERRIDES
               if (value := getattr(options, name)) is not None}
    rules = canonical_rules(replace(rules, **changes) if changes else rules)
    check_legs(rules)
    if rules.grid_levels > 0:
        return rules  # grid legs are sized by allocation, not by the sizing rule
    if rules.sizing == "risk":  # the stops' own errors first: a negative one is no missing stop
        for name in ("stop_pct", "stop_atr", "risk_per_trade"):
            _amount(name, getattr(rules, name))
    if rules.sizing == "risk" and rules.stop_pct <= 0 and rules.stop_atr <= 0 and rules.stop_band is None:
        raise ParamError("sizing 'risk' needs a stop: set a stop-loss param, or use sizing all_in or fraction")
    if rules.sizing == "risk" and not rules.risk_per_trade > 0:
        raise ParamError("sizing 'risk' needs risk_per_trade > 0")
    return rules


def canonical_rules(rules: ExitRules) -> ExitRules:
    """``rules`` in the types :func:`check_legs` and the param vector read: a leg or level count
    held in a float (a float param's 2.0) as the int it is (check_legs refused 2.0 as "not a whole
    number"), and grid offsets given as a list or a 1-D array as the tuple they stand for;
    ``rules`` itself when nothing needs it."""
    changes: dict[str, Any] = {name: int(value) for name in ("max_legs", "grid_levels")
                               if not isinstance(value := getattr(rules, name), (int, np.integer))
                               and is_real(value) and math.isfinite(value) and float(value).is_integer()}
    for name in ("grid_pct", "grid_atr"):
        value = getattr(rules, name)
        if isinstance(value, list) or (isinstance(value, np.ndarray) and value.ndim == 1):
            changes[name] = tuple(value.tolist() if isinstance(value, np.ndarray) else value)
    return replace(rules, **changes) if changes else rules


_LEG_RULES = ("max_legs", "add_scale", "reduce_fraction", "partial_tp_pct", "partial_tp_atr", "grid_levels",
              "allocation", "stop_band", "partial_tp_band", "arm_exits_r", "arm_exits_band")
_ONE_POSITION = tuple(getattr(ExitRules(), name) for name in _LEG_RULES)  # ExitRules' defaults: one position


def check_legs(rules: ExitRules) -> None:
    """ParamError for several-position rules the kernel cannot hold (SPEC §3)."""
    for name in ("grid_pct", "grid_atr"):  # (read by the param vector even without a grid)
        values = getattr(rules, name)
        if not isinstance(values, tuple) or not all(is_real(v) for v in values):
            raise ParamError(f"the exit rules' {name} must be a tuple of numbers (one per level), got {values!r}")
    if tuple(getattr(rules, name) for name in _LEG_RULES) == _ONE_POSITION:
        return  # one position: nothing to check (the common case, once per exit group of a sweep)
    _check_leg_types(rules)
    k = rules.grid_levels
    if not (is_whole(rules.max_legs) and 1 <= rules.max_legs <= L.MAX_LEGS):
        raise ParamError(f"max_legs must be a whole number from 1 to {L.MAX_LEGS}, got {rules.max_legs!r}")
    if not (is_whole(k) and 0 <= k <= L.MAX_GRID_LEVELS):
        raise ParamError(f"grid_levels must be a whole number from 0 to {L.MAX_GRID_LEVELS}, got {k!r}")
    if k and (len(rules.grid_pct) not in (0, k) or len(rules.grid_atr) not in (0, k)
              or not (rules.grid_pct or rules.grid_atr)):
        raise ParamError(f"grid_levels={k} needs {k} offsets in grid_pct and/or grid_atr "
                         f"(got {len(rules.grid_pct)} and {len(rules.grid_atr)})")
    offsets = [*rules.grid_pct, *rules.grid_atr]
    if not all(math.isfinite(x) and x >= 0 for x in offsets):
        raise ParamError(f"grid offsets must be finite and >= 0, got {offsets}")
    for name in ("grid_pct", "grid_atr"):  # level k is nearer than level k + 1: fills go in price order
        values = list(getattr(rules, name))
        if values != sorted(values):
            raise ParamError(f"{name} must list the levels in increasing order (nearest first), got {values}")
    if rules.grid_sides not in L.GRID_SIDES:
        raise ParamError(f"grid_sides must be one of {', '.join(L.GRID_SIDES)}, got {rules.grid_sides!r}")
    if k and rules.max_legs != 1:
        raise ParamError("a grid holds one leg per level: leave max_legs at 1 with grid_levels")
    if not (math.isfinite(rules.allocation) and 0 < rules.allocation <= 1):
        raise ParamError(f"allocation must be in (0, 1], got {rules.allocation}")
    if not (math.isfinite(rules.add_scale) and rules.add_scale > 0):
        raise ParamError(f"add_scale must be > 0, got {rules.add_scale}")
    if not (math.isfinite(rules.reduce_fraction) and 0 <= rules.reduce_fraction <= 1):
        raise ParamError(f"reduce_fraction must be in [0, 1], got {rules.reduce_fraction}")
    if (rules.partial_tp_pct > 0 or rules.partial_tp_atr > 0 or rules.partial_tp_band) and not rules.reduce_fraction > 0:
        raise ParamError("a partial target needs reduce_fraction > 0 (the share of the position it closes)")
    if rules.partial_tp_band and (rules.partial_tp_pct > 0 or rules.partial_tp_atr > 0):
        raise ParamError("a partial target is either at the far band (partial_tp_band) or at a distance "
                         "(partial_tp_pct / partial_tp_atr), not both")
    if rules.stop_band is not None and not (math.isfinite(rules.stop_band) and 0 <= rules.stop_band <= 1):
        raise ParamError(f"stop_band must be in [0, 1] (from the band edge to the middle band), got {rules.stop_band}")
    if k and rules.stop_band is not None:
        raise ParamError("a grid's stop is at sl_percent of the average entry: stop_band needs entry signals")
    if not (math.isfinite(rules.arm_exits_r) and rules.arm_exits_r >= 0):
        raise ParamError(f"arm_exits_r must be >= 0, got {rules.arm_exits_r}")
    if rules.arm_exits_r > 0 and rules.stop_pct <= 0 and rules.stop_atr <= 0 and rules.stop_band is None:
        raise ParamError("arm_exits_r counts gains in stop distances: it needs a stop (stop_pct, stop_atr or stop_band)")


_LEG_NUMBERS = ("add_scale", "reduce_fraction", "partial_tp_pct", "partial_tp_atr", "allocation", "arm_exits_r")


def _check_leg_types(rules: ExitRules) -> None:
    """ParamError for a several-position rule of the wrong type (text, None, an array for a tuple):
    :func:`check_legs` compares numbers, and a str field was a TypeError from there."""
    for name in _LEG_NUMBERS:
        if _real(f"the exit rules' {name}", getattr(rules, name)) is None:
            raise ParamError(f"the exit rules' {name} must be a number, got None")
    _real("the exit rules' stop_band", rules.stop_band)  # (None = off)


def _grid_offsets(values: tuple, k: int) -> list[float]:
    return [float(v) for v in values] if values else [0.0] * k


# rule fields counted in bars or legs: whole numbers (2.7 bars held would be read as 3)
_WHOLE_AMOUNTS = frozenset({"max_hold_bars", "spacing_bars", "max_legs"})
# rule fields that are fractions with a ceiling -> (the ceiling, whether it is allowed, what the unit is):
# 1.5 for a 1.5 % stop put a long's stop below zero (never hit) and 5.0 risked 500 % of equity, silently;
# 80 for 80 % of the way to the middle band trailed a long's stop far above the price (out at the next bar)
_FRACTION_CEILINGS = {
    "stop_pct": (1.0, False, "a fraction of the entry price below 1: 0.02 = 2 %"),
    "trail_pct": (1.0, False, "a fraction of the best price below 1: 0.02 = 2 %"),
    "risk_per_trade": (1.0, True, "a fraction of equity up to 1: 0.01 = 1 %"),
    "trail_band_pct": (1.0, True, "a fraction of the way from the band edge (0) to the middle band (1)"),
}


def _amount(name: str, value: Any) -> float:
    """A distance, count or fraction of the exit rules: a finite number >= 0 (0 = off); a
    negative or NaN one would turn the rule off without a word. Bar and leg counts are whole
    numbers, and a stop, a trailing distance or the risk per trade a fraction below its
    ceiling (:data:`_FRACTION_CEILINGS`)."""
    number = _real(f"the exit rules' {name}", value)
    if number is None or not (math.isfinite(number) and number >= 0):
        raise ParamError(f"the exit rules' {name} must be a finite number >= 0 (0 = off), got {value!r}")
    if name in _WHOLE_AMOUNTS and not number.is_integer():
        raise ParamError(f"the exit rules' {name} must be a whole number (0 = off), got {value!r}")
    if name in _FRACTION_CEILINGS:
        ceiling, allowed, words = _FRACTION_CEILINGS[name]
        if number > ceiling or (number == ceiling and not allowed):
            raise ParamError(f"the exit rules' {name} must be {words}, got {value!r}")
    return number


def _mode(name: str, modes: Mapping[str, float], value: Any) -> float:
    """The code of one of ``modes`` (sizing, trail, grid sides)."""
    if not isinstance(value, str) or value not in modes:
        raise ParamError(f"the exit rules' {name} must be one of {', '.join(modes)}, got {value!r}")
    return modes[value]


def _flag(name: str, value: Any) -> float:
    """A switch of the exit rules (target_mid, ...): a bool, 0 / 1, or None for off; text such
    as "no" was on."""
    if value is not None and not isinstance(value, (bool, np.bool_)) and not (is_real(value) and value in (0, 1)):
        raise ParamError(f"the exit rules' {name} must be True or False, got {value!r}")
    return 1.0 if value else 0.0


def _rules_sizing(name: str, value: Any) -> Any:
    """A strategy's own leverage or fraction, checked as the options' are (:func:`check_sizing`)
    where it enters the param vector: once per distinct value in a sweep's plan, not per combo."""
    check_sizing(name, value, "the exit rules' ")
    return value


# the rule fields that are distances, counts or fractions (0 = off) -> their column
_AMOUNT_COLUMNS = {
    "risk_per_trade": L.P_RISK, "stop_pct": L.P_STOP_PCT, "stop_atr": L.P_STOP_ATR, "tp_pct": L.P_TP_PCT,
    "tp_atr": L.P_TP_ATR, "trail_atr": L.P_TRAIL_ATR, "trail_pct": L.P_TRAIL_PCT,
    "trail_band_pct": L.P_TRAIL_BAND_PCT, "max_hold_bars": L.P_MAX_HOLD, "spacing_bars": L.P_SPACING,
    "max_legs": L.P_MAX_LEGS, "add_scale": L.P_ADD_SCALE, "reduce_fraction": L.P_REDUCE_FRACTION,
    "partial_tp_pct": L.P_PTP_PCT, "partial_tp_atr": L.P_PTP_ATR, "allocation": L.P_ALLOCATION,
    "arm_exits_r": L.P_ARM_R,
}

# rule field -> (its column in the param vector, the entry written there for a value): every
# field but the grid's levels and stop_band, which fill several columns (see param_vector)
RULE_COLUMNS: dict[str, tuple[int, Any]] = {
    "sizing": (L.P_SIZING, partial(_mode, "sizing", L.SIZING_MODES)),
    "fraction": (L.P_FRACTION, partial(_rules_sizing, "fraction")),
    "leverage": (L.P_LEVERAGE, partial(_rules_sizing, "leverage")),
    "target_mid": (L.P_TARGET_MID, partial(_flag, "target_mid")),
    "trail": (L.P_TRAIL_MODE, partial(_mode, "trail", L.TRAIL_MODES)),
    "grid_sides": (L.P_GRID_SIDES, partial(_mode, "grid_sides", L.GRID_SIDES)),
    "partial_tp_band": (L.P_PTP_BAND, partial(_flag, "partial_tp_band")),
    "arm_exits_band": (L.P_ARM_BAND, partial(_flag, "arm_exits_band")),
    **{name: (col, partial(_amount, name)) for name, col in _AMOUNT_COLUMNS.items()},
}


def rule_column(name: str, values: Any) -> tuple[int, np.ndarray]:
    """(column of rule field ``name`` in the param vector, the float64 entry of each of ``values``
    there): :data:`RULE_COLUMNS` as :func:`param_vector` writes it, for many values at once."""
    col, entry = RULE_COLUMNS[name]
    out = np.empty(len(values))
    for k, value in enumerate(values):
        out[k] = entry(value)  # the same assignment as param_vector's
    return col, out


def param_vector(rules: ExitRules, options: EngineOptions, timeframe: str | None, uses_funding: bool,
                 span: float = 0.0) -> np.ndarray:
    """The kernel's float64 parameter vector for one run of ``rules`` checked already
    (:func:`effective_rules` or :func:`check_legs`; a sweep's plan makes one per exit group) on
    data spanning ``span`` bars (:func:`threadx.data.grid.span_bars`; 0: the bars it holds)."""
    p = np.zeros(L.N_PARAMS)
    p[L.P_FILL] = L.FILL_MODES[options.fill]
    p[L.P_FEE_RATE] = options.fee_bps / 10_000.0
    p[L.P_SLIP_RATE] = options.slippage_bps / 10_000.0
    p[L.P_INITIAL_CAPITAL] = options.initial_capital
    p[L.P_MIN_NOTIONAL] = options.min_notional
    p[L.P_OPTIMISTIC] = 1.0 if options.ambiguity == "optimistic" else 0.0
    p[L.P_USE_FUNDING] = 1.0 if uses_funding else 0.0
    for name, (col, entry) in RULE_COLUMNS.items():
        p[col] = entry(getattr(rules, name))
    k = rules.grid_levels
    p[L.P_GRID_K] = k
    p[L.P_GRID_PCT:L.P_GRID_PCT + k] = _grid_offsets(rules.grid_pct, k)
    p[L.P_GRID_ATR:L.P_GRID_ATR + k] = _grid_offsets(rules.grid_atr, k)
    p[L.P_STOP_BAND] = 0.0 if rules.stop_band is None else 1.0
    p[L.P_STOP_BAND_PCT] = 0.0 if rules.stop_band is None else rules.stop_band
    if timeframe is None:
        raise DataError("cannot tell the timeframe of the data (fewer than 2 bars?); pass timeframe=")
    p[L.P_BARS_PER_YEAR] = bars_per_year(timeframe)
    p[L.P_SPAN_BARS] = span
    return p


def line_needs(rules: ExitRules) -> tuple[bool, bool, bool]:
    """Which level lines the kernel reads under ``rules``: (ATR, middle band, band edges).
    A grid's levels are offsets from the middle band (its reference line), in ATRs too."""
    grid = rules.grid_levels > 0
    stop_band = rules.stop_band is not None
    return (rules.stop_atr > 0 or rules.tp_atr > 0 or rules.trail == "atr" or rules.partial_tp_atr > 0
            or (grid and any(x > 0 for x in rules.grid_atr)),
            rules.target_mid or rules.trail == "band" or grid or stop_band,
            rules.trail == "band" or stop_band or rules.partial_tp_band or rules.arm_exits_band)


def level_arrays(levels: Levels, rules: ExitRules, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(atr, band_lo, band_mid, band_hi) for the kernel, checking the rules have what they read."""
    if not isinstance(levels, Levels):
        raise ParamError(f"levels() must return Levels(...) (threadx.strategy.Levels), got {type(levels).__name__}")
    needs_atr, needs_mid, needs_edges = line_needs(rules)

    def pick(arr: np.ndarray | None, needed: bool, what: str, field: str) -> np.ndarray:
        if not needed:
            return UNUSED_LINE if arr is None else _f64(arr, n, what)
        if arr is None:
            raise ParamError(f"the exit rules need the {what} line, which the strategy's levels() does not give "
                             f"(Levels({field}=...))")
        return _f64(arr, n, what)

    return (
        pick(levels.atr, needs_atr, "ATR", "atr"),
        pick(levels.band_lo, needs_edges, "lower band", "band_lo"),
        pick(levels.band_mid, needs_mid, "middle band", "band_mid"),
        pick(levels.band_hi, needs_edges, "upper band", "band_hi"),
    )


def _f64(arr: np.ndarray, n: int, what: str) -> np.ndarray:
    try:
        out = np.ascontiguousarray(arr, dtype=np.float64)
    except (TypeError, ValueError):
        raise ParamError(f"{what} line must be an array of numbers, got {type(arr).__name__}") from None
    if out.shape != (n,):
        raise ParamError(f"{what} line has shape {out.shape}, expected ({n},)")
    return out


def funding_per_bar(funding: Any, bars: Bars) -> np.ndarray | None:
    """One funding rate per bar (charged at that bar's open), or None when off."""
    if funding is None:
        return None
    n = len(bars)
    if isinstance(funding, (int, float)):
        if funding == 0:
            return None
        first = pd.Timestamp(int(bars.time_ns[0]), tz="UTC").floor("D")
        last = pd.Timestamp(int(bars.time_ns[-1]), tz="UTC") + pd.Timedelta(hours=24)
        settle = pd.date_range(first, last, freq="h")
        settle = settle[settle.hour.isin(FUNDING_HOURS_UTC)]
        funding = pd.Series(float(funding), index=settle)
    if isinstance(funding, pd.Series):
        # a rate settled at time T is paid in the bar that contains T, by the position held
        # at that bar's open (on aligned 1h/4h/8h bars: the bar opening at T); one settled in a
        # gap of the data, in the first bar after it, by the position held through the gap (it
        # was paid before the gap, by whatever the bar before held at its open)
        times = pd.DatetimeIndex(funding.index)
        if times.tz is None:
            raise DataError("funding Series index must be tz-aware UTC")
        settle_ns = times.tz_convert("UTC").as_unit("ns").asi8
        out = np.zeros(n)
        bar_ns = _bar_ns(bars)
        pos = np.searchsorted(bars.time_ns, settle_ns, side="right") - 1
        in_gap = (pos >= 0) & (settle_ns >= bars.time_ns[np.maximum(pos, 0)] + bar_ns)
        pos = np.where(in_gap, pos + 1, pos)
        values = funding.to_numpy(dtype=np.float64)
        end_ns = bars.time_ns[-1] + bar_ns
        keep = (pos >= 0) & (settle_ns < end_ns) & np.isfinite(values)
        np.add.at(out, pos[keep], values[keep])
        return out
    arr = np.asarray(funding, dtype=np.float64)
    if arr.shape != (n,):
        raise DataError(f"funding array must have one rate per bar ({n}), got shape {arr.shape}")
    return np.nan_to_num(arr, nan=0.0)


def _bar_ns(bars: Bars) -> int:
    """Length of one bar in ns (from the timeframe, else the last spacing)."""
    if bars.timeframe:
        return timeframe_ns(bars.timeframe)
    return int(bars.time_ns[-1] - bars.time_ns[-2]) if len(bars) > 1 else 0


def check_bar_count(bars: Bars) -> int:
    """The number of bars; DataError below 2 (checked before any strategy code runs on them)."""
    n = len(bars)
    if n < MIN_BARS:
        raise DataError(f"need at least {MIN_BARS} bars to backtest, got {n}")
    return n


def kernel_args(bars: Bars, sig: np.ndarray, levels: Levels, rules: ExitRules, options: EngineOptions,
                funding: np.ndarray | None = None) -> KernelInputs:
    """The arguments of ``kernel.run_fast`` / ``kernel.run_full`` (:class:`KernelInputs`)."""
    n = check_bar_count(bars)
    rules = canonical_rules(rules)
    check_legs(rules)  # (before the lines: a rule the kernel cannot hold is the error to report)
    p = param_vector(rules, options, bars.timeframe, funding is not None, span_bars(bars.time_ns, bars.timeframe))
    atr, lo, mid, hi = level_arrays(levels, rules, n)
    sig = np.ascontiguousarray(sig, dtype=np.uint8)
    if sig.shape != (n,):
        raise ParamError(f"signal array has shape {sig.shape}, expected ({n},)")
    fund = UNUSED_LINE if funding is None else funding
    return KernelInputs(*(frozen(a) for a in (bars.open, bars.high, bars.low, bars.close, sig, atr, lo, mid, hi,
                                               fund, p)))


def largest_first_order(params: np.ndarray, signal_entries: bool = True) -> float:
    """The largest order a param vector's capital allows its first entry: at most the notional
    whose margin plus entry fee is the whole capital (``kernel.open_position``'s cap); with
    fraction sizing, capital x fraction x leverage; a grid's level, capital x allocation / K x
    leverage (its only first order when no signal enters: ``signal_entries`` False). Below
    ``min_notional`` no entry can ever fill.

    >>> p = np.zeros(L.N_PARAMS); p[[L.P_INITIAL_CAPITAL, L.P_LEVERAGE, L.P_FEE_RATE]] = 100.0, 2.0, 0.001
    >>> round(largest_first_order(p), 6)
    199.600798
    >>> p[[L.P_GRID_K, L.P_ALLOCATION]] = 4, 0.5  # a grid of 4 levels sharing half the capital
    >>> round(largest_first_order(p, signal_entries=False), 6)
    25.0
    """
    capital, lev = params[L.P_INITIAL_CAPITAL], params[L.P_LEVERAGE]
    cap = capital / (1.0 / lev + params[L.P_FEE_RATE])
    by_signal = min(cap, capital * params[L.P_FRACTION] * lev) if params[L.P_SIZING] == L.SIZING_FRACTION else cap
    if not params[L.P_GRID_K] > 0.0:
        return float(by_signal)
    by_level = min(cap, capital * params[L.P_ALLOCATION] / params[L.P_GRID_K] * lev)
    return float(max(by_level, by_signal) if signal_entries else by_level)


def options_from(mapping: Mapping[str, Any] | None = None, **kwargs: Any) -> EngineOptions:
    """EngineOptions from keyword arguments, rejecting unknown names; None for capital, fee,
    slippage, fill or min_notional means the setting's value."""
    values = dict(mapping or {}, **kwargs)
    values = {k: v for k, v in values.items() if not (v is None and k in SETTINGS_BACKED)}
    values.update({k: _real(k, values[k]) for k in _NUMBER_FIELDS if k in values})
    if "funding" in values:
        values["funding"] = funding_rate(values["funding"])  # (a numpy scalar becomes a float: one kind of rate)
    known = set(EngineOptions.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ParamError(f"unknown engine option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return EngineOptions(**values).validated()
