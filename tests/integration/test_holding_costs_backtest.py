"""Borrow fees and financing through a whole backtest: the summary reports them, and a
naive loop over the snapshots recomputes them."""

from __future__ import annotations

import itertools

import pytest

from brokers.costs import YEAR_NS
from engine.app.backtest import run_backtest
from engine.app.kernel import build_strategy
from engine.core.events import PortfolioSnapshot
from tests.conftest import synthetic_scenario

STRATEGY = "quantity = 1500"


def snapshots_of(broker: str) -> tuple[object, list[PortfolioSnapshot]]:
    events: list = []

    def factory(config, bus, clock):  # type: ignore[no-untyped-def]
        bus.subscribe(PortfolioSnapshot, events.append)
        return build_strategy(config, bus, clock)

    config = synthetic_scenario(3_000, broker=broker, strategy=STRATEGY)
    result = run_backtest(config, persist=False, strategy_factory=factory)
    return result, events


def test_backtest_holding_costs_summed_from_snapshots_and_reported() -> None:
    # 2x leverage on 100 000 with 1 500 units near 100: long is a margin loan, short
    # a borrowed position, so both charges accrue
    broker = (
        "initial_cash = 100_000.0\nmargin_rate = 0.5\n"
        "borrow_fee_bps = 300.0\nfinancing_rate_bps = 700.0"
    )
    result, snapshots = snapshots_of(broker)
    borrow = financing = 0.0
    for previous, snapshot in itertools.pairwise(snapshots):
        years = (snapshot.ts_event - previous.ts_event) / YEAR_NS
        if previous.position < 0:
            borrow += -previous.position * previous.mark_price * 0.03 * years
        if previous.cash < 0:
            financing += -previous.cash * 0.07 * years
    assert borrow > 0.0 and financing > 0.0
    last = snapshots[-1]
    assert last.borrow_fees == pytest.approx(borrow, rel=1e-9)
    assert last.financing == pytest.approx(financing, rel=1e-9)
    summary = result.summary
    assert (summary.borrow_fees, summary.financing) == (last.borrow_fees, last.financing)

    # the same orders fill at the same prices without the charges: the equity differs by
    # exactly what was charged
    plain, plain_snapshots = snapshots_of("initial_cash = 100_000.0\nmargin_rate = 0.5")
    assert [s.position for s in plain_snapshots] == [s.position for s in snapshots]
    assert plain.summary.final_equity - summary.final_equity == pytest.approx(
        borrow + financing, rel=1e-9
    )
    assert (plain.summary.borrow_fees, plain.summary.financing) == (0.0, 0.0)
