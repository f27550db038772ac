"""Portfolio backtests: several ``strategy:dataset`` runners sharing one capital
(:func:`portfolio_backtest`), their stored results and the runners a research job chose."""
from threadx.portfolio.backtest import portfolio_backtest
from threadx.portfolio.result import PortfolioResult, list_portfolios, load_portfolio, save_portfolio
from threadx.portfolio.runners import Runner, parse_runner

__all__ = ["portfolio_backtest", "PortfolioResult", "Runner", "parse_runner", "load_portfolio", "save_portfolio",
           "list_portfolios"]
