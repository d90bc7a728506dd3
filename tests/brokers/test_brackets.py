"""Brackets in the simulated broker: an entry with a stop-loss and a take-profit exit.

The desk of ``test_simulated_broker`` drives the broker through the bus: orders O1,
O2, ... in submission order, a bracket being the entry O1, the stop-loss O2 and the
take-profit O3 (exits name their entry in ``parent_order_id``). Every expected fill
price and quantity is worked out by hand from the rules in the module docstring of
:mod:`brokers.simulated`; the comments show the arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from engine.core.bus import MessageBus
from engine.core.clock import SimulatedClock
from engine.core.events import (
    BUY,
    DAY,
    LIMIT,
    MARKET,
    SELL,
    STOP,
    Bar,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    SubmitOrder,
)
from strategies.base import BracketOrders, Strategy
from tests.brokers.test_simulated_broker import SYMBOL, Desk, names, ns, wire


@pytest.fixture
def make_desk() -> Callable[..., Desk]:
    return wire


@pytest.fixture
def desk() -> Desk:
    return wire()


def bracket(
    desk: Desk,
    side: str,
    quantity: float,
    stop_loss: float,
    take_profit: float,
    order_type: str = MARKET,
    **entry: float | str,
) -> list[str]:
    """Send entry O<n>, stop-loss O<n+1>, take-profit O<n+2>; return the event names."""
    exit_side = SELL if side == BUY else BUY
    events = desk.submit(side, quantity, order_type, **entry)  # type: ignore[arg-type]
    entry_id = events[0].order_id
    events += desk.submit(exit_side, quantity, STOP, stop=stop_loss, parent=entry_id)
    events += desk.submit(exit_side, quantity, LIMIT, limit=take_profit, parent=entry_id)
    return names(events)


def fill_of(events: list, order_id: str) -> OrderFilled:
    found = [e for e in events if isinstance(e, OrderFilled) and e.order_id == order_id]
    assert len(found) == 1, names(events)
    return found[0]


def canceled(events: list, order_id: str) -> OrderCanceled:
    found = [e for e in events if isinstance(e, OrderCanceled) and e.order_id == order_id]
    assert len(found) == 1, names(events)
    return found[0]


# -- the exits of a filled entry ----------------------------------------------


def test_bracket_take_profit_hit_fills_at_limit_and_cancels_stop_loss(desk: Desk) -> None:
    desk.bar(100.0, 100.5, 99.5, 100.0)
    assert bracket(desk, BUY, 10.0, stop_loss=95.0, take_profit=105.0) == [
        "SubmitOrder:O1",
        "OrderAccepted:O1",
        "SubmitOrder:O2",
        "OrderAccepted:O2",
        "SubmitOrder:O3",
        "OrderAccepted:O3",
    ]
    # the entry fills at the open, 100.5; the bar stays inside 95..105
    first = desk.bar(100.5, 102.0, 99.0, 101.0)
    assert names(first) == ["Bar", "OrderFilled:O1", "PortfolioSnapshot"]
    assert fill_of(first, "O1").price == 100.5
    # open 101 < 105 <= high 106: the take-profit fills at its limit, 105, no slippage
    second = desk.bar(101.0, 106.0, 100.0, 104.0)
    assert names(second) == ["Bar", "OrderFilled:O3", "OrderCanceled:O2", "PortfolioSnapshot"]
    profit = fill_of(second, "O3")
    assert (profit.side, profit.quantity, profit.price, profit.leaves_quantity) == (
        SELL,
        10.0,
        105.0,
        0.0,
    )
    assert canceled(second, "O2").reason.startswith("oco: exit O3")
    # cash: 100 000 - 10 x 100.5 + 10 x 105 = 100 045
    assert desk.portfolio.cash == pytest.approx(100_045.0, rel=1e-12)
    assert desk.portfolio.position(SYMBOL).quantity == 0.0
    assert desk.broker.working_orders == []
    assert names(desk.bar(90.0, 94.0, 89.0, 91.0)) == ["Bar", "PortfolioSnapshot"]


def test_bracket_stop_loss_hit_inside_bar_fills_at_stop_with_slippage(
    make_desk: Callable[..., Desk],
) -> None:
    desk = make_desk(slippage_bps=10.0)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    bracket(desk, BUY, 10.0, stop_loss=95.0, take_profit=105.0)
    entry = fill_of(desk.bar(100.0, 101.0, 99.0, 100.0), "O1")
    assert entry.price == pytest.approx(100.1, rel=1e-12)  # 100 x (1 + 10 bps)
    # open 99 > 95 >= low 94: the stop triggers inside the bar, 95 x (1 - 10 bps) = 94.905
    events = desk.bar(99.0, 100.0, 94.0, 96.0)
    assert names(events) == ["Bar", "OrderFilled:O2", "OrderCanceled:O3", "PortfolioSnapshot"]
    loss = fill_of(events, "O2")
    assert loss.price == pytest.approx(94.905, rel=1e-12)
    assert loss.slippage == pytest.approx(0.95, rel=1e-9)  # (95 - 94.905) x 10
    assert loss.quantity == 10.0
    # cash: 100 000 - 1 001 + 949.05 = 99 948.05
    assert desk.portfolio.cash == pytest.approx(99_948.05, rel=1e-12)


def test_bracket_gap_through_stop_loss_fills_at_open(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(slippage_bps=10.0)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    bracket(desk, BUY, 10.0, stop_loss=95.0, take_profit=105.0)
    desk.bar(100.0, 101.0, 99.0, 100.0)
    # opens at 93, below the stop: fills at the open, 93 x (1 - 10 bps) = 92.907
    events = desk.bar(93.0, 94.0, 92.0, 93.5)
    assert names(events) == ["Bar", "OrderFilled:O2", "OrderCanceled:O3", "PortfolioSnapshot"]
    loss = fill_of(events, "O2")
    assert loss.price == pytest.approx(92.907, rel=1e-12)
    assert loss.slippage == pytest.approx(0.93, rel=1e-9)  # (93 - 92.907) x 10


def test_bracket_both_exits_in_one_bar_stop_loss_fills_take_profit_canceled(desk: Desk) -> None:
    desk.bar(100.0, 100.5, 99.5, 100.0)
    bracket(desk, BUY, 10.0, stop_loss=95.0, take_profit=105.0)
    desk.bar(100.0, 101.0, 99.0, 100.0)
    # low 94 <= 95 and high 106 >= 105, neither at the open 100: the stop-loss is
    # assumed first and fills at 95; the take-profit does not fill
    events = desk.bar(100.0, 106.0, 94.0, 100.0)
    assert names(events) == ["Bar", "OrderFilled:O2", "OrderCanceled:O3", "PortfolioSnapshot"]
    assert fill_of(events, "O2").price == 95.0
    # cash: 100 000 - 1 000 + 950 = 99 950
    assert desk.portfolio.cash == pytest.approx(99_950.0, rel=1e-12)


def test_bracket_gap_through_take_profit_fills_at_open_before_stop_loss(desk: Desk) -> None:
    desk.bar(100.0, 100.5, 99.5, 100.0)
    bracket(desk, BUY, 10.0, stop_loss=95.0, take_profit=105.0)
    desk.bar(100.0, 101.0, 99.0, 100.0)
    # opens at 106, above the take-profit: that fill comes first, at the open; the
    # later low of 94 finds no position left
    events = desk.bar(106.0, 107.0, 94.0, 95.0)
    assert names(events) == ["Bar", "OrderFilled:O3", "OrderCanceled:O2", "PortfolioSnapshot"]
    assert fill_of(events, "O3").price == 106.0


def test_bracket_short_take_profit_fills_at_limit(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(slippage_bps=10.0)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    bracket(desk, SELL, 10.0, stop_loss=105.0, take_profit=95.0)
    entry = fill_of(desk.bar(100.0, 101.0, 99.0, 100.0), "O1")
    assert entry.price == pytest.approx(99.9, rel=1e-12)  # 100 x (1 - 10 bps)
    # the take-profit is a buy limit at 95: open 99 > 95 >= low 94, fills at 95
    events = desk.bar(99.0, 99.5, 94.0, 95.5)
    assert names(events) == ["Bar", "OrderFilled:O3", "OrderCanceled:O2", "PortfolioSnapshot"]
    profit = fill_of(events, "O3")
    assert (profit.side, profit.price, profit.quantity) == (BUY, 95.0, 10.0)
    # cash: 100 000 + 999 - 950 = 100 049, the short's profit (99.9 - 95) x 10
    assert desk.portfolio.cash == pytest.approx(100_049.0, rel=1e-12)
    assert desk.portfolio.position(SYMBOL).quantity == 0.0


def test_bracket_short_gap_through_stop_loss_fills_at_open(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(slippage_bps=10.0)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    bracket(desk, SELL, 10.0, stop_loss=105.0, take_profit=95.0)
    desk.bar(100.0, 101.0, 99.0, 100.0)
    # a buy stop at 105, the bar opens at 106: 106 x (1 + 10 bps) = 106.106
    events = desk.bar(106.0, 108.0, 94.0, 107.0)
    assert names(events) == ["Bar", "OrderFilled:O2", "OrderCanceled:O3", "PortfolioSnapshot"]
    loss = fill_of(events, "O2")
    assert (loss.side, loss.quantity) == (BUY, 10.0)
    assert loss.price == pytest.approx(106.106, rel=1e-12)
    # cash: 100 000 + 999 - 1 061.06 = 99 937.94
    assert desk.portfolio.cash == pytest.approx(99_937.94, rel=1e-12)


# -- the entry's bar -----------------------------------------------------------


def test_bracket_market_entry_exits_work_on_entry_bar(desk: Desk) -> None:
    desk.bar(100.0, 100.5, 99.5, 100.0)
    bracket(desk, BUY, 10.0, stop_loss=95.0, take_profit=105.0)
    # filled at the open, 100: the whole bar follows, its high 106 reaches 105
    events = desk.bar(100.0, 106.0, 99.0, 104.0)
    assert names(events) == [
        "Bar",
        "OrderFilled:O1",
        "OrderFilled:O3",
        "OrderCanceled:O2",
        "PortfolioSnapshot",
    ]
    assert (fill_of(events, "O1").price, fill_of(events, "O3").price) == (100.0, 105.0)


def test_bracket_entry_filled_inside_bar_stop_loss_fills_on_that_bar(desk: Desk) -> None:
    desk.bar(100.0, 100.5, 99.5, 100.0)
    bracket(desk, BUY, 10.0, stop_loss=97.0, take_profit=102.0, order_type=LIMIT, limit=99.0)
    # the limit 99 is touched inside the bar (open 100); the low 96 may have come after
    # the entry: the worst case is assumed, the stop-loss fills at 97; the high 103 may
    # have come before it, so the take-profit does not fill
    events = desk.bar(100.0, 103.0, 96.0, 101.0)
    assert names(events) == [
        "Bar",
        "OrderFilled:O1",
        "OrderFilled:O2",
        "OrderCanceled:O3",
        "PortfolioSnapshot",
    ]
    assert (fill_of(events, "O1").price, fill_of(events, "O2").price) == (99.0, 97.0)
    assert desk.portfolio.position(SYMBOL).quantity == 0.0


def test_bracket_entry_filled_inside_bar_take_profit_waits_for_next_bar(desk: Desk) -> None:
    desk.bar(100.0, 100.5, 99.5, 100.0)
    bracket(desk, BUY, 10.0, stop_loss=97.0, take_profit=102.0, order_type=LIMIT, limit=99.0)
    # entry at 99 inside the bar; the high 103 may have come before it: no take-profit
    events = desk.bar(100.0, 103.0, 98.5, 101.0)
    assert names(events) == ["Bar", "OrderFilled:O1", "PortfolioSnapshot"]
    # the next bar reaches 102 from 101: the take-profit fills at 102
    events = desk.bar(101.0, 102.5, 100.5, 102.0)
    assert names(events) == ["Bar", "OrderFilled:O3", "OrderCanceled:O2", "PortfolioSnapshot"]
    assert fill_of(events, "O3").price == 102.0


# -- partial fills -------------------------------------------------------------


def test_bracket_entry_partly_filled_exits_close_only_the_filled_part(
    make_desk: Callable[..., Desk],
) -> None:
    desk = make_desk(max_participation=0.5)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    bracket(desk, BUY, 100.0, stop_loss=95.0, take_profit=105.0)
    # volume 60 x 0.5 = 30 of the 100 fill at the open, 100
    entry = fill_of(desk.bar(100.0, 101.0, 99.0, 100.0, volume=60.0), "O1")
    assert (entry.quantity, entry.leaves_quantity) == (30.0, 70.0)
    # the rest is not wanted: the entry is cancelled, its exits stay for the 30 filled
    assert names(desk.cancel("O1")) == ["CancelOrder:O1", "OrderCanceled:O1"]
    assert [o.command.order_id for o in desk.broker.working_orders] == ["O2", "O3"]
    assert [o.leaves for o in desk.broker.working_orders] == [30.0, 30.0]
    # open 96 > 95 >= low 94: the stop-loss sells the 30 held at 95, not its 100
    events = desk.bar(96.0, 97.0, 94.0, 95.0)
    assert names(events) == ["Bar", "OrderFilled:O2", "OrderCanceled:O3", "PortfolioSnapshot"]
    loss = fill_of(events, "O2")
    assert (loss.quantity, loss.price, loss.filled_quantity, loss.leaves_quantity) == (
        30.0,
        95.0,
        30.0,
        0.0,
    )
    assert desk.portfolio.position(SYMBOL).quantity == 0.0
    # cash: 100 000 - 30 x 100 + 30 x 95 = 99 850
    assert desk.portfolio.cash == pytest.approx(99_850.0, rel=1e-12)


def test_bracket_partial_take_profit_lowers_stop_loss_then_stop_loss_closes_rest(
    make_desk: Callable[..., Desk],
) -> None:
    desk = make_desk(max_participation=0.5)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    bracket(desk, BUY, 100.0, stop_loss=95.0, take_profit=105.0)
    # bar 1: volume 60 -> the entry fills 30 at the open, 100
    desk.bar(100.0, 101.0, 99.0, 100.0, volume=60.0)
    # bar 2, volume 100 -> at most 50 an order: the entry 50 more at the open 100.5
    # (80 held, all from the open), the take-profit 50 of them at 105
    second = desk.bar(100.5, 106.0, 100.0, 104.0, volume=100.0)
    assert names(second) == ["Bar", "OrderFilled:O1", "OrderFilled:O3", "PortfolioSnapshot"]
    entry, profit = fill_of(second, "O1"), fill_of(second, "O3")
    assert (entry.quantity, entry.price, entry.leaves_quantity) == (50.0, 100.5, 20.0)
    # the take-profit may fill 100 - 50 more; so may the stop-loss now
    assert (profit.quantity, profit.price, profit.leaves_quantity) == (50.0, 105.0, 50.0)
    assert [o.leaves for o in desk.broker.working_orders] == [20.0, 50.0, 50.0]
    # bar 3: the entry's last 20 at the open 104 (70 held); low 94 reaches the stop, the
    # stop-loss sells the 50 left of the entry's 100 at 95 and the take-profit is cancelled
    third = desk.bar(104.0, 104.5, 94.0, 95.0, volume=1_000.0)
    assert names(third) == [
        "Bar",
        "OrderFilled:O1",
        "OrderFilled:O2",
        "OrderCanceled:O3",
        "PortfolioSnapshot",
    ]
    loss = fill_of(third, "O2")
    assert (loss.quantity, loss.price, loss.filled_quantity, loss.leaves_quantity) == (
        50.0,
        95.0,
        50.0,
        0.0,
    )
    assert desk.portfolio.position(SYMBOL).quantity == 0.0
    # cash: 100 000 - 3 000 - 5 025 + 5 250 - 2 080 + 4 750 = 99 895
    assert desk.portfolio.cash == pytest.approx(99_895.0, rel=1e-12)
    assert desk.broker.working_orders == []


# -- the entry stops working -----------------------------------------------------


def test_bracket_entry_canceled_before_fill_cancels_exits(desk: Desk) -> None:
    desk.bar(100.0, 100.5, 99.5, 100.0)
    bracket(desk, BUY, 10.0, stop_loss=90.0, take_profit=100.0, order_type=LIMIT, limit=95.0)
    assert names(desk.bar(100.0, 101.0, 96.0, 100.0)) == ["Bar", "PortfolioSnapshot"]
    events = desk.cancel("O1")
    assert names(events) == [
        "CancelOrder:O1",
        "OrderCanceled:O1",
        "OrderCanceled:O2",
        "OrderCanceled:O3",
    ]
    assert events[1].reason == "requested"
    assert events[2].reason.startswith("contingency: entry O1 was canceled")
    assert desk.broker.working_orders == []
    assert names(desk.bar(94.0, 101.0, 89.0, 95.0)) == ["Bar", "PortfolioSnapshot"]
    assert desk.fills() == []


def test_bracket_day_entry_expired_before_fill_cancels_exits(desk: Desk) -> None:
    desk.bar(100.0, 100.5, 99.5, 100.0)
    bracket(desk, BUY, 10.0, 90.0, 110.0, order_type=LIMIT, limit=95.0, tif=DAY)
    events = desk.bar(100.0, 101.0, 89.0, 100.0, at=ns("2024-01-03T01:30"))
    assert names(events) == [
        "Bar",
        "OrderExpired:O1",
        "OrderCanceled:O2",
        "OrderCanceled:O3",
        "PortfolioSnapshot",
    ]
    assert events[2].reason.startswith("contingency: entry O1 expired")


def test_bracket_cancel_one_exit_leaves_the_other_working(desk: Desk) -> None:
    desk.bar(100.0, 100.5, 99.5, 100.0)
    bracket(desk, BUY, 10.0, stop_loss=95.0, take_profit=105.0)
    desk.bar(100.0, 101.0, 99.0, 100.0)
    assert names(desk.cancel("O3")) == ["CancelOrder:O3", "OrderCanceled:O3"]
    events = desk.bar(100.0, 106.0, 94.0, 100.0)
    assert names(events) == ["Bar", "OrderFilled:O2", "PortfolioSnapshot"]


# -- pre-trade checks --------------------------------------------------------------


def test_bracket_exits_not_counted_in_short_check(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(allow_short=False)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    # two sells of 10 against a buy of 10 would project -10: exits are not counted
    assert [
        n for n in bracket(desk, BUY, 10.0, 95.0, 105.0) if "Order" in n and "Submit" not in n
    ] == [
        "OrderAccepted:O1",
        "OrderAccepted:O2",
        "OrderAccepted:O3",
    ]


@pytest.mark.parametrize(
    ("side", "order_type", "price", "parent", "reason"),
    [
        pytest.param(SELL, STOP, {"stop": 95.0}, "O9", "no working X order 'O9'", id="unknown"),
        pytest.param(BUY, STOP, {"stop": 95.0}, "O1", "other side", id="same-side"),
        pytest.param(SELL, MARKET, {}, "O1", "got market", id="market"),
    ],
)
def test_exit_refused_with_contingency_reason(
    desk: Desk, side: str, order_type: str, price: dict[str, float], parent: str, reason: str
) -> None:
    desk.bar(100.0, 100.5, 99.5, 100.0)
    desk.submit(BUY, 10.0)
    events = desk.submit(side, 10.0, order_type, parent=parent, **price)  # type: ignore[arg-type]
    assert names(events) == ["SubmitOrder:O2", "OrderRejected:O2"]
    assert events[1].reason.startswith("contingency:")
    assert reason in events[1].reason


def test_exit_of_an_exit_or_of_a_filled_entry_refused(desk: Desk) -> None:
    desk.bar(100.0, 100.5, 99.5, 100.0)
    bracket(desk, BUY, 10.0, stop_loss=95.0, take_profit=105.0)
    nested = desk.submit(BUY, 10.0, LIMIT, limit=90.0, parent="O2")
    assert "is an exit" in nested[1].reason
    desk.bar(100.0, 101.0, 99.0, 100.0)  # the entry fills and stops working
    late = desk.submit(SELL, 10.0, STOP, stop=90.0, parent="O1")
    assert isinstance(late[1], OrderRejected)
    assert "no working X order 'O1'" in late[1].reason


def test_bracket_exits_only_reduce_position_closed_by_other_order(desk: Desk) -> None:
    desk.bar(100.0, 100.5, 99.5, 100.0)
    bracket(desk, BUY, 10.0, stop_loss=95.0, take_profit=105.0)
    desk.bar(100.0, 101.0, 99.0, 100.0)
    desk.submit(SELL, 10.0)  # O4 flattens outside the bracket
    events = desk.bar(100.0, 101.0, 99.0, 100.0)
    assert names(events) == ["Bar", "OrderFilled:O4", "PortfolioSnapshot"]
    # the stop is reached but there is nothing left to sell: no fill, no short
    assert names(desk.bar(96.0, 97.0, 90.0, 91.0)) == ["Bar", "PortfolioSnapshot"]
    assert desk.portfolio.position(SYMBOL).quantity == 0.0
    assert [o.command.order_id for o in desk.broker.working_orders] == ["O2", "O3"]


# -- the strategy's side ---------------------------------------------------------


class BracketStrategy(Strategy):
    """Buys a bracket on the first bar; cancels it on the bar ``cancel_on``."""

    def __init__(self, bus: MessageBus, clock: SimulatedClock, cancel_on: int = 0) -> None:
        super().__init__("S", bus, SYMBOL, clock)
        self.bars = 0
        self.cancel_on = cancel_on
        self.ids: BracketOrders | None = None

    def on_bar(self, bar: Bar) -> None:
        self.bars += 1
        if self.bars == 1:
            self.ids = self.submit_bracket(
                BUY, 10.0, stop_loss=bar.close - 5.0, take_profit=bar.close + 5.0
            )
        elif self.bars == self.cancel_on and self.ids is not None:
            self.cancel_bracket(self.ids)


def test_strategy_submit_bracket_sends_entry_then_linked_exits(desk: Desk) -> None:
    strategy = BracketStrategy(desk.bus, desk.clock)
    strategy.subscribe()
    desk.bar(100.0, 100.5, 99.5, 100.0)
    assert strategy.ids == BracketOrders("S-1", "S-2", "S-3")
    commands = [e for e in desk.events if isinstance(e, SubmitOrder)]
    assert [
        (c.side, c.order_type, c.stop_price, c.limit_price, c.parent_order_id) for c in commands
    ] == [
        (BUY, MARKET, None, None, None),
        (SELL, STOP, 95.0, None, "S-1"),
        (SELL, LIMIT, None, 105.0, "S-1"),
    ]
    assert sum(isinstance(e, OrderAccepted) for e in desk.events) == 3
    assert strategy.open_orders == {"S-1", "S-2", "S-3"}
    events = desk.bar(100.0, 106.0, 99.0, 104.0)
    assert names(events)[1:4] == ["OrderFilled:S-1", "OrderFilled:S-3", "OrderCanceled:S-2"]
    assert strategy.position == 0.0
    assert strategy.open_orders == set()


def test_strategy_cancel_bracket_after_entry_filled_cancels_exits(desk: Desk) -> None:
    strategy = BracketStrategy(desk.bus, desk.clock, cancel_on=2)
    strategy.subscribe()
    desk.bar(100.0, 100.5, 99.5, 100.0)
    events = desk.bar(100.0, 101.0, 99.0, 100.0)
    assert names(events) == [
        "Bar",
        "OrderFilled:S-1",
        "PortfolioSnapshot",
        "CancelOrder:S-2",
        "OrderCanceled:S-2",
        "CancelOrder:S-3",
        "OrderCanceled:S-3",
    ]
    assert strategy.open_orders == set()
    assert desk.broker.working_orders == []


@pytest.mark.parametrize(
    ("side", "stop_loss", "take_profit", "message"),
    [
        pytest.param(BUY, 105.0, 95.0, "below", id="buy-wrong-way"),
        pytest.param(SELL, 95.0, 105.0, "above", id="sell-wrong-way"),
        pytest.param(BUY, None, None, "give a stop_loss", id="neither"),
        pytest.param(BUY, -1.0, None, "positive", id="negative"),
    ],
)
def test_strategy_submit_bracket_bad_prices_raise(
    desk: Desk, side: str, stop_loss: float | None, take_profit: float | None, message: str
) -> None:
    strategy = BracketStrategy(desk.bus, desk.clock)
    with pytest.raises(ValueError, match=message):
        strategy.submit_bracket(side, 10.0, stop_loss=stop_loss, take_profit=take_profit)
    assert desk.events == []


def test_strategy_submit_bracket_one_exit_only(desk: Desk) -> None:
    strategy = BracketStrategy(desk.bus, desk.clock)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    ids = strategy.submit_bracket(SELL, 10.0, stop_loss=104.0, take_profit=None)
    assert ids == BracketOrders("S-1", "S-2", None)
    events = desk.bar(100.0, 105.0, 99.0, 104.5)
    # a short from 100; the buy stop at 104 is reached inside the bar
    assert names(events) == ["Bar", "OrderFilled:S-1", "OrderFilled:S-2", "PortfolioSnapshot"]
    assert fill_of(events, "S-2").price == 104.0
