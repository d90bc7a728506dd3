"""One whole meta-investor step (SPEC sections 5 and 6), pure and resumable.

Per step, after the step's coalition values v(S) are known:

1. Shapley values φ: exact when n ≤ ``exact_max_agents``, else Monte Carlo
   (:mod:`strategies.meta.shapley`).
2. Share prices: the relative form with forgetting (the default), or SPEC 5.3's
   literal simple or compound form (:mod:`strategies.meta.share_price`, whose docstring
   derives the default and says what a share price means), the literal forms kept in
   the float range on long runs by an exact power-of-two rebase and a relative floor
   (:func:`_rebase_nb`).
3. Volatility σ_i: sample standard deviation of the last
   ``volatility_window`` log price changes, times √``periods_per_time_unit``.
4. Strike K_i: with ``strike = "initial"`` (the default) the initial price S(0), which
   in the relative form is the price of an agent as good as the panel's average, so a
   call is in the money by how much the agent beats the panel; with
   ``strike = "moving_average"`` (SPEC 5.5) the mean of the last ``strike_window`` share
   prices, the new price included (the initial price counts as the first of them).
5. Option values C_i: Black-Scholes (or CRR with ``crr_steps`` steps) with the
   caller's time to expiry and ``risk_free_rate``.
6. Target weights w* (allocator mode), smoothed weights
   w ← (1 - η) w + η w*, bubbles and the bubble penalty
   (:mod:`strategies.meta.allocation`).

The initial weights are equal in "option" mode and the fixed targets in the
"equal" and "softmax" modes (where smoothing then leaves them unchanged). The
smoothed weights returned by a step are the ensemble weights for the next
decision. Non-finite coalition values raise ``ValueError`` naming the step
(numbered from 1) and the coalition, before any state changes.

CRR pricing: the tree's risk-neutral probability p = (e^{rΔt} - d)/(u - d)
falls outside [0, 1] when σ√Δt < |r|Δt, which a run can reach legitimately
(a nonzero ``risk_free_rate`` and an agent whose share price has barely moved
over the volatility window, so that its σ is tiny but not 0). The step does
not stop there: that agent is valued with Black-Scholes, the tree's limit, and
the step records it: ``MetaStepResult.crr_fallback_agents`` lists the agents
so valued (empty when none, and always with ``pricing="black_scholes"``), and
:class:`~strategies.meta.investor.MetaInvestor` counts them per agent.

The hot path is one numba kernel over a flat state array, so a 3-agent step
costs a few microseconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import msgspec
import numpy as np
from numba import njit

from strategies.meta.allocation import (
    bubbles_nb,
    option_target_weights_nb,
    smooth_weights_nb,
    softmax_weights,
)
from strategies.meta.options import (
    black_scholes_call_nb,
    crr_call_nb,
    crr_degenerate_nb,
    crr_up_probability_nb,
    exercise_probability_nb,
)
from strategies.meta.params import MetaInvestorParams
from strategies.meta.shapley import (
    default_permutations,
    shapley_exact_nb,
    shapley_monte_carlo_details,
    shapley_size_weights,
)
from strategies.meta.share_price import (
    compound_factors_nb,
    relative_factors_nb,
    simple_factors_nb,
)

__all__ = ["MetaInvestorParams", "MetaInvestorState", "MetaStepResult"]  # params re-exported

_STATE_FORMAT = "emarl.meta_investor/3"
_STATE_FORMATS = ("emarl.meta_investor/2", _STATE_FORMAT)  # 2: no relative-credit scale

# Rows of the per-step result table.
_PHI, _STDERR, _PRICES, _VOLS, _STRIKES, _OPTIONS, _TARGETS, _WEIGHTS, _BUBBLES = range(9)
_ROWS = 9

# Counters: [changes recorded, next change slot, prices recorded, next price slot].
_CHANGE_COUNT, _CHANGE_SLOT, _PRICE_COUNT, _PRICE_SLOT, _REBASE = range(5)
_N_COUNTERS = 5
#: Share prices are rebased by a power of two when the largest leaves [2^-LIMIT, 2^LIMIT].
REBASE_LIMIT = 256
#: No price falls more than 2^RELATIVE_FLOOR_BITS below the largest.
RELATIVE_FLOOR_BITS = 600

# Float parameters handed to the kernel.
(
    _P_ALPHA,
    _P_FLOOR,
    _P_RTOL,
    _P_FORM,
    _P_VOL_SCALE,
    _P_RATE,
    _P_CRR,
    _P_ETA,
    _P_THETA,
    _P_BETA,
    _P_CAP,
    _P_FIXED_TARGETS,
    _P_DECAY,
    _P_GAIN,
    _P_CLIP,
    _P_SCALE_DECAY,
    _P_INITIAL,
    _P_STRIKE_INITIAL,
    _P_PER_WEIGHT,
    _P_MIN_WEIGHT,
    _P_ABSOLUTE,
    _P_EXPOSURE,
) = range(22)
_N_FLOAT_PARAMS = 22
_FORMS = {"simple": 0.0, "compound": 1.0, "relative": 2.0}


class MetaStepResult:
    """Outcome of one step; arrays are (n,) rows of one table owned by this result.

    ``phi`` Shapley values, ``stderr`` their standard errors (0 when exact),
    ``value_full`` v(N), ``value_empty`` v(∅), ``coalition_count`` the number of
    coalition values used (2^n exact; 2 + M (n - 1) evaluations Monte Carlo),
    ``method`` "exact" or "monte_carlo", then ``share_prices``,
    ``volatilities``, ``strikes``, ``option_values``, ``target_weights`` (w*),
    ``weights`` (smoothed, for the next decision), ``bubbles``,
    ``bubble_penalty`` and ``crr_fallback_agents`` (indices of the agents
    valued with Black-Scholes because the CRR probability fell outside [0, 1];
    see the module docstring).
    """

    __slots__ = (
        "bubble_penalty",
        "coalition_count",
        "crr_fallback_agents",
        "method",
        "step",
        "table",
        "value_empty",
        "value_full",
    )

    def __init__(
        self,
        step: int,
        method: str,
        coalition_count: int,
        value_full: float,
        value_empty: float,
        bubble_penalty: float,
        table: np.ndarray,
        crr_fallback_agents: tuple[int, ...] = (),
    ) -> None:
        self.step = step
        self.crr_fallback_agents = crr_fallback_agents
        self.method = method
        self.coalition_count = coalition_count
        self.value_full = value_full
        self.value_empty = value_empty
        self.bubble_penalty = bubble_penalty
        self.table = table

    phi = property(lambda self: self.table[_PHI])
    stderr = property(lambda self: self.table[_STDERR])
    share_prices = property(lambda self: self.table[_PRICES])
    volatilities = property(lambda self: self.table[_VOLS])
    strikes = property(lambda self: self.table[_STRIKES])
    option_values = property(lambda self: self.table[_OPTIONS])
    target_weights = property(lambda self: self.table[_TARGETS])
    weights = property(lambda self: self.table[_WEIGHTS])
    bubbles = property(lambda self: self.table[_BUBBLES])

    def lists(self) -> list[list[float]]:
        """The rows as lists: phi, stderr, share_prices, volatilities, strikes,
        option_values, target_weights, weights, bubbles (one conversion for all)."""
        rows: list[list[float]] = self.table.tolist()
        return rows

    def to_dict(self) -> dict[str, Any]:
        """Plain Python data (lists and numbers), e.g. for a record or a log line."""
        return {
            "step": self.step,
            "method": self.method,
            "coalition_count": self.coalition_count,
            "value_full": self.value_full,
            "value_empty": self.value_empty,
            "bubble_penalty": self.bubble_penalty,
            "phi": self.phi.tolist(),
            "stderr": self.stderr.tolist(),
            "share_prices": self.share_prices.tolist(),
            "volatilities": self.volatilities.tolist(),
            "strikes": self.strikes.tolist(),
            "option_values": self.option_values.tolist(),
            "target_weights": self.target_weights.tolist(),
            "weights": self.weights.tolist(),
            "bubbles": self.bubbles.tolist(),
            "crr_fallback_agents": list(self.crr_fallback_agents),
        }

    def __repr__(self) -> str:
        return f"MetaStepResult({self.to_dict()!r})"


# --------------------------------------------------------------------------- kernels


@njit(cache=True)
def _rebase_nb(prices, recent, counters, reported):
    """Keep the share prices in the float range on long runs.

    Rebase: when the largest price leaves [2^-REBASE_LIMIT, 2^REBASE_LIMIT], every
    price (and the strike window) is multiplied by the same power of two, which is
    exact in binary floating point. Nothing downstream changes: log price changes
    (volatility) are ratios, Black-Scholes and CRR call values are homogeneous of
    degree 1 in (S, K), and the weights C_i / Σ C_j cancel the common factor.
    ``counters[_REBASE]`` accumulates the exponent: the unscaled price is
    ``price * 2**counters[_REBASE]``.

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
        counters[_REBASE] += exponent
        top = math.ldexp(top, -exponent)
    floor = math.ldexp(top, -RELATIVE_FLOOR_BITS)
    for i in range(prices.shape[0]):
        prices[i] = max(prices[i], floor)
        reported[i] = prices[i]
    for k in range(recent.shape[0]):
        recent[k] = max(recent[k], floor)


