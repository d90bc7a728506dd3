"""The market as a PettingZoo ``ParallelEnv`` (one episode), for other MARL libraries.

Agents ``mlmi``, ``nwrqk``, ``regime``; observations are their raw feature slices
(float32 boxes of 4, 4 and 3 values; the networks normalise them), actions
``Discrete(3)`` in the order {0: bearish, 1: neutral, 2: bullish}. Each step runs one
decision of a single-environment :class:`~strategies.marl.env.VectorMarketEnv` traded on
``terms`` (:class:`~strategies.marl.env.TradingTerms`; by default no costs and a
``max_position`` of 100); the rewards are the environment's per-agent rewards (SPEC 4).
The environment only sees actions here, so the policies' distributions passed to it are
the one-hot actions (the exploration term is then 0: add the entropy bonus in the
learner). When the episode ends (time limit or stop-out) every agent is done and
``agents`` is empty until the next ``reset``.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from brokers.costs import CostRates
from strategies.marl.env import MarketData, TradingTerms, VectorMarketEnv
from strategies.marl.networks import AGENT_INPUT_SIZES, AGENTS

__all__ = ["MarketParallelEnv"]

_SLICES = {"mlmi": slice(0, 4), "nwrqk": slice(4, 8), "regime": slice(8, 11)}


class MarketParallelEnv(ParallelEnv):
    metadata: ClassVar[dict[str, Any]] = {"name": "emarl_market_v0", "render_modes": []}

    def __init__(
        self,
        market: MarketData,
        *,
        episode_length: int = 128,
        terms: TradingTerms | None = None,
        **env_options: Any,
    ) -> None:
        self.possible_agents = list(AGENTS)
        self.agents: list[str] = []
        self.render_mode = None
        self._market = market
        self._terms = terms or TradingTerms(CostRates(), max_position=100.0)
        self._options = dict(n_envs=1, episode_length=episode_length, **env_options)
        self._env: VectorMarketEnv | None = None

    @functools.cache  # noqa: B019 - one space object per agent, as the API asks
    def observation_space(self, agent: str) -> spaces.Box:
        size = AGENT_INPUT_SIZES[agent]
        return spaces.Box(-np.inf, np.inf, shape=(size,), dtype=np.float32)

    @functools.cache  # noqa: B019
    def action_space(self, agent: str) -> spaces.Discrete:
        return spaces.Discrete(3)

    def _observations(self, row: np.ndarray) -> dict[str, np.ndarray]:
        return {a: row[_SLICES[a]].astype(np.float32) for a in self.agents}

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        if self._env is None or seed is not None:
            self._env = VectorMarketEnv(
                self._market, self._terms, rng=np.random.default_rng(seed), **self._options
            )
        self.agents = list(self.possible_agents)
        row = self._env.reset()[0]
        return self._observations(row), {a: {} for a in self.agents}

    def step(self, actions: dict[str, int]) -> tuple[dict, dict, dict, dict, dict]:
        if self._env is None or not self.agents:
            raise RuntimeError("call reset() before step()")
        chosen = np.array([[int(actions[a]) for a in self.possible_agents]])
        probabilities = np.zeros((1, 3, 3))
        np.put_along_axis(probabilities, chosen[:, :, None], 1.0, axis=2)
        _next, rewards, terminated, truncated, info = self._env.step(chosen, probabilities)
        row = info["final_observation"][0]
        observations = self._observations(row)
        reward = {a: float(rewards[0, i]) for i, a in enumerate(self.possible_agents)}
        done_term = bool(terminated[0])
        done_trunc = bool(truncated[0])
        terminations = dict.fromkeys(self.agents, done_term)
        truncations = dict.fromkeys(self.agents, done_trunc)
        infos = {
            a: {"pnl": float(info["pnl"][0]), "phi": float(info["phi"][0, i])}
            for i, a in enumerate(self.possible_agents)
        }
        if done_term or done_trunc:
            self.agents = []
        return observations, reward, terminations, truncations, infos
