"""Walk-forward purge and embargo (López de Prado): the OOS windows stay where they are, the
IS windows lose ``purge`` bars at their end and the ``embargo`` bars after every earlier OOS
window; 0 and 0 give today's results bit for bit."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from threadx.engine import kernel
from threadx.engine.inputs import frozen
from threadx.engine.layout import P_SPAN_BARS
from threadx.errors import ParamError
from threadx.requests import WalkForwardRequest, request_from_dict
from threadx.validation.common import to_python
from threadx.validation.walkforward import _slice_args, plan_windows, walk_forward

SPACE = {"fast_period": "5:30:5", "slow_period": "40:120:20"}
RUN = dict(sampler="grid", is_days=90, oos_days=30, objective="sharpe", workers=2)

# recorded from the code before purge and embargo existed (commit a9d9306), same call as RUN
BEFORE = {
    False: (0.16720987175091406, 0.7404236795129899, 0.4356291695560257, [27, 28, 26, 23, 6, 15, 0, 5, 5]),
    True: (0.08666537382622108, 0.48404463578981316, 0.3579591711764815, [27, 27, 27, 28, 27, 22, 28, 28, 22]),
}


def _is_bars(win) -> np.ndarray:
    return np.concatenate([np.arange(lo, hi) for lo, hi in win.is_segments()])


@settings(max_examples=300, deadline=None)
@given(n=st.integers(40, 3000), is_bars=st.integers(4, 600), oos=st.integers(2, 300), extra=st.integers(0, 200),
       anchored=st.booleans(), purge=st.integers(0, 100), embargo=st.integers(0, 100))
def test_purge_and_embargo_take_bars_out_of_the_is_windows_only(n, is_bars, oos, extra, anchored, purge, embargo):
    step = oos + extra
    purge = min(purge, is_bars - 2)
    if is_bars + oos > n:
        return
    plain = plan_windows(n, is_bars, oos, step, anchored)
    try:
        windows = plan_windows(n, is_bars, oos, step, anchored, purge, embargo)
    except ParamError as exc:  # only when an embargo leaves an IS window almost empty
        assert "embargo" in str(exc) and embargo > 0
        return
    assert len(windows) == len(plain)
    for k, (w, p) in enumerate(zip(windows, plain)):
        assert (w.oos_start, w.oos_end, w.is_start) == (p.oos_start, p.oos_end, p.is_start)  # OOS where it was
        assert w.is_end == w.oos_start - purge
        used = _is_bars(w)
        assert len(used) == w.is_bar_count >= 2
        assert not ((used >= w.is_end) & (used < w.oos_start)).any()  # nothing in the purge gap
        assert used.max() < w.oos_start - purge
        for earlier in windows[:k]:  # embargoed bars are absent from later IS windows
            assert not ((used >= earlier.oos_end) & (used < earlier.oos_end + embargo)).any()
        # and nothing else is taken out
        expected = np.setdiff1d(np.arange(w.is_start, w.is_end), np.concatenate(
            [np.arange(e.oos_end, e.oos_end + embargo) for e in windows[:k]] or [np.empty(0, int)]))
        np.testing.assert_array_equal(used, expected)


def test_anchored_embargo_cuts_the_bars_after_each_earlier_oos_window():
    windows = plan_windows(100, 30, 10, None, True, 3, 4)
    assert [(w.is_start, w.is_end, w.oos_start) for w in windows[:3]] == [(0, 27, 30), (0, 37, 40), (0, 47, 50)]
    assert windows[1].is_gaps == ()  # the bars after OOS 0 are OOS 1's own
    assert windows[2].is_gaps == ((40, 44),)
    assert windows[4].is_gaps == ((40, 44), (50, 54), (60, 64))
    assert windows[4].is_bar_count == 67 - 12


@pytest.mark.parametrize("purge, embargo, match", [
    (-1, 0, "purge must be a whole number of bars >= 0"),
    (1.5, 0, "purge must be a whole number"),
    (True, 0, "purge must be a whole number"),
    (0, -3, "embargo must be a whole number of bars >= 0"),
    (0, "2", "embargo must be a whole number"),
    (29, 0, "purge 29 leaves fewer than 2 of the 30 IS bars"),
    (0, 30, "embargo 30 leaves 0 IS bars in window 4"),
])
def test_bad_purge_or_embargo_is_one_clear_error(purge, embargo, match):
    with pytest.raises(ParamError, match=match):
        plan_windows(200, 30, 10, None, False, purge, embargo)


@pytest.fixture(scope="module")
def defaults(synthetic_bars):
    return {anchored: walk_forward(synthetic_bars, "ma_crossover", SPACE, anchored=anchored, **RUN)
            for anchored in (False, True)}


@pytest.mark.parametrize("anchored", [False, True])
def test_purge_0_and_embargo_0_give_todays_results(defaults, synthetic_bars, anchored):
    wf = defaults[anchored]
    explicit = walk_forward(synthetic_bars, "ma_crossover", SPACE, anchored=anchored, purge=0, embargo=0, **RUN)
    total_return, sharpe, efficiency, winners = BEFORE[anchored]
    for run in (wf, explicit):  # (to 1e-12: the synthetic candles differ in the last bit between machines)
        assert run.oos_summary["total_return"] == pytest.approx(total_return, rel=1e-12)
        assert run.oos_summary["sharpe"] == pytest.approx(sharpe, rel=1e-12)
        assert run.efficiency == pytest.approx(efficiency, rel=1e-12)
        assert list(run.table["combo_id"]) == winners
    np.testing.assert_array_equal(wf.is_metrics, explicit.is_metrics)
    np.testing.assert_array_equal(wf.oos_metrics, explicit.oos_metrics)
    assert (wf.config["purge"], wf.config["embargo"]) == (0, 0)


def test_purged_and_embargoed_is_metrics_use_only_the_kept_bars(defaults, synthetic_bars):
    wf = walk_forward(synthetic_bars, "ma_crossover", SPACE, anchored=True, purge=24, embargo=48, **RUN)
    plain = defaults[True]
    assert (wf.config["purge"], wf.config["embargo"]) == (24, 48)
    assert [w.oos_start for w in wf.windows] == [w.oos_start for w in plain.windows]
    np.testing.assert_array_equal(wf.oos_metrics, plain.oos_metrics)  # OOS coverage unchanged
    assert not np.array_equal(wf.is_metrics, plain.is_metrics)
    assert list(wf.table["is_bars"]) == [w.is_bar_count for w in wf.windows]
    win = wf.windows[3]
    assert win.is_gaps == ((2880, 2928), (3600, 3648))
    params = {name: to_python(value) for name, value in wf.combos.iloc[5].items() if name != "combo_id"}
    args = wf.evaluator.kernel_inputs(params)
    parts = [_slice_args(args, lo, hi, wf.evaluator.bars) for lo, hi in win.is_segments()]
    params = args.params.copy()
    params[P_SPAN_BARS] = sum(hi - lo for lo, hi in win.is_segments())  # the years of its CAGR: the bars kept
    joined = type(args)(*[frozen(np.concatenate([p[i] for p in parts])) if args[i].shape[0] == len(synthetic_bars)
                          else args[i] for i in range(len(args) - 1)], frozen(params))
    np.testing.assert_array_equal(wf.is_metrics[3, 5], kernel.run_fast(*joined))


def test_the_request_and_the_stored_config_carry_purge_and_embargo():
    req = WalkForwardRequest("sample:BTC_USDT-1h", "ma_crossover", SPACE, is_days=60, oos_days=30, purge=12,
                             embargo=6)
    back = request_from_dict(json.loads(json.dumps(req.to_dict())))
    assert back == req and back.walk_forward_kwargs()["purge"] == 12 and back.walk_forward_kwargs()["embargo"] == 6
    old = {k: v for k, v in req.to_dict().items() if k not in ("purge", "embargo")}  # a job stored before
    assert request_from_dict(old).purge == 0
    with pytest.raises(ParamError, match="purge"):
        WalkForwardRequest("sample:BTC_USDT-1h", "ma_crossover", SPACE, is_days=60, oos_days=30, purge=-1)


def test_cli_purge_and_embargo(capsys, data_root):
    from threadx.cli import main

    argv = ["walkforward", "--strategy", "ma_crossover", "--param", "fast_period=5:15:5", "--param",
            "slow_period=40:80:20", "--sampler", "grid", "--is-days", "120", "--oos-days", "60", "--anchored",
            "--bootstrap", "100", "--S", "4", "--workers", "1"]
    assert main([*argv, "--purge", "24", "--embargo", "12"]) == 0
    out = capsys.readouterr().out
    assert "anchored, purge 24 bars, embargo 12 bars)" in out
    assert main([*argv, "--purge", "-2", "--json"]) != 0
    assert "purge must be a whole number of bars >= 0" in capsys.readouterr().err
