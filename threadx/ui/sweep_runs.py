"""Stored sweep runs on the Optimisation page: the run history, the shown run, the
comparison of two runs and the request that resumes a run (SPEC §9).

A page rerun must stay cheap however many runs are stored and however large they are, so
everything read from a run's Parquet parts is cached by the run's *signature*
(:func:`run_signature`: the folder's modification time and the stamps
(:func:`~threadx.filestamp.file_stamp`) of its manifest and parts), which changes whenever
the run's files do. A rerun then only lists the results folder and stats each run's files; a
run's parts are read again only after they changed (a new part of a running sweep, a resume,
a repair).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import numpy as np
import pandas as pd
import streamlit as st

from threadx.engine.layout import METRIC_NAMES
from threadx.errors import ThreadXError, first_line, is_real
from threadx.filestamp import file_stamp
from threadx.optimize.store import ResultStore, RunDamaged, SweepRun, lock_held
from threadx.requests import DatasetRef, SweepRequest, describe_data, funding_words
from threadx.units import format_metric

if TYPE_CHECKING:
    import plotly.graph_objects as go

# The history table: one row per run, every column sortable (numbers stay numbers); what tells runs
# apart first (at 1440 px the status, best objective and start were cut off at the right)
HISTORY_COLUMNS = ("run_id", "status", "best", "objective", "done", "planned", "failed", "started_at", "strategy",
                   "dataset", "sampler")
RESUMABLE = ("cancelled", "interrupted", "failed")  # and "completed with N failed" when some can run again
_METRICS_SHOWN = ("total_return", "sharpe", "sortino", "max_drawdown", "calmar", "n_trades", "win_rate",
                  "profit_factor")


def run_signature(folder: Path) -> tuple | None:
    """(folder mtime in ns, the :func:`~threadx.filestamp.file_stamp` of the manifest and of each
    part, by name); None when the folder is gone. Parts and manifests are written by rename,
    which touches the folder; a file rewritten in place (a part damaged or repaired by hand),
    even with its mtime put back, has a new ctime."""
    try:
        folder_mtime = folder.stat().st_mtime_ns
        names = os.listdir(folder)
    except OSError:
        return None
    parts = sorted(n for n in names if n.startswith("part-") and n.endswith(".parquet"))
    return folder_mtime, *(_stamp_or_gone(folder / name) for name in ["manifest.json", *parts])


def _stamp_or_gone(path: Path) -> tuple:
    """``path``'s file stamp, or its name alone when it cannot be read (absent, or removed since
    the folder was listed)."""
    try:
        return path.name, *file_stamp(path)
    except OSError:
        return (path.name,)


def _run_folders(store: ResultStore) -> list[Path]:
    """Folders of the stored runs (those holding a manifest or parts)."""
    if not store.root.is_dir():
        return []
    return [f for f in sorted(store.root.iterdir()) if f.is_dir() and not f.name.startswith(".")
            and ((f / "manifest.json").exists() or any(f.glob("part-*.parquet")))]


# --- a manifest's shape: what the pages read beyond the store's own check ------------------------
# The store refuses a manifest whose common keys are of another kind, and one without the keys
# reading results needs (threadx.optimize.store: RunDamaged); the pages also read the keys below.

def manifest_problem(m: Mapping[str, Any]) -> str | None:
    """What makes a manifest that the store reads unusable by the pages beyond the store's own
    check (its data entry, which they turn into a dataset), worded like the store's; None when
    they can show it."""
    if m.get("data"):
        try:
            DatasetRef.from_dict(m["data"])
        except (ThreadXError, TypeError) as exc:
            return f"whose data entry cannot be used ({str(exc)[:80]})"
    return None


def load_run(store: ResultStore, run_id: str) -> SweepRun:
    """``store.load(run_id)`` (RunDamaged for a manifest the store cannot use), then the keys
    only the pages read checked (:func:`manifest_problem`): RunDamaged saying what is wrong,
    so neither the history nor a shown run meets a manifest they cannot read."""
    run = store.load(run_id)
    why = manifest_problem(run.manifest)
    if why:
        raise RunDamaged(run_id, f"has a manifest {why}")
    return run


def dataset_label(manifest: Mapping[str, Any]) -> str:
    """A run's dataset in a few words: its name (or file) and timeframe."""
    data = manifest.get("data")
    if data:
        try:
            ref = DatasetRef.from_dict(data)
            return f"{ref.name or ref.source} ({ref.timeframe})" if ref.timeframe else (ref.name or ref.source)
        except ThreadXError:
            pass
    name = manifest.get("dataset") or "unnamed data"
    return f"{name} ({manifest['timeframe']})" if manifest.get("timeframe") else name


