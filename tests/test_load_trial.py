"""The workstation's server runs a strategies-folder file in a process of its own before it
runs it (threadx.ui.user_code.trial_loads, set by app.py): a file whose top-level code crashes
its process or never returns is an error of that file, the server goes on, and every other
file loads as before."""
from __future__ import annotations

import os
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pytest

import threadx
from threadx.data.synthetic import generate_synthetic
from threadx.strategy import user
from threadx.strategy.scaffold import new_strategy_file
from threadx.ui import user_code


@pytest.fixture(autouse=True)
def trial():
    before = user.set_load_trial(user_code.trial_loads)
    yield
    user.set_load_trial(before)
    user_code.release()


def _strategy(name: str, tail: str = "") -> Path:
    """A strategy file ``name`` whose top level, after the template, runs ``tail`` and first
    notes the process it runs in (its pid, a line of ``<name>.pids`` beside the folder)."""
    path = new_strategy_file(name)
    pids = path.parent.parent / f"{name}.pids"
    note = f"\nimport os as _os\nwith open({str(pids)!r}, 'a') as _f:\n    _f.write(f'{{_os.getpid()}}\\n')\n"
    path.write_text(path.read_text() + note + tail)
    return path


def _pids(path: Path) -> list[int]:
    pids = path.parent.parent / f"{path.stem}.pids"
    return [int(line) for line in pids.read_text().split()] if pids.exists() else []


def test_a_file_that_crashes_its_process_is_its_error_and_never_runs_in_the_server(strategy_dir) -> None:
    good = _strategy("after_crash")  # (made first: making a file lists the folder)
    crash = _strategy("crash_at_load", "import ctypes\nctypes.string_at(0)  # a segmentation fault\n")
    line = crash.read_text().count("\n")  # the last line: the call that crashed
    errors = user.load_errors()
    assert errors["crash_at_load.py"].startswith(f"{crash.resolve()}:{line}: this file's code crashed the process "
                                                 "that loaded it first (SIGSEGV")
    assert "the workstation does not run it" in errors["crash_at_load.py"]
    ran = _pids(crash)
    assert len(ran) == 1 and ran[0] != os.getpid()  # run once, elsewhere
    # its trial and the server ran the good one; it works here
    assert os.getpid() in _pids(good) and len(_pids(good)) == 2
    assert threadx.backtest(generate_synthetic(days=30, seed=1), "after_crash").metrics["n_trades"] >= 0
    # nothing changed: no new trial (the crash is not retried on every lookup)
    user.load_errors()
    assert len(_pids(crash)) == 1
    # a fix loads it
    crash.write_text(crash.read_text().replace("ctypes.string_at(0)", "pass"))
    assert "crash_at_load" in user.strategies()
    assert os.getpid() in _pids(crash)


def test_a_call_that_cannot_be_stopped_at_load_is_stopped_in_its_process(strategy_dir, monkeypatch) -> None:
    monkeypatch.setattr(user, "LOAD_LIMIT_S", 1.0)
    monkeypatch.setattr(user_code, "TRIAL_GRACE_S", 4.0)
    hang = _strategy("hang_at_load", "import time\ntime.sleep(600)  # not stopped by the load limit's exception\n")
    good = _strategy("later_file")  # after it in name order: tried in the next process
    started = time.monotonic()
    errors = user.load_errors()
    assert time.monotonic() - started < 30
    line = hang.read_text().count("\n")
    assert errors["hang_at_load.py"].startswith(f"{hang.resolve()}:{line}: this file's code ran for more than 1 s as "
                                                "it loaded, in a call that could not be stopped")
    assert os.getpid() not in _pids(hang)
    assert "later_file" in user.strategies() and os.getpid() in _pids(good)


