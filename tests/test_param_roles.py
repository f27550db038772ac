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
perturbation exercises is safe and only reported as a warning. The check itself lives in
:mod:`threadx.checks.roles` (the ``roles`` check of ``threadx strategy check`` runs it too).
"""
from __future__ import annotations

import warnings
from dataclasses import replace

import pytest

from threadx.data.bars import Bars, as_bars
from threadx.errors import ParamError
from threadx.indicators import IndicatorBank
from threadx.strategy import Param, get_strategy, list_strategies
from threadx.strategy.base import ALL_ROLES, ROLES
from threadx.checks.roles import check_roles

# test_* strategies are fixtures of other tests that raise or kill their worker on purpose
CHECKED = sorted(name for name in list_strategies() if not name.startswith("test_"))


class RoleNote(UserWarning):
    """A declared role that no perturbation exercised (over-declaring is safe)."""


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


def _batch_without_trend(bars, ind, p, table):
    from threadx.strategy import zscore_reversion_signals_many
    return zscore_reversion_signals_many(ind["bb"]["z"], table["entry_z"], bars.close, bars.close[:0], False)


def _batch_one_row(bars, ind, p, table):
    return get_strategy("bb_atr").batch_signals(bars, ind, p, {"entry_z": table["entry_z"][:1]})


def _batch_raising(bars, ind, p, table):
    raise RuntimeError("no batch today")


@pytest.mark.parametrize("batch, expected", [
    (_batch_without_trend, "bb_atr.batch_signals (mid-range, 5 param sets varying entry_z): the row of entry_z=1.5 "
                           "differs from signals() on"),
    (_batch_one_row, "bb_atr.batch_signals (defaults, 5 param sets varying entry_z): returned shape (1, "),
    (_batch_raising, "bb_atr.batch_signals (defaults, 5 param sets varying entry_z): raised RuntimeError('no batch "
                     "today')"),
])
def test_the_check_catches_a_batch_that_differs_from_signals(synthetic_bars: Bars, bank: IndicatorBank,
                                                            batch, expected) -> None:
    """A sweep trusts batch_signals for every combo of a group: one that drops the trend
    filter, returns too few rows or raises is a failure of the roles check."""
    wrong = replace(get_strategy("bb_atr"), batch_signals=batch)
    failures, _ = check_roles(wrong, synthetic_bars, bank)
    assert any(f.startswith(expected) for f in failures), failures
    assert all(f.startswith("bb_atr.batch_signals") for f in failures)
