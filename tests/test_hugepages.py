"""NumPy's hugepage advice is off in ThreadX's processes unless the user set NumPy's switch."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# prints the advice as it stands after the imports, and the variable children inherit
PROBE = ("import os, numpy, threadx; from numpy._core import multiarray as m; "
         "print(m._set_madvise_hugepage(False), os.environ.get('NUMPY_MADVISE_HUGEPAGE'))")


def _probe(env_value: str | None, numpy_first: bool) -> str:
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    if env_value is not None:
        env["NUMPY_MADVISE_HUGEPAGE"] = env_value
    code = PROBE if numpy_first else PROBE.replace("import os, numpy, threadx", "import os, threadx, numpy")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.parametrize("numpy_first", [True, False], ids=["numpy imported first", "threadx imported first"])
def test_the_advice_is_off_and_children_inherit_it(numpy_first):
    assert _probe(None, numpy_first) == "False 0"


def test_a_users_own_choice_is_kept():
    assert _probe("1", numpy_first=False) == "True 1"
    assert _probe("0", numpy_first=True) == "False 0"


def _arrow_probe(env_value: str | None, code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MIMALLOC_ALLOW_THP"}
    env["MIMALLOC_VERBOSE"] = "1"  # (mimalloc prints its options as pyarrow loads it)
    if env_value is not None:
        env["MIMALLOC_ALLOW_THP"] = env_value
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)


@pytest.mark.parametrize("user_value, want", [(None, "0"), ("1", "1")], ids=["unset", "the user's"])
def test_pyarrows_allocator_stays_off_huge_pages_unless_the_user_chose(user_value, want):
    pa = pytest.importorskip("pyarrow")
    if pa.default_memory_pool().backend_name != "mimalloc":
        pytest.skip("pyarrow's pool is not mimalloc here")
    got = _arrow_probe(user_value, "import os, threadx, pyarrow; pyarrow.array([1]); "
                                   "print(os.environ['MIMALLOC_ALLOW_THP'])")
    assert got.stdout.strip() == want
    assert f"option 'allow_thp': {want}" in got.stderr  # as mimalloc read it


def test_with_pyarrow_loaded_first_the_processes_threadx_starts_still_get_it():
    got = _arrow_probe(None, "import os, pandas, threadx; print(os.environ['MIMALLOC_ALLOW_THP'])")
    assert got.stdout.strip() == "0"


THP_PROBE = ("import pandas, threadx; "
             "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('THP_enabled')))")


@pytest.mark.parametrize("user_value, want", [(None, "0"), ("1", "1")], ids=["unset", "the user's"])
def test_with_pyarrow_loaded_first_this_process_is_off_huge_pages_as_mimalloc_would_make_it(user_value, want):
    """mimalloc applies MIMALLOC_ALLOW_THP=0 to the whole process as pyarrow loads; loaded before
    threadx, it had read no such variable: threadx makes the same call (Linux 5.0+ shows it)."""
    status = Path("/proc/self/status")
    if not (sys.platform.startswith("linux") and Path("/sys/kernel/mm/transparent_hugepage").is_dir()
            and status.is_file() and "THP_enabled" in status.read_text()):
        pytest.skip("no transparent huge pages here, or the kernel does not show a process's switch")
    env = {k: v for k, v in os.environ.items() if k != "MIMALLOC_ALLOW_THP"}
    if user_value is not None:
        env["MIMALLOC_ALLOW_THP"] = user_value
    got = subprocess.run([sys.executable, "-c", THP_PROBE], env=env, capture_output=True, text=True, check=True,
                         preexec_fn=_thp_allowed)  # (a child inherits the switch: this process has it off)
    assert got.stdout.strip() == want


def _thp_allowed() -> None:
    import ctypes

    from threadx.hugepages import _PR_SET_THP_DISABLE

    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_THP_DISABLE, 0, 0, 0, 0)  # the switch off
