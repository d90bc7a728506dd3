"""The trading characteristic function against plain-loop P&L references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies.meta.shapley import coalition_masks, shapley_exact, shapley_monte_carlo
from tests.reference.meta_trading import (
    ensemble_confidence,
    ensemble_probabilities,
    ensemble_target,
    trading_coalition_values,
    trading_value_function,
    unit_trading_cost,
)

COSTS = {"commission_bps": 2.0, "commission_per_unit": 0.01, "slippage_bps": 1.5}


def _random_votes(n, seed):
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(3), size=n)
    w = rng.dirichlet(np.ones(n))
    return P, w


def _reference_pnl(P, w, members, *, max_position, threshold, previous, price, move, costs):
    """P&L of one coalition, written as a plain loop over agents and actions."""
    ensemble = [0.0, 0.0, 0.0]
    for i in range(len(w)):
        vote = P[i] if members[i] else (0.0, 1.0, 0.0)
        for a in range(3):
            ensemble[a] += w[i] * vote[a]
    entropy = sum(-p * math.log(p) for p in ensemble if p > 0.0)
    confidence = max(ensemble) - entropy
    target = max_position * (ensemble[2] - ensemble[0]) if confidence >= threshold else previous
    traded = abs(target - previous)
    commission = traded * price * costs["commission_bps"] / 10_000
    commission += traded * costs["commission_per_unit"]
    slippage = traded * price * costs["slippage_bps"] / 10_000
    return target * move - commission - slippage


def _reference_values(P, w, **kwargs):
    n = len(w)
    values = np.zeros(1 << n)
    for s in range(1, 1 << n):
        members = [bool(s >> i & 1) for i in range(n)]
        values[s] = _reference_pnl(P, w, members, **kwargs)
    return values


def _values(P, w, *, max_position, threshold, previous, price, move, costs, **extra):
    return trading_coalition_values(
        P,
        w,
        max_position=max_position,
        confidence_threshold=threshold,
        previous_position=previous,
        price=price,
        price_change=move,
        **costs,
        **extra,
    )


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 6),
    seed=st.integers(0, 2**32 - 1),
    threshold=st.floats(-0.8, 1.0),
    previous=st.floats(-5.0, 5.0),
    move=st.floats(-3.0, 3.0),
)
def test_trading_coalition_values_random_votes_match_plain_loop(n, seed, threshold, previous, move):
    P, w = _random_votes(n, seed)
    kwargs = {
        "max_position": 4.0,
        "threshold": threshold,
        "previous": previous,
        "price": 250.0,
        "move": move,
        "costs": COSTS,
    }
    np.testing.assert_allclose(
        _values(P, w, **kwargs), _reference_values(P, w, **kwargs), rtol=1e-12, atol=1e-12
    )


def test_trading_coalition_values_grand_coalition_is_actual_step_pnl_with_costs():
    P = np.array([[0.1, 0.2, 0.7], [0.2, 0.5, 0.3], [0.6, 0.3, 0.1]])
    w = np.array([0.5, 0.3, 0.2])
    previous, price, move = 1.0, 100.0, 2.5
    target = ensemble_target(
        P, w, max_position=10.0, confidence_threshold=-1.0, previous_position=previous
    )
    # Independent arithmetic for the actual ensemble.
    p_bear = 0.5 * 0.1 + 0.3 * 0.2 + 0.2 * 0.6
    p_bull = 0.5 * 0.7 + 0.3 * 0.3 + 0.2 * 0.1
    assert target == pytest.approx(10.0 * (p_bull - p_bear), rel=1e-14)
    traded = abs(target - previous)
    costs = traded * price * (2.0 + 1.5) / 10_000 + traded * 0.01
    expected = target * move - costs
    v = _values(
        P,
        w,
        max_position=10.0,
        threshold=-1.0,
        previous=previous,
        price=price,
        move=move,
        costs=COSTS,
    )
    assert v[-1] == pytest.approx(expected, rel=1e-13)
    assert v[0] == 0.0
    free = _values(
        P,
        w,
        max_position=10.0,
        threshold=-1.0,
        previous=previous,
        price=price,
        move=move,
        costs={},
    )
    assert free[-1] - v[-1] == pytest.approx(costs, rel=1e-12)


def test_trading_coalition_values_low_confidence_holds_previous_position():
    P = np.array([[0.34, 0.33, 0.33], [0.33, 0.34, 0.33]])
    w = np.array([0.5, 0.5])
    v = _values(
        P, w, max_position=10.0, threshold=0.5, previous=3.0, price=100.0, move=2.0, costs=COSTS
    )
    # The grand coalition is unsure (confidence < 0.5): hold 3 units, no trade, no cost.
    assert v[-1] == pytest.approx(3.0 * 2.0, rel=1e-15)


def test_trading_coalition_values_empty_coalition_is_zero_with_open_position():
    P, w = _random_votes(4, 1)
    v = _values(
        P, w, max_position=5.0, threshold=0.0, previous=-2.0, price=100.0, move=1.0, costs=COSTS
    )
    assert v[0] == 0.0
    unit = unit_trading_cost(100.0, **COSTS)
    # Relative mode subtracts pnl(∅) = -unit_cost |previous| (flattening) everywhere.
    relative = _values(
        P,
        w,
        max_position=5.0,
        threshold=0.0,
        previous=-2.0,
        price=100.0,
        move=1.0,
        costs=COSTS,
        relative_to_empty=True,
    )
    assert relative[0] == 0.0
    np.testing.assert_allclose(relative[1:], v[1:] + 2.0 * unit, rtol=1e-13)


def test_trading_coalition_values_single_agent_gets_whole_pnl():
    P = np.array([[0.05, 0.15, 0.8]])
    v = _values(
        P,
        np.array([1.0]),
        max_position=2.0,
        threshold=0.0,
        previous=0.0,
        price=50.0,
        move=-1.0,
        costs=COSTS,
    )
    expected = _reference_pnl(
        P,
        [1.0],
        [True],
        max_position=2.0,
        threshold=0.0,
        previous=0.0,
        price=50.0,
        move=-1.0,
        costs=COSTS,
    )
    assert v.shape == (2,)
    assert v[0] == 0.0
    assert v[1] == pytest.approx(expected, rel=1e-13)
    np.testing.assert_allclose(shapley_exact(v), [expected], rtol=1e-13)


def test_trading_value_function_equals_coalition_table():
    P, w = _random_votes(7, 9)
    kwargs = {
        "max_position": 3.0,
        "confidence_threshold": 0.1,
        "previous_position": 0.7,
        "price": 80.0,
        "price_change": 0.4,
        **COSTS,
    }
    table = trading_coalition_values(P, w, **kwargs)
    function = trading_value_function(P, w, **kwargs)
    # The same sums in the same order: identical floating-point numbers.
    np.testing.assert_array_equal(function(coalition_masks(7)), table)
    relative = trading_coalition_values(P, w, relative_to_empty=True, **kwargs)
    relative_function = trading_value_function(P, w, relative_to_empty=True, **kwargs)
    np.testing.assert_array_equal(relative_function(coalition_masks(7)), relative)


def test_trading_value_function_monte_carlo_matches_exact_shapley():
    P, w = _random_votes(10, 4)
    kwargs = {
        "max_position": 3.0,
        "confidence_threshold": -1.0,
        "previous_position": 0.0,
        "price": 80.0,
        "price_change": 0.4,
        **COSTS,
    }
    exact = shapley_exact(trading_coalition_values(P, w, **kwargs))
    phi, stderr = shapley_monte_carlo(
        trading_value_function(P, w, **kwargs), 10, 2000, np.random.default_rng(3)
    )
    assert np.all(np.abs(phi - exact) <= 4.0 * stderr + 1e-12)


def test_shapley_values_over_backtest_add_up_to_strategy_pnl():
    """Σ_t Σ_i φ_i(t) equals the strategy's P&L, computed by a separate position loop."""
    rng = np.random.default_rng(21)
    n, steps = 3, 60
    prices = 100.0 + np.cumsum(rng.normal(0.0, 1.0, steps + 1))
    weights = np.full(n, 1.0 / n)
    shapley_total = 0.0
    position = 0.0
    for t in range(steps):
        P = rng.dirichlet(np.ones(3) * 0.7, size=n)
        v = trading_coalition_values(
            P,
            weights,
            max_position=10.0,
            confidence_threshold=-0.2,
            previous_position=position,
            price=prices[t],
            price_change=prices[t + 1] - prices[t],
            **COSTS,
        )
        shapley_total += shapley_exact(v).sum()
        position = ensemble_target(
            P, weights, max_position=10.0, confidence_threshold=-0.2, previous_position=position
        )

    # Replay: cash and position accounting, marked to market at the end.
    rng = np.random.default_rng(21)
    rng.normal(0.0, 1.0, steps + 1)
    cash, held = 0.0, 0.0
    for t in range(steps):
        P = rng.dirichlet(np.ones(3) * 0.7, size=n)
        target = ensemble_target(
            P, weights, max_position=10.0, confidence_threshold=-0.2, previous_position=held
        )
        traded = target - held
        cash -= traded * prices[t] + abs(traded) * unit_trading_cost(prices[t], **COSTS)
        held = target
    equity = cash + held * prices[-1]
    assert shapley_total == pytest.approx(equity, rel=1e-10, abs=1e-10)


