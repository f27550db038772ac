"""Validation page (SPEC §7, §9): a walk-forward set up on a timeline, run as a job with
progress and Stop, and its results; the validation report of any stored sweep (bootstrap
CIs, DSR, PBO, stability heatmap) with the A-F grade card explaining each component.

Session state keys of this page (see threadx/ui/state.py for the shared ones):

- ``wf_job``     id of the walk-forward job this page follows
- ``wf_seen``    id of the finished job whose result was already put on screen
- ``wf_run``     run id of the stored walk-forward shown
- ``val_sweep``  (run_id, bootstrap n, S, seed) of the sweep validation shown
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

import threadx
from threadx.config import (DEFAULT_BOOTSTRAP, DEFAULT_MIN_TRADES, DEFAULT_SEED, DEFAULT_WF_IS_DAYS,
                            DEFAULT_WF_OOS_DAYS, DEFAULT_WF_SAMPLES, settings)
from threadx.data.catalog import resolve_dataset
from threadx.data.funding import funding_file_of
from threadx.engine.inputs import EngineOptions
from threadx.optimize.runner import default_workers
from threadx.engine.layout import METRIC_NAMES
from threadx.errors import ThreadXError
from threadx.filestamp import file_stamp
from threadx.optimize.space import SearchSpace, size_text
from threadx.optimize.store import ResultStore
from threadx.requests import (DatasetRef, WalkForwardRequest, describe_data, describe_options, describe_run,
                              funding_words)
from threadx.ui import strategies as strategies_ui
from threadx.ui import sweep_runs, validation_charts as vc
from threadx.ui.jobs import JobInfo, JobRegistry
from threadx.ui.state import (dataset_and_strategy, dataset_names, drop_linked_run, label_dataset, linked_run,
                              load_dataset_or_error, sentence, strategy_fell_back, valid_combos)
from threadx.ui.walk_forward_form import BOUNDS, form_state
from threadx.ui.widgets import (CONTROL_PX, choice_box, controls_row, differences, follow_job, followed_job,
                                funding_as_run, funding_caption, funding_toggle, job_progress, launch_held, metric_grid,
                                number_box, rule_problem, show_problems, space_editor, timings_section)
from threadx.units import format_count, format_metric, table_view
from threadx.validation.grading import LETTERS, score_text
from threadx.validation.pbo import check_S
from threadx.validation.regimes import FALL_LABEL, RULES_TEXT
from threadx.validation.report import (partial_note, sweep_data, sweep_evaluator, validate_sweep,
                                       walk_forward_evaluator)
from threadx.validation.stability import stability_grid
from threadx.validation.storage import is_stored, list_walk_forwards, load_walk_forward, stored_stamp
from threadx.validation.walkforward import DEFAULT_WF_GRID_LIMIT, plan_windows, window_lengths

SAMPLERS = ["grid", "random", "lhs", "sobol"]
STABILITY_RADIUS = 3
DATES = {col: st.column_config.DatetimeColumn(col, format="YYYY-MM-DD HH:mm")
         for col in ("start", "end", "is_start", "is_end", "oos_start", "oos_end")}

st.title("Validation")
registry = JobRegistry()
store = ResultStore()
RESULTS_DIR = str(settings().results_dir)


# --- cached loaders (keyed on hashable args: run id, results folder, file stamp, settings) ------

@st.cache_resource(show_spinner=False, max_entries=4)
def _walk_forward(run_id: str, root: str, stamp: tuple | None) -> tuple[Any, Any]:
    return load_walk_forward(run_id, root)


def data_problem(ref: Any) -> str | None:
    """Why a stored result's recorded candles cannot be had again (gone or changed), or None;
    read again only when the dataset's file changes (a page rerun does not reload it)."""
    if not isinstance(ref, dict) or not ref.get("fingerprint"):
        return None  # recorded without a fingerprint (an older run): nothing to compare
    stamp = _source_stamp(resolve_dataset, str(ref.get("source")))  # None: gone, or no file, asked each time
    text = json.dumps(ref, sort_keys=True, default=str)
    return _stamped_problem(text, stamp) if stamp is not None else _problem(text)


def _source_stamp(find: Callable[[str], Any], source: str) -> tuple | None:
    """The file stamp of the file ``find`` names for a dataset ``source``; None when there is none."""
    try:
        path = find(source)
        return file_stamp(path) if path else None
    except (ThreadXError, OSError):
        return None


def _problem(ref: str) -> str | None:
    try:
        return DatasetRef.from_dict(json.loads(ref)).problem()
    except ThreadXError as exc:  # a damaged record
        return str(exc)


@st.cache_data(show_spinner=False, max_entries=16)
def _stamped_problem(ref: str, stamp: tuple) -> str | None:
    return _problem(ref)


def stored_walk_forward(run_id: str) -> tuple[Any, Any]:
    """(WalkForwardResult, ValidationReport) of a stored walk-forward, cached by file time."""
    return _walk_forward(run_id, RESULTS_DIR, wf_stamp(run_id))


