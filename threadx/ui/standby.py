"""A job process started ahead of the job, so that a job launched from the workstation starts warm.

A job process (``python -m threadx.ui.job_runner JOB_DIR``) spends about 0.7 s before its
job begins: Python's start and imports (pandas, numba, threadx) and numba's one-time
set-up with the kernels loaded. The workstation keeps one process that has done this
already, with every built-in strategy's kernels loaded, waiting (``python -m
threadx.ui.job_runner --standby``, started by :func:`keep_one`). When the registry launches
a job it hands the job's folder to that process (:func:`hand_over`), which runs it as a
freshly started job process would: in its own session, with its output in the job's
``log.txt``.

It runs a job only where nothing it loaded could differ from a fresh start:

- a launcher whose environment or working directory changed since it started the standby
  ends it and starts the job process itself;
- a standby one of whose loaded threadx source files changed since it started replaces
  itself (``exec``, same pid) with a fresh job process.

A standby takes one job; it exits when its launcher does (end of file on its stdin). Only a
process that called :func:`keep_one` (the workstation's server) hands jobs over; job
processes launch the next queued job directly.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import psutil

FLAG = "--standby"

_lock = threading.Lock()
_waiting: list[tuple[subprocess.Popen, dict[str, str], str]] = []  # at most one: (standby, env, cwd at its start)
_kept = threading.Event()  # set by keep_one: this process hands jobs over


def keep_one() -> None:
    """Start a standby job process unless one is waiting; with the ``app.standby`` setting
    off, end the waiting one instead (a no-op on Windows, where job processes start apart)."""
    if os.name == "nt":  # pragma: no cover
        return
    from threadx.settings_file import resolve

    if not resolve()["app.standby"]:  # switched off: none kept, jobs start as fresh processes
        release()
        return
    with _lock:
        _kept.set()
        if _waiting:
            if _can_take_a_job(*_waiting[0]):
                return
            _end(_waiting.pop()[0])  # exited, or started under another environment
        proc = subprocess.Popen([sys.executable, "-m", "threadx.ui.job_runner", FLAG], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True,
                                start_new_session=True)
        _waiting.append((proc, dict(os.environ), os.getcwd()))


def hand_over(job_dir: Path) -> subprocess.Popen | None:
    """The waiting standby, now running the job of ``job_dir``; None when this process keeps
    no standby, its standby has exited, or this process's environment or working directory
    changed since it started the standby (the caller then starts a job process itself)."""
    with _lock:
        if not _kept.is_set() or not _waiting:
            return None
        waiting = _waiting.pop()
    proc = waiting[0]
    if _can_take_a_job(*waiting):
        try:
            proc.stdin.write(f"{job_dir}\n".encode("utf-8", "surrogateescape"))
            proc.stdin.close()
            return proc
        except OSError:  # it exited meanwhile
            pass
    _end(proc)
    return None


def _can_take_a_job(proc: subprocess.Popen, env: dict[str, str], cwd: str) -> bool:
    """Whether a standby started under ``env`` and ``cwd`` is alive and would run a job as a job
    process started from this process now would (the same environment and working directory)."""
    return proc.poll() is None and env == os.environ and cwd == os.getcwd()


def _end(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()


def stale(started_at: float) -> bool:
    """Whether a threadx source file this process loaded was modified after it started (or
    within a second before: the start time is known to a clock tick)."""
    package = Path(__file__).resolve().parents[1]
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        # the name it was imported as: __main__ (the job runner, run with -m) by its spec's name
        name = getattr(getattr(module, "__spec__", None), "name", None) or getattr(module, "__name__", "")
        if not path or not name.startswith("threadx") or not Path(path).resolve().is_relative_to(package):
            continue  # (a strategies-folder module, threadx_user_strategies.*, is not threadx's source)
        try:
            stat = os.stat(path)  # ctime too: a file put back with an older mtime (rsync -a, cp -p, tar)
            if max(stat.st_mtime, stat.st_ctime) >= started_at - 1.0:
                return True
        except OSError:  # a file gone: what was loaded is not what a fresh process would load
            return True
    return False


def _warm() -> None:
    """What a job process pays first: the imports of the job kinds, numba's set-up, and the
    kernels of every built-in strategy loaded (``threadx.warmup.warm_kernels``: a backtest
    and a sweep combo of each, on a small synthetic series)."""
    import threadx  # noqa: F401
    import threadx.optimize.runner  # noqa: F401
    import threadx.validation.report  # noqa: F401
    from threadx.warmup import warm_kernels

    warm_kernels()


def redirect_output(log: Path) -> None:
    """stdin from /dev/null, stdout and stderr appended to ``log``, as the launcher sets up a
    job process."""
    sys.stdout.flush()
    sys.stderr.flush()
    with open(os.devnull, "rb") as null:
        os.dup2(null.fileno(), 0)
    with open(log, "ab") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)


def serve() -> Path | None:
    """The standby's side: warm up, then read a job folder from stdin. Returns the folder
    once this process may run its job; execs a fresh job process when a threadx source file
    it loaded changed meanwhile; None when the launcher went away or sent no job folder."""
    started_at = psutil.Process().create_time()
    try:
        _warm()
    except Exception:  # noqa: BLE001 - warming is an optimisation: the job reports real errors
        pass
    # to end of file (the launcher closes stdin after the folder): a path may hold a newline
    given = sys.stdin.buffer.read().decode("utf-8", "surrogateescape").removesuffix("\n")
    job = Path(given)
    if not given or not (job / "spec.json").is_file():
        return None  # end of file: the launcher exited
    redirect_output(job / "log.txt")
    if stale(started_at):
        _say("threadx's code changed since the standby process started: a fresh job process runs the job")
        os.execv(sys.executable, [sys.executable, "-m", "threadx.ui.job_runner", str(job)])
    _say("running in the standby process (started ahead, kernels loaded)")
    return job


def _say(text: str) -> None:
    """A line in the job's log, worded as the job runner's own."""
    from threadx.ui.jobs import now_iso

    print(f"[{now_iso()}] {text}", file=sys.stderr, flush=True)


def release() -> None:
    """Hand no more jobs over, and end the waiting standby (it has no job)."""
    with _lock:
        _kept.clear()
        waiting = list(_waiting)
        _waiting.clear()
    for proc, _, _ in waiting:
        _end(proc)
