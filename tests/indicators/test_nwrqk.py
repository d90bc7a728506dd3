"""NW-RQK against a literal transcription of the Pine loop."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indicators.core import atr_nb
from indicators.nwrqk import (
    SIGNAL_NAMES,
    nw_filter_nb,
    nwrqk_features_nb,
    nwrqk_nb,
    nwrqk_signals,
    rq_weights_nb,
)
from tests.indicators._data import gbm_bars
from tests.indicators._oracles import nwrqk_pine, nwrqk_signals_pine


def test_rq_weights_defaults_match_published_values():
    w = rq_weights_nb(8.0, 8.0, 25)
    assert w.shape == (27,)
    assert w[0] == 1.0
    assert w[1] == pytest.approx(0.992222, abs=5e-7)
    assert w[26] == pytest.approx(0.017330, abs=5e-7)
    assert w.sum() == pytest.approx(10.9675, abs=5e-5)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    h=st.floats(3.0, 30.0),
    r=st.floats(0.5, 20.0),
    x_0=st.integers(0, 30),
    nan_at=st.integers(0, 119),
)
def test_nw_filter_random_series_matches_pine_loop(seed, h, r, x_0, nan_at):
    close = gbm_bars(120, seed)[3]
    close[nan_at] = np.nan
    ours = nw_filter_nb(close, rq_weights_nb(h, r, x_0))
    ref = np.array(nwrqk_pine(list(close), h, r, x_0))
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
    ok = ~np.isnan(ref)
    np.testing.assert_allclose(ours[ok], ref[ok], rtol=1e-12)


def test_nwrqk_defaults_first_valid_index_is_26_and_slope_27():
    _, high, low, close, _, _ = gbm_bars(60, 3)
    y1, y2 = nwrqk_nb(close, 8.0, 8.0, 25, 2)
    assert np.isnan(y1[:26]).all() and np.isfinite(y1[26:]).all()
    assert np.isfinite(y2[26:]).all()
    value, slope = nwrqk_features_nb(close, y1, atr_nb(high, low, close, 14))
    assert np.isnan(value[:26]).all() and np.isfinite(value[26:]).all()
    assert np.isnan(slope[:27]).all() and np.isfinite(slope[27:]).all()
    np.testing.assert_allclose(value[26:], (close[26:] - y1[26:]) / close[26:])


def test_nwrqk_nan_poisons_27_outputs():
    close = gbm_bars(100, 4)[3]
    close[50] = np.nan
    y = nw_filter_nb(close, rq_weights_nb(8.0, 8.0, 25))
    assert np.isnan(y[50:77]).all()
    assert np.isfinite(y[77:]).all() and np.isfinite(y[26:50]).all()


def test_nwrqk_slope_constant_prices_zero_atr_gives_nan():
    close = np.full(60, 7.0)
    y = nw_filter_nb(close, rq_weights_nb(8.0, 8.0, 25))
    np.testing.assert_allclose(y[26:], 7.0)
    value, slope = nwrqk_features_nb(close, y, atr_nb(close, close, close, 14))
    assert np.isnan(slope).all()
    np.testing.assert_allclose(value[26:], 0.0, atol=1e-12)


def test_nwrqk_lag_estimate_uses_h_minus_lag():
    close = gbm_bars(80, 5)[3]
    _, y2 = nwrqk_nb(close, 8.0, 8.0, 25, 2)
    np.testing.assert_allclose(y2, nw_filter_nb(close, rq_weights_nb(6.0, 8.0, 25)))


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    h=st.floats(3.0, 20.0),
    r=st.floats(0.5, 20.0),
    x_0=st.integers(1, 30),
    lag=st.integers(0, 2),
    nan_at=st.one_of(st.none(), st.integers(0, 149)),
    nan_len=st.integers(1, 6),
    flat_at=st.one_of(st.none(), st.integers(0, 149)),
)
def test_nwrqk_signals_random_series_matches_pine_logic(
    seed, h, r, x_0, lag, nan_at, nan_len, flat_at
):
    close = gbm_bars(150, seed)[3]
    if flat_at is not None:  # flat estimates: neither bullish nor bearish
        close[flat_at : flat_at + 40] = close[flat_at]
    if nan_at is not None:
        close[nan_at : nan_at + nan_len] = np.nan
    y1, y2 = nwrqk_nb(close, h, r, x_0, lag)
    # the estimates themselves match the Pine loop (test above) to rounding
    pine1 = np.array(nwrqk_pine(list(close), h, r, x_0))
    np.testing.assert_allclose(y1, pine1, rtol=1e-12, equal_nan=True)
    ours = nwrqk_signals(y1, y2)
    ref = nwrqk_signals_pine(list(y1), list(y2))
    assert ours._fields == SIGNAL_NAMES == tuple(ref)
    for name, got in zip(ours._fields, ours, strict=True):
        np.testing.assert_array_equal(got, ref[name], err_msg=name)


def test_nwrqk_signals_defaults_first_valid_indices_26_27_28():
    close = gbm_bars(120, 8)[3]
    sig = nwrqk_signals(*nwrqk_nb(close, 8.0, 8.0, 25, 2))
    first = dict.fromkeys(SIGNAL_NAMES, 27)
    first.update(is_bullish_smooth=26, is_bearish_smooth=26, smooth_colour=26)
    first.update(is_bullish_change=28, is_bearish_change=28, rate_alert=28)
    for name, values in zip(sig._fields, sig, strict=True):
        assert np.isnan(values[: first[name]]).all(), name
        assert np.isfinite(values[first[name] :]).all(), name
    for name in ("is_bullish", "is_bullish_change", "is_bearish_cross", "is_bullish_smooth"):
        assert np.isin(getattr(sig, name)[28:], [0.0, 1.0]).all()
    np.testing.assert_array_equal(sig.rate_alert, sig.is_bullish_change - sig.is_bearish_change)
    np.testing.assert_array_equal(sig.cross_alert, sig.is_bullish_cross - sig.is_bearish_cross)
    np.testing.assert_array_equal(sig.rate_colour[27:], 2 * sig.is_bullish[27:] - 1)


def test_nwrqk_signals_constant_prices_give_no_turn_no_cross_and_bearish_rate_colour():
    close = np.full(60, 7.0)
    sig = nwrqk_signals(*nwrqk_nb(close, 8.0, 8.0, 25, 2))
    for name in SIGNAL_NAMES:
        values = getattr(sig, name)
        assert np.isfinite(values[28:]).all(), name
        if "smooth" in name:
            # yhat2 and yhat1 round differently (by an ulp), but the same way on every bar
            assert (values[26:] == values[26]).all(), name
            continue
        expected = -1.0 if name == "rate_colour" else 0.0
        assert (values[28:] == expected).all(), name


def test_nwrqk_signals_v_shaped_prices_give_one_bullish_turn_and_cross():
    close = np.r_[np.linspace(120.0, 100.0, 60), np.linspace(100.0, 130.0, 60)[1:]]
    sig = nwrqk_signals(*nwrqk_nb(close, 8.0, 8.0, 25, 2))
    assert np.nansum(sig.rate_alert == 1.0) == 1 and np.nansum(sig.rate_alert == -1.0) == 0
    assert np.nansum(sig.cross_alert == 1.0) == 1 and np.nansum(sig.cross_alert == -1.0) == 0
    turn = int(np.flatnonzero(sig.rate_alert == 1.0)[0])
    cross = int(np.flatnonzero(sig.cross_alert == 1.0)[0])
    assert 59 < turn < 75 and 59 < cross < 75
    assert (sig.rate_colour[28:turn] == -1.0).all() and (sig.rate_colour[turn:] == 1.0).all()


def test_nwrqk_signals_nan_close_gives_nan_signals_for_the_filter_length():
    close = gbm_bars(120, 9)[3]
    close[60] = np.nan
    sig = nwrqk_signals(*nwrqk_nb(close, 8.0, 8.0, 25, 2))
    # yhat is NaN on bars 60..86; slope signals need t and t-1, changes t-2 too
    assert np.isnan(sig.is_bullish[60:88]).all() and np.isfinite(sig.is_bullish[88:]).all()
    assert np.isnan(sig.rate_alert[60:89]).all() and np.isfinite(sig.rate_alert[89:]).all()
    assert np.isnan(sig.smooth_colour[60:87]).all() and np.isfinite(sig.smooth_colour[87:]).all()
    assert np.isfinite(sig.rate_alert[28:60]).all()


def test_nwrqk_signals_mismatched_inputs_raise_value_error():
    with pytest.raises(ValueError, match="same length"):
        nwrqk_signals(np.zeros(5), np.zeros(6))