def best_value(ok: pd.DataFrame, objective: str, maximize: bool, min_trades: int) -> float | None:
    """The best objective value among ``ok`` rows with at least ``min_trades`` trades (None if none)."""
    if ok.empty or objective not in ok.columns:
        return None
    rows = ok[ok["n_trades"] >= min_trades] if min_trades and "n_trades" in ok.columns else ok
    values = rows[objective].to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    return float(values.max() if maximize else values.min())


def summarize(store: ResultStore, run_id: str) -> dict[str, Any]:
    """One history row of a run, read from its manifest and its parts (uncached); a damaged
    run gets status ``damaged: <why>`` and no counts."""
    row: dict[str, Any] = {k: None for k in HISTORY_COLUMNS}
    row["run_id"] = run_id
    try:
        run = load_run(store, run_id)
        m = run.manifest
        objective = m.get("objective", "sharpe")
        maximize = bool(m.get("maximize", True))
        rows = run.columns([objective, "n_trades"])  # one read of four columns
        ok = rows[rows["status"] == "ok"]
        row.update(dataset=dataset_label(m), strategy=m.get("strategy"), sampler=m.get("sampler"),
                   done=len(rows), planned=m.get("total"), failed=len(rows) - len(ok),
                   objective=f"{objective} {'max' if maximize else 'min'}",
                   best=best_value(ok, objective, maximize, int(m.get("min_trades") or 0)),
                   status=m.get("status"),
                   started_at=_started(m))
        # combo-bars a second of the last session (what elapsed_s timed: the run's rows over a resume's
        # time read 35 times too fast), on this machine's CPUs (a GPU's or a cluster's rate is another)
        elapsed, bars, ran = float(m.get("elapsed_s") or 0.0), int(m.get("bars") or 0), int(m.get("session_done") or 0)
        cpu = not set(map(str, m.get("executors") or [])) & {"gpu", "dask"}
        if str(m.get("status")) == "completed" and elapsed > 0 and bars and ran >= RATE_MIN_COMBOS and cpu:
            row["bar_rate"] = ran * bars / elapsed
    except RunDamaged as exc:
        row["status"] = f"damaged: {exc.why}"
    except (ThreadXError, OSError, ValueError) as exc:
        row["status"] = f"damaged: {first_line(exc)}"
    return row


@st.cache_data(show_spinner=False, max_entries=4096)
def _cached_summary(root: str, run_id: str, signature: tuple) -> dict[str, Any]:  # noqa: ARG001 - cache key
    return summarize(ResultStore(root), run_id)


def _live_status(folder: Path, status: Any) -> Any:
    """``running`` / ``interrupted`` checked against the run's lock now: a writer can die
    (or a resume start) without touching the files a cached read depends on."""
    if status in ("running", "interrupted"):
        return "running" if lock_held(folder) else "interrupted"
    return status


def _started(manifest: Mapping[str, Any]) -> str | None:
    """When a run (its last session) started, UTC to the second: ``2026-12-01 23:55:24``."""
    started = manifest.get("started_at")
    return started[:19].replace("T", " ") if isinstance(started, str) and started else None


RATE_MIN_COMBOS = 1_000  # a run of fewer is mostly start-up: its rate says little of a large sweep's


def _summaries(store: ResultStore) -> Iterator[tuple[Path, dict[str, Any]]]:
    """(folder, :func:`summarize` row) of every readable run folder, each row read from its
    files only when the run's signature changed (cached; the row is shared: not to be edited)."""
    for folder in _run_folders(store):
        signature = run_signature(folder)
        if signature is not None:
            yield folder, _cached_summary(str(store.root), folder.name, signature)


