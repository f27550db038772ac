"""Built-in defaults and the resolved settings (paths, cache limit, engine and sweep defaults).

Each default is written once, here; :mod:`threadx.settings_file` reads the levels above it:
command-line flag > environment variable > workspace ``./threadx.toml`` > user
``$THREADX_CONFIG_DIR/threadx.toml`` > these built-in defaults. The environment variables of
the paths keep their names:

- ``THREADX_DATA_ROOT``      datasets (default ``./data``)
- ``THREADX_CACHE_DIR``      indicator disk cache (default ``./indicators_cache``)
- ``THREADX_RESULTS_DIR``    sweep results store, and the workstation's jobs and workspace
  (``workspace.json``, threadx.ui.workspace) (default ``./results``)
- ``THREADX_STRATEGY_DIR``   your own strategies, one or more per ``.py`` file (default
  ``./strategies``, see threadx.strategy.user)
- ``THREADX_CONFIG_DIR``     user configuration (the user ``threadx.toml``, GPU profile, ...;
  default ``~/.config/threadx``)
- ``THREADX_CACHE_LIMIT``    size limit of the indicator disk cache: bytes, or a size such
  as ``500MB`` or ``2GiB`` (default 1 GiB)

The others are named ``THREADX_<SECTION>_<KEY>`` (``THREADX_ENGINE_FEE_BPS``, ...);
``threadx config show`` lists them all with their values and sources.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from threadx.errors import ParamError

DEFAULT_FEE_BPS = 10.0
DEFAULT_SLIPPAGE_BPS = 0.0
DEFAULT_FILL = "next_open"
DEFAULT_INITIAL_CAPITAL = 10_000.0
DEFAULT_SEED = 42
# Smallest order value (quote currency) the engine fills, like an exchange's minimum notional
# (Binance spot: 5 USDT). An entry below it is skipped and counted in n_skipped, so a
# shrinking account stops trading dust instead of compounding 1e-14 SOL orders.
DEFAULT_MIN_NOTIONAL = 5.0
MAX_INITIAL_CAPITAL = 1e15  # quote currency: above any account; orders of it times MAX_LEVERAGE stay finite
MAX_LEVERAGE = 1000.0
MAX_COST_BOX_BPS = 1000.0  # the pages' fee and slippage boxes: 10 %, far above any exchange's (the engine: < 10,000)
MAX_FUNDING_RATE = 0.1  # |rate| per settlement (a fraction, 10 %): exchanges cap theirs at a few %
# Fewest trades a combo needs to be picked as a sweep's winner or a walk-forward window's
# IS winner (API, CLI, job registry, pages): a Sharpe of 0-2 trades is luck, not a winner.
DEFAULT_MIN_TRADES = 10
MIN_BARS = 2  # the fewest bars a dataset is imported with and a backtest runs on (a return needs two closes)
# the walk-forward windows the Validation and Research pages start from (days of in-sample, out-of-sample)
DEFAULT_WF_IS_DAYS = 90.0
DEFAULT_WF_OOS_DAYS = 30.0
# combos a Monte Carlo sampler draws when none is given: a sweep (the Optimisation page, `threadx
# sweep`, `threadx bench`), and each in-sample window of a walk-forward (the Validation and Research
# pages, `threadx walk-forward` / `research`, the API), which runs it once per window and cell
DEFAULT_SWEEP_SAMPLES = 2000
DEFAULT_WF_SAMPLES = 500
DEFAULT_BOOTSTRAP = 1000  # bootstrap resamples of a validation report (pages, CLI, API)
STORED = "stored"  # the funding option of a research or a portfolio: each dataset's own funding file
# which winner of a research cell a portfolio runner trades: the last in-sample window's (what
# trading on would deploy) or the whole period's (chosen with hindsight on all the data)
RESEARCH_PARAM_CHOICES = ("last_window", "whole_period")
DEFAULT_RESEARCH_PARAMS = "last_window"
DEFAULT_CACHE_LIMIT_BYTES = 2**30  # indicator disk cache, 1 GiB (env THREADX_CACHE_LIMIT)
DEFAULT_EXECUTOR = "auto"  # sweeps: threads for small sweeps, else the process pool
DEFAULT_GRID_LIMIT = 10_000_000  # largest grid a sweep accepts
DEFAULT_APP_ADDRESS = "127.0.0.1"  # loopback only: the workstation has no login
DEFAULT_APP_PORT = 8501
DEFAULT_APP_STANDBY = True  # keep a job process started ahead (threadx.ui.standby)
DEFAULT_LOG_MAX_BYTES = 5 * 2**20  # the log file rotates at 5 MiB ...
DEFAULT_LOG_BACKUPS = 3  # ... keeping 3 older files: at most 20 MiB of logs


def parse_bytes(text: str | int | float) -> int:
    """A size in bytes from ``1073741824``, ``"500MB"``, ``"2GiB"`` or ``"1.5 GB"`` (ParamError if not)."""
    from threadx.settings_file import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise ParamError(str(exc)) from None


@dataclass(frozen=True)
class Settings:
    """Resolved locations. Build one with :func:`settings` to pick up env overrides."""

    data_root: Path
    cache_dir: Path
    results_dir: Path
    config_dir: Path
    strategy_dir: Path = Path("strategies")
    cache_limit_bytes: int = DEFAULT_CACHE_LIMIT_BYTES
    cache_min_compute_s: float | None = None  # None: auto (see threadx.indicators.bank.worth_storing)


def settings() -> Settings:
    """Current settings (flags, environment, workspace and user files; cheap, cached until one changes)."""
    from threadx.settings_file import AUTO, config_dir, resolve

    r = resolve()
    return Settings(
        data_root=Path(r["paths.data_root"]).expanduser(),
        cache_dir=Path(r["paths.cache_dir"]).expanduser(),
        results_dir=Path(r["paths.results_dir"]).expanduser(),
        config_dir=config_dir(),
        strategy_dir=Path(r["paths.strategy_dir"]).expanduser(),
        cache_limit_bytes=int(r["cache.limit"]),
        cache_min_compute_s=None if r["cache.min_compute"] == AUTO else float(r["cache.min_compute"]),
    )


@dataclass(frozen=True)
class SweepDefaults:
    """Sweep settings; None where the setting is ``auto`` (the sweep decides)."""

    workers: int | None
    executor: str
    chunk_size: int | None
    memory_budget: int | None
    grid_limit: int


def engine_default(name: str):
    """The default of engine option ``name`` (initial_capital, fee_bps, slippage_bps, fill,
    min_notional) from the settings."""
    from threadx.settings_file import resolve

    return resolve()[f"engine.{name}"]


def sweep_defaults() -> SweepDefaults:
    """Workers, executor, chunk size, memory budget and grid limit from the settings."""
    from threadx.settings_file import resolve

    r = resolve()
    return SweepDefaults(workers=r.auto("sweep.workers"), executor=r["sweep.executor"],
                         chunk_size=r.auto("sweep.chunk_size"), memory_budget=r.auto("sweep.memory_budget"),
                         grid_limit=int(r["sweep.grid_limit"]))
