"""The PettingZoo wrapper passes pettingzoo's own parallel API test."""

from __future__ import annotations

import numpy as np
from pettingzoo.test import parallel_api_test

from brokers.costs import CostRates
from strategies.marl.env import MarketData, TradingTerms
from strategies.marl.pettingzoo_env import MarketParallelEnv


def _market(n: int = 400) -> MarketData:
    rng = np.random.default_rng(0)
    close = 20 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    return MarketData(rng.normal(size=(n, 11)), close, close, np.ones(n, dtype=bool))


def test_parallel_api_test_passes():
    env = MarketParallelEnv(
        _market(), episode_length=30, terms=TradingTerms(CostRates(2.5, 0, 1, 1), 100.0)
    )
    parallel_api_test(env, num_cycles=200)


def test_episode_ends_for_every_agent_at_the_time_limit():
    env = MarketParallelEnv(_market(), episode_length=5)
    observations, _ = env.reset(seed=1)
    assert set(observations) == {"mlmi", "nwrqk", "regime"}
    assert observations["regime"].shape == (3,)
    for _ in range(5):
        _, rewards, terminations, truncations, _ = env.step(dict.fromkeys(env.agents, 2))
    assert all(truncations.values()) and not any(terminations.values())
    assert env.agents == []
    assert all(np.isfinite(list(rewards.values())))
