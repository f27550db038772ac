"""The Strategies page under Streamlit's AppTest, with a strategies folder of the test's own:
the built-ins listed with no setup, a strategy created from the template through the form,
a file broken (by hand and in the page's editor) then fixed without a restart, bad names
refused, a stored check report, the read-only mode of a server on a network address, and the
Check button (threadx.checks.strategy) and Open in Backtest."""
from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from apptest_helpers import ROOT, in_order, open_page, texts  # noqa: E402

from threadx.strategy.base import builtin_names  # noqa: E402

PAGE = "6_Strategies.py"


def listed(at: AppTest) -> list[str]:
    """The strategies of the page's table."""
    return list(at.dataframe[0].value["Strategy"])


def row(at: AppTest, name: str) -> dict:
    table = at.dataframe[0].value
    return table[table["Strategy"] == name].iloc[0].to_dict()


def create(at: AppTest, name: str, start_from: str | None = None) -> AppTest:
    at.text_input(key="strat_new_name").input(name)
    if start_from is not None:
        at.selectbox(key="strat_new_from").set_value(start_from)
    at.button(key="strat_new_create").click().run()
    assert not at.exception, at.exception
    return at


def editor_key(at: AppTest, file: str) -> str:
    keys = [t.key for t in at.text_area]
    assert keys.count(f"strat_src:{file}") == 1, keys
    return f"strat_src:{file}"


def test_built_ins_with_no_setup_and_a_missing_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("THREADX_STRATEGY_DIR", str(tmp_path / "nowhere"))  # not created
    at = open_page(PAGE)
    assert set(builtin_names()) <= set(listed(at))
    assert all(row(at, n)["Source"] == "built-in" and row(at, n)["Last check"] == "never" for n in builtin_names())
    assert "does not exist yet" in texts(at.info) and "threadx strategy new NAME" in texts(at.info)
    assert not at.error
    # the selected built-in: description, params table, constraints and its module's source
    at.selectbox(key="strat_pick").set_value("ma_crossover").run()
    params = at.dataframe[1].value
    assert list(params.columns) == ["Param", "Kind", "Default", "Min", "Max", "Opt range", "Feeds", "Description"]
    fast = params[params["Param"] == "fast_period"].iloc[0]
    assert fast["Kind"] == "int" and fast["Default"] == "10" and "signals" in fast["Feeds"]
    assert "fast_period < slow_period" in texts(at.markdown)
    assert any('name="ma_crossover"' in c.value and c.language == "python" for c in at.code)
    assert not at.text_area  # a built-in is never edited in place
    assert str(tmp_path / "nowhere") in texts(at.caption)


def test_create_from_the_template_then_break_and_fix_the_file(strategy_dir, loopback_address):
    at = open_page(PAGE)
    assert "is empty" in texts(at.info)
    create(at, "my_rsi")
    assert "my_rsi" in listed(at) and row(at, "my_rsi")["Source"].startswith("my_rsi.py:")
    assert row(at, "my_rsi")["Params"] == 6
    assert at.selectbox(key="strat_pick").value == "my_rsi"  # the new strategy is selected
    assert "Wrote" in texts(at.success) and (strategy_dir / "my_rsi.py").exists()
    assert not at.info  # the "no strategy of your own" hint is gone
    source = (strategy_dir / "my_rsi.py").read_text()
    assert at.text_area(key=editor_key(at, "my_rsi.py")).value == source  # the editor holds the file
    assert "RSI mean reversion" in texts(at.markdown)

    # a syntax error written into the file: shown with its line, the strategy leaves the list
    broken = source.replace("def levels(ind, p):", "def levels(ind, p)", 1)
    line = source[:source.index("def levels(ind, p):")].count("\n") + 1
    (strategy_dir / "my_rsi.py").write_text(broken)
    at.run()
    assert not at.exception, at.exception
    error = texts(at.error)
    assert f"my_rsi.py:{line}" in error and "SyntaxError" in error, error
    assert "my_rsi" not in listed(at) and set(builtin_names()) <= set(listed(at))
    assert any(f"> {line:4d} | def levels(ind, p)" in c.value for c in at.code)  # the line, marked
    assert at.selectbox(key="strat_pick").value in builtin_names()  # the rest of the page works

    # fixed on disk: back without a restart
    (strategy_dir / "my_rsi.py").write_text(source)
    at.run()
    assert not at.error and "my_rsi" in listed(at)


