"""How every number is shown to a person: the one table of metric units and its formatters.

Each metric or column name has a :class:`Unit`: a *kind* and a number of decimals. The
kinds, checked against the engine (``threadx.engine.kernel`` / ``metrics``):

- ``fraction``: stored as a share (``win_rate`` 0.4299), shown as a percentage, ``42.99 %``;
- ``percent``: stored already in percent (a trade's ``return_pct`` 12.3), shown ``12.30 %``;
- ``decimal``: a plain number with fixed decimals (Sharpe ``1.23``, quantities);
- ``price``: a price, with its decimals, and more below 1 so that four significant digits
  show (a meme coin's ``0.00001234``, which read ``0.0000``);
- ``money``: quote currency, two decimals and thousands separators (``9,550.38``);
- ``count``: a whole number with thousands separators (``n_trades`` 99.0 -> ``99``);
- ``seconds``: a duration in seconds (``12.3 s``);
- ``bytes``: a size in bytes, in binary units (``8.9 GiB``);
- ``bool``: ``yes`` / ``no``.

Missing values (None, NaN, pandas' NA) are shown as :data:`EMPTY`, infinities as ``∞`` /
``-∞`` (``ascii_only=True``, for the command line: ``-``, ``inf``, ``-inf``). A name not in
the table is shown as what it is (an int as is, a float with up to six significant digits).

The same table gives Streamlit's tables (:func:`table_view`, numbers stay numbers and sort
as numbers) and Plotly's d3 formats (:func:`d3_format`). Only what a person reads is
formatted: ``--json``, CSV and Parquet exports keep the raw values (fractions stay fractions).
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

EMPTY = "–"  # a value that is missing or undefined (no trades: no win rate)
KINDS = ("fraction", "percent", "decimal", "price", "money", "count", "seconds", "bytes", "bool")
_BINARY_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


@dataclass(frozen=True)
class Unit:
    """How one metric is stored and shown: ``kind`` (one of :data:`KINDS`) and ``decimals``.

    >>> Unit("fraction", 1).kind
    'fraction'
    """

    kind: str
    decimals: int = 2

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown unit kind {self.kind!r}; one of {', '.join(KINDS)}")


FRACTION = Unit("fraction")
PERCENT = Unit("percent")
WHOLE_PERCENT = Unit("percent", 0)  # CPU / RAM / GPU load readings
RATIO = Unit("decimal")
MONEY = Unit("money")
COUNT = Unit("count", 0)
BYTES = Unit("bytes", 1)

UNITS: dict[str, Unit] = {
    # engine metrics (threadx.engine.layout.METRIC_NAMES, computed in threadx.engine.kernel)
    "total_return": FRACTION,          # final / initial - 1
    "cagr": FRACTION,
    "volatility": FRACTION,            # annualised std of per-bar returns
    "sharpe": RATIO,
    "sortino": RATIO,
    "max_drawdown": FRACTION,          # negative: equity / running peak - 1
    "max_drawdown_bars": COUNT,
    "calmar": RATIO,
    "n_trades": COUNT,
    "win_rate": FRACTION,              # wins / trades
    "profit_factor": RATIO,
    "expectancy": MONEY,               # mean PnL per trade, quote currency
    "avg_win": MONEY,
    "avg_loss": MONEY,
    "largest_win": MONEY,
    "largest_loss": MONEY,
    "avg_bars_held": Unit("decimal", 1),
    "exposure": FRACTION,              # bars in a position / bars
    "total_fees": MONEY,
    "total_funding": MONEY,
    "sqn": RATIO,
    "final_equity": MONEY,
    "n_long": COUNT,
    "n_short": COUNT,
    "n_skipped": COUNT,
    "n_ambiguous": COUNT,
    "liquidated": Unit("bool", 0),
    "n_bars": COUNT,
    "n_cycles": COUNT,                 # positions opened and closed whole (several legs each)
    "cycle_win_rate": FRACTION,        # cycles with a positive PnL / cycles
    "max_drawdown_days": Unit("decimal", 1),  # threadx.engine.metrics.metrics_dict
    # trade records (threadx.engine.layout.TRADE_COLUMNS)
    "entry_price": Unit("price", 4),
    "exit_price": Unit("price", 4),
    "stop_at_entry": Unit("price", 4),
    "stop_at_exit": Unit("price", 4),
    "target": Unit("price", 4),
    "target_at_exit": Unit("price", 4),
    "qty": Unit("decimal", 6),
    "fees": MONEY,
    "funding": MONEY,
    "pnl": MONEY,
    "return_pct": PERCENT,             # 100 * pnl / (qty * entry price)
    "bars_held": COUNT,
    "cycle": COUNT,                    # the position a trade row (leg) belongs to
    # validation (threadx.validation)
    "efficiency": RATIO,
    "oos_is_ratio": RATIO,
    "stability_ratio": RATIO,          # mean objective of the winner's grid neighbours / the winner's
    "consistency": FRACTION,
    "prob_oos_loss": FRACTION,
    "pbo": RATIO,
    "dsr": Unit("decimal", 3),
    "p_value": Unit("decimal", 3),
    "sr": Unit("decimal", 4),          # per-bar Sharpe of the DSR
    "sr0": Unit("decimal", 4),
    "n_trials": COUNT,
    "n_splits": COUNT,
    "n_combos": COUNT,
    "skew": RATIO,
    "kurt": RATIO,
    "degradation_slope": RATIO,
    "mean_oos_sharpe": RATIO,
    "n_windows": COUNT,
    "windows": COUNT,
    "score": Unit("decimal", 1),       # grade points out of 100
    "return": FRACTION,
    "mean_return": FRACTION,
    "market_return": FRACTION,
    "market_max_drawdown": FRACTION,
    "regime_return": FRACTION,
    "regime_max_drawdown": FRACTION,
    # datasets, runs, jobs
    "bars": COUNT,
    "expected_bars": COUNT,
    "new_bars": COUNT,
    "total_bars": COUNT,
    "quality": Unit("decimal", 1),     # 0-100 score
    "done": COUNT,
    "total": COUNT,
    "failed": COUNT,
    "to_retry": COUNT,
    "combos_done": COUNT,
    "combos_planned": COUNT,
    "elapsed_s": Unit("seconds", 1),
    # indicator cache (IndicatorBank.stats) and machine readings (threadx.monitor)
    "memory_hits": COUNT,
    "disk_hits": COUNT,
    "misses": COUNT,
    "entries_in_memory": COUNT,
    "disk_files": COUNT,
    "disk_writes": COUNT,
    "disk_rejected": COUNT,
    "disk_errors": COUNT,
    "disk_evicted": COUNT,
    "compute_seconds": Unit("seconds", 1),
    "hit_rate": Unit("fraction", 1),
    "disk_used_share": Unit("fraction", 1),
    "disk_enabled": Unit("bool", 0),
    "disk_near_limit": Unit("bool", 0),
    "bytes_in_memory": BYTES,
    "max_bytes": BYTES,
    "rss": BYTES,
    "nbytes": BYTES,
    "mem_used": BYTES,
    "mem_total": BYTES,
    "total_memory": BYTES,
    "cpu_percent": WHOLE_PERCENT,
    "cpu_total": WHOLE_PERCENT,
    "util_percent": WHOLE_PERCENT,
    "ram_percent": WHOLE_PERCENT,
    "swap_percent": WHOLE_PERCENT,
    # portfolios (threadx.portfolio)
    "capital": MONEY,
    "weight": Unit("decimal", 2),
    "margin": MONEY,                   # margin in use (quote currency)
    "margin_share": FRACTION,          # margin in use / the portfolio equity
    "peak_margin_share": FRACTION,
    "drawdown": FRACTION,              # equity / running peak - 1
    "correlation": Unit("decimal", 2),
    "positions": COUNT,
    "legs": COUNT,
    "skipped": COUNT,
}

# a walk-forward table has each metric in and out of sample: is_sharpe, oos_total_return, ...
_PREFIXES = ("is_", "oos_")


def unit_of(name: str) -> Unit | None:
    """The :class:`Unit` of a metric or column name, or None when it has none (a param, a label).

    Names are looked up in :data:`UNITS`; ``is_<metric>`` / ``oos_<metric>`` take the unit of
    ``<metric>``; other names ending in ``_bytes`` are bytes.

    >>> unit_of("oos_win_rate")
    Unit(kind='fraction', decimals=2)
    >>> unit_of("fast_period") is None
    True
    """
    name = str(name)
    unit = UNITS.get(name)
    if unit is not None:
        return unit
    for prefix in _PREFIXES:
        if name.startswith(prefix) and name[len(prefix):] in UNITS:
            return UNITS[name[len(prefix):]]
    if name.endswith("_bytes"):
        return BYTES
    return None


def is_fraction(name: str) -> bool:
    """True when ``name`` is stored as a share and shown as a percentage (axes in %).

    >>> is_fraction("max_drawdown"), is_fraction("sharpe")
    (True, False)
    """
    unit = unit_of(name)
    return unit is not None and unit.kind == "fraction"


# --- text ------------------------------------------------------------------------------------

def _missing(value: Any) -> bool:
    if value is None or type(value).__name__ in ("NAType", "NaTType"):
        return True
    return isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral) and math.isnan(value)


def _is_bool(value: Any) -> bool:
    """A Python or numpy bool (numpy is not imported here: the CLI starts without it)."""
    return isinstance(value, bool) or (type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_"))


def _empty(ascii_only: bool) -> str:
    return "-" if ascii_only else EMPTY


def _infinity(value: float, ascii_only: bool) -> str:
    if ascii_only:
        return "inf" if value > 0 else "-inf"
    return "∞" if value > 0 else "-∞"


def format_count(n: Any, *, ascii_only: bool = False) -> str:
    """A whole number with thousands separators (a count stored as a float included).

    >>> format_count(99.0), format_count(1353), format_count(-3), format_count(None)
    ('99', '1,353', '-3', '–')
    """
    if _missing(n):
        return _empty(ascii_only)
    v = float(n)
    if math.isinf(v):
        return _infinity(v, ascii_only)
    return f"{round(v):,}"


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` things, the noun agreeing with the count (``plural``: when not noun + "s").

    >>> counted(1, "runner"), counted(1200, "runner"), counted(2, "strategy", "strategies")
    ('1 runner', '1,200 runners', '2 strategies')
    """
    return f"{format_count(n)} {noun if n == 1 else plural or noun + 's'}"


