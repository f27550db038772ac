"""Error types. Messages tell the user what to do; the UI shows them, the CLI exits non-zero."""
from __future__ import annotations

import errno
from numbers import Integral, Real
from typing import Any


class ThreadXError(Exception):
    """Base class of every error ThreadX raises on purpose."""


class DataError(ThreadXError):
    """Missing, malformed or inconsistent market data."""


class ParamError(ThreadXError, ValueError):
    """A strategy or engine parameter that is unknown, out of range or inconsistent."""


class StrategyError(ThreadXError):
    """A user strategy that cannot be loaded or raised in its own code (the message names
    its file and line)."""


class CacheError(ThreadXError):
    """A cache entry that cannot be read or written."""


class FetchError(DataError):
    """A download from an exchange that failed after its retries."""


class ExchangeUnreachable(FetchError):
    """A download whose exchange did not answer through all its retries (no network, a timeout,
    its rate limit): the next downloads from it would wait as long for the same answer."""


class SettingsError(ParamError):
    """A settings file, variable or flag that cannot be used (the message names the file or
    variable and the key, on one line)."""


class Cancelled(ThreadXError):
    """The user stopped the work before it finished (nothing of it was stored)."""


def is_real(value: Any) -> bool:
    """Whether ``value`` is a real number (an int or a float, numpy's included), not a bool
    (``float(True)`` is 1.0: a switch given where a number belongs is a mistake).

    >>> is_real(2.5), is_real(True), is_real("2.5")
    (True, False, False)
    """
    return isinstance(value, Real) and not isinstance(value, bool)


def is_whole(value: Any) -> bool:
    """Whether ``value`` is a whole number (an int, numpy's included), not a bool.

    >>> is_whole(3), is_whole(3.0), is_whole(True)
    (True, False, False)
    """
    return isinstance(value, Integral) and not isinstance(value, bool)


TOO_LARGE = "is too large for a float (over 1.8e308)"  # after a name: an integer float() cannot hold


def whole(value: Any, name: str, minimum: int = 0, maximum: int | None = None, unit: str = "") -> int:
    """``value`` as an int when it is a whole number (an int, not a bool) from ``minimum`` to
    ``maximum``; else ParamError naming ``name`` (and the ``unit`` counted, e.g. "bars").

    >>> whole(3, "n", 1)
    3
    """
    if not is_whole(value) or value < minimum or (
            maximum is not None and value > maximum):
        upto = f" and <= {maximum:,}" if maximum is not None else ""
        raise ParamError(f"{name} must be a whole number{' of ' + unit if unit else ''} >= {minimum}{upto}, "
                         f"got {value!r}")
    return int(value)


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """The first line of an error's text (cut to ``limit`` characters), else its type's name:
    how one line names a failure.

    >>> first_line(ValueError("bad value\\nsecond line")), first_line(KeyError()), first_line(OSError("abcdef"), 3)
    ('bad value', 'KeyError', 'abc')
    """
    text = str(exc)
    return text.splitlines()[0][:limit] if text else type(exc).__name__


def os_reason(exc: OSError) -> str:
    """An OS failure in a few words, for an error line that names the file itself.

    >>> import errno
    >>> os_reason(OSError(errno.ENOSPC, "No space left on device")), os_reason(PermissionError(13, "Permission denied"))
    ('no space left on the disk', 'Permission denied')
    """
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)) or "No space left" in str(exc):
        return "no space left on the disk"
    text = str(exc).strip()
    return exc.strerror or (text.splitlines()[0] if text else "no details")
