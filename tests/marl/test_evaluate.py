"""Strategic accuracy and the equity statistics against loops."""

from __future__ import annotations

import math

import numpy as np
import pytest

from strategies.marl.evaluate import equity_statistics, strategic_accuracy


@pytest.mark.parametrize("k", [1, 3, 8])
def test_strategic_accuracy_matches_loop(k):
    rng = np.random.default_rng(k)
    close = 10 + np.cumsum(rng.choice([-0.1, 0.0, 0.1], size=200))
    direction = rng.choice([-1.0, 0.0, 1.0], size=200)
    hits = total = 0
    for t in range(200):
        if t + k >= 200 or direction[t] == 0:
            continue
        total += 1
        move = close[t + k] - close[t]
        if (move > 0 and direction[t] > 0) or (move < 0 and direction[t] < 0):
            hits += 1
    accuracy, count = strategic_accuracy(direction, close, k)
    assert count == total
    assert accuracy == pytest.approx(hits / total)


def test_strategic_accuracy_without_decisions_is_nan():
    accuracy, count = strategic_accuracy(np.zeros(10), np.arange(10.0), 1)
    assert math.isnan(accuracy) and count == 0


def test_equity_statistics():
    day = 86_400 * 10**9
    ts = np.arange(5) * day
    equity = np.array([100.0, 110.0, 99.0, 120.0, 108.0])
    position = np.array([1.0, 1.0, 0.0, 1.0, 1.0])
    stats = equity_statistics(ts, equity, position)
    assert stats["total_return"] == pytest.approx(0.08)
    assert stats["max_drawdown"] == pytest.approx(99 / 110 - 1)
    # held on bars 0, 1, 3: P&L +10, -11, -12
    assert stats["hit_rate"] == pytest.approx(1 / 3)
    r = np.diff(equity) / equity[:-1]
    per_year = 4 / (4 / 365.25)
    assert stats["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(per_year))