def beside(value: float, thresholds: tuple[float, ...], decimals: int) -> str:
    """``value`` with ``decimals`` decimals, or more where fewer would put it on the other
    side of (or on) one of ``thresholds``: 0.496 graded as below 0.5 reads 0.496, not 0.50
    (a grade card's values, a share checked against a rule).

    >>> beside(0.496, (0.5, 1.0), 2), beside(0.73, (0.5, 1.0), 2), beside(49.6, (50,), 0)
    ('0.496', '0.73', '49.6')
    """
    for places in range(decimals, decimals + 8):
        text = f"{value:.{places}f}"
        if all((float(text) > t) - (float(text) < t) == (value > t) - (value < t) for t in thresholds):
            return text
    return repr(value)


def format_bytes(n: Any, *, ascii_only: bool = False) -> str:
    """A size in bytes in binary units, one decimal from KiB on.

    >>> format_bytes(9_530_000_000), format_bytes(512), format_bytes(1536), format_bytes(-2**20)
    ('8.9 GiB', '512 B', '1.5 KiB', '-1.0 MiB')
    """
    if _missing(n):
        return _empty(ascii_only)
    v = float(n)
    if math.isinf(v):
        return _infinity(v, ascii_only)
    if abs(v) < 1024:
        return f"{round(v):,} B"
    for unit in _BINARY_UNITS:
        v /= 1024.0
        if abs(round(v, 1)) < 1024 or unit == _BINARY_UNITS[-1]:
            return f"{v:,.1f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns at its last unit


