"""Settings: where data, caches and results live, and engine defaults.

Every path can be overridden by an environment variable so that tests, CI and
users with several projects keep their files apart:

- ``THREADX_DATA_ROOT``      datasets (default ``./data``)
- ``THREADX_CACHE_DIR``      indicator disk cache (default ``./indicators_cache``)
- ``THREADX_RESULTS_DIR``    sweep results store, and the workstation's jobs and workspace
  (``workspace.json``, threadx.ui.workspace) (default ``./results``)
- ``THREADX_STRATEGY_DIR``   your own strategies, one or more per ``.py`` file (default
  ``./strategies``, see threadx.strategy.user)
- ``THREADX_CONFIG_DIR``     user configuration (GPU profile, ...; default ``~/.config/threadx``)
- ``THREADX_CACHE_LIMIT``    size limit of the indicator disk cache: bytes, or a size such
  as ``500MB`` or ``2GiB`` (default 1 GiB)
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from threadx.errors import ParamError

DEFAULT_FEE_BPS = 10.0
DEFAULT_INITIAL_CAPITAL = 10_000.0
DEFAULT_SEED = 42
# Smallest order value (quote currency) the engine fills, like an exchange's minimum notional
# (Binance spot: 5 USDT). An entry below it is skipped and counted in n_skipped, so a
# shrinking account stops trading dust instead of compounding 1e-14 SOL orders.
DEFAULT_MIN_NOTIONAL = 5.0
# Fewest trades a combo needs to be picked as a sweep's winner or a walk-forward window's
# IS winner (API, CLI, job registry, pages): a Sharpe of 0-2 trades is luck, not a winner.
DEFAULT_MIN_TRADES = 10
DEFAULT_CACHE_LIMIT_BYTES = 2**30  # indicator disk cache, 1 GiB (env THREADX_CACHE_LIMIT)

_SIZE_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6, "mib": 2**20,
               "g": 10**9, "gb": 10**9, "gib": 2**30, "t": 10**12, "tb": 10**12, "tib": 2**40}
_SIZE_RE = re.compile(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*", re.IGNORECASE)


def parse_bytes(text: str | int | float) -> int:
    """A size in bytes from ``1073741824``, ``"500MB"``, ``"2GiB"`` or ``"1.5 GB"`` (ParamError if not)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        match = _SIZE_RE.fullmatch(str(text))
        if match is None or match.group(2).lower() not in _SIZE_UNITS:
            raise ParamError(f"{text!r} is not a size: use bytes or a number with a unit such as 500MB or 2GiB")
        value, unit = float(match.group(1)), match.group(2).lower()
    size = value * _SIZE_UNITS[unit]
    if not (math.isfinite(size) and size > 0):
        raise ParamError(f"a size must be positive, got {text!r}")
    return int(size)


def _env_bytes(var: str, default: int) -> int:
    value = os.environ.get(var, "").strip()
    if not value:
        return default
    try:
        return parse_bytes(value)
    except ParamError as exc:
        raise ParamError(f"{var}: {exc}") from None


def _env_path(var: str, default: str | Path) -> Path:
    value = os.environ.get(var)
    return Path(value).expanduser() if value else Path(default).expanduser()


@dataclass(frozen=True)
class Settings:
    """Resolved locations. Build one with :func:`settings` to pick up env overrides."""

    data_root: Path
    cache_dir: Path
    results_dir: Path
    config_dir: Path
    strategy_dir: Path = Path("strategies")
    cache_limit_bytes: int = DEFAULT_CACHE_LIMIT_BYTES


def settings() -> Settings:
    """Current settings, read from the environment on each call (cheap)."""
    return Settings(
        data_root=_env_path("THREADX_DATA_ROOT", "data"),
        cache_dir=_env_path("THREADX_CACHE_DIR", "indicators_cache"),
        results_dir=_env_path("THREADX_RESULTS_DIR", "results"),
        config_dir=_env_path("THREADX_CONFIG_DIR", Path.home() / ".config" / "threadx"),
        strategy_dir=_env_path("THREADX_STRATEGY_DIR", "strategies"),
        cache_limit_bytes=_env_bytes("THREADX_CACHE_LIMIT", DEFAULT_CACHE_LIMIT_BYTES),
    )
