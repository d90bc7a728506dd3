"""Share prices (simple and compound forms) and their rolling volatility."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies.meta.share_price import (
    RollingVolatility,
    compound_share_price_factors,
    rolling_log_volatility,
    simple_share_price_factors,
    update_share_prices,
)


def test_simple_factors_follow_normalised_deviation_formula():
    phi = np.array([3.0, -1.0, 0.5, 2.5])
    mean = sum(phi) / 4
    sigma = math.sqrt(sum((x - mean) ** 2 for x in phi) / 4)
    expected = [1.0 + 0.1 * (x - mean) / sigma for x in phi]
    np.testing.assert_allclose(simple_share_price_factors(phi, 0.1), expected, rtol=1e-14)


@pytest.mark.parametrize("phi", [[0.1, 0.1, 0.1], [0.0, 0.0], [-7.3, -7.3, -7.3, -7.3, -7.3]])
def test_simple_factors_zero_dispersion_skip_update(phi):
    # Equal φ: σ_φ is 0 or rounding noise of the mean; every price stays put.
    np.testing.assert_array_equal(simple_share_price_factors(np.array(phi), 0.5), 1.0)


def test_simple_factors_single_agent_never_moves():
    np.testing.assert_array_equal(simple_share_price_factors(np.array([12.0]), 0.5), [1.0])


def test_simple_factors_large_step_are_floored():
    factors = simple_share_price_factors(np.array([1.0, 0.0, -10.0]), 5.0, floor=1e-3)
    assert factors.min() == 1e-3
    assert (factors > 0).all()


def test_compound_factors_follow_ratio_to_mean():
    phi = np.array([2.0, 1.0, 3.0])
    np.testing.assert_allclose(compound_share_price_factors(phi), [2.0, 1.5, 2.5], rtol=1e-15)


def test_compound_factors_negative_mean_use_absolute_mean_and_stay_monotone():
    phi = np.array([1.0, -2.0, -5.0])  # φ̄ = -2
    factors = compound_share_price_factors(phi, floor=1e-4)
    np.testing.assert_allclose(factors, [1.5, 1e-4, 1e-4], rtol=1e-15)
    phi = np.array([-1.0, -1.5, -0.5])  # φ̄ = -1: factors 1 + φ_i
    np.testing.assert_allclose(compound_share_price_factors(phi), [1e-6, 1e-6, 0.5], rtol=1e-15)


@pytest.mark.parametrize("phi", [[1.0, -1.0], [0.0, 0.0, 0.0], [1e-15, 2.0, -2.0]])
def test_compound_factors_mean_near_zero_skip_update(phi):
    np.testing.assert_array_equal(compound_share_price_factors(np.array(phi)), 1.0)


def test_compound_prices_equal_initial_times_exp_of_summed_logs():
    rng = np.random.default_rng(3)
    prices = np.ones(4)
    logs = np.zeros(4)
    for _ in range(50):
        phi = rng.normal(0.5, 1.0, 4)
        factors = compound_share_price_factors(phi, floor=1e-3)
        logs += np.log(factors)
        prices = update_share_prices(prices, phi, form="compound", floor=1e-3)
    np.testing.assert_allclose(prices, np.exp(logs), rtol=1e-12)


def test_update_share_prices_rejects_unknown_form_and_nan():
    with pytest.raises(ValueError, match="form must be"):
        update_share_prices(np.ones(2), np.zeros(2), form="log")
    with pytest.raises(ValueError, match="phi must be finite"):
        update_share_prices(np.ones(2), np.array([0.0, math.nan]))


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 4),
    steps=st.integers(1, 40),
    window=st.integers(2, 12),
    periods=st.floats(0.5, 10_000.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_rolling_volatility_streaming_equals_batch(n, steps, window, periods, seed):
    rng = np.random.default_rng(seed)
    prices = np.exp(np.cumsum(rng.normal(0.0, 0.05, (steps + 1, n)), axis=0))
    batch = rolling_log_volatility(prices, window, periods)
    stream = RollingVolatility(prices[0], window, periods)
    for t in range(1, steps + 1):
        np.testing.assert_allclose(stream.update(prices[t]), batch[t], rtol=1e-12, atol=1e-15)


def test_rolling_volatility_fewer_than_two_changes_is_zero_and_scales_with_sqrt_periods():
    stream = RollingVolatility(np.ones(2), window=5, periods_per_unit=16.0)
    np.testing.assert_array_equal(stream.update(np.array([1.1, 0.9])), [0.0, 0.0])
    sigma = stream.update(np.array([1.0, 1.0]))
    changes = np.log(np.array([[1.1, 0.9], [1.0 / 1.1, 1.0 / 0.9]]))
    np.testing.assert_allclose(sigma, changes.std(axis=0, ddof=1) * 4.0, rtol=1e-14)
