"""The ``threadx`` command: data, backtest, sweep, runs, walkforward, research, portfolio, validate, strategies, cache, gpu.

Human tables by default, each number in its unit (:mod:`threadx.units`: fractions as %, counts
as whole numbers, bytes as KiB/MiB/GiB); ``--json`` for machines, with the raw values
(fractions stay fractions). Bad input exits with status 2 and one line on stderr
(``error: ...``), never a traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

from threadx.config import DEFAULT_MIN_TRADES, DEFAULT_RESEARCH_PARAMS, DEFAULT_SEED, RESEARCH_PARAM_CHOICES
from threadx.errors import ParamError, ThreadXError, whole
from threadx.gpu.cli import add_gpu_commands
from threadx.validation.grading import score_text
from threadx.validation.pbo import check_S
from threadx.units import counted, format_bytes, format_count, format_eta, format_metric

EXIT_BAD_INPUT = 2
EXIT_CHECK_FAILED = 1  # `strategy check`: a check failed
EXIT_CELL_FAILED = 1  # `research`: a cell's walk-forward failed (the others are stored)
DATE_FORMAT_HELP = "strftime format of date text, e.g. %%d/%%m/%%Y (needed when dates read both day- and month-first)"
JSON_HELP = ("print JSON with the raw values instead of the human output: fractions stay fractions "
             "(win_rate 0.43, shown as 43.00 %% otherwise), counts and sizes plain numbers (bytes)")
HUMAN_OUTPUT_NOTE = ("Human output shows each number in its unit: fractions such as win_rate or total_return as "
                     "percentages, counts as whole numbers, sizes as KiB/MiB/GiB. --json keeps the raw values "
                     "(fractions as fractions, e.g. win_rate 0.43), for scripts.")
TIMINGS_HELP = ("also print where the time went: stages in seconds and %% (load, validation, indicators, "
                "signals, kernel, store, report) and a hint when one stage dominates")
NO_FUNDING_HELP = ("do not apply the funding file stored beside the dataset's candles "
                   "(<exchange>/<SYMBOL>-funding.parquet, from `threadx data fetch --funding`); without that "
                   "file no funding is applied anyway")
MEMORY_BUDGET_HELP = ("memory the run may use, e.g. 4GiB (default: half the available RAM); estimated before "
                      "any work: over it, a sweep prepares its indicators in batches, or is refused with advice")


def _count(text: str) -> int:
    """An argparse type: a whole number >= 0 (how many rows to show)."""
    try:
        return whole(int(text), "a count")
    except (ValueError, ParamError):
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}") from None


def _parse_value(text: str) -> Any:
    """'12' -> 12, '1.5' -> 1.5, 'true' -> True, other text unchanged."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _assignments(items: Sequence[str] | None, form: str) -> Iterator[tuple[str, str]]:
    """(name, value) of each ``--param NAME=VALUE``; ``form`` is the accepted form, for errors."""
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ThreadXError(f"--param expects {form}, got {item!r}")
        yield name.strip(), value


def _parse_params(items: Sequence[str] | None) -> dict[str, Any]:
    return {name: _parse_value(value) for name, value in _assignments(items, "NAME=VALUE")}


def _check_date(text: str | None, flag: str) -> None:
    """ThreadXError unless ``text`` (a ``--start``/``--end`` value) is a date pandas reads."""
    if text is None:
        return
    import pandas as pd

    try:
        pd.Timestamp(text)
    except (ValueError, TypeError):
        raise ThreadXError(f"{flag} {text!r} is not a date; use e.g. 2024-01-31 or 2024-01-31T12:00") from None


def _load_data(args: argparse.Namespace):
    """The ``--data`` frame of a command, cut to ``--start``/``--end`` and resampled to ``--timeframe``."""
    import threadx

    _check_date(args.start, "--start")
    _check_date(args.end, "--end")
    return threadx.load_ohlcv(args.data, timeframe=args.timeframe, start=args.start, end=args.end)


def _dataset_funding(args: argparse.Namespace):
    """The stored funding of the ``--data`` dataset (a Series, see threadx.data.funding.funding_for),
    or None: no funding file beside its candles, ``--no-funding``, or data that is not in the data root
    (a damaged funding file is its error)."""
    from threadx.data.funding import stored_funding

    if getattr(args, "no_funding", False):
        return None
    return stored_funding(args.data)


def _check_writable(path: str, flag: str) -> None:
    """ThreadXError unless a file can be written at ``path`` (checked before long work)."""
    import os

    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise ThreadXError(f"{flag} {path!r} is a directory; give a file name")
    if not folder.is_dir():
        raise ThreadXError(f"{flag} {path!r}: folder {folder} does not exist")
    if not os.access(target if target.exists() else folder, os.W_OK):
        raise ThreadXError(f"{flag} {path!r} is not writable")


def _cell(name: str, value: Any) -> str:
    """``value`` of the metric or column ``name`` in its unit (threadx.units), in plain ASCII;
    text is kept as it is. ``_cell("win_rate", 0.4299)`` -> ``"42.99 %"``."""
    return value if isinstance(value, str) else format_metric(name, value, ascii_only=True)


