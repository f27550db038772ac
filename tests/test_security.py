"""Secure by default: names that become paths are checked by one helper, and the
workstation started by `make app` listens on loopback only."""
from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from threadx.cli import main as cli_main
from threadx.data.catalog import dataset_path
from threadx.data.timeframe import timeframe_seconds
from threadx.errors import DataError, ParamError, ThreadXError
from threadx.names import EXCHANGE, SYMBOL, TIMEFRAME, check_name
from threadx.optimize.store import ResultStore, check_run_id
from threadx.ui.jobs import JobRegistry

ROOT = Path(__file__).resolve().parents[1]

HOSTILE = ["../../elsewhere", "..", ".", "", "a/b", "a\\b", "abc\n", "abc\x00", " abc", "abc def", "/etc",
           ".hidden", "a" * 200, "a.", "a.b.c...."]


@pytest.mark.parametrize("value", HOSTILE)
def test_check_name_refuses_whole_string(value):
    with pytest.raises(ParamError, match="invalid"):
        check_name(value, "run id")


@pytest.mark.parametrize("value", ["bb-grid", "run_2024.01", "A1", "x" * 128])
def test_check_name_accepts_plain_names(value):
    assert check_name(value, "run id") == value


@pytest.mark.parametrize("value", ["con", "NUL", "nul.parquet", "Com1", "lpt9.x"])
def test_windows_device_names_are_refused(value):
    with pytest.raises(ParamError, match="is a device name on Windows"):
        check_name(value, "run id")
    assert check_name("console", "run id") == "console" and check_name("com10", "run id") == "com10"


def test_specific_patterns():
    assert check_name("binance", "exchange", EXCHANGE) == "binance"
    assert check_name("BTC_USDT", "symbol", SYMBOL) == "BTC_USDT"
    assert check_name("15m", "timeframe", TIMEFRAME) == "15m"
    assert check_name("A" * 59 + "_USDT", "symbol", SYMBOL)  # 64 characters
    for bad, pattern in (("Binance/..", EXCHANGE), ("BTC_USDT\n", SYMBOL), ("1h\n", TIMEFRAME), ("0h", TIMEFRAME),
                         ("A" * 60 + "_USDT", SYMBOL)):  # a file name past 255 bytes was an OS error
        with pytest.raises(ParamError):
            check_name(bad, "x", pattern)


@pytest.mark.parametrize("exchange", ["../../../../elsewhere", "a/b", "lo\ncal", "..", "local\x00"])
def test_dataset_path_refuses_traversal(tmp_path, exchange):
    with pytest.raises(ParamError):
        dataset_path(exchange, "BTC_USDT", "1h", data_root=tmp_path)
    with pytest.raises((ParamError, DataError)):
        dataset_path("local", "BTC_USDT", f"1h/{exchange}", data_root=tmp_path)


@pytest.mark.parametrize("symbol", ["../x", "BTC\nUSDT", "..", "BTC USDT", "BTC_USDT/../../x"])
def test_dataset_path_refuses_bad_symbols(tmp_path, symbol):
    # ccxt separators ('/' and ':') map to '_'; anything else outside letters and digits is refused
    with pytest.raises(ParamError):
        dataset_path("local", symbol, "1h", data_root=tmp_path)


def test_text_field_whitespace_is_trimmed_never_kept_in_a_path(tmp_path):
    # typed labels are trimmed (a text box's trailing newline); what reaches the path is checked
    path = dataset_path(" local\n", "BTC/USDT ", "1h\n", data_root=tmp_path)
    assert path == tmp_path / "local" / "BTC_USDT-1h.parquet"
    assert timeframe_seconds("1h\n") == 3600
    with pytest.raises(DataError):
        timeframe_seconds("1h\nx")


@pytest.mark.parametrize("run_id", ["abc\n", "../x", "a/b", ".x"])
def test_run_and_job_ids_refused(tmp_path, run_id):
    with pytest.raises(ThreadXError):
        check_run_id(run_id)
    with pytest.raises(ThreadXError):
        ResultStore(tmp_path).folder(run_id)
    with pytest.raises(ThreadXError):
        JobRegistry(tmp_path).get(run_id)


