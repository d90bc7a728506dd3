"""LVN and volume-profile skew against numpy / scipy references."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indicators.core import atr_nb
from indicators.lvn import lvn_nb, profile_skew_nb
from tests.indicators._data import gbm_bars
from tests.indicators._oracles import lvn_reference, profile_skew_reference

DEFAULTS = {
    "window": 48,
    "bin_width": 0.0,
    "atr_fraction": 0.1,
    "max_bins": 200,
    "smoothing": 1.0,
    "threshold": 0.3,
    "min_prominence": 0.25,
    "edge_bins": 2,
}


def _lvn(high, low, close, volume, atr, **kw):
    p = {**DEFAULTS, **kw}
    return lvn_nb(
        high,
        low,
        close,
        volume,
        atr,
        p["window"],
        float(p["bin_width"]),
        float(p["atr_fraction"]),
        p["max_bins"],
        float(p["smoothing"]),
        float(p["threshold"]),
        float(p["min_prominence"]),
        p["edge_bins"],
    )


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    window=st.integers(5, 48),
    bin_width=st.sampled_from([0.05, 0.1, 0.2]),
    smoothing=st.sampled_from([0.0, 0.7, 1.0, 2.5]),
    threshold=st.sampled_from([0.3, 0.6, 1.0]),
    prominence=st.sampled_from([0.0, 0.25, 0.5]),
    zero_volume=st.booleans(),
)
def test_lvn_fixed_bins_matches_numpy_scipy_reference(
    seed, window, bin_width, smoothing, threshold, prominence, zero_volume
):
    _, high, low, close, volume, _ = gbm_bars(90, seed, sigma=0.006)
    if zero_volume:
        volume[::3] = 0.0
    atr = atr_nb(high, low, close, 14)
    kw = {
        "window": window,
        "bin_width": bin_width,
        "smoothing": smoothing,
        "threshold": threshold,
        "min_prominence": prominence,
    }
    dist, strength, present = _lvn(high, low, close, volume, atr, **kw)
    for t in range(90):
        ref = lvn_reference(high, low, close, volume, atr, t, **{**DEFAULTS, **kw})
        got = (dist[t], strength[t], present[t])
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12, equal_nan=True)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_lvn_atr_bins_matches_reference(seed):
    _, high, low, close, volume, _ = gbm_bars(120, seed, sigma=0.006)
    atr = atr_nb(high, low, close, 14)
    dist, strength, present = _lvn(high, low, close, volume, atr)
    assert np.isnan(dist[:47]).all() and np.isnan(strength[:47]).all()
    assert np.isfinite(strength[47:]).all()
    for t in range(40, 120):
        ref = lvn_reference(high, low, close, volume, atr, t, **DEFAULTS)
        np.testing.assert_allclose(
            (dist[t], strength[t], present[t]), ref, rtol=1e-9, atol=1e-12, equal_nan=True
        )


BIN_VOLUMES = [5.0, 20.0, 60.0, 100.0, 60.0, 20.0, 3.0, 25.0, 70.0, 90.0, 30.0]


def _two_node_profile():
    """Unit bins over [100, 111]: HVNs at bins 3 and 9, a valley at bin 6 (106.5).

    One point bar per bin centre carries that bin's volume, one bar spanning the whole
    range adds 1 to every bin, and zero-volume bars (ignored) pad the window to 48.
    """
    highs = [111.0] + [100.5 + j for j in range(11)]
    lows = [100.0] + [100.5 + j for j in range(11)]
    vols = [11.0, *BIN_VOLUMES]
    while len(highs) < 48:
        highs.insert(0, 105.0)
        lows.insert(0, 105.0)
        vols.insert(0, 0.0)
    return np.array(highs), np.array(lows), np.array(vols)


def test_lvn_two_hvns_and_a_valley_gives_known_strength():
    high, low, volume = _two_node_profile()
    close = np.full(high.size, 104.2)
    atr = np.full(high.size, 2.0)
    dist, strength, present = _lvn(
        high, low, close, volume, atr, bin_width=1.0, smoothing=0.0, threshold=0.3
    )
    t = high.size - 1
    assert present[t] == 1.0
    assert strength[t] == pytest.approx(1 - (3.0 + 1.0) / (90.0 + 1.0), rel=1e-12)
    assert dist[t] == pytest.approx((104.2 - 106.5) / 2.0, rel=1e-12)
    # a stricter prominence removes it
    _, strength, present = _lvn(
        high, low, close, volume, atr, bin_width=1.0, smoothing=0.0, min_prominence=0.99
    )
    assert present[t] == 0.0 and strength[t] == 0.0


def test_lvn_flat_profile_gives_no_lvn_nan_distance_zero_strength():
    n = 60
    high = np.full(n, 110.0)
    low = np.full(n, 100.0)
    close = np.full(n, 105.0)
    volume = np.full(n, 50.0)
    atr = np.full(n, 1.0)
    dist, strength, present = _lvn(high, low, close, volume, atr)
    assert np.isnan(dist[47:]).all()
    assert (strength[47:] == 0.0).all() and (present[47:] == 0.0).all()


def test_lvn_constant_prices_and_zero_volume_documented_values():
    n = 60
    p = np.full(n, 10.0)
    dist, strength, present = _lvn(p, p, p, np.full(n, 5.0), np.zeros(n))
    assert np.isnan(dist).all() and (strength[47:] == 0.0).all()
    dist, strength, present = _lvn(p * 1.01, p, p, np.zeros(n), np.ones(n))
    assert np.isnan(dist).all() and np.isnan(strength).all() and np.isnan(present).all()


def test_lvn_zero_atr_with_lvn_gives_nan_distance_positive_strength():
    high, low, volume = _two_node_profile()
    close = np.full(high.size, 104.2)
    dist, strength, _ = _lvn(
        high, low, close, volume, np.zeros(high.size), bin_width=1.0, smoothing=0.0
    )
    assert np.isnan(dist[-1]) and strength[-1] > 0


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), window=st.integers(2, 48), point_bars=st.booleans())
def test_profile_skew_random_bars_matches_raw_moment_reference(seed, window, point_bars):
    _, high, low, _, volume, _ = gbm_bars(80, seed)
    if point_bars:
        high[::4] = low[::4]
    volume[::7] = 0.0
    ours = profile_skew_nb(high, low, volume, window)
    ref = np.array([profile_skew_reference(high, low, volume, t, window) for t in range(80)])
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-8, equal_nan=True)
    assert np.isnan(ours[: window - 1]).all()


def test_profile_skew_point_masses_match_weighted_sample_skewness():
    prices = np.array([10.0, 10.0, 11.0, 13.0, 10.5, 12.0])
    volume = np.array([3.0, 1.0, 2.0, 1.0, 4.0, 2.0])
    ours = profile_skew_nb(prices, prices, volume, 6)[-1]
    sample = np.repeat(prices, volume.astype(int))
    z = sample - sample.mean()
    expected = np.mean(z**3) / np.mean(z**2) ** 1.5
    assert ours == pytest.approx(expected, rel=1e-12)


def test_profile_skew_constant_prices_or_no_volume_gives_nan():
    p = np.full(50, 4.0)
    assert np.isnan(profile_skew_nb(p, p, np.ones(50), 48)).all()
    assert np.isnan(profile_skew_nb(p * 1.1, p, np.zeros(50), 48)).all()
