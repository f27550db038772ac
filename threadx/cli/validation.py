"""``threadx walkforward``, ``research``, ``portfolio`` and ``validate``: the overfitting checks."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from threadx.cli.common import (
    EXIT_BAD_INPUT, EXIT_CELL_FAILED, _cell, _check_writable, _dataset_funding, _engine_options, _json_text,
    _load_data, _parse_space, _print_json, _print_timings, _progress_printer, _table, end_live_line,
    interrupted_status, live_line,
)
from threadx.config import STORED
from threadx.errors import ParamError, ThreadXError
from threadx.units import counted, format_count
from threadx.validation.bootstrap import check_block, check_resamples
from threadx.validation.grading import score_text
from threadx.validation.pbo import check_S


def _oos_bar_count(args: argparse.Namespace, df: Any) -> int:
    """Bars of the stitched out-of-sample record of ``threadx walkforward`` with ``args`` on
    ``df``: its windows' (they tile, one after the other), as the walk-forward will plan them."""
    from threadx.data.bars import as_bars
    from threadx.validation.walkforward import planned_windows

    windows, _ = planned_windows(as_bars(df), is_bars=args.is_bars, is_days=args.is_days, oos_bars=args.oos_bars,
                                 oos_days=args.oos_days, step_bars=args.step_bars, step_days=args.step_days,
                                 anchored=args.anchored, purge=args.purge, embargo=args.embargo)
    return sum(win.oos_end - win.oos_start for win in windows)


def cmd_walkforward(args: argparse.Namespace) -> int:
    import time

    import threadx
    from threadx.validation.report import validate_walk_forward

    from threadx import logs

    from threadx.names import new_run_id
    from threadx.optimize.store import ResultStore, check_run_id
    from threadx.validation.storage import is_stored, save_walk_forward

    if args.save:
        _check_writable(args.save, "--save")  # before the work, not after it
    check_S(args.S)  # (also before the work)
    check_resamples(args.bootstrap, "bootstrap")
    threadx.get_strategy(args.strategy)  # (an unknown one is its own error, not a bad run id)
    run_id = check_run_id(args.run_id if args.run_id is not None else new_run_id(f"wf-{args.strategy}"))
    if is_stored(run_id):
        raise ParamError(f"walk-forward {run_id} is stored already; pick another --run-id")
    if ResultStore().folder(run_id).exists():  # (`runs show` then showed only the sweep)
        raise ParamError(f"run id {run_id} is a stored sweep's; pick another --run-id")
    import threadx.validation.walkforward  # noqa: F401 - the process's start, not the run's time
    from threadx.timings import Stopwatch

    watch = Stopwatch()
    with watch.stage("load"):
        df = _load_data(args)
        funding = _dataset_funding(args)
    if args.block is not None:  # against the stitched out-of-sample record's returns, before its windows run
        check_block(args.block, _oos_bar_count(args, df))
    engine = dict(_engine_options(args), **({"funding": funding} if funding is not None else {}))
    started = time.perf_counter()
    logs.logger().info("walk-forward %s on %s started (%s, %s combos)", args.strategy,
                       df.attrs.get("name") or args.data, args.sampler, "grid" if args.sampler == "grid" else args.n)
    try:
        wf = threadx.walk_forward(
            df, args.strategy, _parse_space(args.param) or None, is_bars=args.is_bars, is_days=args.is_days,
            oos_bars=args.oos_bars, oos_days=args.oos_days, step_bars=args.step_bars, step_days=args.step_days,
            anchored=args.anchored, purge=args.purge, embargo=args.embargo, sampler=args.sampler, n=args.n,
            seed=args.seed, objective=args.objective,
            maximize=not args.minimize, min_trades=args.min_trades, workers=args.workers,
            memory_budget=args.memory_budget, stopwatch=watch,
            progress=_progress_printer(args, f"{args.sampler}, every combo in every window"), **engine,
        )
    except KeyboardInterrupt as stopped:
        print("\ninterrupted", file=sys.stderr)
        return interrupted_status(stopped)
    elapsed = time.perf_counter() - started
    end_live_line()
    with watch.stage("robustness"):
        report = validate_walk_forward(wf, n=args.bootstrap, block=args.block, seed=args.seed, S=args.S,
                                       run_id=run_id)
    wf.meta["timings"] = watch.record()
    total = time.perf_counter() - started
    logs.logger().info("walk-forward %s finished: %d windows, grade %s, %.1f s", args.strategy, len(wf.windows),
                       report.grade.letter, total)
    out = {"run_id": run_id, "walk_forward": wf.to_dict(), "validation": report.to_dict(),
           "timing": {"walk_forward_s": elapsed, "total_s": total}}
    unsaved = _save_json(args.save, out, "the walk-forward and its report") if args.save else None
    try:  # stored as the page's are: the Validation page lists it (a full disk loses no printed result)
        stored = save_walk_forward(run_id, wf, report)
    except ThreadXError as exc:
        stored, unsaved = None, unsaved or exc
    if args.json:
        _print_json(out)
        return _exit_status(unsaved)
    print_walk_forward(wf, report)
    print(f"time: walk-forward {_cell('elapsed_s', elapsed)}, with validation {_cell('elapsed_s', total)}")
    if stored is not None:
        print(f"stored as walk-forward {run_id} in {stored} (the Validation page's Stored walk-forwards)")
    if args.timings:
        _print_timings(wf.meta.get("timings"))
    return _exit_status(unsaved)


