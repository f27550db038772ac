"""The user's workspace on disk: form values that survive a restart, and the backtests a
link names (SPEC §9).

Under the results root (``THREADX_RESULTS_DIR``, :func:`threadx.config.settings`):

- ``workspace.json``: ``{"version": 1, "forms": {kind: {strategy: values}}, "last": {"dataset":
  name, "strategy": name}, "costs": {box: value}}``, the last values of each form per strategy,
  the dataset and strategy last chosen (a new tab with no link opens on them) and the Backtest
  page's costs, fills and sizing boxes (numbers, flags and short texts; the page checks them).
  Form kinds: ``"params"`` (a strategy's param values, the Backtest page) and ``"space"`` (a
  search space as :func:`threadx.ui.widgets.space_editor` returns it, the Optimisation page).
  Written atomically under a file lock; at most :data:`MAX_FILE_BYTES`. A damaged, unreadable or oversized file is ignored with a warning
  (and moved aside to ``workspace.json.damaged`` by the next save); values are checked
  against the strategy's params when saved and when loaded: unknown strategies, unknown
  keys and values its params refuse (out of range, wrong type) are dropped.
- ``.backtests/<id>.json``: ``{"request": BacktestRequest.to_dict(), "origin": ...}``, a
  backtest shown on the Backtest page; its id (a hash of the record) is the ``bt`` query
  param of the page's URL, so a refresh or a link re-runs the same request. The
  :data:`MAX_BACKTESTS` most recently used records are kept.

Usage::

    save_form("params", "bb_atr", {"bb_period": 30, "entry_z": 1.5})
    load_form("params", "bb_atr")            # {"bb_period": 30, "entry_z": 1.5}
    bt_id = save_backtest(request)           # "3f9c0a1b2c4d5e6f"
    request, origin = load_backtest(bt_id)
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from filelock import FileLock, Timeout

from threadx.config import settings
from threadx.errors import DataError, ParamError, ThreadXError
from threadx.requests import BacktestRequest, jsonable
from threadx.strategy.base import Param, StrategySpec
from threadx.ui.jobs import write_json_atomic

log = logging.getLogger(__name__)

WORKSPACE_FILE = "workspace.json"
BACKTESTS_FOLDER = ".backtests"
VERSION = 1
FORM_KINDS = ("params", "space")
LAST_KEYS = ("dataset", "strategy")  # the choices a new tab starts from
MAX_FILE_BYTES = 256 * 1024  # workspace.json; a bigger file is ignored, a save that would exceed it skipped
MAX_RECORD_BYTES = 64 * 1024  # one backtest record
MAX_BACKTESTS = 256  # backtest records kept (least recently used removed first)
_LOCK_TIMEOUT_S = 5.0
_BT_ID = re.compile(r"[0-9a-f]{16}")
_WARNED = "_workspace_warned"  # session flag: the messages already shown in this session


def workspace_file() -> Path:
    """``<results root>/workspace.json``."""
    return settings().results_dir / WORKSPACE_FILE


def backtests_folder() -> Path:
    """``<results root>/.backtests``: the backtests named by links (``bt=<id>``)."""
    return settings().results_dir / BACKTESTS_FOLDER


# --- warnings -----------------------------------------------------------------------------------

def _warn(message: str) -> None:
    """Log ``message``; in a Streamlit script run, also show it once per session."""
    log.warning(message)
    try:
        import streamlit as st
        from streamlit.runtime.scriptrunner import get_script_run_ctx
    except ImportError:  # pragma: no cover - streamlit is a dependency of the UI
        return
    if get_script_run_ctx(suppress_warning=True) is None:
        return
    shown = st.session_state.setdefault(_WARNED, [])
    if message not in shown:
        shown.append(message)
        st.warning(message)


# --- checks ---------------------------------------------------------------------------------------

def _strategy(name: Any) -> StrategySpec | None:
    from threadx.strategy.base import find_strategy

    return find_strategy(name)


def _check_kind(kind: str) -> None:
    if kind not in FORM_KINDS:
        raise ValueError(f"unknown form kind {kind!r}; kinds: {', '.join(FORM_KINDS)}")


def finite_number(value: Any) -> bool:
    """Whether ``value`` is a finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _space_value(p: Param, value: Any) -> Any:
    """One entry of a search space as the space editor makes it: a fixed value, a range
    ``{"min", "max", "step"}`` (numeric params) or a list of values (ParamError if not)."""
    if isinstance(value, Mapping):
        if p.kind not in ("int", "float") or set(value) != {"min", "max", "step"}:
            raise ParamError(f"{p.name}: a range is {{min, max, step}} of a numeric param")
        if not (finite_number(value["step"]) and value["step"] > 0):
            raise ParamError(f"{p.name}: step must be a positive number")
        step = int(value["step"]) if p.kind == "int" and value["step"] == int(value["step"]) else value["step"]
        return {"min": p.coerce(value["min"]), "max": p.coerce(value["max"]), "step": step}
    if isinstance(value, (list, tuple)):
        if p.kind not in ("bool", "choice") or not value:
            raise ParamError(f"{p.name}: a list of values (at least one) is for bool and choice params")
        return list(dict.fromkeys(p.coerce(v) for v in value))
    return p.coerce(value)