@njit(cache=True)
def _update_nb(state, counters, fparams, crr_steps, time_to_expiry, table, scratch):
    """Steps 2-6 of the module docstring for φ in ``table[_PHI]``; returns the penalty.

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

    phi = table[_PHI]
    factors = table[_PRICES]
    form = fparams[_P_FORM]
    if form == 2.0:
        credit_scale = state[3 * n + (vol_window + strike_window) * n : state.shape[0] - 1]
        per_unit = scratch[scratch.shape[0] - n :]  # n ones, or the stakes below
        if fparams[_P_PER_WEIGHT] > 0.0:
            for i in range(n):
                per_unit[i] = weights[i] * state[state.shape[0] - 1]
        relative_factors_nb(
            phi,
            per_unit,
            prices,
            fparams[_P_INITIAL],
            fparams[_P_DECAY],
            fparams[_P_GAIN],
            fparams[_P_CLIP],
            fparams[_P_SCALE_DECAY],
            fparams[_P_RTOL],
            credit_scale,
            factors,
            fparams[_P_ABSOLUTE] > 0.0,
        )
    elif form == 1.0:
        compound_factors_nb(phi, fparams[_P_FLOOR], fparams[_P_RTOL], factors)
    else:
        simple_factors_nb(phi, fparams[_P_ALPHA], fparams[_P_FLOOR], fparams[_P_RTOL], factors)

    slot = counters[_CHANGE_SLOT]
    for i in range(n):
        new_price = prices[i] * factors[i]
        changes[slot * n + i] = math.log(new_price / prices[i])
        prices[i] = new_price
        table[_PRICES, i] = new_price
    counters[_CHANGE_SLOT] = (slot + 1) % vol_window
    count = min(counters[_CHANGE_COUNT] + 1, vol_window)
    counters[_CHANGE_COUNT] = count

    slot = counters[_PRICE_SLOT]
    for i in range(n):
        recent[slot * n + i] = prices[i]
    counters[_PRICE_SLOT] = (slot + 1) % strike_window
    price_count = min(counters[_PRICE_COUNT] + 1, strike_window)
    counters[_PRICE_COUNT] = price_count
    _rebase_nb(prices, recent, counters, table[_PRICES])

    vol_scale = fparams[_P_VOL_SCALE]
    rate = fparams[_P_RATE]
    use_crr = fparams[_P_CRR] > 0.0
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
        if fparams[_P_STRIKE_INITIAL] > 0.0:  # S(0), in the rebased units of the prices
            strike = math.ldexp(fparams[_P_INITIAL], -int(counters[_REBASE]))
        else:
            strike = 0.0
            for k in range(price_count):
                strike += recent[k * n + i]
            strike /= price_count
        table[_VOLS, i] = sigma
        table[_STRIKES, i] = strike
        value = math.nan
        if use_crr:
            value = crr_call_nb(prices[i], strike, time_to_expiry, rate, sigma, crr_steps, tree)
        if math.isnan(value):
            value = black_scholes_call_nb(prices[i], strike, time_to_expiry, rate, sigma)
        table[_OPTIONS, i] = value

    targets = table[_TARGETS]
    if fparams[_P_FIXED_TARGETS] > 0.0:
        for i in range(n):
            targets[i] = fixed_targets[i]
    else:
        # option values below a billionth of the prices are rounding noise: equal weights
        scale = 0.0
        for i in range(n):
            scale += prices[i]
        option_target_weights_nb(table[_OPTIONS], targets, fparams[_P_MIN_WEIGHT], 1e-9 * scale)
    smooth_weights_nb(weights, targets, fparams[_P_ETA], weights)
    exposure = 0.0
    for i in range(n):
        table[_WEIGHTS, i] = weights[i]
        exposure += weights[i] * exercise_probability_nb(
            prices[i], table[_STRIKES, i], time_to_expiry, rate, table[_VOLS, i]
        )
    if fparams[_P_EXPOSURE] > 0.0:  # "in_the_money", at least min_exposure
        state[state.shape[0] - 1] = min(max(exposure, fparams[_P_EXPOSURE]), 1.0)
    return bubbles_nb(
        weights, targets, fparams[_P_CAP], fparams[_P_THETA], fparams[_P_BETA], table[_BUBBLES]
    )


@njit(cache=True)
def _crr_fallbacks_nb(volatilities, time_to_expiry, rate, steps, out):
    """out[i] = 1 where :func:`_update_nb` valued agent i by Black-Scholes instead of CRR.

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
def _exact_step_nb(
    values, size_weights, state, counters, fparams, crr_steps, time_to_expiry, table, scratch
):
    """Exact Shapley into ``table`` then :func:`_update_nb`; (bad coalition or -1, penalty)."""
    bad = shapley_exact_nb(values, size_weights, table[_PHI])
    if bad >= 0:
        return bad, math.nan
    for i in range(table.shape[1]):
        table[_STDERR, i] = 0.0
    return -1, _update_nb(state, counters, fparams, crr_steps, time_to_expiry, table, scratch)


