"""Research: strategies walk-forwarded on several datasets in one job (a strategy x asset matrix).

Each cell (one strategy on one dataset) is exactly the walk-forward and validation report
of ``threadx walkforward`` (same :class:`~threadx.requests.WalkForwardRequest`, same
defaults and seeds), stored with :func:`~threadx.validation.storage.save_walk_forward` under
the cell's run id ``<research_id>-c<k>``, so a cell opens its full report by id.

**Transfer.** For each source cell, the params chosen there are the whole-period winner the
walk-forward reports (``benchmark_params``: the best objective over the whole series among
combos with enough trades). They are backtested unchanged with :func:`threadx.backtest` (the
job's engine options) on every dataset of the job, on that dataset's **OOS span**: its bars
from the first OOS window's start to the last OOS window's end, cut out as a frame (the
indicators warm up inside the span, as in any backtest of that date range). A cell holds the
backtest's Sharpe, return, max drawdown and trades. The grade card's line: "N of M assets keep
a positive OOS result with the same params", counted over the *other* assets (return > 0).

The result (config, matrix, transfer) is stored as ``<results_dir>/research/<id>/research.json``.
Executors: ``inline`` (cells one after another in this process, one indicator bank, each
walk-forward on ``workers`` threads; running two cells at once on threads was measured slower
on 2 cores: benchmarks/bench_research.py), ``local`` (one cell per process, ``workers`` processes),
``dask`` (one cell per task on a Dask cluster at ``scheduler``, else a LocalCluster; workers
must see the same data files and results folder). Transfer backtests run in this process.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from threadx.config import STORED, settings
from threadx.data.funding import with_stored_funding
from threadx.engine.inputs import funding_record
from threadx.errors import ParamError, ThreadXError, first_line, os_reason
from threadx.names import check_name, new_run_id
from threadx.requests import DatasetRef, WalkForwardRequest, check_once
from threadx.shapes import JSON_NUMBER, OBJECT, TEXT, WHOLE, Kind, one_of, shape_problem
from threadx.units import format_eta
from threadx.validation.grading import LETTERS

FOLDER = "research"
EXECUTORS = ("inline", "local", "dask")
Progress = Callable[[int, int, str], None]


def research_root(results_dir: str | os.PathLike | None = None) -> Path:
    return Path(results_dir if results_dir is not None else settings().results_dir) / FOLDER


@dataclass
class ResearchResult:
    """The strategy x asset matrix (``cells``), the transfer cells and the job's config."""

    research_id: str
    config: dict[str, Any]
    cells: list[dict[str, Any]]
    transfer: list[dict[str, Any]]
    status: str = "completed"
    meta: dict[str, Any] = field(default_factory=dict)

    def matrix(self, value: str = "oos_sharpe") -> pd.DataFrame:
        """Strategies as rows, datasets as columns, ``value`` of each cell (grade, oos_sharpe, ...)."""
        frame = pd.DataFrame(self.cells)
        if frame.empty:
            return frame
        if value not in frame.columns:  # (only failed cells, say a research stopped after one: no figures)
            frame[value] = None
        return frame.pivot(index="strategy", columns="dataset", values=value)

    def transfer_matrix(self, strategy: str, value: str = "sharpe") -> pd.DataFrame:
        """Source datasets (params chosen there) as rows, target datasets as columns; NaN where a
        transfer has no ``value`` (a source without a whole-period winner: its row holds a note)."""
        frame = pd.DataFrame([t for t in self.transfer if t["strategy"] == strategy])
        if frame.empty:
            return frame
        if value not in frame.columns:  # no transfer ran at all (no source had a winner)
            frame[value] = np.nan
        return frame.pivot(index="source", columns="target", values=value)

    def kept(self, strategy: str, source: str) -> tuple[int, int]:
        """(N, M): of the M other assets, N have a positive return with ``source``'s params (an
        asset whose OOS span holds ``source``'s own candles is no other asset: in sample)."""
        others = [t for t in self.transfer if t["strategy"] == strategy and t["source"] == source
                  and not transfer_in_sample(t)]
        return sum(1 for t in others if (t.get("total_return") or 0) > 0), len(others)

    def in_sample(self, strategy: str) -> set[tuple[str, str]]:
        """The (source, target) transfers of ``strategy`` that are in sample (:func:`transfer_in_sample`)."""
        return {(t["source"], t["target"]) for t in self.transfer if t["strategy"] == strategy
                and transfer_in_sample(t)}

    def to_dict(self) -> dict[str, Any]:
        return {"research_id": self.research_id, "status": self.status, "config": self.config,
                "cells": self.cells, "transfer": self.transfer, "meta": self.meta}


