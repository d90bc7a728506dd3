"""The 13-column feature matrix (INDICATORS.md, "Decisions for emarl").

| col | name | first valid index (defaults, clean series) |
|---|---|---|
| 0 | mlmi_value = pred / k | 39 |
| 1 | mlmi_signal | 58 |
| 2 | nwrqk_value | 26 |
| 3 | nwrqk_slope | 27 |
| 4 | lvn_distance | 47 (NaN when no LVN) |
| 5 | lvn_strength | 47 (0 when no LVN) |
| 6 | hour_sin | 0 |
| 7 | hour_cos | 0 |
| 8 | mmd_score | 288 |
| 9 | momentum_20 | 20 |
| 10 | momentum_50 | 50 |
| 11 | volatility_30 | 30 |
| 12 | volume_profile_skew | 47 |

All 13 are valid from index ``IndicatorParams().warmup`` = 288 (the MMD windows), except
``lvn_distance`` where no LVN exists. Before an output's first valid index it is NaN.

Bars are first cleaned (:func:`indicators.core.sanitize_bar_nb`: non-finite or
non-positive prices, or high < low, make the bar's prices NaN; non-finite or negative
volume becomes NaN) and, with ``heikin_ashi=True``, turned into Heikin-Ashi bars.

``momentum_w[t] = log(close[t] / close[t-w])``; ``volatility_30`` is the standard
deviation (ddof 1) of the last 30 log returns (0 for constant prices). The hour is the
fractional hour of the bar's close (``ts_ns``, int64 ns UTC) in ``params.timezone``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numba import njit

from indicators.core import atr_nb, heikin_ashi_nb, sanitize_bars_nb
from indicators.lvn import lvn_nb, profile_skew_nb
from indicators.mlmi import mlmi_features_nb
from indicators.mmd import mmd_features_nb, mmd_score_nb
from indicators.nwrqk import nw_filter_nb, nwrqk_features_nb, rq_weights_nb
from indicators.params import IndicatorParams

__all__ = [
    "FEATURE_NAMES",
    "LVN_DISTANCE_CAP",
    "MLMI_SLICE",
    "NWRQK_SLICE",
    "N_FEATURES",
    "REGIME_SLICE",
    "WINDOW_ROWS",
    "agent_inputs",
    "build_features",
    "feature_frame",
    "feature_window",
    "local_hours",
    "log_returns_nb",
    "returns_features_nb",
    "rolling_windows",
    "warm_mask",
]

FEATURE_NAMES: tuple[str, ...] = (
    "mlmi_value",
    "mlmi_signal",
    "nwrqk_value",
    "nwrqk_slope",
    "lvn_distance",
    "lvn_strength",
    "hour_sin",
    "hour_cos",
    "mmd_score",
    "momentum_20",
    "momentum_50",
    "volatility_30",
    "volume_profile_skew",
)
N_FEATURES = 13
WINDOW_ROWS = 48

MLMI_SLICE: tuple[int, ...] = (0, 1, 9, 10)
NWRQK_SLICE: tuple[int, ...] = (2, 3, 4, 5)
REGIME_SLICE: tuple[int, ...] = (8, 11, 12)
AGENT_SLICES: dict[str, tuple[int, ...]] = {
    "mlmi": MLMI_SLICE,
    "nwrqk": NWRQK_SLICE,
    "regime": REGIME_SLICE,
}

#: Finite stand-in for a missing LVN in the NWRQK agent's inputs, in ATR_14 units: far
#: beyond any LVN a 48-bar profile can place (a 48-bar range rarely exceeds 20 ATRs),
#: so that ``min(1, distance / max_distance)`` saturates. Paired with strength 0.
LVN_DISTANCE_CAP = 50.0

COL_LVN_DISTANCE = 4
COL_LVN_STRENGTH = 5

_NS_PER_DAY = 86_400 * 1_000_000_000
_NS_PER_HOUR = 3_600 * 1_000_000_000


# --------------------------------------------------------------------------- kernels


@njit(cache=True)
def momentum_at_nb(close, t, window):
    """log(close[t] / close[t - window])."""
    if t - window < 0:
        return np.nan
    return np.log(close[t] / close[t - window])


@njit(cache=True)
def log_returns_nb(close):
    """``log(close[t] / close[t-1])`` per bar; NaN at bar 0."""
    n = close.shape[0]
    out = np.full(n, np.nan)
    for t in range(1, n):
        out[t] = np.log(close[t] / close[t - 1])
    return out


@njit(cache=True)
def volatility_at_nb(log_ret, t, window):
    """Sample std (ddof 1) of the ``window`` log returns ending at bar t.

    ``log_ret`` is :func:`log_returns_nb` of the closes (the streaming state keeps the
    same series), so each return is computed once, not once per window it falls in.
    """
    if t - window < 0:
        return np.nan
    mean = 0.0
    for i in range(window):
        r = log_ret[t - i]
        if np.isnan(r):
            return np.nan
        mean += r
    mean /= window
    ss = 0.0
    for i in range(window):
        d = log_ret[t - i] - mean
        ss += d * d
    return np.sqrt(ss / (window - 1))


@njit(cache=True)
def returns_features_nb(close, short_window, long_window, volatility_window):
    """The columns of the closes' returns, (n, 3): log momentum over ``short_window`` and
    over ``long_window`` bars, and the volatility of the log returns over
    ``volatility_window``; first valid indices the windows. Each bar makes the calls the
    streaming state makes."""
    n = close.shape[0]
    log_ret = log_returns_nb(close)
    out = np.full((n, 3), np.nan)
    for t in range(n):
        out[t, 0] = momentum_at_nb(close, t, short_window)
        out[t, 1] = momentum_at_nb(close, t, long_window)
        out[t, 2] = volatility_at_nb(log_ret, t, volatility_window)
    return out


@njit(cache=True)
def hour_of_day_nb(local_ns):
    """Fractional hour in [0, 24) of int64 local wall-clock nanoseconds."""
    ns_of_day = local_ns % _NS_PER_DAY
    return ns_of_day / _NS_PER_HOUR


@njit(cache=True)
def hour_sin_cos_nb(local_ns):
    """(sin, cos) of 2π hour / 24 for one local wall-clock time in int64 nanoseconds."""
    angle = 2.0 * np.pi * hour_of_day_nb(local_ns) / 24.0
    return np.sin(angle), np.cos(angle)


@njit(cache=True)
def hour_features_nb(local_ns):
    """(sin, cos) of 2π hour / 24 for an int64 array of local wall-clock nanoseconds."""
    n = local_ns.shape[0]
    s = np.empty(n)
    c = np.empty(n)
    for t in range(n):
        s[t], c[t] = hour_sin_cos_nb(local_ns[t])
    return s, c


# --------------------------------------------------------------------------- python layer


def local_hours(ts_ns: np.ndarray, timezone: str) -> np.ndarray:
    """Local wall-clock int64 nanoseconds of UTC ``ts_ns`` in ``timezone`` (pandas/tzdata)."""
    ts_ns = np.asarray(ts_ns, dtype=np.int64)
    if timezone == "UTC":
        return ts_ns.copy()
    idx = pd.DatetimeIndex(pd.to_datetime(ts_ns, unit="ns", utc=True)).tz_convert(timezone)
    local = idx.tz_localize(None).as_unit("ns")
    return np.asarray(local.asi8, dtype=np.int64)


def _prepare_bars(open_, high, low, close, volume, params: IndicatorParams):
    arrays = [np.ascontiguousarray(a, dtype=np.float64) for a in (open_, high, low, close, volume)]
    n = arrays[3].shape[0]
    for name, a in zip(("open", "high", "low", "close", "volume"), arrays, strict=True):
        if a.ndim != 1 or a.shape[0] != n:
            raise ValueError(
                f"{name} must be a 1-D array of the same length as close ({n}); got shape {a.shape}"
            )
    o, h, lw, c, v = sanitize_bars_nb(*arrays)
    if params.heikin_ashi:
        o, h, lw, c = heikin_ashi_nb(o, h, lw, c)
    return o, h, lw, c, v


def build_features(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    ts_ns: np.ndarray,
    params: IndicatorParams | None = None,
) -> np.ndarray:
    """The (n, 13) feature matrix, columns in :data:`FEATURE_NAMES` order.

    Row t uses bars 0..t only. ``ts_ns`` holds int64 nanoseconds UTC of each bar's close.
    """
    if params is None:
        params = IndicatorParams()
    params.validate()
    _o, h, lw, c, v = _prepare_bars(open_, high, low, close, volume, params)
    n = c.shape[0]
    ts = np.asarray(ts_ns)
    if ts.ndim != 1 or ts.shape[0] != n:
        raise ValueError(f"ts_ns must be a 1-D array of length {n}; got shape {ts.shape}")
    out = np.empty((n, N_FEATURES))
    p = params
    pred, _pred_ma, signal = mlmi_features_nb(
        c, p.mlmi_k, p.mlmi_momentum_window, p.mlmi_store_then_predict
    )
    out[:, 0] = pred / p.mlmi_k
    out[:, 1] = signal
    atr = atr_nb(h, lw, c, p.atr_length)
    yhat1 = nw_filter_nb(c, rq_weights_nb(float(p.nwrqk_h), float(p.nwrqk_r), p.nwrqk_x0))
    out[:, 2], out[:, 3] = nwrqk_features_nb(c, yhat1, atr)
    dist, strength, _present = lvn_nb(
        h,
        lw,
        c,
        v,
        atr,
        p.lvn_window,
        float(p.lvn_bin_width),
        float(p.lvn_bin_atr_fraction),
        p.lvn_max_bins,
        float(p.lvn_smoothing_bins),
        float(p.lvn_threshold),
        float(p.lvn_min_prominence),
        p.lvn_edge_bins,
    )
    out[:, 4] = dist
    out[:, 5] = strength
    out[:, 6], out[:, 7] = hour_features_nb(local_hours(ts, p.timezone))
    out[:, 8] = mmd_score_nb(
        mmd_features_nb(h, lw, c), p.mmd_reference_window, p.mmd_test_window, p.mmd_refresh
    )
    out[:, 9:12] = returns_features_nb(
        c, p.momentum_short_window, p.momentum_long_window, p.volatility_window
    )
    out[:, 12] = profile_skew_nb(h, lw, v, p.skew_window)
    return out


def feature_window(features: np.ndarray, t: int, rows: int = WINDOW_ROWS) -> np.ndarray:
    """The ``rows`` x 13 matrix ending at row ``t`` (oldest first, newest = bar t).

    Rows before the start of the series are NaN.
    """
    if not 0 <= t < features.shape[0]:
        raise ValueError(f"t must be in [0, {features.shape[0]}); got {t}")
    out = np.full((rows, features.shape[1]), np.nan)
    start = t - rows + 1
    src = features[max(start, 0) : t + 1]
    out[rows - src.shape[0] :] = src
    return out


def rolling_windows(features: np.ndarray, rows: int = WINDOW_ROWS) -> np.ndarray:
    """Read-only view (n - rows + 1, rows, 13): window i ends at row i + rows - 1."""
    view = np.lib.stride_tricks.sliding_window_view(features, rows, axis=0)
    return view.transpose(0, 2, 1)


def agent_inputs(features: np.ndarray, agent: str) -> np.ndarray:
    """An agent's columns of a (…, 13) array, with the documented NaN encodings applied.

    For the NWRQK agent a NaN ``lvn_distance`` (no LVN) becomes :data:`LVN_DISTANCE_CAP`
    where ``lvn_strength`` is 0 (a valid profile with no LVN); never 0 distance. Other
    NaNs (warm-up, undefined ATR) are left as they are.
    """
    try:
        cols = AGENT_SLICES[agent]
    except KeyError:
        raise ValueError(
            f"unknown agent {agent!r}; expected one of {sorted(AGENT_SLICES)}"
        ) from None
    x = np.array(features[..., list(cols)], dtype=np.float64)
    if agent == "nwrqk":
        dist = x[..., 2]
        strength = x[..., 3]
        missing = np.isnan(dist) & (strength == 0.0)
        dist[missing] = LVN_DISTANCE_CAP
        strength[missing] = 0.0
    return x


def warm_mask(features: np.ndarray, params: IndicatorParams | None = None) -> np.ndarray:
    """Boolean per row: the warm-up is over and every agent input is finite.

    Row t is warm when ``t >= params.warmup`` and the three agents' slices of row t
    (:func:`agent_inputs`, a missing LVN already encoded) hold no NaN or infinity.
    Nothing trades on a row that is not warm.
    """
    p = IndicatorParams() if params is None else params
    n = features.shape[0]
    warm = np.arange(n) >= p.warmup
    for agent in AGENT_SLICES:
        warm &= np.isfinite(agent_inputs(features, agent)).all(axis=1)
    return warm


def feature_frame(
    features: np.ndarray, ts_ns: np.ndarray, params: IndicatorParams | None = None
) -> pd.DataFrame:
    """The feature matrix of :func:`build_features` as a DataFrame: a UTC ``ts`` index (bar
    close), the 13 named columns and ``warm`` (:func:`warm_mask`)."""
    p = IndicatorParams() if params is None else params
    values = np.asarray(features)
    frame = pd.DataFrame(values, columns=list(FEATURE_NAMES))
    frame["warm"] = warm_mask(values, p)
    frame.index = pd.DatetimeIndex(pd.to_datetime(np.asarray(ts_ns, dtype=np.int64), utc=True))
    frame.index.name = "ts"
    return frame
