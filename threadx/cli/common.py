"""The command line's shared parts: exit statuses, help texts, value parsing, tables and JSON output."""
from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from threadx.errors import ParamError, ThreadXError, whole
from threadx.units import counted, format_eta, format_metric


EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 3  # a sweep whose workers were lost part way (RunInterrupted): the same command resumes
EXIT_CHECK_FAILED = 1  # `strategy check`: a check failed
EXIT_CELL_FAILED = 1  # `research`: a cell's walk-forward failed (the others are stored)
DATE_FORMAT_HELP = "strftime format of date text, e.g. %%d/%%m/%%Y (needed when dates read both day- and month-first)"
TIMEZONE_HELP = ("time zone of times written without one, an IANA name such as Europe/Berlin (default: UTC; "
                 "epoch numbers and times with an offset are read as written)")
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
    seen: set[str] = set()
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ThreadXError(f"--param expects {form}, got {item!r}")
        if name.strip() in seen:  # (the last one was kept: a sweep's range silently became one value)
            raise ThreadXError(f"--param {name.strip()} is given twice; give it once")
        seen.add(name.strip())
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
    from threadx.data.io import as_utc

    _check_date(args.start, "--start")
    _check_date(args.end, "--end")
    if args.start is not None and args.end is not None and as_utc(args.start) >= as_utc(args.end):
        raise ThreadXError(f"--start {args.start} is not before --end {args.end}: no bar is in that range")
    df = threadx.load_ohlcv(args.data, timeframe=args.timeframe, start=args.start, end=args.end)
    if Path(str(args.data)).expanduser().is_file() and not getattr(args, "quiet", False):
        # a file read as it is (a dataset's notes were said at its import): rows sorted, times read as UTC, gaps
        for note in df.attrs.get("warnings") or []:
            if note not in (df.attrs.get("logged") or []):  # (the log said it: the low quality line was twice)
                print(f"warning: {args.data}: {note}", file=sys.stderr)
    return df


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
    """``obj`` as strict JSON (a NaN or Infinity token breaks most parsers): NaN and NaT as null,
    +-inf as "inf" / "-inf", times in ISO format, numpy scalars as numbers."""
    def default(value: Any) -> Any:
        try:
            if value != value:  # a missing time (NaT, whose isoformat() is "NaT"): null
                return None
        except (TypeError, ValueError):  # (an array: no one truth value)
            pass
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


def _print_timings(timings: dict | None) -> None:
    """Where the run's time went: stages (seconds, %, a bar), workers' stages and the hint."""
    from threadx.timings import text_lines

    print("\ntimings:")
    for line in text_lines(timings):
        print(line)


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


_LIVE = [False]  # a progress line is drawn on stderr and not ended yet


def live_line(text: str) -> None:
    """Redraw the progress line on stderr: on a terminal only (a file or a pipe got every redraw,
    721 of them for one strategy check)."""
    if sys.stderr.isatty():
        print(f"\r{text}", end="", file=sys.stderr, flush=True)
        _LIVE[0] = True


def end_live_line() -> None:
    """End a drawn progress line, so that what follows starts a line of its own."""
    if _LIVE[0]:
        print(file=sys.stderr)
        _LIVE[0] = False


def _progress_printer(args: argparse.Namespace, what: str):
    """A progress callback drawing one bar on stderr (silent with --json)."""
    announced = []

    def progress(p) -> None:
        if args.json or getattr(args, "quiet", False):
            return
        if not announced:
            announced.append(True)
            print(f"{args.strategy}: {counted(p.total, 'combo')} to run ({what})", file=sys.stderr)
        bar = "#" * int(30 * p.done / max(p.total, 1))
        live_line(f"  [{bar:<30}] {p.done:,}/{p.total:,}  {p.rate:,.0f}/s  {format_eta(p.eta_s)}  failed {p.failed}")

    return progress


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


