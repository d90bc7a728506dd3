"""The Python API: emarl.backtest with the scenario's strategy or one of the user's.

Every frame is checked against an independent reading: the positions against the
signed fills summed up, the equity against the snapshots the database stored, the
orders against their fills, a custom run's stored strategy against what ran.
"""

from __future__ import annotations

import asyncio
import html
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

import emarl
from engine.core.errors import ConfigError
from engine.core.events import Bar
from reporting.report import build_report
from storage.db import connect
from storage.frames import snapshots_frame
from storage.query import compare_rows, list_runs

SCENARIO = Path(__file__).parents[2] / "scenarios" / "synthetic.toml"
SMALL = {"data.synthetic.bars": 3_000}


class Channel(emarl.Strategy):
    """Long above the highest close of ``lookback`` bars, short below the lowest."""

    lookback: int = 20
    quantity: float = 500.0

    def setup(self) -> None:
        self.closes: list[float] = []

    def on_bar(self, bar: Bar) -> None:
        window = self.closes[-self.lookback :]
        self.closes.append(bar.close)
        if len(window) < self.lookback or self.open_orders:
            return
        if bar.close > max(window) and self.position <= 0:
            self.target_position(self.quantity)
        elif bar.close < min(window) and self.position >= 0:
            self.target_position(-self.quantity)


@pytest.fixture
def run(sqlite_url: str) -> Callable[..., emarl.Result]:
    def backtest(*args: Any, **kwargs: Any) -> emarl.Result:
        return emarl.backtest(SCENARIO, *args, overrides=SMALL, db_url=sqlite_url, **kwargs)

    return backtest


def test_a_custom_strategy_is_stored_with_its_import_path_and_parameters(
    run: Callable[..., emarl.Result], sqlite_url: str
) -> None:
    result = run(Channel, lookback=40)
    assert result.summary.trades > 5
    stored = {"lookback": 40, "quantity": 500.0}
    path = f"{__name__}:Channel"
    assert result.strategy == {"kind": "custom", "import_path": path, "params": stored}
    engine = connect(sqlite_url)
    (listed,) = list_runs(engine)
    assert listed["name"] == "synthetic-sma-channel"
    assert listed["strategy"] == f"{path}(lookback=40, quantity=500.0)"
    sma = run()
    rows = compare_rows(engine, [result.run_id, sma.run_id])
    assert [row["strategy"] for row in rows] == [listed["strategy"], "sma_cross"]
    assert f"backtest · {html.escape(listed['strategy'])} ·" in build_report(engine, result.run_id)
    # the stored config says what ran, and its hash tells the two runs apart
    configs = [r["config_hash"] for r in list_runs(engine)]
    assert len(set(configs)) == 2


def test_frames_agree_with_the_fills_and_the_stored_snapshots(
    run: Callable[..., emarl.Result], sqlite_url: str
) -> None:
    result = run(Channel)
    equity, fills, orders = result.equity, result.fills, result.orders
    assert len(equity) == result.summary.bars == 3_000
    assert equity["equity"].iloc[-1] == pytest.approx(result.summary.final_equity, rel=1e-12)
    # positions: the signed fills summed up to each bar's time
    signed = np.where(fills["side"] == "buy", 1.0, -1.0) * fills["quantity"].to_numpy()
    held = pd.Series(signed, index=fills.index).groupby(level=0).sum().cumsum()
    expected = held.reindex(equity.index, method="ffill").fillna(0.0)
    np.testing.assert_array_equal(result.positions["SYNTH"].to_numpy(), expected.to_numpy())
    # equity: what the database stored, bar for bar
    stored = snapshots_frame(connect(sqlite_url), result.run_id)
    np.testing.assert_array_equal(equity["equity"].to_numpy(), stored["equity"].to_numpy())
    np.testing.assert_array_equal(
        equity.index.asi8, pd.DatetimeIndex(pd.to_datetime(stored["ts_event"], utc=True)).asi8
    )
    # drawdown from the running peak, the initial cash included
    peak = np.maximum.accumulate(np.r_[1_000_000.0, equity["equity"].to_numpy()])[1:]
    np.testing.assert_allclose(equity["drawdown"], equity["equity"] / peak - 1.0)
    # orders: each filled order's quantity and average price from its own fills
    assert len(orders) == result.orders_summary["sent"]
    by_order = fills.groupby("order_id").apply(
        lambda f: pd.Series(
            {
                "q": f["quantity"].sum(),
                "p": (f["quantity"] * f["price"]).sum() / f["quantity"].sum(),
            }
        ),
        include_groups=False,
    )
    filled = orders[orders["status"] == "filled"].set_index("order_id")
    assert len(filled) == len(by_order)
    np.testing.assert_allclose(filled.loc[by_order.index, "filled_quantity"], by_order["q"])
    np.testing.assert_allclose(filled.loc[by_order.index, "average_price"], by_order["p"])