def test_a_file_that_fails_in_its_trial_reads_as_in_the_server_without_running_here(strategy_dir) -> None:
    failing = _strategy("fails_at_load", "raise ValueError('no data for this strategy')\n")
    exits = _strategy("exits_at_load", "import os\nos._exit(3)\n")
    with_trial = user.load_errors()
    assert os.getpid() not in _pids(failing)
    assert with_trial["exits_at_load.py"] == (
        f"{exits.resolve()}: this file's code ended the process that loaded it first (exit status 3: os._exit? a "
        "signal? out of memory?): the workstation does not run it")
    exits.unlink()
    user.set_load_trial(None)
    failing.write_text(failing.read_text() + "# edited: loaded again, here\n")
    here = user.load_errors()
    assert os.getpid() in _pids(failing)
    assert here["fails_at_load.py"] == with_trial["fails_at_load.py"]
    assert "ValueError: no data for this strategy" in here["fails_at_load.py"]


def test_a_crash_in_a_folder_module_names_it_and_its_fix_loads_the_file(strategy_dir) -> None:
    (strategy_dir / "_native.py").write_text("import ctypes\n\ndef boom():\n    ctypes.string_at(0)\n\nboom()\n")
    path = _strategy("uses_native", "import _native\n")
    error = user.load_errors()["uses_native.py"]
    assert error.startswith(f"{(strategy_dir / '_native.py').resolve()}:4: this file's code (in _native.py, which "
                            "it imports) crashed the process")
    (strategy_dir / "_native.py").write_text("def boom():\n    pass\n")
    assert "uses_native" in user.strategies()
    assert os.getpid() in _pids(path)


def test_without_a_trial_files_load_in_this_process(strategy_dir) -> None:
    user.set_load_trial(None)
    path = _strategy("plain_load")
    assert "plain_load" in user.strategies()
    assert _pids(path) == [os.getpid()]
    assert user.set_load_trial(None) is None


