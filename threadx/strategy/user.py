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

A file that cannot be loaded (a syntax error, an exception at import, no strategy, a name
taken by a built-in or another file) is reported with its file and line by
:func:`load_errors`, and every other strategy keeps working.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import re
import sys
import threading
import time
import traceback
import types
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from threadx.config import settings
from threadx.errors import ParamError, StrategyError, ThreadXError
from threadx.filestamp import file_stamp
from threadx.names import STRATEGY, check_name
from threadx.strategy.base import StrategyOrigin, StrategySpec

__all__ = ["strategy_dir", "strategies", "get", "load_errors", "load_text", "code_location", "describe_error",
           "from_origin", "strategy_code_errors"]

_MODULE_PREFIX = "threadx_user_strategies"
_LOADED_PATHS: set[str] = set()  # files of the strategies loaded in this process (for error locations)
_LOCK = threading.RLock()
_COARSE_MTIME_S = 2.5  # a file modified this recently is compared by content (coarse file times)


def strategy_dir() -> Path:
    """The strategies folder of the current settings (it may not exist yet)."""
    return settings().strategy_dir


def text_hash(text: str) -> str:
    """16 hex digits of sha256 of a strategy file's text (its code hash)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def code_location(exc: BaseException, path: str | None = None) -> str | None:
    """``file:line`` of the innermost traceback frame in ``path`` (a strategy file), or,
    without ``path``, in any strategies-folder file loaded in this process; None when no
    frame qualifies. A SyntaxError gives its own file and line."""
    paths = {path} if path is not None else _LOADED_PATHS
    if isinstance(exc, SyntaxError) and exc.filename in paths:
        return f"{exc.filename}:{exc.lineno or 0}"
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename in paths:
            found = f"{frame.filename}:{frame.lineno}"
    return found


def describe_error(exc: BaseException, path: str | None = None) -> str:
    """One line for an exception raised by strategy code: ``file:line: Type: message``."""
    where = code_location(exc, path)
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
        raise StrategyError(f"strategy {spec.name!r} raised: {describe_error(exc, spec.origin.path)}") from exc


def _declaration_line(text: str, name: str) -> int:
    """The line of ``name="..."`` (the strategy's declaration) in a file's text, else 0."""
    match = re.search(r"""name\s*=\s*["']""" + re.escape(name) + r"""["']""", text)
    return text.count("\n", 0, match.start()) + 1 if match else 0


def load_text(path: str | Path, text: str) -> dict[str, StrategySpec]:
    """Run a strategy file's ``text`` (as the module of ``path``) and return its strategies
    by name, each with its origin. StrategyError with the file and line when it cannot be
    run, declares none, or declares a strategy with a bad name or bad defaults."""
    path = str(Path(path).resolve())
    _LOADED_PATHS.add(path)
    digest = text_hash(text)
    module_name = f"{_MODULE_PREFIX}.{re.sub(r'[^0-9a-zA-Z_]', '_', Path(path).stem)}_{digest}"
    try:
        code = compile(text, path, "exec")
    except SyntaxError as exc:
        raise StrategyError(describe_error(exc, path)) from None
    # Running the file is importing the user's own strategy module (their folder, their
    # code), as ``import`` would; nothing received from a client is run this way.
    module = types.ModuleType(module_name)
    module.__file__ = path
    sys.modules.setdefault(_MODULE_PREFIX, types.ModuleType(_MODULE_PREFIX))
    stale = [m for m in sys.modules if m.rsplit("_", 1)[0] == module_name.rsplit("_", 1)[0] and m != module_name]
    for old in stale:  # an earlier version of this file (its strategies keep their own globals)
        sys.modules.pop(old, None)
    sys.modules[module_name] = module  # dataclasses look a module up by name
    try:
        exec(code, module.__dict__)  # noqa: S102 - see above
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - any error of the user's module (a sys.exit too)
        sys.modules.pop(module_name, None)
        raise StrategyError(describe_error(exc, path)) from None
    specs: dict[str, StrategySpec] = {}
    for value in list(vars(module).values()):
        if isinstance(value, StrategySpec) and not (isinstance(value.name, str) and value.name in specs):
            line = _declaration_line(text, value.name) if isinstance(value.name, str) else 0
            where = f"{path}:{line or 1}"
            try:
                check_name(value.name, "strategy name", STRATEGY)
                value.normalize()  # the declared defaults must be valid
            except Exception as exc:  # noqa: BLE001 - any declaration that breaks here: the file's error
                raise StrategyError(f"{where}: {describe_error(exc) if not isinstance(exc, ParamError) else exc}"
                                    ) from None
            origin = StrategyOrigin("user", path, digest, text, line)
            specs[value.name] = _exit_as_error(replace(value, origin=origin))
    if not specs:
        raise StrategyError(f"{path}:1: declares no strategy: assign a StrategySpec at module level "
                            "(see `threadx strategy new NAME`)")
    return specs


class _NoExit:
    """A strategy function whose ``sys.exit()`` is a StrategyError naming its file and line: an
    exit is no exception to the sweeps', the checker's and the pages' handlers, so it ended the
    process that ran the strategy, with no word."""

    def __init__(self, fn: Callable[..., Any], spec_name: str, path: str):
        self.fn, self.spec_name, self.path = fn, spec_name, path
        functools.update_wrapper(self, fn, updated=())  # its name and module (not a numba dispatcher's dict)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.fn(*args, **kwargs)
        except SystemExit as exc:
            raise StrategyError(f"strategy {self.spec_name!r} raised: {describe_error(exc, self.path)}") from None


def _exit_as_error(spec: StrategySpec) -> StrategySpec:
    """``spec`` with each of its functions wrapped in :class:`_NoExit`."""
    names = ("indicators", "signals", "levels", "exits", "batch_signals")
    wrapped = {name: _NoExit(getattr(spec, name), spec.name, spec.origin.path) for name in names
               if getattr(spec, name) is not None}
    if spec.signal_rule is not None:
        wrapped["signal_rule"] = replace(spec.signal_rule,
                                         many=_NoExit(spec.signal_rule.many, spec.name, spec.origin.path))
    return replace(spec, **wrapped)


@dataclass
class _File:
    stamp: tuple[int, int, int, int]  # file_stamp when read
    code_hash: str = ""  # of the text read
    specs: dict[str, StrategySpec] = field(default_factory=dict)
    error: str | None = None


class _Folder:
    """The loaded state of one strategies folder."""

    def __init__(self, root: Path):
        self.root = root
        self.files: dict[Path, _File] = {}

    def refresh(self) -> None:
        """Re-read the files added or changed since the last call; forget removed ones."""
        try:
            paths = sorted(p for p in self.root.glob("*.py") if p.is_file() and not p.name.startswith((".", "_")))
        except OSError:
            paths = []
        for gone in set(self.files) - set(paths):
            del self.files[gone]
        for path in paths:
            try:
                stamp = file_stamp(path)
            except OSError:
                continue
            known = self.files.get(path)
            if known is not None and known.stamp == stamp and not self._maybe_rewritten(path, stamp, known):
                continue
            self.files[path] = self._load(path, stamp)

    @staticmethod
    def _maybe_rewritten(path: Path, stamp: tuple[int, int, int, int], known: _File) -> bool:
        """Whether a file whose stamp is unchanged was still rewritten: possible within a coarse
        timestamp's tick (1-2 s on some file systems), so its text is compared while its last
        change (the later of mtime and ctime: an mtime put back leaves a new ctime) is that recent."""
        if time.time() - max(stamp[1], stamp[2]) / 1e9 > _COARSE_MTIME_S:
            return False
        try:
            return text_hash(path.read_text(encoding="utf-8")) != known.code_hash
        except (OSError, UnicodeDecodeError):
            return True

    @staticmethod
    def _load(path: Path, stamp: tuple[int, int, int, int]) -> _File:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            return _File(stamp, error=f"{path}: cannot be read ({exc})")
        try:
            return _File(stamp, text_hash(text), specs=load_text(path, text))
        except StrategyError as exc:
            return _File(stamp, text_hash(text), error=str(exc))

    def resolved(self, known: Mapping[str, Any]) -> tuple[dict[str, StrategySpec], dict[str, str]]:
        """(strategies by name, errors by file name): a name taken by a built-in (``known``)
        or by an earlier file (in name order) is an error of the later file."""
        specs: dict[str, StrategySpec] = {}
        errors: dict[str, str] = {}
        for path, loaded in self.files.items():
            if loaded.error is not None:
                errors[path.name] = loaded.error
                continue
            for name, spec in loaded.specs.items():
                clash = "a built-in strategy" if name in known else (
                    f"already declared in {Path(specs[name].origin.path).name}" if name in specs else None)
                if clash:
                    errors[path.name] = f"{spec.origin.where}: strategy name {name!r} is {clash}; rename it"
                    continue
                specs[name] = spec
        return specs, errors


_FOLDERS: dict[Path, _Folder] = {}


def _current(known: Mapping[str, Any]) -> tuple[dict[str, StrategySpec], dict[str, str]]:
    root = strategy_dir().expanduser().resolve()
    with _LOCK:
        folder = _FOLDERS.setdefault(root, _Folder(root))
        folder.refresh()
        return folder.resolved(known)


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
    specs, errors = _current(known)
    if name in specs:
        return specs[name]
    for file_name, error in errors.items():
        if Path(file_name).stem == name:
            raise StrategyError(f"strategy {name!r} cannot be loaded: {error}")
    available = sorted({*known, *specs})
    raise ParamError(f"unknown strategy {name!r}; available: {', '.join(available)}")


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
            specs = load_text(origin.path or f"{name}.py", origin.text)
            if name not in specs:
                raise StrategyError(f"{origin.path}: no longer declares strategy {name!r}")
            if len(_BY_HASH) > 64:
                _BY_HASH.clear()
            found = _BY_HASH[key] = specs[name]
        return found
