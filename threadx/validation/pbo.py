"""Probability of backtest overfitting by CSCV (Bailey, Borwein, López de Prado & Zhu 2015).

Combinatorially symmetric cross-validation over a sweep's N combos:

1. the bars are cut into S contiguous groups (S even);
2. for each of the C(S, S/2) ways to pick S/2 groups as the in-sample (IS) half, the
   complement being the out-of-sample (OOS) half, compute every combo's per-bar Sharpe on
   the IS union and on the OOS union;
3. take the IS winner n* (the first index on ties), its OOS relative rank
   omega = rank / (N + 1) (rank 1..N ascending among the OOS Sharpes, ties averaged) and
   the logit lambda = ln(omega / (1 - omega));
4. PBO = share of splits with lambda <= 0, the paper's phi = sum chi_(-inf, 0](lambda) / #splits:
   a logit of exactly 0 (the IS winner lands on the OOS median) counts as overfit, as in
   the paper and pypbo. PBO ~ 0 when the IS winner stays above the OOS median, ~ 0.5 for
   pure noise (selection carries no information), > 0.5 when selection is harmful.

Everything is computed from per-combo sums of per-bar returns and of their squares over
B >= S fine time blocks (what the sweep stores), grouped into S groups: mean = sum s /
sum n, var = (sum q - sum s * mean) / (sum n - 1), exactly the ddof-1 Sharpe of the
concatenated bars. Splits are processed in batches sized to a memory budget, with one
matrix product per batch, so N = 5000 combos and S = 16 (12,870 splits) takes seconds.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from threadx.config import DEFAULT_SEED
from threadx.errors import ParamError, whole

# Working set of one batch of splits: about 10 float64 arrays of (batch, N).
MEMORY_BUDGET_BYTES = 160_000_000
_ARRAYS_PER_BATCH = 10
# The variance numerator sum q - sum s * mean below this fraction of sum q is cancellation
# noise (a constant return series): Sharpe 0, as for zero variance.
_REL_VAR_FLOOR = 1e-12


@dataclass(frozen=True)
class PBOResult:
    """CSCV outcome: PBO, the logits and the selected combo's IS/OOS Sharpe per split (per bar).
    ``best_index`` (each split's IS winner) and ``combo_indices`` (the combos used) are rows of
    the input of :func:`pbo_from_moments` / :func:`pbo_from_returns`, and combo ids in the result
    of ``threadx.pbo(run)`` and of a sweep's validation report."""

    pbo: float
    logits: np.ndarray
    S: int
    n_splits: int
    n_combos: int
    n_combos_total: int
    is_sharpe_best: np.ndarray
    oos_sharpe_best: np.ndarray
    best_index: np.ndarray
    prob_oos_loss: float
    degradation_slope: float
    degradation_intercept: float
    combo_indices: np.ndarray
    n_invalid: int
    note: str

    @property
    def subset(self) -> bool:
        """True when only a random subset of the valid combos was used (the memory bound)."""
        return self.n_combos < self.n_combos_total - self.n_invalid

    def to_dict(self, include_arrays: bool = True) -> dict[str, Any]:
        """JSON-safe plain values (floats, ints, lists); NaN stays a float."""
        out: dict[str, Any] = {
            "pbo": float(self.pbo),
            "S": int(self.S),
            "n_splits": int(self.n_splits),
            "n_combos": int(self.n_combos),
            "n_combos_total": int(self.n_combos_total),
            "n_invalid": int(self.n_invalid),
            "subset": bool(self.subset),
            "prob_oos_loss": float(self.prob_oos_loss),
            "degradation_slope": float(self.degradation_slope),
            "degradation_intercept": float(self.degradation_intercept),
            "note": self.note,
        }
        if include_arrays:
            out["logits"] = self.logits.astype(float).tolist()
            out["is_sharpe_best"] = self.is_sharpe_best.astype(float).tolist()
            out["oos_sharpe_best"] = self.oos_sharpe_best.astype(float).tolist()
            out["best_index"] = self.best_index.astype(int).tolist()
            out["combo_indices"] = self.combo_indices.astype(int).tolist()
        return out


def pbo_from_moments(
    sums: np.ndarray,
    sumsq: np.ndarray,
    counts: np.ndarray,
    *,
    S: int = 16,
    max_combos: int = 5000,
    keep: Sequence[int] = (),
    seed: int = DEFAULT_SEED,
) -> PBOResult:
    """PBO from per-combo, per-block sums of per-bar returns (``sums``, shape (N, B)),
    of their squares (``sumsq``, (N, B)) and the bar count of each block (``counts``, (B,)).

    The B fine blocks (in time order) are grouped into S contiguous near-equal groups
    (``np.array_split`` of the block indices); S must be even with 2 <= S <= B. Combos with
    any non-finite moment (a failed evaluation) are left out and counted in ``n_invalid``.
    When more than ``max_combos`` valid combos remain, a random subset of ``max_combos``
    (seeded) is used that always contains the combo indices in ``keep`` (e.g. the sweep
    winner); ``n_combos`` vs ``n_combos_total`` and ``note`` say so. ``best_index`` and
    ``combo_indices`` refer to rows of the input.
    """
    s = np.asarray(sums, dtype=np.float64)
    q = np.asarray(sumsq, dtype=np.float64)
    c = np.asarray(counts, dtype=np.float64)
    if s.ndim != 2 or q.shape != s.shape:
        raise ParamError(f"sums and sumsq must both have shape (N combos, B blocks), got {s.shape} and {q.shape}")
    n_total, n_blocks = s.shape
    if c.shape != (n_blocks,):
        raise ParamError(f"counts must have one bar count per block ({n_blocks}), got shape {c.shape}")
    if not np.isfinite(c).all() or (c < 0).any() or (c != np.round(c)).any():
        raise ParamError("counts must be whole numbers of bars >= 0")
    S = _check_S(S, n_blocks)
    max_combos, seed = whole(max_combos, "max_combos", 2), whole(seed, "seed")
    keep_idx = np.unique(np.asarray(list(keep), dtype=np.int64))
    if keep_idx.size and (keep_idx.min() < 0 or keep_idx.max() >= n_total):
        raise ParamError(f"keep indices must lie in 0..{n_total - 1}, got {keep_idx.tolist()}")
    if keep_idx.size > max_combos:
        raise ParamError(f"{keep_idx.size} combos to keep exceed max_combos={max_combos}")

    with np.errstate(invalid="ignore", divide="ignore"):  # sums of squares below sum**2 / bars are impossible
        floor = np.where(c > 0, s * s / np.where(c > 0, c, 1.0), 0.0)
        # (1e-5: stored moments are float32, ~6e-8 relative each; a real block's gap is 0 or far larger)
        impossible = ((q < floor * (1.0 - 1e-5)) | ((c == 0) & ((s != 0.0) | (q != 0.0)))) & np.isfinite(s + q)
    if impossible.any():
        rows = np.flatnonzero(impossible.any(axis=1))
        raise ParamError(f"{rows.size} combos have impossible block moments (a sum of squares below the square of "
                         f"the sum over the block's bars, or returns in a block of 0 bars), first rows "
                         f"{rows[:5].tolist()}: these are not sums of per-bar returns and their squares")
    valid = np.isfinite(s).all(axis=1) & np.isfinite(q).all(axis=1)
    bad_keep = keep_idx[~valid[keep_idx]]
    if bad_keep.size:
        raise ParamError(f"combos {bad_keep.tolist()} to keep have NaN or infinite moments (failed evaluations)")
    candidates = np.flatnonzero(valid)
    n_invalid = n_total - candidates.size
    if candidates.size < 2:
        raise ParamError(f"PBO needs at least 2 combos with finite moments, got {candidates.size}")
    notes = []
    if n_invalid:
        notes.append(f"{n_invalid} combos with NaN/inf moments left out")
    if candidates.size > max_combos:
        rest = np.setdiff1d(candidates, keep_idx, assume_unique=True)
        rng = np.random.default_rng(seed)
        drawn = rng.choice(rest, size=max_combos - keep_idx.size, replace=False)
        idx = np.sort(np.concatenate([keep_idx, drawn]))
        notes.append(f"random subset of {max_combos} of {candidates.size} combos (seed {seed}"
                     + (f", keeping {keep_idx.tolist()}" if keep_idx.size else "") + ")")
    else:
        idx = candidates
    n = idx.size

    # Moments per group of blocks: (N, S) and (S,).
    starts = np.array([g[0] for g in block_groups(n_blocks, S)])
    gs = np.add.reduceat(s[idx], starts, axis=1)
    gq = np.add.reduceat(q[idx], starts, axis=1)
    gn = np.add.reduceat(c, starts)
    if (gn < 2).any():  # (a one-bar half has no Sharpe: every split tied at 0 and read PBO 1.00)
        raise ParamError(f"every one of the S={S} groups needs at least 2 bars (a Sharpe needs two returns); bar "
                         f"counts per group: {gn.astype(int).tolist()}: use a smaller S or a longer period")
    if not (np.ptp(s[idx], axis=0).any() or np.ptp(q[idx], axis=0).any()):
        # (every split's ranks tie at the median: it read PBO 1.00, "certainly overfit", beside no loss)
        raise ParamError(f"all {n:,} combos gave the same returns in every block: none was selected over another, "
                         "so there is no overfitting to measure")
    tot_s, tot_q, tot_n = gs.sum(axis=1), gq.sum(axis=1), gn.sum()

    masks = _split_masks(S)
    n_splits = masks.shape[0]
    logits = np.empty(n_splits)
    is_best = np.empty(n_splits)
    oos_best = np.empty(n_splits)
    best = np.empty(n_splits, dtype=np.int64)
    batch = max(1, MEMORY_BUDGET_BYTES // (_ARRAYS_PER_BATCH * 8 * n))
    gs_t, gq_t = np.ascontiguousarray(gs.T), np.ascontiguousarray(gq.T)
    for lo in range(0, n_splits, batch):
        m = masks[lo:lo + batch]
        rows = np.arange(m.shape[0])
        is_s, is_q, is_n = m @ gs_t, m @ gq_t, m @ gn
        is_sh = _sharpe_from_moments(is_s, is_q, is_n[:, None])
        oos_sh = _sharpe_from_moments(tot_s - is_s, tot_q - is_q, (tot_n - is_n)[:, None])
        del is_s, is_q
        b = np.argmax(is_sh, axis=1)
        sel = oos_sh[rows, b]
        below = np.count_nonzero(oos_sh < sel[:, None], axis=1)
        equal = np.count_nonzero(oos_sh == sel[:, None], axis=1)
        omega = (below + (equal + 1) / 2.0) / (n + 1.0)
        sl = slice(lo, lo + m.shape[0])
        logits[sl] = np.log(omega / (1.0 - omega))
        is_best[sl] = is_sh[rows, b]
        oos_best[sl] = sel
        best[sl] = idx[b]

    slope, intercept = _ols(is_best, oos_best)
    return PBOResult(
        pbo=float(np.mean(logits <= 0.0)), logits=logits, S=S, n_splits=n_splits, n_combos=n,
        n_combos_total=n_total, is_sharpe_best=is_best, oos_sharpe_best=oos_best, best_index=best,
        prob_oos_loss=float(np.mean(oos_best < 0.0)), degradation_slope=slope, degradation_intercept=intercept,
        combo_indices=idx, n_invalid=int(n_invalid), note="; ".join(notes),
    )


def pbo_from_returns(returns: np.ndarray, *, S: int = 16, n_blocks: int | None = None, **kw: Any) -> PBOResult:
    """PBO of a (T bars, N combos) matrix of per-bar returns.

    The bars are cut into ``n_blocks`` (default S) near-equal contiguous blocks, summed to
    moments and passed to :func:`pbo_from_moments` with the other keywords (max_combos,
    keep, seed). NaN or infinite returns are refused.
    """
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 2:
        raise ParamError(f"returns must be a (T bars, N combos) matrix, got shape {r.shape}")
    if not np.isfinite(r).all():
        raise ParamError("returns contain NaN or infinite values: drop or fill them first")
    t = r.shape[0]
    b = S if n_blocks is None else n_blocks
    b = whole(b, "n_blocks", 1, t)
    starts = np.array([g[0] for g in np.array_split(np.arange(t), int(b))])
    sums = np.add.reduceat(r, starts, axis=0).T
    sumsq = np.add.reduceat(r * r, starts, axis=0).T
    counts = np.diff(np.append(starts, t))
    return pbo_from_moments(sums, sumsq, counts, S=S, **kw)


MAX_SPLITS = 2_000_000  # CSCV splits C(S, S/2) a PBO may compute
MAX_S = max(s for s in range(2, 64, 2) if math.comb(s, s // 2) <= MAX_SPLITS)  # 22


def block_groups(n_blocks: int, S: int) -> list[np.ndarray]:
    """The stored blocks (indices) CSCV joins into each of its ``S`` groups: near-equal runs of
    consecutive blocks. A sweep report's periods (its consistency, its regimes) are these too."""
    return np.array_split(np.arange(n_blocks), S)


def check_S(S: Any) -> int:
    """The number of CSCV groups ``S`` as an int: an even whole number >= 2 whose splits stay
    countable (ParamError otherwise); checked before any work by every caller."""
    if isinstance(S, bool) or not isinstance(S, (int, np.integer)):
        raise ParamError(f"S must be an even whole number, got {S!r}")
    if S < 2 or S % 2:
        raise ParamError(f"S must be an even number >= 2 (the paper suggests 16), got {S}")
    if S > MAX_S:  # (compared first: C(S, S/2) of a huge S took minutes, and had too many digits to print)
        splits = f"{math.comb(int(S), int(S) // 2):,}" if S <= 64 else "more than 10^18"
        raise ParamError(f"S={S} gives {splits} splits (at most {MAX_SPLITS:,}): use S <= {MAX_S}")
    return int(S)


def _check_S(S: Any, n_blocks: int) -> int:
    S = check_S(S)
    if S > n_blocks:
        raise ParamError(f"S={S} groups need at least {S} time blocks, only {n_blocks} given: lower S")
    return S


def _split_masks(S: int) -> np.ndarray:
    """(C(S, S/2), S) 0/1 matrix: row k marks the groups of the k-th in-sample half."""
    combos = np.array(list(itertools.combinations(range(S), S // 2)), dtype=np.int64)
    masks = np.zeros((len(combos), S))
    masks[np.arange(len(combos))[:, None], combos] = 1.0
    return masks


def _sharpe_from_moments(s: np.ndarray, q: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Per-bar Sharpe (ddof 1) from sums of returns and squares over n bars; 0 for zero variance."""
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = s / n
        num = q - s * mean
        ok = (num > _REL_VAR_FLOOR * q) & (n > 1)
        return np.where(ok, mean / np.sqrt(np.where(ok, num, 1.0) / np.where(n > 1, n - 1.0, 1.0)), 0.0)


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Slope and intercept of y on x; NaN slope when x does not vary."""
    dx = x - x.mean()
    sxx = float(dx @ dx)
    if sxx <= 0.0:
        return math.nan, float(y.mean())
    slope = float(dx @ (y - y.mean())) / sxx
    return slope, float(y.mean() - slope * x.mean())
