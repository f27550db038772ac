"""Ahead-of-time compiled kernels: the numba kernels a sweep calls, built once as a C extension.

A process's first call of a numba kernel, even one cached on disk, pays numba's own start-up
(its compiler's registries, scipy.linalg's import) and the kernel's load: 0.25-0.45 s on a
2-core machine before a sweep's first combo, half as long as the rest of a 10,000-combo
``bb_atr`` sweep (0.80 s in all, 0.54 s with this module's build).
``python -m threadx.warmup`` (run by ``make app`` and ``make test``) therefore also compiles the
kernels that Python code calls through :func:`call` into an extension module (numba's ``pycc``),
with the argument types the warm-up's backtests and sweeps of every built-in strategy gave
them. :func:`call` runs that module's function when the arguments have exactly the types it
was built for, and the numba dispatcher otherwise (so that other arrays, a user's kernels and a
machine without a C compiler behave as before). Both are compiled by numba from the same
source with the same options: the results are the same bit for bit (tests/test_aot.py).

The module lives in the versioned kernel cache (:func:`threadx.jit_cache.cache_dir`, whose name
hashes the kernels' sources) under a folder named by this module, numba's, numpy's and Python's
versions, numba's code-generation settings and this machine's CPU (:func:`folder`): a change to
any of them never runs an old build; the warm-up removes the builds for other versions beside it
(:func:`prune`: 1 MB or so each). ``THREADX_AOT=off`` turns
it off (no build, no use). numba marks ``pycc`` for deprecation in favour of a successor: a numba
without it, like a machine without a C compiler, gets "Not built" from the warm-up and runs
numba's kernels as before.

Example::

    from threadx import aot
    from threadx.engine import kernel
    metrics, moments = aot.call(kernel.run_plan, *args)  # numba's run_plan when not built
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

ENV = "THREADX_AOT"  # "off" (or 0 / false / no): neither built nor used
MODULE = "_threadx_aot"
MANIFEST = "exports.json"
_PLAIN_OPTIONS = {("nopython", True), ("boundscheck", None), ("boundscheck", False), ("cache", True)}  # pycc's defaults
_SCALARS = {"int64": (int, np.int64), "float64": (float, np.float64), "bool": (bool, np.bool_)}

_lock = threading.Lock()
_state: dict[str, Any] = {"table": None, "recorded": None, "off": False}


def enabled() -> bool:
    """Whether the ahead-of-time module may be built and used (``THREADX_AOT``)."""
    return os.environ.get(ENV, "on").strip().lower() not in ("off", "0", "false", "no")


def folder() -> Path:
    """Where this machine's build of the kernels this process imported lives (it may not exist):
    beside numba's cache of them (the folder chosen as ``threadx`` was imported, named by their
    sources' hash: a build made after a later edit of a kernel is not this process's), named by
    everything else the compiled code depends on: this module, numba's, numpy's and Python's
    versions, numba's code-generation settings and the CPU's name and features."""
    import llvmlite.binding as llvm
    import numba
    from numba.core import config

    from threadx.jit_cache import cache_dir

    base = Path(config.CACHE_DIR) if config.CACHE_DIR else cache_dir()
    settings = (config.OPT, config.BOUNDSCHECK, config.DEBUGINFO_DEFAULT, config.CPU_NAME, config.CPU_FEATURES)
    what = "\n".join((Path(__file__).read_text(), numba.__version__, np.__version__, sys.version, repr(settings),
                      llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()))
    return base / "aot" / hashlib.sha256(what.encode()).hexdigest()[:16]


def _kernel_name(kernel: Any) -> tuple[str, str] | None:
    """(module, qualified name) of a numba dispatcher; None for anything else."""
    py_func = getattr(kernel, "py_func", None)
    if py_func is None or not hasattr(kernel, "overloads"):
        return None
    return py_func.__module__, py_func.__qualname__


def _matches(spec: list, args: tuple) -> bool:
    """Whether ``args`` have exactly the types of an export's ``spec`` (see :func:`_arg_spec`)."""
    if len(spec) != len(args):
        return False
    for want, arg in zip(spec, args):
        if want[0] == "array":
            _, dtype, ndim, readonly = want
            if (type(arg) is not np.ndarray or arg.ndim != ndim or arg.dtype.name != dtype or not arg.dtype.isnative
                    or not arg.flags.c_contiguous or not arg.flags.aligned
                    or not (readonly or arg.flags.writeable)):  # built to write it: never a read-only one
                return False
        elif type(arg) not in _SCALARS[want[0]] or (type(arg) is int and not -2**63 <= arg < 2**63):
            return False
    return True


