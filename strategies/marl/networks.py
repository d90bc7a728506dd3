"""The networks of SPEC section 1, shared by training and inference.

Actions are ordered {0: bearish, 1: neutral, 2: bullish} everywhere.

* :class:`RunningNorm`: running mean and variance of an input (parallel Welford
  merge of each batch); the statistics are buffers, so they travel in the
  checkpoint's ``state_dict``. Normalised inputs are clipped to ±10.
* :class:`PolicyNet`: one per agent, ``in -> 256 -> 128 -> 64 -> 3``, ReLU,
  dropout 0.1 (``eval()`` turns it off), then a softmax with a learned
  temperature τ = softplus(ρ) + 1e-3 (ρ starts at softplus⁻¹(1), so τ starts at
  about 1). Two agents add the terms SPEC section 2 gives them:

  - NWRQK: prior logits added before the temperature, computed on the raw
    inputs (nwrqk_value, nwrqk_slope, lvn_distance, lvn_strength)::

        support     = max(0, lvn_strength - min(1, |lvn_distance| / max_distance))
        uncertainty = 1 / (1 + |slope|)
        prior       = (-β1 slope - β2 support, β3 uncertainty, β1 slope + β2 support)

    with β = (β1, β2, β3) learned (starting at 0, so the prior starts switched off)
    and ``max_distance`` = 5 ATR.
  - Regime: logits multiplied by clamp(1 / v, 0.5, 2.0) where v is
    volatility_30 divided by its running mean (the raw 30-minute volatility is
    about 0.005, so 1/volatility_30 itself would always clamp at 2; relative to
    its running mean the scale is 1 in a normal market, shrinks the logits
    towards uniform when volatility is high and sharpens them when it is low).

* :class:`CentralCritic`: ``concat(all observations, one-hot actions) -> 512 ->
  256 -> 128 -> 1``, ReLU, dropout 0.1. Rewards are per agent (the Shapley share
  of each agent), so the critic gives one value per agent: the input holds the
  one-hot actions of the *other* agents, the agent's own action block set to
  zero, and a one-hot agent id. Leaving the agent's own action out keeps the
  value a baseline for that agent's policy gradient (with its own action in,
  r + γV' - V would have zero mean given the action and the gradient would
  vanish); the other agents' actions stay in, which is what a centralized critic
  adds over independent PPO.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from strategies.marl.config import AGENTS

__all__ = [
    "AGENTS",
    "AGENT_INPUT_SIZES",
    "CentralCritic",
    "PolicyNet",
    "RunningNorm",
    "critic_input",
]

AGENT_INPUT_SIZES = {"mlmi": 4, "nwrqk": 4, "regime": 3}
N_ACTIONS = 3
NWRQK_MAX_DISTANCE = 5.0
_RHO_START = math.log(math.e - 1.0)  # softplus(ρ) = 1
_REGIME_VOLATILITY = 1  # column of volatility_30 in the regime agent's inputs


class RunningNorm(nn.Module):
    """Running mean / variance of the inputs; ``forward`` normalises and clips to ±clip."""

    mean: torch.Tensor
    var: torch.Tensor
    count: torch.Tensor

    def __init__(self, size: int, clip: float = 10.0, epsilon: float = 1e-8) -> None:
        super().__init__()
        self.clip = clip
        self.epsilon = epsilon
        self.register_buffer("mean", torch.zeros(size, dtype=torch.float64))
        self.register_buffer("var", torch.ones(size, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(0.0, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Merge a batch (…, size) into the statistics (Chan et al. parallel update)."""
        batch = x.reshape(-1, x.shape[-1]).to(torch.float64)
        n_b = batch.shape[0]
        if n_b == 0:
            return
        mean_b = batch.mean(0)
        var_b = batch.var(0, unbiased=False)
        n_a = self.count
        total = n_a + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / total
        m2 = self.var * n_a + var_b * n_b + delta.square() * n_a * n_b / total
        self.var.copy_(m2 / total)
        self.count.fill_(total)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = self.mean.to(x.dtype)
        std = torch.sqrt(self.var.to(x.dtype) + self.epsilon)
        return torch.clamp((x - mean) / std, -self.clip, self.clip)


