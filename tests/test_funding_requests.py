"""Funding "stored" and a stored file's record, as requests, resumes, validations and research cells
take them: the dataset's funding file, checked against the sha256 a run recorded."""
from __future__ import annotations

import pandas as pd
import pytest

import threadx
from candles import funded_dataset
from threadx.config import STORED
from threadx.data.funding import funding_file_of, stored_funding, stored_record, with_stored_funding, write_funding
from threadx.engine.inputs import funding_summary
from threadx.errors import DataError, ParamError
from threadx.requests import BacktestRequest, DatasetRef, SweepRequest, funding_words

NAME = "test/AAA_USDT-1h"
PARAMS = {"fast_period": 10, "slow_period": 40}


@pytest.fixture
def funded(tmp_path, monkeypatch):
    """A dataset with a funding file of 0.1 % per 8 h beside its candles, and one without."""
    monkeypatch.setenv("THREADX_DATA_ROOT", str(tmp_path / "data"))
    folder = tmp_path / "data" / "test"
    funded_dataset(folder, "AAA_USDT", seed=11, rate=0.001)
    funded_dataset(folder, "BBB_USDT", seed=12, rate=None)
    return threadx.load_ohlcv(NAME), folder / "AAA_USDT-funding.parquet"


def refetch(path, rate: float) -> None:
    """The funding file written again with other rates (a new download)."""
    old = stored_funding(NAME)
    write_funding(pd.Series(rate, index=old.index), path)


def test_stored_is_the_datasets_file_and_a_record_is_that_file_while_its_rows_are_the_same(funded):
    _, path = funded
    series = with_stored_funding({"fee_bps": 5.0, "funding": STORED}, NAME)["funding"]
    assert series.attrs["source"] == str(path) and (series == 0.001).all()
    assert with_stored_funding({"funding": STORED}, "test/BBB_USDT-1h") == {}  # no file: no funding
    assert funding_file_of(NAME) == path and funding_file_of("test/BBB_USDT-1h") is None
    record = funding_summary(series)
    assert stored_record(record)["sha"] == series.attrs["fingerprint"]
    again = with_stored_funding({"funding": record}, NAME)["funding"]
    assert again.equals(series)
    assert funding_words(record) == f"AAA_USDT-funding.parquet ({len(series):,} rates, sha256 {record[-65:-57]})"
    assert funding_words(record, detail=False) == funding_words(STORED) == "the stored file"
    refetch(path, 0.003)
    with pytest.raises(DataError, match=r"AAA_USDT-funding.parquet changed since this run \(sha256 [0-9a-f]{12} "
                                        r"then, [0-9a-f]{12} now"):
        with_stored_funding({"funding": record}, NAME)
    path.unlink()
    with pytest.raises(DataError, match="no longer beside its candles"):
        with_stored_funding({"funding": record}, NAME)
    python_series = funding_summary(pd.Series(0.001, index=series.index))  # passed from Python: no file
    with pytest.raises(ParamError, match="not stored"):
        with_stored_funding({"funding": python_series}, NAME)
    assert with_stored_funding({"funding": 0.0001}, NAME) == {"funding": 0.0001}


def test_a_backtest_request_with_stored_funding_equals_the_backtest_with_the_file(funded):
    df, path = funded
    ref = DatasetRef(source=NAME, name=NAME)
    with_file = BacktestRequest(ref, "ma_crossover", PARAMS, {"funding": STORED}).run()
    expected = threadx.backtest(df, "ma_crossover", PARAMS, funding=stored_funding(NAME))
    without = BacktestRequest(ref, "ma_crossover", PARAMS, {"funding": None}).run()
    assert with_file.metrics == expected.metrics and with_file.metrics["total_funding"] != 0.0
    assert without.metrics["total_funding"] == 0.0 and without.metrics != with_file.metrics
    record = with_file.meta["options"]["funding"]
    assert stored_record(record) is not None
    pinned = BacktestRequest(ref, "ma_crossover", PARAMS, {"funding": record})  # as a link keeps it
    assert pinned.run().metrics == expected.metrics
    refetch(path, 0.002)
    with pytest.raises(DataError, match="changed since this run"):
        pinned.run()
    sweep = SweepRequest(ref, "ma_crossover", {"fast_period": [10]}, engine_options={"funding": STORED})
    assert sweep.sweep_kwargs()["funding"].iloc[0] == 0.002


