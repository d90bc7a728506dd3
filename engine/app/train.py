"""``emarl train``: a scenario's bars -> features -> MAPPO -> checkpoint.

The scenario names the bars (``[data]``, with ``start`` / ``end`` for the training
window), the costs (``[broker]``), the ensemble (``[strategy]``, kind
``mappo_ensemble``: ``max_position``, ``confidence_threshold``, ``meta``,
``checkpoint``) and the hyperparameters (``[train]``). Rows whose features are not
warm are never part of an episode. Storage is the caller's business: metrics
arrive through ``on_update``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from brokers.costs import CostRates
from engine.app.provenance import checkpoint_path, training_data_record
from engine.app.scenario import ScenarioConfig, config_hash
from engine.app.warmup import trade_start_ns, training_config
from engine.core.errors import ConfigError
from engine.feeds.bars import bound_ns, load_bars
from indicators.features import build_features, warm_mask
from strategies.marl.config import MappoEnsembleConfig, TrainConfig
from strategies.marl.env import MarketData, TradingTerms

__all__ = ["TrainingOutcome", "check_updates", "prepare_market", "train_scenario"]


@dataclass
class TrainingOutcome:
    result: Any
    weights_path: Path
    meta_path: Path
    bars: int
    warm_bars: int
    #: the bars it was trained on, as recorded in the checkpoint (training_data_record)
    data: dict[str, Any]


def prepare_market(config: ScenarioConfig) -> tuple[Any, np.ndarray, np.ndarray, MarketData]:
    """(bars, features, warm mask, MarketData) for the scenario's data window."""
    from strategies.marl.mappo import market_from_bars  # torch loads only to train

    data = load_bars(
        config.data,
        config.single("emarl train").symbol,
        path=config.data_path(),
        seed=config.run.seed,
    )
    features = build_features(
        data.open, data.high, data.low, data.close, data.volume, data.ts, config.indicators
    )
    warm = warm_mask(features, config.indicators)
    return data, features, warm, market_from_bars(data, features, warm)


def prepare_stage_markets(config: ScenarioConfig, hp: TrainConfig) -> list[MarketData] | None:
    """One training market per curriculum stage, for a synthetic scenario: the same seed
    (regimes, gaps, drift) with the noise scaled by the stage's complexity (SPEC 1's
    curriculum). None for real bars, whose noise cannot be rescaled: there complexity
    scales the costs and the share of hard episodes only."""
    if config.data.source != "synthetic" or not hp.curriculum:
        return None
    from strategies.marl.mappo import market_from_bars  # torch loads only to train

    markets = []
    for complexity in hp.stage_complexity:
        if not 0.0 < complexity <= 1.0:
            raise ConfigError(
                f"train.stage_complexity: {complexity} cannot scale the synthetic market's "
                "noise (it must be in (0, 1])"
            )
        data = load_bars(
            config.data,
            config.universe[0].symbol,
            seed=config.run.seed,
            complexity=complexity,
        )
        features = build_features(
            data.open, data.high, data.low, data.close, data.volume, data.ts, config.indicators
        )
        markets.append(market_from_bars(data, features, warm_mask(features, config.indicators)))
    return markets


def prepare_validation(
    config: ScenarioConfig, hp: TrainConfig, last_training_ns: int, trading_from: int | None
) -> Any:
    """The validation window of ``[train] validation_end`` (None without one): the bars
    after the last training bar up to that date, with features computed on the whole
    series (they are causal), all of them warm. It must end before ``run.trade_start``."""
    from strategies.marl.validation import ValidationMarket  # torch loads only to train

    if not hp.validation_end:
        return None

    end_ns = bound_ns(hp.validation_end, config.data.timezone, "end")
    if trading_from is not None and end_ns >= trading_from:
        raise ConfigError(
            f"train.validation_end={hp.validation_end!r} reaches run.trade_start: the "
            "validation bars must come before the bars the run trades"
        )
    longer = msgspec.structs.replace(
        config, data=msgspec.structs.replace(config.data, end=hp.validation_end)
    )
    data, _features, warm, market = prepare_market(longer)
    first = int(np.searchsorted(data.ts, last_training_ns, side="right"))
    if len(data) - first < 2:
        raise ConfigError(
            f"train.validation_end={hp.validation_end!r}: fewer than 2 bars after the training "
            "window; set it later than the training bars' end"
        )
    if not warm[first:].all():
        raise ConfigError(
            "train.validation_end: some validation bars have no warm features "
            f"({int((~warm[first:]).sum())} of {len(data) - first})"
        )
    # the warm training bars before the window warm the meta-investor up, from the same
    # first bar as a backtest that trades from the window's start
    cold = np.flatnonzero(~warm[:first])
    lead = int(cold[-1]) + 1 if len(cold) else 0
    rows = MarketData(market.inputs[lead:], market.open[lead:], market.close[lead:], warm[lead:])
    years = (int(data.ts[-1]) - int(data.ts[first])) / (365.25 * 86_400e9)
    return ValidationMarket(
        rows,
        (len(data) - first - 1) / years,
        int(data.ts[first]),
        int(data.ts[-1]),
        warmup=first - lead,
    )


