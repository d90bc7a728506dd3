"""Synthetic OHLCV series and hypothesis strategies for the indicator tests."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

HALF_HOUR_NS = 1_800 * 1_000_000_000
START_NS = 1_600_000_000 * 1_000_000_000


def gbm_bars(n: int, seed: int = 0, sigma: float = 0.004):
    """Seeded GBM closes with consistent OHLC and log-normal volume."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, sigma, n)))
    open_ = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0.0, sigma / 4, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, sigma / 2, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, sigma / 2, n)))
    volume = rng.lognormal(8.0, 0.6, n)
    ts = START_NS + np.arange(n, dtype=np.int64) * HALF_HOUR_NS
    return open_, high, low, close, volume, ts


@st.composite
def messy_bars(draw, min_size: int = 40, max_size: int = 160):
    """GBM bars with optional gaps, constant runs, zero-volume runs and NaN runs."""
    n = draw(st.integers(min_size, max_size))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    o, h, lw, c, v, ts = gbm_bars(n, seed)
    if draw(st.booleans()):  # price gaps (sessions, suspensions)
        for at in rng.integers(1, n, size=3):
            jump = np.exp(rng.normal(0.0, 0.05))
            o[at:] *= jump
            h[at:] *= jump
            lw[at:] *= jump
            c[at:] *= jump
    if draw(st.booleans()):  # a constant-price run
        a = int(rng.integers(0, n))
        b = min(n, a + int(rng.integers(5, 60)))
        o[a:b] = h[a:b] = lw[a:b] = c[a:b] = c[a]
    if draw(st.booleans()):  # zero volume run
        a = int(rng.integers(0, n))
        v[a : a + int(rng.integers(1, 30))] = 0.0
    if draw(st.booleans()):  # NaN run in prices
        a = int(rng.integers(0, n))
        b = a + int(rng.integers(1, 8))
        o[a:b] = h[a:b] = lw[a:b] = c[a:b] = np.nan
    if draw(st.booleans()):  # single bad values
        at = rng.integers(0, n, size=3)
        c[at[0]] = np.inf
        v[at[1]] = -5.0
        lw[at[2]] = -1.0
    if draw(st.booleans()):  # time gaps
        ts = ts + np.cumsum(rng.integers(0, 3, size=n)) * 86_400 * 1_000_000_000
    return o, h, lw, c, v, ts
