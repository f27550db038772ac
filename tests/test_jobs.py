"""The session-independent job registry: sweeps in detached processes (threadx.ui.jobs)."""
from __future__ import annotations

import json
import os
import signal
import sys
import time
import types
from pathlib import Path

import pytest

from threadx.errors import ParamError
from threadx.optimize.store import ResultStore
from threadx.ui import jobs as jobs_module
from threadx.ui.jobs import JobRegistry

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX process handling (signals, sessions)")

SMALL = {"kind": "sweep", "params": {
    "data": "sample:BTC_USDT-1h", "strategy": "ma_crossover", "space": {"fast_period": "5:15:5"},
    "executor": "inline", "workers": 1,
}}
# about a minute of work on one core: long enough to be stopped midway
LONG_SPACE = {"fast_period": "5:30:1", "slow_period": "40:100:1", "stop_loss_pct": "0:10:0.5",
              "take_profit_pct": "0:20:0.5"}


def long_spec(**extra) -> dict:
    return {"kind": "sweep", "params": {
        "data": "sample:BTC_USDT-1h", "strategy": "ma_crossover", "space": LONG_SPACE, "sampler": "random",
        "n": 200_000, "seed": 7, "executor": "inline", "workers": 1, **extra,
    }}


@pytest.fixture(scope="module")
def shared_dirs(tmp_path_factory) -> dict[str, Path]:
    """Data and indicator cache shared by the tests of this module (the sample is generated once)."""
    base = tmp_path_factory.mktemp("jobs-shared")
    return {"data": base / "data", "cache": base / "cache"}


def _job_pids(registry: JobRegistry) -> set[int]:
    pids = set()
    for info in registry.list():
        launch = jobs_module.read_json(info.folder / "launch.json")
        for pid in (info.pid, launch.get("pid")):
            if isinstance(pid, int) and pid > 0:  # a damaged launch.json may say anything
                pids.add(pid)
    return pids


