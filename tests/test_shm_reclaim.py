"""Shared-memory segments of sweeps killed with their whole process group are reclaimed.

SIGKILL or SIGHUP to a sweep's process group (a closed terminal, the job registry's
force-kill) also kills the resource tracker that would unlink the block: the segment
stays in /dev/shm until a later sweep (or ``threadx cache clean``) removes it.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from threadx.optimize.store import ResultStore, lock_held

TESTS = Path(__file__).parent
SHM = Path("/dev/shm")
pytestmark = pytest.mark.skipif(not SHM.is_dir() or not hasattr(os, "killpg"),
                                reason="needs /dev/shm and process groups (Linux)")

SPACE = {"fast_period": "5:24:1", "slow_period": [30, 40, 50, 60, 70, 80], "mode": 3}  # 120 combos, 20 ms each
PLANNED = 120
SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    import sweep_helpers
    from threadx.data.synthetic import generate_synthetic
    from threadx.optimize.runner import sweep
    df = generate_synthetic("BTC_USDT", days=60, seed=5)
    run = sweep(df, "test_faulty", {space!r}, store={store!r}, run_id={run_id!r}, executor="local", workers=2,
                chunk_size=2, flush_seconds=0.0)
    print("STATUS", run.manifest["status"], len(run.results))
""")


def _start(store: Path, run_id: str, tmp_path: Path) -> subprocess.Popen:
    """A sweep in a subprocess that leads its own process group (like a terminal or a job)."""
    code = SCRIPT.format(tests=str(TESTS), space=SPACE, store=str(store), run_id=run_id)
    env = dict(os.environ, THREADX_CACHE_DIR=str(tmp_path / "cache"))
    return subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _segments_mapped_by(pid: int) -> set[str]:
    """Names of the live sweep segments (``psm_*`` or ``threadx_*``) the process maps."""
    try:
        lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    except OSError:
        return set()
    names = set()
    for line in lines:
        path = line.split(maxsplit=5)[-1] if len(line.split()) >= 6 else ""
        name = path.removeprefix("/dev/shm/")
        if path.startswith("/dev/shm/") and name.startswith(("psm_", "threadx_")) and "(deleted)" not in path:
            names.add(name)
    return names


def _wait_for_segment(proc: subprocess.Popen, timeout: float = 90.0) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        names = _segments_mapped_by(proc.pid)
        if names:
            return names.pop()
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"the sweep never mapped a segment (exit {proc.poll()}): {proc.communicate()[1][-2000:]}")


