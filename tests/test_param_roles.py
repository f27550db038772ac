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

import numpy as np
import pytest

from threadx.data.bars import Bars, as_bars
from threadx.errors import ParamError
from threadx.indicators import IndicatorBank
from threadx.strategy import ExitRules, Param, get_strategy, list_strategies
from threadx.strategy.base import ALL_ROLES, ROLES
from threadx.checks.roles import check_roles
from numba import njit
from threadx.strategy import cross_signals

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
    wrong = replace(ma, signal_rule=None,  # (its rule reads allow_short: such a spec is refused with it)
                    params=tuple(replace(p, feeds=wrong_feeds[p.name]) if p.name in wrong_feeds else p
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


def _gapped_signals(bars, ind, p):
    """ma_crossover's signals; with ``use_gap``, an entry within ``gap_bars`` of the last is dropped."""
    sig = get_strategy("ma_crossover").signals(bars, ind, p).copy()
    if p["use_gap"]:
        last = -10**9
        for t in np.flatnonzero(sig & 1):
            if t - last < p["gap_bars"]:
                sig[t] &= ~np.uint8(1)
            else:
                last = t
    return sig


def test_the_check_catches_a_wrong_declaration_that_a_switch_hides(synthetic_bars: Bars, bank: IndicatorBank) -> None:
    """``gap_bars`` acts only with ``use_gap`` on (off by default): declared display-only, it
    changes nothing from the defaults; the check turns each switch and perturbs from there."""
    ma = get_strategy("ma_crossover")
    gated = replace(ma, signal_rule=None, signals=_gapped_signals, params=ma.params + (
        Param("use_gap", "bool", False, feeds="signals"),
        Param("gap_bars", "int", 24, 1, 500, 1, opt_range=(6, 96, 6), feeds=())))  # wrong: it feeds signals
    failures, _ = check_roles(gated, synthetic_bars, bank)
    assert any(f.startswith("ma_crossover.gap_bars=") and "(from 24, use_gap=True)" in f
               and "changes the signals" in f for f in failures), failures
    right = replace(gated, params=gated.params[:-1] + (replace(gated.params[-1], feeds="signals"),))
    assert check_roles(right, synthetic_bars, bank)[0] == []


def test_over_declaring_is_only_a_note(synthetic_bars: Bars, bank: IndicatorBank) -> None:
    ma = get_strategy("ma_crossover")
    wide = replace(ma, params=tuple(replace(p, feeds=("signals", "levels")) if p.name == "allow_short" else p
                                    for p in ma.params))
    failures, notes = check_roles(wide, synthetic_bars, bank)
    assert not failures
    assert notes == ["ma_crossover.allow_short declares levels but no perturbation changed it"]


# --- the declaration itself -------------------------------------------------------------------

def test_choices_may_be_declared_as_a_list() -> None:
    """(A check of the declaration refused lists for a while: they worked before.)"""
    param = Param("ma", "choice", "sma", choices=["sma", "ema"])
    assert param.choices == ("sma", "ema") and param.coerce("EMA") == "ema" and param.rule_value("ema") == 1.0
    with pytest.raises(ParamError, match="choices must be lower-case texts"):
        Param("ma", "choice", "SMA", choices=["SMA", "EMA"])  # (values are matched in lower case)


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


def _batch(bars, ind, p, table):
    """bb_atr's signals of many entry_z at once (bb_atr itself has a signal_rule instead)."""
    from threadx.strategy import zscore_reversion_signals_many
    use_trend = p["trend_period"] > 0
    trend = ind["trend"]["value"] if use_trend else bars.close[:0]
    return zscore_reversion_signals_many(ind["bb"]["z"], np.asarray(table["entry_z"], dtype=float), bars.close, trend,
                                         use_trend)


def _batch_one_row(bars, ind, p, table):
    return _batch(bars, ind, p, {"entry_z": table["entry_z"][:1]})


def test_a_right_batch_passes_the_check(synthetic_bars: Bars, bank: IndicatorBank) -> None:
    failures, _ = check_roles(replace(get_strategy("bb_atr"), signal_rule=None, batch_signals=_batch),
                              synthetic_bars, bank)
    assert not failures


def _batch_raising(bars, ind, p, table):
    raise RuntimeError("no batch today")


@pytest.mark.parametrize("batch, expected", [
    (_batch_without_trend, "bb_atr.batch_signals (mid-range, 7 param sets varying entry_z): the row of entry_z=1.5 "
                           "differs from signals() on"),
    (_batch_one_row, "bb_atr.batch_signals (defaults, 7 param sets varying entry_z): returned shape (1, "),
    (_batch_raising, "bb_atr.batch_signals (defaults, 7 param sets varying entry_z): raised RuntimeError('no batch "
                     "today')"),
])
def test_the_check_catches_a_batch_that_differs_from_signals(synthetic_bars: Bars, bank: IndicatorBank,
                                                            batch, expected) -> None:
    """A sweep trusts batch_signals for every combo of a group: one that drops the trend
    filter, returns too few rows or raises is a failure of the roles check."""
    wrong = replace(get_strategy("bb_atr"), signal_rule=None, batch_signals=batch)
    failures, _ = check_roles(wrong, synthetic_bars, bank)
    assert any(f.startswith(expected) for f in failures), failures
    assert all(f.startswith("bb_atr.batch_signals") for f in failures)


@njit(cache=True)
def _cross_long_only(lines, rows, values, out):  # ignores allow_short (values[j, 0])
    for j in range(rows.shape[0]):
        out[j] = cross_signals(lines[rows[j, 0]], lines[rows[j, 1]], False)


@njit(cache=True)
def _cross_swapped(lines, rows, values, out):  # reads the lines in the wrong order
    for j in range(rows.shape[0]):
        out[j] = cross_signals(lines[rows[j, 1]], lines[rows[j, 0]], values[j, 0] != 0)


@pytest.mark.parametrize("many, expected", [
    (_cross_long_only, "ma_crossover.signal_rule (defaults, "),
    (_cross_swapped, "ma_crossover.signal_rule (defaults, "),
])
def test_the_check_catches_a_rule_that_differs_from_signals(synthetic_bars: Bars, bank: IndicatorBank,
                                                           many, expected) -> None:
    """A sweep trusts the signal rule for every combo: one that drops the shorts or swaps its
    lines is a failure of the roles check, naming the param sets whose rows differ."""
    spec = get_strategy("ma_crossover")
    wrong = replace(spec, signal_rule=replace(spec.signal_rule, many=many))
    failures, _ = check_roles(wrong, synthetic_bars, bank)
    assert failures and all(f.startswith("ma_crossover.signal_rule") for f in failures), failures
    assert any(f.startswith(expected) and "differs from signals() on" in f for f in failures), failures
    if many is _cross_long_only:  # only the rows with shorts differ
        assert all("allow_short=True" in f for f in failures), failures


def test_the_check_names_a_rule_label_that_indicators_never_request(synthetic_bars: Bars, bank: IndicatorBank) -> None:
    """A misspelt label ("Slow" for "slow") gave the rule an all-NaN line in every sweep (no
    trade at all); the check said only that rows differ, not why."""
    spec = get_strategy("ma_crossover")
    lines = (("fast", "value"), ("Slow", "value"))
    wrong = replace(spec, signal_rule=replace(spec.signal_rule, lines=lines))
    failures, _ = check_roles(wrong, synthetic_bars, bank)
    assert any(f.startswith("ma_crossover.signal_rule reads the label 'Slow', which indicators() requests for none "
                            "of the") and "(its labels: fast, slow)" in f for f in failures), failures
    bb = get_strategy("bb_atr")  # a label requested only off the defaults (trend_period > 0) is no typo
    assert not [f for f in check_roles(bb, synthetic_bars, bank)[0] if "reads the label" in f]


def _x_indicators(p):
    needs = dict(get_strategy("ma_crossover").indicators(p))
    if p["use_x"] and p["x_period"] > 100:  # requested only by a switch and a number off their defaults
        needs["x"] = ("sma", {"period": p["x_period"]})
    return needs


def test_a_label_a_switch_and_a_number_request_together_is_no_typo() -> None:
    from threadx.checks.roles import rule_label_failures

    ma = get_strategy("ma_crossover")
    spec = replace(ma, indicators=_x_indicators, params=ma.params + (
        Param("use_x", "bool", False, feeds=("indicators", "signals"), indicator_labels=("x",)),
        Param("x_period", "int", 20, 2, 500, 1, opt_range=(10, 200, 10), feeds=("indicators", "signals"),
              indicator_labels=("x",))),
        signal_rule=replace(ma.signal_rule, lines=ma.signal_rule.lines + (("x", "value"),)))
    assert rule_label_failures(spec, [spec.normalize()]) == []
    typo = replace(spec, signal_rule=replace(ma.signal_rule, lines=ma.signal_rule.lines + (("X", "value"),)))
    assert rule_label_failures(typo, [spec.normalize()])[0].startswith("ma_crossover.signal_rule reads the label 'X'")


def test_the_check_catches_wrong_indicator_labels(synthetic_bars: Bars, bank: IndicatorBank) -> None:
    """A sweep looks a line up once per value of the params declaring its label: a period
    declared for the other line would read every combo's fast line from another combo."""
    spec = get_strategy("ma_crossover")
    params = tuple(replace(p, indicator_labels=("slow",)) if p.name == "fast_period" else p for p in spec.params)
    failures, _ = check_roles(replace(spec, params=params), synthetic_bars, bank)
    labels = [f for f in failures if not f.startswith("ma_crossover.signal_rule")]
    assert labels and all("fast_period" in f and "changes the indicator request 'fast'" in f and
                          "declares indicator_labels ('slow',)" in f for f in labels), failures
    # and the rule, its lines looked up as a sweep groups them, gives other rows than signals()
    assert any(f.startswith("ma_crossover.signal_rule") and "the row of fast_period=" in f for f in failures)



def test_a_sweep_refusing_wrong_indicator_labels_says_to_fix_the_labels(synthetic_bars: Bars,
                                                                        bank: IndicatorBank) -> None:
    """The refusal named the labels, then advised "fix its feeds=", which were right."""
    from threadx.checks.roles import check_sweep_roles
    from threadx.optimize.space import SearchSpace

    spec = get_strategy("ma_crossover")
    params = tuple(replace(p, indicator_labels=("slow",)) if p.name == "fast_period" else p for p in spec.params)
    space = SearchSpace(replace(spec, params=params, signal_rule=None),
                        {"fast_period": "5:20:5", "slow_period": [50]})
    with pytest.raises(ParamError, match=r"declares indicator_labels \('slow',\): this sweep would merge combos "
                                         r"that differ and store wrong rows; fix its indicator_labels= \(`threadx"):
        check_sweep_roles(space, synthetic_bars, [0, 1, 2], bank)

def test_a_signal_rule_that_cannot_work_is_refused() -> None:
    spec = get_strategy("ma_crossover")
    with pytest.raises(ParamError, match="signal_rule reads param 'lookback', which ma_crossover does not declare"):
        replace(spec, signal_rule=replace(spec.signal_rule, params=("lookback",)))
    assert [spec.param("ma_type").rule_value(v) for v in ("sma", "ema")] == [0.0, 1.0]  # a choice: its position
    assert spec.param("allow_short").rule_value(True) == 1.0 and spec.param("fast_period").rule_value(7) == 7.0
    for feeds in ((), "exits"):  # a param a sweep does not split signal groups on
        shown = tuple(replace(p, feeds=feeds) if p.name == "allow_short" else p for p in spec.params)
        with pytest.raises(ParamError, match="signal_rule reads param 'allow_short', which does not declare 'signals'"):
            replace(spec, params=shown)
    with pytest.raises(ParamError, match="signal_rule computes _signals, but signals is <lambda>"):
        replace(spec, signals=lambda bars, ind, p: spec.signals(bars, ind, p))
    with pytest.raises(ParamError, match="signal_rule params must be a tuple of param names, got 'allow_short'"):
        replace(spec, signal_rule=replace(spec.signal_rule, params="allow_short"))
    with pytest.raises(ParamError, match="signal_rule lines must be a tuple of .label, output. pairs, got 5"):
        replace(spec, signal_rule=replace(spec.signal_rule, lines=5))
    for labels in (5, [None], {"fast": 1}):
        with pytest.raises(ParamError, match="param a: indicator_labels must be label names"):
            Param("a", "int", 1, feeds="indicators", indicator_labels=labels)
    with pytest.raises(ParamError, match="is not a .label, output. pair of names"):
        replace(spec, signal_rule=replace(spec.signal_rule, lines=("fast",)))
    with pytest.raises(ParamError, match="signal_rule must be a SignalRule"):
        replace(spec, signal_rule=spec.signals)


def test_an_exit_field_whose_mode_no_param_set_turns_on_is_a_note(synthetic_bars: Bars, bank: IndicatorBank) -> None:
    """``trail_pct`` without ``trail="pct"`` ran as no rule at all, and the check said nothing:
    the param moves the rules (so its role holds) but never a result."""
    ma = get_strategy("ma_crossover")
    trail = Param("trail_pct", "float", 0.02, 0.005, 0.2, 0.005, opt_range=(0.01, 0.05, 0.01), feeds="exits")
    forgot = replace(ma, exits=lambda p: ExitRules(trail_pct=p["trail_pct"]), params=ma.params + (trail,))
    failures, notes = check_roles(forgot, synthetic_bars, bank)
    assert not failures
    assert ("ma_crossover.trail_pct sets the exit rule trail_pct, which acts only with trail='pct': no param set "
            "checked turns it on (an engine option can), so it changed no result here") in notes
    fixed = replace(forgot, exits=lambda p: ExitRules(trail="pct", trail_pct=p["trail_pct"]))
    assert not [n for n in check_roles(fixed, synthetic_bars, bank)[1] if "acts only with" in n]
    # ma_crossover's risk_per_trade acts once a stop is set (risk sizing): a random set with one clears it
    defaults = ma.normalize()
    starts = {"defaults": defaults}
    assert [n for n in check_roles(ma, synthetic_bars, bank, starts=starts)[1] if "acts only with" in n]
    with_stop = ma.normalize({"stop_loss_pct": 2.0})
    assert not [n for n in check_roles(ma, synthetic_bars, bank, starts=starts, also=[with_stop])[1]
                if "acts only with" in n]


def test_a_param_named_like_a_result_column_fails_the_check_as_every_sweep_refuses_it(synthetic_bars: Bars) -> None:
    """A param named `sharpe` loaded, backtested and passed `strategy check`; only a sweep refused
    it. Declared roles or none (the default), the roles check fails it, with its own reason."""
    from threadx.checks.strategy import check_strategy
    from threadx.optimize.space import SearchSpace

    ma = get_strategy("ma_crossover")
    extra = Param("sharpe", "float", 0.0, 0.0, 1.0, 0.1, feeds=())
    undeclared = replace(ma, signal_rule=None, params=tuple(replace(p, feeds=None) for p in ma.params) + (extra,))
    for clashing in (replace(ma, params=ma.params + (extra,)), undeclared):
        roles = check_strategy(clashing, synthetic_bars, combos=1, checks=("roles",)).result("roles")
        assert not roles.passed and roles.summary.startswith(
            "param name(s) sharpe are result columns of sweeps: rename them: every sweep refuses them"), roles.summary
        assert "perturbations" not in roles.summary
        with pytest.raises(ParamError, match=r"strategy ma_crossover: param name\(s\) sharpe are result columns"):
            SearchSpace(clashing)
    assert check_strategy(ma, synthetic_bars, combos=1, checks=("roles",)).result("roles").passed