def format_eta(seconds: float) -> str:
    """The time left of a piece of work, as progress lines write it ("ETA -" when unknown).

    >>> format_eta(6.8), format_eta(1234.2), format_eta(float("inf"))
    ('ETA 7 s', 'ETA 1,234 s', 'ETA -')
    """
    return f"ETA {seconds:,.0f} s" if seconds is not None and math.isfinite(seconds) else "ETA -"


def format_duration(seconds: float) -> str:
    """A span of time in its two largest units ("1 d 8 h"), as a gap between bars reads.

    >>> format_duration(115_200), format_duration(3_600), format_duration(5_400), format_duration(0)
    ('1 d 8 h', '1 h', '1 h 30 min', '0 s')
    """
    left = int(round(seconds))
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60), ("s", 1)):
        if left >= size:
            parts.append(f"{left // size:,} {unit}")
            left %= size
        elif parts:
            break  # (the next unit down is zero: "1 d", not "1 d 0 h 5 s")
    return " ".join(parts[:2]) or "0 s"


HUGE = 1e15  # from here on a number is shown in scientific notation (1.0000e+300, not 301 digits)


def format_plain(value: Any, *, ascii_only: bool = False) -> str:
    """A value without a unit (a param, a label): ints as they are, floats with up to six
    significant digits, bools as yes / no, text unchanged.

    >>> format_plain(1.5), format_plain(20), format_plain(0.123456789), format_plain(True), format_plain(1e300)
    ('1.5', '20', '0.123457', 'yes', '1.0000e+300')
    """
    if _missing(value):
        return _empty(ascii_only)
    if _is_bool(value):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        v = float(value)
        if math.isinf(v):
            return _infinity(v, ascii_only)
        if abs(v) >= HUGE:
            return f"{v:.4e}"
        return f"{v:,.0f}" if abs(v) >= 1e6 else f"{v:,.6g}"
    return str(value)


