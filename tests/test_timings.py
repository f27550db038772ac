"""Stage timings: recorded by every backtest, sweep and walk-forward, adding up to the run's
wall time; the hint; `runs show --timings`; the page chart."""
from __future__ import annotations

import json
import time

import pytest

import threadx
from threadx.indicators import IndicatorBank
from threadx.timings import Stopwatch, hint, text_lines

# big enough that the final manifest write (timed by no stage: it records the timings) is a small share
SPACE = {"bb_period": "10:30:1", "entry_z": "1:2:0.1", "atr_multiplier": "1.0:3.0:0.25"}


def _fresh_bank(tmp_path):
    return IndicatorBank(cache_dir=tmp_path / "cache", disk=False)  # indicators really computed


def _adds_up(timings, wall) -> bool:
    """The stages add up to the measured wall time, and so does the recorded wall time, within 10 %."""
    stages = sum(timings["stages"].values())
    return abs(stages - wall) <= 0.1 * wall and abs(timings["wall_s"] - wall) <= 0.1 * wall


def _check_adds_up(timings, wall):
    assert _adds_up(timings, wall), (timings, wall)
    assert all(sec >= 0 for sec in timings["stages"].values())


def test_hint_names_a_dominant_stage():
    assert hint({"stages": {"load": 0.1, "indicators": 0.8, "kernel": 0.1}}) == (
        "indicators took 80 %: narrow the indicator params (e.g. bb_period) or reuse the cache "
        "(same data, same params)")
    assert hint({"indicators": 6, "kernel": 4}).startswith("indicators took 60 %")  # a bare mapping
    assert hint({"stages": {"indicators": 0.5, "kernel": 0.5}}) is None  # nothing dominates
    assert hint(None) is None and hint({"stages": {}}) is None
    text = hint({"stages": {"run": 9.0, "store": 1.0}, "workers": {"signals": 1.0, "kernel": 9.0}})
    assert text.startswith("kernel took 90 % of the workers' time (running combos: 90 % of the run): fewer combos")
    assert hint({"stages": {"run": 9.0, "store": 1.0}, "workers": {"signals": 1.0, "kernel": 1.0}}).startswith(
        "run combos (workers) took 90 %")


def test_nested_stages_count_once():
    watch = Stopwatch()
    with watch.stage("run"):
        time.sleep(0.02)
        with watch.stage("indicators"):
            time.sleep(0.03)
    record = watch.record()
    # a sleep lasts at least its time; a loaded machine may add to it (so no tight upper bound)
    assert 0.029 <= record["stages"]["indicators"] < 0.5
    assert 0.019 <= record["stages"]["run"] < 0.5
    assert sum(record["stages"].values()) == pytest.approx(record["wall_s"], abs=0.005)


def test_backtest_timings_add_up(tmp_path):
    from threadx.data.synthetic import generate_synthetic

    frame = generate_synthetic(days=4 * 365, seed=3)
    threadx.backtest(frame, "bb_atr")  # compiled kernels loaded: the timed run is the run only
    for attempt in range(3):  # (a run of ~15 ms: one pause of a loaded machine is 10 % of it; one clean try)
        started = time.perf_counter()
        res = threadx.backtest(frame, "bb_atr", {"bb_period": 33 + attempt}, bank=_fresh_bank(tmp_path / str(attempt)))
        wall = time.perf_counter() - started
        timings = res.meta["timings"]
        assert list(timings["stages"]) == ["validation", "indicators", "signals", "kernel", "report"]
        if _adds_up(timings, wall):
            break
    _check_adds_up(timings, wall)


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_sweep_timings_add_up(synthetic_bars, tmp_path, executor):
    threadx.sweep(synthetic_bars, "bb_atr", {"bb_period": "10:12:2"}, store=tmp_path / "warm", executor=executor,
                  workers=2)
    for attempt in range(3):  # (a sweep of ~0.2 s: a pause of a loaded machine in an untimed moment is 10 % of it)
        watch = Stopwatch()
        run = threadx.sweep(synthetic_bars, "bb_atr", SPACE, store=tmp_path / "runs", run_id=f"t{attempt}",
                            executor=executor, workers=2, bank=_fresh_bank(tmp_path / str(attempt)), stopwatch=watch)
        wall = watch.wall()  # the sweep's call, its final manifest write included
        timings = run.manifest["timings"]
        if _adds_up(timings, wall):
            break
    assert {"validation", "plan", "indicators", "run", "store"} <= set(timings["stages"])
    assert set(timings["workers"]) == {"signals", "kernel"}  # summed over the workers (CPU-seconds)
    assert timings["workers"]["kernel"] > 0
    _check_adds_up(timings, wall)
    assert ("startup" in timings["stages"]) == (executor == "local")


