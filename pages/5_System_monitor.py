"""System monitor: CPU per core, RAM, swap, GPUs, running sweep workers, bank stats, history."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from threadx import monitor
from threadx.ui import charts
from threadx.ui.jobs import JobRegistry

st.title("System monitor")


@st.cache_resource
def shared_history() -> monitor.MonitorHistory:
    """One history for the whole server: every session sees the last 10 minutes."""
    return monitor.MonitorHistory(max_age_s=600)


@st.cache_resource
def cuda_status():
    """CUDA devices as the GPU executor sees them (numba.cuda), detected once per server."""
    from threadx.gpu.devices import detect

    return detect()


def _fmt(value, pattern: str) -> str:
    return "–" if value is None else pattern.format(value)


def gpu_section(snap: dict) -> None:
    """Per GPU: utilisation, VRAM, temperature and power (NVML), and whether sweeps can use it."""
    status = cuda_status()
    if status.available:
        st.caption("GPU sweeps available (executor `gpu`): " + ", ".join(
            f"GPU {d.index} {d.name} (compute {d.compute_capability[0]}.{d.compute_capability[1]})"
            for d in status.devices))
    else:
        st.caption(f"GPU sweeps unavailable, sweeps run on the CPU: {status.reason or 'no CUDA device'}")
    if not snap["gpus"]:
        st.caption(f"No GPU telemetry: {snap.get('gpu_status') or 'no CUDA device'}")
        return
    for gpu in snap["gpus"]:
        c = st.columns(5)
        c[0].markdown(f"**GPU {gpu['index']}**  \n{gpu['name']}")
        c[1].metric("Utilisation", _fmt(gpu.get("util_percent"), "{:.0f} %"))
        used, total = gpu.get("mem_used"), gpu.get("mem_total")
        c[2].metric("VRAM", f"{used / 2**30:.1f} / {total / 2**30:.1f} GiB" if used is not None and total else "–")
        c[3].metric("Temperature", _fmt(gpu.get("temperature_c"), "{:.0f} °C"))
        c[4].metric("Power", _fmt(gpu.get("power_w"), "{:.0f} W"))


@st.fragment(run_every=2.0)
def live() -> None:
    snap = monitor.sample()
    history = shared_history()
    history.add(snap)
    c = st.columns(4)
    c[0].metric("CPU", f"{snap['cpu_total']:.0f} %")
    ram = snap["ram"]
    c[1].metric("RAM", f"{ram['percent']:.0f} %", help=f"{ram['used'] / 2**30:.1f} of {ram['total'] / 2**30:.1f} GiB")
    swap = snap["swap"]
    c[2].metric("Swap", f"{swap['percent']:.0f} %")
    c[3].metric("GPUs", str(len(snap["gpus"])), help=snap.get("gpu_status") or None)
    st.plotly_chart(charts.cpu_figure(snap["cpu_percent"]), width="stretch", key="cpu_now")
    gpu_section(snap)

    frame = history.frame()
    if len(frame):
        cols = [col for col in frame.columns if col in ("cpu_total", "ram_percent", "swap_percent")
                or col.startswith("gpu")]
        st.plotly_chart(charts.history_figure(frame, cols, "Last 10 minutes", "%"), width="stretch",
                        key="history")
    gpu_history = history.gpu_frame()
    if len(gpu_history.columns):
        g = st.columns(2)
        g[0].plotly_chart(charts.history_figure(gpu_history, [c for c in gpu_history if c.endswith("_temp_c")],
                                                "GPU temperature", "°C"), width="stretch", key="gpu_temp")
        g[1].plotly_chart(charts.history_figure(gpu_history, [c for c in gpu_history if c.endswith("_power_w")],
                                                "GPU power", "W"), width="stretch", key="gpu_power")

    registry = JobRegistry()
    running = registry.running()
    st.subheader("Sweeps")
    if not running:
        st.caption("No sweep running.")
    for job in running:
        st.markdown(f"**{job.label}** · {job.done:,}/{job.total:,} combos · "
                    f"{job.rate or 0:,.0f} backtests/s")
        procs = registry.worker_processes(job.job_id)
        if procs:
            st.dataframe(pd.DataFrame(procs), width="stretch", hide_index=True)

    from threadx.indicators import default_bank

    stats = default_bank().stats()
    st.subheader("IndicatorBank (this server process)")
    b = st.columns(4)
    b[0].metric("Hit rate", f"{stats.get('hit_rate', 0):.0%}")
    b[1].metric("Memory", f"{stats.get('bytes_in_memory', 0) / 2**20:,.1f} MiB")
    b[2].metric("Disk cache", f"{stats['disk_bytes'] / 2**20:,.1f} MiB",
                help=f"{stats['disk_used_share']:.0%} of the {stats['disk_limit_bytes'] / 2**20:,.0f} MiB limit")
    b[3].metric("Entries", f"{stats.get('entries_in_memory', 0):,}")
    st.caption(f"Disk cache: {stats['disk_used_share']:.0%} of its "
               f"{stats['disk_limit_bytes'] / 2**20:,.0f} MiB limit (THREADX_CACHE_LIMIT).")
    if stats["disk_near_limit"]:
        st.warning(f"The indicator disk cache is at {stats['disk_used_share']:.0%} of its limit: the least "
                   "recently used entries are being evicted and recomputed when needed. Raise "
                   "THREADX_CACHE_LIMIT (e.g. 4GiB) or run `threadx cache clear`.")


live()