def same_market_then(source: str, source_bars: Any, target: str, target_bars: Any,
                     synthetic: tuple[bool, bool] = (False, False)) -> bool:
    """Whether datasets ``source`` and ``target`` (names or files) are one market (the same symbol,
    at any timeframe, on any exchange: the price paths move together) and ``target_bars`` overlap
    the dates of ``source_bars``: params fitted on the source saw that stretch of the target's prices
    (``synthetic``: whether each is made-up data, never the same market as real data).

    >>> import pandas as pd
    >>> from threadx.data.bars import as_bars
    >>> df = pd.DataFrame({c: [1.0, 2.0] for c in ("open", "high", "low", "close", "volume")},
    ...                   index=pd.date_range("2024-01-01", periods=2, freq="h", tz="UTC"))
    >>> same_market_then("binance/BTC_USDT-1h", as_bars(df), "BTCUSDT-4h.csv", as_bars(df))
    True
    >>> same_market_then("binance/BTC_USDT-1h", as_bars(df), "binance/ETH_USDT-1h", as_bars(df))
    False
    >>> same_market_then("binance/BTC_USDT-1h", as_bars(df), "sample:BTC_USDT-1h", as_bars(df))
    False
    """
    mine, theirs = market_of(source), market_of(target)
    if mine is None or mine != theirs or _synthetic(source, synthetic[0]) != _synthetic(target, synthetic[1]):
        return False  # (the synthetic sample's BTC is not BTC's path)
    a, b = source_bars.time_ns, target_bars.time_ns
    return bool(len(a) and len(b) and a[0] <= b[-1] and b[0] <= a[-1])


_DOLLARS = ("USDT", "USDC", "BUSD", "TUSD", "FDUSD", "USD")  # quotes that are one currency to a price path


def market_of(name: str) -> tuple[str, str] | None:
    """(base, quote) of a dataset's symbol, a dollar stablecoin's quote read as USD and a
    perpetual's settlement suffix dropped, None for a name without one: BTC/USDT spot, its
    USDT-settled perpetual and BTC/USDC are one market; ETH/BTC is not ETH/USDT.

    >>> market_of("binance/BTC_USDT-1h"), market_of("bybit/BTC_USDT_USDT-4h"), market_of("/data/BTCUSDC-1d.csv")
    (('BTC', 'USD'), ('BTC', 'USD'), ('BTC', 'USD'))
    >>> market_of("binance/ETH_BTC-1h"), market_of("local/GOLD-1d"), market_of("sample:BTC_USDT-1h")
    (('ETH', 'BTC'), None, ('BTC', 'USD'))
    """
    from threadx.data.catalog import file_stem, parse_dataset_name, quote_currency

    shown = str(name)
    if os.sep in shown or file_stem(shown) != shown:
        shown = file_stem(Path(shown).name)  # a file: its name without its format's suffix
    try:
        exchange, symbol, _ = parse_dataset_name(shown)
    except (ThreadXError, ValueError):
        return None
    symbol = symbol.upper()
    # (a name without an exchange read as an exchange's: "x/sample:BTC_USDT-1h" gave the quote BTC)
    quote = quote_currency(shown if exchange else f"x/{shown}")
    if not quote:
        return None
    base = symbol.split("_")[0] if "_" in symbol else symbol[: -len(quote)]
    return base, "USD" if quote in _DOLLARS else quote


