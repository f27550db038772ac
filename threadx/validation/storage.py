"""Walk-forward results on disk: ``<results_dir>/walkforward/<run_id>/``.

``result.pkl`` holds the :class:`WalkForwardResult` (without its evaluator) and its
:class:`ValidationReport`; ``summary.json`` holds their JSON summaries for other tools.
Pickles are local artefacts of this installation: one written by another ThreadX
version may not load, and the error says to run the walk-forward again.
"""
from __future__ import annotations

import json
import os
import pickle
from dataclasses import replace
from pathlib import Path
from typing import Any

from threadx.config import settings
from threadx.errors import ThreadXError
from threadx.optimize.store import atomic_write_bytes, check_run_id

FOLDER = "walkforward"
FORMAT_VERSION = 1


def walkforward_root(results_dir: str | os.PathLike | None = None) -> Path:
    return Path(results_dir if results_dir is not None else settings().results_dir) / FOLDER


def save_walk_forward(run_id: str, wf: Any, report: Any, results_dir: str | os.PathLike | None = None) -> Path:
    """Write a walk-forward and its report (atomically); returns the folder."""
    folder = walkforward_root(results_dir) / check_run_id(run_id)
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"version": FORMAT_VERSION, "walk_forward": replace(wf, evaluator=None), "report": report}
    atomic_write_bytes(folder / "result.pkl", pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))
    summary = {"run_id": run_id, "walk_forward": wf.to_dict(), "validation": report.to_dict()}
    atomic_write_bytes(folder / "summary.json", json.dumps(summary, indent=2, default=str).encode())
    return folder


def load_walk_forward(run_id: str, results_dir: str | os.PathLike | None = None) -> tuple[Any, Any]:
    """(WalkForwardResult, ValidationReport) of a stored walk-forward."""
    path = walkforward_root(results_dir) / check_run_id(run_id) / "result.pkl"
    if not path.exists():
        raise ThreadXError(f"no stored walk-forward {run_id!r} under {path.parent.parent}")
    try:
        payload = pickle.loads(path.read_bytes())
    except Exception as exc:  # another version's classes, a truncated file
        raise ThreadXError(f"walk-forward {run_id} cannot be read ({type(exc).__name__}); run it again") from None
    if not isinstance(payload, dict) or payload.get("version") != FORMAT_VERSION:
        raise ThreadXError(f"walk-forward {run_id} was stored in another format; run it again")
    return payload["walk_forward"], payload["report"]


def list_walk_forwards(results_dir: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Stored walk-forwards, newest first: run id, strategy, dataset, windows, grade."""
    rows = []
    root = walkforward_root(results_dir)
    for path in root.glob("*/summary.json") if root.exists() else ():
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        wf, grade = data.get("walk_forward", {}), data.get("validation", {}).get("grade", {})
        rows.append({"run_id": data.get("run_id"), "strategy": wf.get("config", {}).get("strategy"),
                     "dataset": wf.get("meta", {}).get("dataset"), "windows": len(wf.get("windows", [])),
                     "grade": grade.get("letter"), "score": grade.get("score"), "mtime": path.stat().st_mtime})
    return sorted(rows, key=lambda r: r["mtime"], reverse=True)
