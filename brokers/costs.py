"""What a trade costs and what a step earns: the broker's rule, in one place.

A market order for ``traded`` units (signed: > 0 buys) fills at its reference price
moved against it by the slippage, p (1 + s sign(traded)) (:func:`market_fill`), and
pays max(minimum, |traded| p rate + |traded| per_unit), nothing when nothing trades
(:func:`commission`). Holding ``previous`` units from the last close into a bar and
``target`` units from its open earns (:func:`step_pnl`)::

    previous (open - previous close) + traded (open - fill) + target (close - open)
        - commission

Holding a position or a loan costs by the time it is held (:func:`carry_charge`): the
notional times the annual rate times the years elapsed, a year being :data:`YEAR_NS`,
365.25 days of calendar time. The :class:`~brokers.portfolio.Portfolio` charges it on
short positions (``borrow_fee_bps``) and on negative cash (``financing_rate_bps``).

The :class:`~brokers.simulated.SimulatedBroker` charges :func:`market_fill` and
:func:`commission` on every fill. The meta-investor's coalition P&L and the training
market charge the same on every trade they imagine: their numba kernels compile these
scalar functions (``numba.njit(commission)``), and :func:`trade_costs` is the
vectorised statement for numpy arrays, the same operations in the same order, so that
all agree bit for bit (tests/brokers/test_costs.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np

if TYPE_CHECKING:
    from brokers.config import BrokerConfig

__all__ = [
    "YEAR_NS",
    "CostRates",
    "carry_charge",
    "commission",
    "market_fill",
    "step_pnl",
    "trade_costs",
]

#: One year of calendar time in ns, 365.25 days: the year of annual rates (borrow fees,
#: financing) and of annualised statistics (engine.app.metrics) alike
YEAR_NS: Final = 31_557_600 * 10**9


@dataclass(frozen=True)
class CostRates:
    """The cost fields of :class:`~brokers.config.BrokerConfig` (rates in basis points)."""

    commission_bps: float = 0.0
    commission_per_unit: float = 0.0
    commission_minimum: float = 0.0
    slippage_bps: float = 0.0

    @classmethod
    def of(cls, broker: BrokerConfig) -> CostRates:
        return cls(
            broker.commission_bps,
            broker.commission_per_unit,
            broker.commission_minimum,
            broker.slippage_bps,
        )

    @property
    def rate(self) -> float:
        """The commission per unit of notional."""
        return self.commission_bps / 1e4

    @property
    def slippage(self) -> float:
        """The slippage as a share of the price."""
        return self.slippage_bps / 1e4

    def scaled(self, factor: float) -> CostRates:
        """Every cost times ``factor`` (the training curriculum's stages)."""
        return CostRates(
            self.commission_bps * factor,
            self.commission_per_unit * factor,
            self.commission_minimum * factor,
            self.slippage_bps * factor,
        )


def market_fill(price: float, traded: float, slippage: float) -> float:
    """The fill of a market order for ``traded`` units at reference ``price``."""
    if traded > 0.0:
        return price * (1.0 + slippage)
    if traded < 0.0:
        return price * (1.0 - slippage)
    return price


def commission(size: float, price: float, rate: float, per_unit: float, minimum: float) -> float:
    """The commission of a fill of ``size`` (≥ 0) units at ``price``; 0 for no fill."""
    if size <= 0.0:
        return 0.0
    charged = size * price * rate + size * per_unit
    return charged if charged >= minimum else minimum


def carry_charge(notional: float, annual_rate: float, elapsed_ns: int) -> float:
    """What holding ``notional`` (≥ 0) for ``elapsed_ns`` costs at ``annual_rate`` (a share
    a year, bps / 1e4): notional x rate x elapsed / :data:`YEAR_NS`."""
    return notional * annual_rate * (elapsed_ns / YEAR_NS)


def step_pnl(
    previous: Any,
    target: Any,
    previous_close: Any,
    open_price: Any,
    close: Any,
    fill: Any,
    charged: Any,
) -> Any:
    """What a bar earns holding ``previous`` into its open and ``target`` from it, the
    difference bought at ``fill`` for ``charged`` (scalars or numpy arrays alike)."""
    return (
        previous * (open_price - previous_close)
        + (target - previous) * (open_price - fill)
        + target * (close - open_price)
        - charged
    )


def trade_costs(
    traded: np.ndarray, price: float | np.ndarray, costs: CostRates
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`market_fill` and :func:`commission` of every element (numpy broadcasting)."""
    fill = price * (1.0 + costs.slippage * np.sign(traded))
    size = np.abs(traded)
    charged = size * fill * costs.rate + size * costs.commission_per_unit
    charged = np.where(size > 0, np.maximum(charged, costs.commission_minimum), 0.0)
    return fill, charged
