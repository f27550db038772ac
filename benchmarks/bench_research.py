"""Research job against three separate walk-forwards, on the real 1h files (BTC, ETH, SOL).

Usage: python benchmarks/bench_research.py [--n 100] [--repeat 2] [--workers N] [DATA_DIR]

DATA_DIR (default ``../shared/data/binance`` beside the repo) holds ``{BTC,ETH,SOL}_USDT-1h.parquet``.
For bb_atr and grid_atr (``--n`` random combos of the declared space, IS 180 days, OOS 60
days, default seed), measured in this script, warm (numba compiled first), best of ``--repeat``:

- separate: per file, ``load_ohlcv`` + ``walk_forward`` + ``validate_walk_forward`` + storing it,
  each with a fresh indicator bank on an empty cache folder (what three ``threadx walkforward``
  runs do, without the process starts);
- research: ``research([strategy], three files)`` inline with one fresh bank (cells stored,
  plus the 9 transfer backtests and the research JSON).

The research job's cells equal the separate walk-forwards (tests/test_research.py), so the
difference is the sharing (one bank, the data loaded once) and the transfer backtests.

Then the same from the command line, what a user types: three ``threadx walkforward`` runs
against one ``threadx research`` run (each a fresh process: interpreter start, imports, the
kernels loaded from numba's disk cache, worker start-up; each with its own empty indicator
cache and results folder), best of ``--repeat``, interleaved. ``--no-cli`` leaves it out.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ASSETS = ("BTC", "ETH", "SOL")
WINDOWS = {"is_days": 180, "oos_days": 60}


def separate(paths: list[Path], strategy: str, n: int, workers: int | None, tmp: Path) -> float:
    import threadx
    from threadx.indicators.bank import IndicatorBank
    from threadx.validation.report import validate_walk_forward
    from threadx.validation.storage import save_walk_forward

    started = time.perf_counter()
    for k, path in enumerate(paths):
        bank = IndicatorBank(cache_dir=tmp / f"cache-sep-{k}")
        df = threadx.load_ohlcv(path)
        wf = threadx.walk_forward(df, strategy, None, n=n, workers=workers, bank=bank, **WINDOWS)
        report = validate_walk_forward(wf)
        save_walk_forward(f"sep-{strategy}-{k}", wf, report, tmp / "results")
    return time.perf_counter() - started


def joined(paths: list[Path], strategy: str, n: int, workers: int | None, tmp: Path,
           run: int) -> tuple[float, float]:
    """(the research job's seconds, those of its transfer backtests, which separate walk-forwards do not do)."""
    from threadx.indicators.bank import IndicatorBank
    from threadx.validation.research import research

    started = time.perf_counter()
    result = research(strategy, [str(p) for p in paths], n=n, workers=workers, results_dir=tmp / "results",
                      research_id=f"bench-{strategy}-{run}", bank=IndicatorBank(cache_dir=tmp / f"cache-res-{run}"),
                      **WINDOWS)
    return time.perf_counter() - started, result.meta["transfer_s"]


def cli_seconds(argv: list[str], tmp: Path) -> float:
    """Wall time of one ``threadx`` command in a fresh process, with its own cache and results."""
    import os
    import subprocess

    env = dict(os.environ, THREADX_RESULTS_DIR=str(tmp / "results"), THREADX_CACHE_DIR=str(tmp / "cache"),
               PYTHONPATH=str(ROOT))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "threadx.cli", *argv, "--json"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def cli_pair(paths: list[Path], strategy: str, n: int, workers: int | None, tmp: Path) -> tuple[float, float]:
    """(three ``threadx walkforward`` runs, one ``threadx research`` run), in seconds."""
    common = ["--strategy", strategy, "--n", str(n), "--is-days", str(WINDOWS["is_days"]),
              "--oos-days", str(WINDOWS["oos_days"]), *(["--workers", str(workers)] if workers else [])]
    sep = sum(cli_seconds(["walkforward", "--data", str(p), *common], tmp / f"wf{k}") for k, p in enumerate(paths))
    res = cli_seconds(["research", *[a for p in paths for a in ("--data", str(p))], *common], tmp / "research")
    return sep, res


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", nargs="?", default=str(ROOT.parent / "shared" / "data" / "binance"))
    parser.add_argument("--n", type=int, default=100, help="random combos of the declared space")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--no-cli", action="store_true", help="leave out the command-line comparison")
    args = parser.parse_args()
    paths = [Path(args.data_dir) / f"{a}_USDT-1h.parquet" for a in ASSETS]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"missing: {', '.join(missing)}", file=sys.stderr)
        return 2
    import logging

    logging.getLogger("threadx").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        for strategy in ("bb_atr", "grid_atr"):
            separate(paths[:1], strategy, 4, args.workers, tmp / "warm")  # numba compiled, caches loaded
            sep, res = [], []
            for run in range(args.repeat):  # interleaved
                sep.append(separate(paths, strategy, args.n, args.workers, tmp / f"s{run}"))
                res.append(joined(paths, strategy, args.n, args.workers, tmp / f"r{run}", run))
            best, transfer = min(res)
            print(f"{strategy}: {args.n} combos x 3 files (IS 180 d, OOS 60 d): research job {best:.2f} s "
                  f"(of which its 9 transfer backtests {transfer:.2f} s), three separate walk-forwards "
                  f"{min(sep):.2f} s (best of {args.repeat}; research/separate {best / min(sep):.2f}, "
                  f"the cells alone {(best - transfer) / min(sep):.2f})", flush=True)
            if args.no_cli:
                continue
            pairs = [cli_pair(paths, strategy, args.n, args.workers, tmp / f"cli{run}-{strategy}")
                     for run in range(args.repeat)]
            sep_cli, res_cli = min(p[0] for p in pairs), min(p[1] for p in pairs)
            print(f"{strategy} from the command line: threadx research {res_cli:.2f} s, three threadx walkforward "
                  f"{sep_cli:.2f} s (best of {args.repeat}; research/separate {res_cli / sep_cli:.2f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
