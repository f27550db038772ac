"""OHLCV and indicator arrays packed once into one ``multiprocessing.shared_memory`` block.

The parent finds every distinct indicator request of a search space, computes them
through the IndicatorBank batch path, stores each distinct array once (identical lines,
such as the Bollinger middle band of every ``std`` of one period, are kept once) and
hands workers a small picklable :class:`PackLayout`. Workers attach read-only views:
no array is pickled per task. The block is named after the run and its owner process
(:mod:`threadx.optimize.shm`), so that a later sweep can reclaim it if the owner is killed
with its whole process group.
"""
from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from threadx.data.bars import OHLCV_COLUMNS, Bars
from threadx.errors import ParamError
from threadx.indicators.registry import canonical_params
from threadx.optimize.shm import create_segment
from threadx.optimize.space import SearchSpace

Request = tuple[str, str]  # (indicator name, canonical params JSON)
_PROBE_LIMIT = 200_000


def indicator_requests(space: SearchSpace, ids: Iterable[np.ndarray] | None = None) -> dict[Request, dict]:
    """The distinct (indicator, params) the combos of ``space`` (or of ``ids``) need.

    Axes that change the indicator needs when varied alone are found by probing; the
    needs of every combination of those axes (others at their first value) are then
    collected, over the whole grid or over the given ids. A need that depends on an
    interaction this misses, or a grid too large to enumerate, is not an error: the
    workers compute what was not prepared (:class:`PreparedIndicators`).
    """
    spec = space.strategy
    base = {a.name: a.values[0] for a in space.axes}

    def needs_of(params: Mapping[str, Any]) -> list[tuple[str, dict]]:
        try:
            return list(spec.indicators(params).values())
        except (ParamError, KeyError, ValueError):
            return []

    relevant = []
    for axis in space.axes:
        if len(axis) > 1:
            reference = needs_of(base)
            if any(needs_of({**base, axis.name: v}) != reference for v in axis.values[1:]):
                relevant.append(axis)
    product = int(np.prod([len(a) for a in relevant], dtype=np.float64)) if relevant else 1
    out: dict[Request, dict] = {}
    seen: set[tuple] = set()  # raw (name, params) already handled: canonical JSON is costly

    def add(params: Mapping[str, Any]) -> None:
        for name, ind_params in needs_of(params):
            raw = (name, tuple(sorted(ind_params.items())))
            if raw in seen:
                continue
            seen.add(raw)
            try:
                key = (name, canonical_params(name, ind_params))
            except ParamError:
                continue
            out.setdefault(key, ind_params)

    if ids is None and product <= _PROBE_LIMIT:
        for values in itertools.product(*(a.values for a in relevant)):
            add({**base, **dict(zip((a.name for a in relevant), values))})
    elif ids is not None:
        # the combos themselves (a Monte Carlo plan): only their relevant params matter
        positions = [space.names.index(a.name) for a in relevant]
        for chunk in ids:
            idx = space.value_indices(chunk)[:, positions] if positions else np.zeros((1, 0), np.int64)
            for row in np.unique(idx, axis=0):
                add({**base, **{a.name: a.values[int(k)] for a, k in zip(relevant, row)}})
    return out


@dataclass(frozen=True)
class PackLayout:
    """Where each array lives in the shared block (offsets in float64 elements)."""

    shm_name: str
    total: int
    n_bars: int
    timeframe: str | None
    ohlcv: dict[str, int]
    time_offset: int
    indicators: dict[Request, dict[str, int]] = field(default_factory=dict)


