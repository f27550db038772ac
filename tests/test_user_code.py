"""A strategies-folder strategy backtests in a process of its own (threadx.ui.user_code):
the same numbers and chart lines as in the server; its code crashing that process, or
looping without end, is one clear error (or a stop) and the server goes on."""
from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest

import threadx
from threadx.data.synthetic import generate_synthetic
from threadx.errors import ThreadXError
from threadx.requests import BacktestRequest, DatasetRef
from threadx.strategy.scaffold import new_strategy_file
from threadx.ui import user_code

SIGNALS_START = '    rsi = ind["rsi"]["value"]\n'
CRASH = SIGNALS_START + "    import ctypes\n    ctypes.string_at(0)  # reads address 0: a segmentation fault\n"
LOOP = SIGNALS_START + "    while True:\n        pass\n"


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate_synthetic("BTC_USDT", "1h", days=120, seed=5)


@pytest.fixture(autouse=True)
def no_waiting_process():
    yield
    user_code.release()


def _request(frame: pd.DataFrame, strategy: str, params: dict | None = None) -> BacktestRequest:
    ref = DatasetRef(source="synthetic", name="synthetic", fingerprint=DatasetRef.of(frame).fingerprint)
    return BacktestRequest(ref, strategy, params or {}, {"fee_bps": 7.0})


def _with_signals(name: str, text: str) -> None:
    path = new_strategy_file(name)
    source = path.read_text()
    assert SIGNALS_START in source
    path.write_text(source.replace(SIGNALS_START, text, 1))


def test_only_folder_strategies_run_apart(strategy_dir) -> None:
    new_strategy_file("rsi_apart")
    assert user_code.runs_apart(threadx.get_strategy("rsi_apart"))
    assert not any(user_code.runs_apart(threadx.get_strategy(name)) for name in ("bb_atr", "ma_crossover"))


def test_a_folder_strategy_gives_the_servers_numbers_and_chart_lines(strategy_dir, frame, monkeypatch) -> None:
    new_strategy_file("rsi_apart")
    request = _request(frame, "rsi_apart", {"rsi_period": 9})
    monkeypatch.setenv("THREADX_APP_STANDBY", "on")
    user_code.keep_one()  # as the page does: the next backtest takes this process
    (ahead, _, _), = user_code._waiting
    taken = []
    take = user_code._take
    monkeypatch.setattr(user_code, "_take", lambda folder: taken.append(take(folder)) or taken[-1])
    result, overlays = user_code.backtest(request, frame)
    assert taken == [ahead]
    here = request.run(frame)
    assert here.metrics.keys() == result.metrics.keys()
    for key, value in here.metrics.items():
        got = result.metrics[key]
        assert got == value or (isinstance(value, float) and math.isnan(value) and math.isnan(got)), key
    assert len(here.trades) > 3
    pd.testing.assert_frame_equal(result.trades, here.trades, check_index_type=False)
    np.testing.assert_array_equal(result.equity.to_numpy(), here.equity.to_numpy())
    assert (result.equity.index == here.equity.index).all()
    assert result.params == here.params
    ignore = ("timings", "elapsed_s")
    assert {k: v for k, v in result.meta.items() if k not in ignore} == {k: v for k, v in here.meta.items()
                                                                        if k not in ignore}
    expected = user_code.overlay_series(threadx.get_strategy("rsi_apart"), frame, here.params)
    assert overlays.keys() == expected.keys()
    for legend, line in expected.items():
        np.testing.assert_array_equal(overlays[legend].to_numpy(), line.to_numpy())


def test_an_error_of_the_strategy_reads_as_in_the_server(strategy_dir, frame) -> None:
    new_strategy_file("rsi_apart")
    request = _request(frame, "rsi_apart", {"rsi_period": -3})
    with pytest.raises(ThreadXError) as here:
        request.run(frame)
    with pytest.raises(ThreadXError) as apart:
        user_code.backtest(request, frame)
    assert str(apart.value) == str(here.value)


def test_code_that_crashes_its_process_is_one_error_and_the_server_goes_on(strategy_dir, frame) -> None:
    _with_signals("rsi_crash", CRASH)
    with pytest.raises(ThreadXError) as crash:
        user_code.backtest(_request(frame, "rsi_crash"), frame)
    text, output = str(crash.value), crash.value.output
    assert "the backtest of rsi_crash was killed by SIGSEGV" in text and "the workstation is unaffected" in text
    assert 'rsi_crash.py", line' in output  # the fault handler's traceback: the line of the strategy's file
    assert "Extension modules" not in output and len(output.splitlines()) <= 12
    new_strategy_file("rsi_fine")
    result, _ = user_code.backtest(_request(frame, "rsi_fine"), frame)  # the next one runs
    assert result.metrics["n_trades"] > 0


def test_a_loop_without_end_is_stopped_and_its_process_killed(strategy_dir, frame, monkeypatch) -> None:
    _with_signals("rsi_loop", LOOP)
    request = _request(frame, "rsi_loop")
    taken = []
    take = user_code._take
    monkeypatch.setattr(user_code, "_take", lambda folder: taken.append(take(folder)) or taken[-1])
    with pytest.raises(ThreadXError, match="ran for more than 2 s and was stopped"):
        user_code.backtest(request, frame, limit_s=2.0)
    assert taken[-1].poll() is not None

    class Stopped(Exception):
        """What Streamlit raises in a script it stops (at the page's next element update)."""

    def on_wait(seconds: float, *_) -> None:
        if seconds > 1.0:
            raise Stopped

    started = time.monotonic()
    with pytest.raises(Stopped):
        user_code.backtest(request, frame, on_wait=on_wait)
    assert time.monotonic() - started < 30
    assert len(taken) == 2 and taken[-1].poll() is not None  # killed, not left looping


