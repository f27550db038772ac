"""Statistical validation of a selected strategy (SPEC §7), as pure functions over numpy arrays.

Modules (import them directly; this package imports nothing heavy):

- :mod:`threadx.validation.bootstrap`: circular moving-block bootstrap of per-bar returns
  (confidence intervals for Sharpe, total return and max drawdown; Sharpe p-value against
  the explicit null of demeaned returns) and trade-order shuffles for drawdown risk.
- :mod:`threadx.validation.dsr`: probabilistic and deflated Sharpe ratio
  (Bailey & López de Prado 2014); every Sharpe there is per period, never annualised.
- :mod:`threadx.validation.pbo`: probability of backtest overfitting by combinatorially
  symmetric cross-validation (Bailey, Borwein, López de Prado & Zhu 2015).
- :mod:`threadx.validation.regimes`: crash / bull / bear / range label of a price window
  and per-regime summary of out-of-sample results.
- :mod:`threadx.validation.grading`: the 100-point score and A-F grade with its components.
"""
