"""The broker and its orders as a state machine driven by random bars, orders and cancels.

Hypothesis publishes bars (valid OHLC, volume sometimes 0, steps from half an
hour to a day so DAY orders meet new dates), orders of every type and time in
force (some for an unknown symbol or off the lot size), brackets (an entry with a
stop-loss, a take-profit or both, of its size or less) and cancels (of live,
finished and unknown ids, entries and exits alike) on a bus wired like production.
A checker reads the recorded messages after every step and holds the broker to its
invariants, recomputing cash and position from the fills (and the holding costs, borrow fees and
financing, from what was held at each close) on its own: nothing
happens to an order after it is finished (no order is both filled and cancelled),
exits close no more than their entry filled and never flip the position, a
bracket's exits are cancelled only when they have nothing left to close, and no
take-profit fills on a bar after a stop-loss of its entry.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from brokers.config import BrokerConfig
from brokers.costs import YEAR_NS
from brokers.portfolio import Portfolio
from brokers.simulated import SimulatedBroker
from engine.core.bus import MessageBus
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
    OrderCanceled,
    OrderDenied,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    PortfolioSnapshot,
    SubmitOrder,
)

SYMBOL = "X"
CASH = 100_000.0
START = int(datetime(2024, 1, 2, 1, 30, tzinfo=UTC).timestamp()) * 10**9
MINUTE = 60 * 10**9

moves = st.floats(-0.04, 0.04)
offsets = st.floats(-0.02, 0.02)


class Checker:
    """Reads the recorded messages in order and checks each against what came before."""

    def __init__(self, config: BrokerConfig, lot: float, zone: str) -> None:
        self.config = config
        self.lot = lot
        self.zone = ZoneInfo(zone)
        self.cursor = 0
        self.orders: dict[str, SubmitOrder] = {}
        self.live: set[str] = set()
        self.finished: set[str] = set()
        self.filled: dict[str, float] = {}
        self.bars: dict[int, Bar] = {}
        self.cash = CASH
        self.position = 0.0
        self.mark = 0.0
        self.cancel_for: str | None = None
        self.last_bar: Bar | None = None
        # brackets, by entry id: what the exits closed, whether the entry stopped working
        # before it filled in full, the bar of its last stop-loss fill
        self.exited: dict[str, float] = {}
        self.cut: set[str] = set()
        self.stopped_ts: dict[str, int] = {}
        # holding costs: what was held at the last close (time, position, mark, cash)
        self.held: tuple[int, float, float, float] | None = None
        self.borrow_fees = 0.0
        self.financing = 0.0

    def date(self, ts: int) -> date:
        return datetime.fromtimestamp(ts // 10**9, UTC).astimezone(self.zone).date()

    def read(self, events: list[Message]) -> None:
        while self.cursor < len(events):
            event = events[self.cursor]
            self.cursor += 1
            self.check(event)

    def check(self, event: Message) -> None:
        order_id: str | None = getattr(event, "order_id", None)
        if self.cancel_for is not None:
            # the broker answers a cancel at once, before anything else
            assert order_id == self.cancel_for, event
            self.cancel_for = None
            if isinstance(event, OrderRejected):
                assert order_id not in self.live, event
                assert event.reason
                return
            assert isinstance(event, OrderCanceled), event
            assert event.reason == "requested", event
        elif isinstance(event, OrderCanceled):
            # the broker's own cancel: an exit of a bracket with nothing left to close
            self.check_contingent_cancel(event)
        if isinstance(event, Bar):
            self.on_bar(event)
        elif isinstance(event, SubmitOrder):
            assert event.order_id not in self.orders
            self.orders[event.order_id] = event
        elif isinstance(event, CancelOrder):
            self.cancel_for = event.order_id
        elif isinstance(event, PortfolioSnapshot):
            self.on_snapshot(event)
        else:
            assert order_id is not None, event
            assert order_id in self.orders, event
            assert order_id not in self.finished, f"{event!r} after the order finished"
            self.on_order_event(order_id, event)

    def on_bar(self, bar: Bar) -> None:
        self.bars[bar.ts_event] = bar
        self.last_bar = bar

    def on_order_event(self, order_id: str, event: Message) -> None:
        order = self.orders[order_id]
        if isinstance(event, OrderAccepted):
            assert order_id not in self.live
            assert order.symbol == SYMBOL
            if order.parent_order_id is not None:
                # an exit is accepted only while its entry works
                assert order.parent_order_id in self.live, event
                assert order.order_type in (LIMIT, STOP)
                self.exited.setdefault(order.parent_order_id, 0.0)
            self.live.add(order_id)
            self.filled[order_id] = 0.0
        elif isinstance(event, (OrderRejected, OrderDenied)):
            assert order_id not in self.live
            assert event.reason
            self.finished.add(order_id)
        elif isinstance(event, OrderCanceled):
            assert order_id in self.live
            self.close(order_id)
        elif isinstance(event, OrderExpired):
            assert order_id in self.live
            assert order.time_in_force == DAY
            assert self.date(event.ts_event) != self.date(order.ts_event)
            self.close(order_id)
        elif isinstance(event, OrderFilled):
            self.on_fill(order, event)
        else:  # pragma: no cover - a message type the broker does not send
            raise AssertionError(event)

    def close(self, order_id: str) -> None:
        self.live.discard(order_id)
        self.finished.add(order_id)
        order = self.orders[order_id]
        if order_id in self.exited and self.filled[order_id] < order.quantity - 1e-9:
            self.cut.add(order_id)  # an entry that stopped working before it filled in full

    def target(self, entry_id: str) -> float:
        """What a bracket's exits may close in all: the entry's size, or what it filled
        once it stopped working before that."""
        if entry_id in self.cut:
            return self.filled[entry_id]
        return self.orders[entry_id].quantity

    def exit_leaves(self, order: SubmitOrder) -> float:
        assert order.parent_order_id is not None
        entry_id = order.parent_order_id
        own = order.quantity - self.filled[order.order_id]
        return min(own, self.target(entry_id) - self.exited[entry_id])

    def check_contingent_cancel(self, event: OrderCanceled) -> None:
        order = self.orders[event.order_id]
        entry_id = order.parent_order_id
        assert entry_id is not None, f"{event!r}: the broker cancels only exits by itself"
        assert event.order_id in self.live, event
        assert self.exit_leaves(order) <= 1e-9, event
        if event.reason.startswith("oco:"):
            assert self.exited[entry_id] >= self.target(entry_id) - 1e-9, event
        else:
            assert event.reason.startswith("contingency:"), event
            assert entry_id in self.cut, event

    def on_fill(self, order: SubmitOrder, fill: OrderFilled) -> None:
        config = self.config
        assert fill.order_id in self.live
        assert fill.ts_event > order.ts_event, "filled on the bar it was submitted on"
        assert (fill.side, fill.symbol) == (order.side, order.symbol)
        assert fill.quantity > 0.0
        total = self.filled[fill.order_id] + fill.quantity
        self.filled[fill.order_id] = total
        assert total <= order.quantity + 1e-9
        assert fill.filled_quantity == pytest.approx(total, abs=1e-9)
        entry_id = order.parent_order_id
        if entry_id is None:
            assert fill.leaves_quantity == pytest.approx(order.quantity - total, abs=1e-9)
        else:
            self.on_exit_fill(entry_id, order, fill)
        bar = self.bars[fill.ts_event]
        if config.max_participation > 0.0:
            assert fill.quantity <= bar.volume * config.max_participation + 1e-9
            lots = fill.quantity / self.lot
            assert lots == pytest.approx(round(lots), abs=1e-9)
        slip = config.slippage_bps / 1e4
        low, high = bar.low * (1.0 - slip), bar.high * (1.0 + slip)
        assert low - 1e-9 <= fill.price <= high + 1e-9
        if order.order_type in (LIMIT, STOP_LIMIT):
            limit = order.limit_price
            assert limit is not None
            assert fill.price <= limit if order.side == BUY else fill.price >= limit
        notional = fill.quantity * fill.price
        commission = max(
            config.commission_minimum,
            notional * config.commission_bps / 1e4 + fill.quantity * config.commission_per_unit,
        )
        assert fill.commission == pytest.approx(commission, rel=1e-12, abs=1e-12)
        signed = fill.quantity if fill.side == BUY else -fill.quantity
        self.cash -= signed * fill.price + fill.commission
        self.position += signed
        if fill.leaves_quantity <= 1e-12:
            self.close(fill.order_id)

    def on_exit_fill(self, entry_id: str, order: SubmitOrder, fill: OrderFilled) -> None:
        # the exit closes what its entry filled, never more, and never flips the position
        exited = self.exited[entry_id] + fill.quantity
        self.exited[entry_id] = exited
        assert exited <= self.filled[entry_id] + 1e-9, "an exit closed more than its entry filled"
        held = self.position if fill.side == SELL else -self.position
        assert fill.quantity <= held + 1e-9, "an exit flipped the position"
        assert fill.leaves_quantity == pytest.approx(self.exit_leaves(order), abs=1e-9)
        assert fill.filled_quantity + fill.leaves_quantity <= order.quantity + 1e-9
        if order.order_type == STOP:
            self.stopped_ts[entry_id] = fill.ts_event
        else:
            assert self.stopped_ts.get(entry_id) != fill.ts_event, "take-profit after stop-loss"

    def on_snapshot(self, snapshot: PortfolioSnapshot) -> None:
        # holding costs on what the account held at the previous close, since then
        if self.held is not None:
            ts, position, mark, cash = self.held
            years = (snapshot.ts_event - ts) / YEAR_NS
            borrow = -position * mark * self.config.borrow_fee_bps / 1e4 * years
            financing = -cash * self.config.financing_rate_bps / 1e4 * years
            self.borrow_fees += max(borrow, 0.0)
            self.financing += max(financing, 0.0)
            self.cash -= max(borrow, 0.0) + max(financing, 0.0)
        assert snapshot.borrow_fees == pytest.approx(self.borrow_fees, rel=1e-9, abs=1e-9)
        assert snapshot.financing == pytest.approx(self.financing, rel=1e-9, abs=1e-9)
        value = snapshot.position * snapshot.mark_price
        assert snapshot.cash + value == pytest.approx(snapshot.equity, rel=1e-9, abs=1e-9)
        assert snapshot.cash == pytest.approx(self.cash, rel=1e-9, abs=1e-6)
        assert snapshot.position == pytest.approx(self.position, abs=1e-9)
        assert self.last_bar is not None
        assert snapshot.mark_price == self.last_bar.close
        self.mark = snapshot.mark_price
        self.held = (snapshot.ts_event, self.position, snapshot.mark_price, self.cash)


class BrokerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[Message] = []
        self.count = 0
        self.ts = START
        self.last_ts = 0
        self.close = 100.0

    @initialize(
        slippage_bps=st.sampled_from([0.0, 5.0, 50.0]),
        commission_bps=st.sampled_from([0.0, 2.5]),
        commission_per_unit=st.sampled_from([0.0, 0.01]),
        commission_minimum=st.sampled_from([0.0, 1.0]),
        max_participation=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
        margin_rate=st.sampled_from([0.25, 0.5, 1.0]),
        allow_short=st.booleans(),
        borrow_fee_bps=st.sampled_from([0.0, 0.0, 250.0]),
        financing_rate_bps=st.sampled_from([0.0, 0.0, 800.0]),
        lot=st.sampled_from([1.0, 10.0, 100.0]),
        zone=st.sampled_from(["UTC", "Asia/Shanghai"]),
    )
    def wire(self, lot: float, zone: str, **costs: Any) -> None:
        config = BrokerConfig(initial_cash=CASH, **costs)
        self.lot = lot
        self.bus = MessageBus()
        self.bus.subscribe("*", self.events.append)
        self.portfolio = Portfolio(
            self.bus,
            CASH,
            borrow_fee_bps=config.borrow_fee_bps,
            financing_rate_bps=config.financing_rate_bps,
        )
        self.broker = SimulatedBroker(
            self.bus, self.portfolio, config, symbols=(SYMBOL,), lot_size=lot, timezone=zone
        )
        self.broker.subscribe()
        self.portfolio.subscribe()
        self.checker = Checker(config, lot, zone)

    @rule(
        step=st.sampled_from([30, 60, 240, 960, 1440]),
        open_move=moves,
        close_move=moves,
        up=st.floats(0.0, 0.03),
        down=st.floats(0.0, 0.03),
        volume=st.one_of(
            st.just(0.0),
            st.integers(0, 200).map(float),
            st.integers(0, 3_000).map(float),
            st.just(1e7),
        ),
    )
    def bar(
        self, step: int, open_move: float, close_move: float, up: float, down: float, volume: float
    ) -> None:
        open_ = round(self.close * (1.0 + open_move), 2)
        close = round(open_ * (1.0 + close_move), 2)
        high = round(max(open_, close) * (1.0 + up), 2)
        low = round(min(open_, close) * (1.0 - down), 2)
        self.close = close
        self.last_ts = self.ts
        self.bus.publish(
            Bar(
                ts_event=self.ts,
                ts_init=self.ts,
                seq=self.bus.next_seq(),
                symbol=SYMBOL,
                open=open_,
                high=high,
                low=low,
                close=close,
                volume=volume,
            )
        )
        self.ts += step * MINUTE

    @rule(
        side=st.sampled_from([BUY, SELL]),
        lots=st.integers(1, 12),
        off_lot=st.integers(0, 9).map(lambda n: n == 0),
        unknown_symbol=st.integers(0, 14).map(lambda n: n == 0),
        order_type=st.sampled_from([MARKET, LIMIT, STOP, STOP_LIMIT]),
        time_in_force=st.sampled_from([GTC, DAY]),
        first=offsets,
        second=offsets,
    )
    def submit(
        self,
        side: str,
        lots: int,
        off_lot: bool,
        unknown_symbol: bool,
        order_type: str,
        time_in_force: str,
        first: float,
        second: float,
    ) -> None:
        quantity = lots * self.lot + (0.5 if off_lot else 0.0)
        limit_price = stop_price = None
        if order_type in (LIMIT, STOP_LIMIT):
            limit_price = round(self.close * (1.0 + first), 2)
        if order_type in (STOP, STOP_LIMIT):
            stop_price = round(self.close * (1.0 + second), 2)
        self.send(
            side,
            quantity,
            order_type,
            limit_price=limit_price,
            stop_price=stop_price,
            time_in_force=time_in_force,
            symbol="Y" if unknown_symbol else SYMBOL,
        )

    def send(self, side: str, quantity: float, order_type: str, **fields: Any) -> str:
        self.count += 1
        order_id = f"O{self.count}"
        self.bus.publish(
            SubmitOrder(
                ts_event=self.last_ts,
                ts_init=self.last_ts,
                seq=self.bus.next_seq(),
                order_id=order_id,
                strategy_id="machine",
                symbol=fields.pop("symbol", SYMBOL),
                side=side,  # type: ignore[arg-type]
                quantity=quantity,
                order_type=order_type,  # type: ignore[arg-type]
                **fields,
            )
        )
        return order_id

    @rule(
        side=st.sampled_from([BUY, SELL]),
        lots=st.integers(1, 12),
        exit_lots=st.integers(1, 12),
        entry_type=st.sampled_from([MARKET, LIMIT, STOP]),
        time_in_force=st.sampled_from([GTC, DAY]),
        offset=offsets,
        loss=st.floats(0.002, 0.05),
        profit=st.floats(0.002, 0.05),
        legs=st.sampled_from(["both", "both", "stop-loss", "take-profit"]),
    )
    def bracket(
        self,
        side: str,
        lots: int,
        exit_lots: int,
        entry_type: str,
        time_in_force: str,
        offset: float,
        loss: float,
        profit: float,
        legs: str,
    ) -> None:
        price = round(self.close * (1.0 + offset), 2)
        entry = self.send(
            side,
            lots * self.lot,
            entry_type,
            limit_price=price if entry_type == LIMIT else None,
            stop_price=price if entry_type == STOP else None,
            time_in_force=time_in_force,
        )
        sign = 1.0 if side == BUY else -1.0
        exit_side = SELL if side == BUY else BUY
        quantity = min(exit_lots, lots) * self.lot  # of the entry's size, or less
        if legs != "take-profit":
            stop = round(self.close * (1.0 - sign * loss), 2)
            self.send(exit_side, quantity, STOP, stop_price=stop, parent_order_id=entry)
        if legs != "stop-loss":
            limit = round(self.close * (1.0 + sign * profit), 2)
            self.send(exit_side, quantity, LIMIT, limit_price=limit, parent_order_id=entry)

    @rule(pick=st.integers(0, 1_000))
    def cancel(self, pick: int) -> None:
        # mostly one of the last few orders (live or finished), sometimes an unknown id
        if self.count == 0 or pick % 6 == 0:
            order_id = f"unknown-{pick}"
        else:
            order_id = f"O{self.count - pick % min(self.count, 4)}"
        self.bus.publish(
            CancelOrder(
                ts_event=self.last_ts,
                ts_init=self.last_ts,
                seq=self.bus.next_seq(),
                order_id=order_id,
                strategy_id="machine",
                symbol=SYMBOL,
            )
        )

    @invariant()
    def invariants_hold(self) -> None:
        # one invariant, so the messages are read before the state is compared with them
        self.checker.read(self.events)
        self.broker_works_exactly_the_live_orders()
        self.no_day_order_outlives_its_date()
        self.account_matches_the_fills()

    def broker_works_exactly_the_live_orders(self) -> None:
        working = [order.command.order_id for order in self.broker.working_orders]
        assert len(working) == len(set(working))
        assert set(working) == self.checker.live
        for order in self.broker.working_orders:
            assert 0.0 <= order.filled <= order.command.quantity + 1e-9

    def no_day_order_outlives_its_date(self) -> None:
        checker = self.checker
        if self.last_ts == 0:
            return
        today = checker.date(self.last_ts)
        for order_id in checker.live:
            order = checker.orders[order_id]
            if order.time_in_force == DAY:
                assert checker.date(order.ts_event) == today, order_id

    def account_matches_the_fills(self) -> None:
        checker = self.checker
        portfolio = self.portfolio
        position = portfolio.position(SYMBOL)
        assert portfolio.cash == pytest.approx(checker.cash, rel=1e-9, abs=1e-6)
        assert position.quantity == pytest.approx(checker.position, abs=1e-9)
        if checker.mark:
            equity = checker.cash + checker.position * checker.mark
            assert portfolio.equity == pytest.approx(equity, rel=1e-9, abs=1e-6)


BrokerMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
TestBrokerStateMachine = BrokerMachine.TestCase
