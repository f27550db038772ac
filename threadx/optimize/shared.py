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

import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from threadx.contract import checked_needs, indicator_needs
from threadx.data.bars import OHLCV_COLUMNS, Bars
from threadx.errors import ParamError
from threadx.indicators.registry import canonical_params
from threadx.optimize.shm import create_segment
from threadx.optimize.space import SearchSpace

Request = tuple[str, str]  # (indicator name, canonical params JSON)
_PROBE_LIMIT = 200_000
_SAMPLE_STRIDE = 64  # elements between two of an array's sampled for its dedupe key
_COPY_THREADS = max(1, min(4, os.cpu_count() or 1))  # threads filling a large shared block
_COPY_BYTES_PER_THREAD = 8 * 2**20  # ... each copying at least this much


def request_key(name: str, params: Mapping[str, Any] | None) -> tuple:
    """An indicator request as it comes (name, raw params sorted): a cheap memo key, before
    the registry's canonical form (``canonical_params``) is worked out."""
    return name, tuple(sorted((params or {}).items()))


def request_key_as_given(name: str, params: Mapping[str, Any] | None) -> tuple:
    """:func:`request_key` without the sort, for memos per strategy: a strategy builds its
    requests in one order, and another order of the same params only misses the memo."""
    return name, tuple(params.items()) if params else ()


def _needs_of(space: SearchSpace, params: Mapping[str, Any], label: str | None = None) -> list[tuple[str, dict]]:
    """(indicator, params) needs of one combo as a sweep computes it (display-only params at
    their defaults, see ``StrategySpec.results_params``; ``label``: only that one); none for a
    combo the strategy refuses."""
    try:
        needs = indicator_needs(space.strategy, space.strategy.results_params(params))
    except (ParamError, KeyError, ValueError):
        return []
    return list(needs.values()) if label is None else [needs[label]] if label in needs else []


def indicator_axes(space: SearchSpace) -> list[int]:
    """Positions of the varied axes whose params feed indicators (their declared roles)."""
    feeding = set(space.strategy.params_feeding("indicators"))
    return [k for k, axis in enumerate(space.axes) if len(axis) > 1 and axis.name in feeding]


class _Collector:
    """Distinct requests of the combos added, canonicalised once per raw (name, params)."""

    def __init__(self, space: SearchSpace):
        self.space = space
        self.out: dict[Request, dict] = {}
        self._keys: dict[tuple, Request | None] = {}  # raw (name, params): canonical JSON is costly

    def add(self, params: Mapping[str, Any]) -> set[Request]:
        """Record the needs of one combo; returns their request keys."""
        return self._record(_needs_of(self.space, params))

    def add_rows(self, base: Mapping[str, Any], names: list[str], rows: Iterable[tuple],
                 label: str | None = None) -> None:
        """:meth:`add` of ``{**base, **dict(zip(names, values))}`` for each ``values`` of ``rows``
        (``label``: only the request of that label).

        When no name is a display-only param, ``results_params`` of such a combo is that of
        ``base`` with the same values set (it only resets display-only params, and ``base``
        holds every name): it is worked out once, not per combo."""
        spec = self.space.strategy
        effective = set(spec.effective_names)
        if not set(names) <= effective or not set(names) <= set(base) or label is not None and not names:
            for values in rows:
                self._record(_needs_of(self.space, {**base, **dict(zip(names, values))}, label))
            return
        try:
            fixed = dict(spec.results_params(base))
        except (ParamError, KeyError, ValueError):
            for values in rows:
                self._record(_needs_of(self.space, {**base, **dict(zip(names, values))}, label))
            return
        indicators, out = spec.indicators, self.out
        given: dict[tuple, Request | None] = {}  # (request_key_as_given: no sort per request)
        for values in rows:
            params = fixed.copy()
            params.update(zip(names, values))
            try:
                needs = checked_needs(spec, indicators(params))
                needs = needs.values() if label is None else [needs[label]] if label in needs else []
            except (ParamError, KeyError, ValueError):  # as _needs_of: a combo the strategy refuses
                continue
            for name, ind_params in needs:  # as _record, without the keys of each combo
                raw = request_key_as_given(name, ind_params)
                try:
                    key = given[raw]
                except KeyError:
                    key = given[raw] = self._canonical(name, ind_params)
                if key is not None and key not in out:
                    out[key] = ind_params

    def _canonical(self, name: str, ind_params: Mapping[str, Any] | None) -> Request | None:
        """The request key of one need (None for params the registry refuses), worked out once."""
        raw = request_key(name, ind_params)
        if raw not in self._keys:
            try:
                self._keys[raw] = (name, canonical_params(name, ind_params))
            except ParamError:
                self._keys[raw] = None
        return self._keys[raw]

    def _record(self, needs: list[tuple[str, dict]]) -> set[Request]:
        keys = set()
        for name, ind_params in needs:
            key = self._canonical(name, ind_params)
            if key is not None:
                keys.add(key)
                self.out.setdefault(key, ind_params)
        return keys


