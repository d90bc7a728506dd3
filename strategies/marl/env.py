"""A vectorised multi-agent market: many episodes over one feature matrix, stepped together.

Episodes are windows of ``episode_length`` decisions over bars whose features are
warm. At step k of an episode that started at bar s, the decision bar is
t = s + k: the three agents see their slices of feature row t (the bar that just
closed) and vote; each vote is a one-hot vector of the agent's action (the
same vote the learned agents publish on the bus by default). The ensemble (SPEC 3)
combines the votes with the meta-investor's weights, the confidence gate holds
the previous position when max P - H(P) is below the threshold, and the target
``max_position e (P_bull - P_bear)`` (e the meta-investor's exposure) is rounded to the
lot; as on the bus, a change smaller than ``no_trade_band`` of the size, or of a position
held fewer than ``min_hold_bars`` decisions, is not traded. The position earns the
move over (close t, close t+1] with the SimulatedBroker's rules: a market order
for the difference fills at the open of t+1 moved by ``slippage_bps``, commission
max(minimum, notional bps / 1e4 + quantity per-unit) on each non-zero trade::

    pnl = previous (open' - close) + d (open' - fill) + target (close' - open') - commission

(:mod:`brokers.costs`, :func:`strategies.meta.decision.coalition_pnl`; a test compares
the environment with a real backtest of the same votes). The broker's volume cap and margin check
are not modelled: train and trade with ``max_participation = 0`` and a
``max_position`` the account can carry.

Credit: v(S) is that P&L had only coalition S voted (the rest neutral with
unchanged weights), v(∅) = 0, for all 8 coalitions of every environment at once;
φ = v @ M with M the Shapley matrix (Shapley values are linear in v). The
meta-investor's state of every environment (share prices, volatility and price
windows, weights) is advanced by the meta-investor's own step kernel in one
compiled loop over environments, so weights, and the exposure that scales
``max_position``, follow the meta-investor exactly as on the bus (time to expiry: the
rolling ``expiry_bars``, or with ``expiry_bars = 0`` the episode's remaining steps).

Rewards (SPEC 4, :mod:`strategies.marl.rewards`) use r_i = w_i φ_i.

Ends of episodes: ``truncated`` when the episode reaches ``episode_length``
steps (a time limit: the trainer bootstraps from the value of the next state,
returned in ``info["final_observation"]``), ``terminated`` when equity falls
below ``(1 - stop_loss)`` of the initial cash (the account is stopped out: no
bootstrap). Finished environments restart at once on a new window.

Curriculum: ``complexity`` multiplies the four cost rates, and the share of
"hard" episodes (starting in a window flagged hard: high volatility or a regime
change) is ``hard_share x complexity``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from brokers.costs import CostRates, step_pnl, trade_costs
from indicators.features import agent_inputs
from strategies.marl.rewards import (
    RewardWeights,
    exploration_reward,
    pnl_reward,
    risk_reward,
    synergy_reward,
    total_reward,
    turnover_reward,
)
from strategies.meta.decision import ensemble_targets
from strategies.meta.shapley import coalition_masks, shapley_size_weights
from strategies.meta.step import MetaInvestorBatch, MetaInvestorParams

__all__ = ["MarketData", "TradingTerms", "VectorMarketEnv", "shapley_matrix"]

N_AGENTS = 3
OBS_SLICES = ((0, 4), (4, 8), (8, 11))  # mlmi, nwrqk, regime columns of the 11 agent inputs
_NEUTRAL = np.array([0.0, 1.0, 0.0])


@dataclass
class MarketData:
    """Agent inputs (n, 11) = [mlmi (4), nwrqk (4), regime (3)], prices and flags."""

    inputs: np.ndarray
    open: np.ndarray
    close: np.ndarray
    warm: np.ndarray
    hard: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def __post_init__(self) -> None:
        n = self.inputs.shape[0]
        if self.inputs.shape != (n, 11):
            raise ValueError(f"inputs must have shape (n, 11), got {self.inputs.shape}")
        for name in ("open", "close", "warm"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must have shape ({n},)")
        if self.hard.shape != (n,):
            self.hard = np.zeros(n, dtype=bool)

    @classmethod
    def from_features(cls, features: np.ndarray, open_, close, warm, hard=None) -> MarketData:

        inputs = np.concatenate(
            [agent_inputs(features, a) for a in ("mlmi", "nwrqk", "regime")], axis=1
        )
        inputs = np.where(np.asarray(warm)[:, None], inputs, 0.0)
        return cls(
            np.ascontiguousarray(inputs, dtype=np.float64),
            np.asarray(open_, dtype=np.float64),
            np.asarray(close, dtype=np.float64),
            np.asarray(warm, dtype=bool),
            np.zeros(len(close), dtype=bool) if hard is None else np.asarray(hard, dtype=bool),
        )


def shapley_matrix(n: int = N_AGENTS) -> np.ndarray:
    """M (2^n, n) with φ = v @ M for exact Shapley values."""
    masks = coalition_masks(n)
    size_weights = shapley_size_weights(n)
    matrix = np.zeros((1 << n, n))
    for s in range(1 << n):
        for i in range(n):
            if masks[s, i]:
                without = s ^ (1 << i)
                weight = size_weights[int(masks[without].sum())]
                matrix[s, i] += weight
                matrix[without, i] -= weight
    return matrix


@dataclass(frozen=True)
class TradingTerms:
    """What the training market trades by, as a backtest of the scenario does: the broker's
    ``costs`` and ``initial_cash``; the strategy's ``max_position``,
    ``confidence_threshold``, ``no_trade_band`` and ``min_hold_bars``; the instrument's
    ``lot_size``; the meta-investor's ``meta`` parameters."""

    costs: CostRates
    max_position: float
    lot_size: float = 1.0
    confidence_threshold: float = 0.0
    initial_cash: float = 1_000_000.0
    meta: MetaInvestorParams = field(default_factory=MetaInvestorParams)
    no_trade_band: float = 0.0
    min_hold_bars: int = 0


