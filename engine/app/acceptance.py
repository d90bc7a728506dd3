"""The meta-investor's acceptance test on the synthetic regime market.

The scenario (``scenarios/regimes_meta.toml``) trades three scripted agents that read
past bars only (:mod:`strategies.scripted`): a trend follower, a mean-reverter and a noise
agent, on the seeded regime market whose true regime is known for every bar
(:mod:`engine.feeds.synthetic`). For each seed, :func:`regime_acceptance` runs

* the meta-investor as the scenario configures it,
* the same panel with SPEC 5's literal meta-investor
  (:meth:`strategies.meta.params.MetaInvestorParams.spec_literal`),
* the same panel with fixed equal weights at full exposure,
* each agent alone at full exposure,

on the same bars and costs, and measures

* the Sharpe ratio of each (net of costs, annualised by the bars per year);
* ``wins``: the meta-investor's Sharpe beats both equal weights and the best single agent;
* the lag after a regime change: for every spell of a regime that an agent suits (trending
  up or down: the trend follower; mean-reverting: the mean-reverter) that starts after the
  first ``SETTLE_BARS`` bars, the bars from the spell's first bar until that agent holds more
  than half of the weight (the spell's length when it never does); the median over spells;
* the share of those spells' bars on which the suiting agent holds more than half;
* the time-average effective number of agents, 1 / Σ w², and the share price range.

No agent suits the high-volatility regime (no edge, three times the noise); there the
better allocation is less exposure, which the defaults' exposure rule provides.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import msgspec
import numpy as np

from engine.app.backtest import run_backtest
from engine.app.scenario import ScenarioConfig
from engine.core.errors import ConfigError
from engine.core.events import Valuation
from engine.feeds.bars import load_bars
from strategies.meta.params import MetaInvestorParams
from strategies.scripted import ScriptedEnsembleConfig

__all__ = ["SeedFigures", "regime_acceptance", "regime_lags"]

#: spells starting before this bar are left out of the lag (the agents' lookback and the
#: first credit are still forming)
SETTLE_BARS = 300
#: the agent that suits each regime code of engine.feeds.synthetic (None: none)
SUITS = {0: "trend", 1: "trend", 2: "mean_revert", 3: None}


@dataclass
class SeedFigures:
    seed: int
    meta: float
    literal: float
    equal: float
    singles: dict[str, float]
    wins: bool
    literal_wins: bool
    #: per suiting agent: (median lag in bars, share of its spells with > 1/2 of the weight)
    lags: dict[str, tuple[float, float]]
    literal_lags: dict[str, tuple[float, float]]
    effective_agents: float
    literal_effective_agents: float
    share_price_min: float
    share_price_max: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _with(config: ScenarioConfig, seed: int, agents: Sequence[str], meta: dict[str, Any]) -> Any:
    params = MetaInvestorParams(**{**meta, "n_agents": len(agents)})
    strategy = msgspec.structs.replace(config.strategy, agents=tuple(agents), meta=params)
    run = msgspec.structs.replace(config.run, seed=seed)
    return msgspec.structs.replace(config, strategy=strategy, run=run)


def _run(config: ScenarioConfig, data: Any) -> tuple[float, np.ndarray, Any]:
    """(Sharpe, weights per bar (bars, n) forward-filled, result) of a backtest."""

    assert isinstance(config.strategy, ScriptedEnsembleConfig)  # checked by the caller
    n = len(config.strategy.agents)
    weights = np.full((len(data), n), np.nan)
    index = {int(t): i for i, t in enumerate(data.ts)}

    def tap(bus: Any) -> None:
        def on_valuation(v: Valuation) -> None:
            weights[index[v.ts_event], v.agent_index] = v.weight

        bus.subscribe(Valuation, on_valuation)

    result = run_backtest(config, data=data, persist=False, tap=tap)
    for i in range(1, len(weights)):
        if np.isnan(weights[i, 0]):
            weights[i] = weights[i - 1]
    return float(result.summary.sharpe), weights, result


def regime_lags(
    regime: np.ndarray, weights: np.ndarray, agents: Sequence[str], settle: int
) -> dict[str, tuple[float, float]]:
    """Per suiting agent: (median lag in bars, share of its spells' bars on which it holds
    more than half of the weight), over the spells it suits that start at or after bar
    ``settle`` (see the module docstring); NaN for an agent without such a spell."""
    lags: dict[str, list[int]] = {}
    held: dict[str, int] = {}
    total: dict[str, int] = {}
    start = 0
    for i in range(1, len(regime) + 1):
        if i < len(regime) and regime[i] == regime[start]:
            continue
        suiting = SUITS.get(int(regime[start]))
        if suiting is not None and suiting in agents and start >= settle:
            column = weights[start:i, list(agents).index(suiting)]
            majority = np.nan_to_num(column, nan=0.0) > 0.5
            hits = np.flatnonzero(majority)
            lags.setdefault(suiting, []).append(int(hits[0]) if len(hits) else i - start)
            held[suiting] = held.get(suiting, 0) + int(majority.sum())
            total[suiting] = total.get(suiting, 0) + i - start
        start = i
    return {
        agent: (float(np.median(lags[agent])), held[agent] / total[agent])
        if agent in lags
        else (math.nan, math.nan)
        for agent in agents
        if agent in SUITS.values()
    }


def regime_acceptance(config: ScenarioConfig, seeds: Sequence[int]) -> list[SeedFigures]:
    """The figures of the module docstring for every seed (the scenario's own meta
    parameters for the meta-investor; its bars, costs and agents for all)."""
    strategy = config.strategy
    if not isinstance(strategy, ScriptedEnsembleConfig) or config.data.source != "synthetic":
        raise ConfigError(
            "the regime acceptance test needs a scripted_ensemble scenario on the synthetic "
            "market (e.g. scenarios/regimes_meta.toml)"
        )
    agents = list(strategy.agents)
    meta = msgspec.structs.asdict(strategy.meta)
    literal = {**meta, "share_price_form": "simple", "strike": "moving_average"}
    literal.update(expiry_bars=0, weight_floor=0.0, exposure="full")
    full = {"exposure": "full"}
    settle = SETTLE_BARS
    out = []
    for seed in seeds:
        data = load_bars(config.data, config.universe[0].symbol, seed=seed)
        regime = data.regime
        if regime is None:
            raise ConfigError("the synthetic market did not record its regimes")
        sharpe, weights, result = _run(_with(config, seed, agents, meta), data)
        literal_sharpe, literal_weights, literal_result = _run(
            _with(config, seed, agents, literal), data
        )
        equal, _, _ = _run(_with(config, seed, agents, {"allocator": "equal", **full}), data)
        singles = {a: _run(_with(config, seed, [a], full), data)[0] for a in agents}
        best = max(singles.values())
        lags = regime_lags(regime, weights, agents, settle)
        literal_lags = regime_lags(regime, literal_weights, agents, settle)
        panel = result.panel or {}
        out.append(
            SeedFigures(
                seed=seed,
                meta=sharpe,
                literal=literal_sharpe,
                equal=equal,
                singles=singles,
                wins=sharpe > equal and sharpe > best,
                literal_wins=literal_sharpe > equal and literal_sharpe > best,
                lags=lags,
                literal_lags=literal_lags,
                effective_agents=float(panel.get("effective_agents", math.nan)),
                literal_effective_agents=float(
                    (literal_result.panel or {}).get("effective_agents", math.nan)
                ),
                share_price_min=float(panel.get("share_price_min", math.nan)),
                share_price_max=float(panel.get("share_price_max", math.nan)),
            )
        )
    return out
