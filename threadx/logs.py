"""The log: a size-bounded rotating file in the workspace, and the CLI's console verbosity.

Records go to the ``threadx`` logger; :func:`logger` attaches the file handler on first use
(``logging.file``, default ``<results_dir>/logs/threadx.log``; it rotates at
``logging.max_bytes`` keeping ``logging.backups`` older files, with the standard
:class:`logging.handlers.RotatingFileHandler`). Each run, job and error is one record with
its run or job id; sweeps never log per combo. A log that cannot be written (read-only
folder, full disk) is dropped with one warning: logging never breaks a run.
"""
from __future__ import annotations

import logging
import sys
import threading
from collections import deque
from contextlib import contextmanager
from typing import Iterator
from logging.handlers import RotatingFileHandler
from pathlib import Path

NAME = "threadx"
FILE_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(message)s"
# extra= of a record the console must not print: an error the caller reports anyway (the CLI's
# one ``error:`` line)
FILE_ONLY = {"threadx_console": False}
_FILE_KEY: tuple | None = None  # (path, max_bytes, backups, level) of the handler in place
_FAILED: set[str] = set()  # log files that could not be written (warned once each)
_MUTED = threading.local()  # set in a thread whose records are dropped (see muted)


class _MuteFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:  # noqa: A003 - logging's name
        return not getattr(_MUTED, "on", False)


_MUTE = _MuteFilter()  # on each handler too: a logger's own filter passes the records of its children
logging.getLogger(NAME).addFilter(_MUTE)


@contextmanager
def muted() -> Iterator[None]:
    """Drop this thread's records meanwhile (the kernels' warm-up backtests are not the user's
    runs); other threads keep logging."""
    before = getattr(_MUTED, "on", False)
    _MUTED.on = True
    try:
        yield
    finally:
        _MUTED.on = before


class _Handler(RotatingFileHandler):
    """A rotating file handler that, when writing fails, removes itself and warns once."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        exc = sys.exc_info()[1]
        _drop(self, f"cannot write the log file {self.baseFilename}: {exc}")


def _drop(handler: logging.Handler | None, reason: str) -> None:
    global _FILE_KEY
    log = logging.getLogger(NAME)
    if handler is not None:
        log.removeHandler(handler)
        try:
            handler.close()
        except Exception:  # noqa: BLE001 - closing a broken file
            pass
        _FAILED.add(getattr(handler, "baseFilename", ""))
    _FILE_KEY = ("failed", reason)
    log.warning("%s; logging to the file is off", reason)


def _file_handler() -> _Handler | None:
    return next((h for h in logging.getLogger(NAME).handlers if isinstance(h, _Handler)), None)


def ensure_file() -> Path | None:
    """Attach (or re-attach, when the settings changed) the rotating file handler; returns the
    log file, or None when it cannot be written (warned once)."""
    global _FILE_KEY
    from threadx.settings_file import resolve

    r = resolve()
    path = r.log_file().absolute()
    key = (str(path), int(r["logging.max_bytes"]), int(r["logging.backups"]), r["logging.level"])
    log = logging.getLogger(NAME)
    if key == _FILE_KEY:
        return path
    if str(path) in _FAILED:
        return None
    old = _file_handler()
    if old is not None:
        log.removeHandler(old)
        old.close()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = _Handler(path, maxBytes=key[1], backupCount=key[2], encoding="utf-8", delay=False)
    except OSError as exc:
        _FILE_KEY = key
        _FAILED.add(str(path))
        log.warning("cannot open the log file %s: %s; logging to the file is off", path, exc.strerror or exc)
        return None
    handler.setLevel(key[3])
    handler.setFormatter(logging.Formatter(FILE_FORMAT))
    handler.addFilter(_MUTE)
    log.addHandler(handler)
    _FILE_KEY = key
    _set_level()
    return path


def logger() -> logging.Logger:
    """The ``threadx`` logger with its file attached (never raises)."""
    try:
        ensure_file()
    except Exception:  # noqa: BLE001 - a settings problem is reported by the run itself
        pass
    return logging.getLogger(NAME)


class _ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def _for_console(record: logging.LogRecord) -> bool:
    return getattr(record, "threadx_console", True)


def set_console(level: str | int) -> None:
    """Records of ``level`` and above also go to stderr (the CLI: WARNING, ``--verbose``
    DEBUG, ``--quiet`` ERROR)."""
    log = logging.getLogger(NAME)
    for handler in [h for h in log.handlers if getattr(h, "_threadx_console", False)]:
        log.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._threadx_console = True  # type: ignore[attr-defined]
    handler.setLevel(level)
    handler.setFormatter(_ConsoleFormatter())
    handler.addFilter(_for_console)
    handler.addFilter(_MUTE)
    log.addHandler(handler)
    log.propagate = False  # the console handler prints them; no second copy from the root logger
    _set_level()


def _set_level() -> None:
    log = logging.getLogger(NAME)
    levels = [h.level for h in log.handlers] or [logging.WARNING]
    log.setLevel(min(levels))


def reset() -> None:
    """Remove the handlers this module attached (tests, and the CLI between calls)."""
    global _FILE_KEY
    log = logging.getLogger(NAME)
    for handler in list(log.handlers):
        if isinstance(handler, _Handler) or getattr(handler, "_threadx_console", False):
            log.removeHandler(handler)
            handler.close()
    log.propagate = True
    log.setLevel(logging.NOTSET)
    _FILE_KEY = None
    _FAILED.clear()


def tail(lines: int = 50, path: str | Path | None = None) -> list[str]:
    """The last ``lines`` lines of the log file ([] when there is none)."""
    if path is None:
        from threadx.settings_file import resolve

        path = resolve().log_file()
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return [line.rstrip("\n") for line in deque(fh, maxlen=max(0, int(lines)))]
    except OSError:
        return []
