"""One validation report for a stored sweep or a walk-forward: bootstrap, DSR, PBO,
stability, regimes and the A-F grade with every input it used.

Where the inputs come from (documented choices):

- **walk-forward**: the returns are the stitched OOS record; OOS/IS ratio = walk-forward
  efficiency (mean OOS Sharpe / mean IS Sharpe of the window winners); consistency =
  share of OOS windows with a positive return; regimes = one label per OOS window.
- **sweep** (one period, no held-out data): the returns are the winner's backtest;
  OOS/IS ratio = mean OOS Sharpe / mean IS Sharpe of the IS-selected combo over the CSCV
  splits of PBO; consistency = share of the S time blocks in which the winner made
  money; regimes = one label per time block.
- both: DSR with N = distinct effective combos evaluated (combos that differ only in
  display-only params, ``feeds=()``, give the same results and count once) and
  the variance of their per-bar Sharpe ratios (whole period; for a walk-forward the
  tested Sharpe is the stitched OOS one, already out of sample, so deflating it is
  conservative); PBO over the stored per-block returns of the same distinct combos (the
  winner represents its group); stability around the whole-period winner; trade-order
  shuffles of the winner's trades for the drawdown distribution.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np
import pandas as pd

from threadx.config import DEFAULT_BOOTSTRAP, DEFAULT_SEED
from threadx.data.bars import Bars, as_bars
from threadx.data.timeframe import bars_per_year
from threadx.data.funding import with_stored_funding
from threadx.api import run_meta
from threadx.engine.inputs import options_from, strategy_rules
from threadx.engine.layout import METRIC_NAMES
from threadx.engine.metrics import per_bar_returns
from threadx.engine.result import Result, full_result
from threadx.errors import ParamError, ThreadXError, whole
from threadx.optimize.evaluate import Evaluator, SweepTask
from threadx.optimize.space import distinct_effective, stored_axes
from threadx.optimize.store import ResultStore, SweepRun
from threadx.strategy.base import get_strategy
from threadx.validation.bootstrap import BootstrapResult, block_bootstrap, drawdown_quantiles, trade_shuffle_drawdowns
from threadx.validation.common import json_safe, to_python
from threadx.validation.dsr import DSRResult, deflated_sharpe_from_returns
from threadx.validation.grading import Grade, grade
from threadx.validation.pbo import PBOResult, block_groups, check_S, pbo_from_moments
from threadx.validation.regimes import classify_regime, regime_summary
from threadx.validation.stability import StabilityResult, parameter_stability, unavailable_stability
from threadx.validation.walkforward import WalkForwardResult

_SHARPE = METRIC_NAMES.index("sharpe")
PBO_MAX_COMBOS = 5000  # combos in one CSCV (a seeded subset with the winner beyond): bounds memory


@dataclass
class Robustness:
    """Block bootstrap of the per-bar returns and trade-order shuffles of the trades."""

    bootstrap: BootstrapResult
    trade_drawdowns: np.ndarray  # max drawdown of each shuffled trade order
    observed_drawdown: float  # of the trades in their actual order, compounded the same way

    def to_dict(self, include_samples: bool = False) -> dict[str, Any]:
        out = {"bootstrap": self.bootstrap.to_dict(include_samples=include_samples),
               "observed_drawdown": float(self.observed_drawdown), "trade_shuffles": len(self.trade_drawdowns)}
        if len(self.trade_drawdowns):
            out["trade_drawdown_quantiles"] = drawdown_quantiles(self.trade_drawdowns)
        return out


@dataclass
class ValidationReport:
    """Everything the Validation page and ``threadx validate`` show."""

    source: dict[str, Any]  # kind (sweep | walk_forward), run id, strategy, params, dataset
    robustness: Robustness
    dsr: DSRResult
    pbo: PBOResult | None
    pbo_error: str | None
    stability: StabilityResult
    periods: pd.DataFrame  # per OOS window or time block: times, regime, return, Sharpe
    regimes: pd.DataFrame  # regime_summary of the periods
    oos_is_ratio: float
    consistency: float
    n_trades: int
    grade: Grade
    equity: pd.Series = field(repr=False, default=None)  # the returns' equity curve

    def to_dict(self) -> dict[str, Any]:
        return json_safe({
            "source": self.source,
            "grade": self.grade.to_dict(),
            "oos_is_ratio": self.oos_is_ratio,
            "consistency": self.consistency,
            "n_trades": self.n_trades,
            "robustness": self.robustness.to_dict(),
            "dsr": self.dsr.to_dict(),
            "pbo": None if self.pbo is None else self.pbo.to_dict(include_arrays=False),
            "pbo_error": self.pbo_error,
            "stability": self.stability.to_dict(),
            "periods": self.periods.to_dict(orient="records"),
            "regimes": self.regimes.to_dict(orient="records"),
        })


def robustness(returns: np.ndarray, trade_returns: np.ndarray, *, bars_per_year: float, n: int = DEFAULT_BOOTSTRAP,
               block: int | None = None, seed: int = DEFAULT_SEED) -> Robustness:
    """Block bootstrap of ``returns`` and ``n`` trade-order shuffles of ``trade_returns``."""
    boot = block_bootstrap(returns, n=n, block=block, seed=seed, bars_per_year=bars_per_year)
    shuffles = trade_shuffle_drawdowns(trade_returns, n=n, seed=seed) if len(trade_returns) else np.empty(0)
    path = np.cumprod(np.concatenate([[1.0], 1.0 + np.asarray(trade_returns, dtype=float)]))
    return Robustness(boot, shuffles, float(np.min(path / np.maximum.accumulate(path) - 1.0)))


def bootstrap(result: Result | WalkForwardResult, n: int = DEFAULT_BOOTSTRAP, block: int | None = None,
              seed: int = DEFAULT_SEED) -> Robustness:
    """Block bootstrap (Sharpe / return / drawdown CIs, Sharpe p-value against demeaned
    returns) of a backtest or of a walk-forward's stitched OOS record, with trade-order
    shuffles for the drawdown distribution."""
    if isinstance(result, WalkForwardResult):
        equity, trades = result.oos_equity, result.oos_trades
        capital, bpy = result.config["initial_capital"], result.config["bars_per_year"]
    elif isinstance(result, Result):
        equity, trades = result.equity, result.trades
        capital = result.meta.get("options", {}).get("initial_capital", float(equity.iloc[0]))
        bpy = bars_per_year(result.meta["timeframe"])
    else:
        raise ParamError(f"bootstrap needs a backtest Result or a WalkForwardResult, got {type(result).__name__}")
    return robustness(per_bar_returns(equity.to_numpy(), capital), _trade_returns(trades, equity, capital),
                      bars_per_year=bpy, n=n, block=block, seed=seed)


def _trade_returns(trades: pd.DataFrame, equity: pd.Series, capital: float) -> np.ndarray:
    """Each trade's PnL as a fraction of the equity at the close before its entry."""
    if not len(trades):
        return np.empty(0)
    pos = equity.index.get_indexer(pd.DatetimeIndex(trades["entry_time"]))
    values = equity.to_numpy()
    before = np.where(pos > 0, values[np.maximum(pos - 1, 0)], capital)
    return trades["pnl"].to_numpy(dtype=float) / np.where(before > 0, before, np.nan)


