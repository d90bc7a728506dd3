"""Elementary numba kernels shared by the indicators.

Every batch kernel is a loop over bars calling a small "at" (windowed) or "step"
(recursive) function; the streaming feature state calls the very same functions,
so the batch and streaming results agree bit for bit.

Conventions:

* Inputs are float64 arrays; NaN marks a missing or invalid value.
* Warm-up outputs are NaN, never 0.
* Windowed kernels (SMA, WMA) return NaN when any value of the window is NaN.
* Recursive kernels (Wilder RSI, EMA, ATR) follow TradingView's ``ta.rma`` /
  ``ta.ema`` seeding: the first value is the simple mean of the first ``length``
  valid inputs. A NaN input resets the state; the kernel then seeds again from
  the next ``length`` valid inputs, as Pine does when ``sum[1]`` is ``na``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

NAN = np.nan


# --------------------------------------------------------------------------- windowed


@njit(cache=True)
def window_mean_at_nb(x, t, length, linear):
    """Mean of ``x[t-length+1 .. t]``, plain or, with ``linear``, weighted ``length`` for
    the newest down to 1 for the oldest (Pine ``ta.wma``); NaN if the window is short or
    holds NaN."""
    if t - length + 1 < 0:
        return NAN
    total = 0.0
    for i in range(length):
        v = x[t - i]
        if np.isnan(v):
            return NAN
        total += (length - i) * v if linear else v
    return total / (length * (length + 1) / 2.0) if linear else total / length


@njit(cache=True)
def sma_at_nb(x, t, length):
    """Simple mean of ``x[t-length+1 .. t]``; NaN if the window is short or holds NaN."""
    return window_mean_at_nb(x, t, length, False)


@njit(cache=True)
def wma_at_nb(x, t, length):
    """Pine ``ta.wma`` at bar ``t``: weights ``length`` (newest) down to 1 (oldest)."""
    return window_mean_at_nb(x, t, length, True)


@njit(cache=True)
def window_means_nb(x, length, linear):
    """:func:`window_mean_at_nb` at every bar; first valid index ``length - 1``."""
    n = x.shape[0]
    out = np.full(n, NAN)
    for t in range(n):
        out[t] = window_mean_at_nb(x, t, length, linear)
    return out


@njit(cache=True)
def sma_nb(x, length):
    """Simple moving average over ``length`` bars; first valid index ``length - 1``."""
    return window_means_nb(x, length, False)


@njit(cache=True)
def wma_nb(x, length):
    """Linearly weighted moving average; first valid index ``length - 1``."""
    return window_means_nb(x, length, True)


# --------------------------------------------------------------------------- recursive means


@njit(cache=True)
def state_new_nb(size):
    """A fresh state of ``size`` slots for a kernel that keeps its previous input in slot
    0: that slot NaN (no input yet), the others 0."""
    s = np.zeros(size)
    s[0] = NAN
    return s


@njit(cache=True)
def seed_step_nb(state, i_mean, i_count, x, length):
    """One input of the simple-mean seed of a recursive average (``ta.rma``, ``ta.ema``).

    ``x`` is summed into ``state[i_mean]`` and counted in ``state[i_count]``. Returns NaN
    until ``length`` inputs are in, then their mean, which ``state[i_mean]`` then holds.
    """
    n_seed = state[i_count] + 1.0
    state[i_count] = n_seed
    state[i_mean] += x
    if n_seed < length:
        return NAN
    state[i_mean] = state[i_mean] / length
    return state[i_mean]


@njit(cache=True)
def rma_step_nb(state, i_mean, i_count, x, length):
    """One input of Wilder's running mean (``ta.rma``), kept in ``state[i_mean]``: the
    simple-mean seed (:func:`seed_step_nb`), then ``(mean * (length - 1) + x) / length``."""
    if state[i_count] < length:
        return seed_step_nb(state, i_mean, i_count, x, length)
    state[i_mean] = (state[i_mean] * (length - 1) + x) / length
    return state[i_mean]


# --------------------------------------------------------------------------- Wilder RSI

RSI_STATE_SIZE = 5  # prev_x, avg_up, avg_down, n_seed of avg_up, n_seed of avg_down


@njit(cache=True)
def rsi_state_new_nb():
    """Fresh RSI state: previous input NaN, no seed values collected."""
    return state_new_nb(RSI_STATE_SIZE)


@njit(cache=True)
def rsi_step_nb(state, x, length):
    """One bar of the TradingView RSI (Wilder smoothing) and its value.

    ``state`` = [previous input, average gain, average loss, and their two seed counts]:
    the averages are :func:`rma_step_nb` of the gains and the losses (which hold running
    sums while seeding). RSI = 100 when the average loss is 0 (this includes 0/0), 0 when
    the average gain is 0, else ``100 - 100/(1 + U/D)``. First valid value: ``length``
    valid changes after a start or a reset.
    """
    prev = state[0]
    state[0] = x
    if np.isnan(x) or np.isnan(prev):
        state[1:RSI_STATE_SIZE] = 0.0
        return NAN
    change = x - prev
    avg_up = rma_step_nb(state, 1, 3, change if change > 0.0 else 0.0, length)
    avg_down = rma_step_nb(state, 2, 4, -change if change < 0.0 else 0.0, length)
    if state[3] < length:
        return NAN
    if avg_down == 0.0:
        return 100.0
    if avg_up == 0.0:
        return 0.0
    return 100.0 - 100.0 / (1.0 + avg_up / avg_down)


@njit(cache=True)
def rsi_nb(x, length):
    """Wilder RSI (TradingView ``ta.rsi``); first valid index ``length``."""
    return _steps_nb(x, length, True)


# --------------------------------------------------------------------------- EMA

EMA_STATE_SIZE = 2  # value (the seed sum while seeding), n_seed


@njit(cache=True)
def ema_state_new_nb():
    return np.zeros(EMA_STATE_SIZE)


@njit(cache=True)
def ema_step_nb(state, x, length):
    """One bar of the exponential moving average, alpha = 2/(length+1), SMA seed."""
    if np.isnan(x):
        state[0] = 0.0
        state[1] = 0.0
        return NAN
    if state[1] < length:
        return seed_step_nb(state, 0, 1, x, length)
    alpha = 2.0 / (length + 1.0)
    state[0] = (x - state[0]) * alpha + state[0]
    return state[0]


@njit(cache=True)
def _steps_nb(x, length, rsi):
    """:func:`rsi_step_nb` (``rsi``) or :func:`ema_step_nb` at every bar, from a fresh state.

    One loop serves both: a numba kernel that took the step function as an argument
    could not be cached on disk.
    """
    n = x.shape[0]
    out = np.full(n, NAN)
    state = rsi_state_new_nb() if rsi else ema_state_new_nb()
    for t in range(n):
        out[t] = rsi_step_nb(state, x[t], length) if rsi else ema_step_nb(state, x[t], length)
    return out


@njit(cache=True)
def ema_nb(x, length):
    """Exponential moving average; first valid index ``length - 1``."""
    return _steps_nb(x, length, False)


# --------------------------------------------------------------------------- ATR

ATR_STATE_SIZE = 4  # prev_close, atr (or seed sum), n_seed, unused


@njit(cache=True)
def atr_state_new_nb():
    return state_new_nb(ATR_STATE_SIZE)


@njit(cache=True)
def true_range_nb(high, low, prev_close):
    """max(high - low, |high - prev_close|, |low - prev_close|)."""
    tr = high - low
    a = abs(high - prev_close)
    b = abs(low - prev_close)
    if a > tr:
        tr = a
    if b > tr:
        tr = b
    return tr


@njit(cache=True)
def atr_step_nb(state, high, low, close, length):
    """One bar of Wilder's ATR as TA-Lib computes it.

    The true range needs the previous close, so the first value comes ``length`` bars
    after the first valid bar (index ``length`` on a clean series). An invalid bar
    resets the state.
    """
    prev_close = state[0]
    state[0] = close
    if np.isnan(high) or np.isnan(low) or np.isnan(close) or np.isnan(prev_close):
        state[1] = 0.0
        state[2] = 0.0
        return NAN
    return rma_step_nb(state, 1, 2, true_range_nb(high, low, prev_close), length)


@njit(cache=True)
def atr_nb(high, low, close, length):
    """Average true range (Wilder); first valid index ``length``."""
    n = close.shape[0]
    out = np.full(n, NAN)
    state = atr_state_new_nb()
    for t in range(n):
        out[t] = atr_step_nb(state, high[t], low[t], close[t], length)
    return out


# --------------------------------------------------------------------------- bars


@njit(cache=True)
def sanitize_bar_nb(o, h, low, c, v):
    """Clean one bar: returns (open, high, low, close, volume).

    A bar whose open, high, low or close is not finite or not positive, or whose high
    is below its low, is invalid: all four prices become NaN. A volume that is not
    finite or negative becomes NaN (the bar still counts, its volume is skipped);
    zero volume is kept.
    """
    finite = np.isfinite(o) and np.isfinite(h) and np.isfinite(low) and np.isfinite(c)
    positive = o > 0.0 and h > 0.0 and low > 0.0 and c > 0.0
    if not (finite and positive and h >= low):
        o = NAN
        h = NAN
        low = NAN
        c = NAN
    if not np.isfinite(v) or v < 0.0:
        v = NAN
    return o, h, low, c, v


@njit(cache=True)
def sanitize_bars_nb(o, h, low, c, v):
    """Vector form of :func:`sanitize_bar_nb`; returns new arrays."""
    n = c.shape[0]
    oo = np.empty(n)
    hh = np.empty(n)
    ll = np.empty(n)
    cc = np.empty(n)
    vv = np.empty(n)
    for t in range(n):
        oo[t], hh[t], ll[t], cc[t], vv[t] = sanitize_bar_nb(o[t], h[t], low[t], c[t], v[t])
    return oo, hh, ll, cc, vv


HA_STATE_SIZE = 2  # previous HA open, previous HA close


@njit(cache=True)
def heikin_ashi_state_new_nb():
    return np.full(HA_STATE_SIZE, NAN)


@njit(cache=True)
def heikin_ashi_step_nb(state, o, h, low, c):
    """One Heikin-Ashi bar: returns (ha_open, ha_high, ha_low, ha_close).

    ha_close = (o+h+l+c)/4; ha_open = (previous ha_open + previous ha_close)/2, seeded
    with (o+c)/2 on the first bar and again after an invalid (NaN) bar;
    ha_high = max(h, ha_open, ha_close); ha_low = min(l, ha_open, ha_close).
    """
    if np.isnan(o) or np.isnan(h) or np.isnan(low) or np.isnan(c):
        state[0] = NAN
        state[1] = NAN
        return NAN, NAN, NAN, NAN
    ha_close = (o + h + low + c) / 4.0
    ha_open = (o + c) / 2.0 if np.isnan(state[0]) else (state[0] + state[1]) / 2.0
    ha_high = max(h, max(ha_open, ha_close))
    ha_low = min(low, min(ha_open, ha_close))
    state[0] = ha_open
    state[1] = ha_close
    return ha_open, ha_high, ha_low, ha_close


@njit(cache=True)
def heikin_ashi_nb(o, h, low, c):
    """Heikin-Ashi transform of OHLC arrays; returns four new arrays."""
    n = c.shape[0]
    ho = np.empty(n)
    hh = np.empty(n)
    hl = np.empty(n)
    hc = np.empty(n)
    state = heikin_ashi_state_new_nb()
    for t in range(n):
        ho[t], hh[t], hl[t], hc[t] = heikin_ashi_step_nb(state, o[t], h[t], low[t], c[t])
    return ho, hh, hl, hc


# --------------------------------------------------------------------------- selection


@njit(cache=True)
def kth_smallest_nb(a, n, k):
    """k-th smallest (0-based) of ``a[:n]``; partially reorders ``a`` in place.

    Quickselect with a median-of-three pivot; the values must not be NaN.
    """
    lo = 0
    hi = n - 1
    while hi > lo:
        mid = (lo + hi) // 2
        # median of three into a[mid]
        if a[mid] < a[lo]:
            a[mid], a[lo] = a[lo], a[mid]
        if a[hi] < a[lo]:
            a[hi], a[lo] = a[lo], a[hi]
        if a[hi] < a[mid]:
            a[hi], a[mid] = a[mid], a[hi]
        pivot = a[mid]
        i = lo
        j = hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return a[k]
    return a[k]


@njit(cache=True)
def value_range_nb(a, n):
    """(min, max) of ``a[:n]`` (n >= 1, no NaN) in one pass."""
    lo = a[0]
    hi = a[0]
    for i in range(1, n):
        v = a[i]
        if v < lo:
            lo = v
        elif v > hi:
            hi = v
    return lo, hi


@njit(cache=True)
def bucket_of_nb(v, lo, scale, top):
    """Bucket of ``v`` in a histogram from ``lo`` with ``scale`` buckets per unit: a
    monotone function of ``v``, so bucket order is value order."""
    return min(int((v - lo) * scale), top)


@njit(cache=True)
def bucket_counts_nb(values, n, k, counts):
    """Histogram of ``values[:n]`` (no NaN) over ``len(counts)`` equal buckets spanning
    their range, and the bucket holding the k-th smallest (0-based).

    Returns (lo, hi, scale, chosen, below): value ``v`` falls in bucket
    ``bucket_of_nb(v, lo, scale, len(counts) - 1)``; ``below`` values lie in lower
    buckets. ``scale`` is 0 when the range is empty or too narrow to divide (callers
    then select directly).
    """
    lo, hi = value_range_nb(values, n)
    buckets = counts.shape[0]
    scale = buckets / (hi - lo) if hi > lo else 0.0
    if not (0.0 < scale < 1e300):
        return lo, hi, 0.0, 0, 0
    counts[:] = 0
    top = buckets - 1
    for i in range(n):
        counts[bucket_of_nb(values[i], lo, scale, top)] += 1
    below = 0
    for b in range(buckets):
        if below + counts[b] > k:
            return lo, hi, scale, b, below
        below += counts[b]
    return lo, hi, scale, top, below - counts[top]


@njit(cache=True)
def kth_by_buckets_nb(values, n, k, work, counts):
    """k-th smallest (0-based) of ``values[:n]`` (no NaN), exactly; ``values`` is
    untouched.

    :func:`bucket_counts_nb` finds the bucket holding it, that bucket's values are
    copied to ``work`` (length >= n) and quickselect finishes on them alone.
    ``counts`` is an int64 array whose length is the number of buckets.
    """
    lo, _hi, scale, chosen, below = bucket_counts_nb(values, n, k, counts)
    if scale == 0.0:
        for i in range(n):
            work[i] = values[i]
        return kth_smallest_nb(work, n, k)
    top = counts.shape[0] - 1
    m = 0
    for i in range(n):
        v = values[i]
        if bucket_of_nb(v, lo, scale, top) == chosen:
            work[m] = v
            m += 1
    return kth_smallest_nb(work, m, k - below)


@njit(cache=True)
def order_pair_nb(a, n, k, work):
    """(k-th, (k+1)-th) smallest (0-based) of ``a[:n]`` without reordering ``a``.

    Bucket selection, fast on large arrays: one pass for min and max, one pass counting
    values per bucket (the bucket index is a monotone function of the value, so bucket
    order is value order), then only the bucket(s) holding ranks k and k+1 are copied
    to ``work`` (size >= n) and sorted. Exact. Requires ``0 <= k`` and ``k + 1 < n`` and
    no NaN.
    """
    counts = np.empty(max(16, min(n // 8, 8192)), dtype=np.int64)
    lo, hi, scale, b_first, below = bucket_counts_nb(a, n, k, counts)
    if lo == hi:
        return lo, lo
    if scale == 0.0:
        for i in range(n):
            work[i] = a[i]
        first = kth_smallest_nb(work, n, k)
        second = np.inf
        for i in range(k + 1, n):
            if work[i] < second:
                second = work[i]
        return first, second
    top = counts.shape[0] - 1
    base = below
    b_last = b_first
    covered = below + counts[b_first]
    while covered <= k + 1:
        b_last += 1
        covered += counts[b_last]
    m = 0
    for i in range(n):
        if b_first <= bucket_of_nb(a[i], lo, scale, top) <= b_last:
            work[m] = a[i]
            m += 1
    chosen = np.sort(work[:m])
    return chosen[k - base], chosen[k + 1 - base]
