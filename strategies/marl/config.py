"""The learned ensemble's and its training's configuration: ``[strategy]`` with
``kind = "mappo_ensemble"`` and ``[train]``. Kept apart from :mod:`strategies.marl.mappo`,
which imports torch, so that reading a scenario stays quick."""

from __future__ import annotations

from typing import Literal

from engine.core.configs import ConfigStruct, non_negative, positive
from engine.core.errors import ConfigError
from strategies.execution import EnsembleConfig, check_execution
from strategies.meta.params import check_panel

__all__ = ["AGENTS", "MappoEnsembleConfig", "TrainConfig"]

#: the learned agents, in the order of a checkpoint's policies and of the ensemble's panel
AGENTS = ("mlmi", "nwrqk", "regime")


class MappoEnsembleConfig(
    EnsembleConfig,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag="mappo_ensemble",
    tag_field="kind",
):
    """The three learned agents (MLMI, NWRQK, Regime) of a checkpoint, weighted by the
    meta-investor. ``checkpoint`` is relative to the scenario file; ``vote`` is what each
    agent hands the ensemble: ``"action"`` (one-hot of its action, as in training) or
    ``"probabilities"`` (its policy's distribution); ``deterministic`` acts by argmax
    (else samples with the run's seed from SPEC 3's temperature-scaled distribution,
    τ_adaptive = ``sampling_temperature`` (1 + ``uncertainty_bonus`` · H(π) / log 3); see
    :mod:`strategies.marl.agents`). A checkpoint trained on another bar length or time
    zone is refused unless ``allow_transfer`` (see :mod:`engine.app.provenance`).
    Execution: a target that differs from the position by less than ``no_trade_band``
    (a share of ``max_position``) is not traded, and a position is held at least
    ``min_hold_bars`` bars before it changes again (both 0: off); the meta-investor's
    credit models the same rule. ``sizing`` and ``allocation`` (:mod:`strategies.sizing`)
    set the position ``max_position`` stands for: by default ``max_position`` units; sized
    by equity, the units that ``[strategy.sizing]`` gives at the bar's close (the symbol's
    share of the account by ``allocation``, ``confidence`` included), re-sized at every
    decision. In a universe each symbol has its own meta-investor, feature engine and
    panel, the agents' weights shared (:mod:`engine.app.kernel`). ``meta`` is the meta-investor's
    :class:`~strategies.meta.params.MetaInvestorParams` (``n_agents`` is 3, one per
    agent); its ``allocator`` left unset takes a checkpoint's learned allocator when it
    has one."""

    checkpoint: str = ""
    max_position: float = 10_000.0
    deterministic: bool = True
    sampling_temperature: float = 1.0
    uncertainty_bonus: float = 0.0
    vote: Literal["action", "probabilities"] = "action"
    allow_transfer: bool = False

    def check(self) -> None:
        check_execution(self)
        check_panel(self.meta, len(AGENTS), "the three learned agents")
        if not self.checkpoint:
            raise ConfigError("strategy.checkpoint is required for kind = 'mappo_ensemble'")
        positive("strategy.max_position", self.max_position)
        positive("strategy.sampling_temperature", self.sampling_temperature)
        non_negative("strategy.uncertainty_bonus", self.uncertainty_bonus)
        if not -1.0 <= self.confidence_threshold <= 1.0:
            raise ConfigError(
                f"strategy.confidence_threshold must be in [-1, 1], got {self.confidence_threshold}"
            )


class TrainConfig(ConfigStruct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """MAPPO hyperparameters (SPEC 1, 4 and 5) for ``emarl train``; see
    :mod:`strategies.marl.mappo`. The strategy section must be ``mappo_ensemble``; its
    ``checkpoint`` is where training writes unless ``emarl train --out`` says otherwise.

    ``stage_episodes`` / ``stage_complexity``: the curriculum (basic, intermediate,
    advanced); training stays in the last stage once its episodes are used up.
    ``allocator``: ``"option"`` (the meta-investor's option weights), ``"equal"`` or
    ``"learned"`` (SPEC 5.8: raw weights trained on Σ w φ - λ wᵀΣw - L_bubble).
    ``reward_turnover``: ε of the turnover term (:mod:`strategies.marl.rewards`).
    ``validation_end``: a date or time; the bars after the training window up to it are
    held out to choose the checkpoint, scored every ``validate_every`` updates, with early
    stopping after ``patience`` scores without improvement (0: never); empty: no
    validation, the last update is kept (:mod:`strategies.marl.validation`).
    """

    updates: int = 200
    n_envs: int = 32
    episode_length: int = 128
    rollout_steps: int = 128
    epochs: int = 10
    minibatch_size: int = 256
    learning_rate: float = 3e-4
    regime_learning_rate: float = 2e-4
    critic_learning_rate: float = 3e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip: float = 0.2
    value_clip: float = 0.2
    entropy_coef: float = 0.01
    value_coef: float = 0.5
    max_grad_norm: float = 0.5
    dropout: float = 0.1
    curriculum: bool = True
    stage_episodes: tuple[int, ...] = (1000, 2000, 3000)
    stage_complexity: tuple[float, ...] = (0.3, 0.6, 1.0)
    hard_share: float = 0.5
    allocator: Literal["option", "equal", "learned"] = "option"
    allocator_learning_rate: float = 0.05
    risk_aversion: float = 1.0
    reward_pnl: float = 1.0
    reward_synergy: float = 0.1
    reward_risk: float = 0.5
    reward_exploration: float = 0.1
    reward_turnover: float = 0.0
    validation_end: str = ""
    validate_every: int = 5
    patience: int = 0
    drawdown_threshold: float = 0.05
    exploration_beta: float = 0.1
    stop_loss: float = 0.5
    threads: int = 1
    log_csv: str = ""

    def check(self) -> None:
        for name in ("updates", "n_envs", "episode_length", "rollout_steps", "epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.minibatch_size < 2:
            raise ConfigError(f"train.minibatch_size must be >= 2, got {self.minibatch_size}")
        if len(self.stage_episodes) != len(self.stage_complexity) or not self.stage_episodes:
            raise ConfigError(
                "train.stage_episodes and train.stage_complexity must have the same, "
                "non-zero length"
            )
        for c in self.stage_complexity:
            if not 0.0 <= c <= 1.0:
                raise ConfigError(f"train.stage_complexity values must be in [0, 1], got {c}")
        for name in ("learning_rate", "regime_learning_rate", "critic_learning_rate"):
            positive(f"train.{name}", getattr(self, name))
        if not (0.0 < self.gamma <= 1.0 and 0.0 <= self.gae_lambda <= 1.0):
            raise ConfigError("train.gamma must be in (0, 1] and train.gae_lambda in [0, 1]")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"train.dropout must be in [0, 1), got {self.dropout}")
        if self.threads < 1:
            raise ConfigError(f"train.threads must be >= 1, got {self.threads}")
        if self.validate_every < 1 or self.patience < 0:
            raise ConfigError(
                f"train.validate_every must be >= 1 and train.patience >= 0, got "
                f"{self.validate_every} and {self.patience}"
            )
        non_negative("train.reward_turnover", self.reward_turnover)