def _frozen_with_a_segment(proc: subprocess.Popen, timeout: float = 90.0) -> str:
    """A segment the sweep maps while its group is stopped (SIGSTOP): the one it holds when the
    kill comes (a segment seen mapped, then unlinked by the sweep at its batch's end before the
    kill, failed the test on a slow host)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        _wait_for_segment(proc, max(1.0, deadline - time.time()))
        os.killpg(proc.pid, signal.SIGSTOP)
        names = _segments_mapped_by(proc.pid)
        if names:
            return names.pop()
        os.killpg(proc.pid, signal.SIGCONT)
    proc.kill()
    raise AssertionError("the sweep was never stopped while it mapped a segment")


def _run_segments(run_id: str) -> set[str]:
    return {p.name for p in SHM.iterdir() if p.name.startswith("threadx_") and run_id in p.name}


@pytest.mark.fault
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGHUP], ids=["SIGKILL", "SIGHUP"])
def test_group_kill_leaves_a_segment_that_the_resume_reclaims(tmp_path, sig):
    store, run_id = tmp_path / "runs", f"shm-{uuid.uuid4().hex[:8]}"
    proc = _start(store, run_id, tmp_path)
    name = _frozen_with_a_segment(proc)
    os.killpg(proc.pid, sig)
    os.killpg(proc.pid, signal.SIGCONT)  # (a SIGHUP is delivered as the group goes on)
    proc.communicate(timeout=30)
    time.sleep(0.3)
    assert (SHM / name).exists()  # the defect: nobody is left to unlink it

    resume = _start(store, run_id, tmp_path)
    out, err = resume.communicate(timeout=180)
    assert resume.returncode == 0, err[-3000:]
    assert f"STATUS completed {PLANNED}" in out
    assert not (SHM / name).exists()  # reclaimed at the resume's start
    assert not _run_segments(run_id)  # and the resume's own segment unlinked at its end
    assert not lock_held(store / run_id)  # the dead writer's lock was taken, then released
    ids = ResultStore(store).load(run_id).results.combo_id
    assert ids.is_unique and len(ids) == PLANNED  # every combo stored exactly once


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_terminate_or_ctrl_c_of_the_group_unlinks_the_segment(tmp_path, sig):
    store, run_id = tmp_path / "runs", f"shm-{uuid.uuid4().hex[:8]}"
    proc = _start(store, run_id, tmp_path)
    name = _frozen_with_a_segment(proc)
    os.killpg(proc.pid, sig)
    os.killpg(proc.pid, signal.SIGCONT)  # (a SIGHUP is delivered as the group goes on)
    proc.communicate(timeout=30)
    deadline = time.time() + 10  # SIGTERM: the resource tracker (it ignores SIGTERM) unlinks it
    while time.time() < deadline and (SHM / name).exists():
        time.sleep(0.05)
    assert not (SHM / name).exists()


# --- naming and reclaim, without a sweep ------------------------------------------------------

def _fake_segment(name: str, size: int = 4096) -> Path:
    """A segment file as shm_open would create it on Linux (no resource tracker involved)."""
    path = SHM / name
    path.write_bytes(b"\0" * size)
    return path


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_names_fit_the_platform_limit_and_keep_the_run_recognisable(monkeypatch):
    from threadx.optimize import shm

    long_id = "bb_atr-grid." + "x" * 116  # 128 characters, the longest run id
    name = shm.segment_name(long_id)
    seg = shm.parse(name)
    assert name.startswith("threadx_") and seg.run == long_id and seg.pid == os.getpid() and seg.owner_alive()
    monkeypatch.setattr(shm, "MAX_NAME", 30)  # macOS: 31 with the leading '/'
    for run_id in ("a", "grid_1", long_id):
        name = shm.segment_name(run_id)
        seg = shm.parse(name)
        assert len(name) <= 30 and seg.pid == os.getpid() and seg.belongs_to(run_id)
        assert not seg.belongs_to(run_id + "z")
    assert shm.parse("psm_1234abcd") is None and shm.parse("threadx_x_12_ab") is None


def test_reclaim_removes_only_segments_of_dead_or_reused_pids():
    from threadx.optimize import shm

    tag = uuid.uuid4().hex[:8]
    now36 = shm._base36(shm._start_time())
    dead = _fake_segment(f"threadx_dead-{tag}_{_dead_pid()}_{now36}_0001", 8192)
    reused = _fake_segment(f"threadx_reused-{tag}_{os.getpid()}_{shm._base36(shm._start_time() - 500)}_0002")
    alive = _fake_segment(f"threadx_alive-{tag}_{os.getpid()}_{now36}_0003")
    other = _fake_segment(f"threadx-other-{tag}")
    try:
        listed = {s.name for s in shm.reclaim(dry_run=True)}
        assert {dead.name, reused.name} <= listed and alive.name not in listed and dead.exists()
        removed = {s.name: s for s in shm.reclaim() if tag in s.name}
        assert set(removed) == {dead.name, reused.name} and removed[dead.name].nbytes == 8192
        assert not dead.exists() and not reused.exists() and alive.exists() and other.exists()
    finally:
        for path in (dead, reused, alive, other):
            path.unlink(missing_ok=True)


def test_cache_clean_prints_what_it_removed_and_the_bytes_freed(capsys):
    from threadx.cli import main
    from threadx.optimize import shm

    tag = uuid.uuid4().hex[:8]
    dead = _fake_segment(f"threadx_clean-{tag}_{_dead_pid()}_{shm._base36(shm._start_time())}_0004", 12288)
    try:
        assert main(["cache", "clean", "--dry-run"]) == 0
        assert f"would remove {dead.name}: run clean-{tag}" in capsys.readouterr().out and dead.exists()
        assert main(["cache", "clean"]) == 0
        out = capsys.readouterr().out
        assert f"removed {dead.name}: run clean-{tag}, dead process" in out and "12.0 KiB" in out
        assert out.splitlines()[-1].endswith("iB freed")  # a size in KiB/MiB/... and not dead.exists()
    finally:
        dead.unlink(missing_ok=True)


def test_a_mapped_segment_is_never_reclaimed_whatever_its_owner_pid_says():
    # a wall-clock step can make a live owner's start time look like a reused pid: a segment
    # that some process maps is in use, so it stays
    import mmap

    from threadx.optimize import shm

    tag = uuid.uuid4().hex[:8]
    looks_dead = _fake_segment(f"threadx_mapped-{tag}_{_dead_pid()}_{shm._base36(shm._start_time())}_0005", 8192)
    try:
        with open(looks_dead, "r+b") as handle, mmap.mmap(handle.fileno(), 8192):
            assert looks_dead.name in shm.mapped_segments()
            assert looks_dead.name not in {s.name for s in shm.reclaim()}
            assert looks_dead.exists()
        assert looks_dead.name in {s.name for s in shm.reclaim()}  # unmapped and its owner gone: reclaimed
    finally:
        looks_dead.unlink(missing_ok=True)


def test_reclaim_reads_no_process_maps_while_every_owner_lives(monkeypatch):
    """The scan of every process's maps cost 0.16 s of a 1,860-combo sweep on a busy desktop,
    though another live sweep's segments were all it found."""
    from threadx.optimize import shm

    tag = uuid.uuid4().hex[:8]
    alive = _fake_segment(f"threadx_live-{tag}_{os.getpid()}_{shm._base36(shm._start_time())}_0006")

    def scan() -> set[str]:
        raise AssertionError("read /proc/*/maps with no orphan to check")

    try:
        monkeypatch.setattr(shm, "mapped_segments", scan)
        assert alive.name not in {s.name for s in shm.reclaim()} and alive.exists()
    finally:
        alive.unlink(missing_ok=True)


def test_a_segment_that_cannot_be_made_is_one_error_naming_shared_memory(monkeypatch):
    """Under a file size limit (ulimit -f) it read "file size limit reached while storing results",
    though the stored parts were fine: /dev/shm had refused the sweep's data."""
    import errno

    from threadx.errors import ThreadXError
    from threadx.optimize import shm

    def refuse(*args, **kwargs):
        raise OSError(errno.EFBIG, "File too large")

    monkeypatch.setattr(shm.shared_memory, "SharedMemory", refuse)
    with pytest.raises(ThreadXError, match=r"cannot make the shared memory that run r1's workers read its data from "
                                           r"\(1\.0 MiB in /dev/shm\): File too large; free space there"):
        shm.create_segment("r1", 2**20)
