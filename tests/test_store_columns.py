"""The sweep hands the results store column dicts (``runner._columns``): the part written
from them is the one ``pa.Table.from_pandas`` writes of the chunks' DataFrames."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from threadx.engine.layout import METRIC_NAMES, N_METRICS
from threadx.optimize.evaluate import ChunkResult
from threadx.optimize.outcome import STATUS_FAILED, STATUS_OK
from threadx.optimize.runner import _columns, _rows
from threadx.optimize.space import SearchSpace
from threadx.optimize.store import RunWriter, _pending_table
from threadx.strategy.base import get_strategy


def _chunk(space: SearchSpace, ids: np.ndarray, n_blocks: int, failed: tuple[int, ...] = (),
           whole_failed: bool = False) -> ChunkResult:
    rng = np.random.default_rng(int(ids[0]))
    metrics = rng.normal(size=(len(ids), N_METRICS))
    metrics[::3, 2] = np.nan  # NaN metrics (no trades) are stored as pandas stores them
    metrics[1, 0] = -0.0
    status = np.full(len(ids), STATUS_OK, np.int8)
    errors = {}
    for k in failed:
        status[k] = STATUS_FAILED
        metrics[k] = np.nan
        errors[int(ids[k])] = f"ParamError: combo {int(ids[k])} refused"
    blocks = None if whole_failed or not n_blocks else rng.normal(size=(len(ids), n_blocks, 2))
    return ChunkResult(ids, metrics, status, errors, blocks)


@pytest.mark.parametrize("strategy,space", [
    ("ma_crossover", {"fast_period": "5:20:1", "slow_period": "30:60:5", "ma_type": ["sma", "ema"],
                      "allow_short": [False, True]}),
    ("bb_atr", {"bb_period": "10:30:5", "bb_std": "1.5:3.0:0.5", "atr_multiplier": "1.0:3.0:0.5"}),
])
@pytest.mark.parametrize("n_blocks", [0, 4])
def test_column_chunks_write_the_table_pandas_writes(strategy, space, n_blocks):
    search = SearchSpace(get_strategy(strategy), space)
    ids = np.arange(min(search.size, 90), dtype=np.int64)
    chunks = [_chunk(search, ids[:30], n_blocks), _chunk(search, ids[30:60], n_blocks, failed=(0, 5)),
              _chunk(search, ids[60:], n_blocks, failed=tuple(range(len(ids) - 60)), whole_failed=True)]
    want = pa.Table.from_pandas(pd.concat([_rows(search, c, n_blocks) for c in chunks], ignore_index=True),
                                preserve_index=False)
    got = _pending_table([_columns(search, c, n_blocks) for c in chunks])
    assert got.schema.equals(want.schema, check_metadata=True)
    assert got.equals(want)
    one = _pending_table([_columns(search, chunks[0], n_blocks)])  # a single chunk, no concatenation
    assert one.equals(pa.Table.from_pandas(_rows(search, chunks[0], n_blocks), preserve_index=False))
    for name in METRIC_NAMES:  # NaN is stored as pandas stores it
        assert got.column(name).null_count == want.column(name).null_count


def test_writer_mixes_frames_and_column_dicts(tmp_path):
    search = SearchSpace(get_strategy("ma_crossover"), {"fast_period": "5:9:1", "slow_period": "30:40:5"})
    ids = np.arange(search.size, dtype=np.int64)
    first, second = _chunk(search, ids[:5], 2), _chunk(search, ids[5:], 2, failed=(1,))
    writer = RunWriter(tmp_path, {"run_id": "r"}, flush_seconds=3600)
    writer.append(_rows(search, first, 2))
    writer.append(_columns(search, second, 2))
    writer.flush()
    writer.append(_columns(search, first, 2))  # a part of column dicts only
    writer.close()
    parts = sorted(tmp_path.glob("part-*.parquet"))
    assert len(parts) == 2
    both = pd.concat([_rows(search, first, 2), _rows(search, second, 2)], ignore_index=True)
    pd.testing.assert_frame_equal(pq.read_table(parts[0]).to_pandas(), both, check_exact=True)
    pd.testing.assert_frame_equal(pq.read_table(parts[1]).to_pandas(), _rows(search, first, 2), check_exact=True)


def test_a_column_that_does_not_fit_its_first_value_takes_the_pandas_path():
    columns = {"combo_id": np.arange(3), "x": np.array([1, 2, 2.5], dtype=object), "status": "ok"}
    want = pa.Table.from_pandas(pd.DataFrame(columns), preserve_index=False)
    assert want.schema.field("x").type == pa.float64()  # the first value alone says int64
    got = _pending_table([columns])
    assert got.schema.equals(want.schema, check_metadata=True) and got.equals(want)

