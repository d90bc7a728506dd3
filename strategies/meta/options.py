"""Option values of the agents' share prices (SPEC section 5.5).

Every agent's share price is treated as the underlying of a European call:
spot ``S`` (the share price), strike ``K`` (by default the share price's moving
average), time to expiry ``T`` (in the option's time unit), volatility
``sigma`` (annualised to that same unit) and rate ``r`` (default 0).

Black-Scholes::

    C = S Φ(d1) - K e^{-rT} Φ(d2)
    d1 = [ln(S/K) + (r + σ²/2) T] / (σ √T),  d2 = d1 - σ √T

Greeks of the call (``theta`` is ∂C/∂t = -∂C/∂T, per unit of ``T``)::

    delta = Φ(d1)
    gamma = φ(d1) / (S σ √T)
    vega  = S φ(d1) √T                      (per unit of σ, not per 1 %)
    theta = -S φ(d1) σ / (2 √T) - r K e^{-rT} Φ(d2)

Cox-Ross-Rubinstein binomial tree with ``steps`` periods of Δt = T / steps::

    u = e^{σ √Δt},  d = 1/u,  p = (e^{rΔt} - d) / (u - d)
    C(T) = max(S u^{2j - steps} - K, 0),  C = e^{-rΔt} [p C^u + (1 - p) C^d]

rolled back in one array of ``steps + 1`` values (O(steps) memory,
O(steps²) time). The up probability is chosen by ``probability``:

* ``"risk_neutral"`` (default, SPEC 5.5): the exact one-step martingale
  probability p = (e^{rΔt} - d) / (u - d).
* ``"drift_matched"``: p = 1/2 + 1/2 (r - σ²/2) Δt / (σ √Δt), which matches
  the drift of log S to first order; this is QuantLib's
  ``CoxRossRubinstein`` tree (``BinomialVanillaEngine(process, "crr", steps)``
  with no dividends), reproduced to rounding. The two differ at O(Δt^{3/2})
  per step, so the prices differ at O(1/steps); both converge to
  Black-Scholes.

Edge cases (limits of the formulas, not errors):

* ``T == 0``: the intrinsic value max(S - K, 0).
* ``sigma == 0`` (or σ√T underflowing to 0) with ``T > 0``: the discounted
  intrinsic value max(S - K e^{-rT}, 0), the σ → 0 limit of Black-Scholes.
  A CRR tree whose σ√Δt is so small that u = e^{σ√Δt} rounds to d = 1/u
  (σ√Δt below about 1e-16) is valued with Black-Scholes, its σ → 0 limit.
  The greeks then are delta = 1 above the discounted strike, 0 below and 1/2
  exactly at it; gamma = vega = 0 (their limits away from that single point);
  theta = -r K e^{-rT} when in the money, else 0.
* ``S <= 0``, ``K <= 0``, ``T < 0``, ``sigma < 0``, any NaN or infinite
  input: ``ValueError`` naming the argument and the value received.
* CRR with an up probability ``p`` outside [0, 1] (risk-neutral: only when
  |r| Δt > σ √Δt; drift-matched: when |r - σ²/2| √Δt > σ; i.e. too few steps
  for the rate and the volatility): ``ValueError`` naming ``steps``.

Kernels carry the ``_nb`` suffix and take plain floats or float64 arrays; the
public wrappers validate their inputs and call them.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import numpy as np
from numba import njit

__all__ = [
    "BlackScholesGreeks",
    "binomial_call",
    "black_scholes_call",
    "black_scholes_call_array",
    "black_scholes_greeks",
    "crr_call",
    "crr_up_probability",
]

_SQRT_2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class BlackScholesGreeks(NamedTuple):
    """Sensitivities of a Black-Scholes call (see the module docstring)."""

    delta: float
    gamma: float
    vega: float
    theta: float


# --------------------------------------------------------------------------- kernels


@njit(cache=True)
def norm_cdf_nb(x):
    """Standard normal distribution function, accurate in both tails."""
    return 0.5 * math.erfc(-x / _SQRT_2)


@njit(cache=True)
def black_scholes_call_nb(S, K, T, r, sigma):
    """Black-Scholes call value; inputs are assumed valid (S, K > 0, T, σ ≥ 0)."""
    if T <= 0.0:
        return max(S - K, 0.0)
    discounted_strike = K * math.exp(-r * T)
    vol_sqrt_t = sigma * math.sqrt(T)
    if vol_sqrt_t <= 0.0:
        return max(S - discounted_strike, 0.0)
    d1 = (math.log(S / K) + r * T) / vol_sqrt_t + 0.5 * vol_sqrt_t
    d2 = d1 - vol_sqrt_t
    value = S * norm_cdf_nb(d1) - discounted_strike * norm_cdf_nb(d2)
    # Rounding in the difference can leave a tiny negative number far out of the money.
    return max(value, 0.0)


@njit(cache=True)
def exercise_probability_nb(S, K, T, r, sigma):
    """N(d2): the risk-neutral probability that a call ends in the money (1 or 0, and 0.5
    at the money, when T = 0 or σ = 0); inputs are assumed valid."""
    vol_sqrt_t = sigma * math.sqrt(T) if T > 0.0 else 0.0
    if vol_sqrt_t <= 0.0:
        forward = S * math.exp(r * T) if T > 0.0 else S
        return 1.0 if forward > K else 0.5 if forward == K else 0.0
    d2 = (math.log(S / K) + r * T) / vol_sqrt_t - 0.5 * vol_sqrt_t
    return norm_cdf_nb(d2)


@njit(cache=True)
def black_scholes_greeks_nb(S, K, T, r, sigma):
    """(delta, gamma, vega, theta) of a Black-Scholes call; inputs assumed valid."""
    if T <= 0.0:
        if S > K:
            return 1.0, 0.0, 0.0, -r * K
        if S < K:
            return 0.0, 0.0, 0.0, 0.0
        return 0.5, 0.0, 0.0, -0.5 * r * K
    discounted_strike = K * math.exp(-r * T)
    sqrt_t = math.sqrt(T)
    vol_sqrt_t = sigma * sqrt_t
    if vol_sqrt_t <= 0.0:
        if discounted_strike < S:
            return 1.0, 0.0, 0.0, -r * discounted_strike
        if discounted_strike > S:
            return 0.0, 0.0, 0.0, 0.0
        return 0.5, 0.0, 0.0, -0.5 * r * discounted_strike
    d1 = (math.log(S / K) + r * T) / vol_sqrt_t + 0.5 * vol_sqrt_t
    d2 = d1 - vol_sqrt_t
    density = _INV_SQRT_2PI * math.exp(-0.5 * d1 * d1)
    delta = norm_cdf_nb(d1)
    gamma = density / (S * vol_sqrt_t)
    vega = S * density * sqrt_t
    theta = -S * density * sigma / (2.0 * sqrt_t) - r * discounted_strike * norm_cdf_nb(d2)
    return delta, gamma, vega, theta


@njit(cache=True)
def black_scholes_call_array_nb(S, K, T, r, sigma, out):
    """Black-Scholes call values for arrays ``S, K, sigma`` (same length), scalar T, r.

    Returns -1 when every input is valid, else the index of the first invalid
    element (non-finite, S or K ≤ 0, σ < 0); ``out`` is then left partly written.
    """
    for i in range(S.shape[0]):
        s = S[i]
        k = K[i]
        v = sigma[i]
        if not (s > 0.0 and k > 0.0 and v >= 0.0):
            return i
        if not (math.isfinite(s) and math.isfinite(k) and math.isfinite(v)):
            return i
        out[i] = black_scholes_call_nb(s, k, T, r, v)
    return -1


@njit(cache=True)
def crr_degenerate_nb(T, sigma, steps):
    """True when the CRR tree has no spread: T = 0, or u = e^{σ√Δt} equals d = e^{-σ√Δt}.

    The latter when σ√Δt is 0 or below the float resolution (about 1e-16); the
    call's value is then the σ → 0 limit (see ``black_scholes_call_nb``).
    """
    if T <= 0.0:
        return True
    dx = sigma * math.sqrt(T / steps)
    return math.exp(dx) - math.exp(-dx) <= 0.0


@njit(cache=True)
def crr_up_probability_nb(T, r, sigma, steps):
    """Risk-neutral up probability of the CRR tree, p = (e^{rΔt} - d) / (u - d).

    NaN when the tree is degenerate (u = d, :func:`crr_degenerate_nb`).
    """
    dt = T / steps
    dx = sigma * math.sqrt(dt)
    up = math.exp(dx)
    down = math.exp(-dx)
    if up - down <= 0.0:
        return math.nan
    return (math.exp(r * dt) - down) / (up - down)


@njit(cache=True)
def crr_drift_matched_probability_nb(T, r, sigma, steps):
    """QuantLib's CRR up probability, p = 1/2 + 1/2 (r - σ²/2) Δt / (σ √Δt); NaN if σ√Δt = 0."""
    dt = T / steps
    dx = sigma * math.sqrt(dt)
    if dx <= 0.0:
        return math.nan
    return 0.5 + 0.5 * ((r - 0.5 * sigma * sigma) * dt) / dx


