"""CLI bad input: one ``error:`` line on stderr, exit status 2, never a traceback, before long work."""
from __future__ import annotations

import os

import pytest

from threadx.cli import main
from threadx.cli.common import EXIT_BAD_INPUT


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
    for argv in (["runs", "list"], ["runs", "show", "x"], ["runs", "repair", "x"]):  # ("[Errno 20] Not a directory")
        assert "is a file; results need a directory" in one_error(capsys, [*argv, "--store", str(tmp_path / "afile")])
    err = one_error(capsys, ["strategy", "new", "mine", "--dir", str(tmp_path / "afile")])  # ("[Errno 17] File exists")
    assert "cannot write strategy 'mine' in " in err and "it is a file; strategies need a folder" in err


def test_monte_carlo_n_above_the_limit(capsys):
    err = one_error(capsys, ["sweep", "--strategy", "bb_atr", "--sampler", "random", "--n", "1000000000"])
    assert "above the limit of 10,000,000" in err


def test_a_grid_where_every_combo_is_invalid(capsys):
    err = one_error(capsys, ["sweep", "--strategy", "ma_crossover", "--param", "fast_period=50:69:1",
                             "--param", "slow_period=10:29:1"])
    assert "every one of the 400 combos breaks fast_period < slow_period" in err


def test_memory_budget_too_small_or_malformed(capsys):
    err = one_error(capsys, ["sweep", "--strategy", "bb_atr", "--param", "bb_period=10:40:1", "--workers", "2",
                             "--executor", "local", "--memory-budget", "100MB"])  # (auto would run it inline)
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


