"""The backtest runner: the deterministic core driven by a simulated clock.

Wiring, in subscription order (which is dispatch order for a bar):
Recorder -> SimulatedBroker -> Portfolio -> strategy -> results collector.
So on each bar the recorder marks the bar boundary, the broker fills what
was ordered on the previous close at this bar's open, the portfolio marks to
this close and publishes its snapshot, and the strategy decides on this
close. The asyncio shell feeds bars in chunks; within a chunk dispatch is
plain calls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from brokers.portfolio import Portfolio
from brokers.simulated import SimulatedBroker
from engine.bus import Bus, MessageBus
from engine.clock import SimulatedClock
from engine.config import ScenarioConfig, config_hash
from engine.data import BarData, bars_fingerprint, count_gaps, load_bars
from engine.errors import ConfigError
from engine.events import (
    Bar,
    OrderDenied,
    OrderFilled,
    OrderRejected,
    PortfolioSnapshot,
    RunFinished,
    SubmitOrder,
    reason_kind,
)
from engine.metrics import Summary, compute_summary, edge_of, window_summaries
from engine.version import code_version
from engine.warmup import WarmupGate, check_warmup, trade_start_ns

# runs at least this long write through a writer process by default (see run_backtest_async)
WRITER_PROCESS_MIN_BARS = 20_000

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from storage.recorder import Recorder
    from storage.writer import WriterProcess

__all__ = [
    "BacktestResult",
    "Pipeline",
    "ResultsCollector",
    "build_pipeline",
    "run_backtest",
    "wire_pipeline",
]

CHUNK = 4096


@dataclass
class BacktestResult:
    run_id: int | None
    summary: Summary
    fills: int
    rows_written: int
    wall_seconds: float
    bars_per_second: float
    data: BarData
    agents: list[dict[str, Any]] | None = None
    #: of ``wall_seconds``, the time before the first bar: storing the run, building the
    #: pipeline (in a fresh process also imports, the compiled-code cache, a checkpoint)
    setup_seconds: float = 0.0
    #: what became of the orders: sent, denied and rejected by kind, and why there is no
    #: fill when there is none (:func:`order_outcomes`)
    orders: dict[str, Any] | None = None
    #: the checkpoint's training window and the figures of the bars inside it and after
    #: it (:func:`training_windows`); None without a checkpoint
    training: dict[str, Any] | None = None
    #: the run row's provenance columns (:func:`provenance`)
    provenance: dict[str, Any] | None = None
    #: the meta-investor's panel over the run (effective number of agents, share price
    #: range, mean exposure); None without one
    panel: dict[str, Any] | None = None
    #: is the edge real: bootstrap intervals, PSR against 0 and buy-and-hold
    #: (:func:`engine.metrics.edge_of`)
    edge: dict[str, Any] | None = None

    def stored_summary(self) -> dict[str, Any]:
        """The summary as a run row stores it: the figures, the order counts, the
        in/out-of-sample split and the agents' table."""
        stored = self.summary.to_dict()
        stored["orders"] = self.orders
        if self.edge is not None:
            stored["edge"] = self.edge
        if self.training is not None:
            stored["training"] = self.training
        if self.agents is not None:
            stored["agents"] = self.agents
        if self.panel is not None:
            stored["panel"] = self.panel
        return stored

    @property
    def replay_bars_per_second(self) -> float:
        """Bars per second from the first bar on (``bars_per_second`` counts the setup)."""
        replay = self.wall_seconds - self.setup_seconds
        return len(self.data) / replay if replay > 0 else float("inf")


class ResultsCollector:
    """Keeps what the summary needs in preallocated arrays (no database read-back)."""

    def __init__(self, bars: int) -> None:
        self.ts = np.zeros(bars, dtype=np.int64)
        self.equity = np.zeros(bars)
        self.position = np.zeros(bars)
        self.cash = np.zeros(bars)
        self.count = 0
        self.fees = 0.0
        self.fills: list[OrderFilled] = []

        self.orders = 0
        self.denied: dict[str, int] = {}
        self.rejected: dict[str, int] = {}

    def on_order(self, _command: SubmitOrder) -> None:
        self.orders += 1

    def on_denied(self, event: OrderDenied) -> None:
        kind = reason_kind(event.reason)
        self.denied[kind] = self.denied.get(kind, 0) + 1

    def on_rejected(self, event: OrderRejected) -> None:
        kind = reason_kind(event.reason)
        self.rejected[kind] = self.rejected.get(kind, 0) + 1

    def subscribe(self, bus: Bus) -> None:
        bus.subscribe(PortfolioSnapshot, self.on_snapshot)
        bus.subscribe(OrderFilled, self.fills.append)
        bus.subscribe(SubmitOrder, self.on_order)
        bus.subscribe(OrderDenied, self.on_denied)
        bus.subscribe(OrderRejected, self.on_rejected)

    def on_snapshot(self, snapshot: PortfolioSnapshot) -> None:
        i = self.count
        self.ts[i] = snapshot.ts_event
        self.equity[i] = snapshot.equity
        self.position[i] = snapshot.position
        self.cash[i] = snapshot.cash
        self.fees = snapshot.fees
        self.count = i + 1

    def fill_arrays(self) -> dict[str, np.ndarray]:
        fills = self.fills
        return {
            "ts": np.array([f.ts_event for f in fills], dtype=np.int64),
            "side": np.array([f.side for f in fills], dtype=object),
            "quantity": np.array([f.quantity for f in fills], dtype=float),
            "price": np.array([f.price for f in fills], dtype=float),
            "commission": np.array([f.commission for f in fills], dtype=float),
        }


