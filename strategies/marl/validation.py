"""Choosing a checkpoint on a validation window, not on training.

``emarl train`` with ``[train] validation_end`` holds out the bars after the training
window up to that date. Every ``validate_every`` updates the policies trade that window
as the demo trades (argmax votes, the meta-investor's weights and exposure, the
scenario's costs, no-trade band and holding time), in the training market's exact
replica of the backtest (:class:`strategies.marl.env.VectorMarketEnv`, one environment,
one episode entered at the first warm training bar, so that the meta-investor's credit
and weights are warm as in a backtest that trades from the window's start, and flat at
the window's start, as that backtest is), and their Sharpe ratio over the window is
recorded. Training
keeps the update with the best validation Sharpe and stops early after ``patience``
evaluations without a better one (0: never). The checkpoint then holds that update's
weights and records the validation window and scores beside its training bars.

The validation bars are never trained on, but they chose the checkpoint: a run's summary
shows them as their own part, and ``emarl evaluate`` treats them as in sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from strategies.marl.env import OBS_SLICES, MarketData, TradingTerms, VectorMarketEnv

__all__ = ["ValidationMarket", "validation_figures"]


@dataclass(frozen=True)
class ValidationMarket:
    """The validation window's rows of a market, with what annualises its Sharpe ratio."""

    market: MarketData
    periods_per_year: float
    first_bar_ns: int
    last_bar_ns: int
    #: rows of ``market`` before the window that only warm the meta-investor up (as the
    #: bars before run.trade_start do in a backtest); the figures start after them
    warmup: int = 0

    @property
    def bars(self) -> int:
        return len(self.market.close) - self.warmup


def validation_figures(
    policies: list[Any], validation: ValidationMarket, terms: TradingTerms
) -> dict[str, float]:
    """Sharpe ratio (annualised), total return and turnover of the policies' argmax votes
    over the validation window, traded on ``terms`` (policies in eval mode; nothing
    trains)."""
    market = validation.market
    steps = len(market.close) - 1
    env = VectorMarketEnv(
        market, terms, n_envs=1, episode_length=steps, stop_loss=1.0, sequential=True
    )
    env.reset(starts=np.array([0]))
    inputs = torch.as_tensor(market.inputs[:steps], dtype=torch.float32)
    with torch.inference_mode():
        actions = np.stack(
            [
                policy(inputs[:, a:b]).argmax(-1).numpy()
                for policy, (a, b) in zip(policies, OBS_SLICES, strict=True)
            ],
            axis=1,
        )
    uniform = np.full((1, 3, 3), 1.0 / 3.0)
    equity = np.empty(steps + 1)
    equity[0] = terms.initial_cash
    traded = 0.0
    position = 0.0
    for k in range(steps):
        if k == validation.warmup:
            env.position[:] = 0.0  # the window starts flat, as a backtest's trading does
        _obs, _rewards, _terminated, _truncated, info = env.step(actions[k][None, :], uniform)
        equity[k + 1] = info["episode_equity"][0]
        new_position = float(info["position"][0])
        if k >= validation.warmup:
            traded += abs(new_position - position) * float(market.open[k + 1])
        position = new_position
    equity = equity[validation.warmup :]
    returns = np.diff(equity) / equity[:-1]
    std = float(returns.std(ddof=1)) if steps > 1 else math.nan
    sharpe = (
        float(returns.mean()) / std * math.sqrt(validation.periods_per_year)
        if std and std == std
        else math.nan
    )
    return {
        "sharpe": sharpe,
        "total_return": float(equity[-1] / equity[0] - 1.0),
        "turnover": traded / float(equity.mean()),
    }