def inputs_stamp(strategy: str | None, data: Any) -> tuple:
    """What re-evaluating a stored result reads besides its own files: the stamps of its candles'
    file and of their funding file, and the strategy's code now. Part of the cached reports' and
    evaluators' keys: changed candles or code are evaluated again, and refused as the CLI refuses
    them (a report, a stability grid of the old ones was shown on: reused from the cache)."""
    source = str((data.get("source") if isinstance(data, dict) else data) or "")
    stamps = [_source_stamp(find, source) for find in (resolve_dataset, funding_file_of)]
    try:
        code = threadx.get_strategy(strategy).code_hash if strategy else None
    except ThreadXError:
        code = None
    return (*stamps, code)


def run_stamp(run_id: str) -> tuple | None:
    """The stored sweep's signature (its manifest's and parts' file stamps): a resumed run, or
    another run's files copied over it with their times kept, gets a new cache entry."""
    return sweep_runs.run_signature(store.folder(run_id))


@st.cache_resource(show_spinner=False, max_entries=8)
def _sweep_report(run_id: str, root: str, stamp: tuple | None, n: int, S: int, seed: int) -> Any:
    return validate_sweep(run_id, store=ResultStore(root), n=n, S=S, seed=seed)


@st.cache_resource(show_spinner=False, max_entries=2)
def _sweep_evaluator(run_id: str, root: str, stamp: tuple | None) -> Any:
    run = ResultStore(root).load(run_id)
    return sweep_evaluator(run, sweep_data(run))


@st.cache_resource(show_spinner=False, max_entries=2)
def _wf_evaluator(run_id: str, root: str, stamp: tuple | None) -> Any:
    wf, _ = _walk_forward(run_id, root, stamp)
    return walk_forward_evaluator(wf)


@st.cache_data(show_spinner=False, max_entries=64)
def _stability_grid(kind: str, run_id: str, root: str, stamp: tuple | None, combo_id: int, x: str, y: str,
                    metric: str) -> pd.DataFrame:
    evaluator = (_wf_evaluator if kind == "wf" else _sweep_evaluator)(run_id, root, stamp)
    return stability_grid(evaluator, combo_id, x, y, metric, radius=STABILITY_RADIUS)


def wf_stamp(run_id: str) -> tuple | None:
    """The stored walk-forward's file stamp (a new result, or one copied over it, gets a new cache entry)."""
    return stored_stamp(run_id, RESULTS_DIR)


# --- shared renderers -------------------------------------------------------------------------

def chart(fig: Any, key: str) -> None:
    st.plotly_chart(fig, width="stretch", key=f"chart_{key}")


def grade_card(grade: Any) -> None:
    """The letter big, the score, the cap if any, one row per component with its sentence."""
    with st.container(border=True):
        left, right = st.columns([1, 5], vertical_alignment="center")
        # (a stored report is read from files that may come from elsewhere: only a letter goes into the HTML)
        letter = grade.letter if grade.letter in LETTERS else "?"
        color = vc.grade_color(letter)
        left.markdown(f"<div style='font-size:5rem;font-weight:700;line-height:1;text-align:center;color:{color}'>"
                      f"{letter}</div><div style='text-align:center;margin-top:0.4rem'>"
                      f"<b>{score_text(grade.score)}</b> / {grade.max_score:.0f} points</div>", unsafe_allow_html=True)
        with right:
            st.markdown("**Grade card**: A ≥ 85, B ≥ 70, C ≥ 55, D ≥ 40, F below (out of 100 points).")
            if grade.cap:
                st.markdown(f":orange[**Cap:** {grade.cap}]")
            for row in vc.grade_rows(grade):
                c = st.columns([3, 2, 7], vertical_alignment="center")  # (labels broke mid-word at 1024 px)
                c[0].markdown(f"**{row['label']}**")
                share = row["points"] / row["max_points"] if row["max_points"] else 0.0
                c[1].progress(min(max(share, 0.0), 1.0), text=row["score"])
                c[2].markdown(row["explanation"])


def stability_heatmap(kind: str, run_id: str, stamp: tuple | None, report: Any, varying: list[str]) -> None:
    """Two param pickers among the varying params and the objective grid around the winner
    (``kind``: "sweep" or "wf", whose stored run is evaluated again)."""
    if len(varying) < 2:
        st.caption("The stability heatmap needs two params that vary in the search space.")
        return
    if report.stability.combo_id < 0:
        st.caption(f"No stability heatmap: {report.stability.note}.")
        return
    h = st.columns(3)
    x = h[0].selectbox("X", varying, index=0, key=f"{kind}_hm_x")
    y = h[1].selectbox("Y", [v for v in varying if v != x], index=0, key=f"{kind}_hm_y")
    names = list(METRIC_NAMES)
    objective = report.stability.objective
    metric = h[2].selectbox("Metric", names, index=names.index(objective) if objective in names else 0,
                            key=f"{kind}_hm_metric")
    try:
        with st.spinner("Evaluating the grid around the winner…"):
            grid = _stability_grid(kind, run_id, RESULTS_DIR, stamp, int(report.stability.combo_id), x, y, metric)
    except ThreadXError as exc:
        st.warning(f"Stability heatmap not available: {exc}")
        return
    chart(vc.stability_heatmap_figure(grid, x, y, metric, radius=STABILITY_RADIUS), key=f"{kind}_heatmap")


