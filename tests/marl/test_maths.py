"""MAPPO helpers and reward terms against naive loops written differently."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from strategies.marl.networks import RunningNorm
from strategies.marl.ppo import (
    ValueNormaliser,
    clipped_surrogate_loss,
    clipped_value_loss,
    curriculum_complexity,
    entropy,
    explained_variance,
    gae,
)
from strategies.marl.rewards import (
    RewardNormaliser,
    exploration_reward,
    pnl_reward,
    risk_reward,
    synergy_reward,
)

torch.set_num_threads(1)


def naive_gae(rewards, values, next_values, terminated, truncated, gamma, lam):
    """Forward loop: each A_t sums discounted TD errors until the episode's end."""
    steps = len(rewards)
    out = []
    for t in range(steps):
        total = 0.0
        discount = 1.0
        for k in range(t, steps):
            bootstrap = 0.0 if terminated[k] else gamma * next_values[k]
            delta = rewards[k] + bootstrap - values[k]
            total += discount * delta
            if terminated[k] or truncated[k]:
                break
            discount *= gamma * lam
        out.append(total)
    return np.array(out)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gae_matches_naive_loop_with_termination_and_truncation(seed):
    rng = np.random.default_rng(seed)
    steps, envs = 40, 5
    rewards = rng.normal(size=(steps, envs))
    values = rng.normal(size=(steps, envs))
    next_values = rng.normal(size=(steps, envs))
    terminated = rng.random((steps, envs)) < 0.08
    truncated = (rng.random((steps, envs)) < 0.08) & ~terminated
    advantages, returns = gae(
        *(torch.as_tensor(x) for x in (rewards, values, next_values, terminated, truncated)),
        0.99,
        0.95,
    )
    for e in range(envs):
        expected = naive_gae(
            rewards[:, e],
            values[:, e],
            next_values[:, e],
            terminated[:, e],
            truncated[:, e],
            0.99,
            0.95,
        )
        np.testing.assert_allclose(advantages[:, e].numpy(), expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(returns.numpy(), advantages.numpy() + values, atol=1e-12)


def test_gae_bootstraps_on_truncation_but_not_on_termination():
    ones = torch.ones(1, 1)
    zero = torch.zeros(1, 1)
    truncated_adv, _ = gae(zero, zero, 10 * ones, zero, ones, 0.5, 0.9)
    terminated_adv, _ = gae(zero, zero, 10 * ones, ones, zero, 0.5, 0.9)
    assert float(truncated_adv) == pytest.approx(5.0)
    assert float(terminated_adv) == 0.0


def test_clipped_surrogate_matches_elementwise_loop():
    rng = np.random.default_rng(3)
    new = rng.normal(scale=0.3, size=64)
    old = rng.normal(scale=0.3, size=64)
    adv = rng.normal(size=64)
    loss, kl, clip_fraction = clipped_surrogate_loss(
        torch.as_tensor(new), torch.as_tensor(old), torch.as_tensor(adv), 0.2
    )
    terms, kls, clipped = [], [], 0
    for n, o, a in zip(new, old, adv, strict=True):
        r = math.exp(n - o)
        rc = min(max(r, 0.8), 1.2)
        terms.append(min(r * a, rc * a))
        kls.append((r - 1) - math.log(r))
        clipped += abs(r - 1) > 0.2
    assert float(loss) == pytest.approx(-sum(terms) / 64, rel=1e-12)
    assert float(kl) == pytest.approx(sum(kls) / 64, rel=1e-12)
    assert float(clip_fraction) == pytest.approx(clipped / 64)


def test_clipped_value_loss_matches_loop():
    rng = np.random.default_rng(4)
    v, old, ret = (rng.normal(size=50) for _ in range(3))
    loss = clipped_value_loss(*(torch.as_tensor(x) for x in (v, old, ret)), 0.2)
    total = 0.0
    for a, b, c in zip(v, old, ret, strict=True):
        diff = a - b
        if diff > 0.2:
            diff = 0.2
        if diff < -0.2:
            diff = -0.2
        total += max((a - c) ** 2, (b + diff - c) ** 2)
    assert float(loss) == pytest.approx(total / 50, rel=1e-12)


def test_entropy_matches_sum_over_probabilities():
    logits = torch.tensor([[0.0, 0.0, 0.0], [5.0, -1.0, 2.0]], dtype=torch.float64)
    h = entropy(logits)
    assert float(h[0]) == pytest.approx(math.log(3))
    z = [math.exp(x) for x in (5.0, -1.0, 2.0)]
    p = [x / sum(z) for x in z]
    assert float(h[1]) == pytest.approx(-sum(q * math.log(q) for q in p))


def test_running_norm_equals_statistics_of_everything_seen():
    rng = np.random.default_rng(5)
    norm = RunningNorm(3)
    chunks = [rng.normal(loc=2.0, scale=3.0, size=(k, 3)) for k in (1, 17, 250, 3)]
    for chunk in chunks:
        norm.update(torch.as_tensor(chunk))
    everything = np.concatenate(chunks)
    np.testing.assert_allclose(norm.mean.numpy(), everything.mean(0), rtol=1e-10)
    np.testing.assert_allclose(norm.var.numpy(), everything.var(0), rtol=1e-10)
    x = torch.as_tensor(everything[:4])
    expected = (everything[:4] - everything.mean(0)) / np.sqrt(everything.var(0) + 1e-8)
    np.testing.assert_allclose(norm(x).numpy(), np.clip(expected, -10, 10), rtol=1e-9)


def test_value_normaliser_matches_numpy_and_round_trips():
    rng = np.random.default_rng(6)
    vn = ValueNormaliser()
    chunks = [rng.normal(loc=-1, scale=2, size=k) for k in (5, 100, 7)]
    for chunk in chunks:
        vn.update(chunk)
    everything = np.concatenate(chunks)
    assert vn.mean == pytest.approx(everything.mean())
    assert vn.var == pytest.approx(everything.var())
    assert vn.denormalise(vn.normalise(3.25)) == pytest.approx(3.25)


def test_reward_normaliser_follows_the_exponential_update():
    rn = RewardNormaliser()
    a = np.array([1.0, 3.0])
    b = np.array([10.0, 10.0, 12.0])
    rn(a)
    out = rn(b)
    mean = 0.99 * 2.0 + 0.01 * 32.0 / 3
    std = 0.99 * 1.0 + 0.01 * float(np.std(b))
    np.testing.assert_allclose(out, (b - mean) / (std + 1e-8))


def test_reward_terms_match_loops():
    rng = np.random.default_rng(7)
    envs = 20
    actions = rng.integers(0, 3, size=(envs, 3))
    probs = rng.dirichlet(np.ones(3), size=(envs, 3))
    syn = synergy_reward(actions, probs)
    expl = exploration_reward(probs, 0.1)
    for e in range(envs):
        for i in range(3):
            d_i = actions[e, i] - 1
            m = 0.0
            c_total = 0.0
            for j in range(3):
                if j != i:
                    c = max(probs[e, j])
                    m += c * (actions[e, j] - 1)
                    c_total += c
            s = 1 if m > 0 else (-1 if m < 0 else 0)
            assert syn[e, i] == pytest.approx(abs(m) / c_total * d_i * s)
            h = -sum(p * math.log(p) for p in probs[e, i])
            assert expl[e, i] == pytest.approx(0.1 * h)
    dd = np.array([0.0, 0.05, 0.075, 0.2])
    np.testing.assert_allclose(risk_reward(dd, 0.05), [0.0, 0.0, -0.25, -9.0])
    np.testing.assert_allclose(pnl_reward(np.array([2.0, -4.0]), 2.0), np.tanh([0.5, -1.0]))
    assert (pnl_reward(np.array([1.0]), 0.0) == 0).all()


def test_curriculum_stages():
    stages, complexity = (1000, 2000, 3000), (0.3, 0.6, 1.0)
    assert curriculum_complexity(0, stages, complexity) == (0, 0.3)
    assert curriculum_complexity(999, stages, complexity) == (0, 0.3)
    assert curriculum_complexity(1000, stages, complexity) == (1, 0.6)
    assert curriculum_complexity(5999, stages, complexity) == (2, 1.0)
    assert curriculum_complexity(10**6, stages, complexity) == (2, 1.0)


def test_explained_variance():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(y, y) == 1.0
    assert explained_variance(np.zeros(4), y) == pytest.approx(1.0 - np.var(y) / np.var(y) + 0.0)
    assert math.isnan(explained_variance(y, np.ones(4)))
