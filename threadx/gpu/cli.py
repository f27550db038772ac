"""``threadx gpu info|profile`` (SPEC §10), registered by :func:`add_gpu_commands`.

Handlers follow ``threadx.cli``: a human table by default, ``--json`` for machines, and
errors raised as ThreadXError, which ``threadx.cli.main`` prints as one ``error:`` line
with exit status 2.
"""
from __future__ import annotations

import argparse
from datetime import datetime, timezone
from typing import Any

from threadx.errors import ParamError


def add_gpu_commands(subparsers: Any, json_help: str | None = None) -> argparse.ArgumentParser:
    """Add ``gpu info`` and ``gpu profile`` to the ``threadx`` subcommands (``json_help``: the
    help of their ``--json`` flag)."""
    gpu = subparsers.add_parser("gpu", help="CUDA devices and the multi-GPU profile")
    gsub = gpu.add_subparsers(dest="gpu_command", required=True)
    p = gsub.add_parser("info", help="devices, telemetry and the active split profile")
    p.add_argument("--json", action="store_true", help=json_help)
    p.set_defaults(func=cmd_gpu_info)
    p = gsub.add_parser("profile", help="measure each device on the real kernel and store the split ratios")
    p.add_argument("--combos", type=int, default=None, help="combos of the synthetic workload (default 100000)")
    p.add_argument("--bars", type=int, default=None, help="bars of the synthetic workload (default 8760)")
    p.add_argument("--seconds", type=float, default=1.0, help="timed run per device, after the warm-up")
    p.add_argument("--json", action="store_true", help=json_help)
    p.set_defaults(func=cmd_gpu_profile)
    return gpu


def _info() -> dict[str, Any]:
    from threadx.gpu.balance import active_weights, load_profile, profile_path, profile_problem
    from threadx.gpu.devices import detect
    from threadx.monitor import gpu_sample

    status = detect()
    out = status.to_dict()
    telemetry, telemetry_status = gpu_sample()
    by_name = {}
    for reading in telemetry:  # NVML and CUDA may number devices differently: match by name and order
        by_name.setdefault(reading.get("name"), []).append(reading)
    for device in out["devices"]:
        readings = by_name.get(device["name"]) or []
        device["telemetry"] = readings.pop(0) if readings else None
    out["telemetry_status"] = telemetry_status
    path = profile_path()
    profile = load_profile(path)
    out["profile"] = {"path": str(path), "stored": profile.to_dict() if profile else None}
    if status.devices:
        weights = active_weights(status.devices, path)
        out["weights"] = {"values": list(weights.values), "source": weights.source, "note": weights.note}
        out["profile"]["problem"] = profile_problem(profile, status.devices)
    else:
        out["weights"] = None
    return out


def cmd_gpu_info(args: argparse.Namespace) -> int:
    """Devices (name, memory, compute capability, telemetry), the weights and the profile."""
    from threadx.cli.common import _print_json, _table
    from threadx.units import format_bytes, format_metric

    info = _info()
    if args.json:
        _print_json(info)
        return 0
    print(f"backend: {info['backend'] or '-'}   driver: {info['driver_version'] or '-'}   "
          f"CuPy: {info['cupy_version'] or 'not installed'}"
          + (f" ({info['cupy_devices']} device(s))" if info["cupy_devices"] is not None else ""))
    for note in info["notes"]:
        print(f"note: {note}")
    if not info["available"]:
        print(f"no usable GPU: {info['reason'] or 'no CUDA device found'}; sweeps run on the CPU")
    if info["devices"]:
        weights = info["weights"]["values"] if info["weights"] else [None] * len(info["devices"])
        rows = []
        for device, weight in zip(info["devices"], weights):
            t = device.get("telemetry") or {}
            rows.append({
                "index": device["index"], "name": device["name"],
                "memory": format_bytes(device["total_memory"] or None, ascii_only=True),
                "cc": ".".join(str(v) for v in device["compute_capability"]),
                "weight": f"{weight:.2f}" if weight is not None else "-",
                "util": format_metric("util_percent", t.get("util_percent"), ascii_only=True),
                "vram used": format_bytes(t.get("mem_used"), ascii_only=True),
                "temp": f"{t['temperature_c']:.0f} C" if t.get("temperature_c") is not None else "-",
                "power": f"{t['power_w']:.0f} W" if t.get("power_w") is not None else "-",
            })
        print(_table(rows, ("index", "name", "memory", "cc", "weight", "util", "vram used", "temp", "power")))
        if info["weights"]:
            w = info["weights"]
            print(f"split: {w['source']} weights" + (f" ({w['note']})" if w["note"] else ""))
    profile = info["profile"]
    stored = profile["stored"]
    if stored:
        ratios = "/".join(f"{r:.2f}" for r in stored["ratios"])
        state = "active" if info["weights"] and info["weights"]["source"] == "profile" else \
            f"not used: {profile.get('problem') or 'no usable GPU'}"
        print(f"profile: {profile['path']} measured {stored['created_at']} ratios {ratios} ({state})")
    else:
        print(f"profile: none at {profile['path']} (run `threadx gpu profile`)")
    if info["devices"] and not any(d.get("telemetry") for d in info["devices"]):
        print(f"telemetry: {info['telemetry_status']}")
    return 0


def cmd_gpu_profile(args: argparse.Namespace) -> int:
    """Measure every device on the real kernel, store the ratios, print them."""
    from threadx.cli.common import _print_json, _table
    from threadx.gpu.balance import PROFILE_WORKLOAD, measure_profile, save_profile
    from threadx.gpu.devices import detect

    for name in ("combos", "bars"):
        value = getattr(args, name)
        if value is not None and value < (2 if name == "bars" else 1):
            raise ParamError(f"--{name} must be a positive whole number, got {value}")
    if not args.seconds > 0:
        raise ParamError(f"--seconds must be > 0, got {args.seconds}")
    status = detect()
    if not status.available:
        raise ParamError(f"no GPU to profile: {status.reason or 'no CUDA device found'}")
    workload = {k: v for k, v in (("combos", args.combos), ("bars", args.bars)) if v is not None}
    profile = measure_profile(status.devices, workload={**PROFILE_WORKLOAD, **workload}, min_seconds=args.seconds)
    path = save_profile(profile)
    if args.json:
        _print_json({**profile.to_dict(), "path": str(path)})
        return 0
    rows = [{"index": d.index, "name": d.name, "combos/s": f"{rate:,.0f}", "ratio": f"{ratio:.3f}"}
            for d, rate, ratio in zip(status.devices, profile.combos_per_s, profile.ratios)]
    print(_table(rows, ("index", "name", "combos/s", "ratio")))
    print(f"whole machine: {sum(profile.combos_per_s):,.0f} combos/s "
          f"({profile.workload['strategy']}, {profile.workload['bars']:,} bars, {profile.workload['combos']:,} combos)")
    print(f"saved {path} ({datetime.now(timezone.utc):%Y-%m-%d}); used until it is 14 days old or the devices change")
    return 0
