"""emarl's Python API: ``emarl.backtest(scenario, strategy=MyStrategy, **params)``.

See :mod:`emarl.api`; ``Strategy`` is the base of a strategy of your own.
"""

from emarl.api import OrderLog, Result, backtest, backtest_async, scenario
from strategies.base import Strategy

__all__ = ["OrderLog", "Result", "Strategy", "backtest", "backtest_async", "scenario"]