def measured_rate(store: ResultStore, strategy: str, bars: int, last: int = 5) -> float | None:
    """Backtests a second that this machine's last ``last`` completed runs of ``strategy`` (of at
    least :data:`RATE_MIN_COMBOS` combos) reached, scaled to ``bars`` bars (the median; None
    without such a run): what a sweep's size band plans with, rather than a fixed 5,000/s (a grid
    of 271,215 combos read "fast" where this machine ran 2,100-5,700/s)."""
    found = [(row.get("started_at") or "", float(row["bar_rate"])) for _, row in _summaries(store)
             if row.get("strategy") == strategy and row.get("bar_rate")]
    if not found or bars <= 0:
        return None
    recent = [rate for _, rate in sorted(found)[-last:]]
    return float(np.median(recent)) / bars


def history(store: ResultStore) -> pd.DataFrame:
    """Every stored run, newest first (columns :data:`HISTORY_COLUMNS`). A run's parts are
    read only when its signature changed since the last call."""
    rows = [{**row, "status": _live_status(folder, row["status"])} for folder, row in _summaries(store)]
    frame = pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))
    if frame.empty:
        return frame
    frame = frame.astype({"done": "Int64", "planned": "Int64", "failed": "Int64", "best": "Float64"})
    return frame.sort_values("started_at", ascending=False, na_position="last").reset_index(drop=True)


# --- the shown run ---------------------------------------------------------------------------

@dataclass
class RunView:
    """What the page shows of one run, read once per signature: its manifest, its successful
    rows, the table sorted by the objective, the best combo and what resuming would run."""

    run_id: str
    manifest: dict
    ok: pd.DataFrame
    varying: list[str]
    table: pd.DataFrame  # the best 500 rows (those under min_trades after the others), shown columns only
    best: pd.Series | None  # the best combo's row (None without a successful combo)
    best_params: dict = field(default_factory=dict)
    edges: list[str] = field(default_factory=list)  # numeric params of the winner on an edge of their range
    too_few_trades: int = 0  # combos under the run's min_trades: ranked last in the table, never the best
    to_retry: int = 0  # infrastructural failures a resume runs again
    failures: list[tuple[str, int]] = field(default_factory=list)  # the most frequent error texts, with counts

    @property
    def status(self) -> str:
        return str(self.manifest.get("status") or "unknown")

    @property
    def resumable(self) -> bool:
        """Whether a resume would run something: cancelled, interrupted or failed, or
        completed with failures that a resume runs again."""
        status = self.status
        return status in RESUMABLE or (status.startswith("completed with") and self.to_retry > 0)

    @property
    def nothing_stored(self) -> bool:
        """Whether the run holds no combo and none to run again (stopped at once: a resume would be
        a new launch)."""
        return not int(self.manifest.get("done") or 0) and not self.to_retry


def read_view(store: ResultStore, run_id: str) -> RunView:
    """Read a run for display (uncached; :func:`load_view` caches it). ThreadXError (RunDamaged
    for a damaged run) when it cannot be read."""
    from threadx.validation.stability import run_edges

    run = load_run(store, run_id).check_intact()
    m = run.manifest
    ok = run.ok()
    objective = m.get("objective", "sharpe")
    varying = [a["name"] for a in m["space"]["axes"] if len(a["values"]) > 1] or run.param_names
    shown = [*varying, objective, "total_return", "sharpe", "max_drawdown", "n_trades", "win_rate"]
    shown = list(dict.fromkeys(col for col in shown if col in ok.columns))
    ranked = ok if objective not in ok.columns else (  # no column: no row stored yet
        ok.sort_values(objective, ascending=not m.get("maximize", True), na_position="last", kind="stable"))
    min_trades = int(m.get("min_trades") or 0)
    few = ranked["n_trades"] < min_trades if min_trades and "n_trades" in ranked.columns else None
    if few is not None:  # ranked as the best combo is (Store.top): those under the minimum last
        ranked = pd.concat([ranked[~few], ranked[few]])
    table = ranked.head(500)[shown]
    best = run.top(1)
    view = RunView(run_id=run_id, manifest=m, ok=ok, varying=varying, table=table.reset_index(drop=True),
                   best=None if best.empty else best.iloc[0], too_few_trades=0 if few is None else int(few.sum()))
    if view.best is not None:
        view.best_params = run.best_params()
        view.edges = run_edges(m, int(view.best["combo_id"]))
    if str(m.get("status", "")).startswith("completed with"):
        view.to_retry = len(run.stored().retry_ids)
    if int(m.get("failed") or 0) > 0:
        view.failures = run.failure_counts()
    return view