# --- sweeps -----------------------------------------------------------------------------

def stored_data(name: str | None, fingerprint: str | None, df: pd.DataFrame | Bars | None, what: str,
                ref: Mapping[str, Any] | None = None) -> Bars:
    """The candles ``what`` ran on: ``df``, else the recorded data ``ref`` (a DatasetRef dict:
    its file or dataset, cut and resampled as it was; DataError when gone or changed), else
    the dataset ``name``; checked against ``fingerprint``."""
    from threadx.requests import UNNAMED, DatasetRef

    if df is None and ref and ref.get("source") != UNNAMED:
        return as_bars(DatasetRef.from_dict(ref).load())  # checks the fingerprint
    if df is None and ref:  # (not the dataset it is named after: a frame edited in memory, say)
        raise ParamError(f"{what} ran on a frame in memory" + (f" (made from {name})" if name else "")
                         + ": pass the same candles")
    if df is None:
        if not name:
            raise ParamError(f"{what} ran on an unnamed frame: pass the same data")
        from threadx.data.io import load_ohlcv

        df = load_ohlcv(name)
    bars = as_bars(df)
    if fingerprint and bars.fingerprint != fingerprint:
        raise ParamError(f"the data differs from the data {what} ran on (fingerprint {bars.fingerprint[:12]} vs "
                         f"{str(fingerprint)[:12]}): pass the same candles")
    return bars


