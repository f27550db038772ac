"""A file's stamp: how memos of what was read from a file notice that the file changed.

A memo keyed on the mtime and size alone serves stale content when a file is rewritten with
the same size and its mtime is put back (``cp -p``, ``rsync -t``, ``os.utime``) or falls in the
same tick of a coarse clock. The inode changes when a file is replaced by a rename (atomic
writes), and the ctime whenever its content or its times are set, so the stamp covers those.
On Windows ``st_ctime`` is the creation time: there a rewrite in place that puts the mtime back
is not seen (the atomic writes ThreadX itself makes are, by their new file).
"""
from __future__ import annotations

import os


def file_stamp(path: str | os.PathLike) -> tuple[int, int, int, int]:
    """(inode, mtime_ns, ctime_ns, size) of ``path``; OSError when it cannot be read."""
    st = os.stat(path)
    return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)


def stamp_or_none(path: str | os.PathLike) -> tuple[int, int, int, int] | None:
    """:func:`file_stamp` of ``path``, None when it has none (missing, unreadable)."""
    try:
        return file_stamp(path)
    except OSError:
        return None
