"""Results store: one folder per run with Parquet parts and a JSON manifest (SPEC §6.3).

Layout: ``<results_dir>/<run_id>/manifest.json`` and ``part-NNNNNN.parquet`` files, each
written atomically (temp file + rename) by the single writer of the run, so a killed
sweep leaves only whole parts behind; a resumed run reads the combo ids they hold and
skips them. Rows: ``combo_id``, one column per param, every fast metric, ``status``
(``ok`` / ``failed``) and ``error``.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from threadx.config import settings
from threadx.errors import ThreadXError
from threadx.names import check_name

_PART = re.compile(r"^part-(\d{6})\.parquet$")
_LOCK = ".writer.lock"
_PLAN_KEYS = ("strategy", "fingerprint", "space", "engine", "sampler", "n", "seed", "block_end")
_SESSION_KEYS = ("objective", "maximize", "min_trades", "machine", "versions", "started_at")


def atomic_write_bytes(path: Path, data: bytes) -> None:
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


def check_run_id(run_id: str) -> str:
    """A run id usable as a folder name (letters, digits, ``_.-``; :mod:`threadx.names`)."""
    return check_name(run_id, "run id")


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
    def results(self) -> pd.DataFrame:
        """Every stored row, sorted by combo id (loaded once)."""
        if self._results is None:
            self._results = _read_parts(self._parts, columns=self._row_columns())
        return self._results

    def ok_columns(self, columns: list[str]) -> pd.DataFrame:
        """``combo_id`` and ``columns`` of the successful rows, reading only those columns."""
        wanted = list(dict.fromkeys(["combo_id", *columns]))
        if self._results is not None or not self._parts:
            ok = self.ok()
            return ok[wanted] if len(ok) else pd.DataFrame(columns=wanted)
        rows = _read_parts(self._parts, columns=list(dict.fromkeys([*wanted, "status"])))
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
            min_trades: int = 0) -> pd.DataFrame:
        """Best ``n`` combos by the objective (default: the run's own), NaN last."""
        objective = objective or self.manifest.get("objective", "sharpe")
        maximize = self.manifest.get("maximize", True) if maximize is None else maximize
        if self._results is None and self._parts:
            ranked = _read_parts(self._parts, columns=["combo_id", "status", "n_trades", objective])
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
        best = self.top(1, min_trades=int(self.manifest.get("min_trades", 0)))
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
    import pyarrow.parquet as pq

    tables = []
    for path in parts:
        table = pq.read_table(path, columns=columns)
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
                 flush_seconds: float = 5.0):
        self.folder = folder
        self.manifest = manifest
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self._pending: list[pd.DataFrame] = []
        self._pending_rows = 0
        self._last_flush = time.monotonic()
        parts = [int(m.group(1)) for p in folder.iterdir() if (m := _PART.match(p.name))]
        self._next_part = max(parts, default=-1) + 1
        for stale in folder.glob(".part-*.tmp"):  # a write interrupted by a kill
            stale.unlink(missing_ok=True)

    def append(self, rows: pd.DataFrame) -> None:
        """Queue rows; they reach disk on the next flush (by size or time)."""
        if len(rows):
            self._pending.append(rows)
            self._pending_rows += len(rows)
        if self._pending_rows >= self.flush_rows or time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write queued rows as one new part file (atomic)."""
        self._last_flush = time.monotonic()
        if not self._pending:
            return
        frame = pd.concat(self._pending, ignore_index=True)
        self._pending, self._pending_rows = [], 0
        path = self.folder / f"part-{self._next_part:06d}.parquet"
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            frame.to_parquet(tmp, index=False)
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
            (self.folder / _LOCK).unlink(missing_ok=True)

    def update_manifest(self, **fields: Any) -> None:
        """Merge fields into the manifest and rewrite it atomically."""
        self.manifest.update(fields)
        write_manifest(self.folder, self.manifest)


def _take_lock(folder: Path, run_id: str) -> None:
    """Create the run's lock file, replacing one left by a process that no longer runs."""
    lock = folder / _LOCK
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and pid != os.getpid() and _alive(pid):
                raise ThreadXError(f"run {run_id} is being written by process {pid}; wait for it or use another run id")
            lock.unlink(missing_ok=True)  # stale: its writer was killed
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(str(os.getpid()))
        return
    raise ThreadXError(f"cannot lock run {run_id} in {folder}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    atomic_write_bytes(folder / "manifest.json", json.dumps(manifest, indent=2, default=str).encode())


class ResultStore:
    """All runs under one results directory (default: settings().results_dir)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else settings().results_dir

    def folder(self, run_id: str) -> Path:
        return self.root / check_run_id(run_id)

    def exists(self, run_id: str) -> bool:
        return (self.folder(run_id) / "manifest.json").exists()

    def open_run(self, run_id: str, manifest: dict[str, Any]) -> RunWriter:
        """Writer for a new run, or for an existing one to resume.

        Resuming needs the same strategy, data, space, engine options and sampling plan
        (sampler, n, seed); the ranking settings (objective, maximize, min_trades) are
        taken from the new call. One writer per run at a time (a lock file with its pid).
        """
        folder = self.folder(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        _take_lock(folder, run_id)
        try:
            path = folder / "manifest.json"
            if path.exists():
                stored = json.loads(path.read_text())
                for key in _PLAN_KEYS:
                    if key in stored and key in manifest and stored[key] != manifest[key]:
                        raise ThreadXError(
                            f"run {run_id} exists with a different {key}; pick another run id to start a new run"
                        )
                stored.update({k: v for k, v in manifest.items() if k not in stored or k in _SESSION_KEYS})
                manifest = stored
            writer = RunWriter(folder, manifest)
            write_manifest(folder, manifest)
        except BaseException:
            (folder / _LOCK).unlink(missing_ok=True)
            raise
        return writer

    def done_ids(self, run_id: str) -> np.ndarray:
        """Combo ids already stored for a run (empty for a new one)."""
        folder = self.folder(run_id)
        ids = [pd.read_parquet(p, columns=["combo_id"])["combo_id"].to_numpy() for p in sorted(folder.glob("part-*.parquet"))]
        return np.unique(np.concatenate(ids)) if ids else np.empty(0, dtype=np.int64)

    def load(self, run_id: str) -> SweepRun:
        """A stored run (its rows are read when first used)."""
        folder = self.folder(run_id)
        if not (folder / "manifest.json").exists():
            raise ThreadXError(f"no run {run_id!r} under {self.root}; see `threadx runs list`")
        manifest = json.loads((folder / "manifest.json").read_text())
        return SweepRun(manifest=manifest, parts=sorted(folder.glob("part-*.parquet")))

    def list_runs(self) -> pd.DataFrame:
        """One row per stored run (newest first)."""
        rows = []
        if self.root.exists():
            for path in self.root.glob("*/manifest.json"):
                try:
                    m = json.loads(path.read_text())
                except (OSError, json.JSONDecodeError):
                    continue
                rows.append({k: m.get(k) for k in ("run_id", "strategy", "dataset", "sampler", "status", "done",
                                                   "total", "failed", "objective", "started_at", "finished_at")})
        frame = pd.DataFrame(rows)
        return frame.sort_values("started_at", ascending=False, na_position="last").reset_index(drop=True) if rows else frame