def space_differences(search: Any, manifest: Mapping[str, Any]) -> list[str]:
    """The params whose searched values differ between the form's space (a ``SearchSpace``)
    and a stored run's, in the form's order (a run of 3,198 combos showed under a form of
    46,494 without a word)."""
    from threadx.validation.common import to_python

    its = {a.get("name"): list(a.get("values") or []) for a in (manifest.get("space") or {}).get("axes", [])
           if isinstance(a, Mapping)}
    mine = {name: [to_python(v) for v in axis.values] for name, axis in zip(search.names, search.axes)}
    return [name for name in dict.fromkeys([*mine, *its]) if mine.get(name) != its.get(name)]


def losing_note(view: RunView) -> str | None:
    """A warning when the best combo does not gain (its total return at or below 0): it is the
    least bad of the run, not a strategy to trade; None when it gains or cannot be told.

    >>> rows = pd.DataFrame({"total_return": [-0.3, -0.1, 0.0]})
    >>> best = pd.Series({"total_return": -0.1})
    >>> losing_note(RunView("r", {}, rows, [], rows, best))[:90]
    'The best combo loses money (total return -10.00 %), and so does every combo of this run (3'
    """
    if view.best is None or "total_return" not in view.best.index:
        return None
    best = float(view.best["total_return"])
    if not np.isfinite(best) or best > 0:
        return None
    returns = pd.to_numeric(view.ok.get("total_return"), errors="coerce") if "total_return" in view.ok else None
    gains = int((returns > 0).sum()) if returns is not None else 0
    losing = f"{len(view.ok) - gains:,} of {len(view.ok):,} at or below 0"
    tail = (f"and so does every combo of this run ({losing}): it is the least bad, not a strategy to trade."
            if not gains else f"while {gains:,} other combos gain ({losing}): they rank lower by the objective, or "
            "made fewer trades than the run's minimum.")
    verb = "loses money" if best < 0 else "makes no money"
    return f"The best combo {verb} (total return {format_metric('total_return', best)}), {tail}"


def partial_coverage(manifest: Mapping[str, Any], ok: pd.DataFrame) -> list[str]:
    """For a run with combos still to run, each searched param whose stored combos reach only part
    of its searched values, in words ("bb_period 10 to 30 (of 10 to 50 searched)"). A stopped run
    is no random part of its plan: combos run grouped by the indicators and signals they share,
    so a stop leaves whole slices of the space untried.

    >>> m = {"done": 4, "total": 8, "space": {"axes": [{"name": "a", "values": [1, 2, 3, 4]},
    ...                                                {"name": "b", "values": ["x", "y"]}]}}
    >>> partial_coverage(m, pd.DataFrame({"a": [1, 1, 2, 2], "b": ["x", "y", "x", "y"]}))
    ['a 1 to 2 (of 1 to 4 searched)']
    """
    if int(manifest.get("done") or 0) >= int(manifest.get("total") or 0) or ok.empty:
        return []
    out = []
    for axis in manifest["space"]["axes"]:
        name, values = axis["name"], axis["values"]
        if len(values) < 2 or name not in ok.columns:
            continue
        tried = ok[name].dropna().unique().tolist()
        if all(map(is_real, values)):
            if tried and (min(tried) > min(values) or max(tried) < max(values)):
                out.append(f"{name} {min(tried):g} to {max(tried):g} (of {min(values):g} to {max(values):g} searched)")
        elif len(set(map(str, tried))) < len(set(map(str, values))):
            out.append(f"{name} {', '.join(sorted(map(str, tried)))} (of {', '.join(map(str, values))} searched)")
    return out


