"""NumPy's hugepage advice is off in ThreadX's processes unless the user set NumPy's switch."""
from __future__ import annotations

import os
import subprocess
import sys

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
