"""Open in Backtest reopens the displayed run: its data, its winner, its engine options."""
from __future__ import annotations

import pytest
from apptest_helpers import ROOT, run_until, set_ranges
from streamlit.testing.v1 import AppTest

import threadx
from threadx.data.io import write_ohlcv
from threadx.data.synthetic import generate_synthetic

OPTIONS = {"fee_bps": 3.0, "slippage_bps": 2.0, "fill": "close", "sizing": "fraction", "fraction": 0.5,
           "leverage": 2.0}
METRICS = ("total_return", "sharpe", "sortino", "max_drawdown", "n_trades", "win_rate", "profit_factor")


def launch_newer_sweep() -> AppTest:
    """A bb_atr grid launched from the page on the session's dataset (the synthetic sample)."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)  # the app, so switch_page works
    at.run()
    at.switch_page("views/3_Optimisation.py").run()
    assert not at.exception, at.exception
    at.selectbox(key="opt_strategy").set_value("bb_atr").run()
    set_ranges(at, "opt:bb_atr", {"entry_z": (1.0, 2.0, 0.5)})
    at.button(key="opt_launch").click().run()
    assert not at.error, [e.value for e in at.error]
    return run_until(at, lambda a: "sweep_run" in a.session_state and bool(a.session_state["sweep_run"]))


def backtest_page(handed: dict) -> AppTest:
    at = AppTest.from_file(str(ROOT / "views" / "2_Backtest.py"), default_timeout=120)
    at.session_state["open_in_backtest"] = handed
    at.run()
    assert not at.exception, at.exception
    return at


def test_open_in_backtest_reopens_an_older_reloaded_run(workspace):
    # the older run: ma_crossover on a 5m file outside the catalog, with costs, fill, sizing, leverage
    path = workspace / "files" / "XYZ_USDT-5m.parquet"
    write_ohlcv(generate_synthetic(days=20, seed=5, timeframe="5m"), path)
    older = threadx.sweep(threadx.load_ohlcv(str(path)), "ma_crossover",
                          {"fast_period": "5:15:5", "slow_period": [40, 60]}, store=workspace / "results",
                          run_id="older", workers=1, **OPTIONS)
    best = older.top(1).iloc[0]

    at = launch_newer_sweep()  # a newer sweep, launched and shown after the older one
    newer = at.session_state["sweep_run"]
    assert newer != "older"
    assert any("completed" in p.proto.text for p in at.get("progress"))  # the newer job's line
    at.selectbox(key="opt_history").set_value("older").run()
    at.button(key="opt_reload").click().run()
    assert any("Run older: ma_crossover" in h.value for h in at.subheader)
    # the finished job's "completed (N / N combos)" no longer sits above the reloaded run, read as its
    assert not any("completed" in p.proto.text for p in at.get("progress")), [p.proto.text for p in at.get("progress")]
    assert any("XYZ_USDT-5m" in c.value and "fee 3 bps" in c.value for c in at.caption)
    handed_before = len(at.session_state["open_in_backtest"]) if "open_in_backtest" in at.session_state else 0
    at.button(key="opt_open_best").click().run()  # switches to the Backtest page, which runs the request
    assert not at.exception, at.exception
    assert handed_before == 0 and at.title[0].value == "Backtest"
    assert not at.error, [e.value for e in at.error]
    shown = at.session_state["backtest"]
    handed = {"request": shown["request"], "run_id": "older"}
    request = handed["request"]
    assert request["strategy"] == "ma_crossover" and request["data"]["source"] == str(path)
    assert request["params"] == older.best_params()
    assert {k: request["engine_options"][k] for k in OPTIONS} == OPTIONS

    bt = at
    assert shown["strategy"] == "ma_crossover" and shown["result"].meta["bars"] == older.manifest["bars"]
    for key in METRICS:  # the stored metrics, exactly
        assert shown["result"].metrics[key] == pytest.approx(float(best[key]), rel=0, abs=0, nan_ok=True), key
    assert bt.session_state["bt_fee"] == 3.0 and bt.session_state["bt_fill"] == "close"
    assert bt.session_state["bt_leverage"] == 2.0 and bt.session_state["bt_sizing"] == "fraction"
    assert bt.session_state["bt_engine_extra"] == {"fraction": 0.5}  # no widget: kept for the next runs
    assert not [i.value for i in bt.info if i.value.startswith("The form differs")]  # the form is the winner's
    assert any("run older" in c.value and "XYZ_USDT-5m" in c.value for c in bt.caption)
    reopened = shown["result"]
    bt.switch_page("views/2_Backtest.py").run()  # AppTest reruns the page it was pointed at, so point it
    assert bt.title[0].value == "Backtest"
    bt.button(key="bt_run").click().run()  # run again from the widgets: the same data, the same backtest
    assert not bt.error, [e.value for e in bt.error]
    again = bt.session_state["backtest"]["result"]
    assert again is not reopened and again.metrics == reopened.metrics
    assert any("Runs use the data of run older" in c.value for c in bt.caption), [c.value for c in bt.caption]
    # another strategy on that data: its result is on the run's data, not from the run (it read "From run older")
    bt.session_state["bt_strategy"] = "bb_atr"
    bt.run()
    bt.button(key="bt_run").click().run()
    assert bt.session_state["backtest"]["strategy"] == "bb_atr" and not bt.exception
    captions = [c.value for c in bt.caption]
    assert any(c.startswith("Data (from run older): ") and "XYZ_USDT-5m" in c for c in captions), captions
    assert not any("From run" in c for c in captions), captions

    # the file is replaced by other candles: said so, nothing run on them
    write_ohlcv(generate_synthetic(days=20, seed=6, timeframe="5m"), path)
    bt = backtest_page(handed)
    assert any("changed since the run" in e.value and "run older" in e.value for e in bt.error)
    assert "backtest" not in bt.session_state
    # and the page is not left bound to it: Run backtest failed on it again and again, under a picker showing
    # another dataset (only picking another one and back freed it)
    assert "bt_handed_data" not in bt.session_state
    assert any("**Run backtest** runs them on the dataset picked" in e.value for e in bt.error)
    bt.button(key="bt_run").click().run()
    assert not bt.error, [e.value for e in bt.error]
    assert bt.session_state["backtest"]["strategy"] == "ma_crossover"  # the run's params, on the picked dataset


def test_validation_page_finds_a_file_runs_data(workspace):
    """A sweep made from a file path (named like a catalog dataset) is validated on that file."""
    from threadx.data.synthetic import ensure_sample

    ensure_sample()  # the catalog holds a synthetic BTC_USDT-1h too
    path = workspace / "files" / "BTC_USDT-1h.parquet"
    write_ohlcv(generate_synthetic(days=120, seed=9), path)
    threadx.sweep(threadx.load_ohlcv(str(path)), "ma_crossover", {"fast_period": "5:15:5", "slow_period": [40, 60]},
                  store=workspace / "results", run_id="from-file", workers=1, fee_bps=2.0)
    at = AppTest.from_file(str(ROOT / "views" / "4_Validation.py"), default_timeout=120)
    at.run()
    at.selectbox(key="val_run").set_value("from-file")
    at.number_input(key="val_n").set_value(100)
    at.number_input(key="val_S").set_value(4)
    at.button(key="val_go").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert any("Sweep from-file" in h.value for h in at.subheader)
    assert any(str(path) in c.value and "fee 2 bps" in c.value for c in at.caption)
