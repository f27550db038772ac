"""The numba cache folder is named by the kernels' sources, so a change to any of them compiles
afresh: numba keys a cached function on its own file, and the portfolio loop (which inlines the
engine's step) kept running the engine's old code after a fix to it."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from threadx import jit_cache


def test_the_hash_covers_each_kernel_source(tmp_path):
    for name in jit_cache.JIT_SOURCES:
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(jit_cache.PACKAGE / name, target)
    before = jit_cache.sources_hash(tmp_path)
    assert before == jit_cache.sources_hash()
    for name in ("engine/kernel.py", "engine/layout.py", "contract.py"):  # a callee, constants, the contract's bits
        path = tmp_path / name
        text = path.read_text()
        path.write_text(text + "\n# edited\n")
        assert jit_cache.sources_hash(tmp_path) != before, name
        path.write_text(text)
    assert jit_cache.sources_hash(tmp_path) == before


def test_threadx_points_numba_at_this_versions_folder_in_a_process_and_its_children():
    code = ("import threadx, numba, os, subprocess, sys; from threadx.jit_cache import cache_dir; "
            "assert numba.config.CACHE_DIR == str(cache_dir()) == os.environ['NUMBA_CACHE_DIR']; "
            "child = subprocess.run([sys.executable, '-c', 'import numba, threadx, os; print(numba.config.CACHE_DIR)'], "
            "capture_output=True, text=True, check=True).stdout.strip(); assert child == str(cache_dir()), child; "
            "print(cache_dir())")
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", jit_cache.CHOSEN_ENV)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert Path(out.strip()).name == jit_cache.sources_hash()


def test_a_users_own_numba_cache_folder_holds_threadxs_under_it(tmp_path):
    code = "import threadx, numba; print(numba.config.CACHE_DIR)"
    env = {**{k: v for k, v in os.environ.items() if k != jit_cache.CHOSEN_ENV},
           "NUMBA_CACHE_DIR": str(tmp_path / "mine")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert Path(out.strip()) == tmp_path / "mine" / "threadx" / jit_cache.sources_hash()


def test_prune_removes_other_versions_only(tmp_path, monkeypatch):
    current = tmp_path / "numba" / "0123456789abcdef"
    old = tmp_path / "numba" / "fedcba9876543210"
    other = tmp_path / "numba" / "not-a-version"
    for folder in (current, old, other):
        folder.mkdir(parents=True)
    monkeypatch.setattr(jit_cache, "cache_dir", lambda: current)
    assert old in jit_cache.prune()
    assert current.is_dir() and other.is_dir() and not old.exists()


def test_the_variable_threadx_sets_is_no_misspelt_setting():
    from threadx.settings_file import unknown_variables

    assert unknown_variables({jit_cache.CHOSEN_ENV: "/x", "NUMBA_CACHE_DIR": "/x"}) == []
