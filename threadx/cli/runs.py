"""``threadx backtest``, ``threadx sweep`` and ``threadx runs list|show|repair``."""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from threadx.cli.common import (
    EXIT_BAD_INPUT, _dataset_funding, _engine_options, _load_data, _named_rows, _parse_params, _parse_space,
    _print_json, _print_timings, _progress_printer, _table, end_live_line, interrupted_status,
)
from threadx.errors import ThreadXError
from threadx.requests import UNNAMED, describe_data


def cmd_backtest(args: argparse.Namespace) -> int:
    import threadx
    import threadx.api  # noqa: F401 - loading the compiled kernels is the process's start, not the run's time
    from threadx.timings import Stopwatch

    watch = Stopwatch()
    with watch.stage("load"):
        df = _load_data(args)
        funding = _dataset_funding(args)
    result = threadx.backtest(df, args.strategy, _parse_params(args.param), initial_capital=args.capital,
                              stopwatch=watch, funding=funding, **_engine_options(args))
    if args.json:
        out = result.to_dict()
        if not args.with_series:
            out.pop("equity")
        _print_json(out)
        return 0
    meta = result.meta
    label = df.attrs.get("name") or args.data
    synthetic = " (synthetic sample data)" if df.attrs.get("synthetic") else ""
    print(f"{meta['strategy']} on {label}{synthetic}: {meta['bars']:,} bars {meta['start']} -> {meta['end']}")
    print("params: " + ", ".join(f"{k}={v}" for k, v in result.params.items()))
    if funding is not None:
        print(f"funding: {len(funding):,} rates from {funding.attrs['source']} (--no-funding to leave it out)")
    print(_table(_named_rows(result.metrics, "metric"), ("metric", "value")))
    if args.trades and len(result.trades):
        print(f"\nlast {min(args.trades, len(result.trades))} trades:")
        cols = ("entry_time", "exit_time", "side", "entry_price", "exit_price", "pnl", "return_pct", "exit_reason")
        print(_table(result.trades.tail(args.trades).to_dict(orient="records"), cols))
    if args.timings:
        _print_timings(meta.get("timings"))
    for note in (result.liquidation_note(), result.no_trades_note()):
        if note:
            print(f"warning: {note}", file=sys.stderr)
    return 0


def _stored_words(store: Any, run_id: str) -> str:
    """What an interrupted sweep left: its stored combos and how to resume them, or nothing."""
    from threadx.optimize.store import ResultStore

    try:
        stored = len(ResultStore(store).stored(run_id).ids)
    except (ThreadXError, OSError):
        stored = 0
    if not stored:
        return f"no combo of run {run_id} was stored"
    return (f"{stored:,} combos of run {run_id} are stored; run the same command with --run-id {run_id} to "
            "resume")


def cmd_sweep(args: argparse.Namespace) -> int:
    import threadx
    import threadx.optimize.runner  # noqa: F401 - the process's start, not the run's time
    from threadx.names import new_run_id
    from threadx.timings import Stopwatch

    space = _parse_space(args.param)
    watch = Stopwatch()
    with watch.stage("load"):
        df = _load_data(args)
        funding = _dataset_funding(args)
    engine = dict(_engine_options(args), **({"funding": funding} if funding is not None else {}))

    progress = _progress_printer(args, args.sampler)

    # (named here: an interruption says which run to resume; an empty --run-id is refused, not replaced)
    run_id = args.run_id if args.run_id is not None else new_run_id(args.strategy)
    try:
        run = threadx.sweep(
            df, args.strategy, space, sampler=args.sampler, n=None if args.sampler == "grid" else args.n,
            seed=args.seed, objective=args.objective,
            maximize=not args.minimize, min_trades=args.min_trades, workers=args.workers, executor=args.executor,
            run_id=run_id, store=args.store, progress=progress, memory_budget=args.memory_budget,
            scheduler=args.scheduler, stopwatch=watch, **engine,
        )
    except KeyboardInterrupt as stopped:
        print(f"\ninterrupted: {_stored_words(args.store, run_id)}", file=sys.stderr)
        return interrupted_status(stopped)
    except ThreadXError:
        end_live_line()
        raise
    end_live_line()
    return _show_run(run, args.json, args.top)


