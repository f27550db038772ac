"""The job process: ``python -m threadx.ui.job_runner JOB_DIR`` (see threadx.ui.jobs), or
``--standby``: started ahead, it runs the job folder it is handed (:mod:`threadx.ui.standby`).

Reads ``JOB_DIR/spec.json``, loads the data, runs :func:`threadx.sweep` into the results
store of the registry (``<root>`` of ``<root>/.jobs/<job_id>``), or a walk-forward and its
validation report into ``<root>/walkforward/<run_id>/``, or a research job (its cells'
walk-forwards and ``<root>/research/<run_id>/research.json``), or a portfolio
(``<root>/portfolios/<run_id>/``), and keeps
``JOB_DIR/status.json`` up to date (atomically, at most every 0.5 s for progress, at once
for a new ``phase``: loading data, starting workers, computing indicators, running,
finishing, as the sweep reports them through ``on_phase``). The sweep stops
once the chunks its workers hold finish when ``JOB_DIR/stop`` appears or the process gets SIGTERM; what
finished is stored either way. The final state is ``completed``, ``cancelled`` or
``failed`` (with the error's one-line message; the traceback goes to stderr, which the
launcher sends to ``JOB_DIR/log.txt``). At the end it refreshes the registry so the next
queued job starts.
"""
from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

from threadx import logs
from threadx.errors import ThreadXError
from threadx.timings import Stopwatch
from threadx.ui import standby
from threadx.ui.jobs import FINAL_STATES, now_iso, read_json, registry_for_job, write_json_atomic

PROGRESS_EVERY_S = 0.5


def _log(message: str) -> None:
    print(f"[{now_iso()}] {message}", file=sys.stderr, flush=True)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if isinstance(exc, ThreadXError) and first:
        return first
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


class StatusFile:
    """``status.json`` of one job, owned by this process while it runs."""

    def __init__(self, job_dir: Path):
        self.path = job_dir / "status.json"
        self.status: dict[str, Any] = read_json(self.path)
        self._last_write = 0.0

    def write(self, **changes: Any) -> None:
        self.status.update(changes)
        self.status["updated_at"] = now_iso()
        try:
            write_json_atomic(self.path, self.status)
        except OSError as exc:  # a full disk must not kill the sweep; the final write retries
            _log(f"cannot write {self.path}: {exc}")
        self._last_write = time.monotonic()

    def phase(self, text: str) -> None:
        """A new stage of the job (``on_phase`` of the sweep): written at once."""
        _log(text)
        self.write(phase=text)

    def progress(self, p: Any) -> None:
        """The sweep's progress callback: remembered always, written at most every 0.5 s."""
        eta = float(p.eta_s)
        self.status.update(done=int(p.done), total=int(p.total), failed=int(p.failed), rate=float(p.rate),
                           eta_s=eta if math.isfinite(eta) else None, elapsed_s=float(p.elapsed_s))
        if time.monotonic() - self._last_write >= PROGRESS_EVERY_S:
            self.write()


