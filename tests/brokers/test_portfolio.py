"""Portfolio accounting: cash, average price, realised P&L, fees and snapshots.

The portfolio is wired like production (recorder, portfolio, broker; the
broker subscribes first). A scripted broker, a fake that publishes the fills it
is told to on the same bus, stands in for the simulated broker where the
accounting cases need exact fill prices; one case runs through the real
:class:`~brokers.simulated.SimulatedBroker`. Expected figures are worked out by
hand.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brokers.config import BrokerConfig
from brokers.portfolio import Portfolio
from brokers.simulated import SimulatedBroker
from engine.core.bus import MessageBus
from engine.core.events import (
    BUY,
    SELL,
    Bar,
    Message,
    OrderFilled,
    PortfolioSnapshot,
    SubmitOrder,
)

SYMBOL = "X"
START = 1_704_159_000_000_000_000  # 2024-01-02 01:30 UTC
HALF_HOUR = 30 * 60 * 10**9
CASH = 100_000.0


class ScriptedBroker:
    """Fake broker: publishes the fills it is given, as the simulated broker would."""

    def __init__(self, bus: MessageBus) -> None:
        self._bus = bus
        self._count = 0
        self.ts = START

    def fill(self, side: str, quantity: float, price: float, commission: float = 0.0) -> None:
        self._count += 1
        self._bus.publish(
            OrderFilled(
                ts_event=self.ts,
                ts_init=self.ts,
                seq=self._bus.next_seq(),
                order_id=f"O{self._count}",
                fill_id=f"F{self._count}",
                strategy_id="test",
                symbol=SYMBOL,
                side=side,  # type: ignore[arg-type]
                quantity=quantity,
                price=price,
                commission=commission,
                slippage=0.0,
                filled_quantity=quantity,
                leaves_quantity=0.0,
            )
        )


class Book:
    """Bus, recorder, portfolio and a scripted broker; ``bar`` returns the bar's snapshot."""

    def __init__(self, cash: float = CASH) -> None:
        self.bus = MessageBus()
        self.events: list[Message] = []
        self.bus.subscribe("*", self.events.append)
        self.portfolio = Portfolio(self.bus, cash)
        self.broker = ScriptedBroker(self.bus)
        self.portfolio.subscribe()
        self.ts = START

    def fill(self, side: str, quantity: float, price: float, commission: float = 0.0) -> None:
        self.broker.fill(side, quantity, price, commission)

    def bar(self, close: float) -> PortfolioSnapshot:
        self.ts += HALF_HOUR
        self.broker.ts = self.ts
        mark = len(self.events)
        self.bus.publish(
            Bar(
                ts_event=self.ts,
                ts_init=self.ts,
                seq=self.bus.next_seq(),
                symbol=SYMBOL,
                open=close,
                high=close,
                low=close,
                close=close,
                volume=1_000.0,
            )
        )
        snapshots = [e for e in self.events[mark:] if isinstance(e, PortfolioSnapshot)]
        assert len(snapshots) == 1
        return snapshots[0]

    @property
    def position(self) -> Any:
        return self.portfolio.position(SYMBOL)


@pytest.fixture
def book() -> Book:
    return Book()


def approx(value: float) -> Any:
    return pytest.approx(value, rel=1e-12, abs=1e-9)


def test_portfolio_no_fills_snapshot_all_cash_zero_exposure(book: Book) -> None:
    snapshot = book.bar(50.0)
    assert (snapshot.position, snapshot.cash, snapshot.equity) == (0.0, CASH, CASH)
    assert (snapshot.exposure, snapshot.realised_pnl, snapshot.unrealised_pnl) == (0.0, 0.0, 0.0)
    assert (snapshot.fees, snapshot.turnover, snapshot.mark_price) == (0.0, 0.0, 50.0)


def test_portfolio_buy_moves_cash_by_notional_and_commission(book: Book) -> None:
    book.fill(BUY, 100.0, 10.0, commission=1.0)
    assert book.portfolio.cash == approx(100_000.0 - 1_000.0 - 1.0)
    assert (book.position.quantity, book.position.avg_price) == (100.0, 10.0)
    snapshot = book.bar(11.0)
    assert snapshot.cash == approx(98_999.0)
    assert snapshot.position == 100.0
    assert snapshot.avg_price == 10.0
    assert snapshot.mark_price == 11.0
    assert snapshot.equity == approx(98_999.0 + 1_100.0)
    assert snapshot.unrealised_pnl == approx(100.0)
    assert snapshot.realised_pnl == 0.0
    assert snapshot.exposure == approx(1_100.0 / 100_099.0)
    assert (snapshot.fees, snapshot.turnover) == (1.0, 1_000.0)


