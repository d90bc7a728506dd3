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

Store layout and cost. The store grows with history (one row per event, roughly one
per 5 to 15 bars). Rows live in preallocated arrays: ``rows`` (capacity x 4: p1, p2,
price, label) and ``next_row`` (a linked list per grid cell). The streaming state
doubles the capacity when it is full (amortised O(1) appends). Since p1 and p2 are
WMAs of RSIs they lie in [0, 100]; rows are bucketed in a square grid over that square
(per-cell head and count) whose resolution follows the store: 32 x 32 cells at first,
doubled per side (and rebuilt, amortised O(1)) whenever the rows outnumber the cells,
up to 1024 x 1024. While ``S <= k`` every row is a neighbour and ``pred`` is the
running label sum (O(1)). Otherwise the query grows square rings of cells around its
cell until they hold at least ``k`` rows, takes the k-th smallest distance among those
rows as an upper bound ``D``, adds the rows of the cells within ``D`` of the query, and
finds the exact k-th distance and the tie-inclusive label sum among them. The
per-bar cost therefore depends on the local density of rows near the query (about a
few times ``k`` distance evaluations), not on the length of the history. The result is
exactly that of the brute-force definition (same float distances, same ties).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from indicators.core import kth_smallest_nb, rsi_nb, wma_nb

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

# row columns
_P1 = 0
_P2 = 1
_PRICE = 2
_LABEL = 3

# meta slots (float64): number of rows S, label sum
_META_S = 0
_META_LABEL_SUM = 1


@njit(cache=True)
def mlmi_store_new_nb(capacity):
    """A store holding only the sentinel row: (rows, next_row, grid, meta)."""
    capacity = max(capacity, 2)
    rows = np.zeros((capacity, 4))
    next_row = np.full(capacity, -1, dtype=np.int64)
    grid = np.zeros((2, GRID_MIN * GRID_MIN), dtype=np.int64)  # head, count
    grid[0, :] = -1
    meta = np.zeros(2)
    _store_append_nb(rows, next_row, grid, meta, 0.0, 0.0, 0.0, 0.0)
    return rows, next_row, grid, meta


@njit(cache=True)
def grid_side_nb(grid):
    """Cells per side of a (2, side²) grid."""
    return int(np.sqrt(grid.shape[1]) + 0.5)


@njit(cache=True)
def wanted_grid_side_nb(n_rows):
    """Grid resolution for ``n_rows`` rows: about one row per cell (32 .. 1024 a side)."""
    side = GRID_MIN
    while side * side < n_rows and side < GRID_MAX:
        side *= 2
    return side


@njit(cache=True)
def mlmi_regrid_nb(rows, next_row, meta, side):
    """A new (2, side²) grid holding the stored rows, linked in append order."""
    grid = np.zeros((2, side * side), dtype=np.int64)
    grid[0, :] = -1
    for s in range(int(meta[_META_S])):
        cell = _cell_nb(rows[s, _P1], side) * side + _cell_nb(rows[s, _P2], side)
        next_row[s] = grid[0, cell]
        grid[0, cell] = s
        grid[1, cell] += 1
    return grid


@njit(cache=True)
def _cell_nb(v, side):
    c = int(np.floor(v * side / 100.0))
    if c < 0:
        return 0
    if c >= side:
        return side - 1
    return c


@njit(cache=True)
def _store_append_nb(rows, next_row, grid, meta, p1, p2, price, label):
    s = int(meta[_META_S])
    rows[s, _P1] = p1
    rows[s, _P2] = p2
    rows[s, _PRICE] = price
    rows[s, _LABEL] = label
    side = grid_side_nb(grid)
    cell = _cell_nb(p1, side) * side + _cell_nb(p2, side)
    next_row[s] = grid[0, cell]
    grid[0, cell] = s
    grid[1, cell] += 1
    meta[_META_S] = s + 1
    meta[_META_LABEL_SUM] += label


@njit(cache=True)
def _distance_nb(q1, q2, p1, p2):
    d1 = q1 - p1
    d2 = q2 - p2
    return np.sqrt(d1 * d1 + d2 * d2)


@njit(cache=True)
def _ring_count_nb(grid, cx, cy, ring):
    """Number of rows in the cells at Chebyshev distance ``ring`` from (cx, cy)."""
    total = 0
    side = grid_side_nb(grid)
    x0 = cx - ring
    x1 = cx + ring
    y0 = cy - ring
    y1 = cy + ring
    for x in range(max(x0, 0), min(x1, side - 1) + 1):
        for y in range(max(y0, 0), min(y1, side - 1) + 1):
            if ring == 0 or x in (x0, x1) or y in (y0, y1):
                total += grid[1, x * side + y]
    return total


