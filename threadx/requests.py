"""One request object per kind of work: a backtest, a sweep, a walk-forward.

Each request names its data (a :class:`DatasetRef`: the dataset name or file path, the
bars' timeframe and bounds, and their fingerprint once known), the strategy, its params
or search space, and the engine options. Every default is declared here once (engine
options: :class:`~threadx.engine.inputs.EngineOptions`); a request is checked when it is
built and round-trips through JSON (``to_dict`` / ``from_dict``). The page builds it, the
job registry stores it, the job runner runs it and the sweep's manifest records it
(``manifest["request"]``), so a result can always be reproduced from what it stored::

    req = BacktestRequest.from_manifest(run.manifest, run.best_params())
    result = req.run()          # on the run's own data; DataError if it is gone or changed
"""
from __future__ import annotations

import math
import os
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Mapping

import pandas as pd

from threadx.config import (DEFAULT_BOOTSTRAP, DEFAULT_MIN_TRADES, DEFAULT_SEED, DEFAULT_WF_SAMPLES, STORED,
                            sweep_defaults)
from threadx.errors import DataError, ParamError, whole

UNNAMED = "<frame>"  # the source of data that was a frame in memory, not a file or dataset: not reloadable
WALKFORWARD_SAMPLERS = ("grid", "random", "lhs", "sobol")
_WINDOW_KEYS = ("is_bars", "is_days", "oos_bars", "oos_days", "step_bars", "step_days")


