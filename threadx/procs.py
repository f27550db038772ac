"""Process liveness: is a recorded pid still the process that was recorded?

Jobs and shared-memory segments record their owner's pid and start time; a pid alone
can be reused by another process after the owner died.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psutil


def live_process(pid: int | None, create_time: float | None = None) -> "psutil.Process | None":
    """The live psutil.Process of ``pid`` (None when gone, a zombie, or a reused pid)."""
    if not pid:
        return None
    import psutil

    try:
        proc = psutil.Process(int(pid))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        if create_time is not None and abs(proc.create_time() - float(create_time)) > 1.0:
            return None  # the pid was reused by another process
        return proc
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:  # exists, owned by someone else: it cannot be ours
        return None