def _synthetic(name: str, flagged: bool) -> bool:
    return bool(flagged) or str(name).startswith(("sample:", "synthetic/"))


def transfer_in_sample(row: Mapping[str, Any]) -> bool:
    """Whether a transfer backtest is in sample: its params were chosen on the candles of its
    target's OOS span (the source itself, or one market under another name or cut: a research
    stored before ``in_sample`` was recorded tells only the source itself)."""
    return bool(row.get("in_sample", row["target"] == row["source"]))


def save_research(result: ResearchResult, results_dir: str | os.PathLike | None = None) -> Path:
    """Write ``research.json`` (atomically); returns its path."""
    from threadx.files import save_atomically

    folder = research_root(results_dir) / check_name(result.research_id, "research id")
    path = folder / "research.json"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ThreadXError(f"cannot save research {result.research_id} to {folder}: {os_reason(exc)}") from exc
    save_atomically(path, json.dumps(result.to_dict(), indent=2, default=str).encode(),
                    f"research {result.research_id}")
    return path


def load_research(research_id: str, results_dir: str | os.PathLike | None = None) -> ResearchResult:
    """The stored research ``research_id``; ThreadXError when it is missing or damaged."""
    path = research_root(results_dir) / check_name(research_id, "research id") / "research.json"
    try:
        data = checked_research(json.loads(path.read_text()))
    except FileNotFoundError:
        raise ThreadXError(f"no stored research {research_id!r} under {path.parent.parent}") from None
    except (ValueError, OSError) as exc:
        raise ThreadXError(f"stored research {research_id!r} is damaged: {exc}") from None
    return ResearchResult(research_id, data["config"], data["cells"], data["transfer"],
                          data.get("status", "completed"), data.get("meta") or {})


# what a matrix cell holds (cell_summary writes it; the page, the transfer and a portfolio read it)
_CELL_KINDS: dict[str, Kind] = {
    **{key: TEXT for key in ("run_id", "strategy_code", "error")},
    "grade": one_of(LETTERS),  # (drawn in the matrix, where Plotly reads tags: a link in one was shown)
    **{key: OBJECT for key in ("params", "last_window_params")},
    **{key: JSON_NUMBER for key in ("score", "oos_sharpe", "oos_return", "oos_max_drawdown", "consistency",
                                    "efficiency")},
    **{key: WHOLE for key in ("trades", "windows", "combos")},
}


def checked_research(data: Any) -> dict[str, Any]:
    """``research.json``'s content when it has the shape :meth:`ResearchResult.to_dict` writes;
    ValueError naming what is wrong otherwise."""
    if not isinstance(data, dict):
        raise ValueError(f"research.json holds {type(data).__name__}, not an object")
    for key, kind in (("config", dict), ("cells", list), ("transfer", list)):
        if not isinstance(data.get(key), kind):
            raise ValueError(f"research.json: {key!r} is missing or not a {kind.__name__}")
    if not all(isinstance(c, dict) and isinstance(c.get("strategy"), str) and isinstance(c.get("dataset"), str)
               for c in data["cells"]):
        raise ValueError("research.json: a cell without its strategy or dataset")
    for k, cell in enumerate(data["cells"]):
        problem = shape_problem(cell, _CELL_KINDS, where=f"cells[{k}].")
        if problem:
            raise ValueError(f"research.json: {problem}")
    datasets = data["config"].get("datasets", [])
    if not (isinstance(datasets, list) and all(isinstance(d, dict) for d in datasets)):
        raise ValueError("research.json: config.datasets is not a list of datasets")
    return data


# --- one cell ----------------------------------------------------------------------------------