# --- data -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class DatasetRef:
    """The candles a piece of work ran on (or will run on).

    ``source``: what :func:`threadx.load_ohlcv` reads (a file path, or a dataset name);
    ``name``: the dataset's name for display (and a fallback when the path is gone);
    ``timeframe`` / ``start`` (inclusive) / ``end`` (exclusive): how it was loaded;
    ``fingerprint``: the bars' hash, checked by :meth:`load` when set.
    """

    source: str
    name: str | None = None
    timeframe: str | None = None
    start: str | None = None
    end: str | None = None
    fingerprint: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.source, os.PathLike):
            object.__setattr__(self, "source", os.fspath(self.source))
        if not self.source or not isinstance(self.source, str):
            raise ParamError(f"a dataset needs a name or a file path, got {self.source!r}")
        for key in ("name", "timeframe", "start", "end", "fingerprint"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, str):
                object.__setattr__(self, key, str(value))

    @property
    def label(self) -> str:
        """The dataset's name (else its source), with its file when it was read from a path."""
        text = self.name or self.source
        if self.name and self.source != self.name and os.sep in self.source:
            text = f"{self.name}, file {self.source}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | str | os.PathLike) -> "DatasetRef":
        """From :meth:`to_dict`, or from a bare dataset name / path."""
        if isinstance(data, (str, os.PathLike)):
            return cls(source=os.fspath(data))
        if not isinstance(data, Mapping):
            raise ParamError(f"a dataset is a name, a path or a dict, got {type(data).__name__}")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ParamError(f"unknown dataset key(s) {', '.join(unknown)}")
        return cls(**_with_required(cls, dict(data), "a dataset"))

    @classmethod
    def of(cls, df: Any, source: str | None = None, bars: Any = None) -> "DatasetRef":
        """The reference of a loaded frame (or Bars; ``bars``: its Bars when already built):
        its file, timeframe, exact bounds and fingerprint, so :meth:`load` gives the same bars."""
        from threadx.data.bars import as_bars
        from threadx.data.grid import timeframe_ns

        bars = as_bars(df) if bars is None else bars
        attrs = getattr(df, "attrs", {}) or {}
        src = source or (os.path.abspath(attrs["source"]) if attrs.get("source") else bars.name)
        if not src:
            return cls(source=UNNAMED, fingerprint=bars.fingerprint)
        start = end = None
        if len(bars):
            step = timeframe_ns(bars.timeframe) if bars.timeframe else 1
            start = pd.Timestamp(int(bars.time_ns[0]), tz="UTC").isoformat()
            end = pd.Timestamp(int(bars.time_ns[-1]) + step, tz="UTC").isoformat()
        ref = cls(source=str(src), name=bars.name or attrs.get("name"), timeframe=bars.timeframe, start=start,
                  end=end, fingerprint=bars.fingerprint)
        if source is None and attrs.get("fingerprint") not in (None, bars.fingerprint):
            # not the frame its file was loaded as: a slice of it (reloaded as recorded) or a copy edited
            # in memory, which was recorded as the file (its runs listed on the dataset, and a reload
            # blamed the file for candles it never held)
            try:
                ref.load()
            except (DataError, ParamError):
                return replace(ref, source=UNNAMED, name=None)
        return ref

    def load(self) -> pd.DataFrame:
        """The candles: the file (else the dataset of that name), cut and resampled as
        recorded. DataError saying why when they are gone or changed (fingerprint)."""
        import threadx
        from threadx.data.bars import as_bars

        if self.source == UNNAMED:
            raise DataError("the data was a frame in memory, not a file or dataset: it cannot be reloaded")
        try:
            df = threadx.load_ohlcv(self.source, self.timeframe, self.start, self.end)
        except DataError as exc:
            gone = str(exc).splitlines()[0]
            if _present(self.source):  # there, but it does not load (damaged, invalid): not "gone"
                raise DataError(f"dataset {self.label} cannot be loaded: {gone}") from None
            if not self.name or self.name == self.source:
                raise DataError(f"dataset {self.label} is gone: {gone}") from None
            try:  # the file moved: a dataset of the same name, if its candles are the same
                df = threadx.load_ohlcv(self.name, self.timeframe, self.start, self.end)
            except DataError as again:
                if not _present(self.name):  # (it repeated the path and listed every dataset under two names)
                    raise DataError(f"dataset {self.name} is gone: its file {self.source} is not found, and no "
                                    "dataset of that name is in the data folder") from None
                raise DataError(f"dataset {self.label} is gone: {gone}; {str(again).splitlines()[0]}") from None
            if self.fingerprint and as_bars(df).fingerprint != self.fingerprint:
                raise DataError(f"dataset {self.label} is gone: {gone}; the dataset named {self.name} holds "
                                "other candles") from None
        if self.fingerprint:
            now = as_bars(df).fingerprint
            if now != self.fingerprint:
                raise self.changed(now)
        if self.name:
            df.attrs["name"] = self.name  # read from its file, still labelled with the dataset's name
        return df


    def problem(self) -> str | None:
        """Why these candles cannot be had again now (gone, damaged or changed since: the
        :meth:`load` error), None when they can."""
        try:
            self.load()
        except DataError as exc:
            return str(exc).splitlines()[0]
        return None

    def bars_span(self) -> str:
        """Its first and last bar's open times, as every caption says them (the recorded end is
        exclusive: the last bar opens one timeframe before it).

        >>> DatasetRef("x", timeframe="1h", start="2025-01-01T00:00:00+00:00", end="2025-03-01T00:00:00+00:00").bars_span()
        '2025-01-01 00:00 to 2025-02-28 23:00'
        """
        from threadx.data.grid import timeframe_ns

        last = pd.Timestamp(self.end) - pd.Timedelta(timeframe_ns(self.timeframe) if self.timeframe else 0, unit="ns")
        return f"{pd.Timestamp(self.start):%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M}"

    def changed(self, fingerprint: str) -> DataError:
        """The error of candles loaded for this reference whose ``fingerprint`` is not the one recorded."""
        span = ", ".join(part for part in (self.timeframe, self.bars_span() if self.start and self.end else None)
                         if part)
        # (the span is the run's: "its candles (1h, Jan to Mar) have fingerprint <new>" paired the old
        # span with the new data's fingerprint)
        return DataError(f"dataset {self.label} changed since the run: the run used its candles"
                         f"{f' ({span})' if span else ''} with fingerprint {(self.fingerprint or '?')[:12]}, "
                         f"its candles now give {fingerprint[:12]}; not running on other data")


def _present(source: str) -> bool:
    """Whether a file path or dataset name still names a file (which may not load)."""
    from threadx.data.catalog import resolve_dataset

    try:
        resolve_dataset(source)
    except DataError:
        return False
    return True


