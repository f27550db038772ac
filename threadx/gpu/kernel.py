"""The CUDA batch kernel: one thread per combo runs the engine's own bar loop (SPEC §8).

The device functions are not a port: :func:`device_functions` compiles the very code
objects of ``threadx.engine.kernel`` (``run``, ``step`` and the helpers
they call) with ``numba.cuda.jit(device=True)``, each bound to a copy of that module's
namespace in which its callees are the device versions. Under numba's CUDA simulator the
same objects run as Python, which is what the simulator tests check against the CPU.

A thread reads the bars, its signal row, its four level lines and its parameter row
(see :class:`threadx.optimize.plan.Plan`), keeps its state and metrics in local arrays, and
writes back only the metrics (and the per-block return moments for PBO). The kernel is
compiled without FMA contraction, which NVVM applies by default and the CPU never does:
one fused rounding can move a stop by a tick and change a trade.
"""
from __future__ import annotations

import math
import os
import threading
import time
import types
import warnings
from contextlib import ExitStack, contextmanager
from typing import Any, Iterator

import numpy as np

from threadx.data.bars import Bars
from threadx.errors import ParamError
from threadx.settings_file import GPU_REGISTERS_ENV
from threadx.codehash import source_hash
from threadx.engine import kernel as engine
from threadx.engine import layout as engine_layout
from threadx.engine.layout import N_METRICS, N_PARAMS, N_STATE, N_TRADE_COLS

THREADS_PER_BLOCK = 128
# a thread's registers: ~134 without a cap (H200, numba-cuda 0.30); 128 spills a little and lets a
# third block of 128 threads onto each multiprocessor: 100,000 bb_atr combos' kernel 0.078-0.080 s
# against 0.090-0.093 s (benchmarks/bench_gpu.py --max-registers 0,128, 2026-12-04)
DEFAULT_MAX_REGISTERS = 128
_MEMORY_SHARE = 0.6  # of the free device memory one launch may use
# host arrays from this size are page-locked in place for their copy: 273 MB of bb_atr launch
# inputs went up in 0.020 s locked (the lock included) against 0.033-0.036 s pageable on an H200
# (benchmarks/bench_gpu.py --uploads, 2026-12-04); below it the lock costs more than it saves
_PAGE_LOCK_BYTES = 4 * 2**20


# changes with the engine kernel, its layout or this file: old profiles expire
KERNEL_VERSION = source_hash(engine, engine_layout, __file__)

_build_lock = threading.Lock()
_compile_lock = threading.Lock()
_built: dict[int, Any] = {}  # register cap (0: none) -> the batch kernel

# Set by _build(): the numba.cuda module, float64 and the device versions of the engine loops.
cuda: Any = None
float64: Any = None
_run: Any = None


def device_functions() -> dict[str, Any]:
    """CUDA device versions of ``threadx.engine.kernel``'s bar loops and every helper they call."""
    from numba import cuda as numba_cuda
    from numba.core.registry import CPUDispatcher

    namespace = dict(vars(engine))  # the helpers' globals, with callees replaced below
    built: dict[str, Any] = {}

    def build(name: str) -> None:
        if name in built:
            return
        py_func = getattr(engine, name).py_func
        fn = types.FunctionType(py_func.__code__, namespace, py_func.__name__, py_func.__defaults__,
                                py_func.__closure__)
        built[name] = namespace[name] = numba_cuda.jit(device=True)(fn)
        for callee in py_func.__code__.co_names:
            if isinstance(vars(engine).get(callee), CPUDispatcher):
                build(callee)

    build("run")
    return built


def _batch(o, h, l, c, funding, signals, lines, order, rows, sig_row, line_rows, params, metrics, trades, equity,
           block_end, blocks):
    t = cuda.grid(1)  # thread t runs the plan's combo order[t]; its results go to row rows[t]
    if t < order.shape[0]:
        k = order[t]
        out = rows[t]
        p = cuda.local.array(N_PARAMS, float64)
        for j in range(N_PARAMS):
            p[j] = params[k, j]
        st = cuda.local.array(N_STATE, float64)
        m = cuda.local.array(N_METRICS, float64)
        r = line_rows[k]
        _run(o, h, l, c, signals[sig_row[k]], lines[r[0]], lines[r[1]], lines[r[2]], lines[r[3]], funding,
             p, st, m, trades, equity, block_end, blocks[out], False)  # (no spacing jump: see engine.run)
        for j in range(N_METRICS):
            metrics[out, j] = m[j]


def _build(max_registers: int = 0) -> Any:
    """The batch kernel (block moments on when its block_end is not empty) under a register
    cap (0: none), built once per process and cap."""
    global cuda, float64, _run
    with _build_lock:
        if not _built:
            from threadx.gpu.devices import numpy_compat

            numpy_compat()
            from numba import cuda as numba_cuda
            from numba import float64 as numba_float64

            functions = device_functions()
            cuda, float64 = numba_cuda, numba_float64
            _run = functions["run"]
        cap = 0 if simulator() else int(max_registers)
        if cap not in _built:
            _built[cap] = cuda.jit(**({"max_registers": cap} if cap else {}))(_batch)
    return _built[cap]


