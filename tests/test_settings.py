"""Settings: flag > environment variable > workspace file > user file > built-in default,
``threadx config show`` with each value's source, and one clear line for a bad file."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from threadx import config
from threadx.cli import build_parser, main
from threadx.cli.common import _flag_settings
from threadx.engine.inputs import EngineOptions, options_from
from threadx.errors import ParamError, SettingsError
from threadx.settings_file import FLAGS_ENV, flag_overrides, keys, resolve


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """An empty user config folder and workspace (the cwd) in tmp_path, no THREADX_* variable:
    the developer's own files and environment are never read."""
    user, workspace = tmp_path / "user", tmp_path / "workspace"
    user.mkdir()
    workspace.mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("THREADX_CONFIG_DIR", str(user))
    for k in keys():
        monkeypatch.delenv(k.env, raising=False)
    monkeypatch.delenv(FLAGS_ENV, raising=False)
    monkeypatch.chdir(workspace)
    return {"user": user / "threadx.toml", "workspace": workspace / "threadx.toml"}


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def test_built_in_defaults_when_nothing_is_set(places):
    r = resolve()
    assert set(r.sources.values()) == {"default"}
    assert r["engine.fee_bps"] == config.DEFAULT_FEE_BPS and r["engine.min_notional"] == config.DEFAULT_MIN_NOTIONAL
    assert r["sweep.grid_limit"] == config.DEFAULT_GRID_LIMIT and r["app.address"] == "127.0.0.1"
    assert r["app.port"] == 8501 and r["cache.limit"] == config.DEFAULT_CACHE_LIMIT_BYTES
    assert EngineOptions() == EngineOptions.builtin()


# (setting, [section] line of a file, environment value, --set value, the four values in that order)
LEVELS = [
    ("engine.fee_bps", "[engine]\nfee_bps = {}", ["1.0", "2.0", "3.0", "4.0"], [1.0, 2.0, 3.0, 4.0]),
    ("sweep.workers", "[sweep]\nworkers = {}", ["1", "2", "3", "4"], [1, 2, 3, 4]),
    ("app.port", "[app]\nport = {}", ["9001", "9002", "9003", "9004"], [9001, 9002, 9003, 9004]),
    ("paths.results_dir", "[paths]\nresults_dir = \"{}\"", ["r1", "r2", "r3", "r4"], ["r1", "r2", "r3", "r4"]),
    ("engine.fill", "[engine]\nfill = \"{}\"", ["close", "next_open", "close", "next_open"],
     ["close", "next_open", "close", "next_open"]),
    ("app.standby", "[app]\nstandby = {}", ["false", "true", "off", "on"], [False, True, False, True]),
]


@pytest.mark.parametrize("dotted, line, texts, values", LEVELS, ids=[lv[0] for lv in LEVELS])
def test_each_level_overrides_the_one_below(places, monkeypatch, dotted, line, texts, values):
    from threadx.settings_file import key

    env = key(dotted).env
    _write(places["user"], line.format(texts[0]))
    assert (resolve()[dotted], resolve().sources[dotted]) == (values[0], f"user file {places['user']}")
    _write(places["workspace"], line.format(texts[1]))
    assert (resolve()[dotted], resolve().sources[dotted]) == (values[1], f"workspace file {places['workspace']}")
    monkeypatch.setenv(env, texts[2])
    assert (resolve()[dotted], resolve().sources[dotted]) == (values[2], f"env {env}")
    with flag_overrides({dotted: (texts[3], f"--set {dotted}")}):
        assert (resolve()[dotted], resolve().sources[dotted]) == (values[3], f"flag --set {dotted}")
    assert resolve()[dotted] == values[2]  # the flags end with the command


