"""Host side of a GPU sweep: the kernel inputs of many combos, each distinct one computed once.

A combo's kernel inputs are its parameter row (exit rules, sizing, costs: ``layout.P_*``),
its signal array and its four level lines (ATR, band low / mid / high). The CPU evaluator
builds them per combo; that costs tens of microseconds of Python per combo, more than a
GPU needs to run the combo. The :class:`Planner` calls the same strategy functions
(``exits`` -> ``effective_rules`` -> ``param_vector``, ``indicators``, ``signals``,
``levels``) once per distinct *trace* instead, and hands the GPU the distinct signal
arrays and lines plus, per combo, a parameter row and row indices into them.

How a trace makes that exact: each function is called for one representative combo with
a params mapping (and an indicator mapping) that records what the function reads. A
deterministic function that reads the same values follows the same path and returns the
same result, so the result holds for every combo that agrees with the representative on
the values read (the trace's *keys*); the others get representatives of their own. For
``signals`` and ``levels`` every param and indicator output read is a key, and an
indicator output is identified by its content, so e.g. the z-score of every ``bb_std``
of one Bollinger period is one key value. For ``indicators`` and the parameter row,
numbers are handed over tagged (:class:`_RefFloat`, :class:`_RefInt`): a number that the
function only copies into its result (``{"period": p["bb_period"]}``, a slot of the row)
is not a key but a *substitution*, found by two probe calls with other values, and
filled in per combo; any arithmetic, comparison or formatting of it makes it a key.
The substitutions are also checked against plain calls on a sample of combos; a
strategy whose functions defeat the tagging (e.g. numpy ops on a scalar param) falls back
to keys for every param read, which is exact for any deterministic function.

Errors are recorded per combo with the text and in the order of the CPU path
(``Evaluator.kernel_inputs``): rules, indicator needs, indicator values, signals, levels,
level lines, signal shape, parameter row.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from threadx.engine import layout as L
from threadx.engine.inputs import effective_rules, level_arrays, param_vector
from threadx.errors import ParamError
from threadx.optimize.evaluate import STATUS_FAILED, STATUS_OK, Evaluator
from threadx.strategy.base import ExitRules, Levels

log = logging.getLogger(__name__)

_NAN_LINE = 0  # row 0 of Plan.line_values: all NaN, for a line the combo's rules never read
_MAX_ROUNDS = 10_000
_VERIFY_PER_BATCH = 64  # combos per batch checked against plain calls (substitutions)


@dataclass
class Plan:
    """Kernel inputs of a batch of combos (rows of failed combos are NaN / -1)."""

    ids: np.ndarray  # (n,) combo ids
    rows: np.ndarray  # (n, N_PARAMS) float64 parameter vectors
    sig: np.ndarray  # (n,) int64 row of ``signals``
    lines: np.ndarray  # (n, 4) int64 rows of ``line_values``: atr, band_lo, band_mid, band_hi
    signals: list[np.ndarray]  # distinct signal arrays (uint8, n_bars each)
    line_values: list[np.ndarray]  # distinct lines (float64, n_bars each); the first is all NaN
    status: np.ndarray  # (n,) int8 STATUS_OK / STATUS_FAILED
    errors: dict[int, str] = field(default_factory=dict)  # combo id -> error text

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def ok(self) -> np.ndarray:
        """Positions of the combos that run."""
        return np.flatnonzero(self.status == STATUS_OK)

    def subset(self, positions: np.ndarray) -> "Plan":
        """The combos at ``positions`` with only the signal rows and lines they use."""
        positions = np.asarray(positions, dtype=np.int64)
        sig = self.sig[positions]
        lines = self.lines[positions]
        used_sig, sig_rows = _compact(sig)
        used_lines, line_rows = _compact(lines.ravel(), keep_first=True)
        ids = self.ids[positions]
        return Plan(ids, self.rows[positions], sig_rows, line_rows.reshape(lines.shape),
                    [self.signals[k] for k in used_sig], [self.line_values[k] for k in used_lines],
                    self.status[positions],
                    {int(i): self.errors[int(i)] for i in ids if int(i) in self.errors})


def _compact(index: np.ndarray, keep_first: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(rows used, sorted; ``index`` remapped onto them); -1 stays -1; row 0 kept if asked."""
    valid = index[index >= 0]
    used = np.unique(np.concatenate([[0], valid]) if keep_first else valid).astype(np.int64)
    lookup = np.full(int(used.max()) + 1 if len(used) else 1, -1, dtype=np.int64)
    lookup[used] = np.arange(len(used))
    out = np.where(index >= 0, lookup[np.maximum(index, 0)], -1)
    return used, out


# --- tagged numbers ------------------------------------------------------------------------

class _Recorder:
    """What one call read: params accessed, keys consumed (a value that matters), indicator reads."""

    def __init__(self) -> None:
        self.accessed: set[str] = set()
        self.keys: set[str] = set()  # column names: "p:<param>", "has:<label>", "out:<label>:<output>", ...

    def consume(self, param: str) -> None:
        self.keys.add("p:" + param)


