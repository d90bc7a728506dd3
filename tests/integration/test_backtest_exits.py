"""The SMA crossover with a stop-loss and a take-profit, through a whole backtest.

Fourteen hand-made half-hour bars, SMA(2) against SMA(3), 10 units, no costs,
``stop_loss = 0.05`` and ``take_profit = 0.10``. The comments give each bar's means,
the brackets sent on its close and the fills on the next bars, worked out by hand
from :mod:`strategies.sma_cross` and the broker's rules (:mod:`brokers.simulated`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from engine.app.backtest import run_backtest
from engine.app.kernel import build_strategy
from engine.app.scenario import parse_scenario
from engine.core.errors import ConfigError
from engine.core.events import OrderCanceled, OrderFilled, SubmitOrder
from storage.db import connect
from storage.models import Order
from tests.conftest import synthetic_scenario

#        open    high   low    close     SMA(2) / SMA(3) on the close
BARS = [
    (100.0, 100.5, 99.5, 100.0),  # 0
    (100.0, 100.5, 99.5, 100.0),  # 1
    (100.0, 100.5, 99.5, 100.0),  # 2   100 = 100: no signal
    (100.0, 103.5, 99.5, 103.0),  # 3   101.5 > 101: long, bracket sma-1..3
    (103.5, 104.0, 103.0, 104.0),  # 4   entry at 103.5; exits 97.85 / 113.3 untouched
    (104.0, 114.0, 103.5, 112.0),  # 5   take-profit at 113.3; still long: stay flat
    (112.0, 112.5, 107.5, 108.0),  # 6   110 > 108, long: nothing
    (108.0, 108.5, 99.5, 100.0),  # 7   104 < 106.67: short, bracket sma-4..6
    (99.5, 106.0, 99.0, 104.0),  # 8   entry at 99.5; stop-loss at 105 on the same bar
    (104.0, 104.5, 103.0, 103.5),  # 9   103.75 > 102.5: long, bracket sma-7..9
    (103.0, 103.5, 96.0, 97.0),  # 10  entry at 103, stop-loss 98.325; 100.25 < 101.5: short
    (97.0, 98.0, 96.0, 97.5),  # 11  entry at 97; exits 101.85 / 87.3 untouched
    (97.5, 101.0, 97.0, 100.5),  # 12  99 > 98.33: long, cancel sma-11, 12, buy 10, bracket
    (101.0, 102.0, 100.0, 101.5),  # 13  both buys at 101
]


def scenario(tmp_path: Path, exits: str) -> object:
    rows = ["timestamp,open,high,low,close,volume"]
    for i, (o, h, lo, c) in enumerate(BARS):
        hour, minute = divmod(10 * 60 + 30 * i, 60)
        rows.append(f"2024-01-02 {hour:02d}:{minute:02d},{o},{h},{lo},{c},1000")
    (tmp_path / "bars.csv").write_text("\n".join(rows) + "\n")
    return parse_scenario(
        f"""
