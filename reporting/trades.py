"""Round trips and entry/exit labels from a run's fills.

A round trip runs from flat to flat; a fill that reverses the position closes
one trip and opens the next, its commission split pro rata between them (the
rule of :mod:`engine.core.accounting`, which the summary's trades follow too). Prices are
average-cost: the entry price is
the average of the opening fills, the exit price the average of the closing
ones, and a trip's ``pnl`` is net of its commissions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from engine.core.accounting import AverageCost, round_trips

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
    book = AverageCost()
    opens = np.zeros(len(side), dtype=bool)
    closes = np.zeros(len(side), dtype=bool)
    for i, (s, q) in enumerate(
        zip(np.asarray(side).tolist(), np.asarray(quantity, dtype=float).tolist(), strict=True)
    ):
        signed = q if s == "buy" else -q
        before = book.quantity
        closes[i] = not book.opens(signed)
        book.fill(signed, 1.0)  # the price does not matter to the position
        after = book.quantity
        opens[i] = after != 0.0 and (not closes[i] or (after > 0.0) != (before > 0.0))
    return opens, closes


def round_trips_frame(fills: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    """Closed round trips of one symbol's fills (columns ``ROUND_TRIP_COLUMNS``) and the
    position still open after the last fill, booked by average cost
    (:func:`engine.core.accounting.round_trips`).

    ``fills`` needs ``ts_event``, ``side``, ``quantity``, ``price`` and ``commission``,
    in fill order.
    """

    trips, position = round_trips(
        fills["ts_event"].tolist(),
        fills["side"].tolist(),
        fills["quantity"].tolist(),
        fills["price"].tolist(),
        fills["commission"].tolist(),
    )
    closed = [
        {
            "entry_ns": trip.entry_ns,
            "exit_ns": trip.exit_ns,
            "direction": "long" if trip.direction > 0 else "short",
            "quantity": trip.peak,
            "entry_price": trip.entry_price,
            "exit_price": trip.exit_price,
            "pnl": trip.pnl,
            "return_pct": 100.0 * trip.pnl / (trip.entry_price * trip.peak),
            "fills": trip.fills,
            "commission": trip.commission,
        }
        for trip in trips
    ]
    frame = pd.DataFrame(closed, columns=list(ROUND_TRIP_COLUMNS))
    return frame, position
