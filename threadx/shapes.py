"""Shapes of the small JSON files ThreadX reads back (run manifests, job files): the kind of
value each key holds, checked in one way before any reader uses them.

A file written by ThreadX always has the shape; one edited by hand, damaged, or written by an
earlier version may not. A key may be absent (an earlier version did not write it) and, where
its :class:`Kind` says so, null; it is never of another kind. The first key that breaks this
is worded for the user (``'done' is 'many', not a whole number``), and the reader reports the
file as damaged instead of failing on it later with a traceback.

Example::

    >>> shape_problem({"done": "many"}, {"done": WHOLE})
    "'done' is 'many', not a whole number"
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Mapping

from threadx.errors import is_real, is_whole


@dataclass(frozen=True)
class Kind:
    """What a key holds: ``accepts(value)``, worded ``words``; ``nullable``: null allowed."""

    words: str
    accepts: Callable[[Any], bool]
    nullable: bool = True

    def not_null(self) -> "Kind":
        """The same kind, null refused (a value read as a number whenever present)."""
        return replace(self, nullable=False)


def _whole(low: int, high: int | None = None) -> Callable[[Any], bool]:
    return lambda v: is_whole(v) and v >= low and (high is None or v <= high)


TEXT = Kind("a text", lambda v: isinstance(v, str))
TEXTS = Kind("a list of texts", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v))
OBJECT = Kind("an object", lambda v: isinstance(v, dict))
LIST = Kind("a list", lambda v: isinstance(v, list))
SWITCH = Kind("true or false", lambda v: isinstance(v, bool))
WHOLE = Kind("a whole number", _whole(0))
WHOLES = Kind("a list of whole numbers", lambda v: isinstance(v, list) and all(map(_whole(0), v)))
COUNT = Kind("a whole number >= 1", _whole(1))
PID = Kind("a process id", _whole(1, 2**31 - 1))  # pid_t
NUMBER = Kind("a finite number >= 0", lambda v: is_real(v) and math.isfinite(v) and v >= 0)
# a number as json_number writes one: non-finite ones as "inf" / "-inf" (NaN as null)
JSON_NUMBER = Kind("a number", lambda v: (is_real(v) and math.isfinite(v)) or v in ("inf", "-inf"))


def json_number(value: Any) -> Any:
    """``value`` with a non-finite float written for strict JSON: NaN as None, +-inf as
    "inf" / "-inf" (any other value as it is); :func:`read_json_number` reads it back.

    >>> json_number(float("nan")), json_number(float("-inf")), json_number(2.5)
    (None, '-inf', 2.5)
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def read_json_number(value: Any) -> float | None:
    """A number as :func:`json_number` writes one, as a float (infinities kept); None for
    null, NaN, a switch or anything else.

    >>> read_json_number("inf"), read_json_number(3), read_json_number(True), read_json_number("3")
    (inf, 3.0, None, None)
    """
    if is_real(value):
        return None if math.isnan(value) else float(value)
    return float(value) if value in ("inf", "-inf") else None


def one_of(choices: Iterable[str]) -> Kind:
    """A text among ``choices``."""
    options = tuple(choices)
    return Kind(f"one of {', '.join(options)}", lambda v: v in options)


def shape_problem(data: Mapping[str, Any], kinds: Mapping[str, Kind], required: Iterable[str] = (),
                  where: str = "") -> str | None:
    """The first key of ``data`` that breaks ``kinds`` (or a ``required`` key it lacks), in
    words, its name led by ``where`` (``params.``); None when ``data`` has the shape."""
    for key in required:
        if key not in data:
            return f"'{where}{key}' is missing"
    for key, kind in kinds.items():
        if key not in data:
            continue
        value = data[key]
        if not (value is None and kind.nullable) and (value is None or not kind.accepts(value)):
            return f"'{where}{key}' is {repr(value)[:40]}, not {kind.words}"
    return None
