"""An ensemble strategy: agents vote, the meta-investor decides, an executor trades.

Subscription order matters and is fixed here: the meta-investor first (it
settles the previous step on each bar before new votes arrive), then the
agents, then the executor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from strategies.execution import TargetExecution
from strategies.meta.investor import MetaInvestor

__all__ = ["Ensemble"]


class Ensemble:
    def __init__(self, meta: MetaInvestor, agents: Sequence[Any], execution: TargetExecution):
        self.meta = meta
        self.agents = list(agents)
        self.execution = execution

    def subscribe(self) -> None:
        self.meta.subscribe()
        for agent in self.agents:
            agent.subscribe()
        self.execution.subscribe()

    def agent_summary(self) -> list[dict[str, float | str]]:
        return self.meta.agent_summary()

    def panel_summary(self) -> dict[str, float | int]:
        return self.meta.panel_summary()
