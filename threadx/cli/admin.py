"""``threadx bench``, ``cache``, ``config show`` and ``app``: the machine, caches, settings and the workstation."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from threadx.cli.common import _cell, _load_data, _named_rows, _print_json, _table
from threadx.errors import ThreadXError
from threadx.units import format_bytes, format_count


def cmd_bench(args: argparse.Namespace) -> int:
    from threadx.machine_bench import measure

    df = _load_data(args)
    print(f"bench: {args.strategy} on {df.attrs.get('name') or args.data}: a backtest, then {args.n:,} random "
          "combos ...", file=sys.stderr)
    got = measure(df, args.strategy, n=args.n, workers=args.workers, executor=args.executor)
    if args.json:
        _print_json(got)
        return 0
    rate = lambda value: "-" if value is None else f"{value:,.0f} backtests/s"  # noqa: E731
    rows = {"data": f"{got['data'] or args.data}, {got['bars']:,} bars",
            "backtest": f"{got['backtest_s'] * 1e3:,.1f} ms ({got['trades']:,} trades; median of 5, warm)",
            "sweep": f"{got['combos']:,} combos in {got['sweep_s']:,.2f} s on {got['workers']} worker(s), start-up "
                     "included",
            "sweep rate": rate(got["sweep_rate"]), "steady state": rate(got["steady_rate"]),
            "kernel": "-" if got["kernel_us_per_combo"] is None else f"{got['kernel_us_per_combo']:,.0f} us a combo "
                      "(CPU time, summed over the workers)"}
    print(_table([{"": k, "value": v} for k, v in rows.items()], ["", "value"]))
    return 0


def cmd_cache_stats(args: argparse.Namespace) -> int:
    from threadx.indicators import default_bank

    stats = default_bank().stats()
    if args.json:
        _print_json(stats)
        return 0
    print(_table(_named_rows(stats, "stat"), ("stat", "value")))
    print(f"disk: {format_bytes(stats['disk_bytes'])} of {format_bytes(stats['disk_limit_bytes'])} "
          f"({_cell('disk_used_share', stats['disk_used_share'])} of the limit, THREADX_CACHE_LIMIT)")
    if stats["disk_near_limit"]:
        print("near the limit: the least recently used entries are being evicted")
    return 0


def cmd_cache_clear(args: argparse.Namespace) -> int:
    from threadx.indicators import default_bank

    bank = default_bank()
    before = bank.stats()
    bank.clear(memory=True, disk=True)
    print(f"cleared {format_count(before.get('disk_files', 0))} cache files "
          f"({format_bytes(before.get('disk_bytes', 0))})")
    return 0


def cmd_cache_clean(args: argparse.Namespace) -> int:
    """Remove the shared-memory segments of sweeps whose process is gone."""
    from threadx.optimize.shm import SHM_DIR, listing_supported, reclaim

    if not listing_supported():
        print(f"nothing removed: shared memory cannot be listed here (no {SHM_DIR}); segments of killed "
              "sweeps are freed at reboot")
        return 0
    removed = reclaim(dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for seg in removed:
        print(f"{verb} {seg.name}: run {seg.run}, dead process {seg.pid}, {format_bytes(seg.nbytes)}")
    print(f"{verb} {len(removed)} shared-memory segments of dead sweeps, "
          f"{format_bytes(sum(s.nbytes for s in removed))} {'to free' if args.dry_run else 'freed'}")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    from threadx.settings_file import resolve

    r = resolve()
    files = {"user": str(r.user_file), "user_exists": r.user_file.is_file(),
             "workspace": str(r.workspace_file), "workspace_exists": r.workspace_file.is_file()}
    rows = r.rows()
    if args.json:
        _print_json({"settings": {row["setting"]: {"value": row["value"], "source": row["source"],
                                                   "env": row["env"]} for row in rows}, "files": files})
        return 0
    for label in ("user", "workspace"):
        print(f"{label} file: {files[label]}{'' if files[label + '_exists'] else ' (none)'}")
    print("precedence: flag > environment variable > workspace file > user file > default\n")
    shown = [{**row, "value": str(row["value"])} for row in rows]
    print(_table(shown, ("setting", "value", "source")))
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    """Start the workstation on the ``app.address`` / ``app.port`` settings."""
    import subprocess

    from threadx.settings_file import resolve
    from threadx.ui.serving import is_loopback

    r = resolve()
    app = Path(__file__).resolve().parents[2] / "app.py"
    if not app.is_file():
        raise ThreadXError(f"{app} not found: run `threadx app` from a source checkout of ThreadX")
    command = [sys.executable, "-m", "streamlit", "run", str(app), "--server.address", str(r["app.address"]),
               "--server.port", str(r["app.port"]), "--server.headless", "true",
               "--browser.gatherUsageStats", "false"]
    if not is_loopback(str(r["app.address"])):  # (a workspace's threadx.toml could set it unseen)
        print(f"warning: serving on {r['app.address']} (set by the {r.sources['app.address']}): the workstation has "
              "no login, and whoever reaches it can read files the app can read and run work; see 'Serving on a "
              "network' in the README", file=sys.stderr)
    if args.dry_run:
        print(" ".join(command))
        return 0
    return subprocess.call(command)