def print_walk_forward(wf: Any, report: Any) -> None:
    """A walk-forward in tables: its windows, what was searched, the stitched OOS record and its
    validation report (``threadx walkforward``, ``threadx runs show`` of a stored one)."""
    table = wf.table
    print(f"walk-forward {wf.config['strategy']} on {wf.meta.get('dataset')}: {len(wf.windows)} windows "
          f"(IS {format_count(wf.config['is_bars'])} bars, OOS {format_count(wf.config['oos_bars'])} bars, "
          f"{'anchored' if wf.config['anchored'] else 'rolling'}{_purge_text(wf.config)}), "
          f"{wf.meta['combos_done']:,} combos per window")
    searched = _searched(wf.config.get("space") or {})
    if searched:  # (leverage 1..10 ranged by a strategy's declared space went unsaid)
        print(f"searched: {searched}")
    for note in (wf.failure_note(), wf.idle_note()):
        if note:
            print(f"warning: {note}")
    cols = [c for c in ("window", "oos_start", "oos_end", "regime", f"is_{wf.objective}", f"oos_{wf.objective}",
                        "oos_total_return", "oos_n_trades") if c in table.columns]
    print(_table(table[cols].to_dict(orient="records"), cols))
    s = wf.oos_summary
    print(f"stitched OOS: return {_cell('total_return', s['total_return'])}, Sharpe {_cell('sharpe', s['sharpe'])}, "
          f"max drawdown {_cell('max_drawdown', s['max_drawdown'])}, {_cell('n_trades', s['n_trades'])} trades; "
          f"efficiency {_cell('efficiency', wf.efficiency)}, consistency {_cell('consistency', wf.consistency)}")
    _print_report(report)


def _searched(space: dict) -> str:
    """The params a search varied and their values (a search space's dict), in one line.

    >>> _searched({"axes": [{"name": "fast", "values": [5, 10, 15]}, {"name": "slow", "values": [50]},
    ...                     {"name": "leverage", "values": [1.0, 2.0, 4.0, 10.0]}]})
    'fast 5..15 (3 values), leverage 1.0..10.0 (4 values)'
    """
    varied = [a for a in space.get("axes", []) if len(a.get("values", [])) > 1]
    return ", ".join(f"{a['name']} {min(a['values'])}..{max(a['values'])} ({len(a['values']):,} values)"
                     if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in a["values"])
                     else f"{a['name']} {'/'.join(map(str, a['values']))}" for a in varied)


def _save_json(path: str, out: Any, what: str) -> ThreadXError | None:
    """Save ``out`` as JSON at ``path`` whole or not at all; the error, when it could not be
    (the result is printed all the same: a full disk must not lose a finished computation)."""
    from threadx.files import save_atomically

    try:
        save_atomically(Path(path), _json_text(out).encode(), what)
    except ThreadXError as exc:
        return exc
    return None


def _exit_status(error: ThreadXError | None) -> int:
    """Exit status of a command whose result was printed: ``error`` (a save that failed) as one line."""
    if error is None:
        return 0
    print(f"error: {error}", file=sys.stderr)
    return EXIT_BAD_INPUT


