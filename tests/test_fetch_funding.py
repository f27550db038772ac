"""Funding-rate downloads against a fake exchange: pagination, duplicates, a gap, network errors."""
from __future__ import annotations

from pathlib import Path

import ccxt
import numpy as np
import pandas as pd
import pytest

from threadx.data.funding import fetch_funding, funding_fingerprint, funding_path, read_funding_file
from threadx.errors import FetchError

SETTLE_MS = 8 * 3_600_000
T0_MS = int(pd.Timestamp("2024-01-01", tz="UTC").value // 10**6)
MISSING = (40, 41)  # the exchange never published these two settlements


def rate(i: int) -> float:
    return 0.0001 * (1 + (i % 5)) - 0.00015 * (i % 3 == 0)


def settlement(i: int) -> dict:
    return {"symbol": "BTC/USDT:USDT", "timestamp": T0_MS + i * SETTLE_MS, "fundingRate": rate(i),
            "datetime": pd.Timestamp(T0_MS + i * SETTLE_MS, unit="ms", tz="UTC").isoformat(), "info": {}}


class FakeFundingExchange:
    """ccxt's fetch_funding_rate_history contract over 8-hourly settlements.

    Pages start at ``since`` (``limit`` items); from the second call on, a page also repeats the
    settlement just before ``since`` (a duplicate across the page boundary). ``failures`` maps a
    call number (1-based) to the exception it raises; ``fail_from`` makes every call from that
    number on raise ``always``.
    """

    id = "fakex"
    rateLimit = 20
    has = {"fetchFundingRateHistory": True, "fetchOHLCV": True}

    def __init__(self, n: int, failures: dict | None = None, fail_from: int | None = None, always=None) -> None:
        self.n = n
        self.failures = failures or {}
        self.fail_from, self.always = fail_from, always
        self.calls: list[int | None] = []

    def milliseconds(self) -> int:
        return T0_MS + (self.n - 1) * SETTLE_MS + 3_600_000

    def fetch_funding_rate_history(self, symbol=None, since=None, limit=None, params=None):
        assert symbol == "BTC/USDT"
        self.calls.append(since)
        k = len(self.calls)
        if self.fail_from is not None and k >= self.fail_from:
            raise self.always
        if k in self.failures:
            raise self.failures[k]
        items = [settlement(i) for i in range(self.n) if i not in MISSING]
        page = [s for s in items if s["timestamp"] >= since][:limit]
        before = [s for s in items if s["timestamp"] < since]
        if k > 1 and before:
            page = ([before[-1]] + page)[:limit]
        return page


def expected(n: int) -> pd.Series:
    idx = [i for i in range(n) if i not in MISSING]
    index = pd.DatetimeIndex(pd.to_datetime([T0_MS + i * SETTLE_MS for i in idx], unit="ms", utc=True),
                             name="timestamp").as_unit("ns")
    return pd.Series([rate(i) for i in idx], index=index, name="rate")


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)

    @property
    def backoffs(self) -> list[float]:
        return [s for s in self if s >= 1.0]


def run(fake, root: Path, **kwargs):
    sleeps = kwargs.pop("sleep", Sleeps())
    kwargs.setdefault("limit", 25)
    kwargs.setdefault("since", T0_MS)
    return fetch_funding(fake, "BTC/USDT", data_root=root, sleep=sleeps, **kwargs), sleeps


def test_paginated_download_with_duplicates_and_a_gap(tmp_path: Path) -> None:
    fake = FakeFundingExchange(100)
    result, sleeps = run(fake, tmp_path)
    assert result.path == tmp_path / "fakex" / "BTC_USDT-funding.parquet" == funding_path("fakex", "BTC/USDT", tmp_path)
    stored = read_funding_file(result.path)
    pd.testing.assert_series_equal(stored, expected(100), check_freq=False)  # duplicates dropped
    assert stored.index.is_unique and result.new_rows == result.total_rows == 98
    # 25 + 4 x 24 new settlements (each later page repeats one), then a page with nothing new
    assert fake.calls[0] == T0_MS and len(fake.calls) == 6
    assert all(b > a for a, b in zip(fake.calls, fake.calls[1:]))  # always forward: last timestamp + 1
    assert fake.calls[1] == T0_MS + 24 * SETTLE_MS + 1
    assert sleeps == [0.02] * (len(fake.calls) - 1)
    # the gap is reported, not filled in
    assert result.missing_settlements == 2
    before, after, missing = result.gaps[0]
    assert (before, after, missing) == (stored.index[39], stored.index[40], 2)
    assert after - before == pd.Timedelta(hours=24)
    parquet = pd.read_parquet(result.path)
    assert list(parquet.columns) == ["timestamp", "rate"] and str(parquet["timestamp"].dt.tz) == "UTC"