def test_the_page_editor_saves_and_a_syntax_error_shows_at_once(strategy_dir, loopback_address):
    at = open_page(PAGE)
    create(at, "edited")
    path = strategy_dir / "edited.py"
    source = path.read_text()
    # a new default, saved from the page's editor: reloaded, the params table shows it
    changed = source.replace('Param("oversold", "float", 30.0,', 'Param("oversold", "float", 27.0,', 1)
    assert changed != source
    at.text_area(key=editor_key(at, "edited.py")).input(changed)
    at.button(key="strat_save:edited.py").click().run()
    assert not at.exception, at.exception
    assert path.read_text() == changed
    assert "Saved edited.py: reloaded" in texts(at.success)
    assert at.selectbox(key="strat_pick").value == "edited"
    order = in_order(at)  # under the Save button pressed, 1,400 px below the picker (it showed above the view)
    saved_at = next(k for k, (kind, text) in enumerate(order) if kind == "success" and text.startswith("Saved edited"))
    assert saved_at == order.index(("button", "strat_save:edited.py")) + 1, order[saved_at - 3:saved_at + 1]
    params = at.dataframe[1].value
    assert params[params["Param"] == "oversold"].iloc[0]["Default"] == "27"

    # a syntax error saved from the editor: the error with its line, the file's editor offered to fix it
    broken = changed.replace("return ExitRules(", "return ExitRules((", 1)
    at.text_area(key=editor_key(at, "edited.py")).input(broken)
    at.button(key="strat_save:edited.py").click().run()
    assert not at.exception, at.exception
    error = texts(at.error)
    assert re.search(r"edited\.py:\d+", error) and "SyntaxError" in error, error
    assert "edited" not in listed(at) and "does not load now" in texts(at.warning)
    # said once, after the picker where the strategy's view and its Save were (it was at the top, the picker fallen
    # back to bb_atr in view)
    assert len([e.value for e in at.error if "edited.py" in e.value]) == 1
    order = in_order(at)
    said = next(k for k, (kind, text) in enumerate(order) if kind == "warning" and "does not load now" in text)
    assert said > order.index(("selectbox", "strat_pick")), order[said - 2:said + 1]
    assert at.text_area(key=editor_key(at, "edited.py")).value == broken  # the editor in the error's box
    at.text_area(key=editor_key(at, "edited.py")).input(changed)
    at.button(key="strat_save:edited.py").click().run()
    assert not at.exception, at.exception
    assert not at.error and "edited" in listed(at)
    assert at.selectbox(key="strat_pick").value == "edited"


def test_the_editor_follows_the_file_and_never_overwrites_a_change_it_did_not_show(strategy_dir, loopback_address):
    at = open_page(PAGE)
    create(at, "shared")
    path = strategy_dir / "shared.py"
    source = path.read_text()
    outside = source.replace("RSI length (bars)", "RSI length, edited in an IDE")
    path.write_text(outside)  # changed on disk, nothing typed in the page: the editor follows
    at.run()
    assert at.text_area(key="strat_src:shared.py").value == outside and not at.warning
    mine = outside.replace("ATR length (bars)", "ATR length, edited in the page")
    at.text_area(key="strat_src:shared.py").input(mine).run()  # typed here, not saved
    assert at.text_area(key="strat_src:shared.py").value == mine
    third = outside.replace("equity lost at the stop", "equity lost at the stop, edited in the IDE again")
    path.write_text(third)  # changed on disk again, under the page's edit
    at.button(key="strat_save:shared.py").click().run()
    assert not at.exception, at.exception
    assert path.read_text() == third  # not overwritten by a Save that had not seen that change
    assert "changed on disk" in texts(at.warning) and "Not saved" in texts(at.error)
    assert at.text_area(key="strat_src:shared.py").value == mine  # the page's edit is kept
    at.button(key="strat_save:shared.py").click().run()  # saved again, knowingly: overwrites
    assert path.read_text() == mine and "Saved shared.py" in texts(at.success)
    assert at.text_area(key="strat_src:shared.py").value == mine and not at.warning
    at.text_area(key="strat_src:shared.py").input(mine + "# more\n").run()
    path.write_text(third)
    at.run()
    assert "changed on disk" in texts(at.warning)
    at.button(key="strat_reload:shared.py").click().run()  # the file as it is, the page's edit dropped
    assert at.text_area(key="strat_src:shared.py").value == third and not at.warning


