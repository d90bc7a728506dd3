"""Machine Learning Momentum Index (Zeiierman), as reconstructed in INDICATORS.md §1.

Per bar ``t`` (close only):

1. ``MAq = WMA_5(close)``, ``MAs = WMA_20(close)``; an event is a crossover or a
   crossunder of ``MAq`` and ``MAs`` (NaN compares false).
2. Query ``(p1, p2) = (WMA_m(RSI_20(close)), WMA_m(RSI_5(close)))``, ``m`` = momentum
   window (20). With defaults ``p1`` is first valid at index 39.
3. The store starts with one sentinel row (0, 0, price 0, label 0). On an event bar
   whose query and close are finite a row ``(p1, p2, close, label)`` is appended, with
   label +1 if ``close >= `` the price of the previous row, else -1.
4. Prediction on every bar with a finite query: with distances
   ``d_j = sqrt((p1 - P1_j)² + (p2 - P2_j)²)`` to every row (sentinel included) and
   ``D_k`` the ``min(k, S)``-th smallest, ``pred = Σ_j label_j · [d_j <= D_k]`` (ties at
   ``D_k`` are all counted). By default the row is stored before predicting; the
   ``store_then_predict=False`` flag predicts first. ``pred`` is NaN while the query is
   NaN, never 0.
5. ``pred_ma = WMA_20(pred)`` (first valid 58). ``signal`` is +1 on the bar where
   ``pred`` crosses above ``pred_ma``, -1 where it crosses below, otherwise the sign of
   the last cross (0 before the first one); NaN where ``pred`` or ``pred_ma`` is NaN.

Feature columns: ``mlmi_value = pred / k`` in [-1, 1] and ``mlmi_signal``.

Bands (extra lines, not feature columns; :func:`indicators.mlmi_bands.mlmi_bands`):
``upper`` / ``lower`` = highest / lowest ``pred`` over 2000 bars,
``width = EMA_20(stdev_20(pred))``,
``upper_inner = upper - width``, ``lower_inner = lower + width``; NaN until their
windows are full (2038 and 77 with defaults).

Store layout and cost. The store grows with history (one row per event, roughly one
per 5 to 15 bars). Rows live in preallocated arrays: ``rows`` (capacity x 4: p1, p2,
price, label, in append order) and ``index`` (the same rows' p1, p2 and label sorted by
grid cell, with ``cell_start`` giving where each cell begins). The streaming state
doubles the capacity when it is full (amortised O(1) appends). Since p1 and p2 are
WMAs of RSIs they lie in [0, 100]; the grid is a square over that square whose
resolution follows the store: 32 x 32 cells at first, doubled per side while the rows
outnumber the cells, up to 1024 x 1024. A new row is appended to ``rows`` only; once
more than ``max(64, sqrt(S))`` rows wait outside the index, the index is rebuilt (a
counting sort, O(S + cells)), so indexing costs O(sqrt(S)) per appended row, amortised.
While ``S <= k`` every row is a neighbour and ``pred`` is the running label sum (O(1)).
Otherwise the query takes every waiting row (at most ``max(64, sqrt(S))``), grows
square rings of cells around its cell until they and the waiting rows hold at least
``k`` rows, takes an upper bound ``D`` of the k-th smallest distance among those rows
(the top of the histogram bucket holding it), adds the rows of the cells meeting the
disc of radius ``D`` (per column of cells one contiguous range of ``index``), and
finds the exact k-th distance by bucket selection and the tie-inclusive label sum
among the rows within ``D``. The per-bar cost therefore depends on the local density of
rows near the query (about a few times ``k`` distance evaluations) plus the waiting
rows, not linearly on the length of the history. The result is exactly that of the
brute-force definition (same float distances, same ties).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from indicators.core import (
    bucket_counts_nb,
    kth_by_buckets_nb,
    rsi_nb,
    wma_nb,
)

NAN = np.nan

MA_QUICK = 5
MA_SLOW = 20
RSI_QUICK = 5
RSI_SLOW = 20
PRED_MA_LENGTH = 20

GRID_MIN = 32

# batch: bars are predicted in up to CHUNKS parallel chunks of at least CHUNK_MIN_BARS
CHUNKS = 16
CHUNK_MIN_BARS = 4_000
GRID_MAX = 1024
# buckets of the exact k-th distance selection (kth_by_buckets_nb)
SELECT_BUCKETS = 64

# row columns
_P1 = 0
_P2 = 1
_PRICE = 2
_LABEL = 3

# meta slots (float64): number of rows S, label sum, rows in the index
_META_S = 0
_META_LABEL_SUM = 1
_META_INDEXED = 2
META_SIZE = 3

# rows appended since the last index before a reindex: max(PENDING_MIN, sqrt(S))
PENDING_MIN = 64


@njit(cache=True)
def mlmi_store_new_nb(capacity):
    """A store holding only the sentinel row: (rows, index, cell_start, meta).

    ``rows`` (capacity x 4: p1, p2, price, label) in append order; ``index`` (3 x
    capacity: p1, p2, label) the first ``meta[_META_INDEXED]`` rows sorted by grid cell;
    ``cell_start`` (side² + 1) where each cell's rows begin in ``index``; ``meta``: rows
    S, label sum, rows indexed.
    """
    capacity = max(capacity, 2)
    rows = np.zeros((capacity, 4))
    index = np.zeros((3, capacity))
    meta = np.zeros(3)
    _store_append_nb(rows, meta, 0.0, 0.0, 0.0, 0.0)
    cell_start = mlmi_reindex_nb(rows, meta, index, GRID_MIN)
    return rows, index, cell_start, meta


@njit(cache=True)
def grid_side_nb(cell_start):
    """Cells per side of the grid whose ``cell_start`` has side² + 1 entries."""
    return int(np.sqrt(cell_start.shape[0] - 1) + 0.5)


@njit(cache=True)
def wanted_grid_side_nb(n_rows):
    """Grid resolution for ``n_rows`` rows: about one row per cell (32 .. 1024 a side)."""
    side = GRID_MIN
    while side * side < n_rows and side < GRID_MAX:
        side *= 2
    return side


@njit(cache=True)
def pending_limit_nb(n_rows):
    """Unindexed rows allowed before a reindex: max(PENDING_MIN, sqrt(S))."""
    return max(PENDING_MIN, int(np.sqrt(n_rows)))


@njit(cache=True)
def mlmi_needs_reindex_nb(meta):
    """Whether the rows appended since the last index exceed :func:`pending_limit_nb`."""
    s = int(meta[_META_S])
    return s - int(meta[_META_INDEXED]) > pending_limit_nb(s)


@njit(cache=True)
def mlmi_reindex_nb(rows, meta, index, side):
    """Sort every stored row into ``index`` by cell of a side x side grid (counting sort,
    stable: append order within a cell); returns the new ``cell_start``."""
    s = int(meta[_META_S])
    cells = side * side
    cell_start = np.zeros(cells + 1, dtype=np.int64)
    cell_of = np.empty(s, dtype=np.int64)
    for j in range(s):
        c = _cell_nb(rows[j, _P1], side) * side + _cell_nb(rows[j, _P2], side)
        cell_of[j] = c
        cell_start[c + 1] += 1
    for c in range(cells):
        cell_start[c + 1] += cell_start[c]
    fill = cell_start[:cells].copy()
    for j in range(s):
        c = cell_of[j]
        at = fill[c]
        fill[c] = at + 1
        index[0, at] = rows[j, _P1]
        index[1, at] = rows[j, _P2]
        index[2, at] = rows[j, _LABEL]
    meta[_META_INDEXED] = s
    return cell_start


@njit(cache=True)
def _cell_nb(v, side):
    c = int(np.floor(v * side / 100.0))
    if c < 0:
        return 0
    if c >= side:
        return side - 1
    return c


@njit(cache=True)
def _store_append_nb(rows, meta, p1, p2, price, label):
    s = int(meta[_META_S])
    rows[s, _P1] = p1
    rows[s, _P2] = p2
    rows[s, _PRICE] = price
    rows[s, _LABEL] = label
    meta[_META_S] = s + 1
    meta[_META_LABEL_SUM] += label


@njit(cache=True)
def _sqdist_nb(q1, q2, p1, p2):
    """Squared distance; the distance of the definition is its square root."""
    d1 = q1 - p1
    d2 = q2 - p2
    return d1 * d1 + d2 * d2


@njit(cache=True)
def _column_count_nb(cell_start, side, x, y0, y1):
    """Indexed rows in cells (x, y0 .. y1), clamped to the grid; 0 if x is outside."""
    if x < 0 or x >= side:
        return 0
    y0 = max(y0, 0)
    y1 = min(y1, side - 1)
    if y1 < y0:
        return 0
    base = x * side
    return cell_start[base + y1 + 1] - cell_start[base + y0]


@njit(cache=True)
def _ring_count_nb(cell_start, side, cx, cy, ring):
    """Indexed rows in the cells at Chebyshev distance ``ring`` from (cx, cy)."""
    if ring == 0:
        return _column_count_nb(cell_start, side, cx, cy, cy)
    total = _column_count_nb(cell_start, side, cx - ring, cy - ring, cy + ring)
    total += _column_count_nb(cell_start, side, cx + ring, cy - ring, cy + ring)
    for x in range(max(cx - ring + 1, 0), min(cx + ring - 1, side - 1) + 1):
        total += _column_count_nb(cell_start, side, x, cy - ring, cy - ring)
        total += _column_count_nb(cell_start, side, x, cy + ring, cy + ring)
    return total


@njit(cache=True)
def _gather_range_nb(index, lo, hi, q1, q2, limit, scratch, n):
    """Append squared distance and label of ``index`` rows lo .. hi-1 whose squared
    distance is at most ``limit`` (written always, kept by advancing ``n``: no branch)."""
    for j in range(lo, hi):
        sq = _sqdist_nb(q1, q2, index[0, j], index[1, j])
        scratch[0, n] = sq
        scratch[1, n] = index[2, j]
        n += sq <= limit
    return n


@njit(cache=True)
def _gather_cells_nb(index, cell_start, side, x, y0, y1, q1, q2, limit, scratch, n):
    """:func:`_gather_range_nb` over the cells (x, y0 .. y1): one contiguous range."""
    if y1 < y0:
        return n
    base = x * side
    return _gather_range_nb(
        index, cell_start[base + y0], cell_start[base + y1 + 1], q1, q2, limit, scratch, n
    )


@njit(cache=True)
def _gather_disc_nb(index, cell_start, side, q1, q2, limit, skip, scratch, n):
    """Append the indexed rows within squared distance ``limit`` of the query from the
    cells meeting that disc, leaving out the cells of the square ``skip`` = (x0, x1, y0,
    y1).

    Per column of cells only the cells whose square can reach the disc are read (the
    outer cells extend to infinity, as :func:`_cell_nb` clamps); a column's cells are
    one contiguous range of ``index``.
    """
    width = 100.0 / side
    reach = np.sqrt(limit) * (1.0 + 1e-12) + 1e-9
    for x in range(_cell_nb(q1 - reach, side), _cell_nb(q1 + reach, side) + 1):
        left = x * width if x > 0 else -np.inf
        right = (x + 1) * width if x < side - 1 else np.inf
        dx = 0.0
        if q1 < left:
            dx = left - q1
        elif q1 > right:
            dx = q1 - right
        if dx > reach:
            continue
        half = np.sqrt(max(reach * reach - dx * dx, 0.0)) + 1e-9
        y0 = _cell_nb(q2 - half, side)
        y1 = _cell_nb(q2 + half, side)
        if skip[0] <= x <= skip[1]:
            n = _gather_cells_nb(
                index, cell_start, side, x, y0, min(y1, skip[2] - 1), q1, q2, limit, scratch, n
            )
            n = _gather_cells_nb(
                index, cell_start, side, x, max(y0, skip[3] + 1), y1, q1, q2, limit, scratch, n
            )
        else:
            n = _gather_cells_nb(index, cell_start, side, x, y0, y1, q1, q2, limit, scratch, n)
    return n


@njit(cache=True)
def _kth_upper_bound_nb(values, n, k, counts):
    """A value >= the k-th smallest (0-based) of ``values[:n]``: its bucket's upper edge."""
    lo, hi, scale, chosen, _below = bucket_counts_nb(values, n, k, counts)
    if scale == 0.0:
        return hi
    # (v - lo) * scale < chosen + 1 for every v of the bucket; widen for rounding
    return lo + (chosen + 1) / scale * (1.0 + 1e-12) + 1e-12 * abs(lo)