def _mlp(sizes: tuple[int, ...], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes[:-1]):
        layers += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(dropout)]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers)


class PolicyNet(nn.Module):
    """One agent's policy; ``forward(raw inputs)`` returns tempered logits (batch, 3)."""

    def __init__(
        self,
        agent: str,
        hidden: tuple[int, ...] = (256, 128, 64),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if agent not in AGENT_INPUT_SIZES:
            raise ValueError(f"unknown agent {agent!r}; expected one of {AGENTS}")
        self.agent = agent
        size = AGENT_INPUT_SIZES[agent]
        self.norm = RunningNorm(size)
        self.body = _mlp((size, *hidden, N_ACTIONS), dropout)
        self.temperature_raw = nn.Parameter(torch.tensor(_RHO_START))
        if agent == "nwrqk":
            self.beta = nn.Parameter(torch.zeros(3))
        # Small last layer: the policy starts close to uniform.
        last = self.body[-1]
        assert isinstance(last, nn.Linear)
        with torch.no_grad():
            last.weight.mul_(0.01)
            last.bias.zero_()

    def temperature(self) -> torch.Tensor:
        return nn.functional.softplus(self.temperature_raw) + 1e-3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.body(self.norm(x))
        if self.agent == "nwrqk":
            logits = logits + nwrqk_prior(x, self.beta)
        elif self.agent == "regime":
            logits = logits * regime_scale(x, self.norm)
        return logits / self.temperature()


def nwrqk_prior(x: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Prior logits (bear, neutral, bull) of the NWRQK agent from its raw inputs."""
    slope = x[..., 1]
    distance = x[..., 2].abs()
    strength = x[..., 3]
    support = torch.clamp(strength - torch.clamp(distance / NWRQK_MAX_DISTANCE, max=1.0), min=0.0)
    uncertainty = 1.0 / (1.0 + slope.abs())
    directional = beta[0] * slope + beta[1] * support
    return torch.stack((-directional, beta[2] * uncertainty, directional), dim=-1)


def regime_scale(x: torch.Tensor, norm: RunningNorm) -> torch.Tensor:
    """clamp(1 / (volatility_30 / running mean of volatility_30), 0.5, 2), shape (batch, 1)."""
    reference = norm.mean[_REGIME_VOLATILITY].to(x.dtype)
    if float(norm.count) == 0.0 or float(reference) <= 0.0:
        return torch.ones_like(x[..., :1])
    relative = x[..., _REGIME_VOLATILITY : _REGIME_VOLATILITY + 1] / reference
    return torch.clamp(1.0 / torch.clamp(relative, min=1e-12), 0.5, 2.0)


def critic_input(
    observations: torch.Tensor, actions: torch.Tensor, agent_index: int | torch.Tensor
) -> torch.Tensor:
    """concat(observations, one-hot actions with the agent's own block zeroed, agent id).

    ``observations`` (batch, 11) raw, ``actions`` (batch, 3) integer, ``agent_index`` one
    agent for every row or a (batch,) tensor of agents.
    """
    batch = observations.shape[0]
    index = torch.as_tensor(agent_index, dtype=torch.long).expand(batch)
    agent_id = nn.functional.one_hot(index, len(AGENTS)).to(observations.dtype)
    one_hot = nn.functional.one_hot(actions.long(), N_ACTIONS).to(observations.dtype)
    one_hot = one_hot * (1.0 - agent_id)[:, :, None]
    return torch.cat((observations, one_hot.reshape(batch, -1), agent_id), dim=1)


class CentralCritic(nn.Module):
    """V_i(all observations, other agents' actions): one normalised value per row."""

    def __init__(
        self,
        observation_size: int = sum(AGENT_INPUT_SIZES.values()),
        hidden: tuple[int, ...] = (512, 256, 128),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.observation_size = observation_size
        self.norm = RunningNorm(observation_size)
        size = observation_size + len(AGENTS) * N_ACTIONS + len(AGENTS)
        self.body = _mlp((size, *hidden, 1), dropout)

    def forward(self, critic_rows: torch.Tensor) -> torch.Tensor:
        k = self.observation_size
        x = torch.cat((self.norm(critic_rows[:, :k]), critic_rows[:, k:]), dim=1)
        return self.body(x).squeeze(-1)