class SharedPack:
    """Owner (parent) or reader (worker) of one shared block."""

    def __init__(self, shm: shared_memory.SharedMemory, layout: PackLayout, owner: bool):
        self.shm = shm
        self.layout = layout
        self.owner = owner
        self._buf = np.ndarray((layout.total,), dtype=np.float64, buffer=shm.buf)

    @classmethod
    def create(cls, bars: Bars, arrays: Mapping[Request, Mapping[str, np.ndarray]],
               run_id: str = "sweep") -> "SharedPack":
        """Copy bars and indicator outputs into a new block named for ``run_id`` and this
        process (identical arrays stored once)."""
        n = len(bars)
        slots: list[np.ndarray] = []
        by_digest: dict[bytes, int] = {}

        def place(arr: np.ndarray) -> int:
            data = np.ascontiguousarray(arr, dtype=np.float64)
            digest = hashlib.blake2b(data.tobytes(), digest_size=16).digest()
            if digest not in by_digest:
                by_digest[digest] = len(slots) * n
                slots.append(data)
            return by_digest[digest]

        ohlcv = {c: place(getattr(bars, c)) for c in OHLCV_COLUMNS}
        time_offset = place(bars.time_ns.view(np.float64))
        indicators = {key: {out: place(arr) for out, arr in outputs.items()} for key, outputs in arrays.items()}
        total = max(1, len(slots) * n)
        shm = create_segment(run_id, total * 8)
        layout = PackLayout(shm.name, total, n, bars.timeframe, ohlcv, time_offset, indicators)
        pack = cls(shm, layout, owner=True)
        for k, data in enumerate(slots):
            pack._buf[k * n:(k + 1) * n] = data
        return pack

    @classmethod
    def attach(cls, layout: PackLayout) -> "SharedPack":
        """Attach to the parent's block (worker side)."""
        # Pool workers share the parent's resource tracker, so the segment stays registered
        # once: the parent unlinks it, and if the parent is killed the tracker does; if the
        # tracker is killed too (the whole group), the next sweep does (shm.reclaim).
        shm = shared_memory.SharedMemory(name=layout.shm_name)
        return cls(shm, layout, owner=False)

    def view(self, offset: int) -> np.ndarray:
        out = self._buf[offset:offset + self.layout.n_bars]
        out.flags.writeable = False
        return out

    def bars(self) -> Bars:
        """Read-only Bars over the shared OHLCV."""
        lay = self.layout
        cols = {c: self.view(off) for c, off in lay.ohlcv.items()}
        time_ns = self.view(lay.time_offset).view(np.int64)
        return Bars(time_ns=time_ns, timeframe=lay.timeframe, **cols)

    def indicator_source(self) -> "PreparedIndicators":
        """Indicator source over the block's arrays."""
        def lookup(key: Request) -> dict[str, np.ndarray] | None:
            offsets = self.layout.indicators.get(key)
            return None if offsets is None else {out: self.view(off) for out, off in offsets.items()}

        return PreparedIndicators(lookup)

    @property
    def nbytes(self) -> int:
        return self.layout.total * 8

    def close(self) -> None:
        """Detach; the owner also unlinks the block (idempotent)."""
        self._buf = None  # type: ignore[assignment]
        try:
            self.shm.close()
        except BufferError:
            pass
        if self.owner:
            try:
                self.shm.unlink()
            except FileNotFoundError:
                pass


class PreparedIndicators:
    """Stands in for the IndicatorBank in sweeps: serves the arrays prepared by the parent,
    computes (and keeps) any other one locally, e.g. for combos of an adaptive round."""

    def __init__(self, lookup: Callable[[Request], dict[str, np.ndarray] | None]):
        self._lookup = lookup
        self._memo: dict[tuple, dict[str, np.ndarray]] = {}  # keyed by the raw params
        self._local = None

    def ensure(self, data: Any, name: str, params: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
        raw = (name, tuple(sorted((params or {}).items())))
        found = self._memo.get(raw)
        if found is None:
            found = self._lookup((name, canonical_params(name, params)))
            if found is None:
                if self._local is None:
                    from threadx.indicators.bank import IndicatorBank

                    self._local = IndicatorBank(disk=False)
                found = self._local.ensure(data, name, params)
            self._memo[raw] = found
        return found


def compute_indicators(space: SearchSpace, bars: Bars, bank: Any,
                       ids: Iterable[np.ndarray] | None = None) -> dict[Request, dict[str, np.ndarray]]:
    """Every distinct indicator of the combos (of ``ids``, or of the whole space), computed
    once through the bank's batch path."""
    by_name: dict[str, list] = {}
    for (name, key), params in indicator_requests(space, ids).items():
        by_name.setdefault(name, []).append((key, params))
    arrays: dict[Request, dict[str, np.ndarray]] = {}
    for name, items in by_name.items():
        for (key, _), out in zip(items, bank.ensure_many(bars, name, [p for _, p in items])):
            arrays[(name, key)] = out
    return arrays
