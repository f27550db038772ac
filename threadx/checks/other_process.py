"""The determinism check's runs in other Python processes, each under another hash seed.

A strategy whose results hang on the iteration order of a set of strings (or on anything
else that differs from one interpreter to the next) gives the same results twice in one
process and other results in a sweep's spawned workers or on a Dask cluster. The
determinism check (:mod:`threadx.checks.strategy`) therefore runs each param set again in
:data:`OTHER_PROCESSES` fresh interpreters, each with its own ``PYTHONHASHSEED`` (two seeds
can order a small set alike by chance), and compares what they give.

:func:`runs_in_other_processes` writes the job to a temporary folder (the candles, the param
sets and where the strategy's code comes from: a built-in's name, or a strategies-folder
file's path and the exact text that was checked), runs ``python -m
threadx.checks.other_process FOLDER OUT`` once per seed, side by side, and reads back, per
param set, the signals, the level lines, the equity, the trades and the metrics, or the error the strategy raised there.
Nothing is unpickled: arrays travel as ``.npz`` (``allow_pickle=False``), trades as
Parquet and the rest as JSON.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from threadx.data.bars import Bars

__all__ = ["OTHER_PROCESSES", "OtherRun", "Unavailable", "comparable", "other_hash_seeds", "runs_in_other_processes",
           "locatable"]

TIMEOUT_SECONDS = 600  # the other processes' whole job: every param set of one check
OTHER_PROCESSES = 3  # fresh interpreters, each under its own hash seed (run side by side)
_LINES = ("atr", "band_lo", "band_mid", "band_hi")


class Unavailable(Exception):
    """The strategy was not run in other processes: ``kind`` "local" (it cannot be handed to
    them: made in this process, or a param value JSON cannot hold), "failed" (it could not load or run in a fresh interpreter,
    as spawned workers and a cluster start it) or "timeout"."""

    def __init__(self, text: str, kind: str):
        super().__init__(text)
        self.kind = kind


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


def other_hash_seeds(current: str | None = None, count: int = OTHER_PROCESSES) -> list[str]:
    """``count`` distinct random values of ``PYTHONHASHSEED`` other than this process's
    (``current``: its environment value; unset or "random" is a random seed). Several: two
    seeds can give a small set of strings the same order by chance, a strategy hanging on that
    order then passed. Drawn anew each check, never fixed: fixed seeds that happen to agree on a
    strategy's strings (0, 1 and 2 on the parity of ``hash("threadx")``) left its verdict to this
    process's seed alone, a coin flip, where random ones miss it 1 time in 2 ** count.

    >>> seeds = other_hash_seeds("7")
    >>> len(set(seeds)) == OTHER_PROCESSES and "7" not in seeds and all(0 <= int(s) < 2 ** 32 for s in seeds)
    True
    """
    seeds: list[str] = []
    while len(seeds) < count:
        seed = str(secrets.randbelow(2 ** 32))  # (PYTHONHASHSEED takes 0 .. 4294967295)
        if seed != current and seed not in seeds:
            seeds.append(seed)
    return seeds


def locatable(spec: Any) -> dict[str, Any] | None:
    """Where another process finds ``spec``'s code: ``{"kind": "builtin"}`` for a registered
    built-in equal to it, ``{"kind": "user", "path", "text", "helpers"}`` for a strategies-folder
    file (the texts that were loaded, whatever the files hold now); None for a strategy made in this
    process only (a test's or a notebook's), which another process cannot rebuild."""
    from threadx.strategy.base import builtin_names, get_strategy

    origin = spec.origin
    if origin is not None and origin.kind == "user" and origin.text is not None:
        return {"kind": "user", "path": origin.path, "text": origin.text, "helpers": origin.helper_texts()}
    if origin is None and spec.name in builtin_names():
        try:
            same = get_strategy(spec.name) == spec
        except Exception:  # noqa: BLE001 - a spec that cannot be compared is not the built-in
            same = False
        return {"kind": "builtin"} if same else None
    return None


def runs_in_other_processes(spec: Any, bars: Bars, param_sets: Sequence[tuple[str, Mapping[str, Any]]],
                            count: int = OTHER_PROCESSES) -> dict[str, dict[str, OtherRun]]:
    """{hash seed: {param set name: its :class:`OtherRun`}} for ``param_sets`` ((name,
    normalised params) pairs) of ``spec`` on ``bars``, each seed's runs made in a fresh
    interpreter of its own (run side by side). :class:`Unavailable` when the strategy cannot
    be located there, or a process fails or runs past :data:`TIMEOUT_SECONDS`."""
    source = locatable(spec)
    if source is None:
        raise Unavailable("the strategy was made in this process (not a built-in or a strategies-folder file)",
                          "local")
    seeds = other_hash_seeds(os.environ.get("PYTHONHASHSEED"), count)
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
            raise Unavailable(str(exc), "local") from None
        (job / "job.json").write_text(text)
        package_root = str(Path(__file__).resolve().parents[2])  # where this threadx is imported from
        path = os.pathsep.join(filter(None, (package_root, os.environ.get("PYTHONPATH"))))
        procs = {}
        for i, seed in enumerate(seeds):
            (job / seed).mkdir()
            # each process runs the sets in another order than this one (reversed, then rotated): a
            # strategy whose results depend on the sets run before (a cache keyed without a param)
            # gave every process the same wrong results, and passed
            n = len(param_sets)
            order = list(range(n))[::-1] if i == 0 else [(k + i) % n for k in range(n)]
            (job / seed / "order.json").write_text(json.dumps(order))
            procs[seed] = subprocess.Popen(
                [sys.executable, "-m", "threadx.checks.other_process", str(job), str(job / seed)],
                env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": path}, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True)
        try:
            outputs = _wait_all(procs)
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        for seed, proc in procs.items():
            if proc.returncode != 0 or not (job / seed / "done.json").exists():
                tail = outputs[seed].strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
                raise Unavailable(tail[0], "failed")
        return {seed: {name: _read_run(job / seed, k) for k, (name, _) in enumerate(param_sets)} for seed in seeds}


def _wait_all(procs: Mapping[str, subprocess.Popen]) -> dict[str, str]:
    """Each process's output once all have ended; Unavailable ("timeout") past the deadline."""
    deadline = time.monotonic() + TIMEOUT_SECONDS
    outputs = {}
    for seed, proc in procs.items():
        try:
            outputs[seed], _ = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise Unavailable(f"the other processes ran past {TIMEOUT_SECONDS} s", "timeout") from None
    return outputs


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


