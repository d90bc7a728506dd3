"""Shapley values: axioms, brute-force references and the Monte Carlo estimator."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies.meta.shapley import (
    coalition_masks,
    default_permutations,
    shapley_exact,
    shapley_monte_carlo,
    shapley_monte_carlo_details,
    shapley_size_weights,
)

seeds = st.integers(0, 2**32 - 1)


def _random_game(n, seed, *, zero_empty=False):
    v = np.random.default_rng(seed).normal(size=1 << n) * 10.0
    if zero_empty:
        v[0] = 0.0
    return v


def _shapley_by_orderings(v, n):
    """Average marginal contribution over all n! orderings (itertools.permutations)."""
    phi = [0.0] * n
    orderings = 0
    for order in itertools.permutations(range(n)):
        coalition = 0
        for agent in order:
            phi[agent] += v[coalition | (1 << agent)] - v[coalition]
            coalition |= 1 << agent
        orderings += 1
    return np.array(phi) / orderings


def _swap_bits(s, i, j):
    bit_i, bit_j = (s >> i) & 1, (s >> j) & 1
    if bit_i != bit_j:
        s ^= (1 << i) | (1 << j)
    return s


def _tolerance(*games):
    return 1e-11 * max(1.0, *(float(np.abs(g).max()) for g in games))


def test_coalition_masks_four_agents_rows_follow_bitmask():
    masks = coalition_masks(4)
    assert masks.shape == (16, 4)
    assert masks.dtype == bool
    for s in range(16):
        assert [bool(s >> i & 1) for i in range(4)] == masks[s].tolist()


def test_shapley_size_weights_match_factorial_formula():
    for n in range(1, 12):
        weights = shapley_size_weights(n)
        expected = [
            math.factorial(k) * math.factorial(n - k - 1) / math.factorial(n) for k in range(n)
        ]
        np.testing.assert_allclose(weights, expected, rtol=1e-14)
        # Each agent's weights over all coalitions without it sum to 1.
        assert sum(math.comb(n - 1, k) * weights[k] for k in range(n)) == pytest.approx(1.0)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 7), seed=seeds)
def test_shapley_exact_random_game_equals_average_over_all_orderings(n, seed):
    v = _random_game(n, seed)
    np.testing.assert_allclose(shapley_exact(v), _shapley_by_orderings(v, n), rtol=0, atol=1e-10)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 10), seed=seeds)
def test_shapley_exact_random_game_is_efficient(n, seed):
    v = _random_game(n, seed)
    assert shapley_exact(v).sum() == pytest.approx(v[-1] - v[0], abs=_tolerance(v))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 10), seed=seeds, data=st.data())
def test_shapley_exact_symmetric_agents_get_equal_values(n, seed, data):
    i = data.draw(st.integers(0, n - 1))
    j = data.draw(st.integers(0, n - 1).filter(lambda k: k != i))
    base = _random_game(n, seed)
    # v(S) + v(S with i and j swapped) is symmetric in i and j.
    swapped = np.array([base[_swap_bits(s, i, j)] for s in range(1 << n)])
    v = base + swapped
    phi = shapley_exact(v)
    assert phi[i] == pytest.approx(phi[j], abs=_tolerance(v))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 10), seed=seeds, data=st.data())
def test_shapley_exact_null_player_gets_zero(n, seed, data):
    null = data.draw(st.integers(0, n - 1))
    base = _random_game(n, seed)
    # v(S) depends only on S without the null agent.
    v = np.array([base[s & ~(1 << null)] for s in range(1 << n)])
    phi = shapley_exact(v)
    assert phi[null] == pytest.approx(0.0, abs=_tolerance(v))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 10), seed_a=seeds, seed_b=seeds, scale=st.floats(-3.0, 3.0))
def test_shapley_exact_sum_of_games_is_sum_of_values(n, seed_a, seed_b, scale):
    a = _random_game(n, seed_a)
    b = _random_game(n, seed_b)
    np.testing.assert_allclose(
        shapley_exact(a + scale * b),
        shapley_exact(a) + scale * shapley_exact(b),
        rtol=0,
        atol=_tolerance(a, scale * b) * 10,
    )


def test_shapley_exact_additive_game_returns_each_agents_own_value():
    own = np.array([3.0, -1.5, 0.25, 7.0, 0.0])
    v = coalition_masks(5).astype(float) @ own
    np.testing.assert_allclose(shapley_exact(v), own, atol=1e-12)


def test_shapley_exact_sixteen_agents_is_efficient():
    v = _random_game(16, 3)
    assert shapley_exact(v).sum() == pytest.approx(v[-1] - v[0], abs=1e-8)


def test_shapley_exact_single_agent_gets_grand_coalition_value():
    np.testing.assert_array_equal(shapley_exact(np.array([0.5, 2.0])), [1.5])


def test_shapley_exact_nan_value_raises_naming_coalition():
    v = np.zeros(8)
    v[5] = math.nan
    with pytest.raises(ValueError, match=r"v\[5\] \(coalition bitmask 5\) must be finite"):
        shapley_exact(v)


@pytest.mark.parametrize("length", [0, 1, 3, 6])
def test_shapley_exact_length_not_power_of_two_raises(length):
    with pytest.raises(ValueError, match="length 2"):
        shapley_exact(np.zeros(length))


def test_shapley_exact_more_than_sixteen_agents_raises():
    with pytest.raises(ValueError, match="at most 16 agents"):
        shapley_exact(np.zeros(1 << 17))


# --------------------------------------------------------------------------- Monte Carlo


def test_default_permutations_is_even_and_grows_like_n_log_n():
    assert default_permutations(1) == 100
    assert default_permutations(3) == 100
    assert default_permutations(50) == 2 * math.ceil(5 * 50 * math.log(50))
    for n in range(1, 200):
        count = default_permutations(n)
        assert count % 2 == 0
        assert count >= max(100, 10 * n * math.log(n))


def test_shapley_monte_carlo_three_sigma_interval_covers_exact_value_in_99_percent():
    n, trials, permutations = 6, 200, 200
    v = _random_game(n, 11)
    exact = shapley_exact(v)
    covered = 0
    for trial in range(trials):
        phi, stderr = shapley_monte_carlo(v, n, permutations, np.random.default_rng(trial))
        covered += int(np.sum(np.abs(phi - exact) <= 3.0 * stderr + 1e-12))
    assert covered / (trials * n) >= 0.99


def test_shapley_monte_carlo_four_times_permutations_halves_rms_error():
    n, trials = 6, 200
    v = _random_game(n, 12)
    exact = shapley_exact(v)

    def rms(permutations, offset):
        errors = [
            shapley_monte_carlo(v, n, permutations, np.random.default_rng(offset + t))[0] - exact
            for t in range(trials)
        ]
        return math.sqrt(np.mean(np.square(errors)))

    ratio = rms(100, 0) / rms(400, 10_000)
    assert 1.7 < ratio < 2.3


def test_shapley_monte_carlo_estimates_are_efficient_per_draw():
    v = _random_game(9, 5)
    phi, _ = shapley_monte_carlo(v, 9, 20, np.random.default_rng(0))
    assert phi.sum() == pytest.approx(v[-1] - v[0], abs=1e-10)


def test_shapley_monte_carlo_callable_equals_array_with_same_generator():
    n = 8
    v = _random_game(n, 6)
    bits = 1 << np.arange(n)

    def value(masks):
        return v[masks.astype(np.int64) @ bits]

    from_array = shapley_monte_carlo(v, n, 60, np.random.default_rng(4))
    from_callable = shapley_monte_carlo(value, n, 60, np.random.default_rng(4))
    np.testing.assert_array_equal(from_array[0], from_callable[0])
    np.testing.assert_array_equal(from_array[1], from_callable[1])


def test_shapley_monte_carlo_large_additive_game_is_exact_with_zero_stderr():
    n = 60
    own = np.random.default_rng(2).normal(size=n)

    def value(masks):
        return masks @ own

    phi, stderr, empty, full, evaluations = shapley_monte_carlo_details(
        value, n, 8, np.random.default_rng(0)
    )
    np.testing.assert_allclose(phi, own, atol=1e-12)
    np.testing.assert_allclose(stderr, 0.0, atol=1e-12)
    assert (empty, evaluations) == (0.0, 2 + 8 * (n - 1))
    assert full == pytest.approx(own.sum())


def test_shapley_monte_carlo_single_agent_is_exact():
    phi, stderr = shapley_monte_carlo(np.array([1.0, 4.0]), 1, None, np.random.default_rng(0))
    np.testing.assert_array_equal(phi, [3.0])
    np.testing.assert_array_equal(stderr, [0.0])


@pytest.mark.parametrize("permutations", [0, 2, 3, 101])
def test_shapley_monte_carlo_bad_permutation_count_raises(permutations):
    with pytest.raises(ValueError, match="permutations must be an even integer >= 4"):
        shapley_monte_carlo(np.zeros(8), 3, permutations, np.random.default_rng(0))


def test_shapley_monte_carlo_missing_generator_raises():
    with pytest.raises(ValueError, match=r"rng must be a numpy\.random\.Generator"):
        shapley_monte_carlo(np.zeros(8), 3, 10, None)


def test_shapley_monte_carlo_nan_game_raises():
    v = np.zeros(8)
    v[3] = math.nan
    with pytest.raises(ValueError, match="must be finite"):
        shapley_monte_carlo(v, 3, 10, np.random.default_rng(0))