def test_walk_forward_timings_add_up(synthetic_bars, tmp_path):
    from threadx.validation.walkforward import walk_forward

    space = {"fast_period": "5:30:5", "slow_period": "40:120:20"}
    walk_forward(synthetic_bars, "ma_crossover", {"fast_period": [5, 10]}, sampler="grid", is_days=90, oos_days=30,
                 workers=2)
    for attempt in range(3):  # (a run of ~35 ms)
        started = time.perf_counter()
        wf = walk_forward(synthetic_bars, "ma_crossover", space, sampler="grid", is_days=90, oos_days=30, workers=2,
                          bank=_fresh_bank(tmp_path / str(attempt)))
        wall = time.perf_counter() - started
        timings = wf.meta["timings"]
        if _adds_up(timings, wall):
            break
    assert list(timings["stages"]) == ["validation", "plan", "indicators", "run", "report"]
    assert set(timings["workers"]) == {"signals", "kernel"}
    _check_adds_up(timings, wall)


def test_cli_prints_the_timings(capsys, tmp_path, data_root):
    from threadx.cli import main

    store = str(tmp_path / "runs")
    assert main(["sweep", "--strategy", "ma_crossover", "--param", "fast_period=5:15:5", "--run-id", "cli",
                 "--store", store]) == 0
    capsys.readouterr()
    assert main(["runs", "show", "cli", "--store", store, "--timings"]) == 0
    out = capsys.readouterr().out
    assert "timings:" in out and "Load data" in out and "Indicators" in out and " %" in out
    assert "workers (seconds summed over workers):" in out and "Kernel" in out
    assert "s wall" in out
    assert main(["backtest", "--strategy", "bb_atr", "--timings", "--trades", "0"]) == 0
    out = capsys.readouterr().out
    for stage in ("Load data", "Data validation", "Indicators", "Signal planning", "Kernel", "Result and report"):
        assert stage in out


def test_runs_show_timings_of_a_stored_walk_forward(capsys, tmp_path, synthetic_bars):
    from threadx.cli import main
    from threadx.validation.report import validate_walk_forward
    from threadx.validation.storage import save_walk_forward

    wf = threadx.walk_forward(synthetic_bars, "ma_crossover", {"fast_period": [5, 10]}, sampler="grid", is_days=90,
                              oos_days=30, workers=1)
    save_walk_forward("wf-t", wf, validate_walk_forward(wf, n=100, S=4), tmp_path)
    assert main(["runs", "show", "wf-t", "--store", str(tmp_path), "--timings"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("walk-forward wf-t (stored in") and "Run combos (workers)" in out
    # without --timings it said "no run 'wf-t'"; runs list did not list it
    assert main(["runs", "show", "wf-t", "--store", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "walk-forward ma_crossover on" in out and "searched: fast_period 5..10 (2 values)" in out
    assert "stitched OOS" in out and "grade" in out.lower()
    assert main(["runs", "list", "--store", str(tmp_path)]) == 0
    assert "walk-forwards (threadx runs show ID)" in capsys.readouterr().out
    assert main(["runs", "list", "--store", str(tmp_path), "--json"]) == 0
    assert [r["kind"] for r in json.loads(capsys.readouterr().out)] == ["walk_forward"]


def test_text_lines_and_figure_without_timings():
    from threadx.ui.timings_chart import timings_figure

    assert text_lines(None) == ["no timings recorded (run made before they were)"]
    assert "No timings recorded" in timings_figure({}).layout.annotations[0].text


def test_figure_shows_each_stage_and_the_workers():
    from threadx.ui.timings_chart import timings_figure

    fig = timings_figure({"wall_s": 2.0, "stages": {"indicators": 1.6, "run": 0.4},
                          "workers": {"signals": 0.2, "kernel": 0.6}})
    assert list(fig.data[0].y) == ["Indicators", "Run combos (workers)"]
    assert list(fig.data[1].y) == ["workers: Signal planning", "workers: Kernel"]
    assert fig.data[0].text[0] == "1.6 s · 80 %"
    assert fig.data[1].text[1] == "0.6 s · 75 % of workers' time"  # (two bases of % in one chart: each named)
    # beside each bar at a readable size, with room for the longest one's (inside, Plotly shrank it to ~6 px)
    assert {t.textposition for t in fig.data} == {"outside"} and fig.data[0].textfont.size == 12
    assert fig.layout.xaxis.range[1] > 1.6 * 1.3
    assert "summed over workers" in fig.layout.title.text
