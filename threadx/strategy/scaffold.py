"""``threadx strategy new NAME``: a new strategy file in the strategies folder, from a
commented template that runs as written, or from a built-in strategy's source."""
from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

from threadx.errors import ParamError
from threadx.names import STRATEGY, check_name
from threadx.strategy.base import builtin_names, list_strategies
from threadx.strategy.user import strategy_dir

__all__ = ["TEMPLATE", "new_strategy_file", "strategy_source"]

# The template: RSI mean reversion with an ATR stop. "__NAME__" becomes the strategy's name.
TEMPLATE = '''"""__NAME__: RSI mean reversion with an ATR stop (written from the ThreadX template).

Edit this file and save: the next backtest or sweep uses the new code, no restart needed.
Check it with `threadx strategy check __NAME__` (look-ahead, signals, determinism, accounting,
param roles, speed). Every module-level StrategySpec of this file is a strategy.
"""
from __future__ import annotations

import numpy as np

from threadx.strategy import SIG_ENTER_LONG, SIG_EXIT_LONG, ExitRules, Levels, Param, StrategySpec


def indicators(p):
    """Indicators by label: (name, params). They are computed once per distinct request and
    shared by every param set that asks the same. Names: threadx.indicators.registry."""
    return {
        "rsi": ("rsi", {"period": p["rsi_period"]}),
        "atr": ("atr", {"period": p["atr_period"], "method": "wilder"}),
    }


def signals(bars, ind, p):
    """One uint8 per bar, decided at that bar's close from bars up to it (never later ones).

    bars: read-only arrays, one value per bar: bars.open, .high, .low, .close, .volume
    (bars["close"] too), bars.index (UTC open times). ind: each indicator's outputs by label,
    e.g. ind["rsi"]["value"]. p: the params by name.

    Entry: RSI crosses back above the oversold level. Exit: RSI crosses above the exit level.
    Orders fill at the next bar's open (or at this close with fill="close")."""
    rsi = ind["rsi"]["value"]
    prev = np.roll(rsi, 1)
    prev[0] = np.nan  # bar 0 has no previous bar (np.roll wraps the last one around)
    sig = np.zeros(len(rsi), dtype=np.uint8)
    with np.errstate(invalid="ignore"):  # NaN during the RSI's warm-up compares False
        sig[(prev <= p["oversold"]) & (rsi > p["oversold"])] |= SIG_ENTER_LONG
        sig[(prev <= p["exit_level"]) & (rsi > p["exit_level"])] |= SIG_EXIT_LONG
    return sig


def levels(ind, p):
    """Indicator lines the exit rules read: the ATR for the stop distance."""
    return Levels(atr=ind["atr"]["value"])


def exits(p):
    """Stop atr_stop x ATR (of the signal bar) below the fill; risk sizing: a stop-out loses
    risk_per_trade of equity."""
    return ExitRules(stop_atr=p["atr_stop"], sizing="risk", risk_per_trade=p["risk_per_trade"])


# Lines on the Backtest's price chart (indicators on the price's scale) are one more argument,
# overlays={legend: (label, output)} per params, e.g. with an "ema": ("ema", {"period": ...})
# indicator: overlays=lambda p: {"EMA": ("ema", "value")}.
SPEC = StrategySpec(
    name="__NAME__",
    description="RSI mean reversion: long when RSI crosses back above `oversold`, exit above "
    "`exit_level`; ATR stop, risk sizing.",
    params=(
        # Param(name, kind, default, min, max, step, opt_range=(low, high, step), feeds=roles):
        # feeds says what the value can change (indicators, signals, levels, exits; () =
        # display only), indicator_labels which of the indicators above. Sweeps share work
        # through them, and `strategy check` verifies them. (For sweeps with no Python per
        # param set, signals can also be a numba SignalRule: README, "Signal rules".)
        Param("rsi_period", "int", 14, 2, 200, 1, opt_range=(7, 28, 1), description="RSI length (bars)",
              feeds=("indicators", "signals"), indicator_labels=("rsi",)),
        Param("oversold", "float", 30.0, 5.0, 50.0, 1.0, opt_range=(20.0, 40.0, 2.0),
              description="entry: RSI crosses back above this", feeds="signals"),
        Param("exit_level", "float", 55.0, 40.0, 95.0, 1.0, opt_range=(50.0, 70.0, 5.0),
              description="exit: RSI crosses above this", feeds="signals"),
        Param("atr_period", "int", 14, 2, 200, 1, opt_range=(7, 28, 7), description="ATR length (bars)",
              feeds=("indicators", "levels"), indicator_labels=("atr",)),
        Param("atr_stop", "float", 2.0, 0.5, 10.0, 0.5, opt_range=(1.0, 4.0, 0.5),
              description="stop distance in ATRs", feeds="exits"),
        Param("risk_per_trade", "float", 0.01, 0.001, 0.1, 0.001, description="equity lost at the stop",
              feeds="exits"),
    ),
    indicators=indicators,
    signals=signals,
    levels=levels,
    exits=exits,
)
'''


