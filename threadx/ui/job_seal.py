"""Jobs start only if this installation queued them: each spec is sealed with a key kept in the
user's configuration folder, not in the results folder.

The job queue is a folder of the results folder (``.jobs``), and every page's refresh starts
what is queued there. A results folder handed in (a colleague's, a download) could hold a
queued job of its own making: a walk-forward whose executor is a Dask scheduler of theirs
(whose replies the client unpickles: code run here), say. A job whose seal does not match is
never started.

Example::

    spec = seal({"kind": "sweep", "params": {...}})   # at submit
    sealed(spec)                                      # True: this installation queued it
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any, Mapping

SEAL_KEY = "seal"  # the spec's field that holds it
KEY_FILE = "job.key"  # in the configuration folder (settings_file.config_dir)
_memory_key: bytes | None = None  # where that folder cannot be written: this process's jobs only


def _key_path() -> Path:
    from threadx.settings_file import config_dir

    return config_dir() / KEY_FILE


def _key() -> bytes | None:
    """The installation's key, created on first use (None: the folder cannot hold it)."""
    path = _key_path()
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    except (OSError, ValueError):
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it meanwhile
        return _key()
    except OSError:
        return None
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32))
    return _key()


def _signing_key() -> bytes:
    global _memory_key
    key = _key()
    if key is None:
        if _memory_key is None:
            _memory_key = secrets.token_bytes(32)
        key = _memory_key
    return key


def _digest(key: bytes, spec: Mapping[str, Any]) -> str:
    body = json.dumps({k: v for k, v in spec.items() if k != SEAL_KEY}, sort_keys=True, default=str)
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def seal(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with its seal (the whole spec is covered: kind, params, executor, scheduler ...)."""
    return {**spec, SEAL_KEY: _digest(_signing_key(), spec)}


def sealed(spec: Mapping[str, Any]) -> bool | None:
    """True when this installation queued ``spec`` as it reads now; False when it did not (or
    it was changed since); None when it cannot tell (no key could be kept: another process's
    job)."""
    given = spec.get(SEAL_KEY)
    key = _key()
    if key is None:
        if _memory_key is not None and isinstance(given, str) and hmac.compare_digest(
                given, _digest(_memory_key, spec)):
            return True
        return None
    return isinstance(given, str) and hmac.compare_digest(given, _digest(key, spec))