def test_ensemble_helpers_compute_probabilities_and_confidence():
    P = np.array([[0.2, 0.3, 0.5], [0.4, 0.4, 0.2]])
    w = np.array([0.25, 0.75])
    p = ensemble_probabilities(P, w)
    np.testing.assert_allclose(p, [0.35, 0.375, 0.275], rtol=1e-14)
    entropy = -sum(x * math.log(x) for x in p)
    assert ensemble_confidence(p) == pytest.approx(0.375 - entropy, rel=1e-14)
    assert ensemble_confidence(np.array([0.0, 1.0, 0.0])) == 1.0


@pytest.mark.parametrize(
    ("P", "w", "pattern"),
    [
        (np.full((2, 2), 0.5), np.array([0.5, 0.5]), r"shape \(n, 3\)"),
        (np.full((2, 3), 1 / 3), np.array([0.6, 0.6]), "weights must sum to 1"),
        (np.full((2, 3), 1 / 3), np.array([1.5, -0.5]), "weights must be finite and >= 0"),
        (
            np.array([[0.5, 0.5, 0.5], [0.2, 0.3, 0.5]]),
            np.array([0.5, 0.5]),
            r"probabilities\[0\] must sum to 1",
        ),
        (np.array([[np.nan, 0.5, 0.5], [0.2, 0.3, 0.5]]), np.array([0.5, 0.5]), "finite"),
    ],
)
def test_trading_coalition_values_invalid_votes_raise(P, w, pattern):
    with pytest.raises(ValueError, match=pattern):
        trading_coalition_values(
            P,
            w,
            max_position=1.0,
            confidence_threshold=0.0,
            previous_position=0.0,
            price=1.0,
            price_change=0.0,
        )


def test_trading_coalition_values_nan_price_change_raises():
    P, w = _random_votes(2, 0)
    with pytest.raises(ValueError, match="price_change must be a finite number, got nan"):
        trading_coalition_values(
            P,
            w,
            max_position=1.0,
            confidence_threshold=0.0,
            previous_position=0.0,
            price=1.0,
            price_change=math.nan,
        )