def run_cell(request: WalkForwardRequest, results_dir: str | os.PathLike | None, df: Any = None, bank: Any = None,
             progress: Callable[[Any], None] | None = None, cancel: Any = None) -> dict[str, Any] | None:
    """The walk-forward and report of ``request`` as the job runner makes them, stored under
    ``request.run_id``; returns the cell summary (None when cancelled). Picklable for workers."""
    import threadx
    from threadx.validation.report import validate_walk_forward
    from threadx.validation.storage import save_walk_forward

    df = request.data.load() if df is None else df
    wf = threadx.walk_forward(df, request.strategy, request.space or None, progress=progress, cancel=cancel,
                              bank=bank, **request.walk_forward_kwargs())
    if wf.meta.get("cancelled"):
        return None
    data = DatasetRef.of(df)
    wf.meta["request"] = replace(request, data=replace(data, name=request.data.name or data.name)).to_dict()
    report = validate_walk_forward(wf, n=request.bootstrap, seed=request.seed, S=request.S)
    save_walk_forward(request.run_id, wf, report, results_dir)
    return cell_summary(wf, report, request)


def cell_summary(wf: Any, report: Any, request: WalkForwardRequest) -> dict[str, Any]:
    """The numbers a matrix cell shows (plain JSON values)."""
    from threadx.validation.common import json_safe

    s = wf.oos_summary
    return json_safe({
        "strategy": wf.config["strategy"], "strategy_code": wf.config.get("strategy_code"),
        "dataset": request.data.name or request.data.source, "run_id": request.run_id,
        "grade": report.grade.letter, "score": report.grade.score,
        "oos_sharpe": s["sharpe"], "oos_return": s["total_return"], "oos_max_drawdown": s["max_drawdown"],
        "consistency": wf.consistency, "efficiency": wf.efficiency, "trades": s["n_trades"],
        "windows": len(wf.windows), "combos": len(wf.combos), "params": wf.benchmark_params,
        "last_window_params": _last_winner(wf),
    })


def _last_winner(wf: Any) -> dict[str, Any]:
    """The params of the last IS window's winner, read from the walk-forward's combos (its window
    table holds NaN where a window had no winner, which made an int param a float there: 5.0)."""
    chosen = wf.table.dropna(subset=["combo_id"])
    if not len(chosen):
        return {}
    from threadx.validation.walkforward import params_at

    names = [c for c in wf.combos.columns if c != "combo_id"]
    position = np.flatnonzero(wf.combos["combo_id"].to_numpy() == int(chosen["combo_id"].iloc[-1]))[0]
    return params_at(wf.combos, int(position), names)


# --- transfer ----------------------------------------------------------------------------------

def oos_span(df: Any, request: WalkForwardRequest) -> tuple[int, int]:
    """Bar positions [start, stop) from the first OOS window's start to the last one's end.
    ParamError naming the dataset when no window fits."""
    from threadx.data.bars import as_bars
    from threadx.validation.walkforward import plan_windows, window_lengths

    bars = as_bars(df)
    keys = ("is_bars", "is_days", "oos_bars", "oos_days", "step_bars", "step_days")
    try:
        is_len, oos_len, step = window_lengths(bars.timeframe, **{k: getattr(request, k) for k in keys})
        windows = plan_windows(len(bars), is_len, oos_len, step, request.anchored, request.purge, request.embargo)
    except ParamError as exc:
        raise ParamError(f"dataset {request.data.label}: {exc}") from None
    return windows[0].oos_start, windows[-1].oos_end


def transfer_cell(strategy: str, params: Mapping[str, Any], df: Any, span: tuple[int, int],
                  engine_options: Mapping[str, Any], bank: Any = None) -> dict[str, Any]:
    """``params`` backtested unchanged on ``df``'s bars ``span`` (see the module docstring)."""
    import threadx

    part = df.iloc[span[0]:span[1]]
    result = threadx.backtest(part, strategy, dict(params), bank=bank, **dict(engine_options))
    m = result.metrics
    return {"sharpe": m["sharpe"], "total_return": m["total_return"], "max_drawdown": m["max_drawdown"],
            "n_trades": int(m["n_trades"]), "start": part.index[0].isoformat(), "end": part.index[-1].isoformat()}


