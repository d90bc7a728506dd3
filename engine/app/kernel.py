"""The kernel: the one place that builds a run's components, in one visible, ordered list.

Every backtest, paper run, sweep task and walk-forward fold is built here, and nothing of
the pipeline is built anywhere else. :func:`build_kernel` builds every component (a
checkpoint is loaded and checked here) and subscribes nothing, so that a run can be
refused before it stores anything; :meth:`Kernel.start` then subscribes them in the
order of the list, which is the order in which each bar reaches them:

====  =================  ==========================================================
 1    recorder           (a stored run: :class:`~engine.app.session.RunSession`)
                         marks the bar boundary and records every event
 2    broker             fills what was ordered on the previous close at this open
 3    portfolio          marks to this close and publishes the snapshot
 4    the strategy's     SMA: the crossover. An ensemble: the meta-investor first (it
      components         settles the previous step with the snapshot's P&L), then the
                         feature engine (learned agents), the agents (the learned
                         panel decides as one), and the executor, which trades the
                         meta-investor's target
 5    observers          what the shell collects (the backtest's results, a tap)
====  =================  ==========================================================

With ``run.trade_start`` the strategy's components talk to the bus through a
:class:`~engine.app.warmup.WarmupGate`: they see every bar, but no order goes out before
the start, in a backtest and in a paper run alike.

:meth:`Kernel.drive` feeds one bar: the clock is set (to the bar's end, or, in a paper
run, to its arrival) and the bar is published; dispatch is plain calls in list order.
Backtests (:mod:`engine.app.backtest`), paper runs (:mod:`engine.app.paper`), sweep
tasks and walk-forward folds (which run backtests) are shells over this module and a
:class:`~engine.app.session.RunSession`.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import msgspec
import numpy as np

from brokers.costs import CostRates
from brokers.portfolio import Portfolio
from brokers.simulated import SimulatedBroker
from engine.app.provenance import (
    TrainingRecord,
    check_transfer,
    checkpoint_path,
    read_training_record,
)
from engine.app.scenario import InstrumentConfig, ScenarioConfig
from engine.app.warmup import WarmupGate, trade_start_ns
from engine.core.bus import Bus, MessageBus
from engine.core.clock import SimulatedClock
from engine.core.errors import ConfigError
from engine.core.events import Bar
from strategies.base import Component, Strategy
from strategies.execution import TargetExecution
from strategies.marl.config import AGENTS, MappoEnsembleConfig
from strategies.meta.investor import MetaInvestor
from strategies.meta.params import MetaInvestorParams
from strategies.scripted import PEEKING_RULES, RULES, ScriptedAgent, ScriptedEnsembleConfig
from strategies.sizing import AccountView
from strategies.sma_cross import SmaCross, SmaCrossConfig

__all__ = ["Kernel", "StrategyFactory", "build_kernel", "build_strategy", "custom_strategy"]

log = logging.getLogger("emarl.kernel")

#: A custom strategy: ``(config, bus, clock) -> component(s)``, subscribed in order in
#: the strategy's place (step 4 of the module docstring).
StrategyFactory = Callable[[ScenarioConfig, Bus, SimulatedClock], "Component | Sequence[Component]"]


@dataclass
class Kernel:
    """A run's components, built and in their subscription order (module docstring)."""

    config: ScenarioConfig
    bus: MessageBus
    clock: SimulatedClock
    broker: SimulatedBroker
    portfolio: Portfolio
    #: the strategy's components, in their order
    strategy: list[Component]
    #: the ensemble's meta-investors, one a symbol (none for a strategy without one)
    metas: list[MetaInvestor] = field(default_factory=list)
    #: what the checkpoint of a learned ensemble was trained on (None otherwise)
    training_record: TrainingRecord | None = None
    components: list[tuple[str, Component]] = field(default_factory=list)
    started: bool = False

    @property
    def symbol(self) -> str:
        """The first (in a one-instrument run, the only) symbol."""
        return self.config.universe[0].symbol

    def start(self, recorder: Component | None = None, observers: Sequence[Component] = ()) -> None:
        """Subscribe the recorder, the broker, the portfolio, the strategy's components and
        the observers, in that order (once)."""
        if self.started:
            raise RuntimeError("the kernel has started already")
        listed: list[tuple[str, Component]] = []
        if recorder is not None:
            listed.append(("recorder", recorder))
        listed += [("broker", self.broker), ("portfolio", self.portfolio)]
        listed += [(f"strategy[{i}]", c) for i, c in enumerate(self.strategy)]
        listed += [(f"observer[{i}]", c) for i, c in enumerate(observers)]
        for _name, component in listed:
            component.subscribe()
        self.components = listed
        self.started = True

    def feed(
        self,
        ts: list[int],
        open: list[float],
        high: list[float],
        low: list[float],
        close: list[float],
        volume: list[float],
        symbols: list[str] | None = None,
    ) -> None:
        """:meth:`drive` for a replay: feed a chunk of bars, each at its own end time, in
        one loop with the bus and clock bound once (a backtest's inner loop). ``symbols``
        names each bar's symbol (a universe's); by default every bar is the first
        symbol's."""
        clock = self.clock
        publish, next_seq = self.bus.publish, self.bus.next_seq
        names = symbols if symbols is not None else itertools.repeat(self.symbol, len(ts))
        for t, o, h, lo, c, v, name in zip(ts, open, high, low, close, volume, names, strict=True):
            clock.time_ns = t
            publish(
                Bar(
                    ts_event=t,
                    ts_init=t,
                    seq=next_seq(),
                    symbol=name,
                    open=o,
                    high=h,
                    low=lo,
                    close=c,
                    volume=v,
                )
            )

    def drive(
        self,
        ts: int,
        open: float,
        high: float,
        low: float,
        close: float,
        volume: float,
        received_ns: int | None = None,
        symbol: str | None = None,
    ) -> int:
        """Feed the bar of ``symbol`` (by default the run's first) that ended at ``ts``; the
        clock reads ``received_ns`` (a paper run's arrival time), by default ``ts``. Returns
        the bar's bus sequence number."""
        now = ts if received_ns is None else received_ns
        self.clock.time_ns = now
        bus = self.bus
        seq = bus.next_seq()
        bus.publish(
            Bar(
                ts_event=ts,
                ts_init=now,
                seq=seq,
                symbol=self.symbol if symbol is None else symbol,
                open=open,
                high=high,
                low=low,
                close=close,
                volume=volume,
            )
        )
        return seq

    def agent_summary(self) -> list[dict[str, float | str]] | None:
        """Per agent: its Shapley P&L (in a universe summed over the symbols), and its
        share price and weight (in a universe, their means over the ``symbols`` it adds)."""
        if not self.metas:
            return None
        rows = [meta.agent_summary() for meta in self.metas]
        if len(rows) == 1:
            return rows[0]
        n = len(rows)
        return [
            {
                "agent": first["agent"],
                "shapley_pnl": sum(float(r[i]["shapley_pnl"]) for r in rows),
                "share_price": sum(float(r[i]["share_price"]) for r in rows) / n,
                "weight": sum(float(r[i]["weight"]) for r in rows) / n,
                "symbols": n,
            }
            for i, first in enumerate(rows[0])
        ]

    def panel_summary(self) -> dict[str, float | int] | None:
        """The meta-investor's panel figures (in a universe: steps summed, the lowest and
        highest share price over the symbols, the other figures' step-weighted means)."""
        if not self.metas:
            return None
        panels = [meta.panel_summary() for meta in self.metas]
        if len(panels) == 1:
            return panels[0]
        steps = sum(int(p["steps"]) for p in panels)
        counted = [p for p in panels if p["steps"]]

        def mean(key: str) -> float:
            if not steps:
                return math.nan
            return sum(float(p[key]) * int(p["steps"]) for p in counted) / steps

        return {
            "steps": steps,
            "effective_agents": mean("effective_agents"),
            "share_price_min": min((p["share_price_min"] for p in counted), default=math.nan),
            "share_price_max": max((p["share_price_max"] for p in counted), default=math.nan),
            "exposure_mean": mean("exposure_mean"),
            "bubble_threshold": panels[0]["bubble_threshold"],
        }