@pytest.fixture
def full_disk_on_save(monkeypatch):
    """Every atomic save of threadx's stores runs out of space before its rename."""
    import errno

    from threadx import files

    real = files.atomic_write_bytes

    def enospc(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    def full(path, data):
        with monkeypatch.context() as m:
            m.setattr(os, "fsync", enospc)
            real(path, data)

    monkeypatch.setattr(files, "atomic_write_bytes", full)


def test_walkforward_save_on_a_full_disk_keeps_the_earlier_file_and_prints_the_result(capsys, tmp_path,
                                                                                     full_disk_on_save):
    """`walkforward --save` truncated the file it replaced (a 24 KiB fragment of JSON) and lost the
    new result with 'error: [Errno 28] No space left on device': the earlier file stays whole, the
    result is printed all the same, and one line names the file."""
    saved = tmp_path / "wf.json"
    saved.write_text('{"earlier": "report"}')
    err = one_error(capsys, ["walkforward", "--strategy", "ma_crossover", "--param", "fast_period=5,10",
                             "--param", "slow_period=40", "--is-days", "120", "--oos-days", "60", "--bootstrap",
                             "100", "--S", "4", "--save", str(saved)])
    assert err == f"error: cannot save the walk-forward and its report to {saved}: no space left on the disk; " \
                  "wf.json is unchanged"
    assert saved.read_text() == '{"earlier": "report"}' and not list(tmp_path.glob(".wf.json*"))  # no temp file


def test_a_new_strategy_on_a_full_disk_leaves_no_cut_file(capsys, tmp_path, monkeypatch, full_disk_on_save):
    """`strategy new` left a 4 KiB cut .py that failed to load ('unterminated string literal') and
    blocked the retry ('exists already')."""
    monkeypatch.setenv("THREADX_STRATEGY_DIR", str(tmp_path / "strategies"))
    err = one_error(capsys, ["strategy", "new", "rsi_rev", "--from", "bb_atr"])
    assert "cannot save strategy 'rsi_rev' to" in err and "no space left on the disk; nothing was written" in err
    assert list((tmp_path / "strategies").iterdir()) == []


def test_a_walk_forward_stored_on_a_full_disk_is_one_error_naming_it(tmp_path, full_disk_on_save):
    import threadx
    from threadx.errors import ThreadXError
    from threadx.validation.report import validate_walk_forward
    from threadx.validation.storage import save_walk_forward

    df = threadx.load_ohlcv("sample:BTC_USDT-1h")
    wf = threadx.walk_forward(df, "ma_crossover", {"fast_period": [5, 10], "slow_period": [40]}, is_days=120,
                              oos_days=60)
    report = validate_walk_forward(wf, n=100, S=4)
    with pytest.raises(ThreadXError, match=r"cannot store walk-forward wf1 in .*wf1: no space left on the disk; "
                                           "it is not stored whole"):
        save_walk_forward("wf1", wf, report, tmp_path)


@pytest.mark.parametrize("command", ["backtest", "sweep"])
def test_a_param_given_twice_is_refused(capsys, command):
    """The last one was kept: a sweep of entry_z=1:2:0.5 then entry_z=3 ran 1 combo."""
    err = one_error(capsys, [command, "--strategy", "bb_atr", "--param", "entry_z=1:2:0.5" if command == "sweep"
                             else "entry_z=1", "--param", "entry_z=3"])
    assert "--param entry_z is given twice; give it once" in err


@pytest.mark.parametrize("argv, flag", [
    (["sweep", "--strategy", "ma_crossover", "--min-trades", "-1"], "--min-trades"),
    (["sweep", "--strategy", "ma_crossover", "--leverage", "0"], "--leverage"),
    (["walkforward", "--strategy", "ma_crossover", "--is-days", "0", "--oos-days", "10"], "--is-days"),
    (["bench", "--n=0"], "--n"),
    (["sweep", "--strategy", "ma_crossover", "--min-t", "-1"], "--min-trades"),  # argparse's prefix of it
    (["backtest", "--strategy", "bb_atr", "--param", "leverage=abc", "--leverage", "2"], "leverage"),  # the param's
    # checked before the work (the windows ran, then "--n must be" named the API's argument)
    (["walkforward", "--strategy", "ma_crossover", "--is-days", "60", "--oos-days", "30", "--bootstrap", "0"],
     "--bootstrap"),
    (["walkforward", "--strategy", "ma_crossover", "--is-days", "60", "--oos-days", "30", "--bootstrap", "2000000"],
     "--bootstrap"),
    (["validate", "no-such-run", "--bootstrap", "0"], "--bootstrap"),
    (["validate", "no-such-run", "--bootstrap", "1"], "--bootstrap"),  # (a zero-width "95 % CI")
    (["walkforward", "--strategy", "ma_crossover", "--is-days", "60", "--oos-days", "30", "--bootstrap", "99"],
     "--bootstrap"),
    (["research", "--strategy", "ma_crossover", "--data", "sample:BTC_USDT-1h", "--is-days", "60", "--oos-days",
      "30", "--bootstrap", "2000000"], "--bootstrap"),
])
def test_a_value_out_of_range_names_the_flag_given_not_the_python_name(capsys, argv, flag):
    """The rule is checked once, in the library, which names the argument (``min_trades``)."""
    assert one_error(capsys, argv).startswith(f"error: {flag} must be ")


@pytest.mark.parametrize("argv, flag, needs", [
    (["backtest", "--strategy", "ma_crossover", "--with-series"], "--with-series", "--json"),
    (["portfolio", "--runner", "ma_crossover:sample:BTC_USDT-1h", "--kept-only"], "--kept-only", "--from-research"),
    (["portfolio", "--runner", "ma_crossover:sample:BTC_USDT-1h", "--research-strategy", "x"], "--research-strategy",
     "--from-research"),
    (["portfolio", "--runner", "ma_crossover:sample:BTC_USDT-1h", "--cool", "2h"], "--cooldown",
     "a --kill-switch above 0"),
    (["portfolio", "--runner", "ma_crossover:sample:BTC_USDT-1h", "--kill-window", "24h"], "--kill-window",
     "a --kill-switch above 0"),  # (its default value, given: refused as any other)
    (["portfolio", "--runner", "ma_crossover:sample:BTC_USDT-1h", "--kill-switch", "0", "--cooldown", "2h"],
     "--cooldown", "a --kill-switch above 0"),
    (["sweep", "--strategy", "ma_crossover", "--n", "5"], "--n", "a Monte Carlo --sampler"),
    (["sweep", "--strategy", "ma_crossover", "--n", "2000"], "--n", "a Monte Carlo --sampler"),
    (["walkforward", "--strategy", "ma_crossover", "--sampler", "grid", "--n", "5", "--is-days", "60",
      "--oos-days", "10"], "--n", "a Monte Carlo --sampler"),
    (["research", "--strategy", "ma_crossover", "--data", "sample:BTC_USDT-1h", "--scheduler", "tcp://h:8786",
      "--is-days", "60", "--oos-days", "10"], "--scheduler", "--executor dask"),
])
def test_a_flag_given_without_the_one_it_needs_is_refused_not_ignored(capsys, argv, flag, needs):
    assert one_error(capsys, argv).startswith(f"error: {flag} only applies with {needs}")


@pytest.mark.parametrize("command", [["research", "--strategy", "ma_crossover", "--data", "sample:BTC_USDT-1h",
                                      "--is-days", "60", "--oos-days", "10"],
                                     ["portfolio", "--runner", "ma_crossover:sample:BTC_USDT-1h"]])
def test_an_empty_id_is_refused_not_replaced_by_a_new_one(capsys, command):
    assert "invalid" in one_error(capsys, [*command, "--id", ""])


@pytest.mark.parametrize("argv, command", [(["sweep", "--strategy"], "threadx sweep"), (["swep"], "threadx"),
                                           (["sweep", "--strategy", "x", "--fill", "bad"], "threadx sweep"),
                                           (["sweep", "--strategy", "x", "--bogus"], "threadx sweep"),
                                           (["data", "list", "--bogus"], "threadx data list")])
def test_a_command_line_argparse_refuses_is_one_error_line_not_the_usage_block(capsys, argv, command):
    """An unknown flag is refused by its subcommand, whose --help lists that command's flags."""
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    err = capsys.readouterr().err
    assert stopped.value.code == EXIT_BAD_INPUT and err.count("\n") == 1 and err.startswith(f"error: {command}: "), err
    assert "usage:" not in err and err.rstrip().endswith(f"(see {command} --help)")


def test_a_sweep_whose_workers_were_lost_exits_3_not_as_bad_input(capsys, monkeypatch):
    """A Dask cluster lost mid-sweep exited 2, the status of bad input, where the same command resumes."""
    import threadx
    from threadx.optimize.outcome import RunInterrupted

    def lost(*args, **kwargs):
        raise RunInterrupted("the Dask cluster lost 4 chunks in a row (CommClosedError); finished combos are stored, "
                             "the same run id resumes")

    monkeypatch.setattr(threadx, "sweep", lost)  # (as a Dask sweep ends when its cluster is gone)
    assert main(["sweep", "--strategy", "ma_crossover", "--param", "fast_period=5,10"]) == 3
    assert capsys.readouterr().err.strip().startswith("error: the Dask cluster lost 4 chunks")
