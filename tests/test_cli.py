"""The `threadx` command: happy paths on the synthetic sample, one clear line on bad input."""
from __future__ import annotations

import json
import re
import subprocess
import sys

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


def test_strategies_and_cache_commands(capsys):
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
    assert main(["runs", "list", "--store", str(tmp_path / "runs"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["run_id"] == "cli"
    assert main(["runs", "show", "cli", "--store", str(tmp_path / "runs")]) == 0
    text = capsys.readouterr().out
    assert "run cli" in text
    header, _, *rows = text.splitlines()[1:]
    assert header.split() == ["fast_period", "slow_period", "total_return", "sharpe", "max_drawdown", "n_trades"]
    best = {row["total_return"]: row for row in out["top"]}[out["top"][0]["total_return"]]
    cells = rows[0].split("  ")
    cells = [c.strip() for c in cells if c.strip()]
    assert cells[2] == f"{best['total_return'] * 100:.2f} %" and cells[4] == f"{best['max_drawdown'] * 100:.2f} %"
    assert all(re.fullmatch(r"\d[\d,]*", row.split()[-1]) for row in rows)  # n_trades: whole numbers
    assert main(["sweep", "--strategy", "ma_crossover", "--param", "fast_period=30:5:5"]) == 2
    assert "empty range" in capsys.readouterr().err
    assert main(["runs", "show", "nope", "--store", str(tmp_path / "runs")]) == 2


def test_help_says_json_keeps_raw_values(capsys):
    from threadx.cli import build_parser

    assert "--json keeps the raw values" in " ".join(build_parser().format_help().split())
    with pytest.raises(SystemExit):
        main(["runs", "show", "--help"])
    assert "fractions stay fractions" in " ".join(capsys.readouterr().out.split())
