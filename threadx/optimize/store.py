"""Results store: one folder per run with Parquet parts and a JSON manifest (SPEC §6.3).

Layout: ``<results_dir>/<run_id>/manifest.json``, ``plan.json`` (the plan as first written,
for ``threadx runs repair``) and ``part-NNNNNN.parquet`` files, each written atomically
(temp file + rename) by the single writer of the run (an OS lock on ``.writer.lock``), so a
killed sweep leaves only whole parts behind; a resumed run reads the combo ids they hold
and skips them, except infrastructural failures, which run again (the last write of a combo
counts). Rows: ``combo_id``, one column per param, every fast metric, ``status`` (``ok`` /
``failed``) and ``error``. Readers count rows from the parts, never from the manifest alone;
a damaged file is reported (:class:`RunDamaged`), and a part that cannot be read is moved to
``quarantine/`` by a resume or a repair.
"""
from __future__ import annotations

import functools
import json
import os
import re
import secrets
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
from filelock import FileLock, Timeout

from threadx.config import settings
from threadx.engine.layout import METRIC_NAMES, RESULT_COLUMNS
from threadx.errors import ParamError, ThreadXError, first_line, os_reason
from threadx.files import atomic_write_bytes
from threadx.names import check_name
from threadx.shapes import LIST, OBJECT, SWITCH, TEXT, WHOLE, WHOLES, Kind, shape_problem

_PART = re.compile(r"^part-(\d{6})\.parquet$")
_LOCK = ".writer.lock"
_PROBE_GRACE_S = 0.03  # how long a writer waits out a reader probing the run's lock
_PLAN_KEYS = ("strategy", "strategy_code", "rows_code", "fingerprint", "space", "engine", "sampler", "n", "seed",
              "block_end")
_LEGACY_OPTIONAL = ("strategy_code", "rows_code")  # plan keys that runs stored by earlier versions lack
# a resume's own: its ranking, its machine, and its memory plan (a record mixing two sessions read
# "not batched, 11 GiB budget" beside the resumed session's 2 batches)
_ADAPTIVE_PLAN_KEYS = ("objective", "maximize", "min_trades")  # session keys that are plan keys to an adaptive run
_SESSION_KEYS = ("objective", "maximize", "min_trades", "machine", "versions", "started_at", "memory")
_PROGRESS_KEYS = ("status", "done", "failed", "finished_at", "elapsed_s", "session_done", "quarantined", "gpu",
                  "warnings", "executors", "error")
_PLAN_FILE = "plan.json"  # the manifest as first written, less its progress keys (and the warnings since)
QUARANTINE = "quarantine"  # damaged parts are moved here, never deleted
# A run's token, drawn when it is created: in its manifest, its plan.json and each part's footer,
# so that a file copied in from another run (whose ids and columns may well fit) is found, while
# a whole run copied or renamed stays one run. Runs stored before the token have none.
_TOKEN = "run_token"
_TOKEN_FOOTER = b"threadx_run_token"


# what else lives in a results folder beside the sweeps' run folders (each module's FOLDER, the log
# folder, the workspace file): no sweep may take one of these names
RESERVED_RUN_IDS = ("walkforward", "research", "portfolios", "logs", "workspace.json")


def check_run_id(run_id: str) -> str:
    """A run id usable as a folder name (letters, digits, ``_.-``; :mod:`threadx.names`) that is
    none of the results folder's own (a sweep run as ``logs`` wrote its parts beside threadx.log)."""
    check_name(run_id, "run id")
    if run_id.lower() in RESERVED_RUN_IDS:
        raise ParamError(f"invalid run id {run_id!r}: the results folder keeps its {run_id.lower()} there; pick "
                         "another run id")
    return run_id


BLOCK_SUM_PREFIX = "blk_s"  # stored per combo: sum of per-bar returns in time block k
BLOCK_SQ_PREFIX = "blk_q"  # ... and the sum of their squares


