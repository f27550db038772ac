"""The examples in ThreadX's docstrings hold (a wrong example misleads whoever reads it)."""
from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import threadx

MODULES = sorted(m.name for m in pkgutil.walk_packages(threadx.__path__, "threadx.") if not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0, f"{result.failed} of the {result.attempted} docstring examples of {name} fail"
