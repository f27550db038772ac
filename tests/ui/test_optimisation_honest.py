"""Optimisation page (issue 11): a winner on the edge of its range is flagged, bb_std is not
searched by default and the min-trades input starts at the shared default."""
from __future__ import annotations

import pytest

pytest.importorskip("streamlit")

import threadx  # noqa: E402
from apptest_helpers import ROOT, open_page  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402
from threadx.config import DEFAULT_MIN_TRADES  # noqa: E402


def _show(run_id: str):
    at = open_page("3_Optimisation.py")
    at.session_state["sweep_run"] = run_id
    at.run()
    assert not at.exception, at.exception
    return at


def _edge_warnings(at) -> list[str]:
    return [w.value for w in at.warning if "edge of its searched range" in w.value]


def test_a_winner_on_the_edge_of_its_range_is_flagged(synthetic_bars):
    wide = threadx.sweep(synthetic_bars, "ma_crossover", {"fast_period": "4:16:1", "slow_period": 40},
                         executor="inline", workers=1, run_id="wide")
    best = wide.best_params()["fast_period"]
    edge = threadx.sweep(synthetic_bars, "ma_crossover", {"fast_period": [best - 1, best], "slow_period": 40},
                         executor="inline", workers=1, run_id="edge")
    inner = threadx.sweep(synthetic_bars, "ma_crossover", {"fast_period": [best - 1, best, best + 1],
                                                          "slow_period": 40}, executor="inline", workers=1,
                          run_id="inner")
    assert edge.best_params()["fast_period"] == best
    warned = _edge_warnings(_show("edge"))
    assert len(warned) == 1
    assert f"`fast_period={best}` (searched {best - 1} to {best})" in warned[0] and "Widen" in warned[0]
    assert inner.best_params()["fast_period"] == best  # inside its range: no warning
    assert not _edge_warnings(_show("inner"))


def test_bb_atr_default_space_leaves_bb_std_fixed():
    at = open_page("3_Optimisation.py")
    at.selectbox(key="opt_strategy").set_value("bb_atr").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="opt:bb_atr:bb_period:mode").value == "range"
    assert at.selectbox(key="opt:bb_atr:bb_std:mode").value == "fixed"
    assert any("**41** combos" in i.value for i in at.info), [i.value for i in at.info]
    assert any(m.value.startswith("<code>bb&#95;<wbr>std</code>") and "display only" in m.value for m in at.markdown)
    assert at.number_input(key="opt_min_trades").value == DEFAULT_MIN_TRADES


def test_float_range_boxes_show_the_values_that_run():
    """risk_per_trade's range 0.005 to 0.05 step 0.005 was shown as 0.01 / 0.05 / 0.01 (two decimals):
    10 values ran where the boxes said 5, and the combo count looked doubled."""
    at = open_page("3_Optimisation.py")
    key = "opt:bb_atr:risk_per_trade"
    at.selectbox(key=f"{key}:mode").set_value("range").run()
    assert not at.exception, at.exception
    boxes = {name: at.number_input(key=f"{key}:{name}") for name in ("min", "max", "step")}
    assert {n: b.value for n, b in boxes.items()} == {"min": 0.005, "max": 0.05, "step": 0.005}
    assert {b.proto.format for b in boxes.values()} == {"%.3f"}
    boxes["step"].set_value(0.0025).run()  # typed finer than the declared step: shown as typed
    assert at.number_input(key=f"{key}:min").proto.format == "%.4f"
    fixed = at.number_input(key="opt:bb_atr:entry_z:value")
    assert fixed.proto.format == "%.1f" and fixed.value == 1.0


def test_a_grid_over_the_limit_is_an_error_and_blocks_launch(monkeypatch):
    """A refused grid was a blue note with Launch enabled (the error came after the click), and the
    page checked the built-in 10M limit, not the one threadx.toml sets for the sweep itself."""
    at = open_page("3_Optimisation.py", strategy="ma_crossover")
    assert not at.error and not at.button(key="opt_launch").disabled
    monkeypatch.setenv("THREADX_SWEEP_GRID_LIMIT", "100")  # the default space of ma_crossover is larger
    at.run()
    assert not at.exception, at.exception
    assert any("above the limit of 100" in e.value for e in at.error), [e.value for e in at.error]
    assert at.button(key="opt_launch").disabled
    at.radio(key="opt_method").set_value("Monte Carlo").run()  # a sampler's n has the same limit (as the sweep's)
    assert any("n = 2,000 combos is above the limit of 100" in e.value for e in at.error), [e.value for e in at.error]
    assert at.button(key="opt_launch").disabled  # (it was enabled, and the launch refused)
    at.number_input(key="opt_n").set_value(100).run()
    assert not at.error and not at.button(key="opt_launch").disabled


