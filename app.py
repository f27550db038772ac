"""ThreadX workstation: `streamlit run app.py` (or `make app`)."""
from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="ThreadX", page_icon=":material/show_chart:", layout="wide")

from threadx.ui.serving import foreign_host, refusal  # noqa: E402

if foreign_host():  # a page of another site re-pointed at this machine (DNS rebinding): nothing runs for it
    st.error(refusal())
    st.stop()

from threadx.errors import ThreadXError  # noqa: E402
from threadx.settings_file import resolve, unknown_variables  # noqa: E402

try:
    resolve()  # a malformed threadx.toml, unknown key or bad value: one line, not a traceback per page
except ThreadXError as exc:
    st.error(f"Settings: {exc}")
    st.stop()

from threadx.ui.user_code import guard_folder_loads  # noqa: E402

guard_folder_loads()  # a strategies-folder file runs in a process of its own before the server runs it

from threadx.ui.state import (active_dataset, gpu_status, label_dataset, restore_from_url,  # noqa: E402
                              take_machine_reading)
from threadx.ui.widgets import go_to_requested_page  # noqa: E402
from threadx.warmup import warm_in_background, warming_note  # noqa: E402

warm_in_background()  # once per server: the first backtest finds the kernels loaded
take_machine_reading()  # CPU, RAM and GPU load while the workstation is used, for the System monitor's history

JOBS_EVERY_S = 2.0  # the sidebar's job list refreshes this often

# views/, not pages/: with a pages/ folder, Streamlit serves a link such as /Optimisation as a
# page of its own without running this script (no sidebar, no navigation, no URL restore)
PAGES = [
    st.Page("views/1_Data.py", title="Data", url_path="Data", icon=":material/database:"),
    # (its own path moved aside: a default page reserves one, served at / alone; /Backtest is below)
    st.Page("views/2_Backtest.py", title="Backtest", url_path="Backtest_page", icon=":material/candlestick_chart:",
            default=True),
    st.Page("views/3_Optimisation.py", title="Optimisation", url_path="Optimisation", icon=":material/tune:"),
    st.Page("views/4_Validation.py", title="Validation", url_path="Validation", icon=":material/verified:"),
    st.Page("views/5_System_monitor.py", title="System monitor", url_path="System_monitor",
            icon=":material/monitor_heart:"),
    st.Page("views/6_Strategies.py", title="Strategies", url_path="Strategies", icon=":material/code_blocks:"),
    st.Page("views/7_Research.py", title="Research", url_path="Research", icon=":material/grid_view:"),
    st.Page("views/8_Portfolio.py", title="Portfolio", url_path="Portfolio", icon=":material/account_balance:"),
]


def _to_the_backtest_page() -> None:
    """/Backtest, a link written as every other page's: the Backtest page, at /, with the link's
    query params (the default page is served at / alone: "Page not found" over it)."""
    st.switch_page(PAGES[1], query_params=st.query_params.to_dict())


BACKTEST_LINK = st.Page(_to_the_backtest_page, title="Backtest", url_path="Backtest", visibility="hidden")
navigation = st.navigation([*PAGES, BACKTEST_LINK])
go_to_requested_page()  # a page button pressed in the last run (widgets.page_button): before anything is built
# metric cards' figures shrink with the window (at 1024 px six cards a row cut "21.47 %" to "21.…" and a
# grade to "F (0.0/…"); their labels wrap rather than being cut ("Max drawd…")
# a search space's mode boxes (keys "...:mode") get no clear button: a box preset from the workspace has one
# (no index of its own), which cut "range" to "ra" at 1024 px, and an emptied mode reads as its default anyway
st.html("<style>[data-testid='stMetricValue'] {font-size: clamp(1.05rem, 1.9vw, 2.25rem);} "
        "[data-testid='stMetricLabel'] p {white-space: normal; word-break: keep-all; overflow-wrap: normal;} "
        "[class*='-mode'] button[aria-label='Clear value'] {display: none;}</style>")
restore_from_url()  # a link's dataset and strategy (warnings above the page, not in the sidebar)

with st.sidebar:
    st.markdown("### ThreadX")
    for line in unknown_variables():  # a misspelt variable left its default in force, unsaid
        st.warning(line)
    st.caption("Dataset")
    st.markdown(f"**{label_dataset(active_dataset())}**")
    available, reason = gpu_status()
    st.caption("Backend")
    st.markdown(f"CPU (numba){' + GPU: ' + reason if available else ''}")
    if not available:
        st.caption(f"GPU off: {reason}")
    if warming_note():
        st.caption(warming_note())


def active_jobs() -> list:
    """Queued and running jobs (a dead job process is marked failed, a queued job starts); with
    none, a job process is started ahead for the next one (threadx.ui.standby)."""
    from threadx.ui.jobs import JobRegistry
    from threadx.ui.standby import keep_one

    registry = JobRegistry()
    registry.refresh()
    active = registry.active()
    if not active and warming_note() is None:  # idle, kernels loaded: the next job starts warm
        keep_one()
    return active


def job_list() -> None:
    """The active jobs with their phase or progress; while there are any, refreshed on its own
    (a fragment), so a job leaves the list within seconds of finishing."""
    try:
        jobs = active_jobs()
        if jobs:
            take_machine_reading()  # (the load while jobs run, whatever page is open)
    except Exception as exc:  # noqa: BLE001 - the sidebar must never break a page
        st.caption(f"jobs unavailable: {exc}")
        return
    if jobs:
        st.caption("Jobs")
        for job in jobs:
            st.progress(job.fraction, text=f"{job.label}: {job.status_line}")


try:
    polling = bool(active_jobs())
except Exception:  # noqa: BLE001 - shown by job_list
    polling = False
with st.sidebar:  # no job, no polling: an idle workstation reruns nothing on its own
    st.fragment(job_list, run_every=JOBS_EVERY_S if polling else None)()

navigation.run()
