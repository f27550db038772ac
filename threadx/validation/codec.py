"""Store a tree of result objects in a folder without pickle.

A walk-forward result and its validation report are dataclasses holding dicts, lists,
numbers, numpy arrays and pandas frames. :func:`dump` writes them as ``tree.json`` (the
structure and the scalars, with the sha256 of every file and of the tree, checked by
:func:`load`), ``arrays.npz`` (every array, saved and read with ``allow_pickle=False``) and
one Parquet file per frame or series. :func:`load` rebuilds
only the dataclasses named in its allow-list, so a results folder someone hands over can
never run code (unlike unpickling)::

    dump(folder, {"walk_forward": wf, "report": report})
    tree = load(folder, allowed=[WalkForwardResult, Window, ...])
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import re
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd

from threadx.errors import ThreadXError

TREE, ARRAYS, FRAMES = "tree.json", "arrays.npz", "frames"
ROOT, DIGESTS = "__root__", "__sha256__"  # tree.json: the tree, and the sha256 of each file and of the tree
_FRAME_FILE = re.compile(rf"{FRAMES}/f\d+\.parquet")


class CodecError(ThreadXError):
    """A stored tree that cannot be written or read back."""


def dump(folder: Path, obj: Any) -> list[Path]:
    """Write ``obj`` into ``folder``; returns the files written (the caller makes it atomic)."""
    from threadx.files import atomic_write_bytes

    arrays: dict[str, np.ndarray] = {}
    frames: dict[str, pd.DataFrame] = {}
    tree = _encode(obj, arrays, frames)
    (folder / FRAMES).mkdir(parents=True, exist_ok=True)
    written, digests = [], {}
    for name, frame in frames.items():
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=True)
        relative = f"{FRAMES}/{name}.parquet"
        atomic_write_bytes(folder / relative, buffer.getvalue())
        digests[relative] = _sha256(buffer.getvalue())
        written.append(folder / relative)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(folder / ARRAYS, buffer.getvalue())
    digests[ARRAYS] = _sha256(buffer.getvalue())
    digests[TREE] = _sha256(json.dumps(tree).encode())
    # last: its presence marks a whole dump
    atomic_write_bytes(folder / TREE, json.dumps({ROOT: tree, DIGESTS: digests}).encode())
    return [*written, folder / ARRAYS, folder / TREE]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _checked_files(folder: Path, tree: Any, digests: Any) -> dict[str, bytes]:
    """Every file the dump wrote, by its name in ``folder``, read once and checked against its
    sha256 (the bytes checked are the bytes decoded): a bit flipped in a frame showed other
    numbers (a Sharpe, a window's end) as the result's, with no error."""
    if not isinstance(digests, dict) or not {TREE, ARRAYS} <= set(digests) or any(
            name not in (TREE, ARRAYS) and not _FRAME_FILE.fullmatch(str(name)) for name in digests):
        raise CodecError(f"{folder} cannot be read (its checksums do not name its files)")
    files = {}
    for name, digest in digests.items():
        data = json.dumps(tree).encode() if name == TREE else (folder / name).read_bytes()
        if _sha256(data) != digest:
            raise CodecError(f"{folder} cannot be read ({name} is not what was saved: its checksum differs)")
        files[name] = data
    return files


def load(folder: Path, allowed: Iterable[type]) -> Any:
    """Rebuild what :func:`dump` wrote; only dataclasses in ``allowed`` are created."""
    classes = {cls.__name__: cls for cls in allowed}
    try:
        tree = json.loads((folder / TREE).read_text())
        if isinstance(tree, dict) and DIGESTS in tree:
            tree, digests = tree.get(ROOT), tree[DIGESTS]
            files = _checked_files(folder, tree, digests)

            def read(name: str) -> bytes:
                if name not in files:
                    raise CodecError(f"{folder} cannot be read (its tree names {name}, which has no checksum)")
                return files[name]
        else:  # a dump of an earlier version has no checksums
            def read(name: str) -> bytes:
                return (folder / name).read_bytes()
        with np.load(io.BytesIO(read(ARRAYS)), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        return _decode(tree, arrays, read, classes)
    except CodecError:
        raise
    except Exception as exc:  # truncated, edited or foreign files
        raise CodecError(f"{folder} cannot be read ({type(exc).__name__}: {exc})") from None


def _encode(obj: Any, arrays: dict, frames: dict) -> Any:
    if obj is None or isinstance(obj, (bool, str, int)) and not isinstance(obj, np.generic):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"__float__": repr(obj)}
    if isinstance(obj, np.generic):
        return _encode(obj.item(), arrays, frames)
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise CodecError("object arrays cannot be stored without pickle")
        name = f"a{len(arrays)}"
        arrays[name] = obj
        return {"__array__": name}
    if isinstance(obj, pd.DataFrame):
        if not _parquet_ready(obj):  # a column mixing kinds (a choice's values beside numbers): in the tree
            return {"__rows__": {"columns": [_encode(c, arrays, frames) for c in obj.columns],
                                 "index": [_encode(i, arrays, frames) for i in obj.index],
                                 "rows": [[_encode(v, arrays, frames) for v in row]
                                          for row in obj.itertuples(index=False, name=None)]}}
        name = f"f{len(frames)}"
        frames[name] = obj
        return {"__frame__": name}
    if isinstance(obj, pd.Series):
        name = f"f{len(frames)}"
        frames[name] = obj.to_frame(name="values")
        return {"__series__": name, "name": _encode(obj.name, arrays, frames)}
    if isinstance(obj, pd.Timestamp):
        return {"__timestamp__": obj.isoformat()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {f.name: _encode(getattr(obj, f.name), arrays, frames) for f in dataclasses.fields(obj)}
        return {"__dataclass__": type(obj).__name__, "fields": fields}
    if isinstance(obj, dict):
        return {"__dict__": [[_encode(k, arrays, frames), _encode(v, arrays, frames)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {"__tuple__" if isinstance(obj, tuple) else "__list__": [_encode(v, arrays, frames) for v in obj]}
    raise CodecError(f"cannot store a {type(obj).__name__} without pickle")


def _decode(node: Any, arrays: dict, read: Callable[[str], bytes], classes: dict[str, type]) -> Any:
    if not isinstance(node, dict):
        return node

    def rec(value: Any) -> Any:
        return _decode(value, arrays, read, classes)

    if "__float__" in node:
        return float(node["__float__"])
    if "__array__" in node:
        return arrays[node["__array__"]]
    if "__frame__" in node:
        return _frame(read, node["__frame__"])
    if "__rows__" in node:
        rows = node["__rows__"]
        return pd.DataFrame([[rec(v) for v in row] for row in rows["rows"]], columns=[rec(c) for c in rows["columns"]],
                            index=[rec(i) for i in rows["index"]])
    if "__series__" in node:
        series = _frame(read, node["__series__"])["values"]
        series.name = rec(node.get("name"))
        return series
    if "__timestamp__" in node:
        return pd.Timestamp(node["__timestamp__"])
    if "__dataclass__" in node:
        cls = classes.get(node["__dataclass__"])
        if cls is None:
            raise CodecError(f"stored type {node['__dataclass__']!r} is not one this version reads")
        return cls(**{k: rec(v) for k, v in node["fields"].items()})
    if "__dict__" in node:
        return {_hashable(rec(k)): rec(v) for k, v in node["__dict__"]}
    if "__list__" in node:
        return [rec(v) for v in node["__list__"]]
    if "__tuple__" in node:
        return tuple(rec(v) for v in node["__tuple__"])
    raise CodecError(f"unknown stored node {sorted(node)[:3]}")


def _frame(read: Callable[[str], bytes], name: Any) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(read(f"{FRAMES}/{_plain(name)}.parquet")))


def _parquet_ready(frame: pd.DataFrame) -> bool:
    """Whether Parquet can hold ``frame`` (Arrow refuses an object column mixing kinds, such as
    lists of numbers in one row and of texts in another)."""
    import pyarrow as pa

    try:
        pa.Table.from_pandas(frame, preserve_index=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return False
    return True


def _plain(name: str) -> str:
    from threadx.names import check_name

    return check_name(name, "stored frame name")


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key
