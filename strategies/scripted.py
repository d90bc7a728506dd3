"""Scripted agents: fixed voting rules, for tests and demonstrations of the meta-investor.

``oracle`` peeks at the next bar and votes for its open-to-close direction
(the move a position taken on this close earns after the next open);
``contrarian`` votes the opposite; ``random`` votes uniformly with a seeded
generator; ``neutral`` always votes neutral. ``trend`` and ``mean_revert`` read past
closes only: ``trend`` votes the sign of the last ``lookback`` bars' move,
close[t] - close[t - lookback]; ``mean_revert`` votes against the close's deviation from
the mean of the last ``lookback`` closes, -sign(close[t] - mean(close[t-lookback+1..t]));
both vote neutral until ``lookback`` + 1 closes (trend) or ``lookback`` closes (mean
reversion) have been seen. ``oracle`` and ``contrarian`` read the future on purpose: they
work in a backtest only.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Protocol

import numpy as np

from engine.core.bus import Bus
from engine.core.clock import Clock
from engine.core.configs import positive
from engine.core.errors import ConfigError
from engine.core.events import Bar
from strategies.base import Agent
from strategies.execution import EnsembleConfig, check_execution
from strategies.meta.params import check_panel

__all__ = [
    "PEEKING_RULES",
    "RULES",
    "PastAndFuture",
    "ScriptedAgent",
    "ScriptedEnsembleConfig",
]


class PastAndFuture(Protocol):
    """The bars the ``oracle`` and ``contrarian`` rules read ahead in (a BarData)."""

    ts: np.ndarray
    open: np.ndarray
    close: np.ndarray


RULES = ("oracle", "contrarian", "random", "neutral", "trend", "mean_revert")
#: the rules that read the next bar: they need the run's bars in advance (a backtest's)
PEEKING_RULES = ("oracle", "contrarian")


class ScriptedEnsembleConfig(
    EnsembleConfig,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag="scripted_ensemble",
    tag_field="kind",
):
    """Scripted agents (``oracle``, ``contrarian``, ``random``, ``neutral``, ``trend``,
    ``mean_revert``; see :mod:`strategies.scripted`) weighted by the meta-investor;
    ``lookback`` is the bars the ``trend`` and ``mean_revert`` rules read;
    ``no_trade_band``, ``min_hold_bars``, ``sizing`` and ``allocation`` as for
    ``mappo_ensemble``; ``meta`` is the
    meta-investor's :class:`~strategies.meta.params.MetaInvestorParams` (``n_agents``: one
    per rule of ``agents``, set when the scenario is read). ``oracle`` and ``contrarian``
    read the next bar on purpose: they exist to show and test the meta-investor, not to
    trade."""

    agents: tuple[str, ...] = ("oracle", "contrarian", "random")
    max_position: float = 1_000.0
    lookback: int = 20

    def check(self) -> None:
        check_execution(self)
        check_panel(self.meta, len(self.agents), "one per rule of strategy.agents")
        if self.lookback < 1:
            raise ConfigError(f"strategy.lookback must be >= 1, got {self.lookback}")
        for rule in self.agents:
            if rule not in RULES:
                raise ConfigError(
                    f"strategy.agents: unknown rule {rule!r}; choose from {', '.join(RULES)}"
                )
        if not self.agents:
            raise ConfigError("strategy.agents must name at least one agent")
        positive("strategy.max_position", self.max_position)


class ScriptedAgent(Agent):
    def __init__(
        self,
        bus: Bus,
        clock: Clock,
        symbol: str,
        agent_id: str,
        agent_index: int,
        rule: str,
        *,
        data: PastAndFuture | None = None,
        rng: np.random.Generator | None = None,
        conviction: float = 0.9,
        lookback: int = 20,
    ) -> None:
        if rule not in RULES:
            raise ValueError(f"unknown rule {rule!r}; choose one of {RULES}")
        if rule in PEEKING_RULES and data is None:
            raise ValueError(f"the {rule!r} rule needs the bars (data=...)")
        if rule == "random" and rng is None:
            raise ValueError("the 'random' rule needs a seeded rng")
        super().__init__(bus, clock, symbol, agent_id, agent_index)
        self.rule = rule
        self._rng = rng
        self._conviction = conviction
        if rule in ("trend", "mean_revert") and lookback < 1:
            raise ValueError(f"the {rule!r} rule needs lookback >= 1, got {lookback}")
        self._lookback = lookback
        self._closes: deque[float] = deque(maxlen=lookback + 1)
        self._index = (
            {int(t): i for i, t in enumerate(data.ts)}
            if data is not None and rule in ("oracle", "contrarian")
            else {}
        )
        self._data = data

    def subscribe(self) -> None:
        self._bus.subscribe(Bar, self.on_bar, self.symbol)

    def _direction(self, bar: Bar) -> int:
        rule = self.rule
        if rule == "neutral":
            return 0
        if rule == "random":
            return int(self._rng.integers(-1, 2))  # type: ignore[union-attr]
        if rule in ("trend", "mean_revert"):
            closes = self._closes
            closes.append(bar.close)
            k = self._lookback
            if rule == "trend":
                return int(np.sign(closes[-1] - closes[0])) if len(closes) > k else 0
            if len(closes) < k:
                return 0
            mean = math.fsum(list(closes)[-k:]) / k
            return -int(np.sign(closes[-1] - mean))
        i = self._index[bar.ts_event]
        data = self._data
        assert data is not None  # checked in __init__ for these rules
        if i + 1 >= len(data.ts):
            return 0
        move = float(np.sign(data.close[i + 1] - data.open[i + 1]))
        return int(move if self.rule == "oracle" else -move)

    def on_bar(self, bar: Bar) -> None:
        direction = self._direction(bar)
        high = self._conviction
        low = (1.0 - high) / 2.0
        if direction > 0:
            bearish, neutral, bullish = low, low, high
        elif direction < 0:
            bearish, neutral, bullish = high, low, low
        else:
            bearish, neutral, bullish = low, high, low
        self.publish_vote(bar.ts_event, bearish, neutral, bullish, 1 + direction, high)