def stored_evaluator(strategy: str, space: Mapping[str, Any], engine: Mapping[str, Any] | None, bars: Bars,
                     what: str, n_blocks: int = 0, code_hash: str | None = None, source: str | None = None
                     ) -> Evaluator:
    """An evaluator of a stored space (``SearchSpace.to_dict()``) and engine options on
    ``bars``; the combo ids match the stored ones. ``code_hash``: the strategy code the run
    used (refused when the strategy's code is another now: its rows came from that code).
    ``source``: the run's dataset or file, whose stored funding file a run that recorded one
    gets again (checked against the sha256 it recorded, see :func:`with_stored_funding`)."""
    engine = dict(engine or {})
    if isinstance(engine.get("funding"), str):
        try:
            engine = with_stored_funding(engine, source or "")
        except ThreadXError as exc:
            raise type(exc)(f"{what}: {exc}") from None
    spec = get_strategy(strategy)
    spec.require_code(code_hash, what)
    task = SweepTask.of(spec, stored_axes(space), options_from(**engine), n_blocks)
    return Evaluator(task, bars, _bank())


def sweep_data(run: SweepRun, df: pd.DataFrame | Bars | None = None) -> Bars:
    """The sweep's data: ``df`` or its dataset by name, checked against the stored fingerprint."""
    m = run.manifest
    return stored_data(m.get("dataset"), m.get("fingerprint"), df, f"run {run.run_id}", m.get("data"))


def sweep_evaluator(run: SweepRun, bars: Bars, n_blocks: int = 0) -> Evaluator:
    """An evaluator of the sweep's space and engine options on ``bars`` (combo ids match)."""
    m = run.manifest
    return stored_evaluator(m["strategy"], m["space"], m.get("engine"), bars, f"run {run.run_id}", n_blocks,
                            m.get("strategy_code"), (m.get("data") or {}).get("source") or m.get("dataset"))


def walk_forward_evaluator(wf: WalkForwardResult, df: pd.DataFrame | Bars | None = None) -> Evaluator:
    """The evaluator of a walk-forward (rebuilt from its dataset when it was reloaded from disk)."""
    if wf.evaluator is not None:
        return wf.evaluator
    what = "the walk-forward"
    bars = stored_data(wf.meta.get("dataset"), wf.meta.get("fingerprint"), df, what, wf.meta.get("data"))
    return stored_evaluator(wf.config["strategy"], wf.config["space"], wf.config.get("engine"), bars, what,
                            code_hash=wf.config.get("strategy_code"),
                            source=(wf.meta.get("data") or {}).get("source") or wf.meta.get("dataset"))


def _bank():
    from threadx.indicators import default_bank

    return default_bank()


def _load(run: SweepRun | str, store: Any) -> SweepRun:
    if isinstance(run, SweepRun):
        return run.check_intact()
    if not isinstance(run, (str, os.PathLike)):  # (a Result read 'invalid run id "Result(metrics={...' 3 KB long)
        raise ParamError(f"expected a stored sweep (a SweepRun or its run id), got a {type(run).__name__}: the "
                         "deflated Sharpe, PBO and validation report are of a sweep's winner among its trials")
    return (store if isinstance(store, ResultStore) else ResultStore(store)).load(str(run)).check_intact()


def partial_note(run: SweepRun) -> str | None:
    """A line saying that a report of ``run`` covers only part of its plan (a run still running,
    interrupted or stopped: its winner, the deflated Sharpe's N and the PBO can change once the
    rest runs); None for a finished run."""
    m = run.manifest
    status = str(m.get("status") or "unknown")
    total = int(m.get("total") or 0)
    stored = len(run.stored().ids)  # (the ids and statuses only: a page calls this on every rerun)
    if status.startswith("completed") and stored >= total:
        return None
    what = {"running": "is still running", "interrupted": "was interrupted",
            "cancelled": "was stopped"}.get(status, f"is {status}")
    return (f"run {run.run_id} {what}: {stored:,} of {total:,} combos stored; this report covers these only "
            "(its winner, the deflated Sharpe's N and the PBO can change once the rest runs)")


