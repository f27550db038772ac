"""The Strategies page's logic (``views/6_Strategies.py``), kept out of the view so it can be
tested on its own: the table of strategies (built-in and of the strategies folder) with their
last check, the files that failed to load, a strategy's params and source, writing a new
strategy file or an edited one, the editor's drafts kept on disk, and running
``threadx.checks.strategy`` on a dataset.

Editing a strategy's code in the browser runs that code on the server, so the page offers it
only when the server listens on a loopback address and the request names a loopback host
(:func:`threadx.ui.serving.local_only`): served on a network, anyone reaching the app could
run code.
"""
from __future__ import annotations

import inspect
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd

from threadx.errors import ParamError, ThreadXError, os_reason
from threadx.names import check_name
from threadx.strategy.base import StrategySpec, builtin_names

__all__ = ["TEMPLATE_CHOICE", "LoadError", "source_label", "check_status",
           "strategy_table", "params_table", "constraint_lines", "source_text", "load_errors", "create_strategy",
           "save_source", "run_check", "report_results", "report_verdict", "report_heading", "throttled",
           "TEST_ONLY_PREFIX", "reserved_for_tests", "Draft", "DRAFTS_FOLDER", "MAX_DRAFT_BYTES", "draft_path",
           "read_draft", "write_draft", "drop_draft"]

TEMPLATE_CHOICE = "template (RSI mean reversion + ATR stop)"  # "start from" of the New strategy form

# the test suite registers strategies of its own in the process it runs the pages in: the
# pickers leave out names with this prefix, and a new strategy file may not take one
TEST_ONLY_PREFIX = "test_"

# the editor's drafts (text typed, not saved), one JSON file per strategy file in this hidden folder of the
# strategies folder: the loader reads only the folder's own *.py files, and a draft belongs to that folder
DRAFTS_FOLDER = ".drafts"
MAX_DRAFT_BYTES = 2**20  # a larger text is not kept on disk (the editor and Save have no limit of their own)

# last check status of a strategy (the table's "Last check" column)
PASS, FAIL, NOT_CHECKED, NEVER, STALE = "PASS", "FAIL", "NOT CHECKED", "never", "stale"


def source_label(spec: StrategySpec) -> str:
    """``built-in``, ``file.py:line`` of a strategies-folder strategy, or the module it is registered from."""
    origin = spec.origin
    if origin is not None and origin.kind == "user" and origin.path:
        name = Path(origin.path).name
        return f"{name}:{origin.line}" if origin.line else name
    if spec.name in builtin_names() or (origin is not None and origin.kind == "builtin"):
        return "built-in"
    return f"module {spec.signals.__module__}"


def check_status(spec: StrategySpec, root: Path | None = None) -> tuple[str, dict | None]:
    """(PASS, FAIL, never or stale, the stored report) of the last ``strategy check`` of
    ``spec``; stale: the report was made on other code than the strategy's current one."""
    from threadx.checks.store import last_report

    report, current = last_report(spec, root)
    if report is None:
        return NEVER, None
    if not current:
        return STALE, report
    return report_verdict(report), report


def failed_check_note(spec: StrategySpec, root: Path | None = None) -> str | None:
    """What a page running ``spec`` says when the last check of its current code failed (None when
    it passed, was never made, or was made on other code): a look-ahead or an accounting failure
    makes every figure of it doubtful, and only the Strategies page showed it."""
    status, report = check_status(spec, root)
    if status != FAIL or report is None:
        return None
    results = [r for r in report_results(report) if r["status"] == FAIL]
    failed = [r["name"] for r in results if not r["error"]]  # a check that ran and found something
    raised = [r for r in results if r["error"]]  # one the strategy stopped by raising: nothing was checked
    stopped = f"the strategy raised {raised[0]['error']}" if raised else ""
    names = ", ".join(r["name"] for r in raised)
    if not failed:
        return (f"The last check of {spec.name} (on this code) could not run: {stopped} (in {names}). Its figures "
                "here are not checked; see the Strategies page.")
    could_not = f"{names} could not run: {stopped}" if raised else ""
    why = " (a look-ahead makes them look better than any trading could)" if "lookahead" in failed else ""
    return (f"The last check of {spec.name} (on this code) failed: {', '.join(failed)}. Its figures here may be "
            f"wrong{why}" + (f" ({could_not})" if could_not else "") + "; see the Strategies page.")


