"""What the workstation runs of a strategy from the strategies folder runs in a process of its own.

A user's strategy is code the workstation did not write: a numba function that reads past
an array can kill the process that runs it (a segmentation fault), a loop that never ends
holds it. Run in the server, either took the whole workstation down or held the page with
no way to stop it. Here a backtest (the Backtest page) and a check (the Strategies page) of
such a strategy run in a child process (``python -m threadx.ui.user_code``); the page waits
for it, can stop it (Streamlit's Stop, a new click, leaving the page: the child is killed),
and a crash is one clear error naming the strategy, with the last lines the process wrote
(Python's fault handler names the file and line where it crashed). Sweeps, walk-forwards
and portfolios of it run in job processes already.

As the job standby (:mod:`threadx.ui.standby`, and under its setting ``app.standby``), the
server keeps one such process started ahead, warm (imports and the engine's kernels loaded) and waiting for one piece of work: it
takes it only under the environment and working directory it started with, and a threadx
source file changed since it started makes it start afresh. Each process runs one piece of
work, so nothing a strategy changed in it reaches the next one.

The exchange is files in a private temporary folder, no pickles: ``work.json`` (what to
run) and ``frame.parquet`` (the candles) in; ``reply.json`` (``{"ok": true, ...}`` or
``{"error": text}``), ``progress.json`` (a check's stage) and ``log.txt`` (what the process
printed) out; a backtest adds ``result.json`` (metrics, params, meta), ``trades.parquet``,
``equity.parquet`` and ``overlays.parquet`` (the indicator lines its chart draws, from the
same code).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator

import numpy as np
import pandas as pd

from threadx.errors import ThreadXError

BACKTEST_LIMIT_S = 600.0  # a backtest of a folder strategy running longer is stopped (a loop without end)
CHECK_LIMIT_S = 3600.0  # the same for a check (dozens of backtests, other processes for determinism)
_LOG_TAIL = 12  # lines of the process's output quoted when it crashed
_LOG_READ_BYTES = 64 * 1024  # of its log's end, where they are (a strategy may have printed gigabytes before)
_CRASHES = ("SIGSEGV", "SIGBUS", "SIGABRT", "SIGFPE", "SIGILL")
_PROGRESS_EVERY_S = 0.1
TRIAL_WRITE_LIMIT = 256 * 2**20  # bytes a file's load may write to one file (its printed output, in /tmp)
TRIAL_GRACE_S = 10.0  # beyond user.LOAD_LIMIT_S: a file still loading then is in code that cannot be stopped

_PARENT_VARIABLE = "THREADX_USER_CODE_PARENT"  # the server's pid, for the process to check it is still its parent
_lock = threading.Lock()
_waiting: list[tuple[subprocess.Popen, dict[str, str], str]] = []  # at most one: (process, env, cwd at its start)

class ProcessCrashed(ThreadXError):
    """The process running a strategy's code ended without a reply (killed by a signal, say);
    ``output``: the last lines it wrote (the fault handler's traceback), for a code block."""

    def __init__(self, message: str, output: str = ""):
        super().__init__(message)
        self.output = output


Waiting = Callable[[float, str | None, float | None], None]  # (seconds, the check's stage, its fraction done)


def runs_apart(spec: Any) -> bool:
    """Whether ``spec``'s backtests and checks run in a process of their own: a strategy of the
    strategies folder (``origin.kind == "user"``); built-in and imported ones run in the server."""
    origin = getattr(spec, "origin", None)
    return origin is not None and origin.kind == "user"


def keep_one() -> None:
    """Start a waiting process unless one is waiting (under this environment); with the
    ``app.standby`` setting off, none is kept (each piece of work starts its own)."""
    from threadx.settings_file import resolve

    if not resolve()["app.standby"]:
        release()
        return
    with _lock:
        if _waiting:
            proc, env, cwd = _waiting[0]
            if proc.poll() is None and env == dict(os.environ) and cwd == os.getcwd():
                return
            _end(_waiting.pop()[0])
        _waiting.append((_start(), dict(os.environ), os.getcwd()))


def release() -> None:
    """End the waiting process (tests; a server that stops)."""
    with _lock:
        while _waiting:
            _end(_waiting.pop()[0])


def _take(folder: Path) -> subprocess.Popen:
    """The waiting process when it can take the work, handed ``folder``; else a new one
    started on it (with no warm-up: the work waits for nothing else)."""
    with _lock:
        while _waiting:
            proc, env, cwd = _waiting.pop()
            if proc.poll() is None and env == dict(os.environ) and cwd == os.getcwd():
                try:
                    proc.stdin.write(os.fsencode(str(folder)))
                    proc.stdin.close()
                    return proc
                except OSError:  # it died meanwhile
                    pass
            _end(proc)
    return _start(folder)


_spawner = ThreadPoolExecutor(1, thread_name_prefix="threadx-user-code-spawner")


def _start(folder: Path | None = None) -> subprocess.Popen:
    """A new process (on ``folder``'s work, else waiting for a folder on its stdin), started
    from one thread that lives as long as the server: its death signal (``PR_SET_PDEATHSIG``)
    follows the thread that started it, and a page's script thread ends with its run (a process
    kept waiting was killed then, and the backtest it ran read as a crash). In a session of its
    own, so that ending it ends what its strategy started."""
    given = [] if folder is None else [str(folder)]
    return _spawner.submit(subprocess.Popen, [sys.executable, "-m", "threadx.ui.user_code", *given],
                           env={**os.environ, _PARENT_VARIABLE: str(os.getpid())},
                           stdin=subprocess.PIPE if folder is None else subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True,
                           start_new_session=True).result()


def _end(proc: subprocess.Popen) -> None:
    """Kill the process and every process its strategy's code started (its session's group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if proc.poll() is None:
        proc.kill()
    proc.wait()


# --- the server's side ----------------------------------------------------------------------------

def overlay_series(spec: Any, df: pd.DataFrame, params: dict[str, Any]) -> dict[str, pd.Series]:
    """The indicator lines a backtest's chart draws over the candles ({legend: series}, as
    ``spec.overlays`` names them); none when the strategy's indicators fail on ``df``."""
    from threadx.contract import prepare_signals
    from threadx.data.bars import as_bars

    try:
        ind, _, _ = prepare_signals(spec, as_bars(df), params)
    except ThreadXError:
        return {}
    return {legend: pd.Series(ind[label][out], index=df.index)
            for legend, (label, out) in spec.overlays(params).items() if label in ind}


