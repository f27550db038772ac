"""NumPy's transparent-hugepage advice, off in ThreadX's processes unless the user chose.

NumPy asks Linux for huge pages (``madvise(MADV_HUGEPAGE)``) on every array of 4 MB and
more. Where the kernel's THP ``defrag`` setting is ``madvise`` (the kernel's default), each
first touch of such an array may wait for the kernel to compact memory into 2 MB pages, and a
sweep makes and frees such arrays all the time (signal and line matrices, result columns).
Measured on a 2-core Linux host (``benchmarks/bench_issue12.py``, goal e): a GPU sweep's first
plan batch took 2.50 s with the advice and 0.36 s without; an ``ma_crossover`` sweep of 1,860
combos on one thread 0.34-0.51 s with it, 0.22-0.28 s without. ``NUMPY_MADVISE_HUGEPAGE`` set
by the user (0 or 1) is kept as it is.

pyarrow's allocator (mimalloc) maps its memory with huge pages too: a sweep's last Parquet part
(10,000 rows) took 40-80 ms of system time in about one write of four, 10 ms otherwise; with
``MIMALLOC_ALLOW_THP=0``, 10 writes of 10 took about 10 ms. mimalloc reads it as pyarrow loads
and applies it to the whole process (``prctl(PR_SET_THP_DISABLE)``, which the processes it
starts inherit): so it holds in the processes ThreadX starts (the workstation's job process,
spawned workers) and in this one when pyarrow is loaded after ThreadX. When pyarrow was loaded
first (pandas loads it: a script importing pandas first), ThreadX makes the same call itself,
so that the process is in the same state whichever was imported first (measured in such a
script: the 10,000-row part's flush took 14-74 ms over 8 sweeps, 15-22 ms with the switch). A
value the user set is kept.
"""
from __future__ import annotations

import os
import sys

ADVICE_VARIABLE = "NUMPY_MADVISE_HUGEPAGE"  # NumPy's own switch, read when numpy is imported
ARROW_VARIABLE = "MIMALLOC_ALLOW_THP"  # pyarrow's allocator's switch, read when pyarrow is loaded


def no_numpy_hugepages() -> None:
    """Turn NumPy's hugepage advice off in this process and the processes it starts (workers,
    the job process), unless ``NUMPY_MADVISE_HUGEPAGE`` is set already."""
    if ADVICE_VARIABLE in os.environ:
        return
    os.environ[ADVICE_VARIABLE] = "0"  # numpy imported from now on (here or in a child) reads it
    numpy = sys.modules.get("numpy")
    if numpy is None:
        return
    for module in ("_core", "core"):  # numpy imported before threadx: its runtime switch (2.x, then 1.26)
        switch = getattr(getattr(getattr(numpy, module, None), "multiarray", None), "_set_madvise_hugepage", None)
        if switch is not None:
            switch(False)
            return


def no_arrow_hugepages() -> None:
    """Keep pyarrow's allocator off huge pages in this process and those it starts, unless
    ``MIMALLOC_ALLOW_THP`` is set already: the variable for pyarrow loaded from now on (here or
    in a child), and when pyarrow is loaded already, what mimalloc does with the variable."""
    if ARROW_VARIABLE in os.environ:
        return
    os.environ[ARROW_VARIABLE] = "0"
    if "pyarrow.lib" in sys.modules and sys.platform.startswith("linux"):
        _disable_thp()


_PR_SET_THP_DISABLE = 41  # <linux/prctl.h>


def _disable_thp() -> None:
    """No transparent huge pages for this process (and its children): mimalloc's call when
    ``MIMALLOC_ALLOW_THP=0``. A kernel that refuses it leaves things as they were."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_THP_DISABLE, 1, 0, 0, 0)
    except (OSError, AttributeError):  # no prctl in this libc
        pass
