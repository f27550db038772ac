"""The determinism check's run in another Python process, under another hash seed.

A strategy whose results hang on the iteration order of a set of strings (or on anything
else that differs from one interpreter to the next) gives the same results twice in one
process and other results in a sweep's spawned workers or on a Dask cluster. The
determinism check (:mod:`threadx.checks.strategy`) therefore runs each param set once more
in a fresh interpreter with another ``PYTHONHASHSEED`` and compares what it gives.

:func:`runs_in_other_process` writes the job to a temporary folder (the candles, the param
sets and where the strategy's code comes from: a built-in's name, or a strategies-folder
file's path and the exact text that was checked), runs ``python -m
threadx.checks.other_process FOLDER`` and reads back, per param set, the signals, the level
lines, the equity, the trades and the metrics, or the error the strategy raised there.
Nothing is unpickled: arrays travel as ``.npz`` (``allow_pickle=False``), trades as
Parquet and the rest as JSON.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from threadx.data.bars import Bars

__all__ = ["OtherRun", "Unavailable", "comparable", "other_hash_seed", "runs_in_other_process", "locatable"]

TIMEOUT_SECONDS = 600  # the other process's whole job: every param set of one check
_LINES = ("atr", "band_lo", "band_mid", "band_hi")


class Unavailable(Exception):
    """The strategy could not be run in another process (its code cannot be found there, or
    the process failed before running it): the in-process run alone is compared."""


@dataclass
class OtherRun:
    """One param set's run in the other process, read like the checks' in-process runs
    (``signals``, ``lines()``, ``equity``, ``trades``) plus its ``metrics``; or its ``error``."""

    signals: np.ndarray | None = None
    line_arrays: dict[str, np.ndarray] | None = None
    equity: np.ndarray | None = None
    trades: pd.DataFrame | None = None
    metrics: dict[str, Any] | None = None
    error: str | None = None

    def lines(self, read_only: bool) -> dict[str, np.ndarray]:  # noqa: ARG002 - every line is compared here
        return dict(self.line_arrays or {})


def other_hash_seed(current: str | None = None) -> str:
    """A ``PYTHONHASHSEED`` other than this process's (``current``: its environment value;
    unset or "random" is a random seed, which "0" differs from as surely as any).

    >>> other_hash_seed("0"), other_hash_seed(None), other_hash_seed("17")
    ('1', '0', '0')
    """
    return "1" if current == "0" else "0"


def locatable(spec: Any) -> dict[str, Any] | None:
    """Where another process finds ``spec``'s code: ``{"kind": "builtin"}`` for a registered
    built-in equal to it, ``{"kind": "user", "path", "text"}`` for a strategies-folder file
    (the text that was loaded, whatever the file holds now); None for a strategy made in this
    process only (a test's or a notebook's), which another process cannot rebuild."""
    from threadx.strategy.base import builtin_names, get_strategy

    origin = spec.origin
    if origin is not None and origin.kind == "user" and origin.text is not None:
        return {"kind": "user", "path": origin.path, "text": origin.text}
    if origin is None and spec.name in builtin_names():
        try:
            same = get_strategy(spec.name) == spec
        except Exception:  # noqa: BLE001 - a spec that cannot be compared is not the built-in
            same = False
        return {"kind": "builtin"} if same else None
    return None


def runs_in_other_process(spec: Any, bars: Bars, param_sets: Sequence[tuple[str, Mapping[str, Any]]],
                          ) -> tuple[dict[str, OtherRun], str]:
    """({param set name: its :class:`OtherRun`}, the hash seed used) for ``param_sets``
    ((name, normalised params) pairs) of ``spec`` on ``bars``, run in a fresh interpreter
    with another hash seed. Unavailable when the strategy cannot be located there or the
    process fails before writing its runs."""
    source = locatable(spec)
    if source is None:
        raise Unavailable("the strategy was made in this process (not a built-in or a strategies-folder file)")
    seed = other_hash_seed(os.environ.get("PYTHONHASHSEED"))
    with tempfile.TemporaryDirectory(prefix="threadx-check-") as folder:
        job = Path(folder)
        np.savez(job / "bars.npz", open=bars.open, high=bars.high, low=bars.low, close=bars.close,
                 volume=bars.volume, time_ns=bars.time_ns)
        try:
            text = json.dumps({"strategy": spec.name, "source": source, "timeframe": bars.timeframe,
                               "name": bars.name,
                               "param_sets": [{"name": name, "params": dict(params)} for name, params in param_sets]},
                              default=_plain)
        except TypeError as exc:  # a param value JSON cannot hold
            raise Unavailable(str(exc)) from None
        (job / "job.json").write_text(text)
        package_root = str(Path(__file__).resolve().parents[2])  # where this threadx is imported from
        path = os.pathsep.join(filter(None, (package_root, os.environ.get("PYTHONPATH"))))
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": path}
        try:
            done = subprocess.run([sys.executable, "-m", "threadx.checks.other_process", str(job)], env=env,
                                  capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            raise Unavailable(f"the other process ran past {TIMEOUT_SECONDS} s") from None
        if done.returncode != 0 or not (job / "done.json").exists():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
            raise Unavailable(f"the other process failed: {tail[0]}")
        return {name: _read_run(job, k) for k, (name, _) in enumerate(param_sets)}, seed


def _plain(value: Any) -> Any:
    """A numpy scalar of the params as JSON holds it."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"param value {value!r} cannot travel to another process")


def comparable(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """``metrics`` as they come back from the other process (through JSON: numpy scalars as
    numbers, tuples as lists, anything else as its text), so both runs compare alike."""
    return json.loads(json.dumps(dict(metrics), default=_as_text))


def _as_text(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else str(value)


def _read_run(job: Path, k: int) -> OtherRun:
    meta = json.loads((job / f"{k}.json").read_text())
    if meta.get("error") is not None:
        return OtherRun(error=meta["error"])
    with np.load(job / f"{k}.npz", allow_pickle=False) as arrays:
        lines = {name: arrays[name] for name in _LINES if name in arrays.files}
        return OtherRun(arrays["signals"], lines, arrays["equity"], pd.read_parquet(job / f"{k}.parquet"),
                        meta["metrics"])


def _run_job(job: Path) -> None:
    """The other process: run each param set of ``job`` and write what it gave."""
    from threadx.checks.strategy import run_once
    from threadx.strategy.base import get_strategy
    from threadx.strategy.user import load_text

    spec_job = json.loads((job / "job.json").read_text())
    source = spec_job["source"]
    if source["kind"] == "user":
        spec = load_text(source["path"], source["text"])[spec_job["strategy"]]
    else:
        spec = get_strategy(spec_job["strategy"])
    with np.load(job / "bars.npz", allow_pickle=False) as arrays:
        bars = Bars(**{name: arrays[name] for name in arrays.files}, timeframe=spec_job["timeframe"],
                    name=spec_job["name"])
    for k, item in enumerate(spec_job["param_sets"]):
        try:
            run = run_once(spec, bars, spec.normalize(item["params"]))
        except Exception as exc:  # noqa: BLE001 - the strategy's error here is compared with the first run's
            (job / f"{k}.json").write_text(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
            continue
        np.savez(job / f"{k}.npz", signals=run.signals, equity=run.equity, **run.lines(False))
        run.trades.to_parquet(job / f"{k}.parquet")
        (job / f"{k}.json").write_text(json.dumps({"metrics": comparable(run.result.metrics)}))
    (job / "done.json").write_text("{}")


if __name__ == "__main__":
    _run_job(Path(sys.argv[1]))