def test_an_edit_not_saved_survives_a_visit_to_another_strategy_or_page(strategy_dir, loopback_address):
    """Text typed in the editor, not saved, was gone after picking another strategy and back (or
    visiting the Backtest page): Streamlit drops a box it does not draw, and nothing warned."""
    at = open_page(PAGE)
    create(at, "keepme")
    path = strategy_dir / "keepme.py"
    mine = path.read_text().replace("RSI length (bars)", "RSI length, typed in the page")
    at.text_area(key="strat_src:keepme.py").input(mine).run()
    assert "Not saved yet: the text above differs from keepme.py as loaded" in texts(at.caption)
    at.selectbox(key="strat_pick").set_value("bb_atr").run()
    assert "strat_src:keepme.py" not in [t.key for t in at.text_area]
    at.selectbox(key="strat_pick").set_value("keepme").run()
    assert not at.exception, at.exception
    assert at.text_area(key="strat_src:keepme.py").value == mine and "Not saved yet" in texts(at.caption)
    at.button(key="strat_save:keepme.py").click().run()
    assert path.read_text() == mine and "Not saved yet" not in texts(at.caption)
    # a draft of a file deleted outside the page never comes back over a new file of that name
    at.text_area(key="strat_src:keepme.py").input(mine + "# draft\n").run()
    at.selectbox(key="strat_pick").set_value("bb_atr").run()
    path.unlink()
    at.run()
    create(at, "keepme")
    assert at.text_area(key="strat_src:keepme.py").value == path.read_text() and "Not saved yet" not in texts(at.caption)


def test_bad_and_taken_names_are_refused_with_a_message(strategy_dir):
    at = open_page(PAGE)
    create(at, "Bad Name!")
    assert "invalid strategy name" in texts(at.error) and "lower-case letters" in texts(at.error)
    create(at, "ma_crossover")
    assert "exists already" in texts(at.error)
    assert list(strategy_dir.iterdir()) == []
    create(at, "copy_of_ma", start_from="ma_crossover")  # from a built-in: a renamed copy
    assert not at.error and "copy_of_ma" in listed(at)
    assert 'name="copy_of_ma"' in (strategy_dir / "copy_of_ma.py").read_text()
    create(at, "copy_of_ma")
    assert "exists already" in texts(at.error)


def test_a_name_kept_for_the_tests_is_refused_with_the_reason(strategy_dir):
    """The pickers leave out test_* strategies (the test suite's own): a file of that name
    could never be picked, so it is not written."""
    at = open_page(PAGE)
    create(at, "test_rsi")
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "kept for the test suite" in errors[0] and "never be picked" in errors[0], errors
    assert list(strategy_dir.iterdir()) == [] and not at.success


def test_a_file_whose_strategy_takes_a_test_name_is_said_to_be_not_offered(strategy_dir):
    from threadx.strategy.scaffold import TEMPLATE

    (strategy_dir / "mine.py").write_text(TEMPLATE.replace("__NAME__", "test_mine"))
    at = open_page(PAGE)
    assert "test_mine" not in listed(at)
    assert any("`test_mine`" in w.value and "Not offered" in w.value for w in at.warning), texts(at.warning)