class SweepRun:
    """A stored optimisation run: its manifest and one row per evaluated combo.

    ``results`` is read from the run's Parquet parts on first use (a 10-million-row run
    is large); :meth:`top` reads only the columns it ranks by, then the winning rows.
    """

    def __init__(self, manifest: dict[str, Any], results: pd.DataFrame | None = None,
                 parts: list[Path] | None = None):
        self.manifest = manifest
        self._results = results
        self._parts = parts or []

    def __repr__(self) -> str:
        return f"SweepRun({self.run_id!r}, status={self.manifest.get('status')!r}, done={self.manifest.get('done')})"

    @property
    def run_id(self) -> str:
        return self.manifest["run_id"]

    @property
    def param_names(self) -> list[str]:
        return list(self.manifest.get("param_names", []))

    @property
    def warnings(self) -> list[str]:
        """What the sweep warned of about its own rows (a signal rule that disagreed with
        ``signals()``: rows stored before may hold the rule's), in the order they came."""
        return [str(text) for text in self.manifest.get("warnings") or []]

    @property
    def results(self) -> pd.DataFrame:
        """Every stored row, sorted by combo id (loaded once)."""
        if self._results is None:
            self._results = _read_parts(self._parts, columns=self._row_columns())
        return self._results

    def stored(self) -> "StoredRows":
        """What the parts hold (counted from them, not from the manifest)."""
        return stored_rows(self._parts)

    def check_intact(self) -> "SweepRun":
        """Raise RunDamaged when the run's status says its parts lost rows (see ResultStore.load)."""
        status = str(self.manifest.get("status", ""))
        if status.startswith("damaged"):
            raise RunDamaged(self.run_id, f"is {status}")
        return self

    def columns(self, columns: list[str]) -> pd.DataFrame:
        """``combo_id``, ``status`` and ``columns`` of every stored row (the last write of each
        combo), reading only those columns."""
        wanted = list(dict.fromkeys(["combo_id", "status", *columns]))
        if self._results is not None or not self._parts:
            results = self.results
            return results[wanted] if len(results) else pd.DataFrame(columns=wanted)
        return _read_parts(self._parts, columns=wanted)

    def failure_counts(self, top: int = 5) -> list[tuple[str, int]]:
        """The ``top`` most frequent error texts of the run's failed combos, with their counts."""
        errors = self.columns(["error"])
        counts = errors.loc[errors["status"] != "ok", "error"].fillna("").astype(str).value_counts()
        return [(text or "(no error text)", int(count)) for text, count in counts.head(top).items()]

    def ok_columns(self, columns: list[str]) -> pd.DataFrame:
        """``combo_id`` and ``columns`` of the successful rows, reading only those columns."""
        wanted = list(dict.fromkeys(["combo_id", *columns]))
        rows = self.columns(columns)
        return rows.loc[rows["status"] == "ok", wanted]

    def ok_ids(self) -> np.ndarray:
        """Combo ids of the successful rows (reads two columns only)."""
        return self.ok_columns([])["combo_id"].to_numpy(np.int64)

    def _row_columns(self) -> list[str] | None:
        """Stored columns without the block moments (those are read by :meth:`block_moments`)."""
        if not self._parts:
            return None
        import pyarrow.parquet as pq

        names = pq.read_schema(self._parts[0]).names
        return [c for c in names if not c.startswith((BLOCK_SUM_PREFIX, BLOCK_SQ_PREFIX))]

    def block_moments(self, ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(combo ids, sums (N, B), sums of squares (N, B), bars per block (B,)) of the
        successful combos: each combo's per-bar returns summed over B time blocks."""
        ends = list(self.manifest.get("block_end") or [])
        if not ends or not self._parts:
            raise ThreadXError(f"run {self.run_id} has no stored block returns (swept with block_returns=0 or "
                               "by an older version); run the sweep again to validate it with PBO")
        k = len(ends)
        sums = [f"{BLOCK_SUM_PREFIX}{b:03d}" for b in range(k)]
        sqs = [f"{BLOCK_SQ_PREFIX}{b:03d}" for b in range(k)]
        frame = _read_parts(self._parts, columns=["combo_id", "status", *sums, *sqs], ids=ids)
        frame = frame[frame["status"] == "ok"]
        counts = np.diff(np.concatenate([[0], np.asarray(ends, dtype=np.int64)]))
        return (frame["combo_id"].to_numpy(), frame[sums].to_numpy(np.float64), frame[sqs].to_numpy(np.float64),
                counts)

    def ok(self) -> pd.DataFrame:
        """Rows whose backtest ran."""
        results = self.results
        return results if results.empty else results[results["status"] == "ok"]

    def top(self, n: int = 10, objective: str | None = None, maximize: bool | None = None,
            min_trades: int | None = None) -> pd.DataFrame:
        """Best ``n`` combos by the objective, among those with at least ``min_trades`` trades
        (each default: the run's own, as :meth:`best_params` ranks), NaN last."""
        objective = objective or self.manifest.get("objective", "sharpe")
        maximize = self.manifest.get("maximize", True) if maximize is None else maximize
        min_trades = int(self.manifest.get("min_trades") or 0) if min_trades is None else min_trades
        if self._results is None and self._parts:
            ranked = _read_parts(self._parts, columns=list(dict.fromkeys(["combo_id", "status", "n_trades", objective])))
        else:
            ranked = self.results
        if ranked.empty:
            return ranked
        rows = ranked[ranked["status"] == "ok"]
        if min_trades:
            rows = rows[rows["n_trades"] >= min_trades]
        best = rows.sort_values(objective, ascending=not maximize, na_position="last", kind="stable").head(n)
        if ranked is self._results:
            return best
        full = _read_parts(self._parts, columns=self._row_columns(), ids=best["combo_id"].to_numpy())
        return full.set_index("combo_id").loc[best["combo_id"]].reset_index()

    def best_params(self) -> dict[str, Any]:
        """Params of the best combo (respecting the run's minimum trade count)."""
        best = self.top(1)
        if best.empty:
            raise ThreadXError(f"run {self.run_id} has no successful combo")
        return {k: _scalar(best.iloc[0][k]) for k in self.param_names}

    def pareto(self, x: str = "max_drawdown", y: str = "sharpe", maximize_x: bool = True,
               maximize_y: bool = True) -> pd.DataFrame:
        """Combos not dominated on (x, y); e.g. Sharpe vs max drawdown (both larger is better)."""
        rows = self.ok()[[x, y]].dropna()
        from threadx.optimize.pareto import pareto_mask

        mask = pareto_mask(rows[x].to_numpy() * (1 if maximize_x else -1), rows[y].to_numpy() * (1 if maximize_y else -1))
        return self.ok().loc[rows.index[mask]].sort_values(x)


def _read_parts(parts: list[Path], columns: list[str] | None = None, ids: np.ndarray | None = None) -> pd.DataFrame:
    """Rows of a run's parts sorted by combo id, the last write of a combo kept."""
    if not parts:
        return pd.DataFrame(columns=columns) if columns else pd.DataFrame()
    import pyarrow as pa
    import pyarrow.compute as pc

    tables = []
    for path in parts:
        table = _read_table(path, columns)
        if ids is not None:
            table = table.filter(pc.is_in(table.column("combo_id"), value_set=pa.array(ids, type=pa.int64())))
        tables.append(table)
    table = pa.concat_tables(tables)
    table = table.take(np.argsort(table.column("combo_id").to_numpy(), kind="stable"))
    frame = table.to_pandas(self_destruct=True, split_blocks=True)  # without a second full copy
    del table
    combo = frame["combo_id"].to_numpy()
    if len(combo) > 1 and not (combo[1:] != combo[:-1]).all():  # a combo stored twice: keep the last write
        frame = frame.drop_duplicates("combo_id", keep="last").reset_index(drop=True)
    return frame


def _scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


class RunWriter:
    """Appends rows of one run in batches; the only writer of its folder."""

    def __init__(self, folder: Path, manifest: dict[str, Any], flush_rows: int = 50_000,
                 flush_seconds: float = 5.0, lock: "RunLock | None" = None):
        self.folder = folder
        self.lock = lock
        self.manifest = manifest
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self._pending: list[pd.DataFrame] = []
        self._pending_rows = 0
        self._last_flush = time.monotonic()
        parts = [int(m.group(1)) for p in folder.iterdir() if (m := _PART.match(p.name))]
        self._next_part = max(parts, default=-1) + 1
        _remove_stale_temps(folder)  # of a write interrupted by a kill

    def append(self, rows: pd.DataFrame | dict[str, Any]) -> None:
        """Queue rows (a DataFrame, or its columns as a dict of arrays: cheaper, one table is
        made per part); they reach disk on the next flush (by size or time)."""
        n = len(rows) if isinstance(rows, pd.DataFrame) else _column_rows(rows)
        if n:
            self._pending.append(rows)
            self._pending_rows += n
        if self._pending_rows >= self.flush_rows or time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write queued rows as one new part file (atomic)."""
        self._last_flush = time.monotonic()
        if not self._pending:
            return
        pending, self._pending, self._pending_rows = self._pending, [], 0
        table = _pending_table(pending)
        token = self.manifest.get(_TOKEN)
        if token:
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), _TOKEN_FOOTER: str(token).encode()})
        path = self.folder / f"part-{self._next_part:06d}.parquet"
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            _write_table(table, tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._next_part += 1

    def close(self) -> None:
        """Flush and release the run's lock."""
        try:
            self.flush()
        finally:
            self.release()

    def release(self) -> None:
        """Release the run's lock without writing (a writer given up before it started)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def update_manifest(self, **fields: Any) -> None:
        """Merge fields into the manifest and rewrite it atomically."""
        self.manifest.update(fields)
        write_manifest(self.folder, self.manifest)

    def add_warnings(self, texts: Iterable[str]) -> None:
        """Record what the sweep warned of about its own rows (each text once), in the manifest
        and in the plan file too: the rows stay through a resume and a repair, so must it."""
        known = list(self.manifest.get("warnings") or [])
        new = [text for text in dict.fromkeys(texts) if text not in known]
        if not new:
            return
        self.update_manifest(warnings=known + new)
        try:
            plan = _read_json(self.folder / _PLAN_FILE)
        except (OSError, ValueError):
            return  # no readable plan: `runs repair` could not rebuild from it anyway
        atomic_write_bytes(self.folder / _PLAN_FILE,
                           json.dumps({**plan, "warnings": known + new}, indent=2, default=str).encode())


def _dictionary_columns(names: list[str]) -> list[str]:
    """Columns worth dictionary-encoding: params, status and error (few distinct values).
    Metrics, block moments and combo ids are nearly all distinct: trying a dictionary on
    them costs most of a part's write time and saves nothing."""
    return [c for c in names if c in ("status", "error") or (
        c not in RESULT_COLUMNS and not c.startswith((BLOCK_SUM_PREFIX, BLOCK_SQ_PREFIX)))]


def _write_part(frame: pd.DataFrame, path: str) -> None:
    """Write rows as one Parquet file (what ``frame.to_parquet(path, index=False)`` writes,
    with dictionaries only where they pay)."""
    import pyarrow as pa

    _write_table(pa.Table.from_pandas(frame, preserve_index=False), path)


def _write_table(table: Any, path: str) -> None:
    import pyarrow.parquet as pq

    # page checksums: a part damaged inside its data (not only a cut one) reads as damaged, not as results
    pq.write_table(table, path, use_dictionary=_dictionary_columns(table.column_names), write_page_checksum=True)


def _column_rows(columns: dict[str, Any]) -> int:
    """Rows of a dict of columns (its first array's length; 0 for no column)."""
    for value in columns.values():
        if not np.isscalar(value):
            return len(value)
    return 0


def _concat_columns(pending: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """The columns of several dicts (same names, in order) end to end; a scalar (one value
    for every row, as pandas broadcasts it) is repeated."""
    sizes = [_column_rows(c) for c in pending]
    out = {}
    for name in pending[0]:
        pieces = [np.full(n, c[name], dtype=object) if np.isscalar(c[name]) else np.asarray(c[name])
                  for c, n in zip(pending, sizes)]
        out[name] = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
    return out


@functools.lru_cache(maxsize=32)
def _schema_of(layout: tuple[tuple[str, str], ...]) -> Any:
    """The Arrow schema (types and pandas metadata) that pandas gives a one-row frame of the
    columns named and typed as ``layout`` ((name, numpy dtype string) pairs). A typed array's
    Arrow type does not depend on its values, so the row is a stand-in: zeros, and "" in an
    object column (which reaches the store's fast path only when it holds text)."""
    import pyarrow as pa

    frame = pd.DataFrame({name: np.array([""], dtype=object) if dtype == "|O" else np.zeros(1, dtype=dtype)
                          for name, dtype in layout})
    return pa.Schema.from_pandas(frame, preserve_index=False)


def _column_schema(columns: dict[str, np.ndarray]) -> Any:
    """:func:`_schema_of` the columns' names and dtypes (made once per layout)."""
    return _schema_of(tuple((name, v.dtype.str) for name, v in columns.items()))


def _pending_table(pending: list[pd.DataFrame | dict[str, Any]]) -> Any:
    """One Arrow table of queued rows, as ``pa.Table.from_pandas(pd.concat(frames))`` makes it.

    Dicts of columns (the sweep's chunks) skip pandas: their arrays are converted once, with
    the schema (types and pandas metadata) that pandas gives a one-row frame of the same
    columns (a typed array's type is the same for one row as for all; an object array takes
    this path only when it holds text alone), and NaN stored as pandas stores it
    (``from_pandas``). Otherwise, and for queued DataFrames or dicts of differing columns,
    the pandas path."""
    import pyarrow as pa

    if all(isinstance(p, dict) for p in pending) and len({tuple(p) for p in pending}) == 1:
        columns = _concat_columns(pending)  # type: ignore[arg-type]
        try:
            if not all(v.dtype != object or pd.api.types.infer_dtype(v, skipna=False) == "string"
                       for v in columns.values()):
                raise TypeError("an object column of other values than text: typed as pandas types it")
            schema = _column_schema(columns)
            arrays = [pa.array(columns[f.name], type=f.type, from_pandas=True) for f in schema]
            return pa.Table.from_arrays(arrays, schema=schema)
        except (pa.ArrowException, TypeError, ValueError):
            pass
        pending = [pd.DataFrame(columns)]
    frames = [p if isinstance(p, pd.DataFrame) else pd.DataFrame(p) for p in pending]
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return pa.Table.from_pandas(frame, preserve_index=False)


class RunLock:
    """The one-writer lock of a run folder: an OS lock (``filelock``, flock on Unix) that the
    kernel releases when its holder dies, so a killed sweep never leaves a stale lock and no
    pid has to be read back. Non-blocking: a held lock is refused (after the few ms a
    reader's probe may hold it)."""

    def __init__(self, folder: Path, run_id: str):
        self.run_id = run_id
        self._lock = FileLock(folder / _LOCK, timeout=0)

    def acquire(self) -> "RunLock":
        stray = _stray(Path(self._lock.lock_file), links=False)
        if stray:
            raise RunDamaged(self.run_id, f"has {stray} where its lock file {_LOCK} belongs")
        try:  # refused within a few ms: a reader's probe (lock_held) holds it for microseconds
            self._lock.acquire(timeout=_PROBE_GRACE_S, poll_interval=0.01)
        except Timeout:
            raise ThreadXError(f"run {self.run_id} is being written by another process; wait for it or use "
                               "another run id") from None
        return self

    def release(self) -> None:
        self._lock.release()


def lock_held(folder: Path) -> bool:
    """Whether a writer holds the run's lock now (a non-blocking probe of the OS lock)."""
    if not (folder / _LOCK).exists():
        return False
    probe = FileLock(folder / _LOCK, timeout=0)
    try:
        probe.acquire()
    except Timeout:
        return True
    probe.release()
    return False


def _stray(path: Path, links: bool = True) -> str:
    """What stands at ``path``, where one of a run's own files belongs, when it is no file
    ("a folder", "a link to a folder", ...); "" for a file or nothing. ``links`` False: a
    link to a file is stray too (the lock file is opened without following links: a link
    there read "[Errno 40] Too many levels of symbolic links", even to repair)."""
    if not links and path.is_symlink():
        return "a symbolic link"
    if not path.exists() or path.is_file():
        return ""
    kind = "a folder" if path.is_dir() else "a pipe" if stat.S_ISFIFO(path.stat().st_mode) else "a device or socket"
    return f"a link to {kind}" if path.is_symlink() else kind


def _write_plan(folder: Path, manifest: dict[str, Any]) -> None:
    """Write ``plan.json``: the manifest less its progress keys."""
    plan = {k: v for k, v in manifest.items() if k not in _PROGRESS_KEYS}
    atomic_write_bytes(folder / _PLAN_FILE, json.dumps(plan, indent=2, default=str).encode())


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    atomic_write_bytes(folder / "manifest.json", json.dumps(manifest, indent=2, default=str).encode())


# --- integrity: what is really stored ---------------------------------------------------------

class RunDamaged(ThreadXError):
    """A stored run whose files cannot be trusted: ``why`` says what is wrong, the message
    also how to recover (``advice``, by default a repair or another run id)."""

    def __init__(self, run_id: str, why: str, advice: str | None = None):
        self.run_id, self.why = run_id, why
        advice = advice or f"`threadx runs repair {run_id}` or pick another run id"
        super().__init__(f"run {run_id} {why}: {advice}")


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; ValueError (with the reason) when it is not one."""
    stray = _stray(path)  # (a FIFO there held every command reading it, `runs list` too)
    if stray:
        raise ValueError(f"{stray}, not a file")
    try:
        data = json.loads(path.read_bytes())
    except UnicodeDecodeError as exc:
        raise ValueError("not text") from exc
    except json.JSONDecodeError as exc:
        raise ValueError("empty" if not path.stat().st_size else f"not JSON ({exc.msg})") from exc
    except RecursionError:  # ([[[[...]]]] deeper than Python's stack: a traceback from every command)
        raise ValueError("nested too deeply to be JSON this store wrote") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def read_manifest(folder: Path, run_id: str) -> dict[str, Any] | None:
    """The run's manifest; None when the folder holds no run; RunDamaged when it cannot be used."""
    path = folder / "manifest.json"
    if not path.exists():
        if _part_paths(folder):
            raise RunDamaged(run_id, "has parts but no manifest")
        return None
    try:
        manifest = _read_json(path)
    except (OSError, ValueError) as exc:
        raise RunDamaged(run_id, f"has an unreadable manifest.json ({exc})") from None
    problem = _manifest_problem(manifest)
    if problem:
        raise RunDamaged(run_id, f"has a manifest whose {problem}")
    manifest.setdefault("run_id", run_id)
    return manifest


# the manifest keys the store, the CLI and the pages read, with their kind (threadx.shapes)
_MANIFEST_KINDS: dict[str, Kind] = {
    **{key: TEXT for key in ("strategy", "status", "objective", "started_at", "finished_at", "sampler", "run_id",
                             "dataset", "timeframe", "fingerprint", "strategy_code", "rows_code", _TOKEN, "error")},
    **{key: WHOLE for key in ("done", "total", "failed", "n", "bars", "seed", "session_done")},
    **{key: OBJECT for key in ("engine", "machine", "request", "timings", "data")},
    # (read whenever present)
    "space": OBJECT.not_null(), "min_trades": WHOLE.not_null(), "maximize": SWITCH.not_null(), "param_names": LIST,
    "warnings": LIST, "block_end": WHOLES, "executors": LIST,
}
_READ_KEYS = ("strategy", "space", "sampler", "objective")  # what reading a run's results needs


def _manifest_problem(manifest: dict[str, Any], required: tuple[str, ...] = ()) -> str | None:
    """What makes a manifest unusable (after "has a manifest whose ..."), or None: the ``required``
    keys present, each known key of its kind, the objective a metric, the space's axes a list
    of names each with values."""
    problem = shape_problem(manifest, _MANIFEST_KINDS, required)
    if problem:
        return problem
    if manifest.get("objective", METRIC_NAMES[0]) not in METRIC_NAMES:
        return f"'objective' is {repr(manifest['objective'])[:40]}, not a metric"
    axes = (manifest.get("space") or {"axes": []}).get("axes")
    if not isinstance(axes, list) or not all(isinstance(a, dict) and isinstance(a.get("name"), str)
                                             and isinstance(a.get("values"), list) and a["values"] for a in axes):
        return "'space' has no list of axes (each a name and its values)"
    return None


def _part_paths(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("part-*.parquet") if _PART.match(p.name)) if folder.is_dir() else []


_UNCHECKED = "(unchecked)"  # _footer_rows's token when the caller does not check which run wrote the part


def _footer_rows(path: Path, token: str | None = _UNCHECKED) -> int:
    """Row count of a part from its footer; RunDamaged when it is not a whole part, or (given the
    run's ``token``, None for a run stored before tokens) a part another run wrote: one with
    another token (a part without one is a run's own, written before tokens, or edited)."""
    import pyarrow.parquet as pq

    _require_file(path)
    try:
        meta = pq.read_metadata(path)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise _bad_part(path, exc) from None
    missing = {"combo_id", "status"} - set(meta.schema.names)
    if missing:
        raise RunDamaged(path.parent.name, f"has a part {path.name} without {', '.join(sorted(missing))}")
    _check_kinds(path, meta.schema.to_arrow_schema())
    theirs = _part_token(meta)
    if token != _UNCHECKED and theirs is not None and theirs != token:
        raise RunDamaged(path.parent.name, f"has a part {path.name} that another run wrote (a file copied in from "
                                           "elsewhere: its rows are not this run's)")
    return meta.num_rows


def _part_token(meta: Any) -> str | None:
    """The run token in a part's footer (``pq.read_metadata``'s), None for a part without one."""
    value = (meta.metadata or {}).get(_TOKEN_FOOTER)
    return value.decode("utf-8", "replace") if value is not None else None


def _own_parts(folder: Path, run_id: str, manifest: dict[str, Any]) -> tuple[list[Path], int]:
    """(the run's parts, the rows their footers count); RunDamaged when its manifest and plan.json
    are of two runs, or a part is another run's (or not a whole part)."""
    problem = _plan_token_problem(folder, manifest)
    if problem:
        raise RunDamaged(run_id, problem)
    parts = _part_paths(folder)
    return parts, sum(_footer_rows(p, manifest.get(_TOKEN)) for p in parts)


def _plan_token_problem(folder: Path, manifest: dict[str, Any]) -> str | None:
    """Why the run's manifest and its plan.json are not of one run (their run tokens differ: one
    was copied in from another run), or None (also when the plan cannot be read: repair's business)."""
    try:
        plan = _read_json(folder / _PLAN_FILE)
    except (OSError, ValueError):
        return None
    if _token(plan) != _token(manifest):
        return f"has a manifest.json and a {_PLAN_FILE} of two runs (a file copied in from another run)"
    return None


def _check_kinds(path: Path, schema: Any) -> None:
    """RunDamaged unless a part's combo_id holds whole numbers and its status text."""
    import pyarrow as pa

    ids, status = schema.field("combo_id").type, schema.field("status").type
    if not pa.types.is_integer(ids) or not (pa.types.is_string(status) or pa.types.is_large_string(status)):
        raise RunDamaged(path.parent.name, f"has a part {path.name} whose combo_id is {ids} and status {status} "
                                           "(whole numbers and text expected)")


def _read_table(path: Path, columns: list[str] | None):
    """Columns of one part (a pyarrow Table); RunDamaged when it cannot be read."""
    import pyarrow.parquet as pq

    _require_file(path)
    try:
        return pq.read_table(path, columns=columns, page_checksum_verification=True)
    except (OSError, ValueError) as exc:
        raise _bad_part(path, exc) from None


def _require_file(path: Path) -> None:
    """RunDamaged when a part's name holds no file (a FIFO there held `runs list` for ever)."""
    stray = _stray(path)
    if stray:
        raise RunDamaged(path.parent.name, f"has a part {path.name} that is {stray}, not a file")


def _bad_part(path: Path, exc: BaseException) -> RunDamaged:
    why = first_line(exc, 120)
    return RunDamaged(path.parent.name, f"has an unreadable part {path.name} ({why})")


@dataclass(frozen=True)
class StoredRows:
    """What a run's parts hold, the last write of each combo counting (a retry supersedes)."""

    ids: np.ndarray  # every stored combo id, sorted
    failed: int  # rows whose last write failed
    retry_ids: np.ndarray  # ... of which infrastructural (a resume runs them again)

    @property
    def settled_ids(self) -> np.ndarray:
        """Combo ids a resume skips: ok, or failed by an error of the combo itself."""
        return np.setdiff1d(self.ids, self.retry_ids, assume_unique=True)


def stored_rows(parts: list[Path]) -> StoredRows:
    """Read combo ids and statuses of ``parts`` (error texts of the failed rows only).
    Raises RunDamaged naming the first part that cannot be read."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from threadx.optimize.evaluate import is_infra_failure

    common = pa.schema([("combo_id", pa.int64()), ("status", pa.large_string())])
    tables = []
    for path in parts:
        table = _read_table(path, ["combo_id", "status"])
        _check_kinds(path, table.schema)  # a part of other kinds is named, not a concat error
        tables.append(table.cast(common))
    empty = np.empty(0, dtype=np.int64)
    if not tables:
        return StoredRows(empty, 0, empty)
    table = pa.concat_tables(tables)
    ids = table.column("combo_id").to_numpy()
    order = np.argsort(ids, kind="stable")
    ranked = ids[order]
    last = order[np.append(ranked[1:] != ranked[:-1], True)]  # the last write of each id
    failed = last[pc.equal(table.column("status").take(pa.array(last)), "failed").to_numpy(zero_copy_only=False)]
    retry = empty
    if len(failed):
        errors = pa.concat_tables([_read_table(p, ["error"]) for p in parts]).column("error")
        texts = errors.take(pa.array(failed)).to_pylist()
        retry = np.sort(ids[failed[[is_infra_failure(t or "") for t in texts]]])
    return StoredRows(ids[last], len(failed), retry)


def _param_columns(parts: list[Path]) -> set[str]:
    """Param columns of the stored rows (every column but the fixed ones), from the first footer."""
    import pyarrow.parquet as pq

    names = pq.read_schema(parts[0]).names
    return {c for c in names if c not in RESULT_COLUMNS and not c.startswith((BLOCK_SUM_PREFIX, BLOCK_SQ_PREFIX))}


def _remove_stale_temps(folder: Path) -> None:
    """Delete the temporary files of part and manifest writes that never ended; a folder under such a name
    is no write of ours: moved to quarantine (it stopped every resume and repair with "[Errno 21]
    Is a directory")."""
    for stale in folder.glob(".part-*.tmp"):
        if stale.is_dir() and not stale.is_symlink():
            _quarantine(folder, stale)
        else:
            stale.unlink(missing_ok=True)
    for name in ("manifest.json", _PLAN_FILE):  # (atomic_write_bytes's, left by a kill: the lock is ours)
        for stale in folder.glob(f".{name}.*.tmp"):
            if stale.is_file() and not stale.is_symlink():
                stale.unlink(missing_ok=True)


def _quarantine(folder: Path, path: Path) -> str:
    """Move a damaged part to ``<run>/quarantine/`` (user data is never deleted); its new path."""
    target_dir = folder / QUARANTINE
    if target_dir.exists() and not target_dir.is_dir():  # ("[Errno 17] File exists", naming no run)
        raise RunDamaged(folder.name, f"has {_stray(target_dir) or 'a file'} where its {QUARANTINE} folder belongs "
                                      f"(for the parts it cannot read)", f"move {target_dir} aside, then "
                                      f"`threadx runs repair {folder.name}`")
    target_dir.mkdir(exist_ok=True)
    target = target_dir / path.name
    k = 1
    while target.exists():
        target, k = target_dir / f"{path.stem}.{k}{path.suffix}", k + 1
    os.replace(path, target)
    return str(target.relative_to(folder))


def _check_plan(run_id: str, stored: dict[str, Any], manifest: dict[str, Any]) -> None:
    """Refuse to resume when the stored plan differs from the new one or lacks keys."""
    for key in _PLAN_KEYS:
        if key not in stored and (key not in manifest or key in _LEGACY_OPTIONAL):
            continue
        if key == "strategy_code" and stored[key] != manifest.get(key):
            raise ThreadXError(f"run {run_id} was computed with other code of strategy {stored.get('strategy')!r} "
                               f"(hash {str(stored[key])[:8]} then, {str(manifest.get(key))[:8]} now): its stored rows "
                               "came from that code; pick another run id to start a new run")
        if key == "rows_code" and stored[key] != manifest.get(key):
            raise ThreadXError(f"run {run_id} was computed with another version of ThreadX's engine, indicators or "
                               f"sweep code (hash {str(stored[key])[:8]} then, {str(manifest.get(key))[:8]} now): its "
                               "stored rows came from that code; pick another run id to start a new run")
        if key not in stored:
            raise RunDamaged(run_id, f"has a manifest without {key!r}, so its rows cannot be checked against "
                                     "this sweep")
        if key == "engine" and isinstance(stored[key], dict) and isinstance(manifest.get(key), dict):
            then, now = stored[key], manifest[key]
            changed = sorted(k for k in {*then, *now} if then.get(k) != now.get(k))
            if changed:  # (a funding file fetched again since: its record's sha256 differs)
                raise ThreadXError(f"run {run_id} was computed with other engine options ({', '.join(changed)} "
                                   "differ); pick another run id to start a new run")
        if key not in manifest or stored[key] != manifest[key]:
            raise ThreadXError(f"run {run_id} exists with a different {key}; pick another run id to start a new run")
    if manifest.get("sampler") == "adaptive":  # its rounds refine around the best by the run's own ranking
        for key in _ADAPTIVE_PLAN_KEYS:
            if key in stored and stored[key] != manifest.get(key):
                raise ThreadXError(f"run {run_id} is an adaptive sweep ranked by {key} {stored[key]!r}, not "
                                   f"{manifest.get(key)!r}: its refinement rounds follow that ranking (which combos a "
                                   "resume held would depend on when it stopped); pick another run id to start a "
                                   "new run")


def _check_columns(run_id: str, parts: list[Path], manifest: dict[str, Any]) -> None:
    """Refuse to resume when the stored rows hold other params than the sweep's space."""
    if not parts or "param_names" not in manifest:
        return
    stored, wanted = _param_columns(parts), set(manifest["param_names"])
    if stored != wanted:
        raise ThreadXError(f"run {run_id} stores params {sorted(stored)} but this sweep's space has "
                           f"{sorted(wanted)}; pick another run id")


class ResultStore:
    """All runs under one results directory (default: settings().results_dir)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else settings().results_dir
        for folder in (self.root, *self.root.parents):  # (a file there read "[Errno 20] Not a directory")
            if folder.exists():
                if not folder.is_dir():
                    raise ParamError(f"results folder {str(self.root)!r}: {folder} is a file; results need a "
                                     "directory (--store, or the results_dir setting)")
                break

    def folder(self, run_id: str) -> Path:
        return self.root / check_run_id(run_id)

    def exists(self, run_id: str) -> bool:
        return (self.folder(run_id) / "manifest.json").exists()

    def open_run(self, run_id: str, manifest: dict[str, Any],
                 check_ids: Callable[[np.ndarray], None] | None = None) -> RunWriter:
        """Writer for a new run, or for an existing one to resume.

        Resuming needs the same strategy, data, space, engine options and sampling plan
        (sampler, n, seed, block layout), all present in the stored manifest, and parts
        holding the same params; anything else is refused with one line (RunDamaged for a
        damaged run). A part that cannot be read is moved to ``quarantine/`` and its combos
        run again. The ranking settings (objective, maximize, min_trades) are taken from the
        new call (an adaptive run's must be the same). An id a walk-forward has is refused.
        One writer per run at a time (:class:`RunLock`). ``check_ids`` sees the combo ids already
        stored and may refuse them (raise) before anything is written.
        """
        folder = self.folder(run_id)
        from threadx.validation.storage import is_stored

        if not self.exists(run_id) and is_stored(run_id, self.root):  # (`runs show` then showed only the sweep)
            raise ThreadXError(f"run id {run_id} is a stored walk-forward's; pick another run id")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            lock = RunLock(folder, run_id).acquire()
        except OSError as exc:  # (a read-only or full results folder read "[Errno 30] Read-only file system: ...")
            raise ThreadXError(f"cannot store run {run_id} in {folder}: {os_reason(exc)}; pick a results folder "
                               "this user can write (--store, or the results_dir setting)") from exc
        try:
            stored = read_manifest(folder, run_id)
            if stored is None:
                manifest = {**manifest, _TOKEN: secrets.token_hex(8)}
            else:
                problem = _plan_token_problem(folder, stored)
                if problem:
                    raise RunDamaged(run_id, problem)
                _check_plan(run_id, stored, manifest)
                moved = self._quarantine_bad(folder, token=stored.get(_TOKEN))
                _check_columns(run_id, _part_paths(folder), manifest)
                if check_ids is not None:
                    check_ids(stored_rows(_part_paths(folder)).ids)
                if moved:
                    stored["quarantined"] = [*stored.get("quarantined", []), *moved]
                stored.update({k: v for k, v in manifest.items() if k not in stored or k in _SESSION_KEYS})
                manifest = stored
            writer = RunWriter(folder, manifest, lock=lock)
            # the plan, kept apart: `runs repair` rebuilds from it (a new run writes its own: one left by a start
            # killed before its manifest is of no run)
            if stored is None or not (folder / _PLAN_FILE).exists():
                _write_plan(folder, manifest)
            write_manifest(folder, manifest)
        except BaseException:
            lock.release()
            raise
        return writer

    def _quarantine_bad(self, folder: Path, every_column: bool = False, token: str | None = _UNCHECKED
                        ) -> list[dict[str, str]]:
        """Move every part that cannot be read (or, given the run's ``token``, that another run
        wrote) to quarantine/; what moved and why. ``every_column`` (a repair): read every column
        too, so a page that fails its checksum is found (a resume reads only the ids and
        statuses: the results are verified when read)."""
        moved = []
        for path in _part_paths(folder):
            try:
                _footer_rows(path, token)
                stored_rows([path])
                if every_column:
                    _read_table(path, None)
            except RunDamaged as exc:
                moved.append({"part": _quarantine(folder, path), "why": exc.why})
        return moved

    def stored(self, run_id: str) -> StoredRows:
        """Combo ids, failures and infrastructural failures stored for a run (read from its parts)."""
        return stored_rows(_part_paths(self.folder(run_id)))

    def done_ids(self, run_id: str) -> np.ndarray:
        """Combo ids already stored for a run (empty for a new one)."""
        return self.stored(run_id).ids

    def load(self, run_id: str) -> SweepRun:
        """A stored run (its rows are read when first used). RunDamaged when a file of it
        cannot be read; its status says ``interrupted`` for a writer that is gone and
        ``damaged: ...`` when its parts hold fewer rows than its manifest counts."""
        folder = self.folder(run_id)
        manifest = read_manifest(folder, run_id) if folder.is_dir() else None
        if manifest is None:
            raise ThreadXError(f"no run {run_id!r} under {self.root}; see `threadx runs list`")
        problem = _manifest_problem(manifest, required=_READ_KEYS)
        if problem:
            raise RunDamaged(run_id, f"has a manifest whose {problem}")
        parts, rows = _own_parts(folder, run_id, manifest)
        if parts and isinstance(manifest.get("param_names"), list):  # (validate read a winner's params by them)
            stored, named = _param_columns(parts), set(map(str, manifest["param_names"]))
            if stored != named:
                raise RunDamaged(run_id, f"has a manifest naming params {sorted(named)} where its parts hold "
                                         f"{sorted(stored)}")
        manifest["status"] = _status(folder, manifest, rows)
        manifest["run_id"] = run_id  # the folder's name, whatever a copied or edited manifest says
        return SweepRun(manifest=manifest, parts=parts)

    def list_runs(self) -> pd.DataFrame:
        """One row per stored run (newest first); a damaged run is listed with status
        ``damaged: <why>`` and the others are listed as usual."""
        rows = []
        if self.root.exists():
            for folder in sorted(self.root.iterdir()):
                if folder.is_dir() and not folder.name.startswith(".") and (
                        (folder / "manifest.json").exists() or _part_paths(folder)):
                    rows.append(self._summary(folder))
        if not rows:
            return pd.DataFrame(rows)
        frame = pd.DataFrame(rows).astype({"done": "Int64", "total": "Int64", "failed": "Int64"})  # NA: damaged
        return frame.sort_values("started_at", ascending=False, na_position="last").reset_index(drop=True)

    def _summary(self, folder: Path) -> dict[str, Any]:
        row: dict[str, Any] = {k: None for k in _LIST_COLUMNS}
        row["run_id"] = folder.name
        try:
            m = read_manifest(folder, folder.name) or {}
            row.update({k: m.get(k) for k in _LIST_COLUMNS if k in m})
            row["run_id"] = folder.name  # a run is its folder: a copy lists as the copy
            parts, rows = _own_parts(folder, folder.name, m)
            stored = stored_rows(parts)
            row.update(done=len(stored.ids), failed=stored.failed, status=_status(folder, m, rows))
        except RunDamaged as exc:
            row["status"] = f"damaged: {exc.why}"
        return row

    def repair(self, run_id: str) -> dict[str, Any]:
        """Make a damaged run resumable: quarantine parts that cannot be read, restore the
        manifest (from ``plan.json``, the plan written when the run was created) when it is
        missing, unreadable or lacks plan keys, and recount its rows. What was done."""
        folder = self.folder(run_id)
        if not folder.is_dir():
            raise ThreadXError(f"no run {run_id!r} under {self.root}; see `threadx runs list`")
        strays = []  # a folder where the lock, the manifest or the plan belongs: never ThreadX's, moved aside
        for name in (_LOCK, "manifest.json", _PLAN_FILE):
            stray = _stray(folder / name, links=name != _LOCK)
            if stray:
                strays.append({"part": _quarantine(folder, folder / name), "why": f"{stray} where {name} belongs"})
        lock = RunLock(folder, run_id).acquire()
        try:
            return self._repair_locked(folder, run_id, strays)
        except OSError as exc:  # a full disk, a read-only folder: one line naming the run ("[Errno 28] ...")
            raise ThreadXError(f"cannot repair run {run_id} in {folder}: {os_reason(exc)}; nothing of it was "
                               "deleted") from exc
        finally:
            lock.release()

    def _repair_locked(self, folder: Path, run_id: str, strays: list[dict[str, str]]) -> dict[str, Any]:
        """:meth:`repair` once the run's lock is held."""
        _remove_stale_temps(folder)
        manifest, rebuilt = self._repaired_manifest(folder, run_id)
        moved = strays + self._quarantine_bad(folder, every_column=True, token=manifest.get(_TOKEN))
        stored = stored_rows(_part_paths(folder))
        status = manifest.get("status")
        if moved or rebuilt or status == "running" or len(stored.retry_ids) or (
                str(status).startswith("completed") and len(stored.ids) < int(manifest.get("total") or 0)):
            status = "interrupted"  # resumable: the next resume runs what is missing
        manifest.update(status=status, done=len(stored.ids), failed=stored.failed,
                        quarantined=[*manifest.get("quarantined", []), *moved])
        write_manifest(folder, manifest)
        return {"run_id": run_id, "quarantined": moved, "manifest": rebuilt or "kept", "status": status,
                "done": len(stored.ids), "failed": stored.failed, "to_retry": len(stored.retry_ids)}

    def _repaired_manifest(self, folder: Path, run_id: str) -> tuple[dict[str, Any], str]:
        """(a usable manifest, "" or what was rebuilt); RunDamaged when the plan is unknown, or
        when its manifest or plan.json is another run's (no part was written by the run it names)."""
        try:
            manifest, why = read_manifest(folder, run_id), ""
        except RunDamaged as exc:
            manifest, why = None, exc.why
        manifest, why = self._own_files(folder, run_id, manifest, why)
        why = why or ("has no manifest" if manifest is None else "")
        if manifest is not None and all(k in manifest for k in _PLAN_KEYS if k not in _LEGACY_OPTIONAL):
            try:  # the params the rows hold, as first written (an edited list broke validate and show)
                first = _read_json(folder / _PLAN_FILE).get("param_names")
            except (OSError, ValueError):
                first = None
            if isinstance(first, list) and manifest.get("param_names") != first:
                return {**manifest, "param_names": first}, f"param_names restored from {_PLAN_FILE}"
            return manifest, ""  # (a run of an earlier version lacks the optional keys: it resumes without them)
        why = why or "has a manifest without " + ", ".join(k for k in _PLAN_KEYS if k not in (manifest or {}))
        try:
            plan = _read_json(folder / _PLAN_FILE)
        except (OSError, ValueError):
            raise RunDamaged(run_id, f"{why} and its plan is unknown (no readable {_PLAN_FILE}), so it cannot be "
                             "repaired", "its parts are kept; start again with another run id") from None
        if manifest is None:
            manifest, what = {**plan, "status": "interrupted"}, f"rebuilt from {_PLAN_FILE} ({why})"
        else:
            missing = [k for k in _PLAN_KEYS if k not in manifest and k in plan]
            manifest.update({k: plan[k] for k in missing})
            what = f"plan keys {', '.join(missing)} restored from {_PLAN_FILE}"
        problem = _manifest_problem(manifest, required=tuple(k for k in _PLAN_KEYS if k not in _LEGACY_OPTIONAL))
        if problem:  # a plan.json edited or damaged: a manifest rebuilt from it would be refused at once
            raise RunDamaged(run_id, f"{why} and its {_PLAN_FILE} is no usable plan (its {problem}), so it cannot "
                             "be repaired", "its parts are kept; start again with another run id")
        return manifest, what


    @staticmethod
    def _own_files(folder: Path, run_id: str, manifest: dict[str, Any] | None, why: str
                   ) -> tuple[dict[str, Any] | None, str]:
        """(the manifest, why it is rebuilt) once the manifest and plan.json are the run's own.
        When their run tokens differ, the run's own is the one its parts carry (parts without
        a token: the file without one; no part at all: plan.json, written once as the run was
        created): a foreign manifest is rebuilt from the plan, a foreign plan rewritten from the
        manifest. RunDamaged when the files are another run's: no part carries their token and
        they count rows of their own (or every part has a token and the files none)."""
        import pyarrow.parquet as pq

        try:
            plan = _read_json(folder / _PLAN_FILE)
        except (OSError, ValueError):
            plan = None
        carried, untagged = set(), 0
        for path in _part_paths(folder):
            try:
                token = _part_token(pq.read_metadata(path))
            except (OSError, ValueError):
                continue  # (an unreadable part: quarantined by the repair)
            if token is None:
                untagged += 1
            else:
                carried.add(token)
        foreign = RunDamaged(run_id, f"has {'no manifest and ' if manifest is None else 'a manifest.json and '}"
                             f"{'no ' if plan is None else 'the '}{_PLAN_FILE} of another run (no part of it was "
                             "written by that run)", "put back the run's own files, or start again with another run "
                             "id (its parts are kept)")
        if manifest is not None and plan is not None and _token(manifest) != _token(plan):
            tokens = {_token(manifest), _token(plan)}
            if carried & tokens:
                own_plan = _token(plan) in carried
            elif untagged and None in tokens:
                own_plan = _token(plan) is None
            elif not carried and not untagged:
                own_plan = True
            else:
                raise foreign
            if own_plan:
                return None, "has the manifest.json of another run"  # rebuilt from the plan below
            _write_plan(folder, manifest)
            return manifest, why  # (the plan of another run, replaced by this run's from its manifest)
        if manifest is None and plan is None:
            return manifest, why
        token = _token(manifest if manifest is not None else plan)
        if manifest is None and _manifest_problem(plan, required=tuple(k for k in _PLAN_KEYS
                                                                        if k not in _LEGACY_OPTIONAL)):
            return manifest, why  # no usable plan at all: said as such below
        if carried and token not in carried and not untagged:
            claimed = int((manifest or {}).get("done") or 0) if manifest is not None else 1
            if token is None or claimed > 0:  # the files count rows of which none is here
                raise foreign
        return manifest, why  # (parts of another run among the run's own are quarantined by the repair)


def _token(record: dict[str, Any]) -> str | None:
    """A manifest's or plan's run token (None for a run stored before tokens; any other value
    than text stands for none that matches)."""
    value = record.get(_TOKEN)
    return value if value is None or isinstance(value, str) else f"(not text: {type(value).__name__})"


_LIST_COLUMNS = ("run_id", "strategy", "dataset", "sampler", "status", "done", "total", "failed", "objective",
                 "started_at", "finished_at")


def _status(folder: Path, manifest: dict[str, Any], rows: int) -> str:
    """The run's status as stored, corrected by what is on disk: ``interrupted`` when it says
    running but no writer holds its lock; ``damaged: ...`` when its parts hold fewer rows than
    the manifest counts (rows were lost)."""
    status = str(manifest.get("status") or "unknown")
    done = int(manifest.get("done") or 0)
    if status == "running":
        return "running" if lock_held(folder) else "interrupted"
    if rows < done:
        return f"damaged: parts hold {rows:,} rows, the manifest counts {done:,} done"
    return status