def register_cap() -> int:
    """The kernel's register cap: THREADX_GPU_MAX_REGISTERS (0: none), else DEFAULT_MAX_REGISTERS."""
    text = os.environ.get(GPU_REGISTERS_ENV) or str(DEFAULT_MAX_REGISTERS)
    try:
        cap = int(text)
    except ValueError:
        raise ParamError(f"{GPU_REGISTERS_ENV} is a whole number of registers (0: no cap), not {text!r}") from None
    if cap and not 16 <= cap <= 255:
        raise ParamError(f"{GPU_REGISTERS_ENV} is 0 (no cap) or 16 to 255 registers a thread, not {cap}")
    return cap


def simulator() -> bool:
    from numba import config

    return bool(config.ENABLE_CUDASIM)


@contextmanager
def _without_fma() -> Iterator[None]:
    """Compile with ``-fma=0``: NVVM contracts a*b+c into fused multiply-adds by default,
    the CPU kernel never does. numba has no switch for it, so the NVVM call is wrapped
    while our kernel compiles (under a lock; other kernels compiled meanwhile get it too)."""
    try:
        from numba.cuda.cudadrv import nvvm

        original = nvvm.compile_ir
    except (ImportError, AttributeError):
        warnings.warn("cannot disable FMA contraction with this numba: GPU metrics may differ from the CPU's "
                      "in the last digits", RuntimeWarning, stacklevel=3)
        yield
        return

    def compile_ir(llvmir, **options):
        options.setdefault("fma", False)
        return original(llvmir, **options)

    nvvm.compile_ir = compile_ir
    try:
        yield
    finally:
        nvvm.compile_ir = original


