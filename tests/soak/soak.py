"""Soak test: hammer sweeps with kills, concurrency and hostile input for N minutes.

Not collected by pytest (see ``tests/soak/conftest.py``). Run from the repository root::

    PYTHONPATH=$PWD .venv/bin/python tests/soak/soak.py --minutes 5

Scenarios (each gets an equal share of the time and runs at least once):

- ``kill``: a CLI sweep in its own process group, SIGKILLed as a group at a random time,
  resumed (and killed) again, then resumed to the end;
- ``workers``: SIGKILL of random pool workers of a running CLI sweep, then a resume;
- ``dask``: a sweep on a Dask LocalCluster with a worker process killed mid-run, then a resume;
- ``concurrent``: three sweeps on different run ids and two on the same run id at once
  (one of those two must be refused with one ``error:`` line);
- ``hostile``: bad files and bad arguments to the CLI, each of which must exit 2 with one
  ``error:`` line on stderr.

Each scenario counts attempts, clean errors, tracebacks (any "Traceback" on stderr),
other failures (an unexpected exit status, a hang), combos lost or stored twice (read from
the run's Parquet parts against the planned count) and ``/dev/shm/threadx_*`` segments
left behind. Exit status 1 when any of those but attempts and clean errors is non-zero.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[2]
SHM = Path("/dev/shm")
DATA = "synthetic/BTC_USDT-1h"
BIG = {"fast_period": "5:60:1", "slow_period": "20:200:2"}  # ~4.7k combos, ~10 s on two workers
SMALL = {"fast_period": "5:40:1", "slow_period": "20:120:4"}  # ~900 combos
TIMEOUT = 300.0  # a sweep that runs longer is counted as a hang


@dataclass
class Tally:
    """Figures of one scenario."""

    name: str
    attempts: int = 0
    clean_errors: int = 0
    tracebacks: int = 0
    failures: int = 0
    lost: int = 0
    duplicated: int = 0
    segments_left: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.notes) < 12:
            self.notes.append(text)

    @property
    def bad(self) -> int:
        return self.tracebacks + self.failures + self.lost + self.duplicated + self.segments_left


@dataclass
class Proc:
    """A CLI process in its own group, its output in files (a full pipe would block it)."""

    popen: subprocess.Popen
    out: Path
    err: Path

    def wait(self, timeout: float = TIMEOUT) -> int | None:
        """Exit status, or None after killing the group on timeout."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(self.popen, signal.SIGKILL)
            self.popen.wait()
            return None

    @property
    def stderr(self) -> str:
        return self.err.read_text(errors="replace") if self.err.exists() else ""


