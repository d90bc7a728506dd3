"""Ensemble weights from option values, smoothing and bubbles (SPEC sections 5.6 and 5.7).

Target weights by allocator mode:

* ``"option"`` (default): w*_i = C_i / Σ_j C_j, and w*_i = 1/n when Σ_j C_j = 0
  (no agent has any option value: no information, so no preference).
* ``"equal"``: w*_i = 1/n.
* ``"softmax"``: w* = softmax(raw weights), fixed raw weights given by the
  scenario (SPEC 3).

Smoothing: w(t+1) = (1 - η) w(t) + η w*, η ∈ [0, 1]. A convex combination of
two points of the simplex stays on it; the result is clipped at 0 and divided
by its sum once more so that rounding never leaves Σ w ≠ 1 or w < 0.

Bubbles, with w the smoothed weights and w* the targets::

    Bubble_i = w_i / w*_i     when w*_i > 0,
             = 1              when w*_i = 0 and w_i = 0 (nothing held, nothing due),
             = cap            when w*_i = 0 and w_i > 0 (held but worth nothing),

and every coefficient is capped at ``cap`` (default 100) so that the penalty
stays finite::

    L_bubble = β Σ_i max(0, Bubble_i - θ)²,   θ = 1.2 by default.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = [
    "ALLOCATOR_MODES",
    "bubble_coefficients",
    "bubble_penalty",
    "smooth_weights",
    "softmax_weights",
    "target_weights",
]

ALLOCATOR_MODES = ("option", "equal", "softmax")
DEFAULT_BUBBLE_THRESHOLD = 1.2
DEFAULT_BUBBLE_CAP = 100.0


@njit(cache=True)
def option_target_weights_nb(option_values, out, floor=0.0, negligible=0.0):
    """w* = f + (1 - n f) C / ΣC with f = ``floor`` (SPEC 5.6 when f = 0), equal weights
    when ΣC is 0 or at most ``negligible`` (option values that are rounding noise, such as
    the 1e-15 intrinsic value of prices a hair above their strike, must not allocate the
    panel). A floor keeps every agent in the panel with a small stake, so that it keeps
    earning a track record from which its weight can come back."""
    n = option_values.shape[0]
    total = 0.0
    for i in range(n):
        total += option_values[i]
    if total > negligible:
        rest = 1.0 - n * floor
        for i in range(n):
            out[i] = floor + rest * (option_values[i] / total)
    else:
        for i in range(n):
            out[i] = 1.0 / n


@njit(cache=True)
def smooth_weights_nb(weights, targets, eta, out):
    """out = (1 - η) w + η w*, clipped at 0 and renormalised; ``out`` may be ``weights``."""
    n = weights.shape[0]
    total = 0.0
    for i in range(n):
        value = (1.0 - eta) * weights[i] + eta * targets[i]
        value = max(value, 0.0)
        out[i] = value
        total += value
    for i in range(n):
        out[i] /= total


@njit(cache=True)
def bubbles_nb(weights, targets, cap, threshold, beta, out):
    """Bubble coefficients into ``out``; returns the penalty β Σ max(0, B - θ)²."""
    penalty = 0.0
    for i in range(weights.shape[0]):
        if targets[i] > 0.0:
            value = min(weights[i] / targets[i], cap)
        elif weights[i] > 0.0:
            value = cap
        else:
            value = 1.0
        out[i] = value
        excess = value - threshold
        if excess > 0.0:
            penalty += excess * excess
    return beta * penalty


def _check_vector(name: str, values, *, non_negative: bool = True) -> np.ndarray:
    array = np.ascontiguousarray(values, dtype=np.float64)
    if array.ndim != 1 or array.shape[0] < 1:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite, got {array.tolist()}")
    if non_negative and (array < 0.0).any():
        raise ValueError(f"{name} must be >= 0, got {array.tolist()}")
    return array


def softmax_weights(raw_weights: np.ndarray) -> np.ndarray:
    """softmax(raw) = exp(raw - max raw) / Σ exp(raw - max raw)."""
    raw = _check_vector("raw_weights", raw_weights, non_negative=False)
    shifted = np.exp(raw - raw.max())
    return shifted / shifted.sum()


def target_weights(
    option_values: np.ndarray,
    mode: str = "option",
    raw_weights: np.ndarray | None = None,
) -> np.ndarray:
    """Target weights w* for the allocator ``mode`` (module docstring)."""
    values = _check_vector("option_values", option_values)
    n = values.shape[0]
    if mode == "option":
        out = np.empty(n)
        option_target_weights_nb(values, out)
        return out
    if mode == "equal":
        return np.full(n, 1.0 / n)
    if mode == "softmax":
        raw = np.zeros(n) if raw_weights is None else np.asarray(raw_weights, dtype=np.float64)
        if raw.shape != (n,):
            raise ValueError(f"raw_weights must have shape ({n},), got {raw.shape}")
        return softmax_weights(raw)
    raise ValueError(f"mode must be one of {ALLOCATOR_MODES}, got {mode!r}")


def smooth_weights(weights: np.ndarray, targets: np.ndarray, eta: float) -> np.ndarray:
    """(1 - η) w + η w* on the simplex (module docstring)."""
    w = _check_vector("weights", weights)
    target = _check_vector("targets", targets)
    if w.shape != target.shape:
        raise ValueError(f"weights {w.shape} and targets {target.shape} must match")
    eta = float(eta)
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1], got {eta!r}")
    for name, array in (("weights", w), ("targets", target)):
        if abs(array.sum() - 1.0) > 1e-9:
            raise ValueError(f"{name} must sum to 1, got {array.sum()!r}")
    out = np.empty_like(w)
    smooth_weights_nb(w, target, eta, out)
    return out


def bubble_coefficients(
    weights: np.ndarray, targets: np.ndarray, *, cap: float = DEFAULT_BUBBLE_CAP
) -> np.ndarray:
    """Bubble_i = w_i / w*_i with the w*_i = 0 cases and the cap of the module docstring."""
    w = _check_vector("weights", weights)
    target = _check_vector("targets", targets)
    if w.shape != target.shape:
        raise ValueError(f"weights {w.shape} and targets {target.shape} must match")
    if not (math.isfinite(cap) and cap >= 1.0):
        raise ValueError(f"cap must be a finite number >= 1, got {cap!r}")
    out = np.empty_like(w)
    bubbles_nb(w, target, float(cap), 0.0, 0.0, out)
    return out


def bubble_penalty(
    bubbles: np.ndarray, *, beta: float = 1.0, threshold: float = DEFAULT_BUBBLE_THRESHOLD
) -> float:
    """L_bubble = β Σ_i max(0, Bubble_i - θ)²."""
    b = _check_vector("bubbles", bubbles)
    if not (math.isfinite(beta) and beta >= 0.0):
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
    excess = np.maximum(b - threshold, 0.0)
    return float(beta * np.dot(excess, excess))