StrategyFactory = Callable[[ScenarioConfig, Bus, SimulatedClock], Any]


def order_outcomes(
    sent: int, denied: dict[str, int], rejected: dict[str, int], fills: int
) -> dict[str, Any]:
    """Counts of a run's orders, and ``no_fills``: why a run without a fill has none."""
    out: dict[str, Any] = {
        "sent": sent,
        "denied": dict(sorted(denied.items())),
        "rejected": dict(sorted(rejected.items())),
    }
    if fills == 0:
        refused = sum(denied.values()) + sum(n for kind, n in rejected.items() if kind != "cancel")
        if sent == 0:
            why = "no order was sent: the strategy never asked to trade"
        elif refused >= sent:
            why = f"every one of the {sent:,} orders was refused ({describe_refusals(out)})"
        else:
            why = (
                f"{sent - refused:,} of {sent:,} orders were accepted, none filled before the "
                "run ended"
            )
        out["no_fills"] = why
    return out


def describe_refusals(orders: dict[str, Any]) -> str:
    """``"denied 2,382 (margin 2,382); rejected 0"``-style text of :func:`order_outcomes`."""
    parts = []
    for what in ("denied", "rejected"):
        counts: dict[str, int] = orders.get(what) or {}
        total = sum(counts.values())
        detail = ", ".join(f"{kind} {n:,}" for kind, n in counts.items())
        parts.append(f"{what} {total:,}" + (f" ({detail})" if detail else ""))
    return "; ".join(parts)


def training_windows(record: Any, first_ns: int, last_ns: int) -> dict[str, tuple[int, int]]:
    """The parts of a run's bars ``[first_ns, last_ns]`` relative to a checkpoint's training
    bars: ``in_sample`` (inside its training window), ``validation`` (the held-out bars that
    chose the checkpoint, when it has them), ``out_of_sample`` (after both) and
    ``before_training`` (before it: not learned from, but learned from what came after).
    Parts without a bar of the run are left out."""
    seen = record.last_bar_ns if record.validation is None else record.validation[1]
    windows = {
        "before_training": (first_ns, record.first_bar_ns - 1),
        "in_sample": (max(first_ns, record.first_bar_ns), min(last_ns, record.last_bar_ns)),
        "validation": (
            (max(first_ns, record.validation[0]), min(last_ns, record.validation[1]))
            if record.validation is not None
            else (1, 0)
        ),
        "out_of_sample": (max(first_ns, seen + 1), last_ns),
    }
    return {name: (lo, hi) for name, (lo, hi) in windows.items() if lo <= hi}


def _warmup_factory(inner: StrategyFactory | None, data: BarData, start_ns: int) -> StrategyFactory:
    """Build the strategy on a :class:`WarmupGate`: no orders before ``start_ns``."""

    def factory(config: ScenarioConfig, bus: Bus, clock: SimulatedClock) -> Any:
        gate = WarmupGate(bus, clock, start_ns)
        if inner is None:
            return build_strategy(config, gate, clock, data)
        return inner(config, gate, clock)

    return factory


def build_strategy(
    config: ScenarioConfig,
    bus: Bus,
    clock: SimulatedClock,
    data: BarData | None = None,
) -> Any:
    """The strategy a scenario names (not yet subscribed)."""
    from engine.config import MappoEnsembleConfig, ScriptedEnsembleConfig

    if isinstance(config.strategy, ScriptedEnsembleConfig):
        return _scripted_ensemble(config, config.strategy, bus, clock, data)
    if isinstance(config.strategy, MappoEnsembleConfig):
        from strategies.marl.agents import build_learned_ensemble

        return build_learned_ensemble(config, bus, clock, data)
    from strategies.sma_cross import SmaCross

    return SmaCross(bus, clock, config.instrument.symbol, config.strategy)