def test_portfolio_add_to_long_averages_entry_price(book: Book) -> None:
    book.fill(BUY, 100.0, 10.0)
    book.fill(BUY, 300.0, 12.0)
    # (100 x 10 + 300 x 12) / 400 = 11.5
    assert (book.position.quantity, book.position.avg_price) == (400.0, approx(11.5))
    assert book.position.realised_pnl == 0.0
    snapshot = book.bar(12.5)
    assert snapshot.unrealised_pnl == approx(400.0)
    assert snapshot.equity == approx(100_000.0 - 1_000.0 - 3_600.0 + 5_000.0)


def test_portfolio_partial_close_realises_pnl_keeps_average(book: Book) -> None:
    book.fill(BUY, 100.0, 10.0)
    book.fill(BUY, 300.0, 12.0)
    book.fill(SELL, 150.0, 13.0)
    # (13 - 11.5) x 150 = 225
    assert book.position.quantity == 250.0
    assert book.position.avg_price == approx(11.5)
    assert book.position.realised_pnl == approx(225.0)
    snapshot = book.bar(13.0)
    assert snapshot.realised_pnl == approx(225.0)
    assert snapshot.unrealised_pnl == approx((13.0 - 11.5) * 250.0)
    assert snapshot.cash == approx(100_000.0 - 4_600.0 + 1_950.0)


def test_portfolio_flip_long_to_short_realises_closed_part_new_average_is_fill(
    book: Book,
) -> None:
    book.fill(BUY, 100.0, 10.0)
    book.fill(BUY, 300.0, 12.0)
    book.fill(SELL, 150.0, 13.0)
    book.fill(SELL, 400.0, 9.0, commission=2.0)
    # closes 250 at 9 against 11.5: -625, after +225 before: -400; 150 short opened at 9
    assert book.position.quantity == -150.0
    assert book.position.avg_price == 9.0
    assert book.position.realised_pnl == approx(-400.0)
    snapshot = book.bar(8.0)
    assert snapshot.position == -150.0
    assert snapshot.avg_price == 9.0
    assert snapshot.unrealised_pnl == approx(150.0)  # short 150 from 9 marked at 8
    cash = 100_000.0 - 1_000.0 - 3_600.0 + 1_950.0 + 3_600.0 - 2.0
    assert snapshot.cash == approx(cash)
    assert snapshot.equity == approx(cash - 150.0 * 8.0)
    assert snapshot.exposure == approx(1_200.0 / (cash - 1_200.0))
    assert snapshot.fees == 2.0
    assert snapshot.turnover == approx(1_000.0 + 3_600.0 + 1_950.0 + 3_600.0)


def test_portfolio_short_then_cover_realises_and_flattens(book: Book) -> None:
    book.fill(SELL, 100.0, 50.0)
    assert book.portfolio.cash == approx(105_000.0)
    assert (book.position.quantity, book.position.avg_price) == (-100.0, 50.0)
    book.fill(BUY, 40.0, 45.0)
    # (50 - 45) x 40 = 200
    assert book.position.realised_pnl == approx(200.0)
    assert (book.position.quantity, book.position.avg_price) == (-60.0, 50.0)
    book.fill(BUY, 60.0, 55.0)
    # (50 - 55) x 60 = -300, so -100 in all
    assert book.position.realised_pnl == approx(-100.0)
    assert (book.position.quantity, book.position.avg_price) == (0.0, 0.0)
    snapshot = book.bar(60.0)
    assert snapshot.equity == approx(100_000.0 - 100.0)
    assert snapshot.cash == snapshot.equity
    assert (snapshot.position, snapshot.unrealised_pnl, snapshot.exposure) == (0.0, 0.0, 0.0)


def test_portfolio_flip_short_to_long_realises_closed_part_new_average_is_fill(
    book: Book,
) -> None:
    book.fill(SELL, 100.0, 50.0)
    book.fill(BUY, 150.0, 40.0)
    assert book.position.realised_pnl == approx(1_000.0)
    assert (book.position.quantity, book.position.avg_price) == (50.0, 40.0)
    snapshot = book.bar(42.0)
    assert snapshot.unrealised_pnl == approx(100.0)
    assert snapshot.equity == approx(100_000.0 + 5_000.0 - 6_000.0 + 50.0 * 42.0)


def test_portfolio_commissions_in_fees_and_cash_not_in_realised_pnl(book: Book) -> None:
    book.fill(BUY, 10.0, 100.0, commission=5.0)
    book.fill(SELL, 10.0, 100.0, commission=5.0)
    assert book.position.realised_pnl == 0.0
    assert book.portfolio.fees == 10.0
    assert book.portfolio.cash == approx(100_000.0 - 10.0)
    snapshot = book.bar(100.0)
    assert (snapshot.realised_pnl, snapshot.fees) == (0.0, 10.0)
    assert snapshot.equity == approx(99_990.0)