def backtest(request: Any, df: pd.DataFrame, on_wait: Waiting | None = None,
             limit_s: float = BACKTEST_LIMIT_S) -> tuple[Any, dict[str, pd.Series]]:
    """The :class:`threadx.Result` of ``request`` (a :class:`~threadx.requests.BacktestRequest`)
    on ``df`` and its chart's overlays (:func:`overlay_series`), computed in a process of its
    own. ``on_wait(seconds, None, None)`` is called about four times a second while it runs (a
    page updates a line there, which is where Streamlit stops a script: whatever it raises
    kills the process and goes on). ThreadXError: the backtest's own error, or the process
    crashed, or ran past ``limit_s`` seconds."""
    from threadx.engine.result import Result

    import threadx

    work = {"kind": "backtest", "request": request.to_dict(), **_origin(threadx.get_strategy(request.strategy))}
    with _apart(work, df, f"the backtest of {request.strategy}", request.strategy, on_wait, limit_s) as (folder, _):
        fields = json.loads((folder / "result.json").read_text(encoding="utf-8"))
        meta = fields["meta"]
        if isinstance(meta.get("rules"), dict):  # ExitRules' tuples (grid offsets), lists in JSON
            meta["rules"] = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["rules"].items()}
        equity = pd.read_parquet(folder / "equity.parquet")["equity"]
        lines = pd.read_parquet(folder / "overlays.parquet")
        return (Result(metrics=fields["metrics"], trades=pd.read_parquet(folder / "trades.parquet"), equity=equity,
                       params=fields["params"], meta=meta),
                {str(legend): lines[legend].set_axis(equity.index) for legend in lines.columns})


