"""Thinning dense series for display; the database keeps every point.

A screen shows at most a few thousand distinct x positions, so a 200,000-bar
line is drawn from far fewer points without visible change when each bucket
keeps its extremes:

* :func:`minmax_indices` splits the series into equal-count buckets and keeps,
  per bucket, the first, lowest, highest and last point (the M4 rule). Every
  peak and trough survives, so drawdowns and spikes look exactly as in the full
  series, and the first and last points are always kept.
* :func:`bucket_means` averages each bucket, for series that are stacked or
  shown as colour (ensemble weights, agent votes), where a mean preserves sums.

Both return the input unchanged (as indices ``0..n-1`` or the arrays
themselves) when there are no more points than the target.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DEFAULT_BUCKETS", "bucket_means", "minmax_indices"]

# About one bucket per two horizontal pixels of a wide chart; up to 4 points each.
DEFAULT_BUCKETS = 700


def _bucket_size(n: int, buckets: int) -> int:
    if buckets < 1:
        raise ValueError(f"buckets must be >= 1, got {buckets}")
    return -(-n // buckets)


def minmax_indices(y: np.ndarray, buckets: int = DEFAULT_BUCKETS) -> np.ndarray:
    """Sorted indices of the points to keep: first, min, max and last of each bucket.

    NaN values are never chosen as a minimum or maximum (a bucket of NaN
    keeps its first and last points only).
    """
    values = np.asarray(y, dtype=float)
    n = len(values)
    if n <= 4 * buckets:
        return np.arange(n)
    size = _bucket_size(n, buckets)
    rows = -(-n // size)
    padded_low = np.full(rows * size, np.inf)
    padded_high = np.full(rows * size, -np.inf)
    finite = ~np.isnan(values)
    padded_low[:n] = np.where(finite, values, np.inf)
    padded_high[:n] = np.where(finite, values, -np.inf)
    offsets = np.arange(rows) * size
    lows = offsets + padded_low.reshape(rows, size).argmin(axis=1)
    highs = offsets + padded_high.reshape(rows, size).argmax(axis=1)
    lasts = np.minimum(offsets + size - 1, n - 1)
    keep = np.concatenate([offsets, lows, highs, lasts])
    return np.unique(keep[keep < n])


def bucket_means(
    x: np.ndarray, y: np.ndarray, buckets: int = DEFAULT_BUCKETS
) -> tuple[np.ndarray, np.ndarray]:
    """Per bucket: the first x and the mean of ``y`` (1-D, or 2-D with one row per x).

    NaN values are left out of a bucket's mean.
    """
    xs = np.asarray(x)
    values = np.asarray(y, dtype=float)
    n = len(xs)
    if len(values) != n:
        raise ValueError(f"x has {n} points but y has {len(values)}")
    if n <= buckets:
        return xs, values
    size = _bucket_size(n, buckets)
    starts = np.arange(0, n, size)
    finite = ~np.isnan(values)
    sums = np.add.reduceat(np.where(finite, values, 0.0), starts, axis=0)
    counts = np.add.reduceat(finite.astype(float), starts, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
    return xs[starts], means
