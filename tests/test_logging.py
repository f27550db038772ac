"""The log: bounded by rotation, one record per run / job / error with its id (never one per
combo), console verbosity of the CLI, and a log that cannot be written never breaks a run."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from threadx import logs
from threadx.cli import main
from threadx.settings_file import FLAGS_ENV, keys


@pytest.fixture(autouse=True)
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace of its own (cwd, results, user config), the log file handlers reset."""
    for k in keys():
        monkeypatch.delenv(k.env, raising=False)
    monkeypatch.delenv(FLAGS_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("THREADX_CONFIG_DIR", str(tmp_path / "user"))
    monkeypatch.setenv("THREADX_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("THREADX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    logs.reset()
    yield tmp_path
    logs.reset()


def test_the_log_file_is_in_the_results_folder_by_default(workspace):
    logs.logger().info("hello")
    path = workspace / "results" / "logs" / "threadx.log"
    assert path.is_file() and "INFO" in path.read_text() and "hello" in path.read_text()
    assert logs.tail(5) == [path.read_text().splitlines()[-1]]


def test_rotation_keeps_the_files_bounded(workspace):
    (workspace / "threadx.toml").write_text('[logging]\nfile = "logs/t.log"\nmax_bytes = 2000\nbackups = 2\n')
    log = logs.logger()
    for i in range(2_000):
        log.info("record %05d %s", i, "x" * 40)
    files = sorted((workspace / "logs").iterdir())
    assert [f.name for f in files] == ["t.log", "t.log.1", "t.log.2"]  # the oldest are gone
    record = len(files[0].read_text().splitlines()[-1]) + 1
    assert all(f.stat().st_size <= 2000 for f in files), [f.stat().st_size for f in files]
    assert sum(f.stat().st_size for f in files) <= 3 * 2000
    assert "record 01999" in files[0].read_text().splitlines()[-1]
    assert record < 2000


def test_a_sweep_logs_its_run_id_once_at_each_end_never_per_combo(workspace, synthetic_bars):
    import threadx

    run = threadx.sweep(synthetic_bars, "ma_crossover", {"fast_period": "5:14:1", "slow_period": 30},
                        executor="inline", workers=1, run_id="log-test")
    assert len(run.top(20)) == 10
    lines = logs.tail(200)
    mine = [line for line in lines if "log-test" in line]
    assert len(mine) == 2, lines
    assert "sweep run log-test started: ma_crossover" in mine[0]
    assert "sweep run log-test completed: 10/10 combos, 0 failed" in mine[1]


def test_a_failed_command_is_logged_with_its_error(workspace, capsys):
    assert main(["runs", "show", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1  # printed once, not again by the console log
    (line,) = [line for line in logs.tail(20, workspace / "results" / "logs" / "threadx.log") if "ERROR" in line]
    assert "threadx runs show failed:" in line and "nope" in line


def test_verbose_and_quiet(workspace, capsys):
    assert main(["config", "show"]) == 0
    assert capsys.readouterr().err == ""
    assert main(["--verbose", "config", "show"]) == 0
    assert "debug: threadx config show" in capsys.readouterr().err
    assert main(["config", "show", "-v"]) == 0  # after the command too
    assert "debug: threadx config show" in capsys.readouterr().err
    assert main(["-q", "runs", "show", "nope"]) == 2
    assert capsys.readouterr().err.startswith("error:")  # --quiet keeps the error line


def test_an_unwritable_log_never_breaks_a_run(workspace, synthetic_bars, caplog):
    import threadx

    (workspace / "afile").write_text("not a folder")
    (workspace / "threadx.toml").write_text('[logging]\nfile = "afile/threadx.log"\n')
    with caplog.at_level(logging.WARNING, logger="threadx"):
        for _ in range(2):
            result = threadx.backtest(synthetic_bars, "ma_crossover", {"fast_period": 5, "slow_period": 20})
    assert result.metrics["n_trades"] > 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "cannot open the log file" in warnings[0]


def test_a_log_that_fails_while_writing_is_dropped_with_one_warning(workspace, caplog, monkeypatch):
    log = logs.logger()
    handler = logs._file_handler()
    assert handler is not None

    def full_disk(record):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(handler, "shouldRollover", full_disk)
    with caplog.at_level(logging.INFO, logger="threadx"):
        log.info("one")
        log.info("two")
    assert logs._file_handler() is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "No space left on device" in warnings[0]


def test_the_kernels_warm_up_is_not_logged_but_other_threads_are(tmp_path, monkeypatch):
    import threading

    from threadx import logs

    log = logging.getLogger(logs.NAME)
    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    keep = Keep()
    log.addHandler(keep)
    old_level = log.level
    log.setLevel(logging.INFO)
    try:
        with logs.muted():
            log.info("warm-up backtest")
            other = threading.Thread(target=lambda: log.info("a user's run meanwhile"))
            other.start()
            other.join()
        log.info("after")
    finally:
        log.removeHandler(keep)
        log.setLevel(old_level)
    assert seen == ["a user's run meanwhile", "after"]



def test_muted_records_of_a_module_logger_reach_neither_the_file_nor_the_console(workspace, capsys):
    """The mute filter sat on the "threadx" logger, which passes its children's records: an import
    refusing sparse bars printed load_ohlcv's "threadx.data" warning, then its error, same text."""
    logs.set_console("WARNING")
    path = logs.ensure_file()
    with logs.muted():
        logging.getLogger("threadx.data").warning("muted child record")
        logs.logger().warning("muted own record")
    logging.getLogger("threadx.data").warning("child record after")
    text = path.read_text()
    assert "muted" not in text and "child record after" in text
    err = capsys.readouterr().err
    assert "muted" not in err and "child record after" in err

def test_a_queued_job_is_logged_with_what_it_runs(workspace, monkeypatch):
    """A research job was logged as "queued: research None" (it has strategies, not a strategy)."""
    from threadx.requests import ResearchRequest, SweepRequest
    from threadx.ui.jobs import JobRegistry

    registry = JobRegistry()
    monkeypatch.setattr(registry, "refresh", lambda: None)  # queued, never launched
    registry.submit(ResearchRequest(["bb_atr", "ma_crossover"], ["sample:BTC_USDT-1h", "sample:ETH_USDT-1h"],
                                    options={"is_days": 90, "oos_days": 30}, run_id="r-log"))
    registry.submit(SweepRequest("sample:BTC_USDT-1h", "bb_atr", {"bb_period": "10:20:5"}, run_id="s-log"))
    queued = [line.split(" queued: ", 1)[1] for line in logs.tail(20) if " queued: " in line]
    assert queued == ["research bb_atr, ma_crossover on sample:BTC_USDT-1h, sample:ETH_USDT-1h, run r-log",
                      "bb_atr on sample:BTC_USDT-1h (grid), run s-log"], queued
