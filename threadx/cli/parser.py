"""The ``threadx`` command's grammar: every subcommand, its flags and help, and the handler it calls."""
from __future__ import annotations

import argparse
from typing import Any, NoReturn

from threadx.cli.admin import cmd_app, cmd_bench, cmd_cache_clean, cmd_cache_clear, cmd_cache_stats, cmd_config_show
from threadx.cli.common import (
    DATE_FORMAT_HELP, EXIT_BAD_INPUT, EXIT_CELL_FAILED, HUMAN_OUTPUT_NOTE, JSON_HELP, MEMORY_BUDGET_HELP, NO_FUNDING_HELP,
    TIMEZONE_HELP, TIMINGS_HELP, _count, command_parser,
)
from threadx.cli.data import (
    cmd_data_delete, cmd_data_fetch, cmd_data_import, cmd_data_list, cmd_data_rename, cmd_data_resample,
    cmd_data_validate,
)
from threadx.cli.runs import cmd_backtest, cmd_runs_list, cmd_runs_repair, cmd_runs_show, cmd_sweep
from threadx.cli.strategies import cmd_strategies, cmd_strategy_check, cmd_strategy_new
from threadx.cli.validation import cmd_portfolio, cmd_research, cmd_validate, cmd_walkforward
from threadx.config import (DEFAULT_BOOTSTRAP, DEFAULT_MIN_TRADES, DEFAULT_RESEARCH_PARAMS, DEFAULT_SEED,
                            DEFAULT_SWEEP_SAMPLES, DEFAULT_WF_SAMPLES, RESEARCH_PARAM_CHOICES)
from threadx.gpu.cli import add_gpu_commands


SETTING_HELP = " (default: the setting %s, see `threadx config show`)"


def _add_selection_arguments(p: argparse.ArgumentParser, samplers: tuple[str, ...], sampler: str,
                             n: int) -> None:
    """How a search draws its combos and picks its winner: the sampler, the combo count of the
    Monte Carlo ones, the seed, the objective and its direction, the fewest trades of a winner."""
    p.add_argument("--sampler", choices=samplers, default=sampler)
    p.add_argument("--n", type=int, default=n, help=f"combos for the Monte Carlo samplers (default {n:,})")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--objective", default="sharpe")
    p.add_argument("--minimize", action="store_true")
    p.add_argument("--min-trades", type=int, default=DEFAULT_MIN_TRADES,
                   help=f"fewest trades of a winner (default {DEFAULT_MIN_TRADES})")


