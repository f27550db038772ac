"""Files written whole or not at all: a reader never finds half of one, a failure (a full
disk) leaves what was there."""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import psutil

from threadx.errors import ThreadXError, os_reason


def temp_beside(path: Path) -> Path:
    """A temporary name beside ``path`` that says whose it is (``.<name>.<pid>-<random>.tmp``):
    :func:`remove_dead_temps` finds those of writers that died."""
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


def remove_dead_temps(path: Path) -> None:
    """Delete the temporaries beside ``path`` (of its name, :func:`temp_beside`) whose writer
    process is gone: a writer killed mid-write left them, and nothing else would remove them."""
    prefix = f".{path.name}."
    try:
        entries = [p for p in path.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(".tmp")]
    except OSError:
        return
    for entry in entries:
        pid = entry.name[len(prefix):-len(".tmp")].split("-", 1)[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file beside it, synced and renamed over it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_atomically(path: Path, data: bytes, what: str) -> None:
    """Write ``data`` to ``path`` whole or not at all (:func:`atomic_write_bytes`); an OS
    failure (a full disk, no permission) is one ThreadXError naming ``what`` and the file,
    which keeps its earlier content.

    >>> save_atomically(Path("/proc/no/such.json"), b"{}", "the walk-forward")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    threadx.errors.ThreadXError: cannot save the walk-forward to /proc/no/such.json: No such file or directory; ...
    """
    existed = path.exists()
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        kept = f"{path.name} is unchanged" if existed else "nothing was written"
        raise ThreadXError(f"cannot save {what} to {path}: {os_reason(exc)}; {kept}") from exc
