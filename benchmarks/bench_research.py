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


def joined(paths: list[Path], strategy: str, n: int, workers: int | None, tmp: Path, run: int) -> float:
    from threadx.indicators.bank import IndicatorBank
    from threadx.validation.research import research

    started = time.perf_counter()
    research(strategy, [str(p) for p in paths], n=n, workers=workers, results_dir=tmp / "results",
             research_id=f"bench-{strategy}-{run}", bank=IndicatorBank(cache_dir=tmp / f"cache-res-{run}"),
             **WINDOWS)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", nargs="?", default=str(ROOT.parent / "shared" / "data" / "binance"))
    parser.add_argument("--n", type=int, default=100, help="random combos of the declared space")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workers", type=int)
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
            print(f"{strategy}: {args.n} combos x 3 files (IS 180 d, OOS 60 d): research job {min(res):.2f} s, "
                  f"three separate walk-forwards {min(sep):.2f} s (best of {args.repeat}; "
                  f"research/separate {min(res) / min(sep):.2f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