def report_verdict(report: Mapping[str, Any]) -> str:
    """PASS, FAIL or NOT CHECKED (only checks that could not look failed) of a stored report."""
    if report.get("passed"):
        return PASS
    return FAIL if any(r["status"] == FAIL for r in report_results(report)) else NOT_CHECKED


def strategy_table(specs: Mapping[str, StrategySpec], root: Path | None = None) -> pd.DataFrame:
    """One row per strategy: name, source, number of params, last check status."""
    rows = []
    for name, spec in specs.items():
        status, report = check_status(spec, root)
        when = (report or {}).get("created_at") or ""
        rows.append({"Strategy": name, "Source": source_label(spec), "Params": len(spec.params),
                     "Last check": status, "Checked (UTC)": when.replace("T", " ")[:16]})
    return pd.DataFrame(rows, columns=["Strategy", "Source", "Params", "Last check", "Checked (UTC)"])


def _number(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def params_table(spec: StrategySpec) -> pd.DataFrame:
    """The declared params: name, kind, default, min, max, opt range, feeds (roles), description
    (the allowed values of a choice param in its range column). All text, so a column mixes
    kinds without Arrow complaining."""
    rows = []
    for p in spec.params:
        if p.kind == "choice":
            opt = " | ".join(map(str, p.choices))
        elif p.opt_range:
            lo, hi, step = p.opt_range
            opt = f"{_number(lo)} → {_number(hi)} step {_number(step)}"
        else:
            opt = ""
        feeds = ", ".join(role for role in ("indicators", "signals", "levels", "exits") if role in p.feeds)
        rows.append({"Param": p.name, "Kind": p.kind, "Default": _number(p.default), "Min": _number(p.min),
                     "Max": _number(p.max), "Opt range": opt, "Feeds": feeds or "display only",
                     "Description": p.description})
    return pd.DataFrame(rows, columns=["Param", "Kind", "Default", "Min", "Max", "Opt range", "Feeds",
                                       "Description"])


def constraint_lines(spec: StrategySpec) -> list[str]:
    """The rules between params (``fast_period < slow_period``)."""
    return [c.description for c in spec.constraints]


def source_text(spec: StrategySpec) -> str:
    """The code of a strategy: a strategies-folder file's text as loaded, a built-in's module
    source (:func:`threadx.strategy.scaffold.strategy_source`), else its module's source."""
    origin = spec.origin
    if origin is not None and origin.text is not None:
        return origin.text
    if spec.name in builtin_names():
        from threadx.strategy.scaffold import strategy_source

        return strategy_source(spec.name)
    try:
        return inspect.getsource(sys.modules[spec.signals.__module__])
    except (KeyError, OSError, TypeError):
        return f"# the source of {spec.name} (module {spec.signals.__module__}) is not available"


@dataclass(frozen=True)
class LoadError:
    """A strategies-folder file that failed to load: its ``file`` name, path, the ``file:line``
    the error names, and the message with the folder left out of the paths."""

    file: str
    path: Path
    where: str
    message: str
    text: str  # the message after its ``file:line``


def load_errors(folder: Path | None = None) -> list[LoadError]:
    """The files of the strategies folder that cannot be loaded, by file name."""
    from threadx.strategy import user

    folder = (folder or user.strategy_dir()).expanduser().resolve()
    found = []
    for file, message in sorted(user.load_errors().items()):
        short = message.replace(f"{folder}{os.sep}", "")
        head, _, rest = short.partition(": ")
        where, text = (head, rest) if head.startswith(file) and rest else (file, short)
        found.append(LoadError(file, folder / file, where, short, text))
    return found


def reserved_for_tests(name: str) -> bool:
    """Whether a strategy name is kept for the test suite's strategies (the pages do not offer them)."""
    return name.startswith(TEST_ONLY_PREFIX)


def create_strategy(name: str, start_from: str | None) -> Path:
    """Write the strategies folder's ``<name>.py`` from the template (``start_from`` None or
    :data:`TEMPLATE_CHOICE`) or from a built-in; ParamError on a bad or taken name, or on a
    name kept for the tests (:func:`reserved_for_tests`), which no picker would offer."""
    from threadx.strategy.scaffold import new_strategy_file

    if reserved_for_tests(name.strip()):
        raise ParamError(f"names starting with {TEST_ONLY_PREFIX!r} are kept for the test suite's strategies, "
                         "which the pages do not list, so this one could never be picked; pick another name")
    builtin = None if start_from in (None, "", TEMPLATE_CHOICE) else start_from
    return new_strategy_file(name.strip(), from_builtin=builtin)


def save_source(path: str | Path, text: str) -> Path:
    """Write ``text`` to a strategy file atomically (a reader never sees half a file), keeping
    the file's permissions; the next lookup of the strategies re-reads it."""
    from threadx.files import atomic_write_bytes

    path = Path(path)
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        mode = 0o644
    if not text.endswith("\n"):
        text += "\n"
    atomic_write_bytes(path, text.encode("utf-8"))
    os.chmod(path, mode)
    return path


@dataclass(frozen=True)
class Draft:
    """An edit of a strategy file not saved yet, as kept on disk: its ``text``, the :func:`text_hash
    <threadx.strategy.user.text_hash>` of the file's text it was typed over (``base``) and when it
    was written (``saved_at``, ISO 8601 UTC)."""

    text: str
    base: str
    saved_at: str


def draft_path(folder: Path, file: str) -> Path:
    """Where the draft of the strategies folder's file ``file`` is kept; ParamError on a file name
    that is no plain name (:func:`threadx.names.check_name`)."""
    return Path(folder) / DRAFTS_FOLDER / f"{check_name(file, 'strategy file name')}.json"


def read_draft(folder: Path, file: str) -> Draft | None:
    """The draft kept for ``file``; None when there is none, or it cannot be read as one."""
    try:
        data = json.loads(draft_path(folder, file).read_text(encoding="utf-8"))
        draft = Draft(data["text"], data["base"], data["saved_at"])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        return None
    return draft if all(isinstance(v, str) for v in (draft.text, draft.base, draft.saved_at)) else None


def write_draft(folder: Path, file: str, text: str, base: str) -> Draft:
    """Keep ``text`` as the draft of ``file`` typed over the file text of hash ``base``, written
    whole or not at all. ParamError on a bad file name, or a text over :data:`MAX_DRAFT_BYTES`
    (an earlier draft of the file is dropped: never restored as if it were the last);
    ThreadXError when it cannot be written."""
    from datetime import datetime, timezone

    from threadx.files import remove_dead_temps, save_atomically

    path = draft_path(folder, file)
    if len(text.encode("utf-8")) > MAX_DRAFT_BYTES:
        drop_draft(folder, file)
        raise ParamError(f"the text is over {MAX_DRAFT_BYTES // 2**20} MiB, the most a draft keeps")
    if not path.parent.is_dir():
        try:
            path.parent.mkdir(exist_ok=True)
            (path.parent / ".gitignore").write_text("*\n")  # a strategies folder kept in git: drafts stay out of it
        except OSError as exc:
            raise ThreadXError(f"cannot create {path.parent}: {os_reason(exc)}") from exc
    draft = Draft(text, base, datetime.now(timezone.utc).isoformat(timespec="seconds"))
    remove_dead_temps(path)
    save_atomically(path, json.dumps({"file": file, **vars(draft)}).encode("utf-8"), f"the draft of {file}")
    return draft


def drop_draft(folder: Path, file: str, only: tuple[str, str] | None = None) -> None:
    """Remove the draft kept for ``file`` (none: nothing to do); with ``only`` (text, base), only
    when it is that one: a draft another tab wrote since is that tab's to drop."""
    if only is not None:
        found = read_draft(folder, file)
        if found is not None and (found.text, found.base) != tuple(only):
            return
    try:
        draft_path(folder, file).unlink(missing_ok=True)
    except (OSError, ParamError):
        pass


def throttled(progress: Callable[[str, float], None], every_s: float = 0.1) -> Callable[[str, float], None]:
    """``progress`` called at most every ``every_s`` seconds within one check (the text before the
    first ":"), always when a new check starts and at the end: a check reporting thousands of steps
    does not flood the browser, and a check's first step is never dropped (the determinism check's
    was, and "signals: defaults" stood for its 6 seconds in other processes).

    >>> seen = []
    >>> report = throttled(lambda stage, f: seen.append(stage), every_s=60)
    >>> for stage in ("lookahead: cut 1", "lookahead: cut 2", "determinism: other processes"):
    ...     report(stage, 0.5)
    >>> seen
    ['lookahead: cut 1', 'determinism: other processes']
    """
    last = [0.0, None]

    def report(stage: str, fraction: float) -> None:
        now, check = time.perf_counter(), stage.split(":", 1)[0]
        if fraction >= 1.0 or now - last[0] >= every_s or check != last[1]:
            last[0], last[1] = now, check
            progress(stage, min(max(float(fraction), 0.0), 1.0))

    return report


def run_check(spec: StrategySpec, df: pd.DataFrame, dataset: str | None = None,
              progress: Callable[[str, float], None] | None = None, root: Path | None = None) -> list[str]:
    """``check_strategy`` on ``df`` (every check, the CLI's defaults), the report stored as the
    strategy's last (:func:`threadx.checks.store.save_report`) unless that would clear a stored
    failure this run could not look at again; returns those failures ([] when stored)."""
    from threadx.checks.store import hidden_failures, save_report
    from threadx.checks.strategy import check_strategy
    from threadx.data.bars import as_bars

    report = check_strategy(spec, as_bars(df), progress=progress, dataset=dataset)
    return [] if save_report(spec, report, root) is not None else hidden_failures(spec, report, root)


def report_results(report: Mapping[str, Any]) -> list[dict]:
    """A stored report's checks: {name, status (PASS, FAIL, NOT CHECKED or INFO: CheckResult.status),
    summary, details, seconds}."""
    from threadx.checks.strategy import CheckResult

    rows = []
    for r in report.get("results") or []:
        status = CheckResult(name="", passed=bool(r.get("passed")), summary="",
                             informational=bool(r.get("informational")),
                             conclusive=bool(r.get("conclusive", True))).status
        data = r.get("data") if isinstance(r.get("data"), Mapping) else {}
        rows.append({"name": str(r.get("name", "?")), "status": status, "summary": str(r.get("summary", "")),
                     "details": [str(d) for d in r.get("details", []) or []],
                     "seconds": float(r.get("seconds") or 0.0), "error": data.get("error") and str(data["error"]),
                     "location": data.get("location") and str(data["location"])})
    return rows


def stopped_by_error(rows: list[dict]) -> str | None:
    """When every failed check failed on the same error the strategy (or the run) raised: that
    error and where, in one line (the checks did not find look-ahead or the like: they could not
    run); None otherwise."""
    failed = [r for r in rows if r["status"] == "FAIL"]
    errors = {(r.get("error"), r.get("location")) for r in failed}
    if not failed or len(errors) != 1:
        return None
    error, location = errors.pop()
    if not error:
        return None
    return f"{error}" + (f" at {location}" if location else "")


def report_heading(report: Mapping[str, Any]) -> str:
    """What the report was made on: dataset, bars, when, how long."""
    parts = []
    if report.get("dataset"):
        parts.append(str(report["dataset"]))
    if report.get("bars"):
        parts.append(f"{int(report['bars']):,} bars" + (f" ({report['timeframe']})" if report.get("timeframe") else ""))
    if report.get("created_at"):
        parts.append(f"checked {str(report['created_at']).replace('T', ' ')[:19]} UTC")
    if report.get("seconds"):
        parts.append(f"in {float(report['seconds']):.1f} s")
    return " · ".join(parts)