@njit(cache=True)
def mlmi_query_nb(rows, index, cell_start, meta, q1, q2, k, scratch):
    """Tie-inclusive kNN label sum for the query (q1, q2).

    ``scratch`` is a (3, capacity) work array with capacity >= S.
    """
    s = int(meta[_META_S])
    if s <= k:
        return meta[_META_LABEL_SUM]
    side = grid_side_nb(cell_start)
    # Squared distances throughout: sqrt is monotone, so the k-th smallest distance is
    # the square root of the k-th smallest squared one.
    cx = _cell_nb(q1, side)
    cy = _cell_nb(q2, side)
    # rings of indexed rows until they hold k
    ring = 0
    count = 0
    while True:
        count += _ring_count_nb(cell_start, side, cx, cy, ring)
        if count >= k:
            break
        if cx - ring <= 0 and cy - ring <= 0 and cx + ring >= side - 1 and cy + ring >= side - 1:
            break
        ring += 1
    square = np.empty(4, dtype=np.int64)
    square[0] = max(cx - ring, 0)
    square[1] = min(cx + ring, side - 1)
    square[2] = max(cy - ring, 0)
    square[3] = min(cy + ring, side - 1)
    n = 0
    for x in range(square[0], square[1] + 1):
        n = _gather_cells_nb(
            index, cell_start, side, x, square[2], square[3], q1, q2, np.inf, scratch, n
        )
    first_pending = int(meta[_META_INDEXED])
    if count < k:
        # the whole grid holds fewer than k rows: every row waiting outside the index
        # takes part (the square is the whole grid, so nothing is left to gather)
        for j in range(first_pending, s):
            scratch[0, n] = _sqdist_nb(q1, q2, rows[j, _P1], rows[j, _P2])
            scratch[1, n] = rows[j, _LABEL]
            n += 1
        first_pending = s
    # at least k rows lie within `limit`, so the k-th squared distance is <= limit and
    # the k nearest rows are the nearest of those within it: the rows gathered so far
    # that lie inside it, and those of the cells that meet the disc of that radius
    counts = np.empty(SELECT_BUCKETS, dtype=np.int64)
    limit = _kth_upper_bound_nb(scratch[0], n, k - 1, counts) * (1.0 + 1e-12)
    kept = 0
    for i in range(n):
        sq = scratch[0, i]
        scratch[0, kept] = sq
        scratch[1, kept] = scratch[1, i]
        kept += sq <= limit
    # the rows appended since the last index, if within the limit
    for j in range(first_pending, s):
        sq = _sqdist_nb(q1, q2, rows[j, _P1], rows[j, _P2])
        scratch[0, kept] = sq
        scratch[1, kept] = rows[j, _LABEL]
        kept += sq <= limit
    n = _gather_disc_nb(index, cell_start, side, q1, q2, limit, square, scratch, kept)
    sq_k = kth_by_buckets_nb(scratch[0], n, k - 1, scratch[2], counts)
    # tie-inclusive on the distances themselves: a squared distance just above sq_k can
    # still have the same square root (every such row is within `limit`)
    d_k = np.sqrt(sq_k)
    total = 0.0
    for i in range(n):
        sq = scratch[0, i]
        if sq <= sq_k or np.sqrt(sq) <= d_k:
            total += scratch[1, i]
    return total