def clean_form(kind: str, strategy: str, values: Any) -> dict[str, Any]:
    """``values`` checked against ``strategy``'s params: unknown keys and values its params
    refuse are dropped ({} for an unknown strategy or a value that is not a dict)."""
    _check_kind(kind)
    spec = _strategy(strategy)
    if spec is None or not isinstance(values, Mapping):
        return {}
    out: dict[str, Any] = {}
    for p in spec.params:
        if p.name not in values:
            continue
        try:
            out[p.name] = p.coerce(values[p.name]) if kind == "params" else _space_value(p, values[p.name])
        except (ParamError, TypeError, ValueError):
            continue
    return out


# --- workspace.json ---------------------------------------------------------------------------------

def _read(path: Path) -> tuple[dict[str, Any], str | None]:
    """(content, problem): {} and None when there is no file; {} and why when it cannot be used."""
    for attempt in range(3):
        try:
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                return {}, f"larger than {MAX_FILE_BYTES // 1024} KiB ({size:,} bytes)"
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}, None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            if attempt == 2 or not isinstance(exc, OSError):  # an OSError may be a replace in progress
                return {}, f"{type(exc).__name__}: {exc}"
            time.sleep(0.02)
            continue
        if not isinstance(data, dict) or not isinstance(data.get("forms", {}), dict):
            return {}, "not a workspace file (expected an object with 'forms')"
        return data, None
    return {}, None  # pragma: no cover - the loop always returns


def read_workspace() -> dict[str, Any]:
    """The content of ``workspace.json`` ({} when missing; a damaged file is ignored with a warning)."""
    path = workspace_file()
    data, problem = _read(path)
    if problem:
        _warn(f"The workspace file {path} cannot be read and is ignored: saved form values are not "
              f"restored, and the next save moves it to {path.name}.damaged and starts a new one ({problem})")
    return data


def load_form(kind: str, strategy: str) -> dict[str, Any]:
    """The saved values of a form (``kind``: "params" or "space") for ``strategy``, checked
    against its params; {} when none are saved."""
    _check_kind(kind)
    return clean_form(kind, strategy, _forms(read_workspace(), kind).get(strategy))


