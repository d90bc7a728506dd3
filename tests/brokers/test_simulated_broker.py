"""The simulated broker: fill rules, costs, time in force, cancels, volume cap, pre-trade checks.

Each test wires the bus like production (a recorder first, then the portfolio
and the broker, the broker subscribing before the portfolio), drives it only
through messages on the bus (bars, ``SubmitOrder``, ``CancelOrder``) and
compares the recorded sequence of messages. Prices in the expectations are
worked out by hand from the rules in the module docstring of
:mod:`brokers.simulated`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brokers.config import BrokerConfig
from brokers.portfolio import Portfolio
from brokers.simulated import SimulatedBroker
from engine.core.bus import MessageBus
from engine.core.clock import SimulatedClock
from engine.core.events import (
    BUY,
    DAY,
    GTC,
    LIMIT,
    MARKET,
    SELL,
    STOP,
    STOP_LIMIT,
    Bar,
    CancelOrder,
    Message,
    OrderAccepted,
    OrderDenied,
    OrderFilled,
    OrderRejected,
    PortfolioSnapshot,
    SubmitOrder,
)
from strategies.base import Strategy

SYMBOL = "X"
HALF_HOUR = 30 * 60 * 10**9


def ns(text: str) -> int:
    """Int nanoseconds UTC of an ISO date-time read as UTC."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * 10**9


START = ns("2024-01-02T01:30")


class Desk:
    """One symbol wired like production, driven only through the bus."""

    def __init__(self, *, cash: float, lot_size: float, timezone: str, **config: Any) -> None:
        self.bus = MessageBus()
        self.events: list[Message] = []
        self.bus.subscribe("*", self.events.append)
        self.clock = SimulatedClock(0)
        rules = BrokerConfig(initial_cash=cash, **config)
        self.portfolio = Portfolio(
            self.bus,
            cash,
            borrow_fee_bps=rules.borrow_fee_bps,
            financing_rate_bps=rules.financing_rate_bps,
        )
        self.broker = SimulatedBroker(
            self.bus,
            self.portfolio,
            rules,
            symbols=(SYMBOL,),
            lot_size=lot_size,
            timezone=timezone,
        )
        self.broker.subscribe()
        self.portfolio.subscribe()
        self.next_ts = START
        self.last_ts = 0
        self.order_count = 0

    def bar(
        self,
        open_: float,
        high: float,
        low: float,
        close: float,
        volume: float = 1_000_000.0,
        *,
        at: int | None = None,
    ) -> list[Message]:
        """Publish the next bar (30 minutes after the last, or at ``at``); return what it caused."""
        ts = self.next_ts if at is None else at
        self.next_ts = ts + HALF_HOUR
        self.last_ts = ts
        self.clock.set(ts)
        mark = len(self.events)
        self.bus.publish(
            Bar(
                ts_event=ts,
                ts_init=ts,
                seq=self.bus.next_seq(),
                symbol=SYMBOL,
                open=open_,
                high=high,
                low=low,
                close=close,
                volume=volume,
            )
        )
        return self.events[mark:]

    def submit_command(
        self,
        side: str,
        quantity: float,
        order_type: str = MARKET,
        *,
        limit: float | None = None,
        stop: float | None = None,
        tif: str = GTC,
        symbol: str = SYMBOL,
        parent: str | None = None,
    ) -> SubmitOrder:
        self.order_count += 1
        return SubmitOrder(
            ts_event=self.last_ts,
            ts_init=self.last_ts,
            seq=self.bus.next_seq(),
            order_id=f"O{self.order_count}",
            strategy_id="test",
            symbol=symbol,
            side=side,  # type: ignore[arg-type]
            quantity=quantity,
            order_type=order_type,  # type: ignore[arg-type]
            limit_price=limit,
            stop_price=stop,
            time_in_force=tif,  # type: ignore[arg-type]
            parent_order_id=parent,
        )

    def submit(
        self, side: str, quantity: float, order_type: str = MARKET, **kw: Any
    ) -> list[Message]:
        """Send an order (ids O1, O2, ... in order); return what it caused."""
        mark = len(self.events)
        self.bus.publish(self.submit_command(side, quantity, order_type, **kw))
        return self.events[mark:]

    def cancel_command(self, order_id: str) -> CancelOrder:
        return CancelOrder(
            ts_event=self.last_ts,
            ts_init=self.last_ts,
            seq=self.bus.next_seq(),
            order_id=order_id,
            strategy_id="test",
            symbol=SYMBOL,
        )

    def cancel(self, order_id: str) -> list[Message]:
        mark = len(self.events)
        self.bus.publish(self.cancel_command(order_id))
        return self.events[mark:]

    def fills(self, order_id: str | None = None) -> list[OrderFilled]:
        return [
            e
            for e in self.events
            if isinstance(e, OrderFilled) and (order_id is None or e.order_id == order_id)
        ]


def wire(
    *, cash: float = 100_000.0, lot_size: float = 1.0, timezone: str = "UTC", **config: Any
) -> Desk:
    return Desk(cash=cash, lot_size=lot_size, timezone=timezone, **config)


@pytest.fixture
def make_desk() -> Callable[..., Desk]:
    return wire


@pytest.fixture
def desk() -> Desk:
    return wire()


def names(events: list[Message]) -> list[str]:
    """Compact record: the message type, with ``:order_id`` for order messages."""
    out = []
    for event in events:
        order_id = getattr(event, "order_id", None)
        name = type(event).__name__
        out.append(f"{name}:{order_id}" if order_id is not None else name)
    return out


def only(events: list[Message], kind: type[Message]) -> Any:
    found = [e for e in events if isinstance(e, kind)]
    assert len(found) == 1, names(events)
    return found[0]