@pytest.fixture
def registry(tmp_path, monkeypatch, shared_dirs):
    """A registry in tmp_path; every job process it started is killed on teardown."""
    monkeypatch.setenv("THREADX_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("THREADX_DATA_ROOT", str(shared_dirs["data"]))
    monkeypatch.setenv("THREADX_CACHE_DIR", str(shared_dirs["cache"]))
    reg = JobRegistry()
    yield reg
    for _ in range(2):  # twice: a job process may launch the next queued job as it ends
        for info in reg.list():
            (info.folder / "stop").touch()
        for pid in _job_pids(reg):
            try:
                os.killpg(pid, signal.SIGKILL)  # the job's own session: its workers too
            except (ProcessLookupError, PermissionError):
                pass
        for child in list(jobs_module._CHILDREN.values()):
            try:
                child.wait(timeout=10)
            except Exception:  # noqa: BLE001
                pass
        jobs_module._CHILDREN.clear()
        time.sleep(0.1)


def wait_for(registry: JobRegistry, job_id: str, predicate, timeout: float = 120.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        registry.refresh()
        info = registry.get(job_id)
        if predicate(info):
            return info
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} not {what} after {timeout} s: {info}\nlog:\n{registry.log(job_id)}")
        time.sleep(0.1)


def finished(info) -> bool:
    return info.is_finished


def test_small_sweep_job_completes_in_a_background_process(registry, tmp_path):
    job_id = registry.submit(SMALL)
    folder = tmp_path / "results" / ".jobs" / job_id
    assert (folder / "spec.json").exists() and (folder / "status.json").exists()
    spec = json.loads((folder / "spec.json").read_text())
    assert spec["kind"] == "sweep" and spec["params"]["strategy"] == "ma_crossover"
    run_id = spec["params"]["run_id"]  # assigned at submit, so the UI knows where results go

    info = wait_for(registry, job_id, finished, what="finished")
    assert info.state == "completed", registry.log(job_id)
    assert (info.done, info.total, info.failed) == (3, 3, 0)
    assert info.run_id == run_id and info.error == ""
    assert info.pid and info.pid != os.getpid()
    assert info.started_at and info.finished_at and info.started_at <= info.finished_at
    assert info.fraction == 1.0 and not info.is_active

    status = json.loads((folder / "status.json").read_text())
    for key in ("state", "pid", "run_id", "done", "total", "failed", "rate", "eta_s", "elapsed_s", "started_at",
                "finished_at", "error", "updated_at"):
        assert key in status
    assert (folder / "log.txt").exists()

    run = ResultStore(tmp_path / "results").load(run_id)
    assert len(run.results) == 3 and set(run.results["status"]) == {"ok"}
    assert sorted(run.results["fast_period"]) == [5, 10, 15]
    assert run.manifest["status"] == "completed"
    assert [j.job_id for j in registry.list()] == [job_id]
    assert registry.running() == []


def test_second_job_waits_in_the_queue_then_runs(registry, tmp_path):
    first = registry.submit(SMALL)
    second = registry.submit({**SMALL, "params": {**SMALL["params"], "space": {"fast_period": [7, 9]}}})
    second_state = registry.get(second).state  # read first: a fast first job may end (and launch it) in between
    first_state = registry.get(first).state
    assert first_state in ("running", "completed")
    if first_state == "running":  # then it was running when the second was read
        assert second_state == "queued"  # max_concurrent=1
    assert [j.job_id for j in registry.list()] == [second, first]  # newest first

    a = wait_for(registry, first, finished, what="finished")
    b = wait_for(registry, second, finished, what="finished")
    assert (a.state, b.state) == ("completed", "completed"), registry.log(second)
    assert b.started_at >= a.finished_at  # one at a time
    assert len(ResultStore(tmp_path / "results").load(b.run_id).results) == 2


def test_stop_cancels_a_running_job_and_keeps_its_results(registry, tmp_path):
    job_id = registry.submit(long_spec())
    queued = registry.submit(SMALL)
    info = wait_for(registry, job_id, lambda i: i.done > 0, timeout=60, what="making progress")
    assert info.state == "running" and info.total == 200_000 and info.rate > 0

    procs = registry.worker_processes(job_id)
    assert procs and procs[0]["pid"] == info.pid
    assert all(set(p) >= {"pid", "cpu_percent", "rss"} and p["rss"] > 0 for p in procs)
    assert [j.job_id for j in registry.running()] == [job_id]

    registry.stop(queued)  # a queued job is cancelled without ever running
    assert registry.get(queued).state == "cancelled"
    registry.stop(job_id)
    info = wait_for(registry, job_id, finished, timeout=60, what="stopped")
    assert info.state == "cancelled", registry.log(job_id)
    assert 0 < info.done < 200_000
    run = ResultStore(tmp_path / "results").load(info.run_id)
    assert run.manifest["status"] == "cancelled"
    assert 0 < len(run.results) < 200_000
    assert registry.get(queued).pid is None  # never launched
    deadline = time.monotonic() + 30
    while registry.worker_processes(job_id) and time.monotonic() < deadline:  # the process exits
        registry.refresh()
        time.sleep(0.1)
    assert registry.worker_processes(job_id) == []


def test_sigterm_is_a_cancel(registry, tmp_path):
    job_id = registry.submit(long_spec())
    info = wait_for(registry, job_id, lambda i: i.done > 0, timeout=60, what="making progress")
    os.kill(info.pid, signal.SIGTERM)
    info = wait_for(registry, job_id, finished, timeout=60, what="stopped")
    assert info.state == "cancelled", registry.log(job_id)
    run = ResultStore(tmp_path / "results").load(info.run_id)
    assert run.manifest["status"] == "cancelled" and len(run.results) > 0


def test_killed_job_is_reported_failed_and_the_queue_moves_on(registry):
    victim = registry.submit(long_spec())
    waiting = registry.submit(SMALL)
    info = wait_for(registry, victim, lambda i: i.pid is not None and i.started_at is not None, timeout=60,
                    what="running")
    assert registry.get(waiting).state == "queued"
    os.kill(info.pid, signal.SIGKILL)
    info = wait_for(registry, victim, finished, timeout=30, what="detected as dead")
    assert info.state == "failed" and "died" in info.error
    nxt = wait_for(registry, waiting, finished, what="finished")
    assert nxt.state == "completed", registry.log(waiting)


def test_failing_job_records_the_error_and_traceback(registry):
    spec = {**SMALL, "params": {**SMALL["params"], "data": "no_such_exchange/NOPE_USDT-1h"}}
    job_id = registry.submit(spec)  # the data is only read by the job
    info = wait_for(registry, job_id, finished, what="finished")
    assert info.state == "failed" and info.error and "\n" not in info.error
    assert "Traceback" in registry.log(job_id)


@pytest.mark.parametrize("params, match", [
    ({"strategy": "no_such_strategy"}, "unknown strategy"),
    ({"space": {"fast_period": "a:b:c"}}, "fast_period"),
    ({"space": {"no_such_param": 3}}, "no_such_param"),
    ({"sampler": "annealing"}, "sampler"),
    ({"sampler": "random", "n": None}, "needs n"),
    ({"objective": "happiness"}, "objective"),
    ({"executor": "cloud"}, "executor"),
    ({"engine_options": {"warp_speed": 9}}, "warp_speed"),
    ({"run_id": "../escape"}, "run id"),
    ({"colour": "blue"}, "colour"),
    ({"data": ""}, "data"),
])
def test_bad_spec_raises_param_error(registry, tmp_path, params, match):
    with pytest.raises(ParamError, match=match):
        registry.submit({"kind": "sweep", "params": {**SMALL["params"], **params}})
    assert registry.list() == []


def test_bad_kind_and_shape(registry):
    with pytest.raises(ParamError, match="kind"):
        registry.submit({"kind": "backtest", "params": SMALL["params"]})
    with pytest.raises(ParamError):
        registry.submit("not a dict")  # type: ignore[arg-type]
    with pytest.raises(ParamError, match="max_concurrent"):
        JobRegistry(max_concurrent=0)


def test_dead_launch_without_status_is_failed(registry):
    """A job whose process died before writing its status (e.g. killed at import) is failed too."""
    job_id = registry.submit(long_spec())
    folder = registry.get(job_id).folder
    launch = jobs_module.read_json(folder / "launch.json")
    os.kill(launch["pid"], signal.SIGKILL)
    info = wait_for(registry, job_id, finished, timeout=30, what="detected as dead")
    assert info.state == "failed"


WALKFORWARD = {"kind": "walkforward", "params": {
    "data": "sample:BTC_USDT-1h", "strategy": "ma_crossover",
    "space": {"fast_period": "5:15:5", "slow_period": "40:80:20"}, "sampler": "grid",
    "is_days": 120, "oos_days": 60, "workers": 1, "bootstrap": 100, "S": 4,
}}


def test_walkforward_job_stores_the_result_and_its_report(registry, tmp_path):
    from threadx.data.bars import as_bars
    from threadx.requests import DatasetRef
    from threadx.validation.storage import list_walk_forwards, load_walk_forward

    job_id = registry.submit(WALKFORWARD)
    spec = json.loads((tmp_path / "results" / ".jobs" / job_id / "spec.json").read_text())
    assert spec["kind"] == "walkforward" and spec["params"]["run_id"].startswith("wf-ma_crossover-")
    info = wait_for(registry, job_id, finished, what="finished")
    assert info.state == "completed", registry.log(job_id)
    assert (info.done, info.total) == (9, 9) and info.label == "walk-forward ma_crossover on sample:BTC_USDT-1h"
    wf, report = load_walk_forward(info.run_id, tmp_path / "results")
    assert len(wf.windows) == (730 - 120) // 60 and wf.evaluator is None
    assert report.grade.letter in "ABCDF" and report.pbo is not None and report.pbo.S == 4
    assert [r["run_id"] for r in list_walk_forwards(tmp_path / "results")] == [info.run_id]
    pinned = DatasetRef.from_dict(wf.meta["request"]["data"])  # the request asked by name only
    assert pinned.fingerprint == wf.meta["fingerprint"] and pinned.start and pinned.end
    assert as_bars(pinned.load()).fingerprint == pinned.fingerprint  # reopened on exactly these bars


@pytest.mark.parametrize("params, match", [
    ({"is_days": None}, "is window length"),
    ({"oos_days": -3}, "oos_days must be > 0"),
    ({"is_bars": 100}, "not both"),
    ({"sampler": "adaptive"}, "sampler"),
    ({"S": 1}, "S must be"),
    ({"executor": "local"}, "executor"),
])
def test_bad_walkforward_spec_raises_param_error(registry, params, match):
    with pytest.raises(ParamError, match=match):
        registry.submit({"kind": "walkforward", "params": {**WALKFORWARD["params"], **params}})
    assert registry.list() == []


# --- a job process started ahead (threadx.ui.standby) -------------------------------------

@pytest.fixture
def standby(registry, monkeypatch):
    """This test process keeps a standby job process, as the workstation's server does
    (started by ``_standby_pid`` in the test's body: pytest's PYTEST_CURRENT_TEST differs
    between a fixture and the test, and a standby runs a job only under its own environment)."""
    from threadx.ui import standby as module

    monkeypatch.setenv("THREADX_APP_STANDBY", "on")  # off for the other tests (conftest)
    yield module
    module.release()


def _standby_pid(module) -> int:
    module.keep_one()
    assert module._waiting and module._waiting[0][0].poll() is None, "no standby process waiting"
    return module._waiting[0][0].pid


def test_a_job_runs_in_the_standby_process_started_ahead(registry, standby):
    pid = _standby_pid(standby)
    info = wait_for(registry, registry.submit(SMALL), finished, what="finished")
    log = registry.log(info.job_id)
    assert info.state == "completed", log
    assert info.pid == pid and f"runs in the standby process {pid}" in log
    assert "running in the standby process" in log and "fresh job process" not in log, log
    assert len(ResultStore(registry.root).load(info.run_id).results) == 3
    assert not standby._waiting  # handed over: the next job needs a new one (keep_one)
    standby.keep_one()
    second = wait_for(registry, registry.submit(SMALL), finished, what="finished")
    assert second.state == "completed" and second.pid not in (None, pid)


def test_a_standby_started_under_another_environment_is_not_used(registry, standby, monkeypatch):
    proc = standby._waiting[0][0] if _standby_pid(standby) else None
    monkeypatch.setenv("THREADX_TEST_STANDBY", "changed after the standby started")
    info = wait_for(registry, registry.submit(SMALL), finished, what="finished")
    log = registry.log(info.job_id)
    assert info.state == "completed", log
    assert info.pid != proc.pid and "standby" not in log
    assert proc.poll() is not None  # ended: it could never run a job under this environment


def test_a_dead_standby_is_passed_over(registry, standby):
    _standby_pid(standby)
    proc = standby._waiting[0][0]
    proc.kill()
    proc.wait()
    info = wait_for(registry, registry.submit(SMALL), finished, what="finished")
    assert info.state == "completed" and info.pid != proc.pid
    assert "standby" not in registry.log(info.job_id)


def test_a_standby_ends_with_the_process_that_started_it(tmp_path):
    import subprocess
    import sys

    import psutil

    script = "from threadx.ui import standby; standby.keep_one(); print(standby._waiting[0][0].pid, flush=True)"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True,
                         env=dict(os.environ, THREADX_APP_STANDBY="on"))
    pid = int(out.stdout.split()[-1])
    deadline = time.monotonic() + 60  # it reads end of file once warm, then exits
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        raise AssertionError("the standby outlived the process that started it")


