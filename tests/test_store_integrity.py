"""A damaged run is refused, reported or repaired, never served as if whole (store integrity)."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from threadx.cli import main
from threadx.data.synthetic import generate_synthetic
from threadx.errors import ThreadXError
from threadx.indicators import IndicatorBank
from threadx.optimize.runner import sweep
from threadx.optimize.store import ResultStore, RunDamaged, lock_held

sys.path.insert(0, str(Path(__file__).parent))

SPACE = {"fast_period": "5:20:5", "slow_period": [30, 40]}  # 8 combos


@pytest.fixture(scope="module")
def df():
    return generate_synthetic("BTC_USDT", days=60, seed=5)


@pytest.fixture
def runs(tmp_path, df):
    """A results folder with two finished runs: ``a`` (4 parts, 8 combos) and ``b``."""
    bank = IndicatorBank(cache_dir=tmp_path / "cache")
    root = tmp_path / "runs"
    sweep(df, "ma_crossover", SPACE, store=root, run_id="a", executor="inline", workers=1, chunk_size=2,
          flush_seconds=0.0, bank=bank)
    sweep(df, "ma_crossover", {"fast_period": [5]}, store=root, run_id="b", executor="inline", bank=bank)
    return root


def resume(root, df, space=SPACE, **kw):
    return sweep(df, "ma_crossover", space, store=root, run_id="a", executor="inline", workers=1,
                 bank=IndicatorBank(cache_dir=root.parent / "cache"), **kw)


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(code, err, match):
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], err


def listed(root) -> dict[str, str]:
    return dict(ResultStore(root).list_runs()[["run_id", "status"]].itertuples(index=False))


def test_parts_without_a_manifest_are_refused_then_repaired_from_the_plan(runs, df, capsys):
    (runs / "a" / "manifest.json").unlink()
    other = generate_synthetic("ETH_USDT", days=60, seed=9)
    with pytest.raises(RunDamaged, match="run a has parts but no manifest: `threadx runs repair a`"):
        resume(runs, other, {"fast_period": [7, 9]})
    assert not lock_held(runs / "a")
    assert listed(runs) == {"a": "damaged: has parts but no manifest", "b": "completed"}
    code, out, _ = cli(capsys, "runs", "repair", "a", "--store", str(runs))
    assert code == 0 and "manifest rebuilt from plan.json" in out
    with pytest.raises(ThreadXError, match="different fingerprint"):  # the plan is known again
        resume(runs, other, {"fast_period": [7, 9]})
    run = resume(runs, df)
    assert run.manifest["status"] == "completed" and len(run.results) == 8


def test_a_manifest_without_plan_keys_is_refused(runs, df):
    path = runs / "a" / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["fingerprint"]
    path.write_text(json.dumps(manifest))
    with pytest.raises(RunDamaged, match="has a manifest without 'fingerprint'"):
        resume(runs, generate_synthetic("ETH_USDT", days=60, seed=9))
    assert ResultStore(runs).repair("a")["manifest"] == "plan keys fingerprint restored from plan.json"


def rewrite_part(root, change):
    part = sorted((root / "a").glob("part-*.parquet"))[0]
    frame = pd.read_parquet(part)
    change(frame).to_parquet(part, index=False)


def test_stored_rows_that_do_not_fit_the_plan_are_refused(runs, df):
    rewrite_part(runs, lambda f: f.rename(columns={"fast_period": "fast"}))
    with pytest.raises(ThreadXError, match="stores params .*'fast'.* but this sweep's space has"):
        resume(runs, df)
    rewrite_part(runs, lambda f: f.rename(columns={"fast": "fast_period"}).assign(combo_id=f.combo_id + 10**9))
    before = (runs / "a" / "manifest.json").read_bytes()
    with pytest.raises(ThreadXError, match="combo ids outside this sweep's plan"):
        resume(runs, df, objective="n_trades", min_trades=3)
    assert (runs / "a" / "manifest.json").read_bytes() == before  # a refused resume writes nothing
    assert not lock_held(runs / "a")


def test_lost_rows_are_counted_from_the_parts_and_run_again(runs, df, capsys):
    sorted((runs / "a").glob("part-*.parquet"))[-1].unlink()  # 2 of 8 rows lost
    code, out, _ = cli(capsys, "runs", "show", "a", "--store", str(runs))
    # shown, and exit 2 as for an unreadable part (it was 0)
    assert code == 2 and "6/8 combos" in out and "damaged: parts hold 6 rows, the manifest counts 8 done" in out
    code, _, err = cli(capsys, "validate", "a", "--store", str(runs), "--bootstrap", "100")
    assert_one_error_line(code, err, "run a is damaged: parts hold 6 rows")
    run = resume(runs, df)  # a resume runs what the parts lack
    assert run.manifest["status"] == "completed" and len(run.results) == 8 and run.manifest["done"] == 8


@pytest.mark.parametrize("content", [b"", b'{"run_id": "a", "stat', b"\x00\xff\xfe binary",
                                     b"[" * 100_000 + b"]" * 100_000])  # (deep: a RecursionError traceback)
def test_an_unreadable_manifest_is_reported_by_every_reader(runs, df, capsys, content):
    (runs / "a" / "manifest.json").write_bytes(content)
    assert listed(runs)["b"] == "completed" and listed(runs)["a"].startswith("damaged: has an unreadable manifest.json")
    code, out, _ = cli(capsys, "runs", "list", "--store", str(runs))
    assert code == 0 and "damaged: has an unreadable manifest.json" in out
    for argv in (("runs", "show", "a"), ("validate", "a", "--bootstrap", "100")):
        code, _, err = cli(capsys, *argv, "--store", str(runs))
        assert_one_error_line(code, err, "unreadable manifest.json")
    with pytest.raises(RunDamaged, match="unreadable manifest.json"):
        resume(runs, df)
    assert not lock_held(runs / "a")
    (runs / "a" / "plan.json").unlink()
    code, _, err = cli(capsys, "runs", "repair", "a", "--store", str(runs))
    assert_one_error_line(code, err, "its plan is unknown (no readable plan.json), so it cannot be repaired: its parts are kept")
    assert len(list((runs / "a").glob("part-*.parquet"))) == 4  # user data kept


@pytest.mark.parametrize("name", ["manifest.json", "part-000001.parquet"])
def test_a_fifo_where_a_run_file_belongs_is_damage_not_a_hang(runs, capsys, name):
    """A FIFO named like a run's manifest or part held `runs list` (for every run) and `runs show`
    for ever: reading it waits for a writer."""
    import os
    import threading

    path = runs / "a" / name
    path.unlink()
    os.mkfifo(path)
    done: list = []
    worker = threading.Thread(target=lambda: done.append((listed(runs), cli(capsys, "runs", "show", "a", "--store",
                                                                             str(runs)))), daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert done, "reading the run waited on the FIFO"
    statuses, (code, _, err) = done[0]
    assert statuses["b"] == "completed" and statuses["a"].startswith("damaged: ")
    assert_one_error_line(code, err, "not a file")


@pytest.mark.parametrize("fix", ["repair", "resume"])
def test_a_bad_part_is_reported_then_quarantined_and_its_combos_run_again(runs, df, capsys, fix):
    part = sorted((runs / "a").glob("part-*.parquet"))[1]
    part.write_bytes(part.read_bytes()[:40])  # truncated
    assert listed(runs)["a"].startswith(f"damaged: has an unreadable part {part.name}") and listed(runs)["b"] == "completed"
    for argv in (("runs", "show", "a"), ("validate", "a", "--bootstrap", "100")):
        code, _, err = cli(capsys, *argv, "--store", str(runs))
        assert_one_error_line(code, err, f"unreadable part {part.name}")
    if fix == "repair":
        code, out, _ = cli(capsys, "runs", "repair", "a", "--store", str(runs))
        assert code == 0 and f"quarantined quarantine/{part.name}" in out and "status interrupted" in out
        assert listed(runs)["a"] == "interrupted"
    run = resume(runs, df)
    assert (runs / "a" / "quarantine" / part.name).exists() and not part.exists()
    assert run.manifest["status"] == "completed" and len(run.results) == 8
    assert run.manifest["quarantined"][0]["part"] == f"quarantine/{part.name}"


def test_a_part_damaged_inside_its_data_is_damage_not_results(runs, df, capsys):
    """Bytes flipped inside a part's sharpe column (its footer whole) were read as results:
    a Sharpe of -12.1 became -6.7e-308 with no word. Parts carry page checksums."""
    import pyarrow.parquet as pq

    part = sorted((runs / "a").glob("part-*.parquet"))[1]
    row_group = pq.ParquetFile(part).metadata.row_group(0)
    chunk = next(row_group.column(i) for i in range(row_group.num_columns)
                 if row_group.column(i).path_in_schema == "sharpe")
    data = bytearray(part.read_bytes())
    middle = chunk.data_page_offset + chunk.total_compressed_size - 4  # in the page's values
    data[middle] ^= 0x40
    part.write_bytes(bytes(data))
    with pytest.raises(RunDamaged, match=f"unreadable part {part.name}"):
        ResultStore(runs).load("a").results
    code, _, err = cli(capsys, "runs", "show", "a", "--store", str(runs))
    assert_one_error_line(code, err, f"unreadable part {part.name}")
    code, out, _ = cli(capsys, "runs", "repair", "a", "--store", str(runs))
    assert code == 0 and f"quarantined quarantine/{part.name}" in out
    run = resume(runs, df)
    assert run.manifest["status"] == "completed" and len(run.results) == 8


def test_a_copied_run_is_listed_and_shown_under_its_folder_name(runs, capsys):
    """A copy of run ``a`` listed and showed as ``a`` (its manifest's run id): two rows of the
    same name, one of which could be damaged."""
    shutil.copytree(runs / "a", runs / "copy")
    (runs / "copy" / ".writer.lock").unlink(missing_ok=True)
    assert set(listed(runs)) == {"a", "b", "copy"}
    assert ResultStore(runs).load("copy").run_id == "copy"
    code, out, _ = cli(capsys, "runs", "show", "copy", "--store", str(runs))
    assert code == 0 and out.startswith("run copy:")


def test_best_params_with_n_trades_as_the_objective(tmp_path, synthetic_bars):
    # the ranking reads n_trades for min_trades: the objective n_trades must not be read twice
    import threadx

    run = threadx.sweep(synthetic_bars, "ma_crossover", {"fast_period": [5, 10], "slow_period": [30, 40]},
                        objective="n_trades", min_trades=0, executor="inline", store=tmp_path, run_id="nt")
    best = run.top(1)
    assert list(best.columns).count("n_trades") == 1
    assert run.best_params() == {k: best.iloc[0][k] for k in run.param_names}


def test_a_run_of_other_engine_code_is_not_resumed_and_one_of_an_earlier_version_is(runs, df):
    """Rows computed by other engine, indicator or sweep code are never mixed with new ones
    (the run's ``rows_code``); a run stored before the key existed resumes as before."""
    path = runs / "a" / "manifest.json"
    manifest = json.loads(path.read_text())
    assert manifest["rows_code"] == json.loads((runs / "a" / "plan.json").read_text())["rows_code"]
    path.write_text(json.dumps({**manifest, "rows_code": "0123456789abcdef", "status": "interrupted"}))
    with pytest.raises(ThreadXError, match="run a was computed with another version of ThreadX's engine"):
        resume(runs, df)
    del manifest["rows_code"]
    path.write_text(json.dumps({**manifest, "status": "interrupted"}))
    assert resume(runs, df).manifest["status"] == "completed"


@pytest.mark.parametrize("change, why", [
    ({"done": "many"}, "whose 'done' is 'many', not a whole number"),
    ({"total": float("nan")}, "whose 'total' is nan, not a whole number"),
    ({"space": [1, 2]}, "whose 'space' is [1, 2], not an object"),
    ({"space": {"axes": "fast"}}, "whose 'space' has no list of axes (each a name and its values)"),
    ({"started_at": 17}, "whose 'started_at' is 17, not a text"),
    # listed as completed, then an AttributeError or TypeError traceback in runs show / validate
    ({"data": "x"}, "whose 'data' is 'x', not an object"),
    ({"space": None}, "whose 'space' is None, not an object"),
    ({"block_end": "x"}, "whose 'block_end' is 'x', not a list of whole numbers"),  # was: "PBO not available"
])
def test_a_manifest_of_the_wrong_shape_is_damage_for_every_reader(runs, df, capsys, change, why):
    """Valid JSON whose keys are missing or of another kind is reported as damage (no
    traceback), the other runs still list, and repair rebuilds the manifest from the plan."""
    path = runs / "a" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(change)
    path.write_text(json.dumps(manifest))
    assert listed(runs) == {"a": f"damaged: has a manifest {why}", "b": "completed"}
    code, _, err = cli(capsys, "runs", "show", "a", "--store", str(runs))
    assert_one_error_line(code, err, why)
    code, out, _ = cli(capsys, "runs", "repair", "a", "--store", str(runs))
    assert code == 0 and "rebuilt from plan.json" in out
    assert resume(runs, df).manifest["status"] == "completed"


def test_a_part_of_other_column_kinds_is_named_then_quarantined(runs, df, capsys):
    first = sorted((runs / "a").glob("part-*.parquet"))[0]
    frame = pd.read_parquet(first)
    frame["combo_id"] = frame["combo_id"].astype(str)
    extra = runs / "a" / "part-000099.parquet"
    frame.to_parquet(extra)
    why = f"has a part {extra.name} whose combo_id is"
    assert listed(runs)["a"].startswith(f"damaged: {why}")
    code, _, err = cli(capsys, "runs", "show", "a", "--store", str(runs))
    assert_one_error_line(code, err, why)
    code, out, _ = cli(capsys, "runs", "repair", "a", "--store", str(runs))
    assert code == 0 and f"quarantine/{extra.name}" in out
    assert len(resume(runs, df).results) == 8


def test_a_manifest_without_what_reading_a_run_needs_is_refused_to_readers(runs, capsys):
    path = runs / "a" / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["strategy"]
    path.write_text(json.dumps(manifest))
    assert listed(runs)["b"] == "completed"
    code, _, err = cli(capsys, "runs", "show", "a", "--store", str(runs))
    assert_one_error_line(code, err, "run a has a manifest whose 'strategy' is missing")


def test_a_resume_with_other_funding_rates_is_refused(tmp_path, df):
    """A funding Series was recorded as the text '<Series>', whatever its rates: a resume with
    other rates returned the stored rows (total return -42 % where the new rates give -90 %).
    So was a stored funding series edited in place (its file's fingerprint kept in attrs)."""
    from threadx.engine.inputs import funding_summary

    times = pd.date_range(df.index[0].floor("D"), df.index[-1], freq="8h")
    none, high = pd.Series(0.0, index=times), pd.Series(0.01, index=times)
    assert funding_summary(none) != funding_summary(high)
    space = {"fast_period": [5, 10], "slow_period": [30, 40]}
    kw = dict(executor="inline", workers=1, store=tmp_path, run_id="f", bank=IndicatorBank(disk=False))
    sweep(df, "ma_crossover", space, funding=none, **kw)
    with pytest.raises(ThreadXError, match=r"run f was computed with other engine options \(funding differ\)"):
        sweep(df, "ma_crossover", space, funding=high, **kw)
    from threadx.data.funding import funding_fingerprint

    stored = high.copy()
    stored.attrs.update(source="funding/BTC_USDT.parquet", fingerprint=funding_fingerprint(high))
    before = funding_summary(stored)
    stored.iloc[3] = 0.5  # edited in place: attrs kept, but its rows are no longer the file's
    assert "funding/BTC_USDT.parquet" in before and "funding/BTC_USDT.parquet" not in funding_summary(stored)
    assert funding_summary(stored) != before


def test_the_rows_code_covers_the_helpers_user_strategies_call():
    """A user strategy hashes its own file only: the authoring API's numba helpers it calls
    (cross_signals, the percent exits) were in no hash, so a run made before they changed
    resumed, its rows mixed with new ones."""
    from threadx.optimize import evaluate

    for name in ("strategy/__init__.py", "strategy/signal_kernels.py", "strategy/percent_exits.py"):
        assert name in evaluate._ROWS_FILES


def test_a_link_where_the_lock_file_belongs_is_named_and_moved_aside_by_repair(runs, df, capsys, tmp_path):
    """A symbolic link (to a file) in place of the lock: resume and repair both stopped at
    "[Errno 40] Too many levels of symbolic links", and repair could not mend it."""
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep me")
    (runs / "a" / ".writer.lock").unlink(missing_ok=True)
    (runs / "a" / ".writer.lock").symlink_to(target)
    with pytest.raises(RunDamaged, match="run a has a symbolic link where its lock file .writer.lock belongs"):
        resume(runs, df)
    code, out, err = cli(capsys, "runs", "repair", "a", "--store", str(runs))
    assert code == 0 and "a symbolic link where .writer.lock belongs" in out, (out, err)
    assert target.read_text() == "keep me"
    assert resume(runs, df).manifest["status"] == "completed"


@pytest.mark.parametrize("plan", ['{"space": 3}', "{}", '{"strategy": "ma_crossover"}'])
def test_repair_refuses_a_plan_that_is_no_plan(runs, df, capsys, plan):
    """`runs repair` rebuilt a manifest from plan.json {"space": 3}, said so and exited 0; every
    reader then refused the run and pointed back at repair, a loop."""
    (runs / "a" / "manifest.json").unlink()
    (runs / "a" / "plan.json").write_text(plan)
    code, _, err = cli(capsys, "runs", "repair", "a", "--store", str(runs))
    assert_one_error_line(code, err, "run a has parts but no manifest and its plan.json is no usable plan (its ")
    assert "start again with another run id" in err and not (runs / "a" / "manifest.json").exists()
    assert len(list((runs / "a").glob("part-*.parquet"))) == 4  # the parts are kept


@pytest.mark.parametrize("name", ["manifest.json", ".writer.lock"])
def test_a_folder_where_a_run_file_belongs_is_named_and_moved_aside_by_repair(runs, df, capsys, name):
    """A folder in place of manifest.json or of the lock file: repair failed with '[Errno 21] Is a
    directory', resume too, and `runs show` called the run completed."""
    (runs / "a" / name).unlink()
    (runs / "a" / name).mkdir()
    if name == ".writer.lock":
        with pytest.raises(RunDamaged, match="run a has a folder where its lock file .writer.lock belongs: "
                                             "`threadx runs repair a`"):
            resume(runs, df)
    else:
        code, _, err = cli(capsys, "runs", "show", "a", "--store", str(runs))
        assert_one_error_line(code, err, "threadx runs repair a")
    code, out, err = cli(capsys, "runs", "repair", "a", "--store", str(runs))
    assert code == 0 and f"quarantined quarantine/{name}: a folder where {name} belongs" in out, (out, err)
    assert (runs / "a" / "quarantine" / name).is_dir()
    run = resume(runs, df)
    assert run.manifest["status"] == "completed" and len(run.results) == 8


def test_a_folder_named_like_a_part_write_is_moved_aside_not_a_stop(runs, df, capsys):
    """A folder under a temporary part's name stopped every resume and repair with "[Errno 21]
    Is a directory", naming no run."""
    stray = runs / "a" / ".part-000005.parquet.abc.tmp"
    stray.mkdir()
    (stray / "note.txt").write_text("kept")
    assert resume(runs, df).manifest["status"].startswith("completed")
    assert not stray.exists() and (runs / "a" / "quarantine" / stray.name / "note.txt").read_text() == "kept"
    stray.mkdir()
    code, _, err = cli(capsys, "runs", "repair", "a", "--store", str(runs))
    assert code == 0 and "Traceback" not in err and not stray.exists()


def test_a_manifest_naming_other_params_than_its_rows_is_damage_that_repair_mends(runs, capsys):
    """validate read the winner's params by the manifest's names: a KeyError traceback."""
    path = runs / "a" / "manifest.json"
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({**manifest, "param_names": ["nope"]}))
    for argv in (("runs", "show", "a"), ("validate", "a", "--bootstrap", "100")):
        code, _, err = cli(capsys, *argv, "--store", str(runs))
        assert_one_error_line(code, err, "has a manifest naming params ['nope'] where its parts hold")
    code, out, _ = cli(capsys, "runs", "repair", "a", "--store", str(runs))
    assert code == 0 and json.loads(path.read_text())["param_names"] == manifest["param_names"]
    code, out, _ = cli(capsys, "runs", "show", "a", "--store", str(runs))
    assert code == 0


def test_a_part_damaged_in_its_block_returns_stops_validate_not_grades_it(runs, df):
    """Bytes flipped in a part's block-return column (read by the PBO only) gave "PBO: not
    available", 0 of its points and a grade, exit 0."""
    import pyarrow.parquet as pq

    part = sorted((runs / "a").glob("part-*.parquet"))[1]
    row_group = pq.ParquetFile(part).metadata.row_group(0)
    chunk = next(row_group.column(i) for i in range(row_group.num_columns)
                 if row_group.column(i).path_in_schema.startswith("blk_q"))
    data = bytearray(part.read_bytes())
    data[chunk.data_page_offset + chunk.total_compressed_size - 4] ^= 0x40
    part.write_bytes(bytes(data))
    from threadx.validation.report import validate_sweep

    with pytest.raises(RunDamaged, match=f"unreadable part {part.name}"):
        validate_sweep("a", df, store=ResultStore(runs), n=100, S=4)


# --- files copied in from another run (a hostile test: shown as good numbers, validated, repaired) ----------------

@pytest.fixture
def twin(runs, df):
    """``c``: run ``a``'s sweep at another fee (the same space, ids and columns)."""
    sweep(df, "ma_crossover", SPACE, store=runs, run_id="c", executor="inline", workers=1, chunk_size=2,
          flush_seconds=0.0, bank=IndicatorBank(cache_dir=runs.parent / "cache"), fee_bps=5.0)
    return runs


def test_a_part_copied_in_from_another_run_is_damage_and_repair_puts_it_aside(twin, df, capsys):
    before = ResultStore(twin).load("a").results.sort_values("combo_id").reset_index(drop=True)
    shutil.copy(twin / "c" / "part-000000.parquet", twin / "a" / "part-000000.parquet")
    with pytest.raises(RunDamaged, match="run a has a part part-000000.parquet that another run wrote"):
        ResultStore(twin).load("a")
    assert listed(twin)["a"].startswith("damaged: has a part part-000000.parquet that another run wrote")
    code, _, err = cli(capsys, "runs", "show", "a", "--store", str(twin))
    assert_one_error_line(code, err, "that another run wrote")
    report = ResultStore(twin).repair("a")
    assert [q["part"] for q in report["quarantined"]] == ["quarantine/part-000000.parquet"]
    assert report["status"] == "interrupted"
    after = resume(twin, df).results.sort_values("combo_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(after[before.columns], before)  # its own rows again, bit for bit


def test_a_manifest_copied_in_from_another_run_is_damage_and_repair_rebuilds_the_runs_own(twin, df):
    shutil.copy(twin / "c" / "manifest.json", twin / "a" / "manifest.json")  # (the fee-5 run's: "fee 5 bps")
    with pytest.raises(RunDamaged, match="run a has a manifest.json and a plan.json of two runs"):
        ResultStore(twin).load("a")
    with pytest.raises(RunDamaged, match="of two runs"):
        resume(twin, df)
    report = ResultStore(twin).repair("a")
    assert report["manifest"].startswith("rebuilt from plan.json (has the manifest.json of another run)")
    run = ResultStore(twin).load("a")
    assert run.manifest["engine"]["fee_bps"] != 5.0 and len(run.results) == 8


def test_a_plan_copied_in_from_another_run_is_not_what_a_repair_rebuilds_from(twin, df):
    (twin / "a" / "manifest.json").unlink()
    shutil.copy(twin / "c" / "plan.json", twin / "a" / "plan.json")
    with pytest.raises(RunDamaged, match="has no manifest and the plan.json of another run"):
        ResultStore(twin).repair("a")
    assert (twin / "a" / "part-000000.parquet").exists()  # nothing moved


def test_a_run_copied_or_renamed_whole_is_still_one_run(twin, df):
    shutil.copytree(twin / "a", twin / "a-copy")
    (twin / "c").rename(twin / "c-renamed")
    assert len(ResultStore(twin).load("a-copy").results) == 8
    assert len(ResultStore(twin).load("c-renamed").results) == 8
    assert listed(twin)["a-copy"] == listed(twin)["c-renamed"] == "completed"


def test_runs_show_top_0_shows_no_row_and_says_nothing_false(runs, capsys):
    code, out, _ = cli(capsys, "runs", "show", "a", "--store", str(runs), "--top", "0")
    assert code == 0 and "no combo reaches" not in out and "8/8" in out.replace(",", "")


def test_a_file_where_the_quarantine_folder_belongs_is_one_line_naming_the_run(runs, df, capsys):
    """It read "error: [Errno 17] File exists: '.../quarantine'" from a repair and a resume."""
    (runs / "a" / "quarantine").write_text("not a folder")
    part = sorted((runs / "a").glob("part-*.parquet"))[0]
    part.write_bytes(part.read_bytes()[:40])  # cut: a repair moves it to quarantine/
    code, _, err = cli(capsys, "runs", "repair", "a", "--store", str(runs))
    assert_one_error_line(code, err, "run a has a file where its quarantine folder belongs")
    with pytest.raises(RunDamaged, match="where its quarantine folder belongs"):
        resume(runs, df)
    assert part.exists()  # nothing moved or lost


def test_a_resume_or_repair_clears_the_temp_files_of_a_manifest_write_a_kill_left(runs, df):
    stale = runs / "a" / ".manifest.json.12345-abc.tmp"
    stale.write_text("{")
    ResultStore(runs).repair("a")
    assert not stale.exists()
    (runs / "a" / ".plan.json.999-x.tmp").write_text("{")
    resume(runs, df)
    assert not list((runs / "a").glob(".*.tmp"))


def _as_stored_before_tokens(folder):
    """The run as a version before run tokens stored it: no token in its files."""
    for name in ("manifest.json", "plan.json"):
        data = json.loads((folder / name).read_text())
        data.pop("run_token", None)
        (folder / name).write_text(json.dumps(data))
    for part in folder.glob("part-*.parquet"):
        pd.read_parquet(part).to_parquet(part, index=False)  # (pandas writes no token)


def test_a_newer_runs_manifest_in_a_run_from_before_tokens_is_replaced_not_its_plan(twin, df):
    """Repair rewrote the old run's plan.json from the foreign manifest and served the fee-5 run's
    options over its rows (a review)."""
    _as_stored_before_tokens(twin / "a")
    own_plan = (twin / "a" / "plan.json").read_text()
    shutil.copy(twin / "c" / "manifest.json", twin / "a" / "manifest.json")
    with pytest.raises(RunDamaged, match="of two runs"):
        ResultStore(twin).load("a")
    assert ResultStore(twin).repair("a")["manifest"].startswith("rebuilt from plan.json (has the manifest.json of "
                                                                  "another run)")
    assert (twin / "a" / "plan.json").read_text() == own_plan
    assert ResultStore(twin).load("a").manifest["engine"]["fee_bps"] != 5.0


def test_a_part_of_another_run_in_a_run_without_rows_yet_is_put_aside_not_the_run(twin, df):
    stop = sweep(df, "ma_crossover", SPACE, store=twin, run_id="e", executor="inline", bank=IndicatorBank(
        cache_dir=twin.parent / "cache"), cancel=lambda: True)
    assert stop.manifest["done"] == 0 and not list((twin / "e").glob("part-*.parquet"))
    shutil.copy(twin / "c" / "part-000000.parquet", twin / "e" / "part-000000.parquet")
    report = ResultStore(twin).repair("e")
    assert [q["part"] for q in report["quarantined"]] == ["quarantine/part-000000.parquet"]


def test_a_plan_with_a_token_that_is_no_text_is_rewritten_by_repair_without_a_traceback(twin, df):
    plan = json.loads((twin / "a" / "plan.json").read_text())
    (twin / "a" / "plan.json").write_text(json.dumps({**plan, "run_token": ["x"]}))
    with pytest.raises(RunDamaged, match="of two runs"):
        ResultStore(twin).load("a")
    ResultStore(twin).repair("a")
    assert len(ResultStore(twin).load("a").results) == 8


def test_files_without_a_token_over_parts_with_one_are_another_runs(twin, df):
    """Parts carrying a token under a manifest and plan.json with none (copied in from a run of an
    earlier version) listed as completed, with the other run's fee (a review)."""
    old = twin / "old"
    shutil.copytree(twin / "c", old)
    _as_stored_before_tokens(old)
    for name in ("manifest.json", "plan.json"):
        shutil.copy(old / name, twin / "a" / name)
    with pytest.raises(RunDamaged, match="that another run wrote"):
        ResultStore(twin).load("a")
    with pytest.raises(RunDamaged, match="a manifest.json and the plan.json of another run"):
        ResultStore(twin).repair("a")
