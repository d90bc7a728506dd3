"""Run statistics against empyrical and hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.app.metrics import YEAR_NS, compute_summary, round_trips

empyrical = pytest.importorskip("empyrical")


def no_fills() -> dict[str, np.ndarray]:
    return {
        "side": np.array([], dtype=object),
        "quantity": np.array([]),
        "price": np.array([]),
        "commission": np.array([]),
    }


def test_compute_summary_matches_empyrical_with_bars_per_year() -> None:
    rng = np.random.default_rng(11)
    n = 3_000
    # Irregular spacing: 8 bars a day, days with gaps, as in an exchange market.
    ts = np.cumsum(rng.choice([1_800, 1_800, 1_800, 64_800], size=n)) * 1_000_000_000
    returns = rng.normal(0.0002, 0.004, n)
    initial = 1_000.0
    equity = initial * np.cumprod(1 + returns)
    summary = compute_summary(ts, equity, np.ones(n), initial, no_fills(), 0.0)
    periods = (n - 1) / ((ts[-1] - ts[0]) / YEAR_NS)
    assert summary.periods_per_year == pytest.approx(periods)
    assert summary.sharpe == pytest.approx(
        empyrical.sharpe_ratio(returns, annualization=periods), rel=1e-9
    )
    assert summary.sortino == pytest.approx(
        empyrical.sortino_ratio(returns, annualization=periods), rel=1e-9
    )
    assert summary.annual_volatility == pytest.approx(
        empyrical.annual_volatility(returns, annualization=periods), rel=1e-9
    )
    assert summary.max_drawdown == pytest.approx(empyrical.max_drawdown(returns), rel=1e-9)
    assert summary.cagr == pytest.approx(empyrical.cagr(returns, annualization=periods), rel=1e-9)
    assert summary.calmar == pytest.approx(
        empyrical.calmar_ratio(returns, annualization=periods), rel=1e-9
    )
    assert summary.total_return == pytest.approx(equity[-1] / initial - 1)


def test_compute_summary_hand_case() -> None:
    ts = np.array([0, 1, 2, 3]) * (YEAR_NS // 3)  # 3 returns per year
    equity = np.array([110.0, 99.0, 99.0, 121.0])
    summary = compute_summary(ts, equity, np.array([1, 0, 0, 1.0]), 100.0, no_fills(), 3.0)
    r = np.array([0.1, -0.1, 0.0, 121 / 99 - 1])
    assert summary.total_return == pytest.approx(0.21)
    assert summary.max_drawdown == pytest.approx(-0.1)
    assert summary.exposure == pytest.approx(0.5)
    assert summary.sharpe == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(3))
    assert summary.cagr == pytest.approx(1.21 ** (3 / 4) - 1)
    assert summary.fees == 3.0


def test_round_trips_long_flip_short_and_commissions() -> None:
    side = np.array(["buy", "sell", "buy"], dtype=object)
    quantity = np.array([10.0, 20.0, 10.0])
    price = np.array([100.0, 110.0, 105.0])
    commission = np.array([1.0, 2.0, 1.0])
    trips = round_trips(side, quantity, price, commission)
    # Long 10 @100 -> sold @110: +100, minus 1 and half of the flip fill's 2.
    # Short 10 @110 -> covered @105: +50, minus the other half (1) and 1.
    np.testing.assert_allclose(trips, [98.0, 48.0])


def test_compute_summary_no_bars_and_constant_equity_are_defined() -> None:
    empty = compute_summary(
        np.array([], dtype=np.int64), np.array([]), np.array([]), 100.0, no_fills(), 0.0
    )
    assert empty.bars == 0 and math.isnan(empty.sharpe)
    flat = compute_summary(
        np.arange(5) * 10**12, np.full(5, 100.0), np.zeros(5), 100.0, no_fills(), 0.0
    )
    assert flat.total_return == 0.0 and flat.max_drawdown == 0.0
    assert math.isnan(flat.sharpe) and math.isnan(flat.win_rate) and flat.trades == 0
