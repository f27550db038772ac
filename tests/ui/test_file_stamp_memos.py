"""Memos of what the workstation read from a file are keyed on the file's stamp
(threadx.filestamp.file_stamp): a file rewritten with the same size and its mtime put back
(``cp -p``, ``rsync -t``, ``os.utime``) is read anew, never served stale."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

pytest.importorskip("streamlit")

XYZ = "local/XYZ_USDT-1h"


def _rewrite_keeping_mtime(path: Path, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` (same length) in ``path``, then put its mtime back."""
    assert len(old) == len(new)
    before = path.stat()
    text = path.read_text()
    assert text.count(old) == 1
    time.sleep(0.05)  # past the kernel's timestamp tick: the rewrite gets a new ctime
    path.write_text(text.replace(old, new))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_mtime_ns, after.st_size, after.st_ino) == (before.st_mtime_ns, before.st_size, before.st_ino)


@pytest.mark.usefixtures("fresh_streamlit_caches")
def test_the_dataset_cache_reads_a_file_rewritten_with_its_mtime_put_back(workspace):
    from threadx.data.synthetic import generate_synthetic
    from threadx.ui.state import load_dataset

    path = workspace / "data" / "local" / "XYZ_USDT-1h.csv"
    path.parent.mkdir(parents=True)
    generate_synthetic("XYZ_USDT", "1h", days=3, seed=1).to_csv(path, float_format="%.4f")
    first = load_dataset(XYZ)
    volume = f"{first['volume'].iloc[0]:.4f}"
    assert len(volume) > 4 and volume[0] != "9"
    changed = str(int(volume[0]) + 1) + volume[1:]
    _rewrite_keeping_mtime(path, f",{volume}\n", f",{changed}\n")
    assert f"{load_dataset(XYZ)['volume'].iloc[0]:.4f}" == changed


def test_the_user_strategy_memo_reads_a_file_restored_with_an_old_mtime(strategy_dir):
    from threadx.strategy import user
    from threadx.strategy.scaffold import new_strategy_file

    path = new_strategy_file("stamped")
    old = time.time_ns() - 3_600 * 10**9  # an hour ago: past the coarse-clock comparison
    os.utime(path, ns=(old, old))
    first = user.strategies()["stamped"]
    assert first.code_hash == user.text_hash(path.read_text())
    _rewrite_keeping_mtime(path, 'name="stamped"', 'name="stamper"')
    assert "stamper" in user.strategies() and "stamped" not in user.strategies()
    assert user.strategies()["stamper"].code_hash == user.text_hash(path.read_text()) != first.code_hash


def test_a_sweep_run_signature_changes_when_its_manifest_is_rewritten_with_its_mtime_put_back(tmp_path):
    from threadx.ui.sweep_runs import run_signature

    folder = tmp_path / "run-1"
    folder.mkdir()
    (folder / "manifest.json").write_text('{"status": "running", "done": 1}')
    before = run_signature(folder)
    _rewrite_keeping_mtime(folder / "manifest.json", '"running", "done": 1', '"stopped", "done": 2')
    assert run_signature(folder) != before
    assert run_signature(tmp_path / "gone") is None


def test_a_sweep_run_signature_changes_when_a_part_is_rewritten_in_place_with_its_mtime_put_back(tmp_path):
    from threadx.ui.sweep_runs import run_signature

    folder = tmp_path / "run-1"
    folder.mkdir()
    (folder / "manifest.json").write_text('{"status": "completed", "done": 2}')
    (folder / "part-000000.parquet").write_bytes(b"PAR1 first rows PAR1")
    (folder / "part-000001.parquet").write_bytes(b"PAR1 later rows PAR1")
    before = run_signature(folder)
    _rewrite_keeping_mtime(folder / "part-000001.parquet", "later", "other")  # damaged or repaired by hand
    assert run_signature(folder) != before
