"""Your own strategies: the ``.py`` files of the strategies folder, re-read when they change.

The folder is ``./strategies`` unless ``THREADX_STRATEGY_DIR`` says otherwise
(``threadx.config.settings().strategy_dir``). Each file declares one or more strategies
with the authoring API of :mod:`threadx.strategy` (the one the built-ins use): every
module-level :class:`~threadx.strategy.StrategySpec` of the file is a strategy, and no
registration is needed::

    # strategies/rsi_reversion.py
    from threadx.strategy import Param, StrategySpec, ...
    SPEC = StrategySpec(name="rsi_reversion", ...)

Live reload: every lookup compares the files' modification time and size with what was
loaded, and a changed file is read and run again, so an edit takes effect on the next
backtest or sweep without a restart. The code runs from the text read (never a stale
``__pycache__``), and the strategy carries that text and its hash
(:class:`~threadx.strategy.base.StrategyOrigin`): a sweep's workers rebuild the strategy from
it, so every worker runs the code the sweep started with.

Shared code: a strategy file may import another module of the folder by its plain name
(``from _common import zscore`` reads ``_common.py`` beside it). That module is run from its
text with the strategy file, and its text is part of the strategy's origin and code hash: an
edit to it reloads the strategies that import it, and a run made before the edit is never
resumed with it. Files whose names start with ``_`` hold no strategies; a file without a
strategy that a strategy file imports is not reported as declaring none.

A file that cannot be loaded (a syntax error, an exception at import, no strategy, a name
taken by a built-in or another file) is reported with its file and line by
:func:`load_errors`, and every other strategy keeps working.
"""
from __future__ import annotations

import builtins
import contextlib
import functools
import hashlib
import importlib.util
import re
import sys
import threading
import time
import tokenize
import traceback
import types
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Mapping, NamedTuple

from threadx.config import settings
from threadx.errors import ParamError, StrategyError, ThreadXError
from threadx.filestamp import file_stamp, stamp_or_none
from threadx.names import STRATEGY, check_name
from threadx.strategy.base import StrategyOrigin, StrategySpec

__all__ = ["strategy_dir", "strategies", "get", "load_errors", "load_text", "code_location", "describe_error",
           "from_origin", "strategy_code_errors"]

MODULE_PREFIX = "threadx_user_strategies"
_LOADED_PATHS: set[str] = set()  # files of the strategies loaded in this process (for error locations)
_LOCK = threading.RLock()
_COARSE_MTIME_S = 2.5  # a file modified this recently is compared by content (coarse file times)


def strategy_dir() -> Path:
    """The strategies folder of the current settings (it may not exist yet)."""
    return settings().strategy_dir


def text_hash(text: str) -> str:
    """16 hex digits of sha256 of a strategy file's text (its code hash)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def code_location(exc: BaseException, paths: str | tuple[str, ...] | None = None) -> str | None:
    """``file:line`` of the innermost traceback frame in ``paths`` (a strategy's files), or,
    without them, in any strategies-folder file loaded in this process; None when no frame
    qualifies. A SyntaxError gives its own file and line."""
    paths = _LOADED_PATHS if paths is None else {paths} if isinstance(paths, str) else set(paths)
    if isinstance(exc, SyntaxError) and exc.filename in paths:
        return f"{exc.filename}:{exc.lineno or 0}"
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename in paths:
            found = f"{frame.filename}:{frame.lineno}"
    return found


def describe_error(exc: BaseException, paths: str | tuple[str, ...] | None = None) -> str:
    """One line for an exception raised by strategy code: ``file:line: Type: message``."""
    where = code_location(exc, paths)
    if isinstance(exc, SyntaxError):
        text = f"SyntaxError: {exc.msg}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return f"{where}: {text}" if where else text


@contextlib.contextmanager
def strategy_code_errors(spec: StrategySpec) -> Iterator[None]:
    """Turn an exception raised by a strategies-folder strategy's own code (its indicators,
    signals, levels or exits) into one StrategyError naming the file and line; errors of
    built-in strategies and ThreadX's own errors pass unchanged."""
    try:
        yield
    except ThreadXError:
        raise
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's code: any exception is theirs (an exit too)
        if spec.origin is None or spec.origin.kind != "user":
            raise
        raise StrategyError(f"strategy {spec.name!r} raised: {describe_error(exc, spec.origin.files)}") from exc


