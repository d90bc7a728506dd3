"""The reward terms of SPEC section 4, vectorised over environments and agents.

R_i = α R_pnl,i + β R_synergy,i + γ R_risk + δ R_exploration,i + ε R_turnover,i, then
the running normalisation of :class:`RewardNormaliser`. Arrays are (envs, agents).

* R_pnl,i = tanh(p_i / (2 σ_pnl)) with p_i = w_i φ_i, the agent's Shapley share
  of the step's P&L weighted by its ensemble weight, and σ_pnl a running standard
  deviation of the ensemble's step P&L (exponential moving average of the batch
  standard deviation, decay 0.99).
* R_synergy,i = strength_i · cos(d_i, s_i): d_i ∈ {-1, 0, +1} is agent i's vote
  direction (action - 1); the other agents' confidence-weighted vote
  m_i = Σ_{j≠i} c_j d_j with c_j = max_a π_j(a) gives the synergy direction
  s_i = sign(m_i) and the strength |m_i| / Σ_{j≠i} c_j ∈ [0, 1]. The cosine of two
  directions on a line is d_i s_i (0 when either is 0).
* R_risk = -max(0, (drawdown - threshold) / threshold)², the drawdown of the
  episode's equity from its running peak, the same for every agent.
* R_exploration,i = β_exp H(π_i(.|s)).
* R_turnover,i = -w_i |d| / max_position: the step's traded quantity d as a share of the
  largest position, charged to each agent by its ensemble weight (emarl's addition, weight
  ε = ``reward_turnover``, 0 by default). The P&L term already pays the commission and
  slippage of a trade, but through a tanh of a noisy P&L; this term makes churn cost
  every time, so that the agents learn to change their votes only when it pays.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "RewardNormaliser",
    "RewardWeights",
    "exploration_reward",
    "pnl_reward",
    "risk_reward",
    "synergy_reward",
    "turnover_reward",
]

from dataclasses import dataclass


@dataclass(frozen=True)
class RewardWeights:
    """α, β, γ, δ of SPEC 4, the drawdown threshold and β_exp."""

    pnl: float = 1.0
    synergy: float = 0.1
    risk: float = 0.5
    exploration: float = 0.1
    drawdown_threshold: float = 0.05
    exploration_beta: float = 0.1
    turnover: float = 0.0


def pnl_reward(weighted_phi: np.ndarray, running_std: float) -> np.ndarray:
    """tanh(w_i φ_i / (2 σ)); zero while σ is not known yet."""
    if not running_std > 0.0:
        return np.zeros_like(weighted_phi)
    return np.tanh(weighted_phi / (2.0 * running_std))


def synergy_reward(actions: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """strength_i · d_i · sign(m_i), see the module docstring. ``actions`` (E, n) ints,
    ``probabilities`` (E, n, 3)."""
    direction = actions.astype(np.float64) - 1.0
    confidence = probabilities.max(axis=2)
    votes = confidence * direction
    others = votes.sum(axis=1, keepdims=True) - votes
    others_confidence = confidence.sum(axis=1, keepdims=True) - confidence
    with np.errstate(divide="ignore", invalid="ignore"):
        strength = np.where(others_confidence > 0, np.abs(others) / others_confidence, 0.0)
    return strength * direction * np.sign(others)


def risk_reward(drawdown: np.ndarray, threshold: float) -> np.ndarray:
    """-max(0, (drawdown - threshold) / threshold)² per environment."""
    excess = np.maximum(0.0, (drawdown - threshold) / threshold)
    return -(excess * excess)


def exploration_reward(probabilities: np.ndarray, beta: float) -> np.ndarray:
    """β H(π) per environment and agent, 0 ln 0 = 0."""
    p = probabilities
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.where(p > 0.0, np.log(np.where(p > 0.0, p, 1.0)), 0.0)
    return -beta * (p * logs).sum(axis=-1)


class RewardNormaliser:
    """SPEC 4: mean ← 0.99 mean + 0.01 batch mean, same for std; r ← (r - mean) / (std + 1e-8).

    The first batch sets the statistics directly (so they do not start at 0 / 1).
    """

    def __init__(self, decay: float = 0.99) -> None:
        self.decay = decay
        self.mean = 0.0
        self.std = 1.0
        self.initialised = False

    def __call__(self, rewards: np.ndarray) -> np.ndarray:
        batch_mean = float(rewards.mean())
        batch_std = float(rewards.std())
        if not self.initialised:
            self.mean, self.std, self.initialised = batch_mean, batch_std, True
        else:
            d = self.decay
            self.mean = d * self.mean + (1.0 - d) * batch_mean
            self.std = d * self.std + (1.0 - d) * batch_std
        return (rewards - self.mean) / (self.std + 1e-8)

    def state_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "std": self.std}


def turnover_reward(weights: np.ndarray, traded: np.ndarray, max_position: float) -> np.ndarray:
    """-w_i |d| / max_position for ensemble weights (E, n) and traded quantities (E,)."""
    return -weights * (np.abs(traded) / max_position)[:, None]


def total_reward(
    weights: RewardWeights,
    pnl: np.ndarray,
    synergy: np.ndarray,
    risk: np.ndarray,
    exploration: np.ndarray,
    turnover: np.ndarray | None = None,
) -> np.ndarray:
    """α R_pnl + β R_synergy + γ R_risk (broadcast over agents) + δ R_exploration
    (+ ε R_turnover)."""
    total = (
        weights.pnl * pnl
        + weights.synergy * synergy
        + weights.risk * risk[:, None]
        + weights.exploration * exploration
    )
    if turnover is not None and weights.turnover:
        total = total + weights.turnover * turnover
    return total