def _valid_spec(spec: Any) -> bool:
    """Whether ``spec`` is an argument spec :func:`_matches` reads (see :func:`_arg_spec`)."""
    if not isinstance(spec, list) or not spec:
        return False
    if spec[0] == "array":
        return (len(spec) == 4 and isinstance(spec[1], str) and type(spec[2]) is int and spec[2] >= 1
                and type(spec[3]) is bool)
    return len(spec) == 1 and spec[0] in _SCALARS


def _load(where: Path | None = None) -> dict[tuple[str, str], list[tuple[list, Callable]]]:
    """{(module, name): [(argument spec, compiled function)]} of the build in ``where`` (default:
    this machine's, :func:`folder`); empty when there is none, it is turned off or it cannot be
    loaded (numba's dispatchers then)."""
    if not enabled():
        return {}
    try:
        where = folder() if where is None else where
        exports = json.loads((where / MANIFEST).read_text())["exports"]
        suffixes = importlib.machinery.EXTENSION_SUFFIXES
        path = next(f for suffix in suffixes if (f := where / (MODULE + suffix)).is_file())
        loader = importlib.machinery.ExtensionFileLoader(MODULE, str(path))
        spec = importlib.util.spec_from_file_location(MODULE, path, loader=loader)
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
        table: dict[tuple[str, str], list[tuple[list, Callable]]] = {}
        for export in exports:
            if not all(_valid_spec(arg) for arg in export["args"]):
                return {}  # a manifest this version cannot read: numba's dispatchers
            table.setdefault((export["module"], export["name"]), []).append(
                (export["args"], getattr(module, export["symbol"])))
        return table
    except (OSError, StopIteration, ImportError, KeyError, TypeError, ValueError, AttributeError):
        return {}  # not built (or damaged): numba's dispatchers, as before


def table() -> dict[tuple[str, str], list[tuple[list, Callable]]]:
    """The loaded build's functions (loaded once per process; a forked worker inherits them)."""
    found = _state["table"]
    if found is None:
        with _lock:
            if _state["table"] is None:
                _state["table"] = _load()
            found = _state["table"]
    return found


def call(kernel: Callable, *args: Any) -> Any:
    """``kernel(*args)``: by the ahead-of-time build of ``kernel`` for exactly these argument
    types when there is one, else by ``kernel`` itself (recorded for a build while
    :func:`recording`)."""
    compiled = compiled_for(kernel, args)
    if compiled is not None:
        return compiled(*args)
    result = kernel(*args)
    recorded = _state["recorded"]
    if recorded is not None:
        name = _kernel_name(kernel)
        if name is not None:
            _record(recorded, kernel, name, args)
    return result


def compiled_for(kernel: Callable, args: tuple) -> Callable | None:
    """The ahead-of-time build of ``kernel`` for exactly the types of ``args`` (None: numba's)."""
    name = _kernel_name(kernel)
    if name is None or _state["off"]:
        return None
    for spec, compiled in table().get(name, ()):
        if _matches(spec, args):
            return compiled
    return None


@contextlib.contextmanager
def jit_only() -> Iterator[None]:
    """Calls through :func:`call` run numba's dispatchers while inside (tests compare the two)."""
    before, _state["off"] = _state["off"], True
    try:
        yield
    finally:
        _state["off"] = before


@contextlib.contextmanager
def recording() -> Iterator[dict]:
    """Collect, while inside, the kernels and signatures that :func:`call` ran by numba:
    what :func:`build` compiles."""
    recorded: dict = {}
    _state["recorded"] = recorded
    try:
        yield recorded
    finally:
        _state["recorded"] = None


def _arg_spec(numba_type: Any) -> list | None:
    """An argument type as :func:`_matches` checks it: ["array", dtype, ndim, read-only] for a
    C-contiguous array, [name] for an int64, float64 or bool scalar; None for any other type
    (the kernel is then not built ahead of time)."""
    from numba.core import types

    if isinstance(numba_type, types.Array):
        if numba_type.layout != "C" or not numba_type.aligned or not isinstance(numba_type.dtype, types.Number):
            return None
        return ["array", str(np.dtype(str(numba_type.dtype))), numba_type.ndim, not numba_type.mutable]
    name = {types.int64: "int64", types.float64: "float64", types.boolean: "bool"}.get(numba_type)
    return None if name is None else [name]


