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

Signals (extra outputs, not feature columns; :func:`nwrqk_signals`): slope direction
and slope turns of yhat1, crossovers of yhat2 with yhat1, the two colour modes and the
±1 alert streams; NaN while the yhat values they read are NaN (first valid 26 to 28).
"""

from __future__ import annotations

from typing import NamedTuple

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


# --------------------------------------------------------------------------- signals

#: Rows of the array returned by :func:`nwrqk_signals_nb`, in order.
SIGNAL_NAMES: tuple[str, ...] = (
    "is_bullish",
    "is_bearish",
    "is_bullish_change",
    "is_bearish_change",
    "is_bullish_cross",
    "is_bearish_cross",
    "is_bullish_smooth",
    "is_bearish_smooth",
    "rate_colour",
    "smooth_colour",
    "rate_alert",
    "cross_alert",
)
N_SIGNALS = 12
(
    SIG_BULLISH,
    SIG_BEARISH,
    SIG_BULLISH_CHANGE,
    SIG_BEARISH_CHANGE,
    SIG_BULLISH_CROSS,
    SIG_BEARISH_CROSS,
    SIG_BULLISH_SMOOTH,
    SIG_BEARISH_SMOOTH,
    SIG_RATE_COLOUR,
    SIG_SMOOTH_COLOUR,
    SIG_RATE_ALERT,
    SIG_CROSS_ALERT,
) = range(N_SIGNALS)


@njit(cache=True)
def _flag_nb(condition):
    return 1.0 if condition else 0.0


@njit(cache=True)
def nwrqk_signals_at_nb(y1_t, y1_p1, y1_p2, y2_t, y2_p1, out):
    """The 12 signals of one bar into ``out`` from yhat1[t], yhat1[t-1], yhat1[t-2],
    yhat2[t], yhat2[t-1] (see :func:`nwrqk_signals_nb`)."""
    for j in range(N_SIGNALS):
        out[j] = NAN
    now_ok = not (np.isnan(y1_t) or np.isnan(y2_t))
    if now_ok:
        out[SIG_BULLISH_SMOOTH] = _flag_nb(y2_t > y1_t)
        out[SIG_BEARISH_SMOOTH] = _flag_nb(y2_t < y1_t)
        out[SIG_SMOOTH_COLOUR] = 1.0 if y2_t > y1_t else -1.0
    if not (np.isnan(y1_t) or np.isnan(y1_p1)):
        bullish = y1_p1 < y1_t
        bearish = y1_p1 > y1_t
        out[SIG_BULLISH] = _flag_nb(bullish)
        out[SIG_BEARISH] = _flag_nb(bearish)
        out[SIG_RATE_COLOUR] = 1.0 if bullish else -1.0
        if not np.isnan(y1_p2):
            bull_change = bullish and y1_p2 > y1_p1
            bear_change = bearish and y1_p2 < y1_p1
            out[SIG_BULLISH_CHANGE] = _flag_nb(bull_change)
            out[SIG_BEARISH_CHANGE] = _flag_nb(bear_change)
            out[SIG_RATE_ALERT] = 1.0 if bull_change else (-1.0 if bear_change else 0.0)
    if now_ok and not (np.isnan(y1_p1) or np.isnan(y2_p1)):
        bull_cross = y2_t > y1_t and y2_p1 <= y1_p1
        bear_cross = y2_t < y1_t and y2_p1 >= y1_p1
        out[SIG_BULLISH_CROSS] = _flag_nb(bull_cross)
        out[SIG_BEARISH_CROSS] = _flag_nb(bear_cross)
        out[SIG_CROSS_ALERT] = 1.0 if bull_cross else (-1.0 if bear_cross else 0.0)


@njit(cache=True)
def nwrqk_signals_nb(yhat1, yhat2):
    """NW-RQK signals (INDICATORS.md §2.3) as a (12, n) float64 array, rows in
    :data:`SIGNAL_NAMES` order.

    Encoding: flags are 1.0 / 0.0, colours and alerts +1.0 / -1.0 (alerts also 0.0);
    a signal is NaN when any yhat value it reads is NaN (warm-up, or within ``x_0 + 2``
    bars after a NaN close), never 0. First valid indices with defaults (yhat first
    valid at ``x_0 + 1`` = 26):

    * 26: ``is_bullish_smooth = yhat2 > yhat1``, ``is_bearish_smooth = yhat2 < yhat1``,
      ``smooth_colour`` (+1 iff yhat2 > yhat1; equality counts as bearish);
    * 27: ``is_bullish = yhat1[t-1] < yhat1[t]``, ``is_bearish = yhat1[t-1] > yhat1[t]``,
      ``rate_colour`` (+1 iff is_bullish; a flat bar counts as bearish, -1);
      ``is_bullish_cross = crossover(yhat2, yhat1)``,
      ``is_bearish_cross = crossunder(yhat2, yhat1)``, ``cross_alert`` (+1 on a bullish
      cross, -1 on a bearish cross, else 0);
    * 28: ``is_bullish_change = is_bullish and yhat1[t-2] > yhat1[t-1]`` (the slope
      turns up), ``is_bearish_change`` the mirror, and ``rate_alert`` (+1 on a bullish
      change, -1 on a bearish change, else 0).

    The alerts are written the clear way round (+1 = turn up), not with the swapped
    names of the original script's alert stream. Comparisons are exact, as in Pine: on
    constant prices yhat1 is flat (no slope, no turn, rate colour -1), while yhat1 and
    yhat2 may differ by a rounding error, which fixes the smooth flags and colour on
    one side without ever producing a cross.
    """
    n = yhat1.shape[0]
    out = np.full((N_SIGNALS, n), NAN)
    bar = np.empty(N_SIGNALS)
    for t in range(n):
        y1_p1 = yhat1[t - 1] if t >= 1 else NAN
        y1_p2 = yhat1[t - 2] if t >= 2 else NAN
        y2_p1 = yhat2[t - 1] if t >= 1 else NAN
        nwrqk_signals_at_nb(yhat1[t], y1_p1, y1_p2, yhat2[t], y2_p1, bar)
        for j in range(N_SIGNALS):
            out[j, t] = bar[j]
    return out


class NwrqkSignals(NamedTuple):
    """NW-RQK signal arrays (float64; NaN where undefined; see :func:`nwrqk_signals_nb`)."""

    is_bullish: np.ndarray
    is_bearish: np.ndarray
    is_bullish_change: np.ndarray
    is_bearish_change: np.ndarray
    is_bullish_cross: np.ndarray
    is_bearish_cross: np.ndarray
    is_bullish_smooth: np.ndarray
    is_bearish_smooth: np.ndarray
    rate_colour: np.ndarray
    smooth_colour: np.ndarray
    rate_alert: np.ndarray
    cross_alert: np.ndarray


def nwrqk_signals(yhat1: np.ndarray, yhat2: np.ndarray) -> NwrqkSignals:
    """Rate (slope) and crossover signals, colours and ±1 alert streams of NW-RQK.

    ``yhat1`` and ``yhat2`` are the estimates of :func:`nwrqk_nb`. Flags are 1.0 / 0.0,
    colours ±1.0, alerts +1 (bullish) / -1 (bearish) / 0; NaN during the warm-up
    (first valid 26, 27 or 28 with defaults) and wherever an input they read is NaN.
    ``rate_alert`` is the default (slope-change) alert stream, ``cross_alert`` the one of
    the smooth-colours mode. These are extra outputs, not feature columns.
    """
    y1 = np.ascontiguousarray(yhat1, dtype=np.float64)
    y2 = np.ascontiguousarray(yhat2, dtype=np.float64)
    if y1.ndim != 1 or y2.shape != y1.shape:
        raise ValueError(
            f"yhat1 and yhat2 must be 1-D arrays of the same length; got {y1.shape} and {y2.shape}"
        )
    return NwrqkSignals(*nwrqk_signals_nb(y1, y2))
