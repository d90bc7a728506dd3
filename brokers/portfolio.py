"""Portfolio accounting: cash, positions, average price, P&L, equity.

One account in one currency. A fill of signed quantity ``q`` at price ``p``
with commission ``f`` moves cash by ``-q * p - f``. The average price is the
quantity-weighted entry price of the open position; closing (part of) it
realises ``(p - avg) * closed`` for a long and ``(avg - p) * closed`` for a
short. A fill that flips the position closes the old side at ``p`` and opens
the new side at ``p``. Commissions are not in realised P&L; they are in
``fees`` (and in cash, hence in equity).

Holding costs, with ``borrow_fee_bps`` or ``financing_rate_bps`` (annual, from
``[broker]``; both 0 by default, which charges nothing), are debited from cash on every
bar, before its snapshot, for the calendar time since the previous bar
(:func:`brokers.costs.carry_charge`, a year of 365.25 days)::

    borrow fee = |short position| x close x borrow_fee_bps / 1e4 x elapsed / year
    financing  = |cash| (when negative) x financing_rate_bps / 1e4 x elapsed / year

The position, close and cash are those of the previous bar's close and ``elapsed`` the
time from that close to this bar's: the charge is on what was held over the
interval, as a prime broker charges a short or a margin loan by calendar day, nights,
weekends and holidays included (Friday's closing short pays for the weekend). A position
opened at a bar's open is charged from that bar's close on, one closed at an open up to
that bar's close: over a run of bars, exactly the time between the bars it was opened
and closed on. They are counted apart from commissions, in ``borrow_fees`` and
``financing`` (cumulative, on every snapshot), and reduce cash and equity.

On every bar the symbol is marked at the close and a
:class:`~engine.core.events.PortfolioSnapshot` is published, for which
``cash + position * mark_price == equity``. In a universe a snapshot's ``equity`` is the
account's: the cash plus every symbol's position at its latest mark (the other symbols of
the time slice keep their previous close until their own bar comes), and ``position``,
``avg_price``, ``realised_pnl`` and ``unrealised_pnl`` are the bar's symbol's.
``exposure`` is ``|position value| / equity``, infinite when equity is zero or negative.
Every other figure of a snapshot is finite: a bar whose prices make one overflow (or
become NaN) raises :class:`~engine.core.errors.DataError` naming the bar, before the
snapshot exists, so no such number reaches the database.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import msgspec

from brokers.costs import carry_charge
from engine.core.accounting import AverageCost
from engine.core.bus import Bus
from engine.core.errors import DataError
from engine.core.events import BUY, Bar, OrderFilled, PortfolioSnapshot

__all__ = ["Portfolio", "Position"]


class Position(AverageCost):
    """The open position in one symbol, booked by average cost
    (:mod:`engine.core.accounting`)."""

    __slots__ = ("costs", "mark_price", "realised_pnl", "symbol")

    def __init__(self, symbol: str) -> None:
        super().__init__()
        self.symbol = symbol
        self.realised_pnl = 0.0
        self.mark_price = 0.0
        #: this symbol's commissions and borrow fees so far (a universe's per-symbol P&L:
        #: ``realised_pnl + unrealised_pnl - costs``)
        self.costs = 0.0

    def apply(self, signed_quantity: float, price: float) -> None:
        self.realised_pnl += self.fill(signed_quantity, price)

    @property
    def unrealised_pnl(self) -> float:
        return (self.mark_price - self.avg_price) * self.quantity if self.quantity else 0.0


class Portfolio:
    """Tracks the account from fills and publishes a snapshot per bar; charges holding
    costs at the annual rates ``borrow_fee_bps`` and ``financing_rate_bps``."""

    def __init__(
        self,
        bus: Bus,
        initial_cash: float,
        *,
        borrow_fee_bps: float = 0.0,
        financing_rate_bps: float = 0.0,
    ) -> None:
        self._bus = bus
        self.initial_cash = initial_cash
        self.cash = initial_cash
        self.fees = 0.0
        self.turnover = 0.0
        self.borrow_fees = 0.0
        self.financing = 0.0
        self.positions: dict[str, Position] = {}
        self._many = False  # positions in more than one symbol (a universe)
        # a universe's position value: re-summed on each time slice's first bar, kept up
        # to date within the slice (a bar moves it by its position x the price change)
        self._value = 0.0
        self._gross = 0.0  # Σ |position| x mark, kept the same way
        self._slice_ts = -1
        self._borrow_rate = borrow_fee_bps / 1e4
        self._financing_rate = financing_rate_bps / 1e4
        self._charging = self._borrow_rate > 0.0 or self._financing_rate > 0.0
        # at each symbol's last close: its end, the position and the close
        self._held: dict[str, tuple[int, float, float]] = {}
        # the end of the last bar and the cash at its close
        self._cash_ts: int | None = None
        self._cash_then = initial_cash

    def subscribe(self) -> None:
        self._bus.subscribe(OrderFilled, self.on_order_filled)
        self._bus.subscribe(Bar, self.on_bar)

    def position(self, symbol: str) -> Position:
        position = self.positions.get(symbol)
        if position is None:
            position = self.positions[symbol] = Position(symbol)
            self._many = len(self.positions) > 1
        return position

    @property
    def equity(self) -> float:
        if self._slice_ts >= 0:  # a universe's, kept up to date (:meth:`_account_value`)
            return self.cash + self._value
        value = 0.0
        for position in self.positions.values():
            value += position.quantity * position.mark_price
        return self.cash + value

    def on_order_filled(self, fill: OrderFilled) -> None:
        signed = fill.quantity if fill.side == BUY else -fill.quantity
        notional = fill.quantity * fill.price
        self.cash -= signed * fill.price + fill.commission
        self.fees += fill.commission
        self.turnover += notional
        position = self.position(fill.symbol)
        position.costs += fill.commission
        before = abs(position.quantity)
        position.apply(signed, fill.price)
        if position.mark_price == 0.0:
            position.mark_price = fill.price
        self._value += signed * position.mark_price
        self._gross += (abs(position.quantity) - before) * position.mark_price

    def on_bar(self, bar: Bar) -> None:
        symbol = bar.symbol
        position = self.positions.get(symbol)
        if position is None:
            position = self.position(symbol)
        charging = self._charging
        if charging:
            self._charge(bar, position.quantity)
        close = bar.close
        quantity = position.quantity
        value = quantity * close
        cash = self.cash
        if not self._many:
            position.mark_price = close
            equity = cash + value
        else:
            equity = cash + self._account_value(bar, position)
        avg_price = position.avg_price
        realised = position.realised_pnl
        fees = self.fees
        turnover = self.turnover
        # one test for all: a sum is finite only if every term is (NaN and inf spread)
        if not math.isfinite(equity + value + avg_price + realised + fees + turnover):
            self._not_finite(bar, position, value, equity)
        ts = bar.ts_event
        bus = self._bus
        snapshot = PortfolioSnapshot(
            ts_event=ts,
            ts_init=ts,
            seq=bus.next_seq(),
            symbol=symbol,
            position=quantity,
            avg_price=avg_price,
            mark_price=close,
            cash=cash,
            realised_pnl=realised,
            unrealised_pnl=(close - avg_price) * quantity if quantity else 0.0,
            equity=equity,
            exposure=abs(value) / equity if equity > 0.0 else float("inf"),
            fees=fees,
            turnover=turnover,
        )
        if charging:
            # set apart: msgspec builds a struct from more than 15 keywords on a path
            # about three times slower, measured here (the snapshot is made every bar)
            snapshot = msgspec.structs.replace(
                snapshot, borrow_fees=self.borrow_fees, financing=self.financing
            )
        bus.publish(snapshot)

    def _charge(self, bar: Bar, quantity: float) -> None:
        """Debit the borrow fee and the financing since the previous bar (module docstring)."""
        ts = bar.ts_event
        if self._borrow_rate > 0.0:
            held = self._held.get(bar.symbol)
            if held is not None and held[1] < 0.0 and ts > held[0]:
                fee = carry_charge(-held[1] * held[2], self._borrow_rate, ts - held[0])
                self.cash -= fee
                self.borrow_fees += fee
                self.positions[bar.symbol].costs += fee
            self._held[bar.symbol] = (ts, quantity, bar.close)
        if self._financing_rate > 0.0:
            last = self._cash_ts
            if last is not None and ts > last and self._cash_then < 0.0:
                charge = carry_charge(-self._cash_then, self._financing_rate, ts - last)
                self.cash -= charge
                self.financing += charge
            self._cash_ts = ts
            self._cash_then = self.cash

    def _account_value(self, bar: Bar, position: Position) -> float:
        """Every position at its latest mark, with ``position`` marked at ``bar``'s close:
        summed afresh on the first bar of a time slice, updated by the price change on the
        others (a universe's bar costs O(1), not O(symbols))."""
        if bar.ts_event != self._slice_ts:
            position.mark_price = bar.close
            self._slice_ts = bar.ts_event
            total = gross = 0.0
            for each in self.positions.values():
                value = each.quantity * each.mark_price
                total += value
                gross += abs(value)
            self._value, self._gross = total, gross
        else:
            change = bar.close - position.mark_price
            self._value += position.quantity * change
            self._gross += abs(position.quantity) * change
            position.mark_price = bar.close
        return self._value

    def gross_exposure(self, but: str) -> float:
        """Σ |position| x mark over the symbols but ``but`` (a universe's margin)."""
        own = self.positions.get(but)
        mine = abs(own.quantity) * own.mark_price if own is not None else 0.0
        if self._slice_ts >= 0:
            return max(self._gross - mine, 0.0)
        total = 0.0
        for each in self.positions.values():
            total += abs(each.quantity) * each.mark_price
        return max(total - mine, 0.0)

    def _not_finite(self, bar: Bar, position: Position, value: float, equity: float) -> None:
        figures = {
            "cash": self.cash,
            "position value": value,
            "equity": equity,
            "average price": position.avg_price,
            "realised P&L": position.realised_pnl,
            "fees": self.fees,
            "turnover": self.turnover,
        }
        broken = [
            f"{name} {number!r}" for name, number in figures.items() if not math.isfinite(number)
        ]
        when = datetime.fromtimestamp(bar.ts_event / 1e9, UTC).isoformat()
        raise DataError(
            f"bar {when} ({bar.symbol}, open {bar.open!r}, close {bar.close!r}, position "
            f"{position.quantity!r}): the accounting overflowed ({', '.join(broken) or 'a sum'} "
            "not finite); check the bar's prices (data.max_price, data.max_abs_log_return)"
        )
