"""Slow, obvious reference implementations for the indicator kernels.

Written as literal per-bar loops over Python lists (Pine series semantics: ``x[i]``
bars back is ``na`` before the first bar and ``na`` poisons arithmetic), or with
numpy / scipy, independently of the numba code.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter1d
from scipy.signal import find_peaks
from scipy.spatial.distance import cdist, pdist

NA = float("nan")


def _isna(x: float) -> bool:
    return x != x


def bars_back(series: list[float], t: int, i: int) -> float:
    """Pine ``series[i]`` evaluated on bar t."""
    return series[t - i] if t - i >= 0 else NA


# ------------------------------------------------------------------ Pine building blocks


def pine_wma(series: list[float], length: int) -> list[float]:
    out = []
    norm = length * (length + 1) / 2.0
    for t in range(len(series)):
        total = 0.0
        for i in range(length):
            total += (length - i) * bars_back(series, t, i)
        out.append(total / norm)  # any na in the window leaves total na
    return out


def wilder_rsi(series: list[float], length: int) -> list[float]:
    """TradingView RSI with Wilder averages; an na input restarts the seeding."""
    out = []
    gains: list[float] = []
    losses: list[float] = []
    avg_up = avg_down = NA
    for t in range(len(series)):
        x, prev = series[t], bars_back(series, t, 1)
        if _isna(x) or _isna(prev):
            gains, losses = [], []
            avg_up = avg_down = NA
            out.append(NA)
            continue
        up, down = max(x - prev, 0.0), max(prev - x, 0.0)
        if len(gains) < length:
            gains.append(up)
            losses.append(down)
            if len(gains) < length:
                out.append(NA)
                continue
            total_up = 0.0
            total_down = 0.0
            for g, lo in zip(gains, losses, strict=True):
                total_up += g
                total_down += lo
            avg_up, avg_down = total_up / length, total_down / length
        else:
            avg_up = (avg_up * (length - 1) + up) / length
            avg_down = (avg_down * (length - 1) + down) / length
        if avg_down == 0.0:
            out.append(100.0)
        elif avg_up == 0.0:
            out.append(0.0)
        else:
            out.append(100.0 - 100.0 / (1.0 + avg_up / avg_down))
    return out


# ------------------------------------------------------------------ MLMI


def mlmi_reference(
    close: list[float], k: int = 200, momentum_window: int = 20, store_then_predict=True
):
    """(pred, pred_ma, signal) by brute force over the whole store, sentinel included."""
    close = [float(c) for c in close]
    ma_quick = pine_wma(close, 5)
    ma_slow = pine_wma(close, 20)
    p1 = pine_wma(wilder_rsi(close, 20), momentum_window)
    p2 = pine_wma(wilder_rsi(close, 5), momentum_window)
    store_p1, store_p2, store_price, store_label = [0.0], [0.0], [0.0], [0]
    pred = []
    for t in range(len(close)):
        q, qs = ma_quick[t], ma_slow[t]
        q1, qs1 = bars_back(ma_quick, t, 1), bars_back(ma_slow, t, 1)
        crossover = q > qs and q1 <= qs1
        crossunder = q < qs and q1 >= qs1
        query_ok = not (_isna(p1[t]) or _isna(p2[t]))
        store = (crossover or crossunder) and query_ok and not _isna(close[t])

        def add(t=t):
            store_label.append(1 if close[t] >= store_price[-1] else -1)
            store_p1.append(p1[t])
            store_p2.append(p2[t])
            store_price.append(close[t])

        if store and store_then_predict:
            add()
        if query_ok:
            dist = []
            for j in range(len(store_p1)):
                a = p1[t] - store_p1[j]
                b = p2[t] - store_p2[j]
                dist.append(math.sqrt(a * a + b * b))
            d_k = sorted(dist)[min(k, len(dist)) - 1]
            pred.append(
                float(sum(lab for d, lab in zip(dist, store_label, strict=True) if d <= d_k))
            )
        else:
            pred.append(NA)
        if store and not store_then_predict:
            add()
    pred_ma = pine_wma(pred, 20)
    signal = []
    last = 0.0
    for t in range(len(close)):
        if _isna(pred[t]) or _isna(pred_ma[t]):
            signal.append(NA)
            continue
        prev_p, prev_m = bars_back(pred, t, 1), bars_back(pred_ma, t, 1)
        if pred[t] > pred_ma[t] and prev_p <= prev_m:
            last = 1.0
        elif pred[t] < pred_ma[t] and prev_p >= prev_m:
            last = -1.0
        signal.append(last)
    return np.array(pred), np.array(pred_ma), np.array(signal)


def ema_restarting(values: list[float], length: int) -> list[float]:
    """EMA seeded by the mean of the first ``length`` values of each run of valid inputs."""
    out = []
    run: list[float] = []
    ema = NA
    alpha = 2.0 / (length + 1.0)
    for x in values:
        if _isna(x):
            run = []
            ema = NA
            out.append(NA)
            continue
        if len(run) < length:
            run.append(x)
            if len(run) == length:
                ema = sum(run) / length
            out.append(ema if len(run) == length else NA)
            continue
        ema = alpha * x + (1.0 - alpha) * ema
        out.append(ema)
    return out


def mlmi_bands_reference(pred, lookback=2000, stdev_length=20, ema_length=20):
    """(upper, lower, width, upper_inner, lower_inner) with pandas rolling windows.

    ``min_periods`` is the full window, so a window holding NaN is NaN (Pine's
    ``ta.highest`` / ``ta.lowest`` / ``ta.stdev`` need the full history too); the stdev
    is the population one (ddof 0, as ``ta.stdev``).
    """
    s = pd.Series(np.asarray(pred, dtype=np.float64))
    upper = s.rolling(lookback).max().to_numpy()
    lower = s.rolling(lookback).min().to_numpy()
    # numpy's two-pass std per window: pandas' running variance leaves a rounding residue
    # that the square root turns into a visible nonzero width on constant runs
    stdev = s.rolling(stdev_length).apply(np.std, raw=True)
    width = np.array(ema_restarting(stdev.tolist(), ema_length))
    return upper, lower, width, upper - width, lower + width


# ------------------------------------------------------------------ NW-RQK


def nwrqk_pine(src: list[float], h: float, r: float, x_0: int) -> list[float]:
    """Transcription of jdehorty's loop: ``for i = 0 to size + x_0`` with size == 1."""
    size = 1
    out = []
    for t in range(len(src)):
        current_weight = 0.0
        cumulative_weight = 0.0
        for i in range(size + x_0 + 1):
            y = bars_back(src, t, i)
            w = math.pow(1 + (math.pow(i, 2) / (math.pow(h, 2) * 2 * r)), -r)
            current_weight += y * w
            cumulative_weight += w
        out.append(current_weight / cumulative_weight)
    return out