# --------------------------------------------------------------------------- state


class MetaInvestorState:
    """Streaming meta-investor for ``params.n_agents`` agents; see the module docstring.

    ``rng`` (a ``numpy.random.Generator`` built from the scenario seed) is
    required when Monte Carlo is used (n > ``exact_max_agents``).
    """

    __slots__ = (
        "_coalitions",
        "_counters",
        "_crr",
        "_exact",
        "_fparams",
        "_n",
        "_permutations",
        "_scratch",
        "_size_weights",
        "_state",
        "_step",
        "params",
        "rng",
    )

    def __init__(self, params: MetaInvestorParams, rng: np.random.Generator | None = None) -> None:
        if not isinstance(params, MetaInvestorParams):
            raise ValueError(f"params must be MetaInvestorParams, got {type(params).__name__}")
        params.validate()
        n = params.n_agents
        self.params = params
        self._n = n
        self._exact = n <= params.exact_max_agents
        if not self._exact and not isinstance(rng, np.random.Generator):
            raise ValueError(
                f"n_agents={n} > exact_max_agents={params.exact_max_agents} uses Monte Carlo "
                f"Shapley values: pass rng=numpy.random.Generator built from the scenario seed"
            )
        self.rng = rng
        self._coalitions = 1 << n if self._exact else 0
        self._crr = params.pricing == "crr"
        self._size_weights = shapley_size_weights(n) if self._exact else np.zeros(1)
        self._permutations = params.monte_carlo_permutations or default_permutations(n)
        vw, sw = params.volatility_window, params.strike_window

        fparams = np.zeros(_N_FLOAT_PARAMS)
        fparams[_P_ALPHA] = params.alpha
        fparams[_P_FLOOR] = params.price_floor
        fparams[_P_RTOL] = params.price_rtol
        fparams[_P_FORM] = _FORMS[params.share_price_form]
        decay = 2.0 ** (-1.0 / params.credit_half_life)
        fparams[_P_DECAY] = decay
        fparams[_P_GAIN] = params.sensitivity * (1.0 - decay)
        fparams[_P_CLIP] = params.credit_clip
        fparams[_P_SCALE_DECAY] = 2.0 ** (
            -1.0 / (params.scale_half_life or params.credit_half_life)
        )
        fparams[_P_INITIAL] = params.initial_share_price
        fparams[_P_STRIKE_INITIAL] = 1.0 if params.strike == "initial" else 0.0
        fparams[_P_PER_WEIGHT] = 1.0 if params.credit == "per_weight" else 0.0
        fparams[_P_MIN_WEIGHT] = params.weight_floor / n
        fparams[_P_ABSOLUTE] = 1.0 if params.benchmark == "cash" else 0.0
        # the smallest exposure of "in_the_money"; 0: "full" (the exposure stays 1)
        fparams[_P_EXPOSURE] = params.min_exposure if params.exposure == "in_the_money" else 0.0
        fparams[_P_VOL_SCALE] = math.sqrt(params.periods_per_time_unit)
        fparams[_P_RATE] = params.risk_free_rate
        fparams[_P_CRR] = 1.0 if params.pricing == "crr" else 0.0
        fparams[_P_ETA] = params.smoothing
        fparams[_P_THETA] = params.bubble_threshold
        fparams[_P_BETA] = params.bubble_penalty_weight
        fparams[_P_CAP] = params.bubble_cap
        fparams[_P_FIXED_TARGETS] = 0.0 if params.allocation == "option" else 1.0
        self._fparams = fparams

        # scratch = [volatility window, strike window, CRR tree values ..., n ones]
        tree = params.crr_steps + 1 if params.pricing == "crr" else 1
        self._scratch = np.zeros(2 + tree + n)
        self._scratch[0] = vw
        self._scratch[1] = sw
        self._scratch[-n:] = 1.0

        if params.allocation == "softmax":
            raw = np.array(params.softmax_raw_weights or (0.0,) * n, dtype=np.float64)
            fixed = softmax_weights(raw)
        else:
            fixed = np.full(n, 1.0 / n)
        self._state = np.zeros(3 * n + (vw + sw) * n + 3)
        self._state[-1] = 1.0  # the exposure of the first decision
        self._state[0:n] = params.initial_share_price
        self._state[n : 2 * n] = fixed if params.allocation != "option" else 1.0 / n
        self._state[2 * n : 3 * n] = fixed
        self._counters = np.zeros(_N_COUNTERS, dtype=np.int64)
        # S_i(0) is the first price of the strike's moving average.
        self._recent_view()[0] = params.initial_share_price
        self._counters[_PRICE_COUNT] = 1
        self._counters[_PRICE_SLOT] = 1 % sw
        self._step = 0

    # -- views into the flat state ------------------------------------------------

    def _changes_view(self) -> np.ndarray:
        n, vw = self._n, self.params.volatility_window
        return self._state[3 * n : 3 * n + vw * n].reshape(vw, n)

    def _recent_view(self) -> np.ndarray:
        n, vw, sw = self._n, self.params.volatility_window, self.params.strike_window
        return self._state[3 * n + vw * n : 3 * n + (vw + sw) * n].reshape(sw, n)

    def _scale_view(self) -> np.ndarray:
        """The relative form's typical unit: [EW variance sum, EW weight]."""
        return self._state[-3:-1]

    @property
    def exposure(self) -> float:
        """The share of ``max_position`` the next decision may take (``params.exposure``)."""
        return float(self._state[-1])

    @property
    def n_agents(self) -> int:
        return self._n

    @property
    def step_count(self) -> int:
        """Steps completed so far."""
        return self._step

    @property
    def share_prices(self) -> np.ndarray:
        """Current share prices, rebased by ``2**price_scale_exponent`` (see _rebase_nb)."""
        return self._state[0 : self._n].copy()

    @property
    def price_scale_exponent(self) -> int:
        """Unscaled share price = ``share_prices * 2**price_scale_exponent``."""
        return int(self._counters[_REBASE])

    @property
    def weights(self) -> np.ndarray:
        """Current ensemble weights (the smoothed weights of the last step)."""
        return self._state[self._n : 2 * self._n].copy()

    # -- the step -----------------------------------------------------------------

    def step(
        self,
        values: np.ndarray | Callable[[np.ndarray], np.ndarray],
        time_to_expiry: float,
    ) -> MetaStepResult:
        """Run one step with this step's coalition values; see the module docstring.

        ``values`` is the length-2^n array of v(S) indexed by bitmask, or (Monte
        Carlo only) a vectorised callable as in
        :func:`strategies.meta.shapley.shapley_monte_carlo`. ``time_to_expiry``
        is T - t in the option's time unit, finite and ≥ 0.
        """
        T = float(time_to_expiry)
        if not (math.isfinite(T) and T >= 0.0):
            raise ValueError(
                f"meta-investor step {self._step + 1}: time_to_expiry must be a finite "
                f"number >= 0, got {time_to_expiry!r}"
            )
        n = self._n
        table = np.empty((_ROWS, n))
        crr_steps = self.params.crr_steps
        if self._exact:
            v = values
            if (
                type(v) is not np.ndarray
                or v.dtype != np.float64
                or v.shape != (self._coalitions,)
                or not v.flags.c_contiguous
            ):
                v = self._coerce_values(values)
            bad, penalty = _exact_step_nb(
                v,
                self._size_weights,
                self._state,
                self._counters,
                self._fparams,
                crr_steps,
                T,
                table,
                self._scratch,
            )
            if bad >= 0:
                raise ValueError(
                    f"meta-investor step {self._step + 1}: coalition value v[{bad}] "
                    f"(coalition bitmask {bad:#b}) is {v[bad]!r}; the step's P&L must be "
                    f"finite"
                )
            self._step += 1
            return MetaStepResult(
                self._step,
                "exact",
                self._coalitions,
                float(v[-1]),
                float(v[0]),
                penalty,
                table,
                self._crr_fallbacks(table, T) if self._crr else (),
            )

        try:
            phi, stderr, empty_value, full_value, evaluations = shapley_monte_carlo_details(
                values, n, self._permutations, self.rng
            )
        except ValueError as exc:
            raise ValueError(f"meta-investor step {self._step + 1}: {exc}") from exc
        table[_PHI] = phi
        table[_STDERR] = stderr
        penalty = _update_nb(
            self._state, self._counters, self._fparams, crr_steps, T, table, self._scratch
        )
        self._step += 1
        return MetaStepResult(
            self._step,
            "monte_carlo",
            evaluations,
            full_value,
            empty_value,
            penalty,
            table,
            self._crr_fallbacks(table, T) if self._crr else (),
        )

    def _crr_fallbacks(self, table: np.ndarray, time_to_expiry: float) -> tuple[int, ...]:
        flags = np.zeros(self._n, dtype=np.int64)
        count = _crr_fallbacks_nb(
            table[_VOLS], time_to_expiry, self.params.risk_free_rate, self.params.crr_steps, flags
        )
        return tuple(np.flatnonzero(flags).tolist()) if count else ()

    def _coerce_values(self, values: Any) -> np.ndarray:
        if callable(values):
            raise ValueError(
                f"meta-investor step {self._step + 1}: exact Shapley values need the array "
                f"of all {self._coalitions} coalition values, got a callable"
            )
        v = np.ascontiguousarray(values, dtype=np.float64)
        if v.shape != (self._coalitions,):
            raise ValueError(
                f"meta-investor step {self._step + 1}: expected {self._coalitions} coalition "
                f"values (2^{self._n}, indexed by bitmask), got shape {v.shape}"
            )
        return v

    # -- persistence ----------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume, as JSON-able lists, numbers and strings."""
        rng_state = None
        if self.rng is not None:
            rng_state = _jsonable(self.rng.bit_generator.state)
        return {
            "format": _STATE_FORMAT,
            "params": msgspec.to_builtins(self.params),
            "step": self._step,
            "share_prices": self._state[0 : self._n].tolist(),
            "weights": self._state[self._n : 2 * self._n].tolist(),
            "price_changes": self._changes_view().tolist(),
            "recent_prices": self._recent_view().tolist(),
            "credit_scale": self._scale_view().tolist(),
            "exposure": self.exposure,
            "counters": self._counters.tolist(),
            "rng_state": rng_state,
        }

    @classmethod
    def from_state_dict(
        cls, data: dict[str, Any], rng: np.random.Generator | None = None
    ) -> MetaInvestorState:
        """Rebuild a state saved by :meth:`state_dict`; continuing gives identical steps.

        The saved generator state, if any, is restored into ``rng`` when given,
        else into a new generator of the saved bit generator type.
        """
        if not isinstance(data, dict) or data.get("format") not in _STATE_FORMATS:
            raise ValueError(f"not a meta-investor state of format {_STATE_FORMAT!r}")
        params = msgspec.convert(data["params"], MetaInvestorParams)
        rng_state = data.get("rng_state")
        if rng_state is not None:
            if rng is None:
                bit_generator = getattr(np.random, rng_state["bit_generator"])
                rng = np.random.Generator(bit_generator())
            rng.bit_generator.state = rng_state
        state = cls(params, rng)
        n = params.n_agents
        pieces = {
            "share_prices": (n,),
            "weights": (n,),
            "price_changes": (params.volatility_window, n),
            "recent_prices": (params.strike_window, n),
            "counters": (_N_COUNTERS,),
        }
        arrays = {}
        for key, shape in pieces.items():
            array = np.array(data[key], dtype=np.int64 if key == "counters" else np.float64)
            if array.shape != shape:
                raise ValueError(f"state field {key!r} must have shape {shape}, got {array.shape}")
            arrays[key] = array
        state._state[0:n] = arrays["share_prices"]
        state._state[n : 2 * n] = arrays["weights"]
        state._changes_view()[:] = arrays["price_changes"]
        state._recent_view()[:] = arrays["recent_prices"]
        scale = np.array(data.get("credit_scale", (0.0, 0.0)), dtype=np.float64)
        if scale.shape != (2,):
            raise ValueError(f"state field 'credit_scale' must have shape (2,), got {scale.shape}")
        state._scale_view()[:] = scale
        state._state[-1] = float(data.get("exposure", 1.0))
        state._counters[:] = arrays["counters"]
        state._step = int(data["step"])
        return state


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value
