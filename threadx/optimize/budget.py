"""Memory budget of a sweep: estimated from the plan before any indicator is computed.

The parent prepares the distinct indicator lines of the planned combos (``lines x bars x
8`` bytes), copies them into one shared-memory block (as much again, in ``/dev/shm``),
and keeps its indicator cache (the bank's LRU bound); each worker process costs about
``WORKER_BYTES``; the writer buffers up to ``flush_rows`` result rows. When that sum is
over the budget (default: ``DEFAULT_BUDGET_FRACTION`` of the available RAM, and the free
space of ``/dev/shm``), the local and inline executors prepare the indicators in
batches of combos whose lines fit (combos sorted by their indicator params, one shared
block per batch); a sweep whose fixed costs or single indicator group do not fit, or
that runs on dask/gpu, is refused with advice before any work starts. A walk-forward
(threads in one process, every indicator at once) is refused over its budget.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from threadx.config import parse_bytes
from threadx.errors import ParamError
from threadx.units import format_bytes

DEFAULT_BUDGET_FRACTION = 0.5  # of psutil's available RAM
WORKER_BYTES = 256 * 2**20  # one worker process: interpreter, numpy/numba, evaluator buffers
FIXED_LINES = 7  # open, high, low, close, volume, the timestamps and the all-NaN line in the shared block
RESULT_ROW_BYTES = 8 * 32 + 64  # about 30 numeric columns plus status/error, per buffered row
ID_BYTES = 24  # per planned combo: its id, and its id and group code while batches are planned
_SHM = Path("/dev/shm")


def parse_budget(value: Any) -> int:
    """Bytes of a memory budget given as a number or a text such as ``"4GiB"`` (config.parse_bytes)."""
    try:
        return parse_bytes(value)
    except ParamError:
        raise ParamError(f"memory budget must be a size such as 4GiB, 512MB or a number of bytes, got {value!r}") from None


def default_budget() -> int:
    """``DEFAULT_BUDGET_FRACTION`` of the RAM psutil reports available now."""
    import psutil

    return int(psutil.virtual_memory().available * DEFAULT_BUDGET_FRACTION)


def shm_free() -> int | None:
    """Free bytes of ``/dev/shm`` (None where it does not exist)."""
    try:
        return shutil.disk_usage(_SHM).free
    except OSError:
        return None


@dataclass(frozen=True)
class Estimate:
    """Peak memory of a sweep, by part (bytes); ``lines`` per indicator name."""

    n_bars: int
    lines: dict[str, int]
    workers: int
    cache_bytes: int
    result_bytes: int
    shared: bool = True  # indicators also copied (shared block, cluster, device); False for inline
    in_shm: bool = True  # that copy is a block in /dev/shm (the process pool), not on a cluster or a device

    @property
    def line_bytes(self) -> int:
        return self.n_bars * 8

    @property
    def total_lines(self) -> int:
        return sum(self.lines.values())

    @property
    def fixed(self) -> int:
        """What does not depend on the indicator lines: workers, cache, OHLCV, result buffers."""
        return (self.workers * WORKER_BYTES + self.cache_bytes + self.result_bytes
                + FIXED_LINES * self.line_bytes * (2 if self.shared else 1))

    @property
    def per_line(self) -> int:
        """Bytes one indicator line costs: the parent's array and its shared copy."""
        return self.line_bytes * (2 if self.shared else 1)

    @property
    def total(self) -> int:
        return self.fixed + self.total_lines * self.per_line

    @property
    def shared_bytes(self) -> int:
        return (FIXED_LINES + self.total_lines) * self.line_bytes if self.shared else 0

    def describe(self) -> str:
        parts = ", ".join(f"{n:,} {name}" for name, n in sorted(self.lines.items(), key=lambda kv: -kv[1]))
        lines = f"{self.total_lines:,} indicator lines ({parts})" if self.lines else "no indicator lines"
        workers = f"{self.workers} worker(s), " if self.workers else ""  # (none: threads of this process)
        return (f"{lines} x {self.n_bars:,} bars x 8 bytes{' x 2 (parent + shared copy)' if self.shared else ''}"
                f", plus {workers}the indicator cache and result buffers")