def _winner(run: SweepRun) -> pd.Series:
    min_trades = int(run.manifest.get("min_trades", 0))
    best = run.top(1, min_trades=min_trades)
    if best.empty:
        enough = f" with at least {min_trades} trades (min_trades)" if min_trades else ""
        raise ThreadXError(f"run {run.run_id} has no successful combo{enough} to validate")
    return best.iloc[0]


def deflated_sharpe(run: SweepRun | str, df: pd.DataFrame | Bars | None = None, *, store: Any = None) -> DSRResult:
    """Deflated Sharpe ratio of a sweep's winner: N = distinct effective combos evaluated, V =
    variance of their per-bar Sharpe ratios, skewness and kurtosis of the winner's per-bar returns."""
    run = _load(run, store)
    bars = sweep_data(run, df)
    equity = _winner_run(run, _winner(run), sweep_evaluator(run, bars)).equity.to_numpy()
    trials = _distinct_trials(run)[0]
    return _dsr(per_bar_returns(equity, _capital(run)), trials["sharpe"], bars_per_year(bars.timeframe))


def pbo(run: SweepRun | str, S: int = 16, *, store: Any = None, max_combos: int = PBO_MAX_COMBOS,
        seed: int = DEFAULT_SEED) -> PBOResult:
    """Probability of backtest overfitting (CSCV) from the sweep's stored block returns."""
    max_combos, seed = whole(max_combos, "max_combos", 2), whole(seed, "seed")  # before any work
    run = _load(run, store)
    winner = int(_winner(run)["combo_id"])
    return _sweep_pbo(run, _distinct_trials(run, winner), winner, S, max_combos, seed)


def _distinct_trials(run: SweepRun, winner: int | None = None) -> tuple[pd.DataFrame, int]:
    """(combo_id, sharpe and total_return of one successful combo per effective combo, number of
    successful combos). Combos that differ only in display-only params (``feeds=()``)
    count once; ``winner`` represents its own group."""
    spec = get_strategy(run.manifest["strategy"])
    inert = [a["name"] for a in run.manifest["space"]["axes"]
             if len(a["values"]) > 1 and a["name"] not in spec.effective_names]
    rows = run.ok_columns(["sharpe", "total_return", *(run.param_names if inert else [])]).reset_index(drop=True)
    if not inert:
        return rows, len(rows)
    hit = np.flatnonzero(rows["combo_id"].to_numpy() == winner) if winner is not None else []
    keep = distinct_effective(spec, rows[run.param_names], int(hit[0]) if len(hit) else None)
    return rows.loc[keep, ["combo_id", "sharpe", "total_return"]], len(rows)


def _sweep_pbo(run: SweepRun, trials: tuple[pd.DataFrame, int], winner: int, S: int, max_combos: int,
               seed: int) -> PBOResult:
    frame, n_ok = trials
    ok_ids = frame["combo_id"].to_numpy(np.int64)
    subset = None if len(ok_ids) == n_ok else np.sort(ok_ids)
    if len(ok_ids) > max_combos:  # read only a seeded subset (with the winner): memory stays bounded
        rng = np.random.default_rng(seed)
        others = ok_ids[ok_ids != winner]
        subset = np.sort(np.append(rng.choice(others, max_combos - 1, replace=False), winner))
    ids, sums, sqs, counts = run.block_moments(subset)
    keep = np.flatnonzero(ids == winner)
    result = pbo_from_moments(sums, sqs, counts, S=S, max_combos=max_combos, keep=keep.tolist(), seed=seed)
    notes = [result.note] if result.note else []
    if len(ok_ids) < n_ok:
        notes.append(f"{len(ok_ids):,} distinct effective combos of {n_ok:,} successful ones (combos that differ "
                     "only in params that do not affect results count once)")
    if len(ids) < len(ok_ids):
        notes.append(f"{len(ids):,} of {len(ok_ids):,} successful combos (a seeded random subset that keeps the "
                     "winner) to bound memory")
    return _as_combo_ids(replace(result, n_combos_total=len(ok_ids), note="; ".join(notes)), ids)


def _as_combo_ids(result: PBOResult, ids: np.ndarray) -> PBOResult:
    """``result`` with its IS winners and the combos it used as combo ids (``ids``: the combo id
    of each row of its input): the rows mean nothing outside."""
    ids = np.asarray(ids, dtype=np.int64)
    return replace(result, best_index=ids[result.best_index], combo_indices=ids[result.combo_indices])


