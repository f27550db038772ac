"""Declared param roles are checked: perturbing a param changes only what it says it feeds.

For every strategy and every param, the param is moved from its default (and from the
middle of its optimisation range, with every other range at its middle too) to other
valid values (one step either side, the ends of its optimisation range, the other bool or
choice values; combos a constraint refuses are skipped), on the synthetic sample and on
real BTC/USDT 1h candles, and each stage is compared with the defaults: the indicator
requests, the signal flags, the level lines, the exit rules and the kernel's param
vector, then the backtest's metrics and trades. A param that changes a stage outside its
``Param.feeds`` fails, naming the strategy, the param, the value and what changed (a
wrong declaration would merge combos that differ). A display-only param may change the
indicator requests (the lines it draws) but nothing else. Declaring a role that no
perturbation exercises is safe and only reported as a warning.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import pytest

from threadx.data.bars import Bars, as_bars
from threadx.engine import kernel
from threadx.contract import prepare_signals
from threadx.engine.inputs import effective_rules, kernel_args, options_from, param_vector
from threadx.engine.layout import METRIC_NAMES
from threadx.errors import ParamError
from threadx.indicators import IndicatorBank
from threadx.indicators.registry import canonical_params
from threadx.strategy import ExitRules, Levels, Param, StrategySpec, get_strategy, list_strategies
from threadx.strategy.base import ALL_ROLES, ROLES

# test_* strategies are fixtures of other tests that raise or kill their worker on purpose
CHECKED = sorted(name for name in list_strategies() if not name.startswith("test_"))
_OPTIONS = options_from()


class RoleNote(UserWarning):
    """A declared role that no perturbation exercised (over-declaring is safe)."""


@dataclass(frozen=True)
class Stages:
    """What one param set produces at each stage the roles describe."""

    indicators: dict[str, tuple[str, str]]
    signals: np.ndarray
    levels: Levels
    rules: ExitRules
    vector: np.ndarray
    metrics: np.ndarray
    trades: np.ndarray


def stages(spec: StrategySpec, bars: Bars, params: dict[str, Any], bank: IndicatorBank) -> Stages:
    """Every stage of one backtest of ``spec`` (registered or not) with normalised ``params``."""
    needs = {label: (name, canonical_params(name, ind)) for label, (name, ind) in spec.indicators(params).items()}
    _, sig, levels = prepare_signals(spec, bars, params, bank)
    rules = effective_rules(spec.exits(params), _OPTIONS)
    metrics, trades, _ = kernel.run_full(*kernel_args(bars, sig, levels, rules, _OPTIONS))
    vector = param_vector(rules, _OPTIONS, bars.timeframe, False)
    return Stages(needs, np.asarray(sig), levels, rules, vector, metrics, trades)


def perturbations(spec: StrategySpec, param: Param, base: dict[str, Any]) -> list[Any]:
    """Other valid values of ``param`` (constraints with the other params at ``base`` hold)."""
    if param.kind == "bool":
        candidates: list[Any] = [not base[param.name]]
    elif param.kind == "choice":
        candidates = list(param.choices)
    else:
        step = param.step or 1
        candidates = [base[param.name] - step, base[param.name] + step]
        if param.opt_range:
            candidates += [param.opt_range[0], param.opt_range[1]]
        candidates = [round(v, 10) for v in candidates]
    out = []
    for value in candidates:
        try:
            value = param.coerce(value)
            spec.normalize({**base, param.name: value})
        except ParamError:
            continue
        if value != base[param.name] and value not in out:
            out.append(value)
    return out


def _same_arrays(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))


def changes(base: Stages, other: Stages) -> dict[str, str]:
    """Stage -> what changed (roles, plus "results" for the backtest's metrics and trades)."""
    out: dict[str, str] = {}
    if other.indicators != base.indicators:
        labels = sorted(k for k in base.indicators.keys() | other.indicators.keys()
                        if base.indicators.get(k) != other.indicators.get(k))
        out["indicators"] = "requests " + ", ".join(
            f"{k}: {base.indicators.get(k)} -> {other.indicators.get(k)}" for k in labels)
    if not _same_arrays(base.signals, other.signals):
        n = int(np.sum(base.signals != other.signals)) if base.signals.shape == other.signals.shape else -1
        out["signals"] = f"flags of {n} bars" if n >= 0 else "signal array shape"
    lines = [f.name for f in fields(Levels) if not _same_arrays(getattr(base.levels, f.name),
                                                                 getattr(other.levels, f.name))]
    if lines:
        out["levels"] = "lines " + ", ".join(lines)
    rules = [f"{f.name} {getattr(base.rules, f.name)!r} -> {getattr(other.rules, f.name)!r}"
             for f in fields(ExitRules) if getattr(base.rules, f.name) != getattr(other.rules, f.name)]
    if rules or not _same_arrays(base.vector, other.vector):
        out["exits"] = "rules " + (", ".join(rules) or "(param vector only)")
    metrics = [name for name, a, b in zip(METRIC_NAMES, base.metrics, other.metrics)
               if not (a == b or (math.isnan(a) and math.isnan(b)))]
    if metrics or not _same_arrays(base.trades, other.trades):
        shown = ", ".join(metrics[:4]) + (f" and {len(metrics) - 4} more" if len(metrics) > 4 else "")
        out["results"] = "metrics " + (shown or "(trades only)")
    return out


def violations(param: Param, changed: dict[str, str]) -> list[str]:
    """Why ``changed`` contradicts the declaration of ``param`` (empty when it does not)."""
    out = []
    for role in ROLES:
        if role in changed and role not in param.feeds and not (role == "indicators" and not param.feeds):
            out.append(f"changes the {role} ({changed[role]}) but does not declare {role!r}")
    if "results" in changed and not param.affects_results:
        out.append(f"is declared display-only but changes the backtest ({changed['results']})")
    elif "results" in changed and not changed.keys() & {"signals", "levels", "exits"}:
        out.append(f"changes the backtest ({changed['results']}) with the same signals, levels and exit "
                   "rules: it reaches the engine some way the roles do not describe")
    return out


def bases(spec: StrategySpec) -> dict[str, dict[str, Any]]:
    """Starting points: the defaults, and every optimisation range at its midpoint (so a
    param whose effect hides at the defaults, e.g. a risk fraction without a stop, shows)."""
    mid = {}
    for p in spec.params:
        if p.opt_range:
            low, high, step = p.opt_range
            mid[p.name] = round(low + step * round((high - low) / 2 / step), 10)
    out = {"defaults": spec.normalize()}
    try:
        out["mid-range"] = spec.normalize(mid)
    except ParamError:
        pass
    return out


def check_roles(spec: StrategySpec, bars: Bars, bank: IndicatorBank) -> tuple[list[str], list[str]]:
    """(failures, notes) of every param of ``spec``, each perturbed alone from each base."""
    failures, notes = [], []
    exercised: dict[str, set[str]] = {p.name: set() for p in spec.params}
    for label, base_params in bases(spec).items():
        base = stages(spec, bars, base_params, bank)
        for param in spec.params:
            if param.feeds == ALL_ROLES:
                continue  # undeclared: every change is allowed
            for value in perturbations(spec, param, base_params):
                where = f"{spec.name}.{param.name}={value!r} (from {base_params[param.name]!r}, {label})"
                try:
                    changed = changes(base, stages(spec, bars, {**base_params, param.name: value}, bank))
                except Exception as exc:  # noqa: BLE001 - a valid value must backtest
                    failures.append(f"{where}: the backtest raised {exc!r}")
                    continue
                exercised[param.name] |= changed.keys()
                failures += [f"{where} {why}" for why in violations(param, changed)]
    for param in spec.params:
        unused = sorted(param.feeds - exercised[param.name]) if param.feeds != ALL_ROLES else []
        if unused:
            notes.append(f"{spec.name}.{param.name} declares {', '.join(unused)} but no perturbation changed it")
    return failures, notes


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> IndicatorBank:
    return IndicatorBank(cache_dir=tmp_path_factory.mktemp("roles-cache"))


@pytest.fixture(params=["synthetic", "btc_1h"])
def bars(request: pytest.FixtureRequest) -> Bars:
    """The synthetic sample, then real BTC/USDT 1h candles (skipped when absent)."""
    if request.param == "synthetic":
        return request.getfixturevalue("synthetic_bars")
    return as_bars(request.getfixturevalue("btc_1h"))


@pytest.mark.parametrize("name", CHECKED)
def test_declared_roles_hold(name: str, bars: Bars, bank: IndicatorBank) -> None:
    spec = get_strategy(name)
    failures, notes = check_roles(spec, bars, bank)
    for note in notes:
        warnings.warn(note, RoleNote, stacklevel=1)
    assert not failures, f"wrong role declarations of {name}:\n" + "\n".join(failures)


def test_every_builtin_param_declares_its_roles() -> None:
    undeclared = [f"{name}.{p.name}" for name in CHECKED for p in get_strategy(name).params if p.feeds == ALL_ROLES]
    assert not undeclared, f"declare feeds= on {', '.join(undeclared)}"


def test_the_check_catches_a_wrong_declaration(synthetic_bars: Bars, bank: IndicatorBank) -> None:
    ma = get_strategy("ma_crossover")
    wrong_feeds = {"allow_short": "exits", "stop_loss_pct": (), "ma_type": "signals"}
    wrong = replace(ma, params=tuple(replace(p, feeds=wrong_feeds[p.name]) if p.name in wrong_feeds else p
                                     for p in ma.params))
    failures, _ = check_roles(wrong, synthetic_bars, bank)
    assert "ma_crossover.ma_type='ema' (from 'sma', defaults) changes the indicators (requests fast: ('sma', " \
           "'{\"period\":10,\"source\":\"close\"}') -> ('ema', " in "\n".join(failures)
    assert any(f.startswith("ma_crossover.allow_short=True (from False, defaults)") and "changes the signals" in f
               and "does not declare 'signals'" in f for f in failures)
    assert any(f.startswith("ma_crossover.stop_loss_pct=") and "display-only but changes the backtest" in f
               for f in failures)
    bb = get_strategy("bb_atr")  # atr_period without "levels": the stop reads its ATR line
    wrong = replace(bb, params=tuple(replace(p, feeds="indicators") if p.name == "atr_period" else p
                                     for p in bb.params))
    failures, _ = check_roles(wrong, synthetic_bars, bank)
    assert any(f.startswith("bb_atr.atr_period=") and "changes the levels (lines atr)" in f for f in failures)


def test_over_declaring_is_only_a_note(synthetic_bars: Bars, bank: IndicatorBank) -> None:
    ma = get_strategy("ma_crossover")
    wide = replace(ma, params=tuple(replace(p, feeds=("signals", "levels")) if p.name == "allow_short" else p
                                    for p in ma.params))
    failures, notes = check_roles(wide, synthetic_bars, bank)
    assert not failures
    assert notes == ["ma_crossover.allow_short declares levels but no perturbation changed it"]


# --- the declaration itself -------------------------------------------------------------------

def test_feeds_accepts_a_role_an_iterable_or_nothing() -> None:
    assert Param("a", "int", 1).feeds == ALL_ROLES
    assert Param("a", "int", 1, feeds=None).feeds == ALL_ROLES
    assert Param("a", "int", 1, feeds="signals").feeds == frozenset({"signals"})
    assert Param("a", "int", 1, feeds=["exits", "levels"]).feeds == frozenset({"exits", "levels"})
    shown = Param("a", "int", 1, feeds=())
    assert shown.feeds == frozenset() and shown.affects_results is False
    assert shown.to_dict()["feeds"] == [] and shown.to_dict()["affects_results"] is False
    assert Param("a", "int", 1, feeds=("levels", "indicators")).to_dict()["feeds"] == ["indicators", "levels"]


def test_an_unknown_role_is_refused() -> None:
    with pytest.raises(ParamError, match=r"param a: unknown role 'sizing'; roles: indicators, signals, levels, exits"):
        Param("a", "int", 1, feeds=("exits", "sizing"))
    with pytest.raises(ParamError, match="unknown role 's'"):
        Param("a", "int", 1, feeds=["s", "signals"])
    with pytest.raises(ParamError, match="bb_atr: unknown role 'display'"):
        get_strategy("bb_atr").params_feeding("display")


def test_params_feeding_and_the_signal_key() -> None:
    bb = get_strategy("bb_atr")
    assert bb.signal_key_params() == ("bb_period", "entry_z", "atr_period", "trend_period")
    assert bb.params_feeding("exits") == ("atr_multiplier", "trailing_stop", "risk_per_trade", "leverage",
                                          "max_hold_bars", "spacing_bars")
    assert bb.params_feeding("levels") == ("bb_period", "atr_period")
    assert bb.params_feeding() == ()
    assert "bb_std" not in bb.params_feeding(*ROLES) and bb.effective_names == bb.params_feeding(*ROLES)
    for name in CHECKED:  # every param is in the signal key or feeds exits only (or nothing)
        spec = get_strategy(name)
        key, exits = set(spec.signal_key_params()), set(spec.params_feeding("exits"))
        assert key | exits | {p.name for p in spec.params if not p.feeds} == set(spec.param_names)