@st.cache_resource(show_spinner=False, max_entries=4)
def _cached_view(root: str, run_id: str, signature: tuple) -> RunView:  # noqa: ARG001 - cache key
    return read_view(ResultStore(root), run_id)


def load_view(store: ResultStore, run_id: str) -> RunView:
    """The shown run, read once per signature (shared between sessions: treat it as read-only).
    A running run is re-read as its parts arrive; its status is checked on every call."""
    folder = store.folder(run_id)
    signature = run_signature(folder)
    if signature is None or not ((folder / "manifest.json").exists() or any(folder.glob("part-*.parquet"))):
        raise ThreadXError(f"no run {run_id!r} under {store.root}")
    view = _cached_view(str(store.root), run_id, signature)
    status = _live_status(folder, view.manifest.get("status"))
    if status != view.manifest.get("status"):
        return replace(view, manifest={**view.manifest, "status": status})
    return view


def code_changes(manifest: Mapping[str, Any]) -> str:
    """What code changed since the run was computed ("" when none, or unknown: a run of an
    earlier version without the hashes): its strategy's, or ThreadX's engine, indicators or
    sweep code (``rows_code``)."""
    from threadx.optimize.evaluate import ROWS_CODE
    from threadx.strategy.base import find_strategy

    changed = []
    spec = find_strategy(manifest.get("strategy"))
    then = manifest.get("strategy_code")
    if spec is not None and then and then != spec.code_hash:
        changed.append(f"strategy {manifest['strategy']}: {str(then)[:8]} then, {spec.code_hash[:8]} now")
    rows = manifest.get("rows_code")
    if rows and rows != ROWS_CODE:
        changed.append(f"engine, indicators or sweep: {str(rows)[:8]} then, {ROWS_CODE[:8]} now")
    return "; ".join(changed)


# --- resume --------------------------------------------------------------------------------

def resume_request(manifest: Mapping[str, Any]) -> SweepRequest:
    """The request that resumes a stored run under its own run id: the request it recorded
    (its data by name and fingerprint, space, plan and options). ThreadXError for a run
    stored before requests were recorded: its space is known only as stored axes, which a
    resume would not match, so the CLI (``threadx sweep ... --run-id``) resumes it."""
    run_id = manifest["run_id"]
    recorded = manifest.get("request")
    if not recorded:
        raise ThreadXError(f"run {run_id} records no request (stored by an older version): resume it with the "
                           f"command that made it, `threadx sweep ... --run-id {run_id}`")
    return SweepRequest.from_dict(recorded).with_run_id(run_id)  # (its funding: the record of the rows it ran with)


def check_resume_data(request: SweepRequest) -> None:
    """Refuse a resume whose data or funding file is gone or changed (DataError saying which):
    the stored combos ran on the recorded candles and rates, the missing ones must too."""
    request.data.load()
    request.sweep_kwargs()  # (reads the funding file and checks its rows' sha256)


# --- comparison ------------------------------------------------------------------------------

def _axis_text(values: list) -> str:
    if len(values) == 1:
        return str(values[0])
    if all(map(is_real, values)):
        return f"{min(values)} to {max(values)} ({len(values)} values)"
    return ", ".join(str(v) for v in values)


