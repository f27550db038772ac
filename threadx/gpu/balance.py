"""How combos are split across GPUs: weights, and the measured profile that sets them (SPEC §8).

Combos (never the time axis) are split by weights. Without a profile: one device takes
everything, two take 75/25 (the one with more memory the 75), more share uniformly.
``threadx gpu profile`` (:func:`measure_profile`) runs the real kernel on a fixed
synthetic workload on each device, warm-up excluded, and stores the throughput ratios in
``<config_dir>/gpu_profile.json`` with the devices, the kernel version and the date. The
profile is used until it is 14 days old, the device set changes or the kernel changes.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from threadx.gpu.devices import GpuDevice

PROFILE_FILE = "gpu_profile.json"
PROFILE_MAX_AGE = timedelta(days=14)
TWO_DEVICE_SPLIT = (0.75, 0.25)


@dataclass
class Profile:
    """Measured throughput ratios of a device set (ratios follow ``devices``)."""

    devices: list[dict[str, Any]]
    ratios: list[float]
    kernel_version: str
    created_at: str  # ISO 8601, UTC
    combos_per_s: list[float] = field(default_factory=list)
    workload: dict[str, Any] = field(default_factory=dict)

    def age(self, now: datetime | None = None) -> timedelta:
        created = datetime.fromisoformat(self.created_at)
        if created.tzinfo is None:
            created = created.replace(tzinfo=timezone.utc)
        return (now or datetime.now(timezone.utc)) - created

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_weights(devices: Sequence[GpuDevice]) -> list[float]:
    """1 device: [1]; 2 devices: 75/25 with the larger memory first (ties: lower index); else uniform."""
    n = len(devices)
    if n == 0:
        return []
    if n == 2:
        big = 0 if devices[0].total_memory >= devices[1].total_memory else 1
        weights = [0.0, 0.0]
        weights[big], weights[1 - big] = TWO_DEVICE_SPLIT
        return weights
    return [1.0 / n] * n


def profile_path(config_dir: str | os.PathLike | None = None) -> Path:
    """``<config_dir>/gpu_profile.json`` (``THREADX_CONFIG_DIR``, default ``~/.config/threadx``)."""
    if config_dir is None:
        from threadx.config import settings

        config_dir = settings().config_dir
    return Path(config_dir) / PROFILE_FILE


def load_profile(path: str | os.PathLike | None = None) -> Profile | None:
    """The stored profile, or None when there is none or it cannot be read."""
    path = Path(path) if path is not None else profile_path()
    try:
        data = json.loads(path.read_text())
        return Profile(devices=list(data["devices"]), ratios=[float(r) for r in data["ratios"]],
                       kernel_version=str(data["kernel_version"]), created_at=str(data["created_at"]),
                       combos_per_s=[float(v) for v in data.get("combos_per_s", [])],
                       workload=dict(data.get("workload", {})))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_profile(profile: Profile, path: str | os.PathLike | None = None) -> Path:
    """Write the profile atomically; returns its path."""
    path = Path(path) if path is not None else profile_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(profile.to_dict(), indent=2))
    os.replace(tmp, path)
    return path


def profile_problem(profile: Profile | None, devices: Sequence[GpuDevice], kernel_version: str | None = None,
                    now: datetime | None = None) -> str:
    """Why ``profile`` cannot set the weights of ``devices`` ("" when it can)."""
    if profile is None:
        return "no profile: run `threadx gpu profile`"
    if [d.identity() for d in devices] != profile.devices:
        return "the devices changed since the profile was measured"
    if kernel_version is None:
        from threadx.gpu.kernel import KERNEL_VERSION

        kernel_version = KERNEL_VERSION
    if profile.kernel_version != kernel_version:
        return "the kernel changed since the profile was measured"
    age = profile.age(now)
    if age > PROFILE_MAX_AGE:
        return f"the profile is {age.days} days old (it expires after {PROFILE_MAX_AGE.days})"
    if len(profile.ratios) != len(devices) or not all(r >= 0 for r in profile.ratios) or sum(profile.ratios) <= 0:
        return "the profile's ratios are invalid"
    return ""


@dataclass(frozen=True)
class Weights:
    """The split of combos across devices and where it comes from."""

    values: tuple[float, ...]
    source: str  # "profile" or "default"
    note: str = ""  # why the profile was not used


def active_weights(devices: Sequence[GpuDevice], path: str | os.PathLike | None = None,
                   now: datetime | None = None, kernel_version: str | None = None) -> Weights:
    """The measured ratios when a valid profile matches ``devices``, else the defaults."""
    profile = load_profile(path)
    problem = profile_problem(profile, devices, kernel_version, now)
    if not problem:
        total = sum(profile.ratios)
        return Weights(tuple(r / total for r in profile.ratios), "profile")
    return Weights(tuple(default_weights(devices)), "default", problem)


def split_counts(n: int, weights: Sequence[float]) -> list[int]:
    """``n`` items split by ``weights`` (largest remainders; the counts sum to ``n``)."""
    w = np.asarray(weights, dtype=np.float64)
    if len(w) == 0:
        return []
    if not np.all(w >= 0) or w.sum() <= 0:
        raise ValueError(f"weights must be >= 0 with a positive sum, got {list(weights)}")
    exact = n * w / w.sum()
    counts = np.floor(exact).astype(np.int64)
    for k in np.argsort(-(exact - counts), kind="stable")[: n - int(counts.sum())]:
        counts[k] += 1
    return counts.tolist()


# --- measuring -----------------------------------------------------------------------------------

# 100k combos: several waves of resident threads even on the largest GPUs, so the ratio is throughput
PROFILE_WORKLOAD = {"strategy": "bb_atr", "bars": 8760, "combos": 100_000, "seed": 7}


def measure_profile(devices: Sequence[GpuDevice], runner_factory: Callable[..., Any] | None = None,
                    workload: dict[str, Any] | None = None, min_seconds: float = 1.0) -> Profile:
    """Throughput of each device on the real kernel over a fixed synthetic workload
    (``PROFILE_WORKLOAD``: bb_atr, random combos of its declared ranges), warm-up excluded."""
    from threadx.gpu.kernel import KERNEL_VERSION, DeviceRunner
    from threadx.gpu.workload import synthetic_plan

    workload = dict(PROFILE_WORKLOAD, **(workload or {}))
    evaluator, plan = synthetic_plan(workload["strategy"], workload["bars"], workload["combos"], workload["seed"])
    runner_factory = runner_factory or DeviceRunner
    rates = []
    for device in devices:
        runner = runner_factory(device, evaluator.bars, evaluator.funding, evaluator.block_end)
        try:
            runner.run(plan.subset(plan.ok[: min(256, len(plan.ok))]))  # compile and load: not timed
            done, started = 0, time.perf_counter()
            while True:
                runner.run(plan)
                done += len(plan.ok)
                elapsed = time.perf_counter() - started
                if elapsed >= min_seconds:
                    break
            rates.append(done / elapsed)
        finally:
            close = getattr(runner, "close", None)
            if close is not None:
                close()
    total = sum(rates)
    return Profile(devices=[d.identity() for d in devices], ratios=[r / total for r in rates],
                   kernel_version=KERNEL_VERSION, created_at=datetime.now(timezone.utc).isoformat(),
                   combos_per_s=rates, workload=workload)