def _run_job(job: Path, out: Path) -> None:
    """The other process: run each param set of ``job`` and write what it gave into ``out``."""
    from threadx.checks.strategy import run_once
    from threadx.strategy.base import get_strategy
    from threadx.strategy.user import load_text

    spec_job = json.loads((job / "job.json").read_text())
    source = spec_job["source"]
    if source["kind"] == "user":
        spec = load_text(source["path"], source["text"], source["helpers"])[spec_job["strategy"]]
    else:
        spec = get_strategy(spec_job["strategy"])
    with np.load(job / "bars.npz", allow_pickle=False) as arrays:
        bars = Bars(**{name: arrays[name] for name in arrays.files}, timeframe=spec_job["timeframe"],
                    name=spec_job["name"])
    sets = spec_job["param_sets"]
    order_file = out / "order.json"
    order = json.loads(order_file.read_text()) if order_file.exists() else range(len(sets))
    for k in order:
        item = sets[k]
        try:
            run = run_once(spec, bars, spec.normalize(item["params"]))
        except Exception as exc:  # noqa: BLE001 - the strategy's error here is compared with the first run's
            (out / f"{k}.json").write_text(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
            continue
        np.savez(out / f"{k}.npz", signals=run.signals, equity=run.equity, **run.lines(False))
        run.trades.to_parquet(out / f"{k}.parquet")
        (out / f"{k}.json").write_text(json.dumps({"metrics": comparable(run.result.metrics)}))
    (out / "done.json").write_text("{}")


if __name__ == "__main__":
    _run_job(Path(sys.argv[1]), Path(sys.argv[2]))