@dataclass
class Budget:
    """The limits a sweep must fit: RAM bytes and free ``/dev/shm`` bytes."""

    memory: int
    shm: int | None = None
    explicit: bool = field(default=False)

    @classmethod
    def resolve(cls, memory_budget: Any = None) -> "Budget":
        """``memory_budget`` (bytes or text; None = the ``sweep.memory_budget`` setting, and
        when that is ``auto`` the default fraction of available RAM)."""
        if memory_budget is None:
            from threadx.config import sweep_defaults

            memory_budget = sweep_defaults().memory_budget
        explicit = memory_budget is not None
        memory = parse_budget(memory_budget) if explicit else default_budget()
        if explicit:
            import psutil

            _warn_over_ram(memory, psutil.virtual_memory().total)
        return cls(memory, shm_free(), explicit)

    def describe(self) -> str:
        source = "" if self.explicit else f" ({DEFAULT_BUDGET_FRACTION:.0%} of the available RAM)"
        return f"{format_bytes(self.memory)}{source}"

    def line_capacity(self, est: Estimate) -> int:
        """How many indicator lines one batch may prepare (negative: not even the fixed costs fit)."""
        room = (self.memory - est.fixed) // est.per_line
        if est.shared and est.in_shm and self.shm is not None:
            room = min(room, int(self.shm * 0.9) // est.line_bytes - FIXED_LINES)
        return int(room)


@lru_cache(maxsize=8)
def _warn_over_ram(memory: int, ram: int) -> None:
    """A warning (once a process: a research resolves it per cell) when an explicit budget is
    over the RAM; it is taken as given, and a sweep planned under it can run out of memory."""
    if memory > ram:
        from threadx.logs import logger

        logger().warning("the memory budget %s is more than this machine's RAM (%s): work estimated to fit it "
                         "may not fit the machine", format_bytes(memory), format_bytes(ram))


def result_bytes(combos: int) -> int:
    """The writer's buffered rows (at most its ``flush_rows``) and the planned ids."""
    import inspect

    from threadx.optimize.store import RunWriter

    flush_rows = inspect.signature(RunWriter).parameters["flush_rows"].default
    return min(combos, flush_rows) * RESULT_ROW_BYTES + combos * ID_BYTES


def request_widths(requests: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Lines (outputs) of each ``(indicator name, canonical params)`` request."""
    from threadx.indicators.registry import get_indicator

    return {key: len(get_indicator(key[0]).outputs) for key in requests}


def lines_of(requests: Iterable[tuple[str, str]]) -> dict[str, int]:
    """Indicator lines per indicator name of ``(name, canonical params)`` requests."""
    out: dict[str, int] = {}
    for (name, _), width in request_widths(requests).items():
        out[name] = out.get(name, 0) + width
    return out


def plan_batches(needs: list[set], capacity: int, widths: dict) -> list[list[int]]:
    """Consecutive groups (indices into ``needs``, each a set of requests) packed greedily
    into batches whose distinct requests weigh at most ``capacity`` lines (``widths``:
    lines of each request). A group heavier than ``capacity`` alone is a ParamError."""
    batches: list[list[int]] = []
    current: list[int] = []
    held: set = set()
    weight = 0
    for k, group in enumerate(needs):
        new = group - held
        extra = sum(widths[r] for r in new)
        if current and weight + extra > capacity:
            batches.append(current)
            current, held, weight = [], set(), 0
            new, extra = group, sum(widths[r] for r in group)
        if extra > capacity:
            raise ParamError(f"one combo needs {extra:,} indicator lines, more than the {capacity:,} "
                             "the memory budget allows")
        current.append(k)
        held |= new
        weight += extra
    if current:
        batches.append(current)
    return batches


def estimate_memory(requests: Iterable[tuple[str, str]], n_bars: int, workers: int, bank: Any, combos: int,
                    shared: bool = True, in_shm: bool = True) -> Estimate:
    """The :class:`Estimate` of preparing ``requests`` at once for ``combos`` combos (the
    indicator cache counted up to its bound, or to the lines of this plan when they are fewer:
    its whole 512 MiB bound refused a 2-combo sweep under a 600 MiB budget)."""
    lines = lines_of(requests)
    cache = min(int(getattr(bank, "max_bytes", 0)), sum(lines.values()) * n_bars * 8)
    return Estimate(n_bars=n_bars, lines=lines, workers=workers, cache_bytes=cache, result_bytes=result_bytes(combos),
                    shared=shared, in_shm=in_shm)


def fits(est: Estimate, budget: Budget) -> bool:
    """Whether ``est`` fits the RAM budget and, for a shared copy, the free ``/dev/shm``."""
    shm_ok = budget.shm is None or not (est.shared and est.in_shm) or est.shared_bytes <= budget.shm * 0.9
    return est.total <= budget.memory and shm_ok


def advice(est: Estimate, budget: Budget, search: Any, why: str, what: str = "sweep") -> str:
    """The refusal of a plan over its budget: what it needs, the budget, and either what its
    costs that do not depend on the indicators need, with the workers to change, when those
    are over the budget already, or ``why`` no batching helps, with the params of ``search``
    that set the indicators to change."""
    from threadx.optimize.shared import indicator_axes

    shm = f" (/dev/shm has {format_bytes(budget.shm)} free)" if budget.shm is not None and est.shared and est.in_shm \
        else ""
    head = f"this {what} needs up to about {format_bytes(est.total)} ({est.describe()}); the budget is " \
           f"{budget.describe()}{shm}"
    if est.fixed >= budget.memory:  # no indicator param can help (nor batches: ``why`` is moot)
        workers = f"{est.workers} worker(s) at about {format_bytes(WORKER_BYTES)} each, " if est.workers else ""
        fewer = "use fewer workers, or " if est.workers else ""  # (no worker process: threads of this one)
        return (f"{head}, too small; before any indicator it needs about {format_bytes(est.fixed)} ({workers}the "
                f"indicator cache and result buffers): {fewer}raise memory_budget (--memory-budget)")
    axes = "/".join(search.axes[k].name for k in indicator_axes(search))
    return (f"{head}, {why}: narrow {axes or 'the indicator params'}, use fewer combos or workers, a coarser "
            "timeframe or a shorter period, or raise memory_budget (--memory-budget)")
