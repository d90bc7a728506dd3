"""The reference strategy: a simple-moving-average crossover, long/short, fixed size.

On the close of every bar once SMA(slow) exists: target ``+quantity`` when
SMA(fast) > SMA(slow), ``-quantity`` (or flat with ``long_only``) when
SMA(fast) < SMA(slow), unchanged when they are equal. A market order for the
difference goes out when the target differs from the position and no order
is working; it fills at the next bar's open.

With ``[strategy.sizing]`` other than ``units`` (:mod:`strategies.sizing`), a position
is sized when the signal changes direction (a share of equity, or a volatility target,
and the symbol's weight in a universe) and then held until the next change.

With ``stop_loss`` or ``take_profit`` (fractions; 0 = off, the default) every entry is
a bracket (:meth:`~strategies.base.Strategy.submit_bracket`, the broker's rules in
:mod:`brokers.simulated`): a market entry with a stop-loss ``stop_loss`` below the
close the entry is decided on (above, for a short) and a take-profit ``take_profit``
above it (below). The strategy then acts when the target changes, not whenever it
differs from the position: an exit that closes the position leaves it flat until the
next crossover. A crossover cancels the working exits, closes the position with a
market order and sends the new bracket (none when the new target is flat).

The means are running sums (re-summed every 4,096 bars). When the two means
are within 1e-9 of each other, relative, the comparison is redone with
exactly rounded sums (``math.fsum``), so decisions never depend on the order
of additions.
"""

from __future__ import annotations

import math

import msgspec

from engine.core.bus import Bus
from engine.core.clock import Clock
from engine.core.configs import ConfigStruct, positive
from engine.core.errors import ConfigError
from engine.core.events import BUY, SELL, Bar
from strategies.base import BracketOrders, Strategy
from strategies.sizing import AccountView, Allocation, SizingConfig

__all__ = ["SmaCross", "SmaCrossConfig"]