def check(spec: Any, df: pd.DataFrame, dataset: str | None, on_wait: Waiting | None = None,
          limit_s: float = CHECK_LIMIT_S) -> list[str]:
    """``threadx.ui.strategies.run_check`` of ``spec`` on ``df`` in a process of its own (the
    report stored there, as the server stores it), for the code ``spec`` holds (ThreadXError
    when the file changed since); ``on_wait(seconds, stage, fraction)`` as in :func:`backtest`,
    with the check's last stage."""
    work = {"kind": "check", "strategy": spec.name, "code_hash": spec.code_hash, "dataset": dataset, **_origin(spec)}
    with _apart(work, df, f"the check of {spec.name}", spec.name, on_wait, limit_s) as (_, reply):
        return [str(name) for name in reply.get("kept", [])]


def guard_folder_loads() -> None:
    """Have this process (the workstation's server) run every strategies-folder file it is
    about to load in a process of its own first (:func:`trial_loads`)."""
    from threadx.strategy import user

    user.set_load_trial(trial_loads)
    user.set_load_announcer(loading_spinner)


def loading_spinner(names: list[str]) -> ContextManager[Any]:
    """A spinner naming the strategies-folder files being loaded, where a page's script run
    loads them (the sidebar's strategy list, say: the page's own spinner then found them
    loaded); nothing in another thread."""
    import streamlit as st
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    if get_script_run_ctx(suppress_warning=True) is None:
        return nullcontext()
    listed = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return st.spinner(f"Loading {listed}…", show_time=True)  # (a long sentence wrapped onto 5 lines in the sidebar)


def trial_loads(files: list[tuple[str, str, str]]) -> dict[str, dict[str, Any]]:
    """Run strategies-folder files as they load, ``[(key, path, text)]``, in a process of
    their own (:func:`threadx.strategy.user.tried_load` each, in order), and return their
    outcomes by key (the ``user.LoadTrial`` of the server). When that process does not end
    well (a crash, an exit, a call that runs past ``user.LOAD_LIMIT_S`` and cannot be stopped,
    at a file's load or later, from a thread it started), each file is tried again in a process
    of its own, and a file whose process does not end well gets that as its error (with the
    line the fault handler names): the server never runs it. A process that cannot be started
    (no memory, no file handles, a full temporary folder) is every file's error too."""
    settled, failure = _trial_round(files)
    if failure is None:
        return settled
    if len(files) == 1:
        return {files[0][0]: {"error": failure, "imports": None}}
    outcomes: dict[str, dict[str, Any]] = {}
    for item in files:  # which one it was (a crash from a thread started at load may come at another's)
        outcomes.update(trial_loads([item]))
    return outcomes