# ------------------------------------------------------------------ LVN / profile


def lvn_reference(
    high,
    low,
    close,
    volume,
    atr,
    t,
    window=48,
    bin_width=0.0,
    atr_fraction=0.1,
    max_bins=200,
    smoothing=1.0,
    threshold=0.3,
    min_prominence=0.25,
    edge_bins=2,
):
    """(distance, strength, present) at bar t with numpy histograms and scipy peaks."""
    if t - window + 1 < 0:
        return NA, NA, NA
    sl = slice(t - window + 1, t + 1)
    h, lo_, v = high[sl], low[sl], volume[sl]
    keep = np.isfinite(h) & np.isfinite(v) & (v > 0)
    h, lo_, v = h[keep], lo_[keep], v[keep]
    if v.sum() <= 0 or h.size == 0:
        return NA, NA, NA
    lo, hi = lo_.min(), h.max()
    rng = hi - lo
    if not rng > 0:
        return NA, 0.0, 0.0
    delta = bin_width if bin_width > 0 else atr[t] * atr_fraction
    n_bins = int(min(max_bins, max(1, math.ceil(rng / delta)))) if delta > 0 else max_bins
    if n_bins < max(2 * edge_bins + 3, 3):
        return NA, 0.0, 0.0
    width = rng / n_bins
    edges = lo + np.arange(n_bins + 1) * width
    profile = np.zeros(n_bins)
    for hb, lb, vb in zip(h, lo_, v, strict=True):
        if hb == lb:
            j = min(int(np.floor((lb - lo) / width)), n_bins - 1)
            profile[j] += vb
        else:
            overlap = np.clip(np.minimum(hb, edges[1:]) - np.maximum(lb, edges[:-1]), 0, None)
            share = vb * overlap / (hb - lb)
            full = (lb <= edges[:-1]) & (edges[1:] <= hb)
            profile += np.where(full, vb * width / (hb - lb), share)
    if smoothing > 0:
        smooth = gaussian_filter1d(profile, smoothing, mode="reflect", truncate=4.0)
    else:
        smooth = profile.copy()
    minima, _ = find_peaks(-smooth)
    best = None
    for j in minima:
        if not (edge_bins <= j < n_bins - edge_bins):
            continue
        if smooth[j] > threshold * smooth.max():
            continue
        strength = 1 - smooth[j] / min(smooth[:j].max(), smooth[j + 1 :].max())
        if strength < min_prominence or strength <= 1e-9:
            continue
        price = lo + (j + 0.5) * width
        d = abs(close[t] - price)
        if best is None or d < best[0]:
            best = (d, price, strength)
    if best is None:
        return NA, 0.0, 0.0
    dist = (close[t] - best[1]) / atr[t] if atr[t] > 0 else NA
    return dist, best[2], 1.0