def build_kernel(
    config: ScenarioConfig,
    bus: MessageBus,
    clock: SimulatedClock,
    *,
    bars: Any = None,
    strategy: StrategyFactory | None = None,
) -> Kernel:
    """Build every component of a run, subscribing nothing. ``bars`` (a backtest's, or
    None in a paper run) give the options' horizon when ``expiry_bars`` is 0 and the
    future the scripted ``oracle`` reads; ``strategy`` replaces the scenario's."""
    portfolio = Portfolio(
        bus,
        config.broker.initial_cash,
        borrow_fee_bps=config.broker.borrow_fee_bps,
        financing_rate_bps=config.broker.financing_rate_bps,
    )
    universe = config.universe
    broker = SimulatedBroker(
        bus,
        portfolio,
        config.broker,
        symbols=config.symbols,
        lot_size={i.symbol: i.lot_size for i in universe},
        timezone=config.data.timezone,
        costs={i.symbol: instrument_costs(config, i) for i in universe},
    )
    start = trade_start_ns(config)
    gated: Bus = bus if start is None else WarmupGate(bus, clock, start)
    record = None
    if isinstance(config.strategy, MappoEnsembleConfig):
        record = read_training_record(checkpoint_path(config))
        transfer = check_transfer(record, config)
        if transfer is not None:
            log.warning("warning: %s", transfer)
    if strategy is not None:
        built = strategy(config, gated, clock)
        components = list(built) if isinstance(built, Sequence) else [built]
    else:
        components = build_strategy(config, gated, clock, bars, portfolio)
    metas = [c for c in components if isinstance(c, MetaInvestor)]
    return Kernel(config, bus, clock, broker, portfolio, components, metas, record)


