"""MLMI's bands (INDICATORS.md §1): the upper and lower band and their EMAs around the
prediction of :mod:`indicators.mlmi`, from its rolling extremes and standard deviation.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from indicators.core import ema_state_new_nb, ema_step_nb, sma_at_nb

__all__ = [
    "BAND_EMA_LENGTH",
    "BAND_LOOKBACK",
    "BAND_STDEV_LENGTH",
    "MlmiBands",
    "mlmi_bands",
    "mlmi_bands_nb",
]

NAN = np.nan

BAND_LOOKBACK = 2000
BAND_STDEV_LENGTH = 20
BAND_EMA_LENGTH = 20


@njit(cache=True)
def stdev_at_nb(x, t, length):
    """Population standard deviation (Pine ``ta.stdev``, ddof 0) of ``x[t-length+1 .. t]``.

    NaN if the window is short or holds NaN. Two passes (mean, then squared deviations),
    so a constant window gives exactly 0.
    """
    mean = sma_at_nb(x, t, length)
    if np.isnan(mean):
        return NAN
    ss = 0.0
    for i in range(length):
        d = x[t - i] - mean
        ss += d * d
    return np.sqrt(ss / length)


@njit(cache=True)
def rolling_extremes_nb(x, length):
    """(highest, lowest) of ``x`` over the last ``length`` bars, NaN unless all are valid.

    Monotone index queues (one for the maximum, one for the minimum): O(n) in all,
    whatever ``length``. A NaN restarts both queues, so the outputs are NaN until
    ``length`` valid values follow it; first valid index ``length - 1``.
    """
    n = x.shape[0]
    highest = np.full(n, NAN)
    lowest = np.full(n, NAN)
    q_max = np.empty(n, dtype=np.int64)
    q_min = np.empty(n, dtype=np.int64)
    max_head = 0
    max_tail = 0
    min_head = 0
    min_tail = 0
    run = 0
    for t in range(n):
        v = x[t]
        if np.isnan(v):
            run = 0
            max_head = max_tail = 0
            min_head = min_tail = 0
            continue
        run += 1
        while max_tail > max_head and x[q_max[max_tail - 1]] <= v:
            max_tail -= 1
        q_max[max_tail] = t
        max_tail += 1
        while min_tail > min_head and x[q_min[min_tail - 1]] >= v:
            min_tail -= 1
        q_min[min_tail] = t
        min_tail += 1
        if q_max[max_head] <= t - length:
            max_head += 1
        if q_min[min_head] <= t - length:
            min_head += 1
        if run >= length:
            highest[t] = x[q_max[max_head]]
            lowest[t] = x[q_min[min_head]]
    return highest, lowest


@njit(cache=True)
def mlmi_bands_nb(pred, lookback, stdev_length, ema_length):
    """MLMI bands (INDICATORS.md §1.3, item 6) from the prediction series.

    Returns (upper, lower, width, upper_inner, lower_inner):

    * ``upper = highest(pred, lookback)``, ``lower = lowest(pred, lookback)``;
    * ``width = EMA_ema_length(stdev_stdev_length(pred))`` (population stdev; the EMA
      is :func:`indicators.core.ema_step_nb`: SMA seed, restarted after a NaN);
    * ``upper_inner = upper - width`` (Pine ``upper_``), ``lower_inner = lower + width``
      (Pine ``lower_``).

    Warm-up follows Pine: every window must be full, and a NaN anywhere in a window gives
    NaN (never 0). ``pred`` is first valid at ``f`` (39 with defaults), so ``upper`` and
    ``lower`` are first valid at ``f + lookback - 1`` (2038), ``width`` at
    ``f + stdev_length - 1 + ema_length - 1`` (77) and the inner bands at the later of
    the two (2038). After a NaN run in ``pred`` the same delays apply again from the
    first valid value.
    """
    n = pred.shape[0]
    upper, lower = rolling_extremes_nb(pred, lookback)
    width = np.full(n, NAN)
    state = ema_state_new_nb()
    for t in range(n):
        width[t] = ema_step_nb(state, stdev_at_nb(pred, t, stdev_length), ema_length)
    return upper, lower, width, upper - width, lower + width


class MlmiBands(NamedTuple):
    """The MLMI band lines (float64 arrays, NaN during warm-up; see :func:`mlmi_bands`)."""

    upper: np.ndarray
    lower: np.ndarray
    width: np.ndarray
    upper_inner: np.ndarray
    lower_inner: np.ndarray


def mlmi_bands(
    pred: np.ndarray,
    lookback: int = BAND_LOOKBACK,
    stdev_length: int = BAND_STDEV_LENGTH,
    ema_length: int = BAND_EMA_LENGTH,
) -> MlmiBands:
    """MLMI bands of a prediction series (the ``pred`` of :func:`mlmi_features_nb`).

    ``upper`` / ``lower``: highest / lowest ``pred`` of the last ``lookback`` (2000) bars;
    ``width``: EMA_20 of the population stdev_20 of ``pred``; ``upper_inner = upper -
    width`` and ``lower_inner = lower + width`` (Pine's ``upper_`` and ``lower_``: ``pred``
    above ``upper_inner`` reads overbought, below ``lower_inner`` oversold). NaN until
    each window is full and wherever a window holds a NaN (see :func:`mlmi_bands_nb`
    for the first valid indices). These lines are extra outputs, not feature columns.
    """
    for name, value in (
        ("lookback", lookback),
        ("stdev_length", stdev_length),
        ("ema_length", ema_length),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
    x = np.ascontiguousarray(pred, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"pred must be a 1-D array; got shape {x.shape}")
    return MlmiBands(*mlmi_bands_nb(x, int(lookback), int(stdev_length), int(ema_length)))
