"""Strategies page: the built-in and your own strategies (the strategies folder), their params
and code, files that fail to load, a new strategy from the template, the editor (loopback
only), the checks and Open in Backtest. The logic lives in threadx.ui.strategies.

Session keys of this page: ``strat_pick`` (the selected strategy), ``strat_want`` (a file
name whose first strategy is selected once it loads: after New or Save), ``strat_flash``
(a message shown once), ``strat_new_*`` (the New strategy form), ``strat_src:FILE``
(the editor of FILE), ``strat_base`` (FILE -> hash of the text the editor was loaded with),
``strat_fresh:FILE`` (reload the editor from the file, its draft dropped), ``strat_conflict_seen``,
``strat_drafts`` (FILE -> an edit not saved and its base), ``strat_kept`` (FILE -> that edit as last
kept on disk, .drafts/ of the strategies folder), ``strat_offers`` (FILE -> a disk draft of a file
changed since, offered), ``strat_restore:FILE`` (put that draft in the box), ``strat_restored``
(FILE -> the disk draft a new session put in the box).
"""
from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import streamlit as st

import threadx
from threadx.errors import ThreadXError
from threadx.strategy import user
from threadx.strategy.base import builtin_names
from threadx.ui import strategies as logic
from threadx.ui import user_code
from threadx.ui.serving import local_only
from threadx.ui.state import active_dataset, active_strategy, label_dataset, load_dataset, plain, strategy_names

st.title("Strategies")
# the source editor in a monospace font, as code is read (the box's class: st-key-strat_src-FILE)
st.html("<style>[class*='st-key-strat_src'] textarea {font-family: 'Source Code Pro', monospace; "
        "font-size: 0.82rem; line-height: 1.45; white-space: pre; overflow-x: auto;}</style>")

folder = user.strategy_dir().expanduser().resolve()
editable, address = local_only()
specs = threadx.strategies()  # (a changed file loads under a spinner: threadx.ui.user_code.loading_spinner)
names = [n for n in strategy_names() if n in specs]
errors = logic.load_errors(folder)
errored_files = {e.file for e in errors}
mine = [n for n in names if specs[n].origin is not None and specs[n].origin.kind == "user"]
loaded_files = {Path(specs[n].origin.path).name for n in mine if specs[n].origin.path}

st.caption(f"Strategies folder: `{folder}` · every `StrategySpec` of a `.py` file there is a strategy, "
           "re-read when the file changes (no restart).")
unoffered = [n for n in specs if n not in names and specs[n].origin is not None and specs[n].origin.kind == "user"]
if unoffered:  # a file of the folder naming its strategy test_*: loaded, but no picker offers it
    st.warning(f"Not offered by the pages: {', '.join(f'`{n}`' for n in unoffered)}; names starting with "
               f"`{logic.TEST_ONLY_PREFIX}` are kept for the test suite's strategies. Rename it in its file.")


def file_text(path: Path) -> str:
    try:
        return user.read_source(path)  # (as Python reads it: a byte-order mark or a coding line)
    except (OSError, UnicodeDecodeError, SyntaxError) as exc:
        return f"# cannot read {path}: {exc}\n"


def draft_time(draft: logic.Draft) -> str:
    """When ``draft`` was written, in the server's local time (the user's: a loopback server)."""
    try:
        return datetime.fromisoformat(draft.saved_at).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return draft.saved_at


KEPT = "Kept on disk meanwhile: a refresh or a server restart restores it."


def keep_draft(name: str, text: str, base: str, waiting: bool) -> str:
    """Keep the edit ``text`` of ``name`` on disk as its draft (not while an earlier draft of it
    waits for Restore or Discard: ``waiting``); what the editor says of it."""
    if waiting:
        return "Not kept on disk while the earlier draft above waits: restore or discard it."
    try:
        logic.write_draft(folder, name, text, base)
    except ThreadXError as exc:
        return f"Not kept on disk ({plain(str(exc), 300)}): a refresh or a server restart loses it."
    return KEPT