def validate_sweep(run: SweepRun | str, df: pd.DataFrame | Bars | None = None, *, store: Any = None,
                   n: int = DEFAULT_BOOTSTRAP, block: int | None = None, seed: int = DEFAULT_SEED,
                   S: int = 16) -> ValidationReport:
    """The full report for a stored sweep (see the module docstring for each input)."""
    S = check_S(S)  # before any work: the grade's consistency is counted over S blocks too
    run = _load(run, store)
    bars = sweep_data(run, df)
    best = _winner(run)
    evaluator = sweep_evaluator(run, bars)
    winner = _winner_run(run, best, evaluator)
    params, trades, eq = winner.params, winner.trades, winner.equity
    capital, bpy = _capital(run), bars_per_year(bars.timeframe)
    returns = per_bar_returns(eq.to_numpy(), capital)
    robust = robustness(returns, _trade_returns(trades, eq, capital), bars_per_year=bpy, n=n, block=block,
                        seed=seed)
    trials = _distinct_trials(run, int(best["combo_id"]))
    dsr = _dsr(returns, trials[0]["sharpe"], bpy)
    pbo_result, pbo_error = _try_pbo(lambda: _sweep_pbo(run, trials, int(best["combo_id"]), S, PBO_MAX_COMBOS,
                                                        seed))
    ratio = _cscv_ratio(pbo_result)
    objective, maximize = run.manifest.get("objective", "sharpe"), bool(run.manifest.get("maximize", True))
    stab = parameter_stability(evaluator, int(best["combo_id"]), objective, maximize)
    periods = _block_periods(bars, returns, _period_ends(run.manifest.get("block_end"), len(bars), S))
    consistency = float((periods["return"] > 0).mean())
    return _report(
        {"kind": "sweep", "run_id": run.run_id, "strategy": run.manifest["strategy"], "params": params,
         "dataset": run.manifest.get("dataset") or bars.name, "data": run.manifest.get("data"),
         "engine": run.manifest.get("engine"), "objective": objective, "partial": partial_note(run)},
        robust, dsr, pbo_result, pbo_error, stab, periods, ratio, consistency, len(trades), eq,
        _cscv_inputs(pbo_result), _profitable(trials[0]["total_return"]))


def validate_walk_forward(wf: WalkForwardResult, *, n: int = DEFAULT_BOOTSTRAP, block: int | None = None,
                          seed: int = DEFAULT_SEED, S: int = 16, run_id: str | None = None) -> ValidationReport:
    """The full report for a walk-forward (see the module docstring for each input); ``run_id``
    names it in ``source`` (default: the run id of the request stored in its meta, if any)."""
    S = check_S(S)
    bpy = wf.config["bars_per_year"]
    robust = bootstrap(wf, n=n, block=block, seed=seed)
    best = _best_full(wf)
    try:
        evaluator, no_data = walk_forward_evaluator(wf), None
    except (ThreadXError, OSError) as exc:  # a reloaded result whose data is gone or changed
        evaluator, no_data = None, exc
    # the roles of the code the walk-forward ran (its file edited since, even broken, changes nothing)
    spec = evaluator.spec if evaluator is not None else get_strategy(wf.config["strategy"])
    distinct = distinct_effective(spec, wf.combos.drop(columns="combo_id").reset_index(drop=True), best)
    dsr = _dsr(wf.oos_returns(), wf.full_metrics[distinct, _SHARPE], bpy)
    counts = np.diff(np.concatenate([[0], wf.block_end]))
    keep = [] if best is None else [int(distinct[:best].sum())]
    pbo_result, pbo_error = _try_pbo(lambda: _as_combo_ids(pbo_from_moments(
        wf.blocks[distinct, :, 0], wf.blocks[distinct, :, 1], counts, S=S, keep=keep, seed=seed),
        wf.combos["combo_id"].to_numpy()[distinct]))
    if best is None:
        stab = unavailable_stability(wf.objective, wf.config["maximize"],
                                     "no combo met the minimum trade count on the whole period")
    elif evaluator is None:
        stab = unavailable_stability(wf.objective, wf.config["maximize"], f"no data to evaluate neighbours: {no_data}")
    else:
        stab = parameter_stability(evaluator, int(wf.combos["combo_id"].iloc[best]), wf.objective,
                                   wf.config["maximize"])
    table = wf.table
    periods = pd.DataFrame({
        "start": table["oos_start"], "end": table["oos_end"], "regime": table["regime"],
        "market_return": table["regime_return"], "market_max_drawdown": table["regime_max_drawdown"],
        "return": table.get("oos_total_return", np.nan), "sharpe": table.get("oos_sharpe", np.nan),
    })
    return _report(
        {"kind": "walk_forward", "run_id": run_id or (wf.meta.get("request") or {}).get("run_id"),
         "strategy": wf.config["strategy"], "params": wf.benchmark_params, "dataset": wf.meta.get("dataset"),
         "data": wf.meta.get("data"), "engine": wf.config.get("engine"), "objective": wf.objective},
        robust, dsr, pbo_result, pbo_error, stab, periods, wf.efficiency, wf.consistency, len(wf.oos_trades),
        wf.oos_equity, {"from": "window winners", "mean_is_sharpe": _column_mean(table, "is_sharpe"),
                        "mean_oos_sharpe": _column_mean(table, "oos_sharpe"),
                        "windows": int(table["combo_id"].notna().sum())},
        _profitable(wf.full_metrics[distinct, METRIC_NAMES.index("total_return")]),
        wf.oos_summary.get("total_return"))


