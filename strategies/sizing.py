"""How big a position is: fixed units, a share of equity, or a volatility target, and how
a universe's account is split between its symbols.

``[strategy.sizing]`` (:class:`SizingConfig`) sizes a new position when a strategy's
signal changes direction; the position is then held, not rebalanced bar by bar:

* ``units``: ``strategy.quantity`` units, whatever the price (the default);
* ``equity_fraction``: a position worth ``fraction x weight x equity`` at the close;
* ``volatility_target``: a position whose annualised volatility is ``target_volatility x
  weight x equity``, i.e. worth ``target_volatility x weight x equity / σ``, capped at
  ``max_fraction x weight x equity``; σ is the annualised standard deviation of the
  symbol's last ``lookback`` close-to-close log returns (annualised with the bars per year
  those returns span), and there is no position before ``lookback`` returns exist.

Units are rounded down to the lot size. ``equity`` is the account's equity after the
latest bar. ``weight`` is the symbol's share of the account (``strategy.allocation``):
``equal`` gives each of the N symbols 1/N; ``inverse_volatility`` gives each symbol
``(1/σ_s) / Σ (1/σ_j)`` over the symbols whose σ is known (1/N until any is);
``confidence`` (an ensemble's) gives each symbol ``c_s / Σ c_j``, where ``c_s`` is the
confidence (floored at 0) of the latest target its meta-investor published, 1/N until any
is positive. A meta-investor sizes its own symbol before it publishes that bar's target,
so its own ``c_s`` is its previous bar's; the symbols decided before it in the time slice
count with this bar's. With one symbol the weight is 1.

:class:`AccountView` keeps what sizing reads, for every symbol of a run at once: the
equity (from the portfolio's snapshots) and each symbol's running sums of log returns
over its window (O(1) a bar).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Literal

from engine.core.bus import Bus
from engine.core.configs import ConfigStruct, positive
from engine.core.errors import ConfigError
from engine.core.events import Bar, PortfolioSnapshot, TargetPosition

__all__ = ["AccountView", "Allocation", "SizingConfig"]

YEAR_NS = int(365.25 * 86_400 * 1e9)
Allocation = Literal["equal", "inverse_volatility", "confidence"]


class SizingConfig(ConfigStruct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[strategy.sizing]``: see the module docstring."""

    method: Literal["units", "equity_fraction", "volatility_target"] = "units"
    fraction: float = 0.1
    target_volatility: float = 0.1
    max_fraction: float = 1.0
    lookback: int = 60

    def check(self) -> None:
        for name in ("fraction", "target_volatility", "max_fraction"):
            positive(f"strategy.sizing.{name}", getattr(self, name))
        if self.lookback < 2:
            raise ConfigError(f"strategy.sizing.lookback must be >= 2, got {self.lookback}")


class _Returns:
    """One symbol's last ``size`` log returns with running sums (re-summed every
    ``size`` returns, so rounding cannot accumulate)."""

    __slots__ = ("count", "first_ns", "last_close", "stamps", "sum", "sum_sq", "values")

    def __init__(self, size: int) -> None:
        self.values: deque[float] = deque(maxlen=size)
        self.stamps: deque[int] = deque(maxlen=size + 1)
        self.sum = 0.0
        self.sum_sq = 0.0
        self.last_close = 0.0
        self.count = 0

    def add(self, ts: int, close: float) -> None:
        self.stamps.append(ts)
        if self.last_close > 0.0:
            values = self.values
            r = math.log(close / self.last_close)
            if len(values) == values.maxlen:
                old = values[0]
                self.sum -= old
                self.sum_sq -= old * old
            values.append(r)
            self.sum += r
            self.sum_sq += r * r
            self.count += 1
            if self.count % values.maxlen == 0:  # type: ignore[operator]
                self.sum = math.fsum(values)
                self.sum_sq = math.fsum(v * v for v in values)
        self.last_close = close

    def volatility(self) -> float | None:
        """Annualised σ of the window's log returns; None until the window is full."""
        values = self.values
        n = len(values)
        if n < (values.maxlen or 0) or n < 2:
            return None
        mean = self.sum / n
        variance = max(self.sum_sq / n - mean * mean, 0.0) * n / (n - 1)
        span = self.stamps[-1] - self.stamps[0]
        per_year = n / (span / YEAR_NS) if span > 0 else 0.0
        return math.sqrt(variance * per_year) if per_year > 0 else None


class AccountView:
    """The equity and each symbol's volatility, as sizing reads them (module docstring).

    Subscribed before the strategies (it sees a bar first), so that a strategy deciding
    on a bar sizes with that bar's return; the equity is the latest snapshot's."""

    def __init__(
        self,
        bus: Bus,
        symbols: Sequence[str],
        sizing: SizingConfig,
        allocation: Allocation = "equal",
        initial_equity: float = 0.0,
    ) -> None:
        self._bus = bus
        self.symbols = list(symbols)
        self.sizing = sizing
        self.allocation = allocation
        self.equity = initial_equity
        self.returns = {symbol: _Returns(sizing.lookback) for symbol in self.symbols}
        #: ``confidence`` allocation: each symbol's latest published confidence (>= 0)
        self.confidence = dict.fromkeys(self.symbols, 0.0)

    def subscribe(self) -> None:
        if self.sizing.method == "volatility_target" or self.allocation == "inverse_volatility":
            self._bus.subscribe(Bar, self.on_bar)  # only a volatility reads the returns
        self._bus.subscribe(PortfolioSnapshot, self.on_snapshot)
        if self.allocation == "confidence":
            self._bus.subscribe(TargetPosition, self.on_target)

    def on_target(self, decision: TargetPosition) -> None:
        if decision.symbol in self.confidence:
            self.confidence[decision.symbol] = max(decision.confidence, 0.0)

    def on_bar(self, bar: Bar) -> None:
        returns = self.returns.get(bar.symbol)
        if returns is not None:
            returns.add(bar.ts_event, bar.close)

    def on_snapshot(self, snapshot: PortfolioSnapshot) -> None:
        self.equity = snapshot.equity

    def weight(self, symbol: str) -> float:
        """The symbol's share of the account (``strategy.allocation``)."""
        n = len(self.symbols)
        if n == 1 or self.allocation == "equal":
            return 1.0 / n
        if self.allocation == "confidence":
            total = sum(self.confidence.values())
            return self.confidence[symbol] / total if total > 0.0 else 1.0 / n
        inverse = {}
        for name, returns in self.returns.items():
            sigma = returns.volatility()
            if sigma:
                inverse[name] = 1.0 / sigma
        if not inverse:
            return 1.0 / n
        return inverse.get(symbol, 0.0) / sum(inverse.values())

    def units(self, symbol: str, price: float, lot: float, quantity: float) -> float:
        """The size of a new position in ``symbol`` at ``price`` (module docstring)."""
        sizing = self.sizing
        if sizing.method == "units":
            return quantity
        budget = self.equity * self.weight(symbol)
        if sizing.method == "equity_fraction":
            value = sizing.fraction * budget
        else:
            sigma = self.returns[symbol].volatility()
            if not sigma:
                return 0.0
            value = min(sizing.target_volatility / sigma, sizing.max_fraction) * budget
        if value <= 0.0 or price <= 0.0:
            return 0.0
        return math.floor(value / price / lot + 1e-9) * lot