@njit(cache=True)
def binomial_call_nb(S, K, T, r, sigma, steps, p_up, values):
    """European call on a recombining tree with nodes S e^{(2j - i) σ√Δt}.

    ``p_up`` is the probability of an up move, each step discounts by
    e^{-rΔt}; ``values`` is a scratch array of at least ``steps + 1`` floats.
    Inputs are assumed valid with σ√Δt > 0.
    """
    dt = T / steps
    dx = sigma * math.sqrt(dt)
    discount = math.exp(-r * dt)
    p_discounted = discount * p_up
    q_discounted = discount * (1.0 - p_up)
    up2 = math.exp(2.0 * dx)
    node = S * math.exp(-steps * dx)
    for j in range(steps + 1):
        values[j] = max(node - K, 0.0)
        node *= up2
    for i in range(steps, 0, -1):
        for j in range(i):
            values[j] = q_discounted * values[j] + p_discounted * values[j + 1]
    return values[0]


@njit(cache=True)
def crr_call_nb(S, K, T, r, sigma, steps, values):
    """CRR call value (SPEC 5.5); edge cases as Black-Scholes; NaN when p ∉ [0, 1].

    A degenerate tree (T = 0, or u = d: :func:`crr_degenerate_nb`) is valued at its
    σ → 0 limit with ``black_scholes_call_nb``.
    """
    if crr_degenerate_nb(T, sigma, steps):
        return black_scholes_call_nb(S, K, T, r, sigma)
    p_up = crr_up_probability_nb(T, r, sigma, steps)
    if not (0.0 <= p_up <= 1.0):
        return math.nan
    return binomial_call_nb(S, K, T, r, sigma, steps, p_up, values)


