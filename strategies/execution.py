"""Turns :class:`TargetPosition` decisions into market orders for the difference."""

from __future__ import annotations

from typing import Any

import msgspec

from engine.core.bus import Bus
from engine.core.clock import Clock
from engine.core.configs import ConfigStruct
from engine.core.errors import ConfigError
from engine.core.events import Bar, TargetPosition
from strategies.base import Strategy
from strategies.meta.params import MetaInvestorParams
from strategies.sizing import Allocation, SizingConfig

__all__ = ["EnsembleConfig", "TargetExecution", "check_execution"]


class EnsembleConfig(ConfigStruct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What every ensemble's ``[strategy]`` holds beside its agents: the confidence a
    decision needs, the execution rule (``no_trade_band``, ``min_hold_bars``), the sizing
    and allocation (:mod:`strategies.sizing`) and the meta-investor's ``[strategy.meta]``."""

    confidence_threshold: float = 0.0
    no_trade_band: float = 0.0
    min_hold_bars: int = 0
    sizing: SizingConfig = msgspec.field(default_factory=SizingConfig)
    allocation: Allocation = "equal"
    meta: MetaInvestorParams = msgspec.field(default_factory=MetaInvestorParams)


def check_execution(strategy: Any) -> None:
    """The ensembles' execution keys: ``no_trade_band`` in [0, 1), ``min_hold_bars`` >= 0,
    and their ``[strategy.sizing]``."""
    strategy.sizing.check()
    if not 0.0 <= strategy.no_trade_band < 1.0:
        raise ConfigError(
            f"strategy.no_trade_band must be in [0, 1) (a share of max_position), "
            f"got {strategy.no_trade_band}"
        )
    if strategy.min_hold_bars < 0:
        raise ConfigError(f"strategy.min_hold_bars must be >= 0, got {strategy.min_hold_bars}")


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
