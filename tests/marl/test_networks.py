"""Policy and critic networks (SPEC 1) and their numpy export for the bus."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from strategies.marl.agents import NumpyPolicy
from strategies.marl.networks import (
    AGENT_INPUT_SIZES,
    CentralCritic,
    PolicyNet,
    critic_input,
    nwrqk_prior,
)

torch.set_num_threads(1)


def _trained_like(agent: str, seed: int = 0) -> PolicyNet:
    torch.manual_seed(seed)
    policy = PolicyNet(agent)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    rng = np.random.default_rng(seed)
    policy.norm.update(torch.as_tensor(rng.normal(0.01, 0.5, size=(100, AGENT_INPUT_SIZES[agent]))))
    policy.eval()
    return policy


def test_policy_architecture_follows_spec():
    policy = PolicyNet("mlmi")
    linears = [m for m in policy.body if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (4, 256),
        (256, 128),
        (128, 64),
        (64, 3),
    ]
    dropouts = [m for m in policy.body if isinstance(m, torch.nn.Dropout)]
    assert len(dropouts) == 3 and all(d.p == 0.1 for d in dropouts)
    assert policy.temperature().item() == pytest.approx(1.0 + 1e-3, rel=1e-5)
    critic = CentralCritic()
    sizes = [(m.in_features, m.out_features) for m in critic.body if isinstance(m, torch.nn.Linear)]
    assert sizes == [(11 + 9 + 3, 512), (512, 256), (256, 128), (128, 1)]


def test_dropout_is_off_in_eval_and_on_in_train():
    policy = _trained_like("mlmi")
    x = torch.randn(64, 4)
    assert torch.equal(policy(x), policy(x))
    policy.train()
    assert not torch.equal(policy(x), policy(x))


def test_temperature_scales_logits():
    policy = _trained_like("mlmi")
    x = torch.randn(8, 4)
    with torch.no_grad():
        base = policy(x) * policy.temperature()
    with torch.no_grad():
        policy.temperature_raw.fill_(math.log(math.e**2 - 1.0))  # softplus = 2
    with torch.no_grad():
        np.testing.assert_allclose(policy(x).numpy(), (base / (2.0 + 1e-3)).numpy(), rtol=1e-5)


def test_regime_logits_are_volatility_scaled_and_clamped():
    policy = _trained_like("regime")
    reference = float(policy.norm.mean[1])
    x = torch.tensor([[0.1, reference, 0.2]], dtype=torch.float32)
    calm = x.clone()
    calm[0, 1] = reference / 10  # 1/v = 10 -> clamped at 2
    wild = x.clone()
    wild[0, 1] = reference * 10  # 1/v = 0.1 -> clamped at 0.5
    with torch.no_grad():
        unscaled = policy.body(policy.norm(x)) / policy.temperature()
        np.testing.assert_allclose(policy(x).numpy(), unscaled.numpy(), rtol=1e-5)
        calm_unscaled = policy.body(policy.norm(calm)) / policy.temperature()
        np.testing.assert_allclose(policy(calm).numpy(), 2 * calm_unscaled.numpy(), rtol=1e-5)
        wild_unscaled = policy.body(policy.norm(wild)) / policy.temperature()
        np.testing.assert_allclose(policy(wild).numpy(), 0.5 * wild_unscaled.numpy(), rtol=1e-5)


def test_nwrqk_prior_terms():
    beta = torch.tensor([2.0, 3.0, 0.5])
    x = torch.tensor([[0.0, 0.4, 1.0, 0.9], [0.0, -1.0, 50.0, 0.0]])
    prior = nwrqk_prior(x, beta)
    support = max(0.0, 0.9 - min(1.0, 1.0 / 5.0))
    d = 2.0 * 0.4 + 3.0 * support
    np.testing.assert_allclose(prior[0].numpy(), [-d, 0.5 / 1.4, d], rtol=1e-6)
    np.testing.assert_allclose(prior[1].numpy(), [2.0, 0.25, -2.0], rtol=1e-6)


def test_critic_input_hides_the_agents_own_action():
    obs = torch.zeros(2, 11)
    actions = torch.tensor([[0, 1, 2], [2, 2, 2]])
    rows = critic_input(obs, actions, 1)
    one_hot = rows[:, 11:20].reshape(2, 3, 3)
    assert one_hot[:, 1].abs().sum() == 0
    assert one_hot[0, 0, 0] == 1 and one_hot[0, 2, 2] == 1
    assert rows[:, 20:].tolist() == [[0, 1, 0], [0, 1, 0]]
    per_row = critic_input(obs, actions, torch.tensor([0, 2]))
    assert per_row[0, 20:].tolist() == [1, 0, 0] and per_row[1, 20:].tolist() == [0, 0, 1]


@pytest.mark.parametrize("agent", ["mlmi", "nwrqk", "regime"])
def test_numpy_policy_equals_torch_policy(agent):
    policy = _trained_like(agent, seed=3)
    if agent == "nwrqk":
        with torch.no_grad():
            policy.beta.copy_(torch.tensor([0.7, -0.4, 1.3]))
    fast = NumpyPolicy(policy)
    rng = np.random.default_rng(9)
    xs = rng.normal(0.0, 0.5, size=(50, AGENT_INPUT_SIZES[agent]))
    if agent == "regime":
        xs[:, 1] = np.abs(xs[:, 1]) * 0.05
    with torch.no_grad():
        expected = torch.softmax(policy.double()(torch.as_tensor(xs)), -1).numpy()
    got = np.array([fast.probabilities(x).copy() for x in xs])
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)