def test_a_linked_file_loads_with_the_folders_modules_as_without_a_trial(strategy_dir, tmp_path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    made = new_strategy_file("linked_one")
    target = elsewhere / "linked_one.py"
    target.write_text(made.read_text() + "\nfrom _shared_bit import VALUE\n")
    made.unlink()
    made.symlink_to(target)
    (strategy_dir / "_shared_bit.py").write_text("VALUE = 3\n")
    assert "linked_one" in user.strategies(), user.load_errors()


def test_a_crash_from_a_thread_started_at_load_is_that_files_not_the_one_loading_then(strategy_dir) -> None:
    """The crash comes while the next file loads: each file is then tried alone, and the one whose
    own process crashes is named; the other loads."""
    timer = _strategy("a_timer", "import ctypes, threading\nthreading.Timer(1.0, ctypes.string_at, (0,)).start()\n")
    slow = _strategy("b_slow", "import time\ntime.sleep(2.5)\n")
    errors = user.load_errors()
    assert set(errors) == {"a_timer.py"}
    assert errors["a_timer.py"].startswith(f"{timer.resolve()}: this file's code crashed the process that loaded it "
                                           "first (SIGSEGV: after its load, from a thread it started?")
    assert "b_slow" in user.strategies() and os.getpid() in _pids(slow) and os.getpid() not in _pids(timer)


def test_a_crashed_file_is_tried_again_on_a_change_of_the_folder_only(strategy_dir, monkeypatch) -> None:
    """Its process could not tell what it imports: any file of the folder added, changed or
    removed tries it again; an unreadable one or a file declaring no strategy changes nothing."""
    crash = _strategy("crash_again", "import ctypes\nctypes.string_at(0)\n")
    (strategy_dir / "notes.py").write_text("X = 1\n")  # declares no strategy: its error stays listed
    (strategy_dir / "latin.py").write_bytes(b"X = '\xe9'\n")  # not UTF-8: unreadable as source
    rounds = []
    trial_round = user_code._trial_round
    monkeypatch.setattr(user_code, "_trial_round", lambda files: rounds.append(files) or trial_round(files))
    errors = user.load_errors()
    assert {"crash_again.py", "notes.py", "latin.py"} <= set(errors) and "declares no strategy" in errors["notes.py"]
    tries, ran = len(rounds), len(_pids(crash))
    for _ in range(3):
        user.load_errors()
    assert len(rounds) == tries and len(_pids(crash)) == ran
    (strategy_dir / "_helper.py").write_text("Y = 2\n")  # a new module: perhaps the one it needs
    user.load_errors()
    assert len(rounds) == tries + 1 and [key for key, _, _ in rounds[-1]] == [str(crash)]
    assert len(_pids(crash)) == ran + 1 and os.getpid() not in _pids(crash)


def test_a_trial_that_cannot_start_is_each_files_error_and_lookups_go_on(strategy_dir, monkeypatch) -> None:
    path = _strategy("untried")

    def no_process(folder=None):
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(user_code, "_start", no_process)
    assert user.load_errors()["untried.py"] == (
        f"{path.resolve()}: this file could not be tried in a process of its own ([Errno 24] Too many open files), "
        "and the workstation does not run a strategies-folder file untried: it is tried again when the folder "
        "changes")
    assert "ma_crossover" in threadx.strategies() and not _pids(path)


def test_lines_a_trial_did_not_write_are_not_read_as_outcomes(tmp_path) -> None:
    (tmp_path / "trial.jsonl").write_text('{"start": "a.py"}\n{"done": "a.py", "outcome": {"error": null}}\n'
                                          'not json\n{"done": "b.py", "outcome": {}}\n[1]\n{"start": "c.py"}')
    assert user_code._trial_lines(tmp_path) == (["a.py"], {"a.py": {"error": None}})


def test_other_threads_are_not_held_while_a_file_is_tried(strategy_dir) -> None:
    """A file whose top level looped held the folder's lock for the trial's 30 s: a page opened in
    another tab meanwhile took 27.8 s. Other threads now get what was loaded before."""
    import threading

    first = _strategy("tried_first")
    assert "tried_first" in threadx.strategies()
    slow_started, release = threading.Event(), threading.Event()

    def slow_trial(files):
        slow_started.set()
        release.wait(20)
        return user_code.trial_loads(files)

    user.set_load_trial(slow_trial)
    first.write_text(first.read_text().replace('name="tried_first"', 'name="tried_again"'))
    saver = threading.Thread(target=threadx.strategies)  # the tab that saved the file: it waits for the trial
    saver.start()
    assert slow_started.wait(20)
    began = time.perf_counter()
    meanwhile = threadx.strategies()  # another tab
    waited = time.perf_counter() - began
    release.set()
    saver.join(30)
    assert waited < 5.0 and "tried_first" in meanwhile and "tried_again" not in meanwhile  # the previous load
    after = threadx.strategies()
    assert "tried_again" in after and "tried_first" not in after


def test_the_load_of_changed_files_is_announced_around_its_trial_and_its_run_here(strategy_dir) -> None:
    """Save of a file whose top level takes seconds left every page grey without a word: the
    sidebar's strategy list loaded it before the page reached its spinner. The announcer (the
    workstation's spinner) wraps both runs of the file, wherever the load starts."""
    seen: list[tuple[list[str], int]] = []

    @contextmanager
    def announce(names):
        seen.append((names, len(_pids(path))))
        yield
        seen.append((names, len(_pids(path))))

    path = _strategy("announced")
    user.set_load_announcer(announce)
    try:
        assert "announced" in threadx.strategies()
        assert seen == [(["announced.py"], 0), (["announced.py"], 2)]  # its trial's run and the server's, inside
        threadx.strategies()
        assert len(seen) == 2  # nothing changed: nothing announced
        assert isinstance(user_code.loading_spinner(["x.py"]), nullcontext)  # no page's script run here: nothing
    finally:
        user.set_load_announcer(None)


def test_an_announcer_that_fails_does_not_leave_the_folder_unloadable(strategy_dir) -> None:
    """The folder stayed "trying" when the announcer raised: no file of it loaded again until a restart."""
    @contextmanager
    def broken(names):
        raise RuntimeError("no page to show it on")
        yield  # (a generator)

    _strategy("first_try")
    user.set_load_announcer(broken)
    try:
        with pytest.raises(RuntimeError):
            threadx.strategies()
    finally:
        user.set_load_announcer(None)
    assert "first_try" in threadx.strategies()
