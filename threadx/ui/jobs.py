"""Session-independent job registry: sweeps run in detached processes (SPEC §9).

A sweep launched from the workstation must outlive the Streamlit script run that
started it: reruns, page changes and closed tabs neither block nor kill it. Each job
is a folder on disk, so any session (or a restarted app) sees every job::

    <results_dir>/.jobs/<job_id>/
        spec.json     what to run: {"kind": "sweep", "params": <request.to_dict()>, "created_at", ...}
        status.json   written atomically by the job process: state, phase, pid, run_id, progress
        launch.json   written by the launcher: pid and process start time of the job process
        stop          flag file: present = cancel requested (the sweep stops within a chunk)
        log.txt       stdout and stderr of the job process (tracebacks land here)

States: ``queued`` -> ``running`` -> ``completed`` | ``cancelled`` | ``failed``. The
``phase`` says what the job is doing within its state, from the first second: ``submitted``,
then what the job process writes at each stage (``loading data``, ``starting 4 workers``,
``computing 120 indicators``, ``running``, ``finishing``); :attr:`JobInfo.status_line` puts
it in words with the progress (``running 1,200 / 3,930 combos``). A job folder
whose files cannot be used (not JSON, a key of another kind: ``_FILE_KINDS``) is one failed job
whose error says which file is damaged and how; its files are left as they are. A job
process is ``python -m threadx.ui.job_runner JOB_DIR`` started in its own session
(``start_new_session``) so it survives the Streamlit process rerunning; the workstation's
server hands a job to a job process it started ahead instead (:mod:`threadx.ui.standby`). The runner
stores results in the ordinary :class:`~threadx.optimize.store.ResultStore` under
``<results_dir>/<run_id>/`` and calls :meth:`JobRegistry.refresh` when it ends, so the
queue advances without a UI.

Usage::

    jobs = JobRegistry()                                  # settings().results_dir
    job_id = jobs.submit({"kind": "sweep", "params": {
        "data": "sample:BTC_USDT-1h", "strategy": "ma_crossover",
        "space": {"fast_period": "5:50:1"}, "sampler": "grid", "executor": "auto"}})
    jobs.submit(SweepRequest(DatasetRef("sample:BTC_USDT-1h"), "bb_atr", {...}))  # or a request
    jobs.refresh()                                        # start queued jobs, detect dead ones
    info = jobs.get(job_id); info.state, info.done, info.total, info.eta_s
    jobs.stop(job_id)                                     # cooperative cancel
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from filelock import FileLock

from threadx.config import settings
from threadx.errors import ParamError, ThreadXError, whole
from threadx.filestamp import file_stamp
from threadx.names import check_name, new_run_id
from threadx.procs import live_process
from threadx.shapes import COUNT, LIST, NUMBER, OBJECT, PID, TEXT, TEXTS, WHOLE, Kind, one_of, shape_problem
from threadx.requests import DatasetRef, jsonable as _jsonable
from threadx.ui import standby
from threadx.ui.job_seal import seal, sealed
from threadx.units import counted, format_eta

JOBS_FOLDER = ".jobs"
STATES = ("queued", "running", "completed", "cancelled", "failed")
FINAL_STATES = ("completed", "cancelled", "failed")
KINDS = ("sweep", "walkforward", "research", "portfolio")

# A job's params are the ``to_dict()`` of its request (threadx.requests): the fields, and
# their defaults, are declared there once.
REQUEST_KINDS = {"sweep": "SweepRequest", "walkforward": "WalkForwardRequest", "research": "ResearchRequest",
                 "portfolio": "PortfolioRequest"}

_STARTING_GRACE_S = 60.0  # a launch that left no process record for this long is failed
_CHILDREN: dict[str, subprocess.Popen] = {}  # job processes this process started (reaped on refresh)
_FINISHED: dict[str, tuple[tuple, "JobInfo"]] = {}  # finished job folder -> (stamps of its _INFO_FILES, info)
_INFO_FILES = ("spec.json", "status.json")  # what a finished job's info is read from (launch.json: only until it runs)
_FINISHED_LOCK = threading.Lock()


def _forget_finished_except(jobs_dir: Path, folders: list[str]) -> None:
    """Drop the remembered finished jobs of ``jobs_dir`` whose folder is gone."""
    prefix, present = os.path.join(str(jobs_dir), ""), set(folders)
    with _FINISHED_LOCK:
        for folder in [f for f in _FINISHED if f.startswith(prefix) and f not in present]:
            del _FINISHED[folder]


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def _parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except (TypeError, ValueError):
        return None


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON through a temp file and a rename, so readers never see half a file."""
    text = json.dumps(_jsonable(data), indent=2, allow_nan=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        with contextlib.suppress(OSError):
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; these files are meant to be read
        for attempt in range(5):  # Windows refuses to replace a file a reader holds open
            try:
                os.replace(tmp, path)
                break
            except PermissionError:
                if attempt == 4:
                    raise
                time.sleep(0.02)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_json(path: Path) -> tuple[dict[str, Any], str | None]:
    """(content, problem) of a job file: {} and None when it is missing; {} and why it cannot be
    used when it is not a JSON object in UTF-8 (job files are written whole, by a rename: an
    OSError, a replace in progress on Windows, is read again, twice)."""
    for attempt in range(3):
        try:
            data = json.loads(path.read_bytes().decode("utf-8"))
        except FileNotFoundError:
            return {}, None
        except UnicodeDecodeError:
            return {}, "it is not UTF-8 text"
        except json.JSONDecodeError as exc:
            return {}, f"it is not JSON ({exc.msg})"
        except OSError as exc:
            if attempt == 2:
                return {}, f"it cannot be read ({exc.strerror or exc})"
            time.sleep(0.01)
            continue
        return (data, None) if isinstance(data, dict) else ({}, "it is not a JSON object")
    return {}, None  # pragma: no cover - the loop always returns


def read_json(path: Path) -> dict[str, Any]:
    """A small JSON file, or {} when missing or unreadable."""
    return _load_json(path)[0]


# What the registry reads of a job's files, key -> its Kind (null refused where ``.not_null()``): a
# key may be absent, never of another kind. A job whose files break this is shown failed, saying
# what is damaged (the other jobs are untouched); ``params`` is the spec's, the keys its label reads.
_FILE_KINDS: dict[str, dict[str, Kind]] = {
    "spec.json": {"kind": one_of(KINDS).not_null(), "params": OBJECT.not_null(), "created_at": TEXT.not_null(),
                  "max_concurrent": COUNT.not_null(), "seal": TEXT},
    "status.json": {"state": one_of(STATES).not_null(), "phase": TEXT.not_null(), "pid": PID, "run_id": TEXT,
                    "done": WHOLE.not_null(), "total": WHOLE.not_null(), "failed": WHOLE.not_null(),
                    "rate": NUMBER.not_null(), "eta_s": NUMBER, "elapsed_s": NUMBER.not_null(), "started_at": TEXT,
                    "finished_at": TEXT, "error": TEXT.not_null(), "updated_at": TEXT},
    "launch.json": {"pid": PID.not_null(), "create_time": NUMBER, "launched_at": TEXT},
    "params": {"run_id": TEXT, "label": TEXT, "strategy": TEXT.not_null(), "sampler": TEXT.not_null(),
               "strategies": TEXTS.not_null(), "datasets": LIST.not_null(), "runners": LIST.not_null()},
}
_REQUIRED = {"spec.json": ("kind", "params")}
NOT_SEALED = ("not started: this installation did not queue it (a results folder from elsewhere?), and a job's "
              "spec can name code to run, such as a Dask scheduler of its author's; launch it again from its page")


def _shape_problem(data: Mapping[str, Any], name: str, where: str = "") -> str | None:
    """What in ``data`` breaks :data:`_FILE_KINDS` [``name``], in words (its keys named after
    ``where``), or None."""
    return shape_problem(data, _FILE_KINDS[name], _REQUIRED.get(name, ()), where)


def _job_files(folder: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], str | None]:
    """(spec, status, launch, problem) of a job folder: each file's content, {} when it is missing
    or damaged; ``problem`` says what is damaged (the first damaged file), else None."""
    contents, problem = [], None
    for name in ("spec.json", "status.json", "launch.json"):
        data, why = _load_json(folder / name)
        why = why or _shape_problem(data, name)
        if why is None and name == "spec.json" and isinstance(data.get("params"), dict):
            why = _shape_problem(data["params"], "params", "params.")
        if why is not None:
            data, problem = {}, problem or f"its {name} is damaged: {why}"
        contents.append(data)
    return contents[0], contents[1], contents[2], problem