def _column_mean(table: pd.DataFrame, column: str) -> float | None:
    return float(table[column].mean()) if column in table else None


def _profitable(total_returns: Any) -> tuple[int, int]:
    """(combos with a positive whole-period return, combos with a finite one)."""
    values = np.asarray(total_returns, dtype=float)
    values = values[np.isfinite(values)]
    return int((values > 0).sum()), len(values)


def _report(source, robust, dsr, pbo_result, pbo_error, stab, periods, ratio, consistency, n_trades,
            equity, ratio_inputs, profitable, oos_return=None) -> ValidationReport:
    boot = robust.bootstrap
    finite = stab.neighbours["objective"].dropna()
    details = {
        "oos_is_ratio": ratio_inputs,
        "p_value": {"observed_sharpe": boot.observed["sharpe"], "resamples": boot.n, "block_bars": boot.block,
                    "null": "block resamples of the demeaned returns"},
        "consistency": {"positive": int((periods["return"] > 0).sum()), "periods": len(periods),
                        "periods_are": "OOS windows" if source["kind"] == "walk_forward" else "time blocks"},
        "dsr": {"sharpe_per_bar": dsr.sr, "sr0_per_bar": dsr.sr0, "observations": dsr.t, "skewness": dsr.skew,
                "kurtosis": dsr.kurt, "trials": dsr.n_trials, "sharpe_variance": dsr.var_sharpe},
        "stability": {"objective": stab.objective, "maximize": stab.maximize, "winner_value": stab.winner_value,
                      "neighbour_mean": float(finite.mean()) if len(finite) else None, "neighbours": len(finite),
                      "edge_params": list(stab.on_edge)},
        "pbo": ({"S": pbo_result.S, "splits": pbo_result.n_splits, "combos": pbo_result.n_combos,
                 "combos_total": pbo_result.n_combos_total, "prob_oos_loss": pbo_result.prob_oos_loss}
                if pbo_result is not None else {"error": pbo_error}),
    }
    graded = grade(oos_is_ratio=ratio, p_value=boot.p_value, consistency=consistency, dsr=dsr.dsr,
                   stability=stab.ratio, on_edge=bool(stab.on_edge), pbo=None if pbo_result is None else pbo_result.pbo,
                   n_trades=n_trades, details=details, profitable_combos=profitable, oos_return=oos_return,
                   consistency_of="out-of-sample windows" if source["kind"] == "walk_forward" else "time blocks")
    regimes = regime_summary(periods["regime"].tolist(), periods["sharpe"].to_numpy(dtype=float),
                             periods["return"].to_numpy(dtype=float))
    return ValidationReport(source, robust, dsr, pbo_result, pbo_error, stab, periods, regimes, ratio, consistency,
                            int(n_trades), graded, equity)


def _try_pbo(compute) -> tuple[PBOResult | None, str | None]:
    from threadx.optimize.store import RunDamaged

    try:
        return compute(), None
    except RunDamaged:  # (a part failing its checksum read as "PBO not available", 0 points, a grade F)
        raise
    except (ThreadXError, ValueError) as exc:  # e.g. no stored block returns, too few combos
        return None, str(exc)


