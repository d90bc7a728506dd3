"""Agent share prices and their volatility (SPEC sections 5.3 and 5.4).

Relative form (the default): credit with forgetting, in typical units. An agent is
credited with its Shapley value per unit of the stake it was given (``credit =
"per_weight"``), x_i = φ_i / (w_i e), with w_i its weight and e the exposure of the
decision (the share of ``max_position`` the ensemble could take): the P&L its calls made
per unit of capital, comparable between agents whatever their weights (an agent with a
small weight still earns a track record; a raw φ_i would be small just because w_i is).
Each step the credit is measured against a benchmark b (``benchmark``: "cash", b = 0, or
"panel", b = mean_j x_j) in typical units,

    z_i = clip((x_i - b) / s, -c, c),

where s² is an exponentially weighted mean (half-life ``scale_half_life`` credited steps)
of mean_j (x_j - b)², and the log price forgets at the half-life h (``credit_half_life``,
in bars), λ = 2^(-1/h):

    log(S_i(t+1) / S_i(0)) = λ log(S_i(t) / S_i(0)) + κ (1 - λ) z_i

with κ the ``sensitivity``. So log(S_i / S_i(0)) is κ times an exponentially weighted
mean of the agent's credit over about the last h bars: an agent whose calls make one
typical unit on every bar settles at S = S(0) e^κ, one without edge wanders around S(0)
with a log-spread of about κ √(ln 2 / (2h)), and weight that went to an agent flows back
within a few half-lives once its credit turns. **What a share price of 2.0 means** (S(0) =
1, the cash benchmark): over roughly the last h bars, weighted toward the latest, the
agent's calls made money at ln 2 / κ typical units per bar (with the defaults κ = 8,
h = 32: about 0.09 units, a bar-by-bar information ratio of about 0.09); 0.5 means they
lost at that rate. Prices stay within S(0) e^(±κ c) by construction (c = ``credit_clip``),
and a step on which every credit equals the benchmark credits nobody but still forgets.
The options then value each agent's call struck at S(0) (:mod:`strategies.meta.step`):
in the money by how far the agent has been making money.

Why not the literal forms at bar frequency: the simple form compounds a step of about ±α
every bar and never forgets, so over 25,000 bars the prices drift e^50 apart and the
option weights lock onto one agent for good (on the Weichai demo: weights 1.0, 4e-12,
4e-62 within weeks, share prices 1e61 and 1e-49).

Simple form (SPEC 5.3)::

    S_i(t+1) = S_i(t) · max(1 + α (φ_i - φ̄) / σ_φ, floor)
    φ̄ = mean_j φ_j,  σ_φ = population standard deviation of φ_j

The update is skipped (every price unchanged) when σ_φ ≤ rtol · max_j |φ_j|
or σ_φ = 0: identical Shapley values carry no ranking, and the tolerance keeps
the rounding noise of a mean of equal numbers (σ_φ ≈ 1e-17) from being blown up
into O(1) moves. With one agent σ_φ = 0 always, so its price never moves.
``floor`` (> 0) keeps prices positive.

Compound form::

    S_i(t) = S_i(0) exp(Σ_τ log(max(1 + φ_i(τ) / |φ̄(τ)|, floor)))

applied one step at a time as S_i(t+1) = S_i(t) · max(1 + φ_i / |φ̄|, floor).
Decisions, both documented guards of the SPEC formula:

* The denominator is |φ̄|, not φ̄: with the literal φ_i / φ̄ a losing step
  (φ̄ < 0) would raise the prices of the agents that lost most and crush the
  ones that made money; with |φ̄| the factor grows with φ_i in every step.
* φ̄ ≈ 0, meaning |φ̄| ≤ rtol · max_j |φ_j| (or all φ_j = 0), skips the step
  (every factor 1), since the ratio is undefined or pure noise.
* 1 + φ_i / |φ̄| ≤ floor (e.g. ≤ 0) is clamped to ``floor``.

Volatility: σ_i is the sample standard deviation (ddof = 1) of the last
``window`` log price changes log(S_i(τ) / S_i(τ-1)), times
√(periods_per_unit), where ``periods_per_unit`` is the number of steps in one
unit of the option's time (1 when time to expiry is counted in steps; for
30-minute bars and T in years, the bars per year). With fewer than two
changes recorded σ_i = 0.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = [
    "RollingVolatility",
    "compound_share_price_factors",
    "rolling_log_volatility",
    "simple_share_price_factors",
    "update_share_prices",
]

DEFAULT_FLOOR = 1e-6
DEFAULT_SIGMA_RTOL = 1e-9
DEFAULT_MEAN_RTOL = 1e-9


@njit(cache=True)
def _mean_and_largest_nb(phi):
    """The mean of ``phi`` and the largest |φ_i|."""
    n = phi.shape[0]
    mean = 0.0
    largest = 0.0
    for i in range(n):
        mean += phi[i]
        largest = max(largest, abs(phi[i]))
    return mean / n, largest


@njit(cache=True)
def _literal_factors_nb(phi, centre, gain, scale, largest, floor, rtol, factors):
    """max(1 + gain (φ_i - centre) / scale, floor) into ``factors``, the literal forms' rule;
    all 1 and False (the step is skipped) when ``scale`` is 0 or at most rtol · max|φ|."""
    n = phi.shape[0]
    if scale == 0.0 or scale <= rtol * largest:
        for i in range(n):
            factors[i] = 1.0
        return False
    for i in range(n):
        factors[i] = max(1.0 + gain * (phi[i] - centre) / scale, floor)
    return True


@njit(cache=True)
def simple_factors_nb(phi, alpha, floor, rtol, factors):
    """Factors of the simple form into ``factors``; returns False when the step is skipped."""
    n = phi.shape[0]
    mean, largest = _mean_and_largest_nb(phi)
    variance = 0.0
    for i in range(n):
        variance += (phi[i] - mean) ** 2
    sigma = math.sqrt(variance / n)
    return _literal_factors_nb(phi, mean, alpha, sigma, largest, floor, rtol, factors)


@njit(cache=True)
def compound_factors_nb(phi, floor, rtol, factors):
    """Factors of the compound form into ``factors``; returns False when skipped. The
    compound form is the simple one's rule centred at 0 with gain 1 and scale |φ̄|
    (1 · (φ_i - 0) is φ_i exactly)."""
    mean, largest = _mean_and_largest_nb(phi)
    return _literal_factors_nb(phi, 0.0, 1.0, abs(mean), largest, floor, rtol, factors)


@njit(cache=True)
def relative_factors_nb(
    phi,
    weights,
    prices,
    initial,
    decay,
    gain,
    clip,
    scale_decay,
    rtol,
    scale,
    factors,
    absolute=False,
):
    """Factors of the relative form into ``factors``; ``scale`` = [EW variance sum, EW weight]
    is updated in place. Returns False when nobody was credited (only forgetting).

    The credit of agent i is its Shapley value per unit of its weight, φ_i / w_i (all
    ones in ``weights`` compare the raw φ_i)."""
    n = phi.shape[0]
    mean = 0.0
    largest = 0.0
    for i in range(n):
        credit = phi[i] / weights[i] if weights[i] > 0.0 else 0.0
        mean += credit
        largest = max(largest, abs(credit))
    mean /= n
    if absolute:
        mean = 0.0
    variance = 0.0
    for i in range(n):
        credit = phi[i] / weights[i] if weights[i] > 0.0 else 0.0
        variance += (credit - mean) ** 2
    variance /= n
    credited = not (variance == 0.0 or math.sqrt(variance) <= rtol * largest)
    spread = 0.0
    if credited:
        scale[0] = scale_decay * scale[0] + (1.0 - scale_decay) * variance
        scale[1] = scale_decay * scale[1] + (1.0 - scale_decay)
        spread = math.sqrt(scale[0] / scale[1])
    for i in range(n):
        level = math.log(prices[i] / initial)
        z = 0.0
        if credited:
            credit = phi[i] / weights[i] if weights[i] > 0.0 else 0.0
            z = min(max((credit - mean) / spread, -clip), clip)
        factors[i] = math.exp(decay * level + gain * z - level)
    return credited


@njit(cache=True)
def sample_std_nb(values, count):
    """Sample standard deviation (ddof = 1) of the first ``count`` entries; 0 if count < 2."""
    if count < 2:
        return 0.0
    mean = 0.0
    for k in range(count):
        mean += values[k]
    mean /= count
    total = 0.0
    for k in range(count):
        total += (values[k] - mean) ** 2
    return math.sqrt(total / (count - 1))


def _check_phi(phi) -> np.ndarray:
    phi = np.ascontiguousarray(phi, dtype=np.float64)
    if phi.ndim != 1 or phi.shape[0] < 1:
        raise ValueError(f"phi must be a non-empty 1-D array, got shape {phi.shape}")
    if not np.isfinite(phi).all():
        raise ValueError(f"phi must be finite, got {phi.tolist()}")
    return phi


def _check_floor(floor: float) -> float:
    floor = float(floor)
    if not 0.0 < floor < 1.0:
        raise ValueError(f"floor must lie in (0, 1), got {floor!r}")
    return floor


def simple_share_price_factors(
    phi: np.ndarray,
    alpha: float,
    *,
    floor: float = DEFAULT_FLOOR,
    sigma_rtol: float = DEFAULT_SIGMA_RTOL,
) -> np.ndarray:
    """Per-agent factors S(t+1)/S(t) of the simple form (module docstring)."""
    phi = _check_phi(phi)
    alpha = float(alpha)
    if not (math.isfinite(alpha) and alpha >= 0.0):
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
    factors = np.empty_like(phi)
    simple_factors_nb(phi, alpha, _check_floor(floor), float(sigma_rtol), factors)
    return factors


def compound_share_price_factors(
    phi: np.ndarray,
    *,
    floor: float = DEFAULT_FLOOR,
    mean_rtol: float = DEFAULT_MEAN_RTOL,
) -> np.ndarray:
    """Per-agent factors S(t+1)/S(t) of the compound form (module docstring)."""
    phi = _check_phi(phi)
    factors = np.empty_like(phi)
    compound_factors_nb(phi, _check_floor(floor), float(mean_rtol), factors)
    return factors


def update_share_prices(
    prices: np.ndarray,
    phi: np.ndarray,
    *,
    form: str = "simple",
    alpha: float = 0.05,
    floor: float = DEFAULT_FLOOR,
    rtol: float = 1e-9,
) -> np.ndarray:
    """New share prices after one step's Shapley values (``form``: "simple" or "compound")."""
    prices = np.asarray(prices, dtype=np.float64)
    if form == "simple":
        factors = simple_share_price_factors(phi, alpha, floor=floor, sigma_rtol=rtol)
    elif form == "compound":
        factors = compound_share_price_factors(phi, floor=floor, mean_rtol=rtol)
    else:
        raise ValueError(f"form must be 'simple' or 'compound', got {form!r}")
    if prices.shape != factors.shape or not (prices > 0.0).all():
        raise ValueError(f"prices must be positive with shape {factors.shape}, got {prices!r}")
    return prices * factors


