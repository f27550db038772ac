"""A frame edited in place after a backtest or sweep is never served the old indicators.

``Bars.from_frame`` used to keep zero-copy views of the frame's columns, so the change
check in ``as_bars`` compared the edited values with themselves and the IndicatorBank
served the old fingerprint's indicators.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import threadx
from threadx.data.bars import Bars, as_bars
from threadx.data.synthetic import generate_synthetic
from threadx.errors import DataError

SPACE = {"bb_period": [10, 20, 30], "entry_z": [1.0, 2.0]}


def edit_in_place(df: pd.DataFrame, factor: float = 0.5) -> None:
    """Scale the prices of the second half of the frame, in place."""
    df.iloc[len(df) // 2:, 0:4] *= factor


def summary(res) -> tuple:
    return len(res.trades), float(res.equity.iloc[-1]), res.metrics["sharpe"]


@pytest.fixture
def frame() -> pd.DataFrame:
    return generate_synthetic(days=200, seed=11)


def test_backtest_after_in_place_edit_matches_a_fresh_copy(frame: pd.DataFrame) -> None:
    threadx.backtest(frame, "bb_atr")
    edit_in_place(frame)
    assert summary(threadx.backtest(frame, "bb_atr")) == summary(threadx.backtest(frame.copy(), "bb_atr"))


def test_sweep_after_in_place_edit_matches_a_fresh_copy(frame: pd.DataFrame, tmp_path: Path) -> None:
    def run(df: pd.DataFrame, run_id: str) -> pd.DataFrame:
        res = threadx.sweep(df, "bb_atr", SPACE, store=tmp_path, run_id=run_id, executor="inline", workers=1)
        return res.results.sort_values("combo_id").reset_index(drop=True)

    before = run(frame, "before")
    edit_in_place(frame)
    after, fresh = run(frame, "after"), run(frame.copy(), "fresh")
    cols = ["sharpe", "total_return", "n_trades"]
    pd.testing.assert_frame_equal(after[cols], fresh[cols])
    assert not before[cols].equals(fresh[cols])  # the edit does change the answer


def test_real_file_loaded_then_edited_in_place(shared_data: Path) -> None:
    """The tracker's case: BTC_USDT-1h, bb_atr defaults, prices from bar 6000 scaled in place."""
    df = threadx.load_ohlcv(shared_data / "binance" / "BTC_USDT-1h.parquet")
    threadx.backtest(df, "bb_atr")
    df.iloc[6000:, 0:4] *= 0.5  # a loaded frame is writable
    assert summary(threadx.backtest(df, "bb_atr")) == summary(threadx.backtest(df.copy(), "bb_atr"))


def test_bars_own_read_only_copies(frame: pd.DataFrame) -> None:
    bars = Bars.from_frame(frame)
    for col in ("open", "high", "low", "close", "volume", "time_ns"):
        arr = getattr(bars, col)
        assert not arr.flags.writeable and arr.flags.c_contiguous
    close = frame["close"].to_numpy()
    assert not np.shares_memory(bars.close, close)
    edit_in_place(frame)
    assert bars.close[-1] != frame["close"].iloc[-1]


def test_as_bars_remembers_an_unchanged_frame_and_renews_an_edited_one(frame: pd.DataFrame) -> None:
    first = as_bars(frame)
    assert as_bars(frame) is first  # same values: the remembered Bars (fingerprint kept)
    fingerprint = first.fingerprint
    edit_in_place(frame, 1.01)
    second = as_bars(frame)
    assert second is not first and second.fingerprint != fingerprint
    assert first.fingerprint == fingerprint == Bars.from_frame(generate_synthetic(days=200, seed=11)).fingerprint
    frame.attrs["timeframe"] = "60m"  # another spelling of the same timeframe: its one spelling
    assert as_bars(frame).timeframe == "1h"
    frame.attrs["timeframe"] = "2h"  # a tag the bars contradict (left by a pandas resample, say) is refused
    with pytest.raises(DataError, match="the bars are mostly 1h apart, not 2h as the frame's attrs"):
        as_bars(frame)


def test_frames_turned_into_bars_from_many_threads_at_once():
    """The workstation's script threads and sweep threads share as_bars' frame cache."""
    import sys
    import threading

    from threadx.data.bars import as_bars
    from threadx.data.synthetic import generate_synthetic

    base = generate_synthetic("BTC_USDT", days=3, seed=1)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(150):
                frame = base.copy()  # a new frame each time: entries come and go
                assert as_bars(frame).fingerprint == as_bars(frame).fingerprint
                del frame
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors[:3]


def test_bars_are_frozen_and_read_only():
    """A strategy handed the bars rebound ``bars.close`` (a mutable dataclass): every later
    backtest on that Bars object, and the indicator cache under its unchanged fingerprint,
    read the rebound prices; the engine filled at them."""
    import dataclasses

    a = np.arange(1.0, 6.0)
    bars = Bars(a, a + 1.0, a - 0.5, a, a, np.arange(5, dtype=np.int64))
    with pytest.raises(dataclasses.FrozenInstanceError):
        bars.close = a * 2.0
    with pytest.raises(ValueError, match="read-only"):
        bars.close[0] = 9.0  # (a writable array handed in is held read-only)
    assert bars.fingerprint == bars.fingerprint


_REBINDS = '''
import numpy as np
from threadx.strategy import SIG_ENTER_LONG, ExitRules, Levels, Param, StrategySpec


def signals(bars, ind, p):
    bars.close = np.round(bars.close, -3)
    return np.zeros(len(bars.close), dtype=np.uint8)


SPEC = StrategySpec(name="rebinds", description="rebinds bars.close",
                    params=(Param("unused", "int", 1, 1, 5, 1, feeds=()),), indicators=lambda p: {},
                    signals=signals, levels=lambda ind, p: Levels(), exits=lambda p: ExitRules())
'''


def test_a_strategy_rebinding_the_bars_gets_one_error_naming_its_line(strategy_dir, synthetic_bars):
    from threadx.errors import StrategyError

    (strategy_dir / "rebinds.py").write_text(_REBINDS)
    fingerprint = synthetic_bars.fingerprint
    with pytest.raises(StrategyError, match=r"rebinds\.py:7: FrozenInstanceError: cannot assign to field 'close'"):
        threadx.backtest(synthetic_bars, "rebinds")
    assert synthetic_bars.fingerprint == fingerprint and synthetic_bars.close[0] % 1000 != 0


def test_bars_read_as_a_frame_by_column_name():
    """A strategy written as for pandas (bars["close"]) failed every check with "'Bars' object is
    not subscriptable" (a first-time user's first edit of the template)."""
    import numpy as np
    import pytest

    from threadx.data.bars import Bars

    bars = Bars(*(np.arange(3.0) + k for k in range(5)), np.arange(3) * 3_600_000_000_000, "1h")
    assert bars["close"] is bars.close and not bars["volume"].flags.writeable
    with pytest.raises(KeyError, match="bars has no column 'Close': bars.open, .high"):
        bars["Close"]
