"""The ``threadx`` command: data, backtest, sweep, runs, walkforward, research, portfolio, validate,
strategies, cache, gpu.

Human tables by default, each number in its unit (:mod:`threadx.units`: fractions as %, counts
as whole numbers, bytes as KiB/MiB/GiB); ``--json`` for machines, with the raw values
(fractions stay fractions). Bad input exits with status 2 and one line on stderr
(``error: ...``), never a traceback.

One module per group of commands (:mod:`~threadx.cli.data`, :mod:`~threadx.cli.strategies`,
:mod:`~threadx.cli.runs`, :mod:`~threadx.cli.validation`, :mod:`~threadx.cli.admin`), their
grammar in :mod:`~threadx.cli.parser` and what they share in :mod:`~threadx.cli.common`.
"""
from __future__ import annotations

import os
import sys
from typing import Sequence

from threadx.cli.common import (EXIT_BAD_INPUT, EXIT_INTERRUPTED, _flag_settings, _json_only_on_stdout,
                                check_companions, interrupted_status, name_the_flag)
from threadx.cli.parser import build_parser
from threadx.errors import ThreadXError
from threadx.optimize.outcome import RunInterrupted


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    import faulthandler

    if not faulthandler.is_enabled():  # a strategies-folder file crashing the command names its line
        faulthandler.enable()
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    from threadx import logs
    from threadx.settings_file import flag_overrides, resolve, unknown_variables

    logs.set_console("ERROR" if args.quiet else "DEBUG" if args.verbose else "WARNING")
    command = " ".join(part for part in (args.command, *(getattr(args, f"{args.command}_command", None) or "",))
                       if part)
    try:
        with flag_overrides(_flag_settings(args)):
            check_companions(parser, args, argv)
            resolve()  # a bad settings file, variable or flag: one line before any work
            for line in unknown_variables():  # a misspelt variable left its default in force, unsaid
                logs.logger().warning(line)
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
        print(f"error: {name_the_flag(str(exc), parser, args, argv)}", file=sys.stderr)
        # (workers lost part way: what finished is stored and the same command resumes; it read as bad input)
        return EXIT_INTERRUPTED if isinstance(exc, RunInterrupted) else EXIT_BAD_INPUT
    except BrokenPipeError:  # as a command killed by SIGPIPE, silently (Python's documented way out)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as stopped:
        print("interrupted", file=sys.stderr)
        return interrupted_status(stopped)
    finally:
        logs.reset()
