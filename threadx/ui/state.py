"""Shared UI state and cached loaders of the workstation.

``st.session_state`` keys (the single source of UI state):

- ``dataset``          name of the active dataset (sidebar, every page)
- ``strategy``         active strategy name
- ``params:<name>``    last params used for a strategy on the Backtest page (the form starts
                       from the workspace file's values, else these, else the defaults)
- ``open_in_backtest`` {"request": BacktestRequest.to_dict(), "run_id"} handed over by the
                       Optimisation page (the shown run's data, winner and engine options)
- ``backtest``         {"result", "dataset", "strategy", "request", "data", "frame", "origin", "bt_id"}:
                       the backtest shown on the Backtest page, what made it and its ``bt`` id
                       (cleared when another strategy is picked)
- ``bt_handed_data``   {"ref", "origin", "picker"}: the reopened run's data, used by the
                       Backtest page's runs until another dataset is picked
- ``bt_engine_extra``  engine options of a reopened run that have no widget (fraction, ...)
- ``sweep_job``        id of the sweep job the Optimisation page follows
- ``sweep_run``        run id of the stored sweep shown on the Optimisation page (mirrored in the
                       URL's ``run``)
- ``bt_figures``       the Backtest page's figures of the shown result and view (:func:`session_memo`)
- ``data_flash``       message shown once by the Data page after an import, rename or delete
- ``sweep_job_shown``  id of the finished sweep job whose run was shown once (later reloads stay)
- ``_url_read``        flag: the URL's query params were read (on the session's first run)
- ``_remembered:<key>`` the session's dataset / strategy on its previous run: a change is
                       written to the workspace file (:func:`threadx.ui.workspace.save_last_choice`)
- ``_workspace_warned`` messages about the workspace file already shown in this session
                       (threadx.ui.workspace)

URL query params (``st.query_params``), what identifies the view, so a refresh or a link
reopens it (the form values live in the workspace file, threadx.ui.workspace):

- ``dataset``          the active dataset, ``strategy`` the active strategy: read on the first
                       run of a session (:func:`restore_from_url`; an unknown one is warned
                       about and left out; none: the last choice of any tab), written back by :func:`active_dataset`,
                       :func:`dataset_picker` and :func:`strategy_picker`
- ``bt``               id of the backtest shown on the Backtest page (its request stored by
                       :func:`threadx.ui.workspace.save_backtest`); a new session re-runs it
- ``run``              the Optimisation page's run on display (owned by that page); ``wf``, ``research``
                       and ``portfolio``: the Validation, Research and Portfolio pages' (:func:`stored_pick`)
- ``job``              the active job the page follows (:func:`threadx.ui.widgets.followed_job`):
                       a refresh follows it again, not another tab's
"""
from __future__ import annotations

import re
from typing import Any, Callable

import pandas as pd
import streamlit as st

from threadx.errors import ThreadXError
from threadx.filestamp import file_stamp

DEFAULT_DATASET = "synthetic/BTC_USDT-1h"
DEFAULT_STRATEGY = "bb_atr"  # the flagship (SPEC §4): every page's strategy when nothing chose one
_URL_READ = "_url_read"  # session flag: the URL's dataset and strategy were read


def dataset_names() -> list[str]:
    """Datasets in the data root (the synthetic sample is created on first use)."""
    from threadx.data.catalog import list_datasets
    from threadx.data.synthetic import ensure_sample

    ensure_sample()
    table = list_datasets()
    return list(table["name"]) if len(table) else [DEFAULT_DATASET]


def dataset_bars(name: str) -> int:
    """The bars of dataset ``name`` as the catalog counts them (0 when it is not listed)."""
    from threadx.data.catalog import list_datasets

    table = list_datasets()
    rows = table[table["name"] == name] if len(table) else table
    return int(rows["bars"].iloc[0]) if len(rows) else 0