def _table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    """Left-aligned columns; each cell formatted by its column name (text cells kept as they are)."""
    cells = [[_cell(c, row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[k]) for r in cells]) for k, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def _named_rows(values: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """``{name: value}`` as (``key``, value) table rows, each value formatted in its own unit."""
    return [{key: name, "value": _cell(name, value)} for name, value in values.items()]


def _json_text(obj: Any) -> str:
    """``obj`` as strict JSON (a NaN or Infinity token breaks most parsers): NaN as null, +-inf
    as "inf" / "-inf", times in ISO format, numpy scalars as numbers."""
    def default(value: Any) -> Any:
        if hasattr(value, "isoformat"):
            return value.isoformat()
        if hasattr(value, "item"):
            return value.item()
        return str(value)

    from threadx.validation.common import json_safe

    return json.dumps(json_safe(obj), default=default, indent=2, allow_nan=False)


def _print_json(obj: Any) -> None:
    print(_json_text(obj), file=_JSON_OUT[-1] if _JSON_OUT else sys.stdout)


_JSON_OUT: list[Any] = []  # the stdout a --json command's JSON goes to (every other print: stderr)


@contextlib.contextmanager
def _json_only_on_stdout(enabled: bool) -> Iterator[None]:
    """With ``enabled`` (``--json``), anything else printed while the command runs (a
    ``print()`` in strategy code) goes to stderr, so stdout holds the JSON alone."""
    if not enabled:
        yield
        return
    _JSON_OUT.append(sys.stdout)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        _JSON_OUT.pop()


# --- data ---------------------------------------------------------------------------------

def cmd_data_list(args: argparse.Namespace) -> int:
    from threadx.data.catalog import list_datasets

    table = list_datasets()
    if args.json:
        _print_json(table.to_dict(orient="records"))
    elif table.empty:
        print("no datasets yet: run `threadx data fetch` or `threadx data import FILE`")
    else:
        shown = ("name", "timeframe", "first", "last", "bars", "quality", "verdict", "synthetic")
        cols = [c for c in shown if c in table]
        print(_table(table.to_dict(orient="records"), cols))
    return 0


def cmd_data_validate(args: argparse.Namespace) -> int:
    from threadx.data.catalog import resolve_dataset
    from threadx.data.io import check_ohlcv_file

    path = resolve_dataset(args.source)
    _, report = check_ohlcv_file(path, args.timeframe, date_format=args.date_format)
    if args.json:
        _print_json(report.to_dict())
    else:
        print(f"{path}")
        print(report.summary())
    return 0 if report.ok else 1


def cmd_data_import(args: argparse.Namespace) -> int:
    from threadx.data.catalog import DatasetExists
    from threadx.data.io import import_ohlcv

    try:
        df, target = import_ohlcv(args.file, args.exchange, args.symbol, args.timeframe, dedupe=args.dedupe,
                                  date_format=args.date_format, label=args.label, replace=args.replace)
    except DatasetExists as exc:
        print(f"error: {exc.describe()}; add --replace to overwrite it, or --label NAME to keep both "
              f"as {exc.name}-NAME", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"imported {len(df):,} bar{'s' if len(df) != 1 else ''} into {target}")
    return 0


def cmd_data_rename(args: argparse.Namespace) -> int:
    from threadx.data.catalog import dataset_name, rename_dataset

    target = rename_dataset(args.old, args.new)
    print(f"renamed {args.old} to {dataset_name(target)} ({target})")
    return 0


def cmd_data_delete(args: argparse.Namespace) -> int:
    from threadx.data.catalog import delete_dataset

    removed = delete_dataset(args.name, dry_run=not args.yes)  # unknown names and the sample refused first
    if not args.yes:
        print(f"error: deleting {args.name} ({', '.join(p.name for p in removed)}) cannot be undone; "
              "add --yes to delete it", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"deleted {args.name}: " + ", ".join(str(p) for p in removed))
    return 0


def _list_flag(values: Sequence[str] | None, default: Sequence[str] = ()) -> list[str]:
    """A repeatable flag's values, each also split at commas, blanks dropped, order kept, no repeats."""
    items = [part.strip() for value in (values or default) for part in str(value).split(",")]
    return list(dict.fromkeys(item for item in items if item))


def cmd_data_fetch(args: argparse.Namespace) -> int:
    """One download per (symbol, timeframe), plus one funding download per symbol with --funding.

    A failing download prints one ``error:`` line and the others still run, unless the exchange
    did not answer through its retries (no network): the rest are then not tried, each saying so
    (they would wait as long). The exit status is 2 when any failed. ``--json`` prints one object
    per download."""
    from threadx.data.fetch import fetch_ohlcv

    symbols = _list_flag(args.symbol)
    timeframes = _list_flag(args.timeframe, ("1h",))
    if not symbols:
        raise ThreadXError("--symbol is empty; give e.g. --symbol BTC/USDT")
    quiet = args.json or getattr(args, "quiet", False)

    def progress(done: float, total: float) -> None:
        if total > 0:
            print(f"\r  {min(done / total, 1.0):6.1%}", end="", file=sys.stderr, flush=True)

    results: list[dict[str, Any]] = []
    unreachable: list[str] = []  # why the exchange did not answer, once it did not
    for symbol in symbols:
        for timeframe in timeframes:
            entry = {"kind": "candles", "exchange": args.exchange, "symbol": symbol, "timeframe": timeframe}
            if unreachable:
                results.append(_not_tried(entry, args))
                continue
            if not quiet:
                print(f"{args.exchange} {symbol} {timeframe}", file=sys.stderr)
            try:
                result = fetch_ohlcv(args.exchange, symbol, timeframe, since=args.since, until=args.until,
                                     progress=None if quiet else progress)
                entry.update(ok=True, path=str(result.path), new_bars=result.new_bars,
                             total_bars=result.total_bars, gaps=len(result.gaps))
                line = f"{result.new_bars:,} new bars, {result.total_bars:,} in {result.path}"
            except ThreadXError as exc:
                _failed(entry, exc, unreachable)
                line = None
            if not quiet:
                print(file=sys.stderr)
            results.append(entry)
            _fetch_line(entry, line, args.json)
        if args.funding:
            results.append(_fetch_funding_entry(args, symbol, unreachable))
    if args.json:
        _print_json(results)
    failed = [r for r in results if not r["ok"]]
    if failed and not args.json and len(results) > 1:
        print(f"error: {len(failed)} of {len(results)} downloads failed", file=sys.stderr)
    return EXIT_BAD_INPUT if failed else 0


def _fetch_funding_entry(args: argparse.Namespace, symbol: str, unreachable: list[str]) -> dict[str, Any]:
    """Download the funding history of ``symbol`` for ``data fetch --funding``: one result entry
    (not tried once ``unreachable`` holds why the exchange did not answer; added to when it does not)."""
    from threadx.data.funding import fetch_funding

    entry: dict[str, Any] = {"kind": "funding", "exchange": args.exchange, "symbol": symbol, "timeframe": None}
    if unreachable:
        return _not_tried(entry, args)
    try:
        result = fetch_funding(args.exchange, symbol, since=args.since, until=args.until)
        entry.update(ok=True, path=str(result.path), new_rows=result.new_rows, total_rows=result.total_rows,
                     missing_settlements=result.missing_settlements)
        gap = f" ({result.missing_settlements:,} missing settlements)" if result.missing_settlements else ""
        line = f"{result.new_rows:,} new funding rates, {result.total_rows:,} in {result.path}{gap}"
    except ThreadXError as exc:
        _failed(entry, exc, unreachable)
        line = None
    _fetch_line(entry, line, args.json)
    return entry


def _not_tried(entry: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """``entry`` of a download not tried, as the exchange did not answer an earlier one (printed)."""
    entry.update(ok=False, error=f"not tried: {args.exchange} did not answer an earlier download")
    _fetch_line(entry, None, args.json)
    return entry


def _failed(entry: dict[str, Any], exc: ThreadXError, unreachable: list[str]) -> None:
    """``entry`` of a download that failed with ``exc``; an exchange that did not answer through
    its retries is noted in ``unreachable`` (the downloads after it are not tried)."""
    from threadx.errors import ExchangeUnreachable

    entry.update(ok=False, error=str(exc))
    if isinstance(exc, ExchangeUnreachable):
        unreachable.append(str(exc))


def _fetch_line(entry: dict[str, Any], line: str | None, as_json: bool) -> None:
    """The human line of one download: its summary on stdout, or one ``error:`` line on stderr."""
    if as_json:
        return
    if entry["ok"]:
        print(line)
    else:
        what = " ".join(str(entry[k]) for k in ("symbol", "timeframe") if entry[k]) or entry["symbol"]
        kind = " funding" if entry["kind"] == "funding" else ""
        message = entry["error"]
        prefix = f"{what}{kind}: "
        print(f"error: {message if entry['symbol'] in message else prefix + message}", file=sys.stderr)


def cmd_data_resample(args: argparse.Namespace) -> int:
    from threadx.data.catalog import existing_dataset, resampled_path
    from threadx.data.io import load_ohlcv, write_ohlcv

    if args.out and Path(args.out).suffix.lower() != ".parquet":
        raise ParamError(f"--out {args.out}: resampled bars are written as Parquet; name the file *.parquet")
    df = load_ohlcv(args.source, timeframe=args.to)
    if args.out:
        target = Path(args.out).expanduser()
        if target.exists() and not args.replace:
            raise ParamError(f"{target} exists (it may be the source or another dataset); add --replace to overwrite "
                             "it, or choose another --out FILE")
    else:
        target = resampled_path(df.attrs.get("name") or args.source, args.to)
        taken = existing_dataset(target)
        if taken is not None and not args.replace:
            raise ParamError(f"{taken.describe()}; add --replace to overwrite it, or --out FILE")
    write_ohlcv(df, target)
    print(f"wrote {len(df):,} {args.to} bars to {target}")
    return 0


# --- strategies / backtest -------------------------------------------------------------------

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
            print(f"\r  [{'#' * int(30 * fraction):<30}] {stage[:60]:<60}", end="", file=sys.stderr, flush=True)

    report = check_strategy(spec, bars, combos=args.combos, seed=args.seed, checks=wanted, progress=progress)
    if not quiet:
        print(file=sys.stderr)
    if save_report(spec, report) is None:  # (the stored report is read again only to say why)
        print(f"note: the stored check of {spec.name} is kept: it failed {', '.join(hidden_failures(spec, report))}, "
              "which this run did not check again conclusively on the same data", file=sys.stderr)
    if args.json:
        _print_json(report.to_dict())
    else:
        print(report.format_text())
    return 0 if report.passed else EXIT_CHECK_FAILED


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
    if funding is not None:
        result.meta["funding"] = {"source": funding.attrs["source"], "fingerprint": funding.attrs["fingerprint"],
                                  "rates": len(funding)}
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
    return 0


def _print_timings(timings: dict | None) -> None:
    """Where the run's time went: stages (seconds, %, a bar), workers' stages and the hint."""
    from threadx.timings import text_lines

    print("\ntimings:")
    for line in text_lines(timings):
        print(line)


# --- sweeps -------------------------------------------------------------------------------------

def _parse_space(items: Sequence[str] | None) -> dict[str, Any]:
    """--param NAME=MIN:MAX:STEP | NAME=A,B,C | NAME=VALUE -> a search space."""
    space: dict[str, Any] = {}
    for name, value in _assignments(items, "NAME=MIN:MAX:STEP, NAME=A,B,C or NAME=VALUE"):
        value = value.strip()
        if "," in value:
            space[name] = [_parse_value(v) for v in value.split(",")]
        elif value.count(":") == 2:
            space[name] = value
        else:
            space[name] = _parse_value(value)
    return space


def _engine_options(args: argparse.Namespace) -> dict[str, Any]:
    """The engine flags; None (not given) takes the setting (threadx config show)."""
    return dict(fee_bps=args.fee_bps, slippage_bps=args.slippage_bps, fill=args.fill, sizing=args.sizing,
                leverage=args.leverage, min_notional=args.min_notional)


def _progress_printer(args: argparse.Namespace, what: str):
    """A progress callback drawing one bar on stderr (silent with --json)."""
    announced = []

    def progress(p) -> None:
        if args.json or getattr(args, "quiet", False):
            return
        if not announced:
            announced.append(True)
            print(f"{args.strategy}: {p.total:,} combos to run ({what})", file=sys.stderr)
        bar = "#" * int(30 * p.done / max(p.total, 1))
        print(f"\r  [{bar:<30}] {p.done:,}/{p.total:,}  {p.rate:,.0f}/s  {format_eta(p.eta_s)}  failed {p.failed}",
              end="", file=sys.stderr, flush=True)

    def end_line() -> None:
        """End the bar's line, so that an error message starts a line of its own."""
        if announced and not args.json and not getattr(args, "quiet", False):
            print(file=sys.stderr)

    progress.end_line = end_line  # type: ignore[attr-defined]
    return progress


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

    run_id = args.run_id or new_run_id(args.strategy)  # (named here: an interruption says which run to resume)
    try:
        run = threadx.sweep(
            df, args.strategy, space, sampler=args.sampler, n=args.n, seed=args.seed, objective=args.objective,
            maximize=not args.minimize, min_trades=args.min_trades, workers=args.workers, executor=args.executor,
            run_id=run_id, store=args.store, progress=progress, memory_budget=args.memory_budget,
            scheduler=args.scheduler, stopwatch=watch, **engine,
        )
    except KeyboardInterrupt:
        print(f"\ninterrupted: {_stored_words(args.store, run_id)}", file=sys.stderr)
        return 130
    except ThreadXError:
        progress.end_line()
        raise
    if not args.json:
        print(file=sys.stderr)
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


def _show_run(run, as_json: bool, top: int) -> int:
    stored = run.stored()  # counted from the parts, not taken from the manifest
    m = {**run.manifest, "done": len(stored.ids), "failed": stored.failed, "to_retry": len(stored.retry_ids)}
    best = run.top(top)
    status = 1 if m["done"] and m["done"] == m["failed"] else 0  # every combo failed: nothing to rank
    if as_json:
        _print_json({"manifest": m, "top": [_typed_row(row) for row in best.to_dict(orient="records")]})
        return status
    failed = f", {m['failed']:,} failed" if m["failed"] else ""
    print(f"run {m['run_id']}: {m['strategy']} on {m.get('dataset')}, sampler {m['sampler']}, "
          f"{m['done']:,}/{m.get('total', 0):,} combos{failed}, status {m.get('status')}")
    for text in run.warnings:
        print(f"warning: {text}")
    if m["failed"]:  # (the rows hold each failure's text: the CLI showed none, and exit status 0 for a run
        for text, count in run.failure_counts(3):  # whose every combo failed)
            print(f"failed ({count:,} combo{'s' if count != 1 else ''}): {text}")
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
    elif m["done"] > m["failed"]:
        print(f"no combo reaches the run's minimum of {int(m.get('min_trades') or 0):,} trades (min_trades): "
              "none is ranked")
    return status


def cmd_runs_list(args: argparse.Namespace) -> int:
    from threadx.optimize.store import ResultStore

    runs = ResultStore(args.store).list_runs()
    runs = runs.astype(object).where(runs.notna(), None)  # what a damaged run lacks is null, not NaN
    if args.json:
        _print_json(runs.to_dict(orient="records"))
    elif runs.empty:
        print("no stored runs yet: see `threadx sweep --help`")
    else:
        print(_table(runs.to_dict(orient="records"), list(runs.columns)))
    return 0


def cmd_runs_show(args: argparse.Namespace) -> int:
    from threadx.optimize.store import ResultStore

    store = ResultStore(args.store)
    if args.timings and not store.folder(args.run_id).exists():  # a stored walk-forward of that id
        return _show_walkforward_timings(args.run_id, store.root, args.json)
    code = _show_run(store.load(args.run_id), args.json, args.top)
    if args.timings and not args.json:
        _print_timings(store.load(args.run_id).manifest.get("timings"))
    return code


def _show_walkforward_timings(run_id: str, root: Path, as_json: bool) -> int:
    """The timings of the walk-forward ``run_id`` stored under ``root`` (``walkforward/<id>``)."""
    from threadx.validation.storage import load_walk_forward

    wf, _ = load_walk_forward(run_id, root)
    timings = wf.meta.get("timings")
    if as_json:
        _print_json({"run_id": run_id, "timings": timings})
        return 0
    print(f"walk-forward {run_id}: {wf.config['strategy']} on {wf.meta.get('dataset')}, {len(wf.windows)} windows")
    _print_timings(timings)
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


# --- validation -------------------------------------------------------------------------------

def cmd_walkforward(args: argparse.Namespace) -> int:
    import time

    import threadx
    from threadx.validation.report import validate_walk_forward

    from threadx import logs

    from threadx.names import check_name, new_run_id
    from threadx.validation.storage import is_stored, save_walk_forward

    if args.save:
        _check_writable(args.save, "--save")  # before the work, not after it
    check_S(args.S)  # (also before the work)
    threadx.get_strategy(args.strategy)  # (an unknown one is its own error, not a bad run id)
    run_id = check_name(args.run_id or new_run_id(f"wf-{args.strategy}"), "run id")
    if is_stored(run_id):
        raise ParamError(f"walk-forward {run_id} is stored already; pick another --run-id")
    import threadx.validation.walkforward  # noqa: F401 - the process's start, not the run's time
    from threadx.timings import Stopwatch

    watch = Stopwatch()
    with watch.stage("load"):
        df = _load_data(args)
        funding = _dataset_funding(args)
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
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    elapsed = time.perf_counter() - started
    if not args.json:
        print(file=sys.stderr)
    with watch.stage("robustness"):
        report = validate_walk_forward(wf, n=args.bootstrap, block=args.block, seed=args.seed, S=args.S)
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
    table = wf.table
    print(f"walk-forward {wf.config['strategy']} on {wf.meta.get('dataset')}: {len(wf.windows)} windows "
          f"(IS {format_count(wf.config['is_bars'])} bars, OOS {format_count(wf.config['oos_bars'])} bars, "
          f"{'anchored' if wf.config['anchored'] else 'rolling'}{_purge_text(wf.config)}), "
          f"{wf.meta['combos_done']:,} combos per window")
    if wf.failure_note():
        print(f"warning: {wf.failure_note()}")
    cols = [c for c in ("window", "oos_start", "oos_end", "regime", f"is_{wf.objective}", f"oos_{wf.objective}",
                        "oos_total_return", "oos_n_trades") if c in table.columns]
    print(_table(table[cols].to_dict(orient="records"), cols))
    s = wf.oos_summary
    print(f"stitched OOS: return {_cell('total_return', s['total_return'])}, Sharpe {_cell('sharpe', s['sharpe'])}, "
          f"max drawdown {_cell('max_drawdown', s['max_drawdown'])}, {_cell('n_trades', s['n_trades'])} trades; "
          f"efficiency {_cell('efficiency', wf.efficiency)}, consistency {_cell('consistency', wf.consistency)}")
    _print_report(report)
    print(f"time: walk-forward {_cell('elapsed_s', elapsed)}, with validation {_cell('elapsed_s', total)}")
    if stored is not None:
        print(f"stored as walk-forward {run_id} in {stored} (the Validation page's Stored walk-forwards)")
    if args.timings:
        _print_timings(wf.meta.get("timings"))
    return _exit_status(unsaved)


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
            print(f"\r  [{done}/{total}] {phase[:110]:<110}", end="", file=sys.stderr, flush=True)

    windows = {k: getattr(args, k) for k in ("is_days", "is_bars", "oos_days", "oos_bars", "step_days", "step_bars")}
    try:
        result = research(
            args.strategy, args.data, _parse_space(args.param) or None, executor=args.executor, workers=args.workers,
            scheduler=args.scheduler, research_id=args.id, progress=progress, anchored=args.anchored,
            purge=args.purge, embargo=args.embargo, sampler=args.sampler, n=args.n, seed=args.seed,
            objective=args.objective, maximize=not args.minimize, min_trades=args.min_trades,
            bootstrap=args.bootstrap, S=args.S, **windows, **_engine_options(args))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    if not args.json and not args.quiet:
        print(file=sys.stderr)
    failed = [c for c in result.cells if c.get("error")]  # (its walk-forward failed: the other cells are whole)
    status = EXIT_CELL_FAILED if failed else 0  # a script reading only the exit status misses a hole in the matrix
    if args.json:
        _print_json(result.to_dict())
        return status
    elapsed = _cell("elapsed_s", result.meta["elapsed_s"])
    print(f"research {result.research_id}: {counted(len(result.config['strategies']), 'strategy', 'strategies')} x "
          f"{counted(len(result.config['datasets']), 'dataset')} ({result.status}, {elapsed})")
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
        print(f"\ntransfer {strategy}: OOS Sharpe of the params chosen on <source> (rows) on each target (columns); "
              "the diagonal (*) is in sample: those params were chosen on a period holding that span")
        targets = list(frame.columns)
        print(_table([{"source": src, **{t: _cell("sharpe", frame.loc[src, t]) + ("*" if t == src else "")
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
    from threadx.portfolio.runners import runners_from_research

    runners: list[Any] = list(args.runner or [])
    if args.from_research:
        runners += runners_from_research(args.from_research, args.research_strategy, kept_only=args.kept_only,
                                         choice=args.research_params)
    if not runners:
        raise ThreadXError("give at least one --runner STRATEGY:DATASET[:param=value,...] or --from-research ID")
    weights = None
    if args.weights:
        try:
            weights = [float(w) for w in args.weights.split(",")]
        except ValueError:
            raise ThreadXError(f"--weights takes numbers separated by commas (W1,W2,...), got {args.weights!r}") from None
    result = portfolio_backtest(
        runners, capital=args.capital, weights=weights, margin_guard=args.margin_guard, runner_cap=args.runner_cap,
        kill_switch=args.kill_switch, kill_window=args.kill_window, cooldown=args.cooldown,
        funding=None if args.no_funding else "stored", portfolio_id=args.id, memory_budget=args.memory_budget,
        **_engine_options(args))
    if args.json:
        _print_json(result.summary())
        return 0
    m = result.metrics
    print(f"portfolio {result.portfolio_id}: {len(result.runners)} runners on {_cell('capital', result.config['capital'])}"
          f" capital, {result.meta['start']} .. {result.meta['end']} ({result.meta['ticks']:,} ticks)")
    for note in result.meta.get("notes") or []:
        print(f"warning: {note}", file=sys.stderr)
    print(f"return {_cell('total_return', m['total_return'])}, Sharpe {_cell('sharpe', m['sharpe'])}, max drawdown "
          f"{_cell('max_drawdown', m['max_drawdown'])}, {m['n_trades']:,} trades in {m['n_cycles']:,} cycles, "
          f"cycle win rate {_cell('cycle_win_rate', m['cycle_win_rate'])}, fees {_cell('total_fees', m['total_fees'])}, "
          f"funding {_cell('total_funding', m['total_funding'])}")
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
    rows = [{"component": c.name, "points": c.points, "max": c.max_points, "why": c.explanation}
            for c in g.components]
    print(_table(rows, ("component", "points", "max", "why")))


# --- cache ------------------------------------------------------------------------------------

def cmd_bench(args: argparse.Namespace) -> int:
    from threadx.machine_bench import measure

    df = _load_data(args)
    print(f"bench: {args.strategy} on {df.attrs.get('name') or args.data}: a backtest, then {args.n:,} random "
          "combos ...", file=sys.stderr)
    got = measure(df, args.strategy, n=args.n, workers=args.workers, executor=args.executor)
    if args.json:
        _print_json(got)
        return 0
    rate = lambda value: "-" if value is None else f"{value:,.0f} backtests/s"  # noqa: E731
    rows = {"data": f"{got['data'] or args.data}, {got['bars']:,} bars",
            "backtest": f"{got['backtest_s'] * 1e3:,.1f} ms ({got['trades']:,} trades; median of 5, warm)",
            "sweep": f"{got['combos']:,} combos in {got['sweep_s']:,.2f} s on {got['workers']} worker(s), start-up "
                     "included",
            "sweep rate": rate(got["sweep_rate"]), "steady state": rate(got["steady_rate"]),
            "kernel": "-" if got["kernel_us_per_combo"] is None else f"{got['kernel_us_per_combo']:,.0f} us a combo "
                      "(CPU time, summed over the workers)"}
    print(_table([{"": k, "value": v} for k, v in rows.items()], ["", "value"]))
    return 0


def cmd_cache_stats(args: argparse.Namespace) -> int:
    from threadx.indicators import default_bank

    stats = default_bank().stats()
    if args.json:
        _print_json(stats)
        return 0
    print(_table(_named_rows(stats, "stat"), ("stat", "value")))
    print(f"disk: {format_bytes(stats['disk_bytes'])} of {format_bytes(stats['disk_limit_bytes'])} "
          f"({_cell('disk_used_share', stats['disk_used_share'])} of the limit, THREADX_CACHE_LIMIT)")
    if stats["disk_near_limit"]:
        print("near the limit: the least recently used entries are being evicted")
    return 0


def cmd_cache_clear(args: argparse.Namespace) -> int:
    from threadx.indicators import default_bank

    bank = default_bank()
    before = bank.stats()
    bank.clear(memory=True, disk=True)
    print(f"cleared {format_count(before.get('disk_files', 0))} cache files "
          f"({format_bytes(before.get('disk_bytes', 0))})")
    return 0


def cmd_cache_clean(args: argparse.Namespace) -> int:
    """Remove the shared-memory segments of sweeps whose process is gone."""
    from threadx.optimize.shm import SHM_DIR, listing_supported, reclaim

    if not listing_supported():
        print(f"nothing removed: shared memory cannot be listed here (no {SHM_DIR}); segments of killed "
              "sweeps are freed at reboot")
        return 0
    removed = reclaim(dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for seg in removed:
        print(f"{verb} {seg.name}: run {seg.run}, dead process {seg.pid}, {format_bytes(seg.nbytes)}")
    print(f"{verb} {len(removed)} shared-memory segments of dead sweeps, "
          f"{format_bytes(sum(s.nbytes for s in removed))} {'to free' if args.dry_run else 'freed'}")
    return 0


# --- parser -----------------------------------------------------------------------------------

SETTING_HELP = " (default: the setting %s, see `threadx config show`)"


def _add_engine_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fee-bps", type=float, help="fee per fill in bps" + SETTING_HELP % "engine.fee_bps")
    p.add_argument("--slippage-bps", type=float, help="slippage per fill in bps" + SETTING_HELP % "engine.slippage_bps")
    p.add_argument("--fill", choices=("next_open", "close"), help="fill price" + SETTING_HELP % "engine.fill")
    p.add_argument("--sizing", choices=("all_in", "fraction", "risk"))
    p.add_argument("--leverage", type=float)
    p.add_argument("--min-notional", type=float, metavar="QUOTE",
                   help="skip entries whose order value is below this (quote currency; 0 = off); skipped "
                        "entries count in n_skipped" + SETTING_HELP % "engine.min_notional")


# argparse dest -> (setting, flag): the command-line level of the settings
FLAG_SETTINGS = {
    "capital": ("engine.initial_capital", "--capital"), "fee_bps": ("engine.fee_bps", "--fee-bps"),
    "slippage_bps": ("engine.slippage_bps", "--slippage-bps"), "fill": ("engine.fill", "--fill"),
    "min_notional": ("engine.min_notional", "--min-notional"), "workers": ("sweep.workers", "--workers"),
    "executor": ("sweep.executor", "--executor"), "memory_budget": ("sweep.memory_budget", "--memory-budget"),
    "host": ("app.address", "--host"), "port": ("app.port", "--port"),
}


def _flag_settings(args: argparse.Namespace) -> dict[str, tuple[Any, str]]:
    """``{setting: (value, flag)}`` of the flags given: ``--set KEY=VALUE`` and the flags of
    :data:`FLAG_SETTINGS` (those win over ``--set``)."""
    from threadx.settings_file import key

    flags: dict[str, tuple[Any, str]] = {}
    for item in args.set or ():
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ThreadXError(f"--set expects SECTION.KEY=VALUE, got {item!r}")
        flags[key(name.strip()).dotted] = (value, f"--set {name.strip()}")
    for dest, (dotted, flag) in FLAG_SETTINGS.items():
        value = getattr(args, dest, None)
        if value is not None:
            flags[dotted] = (value, flag)
    return flags


# --- settings and the app ---------------------------------------------------------------------

def cmd_config_show(args: argparse.Namespace) -> int:
    from threadx.settings_file import resolve

    r = resolve()
    files = {"user": str(r.user_file), "user_exists": r.user_file.is_file(),
             "workspace": str(r.workspace_file), "workspace_exists": r.workspace_file.is_file()}
    rows = r.rows()
    if args.json:
        _print_json({"settings": {row["setting"]: {"value": row["value"], "source": row["source"],
                                                   "env": row["env"]} for row in rows}, "files": files})
        return 0
    for label in ("user", "workspace"):
        print(f"{label} file: {files[label]}{'' if files[label + '_exists'] else ' (none)'}")
    print("precedence: flag > environment variable > workspace file > user file > default\n")
    shown = [{**row, "value": str(row["value"])} for row in rows]
    print(_table(shown, ("setting", "value", "source")))
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    """Start the workstation on the ``app.address`` / ``app.port`` settings."""
    import subprocess

    from threadx.settings_file import resolve

    r = resolve()
    app = Path(__file__).resolve().parents[1] / "app.py"
    if not app.is_file():
        raise ThreadXError(f"{app} not found: run `threadx app` from a source checkout of ThreadX")
    command = [sys.executable, "-m", "streamlit", "run", str(app), "--server.address", str(r["app.address"]),
               "--server.port", str(r["app.port"]), "--server.headless", "true",
               "--browser.gatherUsageStats", "false"]
    if args.dry_run:
        print(" ".join(command))
        return 0
    return subprocess.call(command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="threadx", description="ThreadX research workstation",
                                     epilog=HUMAN_OUTPUT_NOTE)
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-q", "--quiet", action="store_true", help="errors only on stderr (no progress bars)")
    loudness.add_argument("-v", "--verbose", action="store_true",
                          help="also print the log's records (runs, jobs, details) on stderr")
    parser.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                        help="override a setting for this command (repeatable), e.g. --set sweep.workers=4")
    sub = parser.add_subparsers(dest="command", required=True)

    config = sub.add_parser("config", help="settings: show the effective values and where each came from")
    confsub = config.add_subparsers(dest="config_command", required=True)
    p = confsub.add_parser("show", help="every setting, its value and its source (flag, env, file, default)")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_config_show)

    p = sub.add_parser("app", help="start the workstation (address and port from the settings)")
    p.add_argument("--host", help="address to listen on" + SETTING_HELP % "app.address")
    p.add_argument("--port", type=int, help="port" + SETTING_HELP % "app.port")
    p.add_argument("--dry-run", action="store_true", help="print the command, start nothing")
    p.set_defaults(func=cmd_app)

    data = sub.add_parser("data", help="datasets: list, import, validate, fetch, resample, rename, delete")
    dsub = data.add_subparsers(dest="data_command", required=True)
    p = dsub.add_parser("list", help="datasets in the data root")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_data_list)
    p = dsub.add_parser("validate", help="validation report of a file or dataset")
    p.add_argument("source")
    p.add_argument("--timeframe", help="expected bar length (default: from the file name, else the spacing)")
    p.add_argument("--date-format", help=DATE_FORMAT_HELP)
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_data_validate)
    p = dsub.add_parser("import", help="copy a Parquet/Feather/CSV/JSON file into the data root")
    p.add_argument("file")
    p.add_argument("--exchange", default="local")
    p.add_argument("--symbol")
    p.add_argument("--timeframe", help="the bars' timeframe when the data cannot tell (a different one is refused)")
    p.add_argument("--dedupe", action="store_true", help="keep the last of duplicate timestamps")
    p.add_argument("--date-format", help=DATE_FORMAT_HELP)
    p.add_argument("--replace", action="store_true", help="overwrite a dataset of the same name")
    p.add_argument("--label", help="store as <symbol>-<tf>-LABEL (keeps an existing dataset of the same name)")
    p.set_defaults(func=cmd_data_import)
    p = dsub.add_parser("rename", help="rename a dataset (refuses a name in use)")
    p.add_argument("old")
    p.add_argument("new", help="[exchange/]SYMBOL-tf[-label]; the exchange defaults to the old one's")
    p.set_defaults(func=cmd_data_rename)
    p = dsub.add_parser("delete", help="delete a dataset's files (not the synthetic sample)")
    p.add_argument("name")
    p.add_argument("--yes", action="store_true", help="really delete it")
    p.set_defaults(func=cmd_data_delete)
    p = dsub.add_parser("fetch", help="download candles (and funding rates) with ccxt (incremental)",
                        description="One download per symbol and timeframe; --symbol and --timeframe are "
                                    "repeatable and also take comma lists (--symbol BTC/USDT,ETH/USDT). A failed "
                                    "download prints one error line, the others still run; the exit status is 2 "
                                    "if any failed.")
    p.add_argument("--exchange", default="binance")
    p.add_argument("--symbol", action="append", required=True, metavar="SYMBOL",
                   help="e.g. BTC/USDT (repeatable, or a comma list)")
    p.add_argument("--timeframe", action="append", metavar="TF", help="e.g. 1h (repeatable, or a comma list; "
                                                                       "default 1h)")
    p.add_argument("--funding", action="store_true",
                   help="also download each symbol's funding-rate history to <exchange>/<SYMBOL>-funding.parquet "
                        "beside the candles; backtests on those candles then apply it (--no-funding to not)")
    p.add_argument("--since", help="start date (UTC) of a first download")
    p.add_argument("--until", help="end date (UTC)")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_data_fetch)
    p = dsub.add_parser("resample", help="resample to a coarser timeframe (complete bins only)")
    p.add_argument("source")
    p.add_argument("--to", required=True, help="target timeframe, e.g. 4h")
    p.add_argument("--out", help="output Parquet file (default: beside the source in the data root)")
    p.add_argument("--replace", action="store_true", help="overwrite a dataset of the target name (or the --out file)")
    p.set_defaults(func=cmd_data_resample)

    p = sub.add_parser("backtest", help="run one backtest")
    p.add_argument("--data", default="sample:BTC_USDT-1h", help="dataset name or file path")
    p.add_argument("--strategy", required=True)
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help="strategy param (repeatable)")
    p.add_argument("--timeframe", help="resample to this timeframe first")
    p.add_argument("--start")
    p.add_argument("--end")
    p.add_argument("--capital", type=float, help="initial capital" + SETTING_HELP % "engine.initial_capital")
    _add_engine_arguments(p)
    p.add_argument("--no-funding", action="store_true", help=NO_FUNDING_HELP)
    p.add_argument("--trades", type=_count, default=10, help="show the last N trades")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.add_argument("--with-series", action="store_true", help="include the equity series in --json")
    p.add_argument("--timings", action="store_true", help=TIMINGS_HELP)
    p.set_defaults(func=cmd_backtest)

    p = sub.add_parser("sweep", help="grid or Monte Carlo optimisation (results stored, resumable)")
    p.add_argument("--data", default="sample:BTC_USDT-1h", help="dataset name or file path")
    p.add_argument("--strategy", required=True)
    p.add_argument("--param", action="append", metavar="NAME=MIN:MAX:STEP|A,B|VALUE",
                   help="search range of a param (repeatable); others stay at their defaults")
    p.add_argument("--sampler", choices=("grid", "random", "lhs", "sobol", "adaptive"), default="grid")
    p.add_argument("--n", type=int, help="combos for the Monte Carlo samplers")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--objective", default="sharpe")
    p.add_argument("--minimize", action="store_true")
    p.add_argument("--min-trades", type=int, default=DEFAULT_MIN_TRADES,
                   help=f"fewest trades of a winner (default {DEFAULT_MIN_TRADES})")
    p.add_argument("--workers", type=int)
    p.add_argument("--executor", choices=("auto", "local", "inline", "dask", "gpu"),
                   help="where combos run" + SETTING_HELP % "sweep.executor")
    p.add_argument("--scheduler", default=None, help="Dask scheduler address (tcp://host:8786) for --executor dask; "
                                                     "without it a LocalCluster of --workers processes is started")
    p.add_argument("--run-id", help="name of the run; the same id resumes it")
    p.add_argument("--store", help="results directory (default: the paths.results_dir setting, ./results)")
    p.add_argument("--memory-budget", metavar="SIZE", help=MEMORY_BUDGET_HELP)
    p.add_argument("--timeframe")
    p.add_argument("--start")
    p.add_argument("--end")
    _add_engine_arguments(p)
    p.add_argument("--no-funding", action="store_true", help=NO_FUNDING_HELP)
    p.add_argument("--top", type=_count, default=10, help="show the N best combos")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("walkforward", help="walk-forward optimisation with its validation report and grade")
    p.add_argument("--data", default="sample:BTC_USDT-1h", help="dataset name or file path")
    p.add_argument("--strategy", required=True)
    p.add_argument("--param", action="append", metavar="NAME=MIN:MAX:STEP|A,B|VALUE",
                   help="search range of a param (repeatable); default: the strategy's declared ranges")
    for name in ("is", "oos", "step"):
        group = p.add_mutually_exclusive_group(required=name != "step")
        group.add_argument(f"--{name}-days", type=float, help=f"{name.upper()} window length in days")
        group.add_argument(f"--{name}-bars", type=int, help=f"{name.upper()} window length in bars")
    p.add_argument("--anchored", action="store_true", help="IS windows all start at the first bar")
    p.add_argument("--purge", type=int, default=0, metavar="BARS",
                   help="bars left out at the end of each IS window, before its OOS window (default 0)")
    p.add_argument("--embargo", type=int, default=0, metavar="BARS",
                   help="bars after each OOS window left out of later IS windows (default 0)")
    p.add_argument("--sampler", choices=("grid", "random", "lhs", "sobol"), default="random")
    p.add_argument("--n", type=int, default=1000, help="combos for the Monte Carlo samplers")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--objective", default="sharpe")
    p.add_argument("--minimize", action="store_true")
    p.add_argument("--min-trades", type=int, default=DEFAULT_MIN_TRADES,
                   help=f"fewest trades of a winner (default {DEFAULT_MIN_TRADES})")
    p.add_argument("--workers", type=int)
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--block", type=int, help="bootstrap block length in bars (default sqrt of the bar count)")
    p.add_argument("--S", type=int, default=16, help="PBO (CSCV) blocks")
    p.add_argument("--timeframe")
    p.add_argument("--start")
    p.add_argument("--end")
    p.add_argument("--save", help="also write the JSON report to this file")
    p.add_argument("--run-id", help="the id it is stored by in the results folder (default: wf-STRATEGY-time)")
    p.add_argument("--memory-budget", metavar="SIZE", help=MEMORY_BUDGET_HELP)
    _add_engine_arguments(p)
    p.add_argument("--no-funding", action="store_true", help=NO_FUNDING_HELP)
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.add_argument("--timings", action="store_true", help=TIMINGS_HELP)
    p.set_defaults(func=cmd_walkforward)

    p = sub.add_parser("research", help="walk-forward of strategies on several datasets: matrix and transfer")
    p.add_argument("--strategy", action="append", required=True, help="strategy (repeatable: one row each)")
    p.add_argument("--data", action="append", required=True, help="dataset name or file path (repeatable)")
    p.add_argument("--param", action="append", metavar="NAME=MIN:MAX:STEP|A,B|VALUE",
                   help="search range of a param, for every strategy (repeatable); default: declared ranges")
    for name in ("is", "oos", "step"):
        group = p.add_mutually_exclusive_group(required=name != "step")
        group.add_argument(f"--{name}-days", type=float, help=f"{name.upper()} window length in days")
        group.add_argument(f"--{name}-bars", type=int, help=f"{name.upper()} window length in bars")
    p.add_argument("--anchored", action="store_true", help="IS windows all start at the first bar")
    p.add_argument("--purge", type=int, default=0, metavar="BARS")
    p.add_argument("--embargo", type=int, default=0, metavar="BARS")
    p.add_argument("--sampler", choices=("grid", "random", "lhs", "sobol"), default="random")
    p.add_argument("--n", type=int, default=1000, help="combos for the Monte Carlo samplers")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--objective", default="sharpe")
    p.add_argument("--minimize", action="store_true")
    p.add_argument("--min-trades", type=int, default=DEFAULT_MIN_TRADES)
    p.add_argument("--workers", type=int)
    p.add_argument("--executor", choices=("inline", "local", "dask"), default="inline",
                   help="inline: cells one after another here; local: one process per cell; dask: one task per cell")
    p.add_argument("--scheduler", help="Dask scheduler address (default: a LocalCluster of --workers)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--S", type=int, default=16, help="PBO (CSCV) blocks")
    p.add_argument("--id", help="research id (default: research-<time>-<random>)")
    p.epilog = f"exit status {EXIT_CELL_FAILED} when a cell failed (it is named; the other cells are stored)"
    _add_engine_arguments(p)
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_research)

    p = sub.add_parser("portfolio", help="backtest several strategy:dataset runners sharing one capital")
    p.add_argument("--runner", action="append", metavar="STRATEGY:DATASET[:param=value,...]",
                   help="a runner (repeatable); params not given take the strategy's defaults")
    p.add_argument("--from-research", metavar="ID", help="add the runners a stored research job chose (one per cell)")
    p.add_argument("--research-strategy", help="with --from-research: only this strategy's cells")
    p.add_argument("--research-params", choices=RESEARCH_PARAM_CHOICES, default=DEFAULT_RESEARCH_PARAMS,
                   help="with --from-research: the last IS window's winner (default) or the whole-period one "
                        "(chosen with hindsight on all the data)")
    p.add_argument("--kept-only", action="store_true", help="with --from-research: only cells with a positive OOS")
    p.add_argument("--capital", type=float, help="capital shared by the runners" + SETTING_HELP % "engine.initial_capital")
    p.add_argument("--weights", metavar="W1,W2,...", help="capital weights, one per runner (default: equal)")
    p.add_argument("--margin-guard", type=float, metavar="FRACTION",
                   help="skip a new leg that would take the runners' total margin over this fraction of the "
                        "equity, e.g. 0.7 (default: off)")
    p.add_argument("--runner-cap", type=float, metavar="FRACTION",
                   help="the same for one runner's own margin, e.g. 0.25 (default: off)")
    p.add_argument("--kill-switch", type=float, metavar="FRACTION",
                   help="stop new entries when the equity falls this fraction below its peak within "
                        "--kill-window, e.g. 0.3 (default: off)")
    p.add_argument("--kill-window", default="24h", help="the kill switch's window (default 24h)")
    p.add_argument("--cooldown", default="24h", help="how long the kill switch holds entries (default 24h)")
    p.add_argument("--id", help="portfolio id, a new one (default: portfolio-<time>-<random>)")
    p.add_argument("--memory-budget", metavar="SIZE", help=MEMORY_BUDGET_HELP)
    _add_engine_arguments(p)
    p.add_argument("--no-funding", action="store_true", help=NO_FUNDING_HELP)
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_portfolio)

    p = sub.add_parser("validate", help="bootstrap, DSR, PBO, stability and grade of a stored sweep")
    p.add_argument("run_id")
    p.add_argument("--store")
    p.add_argument("--data", help="the sweep's data when it was not a named dataset")
    p.add_argument("--timeframe")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--block", type=int, help="bootstrap block length in bars (default sqrt of the bar count)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--S", type=int, default=16, help="PBO (CSCV) blocks")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_validate)

    runs = sub.add_parser("runs", help="stored optimisation runs")
    rsub = runs.add_subparsers(dest="runs_command", required=True)
    p = rsub.add_parser("list")
    p.add_argument("--store")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_runs_list)
    p = rsub.add_parser("show")
    p.add_argument("run_id")
    p.add_argument("--store")
    p.add_argument("--top", type=_count, default=10, help="show the N best combos")
    p.add_argument("--timings", action="store_true", help=TIMINGS_HELP + "; also for a stored walk-forward id")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_runs_show)
    p = rsub.add_parser("repair", help="quarantine damaged parts, rebuild a lost manifest, make a run resumable")
    p.add_argument("run_id")
    p.add_argument("--store")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_runs_repair)

    p = sub.add_parser("strategies", help="list strategies (built-in and your own) and their params")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_strategies)

    strategy = sub.add_parser("strategy", help="your own strategies: new (from a template), check")
    ssub = strategy.add_subparsers(dest="strategy_command", required=True)
    p = ssub.add_parser("new", help="write a new strategy file in the strategies folder (THREADX_STRATEGY_DIR)")
    p.add_argument("name", help="the strategy's name, also its file name (lower case, digits, _)")
    p.add_argument("--from", dest="from_builtin", metavar="BUILTIN", help="start from a copy of this built-in")
    p.add_argument("--dir", help="folder to write to (default: the strategies folder)")
    p.set_defaults(func=cmd_strategy_new)
    p = ssub.add_parser("check", help="look-ahead, signals, determinism, accounting, param roles and speed of a strategy")
    p.add_argument("strategy")
    p.add_argument("--data", default="sample:BTC_USDT-1h", help="dataset name or file path")
    p.add_argument("--timeframe", help="resample to this timeframe first")
    p.add_argument("--start")
    p.add_argument("--end")
    p.add_argument("--combos", type=int, default=4, help="param sets checked: the defaults and N-1 random ones")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--only", help="comma-separated checks to run (default: all)")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_strategy_check)

    cache = sub.add_parser("cache", help="indicator cache")
    csub = cache.add_subparsers(dest="cache_command", required=True)
    p = csub.add_parser("stats")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_cache_stats)
    p = csub.add_parser("clear")
    p.set_defaults(func=cmd_cache_clear)
    p = csub.add_parser("clean", help="remove shared-memory segments left by killed sweeps")
    p.add_argument("--dry-run", action="store_true", help="list them, remove nothing")
    p.set_defaults(func=cmd_cache_clean)

    p = sub.add_parser("bench", help="how fast this machine backtests and sweeps (a backtest, then n random combos)")
    p.add_argument("--data", default="sample:BTC_USDT-1h", help="dataset name or file path")
    p.add_argument("--strategy", default="bb_atr")
    p.add_argument("--n", type=_count, default=2_000, help="random combos of the strategy's declared space")
    p.add_argument("--workers", type=int)
    p.add_argument("--executor", choices=("auto", "local", "inline", "dask", "gpu"), default="auto")
    p.add_argument("--timeframe", help="resample to this timeframe first")
    p.add_argument("--start")
    p.add_argument("--end")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_bench)

    add_gpu_commands(sub, json_help=JSON_HELP)
    _add_loudness(sub)
    return parser