def rolling_log_volatility(
    prices: np.ndarray, window: int, periods_per_unit: float = 1.0
) -> np.ndarray:
    """Batch volatility: row t is σ after the price row t (module docstring).

    ``prices`` is (T + 1, n) with row 0 the initial prices. Returns (T + 1, n);
    row 0 (no change yet) and row 1 (one change) are 0.
    """
    prices = np.asarray(prices, dtype=np.float64)
    if prices.ndim != 2 or not (prices > 0.0).all():
        raise ValueError("prices must be a 2-D array of positive prices")
    changes = np.log(prices[1:] / prices[:-1])
    out = np.zeros_like(prices)
    scale = math.sqrt(periods_per_unit)
    for t in range(1, prices.shape[0]):
        recent = changes[max(0, t - window) : t]
        if recent.shape[0] >= 2:
            out[t] = recent.std(axis=0, ddof=1) * scale
    return out


class RollingVolatility:
    """Streaming version of :func:`rolling_log_volatility` over a ring buffer.

    ``update(prices)`` records log(prices / previous prices) for every agent and
    returns the current σ (n,); equal to the batch function row by row.
    """

    __slots__ = ("_changes", "_count", "_last", "_position", "_scale", "_scratch", "window")

    def __init__(
        self, initial_prices: np.ndarray, window: int, periods_per_unit: float = 1.0
    ) -> None:
        initial = np.array(initial_prices, dtype=np.float64)
        if initial.ndim != 1 or not (initial > 0.0).all():
            raise ValueError(f"initial_prices must be positive, got {initial!r}")
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window!r}")
        if not (math.isfinite(periods_per_unit) and periods_per_unit > 0.0):
            raise ValueError(f"periods_per_unit must be > 0, got {periods_per_unit!r}")
        self.window = int(window)
        self._changes = np.zeros((self.window, initial.shape[0]))
        self._scratch = np.empty(self.window)
        self._count = 0
        self._position = 0
        self._last = initial
        self._scale = math.sqrt(periods_per_unit)

    def update(self, prices: np.ndarray) -> np.ndarray:
        prices = np.array(prices, dtype=np.float64)
        if prices.shape != self._last.shape or not (prices > 0.0).all():
            raise ValueError(f"prices must be positive with shape {self._last.shape}")
        self._changes[self._position] = np.log(prices / self._last)
        self._last = prices
        self._position = (self._position + 1) % self.window
        self._count = min(self._count + 1, self.window)
        out = np.empty(prices.shape[0])
        for i in range(prices.shape[0]):
            self._scratch[: self._count] = self._changes[: self._count, i]
            out[i] = sample_std_nb(self._scratch, self._count) * self._scale
        return out
