"""The kernel reads only inside its arrays, whichever exit rules and lines it is given.

Compiled, an out-of-bounds read is silent (numba checks no bounds: it reads whatever memory
follows, or faults). So the bar loop runs here as plain Python (``NUMBA_DISABLE_JIT=1``, in
a subprocess: numba reads it at import), where numpy raises IndexError on any read past an
array's end (a negative index still wraps around, as in numpy): above all the one-slot
placeholder that stands for a line the rules do not need (``inputs.UNUSED_LINE``).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import numpy as np
from threadx.data.bars import Bars
from threadx.engine import kernel
from threadx.engine import layout as L
from threadx.engine.inputs import EngineOptions, kernel_args
from threadx.strategy.base import ExitRules, Levels

n = 240
rng = np.random.default_rng(7)
c = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
o = np.r_[c[0], c[:-1]]
h = np.maximum(o, c) * 1.004
l = np.minimum(o, c) * 0.996
bars = Bars(o, h, l, c, np.ones(n), np.arange(n) * 3_600_000_000_000, "1h")
sig = np.zeros(n, np.uint8)
sig[5::23] = L.SIG_ENTER_LONG
sig[16::23] = L.SIG_EXIT_LONG
sig[11::29] |= L.SIG_ENTER_SHORT
sig[20::29] |= L.SIG_EXIT_SHORT
no_lines = {
    "trail_pct": ExitRules(trail="pct", trail_pct=0.01),
    "trail_pct_stop_risk": ExitRules(trail="pct", trail_pct=0.01, stop_pct=0.02, sizing="risk",
                                     risk_per_trade=0.01),
    "stop_target_hold": ExitRules(stop_pct=0.01, tp_pct=0.015, max_hold_bars=4, spacing_bars=2),
    "legs_reduce_partial": ExitRules(max_legs=3, reduce_fraction=0.5, partial_tp_pct=0.01),
    "fraction_leverage": ExitRules(sizing="fraction", fraction=0.5, leverage=5.0, stop_pct=0.01),
}
for name, rules in no_lines.items():
    for fill in ("next_open", "close"):
        opts = EngineOptions(fill=fill, fee_bps=10.0).validated()
        m, trades, equity = kernel.run_full(*kernel_args(bars, sig, Levels(), rules, opts, None))
        assert m[L.METRIC_NAMES.index("n_trades")] > 0, name
        print("ok", name, fill)
"""


def test_the_bar_loop_reads_no_placeholder_line_past_its_end():
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("ok ") == 10
