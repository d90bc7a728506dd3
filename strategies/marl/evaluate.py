"""Evaluation of a learned ensemble against buy-and-hold and the SMA reference.

Strategic accuracy (SPEC 1): among the ensemble's non-neutral decisions (a decision
on the close of bar t whose ensemble direction sign(P_bull - P_bear) is not 0 and
whose confidence passed the gate), the share whose direction equals the sign of the
forward return close[t+k] / close[t] - 1 (a zero return counts as a miss; decisions
closer than k bars to the end are left out).

Sharpe = mean / std of the per-bar equity returns x √(bars per year), bars per year
counted from the data; max drawdown of the equity curve; hit rate = share of bars
held with a position whose P&L was positive. ``emarl evaluate`` measures a scenario
with these (:mod:`engine.app.evaluate`).

:func:`held_out_figures` is the lighter reading used by the learning test and its
benchmark on synthetic bars: the trained policies (eval mode, batched) vote with their
probabilities, the ensemble averages them with equal weights, gates on SPEC 3's
confidence and sizes ``max_position (P_bull - P_bear)``; its accuracy and per-bar
Sharpe are set against buy-and-hold and a uniformly random policy on the same bars.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from strategies.marl.networks import AGENT_INPUT_SIZES

__all__ = ["equity_statistics", "held_out_figures", "per_bar_sharpe", "strategic_accuracy"]


def strategic_accuracy(direction: np.ndarray, close: np.ndarray, k: int) -> tuple[float, int]:
    """(accuracy, number of decisions counted) for decision directions per bar."""
    n = len(close)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if n <= k:
        return math.nan, 0
    forward = np.sign(close[k:] - close[:-k])
    d = np.asarray(direction[: n - k])
    counted = d != 0
    total = int(counted.sum())
    if total == 0:
        return math.nan, 0
    return float((forward[counted] == d[counted]).sum() / total), total


def per_bar_sharpe(position: np.ndarray, close: np.ndarray) -> float:
    """mean / std of the per-bar P&L ``position[t] (close[t+1] - close[t])`` (no costs);
    -inf for a flat P&L."""
    pnl = np.asarray(position)[:-1] * np.diff(close)
    std = float(pnl.std())
    return float(pnl.mean()) / std if std > 0 else -math.inf


def held_out_figures(
    policies: Any,
    inputs: np.ndarray,
    close: np.ndarray,
    *,
    confidence_threshold: float,
    rng: np.random.Generator,
    max_position: float = 1.0,
) -> dict[str, float]:
    """The ensemble of ``policies`` (PolicyNets, eval mode) on consecutive bars.

    ``inputs`` (n, 11) are the agents' inputs of the bars whose closes are ``close``.
    Each agent votes its distribution; P = mean of the three; confidence = max P - H(P);
    a decision passes the gate when confidence >= ``confidence_threshold`` and then sets
    the position to ``max_position (P_bull - P_bear)`` and the direction to
    sign(P_bull - P_bear); a gated bar holds the previous position and counts as
    neutral. Returns accuracy (k = 1, 8) and number of counted decisions, the Sharpe
    (:func:`per_bar_sharpe`) of the ensemble, of buy-and-hold and of a uniformly random
    policy (each agent's action drawn from ``rng``, one-hot votes averaged).
    """

    x = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
    start = 0
    probabilities = np.zeros((len(close), 3))
    with torch.no_grad():
        for policy in policies:
            size = AGENT_INPUT_SIZES[policy.agent]
            logits = policy(x[:, start : start + size])
            probabilities += torch.softmax(logits.double(), -1).numpy() / len(policies)
            start += size
    p = probabilities
    logs = np.log(np.clip(p, 1e-300, None))
    confidence = p.max(axis=1) + (p * logs).sum(axis=1)
    gated = confidence >= confidence_threshold - 1e-12
    target = max_position * (p[:, 2] - p[:, 0])
    # hold the last gated target (0 before the first)
    last = np.maximum.accumulate(np.where(gated, np.arange(len(close)), -1))
    position = np.where(last >= 0, target[np.maximum(last, 0)], 0.0)
    direction = np.where(gated, np.sign(p[:, 2] - p[:, 0]), 0.0)
    k1, count = strategic_accuracy(direction, close, 1)
    k8, _ = strategic_accuracy(direction, close, 8)
    random_actions = rng.integers(0, 3, size=(len(close), len(policies)))
    random_position = max_position * (random_actions - 1).mean(axis=1)
    return {
        "accuracy_k1": k1,
        "accuracy_k8": k8,
        "decisions": float(count),
        "sharpe": per_bar_sharpe(position, close),
        "sharpe_buy_and_hold": per_bar_sharpe(np.full(len(close), max_position), close),
        "sharpe_random": per_bar_sharpe(random_position, close),
    }


def equity_statistics(
    ts: np.ndarray, equity: np.ndarray, position: np.ndarray | None = None
) -> dict[str, float]:
    """Total return, Sharpe, max drawdown and hit rate of an equity curve."""
    if len(equity) < 2:
        return {
            "total_return": math.nan,
            "sharpe": math.nan,
            "max_drawdown": math.nan,
            "hit_rate": math.nan,
        }
    returns = np.diff(equity) / equity[:-1]
    years = (ts[-1] - ts[0]) / (365.25 * 86_400e9)
    per_year = (len(ts) - 1) / years if years > 0 else math.nan
    std = returns.std(ddof=1)
    sharpe = float(returns.mean() / std * math.sqrt(per_year)) if std > 0 else math.nan
    peak = np.maximum.accumulate(equity)
    drawdown = float((equity / peak - 1.0).min())
    hit = math.nan
    if position is not None:
        held = position[:-1] != 0
        if held.any():
            hit = float((np.diff(equity)[held] > 0).mean())
    return {
        "total_return": float(equity[-1] / equity[0] - 1.0),
        "sharpe": sharpe,
        "max_drawdown": drawdown,
        "hit_rate": hit,
    }