def test_a_stored_check_report_is_shown_and_goes_stale_when_the_code_changes(strategy_dir, loopback_address):
    from threadx.strategy import get_strategy
    from threadx.checks.store import save_report
    from threadx.strategy.scaffold import new_strategy_file

    new_strategy_file("checked")
    spec = get_strategy("checked")

    class Stored:  # a report as threadx.checks.strategy stores it (CheckReport.to_dict)
        def to_dict(self):
            return {"format": 1, "strategy": "checked", "passed": False, "dataset": "synthetic/BTC_USDT-1h",
                    "bars": 17520, "timeframe": "1h", "seconds": 0.4, "created_at": "2025-01-02T03:04:05+00:00",
                    "results": [
                        {"name": "lookahead", "passed": False, "summary": "look-ahead in 1 of 4 param sets",
                         "details": ["random 2: cut at bar 8760: first difference at bar 8755 in signals"],
                         "seconds": 0.3},
                        {"name": "determinism", "passed": True, "summary": "identical", "details": [], "seconds": 0.0},
                        {"name": "speed", "passed": True, "informational": True, "summary": "13,000 backtests/s",
                         "details": [], "seconds": 0.0}]}

    save_report(spec, Stored())
    at = open_page(PAGE)
    assert row(at, "checked")["Last check"] == "FAIL" and row(at, "ma_crossover")["Last check"] == "never"
    at.selectbox(key="strat_pick").set_value("checked").run()
    assert "Last check: FAIL (lookahead)" in texts(at.error) and "17,520 bars" in texts(at.error)
    lines = texts(at.markdown)
    assert "FAIL] **lookahead**" in lines and "PASS] **determinism**" in lines and "INFO] **speed**" in lines
    assert any("first difference at bar 8755" in c.value for c in at.code)

    path = strategy_dir / "checked.py"  # other code: the report is stale
    path.write_text(path.read_text().replace("RSI length (bars)", "RSI length in bars"))
    at.run()
    assert row(at, "checked")["Last check"] == "stale"
    assert "made on other code" in texts(at.warning)


def test_read_only_when_served_on_a_network_address(strategy_dir, network_address):
    from threadx.strategy.scaffold import new_strategy_file

    path = new_strategy_file("remote")
    at = open_page(PAGE)
    at.selectbox(key="strat_pick").set_value("remote").run()
    assert not at.text_area and not [b for b in at.button if (b.key or "").startswith("strat_save")]
    assert "Editing in the browser is off" in texts(at.caption) and network_address in texts(at.caption)
    source = path.read_text().strip()
    assert any(c.value.strip() == source and c.language == "python" for c in at.code)  # shown read-only
    path.write_text(path.read_text().replace("def levels(ind, p):", "def levels(ind, p)", 1))
    at.run()
    assert "remote.py:" in texts(at.error) and not at.text_area  # no "fix it here" editor either