def test_a_command_flag_is_the_top_level(places, monkeypatch):
    monkeypatch.setenv("THREADX_ENGINE_FEE_BPS", "7")
    args = build_parser().parse_args(["sweep", "--strategy", "bb_atr", "--fee-bps", "3", "--workers", "2"])
    with flag_overrides(_flag_settings(args)):
        r = resolve()
        assert (r["engine.fee_bps"], r.sources["engine.fee_bps"]) == (3.0, "flag --fee-bps")
        assert (r["sweep.workers"], r.sources["sweep.workers"]) == (2, "flag --workers")
        assert EngineOptions().fee_bps == 3.0
    assert EngineOptions().fee_bps == 7.0


def test_engine_and_sweep_defaults_reach_the_api(places, synthetic_bars):
    import threadx
    from threadx.optimize.budget import Budget
    from threadx.optimize.runner import default_workers

    _write(places["workspace"], "[engine]\nfee_bps = 0\nslippage_bps = 2.5\ninitial_capital = 5000\n"
                                "[sweep]\nworkers = 3\ngrid_limit = 5\nmemory_budget = \"123MiB\"\n")
    options = options_from()
    assert (options.fee_bps, options.slippage_bps, options.initial_capital) == (0.0, 2.5, 5000.0)
    assert default_workers() == 3 and config.sweep_defaults().grid_limit == 5
    assert Budget.resolve(None).memory == 123 * 2**20
    result = threadx.backtest(synthetic_bars, "ma_crossover", {"fast_period": 5, "slow_period": 20})
    assert result.meta["options"]["fee_bps"] == 0.0 and result.meta["options"]["initial_capital"] == 5000.0
    explicit = threadx.backtest(synthetic_bars, "ma_crossover", {"fast_period": 5, "slow_period": 20}, fee_bps=10)
    assert explicit.meta["options"]["fee_bps"] == 10.0  # an argument wins over the settings
    with pytest.raises(ParamError, match="10,000,000|grid|combos"):  # grid_limit = 5 from the file
        threadx.sweep(synthetic_bars, "ma_crossover", {"fast_period": "5:10:1", "slow_period": 20},
                      executor="inline", store=str(places["workspace"].parent / "results"))


def test_paths_and_cache_limit_come_from_the_file(places):
    _write(places["user"], "[paths]\ndata_root = \"elsewhere/data\"\n[cache]\nlimit = \"2GiB\"\n")
    s = config.settings()
    assert s.data_root == Path("elsewhere/data") and s.cache_limit_bytes == 2 * 2**30
    assert s.config_dir == places["user"].parent


