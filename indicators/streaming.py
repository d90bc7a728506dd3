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
  doubles when full (amortised O(1) appends, see :mod:`indicators.mlmi`); an index of
  the rows sorted by cell of a grid over the RSI square (about one row per cell,
  rebuilt once more than ``max(64, sqrt(S))`` new rows wait outside it) keeps each kNN
  query to the rows near the query plus the waiting ones, so the per-bar cost follows
  the local density of rows rather than the length of the history.
* One numba call per bar does all the work. Every fixed-size array (history, states,
  weights, the MMD ring and Gram matrix, the output rows) is a view of one float
  buffer and the integers share one int buffer, so that call takes six arrays; the
  Python layer only converts the timestamp to local time (zoneinfo) and, when the
  kernel's flags ask for it, grows or reindexes the MLMI store.
"""

from __future__ import annotations

import datetime as _dt
import zoneinfo
from typing import NamedTuple

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
from indicators.lvn import (
    LvnProfile,
    gaussian_weights_nb,
    lvn_at_nb,
    lvn_scratch_new_nb,
    profile_skew_at_nb,
)
from indicators.mlmi import (
    MA_QUICK,
    MA_SLOW,
    META_SIZE,
    PRED_MA_LENGTH,
    RSI_QUICK,
    RSI_SLOW,
    cross_event_nb,
    grid_side_nb,
    mlmi_bar_nb,
    mlmi_needs_reindex_nb,
    mlmi_reindex_nb,
    mlmi_signal_step_nb,
    mlmi_store_new_nb,
    wanted_grid_side_nb,
)
from indicators.mmd import mmd_feature_of_return_nb, mmd_state_new_nb, mmd_step_nb
from indicators.nwrqk import nw_at_nb, nwrqk_slope_at_nb, nwrqk_value_at_nb, rq_weights_nb
from indicators.params import IndicatorParams

__all__ = ["FeatureState"]

_fromtimestamp = _dt.datetime.fromtimestamp
_SECOND = _dt.timedelta(seconds=1)
# how long a looked-up UTC offset is reused (see FeatureState._find_offset)
OFFSET_SPAN_SECONDS = 12 * 3600

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
_F_META = 17  # META_SIZE (3) slots: MLMI store size, label sum, rows indexed
_F_MMD = 20  # eleven slots
_F_SIZE = 31

# int state: buffer position, bars seen, H
_I_POS, _I_BARS, _I_H = 0, 1, 2
# where the parameters and the layout of the float buffer start in the int buffer
_I_PARAMS = 3
_I_LAYOUT = 18
# layout slots (offsets into the float buffer, relative to _I_LAYOUT)
(
    _L_HIST,
    _L_FSTATE,
    _L_PF,
    _L_SMOOTH,
    _L_SMOOTH_LEN,
    _L_NW,
    _L_NW_LEN,
    _L_LVN,
    _L_LVN_COLS,
    _L_MMD_RING,
    _L_MMD_GRAM,
    _L_MMD_SCRATCH,
    _L_MMD_PAIRS,
    _L_OUT_RING,
    _L_OUT,
    _L_END,
) = range(16)
_I_SIZE = _I_LAYOUT + 16

# flags returned by the kernel
NEEDS_REINDEX = 1
NEEDS_ROOM = 2

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


class _Views(NamedTuple):
    """The state arrays of :class:`FeatureState`, all views of its two buffers."""

    hist: np.ndarray  # (series, 2H) recent bars and derived series
    fstate: np.ndarray  # recursive states, the MLMI store's meta, the MMD state
    pf: np.ndarray  # float parameters
    pi: np.ndarray  # int parameters (a view of the int buffer)
    smooth_w: np.ndarray  # LVN smoothing weights
    nw_w: np.ndarray  # NW-RQK weights
    lvn_scratch: np.ndarray
    mmd_ring: np.ndarray
    mmd_gram: np.ndarray
    mmd_scratch: np.ndarray
    out_ring: np.ndarray  # the last WINDOW_ROWS feature rows
    out: np.ndarray  # this bar's features


@njit(cache=True)
def _views_nb(fbuf, ibuf):
    """The state arrays, as views of the float buffer ``fbuf`` laid out by ``ibuf``."""
    lay = ibuf[_I_LAYOUT : _I_LAYOUT + 16]
    size = ibuf[_I_H]
    pi = ibuf[_I_PARAMS:_I_LAYOUT]
    N = pi[_PI_MMD_M] + pi[_PI_MMD_N]
    return _Views(
        hist=fbuf[lay[_L_HIST] : lay[_L_FSTATE]].reshape((_N_SERIES, 2 * size)),
        fstate=fbuf[lay[_L_FSTATE] : lay[_L_PF]],
        pf=fbuf[lay[_L_PF] : lay[_L_SMOOTH]],
        pi=pi,
        smooth_w=fbuf[lay[_L_SMOOTH] : lay[_L_SMOOTH] + lay[_L_SMOOTH_LEN]],
        nw_w=fbuf[lay[_L_NW] : lay[_L_NW] + lay[_L_NW_LEN]],
        lvn_scratch=fbuf[lay[_L_LVN] : lay[_L_MMD_RING]].reshape((4, lay[_L_LVN_COLS])),
        mmd_ring=fbuf[lay[_L_MMD_RING] : lay[_L_MMD_GRAM]].reshape((N, 3)),
        mmd_gram=fbuf[lay[_L_MMD_GRAM] : lay[_L_MMD_SCRATCH]].reshape((N, N)),
        mmd_scratch=fbuf[lay[_L_MMD_SCRATCH] : lay[_L_OUT_RING]].reshape((2, lay[_L_MMD_PAIRS])),
        out_ring=fbuf[lay[_L_OUT_RING] : lay[_L_OUT]].reshape((WINDOW_ROWS, N_FEATURES)),
        out=fbuf[lay[_L_OUT] : lay[_L_END]],
    )


@njit(cache=True)
def _stream_step_nb(fbuf, ibuf, rows, index, cell_start, scratch, o, h, low, c, v, local_ns):
    """One bar through every feature; returns NEEDS_REINDEX / NEEDS_ROOM flags."""
    views = _views_nb(fbuf, ibuf)
    hist = views.hist
    fstate = views.fstate
    pf = views.pf
    pi = views.pi
    out = views.out
    istate = ibuf
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
    meta = fstate[_F_META : _F_META + META_SIZE]
    pred = mlmi_bar_nb(
        rows,
        index,
        cell_start,
        meta,
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
    yhat = nw_at_nb(close, pos, views.nw_w)
    hist[_YHAT, pos] = yhat
    out[2] = nwrqk_value_at_nb(c, yhat)
    out[3] = nwrqk_slope_at_nb(yhat, hist[_YHAT, pos - 1], atr)

    # LVN
    if g >= pi[_PI_LVN_WINDOW] - 1:
        profile = LvnProfile(
            pi[_PI_LVN_WINDOW],
            pf[_PF_BIN_WIDTH],
            pf[_PF_ATR_FRACTION],
            pi[_PI_MAX_BINS],
            views.smooth_w,
            pf[_PF_THRESHOLD],
            pf[_PF_PROMINENCE],
            pi[_PI_EDGE],
        )
        out[4], out[5], _present = lvn_at_nb(
            hist[_H], hist[_L], close, hist[_V], pos, atr, profile, views.lvn_scratch
        )
    else:
        out[4] = np.nan
        out[5] = np.nan

    # hour
    out[6], out[7] = hour_sin_cos_nb(local_ns)

    # MMD
    f0, f1, f2 = mmd_feature_of_return_nb(hist[_LOGRET, pos], h, low, c)
    out[8] = mmd_step_nb(
        fstate[_F_MMD : _F_MMD + 11],
        views.mmd_ring,
        views.mmd_gram,
        views.mmd_scratch,
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

    out_ring = views.out_ring
    row = g % out_ring.shape[0]
    for j in range(out.shape[0]):
        out_ring[row, j] = out[j]
    flags = 0
    if mlmi_needs_reindex_nb(meta):
        flags |= NEEDS_REINDEX
    if meta[0] + 1 >= rows.shape[0]:
        flags |= NEEDS_ROOM
    return flags


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
        f = np.zeros(_F_SIZE)
        f[_F_RSI_SLOW : _F_RSI_SLOW + 5] = rsi_state_new_nb()
        f[_F_RSI_QUICK : _F_RSI_QUICK + 5] = rsi_state_new_nb()
        f[_F_ATR : _F_ATR + 4] = atr_state_new_nb()
        f[_F_HA : _F_HA + 2] = heikin_ashi_state_new_nb()
        mmd_state, mmd_ring, mmd_gram, mmd_scratch = mmd_state_new_nb(
            p.mmd_reference_window, p.mmd_test_window
        )
        rows, index, cell_start, meta = mlmi_store_new_nb(max(int(initial_capacity), 2))
        f[_F_META : _F_META + META_SIZE] = meta
        f[_F_MMD : _F_MMD + 11] = mmd_state
        pf = np.array(
            [p.lvn_bin_width, p.lvn_bin_atr_fraction, p.lvn_threshold, p.lvn_min_prominence],
            dtype=np.float64,
        )
        pi = np.array(
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
        smooth_w = gaussian_weights_nb(float(p.lvn_smoothing_bins))
        nw_w = rq_weights_nb(float(p.nwrqk_h), float(p.nwrqk_r), p.nwrqk_x0)
        # Every fixed-size array lives in one float buffer (and the integers in one int
        # buffer), so a bar costs one numba call with few arguments.
        parts = [
            np.full((_N_SERIES, 2 * size), np.nan),  # history
            f,
            pf,
            smooth_w,
            nw_w,
            lvn_scratch_new_nb(p.lvn_max_bins),
            mmd_ring,
            mmd_gram,
            mmd_scratch,
            np.full((WINDOW_ROWS, N_FEATURES), np.nan),  # the last 48 feature rows
            np.empty(N_FEATURES),  # this bar's features
        ]
        offsets = np.cumsum([0] + [part.size for part in parts])
        layout = np.zeros(16, dtype=np.int64)
        for slot, at in zip(
            (
                _L_HIST,
                _L_FSTATE,
                _L_PF,
                _L_SMOOTH,
                _L_NW,
                _L_LVN,
                _L_MMD_RING,
                _L_MMD_GRAM,
                _L_MMD_SCRATCH,
                _L_OUT_RING,
                _L_OUT,
                _L_END,
            ),
            offsets,
            strict=True,
        ):
            layout[slot] = at
        layout[_L_SMOOTH_LEN] = smooth_w.size
        layout[_L_NW_LEN] = nw_w.size
        layout[_L_LVN_COLS] = parts[5].shape[1]
        layout[_L_MMD_PAIRS] = mmd_scratch.shape[1]
        self._F = np.concatenate([part.ravel() for part in parts])
        self._I = np.zeros(_I_SIZE, dtype=np.int64)
        self._I[_I_POS] = size - 1
        self._I[_I_H] = size
        self._I[_I_PARAMS:_I_LAYOUT] = pi
        self._I[_I_LAYOUT : _I_LAYOUT + 16] = layout
        views = _views_nb(self._F, self._I)
        self._fstate = views.fstate
        self._out_ring = views.out_ring
        self._out = views.out
        self._rows = rows
        self._index = index
        self._cell_start = cell_start
        self._scratch = np.empty((3, rows.shape[0]))
        if self._fstate[_F_META] + 1 >= rows.shape[0]:
            self._grow_store()
        self._zone = None if p.timezone == "UTC" else zoneinfo.ZoneInfo(p.timezone)
        # the zone's UTC offset (ns) in force for the UTC seconds [from, until)
        self._offset_from = self._offset_until = 0
        self._offset_ns = 0

    @property
    def n_bars(self) -> int:
        """Number of bars fed so far."""
        return int(self._I[_I_BARS])

    @property
    def mlmi_store_size(self) -> int:
        """Rows in the MLMI store, the sentinel included."""
        return int(self._fstate[_F_META])

    @property
    def mlmi_grid_side(self) -> int:
        """Cells per side of the MLMI index's grid (32, doubled up to ``GRID_MAX``)."""
        return int(grid_side_nb(self._cell_start))

    def _local_ns(self, ts_ns: int) -> int:
        """The bar's wall-clock time in the zone, as ns since the epoch of that clock."""
        if self._zone is None:
            return ts_ns
        seconds = ts_ns // 1_000_000_000
        if not self._offset_from <= seconds < self._offset_until:
            self._find_offset(seconds)
        return ts_ns + self._offset_ns

    def _find_offset(self, seconds: int) -> None:
        """Look up the offset in force at ``seconds`` and for how long it is known to hold.

        The offset comes from ``fromtimestamp`` with the zone (``zone.fromutc``). It is
        kept for the next ``OFFSET_SPAN_SECONDS`` (12 hours) when the offset at the end
        of that span is the same: a zone changes its offset at most once in 12 hours
        (transitions are months apart), so the offset is then constant over the span.
        Otherwise it is kept for this second only, and the bars up to the transition
        each look it up.
        """
        zone = self._zone
        offset = _fromtimestamp(seconds, zone).utcoffset()
        ns = 0 if offset is None else (offset // _SECOND) * 1_000_000_000
        until = seconds + OFFSET_SPAN_SECONDS
        later = _fromtimestamp(until - 1, zone).utcoffset()
        if later != offset:
            until = seconds + 1
        self._offset_from, self._offset_until, self._offset_ns = seconds, until, ns

    def _grow_store(self) -> None:
        cap = self._rows.shape[0]
        rows = np.zeros((2 * cap, 4))
        rows[:cap] = self._rows
        index = np.zeros((3, 2 * cap))
        index[:, :cap] = self._index
        self._rows = rows
        self._index = index
        self._scratch = np.empty((3, 2 * cap))

    def _maintain_store(self, flags: int) -> None:
        if flags & NEEDS_ROOM:
            self._grow_store()
        if flags & NEEDS_REINDEX:
            meta = self._fstate[_F_META : _F_META + META_SIZE]
            side = wanted_grid_side_nb(int(meta[0]))
            self._cell_start = mlmi_reindex_nb(self._rows, meta, self._index, side)

    def update(self, ts_ns, open, high, low, close, volume) -> np.ndarray:
        """Feed one closed bar; returns its 13 features (a new array)."""
        flags = _stream_step_nb(
            self._F,
            self._I,
            self._rows,
            self._index,
            self._cell_start,
            self._scratch,
            float(open),
            float(high),
            float(low),
            float(close),
            float(volume),
            self._local_ns(int(ts_ns)),
        )
        if flags:
            self._maintain_store(flags)
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