def test_portfolio_snapshots_equity_is_cash_plus_position_at_mark(book: Book) -> None:
    book.fill(BUY, 30.0, 20.0, commission=0.5)
    for close in (20.0, 21.5, 19.25, 22.0):
        snapshot = book.bar(close)
        assert snapshot.equity == snapshot.cash + snapshot.position * snapshot.mark_price
        assert snapshot.exposure == approx(abs(snapshot.position * close) / snapshot.equity)
        assert book.portfolio.equity == snapshot.equity
    book.fill(SELL, 50.0, 22.0)
    snapshot = book.bar(23.0)
    assert snapshot.position == -20.0
    assert snapshot.equity == snapshot.cash + snapshot.position * snapshot.mark_price
    assert snapshot.exposure == approx(460.0 / snapshot.equity)
    assert snapshot.exposure > 0.0


def test_portfolio_equity_not_positive_exposure_infinite() -> None:
    book = Book(cash=1_000.0)
    book.fill(BUY, 100.0, 10.0)
    snapshot = book.bar(0.5)
    assert snapshot.equity == approx(50.0)
    book.fill(SELL, 200.0, 0.5)
    book.fill(BUY, 100.0, 0.5, commission=200.0)
    snapshot = book.bar(0.5)
    assert snapshot.equity < 0.0
    assert math.isinf(snapshot.exposure)


def test_portfolio_via_simulated_broker_snapshot_matches_fill() -> None:
    bus = MessageBus()
    events: list[Message] = []
    bus.subscribe("*", events.append)
    portfolio = Portfolio(bus, CASH)
    broker = SimulatedBroker(
        bus,
        portfolio,
        BrokerConfig(commission_bps=10.0, commission_minimum=2.0),
        symbols=(SYMBOL,),
    )
    broker.subscribe()
    portfolio.subscribe()

    def bar(ts: int, open_: float, close: float) -> None:
        low, high = min(open_, close), max(open_, close)
        bus.publish(
            Bar(
                ts_event=ts,
                ts_init=ts,
                seq=bus.next_seq(),
                symbol=SYMBOL,
                open=open_,
                high=high,
                low=low,
                close=close,
                volume=1e6,
            )
        )

    bar(START, 20.0, 20.0)
    bus.publish(
        SubmitOrder(
            ts_event=START,
            ts_init=START,
            seq=bus.next_seq(),
            order_id="O1",
            strategy_id="test",
            symbol=SYMBOL,
            side=BUY,
            quantity=500.0,
        )
    )
    bar(START + HALF_HOUR, 21.0, 22.0)
    fill, snapshot = events[-2], events[-1]
    assert isinstance(fill, OrderFilled)
    assert isinstance(snapshot, PortfolioSnapshot)
    # 500 x 21 = 10 500; 10 bps = 10.5 > 2
    assert fill.commission == approx(10.5)
    assert snapshot.cash == approx(CASH - 10_500.0 - 10.5)
    assert snapshot.equity == approx(CASH - 10_500.0 - 10.5 + 11_000.0)
    assert snapshot.avg_price == 21.0
    assert snapshot.unrealised_pnl == approx(500.0)
    assert snapshot.fees == approx(10.5)
    assert snapshot.turnover == approx(10_500.0)


fills_strategy = st.lists(
    st.tuples(
        st.sampled_from([BUY, SELL]),
        st.integers(1, 50).map(float),
        st.integers(50, 150).map(float),
        st.sampled_from([0.0, 0.25, 1.0]),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=100, deadline=None)
@given(fills=fills_strategy, close=st.integers(50, 150).map(float))
def test_portfolio_any_fills_pnl_identity_holds(
    fills: list[tuple[str, float, float, float]], close: float
) -> None:
    """equity - initial cash == realised + unrealised - fees; cash and position from the fills."""
    book = Book()
    cash = CASH
    position = 0.0
    for side, quantity, price, commission in fills:
        book.fill(side, quantity, price, commission)
        signed = quantity if side == BUY else -quantity
        cash -= signed * price + commission
        position += signed
    snapshot = book.bar(close)
    fees = sum(f[3] for f in fills)
    assert snapshot.position == position
    assert snapshot.cash == approx(cash)
    assert snapshot.fees == approx(fees)
    assert snapshot.equity == approx(cash + position * close)
    total = snapshot.realised_pnl + snapshot.unrealised_pnl - snapshot.fees
    assert snapshot.equity - CASH == pytest.approx(total, rel=1e-9, abs=1e-6)
    if position == 0.0:
        assert snapshot.avg_price == 0.0
    else:
        assert 50.0 <= snapshot.avg_price <= 150.0
