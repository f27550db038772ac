"""IndicatorBank: the two-level cache every indicator request goes through.

Key: ``(bars.fingerprint, indicator name, canonical JSON of the normalised params, code
hash)`` hashed to a 20-hex-digit key. The fingerprint is computed once per Bars object (see
:mod:`threadx.data.bars`), never per request. The code hash (:func:`indicator_code_hash`)
is that of the indicator source files (``kernels.py``, ``registry.py``), computed once per
process: after an edit of an indicator or a kernel, a warm cache is not served.

Level 1 is an in-memory LRU bounded in bytes (an entry larger than ``max_bytes`` is not
kept in memory). Level 2 is a disk cache ``<cache_dir>/<indicator>/<key>.parquet`` (one
float64 column per output line) with a JSON sidecar ``<key>.json`` holding the
indicator, params, fingerprint, code hash, created_at, library version, rows, outputs and
a blake2b checksum of the arrays' bytes. A file that cannot be read, or whose sidecar or
content does not match (checksum, rows, outputs, version, code, fingerprint, params), is
deleted and recomputed, never served.

A result goes to disk only when computing it took about as long as reading it back takes
(:func:`worth_storing`; ``min_compute_s``, setting ``cache.min_compute``): the built-in
kernels compute in 0.1-0.7 ms on 12.5k bars and 1-10 ms on 480k, 2-12x quicker than their
files read back (0.7-7.7 ms and 6-26 ms) and 5-70x quicker than they are written, so a
file of theirs would only slow the next run down.

The disk level is bounded (``disk_limit_bytes``, default ``settings().cache_limit_bytes``,
env ``THREADX_CACHE_LIMIT``, 1 GiB): a disk hit touches the file's mtime, and after a
write that may have crossed the limit the least recently used entries (oldest mtime) are
deleted until the folder is under it. The bank tracks its own writes and rescans the
folder when they could have crossed the limit, or after each 1/16 of the limit written
(other processes write to the same folder), so a scan is not paid on every write.

Files are written atomically (temp file + ``os.replace``; the sidecar first, so a parquet
file never exists without its sidecar except after outside damage). Disk errors (read-only
or missing directory, full disk) turn the bank into a memory-only cache with one warning;
they never raise.

Arrays handed out are read-only zero-copy views through a read-only memoryview
(``flags.writeable`` is False and numpy refuses to set it back). ``ensure`` returns a new dict each call; the
arrays are the cached ones.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
import uuid
import warnings
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

import threadx
from threadx.codehash import source_hash
from threadx.config import settings
from threadx.files import dead_writer, writer_tag
from threadx.data.bars import as_bars
from threadx.indicators import kernels, registry
from threadx.indicators.registry import INDICATORS, IndicatorDef, canonical_json, get_indicator
from threadx.settings_file import seconds

__all__ = ["IndicatorBank", "default_bank", "cache_key", "arrays_checksum", "indicator_code_hash",
           "NEAR_LIMIT_SHARE"]

_FORMAT = 1
_COMPUTE_THREADS = max(1, min(4, os.cpu_count() or 1))  # threads of a large ensure_many batch
_ELEMENTS_PER_THREAD = 250_000  # ... each computing at least this many values (requests x bars; ~2.5 ms of SMA)
NEAR_LIMIT_SHARE = 0.9  # disk usage / limit from which stats() reports disk_near_limit
_RESCAN_PARTS = 16  # rescan the folder after each 1/16 of the limit written by this bank
_TEMP_NAME = re.compile(r"\.tmp-([0-9a-f]+-\d+)-[0-9a-f]{8}$")  # a write in progress: .tmp-<host>-<pid>-<random>


def indicator_code_hash() -> str:
    """Hash of the indicator source (kernels and registry with its compute functions)."""
    return source_hash(kernels, registry)


def cache_key(fingerprint: str, name: str, canonical_params: str, code: str = "") -> str:
    """Short hex key of (data fingerprint, indicator name, canonical params JSON, code hash)."""
    digest = hashlib.blake2b(digest_size=10)
    digest.update(f"{fingerprint}\x1f{name}\x1f{canonical_params}\x1f{code}".encode())
    return digest.hexdigest()


def arrays_checksum(outputs: Iterable[str], arrays: Mapping[str, np.ndarray]) -> str:
    """blake2b of the output names and the float64 bytes of each array, in order."""
    digest = hashlib.blake2b(digest_size=16)
    for name in outputs:
        digest.update(name.encode() + b"\x00")
        digest.update(np.ascontiguousarray(arrays[name], dtype=np.float64).tobytes())
    return digest.hexdigest()


def _freeze(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Read-only float64 arrays, zero-copy where possible.

    Each array handed out is a view through a read-only memoryview, so its
    ``flags.writeable`` is False and numpy refuses to set it back to True.
    """
    frozen = {}
    for name, arr in arrays.items():
        if isinstance(arr.base, memoryview) and arr.base.readonly and arr.dtype == np.float64:
            frozen[name] = arr  # frozen already (shared intermediate of a batch)
            continue
        base = np.ascontiguousarray(arr, dtype=np.float64)
        if base.flags.writeable:
            base.flags.writeable = False
        view = np.frombuffer(memoryview(base).toreadonly(), dtype=np.float64)
        frozen[name] = view
    return frozen