def robustness_sections(report: Any, key: str, heatmap: Callable[[], None] | None = None) -> None:
    """Bootstrap, DSR, PBO, stability and regimes of a validation report."""
    boot = report.robustness.bootstrap
    st.markdown("#### Bootstrap confidence intervals")
    chart(vc.bootstrap_figure(boot), key=f"{key}_boot")
    # (a row of its own: beside the caption, in two fifths of the page, "CI high" and its values were cut)
    st.dataframe(vc.bootstrap_table(boot), hide_index=True, width="content")
    st.caption(f"{boot.method.capitalize()}: {format_count(boot.n)} resamples of {format_count(boot.n_bars)} "
               f"per-bar returns in blocks of {format_count(boot.block)} bars (seed {boot.seed}). Sharpe p-value "
               f"**{format_metric('p_value', boot.p_value)}**. {boot.null}")

    st.markdown("#### Deflated Sharpe ratio")
    d = report.dsr
    ann = math.sqrt(boot.bars_per_year) if boot.bars_per_year else 1.0
    metric_grid([
        ("DSR", format_metric("dsr", d.dsr), "Probability that the true Sharpe exceeds SR0, the best Sharpe that N "
         "trials with no skill would show by luck, given T, skewness and kurtosis."),
        ("Sharpe (SR)", format_metric("sr", d.sr), f"Per bar; annualised {format_metric('sharpe', d.sr * ann)}."),
        ("SR0", format_metric("sr0", d.sr0), f"Expected best per-bar Sharpe of N unskilled trials; annualised "
         f"{format_metric('sharpe', d.sr0 * ann)}."),
        ("Trials (N)", format_metric("n_trials", d.n_trials), f"Combos evaluated; variance of their per-bar Sharpe "
         f"{d.var_sharpe:.3g}."),
        ("Observations (T)", format_count(d.t), None),
        ("Skewness", format_metric("skew", d.skew), None),
        ("Kurtosis", format_metric("kurt", d.kurt), "Non-excess (3 for normal returns)."),
    ])
    if d.unavailable:
        st.caption(f"No deflated Sharpe: {d.unavailable}.")

    st.markdown("#### Probability of backtest overfitting (PBO)")
    p = report.pbo
    if p is None:
        st.info(f"PBO not available: {report.pbo_error or 'no per-combo block returns'}. The rest of the report "
                "does not need it; sweeps run with this version store what PBO needs.")
    else:
        metric_grid([
            ("PBO", format_metric("pbo", p.pbo), "Share of CSCV splits whose in-sample winner lands at or below the "
             "out-of-sample median (0 = selection generalises, 0.5 = pure noise)."),
            ("Splits", format_metric("n_splits", p.n_splits), f"All ways to pick S/2 of S = {p.S} time blocks in "
             "sample."),
            (f"Combos (of {format_count(p.n_combos_total)})" if p.subset else "Combos",
             format_metric("n_combos", p.n_combos), None),
            ("P(OOS loss)", format_metric("prob_oos_loss", p.prob_oos_loss),
             "Share of splits where the in-sample winner's out-of-sample Sharpe is negative."),
            ("Degradation slope", format_metric("degradation_slope", p.degradation_slope),
             "Slope of OOS Sharpe on IS Sharpe of the selected combo across splits."),
        ])
        if p.note:
            st.caption(p.note)
        c = st.columns(2)
        with c[0]:
            chart(vc.pbo_logit_figure(p), key=f"{key}_pbo")
        with c[1]:
            chart(vc.pbo_scatter_figure(p, boot.bars_per_year), key=f"{key}_pbo_scatter")

    st.markdown("#### Parameter stability")
    s = report.stability
    metric_grid([
        ("Neighbours / winner", format_metric("stability_ratio", s.ratio),
         "How much of the winner's objective its one-step grid neighbours keep: 1 = a plateau (no worse on "
         "average), lower = a peak. The neighbours' mean over the winner's; where the objective is below zero "
         "(or minimised), the winner's over the neighbours' mean, so that worse neighbours still read below 1."),
        (f"Winner's {s.objective}", format_metric(s.objective, s.winner_value), None),
        ("Params on a grid edge", f"{len(s.on_edge)}", "Varied params whose winning value is the first or last of "
         "the searched range: the optimum may lie outside it."),
    ])
    edge = f" On a grid edge: {', '.join(s.on_edge)}." if s.on_edge else ""
    st.caption(sentence(s.note) + edge)
    if heatmap is not None:
        heatmap()
    with st.expander("One-step neighbours", expanded=heatmap is None):
        shown, config = table_view(s.neighbours, aliases={"objective": s.objective},  # in the objective's unit
                                   labels={"objective": s.objective})
        st.dataframe(shown, hide_index=True, width="stretch", column_config=config)

    st.markdown("#### Regimes")
    c = st.columns([3, 2])
    shown, config = table_view(report.periods, labels={
        "market_return": "market return", "market_max_drawdown": f"market {FALL_LABEL}", "return": "strategy return",
        "sharpe": "Sharpe"})
    c[0].dataframe(shown, hide_index=True, width="stretch", column_config={**config, **DATES})
    shown, config = table_view(report.regimes.reset_index(), labels={
        "mean_oos_sharpe": "mean Sharpe", "n_windows": "periods", "consistency": "positive",
        "mean_return": "mean return"})
    c[1].dataframe(shown, hide_index=True, width="stretch", column_config=config)
    c[1].caption(RULES_TEXT)