# --- the job -----------------------------------------------------------------------------------

def _dataset_ref(value: Any) -> DatasetRef:
    if isinstance(value, DatasetRef):
        return value
    if isinstance(value, Mapping):
        return DatasetRef.from_dict(value)
    return DatasetRef(source=os.fspath(value))


def _load(ref: DatasetRef) -> Any:
    """The dataset's frame; ThreadXError naming it when it cannot be read."""
    try:
        return ref.load()
    except ThreadXError as exc:
        text = first_line(exc)
        raise type(exc)(text if ref.label in text else f"dataset {ref.label}: {text}") from None


def research(strategies: Sequence[str] | str, datasets: Sequence[Any], space: Mapping[str, Any] | None = None, *,
             spaces: Mapping[str, Mapping[str, Any]] | None = None, executor: str = "inline",
             workers: int | None = None, scheduler: str | None = None,
             results_dir: str | os.PathLike | None = None, research_id: str | None = None,
             progress: Progress | None = None, cancel: Any = None, bank: Any = None,
             **options: Any) -> ResearchResult:
    """Walk-forward every strategy on every dataset, then the transfer cells (module docstring).

    ``datasets``: names, file paths, DatasetRefs (or their dicts). ``space`` applies to every
    strategy; ``spaces`` maps a strategy to its own space; neither: the declared ranges.
    ``options``: those of :class:`WalkForwardRequest` (windows, sampler, n, seed, objective,
    min_trades, bootstrap, S, engine_options) and engine options (fee_bps, ...).
    ``progress(done, total, phase)`` counts cells (walk-forwards and transfer backtests);
    ``cancel`` (Event or callable) stops between chunks of combos: the result then holds
    the finished cells only (``status`` "cancelled"). Errors name the dataset.
    """
    from threadx.data.bars import as_bars, common_candles
    from threadx.engine.inputs import EngineOptions
    from threadx.optimize.runner import _cancel_check

    started = time.perf_counter()
    strategies = [strategies] if isinstance(strategies, str) else list(strategies)
    if not strategies or not datasets:
        raise ParamError("research needs at least one strategy and one dataset")
    check_once(strategies, "strategy")  # before the datasets are read
    if executor not in EXECUTORS:
        raise ParamError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    from threadx.optimize.dask_executor import check_scheduler

    check_scheduler(scheduler, executor)  # (a malformed address was a traceback, an HTTP server a hang)
    research_id = check_name(new_run_id("research") if research_id is None else research_id,
                             "research id")
    if (research_root(results_dir) / research_id).exists():  # its cells' runs too: never mixed with new ones
        raise ThreadXError(f"research {research_id!r} is already stored under {research_root(results_dir)}: choose "
                           "another id, or delete that folder to replace it")
    engine_keys = set(EngineOptions.__dataclass_fields__)
    engine = dict(options.pop("engine_options", None) or {})
    engine.update({k: options.pop(k) for k in list(options) if k in engine_keys})
    engine.setdefault("funding", STORED)  # as a portfolio of its winners runs: each dataset's funding file
    if not (engine["funding"] is None or isinstance(engine["funding"], (str, int, float))):  # ("stored", a rate)
        raise ParamError("a research's funding is 'stored' (each dataset's funding file), None or one constant rate: "
                         f"one series cannot be every dataset's, got {type(engine['funding']).__name__}")
    refs = [_dataset_ref(d) for d in datasets]
    frames = [_load(ref) for ref in refs]
    # each dataset with the fingerprint of the candles read now: a portfolio of the winners, a cell
    # run again, refuse candles replaced since (they would run the params chosen on these on others)
    refs = [replace(ref, name=ref.name or _name_of(df, ref), fingerprint=ref.fingerprint or as_bars(df).fingerprint)
            for ref, df in zip(refs, frames)]
    names = [r.name for r in refs]
    check_once(names, "dataset")
    first_named: dict[str, str] = {}
    for ref in refs:  # (its "transfer" onto the other would be in sample, and count as another asset kept)
        if ref.fingerprint in first_named:
            raise ParamError(f"datasets {first_named[ref.fingerprint]} and {ref.name} hold the same candles: give one "
                             "of them")
        first_named[ref.fingerprint] = ref.name

    from threadx.requests import ResearchRequest

    job = ResearchRequest(tuple(strategies), tuple(refs), dict(space or {}), {**options, "engine_options": engine},
                          executor, workers, scheduler, research_id)
    requests: list[WalkForwardRequest] = []
    for strategy in strategies:
        for ref in refs:
            requests.append(job.cell(strategy, ref, f"{research_id}-c{len(requests)}", (spaces or {}).get(strategy)))
    spans = {ref.name: oos_span(df, req) for ref, df, req in zip(refs, frames, requests)}  # fails fast, named
    target_options = {ref.name: _with_funding(requests[0].engine_options, ref) for ref in refs}  # and so does this
    # each cell pinned to the funding rows read now: a file fetched again during the research fails its
    # cells (with_stored_funding), never mixes rates from before and after
    pinned = {name: funding_record(o.get("funding")) for name, o in target_options.items()}
    requests = [replace(r, engine_options={**r.engine_options, "funding": pinned[r.data.name]}) for r in requests]

    should_stop = _cancel_check(cancel)
    total = len(requests) + len(strategies) * len(refs) ** 2
    done = [0]

    def eta(fraction: float) -> str:
        return eta_note(time.perf_counter() - cells_started, fraction)

    def tick(phase: str, step: int = 1, cells_done: int | None = None) -> None:
        done[0] += step
        if progress is not None:
            progress(done[0], total, phase if cells_done is None else phase + eta(cells_done / len(requests)))

    if progress is not None:
        progress(0, total, "starting")
    if bank is None and executor == "inline":
        from threadx.indicators import default_bank

        bank = default_bank()
    by_name = dict(zip(names, frames))
    cells_started = time.perf_counter()
    cells = _run_cells(requests, by_name, executor, workers, scheduler, results_dir, bank, progress, should_stop,
                       tick, total, done, eta)
    cells_done = time.perf_counter()
    if cells and all(cell.get("error") for cell in cells) and len(cells) == len(requests):
        raise ParamError("every cell of the research failed: " + "; ".join(
            f"{c['strategy']} on {c['dataset']}: {c['error']}" for c in cells[:3]) + ("; ..." if len(cells) > 3 else ""))
    status = "cancelled" if len(cells) < len(requests) else "completed"
    transfer: list[dict[str, Any]] = []
    from threadx.indicators.bank import IndicatorBank

    span_bank = IndicatorBank(disk=False)  # the OOS spans' indicators: shared by the sources, not cached on disk
    bars = {name: as_bars(frame) for name, frame in by_name.items()}
    # a target whose OOS span holds a source's own candles (the source, or one market under two names or
    # cut two ways), or the same market's at another timeframe or exchange over dates the source was fitted
    # on (BTC 2h's winner on BTC 4h's OOS span read "kept" on another asset): in sample
    oos = {t: bars[t].slice(*spans[t]) for t in names}  # (cut once per target, not once per test and source)
    synthetic = {name: bool(frame.attrs.get("synthetic")) for name, frame in by_name.items()}
    same = {(s, t): s == t or common_candles(bars[s], oos[t]) > 0
            or same_market_then(s, bars[s], t, oos[t], (synthetic[s], synthetic[t])) for s in names for t in names}
    for cell in [c for c in cells if not c.get("error")] if status == "completed" else ():
        for target in names:
            if should_stop():
                status = "cancelled"
                break
            row = {"strategy": cell["strategy"], "source": cell["dataset"], "target": target,
                   "params": cell["params"], "in_sample": same[(cell["dataset"], target)]}
            if cell["params"]:
                row.update(transfer_cell(cell["strategy"], cell["params"], by_name[target], spans[target],
                                         target_options[target], span_bank))
            else:
                row["note"] = "no combo met the minimum trade count on the whole period"
            transfer.append(row)
            tick(f"transfer {cell['strategy']}: {cell['dataset']} -> {target}")
    config = {"strategies": strategies, "datasets": [r.to_dict() for r in refs], "request": job.to_dict(),
              "walk_forward": {k: v for k, v in requests[0].to_dict().items()
                               if k not in ("kind", "data", "strategy", "space", "run_id", "label")},
              "spaces": {s: r.space for s, r in zip(strategies, requests[::len(refs)])},
              "executor": executor, "transfer": "whole-period winner (benchmark_params) backtested on each "
                                                "dataset's OOS span (first OOS start to last OOS end)",
              "funding": pinned}
    result = ResearchResult(research_id, config, cells, transfer, status,
                            {"elapsed_s": time.perf_counter() - started, "cells_s": cells_done - started,
                             "transfer_s": time.perf_counter() - cells_done,
                             "oos_spans": {n: [by_name[n].index[a].isoformat(), by_name[n].index[b - 1].isoformat()]
                                           for n, (a, b) in spans.items()}})
    for cell in cells:
        n_kept, m = result.kept(cell["strategy"], cell["dataset"])
        cell["transfer_kept"] = [n_kept, m]
    save_research(result, results_dir)
    return result