def _add_engine_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fee-bps", type=float, help="fee per fill in bps" + SETTING_HELP % "engine.fee_bps")
    p.add_argument("--slippage-bps", type=float, help="slippage per fill in bps" + SETTING_HELP % "engine.slippage_bps")
    p.add_argument("--fill", choices=("next_open", "close"), help="fill price" + SETTING_HELP % "engine.fill")
    p.add_argument("--sizing", choices=("all_in", "fraction", "risk"))
    p.add_argument("--leverage", type=float)
    p.add_argument("--min-notional", type=float, metavar="QUOTE",
                   help="skip entries whose order value is below this (quote currency; 0 = off); skipped "
                        "entries count in n_skipped" + SETTING_HELP % "engine.min_notional")


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose errors are one line (its usage block, 15 lines for sweep, came
    first and pushed the error out of sight), as every other error of the command."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"error: {self.prog}: {message} (see {self.prog} --help)\n")

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        """argparse's, but a flag no parser knows is refused by the subcommand's parser (its
        --help lists that command's flags: ``threadx --help`` does not)."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            command_parser(self, parsed).error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="threadx", description="ThreadX research workstation",
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
    p.add_argument("--timezone", metavar="ZONE", help=TIMEZONE_HELP)
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_data_validate)
    p = dsub.add_parser("import", help="copy a Parquet/Feather/CSV/JSON file into the data root")
    p.add_argument("file", nargs="+", help="a data file; several (monthly dumps) make one dataset, named from the "
                                           "first without the month its name carries")
    p.add_argument("--exchange", default="local")
    p.add_argument("--symbol")
    p.add_argument("--timeframe", help="the bars' timeframe when the data cannot tell (a different one is refused)")
    p.add_argument("--dedupe", action="store_true", help="keep the last of duplicate timestamps")
    p.add_argument("--date-format", help=DATE_FORMAT_HELP)
    p.add_argument("--timezone", metavar="ZONE", help=TIMEZONE_HELP)
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
    _add_span_arguments(p)
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
    _add_selection_arguments(p, ("grid", "random", "lhs", "sobol", "adaptive"), "grid", DEFAULT_SWEEP_SAMPLES)
    p.add_argument("--workers", type=int)
    p.add_argument("--executor", choices=("auto", "local", "inline", "dask", "gpu"),
                   help="where combos run" + SETTING_HELP % "sweep.executor")
    p.add_argument("--scheduler", default=None, help="Dask scheduler address (tcp://host:8786) for --executor dask; "
                                                     "without it a LocalCluster of --workers processes is started")
    p.add_argument("--run-id", help="name of the run; the same id resumes it")
    p.add_argument("--store", help="results directory (default: the paths.results_dir setting, ./results)")
    p.add_argument("--memory-budget", metavar="SIZE", help=MEMORY_BUDGET_HELP)
    p.add_argument("--timeframe")
    _add_span_arguments(p)
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
    _add_window_arguments(p)
    _add_selection_arguments(p, ("grid", "random", "lhs", "sobol"), "random", DEFAULT_WF_SAMPLES)
    p.add_argument("--workers", type=int)
    p.add_argument("--bootstrap", type=int, default=DEFAULT_BOOTSTRAP, help="bootstrap resamples (at least 100)")
    p.add_argument("--block", type=int, help="bootstrap block length in bars (default sqrt of the bar count, "
                   "at most a tenth of it)")
    p.add_argument("--S", type=int, default=16, help="PBO (CSCV) blocks")
    p.add_argument("--timeframe")
    _add_span_arguments(p)
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
    _add_window_arguments(p)
    _add_selection_arguments(p, ("grid", "random", "lhs", "sobol"), "random", DEFAULT_WF_SAMPLES)
    p.add_argument("--workers", type=int)
    p.add_argument("--executor", choices=("inline", "local", "dask"), default="inline",
                   help="inline: cells one after another here; local: one process per cell; dask: one task per cell")
    p.add_argument("--scheduler", help="Dask scheduler address (default: a LocalCluster of --workers)")
    p.add_argument("--bootstrap", type=int, default=DEFAULT_BOOTSTRAP, help="bootstrap resamples (at least 100)")
    p.add_argument("--S", type=int, default=16, help="PBO (CSCV) blocks")
    p.add_argument("--id", help="research id (default: research-<time>-<random>)")
    p.epilog = (f"exit status {EXIT_CELL_FAILED} when a cell failed as it ran (it is named; the other cells are "
                "stored); 2 when it is refused (an argument or a dataset it cannot use) or every cell failed")
    _add_engine_arguments(p)
    p.add_argument("--no-funding", action="store_true",
                   help="leave out the funding files beside the datasets (default: each dataset runs with its own)")
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
    p.add_argument("--capital", type=float,
                   help="capital shared by the runners" + SETTING_HELP % "engine.initial_capital")
    p.add_argument("--weights", metavar="W1,W2,...", help="capital weights, one per runner (default: equal)")
    p.add_argument("--margin-guard", type=float, metavar="FRACTION",
                   help="skip a new leg that would take the runners' total margin over this fraction of the "
                        "equity, e.g. 0.7 (default: off; 0 is off too)")
    p.add_argument("--runner-cap", type=float, metavar="FRACTION",
                   help="the same for one runner's own margin, e.g. 0.25 (default: off; 0 is off too)")
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
    p.add_argument("--bootstrap", type=int, default=DEFAULT_BOOTSTRAP, help="bootstrap resamples (at least 100)")
    p.add_argument("--block", type=int, help="bootstrap block length in bars (default sqrt of the bar count, "
                   "at most a tenth of it)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--S", type=int, default=16, help="PBO (CSCV) blocks")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_validate)

    runs = sub.add_parser("runs", help="stored optimisation runs and walk-forwards")
    rsub = runs.add_subparsers(dest="runs_command", required=True)
    p = rsub.add_parser("list")
    p.add_argument("--store")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_runs_list)
    p = rsub.add_parser("show")
    p.add_argument("run_id")
    p.add_argument("--store")
    p.add_argument("--top", type=_count, default=10, help="show the N best combos")
    p.add_argument("--timings", action="store_true", help=TIMINGS_HELP)
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
    p = ssub.add_parser("check",
                        help="look-ahead, signals, determinism, accounting, param roles and speed of a strategy")
    p.add_argument("strategy")
    p.add_argument("--data", default="sample:BTC_USDT-1h", help="dataset name or file path")
    p.add_argument("--timeframe", help="resample to this timeframe first")
    _add_span_arguments(p)
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
    p.add_argument("--n", type=_count, default=DEFAULT_SWEEP_SAMPLES,
                   help="random combos of the strategy's declared space")
    p.add_argument("--workers", type=int)
    p.add_argument("--executor", choices=("auto", "local", "inline", "dask", "gpu"), default="auto")
    p.add_argument("--timeframe", help="resample to this timeframe first")
    _add_span_arguments(p)
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


def _add_window_arguments(p: argparse.ArgumentParser) -> None:
    """A walk-forward's windows: IS and OOS lengths (days or bars), their step, anchoring, purge, embargo."""
    for name, what in (("is", "IS window length"), ("oos", "OOS window length"),
                       ("step", "how far each window moves on (default: the OOS length, so OOS windows tile)")):
        group = p.add_mutually_exclusive_group(required=name != "step")
        group.add_argument(f"--{name}-days", type=float, help=f"{what}, in days")
        group.add_argument(f"--{name}-bars", type=int, help=f"{what}, in bars")
    p.add_argument("--anchored", action="store_true", help="IS windows all start at the first bar")
    p.add_argument("--purge", type=int, default=0, metavar="BARS",
                   help="bars left out at the end of each IS window, before its OOS window (default 0)")
    p.add_argument("--embargo", type=int, default=0, metavar="BARS",
                   help="bars after each OOS window left out of later IS windows (default 0)")


def _add_span_arguments(p: argparse.ArgumentParser) -> None:
    """--start / --end: the part of the data used (UTC; the end excluded)."""
    p.add_argument("--start", metavar="WHEN", help="first bar used: a UTC date or time, e.g. 2024-01-31T12:00 "
                                                   "(default: the data's first)")
    p.add_argument("--end", metavar="WHEN", help="bars from this UTC date or time on are left out (exclusive; "
                                                 "default: up to the data's last)")