# one shared frame rather than a copy per rerun (cache_data): pages only read it, and the
# engine's Bars keeps its own copy, checked against the frame (threadx.data.bars.as_bars)
@st.cache_resource(show_spinner=False, max_entries=16)
def _load(name: str, stamp: tuple[int, int, int, int]) -> pd.DataFrame:
    """The frame of dataset ``name`` whose file has ``stamp`` (the cache key)."""
    import threadx

    return threadx.load_ohlcv(name)


def load_dataset(name: str) -> pd.DataFrame:
    """The canonical frame of a dataset, cached by name and its file's stamp
    (:func:`~threadx.filestamp.file_stamp`: a rewrite that puts the mtime back is seen)."""
    from threadx.data.catalog import resolve_dataset

    path = resolve_dataset(name)
    return _load(name, file_stamp(path))


def load_dataset_or_error(name: str, what: str | None = None) -> pd.DataFrame | None:
    """The frame of a dataset (:func:`load_dataset`), or None after one ``st.error`` saying why
    it cannot be loaded (gone, unreadable, invalid), led by ``what`` it means for the page."""
    try:
        return load_dataset(name)
    except (ThreadXError, OSError) as exc:
        reason = f"cannot load {plain(name)}: {plain(str(exc), 400)}"
        st.error(f"{what}: {reason}" if what else reason[:1].upper() + reason[1:])
        return None


def datasets_changed(message: str, select: str | None = None) -> None:
    """After an import, rename or delete: drop the cached frames, make ``select`` the active
    dataset, and rerun the page so the table and every picker list the datasets anew; the
    page shows ``message`` (``data_flash``) on that run."""
    _load.clear()
    if select is not None:
        st.session_state["dataset"] = select
    elif st.session_state.get("dataset") not in dataset_names():  # deleted here: no notice that it is gone
        st.session_state.pop("dataset", None)
    st.session_state["data_flash"] = message
    st.rerun()


def strategy_unavailable(name: str) -> str:
    """Why a strategy the session held is gone (its file's load error, or removed)."""
    from threadx.strategy import user

    for file_name, error in user.load_errors().items():
        if file_name == f"{name}.py" or f"{name!r}" in error:
            return error
    return "no strategy of that name is loaded (its file was removed or renamed)"


def strategy_names() -> list[str]:
    """The strategies the pages offer (the registered ones, test-only ones aside:
    :func:`threadx.ui.strategies.reserved_for_tests`)."""
    import threadx
    from threadx.ui.strategies import reserved_for_tests

    return [n for n in threadx.strategies() if not reserved_for_tests(n)]


def active_strategy(names: list[str]) -> str | None:
    """The strategy a page starts from: the session's (a pick on any page, a link, the last
    choice of another tab), else :data:`DEFAULT_STRATEGY`, else the first of ``names``."""
    restore_from_url()
    return next((n for n in (st.session_state.get("strategy"), DEFAULT_STRATEGY) if n in names),
                names[0] if names else None)


def _default_dataset(names: list[str]) -> str:
    return DEFAULT_DATASET if DEFAULT_DATASET in names else names[0]


_MARKDOWN = re.compile(r"([\\`*\[\]()<>#!|~$])")


def sentence(text: str) -> str:
    """A note (lower-case, no full stop, as functions word them) as a sentence of its own.

    >>> sentence("the bars stay BTC_USDT's")
    "The bars stay BTC_USDT's."
    """
    return text[:1].upper() + text[1:] + "."


def plain(text: str, limit: int = 80) -> str:
    """Text from outside (a URL) shown in Markdown as typed: cut to ``limit`` characters,
    Markdown's link, emphasis, HTML and math characters escaped."""
    text = str(text)
    return _MARKDOWN.sub(r"\\\1", text[:limit] + ("…" if len(text) > limit else ""))


