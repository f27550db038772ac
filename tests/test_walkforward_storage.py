"""Stored walk-forwards: read back whole, never through pickle, damage reported clearly."""
from __future__ import annotations

import dataclasses
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import threadx
from threadx.errors import ThreadXError
from threadx.validation.report import validate_walk_forward
from threadx.validation.storage import list_walk_forwards, load_walk_forward, save_walk_forward

SPACE = {"fast_period": "5:15:5", "slow_period": "20:40:10"}


@pytest.fixture(scope="module")
def stored(tmp_path_factory, synthetic_bars):
    wf = threadx.walk_forward(synthetic_bars, "ma_crossover", SPACE, sampler="grid", is_days=90, oos_days=30,
                              workers=1)
    report = validate_walk_forward(wf, n=100, S=4)
    root = tmp_path_factory.mktemp("results")
    save_walk_forward("wf1", wf, report, root)
    return wf, report, root


def _assert_same(a, b, where="root"):
    if dataclasses.is_dataclass(a):
        assert type(a) is type(b), where
        for f in dataclasses.fields(a):
            if f.name != "evaluator":
                _assert_same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, obj=where)
    elif isinstance(a, pd.Series):
        pd.testing.assert_series_equal(a, b, obj=where)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for k, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{k}]")
    elif isinstance(a, float) and np.isnan(a):
        assert isinstance(b, float) and np.isnan(b), where
    else:
        assert a == b and type(a) is type(b), (where, a, b)


def test_round_trip_is_exact(stored):
    wf, report, root = stored
    loaded, loaded_report = load_walk_forward("wf1", root)
    assert loaded.evaluator is None
    _assert_same(wf, loaded)
    _assert_same(report, loaded_report)
    assert list_walk_forwards(root)[0]["run_id"] == "wf1"


def test_no_pickle_is_written_or_read(stored, tmp_path, monkeypatch):
    wf, report, root = stored
    folder = root / "walkforward" / "wf1"
    assert not any(p.suffix in (".pkl", ".pickle") for p in folder.rglob("*"))

    def refuse(*args, **kwargs):
        raise AssertionError("unpickling attempted")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    load_walk_forward("wf1", root)  # works without pickle


def test_an_old_pickle_is_never_unpickled(tmp_path):
    folder = tmp_path / "walkforward" / "old"
    folder.mkdir(parents=True)
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (folder / "result.pkl").write_bytes(pickle.dumps({"version": 1, "walk_forward": Exploit()}))
    with pytest.raises(ThreadXError, match="older version as a pickle"):
        load_walk_forward("old", tmp_path)
    assert not marker.exists()


