"""Probabilistic and Deflated Sharpe Ratio (Bailey & López de Prado 2012, 2014).

EVERY SHARPE RATIO IN THIS MODULE IS PER PERIOD (PER BAR), NOT ANNUALISED.
``sr`` is mean(r) / std(r) of the per-bar returns, ``t`` the number of those returns and
``var_sharpe`` the variance of the per-bar Sharpe ratios of the trials. To convert from
annualised figures: sr = SR_annual / sqrt(bars_per_year) and var_sharpe =
V[SR_annual] / bars_per_year. Mixing an annualised Sharpe with a per-bar T inflates the
z-score by sqrt(bars_per_year) (x 94 for hourly bars) and saturates the DSR at 1.0 for
every strategy, which is how the predecessor's DSR stopped telling assets apart.

Formulas (normal CDF and inverse from :class:`statistics.NormalDist`, no scipy):

    PSR(SR*) = Phi( (SR - SR*) sqrt(T - 1) / sqrt(1 - skew SR + (kurt - 1) / 4 SR^2) )
    SR0      = sqrt(V[SR_n]) ((1 - g) PhiInv(1 - 1/N) + g PhiInv(1 - 1/(N e))),  g = Euler-Mascheroni
    DSR      = PSR(SR0)

with kurt the NON-excess kurtosis (3 for a normal) and N the number of independent trials.
DSR is the probability that the true Sharpe of the selected strategy is above what the
best of N skill-less trials would show by luck.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np

from threadx.errors import ParamError

EULER_MASCHERONI = 0.5772156649015329
_NORMAL = NormalDist()
_REL_STD_FLOOR = 1e-12  # a std below this fraction of |mean| is rounding noise of a constant series


@dataclass(frozen=True)
class DSRResult:
    """Deflated Sharpe ratio and its inputs; all Sharpe figures per period (not annualised)."""

    dsr: float
    sr0: float
    sr: float
    t: int
    skew: float
    kurt: float
    n_trials: float
    var_sharpe: float
    z: float

    def to_dict(self) -> dict[str, float]:
        """JSON-safe plain values; NaN stays a float."""
        return {k: (int(v) if k == "t" else float(v)) for k, v in asdict(self).items()}

    @property
    def unavailable(self) -> str | None:
        """Why there is no DSR (None when there is one), in words."""
        if not math.isnan(self.dsr):
            return None
        if math.isnan(self.skew) or math.isnan(self.kurt):
            return ("the selected returns do not vary, every one the same: their skewness and kurtosis, and so the "
                    "DSR, are undefined")
        return "the PSR's variance term is not positive (an extreme skew with a large per-bar Sharpe)"


def sharpe_moments(returns: np.ndarray) -> tuple[float, int, float, float]:
    """(per-period Sharpe, number of observations, skewness, NON-excess kurtosis) of returns.

    Sharpe = mean / std with ddof 1 (as SPEC §5, before annualising), 0 for zero variance.
    Skewness and kurtosis are the moment estimators m3 / m2^1.5 and m4 / m2^2 (population
    central moments, as in the paper); for zero variance they are undefined, NaN (they read
    0 and 3, a normal's, and a DSR of 0.500 was shown for returns that were all 0).
    """
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1 or len(r) < 2:
        raise ParamError(f"need a one-dimensional series of at least 2 returns, got shape {r.shape}")
    if not np.isfinite(r).all():
        raise ParamError("returns contain NaN or infinite values: drop or fill them first")
    mean = float(r.mean())
    d = r - mean
    m2 = float(np.mean(d * d))
    std = math.sqrt(m2 * len(r) / (len(r) - 1))
    if std <= 0.0 or std <= _REL_STD_FLOOR * abs(mean):
        return 0.0, len(r), math.nan, math.nan
    m3 = float(np.mean(d ** 3))
    m4 = float(np.mean(d ** 4))
    return mean / std, len(r), m3 / m2 ** 1.5, m4 / m2 ** 2


def expected_max_sharpe(n_trials: float, var_sharpe: float) -> float:
    """SR0: expected maximum of ``n_trials`` Sharpe estimates of skill-less strategies.

    ``var_sharpe`` is the variance of the trials' Sharpe ratios in the same (per-period)
    units as the Sharpe being tested. N = 1 gives 0 (no selection). N may be fractional
    (an effective number of independent trials).
    """
    n = float(n_trials)
    if not math.isfinite(n) or n < 1.0:
        raise ParamError(f"n_trials must be at least 1, got {n_trials!r}")
    v = float(var_sharpe)
    if not math.isfinite(v) or v < 0.0:
        raise ParamError(f"var_sharpe must be a finite variance >= 0, got {var_sharpe!r}")
    if n == 1.0 or v == 0.0:
        return 0.0
    g = EULER_MASCHERONI
    z = (1.0 - g) * _NORMAL.inv_cdf(1.0 - 1.0 / n) + g * _NORMAL.inv_cdf(1.0 - 1.0 / (n * math.e))
    return math.sqrt(v) * z


_KURT_ROUNDING = 1e-9  # how far below 1 a computed kurtosis of 1 can land (m4 / m2^2 in floats)


def psr_z(sr: float, sr_benchmark: float, t: int, skew: float, kurt: float) -> float:
    """The z-statistic inside the PSR; NaN when the variance term 1 - skew SR + (kurt-1)/4 SR^2 is not positive."""
    if t < 2:
        raise ParamError(f"need at least 2 observations, got t={t!r}")
    if math.isnan(skew) or math.isnan(kurt):
        return math.nan  # (returns that do not vary: no PSR)
    if kurt < 1.0 - _KURT_ROUNDING:
        raise ParamError(f"kurtosis must be the non-excess kurtosis (3 for a normal, always >= 1), got {kurt!r}")
    kurt = max(kurt, 1.0)  # a series of two values has exactly 1, computed as 1 - 6e-16
    denom = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr * sr
    if not denom > 0.0:
        return math.nan
    return (sr - sr_benchmark) * math.sqrt(t - 1.0) / math.sqrt(denom)


def probabilistic_sharpe_ratio(sr: float, sr_benchmark: float, t: int, skew: float, kurt: float) -> float:
    """Probability that the true per-period Sharpe exceeds ``sr_benchmark`` (PSR).

    ``sr`` and ``sr_benchmark`` per period; ``kurt`` non-excess (3 for a normal). NaN when
    the variance term is not positive (extreme skew with a large per-period Sharpe).
    """
    z = psr_z(sr, sr_benchmark, t, skew, kurt)
    return math.nan if math.isnan(z) else _NORMAL.cdf(z)


def deflated_sharpe_ratio(
    sr: float, t: int, skew: float, kurt: float, n_trials: float, var_sharpe: float
) -> DSRResult:
    """DSR = PSR(SR0) of the selected strategy after ``n_trials`` trials.

    ``sr``: per-period Sharpe of the selected strategy over ``t`` returns with skewness
    ``skew`` and non-excess kurtosis ``kurt``; ``var_sharpe``: variance of the per-period
    Sharpe ratios across the trials. See the module docstring for annualised inputs.
    """
    sr0 = expected_max_sharpe(n_trials, var_sharpe)
    z = psr_z(sr, sr0, t, skew, kurt)
    dsr = math.nan if math.isnan(z) else _NORMAL.cdf(z)
    return DSRResult(dsr=dsr, sr0=sr0, sr=float(sr), t=int(t), skew=float(skew), kurt=float(kurt),
                     n_trials=float(n_trials), var_sharpe=float(var_sharpe), z=z)


def deflated_sharpe_from_returns(returns: np.ndarray, trial_sharpes: np.ndarray) -> DSRResult:
    """DSR of a return series selected among trials whose per-period Sharpe ratios are ``trial_sharpes``.

    N = the number of finite trial Sharpes (NaN ones, failed trials, are ignored), V = their
    variance (ddof 1). Pass per-period Sharpes (divide annualised ones by sqrt(bars_per_year)).
    """
    sr, t, skew, kurt = sharpe_moments(returns)
    trials = np.asarray(trial_sharpes, dtype=np.float64).ravel()
    trials = trials[np.isfinite(trials)]
    if len(trials) < 1:
        raise ParamError("need the Sharpe ratio of at least one trial")
    var = float(np.var(trials, ddof=1)) if len(trials) > 1 else 0.0
    return deflated_sharpe_ratio(sr, t, skew, kurt, len(trials), var)
