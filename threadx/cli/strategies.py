"""``threadx strategies`` and ``threadx strategy new|check``: the catalog and user strategy files."""
from __future__ import annotations

import argparse
import sys

from threadx.cli.common import EXIT_CHECK_FAILED, _load_data, _print_json, _table, end_live_line, live_line
from threadx.errors import ThreadXError


def cmd_strategies(args: argparse.Namespace) -> int:
    import threadx
    from threadx.strategy import user

    specs = threadx.strategies()
    errors = user.load_errors()
    if args.json:
        _print_json([{**spec.to_dict(), "source": _strategy_source(spec)} for spec in specs.values()])
    else:
        for spec in specs.values():
            print(f"{spec.name}: {spec.description}  [{_strategy_source(spec)}]")
            rows = [p.to_dict() for p in spec.params]
            print(_table(rows, ("name", "kind", "default", "min", "max", "description")))
            if spec.constraints:
                print("constraints: " + "; ".join(c.description for c in spec.constraints))
            print()
    for file_name, error in errors.items():
        print(f"not loaded: {file_name}: {error}", file=sys.stderr)
    return 0


def _strategy_source(spec) -> str:
    """Where a strategy comes from: ``built-in`` or its file and line."""
    return "built-in" if spec.origin is None else spec.origin.where


def cmd_strategy_new(args: argparse.Namespace) -> int:
    from threadx.strategy.scaffold import new_strategy_file

    path = new_strategy_file(args.name, from_builtin=args.from_builtin, folder=args.dir)
    print(f"wrote {path}")
    print(f"edit it, then: threadx strategy check {args.name}   |   threadx backtest --strategy {args.name}")
    return 0


def cmd_strategy_check(args: argparse.Namespace) -> int:
    import threadx
    from threadx.data.bars import as_bars
    from threadx.checks.store import hidden_failures, save_report
    from threadx.checks.strategy import ALL_CHECKS, check_strategy

    spec = threadx.get_strategy(args.strategy)
    bars = as_bars(_load_data(args))
    wanted = tuple(args.only.split(",")) if args.only else ALL_CHECKS
    unknown = sorted(set(wanted) - set(ALL_CHECKS))
    if unknown:
        raise ThreadXError(f"unknown check {', '.join(unknown)}; checks: {', '.join(ALL_CHECKS)}")

    quiet = args.json or getattr(args, "quiet", False)

    def progress(stage: str, fraction: float) -> None:
        if not quiet:
            live_line(f"  [{'#' * int(30 * fraction):<30}] {stage[:60]:<60}")

    report = check_strategy(spec, bars, combos=args.combos, seed=args.seed, checks=wanted, progress=progress)
    end_live_line()
    if save_report(spec, report) is None:  # (the stored report is read again only to say why)
        print(f"note: the stored check of {spec.name} is kept: it failed {', '.join(hidden_failures(spec, report))}, "
              "which this run did not check again conclusively on the same data", file=sys.stderr)
    if args.json:
        _print_json(report.to_dict())
    else:
        print(report.format_text())
    return 0 if report.passed else EXIT_CHECK_FAILED
