"""Round trips and entry/exit labels from a run's fills.

A round trip runs from flat to flat; a fill that reverses the position closes
one trip and opens the next, its commission split pro rata between them (the
rule of :mod:`engine.app.metrics`). Prices are average-cost: the entry price is
the average of the opening fills, the exit price the average of the closing
ones, and a trip's ``pnl`` is net of its commissions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ROUND_TRIP_COLUMNS", "fill_kinds", "round_trips_frame"]

ROUND_TRIP_COLUMNS = (
    "entry_ns",
    "exit_ns",
    "direction",
    "quantity",
    "entry_price",
    "exit_price",
    "pnl",
    "return_pct",
    "fills",
    "commission",
)


def fill_kinds(side: np.ndarray, quantity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two boolean arrays per fill: ``opens`` (opens or adds) and ``closes`` (reduces or
    closes). A reversal both closes and opens."""
    signed = np.where(np.asarray(side) == "buy", 1.0, -1.0) * np.asarray(quantity, dtype=float)
    after = np.cumsum(signed)
    after[np.abs(after) < 1e-9] = 0.0
    before = np.concatenate([[0.0], after[:-1]])
    closes = (before != 0.0) & (np.sign(signed) != np.sign(before))
    opens = (after != 0.0) & ((before == 0.0) | (np.sign(after) != np.sign(before)) | ~closes)
    return opens, closes


@dataclass
class _Trip:
    entry_ns: int
    direction: float
    peak: float = 0.0
    entry_cost: float = 0.0
    entry_quantity: float = 0.0
    exit_value: float = 0.0
    exit_quantity: float = 0.0
    pnl: float = 0.0
    commission: float = 0.0
    fills: int = 0


def round_trips_frame(fills: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    """Closed round trips of one symbol's fills (columns ``ROUND_TRIP_COLUMNS``) and the
    position still open after the last fill.

    ``fills`` needs ``ts_event``, ``side``, ``quantity``, ``price`` and ``commission``,
    in fill order.
    """
    import pandas as pd

    closed: list[dict[str, object]] = []
    position = 0.0
    average = 0.0
    trip: _Trip | None = None
    columns = zip(
        fills["ts_event"].tolist(),
        fills["side"].tolist(),
        fills["quantity"].tolist(),
        fills["price"].tolist(),
        fills["commission"].tolist(),
        strict=True,
    )
    for ts, side, quantity, price, commission in columns:
        signed = quantity if side == "buy" else -quantity
        if trip is None or position == 0.0:
            trip = _Trip(entry_ns=ts, direction=1.0 if signed > 0 else -1.0)
        if position == 0.0 or (position > 0) == (signed > 0):
            average = (average * abs(position) + price * quantity) / (abs(position) + quantity)
            position += signed
            trip.entry_cost += price * quantity
            trip.entry_quantity += quantity
            trip.peak = max(trip.peak, abs(position))
            trip.pnl -= commission
            trip.commission += commission
            trip.fills += 1
            continue
        closing = min(quantity, abs(position))
        share = closing / quantity
        trip.pnl += (price - average) * closing * trip.direction - commission * share
        trip.commission += commission * share
        trip.exit_value += price * closing
        trip.exit_quantity += closing
        trip.fills += 1
        position += signed
        if abs(position) < 1e-9:
            position = 0.0
        if position == 0.0 or (position > 0) == (signed > 0):
            entry_price = trip.entry_cost / trip.entry_quantity
            closed.append(
                {
                    "entry_ns": trip.entry_ns,
                    "exit_ns": ts,
                    "direction": "long" if trip.direction > 0 else "short",
                    "quantity": trip.peak,
                    "entry_price": entry_price,
                    "exit_price": trip.exit_value / trip.exit_quantity,
                    "pnl": trip.pnl,
                    "return_pct": 100.0 * trip.pnl / (entry_price * trip.peak),
                    "fills": trip.fills,
                    "commission": trip.commission,
                }
            )
            if position == 0.0:
                trip = None
                average = 0.0
                continue
            rest = commission * (1.0 - share)
            trip = _Trip(entry_ns=ts, direction=1.0 if position > 0 else -1.0)
            trip.entry_cost = price * abs(position)
            trip.entry_quantity = abs(position)
            trip.peak = abs(position)
            trip.pnl = -rest
            trip.commission = rest
            trip.fills = 1
            average = price
    frame = pd.DataFrame(closed, columns=list(ROUND_TRIP_COLUMNS))
    return frame, position