# --------------------------------------------------------------------------- validation


def _finite(name: str, value: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a real number, got {value!r}") from exc
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {number!r}")
    return number


def _positive(name: str, value: float) -> float:
    number = _finite(name, value)
    if number <= 0.0:
        raise ValueError(f"{name} must be > 0, got {number!r}")
    return number


def _non_negative(name: str, value: float) -> float:
    number = _finite(name, value)
    if number < 0.0:
        raise ValueError(f"{name} must be >= 0, got {number!r}")
    return number


def _check_inputs(S, K, T, sigma, r) -> tuple[float, float, float, float, float]:
    return (
        _positive("S", S),
        _positive("K", K),
        _non_negative("T", T),
        _non_negative("sigma", sigma),
        _finite("r", r),
    )


_PROBABILITY_RULES = ("risk_neutral", "drift_matched")

_PROBABILITY_FORMULAS = {
    "risk_neutral": "p = (e^(rΔt) - d)/(u - d)",
    "drift_matched": "p = 1/2 + 1/2 (r - σ²/2) Δt/(σ√Δt)",
}


def _check_probability(probability: str) -> str:
    if probability not in _PROBABILITY_RULES:
        raise ValueError(f"probability must be one of {_PROBABILITY_RULES}, got {probability!r}")
    return probability


def _up_probability(T: float, r: float, sigma: float, steps: int, probability: str) -> float:
    if probability == "drift_matched":
        return float(crr_drift_matched_probability_nb(T, r, sigma, steps))
    return float(crr_up_probability_nb(T, r, sigma, steps))


def _check_steps(steps: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    return int(steps)


# --------------------------------------------------------------------------- public API


def black_scholes_call(S: float, K: float, T: float, sigma: float, r: float = 0.0) -> float:
    """Black-Scholes value of a European call (formulas and edge cases: module docstring)."""
    S, K, T, sigma, r = _check_inputs(S, K, T, sigma, r)
    return float(black_scholes_call_nb(S, K, T, r, sigma))


def black_scholes_greeks(
    S: float, K: float, T: float, sigma: float, r: float = 0.0
) -> BlackScholesGreeks:
    """Delta, gamma, vega and theta of a Black-Scholes call (module docstring)."""
    S, K, T, sigma, r = _check_inputs(S, K, T, sigma, r)
    return BlackScholesGreeks(*black_scholes_greeks_nb(S, K, T, r, sigma))


def black_scholes_call_array(
    S: np.ndarray,
    K: np.ndarray,
    T: float,
    sigma: np.ndarray,
    r: float = 0.0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Black-Scholes call values for many agents at once.

    ``S``, ``K`` and ``sigma`` are 1-D arrays of one length (one entry per
    agent); ``T`` and ``r`` are shared. Writes into ``out`` when given.
    """
    S = np.ascontiguousarray(S, dtype=np.float64)
    K = np.ascontiguousarray(K, dtype=np.float64)
    sigma = np.ascontiguousarray(sigma, dtype=np.float64)
    if S.ndim != 1 or K.shape != S.shape or sigma.shape != S.shape:
        raise ValueError(
            f"S, K and sigma must be 1-D arrays of one length, got shapes "
            f"{S.shape}, {K.shape}, {sigma.shape}"
        )
    T = _non_negative("T", T)
    r = _finite("r", r)
    if out is None:
        out = np.empty_like(S)
    elif out.shape != S.shape or out.dtype != np.float64:
        raise ValueError(f"out must be a float64 array of shape {S.shape}, got {out.shape}")
    bad = black_scholes_call_array_nb(S, K, T, r, sigma, out)
    if bad >= 0:
        # Slow path, only to name the offending argument.
        _positive(f"S[{bad}]", S[bad])
        _positive(f"K[{bad}]", K[bad])
        _non_negative(f"sigma[{bad}]", sigma[bad])
    return out


def crr_up_probability(
    T: float,
    sigma: float,
    r: float = 0.0,
    *,
    steps: int,
    probability: Literal["risk_neutral", "drift_matched"] = "risk_neutral",
) -> float:
    """The CRR up probability for Δt = T / steps under ``probability`` (module docstring).

    ``"risk_neutral"`` (default): p = (e^{rΔt} - d) / (u - d);
    ``"drift_matched"``: QuantLib's p = 1/2 + 1/2 (r - σ²/2) Δt / (σ √Δt).
    """
    T = _positive("T", T)
    sigma = _positive("sigma", sigma)
    r = _finite("r", r)
    steps = _check_steps(steps)
    p_up = _up_probability(T, r, sigma, steps, _check_probability(probability))
    if math.isnan(p_up):
        raise ValueError(
            f"sigma={sigma!r} is too small for T={T!r}, steps={steps}: u = e^(σ√Δt) equals "
            f"d = 1/u in floating point, so the tree has no up probability"
        )
    return p_up


def binomial_call(
    S: float, K: float, T: float, sigma: float, r: float = 0.0, *, steps: int, up_probability: float
) -> float:
    """European call on the CRR lattice (u = e^{σ√Δt}, d = 1/u) with a given up probability.

    :func:`crr_call` is this lattice with the SPEC's probability
    ``p = (e^{rΔt} - d) / (u - d)``; other trees on the same nodes differ only
    in ``up_probability`` (kept public so that the lattice can be checked
    against other implementations on their own probability).
    """
    S, K, T, sigma, r = _check_inputs(S, K, T, sigma, r)
    steps = _check_steps(steps)
    p_up = _finite("up_probability", up_probability)
    if not 0.0 <= p_up <= 1.0:
        raise ValueError(f"up_probability must lie in [0, 1], got {p_up!r}")
    if T == 0.0 or sigma == 0.0:
        raise ValueError(f"binomial_call needs T > 0 and sigma > 0, got T={T!r}, sigma={sigma!r}")
    values = np.empty(steps + 1)
    return float(binomial_call_nb(S, K, T, r, sigma, steps, p_up, values))


def crr_call(
    S: float,
    K: float,
    T: float,
    sigma: float,
    r: float = 0.0,
    *,
    steps: int = 200,
    probability: Literal["risk_neutral", "drift_matched"] = "risk_neutral",
    scratch: np.ndarray | None = None,
) -> float:
    """Cox-Ross-Rubinstein value of a European call (module docstring).

    ``probability`` picks the tree's up probability: ``"risk_neutral"``
    (default, the SPEC's p = (e^{rΔt} - d) / (u - d), the rule the
    meta-investor's step uses) or ``"drift_matched"`` (QuantLib's
    ``CoxRossRubinstein`` tree, p = 1/2 + 1/2 (r - σ²/2) Δt / (σ √Δt), which
    gives QuantLib's ``BinomialVanillaEngine(process, "crr", steps)`` value at
    the same step count). The lattice (u = e^{σ√Δt}, d = 1/u), the discount
    e^{-rΔt} per step and the edge cases (T = 0, σ = 0) are the same for both.
    ``scratch`` may pass a reusable float64 array of at least ``steps + 1``
    entries to avoid an allocation per call.
    """
    S, K, T, sigma, r = _check_inputs(S, K, T, sigma, r)
    steps = _check_steps(steps)
    _check_probability(probability)
    if scratch is None or scratch.shape[0] < steps + 1 or scratch.dtype != np.float64:
        scratch = np.empty(steps + 1)
    if probability == "risk_neutral":
        value = crr_call_nb(S, K, T, r, sigma, steps, scratch)
    elif crr_degenerate_nb(T, sigma, steps):
        value = black_scholes_call_nb(S, K, T, r, sigma)
    else:
        p_up = crr_drift_matched_probability_nb(T, r, sigma, steps)
        value = (
            binomial_call_nb(S, K, T, r, sigma, steps, p_up, scratch)
            if 0.0 <= p_up <= 1.0
            else math.nan
        )
    if math.isnan(value):
        raise ValueError(
            f"steps={steps} is too few for r={r!r}, sigma={sigma!r}, T={T!r}: the CRR "
            f"probability {_PROBABILITY_FORMULAS[probability]} falls outside [0, 1]; "
            f"use more steps"
        )
    return float(value)
