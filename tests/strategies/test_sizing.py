"""Position sizing and the split of a universe's account, against independent references:
pandas' rolling standard deviation for the volatility, numpy for the weights, hand
arithmetic for the units, and a backtest whose entries are sized as computed by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import emarl
from engine.app.scenario import parse_scenario
from engine.core.bus import MessageBus
from engine.core.errors import ConfigError
from engine.core.events import Bar, PortfolioSnapshot
from strategies.sizing import YEAR_NS, AccountView, SizingConfig

HOUR = 3_600_000_000_000


def _bar(symbol: str, ts: int, close: float) -> Bar:
    return Bar(
        ts_event=ts,
        ts_init=ts,
        seq=0,
        symbol=symbol,
        open=close,
        high=close,
        low=close,
        close=close,
        volume=1.0,
    )


def _snapshot(equity: float) -> PortfolioSnapshot:
    return PortfolioSnapshot(
        ts_event=0,
        ts_init=0,
        seq=0,
        symbol="A",
        position=0.0,
        avg_price=0.0,
        mark_price=1.0,
        cash=equity,
        realised_pnl=0.0,
        unrealised_pnl=0.0,
        equity=equity,
        exposure=0.0,
        fees=0.0,
        turnover=0.0,
    )


def test_volatility_matches_pandas_rolling_std_over_irregular_bars() -> None:
    rng = np.random.default_rng(3)
    n, lookback = 700, 40
    # hourly bars with random gaps of up to three days, and a price that trends and jumps
    ts = np.cumsum(rng.choice([1, 1, 1, 2, 24, 72], size=n)) * HOUR
    closes = 50 * np.exp(np.cumsum(rng.normal(0.0005, 0.02, n)))
    view = AccountView(MessageBus(), ["A"], SizingConfig(lookback=lookback))
    logs = pd.Series(np.log(closes)).diff()
    reference = logs.rolling(lookback).std(ddof=1)
    for i in range(n):
        view.on_bar(_bar("A", int(ts[i]), float(closes[i])))
        ours = view.returns["A"].volatility()
        if i < lookback:
            assert ours is None
            continue
        per_year = lookback / ((ts[i] - ts[i - lookback]) / YEAR_NS)
        assert ours == pytest.approx(reference[i] * math.sqrt(per_year), rel=1e-9)


def test_inverse_volatility_weights_match_numpy() -> None:
    rng = np.random.default_rng(8)
    symbols = ["A", "B", "C"]
    view = AccountView(
        MessageBus(), symbols, SizingConfig(lookback=20), allocation="inverse_volatility"
    )
    assert view.weight("A") == pytest.approx(1 / 3)  # no volatility known yet
    scale = {"A": 0.01, "B": 0.02, "C": 0.04}
    prices = dict.fromkeys(symbols, 10.0)
    for k in range(30):
        for s in symbols:
            prices[s] *= math.exp(rng.normal(0, scale[s]))
            view.on_bar(_bar(s, (k + 1) * HOUR, prices[s]))
    sigmas = np.array([view.returns[s].volatility() for s in symbols])
    expected = (1 / sigmas) / np.sum(1 / sigmas)
    np.testing.assert_allclose([view.weight(s) for s in symbols], expected, rtol=1e-12)
    assert sum(view.weight(s) for s in symbols) == pytest.approx(1.0)
    assert view.weight("A") > view.weight("B") > view.weight("C")


def test_units_by_hand() -> None:
    fraction = AccountView(
        MessageBus(), ["A", "B"], SizingConfig(method="equity_fraction", fraction=0.3)
    )
    fraction.on_snapshot(_snapshot(1_000_000.0))
    # 0.3 x (1/2) x 1,000,000 = 150,000 at 12.34 = 12,155.7 units -> 12,100 in lots of 100
    assert fraction.units("A", 12.34, 100.0, 5.0) == 12_100.0
    units = AccountView(MessageBus(), ["A"], SizingConfig())
    assert units.units("A", 12.34, 100.0, 5.0) == 5.0  # fixed units, whatever the price
    target = AccountView(
        MessageBus(),
        ["A"],
        SizingConfig(
            method="volatility_target", target_volatility=0.1, max_fraction=0.8, lookback=2
        ),
    )
    target.on_snapshot(_snapshot(100_000.0))
    assert target.units("A", 10.0, 1.0, 5.0) == 0.0  # no volatility yet: no position
    for k, close in enumerate([10.0, 11.0, 10.0]):
        target.on_bar(_bar("A", (k + 1) * YEAR_NS // 2, close))
    sigma = target.returns["A"].volatility()
    r = [math.log(1.1), math.log(10 / 11)]
    assert sigma == pytest.approx(np.std(r, ddof=1) * math.sqrt(2 / 1.0), rel=1e-12)
    # 0.1 / σ is about 0.74 of the equity: 74,xxx at 10 -> that many whole units
    assert target.units("A", 10.0, 1.0, 5.0) == math.floor(0.1 / sigma * 100_000 / 10)
    capped = AccountView(
        MessageBus(),
        ["A"],
        SizingConfig(
            method="volatility_target", target_volatility=5.0, max_fraction=0.8, lookback=2
        ),
    )
    capped.on_snapshot(_snapshot(100_000.0))
    for k, close in enumerate([10.0, 11.0, 10.0]):
        capped.on_bar(_bar("A", (k + 1) * YEAR_NS // 2, close))
    assert capped.units("A", 10.0, 1.0, 5.0) == 8_000.0  # the cap: 0.8 x equity


def test_a_sized_sma_enters_with_the_computed_units_and_holds(tmp_path: Path) -> None:
    # up 6 bars, down 6, up 6: the crossover (fast 2, slow 3) changes direction twice
    closes = [10, 11, 12, 13, 14, 15, 14, 13, 12, 11, 10, 9, 10, 11, 12, 13, 14, 15.0]
    times = pd.date_range("2024-01-02 00:30", periods=len(closes), freq="30min", tz="UTC")
    frame = pd.DataFrame(
        {
            "timestamp": times,
            "open": closes,
            "high": closes,
            "low": closes,
            "close": closes,
            "volume": 1e9,
        }
    )
    frame.to_csv(tmp_path / "bars.csv", index=False)
    config = parse_scenario(
        f'[data]\npath = "{tmp_path / "bars.csv"}"\n[instrument]\nsymbol = "X"\nlot_size = 10\n'
        "[broker]\ninitial_cash = 10000.0\n"
        '[strategy]\nfast = 2\nslow = 3\n[strategy.sizing]\nmethod = "equity_fraction"\n'
        "fraction = 0.5\n"
    )
    result = emarl.backtest(config, persist=False)
    orders = result.orders
    # decided on bar 3's close (12): 0.5 x 10,000 / 12 = 416.7 -> 410 units
    assert orders["quantity"].iloc[0] == 410.0 and orders["side"].iloc[0] == "buy"
    # every later order reverses the position: no order while the direction holds
    assert len(orders) == 3
    fills = result.fills
    positions = np.cumsum(np.where(fills["side"] == "buy", 1, -1) * fills["quantity"])
    assert [int(np.sign(p)) for p in positions] == [1, -1, 1]
    equity_at = result.equity["equity"]
    for (_, order), position in zip(orders.iloc[1:].iterrows(), positions[:-1], strict=True):
        decided = equity_at[equity_at.index < order.name + pd.Timedelta("1ns")].iloc[-1]
        close = frame.set_index("timestamp")["close"][order.name]
        new = math.floor(0.5 * decided / close / 10 + 1e-9) * 10
        assert order["quantity"] == abs(position) + new


class _BuyOnce(emarl.Strategy):
    """Buys ``size(close, quantity)`` units on its third bar, and holds."""

    quantity: float = 7.0

    def setup(self) -> None:
        self.seen = 0

    def on_bar(self, bar: Bar) -> None:
        self.seen += 1
        if self.seen == 3:
            self.target_position(self.size(bar.close, self.quantity))


@pytest.mark.parametrize("method", ["units", "equity_fraction"])
def test_a_strategy_of_your_own_sizes_with_the_scenarios_sizing(
    tmp_path: Path, method: str
) -> None:
    closes = [10.0, 11.0, 12.0, 13.0, 14.0]
    times = pd.date_range("2024-01-02 00:30", periods=len(closes), freq="30min", tz="UTC")
    frame = pd.DataFrame({"timestamp": times, "open": closes, "high": closes, "low": closes,
                          "close": closes, "volume": 1e9})  # fmt: skip
    frame.to_csv(tmp_path / "bars.csv", index=False)
    config = parse_scenario(
        f'[data]\npath = "{tmp_path / "bars.csv"}"\n[instrument]\nsymbol = "X"\nlot_size = 10\n'
        "[broker]\ninitial_cash = 10000.0\n"
        f'[strategy]\n[strategy.sizing]\nmethod = "{method}"\nfraction = 0.25\n'
    )
    result = emarl.backtest(config, _BuyOnce, persist=False)
    (quantity,) = result.orders["quantity"].tolist()
    # units: the strategy's own quantity; by equity: 0.25 x 10,000 / 12 = 208.3 -> 200
    assert quantity == (7.0 if method == "units" else 200.0)


def test_sizing_is_checked_and_left_out_of_the_stored_config_at_its_default() -> None:
    with pytest.raises(ConfigError, match="method"):
        parse_scenario('[strategy]\n[strategy.sizing]\nmethod = "kelly"\n')
    with pytest.raises(ConfigError, match="strategy.sizing.fraction must be a positive"):
        parse_scenario("[strategy]\n[strategy.sizing]\nfraction = 0\n")
    plain = parse_scenario('[data]\nsource = "synthetic"\n')
    assert "sizing" not in plain.to_dict()["strategy"]
    assert "allocation" not in plain.to_dict()["strategy"]