def strategy_source(name: str) -> str:
    """The source text of a built-in strategy's module."""
    if name not in builtin_names():
        raise ParamError(f"{name!r} is not a built-in strategy; built-ins: {', '.join(builtin_names())}")
    spec = list_strategies()[name]
    return inspect.getsource(sys.modules[spec.signals.__module__])


def _name_pattern(name: str) -> re.Pattern[str]:
    """``name="NAME"`` (either quote) in a strategy's source."""
    return re.compile(r"""(name\s*=\s*)(["'])""" + re.escape(name) + r"\2")


def new_strategy_file(name: str, from_builtin: str | None = None, folder: str | Path | None = None) -> Path:
    """Write ``<folder>/<name>.py`` (default folder: the strategies folder) from the template,
    or from the built-in ``from_builtin`` renamed ``name``; refuses a name in use and an
    existing file (ParamError). Returns the file written."""
    check_name(name, "strategy name", STRATEGY)
    if name in list_strategies():
        raise ParamError(f"a strategy named {name!r} exists already; pick another name")
    root = Path(folder) if folder is not None else strategy_dir()
    path = root / f"{name}.py"
    if path.exists():
        raise ParamError(f"{path} exists already; edit it, or pick another name")
    if from_builtin is None:
        text = TEMPLATE.replace("__NAME__", name)
    else:
        source = strategy_source(from_builtin)
        if not _name_pattern(from_builtin).search(source):
            raise ParamError(f"cannot find the name of {from_builtin!r} in its source to rename it")
        # the module may declare other built-ins (grids.py: three): each is renamed too, or the
        # copy would declare names a built-in holds and fail to load them
        others = [other for other in builtin_names() if other != from_builtin and _name_pattern(other).search(source)]
        renames = {from_builtin: name, **{other: f"{name}_{other}" for other in others}}
        known = list_strategies()
        for new in list(renames.values())[1:]:  # (each a strategy of its own: checked as ``name`` is)
            check_name(new, f"strategy name (of the copy of {from_builtin}'s module)", STRATEGY)
            if new in known:
                raise ParamError(f"the copy would declare {new!r}, a strategy that exists already; pick another name")
        for old, new in renames.items():
            source = _name_pattern(old).sub(lambda m: f"{m.group(1)}{m.group(2)}{new}{m.group(2)}", source, count=1)
        also = (f"\n# It also declares the other strategies of that module, renamed "
                f"{', '.join(renames[o] for o in others)}: delete those you do not want.") if others else ""
        text = f"# {name}: a copy of the built-in strategy {from_builtin!r}, to edit.{also}\n" + source
    if root.exists() and not root.is_dir():
        raise ParamError(f"cannot write strategy {name!r} in {root}: it is a file; strategies need a folder (--dir, "
                         "or the strategy_dir setting)")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # (it read "[Errno 17] File exists: '/etc/passwd'", "[Errno 2] ...")
        from threadx.errors import os_reason

        raise ParamError(f"cannot write strategy {name!r} in {root}: {os_reason(exc)}; pick a folder this user can "
                         "write (--dir, or the strategy_dir setting)") from None
    from threadx.files import save_atomically

    save_atomically(path, text.encode("utf-8"), f"strategy {name!r}")  # never a cut file that fails to load
    return path