def restore_from_url() -> None:
    """On the first run of a session (a new tab, a refresh, a link): the dataset and strategy
    named by the URL's ``dataset`` / ``strategy`` query params become the session's, else the
    last ones chosen (the workspace file: another tab, before a restart). An unknown one in the
    URL gives one warning and is left out (the last choice or the default stays)."""
    if st.session_state.get(_URL_READ):
        return
    st.session_state[_URL_READ] = True
    names, known = dataset_names(), strategy_names()  # (listed once: each lists a folder)
    _restore_last_choice(names, known)
    name = st.query_params.get("dataset")
    if name:
        if name in names:
            st.session_state["dataset"] = name
        else:
            instead = st.session_state.get("dataset") if st.session_state.get("dataset") in names else None
            st.warning(f"The link names dataset **{plain(name)}**, which is not in the data folder: showing "
                       f"{label_dataset(instead or _default_dataset(names))} instead.")
    strategy = st.query_params.get("strategy")
    if strategy:
        if strategy in known:
            st.session_state["strategy"] = strategy
        else:
            st.warning(f"The link names strategy **{plain(strategy)}**, which is not available: "
                       f"{plain(strategy_unavailable(strategy), 600)} (strategies: {', '.join(known)}); showing "
                       f"{active_strategy(known)} instead.")
    _start_remembering(names, known)


def _restore_last_choice(datasets: list[str], strategies: list[str]) -> None:
    """The dataset and strategy last chosen (in any tab, before a restart) become the new
    session's, where they still exist; a link's, read next, win over them."""
    from threadx.ui import workspace

    last = workspace.last_choice()
    if last.get("dataset") in datasets:
        st.session_state["dataset"] = last["dataset"]
    if last.get("strategy") in strategies:
        st.session_state["strategy"] = last["strategy"]


def _start_remembering(datasets: list[str], strategies: list[str]) -> None:
    """What the session starts on is not a choice: only a change from it is written."""
    st.session_state[_REMEMBERED + "dataset"] = st.session_state.get("dataset") or _default_dataset(datasets)
    st.session_state[_REMEMBERED + "strategy"] = active_strategy(strategies)


def linked_run(session_key: str, param: str) -> str | None:
    """The stored run a page shows: the session's (``session_key``), else the URL's ``?param=`` (a
    reload or a shared link, taken once per session); the URL follows the session's, so that a
    reload or a copied link opens it again. None when there is none."""
    url = st.query_params.get(param)
    run_id = st.session_state.get(session_key)
    if not run_id and url and session_key not in st.session_state:
        run_id = st.session_state[session_key] = url
    if run_id and url != run_id:
        st.query_params[param] = run_id
    return run_id or None


def stored_pick(label: str, ids: list[str], prefix: str, param: str, describe: Callable[[str], str],
                what: str, notes: Any = None) -> str:
    """The stored result (of ``ids``, newest first) a page shows, picked in its history box
    (key ``<prefix>_history``): the session's (``<prefix>_run``, which a finished job sets with
    ``_<prefix>_repick``), else the one the URL's ``?param=`` names (a refresh, a link), else the
    newest; the URL names the pick. A refreshed page showed the newest stored one, maybe another
    tab's. An unknown id in the URL is said (``what``: "research", "portfolio"; in ``notes``, the
    page's container for what its link got wrong, at its top) and left out."""
    held = linked_run(f"{prefix}_run", param)
    if held and held not in ids:
        (notes or st).warning(f"The link names {what} **{plain(held)}**, which is not stored (deleted?): showing "
                              f"{plain(ids[0])} instead.")
        held = st.session_state[f"{prefix}_run"] = None
    repick = st.session_state.pop(f"_{prefix}_repick", False)
    if repick or st.session_state.get(f"{prefix}_history") not in ids:
        st.session_state[f"{prefix}_history"] = held if held in ids else ids[0]
    pick = st.selectbox(label, ids, key=f"{prefix}_history", format_func=describe)
    st.session_state[f"{prefix}_run"] = pick
    if st.query_params.get(param) != pick:
        st.query_params[param] = pick
    return pick


def none_stored(prefix: str, param: str, what: str, notes: Any = None) -> None:
    """:func:`stored_pick` where nothing is stored: a link's ``?param=`` id is said (``what``:
    "research", "portfolio") and dropped (it was left in the URL without a word)."""
    held = linked_run(f"{prefix}_run", param)
    if held:
        (notes or st).warning(f"The link names {what} **{plain(held)}**, which is not stored (deleted?), and no "
                              f"{what} is stored yet.")
        drop_linked_run(f"{prefix}_run", param)


