"""Holding costs: the borrow fee on short positions and financing on negative cash.

The desk of ``test_simulated_broker`` (the real broker and portfolio on one bus).
Each charge is worked out by hand from the rule in :mod:`brokers.portfolio`: what was
held at the previous bar's close, at that close, times the annual rate, times the
calendar time to this bar's close over a year of 365.25 x 24 = 8 766 hours.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from engine.core.events import BUY, SELL, PortfolioSnapshot
from tests.brokers.test_simulated_broker import Desk, ns, only, wire

YEAR_HOURS = 365.25 * 24  # 8 766


@pytest.fixture
def make_desk() -> Callable[..., Desk]:
    return wire


@pytest.fixture
def desk() -> Desk:
    return wire()


def test_borrow_fee_short_over_weekend_charged_by_calendar_time(
    make_desk: Callable[..., Desk],
) -> None:
    desk = make_desk(borrow_fee_bps=500.0)  # 5 % a year
    # Friday 2024-01-05: short 100 at the 16:00 bar's open, 100
    desk.bar(100.0, 100.5, 99.5, 100.0, at=ns("2024-01-05T15:30"))
    desk.submit(SELL, 100.0)
    friday = only(desk.bar(100.0, 100.5, 99.5, 100.0, at=ns("2024-01-05T16:00")), PortfolioSnapshot)
    assert (friday.position, friday.borrow_fees) == (-100.0, 0.0)  # flat at the 15:30 close
    # Monday 09:30: the short of 100 at Friday's close of 100 (10 000) was held for the
    # 65.5 hours from Friday 16:00: 10 000 x 5 % x 65.5 / 8 766 = 3.7360...
    weekend = 10_000.0 * 0.05 * 65.5 / YEAR_HOURS
    monday = only(desk.bar(100.0, 102.5, 99.5, 102.0, at=ns("2024-01-08T09:30")), PortfolioSnapshot)
    assert monday.borrow_fees == pytest.approx(weekend, rel=1e-12)
    assert monday.cash == pytest.approx(110_000.0 - weekend, rel=1e-12)
    assert monday.equity == pytest.approx(110_000.0 - weekend - 10_200.0, rel=1e-12)
    # 10:00: half an hour on 100 x 102 = 10 200; then cover at the 10:30 bar's open, 101
    ten = only(desk.bar(102.0, 102.5, 100.5, 101.0), PortfolioSnapshot)
    half_hour = 10_200.0 * 0.05 * 0.5 / YEAR_HOURS
    assert ten.borrow_fees == pytest.approx(weekend + half_hour, rel=1e-12)
    desk.submit(BUY, 100.0)
    # 10:30: the short held at the 10:00 close (100 x 101 = 10 100) pays its half hour
    # although it was covered at this bar's open; 11:00: nothing held, nothing charged
    desk.bar(101.0, 101.5, 100.5, 101.0)
    last = only(desk.bar(101.0, 101.5, 100.5, 101.0), PortfolioSnapshot)
    # in all: 5 % x (10 000 x 65.5 + 10 200 x 0.5 + 10 100 x 0.5) / 8 766 = 3.7939...
    total = 0.05 * 665_150.0 / YEAR_HOURS
    assert last.borrow_fees == pytest.approx(total, rel=1e-12)
    assert desk.portfolio.borrow_fees == last.borrow_fees
    # cash: 100 000 + 10 000 - 10 100 - the borrow fees; no commission, no financing
    assert last.cash == pytest.approx(99_900.0 - total, rel=1e-12)
    assert (last.fees, last.financing, last.position) == (0.0, 0.0, 0.0)


def test_financing_negative_cash_overnight_charged_on_the_loan(
    make_desk: Callable[..., Desk],
) -> None:
    desk = make_desk(financing_rate_bps=800.0, margin_rate=0.5)  # 8 % a year, 2x
    desk.bar(100.0, 100.5, 99.5, 100.0, at=ns("2024-01-02T09:30"))
    desk.submit(BUY, 1_500.0)  # 150 000 of stock on 100 000 of cash
    first = only(desk.bar(100.0, 100.5, 99.5, 100.0, at=ns("2024-01-02T10:00")), PortfolioSnapshot)
    assert (first.cash, first.financing) == (-50_000.0, 0.0)  # the cash was positive at 09:30
    # Wednesday 09:30: the loan of 50 000 over the 23.5 hours from Tuesday 10:00
    night = 50_000.0 * 0.08 * 23.5 / YEAR_HOURS  # 10.7232...
    second = only(desk.bar(100.0, 100.5, 99.5, 100.0, at=ns("2024-01-03T09:30")), PortfolioSnapshot)
    assert second.financing == pytest.approx(night, rel=1e-12)
    assert second.cash == pytest.approx(-50_000.0 - night, rel=1e-12)
    # 10:00: half an hour on the loan as it stood at 09:30, the interest included
    half_hour = (50_000.0 + night) * 0.08 * 0.5 / YEAR_HOURS
    third = only(desk.bar(100.0, 100.5, 99.5, 100.0), PortfolioSnapshot)
    assert third.financing == pytest.approx(night + half_hour, rel=1e-12)
    assert third.equity == pytest.approx(100_000.0 - night - half_hour, rel=1e-12)
    assert third.borrow_fees == 0.0


def test_holding_costs_positive_cash_and_long_position_charge_nothing(
    make_desk: Callable[..., Desk],
) -> None:
    desk = make_desk(borrow_fee_bps=500.0, financing_rate_bps=800.0)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    desk.submit(BUY, 100.0)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    last = only(desk.bar(100.0, 100.5, 99.5, 100.0, at=ns("2024-01-09T01:30")), PortfolioSnapshot)
    assert (last.borrow_fees, last.financing, last.cash) == (0.0, 0.0, 90_000.0)


def test_holding_costs_off_by_default_nothing_charged(desk: Desk) -> None:
    desk.bar(100.0, 100.5, 99.5, 100.0)
    desk.submit(SELL, 100.0)
    desk.bar(100.0, 100.5, 99.5, 100.0)
    last = only(desk.bar(100.0, 100.5, 99.5, 101.0, at=ns("2024-01-09T01:30")), PortfolioSnapshot)
    assert (last.borrow_fees, last.financing) == (0.0, 0.0)
    assert last.cash == 110_000.0
    assert desk.portfolio.borrow_fees == desk.portfolio.financing == 0.0
