"""The ensemble's decision and what it would have earned: SPEC 3 in one place.

The agents' votes, weighted, make the ensemble's distribution P = (P_bear, P_neutral,
P_bull); its entropy H(P) = -Σ P_k ln P_k (0 ln 0 = 0, :func:`entropy_nb`) gives the
confidence max P - H(P) (:func:`confidence_nb`), and the target is the position
``size`` (P_bull - P_bear) rounded to the lot when the confidence reaches the threshold
and the change leaves the no-trade ``band`` (in units), else the previous position
(:func:`sized_target_nb`; a position younger than its minimum holding time is held by
passing an infinite threshold). A learned agent's confidence in its own policy is the
same rule (:mod:`strategies.marl.agents`).

For the meta-investor's credit, :func:`coalition_pnl_nb` sizes the target of every
coalition S (agents outside S vote neutral with unchanged weights) and charges what the
broker would (:mod:`brokers.costs`): the P&L of the step had only S voted.

The bus path runs the scalar kernels; :func:`ensemble_targets` and :func:`coalition_pnl`
are the vectorised numpy statement of the same rules, which the training market
(:mod:`strategies.marl.env`) runs on every environment at once. Both perform the same
floating-point operations in the same order (matrix products summed over agents in
ascending order, the entropy as (t0 + t1) + t2, round half to even), so they give the
same numbers bit for bit (tests/strategies/test_meta_investor_kernels.py). The one
exception is the logarithm: the kernels call the C library's, and numpy's vectorised log
can differ from it by one ulp on some CPUs (its AVX-512 version), which can move a
confidence by an ulp; only a confidence within an ulp of the threshold would then size a
different target.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numba import njit

from brokers.config import BrokerConfig
from brokers.costs import CostRates, commission, market_fill, step_pnl, trade_costs

__all__ = [
    "PnlArguments",
    "coalition_pnl",
    "coalition_pnl_nb",
    "confidence_nb",
    "decision_nb",
    "ensemble_targets",
    "entropy_nb",
    "sampled_coalition_values",
    "sized_target_nb",
]

# the broker's cost rule, compiled into the kernels below (one definition: brokers.costs)
_market_fill_nb = njit(cache=True)(market_fill)
_commission_nb = njit(cache=True)(commission)
_step_pnl_nb = njit(cache=True)(step_pnl)

_NEUTRAL = np.array([0.0, 1.0, 0.0])


def coalition_pnl(
    probabilities: np.ndarray,
    weights: np.ndarray,
    masks: np.ndarray,
    *,
    max_position: float,
    threshold: float,
    lot_size: float,
    previous: float,
    previous_close: float,
    open_price: float,
    close_price: float,
    broker: BrokerConfig,
    band: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Targets and P&L of every coalition (rows of ``masks``), under the broker's cost rules."""
    weighted = weights[:, None] * probabilities  # (n, 3)
    outside = 1.0 - masks @ weights  # weight voting neutral in each coalition
    ensemble = masks @ weighted + outside[:, None] * _NEUTRAL
    targets = ensemble_targets(ensemble, max_position, threshold, lot_size, previous, band)
    fill, charged = trade_costs(targets - previous, open_price, CostRates.of(broker))
    pnl = step_pnl(previous, targets, previous_close, open_price, close_price, fill, charged)
    return targets, pnl


