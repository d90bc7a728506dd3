"""MLMI against a brute-force, list-based transcription of the Pine algorithm."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indicators.features import build_features
from indicators.mlmi import (
    mlmi_bar_nb,
    mlmi_features_nb,
    mlmi_query_nb,
    mlmi_reindex_nb,
    mlmi_store_new_nb,
)
from indicators.mlmi_bands import mlmi_bands
from indicators.params import IndicatorParams
from indicators.streaming import FeatureState
from tests.indicators._data import gbm_bars
from tests.indicators._oracles import mlmi_bands_reference, mlmi_reference


def _assert_same(ours, ref):
    for a, b in zip(ours, ref, strict=True):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        ok = ~np.isnan(b)
        np.testing.assert_allclose(a[ok], b[ok], rtol=1e-12, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    k=st.integers(1, 12),
    window=st.integers(2, 20),
    store_first=st.booleans(),
    sigma=st.sampled_from([0.002, 0.01]),
)
def test_mlmi_small_k_matches_bruteforce_reference(seed, k, window, store_first, sigma):
    close = gbm_bars(260, seed, sigma=sigma)[3]
    ours = mlmi_features_nb(close, k, window, store_first)
    ref = mlmi_reference(list(close), k, window, store_first)
    _assert_same(ours, ref)


def test_mlmi_long_history_default_k_matches_reference():
    close = gbm_bars(3000, 11, sigma=0.003)[3]
    ours = mlmi_features_nb(close, 200, 20, True)
    ref = mlmi_reference(list(close), 200, 20, True)
    _assert_same(ours, ref)
    # the store outgrew k, so the kNN was local for part of the history
    assert np.nanmax(np.abs(ours[0])) <= 200


def test_mlmi_ties_on_quantised_prices_are_all_counted():
    # prices on a coarse grid create many identical (p1, p2) rows and equal distances
    rng = np.random.default_rng(2)
    close = 100 + np.round(np.cumsum(rng.choice([-1.0, 1.0], 1500)) / 4) * 4
    close = np.maximum(close, 10.0)
    for k in (3, 25):
        _assert_same(mlmi_features_nb(close, k, 20, True), mlmi_reference(list(close), k))


def test_mlmi_store_smaller_than_k_gives_running_label_sum():
    close = gbm_bars(400, 7)[3]
    pred, _, _ = mlmi_features_nb(close, 10_000, 20, True)
    ref_pred = mlmi_reference(list(close), 10_000)[0]
    np.testing.assert_array_equal(pred, ref_pred)
    valid = pred[~np.isnan(pred)]
    assert np.all(valid == np.round(valid))
    # labels are +-1 and a running sum changes by at most one label per bar
    assert np.all(np.abs(np.diff(valid)) <= 1)


def test_mlmi_defaults_first_valid_indices_39_and_58():
    close = gbm_bars(200, 1)[3]
    pred, pred_ma, signal = mlmi_features_nb(close, 200, 20, True)
    assert np.isnan(pred[:39]).all() and np.isfinite(pred[39:]).all()
    assert np.isnan(pred_ma[:58]).all() and np.isfinite(pred_ma[58:]).all()
    assert np.isnan(signal[:58]).all() and np.isin(signal[58:], [-1.0, 0.0, 1.0]).all()


def test_mlmi_constant_prices_gives_nan_free_finite_values():
    close = np.full(120, 3.0)
    pred, _, signal = mlmi_features_nb(close, 200, 20, True)
    # no crossover ever happens: only the sentinel (label 0) is in the store
    assert (pred[39:] == 0.0).all()
    assert (signal[58:] == 0.0).all()
    assert np.isnan(pred[:39]).all()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), cut=st.integers(1, 299), k=st.integers(1, 30))
def test_mlmi_prefix_series_gives_same_values(seed, cut, k):
    close = gbm_bars(300, seed)[3]
    full = mlmi_features_nb(close, k, 20, True)
    part = mlmi_features_nb(close[:cut].copy(), k, 20, True)
    for a, b in zip(full, part, strict=True):
        np.testing.assert_array_equal(a[:cut], b)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n_rows=st.integers(1, 3000),
    k=st.integers(1, 300),
    side=st.sampled_from([32, 64, 128, 1024]),
    coarse=st.booleans(),
    pending=st.integers(0, 400),
)
def test_mlmi_query_any_grid_resolution_matches_numpy_bruteforce(
    seed, n_rows, k, side, coarse, pending
):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.0, 100.0, size=(n_rows, 2))
    if coarse:  # many duplicate rows and equal distances
        p = np.round(p / 10.0) * 10.0
    prices = rng.uniform(1.0, 2.0, n_rows)
    rows, index, cell_start, meta = mlmi_store_new_nb(n_rows + 2)
    scratch = np.empty((3, n_rows + 2))
    # index the first rows only: the rest wait outside the index, as between reindexes
    indexed = n_rows - pending if pending < n_rows else 0
    for i in range(n_rows):
        if i == indexed:
            cell_start = mlmi_reindex_nb(rows, meta, index, side)
        mlmi_bar_nb(
            rows, index, cell_start, meta, p[i, 0], p[i, 1], prices[i], True, 1, True, scratch
        )
    store = rows[: n_rows + 1]
    for q in rng.uniform(-1.0, 101.0, size=(20, 2)):
        if coarse:
            q = np.round(q / 10.0) * 10.0
        d = np.sqrt((q[0] - store[:, 0]) ** 2 + (q[1] - store[:, 1]) ** 2)
        d_k = np.sort(d)[min(k, d.size) - 1]
        expected = store[d <= d_k, 3].sum()
        got = mlmi_query_nb(rows, index, cell_start, meta, q[0], q[1], k, scratch)
        assert got == expected


def test_mlmi_many_events_grid_refinement_streaming_equals_batch():
    rng = np.random.default_rng(5)
    t = np.arange(6000)
    close = 100 * np.exp(0.01 * np.sin(2 * np.pi * t / 9) + np.cumsum(rng.normal(0, 0.002, t.size)))
    params = IndicatorParams(mlmi_k=50)
    state = FeatureState(params, initial_capacity=2)
    ts = np.arange(t.size, dtype=np.int64) * 1_800_000_000_000
    rows = np.array([state.update(ts[i], c, c, c, c, 1.0) for i, c in enumerate(close)])
    assert state.mlmi_store_size > 32 * 32
    assert state.mlmi_grid_side >= 64  # the index was rebuilt on a finer grid
    pred, _, signal = mlmi_features_nb(close, 50, 20, True)
    np.testing.assert_array_equal(rows[:, 0], pred / 50)
    np.testing.assert_array_equal(rows[:, 1], signal)
    batch = build_features(close, close, close, close, np.ones(t.size), ts, params)
    np.testing.assert_allclose(rows, batch, rtol=1e-9, atol=1e-9, equal_nan=True)


def _assert_bands_equal(ours, ref, atol=1e-9):
    for name, a, b in zip(ours._fields, ours, ref, strict=True):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=name)
        ok = ~np.isnan(b)
        np.testing.assert_allclose(a[ok], b[ok], rtol=1e-9, atol=atol, err_msg=name)


@st.composite
def _pred_like(draw):
    """Integer label sums (a +-1 random walk) with constant runs and NaN runs."""
    n = draw(st.integers(1, 300))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    pred = np.cumsum(rng.choice([-1.0, 0.0, 1.0], n))
    for _ in range(draw(st.integers(0, 3))):  # constant runs
        a = int(rng.integers(0, n))
        pred[a : a + int(rng.integers(1, 60))] = pred[a]
    for _ in range(draw(st.integers(0, 3))):  # NaN runs (warm-up, NaN prices)
        a = int(rng.integers(0, n))
        pred[a : a + int(rng.integers(1, 15))] = np.nan
    return pred


@settings(max_examples=60, deadline=None)
@given(
    pred=_pred_like(),
    lookback=st.integers(1, 80),
    stdev_length=st.integers(1, 25),
    ema_length=st.integers(1, 25),
)
def test_mlmi_bands_random_series_with_nan_runs_matches_pandas_reference(
    pred, lookback, stdev_length, ema_length
):
    ours = mlmi_bands(pred, lookback, stdev_length, ema_length)
    ref = mlmi_bands_reference(pred, lookback, stdev_length, ema_length)
    _assert_bands_equal(ours, ref)


def test_mlmi_bands_defaults_first_valid_indices_2038_and_77():
    close = gbm_bars(2300, 13, sigma=0.003)[3]
    pred = mlmi_features_nb(close, 200, 20, True)[0]
    bands = mlmi_bands(pred)
    assert np.isnan(bands.upper[:2038]).all() and np.isfinite(bands.upper[2038:]).all()
    assert np.isnan(bands.lower[:2038]).all() and np.isfinite(bands.lower[2038:]).all()
    assert np.isnan(bands.width[:77]).all() and np.isfinite(bands.width[77:]).all()
    assert np.isnan(bands.upper_inner[:2038]).all()
    assert np.isfinite(bands.lower_inner[2038:]).all()
    assert bands.upper[2038] == np.max(pred[39:2039])
    assert bands.lower[2299] == np.min(pred[300:2300])
    np.testing.assert_allclose(bands.upper_inner, bands.upper - bands.width)
    np.testing.assert_allclose(bands.lower_inner, bands.lower + bands.width)
    _assert_bands_equal(bands, mlmi_bands_reference(pred))


def test_mlmi_bands_constant_series_gives_zero_width_not_nan():
    bands = mlmi_bands(np.full(60, 7.0), 30, 20, 20)
    assert np.isnan(bands.width[:38]).all() and (bands.width[38:] == 0.0).all()
    assert np.isnan(bands.upper[:29]).all() and (bands.upper[29:] == 7.0).all()
    assert (bands.lower[29:] == 7.0).all()
    assert (bands.upper_inner[38:] == 7.0).all() and (bands.lower_inner[38:] == 7.0).all()


def test_mlmi_bands_nan_in_window_gives_nan_never_zero():
    pred = np.arange(200, dtype=np.float64) % 17 - 8.0
    pred[100] = np.nan
    bands = mlmi_bands(pred, 50, 20, 20)
    # the extremes need 50 valid values after the NaN, the width 20 + 20 - 1
    assert np.isnan(bands.upper[100:150]).all() and np.isfinite(bands.upper[150:]).all()
    assert np.isnan(bands.width[100:139]).all() and np.isfinite(bands.width[139:]).all()
    assert np.isfinite(bands.width[38:100]).all()
    assert not np.any(bands.upper_inner[100:150] == 0.0)


def test_mlmi_bands_invalid_length_raises_value_error_naming_it():
    with pytest.raises(ValueError, match="lookback must be an integer >= 1"):
        mlmi_bands(np.zeros(10), 0)
    with pytest.raises(ValueError, match="ema_length"):
        mlmi_bands(np.zeros(10), 5, 5, 2.5)
    with pytest.raises(ValueError, match="1-D"):
        mlmi_bands(np.zeros((3, 3)))