@pytest.mark.parametrize("key, value, words", [
    ("opt_fee", -5.0, "Fee (bps) must be between 0 and 1,000, got -5"),
    ("opt_fee", 1e9, "Fee (bps) must be between 0 and 1,000, got 1,000,000,000"),
    ("opt_workers", 0, "Workers must be between 1 and 256, got 0"),
    ("opt_n", 0, "Combos (n) must be at least 1, got 0"),
    ("opt_seed", -1, "Seed must be at least 0, got -1"),
])
def test_a_box_out_of_range_blocks_launch_and_says_why(key, value, words):
    """A box bounded by the browser kept showing the value typed out of range (in red) while the
    last valid one ran: Launch ran a fee of 10 bps under a box reading -5."""
    at = open_page("3_Optimisation.py", strategy="ma_crossover")
    at.radio(key="opt_method").set_value("Monte Carlo").run()
    at.number_input(key=key).set_value(value).run()
    assert not at.exception, at.exception
    assert any(words in e.value for e in at.error), [e.value for e in at.error]
    assert at.button(key="opt_launch").disabled


def test_a_best_combo_that_loses_money_is_said_to(synthetic_bars):
    """All 231 combos lost and the page offered the best (Sharpe -1.44) as any other winner."""
    space = {"fast_period": [5, 10], "slow_period": [40, 60]}
    run = threadx.sweep(synthetic_bars, "ma_crossover", space, executor="inline", workers=1, run_id="cost",
                        fee_bps=500, min_trades=0)  # 5 % a fill: every combo loses
    assert (run.results.total_return < 0).all()
    warned = [w.value for w in _show("cost").warning if "loses money" in w.value]
    assert len(warned) == 1 and "every combo of this run (4 of 4 at or below 0)" in warned[0]


def test_a_grid_too_big_to_count_says_so_rather_than_none_dropped():
    """Above a million combos the page said '0 dropped by constraints' (they were not counted)."""
    at = open_page("3_Optimisation.py", strategy="ma_crossover")
    for name in ("stop_loss_pct", "take_profit_pct"):
        at.selectbox(key=f"opt:ma_crossover:{name}:mode").set_value("range").run()
    at.selectbox(key="opt:ma_crossover:risk_per_trade:mode").set_value("range").run()
    infos = [i.value for i in at.info if "combos in the grid" in i.value or "combos to run" in i.value]
    assert infos and "not counted above 1,000,000" in infos[0] and "0 dropped" not in infos[0], infos


def test_a_run_shown_beside_a_form_set_otherwise_says_which_launch_uses():
    """A ?run= link showed a run on BTC while the form (the tab's last choice) was on ETH: Launch would
    have run ETH with nothing said."""
    from threadx.data.io import load_ohlcv
    from threadx.data.synthetic import ensure_sample

    ensure_sample()
    run = threadx.sweep(load_ohlcv("synthetic/BTC_USDT-1h"), "ma_crossover", {"fast_period": [5, 10],
                        "slow_period": [40]}, executor="inline", workers=1, run_id="on-btc")
    assert run.manifest["dataset"] == "synthetic/BTC_USDT-1h"
    at = AppTest.from_file(str(ROOT / "views" / "3_Optimisation.py"), default_timeout=120)
    at.query_params["run"], at.query_params["dataset"] = "on-btc", "synthetic/ETH_USDT-1h"
    at.run()
    assert not at.exception, at.exception
    said = [i.value for i in at.info if i.value.startswith("The form above is set to")]
    assert said and "dataset **synthetic/ETH_USDT-1h**" in said[0] and "strategy **bb_atr**" in said[0], said
    at.selectbox(key="dataset_picker").set_value("synthetic/BTC_USDT-1h").run()
    at.selectbox(key="opt_strategy").set_value("ma_crossover").run()
    said = [i.value for i in at.info if i.value.startswith("The form above is set to")]
    # only the space is left: the form's is the strategy's default, not the run's two combos
    assert len(said) == 1 and said[0].startswith("The form above is set to another search space (**fast_period, "), said


def test_a_run_shown_beside_a_form_searching_otherwise_says_so():
    """After a reload the form was back on Grid beside a sobol run of 8,000 combos, and nothing said
    that Launch would run a grid (a hostile browser test)."""
    from threadx.data.io import load_ohlcv
    from threadx.data.synthetic import ensure_sample

    ensure_sample()
    threadx.sweep(load_ohlcv("synthetic/BTC_USDT-1h"), "ma_crossover", {"fast_period": "5:20:1", "slow_period": [40]},
                  sampler="random", n=5, seed=7, executor="inline", workers=1, run_id="mc-run")
    at = AppTest.from_file(str(ROOT / "views" / "3_Optimisation.py"), default_timeout=120)
    at.query_params["run"], at.query_params["dataset"] = "mc-run", "synthetic/BTC_USDT-1h"
    at.query_params["strategy"] = "ma_crossover"
    at.run()
    assert not at.exception, at.exception
    said = [i.value for i in at.info if i.value.startswith("The form above is set to")]
    assert said and "sampler **grid**" in said[0] and "dataset" not in said[0], said
    at.radio(key="opt_method").set_value("Monte Carlo").run()
    at.selectbox(key="opt_sampler").set_value("random").run()
    said = [i.value for i in at.info if i.value.startswith("The form above is set to")]
    assert said and "n **2,000**" in said[0] and "seed **42**" in said[0], said
    at.number_input(key="opt_n").set_value(5).run()
    at.number_input(key="opt_seed").set_value(7).run()
    said = [i.value for i in at.info if i.value.startswith("The form above is set to")]
    assert len(said) == 1 and said[0].startswith("The form above is set to another search space ("), said