class _Ref:
    """Mixin of a number handed to a traced function: every operation on it but a plain
    conversion (which numpy uses to copy it into an array) makes its param a key."""

    _name: str
    _rec: _Recorder


_CONSUMING = (
    "add radd sub rsub mul rmul truediv rtruediv floordiv rfloordiv mod rmod divmod rdivmod pow rpow "
    "neg pos abs invert lshift rlshift rshift rrshift and rand or ror xor rxor lt le gt ge eq ne bool "
    "round trunc floor ceil complex str repr format hash reduce reduce_ex getnewargs copy deepcopy"
).split()


def _consuming(base: type, name: str) -> Callable:
    method = getattr(base, name)

    def wrapper(self, *args):
        for value in (self, *args):  # b in a + b is read in C: a use of b too
            if isinstance(value, _Ref):
                object.__getattribute__(value, "_rec").consume(object.__getattribute__(value, "_name"))
        return method(base(self), *(_plain(a) for a in args))

    wrapper.__name__ = name
    return wrapper


def _tagged(base: type) -> type:
    namespace: dict[str, Any] = {}
    for short in _CONSUMING:
        name = f"__{short}__"
        if hasattr(base, name):
            namespace[name] = _consuming(base, name)

    def __getattribute__(self, name):  # .real, .is_integer(), ...: a use of the value
        if not name.startswith("_"):
            object.__getattribute__(self, "_rec").consume(object.__getattribute__(self, "_name"))
        return base.__getattribute__(self, name)

    namespace["__getattribute__"] = __getattribute__
    return type(f"_Ref{base.__name__.title()}", (_Ref, base), namespace)


_RefFloat = _tagged(float)
_RefInt = _tagged(int)


def _tag(value: Any, name: str, rec: _Recorder) -> Any:
    kind = type(value)
    if kind is float or kind is int:
        ref = (_RefFloat if kind is float else _RefInt)(value)
        object.__setattr__(ref, "_name", name)
        object.__setattr__(ref, "_rec", rec)
        return ref
    rec.consume(name)  # bools and choices: few values, always keys
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, _Ref):
        return float.__float__(value) if isinstance(value, float) else int.__int__(value)
    return value


def _probe_values(value: Any) -> tuple[Any, Any] | None:
    """Two other values of a number, near it (a probe must not allocate or loop for ages)."""
    if type(value) is int:
        return value + 1, value + 2
    if type(value) is float and math.isfinite(value):
        return value * 1.0009765625 + 0.03125, value * 0.998046875 + 0.0625
    return None


# --- the mappings a traced call receives -------------------------------------------------------

class _Params(Mapping):
    def __init__(self, values: dict[str, Any], rec: _Recorder, tag: bool):
        self._values = values
        self._rec = rec
        self._tag = tag

    def __getitem__(self, key: str) -> Any:
        value = self._values[key]
        self._rec.accessed.add(key)
        if self._tag:
            return _tag(value, key, self._rec)
        self._rec.consume(key)
        return value

    def __iter__(self) -> Iterator[str]:
        for key in self._values:
            self._rec.consume(key)
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, key: object) -> bool:
        return key in self._values


class _Outputs(Mapping):
    def __init__(self, label: str, arrays: Mapping[str, np.ndarray], rec: _Recorder):
        self._label = label
        self._arrays = arrays
        self._rec = rec

    def __getitem__(self, key: str) -> np.ndarray:
        self._rec.keys.add(f"out:{self._label}:{key}")
        return self._arrays[key]

    def __iter__(self) -> Iterator[str]:
        self._rec.keys.add(f"req:{self._label}")
        return iter(self._arrays)

    def __len__(self) -> int:
        self._rec.keys.add(f"req:{self._label}")
        return len(self._arrays)

    def __contains__(self, key: object) -> bool:
        self._rec.keys.add(f"out:{self._label}:{key}")
        return key in self._arrays


class _Indicators(Mapping):
    def __init__(self, fetch: Callable[[str], Mapping[str, np.ndarray]], labels: tuple[str, ...], rec: _Recorder):
        self._fetch = fetch
        self._labels = labels
        self._rec = rec

    def __getitem__(self, label: str) -> _Outputs:
        self._rec.keys.add(f"has:{label}")
        if label not in self._labels:
            raise KeyError(label)
        return _Outputs(label, self._fetch(label), self._rec)

    def __iter__(self) -> Iterator[str]:
        self._rec.keys.add("labels")
        return iter(self._labels)

    def __len__(self) -> int:
        self._rec.keys.add("labels")
        return len(self._labels)

    def __contains__(self, label: object) -> bool:
        self._rec.keys.add(f"has:{label}")
        return label in self._labels


# --- structures: leaves, probes, substitution ------------------------------------------------

