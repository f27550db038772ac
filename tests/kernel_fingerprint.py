"""Kernel fingerprint: record, then compare, every number the engine gives on random combos.

A refactor of the kernel, the evaluator or the sweep plan must keep results bit-identical.
``record`` runs, on one candles file, every registered built-in strategy under three engine
option variants (default; close fill with slippage; funding, leverage 3 and fraction
sizing) over 150 random combos of its declared ranges: the fast metrics and 8-block
moments through ``Evaluator.evaluate`` (the sweep path), 60 combos without blocks, and the
full-mode metrics, trades and equity of 10 combos (``kernel.run_full``). ``compare`` checks
two recordings with ``==`` (NaN equal to NaN) and exits 1 on any difference; columns added
at the end since the first recording (metrics, trade columns) and arrays of strategies added
since are left out.

    PYTHONPATH=. python tests/kernel_fingerprint.py record before.npz ../shared/data/binance/BTC_USDT-1h.parquet
    ... change the engine ...
    PYTHONPATH=. python tests/kernel_fingerprint.py record after.npz ../shared/data/binance/BTC_USDT-1h.parquet
    PYTHONPATH=. python tests/kernel_fingerprint.py compare before.npz after.npz
"""
from __future__ import annotations

import sys

import numpy as np

VARIANTS = {"default": {}, "close_slip": {"fill": "close", "slippage_bps": 3.0},
            "funding_lev": {"funding": 0.0001, "leverage": 3.0, "sizing": "fraction", "fraction": 0.5}}


def record(out: str, parquet: str) -> int:
    from threadx.data.bars import as_bars
    from threadx.data.io import load_ohlcv
    from threadx.engine import kernel
    from threadx.engine.inputs import EngineOptions
    from threadx.gpu.workload import declared_space
    from threadx.indicators import IndicatorBank
    from threadx.optimize.evaluate import Evaluator, SweepTask
    from threadx.strategy import get_strategy, list_strategies

    bars = as_bars(load_ohlcv(parquet))
    bank = IndicatorBank(disk=False)
    arrays: dict[str, np.ndarray] = {}
    builtin = [name for name, spec in list_strategies().items() if spec.signals.__module__.startswith("threadx.")]
    for name in builtin:
        space = declared_space(get_strategy(name))
        for label, options in VARIANTS.items():
            ev = Evaluator(SweepTask(name, space, EngineOptions(**options), n_blocks=8), bars, bank)
            ids = np.unique(np.random.default_rng(0).integers(0, ev.space.size, 150))
            result = ev.evaluate(ids)
            arrays[f"{name}/{label}/metrics"], arrays[f"{name}/{label}/blocks"] = result.metrics, result.blocks
            plain = Evaluator(SweepTask(name, space, EngineOptions(**options)), bars, bank)
            arrays[f"{name}/{label}/metrics_no_blocks"] = plain.evaluate(ids[:60]).metrics
            for k, combo in enumerate(ids[:10].tolist()):
                try:
                    m, trades, equity = kernel.run_full(*ev.kernel_inputs(ev.space.params(combo)))
                except Exception:  # noqa: BLE001 - a combo the strategy refuses: nothing to record
                    continue
                arrays[f"{name}/{label}/full{k}/metrics"] = m
                arrays[f"{name}/{label}/full{k}/trades"], arrays[f"{name}/{label}/full{k}/equity"] = trades, equity
    np.savez(out, **arrays)
    print(f"{len(arrays)} arrays recorded in {out}")
    return 0


def compare(a: str, b: str) -> int:
    left, right = np.load(a), np.load(b)
    missing = sorted(set(left.files) - set(right.files))
    if missing:
        print("arrays missing from the second recording:", missing[:10])
        return 1
    added = sorted(set(right.files) - set(left.files))
    if added:  # strategies registered since: nothing to compare them with
        print(f"{len(added)} arrays only in the second recording (e.g. {added[0]}): not compared")
    diffs, widened = [], 0
    for k in left.files:
        x, y = left[k], right[k]
        if x.ndim == y.ndim >= 1 and x.shape[:-1] == y.shape[:-1] and y.shape[-1] > x.shape[-1]:
            y = y[..., : x.shape[-1]]  # columns added at the end (new metrics, trade columns)
            widened += 1
        if x.shape != y.shape or not np.array_equal(x, y, equal_nan=True):
            diffs.append(k)
    for k in diffs[:10]:
        print("DIFF", k)
    note = f" ({widened} compared on their first columns: columns were added)" if widened else ""
    print(f"compared {len(left.files)} arrays{note}: {len(diffs)} differ")
    return 1 if diffs else 0


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("record", "compare"):
        raise SystemExit(__doc__)
    raise SystemExit(record(sys.argv[2], sys.argv[3]) if sys.argv[1] == "record" else compare(sys.argv[2], sys.argv[3]))
