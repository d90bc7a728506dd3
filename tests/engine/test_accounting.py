"""Average-cost accounting (engine.core.accounting), which the portfolio, the summary's
round trips, the trade history and the report's trade list all book with."""

from __future__ import annotations

import numpy as np
import pytest

from brokers.portfolio import Position
from engine.core.accounting import AverageCost, round_trips


@pytest.mark.parametrize("lot", [1.0, 0.1, 0.01])
def test_realised_plus_open_pnl_equals_the_cash_flows(lot: float) -> None:
    """Independent of the accounting method: what was realised plus the open position
    marked at the last price is the cash paid and received plus that mark."""
    rng = np.random.default_rng(int(lot * 100))
    for _ in range(200):
        book = AverageCost()
        realised = 0.0
        cash = 0.0
        price = 100.0
        for _step in range(int(rng.integers(1, 40))):
            signed = float(rng.integers(-30, 31)) * lot
            price *= float(np.exp(rng.normal(0.0, 0.02)))
            realised += book.fill(signed, price)
            cash -= signed * price
        mark = price * 1.01
        by_book = realised + (mark - book.avg_price) * book.quantity
        assert by_book == pytest.approx(cash + book.quantity * mark, rel=1e-9, abs=1e-6)


def test_fractional_lots_that_return_to_flat_leave_no_average_price() -> None:
    book = AverageCost()
    book.fill(0.1, 10.0)
    book.fill(0.2, 11.0)
    book.fill(-0.3, 12.0)  # 0.1 + 0.2 - 0.3 is 5.6e-17 in floating point
    assert book.quantity == 0.0 and book.avg_price == 0.0
    book.fill(-0.5, 20.0)  # a fresh short at its own price, not averaged with a residue
    assert book.avg_price == 20.0 and book.quantity == -0.5


def test_a_reversal_realises_the_old_side_and_opens_the_rest_at_its_price() -> None:
    book = AverageCost()
    book.fill(10.0, 100.0)
    book.fill(5.0, 103.0)  # average 101
    assert book.avg_price == pytest.approx(101.0)
    assert book.fill(-20.0, 104.0) == pytest.approx(15 * 3.0)
    assert (book.quantity, book.avg_price) == (-5.0, 104.0)


def test_the_portfolio_and_the_round_trips_book_alike() -> None:
    """Ending flat, the trips' P&L plus their commissions is the portfolio's realised P&L,
    reversals and fractional lots included."""
    rng = np.random.default_rng(7)
    for _ in range(100):
        n = int(rng.integers(2, 30))
        signed = rng.integers(-20, 21, n).astype(float) * 0.1
        signed = signed[signed != 0.0]
        signed = np.append(signed, -signed.sum())  # back to flat
        signed = signed[np.abs(signed) > 1e-9]
        price = 50.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, len(signed))))
        fee = rng.uniform(0.0, 2.0, len(signed))
        position = Position("X")
        for q, p in zip(signed, price, strict=True):
            position.apply(float(q), float(p))
        side = ["buy" if q > 0 else "sell" for q in signed]
        trips, left = round_trips(range(len(signed)), side, np.abs(signed), price, fee)
        assert left == 0.0 and position.quantity == 0.0
        total = sum(t.pnl for t in trips) + fee.sum()
        assert total == pytest.approx(position.realised_pnl, rel=1e-9, abs=1e-9)
