"""The sweep plan: the kernel inputs of a batch of combos, each distinct one computed once.

Every executor runs a sweep through it: the process pool, threads and Dask through
``Evaluator.evaluate`` (plan a chunk, then :func:`run_plan`, one numba call for the whole
chunk), the GPU through ``threadx.gpu`` (the same plan, on the devices).

A combo's kernel inputs are its parameter row (``layout.P_*``), its signal array and its
four level lines (ATR, band low / mid / high). Each param declares what it can change
(``Param.feeds``, checked by tests/test_param_roles.py), so the :class:`Planner` groups
the combos by their values of the params feeding each input (numpy on the value
positions) and runs the CPU path's own functions once per group: ``prepare_signals`` per
signal group ("signals", and "indicators" not feeding levels), its Levels for the level
group ("levels") and ``level_arrays`` per way the rules read them, ``param_vector(
effective_rules(spec.exits(params)))`` per exit group ("exits"). A strategy with a
``SignalRule`` gets every signal array of the batch from one numba call (no Python per combo:
each line it reads is looked up once per value of the params feeding it, ``indicator_labels``,
and read in place in a sweep's shared block); one with ``batch_signals`` gets one call per group
of signal keys that share their indicators (all the values of its ``batch_params`` at once)
instead of one ``prepare_signals`` per key. A strategy without role declarations gets every
param in every key: exact, slower. Errors are those of ``Evaluator.evaluate``: combos of a
failed signal or level group are redone with the CPU's grouping, later failures are worded by
``kernel_args`` (a failure that needs a signal-only and a level-only param value together is
not seen: the roles declare them independent). Signal arrays and Levels are kept across the
batches of a sweep (up to ``cache_bytes``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import pandas as pd

from threadx import aot, logs
from threadx.contract import (BAR_LABEL, ExitRules, Levels, indicator_needs, prepare_indicators, prepare_signals,
                              signal_flags, strategy_levels)
from threadx.data.bars import Bars
from threadx.data.grid import span_bars
from threadx.engine import kernel
from threadx.engine import layout as L
from threadx.engine.inputs import (RULE_COLUMNS, UNUSED_LINE, effective_rules, frozen, kernel_args, level_arrays,
                                   line_needs, param_vector, returned_rules, rule_column)
from threadx.errors import ParamError
from threadx.optimize.outcome import STATUS_FAILED, STATUS_OK, failure_text, signal_key_names
from threadx.optimize.shared import request_key_as_given

_PARALLEL_MIN = 64  # distinct signal computations worth a thread pool
_COPIED_MIN = 64  # distinct exit keys worth the vectorised rows (a probe call and checks)
_TILE_BYTES = 2 * 2**20  # indicator lines read together while the signals are computed (a cache's worth)
_RULE_LINES_BYTES = 64 * 2**20  # a SignalRule's copied lines, kept across batches up to this size


@dataclass
class Plan:
    """Kernel inputs of a batch of combos (rows of failed combos are NaN / -1)."""

    ids: np.ndarray  # (n,) combo ids
    rows: np.ndarray  # (n, N_PARAMS) float64 parameter vectors
    sig: np.ndarray  # (n,) int64 row of ``signals``
    lines: np.ndarray  # (n, 4) int64 rows of ``line_values``: atr, band_lo, band_mid, band_hi
    signals: list[np.ndarray] | np.ndarray  # distinct signal arrays (uint8, n_bars each), or their (k, n_bars) matrix
    line_values: list[np.ndarray]  # distinct lines (float64, n_bars each); the first is all NaN
    status: np.ndarray  # (n,) int8 STATUS_OK / STATUS_FAILED
    errors: dict[int, str] = field(default_factory=dict)  # combo id -> error text
    warnings: tuple[str, ...] = ()  # what the run should record (a signal rule that disagreed with signals())

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def ok(self) -> np.ndarray:
        """Positions of the combos that run."""
        return np.flatnonzero(self.status == STATUS_OK)

    def by_signal(self) -> np.ndarray:
        """Positions of the combos that run, ordered by signal row (a GPU's neighbouring threads
        then read the same signals; a sweep's planner numbers them in its order of signal keys)."""
        ok = self.ok
        return ok[np.argsort(self.sig[ok], kind="stable")]

    def subset(self, positions: np.ndarray) -> "Plan":
        """The combos at ``positions`` with only the signal rows and lines they use."""
        positions = np.asarray(positions, dtype=np.int64)
        sig = self.sig[positions]
        lines = self.lines[positions]
        used_sig, sig_rows = _compact(sig)
        used_lines, line_rows = _compact(lines.ravel(), keep_first=True)
        ids = self.ids[positions]
        if not isinstance(self.signals, np.ndarray):
            signals = [self.signals[k] for k in used_sig]
        elif len(used_sig) and used_sig[-1] - used_sig[0] + 1 == len(used_sig):  # a range of rows: a view
            signals = self.signals[used_sig[0]:used_sig[-1] + 1]
        else:
            signals = self.signals[used_sig]
        return Plan(ids, self.rows[positions], sig_rows, line_rows.reshape(lines.shape), signals,
                    [self.line_values[k] for k in used_lines], self.status[positions],
                    {int(i): self.errors[int(i)] for i in ids if int(i) in self.errors} if self.errors else {})


def _compact(index: np.ndarray, keep_first: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(rows used, sorted; ``index`` remapped onto them); -1 stays -1; row 0 kept if asked."""
    valid = index[index >= 0]
    counts = np.bincount(valid, minlength=1 if keep_first else 0)  # the values are small row numbers
    if keep_first:
        counts[0] += 1
    used = np.flatnonzero(counts).astype(np.int64)
    lookup = np.full(int(used.max()) + 1 if len(used) else 1, -1, dtype=np.int64)
    lookup[used] = np.arange(len(used))
    out = np.where(index >= 0, lookup[np.maximum(index, 0)], -1)
    return used, out


def _role_params(spec: Any, *roles: str) -> tuple[str, ...]:
    """Params that can change ``roles`` (every param when the strategy declares no roles)."""
    if callable(getattr(spec, "signal_key_params", None)):
        return tuple(spec.params_feeding(*roles))
    return tuple(p.name for p in spec.params)


def _groups(idx: np.ndarray, strides: np.ndarray, axes: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(group of each combo, key of each group, first combo of each group), groups in order of
    first appearance, for the combos' values on ``axes``. A key is the combo id with the other
    params at their first value: the same in every batch of a sweep."""
    key = idx[:, axes] @ strides[axes] if axes else np.zeros(len(idx), dtype=np.int64)
    of, keys = pd.factorize(key)  # numbered in order of first appearance
    first = np.flatnonzero(np.diff(np.maximum.accumulate(of), prepend=-1) > 0)
    return of.astype(np.int64), np.asarray(keys, dtype=np.int64), first


class _Touched(Exception):
    """A probe or read log was used in a way the planner cannot follow."""


def _touched(self: Any, *args: Any, **kwargs: Any) -> Any:
    raise _Touched


class _Probe:
    """Stands for a numeric exit param's value in one ``spec.exits`` call: any use of it but
    passing it on (arithmetic, comparison, truth, conversion, attributes) raises
    :class:`_Touched`, so a rule field holding it is a plain copy of that param's value."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __getattr__(self, attr: str) -> Any:
        raise _Touched


class _ReadLog:
    """Rules seen through attribute reads: ``read`` names the fields a check read."""

    __slots__ = ("_rules", "read")

    def __init__(self, rules: ExitRules):
        self._rules, self.read = rules, set()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise _Touched
        self.read.add(name)
        return getattr(self._rules, name)


_DUNDERS = ("bool", "eq", "ne", "lt", "le", "gt", "ge", "hash", "add", "radd", "sub", "rsub", "mul", "rmul",
            "truediv", "rtruediv", "floordiv", "rfloordiv", "mod", "rmod", "divmod", "rdivmod", "pow", "rpow",
            "neg", "pos", "abs", "invert", "float", "int", "index", "complex", "round", "trunc", "floor", "ceil",
            "str", "repr", "format", "len", "iter", "getitem", "contains", "call", "and", "rand", "or", "ror",
            "xor", "rxor", "lshift", "rlshift", "rshift", "rrshift", "reduce", "reduce_ex", "copy", "deepcopy",
            "array", "array_ufunc", "array_function", "bytes", "fspath")
for _name in _DUNDERS:
    setattr(_Probe, f"__{_name}__", _touched)
    setattr(_ReadLog, f"__{_name}__", _touched)
_PLAIN = (type(None), bool, int, float, str, np.generic)


def _plain(value: Any) -> bool:
    """A value that holds no probe: a scalar, or a tuple of them."""
    if isinstance(value, tuple):
        return all(_plain(v) for v in value)
    return isinstance(value, _PLAIN)


def _copied_fields(exits: Any, params: dict[str, Any], numeric: dict[str, int]) -> dict[str, str] | None:
    """{rule field: the numeric param it copies} of ``exits`` called once with a :class:`_Probe`
    for each ``numeric`` param and ``params``' values for the others; None when ``exits``
    uses one of them otherwise, or copies one elsewhere than a :data:`RULE_COLUMNS` field."""
    try:
        rules = exits({**params, **{name: _Probe(name) for name in numeric}})
    except Exception:  # noqa: BLE001 - a probe was used: exits must be called per exit group
        return None
    if type(rules) is not ExitRules:
        return None
    copied = {}
    for f in dataclasses.fields(rules):
        value = getattr(rules, f.name)
        if isinstance(value, _Probe) and f.name in RULE_COLUMNS:
            copied[f.name] = value.name
        elif not _plain(value):
            return None
    return copied


def _by_reads(idx: np.ndarray, strides: np.ndarray, positions: np.ndarray, field_axis: dict[str, int],
              rules_of: Any, check: Any) -> tuple[np.ndarray, list] | None:
    """(result number per combo at ``positions``, results) of ``check`` of their rules, one call
    per set of values it reads: a check that reads the copied fields F gives the same for every
    combo equal on the params they copy (``field_axis``: field -> axis). None when a check fails
    otherwise than with a ParamError."""
    of = np.full(len(positions), -1, dtype=np.int64)
    results: list = []
    todo = np.arange(len(positions))
    while len(todo):
        try:
            axes = _read_axes(rules_of(int(positions[todo[0]])), check, field_axis)[1]
            g_of, _, g_first = _groups(idx[positions[todo]], strides, axes)
            number = np.full(len(g_first), -1, dtype=np.int64)
            for g, k in enumerate(g_first.tolist()):
                result, read = _read_axes(rules_of(int(positions[todo[k]])), check, field_axis)
                if set(read) <= set(axes):
                    number[g] = len(results)
                    results.append(result)
        except Exception:  # noqa: BLE001 - not a rule error: the per-exit-group path decides
            return None
        of[todo] = number[g_of]
        todo = todo[of[todo] < 0]
    return of, results


def _read_axes(rules: ExitRules, check: Any, field_axis: dict[str, int]) -> tuple[Any, list[int]]:
    """(``check`` of ``rules``, sorted axes of the copied fields it read)."""
    log = _ReadLog(rules)
    result = check(log)
    return result, sorted({field_axis[f] for f in log.read if f in field_axis})


@dataclass
class _Rows:
    """What :meth:`Planner._rows` fills in, combo by combo (see there)."""

    rows: np.ndarray
    bad: np.ndarray
    reads: np.ndarray
    samples: list
    error: np.ndarray
    ways: dict

    def way(self, needs: tuple, rules: ExitRules) -> int:
        """Number of the way ``needs`` of reading the lines (``rules`` kept as its sample)."""
        k = self.ways.setdefault(needs, len(self.ways))
        if k == len(self.samples):
            self.samples.append(rules)
        return k


class Planner:
    """Kernel inputs of combo ids for one sweep (``Evaluator`` gives strategy, space, data).

    ``threads``: workers for the distinct signal computations (the strategies' numba
    kernels release the GIL). ``stats``: of the last plan, the seconds of its steps (rows_s,
    signals_s, lines_s, total_s), its exit groups, its calls into the strategy for signals and
    levels (``signal_calls``: ``prepare_signals`` per combo, a batch, or a level group's
    indicators), the signal arrays made (``signal_arrays``) and those from batches."""

    def __init__(self, evaluator: Any, threads: int | None = None, cache_bytes: int = 512 * 2**20):
        self.ev = evaluator
        self.spec, self.space, self.bars = evaluator.spec, evaluator.space, evaluator.bars
        self.n_bars = len(self.bars)
        self.threads = threads or min(8, os.cpu_count() or 1)
        self.cache_bytes = cache_bytes
        self.options = evaluator.task.options
        self._row_args = (self.options, self.bars.timeframe, evaluator.funding is not None,
                          span_bars(self.bars.time_ns, self.bars.timeframe))
        axis = {name: k for k, name in enumerate(self.space.names)}
        levels = set(_role_params(self.spec, "levels"))
        signals = set(_role_params(self.spec, "signals")) | set(_role_params(self.spec, "indicators")) - levels
        self._axes = {what: sorted(axis[name] for name in names) for what, names in (
            ("signals", signals), ("levels", levels), ("exits", _role_params(self.spec, "exits")),
            ("cpu", signal_key_names(self.spec)))}
        numeric = {p.name for p in self.spec.params if getattr(p, "kind", None) in ("int", "float")}
        self._copied = {name: axis[name] for name in _role_params(self.spec, "exits") if name in numeric}
        self._axes["branch"] = sorted(set(self._axes["exits"]) - set(self._copied.values()))
        batched = set(getattr(self.spec, "batch_params", lambda: ())())
        self._batch_axes = [k for k in self._axes["signals"] if self.space.names[k] in batched]
        self._axes["batch"] = [k for k in self._axes["signals"] if k not in self._batch_axes]
        self._values = [np.asarray(a.values, dtype=object) for a in self.space.axes]
        self._rule = getattr(self.spec, "signal_rule", None)  # (a spec refuses a rule it cannot use: rule_problem)
        if self._rule is not None:
            self._rule_labels: dict[str, tuple[list[int], list[int]]] = {}  # label -> (its axes, its lines)
            for j, (label, _) in enumerate(self._rule.lines):
                self._rule_labels.setdefault(label, (sorted(axis[name] for name in self.spec.label_params(label)),
                                                     []))[1].append(j)
            self._rule_params = [axis[name] for name in self._rule.params]
            self._rule_numbers = [np.array([self.spec.param(self.space.names[k]).rule_value(v)  # per axis value
                                            for v in self.space.axes[k].values], dtype=np.float64)
                                  for k in self._rule_params]
            self._rule_lines = _LineMatrix(self.n_bars)
            self._matrices = _Matrices()
        self._checked = {"rule": 0, "batch": 0}  # rows of each shortcut compared with signals() (_agrees)
        self._warnings: list[str] = []  # for the next Plan
        self._signals: dict[int, np.ndarray] = {}  # signal key -> array (kept across batches)
        self._levels: dict[int, Levels] = {}  # level key -> Levels
        self._cached_bytes = 0
        self._line_ids: dict[bytes, int] = {}  # content digest -> row of line_list
        self._line_of_array: dict[int, tuple[np.ndarray, int]] = {}  # id of a read-only array -> row
        self._line_list: list[np.ndarray] = [np.full(self.n_bars, np.nan)]
        self.stats: dict[str, float] = {}

    def plan(self, ids: np.ndarray) -> Plan:
        """Kernel inputs of ``ids`` (failed combos carry their error, as on CPU)."""
        started = time.perf_counter()
        self.stats = {"signal_calls": 0}
        ids = np.asarray(ids, dtype=np.int64)
        idx = self.space.value_indices(ids)
        if self.threads > 1:  # the signal kernels release the GIL: they run while the rows are built
            with ThreadPoolExecutor(1, thread_name_prefix="threadx-plan") as pool:
                signals_done = pool.submit(self._signals_and_levels, idx)
                rows, row_bad, reads, samples, rule_error = self._rows(idx)
                signals, sig_of, levels, lev_of, prepare_error = signals_done.result()
        else:
            rows, row_bad, reads, samples, rule_error = self._rows(idx)
            signals, sig_of, levels, lev_of, prepare_error = self._signals_and_levels(idx)
        error = np.where(pd.notna(prepare_error), prepare_error, rule_error)  # the CPU path's first two steps
        ok = pd.isna(error)
        lines_started = time.perf_counter()
        lines, lines_bad = self._lines(reads, samples, levels, lev_of, ok)
        shape_bad = (np.zeros(len(signals), dtype=bool) if isinstance(signals, np.ndarray) else
                     np.array([s is not None and s.shape != (self.n_bars,) for s in signals], dtype=bool))
        for p in np.flatnonzero(ok & (lines_bad | shape_bad[sig_of] | row_bad | (self.n_bars < 2))).tolist():
            error[p] = self._late_error(idx[p], signals[sig_of[p]], levels[lev_of[p]])
        failed = pd.notna(error)
        if failed.any():
            rows[failed], lines[failed] = np.nan, -1
        if isinstance(signals, np.ndarray):  # a rule's matrix stays one, rows no combo uses too (no copy)
            sig = np.where(failed, -1, sig_of)
        else:
            used_sig, sig = _compact(np.where(failed, -1, sig_of))
            signals = [signals[k] for k in used_sig]
        used_lines, line_rows = _compact(lines.ravel(), keep_first=True)  # the NaN line stays first
        self.stats.update(lines_s=time.perf_counter() - lines_started, total_s=time.perf_counter() - started)
        status = np.where(failed, STATUS_FAILED, STATUS_OK).astype(np.int8)
        warnings, self._warnings = tuple(self._warnings), []
        return Plan(ids, rows, sig, line_rows.reshape(lines.shape), signals,
                    [self._line_list[k] for k in used_lines], status,
                    {int(ids[p]): error[p] for p in np.flatnonzero(failed).tolist()}, warnings)

    def _rows(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, list, np.ndarray]:
        """(row per combo, whether its ``param_vector`` failed, how its rules read the lines per
        combo (-1: unknown), rules of each such way, error of its rules per combo or None).

        In a batch of ``_COPIED_MIN`` exit keys or more, per group of combos equal on the exit
        params that are not numbers, :meth:`_copied_rows` when ``spec.exits`` only copies the
        numbers into rule fields; else (and for a group it
        cannot plan) one ``param_vector`` call per exit group (:meth:`_exit_group_rows`)."""
        started = time.perf_counter()
        n = len(idx)
        out = _Rows(np.full((n, L.N_PARAMS), np.nan), np.zeros(n, dtype=bool), np.full(n, -1, dtype=np.int64),
                    [], np.full(n, None, dtype=object), {})
        exit_groups = len(_groups(idx, self.space.strides, self._axes["exits"])[2])
        b_of, _, _ = _groups(idx, self.space.strides, self._axes["branch"])
        order = np.argsort(b_of, kind="stable")
        slow = [part for part in np.split(order, np.flatnonzero(np.diff(b_of[order])) + 1)
                if len(part) and not (exit_groups >= _COPIED_MIN and self._copied_rows(idx, part, out))]
        if slow:
            self._exit_group_rows(idx, np.sort(np.concatenate(slow)), out)
        self.stats.update(rows_s=time.perf_counter() - started, exit_groups=exit_groups)
        return out.rows, out.bad, out.reads, out.samples, out.error

    def _exit_group_rows(self, idx: np.ndarray, positions: np.ndarray, out: "_Rows") -> None:
        """Rows of the combos at ``positions``: one ``exits`` / ``param_vector`` call per exit
        group. Only one rules object per way of reading the lines is kept (they are many)."""
        sub = idx[positions]
        e_of, _, first = _groups(sub, self.space.strides, self._axes["exits"])
        nan_row = np.full(L.N_PARAMS, np.nan)
        rows, reads, bad = [], np.full(len(first), -1, dtype=np.int64), np.zeros(len(first), dtype=bool)
        error = np.full(len(first), None, dtype=object)
        exits, options, row_args = self.spec.exits, self.options, self._row_args
        for g, params in enumerate(self._params(sub[first])):
            try:
                rules = effective_rules(returned_rules(exits(params)), options)
            except Exception as exc:  # noqa: BLE001 - recorded per combo, as on CPU
                rows.append(nan_row)
                error[g] = failure_text(exc)
                continue
            try:
                row = param_vector(rules, *row_args)
                # the lines level_arrays reads: combos that agree on them read the same lines
                reads[g] = out.way(line_needs(rules), rules)
            except Exception:  # noqa: BLE001 - a later step on CPU: kernel_args words it
                row, bad[g] = nan_row, True
            rows.append(row)
        out.rows[positions] = np.stack(rows or [nan_row])[e_of]
        out.bad[positions], out.reads[positions], out.error[positions] = bad[e_of], reads[e_of], error[e_of]

    def _copied_rows(self, idx: np.ndarray, positions: np.ndarray, out: "_Rows") -> bool:
        """Rows of the combos at ``positions`` (equal on the exit params that are not numbers)
        without a call per combo, when ``spec.exits`` only copies the numeric exit params into
        rule fields of :data:`RULE_COLUMNS` (False, nothing written, when it does more): the
        rows broadcast one ``param_vector`` and write the copied columns (``rule_column``);
        the rule checks and line needs run once per set of values they read (:func:`_reads`)."""
        first = next(self._params(idx[positions[:1]]))
        try:
            fields = _copied_fields(self.spec.exits, first, self._copied)
            template = self.spec.exits(first)
            if fields is None or template != dataclasses.replace(template, **{f: first[q] for f, q in fields.items()}):
                return False
            row = param_vector(template, *self._row_args)
            columns = [self._column(f, q, idx[positions, self._copied[q]])
                       for f, q in fields.items()]
        except Exception:  # noqa: BLE001 - the per-exit-group path decides (and words any error)
            return False
        field_axis = {f: self._copied[q] for f, q in fields.items()}

        made: dict[int, ExitRules] = {}

        def rules_of(p: int) -> ExitRules:
            rules = made.get(p)
            if rules is None:
                rules = made[p] = dataclasses.replace(
                    template, **{f: self._values[a][idx[p, a]] for f, a in field_axis.items()})
            return rules

        found = _by_reads(idx, self.space.strides, positions, field_axis, rules_of, self._check)
        if found is None:
            return False
        of, results = found
        whole = len(positions) == len(idx) and bool(np.all(np.diff(positions) > 0))  # one group, in order:
        # its rows are written in place, not copied
        rows = out.rows if whole else np.empty((len(positions), L.N_PARAMS))
        rows[:] = row
        for col, entries in columns:
            rows[:, col] = entries
        texts = np.array([r if isinstance(r, str) else None for r in results] + [None], dtype=object)[:-1]
        failed = pd.notna(texts)[of]
        if failed.any():
            rows[failed] = np.nan
        first = np.full(len(results), -1, dtype=np.int64)
        first[of[::-1]] = positions[::-1]  # the first combo of each result
        ways = np.array([-1 if failed_r else out.way(r, rules_of(int(p)))
                         for r, p, failed_r in zip(results, first.tolist(), pd.notna(texts))], dtype=np.int64)
        if not whole:
            out.rows[positions] = rows
        out.error[positions], out.reads[positions] = texts[of], ways[of]
        return True

    def _column(self, field: str, param: str, values_at: np.ndarray) -> tuple[int, np.ndarray]:
        """(column of ``field``, its entry for each combo) where ``field`` copies ``param``, whose
        value positions are ``values_at``: one entry per distinct value."""
        values = self._values[self._copied[param]]
        used = np.flatnonzero(np.bincount(values_at, minlength=len(values)))
        col, used_entries = rule_column(field, values[used].tolist())
        entries = np.full(len(values), np.nan)
        entries[used] = used_entries
        return col, entries[values_at]

    def _check(self, rules: Any) -> Any:
        """What the CPU path's checks make of ``rules`` (read through :class:`_ReadLog`): the
        error text of ``effective_rules``, else the lines the rules read (``line_needs``)."""
        try:
            if effective_rules(rules, self.options) is not rules:
                raise _Touched  # engine overrides: a new rules object, not read field by field
        except ParamError as exc:
            return failure_text(exc)
        return line_needs(rules)

    def _signals_and_levels(self, idx: np.ndarray) -> tuple[list, np.ndarray, list, np.ndarray, np.ndarray]:
        """(signal arrays, signal per combo, Levels, Levels per combo, error per combo or None).

        One ``prepare_signals`` per signal group not seen before; a level group takes the
        Levels of any of those calls made for one of its combos (else one call of its own).
        A combo whose signal or level group failed is redone with the CPU's grouping."""
        started = time.perf_counter()
        strides = self.space.strides
        s_of, s_keys, s_first = _groups(idx, strides, self._axes["signals"])
        v_of, v_keys, _ = _groups(idx, strides, self._axes["levels"])
        found = {k: self._signals[k] for k in s_keys.tolist() if k in self._signals}
        todo = np.array([g for g, k in enumerate(s_keys.tolist()) if k not in found], dtype=np.int64)
        new: dict[int, np.ndarray] = {}
        todo = todo[self._cache_order(idx[s_first[todo]])]
        keys, level_keys = s_keys[todo].tolist(), v_keys[v_of[s_first[todo]]].tolist()
        calls = self.stats["signal_calls"]
        try:
            made, made_levels = self._prepare_signal_groups(idx[s_first[todo]])
        except _Disagrees as exc:  # signals() from here on in this planner: slower, and right
            if exc.shortcut == "rule":
                self._rule = None
            else:
                self._batch_axes, self._axes["batch"] = [], list(self._axes["signals"])
            self._signals.clear()  # (every array kept was the shortcut's)
            self._cached_bytes = 0
            self.stats["signal_calls"] = calls  # (the shortcut's calls are not this plan's)
            self.stats.pop("batched_signals", None)
            return self._signals_and_levels(idx)
        for key, level_key, sig, lev in zip(keys, level_keys, made, made_levels):
            if not isinstance(sig, str):
                found[key] = new[key] = sig
                if lev is not None:
                    self._levels.setdefault(level_key, lev)
        whole = isinstance(made, np.ndarray) and len(new) == len(s_keys)  # a rule made every signal
        if whole:  # its matrix as it is: signal group todo[j] is its row j
            signals, place = made, np.empty(len(todo), dtype=np.int64)
            place[todo] = np.arange(len(todo))
            s_of = place[s_of]
        else:
            signals = [found.get(k) for k in s_keys.tolist()]
        s_ok = np.array([s is not None for s in signals] if not whole else [True] * len(signals), dtype=bool)[s_of]
        missing = np.array([k not in self._levels for k in v_keys.tolist()], dtype=bool)
        reps = np.flatnonzero(s_ok & missing[v_of])  # a level group no call covered: one of its good combos
        reps = reps[np.unique(v_of[reps], return_index=True)[1]]
        for rep, result in zip(reps.tolist(), self._prepare(idx[reps], signals=False)):
            if not isinstance(result, str):
                self._levels[int(v_keys[v_of[rep]])] = result[1]
        levels = [self._levels.get(k) for k in v_keys.tolist()]
        sig_of, lev_of = s_of.copy(), v_of.copy()
        error = np.full(len(idx), None, dtype=object)
        redo = np.flatnonzero(~(s_ok & np.array([lv is not None for lv in levels], dtype=bool)[v_of]))
        if len(redo):  # as Evaluator.evaluate: the first combo of each CPU group decides for it
            signals = list(signals)
            f_of, _, f_first = _groups(idx[redo], strides, self._axes["cpu"])
            results = self._prepare(idx[redo[f_first]])
            texts = np.array([r if isinstance(r, str) else None for r in results], dtype=object)
            sig_of[redo], lev_of[redo], error[redo] = len(signals) + f_of, len(levels) + f_of, texts[f_of]
            signals += [None if isinstance(r, str) else r[0] for r in results]
            levels += [None if isinstance(r, str) else r[1] for r in results]
        self._signals.update(new)  # for later batches, within cache_bytes
        self._cached_bytes += sum(a.nbytes for a in new.values())
        if self._cached_bytes > self.cache_bytes:
            self._signals, self._levels, self._cached_bytes = {}, {}, 0
        self.stats.update(signals_s=time.perf_counter() - started, signal_arrays=len(new))
        return signals, sig_of, levels, lev_of, error

    def _cache_order(self, idx: np.ndarray) -> np.ndarray:
        """An order of the combos ``idx`` (one per signal key) that reads the indicator lines
        from the cache: in lexicographic order each value of the faster axis would stream its
        line from memory once per value of the slower one (100 x 100 SMA pairs: 1.4 GB read
        for 28 MB of lines); here the slower axis goes in tiles of lines that fit the cache
        together, and the faster one runs inside each tile. Any order gives the same arrays."""
        axes = [k for k in self._axes["batch"] if len(np.unique(idx[:, k])) > 1]
        if len(axes) < 2 or len(idx) < _PARALLEL_MIN:
            return np.arange(len(idx))
        slow, fast = sorted(axes, key=lambda k: -int(self.space.strides[k]))[:2]
        tile = max(1, _TILE_BYTES // (8 * self.n_bars))
        return np.lexsort((idx[:, slow], idx[:, fast], idx[:, slow] // tile))

    def _lines(self, reads: np.ndarray, samples: list, levels: list, lev_of: np.ndarray,
               ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(line rows per combo, whether ``level_arrays`` failed) of the ``ok`` combos: one call
        per level group and way of reading the lines."""
        lines = np.full((len(reads), 4), -1, dtype=np.int64)
        failed = np.zeros(len(reads), dtype=bool)
        positions = np.flatnonzero(ok & (reads >= 0))
        g_of, _, first = _groups(np.stack([lev_of[positions], reads[positions]], axis=1),
                                 np.array([len(samples), 1], dtype=np.int64), [0, 1])
        found = np.full((len(first), 4), -1, dtype=np.int64)
        for g, pos in enumerate(positions[first].tolist()):
            try:
                arrays = level_arrays(levels[lev_of[pos]], samples[reads[pos]], self.n_bars)
                found[g] = [self._line_id(a) for a in arrays]
            except Exception:  # noqa: BLE001 - kernel_args words it
                pass
        lines[positions] = found[g_of]
        failed[positions] = found[g_of, 0] < 0
        return lines, failed

    def _params(self, idx: np.ndarray) -> Iterator[dict[str, Any]]:
        """Params dicts of value positions (the values of ``space.params``), one at a time."""
        columns = [values[idx[:, k]].tolist() for k, values in enumerate(self._values)]
        names = self.space.names
        return (dict(zip(names, row)) for row in zip(*columns))

    def _prepare(self, idx: np.ndarray, signals: bool = True) -> list[tuple[np.ndarray | None, Levels] | str]:
        """(uint8 signal, Levels) or error text of ``prepare_signals`` for each combo, in threads
        (``signals`` False: (None, Levels) from the indicators and ``spec.levels`` alone)."""
        bars, bank, spec = self.bars, RequestMemo(self.ev.indicators), self.spec
        resets = any(not p.affects_results for p in spec.params)  # else results_params is the identity

        def one(params: dict[str, Any]) -> tuple[np.ndarray | None, Levels] | str:
            try:
                if resets:
                    params = spec.results_params(params)
                if not signals:
                    return None, strategy_levels(spec, prepare_indicators(spec, bars, params, bank), params,
                                                 self.n_bars)
                _, sig, levels = prepare_signals(spec, bars, params, bank)
                return sig, levels  # (uint8 flags: prepare_signals checked them)
            except Exception as exc:  # noqa: BLE001 - recorded for the combos of this group
                return failure_text(exc)

        params = list(self._params(idx))
        self.stats["signal_calls"] += len(params)
        return self._map(one, params, _PARALLEL_MIN)

    def _prepare_signal_groups(self, idx: np.ndarray) -> tuple[list[np.ndarray | str], list[Levels | None]]:
        """(uint8 signal or error text, Levels or None) of combos with distinct signal keys, as two
        lists (no tuple per array: thousands of them per plan woke the garbage collector's full
        passes). As :meth:`_prepare`, through the strategy's ``batch_signals`` where it has one:
        combos equal but for ``batch_params`` share one ``prepare_signals`` (its Levels go with the
        first of them, None with the others) and one ``batch_signals`` call. A batch that raises
        or returns another shape is redone combo by combo, so errors read as without batching."""
        if self._rule is not None:
            made = self._rule_signals(idx)
            if not self._agrees(idx, made, "rule"):
                raise _Disagrees("rule")
            return made, [None] * len(idx)
        if not self._batch_axes or len(idx) < 2:
            return _split_results(self._prepare(idx))
        bars, bank, spec, n_bars = self.bars, RequestMemo(self.ev.indicators), self.spec, self.n_bars
        b_of, _, b_first = _groups(idx, self.space.strides, self._axes["batch"])
        members = np.split(np.argsort(b_of, kind="stable"), np.cumsum(np.bincount(b_of))[:-1])
        columns = {self.space.names[k]: np.array(self._values[k][idx[:, k]].tolist()) for k in self._batch_axes}

        def batch(item: tuple[dict[str, Any], np.ndarray]) -> tuple[np.ndarray, Levels] | None:
            params, positions = item
            try:
                params = spec.results_params(params)
                values = prepare_indicators(spec, bars, params, bank)
                levels = strategy_levels(spec, values, params, n_bars)
                rows = spec.batch_signals(bars, values, params, {name: col[positions] for name, col in columns.items()})
                rows = signal_flags(rows, f"{spec.name}.batch_signals")
            except Exception:  # noqa: BLE001 - redone one by one, which words the error
                return None
            return (rows, levels) if rows.shape == (len(positions), n_bars) else None

        work = list(zip(self._params(idx[b_first]), members))
        self.stats["signal_calls"] += len(work)
        self.stats["batched_signals"] = self.stats.get("batched_signals", 0) + len(idx)
        signals: list[Any] = [None] * len(idx)
        levels: list[Levels | None] = [None] * len(idx)
        for (_, positions), done in zip(work, self._map(batch, work, _PARALLEL_MIN // 8)):
            if done is not None:
                rows, levels[positions[0]] = done
                for p, row in zip(positions.tolist(), rows):
                    signals[p] = row
        if not self._agrees(idx, signals, "batch"):
            raise _Disagrees("batch")
        redo = [p for p, sig in enumerate(signals) if sig is None]
        for p, result in zip(redo, self._prepare(idx[redo])):
            signals[p], levels[p] = (result, None) if isinstance(result, str) else result
        return signals, levels

    def _agrees(self, idx: np.ndarray, made: np.ndarray | list[np.ndarray | str | None], shortcut: str) -> bool:
        """Whether the rows ``made`` by a shortcut (``shortcut`` "rule": the strategy's signal rule,
        "batch": its ``batch_signals``) for a sample of ``idx`` are what ``signals`` gives for
        them: the check of a strategy (``threadx strategy check``) perturbs each param one at a
        time, a sweep reaches combos it did not try. The first plan samples
        :data:`_FIRST_CHECKS` rows spread over its combos (before any result of this planner is
        stored), each later plan one (another each time). False is logged with the combo."""
        if not len(idx):
            return True
        first = self._checked[shortcut] == 0
        picks = (np.unique(np.linspace(0, len(idx) - 1, min(_FIRST_CHECKS, len(idx))).astype(int)) if first
                 else [self._checked[shortcut] % len(idx)])
        self._checked[shortcut] += len(picks)
        for k in map(int, picks):
            row = made[k]
            if row is None or isinstance(row, str):
                continue  # the shortcut failed for it: redone by signals() anyway
            calls = self.stats["signal_calls"]
            expected = self._prepare(idx[k:k + 1])[0]
            self.stats["signal_calls"] = calls  # (a check, counted apart)
            self.stats["rule_checks"] = self.stats.get("rule_checks", 0) + 1
            if isinstance(expected, str) or np.array_equal(row, expected[0]):
                continue  # (signals or levels raising: that combo fails by the same error either way)
            params = next(self._params(idx[k:k + 1]))
            what, whose, fix = (("its signal rule", "the rule's", "the rule") if shortcut == "rule" else
                                ("its batch_signals", "the batch's", "batch_signals"))
            text = (f"strategy {self.spec.name}: {what} gives other signals than signals() for {params} "
                    f"({int(np.sum(np.asarray(row) != expected[0]))} bars differ): this sweep computes its signals "
                    f"with signals() from here on (slower); results stored before may hold {whose}: fix {fix} "
                    f"(`threadx strategy check {self.spec.name}`) and sweep again")
            logs.logger().warning("%s", text)
            self._warnings.append(text)
            self.stats["rule_disagreed"] = 1
            return False
        return True

    def _rule_signals(self, idx: np.ndarray) -> np.ndarray | list[np.ndarray | str]:
        """Signal arrays of combos with distinct signal keys through the strategy's
        :class:`~threadx.contract.SignalRule`: each line it reads looked up once per value of
        the params feeding it (``StrategySpec.label_params``), then one ``many`` call per
        thread over every combo, reading the lines where a sweep's shared block holds them
        (else from copies kept across batches). A combo whose line lookup fails gets a text
        (redone one by one, which words the error); when ``many`` raises, every combo does."""
        rule, n = self._rule, len(idx)
        pack = getattr(self.ev.indicators, "lines", None)
        found = self._rule_rows(idx, _PackRows(pack)) if pack is not None and pack.nan_row >= 0 else None
        if found is None:
            if self._rule_lines.nbytes > _RULE_LINES_BYTES:
                self._rule_lines = _LineMatrix(self.n_bars)
            found = self._rule_rows(idx, self._rule_lines)
        lines, rows = found
        values = np.empty((n, len(rule.params)), dtype=np.float64)
        for j, k in enumerate(self._rule_params):
            values[:, j] = self._rule_numbers[j][idx[:, k]]
        failed = ~(rows >= 0).all(axis=1)
        if failed.any():
            rows[failed] = 0  # any line: computed, then dropped
        # One matrix, whatever its size: the plan and the GPU's launch hand it on as it is (rows in
        # blocks were stacked again for the device: 226 MB copied for 100,000 bb_atr combos).
        out = self._matrices.zeros(n, self.n_bars)  # (rows come zeroed: see SignalRule)
        bounds = np.linspace(0, n, min(self.threads, n) + 1).astype(int).tolist()
        try:
            self._map(lambda k: aot.call(rule.many, lines, rows[bounds[k]:bounds[k + 1]],
                                         values[bounds[k]:bounds[k + 1]], out[bounds[k]:bounds[k + 1]]),
                      list(range(len(bounds) - 1)), 2)
        except Exception:  # noqa: BLE001 - redone one by one, which words the error
            return ["the signal rule raised"] * n
        self.stats["rule_signals"] = self.stats.get("rule_signals", 0) + n
        if not failed.any():
            return out  # its rows, as one matrix (the plan hands it to the kernel whole)
        return ["a line lookup failed" if bad else row for row, bad in zip(out, failed.tolist())]

    def _rule_rows(self, idx: np.ndarray, store: Any) -> tuple[np.ndarray, np.ndarray] | None:
        """(read-only line matrix, its row of each line for each combo, -1 where the lookup
        failed) from ``store`` (:class:`_LineMatrix` or :class:`_PackRows`), one request per
        label and group of combos equal on the params feeding it; None when a line is not in a
        ``_PackRows`` block."""
        rows = np.empty((len(idx), len(self._rule.lines)), dtype=np.int64)
        calls = 0  # counted once the lookups succeed (a block missing a line: made again as copies)
        try:
            for label, (axes, columns) in self._rule_labels.items():
                g_of, _, g_first = _groups(idx, self.space.strides, axes)
                outputs = [self._rule.lines[j][1] for j in columns]
                found = np.array([self._rule_line(params, label, outputs, store)
                                  for params in self._params(idx[g_first])], dtype=np.int64)
                found = found.reshape(len(g_first), len(columns))
                rows[:, columns] = found[g_of]
                calls += len(g_first) if label != BAR_LABEL else 0
        except _Outside:
            return None
        self.stats["signal_calls"] += calls
        return frozen(store.matrix), rows

    def _rule_line(self, params: dict[str, Any], label: str, outputs: list[str], store: Any) -> list[int]:
        """Rows in ``store`` of ``outputs`` of the indicator request ``label`` of ``params``
        (its NaN line when they request no ``label``; -1 when the lookup fails)."""
        try:
            if label == BAR_LABEL:
                return [store.row((BAR_LABEL, out), lambda: getattr(self.bars, out)) for out in outputs]
            need = indicator_needs(self.spec, self.spec.results_params(params)).get(label)
            if need is None:
                return [store.nan_row] * len(outputs)
            name, ind_params = need
            key = request_key_as_given(name, ind_params)
            return [store.row((key, out), lambda: self.ev.indicators.ensure(self.bars, name, ind_params)[out])
                    for out in outputs]
        except _Outside:
            raise
        except Exception:  # noqa: BLE001 - redone one by one, which words the error
            return [-1] * len(outputs)

    def _map(self, fn: Any, items: list, parallel_min: int) -> list:
        """``[fn(item) for item in items]``, in the planner's threads when there are
        ``parallel_min`` items or more (the strategies' numba kernels release the GIL)."""
        if self.threads < 2 or len(items) < parallel_min:
            return [fn(item) for item in items]
        bounds = np.linspace(0, len(items), 4 * self.threads + 1).astype(int).tolist()
        with ThreadPoolExecutor(self.threads, thread_name_prefix="threadx-plan-signals") as pool:
            parts = pool.map(lambda ab: [fn(item) for item in items[ab[0]:ab[1]]], zip(bounds, bounds[1:]))
            return [result for part in parts for result in part]

    def _late_error(self, idx: np.ndarray, sig: np.ndarray, levels: Levels) -> str:
        """The CPU's error for a combo whose lines, signal shape or row fail (``kernel_args``)."""
        rules = effective_rules(returned_rules(self.spec.exits(next(self._params(idx[None])))), self.options)
        try:
            kernel_args(self.bars, sig, levels, rules, self.options, self.ev.funding)
        except Exception as exc:  # noqa: BLE001 - the text the CPU records
            return failure_text(exc)
        raise AssertionError("GPU planner: kernel_args accepted inputs the planner refused")

    def _line_id(self, arr: np.ndarray) -> int:
        """Row of a line in ``line_list`` (by identity for read-only arrays, else by content)."""
        if arr.shape != (self.n_bars,):  # the CPU's placeholder of a line it never reads: the NaN line
            return 0
        known = self._line_of_array.get(id(arr))
        if known is not None and known[0] is arr:
            return known[1]
        digest = hashlib.blake2b(np.ascontiguousarray(arr).tobytes(), digest_size=16).digest()
        lid = self._line_ids.setdefault(digest, len(self._line_list))
        if lid == len(self._line_list):
            self._line_list.append(arr)
        if not arr.flags.writeable:
            self._line_of_array[id(arr)] = (arr, lid)  # holding arr keeps its id unique
        return lid


class _Outside(Exception):
    """A line is not a row of the shared block (:class:`_PackRows`)."""


_FIRST_CHECKS = 8  # rows of a rule or batch_signals the first plan of a sweep's planner compares with signals()


class _Disagrees(Exception):
    """A row of a signal rule or of ``batch_signals`` (``shortcut``: "rule", "batch") differs
    from ``signals`` (:meth:`Planner._agrees`)."""

    def __init__(self, shortcut: str) -> None:
        super().__init__(shortcut)
        self.shortcut = shortcut


class _PackRows:
    """Rows of lines in a sweep's shared block (``PackLines``), read there with no copy."""

    def __init__(self, pack: Any):
        self.matrix, self.nan_row, self._pack = pack.matrix, pack.nan_row, pack

    def row(self, key: Any, make: Any) -> int:
        row = self._pack.row_of(make())
        if row < 0:
            raise _Outside
        return row


class _LineMatrix:
    """Indicator lines as rows of one float64 matrix (row 0 all NaN) for a SignalRule, each
    copied once per key; rows are kept across the batches of a sweep, the matrix grows by
    doubling."""

    nan_row = 0

    def __init__(self, n_bars: int):
        self._data = np.full((8, n_bars), np.nan)
        self._rows: dict[Any, int] = {}
        self._count = 1

    @property
    def matrix(self) -> np.ndarray:
        """The rows filled so far."""
        return self._data[:self._count]

    @property
    def nbytes(self) -> int:
        return self._data.nbytes

    def row(self, key: Any, make: Any) -> int:
        """Row of ``key``, filled by ``make()`` (an array of n_bars numbers) when new."""
        found = self._rows.get(key)
        if found is not None:
            return found
        line = np.asarray(make(), dtype=np.float64)
        if line.shape != self._data.shape[1:]:
            raise ValueError(f"line of shape {line.shape}")
        if self._count == len(self._data):
            grown = np.empty((2 * len(self._data), self._data.shape[1]))
            grown[:self._count] = self._data
            self._data = grown
        self._data[self._count] = line
        self._rows[key] = self._count
        self._count += 1
        return self._count - 1


class _Matrices:
    """The signal matrices of a planner's plans, each made again for a later plan once nothing
    holds it any more (no plan, view or cached row of it: only this list does). A GPU sweep
    plans batch after batch, each while the previous one runs, and 100,000 bb_atr combos make
    226 MB of signals: fresh memory each time cost 0.05-0.15 s of page faults and zeroing, a
    kept one 0.02 s of zeroing. At most two are kept (the one in use and the one before)."""

    def __init__(self) -> None:
        self._kept: list[np.ndarray] = []

    def _free(self, k: int) -> bool:
        return sys.getrefcount(self._kept[k]) <= 2  # the list's reference and getrefcount's argument

    def zeros(self, n: int, n_bars: int) -> np.ndarray:
        """A zeroed (n, n_bars) uint8 matrix: rows of a free kept one (of up to 2n rows), else new."""
        for k in range(len(self._kept)):
            if self._kept[k].shape[1] == n_bars and n <= len(self._kept[k]) <= 2 * n and self._free(k):
                out = self._kept[k][:n]
                out.fill(0)
                return out
        busy = [self._kept[k] for k in range(len(self._kept)) if not self._free(k)]
        out = np.zeros((n, n_bars), dtype=np.uint8)
        self._kept = busy[-1:] + [out]
        return out


def _split_results(results: list[tuple[np.ndarray | None, Levels] | str]) -> tuple[list, list]:
    """:meth:`Planner._prepare`'s results as (signal or error text, Levels or None) lists."""
    return ([r if isinstance(r, str) else r[0] for r in results],
            [None if isinstance(r, str) else r[1] for r in results])


_NO_BLOCKS = np.empty(0, dtype=np.int64)


KernelCall = tuple[np.ndarray, tuple]  # (positions in the plan, kernel.run_plan arguments)


def kernel_calls(plan: Plan, bars: Bars, funding: np.ndarray | None, block_end: np.ndarray | None,
                 threads: int = 1) -> list[KernelCall]:
    """The ``kernel.run_plan`` calls of a plan's combos that planned: one per thread (none when
    no combo planned), their inputs stacked and read-only (one compiled version, see frozen).

    Made apart from :func:`run_plan` so that the time a sweep's chunk spends on them counts as
    planning (the chunk's "signals" stage), not as the kernel's."""
    ok = plan.ok
    if not len(ok):
        return []
    signals = frozen(plan.signals if isinstance(plan.signals, np.ndarray) else np.stack(plan.signals))
    lines = frozen(np.stack(plan.line_values))
    fund = frozen(UNUSED_LINE if funding is None else funding)
    # block ends stay writable, as the empty ones run_fast makes inside the kernel (one type)
    ends = _NO_BLOCKS if block_end is None else np.ascontiguousarray(block_end, dtype=np.int64)
    prices = tuple(frozen(a) for a in (bars.open, bars.high, bars.low, bars.close))
    parts = np.array_split(ok, threads) if threads > 1 and len(ok) > 1 else [ok]
    return [(positions, (*prices, fund, signals, lines, frozen(plan.sig[positions]), frozen(plan.lines[positions]),
                         frozen(np.ascontiguousarray(plan.rows[positions])), ends)) for positions in parts]


def run_plan(plan: Plan, bars: Bars, funding: np.ndarray | None, block_end: np.ndarray | None,
             threads: int = 1, calls: list[KernelCall] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(metrics, block moments or None) of a plan's combos on the CPU: one
    ``kernel.run_plan`` call (per thread) over its combos that planned; NaN rows for the rest.
    ``calls``: those of :func:`kernel_calls` with the same arguments, made beforehand."""
    n = len(plan)
    metrics = np.full((n, L.N_METRICS), np.nan)
    blocks = None if block_end is None else np.full((n, len(block_end), 2), np.nan)
    if calls is None:
        calls = kernel_calls(plan, bars, funding, block_end, threads)

    def part(call: KernelCall) -> None:
        positions, args = call
        m, b = aot.call(kernel.run_plan, *args)
        metrics[positions] = m
        if blocks is not None:
            blocks[positions] = b

    if len(calls) > 1:
        with ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix="threadx-plan-run") as pool:
            list(pool.map(part, calls))  # the kernel releases the GIL
    else:
        for call in calls:
            part(call)
    return metrics, blocks


class RequestMemo:
    """An indicator source that hands the same request (name and raw params) the arrays it
    got the first time, without the source's key normalisation; made per plan, so it holds
    no more than one batch's indicators beyond the source's own limits."""

    def __init__(self, source: Any):
        self.source = source
        self.memo: dict[tuple, Any] = {}

    def ensure(self, data: Any, name: str, params: dict[str, Any] | None = None) -> Any:
        try:
            key = request_key_as_given(name, params)
            found = self.memo.get(key)
        except TypeError:  # an unhashable param value: ask the source every time
            return self.source.ensure(data, name, params)
        if found is None:
            found = self.memo[key] = self.source.ensure(data, name, params)
        return found
