"""Per-symbol streaming features: one bar in, the 13-vector of that bar out.

:class:`FeatureState` returns, bar by bar, the same row that
:func:`indicators.features.build_features` computes for the whole series (it calls the
same numba "at"/"step" functions on its own buffers).

State and per-bar cost:

* Recent bars and derived series (RSIs, MLMI prediction and its WMA, yhat1, the WMAs of
  close) live in one ``(series, 2H)`` float64 buffer, ``H`` = the longest lookback. The
  newest bar is appended at the next column; when the buffer is full its last ``H``
  columns are copied to the front (amortised O(1)), so every lookback reads
  contiguous memory. Recursive quantities (Wilder RSI, ATR, Heikin-Ashi, the MLMI
  signal) keep a few floats each.
* The MMD state keeps its own ring of the last 288 feature vectors and their Gram matrix:
  O(288) per bar, plus a full refresh (O(288²)) every ``mmd_refresh`` bars.
* The MLMI store grows with history. Its rows sit in preallocated arrays whose capacity
  doubles when full (amortised O(1) appends, see :mod:`indicators.mlmi`); a grid over
  the RSI square, refined (side doubled, rebuilt) whenever the rows outnumber its cells,
  keeps each kNN query to the rows near the query, so the per-bar cost follows the
  local density of about one row per cell rather than the length of the history.
* One numba call per bar does all the work; the Python layer only converts the
  timestamp to local time (zoneinfo) and grows the MLMI store when needed.
"""

from __future__ import annotations

import datetime as _dt
import zoneinfo

import numpy as np
from numba import njit

from indicators.core import (
    atr_state_new_nb,
    atr_step_nb,
    heikin_ashi_state_new_nb,
    heikin_ashi_step_nb,
    rsi_state_new_nb,
    rsi_step_nb,
    sanitize_bar_nb,
    wma_at_nb,
)
from indicators.features import (
    N_FEATURES,
    WINDOW_ROWS,
    hour_sin_cos_nb,
    momentum_at_nb,
    volatility_at_nb,
)
from indicators.lvn import gaussian_weights_nb, lvn_at_nb, lvn_scratch_new_nb, profile_skew_at_nb
from indicators.mlmi import (
    GRID_MAX,
    MA_QUICK,
    MA_SLOW,
    PRED_MA_LENGTH,
    RSI_QUICK,
    RSI_SLOW,
    cross_event_nb,
    grid_side_nb,
    mlmi_bar_nb,
    mlmi_regrid_nb,
    mlmi_signal_step_nb,
    mlmi_store_new_nb,
    wanted_grid_side_nb,
)
from indicators.mmd import mmd_feature_at_nb, mmd_state_new_nb, mmd_step_nb
from indicators.nwrqk import nw_at_nb, nwrqk_slope_at_nb, nwrqk_value_at_nb, rq_weights_nb
from indicators.params import IndicatorParams

__all__ = ["FeatureState"]

# rows of the history buffer
_O, _H, _L, _C, _V = 0, 1, 2, 3, 4
_RSI_SLOW, _RSI_QUICK, _PRED, _PRED_MA, _YHAT, _MA_Q, _MA_S, _LOGRET = 5, 6, 7, 8, 9, 10, 11, 12
_N_SERIES = 13

# float state layout
_F_RSI_SLOW = 0  # five slots each
_F_RSI_QUICK = 5
_F_ATR = 10  # four slots
_F_HA = 14  # two slots
_F_SIG = 16
_F_META = 17  # two slots: MLMI store size, label sum
_F_MMD = 19  # eleven slots
_F_SIZE = 30

# int state: buffer position, bars seen, H
_I_POS, _I_BARS, _I_H = 0, 1, 2