LOAD_LIMIT_S = 30.0  # a file's own code running longer as it loads is stopped (a loop that never ends)


class LoadTimeout(BaseException):
    """Raised in a thread loading a strategies-folder file that ran past ``LOAD_LIMIT_S``; not
    an Exception, as KeyboardInterrupt, so that the file's ``except Exception`` does not end it."""

    def __init__(self, *args: Any):
        super().__init__(*(args or (f"the file's code ran for more than {LOAD_LIMIT_S:g} s as it loaded and was "
                                    "stopped (a loop that never ends at its top level, or in a constraint?)",)))


@contextlib.contextmanager
def _time_limit() -> Iterator[None]:
    """Stop the code that runs while a file loads (its top level, the folder modules it
    imports, its constraint checks on the defaults) once it has run ``LOAD_LIMIT_S`` seconds:
    a watcher raises :class:`LoadTimeout` in this thread (``PyThreadState_SetAsyncExc``: at its
    next Python instruction), and again every 0.2 s should the code catch it, so that a loop
    without end is that file's load error, not a workstation (or a sweep's worker) that hangs
    on every lookup of the folder. Code that never returns to Python (a sleep, a numba loop)
    is not stopped."""
    import ctypes

    target = ctypes.c_ulong(threading.get_ident())
    done = threading.Event()

    def watch() -> None:
        if done.wait(LOAD_LIMIT_S):
            return
        while not done.is_set():
            ctypes.pythonapi.PyThreadState_SetAsyncExc(target, ctypes.py_object(LoadTimeout))
            done.wait(0.2)

    watcher = threading.Thread(target=watch, name="threadx-strategy-load-limit", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
        ctypes.pythonapi.PyThreadState_SetAsyncExc(target, None)  # one raised too late is not delivered


def _declaration_line(text: str, name: str) -> int:
    """The line of ``name="..."`` (the strategy's declaration) in a file's text, else 0."""
    match = re.search(r"""name\s*=\s*["']""" + re.escape(name) + r"""["']""", text)
    return text.count("\n", 0, match.start()) + 1 if match else 0


def folder_code_hash(text: str, helpers: tuple[tuple[str, str], ...] = ()) -> str:
    """The code hash of a strategy file's ``text`` with the (path, text) of the folder modules it
    imports: the file's :func:`text_hash` when it imports none."""
    if not helpers:
        return text_hash(text)
    return text_hash(text + "".join(f"\0{Path(path).name}\0{body}" for path, body in sorted(helpers)))


def _new_module(path: str, text: str) -> types.ModuleType:
    """An empty module for the code of ``path``, registered by a name unique to its text
    (dataclasses look a module up by name); earlier versions of the same file are forgotten."""
    module_name = f"{MODULE_PREFIX}.{re.sub(r'[^0-9a-zA-Z_]', '_', Path(path).stem)}_{text_hash(text)}"
    module = types.ModuleType(module_name)
    module.__file__ = path
    sys.modules.setdefault(MODULE_PREFIX, types.ModuleType(MODULE_PREFIX))
    stale = [m for m in sys.modules if m.rsplit("_", 1)[0] == module_name.rsplit("_", 1)[0] and m != module_name]
    for old in stale:  # an earlier version of this file (its strategies keep their own globals)
        sys.modules.pop(old, None)
    sys.modules[module_name] = module
    return module


_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class _Resolved(NamedTuple):
    """What a strategies folder holds: its strategies by name, the errors of its files by file
    name, and each name two files declare with the error that says so."""

    specs: dict[str, StrategySpec]
    errors: dict[str, str]
    contested: dict[str, str]


class _FolderImports:
    """The ``__import__`` of a strategy file's code: a plain top-level name of a module of the
    file's folder that no installed module has (``import _common``, ``from helpers import f``)
    runs that module from its text, once per load of the file, and keeps the text; any other
    import is Python's (a ``json.py`` or ``numpy.py`` of the folder never hides the real one).

    ``given`` (a rebuild from an origin) holds the module texts to run instead of the files.
    Once the file has run (:meth:`close`), only the modules it imported are found: a folder
    module first imported inside a function would be outside the strategy's code hash.
    """

    def __init__(self, folder: Path, given: Mapping[str, str] | None = None):
        self.folder, self.given = folder, given
        self.texts: dict[str, str] = {}  # path -> text of each folder module run
        self.missing: set[str] = set()  # paths of folder modules imported that did not exist
        self.stamps: dict[str, tuple[int, int, int, int]] = {}  # path -> file_stamp before it was read
        self.modules: dict[str, types.ModuleType] = {}
        self.installed: dict[str, bool] = {}  # name -> _installed(name): an import run per call asks once
        self.packages: dict[str, bool] = {}  # top-level name -> _folder_package(name)
        self.closed = False
        self.namespace = {**vars(builtins), "__import__": self}

    def __call__(self, name: str, globals: Any = None, locals: Any = None, fromlist: Any = (),
                 level: int = 0) -> types.ModuleType:
        if level:
            plain = name or ", ".join(fromlist or ()) or "module"
            raise ImportError(f"a relative import (from . import ...) in a strategies-folder file: import the "
                              f"folder's module by its plain name (import {plain})")
        if _MODULE_NAME.match(name):
            module = self.module(name)
            if module is not None:
                return module
        if name == "numba" or name.startswith("numba."):
            found = builtins.__import__(name, globals, locals, fromlist, level)  # (imports the submodule named)
            return _numba_in_memory(found)
        if self.is_folder_package(name.partition(".")[0]):
            raise ImportError(f"import {name}: the strategies folder imported as a package, which Python keeps "
                              "once per process (an edit would not reload it, nor change the strategy's code hash): "
                              "import the folder's module by its plain name (from _common import f; from rsi_rev "
                              "import SPEC)")
        try:
            return builtins.__import__(name, globals, locals, fromlist, level)
        except ModuleNotFoundError:
            if self.given is None and not self.closed:  # added to the folder later, it will be found
                self.missing.add(str(self.folder / f"{name.partition('.')[0]}.py"))
            raise

    def close(self) -> None:
        """The file has run: later imports find only the folder modules it imported."""
        self.closed = True

    def module(self, name: str) -> types.ModuleType | None:
        """The folder's module ``name`` run from its text (None: the folder has no such module,
        or an installed module has that name)."""
        if name in self.modules:
            return self.modules[name]
        path = str(self.folder / f"{name}.py")
        if self.given is not None:
            if self.closed and not self.is_installed(name):  # as at load, where it was the folder's
                raise ImportError(f"{name} is not imported at the top of the file: a strategies-folder module "
                                  "imported inside a function is not part of the strategy's code")
            text = self.given.get(name)
        elif Path(path).is_file() and not self.is_installed(name):
            if self.closed:
                raise ImportError(f"{path} is imported inside a function: import the strategies folder's "
                                  "modules at the top of the file (its code is part of the strategy's when the "
                                  "file loads)")
            self.stamps[path] = file_stamp(path)
            try:
                text = read_source(Path(path))
            except (OSError, UnicodeDecodeError, SyntaxError) as exc:
                raise ImportError(f"{path} cannot be read as Python source text ({exc})") from None
        else:
            text = None
        if text is None:
            return None
        self.texts[path] = text
        _LOADED_PATHS.add(path)
        module = _new_module(path, text)
        module.__dict__["__builtins__"] = self.namespace
        self.modules[name] = module  # before it runs: a circular import gets it partly run, as Python's
        exec(compile(text, path, "exec"), module.__dict__)  # noqa: S102 - the user's own module, as below
        return module

    def is_folder_package(self, top: str) -> bool:
        """Whether Python would import ``top`` from the strategies folder itself, as a package
        (``strategies._common`` run from the workspace root), asked once per name."""
        if top not in self.packages:
            self.packages[top] = _folder_package(top, self.folder)
        return self.packages[top]

    def is_installed(self, name: str) -> bool:
        """:func:`_installed` for the folder, asked once per name (``import numpy`` inside a
        strategy function runs on every call)."""
        if name not in self.installed:
            self.installed[name] = _installed(name, self.folder)
        return self.installed[name]


def _installed(name: str, folder: Path) -> bool:
    """Whether ``name`` is a module Python finds outside ``folder`` (the standard library, an
    installed package): the folder's file of that name is not what an ``import`` of it means."""
    if name in sys.builtin_module_names or name in sys.stdlib_module_names:
        return True
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):  # a module in sys.modules without a spec, say
        return name in sys.modules
    if spec is None or spec.origin in (None, "namespace"):  # a bare folder on sys.path (data/, results/) is no module
        return False
    return Path(spec.origin).parent.resolve() != folder


