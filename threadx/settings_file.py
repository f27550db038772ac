"""The settings: one table of keys, read from five levels, each value with its source.

Precedence, highest first::

    command-line flag > environment variable > workspace file > user file > built-in default

- workspace file: ``./threadx.toml`` in the current directory (the workspace, where ``data/``,
  ``results/`` and ``strategies/`` are resolved too);
- user file: ``$THREADX_CONFIG_DIR/threadx.toml`` (default ``~/.config/threadx/threadx.toml``);
- environment: one variable per key (``THREADX_DATA_ROOT``, ``THREADX_ENGINE_FEE_BPS``, ...,
  see :data:`KEYS`);
- flags: what the ``threadx`` command was given (``--fee-bps``, ``--set engine.fee_bps=5``);
  the command hands them over with :func:`flag_overrides`.

Files are read with :mod:`tomllib`. A malformed file, an unknown key or a value of the wrong
type raises :class:`~threadx.errors.SettingsError` (a ParamError) with one line naming the
file (or variable, or flag) and the key. :func:`resolve` is cheap: the result is kept until
an environment variable, a file's modification time or the current directory changes.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from threadx.errors import SettingsError
from threadx.jit_cache import CHOSEN_ENV
from threadx.filestamp import stamp_or_none

FILE_NAME = "threadx.toml"
CONFIG_DIR_ENV = "THREADX_CONFIG_DIR"
FLAGS_ENV = "THREADX_FLAG_SETTINGS"  # flags of the running command, inherited by its child processes
GPU_REGISTERS_ENV = "THREADX_GPU_MAX_REGISTERS"  # register cap of the CUDA kernel (benchmarks/bench_gpu.py)
_OTHER_ENV = (CONFIG_DIR_ENV, FLAGS_ENV, GPU_REGISTERS_ENV, CHOSEN_ENV)  # (not settings, set by threadx itself)
_TEST_ENV_PREFIX = "THREADX_TEST_"  # the test suite's own switches
AUTO = "auto"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

_SIZE_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6, "mib": 2**20,
               "g": 10**9, "gb": 10**9, "gib": 2**30, "t": 10**12, "tb": 10**12, "tib": 2**40}


# --- value kinds: (value, from_text) -> checked value, ValueError with the reason --------------

Kind = Callable[[Any, bool], Any]


def _number(low: float | None = None, high: float | None = None, *, low_open: bool = False,
            high_open: bool = True) -> Kind:
    def check(value: Any, text: bool) -> float:
        if text:
            try:
                value = float(str(value).strip())
            except ValueError:
                raise ValueError(f"must be a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"must be a number, got {value!r}")
        if low is not None and (value <= low if low_open else value < low):
            raise ValueError(f"must be {'>' if low_open else '>='} {low:g}, got {value!r}")
        if high is not None and (value >= high if high_open else value > high):
            raise ValueError(f"must be {'below' if high_open else 'at most'} {high:g}, got {value!r}")
        return float(value)
    return check


def _whole(low: int, high: int | None = None, *, auto: bool = False) -> Kind:
    bounds = f" from {low} to {high}" if high is not None else f" >= {low}"
    what = f"a whole number{bounds}" + (' or "auto"' if auto else "")

    def check(value: Any, text: bool) -> int | str:
        if auto and isinstance(value, str) and value.strip().lower() == AUTO:
            return AUTO
        if text:
            try:
                value = int(str(value).strip())
            except ValueError:
                raise ValueError(f"must be {what}, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
            raise ValueError(f"must be {what}, got {value!r}")
        return value
    return check


def _choice(*options: str) -> Kind:
    def check(value: Any, text: bool) -> str:
        if not isinstance(value, str) or value.strip() not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {value!r}")
        return value.strip()
    return check


def _switch(value: Any, text: bool) -> bool:
    if text and isinstance(value, str) and value.strip().lower() in _SWITCH_WORDS:
        return _SWITCH_WORDS[value.strip().lower()]
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


_SWITCH_WORDS = {"true": True, "on": True, "yes": True, "1": True, "false": False, "off": False, "no": False, "0": False}


def _path(value: Any, text: bool) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a path (text), got {value!r}")
    return value.strip()


def _optional_path(value: Any, text: bool) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a path (text; \"\" for the default), got {value!r}")
    return value.strip()


def parse_size(value: Any) -> int:
    """Bytes from ``1073741824``, ``"500MB"``, ``"2GiB"`` or ``"1.5 GB"`` (ValueError if not)."""
    import re

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number, unit = float(value), ""
    elif isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*", value, re.IGNORECASE)
        if match is None or match.group(2).lower() not in _SIZE_UNITS:
            raise ValueError(f"{value!r} is not a size: use bytes or a number with a unit such as 500MB or 2GiB")
        number, unit = float(match.group(1)), match.group(2).lower()
    else:
        raise ValueError(f"{value!r} is not a size: use bytes or a number with a unit such as 500MB or 2GiB")
    size = number * _SIZE_UNITS[unit]
    if not (math.isfinite(size) and size >= 1):
        raise ValueError(f"a size must be at least one byte, got {value!r}")
    return int(size)


def _seconds(*, auto: bool = False) -> Kind:
    plain = _number(0)
    what = 'seconds (a number >= 0) or "auto"' if auto else "seconds (a number >= 0)"

    def check(value: Any, text: bool) -> float | str:
        if auto and isinstance(value, str) and value.strip().lower() == AUTO:
            return AUTO
        try:
            return plain(value, text)
        except ValueError:
            raise ValueError(f"must be {what}, got {value!r}") from None
    return check


def seconds(value: Any) -> float:
    """``value`` as seconds (a finite number >= 0, not a bool), else ValueError saying so:
    the rule of every seconds setting, for an argument that takes the same.

    >>> seconds(1.5)
    1.5
    """
    return _seconds()(value, False)


def _size(*, auto: bool = False) -> Kind:
    def check(value: Any, text: bool) -> int | str:
        if auto and isinstance(value, str) and value.strip().lower() == AUTO:
            return AUTO
        return parse_size(value)
    return check


def _address(value: Any, text: bool) -> str:
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value.strip()):
        raise ValueError(f"must be a host name or an IP address, got {value!r}")
    return value.strip()


def _level(value: Any, text: bool) -> str:
    if not isinstance(value, str) or value.strip().upper() not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return value.strip().upper()


# --- the keys ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Key:
    """One setting: ``[section] name`` in a file, an environment variable, a default."""

    section: str
    name: str
    default: Any
    kind: Kind
    help: str
    env_name: str = ""

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.name}"

    @property
    def env(self) -> str:
        return self.env_name or f"THREADX_{self.section.upper()}_{self.name.upper()}"


def _keys() -> tuple[Key, ...]:
    from threadx import config as c  # the built-in defaults live there (one place each)

    return (
        Key("paths", "data_root", "data", _path, "datasets", "THREADX_DATA_ROOT"),
        Key("paths", "cache_dir", "indicators_cache", _path, "indicator disk cache", "THREADX_CACHE_DIR"),
        Key("paths", "results_dir", "results", _path, "sweep results, jobs, workspace state", "THREADX_RESULTS_DIR"),
        Key("paths", "strategy_dir", "strategies", _path, "your own strategies", "THREADX_STRATEGY_DIR"),
        Key("engine", "initial_capital", c.DEFAULT_INITIAL_CAPITAL, _number(0, c.MAX_INITIAL_CAPITAL, low_open=True,
                                                                                 high_open=False),
            "starting equity (quote currency)"),
        Key("engine", "fee_bps", c.DEFAULT_FEE_BPS, _number(0, 10_000), "fee per fill, basis points of the notional"),
        Key("engine", "slippage_bps", c.DEFAULT_SLIPPAGE_BPS, _number(0, 10_000), "slippage per fill, basis points"),
        Key("engine", "fill", c.DEFAULT_FILL, _choice("next_open", "close"), "fill at the next open or this close"),
        Key("engine", "min_notional", c.DEFAULT_MIN_NOTIONAL, _number(0), "smallest entry order value; 0 = off"),
        Key("sweep", "workers", AUTO, _whole(1, 1024, auto=True), "worker processes (auto = physical cores)"),
        Key("sweep", "executor", c.DEFAULT_EXECUTOR, _choice("auto", "local", "inline", "dask", "gpu"),
            "auto, local, inline, dask or gpu"),
        Key("sweep", "chunk_size", AUTO, _whole(1, auto=True), "combos per chunk (auto = about 0.5 s of work)"),
        Key("sweep", "memory_budget", AUTO, _size(auto=True), "memory a sweep may use (auto = half the free RAM)"),
        Key("sweep", "grid_limit", c.DEFAULT_GRID_LIMIT, _whole(1), "largest grid a sweep accepts"),
        Key("cache", "limit", c.DEFAULT_CACHE_LIMIT_BYTES, _size(), "indicator disk cache size limit",
            "THREADX_CACHE_LIMIT"),
        Key("cache", "min_compute", AUTO, _seconds(auto=True), "store on disk only results that took this long to "
            "compute (seconds; auto = as long as reading them back takes; 0 = every result)",
            "THREADX_CACHE_MIN_COMPUTE"),
        Key("app", "address", c.DEFAULT_APP_ADDRESS, _address, "address the workstation listens on"),
        Key("app", "port", c.DEFAULT_APP_PORT, _whole(1, 65_535), "port of the workstation"),
        Key("app", "standby", c.DEFAULT_APP_STANDBY, _switch,
            "keep one job process started ahead (about 270 MB; and one for a folder strategy's backtest or check once "
            "one is picked): work starts without Python's and numba's start-up"),
        Key("logging", "level", "INFO", _level, "level of the log file (DEBUG, INFO, WARNING, ERROR)"),
        Key("logging", "file", "", _optional_path, "log file (\"\" = <results_dir>/logs/threadx.log)"),
        Key("logging", "max_bytes", c.DEFAULT_LOG_MAX_BYTES, _size(), "size at which the log file rotates"),
        Key("logging", "backups", c.DEFAULT_LOG_BACKUPS, _whole(1, 100), "rotated log files kept"),
    )


_KEYS: tuple[Key, ...] | None = None


def keys() -> tuple[Key, ...]:
    """Every setting, in the order ``threadx config show`` prints them."""
    global _KEYS
    if _KEYS is None:
        _KEYS = _keys()
    return _KEYS


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """One line per ``THREADX_*`` variable of ``environ`` (default: this process's) that is no
    setting and is ignored, with the setting its name is close to: a misspelt one
    (``THREADX_STRATEGIES_DIR``) silently left the default in force (the strategies folder in
    the current directory, not the folder it named).

    >>> unknown_variables({"THREADX_STRATEGIES_DIR": "/x", "THREADX_DATA_ROOT": "/d", "HOME": "/h"})
    ['THREADX_STRATEGIES_DIR is not a ThreadX setting and is ignored (did you mean THREADX_STRATEGY_DIR?)']
    """
    import difflib

    environ = os.environ if environ is None else environ
    known = {k.env for k in keys()} | set(_OTHER_ENV)
    lines = []
    for name in sorted(environ):
        if not name.startswith("THREADX_") or name in known or name.startswith(_TEST_ENV_PREFIX):
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
        lines.append(f"{name} is not a ThreadX setting and is ignored"
                     + (f" (did you mean {close[0]}?)" if close else " (threadx config lists the settings)"))
    return lines


def key(dotted: str) -> Key:
    """The key named ``section.name`` (SettingsError if unknown)."""
    for k in keys():
        if k.dotted == dotted:
            return k
    raise SettingsError(f"unknown setting {dotted!r}; settings: {', '.join(k.dotted for k in keys())}")


# --- files and levels -------------------------------------------------------------------------

def config_dir() -> Path:
    """``$THREADX_CONFIG_DIR`` or ``~/.config/threadx`` (user file, GPU profile)."""
    value = os.environ.get(CONFIG_DIR_ENV)
    return Path(value).expanduser() if value else Path.home() / ".config" / "threadx"


def user_file() -> Path:
    return config_dir() / FILE_NAME


def workspace_file() -> Path:
    return Path.cwd() / FILE_NAME


def read_file(path: Path) -> dict[str, Any]:
    """``{dotted: checked value}`` of one settings file ({} when it does not exist)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read the settings file: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8-sig"))  # (a byte-order mark, as Notepad writes, is no error)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        # (ValueError: an integer of thousands of digits; RecursionError: arrays nested too deep)
        raise SettingsError(f"{path}: not a valid TOML file: {str(exc)[:200]}") from None
    known = {k.dotted: k for k in keys()}
    sections = sorted({k.section for k in keys()})
    out: dict[str, Any] = {}
    for section, table in data.items():
        if not isinstance(table, dict):
            raise SettingsError(f"{path}: unknown setting {section!r} outside a section; "
                                f"sections: {', '.join(f'[{s}]' for s in sections)}")
        if section not in sections:
            raise SettingsError(f"{path}: unknown section [{section}]; sections: "
                                f"{', '.join(f'[{s}]' for s in sections)}")
        for name, value in table.items():
            dotted = f"{section}.{name}"
            if dotted not in known:
                names = ", ".join(k.name for k in keys() if k.section == section)
                raise SettingsError(f"{path}: unknown setting {name!r} in [{section}]; known: {names}")
            out[dotted] = _checked(known[dotted], value, False, f"{path}: [{section}] {name}")
    return out


def _checked(k: Key, value: Any, text: bool, where: str) -> Any:
    try:
        return k.kind(value, text)
    except ValueError as exc:
        raise SettingsError(f"{where} {exc}") from None


def _env_values() -> dict[str, tuple[Any, str]]:
    out: dict[str, tuple[Any, str]] = {}
    for k in keys():
        value = os.environ.get(k.env, "")
        if value.strip():
            out[k.dotted] = (_checked(k, value, True, f"environment variable {k.env}:"), f"env {k.env}")
    return out


def _env_flags() -> dict[str, list]:
    """The command flags a parent process handed down (``FLAGS_ENV``: ``{dotted: [value, flag]}``);
    {} when unset or of another shape (the variable is ThreadX's own, not a setting to word)."""
    try:
        flags = json.loads(os.environ.get(FLAGS_ENV) or "{}")
    except ValueError:
        return {}
    if not isinstance(flags, dict) or not all(isinstance(v, list) and len(v) == 2 for v in flags.values()):
        return {}
    return flags


def _flag_values() -> dict[str, tuple[Any, str]]:
    flags = _env_flags()
    out: dict[str, tuple[Any, str]] = {}
    for dotted, (value, flag) in flags.items():
        k = key(dotted)
        out[dotted] = (_checked(k, value, isinstance(value, str), f"{flag}:"), f"flag {flag}")
    return out


@contextlib.contextmanager
def flag_overrides(flags: Mapping[str, tuple[Any, str]]) -> Iterator[None]:
    """While inside, ``flags`` (``{dotted: (value, "--flag")}``) are the top level of the
    settings, for this process and the processes it starts (checked on entry)."""
    current = _env_flags()
    merged = {**current, **{d: [v, f] for d, (v, f) in flags.items() if v is not None}}
    for dotted, (value, flag) in merged.items():
        _checked(key(dotted), value, isinstance(value, str), f"{flag}:")
    previous = os.environ.get(FLAGS_ENV)
    os.environ[FLAGS_ENV] = json.dumps(merged)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(FLAGS_ENV, None)
        else:
            os.environ[FLAGS_ENV] = previous


# --- resolution --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Resolved:
    """The effective settings: ``values[dotted]`` and where each came from (``sources``)."""

    values: dict[str, Any]
    sources: dict[str, str]
    user_file: Path
    workspace_file: Path

    def __getitem__(self, dotted: str) -> Any:
        return self.values[dotted]

    def auto(self, dotted: str) -> Any:
        """The value, or None when it is ``"auto"``."""
        value = self.values[dotted]
        return None if value == AUTO else value

    def log_file(self) -> Path:
        """``logging.file``, or ``<results_dir>/logs/threadx.log`` when it is empty."""
        text = self.values["logging.file"]
        return Path(text).expanduser() if text else Path(self.values["paths.results_dir"]).expanduser() / "logs" / \
            "threadx.log"

    def rows(self) -> list[dict[str, Any]]:
        """One row per setting: key, value, source, environment variable."""
        out = []
        for k in keys():
            value = self.values[k.dotted]
            if k.dotted == "logging.file" and not value:
                value = str(self.log_file())
            out.append({"setting": k.dotted, "value": value, "source": self.sources[k.dotted], "env": k.env})
        return out


_CACHE: dict[tuple, Resolved] = {}


def resolve() -> Resolved:
    """The effective settings, from the five levels (cached until one of them changes)."""
    user, workspace = user_file(), workspace_file()
    env = tuple(os.environ.get(k.env) for k in keys())
    fingerprint = (str(user), stamp_or_none(user), str(workspace), stamp_or_none(workspace), env,
                   os.environ.get(FLAGS_ENV))
    cached = _CACHE.get(fingerprint)
    if cached is not None:
        return cached
    values = {k.dotted: k.default for k in keys()}
    sources = {k.dotted: "default" for k in keys()}
    for label, path in (("user file", user), ("workspace file", workspace)):
        if label == "workspace file" and path == user:
            continue  # the workspace is the config folder: one file, read once as the user file
        for dotted, value in read_file(path).items():
            values[dotted], sources[dotted] = value, f"{label} {path}"
    for level in (_env_values(), _flag_values()):
        for dotted, (value, source) in level.items():
            values[dotted], sources[dotted] = value, source
    resolved = Resolved(values, sources, user, workspace)
    _CACHE.clear()
    _CACHE[fingerprint] = resolved
    return resolved