def test_a_sweep_resumes_validates_and_reopens_with_the_rates_it_ran_with(funded, tmp_path):
    from threadx.optimize.store import ResultStore
    from threadx.ui.sweep_runs import check_resume_data, resume_request
    from threadx.validation.report import validate_sweep

    df, path = funded
    request = SweepRequest(DatasetRef(source=NAME, name=NAME), "ma_crossover",
                           {"fast_period": [5, 10], "slow_period": [40, 60]}, workers=1, executor="inline",
                           engine_options={"funding": STORED}, run_id="funded")
    store = ResultStore(tmp_path / "results")
    run = threadx.sweep(df, "ma_crossover", request.space, store=store, **request.sweep_kwargs())
    assert stored_record(run.manifest["engine"]["funding"]) is not None
    row = run.top(1).iloc[0]
    best = {k: row[k] for k in ("fast_period", "slow_period")}
    opened = BacktestRequest.from_manifest(run.manifest, best).run()  # "Open in Backtest"
    assert opened.metrics["total_return"] == row["total_return"] and opened.metrics["total_funding"] != 0.0
    report = validate_sweep(run, n=100, S=4)  # (a stored file's record was "not stored": refused)
    assert report is not None
    resumed = resume_request(store.load(run.run_id).manifest)
    assert resumed.engine_options["funding"] == run.manifest["engine"]["funding"]  # the rows it ran with
    check_resume_data(resumed)
    refetch(path, 0.004)
    with pytest.raises(DataError, match="changed since this run"):
        check_resume_data(resumed)
    with pytest.raises(DataError, match="changed since this run"):
        BacktestRequest.from_manifest(run.manifest, best).run()
    with pytest.raises(DataError, match="changed since this run"):
        validate_sweep(store.load(run.run_id), n=100, S=4)


def test_a_cut_or_edited_copy_of_a_stored_series_is_not_recorded_as_the_file(funded):
    """pandas carries ``attrs`` through slicing and arithmetic: a cut or scaled stored series was
    recorded as the file (meta["funding"] named it, a reopened run blamed a re-fetch, the
    Validation form read it as the stored file)."""
    df, _ = funded
    whole = stored_funding(NAME)
    for copy in (whole.iloc[30:], whole * 0.5):
        assert copy.attrs.get("source")  # (what pandas does)
        result = threadx.backtest(df, "ma_crossover", PARAMS, funding=copy)
        record = result.meta["options"]["funding"]
        assert "funding" not in result.meta and stored_record(record) is None
        assert funding_words(record, detail=False) == "a series from Python"
        with pytest.raises(ParamError, match="not stored"):
            BacktestRequest(DatasetRef(source=NAME, name=NAME), "ma_crossover", PARAMS, {"funding": record}).run()
    whole_run = threadx.backtest(df, "ma_crossover", PARAMS, funding=whole)
    assert whole_run.meta["funding"] == {"source": whole.attrs["source"], "fingerprint": whole.attrs["fingerprint"],
                                         "rates": len(whole)}


def test_a_research_refuses_one_series_for_every_dataset(funded, tmp_path):
    from threadx.validation.research import research

    with pytest.raises(ParamError, match="one series cannot be every dataset's"):
        research("ma_crossover", [NAME, "test/BBB_USDT-1h"], {"fast_period": [5]}, funding=stored_funding(NAME),
                 results_dir=tmp_path / "results")


def test_a_portfolio_from_python_pays_the_stored_funding_files_by_default(funded, tmp_path):
    """portfolio_backtest defaulted to no funding while the README, the command and the page apply
    each dataset's file: a portfolio of research winners run from Python dropped its research's funding."""
    from threadx.portfolio import portfolio_backtest

    runner = f"ma_crossover:{NAME}:fast_period=10,slow_period=40"
    default = portfolio_backtest([runner], results_dir=tmp_path, save=False)
    stored = portfolio_backtest([runner], funding=STORED, results_dir=tmp_path, save=False)
    off = portfolio_backtest([runner], funding=None, results_dir=tmp_path, save=False)
    assert default.metrics == stored.metrics and default.metrics["total_funding"] != 0.0
    assert off.metrics["total_funding"] == 0.0


def test_a_funding_file_read_again_unchanged_comes_from_memory_and_a_rewrite_is_seen(funded, monkeypatch):
    """The Portfolio page asks for each research dataset's funding on every rerun: the file is read
    once while its stamp holds; each caller gets its own copy; a rewrite with the mtime put back is
    read again."""
    import os

    import threadx.data.funding as funding

    reads = []
    real = funding.read_funding_file
    monkeypatch.setattr(funding, "read_funding_file", lambda p: reads.append(p) or real(p))
    _, path = funded
    first = stored_funding(NAME)
    first.iloc[0] = 99.0  # a caller's edit stays its own
    second = stored_funding(NAME)
    assert len(reads) == 1
    assert (second == 0.001).all() and second.attrs["source"] == str(path)
    stat = path.stat()
    refetch(path, 0.002)  # the same rows and size, other rates
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    third = stored_funding(NAME)
    assert len(reads) == 2 and reads[-1] == str(path)
    assert (third == 0.002).all() and third.attrs["fingerprint"] != second.attrs["fingerprint"]
