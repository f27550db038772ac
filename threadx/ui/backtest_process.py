"""The backtest of a strategy from the strategies folder runs in a process of its own.

A user's strategy is code the workstation did not write: a numba function that reads past
an array can kill the process that runs it (a segmentation fault), a loop that never ends
holds it. Run in the server, either took the whole workstation down or held the page with
no way to stop it. Here the backtest runs in a child process (``python -m
threadx.ui.backtest_process``); the page waits for it, can stop it (Streamlit's Stop, a
new click, leaving the page: the child is killed), and a crash is one clear error naming
the strategy, with the last lines the process wrote (Python's fault handler names the file
and line where it crashed).

As the job standby (:mod:`threadx.ui.standby`), the server keeps one such process started
ahead, warm (imports and the engine's kernels loaded) and waiting for one backtest: it
takes it only under the environment and working directory it started with, and a threadx
source file changed since it started makes it start afresh. Each process runs one
backtest, so nothing a strategy changed in it reaches the next one.

The exchange is files in a private temporary folder, no pickles: ``request.json`` and
``frame.parquet`` in; ``result.json`` (metrics, params, meta), ``trades.parquet``,
``equity.parquet``, ``overlays.parquet`` (the indicator lines the chart draws, from the same
code) and ``reply.json`` (``{"ok": true}`` or ``{"error": text}``) out, and ``log.txt`` (what
the process printed).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from threadx.errors import ThreadXError

LIMIT_S = 600.0  # a backtest of a folder strategy running longer is stopped (a loop that never ends)
_LOG_TAIL = 12  # lines of the process's output quoted when it crashed

_lock = threading.Lock()
_waiting: list[tuple[subprocess.Popen, dict[str, str], str]] = []  # at most one: (process, env, cwd at its start)


def runs_apart(spec: Any) -> bool:
    """Whether ``spec``'s backtests run in a process of their own: a strategy from the
    strategies folder (``origin.kind == "user"``); built-in and imported ones run in the server."""
    origin = getattr(spec, "origin", None)
    return origin is not None and origin.kind == "user"


def keep_one() -> None:
    """Start a waiting backtest process unless one is waiting (under this environment)."""
    with _lock:
        if _waiting:
            proc, env, cwd = _waiting[0]
            if proc.poll() is None and env == dict(os.environ) and cwd == os.getcwd():
                return
            _end(_waiting.pop()[0])
        _waiting.append((_start(), dict(os.environ), os.getcwd()))


def _take() -> subprocess.Popen:
    """The waiting process when it can take a backtest, else a new one."""
    with _lock:
        while _waiting:
            proc, env, cwd = _waiting.pop()
            if proc.poll() is None and env == dict(os.environ) and cwd == os.getcwd():
                return proc
            _end(proc)
    return _start()


def _start() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "threadx.ui.backtest_process"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True)


def _end(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def release() -> None:
    """End the waiting process (tests; a server that stops)."""
    with _lock:
        while _waiting:
            _end(_waiting.pop()[0])


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


def run(request: Any, df: pd.DataFrame, on_wait: Callable[[float], None] | None = None,
        limit_s: float = LIMIT_S) -> tuple[Any, dict[str, pd.Series]]:
    """The :class:`threadx.Result` of ``request`` (a :class:`~threadx.requests.BacktestRequest`)
    on ``df`` and its chart's overlays (:func:`overlay_series`), computed in a process of its
    own. ``on_wait(seconds)`` is called about four
    times a second while it runs (a page updates a line there, which is where Streamlit
    stops a script: whatever it raises kills the process and goes on). ThreadXError: the
    backtest's own error, or the process crashed, or ran past ``limit_s`` seconds."""
    folder = Path(tempfile.mkdtemp(prefix="threadx-backtest-"))
    proc = None
    try:
        (folder / "request.json").write_text(json.dumps(request.to_dict()), encoding="utf-8")
        df.to_parquet(folder / "frame.parquet")
        proc = _take()
        proc.stdin.write(os.fsencode(str(folder)))
        proc.stdin.close()
        started = time.monotonic()
        while proc.poll() is None:
            waited = time.monotonic() - started
            if waited > limit_s:
                raise ThreadXError(f"the backtest of {request.strategy} ran for more than {limit_s:,.0f} s and was "
                                   "stopped: does its code loop without end?")
            if on_wait is not None:
                on_wait(waited)
            try:
                proc.wait(0.25)
            except subprocess.TimeoutExpired:
                pass
        return _result(folder, proc.returncode, request.strategy)
    finally:
        if proc is not None:
            _end(proc)
        threading.Thread(target=keep_one, name="threadx-backtest-standby", daemon=True).start()
        shutil.rmtree(folder, ignore_errors=True)


