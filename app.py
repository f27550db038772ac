"""ThreadX workstation: `streamlit run app.py` (or `make app`)."""
from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="ThreadX", page_icon=":material/show_chart:", layout="wide")

from threadx.ui.state import active_dataset, gpu_status, label_dataset, restore_from_url  # noqa: E402

PAGES = [
    st.Page("pages/1_Data.py", title="Data", icon=":material/database:"),
    st.Page("pages/2_Backtest.py", title="Backtest", icon=":material/candlestick_chart:", default=True),
    st.Page("pages/3_Optimisation.py", title="Optimisation", icon=":material/tune:"),
    st.Page("pages/4_Validation.py", title="Validation", icon=":material/verified:"),
    st.Page("pages/5_System_monitor.py", title="System monitor", icon=":material/monitor_heart:"),
]
navigation = st.navigation(PAGES)
restore_from_url()  # a link's dataset and strategy (warnings above the page, not in the sidebar)

with st.sidebar:
    st.markdown("### ThreadX")
    st.caption("Dataset")
    st.markdown(f"**{label_dataset(active_dataset())}**")
    available, reason = gpu_status()
    st.caption("Backend")
    st.markdown(f"CPU (numba){' + GPU: ' + reason if available else ''}")
    if not available:
        st.caption(f"GPU off: {reason}")
    try:
        from threadx.ui.jobs import JobRegistry

        running = JobRegistry().running()
    except Exception as exc:  # the sidebar must never break a page
        running = []
        st.caption(f"jobs unavailable: {exc}")
    if running:
        st.caption("Running jobs")
        for job in running:
            st.progress(job.fraction, text=f"{job.label}: {job.done:,}/{job.total:,}")

navigation.run()