class JobRunner:
    def __init__(self, job_dir: Path):
        self.job_dir = job_dir
        self.spec = read_json(job_dir / "spec.json")
        self.params: dict[str, Any] = self.spec.get("params", {})
        self.status = StatusFile(job_dir)
        self.terminated = threading.Event()

    def should_stop(self) -> bool:
        return self.terminated.is_set() or (self.job_dir / "stop").exists()

    def _on_sigterm(self, signum, frame) -> None:  # noqa: ARG002
        self.terminated.set()

    def run(self) -> str:
        """Run the job; returns its final state."""
        if hasattr(signal, "SIGTERM"):
            signal.signal(signal.SIGTERM, self._on_sigterm)
        self.status.write(state="running", phase="starting", pid=os.getpid(), run_id=self.params.get("run_id"),
                          started_at=now_iso(), finished_at=None, error="")
        started = time.monotonic()
        state, error = "failed", ""
        log = logs.logger()
        what = f"job {self.job_dir.name} ({self.spec.get('kind', 'sweep')}, run {self.params.get('run_id')})"
        log.info("%s started", what)
        try:
            if not self.spec:
                raise ThreadXError(f"no readable spec.json in {self.job_dir}")
            kind = self.spec.get("kind", "sweep")
            if kind not in ("sweep", "walkforward", "research", "portfolio"):
                raise ThreadXError(f"unknown job kind {kind!r}")
            state = {"sweep": self._sweep, "walkforward": self._walkforward, "research": self._research,
                     "portfolio": self._portfolio}[kind]()
        except KeyboardInterrupt:
            state = "cancelled"
            _log("interrupted")
        except BaseException as exc:  # noqa: BLE001 - recorded, the traceback goes to the log
            state, error = "failed", _one_line(exc)
            traceback.print_exc()
            sys.stderr.flush()
        finally:
            if self.status.status.get("state") not in FINAL_STATES:
                self.status.write(state=state, phase=state, error=error, finished_at=now_iso(),
                                  elapsed_s=self.status.status.get("elapsed_s") or time.monotonic() - started)
        _log(f"job {self.job_dir.name} {state}" + (f": {error}" if error else ""))
        if state == "failed":
            log.error("%s failed: %s", what, error or "see the job's log.txt")
        else:
            log.info("%s %s in %.1f s", what, state, time.monotonic() - started)
        return state

    def _sweep(self) -> str:
        import threadx
        from threadx.optimize.store import ResultStore
        from threadx.requests import SweepRequest

        request = SweepRequest.from_dict(self.params)
        if self.should_stop():
            return "cancelled"
        self.status.phase(f"loading data {request.data.label}")
        watch = Stopwatch()
        with watch.stage("load"):
            df = request.data.load()
        if self.should_stop():
            return "cancelled"
        store = ResultStore(self.job_dir.parent.parent)
        _log(f"sweep {request.strategy} run {request.run_id} ({request.sampler}, executor {request.executor})")
        run = threadx.sweep(df, request.strategy, request.space, store=store, progress=self.status.progress,
                            cancel=self.should_stop, on_phase=self.status.phase, stopwatch=watch,
                            **request.sweep_kwargs())
        manifest = run.manifest
        state = "cancelled" if manifest.get("status") == "cancelled" else "completed"
        totals = {k: int(manifest[k]) for k in ("done", "total", "failed") if manifest.get(k) is not None}
        if manifest.get("elapsed_s") is not None:
            totals["elapsed_s"] = float(manifest["elapsed_s"])
        self.status.write(state=state, phase=state, finished_at=now_iso(), error="",
                          eta_s=0.0 if state == "completed" else None, **totals)
        return state

    def _walkforward(self) -> str:
        import threadx
        from threadx.requests import DatasetRef, WalkForwardRequest
        from threadx.validation.report import validate_walk_forward
        from threadx.validation.storage import save_walk_forward

        request = WalkForwardRequest.from_dict(self.params)
        if self.should_stop():
            return "cancelled"
        self.status.phase(f"loading data {request.data.label}")
        watch = Stopwatch()
        with watch.stage("load"):
            df = request.data.load()
        self.status.phase("running")
        _log(f"walk-forward {request.strategy} run {request.run_id}")
        wf = threadx.walk_forward(df, request.strategy, request.space or None, progress=self.status.progress,
                                  cancel=self.should_stop, stopwatch=watch, **request.walk_forward_kwargs())
        # stored with the result: what was asked (defaults filled in), on the data pinned by its
        # file, bounds and fingerprint, so the result can be reopened on exactly these bars
        data = DatasetRef.of(df)
        data = replace(data, name=request.data.name or data.name)
        wf.meta["request"] = replace(request, data=data).to_dict()
        self.status.phase("validating")
        with watch.stage("robustness"):
            report = validate_walk_forward(wf, n=request.bootstrap, seed=request.seed, S=request.S)
        wf.meta["timings"] = watch.record()  # the validation report too; storing it comes after
        save_walk_forward(request.run_id, wf, report, self.job_dir.parent.parent)
        state = "cancelled" if wf.meta.get("cancelled") else "completed"
        self.status.write(state=state, phase=state, finished_at=now_iso(), error="",
                          eta_s=0.0 if state == "completed" else None,
                          done=int(wf.meta["combos_done"]), total=int(wf.meta["combos_planned"]),
                          failed=len(wf.errors), elapsed_s=float(wf.meta["elapsed_s"]))
        return state

    def _research(self) -> str:
        """Every cell's walk-forward stored under ``walkforward/<run_id>-c<k>``, the matrix under
        ``research/<run_id>``; progress counts steps (the walk-forwards, then the transfer backtests)."""
        from threadx.requests import ResearchRequest

        request = ResearchRequest.from_dict(self.params)
        if self.should_stop():
            return "cancelled"
        started = time.monotonic()

        def progress(done: int, total: int, phase: str) -> None:
            self.status.status.update(done=int(done), total=int(total), phase=phase,
                                      elapsed_s=time.monotonic() - started)
            if time.monotonic() - self.status._last_write >= PROGRESS_EVERY_S or done == total:
                self.status.write()

        _log(f"research {', '.join(request.strategies)} on {len(request.datasets)} datasets run {request.run_id}")
        result = request.run(self.job_dir.parent.parent, progress=progress, cancel=self.should_stop)
        state = result.status
        self.status.write(state=state, phase=state, finished_at=now_iso(), error="",
                          eta_s=0.0 if state == "completed" else None,
                          elapsed_s=float(result.meta.get("elapsed_s", time.monotonic() - started)))
        return state

    def _portfolio(self) -> str:
        """The portfolio stored under ``portfolios/<run_id>``; progress counts the runners whose
        signals are ready (then the run and the report as phases). A stop before the run ends
        it ``cancelled`` with nothing stored."""
        from threadx.errors import Cancelled
        from threadx.requests import PortfolioRequest

        request = PortfolioRequest.from_dict(self.params)
        if self.should_stop():
            return "cancelled"
        started = time.monotonic()
        n = len(request.runners)

        def progress(done: int, total: int, phase: str) -> None:  # noqa: ARG001 - total: runners + 2 steps
            self.status.status.update(done=min(int(done), n), total=n, phase=phase,
                                      elapsed_s=time.monotonic() - started)
            self.status.write()  # a handful of calls: each written at once

        _log(f"portfolio of {n} runners run {request.run_id}")
        try:
            result = request.run(self.job_dir.parent.parent, progress=progress, cancel=self.should_stop)
        except Cancelled as exc:
            _log(str(exc))
            return "cancelled"
        self.status.write(state="completed", phase="completed", finished_at=now_iso(), error="", eta_s=0.0,
                          done=n, total=n, elapsed_s=float(result.meta.get("elapsed_s", time.monotonic() - started)))
        return "completed"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == [standby.FLAG]:  # started ahead by the workstation: wait for a job folder
        job = standby.serve()
        if job is None:
            return 0
        args = [str(job)]
    if len(args) != 1:
        print("usage: python -m threadx.ui.job_runner JOB_DIR  (or --standby)", file=sys.stderr)
        return 2
    job_dir = Path(args[0]).absolute()
    if not (job_dir / "spec.json").exists():
        print(f"error: no spec.json in {job_dir}", file=sys.stderr)
        return 2
    state = JobRunner(job_dir).run()
    try:
        registry_for_job(job_dir).refresh()  # start the next queued job, with no UI around
    except Exception:  # noqa: BLE001
        traceback.print_exc()
    return 0 if state in ("completed", "cancelled") else 1


if __name__ == "__main__":
    sys.exit(main())
