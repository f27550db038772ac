"""Settings: where data, caches and results live, and engine defaults.

Every path can be overridden by an environment variable so that tests, CI and
users with several projects keep their files apart:

- ``THREADX_DATA_ROOT``      datasets (default ``./data``)
- ``THREADX_CACHE_DIR``      indicator disk cache (default ``./indicators_cache``)
- ``THREADX_RESULTS_DIR``    sweep results store (default ``./results``)
- ``THREADX_CONFIG_DIR``     user configuration (GPU profile, ...; default ``~/.config/threadx``)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_FEE_BPS = 10.0
DEFAULT_INITIAL_CAPITAL = 10_000.0
DEFAULT_SEED = 42


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


def settings() -> Settings:
    """Current settings, read from the environment on each call (cheap)."""
    return Settings(
        data_root=_env_path("THREADX_DATA_ROOT", "data"),
        cache_dir=_env_path("THREADX_CACHE_DIR", "indicators_cache"),
        results_dir=_env_path("THREADX_RESULTS_DIR", "results"),
        config_dir=_env_path("THREADX_CONFIG_DIR", Path.home() / ".config" / "threadx"),
    )
