"""Version of a piece of code from its source: a hash of the files that define it.

Caches whose content depends on code (the indicator disk cache, the GPU split profile)
store this hash beside their entries and ignore an entry written by other code, so an
edited kernel never serves stale values. Hashing whole source files is coarse (a comment
edit also changes the hash) but safe: a stale entry can only be recomputed, never served.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import os
import types
from pathlib import Path
from typing import Any

__all__ = ["source_file", "source_hash"]


def source_file(obj: Any) -> Path:
    """The source file of a module, function, class or numba dispatcher, or a path itself."""
    if isinstance(obj, (str, os.PathLike)):
        return Path(obj).resolve()
    if isinstance(obj, types.ModuleType):
        return Path(obj.__file__).resolve()
    target = getattr(obj, "py_func", obj)  # a numba dispatcher wraps the Python function
    path = inspect.getsourcefile(target)
    if path is None:
        raise TypeError(f"cannot tell the source file of {obj!r}")
    return Path(path).resolve()


@functools.lru_cache(maxsize=None)
def _files_hash(paths: tuple[Path, ...]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def source_hash(*objects: Any) -> str:
    """16 hex digits of sha256 over the source files of ``objects``, in the given order.

    Each object is a module, a function, a class, a numba dispatcher or a file path; a
    file named twice is hashed once. Computed once per process for a given set of files.
    """
    paths = tuple(dict.fromkeys(source_file(obj) for obj in objects))
    return _files_hash(paths)
