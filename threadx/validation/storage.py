"""Walk-forward results on disk: ``<results_dir>/walkforward/<run_id>/``.

``result/`` holds the :class:`WalkForwardResult` (without its evaluator) and its
:class:`ValidationReport`, written by :mod:`threadx.validation.codec` (JSON, ``.npz``
and Parquet; never pickle, so a results folder handed over cannot run code);
``summary.json`` holds their JSON summaries for other tools. Both carry the result's token,
drawn as it is saved (``result/run_token`` and the summary's ``run_token``): a summary copied
in from another walk-forward is not listed as this one's. A folder written by an older version
(``result.pkl``) is not read: the error says to run the walk-forward again.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from threadx.config import settings
from threadx.errors import ThreadXError, os_reason
from threadx.filestamp import file_stamp
from threadx.files import atomic_write_bytes, remove_dead_temps, temp_beside
from threadx.optimize.store import check_run_id
from threadx.shapes import read_json_number
from threadx.validation import codec

FOLDER = "walkforward"
FORMAT_VERSION = 2  # 1 was a pickle (result.pkl), no longer read
RESULT = "result"
TOKEN = "run_token"  # a file in the result and a key of the summary; results saved before it have none


def _stored_types() -> list[type]:
    """The dataclasses a stored walk-forward may contain (the codec's allow-list)."""
    from threadx.validation.bootstrap import BootstrapResult
    from threadx.validation.dsr import DSRResult
    from threadx.validation.grading import Component, Grade
    from threadx.validation.pbo import PBOResult
    from threadx.validation.report import Robustness, ValidationReport
    from threadx.validation.stability import StabilityResult
    from threadx.validation.walkforward import WalkForwardResult, Window

    return [WalkForwardResult, Window, ValidationReport, Robustness, BootstrapResult, DSRResult, PBOResult,
            StabilityResult, Grade, Component]


def walkforward_root(results_dir: str | os.PathLike | None = None) -> Path:
    return Path(results_dir if results_dir is not None else settings().results_dir) / FOLDER


def save_walk_forward(run_id: str, wf: Any, report: Any, results_dir: str | os.PathLike | None = None) -> Path:
    """Write a walk-forward and its report (atomically); returns the folder. An OS failure (a
    full disk) is one ThreadXError naming the run and the folder."""
    folder = walkforward_root(results_dir) / check_run_id(run_id)
    payload = {"version": FORMAT_VERSION, "walk_forward": replace(wf, evaluator=None), "report": report}
    staging = temp_beside(folder / RESULT)
    created = not folder.exists()
    token = uuid.uuid4().hex
    try:
        folder.mkdir(parents=True, exist_ok=True)
        remove_dead_temps(folder / RESULT)  # (a save killed before this one left its staging)
        try:
            codec.dump(staging, payload)
            (staging / TOKEN).write_text(token)
            _swap_in(staging, folder / RESULT)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        summary = {"run_id": run_id, TOKEN: token, "walk_forward": wf.to_dict(), "validation": report.to_dict()}
        atomic_write_bytes(folder / "summary.json", json.dumps(summary, indent=2, default=str).encode())
    except BaseException as exc:
        if created and not (folder / RESULT).exists():  # no empty or half folder left behind
            shutil.rmtree(folder, ignore_errors=True)
        if isinstance(exc, OSError):
            raise ThreadXError(f"cannot store walk-forward {run_id} in {folder}: {os_reason(exc)}; "
                               "it is not stored whole: run it again once the folder can be written") from exc
        raise
    return folder


def is_stored(run_id: str, results_dir: str | os.PathLike | None = None) -> bool:
    """Whether a whole walk-forward result is stored under ``run_id``."""
    return stored_stamp(run_id, results_dir) is not None


def stored_stamp(run_id: str, results_dir: str | os.PathLike | None = None) -> tuple[int, int, int, int] | None:
    """The stored result's :func:`~threadx.filestamp.file_stamp` (None when none): a new result, or
    another one copied over it with its times kept, a new stamp."""
    path = walkforward_root(results_dir) / check_run_id(run_id) / RESULT / codec.TREE
    try:
        return file_stamp(path)
    except OSError:  # none there (a file where the folder belongs, no permission: none readable)
        return None


def load_walk_forward(run_id: str, results_dir: str | os.PathLike | None = None) -> tuple[Any, Any]:
    """(WalkForwardResult, ValidationReport) of a stored walk-forward."""
    folder = walkforward_root(results_dir) / check_run_id(run_id)
    if not is_stored(run_id, results_dir):
        if (folder / "result.pkl").exists():
            raise ThreadXError(f"walk-forward {run_id} was stored by an older version as a pickle, which is not "
                               "read (it could run code); run the walk-forward again")
        raise ThreadXError(f"no stored walk-forward {run_id!r} under {folder.parent}")
    for attempt in range(2):  # a save swapping in a new result while this one was read: read again
        try:
            payload = codec.load(folder / RESULT, _stored_types())
            break
        except (codec.CodecError, FileNotFoundError) as exc:
            if attempt:
                raise ThreadXError(f"walk-forward {run_id} cannot be read ({exc}); run it again") from None
    if not isinstance(payload, dict) or payload.get("version") != FORMAT_VERSION:
        raise ThreadXError(f"walk-forward {run_id} was stored in another format; run it again")
    return payload["walk_forward"], payload["report"]


def _swap_in(staging: Path, target: Path) -> None:
    """Make ``target`` show ``staging`` in one step: ``target`` is a symbolic link to a
    versioned folder, replaced atomically, so a reader sees the old result or the new one,
    never none. (A result stored as a plain folder by an older version is moved aside first.)"""
    version = target.with_name(f".{target.name}-{uuid.uuid4().hex[:12]}")
    os.replace(staging, version)
    previous = _own_version(target) if target.is_symlink() else None
    if target.exists() and not target.is_symlink():  # an older layout: a plain folder
        previous = target.with_name(f".{target.name}-old-{uuid.uuid4().hex[:8]}")
        os.replace(target, previous)
    link = target.with_name(f".{target.name}-link-{uuid.uuid4().hex[:8]}")
    os.symlink(version.name, link)
    os.replace(link, target)
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)


