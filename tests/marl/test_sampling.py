"""SPEC 3's temperature-scaled sampling of the learned agents on the bus."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import softmax

from engine.app.scenario import parse_scenario
from engine.core.bus import MessageBus
from engine.core.clock import SimulatedClock
from engine.core.errors import ConfigError
from engine.core.events import AgentAction
from strategies.marl.agents import LearnedAgent, NumpyPolicy
from tests.marl.test_training import _features, _train


def _agent(bus, policy, seed, **kwargs):
    return LearnedAgent(
        bus,
        SimulatedClock(),
        "S",
        0,
        policy,
        deterministic=False,
        rng=np.random.default_rng(seed),
        **kwargs,
    )


@pytest.mark.parametrize(
    ("tau_base", "bonus"), [(1.0, 0.0), (0.5, 0.0), (2.0, 0.0), (1.0, 1.5), (0.7, 3.0)]
)
def test_sampling_distribution_equals_softmax_of_logits_over_adaptive_temperature(tau_base, bonus):
    policy = NumpyPolicy(_train(5).policies[0])
    agent = _agent(MessageBus(), policy, 0, sampling_temperature=tau_base, uncertainty_bonus=bonus)
    for p in ([0.2, 0.5, 0.3], [0.98, 0.01, 0.01], [1 / 3, 1 / 3, 1 / 3], [0.0, 0.4, 0.6]):
        p = np.array(p)
        with np.errstate(divide="ignore"):
            logits = np.log(p)
        entropy = -sum(q * math.log(q) for q in p if q > 0)
        tau = tau_base * (1 + bonus * entropy / math.log(3))
        expected = softmax(logits / tau)
        got = agent.sampling_distribution(*p.tolist(), entropy)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


class FixedPolicy:
    """A policy whose output is fixed (the agent's interface to NumpyPolicy)."""

    agent = "mlmi"

    def __init__(self, p):
        self.p = np.asarray(p, dtype=float)
        self.mean = np.zeros(4)

    def decide(self, x):
        return self.p


def test_sampled_actions_follow_the_scaled_distribution_and_repeat_with_the_seed():
    p = np.array([0.6, 0.3, 0.1])
    entropy = -float((p * np.log(p)).sum())
    features = _features(2, warm=True)
    runs = []
    for seed in (11, 11, 12):
        bus = MessageBus()
        seen: list[AgentAction] = []
        bus.subscribe(AgentAction, seen.append, "S")
        agent = _agent(bus, FixedPolicy(p), seed, sampling_temperature=0.5, uncertainty_bonus=0.5)
        agent.subscribe()
        for _ in range(4000):
            bus.publish(features)
        runs.append([a.action for a in seen])
    assert runs[0] == runs[1] != runs[2]
    q = np.asarray(agent.sampling_distribution(*p.tolist(), entropy))
    counts = np.bincount(runs[0], minlength=3)
    # within 5 standard errors of the scaled distribution, which is not π itself
    assert np.all(np.abs(counts / 4000 - q) <= 5 * np.sqrt(q * (1 - q) / 4000))
    assert q[0] > p[0] + 0.05
    # deterministic agents take the argmax whatever the temperature
    bus = MessageBus()
    seen = []
    bus.subscribe(AgentAction, seen.append, "S")
    LearnedAgent(bus, SimulatedClock(), "S", 0, FixedPolicy([0.2, 0.3, 0.5])).subscribe()
    bus.publish(features)
    assert seen[0].action == 2


def test_sampling_keys_are_validated_and_default_to_plain_policy_draws():
    base = """
[run]
name = "s"
[data]
source = "synthetic"
[instrument]
symbol = "SYN"
[strategy]
kind = "mappo_ensemble"
checkpoint = "ck.pt"
{extra}
"""
    config = parse_scenario(base.format(extra=""))
    assert config.strategy.sampling_temperature == 1.0
    assert config.strategy.uncertainty_bonus == 0.0
    with pytest.raises(ConfigError, match=r"strategy\.sampling_temperature"):
        parse_scenario(base.format(extra="sampling_temperature = 0"))
    with pytest.raises(ConfigError, match=r"strategy\.uncertainty_bonus"):
        parse_scenario(base.format(extra="uncertainty_bonus = -1"))