def varying_params(space: dict[str, Any]) -> list[str]:
    """Params with more than one value in a stored space (``{"axes": [{"name", "values"}]}``)."""
    return [a["name"] for a in space.get("axes", []) if len(a.get("values", [])) > 1]


# --- walk-forward -----------------------------------------------------------------------------

def current_job() -> JobInfo | None:
    return followed_job(registry, "wf_job", "walkforward", refresh=True)


# a walk-forward set-up's field -> (its words, its unit) in the notice under a report
_PLAN_LABELS = {"is_bars": ("in-sample window", " bars"), "oos_bars": ("out-of-sample window", " bars"),
                "step_bars": ("step", " bars"), "anchored": ("anchored IS", ""), "purge": ("purge", " bars"),
                "embargo": ("embargo", " bars"), "n": ("combos (n)", ""), "min_trades": ("min trades (IS)", ""),
                "maximize": ("maximise", ""), "fee_bps": ("fee", " bps"), "bootstrap": ("bootstrap resamples", ""),
                "S": ("PBO blocks", ""), "funding": ("funding", "")}


def plan_differences(form: dict[str, Any], cfg: dict[str, Any], meta: dict[str, Any], report: Any = None
                     ) -> list[str]:
    """What the walk-forward form sets otherwise than a stored walk-forward ran with (its
    ``config`` and ``meta``, and its validation ``report``'s bootstrap resamples and PBO blocks),
    each "name here, then in the report"; the search space as one item."""
    engine = cfg.get("engine") or {}
    ran = {**{k: cfg.get(k) for k in form if k in cfg}, "dataset": meta.get("dataset"),
           "fee_bps": engine.get("fee_bps"), "fill": engine.get("fill"),
           "funding": funding_words(engine.get("funding"), detail=False)}
    if report is not None:
        ran["bootstrap"] = report.robustness.bootstrap.n
        ran["S"] = report.pbo.S if report.pbo is not None else form.get("S")  # (no PBO: nothing to differ)
    items = []
    for key, now in form.items():
        if key == "space" or (key in ("n", "seed") and form.get("sampler") == "grid"):
            continue  # (a grid draws no combos: its n and seed change nothing)
        label, unit = _PLAN_LABELS.get(key, (key, ""))
        items.append((label, now, ran.get(key), unit))
    other_space = "space" in form and _space_values(form["space"]) != _space_values(ran.get("space"))
    first = ["another search space"] if other_space else []
    return differences(items, "the report", first)


def _space_values(space: Any) -> list[Any]:
    """A stored search space's (param, values) in order, whatever each axis's kind: the same values
    given as a list (the CLI's 5,10) or as a range (the editor's 5 to 10 step 5) are the same space."""
    axes = (space or {}).get("axes", []) if isinstance(space, dict) else []
    return json.loads(json.dumps([[a.get("name"), a.get("values")] for a in axes]))


def load_settings_button(wf: Any, report: Any) -> None:
    """"Load these settings": the form above takes the report's strategy, dataset, windows,
    sampler, objective, gates, costs and search space (what it cannot hold is said)."""
    cfg, meta = wf.config, wf.meta
    names = set(threadx.strategies())
    if cfg["strategy"] not in names:
        return
    state, left = form_state(cfg, meta, threadx.strategies()[cfg["strategy"]], report.robustness.bootstrap.n,
                             report.pbo.S if report.pbo is not None else None, datasets=dataset_names())

    def load() -> None:  # (a callback: it runs before the form's widgets are made again)
        prefix = f"wf:{cfg['strategy']}:"
        for key in [k for k in st.session_state if isinstance(k, str) and k.startswith(prefix)]:
            del st.session_state[key]  # the editor's earlier values of this strategy
        st.session_state.update(state)
        st.session_state["wf_loaded_note"] = left

    st.button("Load these settings into the form", key="wf_load_settings", on_click=load,
              help="The form above takes the strategy, dataset, windows, sampler, objective, gates, costs and "
                   "search space this walk-forward ran with; nothing runs until Launch.")


