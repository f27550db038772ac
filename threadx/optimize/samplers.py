"""Samplers: which combo ids of a :class:`SearchSpace` a sweep evaluates.

- ``grid``: every valid combo, lazily in id order (refused above the grid limit);
- ``random`` (uniform), ``lhs`` (Latin hypercube), ``sobol``: ``n`` points drawn in the
  unit cube and snapped to each axis' values, duplicates and invalid combos removed,
  the same seed giving the same ids in the same order;
- ``adaptive``: :func:`refine` samples around the best combos so far with a shrinking
  neighbourhood (the runner drives the rounds).

The Monte Carlo samplers use ``scipy.stats.qmc`` and are only imported in the parent.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import numpy as np

from threadx.errors import ParamError
from threadx.optimize.space import DEFAULT_GRID_LIMIT, SearchSpace, searched_space

SAMPLERS = ("grid", "random", "lhs", "sobol", "adaptive")


@dataclass
class SampleCount:
    """What a sampler produced: ids to run and how many drawn points were dropped."""

    ids: np.ndarray
    invalid: int = 0
    duplicates: int = 0


def check_grid_size(space: SearchSpace, sampler: str = "grid", limit: int = DEFAULT_GRID_LIMIT,
                    n: int | None = None) -> None:
    """ParamError with advice when a grid sweep of ``space``, or a draw of ``n`` combos (another
    sampler), is over ``limit`` combos (the one place the limit is checked: requests, sweeps,
    the Optimisation page's count and :func:`grid_ids` call it)."""
    if sampler == "grid" and space.size > limit:
        raise ParamError(
            f"the grid has {space.size:,} combos, above the limit of {limit:,}: narrow the ranges, "
            "use larger steps, or use a Monte Carlo sampler (random, lhs, sobol) with n combos"
        )
    if sampler != "grid" and n is not None and n > limit:
        raise ParamError(f"n = {n:,} combos is above the limit of {limit:,} (the same as for grids): "
                         "draw fewer combos, or split the search into several runs")


def grid_ids(space: SearchSpace, chunk_size: int = 65_536, limit: int = DEFAULT_GRID_LIMIT,
             start: int = 0) -> Iterator[tuple[np.ndarray, int]]:
    """Valid grid ids in chunks, each with the number of invalid combos it skipped."""
    check_grid_size(space, "grid", limit)
    for ids in space.grid_chunks(chunk_size, start=start):
        mask = space.valid_mask(ids)
        yield ids[mask], int((~mask).sum())


def _unit_points(kind: str, n: int, dims: int, rng: np.random.Generator, seed: int) -> np.ndarray:
    if dims == 0:
        return np.zeros((n, 0))
    if kind == "random":
        return rng.random((n, dims))
    from scipy.stats import qmc

    if kind == "lhs":
        return qmc.LatinHypercube(d=dims, seed=rng).random(n)
    if kind == "sobol":
        m = max(0, int(np.ceil(np.log2(max(n, 1)))))  # Sobol' balance needs 2^m points
        return qmc.Sobol(d=dims, scramble=True, seed=rng).random_base2(m)[:n]
    raise ParamError(f"unknown sampler {kind!r}; use one of {', '.join(SAMPLERS)}")


def grid_size_if_whole(strategy: Any, space: Mapping[str, Any] | None, n: int) -> int | None:
    """The valid combos of ``strategy``'s ``space`` (None: its declared ranges, as a
    walk-forward takes them) when ``n`` Monte Carlo draws take its whole grid (``n`` at least
    the grid's size: :func:`monte_carlo_ids` returns the grid), else None.

    >>> from threadx.strategy import get_strategy
    >>> grid_size_if_whole(get_strategy("ma_crossover"), {"fast_period": "5:10:1"}, 100)
    6
    """
    grid = searched_space(strategy, space)
    return grid.count_valid() if _takes_whole_grid(grid, n) else None


def _takes_whole_grid(space: SearchSpace, n: int) -> bool:
    """Whether ``n`` Monte Carlo draws of ``space`` are its whole (valid) grid instead."""
    return space.size <= DEFAULT_GRID_LIMIT and n >= space.size


def monte_carlo_ids(space: SearchSpace, kind: str, n: int, seed: int = 42) -> SampleCount:
    """``n`` distinct valid combo ids drawn by ``kind`` (fewer if the space is smaller).

    Points are drawn in rounds until ``n`` distinct valid ids are found or 20 rounds
    bring nothing new; when ``n`` covers most of the valid space the grid is returned. A
    ``random`` draw of at least half a space within the grid limit picks ``n`` of its valid ids
    at once, without replacement (rounds of rejected repeats took 8.7 s for 380,000 of 397,204).
    """
    if n is None or n <= 0:
        raise ParamError(f"sampler {kind!r} needs n > 0 combos")
    rng = np.random.default_rng(seed)
    varying = [k for k, size in enumerate(space.sizes) if size > 1]
    if _takes_whole_grid(space, n):
        ids = np.concatenate([chunk for chunk, _ in grid_ids(space)] or [np.empty(0, np.int64)])
        return SampleCount(ids=ids, invalid=space.size - len(ids))
    if kind == "random" and space.size <= DEFAULT_GRID_LIMIT and 2 * n >= space.size:
        ids = np.concatenate([chunk for chunk, _ in grid_ids(space)] or [np.empty(0, np.int64)])
        return SampleCount(ids=rng.permutation(ids)[:n], invalid=space.size - len(ids))
    chosen = np.empty(0, dtype=np.int64)
    invalid = duplicates = stale = 0
    while len(chosen) < n and stale < 20:
        want = n - len(chosen)
        draw = max(want, 64) if kind == "random" else want
        points = _unit_points(kind, draw, len(varying), rng, seed)
        idx = np.zeros((draw, len(space.sizes)), dtype=np.int64)
        for col, k in enumerate(varying):
            idx[:, k] = np.minimum((points[:, col] * space.sizes[k]).astype(np.int64), space.sizes[k] - 1)
        del points
        ids = space.ids_from_indices(idx)
        del idx
        mask = space.valid_mask(ids)
        invalid += int((~mask).sum())
        merged = np.concatenate([chosen, ids[mask]])
        _, first = np.unique(merged, return_index=True)  # keep the first draw of each id, in draw order
        unique = merged[np.sort(first)]
        duplicates += len(merged) - len(unique)
        stale = stale + 1 if len(unique) == len(chosen) else 0
        chosen = unique[:n]
    return SampleCount(ids=chosen, invalid=invalid, duplicates=duplicates)


def refine(space: SearchSpace, best_ids: np.ndarray, n: int, radius: float, seed: int,
           exclude: set[int]) -> np.ndarray:
    """Up to ``n`` new valid ids within ``radius`` (a fraction of each axis' length, at
    least one step) around ``best_ids``, none of them in ``exclude``."""
    rng = np.random.default_rng(seed)
    centres = space.value_indices(np.asarray(best_ids, dtype=np.int64))
    reach = np.maximum(1, np.ceil(radius * (space.sizes - 1))).astype(np.int64)
    out: dict[int, None] = {}
    for _ in range(20):
        if len(out) >= n or len(centres) == 0:
            break
        pick = centres[rng.integers(0, len(centres), size=2 * n)]
        offsets = rng.integers(-reach, reach + 1, size=pick.shape)
        idx = np.clip(pick + offsets, 0, space.sizes - 1)
        ids = space.ids_from_indices(idx)
        ids = ids[space.valid_mask(ids)]
        for combo_id in ids.tolist():
            if combo_id not in exclude and combo_id not in out:
                out[combo_id] = None
                if len(out) >= n:
                    break
    return np.fromiter(out, dtype=np.int64, count=len(out))
