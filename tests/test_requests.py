"""Requests (threadx.requests): JSON round trips, one source for defaults, runs reproducible
from what they stored, and data that is gone or changed reported instead of used."""
from __future__ import annotations

import json

import pytest

import threadx
from threadx.cli import main
from threadx.config import DEFAULT_BOOTSTRAP, DEFAULT_FEE_BPS, DEFAULT_WF_SAMPLES
from threadx.data.io import write_ohlcv
from threadx.data.synthetic import generate_synthetic
from threadx.engine.inputs import EngineOptions
from threadx.errors import DataError, ParamError
from threadx.requests import (BacktestRequest, DatasetRef, ResearchRequest, SweepRequest, WalkForwardRequest,
                              request_from_dict)

SPACE = {"fast_period": "5:15:5", "slow_period": [40, 60]}
OPTIONS = {"fee_bps": 4.0, "slippage_bps": 2.0, "fill": "close", "sizing": "fraction", "fraction": 0.5,
           "leverage": 2.0}


@pytest.fixture
def candles(tmp_path, data_root):
    """A candle file outside the data root, named like a catalog dataset (BTC_USDT-1h)."""
    path = tmp_path / "elsewhere" / "BTC_USDT-1h.parquet"
    write_ohlcv(generate_synthetic(days=200, seed=11), path)
    return path


def roundtrip(request):
    return request_from_dict(json.loads(json.dumps(request.to_dict(), allow_nan=False)))


def test_requests_round_trip_through_json(candles):
    ref = DatasetRef.of(threadx.load_ohlcv(str(candles)))
    assert ref.source == str(candles) and ref.fingerprint and ref.timeframe == "1h"
    for request in (
        BacktestRequest(ref, "ma_crossover", {"fast_period": 10}, OPTIONS),
        SweepRequest(ref, "ma_crossover", SPACE, sampler="random", n=4, seed=3, engine_options=OPTIONS),
        WalkForwardRequest("sample:BTC_USDT-1h", "ma_crossover", SPACE, is_days=60, oos_days=30,
                           engine_options={"fee_bps": 1.0}),
    ):
        assert roundtrip(request) == request
        assert request.to_dict()["engine_options"]["min_notional"] == EngineOptions().min_notional


def test_request_defaults_match_the_functions_they_call():
    import dataclasses
    import inspect

    from threadx.validation.walkforward import walk_forward

    for cls, func in ((SweepRequest, threadx.sweep), (WalkForwardRequest, walk_forward)):
        signature = inspect.signature(func).parameters
        for f in cls.__dataclass_fields__.values():
            if f.name in signature and f.default is not dataclasses.MISSING:
                assert f.default == signature[f.name].default, (cls.__name__, f.name)


def test_defaults_are_declared_once():
    request = SweepRequest.from_dict({"data": "sample:BTC_USDT-1h", "strategy": "ma_crossover", "seed": None})
    assert request.seed == 42 and request.sampler == "grid" and request.engine_options == EngineOptions().to_dict()
    assert request.engine_options["fee_bps"] == DEFAULT_FEE_BPS
    wf = WalkForwardRequest.from_dict({"data": "sample:BTC_USDT-1h", "strategy": "ma_crossover", "is_days": 60,
                                       "oos_days": 30})
    assert (wf.sampler, wf.n, wf.bootstrap, wf.S) == ("random", DEFAULT_WF_SAMPLES, DEFAULT_BOOTSTRAP, 16)


@pytest.mark.parametrize("change, match", [
    ({"strategy": "nope"}, "unknown strategy"),
    ({"space": {"fast_period": "a:b:c"}}, "fast_period"),
    ({"sampler": "random"}, "needs n"),
    ({"engine_options": {"warp": 1}}, "warp"),
    ({"space": {"fast_period": "2:400:1", "slow_period": "3:1000:1"}, "grid_limit": 1000}, "above the limit"),
    ({"colour": "blue"}, "colour"),
    ({"data": ""}, "data"),
])
def test_bad_requests_are_refused_on_construction(change, match):
    with pytest.raises(ParamError, match=match):
        SweepRequest.from_dict({"data": "sample:BTC_USDT-1h", "strategy": "ma_crossover", **change})


def test_a_sweep_reopens_as_the_same_backtest(candles, tmp_path):
    """The manifest records the request; a backtest rebuilt from it gives the winner's metrics."""
    run = threadx.sweep(threadx.load_ohlcv(str(candles)), "ma_crossover", SPACE, store=tmp_path / "results",
                        run_id="r1", workers=1, **OPTIONS)
    m = run.manifest
    assert SweepRequest.from_dict(m["request"]).run_id == "r1" and m["data"]["source"] == str(candles)
    request = BacktestRequest.from_manifest(m, run.best_params())
    assert request.engine_options == m["engine"] and request.data.source == str(candles)
    result = request.run()
    best = run.top(1).iloc[0]
    for key in ("sharpe", "total_return", "max_drawdown", "n_trades"):
        assert result.metrics[key] == pytest.approx(best[key], rel=1e-12)


def test_changed_or_gone_data_is_reported_not_used(candles):
    ref = DatasetRef.of(threadx.load_ohlcv(str(candles)))
    write_ohlcv(generate_synthetic(days=200, seed=12), candles)  # other candles, same file
    with pytest.raises(DataError, match="changed since the run"):
        ref.load()
    with pytest.raises(DataError, match="changed since the run"):
        BacktestRequest(ref, "ma_crossover").run()
    candles.unlink()
    with pytest.raises(DataError, match="is gone"):
        ref.load()