def build_strategy(
    config: ScenarioConfig,
    bus: Bus,
    clock: SimulatedClock,
    bars: Any = None,
    portfolio: Portfolio | None = None,
) -> list[Component]:
    """The components of the strategy the scenario names, in their order, on ``bus``
    (a custom :data:`StrategyFactory` can wrap or extend them).

    In a universe every symbol gets its own strategy, in the scenario's order: an SMA
    crossover each; an ensemble's meta-investor, feature engine, agents and executor each
    (the learned agents' weights loaded once and shared), its meta-investor credited with
    its symbol's P&L, which ``portfolio`` counts. Sized by the account, an account view
    comes first (:mod:`strategies.sizing`)."""
    strategy = config.strategy
    account = None
    if strategy.sizing.method != "units":  # sized by equity: the account view comes first
        account = AccountView(
            bus, config.symbols, strategy.sizing, strategy.allocation, config.broker.initial_cash
        )
    if isinstance(strategy, SmaCrossConfig):
        lots = {i.symbol: i.lot_size for i in config.universe}
        single = len(config.universe) == 1
        built: list[Component] = [
            SmaCross(bus, clock, s, strategy, "sma" if single else f"sma-{s}", account, lots[s])
            for s in config.symbols
        ]
    else:
        if len(config.universe) > 1 and portfolio is None:
            raise ConfigError(
                "an ensemble in a universe credits each symbol's meta-investor with that "
                "symbol's P&L: build_strategy needs the run's portfolio (portfolio=...)"
            )
        ensemble = _Ensemble(config, bus, clock, bars, account, portfolio)
        built = [c for j in range(len(config.universe)) for c in ensemble.on_symbol(j)]
    return built if account is None else [account, *built]


def instrument_costs(config: ScenarioConfig, instrument: InstrumentConfig) -> CostRates:
    """The broker's cost rates with an instrument's own commission and slippage over them."""
    rates = CostRates.of(config.broker)
    return dataclasses.replace(
        rates,
        commission_bps=(
            rates.commission_bps if instrument.commission_bps is None else instrument.commission_bps
        ),
        slippage_bps=(
            rates.slippage_bps if instrument.slippage_bps is None else instrument.slippage_bps
        ),
    )