def _typed_row(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row with its counts as whole numbers and its switches as booleans, as ``backtest
    --json`` writes them (the store keeps every metric a float: ``n_trades 1.0``, ``liquidated 1.0``)."""
    from threadx.units import unit_of

    def typed(name: str, value: Any) -> Any:
        unit = unit_of(name)
        if unit is None or not isinstance(value, float) or not math.isfinite(value):
            return value
        if unit.kind == "bool":
            return bool(value)
        return int(value) if unit.kind == "count" and value.is_integer() else value

    return {name: typed(name, value) for name, value in row.items()}


def _constraint_words(strategy: str) -> str:
    """" (a, b)": the descriptions of ``strategy``'s constraints, or "" when it does not load."""
    from threadx.strategy.base import get_strategy

    try:
        rules = [rule.description for rule in get_strategy(strategy).constraints]
    except Exception:  # noqa: BLE001 - a strategy file gone since the run: the count alone
        return ""
    return f" ({'; '.join(rules)})" if rules else ""


def _show_run(run, as_json: bool, top: int) -> int:
    stored = run.stored()  # counted from the parts, not taken from the manifest
    m = {**run.manifest, "done": len(stored.ids), "failed": stored.failed, "to_retry": len(stored.retry_ids)}
    best = run.top(top)
    status = 1 if m["done"] and m["done"] == m["failed"] else 0  # every combo failed: nothing to rank
    if str(m.get("status", "")).startswith("damaged"):  # shown, and said as an unreadable part is (exit 2)
        status = EXIT_BAD_INPUT
    if as_json:
        _print_json({"manifest": m, "top": [_typed_row(row) for row in best.to_dict(orient="records")]})
        return status
    failed = f", {m['failed']:,} failed" if m["failed"] else ""
    on = m.get("dataset") if (m.get("data") or {}).get("source") != UNNAMED else describe_data(m["data"], m.get("dataset"))
    print(f"run {m['run_id']}: {m['strategy']} on {on}, sampler {m['sampler']}, "
          f"{m['done']:,}/{m.get('total', 0):,} combos{failed}, status {m.get('status')}")
    if m.get("invalid"):  # (a sweep of 30 combos said "9 combos to run" and nothing of the other 21)
        size = int((m.get("space") or {}).get("size") or 0)
        left = (f"{size - int(m.get('total', 0)):,} of the grid's {size:,} combos"
                if m.get("sampler") == "grid" and size else f"{m['invalid']:,} drawn combos")
        print(f"note: {left} left out by the strategy's constraints{_constraint_words(m['strategy'])}")
    if m.get("status") == "failed" and m.get("error"):  # why the run itself failed (not one combo)
        print(f"the run failed: {m['error']}")
    for text in run.warnings:
        print(f"warning: {text}")
    if m["failed"]:  # (the rows hold each failure's text: the CLI showed none, and exit status 0 for a run
        shown = run.failure_counts(3)  # whose every combo failed)
        for text, count in shown:
            print(f"failed ({count:,} combo{'s' if count != 1 else ''}): {text}")
        rest = m["failed"] - sum(count for _, count in shown)
        if rest > 0:  # (the header's count and the lines below it disagreed, with nothing said)
            print(f"failed ({rest:,} more combo{'s' if rest != 1 else ''}): other errors (each row's error column: "
                  f"the Optimisation page's export, or ResultStore().load({m['run_id']!r}).results in Python)")
    if str(m.get("status")).startswith("damaged"):
        print(f"repair with: threadx runs repair {m['run_id']}")
    elif m.get("status") in ("cancelled", "interrupted") or m["to_retry"]:
        print(f"resume with: threadx sweep ... --run-id {m['run_id']}")
    cols = [*m.get("param_names", [])]
    varying = [a["name"] for a in m.get("space", {}).get("axes", []) if len(a["values"]) > 1] or cols
    shown = [*varying, m["objective"], "total_return", "sharpe", "max_drawdown", "n_trades"]
    shown = list(dict.fromkeys(c for c in shown if c in best.columns))
    if not best.empty:
        print(_table(best[shown].to_dict(orient="records"), shown))
        from threadx.validation.stability import run_edges

        edges = run_edges(m, int(best["combo_id"].iloc[0]))
        if edges:  # (only `validate` said so)
            print(f"note: the winner sits on the edge of the searched range of {', '.join(edges)}: the optimum "
                  "may lie outside it (widen the range)")
    elif top and m["done"] > m["failed"]:  # (--top 0 asks for no row: it said no combo reached the minimum)
        print(f"no combo reaches the run's minimum of {int(m.get('min_trades') or 0):,} trades (min_trades): "
              "none is ranked")
    return status


def cmd_runs_list(args: argparse.Namespace) -> int:
    from threadx.optimize.store import ResultStore
    from threadx.validation.storage import list_walk_forwards

    store = ResultStore(args.store)
    runs = store.list_runs()
    runs = runs.astype(object).where(runs.notna(), None)  # what a damaged run lacks is null, not NaN
    walks = [{k: v for k, v in row.items() if k != "mtime"} for row in list_walk_forwards(store.root)]
    if args.json:  # one list: each row's kind says which (the sweeps first, as before)
        _print_json([{**row, "kind": "sweep"} for row in runs.to_dict(orient="records")]
                    + [{**row, "kind": "walk_forward"} for row in walks])
        return 0
    if runs.empty and not walks:
        print("no stored runs yet: see `threadx sweep --help` and `threadx walkforward --help`")
    if not runs.empty:
        print(_table(runs.to_dict(orient="records"), list(runs.columns)))
    if walks:  # (a walk-forward's id, printed when it was stored, was in no list)
        print(f"\nwalk-forwards (threadx runs show ID):\n{_table(walks, list(walks[0]))}")
    return 0


def cmd_runs_show(args: argparse.Namespace) -> int:
    from threadx.optimize.store import ResultStore
    from threadx.validation.storage import is_stored

    store = ResultStore(args.store)
    if not store.folder(args.run_id).exists() and is_stored(args.run_id, store.root):  # a stored walk-forward
        return _show_walkforward(args.run_id, store.root, args.json, args.timings)
    run = store.load(args.run_id)
    code = _show_run(run, args.json, args.top)
    if args.timings and not args.json:
        _print_timings(run.manifest.get("timings"))
    return code


def _show_walkforward(run_id: str, root: Path, as_json: bool, timings: bool) -> int:
    """The walk-forward ``run_id`` stored under ``root`` (``walkforward/<id>``): its tables and
    report, as ``threadx walkforward`` printed them (``runs show`` said "no run" of it)."""
    from threadx.cli.validation import print_walk_forward
    from threadx.validation.storage import load_walk_forward

    wf, report = load_walk_forward(run_id, root)
    if as_json:
        _print_json({"run_id": run_id, "walk_forward": wf.to_dict(), "validation": report.to_dict(),
                     **({"timings": wf.meta.get("timings")} if timings else {})})
        return 0
    print(f"walk-forward {run_id} (stored in {root / 'walkforward' / run_id}):")
    print_walk_forward(wf, report)
    if timings:
        _print_timings(wf.meta.get("timings"))
    return 0


def cmd_runs_repair(args: argparse.Namespace) -> int:
    from threadx.optimize.store import ResultStore

    report = ResultStore(args.store).repair(args.run_id)
    if args.json:
        _print_json(report)
        return 0
    for moved in report["quarantined"]:
        print(f"quarantined {moved['part']}: {moved['why']}")
    if report["manifest"] != "kept":
        print(f"manifest {report['manifest']}")
    print(f"run {report['run_id']}: {report['done']:,} combos stored ({report['failed']:,} failed, "
          f"{report['to_retry']:,} to retry), status {report['status']}")
    if report["status"] == "interrupted":
        print(f"resume with: threadx sweep ... --run-id {report['run_id']}")
    return 0
