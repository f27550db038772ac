"""Files written whole or not at all: a reader never finds half of one, a failure (a full
disk) leaves what was there."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from threadx.errors import ThreadXError, os_reason


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file beside it, synced and renamed over it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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
