"""Every page, command and API call starts a Monte Carlo search and a validation report from
the same defaults (``threadx.config``): the Research page drew 100 combos per window, the
Validation page 500 and ``threadx walkforward`` / ``research`` 1,000 for the same walk-forward."""
from __future__ import annotations

import inspect

import pytest

pytest.importorskip("streamlit")

from apptest_helpers import open_page  # noqa: E402

from threadx.cli.parser import build_parser  # noqa: E402
from threadx.config import DEFAULT_BOOTSTRAP, DEFAULT_SWEEP_SAMPLES, DEFAULT_WF_SAMPLES  # noqa: E402
from threadx.requests import WalkForwardRequest  # noqa: E402
from threadx.validation.report import validate_sweep, validate_walk_forward  # noqa: E402
from threadx.validation.walkforward import walk_forward  # noqa: E402


def test_the_pages_start_from_the_configured_combo_counts():
    at = open_page("7_Research.py")
    at.selectbox(key="rs_sampler").set_value("random").run()
    assert at.number_input(key="rs_n").value == DEFAULT_WF_SAMPLES
    assert at.number_input(key="rs_boot").value == DEFAULT_BOOTSTRAP
    at = open_page("4_Validation.py")
    at.selectbox(key="wf_sampler").set_value("random").run()
    assert at.number_input(key="wf_n").value == DEFAULT_WF_SAMPLES
    assert at.number_input(key="wf_boot").value == DEFAULT_BOOTSTRAP
    at = open_page("3_Optimisation.py")
    at.radio(key="opt_method").set_value("Monte Carlo").run()
    assert at.number_input(key="opt_n").value == DEFAULT_SWEEP_SAMPLES


def test_the_commands_and_the_api_take_the_same_defaults():
    parser = build_parser()
    for command in (["walkforward", "--strategy", "bb_atr", "--is-days", "90", "--oos-days", "30"],
                    ["research", "--strategy", "bb_atr", "--data", "x", "--is-days", "90", "--oos-days", "30"]):
        args = parser.parse_args(command)
        assert (args.n, args.bootstrap) == (DEFAULT_WF_SAMPLES, DEFAULT_BOOTSTRAP), command
    assert parser.parse_args(["validate", "some-run"]).bootstrap == DEFAULT_BOOTSTRAP
    assert parser.parse_args(["sweep", "--strategy", "bb_atr", "--sampler", "random"]).n == DEFAULT_SWEEP_SAMPLES
    assert parser.parse_args(["bench"]).n == DEFAULT_SWEEP_SAMPLES
    assert inspect.signature(walk_forward).parameters["n"].default == DEFAULT_WF_SAMPLES
    assert WalkForwardRequest.__dataclass_fields__["n"].default == DEFAULT_WF_SAMPLES
    assert WalkForwardRequest.__dataclass_fields__["bootstrap"].default == DEFAULT_BOOTSTRAP
    for fn in (validate_sweep, validate_walk_forward):
        assert inspect.signature(fn).parameters["n"].default == DEFAULT_BOOTSTRAP


def test_a_grid_sweep_from_the_command_line_stores_no_combo_count(workspace, capsys):
    from threadx.cli import main
    from threadx.optimize.store import ResultStore

    assert main(["sweep", "--strategy", "ma_crossover", "--param", "fast_period=5:6:1", "--param",
                 "slow_period=30", "--run-id", "g1", "--workers", "1"]) == 0
    assert ResultStore().load("g1").manifest["n"] is None


def test_an_emptied_box_says_it_reads_as_its_default():
    """An emptied range box ran its default with nothing shown (a browser review)."""
    at = open_page("3_Optimisation.py")
    at.run()  # (a box holds a value of its own on its first run: it can be emptied from the second)
    key = "opt:bb_atr:bb_period:min"
    at.number_input(key=key).set_value(None).run()
    assert at.number_input(key=key).value is None
    assert "empty: reads as 10" in [c.value for c in at.caption]
    shown = " ".join(str(m.value) for kind in (at.markdown, at.caption, at.info, at.success) for m in kind)
    assert "**41** combos to run" in shown, shown  # 10..50: the default min ran