def test_incremental_second_fetch_asks_only_after_the_last_settlement(tmp_path: Path) -> None:
    run(FakeFundingExchange(60), tmp_path)
    fake = FakeFundingExchange(90)
    result, _ = run(fake, tmp_path, since=None)
    assert fake.calls[0] == T0_MS + 59 * SETTLE_MS + 1
    assert result.new_rows == 30 and result.total_rows == 88
    pd.testing.assert_series_equal(read_funding_file(result.path), expected(90), check_freq=False)
    mtime = result.path.stat().st_mtime_ns
    again, _ = run(FakeFundingExchange(90), tmp_path, since=None)
    assert again.new_rows == 0 and result.path.stat().st_mtime_ns == mtime  # nothing new: file untouched


def test_network_error_once_is_retried(tmp_path: Path) -> None:
    fake = FakeFundingExchange(100, failures={2: ccxt.NetworkError("connection reset"),
                                              3: ccxt.RequestTimeout("timed out")})
    result, sleeps = run(fake, tmp_path)
    assert sleeps.backoffs == [1.0, 2.0]
    assert fake.calls[1] == fake.calls[2] == fake.calls[3]  # the same page retried
    pd.testing.assert_series_equal(read_funding_file(result.path), expected(100), check_freq=False)


def test_lasting_network_error_keeps_what_was_downloaded(tmp_path: Path) -> None:
    fake = FakeFundingExchange(100, fail_from=3, always=ccxt.NetworkError("no route to host"))
    sleeps = Sleeps()
    with pytest.raises(FetchError, match="NetworkError after 2 retries") as info:
        run(fake, tmp_path, max_retries=2, sleep=sleeps)
    assert "fakex BTC/USDT funding" in str(info.value) and "49 settlements" in str(info.value)
    assert sleeps.backoffs == [1.0, 2.0]
    stored = read_funding_file(tmp_path / "fakex" / "BTC_USDT-funding.parquet")
    pd.testing.assert_series_equal(stored, expected(51), check_freq=False)  # pages 1-2 kept (0..50 less the gap)
    # the next call resumes after them
    fake2 = FakeFundingExchange(100)
    result, _ = run(fake2, tmp_path, since=None)
    assert fake2.calls[0] == T0_MS + 50 * SETTLE_MS + 1
    pd.testing.assert_series_equal(read_funding_file(result.path), expected(100), check_freq=False)
    assert [p.name for p in result.path.parent.iterdir()] == ["BTC_USDT-funding.parquet"]  # no temp file


def test_exchange_error_is_not_retried_and_writes_nothing(tmp_path: Path) -> None:
    fake = FakeFundingExchange(100, failures={1: ccxt.BadSymbol("no such market")})
    with pytest.raises(FetchError, match="BadSymbol"):
        run(fake, tmp_path)
    assert len(fake.calls) == 1 and not (tmp_path / "fakex" / "BTC_USDT-funding.parquet").exists()


def test_exchange_without_funding_history(tmp_path: Path) -> None:
    fake = FakeFundingExchange(10)
    fake.has = {"fetchFundingRateHistory": False}
    with pytest.raises(FetchError, match="does not provide funding-rate history"):
        run(fake, tmp_path)
    assert fake.calls == []


def test_until_is_exclusive(tmp_path: Path) -> None:
    result, _ = run(FakeFundingExchange(100), tmp_path, until=T0_MS + 10 * SETTLE_MS)
    pd.testing.assert_series_equal(read_funding_file(result.path), expected(10), check_freq=False)


def test_fingerprint_follows_the_rows() -> None:
    a, b = expected(20), expected(20).copy()
    assert funding_fingerprint(a) == funding_fingerprint(b)
    b.iloc[3] += 1e-9
    assert funding_fingerprint(a) != funding_fingerprint(b)
    assert np.isfinite(a.to_numpy()).all()


def test_exchange_id_string_uses_ccxt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeFundingExchange(30)
    seen = {}

    def fetch(self, symbol=None, since=None, limit=None, params={}):
        seen["rate_limited"] = self.enableRateLimit
        return fake.fetch_funding_rate_history(symbol, since, limit)

    monkeypatch.setattr(ccxt.binance, "fetch_funding_rate_history", fetch)
    monkeypatch.setattr(ccxt.binance, "milliseconds", lambda self: fake.milliseconds())
    result = fetch_funding("binance", "BTC_USDT", since=T0_MS, data_root=tmp_path, sleep=lambda s: None)
    assert seen["rate_limited"] is True
    assert result.path == tmp_path / "binance" / "BTC_USDT-funding.parquet" and result.total_rows == 30
