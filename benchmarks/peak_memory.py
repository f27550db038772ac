"""Peak memory of a command and its child processes (sampled with psutil).

Usage: python benchmarks/peak_memory.py [--interval S] -- COMMAND ARGS...
e.g.   python benchmarks/peak_memory.py -- python -m threadx.cli sweep --data binance/BTC_USDT-5m ...

Prints the command's exit status, wall time and the peaks of: the summed RSS of the
process tree (shared pages counted once per process that touched them), the summed
PSS (shared pages split between the processes: the honest total), and the used bytes
of /dev/shm (the sweep's shared block).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time

import psutil

from benchlib import tree_memory


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    shm_base = shutil.disk_usage("/dev/shm").used
    started = time.perf_counter()
    child = subprocess.Popen(command)
    root = psutil.Process(child.pid)
    peak_rss = peak_pss = peak_shm = 0
    while child.poll() is None:
        rss, pss = tree_memory(root)
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        peak_shm = max(peak_shm, shutil.disk_usage("/dev/shm").used - shm_base)
        time.sleep(args.interval)
    gib = 2**30
    print(f"exit {child.returncode} after {time.perf_counter() - started:.1f} s; peak RSS (sum over the tree) "
          f"{peak_rss / gib:.2f} GiB, peak PSS {peak_pss / gib:.2f} GiB, peak /dev/shm used {peak_shm / gib:.2f} GiB",
          file=sys.stderr)
    return child.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