def indicator_requests(space: SearchSpace, ids: Iterable[np.ndarray] | None = None) -> dict[Request, dict]:
    """The distinct (indicator, params) the combos of ``space`` (or of ``ids``) need.

    The axes whose params feed indicators (declared roles) decide the needs: those of every
    combination of them (others at their first value) are collected, over the whole grid
    or over the given ids. A grid too large to enumerate is not an error: the workers
    compute what was not prepared (:class:`PreparedIndicators`).
    """
    positions = indicator_axes(space)
    relevant = [space.axes[k] for k in positions]
    base = space.params(0)
    product = int(np.prod([len(a) for a in relevant], dtype=np.float64)) if relevant else 1
    collect = _Collector(space)
    labelled = _label_axes(space, positions)
    if ids is None and labelled is not None:
        for label, axes in labelled.items():  # each label over the values of the params feeding it
            collect.add_rows(base, [space.axes[k].name for k in axes],
                             itertools.product(*(space.axes[k].values for k in axes)), label)
    elif ids is None and product <= _PROBE_LIMIT:
        collect.add_rows(base, [a.name for a in relevant], itertools.product(*(a.values for a in relevant)))
    elif ids is not None:
        for chunk in ids:  # the combos themselves (a Monte Carlo plan): only their relevant params matter
            for row in indicator_groups(space, chunk, positions)[1]:
                collect.add(row)
    return collect.out


def _label_axes(space: SearchSpace, positions: list[int]) -> dict[str, list[int]] | None:
    """{indicator label: the ``positions`` feeding it} when every param at ``positions``
    declares its labels (``Param.indicator_labels``), with every label the strategy can
    request (those of the first combo and those declared); None otherwise."""
    spec = space.strategy
    params = [spec.param(space.axes[k].name) for k in positions]
    if any(p.indicator_labels is None for p in params):
        return None
    try:
        labels = set(indicator_needs(spec, spec.results_params(space.params(0))))
    except (ParamError, KeyError, ValueError):
        return None
    labels |= {label for p in params for label in p.indicator_labels}
    return {label: [k for k, p in zip(positions, params) if p.feeds_label(label)] for label in sorted(labels)}


def indicator_groups(space: SearchSpace, ids: np.ndarray,
                     axes: list[int] | None = None) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """(group of each id, params of each group): combos of one group share their values on
    the indicator axes (``indicator_axes``), so they need the same indicators. Groups are
    numbered in the order of those values (mixed radix, first axis most significant)."""
    axes = indicator_axes(space) if axes is None else axes
    idx = space.value_indices(np.asarray(ids, dtype=np.int64))[:, axes]
    codes = group_codes(space, ids, axes, idx)
    _, first = np.unique(codes, return_index=True)
    base = space.params(0)
    rows = [{**base, **{space.axes[a].name: space.axes[a].values[int(v)] for a, v in zip(axes, idx[i])}}
            for i in first]
    return codes, rows


def group_codes(space: SearchSpace, ids: np.ndarray, axes: list[int], idx: np.ndarray | None = None) -> np.ndarray:
    """Group code of each id: its value positions on ``axes`` as one mixed-radix number."""
    if idx is None:
        idx = space.value_indices(np.asarray(ids, dtype=np.int64))[:, axes]
    radix = np.ones(len(axes), dtype=np.int64)
    for k in range(len(axes) - 2, -1, -1):
        radix[k] = radix[k + 1] * space.sizes[axes[k + 1]]
    return (idx * radix[None, :]).sum(axis=1) if axes else np.zeros(len(idx), dtype=np.int64)


def group_requests(space: SearchSpace, ids: np.ndarray) -> tuple[list[set[Request]], dict[Request, dict]]:
    """(the requests of each group of ``ids``, in group code order; every request with its
    params): see :func:`indicator_groups`."""
    collect = _Collector(space)
    needs = [collect.add(row) for row in indicator_groups(space, ids)[1]]
    return needs, collect.out


def _sample_key(bits: np.ndarray) -> int:
    """A cheap key of an array's bits (its length and every 64th element): equal arrays
    share it; arrays sharing it are then compared whole (see ``SharedPack.create``)."""
    return hash((len(bits), bits[::_SAMPLE_STRIDE].tobytes()))