def _scripted_ensemble(
    config: ScenarioConfig,
    strategy: Any,
    bus: Bus,
    clock: SimulatedClock,
    data: BarData | None,
) -> Any:
    import msgspec

    from strategies.ensemble import Ensemble
    from strategies.execution import TargetExecution
    from strategies.meta.investor import MetaInvestor
    from strategies.meta.step import MetaInvestorParams
    from strategies.scripted import ScriptedAgent

    symbol = config.instrument.symbol
    try:
        params = msgspec.convert(
            {**strategy.meta, "n_agents": len(strategy.agents)}, MetaInvestorParams
        )
    except (msgspec.ValidationError, ValueError) as exc:
        raise ConfigError(f"[strategy.meta]: {exc}") from None
    ids = [f"{rule}-{i}" for i, rule in enumerate(strategy.agents)]
    rng = np.random.default_rng(config.run.seed)
    meta = MetaInvestor(
        bus,
        clock,
        symbol,
        ids,
        params,
        config.broker,
        max_position=strategy.max_position,
        confidence_threshold=strategy.confidence_threshold,
        lot_size=config.instrument.lot_size,
        horizon_bars=len(data) if data is not None else 0,
        # its own stream: Monte Carlo credit draws do not shift the agents' draws
        rng=np.random.default_rng([config.run.seed, 1]),
        no_trade_band=strategy.no_trade_band,
        min_hold_bars=strategy.min_hold_bars,
        trade_start_ns=trade_start_ns(config),
    )
    agents = [
        ScriptedAgent(
            bus, clock, symbol, ids[i], i, rule, data=data, rng=rng, lookback=strategy.lookback
        )
        for i, rule in enumerate(strategy.agents)
    ]
    return Ensemble(meta, agents, TargetExecution(bus, clock, symbol))


@dataclass
class Pipeline:
    portfolio: Portfolio
    broker: SimulatedBroker
    strategy: Any

    def subscribe(self) -> None:
        """Subscribe the broker, the portfolio and the strategy, in that order."""
        self.broker.subscribe()
        self.portfolio.subscribe()
        self.strategy.subscribe()


def build_pipeline(
    config: ScenarioConfig,
    bus: MessageBus,
    clock: SimulatedClock,
    data: BarData | None = None,
    strategy_factory: StrategyFactory | None = None,
) -> Pipeline:
    """Build the broker, the portfolio and the strategy (a checkpoint is loaded and
    checked here), subscribing nothing: a run builds everything before it stores its
    row, so bad input leaves no run behind."""
    portfolio = Portfolio(bus, config.broker.initial_cash)
    broker = SimulatedBroker(
        bus,
        portfolio,
        config.broker,
        symbols=(config.instrument.symbol,),
        lot_size=config.instrument.lot_size,
        timezone=config.data.timezone,
    )
    if strategy_factory is None:
        strategy = build_strategy(config, bus, clock, data)
    else:
        strategy = strategy_factory(config, bus, clock)
    return Pipeline(portfolio, broker, strategy)


def wire_pipeline(
    config: ScenarioConfig,
    bus: MessageBus,
    clock: SimulatedClock,
    data: BarData | None = None,
    strategy_factory: StrategyFactory | None = None,
) -> Pipeline:
    """Build and subscribe the broker, the portfolio and the strategy, in that order.

    Backtests and paper runs both wire through here (after their recorder), so
    they dispatch every bar to the same handlers in the same order.
    """
    pipeline = build_pipeline(config, bus, clock, data, strategy_factory)
    pipeline.subscribe()
    return pipeline


def run_backtest(
    config: ScenarioConfig,
    *,
    db_url: str | None = None,
    data: BarData | None = None,
    persist: bool = True,
    scenario_path: str = "",
    progress: Callable[[int, int], None] | None = None,
    strategy_factory: StrategyFactory | None = None,
    tap: Callable[[MessageBus], None] | None = None,
    writer_process: bool | None = None,
) -> BacktestResult:
    """Run a scenario to the end; see :func:`run_backtest_async`."""
    return asyncio.run(
        run_backtest_async(
            config,
            db_url=db_url,
            data=data,
            persist=persist,
            scenario_path=scenario_path,
            progress=progress,
            strategy_factory=strategy_factory,
            tap=tap,
            writer_process=writer_process,
        )
    )


