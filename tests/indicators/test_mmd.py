"""MMD²_u against numpy double sums; bandwidth against scipy; permutation test."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import pdist

from indicators.mmd import (
    median_pairwise_distance_nb,
    mmd2_unbiased_nb,
    mmd_features_nb,
    mmd_permutation_test_nb,
    mmd_score_nb,
    mmd_test,
)
from tests.indicators._data import gbm_bars
from tests.indicators._oracles import mmd2_double_sum, rolling_mmd_reference


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    m=st.integers(2, 30),
    n=st.integers(2, 12),
    refresh=st.integers(1, 15),
    nan_at=st.one_of(st.none(), st.integers(1, 119)),
)
def test_rolling_mmd_random_bars_matches_double_sum_reference(seed, m, n, refresh, nan_at):
    _, high, low, close, _, _ = gbm_bars(120, seed)
    if nan_at is not None:
        close[nan_at] = np.nan
    feats = mmd_features_nb(high, low, close)
    ours = mmd_score_nb(feats, m, n, refresh)
    ref = rolling_mmd_reference(feats, m, n, refresh)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
    ok = ~np.isnan(ref)
    np.testing.assert_allclose(ours[ok], ref[ok], rtol=1e-9, atol=1e-11)


def test_rolling_mmd_defaults_first_valid_index_288():
    _, high, low, close, _, _ = gbm_bars(400, 8)
    out = mmd_score_nb(mmd_features_nb(high, low, close), 240, 48, 48)
    assert np.isnan(out[:288]).all() and np.isfinite(out[288:]).all()
    ref = rolling_mmd_reference(mmd_features_nb(high, low, close)[:340], 240, 48, 48)
    np.testing.assert_allclose(out[288:340], ref[288:340], rtol=1e-9, atol=1e-11)


def test_rolling_mmd_constant_prices_gives_zero():
    p = np.full(80, 5.0)
    out = mmd_score_nb(mmd_features_nb(p, p, p), 20, 8, 5)
    assert np.isnan(out[:28]).all()
    np.testing.assert_allclose(out[28:], 0.0, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), m=st.integers(2, 40), n=st.integers(2, 40))
def test_mmd2_unbiased_random_samples_matches_double_sum(seed, m, n):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, 3))
    Y = rng.normal(0.5, 2.0, size=(n, 3))
    sigma = float(rng.uniform(0.3, 3.0))
    assert mmd2_unbiased_nb(X, Y, sigma) == pytest.approx(mmd2_double_sum(X, Y, sigma), abs=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), size=st.integers(2, 80))
def test_median_pairwise_distance_random_points_matches_scipy(seed, size):
    Z = np.random.default_rng(seed).normal(size=(size, 3))
    assert median_pairwise_distance_nb(Z) == pytest.approx(np.median(pdist(Z)), rel=1e-12)


def test_mmd_permutation_test_same_seed_gives_same_p_value():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(60, 3)), rng.normal(size=(20, 3))
    a = mmd_permutation_test_nb(X, Y, 1.0, 99, 7, 1)
    b = mmd_permutation_test_nb(X, Y, 1.0, 99, 7, 1)
    assert a == b
    assert a[0] == pytest.approx(mmd2_double_sum(X, Y, 1.0), abs=1e-12)
    assert 0.0 < a[1] <= 1.0


def test_mmd_permutation_test_variance_shift_gives_small_p_value():
    rng = np.random.default_rng(1)
    X = rng.normal(0.0, 1.0, size=(120, 1))
    Y = rng.normal(0.0, 4.0, size=(48, 1))
    stat, p_value, _ = mmd_test(X, Y, n_permutations=199, seed=3)
    assert stat > 0 and p_value <= 0.01
    _, p_block, _ = mmd_test(X, Y, n_permutations=199, seed=3, block_size=8)
    assert p_block <= 0.05


def test_mmd_permutation_test_iid_null_p_values_not_concentrated_near_zero():
    rng = np.random.default_rng(2)
    p_values = []
    for i in range(40):
        X = rng.normal(size=(40, 2))
        Y = rng.normal(size=(16, 2))
        p_values.append(mmd_test(X, Y, n_permutations=49, seed=i)[1])
    p_values = np.array(p_values)
    assert np.mean(p_values <= 0.05) <= 0.2
    assert 0.3 <= np.mean(p_values) <= 0.7