def _forms(data: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """The file's saved forms of ``kind`` by strategy ({} when it holds none that can be used)."""
    saved = (data.get("forms") or {}).get(kind)
    return saved if isinstance(saved, dict) else {}


def save_form(kind: str, strategy: str, values: Mapping[str, Any]) -> bool:
    """Save a form's values for ``strategy`` (those its params refuse are left out); returns
    whether the file was written (False: nothing changed, or it could not be written, with
    a warning)."""
    _check_kind(kind)
    if _strategy(strategy) is None:
        raise ParamError(f"unknown strategy {strategy!r}")
    cleaned = jsonable(clean_form(kind, strategy, values))

    def put(data: dict[str, Any]) -> None:
        data["forms"].setdefault(kind, {})[strategy] = cleaned

    return _update(lambda data: _forms(data, kind).get(strategy) == cleaned, put, "Form values")


def last_choice() -> dict[str, str]:
    """The dataset and strategy last chosen in any session (``{"dataset": ..., "strategy": ...}``,
    either left out when none was saved): a new tab opens on them. Names only; whether they
    still exist is the caller's check."""
    return _last(read_workspace())


def _last(data: Mapping[str, Any]) -> dict[str, str]:
    """The file's ``last`` entry, what of it can be used."""
    last = data.get("last")
    if not isinstance(last, dict):
        return {}
    return {k: v for k, v in last.items() if k in LAST_KEYS and isinstance(v, str) and 0 < len(v) <= 256}


_COST_KEY = re.compile(r"[a-z][a-z0-9_]{0,39}")
MAX_COSTS = 32  # boxes kept under "costs"


def _costs(data: Mapping[str, Any]) -> dict[str, Any]:
    """The file's ``costs`` entry, what of it can be used: finite numbers, flags and texts of at
    most 40 characters under plain keys."""
    costs = data.get("costs")
    if not isinstance(costs, dict):
        return {}
    out = {}
    for key, value in list(costs.items())[:MAX_COSTS]:
        if not (isinstance(key, str) and _COST_KEY.fullmatch(key)):
            continue
        if isinstance(value, bool) or finite_number(value) or (isinstance(value, str) and len(value) <= 40):
            out[key] = value
    return out


def load_costs() -> dict[str, Any]:
    """The Backtest page's costs, fills and sizing boxes as last left (box key -> value; {} when
    none are saved). The caller checks each value against its box."""
    return _costs(read_workspace())


def save_costs(values: Mapping[str, Any]) -> bool:
    """Save the costs boxes' values (what :func:`load_costs` keeps of them); returns whether the
    file was written (False: unchanged, or not writable, with a warning)."""
    cleaned = _costs({"costs": dict(values)})

    def put(data: dict[str, Any]) -> None:
        data["costs"] = cleaned

    return _update(lambda data: _costs(data) == cleaned, put, "Cost settings")


def save_last_choice(key: str, name: str) -> bool:
    """Remember ``name`` as the last chosen ``key`` ("dataset" or "strategy"); returns whether
    the file was written (False: unchanged, or not writable, with a warning)."""
    if key not in LAST_KEYS:
        raise ValueError(f"unknown choice {key!r}; choices: {', '.join(LAST_KEYS)}")

    def put(data: dict[str, Any]) -> None:
        data.setdefault("last", {})[key] = name

    return _update(lambda data: _last(data).get(key) == name, put, f"The last {key}")


def _update(unchanged: Callable[[dict[str, Any]], bool], change: Callable[[dict[str, Any]], None],
            what: str) -> bool:
    """Apply ``change`` to the workspace file under its lock (a damaged file is moved aside
    first); nothing is written when ``unchanged`` holds. Returns whether it was written; one
    that cannot be is warned about as "<what> not saved"."""
    path = workspace_file()
    current, problem = _read(path)
    if problem is None and unchanged(current):
        return False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock", timeout=_LOCK_TIMEOUT_S):
            current, problem = _read(path)  # again, under the lock: another session may have saved
            if problem is not None:
                log.warning("workspace file %s cannot be read (%s): moved to %s.damaged", path, problem, path.name)
                path.replace(path.with_name(path.name + ".damaged"))
            forms = {k: dict(v) for k, v in (current.get("forms") or {}).items()
                     if k in FORM_KINDS and isinstance(v, dict)}
            data: dict[str, Any] = {"version": VERSION, "forms": forms, "last": _last(current),
                                    "costs": _costs(current)}
            change(data)
            size = len(json.dumps(data))
            if size > MAX_FILE_BYTES:
                _warn(f"{what} not saved: the workspace file would exceed {MAX_FILE_BYTES // 1024} KiB")
                return False
            write_json_atomic(path, data)
    except (OSError, Timeout) as exc:
        _warn(f"{what} not saved to {path}: {exc}")
        return False
    return True


# --- backtests named by links -----------------------------------------------------------------------

def save_backtest(request: BacktestRequest, origin: str | None = None) -> str:
    """Store a backtest request (``origin``: the run it was reopened from, if any) and
    return its id, the same for the same record. OSError when it cannot be written."""
    record = {"request": request.to_dict(), "origin": origin}
    text = json.dumps(jsonable(record), sort_keys=True, allow_nan=False)
    if len(text) > MAX_RECORD_BYTES:
        raise ParamError(f"this backtest's record is too large for a link ({len(text):,} bytes)")
    bt_id = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    folder = backtests_folder()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{bt_id}.json"
    if path.is_file():
        path.touch()  # recently used: kept by the pruning
    else:
        write_json_atomic(path, record)
        _prune(folder)
    return bt_id


def _prune(folder: Path) -> None:
    records = []
    for path in folder.glob("*.json"):
        try:
            records.append((path.stat().st_mtime, path))
        except OSError:
            continue
    for _, path in sorted(records, reverse=True)[MAX_BACKTESTS:]:
        path.unlink(missing_ok=True)


def load_backtest(bt_id: str) -> tuple[BacktestRequest, str | None]:
    """The request and origin stored under ``bt_id`` by :func:`save_backtest`; DataError
    (ParamError for an id that is not one) saying why when it cannot be used."""
    if not isinstance(bt_id, str) or not _BT_ID.fullmatch(bt_id):
        raise ParamError(f"{bt_id!r} is not a backtest id")
    path = backtests_folder() / f"{bt_id}.json"
    try:
        if path.stat().st_size > MAX_RECORD_BYTES:
            raise DataError(f"backtest {bt_id} is stored in a file larger than {MAX_RECORD_BYTES // 1024} KiB")
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"backtest {bt_id} is not stored here (removed, or made on another server)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"backtest {bt_id} cannot be read: {exc}") from None
    if not isinstance(record, dict) or not isinstance(record.get("request"), dict):
        raise DataError(f"backtest {bt_id} is not a backtest record")
    try:
        request = BacktestRequest.from_dict(record["request"])  # ParamError when it no longer checks
    except ThreadXError:
        raise
    except (TypeError, ValueError, KeyError) as exc:  # a key missing, a value of another type
        raise DataError(f"backtest {bt_id} is a damaged record ({type(exc).__name__}: {exc})") from None
    origin = record.get("origin")
    try:
        path.touch()
    except OSError:
        pass
    return request, origin if isinstance(origin, str) else None