# float params
_PF_BIN_WIDTH, _PF_ATR_FRACTION, _PF_THRESHOLD, _PF_PROMINENCE = 0, 1, 2, 3
# int params
(
    _PI_K,
    _PI_MOM_WINDOW,
    _PI_STORE_FIRST,
    _PI_ATR,
    _PI_LVN_WINDOW,
    _PI_MAX_BINS,
    _PI_EDGE,
    _PI_MMD_M,
    _PI_MMD_N,
    _PI_MMD_REFRESH,
    _PI_MOM_SHORT,
    _PI_MOM_LONG,
    _PI_VOL,
    _PI_SKEW,
    _PI_HA,
) = range(15)


@njit(cache=True)
def _stream_step_nb(
    hist,
    istate,
    fstate,
    pf,
    pi,
    rows,
    next_row,
    grid,
    scratch,
    lvn_scratch,
    smooth_w,
    nw_w,
    mmd_ring,
    mmd_gram,
    mmd_scratch,
    out_ring,
    o,
    h,
    low,
    c,
    v,
    local_ns,
    out,
):
    size = istate[_I_H]
    pos = istate[_I_POS] + 1
    if pos == 2 * size:
        hist[:, 0:size] = hist[:, size : 2 * size]
        pos = size
    istate[_I_POS] = pos
    g = istate[_I_BARS]
    istate[_I_BARS] = g + 1

    o, h, low, c, v = sanitize_bar_nb(o, h, low, c, v)
    if pi[_PI_HA] != 0:
        o, h, low, c = heikin_ashi_step_nb(fstate[_F_HA : _F_HA + 2], o, h, low, c)
    hist[_O, pos] = o
    hist[_H, pos] = h
    hist[_L, pos] = low
    hist[_C, pos] = c
    hist[_V, pos] = v
    close = hist[_C]
    hist[_LOGRET, pos] = np.log(c / close[pos - 1])

    # MLMI
    k = pi[_PI_K]
    hist[_RSI_SLOW, pos] = rsi_step_nb(fstate[_F_RSI_SLOW : _F_RSI_SLOW + 5], c, RSI_SLOW)
    hist[_RSI_QUICK, pos] = rsi_step_nb(fstate[_F_RSI_QUICK : _F_RSI_QUICK + 5], c, RSI_QUICK)
    ma_q = wma_at_nb(close, pos, MA_QUICK)
    ma_s = wma_at_nb(close, pos, MA_SLOW)
    hist[_MA_Q, pos] = ma_q
    hist[_MA_S, pos] = ma_s
    event = cross_event_nb(ma_q, ma_s, hist[_MA_Q, pos - 1], hist[_MA_S, pos - 1])
    p1 = wma_at_nb(hist[_RSI_SLOW], pos, pi[_PI_MOM_WINDOW])
    p2 = wma_at_nb(hist[_RSI_QUICK], pos, pi[_PI_MOM_WINDOW])
    pred = mlmi_bar_nb(
        rows,
        next_row,
        grid,
        fstate[_F_META : _F_META + 2],
        p1,
        p2,
        c,
        event,
        k,
        pi[_PI_STORE_FIRST] != 0,
        scratch,
    )
    hist[_PRED, pos] = pred
    pred_ma = wma_at_nb(hist[_PRED], pos, PRED_MA_LENGTH)
    hist[_PRED_MA, pos] = pred_ma
    out[0] = pred / k
    out[1] = mlmi_signal_step_nb(
        fstate[_F_SIG : _F_SIG + 1], pred, pred_ma, hist[_PRED, pos - 1], hist[_PRED_MA, pos - 1]
    )

    # NWRQK
    atr = atr_step_nb(fstate[_F_ATR : _F_ATR + 4], h, low, c, pi[_PI_ATR])
    yhat = nw_at_nb(close, pos, nw_w)
    hist[_YHAT, pos] = yhat
    out[2] = nwrqk_value_at_nb(c, yhat)
    out[3] = nwrqk_slope_at_nb(yhat, hist[_YHAT, pos - 1], atr)

    # LVN
    if g >= pi[_PI_LVN_WINDOW] - 1:
        out[4], out[5], _present = lvn_at_nb(
            hist[_H],
            hist[_L],
            close,
            hist[_V],
            pos,
            atr,
            pi[_PI_LVN_WINDOW],
            pf[_PF_BIN_WIDTH],
            pf[_PF_ATR_FRACTION],
            pi[_PI_MAX_BINS],
            smooth_w,
            pf[_PF_THRESHOLD],
            pf[_PF_PROMINENCE],
            pi[_PI_EDGE],
            lvn_scratch,
        )
    else:
        out[4] = np.nan
        out[5] = np.nan

    # hour
    out[6], out[7] = hour_sin_cos_nb(local_ns)

    # MMD
    f0, f1, f2 = mmd_feature_at_nb(h, low, c, close[pos - 1])
    out[8] = mmd_step_nb(
        fstate[_F_MMD : _F_MMD + 11],
        mmd_ring,
        mmd_gram,
        mmd_scratch,
        f0,
        f1,
        f2,
        pi[_PI_MMD_M],
        pi[_PI_MMD_N],
        pi[_PI_MMD_REFRESH],
    )

    # momentum, volatility, skew
    out[9] = momentum_at_nb(close, pos, pi[_PI_MOM_SHORT])
    out[10] = momentum_at_nb(close, pos, pi[_PI_MOM_LONG])
    out[11] = volatility_at_nb(hist[_LOGRET], pos, pi[_PI_VOL])
    if g >= pi[_PI_SKEW] - 1:
        out[12] = profile_skew_at_nb(hist[_H], hist[_L], hist[_V], pos, pi[_PI_SKEW])
    else:
        out[12] = np.nan

    row = g % out_ring.shape[0]
    for j in range(out.shape[0]):
        out_ring[row, j] = out[j]


