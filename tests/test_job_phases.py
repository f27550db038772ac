"""What a sweep job says it is doing: a phase from its first second (never "0/0"), the
sweep's stages in order, and the sidebar's list of active jobs (threadx.ui.jobs)."""
from __future__ import annotations

import os
import signal
import time

import pytest

import threadx
from threadx.optimize.shared import indicator_requests
from threadx.optimize.space import SearchSpace
from threadx.strategy.base import get_strategy
from threadx.ui import jobs as jobs_module
from threadx.ui.jobs import JobInfo, JobRegistry

SPACE = {"fast_period": "5:20:5", "slow_period": [40, 60]}


def _phases(bars, tmp_path, **kwargs) -> list[str]:
    seen: list[str] = []
    run = threadx.sweep(bars, "ma_crossover", SPACE, store=tmp_path, run_id="p", on_phase=seen.append, **kwargs)
    assert run.manifest["status"] == "completed"
    return seen


def test_a_sweep_reports_its_stages_in_order(synthetic_bars, tmp_path):
    n_indicators = len(indicator_requests(SearchSpace(get_strategy("ma_crossover"), SPACE)))
    seen = _phases(synthetic_bars, tmp_path, executor="local", workers=2)
    # a sweep that surely needs forked workers starts them first (they fork from the lean
    # process and start up while the combos are planned); spawned ones start after the plan
    first_two = ["planning the combos", "starting 2 workers"]
    assert seen[:2] in (first_two, first_two[::-1])
    assert seen[2:] == [f"computing {n_indicators:,} indicators", "running", "finishing"]
    inline = _phases(synthetic_bars, tmp_path / "inline", executor="inline", workers=1)
    assert inline == ["planning the combos", f"computing {n_indicators:,} indicators", "running", "finishing"]


def test_total_is_reported_before_workers_and_indicators(synthetic_bars, tmp_path):
    """The first progress report comes before any stage after planning: total is never 0 while
    workers start or indicators are computed."""
    events: list = []
    threadx.sweep(synthetic_bars, "ma_crossover", SPACE, store=tmp_path, run_id="t", executor="inline", workers=1,
                  on_phase=lambda text: events.append(text), progress=lambda p: events.append((p.done, p.total)))
    assert events[0] == "planning the combos" and events[1] == (0, 8)
    assert events.index((0, 8)) < events.index(next(e for e in events if str(e).startswith("computing")))


def _info(**fields) -> JobInfo:
    base = {"job_id": "j", "spec": {"kind": "sweep", "params": {"strategy": "bb_atr", "data": "x"}},
            "created_at": ""}
    return JobInfo(**{**base, **fields})


@pytest.mark.parametrize("fields, expected", [
    ({"state": "queued", "phase": "submitted"}, "queued: waiting for a free slot"),
    ({"state": "running", "phase": "starting 4 workers"}, "starting 4 workers"),
    ({"state": "running", "phase": "computing 120 indicators", "total": 3930}, "computing 120 indicators"),
    ({"state": "running", "phase": "running", "done": 1200, "total": 3930, "rate": 400.0, "eta_s": 6.8},
     "running 1,200 / 3,930 combos · 400 backtests/s · ETA 7 s"),
    ({"state": "running", "phase": ""}, "starting"),
    ({"state": "running", "phase": "running", "stop_requested": True, "done": 5, "total": 9},
     "stopping after the current chunk (running 5 / 9 combos)"),
    # the chunk is in: "stopping after the current chunk (finishing)" read as if it still waited for one
    ({"state": "running", "phase": "finishing", "stop_requested": True, "done": 7, "total": 9},
     "stopping: storing the combos done"),
    ({"state": "completed", "phase": "completed", "done": 9, "total": 9}, "completed (9 / 9 combos)"),
    ({"state": "failed", "error": "job process died"}, "failed: job process died"),
])
def test_status_line(fields, expected):
    assert _info(**fields).status_line == expected


