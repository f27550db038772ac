"""Names of the sweeps' shared-memory segments, and reclaim of those that dead sweeps left.

A segment is named ``threadx_<run>_<pid>_<created>_<rand>``: the run id (shortened with
a hash where the platform limits names: macOS allows 31 characters), the owner's pid,
the owner's process start time (whole seconds, base 36: a reused pid has another one)
and a random suffix. The resource tracker unlinks the segment of a sweep that dies, but
not when it dies with it (SIGKILL or SIGHUP to the whole process group: a closed
terminal, the job registry's force-kill). :func:`reclaim` removes the segments whose
owner is gone; it runs at each sweep start and in ``threadx cache clean``. It lists
``/dev/shm`` (Linux); where POSIX shared memory cannot be listed it finds nothing.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import sys
from dataclasses import dataclass
from multiprocessing import shared_memory
from pathlib import Path

from threadx.errors import ThreadXError, os_reason
from threadx.units import format_bytes

PREFIX = "threadx_"
SHM_DIR = Path("/dev/shm")
# longest name without the leading '/': macOS PSHMNAMLEN is 31 with it, Linux NAME_MAX 255
MAX_NAME = 30 if sys.platform == "darwin" else 250
_PATTERN = re.compile(rf"{PREFIX}(?P<run>.+)_(?P<pid>[0-9]+)_(?P<created>[0-9a-z]+)_(?P<rand>[0-9a-f]+)")
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Segment:
    """A sweep segment found in ``/dev/shm``."""

    name: str
    run: str  # the run id, or its shortened label (see :func:`run_label`)
    pid: int
    created: int  # owner's process start time, whole seconds since the epoch
    nbytes: int

    def owner_alive(self) -> bool:
        """True while the process that created it runs (not a zombie, not a reused pid)."""
        from threadx.procs import live_process

        return live_process(self.pid, self.created) is not None

    def belongs_to(self, run_id: str) -> bool:
        """True if the segment was created for ``run_id``."""
        return run_label(run_id, len(self.run)) == self.run


def run_label(run_id: str, room: int) -> str:
    """``run_id`` itself when it fits in ``room`` characters, else its head and a hash."""
    if len(run_id) <= room:
        return run_id
    digest = hashlib.blake2b(run_id.encode(), digest_size=8).hexdigest()
    if room < 12:
        return digest[:max(room, 4)]
    return f"{run_id[:room - 9]}-{digest[:8]}"


def _base36(value: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        value, rest = divmod(value, 36)
        out = digits[rest] + out
        if not value:
            return out


def _start_time() -> int:
    import psutil

    return int(psutil.Process().create_time())


def segment_name(run_id: str) -> str:
    """A new segment name for ``run_id`` owned by this process (at most :data:`MAX_NAME`)."""
    tail = f"_{os.getpid()}_{_base36(_start_time())}_{secrets.token_hex(2)}"
    return PREFIX + run_label(run_id, MAX_NAME - len(PREFIX) - len(tail)) + tail


def create_segment(run_id: str, size: int) -> shared_memory.SharedMemory:
    """A new shared-memory block of ``size`` bytes named for ``run_id`` and this process."""
    for _ in range(20):
        try:
            return shared_memory.SharedMemory(name=segment_name(run_id), create=True, size=size)
        except FileExistsError:  # the random suffix collided: draw another
            continue
        except OSError as exc:  # (a full /dev/shm or a file size limit read as "while storing results")
            raise ThreadXError(f"cannot make the shared memory that run {run_id}'s workers read its data from "
                               f"({format_bytes(size)} in {SHM_DIR}): {os_reason(exc)}; free space there or raise "
                               "the file size limit (ulimit -f), or run with fewer indicator params or "
                               "executor inline") from exc
    raise FileExistsError(f"no free shared-memory name for run {run_id}")


def parse(name: str, nbytes: int = 0) -> Segment | None:
    """The Segment a name describes, or None for any other name."""
    match = _PATTERN.fullmatch(name)
    if match is None:
        return None
    return Segment(name, match["run"], int(match["pid"]), int(match["created"], 36), nbytes)


def listing_supported() -> bool:
    """True where segments can be listed (a ``/dev/shm`` folder: Linux)."""
    return SHM_DIR.is_dir()


def list_segments() -> list[Segment]:
    """This user's sweep segments in ``/dev/shm`` (none where it does not exist)."""
    found = []
    try:
        entries = list(os.scandir(SHM_DIR))
    except OSError:
        return found
    uid = os.getuid() if hasattr(os, "getuid") else None
    for entry in entries:
        if not entry.name.startswith(PREFIX):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        segment = parse(entry.name, st.st_size)
        if segment is not None and (uid is None or st.st_uid == uid):
            found.append(segment)
    return sorted(found, key=lambda s: s.name)


def mapped_segments() -> set[str]:
    """Names of the segments some running process maps now (``/proc/*/maps``, Linux).

    A mapped segment is in use whatever its owner's pid check says: the pid + start time
    test can misjudge a live owner after a wall-clock step or across pid namespaces."""
    names: set[str] = set()
    marker = f"{SHM_DIR}/{PREFIX}"
    for maps in Path("/proc").glob("[0-9]*/maps"):
        try:
            text = maps.read_text(errors="replace")
        except OSError:  # gone meanwhile, or another user's process
            continue
        for line in text.splitlines():
            at = line.find(marker)
            if at >= 0:
                names.add(line[at + len(str(SHM_DIR)) + 1:].split()[0])
    return names


def reclaim(dry_run: bool = False) -> list[Segment]:
    """Unlink the segments whose owner process is gone; returns them (only listed with
    ``dry_run``). Never raises: a segment that cannot be removed is left and skipped."""
    removed = []
    orphans = []
    for segment in list_segments():
        try:
            if not segment.owner_alive():
                orphans.append(segment)
        except (OSError, ImportError) as exc:  # no psutil
            _log.debug("cannot check the owner of %s: %s", segment.name, exc)
    # (read only when the pid check finds an orphan: the scan opens every process's maps, 0.16 s
    # of a 1,860-combo sweep on a busy desktop with another sweep's segments in /dev/shm)
    mapped = mapped_segments() if orphans else set()
    for segment in orphans:
        try:
            if segment.name in mapped:
                continue
            if not dry_run:
                (SHM_DIR / segment.name).unlink()  # shm_unlink is an unlink in /dev/shm on Linux
        except OSError as exc:  # removed meanwhile, not ours
            _log.debug("cannot reclaim %s: %s", segment.name, exc)
            continue
        removed.append(segment)
    if removed and not dry_run:
        _log.info("reclaimed %d shared-memory segments of dead sweeps (%d bytes)", len(removed),
                  sum(s.nbytes for s in removed))
    return removed