def _folder_package(top: str, folder: Path) -> bool:
    """Whether the top-level module ``top`` is ``folder`` seen as a package (namespace or not)."""
    if top in sys.builtin_module_names or top in sys.stdlib_module_names:
        return False
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return False
    places = list(spec.submodule_search_locations or ()) if spec is not None else []
    return any(Path(place).resolve() == folder.resolve() for place in places)


_NUMBA_CACHING = ("jit", "njit", "vectorize", "guvectorize", "cfunc")  # the decorators taking cache=
_NUMBA_PROXIES: dict[str, types.ModuleType] = {}


def _numba_in_memory(module: types.ModuleType) -> types.ModuleType:
    """``numba`` (or a module of it holding its decorators: ``from numba.core.decorators import
    njit`` kept the disk cache) as strategies-folder code imports it: its decorators ignore
    ``cache=True``.

    numba's disk cache finds machine code by the file's stamp and the function's bytecode, not
    the text that ran nor the constants and other modules' values it reads: an edited helper's
    constant, or a sweep's worker running the text its sweep began with, got another version's
    code (or numba's loader failed on the other version's module name). Folder code compiles in
    memory (again each time its file is loaded)."""
    if not any(callable(getattr(module, name, None)) for name in _NUMBA_CACHING):
        return module
    if module.__name__ not in _NUMBA_PROXIES:
        def no_disk_cache(decorator: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(decorator)
            def without_cache(*args: Any, **kwargs: Any) -> Any:
                kwargs.pop("cache", None)
                return decorator(*args, **kwargs)
            return without_cache

        proxy = types.ModuleType(module.__name__, module.__doc__)
        proxy.__dict__.update({name: no_disk_cache(getattr(module, name)) for name in _NUMBA_CACHING
                               if callable(getattr(module, name, None))})
        proxy.__getattr__ = lambda name: getattr(module, name)  # the rest is numba's (PEP 562)
        _NUMBA_PROXIES[module.__name__] = proxy
    return _NUMBA_PROXIES[module.__name__]


class _NoStrategy(StrategyError):
    """A file of the folder that declares no strategy (not an error for a module others import)."""


def load_text(path: str | Path, text: str, helpers: Mapping[str, str] | None = None) -> dict[str, StrategySpec]:
    """Run a strategy file's ``text`` (as the module of ``path``) and return its strategies
    by name, each with its origin. ``helpers`` (module name -> text) are the folder modules it
    may import, None to read them from the folder. StrategyError with the file and line when it
    cannot be run, declares none, or declares a strategy with a bad name or bad defaults."""
    path = str(Path(path).resolve())
    return _run_file(path, text, _FolderImports(Path(path).parent, helpers))


def _run_file(path: str, text: str, imports: _FolderImports) -> dict[str, StrategySpec]:
    _LOADED_PATHS.add(path)
    try:
        code = compile(text, path, "exec")
    except SyntaxError as exc:
        raise StrategyError(describe_error(exc, path)) from None
    # Running the file is importing the user's own strategy module (their folder, their
    # code), as ``import`` would; nothing received from a client is run this way.
    module = _new_module(path, text)
    module.__dict__["__builtins__"] = imports.namespace
    try:
        with _time_limit():
            exec(code, module.__dict__)  # noqa: S102 - see above
    except (Exception, SystemExit, LoadTimeout) as exc:  # noqa: BLE001 - any error of the user's module (a sys.exit too)
        sys.modules.pop(module.__name__, None)
        raise StrategyError(describe_error(exc, (path, *imports.texts))) from None
    imports.close()
    helpers = tuple(imports.texts.items())
    digest = folder_code_hash(text, helpers)
    imported = {id(v) for m in imports.modules.values() for v in vars(m).values() if isinstance(v, StrategySpec)}
    specs: dict[str, StrategySpec] = {}
    declared: dict[str, tuple[str, int]] = {}  # name -> (variable, id of the spec) that declared it first
    for variable, value in list(vars(module).items()):
        if id(value) in imported:  # a strategy of another file, imported: that file's (a copy made here is this one's)
            continue
        if isinstance(value, StrategySpec) and isinstance(value.name, str) and value.name in declared:
            first, first_id = declared[value.name]
            if first_id != id(value):  # (one spec under two variables is one strategy)
                line = _declaration_line(text, value.name)
                raise StrategyError(f"{path}:{line or 1}: strategy name {value.name!r} is declared twice in this "
                                    f"file ({first} and {variable}, which differ): rename one (a second one was "
                                    "ignored without a word)")
            continue
        if isinstance(value, StrategySpec):
            if isinstance(value.name, str):
                declared[value.name] = (variable, id(value))
            line = _declaration_line(text, value.name) if isinstance(value.name, str) else 0
            where = f"{path}:{line or 1}"
            try:
                check_name(value.name, "strategy name", STRATEGY)
                with _time_limit():  # (its constraints run here, the file's code too)
                    value.normalize()  # the declared defaults must be valid
            except (Exception, LoadTimeout) as exc:  # noqa: BLE001 - any declaration that breaks here: the file's error
                raise StrategyError(f"{where}: {describe_error(exc) if not isinstance(exc, ParamError) else exc}"
                                    ) from None
            origin = StrategyOrigin("user", path, digest, text, line, helpers)
            specs[value.name] = _exit_as_error(replace(value, origin=origin))
    if not specs:
        borrowed = sorted(v.name for v in vars(module).values() if id(v) in imported and isinstance(v.name, str))
        mine = (f" of its own ({', '.join(borrowed)} is another file's: make this file's with "
                "dataclasses.replace(SPEC, name=...))" if borrowed else "")
        raise _NoStrategy(f"{path}:1: declares no strategy{mine}: assign a StrategySpec at module level "
                          "(see `threadx strategy new NAME`)")
    return specs


class _NoExit:
    """A strategy function whose ``sys.exit()`` is a StrategyError naming its file and line: an
    exit is no exception to the sweeps', the checker's and the pages' handlers, so it ended the
    process that ran the strategy, with no word."""

    def __init__(self, fn: Callable[..., Any], spec_name: str, paths: tuple[str, ...]):
        self.fn, self.spec_name, self.paths = fn, spec_name, paths
        functools.update_wrapper(self, fn, updated=())  # its name and module (not a numba dispatcher's dict)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.fn(*args, **kwargs)
        except SystemExit as exc:
            raise StrategyError(f"strategy {self.spec_name!r} raised: {describe_error(exc, self.paths)}") from None


def _exit_as_error(spec: StrategySpec) -> StrategySpec:
    """``spec`` with each of its functions wrapped in :class:`_NoExit`."""
    names = ("indicators", "signals", "levels", "exits", "batch_signals")
    wrapped = {name: _NoExit(getattr(spec, name), spec.name, spec.origin.files) for name in names
               if getattr(spec, name) is not None}
    if spec.signal_rule is not None:
        wrapped["signal_rule"] = replace(spec.signal_rule,
                                         many=_NoExit(spec.signal_rule.many, spec.name, spec.origin.files))
    return replace(spec, **wrapped)


# The files a lookup of the folder is to run, handed first to a trial (set by the workstation's
# server: threadx.ui.user_code), which runs them in another process: [(key, path, text)] ->
# {key: outcome}, where an outcome with an "error" is that file's load error, without running it
# here (it crashed or hung that process, or failed there), and a key left out runs here.
LoadTrial = Callable[[list[tuple[str, str, str]]], Mapping[str, Mapping[str, Any]]]
_trial: LoadTrial | None = None


def set_load_trial(trial: LoadTrial | None) -> LoadTrial | None:
    """Have the files of the strategies folder that this process is about to run (new or
    changed) first run by ``trial`` (None: run here at once); returns the trial set before.
    The workstation's server sets one, so that a file whose top-level code crashes (a numba
    function reading outside an array) or never returns is an error of that file, not a server
    that dies or hangs."""
    global _trial
    with _LOCK:
        before, _trial = _trial, trial
    return before


_announce: Callable[[list[str]], ContextManager[Any]] | None = None


def set_load_announcer(announce: Callable[[list[str]], ContextManager[Any]] | None) -> None:
    """Have ``announce(file names)`` wrap the load of changed strategies-folder files (their
    trial and their run here): the workstation shows a spinner naming them, whichever page or
    sidebar call loads them first (a Save of a file whose top level takes 5 s left every page
    grey for 12 s without a word)."""
    global _announce
    _announce = announce


def tried_load(path: str, text: str) -> dict[str, Any]:
    """What loading the file ``path`` with ``text`` gives (run in a trial's process), as JSON:
    ``{"error": its load error or None, "no_strategy": ..., "imports": {path: [stamp or None,
    text hash]}}`` (the folder modules it ran, as the folder keeps them)."""
    loaded = _Folder._load(Path(path), (0, 0, 0, 0), text)
    return {"error": loaded.error, "no_strategy": loaded.no_strategy,
            "imports": {p: [list(then) if then else None, digest] for p, (then, digest) in loaded.imports.items()}}


@dataclass
class _File:
    stamp: tuple[int, int, int, int]  # file_stamp when read
    code_hash: str = ""  # of the text read
    specs: dict[str, StrategySpec] = field(default_factory=dict)
    error: str | None = None
    no_strategy: bool = False  # the error is that it declares none
    imports: dict[str, tuple[tuple[int, int, int, int] | None, str]] = field(default_factory=dict)
    # path -> (file_stamp, text_hash) of each folder module the file ran (stamp None: it was missing)
    watch: dict[str, tuple[int, int, int, int] | None] = field(default_factory=dict)
    # path -> file_stamp (None: none) of what else makes it load again: a file whose trial's process
    # crashed (which could not tell its imports) watches the folder and each file in it


def read_source(path: Path) -> str:
    """A Python file's text as Python reads it: UTF-8 by default, a byte-order mark dropped (a
    file saved as "UTF-8 with BOM" read "SyntaxError: invalid non-printable character U+FEFF"),
    or the encoding its ``# -*- coding: ... -*-`` line names."""
    with tokenize.open(path) as handle:
        return handle.read()


def _rewritten(path: Path, stamp: tuple[int, int, int, int], digest: str) -> bool:
    """Whether a file whose stamp is unchanged was still rewritten: possible within a coarse
    timestamp's tick (1-2 s on some file systems), so its text is compared while its last
    change (the later of mtime and ctime: an mtime put back leaves a new ctime) is that recent."""
    if time.time() - max(stamp[1], stamp[2]) / 1e9 > _COARSE_MTIME_S:
        return False
    try:
        return text_hash(read_source(path)) != digest
    except (OSError, UnicodeDecodeError, SyntaxError):
        return True


def _changed(path: Path, stamp: tuple[int, int, int, int] | None, digest: str) -> bool:
    """Whether ``path`` differs from when it was read at ``stamp`` with text hash ``digest``
    (stamp None: it did not exist then)."""
    now = stamp_or_none(path)
    if now is None:
        return stamp is not None
    return now != stamp or _rewritten(path, now, digest)


class _Folder:
    """The loaded state of one strategies folder."""

    def __init__(self, root: Path):
        self.root = root
        self.files: dict[Path, _File] = {}
        self.trying = False  # a thread runs changed files' load trial (the folder's lock released meanwhile)

    def changes(self) -> dict[Path, tuple[tuple[int, int, int, int], str]]:
        """The files added or changed since the last :meth:`apply`, and those importing a folder
        module that changed, with their stamps and texts (a file that cannot be read gets its
        error at once); removed ones are forgotten."""
        try:
            paths = sorted(p for p in self.root.glob("*.py") if p.is_file() and not p.name.startswith((".", "_")))
        except OSError:
            paths = []
        for gone in set(self.files) - set(paths):
            del self.files[gone]
        texts: dict[Path, tuple[tuple[int, int, int, int], str]] = {}
        for path in paths:
            try:
                stamp = file_stamp(path)
            except OSError:
                continue
            known = self.files.get(path)
            if (known is not None and known.stamp == stamp and not _rewritten(path, stamp, known.code_hash)
                    and not any(_changed(Path(p), *then) for p, then in known.imports.items())
                    and all(stamp_or_none(Path(p)) == then for p, then in known.watch.items())):
                continue
            try:
                texts[path] = stamp, read_source(path)
            except (OSError, UnicodeDecodeError, SyntaxError) as exc:
                self.files[path] = _File(stamp, error=f"{path}: cannot be read ({exc})")
        return texts

    def apply(self, texts: Mapping[Path, tuple[tuple[int, int, int, int], str]],
              tried: Mapping[str, Mapping[str, Any]]) -> None:
        """Load the changed files ``texts`` here, except those whose load trial (``tried``: the
        outcomes by path of :func:`set_load_trial`'s trial, {} without one) failed: a file that
        crashed, hung or failed in its own process is that error here, without running here."""
        for path, (stamp, text) in texts.items():
            outcome = tried.get(str(path))
            if outcome is None or outcome.get("error") is None:
                self.files[path] = self._load(path, stamp, text)
            else:
                self.files[path] = self._unrun(path, stamp, text, outcome)

    @staticmethod
    def _load(path: Path, stamp: tuple[int, int, int, int], text: str) -> _File:
        """The file's ``text`` run here: its strategies, or its error."""
        imports = _FolderImports(path.parent)
        loaded = _File(stamp, text_hash(text))
        try:
            loaded.specs = _run_file(str(path.resolve()), text, imports)
        except StrategyError as exc:
            loaded.error, loaded.no_strategy = str(exc), isinstance(exc, _NoStrategy)
        loaded.imports = {p: (stamp, text_hash(imports.texts[p]) if p in imports.texts else "")
                          for p, stamp in imports.stamps.items()}  # (one it could not read too: its fix reloads)
        loaded.imports.update((p, (None, "")) for p in imports.missing)
        return loaded

    def _unrun(self, path: Path, stamp: tuple[int, int, int, int], text: str, outcome: Mapping[str, Any]) -> _File:
        """The file whose trial failed (``outcome``: :func:`tried_load`'s, or a crash's), not run
        here. A crash's has no imports (its process could not tell them): the file is tried
        again when the folder or any file in it changes."""
        imports = outcome.get("imports")
        loaded = _File(stamp, text_hash(text), error=str(outcome["error"]), no_strategy=bool(outcome.get("no_strategy")))
        if imports is not None:
            loaded.imports = {p: (tuple(then) if then else None, digest) for p, (then, digest) in imports.items()}
            return loaded
        loaded.watch = {str(self.root): stamp_or_none(self.root)}
        try:
            others = [other for other in self.root.iterdir() if other.suffix == ".py" and other != path]
        except OSError:
            others = []
        loaded.watch.update((str(other), stamp_or_none(other)) for other in others)
        return loaded

    def resolved(self, known: Mapping[str, Any]) -> _Resolved:
        """Strategies by name, errors by file name and the names two files declare: a name taken by
        a built-in (``known``) is an error of its file, a name two files declare one of both (neither
        loads); a file declaring no strategy that another file imports is a module of shared code,
        not an error."""
        specs: dict[str, StrategySpec] = {}
        errors: dict[str, str] = {}
        contested: dict[str, str] = {}
        imported = {p for loaded in self.files.values() for p, (stamp, _) in loaded.imports.items() if stamp}
        owners: dict[str, list[StrategySpec]] = {}
        for path, loaded in self.files.items():
            if loaded.error is not None:
                if not (loaded.no_strategy and str(path) in imported):
                    errors[path.name] = loaded.error
                continue
            for name, spec in loaded.specs.items():
                if name in known:
                    errors[path.name] = f"{spec.origin.where}: strategy name {name!r} is a built-in strategy; rename it"
                    continue
                owners.setdefault(name, []).append(spec)
        for name, declaring in owners.items():
            if len(declaring) == 1:
                specs[name] = declaring[0]
                continue
            # neither is loaded: the file first in name order took the name (a copy saved as
            # a_experiment.py ran in place of the original, which was the one listed as broken)
            files = [Path(spec.origin.path).name for spec in declaring]
            for spec, file in zip(declaring, files):
                others = " and ".join(f for f in files if f != file)
                errors[file] = (f"{spec.origin.where}: strategy name {name!r} is also declared in {others}: rename "
                                "one (neither is loaded while both declare it)")
            contested[name] = errors[files[0]]
        return _Resolved(specs, errors, contested)


_FOLDERS: dict[Path, _Folder] = {}


def _current(known: Mapping[str, Any]) -> _Resolved:
    """The folder's strategies as its files are now. Changed files are run first in a process of
    their own when a load trial is set (the workstation), without the folder's lock: a file whose
    top level loops for the trial's 30 s held every page of every tab that long. Meanwhile other
    threads are served what was loaded before (the file's previous version, or not yet there)."""
    root = strategy_dir().expanduser().resolve()
    with _LOCK:
        folder = _FOLDERS.setdefault(root, _Folder(root))
        trial = _trial
        if folder.trying:
            return folder.resolved(known)
        texts = folder.changes()
        if not texts or trial is None:
            folder.apply(texts, {})
            return folder.resolved(known)
        folder.trying = True
    tried = None
    try:  # (the announcer inside: one that failed left the folder "trying" for good, no file loaded again)
        with (_announce or _quietly)([path.name for path in texts]):
            tried = trial([(str(path), str(path.resolve()), text) for path, (_, text) in texts.items()])
            with _LOCK:
                folder.apply(texts, tried)
    finally:
        with _LOCK:
            folder.trying = False
    with _LOCK:
        return folder.resolved(known)


def _quietly(names: list[str]) -> ContextManager[Any]:  # noqa: ARG001 - the announcer's signature
    return contextlib.nullcontext()


def _known() -> Mapping[str, Any]:
    from threadx.strategy.base import list_registered

    return list_registered()


def strategies(known: Mapping[str, Any] | None = None) -> dict[str, StrategySpec]:
    """The strategies of the strategies folder by name, as the files are now."""
    return _current(_known() if known is None else known)[0]


def load_errors(known: Mapping[str, Any] | None = None) -> dict[str, str]:
    """File name -> why it (or one of its strategies) could not be loaded, with file and line."""
    return _current(_known() if known is None else known)[1]


def get(name: str, known: Mapping[str, Any] | None = None) -> StrategySpec:
    """The folder's strategy ``name`` as its file is now (ParamError when no strategy has that
    name; StrategyError with the file and line when the file that declares it is broken)."""
    known = _known() if known is None else known
    specs, errors, contested = _current(known)
    if name in specs:
        return specs[name]
    if name in contested:
        raise StrategyError(f"strategy {name!r} cannot be loaded: {contested[name]}")
    for file_name, error in errors.items():
        if Path(file_name).stem == name:
            raise StrategyError(f"strategy {name!r} cannot be loaded: {error}")
    available = sorted({*known, *specs})
    # a file that cannot load may declare it under another file name: say which files failed
    broken = (f"; {len(errors)} file(s) of the strategies folder cannot be loaded, e.g. "
              f"{next(iter(errors.values()))}" if errors else "")
    raise ParamError(f"unknown strategy {name!r}; available: {', '.join(available)}{broken}")


_BY_HASH: dict[tuple[str, str], StrategySpec] = {}


def from_origin(name: str, origin: StrategyOrigin) -> StrategySpec:
    """The strategy ``name`` as the code of ``origin`` declares it (a sweep's worker rebuilds
    the strategy the sweep started with, whatever the file holds now); kept per process."""
    key = (name, origin.code_hash)
    with _LOCK:
        found = _BY_HASH.get(key)
        if found is None:
            current = strategies().get(name)
            if current is not None and current.code_hash == origin.code_hash:
                return current  # the file holds that code now: the strategy already loaded
        if found is None:
            if origin.text is None:
                raise ThreadXError(f"strategy {name!r}: its origin carries no source text")
            specs = load_text(origin.path or f"{name}.py", origin.text, origin.helper_texts())
            if name not in specs:
                raise StrategyError(f"{origin.path}: no longer declares strategy {name!r}")
            if len(_BY_HASH) > 64:
                _BY_HASH.clear()
            found = _BY_HASH[key] = specs[name]
        return found
