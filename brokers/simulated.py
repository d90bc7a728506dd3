"""The simulated broker: fills orders against bars with documented, conservative rules.

An order submitted while bar ``t`` is being processed (on its close) works
from bar ``t+1`` on. On each new bar, before anything else sees it, working
orders are checked in submission order (the exits of brackets after the others,
below):

* **market**: fills at the bar's open, moved against the order by
  ``slippage_bps``.
* **limit** (buy; a sell mirrors it): if the open is at or below the limit it
  fills at the open (the market gapped through the price); otherwise, if the
  low reaches the limit (``low <= limit``), at the limit. No slippage.
* **stop** (buy): if the open is at or above the stop it fills at the open;
  otherwise, if the high reaches the stop, at the stop; slippage applies.
* **stop-limit** (buy): triggered like a stop. Triggered at the open, it fills
  at the open when the open is within the limit, else it rests as a limit
  order from the next bar. Triggered inside the bar, it fills at the stop when
  ``limit >= stop``; otherwise the path inside the bar is unknown and it rests
  as a limit order from the next bar (never filled on an assumed path).
* **time in force**: GTC works until filled or cancelled. DAY expires when a
  bar of a later trading day (the date of the bar's end in the data's time
  zone) arrives, before
  any fill on that bar.
* **volume cap**: with ``max_participation`` > 0, one bar fills at most that
  share of the bar's volume (rounded down to the lot size); the rest keeps
  working (a partial fill): a triggered stop's remainder as a market order, a
  triggered stop-limit's as a limit order. A zero-volume bar fills nothing.
* **orders sent during a bar's fills** (say, a handler cancelling an order when
  another fills): a cancel takes effect at once, and the cancelled order does not
  fill on this bar or later; a new order works from the next bar.
* **costs** (:mod:`brokers.costs`, the rule the meta-investor and the training market
  charge too): commission per fill = max(minimum, notional x bps / 1e4 + quantity x
  per-unit); slippage is reported per fill in account currency.

Brackets (:meth:`strategies.base.Strategy.submit_bracket` sends one; the book is
:mod:`brokers.orders`): an entry order (market, limit or stop) and exits, orders whose
``parent_order_id`` names the entry, submitted while it works: a stop on the other
side (the stop-loss) and a limit on the other side (the take-profit), either or both.

* **contingent on the entry**: an exit works only for what its entry has filled and
  no exit has closed yet (after a partial entry fill, for the part filled), and never
  for more than the position on the entry's side (exits only reduce it). Exits are
  left out of the pre-trade checks: they only close what their entry opened.
* **one-cancels-the-other**: a fill of one exit lowers what the others may fill;
  once the exits have closed all the entry filled (one exit filled in full), the
  others are cancelled at once (``OrderCanceled``, reason ``oco: ...``). Cancelling
  the entry, or its expiry, before it fills cancels its exits (reason
  ``contingency: ...``); after a partial fill they stay, for the part filled.
  Cancelling an exit leaves the others working. A strategy that closes the position
  by other orders cancels the exits itself (``Strategy.cancel_bracket``).
* **exits on a bar** are matched after the other orders, in this order: those that
  fill at the open (the open at or beyond their price: a gap fills at the open, a
  stop with slippage, a limit without; a triggered stop's remainder), then
  stop-losses, then take-profits.
* **the entry's bar**: an entry filled at a bar's open (a market entry, or a limit
  or stop gapped through) leaves its exits the whole bar. One filled inside the
  bar (a limit or stop touched there) leaves them only the rest of the bar, whose
  path is unknown, so the worst case is assumed: its stop-loss fills on that bar
  when the bar's range reaches the stop, at the stop (or at the entry's price if
  that is already beyond it), its take-profit not before the next bar.
* **stop-loss and take-profit in one bar**: when one bar's range reaches both
  (neither at the open), the stop-loss fills and the take-profit does not: the
  path inside a bar is unknown, so the adverse exit is assumed to come first. No
  take-profit fills on a bar on which a stop-loss of its entry filled.

**A universe** (several symbols on one clock, :mod:`engine.feeds.universe`): each
symbol's orders fill against its own bars, with its own lot size and costs; an order
sent during a time slice (on any symbol's close at time ``t``) works from the symbol's
first bar that ends after ``t``, never on a bar of the same slice; the margin check
values every symbol's position after its working orders at its last close, so the
whole account's exposure must fit the equity.

Pre-trade checks on submission, in this order: unknown symbol or a quantity
that is not a multiple of the lot size are broker refusals
(``OrderRejected``), so is an exit whose entry is not working (reason
``contingency: ...``); a short when shorting is off, or a position the equity
cannot carry (|position after all working orders and this one| x last close x
``margin_rate`` > equity) are risk refusals (``OrderDenied``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from brokers.config import BrokerConfig
from brokers.costs import CostRates, commission, market_fill
from brokers.orders import EPSILON, Bracket, WorkingOrder
from brokers.portfolio import Portfolio
from engine.core.bus import Bus
from engine.core.events import (
    BUY,
    DAY,
    LIMIT,
    MARKET,
    STOP,
    Bar,
    CancelOrder,
    OrderAccepted,
    OrderCanceled,
    OrderDenied,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    SubmitOrder,
)

__all__ = ["SimulatedBroker", "WorkingOrder"]

# The order in which a bar matches a bracket's exits (see the module docstring).
_AT_OPEN, _STOP_LOSS, _TAKE_PROFIT = 0, 1, 2


class SimulatedBroker:
    """Fills :class:`SubmitOrder` commands against the bars on the bus."""

    def __init__(
        self,
        bus: Bus,
        portfolio: Portfolio,
        config: BrokerConfig,
        *,
        symbols: tuple[str, ...],
        lot_size: float | Mapping[str, float] = 1.0,
        timezone: str = "UTC",
        costs: Mapping[str, CostRates] | None = None,
    ) -> None:
        """``lot_size`` and ``costs`` (by symbol; by default the ``config``'s) may differ
        between the symbols of a universe."""
        self._bus = bus
        self._portfolio = portfolio
        self._config = config
        self._symbols = frozenset(symbols)
        self._lots = (
            dict(lot_size) if isinstance(lot_size, Mapping) else dict.fromkeys(symbols, lot_size)
        )
        self._zone = ZoneInfo(timezone)
        self._working: list[WorkingOrder] = []
        # the symbols with a working order (a universe's bars of others skip the matching)
        self._working_symbols: set[str] = set()
        # Orders being matched against the current bar (cancels and risk checks see them).
        self._matching: list[WorkingOrder] = []
        self._fill_count = 0
        self._last_ts = 0
        self._last_close: dict[str, float] = {}
        default = CostRates.of(config)
        self._costs = {symbol: (costs or {}).get(symbol, default) for symbol in symbols}
        self._slips = {symbol: rates.slippage for symbol, rates in self._costs.items()}

    def subscribe(self) -> None:
        self._bus.subscribe(Bar, self.on_bar)
        self._bus.subscribe(SubmitOrder, self.on_submit_order)
        self._bus.subscribe(CancelOrder, self.on_cancel_order)

    @property
    def working_orders(self) -> list[WorkingOrder]:
        return [o for o in self._matching if not o.closed] + self._working

    # -- commands -----------------------------------------------------------

    def _order_fields(self, command: SubmitOrder | CancelOrder, ts: int) -> dict[str, Any]:
        """The fields every event about ``command``'s order carries: stamped ``ts``, with
        the bus's next sequence number."""
        return {
            "ts_event": ts,
            "ts_init": ts,
            "seq": self._bus.next_seq(),
            "order_id": command.order_id,
            "strategy_id": command.strategy_id,
            "symbol": command.symbol,
        }

    def on_submit_order(self, command: SubmitOrder) -> None:
        bus = self._bus
        common = self._order_fields(command, self._last_ts)
        if command.symbol not in self._symbols:
            bus.publish(OrderRejected(**common, reason=f"unknown symbol: {command.symbol!r}"))
            return
        lot = self._lots[command.symbol]
        lots = command.quantity / lot
        if abs(lots - round(lots)) > 1e-9 * max(1.0, lots):
            bus.publish(
                OrderRejected(
                    **common,
                    reason=f"lot size: quantity {command.quantity} is not a multiple of "
                    f"the lot size {lot}",
                )
            )
            return
        entry: WorkingOrder | None = None
        if command.parent_order_id is not None:
            entry, refusal = self._entry_of(command)
            if entry is None:
                bus.publish(OrderRejected(**common, reason=refusal))
                return
        else:
            reason = self._risk_check(command)
            if reason is not None:
                bus.publish(OrderDenied(**common, reason=reason))
                return
        day = self._day(self._last_ts) if command.time_in_force == DAY else None
        order = WorkingOrder(command, day, self._last_ts)
        if entry is not None:
            Bracket.lead(entry).attach(order)
        self._working.append(order)
        self._working_symbols.add(command.symbol)
        bus.publish(OrderAccepted(**common))

    def _entry_of(self, command: SubmitOrder) -> tuple[WorkingOrder | None, str]:
        """The working entry order an exit belongs to, or None and why it cannot be one."""
        parent = command.parent_order_id
        entry = next((o for o in self.working_orders if o.command.order_id == parent), None)
        if entry is None or entry.command.symbol != command.symbol:
            return None, f"contingency: no working {command.symbol} order {parent!r} to exit"
        if entry.is_exit:
            return None, f"contingency: order {parent!r} is an exit, which has no exits"
        if command.order_type not in (LIMIT, STOP):
            return None, (
                "contingency: an exit is a stop (stop-loss) or a limit (take-profit) order, "
                f"got {command.order_type}"
            )
        if command.side == entry.command.side:
            return None, (
                f"contingency: an exit is on the other side of its entry ({entry.command.side})"
            )
        return entry, ""

    def _risk_check(self, command: SubmitOrder) -> str | None:
        symbol = command.symbol
        projected = self._portfolio.position(symbol).quantity
        for order in self.working_orders:
            # exits only close what their entry opened: the entry is counted, they are not
            if order.command.symbol == symbol and not order.is_exit:
                projected += order.sign * order.leaves
        projected += command.quantity if command.side == BUY else -command.quantity
        if projected < -1e-12 and not self._config.allow_short:
            return (
                f"short: shorting is off (broker.allow_short = false); position would be "
                f"{projected:g}"
            )
        price = self._last_close.get(symbol)
        if price is None:
            price = command.limit_price or command.stop_price
        if price is None:
            return "no price: no price yet for the margin check (submit after the first bar)"
        exposure = abs(projected) * price
        if len(self._lots) > 1:  # a universe: the margin is the whole account's
            exposure += self._other_exposure(symbol)
        required = exposure * self._config.margin_rate
        equity = self._portfolio.equity
        if required > equity * (1.0 + 1e-12):
            return (
                f"margin: position {projected:g} at {price:g} needs {required:.2f} "
                f"(margin_rate {self._config.margin_rate:g}), equity is {equity:.2f}"
            )
        return None

    def _other_exposure(self, symbol: str) -> float:
        """|position after the working orders| x last close, summed over the symbols but
        ``symbol`` (exits left out, as in the check of ``symbol``): the portfolio's gross
        exposure of the others, moved by their working orders."""
        portfolio = self._portfolio
        exposure = portfolio.gross_exposure(symbol)
        pending: dict[str, float] = {}
        for order in self.working_orders:
            other = order.command.symbol
            if other != symbol and not order.is_exit:
                pending[other] = pending.get(other, 0.0) + order.sign * order.leaves
        for other, change in pending.items():
            held = portfolio.position(other).quantity
            price = self._last_close.get(other, 0.0)
            exposure += (abs(held + change) - abs(held)) * price
        return exposure

    def on_cancel_order(self, command: CancelOrder) -> None:
        common = self._order_fields(command, self._last_ts)
        for order in self.working_orders:
            if order.command.order_id == command.order_id:
                self._close(order)
                self._bus.publish(OrderCanceled(**common))
                if order.bracket is not None and not order.is_exit:
                    self._entry_closed(order.bracket, self._last_ts, "was canceled")
                return
        self._bus.publish(OrderRejected(**common, reason="cancel: no working order with this id"))

    def _close(self, order: WorkingOrder) -> None:
        order.closed = True
        if order in self._working:
            self._working.remove(order)

    def _cancel(self, order: WorkingOrder, ts: int, reason: str) -> None:
        """Cancel a working order on the broker's own account (a bracket's rules)."""
        self._close(order)
        self._bus.publish(OrderCanceled(**self._order_fields(order.command, ts), reason=reason))

    def _entry_closed(self, bracket: Bracket, ts: int, how: str) -> None:
        """The entry stopped working before it filled in full: its exits keep working for
        what it filled, and are cancelled when that is nothing (left)."""
        entry_id = bracket.entry.command.order_id
        for order in bracket.live_exits():
            if order.leaves <= EPSILON:
                self._cancel(
                    order,
                    ts,
                    f"contingency: entry {entry_id} {how} with nothing left to exit "
                    f"(filled {bracket.entry.filled:g}, exited {bracket.exited:g})",
                )

    # -- bars ---------------------------------------------------------------

    def _day(self, ts: int) -> int:
        return datetime.fromtimestamp(ts / 1e9, UTC).astimezone(self._zone).toordinal()

    def on_bar(self, bar: Bar) -> None:
        self._last_ts = bar.ts_event
        if self._working and bar.symbol in self._working_symbols:
            self._process(bar)
        self._last_close[bar.symbol] = bar.close

    def _process(self, bar: Bar) -> None:
        # Orders submitted while this bar's fills are published work from the next bar;
        # orders cancelled meanwhile are skipped.
        day: int | None = None
        exits: list[WorkingOrder] | None = None
        self._matching, self._working = self._working, []
        for order in self._matching:
            if order.closed:
                continue
            command = order.command
            if command.symbol != bar.symbol or order.ts >= bar.ts_event:
                continue  # another symbol's, or sent in this time slice
            if order.day is not None:
                if day is None:
                    day = self._day(bar.ts_event)
                if day != order.day:
                    order.closed = True
                    self._bus.publish(OrderExpired(**self._order_fields(command, bar.ts_event)))
                    if order.bracket is not None and not order.is_exit:
                        self._entry_closed(order.bracket, bar.ts_event, "expired")
                    continue
            if order.is_exit:
                if exits is None:
                    exits = []
                exits.append(order)
                continue
            price, reference = self._match(order, bar)
            if price is not None:
                self._fill(order, bar, price, reference, order.leaves)
            if order.leaves <= EPSILON:
                order.closed = True
        if exits is not None:
            self._match_exits(exits, bar)
        matched, self._matching = self._matching, []
        self._working = [o for o in matched if not o.closed] + self._working
        self._working_symbols = {o.command.symbol for o in self._working}

    def _match_exits(self, exits: list[WorkingOrder], bar: Bar) -> None:
        """Match the exits of brackets on this bar, after the other orders (the rules are
        in the module docstring)."""
        ts = bar.ts_event
        ranked = sorted((self._exit_phase(o, bar), i, o) for i, o in enumerate(exits))
        for phase, _i, order in ranked:
            bracket = order.bracket
            if order.closed or bracket is None:
                continue
            held_at_open = bracket.held_at_open(ts)
            against = bar
            if phase == _STOP_LOSS:
                room = bracket.held()
                if held_at_open <= EPSILON:
                    # the entry filled inside this bar: the rest of the bar starts at its price
                    against = msgspec.structs.replace(bar, open=bracket.inside_price)
            elif phase == _TAKE_PROFIT and bracket.stopped_ts == ts:
                continue  # the stop-loss is assumed to have come first
            else:
                room = held_at_open
            position = self._portfolio.position(order.command.symbol).quantity
            room = min(room, order.leaves, max(-order.sign * position, 0.0))
            if room <= EPSILON:
                continue
            price, reference = self._match(order, against)
            if price is None:
                continue
            self._fill(order, bar, price, reference, room)
            if order.leaves <= EPSILON:
                order.closed = True
            if bracket.exited >= bracket.target - EPSILON:
                for other in bracket.live_exits():
                    self._cancel(
                        other,
                        ts,
                        f"oco: exit {order.command.order_id} closed what entry "
                        f"{bracket.entry.command.order_id} opened",
                    )

    def _exit_phase(self, order: WorkingOrder, bar: Bar) -> int:
        bracket = order.bracket
        assert bracket is not None  # an exit belongs to a bracket
        if bracket.held_at_open(bar.ts_event) > EPSILON and self._opens_through(order, bar.open):
            return _AT_OPEN
        return _TAKE_PROFIT if order.command.order_type == LIMIT else _STOP_LOSS

    @staticmethod
    def _opens_through(order: WorkingOrder, price: float) -> bool:
        """Whether a bar opening at ``price`` fills ``order`` at its open."""
        kind = order.order_type
        if kind == MARKET:
            return True
        buy = order.sign > 0.0
        if kind == LIMIT:
            limit = order.command.limit_price
            assert limit is not None  # guaranteed by SubmitOrder.__post_init__
            return price <= limit if buy else price >= limit
        stop = order.command.stop_price
        assert stop is not None
        return price >= stop if buy else price <= stop

    def _match(self, order: WorkingOrder, bar: Bar) -> tuple[float | None, float]:
        """The fill price on this bar (None: no fill) and the slippage reference price."""
        command = order.command
        buy = order.sign > 0.0
        kind = order.order_type
        if kind == MARKET:
            return self._slipped(bar.open, buy, bar.symbol), bar.open
        if kind == LIMIT:
            return self._limit(command.limit_price, bar, buy)  # type: ignore[arg-type]
        stop = command.stop_price
        assert stop is not None  # guaranteed by SubmitOrder.__post_init__
        at_open = bar.open >= stop if buy else bar.open <= stop
        inside = bar.high >= stop if buy else bar.low <= stop
        if kind == STOP:
            if at_open or inside:
                order.order_type = MARKET  # triggered: a remainder fills at the next open
                reference = bar.open if at_open else stop
                return self._slipped(reference, buy, bar.symbol), reference
            return None, 0.0
        # stop-limit
        limit = command.limit_price
        assert limit is not None
        if not at_open and not inside:
            return None, 0.0
        order.order_type = LIMIT  # triggered: from now on a limit order
        if at_open:
            within = bar.open <= limit if buy else bar.open >= limit
            return (bar.open, bar.open) if within else (None, 0.0)
        reachable = limit >= stop if buy else limit <= stop
        return (stop, stop) if reachable else (None, 0.0)

    @staticmethod
    def _limit(limit: float, bar: Bar, buy: bool) -> tuple[float | None, float]:
        if buy:
            if bar.open <= limit:
                return bar.open, bar.open
            if bar.low <= limit:
                return limit, limit
        else:
            if bar.open >= limit:
                return bar.open, bar.open
            if bar.high >= limit:
                return limit, limit
        return None, 0.0

    def _slipped(self, price: float, buy: bool, symbol: str) -> float:
        return market_fill(price, 1.0 if buy else -1.0, self._slips[symbol])

    def _fill(
        self, order: WorkingOrder, bar: Bar, price: float, reference: float, quantity: float
    ) -> None:
        """Fill at most ``quantity`` of ``order`` at ``price`` (slippage measured from
        ``reference``), within the volume cap."""
        config = self._config
        if config.max_participation > 0.0:
            lot = self._lots[bar.symbol]
            cap = math.floor(bar.volume * config.max_participation / lot) * lot
            quantity = min(quantity, cap)
            if quantity <= 0.0:
                return
        command = order.command
        order.filled += quantity
        bracket = order.bracket
        if bracket is not None:
            if not order.is_exit:
                bracket.entry_filled(bar.ts_event, quantity, reference, reference == bar.open)
            else:
                bracket.exited += quantity
                if command.order_type == STOP:
                    bracket.stopped_ts = bar.ts_event
        costs = self._costs[bar.symbol]
        charged = commission(
            quantity, price, costs.rate, costs.commission_per_unit, costs.commission_minimum
        )
        self._fill_count += 1
        bus = self._bus
        bus.publish(
            OrderFilled(
                ts_event=bar.ts_event,
                ts_init=bar.ts_event,
                seq=bus.next_seq(),
                order_id=command.order_id,
                fill_id=f"F{self._fill_count}",
                strategy_id=command.strategy_id,
                symbol=command.symbol,
                side=command.side,
                quantity=quantity,
                price=price,
                commission=charged,
                slippage=abs(price - reference) * quantity,
                filled_quantity=order.filled,
                leaves_quantity=max(order.leaves, 0.0),
            )
        )

    # -- state for resume -----------------------------------------------------

    def restore_last_close(self, symbol: str, close: float, ts: int) -> None:
        self._last_close[symbol] = close
        self._last_ts = ts
