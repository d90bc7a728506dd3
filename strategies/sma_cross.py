"""The reference strategy: a simple-moving-average crossover, long/short, fixed size.

On the close of every bar once SMA(slow) exists: target ``+quantity`` when
SMA(fast) > SMA(slow), ``-quantity`` (or flat with ``long_only``) when
SMA(fast) < SMA(slow), unchanged when they are equal. A market order for the
difference goes out when the target differs from the position and no order
is working; it fills at the next bar's open.

With ``[strategy.sizing]`` other than ``units`` (:mod:`strategies.sizing`), a position
is sized when the signal changes direction (a share of equity, or a volatility target,
and the symbol's weight in a universe) and then held until the next change.

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
from engine.core.events import Bar
from strategies.base import Strategy
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
    default ``quantity`` units."""

    fast: int = 10
    slow: int = 30
    quantity: float = 100.0
    long_only: bool = False
    sizing: SizingConfig = msgspec.field(default_factory=SizingConfig)
    allocation: Allocation = "equal"

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
        self._account = None if config.sizing.method == "units" else account
        self._lot = lot
        self.config = config
        self._fast = config.fast
        self._slow = config.slow
        self._closes: list[float] = [0.0] * config.slow  # ring buffer of the last `slow` closes
        self._count = 0
        self._sum_fast = 0.0
        self._sum_slow = 0.0
        self._long = config.quantity
        self._short = 0.0 if config.long_only else -config.quantity

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
        if self._account is not None:
            self._resize(target, close)
        elif target != self.position and not self.open_orders:
            self.target_position(target)

    def _resize(self, target: float, close: float) -> None:
        """Sized positions: trade only when the direction changes (then to a newly sized
        position), never to rebalance a held one."""
        direction = (target > 0) - (target < 0)
        if self.open_orders or direction == (self.position > 0) - (self.position < 0):
            return
        config = self.config
        assert self._account is not None
        units = self._account.units(self.symbol, close, self._lot, config.quantity)
        wanted = direction * units
        if wanted != self.position:
            self.target_position(wanted)
