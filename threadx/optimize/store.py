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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from threadx.config import settings
from threadx.errors import ThreadXError

_PART = re.compile(r"^part-(\d{6})\.parquet$")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def _atomic_write_bytes(path: Path, data: bytes) -> None:
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
    """A run id usable as a folder name (letters, digits, ``_.-``)."""
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        raise ThreadXError(f"invalid run id {run_id!r}: use letters, digits, '_', '.', '-' (max 128)")
    return run_id


@dataclass
class SweepRun:
    """A stored optimisation run: its manifest and one row per evaluated combo."""

    manifest: dict[str, Any]
    results: pd.DataFrame = field(repr=False)

    @property
    def run_id(self) -> str:
        return self.manifest["run_id"]

    @property
    def param_names(self) -> list[str]:
        return list(self.manifest.get("param_names", []))

    def ok(self) -> pd.DataFrame:
        """Rows whose backtest ran."""
        return self.results[self.results["status"] == "ok"]

    def top(self, n: int = 10, objective: str | None = None, maximize: bool | None = None,
            min_trades: int = 0) -> pd.DataFrame:
        """Best ``n`` combos by the objective (default: the run's own), NaN last."""
        objective = objective or self.manifest.get("objective", "sharpe")
        maximize = self.manifest.get("maximize", True) if maximize is None else maximize
        rows = self.ok()
        if min_trades:
            rows = rows[rows["n_trades"] >= min_trades]
        return rows.sort_values(objective, ascending=not maximize, na_position="last", kind="stable").head(n)

    def best_params(self) -> dict[str, Any]:
        """Params of the best combo (ParamError-free Python scalars)."""
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

    def update_manifest(self, **fields: Any) -> None:
        """Merge fields into the manifest and rewrite it atomically."""
        self.manifest.update(fields)
        write_manifest(self.folder, self.manifest)


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    _atomic_write_bytes(folder / "manifest.json", json.dumps(manifest, indent=2, default=str).encode())


class ResultStore:
    """All runs under one results directory (default: settings().results_dir)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else settings().results_dir

    def folder(self, run_id: str) -> Path:
        return self.root / check_run_id(run_id)

    def exists(self, run_id: str) -> bool:
        return (self.folder(run_id) / "manifest.json").exists()

    def open_run(self, run_id: str, manifest: dict[str, Any]) -> RunWriter:
        """Writer for a new run, or for an existing one to resume (its manifest is kept)."""
        folder = self.folder(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "manifest.json"
        if path.exists():
            stored = json.loads(path.read_text())
            for key in ("strategy", "fingerprint", "space", "engine"):
                if key in stored and key in manifest and stored[key] != manifest[key]:
                    raise ThreadXError(
                        f"run {run_id} exists with a different {key}; pick another run id to start a new run"
                    )
            stored.update({k: v for k, v in manifest.items() if k not in stored})
            manifest = stored
        writer = RunWriter(folder, manifest)
        write_manifest(folder, manifest)
        return writer

    def done_ids(self, run_id: str) -> np.ndarray:
        """Combo ids already stored for a run (empty for a new one)."""
        folder = self.folder(run_id)
        ids = [pd.read_parquet(p, columns=["combo_id"])["combo_id"].to_numpy() for p in sorted(folder.glob("part-*.parquet"))]
        return np.unique(np.concatenate(ids)) if ids else np.empty(0, dtype=np.int64)

    def load(self, run_id: str) -> SweepRun:
        """A stored run with all its rows."""
        folder = self.folder(run_id)
        if not (folder / "manifest.json").exists():
            raise ThreadXError(f"no run {run_id!r} under {self.root}; see `threadx runs list`")
        manifest = json.loads((folder / "manifest.json").read_text())
        parts = sorted(folder.glob("part-*.parquet"))
        if not parts:
            return SweepRun(manifest=manifest, results=pd.DataFrame())
        import pyarrow.parquet as pq
        import pyarrow as pa

        table = pa.concat_tables([pq.read_table(p) for p in parts])
        order = np.argsort(table.column("combo_id").to_numpy(), kind="stable")
        table = table.take(order)  # sorted by combo id
        results = table.to_pandas(self_destruct=True, split_blocks=True)  # without a second full copy
        del table
        ids = results["combo_id"].to_numpy()
        if len(ids) > 1 and not (ids[1:] != ids[:-1]).all():  # a combo stored twice: keep the last write
            results = results.drop_duplicates("combo_id", keep="last").reset_index(drop=True)
        return SweepRun(manifest=manifest, results=results)

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