def show_walk_forward(run_id: str, form: dict[str, Any] | None = None) -> bool:
    """Cards, grade card, charts, per-window table and robustness of a stored walk-forward
    (``form``: what the set-up above would launch, said when it differs from this report);
    False when it cannot be read (said)."""
    try:
        wf, report = stored_walk_forward(run_id)
    except ThreadXError as exc:
        st.error(str(exc))
        return False
    cfg, meta, table = wf.config, wf.meta, wf.table
    objective = wf.objective
    varying = varying_params(cfg["space"])
    st.subheader(f"Walk-forward {run_id}")
    kind = "anchored" if cfg["anchored"] else "rolling"
    combos = meta.get("combos_done", len(wf.combos))
    st.caption(f"{cfg['strategy']} on {label_dataset(meta.get('dataset') or '?')}: {len(wf.windows)} {kind} windows "
               f"(IS {cfg['is_bars']:,}, OOS {cfg['oos_bars']:,}, step {cfg['step_bars']:,}"
               + "".join(f", {k} {cfg[k]:,}" for k in ("purge", "embargo") if cfg.get(k))
               + f" bars), {combos:,} combos "
               f"({cfg['sampler']}) run in every window, winner by {'max' if cfg['maximize'] else 'min'} {objective}"
               + (f" with at least {cfg['min_trades']} trades" if cfg["min_trades"] else "") + ".")
    st.caption(f"Data: {describe_data(meta.get('data'), meta.get('dataset'), meta.get('timeframe'))} · "
               f"Options: {describe_options(cfg.get('engine'))}")
    differs = plan_differences(form, cfg, meta, report) if form is not None else []
    if differs:
        st.info(f"The set-up above differs from this report ({'; '.join(differs)}): **Launch walk-forward** runs "
                "the set-up's; this report keeps the settings it ran with.")
        load_settings_button(wf, report)
    gone = data_problem(meta.get("data"))
    if gone:
        st.warning(f"{sentence(gone)} This report stands for the candles the walk-forward ran on; "
                   "its params, run again or in a portfolio, would meet other data.")
    if meta.get("cancelled"):
        st.warning(f"Stopped early: the results cover {meta['combos_done']:,} of {meta['combos_planned']:,} combos.")
    if wf.failure_note():  # (which error: the caption said only how many)
        st.warning(f"{wf.failure_note()}.")
    if wf.idle_note():  # (a walk-forward of no winner read as a flat 0.00 result and an F)
        st.warning(f"{wf.idle_note()}.")
    summary = wf.oos_summary
    grade = report.grade
    metric_grid([
        ("Grade", f"{grade.letter} ({score_text(grade.score)}/100)", "A-F from the six components in the grade card below."),
        ("Efficiency", format_metric("efficiency", wf.efficiency),
         "Mean OOS Sharpe / mean IS Sharpe of the window winners (1 = no decay)."),
        ("Consistency", format_metric("consistency", wf.consistency), "Share of OOS windows with a positive return."),
        ("OOS return", format_metric("total_return", summary.get("total_return")),
         "Total return of the stitched OOS record."),
        ("OOS Sharpe", format_metric("sharpe", summary.get("sharpe")), "Annualised Sharpe of the stitched OOS record."),
        ("OOS max drawdown", format_metric("max_drawdown", summary.get("max_drawdown")), None),
        ("OOS trades", format_metric("n_trades", summary.get("n_trades")), None),
        ("Walk-forward time", format_metric("elapsed_s", meta.get("elapsed_s")),
         "The windows' sweeps and OOS backtests; the job's start, data load and this validation excluded."),
    ])
    grade_card(grade)
    with st.expander("Where the time went", expanded=False):
        timings_section(meta.get("timings"), key="wf")

    c = st.columns(2)
    with c[0]:
        chart(vc.is_oos_bars_figure(table, objective), key="wf_bars")
    with c[1]:
        label = ", ".join(f"{k}={wf.benchmark_params[k]}" for k in varying if k in wf.benchmark_params)
        chart(vc.stitched_equity_figure(wf.oos_equity, wf.benchmark_equity, initial_capital=cfg["initial_capital"],
                                        boundaries=list(table["oos_start"]),
                                        benchmark_label=f"Full-period optimum ({label})" if label else None),
              key="wf_equity")
        st.caption("The full-period optimum is chosen with hindsight on all the data: the stitched record is what "
                   "re-optimising every window would have earned.")
    names = list(METRIC_NAMES)
    metric = st.columns([3, 1])[1].selectbox("IS-vs-OOS scatter metric", names, index=names.index(objective),
                                             key="wf_scatter_metric")
    c = st.columns(2)
    with c[0]:
        ranges = {a["name"]: a["values"] for a in cfg["space"]["axes"]}
        chart(vc.drift_figure(table, wf.drift, ranges), key="wf_drift")
    with c[1]:
        chart(vc.is_oos_scatter_figure(wf.is_oos_points(metric), metric), key="wf_scatter")

    st.markdown("#### Windows")
    shown = [col for col in ["window", "is_start", "is_end", "oos_start", "oos_end", "regime", "regime_return",
                             "regime_max_drawdown",
                             *varying, f"is_{objective}", f"oos_{objective}", "is_sharpe", "oos_sharpe",
                             "is_total_return", "oos_total_return", "oos_max_drawdown", "is_n_trades", "oos_n_trades"]
             if col in table.columns]
    shown = list(dict.fromkeys(shown))
    windows, config = table_view(table[shown], labels={"regime_return": "market return",
                                                       "regime_max_drawdown": f"market {FALL_LABEL}"})
    st.dataframe(windows, hide_index=True, width="stretch", column_config={**config, **DATES})

    st.markdown("### Robustness")
    st.caption("The bootstrap and the deflated Sharpe measure the stitched out-of-sample record (the DSR deflated "
               "by every combo tried); PBO and parameter stability measure every combo over the whole period, so "
               "they do not change with the windows.")
    stamp = (wf_stamp(run_id), inputs_stamp(cfg.get("strategy"), meta.get("data") or meta.get("dataset")))
    robustness_sections(report, key="wf", heatmap=lambda: stability_heatmap("wf", run_id, stamp, report, varying))
    return True


# --- page layout: the walk-forward tab first in the layout, but the sweep tab is built before
# the walk-forward job is polled (the poll blocks the script run for a while) -------------------

