"""The simulated broker's account and cost rules: ``[broker]`` of a scenario."""

from __future__ import annotations

from engine.core.configs import ConfigStruct, non_negative, positive
from engine.core.errors import ConfigError

__all__ = ["BrokerConfig"]


class BrokerConfig(ConfigStruct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The simulated broker's account and cost rules (see :mod:`brokers.simulated`).

    Commission per fill = max(``commission_minimum``, notional x
    ``commission_bps`` / 1e4 + quantity x ``commission_per_unit``).
    ``slippage_bps`` moves market and stop fills against the order.
    ``max_participation`` caps a fill at that share of the bar's volume
    (0 disables the cap). An order is denied when the position it would leave,
    valued at the last close, needs more than the equity under ``margin_rate``
    (1.0: no leverage; 0.5: 2x).

    ``borrow_fee_bps`` (annual) is charged on short positions and
    ``financing_rate_bps`` (annual) on negative cash, a margin loan, by the portfolio
    on every bar for the calendar time since the previous bar (:mod:`brokers.portfolio`;
    0, the default, charges nothing). The meta-investor's counterfactual P&L and the
    training market leave both out.
    """

    initial_cash: float = 1_000_000.0
    commission_bps: float = 0.0
    commission_per_unit: float = 0.0
    commission_minimum: float = 0.0
    slippage_bps: float = 0.0
    max_participation: float = 0.0
    margin_rate: float = 1.0
    allow_short: bool = True
    borrow_fee_bps: float = 0.0
    financing_rate_bps: float = 0.0

    def check(self) -> None:
        positive("broker.initial_cash", self.initial_cash)
        for name in (
            "commission_bps",
            "commission_per_unit",
            "commission_minimum",
            "slippage_bps",
            "borrow_fee_bps",
            "financing_rate_bps",
        ):
            non_negative(f"broker.{name}", getattr(self, name))
        if not 0.0 <= self.max_participation <= 1.0:
            raise ConfigError(
                f"broker.max_participation must be in [0, 1] (0 = no cap), "
                f"got {self.max_participation}"
            )
        positive("broker.margin_rate", self.margin_rate)