@njit(cache=True)
def mlmi_bar_nb(rows, index, cell_start, meta, p1, p2, close, event, k, store_first, scratch):
    """Store (on an event) and predict for one bar; returns ``pred`` (NaN if no query).

    The caller guarantees room for one more row (``rows.shape[0] > S``) and a
    (3, capacity) ``scratch``, and reindexes when :func:`mlmi_needs_reindex_nb` says so.
    """
    query_ok = not (np.isnan(p1) or np.isnan(p2))
    can_store = event and query_ok and not np.isnan(close)
    if can_store and store_first:
        _store_row_nb(rows, meta, p1, p2, close)
    pred = NAN
    if query_ok:
        pred = mlmi_query_nb(rows, index, cell_start, meta, p1, p2, k, scratch)
    if can_store and not store_first:
        _store_row_nb(rows, meta, p1, p2, close)
    return pred


@njit(cache=True)
def _store_row_nb(rows, meta, p1, p2, close):
    last_price = rows[int(meta[_META_S]) - 1, _PRICE]
    label = 1.0 if close >= last_price else -1.0
    _store_append_nb(rows, meta, p1, p2, close, label)


@njit(cache=True)
def cross_event_nb(quick_t, slow_t, quick_prev, slow_prev):
    """Crossover or crossunder of quick over slow on this bar (NaN compares false)."""
    up = quick_t > slow_t and quick_prev <= slow_prev
    down = quick_t < slow_t and quick_prev >= slow_prev
    return up or down