@njit(cache=True)
def _gather_nb(rows, next_row, grid, q1, q2, x0, x1, y0, y1, skip, scratch, n):
    """Append distance and label of every row in cells [x0, x1] x [y0, y1] to ``scratch``.

    Cells inside the square ``skip`` = (sx0, sx1, sy0, sy1) were gathered before and are
    left out. Returns the new number of entries.
    """
    side = grid_side_nb(grid)
    for x in range(x0, x1 + 1):
        inside_x = skip[0] <= x <= skip[1]
        for y in range(y0, y1 + 1):
            if inside_x and skip[2] <= y <= skip[3]:
                continue
            j = grid[0, x * side + y]
            while j >= 0:
                scratch[0, n] = _distance_nb(q1, q2, rows[j, _P1], rows[j, _P2])
                scratch[1, n] = rows[j, _LABEL]
                n += 1
                j = next_row[j]
    return n


@njit(cache=True)
def _kth_of_copy_nb(scratch, n, k):
    for i in range(n):
        scratch[2, i] = scratch[0, i]
    return kth_smallest_nb(scratch[2], n, k)


@njit(cache=True)
def mlmi_query_nb(rows, next_row, grid, meta, q1, q2, k, scratch):
    """Tie-inclusive kNN label sum for the query (q1, q2).

    ``scratch`` is a (3, capacity) work array with capacity >= S.
    """
    s = int(meta[_META_S])
    if s <= k:
        return meta[_META_LABEL_SUM]
    side = grid_side_nb(grid)
    cx = _cell_nb(q1, side)
    cy = _cell_nb(q2, side)
    ring = 0
    count = 0
    while True:
        count += _ring_count_nb(grid, cx, cy, ring)
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
    nothing = np.array([1, 0, 1, 0], dtype=np.int64)
    n = _gather_nb(
        rows,
        next_row,
        grid,
        q1,
        q2,
        square[0],
        square[1],
        square[2],
        square[3],
        nothing,
        scratch,
        0,
    )
    # at least k rows lie within `bound`, so the k-th distance is <= bound; every row
    # within `bound` of the query lies in the cells below (a tiny margin covers rounding)
    bound = _kth_of_copy_nb(scratch, n, k - 1)
    margin = bound + 1e-9
    x0 = min(_cell_nb(q1 - margin, side), square[0])
    x1 = max(_cell_nb(q1 + margin, side), square[1])
    y0 = min(_cell_nb(q2 - margin, side), square[2])
    y1 = max(_cell_nb(q2 + margin, side), square[3])
    n = _gather_nb(rows, next_row, grid, q1, q2, x0, x1, y0, y1, square, scratch, n)
    d_k = _kth_of_copy_nb(scratch, n, k - 1)
    total = 0.0
    for i in range(n):
        if scratch[0, i] <= d_k:
            total += scratch[1, i]
    return total


@njit(cache=True)
def mlmi_bar_nb(rows, next_row, grid, meta, p1, p2, close, event, k, store_first, scratch):
    """Store (on an event) and predict for one bar; returns ``pred`` (NaN if no query).

    The caller guarantees room for one more row (``rows.shape[0] > S``) and a
    (3, capacity) ``scratch``.
    """
    query_ok = not (np.isnan(p1) or np.isnan(p2))
    can_store = event and query_ok and not np.isnan(close)
    if can_store and store_first:
        _store_row_nb(rows, next_row, grid, meta, p1, p2, close)
    pred = NAN
    if query_ok:
        pred = mlmi_query_nb(rows, next_row, grid, meta, p1, p2, k, scratch)
    if can_store and not store_first:
        _store_row_nb(rows, next_row, grid, meta, p1, p2, close)
    return pred


@njit(cache=True)
def _store_row_nb(rows, next_row, grid, meta, p1, p2, close):
    last_price = rows[int(meta[_META_S]) - 1, _PRICE]
    label = 1.0 if close >= last_price else -1.0
    _store_append_nb(rows, next_row, grid, meta, p1, p2, close, label)


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
    only, with the same regrids), then store and predict bar by bar."""
    rows, next_row, grid, meta = mlmi_store_new_nb(capacity)
    for t in range(lo):
        if can_store[t]:
            _store_row_nb(rows, next_row, grid, meta, p1[t], p2[t], close[t])
        side = wanted_grid_side_nb(int(meta[_META_S]))
        if side != grid_side_nb(grid):
            grid = mlmi_regrid_nb(rows, next_row, meta, side)
    scratch = np.empty((3, capacity))
    for t in range(lo, hi):
        pred[t] = mlmi_bar_nb(
            rows,
            next_row,
            grid,
            meta,
            p1[t],
            p2[t],
            close[t],
            events[t],
            k,
            store_then_predict,
            scratch,
        )
        side = wanted_grid_side_nb(int(meta[_META_S]))
        if side != grid_side_nb(grid):
            grid = mlmi_regrid_nb(rows, next_row, meta, side)


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
