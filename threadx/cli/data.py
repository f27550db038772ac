"""``threadx data``: list, validate, import, rename, delete, fetch and resample datasets."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from threadx.cli.common import EXIT_BAD_INPUT, _print_json, _table, end_live_line, live_line
from threadx.errors import DataError, ParamError, ThreadXError


def cmd_data_list(args: argparse.Namespace) -> int:
    from threadx.data.catalog import list_datasets, without_empty_problem

    table = list_datasets()
    if args.json:
        _print_json(table.to_dict(orient="records"))
    elif table.empty:
        print("no datasets yet: run `threadx data fetch` or `threadx data import FILE`")
    else:
        shown = ("name", "timeframe", "first", "last", "bars", "quality", "verdict", "synthetic", "problem")
        table = without_empty_problem(table)
        cols = [c for c in shown if c in table]
        print(_table(table.to_dict(orient="records"), cols))
    return 0


def cmd_data_validate(args: argparse.Namespace) -> int:
    from threadx.data.catalog import resolve_dataset
    from threadx.data.io import check_ohlcv_file
    from threadx.data.timeframe import timeframe_seconds

    if args.timeframe is not None:
        timeframe_seconds(args.timeframe)  # an unknown one is the command's error, not a red report of the file
    path = resolve_dataset(args.source)
    _, report = check_ohlcv_file(path, args.timeframe, date_format=args.date_format, timezone=args.timezone)
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
        source = args.file if len(args.file) > 1 else args.file[0]
        df, target = import_ohlcv(source, args.exchange, args.symbol, args.timeframe, dedupe=args.dedupe,
                                  date_format=args.date_format, timezone=args.timezone, label=args.label,
                                  replace=args.replace)
    except DatasetExists as exc:
        print(f"error: {exc.describe()}; add --replace to overwrite it, or --label NAME to keep both "
              f"as {exc.name}-NAME", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"imported {len(df):,} bar{'s' if len(df) != 1 else ''} into {target}")
    for note in df.attrs.get("warnings") or []:  # (rows sorted, duplicates dropped: the stored dataset shows none)
        print(f"warning: {note}", file=sys.stderr)
    return 0


def cmd_data_rename(args: argparse.Namespace) -> int:
    """Rename a dataset; warn when the new name is another market's, and name the stored results
    that ran on it (found before the rename: they name the old one)."""
    from threadx.data.catalog import dataset_name, market_change, rename_dataset
    from threadx.results_using import used_by_note

    used = used_by_note(args.old, without=f"under its new name (rename it back to {args.old} for that)")
    target = rename_dataset(args.old, args.new)
    print(f"renamed {args.old} to {dataset_name(target)} ({target})")
    moved = market_change(args.old, dataset_name(target))
    if moved:
        print(f"warning: {moved}", file=sys.stderr)
    if used:
        print(f"note:{used}", file=sys.stderr)
    return 0


def cmd_data_delete(args: argparse.Namespace) -> int:
    from threadx.data.catalog import delete_dataset

    from threadx.results_using import used_by_note

    removed = delete_dataset(args.name, dry_run=True)  # unknown names and the sample refused first
    used = used_by_note(args.name)
    if not args.yes:
        print(f"error: deleting {args.name} ({', '.join(p.name for p in removed)}) cannot be undone.{used} "
              "Add --yes to delete it.", file=sys.stderr)
        return EXIT_BAD_INPUT
    removed = delete_dataset(args.name)
    print(f"deleted {args.name}: " + ", ".join(str(p) for p in removed))
    if used:
        print(f"note:{used}", file=sys.stderr)
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
            live_line(f"  {min(done / total, 1.0):6.1%}")

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
            end_live_line()
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
    from threadx.data.catalog import check_resampled_out, existing_dataset, resampled_path
    from threadx.data.io import load_resampled, write_ohlcv

    if args.out and Path(args.out).suffix.lower() != ".parquet":
        raise ParamError(f"--out {args.out}: resampled bars are written as Parquet; name the file *.parquet")
    df = load_resampled(args.source, args.to)
    name = df.attrs.get("name") or str(args.source)
    if args.out:
        target = Path(args.out).expanduser()
        if target.exists() and not args.replace:
            raise ParamError(f"{target} exists (it may be the source or another dataset); add --replace to overwrite "
                             "it, or choose another --out FILE")
        check_resampled_out(target, name, args.to)
    else:
        try:
            target = resampled_path(name, args.to)
        except DataError:
            raise ParamError(f"{args.source}: its name {name!r} is not a dataset's (exchange/BASE_QUOTE-timeframe), so "
                             f"the resampled dataset cannot be named after it: give --out FILE.parquet, or import "
                             f"the file first (threadx data import) and resample the dataset") from None
        taken = existing_dataset(target)
        if taken is not None and not args.replace:
            raise ParamError(f"{taken.describe()}; add --replace to overwrite it, or --out FILE")
    write_ohlcv(df, target)
    print(f"wrote {len(df):,} {args.to} bars to {target}")
    return 0
