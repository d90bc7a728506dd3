"""What a universe's run keeps and summarises: the account per time slice, each symbol's
position and mark, and each symbol's share of the result.

A universe's portfolio publishes one snapshot per bar per symbol; the account's row of a
time slice is its last snapshot (every bar of the slice is then marked). Between a
symbol's bars its position and mark carry forward.

Per symbol (:meth:`UniverseCollector.symbol_figures`): fills, round trips, fees, the final
position and mark, the borrow fees charged on its shorts, and the **P&L contribution**
``-Σ signed quantity x price - Σ commission - borrow fees + final position x final
mark``; the contributions, less the account's margin financing (which belongs to no
symbol), add up to the account's final equity minus its initial cash. The benchmark of a
universe (``edge`` in the summary) is the equal-weight buy-and-hold of its symbols from
the first bar: the mean over symbols of close / first close (1 before a symbol's first
bar).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from engine.app.metrics import round_trips
from engine.app.outcome import ResultsCollector
from engine.core.bus import MessageBus
from engine.core.events import BUY, Bar, PortfolioSnapshot

__all__ = ["UniverseCollector"]


class UniverseCollector(ResultsCollector):
    """:class:`~engine.app.outcome.ResultsCollector` for a universe: one row per time slice
    (``equity``, ``cash``; ``position`` holds the gross |position| summed over symbols, so
    that exposure is the share of slices with any position), and ``positions`` and
    ``marks`` by symbol (columns in the scenario's order)."""

    def __init__(self, bus: MessageBus, symbols: Sequence[str], capacity: int = 1024) -> None:
        super().__init__(bus, capacity)
        self.symbols = list(symbols)
        self._column = {symbol: i for i, symbol in enumerate(self.symbols)}
        size = len(self.ts)
        self.positions = np.zeros((size, len(self.symbols)))
        self.marks = np.zeros((size, len(self.symbols)))
        self.first_opens = np.full(len(self.symbols), np.nan)
        self._row_ts = -1
        self._unseen = set(self.symbols)  # symbols whose first bar has not come yet
        self._held = [0.0] * len(self.symbols)  # |position| by symbol, this row
        self._gross = 0.0
        self._borrowed = [0.0] * len(self.symbols)  # borrow fees charged, by symbol

    def on_bar(self, bar: Bar) -> None:
        if bar.symbol in self._unseen:
            self._unseen.discard(bar.symbol)
            self.first_opens[self._column[bar.symbol]] = bar.open
            if self.first_open != self.first_open:
                self.first_open = bar.open
            if not self._unseen:  # every symbol's first open is known
                self._bus.unsubscribe(self.on_bar)

    def on_snapshot(self, snapshot: PortfolioSnapshot) -> None:
        i = self.count - 1
        if snapshot.ts_event != self._row_ts:  # a new time slice: a new row
            i += 1
            if i == len(self.ts):
                self._grow()
            if i > 0:
                self.positions[i] = self.positions[i - 1]
                self.marks[i] = self.marks[i - 1]
            self.ts[i] = self._row_ts = snapshot.ts_event
            self.count = i + 1
        j = self._column[snapshot.symbol]
        quantity = snapshot.position
        self.positions[i, j] = quantity
        self.marks[i, j] = snapshot.mark_price
        self.equity[i] = snapshot.equity
        self.cash[i] = snapshot.cash
        held = self._held
        self._gross += abs(quantity) - held[j]
        held[j] = abs(quantity)
        if self._gross < 1e-9:  # about flat: re-summed, so that flat is exactly 0
            self._gross = sum(held)
        self.position[i] = self._gross
        last = self.last
        if snapshot.borrow_fees:  # charged on this bar's symbol (brokers.portfolio)
            before = last.borrow_fees if last is not None else 0.0
            self._borrowed[j] += snapshot.borrow_fees - before
        self.last = snapshot

    def _grow(self) -> None:
        super()._grow()
        for name in ("positions", "marks"):
            table = getattr(self, name)
            setattr(self, name, np.concatenate([table, np.zeros_like(table)]))

    def fill_arrays(self) -> dict[str, np.ndarray]:
        arrays = super().fill_arrays()
        arrays["symbol"] = np.array([f.symbol for f in self.fills], dtype=object)
        return arrays

    def trips(self, fills: dict[str, np.ndarray]) -> np.ndarray:
        """The round trips' P&L, symbol by symbol (a trip is flat to flat in one symbol)."""
        parts = list(self._symbol_trips(fills).values())
        return np.concatenate(parts) if parts else np.zeros(0)

    def _symbol_trips(self, fills: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {}
        for symbol in self.symbols:
            mask = fills["symbol"] == symbol
            out[symbol] = round_trips(
                fills["side"][mask],
                fills["quantity"][mask],
                fills["price"][mask],
                fills["commission"][mask],
            )
        return out

    def benchmark_marks(self, first: int) -> np.ndarray:
        """The equal-weight buy-and-hold index over rows ``first:`` (module docstring),
        with the value before row ``first`` in front."""
        n = self.count
        marks = self.marks[:n]
        started = marks > 0.0
        base = np.where(
            started.any(axis=0), marks[np.argmax(started, axis=0), np.arange(marks.shape[1])], 1.0
        )
        base = np.where(np.isnan(self.first_opens), base, self.first_opens)
        ratio = np.where(started, marks / base, 1.0)
        index = ratio.mean(axis=1)
        before = 1.0 if first == 0 else index[first - 1]
        return np.concatenate([[before], index[first:]])

    def symbol_figures(self) -> dict[str, dict[str, Any]]:
        """Each symbol's fills, round trips, fees, final position and mark and P&L
        contribution (module docstring)."""
        fills = self.fill_arrays()
        trips = self._symbol_trips(fills)
        n = self.count
        out: dict[str, dict[str, Any]] = {}
        for j, symbol in enumerate(self.symbols):
            mask = fills["symbol"] == symbol
            signed = np.where(fills["side"][mask] == BUY, 1.0, -1.0) * fills["quantity"][mask]
            fees = float(fills["commission"][mask].sum())
            position = float(self.positions[n - 1, j]) if n else 0.0
            mark = float(self.marks[n - 1, j]) if n else 0.0
            flows = -float(np.sum(signed * fills["price"][mask])) - fees
            symbol_trips = trips[symbol]
            out[symbol] = {
                "fills": int(mask.sum()),
                "trades": len(symbol_trips),
                "win_rate": float(np.mean(symbol_trips > 0)) if len(symbol_trips) else None,
                "fees": fees,
                "borrow_fees": self._borrowed[j],
                "final_position": position,
                "final_mark": mark,
                "pnl": flows + position * mark - self._borrowed[j],
            }
        return out
