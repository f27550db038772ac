"""Downloads against a fake exchange: pagination, resume, retries, atomicity, validation."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import ccxt
import numpy as np
import pandas as pd
import pytest

from threadx.data import fetch_ohlcv, list_datasets, read_ohlcv_file
from threadx.errors import FetchError

HOUR_MS = 3_600_000
T0_MS = int(pd.Timestamp("2024-01-01", tz="UTC").value // 10**6)
MISSING = 100  # the exchange never had this candle


def candle(i: int) -> list[float]:
    o = 100.0 + i + 0.25 * (i % 7)
    c = o + (0.5 if i % 2 else -0.5)
    return [T0_MS + i * HOUR_MS, o, max(o, c) + 1.0, min(o, c) - 1.0, c, 10.0 + i]


class FakeExchange:
    """ccxt's fetch_ohlcv contract over a list of hourly candles.

    Pages start at ``since`` (``limit`` candles); from the second page on, the page also
    repeats the candle just before ``since`` (a duplicate across the page boundary). The
    candle that is still open at ``now`` is returned too, as real exchanges do.
    ``failures`` maps a call number (1-based) to the exception that call raises;
    ``always`` makes every call raise.
    """

    id = "fakex"
    rateLimit = 50

    def __init__(self, n: int, now_ms: int | None = None, failures: dict | None = None, always=None) -> None:
        self.candles = [candle(i) for i in range(n) if i != MISSING]
        self.now_ms = now_ms if now_ms is not None else T0_MS + (n - 1) * HOUR_MS + HOUR_MS // 2
        self.failures = failures or {}
        self.always = always
        self.calls: list[int | None] = []
        self.overlap_first_page = False

    def milliseconds(self) -> int:
        return self.now_ms

    def extend(self, n: int) -> None:
        """The clock moves on: candles up to index n-1 exist, the last one still open."""
        self.candles = [candle(i) for i in range(n) if i != MISSING]
        self.now_ms = T0_MS + (n - 1) * HOUR_MS + HOUR_MS // 2

    def fetch_ohlcv(self, symbol: str, timeframe: str = "1m", since: int | None = None, limit: int | None = None):
        assert symbol == "BTC/USDT" and timeframe == "1h"
        self.calls.append(since)
        if self.always is not None:
            raise self.always
        if len(self.calls) in self.failures:
            raise self.failures[len(self.calls)]
        visible = [c for c in self.candles if c[0] <= self.now_ms]
        start = since if since is not None else visible[-1][0] - (limit - 1) * HOUR_MS
        page = [list(c) for c in visible if c[0] >= start][: limit or 500]
        if len(self.calls) > 1 or self.overlap_first_page:
            before = [list(c) for c in visible if c[0] < start]
            if before:
                page = ([before[-1]] + page)[: limit or 500]
        return page


def expected_frame(closed_upto: int) -> pd.DataFrame:
    rows = np.array([candle(i) for i in range(closed_upto) if i != MISSING])
    index = pd.DatetimeIndex(pd.to_datetime(rows[:, 0].astype(np.int64), unit="ms", utc=True), name="timestamp")
    return pd.DataFrame(rows[:, 1:], columns=["open", "high", "low", "close", "volume"], index=index.as_unit("ns"))


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)

    @property
    def backoffs(self) -> list[float]:
        return [s for s in self if s >= 1.0]


def run(fake, root: Path, **kwargs):
    sleeps = kwargs.pop("sleep", Sleeps())
    kwargs.setdefault("limit", 100)
    kwargs.setdefault("since", T0_MS)
    result = fetch_ohlcv(fake, "BTC/USDT", "1h", data_root=root, sleep=sleeps, **kwargs)
    return result, sleeps


def test_full_download_equals_the_exchange_data(tmp_path: Path) -> None:
    fake = FakeExchange(250)
    progress: list[tuple[int, int]] = []
    result, sleeps = run(fake, tmp_path, progress=lambda done, total: progress.append((done, total)))
    assert result.path == tmp_path / "fakex" / "BTC_USDT-1h.parquet"
    stored = read_ohlcv_file(result.path)
    pd.testing.assert_frame_equal(stored, expected_frame(249), check_freq=False)  # candle 249 still open
    assert result.new_bars == result.total_bars == 248
    assert len(fake.calls) == 3 and fake.calls[0] == T0_MS
    assert sleeps == [0.05] * (len(fake.calls) - 1)  # rateLimit between calls, no backoff
    assert progress[-1][0] == progress[-1][1] and progress == sorted(progress)
    # the missing candle is a gap in the report
    gap_start = pd.Timestamp(T0_MS + MISSING * HOUR_MS, unit="ms", tz="UTC")
    assert result.report.ok and result.report.gap_count == 1
    assert result.gaps == [(gap_start, gap_start + pd.Timedelta("1h"), 1)]
    assert list_datasets(tmp_path)["name"].tolist() == ["fakex/BTC_USDT-1h"]


def test_incremental_second_call_fetches_only_new_bars(tmp_path: Path) -> None:
    fake = FakeExchange(250)
    run(fake, tmp_path)
    fake.extend(280)
    fake.calls.clear()
    result, _ = run(fake, tmp_path, since=None)
    assert fake.calls[0] == T0_MS + 249 * HOUR_MS  # right after the last stored bar
    assert result.new_bars == 30 and result.total_bars == 278
    pd.testing.assert_frame_equal(read_ohlcv_file(result.path), expected_frame(279), check_freq=False)


def test_merge_keeps_the_newly_fetched_row(tmp_path: Path) -> None:
    fake = FakeExchange(250)
    run(fake, tmp_path)
    fake.extend(260)
    fake.candles[247][5] = 12345.0  # the exchange revised the last stored candle (index 248)
    fake.overlap_first_page = True  # and sends it again before the requested page
    fake.calls.clear()
    result, _ = run(fake, tmp_path)
    stored = read_ohlcv_file(result.path)
    assert stored.index.is_unique and len(stored) == 258
    assert stored["volume"].iloc[247] == 12345.0
    assert result.new_bars == 10


def test_nothing_new_leaves_the_file_untouched(tmp_path: Path) -> None:
    fake = FakeExchange(250)
    result, _ = run(fake, tmp_path)
    before, mtime = result.path.read_bytes(), result.path.stat().st_mtime_ns
    again, _ = run(fake, tmp_path)
    assert again.new_bars == 0 and again.total_bars == 248
    assert result.path.read_bytes() == before and result.path.stat().st_mtime_ns == mtime


def test_retries_with_exponential_backoff(tmp_path: Path) -> None:
    fake = FakeExchange(
        250,
        failures={
            2: ccxt.RateLimitExceeded("429 too many requests"),
            3: ccxt.NetworkError("connection reset"),
            4: ccxt.RequestTimeout("timed out"),
            6: ccxt.DDoSProtection("cloudflare"),
        },
    )
    result, sleeps = run(fake, tmp_path)
    assert sleeps.backoffs == [1.0, 2.0, 4.0, 1.0]  # doubling per failed attempt, reset after success
    assert fake.calls[1] == fake.calls[2] == fake.calls[3] == fake.calls[4]  # the same page retried
    pd.testing.assert_frame_equal(read_ohlcv_file(result.path), expected_frame(249), check_freq=False)


def test_permanent_network_failure_keeps_the_stored_file(tmp_path: Path) -> None:
    fake = FakeExchange(250)
    result, _ = run(fake, tmp_path)
    before = result.path.read_bytes()
    broken = FakeExchange(300, always=ccxt.NetworkError("no route to host"))
    with pytest.raises(FetchError, match="NetworkError after 3 retries") as info:
        run(broken, tmp_path, max_retries=3, sleep=(sleeps := Sleeps()))
    assert "fakex BTC/USDT 1h" in str(info.value)
    assert len(broken.calls) == 4 and sleeps.backoffs == [1.0, 2.0, 4.0]
    assert result.path.read_bytes() == before
    assert [p.name for p in result.path.parent.iterdir()] == ["BTC_USDT-1h.parquet"]


def _offline_error(errno: int = -2, text: str = "Name or service not known") -> Exception:
    """What ccxt raises offline: a NetworkError from requests' ConnectionError from a gaierror."""
    import socket

    try:
        try:
            raise socket.gaierror(errno, text)
        except socket.gaierror as cause:
            raise ccxt.NetworkError("fakex GET https://api.fakex.com/v3/klines") from cause
    except ccxt.NetworkError as exc:
        return exc