class Soak:
    """The temporary data, results and cache roots and the process launcher."""

    def __init__(self, work: Path, workers: int, rng: random.Random):
        self.work, self.workers, self.rng = work, workers, rng
        self.env = dict(os.environ, THREADX_DATA_ROOT=str(work / "data"), THREADX_RESULTS_DIR=str(work / "results"),
                        THREADX_CACHE_DIR=str(work / "cache"),
                        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        self.results = work / "results"
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.count = 0
        self.live: list[subprocess.Popen] = []
        self.run_ids: list[str] = []

    def start(self, argv: Sequence[str]) -> Proc:
        """``python ARGV...`` in its own process group."""
        self.count += 1
        out, err = self.logs / f"{self.count}.out", self.logs / f"{self.count}.err"
        with open(out, "wb") as o, open(err, "wb") as e:
            popen = subprocess.Popen([sys.executable, *argv], env=self.env, cwd=self.work, stdin=subprocess.DEVNULL,
                                     stdout=o, stderr=e, start_new_session=True)
        self.live.append(popen)
        return Proc(popen, out, err)

    def cli(self, *args: str) -> Proc:
        return self.start(["-m", "threadx.cli", *args])

    def sweep(self, run_id: str, space: dict[str, str], *extra: str) -> Proc:
        params = [a for name, value in space.items() for a in ("--param", f"{name}={value}")]
        if run_id not in self.run_ids:
            self.run_ids.append(run_id)
        return self.cli("sweep", "--data", DATA, "--strategy", "ma_crossover", *params, "--executor", "local",
                        "--workers", str(self.workers), "--run-id", run_id, "--top", "1", *extra)

    def stop_all(self) -> None:
        for popen in self.live:
            if popen.poll() is None:
                kill_group(popen, signal.SIGKILL)
                popen.wait()


def kill_group(popen: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(popen.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def planned(space: dict[str, str]) -> int:
    """Valid ma_crossover combos of ``space``, counted by ThreadX's own search space."""
    from threadx.optimize.space import SearchSpace
    from threadx.strategy.base import get_strategy

    return int(SearchSpace(get_strategy("ma_crossover"), space).count_valid())


def stored_ids(results: Path, run_id: str) -> list[int]:
    """Every combo id in the run's Parquet parts (duplicates kept)."""
    import pyarrow.parquet as pq

    ids: list[int] = []
    for part in sorted((results / run_id).glob("part-*.parquet")):
        ids += pq.read_table(part, columns=["combo_id"]).column("combo_id").to_pylist()
    return ids


def run_segments(run_id: str) -> list[str]:
    """Sweep segments in /dev/shm named for ``run_id``."""
    if not SHM.is_dir():
        return []
    return [p.name for p in SHM.iterdir() if p.name.startswith("threadx_") and f"_{run_id}_" in p.name]


def classify(tally: Tally, proc: Proc, rc: int | None, ok: tuple[int, ...] = (0,), what: str = "") -> str:
    """Count one finished process: 'ok', 'clean' (exit 2, one error line), 'traceback' or 'failure'."""
    err = proc.stderr
    if "Traceback" in err:
        tally.tracebacks += 1
        tally.note(f"{what}: traceback: {last_line(err)}")
        return "traceback"
    if rc in ok:
        return "ok"
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    if rc == 2 and len(errors) == 1:
        tally.clean_errors += 1
        return "clean"
    tally.failures += 1
    tally.note(f"{what}: exit {'timeout' if rc is None else rc}: {last_line(err)}")
    return "failure"


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return lines[-1][:160] if lines else "(no stderr)"


def verify(soak: Soak, tally: Tally, run_id: str, space: dict[str, str]) -> None:
    """Resume ``run_id`` to its end, then count lost and duplicated combos and segments left."""
    proc = soak.sweep(run_id, space)
    rc = proc.wait()
    classify(tally, proc, rc, what=f"final resume of {run_id}")
    ids = stored_ids(soak.results, run_id)
    expected = planned(space)
    unique = len(set(ids))
    tally.lost += max(0, expected - unique)
    tally.duplicated += len(ids) - unique
    if expected != unique or len(ids) != unique:
        tally.note(f"{run_id}: planned {expected}, stored {len(ids)} rows, {unique} distinct")
    left = run_segments(run_id)
    tally.segments_left += len(left)
    if left:
        tally.note(f"{run_id}: segments left {left}")


def sweep_children(pid: int) -> list:
    """Pool worker processes of a sweep (its children but the resource tracker)."""
    import psutil

    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    out = []
    for child in children:
        try:
            if "resource_tracker" not in " ".join(child.cmdline()):
                out.append(child)
        except psutil.Error:
            continue
    return out


# --- scenarios -------------------------------------------------------------------------------

def scenario_kill(soak: Soak, tally: Tally, until: float) -> None:
    """Group SIGKILL at a random time, resume, repeat; then a full resume and checks."""
    cycle = kills = leaks = 0
    while True:
        cycle += 1
        run_id = f"soak-kill-{cycle}"
        for _ in range(3):
            tally.attempts += 1
            proc = soak.sweep(run_id, BIG)
            delay = soak.rng.uniform(0.5, 12.0)
            try:
                rc = proc.popen.wait(timeout=delay)
                classify(tally, proc, rc, what=f"{run_id} (finished before its kill at {delay:.1f}s)")
            except subprocess.TimeoutExpired:
                kill_group(proc.popen, signal.SIGKILL)
                proc.popen.wait()
                kills += 1
                leaks += bool(run_segments(run_id))
            if time.time() > until:
                break
        verify(soak, tally, run_id, BIG)
        if time.time() > until:
            tally.note(f"{kills} group kills, {leaks} of them left a segment (the next run must reclaim it)")
            return


def scenario_workers(soak: Soak, tally: Tally, until: float) -> None:
    """SIGKILL random pool workers during a sweep; the sweep must finish; then resume and check."""
    cycle = delivered = 0
    while True:
        cycle += 1
        run_id = f"soak-workers-{cycle}"
        tally.attempts += 1
        proc = soak.sweep(run_id, BIG)
        kills = soak.rng.randint(1, 3)
        deadline = time.time() + TIMEOUT
        while kills and proc.popen.poll() is None and time.time() < deadline:
            time.sleep(soak.rng.uniform(0.5, 3.0))
            workers = sweep_children(proc.popen.pid)
            if workers:
                victim = soak.rng.choice(workers)
                try:
                    victim.send_signal(signal.SIGKILL)
                    kills -= 1
                    delivered += 1
                except Exception:  # noqa: BLE001 - it ended meanwhile
                    pass
        rc = proc.wait()
        classify(tally, proc, rc, what=f"{run_id} with worker kills")
        verify(soak, tally, run_id, BIG)
        if time.time() > until:
            tally.note(f"{delivered} pool workers SIGKILLed over {cycle} sweeps")
            return


DASK_DRIVER = """
import sys
import threadx

if __name__ == "__main__":  # Dask's worker processes are spawned: they import this file again
    run = threadx.sweep(threadx.load_ohlcv({data!r}), "ma_crossover", {space!r}, executor="dask",
                        workers={workers}, run_id=sys.argv[1])
    print(run.manifest["status"], len(run.results))
"""


def scenario_dask(soak: Soak, tally: Tally, until: float) -> None:
    """A Dask LocalCluster sweep with a worker process SIGKILLed mid-run, then a resume."""
    probe = soak.cli("sweep", "--data", DATA, "--strategy", "ma_crossover", "--executor", "dask", "--run-id", "x")
    if probe.wait(60) == 2 and "invalid choice" in probe.stderr:
        tally.note("the CLI has no --executor dask: driven through threadx.sweep(executor='dask')")
    driver = soak.work / "dask_driver.py"
    driver.write_text(DASK_DRIVER.format(data=DATA, space=BIG, workers=soak.workers))
    cycle = 0
    while True:
        cycle += 1
        run_id = f"soak-dask-{cycle}"
        soak.run_ids.append(run_id)
        tally.attempts += 1
        proc = soak.start([str(driver), run_id])
        killed = False
        deadline = time.time() + TIMEOUT
        while not killed and proc.popen.poll() is None and time.time() < deadline:
            time.sleep(0.5)
            if any((soak.results / run_id).glob("part-*.parquet")):  # running: kill a worker now
                workers = sweep_children(proc.popen.pid)
                if workers:
                    soak.rng.choice(workers).send_signal(signal.SIGKILL)
                    killed = True
        rc = proc.wait()
        if not killed:
            tally.note(f"{run_id}: finished before a worker could be killed")
        classify(tally, proc, rc, what=f"{run_id} (dask, worker killed)")
        resume = soak.start([str(driver), run_id])
        classify(tally, resume, resume.wait(), what=f"{run_id} dask resume")
        ids = stored_ids(soak.results, run_id)
        tally.lost += max(0, planned(BIG) - len(set(ids)))
        tally.duplicated += len(ids) - len(set(ids))
        if time.time() > until:
            return


def scenario_concurrent(soak: Soak, tally: Tally, until: float) -> None:
    """Three sweeps on distinct run ids and two on one run id, all at once."""
    cycle = 0
    while True:
        cycle += 1
        distinct = [f"soak-conc-{cycle}-{k}" for k in range(3)]
        shared = f"soak-conc-{cycle}-same"
        procs = [(run_id, soak.sweep(run_id, SMALL)) for run_id in distinct + [shared, shared]]
        outcomes = []
        for run_id, proc in procs:
            tally.attempts += 1
            outcomes.append(classify(tally, proc, proc.wait(), what=f"{run_id} concurrent"))
        same = outcomes[3:]
        if sorted(same) != ["clean", "ok"]:
            tally.note(f"{shared}: outcomes of the two writers {same} (expected one ok, one refused)")
        if "clean" in same and cycle == 1:
            tally.note(f"refusal line: {last_line(procs[3 + same.index('clean')][1].stderr)}")
        for run_id in distinct + [shared]:
            verify(soak, tally, run_id, SMALL)
        if time.time() > until:
            return


def hostile_cases(work: Path) -> list[tuple[str, list[str], tuple[int, ...]]]:
    """(label, CLI arguments, exit statuses accepted besides a clean error) of hostile runs."""
    bad = work / "bad"
    bad.mkdir(exist_ok=True)
    (bad / "empty.csv").write_bytes(b"")
    (bad / "garbage.parquet").write_bytes(os.urandom(4096))
    sample = work / "data" / "synthetic" / "BTC_USDT-1h.parquet"
    raw = sample.read_bytes()
    (bad / "truncated.parquet").write_bytes(raw[: len(raw) // 2])
    (bad / "inf.csv").write_text("timestamp,open,high,low,close,volume\n" + "\n".join(
        f"2024-01-01 {h:02d}:00:00,1,2,0.5,{'inf' if h == 5 else 1.5},10" for h in range(24)) + "\n")
    (bad / "folder.csv").mkdir(exist_ok=True)
    sweep = ["sweep", "--data", DATA, "--strategy", "ma_crossover", "--executor", "local", "--workers", "2"]
    cases: list[tuple[str, list[str], tuple[int, ...]]] = []
    for name in ("empty.csv", "garbage.parquet", "truncated.parquet", "inf.csv", "folder.csv", "missing.csv"):
        path = str(bad / name)
        cases += [(f"backtest {name}", ["backtest", "--data", path, "--strategy", "ma_crossover"]),
                  (f"sweep {name}", ["sweep", "--data", path, "--strategy", "ma_crossover",
                                     "--param", "fast_period=5:10:1"]),
                  (f"import {name}", ["data", "import", path])]
    cases = [(label, args, ()) for label, args in cases]
    cases += [("huge --n on a small space", sweep + ["--sampler", "random", "--n", str(10 ** 12), "--param",
                                                     "fast_period=5:60:1"], (0,))]  # drawing them all is fine
    cases += [(label, args, ()) for label, args in [
        ("unknown strategy", ["backtest", "--data", DATA, "--strategy", "nope"]),
        ("unknown param", ["backtest", "--data", DATA, "--strategy", "ma_crossover", "--param", "nonsense=3"]),
        ("param out of range", ["backtest", "--data", DATA, "--strategy", "ma_crossover", "--param",
                                "fast_period=-5"]),
        ("param not a number", sweep + ["--param", "fast_period=abc"]),
        ("range min > max", sweep + ["--param", "fast_period=50:10:1"]),
        ("range step 0", sweep + ["--param", "fast_period=5:50:0"]),
        ("fast >= slow backtest", ["backtest", "--data", DATA, "--strategy", "ma_crossover", "--param",
                                   "fast_period=50", "--param", "slow_period=20"]),
        ("fast >= slow sweep", sweep + ["--param", "fast_period=50", "--param", "slow_period=20"]),
        ("--n 0", sweep + ["--sampler", "random", "--n", "0"]),
        ("--n -3", sweep + ["--sampler", "sobol", "--n", "-3"]),
        ("huge grid", sweep + ["--param", "fast_period=2:100000:1", "--param", "slow_period=3:100000:1"]),
        ("--workers 0", sweep + ["--workers", "0", "--param", "fast_period=5:10:1"]),
        ("unknown objective", sweep + ["--objective", "nope", "--param", "fast_period=5:10:1"]),
        ("bad dataset name", ["sweep", "--data", "nope/NOPE-1h", "--strategy", "ma_crossover"]),
        ("timeframe garbage", ["backtest", "--data", DATA, "--strategy", "ma_crossover", "--timeframe", "7x"]),
        ("run id ../x", sweep + ["--run-id", "../x", "--param", "fast_period=5:10:1"]),
        ("run id a/b", sweep + ["--run-id", "a/b", "--param", "fast_period=5:10:1"]),
        ("run id .hidden", sweep + ["--run-id", ".hidden", "--param", "fast_period=5:10:1"]),
        ("run id newline", sweep + ["--run-id", "run\n", "--param", "fast_period=5:10:1"]),
        ("runs show ../x", ["runs", "show", "../x"]),
        ("validate unknown run", ["validate", "no-such-run"]),
    ]]
    return cases


def scenario_hostile(soak: Soak, tally: Tally, until: float) -> None:
    """Every hostile case once (again while time is left): exit 2 and one error line each."""
    cases = hostile_cases(soak.work)
    while True:
        for label, args, ok in cases:
            tally.attempts += 1
            proc = soak.cli(*args)
            classify(tally, proc, proc.wait(120), ok=ok, what=label)  # an unexpected exit 0 is a failure
        if time.time() > until:
            return


SCENARIOS = {"kill": scenario_kill, "workers": scenario_workers, "dask": scenario_dask,
             "concurrent": scenario_concurrent, "hostile": scenario_hostile}


# --- main ------------------------------------------------------------------------------------

def report(tallies: list[Tally], leftover: list[str]) -> None:
    cols = ("attempts", "clean_errors", "tracebacks", "failures", "lost", "duplicated", "segments_left", "seconds")
    print(f"\n{'scenario':<12}" + "".join(f"{c:>15}" for c in cols))
    for t in tallies:
        print(f"{t.name:<12}" + "".join(f"{getattr(t, c):>15.0f}" for c in cols))
    total = {c: sum(getattr(t, c) for t in tallies) for c in cols}
    print(f"{'total':<12}" + "".join(f"{total[c]:>15.0f}" for c in cols))
    print(f"/dev/shm/threadx_* segments of this soak left at the end: {len(leftover)} {leftover[:5]}")
    for t in tallies:
        for note in t.notes:
            print(f"  [{t.name}] {note}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="total time (shared by the scenarios)")
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS), help="run these scenarios only")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: drawn and printed)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, results)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    names = args.only or list(SCENARIOS)
    work = Path(tempfile.mkdtemp(prefix="threadx-soak-"))
    print(f"soak: {', '.join(names)} for {args.minutes:g} min, seed {seed}, workers {args.workers}, in {work}")
    soak = Soak(work, args.workers, random.Random(seed))
    subprocess.run([sys.executable, "-m", "threadx.data"], env=soak.env, cwd=work, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    share = args.minutes * 60 / len(names)
    tallies = []
    try:
        for name in names:
            tally = Tally(name)
            tallies.append(tally)
            started = time.time()
            print(f"  {name} ...", flush=True)
            try:
                SCENARIOS[name](soak, tally, started + share)
            except Exception as exc:  # noqa: BLE001 - a soak bug must not hide the other figures
                tally.failures += 1
                tally.note(f"soak script error: {type(exc).__name__}: {exc}")
            tally.seconds = time.time() - started
    except KeyboardInterrupt:
        print("interrupted: figures so far", file=sys.stderr)
    finally:
        soak.stop_all()
    leftover = [s for run_id in soak.run_ids for s in run_segments(run_id)]
    report(tallies, leftover)
    if args.keep:
        print(f"logs and results kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if leftover or any(t.bad for t in tallies) else 0


if __name__ == "__main__":
    sys.exit(main())
