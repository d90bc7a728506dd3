"""MAPPO for the three agents with a centralized critic (SPEC sections 1, 4 and 5).

Reads top to bottom: the maths helpers (GAE, losses, value normaliser), the
curriculum, the learned allocator, then :func:`train`, whose hyperparameters are
the scenario's ``[train]`` section (:class:`engine.app.scenario.TrainConfig`) and whose
networks come from :mod:`strategies.marl.networks` (shared with inference).

One update:

1. Roll out ``rollout_steps`` decisions in each of ``n_envs`` environments
   (:class:`~strategies.marl.env.VectorMarketEnv`), sampling each agent's action
   from its policy (dropout off) with a seeded ``torch.Generator``.
2. Normalise the rewards (SPEC 4), evaluate the critic V_i(s, a_-i) for every
   step and agent, and compute GAE per agent. Termination (the account stopped
   out) ends the return; truncation (the episode's time limit, or the end of the
   rollout) bootstraps from V of the next state, with the other agents' next
   actions sampled from their policies.
3. ``epochs`` passes over shuffled minibatches of ``minibatch_size`` samples: per
   agent the clipped surrogate with advantages normalised per minibatch, minus
   ``entropy_coef`` x entropy, its own Adam (lr 3e-4, Regime 2e-4), gradient
   norm clipped at ``max_grad_norm``; the critic's clipped value loss on
   normalised returns (running mean / std of the returns), coefficient
   ``value_coef``.
4. Record the metrics (episode return, losses, entropy, approximate KL
   (mean of (r - 1) - log r), clip fraction, explained variance).

Determinism: one seeding block (python, numpy, torch), ``torch.use_deterministic_algorithms``
and a fixed thread count, so the same seed gives the same weights on one machine.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from strategies.marl.env import (
    OBS_SLICES,
    MarketData,
    TradingTerms,
    VectorMarketEnv,
    hard_flags,
)
from strategies.marl.networks import AGENTS, CentralCritic, PolicyNet, critic_input
from strategies.marl.ppo import (
    LearnedAllocator,
    ValueNormaliser,
    clipped_surrogate_loss,
    clipped_value_loss,
    curriculum_complexity,
    entropy,
    explained_variance,
    gae,
    normalise_advantages,
)
from strategies.marl.rewards import RewardNormaliser, RewardWeights

__all__ = [
    "TrainResult",
    "UpdateMetrics",
    "join_markets",
    "market_from_bars",
    "mirrored_bars",
    "train",
]


# --------------------------------------------------------------------------- training


@dataclass
class UpdateMetrics:
    update: int
    stage: int
    complexity: float
    episodes: int
    agent_steps: int
    episode_return: float
    episode_pnl: float
    policy_loss: float
    value_loss: float
    entropy: float
    approx_kl: float
    clip_fraction: float
    explained_variance: float
    weights: tuple[float, ...]
    seconds: float
    #: Sharpe ratio on the validation window after this update (NaN: not evaluated)
    validation_sharpe: float = math.nan

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["weights"] = ",".join(f"{w:.4f}" for w in self.weights)
        return out


@dataclass
class TrainResult:
    policies: list[PolicyNet]
    critic: CentralCritic
    metrics: list[UpdateMetrics] = field(default_factory=list)
    allocator_raw: list[float] | None = None
    seconds: float = 0.0
    updates_per_second: float = 0.0
    agent_steps_per_second: float = 0.0
    episodes: int = 0
    #: the update whose weights were kept (the best validation Sharpe; else the last)
    selected_update: int = 0
    #: (update, validation Sharpe) of every evaluation
    validation_scores: list[tuple[int, float]] = field(default_factory=list)
    stopped_early: bool = False


def seed_everything(seed: int, threads: int) -> torch.Generator:
    """The one seeding block: python, numpy (legacy global), torch; deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def _policy_outputs(policies, observations: torch.Tensor) -> list[torch.Tensor]:
    return [
        policy(observations[:, a:b]) for policy, (a, b) in zip(policies, OBS_SLICES, strict=True)
    ]