def command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the (sub)command that ``args`` were parsed by (``threadx data fetch``'s
    for its flags); ``parser`` itself when it has no subcommand."""
    while True:
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        chosen = getattr(args, sub.dest, None) if sub is not None else None
        if chosen not in (sub.choices if sub is not None else {}):
            return parser
        parser = sub.choices[chosen]


def flags_given(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """The option strings of ``parser`` that ``argv`` gives, written whole (``--n=5`` too) or
    as the unique prefix argparse takes for one (``--min-t`` for ``--min-trades``)."""
    options = parser._option_string_actions
    given = set()
    for arg in argv:
        token = arg.partition("=")[0]
        if token in options:
            given.add(token)
        elif token.startswith("--") and len(token) > 2:
            matches = [option for option in options if option.startswith(token)]
            if len(matches) == 1:
                given.add(matches[0])
    return given


def name_the_flag(text: str, parser: argparse.ArgumentParser, args: argparse.Namespace, argv: Sequence[str]) -> str:
    """An error ``text`` that opens with a Python name (``min_trades must be ...``), opened
    with the flag that the user gave for it (``--min-trades must be ...``): the rules are
    checked once, in the library, where the value has no flag name. Left as it is when a
    ``--param NAME=...`` (or a runner's ``NAME=...``) of that name was given: the value may be that one.

    >>> p = argparse.ArgumentParser(); _ = p.add_argument("--min-trades", type=int)
    >>> name_the_flag("min_trades must be >= 0, got -1", p, p.parse_args(["--min-t", "-1"]), ["--min-t", "-1"])
    '--min-trades must be >= 0, got -1'
    """
    name, space, rest = text.partition(" ")
    assigned = re.compile(rf"(^|[:,]){re.escape(name)}=")  # --param NAME=V, --runner S:D:NAME=V,...
    if not space or not name.isidentifier() or any(assigned.search(arg) for arg in argv if not arg.startswith("-")):
        return text
    command = command_parser(parser, args)
    flag = next((option for option in sorted(flags_given(command, argv))
                 if command._option_string_actions[option].dest == name), None)
    return f"{flag} {rest}" if flag else text


_MONTE_CARLO = "a Monte Carlo --sampler (random, lhs, sobol, adaptive)"
# (command, flag, what it needs, whether the parsed args have that): a flag that means something only
# beside another was accepted alone and did nothing, unsaid
COMPANIONS: tuple[tuple[str, str, str, Callable[[argparse.Namespace], bool]], ...] = (
    ("backtest", "--with-series", "--json", lambda a: a.json),
    ("portfolio", "--research-strategy", "--from-research", lambda a: bool(a.from_research)),
    ("portfolio", "--research-params", "--from-research", lambda a: bool(a.from_research)),
    ("portfolio", "--kept-only", "--from-research", lambda a: bool(a.from_research)),
    ("portfolio", "--kill-window", "a --kill-switch above 0", lambda a: bool(a.kill_switch)),
    ("portfolio", "--cooldown", "a --kill-switch above 0", lambda a: bool(a.kill_switch)),
    ("sweep", "--n", _MONTE_CARLO, lambda a: a.sampler != "grid"),
    ("walkforward", "--n", _MONTE_CARLO, lambda a: a.sampler != "grid"),
    ("research", "--n", _MONTE_CARLO, lambda a: a.sampler != "grid"),
    ("research", "--scheduler", "--executor dask", lambda a: a.executor == "dask"),
)


def check_companions(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: Sequence[str]) -> None:
    """ThreadXError naming the first flag of :data:`COMPANIONS` given (:func:`flags_given`,
    whatever its value) without the flag or choice it needs."""
    given = flags_given(command_parser(parser, args), argv)
    for command, flag, needs, has_it in COMPANIONS:
        if command == args.command and flag in given and not has_it(args):
            raise ThreadXError(f"{flag} only applies with {needs}: add that, or leave {flag} out")


def interrupted_status(exc: KeyboardInterrupt) -> int:
    """The exit status of a command stopped by ``exc``: 143 for a SIGTERM (a sweep turns it into
    SweepTerminated, to store what finished), 130 for Ctrl-C, as the shell's conventions say."""
    import signal

    from threadx.optimize.runner import SweepTerminated

    return 128 + (signal.SIGTERM if isinstance(exc, SweepTerminated) else signal.SIGINT)
