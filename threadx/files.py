"""Files written whole or not at all: a reader never finds half of one, a failure (a full
disk) leaves what was there."""
from __future__ import annotations

import functools
import hashlib
import os
import shutil
import socket
import tempfile
import time
import uuid
from pathlib import Path

import psutil

from threadx.errors import ThreadXError, os_reason


STALE_TEMP_S = 3600.0  # a temporary this old is stale whoever wrote it (a writer on another machine)


@functools.cache
def _host() -> str:
    """This machine, as a temporary file's name says it: a short hash of its host name (hashed
    once per process: every atomic write names it)."""
    return hashlib.blake2b(socket.gethostname().encode(), digest_size=4).hexdigest()


def writer_tag() -> str:
    """Who writes a temporary file: this machine (:func:`_host`) and process, ``<host>-<pid>``
    (the pid read each time: a forked worker is another writer); :func:`dead_writer` reads it back."""
    return f"{_host()}-{os.getpid()}"


def dead_writer(tag: str, path: Path) -> bool:
    """Whether the writer ``tag`` (:func:`writer_tag`) of the temporary ``path`` is gone: a
    process of this machine that no longer exists, or any writer an hour after its last write
    (one of another machine sharing the folder cannot be asked)."""
    try:
        if time.time() - path.stat().st_mtime > STALE_TEMP_S:
            return True
    except OSError:
        return False
    host, _, pid = tag.partition("-")
    return host == _host() and pid.isdigit() and not psutil.pid_exists(int(pid))


def temp_beside(path: Path) -> Path:
    """A temporary name beside ``path`` that says whose it is (``.<name>.<host>-<pid>-<random>.tmp``):
    :func:`remove_dead_temps` finds those of writers that died."""
    return path.with_name(f".{path.name}.{writer_tag()}-{uuid.uuid4().hex[:8]}.tmp")


def remove_dead_temps(path: Path) -> None:
    """Delete the temporaries beside ``path`` (of its name, :func:`temp_beside`) whose writer is
    gone (:func:`dead_writer`): a writer killed mid-write left them, and nothing else would."""
    prefix = f".{path.name}."
    try:
        entries = [p for p in path.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(".tmp")]
    except OSError:
        return
    for entry in entries:
        tag = entry.name[len(prefix):-len(".tmp")].rpartition("-")[0]  # (<host>-<pid>, less the random part)
        if dead_writer(tag, entry):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file beside it, synced and renamed over it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{writer_tag()}-", suffix=".tmp")
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