async def run_backtest_async(
    config: ScenarioConfig,
    *,
    db_url: str | None = None,
    data: BarData | None = None,
    persist: bool = True,
    scenario_path: str = "",
    progress: Callable[[int, int], None] | None = None,
    strategy_factory: StrategyFactory | None = None,
    tap: Callable[[MessageBus], None] | None = None,
    writer_process: bool | None = None,
) -> BacktestResult:
    """Load and validate the bars, build the pipeline, store a run, replay every bar,
    store the summary.

    Data errors, and any component that cannot be built (a missing or refused
    checkpoint), surface before anything is stored. If a handler raises, the
    finished bars are written, the run is marked ``failed`` with the error,
    and :class:`HandlerError` propagates. ``tap(bus)`` is called before anything
    subscribes (a sweep task keeps the run's messages with it). With
    ``run.trade_start`` the bars before it only warm up (see :mod:`engine.warmup`)
    and the summary starts there.

    With persistence the rows can be written by a :class:`~storage.writer.WriterProcess`
    on another core; the run's status is then set only after every row is committed.
    ``writer_process=None`` (the default) uses one for runs of at least
    ``WRITER_PROCESS_MIN_BARS`` (20,000) bars on any database but an in-memory SQLite
    one, which another process cannot open: starting the child costs some 0.3 s, and
    it saves some 30 µs a bar. ``True`` / ``False`` force either way.
    """
    symbol = config.instrument.symbol
    if data is None:
        data = load_bars(config.data, symbol, path=config.data_path(), seed=config.run.seed)
    elif data.symbol != symbol:
        raise ConfigError(f"the bars are for {data.symbol!r} but instrument.symbol is {symbol!r}")
    check_warmup(config, len(data))
    record = _training_record(config)
    origin = provenance(data, record)
    warmup_until = trade_start_ns(config)
    if warmup_until is not None:
        if warmup_until > int(data.ts[-1]):
            raise ConfigError(
                f"run.trade_start={config.run.trade_start!r} is after the last bar of the data"
            )
        strategy_factory = _warmup_factory(strategy_factory, data, warmup_until)
    started = time.perf_counter()
    bus = MessageBus()
    clock = SimulatedClock()
    if tap is not None:
        tap(bus)
    pipeline = build_pipeline(config, bus, clock, data, strategy_factory)
    engine = None
    recorder = None
    writer: WriterProcess | None = None
    run_id: int | None = None
    if persist:
        from storage.db import connect
        from storage.recorder import Recorder
        from storage.runs import create_run

        engine = connect(db_url or config.storage.url)
        run_id = create_run(
            engine,
            name=config.run.name,
            kind="backtest",
            scenario=scenario_path,
            symbol=symbol,
            config=config.to_dict(),
            config_hash=config_hash(config),
            seed=config.run.seed,
            code_version=code_version(),
            bars=len(data),
            bar_gaps=data.report.gaps,
            first_bar_ns=int(data.ts[0]),
            last_bar_ns=int(data.ts[-1]),
            **origin,
        )
        if writer_process is None:
            writer_process = len(data) >= WRITER_PROCESS_MIN_BARS and not _in_memory(engine)
        if writer_process:
            from storage.writer import WriterProcess

            writer = WriterProcess(engine.url.render_as_string(hide_password=False))
        recorder = Recorder(
            engine,
            run_id,
            bus,
            flush_every_bars=config.storage.flush_every_bars,
            writer=writer,
        )
        recorder.subscribe()
    pipeline.subscribe()
    try:
        return await _run(
            config,
            data,
            bus,
            clock,
            pipeline,
            engine,
            recorder,
            run_id,
            started,
            warmup_until,
            progress,
            record,
            origin,
        )
    finally:
        if writer is not None:
            writer.stop()


def provenance(data: BarData, record: Any) -> dict[str, Any]:
    """What a run row records of its inputs: the fingerprint of its bars and, for a run
    with a checkpoint, the checkpoint's fingerprint and training window."""
    return {
        "data_fingerprint": bars_fingerprint(data),
        "checkpoint_fingerprint": record.fingerprint if record else None,
        "trained_first_ns": record.first_bar_ns if record else None,
        "trained_last_ns": record.last_bar_ns if record else None,
    }


def _training_record(config: ScenarioConfig) -> Any:
    """The checkpoint's training record of a learned scenario (None for other strategies)."""
    from engine.config import MappoEnsembleConfig

    if not isinstance(config.strategy, MappoEnsembleConfig):
        return None
    from strategies.marl.provenance import checkpoint_path, read_training_record

    return read_training_record(checkpoint_path(config))


def _in_memory(engine: Engine) -> bool:
    url = engine.url
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