def _trial_round(files: list[tuple[str, str, str]]) -> tuple[dict[str, dict[str, Any]], str | None]:
    """One fresh process trying ``files`` (not the one kept for a backtest, which may still be
    warming up): (their outcomes, None) when it ended well; else (what it gave, the load error
    of the last file it started, for a round of one file)."""
    from threadx.strategy import user

    limit_s = float(user.LOAD_LIMIT_S)
    key, path, _ = files[-1]
    proc = None
    folder = None
    try:
        folder = Path(tempfile.mkdtemp(prefix="threadx-user-code-"))
        (folder / "work.json").write_text(json.dumps({"kind": "load", "files": files, "limit_s": limit_s,
                                                      "watchdog_s": limit_s + TRIAL_GRACE_S / 2}),
                                          encoding="utf-8")
        proc = _start(folder)
        ended = _watch_trial(proc, folder, limit_s)
        hung = ended == "hung"
        started, done = _trial_lines(folder)
        replied = (folder / "reply.json").exists()
        if replied and len(done) == len(files) and (ended == "left running" or ended == "ended" and proc.returncode == 0):
            return done, None
        key = next((k for k in reversed(started) if k not in done), started[-1] if started else key)
        path = next(p for k, p, _ in files if k == key)
        return done, _trial_error(folder, key, path, proc.returncode, hung, limit_s, key in done)
    except (OSError, RuntimeError) as exc:  # no process, no folder to exchange with; the server shutting down
        return {}, (f"{path}: this file could not be tried in a process of its own ({exc}), and the workstation "
                    "does not run a strategies-folder file untried: it is tried again when the folder changes")
    finally:
        if proc is not None:
            _end(proc)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


_START_LIMIT_S = 120.0  # a trial's process that has not begun its first file by then is ended
_EXIT_AFTER_REPLY_S = 5.0  # a process that replied and still runs then is ended (a thread the code started)


def _watch_trial(proc: subprocess.Popen, folder: Path, limit_s: float) -> str:
    """Wait for a trial's process: "ended" (on its own), "hung" (a file ran past ``limit_s`` +
    the grace, each file's clock starting at its start line, or the process never began one:
    ended then) or "left running" (it replied, then did not exit: a thread the code started;
    ended then)."""
    current, since = None, time.monotonic()
    replied_at = None
    while proc.poll() is None:
        started, _ = _trial_lines(folder)
        now = time.monotonic()
        if started and started[-1] != current:
            current, since = started[-1], now
        if replied_at is None and (folder / "reply.json").exists():
            replied_at = now
        if replied_at is not None and now - replied_at > _EXIT_AFTER_REPLY_S:
            _end(proc)
            return "left running"
        if replied_at is None and now - since > (limit_s + TRIAL_GRACE_S if current is not None else _START_LIMIT_S):
            _end(proc)
            return "hung"
        try:
            proc.wait(0.05)
        except subprocess.TimeoutExpired:
            pass
    return "ended"


def _trial_lines(folder: Path) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """(keys of the files a trial started, in order; outcomes of those it finished by key), from
    its ``trial.jsonl`` (whole lines only: it may be cut mid-line)."""
    try:
        text = (folder / "trial.jsonl").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return [], {}
    started: list[str] = []
    done: dict[str, dict[str, Any]] = {}
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        try:
            entry = json.loads(line)
            if isinstance(entry.get("start"), str):
                started.append(entry["start"])
            elif isinstance(entry["done"], str) and isinstance(entry["outcome"], dict):
                done[entry["done"]] = entry["outcome"]
            else:
                break
        except (ValueError, KeyError, TypeError, AttributeError):  # not the trial's own line: the rest unread
            break
    return started, done


def _fault_frames(tail: str, folders: set[Path]) -> list[tuple[str, str]]:
    """(file, line) of the fault handler's frames in ``tail`` that are in ``folders``, innermost
    first (it writes a name's non-ASCII characters as \\x.., \\u.. escapes: read back)."""
    frames = []
    for file, line in re.findall(r'File "(.+)", line (\d+)', tail):
        try:
            file = file.encode("latin-1").decode("unicode_escape") if "\\" in file else file
        except (UnicodeError, ValueError):
            pass
        if Path(file).parent in folders:
            frames.append((file, line))
    return frames