MAX_PRICE_DECIMALS = 14


def price_decimals(value: float, decimals: int = 4) -> int:
    """The decimals a price is shown with: ``decimals``, more below 1 so that six significant
    digits show (at most :data:`MAX_PRICE_DECIMALS`): with four, a coin at 1e-7 showed the
    entry and the exit of a losing trade alike (0.0000001081 both: 1.08050e-7 and 1.08108e-7).

    >>> price_decimals(65432.1), price_decimals(0.5), price_decimals(1.2345e-05)
    (4, 6, 10)
    """
    v = abs(float(value))
    if not math.isfinite(v) or v == 0.0 or v >= 1.0:
        return decimals
    return min(MAX_PRICE_DECIMALS, max(decimals, 5 - math.floor(math.log10(v))))


def format_as(value: Any, unit: Unit, *, ascii_only: bool = False) -> str:
    """``value`` shown in ``unit`` (see the kinds in the module docstring).

    >>> format_as(0.4299, FRACTION), format_as(12.3, PERCENT), format_as(1.2345, RATIO), format_as(-1e-6, FRACTION)
    ('42.99 %', '12.30 %', '1.23', '0.00 %')
    >>> format_as(9.98e299, PERCENT)
    '9.9800e+299 %'
    """
    if _missing(value):
        return _empty(ascii_only)
    if unit.kind == "bool":
        return "yes" if bool(value) else "no"
    if unit.kind == "bytes":
        return format_bytes(value, ascii_only=ascii_only)
    if unit.kind == "count":
        return format_count(value, ascii_only=ascii_only)
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)  # a text where a number was expected ("damaged") is shown as is
    if math.isinf(v):
        return _infinity(v, ascii_only)
    d = price_decimals(v, unit.decimals) if unit.kind == "price" else unit.decimals
    shown = v * 100 if unit.kind == "fraction" else v
    if abs(shown) < 0.5 * 10.0 ** -d and unit.kind != "price":
        shown = 0.0  # (a drawdown of -1e-6 read "-0.00 %" beside another run's "0.00 %")
    if abs(shown) >= HUGE or (unit.kind == "price" and 0.0 < abs(shown) < 10.0 ** (3 - MAX_PRICE_DECIMALS)):
        # (a price spike of 1e300 % was printed with its 300 digits; a price of 1e-20 as 0.000000000000)
        text = f"{shown:.4e}"
    else:
        text = f"{shown:,.{d}f}"
    if unit.kind in ("fraction", "percent"):
        return f"{text} %"
    if unit.kind == "seconds":
        return f"{text} s"
    return text  # decimal, money


def format_metric(name: str, value: Any, *, ascii_only: bool = False) -> str:
    """``value`` of the metric or column ``name`` as a person reads it.

    >>> format_metric("win_rate", 0.4299), format_metric("n_trades", 99.0), format_metric("return_pct", 12.3)
    ('42.99 %', '99', '12.30 %')
    >>> format_metric("sharpe", float("nan")), format_metric("profit_factor", float("inf"), ascii_only=True)
    ('–', 'inf')
    """
    unit = unit_of(name)
    if unit is None:
        return format_plain(value, ascii_only=ascii_only)
    return format_as(value, unit, ascii_only=ascii_only)


# --- Streamlit tables and Plotly charts ------------------------------------------------------