async def _run(
    config: ScenarioConfig,
    data: BarData,
    bus: MessageBus,
    clock: SimulatedClock,
    pipeline: Pipeline,
    engine: Engine | None,
    recorder: Recorder | None,
    run_id: int | None,
    started: float,
    warmup_until: int | None,
    progress: Callable[[int, int], None] | None,
    record: Any,
    origin: dict[str, Any],
) -> BacktestResult:
    strategy = pipeline.strategy
    collector = ResultsCollector(len(data))
    collector.subscribe(bus)

    setup = time.perf_counter() - started
    try:
        await _replay(data, bus, clock, progress)
        bus.publish(
            RunFinished(
                ts_event=clock.time_ns, ts_init=clock.time_ns, seq=bus.next_seq(), bars=len(data)
            )
        )
    except BaseException as exc:
        if recorder is not None and engine is not None and run_id is not None:
            from storage.models import RunStatus
            from storage.runs import finish_run

            try:
                recorder.abort()
            finally:
                finish_run(
                    engine,
                    run_id,
                    status=RunStatus.FAILED,
                    wall_seconds=time.perf_counter() - started,
                    error=str(exc),
                )
        raise
    wall = time.perf_counter() - started
    n = collector.count
    first = 0 if warmup_until is None else int(np.searchsorted(collector.ts[:n], warmup_until))
    ts, equity, position = (
        collector.ts[first:n],
        collector.equity[first:n],
        collector.position[first:n],
    )
    fills = collector.fill_arrays()
    summary = compute_summary(
        ts, equity, position, config.broker.initial_cash, fills, collector.fees, data.report.gaps
    )
    # the close before each bar (the first bar's open for the first), then the bars' closes
    marks = np.concatenate([[data.open[0]], data.close])[first : n + 1]
    edge = edge_of(
        equity, config.broker.initial_cash, summary.periods_per_year, marks, config.run.seed
    )
    orders = order_outcomes(
        collector.orders, collector.denied, collector.rejected, len(collector.fills)
    )
    training = None
    if record is not None and len(ts):
        training = {
            "checkpoint": str(record.checkpoint),
            "checkpoint_fingerprint": record.fingerprint,
            "symbol": record.symbol,
            "first_bar_ns": record.first_bar_ns,
            "last_bar_ns": record.last_bar_ns,
            "bars": record.bars,
            "validation": record.validation,
            "windows": window_summaries(
                ts,
                equity,
                position,
                config.broker.initial_cash,
                fills,
                training_windows(record, int(ts[0]), int(ts[-1])),
                gaps=lambda part: count_gaps(part, config.data.timezone),
                marks=marks,
                seed=config.run.seed,
            ),
        }
    agents = strategy.agent_summary() if hasattr(strategy, "agent_summary") else None
    panel = strategy.panel_summary() if hasattr(strategy, "panel_summary") else None
    result = BacktestResult(
        run_id=run_id,
        summary=summary,
        fills=len(collector.fills),
        rows_written=recorder.rows_written if recorder else 0,
        wall_seconds=wall,
        bars_per_second=len(data) / wall if wall > 0 else float("inf"),
        data=data,
        agents=agents,
        setup_seconds=setup,
        orders=orders,
        training=training,
        provenance=origin,
        panel=panel,
        edge=edge,
    )
    if engine is not None and run_id is not None:
        from storage.models import RunStatus
        from storage.runs import finish_run

        stored = result.stored_summary()
        finish_run(engine, run_id, status=RunStatus.COMPLETED, wall_seconds=wall, summary=stored)
    return result


async def _replay(
    data: BarData,
    bus: MessageBus,
    clock: SimulatedClock,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Publish every bar in order, yielding to the event loop between chunks."""
    total = len(data)
    symbol = data.symbol
    publish = bus.publish
    next_seq = bus.next_seq
    for start in range(0, total, CHUNK):
        stop = min(start + CHUNK, total)
        columns = zip(
            data.ts[start:stop].tolist(),
            data.open[start:stop].tolist(),
            data.high[start:stop].tolist(),
            data.low[start:stop].tolist(),
            data.close[start:stop].tolist(),
            data.volume[start:stop].tolist(),
            strict=True,
        )
        for ts, o, h, lo, c, v in columns:
            clock.time_ns = ts
            publish(
                Bar(
                    ts_event=ts,
                    ts_init=ts,
                    seq=next_seq(),
                    symbol=symbol,
                    open=o,
                    high=h,
                    low=lo,
                    close=c,
                    volume=v,
                )
            )
        if progress is not None:
            progress(stop, total)
        await asyncio.sleep(0)