def _with_funding(options: Mapping[str, Any], ref: DatasetRef) -> dict[str, Any]:
    """``options`` with the dataset's stored funding file (:func:`with_stored_funding`), read before
    any cell runs: a damaged file is said at once, naming the dataset (read after the cells, it
    lost the whole research)."""
    try:
        return with_stored_funding(options, ref.source)
    except ThreadXError as exc:
        raise type(exc)(f"dataset {ref.label}: {exc}") from None


def kept_text(kept: Sequence[int] | None) -> str:
    """A cell's ``transfer_kept`` (N, M) as "N of M"; "" where no other asset was traded (one
    dataset, or a research stopped before its transfer backtests: "0 of 0" said nothing).

    >>> kept_text([1, 2]), kept_text([0, 0]), kept_text(None)
    ('1 of 2', '', '')
    """
    return f"{kept[0]} of {kept[1]}" if kept and kept[1] else ""


def eta_note(elapsed: float, fraction: float) -> str:
    """The " · ETA ..." of a research's phase line, ``fraction`` of its walk-forwards done in
    ``elapsed`` s (the transfer backtests after them take moments); "" before a second has
    passed (a guess from nothing) and once they are done.

    >>> eta_note(10.0, 0.25), eta_note(0.5, 0.5), eta_note(10.0, 1.0)
    (' · ETA 30 s', '', '')
    """
    if not 0.0 < fraction < 1.0 or elapsed < 1.0:
        return ""
    return f" · {format_eta(elapsed * (1.0 - fraction) / fraction)}"