def _result(folder: Path, returncode: int, strategy: str) -> tuple[Any, dict[str, pd.Series]]:
    from threadx.engine.result import Result

    try:
        reply = json.loads((folder / "reply.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ThreadXError(_crash_text(folder, returncode, strategy)) from None
    if "error" in reply:
        raise ThreadXError(str(reply["error"]))
    fields = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    meta = fields["meta"]
    if isinstance(meta.get("rules"), dict):  # ExitRules' tuples (grid offsets), lists in JSON
        meta["rules"] = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["rules"].items()}
    equity = pd.read_parquet(folder / "equity.parquet")["equity"]
    lines = pd.read_parquet(folder / "overlays.parquet")
    return (Result(metrics=fields["metrics"], trades=pd.read_parquet(folder / "trades.parquet"), equity=equity,
                   params=fields["params"], meta=meta),
            {str(legend): lines[legend].set_axis(equity.index) for legend in lines.columns})


def _crash_text(folder: Path, returncode: int, strategy: str) -> str:
    """What a process that ended without a reply says: the signal or exit status, and the
    last lines it wrote (the fault handler's traceback names the strategy's file and line)."""
    if returncode < 0:
        try:
            how = f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            how = f"was killed by signal {-returncode}"
    else:
        how = f"exited with status {returncode}"
    text = (f"the backtest process {how} while it ran strategy {strategy}: its code (a numba function reading "
            "outside an array, say) crashed it; the workstation is unaffected")
    try:
        lines = [line[:200] for line in (folder / "log.txt").read_text(encoding="utf-8", errors="replace").splitlines()
                 if line.strip() and not line.startswith("Extension modules:")]  # (the fault handler's module list)
    except OSError:
        lines = []
    if lines:
        text += ". Its last output:\n\n```\n" + "\n".join(lines[-_LOG_TAIL:]) + "\n```"  # (a code block on the page)
    return text


# --- the process's side -------------------------------------------------------------------------

def _plain(value: Any) -> Any:
    """JSON form of what a Result's dicts hold beyond JSON's types (numpy scalars, times)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (pd.Timestamp, np.datetime64)):
        return str(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def _write_result(result: Any, overlays: dict[str, pd.Series], folder: Path) -> None:
    pd.DataFrame({legend: line.to_numpy() for legend, line in overlays.items()}).to_parquet(folder / "overlays.parquet")
    (folder / "result.json").write_text(json.dumps({"metrics": result.metrics, "params": result.params,
                                                    "meta": result.meta}, default=_plain), encoding="utf-8")
    result.trades.to_parquet(folder / "trades.parquet")
    result.equity.rename("equity").to_frame().to_parquet(folder / "equity.parquet")


def _die_with_parent() -> None:
    """Linux: this process is killed when the server that started it dies (a strategy looping
    in numba code, GIL held, would outlive it otherwise)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def _warm() -> None:
    """Imports and the engine's kernels loaded: a backtest of ma_crossover on a small
    synthetic series (a strategy's own kernels load when it runs)."""
    import threadx
    from threadx import logs
    from threadx.data.synthetic import generate_synthetic

    with logs.muted():
        threadx.backtest(generate_synthetic("WARM_UP", days=10, seed=1), "ma_crossover")


def _serve(folder: Path) -> None:
    import threadx
    from threadx.requests import BacktestRequest

    try:
        request = BacktestRequest.from_dict(json.loads((folder / "request.json").read_text(encoding="utf-8")))
        frame = pd.read_parquet(folder / "frame.parquet")
        result = request.run(frame)
        _write_result(result, overlay_series(threadx.get_strategy(request.strategy), frame, result.params), folder)
        reply: dict[str, Any] = {"ok": True}
    except (ThreadXError, ValueError) as exc:
        reply = {"error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - one line for the page; the traceback in log.txt
        import traceback

        traceback.print_exc()
        reply = {"error": f"the backtest failed: {type(exc).__name__}: {exc}"}
    (folder / "reply.json").write_text(json.dumps(reply), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Warm up, wait for a folder on stdin (to its end), run its backtest, write the reply."""
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
        except Exception:  # noqa: BLE001 - warming is an optimisation: the backtest reports real errors
            pass
        given = sys.stdin.buffer.read().decode("utf-8", "surrogateescape")
        if not given:
            return 0  # end of file: the server went away
        folder = Path(given)
        if standby.stale(started_at):  # threadx's code changed since this process started
            os.execv(sys.executable, [sys.executable, "-m", "threadx.ui.backtest_process", str(folder)])
    standby.redirect_output(folder / "log.txt")
    faulthandler.enable()
    _serve(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
