"""Shapley values of the agents (SPEC section 5.2).

A characteristic function over n agents is given either as an array ``v`` of
length 2^n indexed by coalition bitmask (bit i set = agent i is in the
coalition; ``v[0]`` is the empty coalition, ``v[2**n - 1]`` the grand
coalition) or, for Monte Carlo with many agents, as a vectorised callable.

Exact::

    φ_i = Σ_{S ⊆ N \\ {i}} |S|! (n - |S| - 1)! / n! · [v(S ∪ {i}) - v(S)]

computed for all agents in one pass over the 2^n coalitions (numba kernel,
O(n 2^n)); ``n`` ≤ 16 here (beyond that use Monte Carlo).

Monte Carlo: φ_i is the mean over random orderings of the agents of i's
marginal contribution v(predecessors ∪ {i}) - v(predecessors). Orderings come
in antithetic pairs, a uniform random permutation and its reverse; the
estimate is the mean over the M/2 pairs of the pair's average marginal
contribution, and the standard error is the sample standard deviation of
those pair averages over √(M/2). Every ordering's marginal contributions add
up to v(N) - v(∅), so the estimates satisfy efficiency exactly (up to
rounding). Default M = :func:`default_permutations` (n) =
2 ⌈max(50, 5 n ln n)⌉, i.e. max(100, 10 n ln n) rounded up to an even count.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numba import njit

from strategies.meta.params import MAX_EXACT_AGENTS

__all__ = [
    "MAX_EXACT_AGENTS",
    "coalition_masks",
    "default_permutations",
    "shapley_exact",
    "shapley_monte_carlo",
    "shapley_monte_carlo_details",
    "shapley_size_weights",
]

# Monte Carlo evaluates the characteristic function on at most this many
# coalition masks (rows) per callable call, to bound memory for large n.
_MAX_MASK_CELLS = 1 << 23

ValueFunction = Callable[[np.ndarray], np.ndarray]


def coalition_masks(n: int) -> np.ndarray:
    """Boolean array (2^n, n): row ``s`` has column ``i`` set iff bit ``i`` of ``s`` is set."""
    n = _check_agent_count(n, MAX_EXACT_AGENTS + 8)
    codes = np.arange(1 << n, dtype=np.int64)
    return ((codes[:, None] >> np.arange(n, dtype=np.int64)[None, :]) & 1).astype(bool)


def shapley_size_weights(n: int) -> np.ndarray:
    """w[k] = k! (n - k - 1)! / n! = 1 / (n C(n-1, k)) for k = 0..n-1."""
    n = _check_agent_count(n, None)
    return np.array([1.0 / (n * math.comb(n - 1, k)) for k in range(n)])


def default_permutations(n: int) -> int:
    """Default Monte Carlo permutation count: 2 ⌈max(50, 5 n ln n)⌉ (even, O(n log n))."""
    n = _check_agent_count(n, None)
    return 2 * math.ceil(max(50.0, 5.0 * n * math.log(n)))


@njit(cache=True)
def shapley_exact_nb(v, size_weights, phi):
    """Exact Shapley values of the game ``v`` (length 2^n) written into ``phi`` (n,).

    Returns -1, or the index of the first non-finite entry of ``v`` (``phi``
    is then left untouched).
    """
    n = phi.shape[0]
    count = v.shape[0]
    for s in range(count):
        if not math.isfinite(v[s]):
            return s
    for i in range(n):
        phi[i] = 0.0
    for s in range(count):
        size = 0
        rest = s
        while rest:
            rest &= rest - 1
            size += 1
        if size == n:
            continue
        weight = size_weights[size]
        base = v[s]
        for i in range(n):
            bit = 1 << i
            if not s & bit:
                phi[i] += weight * (v[s | bit] - base)
    return -1


def shapley_exact(v: np.ndarray) -> np.ndarray:
    """Exact Shapley values (n,) of the game given as a length-2^n array (module docstring)."""
    v = np.ascontiguousarray(v, dtype=np.float64)
    n = _agent_count_of(v)
    if n > MAX_EXACT_AGENTS:
        raise ValueError(
            f"shapley_exact supports at most {MAX_EXACT_AGENTS} agents, got n={n}; "
            f"use shapley_monte_carlo"
        )
    phi = np.empty(n)
    bad = shapley_exact_nb(v, shapley_size_weights(n), phi)
    if bad >= 0:
        raise ValueError(f"v[{bad}] (coalition bitmask {bad}) must be finite, got {v[bad]!r}")
    return phi


def _agent_count_of(v: np.ndarray) -> int:
    if v.ndim != 1 or v.shape[0] < 2 or v.shape[0] & (v.shape[0] - 1):
        raise ValueError(
            f"v must be a 1-D array of length 2^n (n >= 1) indexed by coalition bitmask, "
            f"got shape {v.shape}"
        )
    return v.shape[0].bit_length() - 1


def _check_agent_count(n: int, limit: int | None) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if limit is not None and n > limit:
        raise ValueError(f"n must be <= {limit}, got {n}")
    return int(n)


def _sample_permutations(n: int, pairs: int, rng: np.random.Generator) -> np.ndarray:
    """(2 pairs, n) orderings: rows 2k and 2k + 1 are a permutation and its reverse."""
    forward = rng.permuted(np.broadcast_to(np.arange(n, dtype=np.int64), (pairs, n)), axis=1)
    orders = np.empty((2 * pairs, n), dtype=np.int64)
    orders[0::2] = forward
    orders[1::2] = forward[:, ::-1]
    return orders


def _prefix_values_from_array(v: np.ndarray, orders: np.ndarray) -> np.ndarray:
    """v at every prefix of every ordering: (M, n + 1), column k = first k agents."""
    count, n = orders.shape
    prefix = np.zeros((count, n + 1), dtype=np.int64)
    np.cumsum(np.left_shift(np.int64(1), orders), axis=1, out=prefix[:, 1:])
    return v[prefix]


def _prefix_values_from_callable(
    value: ValueFunction, orders: np.ndarray, empty_value: float, full_value: float
) -> np.ndarray:
    count, n = orders.shape
    out = np.empty((count, n + 1))
    out[:, 0] = empty_value
    out[:, n] = full_value
    if n == 1:
        return out
    rank = np.empty_like(orders)
    np.put_along_axis(rank, orders, np.arange(n, dtype=np.int64)[None, :], axis=1)
    sizes = np.arange(1, n, dtype=np.int64)
    rows_per_chunk = max(1, _MAX_MASK_CELLS // (n * (n - 1)))
    for start in range(0, count, rows_per_chunk):
        stop = min(count, start + rows_per_chunk)
        # masks[m, k - 1, j]: agent j is among the first k of ordering m.
        masks = rank[start:stop, None, :] < sizes[None, :, None]
        values = np.asarray(value(masks.reshape(-1, n)), dtype=np.float64)
        if values.shape != ((stop - start) * (n - 1),):
            raise ValueError(
                f"the characteristic function must return one value per mask row, "
                f"got shape {values.shape} for {(stop - start) * (n - 1)} rows"
            )
        out[start:stop, 1:n] = values.reshape(stop - start, n - 1)
    return out


def shapley_monte_carlo(
    value: np.ndarray | ValueFunction,
    n: int,
    permutations: int | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Monte Carlo Shapley values with antithetic permutation pairs (module docstring).

    ``value`` is either the length-2^n array of coalition values or a
    vectorised callable taking a boolean array (m, n) of coalition masks
    (row = coalition, column i = agent i is a member) and returning the m
    values as a float array (m,). ``permutations`` must be even and ≥ 4
    (default :func:`default_permutations`); ``rng`` is required.

    Returns ``(phi, stderr)``, both (n,). For n = 1 the single ordering gives
    the exact value and a zero standard error.
    """
    phi, stderr, _, _, _ = shapley_monte_carlo_details(value, n, permutations, rng)
    return phi, stderr