READ_SECONDS_PER_FILE = 1e-3  # opening and decoding one cached file (measured: 0.7-1.2 ms for 100 KB)
READ_BYTES_PER_SECOND = 500e6  # ... and reading its lines (measured: 600-800 MB/s, parquet float64)


def worth_storing(compute_s: float, nbytes: int, min_compute_s: float | None = None) -> bool:
    """Whether a result that took ``compute_s`` to compute is worth a file of the disk cache:
    it took at least ``min_compute_s`` (None: as long as reading its ``nbytes`` back is
    expected to take, so that a hit is never slower than computing it again).

    >>> worth_storing(0.0003, 100_000), worth_storing(0.05, 100_000), worth_storing(0.0, 8, 0.0)
    (False, True, True)
    """
    if min_compute_s is None:
        min_compute_s = READ_SECONDS_PER_FILE + nbytes / READ_BYTES_PER_SECOND
    return compute_s >= min_compute_s


_WARMED: set[tuple[str, str]] = set()  # (indicator, its choice params) whose kernels ran in this process
_WARM_BARS = 64


def _warm_up(idef: IndicatorDef, bars: Any, norms: list[dict]) -> None:
    """Run the kernels of ``norms`` once on a few bars, before their compute is timed: a kernel's
    first call in a process loads it from numba's disk cache (5-300 ms; it compiles on a cold
    cache), which is no part of the result's compute time and would make :func:`worth_storing`
    store results that are quicker to compute than to read back. One call per indicator and
    choice of its text/switch params (the values that pick a kernel), per process."""
    todo: dict[tuple[str, str], dict] = {}
    for norm in norms:
        variant = (idef.name, canonical_json({k: v for k, v in norm.items() if isinstance(v, (str, bool))}))
        if variant not in _WARMED:
            todo.setdefault(variant, norm)
    if not todo:
        return
    try:
        idef.compute_many(bars.slice(0, min(len(bars), _WARM_BARS)), list(todo.values()))
    except Exception:  # noqa: BLE001 - warming only: the timed compute raises what is wrong
        pass
    _WARMED.update(todo)


def _nbytes(arrays: Mapping[str, np.ndarray]) -> int:
    # arrays shared between lines (or entries) are counted once per entry
    seen: set[int] = set()
    total = 0
    for arr in arrays.values():
        base = arr.base if arr.base is not None else arr
        if id(base) not in seen:
            seen.add(id(base))
            total += arr.nbytes
    return total


class _Corrupt(Exception):
    """A disk entry that must not be served."""


