"""CLI bad input: one ``error:`` line on stderr, exit status 2, never a traceback, before long work."""
from __future__ import annotations

import pytest

from threadx.cli import EXIT_BAD_INPUT, main


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("THREADX_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("THREADX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("THREADX_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.chdir(tmp_path)


def one_error(capsys, argv: list[str]) -> str:
    """The error line of a command that must fail as bad input (a progress bar may precede it)."""
    assert main(argv) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    last = err.splitlines()[-1]
    assert last.startswith("error: ") and err.count("error:") == 1 and "Traceback" not in err, err
    return last


@pytest.mark.parametrize("command", ["backtest", "sweep"])
@pytest.mark.parametrize("flag", ["--start", "--end"])
def test_a_date_that_is_not_a_date(capsys, command, flag):
    err = one_error(capsys, [command, "--strategy", "bb_atr", flag, "notadate"])
    assert f"{flag} 'notadate' is not a date" in err


def test_sweep_store_that_is_a_file(capsys, tmp_path):
    (tmp_path / "afile").write_text("x")
    err = one_error(capsys, ["sweep", "--strategy", "ma_crossover", "--param", "fast_period=5,10",
                             "--store", str(tmp_path / "afile")])
    assert "is a file; results need a directory" in err


def test_monte_carlo_n_above_the_limit(capsys):
    err = one_error(capsys, ["sweep", "--strategy", "bb_atr", "--sampler", "random", "--n", "1000000000"])
    assert "above the limit of 10,000,000" in err


def test_a_grid_where_every_combo_is_invalid(capsys):
    err = one_error(capsys, ["sweep", "--strategy", "ma_crossover", "--param", "fast_period=50:69:1",
                             "--param", "slow_period=10:29:1"])
    assert "every one of the 400 combos breaks fast_period < slow_period" in err


def test_memory_budget_too_small_or_malformed(capsys):
    err = one_error(capsys, ["sweep", "--strategy", "bb_atr", "--param", "bb_period=10:40:1", "--workers", "2",
                             "--memory-budget", "100MB"])
    assert "the budget is 95.4 MiB" in err and "--memory-budget" in err
    err = one_error(capsys, ["sweep", "--strategy", "bb_atr", "--memory-budget", "lots"])
    assert "--memory-budget" in err and "'lots' is not a size" in err  # checked as a setting (flag level)


@pytest.mark.parametrize("where", ["missing/report.json", "afile/report.json", "."])
def test_walkforward_save_is_checked_before_the_work(capsys, tmp_path, monkeypatch, where):
    import threadx

    (tmp_path / "afile").write_text("x")

    def no_work(*args, **kwargs):
        raise AssertionError("the walk-forward ran before --save was checked")

    monkeypatch.setattr(threadx, "walk_forward", no_work)
    err = one_error(capsys, ["walkforward", "--strategy", "bb_atr", "--is-days", "60", "--oos-days", "30",
                             "--save", str(tmp_path / where)])
    assert "--save" in err


def test_disk_full_in_the_cli_is_one_error_line(capsys, monkeypatch):
    import errno

    from threadx.optimize.store import RunWriter

    def full(self):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(RunWriter, "flush", full)
    err = one_error(capsys, ["sweep", "--strategy", "ma_crossover", "--param", "fast_period=5,10",
                             "--run-id", "full"])
    assert "disk full while storing results of run full" in err and "resume with the same run id" in err


def test_walkforward_memory_budget(capsys):
    err = one_error(capsys, ["walkforward", "--strategy", "bb_atr", "--is-days", "60", "--oos-days", "30",
                             "--param", "bb_period=5:200:1", "--param", "bb_std=0.5:4:0.01", "--n", "3000",
                             "--memory-budget", "10MB"])
    assert "this walk-forward needs up to about" in err and "the budget is 9.5 MiB" in err
