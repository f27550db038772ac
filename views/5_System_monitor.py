"""System monitor: CPU per core, RAM, swap, GPUs, running sweep workers, bank stats, history."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from threadx.units import format_bytes, format_count, format_metric, table_view
from threadx.ui import charts
from threadx.ui.jobs import JobRegistry
from threadx.ui.state import MONITOR_KEEP_S, cuda_status, machine_history, take_machine_reading
from threadx.ui.widgets import errors_as_lines

st.title("System monitor")


def _fmt(value, pattern: str) -> str:
    return "–" if value is None else pattern.format(value)


def _vram(used: int | None, total: int | None) -> str:
    """``2.0 GiB / 8.0 GiB``; "–" when the device does not report its memory."""
    return f"{format_bytes(used)} / {format_bytes(total)}" if used is not None and total else "–"


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
        why = snap.get("gpu_status") or "no CUDA device"  # ("no GPU monitoring: ...", "no NVIDIA driver: ...")
        st.caption(f"No GPU telemetry ({why})" if not why.startswith("no ") else why[0].upper() + why[1:])
        return
    for gpu in snap["gpus"]:
        c = st.columns(5)
        c[0].markdown(f"**GPU {gpu['index']}**  \n{gpu['name']}")
        c[1].metric("Utilisation", format_metric("util_percent", gpu.get("util_percent")))
        c[2].metric("VRAM", _vram(gpu.get("mem_used"), gpu.get("mem_total")))
        c[3].metric("Temperature", _fmt(gpu.get("temperature_c"), "{:.0f} °C"))
        c[4].metric("Power", _fmt(gpu.get("power_w"), "{:.0f} W"))


@st.fragment(run_every=2.0)
def live() -> None:
    with errors_as_lines():  # a settings file made bad while the page is open: one line
        live_figures()


def live_figures() -> None:
    snap = take_machine_reading()  # (also taken by every page served and while jobs run)
    history = machine_history()
    c = st.columns(4)
    c[0].metric("CPU", format_metric("cpu_total", snap["cpu_total"]))
    ram = snap["ram"]
    c[1].metric("RAM", format_metric("ram_percent", ram["percent"]),
                help=f"{format_bytes(ram['used'])} of {format_bytes(ram['total'])}")
    swap = snap["swap"]
    c[2].metric("Swap", format_metric("swap_percent", swap["percent"]),
                help=f"{format_bytes(swap['used'])} of {format_bytes(swap['total'])}")
    c[3].metric("GPUs", str(len(snap["gpus"])), help=snap.get("gpu_status") or None)
    st.plotly_chart(charts.cpu_figure(snap["cpu_percent"]), width="stretch", key="cpu_now")
    gpu_section(snap)

    frame = history.frame()
    if len(frame):
        cols = [col for col in frame.columns if col in ("cpu_total", "ram_percent", "swap_percent")
                or col.startswith("gpu")]
        title = f"Last {MONITOR_KEEP_S / 60:.0f} minutes"
        st.plotly_chart(charts.history_figure(frame, cols, title, "%"), width="stretch", key="history")
    gpu_history = history.gpu_frame()
    if len(gpu_history.columns):
        g = st.columns(2)
        g[0].plotly_chart(charts.history_figure(gpu_history, [c for c in gpu_history if c.endswith("_temp_c")],
                                                "GPU temperature", "°C"), width="stretch", key="gpu_temp")
        g[1].plotly_chart(charts.history_figure(gpu_history, [c for c in gpu_history if c.endswith("_power_w")],
                                                "GPU power", "W"), width="stretch", key="gpu_power")

    registry = JobRegistry()
    running = registry.running()
    st.subheader("Jobs")
    if not running:
        st.caption("No job running (sweeps, walk-forwards, research, portfolios).")
    for job in running:  # the job's own line: its unit (combos, steps, runners), rate and ETA where they mean something
        st.markdown(f"**{job.label}** · {job.status_line}")
        procs = pd.DataFrame(registry.worker_processes(job.job_id))
        if len(procs):  # rss in bytes, cpu_percent in percent: shown in their units, sortable
            shown, config = table_view(procs)
            st.dataframe(shown, width="stretch", hide_index=True, column_config=config)

    from threadx.indicators import default_bank

    stats = default_bank().stats()
    st.subheader("IndicatorBank (this server process)")
    b = st.columns(4)
    share, limit = format_metric("disk_used_share", stats["disk_used_share"]), format_bytes(stats["disk_limit_bytes"])
    b[0].metric("Hit rate", format_metric("hit_rate", stats.get("hit_rate", 0)))
    b[1].metric("Memory", format_bytes(stats.get("bytes_in_memory", 0)))
    b[2].metric("Disk cache", format_bytes(stats["disk_bytes"]), help=f"{share} of the {limit} limit")
    b[3].metric("Entries", format_count(stats.get("entries_in_memory", 0)))
    skipped, least = int(stats.get("disk_skipped", 0)), default_bank().min_compute_s
    why = "quicker to compute than to read back" if least is None else f"computed in under {least:g} s"
    one = skipped == 1
    not_stored = (f" {format_count(skipped)} {'result was' if one else 'results were'} {why}, so "
                  f"{'it was' if one else 'they were'} not stored (setting cache.min_compute).") if skipped else ""
    st.caption(f"Disk cache: {share} of its {limit} limit (THREADX_CACHE_LIMIT).{not_stored}")
    if stats["disk_near_limit"]:
        st.warning(f"The indicator disk cache is at {share} of its limit: the least "
                   "recently used entries are being evicted and recomputed when needed. Raise "
                   "THREADX_CACHE_LIMIT (e.g. 4GiB) or run `threadx cache clear`.")


LOG_LINES = 50  # the last lines of the log file shown


def log_section() -> None:
    """The last lines of the log file (runs, jobs, errors), newest last."""
    from threadx import logs
    from threadx.errors import ThreadXError
    from threadx.settings_file import resolve

    st.subheader("Log")
    try:
        settings = resolve()
    except ThreadXError as exc:
        st.error(str(exc))
        return
    path = settings.log_file()
    lines = logs.tail(LOG_LINES, path)
    st.caption(f"{path}: rotates at {format_bytes(settings['logging.max_bytes'])}, keeping "
               f"{settings['logging.backups']} older files (settings [logging]).")
    with st.expander(f"Last {len(lines)} lines of the log", expanded=bool(lines)):
        if lines:
            st.code("\n".join(lines), language=None)
        else:
            st.caption("No log yet: each backtest, sweep, job and error is recorded here.")


live()
log_section()