class VectorMarketEnv:
    """``n_envs`` episodes over ``data`` stepped together, traded on ``terms``; see the
    module docstring."""

    def __init__(
        self,
        data: MarketData,
        terms: TradingTerms,
        *,
        n_envs: int,
        episode_length: int,
        reward_weights: RewardWeights | None = None,
        stop_loss: float = 0.5,
        complexity: float = 1.0,
        hard_share: float = 0.5,
        rng: np.random.Generator | None = None,
        sequential: bool = False,
    ) -> None:
        if n_envs < 1 or episode_length < 1:
            raise ValueError("n_envs and episode_length must be >= 1")
        self.data: MarketData
        self.n_envs = n_envs
        self.episode_length = episode_length
        self.base_costs = terms.costs
        self.max_position = float(terms.max_position)
        self.lot_size = float(terms.lot_size)
        self.threshold = float(terms.confidence_threshold)
        self.no_trade_band = float(terms.no_trade_band)
        self.min_hold_bars = int(terms.min_hold_bars)
        self.initial_cash = float(terms.initial_cash)
        self.reward_weights = reward_weights or RewardWeights()
        self.stop_loss = stop_loss
        self.hard_share = hard_share
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.sequential = sequential
        self.set_complexity(complexity)
        self.set_data(data)

        self.meta_params = terms.meta
        self.meta = MetaInvestorBatch(self.meta_params, n_envs)

        self._masks = coalition_masks(N_AGENTS).astype(np.float64)  # (8, 3)
        self._shapley = shapley_matrix(N_AGENTS)  # (8, 3)
        self.start = np.zeros(n_envs, dtype=np.int64)
        self.step_in_episode = np.zeros(n_envs, dtype=np.int64)
        self.position = np.zeros(n_envs)
        self.held = np.zeros(n_envs, dtype=np.int64)  # decisions since the position changed
        self.equity = np.zeros(n_envs)
        self.peak = np.zeros(n_envs)
        self.pnl_std = 0.0
        self.episodes_started = 0
        self._next_sequential = 0
        # Learned allocator: weights set by the trainer instead of the option allocator.
        self.weight_override: np.ndarray | None = None

    # -- configuration --------------------------------------------------------------

    def set_data(self, data: MarketData) -> None:
        """Episodes from now on read ``data`` (the curriculum's next market: the same bars'
        length, warm rows and regimes with other noise). Episodes under way go on at the
        same bar indices of the new arrays."""
        warm = data.warm.astype(np.int64)
        # A start s is valid when bars s .. s + L are warm (decisions s..s+L-1, last move to s+L).
        window = self.episode_length + 1
        csum = np.concatenate(([0], np.cumsum(warm)))
        n = len(warm)
        if n < window:
            raise ValueError(f"{n} bars are fewer than one episode ({window} bars)")
        current: MarketData | None = getattr(self, "data", None)
        if current is not None and n != len(current.close):
            raise ValueError(f"the next market has {n} bars, this one {len(current.close)}")
        full = (csum[window:] - csum[: n - window + 1]) == window
        starts = np.flatnonzero(full)
        if len(starts) == 0:
            raise ValueError(f"no run of {window} warm bars for an episode")
        hard = data.hard.astype(np.int64)
        hcsum = np.concatenate(([0], np.cumsum(hard)))
        hard_count = hcsum[starts + window] - hcsum[starts]
        self.data = data
        self.starts = starts
        self.hard_starts = starts[hard_count > 0]
        self.easy_starts = starts[hard_count == 0]

    def set_complexity(self, complexity: float) -> None:
        if not 0.0 <= complexity <= 1.0:
            raise ValueError(f"complexity must be in [0, 1], got {complexity}")
        self.complexity = complexity
        self.costs = self.base_costs.scaled(complexity)

    @property
    def weights(self) -> np.ndarray:
        """Current ensemble weights (E, 3)."""
        return self.meta.weights

    # -- episodes -------------------------------------------------------------------

    def _sample_starts(self, count: int) -> np.ndarray:
        if self.sequential:
            out = self.starts[
                (self._next_sequential + np.arange(count) * self.episode_length) % len(self.starts)
            ]
            self._next_sequential += count * self.episode_length
            return out
        share = self.hard_share * self.complexity
        hard = self.rng.random(count) < share
        out = self.rng.choice(self.starts, size=count)
        if len(self.hard_starts) and hard.any():
            out[hard] = self.rng.choice(self.hard_starts, size=int(hard.sum()))
        if len(self.easy_starts) and (~hard).any():
            out[~hard] = self.rng.choice(self.easy_starts, size=int((~hard).sum()))
        return out

    def _reset_envs(self, mask: np.ndarray) -> None:
        count = int(mask.sum())
        if count == 0:
            return
        self.start[mask] = self._sample_starts(count)
        self.step_in_episode[mask] = 0
        self.position[mask] = 0.0
        self.held[mask] = np.iinfo(np.int64).max // 2
        self.equity[mask] = self.initial_cash
        self.peak[mask] = self.initial_cash
        self.meta.reset(mask)
        self.episodes_started += count

    def reset(self, starts: np.ndarray | None = None) -> np.ndarray:
        """Start every environment; returns the observations (E, 11)."""
        self._reset_envs(np.ones(self.n_envs, dtype=bool))
        if starts is not None:
            self.start[:] = starts
        return self.observation()

    def observation(self) -> np.ndarray:
        return self.data.inputs[self.start + self.step_in_episode]

    # -- one step -------------------------------------------------------------------

    def coalition_values(
        self, votes: np.ndarray, weights: np.ndarray, t: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Targets and v(S) (E, 8) for votes (E, 3, 3), weights (E, 3) at decision bars t."""
        weighted = weights[:, :, None] * votes  # (E, n, 3)
        members = np.einsum("sn,ena->esa", self._masks, weighted)  # (E, 8, 3)
        outside = 1.0 - weights @ self._masks.T  # (E, 8)
        ensemble = members + outside[:, :, None] * _NEUTRAL
        size = self.max_position * self.meta.exposure  # (E, 1): each env's exposure
        previous = self.position[:, None]
        # a position held fewer than min_hold_bars decisions holds (every coalition too)
        threshold = np.where(self.held < self.min_hold_bars, np.inf, self.threshold)[:, None]
        targets = ensemble_targets(
            ensemble, size, threshold, self.lot_size, previous, self.no_trade_band * size
        )
        open_next = self.data.open[t + 1][:, None]
        close_now = self.data.close[t][:, None]
        close_next = self.data.close[t + 1][:, None]
        fill, charged = trade_costs(targets - previous, open_next, self.costs)
        pnl = step_pnl(previous, targets, close_now, open_next, close_next, fill, charged)
        pnl[:, 0] = 0.0
        return targets, pnl

    def step(
        self, actions: np.ndarray, probabilities: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Advance every environment by one decision.

        ``actions`` (E, 3) integers in {0, 1, 2}; ``probabilities`` (E, 3, 3) the
        policies' distributions (for the synergy and exploration terms). Returns
        observations, rewards (E, 3), terminated (E,), truncated (E,), info.
        """
        actions = np.asarray(actions)
        votes = np.zeros((self.n_envs, N_AGENTS, 3))
        np.put_along_axis(votes, actions[:, :, None], 1.0, axis=2)
        t = self.start + self.step_in_episode
        if self.weight_override is not None:
            self.meta.weights[:] = self.weight_override
        weights = self.weights.copy()
        targets, values = self.coalition_values(votes, weights, t)
        pnl = values[:, -1].copy()
        phi = values @ self._shapley  # (E, 3)
        changed = targets[:, -1] != self.position
        self.held = np.where(changed, 1, self.held + 1)
        traded = targets[:, -1] - self.position
        self.position = targets[:, -1].copy()
        self.equity += pnl
        np.maximum(self.peak, self.equity, out=self.peak)
        drawdown = 1.0 - self.equity / self.peak
        self.step_in_episode += 1
        if self.meta_params.expiry_bars:
            expiry = np.full(self.n_envs, float(self.meta_params.expiry_bars))
        else:
            expiry = (self.episode_length - self.step_in_episode).astype(np.float64)
        self.meta.step(phi, expiry)
        batch_std = float(pnl.std())
        self.pnl_std = batch_std if self.pnl_std == 0.0 else 0.99 * self.pnl_std + 0.01 * batch_std
        rw = self.reward_weights
        weighted_phi = weights * phi
        rewards = total_reward(
            rw,
            pnl_reward(weighted_phi, self.pnl_std),
            synergy_reward(actions, probabilities),
            risk_reward(drawdown, rw.drawdown_threshold),
            exploration_reward(probabilities, rw.exploration_beta),
            turnover_reward(weights, traded, self.max_position),
        )
        terminated = self.equity < (1.0 - self.stop_loss) * self.initial_cash
        truncated = (self.step_in_episode >= self.episode_length) & ~terminated
        done = terminated | truncated
        final_observation = self.observation_or_last()
        info = {
            "pnl": pnl,
            "phi": phi,
            "weights": weights,
            "target_weights": self.meta.target_weights.copy(),
            "position": self.position.copy(),
            "decision_bar": t,
            "final_observation": final_observation,
            "episode_equity": self.equity.copy(),
        }
        self._reset_envs(done)
        return self.observation(), rewards, terminated, truncated, info

    def observation_or_last(self) -> np.ndarray:
        """Observations after the step (row start + k, never past the episode's last bar)."""
        return self.data.inputs[self.start + self.step_in_episode]


def hard_flags(close: np.ndarray, volatility: np.ndarray, regime: np.ndarray | None) -> np.ndarray:
    """Bars that make an episode hard: a regime change (when known) or volatility in the top
    quartile of the finite values."""
    flags = np.zeros(len(close), dtype=bool)
    finite = np.isfinite(volatility)
    if finite.any():
        cut = float(np.quantile(volatility[finite], 0.75))
        flags |= finite & (volatility >= cut)
    if regime is not None:
        change = np.zeros(len(close), dtype=bool)
        change[1:] = regime[1:] != regime[:-1]
        flags |= change
    return flags