tab_wf, tab_sweep = st.tabs(["Walk-forward", "Validate a sweep"])

with tab_wf:
    specs = threadx.strategies()
    dataset, strategy = dataset_and_strategy("wf_strategy")
    loaded = st.session_state.pop("wf_loaded_note", None)  # "Load these settings" under a report, just pressed
    if loaded is not None:
        st.info("The form holds the report's settings" + (f", except {'; '.join(loaded)}" if loaded else "")
                + ": **Launch walk-forward** runs them again.")
    spec = specs[strategy]
    failed_check = strategies_ui.failed_check_note(spec)
    if failed_check:
        st.warning(failed_check)
    with st.expander("Search space", expanded=False):
        space = space_editor(spec, key_prefix="wf")

    # a value "Load these settings" put in Session State wins over a box's own start; an emptied box reads
    # as its start (number_box, choice_box)
    session = {"persist_state": "session", "width": CONTROL_PX}
    box_problems: list[str] = []  # boxes out of range (checked here: see widgets.number_box)
    c = controls_row()  # (six columns cut "sharpe", "maximise", "next_open" at 1024 px)
    days = {**session, "format": "%g"}  # (0.001 day showed as "0.00", then was refused as "got 0")
    is_days = float(number_box(c, "In-sample (days)", DEFAULT_WF_IS_DAYS, "wf_is_days",
                               box_problems, *BOUNDS["is_days"], step=15.0, **days))
    oos_days = float(number_box(c, "Out-of-sample (days)", DEFAULT_WF_OOS_DAYS, "wf_oos_days",
                                box_problems, *BOUNDS["oos_days"], step=5.0, **days))
    step_days = float(number_box(c, "Step (days, 0 = the OOS length)", 0.0, "wf_step_days",
                                 box_problems, *BOUNDS["step_days"], step=5.0, **days))
    windows_boxed = not box_problems  # the window boxes in range: the plan below says what else is wrong
    purge = int(number_box(c, "Purge (bars)", 0, "wf_purge", box_problems, *BOUNDS["purge"], step=1, **session,
                           help="Bars left out at the end of each in-sample window, just before its "
                                "out-of-sample window (López de Prado's purge). 0 = none."))
    embargo = int(number_box(c, "Embargo (bars)", 0, "wf_embargo", box_problems, *BOUNDS["embargo"], step=1, **session,
                             help="Bars right after each out-of-sample window left out of later "
                                  "in-sample windows (anchored, or rolling windows longer than the step). 0 = none."))
    anchored = c.toggle("Anchored IS", value=False, key="wf_anchored", persist_state="session",
                        help="Every in-sample window starts at the first bar (expanding) instead of rolling.")
    c = controls_row()
    sampler = c.selectbox("Sampler", SAMPLERS, key="wf_sampler", **session)
    n = None if sampler == "grid" else int(number_box(c, "Combos (n)", DEFAULT_WF_SAMPLES, "wf_n",
                                                      box_problems, *BOUNDS["n"], step=100, **session))
    seed = int(number_box(c, "Seed", DEFAULT_SEED, "wf_seed", box_problems, *BOUNDS["seed"], step=1, **session))
    names = list(METRIC_NAMES)
    objective = choice_box(c, "Objective", names, "sharpe", "wf_objective", **session)
    maximize = c.selectbox("Direction", ["maximise", "minimise"], key="wf_direction", **session) == "maximise"
    min_trades = int(number_box(c, "Min trades (IS)", DEFAULT_MIN_TRADES, "wf_min_trades",
                                box_problems, *BOUNDS["min_trades"], step=5, **session))
    c = controls_row()
    boot_n = int(number_box(c, "Bootstrap resamples", DEFAULT_BOOTSTRAP, "wf_boot",
                            box_problems, *BOUNDS["boot"], step=100, **session))
    S = int(number_box(c, "PBO blocks (S, even)", 16, "wf_S", box_problems, *BOUNDS["S"], step=2, **session))
    rule_problem(check_S, S, box_problems)  # (odd: refused only once Launch was pressed)
    engine_defaults = EngineOptions()  # threadx.toml / env / built-in
    workers = int(number_box(c, "Workers", min(256, default_workers()), "wf_workers", box_problems, 1, 256, step=1,
                             clearable=False,
                             **session))
    fee_bps = float(number_box(c, "Fee (bps)", float(engine_defaults.fee_bps), "wf_fee",
                               box_problems, *BOUNDS["fee"], step=0.5, **session))
    fills = ["next_open", "close"]
    fill = choice_box(c, "Fill", fills, engine_defaults.fill, "wf_fill", **session)
    funding = funding_toggle(c, "wf_funding", **session)
    funding_caption(dataset, funding)

    # the plan: combos and windows on the loaded data, drawn before anything runs
    problems: list[str] = list(box_problems)
    combos = 0
    search: SearchSpace | None = None
    try:
        search = SearchSpace(spec, space)
        valid = valid_combos(search, 1_000_000)
        if sampler == "grid":
            combos = valid
            if search.size > DEFAULT_WF_GRID_LIMIT:
                problems.append(f"the grid has {search.size:,} combos, over the walk-forward limit of "
                                f"{DEFAULT_WF_GRID_LIMIT:,}: narrow the ranges or use a Monte Carlo sampler")
        else:  # n draws give at most the valid combos (it read 1,702 combos where 1,590 ran)
            combos = min(int(n or 0), valid)
    except ThreadXError as exc:
        problems.append(f"search space: {exc}")
    df = load_dataset_or_error(dataset, "No walk-forward can be planned on this dataset")
    windows: list[Any] = []
    try:
        if df is not None and windows_boxed:  # (a box out of range said twice: its bound, then the plan's words)
            is_bars, oos_bars, step_bars = window_lengths(df.attrs.get("timeframe"), is_days=is_days,
                                                          oos_days=oos_days, step_days=step_days or None)
            windows = plan_windows(len(df), is_bars, oos_bars, step_bars, anchored, purge, embargo)
    except ThreadXError as exc:
        problems.append(f"windows: {exc}")
    form_plan: dict[str, Any] | None = None  # what Launch would run, to compare with a report on display
    if windows and search is not None:
        step = windows[1].oos_start - windows[0].oos_start if len(windows) > 1 else oos_bars
        form_plan = {"strategy": strategy, "dataset": dataset, "space": search.to_dict(), "is_bars": is_bars,
                     "oos_bars": oos_bars, "step_bars": step_bars or oos_bars, "anchored": bool(anchored),
                     "purge": purge, "embargo": embargo, "sampler": sampler,
                     "n": int(n) if sampler != "grid" else None, "seed": seed, "objective": objective,
                     "maximize": maximize, "min_trades": min_trades, "fee_bps": fee_bps, "fill": fill,
                     "bootstrap": boot_n, "S": S,
                     "funding": funding_as_run(funding, dataset)}
        runs = combos * (2 * len(windows) + 1)
        st.info(f"**{len(windows)} windows** on {label_dataset(dataset, df)} ({len(df):,} bars): IS {is_bars:,} bars, "
                f"OOS {oos_bars:,} bars, step {step:,} bars"
                + (f", purge {purge:,} bars" if purge else "") + (f", embargo {embargo:,} bars" if embargo else "")
                + f" · **{combos:,} combos** run in every window "
                f"({runs:,} backtests: each combo in sample and out of sample in each of the {len(windows)} windows, "
                f"and once on the whole period) — {size_text(runs, limit=math.inf)}")  # (the combos' limit is above)
    for problem in problems:
        st.warning(f"Cannot run: {problem}.")
    if df is not None and windows_boxed:
        chart(vc.window_timeline_figure(windows, df.index), key="wf_timeline")

    held = launch_held(current_job(), "walk-forward", "wf_job")
    if st.button("Launch walk-forward", type="primary", disabled=bool(problems) or df is None or held,
                 key="wf_launch") and not held and not strategy_fell_back():
        try:
            request = WalkForwardRequest.from_dict({  # None keeps a default (n of a grid)
                "data": DatasetRef(source=dataset, name=dataset), "strategy": strategy, "space": space,
                "is_days": is_days, "oos_days": oos_days, "step_days": step_days or None, "anchored": anchored,
                "purge": purge, "embargo": embargo,
                "sampler": sampler, "n": n, "seed": seed, "objective": objective, "maximize": maximize,
                "min_trades": min_trades, "workers": workers, "engine_options": {"fee_bps": fee_bps, "fill": fill,
                                                                             "funding": funding},
                "bootstrap": boot_n, "S": S})
            st.session_state["wf_job"] = registry.submit(request.to_dict())
            st.session_state.pop("wf_run", None)
        except ThreadXError as exc:
            st.error(f"Cannot launch: {exc}")

    def wf_monitor() -> None:
        """The followed walk-forward: its phase from its first second, then combos done, rate
        and ETA; Stop while it is active. When it ends, its result is shown (once) by a full rerun."""
        job = current_job()
        if job is None:
            return
        if job_progress(registry, job, "wf_stop", "Stopping after the current chunk of combos…"):
            return
        stored_result = bool(job.run_id) and is_stored(job.run_id, RESULTS_DIR)
        if job.state == "failed":
            st.error(f"The walk-forward failed: {job.error}")
        elif job.state == "cancelled":
            st.warning("Stopped: the combos finished before the stop are shown below." if stored_result
                       else "Stopped before any result was stored.")
        if st.session_state.get("wf_seen") != job.job_id:
            st.session_state["wf_seen"] = job.job_id
            if job.state in ("completed", "cancelled") and stored_result:
                st.session_state["wf_run"] = job.run_id
                st.rerun()  # the whole page, so the result below shows the finished walk-forward

    job = follow_job(wf_monitor, current_job)

    stored = list_walk_forwards(RESULTS_DIR)
    with st.expander("Stored walk-forwards", expanded=False):
        if stored:
            listed, config = table_view(pd.DataFrame(stored).drop(columns=["mtime"]))
            st.dataframe(listed, hide_index=True, width="stretch", column_config=config)
            ids = [row["run_id"] for row in stored]
            pick = st.selectbox("Reload a walk-forward", ids, key="wf_history")
            if st.button("Show this walk-forward", key="wf_reload"):
                st.session_state["wf_run"] = pick
        else:
            st.caption("No stored walk-forward yet: set one up above and press **Launch walk-forward**.")

    wf_run = linked_run("wf_run", "wf")  # (?wf=: a reload or a shared link)
    if wf_run:
        if not show_walk_forward(wf_run, form_plan):  # (said why)
            drop_linked_run("wf_run", "wf")
    elif job is None or job.is_finished:
        st.info("Set the window lengths (the timeline above shows the windows they give), the search space and the "
                "sampler, then press **Launch walk-forward**. Each window's in-sample winner is traded on the next "
                "out-of-sample window; the results and the grade appear here.")


