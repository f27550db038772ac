"""Indicator registry: names, parameter declarations, output lines and batch compute.

``INDICATORS[name]`` is an :class:`IndicatorDef`. ``normalize`` turns user parameters
into the canonical dict that keys every cache entry (defaults filled, numbers cast,
choices lowercased, unknown or out-of-range values rejected with ``ParamError``).
``compute_many`` evaluates a list of parameter sets through one :class:`Intermediates`
store, so a grid shares its work: one rolling mean+std per Bollinger period for all
``k``, one true range for all ATR periods, one EMA per (source, period) for all MACD
combinations, one directional-movement pass for all ADX periods, one ATR per period for
all SuperTrend multipliers, and so on.

Arrays returned by ``compute_many`` may share memory between results (Bollinger ``mid``
is the same array for every ``k`` of a period): treat them as read-only.
"""
from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from threadx.data.bars import Bars, as_bars
from threadx.errors import ParamError
from threadx.aot import call
from threadx.indicators import kernels as K

SOURCES = ("open", "high", "low", "close", "volume", "hl2", "hlc3", "ohlc4")
ATR_METHODS = ("wilder", "ema", "sma")


# ---------------------------------------------------------------------------- params
@dataclass(frozen=True)
class Param:
    """One parameter declaration: ``kind`` is "int", "float" or "choice"."""

    name: str
    kind: str
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    exclusive_min: bool = False
    choices: tuple[str, ...] = ()
    doc: str = ""

    def cast(self, indicator: str, value: Any) -> Any:
        where = f"{indicator}.{self.name}"
        if self.kind == "choice":
            if not isinstance(value, str):
                raise ParamError(f"{where} must be one of {list(self.choices)}, got {value!r}")
            v = value.strip().lower()
            if v not in self.choices:
                raise ParamError(f"{where} must be one of {list(self.choices)}, got {value!r}")
            return v
        if isinstance(value, (bool, np.bool_)):
            raise ParamError(f"{where} must be a number, got {value!r}")
        if isinstance(value, str):
            try:
                value = float(value.strip()) if self.kind == "float" or "." in value or "e" in value.lower() \
                    else int(value.strip())
            except ValueError:
                raise ParamError(f"{where} must be a number, got {value!r}") from None
        if not isinstance(value, numbers.Real):
            raise ParamError(f"{where} must be a number, got {type(value).__name__} {value!r}")
        if self.kind == "int":
            f = float(value)
            if not math.isfinite(f) or f != int(f):
                raise ParamError(f"{where} must be a whole number, got {value!r}")
            v: Any = int(f) if not isinstance(value, numbers.Integral) else int(value)
        else:
            v = float(value)
            if not math.isfinite(v):
                raise ParamError(f"{where} must be a finite number, got {value!r}")
        if self.minimum is not None:
            if self.exclusive_min and not v > self.minimum:
                raise ParamError(f"{where} must be > {self.minimum:g}, got {v!r}")
            if not self.exclusive_min and v < self.minimum:
                raise ParamError(f"{where} must be >= {self.minimum:g}, got {v!r}")
        if self.maximum is not None and v > self.maximum:
            raise ParamError(f"{where} must be <= {self.maximum:g}, got {v!r}")
        return v

    def describe(self) -> dict:
        d = {"name": self.name, "kind": self.kind, "default": self.default}
        if self.minimum is not None:
            d["minimum"] = self.minimum
            d["exclusive_min"] = self.exclusive_min
        if self.maximum is not None:
            d["maximum"] = self.maximum
        if self.choices:
            d["choices"] = list(self.choices)
        return d


_MAX_PERIOD = 1_000_000


def _period(default: int, doc: str = "window length in bars") -> Param:
    return Param("period", "int", default, minimum=1, maximum=_MAX_PERIOD, doc=doc)


def _source() -> Param:
    return Param("source", "choice", "close", choices=SOURCES, doc="price series")