def _name_of(df: Any, ref: DatasetRef) -> str:
    from threadx.data.bars import as_bars

    return as_bars(df).name or Path(ref.source).stem


def _run_cells(requests, frames, executor, workers, scheduler, results_dir, bank, progress, should_stop, tick,
               total, done, eta) -> list[dict[str, Any]]:
    """Every cell's summary, in request order (the finished ones only when cancelled); ``eta``
    gives the phase's " · ETA ..." from the fraction of the cells done."""
    cells: list[dict[str, Any]] = []
    if executor == "inline":
        for req in requests:
            if should_stop():
                break
            phase = f"walk-forward {req.strategy} on {req.data.name}"
            inner = None if progress is None else _combo_progress(progress, done, total, phase, len(requests), eta)
            try:
                cell = run_cell(req, results_dir, frames[req.data.name], bank, inner, should_stop)
            except ThreadXError as exc:
                if should_stop():  # stopped before the walk-forward's first combo finished
                    break
                cell = failed_cell(req, exc)
            if cell is None:
                break
            cells.append(cell)
            tick(phase, cells_done=len(cells))
        return cells
    return _run_remote(requests, executor, workers, scheduler, results_dir, should_stop, tick)


def failed_cell(request: WalkForwardRequest, exc: ThreadXError) -> dict[str, Any]:
    """The cell of a walk-forward that failed (every combo of a strategy raised, a dataset too
    short for its windows): its error, in place of its figures. One such cell failed the whole
    job, naming neither strategy nor dataset, and the cells done before were left unlisted."""
    return {"strategy": request.strategy, "dataset": request.data.name or request.data.source,
            "run_id": None, "error": str(exc),
            "params": {}, "last_window_params": {}}


