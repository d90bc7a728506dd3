"""Average-cost accounting of a position, in one place.

A fill of signed quantity q (> 0 buys) at price p on a position Q with average price A:

* opening or adding (Q = 0, or q of Q's sign): A ← (A |Q| + p |q|) / |Q + q|, nothing
  realised;
* reducing, closing or reversing: (p - A) min(|q|, |Q|) sign(Q) is realised; a reversal
  (|q| > |Q|) opens the rest at p (A ← p).

A position that ends within ``FLAT`` of its size (|Q + q| ≤ FLAT max(|Q|, |q|)) is flat:
quantity and average price are 0. Lots such as 0.1 do not add up exactly in binary
floating point (0.1 + 0.2 - 0.3 is 5.6e-17, not 0), and a residue like that must not
carry an average price into the next trade.

The portfolio books every fill with it (:class:`brokers.portfolio.Position`), and so do
the summary's round trips (:func:`engine.app.metrics.round_trip_closes`), the trade
history's realised P&L (:mod:`storage`) and the report's trade list
(:func:`reporting.trades.round_trips_frame`), so that all of them agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["FLAT", "AverageCost", "RoundTrip", "round_trips"]

#: the relative size under which a position is flat (see the module docstring)
FLAT = 1e-12


class AverageCost:
    """One symbol's position and average price; :meth:`fill` books a fill."""

    __slots__ = ("avg_price", "quantity")

    def __init__(self, quantity: float = 0.0, avg_price: float = 0.0) -> None:
        self.quantity = quantity
        self.avg_price = avg_price

    def fill(self, signed_quantity: float, price: float) -> float:
        """Book a fill; returns the P&L it realises (before commission)."""
        if signed_quantity == 0.0:
            return 0.0
        old = self.quantity
        new = old + signed_quantity
        realised = 0.0
        if old == 0.0 or (old > 0.0) == (signed_quantity > 0.0):
            self.avg_price = (self.avg_price * abs(old) + price * abs(signed_quantity)) / abs(new)
        else:
            closed = min(abs(signed_quantity), abs(old))
            realised = (price - self.avg_price) * closed * (1.0 if old > 0.0 else -1.0)
            if abs(signed_quantity) > abs(old):
                self.avg_price = price  # reversed: the rest opens at this fill's price
        if abs(new) <= FLAT * max(abs(old), abs(signed_quantity)):
            new = 0.0
            self.avg_price = 0.0
        self.quantity = new
        return realised

    def opens(self, signed_quantity: float) -> bool:
        """Whether a fill of ``signed_quantity`` opens or adds (realises nothing)."""
        old = self.quantity
        return old == 0.0 or (old > 0.0) == (signed_quantity > 0.0)


@dataclass
class RoundTrip:
    """A round trip from flat to flat (or to a reversal): its P&L net of the commissions
    of its fills, a reversing fill's commission split pro rata between the trip it
    closes and the one it opens."""

    entry_ns: int
    direction: float  # 1 long, -1 short
    close_index: int = -1  # the fill that closed it (-1: still open)
    exit_ns: int = 0
    peak: float = 0.0  # the largest position held
    entry_cost: float = 0.0
    entry_quantity: float = 0.0
    exit_value: float = 0.0
    exit_quantity: float = 0.0
    pnl: float = 0.0
    commission: float = 0.0
    fills: int = 0

    @property
    def entry_price(self) -> float:
        """The average price of the opening fills."""
        return self.entry_cost / self.entry_quantity

    @property
    def exit_price(self) -> float:
        """The average price of the closing fills."""
        return self.exit_value / self.exit_quantity


def round_trips(
    ts: Iterable[int],
    side: Iterable[str],
    quantity: Iterable[float],
    price: Iterable[float],
    commission: Iterable[float],
) -> tuple[list[RoundTrip], float]:
    """The closed round trips of one symbol's fills (in fill order, starting flat) and
    the position still open after the last fill."""
    book = AverageCost()
    closed: list[RoundTrip] = []
    trip: RoundTrip | None = None
    fills = zip(ts, side, quantity, price, commission, strict=True)
    for index, (at, s, q, p, c) in enumerate(fills):
        signed = q if s == "buy" else -q
        if trip is None:
            trip = RoundTrip(entry_ns=at, direction=1.0 if signed > 0 else -1.0)
        if book.opens(signed):
            book.fill(signed, p)
            trip.entry_cost += p * q
            trip.entry_quantity += q
            trip.peak = max(trip.peak, abs(book.quantity))
            trip.pnl -= c
            trip.commission += c
            trip.fills += 1
            continue
        closing = min(q, abs(book.quantity))
        share = closing / q
        trip.pnl += book.fill(signed, p) - c * share
        trip.commission += c * share
        trip.exit_value += p * closing
        trip.exit_quantity += closing
        trip.fills += 1
        if book.quantity == 0.0 or (book.quantity > 0) == (signed > 0):
            trip.close_index, trip.exit_ns = index, at
            closed.append(trip)
            trip = None
            if book.quantity != 0.0:  # reversed: the rest of the fill opens the next trip
                rest = c * (1.0 - share)
                trip = RoundTrip(entry_ns=at, direction=1.0 if book.quantity > 0 else -1.0)
                trip.entry_cost = p * abs(book.quantity)
                trip.entry_quantity = abs(book.quantity)
                trip.peak = abs(book.quantity)
                trip.pnl = -rest
                trip.commission = rest
                trip.fills = 1
    return closed, book.quantity
