"""The CUDA batch kernel: built from the engine's own code, checked under the simulator
(in a subprocess, as numba picks the simulator at import) and compiled for a real GPU."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", reason="already under the simulator")
def test_simulator_suite_passes(tmp_path):
    """tests/test_gpu_sim.py: the kernel on every strategy vs the CPU to 1e-9, GPU sweeps."""
    proc = _run(["-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "tests/test_gpu_sim.py"],
                {"NUMBA_ENABLE_CUDASIM": "1", "THREADX_CONFIG_DIR": str(tmp_path / "config"),
                 "THREADX_CACHE_DIR": str(tmp_path / "cache")}, timeout=600)
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, tail
    assert " passed" in proc.stdout and "skipped" not in proc.stdout.splitlines()[-1], tail


def test_device_functions_are_the_engine_code_objects():
    from numba.core.registry import CPUDispatcher

    from threadx.engine import kernel as engine
    from threadx.gpu.kernel import device_functions

    built = device_functions()
    helpers = {name for name, obj in vars(engine).items() if isinstance(obj, CPUDispatcher)}
    assert {"run", "hold_quiet_bars", "skip_flat_bars", "step", "init_state", "finalize_metrics", "open_position", "close_position",
            "check_intrabar_exits", "update_trailing_stop", "mark_to_market"} <= set(built) <= helpers
    for name, device_fn in built.items():
        assert device_fn.py_func.__code__ is getattr(engine, name).py_func.__code__  # the same source, not a copy
        for callee in device_fn.py_func.__code__.co_names:
            if callee in helpers:
                assert device_fn.py_func.__globals__[callee] is built[callee]  # callees resolve to device versions


def test_register_cap_defaults_to_the_measured_one_and_reads_the_environment(monkeypatch):
    from threadx.gpu.kernel import DEFAULT_MAX_REGISTERS, register_cap
    from threadx.settings_file import GPU_REGISTERS_ENV

    monkeypatch.delenv(GPU_REGISTERS_ENV, raising=False)
    assert register_cap() == DEFAULT_MAX_REGISTERS == 128
    monkeypatch.setenv(GPU_REGISTERS_ENV, "0")
    assert register_cap() == 0  # no cap
    monkeypatch.setenv(GPU_REGISTERS_ENV, "96")
    assert register_cap() == 96
    for bad, says in (("many", "whole number"), ("300", "16 to 255"), ("8", "16 to 255")):
        monkeypatch.setenv(GPU_REGISTERS_ENV, bad)
        with pytest.raises(ValueError, match=says):
            register_cap()


def _nvvm_available() -> bool:
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return False
    try:
        from numba.cuda.cudadrv import nvvm

        return bool(nvvm.is_available())
    except Exception:  # noqa: BLE001
        return False


@pytest.mark.skipif(not _nvvm_available(), reason="needs NVVM (a CUDA toolkit); no GPU needed")
def test_kernel_compiles_to_ptx_for_a_real_gpu_without_fma():
    """The code the simulator runs also compiles for sm_90 through NVVM, with no contracted FMA."""
    script = textwrap.dedent("""
        import numba.cuda.dispatcher as dispatcher
        from numba import cuda, types as t
        import threadx.gpu.kernel as gk

        class Device:  # compile_ptx needs no GPU, but nested device functions ask for the current one
            compute_capability = (9, 0)
        dispatcher.get_current_device = lambda: Device()
        gk._build()
        v = t.float64[::1]
        args = (v, v, v, v, v, t.uint8[:, ::1], t.float64[:, ::1], t.int64[::1], t.int64[::1], t.int32[::1],
                t.int32[:, ::1],
                t.float64[:, ::1], t.float64[:, ::1], t.float64[:, ::1], v, t.int64[::1], t.float64[:, :, ::1])
        for fn, sig in ((gk._batch, args),):
            with gk._without_fma():
                ptx, _ = cuda.compile_ptx(fn, sig, cc=(9, 0))
            body = ptx.split(".entry", 1)[1].split("\\n.func", 1)[0]
            print(fn.__name__, "fma", body.count("fma.rn"), "depot", "__local_depot" in body, len(ptx))
    """)
    proc = _run(["-c", script], {}, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["_batch"]
    for line in lines:
        assert " fma 0 " in line, line  # libdevice's pow keeps its own FMAs, outside the kernel body
