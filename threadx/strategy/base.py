"""Strategy declarations: typed params, constraints, indicator needs, signals, exit rules.

A strategy is data, not a loop: it says which indicators it needs for given params,
how its entry/exit signals derive from them (one uint8 flag per bar, see
``threadx.contract.SIG_*``), which indicator lines feed the engine's stops and
targets, and which exit rules apply. The one engine kernel does the rest.
"""
from __future__ import annotations

import inspect
import math
import os
import reprlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Literal, Mapping

import numpy as np

from threadx.contract import BAR_LABEL, ExitRules, IndicatorNeeds, IndicatorValues, Levels, SignalRule
from threadx.errors import TOO_LARGE, ParamError, StrategyError, is_real

ParamKind = Literal["int", "float", "bool", "choice"]

# What a param's value can change (``Param.feeds``); tests/test_param_roles.py checks every
# built-in declaration by perturbing each param:
# - "indicators": the indicator requests ``spec.indicators(params)`` (which lines, which params)
# - "signals": the uint8 signal flags ``spec.signals(bars, values, params)``
# - "levels": the level lines ``spec.levels(values, params)`` (stops, targets, trailing)
# - "exits": the exit and sizing rules ``spec.exits(params)`` (the kernel's param vector)
# A role counts whether the param changes the output directly or through an indicator:
# a period that feeds an indicator the signals read feeds "indicators" and "signals".
ROLES: tuple[str, ...] = ("indicators", "signals", "levels", "exits")
ALL_ROLES: frozenset[str] = frozenset(ROLES)


_KINDS = ("int", "float", "bool", "choice")


def _check_declaration(param: "Param") -> None:
    """ParamError for a declaration the pages, sweeps and checks cannot use: a name that is no
    text, an unknown kind, choices that are not lower-case text (values are matched in lower
    case), bounds or an optimisation range that are not numbers. (A file declaring one is
    listed as not loaded, with its line, instead of breaking every page that lists strategies.)"""
    if not isinstance(param.name, str) or not param.name:
        raise ParamError(f"a param's name must be text, got {param.name!r}")
    if not param.name.isidentifier():  # (a space, "=", ":" or "," made it unreachable from --param NAME=VALUE)
        raise ParamError(f"param name {param.name!r} must be a Python identifier (letters, digits and _)")
    where = f"param {param.name}"
    if param.kind not in _KINDS:
        raise ParamError(f"{where}: kind must be one of {', '.join(_KINDS)}, got {param.kind!r}")
    if param.kind == "choice":
        choices = param.choices
        if not (isinstance(choices, tuple) and choices and all(isinstance(c, str) and c == c.strip().lower()
                                                              for c in choices)):
            raise ParamError(f"{where}: choices must be lower-case texts, got {choices!r} (for numbers, declare an "
                             "int or float param)")
        if len(set(choices)) != len(choices):
            raise ParamError(f"{where}: choices must be distinct, got {choices!r}")
    elif param.kind in ("int", "float"):
        for field_name in ("min", "max", "step"):
            value = getattr(param, field_name)
            if value is not None and not (is_real(value) and math.isfinite(value)):
                raise ParamError(f"{where}: {field_name} must be a finite number, got {value!r}")
        if param.step is not None and not param.step > 0:
            raise ParamError(f"{where}: step must be > 0, got {param.step!r}")
        if param.min is not None and param.max is not None and param.min > param.max:
            raise ParamError(f"{where}: min {param.min!r} is above max {param.max!r}")
        if param.opt_range is not None and not (isinstance(param.opt_range, (tuple, list)) and len(param.opt_range) == 3
                                                and all(is_real(v) for v in param.opt_range)):
            raise ParamError(f"{where}: opt_range must be (low, high, step) numbers, got {param.opt_range!r}")
        if param.opt_range is not None:
            _check_opt_range(param, where)


def _check_opt_range(param: "Param", where: str) -> None:
    """ParamError for an optimisation range that gives no values, or values the param refuses:
    a reversed range or a step <= 0 gave an empty or endless grid to the pages and the checks,
    one outside min..max combos that every sweep failed, a fractional one on an int param
    values that no int takes."""
    low, high, step = (float(v) for v in param.opt_range)
    if not all(math.isfinite(v) for v in (low, high, step)) or low > high or step <= 0:
        raise ParamError(f"{where}: opt_range must be (low, high, step) with low <= high and step > 0, "
                         f"got {tuple(param.opt_range)!r}")
    if (param.min is not None and low < param.min) or (param.max is not None and high > param.max):
        raise ParamError(f"{where}: opt_range {tuple(param.opt_range)!r} must lie within min {param.min!r} and "
                         f"max {param.max!r}")
    if param.kind == "int" and not all(v.is_integer() for v in (low, high, step)):
        raise ParamError(f"{where}: an int param's opt_range must be whole numbers, got {tuple(param.opt_range)!r}")


