"""The agent panel: the learned agents deciding in one call, against the agents alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.app.provenance import checkpoint_path
from engine.app.scenario import load_scenario
from engine.core.bus import ANY, MessageBus
from engine.core.clock import SimulatedClock
from engine.core.events import Features
from strategies.marl.agents import AgentPanel, LearnedAgent, NumpyPolicy
from strategies.marl.checkpoint import feature_signature, load_checkpoint

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def policies():
    config = load_scenario(ROOT / "scenarios" / "demo.toml")
    checkpoint = load_checkpoint(checkpoint_path(config), feature_signature(config.indicators))
    return checkpoint.policies


def _features(rng: np.random.Generator, count: int) -> list[Features]:
    out = []
    for t in range(count):
        mlmi = tuple(rng.normal(size=4).tolist())
        nwrqk = (float(rng.normal()), float(rng.normal(0, 0.5)), float(abs(rng.normal(0, 2))), 0.3)
        regime = (float(rng.normal()), float(abs(rng.normal(0, 0.01))), float(rng.normal()))
        out.append(
            Features(
                ts_event=t,
                ts_init=t,
                seq=0,
                symbol="S",
                values=(0.0,) * 13,
                mlmi=mlmi,
                nwrqk=nwrqk,
                regime=regime,
                warm=t % 7 != 3,
            )
        )
    return out


def _agents(bus, policies, *, deterministic, vote, seed):
    rng = np.random.default_rng(seed)
    clock = SimulatedClock()
    return [
        LearnedAgent(
            bus,
            clock,
            "S",
            i,
            NumpyPolicy(policy),
            deterministic=deterministic,
            vote=vote,
            rng=rng,
            sampling_temperature=0.8,
            uncertainty_bonus=0.5,
        )
        for i, policy in enumerate(policies)
    ]


@pytest.mark.parametrize("deterministic", [True, False])
@pytest.mark.parametrize("vote", ["action", "probabilities"])
def test_panel_publishes_exactly_what_the_agents_publish_alone(policies, deterministic, vote):
    features = _features(np.random.default_rng(11), 400)
    runs = []
    for panel in (False, True):
        bus = MessageBus()
        seen: list = []
        bus.subscribe(ANY, seen.append)
        agents = _agents(bus, policies, deterministic=deterministic, vote=vote, seed=4)
        if panel:
            AgentPanel(agents).subscribe()
        else:
            for agent in agents:
                agent.subscribe()
        for message in features:
            bus.publish(message)
        runs.append([m for m in seen if not isinstance(m, Features)])
    alone, together = runs
    assert len(alone) == 3 * sum(f.warm for f in features)
    # the same messages, field for field (floats bit for bit), in the same order
    assert together == alone
    if not deterministic:
        assert len({m.action for m in alone}) == 3


def test_panel_names_a_slice_of_the_wrong_length(policies):
    bus = MessageBus()
    AgentPanel(_agents(bus, policies, deterministic=True, vote="action", seed=0)).subscribe()
    good = _features(np.random.default_rng(0), 1)[0]
    bad = Features(
        ts_event=5,
        ts_init=5,
        seq=0,
        symbol="S",
        values=good.values,
        mlmi=good.mlmi[:3],
        nwrqk=(*good.nwrqk, 0.0),
        regime=good.regime,
        warm=True,
    )
    with pytest.raises(
        Exception, match=r"Features.mlmi at 5 has 3 values; the agent's policy takes 4"
    ):
        bus.publish(bad)


def test_panel_refuses_agents_on_different_buses(policies):
    agents = _agents(MessageBus(), policies[:1], deterministic=True, vote="action", seed=0)
    other = _agents(MessageBus(), policies[1:2], deterministic=True, vote="action", seed=0)
    with pytest.raises(ValueError, match="share one bus"):
        AgentPanel(agents + other)
    with pytest.raises(ValueError, match="at least one agent"):
        AgentPanel([])