class SmaCrossConfig(
    ConfigStruct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag="sma_cross",
    tag_field="kind",
):
    """Long when SMA(fast) > SMA(slow), short when below (flat when ``long_only``);
    ``sizing`` and ``allocation`` size a new position (:mod:`strategies.sizing`), by
    default ``quantity`` units.

    ``stop_loss`` and ``take_profit`` (0 = off) put a stop-loss and a take-profit on
    every entry, as fractions of the close the entry is decided on (the entry fills
    at the next open, so its price is not known yet): a long bought on a close of 100
    with ``stop_loss = 0.02`` and ``take_profit = 0.05`` exits at 98 or 105.
    """

    fast: int = 10
    slow: int = 30
    quantity: float = 100.0
    long_only: bool = False
    sizing: SizingConfig = msgspec.field(default_factory=SizingConfig)
    allocation: Allocation = "equal"
    stop_loss: float = 0.0
    take_profit: float = 0.0

    def check(self) -> None:
        if self.fast < 1 or self.slow < 2:
            raise ConfigError(
                f"strategy.fast must be >= 1 and strategy.slow >= 2, got {self.fast}, {self.slow}"
            )
        if self.fast >= self.slow:
            raise ConfigError(
                f"strategy.fast ({self.fast}) must be smaller than strategy.slow ({self.slow})"
            )
        positive("strategy.quantity", self.quantity)
        self.sizing.check()
        if self.allocation == "confidence":
            raise ConfigError(
                "strategy.allocation = 'confidence' splits the account by the meta-investors' "
                "confidence (an ensemble's); sma_cross takes 'equal' or 'inverse_volatility'"
            )
        for name in ("stop_loss", "take_profit"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(
                    f"strategy.{name} must be a fraction of the entry price in [0, 1) "
                    f"(0 = off), got {value}"
                )


class SmaCross(Strategy):
    def __init__(
        self,
        bus: Bus,
        clock: Clock,
        symbol: str,
        config: SmaCrossConfig,
        strategy_id: str = "sma",
        account: AccountView | None = None,
        lot: float = 1.0,
    ) -> None:
        super().__init__(strategy_id, bus, symbol, clock)
        self.account = None if config.sizing.method == "units" else account
        self.lot_size = lot
        self.config = config
        self._fast = config.fast
        self._slow = config.slow
        self._closes: list[float] = [0.0] * config.slow  # ring buffer of the last `slow` closes
        self._count = 0
        self._sum_fast = 0.0
        self._sum_slow = 0.0
        self._long = config.quantity
        self._short = 0.0 if config.long_only else -config.quantity
        self._bracketed = config.stop_loss > 0.0 or config.take_profit > 0.0
        self._plain = not self._bracketed and self.account is None
        # with exits: the target last acted on, and its bracket
        self._acted = 0.0
        self._bracket: BracketOrders | None = None

    def on_bar(self, bar: Bar) -> None:
        close = bar.close
        closes = self._closes
        slow = self._slow
        count = self._count
        slot = count % slow
        # Sums over the windows, updated by adding the new close and removing the oldest.
        self._sum_slow += close - closes[slot]
        self._sum_fast += close - (
            closes[(count - self._fast) % slow] if count >= self._fast else 0.0
        )
        closes[slot] = close
        self._count = count = count + 1
        if count < slow:
            return
        if count % 4096 == 0:  # re-sum now and then so rounding errors cannot accumulate
            self._sum_slow = sum(closes)
            self._sum_fast = sum(closes[(count - k) % slow] for k in range(1, self._fast + 1))
        fast_mean = self._sum_fast / self._fast
        slow_mean = self._sum_slow / slow
        if abs(fast_mean - slow_mean) <= 1e-9 * abs(slow_mean):
            fast_mean = math.fsum(closes[(count - k) % slow] for k in range(1, self._fast + 1))
            fast_mean /= self._fast
            slow_mean = math.fsum(closes) / slow
        if fast_mean > slow_mean:
            target = self._long
        elif fast_mean < slow_mean:
            target = self._short
        else:
            return
        if self._plain:  # fixed units, no exits: the hot path
            if target != self.position and not self.open_orders:
                self.target_position(target)
        elif self._bracketed:
            self._trade_with_exits(target, close)
        else:
            self._resize(target, close)

    def _units(self, close: float) -> float:
        """The size of a new position: sized by the account view, or ``quantity``."""
        return self.size(close, self.config.quantity)

    def _resize(self, target: float, close: float) -> None:
        """Sized positions: trade only when the direction changes (then to a newly sized
        position), never to rebalance a held one."""
        direction = (target > 0) - (target < 0)
        if self.open_orders or direction == (self.position > 0) - (self.position < 0):
            return
        wanted = direction * self._units(close)
        if wanted != self.position:
            self.target_position(wanted)

    def _trade_with_exits(self, target: float, close: float) -> None:
        """Act on a new target: cancel the exits, close the position, send a bracket."""
        direction = (target > 0) - (target < 0)
        if direction == (self._acted > 0) - (self._acted < 0):
            return
        bracket = self._bracket
        exits = set() if bracket is None else {bracket.stop_loss, bracket.take_profit}
        if self.open_orders - exits:
            return  # an order still works (an entry partly filled): wait for it
        if bracket is not None:
            self.cancel_bracket(bracket)
            self._bracket = None
        if self.position:
            self.submit_order(SELL if self.position > 0 else BUY, abs(self.position))
        if target:
            config = self.config
            sign = 1.0 if target > 0 else -1.0
            units = self._units(close)
            if units <= 0.0:
                return  # cannot be sized yet: try again on the next bar
            self._bracket = self.submit_bracket(
                BUY if target > 0 else SELL,
                units,
                stop_loss=close * (1.0 - sign * config.stop_loss) if config.stop_loss else None,
                take_profit=(
                    close * (1.0 + sign * config.take_profit) if config.take_profit else None
                ),
            )
            if self._bracket.entry not in self.open_orders:
                return  # refused (the broker answers at once): try again on the next bar
        self._acted = target