def settings_of(manifest: Mapping[str, Any]) -> dict[str, str]:
    """A run's request and options as flat ``setting -> text`` (data, plan, ranking, each
    searched param, each engine option), for a side-by-side comparison."""
    m = manifest
    out = {
        "data": describe_data(m.get("data"), m.get("dataset"), m.get("timeframe")),
        "bars": f"{m['bars']:,}" if m.get("bars") is not None else "–",
        "fingerprint": str(m.get("fingerprint") or "–")[:12],
        "strategy": str(m.get("strategy")),
        "sampler": str(m.get("sampler")),
        "n": "–" if m.get("n") is None else f"{m['n']:,}",
        "seed": str(m.get("seed")),
        "objective": f"{m.get('objective')} ({'maximise' if m.get('maximize', True) else 'minimise'})",
        "min trades": str(m.get("min_trades")),
        "combos done / planned": f"{int(m.get('done') or 0):,} / "
                                 + (f"{int(m['total']):,}" if m.get("total") is not None else "not recorded"),
        "status": str(m.get("status")),
        "started": _started(m) or "–",
        "executor": ", ".join(map(str, m.get("executors") or [])) or str((m.get("machine") or {}).get("executor")),
        "workers": str((m.get("machine") or {}).get("workers")),
    }
    for axis in (m.get("space") or {}).get("axes", []):
        out[f"space: {axis['name']}"] = _axis_text(list(axis["values"]))
    for key, value in sorted((m.get("engine") or {}).items()):
        out[f"engine: {key}"] = funding_words(value) if key == "funding" else str(value)
    return out


def compare_settings(a: Mapping[str, Any], b: Mapping[str, Any]) -> pd.DataFrame:
    """Setting by setting, runs ``a`` and ``b`` side by side (text; "–" where one lacks it)
    with a ``same`` column; settings that differ first."""
    left, right = settings_of(a), settings_of(b)
    keys = list(dict.fromkeys([*left, *right]))
    frame = pd.DataFrame({"setting": keys, a["run_id"] if a["run_id"] != b["run_id"] else "A":
                          [left.get(k, "–") for k in keys],
                          b["run_id"] if a["run_id"] != b["run_id"] else "B": [right.get(k, "–") for k in keys]})
    frame["same"] = frame.iloc[:, 1] == frame.iloc[:, 2]
    return frame.sort_values("same", kind="stable").reset_index(drop=True)


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):,.4g}"
    if isinstance(value, (np.integer,)):
        return f"{int(value):,}"
    return str(value)


def compare_best(a: RunView, b: RunView) -> pd.DataFrame:
    """The best combo of each run side by side: its params, then its metrics (text)."""
    def column(view: RunView) -> dict[str, str]:
        if view.best is None:
            return {"best combo": "no successful combo"}
        out = {"best combo": f"#{int(view.best['combo_id'])}"}
        out.update({f"param: {k}": _fmt(v) for k, v in view.best_params.items()})
        objective = view.manifest.get("objective", "sharpe")
        for metric in dict.fromkeys([objective, *_METRICS_SHOWN]):
            if metric in view.best.index:
                out[metric] = _fmt(view.best[metric])
        return out

    left, right = column(a), column(b)
    keys = list(dict.fromkeys([*left, *right]))
    names = (a.run_id, b.run_id) if a.run_id != b.run_id else ("A", "B")
    return pd.DataFrame({"": keys, names[0]: [left.get(k, "–") for k in keys],
                         names[1]: [right.get(k, "–") for k in keys]})


def distribution_figure(views: list[RunView], metric: str) -> "go.Figure":
    """Overlaid histograms of ``metric`` over each run's successful combos (share of combos
    per bin, so runs of different sizes compare)."""
    import plotly.graph_objects as go

    from threadx.ui.charts import OVERLAY_COLORS, TEMPLATE, metric_label

    fig = go.Figure()
    for k, view in enumerate(views):
        if metric not in view.ok.columns:
            continue
        values = view.ok[metric].to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        fig.add_trace(go.Histogram(x=values, name=f"{view.run_id} ({len(values):,} combos)", opacity=0.55,
                                   histnorm="percent", nbinsx=60, marker_color=OVERLAY_COLORS[k % len(OVERLAY_COLORS)]))
    fig.update_layout(template=TEMPLATE, barmode="overlay", title=f"{metric_label(metric)} over the combos of each run",
                      xaxis_title=metric_label(metric), yaxis_title="% of combos", margin=dict(l=50, r=20, t=50, b=40),
                      legend=dict(orientation="h", y=-0.2))
    return fig


def metric_choices(views: list[RunView]) -> list[str]:
    """Metrics every one of ``views`` stores (in the engine's order)."""
    return [m for m in METRIC_NAMES if all(m in v.ok.columns for v in views)]