def cmd_research(args: argparse.Namespace) -> int:
    """Walk-forward of each strategy on each dataset, the strategy x asset matrix and transfer."""
    from threadx.validation.research import kept_text, research

    def progress(done: int, total: int, phase: str) -> None:
        if not args.json and not args.quiet:
            live_line(f"  [{done}/{total}] {phase[:110]:<110}")

    windows = {k: getattr(args, k) for k in ("is_days", "is_bars", "oos_days", "oos_bars", "step_days", "step_bars")}
    try:
        result = research(
            args.strategy, args.data, _parse_space(args.param) or None, executor=args.executor, workers=args.workers,
            scheduler=args.scheduler, research_id=args.id, progress=progress, anchored=args.anchored,
            purge=args.purge, embargo=args.embargo, sampler=args.sampler, n=args.n, seed=args.seed,
            objective=args.objective, maximize=not args.minimize, min_trades=args.min_trades,
            bootstrap=args.bootstrap, S=args.S, **windows, **_engine_options(args),
            funding=None if args.no_funding else STORED)
    except KeyboardInterrupt as stopped:
        print("\ninterrupted", file=sys.stderr)
        return interrupted_status(stopped)
    end_live_line()
    failed = [c for c in result.cells if c.get("error")]  # (its walk-forward failed: the other cells are whole)
    status = EXIT_CELL_FAILED if failed else 0  # a script reading only the exit status misses a hole in the matrix
    if args.json:
        _print_json(result.to_dict())
        return status
    elapsed = _cell("elapsed_s", result.meta["elapsed_s"])
    print(f"research {result.research_id}: {counted(len(result.config['strategies']), 'strategy', 'strategies')} x "
          f"{counted(len(result.config['datasets']), 'dataset')} ({result.status}, {elapsed})")
    funded = [name for name, funding in (result.config.get("funding") or {}).items() if funding is not None]
    if funded:
        print(f"funding: the files stored beside {', '.join(funded)} (--no-funding to leave them out)")
    rows = [{"strategy": c["strategy"], "dataset": c["dataset"], "grade": c.get("grade") or "failed",
             "oos_sharpe": c.get("oos_sharpe"), "consistency": c.get("consistency"), "trades": c.get("trades"),
             "kept": kept_text(c.get("transfer_kept")) or "-", "run_id": c.get("run_id") or "-"}
            for c in result.cells]
    print(_table(rows, ("strategy", "dataset", "grade", "oos_sharpe", "consistency", "trades", "kept", "run_id")))
    for c in failed:
        print(f"failed: {c['strategy']} on {c['dataset']}: {c['error']}")
    print("kept: other assets with a positive OOS return using the params chosen on this one")
    for strategy in result.config["strategies"]:
        frame = result.transfer_matrix(strategy, "sharpe")
        if frame.empty:
            continue
        print(f"\ntransfer {strategy}: Sharpe of the params chosen on <source>'s whole period (rows) on each "
              "target's OOS span (columns): out of sample by asset, not by time; "
              "(*) is in sample: those params were chosen on a period holding that span's candles (the diagonal, "
              "and one market under two names)")
        targets, in_sample = list(frame.columns), result.in_sample(strategy)
        print(_table([{"source": src, **{t: _cell("sharpe", frame.loc[src, t]) + ("*" if (src, t) in in_sample else "")
                                         for t in targets}}
                      for src in frame.index], ("source", *targets)))
    from threadx.validation.research import research_root

    print(f"\neach cell's full walk-forward and report: {research_root().parent / 'walkforward'}/<run_id> "
          f"(threadx.validation.storage.load_walk_forward); the matrix: {research_root() / result.research_id}")
    if failed:
        print(f"{counted(len(failed), 'cell')} of {len(result.cells):,} failed (named above): exit status "
              f"{EXIT_CELL_FAILED}", file=sys.stderr)
    return status


