"""Optional GPU path (SPEC §8): CUDA batch kernel, multi-GPU split, sweep executor.

Nothing here needs CUDA, CuPy or a GPU to import; ``numba.cuda`` is loaded only when a
device is detected or a kernel is built. Modules:

- :mod:`~threadx.gpu.devices`: what CUDA devices there are, or why there are none;
- the host side, the distinct kernel inputs of many combos, is the sweep plan every executor
  uses (:mod:`threadx.optimize.plan`);
- :mod:`~threadx.gpu.kernel`: the CUDA kernel, compiled from the engine's own bar loop;
- :mod:`~threadx.gpu.balance`: split weights and the measured ``gpu_profile.json``;
- :mod:`~threadx.gpu.executor`: ``threadx.sweep(..., executor="gpu")``;
- :mod:`~threadx.gpu.cli`: ``threadx gpu info|profile``.
"""
from threadx.gpu.devices import GpuDevice, GpuStatus, detect

__all__ = ["GpuDevice", "GpuStatus", "detect"]