def drop_linked_run(session_key: str, param: str) -> None:
    """Forget the run :func:`linked_run` gave (it cannot be read, and the page said why), in the
    session and in the URL: a reload does not open it again."""
    st.session_state[session_key] = None
    st.query_params.pop(param, None)


_REMEMBERED = "_remembered:"  # + "dataset" / "strategy": the session's choice on its previous run
_DATASET_GONE = "_dataset_gone"  # (active_dataset) the notice of a dataset gone, shown by the next run


def _to_url(key: str, value: str | None) -> None:
    """Write a query param (only when it changes, so reruns send nothing); a change of the
    session's choice is also written to the workspace file, for the next new tab."""
    if value is None:
        return
    if st.query_params.get(key) != value:
        st.query_params[key] = value
    if st.session_state.get(_REMEMBERED + key) != value:
        from threadx.ui import workspace

        st.session_state[_REMEMBERED + key] = value
        workspace.save_last_choice(key, value)


def active_dataset() -> str:
    """The dataset chosen in this session (the URL's on its first run, else the last one chosen
    in any tab, else the synthetic BTC sample); the URL's ``dataset`` and ``strategy`` follow
    the session's. One that left the data folder since the last run (deleted or renamed
    elsewhere) is replaced and the script runs again at once, naming it in a notice: whatever
    button was pressed in this run is not acted on."""
    restore_from_url()
    names = dataset_names()
    current = st.session_state.get("dataset")
    gone = st.session_state.pop(_DATASET_GONE, None)  # (said by the run before, which ran nothing)
    if gone is not None:
        st.warning(gone)
    if current not in names:
        fallback = _default_dataset(names)
        st.session_state["dataset"] = fallback
        if current is not None and fallback in names:
            # said in a run of its own: a button pressed in this run (Run backtest, Launch) was pressed for the
            # dataset that is gone, and ran on the fallback without a word (a hostile test)
            st.session_state[_DATASET_GONE] = (f"Dataset **{plain(current)}** is no longer in the data folder: showing "
                                               f"{label_dataset(fallback)} instead (nothing was run on it).")
            st.rerun()
        current = fallback
    _to_url("dataset", current)
    held = st.session_state.get("strategy")  # (a page without a strategy box links the session's too)
    if held is None:
        _to_url("strategy", active_strategy(strategy_names()))
    elif held in strategy_names():  # one that stopped loading: not replaced by a fallback saved as a choice
        _to_url("strategy", held)
    return current


def dataset_picker(label: str = "Dataset", key: str = "dataset_picker") -> str:
    """A select box over the datasets, bound to the session's active dataset.

    The box is set through its session-state key (never ``index``), so a change made by
    :func:`datasets_changed` reaches the browser too: a browser keeps a widget's shown value
    when only its default changes."""
    names = dataset_names()
    current = active_dataset()
    # set from the session's dataset on every run (a pick reaches it first, through on_change): the
    # box of another page is another widget, which showed the list's first dataset after a page
    # switch when the dataset had been set by a link or Open in Backtest rather than picked
    st.session_state[key] = current
    choice = st.selectbox(label, names, key=key, on_change=_picked, args=(key,),
                          format_func=lambda n: f"{n} (synthetic)" if n.startswith("synthetic/") else n)
    st.session_state["dataset"] = choice
    _to_url("dataset", choice)
    return choice


def _picked(key: str) -> None:
    """on_change of the dataset box: the pick becomes the session's dataset before the page runs."""
    st.session_state["dataset"] = st.session_state[key]