def _sample(logits: list[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
    probabilities = torch.stack([torch.softmax(x, -1) for x in logits], dim=1)  # (E, 3, 3)
    flat = probabilities.reshape(-1, 3)
    return torch.multinomial(flat, 1, generator=generator).reshape(-1, len(logits))


def _critic_values(critic, observations: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Normalised V_i for every row and agent: (rows, 3)."""
    rows = torch.cat([critic_input(observations, actions, i) for i in range(len(AGENTS))], 0)
    return critic(rows).reshape(len(AGENTS), -1).T


def train(
    market: MarketData,
    hp: Any,
    *,
    seed: int,
    terms: TradingTerms,
    updates: int | None = None,
    on_update: Callable[[UpdateMetrics], None] | None = None,
    inspect: Callable[[UpdateMetrics, list[PolicyNet]], None] | None = None,
    stage_markets: Sequence[MarketData] | None = None,
    validation: Callable[[list[PolicyNet]], float] | None = None,
) -> TrainResult:
    """Train the three policies and the critic on ``market`` traded on ``terms``; ``hp`` is
    a TrainConfig.

    ``inspect``, when given, sees the policies (in eval mode) after every update, e.g. to
    measure them on held-out bars; it must not train them or draw from torch's RNG.
    ``stage_markets`` (one per curriculum stage, the same bars with the stage's noise:
    :func:`engine.app.train.prepare_stage_markets`) replace ``market`` from the
    update on which their stage begins; without them every stage trades ``market``.
    ``validation``, when given, scores the policies (eval mode) every ``hp.validate_every``
    updates and after the last; the best-scoring update's weights are kept, and training
    stops after ``hp.patience`` evaluations without a better score (0: never); a score that
    is not finite (a policy that never traded) ranks as 0; see
    :mod:`strategies.marl.validation`.
    """
    if stage_markets is not None and len(stage_markets) != len(hp.stage_complexity):
        raise ValueError(
            f"{len(stage_markets)} stage markets for {len(hp.stage_complexity)} curriculum stages"
        )
    if stage_markets is not None and hp.curriculum:
        market = stage_markets[0]
    started = time.perf_counter()
    generator = seed_everything(seed, hp.threads)
    rng = np.random.default_rng(seed)
    total_updates = hp.updates if updates is None else updates

    env = VectorMarketEnv(
        market,
        terms,
        n_envs=hp.n_envs,
        episode_length=hp.episode_length,
        reward_weights=RewardWeights(
            hp.reward_pnl,
            hp.reward_synergy,
            hp.reward_risk,
            hp.reward_exploration,
            hp.drawdown_threshold,
            hp.exploration_beta,
            hp.reward_turnover,
        ),
        stop_loss=hp.stop_loss,
        complexity=hp.stage_complexity[0] if hp.curriculum else 1.0,
        hard_share=hp.hard_share,
        rng=rng,
    )
    policies = [PolicyNet(agent, dropout=hp.dropout) for agent in AGENTS]
    critic = CentralCritic(dropout=hp.dropout)
    optimisers = [
        torch.optim.Adam(
            p.parameters(),
            lr=hp.regime_learning_rate if agent == "regime" else hp.learning_rate,
            eps=1e-5,
        )
        for p, agent in zip(policies, AGENTS, strict=True)
    ]
    critic_optimiser = torch.optim.Adam(critic.parameters(), lr=hp.critic_learning_rate, eps=1e-5)
    allocator = LearnedAllocator() if hp.allocator == "learned" else None
    allocator_optimiser = (
        torch.optim.Adam(allocator.parameters(), lr=hp.allocator_learning_rate)
        if allocator is not None
        else None
    )
    if hp.allocator == "equal":
        env.weight_override = np.full(3, 1.0 / 3.0)
    value_norm = ValueNormaliser()
    reward_norm = RewardNormaliser()

    E, T, n = hp.n_envs, hp.rollout_steps, len(AGENTS)
    obs_buf = torch.zeros(T, E, 11)
    act_buf = torch.zeros(T, E, n, dtype=torch.long)
    logp_buf = torch.zeros(T, E, n)
    rew_np = np.zeros((T, E, n))
    term_buf = torch.zeros(T, E)
    trunc_buf = torch.zeros(T, E)
    final_obs = torch.zeros(T, E, 11)
    phi_np = np.zeros((T, E, n))
    target_w_np = np.zeros((T, E, n))
    result = TrainResult(policies, critic)
    episode_returns = np.zeros(E)
    episode_pnl = np.zeros(E)
    finished_returns: list[float] = []
    finished_pnl: list[float] = []

    observation = torch.as_tensor(env.reset(), dtype=torch.float32)
    # Normalisers start from the statistics of the first observations.
    for policy, (a, b) in zip(policies, OBS_SLICES, strict=True):
        policy.norm.update(torch.as_tensor(market.inputs[env.starts, a:b]))
    critic.norm.update(torch.as_tensor(market.inputs[env.starts]))

    agent_steps = 0
    best: tuple[float, int, list[dict[str, torch.Tensor]]] | None = None
    stale = 0
    for update in range(1, total_updates + 1):
        tick = time.perf_counter()
        stage, complexity = (
            curriculum_complexity(env.episodes_started, hp.stage_episodes, hp.stage_complexity)
            if hp.curriculum
            else (0, 1.0)
        )
        env.set_complexity(complexity)
        if stage_markets is not None and hp.curriculum and env.data is not stage_markets[stage]:
            env.set_data(stage_markets[stage])
        if allocator is not None:
            env.weight_override = allocator.weights().detach().numpy().copy()

        # 1. rollout --------------------------------------------------------------
        for p in policies:
            p.eval()
        critic.eval()
        with torch.inference_mode():
            for t in range(T):
                obs_buf[t] = observation
                logits = _policy_outputs(policies, observation)
                actions = _sample(logits, generator)
                log_probs = torch.stack(
                    [
                        torch.log_softmax(x, -1).gather(1, actions[:, i : i + 1]).squeeze(1)
                        for i, x in enumerate(logits)
                    ],
                    dim=1,
                )
                probabilities = np.stack([torch.softmax(x, -1).numpy() for x in logits], axis=1)
                next_obs, rewards, terminated, truncated, info = env.step(
                    actions.numpy(), probabilities.astype(np.float64)
                )
                act_buf[t] = actions
                logp_buf[t] = log_probs
                rew_np[t] = rewards
                phi_np[t] = info["phi"] / max(env.pnl_std, 1e-12)
                target_w_np[t] = info["target_weights"]
                term_buf[t] = torch.as_tensor(terminated, dtype=torch.float32)
                trunc_buf[t] = torch.as_tensor(truncated, dtype=torch.float32)
                final_obs[t] = torch.as_tensor(info["final_observation"], dtype=torch.float32)
                episode_returns += rewards.mean(axis=1)
                episode_pnl += info["pnl"]
                done = terminated | truncated
                for e in np.flatnonzero(done):
                    finished_returns.append(float(episode_returns[e]))
                    finished_pnl.append(float(episode_pnl[e]))
                episode_returns[done] = 0.0
                episode_pnl[done] = 0.0
                observation = torch.as_tensor(next_obs, dtype=torch.float32)
            agent_steps += T * E * n

            # 2. advantages -------------------------------------------------------
            rewards_t = torch.as_tensor(reward_norm(rew_np), dtype=torch.float32)
            flat_obs = obs_buf.reshape(T * E, 11)
            flat_act = act_buf.reshape(T * E, n)
            values_norm = _critic_values(critic, flat_obs, flat_act).reshape(T, E, n)
            values = value_norm.denormalise(values_norm)
            # V of the state after each step: the next stored step unless the episode
            # ended there (then its final observation) or it is the last rollout step.
            next_values = torch.zeros(T, E, n)
            if T > 1:
                next_values[:-1] = values[1:]
            ended = (term_buf + trunc_buf) > 0
            ended[-1] = True
            rows = ended.nonzero(as_tuple=False)
            if len(rows):
                t_idx, e_idx = rows[:, 0], rows[:, 1]
                boot_obs = torch.where(
                    (t_idx == T - 1)[:, None] & ~(trunc_buf[t_idx, e_idx] > 0)[:, None],
                    observation[e_idx],
                    final_obs[t_idx, e_idx],
                )
                boot_actions = _sample(_policy_outputs(policies, boot_obs), generator)
                boot_values = value_norm.denormalise(_critic_values(critic, boot_obs, boot_actions))
                next_values[t_idx, e_idx] = boot_values
            truncated_mask = trunc_buf.clone()
            truncated_mask[-1] = torch.where(term_buf[-1] > 0, 0.0, 1.0)
            advantages, returns = gae(
                rewards_t,
                values,
                next_values,
                term_buf[..., None].expand(T, E, n),
                truncated_mask[..., None].expand(T, E, n),
                hp.gamma,
                hp.gae_lambda,
            )
        value_norm.update(returns.numpy())
        returns_norm = value_norm.normalise(returns)
        old_values_norm = value_norm.normalise(values)

        # normalisers see this rollout's observations for the next one
        for policy, (a, b) in zip(policies, OBS_SLICES, strict=True):
            policy.norm.update(flat_obs[:, a:b])
        critic.norm.update(flat_obs)

        # 3. learning allocator ---------------------------------------------------
        if allocator is not None and allocator_optimiser is not None:
            phi_t = torch.as_tensor(phi_np.reshape(-1, n))
            tw = torch.as_tensor(target_w_np.reshape(-1, n))
            for _ in range(hp.epochs):
                objective, _risk, _penalty = allocator.objective(
                    phi_t,
                    tw,
                    hp.risk_aversion,
                    terms.meta.bubble_threshold,
                    terms.meta.bubble_penalty_weight,
                )
                allocator_optimiser.zero_grad()
                (-objective).backward()
                allocator_optimiser.step()

        # 4. PPO epochs -----------------------------------------------------------
        for p in policies:
            p.train()
        critic.train()
        samples = T * E
        b_obs = flat_obs
        b_act = flat_act
        b_logp = logp_buf.reshape(samples, n)
        b_adv = advantages.reshape(samples, n)
        b_ret = returns_norm.reshape(samples, n).float()
        b_oldv = old_values_norm.reshape(samples, n).float()
        policy_losses, value_losses, entropies, kls, clipfracs = [], [], [], [], []
        mb = min(hp.minibatch_size, samples)
        for _epoch in range(hp.epochs):
            order = torch.randperm(samples, generator=generator)
            for start in range(0, samples - mb + 1, mb):
                index = order[start : start + mb]
                obs_mb = b_obs[index]
                act_mb = b_act[index]
                for i, (policy, optimiser, (a, b)) in enumerate(
                    zip(policies, optimisers, OBS_SLICES, strict=True)
                ):
                    logits = policy(obs_mb[:, a:b])
                    log_p = torch.log_softmax(logits, -1).gather(1, act_mb[:, i : i + 1]).squeeze(1)
                    adv = normalise_advantages(b_adv[index, i])
                    loss_pi, kl, cf = clipped_surrogate_loss(log_p, b_logp[index, i], adv, hp.clip)
                    ent = entropy(logits).mean()
                    loss = loss_pi - hp.entropy_coef * ent
                    optimiser.zero_grad()
                    loss.backward()
                    nn.utils.clip_grad_norm_(policy.parameters(), hp.max_grad_norm)
                    optimiser.step()
                    policy_losses.append(float(loss_pi.detach()))
                    entropies.append(float(ent.detach()))
                    kls.append(float(kl))
                    clipfracs.append(float(cf))
                # One agent's value per sample (drawn at random): an unbiased estimate of
                # the three agents' mean value loss at a third of the critic's cost.
                pick = torch.randint(0, n, (mb,), generator=generator)
                new_values = critic(critic_input(obs_mb, act_mb, pick))
                rows = torch.arange(mb)
                loss_v = hp.value_coef * clipped_value_loss(
                    new_values,
                    b_oldv[index][rows, pick],
                    b_ret[index][rows, pick],
                    hp.value_clip,
                )
                critic_optimiser.zero_grad()
                loss_v.backward()
                nn.utils.clip_grad_norm_(critic.parameters(), hp.max_grad_norm)
                critic_optimiser.step()
                value_losses.append(float(loss_v.detach()))

        weights_now = (
            env.weight_override if env.weight_override is not None else env.weights.mean(axis=0)
        )
        metrics = UpdateMetrics(
            update=update,
            stage=stage,
            complexity=complexity,
            episodes=env.episodes_started,
            agent_steps=agent_steps,
            episode_return=float(np.mean(finished_returns)) if finished_returns else math.nan,
            episode_pnl=float(np.mean(finished_pnl)) if finished_pnl else math.nan,
            policy_loss=float(np.mean(policy_losses)) if policy_losses else math.nan,
            value_loss=float(np.mean(value_losses)) if value_losses else math.nan,
            entropy=float(np.mean(entropies)) if entropies else math.nan,
            approx_kl=float(np.mean(kls)) if kls else math.nan,
            clip_fraction=float(np.mean(clipfracs)) if clipfracs else math.nan,
            explained_variance=explained_variance(values.numpy().ravel(), returns.numpy().ravel()),
            weights=tuple(float(w) for w in weights_now),
            seconds=time.perf_counter() - tick,
        )
        finished_returns.clear()
        finished_pnl.clear()
        stop = False
        if validation is not None and (update % hp.validate_every == 0 or update == total_updates):
            for p in policies:
                p.eval()
            score = float(validation(policies))
            metrics.validation_sharpe = score
            result.validation_scores.append((update, score))
            # a policy that never trades has no Sharpe ratio (NaN): it ranks as 0, no edge
            rank = score if math.isfinite(score) else 0.0
            if best is None or rank > best[0]:
                best = (rank, update, _snapshot(policies, critic))
                stale = 0
            else:
                stale += 1
                stop = bool(hp.patience) and stale >= hp.patience
        result.metrics.append(metrics)
        if on_update is not None:
            on_update(metrics)
        if inspect is not None:
            for p in policies:
                p.eval()
            inspect(metrics, policies)
        if stop:
            result.stopped_early = True
            break

    result.selected_update = len(result.metrics)
    if best is not None:
        _restore(policies, critic, best[2])
        result.selected_update = best[1]
    for p in policies:
        p.eval()
    critic.eval()
    result.seconds = time.perf_counter() - started
    result.updates_per_second = len(result.metrics) / result.seconds if result.seconds else 0.0
    result.agent_steps_per_second = agent_steps / result.seconds if result.seconds else 0.0
    result.episodes = env.episodes_started
    if allocator is not None:
        result.allocator_raw = [float(x) for x in allocator.raw.detach()]
    return result


def _snapshot(policies: list[PolicyNet], critic: CentralCritic) -> list[dict[str, torch.Tensor]]:
    """Copies of the networks' state dicts (weights and normalisation statistics)."""
    return [
        {key: value.detach().clone() for key, value in module.state_dict().items()}
        for module in (*policies, critic)
    ]


def _restore(
    policies: list[PolicyNet], critic: CentralCritic, states: list[dict[str, torch.Tensor]]
) -> None:
    for module, state in zip((*policies, critic), states, strict=True):
        module.load_state_dict(state)


def market_from_bars(data: Any, features: np.ndarray, warm: np.ndarray) -> MarketData:
    """MarketData from ``BarData`` and its feature matrix; hard bars per :func:`hard_flags`."""
    hard = hard_flags(data.close, features[:, 11], data.regime)
    return MarketData.from_features(features, data.open, data.close, warm, hard)


def mirrored_bars(data: Any) -> Any:
    """The bars reflected in log price about the first close (every log return negated:
    a rise becomes an equal fall; high and low swap; volume unchanged; trending-up and
    trending-down regimes swap). Training on a market and its mirror removes the drift
    of one sampled price path, so a policy cannot score by always voting one way."""

    pivot = float(data.close[0]) ** 2
    regime = data.regime
    if regime is not None:
        regime = np.where(regime == 0, 1, np.where(regime == 1, 0, regime)).astype(regime.dtype)
    return dataclasses.replace(
        data,
        open=pivot / data.open,
        high=pivot / data.low,
        low=pivot / data.high,
        close=pivot / data.close,
        regime=regime,
    )


def join_markets(markets: list[MarketData]) -> MarketData:
    """One MarketData of several, end to end. No episode crosses a join: a market's
    first rows are not warm (the features' warm-up), so no run of warm bars does."""
    for market in markets[1:]:
        if market.warm[0]:
            raise ValueError("a joined market must start with rows that are not warm")
    return MarketData(
        np.concatenate([m.inputs for m in markets]),
        np.concatenate([m.open for m in markets]),
        np.concatenate([m.close for m in markets]),
        np.concatenate([m.warm for m in markets]),
        np.concatenate([m.hard for m in markets]),
    )