def _record(recorded: dict, kernel: Any, name: tuple[str, str], args: tuple) -> None:
    """Note the signature ``kernel`` ran ``args`` with, when it can be built ahead of time: a
    threadx kernel whose source the cache folder's name covers (a user's kernels, and threadx
    code outside :data:`~threadx.jit_cache.JIT_SOURCES`, are left to numba), compiled with no
    option beyond pycc's defaults and ``nogil`` (which the build honours)."""
    from threadx.jit_cache import PACKAGE, JIT_SOURCES

    source = getattr(kernel.py_func, "__code__", None)
    try:
        relative = Path(source.co_filename).resolve().relative_to(PACKAGE).as_posix()
    except (AttributeError, ValueError):
        return
    options = {k: v for k, v in kernel.targetoptions.items() if (k, v) not in _PLAIN_OPTIONS}
    if relative not in JIT_SOURCES or set(options) - {"nogil"}:
        return
    argtypes = tuple(kernel.typeof_pyval(arg) for arg in args)
    compiled = kernel.overloads.get(argtypes)
    specs = [_arg_spec(t) for t in argtypes]
    if compiled is None or any(spec is None for spec in specs):
        return
    recorded[(name, str(compiled.signature))] = (kernel, compiled.signature, specs)


def is_built() -> bool:
    """Whether this process has a build of its kernels loaded (this machine's, readable)."""
    return bool(table())


@contextlib.contextmanager
def _as_numba_compiles() -> Iterator[None]:
    """Build as numba's own compiler does for this machine, two things pycc has no option for,
    set for the duration of the build: the functions release the GIL while they run, as the
    kernels' ``nogil=True`` does (a sweep's threads run them side by side), and the code is for
    the CPU's features as the machine reports them, not all of its model's (a VM that turns
    some off would stop the process at an instruction it lacks)."""
    from numba.core.codegen import AOTCPUCodegen
    from numba.pycc import compiler as pycc_compiler

    base = pycc_compiler.Flags

    class NoGilFlags(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.release_gil = True

    features = AOTCPUCodegen._customize_tm_features
    pycc_compiler.Flags = NoGilFlags
    AOTCPUCodegen._customize_tm_features = lambda self: self._get_host_cpu_features()  # numba's JIT's choice
    try:
        yield
    finally:
        pycc_compiler.Flags = base
        AOTCPUCodegen._customize_tm_features = features


_STALE_BUILD_S = 3600.0  # a build folder this old was left by a killed build (one takes seconds)


def prune() -> list[Path]:
    """Remove the builds beside this process's one (made for another version of numba, numpy,
    Python or this module, or another CPU: never loaded by this installation again) and
    temporary folders that killed builds left; what was removed. A build that another process
    is making now (its lock held) is left alone."""
    from filelock import FileLock, Timeout

    from threadx.jit_cache import is_hash_name

    current = folder()
    removed: list[Path] = []
    try:
        entries = sorted(current.parent.iterdir())
    except OSError:
        return removed
    for path in entries:
        if path == current or not path.is_dir() or path.is_symlink():
            continue
        if path.name.startswith("build-"):
            try:
                stale = time.time() - path.stat().st_mtime > _STALE_BUILD_S
            except OSError:
                continue
            if stale:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        elif is_hash_name(path.name):
            try:
                with FileLock(str(path) + ".lock", timeout=0):
                    shutil.rmtree(path, ignore_errors=True)
            except (Timeout, OSError):  # (being built now; or a folder this user may not write: left)
                continue
            removed.append(path)
    return removed


def build(recorded: dict) -> Path | None:
    """Compile the recorded kernels (see :func:`recording`) into this machine's extension module,
    replacing none that exists (another process's build wins); its folder, or None when nothing
    was recorded. Raises what the compiler raises (no C compiler: the warm-up says so)."""
    from filelock import FileLock
    from numba.pycc import CC

    if not recorded:
        return None
    target = folder()
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if _load(target):  # (another process's build, made while this one waited)
            return target
        work = Path(tempfile.mkdtemp(prefix="build-", dir=target.parent))
        try:
            cc = CC(MODULE)
            cc.output_dir = str(work)
            cc.target_cpu = "host"  # (numba's name for it: NUMBA_CPU_NAME when set)
            exports = []
            for k, (key, (kernel, signature, specs)) in enumerate(sorted(recorded.items())):
                (module, name), _ = key
                symbol = f"k{k}_{name.replace('.', '_')}"
                cc.export(symbol, signature)(kernel.py_func)
                exports.append({"symbol": symbol, "module": module, "name": name, "args": specs,
                                "signature": str(signature)})
            with _as_numba_compiles(), contextlib.redirect_stdout(sys.stderr):
                cc.compile()
            (work / MANIFEST).write_text(json.dumps({"exports": exports}, indent=1))
            shutil.rmtree(target, ignore_errors=True)  # a damaged one (unreadable)
            os.replace(work, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    with _lock:
        _state["table"] = None  # loaded again on the next call
    return target
