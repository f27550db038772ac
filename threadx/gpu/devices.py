"""CUDA devices: what is there, and why nothing is when nothing is (SPEC §8).

Detection goes through ``numba.cuda`` (which runs the kernels) and, when installed, CuPy
(a second opinion on names and memory). Nothing here needs CUDA to import: without a
driver, a device or the packages, :func:`detect` returns a status with no devices and a
reason that says which piece is missing. Under numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``) the simulator is the one device.
"""
from __future__ import annotations

import ctypes
import importlib.util
import sys
import threading
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

from threadx.errors import ParamError

_lock = threading.Lock()
_cached: "GpuStatus | None" = None


@dataclass(frozen=True)
class GpuDevice:
    """One CUDA device, by its CUDA ordinal (``numba.cuda.gpus[index]``)."""

    index: int
    name: str
    total_memory: int  # bytes, 0 when unknown
    compute_capability: tuple[int, int]
    uuid: str = ""
    pci_bus_id: str = ""

    def identity(self) -> dict[str, Any]:
        """What a stored profile is matched against (order of devices included by the caller)."""
        return {"name": self.name, "total_memory": self.total_memory,
                "compute_capability": list(self.compute_capability), "uuid": self.uuid}

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["compute_capability"] = list(self.compute_capability)
        return out


@dataclass(frozen=True)
class GpuStatus:
    """Devices found, and why there are none (or a problem that stops them from running)."""

    devices: tuple[GpuDevice, ...] = ()
    reason: str = ""  # empty when the devices can run kernels
    backend: str = ""  # "numba.cuda (built-in)", "numba-cuda", "simulator" or ""
    simulator: bool = False
    driver_version: str = ""
    cupy_version: str = ""  # "" when CuPy is not installed
    cupy_devices: int | None = None  # what CuPy sees (None: not installed or not working)
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def available(self) -> bool:
        """True when kernels can run on at least one device."""
        return bool(self.devices) and not self.reason

    def to_dict(self) -> dict[str, Any]:
        return {"available": self.available, "reason": self.reason, "backend": self.backend,
                "simulator": self.simulator, "driver_version": self.driver_version,
                "cupy_version": self.cupy_version, "cupy_devices": self.cupy_devices,
                "devices": [d.to_dict() for d in self.devices], "notes": list(self.notes)}


def detect(refresh: bool = False) -> GpuStatus:
    """The CUDA devices of this machine (cached per process; ``refresh`` looks again). Never raises."""
    global _cached
    with _lock:
        if _cached is None or refresh:
            try:
                _cached = _detect()
            except Exception as exc:  # noqa: BLE001 - detection must never break the caller
                _cached = GpuStatus(reason=f"GPU detection failed: {type(exc).__name__}: {exc}")
        return _cached


def require_gpu() -> GpuStatus:
    """The status when kernels can run, else ParamError saying why not."""
    status = detect()
    if not status.available:
        raise ParamError(f"executor 'gpu' needs a CUDA GPU: {status.reason or 'no CUDA device found'}")
    return status


def _detect() -> GpuStatus:
    cupy_version, cupy_devices, cupy_note = _cupy()
    notes = (cupy_note,) if cupy_note else ()
    numpy_compat()
    try:
        from numba import config as numba_config
        from numba import cuda
    except Exception as exc:  # noqa: BLE001 - numba without its CUDA target, or a broken install
        return GpuStatus(reason=f"numba.cuda cannot be imported ({type(exc).__name__}: {exc}); "
                                "install numba with CUDA support (pip install numba-cuda)",
                         cupy_version=cupy_version, cupy_devices=cupy_devices, notes=notes)
    if numba_config.ENABLE_CUDASIM:
        sim = GpuDevice(0, "CUDA simulator", 0, (0, 0))
        return GpuStatus((sim,), backend="simulator", simulator=True, cupy_version=cupy_version,
                         cupy_devices=cupy_devices, notes=notes)
    backend = "numba-cuda" if getattr(cuda, "implementation", "") != "Built-in" else "numba.cuda (built-in)"
    common = dict(backend=backend, cupy_version=cupy_version, cupy_devices=cupy_devices)
    if not cuda.is_available():
        return GpuStatus(reason=_why_unavailable(cuda), notes=notes, **common)
    devices = []
    for dev in cuda.list_devices():
        name = dev.name.decode(errors="replace") if isinstance(dev.name, bytes) else str(dev.name)
        devices.append(GpuDevice(int(dev.id), name, _total_memory(int(dev.id)), tuple(dev.compute_capability),
                                 str(getattr(dev, "uuid", "") or ""), _pci_bus_id(dev)))
    if not devices:
        return GpuStatus(reason="the CUDA driver is loaded but reports no device", notes=notes, **common)
    driver = _driver_version()
    reason = ""
    old = [d for d in devices if d.compute_capability < (3, 5)]
    if len(old) == len(devices):
        reason = f"no supported device: compute capability below 3.5 ({', '.join(d.name for d in old)})"
    elif not _nvvm_available():
        reason = ("the CUDA driver works but NVVM (the CUDA toolkit's compiler library) was not found: "
                  "install the CUDA toolkit, or pip install 'numba-cuda[cu12]' ('[cu13]' for a CUDA 13 driver)")
    else:
        reason = compile_check(cuda)
    devices = [d for d in devices if d.compute_capability >= (3, 5)]
    return GpuStatus(tuple(devices), reason=reason, driver_version=driver, notes=notes, **common)


