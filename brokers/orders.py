"""The simulated broker's order book: accepted orders and the brackets that tie them.

A :class:`WorkingOrder` is the broker-side state of one accepted order. An entry
order with exits (orders whose ``parent_order_id`` names it) leads a :class:`Bracket`:
the exits share what the entry has filled, the position they may close. What an
exit may still fill (:attr:`WorkingOrder.leaves`) is its own remainder, capped by
what the entry has filled, or may still fill, less what the bracket's exits have
filled together: a partial fill of one exit lowers the others', and an exit that
closes the whole position leaves the others nothing (the broker then cancels them).
The rules for when and at what price exits fill are in :mod:`brokers.simulated`.
"""

from __future__ import annotations

from typing import Final

from engine.core.events import BUY, SubmitOrder

__all__ = ["EPSILON", "Bracket", "WorkingOrder"]

#: quantities at or below this are nothing left (fills are sums of floats)
EPSILON: Final = 1e-12


class WorkingOrder:
    """Mutable broker-side state of an accepted order.

    ``bracket`` is the bracket the order leads (an entry with exits) or belongs to
    (an exit, ``is_exit``); None for a plain order.
    """

    __slots__ = (
        "bracket",
        "closed",
        "command",
        "day",
        "filled",
        "is_exit",
        "order_type",
        "sign",
        "ts",
    )

    def __init__(self, command: SubmitOrder, day: int | None, ts: int = 0) -> None:
        self.command = command
        #: the end of the bar on whose close it was sent: it works on later bars only
        self.ts = ts
        self.sign = 1.0 if command.side == BUY else -1.0
        self.filled = 0.0
        self.closed = False
        self.order_type = command.order_type
        self.day = day
        self.bracket: Bracket | None = None
        self.is_exit = False

    @property
    def leaves(self) -> float:
        """What the order may still fill (for an exit, capped by its bracket)."""
        own = self.command.quantity - self.filled
        bracket = self.bracket
        if bracket is None or not self.is_exit:
            return own
        return min(own, bracket.target - bracket.exited)


class Bracket:
    """An entry order and its exits.

    ``exited`` is what the exits have filled together. ``inside`` is what the entry
    filled inside the bar that ended at ``inside_ts`` (not at its open), at the price
    ``inside_price``; ``stopped_ts`` is the end of the last bar on which a stop-loss exit
    filled.
    """

    __slots__ = ("entry", "exited", "exits", "inside", "inside_price", "inside_ts", "stopped_ts")

    def __init__(self, entry: WorkingOrder) -> None:
        self.entry = entry
        self.exits: list[WorkingOrder] = []
        self.exited = 0.0
        self.inside = 0.0
        self.inside_price = 0.0
        self.inside_ts = -1
        self.stopped_ts = -1

    @staticmethod
    def lead(entry: WorkingOrder) -> Bracket:
        """The bracket ``entry`` leads (made on its first exit)."""
        bracket = entry.bracket
        if bracket is None:
            bracket = entry.bracket = Bracket(entry)
        return bracket

    def attach(self, exit_order: WorkingOrder) -> None:
        exit_order.bracket = self
        exit_order.is_exit = True
        self.exits.append(exit_order)

    @property
    def target(self) -> float:
        """The position the entry opens: its quantity while it works or once filled, what
        it filled once cancelled or expired before that."""
        entry = self.entry
        return entry.filled if entry.closed else entry.command.quantity

    def held(self) -> float:
        """What the entry has filled and no exit has closed yet."""
        return self.entry.filled - self.exited

    def held_at_open(self, ts: int) -> float:
        """What of :meth:`held` the account held at the open of the bar ending at ``ts``."""
        inside = self.inside if self.inside_ts == ts else 0.0
        return self.entry.filled - inside - self.exited

    def entry_filled(self, ts: int, quantity: float, reference: float, at_open: bool) -> None:
        """Note a fill of the entry on the bar ending at ``ts``."""
        if at_open:
            return
        if self.inside_ts != ts:
            self.inside_ts = ts
            self.inside = 0.0
        self.inside += quantity
        self.inside_price = reference

    def live_exits(self) -> list[WorkingOrder]:
        return [o for o in self.exits if not o.closed]
