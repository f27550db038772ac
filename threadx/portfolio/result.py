"""A portfolio backtest's result, and its storage under ``<results>/portfolios/<id>/``.

Stored as ``portfolio.json`` (config, metrics, the runners' breakdown, skips, kill-switch
events, meta), ``timeline.parquet`` (per tick: equity, drawdown, margin in use, positions
and legs open, whether entries were held, and each runner's equity) and ``trades.parquet``
(every leg's trade row, with its runner).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from threadx.config import settings
from threadx.errors import ThreadXError, first_line
from threadx.names import check_name
from threadx.shapes import JSON_NUMBER, LIST, Kind, json_number, shape_problem

FOLDER = "portfolios"
SKIP_REASONS = ("margin_guard", "runner_cap", "kill_switch", "engine")


def portfolio_root(results_dir: str | os.PathLike | None = None) -> Path:
    return Path(results_dir if results_dir is not None else settings().results_dir) / FOLDER


@dataclass
class PortfolioResult:
    """What :func:`threadx.portfolio.portfolio_backtest` returns.

    ``metrics``: the single-backtest metrics of the combined account; ``runners``: one dict per
    runner (label, strategy, dataset, params, weight, capital, final equity, PnL, its own
    metrics, skips by reason, peak margin); ``timeline``: per tick (UTC) ``equity``,
    ``drawdown``, ``margin``, ``margin_share`` (of the equity), ``positions``, ``legs``,
    ``blocked`` and each runner's equity (``eq:<label>``); ``trades``: every trade row with its
    ``runner``; ``skipped``: refusals by reason (``engine``: the engine's own skips such as an
    order under the minimum notional); ``events``: kill-switch firings.
    """

    portfolio_id: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    runners: list[dict[str, Any]]
    timeline: pd.DataFrame
    trades: pd.DataFrame
    skipped: dict[str, int]
    events: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return [r["label"] for r in self.runners]

    def runner_equity(self) -> pd.DataFrame:
        """Each runner's equity at every tick (its last mark between its bars), one column per runner."""
        frame = self.timeline[[f"eq:{label}" for label in self.labels]]
        return frame.set_axis(self.labels, axis=1)

    def drawdown_correlation(self) -> pd.DataFrame:
        """Pearson correlation of the runners' drawdowns (equity / running peak - 1), each pair
        on the ticks where both have bars (from its first bar to its last: the flat equity
        outside says nothing); NaN for a runner that never drew down or a pair with fewer than
        two ticks in common."""
        eq = self.runner_equity()
        for runner in self.runners:
            if runner.get("start") and runner.get("end"):  # (a portfolio stored before they were kept: all ticks)
                inside = (eq.index >= pd.Timestamp(runner["start"])) & (eq.index <= pd.Timestamp(runner["end"]))
                eq[runner["label"]] = eq[runner["label"]].where(inside)
        drawdown = eq / eq.cummax() - 1.0
        return drawdown.corr(min_periods=2)

    def gates_text(self) -> str:
        """The three gates as the run had them, in one line ("no margin guard, runner cap 25.00 %, ...")."""
        from threadx.units import format_metric

        c = self.config
        return ", ".join([
            f"margin guard {format_metric('margin_share', c['margin_guard'])}" if c.get("margin_guard")
            else "no margin guard",
            f"runner cap {format_metric('margin_share', c['runner_cap'])}" if c.get("runner_cap") else "no runner cap",
            (f"kill switch at {format_metric('drawdown', c['kill_switch'])} drawdown within {c.get('kill_window')}, "
             f"cooldown {c.get('cooldown')}") if c.get("kill_switch") else "no kill switch"])

    def liquidation_notes(self) -> list[str]:
        """One line per runner whose sub-account went bust (``metrics["liquidated"]`` counts them):
        when, and whether the others kept trading. The count alone read as the whole account's end."""
        notes = []
        bust = sum(1 for runner in self.runners if runner["metrics"].get("liquidated"))
        others = ("" if len(self.runners) == 1 else "; every other runner was liquidated too" if bust == len(self.runners)
                  else "; the other runners kept trading")
        for runner in self.runners:
            if not runner["metrics"].get("liquidated"):
                continue
            trades = self.trades
            mine = trades[(trades["runner"] == runner["label"]) & (trades["exit_reason"] == "liquidation")]
            when = f" on {mine['exit_time'].iloc[-1]:%Y-%m-%d %H:%M} UTC" if len(mine) else ""
            notes.append(f"runner {runner['label']} was liquidated{when}: its share of the capital reached 0 and it "
                         f"stopped there{others}")
        return notes

    def gate_notes(self, stalled_share: float = 0.25) -> list[str]:
        """One line per runner the portfolio's gates (margin guard, runner cap, kill switch) held
        back: more of its entries refused than taken, or none taken in the last ``stalled_share``
        of its period though some were refused. Such a runner's flat line read as its strategy's
        own choice (a runner shut out by the margin guard for 15 months, said nowhere)."""
        notes = []
        words = {"margin_guard": "the margin guard", "runner_cap": "the runner cap", "kill_switch": "the kill switch"}
        trades = self.trades
        for runner in self.runners:
            refused = {k: int(runner.get("skipped", {}).get(k) or 0) for k in words}
            held = sum(refused.values())
            if not held:
                continue
            mine = trades[trades["runner"] == runner["label"]] if len(trades) else trades
            # legs opened: a leg closed in parts books a row per part (9 rows for 7 entries)
            taken = len(mine.drop_duplicates(["entry_time", "entry_price", "side"])) if len(mine) else 0
            start, end = pd.Timestamp(runner["start"]), pd.Timestamp(runner["end"])
            last = pd.Timestamp(mine["entry_time"].max()) if len(mine) else None
            stalled = last is None or (end - last) > stalled_share * (end - start)
            if held <= taken and not stalled:
                continue
            by = ", ".join(f"{n:,} by {words[k]}" for k, n in refused.items() if n)
            since = ("it took none" if last is None else
                     f"its last entry was on {last:%Y-%m-%d}, {(end - last).days:,} days before its end")
            notes.append(f"runner {runner['label']}: {held:,} of its entries were refused by the portfolio's gates "
                         f"({by}) against {taken:,} taken; {since}")
        return notes

    def notes(self) -> list[str]:
        """What a reader of the figures must know: the run's own notes (runners over part of the
        period), runners liquidated, runners the gates held back."""
        return [*(self.meta.get("notes") or []), *self.liquidation_notes(), *self.gate_notes()]

    def summary(self) -> dict[str, Any]:
        """The JSON-safe part (all but the two frames)."""
        def clean(d: dict[str, Any]) -> dict[str, Any]:
            return {k: json_number(v) for k, v in d.items()}

        corr = self.drawdown_correlation()
        return {"portfolio_id": self.portfolio_id, "config": self.config, "metrics": clean(self.metrics),
                "runners": [{**r, "metrics": clean(r["metrics"])} for r in self.runners],
                "skipped": self.skipped, "events": self.events, "meta": self.meta,
                "peak_margin_share": json_number(float(self.timeline["margin_share"].max())),
                "peak_positions": int(self.timeline["positions"].max()),
                "peak_legs": int(self.timeline["legs"].max()),
                "drawdown_correlation": {a: {b: json_number(float(v)) for b, v in row.items()}
                                         for a, row in corr.iterrows()}}


