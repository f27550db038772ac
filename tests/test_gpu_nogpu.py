"""Without a GPU, CuPy or a CUDA driver everything works, and every GPU entry point says why
it cannot run (SPEC §8: nothing may require a GPU to install, import or test)."""
from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

import threadx
from threadx.data.synthetic import generate_synthetic
from threadx.errors import ParamError
from threadx.gpu import devices as gpu_devices
from threadx.gpu.cli import add_gpu_commands
from threadx.gpu.devices import GpuDevice, GpuStatus, detect

ROOT = Path(__file__).resolve().parents[1]
NO_DRIVER = GpuStatus(reason="no NVIDIA driver: the CUDA driver library (libcuda) was not found",
                      backend="numba.cuda (built-in)")


@pytest.fixture(autouse=True)
def fresh_detection(monkeypatch, tmp_path):
    monkeypatch.setattr(gpu_devices, "_cached", None)  # whatever a test detects is forgotten after it
    monkeypatch.setenv("THREADX_CONFIG_DIR", str(tmp_path / "config"))


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(gpu_devices, "detect", lambda refresh=False: NO_DRIVER)
    return NO_DRIVER


def fake_numba_cuda(monkeypatch, error: str | None = None, importable: bool = True) -> None:
    """Replace numba.cuda by a module that reports ``error`` (or cannot be imported)."""
    import numba

    monkeypatch.delattr(numba, "cuda", raising=False)
    if not importable:
        monkeypatch.setitem(sys.modules, "numba.cuda", None)
        return
    fake = types.ModuleType("numba.cuda")
    fake.implementation = "Built-in"
    fake.is_available = lambda: False
    fake.cuda_error = lambda: RuntimeError(error)
    monkeypatch.setitem(sys.modules, "numba.cuda", fake)
    monkeypatch.setattr(numba, "cuda", fake, raising=False)


def test_importing_threadx_and_cpu_work_never_load_cuda(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        import threadx
        from threadx.data.synthetic import generate_synthetic
        df = generate_synthetic(days=20, seed=1)
        threadx.backtest(df, "bb_atr")
        threadx.sweep(df, "ma_crossover", {{"fast_period": [5, 8]}}, executor="inline", store={str(tmp_path)!r})
        loaded = sorted(m for m in ("numba.cuda", "cupy", "pynvml") if m in sys.modules)
        print("loaded:", loaded)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "THREADX_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "loaded: []" in proc.stdout


@pytest.mark.parametrize("error, expected", [
    ("CUDA driver library cannot be found. If you are sure that a CUDA driver is installed, try setting "
     "environment variable NUMBA_CUDA_DRIVER", "no NVIDIA driver"),
    ("Error at driver init: Call to cuInit results in CUDA_ERROR_NO_DEVICE (100)", "no CUDA device"),
    ("Error at driver init: Call to cuInit results in CUDA_ERROR_UNKNOWN (999)", "CUDA is not available"),
])
def test_detect_says_why_there_is_no_gpu(monkeypatch, error, expected):
    fake_numba_cuda(monkeypatch, error)
    status = detect(refresh=True)
    assert not status.available and status.devices == ()
    assert expected in status.reason
    assert status.to_dict()["available"] is False and json.dumps(status.to_dict())


def test_detect_without_numba_cuda(monkeypatch):
    fake_numba_cuda(monkeypatch, importable=False)
    status = detect(refresh=True)
    assert not status.available and "numba.cuda cannot be imported" in status.reason


def test_detect_reports_cupy_absent_or_broken(monkeypatch):
    fake_numba_cuda(monkeypatch, "CUDA driver library cannot be found")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "cupy" else real_find_spec(
        name, *a))
    status = detect(refresh=True)
    assert status.cupy_version == "" and status.cupy_devices is None and status.notes == ()

    def no_device():
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    cupy = types.ModuleType("cupy")
    cupy.__version__ = "13.3.0"
    cupy.__spec__ = importlib.machinery.ModuleSpec("cupy", None)
    cupy.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_device))
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setattr(importlib.util, "find_spec", real_find_spec)
    status = detect(refresh=True)
    assert status.cupy_version == "13.3.0" and status.cupy_devices is None
    assert any("CuPy 13.3.0 sees no device" in note for note in status.notes)


def test_detect_never_raises(monkeypatch):
    monkeypatch.setattr(gpu_devices, "_detect", lambda: 1 / 0)
    status = detect(refresh=True)
    assert not status.available and "ZeroDivisionError" in status.reason


def test_sweep_on_gpu_without_a_gpu_is_refused_with_the_reason(no_gpu, tmp_path):
    df = generate_synthetic(days=10, seed=2)
    with pytest.raises(ParamError, match="executor 'gpu' needs a CUDA GPU: no NVIDIA driver"):
        threadx.sweep(df, "ma_crossover", {"fast_period": [5, 8]}, executor="gpu", store=tmp_path)
    assert not any(tmp_path.iterdir())  # refused before a run was opened


def gpu_cli(monkeypatch, argv: list[str]) -> int:
    """``threadx.cli.main`` with the gpu commands registered (as threadx.cli will register them)."""
    from threadx import cli

    real = cli.build_parser

    def build() -> argparse.ArgumentParser:
        parser = real()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        if "gpu" not in sub.choices:
            add_gpu_commands(sub)
        return parser

    monkeypatch.setattr(cli, "build_parser", build)
    return cli.main(argv)


