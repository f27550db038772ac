"""The shared block keeps each distinct array once, bit for bit; a part is written with
dictionaries only on the columns with few values, and reads back as written."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from threadx.data.synthetic import generate_synthetic
from threadx.data.bars import Bars
from threadx.optimize.shared import SharedPack
from threadx.optimize.store import RunWriter


def test_identical_arrays_share_a_slot_and_near_ones_do_not():
    bars = Bars.from_frame(generate_synthetic("PACK", days=5, seed=3), timeframe="1h")
    n = len(bars)
    base = np.linspace(1.0, 2.0, n)
    base[:3] = np.nan
    other = base.copy()
    other[n // 2 + 1] += 1e-12  # off the sampled elements: found by the whole comparison
    negzero, poszero = np.zeros(n), np.zeros(n)
    negzero[5] = -0.0
    arrays = {("a", "1"): {"x": base, "y": base.copy()}, ("b", "1"): {"x": other},
              ("c", "1"): {"x": negzero, "y": poszero}}
    pack = SharedPack.create(bars, arrays, "dedupe-test")
    try:
        lay = pack.layout.indicators
        assert lay[("a", "1")]["x"] == lay[("a", "1")]["y"]
        assert lay[("b", "1")]["x"] != lay[("a", "1")]["x"]
        assert lay[("c", "1")]["x"] != lay[("c", "1")]["y"]  # -0.0 and 0.0 differ bit for bit
        for key, outputs in arrays.items():
            for name, arr in outputs.items():
                got = pack.view(lay[key][name])
                assert np.array_equal(got.view(np.uint64), arr.view(np.uint64))
    finally:
        pack.close()


def test_an_interrupted_copy_leaves_no_block_behind(monkeypatch):
    """Ctrl-C (or a full /dev/shm) while the arrays are copied in: the block is unlinked before
    the error goes on, since the caller never gets it to close."""
    import threadx.optimize.shared as shared
    from threadx.optimize.shm import list_segments

    def interrupted(*args):
        raise KeyboardInterrupt

    bars = Bars.from_frame(generate_synthetic("PACK", days=5, seed=3), timeframe="1h")
    monkeypatch.setattr(shared, "_fill", interrupted)
    with pytest.raises(KeyboardInterrupt):
        SharedPack.create(bars, {("a", "1"): {"x": np.linspace(1.0, 2.0, len(bars))}}, "interrupted-copy")
    assert not [s for s in list_segments() if s.belongs_to("interrupted-copy")]


def test_a_part_reads_back_as_written_with_dictionaries_on_params_only(tmp_path):
    rows = pd.DataFrame({"combo_id": np.arange(6, dtype=np.int64), "bb_period": [10, 10, 11, 11, 12, 12],
                         "sharpe": np.linspace(-1, 1, 6), "blk_s000": np.ones(6, np.float32),
                         "status": ["ok"] * 5 + ["failed"], "error": [""] * 5 + ["boom"]})
    writer = RunWriter(tmp_path, {})
    writer.append(rows)
    writer.flush()
    part = next(tmp_path.glob("part-*.parquet"))
    pd.testing.assert_frame_equal(pd.read_parquet(part), rows)
    column = pq.ParquetFile(part).metadata.row_group(0).column
    names = list(rows.columns)
    encoded = {name: "RLE_DICTIONARY" in column(k).encodings or "PLAIN_DICTIONARY" in column(k).encodings
               for k, name in enumerate(names)}
    assert encoded == {"combo_id": False, "bb_period": True, "sharpe": False, "blk_s000": False, "status": True,
                       "error": True}


def test_the_block_is_a_matrix_of_lines_that_knows_its_rows():
    """A signal rule reads a sweep's lines where the block holds them: a view of a slot is its
    row, anything else (a copy, a slice, another dtype or length) is not a row; the block
    holds one all-NaN line."""
    bars = Bars.from_frame(generate_synthetic("PACK", days=5, seed=3), timeframe="1h")
    n = len(bars)
    line = np.linspace(1.0, 2.0, n)
    pack = SharedPack.create(bars, {("sma", "1"): {"value": line}}, "rows-test")
    try:
        lines = pack.indicator_source().lines
        view = pack.view(pack.layout.indicators[("sma", "1")]["value"])
        row = lines.row_of(view)
        assert row >= 0 and np.array_equal(lines.matrix[row], line)
        assert lines.row_of(pack.bars().close) >= 0 and np.array_equal(lines.matrix[lines.row_of(pack.bars().close)],
                                                                       bars.close)
        assert np.isnan(lines.matrix[lines.nan_row]).all()
        assert lines.row_of(view.copy()) == -1
        assert lines.row_of(lines.matrix[row][1:]) == -1 and lines.row_of(lines.matrix[row][::2]) == -1
        assert lines.row_of(lines.matrix.ravel()[1:n + 1]) == -1  # not on a row's start
        assert lines.row_of(view.view(np.int64)) == -1 and lines.row_of(line) == -1
        assert not lines.matrix.flags.writeable
    finally:
        pack.close()


@pytest.mark.parametrize("strategy, space", [
    ("ma_crossover", {"fast_period": "5:40:1", "slow_period": "30:200:5", "ma_type": ["sma", "ema"]}),
    ("bb_atr", {"bb_period": "10:30:2", "bb_std": [1.5, 2.0], "atr_period": "7:21:7", "trend_period": "0:100:50",
                "entry_z": [1.0, 2.0]}),
])
def test_requests_by_declared_labels_equal_those_of_every_combo(monkeypatch, strategy, space):
    """With every param declaring the indicator labels it feeds, a sweep's requests are made
    label by label (the values of the params feeding each): the same set as enumerating every
    combo of the indicator axes, which it falls back to when a param declares none."""
    from dataclasses import replace

    from threadx.optimize import shared
    from threadx.optimize.space import SearchSpace
    from threadx.strategy import get_strategy

    spec = get_strategy(strategy)
    search = SearchSpace(spec, space)
    calls = []
    real = spec.indicators
    counted = replace(spec, indicators=lambda p: calls.append(1) or real(p))
    by_label = shared.indicator_requests(SearchSpace(counted, space))
    label_calls = len(calls)
    monkeypatch.setattr(shared, "_label_axes", lambda *a: None)
    every = shared.indicator_requests(search)
    assert by_label == every and len(every) > 10
    product = int(np.prod([len(search.axes[k]) for k in shared.indicator_axes(search)]))
    assert label_calls < product / 3
    monkeypatch.undo()
    undeclared = replace(spec, params=tuple(replace(p, indicator_labels=None) for p in spec.params))
    assert shared._label_axes(SearchSpace(undeclared, space), shared.indicator_axes(search)) is None
    assert shared.indicator_requests(SearchSpace(undeclared, space)) == every