def _cscv_ratio(result: PBOResult | None) -> float:
    """Mean OOS / mean IS Sharpe of the IS-selected combo over the CSCV splits."""
    if result is None or not len(result.is_sharpe_best):
        return float("nan")
    mean_is = float(np.nanmean(result.is_sharpe_best))
    return float(np.nanmean(result.oos_sharpe_best)) / mean_is if mean_is > 0 else float("nan")


def _cscv_inputs(result: PBOResult | None) -> dict[str, Any]:
    if result is None:
        return {"from": "CSCV splits (not available)"}
    return {"from": "CSCV splits", "mean_is_sharpe_per_bar": float(np.nanmean(result.is_sharpe_best)),
            "mean_oos_sharpe_per_bar": float(np.nanmean(result.oos_sharpe_best)), "splits": result.n_splits}


def _period_ends(block_end: Any, n_bars: int, S: int) -> np.ndarray:
    """End bar (exclusive) of each of a sweep's S time blocks: the groups of stored blocks its
    CSCV splits (:func:`~threadx.validation.pbo.block_groups`), so that its consistency counts the
    blocks its PBO does (an array split of the bars moved the edges by a few bars: one block's
    return changed sign on a real run); without stored blocks, S near-equal parts of the bars."""
    ends = np.asarray(block_end or [], dtype=np.int64)
    if len(ends) >= S and ends[-1] == n_bars:
        return ends[[int(group[-1]) for group in block_groups(len(ends), S)]]
    parts = np.array_split(np.arange(n_bars), max(1, min(int(S), n_bars // 2)))
    return np.array([int(part[-1]) + 1 for part in parts], dtype=np.int64)


def _block_periods(bars: Bars, returns: np.ndarray, ends: np.ndarray) -> pd.DataFrame:
    """The whole period cut into time blocks ending at ``ends``: market regime, strategy return and Sharpe."""
    rows = []
    ann = math.sqrt(bars_per_year(bars.timeframe))
    for lo, hi in zip(np.r_[0, ends[:-1]].tolist(), ends.tolist()):
        r = returns[lo:hi]
        # a block of one bar (16 to 31 bars in 16 blocks: the report failed on "need at least 2 close prices")
        # is read from the close before it; the first bar alone has not moved: a range
        first = lo if hi - lo >= 2 else hi - 2
        label = classify_regime(bars.close[first:hi], bars.time_ns[first:hi]) if first >= 0 else None
        std = float(np.std(r, ddof=1)) if len(r) > 1 else 0.0
        rows.append({"start": bars.index[lo], "end": bars.index[hi - 1], "regime": label.regime if label else "range",
                     "market_return": label.return_pct / 100.0 if label else 0.0,
                     "market_max_drawdown": label.max_drawdown if label else 0.0,
                     "return": float(np.prod(1.0 + r) - 1.0),
                     "sharpe": float(np.mean(r) / std * ann) if std > 0 else 0.0})
    return pd.DataFrame(rows)


def _dsr(returns: np.ndarray, trial_sharpes_annual: np.ndarray, bpy: float) -> DSRResult:
    trials = np.asarray(trial_sharpes_annual, dtype=float) / math.sqrt(bpy)
    return deflated_sharpe_from_returns(returns, trials)


def _best_full(wf: WalkForwardResult) -> int | None:
    from threadx.validation.walkforward import _select

    k = METRIC_NAMES.index
    return _select(wf.full_metrics[:, k(wf.objective)], wf.full_metrics[:, k("n_trades")], wf.config["maximize"],
                   wf.config["min_trades"])


def _winner_run(run: SweepRun, best: pd.Series, evaluator: Evaluator) -> Result:
    """The sweep's winner backtested again in full (what ``threadx.backtest`` gives for its
    params and the run's engine options, but ``meta["elapsed_s"]``)."""
    params = {k: to_python(best[k]) for k in run.param_names}
    spec, bars, options = evaluator.spec, evaluator.bars, evaluator.task.options
    meta = run_meta(spec, bars, options, strategy_rules(spec, params, options))
    return full_result(evaluator.kernel_inputs(params), bars.index, bars.timeframe, params, meta)


def _capital(run: SweepRun) -> float:
    return float((run.manifest.get("engine") or {}).get("initial_capital", 10_000.0))