def _trial_error(folder: Path, key: str, path: str, returncode: int | None, hung: bool, limit_s: float,
                 loaded: bool) -> str:
    """The load error of the file ``key`` (at ``path``, resolved) whose trial's process did not
    end well (``loaded``: after its file had loaded): where (the fault handler's innermost
    frame in the strategies folder) and how."""
    tail = _log_tail(folder)
    frames = _fault_frames(tail, {Path(key).parent, Path(path).parent})  # (its folder's modules, its own target)
    where = f"{frames[0][0]}:{frames[0][1]}" if frames else path
    after = "" if not frames or Path(frames[0][0]) == Path(path) else f" (in {Path(frames[0][0]).name}, which it imports)"
    when = "after its load, from a thread it started? " if loaded else ""
    if hung or "Timeout (" in tail:
        return (f"{where}: this file's code{after} ran for more than {limit_s:g} s as it loaded, in a call that "
                "could not be stopped (a numba or C loop?), in the process that loaded it first: the workstation "
                "does not run it")
    name = _signal_name(returncode)
    if name in _CRASHES:
        return (f"{where}: this file's code{after} crashed the process that loaded it first ({name}: {when}a numba "
                "function reading outside an array? a C call?): the workstation does not run it")
    how = f"killed by {name}" if name else f"exit status {returncode}"
    return (f"{where}: this file's code{after} ended the process that loaded it first ({how}: {when}os._exit? a "
            "signal? out of memory?): the workstation does not run it")


def _origin(spec: Any) -> dict[str, Any]:
    """The strategy's code as the server loaded it, for the process to run that code alone
    (loading the whole strategies folder there cost every run a slow sibling file's time)."""
    origin = getattr(spec, "origin", None)
    if origin is None or origin.kind != "user" or origin.text is None:
        return {}
    return {"origin": {"name": spec.name, "path": origin.path, "text": origin.text, "helpers": origin.helper_texts()}}