def test_a_research_job_counts_its_steps_not_combos():
    info = _info(spec={"kind": "research", "params": {"strategy": "bb_atr"}}, state="running", phase="running",
                 done=2, total=6, rate=3.0, eta_s=10.0)
    assert info.status_line == "running 2 / 6 steps · ETA 10 s"
    # in a walk-forward, its phase names it: the line says how many steps of how many are done (it said only the
    # phase; then "step 3 of 6", wrong when cells run side by side)
    info = _info(spec={"kind": "research", "params": {"strategy": "bb_atr"}}, state="running",
                 phase="walk-forward bb_atr on synthetic/BTC_USDT-1h · ETA 5 s", done=2, total=6)
    assert info.status_line == "2 of 6 steps done · walk-forward bb_atr on synthetic/BTC_USDT-1h · ETA 5 s"


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """A registry in tmp_path; the job processes it started are killed on teardown."""
    monkeypatch.setenv("THREADX_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("THREADX_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("THREADX_CACHE_DIR", str(tmp_path / "cache"))
    reg = JobRegistry()
    yield reg
    for info in reg.list():
        (info.folder / "stop").touch()
        launch = jobs_module.read_json(info.folder / "launch.json")
        for pid in {info.pid, launch.get("pid")} - {None}:
            try:
                os.killpg(int(pid), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    for child in list(jobs_module._CHILDREN.values()):
        child.wait(timeout=10)
    jobs_module._CHILDREN.clear()


@pytest.mark.skipif(os.name == "nt", reason="POSIX process handling")
def test_a_job_has_a_phase_from_submission_to_the_end_and_then_leaves_the_active_list(registry):
    job_id = registry.submit({"kind": "sweep", "params": {
        "data": "sample:BTC_USDT-1h", "strategy": "ma_crossover", "space": SPACE, "executor": "local",
        "workers": 2}})
    seen = []
    deadline = time.monotonic() + 120
    while True:
        active = [j.job_id for j in registry.active()]  # read before the state: the job may end in between
        info = registry.get(job_id)
        seen.append((info.state, info.phase, info.status_line))
        if info.is_finished or time.monotonic() > deadline:
            break
        assert active == [job_id], (active, info.state)
        time.sleep(0.05)
    assert info.state == "completed", registry.log(job_id)
    assert seen[0][1] in ("submitted", "starting the job process", "starting") or seen[0][0] in ("running",
                                                                                            "completed")
    for state, phase, line in seen:  # never a bare 0/0, never an empty phase
        assert phase and line and "0 / 0" not in line, seen
    assert info.phase == "completed" and info.status_line == "completed (8 / 8 combos)"
    log = registry.log(job_id)  # every stage is logged as it starts, in order
    stages = ["loading data", "planning the combos", "computing", "running", "finishing"]
    positions = [log.find(stage) for stage in stages]
    assert -1 not in positions and positions == sorted(positions), log
    assert log.find("loading data") < log.find("starting 2 workers") < log.find("computing"), log
    registry.refresh()
    assert registry.active() == []


def test_a_queued_job_has_a_phase(tmp_path, monkeypatch):
    """Submitted while the only slot is taken: queued, its phase written by submit()."""
    monkeypatch.setenv("THREADX_RESULTS_DIR", str(tmp_path / "results"))
    reg = JobRegistry()
    monkeypatch.setattr(JobRegistry, "refresh", lambda self: [])  # nothing launched
    job_id = reg.submit({"kind": "sweep", "params": {"data": "sample:BTC_USDT-1h", "strategy": "ma_crossover",
                                                     "space": SPACE}})
    info = reg.get(job_id)
    assert info.state == "queued" and info.phase == "submitted"
    assert info.status_line == "queued: waiting for a free slot"
    assert [j.job_id for j in reg.active()] == [job_id] and reg.running() == []
    reg.stop(job_id)
    assert reg.active() == [] and reg.get(job_id).status_line == "cancelled"