def save_portfolio(result: PortfolioResult, results_dir: str | os.PathLike | None = None) -> Path:
    """Write the result's three files (each atomically); returns its folder."""
    from threadx.data.io import replace_atomically
    from threadx.files import atomic_write_bytes

    folder = portfolio_root(results_dir) / check_name(result.portfolio_id, "portfolio id")
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in (("timeline", result.timeline), ("trades", result.trades)):
        replace_atomically(folder / f"{name}.parquet", lambda tmp, frame=frame: frame.to_parquet(tmp))
    atomic_write_bytes(folder / "portfolio.json", json.dumps(result.summary(), indent=2, default=str).encode())
    return folder


def load_portfolio(portfolio_id: str, results_dir: str | os.PathLike | None = None) -> PortfolioResult:
    """The stored portfolio ``portfolio_id``; ThreadXError when it is missing or damaged."""
    folder = portfolio_root(results_dir) / check_name(portfolio_id, "portfolio id")
    if not (folder / "portfolio.json").is_file():
        raise ThreadXError(f"no stored portfolio {portfolio_id!r} under {folder.parent}")
    try:
        data = _checked(json.loads((folder / "portfolio.json").read_text()))
        for name in ("timeline.parquet", "trades.parquet"):
            if not (folder / name).is_file():
                raise ValueError(f"{name} is missing")
        timeline = pd.read_parquet(folder / "timeline.parquet")
        trades = pd.read_parquet(folder / "trades.parquet")
        missing = [f"eq:{r['label']}" for r in data["runners"] if f"eq:{r['label']}" not in timeline.columns]
        if missing:
            raise ValueError(f"timeline.parquet lacks {', '.join(missing)}")
    except (ValueError, OSError, KeyError, TypeError) as exc:
        raise ThreadXError(f"stored portfolio {portfolio_id!r} is damaged: {exc}") from None
    return PortfolioResult(portfolio_id, data["config"], data["metrics"], data["runners"], timeline, trades,
                           data["skipped"], data["events"], data.get("meta") or {})  # (the folder's id: a copy is its own)