def numpy_compat() -> None:
    """Aliases that numba-cuda still looks up but newer numpy releases removed.

    numba-cuda 0.30 registers ``np.row_stack`` when it compiles its first kernel; numpy
    2.5 dropped that alias of ``np.vstack``, so every compile failed with AttributeError
    (seen on an H200 with numpy 2.5.2). Restoring the alias is harmless where it exists."""
    import numpy as np

    if not hasattr(np, "row_stack"):
        np.row_stack = np.vstack


def compile_check(cuda: Any) -> str:
    """'' when numba's CUDA target compiles and runs a one-thread kernel, else why not.

    Seeing devices is not enough: a numba-cuda that cannot compile for this numpy or this
    toolkit would otherwise be reported usable and fail at the first sweep batch."""
    try:
        def _probe(out):  # pragma: no cover - runs on the device
            out[0] = 1.0

        out = cuda.device_array(1)
        with warnings.catch_warnings():  # numba warns that one thread under-uses the GPU: it is meant to
            warnings.simplefilter("ignore")
            cuda.jit(_probe)[1, 1](out)
        cuda.synchronize()
        if float(out.copy_to_host()[0]) != 1.0:
            return "a test kernel ran but returned a wrong value; the CUDA install is unusable"
    except Exception as exc:  # noqa: BLE001 - any failure means no usable GPU
        text = " ".join(str(exc).split())[:300]
        return (f"numba's CUDA target cannot compile and run a kernel ({type(exc).__name__}: {text}); "
                "check that numba-cuda supports the installed numpy and CUDA toolkit")
    return ""


def _why_unavailable(cuda: Any) -> str:
    """One line from numba's CUDA error: no driver, no device, or what else it says."""
    try:
        error = cuda.cuda_error()
    except Exception as exc:  # noqa: BLE001
        error = exc
    text = " ".join(str(error or "").split())
    lowered = text.lower()
    if "driver library cannot be found" in lowered or "libcuda" in lowered:
        return "no NVIDIA driver: the CUDA driver library (libcuda) was not found"
    if "no_device" in lowered or "no cuda-capable device" in lowered or "no device" in lowered:
        return "no CUDA device: the NVIDIA driver is installed but sees no GPU"
    if "insufficient" in lowered and "driver" in lowered:
        return f"the NVIDIA driver is too old for this CUDA runtime ({text})"
    return f"CUDA is not available: {text or 'numba.cuda reports no usable driver'}"


def _total_memory(ordinal: int) -> int:
    """Device memory in bytes through the driver API (no context is created), 0 if unknown."""
    names = ("nvcuda.dll",) if sys.platform == "win32" else ("libcuda.so.1", "libcuda.so")
    for name in names:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            device = ctypes.c_int()
            size = ctypes.c_size_t()
            if lib.cuDeviceGet(ctypes.byref(device), ordinal) == 0 and \
                    lib.cuDeviceTotalMem_v2(ctypes.byref(size), device) == 0:
                return int(size.value)
        except (AttributeError, OSError):
            pass
    return 0


def _pci_bus_id(dev: Any) -> str:
    try:
        return f"{int(dev.PCI_DOMAIN_ID):04x}:{int(dev.PCI_BUS_ID):02x}:{int(dev.PCI_DEVICE_ID):02x}"
    except Exception:  # noqa: BLE001 - an attribute this driver does not report
        return ""


def _driver_version() -> str:
    try:
        from numba.cuda.cudadrv.driver import driver

        version = driver.get_version()
        return ".".join(str(v) for v in version) if isinstance(version, tuple) else str(version)
    except Exception:  # noqa: BLE001
        return ""


def _nvvm_available() -> bool:
    try:
        from numba.cuda.cudadrv import nvvm

        return bool(nvvm.is_available())
    except Exception:  # noqa: BLE001 - an implementation without this check compiles another way
        return True


def _cupy() -> tuple[str, int | None, str]:
    """(CuPy version or "", devices CuPy sees or None, note on a failure)."""
    if importlib.util.find_spec("cupy") is None:
        return "", None, ""
    try:
        import cupy

        version = str(cupy.__version__)
    except Exception as exc:  # noqa: BLE001 - a CuPy build for another CUDA version, ...
        return "", None, f"CuPy is installed but does not import: {type(exc).__name__}: {exc}"
    try:
        return version, int(cupy.cuda.runtime.getDeviceCount()), ""
    except Exception as exc:  # noqa: BLE001
        return version, None, f"CuPy {version} sees no device: {' '.join(str(exc).split())}"
