"""The SMA crossover's brackets on a bus wired like production (the broker's desk)."""

from __future__ import annotations

from engine.core.events import OrderDenied, OrderRejected
from strategies.sma_cross import SmaCross, SmaCrossConfig
from tests.brokers.test_simulated_broker import names, wire


def test_sma_cross_refused_bracket_entry_tried_again_next_bar() -> None:
    desk = wire(allow_short=False)
    config = SmaCrossConfig(fast=2, slow=3, quantity=10.0, stop_loss=0.05)
    strategy = SmaCross(desk.bus, desk.clock, "X", config)
    strategy.subscribe()
    desk.bar(100.0, 100.5, 99.5, 100.0)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    # SMA(2) 99.5 < SMA(3) 99.67: short, which the broker denies; the stop-loss that
    # names the refused entry is rejected
    events = desk.bar(100.0, 100.5, 98.5, 99.0)
    assert names(events)[2:] == [
        "SubmitOrder:sma-1",
        "OrderDenied:sma-1",
        "SubmitOrder:sma-2",
        "OrderRejected:sma-2",
    ]
    assert events[-1].reason.startswith("contingency:")
    # still short on the next close: the bracket goes out again
    events = desk.bar(99.0, 99.5, 97.5, 98.0)
    assert names(events)[2:] == [
        "SubmitOrder:sma-3",
        "OrderDenied:sma-3",
        "SubmitOrder:sma-4",
        "OrderRejected:sma-4",
    ]
    assert strategy.denials == 2
    assert strategy.open_orders == set()
    assert sum(isinstance(e, OrderDenied | OrderRejected) for e in desk.events) == 4
