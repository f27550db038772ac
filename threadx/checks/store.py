"""The last ``strategy check`` report of each strategy, kept for the Strategies page.

Stored as ``<results>/.strategy_checks/<name>.json`` with the strategy's code hash: a report
made on other code is returned marked stale (the page says the code changed since)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from threadx.config import settings
from threadx.names import STRATEGY, check_name
from threadx.files import atomic_write_bytes

__all__ = ["save_report", "hidden_failures", "last_report"]


def _path(name: str, root: Path | None = None) -> Path:
    return (root or settings().results_dir) / ".strategy_checks" / f"{check_name(name, 'strategy name', STRATEGY)}.json"


def save_report(spec: Any, report: Any, root: Path | None = None) -> Path | None:
    """Store ``report`` (a CheckReport) as the last check of ``spec``, with its code hash; its
    path, or None when the stored report is kept (:func:`hidden_failures`)."""
    if hidden_failures(spec, report, root):
        return None
    path = _path(spec.name, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"strategy": spec.name, "code_hash": spec.code_hash, "report": report.to_dict()}
    atomic_write_bytes(path, json.dumps(record, indent=2, default=str).encode())
    return path


def hidden_failures(spec: Any, report: Any, root: Path | None = None) -> list[str]:
    """The checks that failed in the stored report of ``spec``'s current code and that ``report``
    did not run again conclusively on the same history (left out by ``--only``, NOT CHECKED on a
    span that could not show them, or passed on other bars: a 176-bar span passed a look-ahead
    the whole history showed): storing ``report`` would clear those failures without looking
    again where they were found."""
    stored, current = last_report(spec, root)
    if stored is None or not current:
        return []
    ran = {result.name: result for result in report.results}
    same_history = stored.get("fingerprint") is not None and stored.get("fingerprint") == report.fingerprint
    failed = [r.get("name") for r in stored.get("results") or []
              if not r.get("passed") and r.get("conclusive", True) and not r.get("informational")]
    return [name for name in failed if name not in ran or not (ran[name].passed or ran[name].conclusive)
            or (ran[name].passed and not same_history)]


def last_report(spec: Any, root: Path | None = None) -> tuple[dict[str, Any] | None, bool]:
    """(the stored report as a dict, whether it was made on the strategy's current code);
    (None, False) when there is none or it cannot be read."""
    try:
        record = json.loads(_path(spec.name, root).read_text(encoding="utf-8"))
        return record["report"], record.get("code_hash") == spec.code_hash
    except (OSError, ValueError, KeyError, TypeError):
        return None, False