# --- validate a stored sweep ------------------------------------------------------------------

def show_sweep_report(run_id: str, n_boot: int, S: int, seed: int) -> None:
    """The validation report of a stored sweep: grade card first, then each component."""
    try:
        run = sweep_runs.load_run(store, run_id)  # its manifest's shape checked: RunDamaged saying what is wrong
    except ThreadXError as exc:
        st.error(str(exc))
        return
    m = run.manifest
    stamp = (run_stamp(run_id), inputs_stamp(m.get("strategy"), m.get("data") or m.get("dataset")))
    try:
        with st.spinner(f"Validating {run_id}: {n_boot:,} bootstrap resamples, PBO over S = {S} blocks, "
                        "stability…"):
            report = _sweep_report(run_id, RESULTS_DIR, stamp, n_boot, S, seed)
    except ThreadXError as exc:
        st.error(f"Cannot validate {run_id}: {exc}")
        return
    varying = varying_params(m["space"])
    st.subheader(f"Sweep {run_id}: {m['strategy']} on {label_dataset(m.get('dataset') or '?')}")
    st.caption(describe_run(m))
    partial = partial_note(run)  # of the run as it is now (a report cached while it ran says 'running')
    if partial:
        st.warning(sentence(partial))
    params = report.source.get("params", {})
    st.markdown(f"Winner by {m.get('objective', 'sharpe')} among {format_count(m.get('done'))} combos: "
                + ", ".join(f"`{k}={params[k]}`" for k in (varying or params) if k in params))
    metric_grid([
        ("Grade", f"{report.grade.letter} ({score_text(report.grade.score)}/100)", None),
        ("OOS / IS ratio", format_metric("oos_is_ratio", report.oos_is_ratio),
         "Mean OOS / mean IS Sharpe of the in-sample winner over the CSCV splits."),
        ("Consistency", format_metric("consistency", report.consistency),
         f"Share of the {len(report.periods)} time blocks in which the winner made money."),
        ("Trades", format_metric("n_trades", report.n_trades),
         "Trades of the winner (fewer than 30 / 50 cap the grade)."),
    ])
    grade_card(report.grade)
    robustness_sections(report, key="val", heatmap=lambda: stability_heatmap("sweep", run_id, stamp, report, varying))


