"""Elementary kernels against TA-Lib and against restarts on clean sub-series."""

from __future__ import annotations

import numpy as np
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as st

from indicators.core import (
    atr_nb,
    ema_nb,
    heikin_ashi_nb,
    kth_smallest_nb,
    order_pair_nb,
    rsi_nb,
    sanitize_bars_nb,
    sma_nb,
    wma_nb,
)
from tests.indicators._data import gbm_bars

SEEDS = st.integers(0, 2**31 - 1)
LENGTHS = st.integers(2, 30)


def _close(seed, n=200):
    return gbm_bars(n, seed)[3]


@settings(max_examples=30, deadline=None)
@given(seed=SEEDS, length=LENGTHS)
def test_rsi_random_walk_matches_talib(seed, length):
    close = _close(seed)
    ours = rsi_nb(close, length)
    ref = talib.RSI(close, timeperiod=length)
    assert np.isnan(ours[:length]).all()
    np.testing.assert_allclose(ours[length:], ref[length:], rtol=1e-9, atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(seed=SEEDS, length=LENGTHS)
def test_wma_random_walk_matches_talib(seed, length):
    close = _close(seed)
    ours = wma_nb(close, length)
    ref = talib.WMA(close, timeperiod=length)
    assert np.isnan(ours[: length - 1]).all()
    np.testing.assert_allclose(ours[length - 1 :], ref[length - 1 :], rtol=1e-10)


@settings(max_examples=30, deadline=None)
@given(seed=SEEDS, length=LENGTHS)
def test_ema_random_walk_matches_talib(seed, length):
    close = _close(seed)
    ours = ema_nb(close, length)
    ref = talib.EMA(close, timeperiod=length)
    assert np.isnan(ours[: length - 1]).all()
    np.testing.assert_allclose(ours[length - 1 :], ref[length - 1 :], rtol=1e-10)


@settings(max_examples=30, deadline=None)
@given(seed=SEEDS, length=LENGTHS)
def test_atr_random_walk_matches_talib(seed, length):
    _, high, low, close, _, _ = gbm_bars(200, seed)
    ours = atr_nb(high, low, close, length)
    ref = talib.ATR(high, low, close, timeperiod=length)
    assert np.isnan(ours[:length]).all()
    np.testing.assert_allclose(ours[length:], ref[length:], rtol=1e-10)


@settings(max_examples=30, deadline=None)
@given(seed=SEEDS, length=LENGTHS)
def test_sma_random_walk_matches_talib(seed, length):
    close = _close(seed)
    np.testing.assert_allclose(
        sma_nb(close, length)[length - 1 :],
        talib.SMA(close, timeperiod=length)[length - 1 :],
        rtol=1e-10,
    )


def test_rsi_constant_prices_gives_100():
    out = rsi_nb(np.full(40, 5.0), 14)
    assert np.isnan(out[:14]).all()
    assert (out[14:] == 100.0).all()


def test_rsi_only_falling_prices_gives_0():
    out = rsi_nb(np.linspace(10.0, 5.0, 30), 5)
    assert (out[5:] == 0.0).all()


@settings(max_examples=25, deadline=None)
@given(seed=SEEDS, length=st.integers(2, 20), cut=st.integers(1, 60), gap=st.integers(1, 5))
def test_recursive_kernels_after_nan_run_restart_as_on_fresh_series(seed, length, cut, gap):
    _, high, low, close, _, _ = gbm_bars(150, seed)
    x = close.copy()
    x[cut : cut + gap] = np.nan
    h, lo = high.copy(), low.copy()
    h[cut : cut + gap] = np.nan
    lo[cut : cut + gap] = np.nan
    start = cut + gap
    np.testing.assert_array_equal(rsi_nb(x, length)[start:], rsi_nb(x[start:], length))
    np.testing.assert_array_equal(ema_nb(x, length)[start:], ema_nb(x[start:], length))
    np.testing.assert_array_equal(
        atr_nb(h, lo, x, length)[start:], atr_nb(h[start:], lo[start:], x[start:], length)
    )
    assert np.isnan(rsi_nb(x, length)[cut : cut + gap]).all()


def test_wma_nan_in_window_gives_nan_for_length_bars():
    x = np.arange(1.0, 31.0)
    x[10] = np.nan
    out = wma_nb(x, 5)
    assert np.isnan(out[10:15]).all()
    assert np.isfinite(out[15:]).all()
    assert np.isfinite(out[4:10]).all()


def test_sanitize_bad_bars_become_nan_and_negative_volume_nan():
    o = np.array([1.0, np.nan, 1.0, 1.0, 1.0, 1.0])
    h = np.array([2.0, 2.0, np.inf, 2.0, 0.5, 2.0])
    lo = np.array([0.5, 0.5, 0.5, -1.0, 1.0, 0.5])
    c = np.array([1.5, 1.5, 1.5, 1.5, 1.5, 1.5])
    v = np.array([10.0, 10.0, 10.0, 10.0, 10.0, -3.0])
    oo, _hh, _ll, cc, vv = sanitize_bars_nb(o, h, lo, c, v)
    # bar 1 NaN open, bar 2 inf high, bar 3 negative low, bar 4 high < low
    assert np.isnan(cc[1:5]).all() and np.isnan(oo[1:5]).all()
    assert cc[0] == 1.5 and cc[5] == 1.5
    assert np.isnan(vv[5]) and vv[0] == 10.0


def test_heikin_ashi_first_bars_follow_definition():
    o = np.array([10.0, 11.0, 12.0])
    h = np.array([12.0, 13.0, 14.0])
    lo = np.array([9.0, 10.0, 11.0])
    c = np.array([11.0, 12.0, 13.0])
    ho, hh, hl, hc = heikin_ashi_nb(o, h, lo, c)
    assert hc[0] == pytest.approx(10.5)
    assert ho[0] == pytest.approx(10.5)
    assert ho[1] == pytest.approx((ho[0] + hc[0]) / 2)
    assert hc[1] == pytest.approx(11.5)
    assert hh[1] == pytest.approx(max(13.0, ho[1], hc[1]))
    assert hl[1] == pytest.approx(min(10.0, ho[1], hc[1]))


@settings(max_examples=30, deadline=None)
@given(
    values=st.lists(st.integers(-5, 5).map(float), min_size=2, max_size=300),
    data=st.data(),
)
def test_selection_kernels_random_values_match_sort(values, data):
    a = np.array(values)
    k = data.draw(st.integers(0, len(a) - 2))
    expected = np.sort(a)
    assert kth_smallest_nb(a.copy(), a.size, k) == expected[k]
    first, second = order_pair_nb(a, a.size, k, np.empty(a.size))
    assert (first, second) == (expected[k], expected[k + 1])