def assert_fields(message: Message, expected: dict[str, Any]) -> None:
    """Every field of ``message`` equals ``expected``; floats to 1e-12 relative."""
    actual = msgspec.structs.asdict(message)
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        if isinstance(value, float):
            assert actual[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name
        else:
            assert actual[name] == value, name


# -- market orders ----------------------------------------------------------


def test_market_order_submitted_on_close_fills_at_next_open_with_slippage(
    make_desk: Callable[..., Desk],
) -> None:
    desk = make_desk(slippage_bps=10.0, commission_bps=5.0, commission_per_unit=0.01)
    first = desk.bar(100.0, 101.0, 99.0, 100.5)
    assert names(first) == ["Bar", "PortfolioSnapshot"]

    submitted = desk.submit(BUY, 200.0)
    assert names(submitted) == ["SubmitOrder:O1", "OrderAccepted:O1"]
    accepted = submitted[1]
    assert (accepted.ts_event, accepted.seq) == (START, submitted[0].seq + 1)
    assert desk.fills() == []  # nothing at this bar's close

    second = desk.bar(102.0, 103.0, 101.0, 102.5)
    assert names(second) == ["Bar", "OrderFilled:O1", "PortfolioSnapshot"]
    fill = second[1]
    # 102 x (1 + 10 bps) = 102.102; notional 20 420.4; commission 10.2102 + 200 x 0.01
    assert_fields(
        fill,
        {
            "ts_event": START + HALF_HOUR,
            "ts_init": START + HALF_HOUR,
            "seq": second[0].seq + 1,
            "order_id": "O1",
            "fill_id": "F1",
            "strategy_id": "test",
            "symbol": SYMBOL,
            "side": BUY,
            "quantity": 200.0,
            "price": 102.102,
            "commission": 12.2102,
            "slippage": 20.4,
            "filled_quantity": 200.0,
            "leaves_quantity": 0.0,
        },
    )
    snapshot = second[2]
    assert snapshot.cash == pytest.approx(100_000.0 - 20_420.4 - 12.2102, rel=1e-12)
    assert snapshot.position == 200.0
    assert snapshot.equity == pytest.approx(79_567.3898 + 200 * 102.5, rel=1e-12)
    assert desk.broker.working_orders == []

    assert names(desk.bar(103.0, 104.0, 102.0, 103.0)) == ["Bar", "PortfolioSnapshot"]


def test_market_sell_slippage_moves_price_down(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(slippage_bps=25.0)
    desk.bar(100.0, 101.0, 99.0, 100.0)
    desk.submit(SELL, 10.0)
    fill = only(desk.bar(80.0, 81.0, 79.0, 80.0), OrderFilled)
    assert fill.price == pytest.approx(79.8, rel=1e-12)  # 80 x (1 - 25 bps)
    assert fill.slippage == pytest.approx(2.0, rel=1e-12)  # 0.2 x 10
    assert fill.commission == 0.0


def test_market_orders_several_working_fill_in_submission_order(desk: Desk) -> None:
    desk.bar(100.0, 101.0, 99.0, 100.0)
    desk.submit(BUY, 5.0)
    desk.submit(SELL, 3.0)
    desk.submit(BUY, 1.0)
    events = desk.bar(100.0, 101.0, 99.0, 100.0)
    assert names(events) == [
        "Bar",
        "OrderFilled:O1",
        "OrderFilled:O2",
        "OrderFilled:O3",
        "PortfolioSnapshot",
    ]
    assert [e.fill_id for e in events[1:4]] == ["F1", "F2", "F3"]
    assert events[-1].position == 3.0


def test_commission_notional_and_per_unit_above_minimum_charged_in_full(
    make_desk: Callable[..., Desk],
) -> None:
    desk = make_desk(commission_bps=3.0, commission_per_unit=0.005, commission_minimum=5.0)
    desk.bar(50.0, 51.0, 49.0, 50.0)
    desk.submit(BUY, 1_000.0)
    fill = only(desk.bar(40.0, 41.0, 39.0, 40.0), OrderFilled)
    # 40 000 x 3 / 1e4 = 12, plus 1 000 x 0.005 = 5: 17 > 5
    assert fill.commission == pytest.approx(17.0, rel=1e-12)
    assert desk.portfolio.cash == pytest.approx(100_000.0 - 40_000.0 - 17.0, rel=1e-12)
    assert desk.portfolio.fees == pytest.approx(17.0, rel=1e-12)


def test_commission_below_minimum_charges_minimum(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(commission_bps=3.0, commission_per_unit=0.005, commission_minimum=5.0)
    desk.bar(50.0, 51.0, 49.0, 50.0)
    desk.submit(SELL, 10.0)
    fill = only(desk.bar(40.0, 41.0, 39.0, 40.0), OrderFilled)
    # 400 x 3 / 1e4 = 0.12, plus 10 x 0.005 = 0.05: 0.17 < 5
    assert fill.commission == 5.0
    assert desk.portfolio.cash == pytest.approx(100_000.0 + 400.0 - 5.0, rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    bps=st.floats(0.0, 50.0),
    per_unit=st.floats(0.0, 0.05),
    minimum=st.floats(0.0, 20.0),
    slippage_bps=st.floats(0.0, 100.0),
    lots=st.integers(1, 500),
    open_=st.floats(1.0, 1_000.0),
    side=st.sampled_from([BUY, SELL]),
)
def test_commission_any_costs_equal_max_of_minimum_and_bps_plus_per_unit(
    bps: float,
    per_unit: float,
    minimum: float,
    slippage_bps: float,
    lots: int,
    open_: float,
    side: str,
) -> None:
    desk = wire(
        cash=1e12,
        lot_size=10.0,
        commission_bps=bps,
        commission_per_unit=per_unit,
        commission_minimum=minimum,
        slippage_bps=slippage_bps,
    )
    desk.bar(open_, open_, open_, open_)
    quantity = lots * 10.0
    desk.submit(side, quantity)
    fill = only(desk.bar(open_, open_ * 1.01, open_ * 0.99, open_), OrderFilled)
    sign = 1.0 if side == BUY else -1.0
    price = open_ + sign * open_ * slippage_bps / 10_000.0
    assert fill.price == pytest.approx(price, rel=1e-12)
    assert fill.slippage == pytest.approx(abs(price - open_) * quantity, rel=1e-9, abs=1e-9)
    expected = max(minimum, quantity * price * bps / 10_000.0 + quantity * per_unit)
    assert fill.commission == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert fill.commission >= minimum


# -- limit orders -----------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "limit", "bar", "price"),
    [
        pytest.param(BUY, 99.0, (98.0, 100.0, 97.0, 99.5), 98.0, id="buy-gap-fills-at-open"),
        pytest.param(BUY, 99.0, (99.0, 100.0, 98.0, 99.5), 99.0, id="buy-open-at-limit"),
        pytest.param(BUY, 99.0, (100.0, 101.0, 98.5, 100.0), 99.0, id="buy-touch-fills-at-limit"),
        pytest.param(BUY, 99.0, (100.0, 101.0, 99.0, 100.0), 99.0, id="buy-low-equals-limit"),
        pytest.param(SELL, 101.0, (102.0, 103.0, 100.0, 101.0), 102.0, id="sell-gap-fills-at-open"),
        pytest.param(SELL, 101.0, (100.0, 101.5, 99.0, 100.0), 101.0, id="sell-touch-at-limit"),
        pytest.param(SELL, 101.0, (100.0, 101.0, 99.0, 100.0), 101.0, id="sell-high-equals-limit"),
    ],
)
def test_limit_order_reached_fills_at_open_or_limit_without_slippage(
    make_desk: Callable[..., Desk],
    side: str,
    limit: float,
    bar: tuple[float, float, float, float],
    price: float,
) -> None:
    desk = make_desk(slippage_bps=50.0)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    desk.submit(side, 10.0, LIMIT, limit=limit)
    events = desk.bar(*bar)
    assert names(events) == ["Bar", "OrderFilled:O1", "PortfolioSnapshot"]
    fill = events[1]
    assert fill.price == price
    assert fill.slippage == 0.0
    assert (fill.filled_quantity, fill.leaves_quantity) == (10.0, 0.0)


@pytest.mark.parametrize(
    ("side", "limit", "later", "price"),
    [
        pytest.param(BUY, 99.0, (99.5, 100.0, 98.0, 99.0), 99.0, id="buy"),
        pytest.param(SELL, 101.0, (102.5, 103.0, 102.0, 102.5), 102.5, id="sell"),
    ],
)
def test_limit_order_not_touched_keeps_working_and_fills_on_later_bar(
    desk: Desk, side: str, limit: float, later: tuple[float, float, float, float], price: float
) -> None:
    desk.bar(100.0, 100.5, 99.5, 100.0)
    desk.submit(side, 10.0, LIMIT, limit=limit)
    # bars that stay strictly between the buy limit (99) and the sell limit (101)
    assert names(desk.bar(100.0, 100.99, 99.01, 100.0)) == ["Bar", "PortfolioSnapshot"]
    assert names(desk.bar(100.5, 100.98, 99.02, 100.5)) == ["Bar", "PortfolioSnapshot"]
    assert [o.command.order_id for o in desk.broker.working_orders] == ["O1"]
    events = desk.bar(*later)
    assert names(events) == ["Bar", "OrderFilled:O1", "PortfolioSnapshot"]
    assert events[1].price == price
    assert desk.broker.working_orders == []


# -- stop orders ------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "stop", "bar", "reference", "price"),
    [
        pytest.param(BUY, 105.0, (106.0, 107.0, 105.5, 106.0), 106.0, 106.53, id="buy-gap"),
        pytest.param(BUY, 105.0, (105.0, 106.0, 104.0, 105.0), 105.0, 105.525, id="buy-open-at"),
        pytest.param(BUY, 105.0, (100.0, 106.0, 99.0, 104.0), 105.0, 105.525, id="buy-intrabar"),
        pytest.param(SELL, 95.0, (94.0, 94.5, 93.0, 94.0), 94.0, 93.53, id="sell-gap"),
        pytest.param(SELL, 95.0, (100.0, 101.0, 94.0, 96.0), 95.0, 94.525, id="sell-intrabar"),
    ],
)
def test_stop_order_triggered_fills_at_open_or_stop_with_slippage(
    make_desk: Callable[..., Desk],
    side: str,
    stop: float,
    bar: tuple[float, float, float, float],
    reference: float,
    price: float,
) -> None:
    desk = make_desk(slippage_bps=50.0)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    desk.submit(side, 10.0, STOP, stop=stop)
    events = desk.bar(*bar)
    assert names(events) == ["Bar", "OrderFilled:O1", "PortfolioSnapshot"]
    fill = events[1]
    assert fill.price == pytest.approx(price, rel=1e-12)
    assert fill.slippage == pytest.approx(abs(price - reference) * 10.0, rel=1e-9)


@pytest.mark.parametrize(
    ("side", "stop"),
    [pytest.param(BUY, 105.0, id="buy"), pytest.param(SELL, 95.0, id="sell")],
)
def test_stop_order_not_reached_keeps_working(desk: Desk, side: str, stop: float) -> None:
    desk.bar(100.0, 100.5, 99.5, 100.0)
    desk.submit(side, 10.0, STOP, stop=stop)
    assert names(desk.bar(100.0, 104.99, 95.01, 100.0)) == ["Bar", "PortfolioSnapshot"]
    assert [o.command.order_id for o in desk.broker.working_orders] == ["O1"]


# -- stop-limit orders ------------------------------------------------------


def test_stop_limit_buy_triggered_at_open_within_limit_fills_at_open(
    make_desk: Callable[..., Desk],
) -> None:
    desk = make_desk(slippage_bps=50.0)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    desk.submit(BUY, 10.0, STOP_LIMIT, stop=105.0, limit=107.0)
    fill = only(desk.bar(106.0, 108.0, 105.5, 107.0), OrderFilled)
    assert (fill.price, fill.slippage) == (106.0, 0.0)


def test_stop_limit_sell_triggered_at_open_within_limit_fills_at_open(desk: Desk) -> None:
    desk.bar(100.0, 100.5, 99.5, 100.0)
    desk.submit(SELL, 10.0, STOP_LIMIT, stop=95.0, limit=93.0)
    fill = only(desk.bar(94.0, 94.5, 92.0, 93.0), OrderFilled)
    assert fill.price == 94.0


def test_stop_limit_buy_triggered_at_open_beyond_limit_rests_then_fills_as_limit(
    desk: Desk,
) -> None:
    desk.bar(100.0, 100.5, 99.5, 100.0)
    desk.submit(BUY, 10.0, STOP_LIMIT, stop=105.0, limit=107.0)
    # opens above the limit: triggered, no fill on this bar although the low touches 107
    assert names(desk.bar(108.0, 109.0, 106.5, 108.0)) == ["Bar", "PortfolioSnapshot"]
    # now a limit order: stays above 107 all bar, no fill
    assert names(desk.bar(108.0, 109.0, 107.5, 108.0)) == ["Bar", "PortfolioSnapshot"]
    # touches 107 from above: fills at the limit
    events = desk.bar(108.0, 108.5, 106.0, 106.5)
    assert names(events) == ["Bar", "OrderFilled:O1", "PortfolioSnapshot"]
    assert events[1].price == 107.0


def test_stop_limit_buy_triggered_at_open_beyond_limit_later_gap_fills_at_open(
    desk: Desk,
) -> None:
    desk.bar(100.0, 100.5, 99.5, 100.0)
    desk.submit(BUY, 10.0, STOP_LIMIT, stop=105.0, limit=107.0)
    assert names(desk.bar(108.0, 109.0, 107.5, 108.0)) == ["Bar", "PortfolioSnapshot"]
    # below the stop now, but it was triggered: a limit at 107, gapped through at 104
    fill = only(desk.bar(104.0, 104.5, 103.0, 104.0), OrderFilled)
    assert fill.price == 104.0


def test_stop_limit_sell_triggered_at_open_beyond_limit_rests_then_fills_as_limit(
    desk: Desk,
) -> None:
    desk.bar(100.0, 100.5, 99.5, 100.0)
    desk.submit(SELL, 10.0, STOP_LIMIT, stop=95.0, limit=93.0)
    assert names(desk.bar(92.0, 93.5, 91.0, 92.0)) == ["Bar", "PortfolioSnapshot"]
    fill = only(desk.bar(92.0, 93.2, 91.5, 93.0), OrderFilled)
    assert fill.price == 93.0


@pytest.mark.parametrize(
    ("limit", "price"),
    [pytest.param(106.0, 105.0, id="limit-above-stop"), pytest.param(105.0, 105.0, id="equal")],
)
def test_stop_limit_buy_triggered_intrabar_limit_at_or_above_stop_fills_at_stop(
    make_desk: Callable[..., Desk], limit: float, price: float
) -> None:
    desk = make_desk(slippage_bps=50.0)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    desk.submit(BUY, 10.0, STOP_LIMIT, stop=105.0, limit=limit)
    fill = only(desk.bar(100.0, 107.0, 99.0, 106.0), OrderFilled)
    assert (fill.price, fill.slippage) == (price, 0.0)


def test_stop_limit_sell_triggered_intrabar_limit_at_or_below_stop_fills_at_stop(
    desk: Desk,
) -> None:
    desk.bar(100.0, 100.5, 99.5, 100.0)
    desk.submit(SELL, 10.0, STOP_LIMIT, stop=95.0, limit=94.0)
    fill = only(desk.bar(100.0, 101.0, 93.0, 94.0), OrderFilled)
    assert fill.price == 95.0


def test_stop_limit_buy_triggered_intrabar_limit_below_stop_rests_as_limit(desk: Desk) -> None:
    desk.bar(100.0, 100.5, 99.5, 100.0)
    desk.submit(BUY, 10.0, STOP_LIMIT, stop=105.0, limit=103.0)
    # triggered inside the bar; the low even reaches 103, but the path is unknown: no fill
    assert names(desk.bar(100.0, 107.0, 99.0, 104.0)) == ["Bar", "PortfolioSnapshot"]
    assert [o.command.order_id for o in desk.broker.working_orders] == ["O1"]
    # a limit at 103 from now on, no stop needed any more
    assert names(desk.bar(104.0, 104.5, 103.5, 104.0)) == ["Bar", "PortfolioSnapshot"]
    fill = only(desk.bar(104.0, 104.5, 102.0, 102.5), OrderFilled)
    assert fill.price == 103.0


def test_stop_limit_sell_triggered_intrabar_limit_above_stop_rests_as_limit(desk: Desk) -> None:
    desk.bar(100.0, 100.5, 99.5, 100.0)
    desk.submit(SELL, 10.0, STOP_LIMIT, stop=95.0, limit=97.0)
    assert names(desk.bar(100.0, 101.0, 93.0, 96.0)) == ["Bar", "PortfolioSnapshot"]
    fill = only(desk.bar(98.0, 99.0, 97.5, 98.5), OrderFilled)
    assert fill.price == 98.0  # gapped through the 97 limit


def test_stop_limit_not_triggered_limit_touched_no_fill(desk: Desk) -> None:
    desk.bar(100.0, 100.5, 99.5, 100.0)
    desk.submit(BUY, 10.0, STOP_LIMIT, stop=105.0, limit=107.0)
    assert names(desk.bar(100.0, 104.0, 90.0, 95.0)) == ["Bar", "PortfolioSnapshot"]
    assert [o.command.order_id for o in desk.broker.working_orders] == ["O1"]


# -- time in force ----------------------------------------------------------


def test_day_order_bar_of_next_local_date_expires_before_fill(
    make_desk: Callable[..., Desk],
) -> None:
    desk = make_desk(timezone="Asia/Shanghai")
    desk.bar(100.0, 100.5, 99.5, 100.0, at=ns("2024-01-01T15:00"))  # 23:00 on 1 Jan there
    desk.submit(BUY, 10.0, LIMIT, limit=99.0, tif=DAY)
    # 23:30 on 1 Jan there: same day, not touched
    assert names(desk.bar(100.0, 100.5, 99.5, 100.0)) == ["Bar", "PortfolioSnapshot"]
    # 00:30 on 2 Jan there (still 1 Jan in UTC): expires, although it would fill at the open
    events = desk.bar(98.0, 98.5, 97.0, 98.0, at=ns("2024-01-01T16:30"))
    assert names(events) == ["Bar", "OrderExpired:O1", "PortfolioSnapshot"]
    assert events[1].ts_event == ns("2024-01-01T16:30")
    assert desk.broker.working_orders == []
    assert names(desk.bar(90.0, 91.0, 89.0, 90.0)) == ["Bar", "PortfolioSnapshot"]


def test_day_order_same_date_in_utc_zone_keeps_working(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(timezone="UTC")
    desk.bar(100.0, 100.5, 99.5, 100.0, at=ns("2024-01-01T15:00"))
    desk.submit(BUY, 10.0, LIMIT, limit=99.0, tif=DAY)
    events = desk.bar(98.0, 98.5, 97.0, 98.0, at=ns("2024-01-01T16:30"))
    assert names(events) == ["Bar", "OrderFilled:O1", "PortfolioSnapshot"]


def test_day_order_utc_midnight_inside_one_local_day_keeps_working(
    make_desk: Callable[..., Desk],
) -> None:
    desk = make_desk(timezone="Asia/Shanghai")
    desk.bar(100.0, 100.5, 99.5, 100.0, at=ns("2024-01-01T23:30"))  # 07:30 on 2 Jan there
    desk.submit(BUY, 10.0, LIMIT, limit=99.0, tif=DAY)
    events = desk.bar(98.0, 98.5, 97.0, 98.0, at=ns("2024-01-02T00:30"))  # 08:30 on 2 Jan
    assert names(events) == ["Bar", "OrderFilled:O1", "PortfolioSnapshot"]


def test_day_order_market_submitted_on_last_bar_of_day_expires_next_day(
    make_desk: Callable[..., Desk],
) -> None:
    desk = make_desk(timezone="Asia/Shanghai")
    desk.bar(100.0, 100.5, 99.5, 100.0, at=ns("2024-01-02T07:00"))  # 15:00 on 2 Jan there
    desk.submit(SELL, 10.0, tif=DAY)
    events = desk.bar(101.0, 101.5, 100.5, 101.0, at=ns("2024-01-03T01:30"))
    assert names(events) == ["Bar", "OrderExpired:O1", "PortfolioSnapshot"]
    assert desk.fills() == []


def test_gtc_order_bar_of_later_local_date_keeps_working(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(timezone="Asia/Shanghai")
    desk.bar(100.0, 100.5, 99.5, 100.0, at=ns("2024-01-01T15:00"))
    desk.submit(BUY, 10.0, LIMIT, limit=99.0, tif=GTC)
    assert names(desk.bar(100.0, 100.5, 99.5, 100.0, at=ns("2024-01-01T16:30"))) == [
        "Bar",
        "PortfolioSnapshot",
    ]
    assert names(desk.bar(100.0, 100.5, 99.5, 100.0, at=ns("2024-01-05T02:00"))) == [
        "Bar",
        "PortfolioSnapshot",
    ]
    events = desk.bar(98.0, 98.5, 97.0, 98.0)
    assert names(events) == ["Bar", "OrderFilled:O1", "PortfolioSnapshot"]


def test_day_order_partly_filled_expires_remainder_next_day(
    make_desk: Callable[..., Desk],
) -> None:
    desk = make_desk(timezone="Asia/Shanghai", max_participation=0.1)
    desk.bar(100.0, 100.5, 99.5, 100.0, at=ns("2024-01-02T02:00"))
    desk.submit(BUY, 100.0, tif=DAY)
    fill = only(desk.bar(100.0, 100.5, 99.5, 100.0, volume=400.0), OrderFilled)
    assert (fill.quantity, fill.filled_quantity, fill.leaves_quantity) == (40.0, 40.0, 60.0)
    events = desk.bar(100.0, 100.5, 99.5, 100.0, volume=1e6, at=ns("2024-01-03T02:00"))
    assert names(events) == ["Bar", "OrderExpired:O1", "PortfolioSnapshot"]
    assert desk.portfolio.position(SYMBOL).quantity == 40.0


# -- cancels ----------------------------------------------------------------


def test_cancel_working_order_publishes_canceled_and_never_fills(desk: Desk) -> None:
    desk.bar(100.0, 100.5, 99.5, 100.0)
    desk.submit(BUY, 10.0, LIMIT, limit=99.0)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    events = desk.cancel("O1")
    assert names(events) == ["CancelOrder:O1", "OrderCanceled:O1"]
    assert events[1].reason == "requested"
    assert events[1].ts_event == desk.last_ts
    assert desk.broker.working_orders == []
    assert names(desk.bar(95.0, 96.0, 90.0, 95.0)) == ["Bar", "PortfolioSnapshot"]
    assert desk.fills() == []


def test_cancel_unknown_order_id_rejected_with_reason(desk: Desk) -> None:
    desk.bar(100.0, 100.5, 99.5, 100.0)
    events = desk.cancel("nope")
    assert names(events) == ["CancelOrder:nope", "OrderRejected:nope"]
    assert "no working order" in events[1].reason


def test_cancel_filled_order_rejected_with_reason(desk: Desk) -> None:
    desk.bar(100.0, 100.5, 99.5, 100.0)
    desk.submit(BUY, 10.0)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    events = desk.cancel("O1")
    assert names(events) == ["CancelOrder:O1", "OrderRejected:O1"]
    assert events[1].reason


def test_cancel_one_of_several_working_orders_others_still_fill(desk: Desk) -> None:
    desk.bar(100.0, 100.5, 99.5, 100.0)
    desk.submit(BUY, 1.0, LIMIT, limit=99.0)
    desk.submit(BUY, 2.0, LIMIT, limit=99.0)
    desk.submit(BUY, 3.0, LIMIT, limit=99.0)
    desk.cancel("O2")
    events = desk.bar(98.0, 98.5, 97.0, 98.0)
    assert names(events) == ["Bar", "OrderFilled:O1", "OrderFilled:O3", "PortfolioSnapshot"]


def test_cancel_partly_filled_order_remainder_never_fills(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(max_participation=0.5)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    desk.submit(BUY, 100.0)
    fill = only(desk.bar(100.0, 100.5, 99.5, 100.0, volume=60.0), OrderFilled)
    assert (fill.quantity, fill.leaves_quantity) == (30.0, 70.0)
    assert names(desk.cancel("O1")) == ["CancelOrder:O1", "OrderCanceled:O1"]
    assert names(desk.bar(100.0, 100.5, 99.5, 100.0)) == ["Bar", "PortfolioSnapshot"]
    assert desk.portfolio.position(SYMBOL).quantity == 30.0


def test_cancel_sent_from_fill_handler_canceled_order_never_fills_afterwards(desk: Desk) -> None:
    """A one-cancels-other pair: the take-profit fills, its handler cancels the stop-loss."""

    def one_cancels_other(fill: OrderFilled) -> None:
        other = {"O2": "O3", "O3": "O2"}.get(fill.order_id)
        if other is not None:
            desk.bus.publish(desk.cancel_command(other))

    desk.bus.subscribe(OrderFilled, one_cancels_other)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    desk.submit(BUY, 10.0)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    desk.submit(SELL, 10.0, STOP, stop=95.0)  # O2: stop-loss
    desk.submit(SELL, 10.0, LIMIT, limit=105.0)  # O3: take-profit
    events = desk.bar(100.0, 106.0, 97.0, 104.0)
    assert names(events) == [
        "Bar",
        "OrderFilled:O3",
        "CancelOrder:O2",
        "OrderCanceled:O2",
        "PortfolioSnapshot",
    ]
    assert desk.broker.working_orders == []
    assert names(desk.bar(94.0, 95.0, 90.0, 91.0)) == ["Bar", "PortfolioSnapshot"]
    assert desk.fills("O2") == []
    assert desk.portfolio.position(SYMBOL).quantity == 0.0


def test_cancel_sent_from_fill_handler_later_orders_still_fill_on_that_bar(desk: Desk) -> None:
    def cancel_first(fill: OrderFilled) -> None:
        if fill.order_id == "O2":
            desk.bus.publish(desk.cancel_command("O1"))

    desk.bus.subscribe(OrderFilled, cancel_first)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    desk.submit(BUY, 1.0, LIMIT, limit=90.0)  # O1, not touched
    desk.submit(BUY, 2.0)  # O2
    desk.submit(BUY, 3.0)  # O3
    events = desk.bar(100.0, 100.5, 99.5, 100.0)
    assert names(events) == [
        "Bar",
        "OrderFilled:O2",
        "CancelOrder:O1",
        "OrderCanceled:O1",
        "OrderFilled:O3",
        "PortfolioSnapshot",
    ]
    assert desk.broker.working_orders == []


def test_order_submitted_from_fill_handler_fills_from_next_bar(desk: Desk) -> None:
    """An order sent while a bar's fills are being published works from the next bar on."""

    def exit_at_once(fill: OrderFilled) -> None:
        if fill.order_id == "O1":
            desk.bus.publish(desk.submit_command(SELL, 10.0))

    desk.bus.subscribe(OrderFilled, exit_at_once)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    desk.submit(BUY, 10.0)
    events = desk.bar(101.0, 102.0, 100.0, 101.5)
    assert names(events) == [
        "Bar",
        "OrderFilled:O1",
        "SubmitOrder:O2",
        "OrderAccepted:O2",
        "PortfolioSnapshot",
    ]
    events = desk.bar(103.0, 104.0, 102.0, 103.0)
    assert names(events) == ["Bar", "OrderFilled:O2", "PortfolioSnapshot"]
    assert events[1].price == 103.0


class CancelingStrategy(Strategy):
    """Places a resting limit buy on the first bar and cancels it on the second."""

    def __init__(self, bus: MessageBus, clock: SimulatedClock) -> None:
        super().__init__("S", bus, SYMBOL, clock)
        self.bars = 0
        self.order_id = ""

    def on_bar(self, bar: Bar) -> None:
        self.bars += 1
        if self.bars == 1:
            self.order_id = self.submit_order(BUY, 10.0, LIMIT, limit_price=bar.close - 5.0)
        elif self.bars == 2:
            self.cancel_order(self.order_id)


def test_strategy_cancel_order_of_working_order_publishes_order_canceled(desk: Desk) -> None:
    strategy = CancelingStrategy(desk.bus, desk.clock)
    strategy.subscribe()
    first = desk.bar(100.0, 100.5, 99.5, 100.0)
    assert names(first) == ["Bar", "PortfolioSnapshot", "SubmitOrder:S-1", "OrderAccepted:S-1"]
    second = desk.bar(100.0, 100.5, 99.5, 100.0)
    assert names(second) == [
        "Bar",
        "PortfolioSnapshot",
        "CancelOrder:S-1",
        "OrderCanceled:S-1",
    ]
    assert second[2].ts_event == desk.last_ts
    assert strategy.open_orders == set()


# -- volume cap -------------------------------------------------------------


def test_max_participation_fills_capped_partially_across_bars(
    make_desk: Callable[..., Desk],
) -> None:
    desk = make_desk(max_participation=0.1, lot_size=100.0, commission_minimum=1.0)
    desk.bar(10.0, 10.5, 9.5, 10.0)
    desk.submit(BUY, 500.0)
    # floor(2 550 x 0.1 / 100) x 100 = 200
    first = desk.bar(10.0, 10.5, 9.5, 10.0, volume=2_550.0)
    assert names(first) == ["Bar", "OrderFilled:O1", "PortfolioSnapshot"]
    # zero volume: nothing
    assert names(desk.bar(10.0, 10.5, 9.5, 10.0, volume=0.0)) == ["Bar", "PortfolioSnapshot"]
    # floor(999 x 0.1 / 100) = 0 lots: nothing
    assert names(desk.bar(10.0, 10.5, 9.5, 10.0, volume=999.0)) == ["Bar", "PortfolioSnapshot"]
    # floor(1 999 x 0.1 / 100) x 100 = 100
    second = desk.bar(11.0, 11.5, 10.5, 11.0, volume=1_999.0)
    # 10 000 x 0.1 = 1 000 > the 200 left
    third = desk.bar(12.0, 12.5, 11.5, 12.0, volume=10_000.0)
    assert names(desk.bar(12.0, 12.5, 11.5, 12.0)) == ["Bar", "PortfolioSnapshot"]
    fills = desk.fills("O1")
    assert fills == [first[1], second[1], third[1]]
    assert [(f.quantity, f.filled_quantity, f.leaves_quantity, f.price) for f in fills] == [
        (200.0, 200.0, 300.0, 10.0),
        (100.0, 300.0, 200.0, 11.0),
        (200.0, 500.0, 0.0, 12.0),
    ]
    assert [f.commission for f in fills] == [1.0, 1.0, 1.0]
    assert desk.portfolio.position(SYMBOL).quantity == 500.0
    assert desk.portfolio.cash == pytest.approx(100_000.0 - 2_000.0 - 1_100.0 - 2_400.0 - 3.0)


def test_max_participation_zero_volume_bar_market_order_no_fill(
    make_desk: Callable[..., Desk],
) -> None:
    desk = make_desk(max_participation=1.0)
    desk.bar(10.0, 10.5, 9.5, 10.0)
    desk.submit(SELL, 5.0)
    assert names(desk.bar(10.0, 10.5, 9.5, 10.0, volume=0.0)) == ["Bar", "PortfolioSnapshot"]
    assert [o.leaves for o in desk.broker.working_orders] == [5.0]


def test_max_participation_off_fills_whole_order_on_zero_volume_bar(desk: Desk) -> None:
    desk.bar(10.0, 10.5, 9.5, 10.0)
    desk.submit(BUY, 5_000.0)
    fill = only(desk.bar(10.0, 10.5, 9.5, 10.0, volume=0.0), OrderFilled)
    assert fill.quantity == 5_000.0


def test_max_participation_triggered_stop_remainder_fills_at_next_open(
    make_desk: Callable[..., Desk],
) -> None:
    """Once a stop has triggered it is a market order: its remainder does not wait for the stop
    to be crossed again (as a triggered stop-limit keeps working as a limit)."""
    desk = make_desk(max_participation=0.1)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    desk.submit(BUY, 100.0, STOP, stop=105.0)
    fill = only(desk.bar(100.0, 106.0, 99.0, 104.0, volume=500.0), OrderFilled)
    assert (fill.quantity, fill.price, fill.leaves_quantity) == (50.0, 105.0, 50.0)
    events = desk.bar(101.0, 103.0, 100.0, 102.0)
    assert names(events) == ["Bar", "OrderFilled:O1", "PortfolioSnapshot"]
    assert (events[1].quantity, events[1].price, events[1].leaves_quantity) == (50.0, 101.0, 0.0)


def test_max_participation_triggered_stop_limit_remainder_keeps_working_as_limit(
    make_desk: Callable[..., Desk],
) -> None:
    desk = make_desk(max_participation=0.1)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    desk.submit(BUY, 100.0, STOP_LIMIT, stop=105.0, limit=106.0)
    fill = only(desk.bar(100.0, 106.0, 99.0, 104.0, volume=500.0), OrderFilled)
    assert (fill.quantity, fill.price) == (50.0, 105.0)
    events = desk.bar(101.0, 103.0, 100.0, 102.0)
    assert names(events) == ["Bar", "OrderFilled:O1", "PortfolioSnapshot"]
    assert (events[1].quantity, events[1].price, events[1].leaves_quantity) == (50.0, 101.0, 0.0)


# -- pre-trade checks -------------------------------------------------------


def test_submit_unknown_symbol_rejected_with_reason(desk: Desk) -> None:
    desk.bar(100.0, 100.5, 99.5, 100.0)
    events = desk.submit(BUY, 10.0, symbol="Y")
    assert names(events) == ["SubmitOrder:O1", "OrderRejected:O1"]
    assert "unknown symbol" in events[1].reason
    assert "'Y'" in events[1].reason
    assert desk.broker.working_orders == []


@pytest.mark.parametrize("quantity", [150.0, 50.0, 100.5])
def test_submit_quantity_not_multiple_of_lot_rejected_with_reason(
    make_desk: Callable[..., Desk], quantity: float
) -> None:
    desk = make_desk(lot_size=100.0)
    desk.bar(10.0, 10.5, 9.5, 10.0)
    events = desk.submit(BUY, quantity)
    assert names(events) == ["SubmitOrder:O1", "OrderRejected:O1"]
    assert "lot size" in events[1].reason
    assert desk.broker.working_orders == []
    assert names(desk.bar(10.0, 10.5, 9.5, 10.0)) == ["Bar", "PortfolioSnapshot"]


def test_submit_quantity_multiple_of_lot_accepted(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(lot_size=100.0)
    desk.bar(10.0, 10.5, 9.5, 10.0)
    assert names(desk.submit(BUY, 300.0)) == ["SubmitOrder:O1", "OrderAccepted:O1"]


def test_submit_unknown_symbol_checked_before_lot_size(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(lot_size=100.0, allow_short=False)
    desk.bar(10.0, 10.5, 9.5, 10.0)
    rejected = desk.submit(SELL, 150.0, symbol="Y")[1]
    assert isinstance(rejected, OrderRejected)
    assert "unknown symbol" in rejected.reason


def test_submit_bad_lot_and_short_rejected_before_denied(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(lot_size=100.0, allow_short=False)
    desk.bar(10.0, 10.5, 9.5, 10.0)
    assert names(desk.submit(SELL, 150.0)) == ["SubmitOrder:O1", "OrderRejected:O1"]


def test_submit_sell_going_short_with_shorting_off_denied(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(allow_short=False)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    events = desk.submit(SELL, 10.0)
    assert names(events) == ["SubmitOrder:O1", "OrderDenied:O1"]
    assert "short" in events[1].reason
    assert desk.broker.working_orders == []
    assert names(desk.bar(100.0, 100.5, 99.5, 100.0)) == ["Bar", "PortfolioSnapshot"]


def test_submit_sell_to_flat_with_shorting_off_accepted(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(allow_short=False)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    desk.submit(BUY, 10.0)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    assert names(desk.submit(SELL, 10.0)) == ["SubmitOrder:O2", "OrderAccepted:O2"]
    assert names(desk.submit(SELL, 1.0)) == ["SubmitOrder:O3", "OrderDenied:O3"]


def test_submit_working_sells_count_toward_short_check(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(allow_short=False)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    desk.submit(BUY, 10.0)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    assert names(desk.submit(SELL, 6.0, LIMIT, limit=120.0)) == [
        "SubmitOrder:O2",
        "OrderAccepted:O2",
    ]
    assert names(desk.submit(SELL, 5.0, LIMIT, limit=130.0)) == [
        "SubmitOrder:O3",
        "OrderDenied:O3",
    ]
    assert names(desk.submit(SELL, 4.0, LIMIT, limit=130.0)) == [
        "SubmitOrder:O4",
        "OrderAccepted:O4",
    ]


def test_submit_position_too_large_for_equity_denied_for_margin(
    make_desk: Callable[..., Desk],
) -> None:
    desk = make_desk(cash=10_000.0)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    events = desk.submit(BUY, 101.0)
    assert names(events) == ["SubmitOrder:O1", "OrderDenied:O1"]
    assert "margin" in events[1].reason
    assert names(desk.submit(BUY, 100.0)) == ["SubmitOrder:O2", "OrderAccepted:O2"]


def test_submit_short_too_large_for_equity_denied_for_margin(
    make_desk: Callable[..., Desk],
) -> None:
    desk = make_desk(cash=10_000.0)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    denied = desk.submit(SELL, 101.0)[1]
    assert isinstance(denied, OrderDenied)
    assert "margin" in denied.reason
    assert isinstance(desk.submit(SELL, 100.0)[1], OrderAccepted)


def test_submit_margin_rate_half_allows_twice_equity(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(cash=10_000.0, margin_rate=0.5)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    assert isinstance(desk.submit(BUY, 201.0)[1], OrderDenied)
    assert isinstance(desk.submit(BUY, 200.0)[1], OrderAccepted)


def test_submit_working_orders_count_toward_margin(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(cash=10_000.0)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    assert isinstance(desk.submit(BUY, 60.0, LIMIT, limit=90.0)[1], OrderAccepted)
    denied = desk.submit(BUY, 41.0)[1]
    assert isinstance(denied, OrderDenied)
    assert "margin" in denied.reason
    assert isinstance(desk.submit(BUY, 40.0)[1], OrderAccepted)
    # a working sell nets the projection down again
    assert isinstance(desk.submit(SELL, 50.0, LIMIT, limit=120.0)[1], OrderAccepted)
    assert isinstance(desk.submit(BUY, 50.0)[1], OrderAccepted)


def test_submit_held_position_counts_toward_margin(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(cash=10_000.0)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    desk.submit(BUY, 80.0)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    assert desk.portfolio.equity == 10_000.0
    assert isinstance(desk.submit(BUY, 21.0)[1], OrderDenied)
    assert isinstance(desk.submit(BUY, 20.0)[1], OrderAccepted)


def test_submit_canceled_order_no_longer_counts_toward_margin(
    make_desk: Callable[..., Desk],
) -> None:
    desk = make_desk(cash=10_000.0)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    desk.submit(BUY, 100.0, LIMIT, limit=90.0)
    assert isinstance(desk.submit(BUY, 1.0)[1], OrderDenied)
    desk.cancel("O1")
    assert isinstance(desk.submit(BUY, 100.0)[1], OrderAccepted)


def test_submit_market_before_first_bar_denied_no_price(desk: Desk) -> None:
    events = desk.submit(BUY, 1.0)
    assert names(events) == ["SubmitOrder:O1", "OrderDenied:O1"]
    assert "no price" in events[1].reason


def test_denied_and_rejected_orders_no_later_events(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(allow_short=False, lot_size=10.0)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    desk.submit(SELL, 10.0)  # denied
    desk.submit(BUY, 15.0)  # rejected
    mark = len(desk.events)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    desk.bar(90.0, 110.0, 80.0, 100.0)
    assert all(type(e) in (Bar, PortfolioSnapshot) for e in desk.events[mark:])
    assert {type(e) for e in desk.events} <= {
        Bar,
        PortfolioSnapshot,
        SubmitOrder,
        OrderDenied,
        OrderRejected,
    }