@contextmanager
def _apart(work: dict[str, Any], df: pd.DataFrame, what: str, strategy: str, on_wait: Waiting | None,
           limit_s: float) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Run ``work`` on ``df`` in a process of its own; yields (its folder, its reply) once it
    replied ok (the folder is removed after). The process is killed on any way out."""
    folder = Path(tempfile.mkdtemp(prefix="threadx-user-code-"))
    proc = None
    try:
        (folder / "work.json").write_text(json.dumps(work), encoding="utf-8")
        frame = df.copy(deep=False)  # attrs as_bars reads kept; others need not be JSON (parquet's metadata)
        frame.attrs = {k: v for k, v in df.attrs.items() if isinstance(v, (str, int, float, bool, type(None)))}
        frame.to_parquet(folder / "frame.parquet")
        proc = _take(folder)
        started = time.monotonic()
        while proc.poll() is None:
            waited = time.monotonic() - started
            if waited > limit_s:
                raise ThreadXError(f"{what} ran for more than {limit_s:,.0f} s and was stopped: does its code loop "
                                   "without end?")
            if on_wait is not None:
                on_wait(waited, *_progress(folder))
            try:
                proc.wait(0.25)
            except subprocess.TimeoutExpired:
                pass
        try:
            reply = json.loads((folder / "reply.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise _crashed(folder, proc.returncode, what, strategy) from None
        if "error" in reply:
            raise ThreadXError(str(reply["error"]))
        yield folder, reply
    finally:
        if proc is not None:
            _end(proc)
        threading.Thread(target=keep_one, name="threadx-user-code-standby", daemon=True).start()
        shutil.rmtree(folder, ignore_errors=True)


def _progress(folder: Path) -> tuple[str | None, float | None]:
    try:
        stage, fraction = json.loads((folder / "progress.json").read_text(encoding="utf-8"))
        return str(stage), float(fraction)
    except (OSError, ValueError, TypeError):  # none yet, or being replaced
        return None, None


def _log_tail(folder: Path) -> str:
    """The end of the process's ``log.txt`` (its last :data:`_LOG_READ_BYTES`: a strategy may have
    printed gigabytes before), "" when there is none."""
    try:
        with open(folder / "log.txt", "rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - _LOG_READ_BYTES))
            return log.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _signal_name(returncode: int | None) -> str | None:
    """The name of the signal that ended a process (``SIGSEGV``), None when it exited."""
    if returncode is None or returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def _crashed(folder: Path, returncode: int, what: str, strategy: str) -> ProcessCrashed:
    """What a process that ended without a reply says: the signal or exit status, and the
    last lines it wrote, or from the fault handler's report on, the call where it crashed
    first (in the strategy's file, as a rule)."""
    name = _signal_name(returncode)
    if name in _CRASHES:
        text = (f"the process running {what} was killed by {name}: the code of strategy {strategy} (a numba "
                "function reading outside an array, say) crashed it; the workstation is unaffected")
    else:
        how = f"was ended by {name}" if name else f"exited with status {returncode}"
        text = (f"the process running {what} {how} before it gave a result: the code of strategy {strategy} ended "
                "it (os._exit, a signal, an interrupt, or out of memory); the workstation is unaffected")
    lines = [line[:200] for line in _log_tail(folder).splitlines()
             if line.strip() and not line.startswith("Extension modules:")]  # (the fault handler's module list)
    fatal = next((k for k, line in enumerate(lines) if line.startswith("Fatal Python error")), None)
    shown = lines[-_LOG_TAIL:] if fatal is None else lines[fatal:fatal + _LOG_TAIL]  # (the fault handler's frames:
    return ProcessCrashed(text + (" (its last output below)" if lines else ""), "\n".join(shown))  # latest first)


# --- the process's side -------------------------------------------------------------------------

def _plain(value: Any) -> Any:
    """JSON form of what a Result's dicts hold beyond JSON's types (numpy scalars, times)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (pd.Timestamp, np.datetime64)):
        return str(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def _backtest(work: dict[str, Any], frame: pd.DataFrame, folder: Path) -> dict[str, Any]:
    import threadx
    from threadx.requests import BacktestRequest

    request = BacktestRequest.from_dict(work["request"])
    result = request.run(frame)
    try:  # the chart's lines only: a strategy whose overlays() fail still has its result, as in the server
        overlays = overlay_series(threadx.get_strategy(request.strategy), frame, result.params)
    except (Exception, SystemExit):  # noqa: BLE001 - the chart shows no lines
        overlays = {}
    pd.DataFrame({legend: line.to_numpy() for legend, line in overlays.items()}).to_parquet(folder / "overlays.parquet")
    (folder / "result.json").write_text(json.dumps({"metrics": result.metrics, "params": result.params,
                                                    "meta": result.meta}, default=_plain), encoding="utf-8")
    result.trades.to_parquet(folder / "trades.parquet")
    result.equity.rename("equity").to_frame().to_parquet(folder / "equity.parquet")
    return {"ok": True}


def _check(work: dict[str, Any], frame: pd.DataFrame, folder: Path) -> dict[str, Any]:
    import threadx
    from threadx.files import atomic_write_bytes
    from threadx.ui.strategies import run_check, throttled

    spec = threadx.get_strategy(work["strategy"])
    spec.require_code(work.get("code_hash"), f"this check of {spec.name}")

    def progress(stage: str, fraction: float) -> None:
        atomic_write_bytes(folder / "progress.json", json.dumps([stage, fraction]).encode())

    return {"ok": True, "kept": run_check(spec, frame, work.get("dataset"), throttled(progress, _PROGRESS_EVERY_S))}


def _load_files(work: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A trial (:func:`trial_loads`): each file loaded in turn, its start and its outcome each a
    line of ``trial.jsonl`` as it happens (what a crash leaves tells which file it was). Under
    the server's load limit, with the fault handler's watchdog beyond it: a call that cannot be
    stopped is dumped (its line) and ends the process."""
    import faulthandler

    from threadx.strategy import user

    user.LOAD_LIMIT_S = float(work["limit_s"])
    _limit_file_size(TRIAL_WRITE_LIMIT)  # its log (what the file prints) in the temporary folder, say
    with open(folder / "trial.jsonl", "a", encoding="utf-8") as log:
        for key, path, text in work["files"]:
            log.write(json.dumps({"start": key}) + "\n")
            log.flush()
            faulthandler.dump_traceback_later(float(work["watchdog_s"]), exit=True)
            try:
                outcome = user.tried_load(key, text)  # (the folder's path: a linked file's helpers are beside it)
            except Exception as exc:  # noqa: BLE001 - not the file's load error: it loads in the server (and says)
                outcome = {"error": None, "unexpected": f"{type(exc).__name__}: {exc}"}
            finally:
                faulthandler.cancel_dump_traceback_later()
            log.write(json.dumps({"done": key, "outcome": outcome}) + "\n")
            log.flush()
    return {"ok": True}


def _pin(origin: dict[str, Any]) -> None:
    """Make ``get_strategy`` of this process find the strategy the server sent, built from its
    code alone (the strategies folder is not read here)."""
    from threadx.strategy import base, user

    spec = user.load_text(origin["path"], origin["text"], origin["helpers"])[origin["name"]]
    base.list_registered()  # the built-ins first (a folder strategy never takes one's name)
    base.register(spec)


def _serve(folder: Path) -> None:
    try:
        work = json.loads((folder / "work.json").read_text(encoding="utf-8"))
        if work["kind"] == "load":
            reply = _load_files(work, folder)
        else:
            if "origin" in work:
                _pin(work["origin"])
            frame = pd.read_parquet(folder / "frame.parquet")
            reply = {"backtest": _backtest, "check": _check}[work["kind"]](work, frame, folder)
    except (ThreadXError, ValueError) as exc:
        reply = {"error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - one line for the page; the traceback in log.txt
        import traceback

        traceback.print_exc()
        reply = {"error": f"{type(exc).__name__}: {exc}"}
    (folder / "reply.json").write_text(json.dumps(reply), encoding="utf-8")


def _limit_file_size(limit: int) -> None:
    """No file this process writes grows past ``limit`` bytes (a write beyond is an OSError,
    "File too large": Python ignores SIGXFSZ); where the OS has no such limit, nothing."""
    try:
        import resource

        _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
    except (ImportError, OSError, ValueError):
        pass


def _die_with_parent() -> None:
    """Linux: this process is killed when the server that started it dies (a strategy looping
    in numba code, GIL held, would outlive it otherwise)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.environ.get(_PARENT_VARIABLE) not in (None, str(os.getppid())):
        os._exit(0)  # the server died before the death signal was set: nothing would end this process


def _warm() -> None:
    """Imports and the engine's kernels loaded: a backtest of ma_crossover on a small
    synthetic series (a strategy's own kernels load when it runs)."""
    import threadx
    from threadx import logs
    from threadx.data.synthetic import generate_synthetic

    with logs.muted():
        threadx.backtest(generate_synthetic("WARM_UP", days=10, seed=1), "ma_crossover")


def main(argv: list[str] | None = None) -> int:
    """Warm up, wait for a folder on stdin (to its end), run its work, write the reply."""
    import faulthandler

    import psutil

    from threadx.ui import standby

    argv = sys.argv[1:] if argv is None else argv
    _die_with_parent()
    started_at = psutil.Process().create_time()
    if argv:  # a fresh start (see below): the folder is given
        folder = Path(argv[0])
    else:
        try:
            _warm()
        except Exception:  # noqa: BLE001 - warming is an optimisation: the work reports real errors
            pass
        given = sys.stdin.buffer.read().decode("utf-8", "surrogateescape")
        if not given:
            return 0  # end of file: the server went away
        folder = Path(given)
        if standby.stale(started_at):  # threadx's code changed since this process started
            os.execv(sys.executable, [sys.executable, "-m", "threadx.ui.user_code", str(folder)])
    standby.redirect_output(folder / "log.txt")
    faulthandler.enable()
    _serve(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