def launch_inputs(plan, order: np.ndarray, rows: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """The host arrays one launch copies to the device to run ``plan``'s combos at positions
    ``order`` (each one that planned), in that order, the results of ``order[t]`` going to row
    ``rows[t]`` (default: row t): (signals (k, bars) uint8, lines (j, bars) float64, order
    int64, rows int64, signal row int32, line rows (n, 4) int32, parameter rows (n, N_PARAMS)
    float64). The plan's arrays go as they are, read through ``order`` on the device: a signal
    matrix is not stacked again (226 MB for 100,000 bb_atr combos), nor the parameter rows
    gathered into signal order on the host (38 MB, 25-40 ms a batch)."""
    signals = plan.signals if isinstance(plan.signals, np.ndarray) else np.stack(plan.signals)
    rows = np.arange(len(order), dtype=np.int64) if rows is None else np.ascontiguousarray(rows, dtype=np.int64)
    return (np.ascontiguousarray(signals), np.stack(plan.line_values), np.ascontiguousarray(order, dtype=np.int64),
            rows, plan.sig.astype(np.int32), plan.lines.astype(np.int32), np.ascontiguousarray(plan.rows))


class DeviceRunner:
    """Runs plans on one device; the bars, funding and block bounds stay on it."""

    def __init__(self, device: Any, bars: Bars, funding: np.ndarray | None, block_end: np.ndarray | None,
                 threads_per_block: int = THREADS_PER_BLOCK, max_registers: int | None = None):
        self.device = device
        self.n_bars = len(bars)
        self.n_blocks = 0 if block_end is None else len(block_end)
        self.threads_per_block = int(threads_per_block)
        self.max_registers = register_cap() if max_registers is None else int(max_registers)
        self.kernel = _build(self.max_registers)
        self.cuda = cuda
        # seconds spent in each part of the launches so far (host inputs, upload, kernel, download)
        self.timings = dict.fromkeys(("inputs", "upload", "kernel", "download"), 0.0)
        with self._context():
            put = self.cuda.to_device
            self._bars = [put(np.ascontiguousarray(getattr(bars, col), dtype=np.float64))
                          for col in ("open", "high", "low", "close")]
            self._funding = put(np.full(1, np.nan) if funding is None else np.ascontiguousarray(funding, np.float64))
            self._block_end = put(np.zeros(0, np.int64) if block_end is None else np.ascontiguousarray(block_end,
                                                                                                        np.int64))
            self._trades = put(np.zeros((0, N_TRADE_COLS)))  # fast mode: no trade rows, no equity curve
            self._equity = put(np.zeros(0))

    def _context(self):
        return self.cuda.gpus[int(self.device.index)]

    def run(self, plan, positions: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """(metrics (n, N_METRICS), block moments (n, n_blocks, 2) or None) of the plan's combos
        at ``positions`` (each one that planned), row for row; without ``positions``, of every
        combo of the plan, NaN for those that failed to plan."""
        todo = plan.by_signal() if positions is None else np.asarray(positions, dtype=np.int64)
        where = todo if positions is None else np.arange(len(todo))  # each combo's row of the result
        n = len(plan) if positions is None else len(todo)
        if not len(todo):
            return np.full((n, N_METRICS), np.nan), np.full((n, self.n_blocks, 2), np.nan) if self.n_blocks else None
        with self._context():
            pieces = self._pieces(plan, len(todo))
            if pieces == 1:  # each combo's row written in place on the device: no scatter on the host
                metrics, blocks = self._launch(plan, todo, where, n)
                unplanned = np.ones(n, dtype=bool)
                unplanned[where] = False
                metrics[unplanned] = np.nan  # (never written on the device)
                if blocks is not None:
                    blocks[unplanned] = np.nan
                return metrics, blocks
            metrics = np.full((n, N_METRICS), np.nan)
            blocks = np.full((n, self.n_blocks, 2), np.nan) if self.n_blocks else None
            for piece in np.array_split(np.arange(len(todo)), pieces):
                part = todo[piece]
                # one piece: the plan as it is, read in signal order through ``order`` on the device;
                # several (the device is short of memory): each with only the signals and lines it uses
                m, b = self._launch(plan.subset(part), np.arange(len(part)))
                metrics[where[piece]] = m
                if blocks is not None:
                    blocks[where[piece]] = b
        return metrics, blocks

    def _pieces(self, plan, combos: int) -> int:
        """In how many pieces ``combos`` of the plan run for their inputs to fit the device
        memory (neighbours in signal order share signal rows)."""
        per_combo = 8 * (N_PARAMS + N_METRICS + 2 * self.n_blocks) + 4 * 5
        need = combos * per_combo + self.n_bars * (len(plan.signals) + 8 * len(plan.line_values))
        try:
            free = float(self.cuda.current_context().get_memory_info()[0])
        except Exception:  # noqa: BLE001 - a driver that does not say: assume it fits
            free = math.inf
        return max(1, int(math.ceil(need / (_MEMORY_SHARE * free)))) if math.isfinite(free) and free > 0 else 1

    def _launch(self, plan, order: np.ndarray, rows: np.ndarray | None = None,
                n_rows: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Metrics (and block moments) of ``plan``'s combos at ``order`` in one launch: row for
        row, else the combo ``order[t]``'s in row ``rows[t]`` of ``n_rows`` (the others left as
        the device memory held them). On an H200 a launch lasts about as long as its slowest
        warps, so 100,000 bb_atr combos in pieces of 16,384 or 32,768 took 1.3 to 2.6 times as
        long as in one, the signal rows of the next piece uploading meanwhile
        (benchmarks/bench_gpu.py, 2026-12-04)."""
        m = len(order)
        n_rows = m if rows is None else int(n_rows)
        clock = time.perf_counter()
        host = launch_inputs(plan, order, rows)
        clock = self._lap("inputs", clock)
        with self._page_locked(host):
            inputs = (*self._bars, self._funding, *(self.cuda.to_device(a) for a in host))
        d_metrics = self.cuda.device_array((n_rows, N_METRICS), dtype=np.float64)
        d_blocks = self.cuda.device_array((n_rows, self.n_blocks, 2), dtype=np.float64)  # (n, 0, 2) when off
        args = [*inputs, d_metrics, self._trades, self._equity, self._block_end, d_blocks]
        grid = (m + self.threads_per_block - 1) // self.threads_per_block
        clock = self._lap("upload", clock)
        if simulator():
            self.kernel[grid, self.threads_per_block](*args)
        else:
            with _compile_lock, _without_fma():  # a launch that compiles (first on a device) does it here
                self.kernel[grid, self.threads_per_block](*args)
        self.cuda.synchronize()  # (the download would wait for it anyway: this only splits the time)
        clock = self._lap("kernel", clock)
        metrics = np.empty(d_metrics.shape)
        blocks = np.empty(d_blocks.shape) if self.n_blocks else None
        with self._page_locked([metrics] + ([blocks] if blocks is not None else [])):
            d_metrics.copy_to_host(metrics)
            if blocks is not None:
                d_blocks.copy_to_host(blocks)
        self._lap("download", clock)
        return metrics, blocks

    @contextmanager
    def _page_locked(self, arrays: list[np.ndarray]) -> Iterator[None]:
        """Page-lock the large ones of ``arrays`` for the copies made inside: the driver then
        copies them straight, not through its own staging buffers. One the driver will not lock
        (memory it cannot register) is copied as it is."""
        with ExitStack() as stack:
            for array in arrays:
                if array.nbytes >= _PAGE_LOCK_BYTES:
                    try:
                        stack.enter_context(self.cuda.pinned(array))
                    except Exception:  # noqa: BLE001 - a lock refused only loses speed
                        pass
            yield

    def _lap(self, part: str, since: float) -> float:
        now = time.perf_counter()
        self.timings[part] += now - since
        return now

    def registers(self) -> tuple[int, int] | None:
        """(registers, local memory bytes) a thread of the compiled kernel uses, where numba
        says (None before the first launch, or under the simulator)."""
        try:
            regs = self.kernel.get_regs_per_thread()
            local = self.kernel.get_local_mem_per_thread()
        except Exception:  # noqa: BLE001 - a numba without these, or not compiled yet
            return None
        one = lambda v: max(v.values()) if isinstance(v, dict) else v  # noqa: E731 - per signature
        return (int(one(regs)), int(one(local))) if regs else None

    def close(self) -> None:
        """Free the device arrays (the context stays, numba owns it)."""
        self._bars = self._funding = self._block_end = self._trades = self._equity = None
