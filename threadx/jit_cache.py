"""Where numba caches threadx's compiled kernels: one folder per version of their sources.

numba keys a cached function on the file that defines it alone, while threadx's kernels inline
code and constants from other modules (the portfolio loop runs the engine's ``step``; every
kernel reads ``layout``'s and the contract's constants). A change to the engine left the
portfolio loop running its old compiled code, silently (a liquidation fix showed in single
backtests and not in portfolios). So the cache folder is named by a hash of every source the
kernels are compiled from (:data:`JIT_SOURCES`): a change to any of them compiles afresh.

:func:`use_versioned_cache` (called when ``threadx`` is imported, before any kernel module)
points numba there: ``NUMBA_CACHE_DIR`` for this process and its children, or numba's config
when numba was imported first. The folder is ``threadx/__pycache__/numba/<hash>`` where the
package can be written, else ``~/.cache/threadx/numba/<hash>``; under a ``NUMBA_CACHE_DIR`` of
the user's own, ``<that>/threadx/<hash>``. :func:`prune` removes the folders of other versions.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
JIT_SOURCES = ("contract.py", "engine/layout.py", "engine/kernel.py", "engine/portfolio_loop.py",
               "indicators/kernels.py", "strategy/__init__.py", "strategy/signal_kernels.py",
               "strategy/amplitude_hunter.py")
CHOSEN_ENV = "THREADX_NUMBA_CACHE_DIR"  # the folder this module chose (children inherit NUMBA_CACHE_DIR set to it)


def sources_hash(root: Path = PACKAGE) -> str:
    """16 hex digits of the sha256 of :data:`JIT_SOURCES` (names and contents) under ``root``."""
    digest = hashlib.sha256()
    for name in JIT_SOURCES:
        digest.update(name.encode())
        try:
            digest.update((root / name).read_bytes())
        except OSError:  # (a file missing: hashed as absent)
            digest.update(b"\0missing")
    return digest.hexdigest()[:16]


def _base() -> Path:
    """The folder holding one sub-folder per version."""
    given = os.environ.get("NUMBA_CACHE_DIR")
    if given and given != os.environ.get(CHOSEN_ENV):
        return Path(given) / "threadx"
    in_tree = PACKAGE / "__pycache__"
    try:
        in_tree.mkdir(exist_ok=True)
        if os.access(in_tree, os.W_OK):
            return in_tree / "numba"
    except OSError:
        pass
    return Path.home() / ".cache" / "threadx" / "numba"


def cache_dir() -> Path:
    """The numba cache folder of this version of the kernels' sources."""
    chosen, version = os.environ.get(CHOSEN_ENV), sources_hash()
    if chosen and os.environ.get("NUMBA_CACHE_DIR") == chosen and Path(chosen).name == version:
        return Path(chosen)
    return _base() / version


def use_versioned_cache() -> Path:
    """Point numba's cache at :func:`cache_dir` (before any kernel module is imported)."""
    folder = cache_dir()
    os.environ[CHOSEN_ENV] = os.environ["NUMBA_CACHE_DIR"] = str(folder)
    numba_config = sys.modules.get("numba.core.config")
    if numba_config is not None:  # numba imported first (a notebook): its config was read already
        numba_config.CACHE_DIR = str(folder)
    return folder


def is_hash_name(name: str) -> bool:
    """Whether ``name`` is a folder name of :func:`sources_hash`'s form (16 hex digits), as the
    versions of this cache and the ahead-of-time builds in it are named."""
    return len(name) == 16 and all(ch in "0123456789abcdef" for ch in name)


def prune() -> list[Path]:
    """Remove the cache folders of other versions beside this one's, and the files numba cached
    beside the sources before there were versions (``__pycache__/*.nbi``, ``*.nbc``); what was
    removed."""
    current = cache_dir()
    removed = []
    try:
        siblings = [p for p in current.parent.iterdir() if p.is_dir() and p != current]
    except OSError:
        siblings = []
    for folder in siblings:
        if is_hash_name(folder.name):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    for name in JIT_SOURCES:
        source = PACKAGE / name
        for old in (source.parent / "__pycache__").glob(f"{source.stem}.*.nb[ic]"):
            try:
                old.unlink()
                removed.append(old)
            except OSError:
                pass
    return removed