def strategy_picker(key: str) -> str:
    """A select box over the registered strategies, starting at the session's active one
    (the URL's ``strategy`` on the session's first run); the URL follows the choice. A strategy
    the session held that is gone (its file deleted, or no longer loading) is named with the
    reason, and :func:`strategy_fell_back` says so for the rest of this script run."""
    restore_from_url()
    names = strategy_names()
    gone_names: list[str] = []
    for held in (key, "strategy"):  # (the box's own key is dropped by Streamlit on a page switch)
        gone = st.session_state.get(held)
        if gone is not None and gone not in names:
            st.session_state.pop(held)
            if gone not in gone_names:
                gone_names.append(gone)
    for gone in gone_names:
        st.warning(f"Strategy {gone!r} is not available now: {plain(strategy_unavailable(gone), 600)}. The page shows "
                   "another strategy instead (nothing was started on it).")
    st.session_state[_FELL_BACK] = gone_names[0] if gone_names else None
    current = active_strategy(names)
    # a value already in Session State (a reopened run) wins: no index of its own then, as Streamlit asks
    index = 0 if key in st.session_state or current is None else names.index(current)
    choice = st.selectbox("Strategy", names, index=index, key=key)
    st.session_state["strategy"] = choice
    _to_url("strategy", choice)
    return choice


_FELL_BACK = "_strategy_fell_back"  # (strategy_picker) the strategy this script run could not keep


def strategy_fell_back() -> str | None:
    """The strategy the picker could not keep in this script run (gone since the last one):
    a button pressed in this run was pressed for it, so a page runs nothing on it."""
    return st.session_state.get(_FELL_BACK)


def dataset_and_strategy(key: str) -> tuple[str, str]:
    """The dataset picker and a strategy picker side by side: (dataset, strategy)."""
    left, right = st.columns([3, 2])
    with left:
        dataset = dataset_picker()
    with right:
        strategy = strategy_picker(key)
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


MONITOR_EVERY_S = 2.0  # the server's machine readings (CPU, RAM, GPUs) are at most this often
MONITOR_KEEP_S = 600.0  # ... and kept this long (the System monitor's history)


@st.cache_resource(show_spinner=False)
def machine_history() -> Any:
    """The server's machine readings of the last :data:`MONITOR_KEEP_S` seconds (one history for
    every session), fed by :func:`take_machine_reading`."""
    from threadx import monitor

    return monitor.MonitorHistory(max_age_s=MONITOR_KEEP_S)


def take_machine_reading() -> dict[str, Any]:
    """The newest machine reading, a new one taken into :func:`machine_history` unless one is under
    :data:`MONITOR_EVERY_S` old. Every page served calls it, and the sidebar's job list every 2 s
    while jobs run, so the System monitor shows what ran before it was opened (it took readings
    only while open: a gap otherwise). No thread of its own: nothing runs when nothing is served."""
    import time

    from threadx import monitor

    history = machine_history()
    latest = history.latest()
    if latest is None or time.time() - latest["time"].timestamp() >= MONITOR_EVERY_S:
        history.add(monitor.sample())
        latest = history.latest()
    return latest


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


def session_memo(slot: str, key: tuple, build: Callable[[], Any], keep: int = 4) -> Any:
    """``build()``, remembered in this session under ``slot`` for ``key`` (the ``keep`` most
    recent keys): a rerun that shows the same thing (a page switch, a widget elsewhere) reuses
    it. ``key`` must name everything the value depends on.

    Example: ``session_memo("bt_figures", (id(result), start, end), lambda: price_figure(...))``
    """
    memo: dict = st.session_state.setdefault(slot, {})
    if key in memo:
        memo[key] = memo.pop(key)  # most recent last
        return memo[key]
    value = memo[key] = build()
    while len(memo) > keep:
        memo.pop(next(iter(memo)))
    return value


def valid_combos(search: Any, limit: int) -> int:
    """``search.count_valid_upto(limit)`` (the live count of a page's grid), remembered in this
    session for the strategy's code and the space: a constraint written for one param set at a
    time is called once per combo (a million calls, seconds), and the pages counted again on
    every rerun, whatever widget changed."""
    if not search.strategy.constraints or search.size > limit:
        return search.count_valid_upto(limit)  # (no constraint to call)
    key = (search.strategy.name, search.strategy.code_hash, limit,
           tuple((a.name, tuple(a.values)) for a in search.axes))
    return session_memo("valid_combos", key, lambda: search.count_valid_upto(limit))