def ensemble_targets(
    ensemble: np.ndarray,
    size: float | np.ndarray,
    threshold: float | np.ndarray,
    lot_size: float,
    previous: float | np.ndarray,
    band: float | np.ndarray = 0.0,
) -> np.ndarray:
    """SPEC 3 for ensembles ``(..., 3)``: target = ``size`` (P_bull - P_bear) in lots when
    the confidence reaches ``threshold`` and the change from ``previous`` is at least
    ``band`` units, else ``previous``. ``size``, ``threshold``, ``previous`` and ``band``
    broadcast against the ensembles' leading axes (an infinite threshold holds)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.where(ensemble > 0.0, np.log(np.where(ensemble > 0.0, ensemble, 1.0)), 0.0)
    entropy = -(ensemble * logs).sum(axis=-1)
    confidence = ensemble.max(axis=-1) - entropy
    raw = size * (ensemble[..., 2] - ensemble[..., 0])
    lots = np.round(raw / lot_size) * lot_size
    trade = (confidence >= threshold - 1e-12) & ~(np.abs(lots - previous) < band)
    return np.where(trade, lots, previous)


# --------------------------------------------------------------------------- kernels


@njit(cache=True)
def entropy_nb(p0, p1, p2):
    """H(P) = -(P0 ln P0 + P1 ln P1 + P2 ln P2), 0 ln 0 = 0."""
    t0 = p0 * math.log(p0) if p0 > 0.0 else 0.0
    t1 = p1 * math.log(p1) if p1 > 0.0 else 0.0
    t2 = p2 * math.log(p2) if p2 > 0.0 else 0.0
    return -((t0 + t1) + t2)


@njit(cache=True)
def confidence_nb(p0, p1, p2):
    """max(P) - H(P) of one distribution."""
    return max(p0, max(p1, p2)) - entropy_nb(p0, p1, p2)


@njit(cache=True)
def sized_target_nb(e0, e1, e2, max_position, threshold, lot_size, previous, band):
    """:func:`ensemble_targets` for one ensemble vector."""
    confidence = confidence_nb(e0, e1, e2)
    if confidence >= threshold - 1e-12:
        lots = np.round(max_position * (e2 - e0) / lot_size) * lot_size
        if not abs(lots - previous) < band:
            return lots
    return previous


@njit(cache=True)
def decision_nb(votes, weights, max_position, threshold, lot_size, previous, band, out):
    """The ensemble's decision: out = [target, confidence, P_bear, P_neutral, P_bull]."""
    e0 = 0.0
    e1 = 0.0
    e2 = 0.0
    for i in range(weights.shape[0]):
        w = weights[i]
        e0 += w * votes[i, 0]
        e1 += w * votes[i, 1]
        e2 += w * votes[i, 2]
    out[0] = sized_target_nb(e0, e1, e2, max_position, threshold, lot_size, previous, band)
    out[1] = confidence_nb(e0, e1, e2)
    out[2] = e0
    out[3] = e1
    out[4] = e2


@njit(cache=True)
def coalition_pnl_nb(
    votes,
    weights,
    masks,
    max_position,
    threshold,
    lot_size,
    band,
    previous,
    previous_close,
    open_price,
    close_price,
    slippage,
    commission_rate,
    commission_per_unit,
    commission_minimum,
    pnl,
):
    """:func:`coalition_pnl` (the P&L only) into ``pnl``; rates are bps / 1e4."""
    n = weights.shape[0]
    for s in range(masks.shape[0]):
        inside = 0.0
        m0 = 0.0
        m1 = 0.0
        m2 = 0.0
        for i in range(n):
            m = masks[s, i]
            w = weights[i]
            inside += m * w
            m0 += m * (w * votes[i, 0])
            m1 += m * (w * votes[i, 1])
            m2 += m * (w * votes[i, 2])
        outside = 1.0 - inside  # weight voting neutral, e = (0, 1, 0)
        e0 = m0 + outside * 0.0
        e1 = m1 + outside * 1.0
        e2 = m2 + outside * 0.0
        target = sized_target_nb(e0, e1, e2, max_position, threshold, lot_size, previous, band)
        traded = target - previous
        fill = _market_fill_nb(open_price, traded, slippage)
        charged = _commission_nb(
            abs(traded), fill, commission_rate, commission_per_unit, commission_minimum
        )
        pnl[s] = _step_pnl_nb(
            previous, target, previous_close, open_price, close_price, fill, charged
        )


# The scalar arguments of coalition_pnl_nb after the masks: max_position, threshold,
# lot size, no-trade band, previous position, previous close, open, close, slippage,
# commission rate, commission per unit, commission minimum.
PnlArguments = tuple[
    float, float, float, float, float, float, float, float, float, float, float, float
]


def sampled_coalition_values(
    votes: np.ndarray, weights: np.ndarray, pnl_args: PnlArguments, actual: float
) -> Callable[[np.ndarray], np.ndarray]:
    """The step's characteristic function for Monte Carlo, on the coalitions it visits.

    Takes a boolean array (m, n) of coalitions and returns their P&L from
    :func:`coalition_pnl_nb`, the exact path's kernel, with v(∅) = 0 and v(N)
    the realised P&L ``actual`` (as the exact path sets them).
    """
    n = weights.shape[0]

    def value(coalitions: np.ndarray) -> np.ndarray:
        rows = np.ascontiguousarray(coalitions, dtype=np.float64)
        out = np.empty(rows.shape[0])
        coalition_pnl_nb(votes, weights, rows, *pnl_args, out)
        size = coalitions.sum(axis=1)
        out[size == 0] = 0.0
        out[size == n] = actual
        return out

    return value
