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