def _fill(buf: np.ndarray, slots: list[np.ndarray], n: int) -> None:
    """Copy ``slots`` end to end into ``buf`` (a fresh shared block): a large block in a few
    threads, as most of the time goes to the first touch of its pages, which the kernel
    serves in parallel (numpy copies without the GIL)."""
    threads = min(_COPY_THREADS, len(slots), buf.nbytes // _COPY_BYTES_PER_THREAD)

    def part(lo: int, hi: int) -> None:
        for k in range(lo, hi):
            buf[k * n:(k + 1) * n] = slots[k]

    if threads < 2:
        part(0, len(slots))
        return
    bounds = np.linspace(0, len(slots), threads + 1).astype(int).tolist()
    with ThreadPoolExecutor(threads, thread_name_prefix="threadx-pack") as pool:
        list(pool.map(part, bounds[:-1], bounds[1:]))


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
    nan_offset: int = -1  # an all-NaN line (a SignalRule's line of a label a combo does not request)


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
        by_sample: dict[int, list[int]] = {}  # sample key -> slots holding arrays with that key

        def place(arr: np.ndarray) -> int:
            data = np.ascontiguousarray(arr, dtype=np.float64)
            bits = data.view(np.uint64)  # compared bit for bit: NaN equals NaN, -0.0 is not 0.0
            same_key = by_sample.setdefault(_sample_key(bits), [])
            for k in same_key:
                if np.array_equal(slots[k].view(np.uint64), bits):
                    return k * n
            same_key.append(len(slots))
            slots.append(data)
            return (len(slots) - 1) * n

        ohlcv = {c: place(getattr(bars, c)) for c in OHLCV_COLUMNS}
        time_offset = place(bars.time_ns.view(np.float64))
        indicators = {key: {out: place(arr) for out, arr in outputs.items()} for key, outputs in arrays.items()}
        nan_offset = place(np.full(n, np.nan))
        total = max(1, len(slots) * n)
        shm = create_segment(run_id, total * 8)
        pack = cls(shm, PackLayout(shm.name, total, n, bars.timeframe, ohlcv, time_offset, indicators, nan_offset),
                   owner=True)
        try:
            _fill(pack._buf, slots, n)
        except BaseException:  # Ctrl-C or a full /dev/shm while copying: the caller never gets the block
            pack.close()
            raise
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

        lines = PackLines(self._buf, self.layout.n_bars, self.layout.nan_offset) if self.layout.n_bars else None
        return PreparedIndicators(lookup, lines)

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


class PackLines:
    """A shared block as a matrix of lines (each slot is one row of ``n_bars`` float64), so
    that a SignalRule reads a sweep's indicator lines where they are, with no copy."""

    def __init__(self, buf: np.ndarray, n_bars: int, nan_offset: int):
        self.matrix = buf[:len(buf) // n_bars * n_bars].reshape(-1, n_bars)
        self.matrix.flags.writeable = False
        self.nan_row = nan_offset // n_bars if nan_offset >= 0 else -1
        self._start = self.matrix.__array_interface__["data"][0]
        self._row_bytes = 8 * n_bars

    def row_of(self, line: np.ndarray) -> int:
        """Row of the matrix that ``line`` is a view of; -1 when it is not one."""
        if not (isinstance(line, np.ndarray) and line.dtype == np.float64 and line.shape == self.matrix.shape[1:]):
            return -1
        offset = line.__array_interface__["data"][0] - self._start
        row, rest = divmod(offset, self._row_bytes)
        return row if rest == 0 and 0 <= row < len(self.matrix) and line.strides == (8,) else -1


class PreparedIndicators:
    """Stands in for the IndicatorBank in sweeps: serves the arrays prepared by the parent,
    computes (and keeps) any other one locally, e.g. for combos of an adaptive round.
    ``lines``: the block's arrays as a matrix (:class:`PackLines`), when they come from one."""

    def __init__(self, lookup: Callable[[Request], dict[str, np.ndarray] | None], lines: PackLines | None = None):
        self.lines = lines
        self._lookup = lookup
        self._memo: dict[tuple, dict[str, np.ndarray]] = {}  # keyed by the raw params
        self._local = None
        self._making = threading.Lock()  # the threads of an inline sweep share this source

    def ensure(self, data: Any, name: str, params: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
        raw = request_key(name, params)
        found = self._memo.get(raw)
        if found is None:
            found = self._lookup((name, canonical_params(name, params)))
            if found is None:
                with self._making:
                    if self._local is None:
                        from threadx.indicators.bank import IndicatorBank

                        self._local = IndicatorBank(disk=False)
                found = self._local.ensure(data, name, params)
            self._memo[raw] = found
        return found


def prepare_requests(requests: Mapping[Request, dict], bars: Bars, bank: Any) -> dict[Request, dict[str, np.ndarray]]:
    """The arrays of ``requests``, computed through the bank's batch path (one call per indicator)."""
    by_name: dict[str, list] = {}
    for (name, key), params in requests.items():
        by_name.setdefault(name, []).append((key, params))
    arrays: dict[Request, dict[str, np.ndarray]] = {}
    for name, items in by_name.items():
        for (key, _), out in zip(items, bank.ensure_many(bars, name, [p for _, p in items])):
            arrays[(name, key)] = out
    return arrays