[data]
path = "{tmp_path / "bars.csv"}"
[broker]
initial_cash = 100_000.0
[strategy]
kind = "sma_cross"
fast = 2
slow = 3
quantity = 10
{exits}
[storage]
url = "sqlite:///{tmp_path / "runs.db"}"
"""
    )


def test_sma_cross_with_stop_loss_and_take_profit_fills_by_hand(tmp_path: Path) -> None:
    config = scenario(tmp_path, "stop_loss = 0.05\ntake_profit = 0.10")
    events: list = []

    def factory(config, bus, clock):  # type: ignore[no-untyped-def]
        bus.subscribe("*", events.append)
        return build_strategy(config, bus, clock)

    result = run_backtest(config, strategy_factory=factory)
    fills = [
        (e.order_id, e.side, e.quantity, pytest.approx(e.price, rel=1e-12))
        for e in events
        if isinstance(e, OrderFilled)
    ]
    assert fills == [
        ("sma-1", "buy", 10.0, 103.5),  # bar 4 opens at 103.5
        ("sma-3", "sell", 10.0, 103.0 * 1.10),  # bar 5 reaches 103 x 1.10 = 113.3
        ("sma-4", "sell", 10.0, 99.5),  # bar 8 opens at 99.5
        ("sma-5", "buy", 10.0, 100.0 * 1.05),  # and reaches 100 x 1.05 = 105
        ("sma-7", "buy", 10.0, 103.0),  # bar 10 opens at 103
        ("sma-8", "sell", 10.0, 103.5 * 0.95),  # and falls to 103.5 x 0.95 = 98.325
        ("sma-10", "sell", 10.0, 97.0),  # bar 11 opens at 97
        ("sma-13", "buy", 10.0, 101.0),  # bar 13: the short closed at the open, 101
        ("sma-14", "buy", 10.0, 101.0),  # and the new long's entry
    ]
    commands = {e.order_id: e for e in events if isinstance(e, SubmitOrder)}
    assert [(c.order_type, c.parent_order_id) for c in list(commands.values())[:3]] == [
        ("market", None),
        ("stop", "sma-1"),
        ("limit", "sma-1"),
    ]
    # the exits of the last bracket: 100.5 x 0.95 and 100.5 x 1.10
    assert commands["sma-15"].stop_price == pytest.approx(95.475, rel=1e-12)
    assert commands["sma-16"].limit_price == pytest.approx(110.55, rel=1e-12)
    canceled = [
        (e.order_id, e.reason.split(":")[0]) for e in events if isinstance(e, OrderCanceled)
    ]
    assert canceled == [
        ("sma-2", "oco"),
        ("sma-6", "oco"),
        ("sma-9", "oco"),
        ("sma-11", "requested"),  # the crossover on bar 12 cancels the short's exits
        ("sma-12", "requested"),
    ]
    # cash: 100 000 + (113.3 - 103.5) x 10 + (99.5 - 105) x 10 + (98.325 - 103) x 10
    #       + 97 x 10 - 2 x 101 x 10 = 98 946.25; long 10 marked at 101.5
    summary = result.summary
    assert summary.final_equity == pytest.approx(98_946.25 + 1_015.0, rel=1e-12)
    with connect(config.storage.url).connect() as connection:
        stored = connection.execute(
            select(Order.order_id, Order.parent_order_id).order_by(Order.seq)
        ).all()
    assert [tuple(row) for row in stored][:3] == [
        ("sma-1", None),
        ("sma-2", "sma-1"),
        ("sma-3", "sma-1"),
    ]


def test_sma_cross_exits_off_sends_plain_market_orders(tmp_path: Path) -> None:
    events: list = []

    def factory(config, bus, clock):  # type: ignore[no-untyped-def]
        bus.subscribe("*", events.append)
        return build_strategy(config, bus, clock)

    run_backtest(scenario(tmp_path, ""), persist=False, strategy_factory=factory)
    fills = [(e.side, e.quantity, e.price) for e in events if isinstance(e, OrderFilled)]
    # long 10 at bar 4's open, reversed to short (20) at bar 8's, to long at bar 10's,
    # short at bar 11's, long at bar 13's
    assert fills == [
        ("buy", 10.0, 103.5),
        ("sell", 20.0, 99.5),
        ("buy", 20.0, 103.0),
        ("sell", 20.0, 97.0),
        ("buy", 20.0, 101.0),
    ]
    assert all(e.parent_order_id is None for e in events if isinstance(e, SubmitOrder))


@pytest.mark.parametrize("key", ["stop_loss", "take_profit"])
@pytest.mark.parametrize("value", [-0.01, 1.0])
def test_sma_cross_exit_fraction_outside_zero_one_refused(key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=f"strategy.{key}"):
        synthetic_scenario(100, strategy=f'kind = "sma_cross"\n{key} = {value}')