def test_a_check_runs_apart_reports_its_stages_and_stores_its_report(strategy_dir, frame) -> None:
    from threadx.ui.strategies import check_status

    new_strategy_file("rsi_checked")
    spec = threadx.get_strategy("rsi_checked")
    stages: list[tuple[str | None, float | None]] = []
    kept = user_code.check(spec, frame, "synthetic", on_wait=lambda seconds, stage, f: stages.append((stage, f)))
    assert kept == []
    status, report = check_status(spec)
    assert status in ("PASS", "FAIL") and report["strategy"] == "rsi_checked"
    seen = [stage for stage, _ in stages if stage]
    assert seen and all(0.0 <= f <= 1.0 for stage, f in stages if stage)


def test_a_check_runs_the_code_the_page_read_even_when_the_file_changed_since(strategy_dir, frame) -> None:
    """The process runs the strategy as the server loaded it (its origin's text), and the
    report is stored under that code's hash: the page then says the last check is of other
    code than the file's."""
    import json as json_module

    from threadx.checks.store import _path

    path = new_strategy_file("rsi_changed")
    spec = threadx.get_strategy("rsi_changed")
    path.write_text(path.read_text().replace('"rsi_period", "int", 14', '"rsi_period", "int", 15', 1))
    user_code.check(spec, frame, "synthetic")
    stored = json_module.loads(_path("rsi_changed").read_text())
    assert stored["code_hash"] == spec.code_hash != threadx.get_strategy("rsi_changed").code_hash


def test_the_process_started_ahead_outlives_the_thread_that_started_it(strategy_dir, frame, monkeypatch) -> None:
    """A page's script thread ends with its run: the process it kept waiting died with it (its
    death signal follows the thread), and a backtest it was running read as a crash."""
    import threading

    new_strategy_file("rsi_apart")
    monkeypatch.setenv("THREADX_APP_STANDBY", "on")
    starter = threading.Thread(target=user_code.keep_one)
    starter.start()
    starter.join()
    (ahead, _, _), = user_code._waiting
    time.sleep(1.0)
    assert ahead.poll() is None
    result, _ = user_code.backtest(_request(frame, "rsi_apart"), frame)
    assert result.metrics["n_trades"] > 0


def test_what_the_strategy_started_ends_with_its_process(strategy_dir, frame) -> None:
    import psutil

    _with_signals("rsi_forks", SIGNALS_START + "    import subprocess, sys\n"
                  "    subprocess.Popen([sys.executable, '-c', 'while True: pass'])\n    while True:\n        pass\n")
    before = {p.pid for p in psutil.process_iter()}
    with pytest.raises(ThreadXError, match="ran for more than 3 s"):
        user_code.backtest(_request(frame, "rsi_forks"), frame, limit_s=3.0)
    time.sleep(0.5)
    spinning = [p for p in psutil.process_iter(["pid", "cmdline", "status"]) if p.pid not in before
                and "while True: pass" in " ".join(p.info["cmdline"] or []) and p.info["status"] != psutil.STATUS_ZOMBIE]
    assert not spinning


def test_the_process_reads_only_the_strategy_it_runs(strategy_dir, frame, monkeypatch) -> None:
    """It ran the strategy's code as the server loaded it, without loading the folder: a slow
    sibling file cost every run its load time."""
    new_strategy_file("rsi_apart")
    (strategy_dir / "slow_sibling.py").write_text("import time\ntime.sleep(20)\n")
    from threadx.strategy import user

    monkeypatch.setattr(user, "LOAD_LIMIT_S", 1.0)
    request = _request(frame, "rsi_apart")
    request.run(frame)  # (the server's lookups: the sibling's 20 s paid here, once)
    started = time.monotonic()
    result, _ = user_code.backtest(request, frame)
    assert time.monotonic() - started < 15
    assert result.meta["strategy_code"] == threadx.get_strategy("rsi_apart").code_hash


def test_odd_attrs_a_failing_chart_line_and_an_exit_read_well(strategy_dir, frame) -> None:
    new_strategy_file("rsi_odd")
    odd = frame.copy()
    odd.attrs["loaded_at"] = pd.Timestamp("2024-01-01")
    odd.attrs["tags"] = {"a"}
    result, _ = user_code.backtest(_request(odd, "rsi_odd"), odd)
    assert result.metrics["n_trades"] > 0
    _with_signals("rsi_exits", SIGNALS_START + "    import os\n    os._exit(0)\n")
    with pytest.raises(ThreadXError) as ended:
        user_code.backtest(_request(frame, "rsi_exits"), frame)
    assert "exited with status 0 before it gave a result" in str(ended.value) and "SIGSEGV" not in str(ended.value)


def test_overlays_that_fail_leave_the_result_without_chart_lines(strategy_dir, frame) -> None:
    path = new_strategy_file("rsi_lines")
    path.write_text(path.read_text().replace("    params=(", "    overlays=lambda p: {'RSI': ('rsi', p['nope'])},\n"
                                             "    params=(", 1))
    request = _request(frame, "rsi_lines")
    here = request.run(frame)
    result, overlays = user_code.backtest(request, frame)
    assert overlays == {} and result.metrics["n_trades"] == here.metrics["n_trades"] > 0