def test_cli_import_with_traversing_exchange_writes_nothing_outside(tmp_path, monkeypatch, capsys):
    import numpy as np
    import pandas as pd

    root = tmp_path / "data"
    monkeypatch.setenv("THREADX_DATA_ROOT", str(root))
    index = pd.date_range("2024-01-01", periods=300, freq="1h", tz="UTC", name="timestamp")
    close = 100 + np.cumsum(np.random.default_rng(0).normal(0, 1, 300))
    frame = pd.DataFrame({"open": close, "high": close + 1, "low": close - 1, "close": close, "volume": 1.0},
                         index=index)
    source = tmp_path / "in" / "BTC_USDT-1h.csv"
    source.parent.mkdir()
    frame.to_csv(source)
    before = {p for p in tmp_path.rglob("*")}
    code = cli_main(["data", "import", str(source), "--exchange", "../../../../elsewhere"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error:") and "exchange" in err and "Traceback" not in err
    assert {p for p in tmp_path.rglob("*")} == before


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _make_app_command(port: int) -> list[str]:
    """The streamlit command line `make app` runs: the Makefile's `threadx app` line (dry run),
    which prints the streamlit command it would start (address and port from the settings)."""
    out = subprocess.run(["make", "-s", "-n", "app", f"PORT={port}", f"PY={sys.executable}"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if "threadx.cli app" in ln)
    printed = subprocess.run([*shlex.split(line), "--dry-run"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout
    return shlex.split(printed.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="listening sockets read through psutil on Linux")
def test_make_app_listens_on_loopback_only(tmp_path):
    import psutil

    port = _free_port()
    command = _make_app_command(port)
    assert "--server.address" in command and command[command.index("--server.address") + 1] == "127.0.0.1"
    env = dict(os.environ, THREADX_DATA_ROOT=str(tmp_path / "data"), THREADX_CACHE_DIR=str(tmp_path / "cache"),
               THREADX_RESULTS_DIR=str(tmp_path / "results"))
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as reply:
                    assert reply.status == 200
                    break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    pytest.fail("the workstation did not answer on 127.0.0.1")
                time.sleep(0.5)
        listening = [c.laddr for c in psutil.Process(proc.pid).net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN]
        assert listening, "no listening socket found"
        assert {addr.ip for addr in listening} == {"127.0.0.1"}, listening
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_streamlit_config_binds_loopback():
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"


def test_serving_on_a_network_address_is_said_whoever_set_it(tmp_path, monkeypatch, capsys):
    """A workspace's threadx.toml with address = "0.0.0.0" served the app on the network unsaid."""
    from threadx.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["app", "--dry-run"]) == 0
    assert "warning" not in capsys.readouterr().err
    (tmp_path / "threadx.toml").write_text('[app]\naddress = "0.0.0.0"\n')
    assert main(["app", "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: serving on 0.0.0.0 (set by the workspace file") and "no login" in err


def test_a_run_id_cannot_be_one_of_the_results_folder_own_names(tmp_path, capsys):
    """A sweep run as `logs` wrote its parts beside threadx.log; `walkforward` inside the
    walk-forwards' folder; an empty --run-id quietly got a random one."""
    from threadx.optimize.store import RESERVED_RUN_IDS
    from threadx.portfolio import result
    from threadx.validation import research, storage

    assert {result.FOLDER, research.FOLDER, storage.FOLDER} <= set(RESERVED_RUN_IDS)
    for run_id in (*RESERVED_RUN_IDS, "Logs"):
        with pytest.raises(ParamError, match="the results folder keeps"):
            check_run_id(run_id)
    assert check_run_id("logs-2") == "logs-2"
    assert cli_main(["sweep", "--strategy", "ma_crossover", "--data", "synthetic/BTC_USDT-1h", "--run-id", "",
                 "--store", str(tmp_path)]) == 2
    assert "invalid run id ''" in capsys.readouterr().err
