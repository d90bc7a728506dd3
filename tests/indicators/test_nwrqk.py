"""NW-RQK against a literal transcription of the Pine loop."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indicators.core import atr_nb
from indicators.nwrqk import nw_filter_nb, nwrqk_features_nb, nwrqk_nb, rq_weights_nb
from tests.indicators._data import gbm_bars
from tests.indicators._oracles import nwrqk_pine


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