def editor(path: Path, text: str) -> None:
    """The source of ``path`` (its text on disk now: ``text``) in a box with Save (loopback
    servers only): written atomically, then the page re-reads it. The box keeps what was typed
    across reruns; it follows the file when the file changes on disk and the box holds no edit
    of its own, else it says so, and the first Save after that change does not overwrite it.
    An edit not saved is also kept on disk (:func:`threadx.ui.strategies.write_draft`) and
    restored in a new session (a refresh, a server restart); when the file changed since, it
    is offered instead."""
    key, name = f"strat_src:{path.name}", path.name
    bases = st.session_state.setdefault("strat_base", {})  # file -> hash of the text the box was loaded with
    # file -> (text typed and not saved, its base): Streamlit drops a box's state on a run that does
    # not draw it (another strategy picked, another page), and the edit was lost without a word
    drafts = st.session_state.setdefault("strat_drafts", {})
    kept = st.session_state.setdefault("strat_kept", {})  # file -> (the draft last kept on disk, what was said of it)
    offers = st.session_state.setdefault("strat_offers", {})  # file -> its disk draft, of a file changed since
    restored = st.session_state.setdefault("strat_restored", {})  # file -> its disk draft put in the box
    disk = user.text_hash(text)
    conflict = False
    if st.session_state.pop(f"strat_fresh:{name}", False):
        drafts.pop(name, None)
        mine = kept.pop(name, None)
        restored.pop(name, None)
        if name not in offers and mine is not None:  # (a draft waiting for Restore is not this box's edit)
            logic.drop_draft(folder, name, only=mine[0])  # (not one another tab wrote since)
        st.session_state[key], bases[name] = text, disk
    elif st.session_state.pop(f"strat_restore:{name}", False) and name in offers:
        found = offers.pop(name)  # (then the box's edit of a file changed since: the warning below)
        drafts[name] = (found.text, found.base)
        kept[name] = (drafts[name], KEPT)  # (on disk already)
        st.session_state[key], bases[name] = drafts[name]
    elif key not in st.session_state:
        if name not in drafts and name not in offers:  # a new session: the draft an earlier one kept
            found = logic.read_draft(folder, name)
            if found is not None and found.base == disk:
                restored[name], drafts[name] = found, (found.text, found.base)
                kept[name] = (drafts[name], KEPT)
            elif found is not None:
                offers[name] = found
        st.session_state[key], bases[name] = drafts.get(name) or (text, disk)
    if name in offers:
        st.warning(f"Your unsaved edits of {name} from {draft_time(offers[name])} are kept, but {name} changed on "
                   "disk since. **Restore draft** puts them in the box in place of its text (**Save** then "
                   "overwrites that change); **Discard draft** drops them.")
        c = st.columns([1, 1, 4])
        if c[0].button("Restore draft", key=f"strat_draft_restore:{name}", width="stretch"):
            st.session_state[f"strat_restore:{name}"] = True
            st.rerun()
        if c[1].button("Discard draft", key=f"strat_draft_discard:{name}", width="stretch"):
            found = offers.pop(name)
            kept.pop(name, None)  # the box's own edit, if any, is kept on disk in its place
            logic.drop_draft(folder, name, only=(found.text, found.base))
            st.rerun()
    if bases.get(name) != disk:
        if user.text_hash(st.session_state[key] or "") == bases.get(name):  # no edit here: follow the file
            st.session_state[key], bases[name] = text, disk
        else:
            conflict = True
            st.warning(f"{name} changed on disk since this editor loaded it. **Save** overwrites that change "
                       "with the text below; **Reload from disk** shows the file as it is now (the edits "
                       "here are dropped).")
            if st.button("Reload from disk", key=f"strat_reload:{name}"):
                st.session_state[f"strat_fresh:{name}"] = True
                st.rerun()
    if name in restored and user.text_hash(st.session_state[key] or "") != bases[name]:
        st.info(f"Restored your unsaved edits from {draft_time(restored[name])}: **Save** writes them, "
                "**Discard** drops them.")
    # no form: the box's text reaches the server when it loses focus, so an edit not saved yet is
    # known (kept, and never replaced by the file's new text) on every rerun
    new = st.text_area(name, height=560, key=key,
                       help="Save writes the file; the next backtest, sweep or check runs the new code.")
    edited = user.text_hash(new or "") != bases[name]
    if edited:
        drafts[name] = (new or "", bases[name])
        if kept.get(name, (None,))[0] != drafts[name]:  # (written once per change, not on every rerun)
            kept[name] = (drafts[name], keep_draft(name, *drafts[name], waiting=name in offers))
        st.caption(f"Not saved yet: the text above differs from {name} as loaded (kept while you visit other "
                   f"strategies or pages); **Save** writes it. {kept[name][1]}")
    else:
        mine = kept.pop(name, None)
        if drafts.pop(name, None) is not None and name not in offers and mine is not None:  # typed back
            logic.drop_draft(folder, name, only=mine[0])  # to the file's text (a draft of another tab stays)
        restored.pop(name, None)
    if edited:
        c = st.columns([1, 1, 4])
        saved = c[0].button("Save", type="primary", key=f"strat_save:{name}", width="stretch")
        if c[1].button("Discard", key=f"strat_discard:{name}", width="stretch",
                       help=f"Drop the edits above (and the copy kept on disk): the box shows {name} again"):
            st.session_state[f"strat_fresh:{name}"] = True
            st.rerun()
    else:
        saved = st.button("Save", type="primary", key=f"strat_save:{name}")
    if flash == ("saved", name) and name not in errored_files:  # under the button pressed, in view
        st.success(f"Saved {name}: reloaded, the next backtest, sweep or check runs this code.")
    if not saved:
        return
    seen = st.session_state.setdefault("strat_conflict_seen", {})
    if conflict and seen.get(name) != disk:  # the change on disk was not shown before this Save
        seen[name] = disk
        st.error(f"Not saved: {name} changed on disk meanwhile (see above). Save again to overwrite it.")
        return
    try:
        logic.save_source(path, new or "")
    except OSError as exc:
        st.error(f"Cannot save {path}: {exc}")
        return
    seen.pop(name, None)
    st.session_state[f"strat_fresh:{name}"] = True  # the box reloads the file as written (its draft dropped)
    st.session_state["strat_want"] = name
    st.session_state["strat_flash"] = ("saved", name)
    st.rerun()


