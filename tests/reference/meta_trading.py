"""A reference statement of SPEC sections 3 and 5.1: the ensemble's decision and a
trading characteristic function with a per-unit cost, written apart from the
production rules (:mod:`strategies.meta.decision`, :mod:`brokers.costs`), which the
tests compare with it.

Actions are ordered {0: bearish, 1: neutral, 2: bullish} everywhere. Agent i
votes with a probability vector P_i = (P_bear, P_neutral, P_bull) and carries
an ensemble weight w_i (w_i ≥ 0, Σ w_i = 1).

Ensemble decision (SPEC 3), for one step::

    P_ens      = Σ_i w_i P_i                      (summed over i = 0..n-1 in order)
    H(P)       = -Σ_a P_a ln P_a                  (0 ln 0 = 0)
    confidence = max_a P_ens,a - H(P_ens)
    target     = max_position (P_ens,bull - P_ens,bear)   if confidence ≥ threshold
               = previous_position                        otherwise (hold)

Step P&L of a target position q, held over the step's price move Δp::

    traded    = |q - previous_position|
    unit_cost = price (commission_bps + slippage_bps) / 10^4 + commission_per_unit
    pnl(q)    = q Δp - traded · unit_cost

``price`` is the reference price of the trade (commission and slippage in
bps apply to the notional traded at that price) and ``price_change`` is the
move the new position earns over the holding interval. Anything that does
not depend on the decision (for example the previous position's move before
the fill) is the same for every coalition; leave it out of ``price_change``
and add it to v(S) for every non-empty S if wanted.

Coalitions (SPEC 5.1): in coalition S, every agent outside S votes neutral,
e = (0, 1, 0), with its unchanged weight (no renormalisation)::

    P_ens(S) = Σ_{i ∈ S} w_i P_i + (Σ_{i ∉ S} w_i) e

and the same sizing rule, threshold, previous position and costs apply. The
empty coalition's ensemble is e itself: confidence 1 - 0 = 1, so (for any
threshold ≤ 1) its target is max_position (0 - 0) = 0, flat, not "hold".

Decision on v(∅) and v(N)::

    v(S) = pnl(target(S))   for S ≠ ∅
    v(∅) = 0                 by definition

so v(N) is exactly the P&L the ensemble made over the step, and efficiency
gives Σ_i φ_i(t) = v(N) - v(∅) = pnl_t, the step's P&L, costs included. When
the previous position is 0, pnl(target(∅)) is already 0 and the definition
changes nothing. When it is not 0, pnl(target(∅)) = -unit_cost·|previous|
(the cost of going flat; the previous position would have been carried by
agents who no longer vote), and setting v(∅) = 0 instead credits the agents
with the whole step: the carry of the position they built earlier and the
cost of changing it. Summed over a backtest in which each step's previous
position is the preceding step's target, Σ_t Σ_i φ_i(t) = Σ_t pnl_t, the
strategy's total P&L, with nothing assigned to the empty coalition.

The alternative ``relative_to_empty=True`` returns v(S) = pnl(S) - pnl(∅)
for every S (again v(∅) = 0); then Σ_i φ_i(t) = pnl_t - pnl(∅)
= pnl_t + unit_cost·|previous| (for threshold ≤ 1): the step's P&L in excess
of flattening at once, which no longer adds up to the strategy's P&L over a
backtest. It is offered for analysis only.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = [
    "ensemble_confidence",
    "ensemble_probabilities",
    "ensemble_target",
    "trading_coalition_values",
    "trading_value_function",
    "unit_trading_cost",
]

BEARISH, NEUTRAL, BULLISH = 0, 1, 2
_WEIGHT_SUM_TOLERANCE = 1e-9


# --------------------------------------------------------------------------- kernels


@njit(cache=True)
def entropy_nb(p0, p1, p2):
    """H(P) = -p0 ln p0 - p1 ln p1 - p2 ln p2, subtracted in that order, 0 ln 0 = 0."""
    entropy = 0.0
    if p0 > 0.0:
        entropy -= p0 * math.log(p0)
    if p1 > 0.0:
        entropy -= p1 * math.log(p1)
    if p2 > 0.0:
        entropy -= p2 * math.log(p2)
    return entropy


@njit(cache=True)
def confidence_nb(p0, p1, p2):
    """max(P) - H(P) for one probability vector, 0 ln 0 = 0."""
    return max(p0, max(p1, p2)) - entropy_nb(p0, p1, p2)


@njit(cache=True)
def position_pnl_nb(target, previous_position, price_change, unit_cost):
    """pnl(q) = q Δp - |q - previous| unit_cost."""
    return target * price_change - abs(target - previous_position) * unit_cost


@njit(cache=True)
def decide_target_nb(p0, p1, p2, max_position, threshold, previous_position):
    """Sizing rule of SPEC 3 for one ensemble probability vector."""
    if confidence_nb(p0, p1, p2) >= threshold:
        return max_position * (p2 - p0)
    return previous_position


@njit(cache=True)
def trading_coalition_values_nb(
    probabilities,
    weights,
    max_position,
    threshold,
    previous_position,
    price_change,
    unit_cost,
    relative_to_empty,
    out,
):
    """v(S) for all 2^n coalitions into ``out`` (module docstring).

    Member sums are built from the coalition without its highest agent, so
    each P_ens(S) is summed in ascending agent order, as a plain loop would.
    """
    n = weights.shape[0]
    count = 1 << n
    members = np.zeros((count, 3))  # Σ_{i ∈ S} w_i P_i
    member_weight = np.zeros(count)  # Σ_{i ∈ S} w_i
    for s in range(1, count):
        high = 0
        while (s >> (high + 1)) != 0:
            high += 1
        rest = s ^ (1 << high)
        w = weights[high]
        for a in range(3):
            members[s, a] = members[rest, a] + w * probabilities[high, a]
        member_weight[s] = member_weight[rest] + w
    full = count - 1
    empty_target = decide_target_nb(
        0.0, member_weight[full], 0.0, max_position, threshold, previous_position
    )
    empty_pnl = position_pnl_nb(empty_target, previous_position, price_change, unit_cost)
    for s in range(1, count):
        outside = member_weight[full ^ s]
        target = decide_target_nb(
            members[s, 0],
            members[s, 1] + outside,
            members[s, 2],
            max_position,
            threshold,
            previous_position,
        )
        pnl = position_pnl_nb(target, previous_position, price_change, unit_cost)
        out[s] = pnl - empty_pnl if relative_to_empty else pnl
    out[0] = 0.0


@njit(cache=True)
def masked_trading_values_nb(
    masks,
    probabilities,
    weights,
    max_position,
    threshold,
    previous_position,
    price_change,
    unit_cost,
    relative_to_empty,
    out,
):
    """v(S) for the coalitions given as rows of a boolean array (m, n), into ``out``."""
    n = weights.shape[0]
    total_weight = 0.0
    for i in range(n):
        total_weight += weights[i]
    empty_target = decide_target_nb(
        0.0, total_weight, 0.0, max_position, threshold, previous_position
    )
    empty_pnl = position_pnl_nb(empty_target, previous_position, price_change, unit_cost)
    for row in range(masks.shape[0]):
        p0 = 0.0
        p1 = 0.0
        p2 = 0.0
        outside = 0.0
        any_member = False
        for i in range(n):
            if masks[row, i]:
                w = weights[i]
                p0 += w * probabilities[i, 0]
                p1 += w * probabilities[i, 1]
                p2 += w * probabilities[i, 2]
                any_member = True
            else:
                outside += weights[i]
        if not any_member:
            out[row] = 0.0
            continue
        target = decide_target_nb(p0, p1 + outside, p2, max_position, threshold, previous_position)
        pnl = position_pnl_nb(target, previous_position, price_change, unit_cost)
        out[row] = pnl - empty_pnl if relative_to_empty else pnl


@njit(cache=True)
def ensemble_probabilities_nb(probabilities, weights, out):
    """P_ens = Σ_i w_i P_i in ascending agent order."""
    out[0] = 0.0
    out[1] = 0.0
    out[2] = 0.0
    for i in range(weights.shape[0]):
        for a in range(3):
            out[a] += weights[i] * probabilities[i, a]


# --------------------------------------------------------------------------- validation


def _finite(name: str, value: float) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {number!r}")
    return number


def _non_negative(name: str, value: float) -> float:
    number = _finite(name, value)
    if number < 0.0:
        raise ValueError(f"{name} must be >= 0, got {number!r}")
    return number


@njit(cache=True)
def votes_valid_nb(probabilities, weights, tolerance):
    """True when every probability row is finite, ≥ 0 and sums to 1, and so do the weights."""
    n = weights.shape[0]
    total_weight = 0.0
    for i in range(n):
        row = 0.0
        for a in range(3):
            p = probabilities[i, a]
            if not (p >= 0.0 and p < math.inf):
                return False
            row += p
        if abs(row - 1.0) > 1e-6:
            return False
        w = weights[i]
        if not (w >= 0.0 and w < math.inf):
            return False
        total_weight += w
    return abs(total_weight - 1.0) <= tolerance


def _check_votes(probabilities, weights) -> tuple[np.ndarray, np.ndarray]:
    if (
        type(probabilities) is np.ndarray
        and type(weights) is np.ndarray
        and probabilities.dtype == np.float64
        and weights.dtype == np.float64
        and probabilities.ndim == 2
        and probabilities.shape[1] == 3
        and probabilities.shape[0] >= 1
        and weights.shape == (probabilities.shape[0],)
        and probabilities.flags.c_contiguous
        and weights.flags.c_contiguous
        and votes_valid_nb(probabilities, weights, _WEIGHT_SUM_TOLERANCE)
    ):
        return probabilities, weights
    return _check_votes_slowly(probabilities, weights)


def _check_votes_slowly(probabilities, weights) -> tuple[np.ndarray, np.ndarray]:
    P = np.ascontiguousarray(probabilities, dtype=np.float64)
    w = np.ascontiguousarray(weights, dtype=np.float64)
    if P.ndim != 2 or P.shape[1] != 3 or P.shape[0] < 1:
        raise ValueError(
            f"probabilities must have shape (n, 3) in the order (bearish, neutral, bullish), "
            f"got {P.shape}"
        )
    if w.shape != (P.shape[0],):
        raise ValueError(f"weights must have shape ({P.shape[0]},), got {w.shape}")
    if not np.isfinite(P).all() or (P < 0.0).any():
        raise ValueError(f"probabilities must be finite and >= 0, got {P.tolist()}")
    row_sums = P.sum(axis=1)
    bad_rows = np.flatnonzero(np.abs(row_sums - 1.0) > 1e-6)
    if bad_rows.size:
        i = int(bad_rows[0])
        raise ValueError(f"probabilities[{i}] must sum to 1, got sum {row_sums[i]!r}")
    if not np.isfinite(w).all() or (w < 0.0).any():
        raise ValueError(f"weights must be finite and >= 0, got {w.tolist()}")
    if abs(w.sum() - 1.0) > _WEIGHT_SUM_TOLERANCE:
        raise ValueError(f"weights must sum to 1, got sum {w.sum()!r}")
    return P, w


def unit_trading_cost(
    price: float,
    commission_bps: float = 0.0,
    commission_per_unit: float = 0.0,
    slippage_bps: float = 0.0,
) -> float:
    """Cost of trading one unit: price (commission_bps + slippage_bps) / 10^4 + per unit."""
    price = _finite("price", price)
    if price <= 0.0:
        raise ValueError(f"price must be > 0, got {price!r}")
    commission_bps = _non_negative("commission_bps", commission_bps)
    commission_per_unit = _non_negative("commission_per_unit", commission_per_unit)
    slippage_bps = _non_negative("slippage_bps", slippage_bps)
    return price * (commission_bps + slippage_bps) * 1e-4 + commission_per_unit


# --------------------------------------------------------------------------- public API


def ensemble_probabilities(probabilities: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """P_ens = Σ_i w_i P_i, shape (3,)."""
    P, w = _check_votes(probabilities, weights)
    out = np.empty(3)
    ensemble_probabilities_nb(P, w, out)
    return out


def ensemble_confidence(probability: np.ndarray) -> float:
    """confidence = max(P) - H(P) of one probability vector (3,)."""
    p = np.asarray(probability, dtype=np.float64)
    if p.shape != (3,) or not np.isfinite(p).all():
        raise ValueError(f"probability must be a finite vector of 3 entries, got {p!r}")
    return float(confidence_nb(p[0], p[1], p[2]))


def ensemble_target(
    probabilities: np.ndarray,
    weights: np.ndarray,
    *,
    max_position: float,
    confidence_threshold: float,
    previous_position: float = 0.0,
) -> float:
    """Target position of the weighted ensemble (SPEC 3, module docstring)."""
    P_ens = ensemble_probabilities(probabilities, weights)
    return float(
        decide_target_nb(
            P_ens[0],
            P_ens[1],
            P_ens[2],
            _non_negative("max_position", max_position),
            _finite("confidence_threshold", confidence_threshold),
            _finite("previous_position", previous_position),
        )
    )


def trading_coalition_values(
    probabilities: np.ndarray,
    weights: np.ndarray,
    *,
    max_position: float,
    confidence_threshold: float,
    previous_position: float,
    price: float,
    price_change: float,
    commission_bps: float = 0.0,
    commission_per_unit: float = 0.0,
    slippage_bps: float = 0.0,
    relative_to_empty: bool = False,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """v(S) for all 2^n coalitions, indexed by bitmask (bit i = agent i); module docstring.

    ``probabilities`` (n, 3) in the order (bearish, neutral, bullish),
    ``weights`` (n,) with Σ w = 1. ``v[2**n - 1]`` is the P&L of the actual
    ensemble and ``v[0]`` is 0.
    """
    P, w = _check_votes(probabilities, weights)
    n = w.shape[0]
    if n > 24:
        raise ValueError(f"at most 24 agents for the full coalition table, got n={n}")
    unit_cost = unit_trading_cost(price, commission_bps, commission_per_unit, slippage_bps)
    if out is None:
        out = np.empty(1 << n)
    elif out.shape != (1 << n,) or out.dtype != np.float64:
        raise ValueError(f"out must be a float64 array of shape ({1 << n},), got {out.shape}")
    trading_coalition_values_nb(
        P,
        w,
        _non_negative("max_position", max_position),
        _finite("confidence_threshold", confidence_threshold),
        _finite("previous_position", previous_position),
        _finite("price_change", price_change),
        unit_cost,
        bool(relative_to_empty),
        out,
    )
    return out


def trading_value_function(
    probabilities: np.ndarray,
    weights: np.ndarray,
    *,
    max_position: float,
    confidence_threshold: float,
    previous_position: float,
    price: float,
    price_change: float,
    commission_bps: float = 0.0,
    commission_per_unit: float = 0.0,
    slippage_bps: float = 0.0,
    relative_to_empty: bool = False,
):
    """The same characteristic function as a vectorised callable, for Monte Carlo with many agents.

    Returns ``value(masks) -> values``: ``masks`` is a boolean array (m, n)
    (row = coalition), the result a float array (m,) equal to
    :func:`trading_coalition_values` at those coalitions (the same sums in
    the same order, so the same floating-point numbers). Cost O(m n).
    """
    P, w = _check_votes(probabilities, weights)
    max_position = _non_negative("max_position", max_position)
    threshold = _finite("confidence_threshold", confidence_threshold)
    previous = _finite("previous_position", previous_position)
    move = _finite("price_change", price_change)
    unit_cost = unit_trading_cost(price, commission_bps, commission_per_unit, slippage_bps)
    P, w = P.copy(), w.copy()  # the callable must not see later changes to the inputs
    n = w.shape[0]

    def value(masks: np.ndarray) -> np.ndarray:
        masks = np.ascontiguousarray(masks, dtype=np.bool_)
        if masks.ndim != 2 or masks.shape[1] != n:
            raise ValueError(f"masks must have shape (m, {n}), got {masks.shape}")
        out = np.empty(masks.shape[0])
        masked_trading_values_nb(
            masks,
            P,
            w,
            max_position,
            threshold,
            previous,
            move,
            unit_cost,
            bool(relative_to_empty),
            out,
        )
        return out

    return value