def cmd_portfolio(args: argparse.Namespace) -> int:
    """Backtest several runners on one shared capital: combined metrics, runners, skips, kill switch."""
    from threadx.portfolio import portfolio_backtest
    from threadx.portfolio.result import portfolio_root
    from threadx.portfolio.runners import (IN_SAMPLE_NOTE, funding_differences, in_sample, option_differences,
                                           research_engine_options, research_funding, research_origin,
                                           runners_from_research)
    from threadx.requests import describe_options

    runners: list[Any] = list(args.runner or [])
    origin = None
    options = _engine_options(args)
    if args.from_research:
        chosen = runners_from_research(args.from_research, args.research_strategy, kept_only=args.kept_only,
                                       choice=args.research_params)
        runners += chosen
        for text in funding_differences(chosen, research_funding(args.from_research), not args.no_funding):
            print(f"warning: {text}", file=sys.stderr)
        origin = research_origin(args.from_research, args.research_params, args.kept_only, args.research_strategy,
                                 by_hand=bool(args.runner))
        theirs = research_engine_options(args.from_research)
        for text in option_differences(options, theirs):
            print(f"warning: {text}: its winners were chosen under the research's options", file=sys.stderr)
        options = {**theirs, **{key: value for key, value in options.items() if value is not None}}
    if not runners:
        raise ThreadXError("give at least one --runner STRATEGY:DATASET[:param=value,...] or --from-research ID")
    weights = None
    if args.weights is not None:  # ("" too: a value that says nothing is refused, not read as equal weights)
        try:
            weights = [float(w) for w in args.weights.split(",")]
        except ValueError:
            raise ThreadXError(
                f"--weights takes numbers separated by commas (W1,W2,...), got {args.weights!r}") from None
    result = portfolio_backtest(
        runners, capital=args.capital, weights=weights, margin_guard=args.margin_guard, runner_cap=args.runner_cap,
        kill_switch=args.kill_switch, kill_window=args.kill_window, cooldown=args.cooldown,
        funding=None if args.no_funding else STORED, portfolio_id=args.id, memory_budget=args.memory_budget,
        origin=origin, **options)
    if args.json:
        _print_json(result.summary())
        return 0
    m = result.metrics
    print(f"portfolio {result.portfolio_id}: {len(result.runners)} runners on "
          f"{_cell('capital', result.config['capital'])}"
          f" capital, {result.meta['start']} .. {result.meta['end']} ({result.meta['ticks']:,} ticks)")
    if in_sample(result.config.get("origin")):
        print(f"runners from {result.config['origin']}", file=sys.stderr)
        print(f"warning: {IN_SAMPLE_NOTE}", file=sys.stderr)
    for note in result.notes():
        print(f"warning: {note}", file=sys.stderr)
    print(f"return {_cell('total_return', m['total_return'])}, Sharpe {_cell('sharpe', m['sharpe'])}, max drawdown "
          f"{_cell('max_drawdown', m['max_drawdown'])}, {m['n_trades']:,} trades in {m['n_cycles']:,} cycles, "
          f"cycle win rate {_cell('cycle_win_rate', m['cycle_win_rate'])}, "
          f"fees {_cell('total_fees', m['total_fees'])}, funding {_cell('total_funding', m['total_funding'])}")
    summary = result.summary()
    print(f"peak margin {_cell('margin_share', summary['peak_margin_share'])} of equity, "
          f"{summary['peak_positions']} positions ({summary['peak_legs']} legs) open at once at most")
    rows = [{"runner": r["label"], "weight": r["weight"], "capital": r["capital"], "pnl": r["pnl"],
             "total_return": r["metrics"]["total_return"], "max_drawdown": r["metrics"]["max_drawdown"],
             "trades": r["metrics"]["n_trades"], "skipped": sum(v for k, v in r["skipped"].items() if k != "engine"),
             "peak_margin_share": r["peak_margin_share"]} for r in result.runners]
    print(_table(rows, ("runner", "weight", "capital", "pnl", "total_return", "max_drawdown", "trades", "skipped",
                        "peak_margin_share")))
    skipped = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in result.skipped.items())
    print(f"entries skipped: {skipped} (engine: orders the engine itself skips, e.g. under the minimum notional)")
    print(f"gates: {result.gates_text()}; engine: {describe_options(result.config.get('engine_options'))}")
    if result.config.get("kill_switch") and not result.events:
        print("the kill switch never fired")
    for event in result.events:
        print(f"kill switch at {event['time']}: drawdown {_cell('max_drawdown', event['drawdown'])} within "
              f"{result.config['kill_window']}, entries resume {event['resumes'] or 'never (end of data)'}")
    if len(result.runners) > 1:
        corr = result.drawdown_correlation()
        print("drawdown correlation:")
        print(_table([{"runner": a, **{b: _cell("correlation", corr.loc[a, b]) for b in corr.columns}}
                      for a in corr.index], ("runner", *corr.columns)))
    print(f"stored: {portfolio_root() / result.portfolio_id}")
    return 0