class _Ensemble:
    """Builds an ensemble's components for each symbol of the run (one in a single-
    instrument run): what all symbols share is made once here."""

    def __init__(
        self,
        config: ScenarioConfig,
        bus: Bus,
        clock: SimulatedClock,
        bars: Any,
        account: AccountView | None,
        portfolio: Portfolio | None,
    ) -> None:
        self.config, self.bus, self.clock = config, bus, clock
        self.account, self.portfolio = account, portfolio
        self.start = trade_start_ns(config)
        self.single = len(config.universe) == 1
        self.bars = bars
        self.rng = np.random.default_rng(config.run.seed)  # the agents' draws, all symbols
        # an ensemble's config (mappo_ensemble or scripted_ensemble)
        self.strategy: Any = cast(Any, config.strategy)
        self.ids: tuple[str, ...]
        if isinstance(self.strategy, MappoEnsembleConfig):
            self.learned = _load_panel(config)
            self.params, self.ids = self.learned.params, AGENTS
        else:
            self.params = self.strategy.meta
            self.ids = tuple(f"{rule}-{i}" for i, rule in enumerate(self.strategy.agents))
            peeking = sorted(set(self.strategy.agents) & set(PEEKING_RULES))
            if bars is None and peeking:
                raise ConfigError(
                    f"strategy.agents: {' and '.join(map(repr, peeking))} read the next bar, "
                    "which a paper run does not have: they are for backtests; choose from "
                    f"{', '.join(r for r in RULES if r not in PEEKING_RULES)}"
                )

    def on_symbol(self, j: int) -> list[Component]:
        """The meta-investor, the agents (a learned panel: the feature engine and the
        panel) and the executor of the ``j``-th symbol."""
        config, bus, clock = self.config, self.bus, self.clock
        instrument = config.universe[j]
        symbol = instrument.symbol
        strategy = self.strategy
        name = "meta" if self.single else f"meta-{symbol}"
        costs = None
        if not self.single:
            position = self.portfolio.position(symbol)  # type: ignore[union-attr]

            def costs() -> float:
                return position.costs

        bars = self.bars
        if bars is not None and not self.single:
            bars = bars.series[j]  # the symbol's own bars
        # the options' horizon when expiry_bars is 0 (a paper run has no bars: 0)
        horizon = 0 if bars is None else len(bars)
        meta = MetaInvestor(
            bus,
            clock,
            symbol,
            list(self.ids),
            self.params,
            _instrument_broker(config, instrument),
            max_position=strategy.max_position,
            confidence_threshold=strategy.confidence_threshold,
            lot_size=instrument.lot_size,
            horizon_bars=horizon,
            strategy_id=name,
            # its own stream: Monte Carlo credit draws do not shift the agents' draws
            rng=np.random.default_rng(
                [config.run.seed, 1] if self.single else [config.run.seed, 1, j]
            ),
            no_trade_band=strategy.no_trade_band,
            min_hold_bars=strategy.min_hold_bars,
            trade_start_ns=self.start,
            account=self.account,
            symbol_costs=costs,
        )
        execution = TargetExecution(bus, clock, symbol, name)
        if isinstance(strategy, ScriptedEnsembleConfig):
            agents: list[Component] = [
                ScriptedAgent(
                    bus,
                    clock,
                    symbol,
                    self.ids[i],
                    i,
                    rule,
                    data=bars,
                    rng=self.rng,
                    lookback=strategy.lookback,
                )
                for i, rule in enumerate(strategy.agents)
            ]
            return [meta, *agents, execution]
        return [meta, *self.learned.components(bus, clock, symbol, self.rng), execution]


def _instrument_broker(config: ScenarioConfig, instrument: InstrumentConfig) -> Any:
    """``[broker]`` with the instrument's own commission and slippage (the meta-investor's
    model prices its coalitions with them)."""
    rates = instrument_costs(config, instrument)
    return msgspec.structs.replace(
        config.broker, commission_bps=rates.commission_bps, slippage_bps=rates.slippage_bps
    )


@dataclass
class _LearnedPanel:
    """A checkpoint's policies, loaded once: each symbol's panel shares their weights."""

    config: ScenarioConfig
    params: MetaInvestorParams
    policies: list[Any]
    #: the first symbol's panel: the others read its copy of the weights
    first: Any = None

    def components(
        self, bus: Bus, clock: SimulatedClock, symbol: str, rng: np.random.Generator
    ) -> list[Component]:
        """The feature engine and the agent panel of ``symbol``."""
        # torch-free: the policies are numpy copies (loaded in _load_panel)
        from indicators.engine import FeatureEngine
        from strategies.marl.agents import AgentPanel, LearnedAgent

        strategy: Any = self.config.strategy  # a mappo_ensemble's
        agents = [
            LearnedAgent(
                bus,
                clock,
                symbol,
                i,
                policy,
                deterministic=strategy.deterministic,
                vote=strategy.vote,
                rng=rng,
                sampling_temperature=strategy.sampling_temperature,
                uncertainty_bonus=strategy.uncertainty_bonus,
            )
            for i, policy in enumerate(self.policies)
        ]
        panel = AgentPanel(agents, shared=self.first)
        self.first = self.first or panel
        return [FeatureEngine(bus, clock, symbol, self.config.indicators), panel]