def test_config_show_names_the_source_of_every_value(places, monkeypatch, capsys):
    _write(places["user"], "[engine]\nfee_bps = 1\nslippage_bps = 1\n")
    _write(places["workspace"], "[engine]\nslippage_bps = 2\nfill = \"close\"\n")
    monkeypatch.setenv("THREADX_ENGINE_FILL", "next_open")
    monkeypatch.setenv("THREADX_DATA_ROOT", "from-env")
    assert main(["--set", "engine.min_notional=0", "config", "show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    settings = shown["settings"]
    assert set(settings) == {k.dotted for k in keys()}
    assert settings["engine.fee_bps"] == {"value": 1.0, "source": f"user file {places['user']}",
                                          "env": "THREADX_ENGINE_FEE_BPS"}
    assert settings["engine.slippage_bps"]["source"] == f"workspace file {places['workspace']}"
    assert settings["engine.fill"] == {"value": "next_open", "source": "env THREADX_ENGINE_FILL",
                                       "env": "THREADX_ENGINE_FILL"}
    assert settings["paths.data_root"]["source"] == "env THREADX_DATA_ROOT"
    assert settings["engine.min_notional"] == {"value": 0.0, "source": "flag --set engine.min_notional",
                                               "env": "THREADX_ENGINE_MIN_NOTIONAL"}
    assert settings["engine.initial_capital"]["source"] == "default"
    assert shown["files"]["user"] == str(places["user"]) and shown["files"]["workspace_exists"]

    assert main(["config", "show"]) == 0  # the human table: one row per setting with its source
    out = capsys.readouterr().out
    assert f"user file {places['user']}" in out and "env THREADX_ENGINE_FILL" in out
    assert "precedence: flag > environment variable > workspace file > user file > default" in out
    assert sum(line.startswith(("paths.", "engine.", "sweep.", "cache.", "app.", "logging."))
               for line in out.splitlines()) == len(keys())


BAD_FILES = [
    ("[engine\nfee_bps = 1\n", "not a valid TOML file"),
    ("[engine]\nfee_bps = 1\nfee_bps = 2\n", "not a valid TOML file"),
    ("[engine]\nfe_bps = 1\n", "unknown setting 'fe_bps' in [engine]"),
    ("[engines]\nfee_bps = 1\n", "unknown section [engines]"),
    ("fee_bps = 1\n", "unknown setting 'fee_bps' outside a section"),
    ("[engine]\nfee_bps = \"abc\"\n", "[engine] fee_bps must be a number, got 'abc'"),
    ("[engine]\nfill = \"open\"\n", "[engine] fill must be one of next_open, close"),
    ("[app]\nport = -1\n", "[app] port must be a whole number from 1 to 65535, got -1"),
    ("[app]\nport = 80.5\n", "[app] port must be a whole number"),
    ("[sweep]\nworkers = true\n", "[sweep] workers must be a whole number from 1 to 1024 or \"auto\""),
    ("[sweep]\nmemory_budget = \"lots\"\n", "[sweep] memory_budget 'lots' is not a size"),
    ("[logging]\nbackups = 0\n", "[logging] backups must be a whole number from 1 to 100"),
    ("[engine]\ninitial_capital = 5e15\n", "[engine] initial_capital must be at most 1e+15"),  # (the engine's cap)
    ("[engine]\nfee_bps = " + "[" * 3000 + "]" * 3000 + "\n", "not a valid TOML file"),  # (RecursionError)
    ("[engine]\nfee_bps = " + "9" * 5000 + "\n", "not a valid TOML file"),  # (int of too many digits)
    ("[sweep]\nmemory_budget = 0.5\n", "a size must be at least one byte"),
]


@pytest.mark.parametrize("text, message", BAD_FILES)
def test_a_bad_file_is_one_clear_line_naming_the_file_and_key(places, capsys, text, message):
    _write(places["workspace"], text)
    with pytest.raises(SettingsError) as info:
        resolve()
    assert str(places["workspace"]) in str(info.value) and message in str(info.value)
    assert main(["config", "show"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert message in err and str(places["workspace"]) in err


def test_a_bad_environment_value_or_flag_is_one_line_too(places, monkeypatch, capsys):
    monkeypatch.setenv("THREADX_APP_PORT", "http")
    assert main(["config", "show"]) == 2
    err = capsys.readouterr().err
    assert err == "error: environment variable THREADX_APP_PORT: must be a whole number from 1 to 65535, got 'http'\n"
    monkeypatch.delenv("THREADX_APP_PORT")
    assert main(["--set", "engine.fee_bps=abc", "config", "show"]) == 2
    assert capsys.readouterr().err == "error: --set engine.fee_bps: must be a number, got 'abc'\n"
    assert main(["--set", "engine.fees=1", "config", "show"]) == 2
    assert "unknown setting 'engine.fees'" in capsys.readouterr().err
    assert main(["app", "--port", "0", "--dry-run"]) == 2
    assert capsys.readouterr().err.startswith("error: --port: must be a whole number from 1 to 65535")


def test_a_bad_file_stops_a_run_with_one_line(places, capsys):
    _write(places["user"], "[engine]\nfee_bps = -1\n")
    assert main(["backtest", "--strategy", "bb_atr", "--data", "nowhere.csv"]) == 2
    err = capsys.readouterr().err  # checked before the command reads anything
    assert err == f"error: {places['user']}: [engine] fee_bps must be >= 0, got -1\n"


def test_app_listens_where_the_settings_say(places, capsys):
    _write(places["workspace"], "[app]\naddress = \"0.0.0.0\"\nport = 9100\n")
    assert main(["app", "--dry-run"]) == 0
    command = capsys.readouterr().out.split()
    assert command[command.index("--server.address") + 1] == "0.0.0.0"
    assert command[command.index("--server.port") + 1] == "9100"
    assert main(["app", "--dry-run", "--port", "9200", "--host", "127.0.0.1"]) == 0
    command = capsys.readouterr().out.split()
    assert command[command.index("--server.port") + 1] == "9200"
    assert command[command.index("--server.address") + 1] == "127.0.0.1"


def test_the_user_file_is_read_from_the_config_dir_default(tmp_path, monkeypatch):
    monkeypatch.delenv("THREADX_CONFIG_DIR", raising=False)
    monkeypatch.delenv("THREADX_ENGINE_FEE_BPS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / ".config" / "threadx"
    folder.mkdir(parents=True)
    _write(folder / "threadx.toml", "[engine]\nfee_bps = 4\n")
    r = resolve()
    assert r["engine.fee_bps"] == 4.0 and r.sources["engine.fee_bps"] == f"user file {folder / 'threadx.toml'}"


def test_the_readme_example_is_complete_and_holds_the_built_in_defaults(places):
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    start = text.index("```toml", text.index("A complete `threadx.toml`")) + len("```toml\n")
    _write(places["workspace"], text[start:text.index("```", start)])
    r = resolve()
    assert all(source.startswith("workspace file") for source in r.sources.values())  # every key is in it
    assert r.values == {k.dotted: k.kind(k.default, False) for k in keys()}


def test_a_file_with_a_byte_order_mark_is_read(places):
    """Windows Notepad writes UTF-8 with a BOM: it was refused as "Invalid statement"."""
    places["workspace"].write_bytes("\ufeff[engine]\nfee_bps = 3\n".encode("utf-8"))
    assert resolve()["engine.fee_bps"] == 3.0


def test_a_malformed_flag_variable_is_ignored(places, monkeypatch):
    """THREADX_FLAG_SETTINGS is ThreadX's own hand-down of command flags: another shape is not a traceback."""
    from threadx.settings_file import FLAGS_ENV, flag_overrides

    for raw in ("{bad", "[1]", '{"engine.fee_bps": 5}'):
        monkeypatch.setenv(FLAGS_ENV, raw)
        assert resolve()["engine.fee_bps"] == 10.0
        with flag_overrides({"engine.fee_bps": (2.0, "--fee-bps")}):
            assert resolve()["engine.fee_bps"] == 2.0


def test_a_misspelt_variable_is_said_with_the_setting_it_is_close_to(places, monkeypatch, capsys):
    """THREADX_STRATEGIES_DIR (for THREADX_STRATEGY_DIR) was ignored without a word: the user's
    strategies were written to the default folder in the current directory (a hostile browser test)."""
    from threadx.settings_file import unknown_variables

    monkeypatch.setenv("THREADX_STRATEGIES_DIR", "/somewhere")
    monkeypatch.setenv("THREADX_ENGINE_FILL", "close")  # a setting: nothing to say
    assert main(["config", "show"]) == 0
    err = capsys.readouterr().err
    assert ("THREADX_STRATEGIES_DIR is not a ThreadX setting and is ignored (did you mean THREADX_STRATEGY_DIR?)"
            in err) and "THREADX_ENGINE_FILL" not in err
    assert unknown_variables({"THREADX_NOPE": "1", "THREADX_TEST_FLAKY_DIR": "x", "THREADX_CONFIG_DIR": "c"}) == [
        "THREADX_NOPE is not a ThreadX setting and is ignored (threadx config lists the settings)"]


def test_the_workstation_shows_a_misspelt_variable_in_its_sidebar(monkeypatch):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("THREADX_RESULT_DIR", "/somewhere")
    app = AppTest.from_file(str(Path(__file__).parents[1] / "app.py"), default_timeout=120)
    app.run()
    assert not app.exception, app.exception
    assert any("THREADX_RESULT_DIR is not a ThreadX setting and is ignored (did you mean THREADX_RESULTS_DIR?)"
               in w.value for w in app.sidebar.warning), [w.value for w in app.sidebar.warning]