def test_a_copy_edited_in_memory_is_no_longer_recorded_as_its_file(candles, tmp_path, capsys):
    """pandas carries a loaded frame's attrs to an edited copy: a what-if sweep on prices x 1.10
    was recorded as the untouched file, listed on its dataset, and validating it blamed the file
    ("changed since the run")."""
    from threadx.cli import main
    from threadx.requests import UNNAMED

    df = threadx.load_ohlcv(str(candles))
    assert DatasetRef.of(df).source == str(candles)  # as loaded: the file
    part = df.loc[df.index[100]:df.index[2_000]]  # a slice is still the file, cut as recorded
    ref = DatasetRef.of(part)
    assert ref.source == str(candles) and threadx.load_ohlcv(ref.source, start=ref.start, end=ref.end).shape == part.shape
    assert DatasetRef.of(ref.load()) == ref
    edited = df.copy()
    edited[["open", "high", "low", "close"]] *= 1.10
    ref = DatasetRef.of(edited)
    assert ref.source == UNNAMED and ref.name is None and ref.timeframe == "1h"
    run = threadx.sweep(edited, "ma_crossover", SPACE, executor="inline", store=tmp_path / "runs", run_id="what-if")
    assert run.manifest["data"]["source"] == UNNAMED
    assert main(["validate", "what-if", "--store", str(tmp_path / "runs")]) == 2
    assert "run what-if ran on a frame in memory (made from BTC_USDT-1h): pass the same candles" in capsys.readouterr().err


def test_a_cut_and_resampled_load_is_reloaded_the_same(data_root):
    df = threadx.load_ohlcv("sample:BTC_USDT-1h", "4h", start="2023-03-01 05:00", end="2023-09-01")
    ref = DatasetRef.of(df)
    assert ref.timeframe == "4h" and ref.name == "synthetic/BTC_USDT-1h"
    again = ref.load()
    assert DatasetRef.of(again) == ref and len(again) == len(df)


def test_a_moved_file_falls_back_to_its_dataset_name_only_with_the_same_candles(candles, data_root):
    ref = DatasetRef.of(threadx.load_ohlcv(str(candles)))
    threadx.load_ohlcv("sample:BTC_USDT-1h")  # a catalog dataset named like the file: other candles
    candles.unlink()
    with pytest.raises(DataError, match="is gone.*holds other candles"):
        ref.load()


def test_cli_validate_finds_a_file_runs_data(candles, tmp_path, capsys):
    """A run made from a file path is validated without --data, even when the data root holds a
    dataset of the same name (the synthetic BTC_USDT-1h)."""
    threadx.load_ohlcv("sample:BTC_USDT-1h")  # the same-named dataset in the catalog
    store = str(tmp_path / "results")
    assert main(["sweep", "--data", str(candles), "--strategy", "ma_crossover", "--param", "fast_period=5,10",
                 "--param", "slow_period=40,60", "--run-id", "from-file", "--store", store, "--workers", "1",
                 "--json"]) == 0
    capsys.readouterr()
    assert main(["validate", "from-file", "--store", store, "--bootstrap", "100", "--S", "4"]) == 0
    out = capsys.readouterr().out
    assert "run from-file" in out and str(candles) in out and "fee 10 bps" in out and "grade " in out


def test_a_run_stored_before_requests_reopens_by_its_dataset_name(data_root, tmp_path):
    """Older manifests have no request: the dataset name, timeframe and fingerprint are used."""
    df = threadx.load_ohlcv("sample:BTC_USDT-1h")
    run = threadx.sweep(df, "ma_crossover", SPACE, store=tmp_path / "results", run_id="old", workers=1, fee_bps=7.0)
    legacy = {k: v for k, v in run.manifest.items() if k not in ("request", "data")}
    request = BacktestRequest.from_manifest(legacy, run.best_params())
    assert request.data.source == "synthetic/BTC_USDT-1h" and request.engine_options["fee_bps"] == 7.0
    assert request.run().metrics["sharpe"] == pytest.approx(float(run.top(1).iloc[0]["sharpe"]), rel=1e-12)
    with pytest.raises(DataError, match="no dataset"):
        BacktestRequest.from_manifest({**legacy, "dataset": None}, run.best_params())


@pytest.mark.parametrize("make, match", [
    (lambda: ResearchRequest.from_dict({}), "a research request needs datasets, strategies"),
    (lambda: DatasetRef.from_dict({}), "a dataset needs source"),
])
def test_a_request_without_its_required_fields_names_them(make, match):
    with pytest.raises(ParamError, match=match):
        make()


def test_a_changed_dataset_pairs_the_runs_span_with_the_runs_fingerprint():
    """It read "its candles (1h, <the run's span>) have fingerprint <the new data's>"; the span is its first and last
    bar, as the captions say it (it was the recorded bounds, the end exclusive)."""
    ref = DatasetRef(source="bt/BTCUSDT-1h", timeframe="1h", start="2025-01-01T00:00", end="2025-03-01T00:00",
                     fingerprint="f82bf8b3ebec" + "0" * 20)
    text = str(ref.changed("bf6d69ea1c92" + "1" * 20))
    assert ("the run used its candles (1h, 2025-01-01 00:00 to 2025-02-28 23:00) with fingerprint f82bf8b3ebec, "
            "its candles now give bf6d69ea1c92") in text


def test_a_file_and_a_dataset_both_gone_say_so_in_one_short_line(candles, data_root):
    """It read "dataset X, file P is gone: P: file not found; unknown dataset 'X' in ...; available:
    <every dataset under two names>"."""
    ref = DatasetRef.of(threadx.load_ohlcv(str(candles)))
    assert ref.name and ref.name != ref.source
    candles.unlink()
    with pytest.raises(DataError) as gone:
        ref.load()
    assert str(gone.value) == (f"dataset {ref.name} is gone: its file {ref.source} is not found, and no dataset of "
                               "that name is in the data folder")