def test_gpu_info_without_a_gpu(monkeypatch, capsys, no_gpu):
    assert gpu_cli(monkeypatch, ["gpu", "info"]) == 0
    out = capsys.readouterr().out
    assert "no usable GPU: no NVIDIA driver" in out and "sweeps run on the CPU" in out
    assert "run `threadx gpu profile`" in out
    assert gpu_cli(monkeypatch, ["gpu", "info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["available"] is False and info["devices"] == [] and "no NVIDIA driver" in info["reason"]


def test_gpu_profile_without_a_gpu_is_one_error_line(monkeypatch, capsys, no_gpu):
    assert gpu_cli(monkeypatch, ["gpu", "profile"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: no GPU to profile: no NVIDIA driver: the CUDA driver library (libcuda) was not found"]
    assert gpu_cli(monkeypatch, ["gpu", "profile", "--combos", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: --combos must be a positive whole number")


def test_gpu_info_lists_devices_weights_and_telemetry(monkeypatch, capsys):
    sys.path.insert(0, str(ROOT / "tests"))
    from test_monitor import fake_pynvml

    from threadx import monitor

    devices = (GpuDevice(0, "Fake GPU", 8 * 2**30, (8, 6)), GpuDevice(1, "Fake GPU 2", 16 * 2**30, (9, 0)))
    monkeypatch.setattr(gpu_devices, "detect", lambda refresh=False: GpuStatus(devices, backend="fake"))
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml())
    monkeypatch.setattr(monitor, "_nvml_ready", None)
    assert gpu_cli(monkeypatch, ["gpu", "info"]) == 0
    out = capsys.readouterr().out
    assert "Fake GPU 2" in out and "16.0 GiB" in out and "9.0" in out
    assert "0.25" in out and "0.75" in out and "default weights" in out  # 75/25, larger memory first
    assert "123 W" in out and "61 C" in out


def test_monitor_history_has_gpu_temperature_and_power(monkeypatch):
    sys.path.insert(0, str(ROOT / "tests"))
    from test_monitor import fake_pynvml

    from threadx import monitor

    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml())
    monkeypatch.setattr(monitor, "_nvml_ready", None)
    history = monitor.MonitorHistory()
    history.add(monitor.sample())
    frame = history.gpu_frame()
    assert list(frame.columns) == ["gpu0_power_w", "gpu0_temp_c", "gpu1_power_w", "gpu1_temp_c"]
    assert frame["gpu0_power_w"].iloc[0] == pytest.approx(123.4) and frame["gpu1_temp_c"].iloc[0] == 61.0
    assert frame["gpu1_power_w"].isna().all()  # device 1 does not report power
    assert monitor.MonitorHistory().gpu_frame().empty


# --- the workstation ---------------------------------------------------------------------------------

@pytest.fixture
def workspace(tmp_path, monkeypatch):
    pytest.importorskip("streamlit")
    monkeypatch.setenv("THREADX_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("THREADX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("THREADX_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.chdir(tmp_path)
    import streamlit as st

    st.cache_resource.clear()
    yield tmp_path
    st.cache_resource.clear()


def optimisation_page():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "views" / "3_Optimisation.py"), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def test_gpu_toggle_is_off_and_says_why_without_a_gpu(workspace, no_gpu):
    at = optimisation_page()
    toggle = at.toggle(key="opt_gpu")
    assert toggle.disabled and toggle.value is False
    assert "sweeps run on the CPU" in toggle.help and "no NVIDIA driver" in toggle.help


def test_gpu_toggle_launches_the_sweep_on_the_gpu_executor(workspace, monkeypatch):
    from threadx.ui.jobs import JobRegistry

    devices = (GpuDevice(0, "Fake GPU", 8 * 2**30, (8, 6)),)
    monkeypatch.setattr(gpu_devices, "detect", lambda refresh=False: GpuStatus(devices, backend="fake"))
    submitted = []
    monkeypatch.setattr(JobRegistry, "submit", lambda self, spec: submitted.append(spec) or "job-gpu")
    at = optimisation_page()
    toggle = at.toggle(key="opt_gpu")
    assert not toggle.disabled and "Fake GPU" in toggle.help
    toggle.set_value(True).run()
    assert at.selectbox(key="opt_executor").disabled
    at.button(key="opt_launch").click().run()
    assert not at.exception, at.exception
    assert len(submitted) == 1 and submitted[0]["executor"] == "gpu"


def test_system_monitor_shows_power_and_temperature(workspace, monkeypatch):
    from streamlit.testing.v1 import AppTest

    sys.path.insert(0, str(ROOT / "tests"))
    from test_monitor import fake_pynvml

    from threadx import monitor

    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml())
    monkeypatch.setattr(monitor, "_nvml_ready", None)
    monkeypatch.setattr(gpu_devices, "detect", lambda refresh=False: NO_DRIVER)
    at = AppTest.from_file(str(ROOT / "views" / "5_System_monitor.py"), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    metrics = {(m.label, m.value) for m in at.metric}
    assert ("Power", "123 W") in metrics and ("Temperature", "61 °C") in metrics and ("Power", "–") in metrics
    assert ("VRAM", "2.0 GiB / 8.0 GiB") in metrics
    assert any("GPU sweeps unavailable" in c.value for c in at.caption)


def test_numpy_compat_restores_the_alias_numba_cuda_needs(monkeypatch):
    import numpy as np

    monkeypatch.delattr(np, "row_stack", raising=False)  # as in numpy 2.5
    gpu_devices.numpy_compat()
    assert np.row_stack is np.vstack


def test_a_cuda_target_that_cannot_compile_is_reported_not_usable():
    class BrokenCuda:
        def device_array(self, n):
            return [0.0] * n

        def jit(self, fn):
            raise AttributeError("module 'numpy' has no attribute 'row_stack'")

    reason = gpu_devices.compile_check(BrokenCuda())
    assert "cannot compile and run a kernel" in reason and "row_stack" in reason