def test_denied_orders_are_in_the_orders_frame_with_their_reason(
    run: Callable[..., emarl.Result],
) -> None:
    result = run(Channel, quantity=1e9)  # far more than the account can carry
    orders = result.orders
    assert len(orders) > 0 and (orders["status"] == "denied").all()
    assert orders["reason"].str.startswith("margin").all()
    assert result.summary.trades == 0 and len(result.fills) == 0


def test_backtest_works_inside_a_running_event_loop(run: Callable[..., emarl.Result]) -> None:
    async def notebook_cell() -> tuple[emarl.Result, emarl.Result]:
        # a Jupyter cell runs inside a loop: the plain call must still work...
        inside = run(Channel)
        # ...and the coroutine can be awaited on that loop
        awaited = await emarl.backtest_async(
            SCENARIO, Channel, overrides=SMALL, db_url=None, persist=False
        )
        return inside, awaited

    inside, awaited = asyncio.run(notebook_cell())
    assert awaited.run_id is None
    assert inside.summary.final_equity == awaited.summary.final_equity
    assert inside.fills.equals(awaited.fills)


def test_parameters_are_checked_against_the_declared_ones(
    run: Callable[..., emarl.Result],
) -> None:
    with pytest.raises(
        ConfigError, match=r"Channel has no parameter 'lokback' .*lookback, quantity"
    ):
        run(Channel, lokback=5)
    with pytest.raises(ConfigError, match=r"Channel.lookback must be a int .* got 'ten'"):
        run(Channel, lookback="ten")
    with pytest.raises(ConfigError, match="Channel.lookback must be a int"):
        run(Channel, lookback=True)
    assert Channel.parameters() == {"lookback": 20, "quantity": 500.0}
    result = run(Channel, quantity=250)  # an int where a float is declared is a float
    assert result.strategy["params"]["quantity"] == 250.0


def test_params_without_a_strategy_set_the_scenarios_strategy(
    run: Callable[..., emarl.Result],
) -> None:
    fast = run(fast=5)
    assert fast.config.strategy.fast == 5
    assert fast.strategy["kind"] == "sma_cross" and fast.strategy["fast"] == 5
    with pytest.raises(ConfigError, match="fastest"):
        run(fastest=5)
    with pytest.raises(ConfigError, match="fast"):
        run(fast=40)  # not below slow


def test_a_strategy_function_runs_in_the_strategys_place(
    run: Callable[..., emarl.Result],
) -> None:
    def channel(config: Any, bus: Any, clock: Any, lookback: int = 20) -> emarl.Strategy:
        return Channel.create(bus, clock, config.instrument.symbol, lookback=lookback)

    by_function = run(channel, lookback=30)
    by_class = run(Channel, lookback=30)
    assert by_function.strategy["import_path"].endswith("channel")
    assert by_function.strategy["params"] == {"lookback": 30}
    assert by_function.summary.final_equity == by_class.summary.final_equity


def test_plot_draws_price_fills_equity_drawdown_and_position(
    run: Callable[..., emarl.Result],
) -> None:
    figure = run(Channel).plot()
    assert isinstance(figure, go.Figure)
    names = [trace.name for trace in figure.data]
    assert names == ["close", "buy", "sell", "equity", "drawdown %", "position"]
    assert len(figure.data[0].x) == 3_000
    json.loads(figure.to_json())  # serialisable, as a notebook renders it


def test_a_scenario_can_be_given_as_a_dict() -> None:
    raw = emarl.scenario(SCENARIO).to_dict()
    raw["data"]["synthetic"]["bars"] = 500
    result = emarl.backtest(raw, Channel, persist=False)
    assert result.summary.bars == 500
    with pytest.raises(ConfigError, match="a scenario is"):
        emarl.backtest(42, persist=False)  # type: ignore[arg-type]


def test_the_result_says_what_loading_changed_in_the_data(tmp_path: Path) -> None:
    """Rows with a NaN close dropped by the scenario's policy: ``data_changes`` counts
    them as pandas does in the file; the same bars without a bad row report nothing."""
    times = pd.date_range("2022-03-01 10:00", periods=400, freq="30min", tz="UTC")
    close = np.linspace(20.0, 24.0, len(times))
    frame = pd.DataFrame({"timestamp": times, "open": close, "high": close + 0.1,
                          "low": close - 0.1, "close": close, "volume": 500.0})  # fmt: skip
    frame.to_csv(tmp_path / "clean.csv", index=False)
    frame.loc[[7, 8, 300], "close"] = np.nan
    frame.to_csv(tmp_path / "holes.csv", index=False)
    tables = {
        "data": {"path": str(tmp_path / "holes.csv"), "on_bad_price": "drop"},
        "strategy": {"kind": "sma_cross", "fast": 3, "slow": 9},
    }
    holes = emarl.backtest(tables, persist=False)
    assert holes.data_changes == {"dropped": {"bad price": int(frame["close"].isna().sum())}}
    assert len(holes.equity) == 397
    tables["data"]["path"] = str(tmp_path / "clean.csv")
    assert emarl.backtest(tables, persist=False).data_changes is None
