"""The one check for every user-given name that becomes part of a file path.

Exchange labels, symbols, timeframes, run ids, job ids and upload names all end up as a
folder or file name. Each is checked here, as a whole string (``re.fullmatch``: a trailing
newline or a path separator never slips through), before any path is built from it::

    >>> check_name("binance", "exchange", EXCHANGE)
    'binance'
    >>> check_name("../../elsewhere", "exchange", EXCHANGE)
    Traceback (most recent call last):
    threadx.errors.ParamError: invalid exchange '../../elsewhere': ...
"""
from __future__ import annotations

import re

from threadx.errors import ParamError

# A plain file or folder name: starts with a letter or digit (never '.', '..' or hidden),
# then letters, digits, '_', '.', '-'; no separator, no space, no control character.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
EXCHANGE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")  # ccxt ids are lower case
# BASE_QUOTE[_SETTLE], normalised; at most 64 characters, so that a dataset's file name (with its
# timeframe, a label of up to 128 and an atomic write's temp suffix) stays under 255 bytes
SYMBOL = re.compile(r"(?=[A-Z0-9_]{1,64}\Z)[A-Z0-9]+(?:_[A-Z0-9]+){0,3}")
TIMEFRAME = re.compile(r"[1-9][0-9]{0,5}[smhdw]")
STRATEGY = re.compile(r"[a-z][a-z0-9_]{0,63}")  # also a file name (NAME.py) and a Python identifier

_RULES = {
    NAME: "letters, digits, '_', '.', '-', starting with a letter or digit (at most 128)",
    EXCHANGE: "lower-case letters, digits, '_', '.', '-' (a ccxt id such as binance; at most 64)",
    SYMBOL: "BASE_QUOTE in letters and digits (e.g. BTC_USDT; at most 64)",
    TIMEFRAME: "a number and one of s, m, h, d, w (e.g. 1h, 15m)",
    STRATEGY: "lower-case letters, digits and '_', starting with a letter (e.g. rsi_reversion; at most 64)",
}


# Windows opens these as devices whatever the extension (CON.txt, nul.parquet): no file can bear them
_WINDOWS_DEVICES = frozenset({"CON", "PRN", "AUX", "NUL", *(f"COM{k}" for k in range(1, 10)),
                              *(f"LPT{k}" for k in range(1, 10))})


def check_name(value: object, what: str, pattern: re.Pattern[str] = NAME) -> str:
    """``value`` if the whole string matches ``pattern`` and is no Windows device name (``con``,
    ``NUL.x``: the same results folder or dataset must open on every system); else ParamError
    naming ``what``."""
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise ParamError(f"invalid {what} {value!r}: use {_RULES.get(pattern, pattern.pattern)}")
    if value.split(".", 1)[0].upper() in _WINDOWS_DEVICES:
        raise ParamError(f"invalid {what} {value!r}: {value.split('.', 1)[0]} is a device name on Windows")
    if value.endswith("."):  # (Windows drops it: "a." is the file "a", another run's or dataset's)
        raise ParamError(f"invalid {what} {value!r}: a name cannot end with '.' (Windows drops it)")
    return value


def new_run_id(prefix: str) -> str:
    """A new run id: ``prefix``, the UTC time and a random tail (``ma_crossover-20261201-203207-405e67``).

    >>> check_name(new_run_id("wf-bb_atr"), "run id") .startswith("wf-bb_atr-")
    True
    """
    import uuid
    from datetime import datetime, timezone

    return f"{prefix}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