# ----------------------------------------------------------------------- intermediates
class Intermediates:
    """Memo of shared intermediate arrays for one Bars object (one batch)."""

    def __init__(self, bars: Bars):
        self.bars = bars
        self._memo: dict[tuple, Any] = {}

    def _get(self, key: tuple, make: Callable[[], Any]) -> Any:
        try:
            return self._memo[key]
        except KeyError:
            value = self._memo[key] = make()
            return value

    def source(self, name: str) -> np.ndarray:
        b = self.bars
        if name in ("open", "high", "low", "close", "volume"):
            return np.ascontiguousarray(getattr(b, name), dtype=np.float64)

        def make() -> np.ndarray:
            if name == "hl2":
                return (b.high + b.low) / 2.0
            if name == "hlc3":
                return (b.high + b.low + b.close) / 3.0
            if name == "ohlc4":
                return (b.open + b.high + b.low + b.close) / 4.0
            raise ParamError(f"unknown source {name!r}; use one of {list(SOURCES)}")

        return self._get(("source", name), make)

    @property
    def h(self) -> np.ndarray:
        return self.source("high")

    @property
    def l(self) -> np.ndarray:  # noqa: E743
        return self.source("low")

    @property
    def c(self) -> np.ndarray:
        return self.source("close")

    def sma(self, src: str, n: int) -> np.ndarray:
        # never mean_std's mean: after a rebuild only the variance asks for, their last bits
        # differ, and an sma must not depend on which indicator was requested first
        return self._get(("sma", src, n), lambda: call(K.sma, self.source(src), n))

    def mean_std(self, src: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        return self._get(("mean_std", src, n), lambda: call(K.rolling_mean_std, self.source(src), n))

    def ema(self, src: str, n: int) -> np.ndarray:
        return self._get(("ema", src, n), lambda: call(K.ema, self.source(src), n))

    def rma(self, src: str, n: int) -> np.ndarray:
        return self._get(("rma", src, n), lambda: call(K.rma, self.source(src), n))

    def tr(self) -> np.ndarray:
        return self._get(("tr",), lambda: call(K.true_range, self.h, self.l, self.c))

    def atr(self, n: int, method: str) -> np.ndarray:
        code = K.ATR_METHODS[method]
        return self._get(("atr", n, method), lambda: call(K.smooth, self.tr(), n, code))

    def gains_losses(self) -> tuple[np.ndarray, np.ndarray]:
        return self._get(("gains_losses",), lambda: call(K.gains_losses, self.c))

    def dm(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._get(("dm",), lambda: call(K.directional_movement, self.h, self.l, self.c))

    def rolling_max(self, src: str, n: int) -> np.ndarray:
        return self._get(("rmax", src, n), lambda: call(K.rolling_max, self.source(src), n))

    def rolling_min(self, src: str, n: int) -> np.ndarray:
        return self._get(("rmin", src, n), lambda: call(K.rolling_min, self.source(src), n))


# ------------------------------------------------------------------------ definitions
@dataclass(frozen=True)
class IndicatorDef:
    """A registered indicator: parameter declarations, output line names and its compute."""

    name: str
    params: tuple[Param, ...]
    outputs: tuple[str, ...]
    fn: Callable[[Intermediates, dict], tuple] = field(repr=False)
    description: str = ""
    check: Callable[[dict], None] | None = field(default=None, repr=False)

    @property
    def defaults(self) -> dict:
        return {p.name: p.default for p in self.params}

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def normalize(self, params: Mapping[str, Any] | None = None) -> dict:
        """Canonical parameter dict: defaults filled, values cast, choices lowercased.

        Raises ParamError for an unknown name or an out-of-range/inconsistent value.
        """
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise ParamError(f"parameters of {self.name!r} must be a mapping, got {type(params).__name__}")
        params = dict(params)
        known = {p.name: p for p in self.params}
        unknown = sorted(str(k) for k in params if k not in known)
        if unknown:
            raise ParamError(
                f"unknown parameter(s) {unknown} for indicator {self.name!r}; "
                f"it takes {list(known)}"
            )
        out = {}
        for p in self.params:
            out[p.name] = p.cast(self.name, params[p.name]) if p.name in params else p.default
        if self.check is not None:
            self.check(out)
        return out

    def canonical(self, params: Mapping[str, Any] | None = None) -> str:
        """Canonical JSON of the normalised params (sorted keys, no spaces)."""
        return canonical_json(self.normalize(params))

    def _run(self, ctx: Intermediates, norm: dict) -> dict[str, np.ndarray]:
        lines = self.fn(ctx, norm)
        return {name: arr for name, arr in zip(self.outputs, lines)}

    def compute(self, bars: Any, params: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
        """Compute one parameter set -> {output name: float64 array}."""
        b = as_bars(bars)
        return self._run(Intermediates(b), self.normalize(params))

    def compute_many(
        self,
        bars: Any,
        list_of_params: Iterable[Mapping[str, Any] | None],
        ctx: Intermediates | None = None,
    ) -> list[dict[str, np.ndarray]]:
        """Compute many parameter sets sharing intermediates; one result dict per entry,
        in order (duplicates return the same arrays)."""
        b = as_bars(bars)
        if ctx is None or ctx.bars is not b:
            ctx = Intermediates(b)
        norms = [self.normalize(p) for p in list_of_params]
        done: dict[str, dict[str, np.ndarray]] = {}
        results = []
        for norm in norms:
            key = canonical_json(norm)
            if key not in done:
                done[key] = self._run(ctx, norm)
            results.append(dict(done[key]))
        return results


def canonical_json(norm: Mapping[str, Any]) -> str:
    return json.dumps(dict(norm), sort_keys=True, separators=(",", ":"))


# -- compute functions: (ctx, normalised params) -> tuple of arrays in output order ----
def _f_sma(ctx: Intermediates, p: dict) -> tuple:
    return (ctx.sma(p["source"], p["period"]),)


def _f_ema(ctx: Intermediates, p: dict) -> tuple:
    return (ctx.ema(p["source"], p["period"]),)


def _f_rma(ctx: Intermediates, p: dict) -> tuple:
    return (ctx.rma(p["source"], p["period"]),)


def _f_tr(ctx: Intermediates, p: dict) -> tuple:
    return (ctx.tr(),)


def _f_atr(ctx: Intermediates, p: dict) -> tuple:
    return (ctx.atr(p["period"], p["method"]),)


def _f_bollinger(ctx: Intermediates, p: dict) -> tuple:
    mid, sigma = ctx.mean_std("close", p["period"])
    return call(K.bollinger_from_stats, ctx.c, mid, sigma, p["std"])


def _f_rsi(ctx: Intermediates, p: dict) -> tuple:
    gain, loss = ctx.gains_losses()
    return (call(K.rsi_from_gains_losses, gain, loss, p["period"]),)


def _f_macd(ctx: Intermediates, p: dict) -> tuple:
    return call(K.macd_from_emas, ctx.ema("close", p["fast"]), ctx.ema("close", p["slow"]), p["signal"])


def _f_adx(ctx: Intermediates, p: dict) -> tuple:
    pdm, mdm, tr = ctx.dm()
    return call(K.adx_from_dm, pdm, mdm, tr, p["period"])


def _f_supertrend(ctx: Intermediates, p: dict) -> tuple:
    return call(K.supertrend_from_atr, ctx.h, ctx.l, ctx.c, ctx.atr(p["period"], "wilder"), p["multiplier"])


def _f_donchian(ctx: Intermediates, p: dict) -> tuple:
    n = p["period"]
    hi = ctx.rolling_max("high", n)
    lo = ctx.rolling_min("low", n)
    size = len(hi)
    upper = np.full(size, np.nan)
    lower = np.full(size, np.nan)
    upper[1:] = hi[:-1]
    lower[1:] = lo[:-1]
    mid = 0.5 * (upper + lower)
    return upper, lower, mid


def _check_macd(p: dict) -> None:
    if p["fast"] >= p["slow"]:
        raise ParamError(f"macd.fast must be < macd.slow, got fast={p['fast']} slow={p['slow']}")


_VALUE = ("value",)

INDICATORS: dict[str, IndicatorDef] = {
    d.name: d
    for d in (
        IndicatorDef("sma", (_period(20), _source()), _VALUE, _f_sma, "simple moving average"),
        IndicatorDef("ema", (_period(20), _source()), _VALUE, _f_ema,
                     "exponential moving average, alpha 2/(n+1), SMA seed"),
        IndicatorDef("rma", (_period(14), _source()), _VALUE, _f_rma,
                     "Wilder moving average, alpha 1/n, SMA seed"),
        IndicatorDef("tr", (), _VALUE, _f_tr, "true range"),
        IndicatorDef(
            "atr",
            (_period(14), Param("method", "choice", "wilder", choices=ATR_METHODS, doc="smoothing")),
            _VALUE, _f_atr, "average true range",
        ),
        IndicatorDef(
            "bollinger",
            (_period(20), Param("std", "float", 2.0, minimum=0.0, exclusive_min=True, doc="band width k")),
            ("mid", "upper", "lower", "z", "pctb", "width"), _f_bollinger,
            "Bollinger bands, population sigma; z/pctb NaN where sigma == 0",
        ),
        IndicatorDef("rsi", (_period(14),), _VALUE, _f_rsi, "Wilder RSI"),
        IndicatorDef(
            "macd",
            (
                Param("fast", "int", 12, minimum=1, maximum=_MAX_PERIOD),
                Param("slow", "int", 26, minimum=1, maximum=_MAX_PERIOD),
                Param("signal", "int", 9, minimum=1, maximum=_MAX_PERIOD),
            ),
            ("macd", "signal", "hist"), _f_macd, "MACD (fast < slow)", check=_check_macd,
        ),
        IndicatorDef("adx", (_period(14),), ("adx", "plus_di", "minus_di"), _f_adx, "Wilder ADX"),
        IndicatorDef(
            "supertrend",
            (_period(10), Param("multiplier", "float", 3.0, minimum=0.0, exclusive_min=True)),
            ("line", "direction"), _f_supertrend, "SuperTrend over Wilder ATR; direction +1/-1",
        ),
        IndicatorDef("donchian", (_period(20),), ("upper", "lower", "mid"), _f_donchian,
                     "Donchian channel of the previous n bars"),
    )
}


# ------------------------------------------------------------------ module functions
def get_indicator(name: str) -> IndicatorDef:
    """The IndicatorDef for ``name`` (case-insensitive); ParamError if unknown."""
    key = str(name).strip().lower()
    try:
        return INDICATORS[key]
    except KeyError:
        raise ParamError(f"unknown indicator {name!r}; available: {sorted(INDICATORS)}") from None


def list_indicators() -> list[str]:
    return sorted(INDICATORS)


def normalize(name: str, params: Mapping[str, Any] | None = None) -> dict:
    """Normalised parameter dict for indicator ``name``."""
    return get_indicator(name).normalize(params)


def canonical_params(name: str, params: Mapping[str, Any] | None = None) -> str:
    """Canonical JSON of the normalised parameters (the cache-key component)."""
    return get_indicator(name).canonical(params)


def compute(bars: Any, name: str, params: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Compute one indicator -> {output name: array}."""
    return get_indicator(name).compute(bars, params)


def compute_many(
    bars: Any, name: str, list_of_params: Iterable[Mapping[str, Any] | None],
    ctx: Intermediates | None = None,
) -> list[dict[str, np.ndarray]]:
    """Compute many parameter sets of one indicator with shared intermediates."""
    return get_indicator(name).compute_many(bars, list_of_params, ctx=ctx)


def compute_requests(
    bars: Any, requests: Sequence[tuple[str, Mapping[str, Any] | None]]
) -> list[dict[str, np.ndarray]]:
    """Compute ``[(name, params), ...]`` of mixed indicators through one shared store
    (e.g. ATR and SuperTrend of the same period share the ATR)."""
    b = as_bars(bars)
    ctx = Intermediates(b)
    return [get_indicator(name).compute_many(b, [params], ctx=ctx)[0] for name, params in requests]
