"""Target weights, smoothing and bubbles of the meta-investor."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies.meta.allocation import (
    bubble_coefficients,
    bubble_penalty,
    smooth_weights,
    softmax_weights,
    target_weights,
)


def test_target_weights_option_mode_are_proportional_to_option_values():
    np.testing.assert_allclose(target_weights(np.array([1.0, 3.0, 0.0])), [0.25, 0.75, 0.0])


def test_target_weights_all_option_values_zero_are_equal():
    np.testing.assert_array_equal(target_weights(np.zeros(4)), [0.25] * 4)


def test_target_weights_fixed_modes_ignore_option_values():
    np.testing.assert_array_equal(target_weights(np.array([5.0, 0.0]), mode="equal"), [0.5, 0.5])
    raw = np.array([0.0, math.log(3.0)])
    np.testing.assert_allclose(
        target_weights(np.zeros(2), mode="softmax", raw_weights=raw), [0.25, 0.75]
    )
    np.testing.assert_allclose(softmax_weights(np.array([1000.0, 1000.0])), [0.5, 0.5])


def test_target_weights_invalid_input_raises():
    with pytest.raises(ValueError, match="mode must be one of"):
        target_weights(np.ones(2), mode="learned")
    with pytest.raises(ValueError, match="option_values must be >= 0"):
        target_weights(np.array([1.0, -1.0]))


@settings(max_examples=50, deadline=None)
@given(
    n=st.integers(1, 8),
    eta=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32 - 1),
    steps=st.integers(1, 30),
)
def test_smooth_weights_repeated_steps_stay_on_simplex_and_follow_formula(n, eta, seed, steps):
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.ones(n))
    for _ in range(steps):
        target = rng.dirichlet(np.ones(n) * 0.3)
        expected = [(1.0 - eta) * a + eta * b for a, b in zip(w, target, strict=True)]
        w = smooth_weights(w, target, eta)
        assert (w >= 0.0).all()
        assert w.sum() == pytest.approx(1.0, abs=1e-14)
        np.testing.assert_allclose(w, expected, rtol=1e-12, atol=1e-15)


def test_smooth_weights_eta_at_bounds_keeps_weights_or_jumps_to_target():
    w = np.array([0.2, 0.8])
    target = np.array([0.6, 0.4])
    np.testing.assert_array_equal(smooth_weights(w, target, 0.0), w)
    np.testing.assert_allclose(smooth_weights(w, target, 1.0), target)
    with pytest.raises(ValueError, match="eta must lie in"):
        smooth_weights(w, target, 1.5)


def test_bubble_coefficients_ratio_zero_target_cases_and_cap():
    w = np.array([0.3, 0.3, 0.0, 0.4, 0.0])
    target = np.array([0.6, 0.2, 0.0, 0.0, 0.2])
    bubbles = bubble_coefficients(w, target, cap=50.0)
    np.testing.assert_allclose(bubbles, [0.5, 1.5, 1.0, 50.0, 0.0])
    assert bubble_coefficients(np.array([0.5, 0.5]), np.array([1e-9, 1.0 - 1e-9]))[0] == 100.0


def test_bubble_penalty_sums_squared_excess_over_threshold():
    bubbles = np.array([0.5, 1.2, 1.5, 3.0])
    expected = 2.0 * ((1.5 - 1.2) ** 2 + (3.0 - 1.2) ** 2)
    assert bubble_penalty(bubbles, beta=2.0) == pytest.approx(expected, rel=1e-14)
    assert bubble_penalty(bubbles, beta=1.0, threshold=5.0) == 0.0