def _dataset(value: Any, raw: Mapping[str, Any]) -> DatasetRef:
    """The ``data`` of a request dict: a DatasetRef dict, or a name/path with the older
    top-level ``timeframe`` / ``start`` / ``end`` keys."""
    if isinstance(value, DatasetRef):
        return value
    if isinstance(value, (str, os.PathLike)):
        return DatasetRef(source=os.fspath(value), timeframe=raw.get("timeframe"), start=raw.get("start"),
                          end=raw.get("end"))
    if value is None or value == "":
        raise ParamError(f"a job needs 'data' (a dataset name or file path), got {value!r}")
    return DatasetRef.from_dict(value)


# --- engine options ---------------------------------------------------------------------------

def engine_dict(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Every engine option, checked, with its default filled in (a funding series summary,
    as manifests store it, is kept as text: such a run cannot be re-run from its record)."""
    from threadx.engine.inputs import options_from

    if options is not None and not isinstance(options, Mapping):
        raise ParamError("engine_options must be a dict (fee_bps, fill, ...)")
    values = dict(options or {})
    summary = values.pop("funding") if isinstance(values.get("funding"), str) else None
    out = options_from(values).to_dict()
    if summary is not None:
        out["funding"] = summary
    return out


def _check_strategy_space(strategy: Any, space: Any) -> Any:
    from threadx.optimize.space import SearchSpace
    from threadx.strategy.base import get_strategy

    if not strategy or not isinstance(strategy, str):
        raise ParamError(f"a request needs 'strategy' (a name), got {strategy!r}")
    return SearchSpace(get_strategy(strategy), space or None)  # ParamError for a space that is not a mapping


def _from_dict(cls, data: Mapping[str, Any]) -> Any:
    if not isinstance(data, Mapping):
        raise ParamError(f"a request is a dict, got {type(data).__name__}")
    raw = {k: v for k, v in data.items() if k != "kind"}
    known = {f.name for f in fields(cls)}
    loose = {"timeframe", "start", "end"}  # older job specs put these beside a named dataset
    unknown = sorted(set(raw) - known - loose)
    if unknown:
        raise ParamError(f"unknown {cls.KIND} param(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    values = {k: v for k, v in raw.items() if k in known and (v is not None or _nullable(cls, k))}
    values["data"] = _dataset(raw.get("data"), raw)
    return cls(**_with_required(cls, values, f"a {cls.KIND} request"))


def _fields_from_dict(cls, data: Mapping[str, Any]) -> Any:
    """``cls`` from its :meth:`to_dict` (its fields, no dataset to resolve); ParamError for
    anything else or an unknown key."""
    if not isinstance(data, Mapping):
        raise ParamError(f"a request is a dict, got {type(data).__name__}")
    raw = {k: v for k, v in data.items() if k != "kind"}
    unknown = sorted(set(raw) - {f.name for f in fields(cls)})
    if unknown:
        raise ParamError(f"unknown {cls.KIND} param(s) {', '.join(unknown)}")
    return cls(**_with_required(cls, raw, f"a {cls.KIND} request"))


def check_once(names: list[Any], what: str) -> None:
    """ParamError naming the ``what`` given more than once among ``names`` (each strategy or
    dataset of a research is one row or column of its tables)."""
    twice = sorted({str(n) for n in names if names.count(n) > 1})
    if twice:
        raise ParamError(f"a {what} is given twice: {', '.join(twice)}")


def _with_required(cls: Any, values: dict[str, Any], what: str) -> dict[str, Any]:
    """``values`` when they hold every field of ``cls`` without a default; else ParamError
    naming the missing ones (a TypeError from the constructor said it in Python's words)."""
    missing = sorted(f.name for f in fields(cls) if f.name not in values and f.default is MISSING
                     and f.default_factory is MISSING)
    if missing:
        raise ParamError(f"{what} needs {', '.join(missing)}")
    return values


def _nullable(cls, key: str) -> bool:
    """Whether None is a meaningful value of field ``key`` (else None keeps the default)."""
    default = cls.__dataclass_fields__[key].default
    return default is None


# --- requests ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class BacktestRequest:
    """One backtest: data, strategy, params (missing ones at their defaults), engine options."""

    KIND = "backtest"
    data: DatasetRef
    strategy: str
    params: dict = field(default_factory=dict)
    engine_options: dict = field(default_factory=dict)
    code_hash: str | None = None  # the strategy code it was made with (None: whatever the code is now)

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", _dataset(self.data, {}))
        _check_strategy_space(self.strategy, {})
        if self.code_hash is not None and not isinstance(self.code_hash, str):
            raise ParamError(f"code_hash must be a string, got {type(self.code_hash).__name__}")
        if not isinstance(self.params, Mapping):
            raise ParamError(f"params must be a dict, got {type(self.params).__name__}")
        object.__setattr__(self, "params", dict(self.params))
        object.__setattr__(self, "engine_options", engine_dict(self.engine_options))

    def to_dict(self) -> dict[str, Any]:
        out = {"kind": self.KIND, "data": self.data.to_dict(), "strategy": self.strategy,
               "params": jsonable(self.params), "engine_options": dict(self.engine_options)}
        if self.code_hash is not None:
            out["code_hash"] = self.code_hash
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "BacktestRequest":
        return _from_dict(cls, data)

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any], params: Mapping[str, Any]) -> "BacktestRequest":
        """The backtest of ``params`` as the sweep (or walk-forward) of ``manifest`` ran it:
        its data, strategy and engine options."""
        recorded = manifest.get("request") or {}
        data = recorded.get("data") or manifest.get("data")
        if data is None:  # a run stored before requests: its dataset name and fingerprint
            if not manifest.get("dataset"):
                raise DataError(f"run {manifest.get('run_id')} records no dataset: it ran on an unnamed frame")
            data = {"source": manifest["dataset"], "name": manifest["dataset"],
                    "timeframe": manifest.get("timeframe"), "fingerprint": manifest.get("fingerprint")}
        engine = manifest.get("engine") or recorded.get("engine_options") or {}
        return cls(data=DatasetRef.from_dict(data), strategy=manifest["strategy"], params=dict(params),
                   engine_options=engine, code_hash=manifest.get("strategy_code"))

    def run(self, df: pd.DataFrame | None = None) -> Any:
        """The :class:`threadx.Result` (on ``df`` if given, else on :meth:`DatasetRef.load`)."""
        import threadx
        from threadx.data.funding import with_stored_funding

        options = with_stored_funding(self.engine_options, self.data.source)  # (before the candles are read)
        threadx.get_strategy(self.strategy).require_code(self.code_hash, f"this {self.strategy} backtest")
        frame = self.data.load() if df is None else df
        return threadx.backtest(frame, self.strategy, self.params, **options)