def _purge_text(config: dict) -> str:
    """", purge 24 bars, embargo 12 bars" when set (nothing for 0, or a run stored before)."""
    return "".join(f", {key} {format_count(config[key])} bars" for key in ("purge", "embargo") if config.get(key))


def cmd_validate(args: argparse.Namespace) -> int:
    import threadx

    df = None
    check_resamples(args.bootstrap, "bootstrap")  # (it said "n must be", the API's name)
    if args.timeframe and not args.data:  # (ignored: even --timeframe banana passed)
        raise ParamError("--timeframe goes with --data (the candles to validate on); a run's own data is reloaded "
                         "at its own timeframe")
    if args.data:
        df = threadx.load_ohlcv(args.data, timeframe=args.timeframe)
    report = threadx.validate(args.run_id, df, store=args.store, n=args.bootstrap, block=args.block, seed=args.seed,
                              S=args.S)
    if args.json:
        _print_json(report.to_dict())
        return 0
    from threadx.requests import describe_data, describe_options

    src = report.source
    if src.get("partial"):
        print(f"warning: {src['partial']}", file=sys.stderr)
    print(f"run {src['run_id']}: {src['strategy']} on {describe_data(src.get('data'), src['dataset'])}, "
          f"winner {src['params']}")
    print(f"options: {describe_options(src.get('engine'))}")
    _print_report(report)
    return 0


def _print_report(report) -> None:
    boot = report.robustness.bootstrap
    low, high = boot.ci["sharpe"]
    print(f"bootstrap ({format_count(boot.n)} resamples, block {format_count(boot.block)} bars): Sharpe "
          f"{_cell('sharpe', boot.observed['sharpe'])} [{_cell('sharpe', low)}, {_cell('sharpe', high)}], "
          f"p-value {_cell('p_value', boot.p_value)}")
    d = report.dsr
    if d.unavailable:
        print(f"deflated Sharpe: not available ({d.unavailable}; N {_cell('n_trials', d.n_trials)}, "
              f"T {format_count(d.t)})")
    else:
        print(f"deflated Sharpe: {_cell('dsr', d.dsr)} (per-bar SR {_cell('sr', d.sr)} vs SR0 {_cell('sr0', d.sr0)}, "
              f"N {_cell('n_trials', d.n_trials)}, T {format_count(d.t)})")
    if report.pbo is not None:
        print(f"PBO: {_cell('pbo', report.pbo.pbo)} over {_cell('n_splits', report.pbo.n_splits)} CSCV splits "
              f"(S={report.pbo.S}, {_cell('n_combos', report.pbo.n_combos)} combos)")
    else:
        print(f"PBO: not available ({report.pbo_error})")
    st = report.stability
    edge = f", on the grid edge of {', '.join(st.on_edge)}" if st.on_edge else ""
    whose = "the whole-period optimum" if report.source.get("kind") == "walk_forward" else "the winner"
    moved = set(st.neighbours["param"]) if "param" in st.neighbours.columns else set()
    shown = ", ".join(f"{k}={v}" for k, v in st.params.items() if k in moved)
    around = f" around {whose} {shown}" if shown else ""  # (a walk-forward's windows have other winners)
    print(f"stability: neighbours/winner {_cell('stability_ratio', st.ratio)}{around}{edge}")
    g = report.grade
    print(f"grade {g.letter}: {score_text(g.score)}/100" + (f" ({g.cap})" if g.cap else ""))
    rows = [{"component": c.name, "points": f"{score_text(c.points)} of {c.max_points:g}"} for c in g.components]
    print(_table(rows, ("component", "points")))  # (points as the grade shows them: "13.986" read as raw)
    for c in g.components:  # (a 'why' column made lines of 300 characters)
        print(f"  {c.name}: {c.explanation}")
