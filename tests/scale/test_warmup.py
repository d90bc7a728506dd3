"""``run.trade_start``: bars before it warm the strategy up, nothing trades, no metrics."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from engine.app.backtest import run_backtest
from engine.app.scenario import parse_scenario
from engine.app.sweep import with_overrides
from engine.core.errors import ConfigError
from engine.core.events import OrderFilled, SubmitOrder
from storage.db import connect
from storage.models import Order, OrderEvent, PortfolioSnapshotRow
from tests.conftest import synthetic_scenario

SLOW = 20
SMA = f"fast = 5\nslow = {SLOW}\nquantity = 10"


def _iso(ns: int) -> str:
    return pd.Timestamp(ns, tz="UTC").isoformat()


def _run(config: Any, **kwargs: Any) -> tuple[Any, list[Any]]:
    seen: list[Any] = []

    def tap(bus: Any) -> None:
        bus.subscribe(OrderFilled, seen.append)
        bus.subscribe(SubmitOrder, seen.append)

    return run_backtest(config, tap=tap, **kwargs), seen


def test_trade_start_warms_up_then_trades_at_once_and_measures_from_there(
    sqlite_url: str,
) -> None:
    config = synthetic_scenario(600, strategy=SMA)
    full, _ = _run(config, persist=False)
    ts = full.data.ts
    start = 300
    gated = with_overrides(config, {"run.trade_start": _iso(int(ts[start]))})
    result, seen = _run(gated, db_url=sqlite_url)
    fills = [m for m in seen if isinstance(m, OrderFilled)]
    orders = [m for m in seen if isinstance(m, SubmitOrder)]
    # Nothing went out before the start; the SMA was already warm, so the first order
    # goes out on the close of the first trading bar and fills at the next open.
    assert orders and min(o.ts_event for o in orders) == ts[start]
    assert fills and min(f.ts_event for f in fills) == ts[start + 1]
    assert result.summary.bars == len(ts) - start
    assert result.summary.start_ns == ts[start]
    # Without the warm-up bars the first order could not come before SLOW bars.
    _, cold_seen = _run(with_overrides(config, {"data.start": _iso(int(ts[start]))}), persist=False)
    cold_orders = [m for m in cold_seen if isinstance(m, SubmitOrder)]
    assert min(o.ts_event for o in cold_orders) >= ts[start + SLOW - 1]
    # The database holds no order, denial or fill from the warm-up.
    engine = connect(sqlite_url)
    with engine.connect() as c:
        early_orders = c.execute(
            select(func.count()).select_from(Order).where(Order.ts_event < int(ts[start]))
        ).scalar()
        events = c.execute(select(func.count()).select_from(OrderEvent)).scalar()
        accepted = c.execute(
            select(func.count()).select_from(OrderEvent).where(OrderEvent.event == "accepted")
        ).scalar()
        snapshots = c.execute(select(func.count()).select_from(PortfolioSnapshotRow)).scalar()
    assert early_orders == 0
    assert events == accepted  # no warm-up denial was recorded
    assert snapshots == len(ts)


def test_trade_start_equity_is_flat_before_and_summary_ignores_the_warm_up() -> None:
    config = synthetic_scenario(600, strategy=SMA)
    ts = run_backtest(config, persist=False).data.ts
    gated = with_overrides(config, {"run.trade_start": _iso(int(ts[250]))})
    result = run_backtest(gated, persist=False)
    same_window = run_backtest(gated, persist=False)
    assert result.summary == same_window.summary
    assert result.summary.initial_equity == config.broker.initial_cash
    assert np.isfinite(result.summary.sharpe)


def test_trade_start_after_the_last_bar_is_a_config_error() -> None:
    config = synthetic_scenario(100, strategy=SMA, run='trade_start = "2030-01-01"')
    with pytest.raises(ConfigError, match="after the last bar"):
        run_backtest(config, persist=False)


def test_trade_start_unreadable_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="run.trade_start"):
        parse_scenario('[run]\ntrade_start = "next tuesday"\n')