def _cell_of(future: Any, request: WalkForwardRequest) -> dict[str, Any] | None:
    """A worker's cell, or the failed cell of the error it raised; ThreadXError when the
    machinery was lost (a Dask scheduler or the process pool gone: three tracebacks of
    FutureCancelledError), saying that the same research id runs the rest."""
    from threadx.optimize.outcome import is_infra_exception

    try:
        return future.result()
    except ThreadXError as exc:
        return failed_cell(request, exc)
    except Exception as exc:  # noqa: BLE001 - the machinery's failures become one line; the others stay
        if not is_infra_exception(exc):
            raise
        raise ThreadXError(f"the workers running the research were lost ({type(exc).__name__}: {first_line(exc, 160)}):"
                           " the cells that finished are stored; run the same research id again to run the rest "
                           "(threadx research --id ...)") from None


def _combo_progress(progress: Progress, done: list, total: int, phase: str, n_cells: int,
                    eta: Callable[[float], str]) -> Callable[[Any], None]:
    """The walk-forward's combo progress as ``progress(cells done, total, "<phase>: k/n combos · ETA ...")``
    (the ETA counts each cell as an equal share of the walk-forwards)."""
    def inner(p: Any) -> None:
        fraction = (done[0] + p.done / max(p.total, 1)) / n_cells
        progress(done[0], total, f"{phase}: {p.done:,}/{p.total:,} combos{eta(fraction)}")
    return inner


def _run_remote(requests, executor, workers, scheduler, results_dir, should_stop, tick) -> list[dict[str, Any]]:
    """Cells as tasks of a process pool (``local``) or a Dask cluster (``dask``), one per task."""
    from threadx.optimize.runner import default_workers

    n = max(1, min(len(requests), int(workers or default_workers())))
    one_thread = [replace(r, workers=1) for r in requests]
    results: dict[int, dict[str, Any]] = {}
    if executor == "local":
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(run_cell, r, results_dir): k for k, r in enumerate(one_thread)}
            for future in as_completed(futures):
                results[futures[future]] = _cell_of(future, requests[futures[future]])
                tick(f"walk-forwards running side by side, last done: {requests[futures[future]].strategy} on "
                     f"{requests[futures[future]].data.name}",
                     cells_done=len(results))
                if should_stop():
                    for f in futures:
                        f.cancel()
                    break
    else:
        from threadx.optimize.dask_executor import open_cluster

        client, cluster = open_cluster(n, scheduler)  # (ImportError without dask[distributed])
        from dask.distributed import as_completed

        try:
            futures = {client.submit(run_cell, r, results_dir, pure=False): k for k, r in enumerate(one_thread)}
            for future in as_completed(list(futures)):
                results[futures[future]] = _cell_of(future, requests[futures[future]])
                tick(f"walk-forwards running side by side, last done: {requests[futures[future]].strategy} on "
                     f"{requests[futures[future]].data.name}",
                     cells_done=len(results))
                if should_stop():
                    client.cancel(list(futures))
                    break
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    cells = []
    for k in range(len(requests)):  # in order; stops at the first cell missing
        if results.get(k) is None:
            break
        cells.append(results[k])
    return cells