def _launch_record(folder: Path) -> dict[str, Any]:
    """The launch.json of a job folder, {} when it is missing or damaged."""
    data, problem = _load_json(folder / "launch.json")
    return {} if problem or _shape_problem(data, "launch.json") else data


def _data_label(data: Any) -> str:
    """A dataset of a job's params in a few words: its name (a resumed run's request also
    records the file it was read from, which the run's details show), else its source as
    given (as given when it is no dataset)."""
    try:
        ref = DatasetRef.from_dict(data)
    except (ThreadXError, TypeError, ValueError):
        return str(data)
    return ref.name or ref.source


def job_label(kind: str, params: Mapping[str, Any]) -> str:
    """What a job runs, in words: its label when it has one, else its strategies and data."""
    if params.get("label"):
        return params["label"]
    if kind == "research":
        names = [_data_label(d) for d in params.get("datasets", [])]
        return f"research {', '.join(params.get('strategies', []))} on {', '.join(names)}"
    if kind == "portfolio":
        return f"portfolio of {counted(len(params.get('runners', [])), 'runner')}"
    data = _data_label(params["data"]) if "data" in params else "?"
    if kind == "walkforward":
        return f"walk-forward {params.get('strategy', '?')} on {data}"
    return f"{params.get('strategy', '?')} on {data} ({params.get('sampler', 'grid')})"


