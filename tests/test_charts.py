"""Plotly figure builders of the workstation (threadx.ui.charts), without Streamlit."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from threadx import units
from threadx.ui import charts as C


def make_ohlcv(n: int, freq: str = "1h", seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[100.0, close[:-1]]
    spread = np.abs(rng.normal(0, 0.005, n)) * close
    index = pd.date_range("2023-01-01", periods=n, freq=freq, tz="UTC", name="timestamp")
    return pd.DataFrame({
        "open": open_, "high": np.maximum(open_, close) + spread, "low": np.minimum(open_, close) - spread,
        "close": close, "volume": rng.uniform(1, 10, n),
    }, index=index)


def make_trades(df: pd.DataFrame) -> pd.DataFrame:
    """Five trades: long win, long loss, long win, short win, short loss."""
    rows = []
    specs = [("long", 10), ("long", -5), ("long", 3), ("short", 7), ("short", -2)]
    for k, (side, pnl) in enumerate(specs):
        i, j = 10 + 20 * k, 15 + 20 * k
        rows.append(dict(
            entry_time=df.index[i], exit_time=df.index[j], side=side, qty=1.0,
            entry_price=df["open"].iloc[i], exit_price=df["open"].iloc[j], fees=0.1, funding=0.0,
            pnl=float(pnl), return_pct=float(pnl) / 10, bars_held=j - i,
            exit_reason="signal" if pnl > 0 else "stop_loss", entry_i=i, exit_i=j,
        ))
    return pd.DataFrame(rows)


def make_results(n: int = 300, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "combo_id": np.arange(n),
        "fast": rng.choice([5, 10, 15, 20], n),
        "z": rng.choice([0.5, 1.0, 1.5], n),
        "flag": rng.choice([True, False], n),
        "ma_type": rng.choice(["sma", "ema"], n),
        "sharpe": rng.normal(0.5, 1.0, n),
        "max_drawdown": -rng.uniform(0.01, 0.6, n),
        "total_return": rng.normal(0.1, 0.3, n),
        "n_trades": rng.integers(0, 100, n).astype(float),
        "status": "ok",
        "error": "",
    })
    frame.loc[frame.index[:15], "status"] = "error"
    frame.loc[frame.index[:15], "sharpe"] = 99.0  # must be ignored (status != ok)
    frame.loc[frame.index[15:25], "sharpe"] = np.nan
    return frame


def ok_rows(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    return results[(results["status"] == "ok") & results[metric].notna()]


# --- price chart ---------------------------------------------------------------------------------

def test_price_figure_small_frame_is_not_resampled():
    df = make_ohlcv(500)
    fig = C.price_figure(df, title="BTC")
    types = [type(t) for t in fig.data]
    assert types == [go.Candlestick, go.Bar]
    candle = fig.data[0]
    assert len(candle.x) == 500
    np.testing.assert_allclose(candle.close, df["close"].to_numpy())
    np.testing.assert_allclose(fig.data[1].y, df["volume"].to_numpy())
    assert fig.layout.title.text == "BTC"
    assert fig.layout.xaxis.rangeslider.visible is False
    assert not fig.layout.xaxis.rangebreaks and not fig.layout.xaxis2.rangebreaks
    # the volume subplot shares the x axis of the candles
    assert (fig.data[1].xaxis, fig.data[1].yaxis) == ("x2", "y2")
    assert fig.layout.xaxis.matches == "x2"
    fig.to_json()


def test_price_figure_resamples_above_max_points_and_keeps_extremes():
    df = make_ohlcv(10_000)
    fig = C.price_figure(df, max_points=1000, title="BTC")
    candle = fig.data[0]
    n = len(candle.x)
    assert 100 < n <= 1000
    assert "resampled" in fig.layout.title.text and "10,000" in fig.layout.title.text
    assert candle.open[0] == df["open"].iloc[0]
    assert candle.close[-1] == df["close"].iloc[-1]
    assert max(candle.high) == df["high"].max()
    assert min(candle.low) == df["low"].min()
    assert math.isclose(float(np.sum(fig.data[-1].y)), float(df["volume"].sum()), rel_tol=1e-12)
    # every bin is the pandas OHLC resample of its UTC bin
    width = pd.Timestamp(candle.x[1]) - pd.Timestamp(candle.x[0])
    ref = df.resample(width, origin="epoch").agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}).dropna()
    assert len(ref) == n
    np.testing.assert_allclose(candle.open, ref["open"])
    np.testing.assert_allclose(candle.high, ref["high"])
    np.testing.assert_allclose(candle.low, ref["low"])
    np.testing.assert_allclose(candle.close, ref["close"])
    fig.to_json()


def test_price_figure_resamples_a_100k_frame_quickly():
    df = make_ohlcv(120_000, freq="1min")
    fig = C.price_figure(df, overlays={"mid": df["close"].rolling(20).mean()})
    assert len(fig.data[0].x) <= 4000
    assert len(fig.data[1].x) == len(fig.data[0].x)
    assert max(fig.data[0].high) == df["high"].max()


def test_price_figure_overlays_are_lines_aligned_with_candles():
    df = make_ohlcv(900)
    mid = df["close"].rolling(10).mean()
    fig = C.price_figure(df, overlays={"MA 10": mid, "arr": mid.to_numpy() * 1.01})
    lines = [t for t in fig.data if isinstance(t, (go.Scatter, go.Scattergl))]
    assert [t.name for t in lines] == ["MA 10", "arr"]
    assert all(isinstance(t, go.Scatter) for t in lines)  # within the display budget -> SVG
    np.testing.assert_allclose(np.asarray(lines[0].y, dtype=float), mid.to_numpy(), equal_nan=True)
    # resampled: overlay follows the candles, last value of each bin
    fig = C.price_figure(df, overlays={"MA 10": mid}, max_points=500)
    line = fig.data[1]
    assert len(line.y) == len(fig.data[0].x)
    assert line.y[-1] == mid.iloc[-1]
    with pytest.raises(ValueError, match="overlay"):
        C.price_figure(df, overlays={"short": np.arange(10.0)})


def test_price_figure_trade_markers_by_side_and_outcome():
    df = make_ohlcv(300)
    trades = make_trades(df)
    fig = C.price_figure(df, trades=trades, quote="USDT")
    markers = {t.name: t for t in fig.data if isinstance(t, (go.Scatter, go.Scattergl)) and t.mode == "markers"}
    assert set(markers) == {"Long entry", "Short entry", "Long exit", "Short exit"}
    entries = sum(len(markers[n].x) for n in ("Long entry", "Short entry"))
    exits = sum(len(markers[n].x) for n in ("Long exit", "Short exit"))
    assert entries == exits == len(trades)
    assert len(markers["Long entry"].x) == 3 and len(markers["Short entry"].x) == 2
    assert list(markers["Long entry"].marker.symbol) == ["triangle-up", "triangle-up-open", "triangle-up"]
    assert list(markers["Short entry"].marker.symbol) == ["triangle-down", "triangle-down-open"]
    assert list(markers["Long exit"].marker.symbol) == ["circle", "circle-open", "circle"]
    assert list(markers["Short exit"].marker.symbol) == ["circle", "circle-open"]
    assert markers["Long entry"].marker.color == C.LONG_COLOR == markers["Long exit"].marker.color
    assert markers["Short entry"].marker.color == C.SHORT_COLOR == markers["Short exit"].marker.color
    np.testing.assert_allclose(markers["Short entry"].y, trades.loc[trades.side == "short", "entry_price"])
    np.testing.assert_allclose(markers["Long exit"].y, trades.loc[trades.side == "long", "exit_price"])
    hover = markers["Long entry"].hovertemplate
    assert "USDT" in hover and "%" in hover and "bars" in hover and "exit" in hover
    assert markers["Long entry"].customdata[1][5] == "stop_loss"
    fig.to_json()


def test_price_figure_with_a_real_backtest(tmp_path, monkeypatch):
    import threadx
    from threadx.data.bars import as_bars
    from threadx.contract import prepare_signals

    for var in ("THREADX_DATA_ROOT", "THREADX_CACHE_DIR", "THREADX_RESULTS_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    df = threadx.load_ohlcv("sample:BTC_USDT-1h").iloc[:5000]
    res = threadx.backtest(df, "bb_atr", {})
    spec = threadx.strategies()["bb_atr"]
    params = spec.normalize({})
    values, _, _ = prepare_signals(spec, as_bars(df), params)
    overlays = {legend: values[label][out] for legend, (label, out) in spec.overlays(params).items()}
    fig = C.price_figure(df, res.trades, overlays, title="BTC/USDT 1h")
    assert "resampled" in fig.layout.title.text
    markers = [t for t in fig.data if getattr(t, "mode", None) == "markers"]
    assert sum(len(t.x) for t in markers) == 2 * len(res.trades) > 0
    wins = int((res.trades["pnl"] > 0).sum())
    filled = sum(sum(not s.endswith("-open") for s in t.marker.symbol) for t in markers if "entry" in t.name)
    assert filled == wins
    eq = C.equity_figure(res.equity, res.drawdown, 10_000.0)
    assert min(eq.data[1].y) == res.drawdown.min()
    for f in (fig, eq, C.returns_histogram(res.trades)):
        f.to_json()


# --- equity -----------------------------------------------------------------------------------------

def test_equity_figure_full_resolution_and_computed_drawdown():
    eq = pd.Series(np.r_[100.0, 110, 99, 120, 90, 130],
                   index=pd.date_range("2024-01-01", periods=6, freq="D", tz="UTC"))
    fig = C.equity_figure(eq, initial_capital=100.0)
    assert len(fig.data) == 3
    np.testing.assert_allclose(fig.data[0].y, eq.to_numpy())
    np.testing.assert_allclose(fig.data[1].y, (eq / eq.cummax() - 1).to_numpy())
    assert fig.data[1].fill == "tozeroy"
    assert fig.data[1].yaxis == "y2"
    assert "%" in fig.layout.yaxis2.tickformat
    level = fig.data[2]  # the initial capital: a dashed legend entry (a label on the line sat on the benchmark)
    assert level.name == "Initial capital 100" and list(level.y) == [100.0, 100.0] and level.line.dash == "dash"
    assert list(level.x) == list(C.plot_times(eq.index[[0, -1]])) and level.hoverinfo == "skip"
    assert fig.layout.showlegend is True and not fig.layout.annotations and not fig.layout.shapes  # (no label left)
    assert C.equity_figure(eq).layout.showlegend is False  # a single line needs no legend
    assert "drawn as" not in fig.layout.title.text
    fig.to_json()


def test_equity_figure_downsamples_keeping_extremes():
    rng = np.random.default_rng(3)
    n = 50_000
    eq = pd.Series(10_000 * np.exp(np.cumsum(rng.normal(0, 0.002, n))),
                   index=pd.date_range("2020-01-01", periods=n, freq="h", tz="UTC"))
    dd = eq / eq.cummax() - 1
    fig = C.equity_figure(eq, dd, max_points=2000)
    e, d = fig.data
    assert len(e.x) <= 2002 and len(d.x) <= 2002
    assert isinstance(e, go.Scatter)  # the display budget stays under GL_THRESHOLD: SVG
    assert max(e.y) == eq.max() and min(e.y) == eq.min()
    assert e.y[0] == eq.iloc[0] and e.y[-1] == eq.iloc[-1]
    assert min(d.y) == dd.min()
    assert pd.Timestamp(d.x[int(np.argmin(d.y))]).tz_localize("UTC") == dd.idxmin()  # naive UTC
    assert f"50,000 bars drawn as {len(e.x):,} points (the low and high of each bin kept)" in fig.layout.title.text


# --- histogram ----------------------------------------------------------------------------------------

def test_returns_histogram_splits_wins_and_losses():
    trades = make_trades(make_ohlcv(300))
    fig = C.returns_histogram(trades)
    assert [type(t) for t in fig.data] == [go.Histogram, go.Histogram]
    wins, losses = fig.data
    assert len(wins.x) == 3 and len(losses.x) == 2
    assert wins.marker.color == C.LONG_COLOR and losses.marker.color == C.SHORT_COLOR
    assert wins.xbins.size == losses.xbins.size  # shared bins
    assert "%" in fig.layout.xaxis.title.text
    fig.to_json()
    empty = C.returns_histogram(trades.iloc[:0])
    assert len(empty.data) == 0 and "No trades" in empty.layout.annotations[0].text


# --- heatmap -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("agg", ["max", "mean"])
def test_heatmap_values_equal_pandas_pivot(agg):
    results = make_results()
    fig = C.heatmap_figure(results, "fast", "z", "sharpe", agg=agg)
    assert len(fig.data) == 1 and isinstance(fig.data[0], go.Heatmap)
    ref = ok_rows(results, "sharpe").pivot_table(index="z", columns="fast", values="sharpe", aggfunc=agg)
    np.testing.assert_allclose(np.asarray(fig.data[0].z, dtype=float), ref.to_numpy(), equal_nan=True)
    assert list(fig.data[0].x) == [str(v) for v in ref.columns]
    assert list(fig.data[0].y) == [f"{v:g}" for v in ref.index]
    assert np.nanmax(np.asarray(fig.data[0].z, dtype=float)) < 99  # error rows ignored
    assert fig.layout.xaxis.title.text == "fast" and fig.layout.yaxis.title.text == "z"
    assert "Sharpe" in fig.data[0].colorbar.title.text and agg in fig.data[0].colorbar.title.text
    fig.to_json()


def _colour_at(scale, low: float, high: float, value: float) -> tuple[int, int, int]:
    """The (r, g, b) a Plotly colour scale gives ``value`` over [low, high]."""
    import re

    from plotly.colors import sample_colorscale

    scale = scale if isinstance(scale, str) else [[float(at), colour] for at, colour in scale]
    text = sample_colorscale(scale, [(value - low) / (high - low)])[0]
    return tuple(int(float(v)) for v in re.findall(r"[\d.]+", text)[:3])


def _trace_colour(trace, value: float, axis: str = "z") -> tuple[int, int, int]:
    """The colour ``value`` gets in a heatmap (``axis`` "z") or a line (``axis`` "c") as Plotly
    draws it: over [min, max] when they are set, else symmetric about the mid."""
    colours = trace if axis == "z" else trace.line
    low, high, mid = (getattr(colours, f"{axis}{k}") for k in ("min", "max", "mid"))
    values = np.asarray(trace.z if axis == "z" else colours.color, dtype=float)
    if low is None:
        reach = np.nanmax(np.abs(values - mid))
        low, high = mid - reach, mid + reach
    return _colour_at(colours.colorscale, low, high, value)


def _red(rgb) -> bool:
    return rgb[0] > rgb[1] + 20


def _green(rgb) -> bool:
    return rgb[1] > rgb[0] + 20


def test_a_heatmap_of_a_signed_metric_keeps_gains_green_and_losses_red():
    """Every Sharpe negative (-9 to -1) was painted green for the least bad, the scale's middle
    moving with the data; then yellow sat at 0 with a scale symmetric about it, which squeezed
    a run where every combo gains (or loses) into a few pale shades: now a one-sided run gets its
    side's colours only, over its own range; a count keeps the data's own scale."""
    from threadx.ui import validation_charts as vc

    results = make_results()
    results["sharpe"] = -np.abs(results["sharpe"]) - 1.0  # every combo loses
    z = np.asarray(C.heatmap_figure(results, "fast", "z", "sharpe").data[0].z, dtype=float)
    heat = C.heatmap_figure(results, "fast", "z", "sharpe").data[0]
    worst, best = np.nanmin(z), np.nanmax(z)
    assert _red(_trace_colour(heat, worst)) and _red(_trace_colour(heat, best))  # the least bad is no green
    assert heat.zmin == worst and heat.zmax == best  # the whole range of the losses' colours is used
    line = C.parallel_coordinates_figure(results, ["fast", "z"], "sharpe").data[0]
    assert line.line.cmin == results.loc[results.status == "ok", "sharpe"].min()
    assert _red(_trace_colour(line, float(line.line.cmax), axis="c"))
    grid = pd.DataFrame({"fast": [5, 5, 10, 10], "z": [1.0, 2.0, 1.0, 2.0], "sharpe": [-3.0, -2.0, -1.0, -4.0],
                         "winner": [False, False, True, False]})
    stability = vc.stability_heatmap_figure(grid, "fast", "z", "sharpe").data[0]
    assert _red(_trace_colour(stability, -1.0)) and stability.zmin == -4.0

    results["sharpe"] = 1.5 + np.abs(results["sharpe"]) / 100  # every combo gains, values close together
    heat = C.heatmap_figure(results, "fast", "z", "sharpe").data[0]
    z = np.asarray(heat.z, dtype=float)
    worst, best = _trace_colour(heat, np.nanmin(z)), _trace_colour(heat, np.nanmax(z))
    assert _green(worst) and _green(best)
    assert sum(abs(a - b) for a, b in zip(worst, best)) > 150  # told apart (symmetric about 0: 37)

    results = make_results()  # both sides: yellow at 0
    results["sharpe"] -= results.loc[results.status == "ok", "sharpe"].median()
    heat = C.heatmap_figure(results, "fast", "z", "sharpe", agg="mean").data[0]
    assert np.nanmin(np.asarray(heat.z, dtype=float)) < 0 < np.nanmax(np.asarray(heat.z, dtype=float))
    assert heat.zmid == 0.0 and heat.zmin is None and heat.colorscale is not None
    pf = C.heatmap_figure(results.assign(profit_factor=results["sharpe"] + 1), "fast", "z", "profit_factor", agg="mean")
    assert pf.data[0].zmid == 1.0  # profit factor: at 1
    count = C.heatmap_figure(results, "fast", "z", "n_trades").data[0]
    assert count.zmid is None and count.zmin is None


def test_heatmap_with_bool_and_choice_axes():
    results = make_results()
    fig = C.heatmap_figure(results, "ma_type", "flag", "total_return", agg="mean")
    ref = ok_rows(results, "total_return").pivot_table(index="flag", columns="ma_type", values="total_return",
                                                       aggfunc="mean")
    np.testing.assert_allclose(np.asarray(fig.data[0].z, dtype=float), ref.to_numpy())
    assert list(fig.data[0].y) == ["False", "True"]


def test_heatmap_errors():
    results = make_results()
    with pytest.raises(ValueError, match="different"):
        C.heatmap_figure(results, "fast", "fast", "sharpe")
    with pytest.raises(ValueError, match="'nope'"):
        C.heatmap_figure(results, "fast", "nope", "sharpe")
    with pytest.raises(ValueError, match="'calmar'"):
        C.heatmap_figure(results, "fast", "z", "calmar")
    with pytest.raises(ValueError, match="agg"):
        C.heatmap_figure(results, "fast", "z", "sharpe", agg="median")
    none_ok = results.assign(status="error")
    assert len(C.heatmap_figure(none_ok, "fast", "z", "sharpe").data) == 0


# --- parallel coordinates ---------------------------------------------------------------------------

def test_parallel_coordinates_dimensions_and_encoding():
    results = make_results()
    params = ["fast", "z", "flag", "ma_type"]
    fig = C.parallel_coordinates_figure(results, params, "sharpe")
    assert len(fig.data) == 1 and isinstance(fig.data[0], go.Parcoords)
    dims = fig.data[0].dimensions
    assert [d.label for d in dims] == [*params, "Sharpe"]
    ok = ok_rows(results, "sharpe")
    assert len(dims[0].values) == len(ok)
    np.testing.assert_allclose(dims[0].values, ok["fast"].to_numpy(dtype=float))
    np.testing.assert_allclose(dims[-1].values, ok["sharpe"].to_numpy())
    np.testing.assert_allclose(fig.data[0].line.color, ok["sharpe"].to_numpy())
    # bool and choice params become integer codes with labels
    flag, ma = dims[2], dims[3]
    assert list(flag.tickvals) == [0, 1] and list(flag.ticktext) == ["False", "True"]
    assert list(ma.ticktext) == ["ema", "sma"]
    decoded = [ma.ticktext[int(v)] for v in ma.values]
    assert decoded == list(ok["ma_type"])
    assert [flag.ticktext[int(v)] for v in flag.values] == [str(v) for v in ok["flag"]]
    fig.to_json()


def test_parallel_coordinates_keeps_the_top_rows():
    results = make_results(2000)
    fig = C.parallel_coordinates_figure(results, ["fast", "z"], "sharpe", max_rows=100)
    shown = np.sort(np.asarray(fig.data[0].dimensions[-1].values))
    top = np.sort(ok_rows(results, "sharpe")["sharpe"].nlargest(100).to_numpy())
    np.testing.assert_allclose(shown, top)
    assert "top 100" in fig.layout.title.text
    with pytest.raises(ValueError, match="'nope'"):
        C.parallel_coordinates_figure(results, ["nope"], "sharpe")


# --- pareto ----------------------------------------------------------------------------------------------

def brute_front(x: np.ndarray, y: np.ndarray) -> set[tuple[float, float]]:
    keep = set()
    for i in range(len(x)):
        dominated = np.any((x >= x[i]) & (y >= y[i]) & ((x > x[i]) | (y > y[i])))
        if not dominated:
            keep.add((x[i], y[i]))
    return keep


def test_pareto_front_equals_brute_force():
    results = make_results(400)
    fig = C.pareto_figure(results)  # max_drawdown vs sharpe, both maximised
    assert [type(t) for t in fig.data] == [go.Scattergl, go.Scatter]
    ok = results[(results["status"] == "ok") & results["sharpe"].notna()]
    assert len(fig.data[0].x) == len(ok)
    expected = brute_front(ok["max_drawdown"].to_numpy(), ok["sharpe"].to_numpy())
    got = set(zip(fig.data[1].x, fig.data[1].y))
    assert got == expected
    assert list(fig.data[1].x) == sorted(fig.data[1].x)
    # hover lists the params that vary
    text = fig.data[1].text[0]
    for p in ("fast", "z", "flag", "ma_type"):
        assert f"{p} = " in text
    assert "status" not in text and "sharpe" not in text
    assert fig.layout.xaxis.title.text == "Max drawdown" and fig.layout.yaxis.title.text == "Sharpe"
    fig.to_json()


def test_pareto_uses_a_given_front():
    results = make_results(100)
    front = results.iloc[[30, 40]]
    fig = C.pareto_figure(results, "total_return", "sharpe", front=front, params=["fast"])
    assert sorted(fig.data[1].x) == sorted(front["total_return"])
    assert fig.data[1].text[0].count("=") == 1


# --- metric cards ----------------------------------------------------------------------------------------

def test_metric_cards_formatting():
    metrics = {
        "total_return": 0.1234, "cagr": -0.05, "sharpe": 1.2345, "sortino": float("inf"), "max_drawdown": -0.2,
        "calmar": float("nan"), "n_trades": 1353, "win_rate": float("nan"), "profit_factor": float("inf"),
        "exposure": 0.25, "total_fees": 9550.379, "final_equity": 11234.5,
    }
    cards = C.metric_cards(metrics)
    labels = [c[0] for c in cards]
    assert labels == ["Total return", "CAGR", "Sharpe", "Sortino", "Max drawdown", "Calmar", "Trades", "Win rate",
                      "Profit factor", "Exposure", "Fees", "Final equity"]
    values = dict((c[0], c[1]) for c in cards)
    assert values["Total return"] == "12.34 %"
    assert values["CAGR"] == "-5.00 %"
    assert values["Sharpe"] == "1.23"
    assert values["Sortino"] == "∞"
    assert values["Max drawdown"] == "-20.00 %"
    assert values["Calmar"] == "–"
    assert values["Trades"] == "1,353"
    assert values["Win rate"] == "–"
    assert values["Profit factor"] == "∞"
    assert values["Exposure"] == "25.00 %"
    assert values["Fees"] == "9,550.38"
    assert values["Final equity"] == "11,234.50"
    assert all(isinstance(c[2], str) and c[2] for c in cards)
    assert C.metric_cards({})[0][1] == "–"
    money = [c[0] for c in C.metric_cards(metrics, "USDT") if "(" in c[0]]  # (the page named no currency)
    assert money == ["Fees (USDT)", "Final equity (USDT)"]
    assert units.format_metric("sharpe", float("-inf")) == "-∞"


# --- monitor -------------------------------------------------------------------------------------------

def test_cpu_and_history_figures():
    fig = C.cpu_figure([5.0, 55.0, 97.5])
    assert len(fig.data) == 1 and isinstance(fig.data[0], go.Bar)
    assert list(fig.data[0].y) == [5.0, 55.0, 97.5]
    assert tuple(fig.layout.yaxis.range) == (0, 100)
    assert len(set(fig.data[0].marker.color)) == 3
    assert "%" in fig.data[0].hovertemplate
    fig.to_json()

    index = pd.date_range("2024-01-01", periods=30, freq="s", tz="UTC")
    history = pd.DataFrame({"cpu": np.linspace(0, 90, 30), "ram": np.linspace(10, 20, 30)}, index=index)
    fig = C.history_figure(history, ["cpu", "ram", "gpu0"], "Load", "%")
    assert [t.name for t in fig.data] == ["cpu", "ram"]
    assert tuple(fig.layout.yaxis.range) == (0, 100)
    assert "%" in fig.data[0].hovertemplate and fig.layout.title.text == "Load"
    fig.to_json()
    assert len(C.history_figure(history.iloc[:0], ["cpu"], "Load", "%").data) == 0


# --- issue 11: date ranges, marker density, levels, log axes, buy and hold, trades table --------------

def many_trades(df: pd.DataFrame, every: int = 10, hold: int = 3) -> pd.DataFrame:
    """A trade every ``every`` bars over ``df``, alternating sides and outcomes."""
    rows = []
    for k, i in enumerate(range(0, len(df) - hold, every)):
        j = i + hold
        rows.append(dict(entry_time=df.index[i], exit_time=df.index[j], side="long" if k % 2 else "short",
                         qty=1.0, entry_price=df["open"].iloc[i], exit_price=df["open"].iloc[j], pnl=1.0 - k % 3,
                         return_pct=0.1, bars_held=hold, exit_reason="signal"))
    return pd.DataFrame(rows)


def candle_of(fig: go.Figure) -> go.Candlestick:
    return next(t for t in fig.data if isinstance(t, go.Candlestick))


def marker_traces(fig: go.Figure) -> list:
    return [t for t in fig.data if getattr(t, "mode", None) == "markers"]


def test_price_figure_range_shows_the_real_bars_of_the_range():
    df = make_ohlcv(10_000)
    mid = df["close"].rolling(50).mean()
    full = C.price_figure(df, overlays={"MA 50": mid})
    assert "resampled to" in full.layout.title.text  # 10,000 bars > the display budget
    start, end = df.index[3000], df.index[3299]
    fig = C.price_figure(df, overlays={"MA 50": mid}, start=start, end=end)
    candle = candle_of(fig)
    assert "resampled" not in fig.layout.title.text
    assert [pd.Timestamp(x, tz="UTC") for x in candle.x] == list(df.index[3000:3300])  # the real 1h bars
    np.testing.assert_allclose(candle.close, df["close"].iloc[3000:3300])
    np.testing.assert_allclose(fig.data[1].y, mid.iloc[3000:3300])  # overlay computed on the whole frame
    assert [pd.Timestamp(x) for x in fig.layout.xaxis.range] == [start, end]
    # naive bounds are UTC; a range above the budget is resampled, one below is not
    naive = C.price_figure(df, start=start.tz_localize(None), end=end.tz_localize(None))
    assert len(candle_of(naive).x) == 300
    wide = C.price_figure(df, start=df.index[0], end=df.index[C.DISPLAY_MAX_POINTS + 500])
    assert "resampled to" in wide.layout.title.text and len(candle_of(wide).x) <= C.DISPLAY_MAX_POINTS
    at_budget = C.price_figure(df, start=df.index[0], end=df.index[C.DISPLAY_MAX_POINTS - 1])
    assert len(candle_of(at_budget).x) == C.DISPLAY_MAX_POINTS
    assert "No bars" in C.price_figure(df, start="2030-01-01").layout.annotations[0].text


def test_range_mask_bounds_are_inclusive_and_utc():
    index = pd.date_range("2024-01-01", periods=5, freq="h", tz="UTC")
    assert C.range_mask(index, "2024-01-01 01:00", "2024-01-01 03:00").tolist() == [False, True, True, True, False]
    assert C.range_mask(index).all()
    assert C.range_mask(index, start=pd.Timestamp("2024-01-01 03:00", tz="Europe/Paris")).tolist() == [
        False, False, True, True, True]


def test_trade_marker_size_shrinks_with_density_and_hides_above_the_cap():
    sizes = [C.trade_marker_size(n) for n in (1, 50, 100, 200, 400, C.MARKER_MAX_TRADES + 1, 10_000)]
    assert sizes[0] == sizes[1] == 10
    assert sizes == sorted(sizes, reverse=True) and sizes[4] >= 4
    assert sizes[5] == sizes[6] == 0


def test_price_figure_hides_dense_markers_and_shows_them_in_a_short_range():
    df = make_ohlcv(6000)
    trades = many_trades(df)  # ~600 trades
    assert len(trades) > C.MARKER_MAX_TRADES
    fig = C.price_figure(df, trades=trades)
    assert marker_traces(fig) == []
    assert f"markers hidden above {C.MARKER_MAX_TRADES}" in fig.layout.title.text
    start, end = df.index[1000], df.index[1200]
    zoom = C.price_figure(df, trades=trades, start=start, end=end)
    markers = marker_traces(zoom)
    assert markers and "hidden" not in zoom.layout.title.text
    entries = [pd.Timestamp(x) for t in markers if t.meta == "entry" for x in t.x]
    exits = [pd.Timestamp(x) for t in markers if t.meta == "exit" for x in t.x]
    expected = trades[(trades["entry_time"] >= start) & (trades["entry_time"] <= end)]
    assert sorted(entries) == list(expected["entry_time"])  # only markers inside the range
    assert all(start <= x <= end for x in exits)
    n_in_view = len(expected)
    entry_sizes = {t.marker.size for t in markers if t.meta == "entry"}
    assert entry_sizes == {C.trade_marker_size(n_in_view + 1)} or entry_sizes == {C.trade_marker_size(n_in_view)}


def test_log_axes_for_price_and_equity():
    df = make_ohlcv(300)
    fig = C.price_figure(df, log_y=True)
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis2.type != "log"  # volume stays linear
    assert "log" in fig.layout.yaxis.title.text
    assert C.price_figure(df).layout.yaxis.type == "linear"
    eq = C.equity_figure(df["close"] * 100, log_y=True)
    assert eq.layout.yaxis.type == "log" and eq.layout.yaxis2.type != "log"


def test_x_axis_has_range_selector_buttons():
    df = make_ohlcv(300)
    for fig in (C.price_figure(df), C.equity_figure(df["close"])):
        labels = [b.label for b in fig.layout.xaxis.rangeselector.buttons]
        assert labels[0] == "1d" and labels[-1] == "all"


def test_equity_figure_draws_buy_and_hold_of_the_same_data():
    df = make_ohlcv(500)
    bench = C.buy_and_hold(df["close"], 10_000.0)
    assert bench.iloc[0] == 10_000.0
    np.testing.assert_allclose(bench, 10_000.0 * df["close"] / df["close"].iloc[0])
    equity = pd.Series(np.linspace(10_000, 12_000, 500), index=df.index)
    fig = C.equity_figure(equity, initial_capital=10_000.0, benchmark=bench)
    names = [t.name for t in fig.data]
    assert names[:2] == ["Buy and hold (no fees)", "Strategy equity"]
    np.testing.assert_allclose(fig.data[0].y, bench.to_numpy())
    assert fig.data[0].yaxis == "y" and fig.layout.showlegend is True
    assert C.equity_figure(equity).layout.showlegend is False  # a single line needs no legend
    # a date range: the real points of that range, drawdown from the whole run
    dd = equity / equity.cummax() - 1
    part = C.equity_figure(equity, dd, benchmark=bench, start=df.index[100], end=df.index[199])
    np.testing.assert_allclose(part.data[1].y, equity.iloc[100:200])
    np.testing.assert_allclose(part.data[0].y, bench.iloc[100:200])
    assert len(part.data[2].y) == 100


def test_trade_window_and_levels_are_drawn_for_the_focused_trade():
    df = make_ohlcv(2000)
    trades = many_trades(df, every=50, hold=10)
    trade = trades.iloc[5].to_dict()
    start, end = C.trade_window(df.index, trade, pad_bars=20)
    assert start == trade["entry_time"] - pd.Timedelta(hours=20) and end == trade["exit_time"] + pd.Timedelta(hours=20)
    first = C.trade_window(df.index, trades.iloc[0].to_dict())
    assert first[0] == df.index[0]  # clipped to the data
    fig = C.price_figure(df, trades=trades, start=start, end=end, focus=trade)
    assert len(candle_of(fig).x) == 51 and "resampled" not in fig.layout.title.text
    levels = {t.name.split()[0]: t for t in fig.data if t.legendgroup == "levels"}
    assert set(levels) == {"Entry", "Exit"}  # the engine's trades frame carries no stop/target
    assert list(levels["Entry"].y) == [trade["entry_price"]] * 2
    assert list(levels["Exit"].y) == [trade["exit_price"]] * 2 and "(signal)" in levels["Exit"].name
    assert [pd.Timestamp(x) for x in levels["Entry"].x] == [trade["entry_time"], trade["exit_time"]]
    assert any(s.type == "rect" for s in fig.layout.shapes)  # the trade's span is shaded
    # stop and target are drawn when the trades frame has them
    trade.update(stop_price=trade["entry_price"] * 0.98, target_price=trade["entry_price"] * 1.03)
    assert C.trade_levels(trade) == {"Entry": trade["entry_price"], "Exit": trade["exit_price"],
                                     "Stop": trade["stop_price"], "Target": trade["target_price"]}
    fig = C.price_figure(df, start=start, end=end, focus=trade, quote="USDT")
    names = [t.name for t in fig.data if t.legendgroup == "levels"]
    assert [n.split()[0] for n in names] == ["Entry", "Exit", "Stop", "Target"]
    assert all("USDT" in n for n in names)
    assert "Stop" not in C.trade_levels({**trade, "stop_price": np.nan})



def _engine_run(strategy: str, params: dict | None = None):
    import threadx
    from threadx.data.synthetic import generate_synthetic

    df = generate_synthetic(days=120, seed=3)
    return df, threadx.backtest(df, strategy, params or {})


def test_trade_zoom_draws_the_engine_stop_and_target_levels():
    df, res = _engine_run("bb_atr")  # ATR stop that trails, target at the mid band (both move)
    t = res.trades
    moved = t[(t.stop_at_exit != t.stop_at_entry) & (t.target_at_exit != t.target)]
    trade = moved.iloc[0].to_dict()
    start, end = C.trade_window(df.index, trade)
    fig = C.price_figure(df, trades=t, start=start, end=end, focus=trade, quote="USDT")
    levels = {" ".join(tr.name.split()[:3]) if " at " in tr.name else tr.name.split()[0]: tr
              for tr in fig.data if tr.legendgroup == "levels"}
    assert list(levels) == ["Entry", "Exit", "Stop at entry", "Stop at exit", "Target at entry", "Target at exit"]
    for label, column in (("Stop at entry", "stop_at_entry"), ("Stop at exit", "stop_at_exit"),
                          ("Target at entry", "target"), ("Target at exit", "target_at_exit")):
        tr = levels[label]
        assert list(tr.y) == [trade[column]] * 2  # a horizontal segment at the recorded level
        assert [pd.Timestamp(x) for x in tr.x] == [trade["entry_time"], trade["exit_time"]]  # entry to exit bar
        assert tr.line.dash in ("dash", "dot") and "USDT" in tr.name and "% from the entry" in tr.hovertemplate
    assert levels["Stop at entry"].line.color == levels["Stop at exit"].line.color == C.SHORT_COLOR
    assert levels["Target at entry"].line.color == levels["Target at exit"].line.color == C.LONG_COLOR
    assert levels["Stop at entry"].line.dash != levels["Stop at exit"].line.dash
    # a trade whose levels did not move shows one stop and one target
    still = t[(t.stop_at_exit == t.stop_at_entry) & (t.target_at_exit == t.target)].iloc[0].to_dict()
    assert list(C.trade_levels(still)) == ["Entry", "Exit", "Stop", "Target"]
    names = [tr.name for tr in C.price_figure(df, focus=still).data if tr.legendgroup == "levels"]
    assert [n.split()[0] for n in names] == ["Entry", "Exit", "Stop", "Target"] and " at " not in " ".join(names)


def test_trade_zoom_without_levels_when_the_strategy_sets_none():
    df, res = _engine_run("supertrend")  # no stop, no target by default
    trade = res.trades.iloc[0].to_dict()
    assert math.isnan(trade["stop_at_entry"]) and math.isnan(trade["target"])
    assert list(C.trade_levels(trade)) == ["Entry", "Exit"]
    _, res = _engine_run("supertrend", {"stop_loss_pct": 2.0})
    assert list(C.trade_levels(res.trades.iloc[0].to_dict())) == ["Entry", "Exit", "Stop"]


def test_trades_table_shows_the_levels_a_strategy_sets():
    _, res = _engine_run("bb_atr")
    table = C.trades_table(res.trades)
    headers = list(table.columns)
    assert headers[3:7] == ["PnL", "Return %", "Exit reason", "Bars held"]  # the outcome first, in view at 1440 px
    assert headers[7:13] == ["Entry price", "Exit price", "Stop", "Stop at exit", "Target", "Target at exit"]
    assert set(C.TRADE_TABLE_PRICE_HEADERS) <= set(C.TRADE_TABLE_COLUMNS.values())
    np.testing.assert_array_equal(table["Stop at exit"], res.trades["stop_at_exit"])  # numeric: sorts by value
    # fixed levels: no "at exit" copies; no levels: no level columns at all
    _, res = _engine_run("ma_crossover", {"stop_loss_pct": 2.0, "take_profit_pct": 4.0})
    assert [h for h in C.trades_table(res.trades).columns if h in C.TRADE_TABLE_PRICE_HEADERS] == [
        "Entry price", "Exit price", "Stop", "Target"]
    _, res = _engine_run("supertrend")
    assert [h for h in C.trades_table(res.trades).columns if h in C.TRADE_TABLE_PRICE_HEADERS] == [
        "Entry price", "Exit price"]
    empty = C.trades_table(res.trades.iloc[:0])
    assert "Stop" in empty.columns and len(empty) == 0

def test_trades_table_is_readable_and_keeps_the_row_order():
    df = make_ohlcv(300)
    trades = make_trades(df)
    table = C.trades_table(trades)
    assert list(table.columns[:3]) == ["Entry (UTC)", "Exit (UTC)", "Side"]
    assert "Return %" in table.columns and "Exit reason" in table.columns
    assert "entry_i" not in table.columns
    assert table["Entry (UTC)"].dt.tz is None  # no +00:00 in every cell: UTC is in the header
    assert list(table["Entry (UTC)"]) == list(trades["entry_time"].dt.tz_localize(None))
    assert table["Exit reason"].tolist() == [r.replace("_", " ") for r in trades["exit_reason"]]
    assert "stop loss" in table["Exit reason"].tolist()
    np.testing.assert_allclose(table["Return %"], trades["return_pct"])  # numeric: sorts by value
    assert table.index.tolist() == list(range(len(trades)))


def test_heatmap_labels_only_when_cells_fit():
    assert C.short_number(0.12345) == "0.12" and C.short_number(-12345.0) == "-12.3k"
    assert C.short_number(0.1234, percent=True) == "12%" and C.short_number(float("nan")) == ""
    assert C.short_number(-0.00533) == "-0.005"
    small = C.heatmap_labels(np.array([[0.1234, -0.5], [1.5, 2.25]]), "sharpe")
    assert small == [["0.12", "-0.50"], ["1.50", "2.25"]]
    # one format for every cell: "0.007" beside "0.35" read as two formats (a browser review)
    assert C.heatmap_labels(np.array([[0.007, 0.35], [1.2, -0.004]]), "sharpe") == [["0.01", "0.35"],
                                                                                      ["1.20", "0.00"]]
    assert C.heatmap_labels(np.array([[0.05, 0.35]]), "win_rate") == [["5%", "35%"]]
    assert C.heatmap_labels(np.array([[950.0, 12_345.0, np.nan]]), "final_equity") == [["0.95k", "12.35k", ""]]
    # from a typical cell, not the largest: one outlier rounded the others to "0" and "1"
    assert C.heatmap_labels(np.array([[0.5, 1.4, 150.0]]), "profit_factor") == [["0.50", "1.40", "150.00"]]
    assert C.heatmap_labels(np.array([[0.004, -0.007]]), "sharpe") == [["0.004", "-0.007"]]
    assert C.heatmap_labels(np.zeros((5, 60)), "sharpe") is None  # 60 columns: no room
    assert C.heatmap_labels(np.zeros((80, 5)), "sharpe") is None
    results = make_results()
    fig = C.heatmap_figure(results, "fast", "z", "sharpe")
    assert fig.data[0].texttemplate == "%{text}" and all(len(t) <= 6 for row in fig.data[0].text for t in row)


def test_optimisation_charts_leave_room_for_labels_and_legend():
    results = make_results()
    par = C.parallel_coordinates_figure(results, ["fast", "z", "ma_type"], "sharpe")
    assert par.layout.margin.t >= 100 and par.data[0].labelangle != 0
    pareto = C.pareto_figure(results)
    assert pareto.layout.legend.y < 0 and pareto.layout.legend.yanchor == "top"  # under the plot, off the title


def test_monitor_history_legend_names_are_readable():
    idx = pd.date_range("2026-01-01", periods=3, freq="s", tz="UTC")
    frame = pd.DataFrame({"cpu_total": [1.0, 2, 3], "ram_percent": [4.0, 5, 6], "gpu0_util": [7.0, 8, 9]}, index=idx)
    fig = C.history_figure(frame, ["cpu_total", "ram_percent", "gpu0_util"], "Last 10 minutes", "%")
    assert [t.name for t in fig.data] == ["CPU", "RAM", "GPU 0 util"]
    assert C.history_label("gpu1_temp_c") == "GPU 1 temp °C"


def test_the_toolbar_is_short_and_the_monitor_legend_clear_of_it():
    """Plotly's toolbar shows over a figure's top right on hover: its nine icons covered the end of
    the titles of charts drawn two to a row (Validation, at 1280 px) and the monitor's legend."""
    from threadx.ui import charts

    fig = charts.history_figure(pd.DataFrame({"cpu_percent": [10.0, 20.0], "ram_percent": [30.0, 31.0]},
                                             index=pd.date_range("2026-01-01", periods=2, freq="s", tz="UTC")),
                                ["cpu_percent", "ram_percent"], "Last 10 minutes", "%")
    removed = set(fig.layout.template.layout.modebar.remove)
    assert {"select2d", "lasso2d", "zoomIn2d", "zoomOut2d", "autoScale2d"} <= removed
    assert not {"zoom2d", "pan2d", "resetScale2d", "toImage"} & removed  # what a reader uses stays
    assert fig.layout.legend.xanchor == "left" and fig.layout.legend.x == 0  # not under the toolbar
    assert fig.layout.title.yref == "container" and fig.layout.margin.t >= 60  # its own line above the legend


def test_the_parallel_coordinates_metric_axis_reads_in_its_format():
    """Its range ends were drawn unformatted (0.3985, -0.41825) beside two-decimal cards."""
    rows = pd.DataFrame({"fast": [5, 10, 15], "sharpe": [0.3985, -0.41825, 0.1], "status": ["ok"] * 3})
    fig = C.parallel_coordinates_figure(rows, ["fast"], "sharpe")
    assert fig.data[0].dimensions[-1].tickformat == units.d3_format("sharpe") == ",.2f"


def test_candles_alone_have_no_legend_margin_and_with_overlays_one():
    """The Data page's preview (candles and volume) kept the legend's 110 px margin with no legend."""
    from threadx.data.synthetic import generate_synthetic

    df = generate_synthetic("BTC_USDT", "1h", days=10)
    alone = C.price_figure(df, title="BTC")
    assert alone.layout.showlegend is False and alone.layout.margin.b < 110
    mid = df["close"].rolling(10).mean()
    with_lines = C.price_figure(df, overlays={"MA 10": mid, "MA 10 x 1.01": mid * 1.01}, title="BTC")
    assert with_lines.layout.showlegend is True and with_lines.layout.margin.b == 110