def test_loopback_addresses():
    from threadx.ui.serving import is_loopback

    assert all(is_loopback(a) for a in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.1.1"))
    # unset ("" or None): Streamlit listens on every interface (a bare `streamlit run` outside the project)
    assert not any(is_loopback(a) for a in ("", None, "0.0.0.0", "::", "192.168.1.20", "example.com", "10.0.0.1"))


def test_open_in_backtest_selects_the_strategy(strategy_dir):
    from threadx.strategy.scaffold import new_strategy_file

    new_strategy_file("to_backtest")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)  # the app, so switch_page works
    at.run()
    at.switch_page("views/6_Strategies.py").run()
    assert not at.exception, at.exception
    at.selectbox(key="strat_pick").set_value("to_backtest").run()
    at.button(key="strat_open").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Backtest" and at.selectbox(key="bt_strategy").value == "to_backtest"
    assert at.number_input(key="bt:to_backtest:rsi_period").value == 14
    at.switch_page("views/2_Backtest.py").run()  # AppTest reruns the page it was pointed at, so point it
    at.button(key="bt_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Sharpe" in [m.label for m in at.metric]


def test_check_runs_on_the_active_dataset_and_stores_the_report(strategy_dir, workspace):
    from threadx.checks.strategy import ALL_CHECKS
    from threadx.strategy.scaffold import new_strategy_file

    new_strategy_file("to_check")
    at = open_page(PAGE)
    at.selectbox(key="strat_pick").set_value("to_check").run()
    assert "Never checked" in texts(at.caption)
    at.button(key="strat_check").click().run()
    assert not at.exception, at.exception
    assert "Checked to_check on" in texts(at.caption)
    stored = json.loads((workspace / "results" / ".strategy_checks" / "to_check.json").read_text())
    assert stored["strategy"] == "to_check"
    lines = texts(at.markdown)
    for name in ALL_CHECKS:
        assert f"**{name}**" in lines, name
    assert row(at, "to_check")["Last check"] in ("PASS", "FAIL")
    assert "Last check:" in texts(at.success) + texts(at.error)


PEEK = """    sig = np.zeros(len(rsi), dtype=np.uint8)
    ahead = np.roll(bars.close, -1) > bars.close * 1.01  # peeks at the next bar's close: look-ahead
    sig[ahead] |= SIG_ENTER_LONG
"""


def test_check_names_the_first_differing_bar_of_a_look_ahead(strategy_dir):
    from threadx.strategy.scaffold import new_strategy_file

    path = new_strategy_file("peeks")
    source = path.read_text()
    path.write_text(source.replace("    sig = np.zeros(len(rsi), dtype=np.uint8)\n", PEEK, 1))
    at = open_page(PAGE)
    at.selectbox(key="strat_pick").set_value("peeks").run()
    at.button(key="strat_check").click().run()
    assert not at.exception, at.exception
    assert "Last check: FAIL (lookahead" in texts(at.error)
    assert "FAIL] **lookahead**" in texts(at.markdown)
    blocks = [c.value for c in at.code if c.language != "python"]
    # the look-ahead's details: the first differing bar and the param set it was found with
    assert any(re.search(r"\bbar \d+", b) and "defaults" in b for b in blocks), blocks
    assert any(b.startswith("defaults: rsi_period=14") for b in blocks), blocks  # the param sets checked
    assert row(at, "peeks")["Last check"] == "FAIL"


def test_a_check_stopped_by_the_strategys_error_says_so_without_threadx_frames(strategy_dir):
    """A strategy whose signals() raised got 'FAIL (lookahead, determinism, accounting, roles, speed)',
    read as a look-ahead, each with a traceback through ThreadX's own frames."""
    from threadx.strategy.scaffold import new_strategy_file

    path = new_strategy_file("raises")
    source = path.read_text()
    path.write_text(source.replace("    sig = np.zeros(len(rsi), dtype=np.uint8)\n",
                                   "    raise ValueError('boom')\n", 1))
    at = open_page(PAGE)
    at.selectbox(key="strat_pick").set_value("raises").run()
    at.button(key="strat_check").click().run()
    assert not at.exception, at.exception
    (headline,) = [e for e in texts(at.error).split("\n") if e.startswith("Last check:")] or [texts(at.error)]
    assert re.search(r"Last check: FAIL · the strategy raised ValueError: boom at \S*raises\.py:\d+", headline), headline
    assert "could not run" in headline
    blocks = [c.value for c in at.code if c.language != "python"]
    assert any("raises.py" in b and "ValueError: boom" in b for b in blocks), blocks
    assert not any("threadx/" in b for b in blocks), blocks  # the author's frames only


def test_a_copy_of_a_module_with_several_strategies_selects_the_one_named_as_the_file(strategy_dir):
    """New strategy 'mygrid' from grid_atr (whose module holds envelope_dca and its short twin too)
    selected mygrid_envelope_dca, the first strategy the file gave."""
    at = create(open_page(PAGE), "mygrid", "grid_atr")
    assert at.selectbox(key="strat_pick").value == "mygrid"


def test_a_check_whose_strategy_crashes_its_process_is_an_error_and_the_page_goes_on(strategy_dir):
    """A strategy of the folder is checked in a process of its own (threadx.ui.user_code): a
    segmentation fault in its code is one error with where it crashed, the workstation lives."""
    from threadx.strategy.scaffold import new_strategy_file

    path = new_strategy_file("crashes")
    path.write_text(path.read_text().replace("    sig = np.zeros(len(rsi), dtype=np.uint8)\n",
                                             "    import ctypes\n    ctypes.string_at(0)\n", 1))
    at = open_page(PAGE)
    at.selectbox(key="strat_pick").set_value("crashes").run()
    at.button(key="strat_check").click().run()
    assert not at.exception, at.exception
    assert "Cannot check crashes: the process running the check of crashes was killed by SIGSEGV" in texts(at.error)
    assert any('crashes.py", line' in c.value for c in at.code)
    assert row(at, "crashes")["Last check"] == "never"  # nothing stored
    at.selectbox(key="strat_pick").set_value("bb_atr").run()
    assert not at.exception and "bb_atr" in [s.value for s in at.subheader]


def test_a_file_that_crashes_as_it_loads_is_its_load_error_and_the_app_goes_on(strategy_dir):
    """The app (app.py) runs each new or changed file of the folder in a process of its own
    first (threadx.ui.user_code.trial_loads): one whose top-level code crashes is that file's
    load error instead of a server killed on its first page."""
    from threadx.strategy.scaffold import new_strategy_file

    new_strategy_file("loads_fine")
    crash = new_strategy_file("crashes_at_load")
    crash.write_text(crash.read_text() + "\nimport ctypes\nctypes.string_at(0)\n")  # (the test loads no file now)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("views/6_Strategies.py").run()
    assert not at.exception, at.exception
    errors = "\n".join((texts(at.error), texts(at.markdown), texts(at.caption)))
    assert "`crashes_at_load.py:86` this file's code crashed the process that loaded it first" in errors, errors
    assert "SIGSEGV" in errors
    at.selectbox(key="strat_pick").set_value("loads_fine").run()
    assert not at.exception and "loads_fine" in [s.value for s in at.subheader]


def test_an_unknown_strategy_link_shows_the_strategy_its_warning_names(strategy_dir, workspace):
    """`?strategy=nope` warned "showing bb_atr instead" over ma_crossover (the first of the list);
    with no link the page started on ma_crossover where every other page is on bb_atr."""
    at = open_page(PAGE, strategy="nope")
    shown = at.selectbox(key="strat_pick").value
    assert any("nope" in w.value and f"showing {shown} instead" in w.value for w in at.warning), texts(at.warning)
    assert shown == "bb_atr"
    assert open_page(PAGE).selectbox(key="strat_pick").value == "bb_atr"


def drafted(strategy_dir, name: str = "drafted") -> tuple[AppTest, str, str]:
    """A strategy file ``name``.py, a session whose editor holds an edit of it not saved (kept on
    disk), the file's text and the edit."""
    from threadx.strategy.scaffold import new_strategy_file

    source = new_strategy_file(name).read_text()
    at = open_page(PAGE)
    at.selectbox(key="strat_pick").set_value(name).run()
    mine = source.replace("RSI length (bars)", "RSI length, typed and not saved")
    at.text_area(key=f"strat_src:{name}.py").input(mine).run()
    assert not at.exception, at.exception
    assert "Not saved yet" in texts(at.caption) and "Kept on disk meanwhile" in texts(at.caption)
    return at, source, mine


def reopened(name: str = "drafted") -> AppTest:
    """A new session of the page on strategy ``name`` (a refresh of the browser, a server restart)."""
    at = open_page(PAGE)
    at.selectbox(key="strat_pick").set_value(name).run()
    assert not at.exception, at.exception
    return at


def test_an_edit_not_saved_survives_a_new_session_and_save_drops_its_draft(strategy_dir, loopback_address):
    """An edit lived in the session only: a refresh, a server restart or a closed tab lost it without a word."""
    from threadx.strategy.user import text_hash
    from threadx.ui.strategies import draft_path, read_draft

    at, source, mine = drafted(strategy_dir)
    draft = read_draft(strategy_dir, "drafted.py")
    assert draft is not None and draft.text == mine and draft.base == text_hash(source)
    assert draft_path(strategy_dir, "drafted.py").parent == strategy_dir / ".drafts"
    assert "drafted" in listed(at) and not at.error  # the folder's loader never reads a draft as strategies

    at = reopened()
    assert at.text_area(key="strat_src:drafted.py").value == mine
    note = texts(at.info)
    assert re.search(r"Restored your unsaved edits from \d{4}-\d\d-\d\d \d\d:\d\d: \*\*Save\*\* writes them, "
                     r"\*\*Discard\*\* drops them", note), note
    assert "Not saved yet" in texts(at.caption)
    assert (strategy_dir / "drafted.py").read_text() == source  # nothing written to the file by the restore
    at.button(key="strat_save:drafted.py").click().run()
    assert not at.exception, at.exception
    assert (strategy_dir / "drafted.py").read_text() == mine and "Saved drafted.py" in texts(at.success)
    assert read_draft(strategy_dir, "drafted.py") is None and "Restored" not in texts(at.info)
    at = reopened()
    assert at.text_area(key="strat_src:drafted.py").value == mine and not at.info
    assert "Not saved yet" not in texts(at.caption)


def test_discard_drops_a_restored_draft_and_an_edit_back_to_the_file_drops_it_too(strategy_dir, loopback_address):
    from threadx.ui.strategies import read_draft

    _, source, mine = drafted(strategy_dir)
    at = reopened()
    assert at.text_area(key="strat_src:drafted.py").value == mine
    at.button(key="strat_discard:drafted.py").click().run()
    assert not at.exception, at.exception
    assert at.text_area(key="strat_src:drafted.py").value == source and not at.info
    assert read_draft(strategy_dir, "drafted.py") is None and (strategy_dir / "drafted.py").read_text() == source
    assert reopened().text_area(key="strat_src:drafted.py").value == source

    at, _, mine = drafted(strategy_dir, "typed_back")
    assert read_draft(strategy_dir, "typed_back.py") is not None
    at.text_area(key="strat_src:typed_back.py").input(source.replace("drafted", "typed_back")).run()
    assert "Not saved yet" not in texts(at.caption) and read_draft(strategy_dir, "typed_back.py") is None


def test_a_draft_of_a_file_changed_on_disk_since_is_offered_not_put_in_the_box(strategy_dir, loopback_address):
    from threadx.ui.strategies import read_draft

    _, source, mine = drafted(strategy_dir)
    path = strategy_dir / "drafted.py"
    outside = source.replace("ATR length (bars)", "ATR length, edited in an IDE")
    path.write_text(outside)  # changed on disk after the draft was kept
    at = reopened()
    assert at.text_area(key="strat_src:drafted.py").value == outside  # the file, not the draft
    warning = texts(at.warning)
    assert "Your unsaved edits of drafted.py from" in warning and "changed on disk since" in warning, warning
    assert not at.info and read_draft(strategy_dir, "drafted.py").text == mine
    # typed over the file meanwhile: kept in the session, not on disk over the draft waiting
    at.text_area(key="strat_src:drafted.py").input(outside + "# another edit\n").run()
    assert "Not kept on disk while the earlier draft above waits" in texts(at.caption)
    assert read_draft(strategy_dir, "drafted.py").text == mine
    at.button(key="strat_draft_restore:drafted.py").click().run()
    assert not at.exception, at.exception
    assert at.text_area(key="strat_src:drafted.py").value == mine
    assert "changed on disk since this editor loaded it" in texts(at.warning)  # the page's conflict flow
    at.button(key="strat_save:drafted.py").click().run()  # the change on disk not overwritten by a first Save
    assert path.read_text() == outside and "Not saved" in texts(at.error)
    assert read_draft(strategy_dir, "drafted.py").text == mine

    at = reopened()  # Discard draft: dropped, the box keeps the file
    at.button(key="strat_draft_discard:drafted.py").click().run()
    assert not at.exception, at.exception
    assert read_draft(strategy_dir, "drafted.py") is None and "Your unsaved edits" not in texts(at.warning)
    assert at.text_area(key="strat_src:drafted.py").value == outside and path.read_text() == outside


def test_a_draft_of_a_deleted_file_is_not_shown_for_a_new_file_of_that_name(strategy_dir, loopback_address):
    from threadx.ui.strategies import read_draft

    drafted(strategy_dir)
    (strategy_dir / "drafted.py").unlink()
    at = open_page(PAGE)
    create(at, "drafted")
    assert not at.exception, at.exception
    assert at.text_area(key="strat_src:drafted.py").value == (strategy_dir / "drafted.py").read_text()
    assert "Not saved yet" not in texts(at.caption) and not at.info and read_draft(strategy_dir, "drafted.py") is None


def test_a_draft_is_bounded_and_its_file_name_checked(strategy_dir, loopback_address):
    from threadx.errors import ParamError
    from threadx.ui.strategies import MAX_DRAFT_BYTES, draft_path, read_draft, write_draft

    at, source, mine = drafted(strategy_dir)
    huge = mine + "#" * MAX_DRAFT_BYTES
    at.text_area(key="strat_src:drafted.py").input(huge).run()
    assert not at.exception, at.exception
    assert "Not kept on disk (the text is over 1 MiB, the most a draft keeps)" in texts(at.caption)
    assert read_draft(strategy_dir, "drafted.py") is None  # the earlier, shorter one is not restored as the last
    with pytest.raises(ParamError):
        draft_path(strategy_dir, "../drafted.py")
    with pytest.raises(ParamError):
        write_draft(strategy_dir, ".hidden.py", "x", "0")


def test_a_server_on_a_network_address_neither_restores_nor_writes_drafts(strategy_dir, network_address):
    from threadx.strategy.scaffold import new_strategy_file
    from threadx.strategy.user import text_hash
    from threadx.ui.strategies import read_draft, write_draft

    source = new_strategy_file("remote").read_text()
    kept = write_draft(strategy_dir, "remote.py", source + "# typed on a local server\n", text_hash(source))
    at = open_page(PAGE)
    at.selectbox(key="strat_pick").set_value("remote").run()
    assert not at.text_area and "Restored" not in texts(at.info) and read_draft(strategy_dir, "remote.py") == kept


def test_a_tab_drops_only_its_own_draft_not_one_another_tab_wrote_since(strategy_dir, loopback_address):
    """Discard or Save in one tab deleted the draft another tab had written since, which that tab
    still said was kept on disk (and a refresh lost its edit)."""
    from threadx.ui.strategies import read_draft

    at1, source, mine = drafted(strategy_dir)
    at2 = reopened()  # a second tab
    theirs = source + "# typed in the second tab\n"
    at2.text_area(key="strat_src:drafted.py").input(theirs).run()
    assert read_draft(strategy_dir, "drafted.py").text == theirs
    at1.button(key="strat_discard:drafted.py").click().run()
    assert not at1.exception, at1.exception
    assert read_draft(strategy_dir, "drafted.py").text == theirs  # the second tab's, kept
    at1.text_area(key="strat_src:drafted.py").input(source + "# the first tab again\n").run()
    assert read_draft(strategy_dir, "drafted.py").text.endswith("# the first tab again\n")  # (the last one wins)
    at1.button(key="strat_save:drafted.py").click().run()
    assert not at1.exception, at1.exception
    assert read_draft(strategy_dir, "drafted.py") is None  # its own: dropped by its Save
