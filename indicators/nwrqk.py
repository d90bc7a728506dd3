"""Nadaraya-Watson estimator with a rational quadratic kernel (jdehorty, non-repainting).

TradingView evaluates the estimator as a fixed causal FIR filter with ``x_0 + 2`` taps
(``i = 0 .. x_0 + 1``; 27 taps with the default ``x_0 = 25``):

    w(i) = (1 + i² / (2 r h²)) ** (-r)
    yhat[t] = Σ_i w(i) src[t-i] / Σ_i w(i)

yhat1 uses ``h``, yhat2 uses ``h - lag`` (same ``r``). Any NaN among the ``x_0 + 2``
inputs makes the output NaN, so the first valid index is ``x_0 + 1`` (26).

Features:

* ``nwrqk_value[t] = (close[t] - yhat1[t]) / close[t]`` (first valid 26);
* ``nwrqk_slope[t] = (yhat1[t] - yhat1[t-1]) / ATR_14[t]`` (first valid 27); NaN when
  the ATR is NaN or not positive (constant prices).
"""

from __future__ import annotations

import numpy as np
from numba import njit

NAN = np.nan


@njit(cache=True)
def rq_weights_nb(h, r, x_0):
    """The ``x_0 + 2`` rational quadratic weights w(0) .. w(x_0 + 1)."""
    n_taps = x_0 + 2
    w = np.empty(n_taps)
    for i in range(n_taps):
        w[i] = (1.0 + (i * i) / (2.0 * r * h * h)) ** (-r)
    return w


@njit(cache=True)
def nw_at_nb(src, t, weights):
    """Kernel estimate at bar ``t`` (the Pine loop order: i = 0 first)."""
    n_taps = weights.shape[0]
    if t - n_taps + 1 < 0:
        return NAN
    num = 0.0
    den = 0.0
    for i in range(n_taps):
        v = src[t - i]
        if np.isnan(v):
            return NAN
        num += v * weights[i]
        den += weights[i]
    return num / den


@njit(cache=True)
def nw_filter_nb(src, weights):
    """Kernel estimate for every bar."""
    n = src.shape[0]
    out = np.full(n, NAN)
    for t in range(n):
        out[t] = nw_at_nb(src, t, weights)
    return out


@njit(cache=True)
def nwrqk_nb(src, h, r, x_0, lag):
    """(yhat1, yhat2): estimates with bandwidth ``h`` and ``h - lag``."""
    y1 = nw_filter_nb(src, rq_weights_nb(h, r, x_0))
    y2 = nw_filter_nb(src, rq_weights_nb(h - lag, r, x_0))
    return y1, y2


@njit(cache=True)
def nwrqk_value_at_nb(close_t, yhat_t):
    """(close - yhat1) / close."""
    return (close_t - yhat_t) / close_t


@njit(cache=True)
def nwrqk_slope_at_nb(yhat_t, yhat_prev, atr_t):
    """(yhat1[t] - yhat1[t-1]) / ATR[t]; NaN when the ATR is NaN or not positive."""
    if not atr_t > 0.0:
        return NAN
    return (yhat_t - yhat_prev) / atr_t


@njit(cache=True)
def nwrqk_features_nb(close, yhat1, atr):
    """(nwrqk_value, nwrqk_slope) arrays from close, yhat1 and ATR."""
    n = close.shape[0]
    value = np.full(n, NAN)
    slope = np.full(n, NAN)
    for t in range(n):
        value[t] = nwrqk_value_at_nb(close[t], yhat1[t])
        if t >= 1:
            slope[t] = nwrqk_slope_at_nb(yhat1[t], yhat1[t - 1], atr[t])
    return value, slope