class FeatureState:
    """Streaming 13-feature state of one symbol.

    ``update(ts_ns, open, high, low, close, volume)`` takes one closed bar (``ts_ns``:
    int64 nanoseconds UTC of the bar's close) and returns its 13-vector, equal to the
    corresponding row of :func:`indicators.features.build_features` to 1e-9.
    """

    def __init__(self, params: IndicatorParams | None = None, initial_capacity: int = 1024):
        p = IndicatorParams() if params is None else params
        p.validate()
        self.params = p
        size = 2 + max(
            p.momentum_long_window,
            p.momentum_short_window,
            p.volatility_window,
            p.lvn_window,
            p.skew_window,
            p.nwrqk_x0 + 2,
            p.mlmi_momentum_window,
            PRED_MA_LENGTH,
            MA_SLOW,
        )
        self._hist = np.full((_N_SERIES, 2 * size), np.nan)
        self._istate = np.array([size - 1, 0, size], dtype=np.int64)
        f = np.zeros(_F_SIZE)
        f[_F_RSI_SLOW : _F_RSI_SLOW + 5] = rsi_state_new_nb()
        f[_F_RSI_QUICK : _F_RSI_QUICK + 5] = rsi_state_new_nb()
        f[_F_ATR : _F_ATR + 4] = atr_state_new_nb()
        f[_F_HA : _F_HA + 2] = heikin_ashi_state_new_nb()
        mmd_state, self._mmd_ring, self._mmd_gram, self._mmd_scratch = mmd_state_new_nb(
            p.mmd_reference_window, p.mmd_test_window
        )
        rows, next_row, grid, meta = mlmi_store_new_nb(max(int(initial_capacity), 2))
        f[_F_META : _F_META + 2] = meta
        f[_F_MMD : _F_MMD + 11] = mmd_state
        self._fstate = f
        self._rows = rows
        self._next_row = next_row
        self._grid = grid
        self._grid_side = int(grid_side_nb(grid))
        self._grid_cells = self._grid_side**2
        self._scratch = np.empty((3, rows.shape[0]))
        self._pf = np.array(
            [p.lvn_bin_width, p.lvn_bin_atr_fraction, p.lvn_threshold, p.lvn_min_prominence],
            dtype=np.float64,
        )
        self._pi = np.array(
            [
                p.mlmi_k,
                p.mlmi_momentum_window,
                int(p.mlmi_store_then_predict),
                p.atr_length,
                p.lvn_window,
                p.lvn_max_bins,
                p.lvn_edge_bins,
                p.mmd_reference_window,
                p.mmd_test_window,
                p.mmd_refresh,
                p.momentum_short_window,
                p.momentum_long_window,
                p.volatility_window,
                p.skew_window,
                int(p.heikin_ashi),
            ],
            dtype=np.int64,
        )
        self._lvn_scratch = lvn_scratch_new_nb(p.lvn_max_bins)
        self._smooth_w = gaussian_weights_nb(float(p.lvn_smoothing_bins))
        self._nw_w = rq_weights_nb(float(p.nwrqk_h), float(p.nwrqk_r), p.nwrqk_x0)
        self._out_ring = np.full((WINDOW_ROWS, N_FEATURES), np.nan)
        self._out = np.empty(N_FEATURES)
        self._zone = None if p.timezone == "UTC" else zoneinfo.ZoneInfo(p.timezone)

    @property
    def n_bars(self) -> int:
        """Number of bars fed so far."""
        return int(self._istate[_I_BARS])

    @property
    def mlmi_store_size(self) -> int:
        """Rows in the MLMI store, the sentinel included."""
        return int(self._fstate[_F_META])

    @property
    def mlmi_grid_side(self) -> int:
        """Cells per side of the MLMI store's grid (32, doubled up to ``GRID_MAX``)."""
        return self._grid_side

    def _local_ns(self, ts_ns: int) -> int:
        if self._zone is None:
            return ts_ns
        utc = _dt.datetime.fromtimestamp(ts_ns // 1_000_000_000, tz=_dt.UTC)
        offset = utc.astimezone(self._zone).utcoffset()
        if offset is None:
            return ts_ns
        return ts_ns + (offset // _dt.timedelta(seconds=1)) * 1_000_000_000

    def _grow_store(self) -> None:
        cap = self._rows.shape[0]
        rows = np.zeros((2 * cap, 4))
        rows[:cap] = self._rows
        next_row = np.full(2 * cap, -1, dtype=np.int64)
        next_row[:cap] = self._next_row
        self._rows = rows
        self._next_row = next_row
        self._scratch = np.empty((3, 2 * cap))

    def update(self, ts_ns, open, high, low, close, volume) -> np.ndarray:
        """Feed one closed bar; returns its 13 features (a new array)."""
        if self._fstate[_F_META] + 1 >= self._rows.shape[0]:
            self._grow_store()
        ts = int(ts_ns)
        _stream_step_nb(
            self._hist,
            self._istate,
            self._fstate,
            self._pf,
            self._pi,
            self._rows,
            self._next_row,
            self._grid,
            self._scratch,
            self._lvn_scratch,
            self._smooth_w,
            self._nw_w,
            self._mmd_ring,
            self._mmd_gram,
            self._mmd_scratch,
            self._out_ring,
            float(open),
            float(high),
            float(low),
            float(close),
            float(volume),
            self._local_ns(ts),
            self._out,
        )
        n_rows = int(self._fstate[_F_META])
        if n_rows > self._grid_cells and self._grid_side < GRID_MAX:
            side = wanted_grid_side_nb(n_rows)
            self._grid = mlmi_regrid_nb(self._rows, self._next_row, self._fstate[_F_META:], side)
            self._grid_side = side
            self._grid_cells = side * side
        return self._out.copy()

    def window(self, rows: int = WINDOW_ROWS) -> np.ndarray:
        """The last ``rows`` (<= 48) feature rows, oldest first; NaN before the first bar."""
        if not 1 <= rows <= WINDOW_ROWS:
            raise ValueError(f"rows must be in [1, {WINDOW_ROWS}]; got {rows}")
        g = self.n_bars
        out = np.full((rows, N_FEATURES), np.nan)
        for i in range(min(rows, g)):
            out[rows - 1 - i] = self._out_ring[(g - 1 - i) % WINDOW_ROWS]
        return out
