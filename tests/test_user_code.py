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
    monkeypatch.setattr(user_code, "_take", lambda: taken.append(take()) or taken[-1])
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
    monkeypatch.setattr(user_code, "_take", lambda: taken.append(take()) or taken[-1])
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


def test_a_check_of_code_changed_since_the_page_read_it_is_refused(strategy_dir, frame) -> None:
    path = new_strategy_file("rsi_changed")
    spec = threadx.get_strategy("rsi_changed")
    path.write_text(path.read_text().replace('"rsi_period", "int", 14', '"rsi_period", "int", 15', 1))
    with pytest.raises(ThreadXError, match="rsi_changed"):
        user_code.check(spec, frame, "synthetic")