def _batch_threads(requests: int, rows: int) -> int:
    """Threads :func:`_compute_many` computes a batch of ``requests`` on ``rows`` bars in (1: this one)."""
    return max(1, min(_COMPUTE_THREADS, requests // 4, requests * rows // _ELEMENTS_PER_THREAD))


def _compute_many(idef: IndicatorDef, bars: Any, norms: list[dict]) -> list[dict[str, np.ndarray]]:
    """``idef.compute_many`` of ``norms``; a large batch in a few threads (the kernels release
    the GIL), each a contiguous run of the requests sorted by their canonical params, so that
    requests sharing an intermediate (the rolling mean and deviation of one Bollinger period)
    stay in one thread. Every array is computed as one ``compute_many`` call computes it."""
    threads = _batch_threads(len(norms), len(bars))
    if threads < 2:
        return idef.compute_many(bars, norms)
    order = sorted(range(len(norms)), key=lambda k: canonical_json(norms[k]))
    bounds = np.linspace(0, len(order), threads + 1).astype(int).tolist()
    parts = [order[lo:hi] for lo, hi in zip(bounds, bounds[1:])]
    with ThreadPoolExecutor(threads, thread_name_prefix="threadx-indicators") as pool:
        results = list(pool.map(lambda part: idef.compute_many(bars, [norms[k] for k in part]), parts))
    out: list[dict[str, np.ndarray]] = [{}] * len(norms)
    for part, arrays in zip(parts, results):
        for k, value in zip(part, arrays):
            out[k] = value
    return out


class IndicatorBank:
    """Two-level (memory LRU + disk) cache of indicator results.

    Parameters
    ----------
    cache_dir: disk cache root (default ``settings().cache_dir``, env ``THREADX_CACHE_DIR``).
    max_bytes: bound of the in-memory level, in bytes of array data.
    disk: False for a memory-only bank.
    disk_limit_bytes: bound of the disk level, parquet files and sidecars together
        (default ``settings().cache_limit_bytes``, env ``THREADX_CACHE_LIMIT``).
    min_compute_s: a result goes to disk only when it took this long to compute (None: the
        setting ``cache.min_compute``, whose ``auto`` is :func:`worth_storing`'s estimate of
        reading it back; 0: every result).
    """

    def __init__(self, cache_dir: str | os.PathLike | None = None, max_bytes: int = 512 * 2**20,
                 disk: bool = True, disk_limit_bytes: int | None = None, min_compute_s: float | None = None):
        current = settings() if cache_dir is None or disk_limit_bytes is None or min_compute_s is None else None
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else current.cache_dir
        self.max_bytes = int(max_bytes)
        self.disk_limit_bytes = int(disk_limit_bytes) if disk_limit_bytes is not None else current.cache_limit_bytes
        if self.disk_limit_bytes <= 0:
            raise ValueError(f"disk_limit_bytes must be positive, got {disk_limit_bytes}")
        if min_compute_s is not None:
            try:
                min_compute_s = seconds(min_compute_s)
            except ValueError as exc:
                raise ValueError(f"min_compute_s {exc} (None: the setting)") from None
        self.min_compute_s = current.cache_min_compute_s if min_compute_s is None else min_compute_s
        self.code_hash = indicator_code_hash()
        self._disk = bool(disk)
        self._lock = threading.RLock()
        self._evict_lock = threading.Lock()
        self._mem: OrderedDict[str, tuple[dict[str, np.ndarray], int]] = OrderedDict()
        self._mem_bytes = 0
        self._stats = dict(memory_hits=0, disk_hits=0, misses=0, compute_seconds=0.0,
                           disk_writes=0, disk_rejected=0, disk_errors=0, disk_evicted=0, disk_skipped=0)
        self._disk_estimate: int | None = None  # bytes at the last scan + this bank's writes since
        self._written_since_scan = 0
        self._warned = False

    # ------------------------------------------------------------------ public API
    @property
    def disk_enabled(self) -> bool:
        return self._disk

    def key(self, data: Any, name: str, params: Mapping[str, Any] | None = None) -> str:
        """Cache key of one request (normalises the params)."""
        bars = as_bars(data)
        idef = get_indicator(name)
        return cache_key(bars.fingerprint, idef.name, canonical_json(idef.normalize(params)), self.code_hash)

    def ensure(self, data: Any, name: str, params: Mapping[str, Any] | None = None,
               **kwargs: Any) -> dict[str, np.ndarray]:
        """Indicator ``name`` with ``params`` (plus keyword params) on ``data`` (Bars or a
        canonical frame) -> {output: read-only float64 array}, from memory, disk or computed."""
        if kwargs:
            params = {**(params or {}), **kwargs}
        return self.ensure_many(data, name, [params])[0]

    def ensure_many(self, data: Any, name: str,
                    list_of_params: Iterable[Mapping[str, Any] | None]) -> list[dict[str, np.ndarray]]:
        """Many parameter sets of one indicator; only the misses are computed, in one
        ``compute_many`` batch that shares intermediates. Results follow the input order."""
        bars = as_bars(data)
        idef = get_indicator(name)
        fingerprint = bars.fingerprint
        norms = [idef.normalize(p) for p in list_of_params]
        keys = [cache_key(fingerprint, idef.name, canonical_json(n), self.code_hash) for n in norms]

        found: dict[str, dict[str, np.ndarray]] = {}
        missing: dict[str, dict] = {}
        for key, norm in zip(keys, norms):
            if key in found or key in missing:
                continue
            hit = self._memory_get(key)
            if hit is None:
                hit = self._disk_get(idef, key, norm, fingerprint, len(bars))
                if hit is not None:
                    self._memory_put(key, hit)
            if hit is None:
                missing[key] = norm
            else:
                found[key] = hit

        if missing:
            if self._disk and self.min_compute_s != 0:
                _warm_up(idef, bars, list(missing.values()))
            t0, cpu0 = time.perf_counter(), time.thread_time()
            computed = _compute_many(idef, bars, list(missing.values()))
            elapsed = time.perf_counter() - t0
            cpu = time.thread_time() - cpu0
            with self._lock:
                self._stats["misses"] += len(missing)
                self._stats["compute_seconds"] += elapsed
            # computed in this thread: its CPU time (the wall time of a busy machine, or of a thread
            # waiting for the GIL, makes a quick result look slow); in a few threads: the wall time
            spent = elapsed if _batch_threads(len(missing), len(bars)) > 1 else min(elapsed, cpu)
            each_s = spent / len(missing)  # a batch shares its intermediates: an even share each
            for (key, norm), arrays in zip(missing.items(), computed):
                frozen = _freeze(arrays)
                found[key] = frozen
                self._memory_put(key, frozen)
                if not self._disk:
                    continue
                if worth_storing(each_s, _nbytes(frozen), self.min_compute_s):
                    self._disk_put(idef, key, norm, fingerprint, len(bars), frozen)
                else:
                    with self._lock:
                        self._stats["disk_skipped"] += 1
        return [dict(found[k]) for k in keys]

    def stats(self) -> dict:
        """Counters: memory_hits, disk_hits, misses, compute_seconds, bytes_in_memory,
        entries_in_memory, disk_files, disk_bytes, hit_rate (plus disk_writes,
        disk_rejected (corrupt or stale files deleted), disk_errors, disk_evicted (least
        recently used entries deleted for the limit), disk_skipped (results quicker to compute
        than to read back, not stored: see :func:`worth_storing`), disk_enabled), and the disk usage
        against the limit: disk_limit_bytes, disk_used_share (disk_bytes / limit) and
        disk_near_limit (share >= NEAR_LIMIT_SHARE)."""
        with self._lock:
            out: dict[str, Any] = dict(self._stats)
            out["bytes_in_memory"] = self._mem_bytes
            out["entries_in_memory"] = len(self._mem)
        files, size = self._disk_usage()
        out["disk_files"] = files
        out["disk_bytes"] = size
        hits = out["memory_hits"] + out["disk_hits"]
        total = hits + out["misses"]
        out["hit_rate"] = hits / total if total else 0.0
        out["disk_enabled"] = self._disk
        out["max_bytes"] = self.max_bytes
        out["disk_limit_bytes"] = self.disk_limit_bytes
        out["disk_used_share"] = size / self.disk_limit_bytes
        out["disk_near_limit"] = out["disk_used_share"] >= NEAR_LIMIT_SHARE
        return out

    def reset_stats(self) -> None:
        with self._lock:
            for k in self._stats:
                self._stats[k] = 0.0 if k == "compute_seconds" else 0

    def clear(self, memory: bool = True, disk: bool = False) -> None:
        """Drop the in-memory entries and/or the disk files of this bank's cache_dir
        (only ``<indicator>/*.parquet|json`` of registered indicators are removed)."""
        if memory:
            with self._lock:
                self._mem.clear()
                self._mem_bytes = 0
        if disk:
            for path in self._disk_files(include_sidecars=True, include_temp=True):
                try:
                    path.unlink()
                except OSError:
                    pass
            with self._lock:
                self._disk_estimate = None  # rescanned at the next write
                self._written_since_scan = 0

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._mem

    def __repr__(self) -> str:
        return (f"IndicatorBank(cache_dir={str(self.cache_dir)!r}, max_bytes={self.max_bytes}, "
                f"disk={self._disk}, disk_limit_bytes={self.disk_limit_bytes}, entries={len(self._mem)})")

    # -------------------------------------------------------------------- memory
    def _memory_get(self, key: str) -> dict[str, np.ndarray] | None:
        with self._lock:
            entry = self._mem.get(key)
            if entry is None:
                return None
            self._mem.move_to_end(key)
            self._stats["memory_hits"] += 1
            return entry[0]

    def _memory_put(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        size = _nbytes(arrays)
        with self._lock:
            old = self._mem.pop(key, None)
            if old is not None:
                self._mem_bytes -= old[1]
            if size > self.max_bytes:
                return
            self._mem[key] = (arrays, size)
            self._mem_bytes += size
            while self._mem_bytes > self.max_bytes and self._mem:
                _, (_, dropped) = self._mem.popitem(last=False)
                self._mem_bytes -= dropped

    # ---------------------------------------------------------------------- disk
    def _paths(self, indicator: str, key: str) -> tuple[Path, Path]:
        folder = self.cache_dir / indicator
        return folder / f"{key}.parquet", folder / f"{key}.json"

    def _disk_failed(self, action: str, exc: BaseException) -> None:
        with self._lock:
            self._stats["disk_errors"] += 1
            self._disk = False
            warn = not self._warned
            self._warned = True
        if warn:
            warnings.warn(
                f"indicator disk cache {str(self.cache_dir)!r} unusable ({action}: {exc}); "
                "continuing with the in-memory cache only. Set THREADX_CACHE_DIR to a writable folder.",
                RuntimeWarning, stacklevel=4,
            )

    def _reject(self, parquet: Path, sidecar: Path) -> None:
        with self._lock:
            self._stats["disk_rejected"] += 1
        for path in (parquet, sidecar):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError:
                pass

    def _disk_get(self, idef: IndicatorDef, key: str, norm: dict, fingerprint: str,
                  rows: int) -> dict[str, np.ndarray] | None:
        if not self._disk:
            return None
        if self._disk_estimate is None:  # this bank's first look: a limit lowered since applies now
            self.enforce_disk_limit()
        parquet, sidecar = self._paths(idef.name, key)
        try:
            if not parquet.exists():
                return None  # a sidecar alone may be a write in progress: plain miss
        except OSError:
            return None
        try:
            arrays = self._read_entry(idef, parquet, sidecar, norm, fingerprint, rows)
        except Exception:  # noqa: BLE001 - anything wrong with the file: never serve it
            self._reject(parquet, sidecar)
            return None
        _touch(parquet)
        with self._lock:
            self._stats["disk_hits"] += 1
        return arrays

    def _read_entry(self, idef: IndicatorDef, parquet: Path, sidecar: Path, norm: dict,
                    fingerprint: str, rows: int) -> dict[str, np.ndarray]:
        import pyarrow.parquet as pq

        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        expected = {
            "format": _FORMAT,
            "indicator": idef.name,
            "params": norm,
            "fingerprint": fingerprint,
            "code": self.code_hash,
            "version": threadx.__version__,
            "rows": rows,
            "outputs": list(idef.outputs),
        }
        for field, value in expected.items():
            if meta.get(field) != value:
                raise _Corrupt(f"sidecar {field} mismatch")
        table = pq.read_table(parquet)
        if table.num_rows != rows or list(table.column_names) != list(idef.outputs):
            raise _Corrupt("parquet shape mismatch")
        arrays = {}
        for name in idef.outputs:
            arr = table.column(name).to_numpy(zero_copy_only=False)
            if arr.dtype != np.float64 or arr.shape != (rows,):
                raise _Corrupt("parquet column type mismatch")
            arrays[name] = np.array(arr, dtype=np.float64, copy=True)
        if arrays_checksum(idef.outputs, arrays) != meta.get("checksum"):
            raise _Corrupt("checksum mismatch")
        return _freeze(arrays)

    def _disk_put(self, idef: IndicatorDef, key: str, norm: dict, fingerprint: str, rows: int,
                  arrays: Mapping[str, np.ndarray]) -> None:
        if not self._disk or _nbytes(arrays) > self.disk_limit_bytes:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        parquet, sidecar = self._paths(idef.name, key)
        tag = f".tmp-{writer_tag()}-{uuid.uuid4().hex[:8]}"  # (_TEMP_NAME: whose it is, for _remove_stale_temps)
        tmp_parquet = parquet.with_name(parquet.name + tag)
        tmp_sidecar = sidecar.with_name(sidecar.name + tag)
        meta = {
            "format": _FORMAT,
            "key": key,
            "indicator": idef.name,
            "params": norm,
            "fingerprint": fingerprint,
            "code": self.code_hash,
            "created_at": datetime.now(timezone.utc).isoformat(),
            "version": threadx.__version__,
            "rows": rows,
            "outputs": list(idef.outputs),
            "checksum": arrays_checksum(idef.outputs, arrays),
        }
        try:
            parquet.parent.mkdir(parents=True, exist_ok=True)
            table = pa.table({name: pa.array(np.asarray(arrays[name])) for name in idef.outputs})
            pq.write_table(table, tmp_parquet)
            tmp_sidecar.write_text(json.dumps(meta, sort_keys=True, indent=1), encoding="utf-8")
            written = tmp_parquet.stat().st_size + tmp_sidecar.stat().st_size
            os.replace(tmp_sidecar, sidecar)
            os.replace(tmp_parquet, parquet)
        except Exception as exc:  # noqa: BLE001 - disk trouble degrades, never crashes
            for tmp in (tmp_parquet, tmp_sidecar):
                try:
                    tmp.unlink()
                except OSError:
                    pass
            self._disk_failed("write", exc)
            return
        with self._lock:
            self._stats["disk_writes"] += 1
        self._after_write(written)

    def _after_write(self, size: int) -> None:
        """Count a write; rescan and evict when the limit may have been crossed."""
        with self._lock:
            self._written_since_scan += size
            if self._disk_estimate is not None:
                self._disk_estimate += size
            due = (self._disk_estimate is None or self._disk_estimate > self.disk_limit_bytes
                   or self._written_since_scan * _RESCAN_PARTS >= self.disk_limit_bytes)
        if due:
            self.enforce_disk_limit()

    def enforce_disk_limit(self) -> int:
        """Delete the least recently used disk entries (oldest parquet mtime first) until the
        cache folder is under ``disk_limit_bytes``; returns how many were deleted."""
        if not self._evict_lock.acquire(blocking=False):
            return 0  # another thread of this bank is at it
        try:
            self._remove_stale_temps()
            entries, total = self._disk_entries()
            evicted = 0
            for _, parquet, size in sorted(entries):
                if total <= self.disk_limit_bytes:
                    break
                for path in (parquet, parquet.with_suffix(".json")):
                    try:
                        path.unlink()
                    except OSError:
                        pass
                total -= size
                evicted += 1
            with self._lock:
                self._disk_estimate = total
                self._written_since_scan = 0
                self._stats["disk_evicted"] += evicted
            return evicted
        finally:
            self._evict_lock.release()

    def _remove_stale_temps(self) -> None:
        """Delete the half-written files of writers that died (killed mid-write): they were in
        no count and no eviction (12 killed writers left 37 MB over a 10 MB limit)."""
        for path in self._disk_files(include_sidecars=False, include_temp=True):
            match = _TEMP_NAME.search(path.name)
            if match is not None and dead_writer(match.group(1), path):
                path.unlink(missing_ok=True)

    def _disk_entries(self) -> tuple[list[tuple[int, Path, int]], int]:
        """([(mtime_ns, parquet path, bytes with its sidecar)], total bytes of the cache files,
        writes in progress included)."""
        stats: dict[Path, os.stat_result] = {}
        for path in self._disk_files(include_sidecars=True, include_temp=True):
            try:
                stats[path] = path.stat()
            except OSError:
                continue
        entries = []
        for path, st in stats.items():
            if path.suffix == ".parquet":
                sidecar = stats.get(path.with_suffix(".json"))
                entries.append((st.st_mtime_ns, path, st.st_size + (sidecar.st_size if sidecar else 0)))
        return entries, sum(st.st_size for st in stats.values())

    def _disk_files(self, include_sidecars: bool = True, include_temp: bool = False) -> list[Path]:
        files: list[Path] = []
        for name in INDICATORS:
            folder = self.cache_dir / name
            try:
                if not folder.is_dir():
                    continue
                for path in folder.iterdir():
                    n = path.name
                    if n.endswith(".parquet") or (include_sidecars and n.endswith(".json")) or (
                        include_temp and ".tmp-" in n
                    ):
                        files.append(path)
            except OSError:
                continue
        return files

    def _disk_usage(self) -> tuple[int, int]:
        count = 0
        size = 0
        for path in self._disk_files(include_sidecars=True, include_temp=True):
            try:
                st = path.stat()
            except OSError:
                continue
            size += st.st_size
            if path.name.endswith(".parquet"):
                count += 1
        return count, size


def _touch(path: Path) -> None:
    """Mark a disk entry as just used (its mtime is the LRU clock); errors are ignored."""
    try:
        os.utime(path)
    except OSError:
        pass


_DEFAULT: IndicatorBank | None = None
_DEFAULT_LOCK = threading.Lock()


def default_bank() -> IndicatorBank:
    """Process-wide bank on ``settings().cache_dir`` (a new one is made if that setting, the
    disk limit or the least compute time stored changed since the last call, e.g.
    THREADX_CACHE_DIR set by a test)."""
    global _DEFAULT
    current = settings()
    with _DEFAULT_LOCK:
        if (_DEFAULT is None or _DEFAULT.cache_dir != current.cache_dir
                or _DEFAULT.disk_limit_bytes != current.cache_limit_bytes
                or _DEFAULT.min_compute_s != current.cache_min_compute_s):
            _DEFAULT = IndicatorBank(cache_dir=current.cache_dir, disk_limit_bytes=current.cache_limit_bytes)
        return _DEFAULT