def _checked(data: Any) -> dict[str, Any]:
    """``portfolio.json``'s content when it has the shape :meth:`PortfolioResult.summary` writes;
    ValueError naming what is wrong otherwise."""
    shape = {"portfolio_id": str, "config": dict, "metrics": dict, "runners": list, "skipped": dict, "events": list}
    if not isinstance(data, dict):
        raise ValueError(f"portfolio.json holds {type(data).__name__}, not an object")
    for key, kind in shape.items():
        if not isinstance(data.get(key), kind):
            raise ValueError(f"portfolio.json: {key!r} is missing or not a {kind.__name__}")
    for runner in data["runners"]:
        if not (isinstance(runner, dict) and isinstance(runner.get("label"), str) and isinstance(runner.get("metrics"), dict)):
            raise ValueError("portfolio.json: a runner without a label or metrics")
    # (an edited figure was shown as written: a return of "oops", a config without its capital)
    figure = Kind("a number", lambda v: isinstance(v, bool) or JSON_NUMBER.accepts(v))
    config = {"capital": JSON_NUMBER.not_null(), "runners": LIST}
    problem = (shape_problem(data["config"], config, tuple(config), "config.")
               or shape_problem(data["metrics"], dict.fromkeys(data["metrics"], figure), where="metrics.")
               or next(filter(None, (shape_problem(r["metrics"], dict.fromkeys(r["metrics"], figure),
                                                  where=f"runners[{k}].metrics.")
                                     for k, r in enumerate(data["runners"]))), None))
    if problem:
        raise ValueError(f"portfolio.json: {problem}")
    if not all(isinstance(e, dict) for e in data["events"]):
        raise ValueError("portfolio.json: an event that is not an object")
    return data


def list_portfolios(results_dir: str | os.PathLike | None = None,
                    damaged: list[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
    """The stored portfolios, newest first: id (its folder's name), runners, return, max drawdown;
    a folder whose files are damaged is left out, and added to ``damaged`` as (id, why) when
    given (the page names it)."""
    root = portfolio_root(results_dir)
    rows = []
    for path in sorted(root.glob("*/portfolio.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            data = _checked(json.loads(path.read_text()))
            lost = [f"{name}.parquet" for name in ("timeline", "trades")
                    if not (path.parent / f"{name}.parquet").is_file()]
            if lost:
                raise ValueError(f"{', '.join(lost)} missing")
            rows.append({"portfolio_id": path.parent.name, "runners": len(data["runners"]),
                         "total_return": data["metrics"].get("total_return"),
                         "max_drawdown": data["metrics"].get("max_drawdown"),
                         "created": (data.get("meta") or {}).get("created")})
        except (ValueError, OSError) as exc:
            if damaged is not None:
                damaged.append((path.parent.name, first_line(exc, 160)))
            continue
    return rows