@njit(cache=True)
def mlmi_signal_step_nb(state, pred_t, ma_t, pred_prev, ma_prev):
    """+1 / -1 on a cross of pred over its WMA, else the last cross sign (``state[0]``)."""
    if np.isnan(pred_t) or np.isnan(ma_t):
        return NAN
    if pred_t > ma_t and pred_prev <= ma_prev:
        state[0] = 1.0
    elif pred_t < ma_t and pred_prev >= ma_prev:
        state[0] = -1.0
    return state[0]


@njit(cache=True)
def _mlmi_chunk_nb(p1, p2, close, can_store, events, k, store_then_predict, capacity, lo, hi, pred):
    """``pred[lo:hi]``: rebuild the store from the rows of bars before ``lo`` (appends
    and one index), then store and predict bar by bar."""
    rows, index, cell_start, meta = mlmi_store_new_nb(capacity)
    for t in range(lo):
        if can_store[t]:
            _store_row_nb(rows, meta, p1[t], p2[t], close[t])
    cell_start = mlmi_reindex_nb(rows, meta, index, wanted_grid_side_nb(int(meta[_META_S])))
    scratch = np.empty((3, capacity))
    for t in range(lo, hi):
        pred[t] = mlmi_bar_nb(
            rows,
            index,
            cell_start,
            meta,
            p1[t],
            p2[t],
            close[t],
            events[t],
            k,
            store_then_predict,
            scratch,
        )
        if mlmi_needs_reindex_nb(meta):
            side = wanted_grid_side_nb(int(meta[_META_S]))
            cell_start = mlmi_reindex_nb(rows, meta, index, side)


