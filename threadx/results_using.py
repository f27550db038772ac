"""Which stored results ran on a dataset: what deleting it leaves unable to be resumed,
validated or re-run (they stay readable; each re-run checks the data's fingerprint and says
the data is gone).

A result names its data in its JSON files, as a ``dataset`` name or as a dataset reference's
``source`` (a name or a path); each name is resolved as loading it would resolve it, so
``BTC_USDT-1h`` and ``binance/BTC_USDT-1h`` find the same file.

>>> results_using("binance/BTC_USDT-1h")  # doctest: +SKIP
['sweep run-20261204-101500-ab12', 'walk-forward wf-bb_atr-20261204-1102']
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

from threadx.config import settings
from threadx.errors import ThreadXError
from threadx.units import counted

# (kind shown, folder under the results folder or "" for the sweeps' own, the JSON files of one result)
_KINDS = (("sweep", "", ("manifest.json", "plan.json")), ("walk-forward", "walkforward", ("summary.json",)),
          ("research", "research", ("research.json",)), ("portfolio", "portfolios", ("portfolio.json",)))
_MAX_JSON_BYTES = 4 << 20  # a result's description, not its rows: a larger file is not one of these
_NAME_KEYS = ("dataset", "source")
_NOUNS = {"research": ("research run", "research runs")}  # (a kind whose plural is not kind + "s")


def results_using(name: str, data_root: str | os.PathLike | None = None,
                  results_dir: str | os.PathLike | None = None) -> list[str]:
    """``"<kind> <id>"`` of each stored result whose data is the dataset ``name`` (every format
    of it), in the order sweeps, walk-forwards, research, portfolios; a damaged result is
    skipped (it names nothing that can be read)."""
    from threadx.data.catalog import delete_dataset, resolve_dataset

    files = {_real(p) for p in delete_dataset(name, data_root, dry_run=True)}
    resolved: dict[str, Path | None] = {}

    def is_target(named: str) -> bool:
        if named not in resolved:
            try:
                resolved[named] = _real(resolve_dataset(named, data_root))
            except (ThreadXError, OSError, ValueError):
                resolved[named] = None
        return resolved[named] in files

    from threadx.optimize.store import RESERVED_RUN_IDS

    root = Path(results_dir if results_dir is not None else settings().results_dir)
    found = []
    for kind, folder, files_of in _KINDS:
        skipped = () if folder else RESERVED_RUN_IDS  # the other kinds' folders are not sweeps
        for result in _result_folders(root / folder if folder else root, skipped):
            names = {n for file in files_of for n in _names_in(result / file)}
            if any(is_target(n) for n in sorted(names)):
                found.append(f"{kind} {result.name}")
    return found


def _real(path: Path) -> Path | None:
    try:
        return path.resolve()
    except OSError:
        return None


def _result_folders(root: Path, skipped: tuple[str, ...] = ()) -> Iterator[Path]:
    if not root.is_dir():
        return
    for folder in sorted(root.iterdir()):
        if folder.is_dir() and not folder.name.startswith(".") and folder.name.lower() not in skipped:
            yield folder


def _names_in(path: Path) -> set[str]:
    """The data names in one JSON file: every string under a ``dataset`` or ``source`` key, at
    any depth (a portfolio's runners, a research's cells); none from a file that cannot be read."""
    try:
        if not path.is_file() or path.stat().st_size > _MAX_JSON_BYTES:
            return set()
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return set()
    names: set[str] = set()
    _collect(data, names)
    return {n for n in names if n.strip() and not n.startswith(("sample:", "synthetic/"))}  # (the sample stays)


def _collect(data: Any, names: set[str]) -> None:
    if isinstance(data, dict):
        for key, value in data.items():
            if key in _NAME_KEYS and isinstance(value, str):
                names.add(value)
            else:
                _collect(value, names)
    elif isinstance(data, list):
        for item in data:
            _collect(item, names)


def used_by_note(name: str, shown: int = 3, without: str = "without it") -> str:
    """A sentence naming the stored results that ran on dataset ``name`` (the first ``shown`` of
    them), for a delete's confirmation or a rename's note (``without``: what they lack, e.g.
    "under its new name"); "" when none did or they cannot be listed."""
    try:
        found = results_using(name)
    except (ThreadXError, OSError):
        return ""
    if not found:
        return ""
    by_kind: dict[str, list[str]] = {}
    for item in found:
        kind, _, result_id = item.partition(" ")
        by_kind.setdefault(kind, []).append(result_id)
    # each kind counted and named (the only walk-forward was hidden in "and 1 more" behind three sweeps)
    listed = "; ".join(f"{counted(len(ids), *_NOUNS.get(kind, (kind,)))}: " + ", ".join(ids[:shown])
                       + (f" and {len(ids) - shown:,} more" if len(ids) > shown else "")
                       for kind, ids in by_kind.items())
    if len(found) == 1:
        listed = found[0]  # ("1 sweep: x" beside "1 stored result")
    they = "they stay readable but cannot" if len(found) > 1 else "it stays readable but cannot"
    return (f" {counted(len(found), 'stored result')} ran on it ({listed}): {they} be resumed, validated or "
            f"re-run {without}.")