def test_damaged_or_foreign_result_is_one_clear_error(stored, tmp_path):
    import shutil

    _, _, root = stored
    for damage in ("truncate_tree", "foreign_type", "truncate_arrays"):
        target = tmp_path / damage
        shutil.copytree(root, target)
        result = target / "walkforward" / "wf1" / "result"
        if damage == "truncate_tree":
            (result / "tree.json").write_text('{"__dataclass__": ')
        elif damage == "foreign_type":
            text = (result / "tree.json").read_text().replace('"WalkForwardResult"', '"Popen"', 1)
            (result / "tree.json").write_text(text)
        else:
            data = (result / "arrays.npz").read_bytes()
            (result / "arrays.npz").write_bytes(data[: len(data) // 3])
        with pytest.raises(ThreadXError, match="cannot be read|not one this version reads|run it again"):
            load_walk_forward("wf1", target)


@pytest.mark.parametrize("target", ["frames/f0.parquet", "arrays.npz", "tree.json"])
def test_a_flipped_bit_anywhere_in_a_stored_result_is_said_not_shown(stored, tmp_path, target):
    """A bit flipped in a frame's Parquet page read back as other numbers (a window's end
    2025-03-21 19:41:40.488, a Sharpe -4.3491 for -4.3481), with no error."""
    import shutil

    _, _, root = stored
    shutil.copytree(root, tmp_path / "copy")
    path = tmp_path / "copy" / "walkforward" / "wf1" / "result" / target
    data = bytearray(path.read_bytes())
    if target == "tree.json":  # a digit of a number: JSON as valid as before
        at = data.index(b'"__float__"') - 40 if b'"__float__"' in data else len(data) // 2
        at = next(k for k in range(at, len(data)) if chr(data[k]).isdigit() and data[k] != ord("0"))
        data[at] -= 1
    else:
        data[len(data) // 2] ^= 0x04
    path.write_bytes(bytes(data))
    with pytest.raises(ThreadXError, match=f"cannot be read .*{re.escape(target)}|cannot be read"):
        load_walk_forward("wf1", tmp_path / "copy")


def test_a_frame_the_checksums_leave_out_is_never_read_unchecked(stored, tmp_path):
    """Checksums that leave out a frame the tree names (an edited tree.json) are refused: the
    frame would have been read without its check."""
    import json
    import shutil

    _, _, root = stored
    shutil.copytree(root, tmp_path / "copy")
    path = tmp_path / "copy" / "walkforward" / "wf1" / "result" / "tree.json"
    stored_tree = json.loads(path.read_text())
    del stored_tree["__sha256__"]["frames/f0.parquet"]
    path.write_text(json.dumps(stored_tree))
    with pytest.raises(ThreadXError, match="frames/f0.parquet, which has no checksum"):
        load_walk_forward("wf1", tmp_path / "copy")


def test_saving_again_replaces_the_result_whole(stored, synthetic_bars):
    wf, report, root = stored
    save_walk_forward("wf1", wf, report, root)
    folder = root / "walkforward" / "wf1"
    names = sorted(p.name for p in folder.iterdir())
    assert [n for n in names if not n.startswith(".")] == ["result", "summary.json"]
    assert len([n for n in names if n.startswith(".")]) == 1  # the one version "result" links to
    loaded, _ = load_walk_forward("wf1", root)
    _assert_same(wf, loaded)


@pytest.mark.parametrize("how", ["absolute", "relative"])
def test_a_planted_link_never_makes_a_save_delete_what_it_points_to(stored, tmp_path, how):
    """A results folder handed in with walkforward/<id>/result linking to a folder elsewhere:
    saving that walk-forward again deleted the folder the link named (any folder the user owns)."""
    wf, report, _ = stored
    root = tmp_path / "results"
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    folder = root / "walkforward" / "wf-planted"
    folder.mkdir(parents=True)
    os.symlink(victim if how == "absolute" else Path("..", "..", "..", "victim"), folder / "result")
    save_walk_forward("wf-planted", wf, report, root)
    assert (victim / "precious.txt").read_text() == "keep me"
    _assert_same(wf, load_walk_forward("wf-planted", root)[0])


def test_a_save_removes_the_staging_a_killed_save_left(stored, tmp_path):
    """A save killed while it staged the result left ``.result-<hex>.tmp`` for good (re-running
    the walk-forward to completion kept it); one of a live writer stays."""
    import subprocess
    import sys

    wf, report, root = stored
    folder = root / "walkforward" / "wf1"
    gone = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    from threadx.files import writer_tag

    dead = folder / f".result.{writer_tag().partition('-')[0]}-{gone}-0123abcd.tmp"
    (dead / "part").mkdir(parents=True)
    live = folder / f".result.{writer_tag()}-4567cdef.tmp"
    live.mkdir()
    save_walk_forward("wf1", wf, report, root)
    assert not dead.exists() and live.exists()
    live.rmdir()


def test_a_dataset_write_removes_the_temp_file_a_killed_write_left(tmp_path):
    import subprocess
    import sys

    from threadx.data.io import write_ohlcv
    from threadx.data.synthetic import generate_synthetic

    gone = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    from threadx.files import writer_tag

    dead = tmp_path / f".X_USDT-1h.parquet.{writer_tag().partition('-')[0]}-{gone}-0123abcd.tmp"
    dead.write_bytes(b"half")
    write_ohlcv(generate_synthetic(days=10, seed=1), tmp_path / "X_USDT-1h.parquet")
    assert not dead.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["X_USDT-1h.parquet"]


def test_a_reader_never_sees_the_result_missing_while_it_is_replaced(stored, monkeypatch):
    from threadx.validation import storage

    wf, report, root = stored
    seen = []
    real_replace = os.replace

    def replace_then_look(src, dst):  # after every rename a save makes, a reader looks
        real_replace(src, dst)
        seen.append(storage.is_stored("wf1", root))

    monkeypatch.setattr(storage.os, "replace", replace_then_look)
    save_walk_forward("wf1", wf, report, root)
    assert seen and all(seen)
    _assert_same(wf, load_walk_forward("wf1", root)[0])


def test_the_stamp_that_keys_a_shown_walk_forward_sees_a_copy_with_its_times_kept(stored):
    """The Validation page keyed a shown walk-forward on its file's mtime: another result copied
    over it with its times kept (``cp -p``, ``rsync -t``) was shown as the old one."""
    from threadx.validation import codec
    from threadx.validation.storage import is_stored, stored_stamp

    wf, report, root = stored
    save_walk_forward("wf-stamp", wf, report, root)
    path = root / "walkforward" / "wf-stamp" / "result" / codec.TREE
    before, times = stored_stamp("wf-stamp", root), os.stat(path)
    data = path.read_bytes()
    path.write_bytes(data)  # the same size, new content in place
    os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))
    assert stored_stamp("wf-stamp", root) != before and is_stored("wf-stamp", root)
    assert stored_stamp("none", root) is None and not is_stored("none", root)


def test_a_walk_forward_searching_a_choice_is_stored_and_read_back(synthetic_bars, tmp_path):
    """The drift table's values mix numbers (fast_period) and texts (ma_type) row by row: Parquet
    refused it (ArrowInvalid after the work, from the page and the CLI), and left an empty folder."""
    wf = threadx.walk_forward(synthetic_bars, "ma_crossover", {"fast_period": [5, 10], "slow_period": [40],
                                                               "ma_type": ["ema", "sma"]},
                              sampler="grid", is_days=90, oos_days=30, workers=1)
    report = validate_walk_forward(wf, n=100, S=4)
    assert set(map(type, wf.drift.set_index("param").loc["ma_type", "values"])) == {str}
    save_walk_forward("choice", wf, report, tmp_path)
    loaded, loaded_report = load_walk_forward("choice", tmp_path)
    pd.testing.assert_frame_equal(loaded.drift.astype({"param": object}), wf.drift.astype({"param": object}))
    _assert_same(report, loaded_report)


def test_a_walk_forward_that_cannot_be_stored_leaves_no_folder(stored, tmp_path, monkeypatch):
    from threadx.validation import codec

    wf, report, _ = stored
    monkeypatch.setattr(codec, "dump", lambda folder, obj: (_ for _ in ()).throw(codec.CodecError("refused")))
    with pytest.raises(codec.CodecError):
        save_walk_forward("never", wf, report, tmp_path)
    assert not (tmp_path / "walkforward" / "never").exists() and list_walk_forwards(tmp_path) == []


@pytest.mark.parametrize("damage", [
    lambda s: [1, 2], lambda s: {**s, "walk_forward": "x"}, lambda s: {**s, "validation": "x"},
    lambda s: {**s, "validation": {"grade": "A"}}, lambda s: {**s, "walk_forward": {**s["walk_forward"], "windows": 5}},
    lambda s: {**s, "walk_forward": {**s["walk_forward"], "config": None}}, lambda s: {**s, "run_id": "wf1"},
])
def test_one_damaged_summary_never_breaks_the_list_of_the_others(stored, tmp_path, damage):
    """A summary.json that is a list, or whose parts are of another kind, raised AttributeError or
    TypeError in the list (the Validation page's "Stored walk-forwards": every walk-forward gone);
    a copied folder listed under the run id written inside it, twice, the copy not openable."""
    import json
    import shutil

    _, _, root = stored
    shutil.copytree(root / "walkforward" / "wf1", tmp_path / "walkforward" / "wf1")
    copy = tmp_path / "walkforward" / "copy"
    shutil.copytree(root / "walkforward" / "wf1", copy)
    summary = json.loads((copy / "summary.json").read_text())
    (copy / "summary.json").write_text(json.dumps(damage(summary)))
    rows = {row["run_id"]: row for row in list_walk_forwards(tmp_path)}
    assert set(rows) == {"wf1", "copy"}
    assert rows["wf1"]["strategy"] == "ma_crossover" and rows["wf1"]["windows"] == len(stored[0].windows)
    assert load_walk_forward("copy", tmp_path)[0].config == stored[0].config  # opened by its folder's name


def test_a_summary_copied_in_from_another_walk_forward_is_not_listed_as_this_ones(stored, tmp_path):
    """A summary.json copied over from another walk-forward was listed with that one's strategy,
    dataset, windows and grade beside this one's result."""
    import json
    import shutil

    wf, report, root = stored
    shutil.copytree(root / "walkforward" / "wf1", tmp_path / "walkforward" / "wf1", symlinks=True)
    save_walk_forward("other", wf, report, tmp_path)
    shutil.copy(tmp_path / "walkforward" / "other" / "summary.json", tmp_path / "walkforward" / "wf1" / "summary.json")
    rows = {row["run_id"]: row for row in list_walk_forwards(tmp_path)}
    assert rows["other"]["strategy"] == "ma_crossover" and rows["other"]["windows"] == len(wf.windows)
    assert rows["wf1"]["strategy"] is None and rows["wf1"]["windows"] is None and rows["wf1"]["grade"] is None
    assert load_walk_forward("wf1", tmp_path)[0].config == wf.config  # it still opens, as its own
    # a result saved before tokens: its summary is its own
    folder = tmp_path / "walkforward" / "other"
    (folder / "result" / "run_token").unlink()
    summary = json.loads((folder / "summary.json").read_text())
    del summary["run_token"]
    (folder / "summary.json").write_text(json.dumps(summary))
    rows = {row["run_id"]: row for row in list_walk_forwards(tmp_path)}
    assert rows["other"]["strategy"] == "ma_crossover"
    assert load_walk_forward("other", tmp_path)[0].config == wf.config


def test_the_list_holds_exactly_the_walk_forwards_that_open(stored, tmp_path):
    """A folder whose summary.json was gone or garbage vanished from the list though it opened; one
    whose result tree was gone was listed and did not open (a hostile test)."""
    import shutil

    _, _, root = stored
    for name in ("no-summary", "bad-summary", "no-tree"):
        shutil.copytree(root / "walkforward" / "wf1", tmp_path / "walkforward" / name, symlinks=True)
    (tmp_path / "walkforward" / "no-summary" / "summary.json").unlink()
    (tmp_path / "walkforward" / "bad-summary" / "summary.json").write_text("{garbage")
    (tmp_path / "walkforward" / "no-tree" / "result" / "tree.json").unlink()
    (tmp_path / "walkforward" / "notes.txt").write_text("a stray file")  # (it broke the list: NotADirectoryError)
    rows = {row["run_id"]: row for row in list_walk_forwards(tmp_path)}
    assert set(rows) == {"no-summary", "bad-summary"}
    assert rows["no-summary"]["strategy"] is None and rows["bad-summary"]["windows"] is None
    for name in rows:
        assert load_walk_forward(name, tmp_path)[0].config == stored[0].config
    with pytest.raises(ThreadXError, match="no stored walk-forward 'no-tree'"):
        load_walk_forward("no-tree", tmp_path)