def test_a_host_that_does_not_resolve_is_retried_once_not_five_times(tmp_path: Path) -> None:
    """Offline, a download waited 31 s (1 + 2 + 4 + 8 + 16 s of backoff) before its error."""
    broken = FakeExchange(300, always=_offline_error())
    with pytest.raises(FetchError, match=r"the exchange's host cannot be resolved \(no network, or no DNS\?\)"):
        run(broken, tmp_path, max_retries=5, sleep=(sleeps := Sleeps()))
    assert len(broken.calls) == 2 and sleeps.backoffs == [1.0]


def test_a_resolver_that_says_try_again_is_retried_as_any_network_error(tmp_path: Path) -> None:
    import socket

    broken = FakeExchange(300, always=_offline_error(socket.EAI_AGAIN, "Temporary failure in name resolution"))
    with pytest.raises(FetchError, match="NetworkError after 3 retries"):
        run(broken, tmp_path, max_retries=3, sleep=(sleeps := Sleeps()))
    assert sleeps.backoffs == [1.0, 2.0, 4.0]


def test_failure_midway_writes_nothing(tmp_path: Path) -> None:
    fake = FakeExchange(250, failures={2: ccxt.BadSymbol("market delisted")})
    with pytest.raises(FetchError, match="BadSymbol"):
        run(fake, tmp_path)
    assert len(fake.calls) == 2  # exchange errors are not retried
    assert not (tmp_path / "fakex").exists() or not any((tmp_path / "fakex").iterdir())


