"""Statistical validation modules (SPEC §7): bootstrap, DSR, PBO, regimes, grading.

Expectations are hand-computed or analytic; random inputs are seeded, and the tolerances of
the statistical tests are justified where they are set.
"""
from __future__ import annotations

import itertools
import json
import math
import time
import tracemalloc

import numpy as np
import pandas as pd
import pytest

from threadx.engine.metrics import metrics_from_equity
from threadx.errors import ParamError
from threadx.validation.bootstrap import (
    _compound_stats,
    block_bootstrap,
    drawdown_quantiles,
    trade_shuffle_drawdowns,
)
from threadx.validation.dsr import (
    deflated_sharpe_from_returns,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    probabilistic_sharpe_ratio,
    sharpe_moments,
)
from threadx.validation.grading import GATE_RULE, grade, letter_for, score_text, withheld_because
from threadx.validation.pbo import pbo_from_moments, pbo_from_returns
from threadx.validation.regimes import classify_regime, regime_summary

HOUR = 3600 * 10**9
DAY = 24 * HOUR


def _phi(z: float) -> float:
    """Standard normal CDF written independently of the module (via erf)."""
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


# ----------------------------------------------------------------------------- bootstrap


def test_bootstrap_statistics_follow_the_spec_conventions() -> None:
    rng = np.random.default_rng(3)
    r = rng.normal(0.0004, 0.01, 800)
    res = block_bootstrap(r, n=100, seed=1, bars_per_year=8760.0)
    eq = np.cumprod(1 + r)
    ref = metrics_from_equity(eq, pd.DataFrame({"pnl": [], "fees": [], "bars_held": []}), 1.0, 8760.0)
    assert res.observed["sharpe"] == pytest.approx(ref["sharpe"], rel=1e-12)
    assert res.observed["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(8760), rel=1e-12)
    assert res.observed["total_return"] == pytest.approx(np.prod(1 + r) - 1, rel=1e-10)
    assert res.observed["max_drawdown"] == pytest.approx(ref["max_drawdown"], rel=1e-12)
    assert res.block == math.ceil(math.sqrt(800)) == 29
    # the vectorised per-resample statistics equal the engine's reference on every row
    rows = np.stack([r, r[::-1], np.roll(r, 100)])
    total, mdd = _compound_stats(rows)
    for k in range(3):
        m = metrics_from_equity(np.cumprod(1 + rows[k]), pd.DataFrame({"pnl": [], "fees": [], "bars_held": []}),
                                1.0, 8760.0)
        assert total[k] == pytest.approx(m["total_return"], rel=1e-10)
        assert mdd[k] == pytest.approx(m["max_drawdown"], rel=1e-12)


def test_drawdown_counts_a_first_bar_loss_from_the_initial_equity() -> None:
    # equity 0.9, 0.99: the peak is the initial 1, so the max drawdown is -10 %
    total, mdd = _compound_stats(np.array([[-0.1, 0.1]]))
    assert mdd[0] == pytest.approx(-0.1)
    assert total[0] == pytest.approx(0.9 * 1.1 - 1)


def test_bootstrap_resamples_are_circular_blocks_and_seeded() -> None:
    # Returns 0..T-1 scaled: from a resample's values we can read back its indices.
    t, block, n = 100, 7, 100  # (at least 10 blocks of 7 in a resample: t >= 70)
    r = np.arange(t) * 1e-4
    a = block_bootstrap(r, n=n, block=block, seed=9, bars_per_year=365)
    b = block_bootstrap(r, n=n, block=block, seed=9, bars_per_year=365)
    c = block_bootstrap(r, n=n, block=block, seed=10, bars_per_year=365)
    for k in a.samples:
        np.testing.assert_array_equal(a.samples[k], b.samples[k])
    assert not np.array_equal(a.samples["sharpe"], c.samples["sharpe"])
    # Rebuild the first resample from the generator stream and check its statistics.
    rng = np.random.default_rng(9)
    starts = rng.integers(0, t, size=(n, math.ceil(t / block)))
    idx = ((starts[:, :, None] + np.arange(block)).reshape(n, -1)[:, :t]) % t
    x = r[idx]
    sharpe = x.mean(axis=1) / x.std(axis=1, ddof=1) * math.sqrt(365)
    np.testing.assert_allclose(a.samples["sharpe"], sharpe, rtol=1e-12)
    np.testing.assert_allclose(a.samples["total_return"], np.prod(1 + x, axis=1) - 1, rtol=1e-12)
    # each block is consecutive bars that wrap around the end
    steps = np.diff(idx[0].reshape(-1)[: (t // block) * block].reshape(-1, block), axis=1)
    assert set(np.unique(steps % t)) == {1}


def test_bootstrap_ci_is_the_percentile_interval_and_to_dict_is_json() -> None:
    rng = np.random.default_rng(4)
    res = block_bootstrap(rng.normal(0.001, 0.01, 300), n=200, bars_per_year=365, confidence=0.8)
    for k, (lo, hi) in res.ci.items():
        assert lo == pytest.approx(np.quantile(res.samples[k], 0.1))
        assert hi == pytest.approx(np.quantile(res.samples[k], 0.9))
        assert lo <= hi
    d = res.to_dict()
    text = json.dumps(d)
    assert json.loads(text)["n"] == 200 and len(d["samples"]["sharpe"]) == 200 and len(d["null_sharpes"]) == 200
    assert "demeaned" in d["null"]
    assert "samples" not in res.to_dict(include_samples=False)


def test_bootstrap_ci_covers_the_true_sharpe_at_the_nominal_rate() -> None:
    """200 seeded i.i.d. normal series (T = 500, true annualised Sharpe 1.53), 300 resamples each.

    The 90 % interval should cover the truth in ~90 % of replications. The binomial standard
    error over 200 replications is sqrt(0.9 * 0.1 / 200) = 0.021; we accept 0.84..0.96
    (about 2.8 standard errors), which leaves room for the known small under-coverage of a
    block bootstrap at this T (block 23 bars; 0.885 measured over 2000 replications) while
    failing an interval that is too narrow or too wide (an i.i.d. resample of the wrong
    scale, a missing annualisation or a percentile swap gives coverage far outside).
    """
    mu, sig, bpy = 0.001, 0.0125, 365.0
    true = mu / sig * math.sqrt(bpy)
    covered = below = above = 0
    reps = 200
    for i in range(reps):
        r = np.random.default_rng(1000 + i).normal(mu, sig, 500)
        lo, hi = block_bootstrap(r, n=300, seed=i, bars_per_year=bpy, confidence=0.90).ci["sharpe"]
        covered += lo <= true <= hi
        below += true < lo
        above += true > hi
    assert 0.84 <= covered / reps <= 0.96
    # both tails miss at a similar rate (~5 % each; 3 s.e. of 0.015 -> at most 0.10)
    assert below / reps <= 0.10 and above / reps <= 0.10


def test_p_value_is_small_for_a_strong_drift() -> None:
    r = np.random.default_rng(7).normal(0.003, 0.01, 500)  # t-statistic ~ 6.7
    res = block_bootstrap(r, n=500, bars_per_year=365)
    assert res.p_value == pytest.approx(1 / 501)  # no null resample reaches the observed Sharpe
    assert res.ci["sharpe"][0] > 0
    # the null resamples are centred on zero
    assert abs(np.median(res.null_sharpes)) < 0.5 * np.std(res.null_sharpes)


def test_p_value_is_roughly_uniform_under_the_null() -> None:
    """200 seeded zero-mean series: the p-values should look uniform on (0, 1].

    Standard errors over 200 draws of a uniform: mean 0.289 / sqrt(200) = 0.020, a share
    at 0.05: 0.015, a share at 0.5: 0.035. The bounds below are about 3 standard errors.
    """
    ps = np.array([
        block_bootstrap(np.random.default_rng(5000 + i).normal(0.0, 0.0125, 500), n=300, seed=i,
                        bars_per_year=365).p_value
        for i in range(200)
    ])
    assert abs(ps.mean() - 0.5) <= 0.06
    assert np.mean(ps < 0.05) <= 0.05 + 0.046
    assert abs(np.mean(ps < 0.5) - 0.5) <= 0.106
    assert ps.min() >= 1 / 301 and ps.max() <= 1.0


def test_bootstrap_refuses_a_block_that_leaves_fewer_than_10_blocks() -> None:
    """A block of T bars only rotates the series: every resample has the observed Sharpe (a
    zero-width interval) and every null resample Sharpe 0, so p = 1 / (1 + n) out of nothing."""
    r = np.random.default_rng(4).normal(0.0002, 0.01, 1000)
    with pytest.raises(ParamError, match=r"block must be at most 100 bars for 1,000 returns \(at least 10 blocks"):
        block_bootstrap(r, n=100, block=1000, seed=1, bars_per_year=8760)
    with pytest.raises(ParamError, match="at most 100 bars"):
        block_bootstrap(r, n=100, block=101, seed=1, bars_per_year=8760)
    res = block_bootstrap(r, n=100, block=100, seed=1, bars_per_year=8760)  # 10 blocks: the longest allowed
    assert res.block == 100 and res.ci["sharpe"][1] - res.ci["sharpe"][0] > 0


def test_bootstrap_default_block_on_a_short_series() -> None:
    """ceil(sqrt(T)) leaves fewer than 10 blocks below T = 100: cut to T // 10; under 10 returns
    blocks of one bar (a short walk-forward's out-of-sample record is still reported), and no longer."""
    r = np.random.default_rng(5).normal(0.0, 0.01, 60)
    assert block_bootstrap(r, n=100, seed=1, bars_per_year=365).block == 6
    assert block_bootstrap(r[:10], n=100, seed=1, bars_per_year=365).block == 1
    assert block_bootstrap(np.resize(r, 100), n=100, seed=1, bars_per_year=365).block == 10
    assert block_bootstrap(r[:3], n=100, seed=1, bars_per_year=365).block == 1
    with pytest.raises(ParamError, match="block must be at most 1 bar for 9 returns"):
        block_bootstrap(r[:9], n=100, seed=1, block=2, bars_per_year=365)


def test_bootstrap_refuses_fewer_than_100_resamples() -> None:
    """One resample gave a zero-width "95 % CI"; the bootstrap and the trade shuffles take 100 or more."""
    r = np.random.default_rng(6).normal(0.0, 0.01, 400)
    for n in (1, 99):
        with pytest.raises(ParamError, match=f"n must be at least 100 resamples, got {n}"):
            block_bootstrap(r, n=n, bars_per_year=365)
        with pytest.raises(ParamError, match="at least 100 resamples"):
            trade_shuffle_drawdowns(np.array([0.1, -0.05, 0.02]), n=n)
    assert block_bootstrap(r, n=100, bars_per_year=365).samples["sharpe"].shape == (100,)


def test_bootstrap_input_validation() -> None:
    ok = np.random.default_rng(0).normal(0, 0.01, 20)
    with pytest.raises(ParamError, match="at least 2"):
        block_bootstrap(np.array([0.01]), bars_per_year=365)
    with pytest.raises(ParamError, match="NaN"):
        block_bootstrap(np.array([0.01, np.nan, 0.02]), bars_per_year=365)
    with pytest.raises(ParamError, match="below -1"):
        block_bootstrap(np.array([0.01, -1.5, 0.02]), bars_per_year=365)
    with pytest.raises(ParamError, match="n must"):
        block_bootstrap(ok, n=0, bars_per_year=365)
    with pytest.raises(ParamError, match="block must"):
        block_bootstrap(ok, block=0, bars_per_year=365)
    with pytest.raises(ParamError, match="block must be at most 2 bars for 20 returns"):
        block_bootstrap(ok, block=3, bars_per_year=365)
    with pytest.raises(ParamError, match="bars_per_year"):
        block_bootstrap(ok, bars_per_year=0)
    with pytest.raises(ParamError, match="confidence"):
        block_bootstrap(ok, bars_per_year=365, confidence=95)
    with pytest.raises(ValueError):  # ParamError is a ValueError
        block_bootstrap(ok.reshape(4, 5), bars_per_year=365)


def test_constant_returns_have_zero_sharpe() -> None:
    res = block_bootstrap(np.full(100, 0.001), n=100, bars_per_year=365)
    assert res.observed["sharpe"] == 0.0
    assert np.all(res.samples["sharpe"] == 0.0)
    assert res.p_value == 1.0  # every null Sharpe (0) >= the observed 0
    assert res.observed["total_return"] == pytest.approx(1.001 ** 100 - 1)


def test_bootstrap_on_50k_bars_stays_within_memory() -> None:
    r = np.random.default_rng(1).normal(0.0001, 0.01, 50_000)
    tracemalloc.start()
    try:
        res = block_bootstrap(r, n=200, bars_per_year=8760)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert res.block == 224
    assert peak < 250e6, f"peak {peak / 1e6:.0f} MB"


def test_trade_shuffle_drawdowns() -> None:
    trades = np.array([0.10, -0.05, 0.02, -0.08, 0.04, 0.03, -0.02])
    dd = trade_shuffle_drawdowns(trades, n=500, seed=3)
    assert dd.shape == (500,) and np.all(dd <= 0)
    np.testing.assert_array_equal(dd, trade_shuffle_drawdowns(trades, n=500, seed=3))
    # The deepest drawdown is the three losses in a row (wherever they sit): 0.95*0.92*0.98 - 1.
    # 1 order in 7 has them adjacent (5 * 3! * 4! / 7!), so 500 draws reach it.
    worst = 0.95 * 0.92 * 0.98 - 1
    assert dd.min() == pytest.approx(worst, abs=1e-12)
    # the total return is the same in every order, so only the path varies
    assert set(np.round(trade_shuffle_drawdowns(np.array([0.05, -0.1]), n=200, seed=0), 12)) == {-0.1}
    # two losses of 10 % and two gains of 20 %: adjacent losses -> -19 %, separated -> -10 %
    mixed = trade_shuffle_drawdowns(np.array([-0.1, 0.2, -0.1, 0.2]), n=300, seed=0)
    assert set(np.round(mixed, 12)) == {-0.1, -0.19}
    share_adjacent = np.mean(np.isclose(mixed, -0.19))  # 3 of the 6 distinct orders
    assert abs(share_adjacent - 0.5) < 0.1
    q = drawdown_quantiles(mixed, levels=(0.25, 0.95))
    assert q == {"q25": pytest.approx(-0.1), "q95": pytest.approx(-0.19)}
    with pytest.raises(ParamError):
        trade_shuffle_drawdowns(np.array([]), n=100)


# ----------------------------------------------------------------------------- DSR


def test_dsr_reproduces_the_paper_numerical_example() -> None:
    """Bailey & López de Prado (2014), "The Deflated Sharpe Ratio", numerical example.

    Inputs: N = 100 independent trials; the selected strategy has an annualised Sharpe of
    2.5 on daily data over 5 years, T = 1250 observations (250 a year); the variance of the
    annualised trial Sharpes is 1/2; skewness -3, kurtosis 10 (non-excess). Per period:
    SR = 2.5 / sqrt(250) = 0.1581, V = 0.5 / 250 = 0.002. The paper reports
    SR0 ~ 0.1132 (per period) and DSR ~ 0.9004; the formula gives 0.113172 and 0.900397,
    so the published figures are the exact values rounded to 4 decimals.
    """
    sr, v = 2.5 / math.sqrt(250), 0.5 / 250
    res = deflated_sharpe_ratio(sr, 1250, -3.0, 10.0, 100, v)
    assert res.sr0 == pytest.approx(0.1132, abs=1e-4)
    assert res.dsr == pytest.approx(0.9004, abs=1e-4)
    assert expected_max_sharpe(100, v) == pytest.approx(res.sr0)
    # hand check of the z-score: (0.158114 - 0.113172) sqrt(1249) / sqrt(1 + 3*0.158114 + 9/4*0.025)
    z = (sr - res.sr0) * math.sqrt(1249) / math.sqrt(1 + 3 * sr + 2.25 * sr * sr)
    assert res.z == pytest.approx(z, rel=1e-12)
    assert res.dsr == pytest.approx(_phi(z), abs=1e-12)
    d = res.to_dict()
    assert d["t"] == 1250 and json.loads(json.dumps(d))["n_trials"] == 100.0
    # The predecessor's bug: an annualised Sharpe with a per-period T saturates the DSR.
    assert deflated_sharpe_ratio(2.5, 1250, -3.0, 10.0, 100, v).dsr > 0.9999


def test_expected_max_sharpe() -> None:
    assert expected_max_sharpe(1, 0.5) == 0.0
    assert expected_max_sharpe(100, 0.0) == 0.0
    # E[max of 2 standard normals] = 1/sqrt(pi) = 0.564; the approximation is rough at N = 2
    # but must increase with N and scale with sqrt(V)
    values = [expected_max_sharpe(n, 1.0) for n in (2, 10, 100, 1000, 10_000)]
    assert values == sorted(values)
    assert expected_max_sharpe(1000, 4.0) == pytest.approx(2 * expected_max_sharpe(1000, 1.0))
    # large N: close to the Monte Carlo expectation of the max of N standard normals (3.24 at 1000)
    assert expected_max_sharpe(1000, 1.0) == pytest.approx(3.24, abs=0.05)
    for bad in (0, 0.5, -3, float("nan")):
        with pytest.raises(ParamError):
            expected_max_sharpe(bad, 1.0)
    with pytest.raises(ParamError):
        expected_max_sharpe(10, -1.0)


def test_dsr_falls_when_trials_rise_and_when_history_shrinks() -> None:
    # daily Sharpe 0.15 (2.9 annualised) against trials with an annualised Sharpe variance of 0.5
    sr, v = 0.15, 0.5 / 365
    by_n = [deflated_sharpe_ratio(sr, 1000, 0.0, 3.0, n, v).dsr for n in (1, 10, 100, 1000, 10_000)]
    assert all(a > b for a, b in itertools.pairwise(by_n)), by_n
    assert by_n[-1] < 0.75  # SR0(10,000 trials) = 0.142, just below the observed 0.15
    by_t = [deflated_sharpe_ratio(sr, t, 0.0, 3.0, 100, v).dsr for t in (5000, 2000, 1000, 500, 250, 100)]
    assert all(a > b for a, b in itertools.pairwise(by_t)), by_t
    assert by_t[-1] < 0.75 and 0.99 < by_t[0] < 1.0  # per-period inputs: no saturation at 1


def test_psr_of_a_normal_series_equals_the_analytic_value() -> None:
    # Analytic PSR for normal returns (skew 0, kurt 3): Phi((SR - SR*) sqrt(T-1) / sqrt(1 + SR^2 / 2)).
    assert probabilistic_sharpe_ratio(0.1, 0.0, 101, 0.0, 3.0) == pytest.approx(
        _phi(0.1 * 10 / math.sqrt(1.005)), abs=1e-12)  # = Phi(0.99751) = 0.8407
    assert probabilistic_sharpe_ratio(0.1, 0.0, 101, 0.0, 3.0) == pytest.approx(0.8407, abs=1e-4)
    # A deterministic normal sample (quantiles of N(0.05, 1)): its moments are ~ (0.05, 0, 3).
    from statistics import NormalDist

    t = 4001
    r = 0.0005 + 0.01 * np.array([NormalDist().inv_cdf((i + 0.5) / t) for i in range(t)])
    sr, n, skew, kurt = sharpe_moments(r)
    assert n == t and abs(skew) < 1e-9 and kurt == pytest.approx(3.0, abs=0.03)
    analytic = _phi(sr * math.sqrt(t - 1) / math.sqrt(1 + sr * sr / 2))
    assert probabilistic_sharpe_ratio(sr, 0.0, n, skew, kurt) == pytest.approx(analytic, abs=1e-5)
    # PSR at its own Sharpe is one half
    assert probabilistic_sharpe_ratio(0.07, 0.07, 500, -1.0, 6.0) == pytest.approx(0.5)


def test_sharpe_moments_on_hand_computed_samples() -> None:
    # [0, 0, 0, 1]: mean 1/4, std(ddof 1) 1/2, skew 2/sqrt(3), kurt 7/3 (population moments)
    sr, t, skew, kurt = sharpe_moments(np.array([0.0, 0.0, 0.0, 1.0]))
    assert (sr, t) == (pytest.approx(0.5), 4)
    assert skew == pytest.approx(2 / math.sqrt(3))
    assert kurt == pytest.approx(7 / 3)
    # a symmetric two-point series: skew 0, kurtosis 1 (the minimum)
    sr, t, skew, kurt = sharpe_moments(np.array([1.0, -1.0] * 5))
    assert sr == 0.0 and skew == pytest.approx(0.0) and kurt == pytest.approx(1.0)
    sr, t, skew, kurt = sharpe_moments(np.full(10, 0.01))  # no variance: no skewness or kurtosis
    assert (sr, t) == (0.0, 10) and math.isnan(skew) and math.isnan(kurt)
    with pytest.raises(ParamError):
        sharpe_moments(np.array([0.01]))
    with pytest.raises(ParamError):
        probabilistic_sharpe_ratio(0.1, 0.0, 100, 0.0, 0.0)  # excess kurtosis passed by mistake


def test_returns_that_do_not_vary_have_no_deflated_sharpe() -> None:
    """All-zero returns (a strategy that never traded, flat candles) showed a DSR of 0.500 from a
    normal's skewness 0 and kurtosis 3, read as 'the probability that the true Sharpe exceeds...'."""
    res = deflated_sharpe_from_returns(np.zeros(3000), np.array([0.01, 0.02, 0.0, 0.03]))
    assert math.isnan(res.dsr) and math.isnan(res.skew) and math.isnan(res.kurt)
    assert res.unavailable.startswith("the selected returns do not vary")
    assert deflated_sharpe_from_returns(np.array([0.01, -0.02, 0.03]), np.array([0.01, 0.02])).unavailable is None


def test_deflated_sharpe_from_returns_matches_the_parts() -> None:
    rng = np.random.default_rng(11)
    trials = rng.normal(0.0, 0.03, 50)
    r = rng.normal(0.001, 0.01, 730)
    res = deflated_sharpe_from_returns(r, trials)
    sr, t, skew, kurt = sharpe_moments(r)
    ref = deflated_sharpe_ratio(sr, t, skew, kurt, 50, float(np.var(trials, ddof=1)))
    assert res == ref


# ----------------------------------------------------------------------------- PBO


def _slow_pbo(returns: np.ndarray, groups: list[np.ndarray]) -> dict:
    """CSCV straight from the paper over the per-bar matrix (the reference for the fast path)."""
    n = returns.shape[1]
    S = len(groups)
    logits, is_best, oos_best = [], [], []
    for half in itertools.combinations(range(S), S // 2):
        is_rows = np.concatenate([groups[g] for g in half])
        oos_rows = np.concatenate([groups[g] for g in range(S) if g not in half])

        def sharpe(rows):
            x = returns[rows]
            sd = x.std(axis=0, ddof=1)
            return np.where(sd > 0, x.mean(axis=0) / np.where(sd > 0, sd, 1), 0.0)

        r_is, r_oos = sharpe(is_rows), sharpe(oos_rows)
        best = int(np.argmax(r_is))
        v = r_oos[best]
        rank = sum(1.0 for x in r_oos if x < v) + (sum(1.0 for x in r_oos if x == v) + 1) / 2
        w = rank / (n + 1)
        logits.append(math.log(w / (1 - w)))
        is_best.append(r_is[best])
        oos_best.append(v)
    logits = np.array(logits)
    return {"logits": logits, "pbo": float(np.mean(logits <= 0)), "is": np.array(is_best), "oos": np.array(oos_best)}


@pytest.mark.parametrize("n_blocks", [6, 13])
def test_pbo_from_moments_matches_a_direct_cscv(n_blocks: int) -> None:
    rng = np.random.default_rng(21)
    t, n = 125, 9
    r = rng.normal(0.0, 0.01, (t, n)) + rng.normal(0.0, 0.002, n)
    r[:, 5] = r[:, 2]  # an exact duplicate: ties in the IS argmax and in the OOS ranks
    res = pbo_from_returns(r, S=6, n_blocks=n_blocks)
    blocks = np.array_split(np.arange(t), n_blocks)
    groups = [np.concatenate([blocks[b] for b in g]) for g in np.array_split(np.arange(n_blocks), 6)]
    ref = _slow_pbo(r, groups)
    assert res.n_splits == math.comb(6, 3) == 20
    np.testing.assert_allclose(res.logits, ref["logits"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.is_sharpe_best, ref["is"], rtol=1e-10)
    np.testing.assert_allclose(res.oos_sharpe_best, ref["oos"], rtol=1e-10)
    assert res.pbo == ref["pbo"]
    assert res.prob_oos_loss == pytest.approx(np.mean(ref["oos"] < 0))
    slope, intercept = np.polyfit(ref["is"], ref["oos"], 1)
    assert res.degradation_slope == pytest.approx(slope, rel=1e-8)
    assert res.degradation_intercept == pytest.approx(intercept, rel=1e-8, abs=1e-12)
    assert 5 not in res.best_index  # a tie in the IS argmax goes to the first index (2)


def test_pbo_is_zero_when_one_combo_dominates() -> None:
    rng = np.random.default_rng(8)
    r = rng.normal(0.0, 0.01, (2000, 50))
    r[:, 17] += 0.003  # per-bar Sharpe ~0.3 in every block, vs noise Sharpes of ~0.03 per half
    res = pbo_from_returns(r, S=16)
    assert res.n_splits == 12_870
    assert res.pbo == 0.0
    assert np.all(res.best_index == 17)
    assert res.prob_oos_loss == 0.0
    assert np.allclose(res.logits, math.log(50))  # OOS rank N of N: omega = 50/51


def test_pbo_is_near_one_half_for_pure_noise() -> None:
    """200 noise strategies, T = 2000, S = 16: the IS winner's OOS rank is uniform, so E[PBO] = 0.5.

    The splits of one data set are strongly dependent, so one PBO estimate is noisy: over
    200 seeded data sets we measured a standard deviation of 0.137 (range 0.20-0.83). We
    average 10 data sets (s.e. 0.043) and accept 0.5 +/- 0.15 (3.5 s.e.), while the
    dominant-combo case above gives exactly 0.
    """
    values = [pbo_from_returns(np.random.default_rng(100 + i).normal(0.0, 0.01, (2000, 200)), S=16).pbo
              for i in range(10)]
    assert abs(np.mean(values) - 0.5) <= 0.15, values
    assert all(0.05 < v < 0.95 for v in values)


def test_pbo_is_near_one_when_in_sample_winners_reverse() -> None:
    # Combo k is +a in the blocks of pattern k and -a elsewhere (zero total): whatever wins
    # in-sample loses out-of-sample, so every split is overfit.
    S, a = 4, 0.01
    patterns = list(itertools.combinations(range(S), S // 2))
    rng = np.random.default_rng(2)
    r = rng.normal(0.0, 0.001, (400, len(patterns)))
    blocks = np.array_split(np.arange(400), S)
    for k, pat in enumerate(patterns):
        for g in range(S):
            r[blocks[g], k] += a if g in pat else -a
    res = pbo_from_returns(r, S=S)
    assert res.pbo == 1.0
    assert res.prob_oos_loss == 1.0
    assert res.degradation_slope < 0


def test_pbo_subset_rule_keeps_the_winner() -> None:
    rng = np.random.default_rng(5)
    n, b = 60, 8
    counts = np.full(b, 25)
    sums = rng.normal(0, 0.05, (n, b))
    sumsq = np.abs(rng.normal(25e-4, 1e-4, (n, b)))
    res = pbo_from_moments(sums, sumsq, counts, S=4, max_combos=10, keep=[3, 41])
    assert res.n_combos == 10 and res.n_combos_total == 60 and res.subset
    assert {3, 41} <= set(res.combo_indices.tolist())
    assert "random subset of 10 of 60" in res.note
    assert set(res.best_index.tolist()) <= set(res.combo_indices.tolist())
    again = pbo_from_moments(sums, sumsq, counts, S=4, max_combos=10, keep=[3, 41])
    np.testing.assert_array_equal(res.combo_indices, again.combo_indices)
    other = pbo_from_moments(sums, sumsq, counts, S=4, max_combos=10, keep=[3, 41], seed=7)
    assert not np.array_equal(res.combo_indices, other.combo_indices)
    full = pbo_from_moments(sums, sumsq, counts, S=4, max_combos=60)
    assert full.n_combos == 60 and not full.subset and full.note == ""
    # the subset equals a run on those columns alone
    sub = pbo_from_moments(sums[res.combo_indices], sumsq[res.combo_indices], counts, S=4)
    np.testing.assert_array_equal(sub.logits, res.logits)
    d = res.to_dict()
    assert json.loads(json.dumps(d))["n_combos"] == 10 and len(d["logits"]) == math.comb(4, 2)


def test_pbo_leaves_out_failed_combos() -> None:
    rng = np.random.default_rng(6)
    r = rng.normal(0, 0.01, (300, 12))
    starts = np.arange(0, 300, 50)
    sums = np.add.reduceat(r, starts, axis=0).T
    sumsq = np.add.reduceat(r * r, starts, axis=0).T
    sums[4, 2] = np.nan
    res = pbo_from_moments(sums, sumsq, np.full(6, 50), S=6)
    assert res.n_invalid == 1 and res.n_combos == 11 and 4 not in res.combo_indices
    assert "NaN" in res.note
    with pytest.raises(ParamError, match="keep"):
        pbo_from_moments(sums, sumsq, np.full(6, 50), S=6, keep=[4])


@pytest.mark.parametrize("S", [3, 0, 1, 7, 18, 4.0, True])
def test_pbo_rejects_a_bad_S(S) -> None:
    r = np.random.default_rng(0).normal(0, 0.01, (160, 5))
    with pytest.raises(ParamError, match="S"):
        pbo_from_returns(r, S=S, n_blocks=16)


def test_an_S_of_too_many_splits_names_the_largest_that_is_not() -> None:
    """S=24 (2,704,156 splits) was refused with the advice "use S <= 24"."""
    from threadx.validation.pbo import check_S

    assert check_S(22) == 22 and math.comb(22, 11) <= 2_000_000 < math.comb(24, 12)
    with pytest.raises(ParamError, match=r"S=24 gives 2,704,156 splits \(at most 2,000,000\): use S <= 22$"):
        check_S(24)
    for huge in (1000, 100_000, 20_000_000):
        with pytest.raises(ParamError, match=rf"S={huge} gives more than 10\^18 splits .*use S <= 22$"):
            check_S(huge)  # (C(S, S/2) of these took minutes, or had too many digits to print)


def test_pbo_of_combos_that_all_gave_the_same_returns_is_not_available() -> None:
    """16 combos that never traded on flat candles tied in every split (the rank at the median,
    logit 0) and read PBO 1.00, "certainly overfit", beside a probability of OOS loss of 0."""
    s, q = np.zeros((16, 32)), np.zeros((16, 32))
    with pytest.raises(ParamError, match="all 16 combos gave the same returns in every block: none was selected"):
        pbo_from_moments(s, q, np.full(32, 10), S=8)
    s[3, 5] = 0.01  # one combo differs once: PBO is measured
    assert 0.0 <= pbo_from_moments(s, q + s * s, np.full(32, 10), S=8).pbo <= 1.0


def test_pbo_rejects_moments_that_no_returns_can_have() -> None:
    rng = np.random.default_rng(1)
    r = rng.normal(size=(40, 5))
    sums = np.add.reduceat(r, np.arange(0, 40, 5), axis=0).T
    sumsq = np.add.reduceat(r * r, np.arange(0, 40, 5), axis=0).T
    counts = np.full(8, 5)
    pbo_from_moments(sums, sumsq, counts, S=4)  # real moments: fine
    bad = sumsq.copy()
    bad[2, 3] = -1.0  # a negative sum of squares (it read PBO 1.00, "all combos gave the same returns")
    with pytest.raises(ParamError, match="impossible block moments.*first rows \\[2\\]"):
        pbo_from_moments(sums, bad, counts, S=4)
    bad = sumsq.copy()
    bad[4, 0] = sums[4, 0] ** 2 / 5 * 0.5  # below the square of the sum over the bars
    with pytest.raises(ParamError, match="impossible"):
        pbo_from_moments(sums, bad, counts, S=4)
    nan = sums.copy()
    nan[1] = np.nan  # a failed combo is left out, not impossible
    assert pbo_from_moments(nan, sumsq, counts, S=4).n_invalid == 1


def test_pbo_rejects_bad_shapes() -> None:
    s = np.zeros((4, 8))
    with pytest.raises(ParamError, match="shape"):
        pbo_from_moments(s, np.zeros((4, 7)), np.full(8, 10))
    with pytest.raises(ParamError, match="counts"):
        pbo_from_moments(s, s, np.full(7, 10), S=4)
    with pytest.raises(ParamError, match="at least 2 bars"):
        pbo_from_moments(s, s, np.array([1, 0, 0, 1, 1, 1, 1, 1]), S=8)
    with pytest.raises(ParamError, match="at least 2 bars"):  # a one-bar half: no Sharpe, every split tied
        pbo_from_returns(np.random.default_rng(0).normal(size=(3, 4)), S=2)
    with pytest.raises(ParamError, match="keep"):
        pbo_from_moments(s, s, np.full(8, 10), S=4, keep=[9])
    with pytest.raises(ParamError, match="matrix"):
        pbo_from_returns(np.zeros(10), S=2)
    with pytest.raises(ParamError, match="NaN"):
        pbo_from_returns(np.full((10, 3), np.nan), S=2)


def test_pbo_runs_5000_combos_with_16_groups_in_seconds() -> None:
    rng = np.random.default_rng(9)
    n, b = 5000, 32
    counts = np.full(b, 500)
    sums = rng.normal(0, 0.01 * math.sqrt(500), (n, b)).astype(np.float32)  # as the sweep stores them
    sumsq = rng.normal(500e-4, 5e-4, (n, b)).astype(np.float32)
    start = time.perf_counter()
    res = pbo_from_moments(sums, sumsq, counts, S=16)
    elapsed = time.perf_counter() - start
    assert res.n_splits == 12_870 and res.n_combos == 5000
    assert 0.0 <= res.pbo <= 1.0 and res.logits.shape == (12_870,)
    assert elapsed < 15.0, f"{elapsed:.1f} s"  # ~2 s on a laptop core


# ----------------------------------------------------------------------------- regimes


def _hourly(close: np.ndarray, start: int = 1_700_000_000 * 10**9) -> np.ndarray:
    return start + np.arange(len(close), dtype=np.int64) * HOUR


def test_bull_bear_and_range_windows() -> None:
    bull = np.linspace(100, 130, 60 * 24)
    lab = classify_regime(bull, _hourly(bull))
    assert lab.regime == "bull" and lab.return_pct == pytest.approx(30.0) and lab.max_drawdown == 0.0
    # a slow 35 % fall over 60 days: only ~10 % within any 14 days -> bear, not crash
    slow = 100 * 0.65 ** np.linspace(0, 1, 60 * 24 + 1)
    lab = classify_regime(slow, _hourly(slow))
    assert lab.regime == "bear" and lab.return_pct == pytest.approx(-35.0)
    assert lab.max_drawdown == pytest.approx(0.65 ** (14 / 60) - 1, abs=1e-9)  # -9.6 %
    wave = 100 * (1 + 0.05 * np.sin(np.linspace(0, 12 * np.pi, 60 * 24)))
    lab = classify_regime(wave, _hourly(wave))
    assert lab.regime == "range"
    assert lab.max_drawdown == pytest.approx(0.95 / 1.05 - 1, abs=1e-4)


def test_crash_that_recovers_is_still_a_crash() -> None:
    flat = np.full(10 * 24, 100.0)
    fall = np.linspace(100, 60, 5 * 24 + 1)[1:]
    rise = np.linspace(60, 105, 20 * 24 + 1)[1:]
    path = np.concatenate([flat, fall, rise])
    t = _hourly(path)
    lab = classify_regime(path, t)
    assert lab.regime == "crash"
    assert lab.return_pct == pytest.approx(5.0)
    assert lab.max_drawdown == pytest.approx(-0.40)
    assert lab.drawdown_peak_ns == t[len(flat) - 1] and lab.drawdown_trough_ns == t[len(flat) + len(fall) - 1]
    assert lab.start_ns == t[0] and lab.end_ns == t[-1]
    d = lab.to_dict()
    assert json.loads(json.dumps(d))["regime"] == "crash" and d["start"].startswith("2023-11-14")


def test_crash_is_checked_before_the_trend() -> None:
    path = np.concatenate([np.linspace(100, 150, 200), np.linspace(150, 90, 48), np.linspace(90, 160, 200)])
    lab = classify_regime(path, _hourly(path))
    assert lab.return_pct == pytest.approx(60.0) and lab.regime == "crash"
    # the same fall spread linearly over 30 days is not a crash: the worst 14 days are the
    # last ones, 118 -> 90, a 23.7 % fall
    slow = np.concatenate([np.linspace(100, 150, 200), np.linspace(150, 90, 30 * 24), np.linspace(90, 160, 200)])
    lab = classify_regime(slow, _hourly(slow))
    assert lab.regime == "bull" and lab.max_drawdown == pytest.approx(90 / (90 + 60 * 14 / 30) - 1, abs=1e-3)


def test_crash_window_uses_time_and_is_inclusive() -> None:
    t0 = 1_700_000_000 * 10**9
    close = np.array([100.0, 65.0])
    assert classify_regime(close, np.array([t0, t0 + 14 * DAY])).regime == "crash"
    assert classify_regime(close, np.array([t0, t0 + 14 * DAY + 1])).regime == "bear"
    assert classify_regime(close, np.array([t0, t0 + 20 * DAY]), crash_days=21).regime == "crash"
    # the same path on 15-minute and on daily bars gets the same label
    days = np.linspace(0, 40, 41)
    daily = 100 * np.interp(days, [0, 10, 15, 40], [1.0, 1.0, 0.6, 0.7])
    quarter = np.linspace(0, 40, 40 * 96 + 1)
    fine = 100 * np.interp(quarter, [0, 10, 15, 40], [1.0, 1.0, 0.6, 0.7])
    a = classify_regime(daily, t0 + (days * DAY).astype(np.int64))
    b = classify_regime(fine, t0 + (quarter * DAY).astype(np.int64))
    assert a.regime == b.regime == "crash" and a.max_drawdown == pytest.approx(b.max_drawdown)
    # datetime inputs are accepted
    idx = pd.date_range("2024-01-01", periods=41, freq="D", tz="UTC")
    assert classify_regime(daily, idx).regime == "crash"
    assert classify_regime(daily, idx.to_numpy()).regime == "crash"


def test_crash_detection_is_fast_and_matches_a_direct_scan_on_50k_bars() -> None:
    rng = np.random.default_rng(12)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.004, 50_000)))
    t = _hourly(close)
    start = time.perf_counter()
    lab = classify_regime(close, t)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0
    # direct O(n * window) scan on a slice of the same path
    c, tt = close[:3000], t[:3000]
    worst = 0.0
    for j in range(len(c)):
        lo = np.searchsorted(tt, tt[j] - 14 * DAY)
        worst = min(worst, c[j] / c[lo:j + 1].max() - 1)
    assert classify_regime(c, tt).max_drawdown == pytest.approx(worst, rel=1e-12)
    assert lab.max_drawdown <= classify_regime(c, tt).max_drawdown


def test_classify_regime_validation() -> None:
    t = _hourly(np.ones(3))
    with pytest.raises(ParamError, match="at least 2"):
        classify_regime(np.array([1.0]), t[:1])
    with pytest.raises(ParamError, match="same length"):
        classify_regime(np.ones(3), t[:2])
    with pytest.raises(ParamError, match="positive"):
        classify_regime(np.array([1.0, 0.0, 1.0]), t)
    with pytest.raises(ParamError, match="increasing"):
        classify_regime(np.ones(3), t[::-1])
    with pytest.raises(ParamError, match="crash_drawdown"):
        classify_regime(np.ones(3), t, crash_drawdown=30)


def test_regime_summary() -> None:
    out = regime_summary(
        ["bull", "range", "bull", "crash", "bull"],
        [1.0, 0.5, np.nan, -1.0, 2.0],
        [0.10, -0.05, 0.20, -0.30, -0.01],
    )
    assert list(out.index) == ["crash", "bull", "range"]  # fixed order, regimes present only
    assert list(out.columns) == ["n_windows", "mean_oos_sharpe", "consistency", "mean_return"]
    assert out.loc["bull", "n_windows"] == 3
    assert out.loc["bull", "mean_oos_sharpe"] == pytest.approx(1.5)  # NaN skipped
    assert out.loc["bull", "consistency"] == pytest.approx(2 / 3)
    assert out.loc["bull", "mean_return"] == pytest.approx(0.29 / 3)
    assert out.loc["crash", "consistency"] == 0.0 and out.loc["range", "mean_return"] == pytest.approx(-0.05)
    assert regime_summary([], [], []).empty
    with pytest.raises(ParamError, match="one value per window"):
        regime_summary(["bull"], [1.0, 2.0], [0.1])
    with pytest.raises(ParamError, match="unknown regime"):
        regime_summary(["moon"], [1.0], [0.1])


# ----------------------------------------------------------------------------- grading

PERFECT = {"oos_is_ratio": 1.0, "p_value": 0.01, "consistency": 1.0, "dsr": 1.0, "stability": 0.9,
           "on_edge": False, "pbo": 0.1, "n_trades": 200}


def _points(**overrides) -> dict[str, float]:
    g = grade(**{**PERFECT, **overrides})
    return {c.name: c.points for c in g.components}


@pytest.mark.parametrize(("value", "points"), [
    (-1.0, 0.0), (0.4999, 0.0), (0.5, 0.0), (0.62, 4.8), (0.75, 10.0), (1.0, 20.0), (3.0, 20.0), (math.inf, 20.0),
])
def test_oos_is_ratio_points(value: float, points: float) -> None:
    assert _points(oos_is_ratio=value)["oos_is_ratio"] == pytest.approx(points)


@pytest.mark.parametrize(("value", "points"), [
    (0.0, 20.0), (0.0499, 20.0), (0.05, 10.0), (0.0999, 10.0), (0.10, 0.0), (0.5, 0.0), (1.0, 0.0),
])
def test_p_value_points(value: float, points: float) -> None:
    assert _points(p_value=value)["p_value"] == points


@pytest.mark.parametrize(("value", "points"), [(0.0, 0.0), (0.49, 0.0), (0.5, 0.0), (0.8, 12.0), (1.0, 20.0)])
def test_consistency_points(value: float, points: float) -> None:
    assert _points(consistency=value)["consistency"] == pytest.approx(points)


@pytest.mark.parametrize(("value", "points"), [(0.2, 0.0), (0.4999, 0.0), (0.5, 0.0), (0.9, 12.0), (1.0, 15.0)])
def test_dsr_points(value: float, points: float) -> None:
    assert _points(dsr=value)["dsr"] == pytest.approx(points)


@pytest.mark.parametrize(("value", "edge", "points"), [
    (0.49, False, 0.0), (0.5, False, 0.0), (0.7, False, 5.0), (0.9, False, 10.0), (1.3, False, 10.0),
    (0.9, True, 5.0), (1.3, True, 5.0), (0.6, True, 2.5), (0.4, True, 0.0), (0.9, None, 10.0),
])
def test_stability_points_and_the_edge_cap(value: float, edge: bool | None, points: float) -> None:
    assert _points(stability=value, on_edge=edge)["stability"] == pytest.approx(points)


def test_stability_explanation_mentions_the_edge() -> None:
    comp = grade(**{**PERFECT, "on_edge": True}).components[4]
    assert comp.inputs == {"stability": 0.9, "on_edge": True, "profitable_out_of_sample": True,
                           "oos_is_ratio": 1.0, "oos_return": None}
    assert "edge" in comp.explanation


@pytest.mark.parametrize(("value", "points"), [
    (0.0, 15.0), (0.1, 15.0), (0.2, 11.25), (0.3, 7.5), (0.4999, 0.00375), (0.5, 0.0), (0.9, 0.0),
])
def test_pbo_points(value: float, points: float) -> None:
    assert _points(pbo=value)["pbo"] == pytest.approx(points)


@pytest.mark.parametrize(("score", "letter"), [
    (100, "A"), (85, "A"), (84.99, "B"), (70, "B"), (69.99, "C"), (55, "C"), (54.99, "D"), (40, "D"),
    (39.99, "F"), (0, "F"),
])
def test_band_edges(score: float, letter: str) -> None:
    assert letter_for(score) == letter


def test_band_edges_through_the_score() -> None:
    # 20 + 20 + 20 + 15 + 10 + 0 = 85 exactly -> A; one hundredth less -> B
    g = grade(**{**PERFECT, "pbo": 0.5})
    assert g.score == 85.0 and g.letter == "A" and g.cap is None
    g = grade(**{**PERFECT, "pbo": 0.5, "consistency": 0.99975})  # consistency 19.99 points
    assert g.score == pytest.approx(84.99) and g.letter == "B"
    # 20 + 10 + 20 + 15 + 5 + 0 = 70 -> B
    g = grade(**{**PERFECT, "p_value": 0.07, "stability": 0.7, "pbo": 0.5})
    assert g.score == 70.0 and g.letter == "B"
    assert grade(**PERFECT).score == 100.0 and grade(**PERFECT).max_score == 100.0


@pytest.mark.parametrize(("trades", "letter", "capped"), [
    (0, "C", True), (29, "C", True), (30, "B", True), (49, "B", True), (50, "A", False), (None, "C", True),
    (float("nan"), "C", True),
])
def test_trade_count_caps(trades, letter: str, capped: bool) -> None:
    g = grade(**{**PERFECT, "n_trades": trades})
    assert g.uncapped_letter == "A" and g.letter == letter
    assert (g.cap is not None) == capped
    if capped:
        assert g.cap.startswith(f"capped at {letter}")
        missing = trades is None or math.isnan(trades)
        assert ("not available" in g.cap) if missing else (f"{trades} trades" in g.cap)


def test_cap_does_not_raise_a_low_grade() -> None:
    g = grade(oos_is_ratio=0.6, p_value=0.2, consistency=0.6, dsr=0.6, stability=0.6, on_edge=False, pbo=0.4,
              n_trades=10)
    assert g.letter == "F" and g.cap is None


def test_missing_inputs_score_zero_and_say_so() -> None:
    g = grade(oos_is_ratio=None, p_value=float("nan"), consistency=np.nan, dsr=None, stability=None, on_edge=True,
              pbo=float("nan"), n_trades=100)
    assert g.score == 0.0 and g.letter == "F"
    for comp in g.components:
        assert comp.points == 0.0 and comp.value is None
        assert "not available" in comp.explanation
    d = g.to_dict()
    json.dumps(d)
    assert [c["name"] for c in d["components"]] == ["oos_is_ratio", "p_value", "consistency", "dsr", "stability",
                                                     "pbo"]
    assert sum(c["max_points"] for c in d["components"]) == 100.0
    # one partial: the others still count
    g = grade(**{**PERFECT, "dsr": None})
    assert g.score == 85.0 and g.components[3].explanation == "Deflated Sharpe ratio not available: 0 of 15 points."


def test_explanations_are_single_plain_sentences() -> None:
    g = grade(oos_is_ratio=0.62, p_value=0.03, consistency=0.8, dsr=0.95, stability=0.95, on_edge=True, pbo=0.2,
              n_trades=40)
    expl = {c.name: c.explanation for c in g.components}
    assert expl["oos_is_ratio"] == ("Out-of-sample Sharpe is 0.62 of in-sample: 4.8 of 20 points "
                                    "(none below 0.5, full marks at 1.0 or more).")
    for text in expl.values():
        assert text.endswith(".") and text.count(". ") == 0
    assert g.score == pytest.approx(4.8 + 20 + 12 + 13.5 + 5 + 11.25)
    assert g.letter == "C" and g.cap is None


def test_a_value_is_never_rounded_across_the_rule_it_is_graded_by() -> None:
    """0.496 read "0.50 ... 0 points (none below 0.5)", 49.6 % "50 % ... (none below 50 %)", and
    the page's card "18/100" beside the grade card's 17.9."""
    g = grade(oos_is_ratio=0.496, p_value=0.0499, consistency=0.496, dsr=0.4996, stability=0.496, on_edge=False,
              pbo=0.1004, n_trades=40)
    expl = {c.name: c.explanation for c in g.components}
    assert expl["oos_is_ratio"].startswith("Out-of-sample Sharpe is 0.496 of in-sample: 0 of 20 points")
    assert "p-value of the Sharpe against zero-mean returns is 0.0499: 20 of" in expl["p_value"]
    assert expl["consistency"].startswith("49.6 % of out-of-sample windows were positive: 0 of 20 points")
    assert expl["dsr"].startswith("Deflated Sharpe ratio is 0.4996 (")
    assert expl["stability"].startswith("Grid neighbours keep 49.6 % of the winner's objective")
    assert expl["pbo"].startswith("Probability of backtest overfitting is 0.1004")
    plain = grade(oos_is_ratio=0.62, p_value=0.03, consistency=0.8, dsr=0.95, stability=0.95, on_edge=False,
                  pbo=0.2, n_trades=40)
    assert "Sharpe is 0.62 of" in plain.components[0].explanation  # two decimals where they say the truth
    assert (score_text(17.94), score_text(54.96), score_text(70.0)) == ("17.9", "54.96", "70.0")


# ------------------------------------------------ PBO and stability need a profitable selection

def _component(g, name: str):
    return next(c for c in g.components if c.name == name)


def test_a_selection_that_loses_out_of_sample_gets_no_pbo_or_stability_points() -> None:
    # the walk-forward of issue 11: efficiency -0.80 had PBO 15/15 and stability 9/10
    g = grade(**{**PERFECT, "oos_is_ratio": -0.8, "pbo": 0.05, "stability": 0.88})
    for name in ("pbo", "stability"):
        comp = _component(g, name)
        assert comp.points == 0.0 and comp.value is not None
        assert "loses out of sample (OOS/IS ratio -0.80)" in comp.explanation
        assert GATE_RULE in comp.explanation and comp.inputs["profitable_out_of_sample"] is False
    assert g.score == 20 + 20 + 15  # p-value, consistency, DSR


def test_no_profitable_combo_is_said_plainly_and_scores_no_pbo_or_stability() -> None:
    g = grade(**PERFECT, profitable_combos=(0, 41))
    for name in ("pbo", "stability"):
        comp = _component(g, name)
        assert comp.points == 0.0
        assert comp.explanation.startswith(("Probability of backtest overfitting is 0.10, but 0 of 15 points: "
                                            "no combo is profitable (none of the 41 combos",
                                            "Grid neighbours keep 90 % of the winner's objective, but 0 of 10 "
                                            "points: no combo is profitable"))
        assert comp.inputs["profitable_combos"] == 0 and comp.inputs["combos_evaluated"] == 41


@pytest.mark.parametrize("ratio", [0.0, None, float("nan")])
def test_an_unknown_or_zero_oos_ratio_withholds_the_points(ratio) -> None:
    assert withheld_because(ratio) is not None
    points = _points(oos_is_ratio=ratio)
    assert points["pbo"] == 0.0 and points["stability"] == 0.0


def test_a_walk_forward_whose_stitched_oos_record_lost_gets_no_pbo_or_stability_points() -> None:
    # the README example before issue 11: efficiency 0.09 but the stitched OOS record lost 0.64 %
    g = grade(**{**PERFECT, "oos_is_ratio": 0.0871}, oos_return=-0.0064)
    for name in ("pbo", "stability"):
        comp = _component(g, name)
        assert comp.points == 0.0 and comp.inputs["oos_return"] == -0.0064
        assert "lost money out of sample (stitched OOS return -0.64 %)" in comp.explanation
    assert withheld_because(0.5, None, 0.02) is None


def test_a_profitable_selection_keeps_its_pbo_and_stability_points() -> None:
    g = grade(**{**PERFECT, "oos_is_ratio": 0.01}, profitable_combos=(3, 41))
    assert _component(g, "pbo").points == 15.0 and _component(g, "stability").points == 10.0
    assert _component(g, "pbo").inputs["profitable_out_of_sample"] is True
    assert withheld_because(0.01, (3, 41)) is None and withheld_because(math.inf) is None


@pytest.mark.parametrize("returns", [[0.01, -0.005], [0.01, -0.01] * 50, [0.003, -0.001] * 500, [0.02, 0.0] * 3])
def test_a_two_valued_return_series_has_a_deflated_sharpe(returns) -> None:
    """Its kurtosis is exactly 1 (the least any series has), computed as 0.9999999999999994:
    the DSR raised 'kurtosis must be the non-excess kurtosis' instead of being computed."""
    from threadx.validation.dsr import deflated_sharpe_from_returns, psr_z

    r = np.array(returns)
    result = deflated_sharpe_from_returns(r, [0.0, 0.01, 0.02])
    assert 0.0 <= result.dsr <= 1.0 and result.kurt == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ParamError, match="non-excess"):  # an excess kurtosis handed in is still refused
        psr_z(0.1, 0.0, 100, 0.0, 0.0)


def test_the_stability_and_consistency_sentences_name_the_values_behind_them() -> None:
    """A negative winner's ratio is taken winner over neighbours: "keep 67 % of the winner's
    objective" (neighbours -0.77, winner -0.52) meant nothing; 3 of 8 windows read "38 %" beside
    the card's 37.50 %."""
    details = {"stability": {"objective": "sharpe", "maximize": True, "winner_value": -0.52,
                             "neighbour_mean": -0.77},
               "consistency": {"positive": 3, "periods": 8}}
    g = grade(**{**PERFECT, "stability": 0.52 / 0.77, "consistency": 0.375}, details=details)
    assert _component(g, "stability").explanation.startswith(
        "Grid neighbours do worse than the winner (sharpe -0.77 on average against -0.52): a ratio of 68 %, "
        "taken winner over neighbours as both are below zero")
    assert _component(g, "consistency").explanation.startswith(
        "3 of 8 out-of-sample windows (37.5 %) were positive: 0 of 20 points")
    positive = {"stability": {"objective": "sharpe", "maximize": True, "winner_value": 1.2, "neighbour_mean": 0.9}}
    g = grade(**{**PERFECT, "stability": 0.75}, details=positive)
    assert _component(g, "stability").explanation.startswith(
        "Grid neighbours keep 75 % of the winner's objective (sharpe 0.9 on average against the winner's 1.2)")
    drawdown = {"stability": {"objective": "max_drawdown", "maximize": False, "winner_value": 0.1,
                              "neighbour_mean": 0.2}}
    g = grade(**{**PERFECT, "stability": 0.5}, details=drawdown)
    assert "taken winner over neighbours as lower is better" in _component(g, "stability").explanation
