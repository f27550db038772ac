"""Shared UI state and cached loaders of the workstation.

``st.session_state`` keys (the single source of UI state):

- ``dataset``          name of the active dataset (sidebar, every page)
- ``strategy``         active strategy name
- ``params:<name>``    last params used for a strategy on the Backtest page
- ``open_in_backtest`` {"request": BacktestRequest.to_dict(), "run_id"} handed over by the
                       Optimisation page (the shown run's data, winner and engine options)
- ``backtest``         {"result", "dataset", "strategy", "request", "data", "frame", "origin"}:
                       the backtest shown on the Backtest page and what made it
- ``bt_handed_data``   {"ref", "origin", "picker"}: the reopened run's data, used by the
                       Backtest page's runs until another dataset is picked
- ``bt_engine_extra``  engine options of a reopened run that have no widget (fraction, ...)
- ``sweep_job``        id of the sweep job the Optimisation page follows
- ``sweep_run``        run id of the stored sweep shown on the Optimisation page
- ``data_flash``       message shown once by the Data page after an import, rename or delete
- ``sweep_job_shown``  id of the finished sweep job whose run was shown once (later reloads stay)
"""
from __future__ import annotations

import os
from typing import Any

import pandas as pd
import streamlit as st

DEFAULT_DATASET = "synthetic/BTC_USDT-1h"
_REPICK = "_dataset_repick"  # session flag: set the dataset picker from "dataset" on the next run


def dataset_names() -> list[str]:
    """Datasets in the data root (the synthetic sample is created on first use)."""
    from threadx.data.catalog import list_datasets
    from threadx.data.synthetic import ensure_sample

    ensure_sample()
    table = list_datasets()
    return list(table["name"]) if len(table) else [DEFAULT_DATASET]


@st.cache_data(show_spinner=False, max_entries=16)
def _load(name: str, mtime: float) -> pd.DataFrame:
    import threadx

    return threadx.load_ohlcv(name)


def load_dataset(name: str) -> pd.DataFrame:
    """The canonical frame of a dataset, cached by name and file modification time."""
    from threadx.data.catalog import resolve_dataset

    path = resolve_dataset(name)
    return _load(name, os.path.getmtime(path))


def datasets_changed(message: str, select: str | None = None) -> None:
    """After an import, rename or delete: drop the cached frames, make ``select`` the active
    dataset, and rerun the page so the table and every picker list the datasets anew; the
    page shows ``message`` (``data_flash``) on that run."""
    _load.clear()
    if select is not None:
        st.session_state["dataset"] = select
    st.session_state[_REPICK] = True  # the picker shows "dataset" again (or the default, if it is gone)
    st.session_state["data_flash"] = message
    st.rerun()


def active_dataset() -> str:
    """The dataset chosen in this session (the synthetic BTC sample by default)."""
    names = dataset_names()
    current = st.session_state.get("dataset")
    if current not in names:
        current = DEFAULT_DATASET if DEFAULT_DATASET in names else names[0]
        st.session_state["dataset"] = current
    return current


def dataset_picker(label: str = "Dataset", key: str = "dataset_picker") -> str:
    """A select box over the datasets, bound to the session's active dataset.

    The box is set through its session-state key (never ``index``), so a change made by
    :func:`datasets_changed` reaches the browser too: a browser keeps a widget's shown value
    when only its default changes."""
    names = dataset_names()
    current = active_dataset()
    if st.session_state.pop(_REPICK, False) or st.session_state.get(key) not in names:
        st.session_state[key] = current
    choice = st.selectbox(label, names, key=key,
                          format_func=lambda n: f"{n} (synthetic)" if n.startswith("synthetic/") else n)
    st.session_state["dataset"] = choice
    return choice


def strategy_picker(key: str, default: str) -> str:
    """A select box over the registered strategies, starting at the session's active one."""
    import threadx

    names = [n for n in threadx.strategies() if not n.startswith("test_")]  # test-only ones aside
    current = st.session_state.get("strategy", default)
    choice = st.selectbox("Strategy", names, index=names.index(current) if current in names else 0, key=key)
    st.session_state["strategy"] = choice
    return choice


def dataset_and_strategy(key: str, default: str) -> tuple[str, str]:
    """The dataset picker and a strategy picker side by side: (dataset, strategy)."""
    left, right = st.columns([3, 2])
    with left:
        dataset = dataset_picker()
    with right:
        strategy = strategy_picker(key, default=default)
    return dataset, strategy


def label_dataset(name: str, df: pd.DataFrame | None = None) -> str:
    """A dataset's name, marked when it is the synthetic sample."""
    synthetic = name.startswith("synthetic/") or bool(df is not None and df.attrs.get("synthetic"))
    return f"{name} — synthetic sample data" if synthetic else name


@st.cache_resource(show_spinner=False)
def cuda_status():
    """CUDA devices as the GPU executor sees them (numba.cuda), detected once per server."""
    from threadx.gpu.devices import detect

    return detect()


def gpu_status() -> tuple[bool, str]:
    """(available, device names or the reason there is none) for the sidebar."""
    status = cuda_status()
    if status.available:
        return True, ", ".join(d.name for d in status.devices)
    return False, status.reason or "no CUDA device found"


def handover(request: Any, run_id: str | None = None) -> None:
    """Carry a :class:`~threadx.requests.BacktestRequest` (a run's winner on its data and
    engine options) to the Backtest page; ``run_id``: the run it comes from."""
    st.session_state["open_in_backtest"] = {"request": request.to_dict(), "run_id": run_id}
