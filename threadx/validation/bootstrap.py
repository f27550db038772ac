"""Bootstrap robustness of a strategy's per-bar returns (SPEC §7).

:func:`block_bootstrap` resamples the per-bar returns with a circular moving-block
bootstrap (Politis & Romano 1992): each resample is ``ceil(T / block)`` blocks of
``block`` consecutive bars, each block starting at a uniformly drawn bar and wrapping
around the end, cut to ``T`` bars. Blocks keep the short-range dependence (volatility
clustering, trades spanning several bars) that an i.i.d. resample would destroy.
A resample holds at least :data:`MIN_BLOCKS` blocks (block <= T // 10, :func:`check_block`):
with one block of T bars every resample is a rotation of the series, its Sharpe is the
observed one and the null's is 0, so the interval shrinks to a point and the p-value to
1 / (1 + n) (a "significant" edge out of nothing). At least :data:`MIN_RESAMPLES` resamples
are drawn (:func:`check_resamples`); SPEC §7 asks 1000+, the default.

Per resample it computes the SPEC §5 statistics: annualised Sharpe (mean / std ddof 1 *
sqrt(bars_per_year), 0 for zero variance), total return prod(1 + r) - 1 and max drawdown
min(E / running peak - 1) of the equity compounded from 1 (the peak starts at 1, as in
:func:`threadx.engine.metrics.metrics_from_equity`); a negative number.

The Sharpe p-value is against an explicit null: the same series demeaned (true mean 0,
same volatility and dependence), resampled with the very same blocks; p = (1 + #{SR_null
>= SR_obs}) / (1 + n). Resampling the raw returns and counting resamples above the
observed value would centre the distribution on the observation and give p ~ 0.5 for any
strategy (the predecessor's mistake).

:func:`trade_shuffle_drawdowns` is the trade-order test: the same trades in random orders
give the same total return and trade Sharpe but different drawdowns, so it measures how
much of the observed drawdown was luck of ordering.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from threadx.config import DEFAULT_BOOTSTRAP, DEFAULT_SEED
from threadx.engine.metrics import metrics_from_equity
from threadx.errors import ParamError, is_whole, whole

STATS = ("sharpe", "total_return", "max_drawdown")
MAX_RESAMPLES = 1_000_000  # bootstrap / shuffle samples: more do not sharpen a percentile interval worth showing
# Fewest resamples: a 95 % percentile interval then has 2.5 resamples beyond each end and the
# p-value a resolution of 0.01 (the grade's steps are 0.05 and 0.10); 1 resample gave a zero-width "CI".
MIN_RESAMPLES = 100
MIN_BLOCKS = 10  # fewest blocks in a resample: block <= T // 10 (one block of T bars only rotates the series)


def check_resamples(n: Any, name: str = "n") -> int:
    """``n`` resamples as an int in MIN_RESAMPLES..MAX_RESAMPLES; ParamError naming ``name`` otherwise (a
    caller checks it before any work: a walk-forward's bootstrap was refused after its windows)."""
    if is_whole(n) and 1 <= n < MIN_RESAMPLES:
        raise ParamError(f"{name} must be at least {MIN_RESAMPLES} resamples, got {n}: fewer leave a 95 % interval "
                         f"without tails (1 gives it zero width); {DEFAULT_BOOTSTRAP:,} or more is the norm")
    return whole(n, name, MIN_RESAMPLES, MAX_RESAMPLES)


def check_block(block: Any, t: int) -> int:
    """The block length for a bootstrap of ``t`` returns: ``block`` when it leaves at least
    MIN_BLOCKS blocks in a resample (1 <= block <= t // MIN_BLOCKS), else ParamError naming the
    largest allowed; None gives the default ceil(sqrt(t)), cut to t // MIN_BLOCKS below 100 returns.
    Below MIN_BLOCKS returns only blocks of one bar are allowed (an i.i.d. resample: as many
    blocks as returns; a short walk-forward's out-of-sample record is still reported).

    >>> check_block(None, 12556), check_block(None, 50), check_block(1255, 12556), check_block(None, 5)
    (113, 5, 1255, 1)
    """
    most = max(1, t // MIN_BLOCKS)
    if block is None:
        return min(math.ceil(math.sqrt(t)), most)
    block = whole(block, "block", 1)
    if block > most:
        bars = f"{most:,} bar{'s' if most > 1 else ''}"
        raise ParamError(f"block must be at most {bars} for {t:,} returns (at least {MIN_BLOCKS} blocks per "
                         f"resample), got {block}: longer blocks only rotate the series, which narrows the Sharpe "
                         "interval to a point and makes any p-value look significant")
    return block


# Resamples are processed in chunks whose working set (indices + a few float rows) stays
# under this many bytes; T = 50k bars gives chunks of ~60 resamples.
MEMORY_BUDGET_BYTES = 150_000_000
_BYTES_PER_CELL = 8 * 5  # int64 indices, gathered returns, equity, running peak, temporaries
# A standard deviation below this fraction of |mean| is rounding noise of a constant series.
_REL_STD_FLOOR = 1e-12

NULL_DESCRIPTION = (
    "H0: the strategy has no edge: its per-bar returns have mean 0 with the same volatility and "
    "short-range dependence. Simulated by the demeaned returns (r - mean(r)) resampled with the same "
    "circular blocks; p = (1 + #{null Sharpe >= observed Sharpe}) / (1 + n), one-sided."
)


@dataclass(frozen=True)
class BootstrapResult:
    """Block-bootstrap distribution of Sharpe, total return and max drawdown, and the Sharpe p-value."""

    n: int
    block: int
    seed: int
    confidence: float
    bars_per_year: float
    n_bars: int
    observed: dict[str, float]
    samples: dict[str, np.ndarray]
    ci: dict[str, tuple[float, float]]
    p_value: float
    null_sharpes: np.ndarray
    null: str = NULL_DESCRIPTION
    method: str = "circular moving-block bootstrap"

    def to_dict(self, include_samples: bool = True) -> dict[str, Any]:
        """JSON-safe plain values (floats, lists, dicts); NaN stays a float."""
        out: dict[str, Any] = {
            "method": self.method,
            "n": int(self.n),
            "block": int(self.block),
            "seed": int(self.seed),
            "confidence": float(self.confidence),
            "bars_per_year": float(self.bars_per_year),
            "n_bars": int(self.n_bars),
            "observed": {k: float(v) for k, v in self.observed.items()},
            "ci": {k: [float(lo), float(hi)] for k, (lo, hi) in self.ci.items()},
            "p_value": float(self.p_value),
            "null": self.null,
        }
        if include_samples:
            out["samples"] = {k: np.asarray(v, dtype=float).tolist() for k, v in self.samples.items()}
            out["null_sharpes"] = np.asarray(self.null_sharpes, dtype=float).tolist()
        return out


def block_bootstrap(
    returns: np.ndarray,
    *,
    n: int = DEFAULT_BOOTSTRAP,
    block: int | None = None,
    seed: int = DEFAULT_SEED,
    bars_per_year: float,
    confidence: float = 0.95,
) -> BootstrapResult:
    """Circular moving-block bootstrap of per-bar strategy returns (fractions, e.g. 0.01 = +1 %).

    ``block`` defaults to ceil(sqrt(T)) (at most T // 10, see :func:`check_block`); ``confidence``
    sets the two-sided percentile intervals in ``ci``. Deterministic for a given ``seed``. Raises
    ParamError for fewer than 2 returns, non-finite returns or returns below -1, n outside
    MIN_RESAMPLES..MAX_RESAMPLES, block outside 1..T // 10, bars_per_year <= 0 or confidence outside (0, 1).
    """
    r = _check_returns(returns)
    t = len(r)
    n = check_resamples(n)
    seed = whole(seed, "seed")
    block = check_block(block, t)
    if not (isinstance(bars_per_year, (int, float, np.number)) and math.isfinite(bars_per_year) and bars_per_year > 0):
        raise ParamError(f"bars_per_year must be a positive number, got {bars_per_year!r}")
    if not 0.0 < float(confidence) < 1.0:
        raise ParamError(f"confidence must lie strictly between 0 and 1 (e.g. 0.95), got {confidence!r}")

    observed = _observed_stats(r, float(bars_per_year))
    ann = math.sqrt(float(bars_per_year))
    mean_r = float(np.mean(r))

    rng = np.random.default_rng(seed)
    n_blocks = -(-t // block)
    offsets = np.arange(block)
    samples = {k: np.empty(n) for k in STATS}
    null_sharpes = np.empty(n)
    chunk = max(1, MEMORY_BUDGET_BYTES // (_BYTES_PER_CELL * n_blocks * block))
    for lo in range(0, n, chunk):
        m = min(chunk, n - lo)
        starts = rng.integers(0, t, size=(m, n_blocks))
        idx = (starts[:, :, None] + offsets).reshape(m, n_blocks * block)[:, :t]
        idx %= t
        x = r[idx]
        del idx
        mean, std = x.mean(axis=1), x.std(axis=1, ddof=1)
        sl = slice(lo, lo + m)
        samples["sharpe"][sl] = _sharpe(mean, std) * ann
        # The null resample is the demeaned series on the same indices: x - mean(r).
        null_sharpes[sl] = _sharpe(mean - mean_r, std) * ann
        total, mdd = _compound_stats(x)
        samples["total_return"][sl] = total
        samples["max_drawdown"][sl] = mdd

    alpha = (1.0 - float(confidence)) / 2.0
    ci = {k: (float(np.quantile(v, alpha)), float(np.quantile(v, 1.0 - alpha))) for k, v in samples.items()}
    p_value = (1.0 + float(np.count_nonzero(null_sharpes >= observed["sharpe"]))) / (1.0 + n)
    return BootstrapResult(
        n=n, block=block, seed=int(seed), confidence=float(confidence), bars_per_year=float(bars_per_year),
        n_bars=t, observed=observed, samples=samples, ci=ci, p_value=p_value, null_sharpes=null_sharpes,
    )


def trade_shuffle_drawdowns(trade_returns: np.ndarray, *, n: int = DEFAULT_BOOTSTRAP,
                            seed: int = DEFAULT_SEED) -> np.ndarray:
    """Max drawdown (negative fraction) of the equity compounded from the trades in ``n`` random orders.

    ``trade_returns`` are per-trade returns as fractions of equity (0.02 = +2 %). Each
    order is a random permutation (no replacement), so every path ends at the same total
    return; only the path, hence the drawdown, changes. Deterministic for a given ``seed``.
    """
    r = _check_returns(trade_returns, what="trade returns", minimum=1)
    n = check_resamples(n)
    seed = whole(seed, "seed")
    rng = np.random.default_rng(seed)
    out = np.empty(n)
    chunk = max(1, MEMORY_BUDGET_BYTES // (_BYTES_PER_CELL * len(r)))
    for lo in range(0, n, chunk):
        m = min(chunk, n - lo)
        x = rng.permuted(np.broadcast_to(r, (m, len(r))), axis=1)
        out[lo:lo + m] = _compound_stats(x)[1]
    return out


def drawdown_quantiles(drawdowns: np.ndarray, levels: Sequence[float] = (0.5, 0.95, 0.99)) -> dict[str, float]:
    """Depth of drawdown not exceeded with each probability, e.g. ``{"q95": -0.31}``.

    For drawdowns (negative numbers), the level-q value is the (1 - q) quantile: 95 % of the
    shuffled paths had a drawdown no deeper than ``q95``.
    """
    dd = np.asarray(drawdowns, dtype=float)
    if dd.size == 0:
        raise ParamError("no drawdowns given")
    out = {}
    for q in levels:
        if not 0.0 <= q <= 1.0:
            raise ParamError(f"quantile levels must lie in [0, 1], got {q!r}")
        out[f"q{round(100 * q):g}"] = float(np.quantile(dd, 1.0 - q))
    return out


def _observed_stats(r: np.ndarray, bars_per_year: float) -> dict[str, float]:
    """The SPEC §5 metrics of the observed path.

    Total return and drawdown come from the engine's reference implementation; the Sharpe
    uses the same function as the resamples (identical to the engine's except that a
    rounding-noise std of a constant series also counts as zero), so that the p-value
    compares like with like.
    """
    equity = np.cumprod(1.0 + r)
    m = metrics_from_equity(equity, pd.DataFrame({"pnl": [], "fees": [], "bars_held": []}), 1.0, bars_per_year)
    sharpe = float(_sharpe(np.array([r.mean()]), np.array([r.std(ddof=1)]))[0]) * math.sqrt(bars_per_year)
    return {"sharpe": sharpe, "total_return": float(m["total_return"]), "max_drawdown": float(m["max_drawdown"])}


def _sharpe(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Per-period Sharpe, 0 where the standard deviation is zero (or rounding noise of a constant)."""
    ok = std > _REL_STD_FLOOR * np.abs(mean)
    ok &= std > 0
    return np.where(ok, mean / np.where(ok, std, 1.0), 0.0)


def _compound_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Total return and max drawdown of each row of returns, compounded from equity 1."""
    equity = np.cumprod(1.0 + x, axis=1)
    peak = np.maximum.accumulate(equity, axis=1)
    np.maximum(peak, 1.0, out=peak)  # the running peak starts at the initial equity
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = np.min(equity / peak, axis=1) - 1.0
    return equity[:, -1] - 1.0, np.minimum(dd, 0.0)


def _check_returns(values: np.ndarray, what: str = "returns", minimum: int = 2) -> np.ndarray:
    try:
        r = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ParamError(f"{what} must be numbers: {exc}") from None
    if r.ndim != 1:
        raise ParamError(f"{what} must be a one-dimensional array, got shape {r.shape}")
    if len(r) < minimum:
        raise ParamError(f"need at least {minimum} {what}, got {len(r)}")
    bad = ~np.isfinite(r)
    if bad.any():
        raise ParamError(f"{what} contain {int(bad.sum())} NaN or infinite values (first at position "
                         f"{int(np.argmax(bad))}): drop or fill them first")
    if (r < -1.0).any():
        raise ParamError(f"{what} below -1 (a loss of more than 100 %) cannot be compounded: "
                         f"got {float(r.min()):.4g}; pass fractional returns (0.01 = +1 %)")
    return r


