"""Warm-up before ``run.trade_start``: bars feed the strategy, no order goes out.

The runner hands the strategy a :class:`WarmupGate` instead of the bus. The gate
passes every subscription and message through, except a :class:`SubmitOrder`
sent before the trading start: that one never reaches the bus (so the broker,
the recorder and the results never see it) and the strategy's own handlers get
an :class:`OrderDenied` for it at once, so its view of working orders stays
right and it simply asks again on a later bar. Indicators and strategy state
therefore warm up on the bars before the start, and trading begins with them
ready, without the strategy knowing anything about warm-ups.
"""

from __future__ import annotations

import msgspec
import pandas as pd

from engine.app.scenario import ScenarioConfig
from engine.core.bus import ANY, Bus, Handler
from engine.core.clock import Clock
from engine.core.errors import ConfigError, DataError
from engine.core.events import Message, OrderDenied, SubmitOrder
from engine.feeds.bars import bound_ns
from strategies.marl.config import MappoEnsembleConfig
from strategies.sma_cross import SmaCrossConfig

__all__ = ["WarmupGate", "check_warmup", "decision_warmup", "trade_start_ns", "training_config"]


def trade_start_ns(config: ScenarioConfig) -> int | None:
    """``run.trade_start`` as int ns UTC (naive times in ``data.timezone``), or None."""
    if not config.run.trade_start:
        return None

    try:
        stamp = pd.Timestamp(config.run.trade_start)
    except (ValueError, TypeError):
        raise ConfigError(
            f"run.trade_start: cannot read {config.run.trade_start!r} as a date or time"
        ) from None
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize(config.data.timezone)
    return int(stamp.tz_convert("UTC").value)


def decision_warmup(config: ScenarioConfig) -> tuple[int, str]:
    """How many bars the scenario's strategy reads before its first decision, and why."""

    strategy = config.strategy
    if isinstance(strategy, MappoEnsembleConfig):
        return config.indicators.warmup, "the indicators' warm-up (see [indicators])"
    if isinstance(strategy, SmaCrossConfig):
        return strategy.slow - 1, f"SMA({strategy.slow}) needs {strategy.slow} closes"
    return 0, ""


def check_warmup(config: ScenarioConfig, bars: int) -> None:
    """Refuse data too short for one decision to be made and filled (a decision on a bar
    fills at the next bar's open)."""

    warmup, why = decision_warmup(config)
    if bars < warmup + 2:
        window = ""
        if config.data.start or config.data.end:
            window = f" between data.start={config.data.start!r} and data.end={config.data.end!r}"
        first = (
            f"reads {warmup:,} bars before its first decision ({why})"
            if warmup
            else "decides on the first bar"
        )
        has = f"{bars:,} bar" + ("" if bars == 1 else "s")
        raise DataError(
            f"the strategy {first} and needs one more to fill it, but the data has "
            f"{has}{window}; give it at least {warmup + 2:,} bars"
        )


def training_config(config: ScenarioConfig) -> ScenarioConfig:
    """The scenario cut to the bars a model may learn from, the one rule of ``emarl train``,
    sweeps (``--train``) and walk-forward folds: the bars inside ``data.start`` /
    ``data.end`` and, when ``run.trade_start`` is set, before it (the trading bars are
    never training bars). The result has ``data.end`` at the last bar end it allows and no
    ``run.trade_start``.
    """

    start = trade_start_ns(config)
    if start is None:
        return config
    data = config.data
    end = start - 1
    if data.end:
        end = min(end, bound_ns(data.end, data.timezone, "end"))
    return msgspec.structs.replace(
        config,
        data=msgspec.structs.replace(data, end=pd.Timestamp(end, tz="UTC").isoformat()),
        run=msgspec.structs.replace(config.run, trade_start=""),
    )


class WarmupGate:
    """A :class:`~engine.core.bus.Bus` for the strategy that holds its orders back until
    ``start_ns``."""

    def __init__(self, bus: Bus, clock: Clock, start_ns: int) -> None:
        self._bus = bus
        self._clock = clock
        self.start_ns = start_ns
        self.held = 0
        self._denied: list[tuple[str, Handler]] = []

    def subscribe(
        self, message_type: type[Message] | str, handler: Handler, symbol: str = ANY
    ) -> None:
        self._bus.subscribe(message_type, handler, symbol)
        if message_type is OrderDenied or message_type == ANY:
            self._denied.append((symbol, handler))

    def next_seq(self) -> int:
        return self._bus.next_seq()

    def publish(self, message: Message) -> None:
        if type(message) is SubmitOrder and self._clock.now_ns() < self.start_ns:
            self.held += 1
            now = self._clock.now_ns()
            denied = OrderDenied(
                ts_event=now,
                ts_init=now,
                seq=self._bus.next_seq(),
                order_id=message.order_id,
                strategy_id=message.strategy_id,
                symbol=message.symbol,
                reason="warm-up: no orders before run.trade_start",
            )
            for symbol, handler in self._denied:
                if symbol in (ANY, message.symbol):
                    handler(denied)
            return
        self._bus.publish(message)
