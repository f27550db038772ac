"""Which stored results ran on a dataset (threadx.results_using), said before a delete."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from candles import candles
from threadx.cli import main
from threadx.data.io import write_ohlcv
from threadx.results_using import results_using, used_by_note


@pytest.fixture
def two_datasets(tmp_path, monkeypatch):
    monkeypatch.setenv("THREADX_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("THREADX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("THREADX_RESULTS_DIR", str(tmp_path / "results"))
    for symbol, seed in (("ABC_USDT", 3), ("XYZ_USDT", 4)):
        write_ohlcv(candles(2400, pd.Timestamp("2024-01-01", tz="UTC"), seed), tmp_path / "data" / "binance"
                    / f"{symbol}-1h.parquet")
    return tmp_path


def _sweep(data: str, run_id: str) -> None:
    assert main(["sweep", "--data", data, "--strategy", "ma_crossover", "--param", "fast_period=5,10",
                 "--param", "slow_period=30", "--sampler", "grid", "--workers", "1", "--run-id", run_id]) == 0


def test_sweeps_and_walk_forwards_on_a_dataset_are_found_by_any_of_its_names(two_datasets, capsys):
    _sweep("ABC_USDT-1h", "on-abc-short")  # the short name resolves to the same file
    _sweep("binance/ABC_USDT-1h", "on-abc")
    _sweep("binance/XYZ_USDT-1h", "on-xyz")
    assert main(["walkforward", "--data", "binance/ABC_USDT-1h", "--strategy", "ma_crossover", "--param",
                 "fast_period=5,10", "--param", "slow_period=30", "--is-days", "40", "--oos-days", "20", "--sampler",
                 "grid", "--bootstrap", "100", "--S", "4", "--run-id", "wf-abc"]) == 0
    portfolio = two_datasets / "results" / "portfolios" / "pf-xyz"
    portfolio.mkdir(parents=True)
    (portfolio / "portfolio.json").write_text(json.dumps({"runners": [{"data": {"source": "binance/XYZ_USDT-1h"}}]}))
    (two_datasets / "results" / "on-xyz" / "manifest.json").write_text("{damaged")  # plan.json still names it
    capsys.readouterr()

    assert results_using("binance/ABC_USDT-1h") == ["sweep on-abc", "sweep on-abc-short", "walk-forward wf-abc"]
    assert results_using("XYZ_USDT-1h") == ["sweep on-xyz", "portfolio pf-xyz"]
    note = used_by_note("binance/ABC_USDT-1h", shown=1)  # each kind named (a walk-forward hid in "and 1 more")
    assert note == (" 3 stored results ran on it (2 sweeps: on-abc and 1 more; 1 walk-forward: wf-abc): they stay "
                    "readable but cannot be resumed, validated or re-run without it.")

    assert main(["data", "delete", "binance/ABC_USDT-1h"]) == 2  # asked: the note says what it would leave
    assert "3 stored results ran on it" in capsys.readouterr().err
    assert main(["data", "delete", "binance/ABC_USDT-1h", "--yes"]) == 0
    assert "note: 3 stored results ran on it" in capsys.readouterr().err
    assert not (two_datasets / "data" / "binance" / "ABC_USDT-1h.parquet").exists()


def test_no_result_no_note(two_datasets):
    assert results_using("binance/ABC_USDT-1h") == [] and used_by_note("binance/ABC_USDT-1h") == ""


def test_the_other_kinds_folders_are_not_read_as_sweeps(two_datasets):
    _sweep("binance/ABC_USDT-1h", "on-abc")
    portfolios = two_datasets / "results" / "portfolios"
    portfolios.mkdir(parents=True)
    (portfolios / "manifest.json").write_text(json.dumps({"dataset": "binance/ABC_USDT-1h"}))  # not a sweep's
    assert results_using("binance/ABC_USDT-1h") == ["sweep on-abc"]


def test_a_rename_names_the_results_that_ran_on_it_and_warns_of_another_market(two_datasets, capsys):
    """README: rename and delete "both name the stored sweeps ... that ran on the dataset"; the
    rename said nothing, and the sweep then read "dataset ... is gone"."""
    _sweep("binance/ABC_USDT-1h", "on-abc")
    capsys.readouterr()
    assert main(["data", "rename", "binance/ABC_USDT-1h", "binance/ABC_USDT-1h-moved"]) == 0
    out, err = capsys.readouterr()
    assert "renamed binance/ABC_USDT-1h to binance/ABC_USDT-1h-moved" in out
    assert err.strip() == ("note: 1 stored result ran on it (sweep on-abc): it stays readable but cannot be resumed, "
                           "validated or re-run under its new name (rename it back to binance/ABC_USDT-1h for that).")
    assert main(["data", "rename", "binance/XYZ_USDT-1h", "binance/QQQ_USDT-1h"]) == 0  # BTC's bars named ETH's
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["warning: the bars stay XYZ_USDT's, now named QQQ_USDT: every backtest, research and portfolio "
                   "reads them as QQQ_USDT's"]
    assert main(["data", "rename", "binance/QQQ_USDT-1h", "binance/QQQUSDT-1h"]) == 0  # the same market
    assert capsys.readouterr().err == ""
    assert main(["data", "delete", "binance/QQQUSDT-1h"]) == 2  # no result: one sentence, no capital after ';'
    assert "(QQQUSDT-1h.parquet) cannot be undone. Add --yes to delete it." in capsys.readouterr().err