def check_updates(updates: int | None) -> None:
    """``--updates``, when given, is at least 1."""
    if updates is not None and updates < 1:
        raise ConfigError(f"--updates must be >= 1, got {updates}")


def train_scenario(
    config: ScenarioConfig,
    *,
    out: Path | None = None,
    updates: int | None = None,
    on_update: Callable[[Any], None] | None = None,
) -> TrainingOutcome:
    """Train on the scenario and write the checkpoint (``out`` or ``strategy.checkpoint``).

    The bars are those of :func:`engine.app.warmup.training_config`: inside ``data.start`` /
    ``data.end`` and before ``run.trade_start`` when it is set. The checkpoint's ``.json``
    records them (:func:`engine.app.provenance.training_data_record`).
    """

    # torch loads only to train (a sweep of other strategies runs without it)
    from strategies.marl.checkpoint import feature_signature, save_checkpoint
    from strategies.marl.mappo import train
    from strategies.marl.validation import validation_figures

    strategy = config.strategy
    if not isinstance(strategy, MappoEnsembleConfig):
        raise ConfigError(
            "emarl train needs [strategy] kind = 'mappo_ensemble' (its checkpoint, "
            "max_position, confidence_threshold and meta)"
        )
    hp = config.train or TrainConfig()
    check_updates(updates)
    target = out if out is not None else checkpoint_path(config)
    trading_from = trade_start_ns(config)
    config = training_config(config)
    data, _features, warm, market = prepare_market(config)
    held_out = prepare_validation(config, hp, int(data.ts[-1]), trading_from)
    bars, warm_bars = len(data), int(warm.sum())
    stage_markets = prepare_stage_markets(config, hp)
    meta_params = strategy.meta
    if hp.allocator == "equal":
        meta_params = meta_params.with_fields(allocator="equal")
    broker = config.broker
    if broker.max_participation > 0.0:
        raise ConfigError(
            "broker.max_participation must be 0 for training: the training market does not "
            "model the volume cap (set it to 0 in the training scenario)"
        )
    terms = TradingTerms(
        CostRates.of(broker),
        strategy.max_position,
        lot_size=config.universe[0].lot_size,
        confidence_threshold=strategy.confidence_threshold,
        initial_cash=broker.initial_cash,
        meta=meta_params,
        no_trade_band=strategy.no_trade_band,
        min_hold_bars=strategy.min_hold_bars,
    )
    validation = None
    if held_out is not None:
        window = held_out

        def validation(policies: list[Any]) -> float:
            return validation_figures(policies, window, terms)["sharpe"]

    try:
        result = train(
            market,
            hp,
            seed=config.run.seed,
            terms=terms,
            updates=updates,
            on_update=on_update,
            stage_markets=stage_markets,
            validation=validation,
        )
    except ValueError as exc:
        raise ConfigError(f"training: {exc}") from exc
    last = result.metrics[-1] if result.metrics else None
    trained_on = training_data_record(config, data, warm_bars)
    if held_out is not None:
        trained_on["validation"] = {
            "first_bar_ns": held_out.first_bar_ns,
            "last_bar_ns": held_out.last_bar_ns,
            "bars": held_out.bars,
            "end": hp.validation_end,
            "selected_update": result.selected_update,
            "stopped_early": result.stopped_early,
            "scores": [[update, score] for update, score in result.validation_scores],
        }
    extra = {
        "hyperparameters": msgspec.to_builtins(hp),
        "config_hash": config_hash(config),
        "seed": config.run.seed,
        "updates": len(result.metrics),
        "episodes": result.episodes,
        "allocator": hp.allocator,
        "allocator_raw": result.allocator_raw,
        "training_seconds": round(result.seconds, 3),
        "updates_per_second": round(result.updates_per_second, 5),
        "agent_steps_per_second": round(result.agent_steps_per_second, 1),
        "final_metrics": last.as_dict() if last is not None else None,
        "data": trained_on,
    }
    weights_path, meta_path = save_checkpoint(
        target,
        result.policies,
        result.critic,
        signature=feature_signature(config.indicators),
        extra=extra,
    )
    return TrainingOutcome(result, weights_path, meta_path, bars, warm_bars, trained_on)