class _JobRequest:
    """JSON form and run id of a request that runs as a background job (sweep, walk-forward)."""

    def to_dict(self) -> dict[str, Any]:
        out = {"kind": self.KIND, **{f.name: getattr(self, f.name) for f in fields(self)}}
        out["data"] = self.data.to_dict()
        return jsonable(out)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        return _from_dict(cls, data)

    def with_run_id(self, run_id: str) -> Any:
        return replace(self, run_id=run_id)


@dataclass(frozen=True)
class SweepRequest(_JobRequest):
    """One sweep (the keyword arguments of :func:`threadx.sweep`, the data and a label)."""

    KIND = "sweep"
    data: DatasetRef
    strategy: str
    space: dict = field(default_factory=dict)
    sampler: str = "grid"
    n: int | None = None
    seed: int = DEFAULT_SEED
    objective: str = "sharpe"
    maximize: bool = True
    min_trades: int = DEFAULT_MIN_TRADES
    workers: int | None = None
    executor: str = field(default_factory=lambda: sweep_defaults().executor)  # settings: [sweep]
    run_id: str | None = None
    scheduler: str | None = None
    chunk_size: int | None = None
    adaptive_rounds: int = 5
    patience: int = 2
    grid_limit: int = field(default_factory=lambda: sweep_defaults().grid_limit)
    engine_options: dict = field(default_factory=dict)
    label: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", _dataset(self.data, {}))
        object.__setattr__(self, "space", dict(self.space or {}) if isinstance(self.space, Mapping) or not self.space
                           else self.space)
        search = _check_strategy_space(self.strategy, self.space)
        from threadx.optimize.runner import _check_arguments
        from threadx.optimize.samplers import check_grid_size

        if not isinstance(self.maximize, bool):
            raise ParamError(f"maximize must be true or false, got {self.maximize!r}")
        for key, low in (("grid_limit", 1), ("adaptive_rounds", 0), ("patience", 1)):
            whole(getattr(self, key), key, low)
        _check_arguments(search, self.sampler, self.n, self.seed, self.objective, self.executor, self.workers,
                         self.chunk_size, self.min_trades, self.grid_limit)
        check_grid_size(search, self.sampler, self.grid_limit)
        object.__setattr__(self, "engine_options", engine_dict(self.engine_options))

    def sweep_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`threadx.sweep` (engine options included; funding ``"stored"``
        or the record of a stored file is the dataset's funding file, see :func:`with_stored_funding`)."""
        from threadx.data.funding import with_stored_funding

        keys = ("sampler", "n", "seed", "objective", "maximize", "min_trades", "workers", "executor", "run_id",
                "scheduler", "chunk_size", "adaptive_rounds", "patience", "grid_limit")
        return with_stored_funding({**{k: getattr(self, k) for k in keys}, **self.engine_options}, self.data.source)


@dataclass(frozen=True)
class WalkForwardRequest(_JobRequest):
    """One walk-forward (:func:`threadx.walk_forward`) and its validation report settings."""

    KIND = "walkforward"
    data: DatasetRef
    strategy: str
    space: dict = field(default_factory=dict)
    is_bars: int | None = None
    is_days: float | None = None
    oos_bars: int | None = None
    oos_days: float | None = None
    step_bars: int | None = None
    step_days: float | None = None
    anchored: bool = False
    purge: int = 0
    embargo: int = 0
    sampler: str = "random"
    n: int = DEFAULT_WF_SAMPLES
    seed: int = DEFAULT_SEED
    objective: str = "sharpe"
    maximize: bool = True
    min_trades: int = DEFAULT_MIN_TRADES
    workers: int | None = None
    engine_options: dict = field(default_factory=dict)
    label: str = ""
    run_id: str | None = None
    bootstrap: int = DEFAULT_BOOTSTRAP
    S: int = 16

    def __post_init__(self) -> None:
        from threadx.engine.layout import METRIC_NAMES
        from threadx.validation.walkforward import window_lengths

        object.__setattr__(self, "data", _dataset(self.data, {}))
        object.__setattr__(self, "space", dict(self.space or {}) if isinstance(self.space, Mapping) or not self.space
                           else self.space)
        _check_strategy_space(self.strategy, self.space)
        if self.sampler not in WALKFORWARD_SAMPLERS:
            raise ParamError(f"walk-forward sampler must be grid, random, lhs or sobol, got {self.sampler!r}")
        if self.objective not in METRIC_NAMES:
            raise ParamError(f"unknown objective {self.objective!r}; metrics: {', '.join(METRIC_NAMES)}")
        for key, low in (("n", 1), ("min_trades", 0), ("purge", 0), ("embargo", 0)):
            whole(getattr(self, key), key, low)
        from threadx.validation.bootstrap import check_resamples
        from threadx.validation.pbo import check_S

        check_resamples(self.bootstrap, "bootstrap")

        check_S(self.S)
        window_lengths("1h", **{k: getattr(self, k) for k in _WINDOW_KEYS})  # both or neither, positive
        if not isinstance(self.maximize, bool) or not isinstance(self.anchored, bool):
            raise ParamError("maximize and anchored must be true or false")
        object.__setattr__(self, "engine_options", engine_dict(self.engine_options))

    def walk_forward_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`threadx.walk_forward` (engine options included; funding
        ``"stored"`` or the record of a stored file is the dataset's funding file, as for a sweep)."""
        from threadx.data.funding import with_stored_funding

        keys = (*_WINDOW_KEYS, "anchored", "purge", "embargo", "sampler", "n", "seed", "objective", "maximize",
                "min_trades", "workers")
        return with_stored_funding({**{k: getattr(self, k) for k in keys}, **self.engine_options}, self.data.source)



RESEARCH_EXECUTORS = ("inline", "local", "dask")


@dataclass(frozen=True)
class ResearchRequest:
    """Strategies walk-forwarded on several datasets (:func:`threadx.validation.research.research`).

    ``options``: the :class:`WalkForwardRequest` fields shared by every cell (windows,
    sampler, n, seed, objective, min_trades, bootstrap, S, engine_options); ``space`` applies
    to every strategy (empty: the declared ranges). ``run_id`` is the research id."""

    KIND = "research"
    strategies: tuple
    datasets: tuple
    space: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    executor: str = "inline"
    workers: int | None = None
    scheduler: str | None = None
    run_id: str | None = None
    label: str = ""

    def __post_init__(self) -> None:
        strategies = [self.strategies] if isinstance(self.strategies, str) else list(self.strategies or ())
        datasets = [_dataset(d, {}) for d in ((self.datasets,) if isinstance(self.datasets, (str, os.PathLike))
                                             else (self.datasets or ()))]
        if not strategies or not datasets:
            raise ParamError("research needs at least one strategy and one dataset")
        check_once(strategies, "strategy")
        if self.executor not in RESEARCH_EXECUTORS:
            raise ParamError(f"executor must be one of {', '.join(RESEARCH_EXECUTORS)}, got {self.executor!r}")
        object.__setattr__(self, "strategies", tuple(strategies))
        object.__setattr__(self, "datasets", tuple(datasets))
        object.__setattr__(self, "space", dict(self.space or {}))
        object.__setattr__(self, "options", dict(self.options or {}))
        reserved = sorted(set(self.options) & {"data", "strategy", "space", "run_id", "label", "workers"})
        if reserved:
            raise ParamError(f"research options cannot set {', '.join(reserved)}")
        for strategy in strategies:  # every cell checked now (the data is not read)
            self.cell(strategy, datasets[0], "check")

    def cell(self, strategy: str, data: DatasetRef, run_id: str, space: Mapping[str, Any] | None = None
             ) -> WalkForwardRequest:
        """The walk-forward request of one cell (``space``: this strategy's own, else the shared one)."""
        return WalkForwardRequest.from_dict({**self.options, "data": data.to_dict(), "strategy": strategy,
                                             "space": dict(space if space is not None else self.space),
                                             "workers": self.workers, "run_id": run_id, "label": self.run_id or ""})

    def to_dict(self) -> dict[str, Any]:
        out = {"kind": self.KIND, **{f.name: getattr(self, f.name) for f in fields(self)}}
        out["strategies"] = list(self.strategies)
        out["datasets"] = [d.to_dict() for d in self.datasets]
        return jsonable(out)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ResearchRequest":
        return _fields_from_dict(cls, data)

    def with_run_id(self, run_id: str) -> "ResearchRequest":
        return replace(self, run_id=run_id)

    def run(self, results_dir: Any = None, progress: Any = None, cancel: Any = None) -> Any:
        """The :class:`~threadx.validation.research.ResearchResult`, stored under ``results_dir``."""
        from threadx.validation.research import research

        return research(list(self.strategies), list(self.datasets), self.space or None, executor=self.executor,
                        workers=self.workers, scheduler=self.scheduler, results_dir=results_dir,
                        research_id=self.run_id, progress=progress, cancel=cancel, **self.options)


def _portfolio_default(name: str) -> Any:
    """A default of :func:`threadx.portfolio.portfolio_backtest` (declared there once; read
    late: threadx.portfolio imports this module)."""
    from threadx.portfolio import backtest

    return getattr(backtest, name)


@dataclass(frozen=True)
class PortfolioRequest:
    """Runners sharing one capital (:func:`threadx.portfolio.portfolio_backtest`).

    ``runners``: :class:`~threadx.portfolio.runners.Runner` dicts (strategy, data, params,
    weight); ``capital``: None for the engine's initial capital; the gates are fractions,
    None when off; ``funding``: ``"stored"`` (each dataset's funding file, when there is one)
    or None; ``engine_options``: for every runner (not the capital). ``run_id`` is the
    portfolio id; ``origin``: where the runners came from (``research_origin``), recorded."""

    KIND = "portfolio"
    runners: tuple
    capital: float | None = None
    margin_guard: float | None = None
    runner_cap: float | None = None
    kill_switch: float | None = None
    kill_window: str = field(default_factory=lambda: _portfolio_default("DEFAULT_KILL_WINDOW"))
    cooldown: str = field(default_factory=lambda: _portfolio_default("DEFAULT_COOLDOWN"))
    funding: str | None = STORED
    engine_options: dict = field(default_factory=dict)
    run_id: str | None = None
    label: str = ""
    origin: str | None = None

    def __post_init__(self) -> None:
        if self.origin is not None and not isinstance(self.origin, str):
            raise ParamError(f"origin must be a text (where the runners came from), got {self.origin!r}")
        from threadx.portfolio.backtest import gate_duration, gate_fraction
        from threadx.portfolio.runners import Runner, runner_labels

        items = [self.runners] if isinstance(self.runners, (str, Mapping, Runner)) else list(self.runners or ())
        if not items:
            raise ParamError("a portfolio needs at least one runner")
        runners = []
        for item in items:
            if isinstance(item, Runner):
                runners.append(item)
            elif isinstance(item, Mapping):
                runners.append(Runner.from_dict(item))
            else:
                raise ParamError(f"a portfolio runner is a dict (strategy, data, params, weight), got {item!r}")
        runner_labels(runners)  # refuses the same runner twice (with other params it is a runner #2)
        for runner in runners:  # the strategy exists (the data is not read)
            _check_strategy_space(runner.strategy, {})
        if self.capital is not None:  # (checked here: the job would refuse it only once started)
            from threadx.engine.inputs import check_capital

            object.__setattr__(self, "capital", check_capital(self.capital, "capital"))
        for key, upper in (("margin_guard", None), ("runner_cap", None), ("kill_switch", 1.0)):
            object.__setattr__(self, key, gate_fraction(getattr(self, key), key, upper) or None)
        gate_duration(self.kill_window, "kill_window")
        gate_duration(self.cooldown, "cooldown")
        if self.funding not in (None, STORED):
            raise ParamError(f"funding must be 'stored' or None, got {self.funding!r}")
        options = dict(self.engine_options or {}) if isinstance(self.engine_options, Mapping) else self.engine_options
        if isinstance(options, Mapping) and "initial_capital" in options:
            raise ParamError("set the portfolio's capital with capital, not engine_options initial_capital")
        engine = engine_dict(options)
        for key in ("initial_capital", "funding"):  # the capital is the portfolio's; funding: see ``funding``
            engine.pop(key, None)
        object.__setattr__(self, "runners", tuple(r.to_dict() for r in runners))
        object.__setattr__(self, "engine_options", engine)

    def to_dict(self) -> dict[str, Any]:
        out = {"kind": self.KIND, **{f.name: getattr(self, f.name) for f in fields(self)}}
        out["runners"] = list(self.runners)
        return jsonable(out)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PortfolioRequest":
        return _fields_from_dict(cls, data)

    def with_run_id(self, run_id: str) -> "PortfolioRequest":
        return replace(self, run_id=run_id)

    def run(self, results_dir: Any = None, progress: Any = None, cancel: Any = None) -> Any:
        """The :class:`~threadx.portfolio.PortfolioResult`, stored under ``results_dir``."""
        from threadx.portfolio import portfolio_backtest

        return portfolio_backtest(list(self.runners), capital=self.capital, margin_guard=self.margin_guard,
                                  runner_cap=self.runner_cap, kill_switch=self.kill_switch,
                                  kill_window=self.kill_window, cooldown=self.cooldown, funding=self.funding,
                                  portfolio_id=self.run_id, results_dir=results_dir, progress=progress,
                                  cancel=cancel, origin=self.origin, **self.engine_options)


# --- labels -----------------------------------------------------------------------------------


# an engine option's words and unit where a page or a caption names it ("fee 10 bps", "capital 10,000")
OPTION_WORDS = {"fee_bps": ("fee", " bps"), "slippage_bps": ("slippage", " bps"), "initial_capital": ("capital", ""),
                "min_notional": ("min order", "")}


def describe_options(engine: Mapping[str, Any] | None) -> str:
    """Engine options in one line (fee, slippage, fill, sizing, leverage, capital, ...)."""
    if not engine:
        return "engine options not recorded"

    def num(value: Any) -> str:
        return f"{value:,.10g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)

    def option(key: str) -> str:
        words, unit = OPTION_WORDS[key]
        return f"{words} {num(engine.get(key))}{unit}"

    # (a part of a record, as the options a research or a stored portfolio hands on, names only its own)
    parts = [option(key) for key in ("fee_bps", "slippage_bps") if key in engine]
    parts += [f"fill {engine['fill']}"] if "fill" in engine else []
    parts += [f"sizing {engine.get('sizing') or 'strategy default'}"] if "sizing" in engine else []
    parts += [f"{key} {num(engine[key])}" for key in ("leverage", "fraction") if engine.get(key) is not None]
    parts += [option(key) for key in ("initial_capital", "min_notional") if key in engine]
    if engine.get("ambiguity") not in (None, "conservative"):
        parts.append(f"ambiguity {engine['ambiguity']}")
    if engine.get("funding") is not None:
        parts.append(f"funding {funding_words(engine['funding'])}")
    return ", ".join(parts)


def funding_words(funding: Any, detail: bool = True) -> str:
    """An engine option's funding in words: "the stored file" (``"stored"``), a stored file's record
    as the file's name, its rate count and the start of its sha256 (``detail=False``: "the stored
    file", so a form that applies the stored file reads as the run that recorded it), a rate "per
    settlement", "none"; a record of a series passed from Python is "a series from Python".

    >>> funding_words("stored"), funding_words(None), funding_words(0.0001)
    ('the stored file', 'none', '0.0001 per settlement')
    >>> funding_words("<Series of 1,095 rates from /d/binance/BTC_USDT-funding.parquet, sha256 " + "3f" * 32 + ">")
    'BTC_USDT-funding.parquet (1,095 rates, sha256 3f3f3f3f)'
    """
    from threadx.data.funding import stored_record

    if funding is None:
        return "none"
    if funding == STORED:
        return "the stored file"
    if not isinstance(funding, str):
        return f"{funding:.10g} per settlement"
    record = stored_record(funding)
    if record is None:
        return "a series from Python"
    if not detail:
        return "the stored file"
    return f"{os.path.basename(record['path'])} ({record['rates']} rates, sha256 {record['sha'][:8]})"


def describe_data(data: Mapping[str, Any] | None, fallback: str | None = None, timeframe: str | None = None) -> str:
    """A run's data in one line: name (and file), timeframe, its first and last bar, fingerprint.

    >>> describe_data({"source": "binance/BTC_USDT-1h", "timeframe": "1h", "start": "2025-01-01T00:00:00+00:00",
    ...                "end": "2025-03-01T00:00:00+00:00", "fingerprint": "f82bf8b3ebec5d1a"})
    'binance/BTC_USDT-1h (1h, 2025-01-01 00:00 to 2025-02-28 23:00, fingerprint f82bf8b3)'
    """
    if not data:
        return f"{fallback or 'unnamed data'}" + (f" ({timeframe})" if timeframe else "")
    ref = DatasetRef.from_dict(data)
    parts = [ref.timeframe or "?"]
    if ref.start and ref.end:
        parts.append(ref.bars_span())
    if ref.fingerprint:
        parts.append(f"fingerprint {ref.fingerprint[:8]}")
    label = ref.label if ref.source != UNNAMED else "a frame in memory" + (f" made from {fallback}" if fallback else "")
    return f"{label} ({', '.join(parts)})"


def describe_run(manifest: Mapping[str, Any]) -> str:
    """Which data and engine options a stored sweep ran on (a caption for its results)."""
    data = describe_data(manifest.get("data"), manifest.get("dataset"), manifest.get("timeframe"))
    return f"Data: {data} · Options: {describe_options(manifest.get('engine'))}"


REQUESTS = {cls.KIND: cls for cls in (BacktestRequest, SweepRequest, WalkForwardRequest)}


def request_from_dict(data: Mapping[str, Any]) -> BacktestRequest | SweepRequest | WalkForwardRequest:
    """The request of a ``to_dict()`` (its ``kind`` picks the class)."""
    kind = data.get("kind") if isinstance(data, Mapping) else None
    if kind not in REQUESTS:
        raise ParamError(f"unknown request kind {kind!r}; kinds: {', '.join(REQUESTS)}")
    return REQUESTS[kind].from_dict(data)


def jsonable(value: Any) -> Any:
    """JSON-safe copy: numpy scalars -> Python, tuples -> lists, non-finite floats -> None."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (str, bytes)):
        try:
            value = value.item()  # numpy scalar
        except (TypeError, ValueError):
            pass
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise ParamError(f"value {value!r} ({type(value).__name__}) cannot be stored as JSON")