def test_a_standby_knows_when_threadx_source_it_loaded_changed_after_its_start():
    from threadx.ui.standby import stale

    assert stale(0.0)  # every loaded file is newer than the epoch
    assert not stale(time.time() + 3600)
    gone = types.ModuleType("threadx_user_strategies.gone")  # a strategies-folder module whose file is deleted
    gone.__file__ = "/nonexistent/gone.py"
    sys.modules[gone.__name__] = gone
    try:
        assert not stale(time.time() + 3600)  # (it is not threadx's source: it said stale, every time)
    finally:
        del sys.modules[gone.__name__]  # none is newer than an hour from now


def test_with_the_standby_setting_off_none_is_kept(registry, standby, monkeypatch):
    _standby_pid(standby)
    proc = standby._waiting[0][0]
    monkeypatch.setenv("THREADX_APP_STANDBY", "off")
    standby.keep_one()  # ends the waiting one, starts none
    assert not standby._waiting and proc.wait(timeout=10) is not None
    info = wait_for(registry, registry.submit(SMALL), finished, what="finished")
    assert info.state == "completed" and "standby" not in registry.log(info.job_id)


def test_a_standby_takes_a_job_whose_folder_path_holds_a_newline(registry, standby, tmp_path):
    odd = JobRegistry(tmp_path / "odd\nname")
    pid = _standby_pid(standby)
    info = wait_for(odd, odd.submit(SMALL), finished, what="finished")
    assert info.state == "completed", odd.log(info.job_id)
    assert info.pid == pid and "running in the standby process" in odd.log(info.job_id)