def number_format(name: str) -> str | None:
    """Streamlit ``NumberColumn`` format of a column as :func:`table_view` shows it (None: no
    unit, Streamlit's default). A fraction's values are shown in percent points there (x 100),
    so its format is a percent's; bytes in MiB (Streamlit's ``"bytes"`` preset is decimal: MB
    beside the cards' MiB); the others are printf.

    >>> number_format("n_trades"), number_format("return_pct"), number_format("win_rate")
    ('%,d', '%.2f %%', '%.2f %%')
    """
    unit = unit_of(name)
    if unit is None or unit.kind == "bool":
        return None
    if unit.kind == "bytes":
        return "%,.1f MiB"
    if unit.kind == "count":
        return "%,d"
    if unit.kind in ("fraction", "percent"):
        return f"%.{unit.decimals}f %%"
    if unit.kind == "seconds":
        return f"%,.{unit.decimals}f s"
    return f"%,.{unit.decimals}f"


def table_view(frame: Any, *, aliases: Mapping[str, str] | None = None,
               labels: Mapping[str, str] | None = None) -> tuple[Any, dict[str, Any]]:
    """``frame`` as ``st.dataframe`` shows it: (the frame to show, its ``column_config``).

    Numbers stay numbers (the columns sort by value) written in their unit with the cards'
    decimals: a fraction column is shown in percent points (x 100 in the frame returned, a
    new frame: ``frame`` is untouched), as Streamlit's ``"percent"`` preset dropped trailing
    zeros (40% and 43.1% in a column, beside the cards' 40.00 %); a size in bytes in MiB.
    ``aliases``: column -> the metric it shows (``{"Return %": "return_pct"}``); ``labels``: column -> its header.
    Show the returned frame, never ``frame`` with this config (its fractions would read x 100
    too small); exports keep ``frame``.

    >>> import pandas as pd
    >>> shown, config = table_view(pd.DataFrame({"win_rate": [0.4], "n_trades": [3.0], "fast": [5]}))
    >>> shown["win_rate"].tolist(), sorted(config), config["win_rate"]["type_config"]["format"]
    ([40.0], ['n_trades', 'win_rate'], '%.2f %%')
    """
    import pandas as pd
    import streamlit as st

    aliases, labels = aliases or {}, labels or {}
    scaled: dict[str, Any] = {}
    config: dict[str, Any] = {}
    for column in frame.columns:
        name = aliases.get(column, column)
        values = frame[column]
        fmt = number_format(name)
        unit = unit_of(name) if fmt is not None else None
        if unit is not None and unit.kind == "price":  # the decimals its smallest price needs
            numbers = pd.to_numeric(values, errors="coerce").abs()
            numbers = numbers[(numbers > 0) & (numbers < 1)]
            if len(numbers):
                fmt = f"%,.{price_decimals(float(numbers.min()), unit.decimals)}f"
        if is_fraction(name):
            if pd.api.types.is_bool_dtype(values):
                continue
            numbers = pd.to_numeric(values, errors="coerce")  # (numbers and None in an object column too)
            if numbers.notna().sum() < values.notna().sum():
                continue  # text among them: shown as it is
            scaled[column] = numbers.astype("float64") * 100.0
        elif unit is not None and unit.kind == "bytes":
            numbers = pd.to_numeric(values, errors="coerce")
            if numbers.notna().sum() < values.notna().sum():
                continue  # text among them: shown as it is
            scaled[column] = numbers.astype("float64") / 2**20  # MiB
        if fmt is not None or column in labels:
            # (no step: Streamlit cuts the digits past a step off, 1.029885 read 102.98%)
            config[column] = st.column_config.NumberColumn(labels.get(column), format=fmt)
    if scaled:
        frame = frame.copy()
        for column, values in scaled.items():
            frame[column] = values
    return frame, config


def d3_format(name: str) -> str:
    """Plotly (d3) number format of a metric for hovers and labels.

    >>> d3_format("win_rate"), d3_format("n_trades"), d3_format("sharpe"), d3_format("fast_period")
    ('.2%', ',d', ',.2f', ',.4g')
    """
    unit = unit_of(name)
    if unit is None or unit.kind == "bool":
        return ",.4g"
    if unit.kind == "fraction":
        return f".{unit.decimals}%"
    if unit.kind == "count":
        return ",d"
    if unit.kind == "bytes":
        return ".3s"
    if unit.kind == "price":
        return ",.6~g"  # (",.4f" read 0.0000 for a meme coin's price)
    return f",.{unit.decimals}f"