def test_invalid_candles_are_not_saved(tmp_path: Path) -> None:
    fake = FakeExchange(250)
    result, _ = run(fake, tmp_path)
    before = result.path.read_bytes()
    fake.extend(260)
    fake.candles[-3][2] = fake.candles[-3][3] - 1.0  # high below low
    with pytest.raises(FetchError, match="invalid"):
        run(fake, tmp_path)
    assert result.path.read_bytes() == before


def test_until_and_open_candle(tmp_path: Path) -> None:
    fake = FakeExchange(250)
    result, _ = run(fake, tmp_path, until=pd.Timestamp(T0_MS + 50 * HOUR_MS, unit="ms", tz="UTC"))
    stored = read_ohlcv_file(result.path)
    assert len(stored) == 50 and stored.index[-1] == pd.Timestamp(T0_MS + 49 * HOUR_MS, unit="ms", tz="UTC")


def test_backfill_before_the_first_stored_bar(tmp_path: Path) -> None:
    fake = FakeExchange(250)
    run(fake, tmp_path, since=T0_MS + 150 * HOUR_MS)
    result, _ = run(fake, tmp_path, since="2024-01-01")
    assert result.new_bars == 149  # 0..149 without the missing candle
    pd.testing.assert_frame_equal(read_ohlcv_file(result.path), expected_frame(249), check_freq=False)


def test_empty_exchange_raises(tmp_path: Path) -> None:
    fake = FakeExchange(250)
    fake.candles = []
    with pytest.raises(FetchError, match="no closed candle"):
        run(fake, tmp_path)
    assert not (tmp_path / "fakex" / "BTC_USDT-1h.parquet").exists()


