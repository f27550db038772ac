"""`python -m threadx.warmup` (run by `make app`) compiles every built-in strategy's kernels."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import threadx
from threadx.warmup import _cache_is_warm, warm_kernels

ROOT = Path(__file__).resolve().parents[1]


def test_every_builtin_strategy_is_warmed_and_cached():
    builtin = sorted(n for n, s in threadx.strategies().items()
                     if not n.startswith("test_") and s.signals.__module__.startswith("threadx."))
    assert sorted(warm_kernels()) == builtin
    assert _cache_is_warm()


def test_the_warm_up_reads_no_strategies_folder_file(strategy_dir):
    """`make app` warms up before the server starts: a folder file crashing as it loads ended it
    there, while the server tries such a file in a process of its own (threadx.ui.user_code)."""
    (strategy_dir / "crashes_at_load.py").write_text("import ctypes\nctypes.string_at(0)\n")
    done = subprocess.run([sys.executable, "-m", "threadx.warmup"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Kernels ready" in done.stdout


def test_make_app_warms_kernels_before_the_server_starts():
    out = subprocess.run(["make", "-s", "-n", "app", f"PY={sys.executable}"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    warm = next(i for i, line in enumerate(out) if "threadx.warmup" in line)
    serve = next(i for i, line in enumerate(out) if "threadx.cli app" in line)  # starts streamlit
    assert warm < serve


def test_the_server_warms_kernels_once_in_the_background():
    from threadx import warmup

    warmup.warm_in_background()
    thread = warmup._background["thread"]
    assert thread is not None and thread.daemon
    warmup.warm_in_background()  # again (every script run of app.py calls it): the same thread
    assert warmup._background["thread"] is thread
    assert warmup.warming_note() in (None, "Loading kernels…")  # the cache is warm here
    thread.join(120)
    assert warmup.warming_note() is None


_NO_NEW_SIGNATURES = r'''
import sys, numpy as np, threadx
from threadx.warmup import warm_kernels
from threadx.engine import kernel, portfolio_loop
from threadx.strategy import signal_kernels
from threadx.data.io import write_ohlcv
from threadx.data.synthetic import generate_synthetic

warmed = warm_kernels()
kernels = [kernel.run_full, kernel.run_fast, kernel.run_fast_blocks, kernel.run_plan, portfolio_loop.run_portfolio,
           *(f for f in vars(signal_kernels).values() if hasattr(f, "signatures"))]
before = [len(f.signatures) for f in kernels]
write_ohlcv(generate_synthetic("ABC_USDT", days=120, seed=5), sys.argv[1])
df = threadx.load_ohlcv(sys.argv[1])  # read from Parquet: read-only arrays, as a user's datasets
assert not df["close"].to_numpy().flags.writeable
for name in warmed:
    threadx.backtest(df, name)
    wf = threadx.walk_forward(df, name, None, sampler="random", n=3, is_days=30, oos_days=15, workers=1)
grown = [f.__name__ for f, n in zip(kernels, before) if len(f.signatures) != n]
print("grown:", grown)
sys.exit(1 if grown else 0)
'''


def test_a_first_walk_forward_on_a_stored_dataset_compiles_nothing_the_warm_up_did_not(tmp_path):
    """A walk-forward handed the kernel a writable param vector, and the warm-up never ran the
    walk-forward's kernels (run_fast, run_fast_blocks) on the bank's read-only lines: the first
    walk-forward of a fresh install compiled for 70 s in its report stage."""
    done = subprocess.run([sys.executable, "-c", _NO_NEW_SIGNATURES, str(tmp_path / "ABC_USDT-1h.parquet")],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def test_a_cold_warm_up_says_which_strategy_it_is_at():
    """A first start compiled for four minutes under one line ("Compiling kernels ...")."""
    seen = []
    warmed = warm_kernels(lambda name, k, n: seen.append((name, k, n)))
    assert [k for _, k, _ in seen] == list(range(len(seen))) and {n for _, _, n in seen} == {len(seen)}
    assert set(warmed) <= {name for name, _, _ in seen} and len(seen) >= 9