def _add_loudness(sub: Any) -> None:
    """``--quiet`` / ``--verbose`` after the command too (``threadx sweep ... -q``)."""
    for child in sub.choices.values():
        nested = [a for a in child._actions if isinstance(a, argparse._SubParsersAction)]
        if nested:
            for action in nested:
                _add_loudness(action)
            continue
        group = child.add_mutually_exclusive_group()
        group.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                           help="errors only on stderr (no progress bars)")
        group.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                           help="also print the log's records (runs, jobs, details) on stderr")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from threadx import logs
    from threadx.settings_file import flag_overrides, resolve

    logs.set_console("ERROR" if args.quiet else "DEBUG" if args.verbose else "WARNING")
    command = " ".join(part for part in (args.command, *(getattr(args, f"{args.command}_command", None) or "",))
                       if part)
    try:
        with flag_overrides(_flag_settings(args)):
            resolve()  # a bad settings file, variable or flag: one line before any work
            try:
                logs.logger().debug("threadx %s", command)
                with _json_only_on_stdout(bool(getattr(args, "json", False))):
                    return args.func(args)
            except BrokenPipeError:
                raise  # the reader stopped reading (`| head`): no failure of the command
            except (ThreadXError, OSError) as exc:  # OSError: a missing or unwritable path, a full disk
                logs.logger().error("threadx %s failed: %s", command, exc, extra=logs.FILE_ONLY)
                raise
    except ThreadXError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # as a command killed by SIGPIPE, silently (Python's documented way out)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        logs.reset()


if __name__ == "__main__":
    sys.exit(main())
