"""The pieces of PPO that MAPPO's trainer (:mod:`strategies.marl.mappo`) is built from.

Generalised advantage estimation, the clipped surrogate and value losses, the policy
entropy, advantage and value normalisation, the curriculum's complexity schedule and the
learned allocator over the agents (SPEC sections 4 and 5); each is tested on its own
(tests/marl/test_maths.py).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

__all__ = [
    "LearnedAllocator",
    "ValueNormaliser",
    "clipped_surrogate_loss",
    "clipped_value_loss",
    "curriculum_complexity",
    "entropy",
    "explained_variance",
    "gae",
    "normalise_advantages",
]


# --------------------------------------------------------------------------- maths helpers


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over time (first axis).

    ``next_values[t]`` is V of the state after step t (for a truncated step: of the
    final observation of the finished episode). δ_t = r_t + γ V'_t (1 - term_t) - V_t;
    the recursion A_t = δ_t + γλ (1 - term_t)(1 - trunc_t) A_{t+1} stops at both
    kinds of end, but only termination drops the bootstrap. Returns (advantages,
    returns = advantages + values).
    """
    steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    carry = torch.zeros_like(rewards[0])
    not_terminated = 1.0 - terminated.to(rewards.dtype)
    not_done = not_terminated * (1.0 - truncated.to(rewards.dtype))
    for t in reversed(range(steps)):
        delta = rewards[t] + gamma * next_values[t] * not_terminated[t] - values[t]
        carry = delta + gamma * lam * not_done[t] * carry
        advantages[t] = carry
    return advantages, advantages + values


def clipped_surrogate_loss(
    new_log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor, clip: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-E[min(r A, clip(r, 1-ε, 1+ε) A)]; returns (loss, approximate KL, clip fraction)."""
    log_ratio = new_log_prob - old_log_prob
    ratio = log_ratio.exp()
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip, 1.0 + clip) * advantages
    loss = -torch.min(unclipped, clipped).mean()
    with torch.no_grad():
        approx_kl = ((ratio - 1.0) - log_ratio).mean()
        clip_fraction = ((ratio - 1.0).abs() > clip).to(advantages.dtype).mean()
    return loss, approx_kl, clip_fraction


def clipped_value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, clip: float
) -> torch.Tensor:
    """mean(max((V - R)², (V_old + clip(V - V_old, -c, c) - R)²))."""
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    return torch.max((values - returns).square(), (clipped - returns).square()).mean()


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """H of the softmax of ``logits`` per row."""
    log_p = torch.log_softmax(logits, dim=-1)
    return -(log_p.exp() * log_p).sum(-1)


def normalise_advantages(advantages: torch.Tensor) -> torch.Tensor:
    return (advantages - advantages.mean()) / (advantages.std() + 1e-8)


def explained_variance(predicted: np.ndarray, target: np.ndarray) -> float:
    """1 - Var(target - predicted) / Var(target) (nan when the target is constant)."""
    variance = float(np.var(target))
    if variance == 0.0:
        return math.nan
    return 1.0 - float(np.var(target - predicted)) / variance


class ValueNormaliser:
    """Running mean / variance of the returns (parallel update); the critic learns
    normalised values and :meth:`denormalise` turns them back."""

    def __init__(self) -> None:
        self.mean = 0.0
        self.var = 1.0
        self.count = 0.0

    def update(self, x: np.ndarray) -> None:
        n_b = x.size
        if n_b == 0:
            return
        mean_b = float(x.mean())
        var_b = float(x.var())
        total = self.count + n_b
        delta = mean_b - self.mean
        m2 = self.var * self.count + var_b * n_b + delta * delta * self.count * n_b / total
        self.mean += delta * n_b / total
        self.var = m2 / total
        self.count = total

    @property
    def std(self) -> float:
        return math.sqrt(self.var + 1e-8)

    def normalise(self, x):
        return (x - self.mean) / self.std

    def denormalise(self, x):
        return x * self.std + self.mean


# --------------------------------------------------------------------------- curriculum


def curriculum_complexity(
    episodes: int, stage_episodes: tuple[int, ...], stage_complexity: tuple[float, ...]
) -> tuple[int, float]:
    """(stage index, complexity) after ``episodes`` started episodes; the last stage holds."""
    boundary = 0
    for stage, (count, complexity) in enumerate(zip(stage_episodes, stage_complexity, strict=True)):
        boundary += count
        if episodes < boundary:
            return stage, complexity
    return len(stage_episodes) - 1, stage_complexity[-1]


# --------------------------------------------------------------------------- learned allocator


class LearnedAllocator(nn.Module):
    """SPEC 5.8: w = softmax(θ) maximising mean Σ_i w_i φ_i - λ wᵀ Σ w - L_bubble.

    φ is scaled by the running P&L standard deviation so λ and β are unit-free; Σ is
    the covariance of the agents' scaled Shapley values over the rollout; the bubble
    term uses the option allocator's target weights w* as the fair value.
    """

    def __init__(self, n: int = 3) -> None:
        super().__init__()
        self.raw = nn.Parameter(torch.zeros(n, dtype=torch.float64))

    def weights(self) -> torch.Tensor:
        return torch.softmax(self.raw, dim=0)

    def objective(
        self,
        phi: torch.Tensor,
        target_weights: torch.Tensor,
        risk_aversion: float,
        bubble_threshold: float,
        bubble_beta: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(objective, risk term, bubble penalty) for φ (samples, n) and w* (samples, n)."""
        w = self.weights()
        gain = (phi @ w).mean()
        covariance = torch.cov(phi.T)
        risk = risk_aversion * (w @ covariance @ w)
        bubble = w / torch.clamp(target_weights.mean(0), min=1e-6)
        penalty = bubble_beta * torch.clamp(bubble - bubble_threshold, min=0.0).square().sum()
        return gain - risk - penalty, risk, penalty
