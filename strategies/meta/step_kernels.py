"""The numba kernels of one meta-investor step (:mod:`strategies.meta.step`).

The state of a panel is one flat array (:func:`update_nb`'s docstring gives its layout),
the step's parameters one float array indexed by the ``_P_*`` constants, and its results
one table with the rows ``PHI`` .. ``BUBBLES``; :class:`~strategies.meta.step.MetaInvestorState`
builds them for one panel and :class:`~strategies.meta.step.MetaInvestorBatch` for many,
stepped together by :func:`update_batch_nb`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from strategies.meta.allocation import bubbles_nb, option_target_weights_nb, smooth_weights_nb
from strategies.meta.options import (
    black_scholes_call_nb,
    crr_call_nb,
    crr_degenerate_nb,
    crr_up_probability_nb,
    exercise_probability_nb,
)
from strategies.meta.shapley import shapley_exact_nb
from strategies.meta.share_price import compound_factors_nb, relative_factors_nb, simple_factors_nb

# Rows of the per-step result table.
PHI, STDERR, PRICES, VOLS, STRIKES, OPTIONS, TARGETS, WEIGHTS, BUBBLES = range(9)
ROWS = 9

# Counters: [changes recorded, next change slot, prices recorded, next price slot].
CHANGE_COUNT, CHANGE_SLOT, PRICE_COUNT, PRICE_SLOT, REBASE = range(5)
N_COUNTERS = 5
#: Share prices are rebased by a power of two when the largest leaves [2^-LIMIT, 2^LIMIT].
REBASE_LIMIT = 256
#: No price falls more than 2^RELATIVE_FLOOR_BITS below the largest.
RELATIVE_FLOOR_BITS = 600

# Float parameters handed to the kernel.
(
    P_ALPHA,
    P_FLOOR,
    P_RTOL,
    P_FORM,
    P_VOL_SCALE,
    P_RATE,
    P_CRR,
    P_ETA,
    P_THETA,
    P_BETA,
    P_CAP,
    P_FIXED_TARGETS,
    P_DECAY,
    P_GAIN,
    P_CLIP,
    P_SCALE_DECAY,
    P_INITIAL,
    P_STRIKE_INITIAL,
    P_PER_WEIGHT,
    P_MIN_WEIGHT,
    P_ABSOLUTE,
    P_EXPOSURE,
) = range(22)
N_FLOAT_PARAMS = 22
FORMS = {"simple": 0.0, "compound": 1.0, "relative": 2.0}


@njit(cache=True)
def rebase_nb(prices, recent, counters, reported):
    """Keep the share prices in the float range on long runs.

    Rebase: when the largest price leaves [2^-REBASE_LIMIT, 2^REBASE_LIMIT], every
    price (and the strike window) is multiplied by the same power of two, which is
    exact in binary floating point. Nothing downstream changes: log price changes
    (volatility) are ratios, Black-Scholes and CRR call values are homogeneous of
    degree 1 in (S, K), and the weights C_i / Σ C_j cancel the common factor.
    ``counters[REBASE]`` accumulates the exponent: the unscaled price is
    ``price * 2**counters[REBASE]``.

    Relative floor: a price more than 2^RELATIVE_FLOOR_BITS below the largest (an agent
    that has lost to the others for a very long time; its call is worthless) is held
    at that floor, so that it never underflows to 0.
    """
    top = 0.0
    for i in range(prices.shape[0]):
        top = max(top, prices[i])
    if not (top > 0.0 and math.isfinite(top)):
        return
    _mantissa, exponent = math.frexp(top)
    if not -REBASE_LIMIT <= exponent <= REBASE_LIMIT:
        for i in range(prices.shape[0]):
            prices[i] = math.ldexp(prices[i], -exponent)
        for k in range(recent.shape[0]):
            recent[k] = math.ldexp(recent[k], -exponent)
        counters[REBASE] += exponent
        top = math.ldexp(top, -exponent)
    floor = math.ldexp(top, -RELATIVE_FLOOR_BITS)
    for i in range(prices.shape[0]):
        prices[i] = max(prices[i], floor)
        reported[i] = prices[i]
    for k in range(recent.shape[0]):
        recent[k] = max(recent[k], floor)


@njit(cache=True)
def update_nb(state, counters, fparams, crr_steps, time_to_expiry, table, scratch):
    """Steps 2-6 of the module docstring for φ in ``table[PHI]``; returns the penalty.

    ``state`` is [prices (n), weights (n), fixed targets (n), change ring (vw × n),
    price ring (sw × n), relative-credit scale (2), exposure (1)] flattened.
    """
    n = table.shape[1]
    prices = state[0:n]
    weights = state[n : 2 * n]
    fixed_targets = state[2 * n : 3 * n]
    vol_window = int(scratch[0])
    strike_window = int(scratch[1])
    changes = state[3 * n : 3 * n + vol_window * n]
    recent = state[3 * n + vol_window * n : 3 * n + (vol_window + strike_window) * n]

    phi = table[PHI]
    factors = table[PRICES]
    form = fparams[P_FORM]
    if form == 2.0:
        credit_scale = state[3 * n + (vol_window + strike_window) * n : state.shape[0] - 1]
        per_unit = scratch[scratch.shape[0] - n :]  # n ones, or the stakes below
        if fparams[P_PER_WEIGHT] > 0.0:
            for i in range(n):
                per_unit[i] = weights[i] * state[state.shape[0] - 1]
        relative_factors_nb(
            phi,
            per_unit,
            prices,
            fparams[P_INITIAL],
            fparams[P_DECAY],
            fparams[P_GAIN],
            fparams[P_CLIP],
            fparams[P_SCALE_DECAY],
            fparams[P_RTOL],
            credit_scale,
            factors,
            fparams[P_ABSOLUTE] > 0.0,
        )
    elif form == 1.0:
        compound_factors_nb(phi, fparams[P_FLOOR], fparams[P_RTOL], factors)
    else:
        simple_factors_nb(phi, fparams[P_ALPHA], fparams[P_FLOOR], fparams[P_RTOL], factors)

    slot = counters[CHANGE_SLOT]
    for i in range(n):
        new_price = prices[i] * factors[i]
        changes[slot * n + i] = math.log(new_price / prices[i])
        prices[i] = new_price
        table[PRICES, i] = new_price
    counters[CHANGE_SLOT] = (slot + 1) % vol_window
    count = min(counters[CHANGE_COUNT] + 1, vol_window)
    counters[CHANGE_COUNT] = count

    slot = counters[PRICE_SLOT]
    for i in range(n):
        recent[slot * n + i] = prices[i]
    counters[PRICE_SLOT] = (slot + 1) % strike_window
    price_count = min(counters[PRICE_COUNT] + 1, strike_window)
    counters[PRICE_COUNT] = price_count
    rebase_nb(prices, recent, counters, table[PRICES])

    vol_scale = fparams[P_VOL_SCALE]
    rate = fparams[P_RATE]
    use_crr = fparams[P_CRR] > 0.0
    tree = scratch[2 : scratch.shape[0] - n]
    for i in range(n):
        if count >= 2:
            mean = 0.0
            for k in range(count):
                mean += changes[k * n + i]
            mean /= count
            total = 0.0
            for k in range(count):
                total += (changes[k * n + i] - mean) ** 2
            sigma = math.sqrt(total / (count - 1)) * vol_scale
        else:
            sigma = 0.0
        if fparams[P_STRIKE_INITIAL] > 0.0:  # S(0), in the rebased units of the prices
            strike = math.ldexp(fparams[P_INITIAL], -int(counters[REBASE]))
        else:
            strike = 0.0
            for k in range(price_count):
                strike += recent[k * n + i]
            strike /= price_count
        table[VOLS, i] = sigma
        table[STRIKES, i] = strike
        value = math.nan
        if use_crr:
            value = crr_call_nb(prices[i], strike, time_to_expiry, rate, sigma, crr_steps, tree)
        if math.isnan(value):
            value = black_scholes_call_nb(prices[i], strike, time_to_expiry, rate, sigma)
        table[OPTIONS, i] = value

    targets = table[TARGETS]
    if fparams[P_FIXED_TARGETS] > 0.0:
        for i in range(n):
            targets[i] = fixed_targets[i]
    else:
        # option values below a billionth of the prices are rounding noise: equal weights
        scale = 0.0
        for i in range(n):
            scale += prices[i]
        option_target_weights_nb(table[OPTIONS], targets, fparams[P_MIN_WEIGHT], 1e-9 * scale)
    smooth_weights_nb(weights, targets, fparams[P_ETA], weights)
    exposure = 0.0
    for i in range(n):
        table[WEIGHTS, i] = weights[i]
        exposure += weights[i] * exercise_probability_nb(
            prices[i], table[STRIKES, i], time_to_expiry, rate, table[VOLS, i]
        )
    if fparams[P_EXPOSURE] > 0.0:  # "in_the_money", at least min_exposure
        state[state.shape[0] - 1] = min(max(exposure, fparams[P_EXPOSURE]), 1.0)
    return bubbles_nb(
        weights, targets, fparams[P_CAP], fparams[P_THETA], fparams[P_BETA], table[BUBBLES]
    )


@njit(cache=True)
def crr_fallbacks_nb(volatilities, time_to_expiry, rate, steps, out):
    """out[i] = 1 where :func:`update_nb` valued agent i by Black-Scholes instead of CRR.

    The same test as ``crr_call_nb``: a tree that is not degenerate (T > 0, u > d) with
    p ∉ [0, 1]. Returns the count.
    """
    count = 0
    for i in range(volatilities.shape[0]):
        sigma = volatilities[i]
        out[i] = 0
        if crr_degenerate_nb(time_to_expiry, sigma, steps):
            continue
        p_up = crr_up_probability_nb(time_to_expiry, rate, sigma, steps)
        if not (0.0 <= p_up <= 1.0):
            out[i] = 1
            count += 1
    return count


@njit(cache=True)
def exact_step_nb(
    values, size_weights, state, counters, fparams, crr_steps, time_to_expiry, table, scratch
):
    """Exact Shapley into ``table`` then :func:`update_nb`; (bad coalition or -1, penalty)."""
    bad = shapley_exact_nb(values, size_weights, table[PHI])
    if bad >= 0:
        return bad, math.nan
    for i in range(table.shape[1]):
        table[STDERR, i] = 0.0
    return -1, update_nb(state, counters, fparams, crr_steps, time_to_expiry, table, scratch)


@njit(cache=True)
def update_batch_nb(phi, states, counters, fparams, crr_steps, time_to_expiry, tables, scratch):
    """:func:`update_nb` for every panel e: φ ``phi[e]``, state ``states[e]``, counters
    ``counters[e]``, time to expiry ``time_to_expiry[e]``; returns the penalties."""
    penalties = np.empty(phi.shape[0])
    for e in range(phi.shape[0]):
        for i in range(phi.shape[1]):
            tables[e, PHI, i] = phi[e, i]
            tables[e, STDERR, i] = 0.0
        penalties[e] = update_nb(
            states[e], counters[e], fparams, crr_steps, time_to_expiry[e], tables[e], scratch
        )
    return penalties