@dataclass(frozen=True)
class Param:
    """One typed strategy parameter.

    ``min``/``max`` bound what the engine accepts; ``opt_range`` = (low, high, step) is
    the range suggested for optimisation.

    ``feeds`` declares what the value can change, a subset of :data:`ROLES` (a role name
    or an iterable of them; see the comment on ``ROLES``). Undeclared (None) means every
    role, which never merges distinct combos. ``indicator_labels`` narrows "indicators" to the
    requests (labels of ``spec.indicators``) the value can change, e.g. ``("fast",)`` for a
    fast period: a sweep then looks up each line once per value of the params feeding it.
    Empty (``feeds=()``) declares a display-only
    param: it changes no signal, level, exit or fill (it may reshape a line that is only
    drawn, e.g. bb_atr's ``bb_std``); default search spaces leave it at its default, and
    combos that differ only in such params count as one trial (DSR, PBO).
    """

    name: str
    kind: ParamKind
    default: Any
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: tuple = ()
    opt_range: tuple[float, float, float] | None = None
    description: str = ""
    feeds: frozenset[str] = ALL_ROLES  # also accepts None (every role), a role name or an iterable
    indicator_labels: tuple[str, ...] | None = None  # the requests it changes (None: every one)

    def __post_init__(self) -> None:
        if isinstance(self.choices, list):  # (a list reads the same: kept as a tuple, hashable)
            object.__setattr__(self, "choices", tuple(self.choices))
        _check_declaration(self)
        object.__setattr__(self, "feeds", _roles(f"param {self.name}", self.feeds))
        if self.indicator_labels is not None:  # (without the role "indicators" they say nothing)
            labels = self.indicator_labels
            labels = (labels,) if isinstance(labels, str) else tuple(labels) if isinstance(labels, (tuple, list)) else None
            if labels is None or not all(isinstance(label, str) for label in labels):
                raise ParamError(f"param {self.name}: indicator_labels must be label names (keys of the strategy's "
                                 f"indicators), got {self.indicator_labels!r}")
            object.__setattr__(self, "indicator_labels", labels)

    def rule_value(self, value: Any) -> float:
        """``value`` as a SignalRule reads it: a number as it is, a bool 0 or 1, a choice its
        position in ``choices``."""
        if self.kind == "choice":
            return float(self.choices.index(value))
        return float(value)

    def feeds_label(self, label: str) -> bool:
        """Whether the value can change the indicator request ``label`` (of ``spec.indicators``)
        that the backtest reads (a display-only param changes only drawn lines: False)."""
        return "indicators" in self.feeds and (self.indicator_labels is None or label in self.indicator_labels)

    @property
    def affects_results(self) -> bool:
        """False for a display-only param (``feeds`` empty)."""
        return bool(self.feeds)

    def coerce(self, value: Any) -> Any:
        """Value converted to this param's type and checked against its bounds."""
        name = self.name
        if self.kind == "bool":
            if isinstance(value, (bool, np.bool_)):
                return bool(value)
            if isinstance(value, (int, np.integer)) and value in (0, 1):
                return bool(value)
            if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
                return value.strip().lower() in ("true", "1", "yes")
            raise ParamError(f"{name} must be true or false, got {value!r}")
        if self.kind == "choice":
            text = str(value).strip().lower()
            if text not in self.choices:
                raise ParamError(f"{name} must be one of {', '.join(self.choices)}, got {value!r}")
            return text
        if isinstance(value, (bool, np.bool_)):  # (float(True) is 1.0: a switch is not a number)
            raise ParamError(f"{name} must be a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ParamError(f"{name} must be a number, got {value!r}") from None
        except OverflowError:
            raise ParamError(f"{name} {TOO_LARGE}") from None
        if not math.isfinite(number):
            raise ParamError(f"{name} must be finite, got {value!r}")
        if self.kind == "int":
            if number != round(number):
                raise ParamError(f"{name} must be a whole number, got {value!r}")
            number = int(round(number))
        if self.min is not None and number < self.min:
            raise ParamError(f"{name}={value} is below its minimum {self.min:g}")
        if self.max is not None and number > self.max:
            raise ParamError(f"{name}={value} is above its maximum {self.max:g}")
        return number

    def to_dict(self) -> dict:
        """JSON-safe declaration."""
        return {
            "name": self.name,
            "kind": self.kind,
            "default": self.default,
            "min": self.min,
            "max": self.max,
            "step": self.step,
            "choices": list(self.choices),
            "opt_range": list(self.opt_range) if self.opt_range else None,
            "description": self.description,
            "feeds": [role for role in ROLES if role in self.feeds],
            "indicator_labels": list(self.indicator_labels) if self.indicator_labels is not None else None,
            "affects_results": self.affects_results,
        }


def _roles(owner: str, feeds: str | Iterable[str] | None) -> frozenset[str]:
    """``feeds`` as a frozenset of known roles (ParamError naming ``owner`` and an unknown role)."""
    if feeds is None:
        return ALL_ROLES
    roles = frozenset((feeds,) if isinstance(feeds, str) else feeds)
    unknown = sorted(roles - ALL_ROLES)
    if unknown:
        raise ParamError(f"{owner}: unknown role {', '.join(map(repr, unknown))}; roles: {', '.join(ROLES)}")
    return roles


@dataclass(frozen=True)
class Constraint:
    """A rule between params, e.g. ``fast_period < slow_period``."""

    description: str
    check: Callable[[Mapping[str, Any]], bool]

    def verdict(self, params: Mapping[str, Any]) -> bool:
        """``check(params)``, which must be True or False (or the int 0 or 1, as ``p["n"] and ...``
        gives): anything else (None from a missing ``return``, another number, an array) raises
        TypeError, where it dropped combos silently as False.

        >>> Constraint("a < b", lambda p: None if p["a"] else True).verdict({"a": 1})
        Traceback (most recent call last):
        TypeError: returned None, not True or False
        """
        held = self.check(params)
        if not isinstance(held, (bool, np.bool_)) and not (isinstance(held, (int, np.integer)) and held in (0, 1)):
            raise TypeError(f"returned {_SHORT.repr(held)}, not True or False")
        return bool(held)


_SHORT = reprlib.Repr()  # a returned value as an error names it: an array or a long text cut short
_SHORT.maxother = _SHORT.maxstring = 60


def no_overlays(params: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """A strategy that draws no indicator line on the price chart."""
    return {}


_NO_LEVELS = Levels()  # frozen: one instance serves every call


def no_levels(values: IndicatorValues, params: Mapping[str, Any]) -> Levels:
    """A strategy whose exits read no indicator line (percent stops and targets only)."""
    return _NO_LEVELS


@dataclass(frozen=True)
class StrategyOrigin:
    """Where a strategy's code comes from, and the hash of that code.

    ``kind``: ``"builtin"`` (shipped in ``threadx.strategy``), ``"module"`` (registered on
    import of a Python module) or ``"user"`` (a file of the strategies folder, see
    :mod:`threadx.strategy.user`). A user strategy carries its source ``text``, so that a
    sweep's workers run the code the sweep started with even when the file is edited meanwhile;
    ``helpers`` holds (path, text) of each module of the folder that the file imports, and
    ``code_hash`` covers them.
    """

    kind: str
    path: str | None
    code_hash: str
    text: str | None = None
    line: int = 0  # the line of the file where the strategy is declared (user strategies)
    helpers: tuple[tuple[str, str], ...] = ()

    @property
    def files(self) -> tuple[str, ...]:
        """The strategy's file and the folder modules it imports (where its code's errors lie)."""
        return tuple(p for p in (self.path, *(path for path, _ in self.helpers)) if p is not None)

    def helper_texts(self) -> dict[str, str]:
        """Module name -> text of each folder module the file imports (what a rebuild runs)."""
        return {os.path.splitext(os.path.basename(path))[0]: text for path, text in self.helpers}

    @property
    def where(self) -> str:
        """``file:line`` of a user strategy's declaration, the module file otherwise."""
        if self.path is None:
            return self.kind
        return f"{self.path}:{self.line}" if self.line else self.path


_DISPLAY_ONLY: dict[int, tuple[tuple[Param, ...], tuple[tuple[str, Any], ...]]] = {}


def _display_only_defaults(params: tuple[Param, ...]) -> tuple[tuple[str, Any], ...]:
    """(name, default) of the display-only params among ``params``, remembered by the identity
    of the tuple (a sweep asks once per combo: hashing every Param each time cost more than
    the rest of ``results_params``)."""
    known = _DISPLAY_ONLY.get(id(params))
    if known is not None and known[0] is params:
        return known[1]
    if len(_DISPLAY_ONLY) >= 256:
        _DISPLAY_ONLY.clear()
    found = tuple((p.name, p.default) for p in params if not p.affects_results)
    _DISPLAY_ONLY[id(params)] = (params, found)  # holding the tuple keeps its id unique
    return found


@dataclass(frozen=True)
class StrategySpec:
    """Everything the engine, sweeps and UI need to know about one strategy.

    - ``indicators(params)`` -> {label: (indicator name, indicator params)}
    - ``signals(bars, values, params)`` -> uint8 flags per bar, from data up to each close
    - ``levels(values, params)`` -> :class:`Levels` for stops / targets / trailing
    - ``exits(params)`` -> :class:`ExitRules`
    - ``overlays(params)`` -> {legend: (label, output)} lines to draw on the price chart
    - ``batch_signals(bars, values, params, table)`` (optional) -> uint8 flags of shape
      ``(k, bars)`` for k param sets that differ from ``params`` only in the params of
      :meth:`batch_params`: row j equals ``signals(bars, values, {**params, name: table[name][j]
      for each name})``, ``table`` mapping each of those names to an array of k values. Sweeps
      call it once per group of combos sharing their indicators, instead of ``signals`` once per
      combo (the ``roles`` check of ``threadx strategy check`` compares the two).
    - ``signal_rule`` (optional, :class:`~threadx.contract.SignalRule`): ``signals`` as one numba
      call over many param sets; sweeps use it in place of ``signals`` and ``batch_signals``.
    """

    name: str
    description: str
    params: tuple[Param, ...]
    indicators: Callable[[Mapping[str, Any]], IndicatorNeeds]
    signals: Callable[..., np.ndarray]
    levels: Callable[[IndicatorValues, Mapping[str, Any]], Levels]
    exits: Callable[[Mapping[str, Any]], ExitRules]
    constraints: tuple[Constraint, ...] = ()
    overlays: Callable[[Mapping[str, Any]], dict[str, tuple[str, str]]] = field(default=no_overlays)
    batch_signals: Callable[..., np.ndarray] | None = None
    signal_rule: SignalRule | None = None
    origin: StrategyOrigin | None = field(default=None, compare=False, repr=False)  # set by the registry

    def __post_init__(self) -> None:
        names = [getattr(p, "name", None) for p in self.params]
        twice = sorted({name for name in names if names.count(name) > 1}, key=str)
        if twice:  # a second declaration replaced the first's value in every param set, silently
            raise ParamError(f"strategy {self.name!r}: param {', '.join(map(repr, twice))} is declared twice")
        problem = self.rule_problem()
        if problem:
            raise ParamError(f"strategy {self.name!r}: {problem}")

    @property
    def code_hash(self) -> str:
        """Hash of the code that defines this strategy (recorded in run manifests: a run's rows
        are only resumed or re-evaluated with the same code)."""
        if self.origin is not None:
            return self.origin.code_hash
        functions = (self.indicators, self.signals, self.levels, self.exits, self.batch_signals,
                     self.signal_rule.many if self.signal_rule is not None else None)
        return _module_hash(*{f.__module__ for f in functions if f is not None})

    def require_code(self, code_hash: str | None, what: str) -> None:
        """ParamError when ``what`` (a stored run or backtest) was made with other code of this
        strategy than it has now (``code_hash`` None: made before code hashes were recorded)."""
        if code_hash is None or code_hash == self.code_hash:
            return
        where = f" ({self.origin.path})" if self.origin is not None else ""
        raise ParamError(f"{what} was computed with other code of strategy {self.name!r}{where}: its code changed "
                         f"since (hash {code_hash[:8]} then, {self.code_hash[:8]} now), so its results cannot be "
                         "reproduced; run it again with the current code")

    def param(self, name: str) -> Param:
        """The declaration of one param (ParamError if unknown)."""
        for p in self.params:
            if p.name == name:
                return p
        raise ParamError(f"{self.name} has no param {name!r}; params: {', '.join(self.param_names)}")

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    @property
    def effective_names(self) -> tuple[str, ...]:
        """Names of the params that affect results (``Param.affects_results``)."""
        return tuple(p.name for p in self.params if p.affects_results)

    def results_params(self, params: Mapping[str, Any]) -> Mapping[str, Any]:
        """``params`` with every display-only value (``feeds=()``) set to its default (a new
        dict; ``params`` itself when the strategy has none): the combos that differ only in
        those give the same results, so a sweep computes them (and their indicators) as this one."""
        inert = _display_only_defaults(self.params)
        if not inert:
            return params  # type: ignore[return-value]  # nothing to set: the same mapping
        return {**params, **{name: value for name, value in inert if name in params}}

    def params_feeding(self, *roles: str) -> tuple[str, ...]:
        """Names of the params that declare at least one of ``roles`` (declaration order)."""
        wanted = _roles(self.name, roles)
        return tuple(p.name for p in self.params if p.feeds & wanted)

    def batch_params(self) -> tuple[str, ...]:
        """Params whose values ``batch_signals`` takes as arrays: those feeding the signals and
        not the indicators (empty without ``batch_signals``)."""
        if self.batch_signals is None:
            return ()
        indicators = set(self.params_feeding("indicators"))
        return tuple(name for name in self.params_feeding("signals") if name not in indicators)

    def label_params(self, label: str) -> tuple[str, ...]:
        """Params that can change the indicator request ``label`` (``Param.feeds_label``);
        none for :data:`~threadx.contract.BAR_LABEL`, the bars' own columns."""
        return () if label == BAR_LABEL else tuple(p.name for p in self.params if p.feeds_label(label))

    def rule_problem(self) -> str | None:
        """Why ``signal_rule`` cannot be used as declared (None when it can, or there is none)."""
        rule = self.signal_rule
        if rule is None:
            return None
        if not isinstance(rule, SignalRule) or not callable(rule.many):
            return "signal_rule must be a SignalRule(lines, params, many, signals) with a callable many"
        if not (isinstance(rule.params, tuple) and all(isinstance(name, str) for name in rule.params)):
            return f"signal_rule params must be a tuple of param names, got {rule.params!r}"
        if not (isinstance(rule.lines, tuple) and rule.lines):
            return f"signal_rule lines must be a tuple of (label, output) pairs, got {rule.lines!r}"
        for name in rule.params:
            if name not in self.param_names:
                return f"signal_rule reads param {name!r}, which {self.name} does not declare"
            if "signals" not in self.param(name).feeds:
                return (f"signal_rule reads param {name!r}, which does not declare 'signals' (a sweep shares one "
                        "signal array between combos that differ only in it)")
        for line in rule.lines:
            if not (isinstance(line, tuple) and len(line) == 2 and all(isinstance(x, str) for x in line)):
                return f"signal_rule line {line!r} is not a (label, output) pair of names"
        if rule.signals is None or inspect.unwrap(rule.signals) is not inspect.unwrap(self.signals):
            made_for = getattr(rule.signals, "__name__", repr(rule.signals))
            return (f"signal_rule computes {made_for}, but signals is {getattr(self.signals, '__name__', '?')}: "
                    "give the rule of these signals (SignalRule(..., signals=signals)) or signal_rule=None")
        return None

    def signal_key_params(self) -> tuple[str, ...]:
        """Params that can change the indicators, signals or levels: combos equal on these
        share their signal and level arrays and differ at most in exit and sizing rules."""
        return self.params_feeding("indicators", "signals", "levels")

    def defaults(self) -> dict[str, Any]:
        """The declared defaults."""
        return {p.name: p.default for p in self.params}

    def normalize(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults filled in, values coerced and range-checked, constraints enforced."""
        try:
            return self._normalize(params)
        except ParamError as exc:
            if self.origin is None:
                raise
            raise ParamError(f"{self.name} ({self.origin.where}): {exc}") from None

    def _normalize(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        if params is not None and not callable(getattr(params, "keys", None)):  # a dict, a Series, ...
            raise ParamError(f"{self.name}: params must be a dict of name -> value, got {type(params).__name__}")
        params = {} if params is None else dict(params)
        unknown = sorted(set(params) - set(self.param_names))
        if unknown:
            raise ParamError(
                f"{self.name} has no param {', '.join(map(repr, unknown))}; params: {', '.join(self.param_names)}"
            )
        values = {p.name: p.coerce(params.get(p.name, p.default)) for p in self.params}
        for rule in self.constraints:
            try:
                holds = rule.verdict(values)
            except Exception as exc:  # noqa: BLE001 - the author's code: one error naming the rule (a traceback)
                from threadx.strategy.user import describe_error

                raise ParamError(f"{self.name}: constraint {rule.description!r} raised {describe_error(exc)}") from None
            if not holds:
                involved = ", ".join(f"{k}={v}" for k, v in values.items() if k in rule.description)
                raise ParamError(f"{self.name} needs {rule.description} (got {involved})")
        return values

    def is_valid(self, params: Mapping[str, Any]) -> bool:
        """True when normalised params satisfy every constraint (TypeError from one that returns
        no truth value: :meth:`Constraint.verdict`)."""
        return all(rule.verdict(params) for rule in self.constraints)

    def to_dict(self) -> dict:
        """JSON-safe declaration (for CLI, UI and docs)."""
        return {
            "name": self.name,
            "description": self.description,
            "params": [p.to_dict() for p in self.params],
            "constraints": [c.description for c in self.constraints],
        }


# files of the threadx.strategy package that hold no built-in's rules (the spec machinery is part
# of a sweep's rows_code instead): an edit there leaves the built-ins' code hashes, hence their
# stored runs' validation, alone
_FRAMEWORK_FILES = frozenset({"__init__.py", "base.py", "builtin.py", "scaffold.py", "user.py"})


def _module_hash(*modules: str) -> str:
    """Code hash of strategies defined in Python modules: a built-in hashes the modules of the
    ``threadx.strategy`` package that hold strategies and their shared helpers (all of them: a
    helper of one is used by others), any other module its file."""
    import sys

    from threadx.codehash import source_hash

    files = []
    for name in sorted(modules):
        module = sys.modules.get(name)
        if module is None or not os.path.isfile(getattr(module, "__file__", None) or ""):
            return "unknown"  # defined in __main__ read from stdin, or a notebook cell: no file to hash
        files.append(module)
    if all(name.startswith("threadx.strategy.") for name in modules):
        from pathlib import Path

        return source_hash(*sorted(p for p in Path(__file__).parent.glob("*.py") if p.name not in _FRAMEWORK_FILES))
    return source_hash(*files)


_REGISTRY: dict[str, StrategySpec] = {}


def register(spec: StrategySpec) -> StrategySpec:
    """Add a strategy defined in a Python module to the registry (a user strategy in the
    strategies folder needs no registration: see :mod:`threadx.strategy.user`)."""
    import sys

    from threadx.strategy.user import MODULE_PREFIX

    caller = str(sys._getframe(1).f_globals.get("__name__", ""))
    if caller.startswith(MODULE_PREFIX + "."):  # (it froze the file's first version, without origin or reload)
        raise ValueError(f"a strategies-folder file needs no register({spec.name!r}): every module-level "
                         "StrategySpec of it is a strategy; remove the call")
    if spec.name in _REGISTRY:
        raise ValueError(f"strategy {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def get_strategy(name: str) -> StrategySpec:
    """Look a strategy up by name: built-in or registered first, then the strategies folder
    (re-read when a file changed). ParamError listing the known ones, or StrategyError with
    the file and line when the file declaring ``name`` cannot be loaded."""
    _load_builtin()
    found = _REGISTRY.get(name)
    if found is not None:
        return found
    from threadx.strategy import user

    return user.get(name, known=_REGISTRY)


def find_strategy(name: Any) -> StrategySpec | None:
    """The strategy ``name`` as :func:`get_strategy` finds it, None when there is none or its file
    cannot be loaded. A built-in is found without running the strategies folder's files (a
    stored bb_atr sweep shown by the CLI ran them all, and a file's own error ended it)."""
    if not isinstance(name, str):
        return None
    try:
        return get_strategy(name)
    except (ParamError, StrategyError):
        return None


def list_strategies() -> dict[str, StrategySpec]:
    """All strategies by name: built-in and registered ones, then those of the strategies
    folder (a file that cannot be loaded is left out; ``user.load_errors()`` says why)."""
    _load_builtin()
    from threadx.strategy import user

    return {**_REGISTRY, **user.strategies(known=_REGISTRY)}


def list_registered() -> dict[str, StrategySpec]:
    """The built-in and registered strategies (not the strategies folder's)."""
    _load_builtin()
    return dict(_REGISTRY)


def builtin_names() -> tuple[str, ...]:
    """Names of the strategies shipped with ThreadX."""
    from threadx.strategy import builtin

    return builtin.NAMES


def _load_builtin() -> None:
    import threadx.strategy.builtin  # noqa: F401  (registers on import)