def profile_skew_reference(high, low, volume, t, window=48):
    """Skewness from the raw moments E[x^k] = (h^(k+1) - l^(k+1)) / ((k+1)(h - l))."""
    if t - window + 1 < 0:
        return NA
    sl = slice(t - window + 1, t + 1)
    h, lo, v = high[sl], low[sl], volume[sl]
    keep = np.isfinite(h) & np.isfinite(v) & (v > 0)
    h, lo, v = h[keep], lo[keep], v[keep]
    if v.sum() <= 0:
        return NA
    shift = lo.min()  # skewness is shift invariant; shifting avoids cancellation
    h, lo = h - shift, lo - shift
    raw = []
    for power in (1, 2, 3):
        point = lo**power
        span = np.where(h > lo, h - lo, 1.0)
        uniform = (h ** (power + 1) - lo ** (power + 1)) / ((power + 1) * span)
        raw.append(np.sum(v * np.where(h > lo, uniform, point)) / v.sum())
    m1, m2r, m3r = raw
    var = m2r - m1 * m1
    third = m3r - 3 * m1 * m2r + 2 * m1**3
    if not var > (1e-10 * (m1 + shift)) ** 2:
        return NA
    return third / var**1.5


# ------------------------------------------------------------------ MMD


def mmd2_double_sum(X: np.ndarray, Y: np.ndarray, sigma: float) -> float:
    """Unbiased MMD² from explicit Gram matrices (numpy)."""
    m, n = len(X), len(Y)
    kxx = np.exp(-cdist(X, X, "sqeuclidean") / (2 * sigma**2))
    kyy = np.exp(-cdist(Y, Y, "sqeuclidean") / (2 * sigma**2))
    kxy = np.exp(-cdist(X, Y, "sqeuclidean") / (2 * sigma**2))
    return (
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2 * kxy.sum() / (m * n)
    )


def rolling_mmd_reference(features: np.ndarray, m: int, n: int, refresh: int) -> np.ndarray:
    """MMD²_u per bar with the documented refresh schedule, from scratch every bar."""
    N = m + n
    n_bars = len(features)
    finite = np.all(np.isfinite(features), axis=1)
    out = np.full(n_bars, NA)
    scale = sigma = None
    last_refresh = None
    prev_valid = False
    for t in range(n_bars):
        valid = t - N + 1 >= 0 and bool(finite[t - N + 1 : t + 1].all())
        if not valid:
            prev_valid = False
            continue
        window = features[t - N + 1 : t + 1]
        if not prev_valid or t - last_refresh >= refresh:
            std = window[:m].std(axis=0)
            scale = np.where(std**2 > 1e-24, std, 1.0)
            sigma = float(np.median(pdist(window / scale)))
            if not (np.isfinite(sigma) and sigma > 1e-12):
                sigma = 1.0
            last_refresh = t
        prev_valid = True
        z = window / scale
        out[t] = mmd2_double_sum(z[:m], z[m:], sigma)
    return out


def nwrqk_signals_pine(yhat1: list[float], yhat2: list[float]) -> dict:
    """The indicator's signal logic bar by bar on the two estimates (series, oldest first).

    Each signal reads ``yhat[1]``/``yhat[2]`` as in the script; where anything it reads is
    ``na`` the result is ``na`` (NaN) instead of Pine's ``false``. The estimates are an
    input: where yhat1 and yhat2 are equal up to rounding (flat prices) the smooth flags
    depend on the last bit, so the logic is checked on the very values it is given and
    the filters are checked against :func:`nwrqk_pine` separately.
    """
    yhat1 = [float(y) for y in yhat1]
    yhat2 = [float(y) for y in yhat2]
    names = (
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
    out: dict[str, list[float]] = {name: [] for name in names}
    for t in range(len(yhat1)):
        a0, a1, a2 = (bars_back(yhat1, t, i) for i in range(3))
        b0, b1 = bars_back(yhat2, t, 0), bars_back(yhat2, t, 1)
        rate_na = any(map(_isna, (a0, a1)))
        change_na = rate_na or _isna(a2)
        smooth_na = _isna(a0) or _isna(b0)
        cross_na = any(map(_isna, (a0, a1, b0, b1)))
        is_bullish = a1 < a0
        is_bearish = a1 > a0
        was_bullish = a2 < a1
        was_bearish = a2 > a1
        is_bullish_change = is_bullish and was_bearish
        is_bearish_change = is_bearish and was_bullish
        is_bullish_cross = b0 > a0 and b1 <= a1
        is_bearish_cross = b0 < a0 and b1 >= a1
        row = {
            "is_bullish": (rate_na, float(is_bullish)),
            "is_bearish": (rate_na, float(is_bearish)),
            "is_bullish_change": (change_na, float(is_bullish_change)),
            "is_bearish_change": (change_na, float(is_bearish_change)),
            "is_bullish_cross": (cross_na, float(is_bullish_cross)),
            "is_bearish_cross": (cross_na, float(is_bearish_cross)),
            "is_bullish_smooth": (smooth_na, float(b0 > a0)),
            "is_bearish_smooth": (smooth_na, float(b0 < a0)),
            "rate_colour": (rate_na, 1.0 if is_bullish else -1.0),
            "smooth_colour": (smooth_na, 1.0 if b0 > a0 else -1.0),
            "rate_alert": (
                change_na,
                1.0 if is_bullish_change else -1.0 if is_bearish_change else 0.0,
            ),
            "cross_alert": (
                cross_na,
                1.0 if is_bullish_cross else -1.0 if is_bearish_cross else 0.0,
            ),
        }
        for name, (missing, value) in row.items():
            out[name].append(NA if missing else value)
    return {name: np.array(values) for name, values in out.items()}