def _leaves(obj: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    """(path, leaf) of a result made of dicts, tuples, lists, dataclasses and 1-D arrays."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _leaves(value, path + (("k", key),))
    elif isinstance(obj, (list, tuple)):
        yield path + (("n", type(obj).__name__, len(obj)),), None
        for k, value in enumerate(obj):
            yield from _leaves(value, path + (("i", k),))
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            yield from _leaves(getattr(obj, f.name), path + (("f", f.name),))
    elif isinstance(obj, np.ndarray) and obj.ndim == 1 and obj.dtype.kind in "fiub":
        yield path + (("shape", obj.dtype.str, obj.shape),), None
        for k, value in enumerate(obj.tolist()):
            yield path + (("a", k),), value
    else:
        yield path, obj


def _nbytes(obj: Any) -> int:
    """Bytes of the arrays in a result (not walking their elements)."""
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, dict):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(v) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return sum(_nbytes(getattr(obj, f.name)) for f in dataclasses.fields(obj))
    return 0


def _same(a: Any, b: Any) -> bool:
    a, b = _plain(a), _plain(b)
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape
                and a.dtype == b.dtype and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f")))
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # noqa: BLE001 - an object without a usable ==: treat as different
        return a is b


def _equal(a: Any, b: Any) -> bool:
    """Two results with the same structure and the same leaves."""
    la, lb = list(_leaves(a)), list(_leaves(b))
    return len(la) == len(lb) and all(pa == pb and _same(x, y) for (pa, x), (pb, y) in zip(la, lb))


def _substitute(obj: Any, values: Mapping[tuple, Any], path: tuple = ()) -> Any:
    """``obj`` with the leaves at the paths of ``values`` replaced, tagged numbers made plain."""
    if isinstance(obj, dict):
        return {key: _substitute(value, values, path + (("k", key),)) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [_substitute(value, values, path + (("i", k),)) for k, value in enumerate(obj)]
        return type(obj)(items) if isinstance(obj, list) or type(obj) is tuple else type(obj)(*items)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {f.name: _substitute(getattr(obj, f.name), values, path + (("f", f.name),))
                   for f in dataclasses.fields(obj)}
        return dataclasses.replace(obj, **changes)
    if isinstance(obj, np.ndarray) and obj.ndim == 1 and obj.dtype.kind in "fiub":
        out = obj.copy()
        for key, value in values.items():
            if key[:len(path)] == path and len(key) == len(path) + 1 and key[-1][0] == "a":
                out[key[-1][1]] = value
        return out
    return values[path] if path in values else _plain(obj)


# --- traced memo ---------------------------------------------------------------------------------

@dataclass
class _Leaf:
    keys: tuple[str, ...]
    result: Any = None
    error: str | None = None
    late: bool = False  # the error belongs to a later stage of the CPU path
    subs: dict[str, list[tuple]] = field(default_factory=dict)  # param -> result paths it is copied to
    nbytes: int = 0
    derived: dict = field(default_factory=dict)  # what the planner computed from this result


class _Late(Exception):
    """An error of the last stage of the CPU path (the parameter row)."""


class _Memo:
    """Results of one function per distinct trace, reused across the batches of a sweep."""

    def __init__(self, name: str, fn: Callable[["_Call"], Any], tag: bool, threads: int = 1):
        self.name = name
        self.fn = fn
        self.tag = tag
        self.threads = threads
        self.leaves: list[_Leaf] = []
        self.tables: dict[tuple[str, ...], dict[tuple, int]] = {}
        self.unchecked: set[int] = set()  # leaves whose substitutions no plain call has confirmed
        # per leaf and substituted param: the value positions a plain call has confirmed
        self.confirmed: dict[tuple[int, str], set[int]] = {}
        self.nbytes = 0
        self._lock = threading.Lock()

    def clear(self) -> None:
        self.leaves, self.tables, self.unchecked, self.nbytes = [], {}, set(), 0
        self.confirmed = {}

    def resolve(self, frame: "_Frame", positions: np.ndarray) -> np.ndarray:
        """Leaf index of each combo at ``positions`` (calls the function where no trace fits)."""
        out = np.full(len(positions), -1, dtype=np.int64)
        todo = np.arange(len(positions))
        for _ in range(_MAX_ROUNDS):
            for keys, table in list(self.tables.items()):
                if not len(todo):
                    break
                columns = [frame.column(k)[positions[todo]] for k in keys]
                codes, first = _groups(columns, len(todo))
                heads = (map(tuple, np.stack([col[first] for col in columns], axis=1).tolist()) if columns
                         else [()] * len(first))
                found = np.array([table.get(head, -1) for head in heads], dtype=np.int64)[codes]
                hit = found >= 0
                out[todo[hit]] = found[hit]
                todo = todo[~hit]
            if not len(todo):
                assert (out >= 0).all()
                return out
            known = sorted(set().union(*self.tables)) if self.tables else []
            if known:
                _, first = _groups([frame.column(k)[positions[todo]] for k in known], len(todo))
                reps = positions[todo[first]]
            else:
                reps = positions[todo[:1]]
            for pos, leaf in zip(reps, self._call_many(frame, reps)):
                self._store(frame, int(pos), leaf)
        raise RuntimeError(f"GPU planner: {self.name} did not settle (a non-deterministic strategy function?)")

    def _store(self, frame: "_Frame", pos: int, leaf: _Leaf) -> None:
        values = tuple(int(frame.column(k)[pos]) for k in leaf.keys)
        with self._lock:
            self.tables.setdefault(leaf.keys, {})[values] = len(self.leaves)
            if leaf.subs:
                self.unchecked.add(len(self.leaves))
            self.leaves.append(leaf)
            self.nbytes += leaf.nbytes

    def _call_many(self, frame: "_Frame", reps: np.ndarray) -> list[_Leaf]:
        if self.threads > 1 and len(reps) > 1:
            # the strategies' numba kernels release the GIL: signals are computed in parallel
            parts = np.array_split(reps, min(len(reps), 4 * self.threads))
            with ThreadPoolExecutor(max_workers=min(self.threads, len(parts)),
                                    thread_name_prefix=f"threadx-plan-{self.name}") as pool:
                done = pool.map(lambda part: [self.trace(frame, int(pos)) for pos in part], parts)
                return [leaf for part in done for leaf in part]
        return [self.trace(frame, int(pos)) for pos in reps]

    def trace(self, frame: "_Frame", pos: int) -> _Leaf:
        """Call the function for the combo at ``pos`` and find its keys and substitutions."""
        params = frame.params(pos)
        rec = _Recorder()
        result, error, late = self._call(frame, pos, params, rec)
        keys, accessed = set(rec.keys), set(rec.accessed)
        subs: dict[str, list[tuple]] = {}
        if error is not None:
            keys.update("p:" + name for name in accessed)  # an error may hang on any value read
        elif self.tag:
            base = list(_leaves(result))
            for name in sorted(accessed):
                if "p:" + name in keys:
                    continue
                paths = self._probe(frame, pos, params, name, base, keys, accessed)
                if paths:
                    subs[name] = paths
                else:  # read but not (only) copied: it may steer the function in ways not seen
                    keys.add("p:" + name)
        return _Leaf(tuple(sorted(keys)), result, error, late, subs, _nbytes(result))

    def _call(self, frame: "_Frame", pos: int, params: dict, rec: _Recorder) -> tuple[Any, str | None, bool]:
        try:
            return self.fn(_Call(frame, pos, params, rec, self.tag)), None, False
        except _Late as exc:
            return None, str(exc), True
        except Exception as exc:  # noqa: BLE001 - recorded for the combos of this trace, as on CPU
            return None, f"{type(exc).__name__}: {exc}", False  # formatted while still recording

    def _probe(self, frame: "_Frame", pos: int, params: dict, name: str, base: list, keys: set[str],
               accessed: set[str]) -> list[tuple] | None:
        """Paths of the result that are plain copies of param ``name`` (None: more than copied),
        from two calls with other values of it."""
        probes = _probe_values(params[name])
        if probes is None:
            return None
        found = None
        for value in probes:
            rec2 = _Recorder()
            result, error, _ = self._call(frame, pos, {**params, name: value}, rec2)
            if error is not None or rec2.keys != keys or rec2.accessed != accessed:
                return None
            if isinstance(result, np.ndarray) and result.ndim == 1 and result.dtype.kind == "f":
                # a parameter row: compared at once
                if base[0][0] != (("shape", result.dtype.str, result.shape),):
                    return None
                before = np.array([b for _, b in base[1:]], dtype=np.float64)
                same = (result == before) | (np.isnan(result) & np.isnan(before))
                changed = [base[1 + k][0] for k in np.flatnonzero(~same)]
                if not np.all(result[~same] == float(value)) or (found is not None and changed != found):
                    return None
                found = changed
                continue
            leaves = list(_leaves(result))
            if len(leaves) != len(base) or any(a[0] != b[0] for a, b in zip(leaves, base)):
                return None
            changed = [p for (p, v), (_, b) in zip(leaves, base) if not _same(v, b)]
            copies = {p for p, v in leaves if _same(v, value) or (type(value) is int and _same(v, float(value)))}
            if any(p not in copies for p in changed):
                return None
            if found is not None and changed != found:
                return None
            found = changed
        return found

    def materialise(self, leaf: _Leaf, frame: "_Frame", pos: int, names: list[str] | None = None,
                    part: Any = None) -> Any:
        """The result for the combo at ``pos`` (a combo of this leaf's trace); with ``names``,
        only those substitutions are made (the others keep the representative's values);
        with ``part``, only that entry of a dict result."""
        values = frame.params(pos)
        fills = {path: values[name] for name, paths in leaf.subs.items() if names is None or name in names
                 for path in paths}
        if part is not None:
            return _substitute(leaf.result[part], fills, (("k", part),))
        return _substitute(leaf.result, fills)

    def plain(self, frame: "_Frame", pos: int) -> tuple[Any, str | None]:
        """The function called for ``pos`` with nothing recorded (to check substitutions)."""
        result, error, _ = self._call(frame, pos, frame.params(pos), _Recorder())
        return result, error


@dataclass
class _Call:
    """What a traced function receives: the combo's params (and indicator values)."""

    frame: "_Frame"
    pos: int
    values: dict
    rec: _Recorder
    tag: bool

    @property
    def params(self) -> _Params:
        return _Params(self.values, self.rec, self.tag)

    @property
    def ind(self) -> _Indicators:
        labels = self.frame.labels_of(self.pos)
        return _Indicators(lambda label: self.frame.arrays_of(self.pos, label), labels, self.rec)


def _groups(columns: list[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """(group number of each of ``n`` rows, first row of each group) for the tuples of ``columns``."""
    if not columns or n == 0:
        return np.zeros(n, dtype=np.int64), np.zeros(min(n, 1), dtype=np.int64)
    code = np.zeros(n, dtype=np.int64)
    for col in columns:
        lo = int(col.min())
        span = int(col.max()) - lo + 1
        if int(code.max()) >= (2**62) // span:
            _, first, inverse = np.unique(np.stack(columns, axis=1), axis=0, return_index=True, return_inverse=True)
            return inverse.ravel(), first
        code = code * span + (col - lo)
    _, first, inverse = np.unique(code, return_index=True, return_inverse=True)
    return inverse, first


# --- one batch -----------------------------------------------------------------------------------

class _Frame:
    """The combos of one batch as columns: param value positions and indicator identities."""

    def __init__(self, planner: "Planner", ids: np.ndarray):
        self.planner = planner
        self.space = planner.space
        self.ids = ids
        self.idx = self.space.value_indices(ids) if len(ids) else np.zeros((0, len(self.space.axes)), np.int64)
        self._columns: dict[str, np.ndarray] = {}
        self.requests: dict[str, np.ndarray] = {}  # label -> request id per combo (-1: not needed)
        self.label_sets: np.ndarray = np.full(len(ids), -1, dtype=np.int64)
        self._lock = threading.Lock()

    def params(self, pos: int) -> dict[str, Any]:
        return {axis.name: axis.values[int(self.idx[pos, k])] for k, axis in enumerate(self.space.axes)}

    def column(self, name: str) -> np.ndarray:
        col = self._columns.get(name)
        if col is None:
            with self._lock:
                col = self._columns.get(name)
                if col is None:
                    col = self._build(name)
                    self._columns[name] = col
        return col

    def _build(self, name: str) -> np.ndarray:
        kind, _, rest = name.partition(":")
        n = len(self.ids)
        if kind == "p":
            return self.idx[:, self.space.names.index(rest)]
        if kind == "labels":
            return self.label_sets
        label, _, output = rest.partition(":")
        req = self.requests.get(label, np.full(n, -1, dtype=np.int64))
        if kind == "has":
            return (req >= 0).astype(np.int64)
        if kind == "req":
            return req
        if kind == "out":
            ids = np.unique(req[req >= 0])
            content = np.array([self.planner.content_id(int(r), output) for r in ids], dtype=np.int64)
            return _map_ids(req, ids, content)
        raise KeyError(name)

    def labels_of(self, pos: int) -> tuple[str, ...]:
        return self.planner.label_tuple(int(self.label_sets[pos]))

    def arrays_of(self, pos: int, label: str) -> Mapping[str, np.ndarray]:
        return self.planner.request_arrays(int(self.requests[label][pos]))


def _split(keys: np.ndarray, positions: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(key, positions with that key) for each distinct key, in key order."""
    if not len(keys):
        return
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    cuts = np.flatnonzero(np.diff(sorted_keys)) + 1
    for start, stop in zip(np.r_[0, cuts], np.r_[cuts, len(keys)]):
        yield int(sorted_keys[start]), positions[order[start:stop]]


def _map_ids(values: np.ndarray, keys: np.ndarray, mapped: np.ndarray, missing: int = -1) -> np.ndarray:
    """``mapped[k]`` where ``values == keys[k]`` (keys sorted), ``missing`` elsewhere."""
    out = np.full(len(values), missing, dtype=np.int64)
    if len(keys):
        where = np.clip(np.searchsorted(keys, values), 0, len(keys) - 1)
        hit = keys[where] == values
        out[hit] = mapped[where[hit]]
    return out


class Planner:
    """Kernel inputs of combo ids for one sweep (``Evaluator`` gives strategy, space, data)."""

    def __init__(self, evaluator: Evaluator, threads: int | None = None, cache_bytes: int = 512 * 2**20):
        self.ev = evaluator
        self.spec = evaluator.spec
        self.space = evaluator.space
        self.bars = evaluator.bars
        self.n_bars = len(evaluator.bars)
        self.cache_bytes = cache_bytes
        options = evaluator.task.options
        timeframe = evaluator.bars.timeframe
        uses_funding = evaluator.funding is not None
        spec = self.spec
        threads = threads or max(1, min(16, os.cpu_count() or 1))

        def row(call: _Call) -> np.ndarray:
            rules = effective_rules(spec.exits(call.params), options)
            try:
                return param_vector(rules, options, timeframe, uses_funding)
            except Exception as exc:  # noqa: BLE001 - the CPU path meets this after the signals
                raise _Late(f"{type(exc).__name__}: {exc}") from exc

        self.rows = _Memo("rows", row, tag=True)
        self.needs = _Memo("indicators", lambda call: spec.indicators(call.params), tag=True)
        self.signals = _Memo("signals", lambda call: spec.signals(self.bars, call.ind, call.params), tag=False,
                             threads=threads)
        self.levels = _Memo("levels", lambda call: spec.levels(call.ind, call.params), tag=False)
        self._requests: dict[tuple, int] = {}  # (name, raw params) -> request id
        self._request_list: list[tuple[str, dict]] = []
        self._arrays: dict[int, dict[str, np.ndarray] | BaseException] = {}
        self._content: dict[tuple[int, str], int] = {}
        self._digests: dict[bytes, int] = {}
        self._label_sets: dict[tuple[str, ...], int] = {}
        self._label_list: list[tuple[str, ...]] = []
        self._lines: dict[bytes, int] = {}
        self._line_of_array: dict[int, tuple[np.ndarray, int]] = {}
        self._line_list: list[np.ndarray] = [np.full(self.n_bars, np.nan)]
        self._lock = threading.RLock()

    # --- registries (shared by the batches of a sweep) -------------------------------------------

    def request_id(self, name: str, params: dict) -> int:
        key = (name, tuple(sorted((k, repr(v)) for k, v in params.items())))
        with self._lock:
            rid = self._requests.get(key)
            if rid is None:
                rid = self._requests[key] = len(self._request_list)
                self._request_list.append((name, params))
        return rid

    def request_arrays(self, rid: int) -> dict[str, np.ndarray]:
        found = self._fetch(rid)
        if isinstance(found, BaseException):
            raise found
        return found

    def _fetch(self, rid: int) -> dict[str, np.ndarray] | BaseException:
        with self._lock:
            found = self._arrays.get(rid)
            if found is None:
                name, params = self._request_list[rid]
                try:
                    found = self.ev.indicators.ensure(self.bars, name, params)
                except Exception as exc:  # noqa: BLE001 - fails the combos that need it, as on CPU
                    found = exc
                self._arrays[rid] = found
        return found

    def request_error(self, rid: int) -> str | None:
        found = self._fetch(rid)
        return f"{type(found).__name__}: {found}" if isinstance(found, BaseException) else None

    def content_id(self, rid: int, output: str) -> int:
        """Id of the content of one output of a request (-2: no such output)."""
        with self._lock:
            cid = self._content.get((rid, output))
            if cid is None:
                arrays = self._fetch(rid)
                if isinstance(arrays, BaseException) or output not in arrays:
                    cid = -2
                else:
                    cid = self._digest_id(np.asarray(arrays[output]))
                self._content[(rid, output)] = cid
        return cid

    def _digest_id(self, arr: np.ndarray) -> int:
        data = np.ascontiguousarray(arr)
        digest = hashlib.blake2b(data.tobytes(), digest_size=16)
        digest.update(f"{data.dtype.str}{data.shape}".encode())
        return self._digests.setdefault(digest.digest(), len(self._digests))

    def label_id(self, labels: tuple[str, ...]) -> int:
        with self._lock:
            lid = self._label_sets.get(labels)
            if lid is None:
                lid = self._label_sets[labels] = len(self._label_list)
                self._label_list.append(labels)
        return lid

    def label_tuple(self, lid: int) -> tuple[str, ...]:
        return self._label_list[lid] if lid >= 0 else ()

    def line_id(self, arr: np.ndarray) -> int:
        data = np.ascontiguousarray(arr, dtype=np.float64)
        if data.shape != (self.n_bars,):  # the CPU's placeholder of a line it never reads
            return _NAN_LINE
        with self._lock:
            known = self._line_of_array.get(id(arr))
            if known is not None and known[0] is arr:  # the same (read-only) indicator array again
                return known[1]
            key = hashlib.blake2b(data.tobytes(), digest_size=16).digest()
            lid = self._lines.get(key)
            if lid is None:
                lid = self._lines[key] = len(self._line_list)
                self._line_list.append(data)
            if not arr.flags.writeable:
                self._line_of_array[id(arr)] = (arr, lid)  # holding arr keeps its id unique
        return lid

    # --- the plan of a batch ---------------------------------------------------------------------

    def plan(self, ids: np.ndarray) -> Plan:
        """Kernel inputs of ``ids`` (failed combos carry their error, as on CPU)."""
        ids = np.asarray(ids, dtype=np.int64)
        n = len(ids)
        frame = _Frame(self, ids)
        errors: dict[int, str] = {}  # position -> text; the first stage that fails wins
        late: dict[int, str] = {}
        rows = np.full((n, L.N_PARAMS), np.nan)
        sig = np.full(n, -1, dtype=np.int64)
        lines = np.full((n, 4), -1, dtype=np.int64)
        if n and self.n_bars < 2:
            text = f"DataError: need at least 2 bars to backtest, got {self.n_bars}"
            return self._assemble(ids, rows, sig, lines, {k: text for k in range(n)}, {}, [])

        def alive() -> np.ndarray:
            keep = np.ones(n, dtype=bool)
            keep[list(errors)] = False
            return np.flatnonzero(keep)

        # 1. the parameter row (exits -> effective_rules -> param_vector)
        self._fill_rows(frame, alive(), rows, errors, late)
        # 2. indicator needs, then the indicator values
        self._fill_requests(frame, alive(), errors)
        # 3. signals and levels
        positions = alive()
        sig_leaf = self._resolve(self.signals, frame, positions)
        sig_rows: list[np.ndarray] = []
        bad_signal: dict[int, str] = {}  # kernel_args checks the signal after the lines
        for leaf_no, members in _split(sig_leaf, positions):
            leaf = self.signals.leaves[leaf_no]
            text = leaf.error
            if text is None:
                try:
                    arr = np.ascontiguousarray(leaf.result, dtype=np.uint8)
                    if arr.shape != (self.n_bars,):
                        raise ParamError(f"signal array has shape {arr.shape}, expected ({self.n_bars},)")
                except Exception as exc:  # noqa: BLE001 - as kernel_args raises it
                    bad_signal.update((int(pos), f"{type(exc).__name__}: {exc}") for pos in members)
                    continue
                sig[members] = len(sig_rows)
                sig_rows.append(arr)
            else:
                errors.update((int(pos), text) for pos in members)
        self._fill_lines(frame, alive(), rows, lines, errors)
        for pos, text in bad_signal.items():
            errors.setdefault(pos, text)
        return self._assemble(ids, rows, sig, lines, errors, late, sig_rows)

    def _resolve(self, memo: _Memo, frame: _Frame, positions: np.ndarray) -> np.ndarray:
        if not len(positions):
            return np.zeros(0, dtype=np.int64)
        return memo.resolve(frame, positions)

    def _fill_rows(self, frame: _Frame, positions: np.ndarray, rows: np.ndarray, errors: dict, late: dict) -> None:
        memo = self.rows
        leaf_of = self._resolve(memo, frame, positions)
        if memo.tag and not self._verify(memo, frame, positions, leaf_of):
            leaf_of = self._resolve(memo, frame, positions)
        for leaf_no, members in _split(leaf_of, positions):
            leaf = memo.leaves[leaf_no]
            if leaf.error is not None:
                target = late if leaf.late else errors
                for pos in members:
                    target[int(pos)] = leaf.error
                continue
            rows[members] = _plain_row(leaf.result)
            for name, paths in leaf.subs.items():
                axis = self.space.axes[self.space.names.index(name)]
                values = np.asarray(axis.values, dtype=np.float64)[frame.column("p:" + name)[members]]
                for path in paths:
                    rows[members, path[-1][1]] = values

    def _fill_requests(self, frame: _Frame, positions: np.ndarray, errors: dict) -> None:
        memo = self.needs
        n = len(frame.ids)
        leaf_of = self._resolve(memo, frame, positions)
        if memo.tag and not self._verify(memo, frame, positions, leaf_of):
            leaf_of = self._resolve(memo, frame, positions)
        requests: dict[str, np.ndarray] = {}
        order: list[tuple[np.ndarray, tuple[str, ...]]] = []
        for leaf_no, members in _split(leaf_of, positions):
            leaf = memo.leaves[leaf_no]
            if leaf.error is not None:
                for pos in members:
                    errors[int(pos)] = leaf.error
                continue
            try:
                labels = tuple(_plain(label) for label in leaf.result)
                items = list(leaf.result.items())
            except Exception as exc:  # noqa: BLE001 - what prepare_signals would trip over
                for pos in members:
                    errors[int(pos)] = f"{type(exc).__name__}: {exc}"
                continue
            frame.label_sets[members] = self.label_id(labels)
            order.append((members, labels))
            for label, _ in items:
                label = _plain(label)
                # the params copied into this need: one request per distinct combination of them
                names = sorted(name for name, paths in leaf.subs.items()
                               if any(path[:1] == (("k", label),) for path in paths))
                if names:
                    codes, first = _groups([frame.column("p:" + name)[members] for name in names], len(members))
                    groups = _split(codes, members)
                else:
                    first, groups = np.zeros(1, dtype=np.int64), iter([(0, members)])
                column = requests.get(label)
                if column is None:
                    column = requests[label] = np.full(n, -1, dtype=np.int64)
                for g, group in groups:
                    head = int(members[first[g]])
                    key = (label, tuple(int(frame.column("p:" + name)[head]) for name in names))
                    rid = leaf.derived.get(key)
                    if rid is None:
                        try:
                            name, ind_params = memo.materialise(leaf, frame, head, names, part=label)
                            rid = self.request_id(name, dict(ind_params))
                        except Exception as exc:  # noqa: BLE001 - a malformed need fails like prepare_signals
                            rid = f"{type(exc).__name__}: {exc}"
                        leaf.derived[key] = rid
                    if isinstance(rid, str):
                        for pos in group:
                            errors.setdefault(int(pos), rid)
                    else:
                        column[group] = rid
        frame.requests = requests
        for members, labels in order:  # the first need whose values fail, in the needs' order
            for label in labels:
                rid = requests.get(label)
                if rid is None:
                    continue
                for r in np.unique(rid[members]):
                    text = self.request_error(int(r)) if r >= 0 else None
                    if text:
                        for pos in members[rid[members] == r]:
                            errors.setdefault(int(pos), text)

    def _fill_lines(self, frame: _Frame, positions: np.ndarray, rows: np.ndarray, lines: np.ndarray,
                    errors: dict) -> None:
        memo = self.levels
        leaf_of = self._resolve(memo, frame, positions)
        if not len(positions):
            return
        r = rows[positions]
        # which lines the kernel reads for a row (inputs.level_arrays asks the same of the rules)
        needs_atr = (r[:, L.P_STOP_ATR] > 0) | (r[:, L.P_TP_ATR] > 0) | (r[:, L.P_TRAIL_MODE] == L.TRAIL_ATR)
        band = r[:, L.P_TRAIL_MODE] == L.TRAIL_BAND
        needs_mid = (r[:, L.P_TARGET_MID] > 0) | band
        need_code = needs_atr * 4 + needs_mid * 2 + band
        codes, first = _groups([leaf_of, need_code], len(positions))
        for g, group in _split(codes, positions):
            f = first[g]
            leaf = memo.leaves[int(leaf_of[f])]
            if leaf.error is not None:
                for pos in group:
                    errors[int(pos)] = leaf.error
                continue
            code = int(need_code[f])
            found = leaf.derived.get(code)
            if found is None:
                rules = ExitRules(stop_atr=1.0 if code & 4 else 0.0, target_mid=bool(code & 2) and not code & 1,
                                  trail="band" if code & 1 else "none")
                try:
                    levels = leaf.result
                    if not isinstance(levels, Levels):
                        raise TypeError(f"levels must return a Levels, got {type(levels).__name__}")
                    found = [self.line_id(a) for a in level_arrays(levels, rules, self.n_bars)]
                except Exception as exc:  # noqa: BLE001 - the same error as kernel_args
                    found = f"{type(exc).__name__}: {exc}"
                leaf.derived[code] = found
            if isinstance(found, str):
                for pos in group:
                    errors[int(pos)] = found
            else:
                lines[group] = found

    def _verify(self, memo: _Memo, frame: _Frame, positions: np.ndarray, leaf_of: np.ndarray) -> bool:
        """Check substitutions against plain calls, in every batch: a sample of the combos of
        new traces, and one combo for each value of a substituted param that no plain call
        has confirmed for its trace yet (a value the probes did not try can take another
        branch, e.g. through ``float(param)``). On a mismatch, stop tagging: every param
        read becomes a key, which is exact for any deterministic function."""
        fresh = np.array(sorted(memo.unchecked), dtype=np.int64)
        memo.unchecked.clear()
        picks: list[int] = []
        candidates = np.flatnonzero(np.isin(leaf_of, fresh))
        if len(candidates):
            rng = np.random.default_rng(len(memo.leaves))
            picks += [int(k) for k in rng.choice(candidates, size=min(_VERIFY_PER_BATCH, len(candidates)),
                                                 replace=False)]
        for leaf_no, members in _split(leaf_of, np.arange(len(leaf_of))):
            for name in memo.leaves[leaf_no].subs:
                seen = memo.confirmed.setdefault((leaf_no, name), set())
                values = frame.column("p:" + name)[positions[members]]
                new_values, first = np.unique(values, return_index=True)
                for value, k in zip(new_values.tolist(), first.tolist()):
                    if value not in seen:
                        seen.add(value)
                        picks.append(int(members[k]))
        for k in dict.fromkeys(picks):
            pos = int(positions[k])
            leaf = memo.leaves[int(leaf_of[k])]
            expected, error = memo.plain(frame, pos)
            if error is not None or not _equal(expected, memo.materialise(leaf, frame, pos)):
                log.warning("GPU planner: %s of %s is not a plain copy of its params; using exact keys instead",
                            memo.name, self.spec.name)
                memo.tag = False
                memo.clear()
                return False
        return True

    def _assemble(self, ids, rows, sig, lines, errors, late, sig_rows) -> Plan:
        for pos, text in late.items():
            errors.setdefault(pos, text)
        status = np.full(len(ids), STATUS_OK, dtype=np.int8)
        failed = np.array(sorted(errors), dtype=np.int64)
        if len(failed):
            status[failed] = STATUS_FAILED
            rows[failed] = np.nan
            sig[failed] = -1
            lines[failed] = -1
        used, line_rows = _compact(lines.ravel(), keep_first=True)  # the NaN line stays first
        line_values = [self._line_list[int(k)] for k in used]
        plan = Plan(ids, rows, sig, line_rows.reshape(lines.shape), sig_rows, line_values, status,
                    {int(ids[pos]): text for pos, text in errors.items()})
        self._trim()
        return plan

    def _trim(self) -> None:
        """Forget cached results beyond the memory budget (they are recomputed when met again)."""
        for memo in (self.signals, self.levels):
            if memo.nbytes > self.cache_bytes:
                memo.clear()


def _plain_row(row: Any) -> np.ndarray:
    out = np.asarray(row, dtype=np.float64)
    if out.shape != (L.N_PARAMS,):
        raise ValueError(f"parameter row has shape {out.shape}, expected ({L.N_PARAMS},)")
    return out