def excerpt(path: Path, where: str, around: int = 3) -> str | None:
    """The lines of ``path`` around the line ``where`` (``file:line``) names, that one marked."""
    try:
        line = int(where.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return None
    lines = file_text(path).splitlines()
    if not 1 <= line <= len(lines):
        return None
    lo, hi = max(1, line - around), min(len(lines), line + around)
    return "\n".join(f"{'>' if n == line else ' '} {n:4d} | {lines[n - 1]}" for n in range(lo, hi + 1))


flash = st.session_state.pop("strat_flash", None)  # a Save's result is said where Save was pressed
# a file just saved that does not load: its error and editor after the picker, where its view and Save were, not at
# the top (the picker fell back to bb_atr where the user had pressed Save, the error and the fix out of view)
saved_broken = flash[1] if flash and flash[0] == "saved" and flash[1] in errored_files else None


def load_error(err) -> None:
    """A file that does not load: its error, the lines around it and (locally) an editor to fix it."""
    st.error(f"**{plain(err.file)}** does not load, its strategies are left out until it is fixed:  \n"
             f"`{err.where}` {plain(err.text, 600)}")
    lines = excerpt(err.path, err.where)
    if lines:
        st.code(lines, language=None)
    if editable and err.path.exists() and err.file not in loaded_files:  # else edited with its strategy below
        drafted = err.file in st.session_state.get("strat_drafts", {}) or logic.read_draft(folder, err.file) is not None
        with st.expander(f"Fix {err.file} here", expanded=drafted or st.session_state.get("strat_want") == err.file):
            editor(err.path, file_text(err.path))


for err in errors:  # prominent, and the rest of the page works
    if err.file != saved_broken:
        load_error(err)

if not mine and not errors:
    where = "is empty" if folder.is_dir() else "does not exist yet"
    st.info(f"No strategy of your own yet (the strategies folder {where}). Create one with **New strategy** "
            "below, or on the command line: `threadx strategy new NAME` (`--from BUILTIN` to copy a built-in).")

table = logic.strategy_table({n: specs[n] for n in names})
COLOURS = {logic.PASS: "color: #1a7f37; font-weight: 600", logic.FAIL: "color: #cf222e; font-weight: 600",
           logic.NOT_CHECKED: "color: #9a6700; font-weight: 600", logic.STALE: "color: #9a6700"}
st.dataframe(table.style.map(lambda v: COLOURS.get(v, ""), subset=["Last check"]), hide_index=True,
             width="stretch", height=38 + 35 * min(len(table), 12),  # scrolls past 12 strategies
             column_config={"Params": st.column_config.NumberColumn("Params", width="small"),
                            "Last check": st.column_config.TextColumn(
                                "Last check", help="PASS / FAIL of the last `threadx strategy check` (or the Check "
                                "button); NOT CHECKED: the data was too short to show a look-ahead; stale: made on "
                                "other code than the file's current one")})

# the selection: a strategy just created or saved (once it loads), else the last pick or the session's
want = st.session_state.get("strat_want")
if want:
    in_file = [n for n in names
               if specs[n].origin is not None and specs[n].origin.path and Path(specs[n].origin.path).name == want]
    if in_file:  # the strategy named as its file first (a copy of grid_atr holds three)
        st.session_state["strat_pick"] = next((n for n in in_file if n == Path(want).stem), in_file[0])
        st.session_state.pop("strat_want")
if st.session_state.get("strat_pick") not in names:  # the session's strategy, as on the other pages (a link's)
    st.session_state["strat_pick"] = active_strategy(names)
if flash and flash[0] != "saved":  # (a Save's result is said where Save was pressed: below)
    st.success(flash[1])
row = st.columns([4, 1.7, 1], vertical_alignment="bottom")  # ("Open in Backtest" was cut at 1024 px)
choice = row[0].selectbox("Strategy", names, key="strat_pick",
                          on_change=lambda: st.session_state.pop("strat_want", None))
open_clicked = row[1].button("Open in Backtest", key="strat_open", width="stretch",
                             help="The Backtest page with this strategy at its defaults, on the active dataset")
check_clicked = row[2].button("Check", key="strat_check", type="primary", width="stretch",
                              help="Look-ahead, determinism, accounting, param roles and speed on the active "
                                   "dataset (as `threadx strategy check`)")
if open_clicked:
    st.session_state["strategy"] = st.session_state["bt_strategy"] = choice
    st.switch_page("views/2_Backtest.py")
if saved_broken:  # in place of the strategy's view, where its Save was pressed (the picker fell back to bb_atr)
    st.warning(f"Saved {saved_broken}, but it does not load now: its strategies are left out until it is fixed.")
    load_error(next(err for err in errors if err.file == saved_broken))

with st.expander("New strategy", expanded=not mine and not errors):
    if st.session_state.pop("strat_new_clear", False):
        st.session_state["strat_new_name"] = ""
    with st.form("strat_new", border=False):
        c = st.columns([2, 2, 1], vertical_alignment="bottom")
        new_name = c[0].text_input("Name", key="strat_new_name", placeholder="rsi_reversion",
                                   help="lower-case letters, digits and _, starting with a letter; also the file "
                                        "name (NAME.py in the strategies folder)")
        start_from = c[1].selectbox("Start from", [logic.TEMPLATE_CHOICE, *builtin_names()], key="strat_new_from",
                                    help="the commented template, or a copy of a built-in renamed")
        create = c[2].form_submit_button("Create", type="primary", key="strat_new_create", width="stretch")
    if create:
        try:
            path = logic.create_strategy(new_name or "", start_from)
        except (ThreadXError, OSError) as exc:
            st.error(f"Cannot create strategy {plain(new_name or '', 80)!s}: {plain(str(exc), 400)}")
        else:
            st.session_state["strat_want"] = path.name
            st.session_state[f"strat_fresh:{path.name}"] = True  # (an unsaved draft of a file once of that name: gone)
            st.session_state.get("strat_offers", {}).pop(path.name, None)  # (its disk draft too, even one offered)
            logic.drop_draft(folder, path.name)
            st.session_state["strat_new_clear"] = True
            st.session_state["strat_flash"] = ("new", f"Wrote `{path}`: edit it below, press Check, or open it in "
                                                      "Backtest.")
            st.rerun()

spec = specs[choice]
origin = spec.origin
is_mine = user_code.runs_apart(spec)
if is_mine:
    user_code.keep_one()  # the process its check (or backtest) runs in, started ahead
st.subheader(choice)
# (a built-in's hash covers the whole strategy package, shared helpers included: the same for every built-in)
scope = "" if is_mine or spec.name not in builtin_names() else " of the built-in strategies' package"
st.caption(f"{'File ' + str(origin.where) if is_mine else logic.source_label(spec).capitalize()} · code hash{scope} "
           f"`{spec.code_hash}`")
if spec.description:
    st.markdown(spec.description)
st.dataframe(logic.params_table(spec), hide_index=True, width="stretch", height=38 + 35 * max(1, len(spec.params)))
rules = logic.constraint_lines(spec)
st.markdown("**Constraints:** " + (", ".join(f"`{r}`" for r in rules) if rules else "none"))

st.markdown("#### Check")
dataset = active_dataset()
if check_clicked:
    started = time.perf_counter()
    bar = st.progress(0.0, text=f"Checking {choice} on {dataset}: loading the data...")
    try:
        df = load_dataset(dataset)
        bar.progress(0.01, text=f"Checking {choice} on {dataset}: starting...")
        if user_code.runs_apart(spec):  # its code in a process of its own: a crash or a hang is not the page's
            stop = st.empty()
            stop.button("Stop", key="strat_stop", help="End this check's process (a click reruns the page, which "
                                                       "stops it)")
            try:
                kept = user_code.check(spec, df, dataset, lambda seconds, stage, f: bar.progress(
                    min(max(f or 0.01, 0.01), 1.0), text=f"{choice}: {stage or 'starting'} ({seconds:.0f} s, in a "
                    "process of its own)"))
            finally:
                stop.empty()
        else:
            kept = logic.run_check(spec, df, dataset,
                                   logic.throttled(lambda stage, f: bar.progress(f, text=f"{choice}: {stage}")))
    except (ThreadXError, ValueError) as exc:
        bar.empty()
        st.error(f"Cannot check {choice}: {plain(str(exc), 600)}")
        if getattr(exc, "output", None):  # what the process its code crashed wrote last
            st.code(exc.output, language=None)
    else:  # once more, so the table above shows the new status too
        st.session_state["strat_checked"] = (choice, time.perf_counter() - started, kept)
        st.rerun()
if st.session_state.get("strat_stop"):  # pressed while a check's process ran: the click's rerun ended it
    st.info("Check stopped: its process was ended; nothing was stored.")
checked = st.session_state.pop("strat_checked", None)
if checked and checked[0] == choice:
    if checked[2]:
        st.warning(f"Checked {choice} on {label_dataset(dataset)} in {checked[1]:.1f} s, not stored: its last check "
                   f"failed {', '.join(checked[2])}, which this run could not check again on the data that showed it "
                   "(too few bars, no signal or trade on them, or other bars). The failed check is shown below; check "
                   "on the dataset it was found on.")
    else:
        st.caption(f"Checked {choice} on {label_dataset(dataset)} in {checked[1]:.1f} s (stored as its last check).")
status, report = logic.check_status(spec)
if report is None:
    st.caption(f"Never checked. **Check** runs look-ahead, determinism, accounting, param-role and speed checks "
               f"on the active dataset, {label_dataset(dataset)} (CLI: `threadx strategy check {choice}`).")
else:
    heading = logic.report_heading(report)
    if status == logic.STALE:
        st.warning(f"Last check ({logic.report_verdict(report)}, {heading}) was made on other code: its file, or a "
                   "module of the folder it imports, changed since. Press **Check** to check this code.")
    elif status == logic.PASS:
        st.success(f"Last check: PASS · {heading}")
    elif status == logic.NOT_CHECKED:
        unchecked = [r["name"] for r in logic.report_results(report) if r["status"] == logic.NOT_CHECKED]
        st.warning(f"Last check: NOT CHECKED ({', '.join(unchecked)}: the data was too short to show it) · "
                   f"{heading}. Check it on a longer dataset.")
    else:
        rows = logic.report_results(report)
        failed = [r["name"] for r in rows if r["status"] == logic.FAIL]
        raised = logic.stopped_by_error(rows)
        if raised:
            st.error(f"Last check: FAIL · the strategy raised {plain(raised, 600)}, so {', '.join(failed)} could not "
                     f"run (no look-ahead or other finding: fix the error and check again) · {heading}")
        else:
            st.error(f"Last check: FAIL ({', '.join(failed)}) · {heading}")
    sets = report.get("param_sets") or []
    if sets:
        with st.expander(f"Param sets checked ({len(sets)})"):
            st.code("\n".join(f"{p.get('name')}: " + ", ".join(f"{k}={v}" for k, v in (p.get("params") or {}).items())
                              for p in sets), language=None, wrap_lines=True)
    badge = {"PASS": ":green-badge[PASS]", "FAIL": ":red-badge[FAIL]", "INFO": ":blue-badge[INFO]"}
    for r in logic.report_results(report):
        st.markdown(f"{badge[r['status']]} **{r['name']}** · {plain(r['summary'], 600)} "
                    f":gray[({r['seconds']:.2f} s)]")
        if r["details"]:
            st.code("\n".join(r["details"]), language=None, wrap_lines=True)

st.markdown("#### Source")
if is_mine and origin.path:
    path = Path(origin.path)
    if editable:
        editor(path, file_text(path))
    else:
        served = f"a network address (`{address}`)" if address else ("every interface (no server.address: "
                                                                       "start it with `make app` or `threadx app`)")
        st.caption(f"Editing in the browser is off: this app is served on {served}, where anyone reaching it "
                   f"could run code. Edit `{path}` on the server; the page re-reads it.")
        st.code(origin.text or file_text(path), language="python", line_numbers=True)
else:
    st.caption("A built-in strategy: read-only here. To change it, create a **New strategy** starting from it.")
    st.code(logic.source_text(spec), language="python", line_numbers=True)
