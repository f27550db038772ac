"""Figure builders of the Validation page on small synthetic inputs (no Streamlit)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from threadx.ui import validation_charts as vc
from threadx.validation.bootstrap import block_bootstrap
from threadx.validation.grading import grade
from threadx.validation.pbo import pbo_from_moments
from threadx.validation.walkforward import Window, plan_windows


def is_empty(fig: go.Figure) -> bool:
    return len(fig.data) == 0 and any(a.text for a in fig.layout.annotations)


def vline_xs(fig: go.Figure) -> list[float]:
    return [s.x0 for s in fig.layout.shapes if s.type == "line" and s.x0 == s.x1]


@pytest.fixture
def index() -> pd.DatetimeIndex:
    return pd.date_range("2024-01-01", periods=1000, freq="h", tz="UTC")


@pytest.fixture
def table() -> pd.DataFrame:
    """Four windows, the third without a winner."""
    start = pd.Timestamp("2024-01-01", tz="UTC")
    return pd.DataFrame({
        "window": [0, 1, 2, 3],
        "oos_start": [start + pd.Timedelta(days=10 * k) for k in range(4)],
        "oos_end": [start + pd.Timedelta(days=10 * k + 9) for k in range(4)],
        "regime": ["bull", "range", "crash", "bull"],
        "combo_id": [3, 5, None, 3],
        "fast_period": [10, 20, np.nan, 10],
        "ma_type": ["sma", "ema", None, "sma"],
        "is_sharpe": [1.5, 0.8, np.nan, 1.1],
        "oos_sharpe": [0.4, -0.2, np.nan, 0.9],
        "is_total_return": [0.2, 0.1, np.nan, 0.15],
        "oos_total_return": [0.05, -0.03, np.nan, 0.08],
    })


# --- timeline ------------------------------------------------------------------------------

def test_timeline_draws_one_is_and_one_oos_segment_per_window(index):
    windows = plan_windows(len(index), 300, 100)
    fig = vc.window_timeline_figure(windows, index)
    assert len(windows) == 7
    is_trace, oos_trace = fig.data[1], fig.data[2]
    assert (is_trace.name, oos_trace.name) == ("In-sample", "Out-of-sample")
    assert list(is_trace.y) == [f"W{k}" for k in range(7)] == list(oos_trace.y)
    assert pd.Timestamp(is_trace.base[0]) == index[0] and pd.Timestamp(oos_trace.base[0]) == index[300]
    assert is_trace.x[0] == pytest.approx(300 * 3_600_000)  # durations in ms on a date axis
    assert oos_trace.x[-1] == pytest.approx(100 * 3_600_000)
    assert fig.layout.title.text.startswith("7 walk-forward windows: rolling IS 300 bars, OOS 100 bars")


def test_timeline_of_anchored_windows_and_bar_positions():
    windows = plan_windows(1000, 300, 100, anchored=True)
    fig = vc.window_timeline_figure(windows)  # no index: bar positions
    assert all(b == 0 for b in fig.data[1].base)
    assert "anchored" in fig.layout.title.text
    assert fig.data[2].x[-1] == 100 and fig.data[2].base[-1] == windows[-1].oos_start
    assert fig.layout.xaxis.title.text == "Bar"


def test_timeline_window_ending_on_the_last_bar(index):
    fig = vc.window_timeline_figure([Window(0, 0, 900, 900, 1000)], index)
    end = pd.Timestamp(fig.data[2].base[0]) + pd.Timedelta(milliseconds=fig.data[2].x[0])
    assert end == index[-1] + pd.Timedelta(hours=1)


def test_timeline_without_windows_says_so():
    fig = vc.window_timeline_figure([], None)
    assert is_empty(fig) and "No walk-forward window fits" in fig.layout.annotations[0].text


# --- walk-forward results ------------------------------------------------------------------

def test_is_oos_bars_group_windows_and_colour_oos_by_regime(table):
    fig = vc.is_oos_bars_figure(table, "sharpe")
    names = [t.name for t in fig.data]
    assert names == ["In-sample", "OOS · bull", "OOS · range", "OOS · crash"]
    assert list(fig.data[0].x) == ["W0", "W1", "W2", "W3"]
    bull = fig.data[1]
    assert list(bull.x) == ["W0", "W3"] and list(bull.y) == [0.4, 0.9]
    assert bull.marker.color == vc.REGIME_COLORS["bull"]
    assert {t.offsetgroup for t in fig.data[1:]} == {"oos"} and fig.layout.barmode == "group"
    assert "mean IS 1.13" in fig.layout.title.text and "mean OOS 0.37" in fig.layout.title.text
    # the figures on a second line (on one, a chart given half the page cut them: "mean O…"), with room above
    head, detail = fig.layout.title.text.split("<br>")
    assert head == "Sharpe in and out of sample per window" and "mean OOS 0.37" in detail
    # below the band where Plotly's toolbar shows on hover (it covered "per window" at 1280 px)
    assert fig.layout.title.pad.t == vc.TOOLBAR_BAND_PX and fig.layout.title.yref == "container"
    assert fig.layout.margin.t == 56 + (vc.TOOLBAR_BAND_PX - 12) + 18
    # the legend at the figure's foot: above the plot, five rows of it ran into the title at 280 px
    assert fig.layout.legend.yref == "container" and fig.layout.legend.y == 0


def test_is_oos_bars_percent_metric_and_missing_columns(table):
    fig = vc.is_oos_bars_figure(table, "total_return")
    assert fig.layout.yaxis.tickformat == ".0%"
    assert is_empty(vc.is_oos_bars_figure(table, "calmar"))
    assert is_empty(vc.is_oos_bars_figure(table.iloc[:0], "sharpe"))


def test_stitched_equity_against_the_full_period_optimum():
    idx = pd.date_range("2024-01-01", periods=200, freq="h", tz="UTC")
    oos = pd.Series(np.linspace(10_000, 11_000, 200), index=idx)
    bench = pd.Series(np.linspace(10_000, 12_000, 200), index=idx)
    fig = vc.stitched_equity_figure(oos, bench, initial_capital=10_000, boundaries=[idx[0], idx[100]],
                                    benchmark_label="Full-period optimum (fast=10)")
    assert len(fig.data) == 2
    assert fig.data[0].name.startswith("Stitched OOS") and "10.00 %" in fig.data[0].name
    assert fig.data[1].name == "Full-period optimum (fast=10),<br>over the OOS span (20.00 %)"
    assert fig.layout.title.text == "Stitched OOS equity vs full-period optimum"
    many = vc.stitched_equity_figure(oos, bench, benchmark_label="Full-period optimum (fast_period=15, slow_period=30)")
    assert many.data[1].name.startswith("Full-period optimum (fast_period=15,<br>slow_period=30),<br>over")  # wrapped
    assert pd.Timestamp(vline_xs(fig)[0]) == idx[100]  # the first boundary is the chart's start: not drawn
    # no benchmark, long series downsampled for display
    long = pd.Series(np.random.default_rng(0).normal(0, 1, 50_000).cumsum() + 1e5,
                     index=pd.date_range("2020-01-01", periods=50_000, freq="h"))
    fig = vc.stitched_equity_figure(long, None, max_points=1000)
    assert len(fig.data) == 1 and len(fig.data[0].x) <= 1100
    # (a chart two to a row: over 42 characters its figures go on a smaller line)
    assert fig.layout.title.text.split("<br>")[0] == "Stitched OOS equity"
    assert "(50,000 bars, downsampled)" in fig.layout.title.text.split("<br>")[1]
    assert is_empty(vc.stitched_equity_figure(pd.Series(dtype=float)))


def test_drift_panels_per_param_with_the_searched_range(table):
    drift = pd.DataFrame({"param": ["fast_period", "ma_type"], "values": [[10, 20, 10], ["sma", "ema", "sma"]],
                          "distinct": [2, 2], "relative_spread": [0.3, np.nan]})
    fig = vc.drift_figure(table, drift, {"fast_period": [5, 10, 20, 40], "ma_type": ["sma", "ema"]})
    assert len(fig.data) == 2
    assert list(fig.data[0].x) == ["W0", "W1", "W3"]  # the window without a winner is left out
    assert list(fig.data[0].y) == [10, 20, 10]
    assert list(fig.data[1].y) == ["sma", "ema", "sma"]
    assert fig.layout.yaxis2.type == "category" and list(fig.layout.yaxis2.categoryarray) == ["sma", "ema"]
    band = next(s for s in fig.layout.shapes if s.type == "rect")
    assert (band.y0, band.y1) == (5.0, 40.0)
    titles = [a.text for a in fig.layout.annotations]
    assert titles[0] == "fast_period: 2 values, spread 30%"  # (short: the chart gets half the page)


def test_drift_with_nothing_varying_or_no_winner(table):
    empty_drift = pd.DataFrame(columns=["param", "values", "distinct", "relative_spread"])
    assert is_empty(vc.drift_figure(table, empty_drift))
    drift = pd.DataFrame({"param": ["fast_period"], "values": [[]], "distinct": [0], "relative_spread": [np.nan]})
    assert is_empty(vc.drift_figure(table.assign(combo_id=None), drift))


def points_frame(n_windows: int, n_combos: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "window": np.repeat(np.arange(n_windows), n_combos),
        "combo_id": np.tile(np.arange(n_combos), n_windows),
        "is": rng.normal(size=n_windows * n_combos),
        "oos": rng.normal(size=n_windows * n_combos),
        "selected": np.tile(np.arange(n_combos), n_windows) == 0,
    })


def test_is_oos_scatter_highlights_winners_and_samples_big_runs():
    points = points_frame(3, 50)
    fig = vc.is_oos_scatter_figure(points, "sharpe")
    assert len(fig.data[0].x) == 147 and len(fig.data[1].x) == 3
    assert fig.data[1].name == "Window winners (3)"
    assert fig.data[0].name == "Other combos (147)"  # "All combos (147)" beside 150 pairs: the winners are not in it
    assert "rank correlation" in fig.layout.title.text and "sampled" not in fig.layout.title.text
    big = points_frame(10, 5_000)
    fig = vc.is_oos_scatter_figure(big, "sharpe", max_points=2_000)
    assert len(fig.data[1].x) == 10  # every winner kept
    assert len(fig.data[0].x) + len(fig.data[1].x) == 2_000
    assert "2,000 of 50,000 pairs sampled for display" in fig.layout.title.text


def test_is_oos_scatter_degenerate_inputs():
    assert is_empty(vc.is_oos_scatter_figure(points_frame(0, 0), "sharpe"))
    nan = points_frame(2, 3).assign(oos=np.nan)
    assert is_empty(vc.is_oos_scatter_figure(nan, "sharpe"))


# --- robustness ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def boot():
    returns = np.random.default_rng(3).normal(0.0005, 0.01, 2_000)
    return block_bootstrap(returns, n=300, seed=1, bars_per_year=8760)


def test_bootstrap_figure_marks_ci_bounds_and_observed(boot):
    fig = vc.bootstrap_figure(boot)
    hist = [t for t in fig.data if isinstance(t, go.Histogram)]
    assert len(hist) == 4 and len(hist[0].x) == 300 and len(hist[3].x) == len(boot.null_sharpes)
    xs = vline_xs(fig)
    for stat in ("sharpe", "total_return", "max_drawdown"):
        lo, hi = boot.ci[stat]
        assert lo in xs and hi in xs
        assert boot.observed[stat] in xs
    dashed = [s for s in fig.layout.shapes if s.line.dash == "dash"]
    assert len(dashed) == 6  # two CI bounds per statistic
    titles = [a.text for a in fig.layout.annotations]
    assert f"p = {boot.p_value:.3f}" in titles[3]
    assert titles[0].startswith("Sharpe (annualised): ") and "95 % CI [" in titles[0]


def test_bootstrap_table_and_empty_bootstrap(boot):
    frame = vc.bootstrap_table(boot)
    assert list(frame["statistic"]) == ["Sharpe (annualised)", "Total return", "Max drawdown"]
    assert frame.loc[1, "CI low"].endswith("%")
    empty = SimpleNamespace(samples={}, ci={}, observed={}, null_sharpes=np.empty(0), p_value=np.nan, n=0, block=0)
    assert is_empty(vc.bootstrap_figure(empty))


@pytest.fixture(scope="module")
def pbo():
    rng = np.random.default_rng(5)
    sums = rng.normal(0, 0.01, (40, 32))
    sqs = sums ** 2 + 0.01
    return pbo_from_moments(sums, sqs, np.full(32, 100), S=8)


def test_pbo_logit_histogram_splits_at_zero(pbo):
    fig = vc.pbo_logit_figure(pbo)
    low, high = fig.data
    assert len(low.x) + len(high.x) == len(pbo.logits) == pbo.n_splits
    assert all(v <= 0 for v in low.x) and all(v > 0 for v in high.x)
    bins = fig.data[0].xbins  # 0 is a bin edge: no bin mixes both colours
    assert bins.start <= 0 and abs(bins.start / bins.size - round(bins.start / bins.size)) < 1e-6
    assert 0 in vline_xs(fig)
    head, formula = fig.layout.title.text.split("<br>")
    assert head == f"PBO = {pbo.pbo:.2f} over {pbo.n_splits:,} CSCV splits (S = 8)"
    assert "λ = ln(ω / (1 - ω))" in formula  # (on the title's small line: as the axis title it was cut at 1024 px)
    assert all(len(line) <= vc.HALF_PAGE_CHARS for trace in fig.data for line in trace.name.split("<br>"))
    assert is_empty(vc.pbo_logit_figure(None))


def test_pbo_scatter_annualises_and_draws_the_fit(pbo):
    fig = vc.pbo_scatter_figure(pbo, bars_per_year=100)
    np.testing.assert_allclose(fig.data[0].x, np.asarray(pbo.is_sharpe_best) * 10)
    fit = fig.data[1]
    x0 = min(pbo.is_sharpe_best)
    assert fit.y[0] == pytest.approx((pbo.degradation_intercept + pbo.degradation_slope * x0) * 10)
    assert "annualised" in fig.layout.title.text
    assert f"OOS Sharpe < 0 in {pbo.prob_oos_loss:.0%}" in fig.data[0].name
    assert "per bar" in vc.pbo_scatter_figure(pbo).layout.title.text
    assert is_empty(vc.pbo_scatter_figure(None))


def test_stability_heatmap_outlines_the_winner():
    grid = pd.DataFrame({
        "fast": [5, 5, 10, 10, 15], "slow": [20, 30, 20, 30, 30], "combo_id": [0, 1, 2, 3, 4],
        "sharpe": [0.1, 0.2, 0.3, 0.5, 0.4], "winner": [False, False, False, True, False],
    })
    fig = vc.stability_heatmap_figure(grid, "fast", "slow", "sharpe", radius=3)
    heat, marker = fig.data
    assert list(heat.x) == ["5", "10", "15"] and list(heat.y) == ["20", "30"]
    assert np.isnan(heat.z[0][2])  # (15, 20) not in the grid: a blank cell
    assert heat.z[1][1] == 0.5
    assert heat.texttemplate == "%{z:,.2f}"  # one precision in every cell ('.3~g' wrote -0.951 beside -0.73)
    assert (marker.x[0], marker.y[0]) == ("10", "30")
    assert "winner outlined: fast = 10, slow = 30" in fig.layout.title.text and "±3 steps" in fig.layout.title.text
    assert is_empty(vc.stability_heatmap_figure(grid.iloc[:0], "fast", "slow", "sharpe"))


# --- grade card -------------------------------------------------------------------------------

def test_grade_rows_one_per_component_with_its_sentence():
    g = grade(oos_is_ratio=0.75, p_value=0.02, consistency=0.8, dsr=0.9, stability=0.7, on_edge=False, pbo=0.3,
              n_trades=40)
    rows = vc.grade_rows(g)
    assert [r["name"] for r in rows] == ["oos_is_ratio", "p_value", "consistency", "dsr", "stability", "pbo"]
    assert rows[0]["label"] == "OOS / IS ratio" and rows[0]["score"] == "10 / 20"
    assert rows[1]["score"] == "20 / 20" and rows[4]["score"] == "5 / 10" and rows[5]["score"] == "7.5 / 15"
    assert all(r["explanation"].endswith(".") for r in rows)
    assert vc.grade_color(g.letter) == vc.GRADE_COLORS[g.letter]
    assert vc.grade_rows(SimpleNamespace(components=[])) == []


def test_titles_of_charts_two_to_a_row_are_wrapped_to_their_width():
    """At 1024 px with the sidebar open a half-page chart is ~280 px wide: its title was cut
    ("IS winner across CSCV splits: IS vs OOS Shar"); a full-width chart keeps its title on one line."""
    title = "IS winner across CSCV splits: IS vs OOS Sharpe"
    half, full = go.Figure(), go.Figure()
    vc.set_title(half, title, half_page=True)
    vc.set_title(full, title)
    assert half.layout.title.text == "IS winner across CSCV splits:<br>IS vs OOS Sharpe"  # at its colon
    assert full.layout.title.text == title
    assert half.layout.margin.t == full.layout.margin.t + vc._DETAIL_PX  # room for the second line
    long = "Stability: Sharpe around the winner over atr_multiplier × max_hold_bars"
    lines = vc._title_lines(long, vc.HALF_PAGE_CHARS)
    assert len(lines) == 2 and all(len(line) <= vc.HALF_PAGE_CHARS for line in lines)  # between words
    assert " ".join(lines) == long
    assert vc._title_lines("Parameter_drift_of_a_very_long_param_name_that_does_not_fit", 42) == [
        "Parameter_drift_of_a_very_long_param_name_that_does_not_fit"]  # a word longer than the line stays whole