@dataclass
class JobInfo:
    """One job as last recorded on disk: its spec, its status and its progress."""

    job_id: str
    spec: dict
    created_at: str
    state: str = "queued"
    phase: str = ""
    pid: int | None = None
    run_id: str | None = None
    done: int = 0
    total: int = 0
    failed: int = 0
    rate: float = 0.0
    eta_s: float | None = None
    elapsed_s: float = 0.0
    started_at: str | None = None
    finished_at: str | None = None
    error: str = ""
    updated_at: str | None = None
    stop_requested: bool = False
    folder: Path | None = field(default=None, repr=False)

    @property
    def kind(self) -> str:
        return self.spec.get("kind", "sweep")

    @property
    def params(self) -> dict:
        return self.spec.get("params", {})

    @property
    def is_active(self) -> bool:
        """Queued or running."""
        return self.state not in FINAL_STATES

    @property
    def age_s(self) -> float | None:
        """Seconds since the job was submitted (None when its spec has no readable time)."""
        created = _parse_time(self.created_at)
        return None if created is None else time.time() - created

    @property
    def is_finished(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def fraction(self) -> float:
        """Progress in [0, 1] (1 once completed)."""
        if self.state == "completed":
            return 1.0
        return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def status_line(self) -> str:
        """What the job is doing, in one line: its phase while it starts, its combos done
        (with rate and ETA) while it runs, its outcome once finished; never a bare 0/0."""
        # a research job counts its steps (each cell's walk-forward, then each transfer backtest: its
        # phase says which), a portfolio job the runners whose signals are ready
        unit = {"research": "steps", "portfolio": "runners"}.get(self.kind, "combos")
        counted = f"{self.done:,} / {self.total:,} {unit}" if self.total else ""
        if self.is_finished:
            failed = f", {self.failed:,} failed" if self.failed else ""
            outcome = f"{self.state}: {self.error}" if self.state == "failed" and self.error else self.state
            return f"{outcome}" + (f" ({counted}{failed})" if counted else "")
        if self.state == "queued":
            return "cancelling" if self.stop_requested else "queued: waiting for a free slot"
        phase = self.phase or "starting"
        if unit == "runners" and counted and phase != "running":
            phase = f"{phase} ({self.done:,} / {self.total:,} runners ready)"
        elif unit == "steps" and counted and phase != "running":  # its phase names the walk-forward it is in
            # (steps done, not "step k of n": cells on a pool or a cluster run several at once)
            phase = f"{self.done:,} of {self.total:,} steps done · {phase}"
        if phase == "running":
            eta = f" · {format_eta(self.eta_s)}" if self.eta_s is not None and self.rate else ""
            per = "combos/s (each in every window)" if self.kind == "walkforward" else "backtests/s"
            rate = f" · {self.rate:,.0f} {per}" if self.rate and unit == "combos" else ""
            phase = f"running {counted}{rate}{eta}" if counted else "running"
        if self.stop_requested:  # (once the chunk is in, its results are stored: "finishing")
            phase = ("stopping: storing the combos done" if phase == "finishing"
                     else f"stopping after the current chunk ({phase})")
        return phase

    @property
    def label(self) -> str:
        if "params" not in self.spec:  # a job whose spec.json is damaged
            return f"job {self.job_id}"
        return job_label(self.kind, self.params)

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("folder", None)
        return out


class JobRegistry:
    """Jobs under ``<root>/.jobs`` (``root``: the results directory, default
    ``settings().results_dir``); sweep results go to ``ResultStore(root)``.

    ``max_concurrent`` jobs run at once; the others wait queued and start when a slot
    frees (on :meth:`refresh`, which each job process also calls when it ends).
    """

    def __init__(self, root: str | os.PathLike | None = None, max_concurrent: int = 1):
        max_concurrent = whole(max_concurrent, "max_concurrent", 1)
        base = Path(root) if root is not None else settings().results_dir
        self.root = base.expanduser().absolute()
        self.jobs_dir = self.root / JOBS_FOLDER
        self.max_concurrent = max_concurrent
        # one registry change at a time, between processes and threads: an OS lock (flock) that
        # the kernel releases when its holder dies; filelock creates the folder on acquire
        self._lock = FileLock(self.jobs_dir / ".lock")

    def __repr__(self) -> str:
        return f"JobRegistry(root={str(self.root)!r}, max_concurrent={self.max_concurrent})"

    # --- submit -------------------------------------------------------------------------

    def submit(self, spec: Mapping[str, Any] | Any) -> str:
        """Validate a job spec, queue it and start it if a slot is free; returns the job id.

        ``spec``: a SweepRequest / WalkForwardRequest, or
        ``{"kind": "sweep" | "walkforward", "params": {...}}`` (or the params
        alone): the fields of :class:`threadx.requests.SweepRequest` /
        :class:`~threadx.requests.WalkForwardRequest` (``data``: a dataset name, a file path
        or a DatasetRef dict; optional ``timeframe``/``start``/``end`` beside a name).
        Stored as the request's ``to_dict()``. Raises ParamError on bad input (the data is
        not read).
        """
        if hasattr(spec, "KIND") and hasattr(spec, "to_dict"):  # a SweepRequest / WalkForwardRequest
            spec = {"kind": spec.KIND, "params": spec.to_dict()}
        kind = spec.get("kind", "sweep") if isinstance(spec, Mapping) else "sweep"
        params = self._validated(spec)
        job_id = self._new_job_id()
        folder = self.jobs_dir / job_id
        with self._lock:
            clash = [j.job_id for j in self._read_all() if j.is_active and j.run_id == params["run_id"]]
            if clash:
                raise ParamError(f"run id {params['run_id']!r} is already used by job {clash[0]}; pick another run id")
            folder.mkdir(parents=True)
            created = now_iso()
            write_json_atomic(folder / "spec.json", seal({
                "kind": kind, "params": params, "created_at": created, "job_id": job_id,
                "max_concurrent": self.max_concurrent,
            }))
            write_json_atomic(folder / "status.json", {
                "state": "queued", "phase": "submitted", "pid": None, "run_id": params["run_id"], "done": 0,
                "total": 0, "failed": 0, "rate": 0.0, "eta_s": None, "elapsed_s": 0.0, "started_at": None,
                "finished_at": None, "error": "", "updated_at": created,
            })
        from threadx import logs

        logs.logger().info("job %s queued: %s, run %s", job_id, job_label(kind, params), params["run_id"])
        self.refresh()
        return job_id

    def _validated(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(spec, Mapping):
            raise ParamError(f"a job spec is a dict, got {type(spec).__name__}")
        kind = spec.get("kind", "sweep")
        if kind not in KINDS:
            raise ParamError(f"unknown job kind {kind!r}; kinds: {', '.join(KINDS)}")
        if "params" in spec:
            extra = sorted(set(spec) - {"kind", "params"})
            if extra:
                raise ParamError(f"unknown job spec keys {extra}; put sweep settings under 'params'")
            raw = spec["params"]
            if not isinstance(raw, Mapping):
                raise ParamError("job spec 'params' must be a dict")
        else:
            raw = {k: v for k, v in spec.items() if k != "kind"}
        from threadx import requests

        cls = getattr(requests, REQUEST_KINDS[kind])
        request = cls.from_dict(raw)  # checked on construction (the data is not read)
        if request.run_id is None:
            prefix = {"walkforward": f"wf-{getattr(request, 'strategy', '')}", "research": "research",
                      "portfolio": "portfolio"}
            request = request.with_run_id(new_run_id(prefix.get(kind, getattr(request, "strategy", kind))))
        try:
            from threadx.optimize.store import check_run_id

            check_run_id(request.run_id)
        except ThreadXError as exc:
            raise ParamError(str(exc)) from None
        params = request.to_dict()
        params.pop("kind")
        return params

    def _new_job_id(self) -> str:
        return f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S-%f}-{uuid.uuid4().hex[:4]}"

    # --- read ---------------------------------------------------------------------------

    def _folder(self, job_id: str) -> Path:
        folder = self.jobs_dir / check_name(job_id, "job id")
        if not (folder / "spec.json").exists():
            raise ThreadXError(f"no job {job_id!r} under {self.jobs_dir}")
        return folder

    def _read(self, folder: Path) -> JobInfo | None:
        """The job of ``folder``, None when it has no spec.json (yet): failed, saying what is
        damaged, when one of its files breaks :data:`_FILE_KINDS`."""
        if not (folder / "spec.json").exists():
            return None
        spec, status, launch, problem = _job_files(folder)
        if problem is None and not spec:  # removed meanwhile
            return None
        if problem is not None:
            return JobInfo(job_id=folder.name, spec=spec, created_at=spec.get("created_at", ""), state="failed",
                           phase="damaged", run_id=spec.get("params", {}).get("run_id"), error=problem,
                           folder=folder, stop_requested=(folder / "stop").exists())
        fields = {k: status[k] for k in JobInfo.__dataclass_fields__ if k in status
                  and k not in ("job_id", "spec", "created_at", "folder", "stop_requested")}
        info = JobInfo(job_id=folder.name, spec=spec, created_at=spec.get("created_at", ""), folder=folder, **fields)
        if info.run_id is None:
            info.run_id = spec["params"].get("run_id")
        if info.state == "queued" and launch:  # launched, the process has not reported yet
            info.state = "running"
            info.phase = "starting the job process"
            info.started_at = info.started_at or launch.get("launched_at")
        if info.pid is None and launch.get("pid") and info.state == "running":
            info.pid = launch["pid"]
        info.stop_requested = (folder / "stop").exists()
        return info

    def _read_all(self) -> list[JobInfo]:
        try:
            folders = [entry.path for entry in os.scandir(self.jobs_dir)
                       if not entry.name.startswith(".") and entry.is_dir()]
        except (FileNotFoundError, NotADirectoryError):
            return []
        jobs = [info for folder in folders for info in [self._read_known(folder)] if info is not None]
        _forget_finished_except(self.jobs_dir, folders)
        jobs.sort(key=lambda j: (j.created_at, j.job_id), reverse=True)
        return jobs

    def _read_known(self, folder: str) -> JobInfo | None:
        """:meth:`_read`, from memory for a finished job whose ``spec.json`` and ``status.json``
        are unchanged (a finished job's files no longer change: the registry stats two files of
        each, not reads three, so that a workstation with months of jobs refreshes as fast as a
        new one; a file replaced, edited or removed since is read anew)."""
        try:
            stamp = tuple(file_stamp(os.path.join(folder, name)) for name in _INFO_FILES)
        except OSError:
            return self._read(Path(folder))
        with _FINISHED_LOCK:
            known = _FINISHED.get(folder)
        if known is not None and known[0] == stamp:
            info = copy.copy(known[1])
            info.stop_requested = os.path.exists(os.path.join(folder, "stop"))  # may appear after the end
            return info
        info = self._read(Path(folder))
        if info is not None and info.is_finished and info.phase != "damaged":  # a repaired file is read anew
            with _FINISHED_LOCK:
                _FINISHED[folder] = (stamp, copy.copy(info))
        return info

    def list(self) -> list[JobInfo]:
        """Every job, newest first (reads small JSON files only; call refresh() to advance)."""
        return self._read_all()

    def get(self, job_id: str) -> JobInfo:
        """One job (ThreadXError when unknown)."""
        info = self._read(self._folder(job_id))
        if info is None:
            raise ThreadXError(f"job {job_id!r} has no readable spec")
        return info

    def followed(self, job_id: str | None, refresh: bool = False) -> JobInfo | None:
        """The job a page follows (``job_id`` from its session state; ``refresh``: advance the
        registry first), or None when there is none or its folder is gone or unreadable."""
        if not job_id:
            return None
        try:
            if refresh:
                self.refresh()
            return self.get(job_id)
        except (ThreadXError, KeyError, FileNotFoundError):
            return None

    def active(self) -> list[JobInfo]:
        """Jobs queued or running, newest first (the sidebar's list: finished jobs leave it)."""
        return [j for j in self._read_all() if j.is_active]

    def follow(self, session: Any, key: str, kind: str, refresh: bool = False,
               linked: str | None = None) -> JobInfo | None:
        """The job a page follows: the one its session holds under ``key``; else (a new session:
        a refresh, a link, a tab closed while its job ran) ``linked``, the job the page's URL
        names, a job of ``kind`` (one that has ended shows how it ended and what it stored: a
        copied link of a sweep stopped since opened an empty form); else the active job of
        ``kind`` when there is exactly one. The session then holds it. With several active and
        none named, none is followed (the sidebar lists them): the newest was taken, so a
        refreshed tab showed another tab's sweep, and its Stop stopped that one. A link naming
        a job this registry does not hold (or one of another kind) follows none: the one active
        job was shown as the job the link named."""
        if not session.get(key):
            named = self.followed(linked, refresh=refresh) if linked else None
            if named is not None and named.kind == kind:
                session[key] = named.job_id
            elif linked:
                return None
            else:
                active = [j for j in self.active() if j.kind == kind]
                if len(active) != 1:
                    return None
                session[key] = active[0].job_id
        return self.followed(session.get(key), refresh=refresh)

    def running(self) -> list[JobInfo]:
        """Jobs whose process is (or should be) running, newest first."""
        return [j for j in self._read_all() if j.state == "running"]

    def queued(self) -> list[JobInfo]:
        """Jobs waiting for a slot, oldest first (the order they will start in)."""
        return sorted((j for j in self._read_all() if j.state == "queued"), key=lambda j: (j.created_at, j.job_id))

    def log(self, job_id: str, max_chars: int = 20_000) -> str:
        """The tail of a job's log (stdout and stderr of its process)."""
        path = self._folder(job_id) / "log.txt"
        try:
            with open(path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - max_chars))
                return handle.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    # --- control ------------------------------------------------------------------------

    def stop(self, job_id: str) -> JobInfo:
        """Ask a job to stop: a queued job is cancelled at once; a running one stops once
        the chunks its workers hold finish, keeping its stored results (state ``cancelled``)."""
        folder = self._folder(job_id)
        with self._lock:
            info = self._read(folder)
            if info is None or info.is_finished:
                return info
            (folder / "stop").touch()
            if info.state == "queued":
                self._write_status(folder, info, state="cancelled", finished_at=now_iso(), error="")
        return self.get(job_id)

    def kill(self, job_id: str, force: bool = False) -> bool:
        """Signal a running job: SIGTERM (handled as a cancel, results kept) or, with
        ``force``, SIGKILL to its whole process group (workers included). True if signalled."""
        info = self.get(job_id)
        proc = self._live_process(info)
        if proc is None:
            return False
        (info.folder / "stop").touch()
        try:
            if force:
                if os.name != "nt" and hasattr(os, "killpg"):
                    try:
                        os.killpg(os.getpgid(proc.pid), signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        proc.kill()
                else:  # pragma: no cover
                    proc.kill()
            else:
                proc.terminate()
        except Exception:  # noqa: BLE001 - it ended meanwhile
            return False
        return True

    def remove(self, job_id: str) -> None:
        """Delete a finished job's folder (its results stay in the store)."""
        import shutil

        folder = self._folder(job_id)
        with self._lock:
            info = self._read(folder)
            if info is not None and info.is_active:
                raise ThreadXError(f"job {job_id} is {info.state}; stop it first")
            shutil.rmtree(folder, ignore_errors=True)

    def refresh(self) -> list[JobInfo]:
        """Mark running jobs whose process is gone as failed, then start queued jobs while
        fewer than ``max_concurrent`` run. Returns the jobs, newest first."""
        for job_id, child in list(_CHILDREN.items()):  # reap our own exited children (no zombies)
            if child.poll() is not None:
                _CHILDREN.pop(job_id, None)
        with self._lock:
            jobs = self._read_all()
            running = 0
            for info in jobs:
                if info.state != "running":
                    continue
                if self._live_process(info) is not None:
                    running += 1
                    continue
                if not _launch_record(info.folder).get("pid") and not info.pid:
                    started = _parse_time(info.started_at) or _parse_time(info.created_at) or 0.0
                    if time.time() - started < _STARTING_GRACE_S:
                        running += 1  # being launched by another process right now
                        continue
                fresh = self._read(info.folder)  # the process is gone: its last word is final
                if fresh is not None and fresh.state == "running":
                    self._write_status(info.folder, fresh, state="failed", finished_at=now_iso(),
                                       error=fresh.error or "job process died")
            for info in sorted((j for j in jobs if j.state == "queued"), key=lambda j: (j.created_at, j.job_id)):
                if running >= self.max_concurrent:
                    break
                if info.stop_requested:
                    self._write_status(info.folder, info, state="cancelled", finished_at=now_iso())
                    continue
                verdict = sealed(info.spec)
                if verdict is None:  # (no key could be kept: left to the process that queued it)
                    continue
                if not verdict:
                    self._write_status(info.folder, info, state="failed", finished_at=now_iso(), error=NOT_SEALED)
                    continue
                try:
                    self._launch(info)
                except OSError as exc:
                    self._write_status(info.folder, info, state="failed", finished_at=now_iso(),
                                       error=f"cannot start the job process: {exc}")
                    continue
                running += 1
            return self._read_all()

    def worker_processes(self, job_id: str) -> list[dict[str, Any]]:
        """The job process and its children (pool workers): pid, name, cpu_percent, rss (bytes).

        ``cpu_percent`` is measured since the previous call for the same process (the first
        time: its mean since it started, :func:`threadx.monitor.process_cpu_percent`).
        """
        import psutil

        from threadx.monitor import cached_process, process_cpu_percent

        info = self.get(job_id)
        proc = self._live_process(info)
        if proc is None:
            return []
        try:
            procs = [proc, *proc.children(recursive=True)]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return []
        out = []
        for p in procs:
            try:
                cached = cached_process(p.pid) or p
                with cached.oneshot():
                    out.append({"pid": cached.pid, "name": cached.name(), "cpu_percent": process_cpu_percent(cached),
                                "rss": cached.memory_info().rss, "role": "job" if p.pid == proc.pid else "worker"})
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return out

    # --- internals ----------------------------------------------------------------------

    def _live_process(self, info: JobInfo):
        launch = _launch_record(info.folder) if info.folder is not None else {}
        pid = info.pid or launch.get("pid")
        if not pid:
            return None
        create_time = launch.get("create_time") if launch.get("pid") == pid else None
        return live_process(pid, create_time)

    def _write_status(self, folder: Path, info: JobInfo, **changes: Any) -> None:
        status = read_json(folder / "status.json")
        status.update({k: getattr(info, k) for k in ("state", "phase", "pid", "run_id", "done", "total", "failed",
                                                       "rate", "eta_s", "elapsed_s", "started_at", "finished_at",
                                                       "error") if k not in status})
        status.update(changes)
        status["updated_at"] = now_iso()
        write_json_atomic(folder / "status.json", status)

    def _launch(self, info: JobInfo) -> None:
        """Start the job process, detached from this one (own session / process group)."""
        folder = info.folder
        log = open(folder / "log.txt", "ab")
        kwargs: dict[str, Any] = {}
        if os.name == "nt":  # pragma: no cover
            kwargs["creationflags"] = (getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
                                       | getattr(subprocess, "DETACHED_PROCESS", 0)
                                       | getattr(subprocess, "CREATE_NO_WINDOW", 0))
        else:
            kwargs["start_new_session"] = True
        try:
            log.write(f"[{now_iso()}] launching job {info.job_id}\n".encode())
            log.flush()
            child = standby.hand_over(folder)  # this server's process started ahead, warm
            if child is not None:
                log.write(f"[{now_iso()}] job {info.job_id} runs in the standby process {child.pid}\n".encode())
            else:
                child = subprocess.Popen([sys.executable, "-m", "threadx.ui.job_runner", str(folder)],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         close_fds=True, **kwargs)
        finally:
            log.close()
        _CHILDREN[info.job_id] = child
        create_time = None
        try:
            import psutil

            create_time = psutil.Process(child.pid).create_time()
        except Exception:  # noqa: BLE001 - it may already have ended
            pass
        write_json_atomic(folder / "launch.json", {"pid": child.pid, "create_time": create_time,
                                                   "launched_at": now_iso(), "python": sys.executable,
                                                   "cwd": os.getcwd()})


def registry_for_job(job_dir: str | os.PathLike) -> JobRegistry:
    """The registry a job folder belongs to (``<root>/.jobs/<job_id>``), with the
    ``max_concurrent`` recorded when the job was submitted."""
    folder = Path(job_dir).absolute()
    spec = _job_files(folder)[0]  # {} when damaged: one job at a time
    return JobRegistry(folder.parent.parent, max_concurrent=spec.get("max_concurrent", 1))