with tab_sweep:
    runs = sweep_runs.history(store)  # a damaged run listed as such, never breaking the list
    if not len(runs):
        st.info("No stored sweep yet. Run one on the **Optimisation** page (a small grid on the sample data is "
                "enough), then pick it here for its bootstrap confidence intervals, deflated Sharpe, PBO, stability "
                "heatmap and grade.")
    else:
        ids = list(runs["run_id"])
        info = runs.set_index("run_id")
        preferred = st.session_state.get("sweep_run")
        c = st.columns([4, 1, 1, 1, 1], vertical_alignment="bottom")
        pick = c[0].selectbox(
            "Stored sweep", ids, index=ids.index(preferred) if preferred in ids else 0, key="val_run",
            # (status and count first: at 1280 px the box cut the label to "... · 3 combos · com")
            format_func=lambda r: f"{r} · {info.loc[r, 'status']} · {format_count(info.loc[r, 'done'])} combos · "
                                  f"{info.loc[r, 'strategy']} · {info.loc[r, 'dataset']}")
        val_problems: list[str] = []  # boxes out of range (checked here: see widgets.number_box)
        n_val = int(number_box(c[1], "Bootstrap resamples", DEFAULT_BOOTSTRAP, "val_n", val_problems,
                               *BOUNDS["boot"], clearable=False, step=100))
        s_val = int(number_box(c[2], "PBO blocks (S)", 16, "val_S", val_problems, *BOUNDS["S"], clearable=False,
                               step=2))
        rule_problem(check_S, s_val, val_problems)
        seed_val = int(number_box(c[3], "Seed", DEFAULT_SEED, "val_seed", val_problems, *BOUNDS["seed"],
                                  clearable=False, step=1))
        refused = show_problems(st, val_problems, "Validate")
        if c[4].button("Validate", type="primary", key="val_go", disabled=refused):
            st.session_state["val_sweep"] = (pick, n_val, s_val, seed_val)
        shown = st.session_state.get("val_sweep")
        if shown and shown[0] in ids:
            differs = differences([(label, now, then, "") for label, now, then in zip(
                ("sweep", "bootstrap resamples", "PBO blocks", "seed"), (pick, n_val, s_val, seed_val), shown)],
                "the report")
            if differs:  # the report below stays until Validate: it must not pass for the picked run's
                st.info(f"The form differs from the report below ({'; '.join(differs)}): press **Validate** for "
                        "the form's report.")
            show_sweep_report(*shown)
        else:
            st.caption("Pick a stored sweep and press **Validate** (a few seconds for thousands of combos).")


