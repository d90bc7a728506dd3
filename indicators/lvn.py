"""Rolling volume profile: low-volume nodes (LVN) and the volume-weighted price skew.

Definition (INDICATORS.md §3.2), evaluated at every bar ``t`` over the window of the
last ``W`` bars ``t-W+1 .. t`` (inclusive, completed bars only):

1. Profile. ``lo = min(low)``, ``hi = max(high)`` over the valid bars of the window.
   Nominal bin width ``Δ = bin_width`` if positive, else ``ATR_14[t] * atr_fraction``.
   The number of bins is ``B = min(max_bins, max(1, ceil((hi - lo) / Δ)))`` (``B =
   max_bins`` when Δ is NaN or 0), and the bins tile ``[lo, hi]`` exactly with width
   ``(hi - lo) / B`` (the width is rounded up to do so). Fewer than ``2 e + 3`` bins
   (e.g. ``hi == lo``) leave no room for an LVN. Each bar adds its volume to the
   bins its ``[low, high]`` overlaps, in proportion to the overlap (every fully covered
   bin gets exactly ``v * width / (high - low)``, so flat stretches are exactly flat); a bar with
   ``high == low`` puts all of it into the bin holding that price. Bars with NaN prices,
   NaN volume or zero volume are skipped (they neither add volume nor widen the range).
2. Smoothing. Gaussian filter of ``σ_b`` bins, radius ``int(4 σ_b + 0.5)``, reflected
   at the edges (as ``scipy.ndimage.gaussian_filter1d(mode="reflect")``).
3. Candidates. Local minima of the smoothed profile ``V``: a run of equal values whose
   two outer neighbours are both strictly higher, represented by its centre (rounded
   down); the centre must satisfy ``e <= j < B - e`` and ``V[j] <= θ max(V)``.
4. Strength ``1 - V[j] / min(max(V[:j]), max(V[j+1:]))`` in (0, 1]; candidates below
   the minimum prominence ``π`` (or not deeper than 1e-9, rounding noise) are dropped.
5. The LVN nearest to the close (bin centre, ties to the lower price) gives
   ``lvn_distance = (close - price) / ATR_14[t]`` (signed; NaN when the ATR is NaN or not
   positive) and ``lvn_strength``.

Encodings: ``t < W - 1`` or no volume in the window: distance, strength and presence
are NaN. A valid profile with no LVN: distance NaN, strength 0, presence 0. A present
LVN: presence 1 and strength > 0.

``volume_profile_skew`` is the skewness ``m3 / m2^1.5`` of the mixture in which each
valid bar of the window contributes a uniform distribution on ``[low, high]`` (a point
mass when ``high == low``) with weight equal to its volume: the exact moments of the
same uniform-in-range profile, with no binning. NaN during warm-up (``t < W - 1``), with
no volume, or when the spread is degenerate (std below 1e-10 of the mean price, e.g.
constant prices).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange

NAN = np.nan
#: A valley shallower than this (relative depth) is rounding noise, never an LVN.
NOISE_DEPTH = 1e-9


@njit(cache=True)
def gaussian_weights_nb(sigma):
    """Normalised Gaussian weights of radius ``int(4 sigma + 0.5)`` (1 tap if sigma <= 0)."""
    if sigma <= 0.0:
        return np.ones(1)
    radius = int(4.0 * sigma + 0.5)
    w = np.empty(2 * radius + 1)
    total = 0.0
    for i in range(-radius, radius + 1):
        v = np.exp(-0.5 * (i * i) / (sigma * sigma))
        w[i + radius] = v
        total += v
    for i in range(w.shape[0]):
        w[i] /= total
    return w


@njit(cache=True)
def _reflect_nb(i, n):
    while i < 0 or i >= n:
        if i < 0:
            i = -i - 1
        if i >= n:
            i = 2 * n - i - 1
    return i


@njit(cache=True)
def window_volume_nb(high, low, volume, t, window):
    """Over the bars ``t-W+1 .. t`` that count (prices valid, volume neither NaN nor 0):
    (total volume, Σ volume x mid price, lowest low, highest high)."""
    total = 0.0
    mid_sum = 0.0
    lo = np.inf
    hi = -np.inf
    for i in range(t - window + 1, t + 1):
        v = volume[i]
        if np.isnan(v) or np.isnan(high[i]) or v == 0.0:
            continue
        total += v
        mid_sum += v * 0.5 * (low[i] + high[i])
        if low[i] < lo:
            lo = low[i]
        if high[i] > hi:
            hi = high[i]
    return total, mid_sum, lo, hi


@njit(cache=True)
def lvn_scratch_new_nb(max_bins):
    """Work arrays for one profile: raw and smoothed volume, left and right maxima."""
    return np.zeros((4, max_bins + 1))


class LvnProfile(NamedTuple):
    """How a bar's volume profile is built and read: the window in bars, the nominal
    bin width (0: ``atr_fraction`` of the ATR), the most bins, the smoothing weights
    (:func:`gaussian_weights_nb`), the depth threshold, the minimum prominence and the
    edge bins where no LVN may sit."""

    window: int
    bin_width: float
    atr_fraction: float
    max_bins: int
    smooth_w: np.ndarray
    threshold: float
    min_prominence: float
    edge_bins: int


@njit(cache=True)
def lvn_at_nb(high, low, close, volume, t, atr_t, profile, scratch):
    """LVN features at bar ``t``: returns (distance, strength, present)."""
    window, bin_width, atr_fraction, max_bins, smooth_w, threshold, min_prominence, edge_bins = (
        profile
    )
    if t - window + 1 < 0:
        return NAN, NAN, NAN
    total_volume, _mid_sum, lo, hi = window_volume_nb(high, low, volume, t, window)
    if not total_volume > 0.0:
        return NAN, NAN, NAN
    rng = hi - lo
    if not rng > 0.0:
        return NAN, 0.0, 0.0
    delta = bin_width if bin_width > 0.0 else atr_t * atr_fraction
    if delta > 0.0:
        n_bins_f = np.ceil(rng / delta)
        n_bins = max_bins if n_bins_f > max_bins else int(n_bins_f)
        if n_bins < 1:
            n_bins = 1
    else:
        n_bins = max_bins
    if n_bins < 2 * edge_bins + 3 or n_bins < 3:
        return NAN, 0.0, 0.0
    width = rng / n_bins
    raw = scratch[0]
    smooth = scratch[1]
    for j in range(n_bins):
        raw[j] = 0.0
    for i in range(t - window + 1, t + 1):
        v = volume[i]
        if np.isnan(v) or np.isnan(high[i]) or v == 0.0:
            continue
        h = high[i]
        lw = low[i]
        if h == lw:
            j = int(np.floor((lw - lo) / width))
            if j >= n_bins:
                j = n_bins - 1
            raw[j] += v
            continue
        j0 = int(np.floor((lw - lo) / width))
        if j0 >= n_bins:
            j0 = n_bins - 1
        j1 = int(np.floor((h - lo) / width))
        if j1 >= n_bins:
            j1 = n_bins - 1
        span = h - lw
        full = v * width / span  # the same share for every fully covered bin
        for j in range(j0, j1 + 1):
            edge_lo = lo + j * width
            edge_hi = lo + (j + 1) * width
            if lw <= edge_lo and edge_hi <= h:
                raw[j] += full
                continue
            a = lw if lw > edge_lo else edge_lo
            b = h if h < edge_hi else edge_hi
            if b > a:
                raw[j] += v * (b - a) / span
    radius = smooth_w.shape[0] // 2
    v_max = 0.0
    for j in range(n_bins):
        acc = 0.0
        if radius <= j < n_bins - radius:
            for r in range(-radius, radius + 1):
                acc += raw[j + r] * smooth_w[r + radius]
        else:
            for r in range(-radius, radius + 1):
                acc += raw[_reflect_nb(j + r, n_bins)] * smooth_w[r + radius]
        smooth[j] = acc
        if acc > v_max:
            v_max = acc
    # running maxima from the left and from the right (for the valley depth)
    left_max = scratch[2]
    right_max = scratch[3]
    acc = 0.0
    for j in range(n_bins):
        left_max[j] = acc  # max of smooth[:j] (0 for j = 0)
        if smooth[j] > acc:
            acc = smooth[j]
    acc = 0.0
    for j in range(n_bins - 1, -1, -1):
        right_max[j] = acc  # max of smooth[j+1:]
        if smooth[j] > acc:
            acc = smooth[j]
    # local minima (plateaus reduced to their centre), then the nearest qualifying one
    best_dist = np.inf
    best_price = NAN
    best_strength = 0.0
    j = 1
    while j < n_bins - 1:
        if smooth[j] < smooth[j - 1]:
            k = j
            while k + 1 < n_bins and smooth[k + 1] == smooth[j]:
                k += 1
            if k + 1 < n_bins and smooth[k + 1] > smooth[j]:
                c = (j + k) // 2
                val = smooth[c]
                if edge_bins <= c < n_bins - edge_bins and val <= threshold * v_max:
                    strength = 1.0 - val / min(left_max[c], right_max[c])
                    if strength >= min_prominence and strength > NOISE_DEPTH:
                        price = lo + (c + 0.5) * width
                        dist = abs(close[t] - price)
                        if dist < best_dist:
                            best_dist = dist
                            best_price = price
                            best_strength = strength
            j = k + 1
        else:
            j += 1
    if np.isnan(best_price):
        return NAN, 0.0, 0.0
    distance = NAN
    if atr_t > 0.0:
        distance = (close[t] - best_price) / atr_t
    return distance, best_strength, 1.0


@njit(cache=True, parallel=True)
def lvn_nb(
    high,
    low,
    close,
    volume,
    atr,
    window,
    bin_width,
    atr_fraction,
    max_bins,
    smoothing,
    threshold,
    min_prominence,
    edge_bins,
):
    """LVN features for every bar: (distance, strength, present)."""
    n = close.shape[0]
    dist = np.full(n, NAN)
    strength = np.full(n, NAN)
    present = np.full(n, NAN)
    profile = LvnProfile(
        window,
        bin_width,
        atr_fraction,
        max_bins,
        gaussian_weights_nb(smoothing),
        threshold,
        min_prominence,
        edge_bins,
    )
    # Each bar's profile depends on its own window only: chunks run in parallel.
    chunks = max(1, min(16, n // 2_000))
    for c in prange(chunks):
        lo = c * n // chunks
        hi = (c + 1) * n // chunks
        _lvn_range_nb(high, low, close, volume, atr, profile, lo, hi, dist, strength, present)
    return dist, strength, present


@njit(cache=True)
def _lvn_range_nb(high, low, close, volume, atr, profile, lo, hi, dist, strength, present):
    scratch = lvn_scratch_new_nb(profile.max_bins)
    for t in range(lo, hi):
        dist[t], strength[t], present[t] = lvn_at_nb(
            high, low, close, volume, t, atr[t], profile, scratch
        )


@njit(cache=True)
def profile_skew_at_nb(high, low, volume, t, window):
    """Skewness of the volume-weighted uniform-in-range price mixture at bar ``t``."""
    if t - window + 1 < 0:
        return NAN
    total, first, _lo, _hi = window_volume_nb(high, low, volume, t, window)
    if not total > 0.0:
        return NAN
    mean = first / total
    m2 = 0.0
    m3 = 0.0
    for i in range(t - window + 1, t + 1):
        v = volume[i]
        if np.isnan(v) or np.isnan(high[i]) or v == 0.0:
            continue
        a = low[i] - mean
        b = high[i] - mean
        m2 += v * (a * a + a * b + b * b) / 3.0
        m3 += v * (a + b) * (a * a + b * b) / 4.0
    m2 /= total
    m3 /= total
    if not m2 > (1e-10 * mean) ** 2:
        return NAN
    return m3 / m2**1.5


@njit(cache=True)
def profile_skew_nb(high, low, volume, window):
    """``volume_profile_skew`` for every bar; first valid index ``window - 1``."""
    n = high.shape[0]
    out = np.full(n, NAN)
    for t in range(n):
        out[t] = profile_skew_at_nb(high, low, volume, t, window)
    return out