def test_a_followed_job_is_polled_quickly_in_its_first_seconds_only():
    from types import SimpleNamespace as Job

    from threadx.ui.widgets import MONITOR_EVERY_S, MONITOR_FIRST_EVERY_S, monitor_every

    assert monitor_every(None) is None and monitor_every(Job(is_active=False, age_s=1.0)) is None  # over: none
    assert monitor_every(Job(is_active=True, age_s=1.0)) == MONITOR_FIRST_EVERY_S < MONITOR_EVERY_S
    for age in (5.0, -100.0, None):  # older, submitted "in the future" (clock skew), or no readable time
        assert monitor_every(Job(is_active=True, age_s=age)) == MONITOR_EVERY_S


def test_finished_jobs_are_read_once_until_their_status_changes(registry, monkeypatch):
    first = wait_for(registry, registry.submit(SMALL), finished, what="finished")
    second = wait_for(registry, registry.submit(SMALL), finished, what="finished")
    registry.list()  # (read once, after the job processes' last writes: on a loaded machine one came after wait_for)
    reads = []
    real = JobRegistry._read
    monkeypatch.setattr(JobRegistry, "_read", lambda self, folder: reads.append(folder.name) or real(self, folder))
    listed = registry.list()
    assert [j.job_id for j in listed] == [second.job_id, first.job_id] and reads == []  # both from memory
    assert [j.state for j in listed] == ["completed", "completed"]
    status = first.folder / "status.json"
    status.write_text(status.read_text().replace('"completed"', '"failed"', 1))  # outside damage: read again
    assert {j.job_id: j.state for j in registry.list()}[first.job_id] == "failed" and reads == [first.job_id]
    spec = second.folder / "spec.json"
    stat, text = spec.stat(), spec.read_text()
    spec.write_text(text.replace('"sweep"', '"swept"', 1))  # the same size, its mtime put back
    os.utime(spec, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = {j.job_id: j for j in registry.list()}[second.job_id]
    assert reads == [first.job_id, second.job_id]  # the first (failed now) from memory again
    assert again.state == "failed" and again.phase == "damaged"
    spec.unlink()  # a job without its spec is no job (as when it is read for the first time)
    assert [j.job_id for j in registry.list()] == [first.job_id]
    spec.write_text(text)
    registry.remove(second.job_id)
    assert [j.job_id for j in registry.list()] == [first.job_id]
    assert not [f for f in jobs_module._FINISHED if second.job_id in f]  # forgotten with its folder


def test_a_finished_job_read_from_memory_still_sees_a_stop_flag_set_after_its_end(registry):
    info = wait_for(registry, registry.submit(SMALL), finished, what="finished")
    assert not registry.list()[0].stop_requested  # read, then remembered
    (info.folder / "stop").touch()  # e.g. Stop pressed as the job wrote its last status
    assert registry.list()[0].stop_requested


# --- a damaged job folder: one failed job saying what is damaged, the others untouched --------

def _job_folder(root: Path, job_id: str, spec: dict | None = None, status: dict | None = None,
                launch: dict | None = None) -> Path:
    """A finished job written by hand under ``root/.jobs`` (its files overridden by the dicts)."""
    folder = root / ".jobs" / job_id
    folder.mkdir(parents=True)
    files = {
        "spec.json": {"kind": "sweep", "params": {**SMALL["params"], "run_id": f"run-{job_id}"},
                      "created_at": "2026-01-01T00:00:00+00:00", "job_id": job_id, "max_concurrent": 1, **(spec or {})},
        "status.json": {"state": "completed", "phase": "completed", "pid": 123, "run_id": f"run-{job_id}", "done": 3,
                        "total": 3, "failed": 0, "rate": 10.0, "eta_s": 0.0, "elapsed_s": 0.3,
                        "started_at": "2026-01-01T00:00:01+00:00", "finished_at": "2026-01-01T00:00:02+00:00",
                        "error": "", "updated_at": "2026-01-01T00:00:02+00:00", **(status or {})},
        "launch.json": {"pid": 123, "create_time": 1.0, "launched_at": "2026-01-01T00:00:00+00:00", **(launch or {})},
    }
    for name, data in files.items():
        (folder / name).write_text(json.dumps(data))
    return folder


RUNNING = {"state": "running", "phase": "running"}
DAMAGES = [  # (file, what it holds (bytes: written as is; None: a folder), the error shown)
    ("status.json", b'{"state": "completed", "error": "caf\xe9"}', "its status.json is damaged: it is not UTF-8 text"),
    ("status.json", b"[1]", "its status.json is damaged: it is not a JSON object"),
    ("spec.json", b"{", "its spec.json is damaged: it is not JSON (Expecting property name enclosed in double quotes)"),
    ("spec.json", {"created_at": 12345}, "its spec.json is damaged: 'created_at' is 12345, not a text"),
    ("spec.json", {"params": [1, 2]}, "its spec.json is damaged: 'params' is [1, 2], not an object"),
    ("spec.json", {"kind": 5}, "its spec.json is damaged: 'kind' is 5, not one of sweep, walkforward, research, "
                               "portfolio"),
    ("spec.json", {"params": {**SMALL["params"], "strategy": 7}},
     "its spec.json is damaged: 'params.strategy' is 7, not a text"),
    ("launch.json", {"pid": "abc"}, "its launch.json is damaged: 'pid' is 'abc', not a process id"),
    ("status.json", {"done": "many"}, "its status.json is damaged: 'done' is 'many', not a whole number"),
    ("status.json", {"total": "abc", **RUNNING}, "its status.json is damaged: 'total' is 'abc', not a whole number"),
    ("status.json", {"pid": "abc", **RUNNING}, "its status.json is damaged: 'pid' is 'abc', not a process id"),
    ("status.json", {"pid": -5, **RUNNING}, "its status.json is damaged: 'pid' is -5, not a process id"),
    ("status.json", {"state": "exploded"}, "its status.json is damaged: 'state' is 'exploded', not one of queued, "
                                           "running, completed, cancelled, failed"),
    ("launch.json", None, "its launch.json is damaged: it cannot be read (Is a directory)"),
    ("status.json", {"rate": float("nan"), **RUNNING}, "its status.json is damaged: 'rate' is nan, not a finite "
                                                       "number >= 0"),
]


def _damaged(root: Path, file: str, content: bytes | dict | None) -> Path:
    """A job folder whose ``file`` holds ``content`` (bytes), the healthy file's keys updated by
    it (a dict), or is a folder (None)."""
    overrides = {"spec.json": "spec", "status.json": "status", "launch.json": "launch"}
    if content is None or isinstance(content, bytes):
        folder = _job_folder(root, "20260101-000000-000001-dmg0")
        (folder / file).unlink()
        if content is None:
            (folder / file).mkdir()
        else:
            (folder / file).write_bytes(content)
        return folder
    return _job_folder(root, "20260101-000000-000001-dmg0", **{overrides[file]: content})


@pytest.mark.parametrize("file, content, error", DAMAGES)
def test_a_damaged_job_folder_is_one_failed_job_and_the_others_are_untouched(tmp_path, file, content, error):
    healthy = _job_folder(tmp_path, "20260101-000000-000000-good")
    bad = _damaged(tmp_path, file, content)
    kept = {p.name: p.read_bytes() for p in bad.iterdir() if p.is_file()}
    registry = JobRegistry(tmp_path)
    for jobs in (registry.list(), registry.refresh(), registry.list()):  # the second list: from memory
        assert sorted(j.job_id for j in jobs) == sorted([bad.name, healthy.name])
        shown = {j.job_id: j for j in jobs}
        good, damaged = shown[healthy.name], shown[bad.name]
        assert good.state == "completed" and good.status_line == "completed (3 / 3 combos)"
        assert (damaged.state, damaged.error) == ("failed", error)
        assert damaged.status_line == f"failed: {error}" and isinstance(damaged.label, str)
        assert not damaged.is_active and damaged.to_dict()["error"] == error
    assert registry.get(bad.name).error == error and registry.get(healthy.name).state == "completed"
    assert registry.active() == [] and registry.running() == [] and registry.queued() == []
    assert registry.followed(bad.name).error == error
    assert registry.stop(bad.name).error == error
    assert {p.name: p.read_bytes() for p in bad.iterdir() if p.is_file() and p.name != "stop"} == kept  # as it was
    registry.remove(bad.name)  # the damaged job can be cleared away
    assert [j.job_id for j in registry.list()] == [healthy.name]


def test_a_repaired_job_folder_is_read_anew(tmp_path):
    folder = _job_folder(tmp_path, "20260101-000000-000000-good", status={"done": "many"})
    registry = JobRegistry(tmp_path)
    assert registry.list()[0].error == "its status.json is damaged: 'done' is 'many', not a whole number"
    status = json.loads((folder / "status.json").read_text())
    (folder / "status.json").write_text(json.dumps({**status, "done": 3}))
    assert [(j.state, j.error) for j in registry.list()] == [("completed", "")]


def test_a_job_submitted_beside_damaged_folders_runs(registry, tmp_path):
    root = tmp_path / "results"
    _damaged(root, *DAMAGES[0][:2])  # the Latin-1 byte
    _job_folder(root, "20260101-000000-000002-old", spec={"created_at": 12345}, status=RUNNING,
                launch={"pid": "abc"})
    job_id = registry.submit(SMALL)
    info = wait_for(registry, job_id, finished, what="finished")
    assert info.state == "completed", registry.log(job_id)
    listed = {j.job_id: j for j in registry.list()}
    assert listed[job_id].state == "completed" and len(listed) == 3
    assert sorted(j.state for j in listed.values()) == ["completed", "failed", "failed"]
    assert listed["20260101-000000-000002-old"].error == "its spec.json is damaged: 'created_at' is 12345, not a text"


def test_the_registry_of_a_job_with_a_damaged_spec_runs_one_job_at_a_time(tmp_path):
    from threadx.ui.jobs import registry_for_job

    folder = _job_folder(tmp_path, "20260101-000000-000000-good", spec={"max_concurrent": "many"})
    assert registry_for_job(folder).max_concurrent == 1
    folder = _job_folder(tmp_path, "20260101-000000-000001-good", spec={"max_concurrent": 3})
    assert registry_for_job(folder).max_concurrent == 3


def test_max_concurrent_is_any_whole_number(tmp_path):
    import numpy as np

    registry = JobRegistry(tmp_path, max_concurrent=np.int64(2))
    assert registry.max_concurrent == 2 and type(registry.max_concurrent) is int
    for bad in (0, True, 1.5, "2"):
        with pytest.raises(ParamError, match="max_concurrent must be a whole number >= 1"):
            JobRegistry(tmp_path, max_concurrent=bad)


def test_a_job_line_names_its_dataset_without_the_file_path():
    """A resumed run's request records its data as a file path and a name: the job line (sidebar,
    monitor, progress) reads the name, not 'name, file /home/.../BTC_USDT-1h.parquet'."""
    from threadx.ui.jobs import JobInfo

    data = {"source": "/home/quant/data/binance/BTC_USDT-1h.parquet", "name": "binance/BTC_USDT-1h"}
    sweep = JobInfo("j1", {"kind": "sweep", "params": {"data": data, "strategy": "bb_atr", "sampler": "random"}}, "")
    assert sweep.label == "bb_atr on binance/BTC_USDT-1h (random)"
    research = JobInfo("j2", {"kind": "research", "params": {"datasets": [data, "sample:ETH_USDT-1h"],
                                                             "strategies": ["bb_atr"]}}, "")
    assert research.label == "research bb_atr on binance/BTC_USDT-1h, sample:ETH_USDT-1h"


@pytest.mark.parametrize("how", ["unsealed", "sealed elsewhere", "changed after its seal"])
def test_a_queued_job_this_installation_did_not_queue_is_never_started(registry, tmp_path, monkeypatch, how):
    """A results folder handed in held a queued walk-forward whose executor was its author's Dask
    scheduler: the first page's refresh started it, and the scheduler's replies (unpickled) ran
    code here."""
    from threadx.ui import job_seal
    from threadx.ui.jobs import NOT_SEALED

    root = tmp_path / "results"
    spec = {"kind": "sweep", "params": {**SMALL["params"], "run_id": "planted"},
            "created_at": "2026-01-01T00:00:00+00:00", "job_id": "planted", "max_concurrent": 1}
    if how == "sealed elsewhere":
        with monkeypatch.context() as their:  # another installation's key
            their.setenv("THREADX_CONFIG_DIR", str(tmp_path / "their-config"))
            spec = job_seal.seal(spec)
    elif how == "changed after its seal":
        spec = job_seal.seal(spec)
        spec["params"] = {**spec["params"], "executor": "dask", "scheduler": "tcp://198.51.100.7:8786"}
    folder = _job_folder(root, "20260101-000000-000000-plnt", spec=spec,
                         status={"state": "queued", "phase": "submitted", "pid": None, "started_at": None,
                                 "finished_at": None})
    (folder / "launch.json").unlink()
    launched = []
    monkeypatch.setattr(JobRegistry, "_launch", lambda self, info: launched.append(info.job_id))
    registry.refresh()
    info = registry.get("20260101-000000-000000-plnt")
    assert launched == [] and info.state == "failed" and info.error == NOT_SEALED
    job_id = registry.submit(SMALL)  # what this installation queues still starts
    assert launched == [job_id]


def test_the_seal_key_is_private_to_the_user(tmp_path, monkeypatch):
    from threadx.ui import job_seal

    monkeypatch.setenv("THREADX_CONFIG_DIR", str(tmp_path / "config"))
    spec = job_seal.seal({"kind": "sweep", "params": {"run_id": "x"}})
    key = tmp_path / "config" / job_seal.KEY_FILE
    assert key.stat().st_mode & 0o777 == 0o600 and job_seal.sealed(spec) is True
    assert job_seal.sealed({**spec, "params": {"run_id": "y"}}) is False