def _own_version(link: Path) -> Path | None:
    """The versioned folder beside ``link`` that it points to, as :func:`_swap_in` names them;
    None for any other target (a link planted in a results folder handed in pointed at a folder
    elsewhere, which the next save of that walk-forward deleted)."""
    name = os.readlink(link)
    if re.fullmatch(rf"\.{re.escape(link.name)}-[0-9a-f]{{12}}", name) is None:
        return None
    return link.parent / name


def list_walk_forwards(results_dir: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Stored walk-forwards, newest first: run id (its folder's name, as :func:`load_walk_forward`
    opens it), strategy, dataset, windows, grade. Listed are the folders that hold a stored
    result, what opening reads (a folder with only a summary was listed and could not be
    opened; one whose summary was gone was not listed and could be); a summary that cannot be
    read, is of another shape or is another result's (its token not the result's) leaves its
    cells empty (opening the walk-forward says what it holds); it never breaks the list of the
    others."""
    rows = []
    root = walkforward_root(results_dir)
    for folder in root.iterdir() if root.is_dir() else ():
        try:
            check_run_id(folder.name)
        except ThreadXError:
            continue  # a folder no walk-forward is stored under
        if not folder.is_dir():
            continue  # (a stray file there broke the list: NotADirectoryError)
        stamp = stored_stamp(folder.name, results_dir)
        if stamp is None:
            continue
        try:
            data = json.loads((folder / "summary.json").read_text())
        except (OSError, ValueError):
            data = None
        if not _own_summary(folder, data):
            data = None
        windows = _at(data, "walk_forward", "windows")
        rows.append({"run_id": folder.name, "strategy": _text(_at(data, "walk_forward", "config", "strategy")),
                     "dataset": _text(_at(data, "walk_forward", "meta", "dataset")),
                     "windows": len(windows) if isinstance(windows, list) else None,
                     "grade": _text(_at(data, "validation", "grade", "letter")),
                     "score": read_json_number(_at(data, "validation", "grade", "score")), "mtime": stamp[1] / 1e9})
    return sorted(rows, key=lambda r: r["mtime"], reverse=True)


def _own_summary(folder: Path, summary: Any) -> bool:
    """Whether ``summary`` is the one saved with the result in ``folder``: the same token (a
    result saved before tokens has none: its summary is taken as its own)."""
    try:
        token = (folder / RESULT / TOKEN).read_text().strip()
    except (OSError, ValueError):
        return True
    return _at(summary, TOKEN) == token


def _at(data: Any, *keys: str) -> Any:
    """``data[key][key]...``, None where a level is missing or not an object."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None

