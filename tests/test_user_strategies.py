"""Your own strategies: a file in the strategies folder is listed, backtested, swept (process
pool with fork and spawn, Dask's LocalCluster), walked forward and validated; edits take
effect on the next run without a restart; a run is never resumed or re-evaluated with other
code; a broken file is reported with its line and every other strategy keeps working."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import threadx
from threadx.data.synthetic import generate_synthetic
from threadx.errors import ParamError, StrategyError, ThreadXError
from threadx.indicators import IndicatorBank
from threadx.optimize import pool as pool_module
from threadx.engine.inputs import options_from
from threadx.optimize.evaluate import SweepTask, task_strategy
from threadx.optimize.store import ResultStore
from threadx.validation.report import validate_sweep
from threadx.strategy import user
from threadx.strategy.scaffold import TEMPLATE, new_strategy_file

SPACE = {"rsi_period": "10:16:2", "oversold": "26:32:3"}  # 4 x 3 = 12 combos
NAME_LINE = TEMPLATE.splitlines().index('    name="__NAME__",') + 1  # the template's declaration


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate_synthetic("BTC_USDT", "1h", days=240, seed=3)


@pytest.fixture
def rsi(strategy_dir: Path) -> Path:
    """The template written as ``rsi_mine`` into a fresh strategies folder."""
    return new_strategy_file("rsi_mine")


def _sweep(frame, store, run_id, **kw):
    return threadx.sweep(frame, "rsi_mine", SPACE, store=store, run_id=run_id, objective="total_return",
                         bank=IndicatorBank(disk=False), **kw)


def _returns(run) -> np.ndarray:
    return run.results.sort_values("combo_id")["total_return"].to_numpy()


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_a_file_in_the_folder_is_listed_and_backtested(rsi: Path, frame) -> None:
    specs = threadx.strategies()
    assert "rsi_mine" in specs and "bb_atr" in specs
    spec = specs["rsi_mine"]
    assert spec.origin.kind == "user" and spec.origin.path == str(rsi.resolve())
    assert spec.origin.line == NAME_LINE
    result = threadx.backtest(frame, "rsi_mine")
    assert result.metrics["n_trades"] > 5
    assert result.meta["strategy_code"] == spec.code_hash == user.text_hash(rsi.read_text())
    # the accounting holds for user code as for the built-ins
    assert result.trades["pnl"].sum() == pytest.approx(result.metrics["final_equity"] - 10_000.0, abs=1e-6)


def test_an_edit_changes_the_next_run_in_the_same_process(rsi: Path, frame) -> None:
    before = threadx.backtest(frame, "rsi_mine")
    _edit(rsi, 'ExitRules(stop_atr=p["atr_stop"], sizing="risk"',
          'ExitRules(stop_atr=p["atr_stop"], max_hold_bars=3, sizing="risk"')
    after = threadx.backtest(frame, "rsi_mine")
    assert after.meta["strategy_code"] != before.meta["strategy_code"]
    assert after.trades["bars_held"].max() <= 3 < before.trades["bars_held"].max()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_process_pool_sweeps_equal_the_inline_sweep(rsi: Path, frame, tmp_path, monkeypatch, method) -> None:
    inline = _sweep(frame, tmp_path, "inline", executor="inline")
    monkeypatch.setattr(pool_module, "default_start_method", lambda: method)
    pooled = _sweep(frame, tmp_path, method, executor="local", workers=2, chunk_size=3)
    assert (pooled.results["status"] == "ok").all() and len(pooled.results) == 12
    assert np.array_equal(_returns(pooled), _returns(inline))
    assert pooled.manifest["strategy_code"] == threadx.get_strategy("rsi_mine").code_hash
    assert pooled.manifest["strategy_file"] == str(rsi.resolve())


def test_dask_local_cluster_runs_a_user_strategy(rsi: Path, frame, tmp_path) -> None:
    pytest.importorskip("distributed")
    inline = _sweep(frame, tmp_path, "inline", executor="inline")
    dask = _sweep(frame, tmp_path, "dask", executor="dask", workers=2, chunk_size=4)
    assert np.array_equal(_returns(dask), _returns(inline))


def test_workers_run_the_code_the_sweep_started_with(rsi: Path) -> None:
    spec = threadx.get_strategy("rsi_mine")
    task = SweepTask.of(spec, SPACE, options_from())
    _edit(rsi, 'description="RSI mean reversion', 'description="edited meanwhile')
    assert threadx.get_strategy("rsi_mine").code_hash != spec.code_hash
    rebuilt = task_strategy(task)  # what a worker does with the task
    assert rebuilt.code_hash == spec.code_hash and rebuilt.description == spec.description
    # in a fresh process (a spawned or Dask worker) too, from the task's text alone
    code = (f"import pickle,sys; from threadx.optimize.evaluate import task_strategy; "
            f"t = pickle.loads(bytes.fromhex('{__import__('pickle').dumps(task).hex()}')); "
            "s = task_strategy(t); print(s.code_hash, s.description[:20])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split()[0] == spec.code_hash and "RSI mean reversion" in out.stdout


def test_the_folder_imported_as_a_package_is_refused(rsi: Path, frame, strategy_dir, monkeypatch) -> None:
    """From the workspace root the folder imports as the package `strategies`: `from
    strategies.shared import HOLD` went to Python's import, cached once per process: an edit to
    shared.py changed neither the results nor the code hash (a run resumed on other code)."""
    monkeypatch.syspath_prepend(str(strategy_dir.parent))  # as when the app is started from the workspace root
    (strategy_dir / "shared.py").write_text("HOLD = 3\n")
    _edit(rsi, "import numpy as np\n", "import numpy as np\nfrom strategies.shared import HOLD\n")
    errors = user.load_errors()
    assert "rsi_mine.py" in errors and "the strategies folder imported as a package" in errors["rsi_mine.py"]
    assert "from _common import f" in errors["rsi_mine.py"] and "strategies.shared" not in sys.modules
    _edit(rsi, "from strategies.shared import HOLD\n", "from shared import HOLD\n")  # by its plain name: fine
    assert not user.load_errors() and threadx.backtest(frame, "rsi_mine").metrics["n_trades"] >= 0


def test_register_in_a_folder_file_is_refused_with_the_reason(rsi: Path, frame) -> None:
    """register(SPEC) in a folder file: "is a built-in strategy" (false) on the first listing, then
    the first version frozen in the registry, with no origin, reload or file:line."""
    rsi.write_text(rsi.read_text() + "\n\nfrom threadx.strategy import register\n\nregister(SPEC)\n")
    error = user.load_errors()["rsi_mine.py"]
    assert "a strategies-folder file needs no register('rsi_mine')" in error and "rsi_mine.py:" in error
    assert "rsi_mine" not in threadx.strategies()
    _edit(rsi, "\nregister(SPEC)\n", "\n")
    assert threadx.get_strategy("rsi_mine").origin is not None and not user.load_errors()


HOLD_EXITS = ('ExitRules(stop_atr=p["atr_stop"], sizing="risk"',
              'ExitRules(stop_atr=p["atr_stop"], max_hold_bars=shared.HOLD, sizing="risk"')


def test_a_module_of_the_folder_a_strategy_imports_is_part_of_its_code(rsi: Path, frame, strategy_dir) -> None:
    """A strategy importing ``shared.py`` from the folder (with a sys.path line) kept the module
    Python cached: an edit to it changed nothing until a restart, the strategy's code hash did
    not cover it (a stored run was resumed with other code), and the module was listed as a file
    that "declares no strategy"."""
    helper = strategy_dir / "shared.py"
    helper.write_text("HOLD = 3\n")
    (strategy_dir / "_unused.py").write_text("raise RuntimeError('never run: nothing imports it')\n")
    _edit(rsi, "import numpy as np\n", "import numpy as np\nimport shared\n")
    _edit(rsi, *HOLD_EXITS)
    spec = threadx.get_strategy("rsi_mine")
    assert not user.load_errors()  # shared.py is a module of shared code, _unused.py is never run
    assert spec.origin.helpers == ((str(helper.resolve()), "HOLD = 3\n"),)
    assert spec.code_hash not in (user.text_hash(rsi.read_text()), "") and len(spec.code_hash) == 16
    three = threadx.backtest(frame, "rsi_mine")
    assert three.trades["bars_held"].max() == 3 and three.meta["strategy_code"] == spec.code_hash
    task = SweepTask.of(spec, SPACE, options_from())

    helper.write_text("HOLD = 5  # edited\n")  # the next run uses the edit and another code hash
    five = threadx.backtest(frame, "rsi_mine")
    assert five.trades["bars_held"].max() == 5 and five.meta["strategy_code"] != spec.code_hash
    assert task_strategy(task).code_hash == spec.code_hash  # a worker runs the code the sweep began with
    assert task_strategy(task).exits({**spec.defaults(), "atr_stop": 2.0}).max_hold_bars == 3
    helper.unlink()  # a fresh process rebuilds it from the task alone
    code = (f"import pickle; from threadx.optimize.evaluate import task_strategy; "
            f"t = pickle.loads(bytes.fromhex('{__import__('pickle').dumps(task).hex()}')); "
            "s = task_strategy(t); print(s.code_hash, s.exits({'atr_stop': 2.0, 'risk_per_trade': 0.01}).max_hold_bars)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == [spec.code_hash, "3"]
    assert "No module named 'shared'" in user.load_errors()["rsi_mine.py"]  # and the file now fails to load
    helper.write_text("HOLD = 4\n")  # back once the module is there again
    assert threadx.backtest(frame, "rsi_mine").trades["bars_held"].max() == 4


def test_an_error_in_an_imported_module_names_its_file_and_line(rsi: Path, frame, strategy_dir) -> None:
    helper = strategy_dir / "_tools.py"
    helper.write_text("def hold():\n    return {}['x']\n")
    _edit(rsi, "import numpy as np\n", "import numpy as np\nfrom _tools import hold\n")
    _edit(rsi, 'ExitRules(stop_atr=p["atr_stop"], sizing="risk"',
          'ExitRules(stop_atr=p["atr_stop"], max_hold_bars=hold(), sizing="risk"')
    with pytest.raises(StrategyError, match=rf"strategy 'rsi_mine' raised: {helper.resolve()}:2: KeyError: 'x'"):
        threadx.backtest(frame, "rsi_mine")
    helper.write_text("X = 1\nraise ValueError('at import')\n")
    assert user.load_errors()["rsi_mine.py"] == f"{helper.resolve()}:2: ValueError: at import"


def test_folder_modules_never_hide_installed_ones_nor_lend_their_strategies(rsi: Path, frame, strategy_dir) -> None:
    """A ``json.py`` or ``numpy.py`` of the folder hid the real module from every strategy that
    imported it; a strategy imported from another file became a strategy of the importing file
    too (a name clash blamed on the wrong file)."""
    (strategy_dir / "json.py").write_text("x = 1\n")
    (strategy_dir / "numpy.py").write_text("x = 1\n")
    _edit(rsi, "import numpy as np\n", "import numpy as np\nimport json\nassert json.loads('1') == 1\n")
    assert threadx.backtest(frame, "rsi_mine").metrics["n_trades"] > 0
    assert threadx.get_strategy("rsi_mine").origin.helpers == ()
    assert "declares no strategy" in user.load_errors()["numpy.py"]  # imported by none: listed as before
    other = strategy_dir / "rsi_other.py"
    other.write_text("from dataclasses import replace\nfrom rsi_mine import SPEC as MINE\n"
                     "SPEC = replace(MINE, name='rsi_other')\n")
    specs = threadx.strategies()
    assert specs["rsi_other"].origin.path == str(other.resolve())
    assert specs["rsi_mine"].origin.path == str(rsi.resolve())  # still its own file's
    assert not {k: v for k, v in user.load_errors().items() if k not in ("json.py", "numpy.py")}


def test_imports_a_folder_module_cannot_serve_are_said_plainly(rsi: Path, frame, strategy_dir) -> None:
    helper = strategy_dir / "_late.py"
    helper.write_text("HOLD = 3\n")
    _edit(rsi, 'def exits(p):\n', 'def exits(p):\n    from _late import HOLD\n')
    with pytest.raises(StrategyError, match=r"_late.py is imported inside a function: import the strategies "
                                            r"folder's modules at the top of the file"):
        threadx.backtest(frame, "rsi_mine")
    _edit(rsi, '    from _late import HOLD\n', '    from . import _late\n')
    with pytest.raises(StrategyError, match=r"a relative import \(from \. import \.\.\.\) in a strategies-folder "
                                            r"file: import the folder's module by its plain name \(import _late\)"):
        threadx.backtest(frame, "rsi_mine")


def test_a_bare_folder_on_the_path_does_not_hide_a_folder_module(rsi: Path, frame, strategy_dir, tmp_path,
                                                                 monkeypatch) -> None:
    """The app runs from the repo root, on sys.path with its data/ and results/ folders: a helper
    named data.py was served as that empty folder (a namespace package), "has no attribute"."""
    (tmp_path / "root" / "data").mkdir(parents=True)
    monkeypatch.syspath_prepend(str(tmp_path / "root"))
    (strategy_dir / "data.py").write_text("HOLD = 3\n")
    _edit(rsi, "import numpy as np\n", "import numpy as np\nimport data as shared\n")
    _edit(rsi, *HOLD_EXITS)
    assert threadx.backtest(frame, "rsi_mine").trades["bars_held"].max() == 3


def test_a_function_importing_a_folder_module_fails_alike_when_rebuilt(rsi: Path, strategy_dir) -> None:
    """At load it was the clear error; rebuilt from a sweep's task it fell to Python's import (with
    the folder on sys.path: the file on disk, outside the code hash)."""
    (strategy_dir / "_late.py").write_text("HOLD = 3\n")
    _edit(rsi, 'def exits(p):\n', 'def exits(p):\n    from _late import HOLD\n')
    spec = threadx.get_strategy("rsi_mine")
    with pytest.raises(ImportError, match="_late.py is imported inside a function"):
        spec.exits(spec.defaults())
    task = SweepTask.of(spec, SPACE, options_from())
    _edit(rsi, "description=", "description='edited ' +")  # the task's text is rebuilt now, not the file's
    with pytest.raises(ImportError, match="_late is not imported at the top of the file"):
        task_strategy(task).exits(spec.defaults())


def test_a_file_whose_only_strategy_is_imported_is_told_so(strategy_dir, rsi) -> None:
    (strategy_dir / "borrow.py").write_text("from rsi_mine import SPEC\n")
    assert ("declares no strategy of its own (rsi_mine is another file's: make this file's with "
            "dataclasses.replace(SPEC, name=...))") in user.load_errors()["borrow.py"]


def test_a_folder_module_that_cannot_be_read_is_named_and_its_fix_reloads(rsi: Path, frame, strategy_dir) -> None:
    helper = strategy_dir / "shared.py"
    helper.write_bytes("HOLD = 3  # caf\u00e9\n".encode("cp1252"))
    _edit(rsi, "import numpy as np\n", "import numpy as np\nimport shared\n")
    _edit(rsi, *HOLD_EXITS)
    assert f"ImportError: {helper.resolve()} cannot be read as Python source text" in user.load_errors()["rsi_mine.py"]
    helper.write_text("HOLD = 3  # caf\u00e9\n", encoding="utf-8")  # fixed: the strategy loads (it stayed broken)
    assert threadx.backtest(frame, "rsi_mine").trades["bars_held"].max() == 3 and not user.load_errors()


@pytest.mark.parametrize("importing", ["from numba import njit", "from numba.core.decorators import njit"])
def test_numba_functions_of_folder_modules_never_run_another_versions_cached_code(rsi: Path, frame,
                                                                                  strategy_dir, importing) -> None:
    """``@njit(cache=True)`` found machine code by the file's stamp and bytecode: an edited
    constant of a helper, or a worker running the text its sweep began with, got the other's.
    (Imported from numba.core.decorators, it still wrote its code to the disk cache.)"""
    import os

    helper = strategy_dir / "_nb.py"
    helper.write_text(f"{importing}\n@njit(cache=True)\ndef hold():\n    return 3\nHOLD = hold()\n")
    _edit(rsi, "import numpy as np\n", "import numpy as np\nimport _nb\n")
    _edit(rsi, 'ExitRules(stop_atr=p["atr_stop"], sizing="risk"',
          'ExitRules(stop_atr=p["atr_stop"], max_hold_bars=_nb.hold(), sizing="risk"')
    spec = threadx.get_strategy("rsi_mine")
    task = SweepTask.of(spec, SPACE, options_from())
    assert threadx.backtest(frame, "rsi_mine").trades["bars_held"].max() == 3
    helper.write_text(helper.read_text().replace("return 3", "return 5"))
    assert threadx.backtest(frame, "rsi_mine").trades["bars_held"].max() == 5
    assert task_strategy(task).exits({**spec.defaults()}).max_hold_bars == 3  # the text the sweep began with
    cached = [name for _, _, names in os.walk(os.environ["NUMBA_CACHE_DIR"]) for name in names if "_nb." in name]
    assert cached == []


def test_a_resume_with_changed_code_is_refused(rsi: Path, frame, tmp_path) -> None:
    first = _sweep(frame, tmp_path, "r1", executor="inline")
    _edit(rsi, '"oversold", "float", 30.0', '"oversold", "float", 31.0')
    with pytest.raises(ThreadXError, match=r"run r1 was computed with other code of strategy 'rsi_mine' "
                                           r"\(hash \w{8} then, \w{8} now\)"):
        _sweep(frame, tmp_path, "r1", executor="inline")
    # the stored rows are untouched, and the validation of the stored run refuses to re-run combos
    assert len(ResultStore(tmp_path).load("r1").results) == len(first.results)
    with pytest.raises(ParamError, match="computed with other code of strategy 'rsi_mine'"):
        validate_sweep("r1", frame, store=ResultStore(tmp_path), n=100)


def test_walk_forward_and_validation_of_a_user_strategy(rsi: Path, frame, tmp_path) -> None:
    wf = threadx.walk_forward(frame, "rsi_mine", SPACE, is_bars=1500, oos_bars=700, sampler="grid",
                              objective="total_return", min_trades=1, bank=IndicatorBank(disk=False))
    assert wf.config["strategy_code"] == threadx.get_strategy("rsi_mine").code_hash
    assert len(wf.windows) >= 3
    _sweep(frame, tmp_path, "v", executor="inline", block_returns=8)
    report = validate_sweep("v", frame, store=ResultStore(tmp_path), n=100, S=8)
    assert report.grade is not None


def test_a_walk_forward_is_validated_with_the_code_it_ran_whatever_the_file_holds_now(rsi: Path, frame) -> None:
    """The file saved half-edited while a walk-forward ran: its validation looked the strategy
    up by name, failed, and the CLI lost the finished walk-forward (nothing printed or stored)."""
    from threadx.validation.report import validate_walk_forward

    wf = threadx.walk_forward(frame, "rsi_mine", SPACE, is_bars=1500, oos_bars=700, sampler="grid",
                              objective="total_return", min_trades=1, bank=IndicatorBank(disk=False))
    before = validate_walk_forward(wf, n=100, S=8)
    _edit(rsi, "def levels(ind, p):", "def levels(ind, p)")  # a syntax error: rsi_mine cannot load now
    with pytest.raises(ThreadXError):
        threadx.get_strategy("rsi_mine")
    after = validate_walk_forward(wf, n=100, S=8)
    assert after.grade.score == before.grade.score and after.dsr.n_trials == before.dsr.n_trials


def test_a_file_saved_with_a_byte_order_mark_or_a_coding_line_loads(strategy_dir: Path, frame) -> None:
    """"UTF-8 with BOM" (Notepad's default on some Windows versions) read "SyntaxError: invalid
    non-printable character U+FEFF"; a latin-1 file with its coding line "cannot be read"."""
    text = new_strategy_file("rsi_plain").read_text()
    (strategy_dir / "rsi_plain.py").unlink()
    (strategy_dir / "bom.py").write_bytes(b"\xef\xbb\xbf" + text.replace('"rsi_plain"', '"bom"').encode())
    (strategy_dir / "latin.py").write_bytes(("# -*- coding: latin-1 -*-\n# café\n" + text.replace(
        '"rsi_plain"', '"latin"')).encode("latin-1"))
    assert user.load_errors() == {}
    assert threadx.backtest(frame, "bom").metrics["n_trades"] > 0
    assert threadx.backtest(frame, "latin").metrics["n_trades"] == threadx.backtest(frame, "bom").metrics["n_trades"]


def test_a_syntax_error_names_its_line_and_the_rest_keeps_working(strategy_dir: Path, frame) -> None:
    good = new_strategy_file("rsi_good")
    broken = strategy_dir / "broken.py"
    broken.write_text(good.read_text().replace('"rsi_good"', '"broken"').replace("def levels(ind, p):",
                                                                                  "def levels(ind, p)"))
    line = broken.read_text().splitlines().index("def levels(ind, p)") + 1
    assert user.load_errors() == {"broken.py": f"{broken.resolve()}:{line}: SyntaxError: expected ':'"}
    names = threadx.strategies()
    assert "broken" not in names and "rsi_good" in names and "bb_atr" in names
    assert threadx.backtest(frame, "rsi_good").metrics["n_trades"] > 0
    with pytest.raises(StrategyError, match=rf"strategy 'broken' cannot be loaded: .*broken.py:{line}: SyntaxError"):
        threadx.get_strategy("broken")
    broken.write_text(broken.read_text().replace("def levels(ind, p)\n", "def levels(ind, p):\n"))
    assert "broken" in threadx.strategies() and not user.load_errors()  # fixed: back at once


def test_an_error_in_the_users_code_names_its_file_and_line(rsi: Path, frame, tmp_path) -> None:
    _edit(rsi, '    rsi = ind["rsi"]["value"]\n', '    rsi = ind["rsi"]["value"]\n    rsi = rsi + {}["x"]\n')
    line = rsi.read_text().splitlines().index('    rsi = rsi + {}["x"]') + 1
    where = f"{rsi.resolve()}:{line}"
    with pytest.raises(StrategyError, match=rf"strategy 'rsi_mine' raised: {where}: KeyError: 'x'"):
        threadx.backtest(frame, "rsi_mine")
    run = _sweep(frame, tmp_path, "err", executor="inline")
    assert set(run.results["error"]) == {f"{where}: KeyError: 'x'"}


@pytest.mark.parametrize("body, why", [
    ("x = 1\n", "declares no strategy"),
    ("raise RuntimeError('boom')\n", "1: RuntimeError: boom"),
    ("from threadx.strategy import Param\nP = Param('a', 'int', 1, feeds='sizing')\n",
     "2: ParamError: param a: unknown role 'sizing'"),
    # declarations the pages could not show (a TypeError on 7 of the 9 pages, the file not named)
    ("from threadx.strategy import Param\nP = Param('a', 'choice', 10, choices=(10, 12))\n",
     "2: ParamError: param a: choices must be lower-case texts, got (10, 12)"),
    ("from threadx.strategy import Param\nP = Param('a', 'int', 10, '2', 500, 1)\n",
     "2: ParamError: param a: min must be a finite number, got '2'"),
    ("from threadx.strategy import Param\nP = Param('a', 'complex', 1)\n",
     "2: ParamError: param a: kind must be one of int, float, bool, choice, got 'complex'"),
    # optimisation ranges that gave an empty or endless grid, or values every sweep refused (they loaded)
    ("from threadx.strategy import Param\nP = Param('a', 'int', 10, 2, 200, 1, opt_range=(28, 7, 7))\n",
     "2: ParamError: param a: opt_range must be (low, high, step) with low <= high and step > 0, got (28, 7, 7)"),
    ("from threadx.strategy import Param\nP = Param('a', 'float', 1.0, 0, 5, 0.5, opt_range=(1, 4, 0))\n",
     "2: ParamError: param a: opt_range must be (low, high, step) with low <= high and step > 0, got (1, 4, 0)"),
    ("from threadx.strategy import Param\nP = Param('a', 'int', 10, 2, 200, 1, opt_range=(1, 500, 7))\n",
     "2: ParamError: param a: opt_range (1, 500, 7) must lie within min 2 and max 200"),
    ("from threadx.strategy import Param\nP = Param('a', 'int', 10, 2, 200, 1, opt_range=(5, 20, 2.5))\n",
     "2: ParamError: param a: an int param's opt_range must be whole numbers, got (5, 20, 2.5)"),
])
def test_files_that_cannot_load(strategy_dir: Path, body: str, why: str) -> None:
    (strategy_dir / "bad.py").write_text(body)
    assert why in user.load_errors()["bad.py"]
    assert "ma_crossover" in threadx.strategies()


def test_a_param_declared_twice_is_the_files_error(strategy_dir: Path) -> None:
    """The second declaration replaced the first's value in every param set, without a word."""
    text = TEMPLATE.replace("__NAME__", "twice").replace(
        '        Param("oversold"', '        Param("rsi_period", "int", 14, 2, 200, 1),\n        Param("oversold"')
    (strategy_dir / "twice.py").write_text(text)
    assert "ParamError: strategy 'twice': param 'rsi_period' is declared twice" in user.load_errors()["twice.py"]
    assert "twice" not in threadx.strategies()


def test_a_strategy_name_that_is_no_text_is_the_files_error(strategy_dir: Path) -> None:
    """``name=123`` raised a TypeError out of the loader, on every page that lists strategies."""
    (strategy_dir / "numbered.py").write_text(TEMPLATE.replace('"__NAME__"', "123"))
    (strategy_dir / "listed.py").write_text(TEMPLATE.replace('"__NAME__"', '["x"]'))  # (unhashable)
    assert "invalid strategy name 123" in user.load_errors()["numbered.py"]
    assert "invalid strategy name ['x']" in user.load_errors()["listed.py"]
    assert "ma_crossover" in threadx.strategies()


def test_names_a_builtin_or_another_file_holds_are_refused(strategy_dir: Path) -> None:
    new_strategy_file("mine")
    text = (strategy_dir / "mine.py").read_text()
    (strategy_dir / "z_copy.py").write_text(text)  # the same name in a later file
    (strategy_dir / "a_builtin.py").write_text(text.replace('name="mine"', 'name="bb_atr"'))
    errors = user.load_errors()
    # neither file keeps the name: a copy saved as a_experiment.py (first in name order) silently
    # ran in place of the original, which was the one listed as broken
    assert "strategy name 'mine' is also declared in z_copy.py: rename one" in errors["mine.py"]
    assert "strategy name 'mine' is also declared in mine.py: rename one" in errors["z_copy.py"]
    with pytest.raises(StrategyError, match="strategy 'mine' cannot be loaded: .*also declared in"):
        threadx.get_strategy("mine")
    assert "strategy name 'bb_atr' is a built-in strategy; rename it" in errors["a_builtin.py"]
    assert threadx.get_strategy("bb_atr").origin is None  # the built-in still answers
    (strategy_dir / "z_copy.py").unlink()
    assert threadx.get_strategy("mine").origin.path.endswith("mine.py")


def test_a_name_declared_twice_in_one_file_is_its_error(strategy_dir: Path) -> None:
    """A second spec of the same name (dataclasses.replace with other defaults) was dropped without a word."""
    path = new_strategy_file("twin")
    path.write_text(path.read_text() + "\n\nfrom dataclasses import replace as _r\nTIGHT = _r(SPEC, description='x')\n"
                    "ALIAS = SPEC\n")
    assert "strategy name 'twin' is declared twice in this file (SPEC and TIGHT, which differ)" in \
        user.load_errors()["twin.py"]


def test_an_unknown_name_says_which_files_cannot_load(strategy_dir: Path) -> None:
    """A file named my_rsi_v2.py declaring rsi_fast with a syntax error read only "unknown strategy"."""
    path = new_strategy_file("rsi_fast")
    broken = strategy_dir / "my_rsi_v2.py"
    broken.write_text(path.read_text().replace("def levels(ind, p):", "def levels(ind, p)"))
    path.unlink()
    with pytest.raises(ParamError, match=r"unknown strategy 'rsi_fast'; available: .*; 1 file\(s\) of the strategies "
                                         r"folder cannot be loaded, e.g. .*my_rsi_v2.py:\d+: SyntaxError"):
        threadx.get_strategy("rsi_fast")


def test_bad_defaults_are_reported_at_load(strategy_dir: Path) -> None:
    new_strategy_file("mine")
    path = strategy_dir / "mine.py"
    _edit(path, 'Param("rsi_period", "int", 14, 2, 200', 'Param("rsi_period", "int", 500, 2, 200')
    assert "rsi_period=500 is above its maximum 200" in user.load_errors()["mine.py"]


def test_new_from_a_builtin_gives_the_builtins_results(strategy_dir: Path, frame) -> None:
    new_strategy_file("my_bb", from_builtin="bb_atr")
    mine, builtin = threadx.backtest(frame, "my_bb"), threadx.backtest(frame, "bb_atr")
    assert mine.metrics == builtin.metrics
    with pytest.raises(ParamError, match="exists already"):
        new_strategy_file("my_bb")
    with pytest.raises(ParamError, match="a strategy named 'ma_crossover' exists already"):
        new_strategy_file("ma_crossover")
    with pytest.raises(ParamError, match="invalid strategy name '../evil'"):
        new_strategy_file("../evil")


def test_new_from_a_builtin_of_a_module_declaring_several_renames_them_all(strategy_dir: Path, frame) -> None:
    """grids.py declares three built-ins: a copy of one kept the other two names, which the
    loader refused ("... is a built-in strategy"), the file listed as not loaded."""
    path = new_strategy_file("my_grid", from_builtin="grid_atr")
    assert user.load_errors() == {}
    specs = threadx.strategies()
    assert {"my_grid", "my_grid_envelope_dca", "my_grid_envelope_dca_short"} <= set(specs)
    assert "renamed my_grid_envelope_dca, my_grid_envelope_dca_short" in path.read_text()
    assert threadx.backtest(frame, "my_grid").metrics == threadx.backtest(frame, "grid_atr").metrics
    new_strategy_file("z_envelope_dca")
    with pytest.raises(ParamError, match="'z_envelope_dca', a strategy that exists already"):
        new_strategy_file("z", from_builtin="grid_atr")  # a copy's name is taken
    with pytest.raises(ParamError, match="invalid strategy name"):
        new_strategy_file("g" * 60, from_builtin="grid_atr")  # a copy's name past 64 characters


def test_the_cli_new_and_strategies(strategy_dir: Path, capsys) -> None:
    from threadx.cli import main

    assert main(["strategy", "new", "cli_rsi"]) == 0
    assert (strategy_dir / "cli_rsi.py").exists()
    (strategy_dir / "oops.py").write_text("def (:\n")
    assert main(["strategies"]) == 0
    out = capsys.readouterr()
    assert f"cli_rsi.py:{NAME_LINE}]" in out.out
    assert "not loaded: oops.py:" in out.err and "oops.py:1: SyntaxError" in out.err
    assert main(["strategy", "new", "cli_rsi"]) == 2
    assert "exists already" in capsys.readouterr().err


def test_the_cli_check_flags_a_peek_and_passes_the_template(strategy_dir: Path, capsys) -> None:
    from threadx.cli import main
    from threadx.checks.store import last_report

    new_strategy_file("honest")
    assert main(["strategy", "check", "honest", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and {r["name"] for r in report["results"]} == {
        "lookahead", "signals", "determinism", "accounting", "roles", "speed"}
    stored, current = last_report(threadx.get_strategy("honest"))
    assert stored["passed"] and current

    peek = new_strategy_file("peeks")
    # the signal of bar t reads the RSI of bar t+1: the next close
    _edit(peek, '    rsi = ind["rsi"]["value"]\n', '    rsi = np.append(ind["rsi"]["value"][1:], np.nan)\n')
    assert main(["strategy", "check", "peeks", "--only", "lookahead"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  lookahead" in out and "look-ahead in 4 of 4 param sets: first at bar" in out
    assert "defaults: cut at bar" in out and "first difference at bar" in out
    assert main(["strategy", "check", "peeks", "--only", "nonsense"]) == 2
    _edit(peek, "import numpy as np", "import numpy as np\n# edited")
    assert last_report(threadx.get_strategy("peeks"))[1] is False  # the stored report is of other code


PYRAMID = '''"""A breakout that adds on strength and takes half off at the far band: the order vocabulary."""
import numpy as np

from threadx.strategy import (SIG_ADD_LONG, SIG_ENTER_LONG, SIG_EXIT_LONG, ExitRules, Levels, Param,
                              StrategySpec)


def _indicators(p):
    return {"bb": ("bollinger", {"period": p["period"], "std": 2.0}), "atr": ("atr", {"period": 14})}


def _signals(bars, ind, p):
    close, mid, upper = bars.close, ind["bb"]["mid"], ind["bb"]["upper"]
    sig = np.zeros(len(close), np.uint8)
    above = close > mid
    cross = np.zeros(len(close), bool)
    cross[1:] = above[1:] & ~above[:-1]
    sig[cross] |= SIG_ENTER_LONG
    up = np.zeros(len(close), bool)
    up[1:] = (close[1:] > upper[1:]) & (close[:-1] <= upper[:-1])
    sig[up] |= SIG_ADD_LONG
    down = np.zeros(len(close), bool)
    down[1:] = (close[1:] < mid[1:]) & (close[:-1] >= mid[:-1])
    sig[down] |= SIG_EXIT_LONG
    return sig


def _exits(p):
    return ExitRules(stop_atr=2.0, stop_band=0.5, sizing="risk", risk_per_trade=0.01, max_legs=3, add_scale=0.5,
                     partial_tp_band=True, reduce_fraction=0.5, arm_exits_r=p["arm_r"])


def _levels(ind, p):
    bb = ind["bb"]
    return Levels(atr=ind["atr"]["value"], band_lo=bb["lower"], band_mid=bb["mid"], band_hi=bb["upper"])


SPEC = StrategySpec(
    name="pyramid_mine",
    description="enter on a close back above the mid band, add on closes through the upper band",
    params=(Param("period", "int", 20, 5, 100, 1, feeds=("indicators", "signals", "levels")),
            Param("arm_r", "float", 0.5, 0.0, 5.0, 0.5, feeds="exits")),
    indicators=_indicators, signals=_signals, levels=_levels, exits=_exits,
)
'''


def test_a_user_strategy_uses_the_order_vocabulary(strategy_dir: Path, frame, capsys) -> None:
    from threadx.cli import main

    (strategy_dir / "pyramid_mine.py").write_text(PYRAMID)
    result = threadx.backtest(frame, "pyramid_mine")
    t, m = result.trades, result.metrics
    assert m["n_cycles"] > 5 and m["n_trades"] > m["n_cycles"]
    assert (t.groupby("cycle")["entry_i"].nunique() > 1).any()  # legs added
    assert (t["exit_reason"] == "take_profit").any()  # the partial exit at the far band
    assert t["pnl"].sum() == pytest.approx(m["final_equity"] - 10_000.0, abs=1e-6)
    run = threadx.sweep(frame, "pyramid_mine", {"period": [15, 20, 30], "arm_r": [0.0, 1.0]},
                        store=strategy_dir / "runs", run_id="p", bank=IndicatorBank(disk=False))
    row = run.results.set_index("combo_id").loc[run.top(1).iloc[0]["combo_id"]]
    again = threadx.backtest(frame, "pyramid_mine", run.best_params())
    assert row["total_return"] == again.metrics["total_return"]
    assert main(["strategy", "check", "pyramid_mine", "--only", "lookahead", "--only", "accounting"]) == 0, \
        capsys.readouterr().out


def test_a_file_that_exits_is_not_loaded_and_the_rest_keeps_working(strategy_dir: Path, frame) -> None:
    """sys.exit() at import (or in its code) used to end the whole process with no word."""
    new_strategy_file("rsi_good")
    (strategy_dir / "leaves.py").write_text("import sys\nsys.exit(3)\n")
    assert user.load_errors() == {"leaves.py": f"{(strategy_dir / 'leaves.py').resolve()}:2: SystemExit: 3"}
    assert "rsi_good" in threadx.strategies()
    assert threadx.backtest(frame, "rsi_good").metrics["n_trades"] > 0


@pytest.mark.parametrize("body, match", [
    ("return np.zeros(len(bars.close), np.int64) - 1", r"returned flags outside 0..255 \(from -1 to -1\)"),
    ("return np.full(len(bars.close), np.nan)", "must return uint8 flags .* got float64 values"),
    ("return None", "must return uint8 flags .* got None"),
])
def test_signals_that_are_not_flags_are_refused(rsi: Path, frame, tmp_path, body, match) -> None:
    """A -1 became 255 (every flag on every bar: 926 trades), a NaN 0 with a warning."""
    text = rsi.read_text()
    start = text.index("def signals(")
    header_end = text.index("\n", start) + 1
    rsi.write_text(text[:header_end] + f"    {body}\n" + text[header_end:])
    with pytest.raises(ParamError, match=f"rsi_mine.signals {match}"):
        threadx.backtest(frame, "rsi_mine")
    run = _sweep(frame, tmp_path, "flags", executor="inline")
    assert (run.results["status"] == "failed").all()


@pytest.mark.parametrize("old, new", [
    # a buffer filled again on each call and handed back: a sweep keeps every signal array
    ('    sig = np.zeros(len(rsi), dtype=np.uint8)\n',
     '    sig = _BUFFER.setdefault(len(rsi), np.zeros(len(rsi), dtype=np.uint8))\n    sig[:] = 0\n'),
    # an indicator output set anew (not written into: the arrays are read-only)
    ('    rsi = ind["rsi"]["value"]\n', '    ind["rsi"]["value"] = ind["rsi"]["value"] + 1.0\n    rsi = ind["rsi"]["value"]\n'),
    # the params edited in place
    ('    rsi = ind["rsi"]["value"]\n', '    p["oversold"] = p["oversold"] - 2\n    rsi = ind["rsi"]["value"]\n'),
])
def test_strategy_code_that_keeps_or_edits_what_it_is_handed_gives_sweep_rows_equal_to_backtests(
        rsi: Path, frame, tmp_path, old, new) -> None:
    """Each call gets its own params and indicator dicts, and its flags are copied: in each
    case some sweep rows differed from ``threadx.backtest`` of their params (the indicator
    entry and the edited params leaked into later combos), and a backtest reported the edited
    params, which gave other numbers when run again."""
    _edit(rsi, old, new)
    rsi.write_text(rsi.read_text().replace("\ndef signals(", "\n_BUFFER = {}\n\n\ndef signals(", 1))
    for executor in ("inline", "local"):
        run = _sweep(frame, tmp_path, f"kept-{executor}", executor=executor, workers=1 if executor == "inline" else 2)
        for _, row in run.results.iterrows():
            params = {"rsi_period": int(row["rsi_period"]), "oversold": float(row["oversold"])}
            result = threadx.backtest(frame, "rsi_mine", params)
            assert result.params["oversold"] == params["oversold"]
            assert (row["total_return"], row["n_trades"]) == (result.metrics["total_return"],
                                                             result.metrics["n_trades"]), (executor, params)


def test_the_cli_shows_why_combos_failed_and_fails_a_run_whose_every_combo_failed(rsi: Path, frame, tmp_path,
                                                                                   capsys) -> None:
    """A sweep whose 5 combos all raised printed "5/5 combos, 5 failed" and exited 0: the error
    text, stored in every failed row, was shown by no command."""
    from threadx.cli import main
    from threadx.data.io import write_ohlcv

    write_ohlcv(frame, tmp_path / "X_USDT-1h.parquet")
    _edit(rsi, '    sig = np.zeros(len(rsi), dtype=np.uint8)',
          '    sig = np.zeros(len(rsi), dtype=np.uint8)\n    if p["oversold"] >= 28:\n        raise KeyError("missing")')
    line = rsi.read_text().splitlines().index('        raise KeyError("missing")') + 1
    argv = ["sweep", "--strategy", "rsi_mine", "--data", str(tmp_path / "X_USDT-1h.parquet"),
            "--store", str(tmp_path / "runs"), "--min-trades", "0"]
    assert main([*argv, "--param", "oversold=24:30:2", "--run-id", "some"]) == 0  # 2 of 4 fail
    out = capsys.readouterr().out
    assert f"failed (2 combos): {rsi.resolve()}:{line}: KeyError: 'missing'" in out, out
    assert main([*argv, "--param", "oversold=28:32:2", "--run-id", "all"]) == 1
    assert f"failed (3 combos): {rsi.resolve()}:{line}: KeyError: 'missing'" in capsys.readouterr().out
    assert main(["runs", "show", "all", "--store", str(tmp_path / "runs")]) == 1


def test_a_strategy_calling_sys_exit_fails_its_combos_and_its_check_not_the_process(rsi: Path, frame, tmp_path):
    from threadx.checks.strategy import check_strategy

    text = rsi.read_text()
    start = text.index("def signals(")
    header_end = text.index("\n", start) + 1
    rsi.write_text(text[:header_end] + "    import sys\n    sys.exit(4)\n" + text[header_end:])
    with pytest.raises(StrategyError, match=r"strategy 'rsi_mine' raised: .*SystemExit: 4"):
        threadx.backtest(frame, "rsi_mine")
    run = _sweep(frame, tmp_path, "exit", executor="inline")
    assert (run.results["status"] == "failed").all() and "SystemExit: 4" in run.results["error"].iloc[0]
    report = check_strategy(threadx.get_strategy("rsi_mine"), frame, combos=1, checks=("determinism",))
    assert not report.passed and "SystemExit: 4" in report.results[0].summary


def test_a_signal_rule_calling_sys_exit_is_redone_by_signals_and_fails_its_check(rsi: Path, frame, tmp_path):
    """A user's rule (here plain Python) that exits: the sweep redoes its combos through
    signals() (the same results as without the rule), the roles check names the exit."""
    from threadx.checks.strategy import check_strategy

    before = _returns(_sweep(frame, tmp_path, "plain", executor="inline"))
    rsi.write_text(rsi.read_text() + (
        "\n\nfrom dataclasses import replace as _replace\nfrom threadx.strategy import SignalRule\n\n\n"
        "def _rule(lines, rows, values, out):\n    import sys\n    sys.exit(5)\n\n\n"
        "SPEC = _replace(SPEC, signal_rule=SignalRule(lines=(('rsi', 'value'),), params=('oversold', 'exit_level'), "
        "many=_rule, signals=signals))\n"))
    assert threadx.get_strategy("rsi_mine").signal_rule is not None
    run = _sweep(frame, tmp_path, "ruled", executor="inline")
    assert (run.results["status"] == "ok").all()
    np.testing.assert_array_equal(_returns(run), before)
    roles = check_strategy(threadx.get_strategy("rsi_mine"), frame, combos=1, checks=("roles",)).result("roles")
    assert not roles.passed and roles.summary.startswith("signal_rule differs from signals in ")
    assert any("SystemExit: 5" in f for f in roles.data["failures"]), roles.data["failures"]


def test_a_constraint_that_raises_on_some_combos_is_a_warning_of_the_run(rsi: Path, frame, tmp_path, capsys) -> None:
    """A constraint raising ZeroDivisionError for oversold=29 left those combos out of the sweep
    with nothing said (a backtest of one named the error); the CLI's failure lines also hid the
    errors past the third kind."""
    from threadx.cli import main

    rsi.write_text(rsi.read_text() + (
        "\n\nfrom dataclasses import replace as _replace\nfrom threadx.strategy import Constraint\n\n"
        "SPEC = _replace(SPEC, constraints=(Constraint('oversold != 29', "
        "lambda p: 1 / (p['oversold'] - 29) != 0),))\n"))
    run = _sweep(frame, tmp_path, "raising")
    assert 29.0 not in set(run.results["oversold"]) and len(run.results)
    assert any(w.startswith("constraint 'oversold != 29' raised ZeroDivisionError") and "left out as invalid" in w
               for w in run.warnings), run.warnings
    assert main(["runs", "show", "raising", "--store", str(tmp_path)]) == 0
    assert "warning: constraint 'oversold != 29' raised ZeroDivisionError" in capsys.readouterr().out


def test_runs_show_counts_the_failures_past_the_three_it_quotes(rsi: Path, frame, tmp_path, capsys) -> None:
    """`runs show` said "12 failed" and quoted three errors covering 9 combos: the others vanished."""
    from threadx.cli import main

    text = rsi.read_text()
    start = text.index("def signals(")
    header_end = text.index("\n", start) + 1
    rsi.write_text(text[:header_end] + "    raise ValueError(f\"period {p['rsi_period']}\")\n" + text[header_end:])
    run = _sweep(frame, tmp_path, "four-kinds", executor="inline")
    assert (run.results["status"] == "failed").all() and len(run.results) == 12
    assert main(["runs", "show", "four-kinds", "--store", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert out.count("failed (3 combos): ") == 3 and "failed (3 more combos): other errors" in out, out


@pytest.mark.parametrize("declared, space, moved", [
    ('feeds="exits"', {"exit_level": "50:70:5", "oversold": [30]}, r"exit_level=.*"),
    ("feeds=()", {"exit_level": "50:70:5", "oversold": [30]}, r"exit_level=.*"),
    # fixed at 65, not its default 55: a sweep computes a display-only value as its default, and
    # its guard looked at varied params only (every row labelled 65 held 55's results)
    ("feeds=()", {"oversold": "26:32:3", "exit_level": [65.0]}, r"exit_level=55.0 \(from 65.0, with oversold=26.0\)"),
])
def test_a_sweep_refuses_a_declaration_that_would_merge_combos_that_differ(rsi: Path, frame, tmp_path,
                                                                          declared, space, moved) -> None:
    """exit_level declared for the exits (or display-only) while signals() reads it: the sweep
    reused one signal array for every exit_level (24 of 30 rows wrong, no warning; the stored
    failed `strategy check` was not consulted). Refused before anything is stored."""
    _edit(rsi, 'description="exit: RSI crosses above this", feeds="signals"',
          f'description="exit: RSI crosses above this", {declared}')
    with pytest.raises(ParamError, match=rf"rsi_mine: {moved} changes the signals .* but does not declare "
                                         r"'signals': this sweep would merge combos that differ"):
        threadx.sweep(frame, "rsi_mine", space, store=tmp_path, run_id="lies", bank=IndicatorBank(disk=False))
    assert not list(tmp_path.glob("lies/part-*.parquet"))
    threadx.sweep(frame, "rsi_mine", {"oversold": "26:32:3"}, store=tmp_path, run_id="fine",
                  bank=IndicatorBank(disk=False))  # the params whose roles hold sweep as before


def test_a_wrong_role_past_a_threshold_is_refused_by_the_sweep_and_failed_by_the_check(rsi: Path, frame,
                                                                                      tmp_path) -> None:
    """atr_stop declared for the exits also filters entries above 5 (outside its optimisation
    range, inside its bounds): the check moved it one step and to its range's ends only (PASS),
    and the sweep one step from its first combo, so atr_stop 6..8 reused atr_stop 1's signals."""
    from threadx.checks.strategy import check_strategy

    _edit(rsi, '    sig = np.zeros(len(rsi), dtype=np.uint8)',
          '    sig = np.zeros(len(rsi), dtype=np.uint8)\n    rsi = rsi + (3.0 if p["atr_stop"] > 5 else 0.0)')
    with pytest.raises(ParamError, match=r"rsi_mine: atr_stop=8.0 \(from 1.0\) changes the signals"):
        threadx.sweep(frame, "rsi_mine", {"atr_stop": "1:8:1"}, store=tmp_path, run_id="past",
                      bank=IndicatorBank(disk=False))
    roles = check_strategy(threadx.get_strategy("rsi_mine"), frame, combos=1, checks=("roles",)).result("roles")
    assert not roles.passed and any("atr_stop=10.0" in f and "changes the signals" in f
                                    for f in roles.data["failures"]), roles.data["failures"]


def test_a_wrong_role_behind_a_switch_or_a_failing_first_combo_is_refused_by_the_sweep(rsi: Path, frame,
                                                                                     tmp_path) -> None:
    """exit_level declared for the exits reads the signals only with a switch on that the first
    combo has off; and a first combo that raises switched the guard off: every combo with the
    switch on shared one signal array (0 trades stored where a backtest makes 92)."""
    _edit(rsi, '    sig = np.zeros(len(rsi), dtype=np.uint8)',
          '    sig = np.zeros(len(rsi), dtype=np.uint8)\n    if p["rsi_period"] == 7:\n        raise ValueError("no 7")\n'
          '    rsi = rsi + (p["atr_stop"] if p["risk_per_trade"] > 0.015 else 0.0)')
    space = {"rsi_period": [7, 14], "risk_per_trade": [0.01, 0.02], "atr_stop": "1:3:1"}
    with pytest.raises(ParamError, match=r"rsi_mine: atr_stop=.* \(from .*, with rsi_period=14, "
                                         r"risk_per_trade=0.02\) changes the signals"):
        threadx.sweep(frame, "rsi_mine", space, store=tmp_path, run_id="switch", bank=IndicatorBank(disk=False))
    assert not list(tmp_path.glob("switch/part-*.parquet"))


def test_a_sweep_refuses_a_batch_signals_that_disagrees_with_signals(rsi: Path, frame, tmp_path) -> None:
    """A batch_signals that ignores its param table gave every combo of a batch its first row
    (26 of 35 rows wrong, inline, pool and GPU alike, no warning)."""
    _edit(rsi, "    exits=exits,\n)", "    exits=exits,\n    batch_signals=batch_signals,\n)")
    text = rsi.read_text().replace("\nSPEC = ", '''

def batch_signals(bars, ind, p, table):
    one = signals(bars, ind, p)  # the table ignored: every row the group's first param set's
    return np.repeat(one[None, :], len(next(iter(table.values()))), axis=0)


SPEC = ''', 1)
    rsi.write_text(text)
    with pytest.raises(ParamError, match=r"rsi_mine: rsi_mine.batch_signals .* differs from signals\(\) on \d+ bars: "
                                         "this sweep would store the batch's rows"):
        threadx.sweep(frame, "rsi_mine", {"oversold": "24:36:2", "exit_level": "50:70:5"}, store=tmp_path,
                      run_id="batch", bank=IndicatorBank(disk=False))


def test_a_rebuilt_strategy_asks_once_whether_a_call_time_import_is_installed(rsi: Path, monkeypatch) -> None:
    """``import json`` inside a strategy function of a strategy rebuilt in a worker searched
    sys.path (importlib's find_spec) on every call, that is for every combo."""
    _edit(rsi, 'def exits(p):\n', 'def exits(p):\n    import json  # noqa: F401\n')
    spec = threadx.get_strategy("rsi_mine")
    task = SweepTask.of(spec, SPACE, options_from())
    _edit(rsi, "description=", "description='edited ' +")  # the task's text is rebuilt now, not the file's
    rebuilt = task_strategy(task)
    assert rebuilt is not spec
    asked: list[str] = []
    real = user._installed
    monkeypatch.setattr(user, "_installed", lambda name, folder: asked.append(name) or real(name, folder))
    for _ in range(3):
        assert rebuilt.exits(spec.defaults()) == spec.exits(spec.defaults())
    assert asked == ["json"]


def test_a_walk_forward_names_its_failed_combos_and_their_error(rsi: Path, frame, capsys) -> None:
    """A combo that raised vanished from the report (7 combos in the header, 6 in the PBO) and the
    stored error lost its file:line."""
    _edit(rsi, '    sig = np.zeros(len(rsi), dtype=np.uint8)',
          '    sig = np.zeros(len(rsi), dtype=np.uint8)\n    if p["oversold"] == 32:\n        raise ValueError("boom")')
    line = rsi.read_text().splitlines().index('        raise ValueError("boom")') + 1
    wf = threadx.walk_forward(frame, "rsi_mine", {"oversold": [28, 30, 32]}, is_bars=1500, oos_bars=700,
                              sampler="grid", objective="total_return", min_trades=1, bank=IndicatorBank(disk=False))
    assert wf.failure_note() == (f"1 of 3 combos failed and were left out of the windows, the deflated Sharpe and the "
                                 f"PBO; the most frequent error (1): {rsi.resolve()}:{line}: ValueError: boom")


@pytest.mark.parametrize("declaration, why", [
    ('Param("fast period", "int", 5, 1, 9, 1)', "param name 'fast period' must be a Python identifier"),
    ('Param("k", "int", 5, 1, 9, 0)', "param k: step must be > 0, got 0"),
    ('Param("k", "float", 5.0, float("nan"), 9.0, 1.0)', "param k: min must be a finite number, got nan"),
    ('Param("k", "int", 5, 9, 1, 1)', "param k: min 9 is above max 1"),
    ('Param("k", "choice", "x", choices=("x", "x", "y"))', "param k: choices must be distinct"),
])
def test_declarations_that_break_later_are_refused_at_load(strategy_dir: Path, declaration, why) -> None:
    """These loaded, backtested and checked fine, then every sweep refused them (a result column's
    name), no CLI --param could reach them, or only their default failed."""
    path = new_strategy_file("decl")
    path.write_text(path.read_text().replace("    params=(\n", f"    params=(\n        {declaration},\n", 1))
    assert why in user.load_errors()["decl.py"], user.load_errors()


def test_a_param_named_as_a_result_column_is_refused_naming_the_file(strategy_dir: Path, frame) -> None:
    """A param named max_drawdown: every sweep refused it with "param names ['max_drawdown'] clash
    with result columns", naming no strategy nor file (the strategy package imports no engine
    module, so sweeps check it where they start)."""
    path = new_strategy_file("decl")
    path.write_text(path.read_text().replace("    params=(\n", '    params=(\n        Param("max_drawdown", "float", '
                                                                  '0.2, 0.0, 1.0, 0.1, feeds=()),\n', 1))
    with pytest.raises(ParamError, match=r"strategy decl \(.*decl.py:\d+\): param name\(s\) max_drawdown are result "
                                         r"columns of sweeps: rename them"):
        threadx.sweep(frame, "decl", {"rsi_period": [10, 14]}, executor="inline", bank=IndicatorBank(disk=False))



@pytest.mark.parametrize("where", ["file", "helper", "caught", "constraint"])
def test_a_loop_without_end_as_a_file_loads_is_its_load_error(strategy_dir, monkeypatch, where) -> None:
    """A file whose top-level code (or a folder module it imports, or a constraint checked on
    its defaults) never ends hung every lookup of the folder (the workstation's pages, a
    sweep's workers); it is now stopped after user.LOAD_LIMIT_S, again if the code catches it,
    reported as that file's error, and the others load."""
    monkeypatch.setattr(user, "LOAD_LIMIT_S", 0.5)
    new_strategy_file("rsi_fine")
    path = new_strategy_file("rsi_loops")
    loop = "n = 0\nwhile True:\n    n += 1\n"
    text = path.read_text()
    if where == "helper":
        (strategy_dir / "_slow.py").write_text(loop)
        path.write_text(text.replace("import numpy as np\n", "import numpy as np\nimport _slow\n", 1))
    elif where == "caught":  # a retry loop that catches everything
        path.write_text(text + "\nwhile True:\n    try:\n        sum(range(1000))\n    except Exception:\n        pass\n")
    elif where == "constraint":
        path.write_text(text.replace("def levels(ind, p):", "def _spins(p):\n    while True:\n        pass\n\n\n"
                                     "def levels(ind, p):", 1).replace(
            "    params=(", "    constraints=(Constraint('spins', _spins),),\n    params=(", 1).replace(
            "from threadx.strategy import ", "from threadx.strategy import Constraint, ", 1))
    else:
        path.write_text(text + "\n" + loop)
    started = time.monotonic()
    error = user.load_errors()["rsi_loops.py"]
    assert time.monotonic() - started < 20
    assert "LoadTimeout: the file's code ran for more than 0.5 s as it loaded and was stopped" in error, error
    assert {"helper": "_slow.py:", "constraint": "rsi_loops.py"}.get(where, "rsi_loops.py:") in error, error
    assert threadx.backtest(generate_synthetic("BTC_USDT", "1h", days=60, seed=3), "rsi_fine").metrics["n_trades"] >= 0
    time.sleep(0.5)  # no late LoadTimeout reaches this thread