def _load_panel(config: ScenarioConfig) -> _LearnedPanel:
    # torch (the checkpoint) loads only for a learned ensemble: a second of start-up
    from strategies.marl.agents import NumpyPolicy
    from strategies.marl.checkpoint import feature_signature, load_checkpoint

    strategy: Any = config.strategy  # a mappo_ensemble's
    checkpoint = load_checkpoint(checkpoint_path(config), feature_signature(config.indicators))
    params = strategy.meta
    raw = checkpoint.meta.get("allocator_raw")
    if raw is not None and params.allocator is None:
        # a learned allocator's raw weights, unless the scenario names an allocator itself
        params = params.with_fields(allocator="softmax", softmax_raw_weights=tuple(raw))
    return _LearnedPanel(config, params, [NumpyPolicy(p) for p in checkpoint.policies])


def custom_strategy(
    strategy: type[Strategy] | Callable[..., Any], params: dict[str, Any]
) -> tuple[StrategyFactory, dict[str, Any]]:
    """A strategy of the user's as a :data:`StrategyFactory`, and what a run row stores of
    it in place of the scenario's ``[strategy]``: ``kind = "custom"``, its import path and
    its parameters (a class's declared defaults with ``params`` over them).

    ``strategy`` is a :class:`~strategies.base.Strategy` subclass, built with
    :meth:`~strategies.base.Strategy.create` on the scenario's symbol (in a universe, one
    on each symbol, with the strategy id ``<class>-<symbol>``), or a function
    ``(config, bus, clock, **params)`` returning the component(s)."""
    if isinstance(strategy, type) and issubclass(strategy, Strategy):
        cls = strategy
        stored = {**cls.parameters(), **params}

        def build(config: ScenarioConfig, bus: Bus, clock: SimulatedClock) -> Any:
            symbols = config.symbols
            name = cls.__name__.lower()
            # a universe: one per symbol, each with its own state
            built: list[Any] = [
                cls.create(bus, clock, s, "" if len(symbols) == 1 else f"{name}-{s}", **params)
                for s in symbols
            ]
            sizing = config.strategy.sizing  # [strategy.sizing]: what Strategy.size reads
            if sizing.method == "units":
                return built
            cash = config.broker.initial_cash
            account = AccountView(bus, symbols, sizing, config.strategy.allocation, cash)
            lots = {i.symbol: i.lot_size for i in config.universe}
            for strategy_ in built:
                strategy_.account, strategy_.lot_size = account, lots[strategy_.symbol]
            return [account, *built]

    elif callable(strategy) and not isinstance(strategy, type):
        function = strategy
        stored = dict(params)

        def build(config: ScenarioConfig, bus: Bus, clock: SimulatedClock) -> Any:
            return function(config, bus, clock, **params)

    else:
        raise ConfigError(
            f"strategy must be a Strategy subclass or a function (config, bus, clock), "
            f"got {strategy!r}"
        )
    try:
        stored = msgspec.to_builtins(stored)
        msgspec.json.encode(stored)
    except (TypeError, msgspec.EncodeError) as exc:
        raise ConfigError(
            f"the parameters of {strategy.__qualname__} must be plain values (numbers, "
            f"strings, lists, dicts) to be stored with the run: {exc}"
        ) from None
    record = {"kind": "custom", "import_path": import_path(strategy), "params": stored}
    return build, record


def import_path(obj: Any) -> str:
    """``module:qualified.name`` of a class or function; for one defined in a script run
    as ``python path/to/script.py``, the script's path (relative to the working folder
    when it lies inside it) in place of ``__main__``."""
    module = obj.__module__
    if module == "__main__":
        try:
            file = inspect.getsourcefile(obj)
        except TypeError:  # defined in an interactive session or a notebook
            file = None
        if file is None:
            file = getattr(sys.modules.get("__main__"), "__file__", None)
        if file:
            relative = os.path.relpath(file)
            module = file if relative.startswith("..") else relative
    return f"{module}:{obj.__qualname__}"
