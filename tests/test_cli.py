"""The `threadx` command: happy paths on the synthetic sample, one clear line on bad input."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

from threadx.cli import main


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("THREADX_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("THREADX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)


def test_backtest_json_on_sample(capsys):
    assert main(["backtest", "--data", "sample:BTC_USDT-1h", "--strategy", "ma_crossover", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["meta"]["strategy"] == "ma_crossover"
    assert out["metrics"]["n_trades"] == len(out["trades"]) > 0
    assert out["params"]["fast_period"] == 10


def test_python_dash_m_threadx_is_the_command():
    done = subprocess.run([sys.executable, "-m", "threadx", "strategies", "--json"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "bb_atr" in {s["name"] for s in json.loads(done.stdout)}


def test_bench_measures_a_backtest_and_a_sweep_of_this_machine(capsys):
    """SPEC §10's `threadx bench`: a warm backtest's time and a sweep's rate, in a table or as JSON."""
    assert main(["bench", "--strategy", "ma_crossover", "--n", "40", "--executor", "inline", "--workers", "1",
                 "--start", "2024-01-01", "--end", "2024-03-01", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["strategy"] == "ma_crossover" and got["combos"] == 40 and got["workers"] == 1
    assert got["backtest_s"] > 0 and got["sweep_rate"] == pytest.approx(40 / got["sweep_s"])
    assert 1_000 < got["bars"] < 1_500 and got["kernel_us_per_combo"] > 0
    assert main(["bench", "--strategy", "ma_crossover", "--n", "20", "--executor", "inline", "--workers", "1",
                 "--start", "2024-01-01", "--end", "2024-02-01"]) == 0
    text = capsys.readouterr().out
    assert "20 combos in" in text and _table_value(text, "sweep rate").endswith("backtests/s")
    assert main(["bench", "--strategy", "no_such"]) == 2
    assert main(["bench", "--n", "0"]) == 2
    err = capsys.readouterr().err
    assert "no_such" in err and "Traceback" not in err


def _table_value(text: str, name: str) -> str:
    """The value printed next to ``name`` in a two-column table of the human output."""
    (match,) = re.findall(rf"^{name}\s+(.+?)\s*$", text, flags=re.MULTILINE)
    return match


def test_backtest_human_output_in_units_and_json_raw(capsys):
    argv = ["backtest", "--strategy", "ma_crossover", "--trades", "3"]
    assert main([*argv, "--json"]) == 0
    raw = json.loads(capsys.readouterr().out)
    m = raw["metrics"]
    assert 0 < m["win_rate"] < 1 and isinstance(m["n_trades"], int)  # --json: fractions stay fractions
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert _table_value(text, "win_rate") == f"{m['win_rate'] * 100:.2f} %"
    assert _table_value(text, "total_return") == f"{m['total_return'] * 100:.2f} %"
    assert _table_value(text, "n_trades") == f"{m['n_trades']:,}"  # a count, not 99.0000
    assert _table_value(text, "n_bars") == f"{m['n_bars']:,}"
    assert _table_value(text, "sharpe") == f"{m['sharpe']:.2f}"
    assert _table_value(text, "liquidated") == "no"
    assert ".0000" not in text
    last = raw["trades"][-1]
    assert f"{last['return_pct']:.2f} %" in text.splitlines()[-1]  # return_pct is already in percent


def test_backtest_table_and_data_list(capsys):
    assert main(["backtest", "--strategy", "bb_atr", "--param", "entry_z=1.5", "--fill", "close"]) == 0
    text = capsys.readouterr().out
    assert "synthetic" in text and "sharpe" in text and "entry_z=1.5" in text
    assert main(["data", "list", "--json"]) == 0
    names = [row["name"] for row in json.loads(capsys.readouterr().out)]
    assert "synthetic/BTC_USDT-1h" in names


def test_strategies_and_cache_commands(capsys, monkeypatch):
    monkeypatch.setenv("THREADX_CACHE_MIN_COMPUTE", "0")  # every result on disk: the cache commands have files
    assert main(["strategies", "--json"]) == 0
    specs = json.loads(capsys.readouterr().out)
    assert {s["name"] for s in specs} >= {"ma_crossover", "bb_atr", "bollinger_dual", "donchian_breakout", "supertrend"}
    assert main(["backtest", "--strategy", "supertrend", "--json"]) == 0
    capsys.readouterr()
    assert main(["cache", "stats", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["disk_files"] >= 1
    assert main(["cache", "clear"]) == 0
    assert "cleared" in capsys.readouterr().out
    assert main(["cache", "stats", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["disk_files"] == 0


def test_data_import_validate_resample(tmp_path, capsys):
    from threadx.data.synthetic import generate_synthetic

    df = generate_synthetic("ABC_USDT", days=20, seed=3)
    csv = tmp_path / "ABC_USDT-1h.csv"
    df.reset_index().to_csv(csv, index=False)
    assert main(["data", "import", str(csv), "--exchange", "myex"]) == 0
    assert main(["data", "validate", "myex/ABC_USDT-1h"]) == 0
    assert main(["data", "resample", "myex/ABC_USDT-1h", "--to", "4h"]) == 0
    assert (tmp_path / "data" / "myex" / "ABC_USDT-4h.parquet").exists()
    assert "120" in capsys.readouterr().out  # 20 days of complete 4h bins


def test_an_import_says_what_it_dropped_and_sorted(tmp_path, capsys):
    """--dedupe dropped a duplicate whose prices differed and sorted the rows, printing only
    "imported 480 bars"; the stored dataset, validated anew, is green with no trace of either."""
    from threadx.data.synthetic import generate_synthetic

    df = generate_synthetic("ABC_USDT", days=20, seed=3).reset_index()
    other = df.iloc[[5]].assign(close=df["close"].iloc[5] * 1.001, high=df["high"].iloc[5] * 1.01)
    rows = pd.concat([df.iloc[:5], other, df.iloc[5:]]).iloc[::-1]
    csv = tmp_path / "ABC_USDT-1h.csv"
    rows.to_csv(csv, index=False)
    assert main(["data", "import", str(csv), "--exchange", "myex", "--dedupe"]) == 0
    out, err = capsys.readouterr()
    assert "imported 480 bars" in out
    assert "warning: rows are not in time order" in err
    assert "warning: 1 duplicate timestamp(s)" in err and "(1 with other prices or volume than the row kept)" in err


def test_a_resample_without_one_complete_bar_or_past_a_year_writes_nothing(tmp_path, capsys):
    """Two 1h bars resampled to 4h "wrote 0 4h bars" (exit 0): a dataset of no bars, red in the
    list, "no bars" in every backtest; 999999d was an OverflowError traceback."""
    from threadx.data.synthetic import generate_synthetic

    csv = tmp_path / "ABC_USDT-1h.csv"
    generate_synthetic("ABC_USDT", days=20, seed=3).iloc[:2].reset_index().to_csv(csv, index=False)
    assert main(["data", "import", str(csv), "--exchange", "myex"]) == 0
    capsys.readouterr()
    assert main(["data", "resample", "myex/ABC_USDT-1h", "--to", "4h"]) == 2
    assert ("ABC_USDT-1h.parquet: no complete 4h bar in its 2 1h bars (a 4h bar is made only when every 1h bar "
            "of it is there)") in capsys.readouterr().err
    assert not (tmp_path / "data" / "myex" / "ABC_USDT-4h.parquet").exists()
    for argv in (["data", "resample", "myex/ABC_USDT-1h", "--to", "999999d"],
                 ["backtest", "--data", "myex/ABC_USDT-1h", "--strategy", "ma_crossover", "--timeframe", "999999d"]):
        assert main(argv) == 2
        assert "unknown timeframe '999999d': use a number and one of s, m, h, d, w (e.g. 1h, 15m), a year (366d) " \
               "at most" in capsys.readouterr().err


def test_data_resample_out_never_overwrites_without_replace(tmp_path, capsys):
    """``--out`` naming the source itself replaced its 1h bars by 4h ones with no word."""
    from threadx.data.synthetic import generate_synthetic

    csv = tmp_path / "ABC_USDT-1h.csv"
    generate_synthetic("ABC_USDT", days=20, seed=3).reset_index().to_csv(csv, index=False)
    assert main(["data", "import", str(csv), "--exchange", "myex"]) == 0
    source = tmp_path / "data" / "myex" / "ABC_USDT-1h.parquet"
    before = source.read_bytes()
    capsys.readouterr()
    assert main(["data", "resample", "myex/ABC_USDT-1h", "--to", "4h", "--out", str(source)]) == 2
    assert "exists" in capsys.readouterr().err and source.read_bytes() == before
    assert main(["data", "resample", "myex/ABC_USDT-1h", "--to", "4h", "--out", str(tmp_path / "x.csv")]) == 2
    assert "written as Parquet" in capsys.readouterr().err and not (tmp_path / "x.csv").exists()
    out = tmp_path / "ABC_4h.parquet"
    assert main(["data", "resample", "myex/ABC_USDT-1h", "--to", "4h", "--out", str(out)]) == 0
    assert main(["data", "resample", "myex/ABC_USDT-1h", "--to", "4h", "--out", str(out), "--replace"]) == 0



def test_a_resample_writes_only_what_validation_takes_and_names_it_for_what_it_holds(tmp_path, capsys):
    """`data resample` wrote what every later command refused (one 366d bar; a volume summed
    past float64's range, with numpy's RuntimeWarning leaking), BTC 4h bars as `ETH_USDT-15m`
    in the data root (listed as an ETH 15m dataset), and blamed a "bad dataset name" for a
    file named `prices.csv` resampled without --out."""
    from threadx.data.synthetic import generate_synthetic

    frame = generate_synthetic("ABC_USDT", days=20, seed=3)
    csv = tmp_path / "ABC_USDT-1h.csv"
    frame.reset_index().to_csv(csv, index=False)
    assert main(["data", "import", str(csv), "--exchange", "myex"]) == 0
    huge = frame.copy()
    huge.iloc[4:6, huge.columns.get_loc("volume")] = 1e308  # finite, so it imports; two in one 4h bar overflow
    huge.reset_index().to_csv(tmp_path / "HV_USDT-1h.csv", index=False)
    assert main(["data", "import", str(tmp_path / "HV_USDT-1h.csv"), "--exchange", "myex"]) == 0
    capsys.readouterr()
    root = tmp_path / "data" / "myex"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["data", "resample", "myex/HV_USDT-1h", "--to", "4h"]) == 2
    assert "myex/HV_USDT-1h resampled to 4h: not written: 1 row(s) with NaN or infinite values (in" in \
        capsys.readouterr().err
    assert main(["data", "resample", "myex/ABC_USDT-1h", "--to", "10d"]) == 2
    assert "not written: 1 bar: a dataset needs at least 2" in capsys.readouterr().err
    assert sorted(p.name for p in root.iterdir()) == ["ABC_USDT-1h.parquet", "HV_USDT-1h.parquet"]
    assert main(["data", "resample", "myex/ABC_USDT-1h", "--to", "4h", "--out", str(root / "ETH_USDT-15m.parquet")]) == 2
    assert "is in the data root, where a file is listed as the dataset its name says" in capsys.readouterr().err
    assert main(["data", "resample", "myex/ABC_USDT-1h", "--to", "4h", "--out", str(root / "ABC_USDT-4h.parquet")]) == 0
    assert main(["data", "resample", "myex/ABC_USDT-1h", "--to", "8h", "--out", str(tmp_path / "mine.parquet")]) == 0
    (tmp_path / "prices.csv").write_bytes(csv.read_bytes())
    capsys.readouterr()
    assert main(["data", "resample", str(tmp_path / "prices.csv"), "--to", "4h"]) == 2
    assert "its name 'prices' is not a dataset's (exchange/BASE_QUOTE-timeframe)" in capsys.readouterr().err

@pytest.mark.parametrize(
    "argv, message",
    [
        (["backtest", "--strategy", "nope"], "unknown strategy"),
        (["backtest", "--strategy", "ma_crossover", "--param", "fast_period=40", "--param", "slow_period=20"],
         "fast_period < slow_period"),
        (["backtest", "--strategy", "bb_atr", "--param", "entry_z=99"], "above its maximum"),
        (["backtest", "--strategy", "bb_atr", "--param", "nonsense"], "NAME=VALUE"),
        (["backtest", "--data", "missing.csv", "--strategy", "bb_atr"], "not found"),
        (["backtest", "--data", "nosuch/XYZ-1h", "--strategy", "bb_atr"], "error"),
        (["data", "validate", "missing.parquet"], "not found"),
    ],
)
def test_bad_input_exits_non_zero_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_bad_columns_file(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    assert main(["backtest", "--data", str(bad), "--strategy", "bb_atr"]) == 2
    assert "time column" in capsys.readouterr().err


def test_console_script_runs_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "threadx.cli", "backtest", "--strategy", "nope"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: unknown strategy") and "Traceback" not in proc.stderr


def test_sweep_and_runs_commands(tmp_path, capsys):
    argv = ["sweep", "--strategy", "ma_crossover", "--param", "fast_period=5:15:5", "--param", "slow_period=20,40",
            "--objective", "total_return", "--run-id", "cli", "--store", str(tmp_path / "runs"), "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["manifest"]["status"] == "completed" and out["manifest"]["done"] == 6
    assert out["top"][0]["total_return"] == max(row["total_return"] for row in out["top"])
    # counts and switches as backtest --json writes them (they read n_trades 1.0, liquidated 0.0)
    assert all(type(row["n_trades"]) is int and type(row["liquidated"]) is bool for row in out["top"]), out["top"][0]
    assert main(["runs", "list", "--store", str(tmp_path / "runs"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["run_id"] == "cli"
    assert main(["runs", "show", "cli", "--store", str(tmp_path / "runs")]) == 0
    text = capsys.readouterr().out
    assert "run cli" in text
    assert "left out by the strategy's constraints" not in text  # (6 of 6 valid: none left out)
    winner = out["top"][0]
    edge = [name for name, values in (("fast_period", (5, 10, 15)), ("slow_period", (20, 40)))
            if winner[name] in (values[0], values[-1])]
    assert ("note: the winner sits on the edge of the searched range of " in text) == bool(edge)  # (validate said)
    header, _, *rows = [line for line in text.splitlines()[1:] if not line.startswith("note:")]
    assert header.split() == ["fast_period", "slow_period", "total_return", "sharpe", "max_drawdown", "n_trades"]
    best = {row["total_return"]: row for row in out["top"]}[out["top"][0]["total_return"]]
    cells = rows[0].split("  ")
    cells = [c.strip() for c in cells if c.strip()]
    assert cells[2] == f"{best['total_return'] * 100:.2f} %" and cells[4] == f"{best['max_drawdown'] * 100:.2f} %"
    assert all(re.fullmatch(r"\d[\d,]*", row.split()[-1]) for row in rows)  # n_trades: whole numbers
    assert main(["sweep", "--strategy", "ma_crossover", "--param", "fast_period=30:5:5"]) == 2
    assert "empty range" in capsys.readouterr().err
    assert main(["runs", "show", "nope", "--store", str(tmp_path / "runs")]) == 2
    # the combos the constraints leave out are counted (it said "9 combos to run" of 30 asked, nothing more)
    assert main(["sweep", "--strategy", "ma_crossover", "--param", "fast_period=10:50:10", "--param",
                 "slow_period=20:60:10", "--run-id", "some", "--store", str(tmp_path / "runs")]) == 0
    assert ("note: 10 of the grid's 25 combos left out by the strategy's constraints (fast_period < slow_period)"
            in capsys.readouterr().out)


def test_an_interrupted_sweep_says_what_is_stored_and_which_run_to_resume(tmp_path, capsys, monkeypatch):
    """Ctrl-C said "finished combos are stored; run the same command with --run-id to resume"
    when nothing was stored, and never said which run id (one was made up for it)."""
    import threadx

    store = str(tmp_path / "runs")
    argv = ["sweep", "--strategy", "ma_crossover", "--param", "fast_period=5:15:5", "--store", store]
    assert main([*argv, "--run-id", "r1", "--json"]) == 0
    capsys.readouterr()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(threadx, "sweep", interrupted)
    assert main([*argv, "--run-id", "r1"]) == 130
    assert "interrupted: 3 combos of run r1 are stored; run the same command with --run-id r1 to resume" in \
        capsys.readouterr().err
    assert main(argv) == 130
    assert re.search(r"interrupted: no combo of run ma_crossover-\S+ was stored", capsys.readouterr().err)
    from threadx.optimize.runner import SweepTerminated

    def terminated(*args, **kwargs):  # a SIGTERM: 143 by the shell's convention (it was 130, Ctrl-C's)
        raise SweepTerminated

    monkeypatch.setattr(threadx, "sweep", terminated)
    assert main([*argv, "--run-id", "r1"]) == 143


def test_help_says_json_keeps_raw_values(capsys):
    from threadx.cli import build_parser

    assert "--json keeps the raw values" in " ".join(build_parser().format_help().split())
    with pytest.raises(SystemExit):
        main(["runs", "show", "--help"])
    assert "fractions stay fractions" in " ".join(capsys.readouterr().out.split())


# --- data fetch: several symbols and timeframes, funding; funding files used by backtests ---------

FETCH_T0_MS = 1_704_067_200_000  # 2024-01-01 UTC
FETCH_NOW_MS = FETCH_T0_MS + 200 * 3_600_000 + 60_000


def _fake_candles(symbol, timeframe, since, limit):
    """Hourly/4-hourly candles from 2024-01-01 up to now; ETH/USDT 4h is a market the exchange refuses."""
    import ccxt

    if symbol == "ETH/USDT" and timeframe == "4h":
        raise ccxt.BadSymbol("binance does not have market symbol ETH/USDT 4h")
    step = {"1h": 3_600_000, "4h": 14_400_000}[timeframe]
    base = 100.0 if symbol == "BTC/USDT" else 50.0
    out = []
    for i in range(FETCH_NOW_MS // step - FETCH_T0_MS // step + 1):
        ts = FETCH_T0_MS + i * step
        if ts >= since and len(out) < limit:
            o = base + (i % 9)
            out.append([ts, o, o + 2, o - 2, o + 1, 10.0])
    return out


def _fake_funding(symbol, since, limit):
    step = 8 * 3_600_000
    rows = [{"symbol": symbol, "timestamp": FETCH_T0_MS + i * step, "fundingRate": 0.0001 * (1 + i % 3)}
            for i in range(26) if i != 7]  # settlement 7 is missing
    return [r for r in rows if r["timestamp"] >= since][:limit]


@pytest.fixture
def fake_binance(monkeypatch):
    import ccxt

    calls = []

    def fetch_ohlcv(self, symbol, timeframe="1m", since=None, limit=None, params=None):
        calls.append(("ohlcv", symbol, timeframe, since))
        return _fake_candles(symbol, timeframe, since, limit or 500)

    def fetch_funding_rate_history(self, symbol=None, since=None, limit=None, params={}):
        calls.append(("funding", symbol, None, since))
        return _fake_funding(symbol, since, limit or 100)

    monkeypatch.setattr(ccxt.binance, "fetch_ohlcv", fetch_ohlcv)
    monkeypatch.setattr(ccxt.binance, "fetch_funding_rate_history", fetch_funding_rate_history)
    monkeypatch.setattr(ccxt.binance, "milliseconds", lambda self: FETCH_NOW_MS)
    monkeypatch.setattr("time.sleep", lambda s: None)
    return calls


def test_data_fetch_several_pairs_one_failing(fake_binance, tmp_path, capsys):
    argv = ["data", "fetch", "--symbol", "BTC/USDT", "--symbol", "ETH/USDT", "--timeframe", "1h",
            "--timeframe", "4h", "--since", "2024-01-01", "--funding"]
    assert main(argv) == 2  # one pair failed
    out, err = capsys.readouterr()
    assert out.count(" new bars, ") == 3 and out.count(" new funding rates, ") == 2
    assert "(1 missing settlements)" in out
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and "BadSymbol" in errors[0] and "ETH/USDT 4h" in errors[0]
    assert errors[1] == "error: 1 of 6 downloads failed"
    root = tmp_path / "data" / "binance"
    assert sorted(p.name for p in root.iterdir()) == ["BTC_USDT-1h.parquet", "BTC_USDT-4h.parquet",
                                                      "BTC_USDT-funding.parquet", "ETH_USDT-1h.parquet",
                                                      "ETH_USDT-funding.parquet"]
    # the funding files are not datasets
    assert main(["data", "list", "--json"]) == 0
    names = [row["name"] for row in json.loads(capsys.readouterr().out)]
    assert not any("funding" in name for name in names)
    # again with --json and comma lists: one entry per download, nothing new, still exit 2
    fake_binance.clear()
    assert main(["data", "fetch", "--symbol", "BTC/USDT,ETH/USDT", "--timeframe", "1h,4h", "--funding",
                 "--json"]) == 2
    entries = json.loads(capsys.readouterr().out)
    assert [(e["kind"], e["symbol"], e["timeframe"], e["ok"]) for e in entries] == [
        ("candles", "BTC/USDT", "1h", True), ("candles", "BTC/USDT", "4h", True), ("funding", "BTC/USDT", None, True),
        ("candles", "ETH/USDT", "1h", True), ("candles", "ETH/USDT", "4h", False), ("funding", "ETH/USDT", None, True)]
    assert entries[2]["new_rows"] == 0 and entries[2]["total_rows"] == 25 and entries[2]["missing_settlements"] == 1
    assert "BadSymbol" in entries[4]["error"]
    funding_calls = [c for c in fake_binance if c[0] == "funding"]
    assert funding_calls[0][3] == FETCH_T0_MS + 25 * 8 * 3_600_000 + 1  # only after the last stored settlement


def test_data_fetch_single_pair_form_still_works(fake_binance, tmp_path, capsys):
    assert main(["data", "fetch", "--symbol", "BTC/USDT", "--since", "2024-01-01", "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["ok"] and entry["timeframe"] == "1h" and entry["total_bars"] == 200
    assert not (tmp_path / "data" / "binance" / "BTC_USDT-funding.parquet").exists()  # only with --funding


def _store_dataset_with_funding(tmp_path, with_funding=True):
    import numpy as np
    import pandas as pd

    from threadx.data import generate_synthetic, write_ohlcv
    from threadx.data.funding import write_funding

    df = generate_synthetic("BTC_USDT", "1h", days=60, seed=7)
    df.attrs = {"timeframe": "1h", "synthetic": False}
    root = tmp_path / "data" / "binance"
    write_ohlcv(df, root / "BTC_USDT-1h.parquet")
    settle = pd.date_range(df.index[0], df.index[-1], freq="8h")
    rates = pd.Series(0.0001 + 0.0002 * np.sin(np.arange(len(settle))), index=settle, name="rate")
    if with_funding:
        write_funding(rates, root / "BTC_USDT-funding.parquet")
    return df, rates


def test_backtest_on_a_dataset_applies_its_funding_file(tmp_path, capsys):
    import threadx
    from threadx.data import read_ohlcv_file

    _, rates = _store_dataset_with_funding(tmp_path)
    argv = ["backtest", "--data", "binance/BTC_USDT-1h", "--strategy", "ma_crossover", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    df = read_ohlcv_file(tmp_path / "data" / "binance" / "BTC_USDT-1h.parquet")
    explicit = threadx.backtest(df, "ma_crossover", funding=rates)
    assert out["metrics"]["total_funding"] != 0
    assert out["metrics"]["total_funding"] == pytest.approx(explicit.metrics["total_funding"], rel=1e-12)
    assert out["metrics"]["total_return"] == pytest.approx(explicit.metrics["total_return"], rel=1e-12)
    funding = out["meta"]["funding"]
    assert funding["source"].endswith("BTC_USDT-funding.parquet") and funding["rates"] == len(rates)
    assert len(funding["fingerprint"]) == 64 and funding["fingerprint"] in out["meta"]["options"]["funding"]
    # --no-funding leaves it out
    assert main([*argv, "--no-funding"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["metrics"]["total_funding"] == 0 and "funding" not in plain["meta"]
    assert plain["meta"]["options"]["funding"] is None


@pytest.mark.parametrize("damage, words", [
    ("repeated", "100 settlement time(s) appear more than once, the first"),  # was: each paid twice
    ("nan", "funding rate(s) missing or not finite, the first at"),  # was: counted as no settlement
    ("undated", "1 settlement time(s) missing"),
])
def test_a_damaged_funding_file_is_one_error_not_another_funding(tmp_path, capsys, damage, words):
    """A funding file with every settlement written twice (two downloads joined by hand) doubled
    the funding without a word, and NaN rates were charged as nothing; the CLI, a portfolio and a
    re-fetch now refuse the file, and a dataset's runs without it (--no-funding) still work."""
    import numpy as np
    import pandas as pd

    _, rates = _store_dataset_with_funding(tmp_path)
    path = tmp_path / "data" / "binance" / "BTC_USDT-funding.parquet"
    frame = pd.read_parquet(path)
    if damage == "repeated":
        frame = pd.concat([frame, frame.iloc[:100]])
    elif damage == "undated":
        frame.loc[frame.index[5], "timestamp"] = pd.NaT
    else:
        frame.loc[frame.index[3::2], "rate"] = np.nan
    frame.to_parquet(path, index=False)
    for argv in (["backtest", "--data", "binance/BTC_USDT-1h", "--strategy", "ma_crossover"],
                 ["portfolio", "--runner", "ma_crossover:binance/BTC_USDT-1h"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"{path}: " in err and words in err and "fetch it again" in err, err
        assert "Traceback" not in err
    assert main(["backtest", "--data", "binance/BTC_USDT-1h", "--strategy", "ma_crossover", "--no-funding"]) == 0


def test_a_funding_series_with_repeated_settlements_is_refused() -> None:
    import pandas as pd

    import threadx
    from threadx.data import generate_synthetic
    from threadx.errors import ParamError

    df = generate_synthetic("BTC_USDT", "1h", days=30, seed=7)
    settle = pd.date_range(df.index[0], df.index[-1], freq="8h")
    once = pd.Series(0.0001, index=settle)
    with pytest.raises(ParamError, match=r"funding holds 90 repeated settlement time\(s\), the first "):
        threadx.backtest(df, "ma_crossover", funding=pd.concat([once, once]))  # was: twice the funding


def test_backtest_on_a_dataset_without_funding_file_is_unchanged(tmp_path, capsys):
    import threadx
    from threadx.data import read_ohlcv_file

    _store_dataset_with_funding(tmp_path, with_funding=False)
    assert main(["backtest", "--data", "binance/BTC_USDT-1h", "--strategy", "ma_crossover", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    df = read_ohlcv_file(tmp_path / "data" / "binance" / "BTC_USDT-1h.parquet")
    plain = threadx.backtest(df, "ma_crossover")
    assert out["metrics"]["total_funding"] == 0 and "funding" not in out["meta"]
    assert out["metrics"]["total_return"] == plain.metrics["total_return"]


def test_sweep_on_a_dataset_records_its_funding_file(tmp_path, capsys):
    from threadx.data.funding import funding_fingerprint, read_funding_file

    _store_dataset_with_funding(tmp_path)
    argv = ["sweep", "--data", "binance/BTC_USDT-1h", "--strategy", "ma_crossover", "--param", "fast_period=5,10",
            "--executor", "inline", "--json"]
    assert main([*argv, "--run-id", "with-funding"]) == 0
    out = json.loads(capsys.readouterr().out)
    fingerprint = funding_fingerprint(read_funding_file(tmp_path / "data" / "binance" / "BTC_USDT-funding.parquet"))
    assert fingerprint in json.dumps(out["manifest"])
    assert main([*argv, "--run-id", "without", "--no-funding"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert fingerprint not in json.dumps(plain["manifest"])


def test_walkforward_on_a_dataset_applies_its_funding_file(tmp_path, capsys):
    import threadx
    from threadx.data import read_ohlcv_file
    from threadx.data.funding import funding_fingerprint

    _, rates = _store_dataset_with_funding(tmp_path)
    argv = ["walkforward", "--data", "binance/BTC_USDT-1h", "--strategy", "ma_crossover", "--param",
            "fast_period=5,10", "--param", "slow_period=30", "--is-days", "20", "--oos-days", "10", "--bootstrap",
            "200", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)["walk_forward"]
    df = read_ohlcv_file(tmp_path / "data" / "binance" / "BTC_USDT-1h.parquet")
    explicit = threadx.walk_forward(df, "ma_crossover", {"fast_period": [5, 10], "slow_period": [30]}, is_days=20,
                                    oos_days=10, funding=rates)
    assert out["oos_summary"]["total_funding"] != 0
    assert out["oos_summary"]["total_funding"] == pytest.approx(explicit.oos_summary["total_funding"], rel=1e-12)
    assert funding_fingerprint(rates) in json.dumps(out)  # the result is tied to the file it used
    assert main([*argv, "--no-funding"]) == 0
    plain = json.loads(capsys.readouterr().out)["walk_forward"]
    assert plain["oos_summary"]["total_funding"] == 0


def test_json_output_stays_json_when_strategy_code_prints(capsys):
    """A print() in a strategy's signals went to stdout ahead of the JSON, which no longer parsed."""
    import dataclasses

    from threadx.strategy.base import get_strategy, register

    spec = get_strategy("ma_crossover")

    def chatty(bars, ind, p):
        print("debug: signals called")
        return spec.signals(bars, ind, p)

    register(dataclasses.replace(spec, name="test_cli_chatty", signals=chatty, signal_rule=None))
    assert main(["backtest", "--strategy", "test_cli_chatty", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["metrics"]["n_trades"] >= 0
    assert "debug: signals called" in err


def test_json_output_is_strict_json(capsys):
    """``NaN`` tokens (a run's 0-trade combos, a profit factor without losses) broke strict
    parsers (JSON.parse, jq 1.6)."""
    assert main(["sweep", "--strategy", "bb_atr", "--param", "entry_z=4.5,5", "--min-trades", "0", "--run-id",
                 "strict"]) == 0  # no trade: NaN win rates
    capsys.readouterr()
    assert main(["runs", "show", "strict", "--json"]) == 0
    out = capsys.readouterr().out
    assert "NaN" not in out and "Infinity" not in out
    top = json.loads(out, parse_constant=lambda token: pytest.fail(f"non-strict token {token}"))["top"]
    assert top and all(row["n_trades"] == 0 and row["win_rate"] is None for row in top)
    assert main(["sweep", "--strategy", "bb_atr", "--param", "entry_z=4.5,5", "--run-id", "none"]) == 0
    capsys.readouterr()
    assert main(["runs", "show", "none"]) == 0  # min_trades 10: no combo ranked, and it says why
    assert "no combo reaches the run's minimum of 10 trades" in capsys.readouterr().out



def test_data_list_json_gives_a_missing_time_as_null(tmp_path, capsys):
    """An unreadable dataset's first and last were the string "NaT" (the README: null)."""
    bad = tmp_path / "data" / "myex" / "BAD_USDT-1h.parquet"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"PAR1 cut short")
    assert main(["data", "list", "--json"]) == 0
    row = next(r for r in json.loads(capsys.readouterr().out) if r["name"] == "myex/BAD_USDT-1h")
    assert row["first"] is None and row["last"] is None

def test_walkforward_save_writes_strict_json(tmp_path, capsys):
    """--save writes the JSON --json prints (one writer: strict, no NaN token)."""
    saved = tmp_path / "wf.json"
    assert main(["walkforward", "--strategy", "bb_atr", "--param", "entry_z=4.5,5", "--is-days", "60", "--oos-days",
                 "30", "--bootstrap", "100", "--save", str(saved)]) == 0  # no trade anywhere: NaN metrics
    text = saved.read_text()
    assert "NaN" not in text and "Infinity" not in text
    json.loads(text, parse_constant=lambda token: pytest.fail(f"non-strict token {token}"))


def test_walkforward_report_source_names_the_run_id(tmp_path, capsys):
    """validation.source.run_id was null in the CLI's report though --run-id named the run."""
    from threadx.validation.storage import load_walk_forward

    saved = tmp_path / "wf.json"
    assert main(["walkforward", "--strategy", "ma_crossover", "--param", "fast_period=5,10", "--param",
                 "slow_period=30", "--is-days", "60", "--oos-days", "30", "--sampler", "grid", "--bootstrap", "100",
                 "--S", "4", "--run-id", "wf-src", "--save", str(saved)]) == 0
    data = json.loads(saved.read_text())
    assert data["run_id"] == data["validation"]["source"]["run_id"] == "wf-src"
    assert load_walk_forward("wf-src")[1].source["run_id"] == "wf-src"


def test_a_walkforward_is_stored_as_the_pages_are(tmp_path, capsys):
    """The CLI's walk-forward was printed and gone: the Validation page could not open it."""
    from threadx.validation.storage import list_walk_forwards, load_walk_forward

    argv = ["walkforward", "--strategy", "ma_crossover", "--param", "fast_period=5,10", "--param", "slow_period=30",
            "--is-days", "60", "--oos-days", "30", "--sampler", "grid", "--bootstrap", "200", "--S", "8"]
    assert main([*argv, "--run-id", "cli-wf"]) == 0
    out = capsys.readouterr().out
    assert "stored as walk-forward cli-wf in " in out
    wf, report = load_walk_forward("cli-wf")
    # which combo the stability is around (the windows' winners above it differ)
    best = report.stability.params
    assert (f"stability: neighbours/winner " in out and f"around the whole-period optimum fast_period={best['fast_period']}"
            in out), out
    assert wf.config["strategy"] == "ma_crossover" and report.robustness.bootstrap.n == 200
    assert [w["run_id"] for w in list_walk_forwards()] == ["cli-wf"]
    assert main([*argv, "--run-id", "cli-wf"]) == 2  # the id again: refused before the work, nothing replaced
    assert capsys.readouterr().err.strip() == "error: walk-forward cli-wf is stored already; pick another --run-id"
    assert main([*argv, "--json"]) == 0  # a new id of its own, in the JSON too
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    assert run_id.startswith("wf-ma_crossover-") and len(list_walk_forwards()) == 2
    # a sweep and a walk-forward never share an id (`runs show` showed only the sweep)
    sweep_argv = ["sweep", "--strategy", "ma_crossover", "--param", "fast_period=5,10", "--param", "slow_period=30"]
    assert main([*sweep_argv, "--run-id", "cli-wf"]) == 2
    assert "run id cli-wf is a stored walk-forward's; pick another run id" in capsys.readouterr().err
    from threadx.config import settings

    assert not (settings().results_dir / "cli-wf").exists()  # (no empty sweep folder left beside it)
    assert main([*sweep_argv, "--run-id", "cli-sweep"]) == 0
    capsys.readouterr()
    assert main([*argv, "--run-id", "cli-sweep"]) == 2
    assert capsys.readouterr().err.strip() == "error: run id cli-sweep is a stored sweep's; pick another --run-id"


def test_progress_is_not_redrawn_into_a_file_or_a_pipe(tmp_path, capsys):
    """Progress redraws went to a redirected stderr too: 721 of them (69 KB) for one strategy check."""
    proc = subprocess.run([sys.executable, "-m", "threadx", "sweep", "--strategy", "ma_crossover",
                           "--param", "fast_period=5:9:2", "--store", str(tmp_path / "runs")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr and "combos to run" in proc.stderr


def test_a_strategies_folder_file_crashing_the_command_is_named_with_its_line(tmp_path):
    """No guard runs folder files apart in the CLI (the server's does: threadx.ui.user_code): a
    crash ends the command, and its fault handler's report says where, not a bare status 139."""
    import os
    import subprocess
    import sys

    (tmp_path / "boom.py").write_text("import ctypes\nctypes.string_at(0)\n")
    done = subprocess.run([sys.executable, "-m", "threadx", "strategies"], capture_output=True, text=True,
                          env={**os.environ, "THREADX_STRATEGY_DIR": str(tmp_path)})
    assert done.returncode == -11
    assert "Segmentation fault" in done.stderr and f'File "{tmp_path / "boom.py"}", line 2' in done.stderr


def test_an_import_refusing_sparse_bars_says_so_once(tmp_path, capsys):
    """A warning line (load_ohlcv's, through the muted logger's child) came before the error
    line, with the same text."""
    from threadx.data.synthetic import generate_synthetic

    frame = generate_synthetic("ABC_USDT", days=20, seed=3)
    csv = tmp_path / "ABC_USDT-1h.csv"
    frame[np.arange(len(frame)) % 10 < 6].reset_index().to_csv(csv, index=False)  # 4 bars in 10 missing
    assert main(["data", "import", str(csv), "--exchange", "myex"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "not imported: quality" in err[0], err


def test_a_backtest_of_a_file_says_what_its_reading_changed_and_a_reversed_range_is_named(tmp_path, capsys):
    """`backtest --data FILE` of unsorted rows with zone-less times said nothing (import and
    validate did); --start after --end read "need at least 2 bars, got 0"."""
    from threadx.data.synthetic import generate_synthetic

    csv = tmp_path / "ABC_USDT-1h.csv"
    rows = generate_synthetic("ABC_USDT", days=20, seed=3).reset_index().iloc[::-1]
    rows.assign(timestamp=rows["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S")).to_csv(csv, index=False)
    assert main(["backtest", "--data", str(csv), "--strategy", "ma_crossover"]) == 0
    err = capsys.readouterr().err
    assert f"warning: {csv}: rows are not in time order" in err and "times carry no zone: read as UTC" in err, err
    assert main(["backtest", "--strategy", "ma_crossover", "--start", "2025-06-01", "--end", "2025-01-01"]) == 2
    assert "--start 2025-06-01 is not before --end 2025-01-01" in capsys.readouterr().err



def test_validate_with_an_unknown_timeframe_is_the_commands_error(capsys):
    """`data validate FILE --timeframe 1M` gave a red report of the file, exit 1; every other
    command refuses the timeframe itself (exit 2)."""
    assert main(["data", "validate", "sample:BTC_USDT-1h", "--timeframe", "1M"]) == 2
    assert "unknown timeframe '1M'" in capsys.readouterr().err


def test_a_builtin_sweep_does_not_run_the_strategies_folder(strategy_dir, capsys):
    """Showing a stored bb_atr sweep ran every file of the strategies folder (for the winner's grid
    edges): a file raising KeyboardInterrupt at import ended the finished sweep as 'interrupted'."""
    (strategy_dir / "stops_everything.py").write_text("raise KeyboardInterrupt\n")
    argv = ["sweep", "--strategy", "ma_crossover", "--param", "fast_period=5,10", "--param", "slow_period=30",
            "--sampler", "grid", "--workers", "1", "--run-id", "builtin-only"]
    assert main(argv) == 0
    assert "status completed" in capsys.readouterr().out
    assert main(["runs", "show", "builtin-only"]) == 0