@njit(cache=True, parallel=True)
def mlmi_features_nb(close, k, momentum_window, store_then_predict):
    """MLMI over a close series: returns (pred, pred_ma, signal).

    ``pred`` is the integer kNN label sum (range [-k, k]); the feature column is
    ``pred / k``. The store's rows do not depend on the predictions, so the bars are
    cut into chunks predicted in parallel, each chunk first rebuilding the store as it
    stood at its first bar (cheap: appends only). The result is identical to one pass.
    """
    n = close.shape[0]
    ma_quick = wma_nb(close, MA_QUICK)
    ma_slow = wma_nb(close, MA_SLOW)
    p1 = wma_nb(rsi_nb(close, RSI_SLOW), momentum_window)
    p2 = wma_nb(rsi_nb(close, RSI_QUICK), momentum_window)
    events = np.zeros(n, dtype=np.bool_)
    can_store = np.zeros(n, dtype=np.bool_)
    stored = 0
    for t in range(n):
        if t >= 1:
            events[t] = cross_event_nb(ma_quick[t], ma_slow[t], ma_quick[t - 1], ma_slow[t - 1])
        query_ok = not (np.isnan(p1[t]) or np.isnan(p2[t]))
        can_store[t] = events[t] and query_ok and not np.isnan(close[t])
        stored += can_store[t]
    capacity = stored + 2
    pred = np.full(n, NAN)
    chunks = max(1, min(CHUNKS, n // CHUNK_MIN_BARS))
    for c in prange(chunks):
        lo = c * n // chunks
        hi = (c + 1) * n // chunks
        _mlmi_chunk_nb(
            p1, p2, close, can_store, events, k, store_then_predict, capacity, lo, hi, pred
        )
    pred_ma = wma_nb(pred, PRED_MA_LENGTH)
    signal = np.full(n, NAN)
    sig_state = np.zeros(1)
    for t in range(n):
        prev_pred = pred[t - 1] if t >= 1 else NAN
        prev_ma = pred_ma[t - 1] if t >= 1 else NAN
        signal[t] = mlmi_signal_step_nb(sig_state, pred[t], pred_ma[t], prev_pred, prev_ma)
    return pred, pred_ma, signal