def shapley_monte_carlo_details(
    value: np.ndarray | ValueFunction,
    n: int,
    permutations: int | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray, float, float, int]:
    """:func:`shapley_monte_carlo` plus v(∅), v(N) and the number of coalition values used."""
    n = _check_agent_count(n, None)
    if rng is None or not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {rng!r}")
    if permutations is None:
        permutations = default_permutations(n)
    if (
        isinstance(permutations, bool)
        or not isinstance(permutations, int | np.integer)
        or permutations < 4
        or permutations % 2
    ):
        raise ValueError(f"permutations must be an even integer >= 4, got {permutations!r}")
    pairs = int(permutations) // 2

    if callable(value):
        full_mask = np.ones((1, n), dtype=bool)
        ends = np.asarray(value(np.vstack([~full_mask, full_mask])), dtype=np.float64)
        if ends.shape != (2,):
            raise ValueError(
                f"the characteristic function must return one value per mask row, "
                f"got shape {ends.shape} for 2 rows"
            )
        empty_value, full_value = float(ends[0]), float(ends[1])
    else:
        v = np.ascontiguousarray(value, dtype=np.float64)
        if _agent_count_of(v) != n:
            raise ValueError(f"v has length {v.shape[0]} but n={n} needs length {1 << n}")
        if n > 62:
            raise ValueError(f"array games support n <= 62, got n={n}")
        empty_value, full_value = float(v[0]), float(v[-1])
    if not (math.isfinite(empty_value) and math.isfinite(full_value)):
        raise ValueError(
            f"coalition values must be finite, got v(∅)={empty_value!r}, v(N)={full_value!r}"
        )

    if n == 1:
        return np.array([full_value - empty_value]), np.zeros(1), empty_value, full_value, 2

    orders = _sample_permutations(n, pairs, rng)
    if callable(value):
        prefix_values = _prefix_values_from_callable(value, orders, empty_value, full_value)
    else:
        prefix_values = _prefix_values_from_array(v, orders)
    evaluations = 2 + 2 * pairs * (n - 1)
    if not np.isfinite(prefix_values).all():
        raise ValueError("coalition values must be finite; the game returned NaN or infinity")

    marginal = np.empty((2 * pairs, n))
    np.put_along_axis(marginal, orders, np.diff(prefix_values, axis=1), axis=1)
    pair_means = 0.5 * (marginal[0::2] + marginal[1::2])
    phi = pair_means.mean(axis=0)
    stderr = pair_means.std(axis=0, ddof=1) / math.sqrt(pairs)
    return phi, stderr, empty_value, full_value, evaluations
