"""Turns :class:`TargetPosition` decisions into market orders for the difference."""

from __future__ import annotations

from engine.bus import Bus
from engine.clock import Clock
from engine.events import Bar, TargetPosition
from strategies.base import Strategy

__all__ = ["TargetExecution"]


class TargetExecution(Strategy):
    """Holds the latest target: a market order for the difference when no order is working."""

    def __init__(self, bus: Bus, clock: Clock, symbol: str, strategy_id: str = "meta") -> None:
        super().__init__(strategy_id, bus, symbol, clock)

    def subscribe(self) -> None:
        super().subscribe()
        self._bus.subscribe(TargetPosition, self.on_target_position, self.symbol)

    def on_bar(self, bar: Bar) -> None:
        """Decisions arrive as targets; bars need no work here."""

    def on_target_position(self, decision: TargetPosition) -> None:
        if decision.strategy_id == self.strategy_id and not self.open_orders:
            self.target_position(decision.target)