def test_exchange_id_string_builds_a_rate_limited_ccxt_exchange(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeExchange(30)
    seen = {}

    def fetch(self, symbol, timeframe="1m", since=None, limit=None, params=None):
        seen["rate_limited"] = self.enableRateLimit
        return fake.fetch_ohlcv(symbol, timeframe, since, limit)

    monkeypatch.setattr(ccxt.binance, "fetch_ohlcv", fetch)
    monkeypatch.setattr(ccxt.binance, "milliseconds", lambda self: fake.now_ms)
    result = fetch_ohlcv("binance", "BTC_USDT", "1h", since=T0_MS, data_root=tmp_path, sleep=lambda s: None)
    assert seen["rate_limited"] is True
    assert result.path == tmp_path / "binance" / "BTC_USDT-1h.parquet" and result.total_bars == 29
    with pytest.raises(FetchError, match="unknown exchange"):
        fetch_ohlcv("no_such_exchange", "BTC/USDT", data_root=tmp_path)


def test_importing_threadx_data_does_not_import_ccxt() -> None:
    code = "import sys, threadx.data; assert 'ccxt' not in sys.modules, 'ccxt imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


@pytest.mark.parametrize("since", ["garbage", "2024-13-45", "", "-1"])
def test_a_since_that_is_no_time_is_one_clear_error(tmp_path: Path, since: str) -> None:
    """pandas' DateParseError and OverflowError escaped as tracebacks (`--since garbage`)."""
    from threadx.errors import ParamError

    with pytest.raises(ParamError, match="is not a time"):
        fetch_ohlcv(FakeExchange(10), "BTC/USDT", "1h", since=since, data_root=tmp_path)
    assert not list(tmp_path.rglob("*.parquet"))  # nothing half-written


def test_downloads_after_one_the_exchange_did_not_answer_are_not_tried(tmp_path: Path, monkeypatch, capsys) -> None:
    """Offline, each download waited through its retries (about 31 s each; 9 minutes for 2 symbols
    x 2 timeframes with funding): once the exchange does not answer, the rest say so at once."""
    from threadx.cli import main
    from threadx.data import fetch as fetch_module

    calls = []

    def fetch(self, symbol, timeframe="1m", since=None, limit=None, params=None):
        calls.append(symbol)
        raise ccxt.NetworkError("no route to host")

    monkeypatch.setattr(ccxt.binance, "fetch_ohlcv", fetch)
    monkeypatch.setattr(fetch_module, "BACKOFF_BASE_S", 0.0)
    monkeypatch.setenv("THREADX_DATA_ROOT", str(tmp_path))
    code = main(["data", "fetch", "--exchange", "binance", "--symbol", "BTC/USDT,ETH/USDT", "--timeframe", "1h,4h",
                 "--json"])
    entries = json.loads(capsys.readouterr().out)
    assert code == 2 and set(calls) == {"BTC/USDT"}  # only the first download asked the exchange
    assert "NetworkError after" in entries[0]["error"]
    assert [e["error"] for e in entries[1:]] == ["not tried: binance did not answer an earlier download"] * 3
    assert not list(tmp_path.rglob("*.parquet"))


@pytest.mark.parametrize("what", ["candles", "funding"])
def test_until_not_after_since_is_refused_before_the_exchange_is_asked(tmp_path: Path, what: str) -> None:
    """It read "the exchange returned no closed candle between ? and ?" (never asked), or "0 new
    bars" with exit 0."""
    from threadx.data.funding import fetch_funding
    from threadx.errors import ParamError

    fake = FakeExchange(250)
    fetch = fetch_ohlcv if what == "candles" else fetch_funding
    with pytest.raises(ParamError, match=r"until \(2024-01-01\) is not after since \(2024-02-01\)"):
        fetch(fake, "BTC/USDT", since="2024-02-01", until="2024-01-01", data_root=tmp_path)
    assert fake.calls == [] and not list(tmp_path.iterdir())
